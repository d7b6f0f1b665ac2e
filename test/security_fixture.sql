\set sec_echo :ECHO
\set ECHO none
--
-- The fixture shared by the regression tests security_attack, security_fuzz
-- and security_parallel, which include it after CREATE EXTENSION with
--
--     \i test/security_fixture.sql
--
-- (pg_regress runs psql from the top of the tree).  Its statements are not
-- echoed; the results of its queries are, and are part of each test's
-- expected output.  psql variables a test may set before including it:
--
--   sec_all_functions  true: regress_sec.functions lists the functions
--                      taking an argument of type internal too (default
--                      false: only those SQL can call)
--   sec_archive_after  the age of the archive policy sec_arch_pol
--                      (default 365 days)
--
\if :{?sec_all_functions}
\else
\set sec_all_functions false
\endif
\if :{?sec_archive_after}
\else
\set sec_archive_after '365 days'
\endif
-- The fixture: a schema of helpers, a stream of each kind, a projection of
-- each mode, a snapshot, a snapshot policy, a subscription with leased and
-- parked events, an archive policy.
CREATE SCHEMA regress_sec;
CREATE FUNCTION regress_sec.evolve(s bigint, e eventstore.event) RETURNS bigint
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog RETURN s OPERATOR(pg_catalog.+) 1;
CREATE FUNCTION regress_sec.decide(c jsonb, s bigint) RETURNS jsonb
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog
    RETURN '[{"type": "SecDecided", "data": {}}]'::jsonb;
CREATE TABLE regress_sec.seen (n bigint);
CREATE FUNCTION regress_sec.handler(e eventstore.event) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog
    RETURN NULL;
GRANT USAGE ON SCHEMA regress_sec TO PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regress_sec TO PUBLIC;

-- An SQL call of f with plausible arguments: every input argument given,
-- positionally, as a constant of a pg_catalog type (nothing in the call
-- itself resolves through the search_path).
CREATE FUNCTION regress_sec.arg(f regprocedure, argname text, argtype regtype) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
SELECT coalesce(
    (SELECT v FROM (VALUES
        ('restore_stream', 'stream_id', '''sec-arch'''),
        ('archive_stream', 'stream_id', '''sec-2'''),
        ('set_stream_metadata', 'max_count', '100::pg_catalog.int8'),
        ('read_all', 'max_count', '10::pg_catalog.int8'),
        ('read_stream', 'max_count', '10::pg_catalog.int8'),
        ('create_projection', 'name', '''sec_new'''),
        ('create_projection', 'event_types', '''{SecEvent}''::pg_catalog.text[]'),
        ('create_subscription', 'name', '''sec_sub_new'''),
        ('create_subscription', 'event_types', '''{SecEvent}''::pg_catalog.text[]'),
        ('create_snapshot_policy', 'name', '''sec_pol_new'''),
        ('create_archive_policy', 'name', '''sec_arch_new'''),
        ('_report_progress', 'operation', '''archive_streams''')
     ) AS o(fn, a, v)
     WHERE o.fn = (SELECT proname FROM pg_proc WHERE oid = f) AND o.a = argname),
    (SELECT v FROM (VALUES
        ('stream_id', '''sec-1'''), ('p_stream_id', '''sec-1'''),
        ('event_type', '''SecEvent'''),
        ('data', '''{"n": 1}''::pg_catalog.jsonb'), ('command', '''{"n": 1}''::pg_catalog.jsonb'),
        ('metadata', '''{"m": 1}''::pg_catalog.jsonb'),
        ('events', '''[{"type": "SecEvent", "data": {}}]''::pg_catalog.jsonb'),
        ('evolve', '''regress_sec.evolve(pg_catalog.int8, eventstore.event)''::pg_catalog.regprocedure'),
        ('decide', '''regress_sec.decide(pg_catalog.jsonb, pg_catalog.int8)''::pg_catalog.regprocedure'),
        ('handler', '''regress_sec.handler(eventstore.event)''::pg_catalog.regprocedure'),
        ('initial', '0::pg_catalog.int8'),
        ('name', CASE WHEN (SELECT proname FROM pg_proc WHERE oid = f) ~ 'subscription' THEN '''sec_sub'''
                      WHEN (SELECT proname FROM pg_proc WHERE oid = f) ~ 'snapshot_policy' THEN '''sec_pol'''
                      WHEN (SELECT proname FROM pg_proc WHERE oid = f) ~ 'archive_polic' THEN '''sec_arch_pol'''
                      ELSE '''sec_inline''' END),
        ('projection', '''sec_inline'''),
        ('subscription', '''sec_sub'''), ('consumer', '''sec_consumer'''),
        ('positions', '''{1,2,3,4,5,6}''::pg_catalog.int8[]'),
        ('stream_prefix', '''sec-'''),
        ('event_types', 'NULL::pg_catalog.text[]'),
        ('on_event_types', 'NULL::pg_catalog.text[]'),
        ('mode', '''inline'''), ('replay', 'false'), ('catch_up', 'false'),
        ('timeout', '''10ms''::pg_catalog.interval'),
        ('lease_timeout', '''30s''::pg_catalog.interval'),
        ('retry_after', '''0''::pg_catalog.interval'),
        ('max_age', '''1 day''::pg_catalog.interval'),
        ('inactive_for', '''1 day''::pg_catalog.interval'),
        ('error', '''sec error'''),
        ('snapshot_tag', 'NULL::pg_catalog.text'),
        ('use_snapshots', 'true'), ('start_from', '0::pg_catalog.int8'),
        ('e', '''(1,sec-1,1,00000000-0000-4000-8000-000000000001,SecEvent,{},,2000-01-01)''::eventstore.event'),
        ('what', '''async projections''')
     ) AS d(a, v) WHERE d.a = argname),
    CASE argtype
        WHEN 'text'::regtype THEN '''sec'''
        WHEN 'bigint'::regtype THEN 'NULL::pg_catalog.int8'
        WHEN 'integer'::regtype THEN '10::pg_catalog.int4'
        WHEN 'boolean'::regtype THEN 'false'
        WHEN 'jsonb'::regtype THEN '''{}''::pg_catalog.jsonb'
        WHEN 'interval'::regtype THEN '''1 hour''::pg_catalog.interval'
        WHEN 'timestamptz'::regtype THEN 'NULL::pg_catalog.timestamptz'
        WHEN 'bigint[]'::regtype THEN '''{1}''::pg_catalog.int8[]'
        WHEN 'text[]'::regtype THEN '''{SecEvent}''::pg_catalog.text[]'
        WHEN 'anyelement'::regtype THEN '0::pg_catalog.int8'
        WHEN 'regprocedure'::regtype THEN '''regress_sec.evolve(pg_catalog.int8, eventstore.event)''::pg_catalog.regprocedure'
        WHEN 'eventstore.event'::regtype THEN '''(1,sec-1,1,00000000-0000-4000-8000-000000000001,SecEvent,{},,2000-01-01)''::eventstore.event'
        ELSE 'NULL'
    END)
$$;
CREATE FUNCTION regress_sec.call(f regprocedure, args text[] DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
SELECT CASE WHEN p.prokind = 'a' OR p.prorettype = 'trigger'::regtype THEN 'SELECT '
            ELSE 'SELECT NULL FROM ' END
       || quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '('
       || coalesce((SELECT string_agg(coalesce(args[i + 1],
                                                regress_sec.arg(f, p.proargnames[i + 1], p.proargtypes[i])), ', '
                                       ORDER BY i)
                      FROM generate_series(0, p.pronargs - 1) AS i), '')
       || ')'
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.oid = f
$$;
-- Every function of the extension that SQL can call (not those taking an
-- argument of type internal), or every function at all when the test sets
-- sec_all_functions.
CREATE VIEW regress_sec.functions AS
SELECT p.oid::regprocedure AS f, p.proname::text AS name
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
   AND (:sec_all_functions OR NOT 'internal'::regtype = ANY (p.proargtypes))
   AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'eventstore');
CREATE VIEW regress_sec.relations AS
SELECT c.oid::regclass AS r, c.relname::text AS name, c.relkind
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
   AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'eventstore');

SELECT stream_version FROM eventstore.append_events('sec-1',
    '[{"type": "SecEvent", "data": {"n": 1}}, {"type": "SecEvent", "data": {"n": 2}},
      {"type": "Other", "data": {}}]');
SELECT stream_version FROM eventstore.append('sec-2', 'SecEvent', '{}');
SELECT stream_version FROM eventstore.append('sec-arch', 'SecEvent', '{}');
SELECT stream_version FROM eventstore.append('sec-set', 'SecEvent', '{}');
SELECT eventstore.archive_stream('sec-arch');
SELECT (eventstore.set_stream_metadata('sec-set', max_count => 5)).state;
SELECT eventstore.create_projection('sec_inline', 'regress_sec.handler(eventstore.event)', replay => false);
SELECT eventstore.create_projection('sec_async', 'regress_sec.handler(eventstore.event)', mode => 'async');
SELECT eventstore.take_snapshot('sec-1', 'regress_sec.evolve(bigint,eventstore.event)', 0::bigint);
SELECT eventstore.create_snapshot_policy('sec_pol', 'regress_sec.evolve(bigint,eventstore.event)', 0::bigint,
                                         stream_prefix => 'sec-', every => 2);
SELECT eventstore.create_archive_policy('sec_arch_pol', :'sec_archive_after');
-- two lanes (0.9.0): every fetch of it under attack goes through a lane
SELECT eventstore.create_subscription('sec_sub', max_attempts => 1, lanes => 2);
SELECT eventstore.wait_for_projection('sec_async');
SELECT count(*) AS leased FROM eventstore.subscription_fetch('sec_sub', 'sec_consumer', 2);
SELECT eventstore.subscription_nack('sec_sub', 'sec_consumer', '{1}') AS parked;
SELECT count(*) AS leased FROM eventstore.subscription_fetch('sec_sub', 'sec_consumer', 2);
\set ECHO :sec_echo
