--
-- eventstore.read_all() and eventstore.global_horizon(): the global log as
-- one session sees it -- paging, limits, filters, argument errors, the
-- transaction's own appends, PREPARE TRANSACTION, REPEATABLE READ.
--
-- Concurrency (in-flight appenders, unrelated transactions, rollbacks seen
-- from other sessions) is covered by the isolation specs read_all_*.
--
-- The extension is created afresh, so positions start at 1 and are
-- deterministic: this session is the only appender.
--
CREATE EXTENSION eventstore;

-- An empty log: nothing to read, the horizon is 0.
SELECT count(*) AS empty_log FROM eventstore.read_all();
SELECT eventstore.global_horizon() AS empty_horizon;

-- Ten events in eight streams.  The stream ids test the prefix filter:
-- "Order-3" differs from "order-" in case only, "order_x" and "order%2"
-- contain LIKE wildcards, "ordre-1" shares the first bytes only.  Event type
-- "created" differs from "Created" in case only.
SELECT stream_version, global_position FROM eventstore.append_events('order-1', '[
    {"type": "Created", "data": {"n": 1}},
    {"type": "Paid", "data": {"n": 2}, "metadata": {"m": 2}}
  ]');
SELECT stream_version, global_position FROM eventstore.append('customer-1', 'Registered', '{"n": 3}');
SELECT stream_version, global_position FROM eventstore.append('order-2', 'Created', '{"n": 4}');
SELECT stream_version, global_position FROM eventstore.append('order-1', 'Shipped', '{"n": 5}');
SELECT stream_version, global_position FROM eventstore.append('Order-3', 'Created', '{"n": 6}');
SELECT stream_version, global_position FROM eventstore.append('order_x', 'Created', '{"n": 7}');
SELECT stream_version, global_position FROM eventstore.append('order%2', 'Created', '{"n": 8}');
SELECT stream_version, global_position FROM eventstore.append('customer-1', 'created', '{"n": 9}');
SELECT stream_version, global_position FROM eventstore.append('ordre-1', 'Paid', '{"n": 10}');

-- The whole log, ascending, with defaults.
SELECT global_position, stream_id, stream_version, event_type, data, metadata
  FROM eventstore.read_all();
-- Every column is what the events table holds, in ascending position.
SELECT count(*) AS events,
       bool_and(e.stream_id = t.stream_id AND e.stream_version = t.stream_version
                AND e.event_id = t.event_id AND e.event_type = t.event_type
                AND e.data = t.data AND e.metadata IS NOT DISTINCT FROM t.metadata
                AND e.created_at = t.created_at) AS same_as_table
  FROM eventstore.read_all() e
  JOIN eventstore.events t USING (global_position);
SELECT array_agg(global_position) AS positions,
       array_agg(global_position) = array_agg(global_position ORDER BY global_position) AS ascending
  FROM eventstore.read_all();

-- Nothing is in flight: the horizon is the last position.
SELECT eventstore.global_horizon() AS horizon,
       eventstore.global_horizon() = (SELECT max(global_position) FROM eventstore.events) AS is_last_position;

-- Paging: each page starts after the last position of the previous one.
SELECT global_position, stream_id, event_type FROM eventstore.read_all(0, 3);
SELECT global_position, stream_id, event_type FROM eventstore.read_all(3, 3);
SELECT global_position, stream_id, event_type FROM eventstore.read_all(6, 3);
SELECT global_position, stream_id, event_type FROM eventstore.read_all(9, 3);
SELECT count(*) AS after_last FROM eventstore.read_all(10, 3);
-- A position in the middle of a page: strictly after it.
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(4);
-- Far beyond the end.
SELECT count(*) AS beyond_end FROM eventstore.read_all(1000);
SELECT count(*) AS far_beyond_end FROM eventstore.read_all(9223372036854775807);

-- A follower passes back the last position it received, page by page, and
-- receives every event exactly once, in order.
DO $$
DECLARE
  last_pos bigint := 0;
  seen     bigint[] := '{}';
  pages    int := 0;
  got      bigint[];
BEGIN
  LOOP
    SELECT array_agg(global_position ORDER BY global_position) INTO got
      FROM eventstore.read_all(last_pos, 4);
    EXIT WHEN got IS NULL;
    pages := pages + 1;
    seen := seen || got;
    last_pos := got[array_length(got, 1)];
  END LOOP;
  RAISE NOTICE 'pages %, positions %, same as table %', pages, seen,
    seen = (SELECT array_agg(global_position ORDER BY global_position) FROM eventstore.events);
END $$;

-- max_count: at most that many; NULL means no limit; 0 means nothing.
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(0, 1);
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(2, 5);
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(0, NULL);
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(0, 9223372036854775807);
SELECT count(*) AS max_count_0 FROM eventstore.read_all(0, 0);
SELECT count(*) AS max_count_0 FROM eventstore.read_all(5, 0);
SELECT count(*) AS max_count_0_filtered FROM eventstore.read_all(0, 0, ARRAY['Created'], 'order-');

-- event_types: exact, case-sensitive matches; NULL means every type.
SELECT global_position, stream_id, event_type FROM eventstore.read_all(0, 100, ARRAY['Created']);
SELECT global_position, stream_id, event_type FROM eventstore.read_all(0, 100, ARRAY['created']);
SELECT global_position, stream_id, event_type FROM eventstore.read_all(0, 100, ARRAY['Paid', 'Registered']);
SELECT count(*) AS types_null FROM eventstore.read_all(0, 100, NULL);
SELECT count(*) AS no_such_type FROM eventstore.read_all(0, 100, ARRAY['Create']);
SELECT count(*) AS no_such_type FROM eventstore.read_all(0, 100, ARRAY['Created ']);
SELECT count(*) AS no_such_type FROM eventstore.read_all(0, 100, ARRAY['%']);
-- An empty array matches nothing.
SELECT count(*) AS types_empty FROM eventstore.read_all(0, 100, '{}');
SELECT count(*) AS types_empty FROM eventstore.read_all(0, 100, ARRAY[]::text[]);
-- NULL elements are ignored: alone they leave an empty list.
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(0, 100, ARRAY['Paid', NULL]);
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(0, 100, ARRAY[NULL, 'Paid', NULL]);
SELECT count(*) AS types_only_null FROM eventstore.read_all(0, 100, ARRAY[NULL]::text[]);
SELECT count(*) AS types_only_null FROM eventstore.read_all(0, 100, ARRAY[NULL, NULL]::text[]);
-- Duplicates in the list do not duplicate events.
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(0, 100, ARRAY['Paid', 'Paid']);
-- max_count counts matching events, not the events scanned.
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(0, 2, ARRAY['Created']);
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(4, 2, ARRAY['Created']);
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(7, 2, ARRAY['Created']);
SELECT count(*) AS after_last_match FROM eventstore.read_all(8, 2, ARRAY['Created']);

-- stream_prefix: a bytewise prefix of the stream id; no wildcards, no case
-- folding.
SELECT global_position, stream_id FROM eventstore.read_all(0, 100, NULL, 'order-');
SELECT global_position, stream_id FROM eventstore.read_all(0, 100, NULL, 'order_');
SELECT global_position, stream_id FROM eventstore.read_all(0, 100, NULL, 'order%');
SELECT global_position, stream_id FROM eventstore.read_all(0, 100, NULL, 'Order');
SELECT global_position, stream_id FROM eventstore.read_all(0, 100, NULL, 'ord');
SELECT global_position, stream_id FROM eventstore.read_all(0, 100, NULL, 'order-1');
SELECT global_position, stream_id FROM eventstore.read_all(0, 100, NULL, 'customer');
SELECT count(*) AS no_match FROM eventstore.read_all(0, 100, NULL, 'order-1x');
SELECT count(*) AS no_match FROM eventstore.read_all(0, 100, NULL, 'ORDER-');
SELECT count(*) AS no_match FROM eventstore.read_all(0, 100, NULL, '%');
SELECT count(*) AS no_match FROM eventstore.read_all(0, 100, NULL, 'rder');
-- Every stream id starts with the empty string; NULL means no filter.
SELECT count(*) AS prefix_empty FROM eventstore.read_all(0, 100, NULL, '');
SELECT count(*) AS prefix_null FROM eventstore.read_all(0, 100, NULL, NULL);
-- max_count counts matching events.
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(0, 2, NULL, 'order-');
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(2, 2, NULL, 'order-');

-- Both filters: an event must match both.
SELECT global_position, stream_id, event_type FROM eventstore.read_all(0, 100, ARRAY['Created'], 'order-');
SELECT global_position, stream_id, event_type FROM eventstore.read_all(0, 100, ARRAY['Paid'], 'ord');
SELECT global_position, stream_id, event_type FROM eventstore.read_all(0, 100, ARRAY['Created', 'created'], 'customer-');
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(1, 1, ARRAY['Created'], 'order-');
SELECT count(*) AS no_match FROM eventstore.read_all(0, 100, ARRAY['Registered'], 'order-');
SELECT count(*) AS no_match FROM eventstore.read_all(0, 100, '{}', 'order-');
SELECT count(*) AS no_match FROM eventstore.read_all(0, 100, ARRAY[NULL]::text[], '');

-- Argument errors: 22023, and nothing is returned.
SELECT * FROM eventstore.read_all(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(-9223372036854775808, 10);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(0, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(5, -9223372036854775808, ARRAY['Created'], 'order-');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.read_all(0, -1, '{}');
\echo :LAST_ERROR_SQLSTATE

-- Default max_count is 1000; NULL lifts it.  1005 more events in one call
-- (positions 11 to 1015).
SELECT stream_version, global_position
  FROM eventstore.append_events('bulk-1',
         (SELECT jsonb_agg(jsonb_build_object('type', 'Bulk', 'data', i) ORDER BY i)
            FROM generate_series(1, 1005) i));
SELECT count(*) AS page, min(global_position), max(global_position)
  FROM eventstore.read_all(10);
SELECT count(*) AS page, min(global_position), max(global_position)
  FROM eventstore.read_all(10, NULL);
SELECT count(*) AS page, min(global_position), max(global_position)
  FROM eventstore.read_all();
SELECT count(*) AS page, min(global_position), max(global_position)
  FROM eventstore.read_all(1000);
SELECT count(*) AS page, min(global_position), max(global_position)
  FROM eventstore.read_all(0, NULL, NULL, 'bulk-');
SELECT eventstore.global_horizon() AS horizon;

-- A transaction reads its own appends, in every stream it appended to, and
-- its horizon covers them.
BEGIN;
SELECT stream_version, global_position FROM eventstore.append('order-9', 'Created', '{"n": 1016}');
SELECT stream_version, global_position FROM eventstore.append('customer-9', 'Registered', '{"n": 1017}');
SELECT global_position, stream_id, event_type FROM eventstore.read_all(1015);
SELECT eventstore.global_horizon() AS own_horizon;
SELECT global_position, stream_id FROM eventstore.read_all(1015, 100, ARRAY['Registered']);
SELECT global_position, stream_id FROM eventstore.read_all(1015, 100, NULL, 'order-');
COMMIT;
SELECT global_position, stream_id, event_type FROM eventstore.read_all(1015);

-- A transaction that rolls back: its own events were readable inside it;
-- after the rollback they are gone and the log is not stalled -- the next
-- committed event is readable at once.
BEGIN;
SELECT stream_version, global_position FROM eventstore.append('order-10', 'Created', '{"n": 1018}');
SELECT global_position, stream_id FROM eventstore.read_all(1017);
ROLLBACK;
SELECT count(*) AS rolled_back FROM eventstore.read_all(1017);
SELECT eventstore.global_horizon() AS horizon_after_rollback;
SELECT stream_version, global_position FROM eventstore.append('order-10', 'Created', '{"n": 1019}');
SELECT global_position, stream_id, data FROM eventstore.read_all(1017);
SELECT eventstore.global_horizon() AS horizon;

-- A savepoint rolled back inside a transaction: the rest of the transaction
-- stays readable to itself, and after COMMIT to everyone.
BEGIN;
SELECT stream_version, global_position FROM eventstore.append('order-11', 'Created', '{"n": 1020}');
SAVEPOINT s;
SELECT stream_version, global_position FROM eventstore.append('order-11', 'Paid', '{"n": 1021}');
ROLLBACK TO SAVEPOINT s;
SELECT stream_version, global_position FROM eventstore.append('order-11', 'Cancelled', '{"n": 1022}');
SELECT global_position, stream_id, stream_version, event_type FROM eventstore.read_all(1019);
COMMIT;
SELECT global_position, stream_id, stream_version, event_type FROM eventstore.read_all(1019);
SELECT eventstore.global_horizon() AS horizon;

-- PREPARE TRANSACTION of a transaction that appended is refused with 0A000:
-- the transaction rolls back, nothing is written, no prepared transaction is
-- left behind, and the log is not stalled.
BEGIN;
SELECT stream_version, global_position FROM eventstore.append('prep-1', 'Created', '{"n": 1023}');
PREPARE TRANSACTION 'eventstore_read_all_p1';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'eventstore_read_all_p1';
SELECT count(*) AS written FROM eventstore.read_stream('prep-1');
SELECT count(*) AS written FROM eventstore.events WHERE stream_id = 'prep-1';
SELECT count(*) AS readable FROM eventstore.read_all(1022);
SELECT stream_version, global_position FROM eventstore.append('prep-2', 'Created', '{"n": 1024}');
SELECT global_position, stream_id FROM eventstore.read_all(1022);
-- The same with appends to two streams, the first of them in a savepoint that
-- was released.
BEGIN;
SAVEPOINT s;
SELECT stream_version, global_position FROM eventstore.append('prep-3', 'Created', '{"n": 1025}');
RELEASE SAVEPOINT s;
SELECT stream_version, global_position FROM eventstore.append_events('prep-4', '[{"type": "Created", "data": {"n": 1026}}]');
PREPARE TRANSACTION 'eventstore_read_all_p2';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'eventstore_read_all_p2';
SELECT count(*) AS written FROM eventstore.events WHERE stream_id IN ('prep-3', 'prep-4');

-- A transaction that appended nothing can be prepared, even one that read
-- the log and wrote elsewhere; while it is prepared (holding its xid) it
-- does not hold readers back.
CREATE TABLE read_all_side (n int);
BEGIN;
SELECT count(*) AS events FROM eventstore.read_all(1000);
SELECT stream_version FROM eventstore.read_stream('order-1', NULL, 1);
INSERT INTO read_all_side VALUES (1);
PREPARE TRANSACTION 'eventstore_read_all_p3';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'eventstore_read_all_p3';
SELECT stream_version, global_position FROM eventstore.append('prep-5', 'Created', '{"n": 1027}');
SELECT global_position, stream_id FROM eventstore.read_all(1024);
SELECT eventstore.global_horizon() AS horizon_while_prepared;
COMMIT PREPARED 'eventstore_read_all_p3';
SELECT n FROM read_all_side;
SELECT count(*) AS prepared FROM pg_prepared_xacts;
DROP TABLE read_all_side;

-- REPEATABLE READ: read_all reads up to the horizon the background worker
-- recorded in eventstore.recorded_horizon, as the transaction's snapshot sees
-- it.  Wait (at most 10 s) for the worker to record the last position.
DO $$
DECLARE
  target   bigint := (SELECT max(global_position) FROM eventstore.events);
  deadline timestamptz := clock_timestamp() + interval '10 s';
  recorded bigint;
BEGIN
  LOOP
    SELECT max(position) INTO recorded FROM eventstore.recorded_horizon;
    EXIT WHEN recorded >= target;
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'the worker did not record horizon % within 10 s (recorded: %)',
        target, recorded;
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT position AS recorded FROM eventstore.recorded_horizon;

BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT eventstore.global_horizon() AS rr_horizon;
SELECT count(*) AS events, max(global_position) AS last FROM eventstore.read_all(0, NULL);
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(1020);
COMMIT;

-- The recorded horizon as the snapshot sees it bounds the read, and nothing
-- at or below it is skipped.  (The transaction lowers the row itself and
-- rolls back: the worker's record is untouched.)
BEGIN ISOLATION LEVEL REPEATABLE READ;
UPDATE eventstore.recorded_horizon SET position = 7;
SELECT eventstore.global_horizon() AS rr_horizon;
SELECT array_agg(global_position) AS positions FROM eventstore.read_all();
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(5);
SELECT count(*) AS beyond FROM eventstore.read_all(7);
SELECT array_agg(global_position) AS positions FROM eventstore.read_all(0, 100, ARRAY['Created']);
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
UPDATE eventstore.recorded_horizon SET position = 3;
SELECT eventstore.global_horizon() AS serializable_horizon;
SELECT array_agg(global_position) AS positions FROM eventstore.read_all();
ROLLBACK;
-- READ COMMITTED uses the live horizon, whatever the row says.
BEGIN;
UPDATE eventstore.recorded_horizon SET position = 3;
SELECT eventstore.global_horizon() AS rc_horizon;
SELECT count(*) AS events FROM eventstore.read_all(0, NULL);
ROLLBACK;
SELECT position AS recorded FROM eventstore.recorded_horizon;

-- A large event, stored out of line (TOAST), comes back whole.  The data is
-- deterministic but compresses poorly: 5000 concatenated md5 hashes.
SELECT stream_version, global_position FROM eventstore.append('big-1', 'Big',
         jsonb_build_object('blob', (SELECT string_agg(md5(i::text), '' ORDER BY i)
                                       FROM generate_series(1, 5000) i)));
SELECT global_position, length(data ->> 'blob') AS blob_length,
       md5(data::text) = (SELECT md5(t.data::text) FROM eventstore.events t
                           WHERE t.global_position = e.global_position) AS same_as_table
  FROM eventstore.read_all(1027) e;

DROP EXTENSION eventstore;

--
-- A restore (pg_restore copies the events, then sets the sequence) into a
-- database whose horizon was already computed: read_all must see the
-- restored events without waiting for an append.
--
CREATE EXTENSION eventstore;
SELECT count(*) AS empty_before_restore FROM eventstore.read_all();
INSERT INTO eventstore.events
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data)
VALUES (1, 1, now(), '00000000-0000-7000-8000-000000000001', 'restored', 'R', '{}'),
       (2, 2, now(), '00000000-0000-7000-8000-000000000002', 'restored', 'R', '{}');
SELECT setval('eventstore.global_position_seq', 2);
SELECT global_position, stream_id, stream_version FROM eventstore.read_all();
SELECT eventstore.global_horizon() AS horizon_after_restore;
-- and appends continue after the restored positions
SELECT * FROM eventstore.append('restored', 'R', '{}', expected_version => 2);

--
-- Result memory outlives single calls (src/read.c): several live results in
-- one query, rescans, an error in the middle of a query, a holdable cursor,
-- a result spilled to disk -- and afterwards only the kept block remains.
--
SELECT count(eventstore.append('mem-' || (g % 7), 'M', jsonb_build_object('g', g)))
  FROM generate_series(1, 2000) g;
SELECT count(*) FROM eventstore.read_all(0, 5) a, eventstore.read_all(0, 5) b;
SELECT count(*), sum(r.global_position) FROM generate_series(0, 20) g,
       LATERAL eventstore.read_all(g * 100, 3) r;
SELECT 1 / (global_position - 5) FROM eventstore.read_all(0, 10);
SELECT count(*) FROM eventstore.read_all(0, 10);
BEGIN;
DECLARE held CURSOR WITH HOLD FOR SELECT global_position FROM eventstore.read_all(0, 2000);
COMMIT;
FETCH ABSOLUTE 1500 FROM held;
CLOSE held;
SET work_mem = '64kB';
SELECT count(*), min(global_position), max(global_position) FROM eventstore.read_all(0, NULL);
SELECT count(*), min(stream_version), max(stream_version) FROM eventstore.read_stream('mem-3');
RESET work_mem;
SELECT total_bytes <= 1024 * 1024 AS only_the_kept_block
  FROM pg_backend_memory_contexts WHERE name = 'eventstore read results';

DROP EXTENSION eventstore;
