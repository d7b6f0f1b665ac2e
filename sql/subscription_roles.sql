--
-- Who may acknowledge or reject a lease: the role that fetched it, a member
-- of that role, a superuser; not another role naming its consumer (0 rows,
-- nothing changed).  Since 0.9.0 ack and nack compare the fetching role with
-- the caller first and look membership up only for another role (the bench
-- suite "subscriptions" found the lookup costing a plan per ack); the rule
-- is the same.  Runs after "upgrade", which drops the extension: on a
-- store of its own.
--
CREATE EXTENSION eventstore;
SET client_min_messages = warning;
CREATE ROLE regress_es_sr_fetcher;
CREATE ROLE regress_es_sr_member IN ROLE regress_es_sr_fetcher;
CREATE ROLE regress_es_sr_other;
RESET client_min_messages;
GRANT USAGE ON SCHEMA eventstore TO regress_es_sr_fetcher, regress_es_sr_member, regress_es_sr_other;
GRANT EXECUTE ON FUNCTION eventstore.subscription_fetch(text, text, integer),
                          eventstore.subscription_ack(text, text, bigint[]),
                          eventstore.subscription_nack(text, text, bigint[], text, interval)
   TO regress_es_sr_fetcher, regress_es_sr_member, regress_es_sr_other;
SELECT count(*) AS appended
  FROM (SELECT eventstore.append('sr-' || k, 'Happened', '{}') FROM generate_series(1, 4) AS k) a;
SELECT eventstore.create_subscription('sr', stream_prefix => 'sr-');
-- p1..p4: the positions of sr-1..sr-4
SELECT max(global_position) FILTER (WHERE stream_id = 'sr-1') AS p1,
       max(global_position) FILTER (WHERE stream_id = 'sr-2') AS p2,
       max(global_position) FILTER (WHERE stream_id = 'sr-3') AS p3,
       max(global_position) FILTER (WHERE stream_id = 'sr-4') AS p4
  FROM eventstore.events WHERE stream_id LIKE 'sr-%' \gset
SET ROLE regress_es_sr_fetcher;
SELECT stream_id, attempt FROM eventstore.subscription_fetch('sr', 'w', 10) ORDER BY stream_id;
-- another role, naming the consumer: nothing
SET ROLE regress_es_sr_other;
SELECT eventstore.subscription_ack('sr', 'w', ARRAY[:p1, :p2, :p3, :p4]::bigint[]) AS acked;
SELECT eventstore.subscription_nack('sr', 'w', ARRAY[:p1, :p2, :p3, :p4]::bigint[]) AS nacked;
RESET ROLE;
SELECT se.stream_id, se.state, se.attempts, se.consumer_role
  FROM eventstore._subscription_outstanding se WHERE se.subscription = 'sr' ORDER BY se.stream_id;
-- a member of the fetching role: acks sr-1, rejects sr-2
SET ROLE regress_es_sr_member;
SELECT eventstore.subscription_ack('sr', 'w', ARRAY[:p1]::bigint[]) AS acked;
SELECT eventstore.subscription_nack('sr', 'w', ARRAY[:p2]::bigint[], 'no', retry_after => '0') AS nacked;
-- the fetching role itself: acks sr-3, and sr-1 no more (acknowledged)
SET ROLE regress_es_sr_fetcher;
SELECT eventstore.subscription_ack('sr', 'w', ARRAY[:p1, :p3]::bigint[]) AS acked;
RESET ROLE;
SELECT se.stream_id, se.state, se.attempts, se.last_error
  FROM eventstore._subscription_outstanding se WHERE se.subscription = 'sr' ORDER BY se.stream_id;
-- a superuser may ack what another role fetched; the consumer must match
SELECT eventstore.subscription_ack('sr', 'v', ARRAY[:p4]::bigint[]) AS acked;
SELECT eventstore.subscription_ack('sr', 'w', ARRAY[:p4]::bigint[]) AS acked;
-- a lease of sr-2 again (its second attempt), rejected by the fetching role
SET ROLE regress_es_sr_fetcher;
SELECT stream_id, attempt FROM eventstore.subscription_fetch('sr', 'w', 10);
SELECT eventstore.subscription_nack('sr', 'w', ARRAY[:p2]::bigint[], 'again') AS nacked;
RESET ROLE;
SELECT se.stream_id, se.state, se.attempts, se.last_error, se.not_before > now() AS delayed
  FROM eventstore._subscription_outstanding se WHERE se.subscription = 'sr' ORDER BY se.stream_id;
SELECT eventstore.drop_subscription('sr');
REVOKE EXECUTE ON FUNCTION eventstore.subscription_fetch(text, text, integer),
                           eventstore.subscription_ack(text, text, bigint[]),
                           eventstore.subscription_nack(text, text, bigint[], text, interval)
   FROM regress_es_sr_fetcher, regress_es_sr_member, regress_es_sr_other;
REVOKE USAGE ON SCHEMA eventstore FROM regress_es_sr_fetcher, regress_es_sr_member, regress_es_sr_other;
DROP ROLE regress_es_sr_member, regress_es_sr_other, regress_es_sr_fetcher;
DROP EXTENSION eventstore;
