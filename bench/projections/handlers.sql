-- Suite "projections": the extension's handlers, the statements of the
-- triggers in readmodels.sql taking the event from their argument.  They
-- depend on the type eventstore.event, so the suite drops this schema before
-- it re-creates the extension, and runs this file again after.
CREATE SCHEMA bench_proj_es;

CREATE FUNCTION bench_proj_es.summary(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_proj.stream_summary AS s
        (stream_id, events, last_version, last_position, last_type, balance, updated_at)
    VALUES (e.stream_id, 1, e.stream_version, e.global_position, e.event_type,
            coalesce((e.data->>'amount')::bigint, 0), e.created_at)
    ON CONFLICT (stream_id) DO UPDATE
       SET events = s.events + 1,
           last_version = excluded.last_version,
           last_position = excluded.last_position,
           last_type = excluded.last_type,
           balance = s.balance + excluded.balance,
           updated_at = excluded.updated_at;
END $$;

CREATE FUNCTION bench_proj_es.type_counts(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_proj.type_counts AS c (event_type, events, last_position)
    VALUES (e.event_type, 1, e.global_position)
    ON CONFLICT (event_type) DO UPDATE
       SET events = c.events + 1,
           last_position = greatest(c.last_position, excluded.last_position);
END $$;

CREATE FUNCTION bench_proj_es.recent(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_proj.recent_events (global_position, stream_id, event_type, amount, created_at)
    VALUES (e.global_position, e.stream_id, e.event_type,
            (e.data->>'amount')::bigint, e.created_at);
END $$;

-- Part 2: the stream summary run by the worker, also noting when it saw each
-- event (the suite stamps the rows with the run afterwards).
CREATE FUNCTION bench_proj_es.summary_timed(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_proj.stream_summary AS s
        (stream_id, events, last_version, last_position, last_type, balance, updated_at)
    VALUES (e.stream_id, 1, e.stream_version, e.global_position, e.event_type,
            coalesce((e.data->>'amount')::bigint, 0), e.created_at)
    ON CONFLICT (stream_id) DO UPDATE
       SET events = s.events + 1,
           last_version = excluded.last_version,
           last_position = excluded.last_position,
           last_type = excluded.last_type,
           balance = s.balance + excluded.balance,
           updated_at = excluded.updated_at;
    INSERT INTO bench_proj.async_lag (global_position, created_at, projected_at)
    VALUES (e.global_position, e.created_at, clock_timestamp());
END $$;
