--
-- Managing projections, snapshot policies and subscription leases: who runs
-- a handler comes from what the extension recorded through its own
-- functions, never from a row a user can edit; only the owner of a
-- projection (or a member, or a superuser) changes it; leases belong to the
-- role that fetched them; stored intervals and counts are range-checked.
-- Every case below failed on 0.3.0.
--
CREATE EXTENSION eventstore;
\set SHOW_CONTEXT never

CREATE ROLE regress_es_mgr_a NOLOGIN;
CREATE ROLE regress_es_mgr_b NOLOGIN;
CREATE ROLE regress_es_cons_a NOLOGIN;
CREATE ROLE regress_es_cons_b NOLOGIN;
-- The grants a projection manager gets (README, "Changing projections").
GRANT USAGE ON SCHEMA eventstore TO regress_es_mgr_a, regress_es_mgr_b;
GRANT EXECUTE ON FUNCTION
      eventstore.create_projection(text, regprocedure, text[], text, text, boolean, integer),
      eventstore.drop_projection(text, boolean),
      eventstore.disable_projection(text),
      eventstore.enable_projection(text, boolean),
      eventstore.rebuild_projection(text),
      eventstore.retry_projection(text),
      eventstore.wait_for_projection(text, interval),
      eventstore.create_snapshot_policy(text, regprocedure, anyelement, text, integer, text[], text),
      eventstore.drop_snapshot_policy(text, boolean),
      eventstore.take_snapshot(text, regprocedure, anyelement, bigint, text),
      eventstore.append(text, text, jsonb, jsonb, bigint, uuid),
      eventstore.global_horizon()
   TO regress_es_mgr_a, regress_es_mgr_b;
GRANT SELECT ON eventstore.projections, eventstore.projection_status TO regress_es_mgr_a, regress_es_mgr_b;

-- Whoever runs a handler writes its name here.
CREATE TABLE runs (projection text, who text, global_position bigint);
GRANT INSERT ON runs TO PUBLIC;
CREATE FUNCTION record_run(e eventstore.event, projection text) RETURNS void
    LANGUAGE sql AS $$ INSERT INTO public.runs VALUES (projection, current_user, e.global_position) $$;
-- A handler the managers may not execute.
CREATE FUNCTION secret_handler(e eventstore.event) RETURNS void
    LANGUAGE sql AS $$ INSERT INTO public.runs VALUES ('secret', current_user, e.global_position) $$;
REVOKE ALL ON FUNCTION secret_handler(eventstore.event) FROM PUBLIC;

--
-- Item 4: the owner of a projection is its creator and cannot be changed.
--
-- (the bootstrap superuser is named after whoever runs the tests)
SELECT rolname AS superuser FROM pg_catalog.pg_roles WHERE oid = 10 \gset
SET ROLE regress_es_mgr_a;
SELECT eventstore.create_projection('mine', 'record_run(eventstore.event, text)', mode => 'async');
-- no table of the extension is writable
UPDATE eventstore.projections SET owner = :'superuser' WHERE name = 'mine';
\echo :SQLSTATE
UPDATE eventstore.projection_checkpoints SET position = 0;
\echo :SQLSTATE
DELETE FROM eventstore.snapshot_policies;
\echo :SQLSTATE
-- a handler the caller may not execute (42501, nothing registered)
SELECT eventstore.create_projection('stolen', 'secret_handler(eventstore.event)', mode => 'async');
\echo :SQLSTATE
SELECT name, owner FROM eventstore.projections ORDER BY name;
RESET ROLE;
-- the table privileges earlier READMEs told administrators to grant: gone
-- after an update, and ineffective against a fresh install's tables
SELECT r AS role, t AS table_name,
       has_table_privilege(r, t, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS may_write
  FROM unnest(ARRAY['regress_es_mgr_a', 'regress_es_mgr_b']) r,
       unnest(ARRAY['eventstore.projections', 'eventstore.projection_checkpoints',
                    'eventstore.snapshot_policies', 'eventstore.subscription_events']) t
 ORDER BY 1, 2;

-- The worker runs the async handler as its creator.
SELECT stream_version FROM eventstore.append('sec-1', 'Opened', '{}');
SET ROLE regress_es_mgr_a;
SELECT eventstore.wait_for_projection('mine', '30 seconds');
RESET ROLE;
SELECT projection, who FROM runs ORDER BY global_position;

-- Another manager can neither change nor drop it (42501); nothing changes.
SET ROLE regress_es_mgr_b;
SELECT eventstore.drop_projection('mine');
\echo :SQLSTATE
SELECT eventstore.disable_projection('mine');
\echo :SQLSTATE
SELECT eventstore.enable_projection('mine');
\echo :SQLSTATE
SELECT eventstore.rebuild_projection('mine');
\echo :SQLSTATE
SELECT eventstore.retry_projection('mine');
\echo :SQLSTATE
-- waiting is for anyone with EXECUTE
SELECT eventstore.wait_for_projection('mine', '30 seconds');
RESET ROLE;
SELECT name, owner, enabled, state FROM eventstore.projection_status;

-- A member of the owner role may manage it, and so may a superuser.
GRANT regress_es_mgr_a TO regress_es_mgr_b;
SET ROLE regress_es_mgr_b;
SELECT eventstore.disable_projection('mine');
SELECT eventstore.enable_projection('mine');
RESET ROLE;
REVOKE regress_es_mgr_a FROM regress_es_mgr_b;
SELECT eventstore.drop_projection('mine');
SELECT count(*) AS projections FROM eventstore.projections;

-- Even a careless GRANT on every function does not let a role call an
-- implementation with a forged caller (42501, nothing written).
GRANT USAGE ON SCHEMA eventstore TO regress_es_cons_b;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA eventstore TO regress_es_cons_b;
SET ROLE regress_es_cons_b;
SELECT eventstore._create_projection(:'superuser', 'public', 'forged', 'record_run(eventstore.event, text)',
                                     NULL, NULL, 'async', true, 0);
\echo :SQLSTATE
SELECT eventstore._drop_projection(NULL, NULL, 'mine', false);
\echo :SQLSTATE
SELECT eventstore._snapshot_policy('snapshot:x') IS NULL AS none;
RESET ROLE;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA eventstore FROM regress_es_cons_b;
REVOKE USAGE ON SCHEMA eventstore FROM regress_es_cons_b;
SELECT count(*) AS forged FROM eventstore.projections WHERE name = 'forged';

--
-- Item 12: a snapshot policy's evolve runs in the worker as the policy's
-- creator, under the creator's search_path: the README's example with an
-- unqualified type name works.
--
CREATE SCHEMA bank;
GRANT USAGE ON SCHEMA bank TO regress_es_mgr_a;
CREATE TYPE bank.account AS (status text, owner text, balance numeric);
CREATE TABLE bank.evolved_by (who text);
GRANT INSERT ON bank.evolved_by TO PUBLIC;
-- (the body names the type and the table without their schema)
CREATE FUNCTION bank.account_evolve(s bank.account, e eventstore.event) RETURNS bank.account
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evolved_by VALUES (current_user);
    CASE e.event_type
        WHEN 'AccountOpened' THEN s := ROW('open', e.data->>'owner', 0)::account;
        WHEN 'MoneyDeposited' THEN s.balance := s.balance + (e.data->>'amount')::numeric;
        ELSE NULL;
    END CASE;
    RETURN s;
END $$;
-- a stream the policy's signature check might fold: it must not
SELECT stream_version FROM eventstore.append(' ', 'AccountOpened', '{"owner": "Eve"}');
SET ROLE regress_es_mgr_a;
SET search_path = bank, public;
SELECT eventstore.create_snapshot_policy('accounts', 'account_evolve(account, eventstore.event)',
                                         NULL::account, stream_prefix => 'account-', every => 2);
RESET search_path;
RESET ROLE;
-- creating it ran no user code
SELECT count(*) AS evolve_calls FROM bank.evolved_by;
SELECT name, search_path FROM eventstore.snapshot_policies;
SELECT name, owner, search_path FROM eventstore.projections;
SELECT stream_version FROM eventstore.append('account-7', 'AccountOpened', '{"owner": "Ada"}');
SELECT stream_version FROM eventstore.append('account-7', 'MoneyDeposited', '{"amount": 100}');
SET ROLE regress_es_mgr_a;
SELECT eventstore.wait_for_projection('snapshot:accounts', '30 seconds');
RESET ROLE;
SELECT name, state, last_error FROM eventstore.projection_status;
SELECT stream_id, stream_version, state_type, state FROM eventstore.snapshots;
SELECT DISTINCT who FROM bank.evolved_by;
-- only its owner drops it
SET ROLE regress_es_mgr_b;
SELECT eventstore.drop_snapshot_policy('accounts');
\echo :SQLSTATE
-- and nobody else learns or uses it through the step
SELECT eventstore._snapshot_policy('snapshot:accounts') IS NULL AS hidden;
RESET ROLE;
GRANT EXECUTE ON FUNCTION eventstore.create_snapshot_policy(text, regprocedure, anyelement, text, integer, text[], text)
   TO regress_es_cons_a;
GRANT USAGE ON SCHEMA eventstore, bank TO regress_es_cons_a;
SET ROLE regress_es_cons_a;
-- a policy's snapshots are taken as its creator, who needs take_snapshot
SELECT eventstore.create_snapshot_policy('nosnap', 'bank.account_evolve(bank.account, eventstore.event)',
                                         NULL::bank.account, every => 2);
\echo :SQLSTATE
RESET ROLE;
REVOKE USAGE ON SCHEMA eventstore, bank FROM regress_es_cons_a;
REVOKE EXECUTE ON FUNCTION eventstore.create_snapshot_policy(text, regprocedure, anyelement, text, integer, text[], text)
   FROM regress_es_cons_a;
SET ROLE regress_es_mgr_a;
SELECT eventstore.drop_snapshot_policy('accounts');
RESET ROLE;
SELECT count(*) AS policies FROM eventstore.snapshot_policies;
SELECT count(*) AS projections FROM eventstore.projections;

--
-- Item 13: a consumer cannot ack or nack another role's leases by naming
-- its consumer.
--
GRANT USAGE ON SCHEMA eventstore TO regress_es_cons_a, regress_es_cons_b;
GRANT EXECUTE ON FUNCTION eventstore.subscription_fetch(text, text, integer),
                          eventstore.subscription_ack(text, text, bigint[]),
                          eventstore.subscription_nack(text, text, bigint[], text, interval)
   TO regress_es_cons_a, regress_es_cons_b;
SELECT eventstore.create_subscription('orders', stream_prefix => 'account-');
SELECT array_agg(global_position) AS all_positions FROM eventstore.read_all(0, NULL) \gset
SET ROLE regress_es_cons_a;
SELECT stream_id, stream_version, attempt FROM eventstore.subscription_fetch('orders', 'worker-a', 10);
SET ROLE regress_es_cons_b;
SELECT eventstore.subscription_ack('orders', 'worker-a',
         :'all_positions') AS acked;
SELECT eventstore.subscription_nack('orders', 'worker-a',
         :'all_positions') AS nacked;
RESET ROLE;
SELECT state, consumer, consumer_role, attempts FROM eventstore._subscription_outstanding ORDER BY global_position;
-- the fetching role acks its own
SET ROLE regress_es_cons_a;
SELECT eventstore.subscription_ack('orders', 'worker-a',
         :'all_positions') AS acked;
RESET ROLE;
SELECT count(*) AS outstanding FROM eventstore._subscription_outstanding;

-- The usual ack (C, 0.9.0) is exactly the positions of one lease row:
-- another role naming them all the same acknowledges nothing, and so does
-- the role that fetched them under another consumer's name.
SELECT stream_version FROM eventstore.append('account-2', 'Opened', '{}');
SET ROLE regress_es_cons_a;
SELECT array_agg(global_position) AS leased
  FROM eventstore.subscription_fetch('orders', 'worker-a', 10) \gset
SET ROLE regress_es_cons_b;
SELECT eventstore.subscription_ack('orders', 'worker-a', :'leased') AS acked;
SET ROLE regress_es_cons_a;
SELECT eventstore.subscription_ack('orders', 'worker-b', :'leased') AS acked;
RESET ROLE;
SELECT count(*) AS outstanding FROM eventstore._subscription_outstanding;
-- The implementations of fetch and ack (C, 0.9.0) and their general ways
-- (PL/pgSQL) called directly with a forged caller, by a superuser: 42501,
-- nothing leased, acknowledged or written.
SELECT count(*) FROM eventstore._subscription_fetch(:'superuser', 'public', 'orders', 'forged', 10);
SELECT count(*) FROM eventstore._subscription_fetch_general(:'superuser', 'public', 'orders', 'forged', 10);
SELECT eventstore._subscription_ack(:'superuser', 'public', 'orders', 'worker-a', :'leased');
SELECT eventstore._subscription_ack_general(:'superuser', 'public', 'orders', 'worker-a', :'leased');
SELECT eventstore._subscription_ack('regress_es_cons_a', 'public', 'orders', 'worker-a', :'leased');
SELECT eventstore._subscription_ack(NULL, NULL, 'orders', 'worker-a', :'leased');
SELECT count(*) AS outstanding,
       count(*) FILTER (WHERE consumer = 'forged') AS forged
  FROM eventstore._subscription_outstanding;
SELECT count(*) AS forged_consumers FROM eventstore.subscription_consumers WHERE consumer = 'forged';
SET ROLE regress_es_cons_a;
SELECT eventstore.subscription_ack('orders', 'worker-a', :'leased') AS acked;
RESET ROLE;
SELECT count(*) AS outstanding FROM eventstore._subscription_outstanding;
-- The C implementations find their general way (and the tables) in the
-- extension's schema by its OID, never through search_path: functions of
-- the same names and arguments planted first on the caller's path, which
-- anybody may call, are never called.  A new session, so that the lookup
-- happens under that path; a new consumer and a partial ack take the
-- general way.
CREATE SCHEMA regress_plant;
CREATE TABLE regress_plant.calls (what text);
GRANT USAGE ON SCHEMA regress_plant TO PUBLIC;
GRANT INSERT ON regress_plant.calls TO PUBLIC;
CREATE FUNCTION regress_plant._subscription_fetch_general(
    caller regrole, caller_search_path text, subscription text, consumer text, max_count integer)
RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint,
               event_id uuid, event_type text, data jsonb, metadata jsonb,
               created_at timestamptz, attempt integer)
LANGUAGE sql AS $$
    INSERT INTO regress_plant.calls VALUES ('fetch')
    RETURNING 0::bigint, 'planted', 0::bigint, NULL::uuid, 'planted', NULL::jsonb, NULL::jsonb, now(), 0 $$;
CREATE FUNCTION regress_plant._subscription_ack_general(
    caller regrole, caller_search_path text, subscription text, consumer text, positions bigint[])
RETURNS integer
LANGUAGE sql AS $$ INSERT INTO regress_plant.calls VALUES ('ack') RETURNING 999 $$;
SELECT stream_version FROM eventstore.append('account-3', 'Opened', '{}');
SELECT stream_version FROM eventstore.append('account-3', 'Closed', '{}');
SELECT max(global_position) AS last_position FROM eventstore.events \gset
\c
SET search_path = regress_plant, public;
SET ROLE regress_es_cons_a;
SELECT stream_id, stream_version FROM eventstore.subscription_fetch('orders', 'worker-new', 10);
SELECT eventstore.subscription_ack('orders', 'worker-new', ARRAY[:last_position]::bigint[]) AS acked_part;
RESET ROLE;
RESET search_path;
SELECT count(*) AS planted_calls FROM regress_plant.calls;
SELECT count(*) AS outstanding FROM eventstore._subscription_outstanding;
DELETE FROM eventstore.subscription_events;
DELETE FROM eventstore.subscription_leases;
DROP SCHEMA regress_plant CASCADE;

--
-- Item 11: out-of-range intervals and counts are refused when given
-- (22023), and nothing is written.
--
SELECT eventstore.create_archive_policy('h', '170000000 years');
\echo :SQLSTATE
SELECT eventstore.create_archive_policy('h', '101 years');
\echo :SQLSTATE
SELECT eventstore.create_archive_policy('h', '1 day 99999999 hours');
\echo :SQLSTATE
SELECT eventstore.archive_streams('170000000 years');
\echo :SQLSTATE
SELECT eventstore.create_subscription('huge', lease_timeout => '170000000 years');
\echo :SQLSTATE
SELECT eventstore.create_subscription('huge', lease_timeout => '-1000 years 365250 days');
\echo :SQLSTATE
SELECT eventstore.set_stream_metadata('sec-1', max_age => '170000000 years');
\echo :SQLSTATE
SELECT eventstore.set_stream_metadata('sec-1', max_count => 9223372036854775807);
\echo :SQLSTATE
SELECT eventstore.set_stream_metadata('sec-1', truncate_before => 9223372036854775807);
\echo :SQLSTATE
SELECT eventstore.create_projection('w', 'record_run(eventstore.event, text)', replay => false);
SELECT eventstore.wait_for_projection('w', '170000000 years');
\echo :SQLSTATE
SELECT eventstore.wait_for_projection('w', '-170000000 years');
\echo :SQLSTATE
SELECT eventstore.drop_projection('w');
SET ROLE regress_es_cons_a;
SELECT count(*) FROM eventstore.subscription_fetch('orders', 'worker-a', 2147483647);
\echo :SQLSTATE
SELECT eventstore.subscription_nack('orders', 'worker-a', '{1}', retry_after => '170000000 years');
\echo :SQLSTATE
RESET ROLE;
SELECT (SELECT count(*) FROM eventstore.archive_policies) AS archive_policies,
       (SELECT count(*) FROM eventstore.subscriptions WHERE name = 'huge') AS subscriptions,
       (SELECT count(*) FROM eventstore.streams) AS stream_settings;
-- the largest values accepted work
SELECT eventstore.create_archive_policy('h', '100 years');
SELECT eventstore.create_subscription('huge', lease_timeout => '100 years');
SELECT max_age, max_count FROM eventstore.set_stream_metadata('sec-1', max_age => '100 years',
                                                              max_count => 1000000000000000);
SELECT eventstore.drop_archive_policy('h');
SELECT eventstore.drop_subscription('huge');
SELECT eventstore.drop_subscription('orders');

--
-- The caller mechanism itself (src/caller.c): a public function whose
-- implementation is missing, or that would hand over the wrong caller,
-- fails with a clear error.
--
CREATE FUNCTION public.no_impl(integer) RETURNS integer
    AS 'eventstore', 'eventstore_as_caller' LANGUAGE C;
SELECT public.no_impl(1);
\echo :SQLSTATE
CREATE FUNCTION public._no_impl(regrole, text, integer) RETURNS text
    LANGUAGE sql RETURN 'x';
SELECT public.no_impl(1);
\echo :SQLSTATE
DROP FUNCTION public._no_impl(regrole, text, integer);
CREATE FUNCTION public._no_impl(caller regrole, caller_search_path text, n integer) RETURNS integer
    LANGUAGE sql RETURN n;
ALTER FUNCTION public.no_impl(integer) SECURITY DEFINER;
SELECT public.no_impl(1);
\echo :SQLSTATE
ALTER FUNCTION public.no_impl(integer) SECURITY INVOKER SET search_path = pg_catalog;
SELECT public.no_impl(1);
\echo :SQLSTATE
ALTER FUNCTION public.no_impl(integer) RESET ALL;
SELECT public.no_impl(NULL) IS NULL AS null_passed, public.no_impl(7) AS seven;
DROP FUNCTION public.no_impl(integer), public._no_impl(regrole, text, integer);

-- Roles are cluster-wide: remove them.
DROP OWNED BY regress_es_mgr_a, regress_es_mgr_b, regress_es_cons_a, regress_es_cons_b;
DROP ROLE regress_es_mgr_a, regress_es_mgr_b, regress_es_cons_a, regress_es_cons_b;
DROP SCHEMA bank CASCADE;
DROP TABLE runs;
DROP FUNCTION record_run(eventstore.event, text), secret_handler(eventstore.event);
DROP EXTENSION eventstore;
