-- eventstore state: folding a stream into a state (src/aggregate.c),
-- snapshots of folded states, command handling, and snapshot policies,
-- which the background worker runs as async projections.

-- ---------------------------------------------------------------------
-- Folds, snapshots, commands
-- ---------------------------------------------------------------------

-- Folded states of streams, by tag (which fold) and version.  The state is
-- kept as text in the state type's own format.  Snapshots are a cache: a
-- dump leaves them out, and any of them can be deleted at any time.
CREATE TABLE eventstore.snapshots (
    stream_id      text COLLATE "C" NOT NULL,
    tag            text COLLATE "C" NOT NULL CHECK (tag <> ''),
    stream_version bigint      NOT NULL CHECK (stream_version > 0),
    state_type     regtype     NOT NULL,
    state          text,
    last_event_at  timestamptz NOT NULL,   -- newest created_at folded in
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, tag, state_type, stream_version)
);
COMMENT ON TABLE eventstore.snapshots IS 'Folded states of streams at versions; a cache for load_state and friends';
REVOKE ALL ON TABLE eventstore.snapshots FROM PUBLIC;

-- Every function that folds calls the user's evolve (and handle_command
-- the user's decide), whose parallel safety it cannot know: PARALLEL UNSAFE.
CREATE FUNCTION eventstore.load_state(
    stream_id     text,
    evolve        regprocedure,
    initial       anyelement,
    to_version    bigint      DEFAULT NULL,
    as_of         timestamptz DEFAULT NULL,
    use_snapshots boolean     DEFAULT true,
    snapshot_tag  text        DEFAULT NULL,
    OUT state            anyelement,
    OUT version          bigint,
    OUT snapshot_version bigint)
    AS 'MODULE_PATHNAME', 'eventstore_load_state'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.load_state(text, regprocedure, anyelement, bigint, timestamptz, boolean, text) IS
    'Fold a stream with evolve(state, event) from initial, starting at its newest usable snapshot; returns state, version and the snapshot used';
REVOKE ALL ON FUNCTION eventstore.load_state(text, regprocedure, anyelement, bigint, timestamptz, boolean, text) FROM PUBLIC;

CREATE FUNCTION eventstore.aggregate_stream(
    stream_id     text,
    evolve        regprocedure,
    initial       anyelement,
    to_version    bigint      DEFAULT NULL,
    as_of         timestamptz DEFAULT NULL,
    use_snapshots boolean     DEFAULT true,
    snapshot_tag  text        DEFAULT NULL)
RETURNS anyelement
    AS 'MODULE_PATHNAME', 'eventstore_aggregate_stream'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.aggregate_stream(text, regprocedure, anyelement, bigint, timestamptz, boolean, text) IS
    'The state of a stream: evolve(state, event) folded over its events, up to a version or as of a time';
REVOKE ALL ON FUNCTION eventstore.aggregate_stream(text, regprocedure, anyelement, bigint, timestamptz, boolean, text) FROM PUBLIC;

CREATE FUNCTION eventstore.take_snapshot(
    stream_id     text,
    evolve        regprocedure,
    initial       anyelement,
    to_version    bigint DEFAULT NULL,
    snapshot_tag  text   DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_take_snapshot'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.take_snapshot(text, regprocedure, anyelement, bigint, text) IS
    'Store the folded state of a stream at its current (or a given) version; returns the version';
REVOKE ALL ON FUNCTION eventstore.take_snapshot(text, regprocedure, anyelement, bigint, text) FROM PUBLIC;

-- The tag snapshots of a fold are stored under: it binds evolve, the state
-- type and the initial state, so that no snapshot serves another fold.
CREATE FUNCTION eventstore.snapshot_tag(
    evolve       regprocedure,
    initial      anyelement,
    snapshot_tag text DEFAULT NULL)
RETURNS text
    AS 'MODULE_PATHNAME', 'eventstore_snapshot_tag'
    LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION eventstore.snapshot_tag(regprocedure, anyelement, text) IS
    'The tag (eventstore.snapshots.tag) under which the snapshots of the fold evolve from initial, with an optional explicit tag, are stored';
REVOKE ALL ON FUNCTION eventstore.snapshot_tag(regprocedure, anyelement, text) FROM PUBLIC;

CREATE FUNCTION eventstore._fold_step(internal, eventstore.event, regprocedure, anyelement)
RETURNS internal
    AS 'MODULE_PATHNAME', 'eventstore_fold_step'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._fold_step(internal, eventstore.event, regprocedure, anyelement) IS
    'State transition function of the aggregate eventstore.fold (internal)';
REVOKE ALL ON FUNCTION eventstore._fold_step(internal, eventstore.event, regprocedure, anyelement) FROM PUBLIC;
CREATE FUNCTION eventstore._fold_final(internal, eventstore.event, regprocedure, anyelement)
RETURNS anyelement
    AS 'MODULE_PATHNAME', 'eventstore_fold_final'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._fold_final(internal, eventstore.event, regprocedure, anyelement) IS
    'Final function of the aggregate eventstore.fold (internal)';
REVOKE ALL ON FUNCTION eventstore._fold_final(internal, eventstore.event, regprocedure, anyelement) FROM PUBLIC;
CREATE AGGREGATE eventstore.fold(eventstore.event, regprocedure, anyelement) (
    SFUNC = eventstore._fold_step,
    STYPE = internal,
    FINALFUNC = eventstore._fold_final,
    FINALFUNC_EXTRA
);
COMMENT ON AGGREGATE eventstore.fold(eventstore.event, regprocedure, anyelement) IS
    'fold(event, evolve, initial ORDER BY stream_version): evolve(state, event) over the rows, from initial';
REVOKE ALL ON FUNCTION eventstore.fold(eventstore.event, regprocedure, anyelement) FROM PUBLIC;

CREATE FUNCTION eventstore.handle_command(
    stream_id     text,
    decide        regprocedure,
    command       jsonb,
    evolve        regprocedure,
    initial       anyelement,
    max_retries   integer DEFAULT 3,
    use_snapshots boolean DEFAULT true,
    snapshot_tag  text    DEFAULT NULL,
    OUT version   bigint,
    OUT state     anyelement,
    OUT appended  bigint)
    AS 'MODULE_PATHNAME', 'eventstore_handle_command'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.handle_command(text, regprocedure, jsonb, regprocedure, anyelement, integer, boolean, text) IS
    'Load a stream''s state, decide(command, state) the events, append them expecting the loaded version; retry on conflicts';
REVOKE ALL ON FUNCTION eventstore.handle_command(text, regprocedure, jsonb, regprocedure, anyelement, integer, boolean, text) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Snapshot policies
-- ---------------------------------------------------------------------

-- Snapshot policies: the background worker takes snapshots of matching
-- streams every N versions and/or after events of given types.  A policy
-- runs as an async projection named 'snapshot:<policy>'.
CREATE TABLE eventstore.snapshot_policies (
    name           text COLLATE "C" NOT NULL PRIMARY KEY CHECK (name <> '' AND octet_length(name) <= 54),
    -- by name since 0.7.0, as eventstore.projections.handler
    evolve         text         NOT NULL,
    state_type     regtype      NOT NULL,
    initial        text,
    stream_prefix  text COLLATE "C" CHECK (stream_prefix <> ''),
    every          integer CHECK (every > 0),
    on_event_types text[] COLLATE "C" CHECK (cardinality(on_event_types) > 0),
    snapshot_tag   text COLLATE "C" CHECK (snapshot_tag <> ''),
    -- added in 0.4.0, hence last: the search_path evolve runs under,
    -- the policy creator's
    search_path    text NOT NULL DEFAULT '"$user", public',
    -- added in 0.7.0, hence last: the role that owned evolve
    evolve_owner   regrole NOT NULL,
    CHECK (every IS NOT NULL OR on_event_types IS NOT NULL)
);
COMMENT ON TABLE eventstore.snapshot_policies IS 'When the background worker takes snapshots';
SELECT pg_catalog.pg_extension_config_dump('eventstore.snapshot_policies', '');
REVOKE ALL ON TABLE eventstore.snapshot_policies FROM PUBLIC;

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
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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
    IF EXISTS (SELECT FROM eventstore.snapshot_policies p WHERE p.name = _create_snapshot_policy.name) THEN
        RAISE EXCEPTION 'snapshot policy "%" already exists', name USING ERRCODE = '42710';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_proc f WHERE f.oid OPERATOR(pg_catalog.=) evolve::oid) THEN
        RAISE EXCEPTION 'function with OID % does not exist', evolve::oid USING ERRCODE = '42883';
    END IF;
    -- first, so that a distributed store refuses the policy (0A000, the
    -- table's trigger) before evolve is tried on a stream
    INSERT INTO eventstore.snapshot_policies
        (name, evolve, state_type, initial, stream_prefix, every, on_event_types, snapshot_tag,
         search_path, evolve_owner)
    VALUES (name, evolve::text, pg_typeof(initial)::regtype, initial::text, stream_prefix, every,
            on_event_types, snapshot_tag, caller_search_path,
            (SELECT f.proowner::regrole FROM pg_catalog.pg_proc f WHERE f.oid = evolve::oid));
    -- Checks evolve against the state type (42P13).  It folds no event
    -- (to_version => 0) and reads no snapshot: no user code runs here as
    -- the extension's owner.
    PERFORM eventstore.aggregate_stream(' ', evolve, initial, 0, use_snapshots => false);
    PERFORM eventstore._register_projection(caller, caller_search_path, false, 'snapshot:' || name,
                                            'eventstore._snapshot_step(eventstore.event, text)',
                                            NULL, stream_prefix, 'async', true, 0);
END $$;
COMMENT ON FUNCTION eventstore._create_snapshot_policy(regrole, text, text, regprocedure, anyelement, text, integer, text[], text) IS
    'Implementation of eventstore.create_snapshot_policy (internal)';
REVOKE ALL ON FUNCTION eventstore._create_snapshot_policy(regrole, text, text, regprocedure, anyelement, text, integer, text[], text) FROM PUBLIC;

CREATE FUNCTION eventstore.create_snapshot_policy(
    name           text,
    evolve         regprocedure,
    initial        anyelement,
    stream_prefix  text    DEFAULT NULL,
    every          integer DEFAULT 100,
    on_event_types text[]  DEFAULT NULL,
    snapshot_tag   text    DEFAULT NULL)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.create_snapshot_policy(text, regprocedure, anyelement, text, integer, text[], text) IS
    'Have the background worker snapshot matching streams every N versions and/or after given event types, as the caller';
REVOKE ALL ON FUNCTION eventstore.create_snapshot_policy(text, regprocedure, anyelement, text, integer, text[], text) FROM PUBLIC;

CREATE FUNCTION eventstore._drop_snapshot_policy(caller regrole, caller_search_path text,
                                                 name text, if_exists boolean)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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

CREATE FUNCTION eventstore.drop_snapshot_policy(name text, if_exists boolean DEFAULT false)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.drop_snapshot_policy(text, boolean) IS
    'Stop taking snapshots by a policy (the snapshots taken stay); for members of its owner';
REVOKE ALL ON FUNCTION eventstore.drop_snapshot_policy(text, boolean) FROM PUBLIC;

-- The policy behind a policy's projection, for its step: read as the
-- tables' owner, returned only to members of the projection's owner (a
-- NULL row to anyone else).  The worker runs the step as that owner, who
-- needs no privilege on the tables: EXECUTE is granted to PUBLIC (which has
-- no USAGE on the schema), the membership check is the gate.
CREATE FUNCTION eventstore.__snapshot_policy(caller regrole, caller_search_path text,
                                             projection text)
RETURNS eventstore.snapshot_policies
    LANGUAGE plpgsql STABLE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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
    LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL UNSAFE;
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
CREATE FUNCTION eventstore._snapshot_step(e eventstore.event, projection text)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.snapshot_policies := eventstore._snapshot_policy(projection);
    q text;
    evolve regprocedure;
BEGIN
    IF p.name IS NULL THEN
        RETURN;
    END IF;
    IF (p.every IS NOT NULL AND e.stream_version % p.every = 0)
       OR e.event_type = ANY (p.on_event_types) THEN
        evolve := eventstore._function_by_name(p.evolve, p.evolve_owner);
        IF evolve IS NULL THEN
            RAISE EXCEPTION 'the evolve function of snapshot policy "%" does not exist', p.name
                USING ERRCODE = '42883',
                      DETAIL = format('No function %s owned by role %s exists: it was dropped, or replaced by another role''s.',
                                      p.evolve, p.evolve_owner),
                      HINT = 'Drop the policy and create it again.';
        END IF;
        -- formatted under the pinned path: the type's name is qualified
        q := format('SELECT eventstore.take_snapshot($1, $2, $3::%s, $4, $5)', p.state_type);
        PERFORM pg_catalog.set_config('search_path', p.search_path, true);
        EXECUTE q USING e.stream_id, evolve, p.initial, e.stream_version, p.snapshot_tag;
    END IF;
END $$;
COMMENT ON FUNCTION eventstore._snapshot_step(eventstore.event, text) IS
    'Handler of a snapshot policy''s projection (internal)';
REVOKE ALL ON FUNCTION eventstore._snapshot_step(eventstore.event, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore._snapshot_step(eventstore.event, text) TO PUBLIC;
