--
-- eventstore.append_events(): batches, the expected-version matrix,
-- atomicity, what is stored, and a 100,000-event batch.
--
CREATE EXTENSION eventstore;

--
-- A batch of three into a new stream: the result is the version and the
-- global position of the LAST event.
--
SELECT stream_version, global_position AS last_pos
  FROM eventstore.append_events('acct-1', '[
    {"type": "Opened",    "data": {"owner": "ann"}},
    {"type": "Deposited", "data": {"amount": 10}, "metadata": {"user": "u1"}},
    {"type": "Deposited", "data": {"amount": 5},  "metadata": null,
     "id": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"}
  ]') \gset
SELECT :stream_version AS stream_version,
       :last_pos = (SELECT global_position FROM eventstore.events
                     WHERE stream_id = 'acct-1' AND stream_version = 3) AS position_of_last_event,
       :last_pos = (SELECT max(global_position) FROM eventstore.events) AS is_newest;
SELECT pg_typeof(eventstore.append_events('types', '[{"type": "T", "data": 1}]'));
SELECT stream_id, stream_version, event_type, data, metadata
  FROM eventstore.read_stream('acct-1');
-- Generated ids are unique and non-null; a given "id" is stored as given.
SELECT stream_version, event_id IS NOT NULL AS has_id,
       CASE WHEN stream_version = 3 THEN event_id::text ELSE 'generated' END AS event_id
  FROM eventstore.read_stream('acct-1');
SELECT count(DISTINCT event_id) AS distinct_ids FROM eventstore.read_stream('acct-1');
-- Versions and positions ascend together within the batch.
SELECT bool_and(global_position > prev) AS positions_ascend
  FROM (SELECT global_position, lag(global_position) OVER (ORDER BY stream_version) AS prev
          FROM eventstore.read_stream('acct-1')) s WHERE prev IS NOT NULL;

-- A second batch continues the stream.
SELECT stream_version, global_position AS last_pos2
  FROM eventstore.append_events('acct-1', '[
    {"data": {"amount": 3}, "type": "Withdrawn", "id": null},
    {"type": "Closed", "data": null, "metadata": {}}
  ]', 3) \gset
SELECT :stream_version AS stream_version, :last_pos2 > :last_pos AS position_increased,
       :last_pos2 = (SELECT global_position FROM eventstore.read_stream('acct-1', NULL, 1, true))
         AS position_of_last_event;
SELECT stream_version, event_type, data, jsonb_typeof(data) AS kind, metadata,
       metadata IS NULL AS metadata_is_sql_null, event_id IS NOT NULL AS has_id
  FROM eventstore.read_stream('acct-1', 4);

-- Data of every JSON kind round-trips through a batch.
SELECT stream_version FROM eventstore.append_events('kinds', '[
    {"type": "K", "data": {"a": {"b": [1, 2.50, "x"]}, "c": null}},
    {"type": "K", "data": [1, "two", {"three": 3}, [], {}]},
    {"type": "K", "data": "a string with \"quotes\" and a \\ backslash"},
    {"type": "K", "data": -12.3450e2},
    {"type": "K", "data": true},
    {"type": "K", "data": false},
    {"type": "K", "data": null},
    {"type": "K", "data": {}},
    {"type": "K", "data": []}
  ]');
SELECT stream_version, data, jsonb_typeof(data) AS kind, data IS NULL AS sql_null
  FROM eventstore.read_stream('kinds');
SELECT e.data = '"a string with \"quotes\" and a \\ backslash"'::jsonb AS string_equal,
       (SELECT data FROM eventstore.read_stream('kinds', 4, 1)) = '-1234.50'::jsonb AS number_equal
  FROM eventstore.read_stream('kinds', 3, 1) e;

-- All events of one transaction share its timestamp.
BEGIN;
SELECT stream_version FROM eventstore.append_events('time', '[{"type": "A", "data": 1}, {"type": "B", "data": 2}]');
SELECT stream_version FROM eventstore.append_events('time', '[{"type": "C", "data": 3}]');
SELECT count(*) AS events, bool_and(created_at = now()) AS created_at_is_now
  FROM eventstore.read_stream('time');
COMMIT;

-- An empty batch writes nothing and reports the current version and no
-- position; its expected version is still checked.
SELECT count(*) AS events_before FROM eventstore.events \gset
SELECT stream_version, global_position IS NULL AS no_position
  FROM eventstore.append_events('acct-1', '[]');
SELECT stream_version, global_position IS NULL AS no_position
  FROM eventstore.append_events('empty', '[]', 0);
SELECT stream_version FROM eventstore.append_events('acct-1', '[]', 2);
\echo :SQLSTATE
SELECT count(*) - :events_before AS events_added, eventstore.stream_version('empty') AS empty_version
  FROM eventstore.events;

-- Batches within one statement see each other.
SELECT i, (eventstore.append_events('series', '[{"type": "A", "data": 1}, {"type": "B", "data": 2}]')).stream_version
  FROM generate_series(1, 3) AS i;
SELECT stream_version, event_type FROM eventstore.read_stream('series');

--
-- Expected-version matrix.  Each successful call appends two events; every
-- failure raises ST001 naming the stream, the expected and the actual
-- version, and writes nothing.
--
SELECT count(*) AS events_before_matrix FROM eventstore.events \gset
SELECT stream_version FROM eventstore.append_events('m-full', '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');

-- NULL (any), stream absent / with events: appends.
SELECT stream_version FROM eventstore.append_events('m-any', '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]', NULL);
SELECT stream_version FROM eventstore.append_events('m-full', '[{"type": "C", "data": {}}, {"type": "D", "data": {}}]', NULL);

-- 0 (no stream), stream absent: appends; stream with events: fails.
SELECT stream_version FROM eventstore.append_events('m-new', '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]', 0);
SELECT stream_version FROM eventstore.append_events('m-full', '[{"type": "X", "data": {}}, {"type": "X", "data": {}}]', 0);
\echo :SQLSTATE

-- -1 (stream exists), stream absent: fails; stream with events: appends.
SELECT stream_version FROM eventstore.append_events('m-absent', '[{"type": "X", "data": {}}, {"type": "X", "data": {}}]', -1);
\echo :SQLSTATE
SELECT stream_version FROM eventstore.append_events('m-full', '[{"type": "E", "data": {}}, {"type": "F", "data": {}}]', -1);

-- N, stream absent: fails.
SELECT stream_version FROM eventstore.append_events('m-absent', '[{"type": "X", "data": {}}, {"type": "X", "data": {}}]', 2);
\echo :SQLSTATE
-- N equal to the current version: appends; lower or higher: fails.
SELECT stream_version FROM eventstore.append_events('m-full', '[{"type": "G", "data": {}}, {"type": "H", "data": {}}]', 6);
SELECT stream_version FROM eventstore.append_events('m-full', '[{"type": "X", "data": {}}, {"type": "X", "data": {}}]', 7);
\echo :SQLSTATE
SELECT stream_version FROM eventstore.append_events('m-full', '[{"type": "X", "data": {}}, {"type": "X", "data": {}}]', 9);
\echo :SQLSTATE

SELECT count(*) FILTER (WHERE event_type = 'X') AS failed_events_stored,
       count(*) - :events_before_matrix AS events_added
  FROM eventstore.events;
SELECT s, eventstore.stream_version(s)
  FROM unnest(ARRAY['m-any', 'm-new', 'm-absent', 'm-full']) AS s;
SELECT string_agg(event_type, ',' ORDER BY stream_version) AS types,
       bool_and(stream_version = rn) AS gap_free
  FROM (SELECT event_type, stream_version, row_number() OVER (ORDER BY global_position) AS rn
          FROM eventstore.read_stream('m-full')) s;

--
-- Atomicity: a batch whose third element is malformed writes nothing, to a
-- new stream or to one with events.
--
SELECT count(*) AS events_before FROM eventstore.events \gset
SELECT stream_version FROM eventstore.append_events('atomic-new', '[
    {"type": "A", "data": 1},
    {"type": "B", "data": 2},
    {"type": "C"},
    {"type": "D", "data": 4}
  ]');
\echo :SQLSTATE
SELECT stream_version FROM eventstore.append_events('acct-1', '[
    {"type": "A", "data": 1},
    {"type": "B", "data": 2},
    {"type": "C", "data": 3, "metadata": [1]}
  ]', 5);
\echo :SQLSTATE
SELECT stream_version FROM eventstore.append_events('acct-1', '[
    {"type": "A", "data": 1},
    {"type": "B", "data": 2},
    {"type": "C", "data": 3, "id": "not-a-uuid"}
  ]');
\echo :SQLSTATE
SELECT count(*) - :events_before AS events_added,
       eventstore.stream_version('atomic-new') AS new_version,
       eventstore.stream_version('acct-1') AS acct_version
  FROM eventstore.events;

-- A failure after the first events of a batch were inserted (here a user's
-- trigger rejecting the third) still leaves nothing behind.
CREATE FUNCTION reject_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_typeof(NEW.data) = 'object' AND NEW.data ? 'boom' THEN
        RAISE EXCEPTION 'boom at version % of stream %', NEW.stream_version, NEW.stream_id;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER reject_boom BEFORE INSERT ON eventstore.events
    FOR EACH ROW EXECUTE FUNCTION reject_boom();
SELECT stream_version FROM eventstore.append_events('acct-1', '[
    {"type": "A", "data": {}},
    {"type": "B", "data": {}},
    {"type": "C", "data": {"boom": true}}
  ]', 5);
BEGIN;
SELECT stream_version FROM eventstore.append_events('atomic-tx', '[{"type": "A", "data": {}}]');
SAVEPOINT sp;
SELECT stream_version FROM eventstore.append_events('atomic-tx', '[
    {"type": "B", "data": {}},
    {"type": "C", "data": {}},
    {"type": "D", "data": {"boom": 1}}
  ]');
ROLLBACK TO SAVEPOINT sp;
SELECT stream_version, event_type FROM eventstore.read_stream('atomic-tx');
SELECT stream_version FROM eventstore.append_events('atomic-tx', '[{"type": "B", "data": {}}]', 1);
COMMIT;
DROP TRIGGER reject_boom ON eventstore.events;
DROP FUNCTION reject_boom();
SELECT eventstore.stream_version('acct-1') AS acct_version,
       (SELECT string_agg(event_type, ',' ORDER BY stream_version)
          FROM eventstore.read_stream('atomic-tx')) AS atomic_tx_types;

-- Batches to several streams in one transaction commit or roll back together.
BEGIN;
SELECT stream_version FROM eventstore.append_events('tx-a', '[{"type": "A", "data": 1}, {"type": "A", "data": 2}]');
SELECT stream_version FROM eventstore.append_events('tx-b', '[{"type": "B", "data": 1}]');
SELECT eventstore.stream_version('tx-a') AS a, eventstore.stream_version('tx-b') AS b;
ROLLBACK;
SELECT eventstore.stream_version('tx-a') AS a, eventstore.stream_version('tx-b') AS b;
BEGIN;
SELECT stream_version FROM eventstore.append_events('tx-a', '[{"type": "A", "data": 1}, {"type": "A", "data": 2}]');
SELECT stream_version FROM eventstore.append_events('tx-b', '[{"type": "B", "data": 1}]');
COMMIT;
SELECT eventstore.stream_version('tx-a') AS a, eventstore.stream_version('tx-b') AS b;

--
-- 100,000 events in one call.
--
SELECT stream_version, global_position AS big_last_pos
  FROM eventstore.append_events('big',
         (SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'data', jsonb_build_object('i', i))
                           ORDER BY i)
            FROM generate_series(1, 100000) AS i)) \gset
SELECT :stream_version AS stream_version,
       :big_last_pos = (SELECT max(global_position) FROM eventstore.events) AS position_of_last_event;
SELECT count(*) AS events, min(stream_version), max(stream_version),
       count(DISTINCT stream_version) AS distinct_versions,
       count(DISTINCT global_position) AS distinct_positions,
       count(DISTINCT event_id) AS distinct_event_ids,
       bool_and((data->>'i')::bigint = stream_version) AS data_in_order
  FROM eventstore.events WHERE stream_id = 'big';
SELECT bool_and(global_position > prev) AS positions_ascend_with_versions
  FROM (SELECT global_position, lag(global_position) OVER (ORDER BY stream_version) AS prev
          FROM eventstore.events WHERE stream_id = 'big') s WHERE prev IS NOT NULL;
SELECT eventstore.stream_version('big');
SELECT stream_version, data FROM eventstore.read_stream('big', 99999);

-- Generated event ids are version 7 UUIDs (RFC 9562), ordered by the time
-- they were made to the millisecond; from PostgreSQL 18 on the server's own
-- generator makes them, which also orders the ids of one backend within a
-- millisecond: the ids of a batch strictly increase there.
SELECT stream_version FROM eventstore.append_events('uuid-order',
    (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', g)) FROM generate_series(1, 500) g));
SELECT bool_and(substr(event_id::text, 15, 1) = '7') AS version_7,
       bool_and(substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS rfc_variant,
       bool_and(prev IS NULL OR left(replace(event_id::text, '-', ''), 12) >= left(replace(prev::text, '-', ''), 12))
         AS time_ordered,
       current_setting('server_version_num')::int < 180000 OR bool_and(prev IS NULL OR event_id > prev)
         AS strictly_increasing_from_18
  FROM (SELECT event_id, lag(event_id) OVER (ORDER BY stream_version) AS prev
          FROM eventstore.events WHERE stream_id = 'uuid-order') s;

DROP EXTENSION eventstore;
