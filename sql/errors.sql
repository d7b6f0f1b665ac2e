--
-- Bad input: every error with its SQLSTATE, and after every failed append
-- proof that nothing was written.
--
CREATE EXTENSION eventstore;

SELECT stream_version FROM eventstore.append('e', 'Opened', '{}');
-- After each failed call, ":written" shows the number of events and the
-- version of stream "e": a failure leaves both as they were before it (only
-- the successful calls of the limit checks below change them).
\set written 'SELECT count(*) AS events, eventstore.stream_version(''e'') AS e_version FROM eventstore.events;'
:written

--
-- eventstore.append()
--
-- NULL arguments (22004).
SELECT eventstore.append(NULL, 'T', '{}');
\echo :SQLSTATE
:written
SELECT eventstore.append('e', NULL, '{}');
\echo :SQLSTATE
:written
SELECT eventstore.append('e', 'T', NULL);
\echo :SQLSTATE
:written

-- Empty stream id or event type (22023).
SELECT eventstore.append('', 'T', '{}');
\echo :SQLSTATE
:written
SELECT eventstore.append('e', '', '{}');
\echo :SQLSTATE
:written

-- Stream id or event type longer than 1024 bytes (54000); multibyte
-- characters count by bytes.
SELECT eventstore.append(repeat('s', 1025), 'T', '{}');
\echo :SQLSTATE
:written
SELECT eventstore.append(repeat('é', 513), 'T', '{}');
\echo :SQLSTATE
:written
SELECT eventstore.append('e', repeat('t', 1025), '{}');
\echo :SQLSTATE
:written
SELECT eventstore.append('e', repeat('é', 513), '{}');
\echo :SQLSTATE
:written

-- Metadata that is not a JSON object (22023); JSON null is "none".
SELECT eventstore.append('e', 'T', '{}', '[]');
\echo :SQLSTATE
:written
SELECT eventstore.append('e', 'T', '{}', '[{"a": 1}]');
\echo :SQLSTATE
:written
SELECT eventstore.append('e', 'T', '{}', '"text"');
\echo :SQLSTATE
:written
SELECT eventstore.append('e', 'T', '{}', '42');
\echo :SQLSTATE
:written
SELECT eventstore.append('e', 'T', '{}', 'false');
\echo :SQLSTATE
:written

-- expected_version below -1 (22023).
SELECT eventstore.append('e', 'T', '{}', NULL, -2);
\echo :SQLSTATE
:written
SELECT eventstore.append('e', 'T', '{}', NULL, -9223372036854775808);
\echo :SQLSTATE
:written

-- The limits themselves are allowed: 1024-byte stream id and event type.
SELECT stream_version FROM eventstore.append(repeat('s', 1024), repeat('t', 1024), '{}');
SELECT stream_version FROM eventstore.append(repeat('é', 512), repeat('é', 512), '{}');
SELECT octet_length(stream_id) AS id_bytes, octet_length(event_type) AS type_bytes,
       stream_id = repeat('é', 512) AS multibyte
  FROM eventstore.events WHERE stream_id <> 'e' ORDER BY global_position;
SELECT eventstore.stream_version(repeat('s', 1024)) AS long_id_version;

--
-- eventstore.append_events()
--
SELECT count(*) AS events_now FROM eventstore.events;
-- NULL arguments (22004).
SELECT eventstore.append_events(NULL, '[{"type": "T", "data": {}}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', NULL);
\echo :SQLSTATE
:written

-- Empty or too long stream id.
SELECT eventstore.append_events('', '[{"type": "T", "data": {}}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events(repeat('s', 1025), '[{"type": "T", "data": {}}]');
\echo :SQLSTATE
:written

-- events not an array (22023).
SELECT eventstore.append_events('e', '{"type": "T", "data": {}}');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '"[{\"type\": \"T\", \"data\": {}}]"');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '42');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', 'true');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', 'null');
\echo :SQLSTATE
:written

-- An element that is not an object (22023).
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}}, 1]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '["T"]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[[{"type": "T", "data": {}}]]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[null]');
\echo :SQLSTATE
:written

-- Missing "type" or "data" (22023); "data": null is data, a missing one is not.
SELECT eventstore.append_events('e', '[{"data": {}}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": "T"}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{}]');
\echo :SQLSTATE
:written

-- "type" not a string, or empty (22023), or too long (54000).
SELECT eventstore.append_events('e', '[{"type": 1, "data": {}}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": null, "data": {}}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": ["T"], "data": {}}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": "", "data": {}}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', jsonb_build_array(jsonb_build_object('type', repeat('t', 1025), 'data', 1)));
\echo :SQLSTATE
:written

-- "metadata" not an object (22023).
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}, "metadata": []}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}, "metadata": "m"}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}, "metadata": 1}]');
\echo :SQLSTATE
:written

-- Malformed "id" (22P02), also when it is not a string.
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}, "id": "not-a-uuid"}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}, "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}, "id": ""}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}, "id": 42}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}, "id": {"uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}}]');
\echo :SQLSTATE
:written

-- An unknown key (22023): a misspelt key must not silently lose data.
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}, "meta": {"a": 1}}]');
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}, "event_id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}]');
\echo :SQLSTATE
:written

-- expected_version below -1 (22023).
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}}]', -2);
\echo :SQLSTATE
:written

--
-- Oversized events (54000), with eventstore.max_event_size = 2kB: the jsonb
-- size of data plus metadata may be at most 2048 bytes.
--
SET eventstore.max_event_size = '2kB';
SHOW eventstore.max_event_size;
-- A JSON string of n characters takes n + 8 bytes of jsonb (+ 4 bytes of
-- varlena header that pg_column_size counts).
SELECT pg_column_size(to_jsonb(repeat('x', 2040))) - 4 AS at_limit,
       pg_column_size(to_jsonb(repeat('x', 2041))) - 4 AS over_limit,
       pg_column_size('{}'::jsonb) - 4 AS empty_object;
SELECT eventstore.append('e', 'T', to_jsonb(repeat('x', 2041)));
\echo :SQLSTATE
:written
-- data at the limit plus metadata is over it
SELECT eventstore.append('e', 'T', to_jsonb(repeat('x', 2040)), '{}');
\echo :SQLSTATE
:written
SELECT eventstore.append('e', 'T', to_jsonb(repeat('x', 100000)));
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e',
         jsonb_build_array(jsonb_build_object('type', 'T', 'data', 1),
                           jsonb_build_object('type', 'T', 'data', 2),
                           jsonb_build_object('type', 'T', 'data', repeat('x', 2041))));
\echo :SQLSTATE
:written
SELECT eventstore.append_events('e',
         jsonb_build_array(jsonb_build_object('type', 'T', 'data', repeat('x', 2040),
                                              'metadata', '{}'::jsonb)));
\echo :SQLSTATE
:written
-- At the limit: accepted, by both functions.
SELECT stream_version FROM eventstore.append('e', 'AtLimit', to_jsonb(repeat('x', 2040)));
SELECT stream_version FROM eventstore.append_events('e',
         jsonb_build_array(jsonb_build_object('type', 'AtLimit', 'data', repeat('y', 2040))));
SELECT stream_version, event_type, length(data #>> '{}') AS chars
  FROM eventstore.read_stream('e', 2);
RESET eventstore.max_event_size;
SHOW eventstore.max_event_size;
SELECT stream_version FROM eventstore.append('e', 'AfterReset', to_jsonb(repeat('x', 100000)));
:written

--
-- Appending in a read-only transaction (25006); reading works there.
--
BEGIN;
SET TRANSACTION READ ONLY;
SELECT eventstore.append('e', 'T', '{}');
\echo :SQLSTATE
ROLLBACK;
:written
BEGIN;
SET TRANSACTION READ ONLY;
SELECT eventstore.append_events('e', '[{"type": "T", "data": {}}]');
\echo :SQLSTATE
ROLLBACK;
:written
BEGIN READ ONLY;
SELECT eventstore.stream_version('e');
SELECT count(*) AS events FROM eventstore.read_stream('e');
COMMIT;

--
-- eventstore.read_stream() and eventstore.stream_version()
--
SELECT * FROM eventstore.read_stream(NULL);
\echo :SQLSTATE
SELECT * FROM eventstore.read_stream('');
\echo :SQLSTATE
SELECT * FROM eventstore.read_stream(repeat('s', 1025));
\echo :SQLSTATE
SELECT * FROM eventstore.read_stream('e', -1);
\echo :SQLSTATE
SELECT * FROM eventstore.read_stream('e', -1, NULL, true);
\echo :SQLSTATE
SELECT * FROM eventstore.read_stream('e', NULL, -1);
\echo :SQLSTATE
SELECT * FROM eventstore.read_stream('e', 1, -1, true);
\echo :SQLSTATE
SELECT eventstore.stream_version(NULL);
\echo :SQLSTATE
SELECT eventstore.stream_version('');
\echo :SQLSTATE
SELECT eventstore.stream_version(repeat('s', 1025));
\echo :SQLSTATE

-- After all this the stream is intact.
SELECT stream_version, event_type FROM eventstore.read_stream('e');

DROP EXTENSION eventstore;
