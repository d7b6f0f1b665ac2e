--
-- Statistics and progress (0.9.0): eventstore.store_stats counts what
-- committed transactions appended (not what was rolled back, also to a
-- savepoint), conflicts when raised, recognised retries and inline handler
-- calls; eventstore.reset_stats() zeroes it; eventstore.progress shows an
-- operation while its transaction runs.  Who may read and reset.
--
-- The counters are the database's since the server started: earlier tests
-- appended here, so this one resets them first.  The background worker's
-- own counters (notifications, duties) move when it likes: only their
-- shape and their reset are checked.
--
CREATE EXTENSION eventstore;
\set VERBOSITY sqlstate

SELECT eventstore.reset_stats();
SELECT appends, events, bytes, conflicts, retries, inline_calls, inline_time,
       stats_reset > now() - interval '1 minute' AS just_reset
  FROM eventstore.store_stats;

-- committed appends count, with their events and bytes of data and metadata
SELECT eventstore.append('st-1', 'Opened', '{"owner": "ann"}', '{"by": "test"}');
SELECT eventstore.append_events('st-2', '[{"type": "A", "data": {"n": 1}},
                                          {"type": "B", "data": {"n": 2}, "metadata": {"m": true}}]');
-- an empty batch is an append of no event
SELECT eventstore.append_events('st-3', '[]');
SELECT appends, events,
       bytes = (SELECT sum(pg_column_size(data::text::jsonb) - 4 +
                           coalesce(pg_column_size(metadata::text::jsonb) - 4, 0))
                  FROM eventstore.events WHERE stream_id IN ('st-1', 'st-2')) AS bytes_match,
       conflicts, retries
  FROM eventstore.store_stats;

-- rolled back: not counted; rolled back to a savepoint: not counted either;
-- a committed subtransaction is
BEGIN;
SELECT eventstore.append('st-1', 'Renamed', '{}');
ROLLBACK;
BEGIN;
SAVEPOINT a;
SELECT eventstore.append('st-1', 'Renamed', '{}');
SAVEPOINT b;
SELECT eventstore.append('st-1', 'Renamed', '{}');
ROLLBACK TO SAVEPOINT b;
RELEASE SAVEPOINT a;
SAVEPOINT c;
SELECT eventstore.append('st-4', 'X', '{}');
ROLLBACK TO SAVEPOINT c;
-- not yet: the transaction is open
SELECT appends, events FROM eventstore.store_stats;
COMMIT;
SELECT appends, events FROM eventstore.store_stats;

-- a conflict counts when raised, though its transaction rolls back
SELECT eventstore.append('st-1', 'X', '{}', expected_version => 7);
SELECT eventstore.append('st-new', 'X', '{}', expected_version => -1);
SELECT appends, events, conflicts FROM eventstore.store_stats;

-- a retry (the same events with the same ids) appends nothing and counts
SELECT eventstore.append('st-5', 'X', '{}', event_id => '0190b3c2-0000-7000-8000-00000000aaaa');
SELECT eventstore.append('st-5', 'X', '{}', event_id => '0190b3c2-0000-7000-8000-00000000aaaa');
-- ... a call overlapping stored ids without repeating them is a conflict
SELECT eventstore.append_events('st-5', '[{"type": "X", "data": {}, "id": "0190b3c2-0000-7000-8000-00000000aaaa"},
                                          {"type": "X", "data": {}, "id": "0190b3c2-0000-7000-8000-00000000bbbb"}]');
SELECT appends, events, conflicts, retries FROM eventstore.store_stats;

-- inline handlers: each call counted, with its time
CREATE TABLE st_seen (n bigint);
CREATE FUNCTION st_handler(e eventstore.event) RETURNS void
    LANGUAGE sql AS 'INSERT INTO st_seen VALUES (e.stream_version)';
SELECT eventstore.create_projection('st_proj', 'st_handler(eventstore.event)',
                                    stream_prefix => 'st-inline', replay => false);
SELECT eventstore.append_events('st-inline', '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
SELECT eventstore.append('st-other', 'A', '{}');
SELECT inline_calls, inline_time > 0 AS timed, (SELECT count(*) FROM st_seen) AS seen
  FROM eventstore.store_stats;
SELECT eventstore.drop_projection('st_proj');

-- in flight: this transaction appends and is not committed yet
BEGIN;
SELECT eventstore.append('st-1', 'Y', '{}');
SELECT appenders_in_flight, oldest_appender_pid = pg_backend_pid() AS me,
       oldest_appender_age >= interval '0' AS aged
  FROM eventstore.store_stats;
COMMIT;

-- none now; the horizons agree once the worker has recorded the last
-- append, and it counted its cycles of the duty "notify" and what they
-- published, and the notifications it sent
SELECT appenders_in_flight, oldest_appender_pid, oldest_appender_age,
       drawn_position = (SELECT max(global_position) FROM eventstore.events) AS drawn,
       live_horizon = drawn_position AS live
  FROM eventstore.store_stats;
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN (SELECT horizon_lag = 0 AND notifications > 0 FROM eventstore.store_stats)
              AND (SELECT cycles > 0 FROM eventstore.worker_stats WHERE duty = 'notify');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT recorded_horizon = live_horizon AS recorded, horizon_lag, notifications > 0 AS notified
  FROM eventstore.store_stats;
SELECT duty, process, cycles > 0 AS ran, items > 0 AS did, total_time > 0 AS timed,
       last_cycle_at > now() - interval '1 minute' AS recently
  FROM eventstore.worker_stats WHERE duty = 'notify';
-- a row per duty
SELECT duty, process FROM eventstore.worker_stats ORDER BY duty;

-- reset: every counter zero again (the worker may start counting at once:
-- what it counts is after the reset)
SELECT eventstore.reset_stats();
SELECT appends, events, bytes, conflicts, retries, inline_calls, inline_time, notifications,
       stats_reset > now() - interval '1 minute' AS just_reset
  FROM eventstore.store_stats;
SELECT duty FROM eventstore.worker_stats
 WHERE NOT (cycles = 0 AND items = 0 AND total_time = 0 AND last_cycle_at IS NULL OR
            last_cycle_at >= (SELECT stats_reset FROM eventstore.store_stats));

-- progress: an operation of the extension is shown while its transaction
-- runs (archive_streams reports through _report_progress), then is gone
BEGIN;
SELECT eventstore._report_progress('archive_streams', 'st-', 0, 3);
SELECT eventstore._report_progress('archive_streams', 'st-', 2, NULL);
SELECT pid = pg_backend_pid() AS me, operation, target, done, total, unit,
       started_at BETWEEN now() AND clock_timestamp() AS started, rate IS NOT NULL AS has_rate
  FROM eventstore.progress WHERE pid = pg_backend_pid();
COMMIT;
SELECT count(*) FROM eventstore.progress WHERE pid = pg_backend_pid();
-- an error ends it too
BEGIN;
SELECT eventstore._report_progress('archive_streams', NULL, 0, NULL);
SELECT target, done, total FROM eventstore.progress WHERE pid = pg_backend_pid();
SELECT 1 / 0;
ROLLBACK;
SELECT count(*) FROM eventstore.progress WHERE pid = pg_backend_pid();
-- archive_streams itself: nothing inactive for a day, nothing left behind
SELECT eventstore.archive_streams(interval '1 day', 'st-');
SELECT count(*) FROM eventstore.progress WHERE pid = pg_backend_pid();
-- unknown operations, NULL operation: 22023, 22004
SELECT eventstore._report_progress('vacuum', NULL, 0, NULL);
SELECT eventstore._report_progress(NULL, NULL, 0, NULL);

-- a projection catching up shows in eventstore.progress, run by the
-- projector: its checkpoint of the horizon, in positions; once done, the
-- duty "projections" has counted the events it handled
SELECT eventstore.reset_stats();
CREATE TABLE st_slow_seen (n bigint);
CREATE FUNCTION st_slow_handler(e eventstore.event) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.05);
    INSERT INTO st_slow_seen VALUES (e.global_position);
END $$;
SELECT eventstore.append_events('st-slow', (SELECT jsonb_agg(jsonb_build_object('type', 'S', 'data', g))
                                              FROM generate_series(1, 40) AS g));
SELECT eventstore.create_projection('st_slow', 'st_slow_handler(eventstore.event)',
                                    stream_prefix => 'st-slow', mode => 'async');
CREATE TABLE st_progress AS SELECT * FROM eventstore.progress WHERE false;
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        INSERT INTO st_progress SELECT * FROM eventstore.progress WHERE target = 'st_slow';
        EXIT WHEN EXISTS (SELECT FROM st_progress WHERE done > 0);
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT DISTINCT operation, target, unit,
       pid = (SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventstore projector'
                                                 AND datname = current_database()) AS by_projector
  FROM st_progress;
SELECT bool_and(done <= total) AS done_le_total,
       bool_or(done > 0 AND total >= (SELECT max(global_position) FROM eventstore.events
                                       WHERE stream_id = 'st-slow')) AS reached
  FROM st_progress;
DO $$
BEGIN
    FOR i IN 1 .. 600 LOOP
        EXIT WHEN (SELECT count(*) FROM st_slow_seen) = 40
              AND NOT EXISTS (SELECT FROM eventstore.progress WHERE target = 'st_slow');
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT (SELECT count(*) FROM st_slow_seen) AS handled,
       (SELECT count(*) FROM eventstore.progress WHERE target = 'st_slow') AS still_shown;
SELECT cycles > 0 AS ran, items >= 40 AS counted, total_time > 0 AS timed
  FROM eventstore.worker_stats WHERE duty = 'projections';
SELECT eventstore.drop_projection('st_slow');
DROP TABLE st_progress, st_slow_seen;
DROP FUNCTION st_slow_handler(eventstore.event);

-- wait events: what the extension's processes wait for between their
-- cycles is named in pg_stat_activity from PostgreSQL 17 (before: the
-- class's generic name, "Extension").  Taken at a moment when all three
-- wait (pg_stat_activity is a snapshot per transaction: cleared each time)
CREATE TABLE st_waits AS
SELECT backend_type, wait_event_type, wait_event FROM pg_stat_activity WHERE false;
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO st_waits
        SELECT backend_type, wait_event_type, wait_event
          FROM pg_stat_activity
         WHERE backend_type LIKE 'eventstore %'
           AND (datname = current_database() OR backend_type = 'eventstore launcher');
        EXIT WHEN (SELECT count(*) FILTER (WHERE wait_event_type = 'Extension') = 3
                     FROM st_waits);
        DELETE FROM st_waits;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT backend_type, wait_event_type,
       CASE WHEN current_setting('server_version_num')::int < 170000
            THEN wait_event = 'Extension'
            ELSE wait_event IN ('EventstoreWorkerMain', 'EventstoreNotifyDelay',
                                'EventstoreProjectorMain', 'EventstoreLauncherMain') END AS named
  FROM st_waits ORDER BY 1;
DROP TABLE st_waits;

-- who may read: the views are not PUBLIC's, pg_monitor reads them; the
-- functions under them answer only a role that may read their view; only
-- the owner (or whom it grants) resets; _report_progress is internal
CREATE ROLE regress_es_stats_nobody;
CREATE ROLE regress_es_stats_monitor IN ROLE pg_monitor;
SET ROLE regress_es_stats_nobody;
SELECT count(*) FROM eventstore.store_stats;
SELECT count(*) FROM eventstore._store_stats();
SELECT count(*) FROM eventstore._worker_stats();
SELECT count(*) FROM eventstore._progress();
SELECT count(*) FROM eventstore.progress;
SELECT eventstore.reset_stats();
SELECT eventstore._report_progress('archive_streams', NULL, 0, NULL);
RESET ROLE;
SET ROLE regress_es_stats_monitor;
SELECT appends FROM eventstore.store_stats;
SELECT count(*) FROM eventstore._store_stats();
SELECT count(*) FROM eventstore.worker_stats;
SELECT count(*) FROM eventstore.progress WHERE pid = pg_backend_pid();
SELECT eventstore.reset_stats();
RESET ROLE;
-- a role granted the view (and nothing else) reads through the function too
GRANT USAGE ON SCHEMA eventstore TO regress_es_stats_nobody;
GRANT SELECT ON eventstore.store_stats TO regress_es_stats_nobody;
SET ROLE regress_es_stats_nobody;
SELECT appends FROM eventstore._store_stats();
SELECT count(*) FROM eventstore._worker_stats();
RESET ROLE;

-- planted objects do not change what the functions return: the views
-- resolve their functions by schema, the C code looks nothing up by path
CREATE SCHEMA st_evil;
CREATE FUNCTION st_evil._store_stats() RETURNS TABLE (appends bigint)
    LANGUAGE sql AS 'SELECT 666::bigint';
SET search_path = st_evil, public;
SELECT appends FROM eventstore.store_stats;
RESET search_path;
DROP SCHEMA st_evil CASCADE;

REVOKE SELECT ON eventstore.store_stats FROM regress_es_stats_nobody;
REVOKE USAGE ON SCHEMA eventstore FROM regress_es_stats_nobody;
DROP ROLE regress_es_stats_nobody, regress_es_stats_monitor;
DROP TABLE st_seen;
DROP FUNCTION st_handler(eventstore.event);
DROP EXTENSION eventstore;
