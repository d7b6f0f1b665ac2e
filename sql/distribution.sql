--
-- A store distributed with Citus (0.8.0), as a single server sees it: the
-- functions exist, report a single server, and refuse what needs Citus
-- with their SQLSTATE, writing nothing.  Distribution itself is tested on
-- a coordinator and two workers (test/t/016_citus.pl).
--
CREATE EXTENSION eventstore;
SELECT stream_version FROM eventstore.append('d-1', 'Opened', '{}');
\set unchanged 'SELECT count(*) AS events, eventstore.is_distributed() AS distributed, (SELECT string_agg(conname || ''='' || pg_get_constraintdef(oid), '', '' ORDER BY conname) FROM pg_constraint WHERE conrelid IN (''eventstore.events''::regclass, ''eventstore.event_ids''::regclass) AND contype = ''p'') AS keys FROM eventstore.events;'
:unchanged

-- A single server: nothing distributed, read_all and global_horizon work.
SELECT eventstore.is_distributed();
SELECT count(*) FROM eventstore.read_all(0);
SELECT eventstore.global_horizon() >= 1 AS horizon_ok;

-- Bad shard counts (22023), before anything else is looked at.
SELECT eventstore.distribute(0);
\echo :SQLSTATE
SELECT eventstore.distribute(64001);
\echo :SQLSTATE
SELECT eventstore.distribute(NULL);
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

REVOKE EXECUTE ON FUNCTION eventstore.distribute(integer) FROM regress_dist_user;
REVOKE USAGE ON SCHEMA eventstore FROM regress_dist_user;
DROP ROLE regress_dist_user;
DROP FUNCTION d_handler(eventstore.event);
DROP EXTENSION eventstore;
