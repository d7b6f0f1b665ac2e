-- Suite "hot": the conflict-tolerant calls pgbench runs (bench/suites/hot.sh).
--
-- pgbench 15 retries only serialization failures and deadlocks; any other
-- error (ST001 from an append with a stale expected version, 23505 from the
-- plain INSERT of an existing version) aborts the client.  So each contender's
-- append is wrapped in a PL/pgSQL exception block that turns the conflict
-- into the result false: the block runs the append in a subtransaction, and
-- a conflict rolls only that back.  The cost of the wrapper on the success
-- path (a subtransaction and a PL/pgSQL call) is measured by the suite's
-- "own" workload, where no append ever conflicts, wrapped and unwrapped.
CREATE SCHEMA bench_hot;

-- The extension: eventstore.append with an exact expected version.
CREATE FUNCTION bench_hot.try_extension(p_stream text, p_data jsonb, p_metadata jsonb,
                                        p_expected bigint)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM eventstore.append(p_stream, 'MoneyDeposited', p_data, p_metadata, p_expected);
    RETURN true;
EXCEPTION WHEN SQLSTATE 'ST001' THEN
    RETURN false;
END
$$;

-- The PL/pgSQL store (bench/plpgsql_store.sql): the same semantics, the
-- same SQLSTATE.
CREATE FUNCTION bench_hot.try_plpgsql(p_stream text, p_data jsonb, p_metadata jsonb,
                                      p_expected bigint)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM bench_plpgsql.append(p_stream, 'MoneyDeposited', p_data, p_metadata, p_expected);
    RETURN true;
EXCEPTION WHEN SQLSTATE 'ST001' THEN
    RETURN false;
END
$$;

-- Plain SQL optimistic concurrency: INSERT version expected + 1 and let the
-- unique index on (stream_id, stream_version) refuse it when another
-- transaction wrote that version first (it waits for that transaction, as
-- the stores wait for the stream lock).  No lock, no lookup inside the call.
CREATE FUNCTION bench_hot.try_plain(p_stream text, p_data jsonb, p_metadata jsonb,
                                    p_expected bigint)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO bench_plain.events (stream_version, stream_id, event_type, data, metadata)
    VALUES (p_expected + 1, p_stream, 'MoneyDeposited', p_data, p_metadata);
    RETURN true;
EXCEPTION WHEN unique_violation THEN
    RETURN false;
END
$$;

-- The wrapper's CPU cost per call, without commits: p_n appends in one
-- transaction to a new stream, each expecting the previous version, through
-- the wrapper or directly; returns microseconds per call.  p_kind is
-- extension-direct, extension-wrapped, plpgsql-direct or plpgsql-wrapped.
CREATE FUNCTION bench_hot.loop_us(p_kind text, p_n int, p_data jsonb, p_metadata jsonb)
RETURNS float8 LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_stream text := 'loop-' || p_kind || '-' || pg_backend_pid() || '-'
                     || (extract(epoch FROM clock_timestamp()) * 1e6)::bigint;
    t0 timestamptz;
BEGIN
    t0 := clock_timestamp();
    CASE p_kind
    WHEN 'extension-direct' THEN
        FOR i IN 1..p_n LOOP
            PERFORM eventstore.append(v_stream, 'MoneyDeposited', p_data, p_metadata, i - 1);
        END LOOP;
    WHEN 'extension-wrapped' THEN
        FOR i IN 1..p_n LOOP
            IF NOT bench_hot.try_extension(v_stream, p_data, p_metadata, i - 1) THEN
                RAISE EXCEPTION 'unexpected conflict';
            END IF;
        END LOOP;
    WHEN 'plpgsql-direct' THEN
        FOR i IN 1..p_n LOOP
            PERFORM bench_plpgsql.append(v_stream, 'MoneyDeposited', p_data, p_metadata, i - 1);
        END LOOP;
    WHEN 'plpgsql-wrapped' THEN
        FOR i IN 1..p_n LOOP
            IF NOT bench_hot.try_plpgsql(v_stream, p_data, p_metadata, i - 1) THEN
                RAISE EXCEPTION 'unexpected conflict';
            END IF;
        END LOOP;
    END CASE;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / p_n;
END
$$;
