--
-- eventstore.append(): signature and result types, the expected-version
-- matrix, what is stored, transactions, and the append-only events table.
--
CREATE EXTENSION eventstore;

--
-- The fixed API: argument names, defaults and result types of every function,
-- and the columns of the two composite types.
--
SELECT p.proname,
       pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result
  FROM pg_proc p
 WHERE p.pronamespace = 'eventstore'::regnamespace
   AND p.proname IN ('append', 'append_events', 'read_stream', 'stream_version')
 ORDER BY p.proname;

SELECT t.typname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_type t
  JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE t.typnamespace = 'eventstore'::regnamespace
   AND t.typname IN ('event', 'append_result')
 ORDER BY t.typname, a.attnum;

SELECT pg_typeof(eventstore.append('types', 'Checked', '{}'));

--
-- A first append: version 1, a positive global position that is the
-- position of the stored event.
--
SELECT stream_version, global_position AS first_pos
  FROM eventstore.append('s1', 'Opened', '{"owner": "ann"}') \gset
SELECT :stream_version AS stream_version,
       :first_pos > 0 AS position_positive,
       :first_pos = (SELECT global_position FROM eventstore.events
                      WHERE stream_id = 's1' AND stream_version = 1) AS position_of_event;
SELECT eventstore.stream_version('s1');
SELECT stream_id, stream_version, event_type, data, metadata,
       event_id IS NOT NULL AS has_event_id, global_position = :first_pos AS same_pos
  FROM eventstore.read_stream('s1');

-- Further appends: versions 2 and 3, positions increasing.
SELECT stream_version, global_position AS pos2
  FROM eventstore.append('s1', 'Deposited', '{"amount": 10}') \gset
SELECT :stream_version AS stream_version, :pos2 > :first_pos AS position_increased;
SELECT stream_version, global_position AS pos3
  FROM eventstore.append('s1', 'Deposited', '{"amount": 5}') \gset
SELECT :stream_version AS stream_version, :pos3 > :pos2 AS position_increased,
       :pos3 = (SELECT max(global_position) FROM eventstore.events) AS is_last_position;
SELECT eventstore.stream_version('s1');

-- Named arguments, as the contract names them.
SELECT stream_version FROM eventstore.append(stream_id => 's1', event_type => 'Named',
                                             data => '{}', expected_version => 3,
                                             metadata => '{"by": "named"}',
                                             event_id => '00000000-0000-4000-8000-000000000001');
SELECT stream_version, event_type, metadata, event_id
  FROM eventstore.read_stream('s1', 4);

--
-- Expected-version matrix.  Each mode against an absent stream and against a
-- stream with two events ("m-full").  Every failure raises ST001 with a
-- DETAIL naming the stream, the expected and the actual version, and writes
-- nothing.
--
SELECT count(*) AS events_before_matrix FROM eventstore.events \gset
SELECT stream_version FROM eventstore.append('m-full', 'A', '{}');
SELECT stream_version FROM eventstore.append('m-full', 'B', '{}');

-- NULL (any), stream absent: appends.
SELECT stream_version FROM eventstore.append('m-any', 'A', '{}', NULL, NULL);
-- NULL (any), stream with events: appends.
SELECT stream_version FROM eventstore.append('m-full', 'C', '{}', NULL, NULL);
SELECT eventstore.stream_version('m-full');

-- 0 (no stream), stream absent: appends.
SELECT stream_version FROM eventstore.append('m-new', 'A', '{}', expected_version => 0);
-- 0 (no stream), stream with events: fails.
SELECT stream_version FROM eventstore.append('m-full', 'X', '{}', expected_version => 0);
\echo :SQLSTATE
-- 0 again on the stream just created: fails, it exists now.
SELECT stream_version FROM eventstore.append('m-new', 'X', '{}', expected_version => 0);
\echo :SQLSTATE

-- -1 (stream exists), stream absent: fails.
SELECT stream_version FROM eventstore.append('m-absent', 'X', '{}', expected_version => -1);
\echo :SQLSTATE
-- -1 (stream exists), stream with events: appends.
SELECT stream_version FROM eventstore.append('m-full', 'D', '{}', expected_version => -1);

-- N, stream absent: fails.
SELECT stream_version FROM eventstore.append('m-absent', 'X', '{}', expected_version => 1);
\echo :SQLSTATE
-- N equal to the current version: appends.
SELECT stream_version FROM eventstore.append('m-full', 'E', '{}', expected_version => 4);
-- N lower than the current version: fails.
SELECT stream_version FROM eventstore.append('m-full', 'X', '{}', expected_version => 4);
\echo :SQLSTATE
-- N higher than the current version: fails.
SELECT stream_version FROM eventstore.append('m-full', 'X', '{}', expected_version => 6);
\echo :SQLSTATE

-- Nothing of the failed calls was written: no 'X' event anywhere, the absent
-- stream is still absent, the versions are those of the successful calls.
SELECT count(*) FILTER (WHERE event_type = 'X') AS failed_events_stored,
       count(*) - :events_before_matrix AS events_added
  FROM eventstore.events;
SELECT s, eventstore.stream_version(s)
  FROM unnest(ARRAY['m-any', 'm-new', 'm-absent', 'm-full']) AS s;
SELECT stream_version, event_type FROM eventstore.read_stream('m-full');

--
-- What is stored.
--
-- Generated event ids are non-null and unique; a given one is stored as is.
SELECT (eventstore.append('ids', 'T', '{}')).stream_version
  FROM generate_series(1, 5);
SELECT stream_version FROM eventstore.append('ids', 'T', '{}',
                                             event_id => 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11');
SELECT count(*) AS events, count(event_id) AS non_null_ids,
       count(DISTINCT event_id) AS distinct_ids
  FROM eventstore.read_stream('ids');
SELECT stream_version, event_id FROM eventstore.read_stream('ids', 6);

-- Metadata: NULL when not given, stored when given, JSON null = absent,
-- an empty object is an object.
SELECT stream_version FROM eventstore.append('meta', 'NoMeta', '{}');
SELECT stream_version FROM eventstore.append('meta', 'SqlNull', '{}', NULL);
SELECT stream_version FROM eventstore.append('meta', 'JsonNull', '{}', 'null');
SELECT stream_version FROM eventstore.append('meta', 'Given', '{}',
                                             '{"correlation": "c-1", "n": [1, 2]}');
SELECT stream_version FROM eventstore.append('meta', 'Empty', '{}', '{}');
SELECT stream_version, event_type, metadata, metadata IS NULL AS metadata_is_sql_null
  FROM eventstore.read_stream('meta');

-- Data of every JSON kind round-trips; JSON null data is stored as JSON null.
CREATE TEMP TABLE kinds (n int, d jsonb);
INSERT INTO kinds VALUES
  (1, '{"a": {"b": [1, 2.50, "x"]}, "c": null}'),
  (2, '[1, "two", {"three": 3}, [], {}]'),
  (3, '"a string with \"quotes\" and a \\ backslash"'),
  (4, '-12.3450e2'),
  (5, 'true'),
  (6, 'false'),
  (7, 'null'),
  (8, '{}'),
  (9, '[]');
DO $$
DECLARE
    k record;
BEGIN
    FOR k IN SELECT * FROM kinds ORDER BY n LOOP
        PERFORM eventstore.append('kinds', 'Kind', k.d, expected_version => k.n - 1);
    END LOOP;
END
$$;
SELECT e.stream_version, e.data, jsonb_typeof(e.data) AS kind,
       e.data = k.d AS equal, e.data IS NULL AS sql_null
  FROM eventstore.read_stream('kinds') e
  JOIN kinds k ON k.n = e.stream_version
 ORDER BY e.stream_version;

-- Stream ids and event types are stored exactly as given (case, spaces,
-- multibyte), and streams differing only in case or spaces are different
-- streams.  (Non-ASCII values are compared, not printed: their display width
-- depends on the server encoding.)
SELECT stream_version FROM eventstore.append('Café-1', 'Ünïcode Type', '{}');
SELECT stream_version FROM eventstore.append('café-1', 'lower', '{}');
SELECT stream_version FROM eventstore.append(' café-1 ', 'spaced', '{}');
SELECT stream_version FROM eventstore.append('Café-1', 'Ünïcode Type', '{}');
SELECT stream_id = 'Café-1' AS upper, stream_id = 'café-1' AS lower,
       stream_id = ' café-1 ' AS spaced, stream_version,
       event_type = 'Ünïcode Type' AS unicode_type
  FROM eventstore.events
 WHERE stream_id IN ('Café-1', 'café-1', ' café-1 ') ORDER BY global_position;

--
-- Appends within one statement see each other.
--
SELECT (eventstore.append('series', 'T', '{}')).stream_version
  FROM generate_series(1, 3);
SELECT eventstore.stream_version('series');

--
-- created_at is the transaction timestamp, the same for every event of the
-- transaction, and different transactions get their own.
--
BEGIN;
CREATE TEMP TABLE tx_start AS SELECT now() AS ts;
SELECT stream_version FROM eventstore.append('time', 'A', '{}');
SELECT pg_sleep(0.01);
SELECT stream_version FROM eventstore.append('time', 'B', '{}');
SELECT stream_version FROM eventstore.append('time-other', 'C', '{}');
SELECT bool_and(created_at = now()) AS created_at_is_now
  FROM eventstore.events WHERE stream_id IN ('time', 'time-other');
COMMIT;
SELECT count(*) AS events, bool_and(e.created_at = t.ts) AS all_equal_tx_start
  FROM eventstore.events e, tx_start t WHERE e.stream_id IN ('time', 'time-other');
SELECT stream_version FROM eventstore.append('time', 'Later', '{}');
SELECT stream_version, created_at > (SELECT ts FROM tx_start) AS later_than_first_tx
  FROM eventstore.read_stream('time');

--
-- Global positions are unique and follow the order of the appends across
-- streams; each stream's versions are 1..n without gaps.
--
SELECT i, (eventstore.append('il-' || (i % 3), 'T', jsonb_build_object('seq', i))).stream_version
  FROM generate_series(1, 12) AS i;
SELECT count(*) AS events, count(DISTINCT global_position) AS distinct_positions,
       bool_and(global_position > 0) AS positive
  FROM eventstore.events;
SELECT bool_and(rn = (data->>'seq')::int) AS positions_in_append_order
  FROM (SELECT data, row_number() OVER (ORDER BY global_position) AS rn
          FROM eventstore.events WHERE stream_id LIKE 'il-%') s;
SELECT stream_id, count(*) AS events, min(stream_version), max(stream_version),
       count(DISTINCT stream_version) AS distinct_versions
  FROM eventstore.events WHERE stream_id LIKE 'il-%' GROUP BY stream_id ORDER BY stream_id;
-- every stream of this test: versions 1..n, in the order of their positions
SELECT count(*) AS streams,
       bool_and(gap_free) AS all_gap_free
  FROM (SELECT stream_id,
               bool_and(stream_version = rn) AS gap_free
          FROM (SELECT stream_id, stream_version,
                       row_number() OVER (PARTITION BY stream_id ORDER BY global_position) AS rn
                  FROM eventstore.events) v
         GROUP BY stream_id) s;

--
-- Transactions: appends to several streams commit or roll back together,
-- and are visible to the transaction at once.
--
BEGIN;
SELECT stream_version FROM eventstore.append('tx-a', 'A', '{}');
SELECT stream_version FROM eventstore.append('tx-b', 'B', '{}');
SELECT stream_version FROM eventstore.append('tx-a', 'A2', '{}');
-- read-your-writes
SELECT eventstore.stream_version('tx-a') AS a, eventstore.stream_version('tx-b') AS b;
SELECT stream_id, stream_version, event_type FROM eventstore.read_stream('tx-a');
ROLLBACK;
SELECT eventstore.stream_version('tx-a') AS a, eventstore.stream_version('tx-b') AS b,
       (SELECT count(*) FROM eventstore.events WHERE stream_id LIKE 'tx-%') AS events;

BEGIN;
SELECT stream_version FROM eventstore.append('tx-a', 'A', '{}');
SELECT stream_version FROM eventstore.append('tx-b', 'B', '{}');
COMMIT;
SELECT eventstore.stream_version('tx-a') AS a, eventstore.stream_version('tx-b') AS b;

-- A failing append aborts the caller's transaction: earlier appends of it are gone.
BEGIN;
SELECT stream_version FROM eventstore.append('tx-a', 'A2', '{}');
SELECT stream_version FROM eventstore.append('tx-b', 'X', '{}', expected_version => 7);
\echo :SQLSTATE
COMMIT;
SELECT eventstore.stream_version('tx-a') AS a, eventstore.stream_version('tx-b') AS b;

-- Savepoints: ROLLBACK TO undoes exactly the appends after the savepoint,
-- and the next append continues from the version before it.
BEGIN;
SELECT stream_version FROM eventstore.append('tx-a', 'KeptBefore', '{}');
SAVEPOINT sp;
SELECT stream_version FROM eventstore.append('tx-a', 'Undone', '{}');
SELECT stream_version FROM eventstore.append('tx-b', 'Undone', '{}');
SELECT stream_version FROM eventstore.append('tx-c', 'Undone', '{}');
ROLLBACK TO SAVEPOINT sp;
SELECT eventstore.stream_version('tx-a') AS a, eventstore.stream_version('tx-b') AS b,
       eventstore.stream_version('tx-c') AS c;
SELECT stream_version FROM eventstore.append('tx-a', 'KeptAfter', '{}', expected_version => 2);
-- A version conflict inside a savepoint: roll back to it and carry on.
SAVEPOINT retry;
SELECT stream_version FROM eventstore.append('tx-b', 'X', '{}', expected_version => 0);
\echo :SQLSTATE
ROLLBACK TO SAVEPOINT retry;
SELECT stream_version FROM eventstore.append('tx-b', 'KeptAfter', '{}', expected_version => 1);
COMMIT;
SELECT stream_id, stream_version, event_type
  FROM eventstore.events WHERE stream_id LIKE 'tx-%' ORDER BY stream_id, stream_version;

-- Read-your-writes inside PL/pgSQL, statement after statement.
DO $$
DECLARE
    r eventstore.append_result;
BEGIN
    r := eventstore.append('plpgsql', 'A', '{"n": 1}');
    RAISE NOTICE 'appended version %, stream_version() says %, read_stream() returns % event(s)',
        r.stream_version, eventstore.stream_version('plpgsql'),
        (SELECT count(*) FROM eventstore.read_stream('plpgsql'));
    r := eventstore.append('plpgsql', 'B', '{"n": 2}', expected_version => 1);
    RAISE NOTICE 'appended version %, last position is the newest: %',
        r.stream_version,
        r.global_position = (SELECT max(global_position) FROM eventstore.read_stream('plpgsql'));
END
$$;

--
-- The events table is append-only, for the superuser too.
--
SELECT count(*) AS events_before FROM eventstore.events \gset
UPDATE eventstore.events SET data = '{}' WHERE stream_id = 's1';
\echo :SQLSTATE
DELETE FROM eventstore.events WHERE stream_id = 's1';
\echo :SQLSTATE
DELETE FROM eventstore.events;
\echo :SQLSTATE
TRUNCATE eventstore.events;
\echo :SQLSTATE
-- session_replication_role = replica disables ordinary triggers; not these.
SET session_replication_role = replica;
UPDATE eventstore.events SET data = '{}' WHERE stream_id = 's1';
\echo :SQLSTATE
DELETE FROM eventstore.events;
\echo :SQLSTATE
TRUNCATE eventstore.events;
\echo :SQLSTATE
RESET session_replication_role;
SELECT count(*) = :events_before AS nothing_changed,
       (SELECT data FROM eventstore.events WHERE stream_id = 's1' AND stream_version = 1)
  FROM eventstore.events;

DROP EXTENSION eventstore;
