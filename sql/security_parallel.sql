--
-- Parallel safety (issue 12, item 9): every function and view of the
-- extension, called in a parallel plan, works, and its label is the one
-- documented:
--
--   PARALLEL SAFE    read-only, reads only what the statement's snapshot
--                    shows, runs in a worker: read_stream, stream_version,
--                    stream_info, get_stream_metadata, subscription_parked and
--                    the internal subscription_check_name,
--                    subscription_not_found, subscription_deliverable
--   PARALLEL UNSAFE  everything else: it writes, takes locks, draws
--                    positions, takes a newer snapshot than the statement's
--                    (read_all and global_horizon compute the horizon and
--                    then take the latest snapshot, which PostgreSQL forbids
--                    in parallel mode), or calls a user's function whose
--                    safety it cannot know (aggregate_stream, load_state,
--                    fold, handle_command)
--
-- Nothing is RESTRICTED: a restricted function runs in the leader while the
-- query is in parallel mode, where none of the above is allowed either.
--
-- Each call runs twice: alone under debug_parallel_query = regress (a SAFE
-- function then runs in a worker), and as an InitPlan of a parallel scan
-- (the leader is in parallel mode when it evaluates it).  Output: violations
-- only.
--
CREATE EXTENSION eventstore;
\set VERBOSITY terse
-- The fixture (test/security_fixture.sql): a schema of helpers, a stream
-- of each kind, a projection of each mode, a snapshot, a snapshot policy,
-- a subscription with leased and parked events, an archive policy.
-- regress_sec.functions lists every function of the extension, those
-- taking an argument of type internal too.
\set sec_all_functions true
\set sec_archive_after '100 years'
\i test/security_fixture.sql

-- A table that is scanned in parallel.
CREATE TABLE regress_sec.big AS SELECT g AS n FROM generate_series(1, 10000) AS g;
ANALYZE regress_sec.big;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
-- The setting that forces parallel plans: force_parallel_mode until
-- PostgreSQL 15, debug_parallel_query from 16.
SELECT CASE WHEN current_setting('server_version_num')::int < 160000
            THEN 'force_parallel_mode' ELSE 'debug_parallel_query' END AS parallel_guc \gset
SET regress_sec.parallel_guc = :'parallel_guc';

-- The labels documented: SAFE ones listed, every other function UNSAFE.
CREATE TABLE regress_sec.labels (name text PRIMARY KEY, label "char" NOT NULL);
INSERT INTO regress_sec.labels VALUES
    ('read_stream', 's'), ('stream_version', 's'), ('stream_info', 's'),
    ('get_stream_metadata', 's'), ('subscription_parked', 's'),
    ('subscription_check_name', 's'), ('subscription_not_found', 's'),
    ('subscription_deliverable', 's'), ('snapshot_tag', 's'),
    ('_check_event_types', 's'), ('_check_interval', 's'), ('_check_count', 's'),
    ('_is_member', 's'), ('_check_owner', 's'), ('_check_stream_id', 's'),
    ('_check_expected', 's'), ('_event_matches', 's'), ('_iso_interval', 's'),
    ('_function_by_name', 's'), ('is_distributed', 's'), ('_vector_after', 's'),
    ('_stream_lane', 's');

SELECT f AS function, p.proparallel AS label,
       coalesce(l.label, 'u') AS documented
  FROM regress_sec.functions JOIN pg_proc p ON p.oid = f
  LEFT JOIN regress_sec.labels l USING (name)
 WHERE p.proparallel <> coalesce(l.label, 'u')
 ORDER BY 1::text;

-- Every function and view, in both kinds of parallel plan.
CREATE TABLE regress_sec.results (what text, form text, parallel boolean,
                                  sqlstate text, message text);
DO $$
DECLARE
    r record;
    q text;
    plan text;
    line text;
BEGIN
    FOR r IN
        SELECT f::text AS what, regress_sec.call(f) AS call,
               p.proparallel <> 'u' AS may_be_parallel
          FROM regress_sec.functions JOIN pg_proc p ON p.oid = f
         WHERE p.prorettype <> 'trigger'::regtype
           AND NOT ('internal'::regtype = ANY (p.proargtypes))
        UNION ALL
        SELECT v.r::text, 'SELECT * FROM ' || v.r::text, true
          FROM regress_sec.relations AS v WHERE v.relkind = 'v'
         ORDER BY 1
    LOOP
        FOR form IN 1..2 LOOP
            IF form = 1 THEN
                q := r.call;
            ELSE
                q := 'SELECT count(*) FROM regress_sec.big WHERE n > (SELECT count(*) FROM ('
                     || r.call || ') AS c)';
            END IF;
            BEGIN
                -- "regress" hides the Gather from EXPLAIN, "on" shows it
                PERFORM set_config(current_setting('regress_sec.parallel_guc'), CASE form WHEN 1 THEN 'on' ELSE 'off' END, true);
                plan := '';
                FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
                    plan := plan || line || E'\n';
                END LOOP;
                PERFORM set_config(current_setting('regress_sec.parallel_guc'), CASE form WHEN 1 THEN 'regress' ELSE 'off' END, true);
                EXECUTE q;
                RAISE EXCEPTION USING ERRCODE = 'ZZ999';   -- undo what the call did
            EXCEPTION WHEN OTHERS THEN
                INSERT INTO regress_sec.results
                     VALUES (r.what, CASE form WHEN 1 THEN 'forced' ELSE 'initplan' END,
                             plan ~ 'Gather', nullif(SQLSTATE, 'ZZ999'),
                             CASE WHEN SQLSTATE <> 'ZZ999' THEN SQLERRM END);
            END;
        END LOOP;
    END LOOP;
END $$;

-- No call fails because of the parallel plan (XX000 or "... during a
-- parallel operation").  The fixture makes every public call succeed;
-- internal functions called directly may refuse as they always do:
-- implementations called without their public function (42501), checks
-- given the fixture's arguments (42501, 42704, 42710).
SELECT what, form, sqlstate, message FROM regress_sec.results
 WHERE sqlstate IS NOT NULL
   AND NOT (what LIKE 'eventstore.\_%' AND sqlstate IN ('42501', '42704', '42710'))
 ORDER BY 1, 2;
SELECT count(*) FILTER (WHERE what NOT LIKE 'eventstore.\_%') AS public_refused,
       count(*) FILTER (WHERE message LIKE '%parallel%' OR sqlstate = 'XX000') AS parallel_errors
  FROM regress_sec.results WHERE sqlstate IS NOT NULL;
-- SAFE functions run in a worker (forced) and SAFE or RESTRICTED ones next
-- to a parallel scan (initplan); UNSAFE ones keep the plan serial.
SELECT what, form, parallel FROM regress_sec.results AS r
  JOIN regress_sec.functions AS f ON f.f::text = r.what
  JOIN pg_proc AS p ON p.oid = f.f
 WHERE r.sqlstate IS NULL
   AND r.parallel <> CASE r.form WHEN 'forced' THEN p.proparallel = 's' ELSE p.proparallel <> 'u' END
 ORDER BY 1, 2;
SELECT count(DISTINCT what) > 60 AS functions_and_views_tested FROM regress_sec.results;

-- The reported cases.  read_all as an InitPlan of a parallel scan (this
-- failed with XX000 "cannot update SecondarySnapshot during a parallel
-- operation"):
SELECT count(*) FROM regress_sec.big
 WHERE n > (SELECT max(stream_version) FROM eventstore.read_all(0, NULL));
SELECT count(*) FROM regress_sec.big WHERE n > (SELECT eventstore.global_horizon()) + 9990;
-- subscription_status under debug_parallel_query (it calls global_horizon):
SET :parallel_guc = regress;
SELECT name, position IS NOT NULL AS has_position FROM eventstore.subscription_status ORDER BY 1;
SELECT stream_version, event_type FROM eventstore.read_all(0, 3) ORDER BY 1;
RESET :parallel_guc;

-- An evolve that writes, folded next to a parallel scan: a user's function
-- may do anything, so the fold must keep the plan serial (it failed with
-- "cannot execute INSERT during a parallel operation").
CREATE TABLE regress_sec.log (v bigint);
CREATE FUNCTION regress_sec.evolve_logging(s bigint, e eventstore.event) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO regress_sec.log VALUES (e.stream_version);
    RETURN s + 1;
END $$;
SELECT count(*) FROM regress_sec.big
 WHERE n > (SELECT eventstore.aggregate_stream('sec-1', 'regress_sec.evolve_logging(bigint,eventstore.event)',
                                               0::bigint, use_snapshots => false));
SELECT count(*) FROM regress_sec.big
 WHERE n > (SELECT (eventstore.load_state('sec-1', 'regress_sec.evolve_logging(bigint,eventstore.event)',
                                          0::bigint, use_snapshots => false)).state);
SELECT count(*) FROM regress_sec.big
 WHERE n > (SELECT eventstore.fold(e, 'regress_sec.evolve_logging(bigint,eventstore.event)', 0::bigint
                                   ORDER BY e.stream_version)
              FROM eventstore.read_stream('sec-1') AS e);
SELECT count(*) AS evolve_calls FROM regress_sec.log;

-- SAFE reads in a worker, on streams with settings, archived, deleted.
SELECT eventstore.delete_stream('sec-2');
SET :parallel_guc = regress;
SELECT s, eventstore.stream_version(s) AS version,
       (SELECT count(*) FROM eventstore.read_stream(s)) AS events,
       (eventstore.stream_info(s)).state
  FROM unnest(ARRAY['sec-1', 'sec-2', 'sec-arch', 'sec-set', 'sec-none']) AS s ORDER BY 1;
SELECT * FROM eventstore.get_stream_metadata('sec-set');
RESET :parallel_guc;

RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
DROP SCHEMA regress_sec CASCADE;
DROP EXTENSION eventstore CASCADE;
