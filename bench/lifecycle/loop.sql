-- bench_lc.loop_us(contender, with_id, n): n single-event appends,
-- expected_version NULL, to the streams set-1 .. set-10000 (in a scattered
-- order), in one backend and one transaction, no client round trip and no
-- commit, after 200 more that warm the backend up; returns the backend's
-- time on a CPU per append in µs (the kernel's sum_exec_runtime from
-- /proc/self/schedstat, as bench_proj.cpu_loop), which the load of other
-- programs on a shared machine changes much less than wall time.  The
-- cost of the append path itself, which the WAL flush of every commit
-- hides in the pgbench runs.  The data are jsonb already (no text
-- parsing), the same for every contender; plain writes versions from
-- 100000001, which no pgbench run reaches.
CREATE SCHEMA IF NOT EXISTS bench_lc;

CREATE OR REPLACE FUNCTION bench_lc.loop_us(who text, with_id boolean, n integer)
RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    d  jsonb := '{"account": "ACC-0001234567", "amount": 1250, "currency": "EUR", "reference": "invoice 2024-000123"}';
    m  jsonb := '{"correlation_id": "7d6f5a1e-3c2b-4a19-9e8d-0b1c2d3e4f50", "user": "bench"}';
    ns0 bigint;
    s  text;
BEGIN
    FOR i IN -199 .. n LOOP
        IF i = 1 THEN
            ns0 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
        END IF;
        s := 'set-' || (1 + ((i + 200)::bigint * 7919) % 10000);
        IF who = 'extension' THEN
            IF with_id THEN
                PERFORM eventstore.append(s, 'MoneyDeposited', d, m, NULL, gen_random_uuid());
            ELSE
                PERFORM eventstore.append(s, 'MoneyDeposited', d, m);
            END IF;
        ELSIF who = 'plpgsql' THEN
            IF with_id THEN
                PERFORM bench_plpgsql.append(s, 'MoneyDeposited', d, m, NULL, gen_random_uuid());
            ELSE
                PERFORM bench_plpgsql.append(s, 'MoneyDeposited', d, m);
            END IF;
        ELSE
            INSERT INTO bench_plain.events (stream_version, stream_id, event_type, data, metadata, event_id)
            VALUES (100000000 + i + 200, s, 'MoneyDeposited', d, m, gen_random_uuid());
        END IF;
    END LOOP;
    RETURN (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - ns0) / 1e3 / n;
END $$;
