-- eventstore 0.8.0 -> 0.9.0: operating a store (issue 18).
-- test/t/014_upgrade_chain.pl checks that this script and a fresh install
-- of 0.9.0 agree.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.9.0'" to load this file. \quit

-- =====================================================================
-- Section 1: statistics, wait events and progress (shared memory)
-- =====================================================================

-- =====================================================================
-- Section 2: read_stream returns rows as it reads them
-- =====================================================================

-- =====================================================================
-- Section 3: folds (aggregate_stream, load_state) plan evolve once
-- =====================================================================

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
