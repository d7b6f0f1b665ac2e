--
-- Access control: nothing is open to PUBLIC; read-only and read-write access
-- are granted per function.
--
--   reader: GRANT USAGE ON SCHEMA eventstore
--           GRANT EXECUTE ON FUNCTION eventstore.read_stream(text, bigint, bigint, boolean),
--                                     eventstore.stream_version(text)
--   writer: the reader's grants, plus
--           GRANT EXECUTE ON FUNCTION eventstore.append(text, text, jsonb, jsonb, bigint, uuid),
--                                     eventstore.append_events(text, jsonb, bigint)
--
-- Nobody but the owner gets privileges on eventstore.events itself; the
-- functions are the only way in.
--
CREATE EXTENSION eventstore;
SELECT stream_version FROM eventstore.append('acct-1', 'Opened', '{}');

-- Nothing in the schema is usable by PUBLIC.
SELECT has_schema_privilege('public', 'eventstore', 'USAGE') AS schema_usage,
       has_table_privilege('public', 'eventstore.events',
                           'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS events_table,
       has_sequence_privilege('public', 'eventstore.global_position_seq',
                              'USAGE, SELECT, UPDATE') AS position_sequence;
-- Executable by PUBLIC, which has no USAGE on the schema: only a snapshot
-- policy's step and its lookup, which return a caller only its own policies.
SELECT count(*) > 0 AS has_functions,
       array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text)
         FILTER (WHERE has_function_privilege('public', p.oid, 'EXECUTE')) AS executable_by_public
  FROM pg_proc p WHERE p.pronamespace = 'eventstore'::regnamespace;

CREATE ROLE regress_es_nobody NOLOGIN;
CREATE ROLE regress_es_reader NOLOGIN;
CREATE ROLE regress_es_writer NOLOGIN;

GRANT USAGE ON SCHEMA eventstore TO regress_es_reader, regress_es_writer;
GRANT EXECUTE ON FUNCTION eventstore.read_stream(text, bigint, bigint, boolean),
                          eventstore.stream_version(text)
   TO regress_es_reader, regress_es_writer;
GRANT EXECUTE ON FUNCTION eventstore.append(text, text, jsonb, jsonb, bigint, uuid),
                          eventstore.append_events(text, jsonb, bigint)
   TO regress_es_writer;

-- The resulting privileges.
SELECT f::regprocedure AS function,
       has_function_privilege('regress_es_nobody', f, 'EXECUTE') AS nobody,
       has_function_privilege('regress_es_reader', f, 'EXECUTE') AS reader,
       has_function_privilege('regress_es_writer', f, 'EXECUTE') AS writer
  FROM unnest(ARRAY['eventstore.append(text, text, jsonb, jsonb, bigint, uuid)',
                    'eventstore.append_events(text, jsonb, bigint)',
                    'eventstore.read_stream(text, bigint, bigint, boolean)',
                    'eventstore.stream_version(text)']::regprocedure[]) AS f;
SELECT r AS role,
       has_schema_privilege(r, 'eventstore', 'USAGE') AS schema_usage,
       has_table_privilege(r, 'eventstore.events',
                           'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') AS events_table
  FROM unnest(ARRAY['regress_es_nobody', 'regress_es_reader', 'regress_es_writer']) AS r;

--
-- A role without grants can call nothing.
--
SET ROLE regress_es_nobody;
SELECT eventstore.stream_version('acct-1');
\echo :SQLSTATE
SELECT * FROM eventstore.read_stream('acct-1');
\echo :SQLSTATE
SELECT eventstore.append('acct-1', 'T', '{}');
\echo :SQLSTATE
SELECT eventstore.append_events('acct-1', '[{"type": "T", "data": {}}]');
\echo :SQLSTATE
SELECT count(*) FROM eventstore.events;
\echo :SQLSTATE
RESET ROLE;

--
-- The reader reads; it cannot append or touch the table.
--
SET ROLE regress_es_reader;
SELECT eventstore.stream_version('acct-1');
SELECT stream_id, stream_version, event_type, data FROM eventstore.read_stream('acct-1');
SELECT eventstore.append('acct-1', 'T', '{}');
\echo :SQLSTATE
SELECT eventstore.append_events('acct-1', '[{"type": "T", "data": {}}]');
\echo :SQLSTATE
SELECT count(*) FROM eventstore.events;
\echo :SQLSTATE
INSERT INTO eventstore.events (global_position, stream_version, created_at, event_id,
                               stream_id, event_type, data)
     VALUES (1000, 2, now(), '00000000-0000-4000-8000-000000000001', 'acct-1', 'Forged', '{}');
\echo :SQLSTATE
UPDATE eventstore.events SET data = '{"forged": true}';
\echo :SQLSTATE
DELETE FROM eventstore.events;
\echo :SQLSTATE
TRUNCATE eventstore.events;
\echo :SQLSTATE
SELECT nextval('eventstore.global_position_seq');
\echo :SQLSTATE
RESET ROLE;
SELECT count(*) AS events, eventstore.stream_version('acct-1') AS version FROM eventstore.events;

--
-- The writer appends and reads; it cannot touch the table either, nor raise
-- the (superuser-only) event size limit.
--
SET ROLE regress_es_writer;
SELECT stream_version FROM eventstore.append('acct-1', 'Deposited', '{"amount": 10}', expected_version => 1);
SELECT stream_version FROM eventstore.append_events('acct-1',
         '[{"type": "Deposited", "data": {"amount": 5}}, {"type": "Withdrawn", "data": {"amount": 3}}]', 2);
SELECT stream_version FROM eventstore.append('acct-1', 'Late', '{}', expected_version => 1);
\echo :SQLSTATE
SELECT eventstore.stream_version('acct-1');
SELECT stream_version, event_type, data FROM eventstore.read_stream('acct-1', NULL, 3, true);
SELECT count(*) FROM eventstore.events;
\echo :SQLSTATE
INSERT INTO eventstore.events (global_position, stream_version, created_at, event_id,
                               stream_id, event_type, data)
     VALUES (1000, 5, now(), '00000000-0000-4000-8000-000000000001', 'acct-1', 'Forged', '{}');
\echo :SQLSTATE
UPDATE eventstore.events SET data = '{"forged": true}';
\echo :SQLSTATE
DELETE FROM eventstore.events;
\echo :SQLSTATE
TRUNCATE eventstore.events;
\echo :SQLSTATE
SELECT nextval('eventstore.global_position_seq');
\echo :SQLSTATE
SET eventstore.max_event_size = '2MB';
\echo :SQLSTATE
RESET ROLE;

-- The reader sees what the writer appended.
SET ROLE regress_es_reader;
SELECT stream_version, event_type FROM eventstore.read_stream('acct-1');
RESET ROLE;
SELECT count(*) AS events, count(*) FILTER (WHERE event_type = 'Forged') AS forged
  FROM eventstore.events;

-- Inline projection handlers run with the rights of the appending role:
-- the writer needs no privileges on the projection tables, but its
-- handler's writes are checked against the writer (42501, nothing written)
-- unless the handler is SECURITY DEFINER.  Managing projections is not
-- part of the writer's grants.
CREATE TABLE per_stream (stream_id text PRIMARY KEY, n integer NOT NULL);
CREATE FUNCTION count_per_stream(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO per_stream VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = per_stream.n + 1 $$;
SELECT eventstore.create_projection('per_stream', 'count_per_stream(eventstore.event)', replay => false);
SET ROLE regress_es_writer;
SELECT stream_version FROM eventstore.append('acct-9', 'Opened', '{}');
\echo :SQLSTATE
SELECT eventstore.stream_version('acct-9');
SELECT eventstore.drop_projection('per_stream');
\echo :SQLSTATE
RESET ROLE;
ALTER FUNCTION count_per_stream(eventstore.event) SECURITY DEFINER;
SET ROLE regress_es_writer;
SELECT stream_version FROM eventstore.append('acct-9', 'Opened', '{}');
RESET ROLE;
SELECT * FROM per_stream;
SELECT eventstore.drop_projection('per_stream');
DROP FUNCTION count_per_stream(eventstore.event);
DROP TABLE per_stream;

-- Folding and snapshots need EXECUTE on the functions only, not privileges
-- on eventstore.snapshots (read and written as its owner).
CREATE FUNCTION count_events(n bigint, e eventstore.event) RETURNS bigint
    LANGUAGE sql RETURN n + 1;
GRANT EXECUTE ON FUNCTION eventstore.aggregate_stream(text, regprocedure, anyelement, bigint, timestamptz, boolean, text),
                          eventstore.take_snapshot(text, regprocedure, anyelement, bigint, text)
   TO regress_es_reader;
SET ROLE regress_es_reader;
SELECT eventstore.take_snapshot('acct-1', 'count_events(bigint,eventstore.event)', 0::bigint) AS snapshot_at;
SELECT eventstore.aggregate_stream('acct-1', 'count_events(bigint,eventstore.event)', 0::bigint) AS events;
SELECT count(*) FROM eventstore.snapshots;
\echo :SQLSTATE
RESET ROLE;
SELECT stream_id, stream_version, state FROM eventstore.snapshots;
DROP FUNCTION count_events(bigint, eventstore.event);

-- Roles are cluster-wide: remove them.
DROP OWNED BY regress_es_nobody, regress_es_reader, regress_es_writer;
DROP ROLE regress_es_nobody, regress_es_reader, regress_es_writer;

DROP EXTENSION eventstore;
