--
-- Updating from 0.1.0: events survive, the new objects arrive, and a
-- session that appended under 0.1.0 picks up projections without
-- reconnecting.
--
CREATE EXTENSION eventstore VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'eventstore';
SELECT stream_version FROM eventstore.append('acct-1', 'Deposited', '{"amount": 1}');
SELECT to_regclass('eventstore.projections') AS projections_table;

ALTER EXTENSION eventstore UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'eventstore';
SELECT stream_id, stream_version, event_type FROM eventstore.read_stream('acct-1');

CREATE TABLE seen (stream_id text, stream_version bigint);
CREATE FUNCTION remember(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO seen VALUES (e.stream_id, e.stream_version) $$;
SELECT eventstore.create_projection('seen', 'remember(eventstore.event)', replay => false);
SELECT stream_version FROM eventstore.append('acct-1', 'Deposited', '{"amount": 2}');
SELECT * FROM seen;

-- Updating from 0.2.0 to 0.3.0: the stream lifecycle.  Streams written
-- under 0.2.0 (by the 0.3.0 library, which reads them without
-- eventstore.streams) keep their events and get the lifecycle functions.
DROP FUNCTION remember(eventstore.event);
DROP EXTENSION eventstore;
CREATE EXTENSION eventstore VERSION '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'eventstore';
SELECT to_regclass('eventstore.streams') AS streams_table, to_regprocedure('eventstore.stream_info(text)') AS stream_info;
SELECT stream_version FROM eventstore.append_events('old-1', '[{"type": "A", "data": 1, "id": "00000000-0000-0000-0000-000000000001"}, {"type": "B", "data": 2}]', 0);
SELECT stream_version FROM eventstore.append('old-2', 'A', '{}', expected_version => 0);
SELECT stream_version FROM eventstore.append('old-1', 'C', '3', expected_version => 0);
\echo :SQLSTATE
SELECT stream_version, event_type, data FROM eventstore.read_stream('old-1');
SELECT eventstore.stream_version('old-1') AS version, count(*) AS read_all FROM eventstore.read_all(0, NULL);
CREATE TABLE upgrade_events AS SELECT * FROM eventstore.events;

ALTER EXTENSION eventstore UPDATE TO '0.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'eventstore';
SELECT count(*) AS unchanged_events
  FROM (SELECT * FROM eventstore.events INTERSECT SELECT * FROM upgrade_events) x;
SELECT count(*) AS stream_rows FROM eventstore.streams;
SELECT count(*) AS archived_events FROM eventstore.archived_events;
SELECT stream_id, state, stream_version, last_version FROM eventstore.stream_info('old-1');
-- a retry of the 0.2.0 append is recognised
SELECT stream_version FROM eventstore.append('old-1', 'A', '1', NULL, 0, '00000000-0000-0000-0000-000000000001');
SELECT eventstore.stream_version('old-1') AS version;
-- the lifecycle works on the old streams
SELECT eventstore.delete_stream('old-2', 1) AS deleted;
SELECT stream_version FROM eventstore.append('old-2', 'A', '{}', expected_version => 0);
SELECT eventstore.archive_stream('old-1') AS archived;
SELECT stream_version, event_type FROM eventstore.read_stream('old-1');
SELECT eventstore.restore_stream('old-1') AS restored;
-- (old-2's deleted event may be gone already: the worker removes it)
SELECT count(*) AS unchanged_old_1_events
  FROM (SELECT * FROM eventstore.events WHERE stream_id = 'old-1'
        INTERSECT SELECT * FROM upgrade_events WHERE stream_id = 'old-1') x;

-- Updating from 0.3.0 to 0.4.0: projections, snapshot policies and leases
-- are managed through SECURITY DEFINER functions that know their caller.
-- The table privileges earlier READMEs told administrators to grant to
-- projection managers are revoked (reading stays); a lease taken before
-- the update belongs to no role: nobody can ack it, it expires and is
-- delivered again.
CREATE ROLE regress_es_upgrade_mgr NOLOGIN;
CREATE ROLE "regress_es_Upgrade mgr" NOLOGIN;   -- a name that needs quoting
GRANT USAGE ON SCHEMA eventstore TO regress_es_upgrade_mgr;
GRANT SELECT, INSERT, UPDATE, DELETE ON eventstore.projections, eventstore.projection_checkpoints
   TO regress_es_upgrade_mgr, "regress_es_Upgrade mgr";
GRANT INSERT, UPDATE ON eventstore.snapshot_policies, eventstore.subscription_events TO PUBLIC;
CREATE FUNCTION remember(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO seen VALUES (e.stream_id, e.stream_version) $$;
SELECT eventstore.create_projection('old_p', 'remember(eventstore.event)', replay => false);
SELECT eventstore.create_subscription('old_sub');
SELECT stream_id, stream_version FROM eventstore.subscription_fetch('old_sub', 'c1', 1);
-- the 0.4.0 library runs an async handler of a database still at 0.3.0
-- under the server's default search_path (unqualified "seen" in public):
-- one row from the inline old_p, one from old_async
SELECT eventstore.create_projection('old_async', 'remember(eventstore.event)',
                                    stream_prefix => 'async-', mode => 'async');
SELECT stream_version FROM eventstore.append('async-1', 'D', '{}');
SELECT eventstore.wait_for_projection('old_async');
SELECT * FROM seen WHERE stream_id = 'async-1';
SELECT eventstore.drop_projection('old_async');

ALTER EXTENSION eventstore UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'eventstore';
SELECT r AS role, t AS table_name,
       has_table_privilege(r, t, 'SELECT') AS may_read,
       has_table_privilege(r, t, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS may_write
  FROM unnest(ARRAY['regress_es_upgrade_mgr', 'regress_es_Upgrade mgr', 'public']) r,
       unnest(ARRAY['eventstore.projections', 'eventstore.projection_checkpoints',
                    'eventstore.snapshot_policies', 'eventstore.subscription_events']) t
 ORDER BY 1, 2;
-- owned by its creator, the bootstrap superuser (named after whoever runs the tests)
SELECT name, owner::oid = 10 AS owner_is_bootstrap_superuser, search_path FROM eventstore.projections;
SELECT state, consumer, consumer_role FROM eventstore.subscription_events;
SELECT eventstore.subscription_ack('old_sub', 'c1', (SELECT array_agg(global_position)
                                                      FROM eventstore.subscription_events)) AS acked;
SELECT stream_version FROM eventstore.append('old-1', 'D', '{}');
SELECT * FROM seen WHERE stream_id = 'old-1';
SELECT eventstore.drop_projection('old_p');
SELECT eventstore.drop_subscription('old_sub');
DROP FUNCTION remember(eventstore.event);
DROP OWNED BY regress_es_upgrade_mgr, "regress_es_Upgrade mgr";
DROP ROLE regress_es_upgrade_mgr, "regress_es_Upgrade mgr";

-- Executable by PUBLIC (which has no USAGE on the schema): only a snapshot
-- policy's step and its lookup, which return a caller only its own policies.
SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text) AS executable_by_public
  FROM pg_proc p WHERE p.pronamespace = 'eventstore'::regnamespace
   AND has_function_privilege('public', p.oid, 'EXECUTE');
-- On to the default version (0.5.0 adds comments and changes no behaviour;
-- 0.6.0 is issue 14).
ALTER EXTENSION eventstore UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'eventstore';
-- the objects of 0.2.0 + updates, to compare with a fresh install
CREATE TABLE upgrade_objects AS
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'eventstore');
SELECT count(*) > 0 AS has_objects FROM upgrade_objects;
DROP TABLE upgrade_events;

-- A fresh install of the default version (its own install script, built
-- from sql/install/) has the same members as 0.2.0 + updates.
-- test/t/014_upgrade_chain.pl compares each object in detail.
DROP EXTENSION eventstore;
CREATE EXTENSION eventstore;
SELECT extversion FROM pg_extension WHERE extname = 'eventstore';
SELECT 'only after update' AS side, object FROM
  (SELECT object FROM upgrade_objects
   EXCEPT SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
           WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
             AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'eventstore')) a
UNION ALL
SELECT 'only in fresh install', object FROM
  (SELECT pg_describe_object(classid, objid, objsubid) AS object FROM pg_depend
    WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'eventstore')
   EXCEPT SELECT object FROM upgrade_objects) b
ORDER BY 1, 2;
DROP EXTENSION eventstore;
DROP TABLE seen, upgrade_objects;

-- Updating from 0.5.0 to 0.6.0.  The 0.6.0 library on a 0.5.0 database
-- (no eventstore.event_ids yet) recognises a retry after another append by
-- reading the stream.  The update stores the ids of all stored events in
-- eventstore.event_ids.  A database where an id is stored twice (a retry
-- appended again before 0.6.0, made here by hand) keeps every event: the
-- first event of the id keeps it, and the update warns; retries are
-- recognised all the same, and an id of another stream is refused.
CREATE EXTENSION eventstore VERSION '0.5.0';
SELECT stream_version FROM eventstore.append_events('dup', '[{"type": "A", "data": 1, "id": "00000000-0000-0000-0000-000000000001"}]');
SELECT stream_version FROM eventstore.append('dup', 'B', '2');
SELECT stream_version FROM eventstore.append_events('dup', '[{"type": "A", "data": 1, "id": "00000000-0000-0000-0000-000000000001"}]');
INSERT INTO eventstore.events (global_position, stream_version, created_at, event_id, stream_id, event_type, data)
SELECT nextval('eventstore.global_position_seq'), 3, created_at, event_id, stream_id, event_type, data
  FROM eventstore.events WHERE stream_id = 'dup' AND stream_version = 1;
ALTER EXTENSION eventstore UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'eventstore';
SELECT (SELECT count(DISTINCT event_id) FROM eventstore.events) AS distinct_ids,
       (SELECT count(*) FROM eventstore.event_ids) AS id_rows;
SELECT stream_id, stream_version FROM eventstore.event_ids
 WHERE event_id = '00000000-0000-0000-0000-000000000001';
SELECT count(*) AS stored FROM eventstore.events WHERE stream_id = 'dup';
SELECT stream_version FROM eventstore.append_events('dup', '[{"type": "A", "data": 1, "id": "00000000-0000-0000-0000-000000000001"}]');
SELECT stream_version FROM eventstore.append('dup-2', 'A', '1', event_id => '00000000-0000-0000-0000-000000000001');
\echo :SQLSTATE
SELECT count(*) AS stored FROM eventstore.events;
DROP EXTENSION eventstore;

-- Updating from 0.8.0 to 0.9.0: a lease taken under 0.8.0 stays a row of
-- subscription_events, what a 0.9.0 fetch leases fresh is a lease row, and
-- the two are one set of outstanding events: the old lease still closes
-- its stream, both are acknowledged as before.
CREATE EXTENSION eventstore VERSION '0.8.0';
SELECT count(eventstore.append(s, 'T', '{}')) FROM unnest(ARRAY['a-1', 'b-1', 'a-1', 'b-1']) s;
SELECT eventstore.create_subscription('mixed');
SELECT global_position, stream_id FROM eventstore.subscription_fetch('mixed', 'c1', 1);
ALTER EXTENSION eventstore UPDATE TO '0.9.0';
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('mixed', 'c2', 10);
SELECT global_position, stream_id, state, consumer FROM eventstore.subscription_events ORDER BY 1;
SELECT consumer, positions FROM eventstore.subscription_leases;
SELECT global_position, stream_id, state, consumer FROM eventstore._subscription_outstanding ORDER BY 1;
SELECT position, in_flight, consumers FROM eventstore.subscription_status;
SELECT eventstore.subscription_ack('mixed', 'c1', '{1}') AS old_acked,
       eventstore.subscription_ack('mixed', 'c2', '{2,4}') AS new_acked;
SELECT global_position, stream_id, attempt FROM eventstore.subscription_fetch('mixed', 'c1', 10);
SELECT eventstore.subscription_ack('mixed', 'c1', '{3}') AS acked;
SELECT position, in_flight FROM eventstore.subscription_status;
DROP EXTENSION eventstore;
