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

-- A fresh install of the default version is the same as 0.1.0 + update.
DROP FUNCTION remember(eventstore.event);
DROP EXTENSION eventstore;
CREATE EXTENSION eventstore;
SELECT extversion FROM pg_extension WHERE extname = 'eventstore';
DROP EXTENSION eventstore;
DROP TABLE seen;
