--
-- The background processes (issue 12, items 3 and 10): which processes run,
-- and eventstore.handler_timeout, a server setting that no session -- and
-- so no handler -- can change or lift.
--
\set VERBOSITY sqlstate
CREATE EXTENSION eventstore;
SELECT eventstore.append('security-worker-1', 'X', '{}') IS NOT NULL AS appended;
-- the worker and the projector of this database come up
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN (SELECT count(DISTINCT backend_type) FROM pg_stat_activity
                    WHERE datname = current_database()
                      AND backend_type IN ('eventstore worker', 'eventstore projector')) = 2;
        PERFORM pg_sleep(0.1);
        -- pg_stat_activity is read once per transaction unless cleared
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
END $$;
SELECT backend_type, application_name FROM pg_stat_activity
 WHERE datname = current_database() AND backend_type LIKE 'eventstore%'
 ORDER BY backend_type;

SHOW eventstore.handler_timeout;
SELECT setting, unit, context, min_val FROM pg_settings WHERE name = 'eventstore.handler_timeout';
-- 55P02: only the server configuration sets it
SET eventstore.handler_timeout = 0;
SELECT set_config('eventstore.handler_timeout', '0', false);
SHOW eventstore.handler_timeout;
DROP EXTENSION eventstore;
