-- eventstore 0.1.0 -> 0.2.0: read models.  Projections run inside the append
-- transaction or by the background worker; durable subscriptions are
-- consumed by clients.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------
-- Projections
-- ---------------------------------------------------------------------

-- A projection feeds a read model: its handler, a function taking one
-- eventstore.event (and optionally the projection's name as text), is
-- called for every event that matches its filter.
-- Inline projections run inside the append transaction; async ones are run
-- by the background worker from a checkpoint.  Changing this table
-- invalidates the projection cache of every backend (see projection.c), so
-- write it only through the functions below.
CREATE TABLE eventstore.projections (
    name          text COLLATE "C" NOT NULL PRIMARY KEY
                  CHECK (name <> '' AND octet_length(name) <= 63),
    handler       regprocedure NOT NULL,
    event_types   text[] COLLATE "C" CHECK (cardinality(event_types) > 0),
    stream_prefix text COLLATE "C" CHECK (stream_prefix <> ''),
    mode          text NOT NULL CHECK (mode IN ('inline', 'async')),
    priority      integer NOT NULL DEFAULT 0,
    enabled       boolean NOT NULL DEFAULT true,
    -- inline only: the worker is replaying the log into the read model;
    -- appends leave the handler alone until it goes live again
    catching_up   boolean NOT NULL DEFAULT false CHECK (NOT catching_up OR mode = 'inline'),
    owner         regrole NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE eventstore.projections IS 'Registered projections; change through eventstore.create_projection() and friends';

-- Where each projection stands in the global log, kept apart from the
-- definitions because the worker updates it all the time.
CREATE TABLE eventstore.projection_checkpoints (
    name           text COLLATE "C" NOT NULL PRIMARY KEY
                   REFERENCES eventstore.projections ON DELETE CASCADE,
    position       bigint NOT NULL,   -- every matching event <= position is projected
    updated_at     timestamptz NOT NULL DEFAULT now(),
    events_total   bigint NOT NULL DEFAULT 0,  -- events handled by the worker
    error_count    integer NOT NULL DEFAULT 0, -- consecutive failures
    error_position bigint,            -- the event that failed last
    last_error     text,
    last_error_at  timestamptz,
    retry_at       timestamptz        -- not before this (exponential backoff)
);
COMMENT ON TABLE eventstore.projection_checkpoints IS 'Progress and error state of projections run by the background worker';

SELECT pg_catalog.pg_extension_config_dump('eventstore.projections', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.projection_checkpoints', '');
REVOKE ALL ON TABLE eventstore.projections FROM PUBLIC;
REVOKE ALL ON TABLE eventstore.projection_checkpoints FROM PUBLIC;

CREATE FUNCTION eventstore.projections_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'eventstore_projections_changed'
    LANGUAGE C;
COMMENT ON FUNCTION eventstore.projections_changed() IS 'Trigger telling every backend to reload the projections';
REVOKE ALL ON FUNCTION eventstore.projections_changed() FROM PUBLIC;
CREATE TRIGGER projections_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON eventstore.projections
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.projections_changed();
ALTER TABLE eventstore.projections ENABLE ALWAYS TRIGGER projections_changed;

-- Every appending transaction holds ROW SHARE on eventstore.projections
-- from its first append to its end, and reads the projections after taking
-- it.  The functions below change projections under EXCLUSIVE, so once
-- they hold it no append that decided under the old definition is still in
-- flight, and every later append sees the new one.
--
-- The highest position drawn so far.  Under that lock every position at
-- or below it belongs to a transaction that has ended (or to the caller).
CREATE FUNCTION eventstore._drawn_position() RETURNS bigint
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END
            FROM eventstore.global_position_seq $$;
REVOKE ALL ON FUNCTION eventstore._drawn_position() FROM PUBLIC;

CREATE FUNCTION eventstore._check_projection_args(
    handler regprocedure, event_types text[], stream_prefix text)
RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p pg_catalog.pg_proc;
BEGIN
    IF handler IS NULL THEN
        RAISE EXCEPTION 'handler must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO p FROM pg_catalog.pg_proc WHERE oid = handler;
    IF p.pronargs NOT IN (1, 2) OR p.proargtypes[0] <> 'eventstore.event'::regtype
       OR (p.pronargs = 2 AND p.proargtypes[1] <> 'text'::regtype) THEN
        RAISE EXCEPTION 'projection handler % must take (eventstore.event) or (eventstore.event, text)', handler
            USING ERRCODE = '42P13';
    END IF;
    IF p.prokind <> 'f' OR p.proretset THEN
        RAISE EXCEPTION 'projection handler % must be a function returning one value (usually void)', handler
            USING ERRCODE = '42P13';
    END IF;
    IF NOT pg_catalog.has_function_privilege(handler, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', handler USING ERRCODE = '42501';
    END IF;
    IF event_types IS NOT NULL AND (pg_catalog.cardinality(event_types) = 0
                                    OR pg_catalog.array_position(event_types, NULL) IS NOT NULL
                                    OR pg_catalog.array_position(event_types, '') IS NOT NULL) THEN
        RAISE EXCEPTION 'event_types must be NULL (all types) or a non-empty array of non-empty types'
            USING ERRCODE = '22023';
    END IF;
    IF stream_prefix = '' THEN
        RAISE EXCEPTION 'stream_prefix must be NULL (all streams) or non-empty' USING ERRCODE = '22023';
    END IF;
END $$;
REVOKE ALL ON FUNCTION eventstore._check_projection_args(regprocedure, text[], text) FROM PUBLIC;

CREATE FUNCTION eventstore._get_projection(projection text, lock boolean)
RETURNS eventstore.projections
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
BEGIN
    IF projection IS NULL THEN
        RAISE EXCEPTION 'projection name must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF lock THEN
        LOCK TABLE eventstore.projections IN EXCLUSIVE MODE;
    END IF;
    SELECT * INTO p FROM eventstore.projections WHERE name = projection;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'projection "%" does not exist', projection USING ERRCODE = '42704';
    END IF;
    RETURN p;
END $$;
REVOKE ALL ON FUNCTION eventstore._get_projection(text, boolean) FROM PUBLIC;

-- Raises 55000 with a HINT when the background worker cannot run; else makes
-- sure it runs and wakes it when the transaction commits.
CREATE FUNCTION eventstore._need_worker(what text) RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_need_worker'
    LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION eventstore._need_worker(text) FROM PUBLIC;

CREATE FUNCTION eventstore.create_projection(
    name          text,
    handler       regprocedure,
    event_types   text[]  DEFAULT NULL,
    stream_prefix text    DEFAULT NULL,
    mode          text    DEFAULT 'inline',
    replay        boolean DEFAULT true,
    priority      integer DEFAULT 0)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    drawn bigint;
BEGIN
    IF name IS NULL OR mode IS NULL OR replay IS NULL OR priority IS NULL THEN
        RAISE EXCEPTION 'name, mode, replay and priority must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF name = '' OR octet_length(name) > 63 THEN
        RAISE EXCEPTION 'projection name must have 1 to 63 bytes' USING ERRCODE = '22023';
    END IF;
    IF mode NOT IN ('inline', 'async') THEN
        RAISE EXCEPTION 'mode must be ''inline'' or ''async'', not ''%''', mode USING ERRCODE = '22023';
    END IF;
    PERFORM eventstore._check_projection_args(handler, event_types, stream_prefix);

    LOCK TABLE eventstore.projections IN EXCLUSIVE MODE;
    IF EXISTS (SELECT FROM eventstore.projections p WHERE p.name = create_projection.name) THEN
        RAISE EXCEPTION 'projection "%" already exists', name USING ERRCODE = '42710';
    END IF;
    drawn := eventstore._drawn_position();
    IF mode = 'async' OR (replay AND drawn > 0) THEN
        PERFORM eventstore._need_worker(format('projection "%s"', name));
    END IF;

    INSERT INTO eventstore.projections
        (name, handler, event_types, stream_prefix, mode, priority, catching_up, owner)
    VALUES (name, handler, event_types, stream_prefix, mode, priority,
            mode = 'inline' AND replay AND drawn > 0, current_user::regrole);
    INSERT INTO eventstore.projection_checkpoints (name, position)
    VALUES (name, CASE WHEN replay THEN 0 ELSE drawn END);
END $$;
COMMENT ON FUNCTION eventstore.create_projection(text, regprocedure, text[], text, text, boolean, integer) IS
    'Register a handler for matching events: inline (in the append transaction) or async (by the background worker)';

CREATE FUNCTION eventstore.drop_projection(name text, if_exists boolean DEFAULT false)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'projection name must not be NULL' USING ERRCODE = '22004';
    END IF;
    LOCK TABLE eventstore.projections IN EXCLUSIVE MODE;
    DELETE FROM eventstore.projections p WHERE p.name = drop_projection.name;
    IF NOT FOUND AND NOT coalesce(if_exists, false) THEN
        RAISE EXCEPTION 'projection "%" does not exist', name USING ERRCODE = '42704';
    END IF;
END $$;
COMMENT ON FUNCTION eventstore.drop_projection(text, boolean) IS 'Unregister a projection (its read model is left alone)';

CREATE FUNCTION eventstore.disable_projection(name text)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections := eventstore._get_projection(name, true);
BEGIN
    IF NOT p.enabled THEN
        RETURN;
    END IF;
    -- A live inline projection has handled every event drawn so far.
    IF p.mode = 'inline' AND NOT p.catching_up THEN
        UPDATE eventstore.projection_checkpoints c
           SET position = eventstore._drawn_position(), updated_at = now()
         WHERE c.name = p.name;
    END IF;
    UPDATE eventstore.projections q SET enabled = false WHERE q.name = p.name;
END $$;
COMMENT ON FUNCTION eventstore.disable_projection(text) IS
    'Stop running a projection; enable_projection() catches up from where it stopped';

CREATE FUNCTION eventstore.enable_projection(name text, catch_up boolean DEFAULT true)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections := eventstore._get_projection(name, true);
    drawn bigint := eventstore._drawn_position();
    behind boolean;
BEGIN
    IF catch_up IS NULL THEN
        RAISE EXCEPTION 'catch_up must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF p.enabled THEN
        RETURN;
    END IF;
    IF NOT catch_up THEN
        -- skip what was appended meanwhile: the caller asked for it
        UPDATE eventstore.projection_checkpoints c
           SET position = greatest(c.position, drawn), updated_at = now(),
               error_count = 0, error_position = NULL, retry_at = NULL
         WHERE c.name = p.name;
    END IF;
    SELECT c.position < drawn INTO behind
      FROM eventstore.projection_checkpoints c WHERE c.name = p.name;
    IF p.mode = 'async' OR behind THEN
        PERFORM eventstore._need_worker(format('projection "%s"', p.name));
    END IF;
    UPDATE eventstore.projections q
       SET enabled = true, catching_up = (q.mode = 'inline' AND behind)
     WHERE q.name = p.name;
END $$;
COMMENT ON FUNCTION eventstore.enable_projection(text, boolean) IS
    'Run a disabled projection again; with catch_up the worker first replays what it missed';

CREATE FUNCTION eventstore.rebuild_projection(name text)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections := eventstore._get_projection(name, true);
BEGIN
    PERFORM eventstore._need_worker(format('rebuilding projection "%s"', p.name));
    UPDATE eventstore.projection_checkpoints c
       SET position = 0, updated_at = now(), events_total = 0,
           error_count = 0, error_position = NULL, last_error = NULL,
           last_error_at = NULL, retry_at = NULL
     WHERE c.name = p.name;
    UPDATE eventstore.projections q
       SET catching_up = (q.mode = 'inline' AND eventstore._drawn_position() > 0)
     WHERE q.name = p.name;
END $$;
COMMENT ON FUNCTION eventstore.rebuild_projection(text) IS
    'Replay the whole log through a projection; clear its read model in the same transaction, after this call';

CREATE FUNCTION eventstore.retry_projection(name text)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections := eventstore._get_projection(name, false);
BEGIN
    PERFORM eventstore._need_worker(format('projection "%s"', p.name));
    UPDATE eventstore.projection_checkpoints c
       SET retry_at = now()
     WHERE c.name = p.name AND c.retry_at IS NOT NULL;
    -- the worker looks again at the projections when their table changes
    UPDATE eventstore.projections q SET enabled = q.enabled WHERE q.name = p.name;
END $$;
COMMENT ON FUNCTION eventstore.retry_projection(text) IS
    'Retry a failing projection now instead of after its backoff';

-- What each projection has done, and how far behind it is.
CREATE VIEW eventstore.projection_status AS
SELECT p.name, p.mode, p.handler, p.event_types, p.stream_prefix, p.priority,
       p.enabled,
       CASE WHEN NOT p.enabled THEN 'disabled'
            WHEN c.retry_at IS NOT NULL THEN 'failing'
            WHEN p.catching_up THEN 'catching_up'
            WHEN p.mode = 'inline' THEN 'live'
            ELSE 'running' END AS state,
       CASE WHEN p.mode = 'async' OR p.catching_up OR NOT p.enabled
            THEN c.position END AS position,
       coalesce(lag.events, 0) AS lag_events,
       now() - lag.oldest AS lag_time,
       c.events_total, c.updated_at,
       c.error_count, c.error_position, c.last_error, c.last_error_at, c.retry_at,
       p.owner, p.created_at
  FROM eventstore.projections p
  JOIN eventstore.projection_checkpoints c USING (name)
  LEFT JOIN LATERAL (
      SELECT count(*) AS events, min(e.created_at) AS oldest
        FROM eventstore.events e
       WHERE e.global_position > c.position
         AND (p.event_types IS NULL OR e.event_type = ANY (p.event_types))
         AND (p.stream_prefix IS NULL OR starts_with(e.stream_id, p.stream_prefix))
  ) lag ON p.mode = 'async' OR p.catching_up OR NOT p.enabled;
COMMENT ON VIEW eventstore.projection_status IS 'Every projection with its state, checkpoint, lag and last error';

CREATE FUNCTION eventstore.wait_for_projection(name text, timeout interval DEFAULT '30 seconds')
RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections := eventstore._get_projection(name, false);
    target bigint;
    deadline timestamptz := clock_timestamp() + timeout;
    st record;
BEGIN
    IF timeout IS NULL THEN
        RAISE EXCEPTION 'timeout must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'wait_for_projection() needs READ COMMITTED'
            USING ERRCODE = '25001',
                  HINT = 'Under REPEATABLE READ the transaction would never see the projection advance.';
    END IF;
    target := eventstore.global_horizon();
    LOOP
        SELECT q.enabled, q.mode, q.catching_up, c.position INTO st
          FROM eventstore.projections q
          JOIN eventstore.projection_checkpoints c USING (name)
         WHERE q.name = p.name;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'projection "%" does not exist', p.name USING ERRCODE = '42704';
        END IF;
        -- an inline projection is done when it is live again
        IF st.enabled AND ((st.mode = 'inline' AND NOT st.catching_up)
                           OR (st.mode = 'async' AND st.position >= target)) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
COMMENT ON FUNCTION eventstore.wait_for_projection(text, interval) IS
    'Wait until a projection has handled every event readable when the call started (true), or time out (false)';

REVOKE ALL ON FUNCTION eventstore.create_projection(text, regprocedure, text[], text, text, boolean, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.drop_projection(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.disable_projection(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.enable_projection(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.rebuild_projection(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.retry_projection(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.wait_for_projection(text, interval) FROM PUBLIC;
REVOKE ALL ON TABLE eventstore.projection_status FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Durable subscriptions
-- ---------------------------------------------------------------------
--
-- Named subscriptions that clients consume with at-least-once delivery:
-- competing consumers lease events, acknowledge or reject them; events of
-- one stream are handed out one lease holder at a time, in order; leases
-- expire; events that keep failing are parked.  Everything is in tables and
-- every call is one short statement, so consumers may sit behind a
-- transaction-mode connection pooler.  See README.md, "Durable subscriptions".
--
-- New events come from eventstore.read_all, so a subscription never skips
-- an event that commits late.  Only the events a subscription has pulled and
-- not yet had acknowledged (leased, waiting, parked) are stored, in
-- eventstore.subscription_events.

CREATE TABLE eventstore.subscriptions (
    name            text COLLATE "C" NOT NULL,
    event_types     text[] COLLATE "C",
    stream_prefix   text COLLATE "C",
    lease_timeout   interval    NOT NULL,
    max_attempts    integer     NOT NULL,
    -- Every matching event at or below it is in subscription_events or has
    -- been acknowledged; the next pull reads the log after it.
    pulled_position bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_fetch_at   timestamptz,
    CONSTRAINT subscriptions_pkey PRIMARY KEY (name),
    CONSTRAINT subscriptions_name_check CHECK (name <> ''),
    CONSTRAINT subscriptions_lease_timeout_check CHECK (lease_timeout > interval '0'),
    CONSTRAINT subscriptions_max_attempts_check CHECK (max_attempts >= 1),
    CONSTRAINT subscriptions_pulled_position_check CHECK (pulled_position >= 0)
);
COMMENT ON TABLE eventstore.subscriptions IS
    'Durable subscriptions: filters, lease settings and how far the log has been pulled';

-- The outstanding events of each subscription: pulled and not acknowledged.
--   pending: waiting for delivery (not before not_before, when set)
--   leased:  handed to consumer until lease_expires_at
--   parked:  gave up after max_attempts; waits for subscription_replay_parked
-- attempts counts deliveries; consumer is the current or last lease holder.
-- stream_id is copied from the event: per-stream order is decided here.
CREATE TABLE eventstore.subscription_events (
    subscription     text COLLATE "C" NOT NULL,
    global_position  bigint      NOT NULL,
    stream_id        text COLLATE "C" NOT NULL,
    state            text COLLATE "C" NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    consumer         text COLLATE "C",
    lease_expires_at timestamptz,
    not_before       timestamptz,
    last_error       text,
    parked_at        timestamptz,
    CONSTRAINT subscription_events_pkey PRIMARY KEY (subscription, global_position),
    CONSTRAINT subscription_events_subscription_fkey FOREIGN KEY (subscription)
        REFERENCES eventstore.subscriptions (name) ON DELETE CASCADE,
    CONSTRAINT subscription_events_state_check CHECK (
        (state = 'pending' AND lease_expires_at IS NULL AND parked_at IS NULL)
        OR (state = 'leased' AND lease_expires_at IS NOT NULL AND consumer IS NOT NULL
            AND parked_at IS NULL)
        OR (state = 'parked' AND lease_expires_at IS NULL AND parked_at IS NOT NULL))
);
COMMENT ON TABLE eventstore.subscription_events IS
    'Events a subscription has pulled from the log and not had acknowledged: pending, leased or parked';

-- When each consumer last fetched: only for the status view, so not dumped.
CREATE TABLE eventstore.subscription_consumers (
    subscription text COLLATE "C" NOT NULL,
    consumer     text COLLATE "C" NOT NULL,
    last_seen_at timestamptz NOT NULL,
    CONSTRAINT subscription_consumers_pkey PRIMARY KEY (subscription, consumer),
    CONSTRAINT subscription_consumers_subscription_fkey FOREIGN KEY (subscription)
        REFERENCES eventstore.subscriptions (name) ON DELETE CASCADE
);
COMMENT ON TABLE eventstore.subscription_consumers IS
    'When each consumer of a subscription last fetched (for eventstore.subscription_status)';

-- Subscriptions and their outstanding events are user state: a restore must
-- resume each subscription where it was, without redelivering what was
-- acknowledged or forgetting what was parked.  pg_dump orders the two by
-- their foreign key.
SELECT pg_catalog.pg_extension_config_dump('eventstore.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.subscription_events', '');

REVOKE ALL ON TABLE eventstore.subscriptions FROM PUBLIC;
REVOKE ALL ON TABLE eventstore.subscription_events FROM PUBLIC;
REVOKE ALL ON TABLE eventstore.subscription_consumers FROM PUBLIC;

-- Shared argument checks.  Not SECURITY DEFINER: they touch no table.
CREATE FUNCTION eventstore.subscription_check_name(name text, what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = format('%s must not be NULL', what);
    END IF;
    IF name = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s must not be empty', what);
    END IF;
END
$$;
COMMENT ON FUNCTION eventstore.subscription_check_name(text, text) IS
    'Raise 22004 for a NULL and 22023 for an empty subscription or consumer name';
REVOKE ALL ON FUNCTION eventstore.subscription_check_name(text, text) FROM PUBLIC;

CREATE FUNCTION eventstore.subscription_not_found(name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'undefined_object',
        MESSAGE = format('subscription "%s" does not exist', name),
        HINT = 'Create it with eventstore.create_subscription().';
END
$$;
COMMENT ON FUNCTION eventstore.subscription_not_found(text) IS
    'Raise 42704 for a subscription that does not exist';
REVOKE ALL ON FUNCTION eventstore.subscription_not_found(text) FROM PUBLIC;

CREATE FUNCTION eventstore.create_subscription(
    name          text,
    event_types   text[]   DEFAULT NULL,
    stream_prefix text     DEFAULT NULL,
    start_from    bigint   DEFAULT 0,
    lease_timeout interval DEFAULT '30 seconds',
    max_attempts  integer  DEFAULT 5)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_types  text[];
    v_start  bigint;
BEGIN
    PERFORM eventstore.subscription_check_name(name, 'subscription name');
    IF start_from IS NULL OR lease_timeout IS NULL OR max_attempts IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'start_from, lease_timeout and max_attempts must not be NULL';
    END IF;
    IF start_from < -1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('invalid start_from %s', start_from),
            DETAIL = 'start_from is 0 (the origin), -1 (the current end of the log) or a position after which to start.';
    END IF;
    IF lease_timeout <= interval '0' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('lease_timeout must be positive, not %s', lease_timeout);
    END IF;
    IF max_attempts < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_attempts must be at least 1, not %s', max_attempts);
    END IF;
    IF event_types IS NOT NULL THEN
        IF array_ndims(event_types) > 1 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'event_types must be a one-dimensional array';
        END IF;
        -- read_all ignores NULL elements; what is left must match something.
        v_types := array_remove(event_types, NULL);
        IF cardinality(v_types) = 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
                MESSAGE = 'event_types must not be empty',
                DETAIL = 'An empty list (or one of NULLs only) matches no event.',
                HINT = 'Pass NULL for every event type.';
        END IF;
    END IF;

    v_start := CASE WHEN start_from = -1 THEN eventstore.global_horizon() ELSE start_from END;

    INSERT INTO eventstore.subscriptions AS s
           (name, event_types, stream_prefix, lease_timeout, max_attempts, pulled_position)
    VALUES (create_subscription.name, v_types, nullif(stream_prefix, ''),
            create_subscription.lease_timeout, create_subscription.max_attempts, v_start)
    ON CONFLICT ON CONSTRAINT subscriptions_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('subscription "%s" already exists', name);
    END IF;
END
$$;
COMMENT ON FUNCTION eventstore.create_subscription(text, text[], text, bigint, interval, integer) IS
    'Create a durable subscription; start_from 0 = origin, -1 = now, N = after position N';

CREATE FUNCTION eventstore.drop_subscription(name text, if_exists boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.subscription_check_name(name, 'subscription name');
    -- The cascade removes its outstanding events and consumers.
    DELETE FROM eventstore.subscriptions s WHERE s.name = drop_subscription.name;
    IF NOT FOUND THEN
        IF coalesce(if_exists, false) THEN
            RAISE NOTICE 'subscription "%" does not exist, skipping', name;
        ELSE
            PERFORM eventstore.subscription_not_found(name);
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION eventstore.drop_subscription(text, boolean) IS
    'Drop a durable subscription with its outstanding and parked events';

-- The events a fetch may lease now: in position order, at most max_count,
-- each one ready (pending and due, or leased with an expired lease) and
-- preceded in its stream only by ready events -- which this fetch then
-- leases too, being earlier.  Parked events do not count.  A stream with a
-- live lease or a retry not yet due is closed from that event on.
CREATE FUNCTION eventstore.subscription_deliverable(
    subscription text, at timestamptz, max_count integer)
RETURNS bigint[]
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(d.global_position ORDER BY d.global_position), '{}')
      FROM (SELECT o.global_position
              FROM (SELECT se.global_position,
                           bool_and((se.state = 'pending'
                                     AND (se.not_before IS NULL OR se.not_before <= $2))
                                    OR (se.state = 'leased' AND se.lease_expires_at <= $2))
                             OVER (PARTITION BY se.stream_id ORDER BY se.global_position) AS ready
                      FROM eventstore.subscription_events se
                     WHERE se.subscription = $1 AND se.state <> 'parked') o
             WHERE o.ready
             ORDER BY o.global_position
             LIMIT $3) d
$$;
COMMENT ON FUNCTION eventstore.subscription_deliverable(text, timestamptz, integer) IS
    'Positions a fetch of the subscription may lease at the given time (internal)';
REVOKE ALL ON FUNCTION eventstore.subscription_deliverable(text, timestamptz, integer) FROM PUBLIC;

CREATE FUNCTION eventstore.subscription_fetch(
    subscription text,
    consumer     text,
    max_count    integer DEFAULT 100)
RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint,
               event_id uuid, event_type text, data jsonb, metadata jsonb,
               created_at timestamptz, attempt integer)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
ROWS 100
AS $$
#variable_conflict use_column
DECLARE
    v_sub      eventstore.subscriptions;
    v_now      timestamptz;
    v_deliver  bigint[];
    v_window   bigint;
    v_pending  bigint;
    v_step     bigint;
    v_want     bigint;
    v_horizon  bigint;
    v_got      bigint;
    v_last     bigint;
BEGIN
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    PERFORM eventstore.subscription_check_name(consumer, 'consumer');
    IF max_count IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'max_count must not be NULL';
    END IF;
    IF max_count < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_count must be at least 1, not %s', max_count);
    END IF;

    -- One fetch of a subscription at a time; acks and nacks (FOR SHARE) wait
    -- too, so what follows sees a stable set of outstanding events.
    SELECT * INTO v_sub FROM eventstore.subscriptions s
     WHERE s.name = subscription_fetch.subscription FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    -- The clock, not now(): the lock may have been waited for, and the
    -- caller's transaction may be old.
    v_now := clock_timestamp();

    INSERT INTO eventstore.subscription_consumers AS c (subscription, consumer, last_seen_at)
    VALUES (v_sub.name, subscription_fetch.consumer, v_now)
    ON CONFLICT ON CONSTRAINT subscription_consumers_pkey
    DO UPDATE SET last_seen_at = excluded.last_seen_at;
    DELETE FROM eventstore.subscription_consumers c
     WHERE c.subscription = v_sub.name AND c.last_seen_at < v_now - v_sub.lease_timeout;

    -- Expired leases of events delivered max_attempts times: park them
    -- rather than hand out a poison event again.
    UPDATE eventstore.subscription_events se
       SET state = 'parked', lease_expires_at = NULL, parked_at = v_now,
           last_error = 'lease expired'
     WHERE se.subscription = v_sub.name AND se.state = 'leased'
       AND se.lease_expires_at <= v_now AND se.attempts >= v_sub.max_attempts;

    v_deliver := eventstore.subscription_deliverable(v_sub.name, v_now, max_count);

    -- Pull from the log what this fetch can deliver, and keep at most
    -- v_window events waiting, so the table stays small even when one busy
    -- stream blocks everything pulled.  Pulled events come after every
    -- outstanding one, so they never change what was already deliverable.
    -- When what was pulled is blocked, each further pull is twice as large.
    v_window := greatest(1000, max_count);
    v_step := 0;
    LOOP
        EXIT WHEN cardinality(v_deliver) >= max_count;
        SELECT count(*) INTO v_pending FROM eventstore.subscription_events se
         WHERE se.subscription = v_sub.name AND se.state = 'pending';
        v_step := greatest(max_count - cardinality(v_deliver), v_step * 2);
        v_want := least(v_step, v_window - v_pending);
        EXIT WHEN v_want <= 0;

        -- The filtered-follower pattern (README): the horizon read before
        -- the page bounds what a short page proves absent.
        v_horizon := eventstore.global_horizon();
        WITH pulled AS (
            INSERT INTO eventstore.subscription_events (subscription, global_position, stream_id)
            SELECT v_sub.name, r.global_position, r.stream_id
              FROM eventstore.read_all(v_sub.pulled_position, v_want,
                                       v_sub.event_types, v_sub.stream_prefix) r
            RETURNING global_position)
        SELECT count(*), max(p.global_position) INTO v_got, v_last FROM pulled p;

        IF v_got < v_want THEN
            v_sub.pulled_position := greatest(v_sub.pulled_position, v_last, v_horizon);
        ELSE
            v_sub.pulled_position := v_last;
        END IF;
        IF v_got > 0 THEN
            v_deliver := eventstore.subscription_deliverable(v_sub.name, v_now, max_count);
        END IF;
        EXIT WHEN v_got < v_want;
    END LOOP;

    UPDATE eventstore.subscriptions s
       SET pulled_position = v_sub.pulled_position, last_fetch_at = v_now
     WHERE s.name = v_sub.name;

    RETURN QUERY
    WITH leased AS (
        UPDATE eventstore.subscription_events se
           SET state = 'leased', consumer = subscription_fetch.consumer,
               attempts = se.attempts + 1,
               lease_expires_at = v_now + v_sub.lease_timeout, not_before = NULL
         WHERE se.subscription = v_sub.name AND se.global_position = ANY (v_deliver)
        RETURNING se.global_position, se.attempts)
    SELECT e.global_position, e.stream_id::text, e.stream_version, e.event_id,
           e.event_type::text, e.data, e.metadata, e.created_at, l.attempts
      FROM leased l
      JOIN eventstore.events e ON e.global_position = l.global_position
     ORDER BY e.global_position;
END
$$;
COMMENT ON FUNCTION eventstore.subscription_fetch(text, text, integer) IS
    'Lease up to max_count events of a subscription to a consumer, in position order, per-stream order kept';

CREATE FUNCTION eventstore.subscription_ack(
    subscription text,
    consumer     text,
    positions    bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    PERFORM eventstore.subscription_check_name(consumer, 'consumer');
    IF positions IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'positions must not be NULL';
    END IF;
    -- Waits for a running fetch, which may be handing these events to
    -- someone else; acks of different consumers do not wait for each other.
    PERFORM FROM eventstore.subscriptions s
      WHERE s.name = subscription_ack.subscription FOR SHARE;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    -- A lease that expired but was not handed out again is still this
    -- consumer's to acknowledge.
    DELETE FROM eventstore.subscription_events se
     WHERE se.subscription = subscription_ack.subscription
       AND se.global_position = ANY (positions)
       AND se.state = 'leased' AND se.consumer = subscription_ack.consumer;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION eventstore.subscription_ack(text, text, bigint[]) IS
    'Acknowledge events leased to the consumer; returns how many were acknowledged';

CREATE FUNCTION eventstore.subscription_nack(
    subscription text,
    consumer     text,
    positions    bigint[],
    error        text     DEFAULT NULL,
    retry_after  interval DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub   eventstore.subscriptions;
    v_now   timestamptz;
    v_count integer;
BEGIN
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
    SELECT * INTO v_sub FROM eventstore.subscriptions s
     WHERE s.name = subscription_nack.subscription FOR SHARE;
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
     WHERE se.subscription = subscription_nack.subscription
       AND se.global_position = ANY (positions)
       AND se.state = 'leased' AND se.consumer = subscription_nack.consumer;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION eventstore.subscription_nack(text, text, bigint[], text, interval) IS
    'Reject events leased to the consumer: retry after a delay, or park after max_attempts';

CREATE FUNCTION eventstore.subscription_replay_parked(
    subscription text,
    positions    bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    -- A replayed event blocks its stream again: exclude fetches.
    PERFORM FROM eventstore.subscriptions s
      WHERE s.name = subscription_replay_parked.subscription FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    UPDATE eventstore.subscription_events se
       SET state = 'pending', attempts = 0, parked_at = NULL, not_before = NULL
     WHERE se.subscription = subscription_replay_parked.subscription
       AND se.state = 'parked'
       AND (positions IS NULL OR se.global_position = ANY (positions));
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION eventstore.subscription_replay_parked(text, bigint[]) IS
    'Make parked events (all, or the given positions) pending again with their attempts reset';

CREATE FUNCTION eventstore.subscription_parked(subscription text)
RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint,
               event_type text, attempts integer, last_error text,
               parked_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    PERFORM FROM eventstore.subscriptions s WHERE s.name = subscription_parked.subscription;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    RETURN QUERY
    SELECT se.global_position, se.stream_id::text, e.stream_version, e.event_type::text,
           se.attempts, se.last_error, se.parked_at
      FROM eventstore.subscription_events se
      JOIN eventstore.events e ON e.global_position = se.global_position
     WHERE se.subscription = subscription_parked.subscription AND se.state = 'parked'
     ORDER BY se.global_position;
END
$$;
COMMENT ON FUNCTION eventstore.subscription_parked(text) IS
    'The parked events of a subscription, in position order';

-- One row per subscription.  The checkpoint ("position") is just below the
-- lowest outstanding event that is not parked, or the pulled position when
-- there is none: every matching event at or below it was acknowledged or
-- parked.  The view calls global_horizon(): its readers need EXECUTE on it
-- (and shared_preload_libraries, else 55000).
CREATE VIEW eventstore.subscription_status AS
SELECT s.name,
       s.event_types,
       s.stream_prefix,
       cp.position,
       s.pulled_position,
       lag.lag_events,
       now() - lag.oldest_created_at AS lag_time,
       o.in_flight,
       o.pending_retry,
       o.parked,
       coalesce(c.consumers, '{}') AS consumers,
       s.last_fetch_at,
       s.lease_timeout,
       s.max_attempts
  FROM eventstore.subscriptions s
 CROSS JOIN (SELECT eventstore.global_horizon() AS horizon) h
 CROSS JOIN LATERAL (
        SELECT min(se.global_position) FILTER (WHERE se.state <> 'parked') AS first_open,
               count(*) FILTER (WHERE se.state = 'leased') AS in_flight,
               count(*) FILTER (WHERE se.state = 'pending' AND se.attempts > 0) AS pending_retry,
               count(*) FILTER (WHERE se.state = 'parked') AS parked
          FROM eventstore.subscription_events se
         WHERE se.subscription = s.name) o
 CROSS JOIN LATERAL (
        SELECT coalesce(o.first_open - 1, s.pulled_position) AS position) cp
 CROSS JOIN LATERAL (
        -- Pulled events are committed even when the horizon this snapshot
        -- sees is older (REPEATABLE READ).
        SELECT count(*) AS lag_events,
               min(e.created_at) FILTER (WHERE e.global_position = first_pos) AS oldest_created_at
          FROM (SELECT e.*, min(e.global_position) OVER () AS first_pos
                  FROM eventstore.events e
                 WHERE e.global_position > cp.position
                   AND e.global_position <= greatest(h.horizon, s.pulled_position)
                   AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                   AND (s.stream_prefix IS NULL OR starts_with(e.stream_id, s.stream_prefix))) e) lag
 CROSS JOIN LATERAL (
        SELECT array_agg(x.consumer ORDER BY x.consumer) AS consumers
          FROM (SELECT sc.consumer FROM eventstore.subscription_consumers sc
                 WHERE sc.subscription = s.name AND sc.last_seen_at > now() - s.lease_timeout
                UNION
                SELECT se.consumer FROM eventstore.subscription_events se
                 WHERE se.subscription = s.name AND se.state = 'leased'
                   AND se.lease_expires_at > now()) x) c;
COMMENT ON VIEW eventstore.subscription_status IS
    'Durable subscriptions: checkpoint, lag, in-flight, retrying and parked events, live consumers';

REVOKE ALL ON TABLE eventstore.subscription_status FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.create_subscription(text, text[], text, bigint, interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.drop_subscription(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.subscription_fetch(text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.subscription_ack(text, text, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.subscription_nack(text, text, bigint[], text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.subscription_replay_parked(text, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.subscription_parked(text) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- State: folding streams, snapshots, command handling
-- ---------------------------------------------------------------------

-- Folded states of streams, by tag (which fold) and version.  The state is
-- kept as text in the state type's own format.  Snapshots are a cache: a
-- dump leaves them out, and any of them can be deleted at any time.
CREATE TABLE eventstore.snapshots (
    stream_id      text COLLATE "C" NOT NULL,
    tag            text COLLATE "C" NOT NULL CHECK (tag <> ''),
    stream_version bigint      NOT NULL CHECK (stream_version > 0),
    state_type     regtype     NOT NULL,
    state          text,
    last_event_at  timestamptz NOT NULL,   -- newest created_at folded in
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, tag, state_type, stream_version)
);
COMMENT ON TABLE eventstore.snapshots IS 'Folded states of streams at versions; a cache for load_state and friends';
REVOKE ALL ON TABLE eventstore.snapshots FROM PUBLIC;

CREATE FUNCTION eventstore.load_state(
    stream_id     text,
    evolve        regprocedure,
    initial       anyelement,
    to_version    bigint      DEFAULT NULL,
    as_of         timestamptz DEFAULT NULL,
    use_snapshots boolean     DEFAULT true,
    snapshot_tag  text        DEFAULT NULL,
    OUT state            anyelement,
    OUT version          bigint,
    OUT snapshot_version bigint)
    AS 'MODULE_PATHNAME', 'eventstore_load_state'
    LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION eventstore.load_state(text, regprocedure, anyelement, bigint, timestamptz, boolean, text) IS
    'Fold a stream with evolve(state, event) from initial, starting at its newest usable snapshot; returns state, version and the snapshot used';

CREATE FUNCTION eventstore.aggregate_stream(
    stream_id     text,
    evolve        regprocedure,
    initial       anyelement,
    to_version    bigint      DEFAULT NULL,
    as_of         timestamptz DEFAULT NULL,
    use_snapshots boolean     DEFAULT true,
    snapshot_tag  text        DEFAULT NULL)
RETURNS anyelement
    AS 'MODULE_PATHNAME', 'eventstore_aggregate_stream'
    LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION eventstore.aggregate_stream(text, regprocedure, anyelement, bigint, timestamptz, boolean, text) IS
    'The state of a stream: evolve(state, event) folded over its events, up to a version or as of a time';

CREATE FUNCTION eventstore.take_snapshot(
    stream_id     text,
    evolve        regprocedure,
    initial       anyelement,
    to_version    bigint DEFAULT NULL,
    snapshot_tag  text   DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_take_snapshot'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.take_snapshot(text, regprocedure, anyelement, bigint, text) IS
    'Store the folded state of a stream at its current (or a given) version; returns the version';

CREATE FUNCTION eventstore._fold_step(internal, eventstore.event, regprocedure, anyelement)
RETURNS internal
    AS 'MODULE_PATHNAME', 'eventstore_fold_step'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION eventstore._fold_final(internal, eventstore.event, regprocedure, anyelement)
RETURNS anyelement
    AS 'MODULE_PATHNAME', 'eventstore_fold_final'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE AGGREGATE eventstore.fold(eventstore.event, regprocedure, anyelement) (
    SFUNC = eventstore._fold_step,
    STYPE = internal,
    FINALFUNC = eventstore._fold_final,
    FINALFUNC_EXTRA
);
COMMENT ON AGGREGATE eventstore.fold(eventstore.event, regprocedure, anyelement) IS
    'fold(event, evolve, initial ORDER BY stream_version): evolve(state, event) over the rows, from initial';

CREATE FUNCTION eventstore.handle_command(
    stream_id     text,
    decide        regprocedure,
    command       jsonb,
    evolve        regprocedure,
    initial       anyelement,
    max_retries   integer DEFAULT 3,
    use_snapshots boolean DEFAULT true,
    snapshot_tag  text    DEFAULT NULL,
    OUT version   bigint,
    OUT state     anyelement,
    OUT appended  bigint)
    AS 'MODULE_PATHNAME', 'eventstore_handle_command'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.handle_command(text, regprocedure, jsonb, regprocedure, anyelement, integer, boolean, text) IS
    'Load a stream''s state, decide(command, state) the events, append them expecting the loaded version; retry on conflicts';

-- Snapshot policies: the background worker takes snapshots of matching
-- streams every N versions and/or after events of given types.  A policy
-- runs as an async projection named 'snapshot:<policy>'.
CREATE TABLE eventstore.snapshot_policies (
    name           text COLLATE "C" NOT NULL PRIMARY KEY CHECK (name <> '' AND octet_length(name) <= 54),
    evolve         regprocedure NOT NULL,
    state_type     regtype      NOT NULL,
    initial        text,
    stream_prefix  text COLLATE "C" CHECK (stream_prefix <> ''),
    every          integer CHECK (every > 0),
    on_event_types text[] COLLATE "C" CHECK (cardinality(on_event_types) > 0),
    snapshot_tag   text COLLATE "C" CHECK (snapshot_tag <> ''),
    CHECK (every IS NOT NULL OR on_event_types IS NOT NULL)
);
COMMENT ON TABLE eventstore.snapshot_policies IS 'When the background worker takes snapshots';
SELECT pg_catalog.pg_extension_config_dump('eventstore.snapshot_policies', '');
REVOKE ALL ON TABLE eventstore.snapshot_policies FROM PUBLIC;

-- The handler of a policy's projection: snapshot when the event's version
-- is a multiple of "every" or its type is one of on_event_types.
CREATE FUNCTION eventstore._snapshot_step(e eventstore.event, projection text)
RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.snapshot_policies;
BEGIN
    SELECT * INTO p FROM eventstore.snapshot_policies
     WHERE name = substr(projection, length('snapshot:') + 1);
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF (p.every IS NOT NULL AND e.stream_version % p.every = 0)
       OR e.event_type = ANY (p.on_event_types) THEN
        EXECUTE format('SELECT eventstore.take_snapshot($1, $2, $3::%s, $4, $5)', p.state_type)
          USING e.stream_id, p.evolve, p.initial, e.stream_version, p.snapshot_tag;
    END IF;
END $$;
REVOKE ALL ON FUNCTION eventstore._snapshot_step(eventstore.event, text) FROM PUBLIC;

CREATE FUNCTION eventstore.create_snapshot_policy(
    name           text,
    evolve         regprocedure,
    initial        anyelement,
    stream_prefix  text    DEFAULT NULL,
    every          integer DEFAULT 100,
    on_event_types text[]  DEFAULT NULL,
    snapshot_tag   text    DEFAULT NULL)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    -- the initial state is kept as text, read back by the worker: write it
    -- in a form that reads back the same under any settings
    SET DateStyle = 'ISO' SET IntervalStyle = 'postgres' SET extra_float_digits = 3 SET TimeZone = 'UTC'
    AS $$
BEGIN
    IF name IS NULL OR evolve IS NULL THEN
        RAISE EXCEPTION 'name and evolve must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF name = '' OR octet_length(name) > 54 THEN
        RAISE EXCEPTION 'snapshot policy name must have 1 to 54 bytes' USING ERRCODE = '22023';
    END IF;
    IF every IS NULL AND on_event_types IS NULL THEN
        RAISE EXCEPTION 'a snapshot policy needs every or on_event_types' USING ERRCODE = '22023';
    END IF;
    IF every <= 0 OR cardinality(on_event_types) = 0 OR stream_prefix = '' OR snapshot_tag = '' THEN
        RAISE EXCEPTION 'every must be positive; on_event_types, stream_prefix and snapshot_tag must not be empty'
            USING ERRCODE = '22023';
    END IF;
    -- checks evolve against the state type (42P13) on an empty fold
    PERFORM eventstore.aggregate_stream(' ', evolve, initial, 0, use_snapshots => false);
    IF EXISTS (SELECT FROM eventstore.snapshot_policies p WHERE p.name = create_snapshot_policy.name) THEN
        RAISE EXCEPTION 'snapshot policy "%" already exists', name USING ERRCODE = '42710';
    END IF;
    INSERT INTO eventstore.snapshot_policies
    VALUES (name, evolve, pg_typeof(initial)::regtype, initial::text, stream_prefix, every,
            on_event_types, snapshot_tag);
    PERFORM eventstore.create_projection('snapshot:' || name,
                                         'eventstore._snapshot_step(eventstore.event, text)',
                                         stream_prefix => stream_prefix, mode => 'async');
END $$;
COMMENT ON FUNCTION eventstore.create_snapshot_policy(text, regprocedure, anyelement, text, integer, text[], text) IS
    'Have the background worker snapshot matching streams every N versions and/or after given event types';

CREATE FUNCTION eventstore.drop_snapshot_policy(name text, if_exists boolean DEFAULT false)
RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'name must not be NULL' USING ERRCODE = '22004';
    END IF;
    DELETE FROM eventstore.snapshot_policies p WHERE p.name = drop_snapshot_policy.name;
    IF NOT FOUND THEN
        IF coalesce(if_exists, false) THEN
            RETURN;
        END IF;
        RAISE EXCEPTION 'snapshot policy "%" does not exist', name USING ERRCODE = '42704';
    END IF;
    PERFORM eventstore.drop_projection('snapshot:' || name, if_exists => true);
END $$;
COMMENT ON FUNCTION eventstore.drop_snapshot_policy(text, boolean) IS
    'Stop taking snapshots by a policy (the snapshots taken stay)';

REVOKE ALL ON FUNCTION eventstore.load_state(text, regprocedure, anyelement, bigint, timestamptz, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.aggregate_stream(text, regprocedure, anyelement, bigint, timestamptz, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.take_snapshot(text, regprocedure, anyelement, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore._fold_step(internal, eventstore.event, regprocedure, anyelement) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore._fold_final(internal, eventstore.event, regprocedure, anyelement) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.fold(eventstore.event, regprocedure, anyelement) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.handle_command(text, regprocedure, jsonb, regprocedure, anyelement, integer, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.create_snapshot_policy(text, regprocedure, anyelement, text, integer, text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION eventstore.drop_snapshot_policy(text, boolean) FROM PUBLIC;
