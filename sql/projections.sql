--
-- Projections: inline handlers inside the append transaction, async ones run
-- by the background worker, catching up, disable/enable, rebuild, failures.
--
CREATE EXTENSION eventstore;

-- A read model: one row per account.  The handler upserts with
-- UPDATE ... SET balance = balance + x, so concurrent appends to different
-- accounts and to the same one compose correctly (see the isolation spec).
CREATE TABLE accounts (
    account text PRIMARY KEY,
    balance numeric NOT NULL,
    events  integer NOT NULL,
    version bigint NOT NULL
);
CREATE FUNCTION project_account(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.data ? 'fail' THEN
        RAISE EXCEPTION 'cannot project %', e.data->>'fail' USING ERRCODE = 'PJ001';
    END IF;
    INSERT INTO accounts
    VALUES (e.stream_id, (e.data->>'amount')::numeric, 1, e.stream_version)
    ON CONFLICT (account) DO UPDATE
       SET balance = accounts.balance + excluded.balance,
           events  = accounts.events + 1,
           version = excluded.version;
END $$;

-- Every call of every handler, in order.
CREATE TABLE calls (n serial, projection text, global_position bigint,
                    stream_id text, stream_version bigint, event_type text);
CREATE FUNCTION log_a(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO calls (projection, global_position, stream_id, stream_version, event_type)
    VALUES ('a', e.global_position, e.stream_id, e.stream_version, e.event_type) $$;
CREATE FUNCTION log_b(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO calls (projection, global_position, stream_id, stream_version, event_type)
    VALUES ('b', e.global_position, e.stream_id, e.stream_version, e.event_type) $$;
CREATE FUNCTION log_c(e eventstore.event) RETURNS integer LANGUAGE sql AS $$
    INSERT INTO calls (projection, global_position, stream_id, stream_version, event_type)
    VALUES ('c', e.global_position, e.stream_id, e.stream_version, e.event_type)
    RETURNING 1 $$;

\set status 'SELECT name, mode, state, position, lag_events, error_count, error_position, last_error FROM eventstore.projection_status ORDER BY name;'

--
-- Registration errors, each with its SQLSTATE; nothing is registered.
--
\set SHOW_CONTEXT never
SELECT eventstore.create_projection(NULL, 'project_account(eventstore.event)');
\echo :SQLSTATE
SELECT eventstore.create_projection('', 'project_account(eventstore.event)');
\echo :SQLSTATE
SELECT eventstore.create_projection(repeat('x', 64), 'project_account(eventstore.event)');
\echo :SQLSTATE
SELECT eventstore.create_projection('p', NULL);
\echo :SQLSTATE
SELECT eventstore.create_projection('p', 'no_such_function(eventstore.event)');
\echo :SQLSTATE
SELECT eventstore.create_projection('p', 'abs(integer)');
\echo :SQLSTATE
CREATE FUNCTION set_handler(e eventstore.event) RETURNS SETOF integer LANGUAGE sql AS 'SELECT 1';
SELECT eventstore.create_projection('p', 'set_handler(eventstore.event)');
\echo :SQLSTATE
SELECT eventstore.create_projection('p', 'project_account(eventstore.event)', mode => 'sometimes');
\echo :SQLSTATE
SELECT eventstore.create_projection('p', 'project_account(eventstore.event)', event_types => '{}');
\echo :SQLSTATE
SELECT eventstore.create_projection('p', 'project_account(eventstore.event)', event_types => '{A,NULL}');
\echo :SQLSTATE
SELECT eventstore.create_projection('p', 'project_account(eventstore.event)', stream_prefix => '');
\echo :SQLSTATE
SELECT eventstore.create_projection('p', 'project_account(eventstore.event)', replay => NULL);
\echo :SQLSTATE
SELECT count(*) AS registered FROM eventstore.projections;

-- Unknown projections (42704), NULL names (22004).
SELECT eventstore.drop_projection('nope');
\echo :SQLSTATE
SELECT eventstore.drop_projection('nope', if_exists => true);
SELECT eventstore.disable_projection('nope');
\echo :SQLSTATE
SELECT eventstore.enable_projection('nope');
\echo :SQLSTATE
SELECT eventstore.rebuild_projection('nope');
\echo :SQLSTATE
SELECT eventstore.retry_projection('nope');
\echo :SQLSTATE
SELECT eventstore.wait_for_projection('nope');
\echo :SQLSTATE
SELECT eventstore.disable_projection(NULL);
\echo :SQLSTATE
\set SHOW_CONTEXT errors

--
-- Inline: the handler runs in the append transaction, after the event has
-- its position and version; the read model is never behind its events.
--
SELECT eventstore.create_projection('accounts', 'project_account(eventstore.event)',
                                    event_types => '{Deposited,Withdrawn}',
                                    stream_prefix => 'acct-');
SELECT eventstore.create_projection('accounts', 'project_account(eventstore.event)');
\echo :SQLSTATE
:status

BEGIN;
SELECT * FROM eventstore.append('acct-1', 'Deposited', '{"amount": 100}');
-- read-your-writes, for the read model too
SELECT * FROM accounts;
SELECT * FROM eventstore.append('acct-1', 'Withdrawn', '{"amount": -30}');
SELECT * FROM eventstore.append('acct-1', 'Renamed', '{"name": "x"}');   -- type not matched
SELECT * FROM eventstore.append('cust-1', 'Deposited', '{"amount": 5}'); -- prefix not matched
COMMIT;
SELECT * FROM accounts;

-- A batch: the handler sees each event with its own version and position.
SELECT * FROM eventstore.append_events('acct-2',
    '[{"type": "Deposited", "data": {"amount": 1}},
      {"type": "Deposited", "data": {"amount": 2}},
      {"type": "Withdrawn", "data": {"amount": -3}}]');
SELECT * FROM accounts ORDER BY account;

--
-- A failing handler aborts the append: nothing is written, neither events
-- nor read model.  The error keeps the handler's SQLSTATE; its context
-- names the projection and the event's position.
--
\set written 'SELECT count(*) AS events, eventstore.stream_version(''acct-1'') AS acct_1_version, (SELECT balance FROM accounts WHERE account = ''acct-1'') AS acct_1_balance FROM eventstore.events;'
:written
SELECT eventstore.append('acct-1', 'Deposited', '{"amount": 1, "fail": "on purpose"}');
\echo :SQLSTATE
:written
-- in a batch: the first event was fine, the second fails: all or nothing
SELECT eventstore.append_events('acct-1',
    '[{"type": "Deposited", "data": {"amount": 1}},
      {"type": "Deposited", "data": {"amount": 1, "fail": "second"}}]');
\echo :SQLSTATE
:written
-- a caller may catch the error in a subtransaction and go on
BEGIN;
SAVEPOINT s;
SELECT eventstore.append('acct-1', 'Deposited', '{"amount": 1, "fail": "again"}');
ROLLBACK TO SAVEPOINT s;
SELECT stream_version FROM eventstore.append('acct-1', 'Deposited', '{"amount": 1}');
COMMIT;
:written

--
-- Several inline projections run in a defined order: by priority, then
-- by name.  A handler's result is ignored.  replay => false: they start
-- live with the next event instead of replaying the history first.
--
SELECT eventstore.create_projection('b', 'log_b(eventstore.event)', stream_prefix => 'order-', priority => 1,
                                    replay => false);
SELECT eventstore.create_projection('a', 'log_a(eventstore.event)', stream_prefix => 'order-', priority => 1,
                                    replay => false);
SELECT eventstore.create_projection('c', 'log_c(eventstore.event)', stream_prefix => 'order-', priority => 0,
                                    replay => false);
SELECT stream_version FROM eventstore.append_events('order-1',
    '[{"type": "Placed", "data": {}}, {"type": "Paid", "data": {}}]');
SELECT n, projection, stream_id, stream_version, event_type,
       global_position = (SELECT global_position FROM eventstore.read_stream('order-1', stream_version, 1)) AS position_ok
  FROM calls ORDER BY n;

-- A handler sees the event in the events table (the command counter is
-- advanced before it runs).
CREATE TABLE seen (global_position bigint, in_table boolean);
CREATE FUNCTION check_seen(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seen
    SELECT e.global_position,
           EXISTS (SELECT FROM eventstore.read_stream(e.stream_id, e.stream_version, 1) r
                    WHERE r.global_position = e.global_position AND r.event_id = e.event_id);
END $$;
SELECT eventstore.create_projection('seen', 'check_seen(eventstore.event)', stream_prefix => 'seen-',
                                    replay => false);
SELECT stream_version FROM eventstore.append_events('seen-1',
    '[{"type": "A", "data": 1}, {"type": "B", "data": 2}]');
SELECT count(*) AS calls, bool_and(in_table) AS all_in_table FROM seen;

-- User triggers on the events table keep working: BEFORE ROW triggers fire
-- as each event is inserted, AFTER ROW triggers at the end of the call,
-- after the inline handlers.
CREATE FUNCTION log_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO calls (projection, global_position, stream_id, stream_version, event_type)
    VALUES (TG_WHEN || ' trigger', NEW.global_position, NEW.stream_id, NEW.stream_version, NEW.event_type);
    RETURN NEW;
END $$;
CREATE TRIGGER log_before BEFORE INSERT ON eventstore.events
    FOR EACH ROW WHEN (NEW.stream_id LIKE 'order-%') EXECUTE FUNCTION log_trigger();
CREATE TRIGGER log_after AFTER INSERT ON eventstore.events
    FOR EACH ROW WHEN (NEW.stream_id LIKE 'order-%') EXECUTE FUNCTION log_trigger();
TRUNCATE calls;
SELECT stream_version FROM eventstore.append_events('order-2',
    '[{"type": "Placed", "data": {}}, {"type": "Paid", "data": {}}]');
SELECT projection, stream_id, stream_version, event_type FROM calls ORDER BY n;
DROP TRIGGER log_before ON eventstore.events;
DROP TRIGGER log_after ON eventstore.events;

-- A handler dropped behind the projection's back makes matching appends
-- fail (42883) rather than silently skip it; other streams are unaffected.
DROP FUNCTION log_c(eventstore.event);
SELECT eventstore.append('order-3', 'Placed', '{}');
\echo :SQLSTATE
SELECT stream_version FROM eventstore.append('acct-3', 'Deposited', '{"amount": 3}');
SELECT eventstore.drop_projection('c');
SELECT stream_version FROM eventstore.append('order-3', 'Placed', '{}');
SELECT eventstore.drop_projection('a');
SELECT eventstore.drop_projection('b');
SELECT eventstore.drop_projection('seen');

--
-- Disable / enable.  While disabled, appends leave the read model alone;
-- enable_projection() catches up what was missed (through the worker)
-- before the projection is live again, unless catch_up => false.
--
SELECT eventstore.disable_projection('accounts');
SELECT eventstore.disable_projection('accounts');  -- no-op
:status
SELECT stream_version FROM eventstore.append('acct-1', 'Deposited', '{"amount": 1000}');
SELECT stream_version FROM eventstore.append('acct-4', 'Deposited', '{"amount": 4}');
SELECT * FROM accounts ORDER BY account;
SELECT name, state, lag_events FROM eventstore.projection_status;
-- (catching up now; the worker takes a moment)
SELECT eventstore.enable_projection('accounts');
SELECT eventstore.wait_for_projection('accounts');
SELECT name, state, lag_events FROM eventstore.projection_status;
SELECT * FROM accounts ORDER BY account;

-- catch_up => false skips what was appended while disabled, on request
SELECT eventstore.disable_projection('accounts');
SELECT stream_version FROM eventstore.append('acct-5', 'Deposited', '{"amount": 5}');
SELECT eventstore.enable_projection('accounts', catch_up => false);
SELECT stream_version FROM eventstore.append('acct-5', 'Deposited', '{"amount": 6}');
SELECT name, state, lag_events FROM eventstore.projection_status;
SELECT * FROM accounts WHERE account = 'acct-5';
-- put acct-5 right again for the comparisons below
BEGIN;
SELECT eventstore.rebuild_projection('accounts');
TRUNCATE accounts;
COMMIT;
SELECT eventstore.wait_for_projection('accounts');

--
-- Rebuild: replaying the whole log gives the state built incrementally.
-- The order matters: rebuild_projection() first (it waits for appends in
-- flight), then clear the read model, in one transaction.
--
CREATE TABLE accounts_before AS SELECT * FROM accounts;
-- the recomputation from the events, for reference
SELECT count(*) AS accounts,
       bool_and(a.balance = r.balance AND a.events = r.events AND a.version = r.version) AS incremental_equals_recomputed
  FROM accounts a
  JOIN (SELECT stream_id, sum((data->>'amount')::numeric) AS balance,
               count(*) AS events, max(stream_version) AS version
          FROM eventstore.events
         WHERE stream_id LIKE 'acct-%' AND event_type IN ('Deposited', 'Withdrawn')
         GROUP BY stream_id) r ON r.stream_id = a.account;
BEGIN;
SELECT eventstore.rebuild_projection('accounts');
TRUNCATE accounts;
COMMIT;
SELECT eventstore.wait_for_projection('accounts');
SELECT name, state FROM eventstore.projection_status;
SELECT (SELECT count(*) FROM accounts) AS accounts,
       NOT EXISTS (SELECT * FROM accounts EXCEPT SELECT * FROM accounts_before)
   AND NOT EXISTS (SELECT * FROM accounts_before EXCEPT SELECT * FROM accounts) AS rebuild_equals_incremental;
-- and it is live again
SELECT stream_version FROM eventstore.append('acct-1', 'Deposited', '{"amount": 1}');
SELECT balance - (SELECT balance FROM accounts_before WHERE account = 'acct-1') AS acct_1_change
  FROM accounts WHERE account = 'acct-1';

--
-- Async: run by the background worker from a checkpoint, in its own
-- transactions; the checkpoint and the handler's writes commit together.
--
CREATE TABLE type_counts (event_type text PRIMARY KEY, n integer NOT NULL);
CREATE FUNCTION count_type(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.data ? 'poison' THEN
        RAISE EXCEPTION 'poison event %', e.stream_id || '/' || e.stream_version;
    END IF;
    INSERT INTO type_counts VALUES (e.event_type, 1)
    ON CONFLICT (event_type) DO UPDATE SET n = type_counts.n + 1;
END $$;
SELECT eventstore.create_projection('types', 'count_type(eventstore.event)', mode => 'async');
SELECT eventstore.wait_for_projection('types');
SELECT name, mode, state, position = eventstore.global_horizon() AS at_horizon, lag_events
  FROM eventstore.projection_status WHERE name = 'types';
SELECT t.event_type, t.n, t.n = (SELECT count(*) FROM eventstore.events e WHERE e.event_type = t.event_type) AS matches_log
  FROM type_counts t ORDER BY 1;

-- A failing event: the events before it are applied, it is retried with a
-- backoff, the view shows the error.  Fixing the handler and asking for a
-- retry lets the projection catch up.
ALTER SYSTEM SET eventstore.projection_retry_delay = '50ms';
SELECT pg_reload_conf();
SELECT stream_version FROM eventstore.append('t-1', 'Good', '{}');
SELECT global_position AS poison_position FROM eventstore.append('t-1', 'Bad', '{"poison": true}') \gset
SELECT stream_version FROM eventstore.append('t-1', 'Good', '{}');
DO $$
BEGIN
    FOR i IN 1..1000 LOOP
        EXIT WHEN (SELECT error_count >= 2 FROM eventstore.projection_status WHERE name = 'types');
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
SELECT name, state, position = :poison_position - 1 AS stopped_before_poison,
       error_count >= 2 AS retried, error_position = :poison_position AS error_at_poison,
       last_error, lag_events
  FROM eventstore.projection_status WHERE name = 'types';
SELECT n AS good_events FROM type_counts WHERE event_type = 'Good';
CREATE OR REPLACE FUNCTION count_type(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO type_counts VALUES (e.event_type, 1)
    ON CONFLICT (event_type) DO UPDATE SET n = type_counts.n + 1;
END $$;
SELECT eventstore.retry_projection('types');
SELECT eventstore.wait_for_projection('types');
SELECT name, state, error_count, error_position, lag_events
  FROM eventstore.projection_status WHERE name = 'types';
SELECT t.event_type, t.n, t.n = (SELECT count(*) FROM eventstore.events e WHERE e.event_type = t.event_type) AS matches_log
  FROM type_counts t ORDER BY 1;
ALTER SYSTEM RESET eventstore.projection_retry_delay;
SELECT pg_reload_conf();

-- Disabling an async projection stops the worker; enabling resumes from
-- its checkpoint.
SELECT eventstore.disable_projection('types');
SELECT stream_version FROM eventstore.append('t-2', 'Later', '{}');
SELECT name, state, lag_events FROM eventstore.projection_status WHERE name = 'types';
SELECT eventstore.enable_projection('types');
SELECT eventstore.wait_for_projection('types');
SELECT n FROM type_counts WHERE event_type = 'Later';

-- wait_for_projection() needs READ COMMITTED (25001)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT eventstore.wait_for_projection('types');
\echo :SQLSTATE
ROLLBACK;

-- replay => false: an inline projection created on a log with history
-- starts live, with the next event.
CREATE TABLE later_calls (stream_id text, stream_version bigint);
CREATE FUNCTION log_later(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO later_calls VALUES (e.stream_id, e.stream_version) $$;
SELECT eventstore.create_projection('later', 'log_later(eventstore.event)', replay => false);
SELECT name, state FROM eventstore.projection_status WHERE name = 'later';
SELECT stream_version FROM eventstore.append('l-1', 'X', '{}');
SELECT * FROM later_calls;

SELECT eventstore.wait_for_projection('types');
:status
SELECT eventstore.drop_projection('later');
SELECT eventstore.drop_projection('types');
SELECT eventstore.drop_projection('accounts');
SELECT count(*) AS projections, (SELECT count(*) FROM eventstore.projection_checkpoints) AS checkpoints
  FROM eventstore.projections;

DROP EXTENSION eventstore CASCADE;
DROP TABLE accounts, accounts_before, calls, seen, type_counts, later_calls;
