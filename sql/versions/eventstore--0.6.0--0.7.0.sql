-- eventstore 0.6.0 -> 0.7.0: deletions visible in the global log (issue 14).
-- test/t/014_upgrade_chain.pl checks that this script and a fresh install
-- of 0.7.0 agree.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.7.0'" to load this file. \quit

-- =====================================================================
-- Section 1: lifecycle markers
-- =====================================================================

-- Deleting, tombstoning or setting the metadata of a stream appends a
-- system event about it to its marker stream '$$<stream id>'; marker
-- streams and event types beginning with '$' are the extension's own
-- (the C checks of appends raise 42939).  Streams deleted before 0.7.0
-- have no marker.  The same definitions as sql/install/.

-- The filter rule of read_all (event types, stream prefix; a prefix also
-- matches the lifecycle markers of the streams it begins), for SQL that
-- must count what read_all would return (subscription_status).  Pure
-- computation on its arguments: executable by everyone.
CREATE FUNCTION eventstore._event_matches(stream_id text, event_type text,
                                          event_types text[], stream_prefix text)
RETURNS boolean
    AS 'MODULE_PATHNAME', 'eventstore_event_matches'
    LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION eventstore._event_matches(text, text, text[], text) IS
    'Whether an event of this stream and type passes the filter of read_all with these event_types and stream_prefix (internal)';
GRANT EXECUTE ON FUNCTION eventstore._event_matches(text, text, text[], text) TO PUBLIC;

-- Lifecycle markers (0.7.0).  Deleting, tombstoning or setting the metadata
-- of stream S appends, in the same transaction, a system event about it to
-- the marker stream '$$S': type '$deleted', '$tombstoned' or '$metadata',
-- data {"stream_id": S, ...}.  It takes the path of every append (stream
-- lock, global-log horizon, inline projections), so read_all, subscriptions
-- and projections deliver it in order.  Marker streams and event types
-- beginning with '$' are written only by the extension (42939).
CREATE FUNCTION eventstore._append_marker(stream_id text, event_type text, data jsonb)
RETURNS eventstore.append_result
    AS 'MODULE_PATHNAME', 'eventstore_append_marker'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._append_marker(text, text, jsonb) IS
    'Append a lifecycle marker about a stream to its marker stream $$<stream_id> (internal)';
REVOKE ALL ON FUNCTION eventstore._append_marker(text, text, jsonb) FROM PUBLIC;

COMMENT ON FUNCTION eventstore._check_stream_id(text) IS
    'Raise 22004/22023/54000 for a NULL, empty or too long stream id, 42939 for a marker stream (a stream id a caller may change; internal)';

-- An interval as ISO 8601 text ('P1DT2H'), whatever the session's
-- IntervalStyle: how $metadata markers spell max_age (0.7.0).
CREATE FUNCTION eventstore._iso_interval(i interval) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    SET IntervalStyle = 'iso_8601'
AS $$ SELECT i::pg_catalog.text $$;
COMMENT ON FUNCTION eventstore._iso_interval(interval) IS
    'An interval as ISO 8601 text whatever the session''s IntervalStyle (internal)';
REVOKE ALL ON FUNCTION eventstore._iso_interval(interval) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.set_stream_metadata(
    stream_id       text,
    max_age         interval DEFAULT NULL,
    max_count       bigint   DEFAULT NULL,
    truncate_before bigint   DEFAULT NULL)
RETURNS eventstore.stream_info
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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
    -- followers of the global log learn of it (0.7.0)
    PERFORM eventstore._append_marker(stream_id, '$metadata',
                pg_catalog.jsonb_build_object('stream_id', set_stream_metadata.stream_id,
                                              'max_age', eventstore._iso_interval(set_stream_metadata.max_age),
                                              'max_count', set_stream_metadata.max_count,
                                              'truncate_before', set_stream_metadata.truncate_before));
    PERFORM eventstore._need_worker('stream retention');
    RETURN eventstore.stream_info(stream_id);
END $$;
COMMENT ON FUNCTION eventstore.set_stream_metadata(text, interval, bigint, bigint) IS
    'Set a stream''s max age, max count and truncate-before (NULL: no limit); reads honour them at once, the worker removes what they exclude; appends a $metadata marker to $$<stream_id>';

CREATE OR REPLACE FUNCTION eventstore._delete_stream(p_stream_id text, expected_version bigint, hard boolean)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    c := eventstore._stream_for_change(p_stream_id, false);
    PERFORM eventstore._check_expected(p_stream_id, expected_version, c.visible, c.head);
    IF c.visible = 0 AND NOT hard THEN
        RETURN 0;               -- absent already: nothing to do
    END IF;
    IF (c.st).archived_at IS NOT NULL THEN
        PERFORM eventstore._remove_events(p_stream_id, true, c.head, NULL, NULL);
    END IF;
    INSERT INTO eventstore.streams AS s (stream_id, tombstoned_at, deleted_version, deleted_at)
        VALUES (p_stream_id, CASE WHEN hard THEN now() END, c.head, now())
    ON CONFLICT ON CONSTRAINT streams_pkey DO UPDATE
        SET tombstoned_at = excluded.tombstoned_at,
            deleted_version = excluded.deleted_version, deleted_at = excluded.deleted_at,
            -- a tombstone takes the stream's settings with it for good
            max_age = CASE WHEN NOT hard THEN s.max_age END,
            max_count = CASE WHEN NOT hard THEN s.max_count END,
            truncate_before = CASE WHEN NOT hard THEN s.truncate_before END,
            archived_at = NULL,
            settings_version = s.settings_version + 1, retention_checked = false,
            removed_through = CASE WHEN s.archived_at IS NOT NULL THEN excluded.deleted_version
                                   ELSE s.removed_through END;
    PERFORM eventstore._forget_snapshots(p_stream_id);
    -- followers of the global log learn of it (0.7.0)
    PERFORM eventstore._append_marker(p_stream_id,
                                      CASE WHEN hard THEN '$tombstoned' ELSE '$deleted' END,
                                      pg_catalog.jsonb_build_object('stream_id', p_stream_id,
                                                                    'deleted_version', c.head));
    PERFORM eventstore._need_worker('stream retention');
    RETURN c.head;
END $$;
COMMENT ON FUNCTION eventstore.delete_stream(text, bigint) IS
    'Soft delete: the stream reads as absent; a later append recreates it, numbering going on; appends a $deleted marker to $$<stream_id>.  Returns the version deleted (0: nothing to delete)';
COMMENT ON FUNCTION eventstore.tombstone_stream(text, bigint) IS
    'Hard delete: the stream reads as absent and every later append fails with ST002; appends a $tombstoned marker to $$<stream_id>.  Returns the version deleted';

CREATE OR REPLACE FUNCTION eventstore._inactive_streams(inactive_for interval, stream_prefix text, max_streams integer)
RETURNS SETOF text
    LANGUAGE sql STABLE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT e.stream_id
      FROM eventstore.events e
     WHERE (stream_prefix IS NULL
            OR left(e.stream_id, length(stream_prefix)) = stream_prefix COLLATE "C")
       -- lifecycle markers stay in the hot table for good (0.7.0)
       AND left(e.stream_id, 2) <> '$$' COLLATE "C"
     GROUP BY e.stream_id
    HAVING max(e.created_at) < now() - inactive_for
       -- tombstoned and deleted streams: their events are on their way out
       AND NOT EXISTS (SELECT FROM eventstore.streams t
                        WHERE t.stream_id = e.stream_id
                          AND (t.tombstoned_at IS NOT NULL
                               OR t.deleted_version >= max(e.stream_version)))
     ORDER BY max(e.created_at), e.stream_id
     LIMIT max_streams
$fn$;

-- the lag counts what read_all would return (the rule of src/catalog.c)
CREATE OR REPLACE VIEW eventstore.subscription_status AS
SELECT s.name,
       s.event_types,
       s.stream_prefix,
       cp.position,
       s.pulled_position,
       lag.lag_events,
       now() - lag.oldest_created_at AS lag_time,
       o.in_flight,
       o.pending_retry,
       o.parked,
       coalesce(c.consumers, '{}') AS consumers,
       s.last_fetch_at,
       s.lease_timeout,
       s.max_attempts
  FROM eventstore.subscriptions s
 CROSS JOIN (SELECT eventstore.global_horizon() AS horizon) h
 CROSS JOIN LATERAL (
        SELECT min(se.global_position) FILTER (WHERE se.state <> 'parked') AS first_open,
               count(*) FILTER (WHERE se.state = 'leased') AS in_flight,
               count(*) FILTER (WHERE se.state = 'pending' AND se.attempts > 0) AS pending_retry,
               count(*) FILTER (WHERE se.state = 'parked') AS parked
          FROM eventstore.subscription_events se
         WHERE se.subscription = s.name) o
 CROSS JOIN LATERAL (
        SELECT coalesce(o.first_open - 1, s.pulled_position) AS position) cp
 CROSS JOIN LATERAL (
        -- Pulled events are committed even when the horizon this snapshot
        -- sees is older (REPEATABLE READ).
        SELECT count(*) AS lag_events,
               min(e.created_at) FILTER (WHERE e.global_position = first_pos) AS oldest_created_at
          FROM (SELECT e.*, min(e.global_position) OVER () AS first_pos
                  FROM eventstore.events e
                 WHERE e.global_position > cp.position
                   AND e.global_position <= greatest(h.horizon, s.pulled_position)
                   AND eventstore._event_matches(e.stream_id, e.event_type,
                                                 s.event_types, s.stream_prefix)) e) lag
 CROSS JOIN LATERAL (
        SELECT array_agg(x.consumer ORDER BY x.consumer) AS consumers
          FROM (SELECT sc.consumer FROM eventstore.subscription_consumers sc
                 WHERE sc.subscription = s.name AND sc.last_seen_at > now() - s.lease_timeout
                UNION
                SELECT se.consumer FROM eventstore.subscription_events se
                 WHERE se.subscription = s.name AND se.state = 'leased'
                   AND se.lease_expires_at > now()) x) c;

-- =====================================================================
-- Section 2: functions by name, so that pg_upgrade can move a store
-- =====================================================================

-- pg_upgrade refuses a cluster with reg* columns in user tables (the OIDs
-- of functions are not kept): projection handlers and the evolve of
-- snapshot policies become their schema-qualified signature (printed
-- under a pinned search_path, so qualified) and the role that owned the
-- function.  A handler dropped before the update (a dangling OID) becomes
-- a name that finds nothing, as its OID found nothing.  The path set here
-- lasts to the end of this script.
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- A function stored by name (0.7.0): projection handlers and the evolve of
-- snapshot policies are kept as their schema-qualified signature and the
-- role that owned the function, not as regprocedure -- pg_upgrade refuses
-- reg* columns, whose OIDs it does not keep.  This finds the function
-- again: NULL unless a function of that signature exists AND belongs to
-- that role, so a function another role creates under a dropped one's
-- name is never called in its place.  A bare number is not a name.
CREATE FUNCTION eventstore._function_by_name(signature text, owner regrole)
RETURNS regprocedure
    LANGUAGE sql STABLE CALLED ON NULL INPUT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f.oid::pg_catalog.regprocedure
      FROM pg_catalog.pg_proc f
     WHERE f.proowner = owner::pg_catalog.oid
       -- only what looks like a signature is parsed: to_regprocedure
       -- raises on a malformed one (before PostgreSQL 16) or takes a bare
       -- number for an OID (since)
       AND f.oid = CASE WHEN signature ~ '^[^0-9].*\)$'
                        THEN pg_catalog.to_regprocedure(signature)::pg_catalog.oid END
$$;
COMMENT ON FUNCTION eventstore._function_by_name(text, regrole) IS
    'The function of this schema-qualified signature if the role owns it, else NULL (internal)';
REVOKE ALL ON FUNCTION eventstore._function_by_name(text, regrole) FROM PUBLIC;
-- _snapshot_step, which the projector runs as a policy's creator, calls it;
-- it tells nothing pg_proc does not
GRANT EXECUTE ON FUNCTION eventstore._function_by_name(text, regrole) TO PUBLIC;

-- a registered handler must exist (a dangling regprocedure was accepted)
CREATE OR REPLACE FUNCTION eventstore._check_projection_args(
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

DROP VIEW eventstore.projection_status;

ALTER TABLE eventstore.projections ADD COLUMN handler_owner regrole;
UPDATE eventstore.projections p
   SET handler_owner = coalesce((SELECT f.proowner::regrole FROM pg_catalog.pg_proc f
                                  WHERE f.oid = p.handler::oid), p.owner);
ALTER TABLE eventstore.projections
    ALTER COLUMN handler TYPE text
        USING CASE WHEN handler::text ~ '^[0-9]+$' THEN 'dropped function ' || handler::text
                   ELSE handler::text END,
    ALTER COLUMN handler_owner SET NOT NULL;

ALTER TABLE eventstore.snapshot_policies ADD COLUMN evolve_owner regrole;
UPDATE eventstore.snapshot_policies sp
   SET evolve_owner = coalesce((SELECT f.proowner::regrole FROM pg_catalog.pg_proc f
                                 WHERE f.oid = sp.evolve::oid),
                               (SELECT q.owner FROM eventstore.projections q
                                 WHERE q.name = 'snapshot:' || sp.name),
                               current_user::regrole);
ALTER TABLE eventstore.snapshot_policies
    ALTER COLUMN evolve TYPE text
        USING CASE WHEN evolve::text ~ '^[0-9]+$' THEN 'dropped function ' || evolve::text
                   ELSE evolve::text END,
    ALTER COLUMN evolve_owner SET NOT NULL;

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
       p.owner, p.created_at
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

CREATE OR REPLACE FUNCTION eventstore._register_projection(
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
    INSERT INTO eventstore.projection_checkpoints (name, position)
    VALUES (name, CASE WHEN replay THEN 0 ELSE drawn END);
END $$;

CREATE OR REPLACE FUNCTION eventstore._create_snapshot_policy(
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
    -- Checks evolve against the state type (42P13).  It folds no event
    -- (to_version => 0) and reads no snapshot: no user code runs here as
    -- the extension's owner.
    PERFORM eventstore.aggregate_stream(' ', evolve, initial, 0, use_snapshots => false);
    IF EXISTS (SELECT FROM eventstore.snapshot_policies p WHERE p.name = _create_snapshot_policy.name) THEN
        RAISE EXCEPTION 'snapshot policy "%" already exists', name USING ERRCODE = '42710';
    END IF;
    INSERT INTO eventstore.snapshot_policies
        (name, evolve, state_type, initial, stream_prefix, every, on_event_types, snapshot_tag,
         search_path, evolve_owner)
    VALUES (name, evolve::text, pg_typeof(initial)::regtype, initial::text, stream_prefix, every,
            on_event_types, snapshot_tag, caller_search_path,
            (SELECT f.proowner::regrole FROM pg_catalog.pg_proc f WHERE f.oid = evolve::oid));
    PERFORM eventstore._register_projection(caller, caller_search_path, false, 'snapshot:' || name,
                                            'eventstore._snapshot_step(eventstore.event, text)',
                                            NULL, stream_prefix, 'async', true, 0);
END $$;

CREATE OR REPLACE FUNCTION eventstore._snapshot_step(e eventstore.event, projection text)
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
