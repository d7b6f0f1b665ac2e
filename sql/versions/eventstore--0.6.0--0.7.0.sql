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
