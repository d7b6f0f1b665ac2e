--
-- eventstore.read_stream() and eventstore.stream_version(): directions,
-- bounds, limits, and what a read returns.
--
CREATE EXTENSION eventstore;

-- Stream "r" has five events; its neighbours in index order ("q", "r-2",
-- "R", "r ") must never leak into reads of "r".
SELECT stream_version FROM eventstore.append_events('q', '[{"type": "q1", "data": 1}, {"type": "q2", "data": 2}]');
SELECT stream_version FROM eventstore.append_events('r', '[
    {"type": "e1", "data": {"n": 1}},
    {"type": "e2", "data": {"n": 2}, "metadata": {"m": 2}},
    {"type": "e3", "data": {"n": 3}}
  ]');
SELECT stream_version FROM eventstore.append('r-2', 'x1', '{}');
SELECT stream_version FROM eventstore.append('r', 'e4', '{"n": 4}');
SELECT stream_version FROM eventstore.append('R', 'X1', '{}');
SELECT stream_version FROM eventstore.append('r ', 'x1', '{}');
SELECT stream_version FROM eventstore.append('r', 'e5', '{"n": 5}', '{"m": 5}', 4);
SELECT stream_version FROM eventstore.append('s', 's1', '{}');

-- The whole stream, forward: every column of eventstore.event.
SELECT global_position > 0 AS pos_ok, stream_id, stream_version, event_id IS NOT NULL AS has_id,
       event_type, data, metadata, created_at IS NOT NULL AS has_created_at
  FROM eventstore.read_stream('r');
-- Rows are what the events table holds, and forward order is ascending
-- position as well as ascending version.
SELECT count(*) AS events,
       bool_and(e.global_position = t.global_position AND e.event_id = t.event_id
                AND e.event_type = t.event_type AND e.data = t.data
                AND e.metadata IS NOT DISTINCT FROM t.metadata
                AND e.created_at = t.created_at) AS same_as_table
  FROM eventstore.read_stream('r') e
  JOIN eventstore.events t ON t.stream_id = 'r' AND t.stream_version = e.stream_version;
SELECT array_agg(stream_version) AS versions,
       array_agg(global_position) = array_agg(global_position ORDER BY global_position) AS ascending_positions
  FROM eventstore.read_stream('r');

-- Forward from a version: versions >= from_version, ascending.
SELECT stream_version, event_type FROM eventstore.read_stream('r', 3);
SELECT stream_version, event_type FROM eventstore.read_stream('r', 5);
-- from_version 0 and NULL: from the start.
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r', 0);
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r', NULL);
-- From beyond the end: empty.
SELECT count(*) AS beyond_end FROM eventstore.read_stream('r', 6);
SELECT count(*) AS far_beyond_end FROM eventstore.read_stream('r', 9223372036854775807);

-- max_count limits, forward.
SELECT stream_version, event_type FROM eventstore.read_stream('r', NULL, 2);
SELECT stream_version, event_type FROM eventstore.read_stream('r', 2, 2);
SELECT stream_version, event_type FROM eventstore.read_stream('r', 4, 10);
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r', 1, 5);
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r', NULL, NULL);
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r', 1, 9223372036854775807);
-- max_count 0: empty, in both directions.
SELECT count(*) AS max_count_0 FROM eventstore.read_stream('r', NULL, 0);
SELECT count(*) AS max_count_0 FROM eventstore.read_stream('r', 2, 0);
SELECT count(*) AS max_count_0_backward FROM eventstore.read_stream('r', NULL, 0, true);

-- Backward with NULL from_version: from the end, descending.
SELECT stream_version, event_type, data, metadata FROM eventstore.read_stream('r', NULL, NULL, true);
SELECT stream_version, event_type FROM eventstore.read_stream('r', backward => true, max_count => 2);
-- Backward from the middle: versions <= from_version, descending.
SELECT stream_version, event_type FROM eventstore.read_stream('r', 3, NULL, true);
SELECT stream_version, event_type FROM eventstore.read_stream('r', 3, 2, true);
SELECT stream_version, event_type FROM eventstore.read_stream('r', 1, NULL, true);
-- Backward from beyond the end: from the end.
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r', 100, NULL, true);
-- Backward from 0: nothing lies at or below version 0.
SELECT count(*) AS backward_from_0 FROM eventstore.read_stream('r', 0, NULL, true);
-- backward => false is forward.
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r', 2, NULL, false);
-- Named arguments, as the contract names them.
SELECT stream_version FROM eventstore.read_stream(stream_id => 'r', from_version => 4,
                                                  max_count => 1, backward => true);
-- Backward order is descending position as well.
SELECT array_agg(global_position) = array_agg(global_position ORDER BY global_position DESC) AS descending_positions
  FROM eventstore.read_stream('r', NULL, NULL, true);

-- Paging forward and backward with max_count covers the stream exactly once.
SELECT array_agg(v) AS forward_pages
  FROM (SELECT p.stream_version AS v
          FROM generate_series(1, 5, 2) AS page_start,
               LATERAL eventstore.read_stream('r', page_start, 2) p) s;
SELECT array_agg(v) AS backward_pages
  FROM (SELECT p.stream_version AS v
          FROM generate_series(5, 1, -2) AS page_start,
               LATERAL eventstore.read_stream('r', page_start, 2, true) p) s;

-- Neighbouring streams are separate.
SELECT format('%L', stream_id) AS stream_id, stream_version, event_type FROM eventstore.read_stream('R');
SELECT format('%L', stream_id) AS stream_id, stream_version, event_type FROM eventstore.read_stream('r ');
SELECT format('%L', stream_id) AS stream_id, stream_version, event_type FROM eventstore.read_stream('r-2');
SELECT format('%L', stream_id) AS stream_id, stream_version, event_type FROM eventstore.read_stream('q', NULL, NULL, true);

-- A stream that does not exist: empty in every mode, version 0.
SELECT count(*) AS no_stream FROM eventstore.read_stream('nope');
SELECT count(*) AS no_stream FROM eventstore.read_stream('nope', 1, 10);
SELECT count(*) AS no_stream FROM eventstore.read_stream('nope', NULL, NULL, true);
SELECT count(*) AS no_stream FROM eventstore.read_stream('nope', 3, 1, true);
SELECT format('%L', s) AS stream_id, eventstore.stream_version(s)
  FROM unnest(ARRAY['r', 'q', 'R', 'r ', 'r-2', 's', 'nope', 'r-']) AS s;

-- A large (TOASTed) event reads back whole.
SELECT stream_version FROM eventstore.append('big', 'Big',
         jsonb_build_object('s', repeat('abcdefghij', 50000),
                            'a', (SELECT jsonb_agg(i) FROM generate_series(1, 20000) i)),
         jsonb_build_object('m', repeat('z', 100000)));
SELECT length(data->>'s') AS s_len, jsonb_array_length(data->'a') AS a_len,
       (data->'a'->>19999)::int AS last_a, length(metadata->>'m') AS m_len,
       data->>'s' = repeat('abcdefghij', 50000) AS s_equal
  FROM eventstore.read_stream('big');

--
-- Read-your-writes: reads in the appending transaction see its events, and
-- after a rollback nobody does.
--
BEGIN;
SELECT stream_version FROM eventstore.append('r', 'e6', '{"n": 6}', NULL, 5);
SELECT stream_version FROM eventstore.append_events('ryw', '[{"type": "a", "data": 1}, {"type": "b", "data": 2}]');
SELECT eventstore.stream_version('r') AS r, eventstore.stream_version('ryw') AS ryw;
SELECT stream_version, event_type FROM eventstore.read_stream('r', NULL, 2, true);
SELECT stream_id, stream_version, event_type FROM eventstore.read_stream('ryw');
ROLLBACK;
SELECT eventstore.stream_version('r') AS r, eventstore.stream_version('ryw') AS ryw,
       (SELECT count(*) FROM eventstore.read_stream('ryw')) AS ryw_events;

-- A cursor over read_stream keeps the rows it started with.
BEGIN;
DECLARE c CURSOR FOR SELECT stream_version FROM eventstore.read_stream('r', 4);
SELECT stream_version FROM eventstore.append('r', 'e6', '{"n": 6}', NULL, 5);
FETCH ALL FROM c;
CLOSE c;
SELECT array_agg(stream_version) AS versions_now FROM eventstore.read_stream('r', 4);
COMMIT;

-- The read functions are PARALLEL SAFE: they give the same answers when run
-- in a parallel worker, including the transaction's own appends.  The
-- setting that forces it: force_parallel_mode until PostgreSQL 15,
-- debug_parallel_query from 16.
SELECT CASE WHEN current_setting('server_version_num')::int < 160000
            THEN 'force_parallel_mode' ELSE 'debug_parallel_query' END AS parallel_guc \gset
SET :parallel_guc = on;
BEGIN;
SELECT stream_version FROM eventstore.append('r', 'e7', '{"n": 7}', NULL, 6);
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r', 5);
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r', 6, NULL, true);
SELECT eventstore.stream_version('r');
ROLLBACK;
RESET :parallel_guc;


--
-- Rows as they are read (0.9.0).  In FROM, read_stream is a custom scan
-- that returns each row as it reads it: no tuplestore, no temporary file,
-- and a query that stops early stops the read.
--
EXPLAIN (COSTS OFF) SELECT * FROM eventstore.read_stream('r');
EXPLAIN (COSTS OFF) SELECT * FROM eventstore.read_stream('r') LIMIT 2;
BEGIN;
-- LIMIT stops the read; reading again in the same transaction is whole.
SELECT stream_version FROM eventstore.read_stream('r') LIMIT 2;
SELECT stream_version FROM eventstore.read_stream('r', NULL, NULL, true) LIMIT 1;
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r');
-- A cursor fetched in part, then closed; a scroll cursor goes back.
DECLARE part CURSOR FOR SELECT stream_version FROM eventstore.read_stream('r');
FETCH 2 FROM part;
CLOSE part;
DECLARE back SCROLL CURSOR FOR SELECT stream_version FROM eventstore.read_stream('r', NULL, 3);
FETCH 2 FROM back;
FETCH BACKWARD 1 FROM back;
FETCH ALL FROM back;
CLOSE back;
-- An error in the middle of a read: the transaction reads on after it.
SAVEPOINT before_error;
SELECT 1 / (stream_version - 3) AS fails_at_3 FROM eventstore.read_stream('r');
\echo :SQLSTATE
ROLLBACK TO before_error;
SELECT array_agg(stream_version) AS versions FROM eventstore.read_stream('r');
-- A PL/pgSQL loop that leaves early, then reads again.
DO $$
DECLARE
    e eventstore.event;
    n int := 0;
BEGIN
    FOR e IN SELECT * FROM eventstore.read_stream('r') LOOP
        n := n + 1;
        EXIT WHEN n = 2;
    END LOOP;
    RAISE NOTICE 'left after %', n;
    FOR e IN SELECT * FROM eventstore.read_stream('r', NULL, NULL, true) LOOP
        n := n + 1;
    END LOOP;
    RAISE NOTICE 'then read %', n - 2;
END
$$;
COMMIT;
-- The whole row, a condition on the scan, the scan rescanned in a join.
SELECT e.stream_version, e::text = (SELECT t::text FROM eventstore.read_stream('r', e.stream_version, 1) t) AS same_row
  FROM eventstore.read_stream('r', NULL, 2) e;
SELECT array_agg(e.stream_version) AS filtered
  FROM eventstore.read_stream('r') e WHERE e.stream_version > 1 AND e.event_type <> 'e4';
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
SELECT n, count(e.stream_version) AS at_most_n
  FROM generate_series(1, 3) n JOIN eventstore.read_stream('r') e ON e.stream_version <= n
 GROUP BY n ORDER BY n;
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_material;
-- Called as a function -- in a select list, WITH ORDINALITY, with
-- arguments from another relation (LATERAL) -- it returns the same rows.
SELECT (eventstore.read_stream('r', NULL, 2)).stream_version;
SELECT stream_version, ordinality FROM eventstore.read_stream('r', 4) WITH ORDINALITY;
SELECT s, array_agg(e.stream_version) AS versions
  FROM unnest(ARRAY['q', 'r-2']) s, LATERAL eventstore.read_stream(s) e GROUP BY s ORDER BY s;
-- Errors keep their SQLSTATEs in FROM and as a function.
SELECT * FROM eventstore.read_stream(NULL);
\echo :SQLSTATE
SELECT eventstore.read_stream(NULL);
\echo :SQLSTATE
SELECT * FROM eventstore.read_stream('r', -1);
\echo :SQLSTATE
SELECT eventstore.read_stream('r', NULL, -1);
\echo :SQLSTATE
-- The arguments are evaluated once, also a volatile one.
SELECT count(*) AS once FROM eventstore.read_stream(CASE WHEN random() >= 0 THEN 'r' END);


-- The right to read is EXECUTE on read_stream, checked when the custom scan
-- starts, as the function scan checks it: also under EXPLAIN, in a plan
-- prepared before the right was revoked, and through a view.
CREATE ROLE es_rs_reader;
CREATE ROLE es_rs_nobody;
GRANT USAGE ON SCHEMA eventstore TO es_rs_reader, es_rs_nobody;
GRANT EXECUTE ON FUNCTION eventstore.read_stream(text, bigint, bigint, boolean) TO es_rs_reader;
CREATE VIEW public.rs_view AS SELECT stream_version FROM eventstore.read_stream('r', NULL, 2);
GRANT SELECT ON public.rs_view TO es_rs_reader, es_rs_nobody;
SET ROLE es_rs_nobody;
SELECT stream_version FROM eventstore.read_stream('r');
\echo :SQLSTATE
EXPLAIN (COSTS OFF) SELECT stream_version FROM eventstore.read_stream('r');
\echo :SQLSTATE
SELECT stream_version FROM eventstore.read_stream('r') WITH ORDINALITY;
\echo :SQLSTATE
SELECT eventstore.read_stream('r');
\echo :SQLSTATE
SELECT * FROM public.rs_view;
\echo :SQLSTATE
RESET ROLE;
SET ROLE es_rs_reader;
SELECT array_agg(stream_version) AS reader_reads FROM eventstore.read_stream('r');
SELECT array_agg(stream_version) AS through_view FROM public.rs_view;
PREPARE rs_q AS SELECT count(*) FROM eventstore.read_stream('r');
EXECUTE rs_q;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION eventstore.read_stream(text, bigint, bigint, boolean) FROM es_rs_reader;
SET ROLE es_rs_reader;
EXECUTE rs_q;
\echo :SQLSTATE
RESET ROLE;
DEALLOCATE rs_q;
DROP VIEW public.rs_view;
DROP OWNED BY es_rs_reader, es_rs_nobody;
DROP ROLE es_rs_reader, es_rs_nobody;

--
-- Read once per row (a FunctionScan) over index entries of rows dead to
-- everyone (0.9.0 fix): the index scan remembers such entries in a list it
-- allocates in the memory context current at the step; stepped in the
-- per-call context, reset between rows, it wrote into freed memory (seen
-- under valgrind and on assert-enabled builds; on PostgreSQL 17 a backend
-- crashed later in malloc).  A superuser removes rows here as retention
-- would; the kept rows are large (TOASTed), as in the crash.  Without the
-- fix this test crashed the server on PostgreSQL 17.
SELECT 1 AS appended FROM eventstore.append_events('dead-rows',
    (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('n', g,
                'pad', CASE WHEN g % 7 = 0
                            THEN (SELECT string_agg(md5(h::text || g), '') FROM generate_series(1, 400) h)
                            ELSE 'x' END)))
       FROM generate_series(1, 400) g));
ALTER TABLE eventstore.events DISABLE TRIGGER USER;
DELETE FROM eventstore.events WHERE stream_id = 'dead-rows' AND stream_version % 7 <> 0;
ALTER TABLE eventstore.events ENABLE TRIGGER USER;
SELECT count(*) AS live, sum(stream_version) AS versions
  FROM eventstore.read_stream('dead-rows') WITH ORDINALITY;
SELECT count(*) AS live, sum(stream_version) AS versions
  FROM eventstore.read_stream('dead-rows', backward => true) WITH ORDINALITY;
SELECT count(*) AS live FROM eventstore.read_stream('dead-rows') WITH ORDINALITY;

DROP EXTENSION eventstore;
