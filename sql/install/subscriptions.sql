-- eventstore durable subscriptions.
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
--
-- On a store distributed with Citus (0.8.0) these tables stay local tables
-- of the coordinator, where consumers call these functions; new events come
-- from eventstore.read_partitions, with a checkpoint per partition
-- (subscriptions.pulled_partitions), and each pulled event is stored whole
-- in subscription_events, so that no call joins the local tables with the
-- distributed events (docs/distributed.md, "Durable subscriptions").

-- ---------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------

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
    -- On a distributed store (0.8.0, hence last): what pulled_position is
    -- on one server, per partition of the global log -- the checkpoint
    -- vector read_partitions takes.  NULL on a single server.
    pulled_partitions jsonb,
    -- How many lanes the subscription's streams are split into (0.9.0,
    -- hence last): one fetch at a time per lane, each with its own pulled
    -- position in subscription_lanes when there are more than one.
    lanes           integer     NOT NULL DEFAULT 1,
    CONSTRAINT subscriptions_pkey PRIMARY KEY (name),
    CONSTRAINT subscriptions_name_check CHECK (name <> ''),
    CONSTRAINT subscriptions_lease_timeout_check CHECK (lease_timeout > interval '0'),
    CONSTRAINT subscriptions_max_attempts_check CHECK (max_attempts >= 1),
    CONSTRAINT subscriptions_pulled_position_check CHECK (pulled_position >= 0),
    CONSTRAINT subscriptions_pulled_partitions_check CHECK (jsonb_typeof(pulled_partitions) = 'object')
    -- (lanes has no CHECK: create_subscription checks it, the only writer
    -- of the column, and every UPDATE of the row -- each fetch of a
    -- subscription of one lane -- reads and prepares every CHECK of the
    -- table again, at a cost in proportion to its text: 4% of a fetch)
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
    consumer_role    regrole,       -- added in 0.4.0
    -- The event itself, stored when it is pulled on a distributed store
    -- (0.8.0, hence last; NULL on a single server, where the fetch reads it
    -- from eventstore.events).
    stream_version   bigint,
    event_id         uuid,
    event_type       text COLLATE "C",
    data             jsonb,
    metadata         jsonb,
    event_created_at timestamptz,
    -- No foreign key to subscriptions (0.9.0): only a fetch inserts rows,
    -- holding the subscription's row lock, which also keeps the row from
    -- being deleted; drop_subscription deletes a subscription's rows.  The
    -- key's check per inserted row cost a fetch a quarter of its time.
    CONSTRAINT subscription_events_pkey PRIMARY KEY (subscription, global_position),
    CONSTRAINT subscription_events_state_check CHECK (
        (state = 'pending' AND lease_expires_at IS NULL AND parked_at IS NULL)
        OR (state = 'leased' AND lease_expires_at IS NOT NULL AND consumer IS NOT NULL
            AND parked_at IS NULL)
        OR (state = 'parked' AND lease_expires_at IS NULL AND parked_at IS NOT NULL))
);
COMMENT ON TABLE eventstore.subscription_events IS
    'Events a subscription has pulled from the log and not had acknowledged: pending, leased or parked';
COMMENT ON COLUMN eventstore.subscription_events.consumer_role IS
    'The role that fetched the current or last lease: only it (or its members) may ack or nack';

-- The events a fetch leased fresh from the log, one row per fetch (0.9.0):
-- a batch costs one row, not one per event.  positions are in order and
-- streams[i] is the stream of positions[i]; an ack removes what it
-- acknowledges (the row goes with its last position).  Everything else an
-- outstanding event can be -- an expired lease, a nacked or parked event,
-- one pulled while its stream was closed, any event of a distributed store
-- -- is a row of subscription_events: a fetch turns an expired lease row,
-- and a nack the positions it rejects, into leased rows there first.
-- eventstore._subscription_outstanding shows both kinds as one.
CREATE TABLE eventstore.subscription_leases (
    subscription  text COLLATE "C" NOT NULL,
    -- positions[1] when the fetch made it: names the row for its life
    first_position bigint     NOT NULL,
    consumer      text COLLATE "C" NOT NULL,
    consumer_role regrole     NOT NULL,
    expires_at    timestamptz NOT NULL,
    positions     bigint[]    NOT NULL,
    streams       text[] COLLATE "C" NOT NULL,
    -- the lane of the streams (0 in a subscription of one lane)
    lane          integer     NOT NULL DEFAULT 0,
    CONSTRAINT subscription_leases_pkey PRIMARY KEY (subscription, first_position),
    CONSTRAINT subscription_leases_arrays_check CHECK (
        cardinality(positions) > 0 AND cardinality(positions) = cardinality(streams))
);
COMMENT ON TABLE eventstore.subscription_leases IS
    'Events leased fresh from the log by one fetch, one row per fetch, until acknowledged (0.9.0)';

-- The lanes of a subscription of more than one (0.9.0): a stream belongs to
-- lane eventstore._stream_lane(stream_id, lanes) for good, and a fetch
-- locks the row of the lane it serves, so fetches of different lanes run
-- (and commit) side by side while each stream keeps one lease holder at a
-- time, in order.  pulled_position is the subscription's, per lane: every
-- event of the lane's streams at or below it is outstanding or was
-- acknowledged.  A subscription of one lane has no rows here: its own row
-- is its lane.
CREATE TABLE eventstore.subscription_lanes (
    subscription    text COLLATE "C" NOT NULL,
    lane            integer     NOT NULL,
    pulled_position bigint      NOT NULL,
    last_fetch_at   timestamptz,
    CONSTRAINT subscription_lanes_pkey PRIMARY KEY (subscription, lane),
    CONSTRAINT subscription_lanes_subscription_fkey FOREIGN KEY (subscription)
        REFERENCES eventstore.subscriptions (name) ON DELETE CASCADE
);
COMMENT ON TABLE eventstore.subscription_lanes IS
    'The lanes of subscriptions of more than one: each one''s pulled position and last fetch (0.9.0)';

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
-- acknowledged or forgetting what was parked.
SELECT pg_catalog.pg_extension_config_dump('eventstore.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.subscription_events', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.subscription_leases', '');
SELECT pg_catalog.pg_extension_config_dump('eventstore.subscription_lanes', '');

REVOKE ALL ON TABLE eventstore.subscriptions FROM PUBLIC;
REVOKE ALL ON TABLE eventstore.subscription_events FROM PUBLIC;
REVOKE ALL ON TABLE eventstore.subscription_leases FROM PUBLIC;
REVOKE ALL ON TABLE eventstore.subscription_lanes FROM PUBLIC;
REVOKE ALL ON TABLE eventstore.subscription_consumers FROM PUBLIC;

-- Every outstanding event, whichever table holds it: what a subscription
-- has pulled and not had acknowledged.  The rule "what is outstanding" is
-- written here once, for the fetch, the status view and the tests.
CREATE VIEW eventstore._subscription_outstanding AS
SELECT se.subscription, se.global_position, se.stream_id, se.state, se.attempts,
       se.consumer, se.consumer_role, se.lease_expires_at, se.not_before,
       se.last_error, se.parked_at
  FROM eventstore.subscription_events se
UNION ALL
SELECT l.subscription, u.global_position, u.stream_id, 'leased'::text COLLATE "C", 1,
       l.consumer, l.consumer_role, l.expires_at, NULL::timestamptz,
       NULL::text, NULL::timestamptz
  FROM eventstore.subscription_leases l
 CROSS JOIN LATERAL unnest(l.positions, l.streams) AS u(global_position, stream_id);
COMMENT ON VIEW eventstore._subscription_outstanding IS
    'The outstanding events of every subscription, per event: subscription_events and the lease rows of subscription_leases (internal)';
REVOKE ALL ON TABLE eventstore._subscription_outstanding FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Shared argument checks (internal)
-- ---------------------------------------------------------------------

-- Not SECURITY DEFINER: they touch no table.  No SET clause (0.9.0):
-- every name in them is qualified, and switching the setting on each call
-- was a cost on every fetch, ack and nack.
CREATE FUNCTION eventstore.subscription_check_name(name text, what text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = pg_catalog.format('%s must not be NULL', what);
    END IF;
    IF name OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = pg_catalog.format('%s must not be empty', what);
    END IF;
END
$$;
COMMENT ON FUNCTION eventstore.subscription_check_name(text, text) IS
    'Raise 22004 for a NULL and 22023 for an empty subscription or consumer name';
REVOKE ALL ON FUNCTION eventstore.subscription_check_name(text, text) FROM PUBLIC;

CREATE FUNCTION eventstore.subscription_not_found(name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'undefined_object',
        MESSAGE = pg_catalog.format('subscription "%s" does not exist', name),
        HINT = 'Create it with eventstore.create_subscription().';
END
$$;
COMMENT ON FUNCTION eventstore.subscription_not_found(text) IS
    'Raise 42704 for a subscription that does not exist';
REVOKE ALL ON FUNCTION eventstore.subscription_not_found(text) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Creating and dropping
-- ---------------------------------------------------------------------

CREATE FUNCTION eventstore.create_subscription(
    name          text,
    event_types   text[]   DEFAULT NULL,
    stream_prefix text     DEFAULT NULL,
    start_from    bigint   DEFAULT 0,
    lease_timeout interval DEFAULT '30 seconds',
    max_attempts  integer  DEFAULT 5,
    lanes         integer  DEFAULT 1)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_types  text[];
    v_start  bigint;
    v_vector jsonb;
BEGIN
    PERFORM eventstore.subscription_check_name(name, 'subscription name');
    IF start_from IS NULL OR lease_timeout IS NULL OR max_attempts IS NULL OR lanes IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'start_from, lease_timeout, max_attempts and lanes must not be NULL';
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
    -- every fetch computes now() + lease_timeout and now() - lease_timeout
    PERFORM eventstore._check_interval('lease_timeout', lease_timeout);
    IF max_attempts < 1 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('max_attempts must be at least 1, not %s', max_attempts);
    END IF;
    IF lanes < 1 OR lanes > 64 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('lanes must be between 1 and 64, not %s', lanes);
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

    IF eventstore.is_distributed() THEN
        IF lanes > 1 THEN
            RAISE EXCEPTION USING ERRCODE = 'feature_not_supported',
                MESSAGE = 'a subscription of a distributed store has one lane',
                DETAIL = 'Its fetches pull every partition of the global log; lanes split the single log by stream.';
        END IF;
        -- A checkpoint per partition: 0 = none yet ({}); -1 = each
        -- partition's horizon; N = after N in every partition (the entry
        -- of the lowest partition stands for all, read_partitions).
        -- pulled_position stays what it promises: every matching event at
        -- or below it (0, or N) is pulled.
        IF start_from = -1 THEN
            v_vector := eventstore._horizons_vector();
            v_start := 0;
        ELSIF start_from = 0 THEN
            v_vector := '{}';
            v_start := 0;
        ELSE
            v_vector := jsonb_build_object('-2147483648', start_from);
            v_start := start_from;
        END IF;
    ELSE
        v_start := CASE WHEN start_from = -1 THEN eventstore.global_horizon() ELSE start_from END;
    END IF;

    INSERT INTO eventstore.subscriptions AS s
           (name, event_types, stream_prefix, lease_timeout, max_attempts, pulled_position,
            pulled_partitions, lanes)
    VALUES (create_subscription.name, v_types, nullif(stream_prefix, ''),
            create_subscription.lease_timeout, create_subscription.max_attempts, v_start,
            v_vector, create_subscription.lanes)
    ON CONFLICT ON CONSTRAINT subscriptions_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('subscription "%s" already exists', name);
    END IF;
    IF lanes > 1 THEN
        INSERT INTO eventstore.subscription_lanes (subscription, lane, pulled_position)
        SELECT create_subscription.name, l, v_start
          FROM generate_series(0, create_subscription.lanes - 1) AS l;
    END IF;
END
$$;
COMMENT ON FUNCTION eventstore.create_subscription(text, text[], text, bigint, interval, integer, integer) IS
    'Create a durable subscription; start_from 0 = origin, -1 = now, N = after position N (on a distributed store: in every partition); lanes: fetches that may run side by side';
REVOKE ALL ON FUNCTION eventstore.create_subscription(text, text[], text, bigint, interval, integer, integer) FROM PUBLIC;

CREATE FUNCTION eventstore.drop_subscription(name text, if_exists boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.subscription_check_name(name, 'subscription name');
    -- Waits for a fetch in progress (which holds the row); the cascade
    -- removes its consumers, and then its outstanding events go.
    DELETE FROM eventstore.subscriptions s WHERE s.name = drop_subscription.name;
    IF FOUND THEN
        DELETE FROM eventstore.subscription_events se
         WHERE se.subscription = drop_subscription.name;
        DELETE FROM eventstore.subscription_leases l
         WHERE l.subscription = drop_subscription.name;
    ELSE
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
REVOKE ALL ON FUNCTION eventstore.drop_subscription(text, boolean) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Consuming: fetch (lease), ack, nack
-- ---------------------------------------------------------------------

-- The events a fetch may lease now: in position order, at most max_count,
-- each one ready (pending and due, or leased with an expired lease) and
-- preceded in its stream only by ready events -- which this fetch then
-- leases too, being earlier.  Parked events do not count.  A stream with a
-- live lease or a retry not yet due is closed from that event on.  Only
-- rows of subscription_events are ever deliverable: the caller has turned
-- the lease rows expired at `at` into such rows.  Only the events of
-- streams in the lane count (0.9.0): those the caller holds the lane of.
CREATE FUNCTION eventstore.subscription_deliverable(
    subscription text, at timestamptz, max_count integer, lane integer, lanes integer)
RETURNS bigint[]
LANGUAGE plpgsql STABLE CALLED ON NULL INPUT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- PL/pgSQL (0.9.0; SQL before): every fetch calls this once or twice,
    -- and a SQL function that cannot be inlined was parsed and planned on
    -- every call; PL/pgSQL keeps the plan for the session.
    -- Lease rows are never ready (a fetch first turns the expired ones
    -- into rows of subscription_events): with no other outstanding event
    -- there is nothing to deliver, and no need to read them (0.9.0).
    IF NOT EXISTS (SELECT FROM eventstore.subscription_events se
                    WHERE se.subscription = subscription_deliverable.subscription
                      AND se.state <> 'parked'
                      AND (subscription_deliverable.lanes = 1
                           OR eventstore._stream_lane(se.stream_id, subscription_deliverable.lanes)
                              = subscription_deliverable.lane)) THEN
        RETURN '{}';
    END IF;
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
                      FROM eventstore._subscription_outstanding se
                     WHERE se.subscription = subscription_deliverable.subscription
                       AND se.state <> 'parked'
                       AND (subscription_deliverable.lanes = 1
                            OR eventstore._stream_lane(se.stream_id, subscription_deliverable.lanes)
                               = subscription_deliverable.lane)) o
             WHERE o.ready
             ORDER BY o.global_position
             LIMIT subscription_deliverable.max_count) d);
END
$$;
COMMENT ON FUNCTION eventstore.subscription_deliverable(text, timestamptz, integer, integer, integer) IS
    'Positions a fetch of the subscription''s lane may lease at the given time (internal)';
REVOKE ALL ON FUNCTION eventstore.subscription_deliverable(text, timestamptz, integer, integer, integer) FROM PUBLIC;

-- The lane of a stream in a subscription of that many lanes, 0 to lanes - 1
-- (src/subscription.c, 0.9.0): a hash of the stream id, which never
-- changes.  Internal.
CREATE FUNCTION eventstore._stream_lane(stream_id text, lanes integer)
RETURNS integer
    AS 'MODULE_PATHNAME', 'eventstore_stream_lane'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventstore._stream_lane(text, integer) IS
    'The lane of a stream in a subscription of that many lanes (internal)';
REVOKE ALL ON FUNCTION eventstore._stream_lane(text, integer) FROM PUBLIC;

-- A fetch's pull from the log (src/subscription.c, 0.9.0): what
-- read_all(after_position, max_count, event_types, stream_prefix) reads,
-- sorted as it is read into the first "room" events of streams not in
-- "closed" (leased) and the others (waiting), of the lane's streams only;
-- horizon is the one the read stopped at.  Internal: the fetch calls it as
-- the extension's owner.
CREATE FUNCTION eventstore._subscription_pull(
    after_position bigint, max_count bigint, event_types text[], stream_prefix text,
    closed text[], room bigint, lane integer, lanes integer,
    OUT got bigint, OUT last_position bigint, OUT horizon bigint,
    OUT leased bigint[], OUT leased_streams text[],
    OUT waiting bigint[], OUT waiting_streams text[])
RETURNS record
    AS 'MODULE_PATHNAME', 'eventstore_subscription_pull'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._subscription_pull(bigint, bigint, text[], text, text[], bigint, integer, integer) IS
    'Read a page of the global log for a subscription and sort it into leased and waiting events (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_pull(bigint, bigint, text[], text, text[], bigint, integer, integer) FROM PUBLIC;

CREATE FUNCTION eventstore._subscription_fetch_general(
    caller             regrole,
    caller_search_path text,
    subscription text,
    consumer     text,
    max_count    integer)
RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint,
               event_id uuid, event_type text, data jsonb, metadata jsonb,
               created_at timestamptz, attempt integer)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- its statements' plans depend on arrays built per call: with custom plans
-- they were planned again on every call (0.9.0)
SET plan_cache_mode = force_generic_plan
ROWS 100
AS $$
#variable_conflict use_column
DECLARE
    v_sub      eventstore.subscriptions;
    v_lane     integer := 0;
    v_served   integer[] := '{}';
    v_room     bigint;
    v_now      timestamptz;
    v_expires  timestamptz;
    v_deliver  bigint[] := '{}';
    v_fresh    bigint[] := '{}';
    v_ready    bigint[] := '{}';
    v_taken    bigint[] := '{}';
    v_taken_streams text[] := '{}';
    v_blocked  text[];
    v_window   bigint;
    v_pending  bigint := 0;
    v_step     bigint;
    v_want     bigint;
    v_got      bigint;
    v_dist     boolean;
    v_pull     record;
    v_page     record;
    v_full     boolean;
    v_busy     boolean;
BEGIN
    PERFORM eventstore._check_caller(caller);
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
    PERFORM eventstore._check_count('max_count', max_count, 100000);

    -- One fetch of a lane at a time; nacks (FOR SHARE) wait too, so what
    -- follows sees a stable set of outstanding events (acks take no lock on
    -- the subscription: 0.9.0).  A subscription of one lane is its own
    -- lane: its row is locked (a row that fails "lanes = 1" is not).
    SELECT * INTO v_sub FROM eventstore.subscriptions s
     WHERE s.name = _subscription_fetch_general.subscription AND s.lanes = 1 FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        -- Several lanes (0.9.0; lanes never changes): the lane fetched
        -- longest ago that no fetch holds, or, when every one is held,
        -- wait for that one.  The subscription's row is not locked: a drop
        -- waits for the lanes' (its foreign key cascades to them).
        SELECT * INTO v_sub FROM eventstore.subscriptions s
         WHERE s.name = _subscription_fetch_general.subscription;
        IF NOT FOUND THEN
            PERFORM eventstore.subscription_not_found(subscription);
        END IF;
        SELECT l.lane, l.pulled_position INTO v_lane, v_sub.pulled_position
          FROM eventstore.subscription_lanes l
         WHERE l.subscription = v_sub.name
         ORDER BY l.last_fetch_at NULLS FIRST, l.lane
         LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            SELECT l.lane, l.pulled_position INTO v_lane, v_sub.pulled_position
              FROM eventstore.subscription_lanes l
             WHERE l.subscription = v_sub.name
             ORDER BY l.last_fetch_at NULLS FIRST, l.lane
             LIMIT 1 FOR NO KEY UPDATE;
            IF NOT FOUND THEN
                PERFORM eventstore.subscription_not_found(subscription);
            END IF;
        END IF;
    END IF;
    -- The clock, not now(): the lock may have been waited for, and the
    -- caller's transaction may be old.
    v_now := clock_timestamp();
    v_expires := v_now + v_sub.lease_timeout;

    -- The consumer was seen: written when it is new, or last seen more
    -- than a hundredth of the lease timeout ago (0.9.0; on every fetch
    -- before) -- fine enough for the status view, which counts those seen
    -- within the lease timeout.  Those not seen for that long are
    -- forgotten then.
    INSERT INTO eventstore.subscription_consumers AS c (subscription, consumer, last_seen_at)
    VALUES (v_sub.name, _subscription_fetch_general.consumer, v_now)
    ON CONFLICT ON CONSTRAINT subscription_consumers_pkey
    DO UPDATE SET last_seen_at = excluded.last_seen_at
     WHERE c.last_seen_at < excluded.last_seen_at - v_sub.lease_timeout / 100;
    IF FOUND THEN
        DELETE FROM eventstore.subscription_consumers c
         WHERE c.subscription = v_sub.name AND c.last_seen_at < v_now - v_sub.lease_timeout;
    END IF;

    -- Pulls keep at most v_window events of a lane waiting, so the table
    -- stays small even when one busy stream blocks everything pulled.
    v_window := greatest(1000, max_count);
    v_dist := eventstore.is_distributed();
    -- (distribute() refuses a store with subscriptions: this is a guard,
    -- after N in every partition being what pulled_position promised)
    IF v_dist AND v_sub.pulled_partitions IS NULL THEN
        v_sub.pulled_partitions := jsonb_build_object('-2147483648', v_sub.pulled_position);
    END IF;

    -- Each lane held: what it has ready, then what its pull brings, until
    -- the batch is full; then the next lane no fetch holds (0.9.0).  Only
    -- the events of the lane's streams are read and written here: every
    -- stream's events stay in its lane.
    LOOP
        v_room := max_count - cardinality(v_deliver) - cardinality(v_fresh);

        -- The usual state of a subscription whose consumers keep up:
        -- nothing outstanding but live lease rows.  Then no lease expires,
        -- nothing is parked or deliverable, none is pending, and the
        -- streams of the lease rows are the closed ones: one statement
        -- instead of four (0.9.0).
        SELECT EXISTS (SELECT FROM eventstore.subscription_events se
                        WHERE se.subscription = v_sub.name AND se.state <> 'parked'
                          AND (v_sub.lanes = 1
                               OR eventstore._stream_lane(se.stream_id, v_sub.lanes) = v_lane))
               OR coalesce(bool_or(l.expires_at <= v_now), false),
               coalesce(array_agg(u.stream_id), '{}')
          INTO v_busy, v_blocked
          FROM eventstore.subscription_leases l
         CROSS JOIN LATERAL unnest(l.streams) AS u(stream_id)
         WHERE l.subscription = v_sub.name AND l.lane = v_lane;

        IF v_busy THEN
            -- Expired lease rows become rows of subscription_events, leased
            -- (and expired) as before: their consumer may still acknowledge
            -- them until they are handed out again, which the next
            -- statements decide (0.9.0).
            WITH expired AS (
                DELETE FROM eventstore.subscription_leases l
                 WHERE l.subscription = v_sub.name AND l.lane = v_lane
                   AND l.expires_at <= v_now
                RETURNING l.consumer, l.consumer_role, l.expires_at, l.positions, l.streams)
            INSERT INTO eventstore.subscription_events
                   (subscription, global_position, stream_id, state, attempts, consumer,
                    consumer_role, lease_expires_at)
            SELECT v_sub.name, u.global_position, u.stream_id, 'leased', 1, x.consumer,
                   x.consumer_role, x.expires_at
              FROM expired x
             CROSS JOIN LATERAL unnest(x.positions, x.streams) AS u(global_position, stream_id);

            -- Expired leases of events delivered max_attempts times: park
            -- them rather than hand out a poison event again.
            UPDATE eventstore.subscription_events se
               SET state = 'parked', lease_expires_at = NULL, parked_at = v_now,
                   last_error = 'lease expired'
             WHERE se.subscription = v_sub.name AND se.state = 'leased'
               AND se.lease_expires_at <= v_now AND se.attempts >= v_sub.max_attempts
               AND (v_sub.lanes = 1
                    OR eventstore._stream_lane(se.stream_id, v_sub.lanes) = v_lane);

            v_ready := eventstore.subscription_deliverable(v_sub.name, v_now, v_room::integer,
                                                           v_lane, v_sub.lanes);

            IF cardinality(v_ready) < v_room THEN
                -- Fewer than the room are deliverable, so every outstanding
                -- event not among them (a live lease, a retry not yet due,
                -- or one after these in its stream) closes its stream to
                -- what is pulled (0.9.0).  (Those of other lanes close
                -- streams this lane never reads; only the lane's pending
                -- ones count toward its window.)
                SELECT count(*) FILTER (WHERE se.state = 'pending'
                                          AND (v_sub.lanes = 1
                                               OR eventstore._stream_lane(se.stream_id, v_sub.lanes)
                                                  = v_lane)),
                       coalesce(array_agg(DISTINCT se.stream_id)
                                    FILTER (WHERE se.global_position <> ALL (v_ready)), '{}')
                  INTO v_pending, v_blocked
                  FROM eventstore._subscription_outstanding se
                 WHERE se.subscription = v_sub.name AND se.state <> 'parked';
            END IF;
        END IF;

        -- Pull from the log what this fetch can deliver.  Pulled events
        -- come after every outstanding one, so they never change what was
        -- already deliverable.  When what was pulled is blocked (or of
        -- other lanes), each further pull is twice as large.
        v_step := 0;
        LOOP
            EXIT WHEN cardinality(v_ready) + cardinality(v_taken) >= v_room;
            v_step := greatest(v_room - cardinality(v_ready) - cardinality(v_taken), v_step * 2);
            v_want := least(v_step, v_window - v_pending);
            EXIT WHEN v_want <= 0;

            IF v_dist THEN
                -- A distributed store (one lane): a page of every partition
                -- after its checkpoint, at most v_want each, stored whole.
                SELECT * INTO v_pull
                  FROM eventstore._pull_partitions(v_sub.pulled_partitions, v_want,
                                                   v_sub.event_types, v_sub.stream_prefix);
                INSERT INTO eventstore.subscription_events
                       (subscription, global_position, stream_id, stream_version, event_id,
                        event_type, data, metadata, event_created_at)
                SELECT v_sub.name, p.global_position, p.stream_id, p.stream_version, p.event_id,
                       p.event_type, p.data, p.metadata, p.created_at
                  FROM unnest(v_pull.events) p;
                GET DIAGNOSTICS v_got = ROW_COUNT;
                v_pending := v_pending + v_got;
                v_sub.pulled_partitions := v_pull.partitions;
                v_full := v_pull.more;
                IF v_got > 0 THEN
                    v_ready := eventstore.subscription_deliverable(v_sub.name, v_now,
                                                                   v_room::integer, 0, 1);
                END IF;
            ELSE
                -- Leased as pulled (0.9.0: into one lease row per fetch and
                -- lane, written at the end, not an insert and an update per
                -- event): in position order, as many as the batch has room
                -- for, of the lane's streams nothing outstanding closes.
                -- The others of the lane are stored pending, and a stream
                -- with an event left pending is closed from it on.
                -- _subscription_pull reads the page as read_all does and
                -- sorts it as it reads (0.9.0; a query with a window and
                -- five aggregates before).  The filtered-follower pattern
                -- (README): the horizon the page was read to bounds what a
                -- short page proves absent.
                SELECT p.* INTO v_page
                  FROM eventstore._subscription_pull(v_sub.pulled_position, v_want,
                                                     v_sub.event_types, v_sub.stream_prefix, v_blocked,
                                                     v_room - cardinality(v_ready) - cardinality(v_taken),
                                                     v_lane, v_sub.lanes) p;
                IF cardinality(v_page.waiting) > 0 THEN
                    INSERT INTO eventstore.subscription_events (subscription, global_position, stream_id)
                    SELECT v_sub.name, w.global_position, w.stream_id
                      FROM unnest(v_page.waiting, v_page.waiting_streams) AS w(global_position, stream_id);
                    v_blocked := v_blocked || v_page.waiting_streams;
                    v_pending := v_pending + cardinality(v_page.waiting);
                END IF;
                v_taken := v_taken || v_page.leased;
                v_taken_streams := v_taken_streams || v_page.leased_streams;

                IF v_page.got < v_want THEN
                    v_sub.pulled_position := greatest(v_sub.pulled_position, v_page.last_position,
                                                      v_page.horizon);
                ELSE
                    v_sub.pulled_position := v_page.last_position;
                END IF;
                v_full := v_page.got >= v_want;
            END IF;
            EXIT WHEN NOT v_full;
        END LOOP;

        IF v_sub.lanes = 1 THEN
            UPDATE eventstore.subscriptions s
               SET pulled_position = v_sub.pulled_position,
                   pulled_partitions = v_sub.pulled_partitions, last_fetch_at = v_now
             WHERE s.name = v_sub.name;
        ELSE
            UPDATE eventstore.subscription_lanes l
               SET pulled_position = v_sub.pulled_position, last_fetch_at = v_now
             WHERE l.subscription = v_sub.name AND l.lane = v_lane;
        END IF;

        IF cardinality(v_taken) > 0 THEN
            INSERT INTO eventstore.subscription_leases
                   (subscription, first_position, consumer, consumer_role, expires_at,
                    positions, streams, lane)
            VALUES (v_sub.name, v_taken[1], _subscription_fetch_general.consumer, _subscription_fetch_general.caller,
                    v_expires, v_taken, v_taken_streams, v_lane);
        END IF;
        IF v_sub.lanes = 1 THEN
            v_deliver := v_ready;
            v_fresh := v_taken;
            EXIT;
        END IF;
        v_deliver := v_deliver || v_ready;
        v_fresh := v_fresh || v_taken;
        EXIT WHEN cardinality(v_deliver) + cardinality(v_fresh) >= max_count;
        -- Room left: the next lane no fetch holds, if any.
        v_ready := '{}';
        v_taken := '{}';
        v_taken_streams := '{}';
        v_pending := 0;
        v_served := v_served || v_lane;
        SELECT l.lane, l.pulled_position INTO v_lane, v_sub.pulled_position
          FROM eventstore.subscription_lanes l
         WHERE l.subscription = v_sub.name AND l.lane <> ALL (v_served)
         ORDER BY l.last_fetch_at NULLS FIRST, l.lane
         LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED;
        EXIT WHEN NOT FOUND;
    END LOOP;

    IF v_dist THEN
        -- the events as they were stored when pulled (no join of this
        -- local table with the distributed events)
        RETURN QUERY
        WITH leased AS (
            UPDATE eventstore.subscription_events se
               SET state = 'leased', consumer = _subscription_fetch_general.consumer,
                   consumer_role = _subscription_fetch_general.caller,
                   attempts = se.attempts + 1,
                   lease_expires_at = v_expires, not_before = NULL
             WHERE se.subscription = v_sub.name AND se.global_position = ANY (v_deliver)
            RETURNING se.*)
        SELECT l.global_position, l.stream_id::text, l.stream_version, l.event_id,
               l.event_type::text, l.data, l.metadata, l.event_created_at, l.attempts
          FROM leased l
         ORDER BY l.global_position;
        RETURN;
    END IF;

    IF cardinality(v_deliver) = 0 THEN
        -- Only events leased as pulled (the usual case): no row of
        -- subscription_events to lease (0.9.0).
        RETURN QUERY
        SELECT e.global_position, e.stream_id::text, e.stream_version, e.event_id,
               e.event_type::text, e.data, e.metadata, e.created_at, 1
          FROM unnest(v_fresh) AS f(p)
          JOIN eventstore.events e ON e.global_position = f.p
         ORDER BY e.global_position;
        RETURN;
    END IF;

    -- The outstanding events leased now, then those leased as pulled: one
    -- statement, in position order.
    RETURN QUERY
    WITH leased AS (
        UPDATE eventstore.subscription_events se
           SET state = 'leased', consumer = _subscription_fetch_general.consumer,
               consumer_role = _subscription_fetch_general.caller,
               attempts = se.attempts + 1,
               lease_expires_at = v_expires, not_before = NULL
         WHERE se.subscription = v_sub.name AND se.global_position = ANY (v_deliver)
        RETURNING se.global_position, se.attempts),
    l AS (
        SELECT leased.global_position, leased.attempts FROM leased
        UNION ALL
        SELECT f.p, 1 FROM unnest(v_fresh) AS f(p))
    SELECT e.global_position, e.stream_id::text, e.stream_version, e.event_id,
           e.event_type::text, e.data, e.metadata, e.created_at, l.attempts
      FROM l
      JOIN eventstore.events e ON e.global_position = l.global_position
     ORDER BY e.global_position;
END
$$;
COMMENT ON FUNCTION eventstore._subscription_fetch_general(regrole, text, text, text, integer) IS
    'Every fetch but the usual one: the general way of eventstore._subscription_fetch (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_fetch_general(regrole, text, text, text, integer) FROM PUBLIC;

-- The implementation of subscription_fetch (src/subscription.c, 0.9.0):
-- the usual fetch -- one lane, a consumer seen lately, nothing outstanding
-- but live lease rows -- in C, with the tables' access methods; every
-- other fetch goes to _subscription_fetch_general, which it calls (as
-- that function's owner: it is SECURITY DEFINER).  Not SECURITY DEFINER
-- itself: it runs no query and no function of anybody's, and reads and
-- writes the tables without asking for privileges; like every
-- implementation it first checks that eventstore_as_caller called it for
-- that caller, so EXECUTE on subscription_fetch stays the only gate.
CREATE FUNCTION eventstore._subscription_fetch(
    caller             regrole,
    caller_search_path text,
    subscription text,
    consumer     text,
    max_count    integer)
RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint,
               event_id uuid, event_type text, data jsonb, metadata jsonb,
               created_at timestamptz, attempt integer)
    AS 'MODULE_PATHNAME', 'eventstore_subscription_fetch'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    ROWS 100;
COMMENT ON FUNCTION eventstore._subscription_fetch(regrole, text, text, text, integer) IS
    'Implementation of eventstore.subscription_fetch (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_fetch(regrole, text, text, text, integer) FROM PUBLIC;


CREATE FUNCTION eventstore.subscription_fetch(
    subscription text,
    consumer     text,
    max_count    integer DEFAULT 100)
RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint,
               event_id uuid, event_type text, data jsonb, metadata jsonb,
               created_at timestamptz, attempt integer)
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    ROWS 100;
COMMENT ON FUNCTION eventstore.subscription_fetch(text, text, integer) IS
    'Lease up to max_count events of a subscription to a consumer (bound to the calling role), in position order, per-stream order kept';
REVOKE ALL ON FUNCTION eventstore.subscription_fetch(text, text, integer) FROM PUBLIC;

-- Take positions out of the lease rows a consumer holds for the calling
-- role (or a role it is a member of), and return what was taken with the
-- lease it was in: an ack drops it, a nack makes it a row of
-- subscription_events (0.9.0).  Not SECURITY DEFINER: only ack and nack
-- call it, as the extension's owner.
CREATE FUNCTION eventstore._subscription_unlease(
    caller       regrole,
    subscription text,
    consumer     text,
    positions    bigint[])
RETURNS TABLE (global_position bigint, stream_id text, consumer_role regrole,
               expires_at timestamptz)
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r             record;
    v_min         bigint;
    v_max         bigint;
    v_keep        bigint[];
    v_keep_streams text[];
    v_take        bigint[];
    v_take_streams text[];
BEGIN
    -- NULLs acknowledge nothing (and would make "<> ALL" below unknown);
    -- an array of more dimensions counts by its elements, as "= ANY" does
    SELECT coalesce(array_agg(x), '{}'), min(x), max(x)
      INTO positions, v_min, v_max
      FROM unnest(positions) AS x
     WHERE x IS NOT NULL;
    -- Locked, each lease row is read as it is now and stays so: another
    -- ack of the same consumer, or a fetch turning the row (expired) into
    -- rows of subscription_events, waits for this transaction or was
    -- waited for (a row it deleted is skipped).  Rows are picked by the
    -- range of their (ordered) positions: && compares every element with
    -- every other.
    FOR r IN
        SELECT l.first_position, l.consumer_role, l.expires_at, l.positions, l.streams
          FROM eventstore.subscription_leases l
         WHERE l.subscription = _subscription_unlease.subscription
           AND l.consumer = _subscription_unlease.consumer
           -- (the first position stays the row's key when earlier ones
           -- are taken out: a range of the primary key)
           AND l.first_position <= v_max
           AND l.positions[1] <= v_max
           AND l.positions[cardinality(l.positions)] >= v_min
           AND (l.consumer_role = _subscription_unlease.caller
                OR eventstore._is_member(_subscription_unlease.caller, l.consumer_role))
         ORDER BY l.first_position
           FOR NO KEY UPDATE
    LOOP
        -- Split the row into what is taken and what stays, in its order.
        IF r.positions = positions THEN
            -- the whole row, as fetched (the usual ack): nothing to split
            v_take := r.positions;
            v_take_streams := r.streams;
            v_keep := NULL;
        ELSIF cardinality(r.positions)::bigint * cardinality(positions) <= 100000 THEN
            -- the usual sizes: each position compared with the ack's
            SELECT array_agg(u.p) FILTER (WHERE u.p <> ALL (_subscription_unlease.positions)),
                   array_agg(u.s) FILTER (WHERE u.p <> ALL (_subscription_unlease.positions)),
                   array_agg(u.p) FILTER (WHERE u.p = ANY (_subscription_unlease.positions)),
                   array_agg(u.s) FILTER (WHERE u.p = ANY (_subscription_unlease.positions))
              INTO v_keep, v_keep_streams, v_take, v_take_streams
              FROM unnest(r.positions, r.streams) AS u(p, s);
        ELSE
            -- large batches and acks: a full join runs as a hash or merge
            -- join, never a nested loop, so the time stays linear in the
            -- sizes (comparing each with each took seconds at 100,000)
            SELECT array_agg(u.p ORDER BY u.p) FILTER (WHERE u.p IS NOT NULL AND a.p IS NULL),
                   array_agg(u.s ORDER BY u.p) FILTER (WHERE u.p IS NOT NULL AND a.p IS NULL),
                   array_agg(u.p ORDER BY u.p) FILTER (WHERE u.p IS NOT NULL AND a.p IS NOT NULL),
                   array_agg(u.s ORDER BY u.p) FILTER (WHERE u.p IS NOT NULL AND a.p IS NOT NULL)
              INTO v_keep, v_keep_streams, v_take, v_take_streams
              FROM unnest(r.positions, r.streams) AS u(p, s)
              FULL JOIN (SELECT DISTINCT x FROM unnest(_subscription_unlease.positions) AS x) AS a(p)
                ON a.p = u.p;
        END IF;
        CONTINUE WHEN v_take IS NULL;
        RETURN QUERY
        SELECT t.p, t.s::text, r.consumer_role, r.expires_at
          FROM unnest(v_take, v_take_streams) AS t(p, s);
        IF v_keep IS NULL THEN
            DELETE FROM eventstore.subscription_leases l
             WHERE l.subscription = _subscription_unlease.subscription
               AND l.first_position = r.first_position;
        ELSE
            UPDATE eventstore.subscription_leases l
               SET positions = v_keep, streams = v_keep_streams
             WHERE l.subscription = _subscription_unlease.subscription
               AND l.first_position = r.first_position;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION eventstore._subscription_unlease(regrole, text, text, bigint[]) IS
    'Take positions out of the lease rows a consumer holds for the calling role and return them (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_unlease(regrole, text, text, bigint[]) FROM PUBLIC;

CREATE FUNCTION eventstore._subscription_ack_general(
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
    v_count   integer;
    v_deleted integer;
BEGIN
    PERFORM eventstore._check_caller(caller);
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    PERFORM eventstore.subscription_check_name(consumer, 'consumer');
    IF positions IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'null_value_not_allowed',
            MESSAGE = 'positions must not be NULL';
    END IF;
    -- No lock on the subscription (0.9.0; FOR SHARE before, which made
    -- every ack wait for the fetch running then, and its commit): an ack
    -- deletes only rows leased to this consumer, and a row that a running
    -- fetch hands to another consumer (its lease expired) is locked by
    -- that fetch: the delete waits for it, then finds it is not this
    -- consumer's any more (or, rolled back, still is).
    -- A lease that expired but was not handed out again is still this
    -- consumer's to acknowledge.  Only the role that fetched it (or a
    -- member of that role) may: the consumer's name is not a secret.
    -- Lease rows first: one a fetch turns into rows of subscription_events
    -- meanwhile is then found there by the next statements.
    -- The usual ack: the positions of one lease row, as fetched.  Its key
    -- is their first; a row changed meanwhile (another ack of the same
    -- consumer took some) is rechecked and left to the general way (0.9.0).
    -- A subscription that does not exist has no lease row, so whether it
    -- exists is asked only when this finds none (0.9.0).
    DELETE FROM eventstore.subscription_leases l
     WHERE l.subscription = _subscription_ack_general.subscription
       AND l.first_position = _subscription_ack_general.positions[1]
       AND l.positions = _subscription_ack_general.positions
       AND l.consumer = _subscription_ack_general.consumer
       AND (l.consumer_role = _subscription_ack_general.caller
            OR eventstore._is_member(_subscription_ack_general.caller, l.consumer_role));
    IF FOUND THEN
        RETURN cardinality(_subscription_ack_general.positions);
    END IF;
    PERFORM FROM eventstore.subscriptions s
      WHERE s.name = _subscription_ack_general.subscription;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    SELECT count(*) INTO v_count
      FROM eventstore._subscription_unlease(caller, subscription, consumer, positions);
    IF v_count >= cardinality(positions) THEN
        RETURN v_count;
    END IF;
    DELETE FROM eventstore.subscription_events se
     WHERE se.subscription = _subscription_ack_general.subscription
       AND se.global_position = ANY (positions)
       AND se.state = 'leased' AND se.consumer = _subscription_ack_general.consumer
       -- the role that fetched, without a call per row (0.9.0), else a member
       AND (se.consumer_role = _subscription_ack_general.caller
            OR eventstore._is_member(_subscription_ack_general.caller, se.consumer_role));
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_count + v_deleted;
END
$$;
COMMENT ON FUNCTION eventstore._subscription_ack_general(regrole, text, text, text, bigint[]) IS
    'Every ack but the usual one: the general way of eventstore._subscription_ack (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_ack_general(regrole, text, text, text, bigint[]) FROM PUBLIC;

-- The implementation of subscription_ack (src/subscription.c, 0.9.0): the
-- usual ack -- exactly the positions of one lease row, as fetched, by its
-- consumer and role -- in C, which deletes the row; every other goes to
-- _subscription_ack_general.  Not SECURITY DEFINER, as _subscription_fetch.
CREATE FUNCTION eventstore._subscription_ack(
    caller             regrole,
    caller_search_path text,
    subscription text,
    consumer     text,
    positions    bigint[])
RETURNS integer
    AS 'MODULE_PATHNAME', 'eventstore_subscription_ack'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._subscription_ack(regrole, text, text, text, bigint[]) IS
    'Implementation of eventstore.subscription_ack (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_ack(regrole, text, text, text, bigint[]) FROM PUBLIC;


CREATE FUNCTION eventstore.subscription_ack(
    subscription text,
    consumer     text,
    positions    bigint[])
RETURNS integer
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.subscription_ack(text, text, bigint[]) IS
    'Acknowledge events leased to the consumer by the calling role; returns how many were acknowledged';
REVOKE ALL ON FUNCTION eventstore.subscription_ack(text, text, bigint[]) FROM PUBLIC;

CREATE FUNCTION eventstore._subscription_nack(
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
    -- Rejected events of lease rows become leased rows of
    -- subscription_events, which the update below then handles (0.9.0).
    INSERT INTO eventstore.subscription_events
           (subscription, global_position, stream_id, state, attempts, consumer,
            consumer_role, lease_expires_at)
    SELECT v_sub.name, u.global_position, u.stream_id, 'leased', 1,
           _subscription_nack.consumer, u.consumer_role, u.expires_at
      FROM eventstore._subscription_unlease(caller, subscription, consumer, positions) u;
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
COMMENT ON FUNCTION eventstore._subscription_nack(regrole, text, text, text, bigint[], text, interval) IS
    'Implementation of eventstore.subscription_nack (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_nack(regrole, text, text, text, bigint[], text, interval) FROM PUBLIC;

CREATE FUNCTION eventstore.subscription_nack(
    subscription text,
    consumer     text,
    positions    bigint[],
    error        text     DEFAULT NULL,
    retry_after  interval DEFAULT NULL)
RETURNS integer
    AS 'MODULE_PATHNAME', 'eventstore_as_caller'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.subscription_nack(text, text, bigint[], text, interval) IS
    'Reject events leased to the consumer by the calling role: retry after a delay, or park after max_attempts';
REVOKE ALL ON FUNCTION eventstore.subscription_nack(text, text, bigint[], text, interval) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Parked events
-- ---------------------------------------------------------------------

CREATE FUNCTION eventstore.subscription_replay_parked(
    subscription text,
    positions    bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
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
    -- and of every lane, in order (0.9.0)
    PERFORM FROM eventstore.subscription_lanes l
      WHERE l.subscription = subscription_replay_parked.subscription
      ORDER BY l.lane FOR NO KEY UPDATE;
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
REVOKE ALL ON FUNCTION eventstore.subscription_replay_parked(text, bigint[]) FROM PUBLIC;

CREATE FUNCTION eventstore.subscription_parked(subscription text)
RETURNS TABLE (global_position bigint, stream_id text, stream_version bigint,
               event_type text, attempts integer, last_error text,
               parked_at timestamptz)
LANGUAGE plpgsql STABLE CALLED ON NULL INPUT PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM eventstore.subscription_check_name(subscription, 'subscription name');
    PERFORM FROM eventstore.subscriptions s WHERE s.name = subscription_parked.subscription;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    IF eventstore.is_distributed() THEN
        -- stored with the event when it was pulled
        RETURN QUERY
        SELECT se.global_position, se.stream_id::text, se.stream_version, se.event_type::text,
               se.attempts, se.last_error, se.parked_at
          FROM eventstore.subscription_events se
         WHERE se.subscription = subscription_parked.subscription AND se.state = 'parked'
         ORDER BY se.global_position;
        RETURN;
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
REVOKE ALL ON FUNCTION eventstore.subscription_parked(text) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Status
-- ---------------------------------------------------------------------

-- One row per subscription.  The checkpoint ("position") is just below the
-- lowest outstanding event that is not parked, or the pulled position when
-- there is none: every matching event at or below it was acknowledged or
-- parked.  The view calls global_horizon(): its readers need EXECUTE on it
-- (and shared_preload_libraries, else 55000).
-- What subscription_status shows of a subscription but its lag (0.8.0):
-- the same on a single server and on a distributed store.
CREATE VIEW eventstore._subscription_state AS
SELECT s.name,
       s.event_types,
       s.stream_prefix,
       CASE WHEN s.pulled_partitions IS NULL
            THEN least(o.first_open - 1, coalesce(ln.pulled_position, s.pulled_position))
       END AS position,
       CASE WHEN s.pulled_partitions IS NULL
            THEN coalesce(ln.pulled_position, s.pulled_position) END AS pulled_position,
       o.in_flight,
       o.pending_retry,
       o.parked,
       coalesce(c.consumers, '{}') AS consumers,
       greatest(s.last_fetch_at, ln.last_fetch_at) AS last_fetch_at,
       s.lease_timeout,
       s.max_attempts,
       s.pulled_partitions,
       s.lanes
  FROM eventstore.subscriptions s
 -- several lanes (0.9.0): the lowest lane's pulled position is the
 -- subscription's; their fetches write the lanes, not the subscription
 CROSS JOIN LATERAL (
        SELECT min(sl.pulled_position) AS pulled_position,
               max(sl.last_fetch_at) AS last_fetch_at
          FROM eventstore.subscription_lanes sl
         WHERE sl.subscription = s.name) ln
 CROSS JOIN LATERAL (
        SELECT min(se.global_position) FILTER (WHERE se.state <> 'parked') AS first_open,
               count(*) FILTER (WHERE se.state = 'leased') AS in_flight,
               count(*) FILTER (WHERE se.state = 'pending' AND se.attempts > 0) AS pending_retry,
               count(*) FILTER (WHERE se.state = 'parked') AS parked
          FROM eventstore._subscription_outstanding se
         WHERE se.subscription = s.name) o
 CROSS JOIN LATERAL (
        SELECT array_agg(x.consumer ORDER BY x.consumer) AS consumers
          FROM (SELECT sc.consumer FROM eventstore.subscription_consumers sc
                 WHERE sc.subscription = s.name AND sc.last_seen_at > now() - s.lease_timeout
                UNION
                SELECT se.consumer FROM eventstore._subscription_outstanding se
                 WHERE se.subscription = s.name AND se.state = 'leased'
                   AND se.lease_expires_at > now()) x) c;
COMMENT ON VIEW eventstore._subscription_state IS
    'Durable subscriptions as subscription_status shows them, without the lag (internal)';
REVOKE ALL ON TABLE eventstore._subscription_state FROM PUBLIC;

-- The lag counts the matching events after the checkpoint up to what the
-- subscription may pull.  On a distributed store distribute() replaces
-- this view by one whose lag is NULL: counting it would read every
-- partition after its checkpoint on every node, and Citus does not join
-- the distributed events with the local tables of the coordinator.
CREATE VIEW eventstore.subscription_status AS
SELECT st.name,
       st.event_types,
       st.stream_prefix,
       st.position,
       st.pulled_position,
       lag.lag_events,
       now() - lag.oldest_created_at AS lag_time,
       st.in_flight,
       st.pending_retry,
       st.parked,
       st.consumers,
       st.last_fetch_at,
       st.lease_timeout,
       st.max_attempts,
       st.pulled_partitions,
       st.lanes
  FROM eventstore._subscription_state st
 CROSS JOIN LATERAL (
        -- Pulled events are committed even when the horizon this snapshot
        -- sees is older (REPEATABLE READ).
        SELECT count(*) AS lag_events,
               min(e.created_at) FILTER (WHERE e.global_position = first_pos) AS oldest_created_at
          FROM (SELECT e.*, min(e.global_position) OVER () AS first_pos
                  FROM eventstore.events e
                 WHERE e.global_position > st.position
                   AND e.global_position <= greatest(eventstore.global_horizon(), st.pulled_position)
                   AND eventstore._event_matches(e.stream_id, e.event_type,
                                                 st.event_types, st.stream_prefix)) e) lag;
COMMENT ON VIEW eventstore.subscription_status IS
    'Durable subscriptions: checkpoint, lag, in-flight, retrying and parked events, live consumers';
REVOKE ALL ON TABLE eventstore.subscription_status FROM PUBLIC;
