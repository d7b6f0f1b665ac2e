--
-- Exactly once per event id (0.6.0): an append whose ids are stored is a
-- retry, recognised whatever happened to the stream since and whatever the
-- expected version; a partial or reordered retry is a version conflict
-- (ST001); an id stored in another stream is 23505; an id twice in one
-- batch is 22023.
--
CREATE EXTENSION eventstore;

-- try(q): q's single result as text, or its SQLSTATE and message (and the
-- essentials of a conflict's DETAIL).
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
    RETURN st || ': ' || msg || coalesce(' / ' || det, '');
END $$;
-- ae(stream, expected, ids...): append_events of one event per id, the id
-- being the uuid whose last hex digits are the given number ('-' for an
-- event without id, shown as '-' by ids()); the result as (stream_version, global_position).
CREATE FUNCTION ae(s text, x bigint, VARIADIC ids text[]) RETURNS text LANGUAGE sql AS $$
    SELECT (r.stream_version, r.global_position)::text
      FROM eventstore.append_events(s,
             (SELECT jsonb_agg(CASE WHEN i = '-' THEN jsonb_build_object('type', 'T', 'data', i)
                               ELSE jsonb_build_object('type', 'T', 'data', i,
                                      'id', '00000000-0000-0000-0000-' || lpad(i, 12, '0')) END
                               ORDER BY o)
                FROM unnest(ids) WITH ORDINALITY AS u(i, o)),
             x) r
$$;
CREATE FUNCTION ids(s text) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(CASE WHEN event_id::text LIKE '00000000-0000-0000-0000-%'
                           THEN ltrim(right(event_id::text, 12), '0') ELSE '-' END
                      || '@' || stream_version,
                      ' ' ORDER BY stream_version)
      FROM eventstore.events WHERE stream_id = s
$$;

-- A retry after another append, with NULL, -1, the version it was made
-- with, and even the stream's current version: the original result, and
-- nothing written.
SELECT ae('r', NULL, '1', '2') AS first_call \gset
SELECT ae('r', NULL, '-') AS other_append;
SELECT x AS expected, try(format('SELECT ae(%L, %s, %L, %L)', 'r', coalesce(x::text, 'NULL'), '1', '2'))
         = :'first_call' AS same_result
  FROM unnest(ARRAY[NULL, -1, 0, 3]::bigint[]) WITH ORDINALITY AS u(x, o) ORDER BY o;
SELECT ids('r');
-- a run of the stored events is a retry of their part, too
SELECT try($$SELECT ae('r', 7, '2')$$) AS second_alone;
SELECT ids('r');

-- append(): a retry of one event with event_id, after another append.
SELECT (stream_version, global_position)::text AS single_call
  FROM eventstore.append('one', 'T', '1', NULL, NULL, '00000000-0000-0000-0000-0000000000aa') \gset
SELECT ae('one', 1, '-') AS other_append;
SELECT x AS expected, (a.stream_version, a.global_position)::text = :'single_call' AS same_result
  FROM unnest(ARRAY[NULL, -1, 0, 2]::bigint[]) WITH ORDINALITY AS u(x, o),
       LATERAL eventstore.append('one', 'T', '1', NULL, x, '00000000-0000-0000-0000-0000000000aa') a
 ORDER BY o;
SELECT ids('one');

-- After a soft delete: still the retry of the events deleted, as long as
-- they are stored (in one transaction here, so that the worker cannot
-- remove them in between: removed events take their ids with them).
SELECT ae('d', 0, '11', '12') AS first_call \gset
BEGIN;
SELECT eventstore.delete_stream('d', 2) AS deleted;
SELECT x AS expected, try(format('SELECT ae(%L, %s, %L, %L)', 'd', coalesce(x::text, 'NULL'), '11', '12'))
         = :'first_call' AS same_result
  FROM unnest(ARRAY[NULL, -1]::bigint[]) WITH ORDINALITY AS u(x, o) ORDER BY o;
SELECT count(*) AS stored_11 FROM eventstore.events
 WHERE event_id = '00000000-0000-0000-0000-000000000011';
SELECT try($$SELECT ae('other', NULL, '5', '12')$$) AS deleted_elsewhere;
COMMIT;

-- A partial or reordered retry, or stored ids next to an event without id:
-- ST001 (before 0.6.0: ST004), whatever the expected version.
SELECT try($$SELECT ae('r', NULL, '1', '2', '9')$$) AS more;
SELECT try($$SELECT ae('r', -1, '9', '1')$$) AS new_first;
SELECT try($$SELECT ae('r', 0, '2', '1')$$) AS reordered;
SELECT try($$SELECT ae('r', NULL, '1', '-')$$) AS without_id;
SELECT try($$SELECT ae('r', 3, '1', '2', '-')$$) AS version_holds;
SELECT ids('r');
-- clients that catch the version conflict catch it
DO $$
BEGIN
    PERFORM ae('r', NULL, '1', '9');
    RAISE EXCEPTION 'not reached';
EXCEPTION WHEN SQLSTATE 'ST001' THEN
    RAISE NOTICE 'caught ST001';
END $$;

-- An id stored in another stream: 23505, naming that stream (above: also a
-- deleted one); also when the other append is earlier in this transaction.
SELECT try($$SELECT ae('other', NULL, '1')$$) AS other_stream;
BEGIN;
SELECT ae('t1', NULL, '21') LIKE '(1,%' AS t1_appended;
SELECT try($$SELECT ae('t2', NULL, '21')$$) AS same_transaction;
ROLLBACK;
SELECT ids('other') AS other, ids('t1') AS t1;

-- One id twice in a batch: 22023, before anything is written.
SELECT try($$SELECT ae('twice', NULL, '31', '32', '31')$$) AS twice;
SELECT try($$SELECT ae('r', NULL, '1', '1')$$) AS twice_stored;
SELECT ids('twice');

-- An archived stream's events are out of eventstore.events, but its ids
-- stay taken (eventstore.event_ids keeps them for good): its retries are
-- refused (ST003), another stream cannot take one of its ids (23505), and
-- restoring it cannot fail on its ids; then its retries are recognised.
SELECT eventstore.archive_stream('one') AS archived;
SELECT split_part(try($$SELECT eventstore.append('one', 'T', '1', NULL, NULL, '00000000-0000-0000-0000-0000000000aa')::text$$), ':', 1) AS archived_retry;
SELECT try($$SELECT eventstore.append('taker', 'T', '1', NULL, NULL, '00000000-0000-0000-0000-0000000000aa')::text$$) AS taken;
SELECT try($$SELECT eventstore.restore_stream('one')::text$$) AS restore;
SELECT try($$SELECT eventstore.append('one', 'T', '1', NULL, NULL, '00000000-0000-0000-0000-0000000000aa')::text$$) LIKE '(1,%' AS retry_after_restore;
SELECT ids('one') AS one, ids('taker') AS taker;

-- No id is stored twice anywhere; eventstore.event_ids holds exactly the
-- ids callers gave, each with its event (generated ids are not stored).
SELECT event_id, count(*) FROM eventstore.events GROUP BY event_id HAVING count(*) > 1;
SELECT count(*) AS id_rows,
       count(*) FILTER (WHERE e.stream_id <> i.stream_id OR e.stream_version <> i.stream_version) AS wrong_event
  FROM eventstore.event_ids i LEFT JOIN eventstore.events e USING (event_id, global_position);
SELECT count(*) > 0 AS generated_not_stored
  FROM eventstore.events e
 WHERE NOT EXISTS (SELECT FROM eventstore.event_ids i WHERE i.event_id = e.event_id);
SELECT has_table_privilege('public', 'eventstore.event_ids', 'SELECT') AS public_reads,
       has_table_privilege('public', 'eventstore.event_ids', 'INSERT') AS public_writes;

DROP FUNCTION try(text), ae(text, bigint, text[]), ids(text);
DROP EXTENSION eventstore;
