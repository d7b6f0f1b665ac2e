-- eventstore 0.8.0 -> 0.9.0: operating a store (issue 18).
-- test/t/014_upgrade_chain.pl checks that this script and a fresh install
-- of 0.9.0 agree.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.9.0'" to load this file. \quit

-- =====================================================================
-- Section 1: statistics, wait events and progress (shared memory)
-- =====================================================================

-- =====================================================================
-- Section 2: read_stream returns rows as it reads them
-- =====================================================================

-- read_stream becomes an inlinable SQL function over _read_stream_rows,
-- which returns a row per call (see sql/install/core.sql).  OR REPLACE
-- keeps read_stream's grants and comment.
CREATE FUNCTION eventstore._read_stream_rows(
    stream_id    text,
    from_version bigint,
    max_count    bigint,
    backward     boolean)
RETURNS SETOF eventstore.events
    AS 'MODULE_PATHNAME', 'eventstore_read_stream_rows'
    LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE ROWS 100;
COMMENT ON FUNCTION eventstore._read_stream_rows(text, bigint, bigint, boolean) IS
    'The rows of read_stream, one per call, as rows of eventstore.events (internal; needs EXECUTE on read_stream)';
GRANT EXECUTE ON FUNCTION eventstore._read_stream_rows(text, bigint, bigint, boolean) TO PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.read_stream(
    stream_id    text,
    from_version bigint  DEFAULT NULL,
    max_count    bigint  DEFAULT NULL,
    backward     boolean DEFAULT false)
RETURNS SETOF eventstore.event
    LANGUAGE sql STABLE CALLED ON NULL INPUT PARALLEL SAFE ROWS 100
    AS $$
SELECT (s.r).global_position, (s.r).stream_id, (s.r).stream_version, (s.r).event_id,
       (s.r).event_type, (s.r).data, (s.r).metadata, (s.r).created_at
  FROM (SELECT eventstore._read_stream_rows($1, $2, $3, $4) AS r) AS s
$$;

-- =====================================================================
-- Section 3: folds (aggregate_stream, load_state) plan evolve once
-- =====================================================================

-- =====================================================================
-- Section 4: durable subscriptions
-- =====================================================================
