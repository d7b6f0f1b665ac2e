-- Suite "projections": the read models, and the same updates as AFTER INSERT
-- FOR EACH ROW triggers for the contenders without projections (a plain
-- INSERT into bench_plain.events, the PL/pgSQL store's bench_plpgsql.events).
-- The extension's handlers (handlers.sql) run the very same statements; only
-- where the event comes from differs (NEW here, the handler's argument
-- there).  Every contender writes the same tables; the suite empties them
-- before each run.
--
--   1. stream_summary: one row per stream, upserted per event (count,
--      version, position, type, running balance);
--   2. type_counts: one row per event type, upserted per event -- ten types,
--      so concurrent appends queue on these rows until they commit, in every
--      contender alike;
--   3. recent_events: one row per event, the fields a feed shows.
CREATE SCHEMA bench_proj;

CREATE TABLE bench_proj.stream_summary (
    stream_id     text COLLATE "C" PRIMARY KEY,
    events        bigint      NOT NULL,
    last_version  bigint      NOT NULL,
    last_position bigint      NOT NULL,
    last_type     text        NOT NULL,
    balance       bigint      NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE bench_proj.type_counts (
    event_type    text COLLATE "C" PRIMARY KEY,
    events        bigint NOT NULL,
    last_position bigint NOT NULL
);

CREATE TABLE bench_proj.recent_events (
    global_position bigint PRIMARY KEY,
    stream_id       text COLLATE "C" NOT NULL,
    event_type      text COLLATE "C" NOT NULL,
    amount          bigint,
    created_at      timestamptz NOT NULL
);

CREATE FUNCTION bench_proj.summary_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_proj.stream_summary AS s
        (stream_id, events, last_version, last_position, last_type, balance, updated_at)
    VALUES (NEW.stream_id, 1, NEW.stream_version, NEW.global_position, NEW.event_type,
            coalesce((NEW.data->>'amount')::bigint, 0), NEW.created_at)
    ON CONFLICT (stream_id) DO UPDATE
       SET events = s.events + 1,
           last_version = excluded.last_version,
           last_position = excluded.last_position,
           last_type = excluded.last_type,
           balance = s.balance + excluded.balance,
           updated_at = excluded.updated_at;
    RETURN NULL;
END $$;

CREATE FUNCTION bench_proj.type_counts_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_proj.type_counts AS c (event_type, events, last_position)
    VALUES (NEW.event_type, 1, NEW.global_position)
    ON CONFLICT (event_type) DO UPDATE
       SET events = c.events + 1,
           last_position = greatest(c.last_position, excluded.last_position);
    RETURN NULL;
END $$;

CREATE FUNCTION bench_proj.recent_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_proj.recent_events (global_position, stream_id, event_type, amount, created_at)
    VALUES (NEW.global_position, NEW.stream_id, NEW.event_type,
            (NEW.data->>'amount')::bigint, NEW.created_at);
    RETURN NULL;
END $$;

-- bench_proj.set_triggers(table, n): the first n read models (in the order
-- above) maintained by triggers on the table, and no others.  Triggers fire
-- in name order, the order in which the extension runs its projections
-- (priority 1, 2, 3).
CREATE FUNCTION bench_proj.set_triggers(tbl regclass, n integer) RETURNS void
LANGUAGE plpgsql SET client_min_messages = warning AS $$
DECLARE
    models text[] := ARRAY['summary', 'type_counts', 'recent'];
BEGIN
    FOR i IN 1 .. 3 LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'p' || i || '_' || models[i], tbl);
        IF i <= n THEN
            EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION bench_proj.%I()',
                           'p' || i || '_' || models[i], tbl, models[i] || '_trg');
        END IF;
    END LOOP;
END $$;

-- Part 2 (async): what the handler saw, per event, and the lag as
-- eventstore.projection_status reported it, per sample.  Unlogged: the
-- commits that write them only would not wait for a WAL flush.
CREATE UNLOGGED TABLE bench_proj.async_lag (
    run             integer,
    global_position bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    projected_at    timestamptz NOT NULL
);

CREATE UNLOGGED TABLE bench_proj.lag_samples (
    run        integer          NOT NULL,
    sampled_at timestamptz      NOT NULL,
    lag_events bigint           NOT NULL,
    lag_ms     double precision NOT NULL
);

-- bench_proj.sample_lag(run, projection, seconds, period): every period
-- seconds for the given time, one row of the projection's lag_events and
-- lag_time.  Each sample runs in a transaction that starts just before it
-- (COMMIT after the pause, not before it): the view measures lag_time from
-- now(), the start of the transaction.
CREATE PROCEDURE bench_proj.sample_lag(p_run integer, p_projection text,
                                       p_seconds double precision, p_period double precision)
LANGUAGE plpgsql AS $$
DECLARE
    t0   timestamptz := clock_timestamp();
    tick integer := 0;
BEGIN
    WHILE clock_timestamp() < t0 + p_seconds * interval '1 second' LOOP
        COMMIT;
        INSERT INTO bench_proj.lag_samples
        SELECT p_run, clock_timestamp(), s.lag_events,
               coalesce(extract(epoch FROM s.lag_time) * 1000, 0)
          FROM eventstore.projection_status s
         WHERE s.name = p_projection;
        tick := tick + 1;
        PERFORM pg_sleep(greatest(0, extract(epoch FROM
            t0 + tick * p_period * interval '1 second' - clock_timestamp())));
    END LOOP;
END $$;

-- bench_proj.cpu_loop(contender, run, iterations): the CPU cost of an append
-- without the client: that many single-event appends by one backend, each
-- committed on its own (the caller sets synchronous_commit = off, so no
-- commit waits for the disk), as the contender appends them (stream
-- 'loop-<run>-<i>', type one of ten, the caller's payloads), after 200 more
-- that warm the backend up (caches, plans, compiled functions).  Returns the
-- backend's time on a CPU (the kernel's sum_exec_runtime, user and system,
-- in ns, from /proc/self/schedstat) and the wall-clock time, in
-- microseconds per append.
CREATE PROCEDURE bench_proj.cpu_loop(p_contender text, p_run integer, p_iterations integer,
                                     p_data jsonb, p_metadata jsonb, p_types text[],
                                     INOUT cpu_us double precision DEFAULT NULL,
                                     INOUT wall_us double precision DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    t0   timestamptz;
    ns0  bigint;
    s    text;
    t    text;
BEGIN
    FOR i IN -199 .. p_iterations LOOP
        IF i = 1 THEN
            ns0 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
            t0 := clock_timestamp();
        END IF;
        s := 'loop-' || p_run || '-' || i;
        t := p_types[1 + (i + 200) % 10];
        CASE p_contender
            WHEN 'extension' THEN
                PERFORM eventstore.append(s, t, p_data, p_metadata);
            WHEN 'plpgsql' THEN
                PERFORM bench_plpgsql.append(s, t, p_data, p_metadata);
            ELSE
                INSERT INTO bench_plain.events (stream_version, stream_id, event_type, data, metadata)
                VALUES (1, s, t, p_data, p_metadata);
        END CASE;
        COMMIT;
    END LOOP;
    wall_us := extract(epoch FROM clock_timestamp() - t0) * 1e6 / p_iterations;
    cpu_us := (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - ns0) / 1e3 / p_iterations;
END $$;
