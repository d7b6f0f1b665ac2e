--
-- State from events: aggregate_stream and load_state (up to a version, as
-- of a time), snapshots and their tags, the fold() aggregate,
-- handle_command, snapshot policies run by the background worker.
--
-- Nothing here prints a timestamp or a tag: the output is the same on
-- every run.
--
CREATE EXTENSION eventstore;

--
-- Three folds of the same events, each sensitive to the order of events so
-- that a skipped, repeated or reordered event changes the state:
--   jsonb     counts per type, a running sum and a hash chain
--   bigint    a polynomial hash of the amounts (modulo a prime)
--   acct      a composite type, so that snapshots go through record_out and
--             record_in: text with quotes, commas, parentheses, backslashes,
--             braces, newlines, the word NULL and real NULLs, an array and a
--             float (which must come back bit for bit)
--
CREATE TYPE acct AS (balance numeric, n integer, last_type text, note text,
                     notes text[], ratio float8);

CREATE FUNCTION evolve_json(s jsonb, e eventstore.event) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN jsonb_build_object(
        'n', (s->>'n')::int + 1,
        'sum', (s->>'sum')::numeric + coalesce((e.data->>'amount')::numeric, 0),
        'types', s->'types' || jsonb_build_object(e.event_type,
                                                  coalesce((s->'types'->>e.event_type)::int, 0) + 1),
        'h', md5((s->>'h') || e.event_type || e.data::text),
        'v', e.stream_version);
END $$;
CREATE FUNCTION evolve_int(s bigint, e eventstore.event) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RETURN (s * 31 + round(coalesce((e.data->>'amount')::numeric, 0.07) * 100)::bigint + 1000000) % 1000003;
END $$;
CREATE FUNCTION evolve_acct(s acct, e eventstore.event) RETURNS acct LANGUAGE plpgsql AS $$
BEGIN
    s.n := s.n + 1;
    s.last_type := e.event_type;
    CASE e.event_type
        WHEN 'Deposited' THEN
            s.balance := s.balance + (e.data->>'amount')::numeric;
        WHEN 'Withdrawn' THEN
            s.balance := s.balance - (e.data->>'amount')::numeric;
        WHEN 'Noted' THEN
            s.note := e.data->>'note';
            s.notes := s.notes || (e.data->>'note');
        ELSE
            s.ratio := s.ratio * 1.1 + 1.0 / s.n;
    END CASE;
    RETURN s;
END $$;

\set init_json '''{"n": 0, "sum": 0, "types": {}, "h": ""}''::jsonb'
\set init_int '0::bigint'
\set init_acct 'ROW(0, 0, NULL, NULL, ''{}'', 1.0)::acct'

-- A quick look at each fold on a small stream.
SELECT stream_version FROM eventstore.append_events('look',
    '[{"type": "Deposited", "data": {"amount": 10.5}},
      {"type": "Noted", "data": {"note": "a \"quoted\", (odd) \\ note"}},
      {"type": "Withdrawn", "data": {"amount": 3}},
      {"type": "Noted", "data": {"note": null}},
      {"type": "Renamed", "data": {}}]');
SELECT eventstore.aggregate_stream('look', 'evolve_json(jsonb, eventstore.event)', :init_json) - 'h' AS json_state;
SELECT eventstore.aggregate_stream('look', 'evolve_int(bigint, eventstore.event)', :init_int) AS int_state;
SELECT (eventstore.aggregate_stream('look', 'evolve_acct(acct, eventstore.event)', :init_acct)).*;
SELECT * FROM eventstore.load_state('look', 'evolve_int(bigint, eventstore.event)', :init_int);
-- the fold aggregate over the same events; over no rows it is NULL
SELECT eventstore.fold(e, 'evolve_int(bigint, eventstore.event)', :init_int ORDER BY stream_version) AS fold
  FROM eventstore.read_stream('look') e;
SELECT eventstore.fold(e, 'evolve_int(bigint, eventstore.event)', :init_int ORDER BY stream_version) IS NULL AS fold_of_nothing_is_null
  FROM eventstore.read_stream('no-such-stream') e;
-- an unknown stream is the initial state at version 0
SELECT * FROM eventstore.load_state('no-such-stream', 'evolve_int(bigint, eventstore.event)', :init_int);
-- a NULL initial state is passed to a non-strict evolve as it is
CREATE FUNCTION evolve_count(s integer, e eventstore.event) RETURNS integer LANGUAGE sql AS
    'SELECT coalesce(s, 100) + 1';
SELECT eventstore.aggregate_stream('look', 'evolve_count(integer, eventstore.event)', NULL::integer);
-- ... and a strict one keeps a NULL state NULL
CREATE FUNCTION evolve_strict(s integer, e eventstore.event) RETURNS integer LANGUAGE sql STRICT AS
    'SELECT s + 1';
SELECT * FROM eventstore.load_state('look', 'evolve_strict(integer, eventstore.event)', NULL::integer);
SELECT * FROM eventstore.load_state('look', 'evolve_strict(integer, eventstore.event)', 0);

--
-- Property: for random streams (lengths 0 to 300, random types, amounts
-- and notes) with snapshots at random versions under the default tag and
-- under another tag, and decoy snapshots under a third tag, the state at a
-- target version is the same
--   * from aggregate_stream with snapshots (default tag),
--   * from aggregate_stream without snapshots,
--   * from aggregate_stream with the other tag's snapshots,
--   * from the fold aggregate over read_stream(s, 1, target),
--   * from load_state, which also reports the version reached
--     (least(target, length)) and the snapshot it started from (the
--     newest taken at or below the target, with the tag asked for).
-- Targets: every version (and one past the end) for five streams (of 8 to
-- 126 events), 8 random versions (some past the end) for the others.
--
CREATE TABLE prop_streams (seed integer PRIMARY KEY, stream_id text NOT NULL, len integer NOT NULL);
CREATE TABLE prop_snaps (stream_id text, fold text, tag text, version bigint);
CREATE TABLE prop_targets (stream_id text, target bigint);
CREATE TABLE prop_results (stream_id text, fold text, target bigint, from_snapshot boolean, problem text);

DO $$
DECLARE
    notes text[] := ARRAY['plain', '', ' padded ', 'quote"inside', 'comma,inside', '(parens)',
                          'back\slash', 'NULL', '{braces}', E'two\nlines', 'x''y', NULL];
    types text[] := ARRAY['Deposited', 'Deposited', 'Withdrawn', 'Noted', 'Renamed'];
    folds text[] := ARRAY['json', 'int', 'acct'];
    sid text;
    tag text;
    n integer;
    k integer;
    v bigint;
    t text;
    evs jsonb;
BEGIN
    FOR seed IN 1..40 LOOP
        PERFORM setseed(seed / 64.0);
        sid := 'prop-' || seed;
        n := CASE seed WHEN 1 THEN 0 WHEN 2 THEN 1 ELSE floor(random() * 301)::int END;
        INSERT INTO prop_streams VALUES (seed, sid, n);
        evs := '[]';
        FOR i IN 1..n LOOP
            t := types[1 + floor(random() * 5)::int];
            evs := evs || jsonb_build_array(jsonb_build_object(
                'type', t,
                'data', CASE t
                    WHEN 'Noted' THEN jsonb_build_object('note', notes[1 + floor(random() * 12)::int])
                    WHEN 'Renamed' THEN jsonb_build_object('name', md5(random()::text))
                    ELSE jsonb_build_object('amount', round((random() * 150 - 50)::numeric, 2)) END));
        END LOOP;
        IF n > 0 THEN
            PERFORM eventstore.append_events(sid, evs, 0);
        END IF;

        -- 0 to 3 snapshots per fold and tag; take_snapshot reports the
        -- version it stored (or found already stored)
        FOREACH t IN ARRAY ARRAY['default', 'alt'] LOOP
            FOR j IN 1..floor(random() * 4)::int LOOP
                v := 1 + floor(random() * (n + 3))::int;   -- may lie past the end
                k := 1 + floor(random() * 3)::int;
                tag := CASE t WHEN 'alt' THEN 'alt-' || folds[k] END;   -- NULL: the default
                CASE folds[k]
                    WHEN 'json' THEN
                        v := eventstore.take_snapshot(sid, 'evolve_json(jsonb, eventstore.event)',
                                                      '{"n": 0, "sum": 0, "types": {}, "h": ""}'::jsonb, v, tag);
                    WHEN 'int' THEN
                        v := eventstore.take_snapshot(sid, 'evolve_int(bigint, eventstore.event)', 0::bigint, v, tag);
                    ELSE
                        v := eventstore.take_snapshot(sid, 'evolve_acct(acct, eventstore.event)',
                                                      ROW(0, 0, NULL, NULL, '{}', 1.0)::acct, v, tag);
                END CASE;
                IF v > 0 THEN
                    INSERT INTO prop_snaps VALUES (sid, folds[k], t, v);
                END IF;
            END LOOP;
        END LOOP;
        -- decoys: wrong states under a tag nobody loads with
        IF n > 0 THEN
            INSERT INTO eventstore.snapshots (stream_id, tag, stream_version, state_type, state, last_event_at)
            SELECT sid, 'decoy', 1 + floor(random() * n)::int, ty, st, '-infinity'
              FROM (VALUES ('jsonb'::regtype, '{"n": -1}'), ('bigint', '-1'), ('acct', '(-1,-1,,,{},-1)')) d(ty, st)
            ON CONFLICT DO NOTHING;
        END IF;

        IF seed IN (5, 15, 29, 35, 36) THEN
            INSERT INTO prop_targets SELECT sid, g FROM generate_series(0, n + 1) g;
        ELSE
            INSERT INTO prop_targets
            SELECT sid, floor(random() * (n + 3))::int FROM generate_series(1, 8);
        END IF;
    END LOOP;
END $$;

-- Compares every way of getting the state at one target; problem is NULL
-- when they all agree, else says what differs.
CREATE FUNCTION check_target(p_stream text, p_fold text, p_evolve regprocedure, p_init anyelement,
                             p_target bigint, OUT from_snapshot boolean, OUT problem text)
LANGUAGE sql AS $$
    SELECT x.snap > 0,
           CASE
           WHEN x.with_snaps IS DISTINCT FROM x.without THEN
               format('with snapshots %s, without %s', x.with_snaps, x.without)
           WHEN x.folded IS DISTINCT FROM x.without THEN
               format('fold() %s, aggregate_stream %s', x.folded, x.without)
           WHEN l.state IS DISTINCT FROM x.without OR la.state IS DISTINCT FROM x.without THEN
               format('load_state %s / with its tag %s, aggregate_stream %s', l.state, la.state, x.without)
           WHEN l.version <> least(p_target, x.len) OR la.version <> least(p_target, x.len) THEN
               format('load_state reached %s / %s, expected %s', l.version, la.version, least(p_target, x.len))
           WHEN l.snapshot_version <> x.snap OR la.snapshot_version <> x.snap_alt THEN
               format('load_state started at %s / %s, newest snapshot %s / %s',
                      l.snapshot_version, la.snapshot_version, x.snap, x.snap_alt)
           END
      FROM (SELECT eventstore.aggregate_stream(p_stream, p_evolve, p_init, p_target) AS with_snaps,
                   eventstore.aggregate_stream(p_stream, p_evolve, p_init, p_target,
                                               use_snapshots => false) AS without,
                   (SELECT coalesce(eventstore.fold(e, p_evolve, p_init ORDER BY e.stream_version), p_init)
                      FROM eventstore.read_stream(p_stream, 1, p_target) e) AS folded,
                   (SELECT s.len FROM prop_streams s WHERE s.stream_id = p_stream) AS len,
                   (SELECT coalesce(max(version), 0) FROM prop_snaps s
                     WHERE s.stream_id = p_stream AND s.fold = p_fold AND s.tag = 'default'
                       AND s.version <= p_target) AS snap,
                   (SELECT coalesce(max(version), 0) FROM prop_snaps s
                     WHERE s.stream_id = p_stream AND s.fold = p_fold AND s.tag = 'alt'
                       AND s.version <= p_target) AS snap_alt) x,
           eventstore.load_state(p_stream, p_evolve, p_init, p_target) l,
           eventstore.load_state(p_stream, p_evolve, p_init, p_target,
                                 snapshot_tag => 'alt-' || p_fold) la
$$;

INSERT INTO prop_results
SELECT t.stream_id, 'json', t.target, c.*
  FROM prop_targets t,
       check_target(t.stream_id, 'json', 'evolve_json(jsonb, eventstore.event)', :init_json, t.target) c;
INSERT INTO prop_results
SELECT t.stream_id, 'int', t.target, c.*
  FROM prop_targets t,
       check_target(t.stream_id, 'int', 'evolve_int(bigint, eventstore.event)', :init_int, t.target) c;
INSERT INTO prop_results
SELECT t.stream_id, 'acct', t.target, c.*
  FROM prop_targets t,
       check_target(t.stream_id, 'acct', 'evolve_acct(acct, eventstore.event)', :init_acct, t.target) c;

SELECT (SELECT count(*) FROM prop_streams) AS streams,
       (SELECT sum(len) FROM prop_streams) AS events,
       (SELECT count(*) FROM prop_snaps) AS snapshots_taken,
       count(*) AS comparisons,
       count(*) FILTER (WHERE from_snapshot) AS from_a_snapshot,
       count(*) FILTER (WHERE problem IS NOT NULL) AS mismatches
  FROM prop_results;
-- the first mismatches, if any
SELECT stream_id, fold, target, left(problem, 200) AS problem FROM prop_results
 WHERE problem IS NOT NULL ORDER BY stream_id, fold, target LIMIT 5;

-- One fold per stream over the global log (the aggregate grouped by
-- stream) equals each stream's full state.
SELECT count(*) AS streams_compared,
       count(*) FILTER (WHERE g.state IS DISTINCT FROM
                        eventstore.aggregate_stream(g.stream_id, 'evolve_acct(acct, eventstore.event)', :init_acct))
           AS mismatches
  FROM (SELECT e.stream_id,
               eventstore.fold(e, 'evolve_acct(acct, eventstore.event)', :init_acct ORDER BY e.stream_version) AS state
          FROM eventstore.read_all(0, 100000, stream_prefix => 'prop-') e
         GROUP BY e.stream_id) g;

--
-- Time travel by version: load_state at every version (and past the end)
-- equals the fold of that prefix; the fold aggregate as a window function
-- gives the same states, row by row.
--
SELECT count(*) AS versions,
       count(*) FILTER (WHERE l.state IS DISTINCT FROM
                        (SELECT eventstore.fold(e, 'evolve_json(jsonb, eventstore.event)', :init_json
                                                ORDER BY e.stream_version)
                           FROM eventstore.read_stream('prop-5', 1, v) e)
                        OR l.version <> v) AS mismatches
  FROM generate_series(1, (SELECT len FROM prop_streams WHERE seed = 5)) v,
       eventstore.load_state('prop-5', 'evolve_json(jsonb, eventstore.event)', :init_json, to_version => v) l;
SELECT count(*) AS versions,
       count(*) FILTER (WHERE w.state IS DISTINCT FROM
                        eventstore.aggregate_stream('prop-7', 'evolve_acct(acct, eventstore.event)', :init_acct,
                                                    to_version => w.stream_version)) AS mismatches
  FROM (SELECT e.stream_version,
               eventstore.fold(e, 'evolve_acct(acct, eventstore.event)', :init_acct)
                   OVER (ORDER BY e.stream_version) AS state
          FROM eventstore.read_stream('prop-7') e) w;
-- past the end: the whole stream, at its last version
SELECT version, state = eventstore.aggregate_stream('prop-7', 'evolve_int(bigint, eventstore.event)', :init_int,
                                                    use_snapshots => false) AS whole_stream
  FROM eventstore.load_state('prop-7', 'evolve_int(bigint, eventstore.event)', :init_int, to_version => 100000);
-- version 0: the initial state, no snapshot
SELECT * FROM eventstore.load_state('prop-7', 'evolve_int(bigint, eventstore.event)', :init_int, to_version => 0);

--
-- Time travel by time: events appended in transactions of their own, 10 ms
-- apart, so their created_at (the appending transaction's start) differ.
-- As of a time, the state is that of the longest prefix of the stream
-- whose events were all created at or before it.  Snapshots are used only
-- when they were folded from events created by then (last_event_at).
--
CREATE PROCEDURE append_slowly(p_stream text, p_count integer)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..p_count LOOP
        PERFORM pg_sleep(0.01);
        PERFORM eventstore.append(p_stream, CASE WHEN i % 3 = 0 THEN 'Noted' ELSE 'Deposited' END,
                                  jsonb_build_object('amount', i, 'note', 'note ' || i));
        COMMIT;
    END LOOP;
END $$;
CALL append_slowly('tt', 12);
SELECT count(DISTINCT created_at) AS distinct_created_at,
       bool_and(created_at > lag) AS increasing
  FROM (SELECT created_at, lag(created_at, 1, '-infinity') OVER (ORDER BY stream_version)
          FROM eventstore.read_stream('tt')) e;
SELECT eventstore.take_snapshot('tt', 'evolve_acct(acct, eventstore.event)', :init_acct, 4),
       eventstore.take_snapshot('tt', 'evolve_acct(acct, eventstore.event)', :init_acct, 9);

-- The times to look at: before everything, at, just before and just after
-- each event, after everything.
CREATE TABLE tt_times AS
SELECT DISTINCT t FROM (
    SELECT '-infinity'::timestamptz AS t
    UNION ALL SELECT 'infinity'
    UNION ALL SELECT created_at FROM eventstore.read_stream('tt')
    UNION ALL SELECT created_at - interval '1 microsecond' FROM eventstore.read_stream('tt')
    UNION ALL SELECT created_at + interval '1 microsecond' FROM eventstore.read_stream('tt')) x;
CREATE FUNCTION tt_expected_version(p_as_of timestamptz) RETURNS bigint LANGUAGE sql AS $$
    SELECT coalesce((SELECT min(stream_version) - 1 FROM eventstore.read_stream('tt') WHERE created_at > p_as_of),
                    eventstore.stream_version('tt'))
$$;
SELECT count(*) AS times,
       count(DISTINCT x.expected) AS distinct_versions,
       count(*) FILTER (WHERE (x.l).version <> x.expected) AS wrong_version,
       count(*) FILTER (WHERE (x.l).state IS DISTINCT FROM x.folded
                           OR x.without IS DISTINCT FROM x.folded) AS wrong_state,
       count(*) FILTER (WHERE (x.l).snapshot_version <> CASE WHEN x.expected >= 9 THEN 9
                                                             WHEN x.expected >= 4 THEN 4 ELSE 0 END)
           AS wrong_snapshot
  FROM (SELECT t.t, tt_expected_version(t.t) AS expected,
               eventstore.load_state('tt', 'evolve_acct(acct, eventstore.event)', :init_acct, as_of => t.t) AS l,
               eventstore.aggregate_stream('tt', 'evolve_acct(acct, eventstore.event)', :init_acct, as_of => t.t,
                                           use_snapshots => false) AS without,
               (SELECT coalesce(eventstore.fold(e, 'evolve_acct(acct, eventstore.event)', :init_acct
                                                ORDER BY e.stream_version), :init_acct)
                  FROM eventstore.read_stream('tt', 1, tt_expected_version(t.t)) e) AS folded
          FROM tt_times t) x;
-- as of the 5th event's time: version 5, from the snapshot at 4
SELECT version, snapshot_version, (state).balance, (state).note
  FROM eventstore.load_state('tt', 'evolve_acct(acct, eventstore.event)', :init_acct,
                             as_of => (SELECT created_at FROM eventstore.read_stream('tt', 5, 1)));
-- both a version and a time: whichever comes first
SELECT (SELECT version FROM eventstore.load_state('tt', 'evolve_acct(acct, eventstore.event)', :init_acct,
                                                  to_version => 3, as_of => 'infinity')) AS version_first,
       (SELECT version FROM eventstore.load_state('tt', 'evolve_acct(acct, eventstore.event)', :init_acct,
                                                  to_version => 11,
                                                  as_of => (SELECT created_at FROM eventstore.read_stream('tt', 7, 1))))
           AS time_first;

--
-- Snapshot tags.  The default tag names the fold: the evolve function
-- (qualified signature and body), the state type and the initial state.
-- Loads use only snapshots with their own tag, so a changed fold never
-- starts from a state the old one folded; an explicit tag is the caller's
-- promise that the folds are the same.
--
CREATE FUNCTION evolve_tag(s numeric, e eventstore.event) RETURNS numeric LANGUAGE plpgsql AS $$
BEGIN
    RETURN s + (e.data->>'amount')::numeric;
END $$;
SELECT stream_version FROM eventstore.append_events('tag-1',
    (SELECT jsonb_agg(jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('amount', g)) ORDER BY g)
       FROM generate_series(1, 8) g));
SELECT eventstore.take_snapshot('tag-1', 'evolve_tag(numeric, eventstore.event)', 0::numeric, 5) AS default_tag,
       eventstore.take_snapshot('tag-1', 'evolve_tag(numeric, eventstore.event)', 0::numeric, 5,
                                snapshot_tag => 'v1') AS tag_v1;
-- again: nothing new is stored
SELECT eventstore.take_snapshot('tag-1', 'evolve_tag(numeric, eventstore.event)', 0::numeric, 5);
SELECT count(*) AS snapshots, count(DISTINCT tag) AS tags, min(state), max(state)
  FROM eventstore.snapshots WHERE stream_id = 'tag-1';
SELECT * FROM eventstore.load_state('tag-1', 'evolve_tag(numeric, eventstore.event)', 0::numeric);
SELECT * FROM eventstore.load_state('tag-1', 'evolve_tag(numeric, eventstore.event)', 0::numeric, use_snapshots => false);
-- the tag does not depend on the search_path nor on how evolve is named
SET search_path = pg_catalog;
SELECT * FROM eventstore.load_state('tag-1', 'public.evolve_tag(numeric, eventstore.event)', 0::numeric);
RESET search_path;
-- another initial state is another fold
SELECT * FROM eventstore.load_state('tag-1', 'evolve_tag(numeric, eventstore.event)', 1000::numeric);
-- so is another state type, with a polymorphic evolve
CREATE FUNCTION evolve_any(s anyelement, e eventstore.event) RETURNS anyelement LANGUAGE plpgsql AS $$
BEGIN
    RETURN s + 1;
END $$;
SELECT eventstore.take_snapshot('tag-1', 'evolve_any(anyelement, eventstore.event)', 0::integer, 6);
SELECT pg_typeof(state), * FROM eventstore.load_state('tag-1', 'evolve_any(anyelement, eventstore.event)', 0::integer);
SELECT pg_typeof(state), * FROM eventstore.load_state('tag-1', 'evolve_any(anyelement, eventstore.event)', 0::bigint);

-- Replacing evolve with one that folds differently: the old snapshots are
-- not used, the state is the new fold's.
CREATE OR REPLACE FUNCTION evolve_tag(s numeric, e eventstore.event) RETURNS numeric LANGUAGE plpgsql AS $$
BEGIN
    RETURN s + 2 * (e.data->>'amount')::numeric;
END $$;
SELECT l.*,
       l.state = (SELECT eventstore.fold(e, 'evolve_tag(numeric, eventstore.event)', 0::numeric ORDER BY stream_version)
                    FROM eventstore.read_stream('tag-1') e) AS equals_new_fold
  FROM eventstore.load_state('tag-1', 'evolve_tag(numeric, eventstore.event)', 0::numeric) l;
-- an explicit tag only adds to what names the fold: the replaced evolve
-- does not start from the old fold's snapshot under 'v1' either
SELECT * FROM eventstore.load_state('tag-1', 'evolve_tag(numeric, eventstore.event)', 0::numeric,
                                    snapshot_tag => 'v1');
SELECT eventstore.aggregate_stream('tag-1', 'evolve_tag(numeric, eventstore.event)', 0::numeric,
                                   snapshot_tag => 'v1', use_snapshots => false) AS tag_ignored_without_snapshots;

-- The same with evolve functions whose body is SQL-standard (RETURN ... or
-- BEGIN ATOMIC ... END): their source is not in pg_proc.prosrc.
CREATE FUNCTION evolve_std(s numeric, e eventstore.event) RETURNS numeric
    RETURN s + (e.data->>'amount')::numeric;
SELECT eventstore.take_snapshot('tag-1', 'evolve_std(numeric, eventstore.event)', 0::numeric, 5);
CREATE OR REPLACE FUNCTION evolve_std(s numeric, e eventstore.event) RETURNS numeric
    RETURN s + 2 * (e.data->>'amount')::numeric;
SELECT * FROM eventstore.load_state('tag-1', 'evolve_std(numeric, eventstore.event)', 0::numeric);
CREATE FUNCTION evolve_atomic(s numeric, e eventstore.event) RETURNS numeric
BEGIN ATOMIC
    SELECT s + (e.data->>'amount')::numeric;
END;
SELECT eventstore.take_snapshot('tag-1', 'evolve_atomic(numeric, eventstore.event)', 0::numeric, 5);
CREATE OR REPLACE FUNCTION evolve_atomic(s numeric, e eventstore.event) RETURNS numeric
BEGIN ATOMIC
    SELECT s + 2 * (e.data->>'amount')::numeric;
END;
SELECT * FROM eventstore.load_state('tag-1', 'evolve_atomic(numeric, eventstore.event)', 0::numeric);

-- An explicit tag shared by folds of different state types: a snapshot is
-- only ever read back as the type it was stored as.  The numeric snapshot
-- at 5 (15) must not start the bigint count.
CREATE FUNCTION evolve_n(s bigint, e eventstore.event) RETURNS bigint LANGUAGE sql AS 'SELECT s + 1';
SELECT * FROM eventstore.load_state('tag-1', 'evolve_n(bigint, eventstore.event)', 0::bigint, snapshot_tag => 'v1');

-- Snapshots hold states as text.  The text must read back as the same
-- value in any session, whatever its DateStyle, IntervalStyle,
-- extra_float_digits or TimeZone when the snapshot was taken or read; and
-- the tag, which holds the initial state as text, must not depend on them
-- either.  Two folds: one whose initial state has no time in it (so that
-- it prints the same under both date orders of 'SQL' style), one with.
CREATE TYPE timed AS (ratio float8, day date, span interval, at timestamptz);
CREATE FUNCTION evolve_timed(s timed, e eventstore.event) RETURNS timed LANGUAGE plpgsql AS $$
BEGIN
    s.ratio := s.ratio / 3 + 1;
    s.day := s.day + 31;
    s.span := coalesce(s.span, interval '0') - interval '1 day 02:03:04';
    s.at := coalesce(s.at, '2024-01-01 00:00+00') + interval '1 hour';
    RETURN s;
END $$;
SET extra_float_digits = 0;
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'sql_standard';
SET TimeZone = 'Asia/Tokyo';
SELECT eventstore.take_snapshot('tag-1', 'evolve_timed(timed, eventstore.event)',
                                ROW(1, '2024-01-01', NULL, NULL)::timed, 3) AS without_time,
       eventstore.take_snapshot('tag-1', 'evolve_timed(timed, eventstore.event)',
                                ROW(1, '2024-01-01', NULL, '2024-01-01 00:00+00')::timed, 3) AS with_time;
-- the other date order, float and interval styles
SET DateStyle = 'SQL, MDY';
RESET IntervalStyle;
RESET extra_float_digits;
SELECT l.snapshot_version,
       l.state = eventstore.aggregate_stream('tag-1', 'evolve_timed(timed, eventstore.event)',
                                             ROW(1, '2024-01-01', NULL, NULL)::timed, use_snapshots => false)
           AS equals_full_replay
  FROM eventstore.load_state('tag-1', 'evolve_timed(timed, eventstore.event)', ROW(1, '2024-01-01', NULL, NULL)::timed) l;
-- and the session's own settings, in another time zone
RESET DateStyle;
RESET TimeZone;
SELECT l.snapshot_version,
       l.state = eventstore.aggregate_stream('tag-1', 'evolve_timed(timed, eventstore.event)',
                                             ROW(1, '2024-01-01', NULL, NULL)::timed, use_snapshots => false)
           AS equals_full_replay
  FROM eventstore.load_state('tag-1', 'evolve_timed(timed, eventstore.event)', ROW(1, '2024-01-01', NULL, NULL)::timed) l;
SELECT l.snapshot_version,
       l.state = eventstore.aggregate_stream('tag-1', 'evolve_timed(timed, eventstore.event)',
                                             ROW(1, '2024-01-01', NULL, '2024-01-01 00:00+00')::timed,
                                             use_snapshots => false)
           AS equals_full_replay
  FROM eventstore.load_state('tag-1', 'evolve_timed(timed, eventstore.event)',
                             ROW(1, '2024-01-01', NULL, '2024-01-01 00:00+00')::timed) l;
--
-- handle_command: load the state, decide(command, state) the events, append
-- them expecting the loaded version, fold them in.  A bank account.
--
CREATE TYPE account AS (open boolean, balance numeric, deposits integer, withdrawals integer);
CREATE FUNCTION account_evolve(s account, e eventstore.event) RETURNS account LANGUAGE plpgsql AS $$
BEGIN
    CASE e.event_type
        WHEN 'Opened' THEN
            s.open := true;
        WHEN 'Deposited' THEN
            s.balance := s.balance + (e.data->>'amount')::numeric;
            s.deposits := s.deposits + 1;
        WHEN 'Withdrawn' THEN
            s.balance := s.balance - (e.data->>'amount')::numeric;
            s.withdrawals := s.withdrawals + 1;
        WHEN 'Closed' THEN
            s.open := false;
    END CASE;
    RETURN s;
END $$;
-- decide writes down every call: its writes are part of the command
CREATE TABLE decisions (n serial, command jsonb, balance numeric);
CREATE FUNCTION account_decide(c jsonb, s account) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    amount numeric;
BEGIN
    INSERT INTO decisions (command, balance) VALUES (c, s.balance);
    CASE c->>'op'
        WHEN 'open' THEN
            IF s.open THEN
                RETURN '[]';            -- already open: nothing to do
            END IF;
            RETURN '[{"type": "Opened", "data": {}}]';
        WHEN 'deposit' THEN
            IF NOT s.open THEN
                RAISE EXCEPTION 'account is not open' USING ERRCODE = 'BA001';
            END IF;
            RETURN (SELECT jsonb_agg(jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('amount', a)))
                      FROM jsonb_array_elements(c->'amounts') a);
        WHEN 'withdraw' THEN
            amount := (c->>'amount')::numeric;
            IF amount > s.balance THEN
                RAISE EXCEPTION 'insufficient funds' USING ERRCODE = 'BA002',
                    DETAIL = format('Balance %s, amount %s.', s.balance, amount);
            END IF;
            RETURN jsonb_build_array(jsonb_build_object('type', 'Withdrawn', 'data', jsonb_build_object('amount', amount)));
        WHEN 'close' THEN
            RETURN jsonb_build_array(jsonb_build_object('type', 'Withdrawn', 'data', jsonb_build_object('amount', s.balance)),
                                     jsonb_build_object('type', 'Closed', 'data', '{}'::jsonb));
        -- misbehaving deciders
        WHEN 'null' THEN
            RETURN NULL;
        WHEN 'object' THEN
            RETURN '{"type": "Opened", "data": {}}';
        WHEN 'scalar' THEN
            RETURN '3';
        WHEN 'misspelt' THEN
            RETURN '[{"type": "Deposited", "dat": {"amount": 1}}]';
        WHEN 'unfoldable' THEN
            RETURN '[{"type": "Deposited", "data": {"amount": "lots"}}]';
    END CASE;
END $$;
CREATE FUNCTION account_cmd(p_stream text, p_command jsonb,
                            OUT version bigint, OUT state account, OUT appended bigint)
LANGUAGE sql AS $$
    SELECT * FROM eventstore.handle_command(p_stream, 'account_decide(jsonb, account)', p_command,
                                            'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account)
$$;
\set written 'SELECT eventstore.stream_version(''acct-1'') AS version, (SELECT count(*) FROM decisions) AS decisions, (SELECT count(*) FROM pg_locks WHERE locktype = ''advisory'' AND objsubid = 17747 AND pid = pg_backend_pid()) AS stream_locks;'

SELECT * FROM eventstore.handle_command('acct-1', 'account_decide(jsonb, account)', '{"op": "open"}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
SELECT * FROM account_cmd('acct-1', '{"op": "deposit", "amounts": [100]}');
SELECT * FROM account_cmd('acct-1', '{"op": "withdraw", "amount": 30}');
-- several events from one command
SELECT * FROM account_cmd('acct-1', '{"op": "deposit", "amounts": [5, 10, 15]}');
-- [] appends nothing: the version stays, the state is the loaded one
SELECT * FROM account_cmd('acct-1', '{"op": "open"}');
SELECT stream_version, event_type, data FROM eventstore.read_stream('acct-1');
SELECT n, command->>'op' AS op, balance FROM decisions ORDER BY n;
-- the state returned is the state of the stream
SELECT (SELECT state FROM account_cmd('acct-1', '{"op": "open"}')) =
       eventstore.aggregate_stream('acct-1', 'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account)
       AS same_state;
-- from a snapshot: the same
SELECT eventstore.take_snapshot('acct-1', 'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account, 3);
SELECT * FROM account_cmd('acct-1', '{"op": "withdraw", "amount": 1}');
SELECT * FROM eventstore.handle_command('acct-1', 'account_decide(jsonb, account)', '{"op": "withdraw", "amount": 1}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account,
                                        use_snapshots => false);
-- a new stream: expected version 0 (no stream)
SELECT * FROM account_cmd('acct-2', '{"op": "open"}');
-- Several commands on one stream in one statement: each one loads what the
-- ones before it appended, so none conflicts with its own transaction
-- (max_retries => 0), under READ COMMITTED and REPEATABLE READ alike; the
-- same after a plain append earlier in the statement.
SELECT g, c.version, (c.state).balance, c.appended
  FROM generate_series(1, 3) g,
       eventstore.handle_command('acct-4', 'account_decide(jsonb, account)',
                                 CASE WHEN g = 1 THEN '{"op": "open"}'
                                      ELSE jsonb_build_object('op', 'deposit', 'amounts', jsonb_build_array(g * 10)) END,
                                 'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account,
                                 max_retries => 0) c;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT g, c.version, (c.state).balance, c.appended
  FROM generate_series(1, 3) g,
       eventstore.handle_command('acct-5', 'account_decide(jsonb, account)',
                                 CASE WHEN g = 1 THEN '{"op": "open"}'
                                      ELSE jsonb_build_object('op', 'deposit', 'amounts', jsonb_build_array(g * 10)) END,
                                 'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account) c;
COMMIT;
WITH opened AS (SELECT * FROM eventstore.append('acct-6', 'Opened', '{}'))
SELECT c.*
  FROM opened o,
       LATERAL eventstore.handle_command('acct-6', 'account_decide(jsonb, account)',
                                         jsonb_build_object('op', 'deposit', 'amounts', jsonb_build_array(o.stream_version * 5)),
                                         'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account,
                                         max_retries => 0) c;

--
-- Errors of decide and of what it decided: the error keeps its SQLSTATE,
-- nothing is written (neither events nor decide's own writes), no stream
-- lock is left behind, and the session goes on.
--
\set SHOW_CONTEXT never
:written
SELECT * FROM account_cmd('acct-1', '{"op": "withdraw", "amount": 1000}');
\echo :SQLSTATE
SELECT * FROM account_cmd('acct-3', '{"op": "deposit", "amounts": [1]}');
\echo :SQLSTATE
SELECT * FROM account_cmd('acct-1', '{"op": "null"}');
\echo :SQLSTATE
SELECT * FROM account_cmd('acct-1', '{"op": "object"}');
\echo :SQLSTATE
SELECT * FROM account_cmd('acct-1', '{"op": "scalar"}');
\echo :SQLSTATE
SELECT * FROM account_cmd('acct-1', '{"op": "misspelt"}');
\echo :SQLSTATE
-- evolve fails on the appended event: the append is undone
SELECT * FROM account_cmd('acct-1', '{"op": "unfoldable"}');
\echo :SQLSTATE
-- decide falls through its CASE
SELECT * FROM account_cmd('acct-1', '{"op": "fly"}');
\echo :SQLSTATE
:written
-- in a transaction: the failed command aborts it like any error; a
-- savepoint keeps what came before
BEGIN;
SELECT version FROM account_cmd('acct-1', '{"op": "deposit", "amounts": [1]}');
SAVEPOINT s;
SELECT * FROM account_cmd('acct-1', '{"op": "withdraw", "amount": 1000}');
\echo :SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT version FROM account_cmd('acct-1', '{"op": "deposit", "amounts": [2]}');
:written
COMMIT;
:written
-- caught in PL/pgSQL, then another command in the same transaction
DO $$
DECLARE
    r record;
BEGIN
    BEGIN
        PERFORM account_cmd('acct-1', '{"op": "withdraw", "amount": 1000}');
    EXCEPTION WHEN SQLSTATE 'BA002' THEN
        RAISE NOTICE 'caught %: %', SQLSTATE, SQLERRM;
    END;
    SELECT * INTO r FROM account_cmd('acct-1', '{"op": "withdraw", "amount": 2}');
    RAISE NOTICE 'then version %, balance %', r.version, (r.state).balance;
END $$;
:written
-- a whole transaction of commands rolled back
BEGIN;
SELECT version, appended FROM account_cmd('acct-1', '{"op": "close"}');
:written
ROLLBACK;
:written
\set SHOW_CONTEXT errors

--
-- Argument errors.
--
\set SHOW_CONTEXT never
CREATE FUNCTION decide_text(c jsonb, s account) RETURNS text LANGUAGE sql AS 'SELECT ''[]''';
CREATE FUNCTION decide_textcmd(c text, s account) RETURNS jsonb LANGUAGE sql AS 'SELECT ''[]''::jsonb';
CREATE FUNCTION decide_numeric(c jsonb, s numeric) RETURNS jsonb LANGUAGE sql AS 'SELECT ''[]''::jsonb';
CREATE FUNCTION decide_set(c jsonb, s account) RETURNS SETOF jsonb LANGUAGE sql AS 'SELECT ''[]''::jsonb';
CREATE PROCEDURE decide_proc(c jsonb, s account) LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION evolve_set(s account, e eventstore.event) RETURNS SETOF account LANGUAGE sql AS 'SELECT s';
CREATE FUNCTION evolve_three(s account, e eventstore.event, x int) RETURNS account LANGUAGE sql AS 'SELECT s';
-- wrong signatures (42P13)
SELECT * FROM eventstore.handle_command('acct-1', 'decide_text(jsonb, account)', '{}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', 'decide_textcmd(text, account)', '{}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', 'decide_numeric(jsonb, numeric)', '{}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', 'decide_set(jsonb, account)', '{}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', 'decide_proc(jsonb, account)', '{}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', 'account_decide(jsonb, account)', '{}',
                                        'evolve_tag(numeric, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', 'account_decide(jsonb, account)', '{}',
                                        'evolve_set(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', 'account_decide(jsonb, account)', '{}',
                                        'evolve_three(account, eventstore.event, integer)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT eventstore.aggregate_stream('acct-1', 'abs(integer)', 0);
\echo :SQLSTATE
SELECT eventstore.aggregate_stream('acct-1', 'evolve_tag(numeric, eventstore.event)', 0::integer);
\echo :SQLSTATE
SELECT * FROM eventstore.load_state('acct-1', 'evolve_set(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT eventstore.take_snapshot('acct-1', 'evolve_three(account, eventstore.event, integer)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT eventstore.fold(e, 'evolve_tag(numeric, eventstore.event)', 0::bigint) FROM eventstore.read_stream('acct-1') e;
\echo :SQLSTATE
-- even on an empty stream
SELECT eventstore.aggregate_stream('nothing-here', 'evolve_tag(numeric, eventstore.event)', 0::integer);
\echo :SQLSTATE
-- an evolve that no longer exists (42883)
SELECT eventstore.aggregate_stream('acct-1', 0, 0);
\echo :SQLSTATE
-- NULL arguments (22004)
SELECT * FROM eventstore.handle_command(NULL, 'account_decide(jsonb, account)', '{}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', NULL, '{}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', 'account_decide(jsonb, account)', NULL,
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', 'account_decide(jsonb, account)', '{}',
                                        NULL, ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT eventstore.aggregate_stream(NULL, 'evolve_int(bigint, eventstore.event)', 0::bigint);
\echo :SQLSTATE
SELECT eventstore.aggregate_stream('acct-1', NULL, 0::bigint);
\echo :SQLSTATE
SELECT * FROM eventstore.load_state(NULL, 'evolve_int(bigint, eventstore.event)', 0::bigint);
\echo :SQLSTATE
SELECT eventstore.take_snapshot('acct-1', NULL, 0::bigint);
\echo :SQLSTATE
SELECT eventstore.fold(e, NULL, 0::bigint) FROM eventstore.read_stream('acct-1') e;
\echo :SQLSTATE
-- an initial state of no known type (42804)
SELECT eventstore.aggregate_stream('acct-1', 'evolve_int(bigint, eventstore.event)', NULL);
\echo :SQLSTATE
-- negative max_retries and to_version, empty stream ids and tags (22023)
SELECT * FROM eventstore.handle_command('acct-1', 'account_decide(jsonb, account)', '{"op": "open"}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account,
                                        max_retries => -1);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('', 'account_decide(jsonb, account)', '{"op": "open"}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command('acct-1', 'account_decide(jsonb, account)', '{"op": "open"}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account,
                                        snapshot_tag => '');
\echo :SQLSTATE
SELECT eventstore.aggregate_stream('acct-1', 'evolve_int(bigint, eventstore.event)', 0::bigint, to_version => -1);
\echo :SQLSTATE
SELECT * FROM eventstore.load_state('acct-1', 'evolve_int(bigint, eventstore.event)', 0::bigint, to_version => -1);
\echo :SQLSTATE
SELECT eventstore.take_snapshot('acct-1', 'evolve_int(bigint, eventstore.event)', 0::bigint, to_version => -1);
\echo :SQLSTATE
SELECT eventstore.aggregate_stream('', 'evolve_int(bigint, eventstore.event)', 0::bigint);
\echo :SQLSTATE
SELECT * FROM eventstore.load_state('', 'evolve_int(bigint, eventstore.event)', 0::bigint);
\echo :SQLSTATE
SELECT eventstore.take_snapshot('', 'evolve_int(bigint, eventstore.event)', 0::bigint);
\echo :SQLSTATE
SELECT eventstore.aggregate_stream('acct-1', 'evolve_int(bigint, eventstore.event)', 0::bigint, snapshot_tag => '');
\echo :SQLSTATE
SELECT eventstore.take_snapshot('acct-1', 'evolve_int(bigint, eventstore.event)', 0::bigint, snapshot_tag => '');
\echo :SQLSTATE
-- too long a stream id (54000)
SELECT eventstore.aggregate_stream(repeat('x', 1025), 'evolve_int(bigint, eventstore.event)', 0::bigint);
\echo :SQLSTATE
SELECT * FROM eventstore.handle_command(repeat('x', 1025), 'account_decide(jsonb, account)', '{"op": "open"}',
                                        'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
\set SHOW_CONTEXT errors
-- nothing was written by any of these
:written
SELECT count(*) AS snapshots_of_acct_1 FROM eventstore.snapshots WHERE stream_id = 'acct-1';

--
-- Snapshot policies: the background worker snapshots matching streams at
-- versions that are multiples of "every" and after events of the given
-- types, as the async projection 'snapshot:<policy>'.
--
SELECT eventstore.create_snapshot_policy('accounts', 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account, stream_prefix => 'pacct-', every => 4);
SELECT eventstore.create_snapshot_policy('closing', 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account, stream_prefix => 'pacct-', every => NULL,
                                         on_event_types => '{Closed}', snapshot_tag => 'closing');
SELECT eventstore.create_snapshot_policy('counts', 'evolve_int(bigint, eventstore.event)', 0::bigint,
                                         stream_prefix => 'pcount-', every => 3, on_event_types => '{Noted}');
SELECT name, evolve, state_type, initial, stream_prefix, every, on_event_types, snapshot_tag
  FROM eventstore.snapshot_policies ORDER BY name;
SELECT name, mode, handler, stream_prefix, state FROM eventstore.projection_status
 WHERE name LIKE 'snapshot:%' ORDER BY name;

-- pacct-1: 10 events over three transactions; Closed at 6 and 10
SELECT * FROM account_cmd('pacct-1', '{"op": "open"}');
SELECT version FROM account_cmd('pacct-1', '{"op": "deposit", "amounts": [10, 20]}');
SELECT version FROM account_cmd('pacct-1', '{"op": "withdraw", "amount": 5}');
SELECT stream_version FROM eventstore.append_events('pacct-1',
    '[{"type": "Deposited", "data": {"amount": 1}}, {"type": "Closed", "data": {}},
      {"type": "Opened", "data": {}}, {"type": "Deposited", "data": {"amount": 2}},
      {"type": "Deposited", "data": {"amount": 3}}, {"type": "Closed", "data": {}}]');
-- pacct-2: too short for "every"; other-1: not matched by the prefix
SELECT version FROM account_cmd('pacct-2', '{"op": "open"}');
SELECT version FROM account_cmd('pacct-2', '{"op": "deposit", "amounts": [7, 8]}');
SELECT stream_version FROM eventstore.append_events('other-1',
    (SELECT jsonb_agg(jsonb_build_object('type', 'Closed', 'data', '{}'::jsonb)) FROM generate_series(1, 8)));
-- pcount-1: every 3rd version and each Noted
SELECT stream_version FROM eventstore.append_events('pcount-1',
    '[{"type": "A", "data": {"amount": 1}}, {"type": "Noted", "data": {}}, {"type": "A", "data": {"amount": 2}},
      {"type": "A", "data": {"amount": 3}}, {"type": "A", "data": {"amount": 4}}, {"type": "A", "data": {"amount": 5}},
      {"type": "Noted", "data": {}}]');
SELECT eventstore.wait_for_projection('snapshot:accounts') AS accounts,
       eventstore.wait_for_projection('snapshot:closing') AS closing,
       eventstore.wait_for_projection('snapshot:counts') AS counts;
SELECT name, state, lag_events, error_count, last_error FROM eventstore.projection_status
 WHERE name LIKE 'snapshot:%' ORDER BY name;
-- the snapshots taken, each equal to a full replay to its version
SELECT s.stream_id, s.stream_version, s.state_type, s.tag = eventstore.snapshot_tag('account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account, 'closing') AS closing_tag, s.state,
       s.state = (CASE s.state_type
                  WHEN 'account'::regtype THEN
                      eventstore.aggregate_stream(s.stream_id, 'account_evolve(account, eventstore.event)',
                                                  ROW(false, 0, 0, 0)::account, to_version => s.stream_version,
                                                  use_snapshots => false)::text
                  ELSE
                      eventstore.aggregate_stream(s.stream_id, 'evolve_int(bigint, eventstore.event)', 0::bigint,
                                                  to_version => s.stream_version, use_snapshots => false)::text
                  END) AS equals_replay
  FROM eventstore.snapshots s
 WHERE s.stream_id LIKE 'pacct-%' OR s.stream_id LIKE 'pcount-%' OR s.stream_id = 'other-1'
 ORDER BY s.stream_id, s.tag = 'closing', s.stream_version;
-- loads start from them
SELECT * FROM eventstore.load_state('pacct-1', 'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
SELECT * FROM eventstore.load_state('pacct-1', 'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account,
                                    snapshot_tag => 'closing', to_version => 9);
SELECT * FROM eventstore.load_state('pcount-1', 'evolve_int(bigint, eventstore.event)', 0::bigint);
-- and so does handle_command: the state equals a full replay (in a
-- statement of its own, which sees the appended event)
CREATE TABLE cmd_result AS SELECT * FROM account_cmd('pacct-1', '{"op": "open"}');
SELECT version, appended,
       state = eventstore.aggregate_stream('pacct-1', 'account_evolve(account, eventstore.event)',
                                           ROW(false, 0, 0, 0)::account, use_snapshots => false) AS equals_replay
  FROM cmd_result;

-- A policy created in a session with other date and float styles (and time
-- zone) than the worker's: the worker reads its initial state back as the
-- same value, so the snapshots it takes carry the tag every session's loads
-- compute.
SET DateStyle = 'SQL, DMY';
SET extra_float_digits = 0;
SET TimeZone = 'Asia/Tokyo';
SELECT eventstore.create_snapshot_policy('timed', 'evolve_timed(timed, eventstore.event)',
                                         ROW(0.1, '2024-01-02', NULL, '2024-01-01 00:00+00')::timed, stream_prefix => 'ptimed-', every => 2);
RESET DateStyle;
RESET extra_float_digits;
RESET TimeZone;
SELECT initial FROM eventstore.snapshot_policies WHERE name = 'timed';
SELECT stream_version FROM eventstore.append_events('ptimed-1',
    '[{"type": "A", "data": {}}, {"type": "A", "data": {}}, {"type": "A", "data": {}}]');
SELECT eventstore.wait_for_projection('snapshot:timed');
SELECT l.version, l.snapshot_version,
       l.state = eventstore.aggregate_stream('ptimed-1', 'evolve_timed(timed, eventstore.event)',
                                             ROW(0.1, '2024-01-02', NULL, '2024-01-01 00:00+00')::timed, use_snapshots => false)
           AS equals_full_replay
  FROM eventstore.load_state('ptimed-1', 'evolve_timed(timed, eventstore.event)', ROW(0.1, '2024-01-02', NULL, '2024-01-01 00:00+00')::timed) l;
SELECT eventstore.drop_snapshot_policy('timed');

-- Policy errors, each with its SQLSTATE; nothing is registered.
\set SHOW_CONTEXT never
SELECT eventstore.create_snapshot_policy('accounts', 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy('p', 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account, every => NULL);
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy('p', 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account, every => 0);
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy('p', 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account, on_event_types => '{}');
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy('p', 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account, stream_prefix => '');
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy('p', 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account, snapshot_tag => '');
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy('', 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy(repeat('x', 55), 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy(NULL, 'account_evolve(account, eventstore.event)',
                                         ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy('p', NULL, ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy('p', 'account_evolve(account, eventstore.event)', 0::bigint);
\echo :SQLSTATE
SELECT eventstore.create_snapshot_policy('p', 'evolve_set(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
\echo :SQLSTATE
SELECT eventstore.drop_snapshot_policy('nope');
\echo :SQLSTATE
SELECT eventstore.drop_snapshot_policy(NULL);
\echo :SQLSTATE
\set SHOW_CONTEXT errors
SELECT eventstore.drop_snapshot_policy('nope', if_exists => true);
SELECT count(*) AS policies FROM eventstore.snapshot_policies;

-- Dropping a policy drops its projection; its snapshots stay and are
-- still used.  The other policies go on.
SELECT eventstore.drop_snapshot_policy('accounts');
SELECT name FROM eventstore.projection_status WHERE name LIKE 'snapshot:%' ORDER BY name;
SELECT stream_version FROM eventstore.append_events('pacct-1',
    (SELECT jsonb_agg(jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('amount', g)))
       FROM generate_series(1, 8) g));
SELECT stream_version FROM eventstore.append('pacct-1', 'Closed', '{}');
SELECT eventstore.wait_for_projection('snapshot:closing');
SELECT stream_version, closing_tag
  FROM (SELECT stream_version,
               tag = eventstore.snapshot_tag('account_evolve(account, eventstore.event)',
                                             ROW(false, 0, 0, 0)::account, 'closing') AS closing_tag
          FROM eventstore.snapshots WHERE stream_id = 'pacct-1') s
 ORDER BY closing_tag, stream_version;
SELECT * FROM eventstore.load_state('pacct-1', 'account_evolve(account, eventstore.event)', ROW(false, 0, 0, 0)::account);
SELECT eventstore.drop_snapshot_policy('closing');
SELECT eventstore.drop_snapshot_policy('counts');
SELECT count(*) AS policies FROM eventstore.snapshot_policies;
SELECT count(*) AS projections FROM eventstore.projections;

SET client_min_messages = warning;
DROP EXTENSION eventstore CASCADE;
RESET client_min_messages;
DROP TABLE prop_streams, prop_snaps, prop_targets, prop_results, tt_times, decisions, cmd_result;
DROP FUNCTION check_target(text, text, regprocedure, anyelement, bigint), tt_expected_version(timestamptz),
              account_cmd(text, jsonb), decide_text(jsonb, account), decide_textcmd(text, account),
              decide_numeric(jsonb, numeric), decide_set(jsonb, account), account_decide(jsonb, account);
DROP PROCEDURE append_slowly(text, integer), decide_proc(jsonb, account);
DROP TYPE acct, timed, account;
