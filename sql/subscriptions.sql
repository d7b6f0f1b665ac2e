--
-- Durable subscriptions: create and drop, every argument error with its
-- SQLSTATE, fetching from the origin / from now / after a position, filters,
-- ack and nack, lease expiry and redelivery, parking and replay, per-stream
-- order between competing consumers, the pull window, the status view,
-- privileges.
--
-- Concurrent fetches and late commits are covered by the isolation spec
-- subscription_competing_consumers.
--
-- The extension is created afresh, so positions start at 1 and are
-- deterministic.  Times are never printed: only booleans and counts.
-- Leases that must expire are 100 ms long; every other lease is long enough
-- never to expire during the test.
--
CREATE EXTENSION eventstore;
-- PL/pgSQL line numbers are not part of the interface.
\set SHOW_CONTEXT never

-- What a subscription holds: its outstanding events, and its status.
\set outstanding 'SELECT global_position, stream_id, state, attempts, consumer, last_error, not_before IS NOT NULL AS retry_later FROM eventstore._subscription_outstanding WHERE subscription = :''sub'' ORDER BY global_position;'
\set status 'SELECT position, pulled_position, lag_events, lag_time IS NOT NULL AS lagging, in_flight, pending_retry, parked, consumers FROM eventstore.subscription_status WHERE name = :''sub'';'

--
-- Argument errors.  After them, no subscription exists.
--
-- NULL name (22004), empty name (22023).
SELECT eventstore.create_subscription(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('');
\echo :LAST_ERROR_SQLSTATE
-- event_types that match nothing (22023): empty, only NULLs; and a
-- two-dimensional array (22023).
SELECT eventstore.create_subscription('bad', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('bad', ARRAY[NULL]::text[]);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('bad', ARRAY[ARRAY['a'], ARRAY['b']]);
\echo :LAST_ERROR_SQLSTATE
-- start_from below -1 (22023), NULL (22004).
SELECT eventstore.create_subscription('bad', start_from => -2);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('bad', start_from => NULL);
\echo :LAST_ERROR_SQLSTATE
-- lease_timeout not positive (22023), NULL (22004).
SELECT eventstore.create_subscription('bad', lease_timeout => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('bad', lease_timeout => '-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('bad', lease_timeout => NULL);
\echo :LAST_ERROR_SQLSTATE
-- max_attempts below 1 (22023), NULL (22004).
SELECT eventstore.create_subscription('bad', max_attempts => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('bad', max_attempts => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS subscriptions FROM eventstore.subscriptions;

-- A duplicate name (42710); names are case-sensitive.
SELECT eventstore.create_subscription('dup');
SELECT eventstore.create_subscription('dup', ARRAY['Other']);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.create_subscription('Dup');
SELECT name, event_types FROM eventstore.subscriptions ORDER BY name;

-- drop_subscription: unknown (42704) unless if_exists; NULL or empty name.
SELECT eventstore.drop_subscription('dup');
SELECT eventstore.drop_subscription('dup');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.drop_subscription('dup', if_exists => true);
SELECT eventstore.drop_subscription(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.drop_subscription('');
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM eventstore.subscriptions ORDER BY name;

-- Every other function: unknown subscription (42704), NULL or empty names,
-- NULL positions (22004), bad max_count or retry_after (22023).
SELECT * FROM eventstore.subscription_fetch('nope', 'c1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.subscription_fetch(NULL, 'c1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.subscription_fetch('Dup', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.subscription_fetch('Dup', '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.subscription_fetch('Dup', 'c1', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.subscription_fetch('Dup', 'c1', -5);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.subscription_fetch('Dup', 'c1', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.subscription_ack('nope', 'c1', '{1}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.subscription_ack('Dup', NULL, '{1}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.subscription_ack('Dup', 'c1', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.subscription_nack('nope', 'c1', '{1}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.subscription_nack('Dup', '', '{1}');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.subscription_nack('Dup', 'c1', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.subscription_nack('Dup', 'c1', '{1}', 'boom', '-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.subscription_replay_parked('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.subscription_replay_parked(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.subscription_parked('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM eventstore.subscription_parked(NULL);
\echo :LAST_ERROR_SQLSTATE
-- The failed fetches recorded no consumer.
SELECT count(*) AS consumers FROM eventstore.subscription_consumers;
SELECT eventstore.drop_subscription('Dup');

--
-- The log: six events in three streams.
--
--   1 order-1    Created      4 customer-1 Registered
--   2 order-2    Created      5 order-2    Paid
--   3 order-1    Paid         6 order-1    Shipped
--
SELECT global_position FROM eventstore.append('order-1', 'Created', '{"n": 1}');
SELECT global_position FROM eventstore.append('order-2', 'Created', '{"n": 2}');
SELECT global_position FROM eventstore.append('order-1', 'Paid', '{"n": 3}');
SELECT global_position FROM eventstore.append('customer-1', 'Registered', '{"n": 4}');
SELECT global_position FROM eventstore.append('order-2', 'Paid', '{"n": 5}');
SELECT global_position FROM eventstore.append('order-1', 'Shipped', '{"n": 6}');

--
-- Starting points and filters.  A new subscription has pulled nothing; its
-- lag counts the matching events after its start.
--
SELECT eventstore.create_subscription('all');                          -- from the origin
SELECT eventstore.create_subscription('from_now', start_from => -1);   -- after 6
SELECT eventstore.create_subscription('after_4', start_from => 4);
SELECT eventstore.create_subscription('after_end', start_from => 100); -- nothing yet
SELECT eventstore.create_subscription('paid', ARRAY['Paid', NULL]);    -- NULLs dropped
SELECT eventstore.create_subscription('orders', stream_prefix => 'order-');
SELECT eventstore.create_subscription('created_orders', ARRAY['Created'], 'order-');
SELECT eventstore.create_subscription('empty_prefix', stream_prefix => '');  -- = all
SELECT name, event_types, stream_prefix, position, pulled_position, lag_events,
       lag_time IS NOT NULL AS lagging, in_flight, pending_retry, parked, consumers,
       last_fetch_at IS NULL AS never_fetched, lease_timeout, max_attempts
  FROM eventstore.subscription_status ORDER BY name;

-- Each delivers what read_all with its filters returns after its start,
-- in position order, as attempt 1, with the event's columns.
SELECT global_position, stream_id, stream_version, event_type, data, metadata, attempt
  FROM eventstore.subscription_fetch('all', 'c1');
SELECT count(*) AS same_as_log
  FROM eventstore.subscription_fetch('empty_prefix', 'c1') f
  JOIN eventstore.events e USING (global_position)
 WHERE (f.stream_id, f.stream_version, f.event_id, f.event_type, f.data, f.created_at)
     = (e.stream_id, e.stream_version, e.event_id, e.event_type, e.data, e.created_at);
SELECT global_position, stream_id, event_type, attempt FROM eventstore.subscription_fetch('from_now', 'c1');
SELECT global_position, stream_id, event_type, attempt FROM eventstore.subscription_fetch('after_4', 'c1');
SELECT global_position, stream_id, event_type, attempt FROM eventstore.subscription_fetch('after_end', 'c1');
SELECT global_position, stream_id, event_type, attempt FROM eventstore.subscription_fetch('paid', 'c1');
SELECT global_position, stream_id, event_type, attempt FROM eventstore.subscription_fetch('orders', 'c1');
SELECT global_position, stream_id, event_type, attempt FROM eventstore.subscription_fetch('created_orders', 'c1');
-- A filtered subscription that got fewer events than it asked for has
-- pulled up to the horizon (6), not just its last match.
SELECT name, pulled_position FROM eventstore.subscriptions ORDER BY name;

-- Acknowledging everything: the checkpoint reaches the pulled position, no
-- lag, nothing outstanding.  An ack returns how many it acknowledged;
-- unknown positions and repeats count nothing.
SELECT eventstore.subscription_ack('all', 'c1', '{1,2,3,4,5,6}') AS acked;
SELECT eventstore.subscription_ack('all', 'c1', '{1,2,3,4,5,6,7,-1,NULL}') AS acked_again;
SELECT eventstore.subscription_ack('all', 'c1', '{}') AS acked_none;
SELECT eventstore.subscription_ack(s, 'c1', ARRAY(SELECT global_position FROM eventstore._subscription_outstanding WHERE subscription = s)) AS acked
  FROM unnest(ARRAY['from_now', 'after_4', 'after_end', 'paid', 'orders', 'created_orders', 'empty_prefix']) s;
SELECT name, position, pulled_position, lag_events, lag_time IS NOT NULL AS lagging,
       in_flight, pending_retry, parked
  FROM eventstore.subscription_status ORDER BY name;
SELECT count(*) AS outstanding FROM eventstore._subscription_outstanding;
SELECT count(*) AS nothing_more FROM eventstore.subscription_fetch('all', 'c1');

-- New events: 7 and 8.  Every subscription they match lags, then gets them;
-- after_end (start 100) still waits.
SELECT global_position FROM eventstore.append('order-1', 'Paid', '{"n": 7}');
SELECT global_position FROM eventstore.append('customer-1', 'Created', '{"n": 8}');
SELECT name, position, lag_events, lag_time IS NOT NULL AS lagging
  FROM eventstore.subscription_status ORDER BY name;
SELECT s AS subscription, array_agg(f.global_position ORDER BY f.global_position) AS delivered
  FROM unnest(ARRAY['all', 'from_now', 'after_4', 'after_end', 'paid', 'orders', 'created_orders']) s
  LEFT JOIN LATERAL eventstore.subscription_fetch(s, 'c1') f ON true
 GROUP BY s ORDER BY s;
SELECT eventstore.drop_subscription(s)
  FROM unnest(ARRAY['from_now', 'after_4', 'after_end', 'paid', 'orders', 'created_orders', 'empty_prefix']) s;
-- Dropping a subscription drops its outstanding events and consumers.
SELECT count(*) AS outstanding_of_dropped FROM eventstore._subscription_outstanding WHERE subscription <> 'all';
SELECT count(*) AS consumers_of_dropped FROM eventstore.subscription_consumers WHERE subscription <> 'all';
SELECT eventstore.drop_subscription('all');

--
-- Competing consumers and per-stream order (leases that do not expire).
--
\set sub po
SELECT eventstore.create_subscription('po');
-- c1 takes order-1's first event.  c2 gets the events of the other streams,
-- and of order-2 both (earlier events delivered in the same fetch do not
-- block), but nothing more of order-1: c1 holds it.
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('po', 'c1', 1);
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('po', 'c2', 10);
:outstanding
-- c1 gets nothing either: its own lease on 1 still blocks 3, 6 and 7.
SELECT count(*) AS c1_blocked FROM eventstore.subscription_fetch('po', 'c1');
:status
-- An ack by another consumer, or of an unknown position, counts nothing: 1
-- is c1's, 100 does not exist.
SELECT eventstore.subscription_ack('po', 'c2', '{1, 100}') AS acked_by_c2;
SELECT eventstore.subscription_ack('po', 'c1', '{1}') AS acked_by_c1;
-- order-1 flows again, to whoever asks: c2 gets 3 but not 6 (max_count 1).
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('po', 'c2', 1);

-- nack, retry at once: 3 becomes pending again and goes to c1 as attempt 2,
-- with 6 and 7 behind it in the same fetch.
SELECT eventstore.subscription_nack('po', 'c1', '{3}', 'not mine') AS nacked_by_c1;
SELECT eventstore.subscription_nack('po', 'c2', '{3}', 'transient', retry_after => '0') AS nacked;
:outstanding
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('po', 'c1', 1);
-- nack with retry_after 1 hour: 3 waits, and so do 6 and 7 behind it, while
-- other streams flow (9, customer-1).
SELECT eventstore.subscription_nack('po', 'c1', '{3}', 'down', retry_after => '1 hour') AS nacked;
SELECT global_position FROM eventstore.append('customer-1', 'Updated', '{"n": 9}');
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('po', 'c2');
:outstanding
:status
-- A nack of an event that is not leased (3 waits) changes nothing.
SELECT eventstore.subscription_nack('po', 'c1', '{3}', 'again') AS nacked_waiting;
SELECT eventstore.subscription_ack('po', 'c1', '{3}') AS acked_waiting;
SELECT eventstore.drop_subscription('po');

--
-- The default retry delay: 1 s doubling with each attempt, capped at the
-- lease timeout (3 s here).  customer-1 (4, 8, 9) is delivered one event at
-- a time; 4 is retried at once twice, then rejected with the default delay.
--
\set sub backoff
SELECT eventstore.create_subscription('backoff', stream_prefix => 'customer-', lease_timeout => '3 seconds');
SELECT global_position, attempt FROM eventstore.subscription_fetch('backoff', 'c1', 1);
SELECT clock_timestamp() AS t0 \gset
SELECT eventstore.subscription_nack('backoff', 'c1', '{4}') AS nacked;
SELECT not_before - :'t0'::timestamptz >= '1 second' AND not_before - :'t0'::timestamptz < '1.5 seconds' AS delay_1s
  FROM eventstore.subscription_events WHERE subscription = 'backoff';
-- Move the retry to now (the delay is not what is tested below).
UPDATE eventstore.subscription_events SET not_before = now() WHERE subscription = 'backoff';
SELECT global_position, attempt FROM eventstore.subscription_fetch('backoff', 'c1', 1);
SELECT eventstore.subscription_nack('backoff', 'c1', '{4}', retry_after => '0') AS nacked;
SELECT global_position, attempt FROM eventstore.subscription_fetch('backoff', 'c1', 1);
SELECT clock_timestamp() AS t0 \gset
SELECT eventstore.subscription_nack('backoff', 'c1', '{4}') AS nacked;
-- attempt 3: 4 s, capped at 3 s
SELECT not_before - :'t0'::timestamptz >= '3 seconds' AND not_before - :'t0'::timestamptz < '3.5 seconds' AS delay_capped
  FROM eventstore.subscription_events WHERE subscription = 'backoff';
SELECT eventstore.drop_subscription('backoff');

--
-- Lease expiry, redelivery and parking.  Leases of 100 ms, at most 2
-- attempts; stream order-2 (2, 5).
--
\set sub short
SELECT eventstore.create_subscription('short', stream_prefix => 'order-2',
                                      lease_timeout => '100 milliseconds', max_attempts => 2);
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('short', 'c1', 1);
SELECT pg_sleep(0.15);
-- c1's lease on 2 expired: c2 gets it again, as attempt 2.  c1's late ack
-- now counts nothing.
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('short', 'c2', 1);
SELECT eventstore.subscription_ack('short', 'c1', '{2}') AS late_ack;
SELECT pg_sleep(0.15);
-- Attempt 2 expired too: 2 is parked instead of delivered a third time, and
-- a parked event does not block its stream: 5 is delivered.
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('short', 'c1');
:outstanding
SELECT global_position, stream_id, stream_version, event_type, attempts, last_error,
       parked_at IS NOT NULL AS parked
  FROM eventstore.subscription_parked('short');
-- The checkpoint passes the parked 2 and stops below the leased 5.
:status
SELECT pg_sleep(0.15);
-- An expired lease not yet handed out again can still be acknowledged.
SELECT eventstore.subscription_ack('short', 'c1', '{5}') AS expired_ack;
:status
-- Replay: 2 is pending again with its attempts reset, delivered as
-- attempt 1.
SELECT eventstore.subscription_replay_parked('short') AS replayed;
SELECT count(*) AS parked FROM eventstore.subscription_parked('short');
:status
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('short', 'c2');
SELECT eventstore.subscription_ack('short', 'c2', '{2}') AS acked;
:status
SELECT eventstore.drop_subscription('short');

--
-- Lease rows (0.9.0): what one fetch leases fresh from the log is one row
-- of subscription_leases.  An ack takes positions out of it; a nack moves
-- what it rejects to subscription_events; the next fetch turns an expired
-- row into rows there.  Leases of 100 ms; the log is 1 to 9 (order-1: 1,
-- 3, 6, 7; order-2: 2, 5; customer-1: 4, 8, 9).
--
\set sub rows
SELECT eventstore.create_subscription('rows', lease_timeout => '100 milliseconds');
SELECT array_agg(global_position ORDER BY global_position) AS leased
  FROM eventstore.subscription_fetch('rows', 'c1', 6);
SELECT consumer, consumer_role = current_user::regrole AS fetcher, positions, streams
  FROM eventstore.subscription_leases WHERE subscription = 'rows';
SELECT count(*) AS rows_per_event FROM eventstore.subscription_events WHERE subscription = 'rows';
-- Part of the batch, a repeat, a NULL and an unknown position: 2
-- acknowledged.
SELECT eventstore.subscription_ack('rows', 'c1', '{1,1,NULL,2,100}') AS acked;
SELECT positions, streams FROM eventstore.subscription_leases WHERE subscription = 'rows';
-- Another consumer's name acknowledges nothing of it.
SELECT eventstore.subscription_ack('rows', 'c2', '{3,4,5,6}') AS acked_by_c2;
-- A nack of 3: it waits in subscription_events, the rest stays leased.
SELECT eventstore.subscription_nack('rows', 'c1', '{3}', 'no', '1 hour') AS nacked;
SELECT positions FROM eventstore.subscription_leases WHERE subscription = 'rows';
:outstanding
:status
SELECT pg_sleep(0.15);
-- The row expired: c2's fetch turns it into rows of subscription_events
-- and takes 4 and 5 as attempt 2; 6 waits behind 3 in order-1.
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('rows', 'c2', 2);
SELECT count(*) AS lease_rows FROM eventstore.subscription_leases WHERE subscription = 'rows';
:outstanding
-- c1 may still acknowledge 6 (expired, not handed out again), not 4 (c2's).
SELECT eventstore.subscription_ack('rows', 'c1', '{4,6}') AS late_ack;
:outstanding
SELECT eventstore.drop_subscription('rows');
SELECT count(*) AS left_behind FROM eventstore._subscription_outstanding WHERE subscription = 'rows';

--
-- nack after the last attempt parks at once; replay of chosen positions;
-- replayed events keep per-stream order among outstanding events.
--
\set sub poison
SELECT eventstore.create_subscription('poison', stream_prefix => 'order-1', max_attempts => 1);
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('poison', 'c1', 2);
SELECT eventstore.subscription_nack('poison', 'c1', '{1,3}', 'bad data') AS nacked;
SELECT global_position, attempts, last_error FROM eventstore.subscription_parked('poison');
-- 6 and 7 flow past the parked events of their stream.
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('poison', 'c1', 1);
-- Replay 3 only (and a position that is not parked): 3 is pending again and
-- blocks 7, which is not leased yet.  6 is still leased.
SELECT eventstore.subscription_replay_parked('poison', '{3, 6}') AS replayed;
SELECT eventstore.subscription_replay_parked('poison', '{}') AS replayed_none;
:outstanding
-- Only earlier events block: nothing before 3 is outstanding but the parked
-- 1, so 3 is delivered although 6 is leased; 7 waits behind 3 and 6.
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('poison', 'c2');
SELECT eventstore.subscription_ack('poison', 'c2', '{3}') AS acked;
SELECT eventstore.subscription_ack('poison', 'c1', '{6}') AS acked;
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('poison', 'c2');
SELECT eventstore.subscription_ack('poison', 'c2', '{7}') AS acked;
:status
SELECT eventstore.drop_subscription('poison');

--
-- The pull window: a fetch pulls from the log only what it can deliver, and
-- keeps at most 1000 events waiting, even when one stream's lease blocks
-- everything behind it.
--
SELECT stream_version FROM eventstore.append_events('hot',
         (SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'data', i)) FROM generate_series(1, 1200) i));
\set sub hot
SELECT eventstore.create_subscription('hot', stream_prefix => 'hot');
SELECT count(*) AS delivered FROM eventstore.subscription_fetch('hot', 'c1', 1);
-- Pulled one: what it delivered (hot's events are at 10 to 1209).
SELECT count(*) AS stored, max(global_position) AS last_pulled
  FROM eventstore._subscription_outstanding WHERE subscription = 'hot';
SELECT pulled_position FROM eventstore.subscriptions WHERE name = 'hot';
SELECT count(*) AS delivered FROM eventstore.subscription_fetch('hot', 'c2', 5);
-- Everything behind c1's lease is blocked: c2 got nothing, and the fetch
-- stopped pulling once 1000 events waited.
SELECT count(*) FILTER (WHERE state = 'pending') AS waiting,
       count(*) FILTER (WHERE state = 'leased') AS leased
  FROM eventstore._subscription_outstanding WHERE subscription = 'hot';
SELECT pulled_position FROM eventstore.subscriptions WHERE name = 'hot';
SELECT lag_events, in_flight, pending_retry FROM eventstore.subscription_status WHERE name = 'hot';
-- Once c1 acknowledges, c2 gets the next five in order.
SELECT eventstore.subscription_ack('hot', 'c1', '{10}') AS acked;
SELECT array_agg(global_position) AS delivered FROM eventstore.subscription_fetch('hot', 'c2', 5);
SELECT eventstore.drop_subscription('hot');

--
-- Leased as pulled (0.9.0): a fetch leases the events it pulls from the log
-- as it stores them, in position order and up to max_count, except those
-- of a stream that an outstanding event closes (a lease held by anyone, or
-- an event this very fetch left waiting).  What each consumer gets is what
-- pulling first and leasing after gave before.  Seven events in streams
-- lp-a, lp-b, lp-c, then lp-d and lp-a (1210 to 1218):
--   1210 a  1211 b  1212 a  1213 c  1214 b  1215 a  1216 c  1217 d  1218 a
--
SELECT array_agg(a.global_position ORDER BY a.global_position) AS appended
  FROM (VALUES (1, 'lp-a'), (2, 'lp-b'), (3, 'lp-a'), (4, 'lp-c'), (5, 'lp-b'), (6, 'lp-a'),
               (7, 'lp-c')) v(i, s)
 CROSS JOIN LATERAL eventstore.append(v.s, 'Step', jsonb_build_object('i', v.i)) a;
\set sub lp
SELECT eventstore.create_subscription('lp', stream_prefix => 'lp-');
-- c1 pulls two and leases both.
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('lp', 'c1', 2);
-- c2 asks for three: of the first three pulled, a and b are c1's (1212
-- waits), c gets 1213; the next, larger pull gives c's 1216, and 1214 and
-- 1215 wait behind c1's leases.  Waiting events are stored unleased, with
-- no attempt counted.
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('lp', 'c2', 3);
:outstanding
-- c1 acknowledges a's 1210: 1212 and 1215 may go, in order; c3 asks for
-- one and gets 1212 only (as attempt 1: never leased before).
SELECT eventstore.subscription_ack('lp', 'c1', '{1210}') AS acked;
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('lp', 'c3', 1);
-- Nothing is free now (a is c3's, b c1's, c c2's), and the log has no more.
SELECT count(*) AS nothing_free FROM eventstore.subscription_fetch('lp', 'c3', 10);
-- New events of lp-d (free: leased as pulled) and lp-a (closed by c3's
-- lease on 1212: stored waiting).
SELECT global_position FROM eventstore.append('lp-d', 'Step', '{"i": 8}');
SELECT global_position FROM eventstore.append('lp-a', 'Step', '{"i": 9}');
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('lp', 'c3', 10);
:outstanding
:status
SELECT eventstore.drop_subscription('lp');
-- Room runs out in the middle of a pull: c2 (max 3) gets b's 1211, c's
-- 1213, and b's 1214 from its second pull; c's 1216 and d's 1217 are free
-- but left waiting: the next fetch (c3) gets 1217 at once, and 1216 once
-- c2 has acknowledged 1213.
\set sub lp2
SELECT eventstore.create_subscription('lp2', stream_prefix => 'lp-');
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('lp2', 'c1', 1);
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('lp2', 'c2', 3);
:outstanding
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('lp2', 'c3', 10);
SELECT eventstore.subscription_ack('lp2', 'c2', '{1213}') AS acked;
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('lp2', 'c3', 10);
SELECT eventstore.drop_subscription('lp2');

--
-- A fetch's pull (0.9.0, src/subscription.c): a page of the log as
-- read_all reads it, sorted as it is read: the first "room" events of
-- streams not closed are leased, the others wait (a closed stream, or no
-- room left).  Called directly here, as a superuser.
--
SELECT r.global_position, r.stream_id FROM eventstore.read_all(0, 6, NULL, 'lp-') r;
SELECT got, last_position, horizon = eventstore.global_horizon() AS at_horizon,
       leased, leased_streams, waiting, waiting_streams
  FROM eventstore._subscription_pull(0, 6, NULL, 'lp-', ARRAY['lp-b', NULL, 'lp-b'], 2, 0, 1);
-- no room: everything waits; an empty page; a type nothing has
SELECT got, leased, waiting FROM eventstore._subscription_pull(0, 3, NULL, 'lp-', '{}', 0, 0, 1);
SELECT got, last_position IS NULL AS no_last, leased, waiting
  FROM eventstore._subscription_pull(eventstore.global_horizon(), 10, NULL, NULL, '{}', 10, 0, 1);
SELECT got FROM eventstore._subscription_pull(0, 10, '{NoSuchType}', NULL, '{}', 10, 0, 1);
SELECT got FROM eventstore._subscription_pull(0, 10, '{}', NULL, '{}', 10, 0, 1);
-- internal, but still checked: 22004, 22023
\set VERBOSITY terse
SELECT got FROM eventstore._subscription_pull(NULL, 10, NULL, NULL, '{}', 10, 0, 1);
\echo :SQLSTATE
SELECT got FROM eventstore._subscription_pull(0, 10, NULL, NULL, NULL, 10, 0, 1);
\echo :SQLSTATE
SELECT got FROM eventstore._subscription_pull(-1, 10, NULL, NULL, '{}', 10, 0, 1);
\echo :SQLSTATE
\set VERBOSITY default

--
-- Lanes (0.9.0): a subscription's streams are split into lanes by a hash
-- of their ids, and fetches of different lanes run side by side
-- (isolation spec subscription_lanes).  One consumer alone is served by
-- every lane in turn: a fetch with room left goes on to the next lane, so
-- it gets what one lane would give, in position order.
--
SELECT s AS stream_id, eventstore._stream_lane(s, 2) AS lane
  FROM unnest(ARRAY['lp-a', 'lp-b', 'lp-c']) s;
SELECT eventstore.create_subscription('ln', stream_prefix => 'lp-', lanes => 2);
SELECT lane, pulled_position FROM eventstore.subscription_lanes WHERE subscription = 'ln' ORDER BY lane;
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('ln', 'c1', 3);
SELECT lane, positions, streams FROM eventstore.subscription_leases
 WHERE subscription = 'ln' ORDER BY first_position;
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('ln', 'c2', 100);
SELECT name, position, pulled_position = eventstore.global_horizon() AS pulled_all, in_flight
  FROM eventstore.subscription_status WHERE name = 'ln';
-- a retry stays in its lane and in its stream's order
SELECT min(global_position) AS first_b FROM eventstore._subscription_outstanding
 WHERE subscription = 'ln' AND stream_id = 'lp-b' \gset
SELECT eventstore.subscription_nack('ln', c.consumer, ARRAY[:first_b]::bigint[], 'again', '0 seconds') AS nacked
  FROM (SELECT consumer FROM eventstore._subscription_outstanding
         WHERE subscription = 'ln' AND global_position = :first_b) c;
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('ln', 'c3', 100);
SELECT eventstore.subscription_ack('ln', o.consumer, array_agg(o.global_position)) AS acked
  FROM eventstore._subscription_outstanding o
 WHERE o.subscription = 'ln' AND o.state = 'leased'
 GROUP BY o.consumer ORDER BY o.consumer;
SELECT name, position = pulled_position AS caught_up, in_flight
  FROM eventstore.subscription_status WHERE name = 'ln';
SELECT eventstore.drop_subscription('ln');
SELECT count(*) AS lanes_left FROM eventstore.subscription_lanes WHERE subscription = 'ln';
-- 22023 for a count of lanes outside 1 to 64, 22004 for NULL; a lane that
-- is not one of the subscription's
\set VERBOSITY terse
SELECT eventstore.create_subscription('bad', lanes => 0);
\echo :SQLSTATE
SELECT eventstore.create_subscription('bad', lanes => 65);
\echo :SQLSTATE
SELECT eventstore.create_subscription('bad', lanes => NULL);
\echo :SQLSTATE
SELECT eventstore._stream_lane('lp-a', 0);
\echo :SQLSTATE
SELECT got FROM eventstore._subscription_pull(0, 10, NULL, NULL, '{}', 10, 2, 2);
\echo :SQLSTATE
SELECT got FROM eventstore._subscription_pull(0, 10, NULL, NULL, '{}', 10, NULL, 2);
\echo :SQLSTATE
\set VERBOSITY default
SELECT count(*) AS created FROM eventstore.subscriptions WHERE name = 'bad';

--
-- The status view's consumers: those that fetched within the lease timeout
-- or still hold a lease.
--
SELECT eventstore.create_subscription('seen', stream_prefix => 'customer-');
SELECT count(*) FROM eventstore.subscription_fetch('seen', 'worker-b', 1);
SELECT count(*) FROM eventstore.subscription_fetch('seen', 'worker-a', 1);
SELECT name, consumers, last_fetch_at IS NOT NULL AS fetched FROM eventstore.subscription_status;
-- worker-a's last fetch is long ago, but it still holds a lease; worker-b's
-- fetch is long ago too and it holds nothing.
UPDATE eventstore.subscription_consumers SET last_seen_at = now() - interval '1 hour';
SELECT name, consumers FROM eventstore.subscription_status;
SELECT eventstore.drop_subscription('seen');
-- A fetch writes when the consumer was last seen only when that is more
-- than a hundredth of the lease timeout ago (0.9.0), and only such a fetch
-- forgets consumers not seen for a lease timeout.
SELECT eventstore.create_subscription('seen2', stream_prefix => 'customer-',
                                      lease_timeout => '1 hour');
SELECT count(*) FROM eventstore.subscription_fetch('seen2', 'w1', 1);
SELECT count(*) FROM eventstore.subscription_fetch('seen2', 'w2', 1);
UPDATE eventstore.subscription_consumers SET last_seen_at = '2000-01-01 00:00:00+00'
 WHERE consumer = 'w2';
UPDATE eventstore.subscription_consumers SET last_seen_at = now() - interval '35 seconds'
 WHERE consumer = 'w1';
SELECT last_seen_at AS w1_seen FROM eventstore.subscription_consumers WHERE consumer = 'w1' \gset
-- 35 s ago is within 36 s (1 hour / 100): not written, w2 not forgotten
SELECT count(*) FROM eventstore.subscription_fetch('seen2', 'w1', 1);
SELECT consumer, last_seen_at = :'w1_seen' AS unchanged
  FROM eventstore.subscription_consumers WHERE subscription = 'seen2' ORDER BY consumer;
-- 37 s ago is not: written, and w2 is forgotten
UPDATE eventstore.subscription_consumers SET last_seen_at = now() - interval '37 seconds'
 WHERE consumer = 'w1';
SELECT count(*) FROM eventstore.subscription_fetch('seen2', 'w1', 1);
SELECT consumer, last_seen_at > now() - interval '1 minute' AS recent
  FROM eventstore.subscription_consumers WHERE subscription = 'seen2' ORDER BY consumer;
SELECT eventstore.drop_subscription('seen2');

--
-- Catalog: every subscription function is revoked from PUBLIC; those that
-- touch the tables are SECURITY DEFINER with a fixed search_path, or (fetch,
-- ack, nack: they need their caller) C entry points that run as the caller
-- and call their SECURITY DEFINER implementation _<name> (src/caller.c);
-- the argument checks (check_name, not_found) touch no table and qualify
-- every name, so they need no setting (0.9.0); _subscription_pull is C
-- that runs no query (0.9.0); writers are VOLATILE and PARALLEL UNSAFE.  Subscriptions and their
-- outstanding events are dumped by pg_dump.
--
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer,
       p.proconfig AS config, p.provolatile AS volatility, p.proparallel AS parallel,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'eventstore'::regnamespace
   AND (p.proname LIKE '%subscription%' OR p.proname = '_stream_lane')
 ORDER BY p.proname;
SELECT c AS relation, has_table_privilege('public', c, 'SELECT, INSERT, UPDATE, DELETE') AS public_access
  FROM unnest(ARRAY['eventstore.subscriptions', 'eventstore.subscription_events',
                    'eventstore.subscription_leases', 'eventstore.subscription_consumers',
                    'eventstore.subscription_lanes', 'eventstore.subscription_status',
                    'eventstore._subscription_outstanding']::regclass[]) c;
SELECT c AS relation, c = ANY (x.extconfig) AS dumped
  FROM pg_extension x,
       unnest(ARRAY['eventstore.subscriptions', 'eventstore.subscription_events',
                    'eventstore.subscription_leases', 'eventstore.subscription_lanes',
                    'eventstore.subscription_consumers']::regclass[]) c
 WHERE x.extname = 'eventstore';

--
-- A consumer role: the GRANT lines of the documentation.  It consumes
-- through the functions and reads the status view, and cannot touch the
-- tables.
--
CREATE ROLE regress_es_consumer NOLOGIN;
CREATE ROLE regress_es_nobody NOLOGIN;
GRANT USAGE ON SCHEMA eventstore TO regress_es_consumer, regress_es_nobody;
GRANT EXECUTE ON FUNCTION eventstore.subscription_fetch(text, text, integer),
                          eventstore.subscription_ack(text, text, bigint[]),
                          eventstore.subscription_nack(text, text, bigint[], text, interval),
                          eventstore.global_horizon()
   TO regress_es_consumer;
GRANT SELECT ON eventstore.subscription_status TO regress_es_consumer;
SELECT eventstore.create_subscription('app', stream_prefix => 'order-2');
SET ROLE regress_es_consumer;
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('app', 'c1');
SELECT eventstore.subscription_nack('app', 'c1', '{5}', 'later', '1 hour') AS nacked;
SELECT eventstore.subscription_ack('app', 'c1', '{2}') AS acked;
SELECT name, position, in_flight, pending_retry, consumers FROM eventstore.subscription_status;
SELECT eventstore.create_subscription('mine');
\echo :LAST_ERROR_SQLSTATE
SELECT eventstore.subscription_replay_parked('app');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM eventstore.subscription_events;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM eventstore.subscription_events;
\echo :LAST_ERROR_SQLSTATE
UPDATE eventstore.subscription_leases SET consumer = 'c2', expires_at = 'infinity';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM eventstore._subscription_outstanding;
\echo :LAST_ERROR_SQLSTATE
UPDATE eventstore.subscriptions SET pulled_position = 0;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE regress_es_nobody;
SELECT count(*) FROM eventstore.subscription_fetch('app', 'c1');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM eventstore.subscription_status;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT eventstore.drop_subscription('app');
DROP OWNED BY regress_es_consumer, regress_es_nobody;
DROP ROLE regress_es_consumer, regress_es_nobody;

--
-- A large batch (0.9.0): 400 events leased in one lease row, acknowledged
-- in parts larger than the ones above (each part compared with the row by
-- a join, not element by element), with repeats and NULLs: every event is
-- acknowledged once, what is not acknowledged stays leased, in order.
--
SELECT eventstore.create_subscription('large', stream_prefix => 'large-');
SELECT count(eventstore.append('large-' || (g % 7), 'T', '{}')) FROM generate_series(1, 400) g;
CREATE TEMP TABLE large AS
SELECT global_position, stream_id FROM eventstore.subscription_fetch('large', 'c1', 400);
SELECT count(*) AS fetched, count(DISTINCT global_position) AS distinct_positions FROM large;
SELECT cardinality(positions) AS in_the_row FROM eventstore.subscription_leases WHERE subscription = 'large';
-- every other event, twice over, with a NULL
SELECT eventstore.subscription_ack('large', 'c1',
         ARRAY(SELECT global_position FROM large, generate_series(1, 2)
                WHERE global_position % 2 = 0 UNION ALL SELECT NULL)) AS acked_even;
SELECT cardinality(l.positions) AS left_in_row,
       l.positions = ARRAY(SELECT global_position FROM large WHERE global_position % 2 = 1
                            ORDER BY global_position) AS odd_in_order,
       l.streams = ARRAY(SELECT stream_id FROM large WHERE global_position % 2 = 1
                          ORDER BY global_position) AS streams_aligned
  FROM eventstore.subscription_leases l WHERE l.subscription = 'large';
-- all of them: only the odd ones are left to acknowledge
SELECT eventstore.subscription_ack('large', 'c1', ARRAY(SELECT global_position FROM large)) AS acked_rest;
SELECT count(*) AS outstanding FROM eventstore._subscription_outstanding WHERE subscription = 'large';
SELECT eventstore.drop_subscription('large');

--
-- The usual fetch and ack (0.9.0, src/subscription.c): of a subscription
-- of one lane whose consumer was seen lately and which has nothing
-- outstanding but live lease rows, a fetch is done in C, and so is an ack
-- of exactly one lease row; every other takes the general way (PL/pgSQL),
-- which track_functions counts.  Both give the same results.
--
SET track_functions = 'pl';
-- (the backend keeps its counts until it reports them, between
-- transactions, at most once a second: counted from calls_mark(), in the
-- transaction)
CREATE TEMP TABLE calls_base (fetches bigint, acks bigint);
CREATE FUNCTION pg_temp.calls_now() RETURNS TABLE (fetches bigint, acks bigint)
    LANGUAGE sql AS $$
    SELECT coalesce(sum(calls) FILTER (WHERE funcname = '_subscription_fetch_general'), 0),
           coalesce(sum(calls) FILTER (WHERE funcname = '_subscription_ack_general'), 0)
      FROM pg_catalog.pg_stat_xact_user_functions WHERE schemaname = 'eventstore' $$;
CREATE FUNCTION pg_temp.calls_mark() RETURNS void
    LANGUAGE sql AS $$
    DELETE FROM calls_base; INSERT INTO calls_base SELECT * FROM pg_temp.calls_now() $$;
CREATE FUNCTION pg_temp.general_calls() RETURNS TABLE (fetches bigint, acks bigint)
    LANGUAGE sql AS $$
    SELECT n.fetches - b.fetches, n.acks - b.acks FROM pg_temp.calls_now() n, calls_base b $$;
-- (a lease timeout of an hour: a consumer seen within 36 s was seen lately)
SELECT eventstore.create_subscription('usual', stream_prefix => 'usual-', lease_timeout => '1 hour');
SELECT count(eventstore.append('usual-' || (g % 3), 'T', jsonb_build_object('g', g)))
  FROM generate_series(1, 9) g;
BEGIN;
SELECT pg_temp.calls_mark();
-- a consumer's first fetch: the general way (it records the consumer)
SELECT stream_id, stream_version, data, attempt FROM eventstore.subscription_fetch('usual', 'u1', 2);
SELECT * FROM pg_temp.general_calls();
-- the next: leased as pulled in C; its stream usual-1 is closed by u1's
-- lease, so its second event waits (pending)
SELECT stream_id, stream_version, data, attempt FROM eventstore.subscription_fetch('usual', 'u1', 2);
SELECT * FROM pg_temp.general_calls();
SELECT global_position - (SELECT min(global_position) - 1 FROM eventstore.read_all(0, NULL)
                            WHERE stream_id LIKE 'usual-%') AS n, stream_id, state
  FROM eventstore._subscription_outstanding WHERE subscription = 'usual' ORDER BY global_position;
-- an ack of a whole lease row: in C
SELECT eventstore.subscription_ack('usual', 'u1', positions) AS acked_row
  FROM eventstore.subscription_leases
 WHERE subscription = 'usual' ORDER BY first_position LIMIT 1;
SELECT * FROM pg_temp.general_calls();
-- pending events: the general way again, which delivers them (the
-- acknowledged lease row no longer closes usual-1 and usual-2)
SELECT stream_id, stream_version, attempt FROM eventstore.subscription_fetch('usual', 'u1', 10);
SELECT * FROM pg_temp.general_calls();
-- an ack of part of a row, and one of positions nobody holds: the general way
SELECT eventstore.subscription_ack('usual', 'u1',
         ARRAY(SELECT global_position FROM eventstore._subscription_outstanding
                WHERE subscription = 'usual' AND state = 'leased'
                ORDER BY global_position LIMIT 1)) AS acked_part;
SELECT eventstore.subscription_ack('usual', 'u1', ARRAY[1]::bigint[]) AS acked_none;
SELECT * FROM pg_temp.general_calls();
-- every lease acknowledged (the general way: the positions span rows);
-- usual-0's third event, pulled while its stream was closed, is pending:
-- the general way delivers it; after its ack nothing is outstanding, and
-- the fetch of a new event is in C
SELECT eventstore.subscription_ack('usual', 'u1',
         ARRAY(SELECT global_position FROM eventstore._subscription_outstanding
                WHERE subscription = 'usual' AND state = 'leased')) AS acked_leased;
SELECT stream_id, stream_version, attempt FROM eventstore.subscription_fetch('usual', 'u1', 10);
SELECT eventstore.subscription_ack('usual', 'u1',
         ARRAY(SELECT global_position FROM eventstore._subscription_outstanding
                WHERE subscription = 'usual' AND state = 'leased')) AS acked_leased;
SELECT * FROM pg_temp.general_calls();
SELECT stream_version FROM eventstore.append('usual-9', 'T', '{}');
SELECT stream_id, stream_version, attempt FROM eventstore.subscription_fetch('usual', 'u1', 10);
SELECT count(*) AS outstanding FROM eventstore._subscription_outstanding WHERE subscription = 'usual';
SELECT * FROM pg_temp.general_calls();
COMMIT;
RESET track_functions;
SELECT pulled_position = (SELECT max(global_position) FROM eventstore.events) AS pulled_to_the_end,
       last_fetch_at IS NOT NULL AS fetched
  FROM eventstore.subscriptions WHERE name = 'usual';
-- a subscription that does not exist, and bad arguments: the general way,
-- which reports them
SELECT * FROM eventstore.subscription_fetch('no-such', 'u1', 1);
SELECT * FROM eventstore.subscription_fetch('usual', '', 1);
SELECT * FROM eventstore.subscription_fetch('usual', 'u1', 0);
SELECT eventstore.subscription_ack('usual', 'u1', NULL);
SELECT eventstore.subscription_ack('usual', 'u1', '{}') AS acked_nothing;
SELECT eventstore.drop_subscription('usual');
-- Of a subscription of several lanes, the usual fetch serves each lane no
-- fetch holds, as the general way does (a lease row per lane), and returns
-- their events in position order.
SELECT eventstore.create_subscription('usual_lanes', stream_prefix => 'ul-',
                                      lease_timeout => '1 hour', lanes => 2);
SELECT count(*) AS nothing_yet FROM eventstore.subscription_fetch('usual_lanes', 'u1', 10);
SELECT count(eventstore.append('ul-' || (g % 4), 'T', jsonb_build_object('g', g)))
  FROM generate_series(1, 8) g;
SET track_functions = 'pl';
BEGIN;
SELECT pg_temp.calls_mark();
SELECT stream_id, stream_version, data, eventstore._stream_lane(stream_id, 2) AS lane, attempt
  FROM eventstore.subscription_fetch('usual_lanes', 'u1', 6);
SELECT * FROM pg_temp.general_calls();
SELECT lane, cardinality(positions) AS leased, streams
  FROM eventstore.subscription_leases WHERE subscription = 'usual_lanes' ORDER BY lane;
SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
       count(*) FILTER (WHERE state = 'leased') AS leased
  FROM eventstore._subscription_outstanding WHERE subscription = 'usual_lanes';
-- each lease row acknowledged (in C): nothing is outstanding, and the next
-- fetch, of the last events, is in C too
SELECT sum(eventstore.subscription_ack('usual_lanes', 'u1', positions)) AS acked
  FROM eventstore.subscription_leases WHERE subscription = 'usual_lanes';
SELECT stream_id, stream_version FROM eventstore.subscription_fetch('usual_lanes', 'u1', 10);
SELECT * FROM pg_temp.general_calls();
COMMIT;
RESET track_functions;
SELECT lane, pulled_position >= (SELECT max(global_position) FROM eventstore.events) AS pulled_to_the_end
  FROM eventstore.subscription_lanes WHERE subscription = 'usual_lanes' ORDER BY lane;
SELECT eventstore.drop_subscription('usual_lanes');

DROP EXTENSION eventstore;
