-- eventstore projections: read models fed by handlers.  Inline projections
-- run inside the append transaction (src/projection.c), async ones are run
-- by the background worker from a checkpoint (src/worker.c).

-- ---------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------

-- A projection feeds a read model: its handler, a function taking one
-- eventstore.event (and optionally the projection's name as text), is
-- called for every event that matches its filter.
-- Inline projections run inside the append transaction; async ones are run
-- by the background worker from a checkpoint.  Changing this table
-- invalidates the projection cache of every backend (see projection.c), so
-- write it only through the functions below.
CREATE TABLE eventstore.projections (
    name          text COLLATE "C" NOT NULL PRIMARY KEY
                  CHECK (name <> '' AND octet_length(name) <= 63),
    -- the handler by name (0.7.0: was regprocedure, whose OIDs pg_upgrade
    -- does not keep): its signature, schema-qualified, and the role that
    -- owned it when registered (handler_owner): only that role's function
    -- of that signature is ever called (eventstore._function_by_name)
    handler       text NOT NULL,
    event_types   text[] COLLATE "C" CHECK (cardinality(event_types) > 0),
    stream_prefix text COLLATE "C" CHECK (stream_prefix <> ''),
    mode          text NOT NULL CHECK (mode IN ('inline', 'async')),
    priority      integer NOT NULL DEFAULT 0,
    enabled       boolean NOT NULL DEFAULT true,
    -- inline only: the worker is replaying the log into the read model;
    -- appends leave the handler alone until it goes live again
    catching_up   boolean NOT NULL DEFAULT false CHECK (NOT catching_up OR mode = 'inline'),
    owner         regrole NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- added in 0.4.0, hence last: the search_path the handler runs
    -- under, its creator's
    search_path   text NOT NULL DEFAULT '"$user", public',
    -- added in 0.7.0, hence last
    handler_owner regrole NOT NULL
);
COMMENT ON TABLE eventstore.projections IS 'Registered projections; change through eventstore.create_projection() and friends';

-- Where each projection stands in the global log, kept apart from the
-- definitions because the worker updates it all the time.
CREATE TABLE eventstore.projection_checkpoints (
    name           text COLLATE "C" NOT NULL PRIMARY KEY
                   REFERENCES eventstore.projections ON DELETE CASCADE,
    position       bigint NOT NULL,   -- every matching event <= position is projected
    updated_at     timestamptz NOT NULL DEFAULT now(),
    events_total   bigint NOT NULL DEFAULT 0,  -- events handled by the worker
    error_count    integer NOT NULL DEFAULT 0, -- consecutive failures
    error_position bigint,            -- the event that failed last
    last_error     text,
    last_error_at  timestamptz,
    retry_at       timestamptz,       -- not before this (exponential backoff)
    -- added in 0.8.0, hence last: on a distributed store, where the
    -- projection stands in each partition of the log (a vector checkpoint
    -- as read_partitions takes; NULL: "position" in every partition)
    partitions     jsonb CHECK (jsonb_typeof(partitions) = 'object')
);
COMMENT ON TABLE eventstore.projection_checkpoints IS 'Progress and error state of projections run by the background worker';

SELECT pg_catalog.pg_extension_config_dump('eventstore.projections', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.projection_checkpoints', '');
REVOKE ALL ON TABLE eventstore.projections FROM PUBLIC;
REVOKE ALL ON TABLE eventstore.projection_checkpoints FROM PUBLIC;

CREATE FUNCTION eventstore.projections_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'eventstore_projections_changed'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.projections_changed() IS 'Trigger telling every backend to reload the projections';
REVOKE ALL ON FUNCTION eventstore.projections_changed() FROM PUBLIC;
CREATE TRIGGER projections_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON eventstore.projections
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.projections_changed();
ALTER TABLE eventstore.projections ENABLE ALWAYS TRIGGER projections_changed;

-- ---------------------------------------------------------------------
-- Helpers of the management functions (internal)
-- ---------------------------------------------------------------------

-- Every appending transaction holds ROW SHARE on eventstore.projections
-- from its first append to its end, and reads the projections after taking
-- it.  The functions below change projections under EXCLUSIVE, so once
-- they hold it no append that decided under the old definition is still in
-- flight, and every later append sees the new one.
--
-- The highest position drawn so far.  Under that lock every position at
-- or below it belongs to a transaction that has ended (or to the caller).
CREATE FUNCTION eventstore._drawn_position() RETURNS bigint
    LANGUAGE sql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END
            FROM eventstore.global_position_seq $$;
COMMENT ON FUNCTION eventstore._drawn_position() IS
    'The highest global position drawn so far, 0 when none (internal)';
REVOKE ALL ON FUNCTION eventstore._drawn_position() FROM PUBLIC;

CREATE FUNCTION eventstore._get_projection(projection text, lock boolean)
RETURNS eventstore.projections
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
BEGIN
    IF projection IS NULL THEN
        RAISE EXCEPTION 'projection name must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF lock THEN
        LOCK TABLE eventstore.projections IN EXCLUSIVE MODE;
    END IF;
    SELECT * INTO p FROM eventstore.projections WHERE name = projection;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'projection "%" does not exist', projection USING ERRCODE = '42704';
    END IF;
    RETURN p;
END $$;
COMMENT ON FUNCTION eventstore._get_projection(text, boolean) IS
    'A projection''s row, with lock under the EXCLUSIVE lock the management functions take; 42704 when there is none (internal)';
REVOKE ALL ON FUNCTION eventstore._get_projection(text, boolean) FROM PUBLIC;

-- Raises 55000 with a HINT when the background worker cannot run; else makes
-- sure it runs and wakes it when the transaction commits.
CREATE FUNCTION eventstore._need_worker(what text) RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_need_worker'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._need_worker(text) IS
    'Raise 55000 when the background worker cannot run; else make sure it runs and wake it at commit (internal)';
REVOKE ALL ON FUNCTION eventstore._need_worker(text) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Status
-- ---------------------------------------------------------------------

-- What each projection has done, and how far behind it is.
CREATE VIEW eventstore.projection_status AS
SELECT p.name, p.mode, p.handler, p.event_types, p.stream_prefix, p.priority,
       p.enabled,
       CASE WHEN NOT p.enabled THEN 'disabled'
            WHEN c.retry_at IS NOT NULL THEN 'failing'
            WHEN p.catching_up THEN 'catching_up'
            WHEN p.mode = 'inline' THEN 'live'
            ELSE 'running' END AS state,
       CASE WHEN p.mode = 'async' OR p.catching_up OR NOT p.enabled
            THEN c.position END AS position,
       coalesce(lag.events, 0) AS lag_events,
       now() - lag.oldest AS lag_time,
       c.events_total, c.updated_at,
       c.error_count, c.error_position, c.last_error, c.last_error_at, c.retry_at,
       p.owner, p.created_at, c.partitions
  FROM eventstore.projections p
  JOIN eventstore.projection_checkpoints c USING (name)
  LEFT JOIN LATERAL (
      SELECT count(*) AS events, min(e.created_at) AS oldest
        FROM eventstore.events e
       WHERE e.global_position > c.position
         AND (p.event_types IS NULL OR e.event_type = ANY (p.event_types))
         AND (p.stream_prefix IS NULL OR starts_with(e.stream_id, p.stream_prefix))
  ) lag ON p.mode = 'async' OR p.catching_up OR NOT p.enabled;
COMMENT ON VIEW eventstore.projection_status IS 'Every projection with its state, checkpoint, lag and last error';
REVOKE ALL ON TABLE eventstore.projection_status FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Management: each public function (C, eventstore_as_caller) calls its
-- SECURITY DEFINER implementation eventstore._<name> for its caller; see
-- core.sql, "Shared checks"
-- ---------------------------------------------------------------------

-- The checks of a handler and a filter, shared by projections and snapshot
-- policies.
CREATE FUNCTION eventstore._check_projection_args(
    handler regprocedure, event_types text[], stream_prefix text)
RETURNS void
    LANGUAGE plpgsql STABLE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p pg_catalog.pg_proc;
BEGIN
    IF handler IS NULL THEN
        RAISE EXCEPTION 'handler must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO p FROM pg_catalog.pg_proc WHERE oid = handler;
    IF NOT FOUND THEN
        -- a regprocedure of a dropped function (0.7.0: was registered)
        RAISE EXCEPTION 'function % does not exist', handler::oid USING ERRCODE = '42883';
    END IF;
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
COMMENT ON FUNCTION eventstore._check_projection_args(regprocedure, text[], text) IS
    'Raise 22004, 42P13 or 22023 unless a handler and an event filter are fit for a projection (internal)';
REVOKE ALL ON FUNCTION eventstore._check_projection_args(regprocedure, text[], text) FROM PUBLIC;

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
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
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

    -- by name, under the pinned search_path: qualified (0.7.0)
    INSERT INTO eventstore.projections
        (name, handler, event_types, stream_prefix, mode, priority, catching_up, owner, search_path,
         handler_owner)
    VALUES (name, handler::text, event_types, stream_prefix, mode, priority,
            mode = 'inline' AND replay AND drawn > 0, owner, search_path,
            (SELECT f.proowner::regrole FROM pg_catalog.pg_proc f WHERE f.oid = handler::oid));
    -- on a distributed store "from now on" is each partition's horizon
    INSERT INTO eventstore.projection_checkpoints (name, position, partitions)
    VALUES (name, CASE WHEN replay THEN 0 ELSE drawn END,
            CASE WHEN NOT replay AND eventstore.is_distributed()
                 THEN eventstore._horizons_vector() END);
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
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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

CREATE FUNCTION eventstore.create_projection(
    name          text,
    handler       regprocedure,
    event_types   text[]  DEFAULT NULL,
    stream_prefix text    DEFAULT NULL,
    mode          text    DEFAULT 'inline',
    replay        boolean DEFAULT true,
    priority      integer DEFAULT 0)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.create_projection(text, regprocedure, text[], text, text, boolean, integer) IS
    'Register a handler for matching events: inline (in the append transaction) or async (by the background worker, as the caller, under the caller''s search_path)';
REVOKE ALL ON FUNCTION eventstore.create_projection(text, regprocedure, text[], text, text, boolean, integer) FROM PUBLIC;

-- drop_projection
CREATE FUNCTION eventstore._drop_projection(caller regrole, caller_search_path text,
                                            name text, if_exists boolean)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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

CREATE FUNCTION eventstore.drop_projection(name text, if_exists boolean DEFAULT false)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.drop_projection(text, boolean) IS
    'Unregister a projection (its read model is left alone); for members of its owner';
REVOKE ALL ON FUNCTION eventstore.drop_projection(text, boolean) FROM PUBLIC;

-- disable_projection
CREATE FUNCTION eventstore._disable_projection(caller regrole, caller_search_path text, name text)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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

CREATE FUNCTION eventstore.disable_projection(name text)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.disable_projection(text) IS
    'Stop running a projection; enable_projection() catches up from where it stopped';
REVOKE ALL ON FUNCTION eventstore.disable_projection(text) FROM PUBLIC;

-- enable_projection
CREATE FUNCTION eventstore._enable_projection(caller regrole, caller_search_path text,
                                              name text, catch_up boolean)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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
        -- skip what was appended meanwhile: the caller asked for it (on a
        -- distributed store: up to each partition's horizon, never back)
        UPDATE eventstore.projection_checkpoints c
           SET position = greatest(c.position, drawn), updated_at = now(),
               error_count = 0, error_position = NULL, retry_at = NULL,
               partitions = CASE WHEN eventstore.is_distributed() THEN
                   coalesce(c.partitions, jsonb_build_object('-2147483648', c.position))
                   || (SELECT coalesce(jsonb_object_agg(h.key,
                                  greatest(h.value::bigint,
                                           eventstore._vector_after(
                                               coalesce(c.partitions,
                                                        jsonb_build_object('-2147483648', c.position)),
                                               h.key::integer))), '{}')
                         FROM jsonb_each_text(eventstore._horizons_vector()) h) END
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

CREATE FUNCTION eventstore.enable_projection(name text, catch_up boolean DEFAULT true)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.enable_projection(text, boolean) IS
    'Run a disabled projection again; with catch_up the worker first replays what it missed';
REVOKE ALL ON FUNCTION eventstore.enable_projection(text, boolean) FROM PUBLIC;

-- rebuild_projection
CREATE FUNCTION eventstore._rebuild_projection(caller regrole, caller_search_path text, name text)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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
           last_error_at = NULL, retry_at = NULL, partitions = NULL
     WHERE c.name = p.name;
    UPDATE eventstore.projections q
       SET catching_up = (q.mode = 'inline' AND eventstore._drawn_position() > 0)
     WHERE q.name = p.name;
END $$;
COMMENT ON FUNCTION eventstore._rebuild_projection(regrole, text, text) IS
    'Implementation of eventstore.rebuild_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._rebuild_projection(regrole, text, text) FROM PUBLIC;

CREATE FUNCTION eventstore.rebuild_projection(name text)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.rebuild_projection(text) IS
    'Replay the whole log through a projection; clear its read model in the same transaction, after this call';
REVOKE ALL ON FUNCTION eventstore.rebuild_projection(text) FROM PUBLIC;

-- retry_projection
CREATE FUNCTION eventstore._retry_projection(caller regrole, caller_search_path text, name text)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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

CREATE FUNCTION eventstore.retry_projection(name text)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.retry_projection(text) IS
    'Retry a failing projection now instead of after its backoff';
REVOKE ALL ON FUNCTION eventstore.retry_projection(text) FROM PUBLIC;

-- wait_for_projection: any grantee may wait for any projection; the
-- implementation reads the tables as their owner.
CREATE FUNCTION eventstore._wait_for_projection(caller regrole, caller_search_path text,
                                                name text, timeout interval)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
    target bigint;
    targets jsonb;
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
    -- on a distributed store the target is each partition's horizon
    IF eventstore.is_distributed() THEN
        targets := eventstore._horizons_vector();
    ELSE
        target := eventstore.global_horizon();
    END IF;
    LOOP
        SELECT q.enabled, q.mode, q.catching_up, c.position,
               CASE WHEN targets IS NULL THEN c.position >= target
                    ELSE NOT EXISTS (
                        SELECT FROM jsonb_each_text(targets) t
                         WHERE eventstore._vector_after(
                                   coalesce(c.partitions, jsonb_build_object('-2147483648', c.position)),
                                   t.key::integer) < t.value::bigint) END AS reached
          INTO st
          FROM eventstore.projections q
          JOIN eventstore.projection_checkpoints c USING (name)
         WHERE q.name = p.name;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'projection "%" does not exist', p.name USING ERRCODE = '42704';
        END IF;
        -- an inline projection is done when it is live again
        IF st.enabled AND ((st.mode = 'inline' AND NOT st.catching_up)
                           OR (st.mode = 'async' AND st.reached)) THEN
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

CREATE FUNCTION eventstore.wait_for_projection(name text, timeout interval DEFAULT '30 seconds')
RETURNS boolean
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.wait_for_projection(text, interval) IS
    'Wait until a projection has handled every event readable when the call started (true), or time out (false)';
REVOKE ALL ON FUNCTION eventstore.wait_for_projection(text, interval) FROM PUBLIC;
