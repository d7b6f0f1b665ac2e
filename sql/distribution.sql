--
-- A store distributed with Citus (0.8.0), as a single server sees it: the
-- functions exist, report a single server, and refuse what needs Citus
-- with their SQLSTATE, writing nothing.  Distribution itself is tested on
-- a coordinator and two workers (test/t/016_citus.pl).
--
CREATE EXTENSION eventstore;
SELECT stream_version FROM eventstore.append('d-1', 'Opened', '{}');
-- ":unchanged": positions drawn, whether distributed, and the primary keys
-- (the worker may remove the events of a deleted stream meanwhile, so the
-- sequence, not a count of rows, shows that nothing was written)
\set unchanged 'SELECT last_value AS drawn, eventstore.is_distributed() AS distributed, (SELECT string_agg(conname || ''='' || pg_get_constraintdef(oid), '', '' ORDER BY conname) FROM pg_constraint WHERE conrelid IN (''eventstore.events''::regclass, ''eventstore.event_ids''::regclass) AND contype = ''p'') AS keys FROM eventstore.global_position_seq;'
:unchanged

-- A single server: nothing distributed, read_all and global_horizon work.
SELECT eventstore.is_distributed();
SELECT count(*) FROM eventstore.read_all(0);
SELECT eventstore.global_horizon() >= 1 AS horizon_ok;

-- The global log as partitions: a single server is one partition,
-- -2147483648 (the lowest hash), read as read_all reads it.
SELECT count(eventstore.append('d-' || (i % 3), CASE WHEN i % 2 = 0 THEN 'Even' ELSE 'Odd' END,
                               jsonb_build_object('i', i)))
  FROM generate_series(1, 9) i;
SELECT partition, global_position, stream_id, stream_version, event_type
  FROM eventstore.read_partitions() ORDER BY global_position;
SELECT (SELECT array_agg(global_position ORDER BY global_position)
          FROM eventstore.read_partitions('{"-2147483648": 3}', 4, ARRAY['Odd'], 'd-'))
     = (SELECT array_agg(global_position ORDER BY global_position)
          FROM eventstore.read_all(3, 4, ARRAY['Odd'], 'd-')) AS same_as_read_all;
-- a key below every partition stands for all of them (a follower's
-- checkpoint from before a split); unknown higher keys change nothing
SELECT count(*) FROM eventstore.read_partitions('{"-2147483648": 8}');
SELECT count(*) FROM eventstore.read_partitions('{"-2147483648": 8, "5": 1}');
SELECT count(*) FROM eventstore.read_partitions('{"-2147483648": 8}', partitions => ARRAY[7]);
SELECT count(*) FROM eventstore.read_partitions('{}', 0);
-- deleted streams are hidden as read_all hides them
SELECT eventstore.delete_stream('d-0');
SELECT count(*) FILTER (WHERE stream_id = 'd-0') AS d0, count(*) FILTER (WHERE stream_id = '$$d-0') AS markers
  FROM eventstore.read_partitions();

-- Bad checkpoints and counts (22023), nothing read.
SELECT * FROM eventstore.read_partitions('[1, 2]');
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('"x"');
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('{"first": 1}');
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('{"1.5": 1}');
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('{"2147483648": 1}');
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('{"0": -1}');
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('{"0": 1.5}');
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('{"0": "1"}');
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('{"0": 99999999999999999999}');
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('{}', -1);
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('{}', 10, partitions => ARRAY[1, NULL]);
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions('{}', 10, partitions => ARRAY[[1], [2]]);
\echo :SQLSTATE
-- NULL checkpoint: from the start
SELECT count(*) FROM eventstore.read_partitions(NULL);

-- Where each partition is complete: a single server is one partition, at
-- global_horizon(); _partition_horizons_here lists the partitions asked
-- for that are placed here.
SELECT partition, horizon = eventstore.global_horizon() AS at_global_horizon,
       horizon = (SELECT max(global_position) FROM eventstore.events) AS at_last_event
  FROM eventstore.partition_horizons();
SELECT partition, horizon = eventstore.global_horizon() AS at_global_horizon
  FROM eventstore._partition_horizons_here(ARRAY[-2147483648, 7]);
SELECT count(*) FROM eventstore._partition_horizons_here('{}');
-- (22004, 22023)
SELECT * FROM eventstore._partition_horizons_here(NULL);
\echo :SQLSTATE
SELECT * FROM eventstore._partition_horizons_here(ARRAY[1, NULL]);
\echo :SQLSTATE
SELECT * FROM eventstore._partition_horizons_here(ARRAY[[1], [2]]);
\echo :SQLSTATE
-- How far a follower may move (0.9.0): on a single server, no partition
-- moves, so the same as partition_horizons (the cap at each partition's
-- highest position is TAP 016 (m)'s: a distributed store).
SELECT partition, horizon = eventstore.global_horizon() AS at_global_horizon
  FROM eventstore._partitions_complete();
SELECT partition, horizon = eventstore.global_horizon() AS at_global_horizon
  FROM eventstore._partitions_complete_here(ARRAY[-2147483648, 7]);
SELECT eventstore._horizons_vector() = jsonb_build_object('-2147483648', eventstore.global_horizon())
       AS vector_at_global_horizon;
SELECT * FROM eventstore._partitions_complete_here(NULL);
\echo :SQLSTATE

-- A durable subscription on a single server pulls from read_all and has
-- no checkpoint per partition; its events are read from
-- eventstore.events, not stored with them: what a fetch leases fresh is
-- one lease row of positions (0.9.0).
SELECT eventstore.create_subscription('d_sub', start_from => 2);
SELECT global_position, stream_id, event_type FROM eventstore.subscription_fetch('d_sub', 'c', 3);
SELECT pulled_position, pulled_partitions FROM eventstore.subscriptions;
SELECT (SELECT count(*) FROM eventstore.subscription_events) AS stored,
       (SELECT string_agg(cardinality(l.positions)::text, ',') FROM eventstore.subscription_leases l)
         AS leased_per_row;
-- (the lag counts the rows of eventstore.events: wait until the worker has
-- removed those of the stream deleted above, which it starts at once)
DO $$
BEGIN
    FOR i IN 1 .. 3000 LOOP
        EXIT WHEN NOT EXISTS (SELECT FROM eventstore.events WHERE stream_id = 'd-0');
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
SELECT position, pulled_position, lag_events, pulled_partitions FROM eventstore.subscription_status;
-- a checkpoint vector that is not an object is refused by the table (23514)
\set VERBOSITY terse
UPDATE eventstore.subscriptions SET pulled_partitions = '[1]';
\echo :SQLSTATE
\set VERBOSITY default
SELECT eventstore.drop_subscription('d_sub');

-- Nothing to align on a single server (55000).
SELECT eventstore.align_positions();
\echo :SQLSTATE

-- Bad shard counts (22023), before anything else is looked at.
SELECT eventstore.distribute(0);
\echo :SQLSTATE
SELECT eventstore.distribute(64001);
\echo :SQLSTATE
SELECT eventstore.distribute(NULL);
\echo :SQLSTATE
:unchanged

-- Without Citus in the database (55000): the keys stay as they were.
SELECT eventstore.distribute();
\echo :SQLSTATE
SELECT eventstore.distribute(4);
\echo :SQLSTATE
:unchanged

-- Only its owner (a superuser here) may distribute the store: EXECUTE is
-- not granted to PUBLIC (42501) ...
CREATE ROLE regress_dist_user;
GRANT USAGE ON SCHEMA eventstore TO regress_dist_user;
SET ROLE regress_dist_user;
SELECT eventstore.distribute(4);
\echo :SQLSTATE
RESET ROLE;
-- The functions of the partitioned log for nobody but those granted:
-- read_partitions, partition_horizons, align_positions and
-- _advance_positions refuse PUBLIC (42501); _read_partitions_here and
-- _partition_horizons_here, which nodes call for one another, are
-- executable by everyone but refuse whoever may not call read_partitions
-- or partition_horizons; so do _partitions_complete and its
-- _partitions_complete_here (0.9.0).
SET ROLE regress_dist_user;
SELECT * FROM eventstore.partition_horizons();
\echo :SQLSTATE
SELECT * FROM eventstore._partition_horizons_here(ARRAY[-2147483648]);
\echo :SQLSTATE
SELECT * FROM eventstore._partitions_complete();
\echo :SQLSTATE
SELECT * FROM eventstore._partitions_complete_here(ARRAY[-2147483648]);
\echo :SQLSTATE
SELECT * FROM eventstore.read_partitions();
\echo :SQLSTATE
SELECT eventstore.align_positions();
\echo :SQLSTATE
SELECT eventstore._advance_positions(1000000);
\echo :SQLSTATE
SELECT * FROM eventstore._read_partitions_here('{}', 10, NULL, NULL, NULL);
\echo :SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION eventstore.read_partitions(jsonb, bigint, text[], text, integer[]) TO regress_dist_user;
SET ROLE regress_dist_user;
SELECT count(*) FROM eventstore._read_partitions_here('{}', 10, NULL, NULL, NULL);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION eventstore.read_partitions(jsonb, bigint, text[], text, integer[]) FROM regress_dist_user;
-- the sequence was not moved by the refused call
SELECT last_value < 1000000 AS not_advanced FROM eventstore.global_position_seq;
GRANT EXECUTE ON FUNCTION eventstore.partition_horizons() TO regress_dist_user;
SET ROLE regress_dist_user;
SELECT partition FROM eventstore._partition_horizons_here(ARRAY[-2147483648]);
SELECT partition FROM eventstore.partition_horizons();
RESET ROLE;
REVOKE EXECUTE ON FUNCTION eventstore.partition_horizons() FROM regress_dist_user;
SET ROLE regress_dist_user;
-- ... and granted EXECUTE, the function runs with the caller's rights
-- (SECURITY INVOKER: only the owner of the tables could change them; on a
-- single server the missing Citus is refused first, 55000).
GRANT EXECUTE ON FUNCTION eventstore.distribute(integer) TO regress_dist_user;
SET ROLE regress_dist_user;
SELECT eventstore.distribute(4);
\echo :SQLSTATE
RESET ROLE;
:unchanged

-- The guard triggers of what stays single-server let a single server be.
CREATE FUNCTION d_handler(e eventstore.event) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT eventstore.create_projection('d_proj', 'd_handler(eventstore.event)');
SELECT name FROM eventstore.projections;
SELECT eventstore.drop_projection('d_proj');
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgname LIKE '%single_server' ORDER BY 1;

SELECT prosecdef AS security_definer FROM pg_proc WHERE oid = 'eventstore.distribute(integer)'::regprocedure;

-- The pull of vector followers and the total order (0.8.0).  On a single
-- server one partition; an async projection's checkpoint stays scalar.
SELECT eventstore.create_projection('d_async', 'd_handler(eventstore.event)', mode => 'async', replay => false);
SELECT position = eventstore._drawn_position() AS at_drawn, partitions IS NULL AS no_vector
  FROM eventstore.projection_checkpoints WHERE name = 'd_async';
SELECT partitions FROM eventstore.projection_status WHERE name = 'd_async';
SELECT eventstore.drop_projection('d_async');
SELECT cardinality(p.events) > 0 AS got_events, p.partitions ? '-2147483648' AS one_partition,
       p.more
  FROM eventstore._pull_partitions('{}', 100000, NULL, NULL) p;
SELECT eventstore._vector_after('{"-2147483648": 5, "0": 9}', -7) AS low,
       eventstore._vector_after('{"-2147483648": 5, "0": 9}', 12) AS high,
       eventstore._vector_after('{"0": 9}', -7) AS none;
-- _lift_positions: a single server's sequence is not numbered (false, not moved)
SELECT eventstore._lift_positions(1000000000) AS lifted;
SELECT last_value < 1000000 AS not_lifted FROM eventstore.global_position_seq;
SELECT eventstore._lift_positions(NULL);
\echo :SQLSTATE
SELECT eventstore._lift_positions(-1);
\echo :SQLSTATE
-- the merged read and the lift of every node: distributed stores only
SELECT * FROM eventstore._read_all_merged(0, 10, NULL, NULL);
\echo :SQLSTATE
SELECT eventstore._lift_all_positions(5);
\echo :SQLSTATE
-- eventstore.total_order: superusers only (it costs appenders); on a single
-- server read_all is what it always is
SET ROLE regress_dist_user;
SET eventstore.total_order = on;
\echo :SQLSTATE
SELECT eventstore._pull_partitions('{}', 10, NULL, NULL);
\echo :SQLSTATE
SELECT eventstore._lift_positions(5);
\echo :SQLSTATE
SELECT eventstore._read_all_merged(0, 10, NULL, NULL);
\echo :SQLSTATE
RESET ROLE;
SELECT count(*) AS read_all_off FROM eventstore.read_all(0, 100000);
SET eventstore.total_order = on;
SELECT count(*) AS read_all_on FROM eventstore.read_all(0, 100000);
RESET eventstore.total_order;

REVOKE EXECUTE ON FUNCTION eventstore.distribute(integer) FROM regress_dist_user;
REVOKE USAGE ON SCHEMA eventstore FROM regress_dist_user;
DROP ROLE regress_dist_user;
DROP FUNCTION d_handler(eventstore.event);
DROP EXTENSION eventstore;
