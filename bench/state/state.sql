-- Suite "state": the fold, the decide and the hand-written equivalents.
--
-- A bank account as a composite type, folded by a PL/pgSQL evolve; a decide
-- for deposit and withdraw commands.  The extension folds with them
-- (load_state, aggregate_stream, fold, handle_command, snapshot policies);
-- the hand-written contenders call the very same two functions from PL/pgSQL
-- loops over plain queries, so only the machinery around them differs.
-- Needs bench/plain.sql (bench_plain.events) and bench/reads/plpgsql_read.sql
-- (bench_reads.read_stream) loaded first.
CREATE SCHEMA bench_state;

CREATE TYPE bench_state.account AS (
    status         text,
    owner          text,
    currency       text,
    balance        numeric,
    deposits       bigint,
    withdrawals    bigint,
    last_reference text
);

CREATE FUNCTION bench_state.account_evolve(s bench_state.account, e eventstore.event)
RETURNS bench_state.account
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    CASE e.event_type
        WHEN 'AccountOpened' THEN
            s := ('open', e.data->>'owner', e.data->>'currency',
                  coalesce((e.data->>'amount')::numeric, 0), 0, 0, NULL);
        WHEN 'MoneyDeposited' THEN
            s.balance := coalesce(s.balance, 0) + (e.data->>'amount')::numeric;
            s.deposits := coalesce(s.deposits, 0) + 1;
            s.last_reference := e.data->>'reference';
        WHEN 'MoneyWithdrawn' THEN
            s.balance := coalesce(s.balance, 0) - (e.data->>'amount')::numeric;
            s.withdrawals := coalesce(s.withdrawals, 0) + 1;
            s.last_reference := e.data->>'reference';
        WHEN 'AccountClosed' THEN
            s.status := 'closed';
        ELSE
            NULL;
    END CASE;
    RETURN s;
END $$;

-- The same evolve written in SQL, as one expression: how most applications
-- write one.  PL/pgSQL inlines it into the loop's expression; the extension
-- plans evolve(state, event) once as an expression, so it is inlined there
-- too (0.9.0).
CREATE FUNCTION bench_state.account_evolve_sql(s bench_state.account, e eventstore.event)
RETURNS bench_state.account
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE (e).event_type
        WHEN 'AccountOpened' THEN
            ROW('open', (e).data->>'owner', (e).data->>'currency',
                coalesce(((e).data->>'amount')::numeric, 0), 0, 0, NULL)::bench_state.account
        WHEN 'MoneyDeposited' THEN
            ROW((s).status, (s).owner, (s).currency,
                coalesce((s).balance, 0) + ((e).data->>'amount')::numeric,
                coalesce((s).deposits, 0) + 1, (s).withdrawals,
                (e).data->>'reference')::bench_state.account
        WHEN 'MoneyWithdrawn' THEN
            ROW((s).status, (s).owner, (s).currency,
                coalesce((s).balance, 0) - ((e).data->>'amount')::numeric,
                (s).deposits, coalesce((s).withdrawals, 0) + 1,
                (e).data->>'reference')::bench_state.account
        WHEN 'AccountClosed' THEN
            ROW('closed', (s).owner, (s).currency, (s).balance, (s).deposits,
                (s).withdrawals, (s).last_reference)::bench_state.account
        ELSE s
    END
$$;

-- Commands: {"type": "deposit" | "withdraw", "amount": n, "reference": text}.
CREATE FUNCTION bench_state.account_decide(c jsonb, s bench_state.account)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF s.status IS DISTINCT FROM 'open' THEN
        RAISE EXCEPTION 'account is not open' USING ERRCODE = 'P0001';
    END IF;
    CASE c->>'type'
        WHEN 'deposit' THEN
            RETURN jsonb_build_array(jsonb_build_object('type', 'MoneyDeposited',
                'data', jsonb_build_object('amount', c->'amount', 'currency', s.currency,
                                           'reference', c->'reference')));
        WHEN 'withdraw' THEN
            IF s.balance < (c->>'amount')::numeric THEN
                RAISE EXCEPTION 'insufficient funds' USING ERRCODE = 'P0001';
            END IF;
            RETURN jsonb_build_array(jsonb_build_object('type', 'MoneyWithdrawn',
                'data', jsonb_build_object('amount', c->'amount', 'currency', s.currency,
                                           'reference', c->'reference')));
        ELSE
            RAISE EXCEPTION 'unknown command %', c->>'type' USING ERRCODE = '22023';
    END CASE;
END $$;

-- The hand-written contenders' snapshots: the state itself (a composite
-- column), by stream, tag and version.
CREATE TABLE bench_state.snapshots (
    stream_id text COLLATE "C" NOT NULL,
    tag       text   NOT NULL,
    version   bigint NOT NULL,
    state     bench_state.account,
    PRIMARY KEY (stream_id, tag, version)
);

-- The events of an account, as the setup writes them into the tables:
-- version 1 opens the account with 100000, then two deposits of 100..999
-- for every withdrawal of 10..99 (~100 bytes of data each).  The commands
-- of part 3 are a random walk (deposit 2/3, withdraw 1/3, 1..100 each):
-- the opening balance keeps every withdrawal covered, so no command fails.
CREATE FUNCTION bench_state.event_type(v bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v = 1 THEN 'AccountOpened'
                WHEN v % 3 = 0 THEN 'MoneyWithdrawn' ELSE 'MoneyDeposited' END
$$;

CREATE FUNCTION bench_state.event_data(stream text, v bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v = 1
                THEN jsonb_build_object('owner', 'owner of ' || stream, 'currency', 'EUR',
                                        'amount', 100000)
                ELSE jsonb_build_object('amount', CASE WHEN v % 3 = 0 THEN 10 + v % 90
                                                       ELSE 100 + v % 900 END,
                                        'currency', 'EUR',
                                        'reference', 'invoice 2024-' || lpad(v::text, 9, '0'),
                                        'account', 'ACC-0001234567')
           END
$$;

-- Hand-written load over the plain table: the newest snapshot with the tag
-- at or below the target (NULL tag: none), then a PL/pgSQL loop over the
-- tail, streamed by the loop's cursor through the (stream_id,
-- stream_version) index.  What load_state does, written by hand.
CREATE FUNCTION bench_state.plain_load(p_stream text, p_tag text DEFAULT NULL,
                                       p_to_version bigint DEFAULT NULL,
                                       OUT state bench_state.account, OUT version bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    e eventstore.event;
    snap record;
    target bigint := coalesce(p_to_version, 9223372036854775807);
BEGIN
    version := 0;
    IF p_tag IS NOT NULL THEN
        SELECT s.version, s.state INTO snap
          FROM bench_state.snapshots s
         WHERE s.stream_id = p_stream AND s.tag = p_tag AND s.version <= target
         ORDER BY s.version DESC LIMIT 1;
        IF FOUND THEN
            version := snap.version;
            state := snap.state;
        END IF;
    END IF;
    FOR e IN SELECT ev.global_position, ev.stream_id, ev.stream_version, ev.event_id,
                    ev.event_type, ev.data, ev.metadata, ev.created_at
               FROM bench_plain.events ev
              WHERE ev.stream_id = p_stream AND ev.stream_version > version
                AND ev.stream_version <= target
              ORDER BY ev.stream_version
    LOOP
        state := bench_state.account_evolve(state, e);
        version := e.stream_version;
    END LOOP;
END $$;

-- The same loop with the SQL evolve, which PL/pgSQL inlines into the
-- assignment's expression.
CREATE FUNCTION bench_state.plain_load_sql(p_stream text,
                                           OUT state bench_state.account, OUT version bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    e eventstore.event;
BEGIN
    version := 0;
    FOR e IN SELECT ev.global_position, ev.stream_id, ev.stream_version, ev.event_id,
                    ev.event_type, ev.data, ev.metadata, ev.created_at
               FROM bench_plain.events ev
              WHERE ev.stream_id = p_stream
              ORDER BY ev.stream_version
    LOOP
        state := bench_state.account_evolve_sql(state, e);
        version := e.stream_version;
    END LOOP;
END $$;

-- A loop over the extension's own read_stream, with either evolve: what an
-- application would write by hand instead of calling load_state.
CREATE FUNCTION bench_state.ext_read_load(p_stream text, p_sql boolean,
                                          OUT state bench_state.account, OUT version bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    e eventstore.event;
BEGIN
    version := 0;
    IF p_sql THEN
        FOR e IN SELECT * FROM eventstore.read_stream(p_stream) LOOP
            state := bench_state.account_evolve_sql(state, e);
            version := e.stream_version;
        END LOOP;
    ELSE
        FOR e IN SELECT * FROM eventstore.read_stream(p_stream) LOOP
            state := bench_state.account_evolve(state, e);
            version := e.stream_version;
        END LOOP;
    END IF;
END $$;

-- The same loop over the PL/pgSQL store's read function (the reads suite's
-- bench_reads.read_stream, a RETURN QUERY over eventstore.events).
CREATE FUNCTION bench_state.plpgsql_read_load(p_stream text,
                                              OUT state bench_state.account, OUT version bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    e eventstore.event;
BEGIN
    version := 0;
    FOR e IN SELECT * FROM bench_reads.read_stream(p_stream) LOOP
        state := bench_state.account_evolve(state, e);
        version := e.stream_version;
    END LOOP;
END $$;

-- bench_state.load(how, stream, n): one load of the stream (n events) by
-- one of the part-1 contenders; returns the version reached and the state
-- as text.  The extension's cases name the evolve function as an
-- application would (regprocedure literal).
CREATE FUNCTION bench_state.load(how text, p_stream text, n bigint,
                                 OUT version bigint, OUT state text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r record;
BEGIN
    CASE how
        WHEN 'ext_full' THEN
            SELECT l.version, l.state INTO r
              FROM eventstore.load_state(p_stream, 'bench_state.account_evolve(bench_state.account,eventstore.event)',
                                         NULL::bench_state.account, use_snapshots => false) l;
        WHEN 'ext_fold_agg' THEN
            SELECT max(e.stream_version) AS version,
                   eventstore.fold(e, 'bench_state.account_evolve(bench_state.account,eventstore.event)',
                                   NULL::bench_state.account ORDER BY e.stream_version) AS state
              INTO r
              FROM eventstore.read_stream(p_stream) e;
        WHEN 'ext_full_sql' THEN
            SELECT l.version, l.state INTO r
              FROM eventstore.load_state(p_stream, 'bench_state.account_evolve_sql(bench_state.account,eventstore.event)',
                                         NULL::bench_state.account, use_snapshots => false) l;
        WHEN 'ext_fold_agg_sql' THEN
            SELECT max(e.stream_version) AS version,
                   eventstore.fold(e, 'bench_state.account_evolve_sql(bench_state.account,eventstore.event)',
                                   NULL::bench_state.account ORDER BY e.stream_version) AS state
              INTO r
              FROM eventstore.read_stream(p_stream) e;
        WHEN 'plain_loop_sql' THEN
            SELECT l.version, l.state INTO r FROM bench_state.plain_load_sql(p_stream) l;
        WHEN 'ext_read_loop' THEN
            SELECT l.version, l.state INTO r FROM bench_state.ext_read_load(p_stream, false) l;
        WHEN 'ext_read_loop_sql' THEN
            SELECT l.version, l.state INTO r FROM bench_state.ext_read_load(p_stream, true) l;
        WHEN 'plain_loop' THEN
            SELECT l.version, l.state INTO r FROM bench_state.plain_load(p_stream) l;
        WHEN 'plpgsql_read_loop' THEN
            SELECT l.version, l.state INTO r FROM bench_state.plpgsql_read_load(p_stream) l;
        WHEN 'ext_snap_head' THEN
            SELECT l.version, l.state INTO r
              FROM eventstore.load_state(p_stream, 'bench_state.account_evolve(bench_state.account,eventstore.event)',
                                         NULL::bench_state.account, snapshot_tag => 'at-head') l;
        WHEN 'ext_snap_100' THEN
            SELECT l.version, l.state INTO r
              FROM eventstore.load_state(p_stream, 'bench_state.account_evolve(bench_state.account,eventstore.event)',
                                         NULL::bench_state.account, snapshot_tag => 'behind-100') l;
        WHEN 'ext_policy_500' THEN
            SELECT l.version, l.state INTO r
              FROM eventstore.load_state(p_stream, 'bench_state.account_evolve(bench_state.account,eventstore.event)',
                                         NULL::bench_state.account, to_version => n - 500) l;
        WHEN 'ext_policy_999' THEN
            SELECT l.version, l.state INTO r
              FROM eventstore.load_state(p_stream, 'bench_state.account_evolve(bench_state.account,eventstore.event)',
                                         NULL::bench_state.account, to_version => n - 1) l;
        WHEN 'plain_snap_head' THEN
            SELECT l.version, l.state INTO r FROM bench_state.plain_load(p_stream, 'at-head') l;
        WHEN 'plain_snap_100' THEN
            SELECT l.version, l.state INTO r FROM bench_state.plain_load(p_stream, 'behind-100') l;
        ELSE
            RAISE EXCEPTION 'unknown load %', how;
    END CASE;
    version := r.version;
    state := r.state::text;
END $$;

-- bench_state.time_loads(round, cases, stream, n, min_ms): each case in
-- the order given, after one untimed call that warms the backend's caches
-- up: the full replays once, the loads from a snapshot as many times as fit
-- in min_ms (at least 5), reported per call (the kernel updates a task's
-- CPU time at ticks, so a single fast call has none).  Wall-clock time and
-- the backend's time on a CPU (/proc/self/schedstat: user + system).
CREATE FUNCTION bench_state.time_loads(p_round integer, p_cases text[], p_stream text, n bigint,
                                       p_min_ms double precision)
RETURNS TABLE (round integer, how text, reps integer, wall_us double precision,
               cpu_us double precision, version bigint, state text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t0  timestamptz;
    ns0 bigint;
    full_replay boolean;
BEGIN
    FOREACH how IN ARRAY p_cases LOOP
        round := p_round;
        full_replay := how IN ('ext_full', 'ext_fold_agg', 'plain_loop', 'plpgsql_read_loop',
                               'ext_full_sql', 'ext_fold_agg_sql', 'plain_loop_sql',
                               'ext_read_loop', 'ext_read_loop_sql');
        PERFORM bench_state.load(how, p_stream, n);
        ns0 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
        t0 := clock_timestamp();
        reps := 0;
        LOOP
            SELECT l.version, l.state INTO version, state FROM bench_state.load(how, p_stream, n) l;
            reps := reps + 1;
            EXIT WHEN full_replay OR (reps >= 5 AND clock_timestamp() - t0 >= p_min_ms * interval '1 ms');
        END LOOP;
        wall_us := extract(epoch FROM clock_timestamp() - t0) * 1e6 / reps;
        cpu_us := (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - ns0) / 1e3 / reps;
        RETURN NEXT;
    END LOOP;
END $$;

-- Hand-written command handling over the extension's table: load (the
-- hand-written snapshot with tag 'cmd' when p_use_snapshots, then a
-- PL/pgSQL loop over the tail), decide, eventstore.append_events expecting
-- the loaded version, fold what was appended; on a conflict (ST001) load
-- and decide again, at most p_max_retries times.  The attempt runs in an
-- exception block, a subtransaction, as handle_command's attempts do.
CREATE FUNCTION bench_state.handle_command(p_stream text, p_command jsonb,
                                           p_use_snapshots boolean DEFAULT false,
                                           p_max_retries integer DEFAULT 3,
                                           OUT version bigint, OUT state bench_state.account,
                                           OUT appended bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    e eventstore.event;
    snap record;
    events jsonb;
BEGIN
    FOR attempt IN 0 .. p_max_retries LOOP
        BEGIN
            state := NULL;
            version := 0;
            IF p_use_snapshots THEN
                SELECT s.version, s.state INTO snap
                  FROM bench_state.snapshots s
                 WHERE s.stream_id = p_stream AND s.tag = 'cmd'
                 ORDER BY s.version DESC LIMIT 1;
                IF FOUND THEN
                    version := snap.version;
                    state := snap.state;
                END IF;
            END IF;
            FOR e IN SELECT ev.global_position, ev.stream_id, ev.stream_version, ev.event_id,
                            ev.event_type, ev.data, ev.metadata, ev.created_at
                       FROM eventstore.events ev
                      WHERE ev.stream_id = p_stream AND ev.stream_version > version
                      ORDER BY ev.stream_version
            LOOP
                state := bench_state.account_evolve(state, e);
                version := e.stream_version;
            END LOOP;
            events := bench_state.account_decide(p_command, state);
            appended := jsonb_array_length(events);
            IF appended > 0 THEN
                PERFORM eventstore.append_events(p_stream, events, expected_version => version);
                FOR e IN SELECT ev.global_position, ev.stream_id, ev.stream_version, ev.event_id,
                                ev.event_type, ev.data, ev.metadata, ev.created_at
                           FROM eventstore.events ev
                          WHERE ev.stream_id = p_stream AND ev.stream_version > version
                          ORDER BY ev.stream_version
                LOOP
                    state := bench_state.account_evolve(state, e);
                    version := e.stream_version;
                END LOOP;
            END IF;
            RETURN;
        EXCEPTION WHEN SQLSTATE 'ST001' THEN
            IF attempt >= p_max_retries THEN
                RAISE;
            END IF;
        END;
    END LOOP;
END $$;

-- bench_state.command_loop(contender, snap, streams, iterations, seed): the
-- CPU cost of a command without client and disk: that many commands by one
-- backend, each committed on its own (the caller sets synchronous_commit =
-- off, so no commit waits for the disk), on the accounts 'cmd-<n>' in a
-- scattered order, after 100 more that warm the backend up.  Returns the
-- backend's time on a CPU (/proc/self/schedstat: user + system) and the
-- wall-clock time, in microseconds per command.
CREATE PROCEDURE bench_state.command_loop(p_contender text, p_snap boolean, p_streams integer,
                                          p_iterations integer, p_seed integer,
                                          INOUT cpu_us double precision DEFAULT NULL,
                                          INOUT wall_us double precision DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    t0  timestamptz;
    ns0 bigint;
    s   text;
    c   jsonb;
BEGIN
    FOR i IN -99 .. p_iterations LOOP
        IF i = 1 THEN
            ns0 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
            t0 := clock_timestamp();
        END IF;
        s := 'cmd-' || ((i + 100 + p_seed)::bigint * 7919 % p_streams);
        c := jsonb_build_object('type', CASE WHEN i % 3 = 0 THEN 'withdraw' ELSE 'deposit' END,
                                'amount', 1 + (i + 100) % 100, 'reference', 'loop ' || i);
        IF p_contender = 'extension' THEN
            PERFORM eventstore.handle_command(s, 'bench_state.account_decide(jsonb,bench_state.account)', c,
                                              'bench_state.account_evolve(bench_state.account,eventstore.event)',
                                              NULL::bench_state.account, use_snapshots => p_snap);
        ELSE
            PERFORM bench_state.handle_command(s, c, p_snap);
        END IF;
        COMMIT;
    END LOOP;
    wall_us := extract(epoch FROM clock_timestamp() - t0) * 1e6 / p_iterations;
    cpu_us := (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - ns0) / 1e3 / p_iterations;
END $$;
