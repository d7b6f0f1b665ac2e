-- eventstore 0.8.0 -> 0.9.0: operating a store (issue 18).
-- test/t/014_upgrade_chain.pl checks that this script and a fresh install
-- of 0.9.0 agree.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.9.0'" to load this file. \quit

-- =====================================================================
-- Section 1: statistics, wait events and progress (shared memory)
-- =====================================================================
-- (the same definitions as sql/install/stats.sql)

-- ---------------------------------------------------------------------
-- Statistics and progress (0.9.0, src/stats.c)
-- ---------------------------------------------------------------------
-- Counters kept in shared memory per database since the server started
-- (or eventstore.reset_stats()), the appenders in flight and the horizons,
-- the background processes' duties, and the long operations running now.
-- The views are the interface, readable by pg_monitor; the owner grants
-- SELECT on them to other roles.  The functions under them are executable
-- by PUBLIC but answer only a role that may read their view (42501).

-- pg_monitor finds the views (and only these: every other object of the
-- schema stays ungranted)
GRANT USAGE ON SCHEMA eventstore TO pg_monitor;

CREATE FUNCTION eventstore._store_stats(
    OUT appends bigint, OUT events bigint, OUT bytes bigint,
    OUT conflicts bigint, OUT retries bigint,
    OUT inline_calls bigint, OUT inline_time double precision,
    OUT notifications bigint,
    OUT appenders_in_flight integer, OUT oldest_appender_pid integer,
    OUT oldest_appender_age interval,
    OUT drawn_position bigint, OUT live_horizon bigint,
    OUT recorded_horizon bigint, OUT horizon_lag bigint,
    OUT stats_reset timestamptz)
    AS 'MODULE_PATHNAME', 'eventstore_store_stats'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._store_stats() IS
    'The statistics of this database''s store (the view eventstore.store_stats)';
REVOKE ALL ON FUNCTION eventstore._store_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore._store_stats() TO PUBLIC;

CREATE VIEW eventstore.store_stats AS
    SELECT * FROM eventstore._store_stats();
COMMENT ON VIEW eventstore.store_stats IS
    'Appends, events, bytes, conflicts, retries, inline handler calls and notifications since the last reset; appenders in flight and the log horizons now';
REVOKE ALL ON TABLE eventstore.store_stats FROM PUBLIC;
GRANT SELECT ON TABLE eventstore.store_stats TO pg_monitor;

CREATE FUNCTION eventstore._worker_stats(
    OUT duty text, OUT process text, OUT cycles bigint, OUT items bigint,
    OUT total_time double precision, OUT last_cycle_at timestamptz)
RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'eventstore_worker_stats'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE ROWS 4;
COMMENT ON FUNCTION eventstore._worker_stats() IS
    'The duties of this database''s background processes (the view eventstore.worker_stats)';
REVOKE ALL ON FUNCTION eventstore._worker_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore._worker_stats() TO PUBLIC;

CREATE VIEW eventstore.worker_stats AS
    SELECT * FROM eventstore._worker_stats();
COMMENT ON VIEW eventstore.worker_stats IS
    'Cycles, work done and time of each duty of the worker and the projector since the last reset';
REVOKE ALL ON TABLE eventstore.worker_stats FROM PUBLIC;
GRANT SELECT ON TABLE eventstore.worker_stats TO pg_monitor;

CREATE FUNCTION eventstore._progress(
    OUT pid integer, OUT operation text, OUT target text,
    OUT started_at timestamptz, OUT done bigint, OUT total bigint,
    OUT unit text, OUT rate double precision)
RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'eventstore_progress'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE ROWS 4;
COMMENT ON FUNCTION eventstore._progress() IS
    'The long operations running in this database (the view eventstore.progress)';
REVOKE ALL ON FUNCTION eventstore._progress() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore._progress() TO PUBLIC;

CREATE VIEW eventstore.progress AS
    SELECT * FROM eventstore._progress();
COMMENT ON VIEW eventstore.progress IS
    'Long operations running now: projections and snapshot policies catching up, archive_streams, retention and archiving passes';
REVOKE ALL ON TABLE eventstore.progress FROM PUBLIC;
GRANT SELECT ON TABLE eventstore.progress TO pg_monitor;

CREATE FUNCTION eventstore.reset_stats()
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_reset_stats'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.reset_stats() IS
    'Zero the counters of eventstore.store_stats and eventstore.worker_stats in this database';
REVOKE ALL ON FUNCTION eventstore.reset_stats() FROM PUBLIC;

CREATE FUNCTION eventstore._report_progress(operation text, target text,
                                            done bigint, total bigint)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_report_progress'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._report_progress(text, text, bigint, bigint) IS
    'How far an operation of the extension is, for eventstore.progress (internal)';
REVOKE ALL ON FUNCTION eventstore._report_progress(text, text, bigint, bigint) FROM PUBLIC;

-- archive_streams reports its progress (sql/install/lifecycle.sql)
CREATE OR REPLACE FUNCTION eventstore.archive_streams(
    inactive_for  interval,
    stream_prefix text    DEFAULT NULL,
    max_streams   integer DEFAULT 1000)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    streams text[];
    n bigint := 0;
    moved bigint;
BEGIN
    IF inactive_for IS NULL OR inactive_for <= interval '0' THEN
        RAISE EXCEPTION 'inactive_for must be a positive interval' USING ERRCODE = '22023';
    END IF;
    PERFORM eventstore._check_interval('inactive_for', inactive_for);
    -- each stream archived holds its lock to the end of the transaction
    IF max_streams IS NULL OR max_streams < 1 OR max_streams > 10000 THEN
        RAISE EXCEPTION 'max_streams must be between 1 and 10000' USING ERRCODE = '22023',
            HINT = 'Archive more streams by calling archive_streams again, in a new transaction, until it returns 0.';
    END IF;
    streams := ARRAY(SELECT * FROM eventstore._inactive_streams(inactive_for, stream_prefix, max_streams));
    -- eventstore.progress shows how far it is (0.9.0)
    PERFORM eventstore._report_progress('archive_streams', stream_prefix, 0,
                                        pg_catalog.cardinality(streams));
    -- _archive_stream passes over tombstoned and deleted streams
    FOR i IN 1 .. pg_catalog.cardinality(streams) LOOP
        moved := eventstore._archive_stream(streams[i], false, inactive_for);
        IF moved > 0 THEN
            n := n + 1;
        END IF;
        PERFORM eventstore._report_progress('archive_streams', stream_prefix, i, NULL);
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION eventstore.archive_streams(interval, text, integer) IS
    'Archive up to max_streams streams (with the prefix) that have had no event for inactive_for; returns the number of streams archived';

-- =====================================================================
-- Section 2: read_stream returns rows as it reads them
-- =====================================================================

-- Nothing to change in SQL: eventstore.read_stream keeps its C entry point,
-- which returns a row per call since 0.9.0, and in FROM the library's
-- planner hook plans it as a custom scan (src/read.c).

-- =====================================================================
-- Section 3: folds (aggregate_stream, load_state) plan evolve once
-- =====================================================================
-- Nothing to change in SQL: the folds are C (fold.c), whose new code the
-- 0.9.0 library brings; every signature and property stays.

-- =====================================================================
-- Section 4: durable subscriptions
-- =====================================================================

-- The fetch and ack hot path without per-call planning (bench suite
-- "subscriptions"): subscription_deliverable is PL/pgSQL (its plan kept
-- for the session), and ack and nack call _is_member only when the
-- consumer's role is not the caller itself.  Comments and privileges are
-- those of 0.8.0.

CREATE OR REPLACE FUNCTION eventstore.subscription_deliverable(
    subscription text, at timestamptz, max_count integer)
RETURNS bigint[]
LANGUAGE plpgsql STABLE CALLED ON NULL INPUT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- PL/pgSQL (0.9.0; SQL before): every fetch calls this once or twice,
    -- and a SQL function that cannot be inlined was parsed and planned on
    -- every call; PL/pgSQL keeps the plan for the session.
    RETURN (
    SELECT coalesce(array_agg(d.global_position ORDER BY d.global_position), '{}')
      FROM (SELECT o.global_position
              FROM (SELECT se.global_position,
                           bool_and((se.state = 'pending'
                                     AND (se.not_before IS NULL
                                          OR se.not_before <= subscription_deliverable.at))
                                    OR (se.state = 'leased'
                                        AND se.lease_expires_at <= subscription_deliverable.at))
                             OVER (PARTITION BY se.stream_id ORDER BY se.global_position) AS ready
                      FROM eventstore.subscription_events se
                     WHERE se.subscription = subscription_deliverable.subscription
                       AND se.state <> 'parked') o
             WHERE o.ready
             ORDER BY o.global_position
             LIMIT subscription_deliverable.max_count) d);
END
$$;

CREATE OR REPLACE FUNCTION eventstore._subscription_ack(
    caller             regrole,
    caller_search_path text,
    subscription text,
    consumer     text,
    positions    bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM eventstore._check_caller(caller);
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    PERFORM eventstore.subscription_check_name(consumer, 'consumer');
    IF positions IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'positions must not be NULL';
    END IF;
    -- Waits for a running fetch, which may be handing these events to
    -- someone else; acks of different consumers do not wait for each other.
    PERFORM FROM eventstore.subscriptions s
      WHERE s.name = _subscription_ack.subscription FOR SHARE;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    -- A lease that expired but was not handed out again is still this
    -- consumer's to acknowledge.  Only the role that fetched it (or a
    -- member of that role) may: the consumer's name is not a secret.
    DELETE FROM eventstore.subscription_events se
     WHERE se.subscription = _subscription_ack.subscription
       AND se.global_position = ANY (positions)
       AND se.state = 'leased' AND se.consumer = _subscription_ack.consumer
       -- the role that fetched, without a call per row (0.9.0), else a member
       AND (se.consumer_role = _subscription_ack.caller
            OR eventstore._is_member(_subscription_ack.caller, se.consumer_role));
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION eventstore._subscription_nack(
    caller             regrole,
    caller_search_path text,
    subscription text,
    consumer     text,
    positions    bigint[],
    error        text,
    retry_after  interval)
RETURNS integer
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub   eventstore.subscriptions;
    v_now   timestamptz;
    v_count integer;
BEGIN
    PERFORM eventstore._check_caller(caller);
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    PERFORM eventstore.subscription_check_name(consumer, 'consumer');
    IF positions IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'positions must not be NULL';
    END IF;
    IF retry_after < interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('retry_after must not be negative, not %s', retry_after);
    END IF;
    PERFORM eventstore._check_interval('retry_after', retry_after);
    SELECT * INTO v_sub FROM eventstore.subscriptions s
     WHERE s.name = _subscription_nack.subscription FOR SHARE;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    v_now := clock_timestamp();
    -- Default delay: 1 s, doubling with every attempt, at most the lease
    -- timeout.
    UPDATE eventstore.subscription_events se
       SET state = CASE WHEN se.attempts >= v_sub.max_attempts THEN 'parked' ELSE 'pending' END,
           parked_at = CASE WHEN se.attempts >= v_sub.max_attempts THEN v_now END,
           not_before = CASE WHEN se.attempts < v_sub.max_attempts THEN
                            v_now + coalesce(retry_after,
                                             least(v_sub.lease_timeout,
                                                   interval '1 second' * power(2, least(se.attempts - 1, 30))))
                        END,
           lease_expires_at = NULL,
           last_error = error
     WHERE se.subscription = _subscription_nack.subscription
       AND se.global_position = ANY (positions)
       AND se.state = 'leased' AND se.consumer = _subscription_nack.consumer
       -- the role that fetched, without a call per row (0.9.0), else a member
       AND (se.consumer_role = _subscription_nack.caller
            OR eventstore._is_member(_subscription_nack.caller, se.consumer_role));
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
