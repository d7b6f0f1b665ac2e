-- eventstore 0.1.0: streams with optimistic concurrency on PostgreSQL.

\echo Use "CREATE EXTENSION eventstore" to load this file. \quit

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

-- Events are user data: pg_dump must dump them although the table belongs
-- to the extension.
SELECT pg_catalog.pg_extension_config_dump('eventstore.events', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.global_position_seq', '');

REVOKE ALL ON TABLE eventstore.events FROM PUBLIC;
REVOKE ALL ON SEQUENCE eventstore.global_position_seq FROM PUBLIC;

CREATE FUNCTION eventstore.forbid_change() RETURNS trigger
    AS 'MODULE_PATHNAME', 'eventstore_forbid_change'
    LANGUAGE C;
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
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.append(text, text, jsonb, jsonb, bigint, uuid) IS
    'Append one event to a stream; expected_version NULL = any, 0 = no stream, -1 = stream exists, N = exactly N';

CREATE FUNCTION eventstore.append_events(
    stream_id        text,
    events           jsonb,
    expected_version bigint DEFAULT NULL)
RETURNS eventstore.append_result
    AS 'MODULE_PATHNAME', 'eventstore_append_events'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.append_events(text, jsonb, bigint) IS
    'Append a JSON array of {type, data, metadata?, id?} to a stream, all or nothing';

-- Reading.
CREATE FUNCTION eventstore.read_stream(
    stream_id    text,
    from_version bigint  DEFAULT NULL,
    max_count    bigint  DEFAULT NULL,
    backward     boolean DEFAULT false)
RETURNS SETOF eventstore.event
    AS 'MODULE_PATHNAME', 'eventstore_read_stream'
    LANGUAGE C STABLE PARALLEL SAFE ROWS 100;
COMMENT ON FUNCTION eventstore.read_stream(text, bigint, bigint, boolean) IS
    'Events of one stream: forward from from_version ascending, or backward from from_version descending';

CREATE FUNCTION eventstore.stream_version(stream_id text)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_stream_version'
    LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION eventstore.stream_version(text) IS
    'Version of the newest event of a stream; 0 when it has none';

-- Access is granted per function (see README, "Roles"): nothing is open to
-- PUBLIC.
REVOKE ALL ON FUNCTION eventstore.append(text, text, jsonb, jsonb, bigint, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.append_events(text, jsonb, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.read_stream(text, bigint, bigint, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.stream_version(text) FROM PUBLIC;

-- The global log.  The background worker records the safe horizon here;
-- hot standbys and REPEATABLE READ readers read up to it.
CREATE TABLE eventstore.recorded_horizon (
    position    bigint      NOT NULL,
    recorded_at timestamptz NOT NULL
);
COMMENT ON TABLE eventstore.recorded_horizon IS 'The global-log horizon last published by the background worker (one row)';
INSERT INTO eventstore.recorded_horizon VALUES (0, now());
REVOKE ALL ON TABLE eventstore.recorded_horizon FROM PUBLIC;

CREATE FUNCTION eventstore.read_all(
    after_position bigint DEFAULT 0,
    max_count      bigint DEFAULT 1000,
    event_types    text[] DEFAULT NULL,
    stream_prefix  text   DEFAULT NULL)
RETURNS SETOF eventstore.event
    AS 'MODULE_PATHNAME', 'eventstore_read_all'
    LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 1000;
COMMENT ON FUNCTION eventstore.read_all(bigint, bigint, text[], text) IS
    'Events of the global log after a position, ascending; never skips an event that commits later';

CREATE FUNCTION eventstore.global_horizon()
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_global_horizon'
    LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION eventstore.global_horizon() IS
    'Position up to which the global log is complete: read_all never returns a later position';

REVOKE ALL ON FUNCTION eventstore.read_all(bigint, bigint, text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.global_horizon() FROM PUBLIC;
