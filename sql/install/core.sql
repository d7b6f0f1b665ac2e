-- eventstore core: the events and what every part of the extension shares.
--
-- sql/install/ holds the hand-edited sources of the current version, one
-- file per concern.  The Makefile concatenates them, in this order, into
-- the install script eventstore--<version>.sql:
--
--   core.sql           types, the events table, appending, reading, the
--                      global log and its horizon; the argument and caller
--                      checks the other files use
--   projections.sql    projections (read models) and their management
--   subscriptions.sql  durable subscriptions
--   state.sql          folds, snapshots, command handling, snapshot policies
--   lifecycle.sql      stream settings, soft delete, tombstones, archiving,
--                      retention and archive policies
--
-- A database created by an earlier version reaches the same objects through
-- the frozen update scripts of sql/versions/; test/t/014_upgrade_chain.pl
-- checks that both paths give the same catalog.  So every change made here
-- is also made in the newest update script.
--
-- Conventions: every function states its volatility, strictness and
-- parallel label (see sql/security_parallel.sql for the rule) and has a
-- COMMENT; nothing is executable by PUBLIC unless said so (see README,
-- "Roles"); every SQL and PL/pgSQL function pins its search_path to
-- pg_catalog, pg_temp and schema-qualifies what it calls.  Columns added to
-- a table in a later version come last in its CREATE TABLE: the physical
-- column order is the one the update chain gives.

-- ---------------------------------------------------------------------
-- Types
-- ---------------------------------------------------------------------

-- What every read returns (DESIGN section 1).
CREATE TYPE eventstore.event AS (
    global_position bigint,
    stream_id       text,
    stream_version  bigint,
    event_id        uuid,
    event_type      text,
    data            jsonb,
    metadata        jsonb,
    created_at      timestamptz
);
COMMENT ON TYPE eventstore.event IS 'An event as returned by every read function';

CREATE TYPE eventstore.append_result AS (
    stream_version  bigint,
    global_position bigint
);
COMMENT ON TYPE eventstore.append_result IS 'Version and global position of the last event an append wrote';

-- ---------------------------------------------------------------------
-- The events
-- ---------------------------------------------------------------------

-- Global positions.  CACHE 1 keeps positions increasing in the order they
-- are drawn across all sessions, which the global log relies on.
CREATE SEQUENCE eventstore.global_position_seq AS bigint MINVALUE 1 NO CYCLE CACHE 1;
COMMENT ON SEQUENCE eventstore.global_position_seq IS 'Draws eventstore.events.global_position';

-- The events.  Fixed-width columns first, so rows carry no alignment padding;
-- reads return them in the column order of eventstore.event.  Stream ids and
-- event types compare bytewise (COLLATE "C").
CREATE TABLE eventstore.events (
    global_position bigint      NOT NULL,
    stream_version  bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    event_id        uuid        NOT NULL,
    stream_id       text COLLATE "C" NOT NULL,
    event_type      text COLLATE "C" NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb,
    CONSTRAINT events_pkey PRIMARY KEY (global_position),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);
COMMENT ON TABLE eventstore.events IS 'All events; append-only, written by eventstore.append and eventstore.append_events';
ALTER SEQUENCE eventstore.global_position_seq OWNED BY eventstore.events.global_position;

-- Exactly once per event id (0.6.0): every id a caller gave an append,
-- with the event that took it.  An append whose ids are stored here is a
-- retry, recognised whatever happened to the stream since (src/append.c).
-- The primary key makes two appends of one id to different streams, which
-- take different stream locks, unable to both commit.  Only ids callers
-- give are stored: generated ones (UUID version 7) do not collide, so
-- appends without ids neither read nor write this table.  Rows stay when
-- retention, deletes, tombstones or archiving remove the events: an id is
-- taken for good.
CREATE TABLE eventstore.event_ids (
    event_id        uuid        NOT NULL,
    global_position bigint      NOT NULL,
    stream_version  bigint      NOT NULL,
    stream_id       text COLLATE "C" NOT NULL,
    CONSTRAINT event_ids_pkey PRIMARY KEY (event_id)
);
COMMENT ON TABLE eventstore.event_ids IS 'Event ids given by callers of appends and the event each took, kept for good: retries are recognised by them';
SELECT pg_catalog.pg_extension_config_dump('eventstore.event_ids', '');
REVOKE ALL ON TABLE eventstore.event_ids FROM PUBLIC;

-- Events are user data: pg_dump must dump them although the table belongs
-- to the extension.
SELECT pg_catalog.pg_extension_config_dump('eventstore.events', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.global_position_seq', '');

REVOKE ALL ON TABLE eventstore.events FROM PUBLIC;
REVOKE ALL ON SEQUENCE eventstore.global_position_seq FROM PUBLIC;

CREATE FUNCTION eventstore.forbid_change() RETURNS trigger
    AS 'MODULE_PATHNAME', 'eventstore_forbid_change'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.forbid_change() IS 'Trigger keeping eventstore.events append-only';
REVOKE ALL ON FUNCTION eventstore.forbid_change() FROM PUBLIC;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON eventstore.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.forbid_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON eventstore.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.forbid_change();
-- Fire even under session_replication_role = replica.
ALTER TABLE eventstore.events ENABLE ALWAYS TRIGGER events_append_only;
ALTER TABLE eventstore.events ENABLE ALWAYS TRIGGER events_no_truncate;

-- ---------------------------------------------------------------------
-- Appending and reading
-- ---------------------------------------------------------------------

-- Appending.  Not STRICT: NULL arguments get a clear error (or mean "any
-- version" / "no metadata" / "generate an id").
CREATE FUNCTION eventstore.append(
    stream_id        text,
    event_type       text,
    data             jsonb,
    metadata         jsonb  DEFAULT NULL,
    expected_version bigint DEFAULT NULL,
    event_id         uuid   DEFAULT NULL)
RETURNS eventstore.append_result
    AS 'MODULE_PATHNAME', 'eventstore_append'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.append(text, text, jsonb, jsonb, bigint, uuid) IS
    'Append one event to a stream; expected_version NULL = any, 0 = no stream, -1 = stream exists, N = exactly N';
REVOKE ALL ON FUNCTION eventstore.append(text, text, jsonb, jsonb, bigint, uuid) FROM PUBLIC;

CREATE FUNCTION eventstore.append_events(
    stream_id        text,
    events           jsonb,
    expected_version bigint DEFAULT NULL)
RETURNS eventstore.append_result
    AS 'MODULE_PATHNAME', 'eventstore_append_events'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.append_events(text, jsonb, bigint) IS
    'Append a JSON array of {type, data, metadata?, id?} to a stream, all or nothing';
REVOKE ALL ON FUNCTION eventstore.append_events(text, jsonb, bigint) FROM PUBLIC;

-- Reading one stream.  PARALLEL SAFE: it reads only what the statement's
-- snapshot shows, and works in a parallel worker.  In FROM it is planned as
-- a custom scan that returns rows as it reads them (0.9.0, src/read.c).
CREATE FUNCTION eventstore.read_stream(
    stream_id    text,
    from_version bigint  DEFAULT NULL,
    max_count    bigint  DEFAULT NULL,
    backward     boolean DEFAULT false)
RETURNS SETOF eventstore.event
    AS 'MODULE_PATHNAME', 'eventstore_read_stream'
    LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE ROWS 100;
COMMENT ON FUNCTION eventstore.read_stream(text, bigint, bigint, boolean) IS
    'Events of one stream: forward from from_version ascending, or backward from from_version descending';
REVOKE ALL ON FUNCTION eventstore.read_stream(text, bigint, bigint, boolean) FROM PUBLIC;

CREATE FUNCTION eventstore.stream_version(stream_id text)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_stream_version'
    LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION eventstore.stream_version(text) IS
    'Version of the newest event of a stream; 0 when it has none';
REVOKE ALL ON FUNCTION eventstore.stream_version(text) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- The global log
-- ---------------------------------------------------------------------

-- The background worker records the safe horizon here;
-- hot standbys and REPEATABLE READ readers read up to it.
CREATE TABLE eventstore.recorded_horizon (
    position    bigint      NOT NULL,
    recorded_at timestamptz NOT NULL
);
COMMENT ON TABLE eventstore.recorded_horizon IS 'The global-log horizon last published by the background worker (one row)';
INSERT INTO eventstore.recorded_horizon VALUES (0, now());
REVOKE ALL ON TABLE eventstore.recorded_horizon FROM PUBLIC;

-- read_all and global_horizon compute the horizon and then take the latest
-- snapshot, which PostgreSQL forbids in parallel mode: PARALLEL UNSAFE.
CREATE FUNCTION eventstore.read_all(
    after_position bigint DEFAULT 0,
    max_count      bigint DEFAULT 1000,
    event_types    text[] DEFAULT NULL,
    stream_prefix  text   DEFAULT NULL)
RETURNS SETOF eventstore.event
    AS 'MODULE_PATHNAME', 'eventstore_read_all'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1000;
COMMENT ON FUNCTION eventstore.read_all(bigint, bigint, text[], text) IS
    'Events of the global log after a position, ascending; never skips an event that commits later';
REVOKE ALL ON FUNCTION eventstore.read_all(bigint, bigint, text[], text) FROM PUBLIC;

CREATE FUNCTION eventstore.global_horizon()
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_global_horizon'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.global_horizon() IS
    'Position up to which the global log is complete: read_all never returns a later position';
REVOKE ALL ON FUNCTION eventstore.global_horizon() FROM PUBLIC;

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

-- ---------------------------------------------------------------------
-- Shared checks (internal)
-- ---------------------------------------------------------------------

-- The checks of the append path, in C, for the PL/pgSQL functions of the
-- other files: each rule, message and SQLSTATE is written once (catalog.c).
CREATE FUNCTION eventstore._check_stream_id(stream_id text) RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_check_stream_id'
    LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION eventstore._check_stream_id(text) IS
    'Raise 22004/22023/54000 for a NULL, empty or too long stream id, 42939 for a marker stream (a stream id a caller may change; internal)';
REVOKE ALL ON FUNCTION eventstore._check_stream_id(text) FROM PUBLIC;

-- actual: the version the stream reads as; last_version: the highest it
-- ever had (a stream that reads as 0 with a last version is soft-deleted
-- at it, and expecting that version recreates it).
CREATE FUNCTION eventstore._check_expected(p_stream_id text, expected bigint, actual bigint,
                                           last_version bigint)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_check_expected'
    LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION eventstore._check_expected(text, bigint, bigint, bigint) IS
    'Raise 22023 for an invalid expected version, ST001 when it does not match the stream''s actual and last versions (internal)';
REVOKE ALL ON FUNCTION eventstore._check_expected(text, bigint, bigint, bigint) FROM PUBLIC;

-- Management functions run as the extension's owner (SECURITY DEFINER, so
-- the tables need not be writable by anyone else) and learn their caller
-- from src/caller.c: each public function is the C entry point
-- eventstore_as_caller, which calls eventstore._<name>(caller regrole,
-- caller_search_path text, <the same arguments>) with the role it runs as
-- and that role's search_path prepended.  The implementations are revoked
-- from PUBLIC and each starts with eventstore._check_caller(caller), which
-- fails unless src/caller.c is calling it for that role: the caller cannot
-- be forged, even by a role granted EXECUTE on every function.
--
-- Who a handler runs as comes from the tables only: a projection's owner is
-- the role that called create_projection (or create_snapshot_policy), and
-- only a member of that role (or a superuser) may change the projection.
-- No role but the owner of the extension may write any of its tables.
--
-- The first statement of every implementation: 42501 unless called by
-- src/caller.c for this caller (never directly, with a forged caller).
-- It reads the backend's own state: never in a parallel worker.
CREATE FUNCTION eventstore._check_caller(caller regrole)
RETURNS boolean
    AS 'MODULE_PATHNAME', 'eventstore_check_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._check_caller(regrole) IS
    'Raise 42501 unless the calling implementation was called through its public function for this caller (internal)';
REVOKE ALL ON FUNCTION eventstore._check_caller(regrole) FROM PUBLIC;

-- Is caller the role owner, a member of it, or a superuser?  A dropped
-- owner leaves its projections to superusers.
CREATE FUNCTION eventstore._is_member(caller regrole, owner regrole)
RETURNS boolean
    LANGUAGE sql STABLE CALLED ON NULL INPUT PARALLEL SAFE
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
    LANGUAGE plpgsql STABLE CALLED ON NULL INPUT PARALLEL SAFE
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
    LANGUAGE plpgsql IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
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
    LANGUAGE plpgsql IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
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
-- No SET clause (0.9.0): its one operator is qualified, and switching the
-- setting on every call was a cost on every fetch of a subscription.
CREATE FUNCTION eventstore._check_count(what text, value bigint, max_value bigint)
RETURNS void
    LANGUAGE plpgsql IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
AS $$
BEGIN
    IF value OPERATOR(pg_catalog.>) max_value THEN
        RAISE EXCEPTION '% must be at most %, not %', what, max_value, value
            USING ERRCODE = '22023';
    END IF;
END $$;
COMMENT ON FUNCTION eventstore._check_count(text, bigint, bigint) IS
    'Raise 22023 when a count is above max_value (internal)';
REVOKE ALL ON FUNCTION eventstore._check_count(text, bigint, bigint) FROM PUBLIC;
