-- eventstore 0.3.0 -> 0.4.0: security and integrity.  No role can act with
-- another's rights through the extension: every query the extension runs
-- is immune to the caller's search_path and operators, whose rights a
-- handler runs with comes from what the extension recorded, and every user
-- function called on someone's behalf is checked for EXECUTE.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.4.0'" to load this file. \quit

-- =====================================================================
-- Section 1: what the C code reads (recorded search paths, snapshots)
-- =====================================================================

-- The search_path a projection's handler runs under: the one its creator
-- had when creating it.  Projections created before 0.4.0 keep the
-- server's default path.
ALTER TABLE eventstore.projections
    ADD COLUMN search_path text NOT NULL DEFAULT '"$user", public';

-- Snapshot tags now bind the fold that computed the state (evolve, state
-- type, initial state) even when an explicit tag is given: snapshots taken
-- under the old scheme could have been forged.  Snapshots are a cache.
DELETE FROM eventstore.snapshots;

-- Each rule once: the lifecycle functions' stream-id and expected-version
-- checks are the C ones the append path uses (were PL/pgSQL copies).
CREATE OR REPLACE FUNCTION eventstore._check_stream_id(stream_id text) RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_check_stream_id'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION eventstore._check_stream_id(text) IS
    'Raise 22004/22023/54000 for a NULL, empty or too long stream id (internal)';
CREATE OR REPLACE FUNCTION eventstore._check_expected(p_stream_id text, expected bigint, actual bigint)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_check_expected'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION eventstore._check_expected(text, bigint, bigint) IS
    'Raise 22023 for an invalid expected version, ST001 when it does not match the actual one (internal)';

CREATE FUNCTION eventstore.snapshot_tag(
    evolve       regprocedure,
    initial      anyelement,
    snapshot_tag text DEFAULT NULL)
RETURNS text
    AS 'MODULE_PATHNAME', 'eventstore_snapshot_tag'
    LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION eventstore.snapshot_tag(regprocedure, anyelement, text) IS
    'The tag (eventstore.snapshots.tag) under which the snapshots of the fold evolve from initial, with an optional explicit tag, are stored';
REVOKE ALL ON FUNCTION eventstore.snapshot_tag(regprocedure, anyelement, text) FROM PUBLIC;

-- (end of section 1)
--
--
--
--
--

-- =====================================================================
-- Section 2: managing projections and snapshot policies
-- =====================================================================

-- Management functions run as the extension's owner (SECURITY DEFINER, so
-- the tables need not be writable by anyone else) and learn their caller
-- from src/caller.c: each public function below is the C entry point
-- eventstore_as_caller, which calls eventstore._<name>(caller regrole,
-- caller_search_path text, <the same arguments>) with the role it runs as
-- and that role's search_path prepended.  The implementations are revoked
-- from PUBLIC and each starts with eventstore._check_caller(caller), which
-- fails unless src/caller.c is calling it for that role: the caller cannot
-- be forged, even by a role granted EXECUTE on every function.
--
-- Who a handler runs as comes from here only: a projection's owner is the
-- role that called create_projection (or create_snapshot_policy), and only
-- a member of that role (or a superuser) may change the projection.

-- Earlier versions told administrators to grant privileges on the
-- projection tables to whoever manages projections; with them a manager
-- could set a projection's owner to a superuser and have the worker run its
-- handler as one.  No role but the owner of the extension may write any of
-- its tables; reading (SELECT) grants stay.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel, a.grantee
               FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_class c ON c.oid = d.objid
              CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
              WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e
                                   WHERE e.extname = 'eventstore')
                AND d.deptype = 'e'
                AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                AND a.grantee <> c.relowner
                AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                         'REFERENCES', 'TRIGGER')
              GROUP BY 1, 2
    LOOP
        EXECUTE pg_catalog.format(
            'REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLE %s FROM %s CASCADE',
            r.rel, CASE WHEN r.grantee = 0 THEN 'PUBLIC'
                        ELSE (SELECT pg_catalog.quote_ident(ro.rolname::text)
                                FROM pg_catalog.pg_roles ro WHERE ro.oid = r.grantee) END);
    END LOOP;
END $$;

-- The first statement of every implementation: 42501 unless called by
-- src/caller.c for this caller (never directly, with a forged caller).
-- It reads the backend's own state: never in a parallel worker.
CREATE FUNCTION eventstore._check_caller(caller regrole)
RETURNS boolean
    AS 'MODULE_PATHNAME', 'eventstore_check_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._check_caller(regrole) IS
    'Raise 42501 unless the calling implementation was called through its public function for this caller (internal)';
REVOKE ALL ON FUNCTION eventstore._check_caller(regrole) FROM PUBLIC;

-- Is caller the role owner, a member of it, or a superuser?  A dropped
-- owner leaves its projections to superusers.
CREATE FUNCTION eventstore._is_member(caller regrole, owner regrole)
RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
           WHEN caller IS NULL OR owner IS NULL THEN false
           WHEN caller::oid = owner::oid THEN true
           WHEN coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = caller::oid), false)
               THEN true
           WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.oid = owner::oid) THEN false
           ELSE pg_catalog.pg_has_role(caller::oid, owner::oid, 'MEMBER') END
$$;
COMMENT ON FUNCTION eventstore._is_member(regrole, regrole) IS
    'Whether caller is owner, a member of it, or a superuser (internal)';
REVOKE ALL ON FUNCTION eventstore._is_member(regrole, regrole) FROM PUBLIC;

-- 42501 unless caller may change what owner owns.
CREATE FUNCTION eventstore._check_owner(caller regrole, owner regrole, what text)
RETURNS void
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT eventstore._is_member(caller, owner) THEN
        RAISE EXCEPTION 'permission denied for %', what
            USING ERRCODE = '42501',
                  DETAIL = format('Only members of role %s, the role that created it, and superusers may change it.',
                                  coalesce(owner::text, 'NULL'));
    END IF;
END $$;
COMMENT ON FUNCTION eventstore._check_owner(regrole, regrole, text) IS
    'Raise 42501 unless the caller is a member of the owner or a superuser (internal)';
REVOKE ALL ON FUNCTION eventstore._check_owner(regrole, regrole, text) FROM PUBLIC;

-- The one check of an event-type filter given to a projection or policy:
-- NULL (all types) or a non-empty one-dimensional array of non-empty types.
CREATE FUNCTION eventstore._check_event_types(what text, types text[])
RETURNS void
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF types IS NOT NULL AND (pg_catalog.array_ndims(types) IS DISTINCT FROM 1
                              OR pg_catalog.array_position(types, NULL) IS NOT NULL
                              OR pg_catalog.array_position(types, '') IS NOT NULL) THEN
        RAISE EXCEPTION '% must be NULL (all types) or a non-empty one-dimensional array of non-empty types', what
            USING ERRCODE = '22023';
    END IF;
END $$;
COMMENT ON FUNCTION eventstore._check_event_types(text, text[]) IS
    'Raise 22023 unless an event-type filter is NULL or a non-empty one-dimensional array of non-empty types (internal)';
REVOKE ALL ON FUNCTION eventstore._check_event_types(text, text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore._check_projection_args(
    handler regprocedure, event_types text[], stream_prefix text)
RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p pg_catalog.pg_proc;
BEGIN
    IF handler IS NULL THEN
        RAISE EXCEPTION 'handler must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO p FROM pg_catalog.pg_proc WHERE oid = handler;
    IF p.pronargs NOT IN (1, 2) OR p.proargtypes[0] <> 'eventstore.event'::regtype
       OR (p.pronargs = 2 AND p.proargtypes[1] <> 'text'::regtype) THEN
        RAISE EXCEPTION 'projection handler % must take (eventstore.event) or (eventstore.event, text)', handler
            USING ERRCODE = '42P13';
    END IF;
    IF p.prokind <> 'f' OR p.proretset THEN
        RAISE EXCEPTION 'projection handler % must be a function returning one value (usually void)', handler
            USING ERRCODE = '42P13';
    END IF;
    PERFORM eventstore._check_event_types('event_types', event_types);
    IF stream_prefix = '' THEN
        RAISE EXCEPTION 'stream_prefix must be NULL (all streams) or non-empty' USING ERRCODE = '22023';
    END IF;
END $$;

-- Register a projection owned by owner, whose handler runs under
-- search_path.  check_execute: the owner must be able to EXECUTE the
-- handler (false only for the extension's own handlers).
CREATE FUNCTION eventstore._register_projection(
    owner         regrole,
    search_path   text,
    check_execute boolean,
    name          text,
    handler       regprocedure,
    event_types   text[],
    stream_prefix text,
    mode          text,
    replay        boolean,
    priority      integer)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    drawn bigint;
BEGIN
    IF name IS NULL OR mode IS NULL OR replay IS NULL OR priority IS NULL THEN
        RAISE EXCEPTION 'name, mode, replay and priority must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF name = '' OR octet_length(name) > 63 THEN
        RAISE EXCEPTION 'projection name must have 1 to 63 bytes' USING ERRCODE = '22023';
    END IF;
    IF mode NOT IN ('inline', 'async') THEN
        RAISE EXCEPTION 'mode must be ''inline'' or ''async'', not ''%''', mode USING ERRCODE = '22023';
    END IF;
    PERFORM eventstore._check_projection_args(handler, event_types, stream_prefix);
    IF check_execute AND NOT pg_catalog.has_function_privilege(owner::oid, handler::oid, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', handler
            USING ERRCODE = '42501',
                  DETAIL = format('Role %s, which would run the handler, may not execute it.', owner);
    END IF;

    LOCK TABLE eventstore.projections IN EXCLUSIVE MODE;
    IF EXISTS (SELECT FROM eventstore.projections p WHERE p.name = _register_projection.name) THEN
        RAISE EXCEPTION 'projection "%" already exists', name USING ERRCODE = '42710';
    END IF;
    drawn := eventstore._drawn_position();
    IF mode = 'async' OR (replay AND drawn > 0) THEN
        PERFORM eventstore._need_worker(format('projection "%s"', name));
    END IF;

    INSERT INTO eventstore.projections
        (name, handler, event_types, stream_prefix, mode, priority, catching_up, owner, search_path)
    VALUES (name, handler, event_types, stream_prefix, mode, priority,
            mode = 'inline' AND replay AND drawn > 0, owner, search_path);
    INSERT INTO eventstore.projection_checkpoints (name, position)
    VALUES (name, CASE WHEN replay THEN 0 ELSE drawn END);
END $$;
COMMENT ON FUNCTION eventstore._register_projection(regrole, text, boolean, text, regprocedure, text[], text, text, boolean, integer) IS
    'Insert a projection with its owner and search_path (internal)';
REVOKE ALL ON FUNCTION eventstore._register_projection(regrole, text, boolean, text, regprocedure, text[], text, text, boolean, integer) FROM PUBLIC;

-- create_projection
CREATE FUNCTION eventstore._create_projection(
    caller             regrole,
    caller_search_path text,
    name               text,
    handler            regprocedure,
    event_types        text[],
    stream_prefix      text,
    mode               text,
    replay             boolean,
    priority           integer)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM eventstore._check_caller(caller);
    PERFORM eventstore._register_projection(caller, caller_search_path, true, name, handler,
                                            event_types, stream_prefix, mode, replay, priority);
END $$;
COMMENT ON FUNCTION eventstore._create_projection(regrole, text, text, regprocedure, text[], text, text, boolean, integer) IS
    'Implementation of eventstore.create_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._create_projection(regrole, text, text, regprocedure, text[], text, text, boolean, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.create_projection(
    name          text,
    handler       regprocedure,
    event_types   text[]  DEFAULT NULL,
    stream_prefix text    DEFAULT NULL,
    mode          text    DEFAULT 'inline',
    replay        boolean DEFAULT true,
    priority      integer DEFAULT 0)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.create_projection(text, regprocedure, text[], text, text, boolean, integer) IS
    'Register a handler for matching events: inline (in the append transaction) or async (by the background worker, as the caller, under the caller''s search_path)';

-- drop_projection
CREATE FUNCTION eventstore._drop_projection(caller regrole, caller_search_path text,
                                            name text, if_exists boolean)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p_owner regrole;
BEGIN
    PERFORM eventstore._check_caller(caller);
    IF name IS NULL THEN
        RAISE EXCEPTION 'projection name must not be NULL' USING ERRCODE = '22004';
    END IF;
    LOCK TABLE eventstore.projections IN EXCLUSIVE MODE;
    SELECT p.owner INTO p_owner FROM eventstore.projections p WHERE p.name = _drop_projection.name;
    IF NOT FOUND THEN
        IF coalesce(if_exists, false) THEN
            RETURN;
        END IF;
        RAISE EXCEPTION 'projection "%" does not exist', name USING ERRCODE = '42704';
    END IF;
    PERFORM eventstore._check_owner(caller, p_owner, format('projection "%s"', name));
    DELETE FROM eventstore.projections p WHERE p.name = _drop_projection.name;
END $$;
COMMENT ON FUNCTION eventstore._drop_projection(regrole, text, text, boolean) IS
    'Implementation of eventstore.drop_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._drop_projection(regrole, text, text, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.drop_projection(name text, if_exists boolean DEFAULT false)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.drop_projection(text, boolean) IS
    'Unregister a projection (its read model is left alone); for members of its owner';

-- disable_projection
CREATE FUNCTION eventstore._disable_projection(caller regrole, caller_search_path text, name text)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
BEGIN
    PERFORM eventstore._check_caller(caller);
    p := eventstore._get_projection(name, true);
    PERFORM eventstore._check_owner(caller, p.owner, format('projection "%s"', p.name));
    IF NOT p.enabled THEN
        RETURN;
    END IF;
    -- A live inline projection has handled every event drawn so far.
    IF p.mode = 'inline' AND NOT p.catching_up THEN
        UPDATE eventstore.projection_checkpoints c
           SET position = eventstore._drawn_position(), updated_at = now()
         WHERE c.name = p.name;
    END IF;
    UPDATE eventstore.projections q SET enabled = false WHERE q.name = p.name;
END $$;
COMMENT ON FUNCTION eventstore._disable_projection(regrole, text, text) IS
    'Implementation of eventstore.disable_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._disable_projection(regrole, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.disable_projection(name text)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.disable_projection(text) IS
    'Stop running a projection; enable_projection() catches up from where it stopped';

-- enable_projection
CREATE FUNCTION eventstore._enable_projection(caller regrole, caller_search_path text,
                                              name text, catch_up boolean)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
    drawn bigint;
    behind boolean;
BEGIN
    PERFORM eventstore._check_caller(caller);
    p := eventstore._get_projection(name, true);
    drawn := eventstore._drawn_position();
    PERFORM eventstore._check_owner(caller, p.owner, format('projection "%s"', p.name));
    IF catch_up IS NULL THEN
        RAISE EXCEPTION 'catch_up must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF p.enabled THEN
        RETURN;
    END IF;
    IF NOT catch_up THEN
        -- skip what was appended meanwhile: the caller asked for it
        UPDATE eventstore.projection_checkpoints c
           SET position = greatest(c.position, drawn), updated_at = now(),
               error_count = 0, error_position = NULL, retry_at = NULL
         WHERE c.name = p.name;
    END IF;
    SELECT c.position < drawn INTO behind
      FROM eventstore.projection_checkpoints c WHERE c.name = p.name;
    IF p.mode = 'async' OR behind THEN
        PERFORM eventstore._need_worker(format('projection "%s"', p.name));
    END IF;
    UPDATE eventstore.projections q
       SET enabled = true, catching_up = (q.mode = 'inline' AND behind)
     WHERE q.name = p.name;
END $$;
COMMENT ON FUNCTION eventstore._enable_projection(regrole, text, text, boolean) IS
    'Implementation of eventstore.enable_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._enable_projection(regrole, text, text, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.enable_projection(name text, catch_up boolean DEFAULT true)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.enable_projection(text, boolean) IS
    'Run a disabled projection again; with catch_up the worker first replays what it missed';

-- rebuild_projection
CREATE FUNCTION eventstore._rebuild_projection(caller regrole, caller_search_path text, name text)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
BEGIN
    PERFORM eventstore._check_caller(caller);
    p := eventstore._get_projection(name, true);
    PERFORM eventstore._check_owner(caller, p.owner, format('projection "%s"', p.name));
    PERFORM eventstore._need_worker(format('rebuilding projection "%s"', p.name));
    UPDATE eventstore.projection_checkpoints c
       SET position = 0, updated_at = now(), events_total = 0,
           error_count = 0, error_position = NULL, last_error = NULL,
           last_error_at = NULL, retry_at = NULL
     WHERE c.name = p.name;
    UPDATE eventstore.projections q
       SET catching_up = (q.mode = 'inline' AND eventstore._drawn_position() > 0)
     WHERE q.name = p.name;
END $$;
COMMENT ON FUNCTION eventstore._rebuild_projection(regrole, text, text) IS
    'Implementation of eventstore.rebuild_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._rebuild_projection(regrole, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.rebuild_projection(name text)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.rebuild_projection(text) IS
    'Replay the whole log through a projection; clear its read model in the same transaction, after this call';

-- retry_projection
CREATE FUNCTION eventstore._retry_projection(caller regrole, caller_search_path text, name text)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
BEGIN
    PERFORM eventstore._check_caller(caller);
    p := eventstore._get_projection(name, false);
    PERFORM eventstore._check_owner(caller, p.owner, format('projection "%s"', p.name));
    PERFORM eventstore._need_worker(format('projection "%s"', p.name));
    UPDATE eventstore.projection_checkpoints c
       SET retry_at = now()
     WHERE c.name = p.name AND c.retry_at IS NOT NULL;
    -- the worker looks again at the projections when their table changes
    UPDATE eventstore.projections q SET enabled = q.enabled WHERE q.name = p.name;
END $$;
COMMENT ON FUNCTION eventstore._retry_projection(regrole, text, text) IS
    'Implementation of eventstore.retry_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._retry_projection(regrole, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.retry_projection(name text)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.retry_projection(text) IS
    'Retry a failing projection now instead of after its backoff';

-- wait_for_projection: any grantee may wait for any projection; the
-- implementation reads the tables as their owner.
CREATE FUNCTION eventstore._wait_for_projection(caller regrole, caller_search_path text,
                                                name text, timeout interval)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
    target bigint;
    deadline timestamptz;
    st record;
BEGIN
    PERFORM eventstore._check_caller(caller);
    p := eventstore._get_projection(name, false);
    IF timeout IS NULL THEN
        RAISE EXCEPTION 'timeout must not be NULL' USING ERRCODE = '22004';
    END IF;
    PERFORM eventstore._check_interval('timeout', timeout);
    deadline := clock_timestamp() + timeout;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'wait_for_projection() needs READ COMMITTED'
            USING ERRCODE = '25001',
                  HINT = 'Under REPEATABLE READ the transaction would never see the projection advance.';
    END IF;
    target := eventstore.global_horizon();
    LOOP
        SELECT q.enabled, q.mode, q.catching_up, c.position INTO st
          FROM eventstore.projections q
          JOIN eventstore.projection_checkpoints c USING (name)
         WHERE q.name = p.name;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'projection "%" does not exist', p.name USING ERRCODE = '42704';
        END IF;
        -- an inline projection is done when it is live again
        IF st.enabled AND ((st.mode = 'inline' AND NOT st.catching_up)
                           OR (st.mode = 'async' AND st.position >= target)) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
COMMENT ON FUNCTION eventstore._wait_for_projection(regrole, text, text, interval) IS
    'Implementation of eventstore.wait_for_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._wait_for_projection(regrole, text, text, interval) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.wait_for_projection(name text, timeout interval DEFAULT '30 seconds')
RETURNS boolean
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.wait_for_projection(text, interval) IS
    'Wait until a projection has handled every event readable when the call started (true), or time out (false)';

-- Snapshot policies: the policy's projection ("snapshot:<name>") is owned
-- by the policy's creator, who takes its snapshots (the worker runs
-- _snapshot_step as that role), and evolve runs under the creator's
-- search_path, recorded here.
ALTER TABLE eventstore.snapshot_policies
    ADD COLUMN search_path text NOT NULL DEFAULT '"$user", public';

CREATE FUNCTION eventstore._create_snapshot_policy(
    caller             regrole,
    caller_search_path text,
    name               text,
    evolve             regprocedure,
    initial            anyelement,
    stream_prefix      text,
    every              integer,
    on_event_types     text[],
    snapshot_tag       text)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    -- the initial state is kept as text, read back by the worker: write it
    -- in a form that reads back the same under any settings
    SET DateStyle = 'ISO' SET IntervalStyle = 'postgres' SET extra_float_digits = 3 SET TimeZone = 'UTC'
    AS $$
BEGIN
    PERFORM eventstore._check_caller(caller);
    IF name IS NULL OR evolve IS NULL THEN
        RAISE EXCEPTION 'name and evolve must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF name = '' OR octet_length(name) > 54 THEN
        RAISE EXCEPTION 'snapshot policy name must have 1 to 54 bytes' USING ERRCODE = '22023';
    END IF;
    IF every IS NULL AND on_event_types IS NULL THEN
        RAISE EXCEPTION 'a snapshot policy needs every or on_event_types' USING ERRCODE = '22023';
    END IF;
    PERFORM eventstore._check_event_types('on_event_types', on_event_types);
    IF every <= 0 OR stream_prefix = '' OR snapshot_tag = '' THEN
        RAISE EXCEPTION 'every must be positive; stream_prefix and snapshot_tag must not be empty'
            USING ERRCODE = '22023';
    END IF;
    -- the snapshots are taken as the caller, with the caller's evolve
    IF NOT pg_catalog.has_function_privilege(caller::oid, evolve::oid, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', evolve USING ERRCODE = '42501';
    END IF;
    IF NOT pg_catalog.has_function_privilege(
               caller::oid,
               'eventstore.take_snapshot(text, regprocedure, anyelement, bigint, text)'::regprocedure::oid,
               'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function eventstore.take_snapshot'
            USING ERRCODE = '42501',
                  DETAIL = 'The background worker takes the policy''s snapshots as the role that creates it.';
    END IF;
    -- Checks evolve against the state type (42P13).  It folds no event
    -- (to_version => 0) and reads no snapshot: no user code runs here as
    -- the extension's owner.
    PERFORM eventstore.aggregate_stream(' ', evolve, initial, 0, use_snapshots => false);
    IF EXISTS (SELECT FROM eventstore.snapshot_policies p WHERE p.name = _create_snapshot_policy.name) THEN
        RAISE EXCEPTION 'snapshot policy "%" already exists', name USING ERRCODE = '42710';
    END IF;
    INSERT INTO eventstore.snapshot_policies
        (name, evolve, state_type, initial, stream_prefix, every, on_event_types, snapshot_tag,
         search_path)
    VALUES (name, evolve, pg_typeof(initial)::regtype, initial::text, stream_prefix, every,
            on_event_types, snapshot_tag, caller_search_path);
    PERFORM eventstore._register_projection(caller, caller_search_path, false, 'snapshot:' || name,
                                            'eventstore._snapshot_step(eventstore.event, text)',
                                            NULL, stream_prefix, 'async', true, 0);
END $$;
COMMENT ON FUNCTION eventstore._create_snapshot_policy(regrole, text, text, regprocedure, anyelement, text, integer, text[], text) IS
    'Implementation of eventstore.create_snapshot_policy (internal)';
REVOKE ALL ON FUNCTION eventstore._create_snapshot_policy(regrole, text, text, regprocedure, anyelement, text, integer, text[], text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.create_snapshot_policy(
    name           text,
    evolve         regprocedure,
    initial        anyelement,
    stream_prefix  text    DEFAULT NULL,
    every          integer DEFAULT 100,
    on_event_types text[]  DEFAULT NULL,
    snapshot_tag   text    DEFAULT NULL)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.create_snapshot_policy(text, regprocedure, anyelement, text, integer, text[], text) IS
    'Have the background worker snapshot matching streams every N versions and/or after given event types, as the caller';

CREATE FUNCTION eventstore._drop_snapshot_policy(caller regrole, caller_search_path text,
                                                 name text, if_exists boolean)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM eventstore._check_caller(caller);
    IF name IS NULL THEN
        RAISE EXCEPTION 'name must not be NULL' USING ERRCODE = '22004';
    END IF;
    LOCK TABLE eventstore.projections IN EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT FROM eventstore.snapshot_policies p WHERE p.name = _drop_snapshot_policy.name) THEN
        IF coalesce(if_exists, false) THEN
            RETURN;
        END IF;
        RAISE EXCEPTION 'snapshot policy "%" does not exist', name USING ERRCODE = '42704';
    END IF;
    PERFORM eventstore._check_owner(caller,
                                    (SELECT q.owner FROM eventstore.projections q
                                      WHERE q.name = 'snapshot:' || _drop_snapshot_policy.name),
                                    format('snapshot policy "%s"', name));
    DELETE FROM eventstore.snapshot_policies p WHERE p.name = _drop_snapshot_policy.name;
    DELETE FROM eventstore.projections q WHERE q.name = 'snapshot:' || _drop_snapshot_policy.name;
END $$;
COMMENT ON FUNCTION eventstore._drop_snapshot_policy(regrole, text, text, boolean) IS
    'Implementation of eventstore.drop_snapshot_policy (internal)';
REVOKE ALL ON FUNCTION eventstore._drop_snapshot_policy(regrole, text, text, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.drop_snapshot_policy(name text, if_exists boolean DEFAULT false)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.drop_snapshot_policy(text, boolean) IS
    'Stop taking snapshots by a policy (the snapshots taken stay); for members of its owner';

-- The policy behind a policy's projection, for its step: read as the
-- tables' owner, returned only to members of the projection's owner (a
-- NULL row to anyone else).  The worker runs the step as that owner, who
-- needs no privilege on the tables: EXECUTE is granted to PUBLIC (which has
-- no USAGE on the schema), the membership check is the gate.
CREATE FUNCTION eventstore.__snapshot_policy(caller regrole, caller_search_path text,
                                             projection text)
RETURNS eventstore.snapshot_policies
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p eventstore.snapshot_policies;
BEGIN
    PERFORM eventstore._check_caller(caller);
    SELECT pol.* INTO p
      FROM eventstore.snapshot_policies pol
      JOIN eventstore.projections q ON q.name = projection
     WHERE starts_with(projection, 'snapshot:')
       AND pol.name = substr(projection, length('snapshot:') + 1)
       AND eventstore._is_member(caller, q.owner);
    RETURN p;
END $$;
COMMENT ON FUNCTION eventstore.__snapshot_policy(regrole, text, text) IS
    'Implementation of eventstore._snapshot_policy (internal)';
REVOKE ALL ON FUNCTION eventstore.__snapshot_policy(regrole, text, text) FROM PUBLIC;

CREATE FUNCTION eventstore._snapshot_policy(projection text)
RETURNS eventstore.snapshot_policies
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C STABLE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._snapshot_policy(text) IS
    'The snapshot policy of a "snapshot:<name>" projection, for members of its owner (internal)';
REVOKE ALL ON FUNCTION eventstore._snapshot_policy(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore._snapshot_policy(text) TO PUBLIC;

-- The handler of a policy's projection, run by the worker as the policy's
-- owner: snapshot when the event's version is a multiple of "every" or its
-- type is one of on_event_types.  Its own queries run under the pinned
-- search_path; take_snapshot, and with it evolve, under the one the
-- policy's creator had (the SET clause scopes the change to this call).
-- Executable by PUBLIC: a caller only gets the policies of roles it is a
-- member of, and takes their snapshots as itself.
CREATE OR REPLACE FUNCTION eventstore._snapshot_step(e eventstore.event, projection text)
RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.snapshot_policies := eventstore._snapshot_policy(projection);
    q text;
BEGIN
    IF p.name IS NULL THEN
        RETURN;
    END IF;
    IF (p.every IS NOT NULL AND e.stream_version % p.every = 0)
       OR e.event_type = ANY (p.on_event_types) THEN
        -- formatted under the pinned path: the type's name is qualified
        q := format('SELECT eventstore.take_snapshot($1, $2, $3::%s, $4, $5)', p.state_type);
        PERFORM pg_catalog.set_config('search_path', p.search_path, true);
        EXECUTE q USING e.stream_id, p.evolve, p.initial, e.stream_version, p.snapshot_tag;
    END IF;
END $$;
COMMENT ON FUNCTION eventstore._snapshot_step(eventstore.event, text) IS
    'Handler of a snapshot policy''s projection (internal)';
GRANT EXECUTE ON FUNCTION eventstore._snapshot_step(eventstore.event, text) TO PUBLIC;

-- (end of section 2)
--
--
--
--
--

-- =====================================================================
-- Section 3: durable subscriptions
-- =====================================================================

-- Leases belong to the role that fetched them, not only to a consumer
-- name: any consumer could ack or nack another's events by naming it.
-- subscription_fetch records the calling role with the lease; ack and nack
-- act only on leases whose role is the caller or one the caller is a member
-- of.  Leases taken before 0.4.0 have no role: nobody can ack them, they
-- expire and are delivered again (at least once, as ever).
ALTER TABLE eventstore.subscription_events ADD COLUMN consumer_role regrole;
COMMENT ON COLUMN eventstore.subscription_events.consumer_role IS
    'The role that fetched the current or last lease: only it (or its members) may ack or nack';

CREATE OR REPLACE FUNCTION eventstore.create_subscription(
    name          text,
    event_types   text[]   DEFAULT NULL,
    stream_prefix text     DEFAULT NULL,
    start_from    bigint   DEFAULT 0,
    lease_timeout interval DEFAULT '30 seconds',
    max_attempts  integer  DEFAULT 5)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_types  text[];
    v_start  bigint;
BEGIN
    PERFORM eventstore.subscription_check_name(name, 'subscription name');
    IF start_from IS NULL OR lease_timeout IS NULL OR max_attempts IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'start_from, lease_timeout and max_attempts must not be NULL';
    END IF;
    IF start_from < -1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid start_from %s', start_from),
            DETAIL = 'start_from is 0 (the origin), -1 (the current end of the log) or a position after which to start.';
    END IF;
    IF lease_timeout <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('lease_timeout must be positive, not %s', lease_timeout);
    END IF;
    -- every fetch computes now() + lease_timeout and now() - lease_timeout
    PERFORM eventstore._check_interval('lease_timeout', lease_timeout);
    IF max_attempts < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_attempts must be at least 1, not %s', max_attempts);
    END IF;
    IF event_types IS NOT NULL THEN
        IF array_ndims(event_types) > 1 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'event_types must be a one-dimensional array';
        END IF;
        -- read_all ignores NULL elements; what is left must match something.
        v_types := array_remove(event_types, NULL);
        IF cardinality(v_types) = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'event_types must not be empty',
                DETAIL = 'An empty list (or one of NULLs only) matches no event.',
                HINT = 'Pass NULL for every event type.';
        END IF;
    END IF;

    v_start := CASE WHEN start_from = -1 THEN eventstore.global_horizon() ELSE start_from END;

    INSERT INTO eventstore.subscriptions AS s
           (name, event_types, stream_prefix, lease_timeout, max_attempts, pulled_position)
    VALUES (create_subscription.name, v_types, nullif(stream_prefix, ''),
            create_subscription.lease_timeout, create_subscription.max_attempts, v_start)
    ON CONFLICT ON CONSTRAINT subscriptions_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('subscription "%s" already exists', name);
    END IF;
END
$$;
COMMENT ON FUNCTION eventstore.create_subscription(text, text[], text, bigint, interval, integer) IS
    'Create a durable subscription; start_from 0 = origin, -1 = now, N = after position N';

CREATE FUNCTION eventstore._subscription_fetch(
    caller             regrole,
    caller_search_path text,
    subscription text,
    consumer     text,
    max_count    integer)
RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint,
               event_id uuid, event_type text, data jsonb, metadata jsonb,
               created_at timestamptz, attempt integer)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
ROWS 100
AS $$
#variable_conflict use_column
DECLARE
    v_sub      eventstore.subscriptions;
    v_now      timestamptz;
    v_deliver  bigint[];
    v_window   bigint;
    v_pending  bigint;
    v_step     bigint;
    v_want     bigint;
    v_horizon  bigint;
    v_got      bigint;
    v_last     bigint;
BEGIN
    PERFORM eventstore._check_caller(caller);
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    PERFORM eventstore.subscription_check_name(consumer, 'consumer');
    IF max_count IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'max_count must not be NULL';
    END IF;
    IF max_count < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_count must be at least 1, not %s', max_count);
    END IF;
    PERFORM eventstore._check_count('max_count', max_count, 100000);

    -- One fetch of a subscription at a time; acks and nacks (FOR SHARE) wait
    -- too, so what follows sees a stable set of outstanding events.
    SELECT * INTO v_sub FROM eventstore.subscriptions s
     WHERE s.name = _subscription_fetch.subscription FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    -- The clock, not now(): the lock may have been waited for, and the
    -- caller's transaction may be old.
    v_now := clock_timestamp();

    INSERT INTO eventstore.subscription_consumers AS c (subscription, consumer, last_seen_at)
    VALUES (v_sub.name, _subscription_fetch.consumer, v_now)
    ON CONFLICT ON CONSTRAINT subscription_consumers_pkey
    DO UPDATE SET last_seen_at = excluded.last_seen_at;
    DELETE FROM eventstore.subscription_consumers c
     WHERE c.subscription = v_sub.name AND c.last_seen_at < v_now - v_sub.lease_timeout;

    -- Expired leases of events delivered max_attempts times: park them
    -- rather than hand out a poison event again.
    UPDATE eventstore.subscription_events se
       SET state = 'parked', lease_expires_at = NULL, parked_at = v_now,
           last_error = 'lease expired'
     WHERE se.subscription = v_sub.name AND se.state = 'leased'
       AND se.lease_expires_at <= v_now AND se.attempts >= v_sub.max_attempts;

    v_deliver := eventstore.subscription_deliverable(v_sub.name, v_now, max_count);

    -- Pull from the log what this fetch can deliver, and keep at most
    -- v_window events waiting, so the table stays small even when one busy
    -- stream blocks everything pulled.  Pulled events come after every
    -- outstanding one, so they never change what was already deliverable.
    -- When what was pulled is blocked, each further pull is twice as large.
    v_window := greatest(1000, max_count);
    v_step := 0;
    LOOP
        EXIT WHEN cardinality(v_deliver) >= max_count;
        SELECT count(*) INTO v_pending FROM eventstore.subscription_events se
         WHERE se.subscription = v_sub.name AND se.state = 'pending';
        v_step := greatest(max_count - cardinality(v_deliver), v_step * 2);
        v_want := least(v_step, v_window - v_pending);
        EXIT WHEN v_want <= 0;

        -- The filtered-follower pattern (README): the horizon read before
        -- the page bounds what a short page proves absent.
        v_horizon := eventstore.global_horizon();
        WITH pulled AS (
            INSERT INTO eventstore.subscription_events (subscription, global_position, stream_id)
            SELECT v_sub.name, r.global_position, r.stream_id
              FROM eventstore.read_all(v_sub.pulled_position, v_want,
                                       v_sub.event_types, v_sub.stream_prefix) r
            RETURNING global_position)
        SELECT count(*), max(p.global_position) INTO v_got, v_last FROM pulled p;

        IF v_got < v_want THEN
            v_sub.pulled_position := greatest(v_sub.pulled_position, v_last, v_horizon);
        ELSE
            v_sub.pulled_position := v_last;
        END IF;
        IF v_got > 0 THEN
            v_deliver := eventstore.subscription_deliverable(v_sub.name, v_now, max_count);
        END IF;
        EXIT WHEN v_got < v_want;
    END LOOP;

    UPDATE eventstore.subscriptions s
       SET pulled_position = v_sub.pulled_position, last_fetch_at = v_now
     WHERE s.name = v_sub.name;

    RETURN QUERY
    WITH leased AS (
        UPDATE eventstore.subscription_events se
           SET state = 'leased', consumer = _subscription_fetch.consumer,
               consumer_role = _subscription_fetch.caller,
               attempts = se.attempts + 1,
               lease_expires_at = v_now + v_sub.lease_timeout, not_before = NULL
         WHERE se.subscription = v_sub.name AND se.global_position = ANY (v_deliver)
        RETURNING se.global_position, se.attempts)
    SELECT e.global_position, e.stream_id::text, e.stream_version, e.event_id,
           e.event_type::text, e.data, e.metadata, e.created_at, l.attempts
      FROM leased l
      JOIN eventstore.events e ON e.global_position = l.global_position
     ORDER BY e.global_position;
END
$$;
COMMENT ON FUNCTION eventstore._subscription_fetch(regrole, text, text, text, integer) IS
    'Implementation of eventstore.subscription_fetch (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_fetch(regrole, text, text, text, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.subscription_fetch(
    subscription text,
    consumer     text,
    max_count    integer DEFAULT 100)
RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint,
               event_id uuid, event_type text, data jsonb, metadata jsonb,
               created_at timestamptz, attempt integer)
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    ROWS 100;
COMMENT ON FUNCTION eventstore.subscription_fetch(text, text, integer) IS
    'Lease up to max_count events of a subscription to a consumer (bound to the calling role), in position order, per-stream order kept';

CREATE FUNCTION eventstore._subscription_ack(
    caller             regrole,
    caller_search_path text,
    subscription text,
    consumer     text,
    positions    bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM eventstore._check_caller(caller);
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    PERFORM eventstore.subscription_check_name(consumer, 'consumer');
    IF positions IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'positions must not be NULL';
    END IF;
    -- Waits for a running fetch, which may be handing these events to
    -- someone else; acks of different consumers do not wait for each other.
    PERFORM FROM eventstore.subscriptions s
      WHERE s.name = _subscription_ack.subscription FOR SHARE;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    -- A lease that expired but was not handed out again is still this
    -- consumer's to acknowledge.  Only the role that fetched it (or a
    -- member of that role) may: the consumer's name is not a secret.
    DELETE FROM eventstore.subscription_events se
     WHERE se.subscription = _subscription_ack.subscription
       AND se.global_position = ANY (positions)
       AND se.state = 'leased' AND se.consumer = _subscription_ack.consumer
       AND eventstore._is_member(_subscription_ack.caller, se.consumer_role);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION eventstore._subscription_ack(regrole, text, text, text, bigint[]) IS
    'Implementation of eventstore.subscription_ack (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_ack(regrole, text, text, text, bigint[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.subscription_ack(
    subscription text,
    consumer     text,
    positions    bigint[])
RETURNS integer
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.subscription_ack(text, text, bigint[]) IS
    'Acknowledge events leased to the consumer by the calling role; returns how many were acknowledged';

CREATE FUNCTION eventstore._subscription_nack(
    caller             regrole,
    caller_search_path text,
    subscription text,
    consumer     text,
    positions    bigint[],
    error        text,
    retry_after  interval)
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub   eventstore.subscriptions;
    v_now   timestamptz;
    v_count integer;
BEGIN
    PERFORM eventstore._check_caller(caller);
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    PERFORM eventstore.subscription_check_name(consumer, 'consumer');
    IF positions IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'positions must not be NULL';
    END IF;
    IF retry_after < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('retry_after must not be negative, not %s', retry_after);
    END IF;
    PERFORM eventstore._check_interval('retry_after', retry_after);
    SELECT * INTO v_sub FROM eventstore.subscriptions s
     WHERE s.name = _subscription_nack.subscription FOR SHARE;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    v_now := clock_timestamp();
    -- Default delay: 1 s, doubling with every attempt, at most the lease
    -- timeout.
    UPDATE eventstore.subscription_events se
       SET state = CASE WHEN se.attempts >= v_sub.max_attempts THEN 'parked' ELSE 'pending' END,
           parked_at = CASE WHEN se.attempts >= v_sub.max_attempts THEN v_now END,
           not_before = CASE WHEN se.attempts < v_sub.max_attempts THEN
                            v_now + coalesce(retry_after,
                                             least(v_sub.lease_timeout,
                                                   interval '1 second' * power(2, least(se.attempts - 1, 30))))
                        END,
           lease_expires_at = NULL,
           last_error = error
     WHERE se.subscription = _subscription_nack.subscription
       AND se.global_position = ANY (positions)
       AND se.state = 'leased' AND se.consumer = _subscription_nack.consumer
       AND eventstore._is_member(_subscription_nack.caller, se.consumer_role);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION eventstore._subscription_nack(regrole, text, text, text, bigint[], text, interval) IS
    'Implementation of eventstore.subscription_nack (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_nack(regrole, text, text, text, bigint[], text, interval) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.subscription_nack(
    subscription text,
    consumer     text,
    positions    bigint[],
    error        text     DEFAULT NULL,
    retry_after  interval DEFAULT NULL)
RETURNS integer
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.subscription_nack(text, text, bigint[], text, interval) IS
    'Reject events leased to the consumer by the calling role: retry after a delay, or park after max_attempts';

-- (end of section 3)
--
--
--
--
--

-- =====================================================================
-- Section 4: stream lifecycle and argument ranges
-- =====================================================================

-- Every interval, count and size argument is range-checked where it is
-- given, before anything is written: a value that is accepted must never
-- make a later computation fail (a lease timeout of 170000000 years made
-- every fetch fail with 22008; such an archive policy, every policy run).
--
-- Intervals: at most 100 years either way, and so is each of their parts
-- (months, days, time), so that now() +/- the interval is always
-- computable, step by step.  Each function keeps its own lower bound
-- (positive, not negative) and message.
CREATE FUNCTION eventstore._check_interval(what text, value interval,
                                           max_value interval DEFAULT interval '100 years')
RETURNS void
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    max_seconds numeric := extract(epoch FROM max_value);
    months numeric;
    days numeric;
    seconds numeric;
BEGIN
    IF value IS NULL THEN
        RETURN;
    END IF;
    IF value > max_value OR value < -max_value THEN
        RAISE EXCEPTION '% is out of range: %', what, value
            USING ERRCODE = '22023',
                  DETAIL = format('It must be within %s either way.', max_value);
    END IF;
    months := extract(year FROM value) * 12 + extract(month FROM value);
    days := extract(day FROM value);
    seconds := extract(epoch FROM value) - months * 30 * 86400 - days * 86400;
    IF abs(months) * 30 * 86400 > max_seconds OR abs(days) * 86400 > max_seconds
       OR abs(seconds) > max_seconds THEN
        RAISE EXCEPTION '% is out of range: %', what, value
            USING ERRCODE = '22023',
                  DETAIL = format('Each part of it (months, days, time) must be within %s either way.', max_value);
    END IF;
END $$;
COMMENT ON FUNCTION eventstore._check_interval(text, interval, interval) IS
    'Raise 22023 unless the interval and each of its parts are within max_value either way (internal)';
REVOKE ALL ON FUNCTION eventstore._check_interval(text, interval, interval) FROM PUBLIC;

-- Counts: at most max_value (lower bounds stay with each function).
CREATE FUNCTION eventstore._check_count(what text, value bigint, max_value bigint)
RETURNS void
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value > max_value THEN
        RAISE EXCEPTION '% must be at most %, not %', what, max_value, value
            USING ERRCODE = '22023';
    END IF;
END $$;
COMMENT ON FUNCTION eventstore._check_count(text, bigint, bigint) IS
    'Raise 22023 when a count is above max_value (internal)';
REVOKE ALL ON FUNCTION eventstore._check_count(text, bigint, bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.set_stream_metadata(
    stream_id       text,
    max_age         interval DEFAULT NULL,
    max_count       bigint   DEFAULT NULL,
    truncate_before bigint   DEFAULT NULL)
RETURNS eventstore.stream_info
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    IF max_age IS NOT NULL AND max_age <= interval '0' THEN
        RAISE EXCEPTION 'max_age must be positive' USING ERRCODE = '22023';
    END IF;
    IF max_count IS NOT NULL AND max_count < 1 THEN
        RAISE EXCEPTION 'max_count must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF truncate_before IS NOT NULL AND truncate_before < 1 THEN
        RAISE EXCEPTION 'truncate_before must be a positive version' USING ERRCODE = '22023';
    END IF;
    -- retention and reads compute now() - max_age and versions + max_count
    PERFORM eventstore._check_interval('max_age', max_age);
    PERFORM eventstore._check_count('max_count', max_count, 1000000000000000);
    PERFORM eventstore._check_count('truncate_before', truncate_before, 1000000000000000);
    c := eventstore._stream_for_change(stream_id, false);
    INSERT INTO eventstore.streams AS s (stream_id, max_age, max_count, truncate_before)
        VALUES (set_stream_metadata.stream_id, set_stream_metadata.max_age,
                set_stream_metadata.max_count, set_stream_metadata.truncate_before)
    ON CONFLICT ON CONSTRAINT streams_pkey DO UPDATE
        SET max_age = excluded.max_age, max_count = excluded.max_count,
            truncate_before = excluded.truncate_before,
            settings_version = s.settings_version + 1, retention_checked = false;
    -- a snapshot holds the events folded when it was taken: with other
    -- settings it may hold events now hidden, or miss ones now shown
    PERFORM eventstore._forget_snapshots(stream_id);
    PERFORM eventstore._need_worker('stream retention');
    RETURN eventstore.stream_info(stream_id);
END $$;
COMMENT ON FUNCTION eventstore.set_stream_metadata(text, interval, bigint, bigint) IS
    'Set a stream''s max age, max count and truncate-before (NULL: no limit); reads honour them at once, the worker removes what they exclude';

CREATE OR REPLACE FUNCTION eventstore.archive_streams(
    inactive_for  interval,
    stream_prefix text    DEFAULT NULL,
    max_streams   integer DEFAULT 1000)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text;
    n bigint := 0;
    moved bigint;
BEGIN
    IF inactive_for IS NULL OR inactive_for <= interval '0' THEN
        RAISE EXCEPTION 'inactive_for must be a positive interval' USING ERRCODE = '22023';
    END IF;
    PERFORM eventstore._check_interval('inactive_for', inactive_for);
    -- each stream archived holds its lock to the end of the transaction
    IF max_streams IS NULL OR max_streams < 1 OR max_streams > 10000 THEN
        RAISE EXCEPTION 'max_streams must be between 1 and 10000' USING ERRCODE = '22023',
            HINT = 'Archive more streams by calling archive_streams again, in a new transaction, until it returns 0.';
    END IF;
    FOR s IN SELECT * FROM eventstore._inactive_streams(inactive_for, stream_prefix, max_streams) LOOP
        -- tombstoned and deleted streams: their events are on their way out
        IF EXISTS (SELECT FROM eventstore.streams t
                    WHERE t.stream_id = s
                      AND (t.tombstoned_at IS NOT NULL
                           OR t.deleted_version >= eventstore._stored_head(s, false))) THEN
            CONTINUE;
        END IF;
        moved := eventstore._archive_stream(s, false, inactive_for);
        IF moved > 0 THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION eventstore.archive_streams(interval, text, integer) IS
    'Archive up to max_streams streams (with the prefix) that have had no event for inactive_for; returns the number of streams archived';

CREATE OR REPLACE FUNCTION eventstore.create_archive_policy(
    name          text,
    inactive_for  interval,
    stream_prefix text DEFAULT NULL)
RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'archive policy name must not be empty' USING ERRCODE = '22023';
    END IF;
    IF inactive_for IS NULL OR inactive_for <= interval '0' THEN
        RAISE EXCEPTION 'inactive_for must be a positive interval' USING ERRCODE = '22023';
    END IF;
    -- every run of the policy computes now() - inactive_for
    PERFORM eventstore._check_interval('inactive_for', inactive_for);
    INSERT INTO eventstore.archive_policies (name, inactive_for, stream_prefix)
        VALUES (create_archive_policy.name, create_archive_policy.inactive_for,
                nullif(create_archive_policy.stream_prefix, ''));
    PERFORM eventstore._need_worker('archive policies');
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'archive policy "%" already exists', name USING ERRCODE = '42710';
END $$;
COMMENT ON FUNCTION eventstore.create_archive_policy(text, interval, text) IS
    'Have the background worker archive the streams (with the prefix) that have had no event for inactive_for';

-- (end of section 4)
--
--
--
--
--

-- =====================================================================
-- Section 5: parallel safety and the worker
-- =====================================================================

-- Parallel safety (tested by security_parallel).  Nothing is RESTRICTED: a
-- restricted function runs in the leader while the query is in parallel
-- mode, where PostgreSQL forbids what these functions do.  read_all and
-- global_horizon compute the horizon and then take the latest snapshot
-- (GetLatestSnapshot: "cannot update SecondarySnapshot during a parallel
-- operation", XX000, under any parallel plan).  aggregate_stream and
-- load_state call the user's evolve, which may write or be parallel unsafe
-- itself.  The SAFE readers (read_stream, stream_version, stream_info,
-- get_stream_metadata, subscription_parked) keep their label: they read
-- only what the statement's snapshot shows and work in a worker.
ALTER FUNCTION eventstore.read_all(bigint, bigint, text[], text) PARALLEL UNSAFE;
ALTER FUNCTION eventstore.global_horizon() PARALLEL UNSAFE;
ALTER FUNCTION eventstore.aggregate_stream(text, regprocedure, anyelement, bigint, timestamptz, boolean, text)
    PARALLEL UNSAFE;
ALTER FUNCTION eventstore.load_state(text, regprocedure, anyelement, bigint, timestamptz, boolean, text)
    PARALLEL UNSAFE;

-- (end of section 5)
