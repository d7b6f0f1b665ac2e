-- Contender "plpgsql": an event store written in SQL and PL/pgSQL only, with
-- the semantics of eventstore.append / eventstore.append_events (DESIGN.md
-- section 1): same argument checks, a transaction-scoped advisory lock keyed
-- by a 64-bit hash of the stream id, the current version read through the
-- (stream_id, stream_version) index, the expected_version check (NULL any,
-- 0 no stream, -1 stream exists, N exactly N) raising SQLSTATE ST001 with the
-- same DETAIL, then the insert with the position drawn by nextval().  It is
-- written the way a careful SQL-only store would be: one statement per step,
-- a batch validated and inserted set-wise rather than row by row.  The
-- parameters have the extension's names (named-argument calls work alike);
-- the bodies use p_* aliases and no column they name unqualified is also a
-- variable, so nothing is ambiguous.  Event ids it generates are random (v4) where the extension's
-- are time-ordered (v7); nothing indexes event_id, so only the cost of
-- drawing the random bytes differs, and that is the same.
--
-- Optional in-transaction notification, as SQL-only stores commonly do it:
-- with the setting bench_plpgsql.notify = on each call also runs
-- pg_notify('bench_plpgsql', '<last global_position>').  bench/run.sh sets it
-- per database from BENCH_PLPGSQL_NOTIFY (default off).
CREATE SCHEMA bench_plpgsql;

CREATE TABLE bench_plpgsql.events (LIKE eventstore.events INCLUDING ALL);

CREATE SEQUENCE bench_plpgsql.global_position_seq AS bigint MINVALUE 1 NO CYCLE CACHE 1
    OWNED BY bench_plpgsql.events.global_position;

CREATE TYPE bench_plpgsql.append_result AS (
    stream_version  bigint,
    global_position bigint
);

-- Raise ST001 for a stream whose current version does not match
-- expected_version.  Called only on a mismatch; the check itself is inline.
CREATE FUNCTION bench_plpgsql.wrong_expected_version(
    p_stream_id text, p_expected bigint, p_current bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'wrong expected version for stream "%"', p_stream_id
        USING ERRCODE = 'ST001',
              DETAIL = format('Stream "%s": expected version %s, actual version %s.',
                              p_stream_id,
                              CASE p_expected WHEN 0 THEN '0 (no stream)'
                                              WHEN -1 THEN '-1 (any existing stream)'
                                              ELSE p_expected::text END,
                              p_current);
END
$$;

CREATE FUNCTION bench_plpgsql.append(
    stream_id        text,
    event_type       text,
    data             jsonb,
    metadata         jsonb  DEFAULT NULL,
    expected_version bigint DEFAULT NULL,
    event_id         uuid   DEFAULT NULL)
RETURNS bench_plpgsql.append_result
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    p_stream_id        ALIAS FOR stream_id;
    p_event_type       ALIAS FOR event_type;
    p_data             ALIAS FOR data;
    p_metadata         ALIAS FOR metadata;
    p_expected_version ALIAS FOR expected_version;
    p_event_id         ALIAS FOR event_id;
    v_current  bigint;
    v_position bigint;
BEGIN
    IF p_stream_id IS NULL OR p_event_type IS NULL OR p_data IS NULL THEN
        RAISE EXCEPTION 'stream_id, event_type and data must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF p_stream_id = '' OR p_event_type = '' THEN
        RAISE EXCEPTION 'stream_id and event_type must not be empty' USING ERRCODE = '22023';
    END IF;
    IF octet_length(p_stream_id) > 1024 OR octet_length(p_event_type) > 1024 THEN
        RAISE EXCEPTION 'stream_id or event type is too long' USING ERRCODE = '54000';
    END IF;
    IF p_metadata IS NOT NULL THEN
        CASE jsonb_typeof(p_metadata)
            WHEN 'null' THEN p_metadata := NULL;
            WHEN 'object' THEN NULL;
            ELSE RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = '22023';
        END CASE;
    END IF;
    IF pg_column_size(p_data) + coalesce(pg_column_size(p_metadata), 0) > 1024 * 1024 THEN
        RAISE EXCEPTION 'event is too large' USING ERRCODE = '54000';
    END IF;
    IF p_expected_version < -1 THEN
        RAISE EXCEPTION 'expected_version must be NULL, -1, 0 or a positive version'
            USING ERRCODE = '22023';
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream_id, 0));

    SELECT e.stream_version INTO v_current
      FROM bench_plpgsql.events e
     WHERE e.stream_id = p_stream_id
     ORDER BY e.stream_version DESC
     LIMIT 1;
    v_current := coalesce(v_current, 0);

    IF p_expected_version IS NOT NULL
       AND NOT ((p_expected_version = 0 AND v_current = 0)
             OR (p_expected_version = -1 AND v_current > 0)
             OR (p_expected_version > 0 AND v_current = p_expected_version)) THEN
        PERFORM bench_plpgsql.wrong_expected_version(p_stream_id, p_expected_version, v_current);
    END IF;

    INSERT INTO bench_plpgsql.events
        (global_position, stream_version, created_at, event_id,
         stream_id, event_type, data, metadata)
    VALUES (nextval('bench_plpgsql.global_position_seq'), v_current + 1, now(),
            coalesce(p_event_id, gen_random_uuid()),
            p_stream_id, p_event_type, p_data, p_metadata)
    RETURNING global_position INTO v_position;

    IF current_setting('bench_plpgsql.notify', true) = 'on' THEN
        PERFORM pg_notify('bench_plpgsql', v_position::text);
    END IF;

    RETURN ROW(v_current + 1, v_position)::bench_plpgsql.append_result;
END
$$;

CREATE FUNCTION bench_plpgsql.append_events(
    stream_id        text,
    events           jsonb,
    expected_version bigint DEFAULT NULL)
RETURNS bench_plpgsql.append_result
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    p_stream_id        ALIAS FOR stream_id;
    p_events           ALIAS FOR events;
    p_expected_version ALIAS FOR expected_version;
    v_current  bigint;
    v_last     bigint;
    v_position bigint;
    v_bad      bigint;
BEGIN
    IF p_stream_id IS NULL OR p_events IS NULL THEN
        RAISE EXCEPTION 'stream_id and events must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF p_stream_id = '' THEN
        RAISE EXCEPTION 'stream_id must not be empty' USING ERRCODE = '22023';
    END IF;
    IF octet_length(p_stream_id) > 1024 THEN
        RAISE EXCEPTION 'stream_id is too long' USING ERRCODE = '54000';
    END IF;
    IF p_expected_version < -1 THEN
        RAISE EXCEPTION 'expected_version must be NULL, -1, 0 or a positive version'
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(p_events) <> 'array' THEN
        RAISE EXCEPTION 'events must be a JSON array' USING ERRCODE = '22023';
    END IF;

    -- Validate every element before locking: the first bad one, if any.
    SELECT min(i) INTO v_bad
      FROM jsonb_array_elements(p_events) WITH ORDINALITY AS a(e, i)
     WHERE jsonb_typeof(e) IS DISTINCT FROM 'object'
        OR jsonb_typeof(e->'type') IS DISTINCT FROM 'string'
        OR e->>'type' = ''
        OR octet_length(e->>'type') > 1024
        OR NOT e ? 'data'
        OR coalesce(jsonb_typeof(e->'metadata'), 'null') NOT IN ('null', 'object')
        OR coalesce(jsonb_typeof(e->'id'), 'null') NOT IN ('null', 'string')
        OR EXISTS (SELECT FROM jsonb_object_keys(e) k
                    WHERE k NOT IN ('type', 'data', 'metadata', 'id'))
        OR pg_column_size(e->'data') + coalesce(pg_column_size(e->'metadata'), 0) > 1024 * 1024;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'invalid event' USING ERRCODE = '22023',
            DETAIL = format('events[%s]', v_bad - 1);
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream_id, 0));

    SELECT e.stream_version INTO v_current
      FROM bench_plpgsql.events e
     WHERE e.stream_id = p_stream_id
     ORDER BY e.stream_version DESC
     LIMIT 1;
    v_current := coalesce(v_current, 0);

    IF p_expected_version IS NOT NULL
       AND NOT ((p_expected_version = 0 AND v_current = 0)
             OR (p_expected_version = -1 AND v_current > 0)
             OR (p_expected_version > 0 AND v_current = p_expected_version)) THEN
        PERFORM bench_plpgsql.wrong_expected_version(p_stream_id, p_expected_version, v_current);
    END IF;

    -- One set-wise INSERT; positions are drawn in element order.  A malformed
    -- "id" fails the uuid cast with 22P02 and rolls the call back.
    WITH ins AS (
        INSERT INTO bench_plpgsql.events
            (global_position, stream_version, created_at, event_id,
             stream_id, event_type, data, metadata)
        SELECT nextval('bench_plpgsql.global_position_seq'), v_current + a.i, now(),
               coalesce((a.e->>'id')::uuid, gen_random_uuid()),
               p_stream_id, a.e->>'type', a.e->'data',
               CASE WHEN jsonb_typeof(a.e->'metadata') = 'object' THEN a.e->'metadata' END
          FROM jsonb_array_elements(p_events) WITH ORDINALITY AS a(e, i)
         ORDER BY a.i
        RETURNING stream_version, global_position
    )
    SELECT max(stream_version), max(global_position) INTO v_last, v_position FROM ins;

    IF v_position IS NOT NULL AND current_setting('bench_plpgsql.notify', true) = 'on' THEN
        PERFORM pg_notify('bench_plpgsql', v_position::text);
    END IF;

    RETURN ROW(coalesce(v_last, v_current), v_position)::bench_plpgsql.append_result;
END
$$;
