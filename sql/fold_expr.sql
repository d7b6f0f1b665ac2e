--
-- The fold plans evolve(state, event) once as an expression (0.9.0): an
-- evolve written in SQL as one expression is inlined into it, as PL/pgSQL
-- inlines it into `state := evolve(state, e)`; any other evolve is called
-- by the expression.  Same states, same NULL and strictness rules, and the
-- same rights and search_path as a direct call: PostgreSQL never inlines a
-- SECURITY DEFINER function, one with SET clauses, or one the current user
-- may not EXECUTE.
--
-- Whether a function was inlined shows in pg_stat_xact_user_functions
-- (track_functions = 'all'): an inlined function is never called.
--
CREATE EXTENSION eventstore;
CREATE SCHEMA fx;
CREATE SCHEMA fx_good;
CREATE SCHEMA fx_evil;
CREATE ROLE regress_fx_user NOLOGIN;
CREATE ROLE regress_fx_owner NOLOGIN;
GRANT USAGE ON SCHEMA eventstore, fx, fx_good, fx_evil TO regress_fx_user, regress_fx_owner;
GRANT EXECUTE ON FUNCTION eventstore.read_stream(text, bigint, bigint, boolean),
                          eventstore.aggregate_stream(text, regprocedure, anyelement, bigint, timestamptz, boolean, text),
                          eventstore.load_state(text, regprocedure, anyelement, bigint, timestamptz, boolean, text),
                          eventstore.take_snapshot(text, regprocedure, anyelement, bigint, text),
                          eventstore.fold(eventstore.event, regprocedure, anyelement),
                          eventstore._fold_step(internal, eventstore.event, regprocedure, anyelement),
                          eventstore._fold_final(internal, eventstore.event, regprocedure, anyelement),
                          eventstore.create_snapshot_policy(text, regprocedure, anyelement, text, integer, text[], text),
                          eventstore.drop_snapshot_policy(text, boolean)
   TO regress_fx_user;

CREATE TYPE fx.acct AS (balance numeric, n integer, last_type text, note text);

-- The same evolve in PL/pgSQL, in SQL (one expression), in SQL with a
-- BEGIN ATOMIC body, and in SQL that cannot be inlined (a SET clause).
CREATE FUNCTION fx.evolve_pl(s fx.acct, e eventstore.event) RETURNS fx.acct
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    s.n := coalesce(s.n, 0) + 1;
    s.last_type := e.event_type;
    CASE e.event_type
        WHEN 'Deposited' THEN s.balance := coalesce(s.balance, 0) + (e.data->>'amount')::numeric;
        WHEN 'Withdrawn' THEN s.balance := coalesce(s.balance, 0) - (e.data->>'amount')::numeric;
        WHEN 'Noted' THEN s.note := e.data->>'note';
        ELSE NULL;
    END CASE;
    RETURN s;
END $$;
CREATE FUNCTION fx.evolve_sql(s fx.acct, e eventstore.event) RETURNS fx.acct
LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(CASE (e).event_type
                   WHEN 'Deposited' THEN coalesce((s).balance, 0) + ((e).data->>'amount')::numeric
                   WHEN 'Withdrawn' THEN coalesce((s).balance, 0) - ((e).data->>'amount')::numeric
                   ELSE (s).balance END,
               coalesce((s).n, 0) + 1,
               (e).event_type,
               CASE WHEN (e).event_type = 'Noted' THEN (e).data->>'note' ELSE (s).note END)::fx.acct
$$;
CREATE FUNCTION fx.evolve_atomic(s fx.acct, e eventstore.event) RETURNS fx.acct
LANGUAGE sql IMMUTABLE
BEGIN ATOMIC
    SELECT ROW(CASE (e).event_type
                   WHEN 'Deposited' THEN coalesce((s).balance, 0) + ((e).data->>'amount')::numeric
                   WHEN 'Withdrawn' THEN coalesce((s).balance, 0) - ((e).data->>'amount')::numeric
                   ELSE (s).balance END,
               coalesce((s).n, 0) + 1,
               (e).event_type,
               CASE WHEN (e).event_type = 'Noted' THEN (e).data->>'note' ELSE (s).note END)::fx.acct;
END;
CREATE FUNCTION fx.evolve_set(s fx.acct, e eventstore.event) RETURNS fx.acct
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
    SELECT fx.evolve_sql(s, e)
$$;
-- returns its state unchanged for most events: the fold keeps it in place
CREATE FUNCTION fx.evolve_sparse(s fx.acct, e eventstore.event) RETURNS fx.acct
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN (e).event_type = 'Noted' THEN ROW((s).balance, (s).n, 'Noted', (e).data->>'note')::fx.acct
                ELSE s END
$$;
-- polymorphic
CREATE FUNCTION fx.evolve_poly(s anyelement, e eventstore.event) RETURNS anyelement
LANGUAGE sql IMMUTABLE AS 'SELECT s + s';

SELECT stream_version FROM eventstore.append_events('fx-1',
    '[{"type": "Deposited", "data": {"amount": 10.5}},
      {"type": "Noted", "data": {"note": "a (quoted, \"odd\") note"}},
      {"type": "Withdrawn", "data": {"amount": 3}},
      {"type": "Noted", "data": {"note": null}},
      {"type": "Renamed", "data": {}},
      {"type": "Deposited", "data": {"amount": 100}}]');

SET track_functions = 'all';
BEGIN;
SELECT f.evolve, eventstore.aggregate_stream('fx-1', f.evolve, ROW(0, 0, NULL, 'x')::fx.acct) AS state
  FROM (VALUES ('fx.evolve_pl(fx.acct, eventstore.event)'::regprocedure),
               ('fx.evolve_sql(fx.acct, eventstore.event)'),
               ('fx.evolve_atomic(fx.acct, eventstore.event)')) f(evolve);
-- the PL/pgSQL evolve is called per event; the SQL ones are inlined into
-- the fold's expression and never called
SELECT funcname, calls FROM pg_stat_xact_user_functions WHERE schemaname = 'fx' ORDER BY funcname;
COMMIT;
-- the one with SET is not inlined: called per event (what its own query
-- does with evolve_sql is PostgreSQL's business, and differs by version)
BEGIN;
SELECT eventstore.aggregate_stream('fx-1', 'fx.evolve_set(fx.acct, eventstore.event)',
                                   ROW(0, 0, NULL, 'x')::fx.acct) AS state;
SELECT funcname, calls FROM pg_stat_xact_user_functions
 WHERE schemaname = 'fx' AND funcname = 'evolve_set';
COMMIT;

-- every way to fold gives the same state
SELECT s.evolve,
       eventstore.aggregate_stream('fx-1', s.evolve, ROW(0, 0, NULL, 'x')::fx.acct)
         = eventstore.aggregate_stream('fx-1', 'fx.evolve_pl(fx.acct, eventstore.event)', ROW(0, 0, NULL, 'x')::fx.acct)
         AS aggregate_stream,
       (SELECT l.state FROM eventstore.load_state('fx-1', s.evolve, ROW(0, 0, NULL, 'x')::fx.acct, to_version => 4) l)
         = eventstore.aggregate_stream('fx-1', 'fx.evolve_pl(fx.acct, eventstore.event)', ROW(0, 0, NULL, 'x')::fx.acct, 4)
         AS load_state_to_4,
       (SELECT eventstore.fold(e, s.evolve, ROW(0, 0, NULL, 'x')::fx.acct ORDER BY e.stream_version)
          FROM eventstore.read_stream('fx-1') e)
         = eventstore.aggregate_stream('fx-1', 'fx.evolve_pl(fx.acct, eventstore.event)', ROW(0, 0, NULL, 'x')::fx.acct)
         AS fold
  FROM (VALUES ('fx.evolve_sql(fx.acct, eventstore.event)'::regprocedure),
               ('fx.evolve_atomic(fx.acct, eventstore.event)'),
               ('fx.evolve_set(fx.acct, eventstore.event)')) s(evolve);
-- from a snapshot taken with the inlined evolve, and on from it
SELECT eventstore.take_snapshot('fx-1', 'fx.evolve_sql(fx.acct, eventstore.event)', ROW(0, 0, NULL, 'x')::fx.acct, 3);
SELECT (l.state).*, l.version, l.snapshot_version
  FROM eventstore.load_state('fx-1', 'fx.evolve_sql(fx.acct, eventstore.event)', ROW(0, 0, NULL, 'x')::fx.acct) l;
-- an evolve that returns its state as it came for most events
SELECT (eventstore.aggregate_stream('fx-1', 'fx.evolve_sparse(fx.acct, eventstore.event)', ROW(1, 2, NULL, 'x')::fx.acct)).*;
SELECT (eventstore.aggregate_stream('fx-1', 'fx.evolve_sparse(fx.acct, eventstore.event)', NULL::fx.acct)).*;
-- a polymorphic SQL evolve takes the state's type
SELECT eventstore.aggregate_stream('fx-1', 'fx.evolve_poly(anyelement, eventstore.event)', 1::bigint) AS bigint_state,
       eventstore.aggregate_stream('fx-1', 'fx.evolve_poly(anyelement, eventstore.event)', 0.5::numeric) AS numeric_state;

-- a PL/pgSQL evolve hands over its result (an expanded array here): the
-- fold keeps it, and it comes out whole
CREATE FUNCTION fx.versions_pl(s integer[], e eventstore.event) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    s := s || e.stream_version::integer;
    RETURN s;
END $$;
SELECT eventstore.aggregate_stream('fx-1', 'fx.versions_pl(integer[], eventstore.event)', '{}'::integer[]) AS versions,
       (SELECT eventstore.fold(e, 'fx.versions_pl(integer[], eventstore.event)', '{0}'::integer[] ORDER BY e.stream_version)
          FROM eventstore.read_stream('fx-1') e) AS fold;
SELECT eventstore.take_snapshot('fx-1', 'fx.versions_pl(integer[], eventstore.event)', '{}'::integer[], 2);
SELECT * FROM eventstore.load_state('fx-1', 'fx.versions_pl(integer[], eventstore.event)', '{}'::integer[]);

-- NULL states: a non-strict inlined evolve gets them as they are; a strict
-- one (inlined too: its body is strict) keeps a NULL state NULL
CREATE FUNCTION fx.count_sql(s integer, e eventstore.event) RETURNS integer
LANGUAGE sql IMMUTABLE AS 'SELECT coalesce(s, 100) + 1';
CREATE FUNCTION fx.sum_strict(s integer, e eventstore.event) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT AS 'SELECT s + (e).stream_version::integer';
BEGIN;
SELECT eventstore.aggregate_stream('fx-1', 'fx.count_sql(integer, eventstore.event)', NULL::integer) AS from_null,
       eventstore.aggregate_stream('fx-1', 'fx.sum_strict(integer, eventstore.event)', NULL::integer) IS NULL AS strict_stays_null,
       eventstore.aggregate_stream('fx-1', 'fx.sum_strict(integer, eventstore.event)', 0) AS strict_from_0;
SELECT funcname, calls FROM pg_stat_xact_user_functions
 WHERE schemaname = 'fx' AND funcname IN ('count_sql', 'sum_strict') ORDER BY funcname;
COMMIT;
RESET track_functions;

-- an event stored out of line is fetched whole into the event evolve
-- gets, which a state may keep
SELECT stream_version FROM eventstore.append('fx-big', 'Big',
    (SELECT jsonb_build_object('blob', string_agg(md5(g::text), '')) FROM generate_series(1, 5000) g));
CREATE FUNCTION fx.keep_data(s jsonb, e eventstore.event) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS 'SELECT (e).data';
CREATE FUNCTION fx.keep_event(s eventstore.event, e eventstore.event) RETURNS eventstore.event
LANGUAGE sql IMMUTABLE AS 'SELECT e';
SELECT length(st->>'blob') AS blob_length,
       st = (SELECT data FROM eventstore.read_stream('fx-big')) AS same_data
  FROM eventstore.aggregate_stream('fx-big', 'fx.keep_data(jsonb, eventstore.event)', NULL::jsonb) st;
SELECT length((ev).data->>'blob') AS blob_length,
       ev = (SELECT e FROM eventstore.read_stream('fx-big') e) AS same_event
  FROM eventstore.aggregate_stream('fx-big', 'fx.keep_event(eventstore.event, eventstore.event)',
                                   NULL::eventstore.event) ev;

-- handle_command folds with the same expression, before and after decide
CREATE FUNCTION fx.decide(c jsonb, s fx.acct) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_array(jsonb_build_object('type', 'Deposited',
                                                'data', jsonb_build_object('amount', (s).n + 1)))
$$;
SELECT version, state, appended
  FROM eventstore.handle_command('fx-2', 'fx.decide(jsonb, fx.acct)', '{}',
                                 'fx.evolve_sql(fx.acct, eventstore.event)', ROW(0, 0, NULL, 'x')::fx.acct);
SELECT version, state, appended
  FROM eventstore.handle_command('fx-2', 'fx.decide(jsonb, fx.acct)', '{}',
                                 'fx.evolve_sql(fx.acct, eventstore.event)', ROW(0, 0, NULL, 'x')::fx.acct);

-- An evolve whose body has an error: nothing to fold never reaches it, a
-- stream with events raises the error a direct call raises
CREATE FUNCTION fx.broken(s integer, e eventstore.event) RETURNS integer
LANGUAGE sql AS 'SELECT s / 0';
SELECT eventstore.aggregate_stream('no-such-stream', 'fx.broken(integer, eventstore.event)', 1) AS nothing_folded;
SELECT eventstore.aggregate_stream('fx-1', 'fx.broken(integer, eventstore.event)', 1);
\echo :SQLSTATE

--
-- Rights.  A SECURITY DEFINER evolve is not inlined: it runs as its
-- owner; any other runs as the caller, inlined or not.
--
CREATE FUNCTION fx.who_definer(s text, e eventstore.event) RETURNS text
LANGUAGE sql SECURITY DEFINER AS $$SELECT s || current_user || ';'$$;
ALTER FUNCTION fx.who_definer(text, eventstore.event) OWNER TO regress_fx_owner;
CREATE FUNCTION fx.who_invoker(s text, e eventstore.event) RETURNS text
LANGUAGE sql AS $$SELECT s || current_user || ';'$$;
SET ROLE regress_fx_user;
SELECT eventstore.aggregate_stream('fx-1', 'fx.who_definer(text, eventstore.event)', ''::text) AS definer,
       eventstore.aggregate_stream('fx-1', 'fx.who_invoker(text, eventstore.event)', ''::text) AS invoker;
SELECT eventstore.fold(e, 'fx.who_definer(text, eventstore.event)', ''::text ORDER BY e.stream_version) AS definer
  FROM eventstore.read_stream('fx-1', 1, 2) e;
RESET ROLE;

-- EXECUTE revoked on an inlinable evolve: 42501 before anything is folded
-- (the planner would not inline it either), as a direct call
REVOKE EXECUTE ON FUNCTION fx.evolve_sql(fx.acct, eventstore.event) FROM PUBLIC;
SET ROLE regress_fx_user;
SELECT fx.evolve_sql(NULL, NULL);
\echo :SQLSTATE
SELECT eventstore.aggregate_stream('fx-1', 'fx.evolve_sql(fx.acct, eventstore.event)', NULL::fx.acct);
\echo :SQLSTATE
SELECT * FROM eventstore.load_state('fx-1', 'fx.evolve_sql(fx.acct, eventstore.event)', NULL::fx.acct);
\echo :SQLSTATE
SELECT eventstore.take_snapshot('fx-1', 'fx.evolve_sql(fx.acct, eventstore.event)', NULL::fx.acct);
\echo :SQLSTATE
SELECT eventstore.fold(e, 'fx.evolve_sql(fx.acct, eventstore.event)', NULL::fx.acct ORDER BY e.stream_version)
  FROM eventstore.read_stream('fx-1') e;
\echo :SQLSTATE
-- ... and on a function an evolve's body calls: an evolve that is not
-- inlined (a SET clause) fails in its query, as a direct call would
SELECT eventstore.aggregate_stream('fx-1', 'fx.evolve_set(fx.acct, eventstore.event)', NULL::fx.acct);
\echo :SQLSTATE
RESET ROLE;
CREATE FUNCTION fx.secret(n integer) RETURNS integer LANGUAGE plpgsql AS 'BEGIN RETURN n + 1; END';
REVOKE EXECUTE ON FUNCTION fx.secret(integer) FROM PUBLIC;
CREATE FUNCTION fx.uses_secret(s integer, e eventstore.event) RETURNS integer
LANGUAGE sql AS 'SELECT fx.secret(s)';
SET ROLE regress_fx_user;
-- an inlined one when the fold plans its expression, for the caller
SELECT fx.uses_secret(0, NULL);
\echo :SQLSTATE
SELECT eventstore.aggregate_stream('fx-1', 'fx.uses_secret(integer, eventstore.event)', 0);
\echo :SQLSTATE
RESET ROLE;
SELECT eventstore.aggregate_stream('fx-1', 'fx.uses_secret(integer, eventstore.event)', 0) AS as_owner;

--
-- search_path.  tag() in fx_good is what the evolves mean; the caller's
-- path leads to fx_evil's first.  A body bound when created (BEGIN ATOMIC)
-- or run under its own SET search_path is not subverted; a body written as
-- a string without SET resolves its names under the caller's path, as a
-- direct call does, inlined or not.
--
CREATE FUNCTION fx_good.tag() RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT 'good'$$;
CREATE FUNCTION fx_evil.tag() RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT 'evil'$$;
SET search_path = fx_good, public;
CREATE FUNCTION fx.tag_atomic(s text, e eventstore.event) RETURNS text
LANGUAGE sql IMMUTABLE
BEGIN ATOMIC
    SELECT s || tag() || ';';
END;
CREATE FUNCTION fx.tag_set(s text, e eventstore.event) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = fx_good AS $$SELECT s || tag() || ';'$$;
CREATE FUNCTION fx.tag_plain(s text, e eventstore.event) RETURNS text
LANGUAGE sql IMMUTABLE AS $$SELECT s || tag() || ';'$$;
SET search_path = fx_evil, fx_good, public;
SET ROLE regress_fx_user;
SELECT eventstore.aggregate_stream('fx-1', 'fx.tag_atomic(text, eventstore.event)', ''::text) AS atomic,
       eventstore.aggregate_stream('fx-1', 'fx.tag_set(text, eventstore.event)', ''::text) AS with_set;
-- one event: the fold and a direct call agree
SELECT eventstore.aggregate_stream('fx-1', 'fx.tag_plain(text, eventstore.event)', ''::text, to_version => 1) AS fold,
       (SELECT fx.tag_plain('', e) FROM eventstore.read_stream('fx-1', 1, 1) e) AS direct_call;
RESET ROLE;
RESET search_path;

--
-- A snapshot policy: the worker folds as the policy's owner, under the
-- search_path its creator had, with the evolve inlined as in a direct load.
--
SET search_path = fx_good, public;
CREATE FUNCTION fx.tag_who(s text, e eventstore.event) RETURNS text
LANGUAGE sql STABLE AS $$SELECT s || tag() || ':' || current_user || ';'$$;
SET ROLE regress_fx_user;
SELECT eventstore.create_snapshot_policy('fx', 'fx.tag_who(text, eventstore.event)', ''::text,
                                         stream_prefix => 'fxp-', every => 2);
RESET search_path;
RESET ROLE;
SELECT stream_version FROM eventstore.append_events('fxp-1',
    '[{"type": "A", "data": {}}, {"type": "B", "data": {}}, {"type": "C", "data": {}}, {"type": "D", "data": {}}]');
SELECT eventstore.wait_for_projection('snapshot:fx');
SELECT stream_version, state FROM eventstore.snapshots WHERE stream_id = 'fxp-1' ORDER BY stream_version;
SET ROLE regress_fx_user;
SELECT eventstore.drop_snapshot_policy('fx');
RESET ROLE;

SET client_min_messages = warning;
DROP EXTENSION eventstore CASCADE;
DROP SCHEMA fx, fx_good, fx_evil CASCADE;
DROP OWNED BY regress_fx_user, regress_fx_owner;
RESET client_min_messages;
DROP ROLE regress_fx_user, regress_fx_owner;
