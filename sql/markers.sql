--
-- Lifecycle markers (0.7.0): deleting, tombstoning and setting the metadata
-- of stream S append a system event about it to the marker stream '$$S',
-- in the same transaction, through the append path -- so followers of the
-- global log (read_all, subscriptions, inline and async projections, a
-- rebuild) learn of them in order.  Marker streams and event types
-- beginning with '$' are the extension's own: callers get 42939 and
-- nothing is written.
--
CREATE EXTENSION eventstore;

-- try(q): q's single result as text, or its SQLSTATE and message.
CREATE FUNCTION try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
BEGIN
    EXECUTE q INTO r;
    RETURN coalesce(r, '<null>');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ' ' || msg;
END $$;
-- What writers changed: every append draws a position, every change of a
-- stream's settings or state counts in its settings_version (the worker's
-- removals change neither).
CREATE FUNCTION stored() RETURNS text LANGUAGE sql AS $$
    SELECT 'last drawn ' || (SELECT last_value FROM eventstore.global_position_seq) ||
           ', stream changes ' || count(*) || '/' || coalesce(sum(settings_version), 0)
      FROM eventstore.streams
$$;
-- The log as followers see it, after a position: "stream/version type data".
CREATE FUNCTION log_after(p bigint, types text[] DEFAULT NULL, prefix text DEFAULT NULL)
RETURNS SETOF text LANGUAGE sql AS $$
    SELECT t.stream_id || '/' || t.stream_version || ' ' || t.event_type ||
           CASE WHEN t.event_type LIKE '$%' THEN ' ' || t.data::text ELSE '' END
      FROM eventstore.read_all(p, NULL, types, prefix) t ORDER BY t.global_position
$$;

-- ---------------------------------------------------------------------
-- Each change leaves one marker, after the events it is about
-- ---------------------------------------------------------------------
SELECT stream_version FROM eventstore.append_events('m-1',
    '[{"type": "Placed", "data": {}}, {"type": "Paid", "data": {}}]');
SELECT stream_version FROM eventstore.append('m-2', 'Placed', '{}');
-- max_age is spelt in ISO 8601 whatever the session's style
SET IntervalStyle = 'sql_standard';
SELECT (eventstore.set_stream_metadata('m-1', max_age => '1 day 2 hours', max_count => 5)).state;
RESET IntervalStyle;
SELECT eventstore.delete_stream('m-1');
SELECT eventstore.tombstone_stream('m-2');
-- the events of m-1 and m-2 read as gone; their markers stay, in order
SELECT * FROM log_after(0);
-- the marker stream reads like any stream, with its own versions
SELECT stream_id, stream_version, event_type, metadata IS NULL AS no_metadata
  FROM eventstore.read_stream('$$m-1');
SELECT eventstore.stream_version('$$m-1') AS marker_version,
       eventstore.stream_version('m-1') AS deleted_version,
       (eventstore.stream_info('$$m-1')).state AS marker_stream_state;
-- every marker is a new event with a generated id
SELECT count(DISTINCT event_id) = count(*) AS distinct_ids
  FROM eventstore.events WHERE stream_id LIKE '$$%';

-- Recreating m-1: its new events come after the marker.
SELECT stream_version FROM eventstore.append('m-1', 'Placed', '{}', expected_version => 0);
SELECT * FROM log_after(0, prefix => 'm-1');

-- Deleting an absent stream changes nothing and leaves no marker; a
-- conflicting delete neither.
SELECT stored() AS before \gset
SELECT eventstore.delete_stream('m-none') AS deleted;
SELECT try($q$SELECT eventstore.delete_stream('m-1', expected_version => 7)$q$) AS conflict;
SELECT try($q$SELECT eventstore.tombstone_stream('m-2')$q$) AS tombstoned_again;
SELECT stored() = :'before' AS nothing_written;

-- A delete rolled back takes its marker with it.
BEGIN;
SELECT eventstore.delete_stream('m-1');
SELECT count(*) AS marker_seen_in_transaction FROM eventstore.read_stream('$$m-1') WHERE event_type = '$deleted';
ROLLBACK;
SELECT count(*) AS markers_after_rollback FROM eventstore.read_stream('$$m-1');

-- ---------------------------------------------------------------------
-- Filters: a stream prefix matches the markers of the streams it begins,
-- '$$' all markers; event types pick markers by type
-- ---------------------------------------------------------------------
SELECT * FROM log_after(0, prefix => 'm-2');
SELECT * FROM log_after(0, prefix => '$$');
SELECT * FROM log_after(0, prefix => '$$m-2');
SELECT * FROM log_after(0, prefix => 'x-');
SELECT * FROM log_after(0, types => ARRAY['$tombstoned', 'Paid']);
SELECT * FROM log_after(0, types => ARRAY['Placed'], prefix => 'm-');
-- the rule, as SQL sees it (subscription_status counts with it)
SELECT s, p, eventstore._event_matches(s, 'T', NULL, p) AS matches
  FROM (VALUES ('$$m-1', 'm-'), ('$$m-1', '$$'), ('$$m-1', '$$m'), ('$$m-1', 'm-2'),
               ('m-1', '$$'), ('$m-1', 'm-'), ('$$', ''), ('$$', NULL)) v(s, p);
SELECT eventstore._event_matches('a', 'T', ARRAY['T', NULL], NULL) AS listed,
       eventstore._event_matches('a', 'T', ARRAY[NULL]::text[], NULL) AS only_null,
       eventstore._event_matches('a', 'T', '{}', NULL) AS empty_list,
       eventstore._event_matches(NULL, 'T', NULL, NULL) AS null_stream;
SELECT try($q$SELECT eventstore._event_matches('a', 'T', '{{T}}', NULL)$q$) AS two_dimensions;

-- ---------------------------------------------------------------------
-- Reserved: only the extension writes marker streams and '$' types
-- ---------------------------------------------------------------------
SELECT stored() AS before \gset
CREATE FUNCTION decide_reserved(c jsonb, s bigint) RETURNS jsonb LANGUAGE sql AS $$
    SELECT '[{"type": "$deleted", "data": {"stream_id": "m-3"}}]'::jsonb $$;
CREATE FUNCTION count_evolve(s bigint, e eventstore.event) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT s + 1 $$;
SELECT q, try(q) AS result FROM (VALUES
    ($q$SELECT eventstore.append('$$m-3', 'Placed', '{}')$q$),
    ($q$SELECT eventstore.append('$$', 'Placed', '{}')$q$),
    ($q$SELECT eventstore.append_events('$$m-3', '[{"type": "Placed", "data": {}}]')$q$),
    ($q$SELECT eventstore.append_events('$$m-3', '[]')$q$),
    ($q$SELECT eventstore.append('m-3', '$deleted', '{"stream_id": "m-4"}')$q$),
    ($q$SELECT eventstore.append('m-3', '$', '{}')$q$),
    ($q$SELECT eventstore.append_events('m-3', '[{"type": "Placed", "data": {}}, {"type": "$metadata", "data": {}}]')$q$),
    ($q$SELECT eventstore.handle_command('m-3', 'decide_reserved(jsonb, bigint)', '{}', 'count_evolve(bigint, eventstore.event)', 0::bigint)$q$),
    ($q$SELECT eventstore.handle_command('$$m-1', 'decide_reserved(jsonb, bigint)', '{}', 'count_evolve(bigint, eventstore.event)', 0::bigint)$q$),
    ($q$SELECT eventstore.delete_stream('$$m-1')$q$),
    ($q$SELECT eventstore.tombstone_stream('$$m-1')$q$),
    ($q$SELECT eventstore.set_stream_metadata('$$m-1', max_count => 1)$q$),
    ($q$SELECT eventstore.archive_stream('$$m-1')$q$),
    ($q$SELECT eventstore.restore_stream('$$m-1')$q$)) v(q);
SELECT stored() = :'before' AS nothing_written;
-- reading them is fine; '$' alone and '$x' are ordinary ids
SELECT stream_version FROM eventstore.append('$m-3', 'Placed', '{}');
SELECT count(*) AS markers_of_m_1 FROM eventstore.read_stream('$$m-1', backward => true);
-- a marker stream's id is the reserved prefix and a stream id of up to the
-- limit; one more byte is too long
SELECT eventstore.delete_stream(repeat('x', 1024)) AS deleted_longest;
SELECT stream_version, length(stream_id) FROM eventstore.read_stream('$$' || repeat('x', 1024));
SELECT try($q$SELECT eventstore.read_stream('$$' || repeat('x', 1025))$q$) AS too_long;
-- the internal function refuses what is not a marker
SELECT try($q$SELECT eventstore._append_marker('m-3', 'Placed', '{}')$q$) AS not_a_marker_type,
       try($q$SELECT eventstore._append_marker('$$m-3', '$deleted', '{}')$q$) AS marker_of_a_marker,
       try($q$SELECT eventstore._append_marker('m-3', '$deleted', NULL)$q$) AS null_data;

-- ---------------------------------------------------------------------
-- Projections: inline handlers see the marker in the deleting
-- transaction; async ones and a rebuild replay it from the log.  The
-- lifecycle functions run as the extension's owner: a marker's inline
-- handlers run as their projection's owner, under the search_path it
-- recorded, as the worker runs async ones -- never with the rights of the
-- extension's owner.
-- ---------------------------------------------------------------------
CREATE ROLE regress_es_marker_owner;
GRANT USAGE, CREATE ON SCHEMA public TO regress_es_marker_owner;
GRANT USAGE ON SCHEMA eventstore TO regress_es_marker_owner;
GRANT EXECUTE ON FUNCTION eventstore.create_projection(text, regprocedure, text[], text, text, boolean, integer)
   TO regress_es_marker_owner;
SET ROLE regress_es_marker_owner;
CREATE TABLE orders (stream_id text PRIMARY KEY, events int NOT NULL);
CREATE TABLE handled (event_type text, as_role name, path text);
-- unqualified names: they resolve only under the recorded search_path
CREATE FUNCTION project_orders(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO handled VALUES (e.event_type, current_user, current_setting('search_path'));
    IF e.event_type IN ('$deleted', '$tombstoned') THEN
        IF e.data->>'stream_id' = 'p-veto' THEN
            RAISE EXCEPTION 'p-veto may not go';
        END IF;
        DELETE FROM orders WHERE stream_id = e.data->>'stream_id';
    ELSE
        INSERT INTO orders VALUES (e.stream_id, 1)
        ON CONFLICT (stream_id) DO UPDATE SET events = orders.events + 1;
    END IF;
END $$;
SELECT eventstore.create_projection('orders', 'project_orders(eventstore.event)',
                                    event_types => ARRAY['Placed', '$deleted', '$tombstoned'],
                                    stream_prefix => 'p-');
RESET ROLE;
-- (the worker replays the log to a new projection before appends call it)
SELECT eventstore.wait_for_projection('orders');
SELECT stream_version FROM eventstore.append('p-1', 'Placed', '{}');
SELECT stream_version FROM eventstore.append('p-2', 'Placed', '{}');
SELECT stream_version FROM eventstore.append('p-veto', 'Placed', '{}');
BEGIN;
SET LOCAL search_path = pg_catalog;
SELECT eventstore.delete_stream('p-1');
SELECT * FROM public.orders ORDER BY 1;
COMMIT;
SELECT event_type, as_role, path FROM handled WHERE event_type LIKE '$%';
-- a failing handler rolls the delete back, marker and all
SELECT try($q$SELECT eventstore.tombstone_stream('p-veto')$q$) AS vetoed;
SELECT (eventstore.stream_info('p-veto')).state, count(*) AS markers
  FROM eventstore.read_stream('$$p-veto');
-- a handler its owner may no longer execute is refused, not run as the
-- extension's owner
REVOKE EXECUTE ON FUNCTION project_orders(eventstore.event) FROM PUBLIC, regress_es_marker_owner;
SELECT try($q$SELECT eventstore.delete_stream('p-veto')$q$) AS not_executable;
GRANT EXECUTE ON FUNCTION project_orders(eventstore.event) TO regress_es_marker_owner;
-- an async projection of the same log ends in the same read model, and so
-- does a rebuild (the deleted stream's events are hidden or gone from the
-- log by then; its marker replays)
CREATE TABLE orders_async (LIKE orders INCLUDING ALL);
CREATE FUNCTION project_orders_async(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.event_type IN ('$deleted', '$tombstoned') THEN
        DELETE FROM orders_async WHERE stream_id = e.data->>'stream_id';
    ELSE
        INSERT INTO orders_async VALUES (e.stream_id, 1)
        ON CONFLICT (stream_id) DO UPDATE SET events = orders_async.events + 1;
    END IF;
END $$;
SELECT eventstore.create_projection('orders_async', 'project_orders_async(eventstore.event)',
                                    event_types => ARRAY['Placed', '$deleted', '$tombstoned'],
                                    stream_prefix => 'p-', mode => 'async');
SELECT eventstore.wait_for_projection('orders_async');
SELECT stream_version FROM eventstore.append('p-2', 'Placed', '{}');
SELECT eventstore.tombstone_stream('p-2');
SELECT eventstore.wait_for_projection('orders_async');
SELECT * FROM orders ORDER BY 1;
SELECT (SELECT array_agg(o ORDER BY o) FROM orders o)::text =
       (SELECT array_agg(o ORDER BY o) FROM orders_async o)::text AS async_same;
TRUNCATE orders, handled;
SELECT eventstore.rebuild_projection('orders');
SELECT eventstore.wait_for_projection('orders');
SELECT * FROM orders ORDER BY 1;
SELECT string_agg(event_type, ' ' ORDER BY event_type) AS replayed,
       bool_and(as_role = 'regress_es_marker_owner') AS as_owner
  FROM handled;

-- ---------------------------------------------------------------------
-- Subscriptions deliver markers like events, and count them in their lag
-- ---------------------------------------------------------------------
SELECT eventstore.create_subscription('s-orders', stream_prefix => 's-');
SELECT stream_version FROM eventstore.append('s-1', 'Placed', '{}');
CREATE FUNCTION fetch_ack(sub text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM eventstore.subscription_fetch(sub, 'c1', 10) LOOP
        RETURN NEXT r.stream_id || '/' || r.stream_version || ' ' || r.event_type;
        PERFORM eventstore.subscription_ack(sub, 'c1', ARRAY[r.global_position]);
    END LOOP;
END $$;
SELECT * FROM fetch_ack('s-orders');
SELECT eventstore.delete_stream('s-1');
SELECT lag_events FROM eventstore.subscription_status WHERE name = 's-orders';
SELECT * FROM fetch_ack('s-orders');
SELECT lag_events FROM eventstore.subscription_status WHERE name = 's-orders';

-- ---------------------------------------------------------------------
-- Retention and archiving leave markers alone
-- ---------------------------------------------------------------------
-- (the worker removes the events of deleted streams; markers stay)
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
SELECT wait_until($q$SELECT NOT EXISTS (SELECT FROM eventstore.events WHERE stream_id IN ('m-2', 'p-2'))$q$) AS removed;
SELECT stream_id, count(*) AS stored FROM eventstore.events WHERE stream_id IN ('$$m-2', '$$p-2')
 GROUP BY 1 ORDER BY 1;
-- archiving by inactivity passes over marker streams
SELECT pg_sleep(0.01);
SELECT eventstore.archive_streams('1 microsecond') > 0 AS archived_some;
SELECT count(*) AS marker_streams_archived FROM eventstore.archived_events WHERE stream_id LIKE '$$%';
SELECT count(*) AS markers_in_log FROM eventstore.read_all(0, NULL, stream_prefix => '$$');
SELECT eventstore.create_archive_policy('everything', '1 microsecond');
SELECT wait_until($q$SELECT NOT EXISTS (SELECT FROM eventstore.archive_candidates)
                    AND (SELECT last_run_at IS NOT NULL FROM eventstore.archive_policies)$q$) AS policy_ran;
SELECT count(*) AS marker_streams_archived FROM eventstore.archived_events WHERE stream_id LIKE '$$%';

-- ---------------------------------------------------------------------
-- Privileges: the internal functions are the owner's
-- ---------------------------------------------------------------------
CREATE ROLE regress_es_marker_writer;
GRANT USAGE ON SCHEMA eventstore TO regress_es_marker_writer;
GRANT EXECUTE ON FUNCTION eventstore.append(text, text, jsonb, jsonb, bigint, uuid) TO regress_es_marker_writer;
SET ROLE regress_es_marker_writer;
SELECT try($q$SELECT eventstore._append_marker('m-3', '$deleted', '{"stream_id": "m-3"}')$q$) AS forge_marker;
SELECT try($q$SELECT eventstore.append('m-3', '$deleted', '{"stream_id": "m-1"}')$q$) AS forge_type;
SELECT try($q$SELECT eventstore._iso_interval('1 day')$q$) AS internal;
SELECT eventstore._event_matches('$$m-1', '$deleted', NULL, 'm-') AS public_rule;
RESET ROLE;
DROP OWNED BY regress_es_marker_writer;
DROP ROLE regress_es_marker_writer;

SELECT eventstore.drop_projection('orders');
SELECT eventstore.drop_projection('orders_async');
DROP OWNED BY regress_es_marker_owner;
DROP ROLE regress_es_marker_owner;
DROP FUNCTION count_evolve(bigint, eventstore.event), project_orders_async(eventstore.event);
DROP EXTENSION eventstore;
