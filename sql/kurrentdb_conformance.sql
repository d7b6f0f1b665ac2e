--
-- KurrentDB (EventStoreDB) conformance: the behaviour a KurrentDB user
-- relies on -- appending with the four kinds of expected version, empty
-- batches, retries by event id, soft delete and recreation, tombstones,
-- stream metadata (max count, max age, truncate before) and forward and
-- backward reads -- walked scenario by scenario, each block named after the
-- behaviour it checks.  Where eventstore deliberately differs, the block
-- says so ("DIFFERENCE") and asserts eventstore's behaviour; every
-- difference is listed, with its reason, in docs/kurrentdb.md.
--
-- Mapping: KurrentDB's revisions start at 0, eventstore's versions at 1;
-- expected version Any / NoStream / StreamExists / revision r are NULL / 0 /
-- -1 / r+1 here.  WrongExpectedVersion is SQLSTATE ST001, StreamDeleted
-- (tombstone) ST002.
--
-- Nothing here waits for the background worker except the one block that
-- checks what happens after it removed events (wait_until).  read_all is
-- always filtered to this test's own event types.
--
CREATE EXTENSION eventstore;

-- The state of a stream that a failed call must leave as it was: its
-- stream_info and the number of stored event ids.
CREATE FUNCTION kc_fingerprint(s text) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s|%s', (SELECT count(*) FROM eventstore.event_ids),
                  (SELECT (i.state, i.stream_version, i.last_version, i.max_age, i.max_count,
                           i.truncate_before, i.deleted_at, i.tombstoned_at, i.archived_at)::text
                     FROM eventstore.stream_info(s) i))
$$;
-- kc_try(s, q): run q (about stream s) and keep what it did.  Its single
-- result as 'ok <result>', or the SQLSTATE and message of its error (for
-- a version conflict, ST001, its DETAIL: expected and actual version),
-- followed by 'nothing written' when
-- the stream, the stored ids and the events are as they were before the
-- call -- or 'WRITTEN' when they are not.
CREATE FUNCTION kc_try(s text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
    det text;
    fp text := kc_fingerprint(s);
    last_pos bigint := (SELECT last_value FROM eventstore.global_position_seq);
BEGIN
    BEGIN
        EXECUTE q INTO r;
        RETURN 'ok ' || coalesce(r, '<null>');
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    END;
    RETURN st || ' ' || CASE WHEN st = 'ST001' THEN coalesce(det, msg) ELSE msg END
        || CASE WHEN kc_fingerprint(s) = fp
                     AND NOT EXISTS (SELECT FROM eventstore.events WHERE global_position > last_pos)
                THEN ' -- nothing written' ELSE ' -- WRITTEN' END;
END $$;
-- kc_probe(s, q): the same, but a successful q is rolled back too, so that
-- one stream can be tried with every expected version.
CREATE FUNCTION kc_probe(s text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    BEGIN
        r := kc_try(s, q);
        IF r LIKE 'ok %' THEN
            RAISE EXCEPTION 'undo' USING ERRCODE = 'PU000', DETAIL = r;
        END IF;
        RETURN r;
    EXCEPTION WHEN SQLSTATE 'PU000' THEN
        GET STACKED DIAGNOSTICS r = PG_EXCEPTION_DETAIL;
        RETURN r || ' (rolled back)';
    END;
END $$;
-- Events named by letters: event k has type KcEvent, data {"k": k} and the
-- id md5('kc/' || k), so a name is an id; '~k' is the same event without an
-- id.
CREATE FUNCTION kc_events(VARIADIC k text[]) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_agg(CASE WHEN x LIKE '~%'
                                   THEN jsonb_build_object('type', 'KcEvent', 'data', jsonb_build_object('k', x))
                                   ELSE jsonb_build_object('type', 'KcEvent', 'data', jsonb_build_object('k', x),
                                                           'id', md5('kc/' || x)::uuid) END
                              ORDER BY o), '[]')
      FROM unnest(k) WITH ORDINALITY AS u(x, o)
$$;
-- append_events of those events: the text of the SQL (for kc_try), a
-- direct call returning the version, and one returning the whole result,
-- (stream_version, global_position) as text, to compare a retry's with.
-- (Positions are not shown: they depend on everything appended before.)
CREATE FUNCTION kc_ae_sql(s text, expected bigint, VARIADIC k text[]) RETURNS text LANGUAGE sql AS $$
    SELECT format('SELECT (eventstore.append_events(%L, %L::jsonb, %s)).stream_version',
                  s, kc_events(VARIADIC k), coalesce(expected::text, 'NULL'))
$$;
CREATE FUNCTION kc_append(s text, expected bigint, VARIADIC k text[]) RETURNS bigint LANGUAGE sql AS $$
    SELECT (eventstore.append_events(s, kc_events(VARIADIC k), expected)).stream_version
$$;
CREATE FUNCTION kc_result(s text, expected bigint, VARIADIC k text[]) RETURNS text LANGUAGE sql AS $$
    SELECT (r.stream_version, r.global_position)::text
      FROM eventstore.append_events(s, kc_events(VARIADIC k), expected) r
$$;
-- What read_stream returns, in its order, as 'k@version ...' ('-': nothing).
CREATE FUNCTION kc_read(s text, from_version bigint DEFAULT NULL, max_count bigint DEFAULT NULL,
                        backward boolean DEFAULT false) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg((t.data->>'k') || '@' || t.stream_version, ' ' ORDER BY t.ordinality), '-')
      FROM eventstore.read_stream(s, from_version, max_count, backward) WITH ORDINALITY t
$$;
-- What read_all returns of this test's events of stream s, in its order.
CREATE FUNCTION kc_read_all(s text) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg((t.data->>'k') || '@' || t.stream_version, ' ' ORDER BY t.ordinality), '-')
      FROM eventstore.read_all(0, NULL, ARRAY['KcEvent'], s) WITH ORDINALITY t
     WHERE t.stream_id = s
$$;
-- The stream's lifecycle as stream_info and stream_version() tell it.
CREATE FUNCTION kc_state(s text) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s, version %s, last %s, stream_version() %s', i.state, i.stream_version,
                  i.last_version, eventstore.stream_version(s))
      FROM eventstore.stream_info(s) i
$$;
-- Wait (at most 60 s) until the boolean query q holds; returns whether it did.
CREATE FUNCTION wait_until(q text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    FOR i IN 1 .. 600 LOOP
        EXECUTE q INTO ok;
        IF ok THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END $$;

--------------------------------------------------------------------------
-- Appending
--------------------------------------------------------------------------

-- appending with expected version "any" (NULL) creates a new stream, and
-- appends to an existing one
SELECT kc_try('any-1', kc_ae_sql('any-1', NULL, 'a1')) AS create_new,
       kc_try('any-1', kc_ae_sql('any-1', NULL, 'a2', 'a3')) AS append_existing,
       kc_read('any-1') AS read;

-- the result of an append is the version of its last event (KurrentDB: the
-- next expected revision): 100 events on a new stream end at version 100
SELECT (eventstore.append_events('hundred',
            (SELECT jsonb_agg(jsonb_build_object('type', 'KcEvent', 'data', jsonb_build_object('k', g)))
               FROM generate_series(1, 100) g), 0)).stream_version = 100 AS last_version_is_100;

-- appending with expected version "no stream" (0) creates a new stream
SELECT kc_try('nos-1', kc_ae_sql('nos-1', 0, 'b1')) AS create_new, kc_read('nos-1') AS read;

-- appending with expected version "no stream" to an existing stream is a conflict
SELECT kc_try('nos-1', kc_ae_sql('nos-1', 0, 'b2')) AS no_stream_on_existing, kc_read('nos-1') AS read;

-- appending with expected version "stream exists" (-1) to a stream that
-- does not exist is a conflict (actual version 0), and does not create it
SELECT kc_try('ex-1', kc_ae_sql('ex-1', -1, 'c1')) AS exists_on_new, kc_state('ex-1') AS state;

-- appending with expected version "stream exists" to an existing stream
-- (one event, or several) succeeds
SELECT kc_try('ex-2', kc_ae_sql('ex-2', 0, 'd1')) AS created,
       kc_try('ex-2', kc_ae_sql('ex-2', -1, 'd2')) AS exists_one_event,
       kc_try('ex-2', kc_ae_sql('ex-2', -1, 'd3')) AS exists_two_events,
       kc_read('ex-2') AS read;

-- appending with expected version "stream exists" to a stream that only
-- has metadata is a conflict.  DIFFERENCE: KurrentDB accepts it (its
-- metadata stream exists); here metadata is not an event
SELECT (eventstore.set_stream_metadata('ex-meta', max_count => 10)).state AS state_with_metadata;
SELECT kc_try('ex-meta', kc_ae_sql('ex-meta', -1, 'e1')) AS exists_on_metadata_only,
       kc_state('ex-meta') AS state;

-- appending with the exact current version succeeds; any other exact
-- version is a conflict that names the actual version
SELECT kc_try('exact-1', kc_ae_sql('exact-1', 0, 'f1')) AS created,
       kc_try('exact-1', kc_ae_sql('exact-1', 1, 'f2')) AS exact_1,
       kc_try('exact-1', kc_ae_sql('exact-1', 2, 'f3')) AS exact_2;
SELECT kc_try('exact-1', kc_ae_sql('exact-1', 999, 'f4')) AS too_high,
       kc_try('exact-1', kc_ae_sql('exact-1', 2, 'f5')) AS stale,
       kc_read('exact-1') AS read;

-- appending with an exact version to a stream that does not exist is a
-- conflict (actual version 0)
SELECT kc_try('exact-new', kc_ae_sql('exact-new', 1, 'g1')) AS exact_on_new,
       kc_state('exact-new') AS state;

-- an append whose version conflicts leaves the global log as it was
SELECT kc_read_all('exact-1') AS read_all;

--------------------------------------------------------------------------
-- Empty batches
--------------------------------------------------------------------------

-- appending no events with "any" or "no stream" to a new stream succeeds
-- twice, returns version 0 (KurrentDB: no revision) and no position, and
-- does not create the stream
SELECT x AS expected,
       (eventstore.append_events('empty-' || coalesce(x::text, 'any'), '[]', x))::text AS first_call,
       (eventstore.append_events('empty-' || coalesce(x::text, 'any'), '[]', x))::text AS second_call,
       kc_state('empty-' || coalesce(x::text, 'any')) AS state,
       kc_read('empty-' || coalesce(x::text, 'any')) AS read
  FROM unnest(ARRAY[NULL, 0]::bigint[]) WITH ORDINALITY AS u(x, o) ORDER BY o;

-- appending no events still checks the expected version: "stream exists"
-- and an exact version on a new stream, "no stream" on an existing one
-- are conflicts; the current version succeeds and returns it
SELECT kc_try('empty-x', 'SELECT eventstore.append_events(''empty-x'', ''[]'', -1)::text') AS exists_on_new,
       kc_try('empty-x', 'SELECT eventstore.append_events(''empty-x'', ''[]'', 1)::text') AS exact_on_new;
SELECT kc_try('any-1', 'SELECT eventstore.append_events(''any-1'', ''[]'', 0)::text') AS no_stream_on_existing,
       kc_try('any-1', 'SELECT eventstore.append_events(''any-1'', ''[]'', 3)::text') AS current_version,
       kc_try('any-1', 'SELECT eventstore.append_events(''any-1'', ''[]'', NULL)::text') AS any_on_existing,
       kc_read('any-1') AS read;

--------------------------------------------------------------------------
-- Retries by event id (idempotent appends)
--------------------------------------------------------------------------

-- a batch retried with the expected version it was made with ("no stream")
-- returns the original result and writes nothing
SELECT kc_result('idem-1', 0, 'h1', 'h2', 'h3') AS original \gset
SELECT kc_result('idem-1', 0, 'h1', 'h2', 'h3') = :'original' AS same_result,
       kc_read('idem-1') AS read;

-- a batch retried with "any" returns the original result and writes nothing
SELECT kc_result('idem-1', NULL, 'h1', 'h2', 'h3') = :'original' AS same_result,
       kc_read('idem-1') AS read;

-- a retry after someone else appended in between is still recognised,
-- with "any", "stream exists" and the original "no stream"
SELECT kc_append('idem-1', 3, 'h4') AS other_writer;
SELECT x AS expected, kc_result('idem-1', x, 'h1', 'h2', 'h3') = :'original' AS same_result
  FROM unnest(ARRAY[NULL, -1, 0]::bigint[]) WITH ORDINALITY AS u(x, o) ORDER BY o;
SELECT kc_read('idem-1') AS read;

-- a retry made with an exact version is recognised whatever the stream's
-- version is now.  DIFFERENCE: KurrentDB compares the ids only at the
-- expected position: the original version (here 0) is a retry there too,
-- but with the stream's current version (4) it appends the events again,
-- and with any other version (2, 5) it reports a conflict
SELECT kc_result('idem-2', 0, 'i1') AS original_1 \gset
SELECT kc_result('idem-2', 1, 'i2') AS original_2 \gset
SELECT kc_append('idem-2', 2, 'i3', 'i4') AS other_writer;
SELECT x AS expected, kc_result('idem-2', x, 'i2') = :'original_2' AS same_result
  FROM unnest(ARRAY[1, 4, 2, 5]::bigint[]) WITH ORDINALITY AS u(x, o) ORDER BY o;
SELECT kc_result('idem-2', 4, 'i1') = :'original_1' AS first_event_again_with_current_version,
       kc_read('idem-2') AS read;

-- a retry of part of a batch (its first event, or its last event with the
-- version before it, or either with "any") is recognised and returns the
-- version of its own last event
SELECT kc_append('idem-3', 0, 'j1', 'j2') AS batch;
SELECT kc_try('idem-3', kc_ae_sql('idem-3', 0, 'j1')) AS first_with_no_stream,
       kc_try('idem-3', kc_ae_sql('idem-3', NULL, 'j1')) AS first_with_any,
       kc_try('idem-3', kc_ae_sql('idem-3', 1, 'j2')) AS second_with_version_1,
       kc_try('idem-3', kc_ae_sql('idem-3', NULL, 'j2')) AS second_with_any,
       kc_read('idem-3') AS read;

-- a retry that extends the stored events by a new one is a conflict, not a
-- retry (with "no stream" as in KurrentDB, and with "any")
SELECT kc_try('idem-3', kc_ae_sql('idem-3', 0, 'j1', 'j2', 'j3')) AS extended_no_stream,
       kc_try('idem-3', kc_ae_sql('idem-3', NULL, 'j1', 'j2', 'j3')) AS extended_any;

-- a batch whose stored events come in another order is a conflict
SELECT kc_try('idem-3', kc_ae_sql('idem-3', NULL, 'j2', 'j1')) AS reordered,
       kc_try('idem-3', kc_ae_sql('idem-3', NULL, '~j0', 'j1', 'j2')) AS with_an_event_without_id,
       kc_read('idem-3') AS read;

-- the same id twice in one batch is refused before anything is written.
-- DIFFERENCE: KurrentDB stores both events
SELECT kc_try('idem-dup', kc_ae_sql('idem-dup', NULL, 'k1', 'k1')) AS same_id_twice,
       kc_state('idem-dup') AS state;

-- an id already stored in another stream is refused (23505), also when that
-- stream was deleted.  DIFFERENCE: KurrentDB scopes ids to one stream
SELECT kc_try('idem-other', kc_ae_sql('idem-other', NULL, 'h1')) AS id_of_idem_1,
       kc_state('idem-other') AS state;
SELECT kc_append('idem-del', 0, 'l1') AS appended;
SELECT eventstore.delete_stream('idem-del') AS deleted;
SELECT kc_try('idem-other', kc_ae_sql('idem-other', NULL, 'l1')) AS id_of_a_deleted_stream;

-- events without ids are never recognised as retries: appending the same
-- content twice stores it twice
SELECT kc_append('idem-none', NULL, '~m') AS first, kc_append('idem-none', NULL, '~m') AS second;
SELECT kc_read('idem-none') AS read;

--------------------------------------------------------------------------
-- Soft delete and recreation
--------------------------------------------------------------------------

-- a soft-deleted stream reads as absent: no events forward or backward,
-- version 0.  DIFFERENCE: KurrentDB answers "stream not found"; here an
-- empty result
SELECT kc_append('sd-1', 0, 'n1', 'n2', 'n3') AS appended;
SELECT eventstore.delete_stream('sd-1', 3) AS deleted_version;
SELECT kc_read('sd-1') AS forward, kc_read('sd-1', NULL, NULL, true) AS backward,
       kc_read_all('sd-1') AS read_all, kc_state('sd-1') AS state;

-- appending to a soft-deleted stream: "any", "no stream" and the version it
-- was deleted at recreate it; "stream exists" and other versions are
-- conflicts.  DIFFERENCE: KurrentDB answers "stream exists" with "stream
-- deleted"; here it is a conflict (ST001)
SELECT coalesce(x::text, 'NULL') AS expected, kc_probe('sd-1', kc_ae_sql('sd-1', x, 'n4')) AS outcome
  FROM unnest(ARRAY[NULL, 0, 3, -1, 1, 4]::bigint[]) WITH ORDINALITY AS u(x, o) ORDER BY o;
SELECT kc_state('sd-1') AS state_unchanged;

-- a soft-deleted stream recreated with the version it was deleted at
-- continues the numbering; reads show only the new events
SELECT kc_append('sd-1', 3, 'n4', 'n5', 'n6') AS recreated;
SELECT kc_read('sd-1') AS forward, kc_read('sd-1', NULL, NULL, true) AS backward,
       kc_read('sd-1', 1, 2) AS from_version_1, kc_read_all('sd-1') AS read_all,
       kc_state('sd-1') AS state;

-- only the first write recreates: "no stream" on the recreated stream is a
-- conflict, as is the deleted version
SELECT kc_try('sd-1', kc_ae_sql('sd-1', 0, 'n7')) AS no_stream_after_recreation,
       kc_try('sd-1', kc_ae_sql('sd-1', 3, 'n7')) AS deleted_version_after_recreation;

-- a soft-deleted stream recreated with "any" or "no stream" continues the
-- numbering too, and a second "any" append follows it
SELECT kc_append('sd-2', 0, 'o1', 'o2') AS appended;
SELECT eventstore.delete_stream('sd-2', 2) AS deleted_version;
SELECT kc_try('sd-2', kc_ae_sql('sd-2', NULL, 'o3', 'o4', 'o5')) AS recreated_with_any,
       kc_try('sd-2', kc_ae_sql('sd-2', NULL, 'o6', 'o7')) AS then_any,
       kc_read('sd-2') AS read;
SELECT kc_append('sd-3', 0, 'p1', 'p2') AS appended;
SELECT eventstore.delete_stream('sd-3', 2) AS deleted_version;
SELECT kc_try('sd-3', kc_ae_sql('sd-3', 0, 'p3', 'p4', 'p5')) AS recreated_with_no_stream,
       kc_try('sd-3', kc_ae_sql('sd-3', 0, 'p6')) AS no_stream_again,
       kc_read('sd-3') AS read;

-- the retry of a recreating append made with "no stream" is recognised
-- (the original result), although the stream exists by now.  DIFFERENCE:
-- KurrentDB compares the ids with the stream's first (deleted) events and
-- reports a conflict
SELECT kc_append('sd-4', 0, 'q1') AS appended;
SELECT eventstore.delete_stream('sd-4') AS deleted_version;
SELECT kc_result('sd-4', 0, 'q2', 'q3') AS recreating \gset
SELECT kc_result('sd-4', 0, 'q2', 'q3') = :'recreating' AS retry_same_result, kc_read('sd-4') AS read;

-- a recreated stream keeps its metadata.  DIFFERENCE: KurrentDB implements
-- the soft delete as truncate-before = deleted revision + 1 in the
-- metadata; here the delete is a state of its own (stream_info) and the
-- settings stay as they were set
SELECT (eventstore.set_stream_metadata('sd-5', max_count => 100, truncate_before => 1)).state AS state;
SELECT kc_append('sd-5', 0, 'r1', 'r2') AS appended;
SELECT eventstore.delete_stream('sd-5', 2) AS deleted_version;
SELECT m.* FROM eventstore.get_stream_metadata('sd-5') m;
SELECT kc_append('sd-5', 2, 'r3') AS recreated;
SELECT m.*, kc_read('sd-5') AS read FROM eventstore.get_stream_metadata('sd-5') m;

-- deleting a stream checks the expected version like an append: a stream
-- that does not exist with an exact version, or an existing one with a
-- wrong version or "no stream", is a conflict; "any" and "no stream"
-- delete a stream that does not exist (nothing: version 0), "stream
-- exists" deletes an existing one
SELECT kc_try('sd-none', 'SELECT eventstore.delete_stream(''sd-none'', 1)::text') AS delete_absent_exact,
       kc_try('sd-none', 'SELECT eventstore.delete_stream(''sd-none'', NULL)::text') AS delete_absent_any,
       kc_try('sd-none', 'SELECT eventstore.delete_stream(''sd-none'', 0)::text') AS delete_absent_no_stream;
SELECT kc_append('sd-6', 0, 's1', 's2') AS appended;
SELECT kc_try('sd-6', 'SELECT eventstore.delete_stream(''sd-6'', 5)::text') AS wrong_version,
       kc_try('sd-6', 'SELECT eventstore.delete_stream(''sd-6'', 0)::text') AS no_stream,
       kc_try('sd-6', 'SELECT eventstore.delete_stream(''sd-6'', -1)::text') AS stream_exists,
       kc_state('sd-6') AS state;

-- a soft-deleted stream can then be tombstoned
SELECT kc_try('sd-6', 'SELECT eventstore.tombstone_stream(''sd-6'', NULL)::text') AS tombstoned,
       kc_state('sd-6') AS state;

--------------------------------------------------------------------------
-- Tombstones (hard delete)
--------------------------------------------------------------------------

-- a tombstoned stream refuses every append, whatever the expected version
-- ("stream deleted", ST002), and nothing is written
SELECT kc_append('tb-1', 0, 't1', 't2') AS appended;
SELECT eventstore.tombstone_stream('tb-1', 2) AS tombstoned_version;
SELECT coalesce(x::text, 'NULL') AS expected,
       kc_try('tb-1', kc_ae_sql('tb-1', x, 't3')) AS outcome
  FROM unnest(ARRAY[NULL, 0, -1, 2, 5]::bigint[]) WITH ORDINALITY AS u(x, o) ORDER BY o;
SELECT kc_try('tb-1', 'SELECT eventstore.append(''tb-1'', ''KcEvent'', ''{}'')::text') AS single_append;

-- a tombstoned stream reads as empty.  DIFFERENCE: KurrentDB answers
-- "stream deleted"; here an empty result and state 'tombstoned'
SELECT kc_read('tb-1') AS forward, kc_read('tb-1', NULL, NULL, true) AS backward,
       kc_read_all('tb-1') AS read_all, kc_state('tb-1') AS state;

-- deleting, tombstoning or setting the metadata of a tombstoned stream is
-- refused (ST002)
SELECT kc_try('tb-1', 'SELECT eventstore.delete_stream(''tb-1'')::text') ~ '^ST002 .* -- nothing written$'
           AS delete_refused,
       kc_try('tb-1', 'SELECT eventstore.tombstone_stream(''tb-1'')::text') ~ '^ST002 .* -- nothing written$'
           AS tombstone_refused,
       kc_try('tb-1', 'SELECT eventstore.set_stream_metadata(''tb-1'', max_count => 5)::text')
           ~ '^ST002 .* -- nothing written$' AS set_metadata_refused;

-- the metadata of a tombstoned stream reads as empty (all NULL), without an
-- error; stream_info's state tells it is tombstoned.  DIFFERENCE: KurrentDB
-- answers "stream deleted"
SELECT (eventstore.set_stream_metadata('tb-2', max_age => '1 day', max_count => 7, truncate_before => 2)).state;
SELECT kc_append('tb-2', 0, 'u1') AS appended;
SELECT eventstore.tombstone_stream('tb-2') AS tombstoned_version;
SELECT m.*, (eventstore.stream_info('tb-2')).state FROM eventstore.get_stream_metadata('tb-2') m;

-- a stream that never existed can be tombstoned with "any" or "no stream",
-- not with an exact version; tombstoning it again is refused
SELECT kc_try('tb-new-any', 'SELECT eventstore.tombstone_stream(''tb-new-any'', NULL)::text') AS any,
       kc_try('tb-new-0', 'SELECT eventstore.tombstone_stream(''tb-new-0'', 0)::text') AS no_stream,
       kc_try('tb-new-1', 'SELECT eventstore.tombstone_stream(''tb-new-1'', 1)::text') AS exact;
SELECT kc_try('tb-new-0', 'SELECT eventstore.tombstone_stream(''tb-new-0'', 0)::text') ~ '^ST002 .* -- nothing written$'
           AS tombstone_again_refused,
       kc_try('tb-new-0', kc_ae_sql('tb-new-0', 0, 'v1')) ~ '^ST002 .* -- nothing written$' AS append_refused;

--------------------------------------------------------------------------
-- Stream metadata: max count, max age, truncate before
--------------------------------------------------------------------------

-- a stream without metadata has none (all NULL)
SELECT m.* FROM eventstore.get_stream_metadata('any-1') m;
SELECT m.* FROM eventstore.get_stream_metadata('never-written') m;

-- metadata set is read back; setting it again replaces all of it (what is
-- not given is removed); metadata of a stream that does not exist yet can
-- be set, and the stream stays absent
SELECT (eventstore.set_stream_metadata('md-1', max_age => '2 days', max_count => 17, truncate_before => 10)).state;
SELECT m.* FROM eventstore.get_stream_metadata('md-1') m;
SELECT (eventstore.set_stream_metadata('md-1', max_count => 37)).state;
SELECT m.*, kc_read('md-1') AS read, kc_state('md-1') AS state FROM eventstore.get_stream_metadata('md-1') m;

-- max count: tightening it hides the oldest events from every read at once
-- (forward, backward, from a version, read_all); loosening it before the
-- worker removed them shows them again (as in KurrentDB before a
-- scavenge); the stream's version never goes down
SELECT kc_append('md-2', 0, 'w1', 'w2', 'w3', 'w4', 'w5') AS appended;
BEGIN;
SELECT (eventstore.set_stream_metadata('md-2', max_count => 2)).state;
SELECT kc_read('md-2') AS forward, kc_read('md-2', NULL, NULL, true) AS backward,
       kc_read('md-2', 1, 1) AS from_1_max_1, kc_read_all('md-2') AS read_all,
       eventstore.stream_version('md-2') AS version;
SELECT (eventstore.set_stream_metadata('md-2', max_count => 4)).state;
SELECT kc_read('md-2') AS loosened_to_4, kc_read_all('md-2') AS read_all;
SELECT (eventstore.set_stream_metadata('md-2')).state;
SELECT kc_read('md-2') AS no_limit;
ROLLBACK;

-- truncate before: tightening it hides the versions below it; loosening
-- it before the worker removed them shows them again
BEGIN;
SELECT (eventstore.set_stream_metadata('md-2', truncate_before => 4)).state;
SELECT kc_read('md-2') AS forward, kc_read('md-2', NULL, NULL, true) AS backward,
       kc_read_all('md-2') AS read_all, eventstore.stream_version('md-2') AS version;
SELECT (eventstore.set_stream_metadata('md-2', truncate_before => 2)).state;
SELECT kc_read('md-2') AS loosened_to_2;
ROLLBACK;

-- truncate before beyond the end hides every event, but the version goes
-- on and the stream still exists: appends expecting the last version or
-- "stream exists" succeed, "no stream" is a conflict
BEGIN;
SELECT (eventstore.set_stream_metadata('md-2', truncate_before => 100)).state;
SELECT kc_read('md-2') AS read, eventstore.stream_version('md-2') AS version;
SELECT kc_try('md-2', kc_ae_sql('md-2', 5, 'w6')) AS append_expecting_5,
       kc_try('md-2', kc_ae_sql('md-2', -1, 'w7')) AS stream_exists,
       kc_try('md-2', kc_ae_sql('md-2', 0, 'w9')) AS no_stream;
SELECT kc_read('md-2') AS read;
ROLLBACK;

-- max age: tightening it hides the events older than it (here: those of a
-- transaction that started over a second before), newer ones stay;
-- loosening it shows them again
SELECT pg_sleep(1.2);
BEGIN;
SELECT kc_append('md-2', 5, 'w8') AS appended_now;
SELECT (eventstore.set_stream_metadata('md-2', max_age => '1 second')).state;
SELECT kc_read('md-2') AS forward, kc_read('md-2', NULL, NULL, true) AS backward,
       kc_read_all('md-2') AS read_all;
SELECT (eventstore.set_stream_metadata('md-2', max_age => '1 hour')).state;
SELECT kc_read('md-2') AS loosened;
ROLLBACK;

-- settings combine: an event is hidden when any of them excludes it
BEGIN;
SELECT (eventstore.set_stream_metadata('md-2', max_count => 4, truncate_before => 3)).state;
SELECT kc_read('md-2') AS max_count_4_truncate_before_3;
ROLLBACK;

-- once the worker removed what a setting excluded, loosening the setting
-- does not bring the events back (as after a KurrentDB scavenge)
SELECT kc_append('md-3', 0, 'x1', 'x2', 'x3', 'x4') AS appended;
SELECT (eventstore.set_stream_metadata('md-3', max_count => 1)).state;
SELECT wait_until($$SELECT (SELECT count(*) FROM eventstore.events WHERE stream_id = 'md-3') = 1$$) AS removed;
SELECT (eventstore.set_stream_metadata('md-3')).state;
SELECT kc_read('md-3') AS read, eventstore.stream_version('md-3') AS version;
SELECT kc_try('md-3', kc_ae_sql('md-3', 4, 'x5')) AS append_expecting_4, kc_read('md-3') AS read;

--------------------------------------------------------------------------
-- Reading a stream forwards and backwards
--------------------------------------------------------------------------

SELECT kc_append('rd-1', 0, 'y1', 'y2', 'y3', 'y4', 'y5') AS appended;

-- reading forwards from the start returns every event in order
SELECT kc_read('rd-1') AS forward, kc_read('rd-1', 0) AS from_0, kc_read('rd-1', 1) AS from_1;

-- reading forwards from a version starts there; max count limits it
SELECT kc_read('rd-1', 3) AS from_3, kc_read('rd-1', NULL, 2) AS first_2,
       kc_read('rd-1', 3, 2) AS from_3_max_2, kc_read('rd-1', 5, 10) AS from_last;

-- reading forwards past the end returns nothing
SELECT kc_read('rd-1', 6) AS from_6, kc_read('rd-1', 1000) AS from_1000;

-- reading backwards from the end returns every event, newest first; max
-- count 1 is the last event
SELECT kc_read('rd-1', NULL, NULL, true) AS backward,
       kc_read('rd-1', NULL, 1, true) AS last_event;

-- reading backwards from a version starts there, going down; the first
-- event alone; from beyond the end starts at the last event
SELECT kc_read('rd-1', 3, NULL, true) AS from_3, kc_read('rd-1', 4, 2, true) AS from_4_max_2,
       kc_read('rd-1', 1, 1, true) AS first_event, kc_read('rd-1', 1000, 2, true) AS from_1000_max_2;

-- reading a stream that does not exist returns nothing, forwards and
-- backwards.  DIFFERENCE: KurrentDB answers "stream not found"
SELECT kc_read('rd-missing') AS forward, kc_read('rd-missing', NULL, 1, true) AS backward,
       eventstore.stream_version('rd-missing') AS version;

-- max count 0 returns nothing.  DIFFERENCE: the KurrentDB client refuses
-- a max count below 1
SELECT kc_read('rd-1', NULL, 0) AS forward_0, kc_read('rd-1', NULL, 0, true) AS backward_0;

-- every event read carries its id, type, data and the position read_all
-- gives it
SELECT bool_and(s.event_id = md5('kc/' || (s.data->>'k'))::uuid) AS ids,
       bool_and(s.event_type = 'KcEvent') AS types,
       bool_and(s.global_position = a.global_position) AS positions
  FROM eventstore.read_stream('rd-1') s
  JOIN eventstore.read_all(0, NULL, ARRAY['KcEvent'], 'rd-1') a USING (stream_id, stream_version);

--------------------------------------------------------------------------
-- Reading the global log (KurrentDB's $all) forwards
--------------------------------------------------------------------------

-- read_all returns the events of all streams in the order they were
-- appended, positions ascending, each stream's versions ascending
SELECT kc_append('ra-a', 0, 'z1') AS a1;
SELECT kc_append('ra-b', 0, 'z2', 'z3') AS b12;
SELECT kc_append('ra-a', 1, 'z4') AS a2;
BEGIN;
SELECT kc_append('ra-b', 2, 'z5') AS b3;
SELECT kc_append('ra-a', 2, 'z6') AS a3;
COMMIT;
SELECT string_agg((t.data->>'k') || '=' || t.stream_id || '@' || t.stream_version, ' ' ORDER BY t.ordinality) AS log,
       bool_and(t.global_position > coalesce(t.previous, 0)) AS ascending
  FROM (SELECT e.*, o AS ordinality, lag(e.global_position) OVER (ORDER BY o) AS previous
          FROM eventstore.read_all(0, NULL, ARRAY['KcEvent'], 'ra-') WITH ORDINALITY AS e(global_position, stream_id,
                 stream_version, event_id, event_type, data, metadata, created_at, o)) t;

-- read_all from a position returns only the later events; max count limits it
SELECT (SELECT string_agg(t.data->>'k', ' ' ORDER BY t.global_position)
          FROM eventstore.read_all((SELECT global_position FROM eventstore.read_stream('ra-b', 2, 1)),
                                   NULL, ARRAY['KcEvent'], 'ra-') t) AS after_z3,
       (SELECT string_agg(t.data->>'k', ' ' ORDER BY t.global_position)
          FROM eventstore.read_all(0, 2, ARRAY['KcEvent'], 'ra-') t) AS first_2;

--------------------------------------------------------------------------
-- Deletions and metadata changes in the global log (0.7.0).  KurrentDB
-- writes a soft delete and every metadata change as a $metadata event of
-- the metadata stream $$<stream>, and a tombstone as a $streamDeleted
-- event; followers of $all see them.  eventstore appends a lifecycle
-- marker to $$<stream>: $deleted, $tombstoned or $metadata.
--------------------------------------------------------------------------

-- soft-deleting a stream leaves an event in the global log, which
-- followers of the stream's prefix see (the stream's own events no longer
-- read there: difference 13)
SELECT kc_append('lm-1', 0, 'lm-1a', 'lm-1b') AS appended;
SELECT eventstore.delete_stream('lm-1', 2) AS deleted;
SELECT string_agg(t.stream_id || '@' || t.stream_version || ' ' || t.event_type
                  || coalesce(' ' || (t.data->>'deleted_version'), ''), ', ' ORDER BY t.global_position) AS log
  FROM eventstore.read_all(0, NULL, ARRAY['KcEvent', '$deleted', '$tombstoned', '$metadata'], 'lm-') t;

-- DIFFERENCE: setting metadata appends $metadata to $$<stream> as in
-- KurrentDB, but its data is eventstore's three settings, not a document
SELECT (eventstore.set_stream_metadata('lm-2', max_count => 3, truncate_before => 2)).state;
SELECT t.stream_id, t.stream_version, t.event_type, t.data
  FROM eventstore.read_stream('$$lm-2') t;

-- DIFFERENCE: tombstoning leaves $tombstoned in $$<stream> (KurrentDB:
-- $streamDeleted in the stream itself, which reads as deleted)
SELECT kc_append('lm-3', 0, 'lm-3a') AS appended;
SELECT eventstore.tombstone_stream('lm-3') AS tombstoned;
SELECT t.stream_id, t.stream_version, t.event_type, t.data
  FROM eventstore.read_all(0, NULL, ARRAY['$tombstoned'], 'lm-3') t;

-- DIFFERENCE: metadata streams are written only through the lifecycle
-- functions, and event types beginning with "$" only by eventstore: an
-- application cannot write either (KurrentDB lets a client with the rights
-- write $$<stream> and $-types)
SELECT kc_try('$$lm-1', $q$SELECT eventstore.append('$$lm-1', '$metadata', '{}')$q$) AS write_metadata_stream;
SELECT kc_try('lm-4', $q$SELECT eventstore.append('lm-4', '$deleted', '{"stream_id": "lm-1"}')$q$) AS write_system_type;

DROP FUNCTION kc_fingerprint(text), kc_try(text, text), kc_probe(text, text), kc_events(text[]),
    kc_ae_sql(text, bigint, text[]), kc_append(text, bigint, text[]), kc_result(text, bigint, text[]),
    kc_read_all(text), kc_state(text), wait_until(text);
DROP EXTENSION eventstore;
