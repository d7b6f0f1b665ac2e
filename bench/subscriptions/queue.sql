-- Suite "subscriptions", contender "plain": a work queue of the same events
-- in a plain table, consumed by SELECT ... FOR UPDATE SKIP LOCKED + DELETE
-- (bench/subscriptions/consume.plain.pgbench).  The rows are those of
-- eventstore.events (same columns, types and collations), keyed by position
-- only: a queue needs no (stream_id, stream_version) index.  Idempotent: the
-- suite's setup may run twice.
DROP SCHEMA IF EXISTS bench_subs CASCADE;
CREATE SCHEMA bench_subs;

CREATE TABLE bench_subs.queue (LIKE eventstore.events);
ALTER TABLE bench_subs.queue ADD PRIMARY KEY (global_position);

-- The lag part: what eventstore.subscription_status says of subscription
-- 'bench' while the appenders and consumers run, sampled by one session
-- (bench_subs.sample_lag), so the sampler costs no connection per sample.
-- Unlogged: the samples' commits wait for no WAL flush.
CREATE UNLOGGED TABLE bench_subs.lag_samples (
    run        integer          NOT NULL,
    sampled_at timestamptz      NOT NULL,
    lag_events bigint           NOT NULL,
    lag_ms     double precision NOT NULL,
    in_flight  bigint           NOT NULL
);

-- bench_subs.sample_lag(run, seconds, period): every period seconds for the
-- given time, one row of the subscription's lag.  Each sample runs in a
-- transaction of its own that starts just before it (the view measures
-- lag_time from now()).
CREATE PROCEDURE bench_subs.sample_lag(p_run integer, p_seconds double precision,
                                       p_period double precision)
LANGUAGE plpgsql AS $$
DECLARE
    t0   timestamptz := clock_timestamp();
    tick integer := 0;
BEGIN
    WHILE clock_timestamp() < t0 + p_seconds * interval '1 second' LOOP
        COMMIT;
        INSERT INTO bench_subs.lag_samples
        SELECT p_run, clock_timestamp(), s.lag_events,
               coalesce(extract(epoch FROM s.lag_time) * 1000, 0), s.in_flight
          FROM eventstore.subscription_status s
         WHERE s.name = 'bench';
        tick := tick + 1;
        PERFORM pg_sleep(greatest(0, extract(epoch FROM
            t0 + tick * p_period * interval '1 second' - clock_timestamp())));
    END LOOP;
END $$;
