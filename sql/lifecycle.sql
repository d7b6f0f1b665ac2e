--
-- Stream lifecycle (0.3.0): the expected-version matrix against every
-- stream state, recreation with the version last seen (0.6.0), idempotent
-- appends, per-stream settings honoured by every read, soft delete,
-- tombstones (and their metadata, 0.6.0), archiving (round trip byte for
-- byte), archive policies, snapshots leaving with their stream, bad
-- arguments and privileges.
--
-- The background worker runs (preloaded) and removes what settings and
-- deletes exclude whenever it likes: every read below must give the same
-- answer before and after it did, and the few checks of the removal itself
-- wait for it.
--
CREATE EXTENSION eventstore;

-- try(q): run q and keep what it did; its single result as text, or its
-- SQLSTATE with the essentials of the error.  probe(q): the same, but
-- whatever q did is rolled back ("ok <result>" when it succeeded).
CREATE FUNCTION err_text(st text, msg text, det text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT st || ' ' || CASE
        WHEN st = 'ST001' AND det LIKE 'Event id %' THEN
            regexp_replace(det, '^Event id (\S+) is stored at version (\d+) .*$', '(\1 at \2)')
        WHEN st = 'ST001' AND det LIKE '%(deleted at version %'
            THEN regexp_replace(det, '^.*actual version (\d+) \(deleted at version (\d+);.*$',
                                '(actual \1, deleted at \2)')
        WHEN st = 'ST001' THEN regexp_replace(det, '^.*actual version (\d+)\.$', '(actual \1)')
        ELSE regexp_replace(msg, '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?([+-]\d\d(:\d\d)?)?',
                            '<time>', 'g') END
$$;
CREATE FUNCTION try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
    det text;
BEGIN
    EXECUTE q INTO r;
    RETURN coalesce(r, '<null>');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN err_text(st, msg, det);
END $$;
CREATE FUNCTION probe(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
    det text;
BEGIN
    BEGIN
        EXECUTE q INTO r;
        RAISE EXCEPTION 'undo' USING ERRCODE = 'PU000', DETAIL = coalesce(r, '<null>');
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    END;
    IF st = 'PU000' THEN
        RETURN 'ok ' || det;
    END IF;
    RETURN err_text(st, msg, det);
END $$;
-- The versions read_stream returns, in its order ('-': none).
CREATE FUNCTION vers(s text, from_version bigint DEFAULT NULL, max_count bigint DEFAULT NULL,
                     backward boolean DEFAULT false) RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg(t.stream_version::text, ',' ORDER BY t.ordinality), '-')
      FROM eventstore.read_stream(s, from_version, max_count, backward) WITH ORDINALITY t
$$;
-- The versions of a stream read_all returns (the stream id is the prefix).
-- A stream prefix also matches the stream's lifecycle markers (0.7.0): they
-- show as their type.
CREATE FUNCTION all_vers(s text, max_count bigint DEFAULT NULL, types text[] DEFAULT NULL) RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg(CASE WHEN t.stream_id = s THEN t.stream_version::text
                                    ELSE t.event_type END, ',' ORDER BY t.ordinality), '-')
      FROM eventstore.read_all(0, max_count, types, s) WITH ORDINALITY t
$$;
-- The same without filters, picking the stream out afterwards.
CREATE FUNCTION all_vers_unfiltered(s text) RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg(t.stream_version::text, ',' ORDER BY t.global_position), '-')
      FROM eventstore.read_all(0, NULL) t WHERE t.stream_id = s
$$;
-- A fold: the sum of data->'n' (and the number of events, in the count).
CREATE FUNCTION sum_n(s bigint, e eventstore.event) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT s + coalesce((e.data->>'n')::bigint, 0) $$;
CREATE FUNCTION count_events(s bigint, e eventstore.event) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT s + 1 $$;
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
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
    RETURN false;
END $$;
-- n events {"n": 1}, {"n": 2}, ... of alternating types Odd and Even
CREATE FUNCTION n_events(first integer, last integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_agg(jsonb_build_object('type', CASE WHEN g % 2 = 0 THEN 'Even' ELSE 'Odd' END,
                                        'data', jsonb_build_object('n', g)) ORDER BY g)
      FROM generate_series(first, last) g
$$;

--
-- The expected-version matrix: append, append_events, delete_stream and
-- tombstone_stream with NULL, 0, -1, 3, 5 and 7 against a stream that is
-- absent, active (3 events), soft-deleted (at 3), soft-deleted and
-- recreated (two events: version 5), tombstoned (at 3) and archived (3).
-- Every call is rolled back: the states stay as they are.
--
SELECT s, r.stream_version
  FROM unnest(ARRAY['m-active', 'm-deleted', 'm-recreated', 'm-tombstoned', 'm-archived']) s,
       LATERAL eventstore.append_events(s, n_events(1, 3), 0) r;
SELECT eventstore.delete_stream('m-deleted', 3) AS deleted,
       eventstore.delete_stream('m-recreated', -1) AS deleted;
SELECT stream_version FROM eventstore.append_events('m-recreated', n_events(4, 5), 0);
SELECT eventstore.tombstone_stream('m-tombstoned', 3) AS tombstoned;
SELECT eventstore.archive_stream('m-archived') AS archived;
\set m_info 'SELECT i.stream_id, i.state, i.stream_version, i.last_version, i.deleted_at IS NOT NULL AS deleted_at, i.tombstoned_at IS NOT NULL AS tombstoned_at, i.archived_at IS NOT NULL AS archived_at, eventstore.stream_version(s) AS stream_version_fn, vers(s) AS read_stream, (SELECT count(*) FROM eventstore.archived_events a WHERE a.stream_id = s) AS archived_events FROM unnest(ARRAY[''m-absent'', ''m-active'', ''m-deleted'', ''m-recreated'', ''m-tombstoned'', ''m-archived'']) WITH ORDINALITY AS u(s, o), LATERAL eventstore.stream_info(s) i ORDER BY o'
:m_info;
SELECT s AS stream, coalesce(x::text, 'NULL') AS expected,
       probe(format('SELECT (eventstore.append(%L, ''T'', ''{}'', NULL, %s)).stream_version',
                    s, coalesce(x::text, 'NULL'))) AS append,
       probe(format('SELECT (eventstore.append_events(%L, ''[{"type": "T", "data": 1}, {"type": "T", "data": 2}]'', %s)).stream_version',
                    s, coalesce(x::text, 'NULL'))) AS append_events,
       probe(format('SELECT eventstore.delete_stream(%L, %s)', s, coalesce(x::text, 'NULL'))) AS delete_stream,
       probe(format('SELECT eventstore.tombstone_stream(%L, %s)', s, coalesce(x::text, 'NULL'))) AS tombstone_stream
  FROM unnest(ARRAY['m-absent', 'm-active', 'm-deleted', 'm-recreated', 'm-tombstoned', 'm-archived'])
       WITH ORDINALITY AS u(s, o),
       unnest(ARRAY[NULL, 0, -1, 3, 5, 7]::bigint[]) WITH ORDINALITY AS v(x, xo)
 ORDER BY o, xo;
-- The rolled-back calls changed nothing.
:m_info;
-- An expected version below -1 is an argument error (22023), in every state.
SELECT s AS stream,
       left(probe(format('SELECT (eventstore.append(%L, ''T'', ''{}'', NULL, -2)).stream_version', s)), 5) AS append,
       left(probe(format('SELECT (eventstore.append_events(%L, ''[]'', -2)).stream_version', s)), 5) AS append_events,
       left(probe(format('SELECT eventstore.delete_stream(%L, -2)', s)), 5) AS delete_stream,
       left(probe(format('SELECT eventstore.tombstone_stream(%L, -2)', s)), 5) AS tombstone_stream
  FROM unnest(ARRAY['m-absent', 'm-active', 'm-deleted']) s;
-- An empty batch appends nothing but still checks the version.
SELECT try('SELECT eventstore.append_events(''m-deleted'', ''[]'', 0)::text') AS deleted_0,
       try('SELECT eventstore.append_events(''m-deleted'', ''[]'', 3)::text') AS deleted_3,
       try('SELECT eventstore.append_events(''m-deleted'', ''[]'', -1)::text') AS deleted_minus_1,
       try('SELECT eventstore.append_events(''m-recreated'', ''[]'', 5)::text') AS recreated_5,
       try('SELECT eventstore.append_events(''m-tombstoned'', ''[]'', NULL)::text') AS tombstoned,
       try('SELECT eventstore.append_events(''m-archived'', ''[]'', NULL)::text') AS archived;

-- The matrix's transitions for real.  A soft-deleted stream is recreated
-- by an append, numbering going on; deleting and tombstoning report the
-- version they deleted (0: nothing there).
SELECT eventstore.delete_stream('m-absent') AS absent, eventstore.delete_stream('m-deleted') AS deleted_again;
SELECT stream_version FROM eventstore.append('m-deleted', 'T', '{"n": 10}', expected_version => 0);
SELECT vers('m-deleted') AS read_stream, eventstore.stream_version('m-deleted') AS version,
       (eventstore.stream_info('m-deleted')).state;
SELECT eventstore.delete_stream('m-deleted', 4) AS deleted;
SELECT eventstore.tombstone_stream('m-deleted', 0) AS tombstoned_while_deleted;
SELECT i.state, i.stream_version, i.last_version FROM eventstore.stream_info('m-deleted') i;
SELECT try('SELECT eventstore.append(''m-deleted'', ''T'', ''{}'')::text') AS append_after_tombstone;
SELECT eventstore.tombstone_stream('m-absent') AS tombstone_absent;
SELECT i.state, i.stream_version, i.last_version FROM eventstore.stream_info('m-absent') i;
SELECT try('SELECT eventstore.append(''m-absent'', ''T'', ''{}'', expected_version => 0)::text') AS append_0;
-- Everything but reading refuses a tombstoned stream (ST002).
SELECT try('SELECT eventstore.set_stream_metadata(''m-tombstoned'', max_count => 1)::text') AS set_stream_metadata,
       try('SELECT eventstore.delete_stream(''m-tombstoned'')') AS delete_stream,
       try('SELECT eventstore.tombstone_stream(''m-tombstoned'')') AS tombstone_stream,
       try('SELECT eventstore.archive_stream(''m-tombstoned'')') AS archive_stream,
       try('SELECT eventstore.restore_stream(''m-tombstoned'')') AS restore_stream,
       vers('m-tombstoned') AS read_stream,
       eventstore.stream_version('m-tombstoned') AS stream_version;
-- The worker removes a deleted stream's events; numbering still goes on
-- from the deleted version.
SELECT stream_version FROM eventstore.append_events('m-gone', n_events(1, 4), 0);
SELECT eventstore.delete_stream('m-gone') AS deleted;
SELECT wait_until('SELECT NOT EXISTS (SELECT FROM eventstore.events WHERE stream_id = ''m-gone'')') AS removed;
SELECT removed_through, deleted_version FROM eventstore.streams WHERE stream_id = 'm-gone';
SELECT i.state, i.stream_version, i.last_version FROM eventstore.stream_info('m-gone') i;
SELECT try('SELECT eventstore.append_events(''m-gone'', ''[]'', 4)::text') AS append_4,
       try('SELECT eventstore.append_events(''m-gone'', ''[]'', 3)::text') AS append_3;
SELECT stream_version FROM eventstore.append('m-gone', 'T', '{}', expected_version => 0);
SELECT vers('m-gone') AS read_stream;

--
-- Idempotent appends.  Event k (a letter) of stream s carries the id
-- md5(s || '/' || k)::uuid (0.6.0: one id is one event of the store, so
-- streams do not share ids) and the data {"k": k}; '-' is an event without
-- an id.
--
CREATE FUNCTION evs(s text, VARIADIC k text[]) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_agg(CASE WHEN x = '-' THEN jsonb_build_object('type', 'T', 'data', jsonb_build_object('k', x))
                          ELSE jsonb_build_object('type', 'T', 'data', jsonb_build_object('k', x),
                                                  'id', md5(s || '/' || x)::uuid) END ORDER BY o)
      FROM unnest(k) WITH ORDINALITY AS u(x, o)
$$;
-- append_events / append of those events, kept (ae, a1) or rolled back
-- (ae_probe, a1_probe); the result as text, or the error.
CREATE FUNCTION ae_sql(s text, expected bigint, k text[]) RETURNS text LANGUAGE sql AS $$
    SELECT format('SELECT eventstore.append_events(%L, %L, %s)::text', s, evs(s, VARIADIC k),
                  coalesce(expected::text, 'NULL'))
$$;
CREATE FUNCTION a1_sql(s text, expected bigint, k text) RETURNS text LANGUAGE sql AS $$
    SELECT format('SELECT eventstore.append(%L, ''T'', %L, NULL, %s, %s)::text', s,
                  jsonb_build_object('k', k), coalesce(expected::text, 'NULL'),
                  CASE WHEN k = '-' THEN 'NULL' ELSE quote_literal(md5(s || '/' || k)) || '::uuid' END)
$$;
CREATE FUNCTION ae(s text, expected bigint, VARIADIC k text[]) RETURNS text
LANGUAGE sql AS $$ SELECT try(ae_sql(s, expected, k)) $$;
CREATE FUNCTION ae_probe(s text, expected bigint, VARIADIC k text[]) RETURNS text
LANGUAGE sql AS $$ SELECT probe(ae_sql(s, expected, k)) $$;
CREATE FUNCTION a1(s text, expected bigint, k text) RETURNS text
LANGUAGE sql AS $$ SELECT try(a1_sql(s, expected, k)) $$;
CREATE FUNCTION a1_probe(s text, expected bigint, k text) RETURNS text
LANGUAGE sql AS $$ SELECT probe(a1_sql(s, expected, k)) $$;
-- A stream's events as letters, and the last position drawn.
CREATE FUNCTION ks(s text) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(e.data->>'k', ' ' ORDER BY e.stream_version), '-')
      FROM eventstore.read_stream(s) e
$$;
CREATE FUNCTION last_drawn() RETURNS bigint LANGUAGE sql AS $$
    SELECT last_value FROM eventstore.global_position_seq
$$;
SELECT md5('i-b/D')::uuid AS id_d, md5('i-b/E')::uuid AS id_e, md5('i-b/F')::uuid AS id_f;

-- append_events: the first call, then its retries with the same expected
-- version: the original result, nothing written, no position drawn.
SELECT ae('i-b', 0, 'A', 'B', 'C') AS first_call, last_drawn() AS drawn \gset
SELECT :'first_call' AS first_call, :drawn AS drawn;
SELECT ae('i-b', 0, 'A', 'B', 'C') = :'first_call' AS same_result, ks('i-b'), last_drawn() = :drawn AS nothing_drawn;
SELECT ae('i-b', 3, 'D', 'E') AS second_call, last_drawn() AS drawn \gset
SELECT :'second_call' AS second_call, :drawn AS drawn;
SELECT x AS expected, ae('i-b', x, 'D', 'E') AS retry, ae('i-b', x, 'D', 'E') = :'second_call' AS same_result
  FROM unnest(ARRAY[3, NULL, -1]::bigint[]) WITH ORDINALITY AS u(x, o) ORDER BY o;
SELECT ks('i-b'), last_drawn() = :drawn AS nothing_drawn, eventstore.stream_version('i-b') AS version;
-- Partial overlaps with an explicit version: some of the call's ids stored
-- and others not, or not in the stored order (ST001 naming the first stored
-- id; before 0.6.0 ST004), or the call being a run of stored events (a
-- retry).
SELECT 'D F'   AS call, 3 AS expected, ae('i-b', 3, 'D', 'F') AS result
UNION ALL SELECT 'D E G', 3, ae('i-b', 3, 'D', 'E', 'G')
UNION ALL SELECT 'E F', 4, ae('i-b', 4, 'E', 'F')
UNION ALL SELECT 'E D', 3, ae('i-b', 3, 'E', 'D')
UNION ALL SELECT 'X D E', 3, ae('i-b', 3, 'X', 'D', 'E')
UNION ALL SELECT 'X D E', 2, ae('i-b', 2, 'X', 'D', 'E')
UNION ALL SELECT 'C D E', 2, ae('i-b', 2, 'C', 'D', 'E')
UNION ALL SELECT 'B C', 1, ae('i-b', 1, 'B', 'C')
UNION ALL SELECT 'B X', 1, ae('i-b', 1, 'B', 'X')
UNION ALL SELECT 'D', 3, ae('i-b', 3, 'D')
UNION ALL SELECT 'A B C', 0, ae('i-b', 0, 'A', 'B', 'C')
UNION ALL SELECT 'A B C D E', 0, ae('i-b', 0, 'A', 'B', 'C', 'D', 'E')
UNION ALL SELECT 'A B C D E F', 0, ae('i-b', 0, 'A', 'B', 'C', 'D', 'E', 'F');
SELECT ks('i-b'), last_drawn() = :drawn AS nothing_drawn;
-- Partial overlaps with NULL or -1: the same rules, wherever the stored
-- events are in the stream (0.6.0; before, only the newest events were
-- compared and ids further back were appended again).  An id twice in the
-- call is 22023.
SELECT 'D F' AS call, x AS expected, ae_probe('i-b', x, 'D', 'F') AS result
  FROM unnest(ARRAY[NULL, -1]::bigint[]) x
UNION ALL SELECT 'X E', NULL, ae_probe('i-b', NULL, 'X', 'E')
UNION ALL SELECT 'E F', NULL, ae_probe('i-b', NULL, 'E', 'F')
UNION ALL SELECT 'C D', NULL, ae_probe('i-b', NULL, 'C', 'D')
UNION ALL SELECT 'E D', -1, ae_probe('i-b', -1, 'E', 'D')
UNION ALL SELECT 'D E D', NULL, ae_probe('i-b', NULL, 'D', 'E', 'D')
UNION ALL SELECT 'E', NULL, ae_probe('i-b', NULL, 'E')
UNION ALL SELECT 'C D E', -1, ae_probe('i-b', -1, 'C', 'D', 'E')
UNION ALL SELECT 'A B C D E', NULL, ae_probe('i-b', NULL, 'A', 'B', 'C', 'D', 'E')
UNION ALL SELECT 'D', NULL, ae_probe('i-b', NULL, 'D')
UNION ALL SELECT 'B C', NULL, ae_probe('i-b', NULL, 'B', 'C')
UNION ALL SELECT 'A B C D E X', NULL, ae_probe('i-b', NULL, 'A', 'B', 'C', 'D', 'E', 'X');
-- Different ids: an ordinary append (ST001 on a wrong version).
SELECT ae_probe('i-b', 3, 'X', 'Y') AS expected_3, ae_probe('i-b', 5, 'X', 'Y') AS expected_5,
       ae_probe('i-b', NULL, 'X', 'Y') AS expected_null, ae_probe('i-b', -1, 'X', 'Y') AS expected_minus_1;
-- A call where some event has no id is never a retry: next to a stored id,
-- a conflict (ST001).
SELECT ae_probe('i-b', 3, 'D', '-') AS d_noid_3, ae_probe('i-b', 3, '-', 'E') AS noid_e_3,
       ae_probe('i-b', NULL, 'D', '-') AS d_noid_null, ae_probe('i-b', -1, '-', 'E') AS noid_e_minus_1;
SELECT ks('i-b'), eventstore.stream_version('i-b') AS version;
-- A retry after more events were appended: recognised with the explicit
-- version and with NULL or -1 alike (before 0.6.0, NULL recognised it only
-- while the call's events were the newest).
SELECT ae('i-b', 5, 'F') AS f;
SELECT ae('i-b', 3, 'D', 'E') AS de_3, ae('i-b', NULL, 'D', 'E') AS de_null;
SELECT ae('i-b', NULL, 'G') AS g;
SELECT ae('i-b', 3, 'D', 'E') AS de_3, ae('i-b', 0, 'A', 'B', 'C') AS abc_0,
       ae_probe('i-b', NULL, 'D', 'E') AS de_null, ae_probe('i-b', -1, 'D', 'E') AS de_minus_1;
-- F and G came from two calls: one call F G is taken for their retry.
SELECT ae('i-b', NULL, 'F', 'G') AS fg_null, ae('i-b', 5, 'F', 'G') AS fg_5;
SELECT ks('i-b'), eventstore.stream_version('i-b') AS version;
-- A retry draws no global position: the next append takes the next one.
SELECT last_drawn() AS drawn \gset
SELECT ae('i-b', 3, 'D', 'E') AS de_3, ae('i-b', NULL, 'F', 'G') AS fg_null, ae('i-b', 0, 'A', 'B', 'C') AS abc_0;
SELECT stream_version, global_position - :drawn AS position_after_drawn
  FROM eventstore.append('i-b', 'T', '{"k": "H"}');
SELECT last_drawn() - :drawn AS drawn_since;
SELECT stream_id, stream_version, data->>'k' AS k, global_position - :drawn AS position_after_drawn
  FROM eventstore.read_all(:drawn, NULL);

-- append: the same rules for one event and its event_id.
SELECT a1('i-s', 0, 'A') AS first_call \gset
SELECT :'first_call' AS first_call;
SELECT x AS expected, a1('i-s', x, 'A') = :'first_call' AS same_result
  FROM unnest(ARRAY[0, NULL, -1]::bigint[]) WITH ORDINALITY AS u(x, o) ORDER BY o;
SELECT ks('i-s');
-- expected 1 holds, but the id is stored: a retry all the same (before
-- 0.6.0 a new append of the same id).
SELECT a1_probe('i-s', 1, 'A') AS a_1, a1_probe('i-s', 0, 'B') AS b_0, a1_probe('i-s', NULL, 'B') AS b_null,
       a1_probe('i-s', NULL, '-') AS noid_null, a1_probe('i-s', 0, '-') AS noid_0;
SELECT a1('i-s', 1, 'B') AS b_1;
SELECT a1('i-s', 0, 'A') = :'first_call' AS a_0_same_result, a1('i-s', 1, 'A') AS a_1,
       a1_probe('i-s', NULL, 'A') AS a_null, a1('i-s', NULL, 'B') AS b_null, a1('i-s', 1, 'B') AS b_1_again;
-- append and append_events recognise each other's calls.
SELECT ae('i-s', 1, 'B') AS batch_b_1, ae('i-s', 0, 'A', 'B') AS batch_ab_0;
SELECT ks('i-s');

-- Soft-deleted streams: the deleted events keep their ids until the worker
-- removes them, so appending them again is their retry (before 0.6.0 it
-- recreated the stream with copies); in one transaction here, so that the
-- worker cannot remove them in between.  Once removed, the ids stay taken
-- (eventstore.event_ids keeps them for good): the same call still returns
-- the original result and writes nothing.
SELECT ae('i-d', 0, 'A', 'B') AS ab_0;
BEGIN;
SELECT eventstore.delete_stream('i-d') AS deleted;
SELECT ae_probe('i-d', 0, 'A', 'B') AS ab_0, ae_probe('i-d', NULL, 'A', 'B') AS ab_null,
       ae_probe('i-d', 2, 'A', 'B') AS ab_2, ae_probe('i-d', -1, 'A', 'B') AS ab_minus_1;
SELECT ks('i-d'), eventstore.stream_version('i-d') AS version;
COMMIT;
SELECT wait_until('SELECT NOT EXISTS (SELECT FROM eventstore.events WHERE stream_id = ''i-d'')') AS removed;
SELECT ae('i-d', 0, 'A', 'B') AS ab_0_after_removal;
SELECT ae('i-d', 0, 'A', 'B') AS ab_0_retry, ae('i-d', NULL, 'A', 'B') AS ab_null_retry,
       ae('i-d', 2, 'A', 'B') AS ab_2;
SELECT ks('i-d'), eventstore.stream_version('i-d') AS version;
-- Tombstoned and archived streams refuse retries as any append.
SELECT eventstore.archive_stream('i-s') AS archived;
SELECT a1('i-s', 0, 'A') AS archived_retry, ae('i-s', NULL, 'A', 'B') AS archived_batch_retry;
SELECT eventstore.restore_stream('i-s') AS restored;
SELECT a1('i-s', 0, 'A') = :'first_call' AS restored_same_result;
SELECT eventstore.tombstone_stream('i-d') AS tombstoned;
SELECT ae('i-d', 2, 'A', 'B') AS tombstoned_retry;
-- Ids stay taken for good (0.6.0): eventstore.event_ids keeps the rows of
-- the removed and tombstoned stream, and another stream cannot take them.
SELECT count(*) AS kept_ids FROM eventstore.event_ids WHERE stream_id = 'i-d';
SELECT split_part(try(format('SELECT eventstore.append(%L, ''T'', ''{}'', NULL, NULL, %L)::text',
                             'i-other', md5('i-d/A')::uuid)), ' ', 1) AS taken_elsewhere;

--
-- Reads honour the settings at once: read_stream (forward, backward, from a
-- version, at most n), read_all (with and without filters, and its
-- max_count counting only what it returns), stream_version (the head, even
-- when hidden), aggregate_stream / load_state (with and without
-- snapshots).  Ten events {"n": 1} .. {"n": 10}, types Odd and Even.
--
CREATE FUNCTION reads(s text) RETURNS TABLE (
    forward text, backward text, from_5 text, back_from_9 text, first_2 text, last_2 text,
    read_all text, all_max_2 text, all_even text, all_unfiltered text,
    version bigint, sum_n bigint, sum_no_snapshots bigint, loaded_version bigint)
LANGUAGE sql AS $$
    SELECT vers(s), vers(s, NULL, NULL, true), vers(s, 5), vers(s, 9, NULL, true),
           vers(s, NULL, 2), vers(s, NULL, 2, true),
           all_vers(s), all_vers(s, 2), all_vers(s, NULL, ARRAY['Even']), all_vers_unfiltered(s),
           eventstore.stream_version(s),
           eventstore.aggregate_stream(s, 'sum_n(bigint, eventstore.event)', 0::bigint),
           eventstore.aggregate_stream(s, 'sum_n(bigint, eventstore.event)', 0::bigint,
                                       use_snapshots => false),
           (SELECT l.version FROM eventstore.load_state(s, 'sum_n(bigint, eventstore.event)', 0::bigint) l)
$$;
SELECT s, r.stream_version
  FROM unnest(ARRAY['rc-', 'rt-', 'rb-', 'rz-', 'rw-']) s,
       LATERAL eventstore.append_events(s, n_events(1, 10), 0) r;
SELECT 'none' AS setting, * FROM reads('rc-');

-- max_count 3: the newest three versions.
SELECT * FROM eventstore.set_stream_metadata('rc-', max_count => 3);
SELECT 'max_count 3' AS setting, * FROM reads('rc-');
-- truncate_before 5: versions 5 and up.
SELECT * FROM eventstore.set_stream_metadata('rt-', truncate_before => 5);
SELECT 'truncate_before 5' AS setting, * FROM reads('rt-');
-- Both: the stricter wins.
SELECT (eventstore.set_stream_metadata('rb-', max_count => 3, truncate_before => 2)).max_count;
SELECT 'max_count 3, truncate_before 2' AS setting, * FROM reads('rb-');
SELECT (eventstore.set_stream_metadata('rb-', max_count => 3, truncate_before => 9)).truncate_before;
SELECT 'max_count 3, truncate_before 9' AS setting, * FROM reads('rb-');
-- get_stream_metadata reads the settings back; a stream without any reads NULLs.
SELECT * FROM eventstore.get_stream_metadata('rb-');
SELECT * FROM eventstore.get_stream_metadata('no-such-stream');
SELECT try('SELECT eventstore.get_stream_metadata(NULL)') AS null_id;
-- truncate_before beyond the head: nothing reads, the version stays; a new
-- event below the limit is hidden too, one at it reads.
SELECT (eventstore.set_stream_metadata('rz-', truncate_before => 12)).stream_version;
SELECT 'truncate_before 12' AS setting, * FROM reads('rz-');
-- handle_command expects the stream's version (10), not that of the last
-- event it could fold (none): the command goes through at once.
BEGIN;
CREATE FUNCTION odd_n(c jsonb, s bigint) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_array(jsonb_build_object('type', 'Odd', 'data', c)) $$;
SELECT version, state, appended
  FROM eventstore.handle_command('rz-', 'odd_n(jsonb,bigint)', '{"n": 11}',
                                 'sum_n(bigint,eventstore.event)', 0::bigint, max_retries => 0);
ROLLBACK;
SELECT stream_version FROM eventstore.append('rz-', 'Odd', '{"n": 11}', expected_version => 10);
SELECT vers('rz-') AS read_stream, eventstore.stream_version('rz-') AS version;
SELECT stream_version FROM eventstore.append('rz-', 'Even', '{"n": 12}', expected_version => 11);
SELECT 'truncate_before 12, 2 more' AS setting, * FROM reads('rz-');
-- A new setting replaces all three; widening shows what is still stored
-- (within the transaction that narrowed, before the worker could remove
-- anything).
BEGIN;
SELECT * FROM eventstore.set_stream_metadata('rw-', max_count => 2, truncate_before => 3);
SELECT vers('rw-') AS max_count_2;
SELECT * FROM eventstore.set_stream_metadata('rw-', truncate_before => 4);
SELECT vers('rw-') AS truncate_before_4;
SELECT * FROM eventstore.set_stream_metadata('rw-');
SELECT vers('rw-') AS no_limit;
ROLLBACK;
SELECT count(*) AS rows_for_rw FROM eventstore.streams WHERE stream_id = 'rw-';
-- The worker removes what the settings exclude; the version and the reads
-- stay, and appends number on.
SELECT wait_until($$SELECT (SELECT count(*) FROM eventstore.events WHERE stream_id = 'rc-') = 3
                       AND (SELECT count(*) FROM eventstore.events WHERE stream_id = 'rt-') = 6$$) AS removed;
SELECT stream_id, removed_through FROM eventstore.streams WHERE stream_id IN ('rc-', 'rt-') ORDER BY 1;
SELECT 'max_count 3, removed' AS setting, * FROM reads('rc-');
SELECT stream_version FROM eventstore.append('rc-', 'Odd', '{"n": 11}', expected_version => 10);
SELECT 'max_count 3, one more' AS setting, * FROM reads('rc-');
-- Snapshots taken before a setting: a load must not start from a state
-- that holds events the setting hides.
SELECT eventstore.append_events('rs-', n_events(1, 10), 0) IS NOT NULL AS appended;
SELECT eventstore.take_snapshot('rs-', 'sum_n(bigint, eventstore.event)', 0::bigint) AS snapshot_version;
SELECT (eventstore.set_stream_metadata('rs-', truncate_before => 5)).truncate_before;
SELECT 'truncate_before 5, snapshot at 10' AS setting, * FROM reads('rs-');
SELECT (eventstore.set_stream_metadata('rs-', max_count => 2)).max_count;
SELECT 'max_count 2, snapshot at 10' AS setting, * FROM reads('rs-');
-- No snapshot is taken while settings hide events; a new setting forgets
-- the stream's snapshots.
SELECT eventstore.take_snapshot('rs-', 'sum_n(bigint, eventstore.event)', 0::bigint) AS snapshot_version;
SELECT count(*) AS snapshots FROM eventstore.snapshots WHERE stream_id = 'rs-';
SELECT eventstore.take_snapshot('rs2-', 'sum_n(bigint, eventstore.event)', 0::bigint) AS empty_stream,
       eventstore.append_events('rs2-', n_events(1, 4), 0) IS NOT NULL AS appended;
SELECT eventstore.take_snapshot('rs2-', 'sum_n(bigint, eventstore.event)', 0::bigint) AS snapshot_version;
SELECT count(*) AS snapshots FROM eventstore.snapshots WHERE stream_id = 'rs2-';
SELECT (eventstore.set_stream_metadata('rs2-')).state;
SELECT count(*) AS snapshots FROM eventstore.snapshots WHERE stream_id = 'rs2-';

-- max_age: events created before now() - max_age read as gone.  Three
-- events in one transaction, three in a later one; a max_age set in the
-- reading transaction to reach exactly between them (now() is the
-- transaction's start, the cutoff is taken from it).
SELECT stream_version FROM eventstore.append_events('ra-', n_events(1, 3), 0);
SELECT pg_sleep(0.01);
SELECT stream_version FROM eventstore.append_events('ra-', n_events(4, 6), 3);
SELECT min(created_at) AS t1, max(created_at) AS t2, count(DISTINCT created_at) AS times
  FROM eventstore.read_stream('ra-') \gset
SELECT :times AS distinct_created_at, count(*) FILTER (WHERE created_at = :'t1') AS at_t1
  FROM eventstore.read_stream('ra-');
SELECT :'t2'::timestamptz > :'t1'::timestamptz AS later;
BEGIN;
SELECT (eventstore.set_stream_metadata('ra-', max_age => now() - (:'t1'::timestamptz + (:'t2'::timestamptz - :'t1'::timestamptz) / 2))).max_age > interval '0' AS max_age_set;
SELECT 'max_age between' AS setting, * FROM reads('ra-');
-- an event of this transaction is the newest of all
SELECT stream_version FROM eventstore.append('ra-', 'Odd', '{"n": 7}');
SELECT vers('ra-') AS read_stream;
ROLLBACK;
-- 1 microsecond: everything older than this transaction's start is gone.
SELECT (eventstore.set_stream_metadata('ra-', max_age => '1 microsecond')).max_age;
SELECT pg_sleep(0.01);
SELECT 'max_age 1 microsecond' AS setting, * FROM reads('ra-');
SELECT i.state, i.stream_version, i.last_version FROM eventstore.stream_info('ra-') i;
BEGIN;
SELECT stream_version FROM eventstore.append('ra-', 'Odd', '{"n": 7}', expected_version => 6);
SELECT vers('ra-') AS read_stream_in_appending_transaction;
COMMIT;
SELECT pg_sleep(0.01);
SELECT vers('ra-') AS read_stream_later, eventstore.stream_version('ra-') AS version;

--
-- Archiving: the events move to eventstore.archived_events unchanged and
-- back.  One event's data is over 8 kB of incompressible text (stored out
-- of line), one has no metadata, one has JSON null data.
--
SELECT stream_version FROM eventstore.append('arc-1', 'Opened', '{"n": 1}', '{"by": "ada"}');
SELECT stream_version FROM eventstore.append('arc-1', 'Big',
    jsonb_build_object('n', 2, 'blob', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g)),
    '{"size": "large"}');
SELECT stream_version FROM eventstore.append('arc-1', 'Nothing', 'null', NULL);
SELECT stream_version FROM eventstore.append_events('arc-1', n_events(4, 5), 3);
CREATE TABLE arc_original AS
SELECT global_position, stream_id, stream_version, event_id, event_type, created_at,
       jsonb_send(data) AS data, jsonb_send(metadata) AS metadata
  FROM eventstore.events WHERE stream_id = 'arc-1';
SELECT stream_version, event_type, octet_length(data) AS data_bytes, metadata IS NULL AS no_metadata
  FROM arc_original ORDER BY stream_version;
SELECT reltoastrelid::regclass AS arc_toast FROM pg_class WHERE oid = 'eventstore.archived_events'::regclass \gset
SELECT count(*) AS archive_toast_chunks FROM :arc_toast;
SELECT eventstore.take_snapshot('arc-1', 'count_events(bigint, eventstore.event)', 0::bigint) AS snapshot_version;
-- compares a table of events with the original, row by row
CREATE FUNCTION arc_diff(rows_query text) RETURNS TABLE (same_rows bigint, missing bigint, extra bigint)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'CREATE TEMP TABLE arc_now AS ' || rows_query;
    RETURN QUERY
    SELECT (SELECT count(*) FROM arc_original o JOIN arc_now n USING (global_position, stream_id, stream_version,
                                                                     event_id, event_type, created_at)
             WHERE o.data = n.data AND o.metadata IS NOT DISTINCT FROM n.metadata),
           (SELECT count(*) FROM (SELECT * FROM arc_original EXCEPT SELECT * FROM arc_now) x),
           (SELECT count(*) FROM (SELECT * FROM arc_now EXCEPT SELECT * FROM arc_original) x);
    DROP TABLE arc_now;
END $$;
\set arc_rows 'SELECT global_position, stream_id, stream_version, event_id, event_type, created_at, jsonb_send(data) AS data, jsonb_send(metadata) AS metadata FROM '
SELECT eventstore.archive_stream('arc-1') AS archived;
SELECT i.state, i.stream_version, i.last_version, i.archived_at IS NOT NULL AS archived_at
  FROM eventstore.stream_info('arc-1') i;
SELECT (SELECT count(*) FROM eventstore.events WHERE stream_id = 'arc-1') AS hot,
       (SELECT count(*) FROM eventstore.archived_events WHERE stream_id = 'arc-1') AS archived,
       (SELECT count(*) FROM eventstore.snapshots WHERE stream_id = 'arc-1') AS snapshots;
SELECT count(*) > 0 AS archive_toast_chunks FROM :arc_toast;
SELECT 'archived_events' AS compared, * FROM arc_diff(:'arc_rows' || 'eventstore.archived_events WHERE stream_id = ''arc-1''');
SELECT 'read_stream' AS compared, * FROM arc_diff(:'arc_rows' || 'eventstore.read_stream(''arc-1'')');
SELECT vers('arc-1', 4, NULL, true) AS backward_from_4, vers('arc-1', 2, 2) AS from_2_max_2,
       all_vers('arc-1') AS read_all, all_vers_unfiltered('arc-1') AS read_all_unfiltered,
       eventstore.stream_version('arc-1') AS version,
       eventstore.aggregate_stream('arc-1', 'count_events(bigint, eventstore.event)', 0::bigint) AS folded,
       eventstore.aggregate_stream('arc-1', 'sum_n(bigint, eventstore.event)', 0::bigint) AS sum_n;
-- An archived stream takes no appends (ST003) until restored; archiving
-- it again moves nothing; SQL cannot change the archive (42501).
SELECT try('SELECT eventstore.append(''arc-1'', ''T'', ''{}'')::text') AS append,
       try('SELECT eventstore.append(''arc-1'', ''T'', ''{}'', expected_version => 5)::text') AS append_5,
       try('SELECT eventstore.append_events(''arc-1'', ''[{"type": "T", "data": 1}]'', -1)::text') AS append_events,
       eventstore.archive_stream('arc-1') AS archive_again;
SELECT try('UPDATE eventstore.archived_events SET event_type = ''X'' WHERE stream_id = ''arc-1''') AS "update",
       try('DELETE FROM eventstore.archived_events WHERE stream_id = ''arc-1''') AS "delete",
       try('TRUNCATE eventstore.archived_events') AS "truncate";
-- Settings apply to an archived stream too.
BEGIN;
SELECT (eventstore.set_stream_metadata('arc-1', max_count => 2)).state;
SELECT vers('arc-1') AS max_count_2, eventstore.stream_version('arc-1') AS version;
ROLLBACK;
-- Restore: the same rows back in the hot table, in the global log again.
SELECT eventstore.restore_stream('arc-1') AS restored;
SELECT i.state, i.archived_at IS NULL AS not_archived FROM eventstore.stream_info('arc-1') i;
SELECT count(*) AS stream_rows FROM eventstore.streams WHERE stream_id = 'arc-1';
SELECT 'events after restore' AS compared, * FROM arc_diff(:'arc_rows' || 'eventstore.events WHERE stream_id = ''arc-1''');
SELECT 'read_all after restore' AS compared, * FROM arc_diff(:'arc_rows' || 'eventstore.read_all(0, NULL, NULL, ''arc-1'')');
SELECT (SELECT count(*) FROM eventstore.archived_events WHERE stream_id = 'arc-1') AS archived,
       eventstore.restore_stream('arc-1') AS restore_again, eventstore.restore_stream('arc-none') AS restore_absent,
       eventstore.archive_stream('arc-none') AS archive_absent;
SELECT stream_version FROM eventstore.append('arc-1', 'T', '{"n": 6}', expected_version => 5);
SELECT vers('arc-1') AS read_stream;
-- Deleting or tombstoning an archived stream removes its archived events.
SELECT r.stream_version FROM unnest(ARRAY['arc-del', 'arc-tomb']) s,
       LATERAL eventstore.append_events(s, n_events(1, 3), 0) r;
SELECT eventstore.archive_stream('arc-del') AS archived, eventstore.archive_stream('arc-tomb') AS archived;
SELECT eventstore.delete_stream('arc-del', 3) AS deleted, eventstore.tombstone_stream('arc-tomb', 3) AS tombstoned;
SELECT s, i.state, i.stream_version, i.last_version, i.archived_at IS NULL AS not_archived,
       (SELECT count(*) FROM eventstore.archived_events a WHERE a.stream_id = s) AS archived_events,
       (SELECT removed_through FROM eventstore.streams t WHERE t.stream_id = s) AS removed_through
  FROM unnest(ARRAY['arc-del', 'arc-tomb']) s, LATERAL eventstore.stream_info(s) i;
SELECT stream_version FROM eventstore.append('arc-del', 'T', '{}', expected_version => 0);
SELECT vers('arc-del') AS read_stream, (SELECT count(*) FROM eventstore.events WHERE stream_id = 'arc-del' AND stream_version > 3) AS hot;

--
-- archive_streams: the streams with the prefix that have had no event for
-- inactive_for, oldest first, at most max_streams; not the deleted or
-- tombstoned ones, not the recent ones.
--
SELECT r.stream_version FROM unnest(ARRAY['old-a', 'old-b', 'old-c', 'old-del', 'old-tomb', 'old-rec']) s,
       LATERAL eventstore.append_events(s, n_events(1, 2), 0) r;
SELECT eventstore.delete_stream('old-del') AS deleted, eventstore.tombstone_stream('old-tomb') AS tombstoned,
       eventstore.delete_stream('old-rec') AS deleted;
SELECT stream_version FROM eventstore.append('old-rec', 'T', '{}');
SELECT pg_sleep(0.01);
BEGIN;
SELECT stream_version FROM eventstore.append('old-new', 'T', '{}');
SELECT eventstore.archive_streams('1 hour', 'old-') AS an_hour;
SELECT eventstore.archive_streams('1 microsecond', 'old-', 2) AS two;
SELECT s, (eventstore.stream_info(s)).state FROM unnest(ARRAY['old-a', 'old-b', 'old-c', 'old-rec', 'old-new']) s;
SELECT eventstore.archive_streams('1 microsecond', 'old-') AS the_rest;
SELECT eventstore.archive_streams('1 microsecond', 'old-') AS none_left;
COMMIT;
SELECT s, i.state, i.stream_version, vers(s) AS read_stream
  FROM unnest(ARRAY['old-a', 'old-b', 'old-c', 'old-del', 'old-tomb', 'old-rec', 'old-new']) s,
       LATERAL eventstore.stream_info(s) i;
SELECT try('SELECT eventstore.archive_streams(NULL)') AS null_interval,
       try('SELECT eventstore.archive_streams(''0'')') AS zero,
       try('SELECT eventstore.archive_streams(''-1 day'')') AS negative,
       try('SELECT eventstore.archive_streams(''1 day'', ''old-'', 0)') AS max_0;

--
-- Archive policies: the worker archives what a policy matches.
--
SELECT stream_version FROM eventstore.append('pol-1', 'T', '{}');
SELECT pg_sleep(0.01);
SELECT eventstore.create_archive_policy('pol', '1 millisecond', 'pol-');
SELECT name, inactive_for, stream_prefix FROM eventstore.archive_policies;
SELECT wait_until($$SELECT (eventstore.stream_info('pol-1')).state = 'archived'$$) AS archived_by_worker;
SELECT last_run_at IS NOT NULL AS ran FROM eventstore.archive_policies WHERE name = 'pol';
SELECT try('SELECT eventstore.create_archive_policy(''pol'', ''1 day'')') AS duplicate,
       try('SELECT eventstore.create_archive_policy(NULL, ''1 day'')') AS null_name,
       try('SELECT eventstore.create_archive_policy('''', ''1 day'')') AS empty_name,
       try('SELECT eventstore.create_archive_policy(''p2'', NULL)') AS null_interval,
       try('SELECT eventstore.create_archive_policy(''p2'', ''0'')') AS zero,
       try('SELECT eventstore.create_archive_policy(''p2'', ''-1 hour'')') AS negative;
SELECT eventstore.create_archive_policy('all', '1 day', '');
SELECT name, stream_prefix IS NULL AS every_stream FROM eventstore.archive_policies ORDER BY name;
SELECT eventstore.drop_archive_policy('pol'), eventstore.drop_archive_policy('all');
SELECT try('SELECT eventstore.drop_archive_policy(''pol'')') AS missing,
       try('SELECT eventstore.drop_archive_policy(''pol'', true)') AS if_exists,
       try('SELECT eventstore.drop_archive_policy(NULL)') AS null_name;
SELECT count(*) AS policies FROM eventstore.archive_policies;

--
-- Snapshots leave with their stream: delete, tombstone, archive.
--
SELECT r.stream_version FROM unnest(ARRAY['snap-del', 'snap-tomb', 'snap-arc', 'snap-keep']) s,
       LATERAL eventstore.append_events(s, n_events(1, 3), 0) r;
SELECT s, eventstore.take_snapshot(s, 'count_events(bigint, eventstore.event)', 0::bigint) AS snapshot
  FROM unnest(ARRAY['snap-del', 'snap-tomb', 'snap-arc', 'snap-keep']) s;
SELECT stream_id, stream_version FROM eventstore.snapshots WHERE stream_id LIKE 'snap-%' ORDER BY 1;
SELECT eventstore.delete_stream('snap-del'), eventstore.tombstone_stream('snap-tomb'),
       eventstore.archive_stream('snap-arc');
SELECT stream_id, stream_version FROM eventstore.snapshots WHERE stream_id LIKE 'snap-%' ORDER BY 1;
-- a recreated stream folds from its new events only
SELECT stream_version FROM eventstore.append('snap-del', 'T', '{"n": 4}', expected_version => 0);
SELECT eventstore.aggregate_stream('snap-del', 'count_events(bigint, eventstore.event)', 0::bigint) AS folded,
       eventstore.take_snapshot('snap-del', 'count_events(bigint, eventstore.event)', 0::bigint) AS snapshot,
       (SELECT l.state FROM eventstore.load_state('snap-del', 'count_events(bigint, eventstore.event)', 0::bigint) l) AS loaded;
SELECT eventstore.aggregate_stream('snap-tomb', 'count_events(bigint, eventstore.event)', 0::bigint) AS tombstoned,
       eventstore.aggregate_stream('snap-arc', 'count_events(bigint, eventstore.event)', 0::bigint) AS archived;

--
-- Bad arguments.
--
SELECT f AS call, try('SELECT ' || f) AS result FROM unnest(ARRAY[
    'eventstore.stream_info(NULL)',
    'eventstore.stream_info('''')',
    'eventstore.stream_info(repeat(''s'', 1025))',
    'eventstore.set_stream_metadata(NULL)',
    'eventstore.set_stream_metadata('''', max_count => 1)',
    'eventstore.set_stream_metadata(''x'', max_age => ''0'')',
    'eventstore.set_stream_metadata(''x'', max_age => ''-1 day'')',
    'eventstore.set_stream_metadata(''x'', max_count => 0)',
    'eventstore.set_stream_metadata(''x'', max_count => -1)',
    'eventstore.set_stream_metadata(''x'', truncate_before => 0)',
    'eventstore.delete_stream(NULL)',
    'eventstore.delete_stream('''')',
    'eventstore.tombstone_stream(NULL)',
    'eventstore.tombstone_stream('''')',
    'eventstore.archive_stream(NULL)',
    'eventstore.archive_stream('''')',
    'eventstore.restore_stream(NULL)',
    'eventstore.restore_stream('''')',
    'eventstore.archive_streams(''1 day'', NULL, -1)']) f;
-- none of them left a row behind
SELECT count(*) AS rows_for_x FROM eventstore.streams WHERE stream_id IN ('x', '');

--
-- lifecycle_status counts streams by state, as the streams table has them.
--
SELECT l.streams_with_settings = (SELECT count(*) FROM eventstore.streams
                                   WHERE max_age IS NOT NULL OR max_count IS NOT NULL
                                      OR truncate_before IS NOT NULL) AS settings_ok,
       l.tombstoned_streams = (SELECT count(*) FROM eventstore.streams WHERE tombstoned_at IS NOT NULL) AS tombstoned_ok,
       l.archived_streams = (SELECT count(*) FROM eventstore.streams WHERE archived_at IS NOT NULL) AS archived_ok,
       l.tombstoned_streams > 0 AS some_tombstoned,
       l.hot_table_bytes > 0 AND l.archive_table_bytes > 0 AS sizes_ok
  FROM eventstore.lifecycle_status l;

--
-- Privileges: nothing new is open to PUBLIC.
--
SELECT p.oid::regprocedure AS function, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute,
       p.prosecdef AS security_definer
  FROM pg_proc p
 WHERE p.pronamespace = 'eventstore'::regnamespace
   AND p.proname IN ('set_stream_metadata', 'stream_info', 'delete_stream', 'tombstone_stream', 'archive_stream',
                     'restore_stream', 'archive_streams', 'create_archive_policy', 'drop_archive_policy',
                     '_lock_stream', '_stored_head', '_move_stream', '_remove_events', '_check_stream_id',
                     '_stream_for_change', '_check_expected', '_forget_snapshots', '_archive_stream',
                     '_inactive_streams', '_retention_step', '_archive_step', '_delete_stream', '_stream_versions', 'get_stream_metadata')
 ORDER BY 1::text;
-- Executable by PUBLIC, which has no USAGE on the schema: only a snapshot
-- policy's step and its lookup, which return a caller only its own policies.
SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text)
         FILTER (WHERE has_function_privilege('public', p.oid, 'EXECUTE')) AS executable_by_public
  FROM pg_proc p WHERE p.pronamespace = 'eventstore'::regnamespace;
SELECT t AS "table", has_table_privilege('public', t, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') AS public_any
  FROM unnest(ARRAY['eventstore.streams', 'eventstore.archived_events', 'eventstore.archive_policies', 'eventstore.archive_candidates', 'eventstore.lifecycle_status']::regclass[]) t;
-- A role with EXECUTE on stream_info only can read a stream's state, not change it.
CREATE ROLE regress_es_lifecycle NOLOGIN;
GRANT USAGE ON SCHEMA eventstore TO regress_es_lifecycle;
GRANT EXECUTE ON FUNCTION eventstore.stream_info(text) TO regress_es_lifecycle;
SET ROLE regress_es_lifecycle;
SELECT state FROM eventstore.stream_info('snap-keep');
SELECT eventstore.delete_stream('snap-keep');
\echo :SQLSTATE
SELECT eventstore.archive_stream('snap-keep');
\echo :SQLSTATE
SELECT count(*) FROM eventstore.streams;
\echo :SQLSTATE
RESET ROLE;
SELECT (eventstore.stream_info('snap-keep')).state;

--
-- ST002 is one rule (lifecycle.c): appending to, deleting, tombstoning,
-- changing the settings of and archiving a tombstoned stream all fail with
-- the same SQLSTATE, message and DETAIL.
--
CREATE FUNCTION st002_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ' ' || msg || ' / ' || det;
END $$;
SELECT count(DISTINCT e) AS distinct_errors, min(left(e, 39)) AS error,
       bool_and(e LIKE '%; it takes no more events.') AS detail_says_why
  FROM unnest(ARRAY[
         st002_of($$SELECT eventstore.append('m-tombstoned', 'E', '{}')$$),
         st002_of($$SELECT eventstore.append_events('m-tombstoned', '[{"type": "E", "data": {}}]')$$),
         st002_of($$SELECT eventstore.delete_stream('m-tombstoned')$$),
         st002_of($$SELECT eventstore.tombstone_stream('m-tombstoned')$$),
         st002_of($$SELECT eventstore.set_stream_metadata('m-tombstoned', max_count => 5)$$),
         st002_of($$SELECT eventstore.archive_stream('m-tombstoned')$$)]) e;
DROP FUNCTION st002_of(text);

--
-- Recreation with the version a writer last saw (0.6.0).  A writer read
-- version 3, then the stream was soft-deleted: its append expecting 3
-- recreates the stream, as one expecting 0 would; -1 and any other version
-- fail, the DETAIL telling what stream_info tells (deleted, last version 3).
--
SELECT stream_version FROM eventstore.append_events('rec-d', n_events(1, 3), 0);
SELECT eventstore.delete_stream('rec-d', 3) AS deleted;
SELECT i.state, i.stream_version, i.last_version, eventstore.stream_version('rec-d') AS stream_version_fn
  FROM eventstore.stream_info('rec-d') i;
SELECT eventstore.append('rec-d', 'T', '{}', expected_version => -1);
SELECT eventstore.append('rec-d', 'T', '{}', expected_version => 2);
SELECT eventstore.append_events('rec-d', n_events(4, 4), 4);
SELECT eventstore.delete_stream('rec-d', 5);
-- deleting it again with the version last seen does nothing (0)
SELECT eventstore.delete_stream('rec-d', 3) AS deleted_again;
SELECT stream_version FROM eventstore.append('rec-d', 'T', '{"n": 4}', expected_version => 3);
SELECT vers('rec-d') AS read_stream, i.state, i.stream_version, i.last_version
  FROM eventstore.stream_info('rec-d') i;
-- recreated, it exists at version 4: neither 0 nor 3 expects it any more
SELECT try('SELECT eventstore.append(''rec-d'', ''T'', ''{}'', expected_version => 0)::text') AS expect_0,
       try('SELECT eventstore.append(''rec-d'', ''T'', ''{}'', expected_version => 3)::text') AS expect_3;
-- deleted again at 4: the version seen before the first delete is stale
SELECT eventstore.delete_stream('rec-d', 4) AS deleted;
SELECT try('SELECT eventstore.append(''rec-d'', ''T'', ''{}'', expected_version => 3)::text') AS expect_3;
-- a retry of the recreating append (same ids, same expected version) is
-- recognised as such: the original result, nothing written
SELECT stream_version FROM eventstore.append('rec-d', 'T', '{"n": 5}', NULL, 4,
                                             '00000000-0000-0000-0000-00000000000d');
SELECT stream_version FROM eventstore.append('rec-d', 'T', '{"n": 5}', NULL, 4,
                                             '00000000-0000-0000-0000-00000000000d');
SELECT vers('rec-d') AS read_stream;
-- tombstoning a deleted stream expects it by 0 or its last version too
SELECT stream_version FROM eventstore.append_events('rec-t', n_events(1, 2), 0);
SELECT eventstore.delete_stream('rec-t') AS deleted;
SELECT try('SELECT eventstore.tombstone_stream(''rec-t'', 1)::text') AS tombstone_1;
SELECT eventstore.tombstone_stream('rec-t', 2) AS tombstoned;

--
-- The metadata of a tombstoned stream (0.6.0): a tombstone takes the
-- settings with it.  get_stream_metadata reads NULLs, as for a stream
-- without settings; stream_info tells the two apart (state tombstoned) and
-- set_stream_metadata still refuses the stream (ST002).  A soft delete
-- keeps the settings: they hold for the recreated stream.
--
SELECT stream_version FROM eventstore.append_events('meta-t', n_events(1, 3), 0);
SELECT stream_version FROM eventstore.append_events('meta-d', n_events(1, 3), 0);
SELECT (eventstore.set_stream_metadata(s, interval '1 day', 10, 2)).state
  FROM unnest(ARRAY['meta-t', 'meta-d']) s;
SELECT eventstore.tombstone_stream('meta-t', 3) AS tombstoned,
       eventstore.delete_stream('meta-d', 3) AS deleted;
SELECT s AS stream, m.*
  FROM unnest(ARRAY['meta-t', 'meta-d']) s, LATERAL eventstore.get_stream_metadata(s) m;
SELECT i.stream_id, i.state, i.max_age, i.max_count, i.truncate_before,
       i.tombstoned_at IS NOT NULL AS tombstoned
  FROM unnest(ARRAY['meta-t', 'meta-d']) s, LATERAL eventstore.stream_info(s) i;
SELECT try('SELECT eventstore.set_stream_metadata(''meta-t'', max_count => 1)::text') AS set_stream_metadata;
SELECT * FROM eventstore.get_stream_metadata('meta-t');

--
-- Clean up.
--
REVOKE ALL ON SCHEMA eventstore FROM regress_es_lifecycle;
REVOKE ALL ON FUNCTION eventstore.stream_info(text) FROM regress_es_lifecycle;
DROP ROLE regress_es_lifecycle;
DROP TABLE arc_original;
DROP FUNCTION err_text(text, text, text), try(text), probe(text), vers(text, bigint, bigint, boolean),
              all_vers(text, bigint, text[]), all_vers_unfiltered(text), sum_n(bigint, eventstore.event),
              count_events(bigint, eventstore.event), wait_until(text), n_events(integer, integer),
              evs(text, text[]), ae_sql(text, bigint, text[]), a1_sql(text, bigint, text), ae(text, bigint, text[]),
              ae_probe(text, bigint, text[]), a1(text, bigint, text), a1_probe(text, bigint, text), ks(text),
              last_drawn(), reads(text), arc_diff(text);
DROP EXTENSION eventstore;
