--
-- The generic attack test (issue 12, "How it must be proven"): every
-- function of the extension (enumerated from the catalog, so new ones are
-- covered), called as each role the README describes, with a search_path
-- that hijacks operators and functions, must never run the planted code
-- with more rights than the caller, never make the caller a superuser, and
-- refuse with 42501 whatever the caller may not do.
--
-- The roles, granted as the README says:
--   reader      read_stream, stream_version, read_all, global_horizon,
--               stream_info, get_stream_metadata, and the state functions
--               (aggregate_stream, load_state, take_snapshot, fold)
--   writer      the reader's grants, append, append_events, handle_command
--   consumer    subscription_fetch/ack/nack, global_horizon, subscription_status
--   subadmin    create/drop_subscription, subscription_replay_parked,
--               subscription_parked, global_horizon, subscription_status
--   projmgr     the projection and snapshot policy functions, with the
--               table privileges on projections and projection_checkpoints
--   storeadmin  the lifecycle functions (store_admin)
--   nobody      nothing
--
-- Each role owns a schema regress_atk_<role> holding: an operator of the
-- same name and argument types for every pg_catalog operator on the types
-- the extension's queries use (polymorphic ones instantiated for text,
-- bigint and integer); a function of the same signature for every
-- pg_catalog function whose name appears in the extension's SQL or C
-- queries; and a function of the same signature as every function of the
-- extension (for unqualified references).  Each calls
-- regress_canary.hit(), which records who ran it and, when that is a
-- superuser, makes the attacker one.  Every call runs with the hijacking
-- schema first (search_path = regress_atk_<role>, pg_catalog) and last
-- (pg_catalog, regress_atk_<role>), in a subtransaction that is rolled back,
-- so each sees the same fixture.  Caches are made cold before each call.
--
-- Output: violations only.
--
CREATE EXTENSION eventstore;
\set VERBOSITY terse
-- The fixture (test/security_fixture.sql): a schema of helpers, a stream
-- of each kind, a projection of each mode, a snapshot, a snapshot policy,
-- a subscription with leased and parked events, an archive policy.
\i test/security_fixture.sql

--
-- The canary.  hit() runs with the rights of whoever calls the planted
-- code; it counts every call (regress_canary.hits, not transactional, so
-- calls that fail count too), records it, and when it runs as a role other
-- than the attacker or as a superuser counts an escalation and does what an
-- attacker would do.
--
CREATE SCHEMA regress_canary;
CREATE TABLE regress_canary.canary (attacker text, caller text, cur text,
                                    sess text, su boolean, what text);
CREATE SEQUENCE regress_canary.hits;
CREATE SEQUENCE regress_canary.escalations;
CREATE FUNCTION regress_canary.hit(attacker text, what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    su boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    PERFORM nextval('regress_canary.hits');
    INSERT INTO regress_canary.canary
         VALUES (attacker, current_setting('regress_atk.caller', true),
                 current_user, session_user, su, what);
    IF su OR current_user <> attacker THEN
        PERFORM nextval('regress_canary.escalations');
    END IF;
    IF su AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = attacker) THEN
        EXECUTE format('ALTER ROLE %I SUPERUSER', attacker);
    END IF;
END $$;
GRANT USAGE ON SCHEMA regress_canary TO PUBLIC;
GRANT INSERT, SELECT ON regress_canary.canary TO PUBLIC;
GRANT USAGE ON SEQUENCE regress_canary.hits, regress_canary.escalations TO PUBLIC;

-- A function nobody but its owner may run: calling it for someone is a
-- violation too (it counts in regress_canary.secret).
CREATE SEQUENCE regress_canary.secret;
CREATE FUNCTION regress_sec.secret_evolve(s bigint, e eventstore.event) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM nextval('regress_canary.secret');
    RETURN s + 1;
END $$;
CREATE FUNCTION regress_sec.secret_decide(c jsonb, s bigint) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM nextval('regress_canary.secret');
    RETURN '[]';
END $$;
CREATE FUNCTION regress_sec.secret_handler(e eventstore.event) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM nextval('regress_canary.secret');
END $$;
REVOKE ALL ON FUNCTION regress_sec.secret_evolve(bigint, eventstore.event),
                       regress_sec.secret_decide(jsonb, bigint),
                       regress_sec.secret_handler(eventstore.event) FROM PUBLIC;

--
-- The roles, granted as the README's Roles and Privileges sections say.
--
CREATE ROLE regress_atk_reader NOLOGIN;
CREATE ROLE regress_atk_writer NOLOGIN;
CREATE ROLE regress_atk_consumer NOLOGIN;
CREATE ROLE regress_atk_subadmin NOLOGIN;
CREATE ROLE regress_atk_projmgr NOLOGIN;
CREATE ROLE regress_atk_storeadmin NOLOGIN;
CREATE ROLE regress_atk_nobody NOLOGIN;
GRANT USAGE ON SCHEMA eventstore TO regress_atk_reader, regress_atk_writer,
    regress_atk_consumer, regress_atk_subadmin, regress_atk_projmgr, regress_atk_storeadmin;
GRANT EXECUTE ON FUNCTION eventstore.read_stream(text, bigint, bigint, boolean),
                          eventstore.stream_version(text),
                          eventstore.read_all(bigint, bigint, text[], text),
                          eventstore.global_horizon(),
                          eventstore.stream_info(text),
                          eventstore.get_stream_metadata(text),
                          eventstore.aggregate_stream(text, regprocedure, anyelement, bigint, timestamptz, boolean, text),
                          eventstore.load_state(text, regprocedure, anyelement, bigint, timestamptz, boolean, text),
                          eventstore.take_snapshot(text, regprocedure, anyelement, bigint, text),
                          eventstore.fold(eventstore.event, regprocedure, anyelement)
   TO regress_atk_reader, regress_atk_writer;
GRANT EXECUTE ON FUNCTION eventstore.append(text, text, jsonb, jsonb, bigint, uuid),
                          eventstore.append_events(text, jsonb, bigint),
                          eventstore.handle_command(text, regprocedure, jsonb, regprocedure, anyelement, integer, boolean, text)
   TO regress_atk_writer;
GRANT EXECUTE ON FUNCTION eventstore.subscription_fetch(text, text, integer),
                          eventstore.subscription_ack(text, text, bigint[]),
                          eventstore.subscription_nack(text, text, bigint[], text, interval),
                          eventstore.global_horizon()
   TO regress_atk_consumer;
GRANT SELECT ON eventstore.subscription_status TO regress_atk_consumer, regress_atk_subadmin;
GRANT EXECUTE ON FUNCTION eventstore.create_subscription(text, text[], text, bigint, interval, integer, integer),
                          eventstore.drop_subscription(text, boolean),
                          eventstore.subscription_replay_parked(text, bigint[]),
                          eventstore.subscription_parked(text),
                          eventstore.global_horizon()
   TO regress_atk_subadmin;
GRANT EXECUTE ON FUNCTION eventstore.create_projection(text, regprocedure, text[], text, text, boolean, integer),
                          eventstore.drop_projection(text, boolean),
                          eventstore.disable_projection(text),
                          eventstore.enable_projection(text, boolean),
                          eventstore.rebuild_projection(text),
                          eventstore.retry_projection(text),
                          eventstore.wait_for_projection(text, interval),
                          eventstore.create_snapshot_policy(text, regprocedure, anyelement, text, integer, text[], text),
                          eventstore.drop_snapshot_policy(text, boolean)
   TO regress_atk_projmgr;
GRANT SELECT, INSERT, UPDATE, DELETE ON eventstore.projections, eventstore.projection_checkpoints
   TO regress_atk_projmgr;
GRANT SELECT ON eventstore.projection_status TO regress_atk_projmgr;
-- Up to 0.3.0 the management functions ran as their caller and needed
-- EXECUTE on the internal helpers they call and SELECT on the position
-- sequence too (the README leaves management to the extension's owner):
-- grant those where they exist still (once management is SECURITY DEFINER
-- this grants nothing that matters).
DO $$
BEGIN
    EXECUTE coalesce((SELECT string_agg(format('GRANT EXECUTE ON FUNCTION %s TO regress_atk_projmgr', f), '; ')
                        FROM regress_sec.functions AS h
                       WHERE h.name LIKE '\_%'
                         AND EXISTS (SELECT FROM pg_proc AS p
                                      WHERE has_function_privilege('regress_atk_projmgr', p.oid, 'EXECUTE')
                                        AND p.oid IN (SELECT f FROM regress_sec.functions)
                                        AND p.prosrc LIKE '%eventstore.' || h.name || '(%')),
                     'SELECT');
END $$;
GRANT SELECT ON SEQUENCE eventstore.global_position_seq TO regress_atk_projmgr;
GRANT EXECUTE ON FUNCTION eventstore.set_stream_metadata(text, interval, bigint, bigint),
                          eventstore.delete_stream(text, bigint),
                          eventstore.tombstone_stream(text, bigint),
                          eventstore.archive_stream(text),
                          eventstore.restore_stream(text),
                          eventstore.archive_streams(interval, text, integer),
                          eventstore.create_archive_policy(text, interval, text),
                          eventstore.drop_archive_policy(text, boolean)
   TO regress_atk_storeadmin;
GRANT SELECT ON eventstore.lifecycle_status TO regress_atk_storeadmin;

CREATE TABLE regress_canary.roles (role text PRIMARY KEY);
INSERT INTO regress_canary.roles
SELECT 'regress_atk_' || r
  FROM unnest('{reader,writer,consumer,subadmin,projmgr,storeadmin,nobody}'::text[]) AS r;

--
-- The hijacking schemas, created by their roles.
--
-- Types the extension's queries compare, add, concatenate or test.
CREATE TABLE regress_canary.types (t regtype PRIMARY KEY);
INSERT INTO regress_canary.types
SELECT t::regtype FROM unnest('{text,name,"\"char\"",bigint,integer,smallint,oid,boolean,
    numeric,double precision,timestamptz,timestamp,date,interval,jsonb,json,uuid,bytea,
    regclass,regrole,regproc,regprocedure,regtype,regnamespace,xid,xid8,tid,pg_lsn,
    text[],bigint[],integer[],name[],oid[],jsonb[],uuid[],regrole[]}'::text[]) AS t;
-- A polymorphic type instantiated with element type e.
CREATE FUNCTION regress_canary.inst(t regtype, e regtype) RETURNS regtype
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
SELECT CASE WHEN t IN ('anyelement', 'anycompatible', 'anynonarray') THEN e
            WHEN t IN ('anyarray', 'anycompatiblearray') THEN (SELECT typarray FROM pg_type WHERE oid = e)::regtype
            ELSE t END
$$;
-- The pg_catalog operators to plant.
CREATE VIEW regress_canary.operators AS
SELECT DISTINCT ON (o.oprname, l, r) o.oprname AS name, l, r, res
  FROM pg_operator o
 CROSS JOIN unnest('{text,bigint,integer}'::regtype[]) WITH ORDINALITY AS e(e, n)
 CROSS JOIN LATERAL (SELECT CASE WHEN o.oprleft = 0 THEN NULL ELSE regress_canary.inst(o.oprleft, e.e) END AS l,
                            regress_canary.inst(o.oprright, e.e) AS r,
                            regress_canary.inst(o.oprresult, e.e) AS res) AS i
 WHERE o.oprnamespace = 'pg_catalog'::regnamespace
   AND (i.l IS NULL OR i.l IN (SELECT t FROM regress_canary.types))
   AND i.r IN (SELECT t FROM regress_canary.types)
   AND (SELECT typtype FROM pg_type WHERE oid = i.res) <> 'p'
 ORDER BY o.oprname, l, r, (o.oprleft::regtype = l AND o.oprright::regtype = r) DESC, e.n;
-- The pg_catalog functions to plant: those whose names the extension's
-- SQL functions call, and those its C code's queries call (listed).
CREATE VIEW regress_canary.called_names AS
SELECT DISTINCT m[1] AS name
  FROM pg_proc p
 CROSS JOIN LATERAL regexp_matches(lower(p.prosrc), '([a-z_][a-z0-9_]*)\s*\(', 'g') AS m
 WHERE p.oid IN (SELECT f FROM regress_sec.functions)
   AND p.prolang IN (SELECT oid FROM pg_language WHERE lanname IN ('sql', 'plpgsql'))
UNION
SELECT unnest('{now,power,clock_timestamp,current_setting,set_config,starts_with,format,
                cardinality,array_position,array_remove,octet_length,length,substr,left,
                md5,has_function_privilege,has_table_privilege,pg_has_role,least,
                greatest,array_length,unnest,jsonb_typeof,jsonb_array_length,
                jsonb_array_elements,jsonb_build_object,to_jsonb,lower,upper,
                pg_notify,txid_current,pg_advisory_xact_lock,hashtext,
                statement_timestamp,transaction_timestamp,date_trunc,age,
                make_interval,extract,date_part,abs}'::text[]);
CREATE VIEW regress_canary.functions AS
SELECT DISTINCT ON (p.proname, args) p.proname AS name, args, res, p.proretset AS retset
  FROM pg_proc p
 CROSS JOIN unnest('{text,bigint,integer}'::regtype[]) WITH ORDINALITY AS e(e, n)
 CROSS JOIN LATERAL (SELECT array_agg(regress_canary.inst(a, e.e) ORDER BY k) AS args,
                            regress_canary.inst(p.prorettype, e.e) AS res
                       FROM unnest(p.proargtypes::regtype[]) WITH ORDINALITY AS x(a, k)) AS i
 WHERE p.pronamespace = 'pg_catalog'::regnamespace
   AND p.prokind = 'f' AND p.provariadic = 0 AND p.proallargtypes IS NULL
   AND p.proname IN (SELECT name FROM regress_canary.called_names)
   AND (p.pronargs = 0 OR i.args <@ (SELECT array_agg(t) FROM regress_canary.types))
   AND (i.res IN (SELECT t FROM regress_canary.types) OR i.res IN ('void', 'boolean'))
 ORDER BY p.proname, args, e.n;
GRANT SELECT ON regress_canary.types, regress_canary.operators, regress_canary.called_names,
                regress_canary.functions TO PUBLIC;
GRANT SELECT ON regress_sec.functions TO PUBLIC;

DO $$
DECLARE
    r record;
    o record;
    s text;
    fn text;
    n integer := 0;
BEGIN
    -- "$user" would name the schemas being filled
    SET LOCAL search_path = pg_catalog, public;
    FOR r IN SELECT role FROM regress_canary.roles ORDER BY role LOOP
        s := quote_ident(r.role);
        EXECUTE format('CREATE SCHEMA %s AUTHORIZATION %s', s, s);
        EXECUTE format('SET LOCAL ROLE %s', s);
        FOR o IN SELECT * FROM regress_canary.operators ORDER BY 1, 2, 3 LOOP
            n := n + 1;
            fn := s || '.op' || n;
            EXECUTE format('CREATE FUNCTION %s(%s) RETURNS %s LANGUAGE plpgsql'
                           ' SET search_path = pg_catalog AS $f$BEGIN'
                           ' PERFORM regress_canary.hit(%L, %L);'
                           ' RETURN %s OPERATOR(pg_catalog.%s) $%s; END$f$',
                           fn, concat_ws(', ', o.l, o.r), o.res, r.role,
                           format('%s(%s)', o.name, concat_ws(',', o.l, o.r)),
                           CASE WHEN o.l IS NOT NULL THEN '$1' END, o.name,
                           CASE WHEN o.l IS NULL THEN 1 ELSE 2 END);
            EXECUTE format('CREATE OPERATOR %s.%s (%s RIGHTARG = %s, FUNCTION = %s)',
                           s, o.name, CASE WHEN o.l IS NOT NULL THEN format('LEFTARG = %s,', o.l) END,
                           o.r, fn);
        END LOOP;
        FOR o IN SELECT * FROM regress_canary.functions ORDER BY 1, 2 LOOP
            EXECUTE format('CREATE FUNCTION %s.%I(%s) RETURNS %s%s LANGUAGE plpgsql'
                           ' SET search_path = pg_catalog AS $f$BEGIN'
                           ' PERFORM regress_canary.hit(%L, %L);'
                           ' %s pg_catalog.%I(%s); END$f$',
                           s, o.name, array_to_string(o.args, ', '),
                           CASE WHEN o.retset THEN 'SETOF ' ELSE '' END, o.res, r.role,
                           format('%s(%s)', o.name, array_to_string(o.args, ',')),
                           CASE WHEN o.retset THEN 'RETURN QUERY SELECT * FROM'
                                WHEN o.res = 'void'::regtype THEN 'PERFORM'
                                ELSE 'RETURN' END,
                           o.name,
                           (SELECT string_agg('$' || k, ', ') FROM generate_series(1, cardinality(o.args)) AS k));
        END LOOP;
        -- format() is variadic "any": plant text versions.
        FOR k IN 1..4 LOOP
            EXECUTE format('CREATE FUNCTION %s.format(%s) RETURNS text LANGUAGE plpgsql'
                           ' SET search_path = pg_catalog AS $f$BEGIN'
                           ' PERFORM regress_canary.hit(%L, %L);'
                           ' RETURN pg_catalog.format(%s); END$f$',
                           s, array_to_string(array_fill('text'::text, ARRAY[k + 1]), ', '), r.role,
                           'format(text x ' || (k + 1) || ')',
                           (SELECT string_agg('$' || j, ', ') FROM generate_series(1, k + 1) AS j));
        END LOOP;
        -- The extension's functions, for unqualified references (a role
        -- without USAGE on eventstore cannot name some of their types).
        FOR o IN SELECT f, name, pg_get_function_arguments(f) AS args,
                        pg_get_function_result(f) AS res, p.proretset, p.prorettype,
                        p.proallargtypes IS NOT NULL AS has_out
                   FROM regress_sec.functions JOIN pg_proc p ON p.oid = f
                  WHERE p.prorettype NOT IN ('trigger'::regtype, 'internal'::regtype)
                    AND p.prokind = 'f'
                  ORDER BY 1 LOOP
            BEGIN
                EXECUTE format('CREATE FUNCTION %s.%I(%s) RETURNS %s LANGUAGE plpgsql'
                               ' SET search_path = pg_catalog AS $f$BEGIN'
                               ' PERFORM regress_canary.hit(%L, %L); %s END$f$',
                               s, o.name, o.args, o.res, r.role, o.f::text,
                               CASE WHEN o.proretset OR o.has_out OR o.prorettype = 'void'::regtype
                                    THEN 'RETURN;' ELSE 'RETURN NULL;' END);
            EXCEPTION WHEN insufficient_privilege THEN
                NULL;
            END;
        END LOOP;
        RESET ROLE;
    END LOOP;
END $$;
-- What was planted, per role (the same for every role).
SELECT count(*) > 300 AS operators, count(DISTINCT name) >= 20 AS operator_names
  FROM regress_canary.operators;
SELECT count(*) > 50 AS functions FROM regress_canary.functions;
SELECT name FROM unnest('{=,<>,<,<=,>,>=,+,-,||,~~}'::text[]) AS name
EXCEPT SELECT name FROM regress_canary.operators;
SELECT name FROM unnest('{now,clock_timestamp,starts_with,cardinality,array_position,
                          array_remove,octet_length,length,substr,power,left,md5,
                          current_setting,set_config,has_function_privilege,pg_has_role}'::text[]) AS name
EXCEPT SELECT name FROM regress_canary.functions;

--
-- The calls: every role x both search paths x every function, with
-- plausible arguments; then, for the functions that call a user's function
-- (evolve, decide, handler), the same call naming a function the caller may
-- not execute.
--
CREATE TABLE regress_canary.results (role text, path text, f regprocedure, variant text,
                                     may_execute boolean, sqlstate text, message text,
                                     hits bigint, escalations bigint, secret bigint,
                                     became_superuser boolean, canary text);
DO $$
DECLARE
    r record;
    c record;
    v record;
    set_role text;
    set_path text;
    st text;
    msg text;
    h0 bigint; e0 bigint; s0 bigint;
    is_su boolean;
    seen text;
BEGIN
    FOR r IN SELECT role FROM regress_canary.roles ORDER BY role LOOP
      FOR v IN SELECT * FROM (VALUES (1, 'first'), (2, 'last')) AS v(n, path) ORDER BY n LOOP
        FOR c IN
            SELECT f, 'plausible' AS variant, regress_sec.call(f) AS call
              FROM regress_sec.functions
            UNION ALL
            SELECT f, 'secret ' || p.proargnames[k],
                   regress_sec.call(f, array_fill(NULL::text, ARRAY[k - 1]) ||
                       CASE p.proargnames[k]
                           WHEN 'evolve' THEN '''regress_sec.secret_evolve(pg_catalog.int8, eventstore.event)''::pg_catalog.regprocedure'
                           WHEN 'decide' THEN '''regress_sec.secret_decide(pg_catalog.jsonb, pg_catalog.int8)''::pg_catalog.regprocedure'
                           ELSE '''regress_sec.secret_handler(eventstore.event)''::pg_catalog.regprocedure' END)
              FROM regress_sec.functions JOIN pg_proc p ON p.oid = f
             CROSS JOIN generate_series(1, p.pronargs) AS k
             WHERE p.proargtypes[k - 1] = 'regprocedure'::regtype
               AND p.proargnames[k] IN ('evolve', 'decide', 'handler')
             ORDER BY 1, 2
        LOOP
            set_role := format('SET LOCAL ROLE %I', r.role);
            set_path := format('SET LOCAL search_path = %s',
                               CASE v.n WHEN 1 THEN quote_ident(r.role) || ', pg_catalog'
                                        ELSE 'pg_catalog, ' || quote_ident(r.role) END);
            SELECT last_value INTO h0 FROM regress_canary.hits;
            SELECT last_value INTO e0 FROM regress_canary.escalations;
            SELECT last_value INTO s0 FROM regress_canary.secret;
            is_su := NULL;
            seen := NULL;
            BEGIN
                -- cold caches: the projection list and the plans that
                -- depend on functions are read again
                ALTER FUNCTION regress_sec.handler(eventstore.event) COST 1;
                BEGIN
                    UPDATE eventstore.projections SET priority = priority WHERE false;
                EXCEPTION WHEN OTHERS THEN
                    NULL;
                END;
                PERFORM set_config('regress_atk.caller', r.role, true);
                EXECUTE set_role;
                EXECUTE set_path;
                EXECUTE c.call;
                RESET search_path;
                RESET ROLE;
                SELECT rolsuper INTO is_su FROM pg_roles WHERE rolname = r.role;
                SELECT string_agg(format('%s as %s%s', what, cur, CASE WHEN su THEN ' (superuser)' END), '; '
                                  ORDER BY what, cur)
                  INTO seen FROM (SELECT DISTINCT what, cur, su FROM regress_canary.canary) AS d;
                RAISE EXCEPTION USING ERRCODE = 'ZZ999';   -- undo the call
            EXCEPTION WHEN OTHERS THEN
                st := SQLSTATE;
                msg := SQLERRM;
            END;
            INSERT INTO regress_canary.results
            SELECT r.role, v.path, c.f, c.variant,
                   has_schema_privilege(r.role, 'eventstore', 'USAGE')
                   AND has_function_privilege(r.role, c.f, 'EXECUTE'),
                   nullif(st, 'ZZ999'), CASE WHEN st <> 'ZZ999' THEN msg END,
                   h.last_value - h0, e.last_value - e0, s.last_value - s0, is_su, seen
              FROM regress_canary.hits AS h, regress_canary.escalations AS e,
                   regress_canary.secret AS s;
        END LOOP;
      END LOOP;
    END LOOP;
END $$;

SELECT count(DISTINCT f) > 60 AS functions_tested, count(DISTINCT role) AS roles,
       count(DISTINCT path) AS paths
  FROM regress_canary.results;
-- Violations: planted code that ran with another role's rights or as a
-- superuser, an attacker made superuser, a function the caller may not
-- execute run for it, a refusal that is not 42501, an internal error.
SELECT role, path, f, variant, sqlstate, escalations > 0 AS escalated, became_superuser, canary
  FROM regress_canary.results
 WHERE escalations > 0 OR became_superuser OR canary ~ 'superuser'
 ORDER BY 1, 2, 3::text, 4;
SELECT role, path, f, variant, secret > 0 AS secret_ran, sqlstate
  FROM regress_canary.results
 WHERE secret > 0
 ORDER BY 1, 2, 3::text, 4;
SELECT role, path, f, variant, sqlstate, message
  FROM regress_canary.results
 WHERE NOT may_execute AND sqlstate IS DISTINCT FROM '42501'
 ORDER BY 1, 2, 3::text, 4;
-- A refusal for want of a privilege inside a function the caller may run.
SELECT role, path, f, variant, sqlstate, message
  FROM regress_canary.results
 WHERE may_execute AND message ~* 'permission|privilege|must be owner' AND sqlstate <> '42501'
 ORDER BY 1, 2, 3::text, 4;
-- A caller that may run the function but not the user function it names.
SELECT role, path, f, variant, sqlstate, message
  FROM regress_canary.results
 WHERE may_execute AND variant LIKE 'secret%' AND sqlstate IS DISTINCT FROM '42501'
 ORDER BY 1, 2, 3::text, 4;
SELECT role, path, f, variant, sqlstate, message
  FROM regress_canary.results
 WHERE sqlstate = 'XX000'
 ORDER BY 1, 2, 3::text, 4;
-- The house rule: no query of the extension resolves a name through the
-- caller's search_path, even with the caller's own rights.
SELECT role, path, f, variant, canary
  FROM regress_canary.results
 WHERE hits > 0 AND escalations = 0
 ORDER BY 1, 2, 3::text, 4;

--
-- The reported cases, each in a new session (cold caches).
--
-- Item 1: a writer with an =(text,text) of its own and one projection
-- defined appends.
\c -
BEGIN;
SET LOCAL ROLE regress_atk_writer;
SET LOCAL search_path = regress_atk_writer, pg_catalog;
SELECT stream_version FROM eventstore.append('w-1', 'X', '{}');
RESET search_path;
RESET ROLE;
SELECT rolsuper AS writer_became_superuser FROM pg_roles WHERE rolname = 'regress_atk_writer';
SELECT DISTINCT what, cur, su FROM regress_canary.canary
 WHERE cur <> 'regress_atk_writer' OR su ORDER BY 1, 2;
ROLLBACK;

-- Item 2: a reader, with a snapshot row present, folds a stream.
\c -
BEGIN;
SELECT count(*) > 0 AS has_snapshot FROM eventstore.snapshots WHERE stream_id = 'sec-1';
SET LOCAL ROLE regress_atk_reader;
SET LOCAL search_path = regress_atk_reader, pg_catalog;
SELECT eventstore.aggregate_stream('sec-1', 'regress_sec.evolve(bigint,eventstore.event)', 0::bigint);
SELECT state, version FROM eventstore.load_state('sec-1', 'regress_sec.evolve(bigint,eventstore.event)', 0::bigint);
SELECT eventstore.take_snapshot('sec-1', 'regress_sec.evolve(bigint,eventstore.event)', 0::bigint);
RESET search_path;
RESET ROLE;
SELECT rolsuper AS reader_became_superuser FROM pg_roles WHERE rolname = 'regress_atk_reader';
SELECT DISTINCT what, cur, su FROM regress_canary.canary
 WHERE cur <> 'regress_atk_reader' OR su ORDER BY 1, 2;
ROLLBACK;

-- Item 6 by hand: the same reader folds with a function it may not run.
\c -
SELECT last_value AS secret_calls_before FROM regress_canary.secret \gset
SET ROLE regress_atk_reader;
DO $$
BEGIN
    PERFORM eventstore.aggregate_stream('sec-1', 'regress_sec.secret_evolve(bigint,eventstore.event)', 0::bigint);
    RAISE NOTICE 'aggregate_stream ran';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'aggregate_stream refused: %', SQLSTATE;
END $$;
RESET ROLE;
SELECT last_value = :secret_calls_before AS secret_not_run FROM regress_canary.secret;

-- Item 3: an async handler sets the worker's search_path to its owner's
-- schema; the worker's next queries (the recorded horizon update) must not
-- run the owner's operators as a superuser.
\c -
TRUNCATE regress_canary.canary;
CREATE FUNCTION regress_canary.recorded_reaches(p bigint) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    FOR i IN 1..3000 LOOP
        IF (SELECT position FROM eventstore.recorded_horizon) >= p THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN false;
END $$;
SET ROLE regress_atk_projmgr;
CREATE FUNCTION regress_atk_projmgr.hop(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'regress_atk_projmgr, pg_catalog', false);
END $$;
SELECT eventstore.create_projection('atk_async', 'regress_atk_projmgr.hop(eventstore.event)',
                                    mode => 'async', replay => false);
RESET ROLE;
SELECT stream_version FROM eventstore.append('atk-3', 'X', '{}');
SELECT eventstore.wait_for_projection('atk_async');
SELECT global_position AS p FROM eventstore.append('atk-3', 'X', '{}') \gset
SELECT regress_canary.recorded_reaches(:p) AS recorded;
SELECT eventstore.wait_for_projection('atk_async');
SELECT global_position AS p FROM eventstore.append('atk-3', 'X', '{}') \gset
SELECT regress_canary.recorded_reaches(:p) AS recorded;
SELECT rolsuper AS projmgr_became_superuser FROM pg_roles WHERE rolname = 'regress_atk_projmgr';
SELECT DISTINCT what, cur, su FROM regress_canary.canary
 WHERE cur <> 'regress_atk_projmgr' OR su ORDER BY 1, 2;
SELECT name, state, error_count FROM eventstore.projection_status WHERE name = 'atk_async';
SELECT eventstore.drop_projection('atk_async');

-- Handlers are kept by name since 0.7.0 (pg_upgrade).  A handler that is
-- dropped and replaced by another role's function of the same signature
-- is never called in its place: the projection names its function's
-- owner too, and appends fail with 42883 as for a dropped handler.
CREATE SCHEMA regress_shared;
GRANT USAGE, CREATE ON SCHEMA regress_shared TO regress_atk_projmgr, regress_atk_writer;
SET ROLE regress_atk_projmgr;
CREATE FUNCTION regress_shared.h(e eventstore.event) RETURNS void LANGUAGE sql AS 'SELECT NULL';
SELECT eventstore.create_projection('atk_named', 'regress_shared.h(eventstore.event)',
                                    event_types => ARRAY['Named'], replay => false);
DROP FUNCTION regress_shared.h(eventstore.event);
RESET ROLE;
SET ROLE regress_atk_writer;
CREATE FUNCTION regress_shared.h(e eventstore.event) RETURNS void LANGUAGE sql
    AS $$SELECT regress_canary.hit('regress_atk_writer', 'replaced handler')$$;
GRANT EXECUTE ON FUNCTION regress_shared.h(eventstore.event) TO PUBLIC;
RESET ROLE;
SELECT eventstore.append('atk-named', 'Named', '{}');
\echo :SQLSTATE
SET ROLE regress_atk_writer;
SELECT eventstore.append('atk-named', 'Named', '{}');
\echo :SQLSTATE
RESET ROLE;
SELECT count(*) AS replaced_handler_ran FROM regress_canary.canary WHERE what = 'replaced handler';
-- the function's owner may put it back
DROP FUNCTION regress_shared.h(eventstore.event);
SET ROLE regress_atk_projmgr;
CREATE FUNCTION regress_shared.h(e eventstore.event) RETURNS void LANGUAGE sql AS 'SELECT NULL';
RESET ROLE;
SELECT stream_version FROM eventstore.append('atk-named', 'Named', '{}');
SELECT eventstore.drop_projection('atk_named');
DROP SCHEMA regress_shared CASCADE;

-- No attacker is a superuser at the end.
SELECT rolname FROM pg_roles WHERE rolname LIKE 'regress_atk%' AND rolsuper ORDER BY 1;

DROP OWNED BY regress_atk_reader, regress_atk_writer, regress_atk_consumer, regress_atk_subadmin,
              regress_atk_projmgr, regress_atk_storeadmin, regress_atk_nobody CASCADE;
DROP ROLE regress_atk_reader, regress_atk_writer, regress_atk_consumer, regress_atk_subadmin,
          regress_atk_projmgr, regress_atk_storeadmin, regress_atk_nobody;
DROP SCHEMA regress_canary, regress_sec CASCADE;
DROP EXTENSION eventstore CASCADE;
