-- eventstore 0.7.0 -> 0.8.0: a store distributed by stream with Citus
-- (issue 16).  test/t/014_upgrade_chain.pl checks that this script and a
-- fresh install of 0.8.0 agree.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.8.0'" to load this file. \quit

-- =====================================================================
-- Section 1: the functions and guards of a distributed store
-- (the same definitions as sql/install/distribution.sql)
-- =====================================================================

-- ---------------------------------------------------------------------
-- A store distributed by stream with Citus (0.8.0)
-- ---------------------------------------------------------------------
-- eventstore.distribute() splits the tables keyed by stream into
-- co-located shards by stream_id and makes the functions of one stream
-- Citus "distributed functions": called on the coordinator, each runs on
-- the node that holds the stream, where the C code finds the stream's local
-- shards (src/shard.c).  The global log is read by partition
-- (read_partitions), which durable subscriptions pull from with a vector
-- checkpoint (subscriptions.sql), and so do async projections (0.8.0,
-- src/projection.c).  What else works across streams (read_all, inline
-- projections, snapshot and archive policies) stays single-server in this
-- version: on a distributed store it is refused with 0A000, never run
-- against the empty placeholder tables.

CREATE FUNCTION eventstore.is_distributed() RETURNS boolean
    AS 'MODULE_PATHNAME', 'eventstore_is_distributed'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventstore.is_distributed() IS 'Whether eventstore.events is distributed with Citus in this database (eventstore.distribute)';

CREATE FUNCTION eventstore._single_server_only() RETURNS trigger
    AS 'MODULE_PATHNAME', 'eventstore_single_server_only'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._single_server_only() IS 'Trigger refusing, on a distributed store, what this version runs on one server only';
REVOKE ALL ON FUNCTION eventstore._single_server_only() FROM PUBLIC;

-- An inline projection runs in the appending transaction, on the node that
-- holds the stream, where neither its definition nor its read model is.
CREATE TRIGGER projections_single_server
    BEFORE INSERT ON eventstore.projections
    FOR EACH ROW WHEN (NEW.mode OPERATOR(pg_catalog.=) 'inline')
    EXECUTE FUNCTION eventstore._single_server_only('an inline projection',
        'Create it with mode => ''async'': the projector of the coordinator runs it from every partition of the log.');
CREATE TRIGGER snapshot_policies_single_server
    BEFORE INSERT ON eventstore.snapshot_policies
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore._single_server_only('a snapshot policy');
CREATE TRIGGER archive_policies_single_server
    BEFORE INSERT ON eventstore.archive_policies
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore._single_server_only('an archive policy');

-- The global log as partitions: one per shard of a distributed store, one
-- (-2147483648) on a single server.  Positions increase within a
-- partition; a follower keeps one per partition, {"<partition>": position},
-- and within each partition read_partitions keeps read_all's promise.
CREATE FUNCTION eventstore.read_partitions(
    after         jsonb     DEFAULT '{}',
    max_count     bigint    DEFAULT 1000,
    event_types   text[]    DEFAULT NULL,
    stream_prefix text      DEFAULT NULL,
    partitions    integer[] DEFAULT NULL)
RETURNS TABLE (partition integer, global_position bigint, stream_id text,
               stream_version bigint, event_id uuid, event_type text,
               data jsonb, metadata jsonb, created_at timestamptz)
    AS 'MODULE_PATHNAME', 'eventstore_read_partitions'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1000;
COMMENT ON FUNCTION eventstore.read_partitions(jsonb, bigint, text[], text, integer[]) IS
    'Events of each partition of the global log after its position in after, ascending per partition; never skips an event that commits later';
REVOKE ALL ON FUNCTION eventstore.read_partitions(jsonb, bigint, text[], text, integer[]) FROM PUBLIC;

-- What one node reads for read_partitions on another; it checks that the
-- caller may execute read_partitions, so one grant governs both.
CREATE FUNCTION eventstore._read_partitions_here(
    after jsonb, max_count bigint, event_types text[], stream_prefix text,
    partitions integer[])
RETURNS TABLE (partition integer, global_position bigint, stream_id text,
               stream_version bigint, event_id uuid, event_type text,
               data jsonb, metadata jsonb, created_at timestamptz)
    AS 'MODULE_PATHNAME', 'eventstore_read_partitions_here'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 1000;
COMMENT ON FUNCTION eventstore._read_partitions_here(jsonb, bigint, text[], text, integer[]) IS
    'The partitions of read_partitions placed on this node (internal; needs EXECUTE on read_partitions)';
GRANT EXECUTE ON FUNCTION eventstore._read_partitions_here(jsonb, bigint, text[], text, integer[]) TO PUBLIC;

-- Where each partition of the global log is complete: the horizon of the
-- node holding it (a single server: one row, -2147483648, global_horizon).
-- A filtered follower reads it before a page of read_partitions; a
-- partition that returned a short page may move its checkpoint there.
CREATE FUNCTION eventstore.partition_horizons()
RETURNS TABLE (partition integer, horizon bigint)
    AS 'MODULE_PATHNAME', 'eventstore_partition_horizons'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 32;
COMMENT ON FUNCTION eventstore.partition_horizons() IS
    'For each partition of the global log, the position up to which read_partitions reads it now';
REVOKE ALL ON FUNCTION eventstore.partition_horizons() FROM PUBLIC;

-- What one node reads for partition_horizons on another; it checks that
-- the caller may execute partition_horizons, so one grant governs both.
CREATE FUNCTION eventstore._partition_horizons_here(partitions integer[])
RETURNS TABLE (partition integer, horizon bigint)
    AS 'MODULE_PATHNAME', 'eventstore_partition_horizons_here'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 32;
COMMENT ON FUNCTION eventstore._partition_horizons_here(integer[]) IS
    'The partitions of partition_horizons placed on this node (internal; needs EXECUTE on partition_horizons)';
GRANT EXECUTE ON FUNCTION eventstore._partition_horizons_here(integer[]) TO PUBLIC;

-- Where a vector checkpoint continues in a partition: the position it
-- names for it, or for the greatest partition not above it (a partition
-- split off after the checkpoint was made), 0 when none: read_partitions'
-- rule.
CREATE FUNCTION eventstore._vector_after(vector jsonb, part integer) RETURNS bigint
    LANGUAGE sql IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
SELECT coalesce((SELECT v.value::bigint
                   FROM pg_catalog.jsonb_each_text(vector) v
                  WHERE v.key::integer OPERATOR(pg_catalog.<=) part
                  ORDER BY v.key::integer DESC LIMIT 1), 0)
$$;
COMMENT ON FUNCTION eventstore._vector_after(jsonb, integer) IS
    'The position after which a vector checkpoint continues in a partition (internal)';
REVOKE ALL ON FUNCTION eventstore._vector_after(jsonb, integer) FROM PUBLIC;

-- partition_horizons() as a vector checkpoint: every partition up to where
-- it is complete now ({} when there is none).
CREATE FUNCTION eventstore._horizons_vector() RETURNS jsonb
    LANGUAGE sql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
SELECT coalesce(pg_catalog.jsonb_object_agg(h.partition::text, h.horizon), '{}')
  FROM eventstore.partition_horizons() h
$$;
COMMENT ON FUNCTION eventstore._horizons_vector() IS
    'partition_horizons() as a vector checkpoint (internal)';
REVOKE ALL ON FUNCTION eventstore._horizons_vector() FROM PUBLIC;

-- Where each partition is placed now: {"<partition>": [placement ids]}
-- (NULL on a single server).  A pull compares it before and after its page.
CREATE FUNCTION eventstore._partition_placements() RETURNS jsonb
    LANGUAGE plpgsql STABLE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    placed jsonb;
BEGIN
    IF NOT eventstore.is_distributed() THEN
        RETURN NULL;
    END IF;
    SELECT pg_catalog.jsonb_object_agg(x.part, x.placements) INTO placed
      FROM (SELECT s.shardminvalue AS part,
                   pg_catalog.array_agg(p.placementid ORDER BY p.placementid) AS placements
              FROM pg_catalog.pg_dist_shard s
              JOIN pg_catalog.pg_dist_placement p
                ON p.shardid OPERATOR(pg_catalog.=) s.shardid
             WHERE s.logicalrelid OPERATOR(pg_catalog.=) 'eventstore.events'::pg_catalog.regclass
             GROUP BY s.shardminvalue) x;
    RETURN placed;
END $$;
COMMENT ON FUNCTION eventstore._partition_placements() IS
    'The placements of each partition of a distributed store, NULL on a single server (internal)';
REVOKE ALL ON FUNCTION eventstore._partition_placements() FROM PUBLIC;

-- One pull of the partitioned log by a follower that keeps a vector
-- checkpoint (durable subscriptions, async projections): a page of at most
-- "want" matching events of every partition after its entry in "after",
-- in position order, and the checkpoint that follows the page.  It is the
-- filtered follower's rule per partition: a partition whose page is full
-- continues after its last event; one whose page is short has nothing
-- else matching up to the horizon read before the page -- provided the
-- page was read where that horizon was, so where the partitions are placed
-- is read before and after (a partition moved meanwhile, or skipped by
-- read_partitions for moving, goes only to its last event).  Where a
-- partition continues comes from read_partitions' rule (the entry of the
-- greatest partition not above it), so entries are only added.  more: some
-- partition's page was full (pull again at once).
CREATE FUNCTION eventstore._pull_partitions(
    after jsonb, want bigint, event_types text[], stream_prefix text,
    OUT events eventstore.event[], OUT partitions jsonb, OUT more boolean)
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_horizons jsonb;
    v_placed   jsonb;
    v_moved    jsonb;
    v_pages    jsonb;
BEGIN
    v_horizons := eventstore._horizons_vector();
    v_placed := eventstore._partition_placements();
    WITH page AS MATERIALIZED (
        SELECT r.* FROM eventstore.read_partitions(after, want, event_types, stream_prefix) r)
    SELECT coalesce((SELECT pg_catalog.array_agg(
                                ROW(p.global_position, p.stream_id, p.stream_version, p.event_id,
                                    p.event_type, p.data, p.metadata, p.created_at)::eventstore.event
                                ORDER BY p.global_position)
                       FROM page p), '{}'),
           (SELECT coalesce(pg_catalog.jsonb_object_agg(g.partition::text,
                                                        pg_catalog.jsonb_build_array(g.n, g.last)), '{}')
              FROM (SELECT p.partition, pg_catalog.count(*) AS n,
                           pg_catalog.max(p.global_position) AS last
                      FROM page p GROUP BY p.partition) g)
      INTO events, v_pages;
    v_moved := eventstore._partition_placements();

    SELECT after OPERATOR(pg_catalog.||) coalesce(pg_catalog.jsonb_object_agg(k.part::text, k.pos), '{}')
      INTO partitions
      FROM (SELECT x.part,
                   CASE WHEN (v_pages -> x.part::text ->> 0)::bigint >= want
                        THEN (v_pages -> x.part::text ->> 1)::bigint
                        WHEN v_horizons ? x.part::text
                             AND (v_placed -> x.part::text) OPERATOR(pg_catalog.=) (v_moved -> x.part::text)
                        THEN greatest(eventstore._vector_after(after, x.part),
                                      (v_pages -> x.part::text ->> 1)::bigint,
                                      (v_horizons ->> x.part::text)::bigint)
                        ELSE greatest(eventstore._vector_after(after, x.part),
                                      (v_pages -> x.part::text ->> 1)::bigint)
                   END AS pos
              FROM (SELECT k1::integer FROM pg_catalog.jsonb_object_keys(v_horizons) k1
                    UNION
                    SELECT k2::integer FROM pg_catalog.jsonb_object_keys(v_pages) k2) x(part)) k;
    more := EXISTS (SELECT FROM pg_catalog.jsonb_each(v_pages) g
                     WHERE (g.value ->> 0)::bigint >= want);
END $$;
COMMENT ON FUNCTION eventstore._pull_partitions(jsonb, bigint, text[], text) IS
    'A page of every partition after a vector checkpoint, and the checkpoint that follows it (internal)';
REVOKE ALL ON FUNCTION eventstore._pull_partitions(jsonb, bigint, text[], text) FROM PUBLIC;

CREATE FUNCTION eventstore._advance_positions(floor bigint) RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_advance_positions'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._advance_positions(bigint) IS
    'Number this node for a distributed store and make it draw global positions at or above floor (internal, eventstore.align_positions)';
REVOKE ALL ON FUNCTION eventstore._advance_positions(bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- One order of the whole log, as an opt-in (eventstore.total_order)
-- ---------------------------------------------------------------------
-- Positions are unique across the store and increase within each
-- partition, so the partitions merge into one order by position.  A
-- reader may return a position q only when no partition can still commit
-- an event below q: q must be at or below every partition's horizon.  A
-- node that appends less than the others -- or nothing -- keeps a low
-- horizon, so the reader lifts its positions (its sequence, briefly
-- locked) up to the highest horizon.  Appends themselves stay as they are.

CREATE FUNCTION eventstore._lift_positions(floor bigint) RETURNS boolean
    AS 'MODULE_PATHNAME', 'eventstore_lift_positions'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET lock_timeout = '100ms';
COMMENT ON FUNCTION eventstore._lift_positions(bigint) IS
    'Make this node draw positions above floor, waiting at most 100 ms for its appenders (internal, total order)';
REVOKE ALL ON FUNCTION eventstore._lift_positions(bigint) FROM PUBLIC;

CREATE FUNCTION eventstore._lift_all_positions(floor bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NOT eventstore.is_distributed() THEN
        RAISE EXCEPTION 'eventstore is not distributed in this database' USING ERRCODE = '55000';
    END IF;
    -- a node whose appenders keep the sequence locked beyond the timeout
    -- is lifted at a later read
    PERFORM FROM pg_catalog.run_command_on_all_nodes(
        pg_catalog.format('SELECT eventstore._lift_positions(%s)', floor));
END $$;
COMMENT ON FUNCTION eventstore._lift_all_positions(bigint) IS
    'Lift the positions of every node above floor, as far as each can within its timeout (internal, total order)';
REVOKE ALL ON FUNCTION eventstore._lift_all_positions(bigint) FROM PUBLIC;

-- read_all on a distributed store with eventstore.total_order on: a page of
-- every partition after "after", cut at the lowest position up to which
-- every partition is complete, in position order.
CREATE FUNCTION eventstore._read_all_merged(
    after bigint, max_count bigint, event_types text[], stream_prefix text)
RETURNS SETOF eventstore.event
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_pull  record;
    v_cut   bigint;
    v_top   bigint;
    v_parts integer;
    v_want  bigint;
    v_got   bigint;
BEGIN
    IF NOT eventstore.is_distributed() THEN
        RAISE EXCEPTION 'eventstore is not distributed in this database' USING ERRCODE = '55000';
    END IF;
    -- a share of the page from each partition: a partition whose share is
    -- full cuts the page at its last event, so the page still holds every
    -- event up to the cut (and at least that partition's share)
    SELECT pg_catalog.count(*) INTO v_parts
      FROM pg_catalog.pg_dist_shard s
     WHERE s.logicalrelid OPERATOR(pg_catalog.=) 'eventstore.events'::pg_catalog.regclass;
    v_want := greatest(1, (coalesce(max_count, 10000) + v_parts - 1) / greatest(v_parts, 1));
    SELECT * INTO v_pull
      FROM eventstore._pull_partitions(pg_catalog.jsonb_build_object('-2147483648', after),
                                       v_want, event_types, stream_prefix);
    -- where each partition is complete: its entry of the new checkpoint,
    -- or "after" for a partition the pull did not reach (moving)
    SELECT pg_catalog.min(coalesce((v_pull.partitions ->> s.shardminvalue)::bigint, after))
      INTO v_cut
      FROM pg_catalog.pg_dist_shard s
     WHERE s.logicalrelid OPERATOR(pg_catalog.=) 'eventstore.events'::pg_catalog.regclass;
    SELECT pg_catalog.max(v.value::bigint) INTO v_top
      FROM pg_catalog.jsonb_each_text(v_pull.partitions) v;
    RETURN QUERY
    SELECT e.* FROM pg_catalog.unnest(v_pull.events) e
     WHERE e.global_position OPERATOR(pg_catalog.<=) v_cut
     ORDER BY e.global_position
     LIMIT max_count;
    GET DIAGNOSTICS v_got = ROW_COUNT;
    -- At the head of the log (a short page) the nodes that lag hold the
    -- order back: lift them for the next read.  (A reader catching up
    -- leaves the appenders alone.)
    IF v_cut < v_top AND (max_count IS NULL OR v_got < max_count) THEN
        PERFORM eventstore._lift_all_positions(v_top);
    END IF;
END $$;
COMMENT ON FUNCTION eventstore._read_all_merged(bigint, bigint, text[], text) IS
    'read_all on a distributed store with eventstore.total_order on: the partitions merged up to where all are complete (internal)';
REVOKE ALL ON FUNCTION eventstore._read_all_merged(bigint, bigint, text[], text) FROM PUBLIC;

-- Number every node for the distributed store -- node group g draws the
-- positions congruent to g modulo 1024 (ES_POSITION_STRIDE), so positions
-- are unique across the store -- and make each draw above the highest
-- position stored anywhere.  distribute() runs it; run it again after
-- adding a node (whose appends are refused until then) or splitting
-- shards.  Shard moves need nothing (an append to a shard that arrived
-- checks it, src/shard.c).
CREATE FUNCTION eventstore.align_positions()
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    highest bigint;
    failed record;
BEGIN
    IF NOT eventstore.is_distributed() THEN
        RAISE EXCEPTION 'eventstore is not distributed in this database'
            USING ERRCODE = '55000',
                  HINT = 'A single server draws every position from one sequence: there is nothing to align.';
    END IF;
    SELECT pg_catalog.max(e.global_position) INTO highest FROM eventstore.events e;
    highest := GREATEST(COALESCE(highest, 0),
                        (SELECT s.last_value FROM eventstore.global_position_seq s));
    -- here, in this transaction; the workers over connections of their own
    -- (distribute() calls this before its transaction commits)
    PERFORM eventstore._advance_positions(highest);
    SELECT r.* INTO failed
      FROM pg_catalog.run_command_on_workers(
               pg_catalog.format('SELECT eventstore._advance_positions(%s)', highest)) r
     WHERE NOT r.success
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'could not align the positions of node %:%', failed.nodename, failed.nodeport
            USING ERRCODE = '08006', DETAIL = failed.result;
    END IF;
    RETURN highest;
END
$$;
COMMENT ON FUNCTION eventstore.align_positions() IS
    'Number every node of a distributed store (unique positions) and make each draw above the highest position stored; returns it';
REVOKE ALL ON FUNCTION eventstore.align_positions() FROM PUBLIC;

CREATE FUNCTION eventstore.distribute(shard_count integer DEFAULT 32)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure;
BEGIN
    IF shard_count IS NULL THEN
        RAISE EXCEPTION 'shard_count must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF shard_count < 1 OR shard_count > 64000 THEN
        RAISE EXCEPTION 'shard_count must be between 1 and 64000'
            USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RAISE EXCEPTION 'extension "citus" is not installed in this database'
            USING ERRCODE = '55000',
                  HINT = 'Install Citus, put citus first in shared_preload_libraries and run CREATE EXTENSION citus.';
    END IF;
    IF eventstore.is_distributed() THEN
        RAISE NOTICE 'eventstore is already distributed';
        RETURN;
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        RAISE EXCEPTION 'eventstore.distribute() must run on the coordinator'
            USING ERRCODE = '55000';
    END IF;
    -- An async projection goes on where it stands: its position holds in
    -- every partition (positions drawn from now on are above it).
    IF EXISTS (SELECT FROM eventstore.projections p WHERE p.mode OPERATOR(pg_catalog.=) 'inline')
       OR EXISTS (SELECT FROM eventstore.subscriptions)
       OR EXISTS (SELECT FROM eventstore.snapshot_policies)
       OR EXISTS (SELECT FROM eventstore.archive_policies) THEN
        RAISE EXCEPTION 'cannot distribute a store that has inline projections, subscriptions or policies'
            USING ERRCODE = '0A000',
                  DETAIL = 'This version runs inline projections and policies on one server only, and a subscription pulled from one server''s log has no checkpoint per partition.',
                  HINT = 'Drop them first (subscriptions, and inline projections as async ones, may be created again after distribute()).';
    END IF;

    -- Citus requires every unique key of a distributed table to include
    -- the distribution column.  Positions are drawn per node, so they are
    -- unique per node and increasing per shard, not across the store; an
    -- event id is unique within its shard's streams.
    ALTER TABLE eventstore.events
        DROP CONSTRAINT events_pkey,
        ADD CONSTRAINT events_pkey PRIMARY KEY (global_position, stream_id);
    ALTER TABLE eventstore.event_ids
        DROP CONSTRAINT event_ids_pkey,
        ADD CONSTRAINT event_ids_pkey PRIMARY KEY (event_id, stream_id);

    -- the triggers keeping the events append-only go with the shards
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    PERFORM pg_catalog.create_distributed_table('eventstore.events', 'stream_id',
                                                shard_count => shard_count);
    PERFORM pg_catalog.create_distributed_table('eventstore.event_ids', 'stream_id',
                                                colocate_with => 'eventstore.events');
    PERFORM pg_catalog.create_distributed_table('eventstore.streams', 'stream_id',
                                                colocate_with => 'eventstore.events');
    PERFORM pg_catalog.create_distributed_table('eventstore.archived_events', 'stream_id',
                                                colocate_with => 'eventstore.events');
    PERFORM pg_catalog.create_distributed_table('eventstore.snapshots', 'stream_id',
                                                colocate_with => 'eventstore.events');

    -- the functions of one stream run where it is stored, also inside a
    -- transaction block (force_delegation)
    FOR fn IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace OPERATOR(pg_catalog.=) 'eventstore'::regnamespace
           AND p.proname OPERATOR(pg_catalog.=) ANY (ARRAY[
                 'append', 'append_events', 'read_stream', 'stream_version',
                 'stream_info', 'get_stream_metadata', 'set_stream_metadata',
                 'delete_stream', 'tombstone_stream', 'archive_stream',
                 'restore_stream', 'load_state', 'aggregate_stream',
                 'take_snapshot', 'handle_command']::name[])
         ORDER BY p.proname
    LOOP
        PERFORM pg_catalog.create_distributed_function(fn, '$1',
                    colocate_with => 'eventstore.events', force_delegation => true);
    END LOOP;

    -- Citus copied the rows into the shards and left them on disk in the
    -- tables here, which stay as empty placeholders (the truncation must
    -- pass the trigger that keeps the events append-only)
    ALTER TABLE eventstore.events DISABLE TRIGGER events_no_truncate;
    ALTER TABLE eventstore.archived_events DISABLE TRIGGER archived_events_no_truncate;
    PERFORM pg_catalog.truncate_local_data_after_distributing_table(t)
       FROM unnest(ARRAY['eventstore.events', 'eventstore.event_ids', 'eventstore.streams',
                         'eventstore.archived_events', 'eventstore.snapshots']::regclass[]) t;
    ALTER TABLE eventstore.events ENABLE ALWAYS TRIGGER events_no_truncate;
    ALTER TABLE eventstore.archived_events ENABLE ALWAYS TRIGGER archived_events_no_truncate;

    -- Durable subscriptions stay local tables here; their status view
    -- must not read the distributed events (Citus does not join them with
    -- the local tables here, and the lag it counts is one server's):
    -- subscription_status of subscriptions.sql with a NULL lag.
    CREATE OR REPLACE VIEW eventstore.subscription_status AS
    SELECT st.name, st.event_types, st.stream_prefix, st.position, st.pulled_position,
           NULL::bigint AS lag_events, NULL::interval AS lag_time,
           st.in_flight, st.pending_retry, st.parked, st.consumers,
           st.last_fetch_at, st.lease_timeout, st.max_attempts, st.pulled_partitions
      FROM eventstore._subscription_state st;

    -- The same for projection_status: the lag is NULL, and so is the
    -- position of an async projection (its checkpoint is "partitions").
    CREATE OR REPLACE VIEW eventstore.projection_status AS
    SELECT p.name, p.mode, p.handler, p.event_types, p.stream_prefix, p.priority,
           p.enabled,
           CASE WHEN NOT p.enabled THEN 'disabled'
                WHEN c.retry_at IS NOT NULL THEN 'failing'
                WHEN p.catching_up THEN 'catching_up'
                WHEN p.mode OPERATOR(pg_catalog.=) 'inline' THEN 'live'
                ELSE 'running' END AS state,
           NULL::bigint AS position, NULL::bigint AS lag_events, NULL::interval AS lag_time,
           c.events_total, c.updated_at,
           c.error_count, c.error_position, c.last_error, c.last_error_at, c.retry_at,
           p.owner, p.created_at,
           coalesce(c.partitions, pg_catalog.jsonb_build_object('-2147483648', c.position)) AS partitions
      FROM eventstore.projections p
      JOIN eventstore.projection_checkpoints c USING (name);

    -- the events stored so far keep their positions in their partitions:
    -- every node draws above them
    PERFORM eventstore.align_positions();
END
$$;
COMMENT ON FUNCTION eventstore.distribute(integer) IS 'Distribute the store with Citus by stream_id into shard_count co-located shards; run once on the coordinator';
REVOKE ALL ON FUNCTION eventstore.distribute(integer) FROM PUBLIC;

-- =====================================================================
-- Section 2: a snapshot policy is inserted before its evolve is tried on
-- a stream, so that a distributed store refuses it with 0A000 (as
-- sql/install/state.sql)
-- =====================================================================

CREATE OR REPLACE FUNCTION eventstore._create_snapshot_policy(
    caller             regrole,
    caller_search_path text,
    name               text,
    evolve             regprocedure,
    initial            anyelement,
    stream_prefix      text,
    every              integer,
    on_event_types     text[],
    snapshot_tag       text)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    -- the initial state is kept as text, read back by the worker: write it
    -- in a form that reads back the same under any settings
    SET DateStyle = 'ISO' SET IntervalStyle = 'postgres' SET extra_float_digits = 3 SET TimeZone = 'UTC'
    AS $$
BEGIN
    PERFORM eventstore._check_caller(caller);
    IF name IS NULL OR evolve IS NULL THEN
        RAISE EXCEPTION 'name and evolve must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF name = '' OR octet_length(name) > 54 THEN
        RAISE EXCEPTION 'snapshot policy name must have 1 to 54 bytes' USING ERRCODE = '22023';
    END IF;
    IF every IS NULL AND on_event_types IS NULL THEN
        RAISE EXCEPTION 'a snapshot policy needs every or on_event_types' USING ERRCODE = '22023';
    END IF;
    PERFORM eventstore._check_event_types('on_event_types', on_event_types);
    IF every <= 0 OR stream_prefix = '' OR snapshot_tag = '' THEN
        RAISE EXCEPTION 'every must be positive; stream_prefix and snapshot_tag must not be empty'
            USING ERRCODE = '22023';
    END IF;
    -- the snapshots are taken as the caller, with the caller's evolve
    IF NOT pg_catalog.has_function_privilege(caller::oid, evolve::oid, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', evolve USING ERRCODE = '42501';
    END IF;
    IF NOT pg_catalog.has_function_privilege(
               caller::oid,
               'eventstore.take_snapshot(text, regprocedure, anyelement, bigint, text)'::regprocedure::oid,
               'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function eventstore.take_snapshot'
            USING ERRCODE = '42501',
                  DETAIL = 'The background worker takes the policy''s snapshots as the role that creates it.';
    END IF;
    IF EXISTS (SELECT FROM eventstore.snapshot_policies p WHERE p.name = _create_snapshot_policy.name) THEN
        RAISE EXCEPTION 'snapshot policy "%" already exists', name USING ERRCODE = '42710';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_proc f WHERE f.oid OPERATOR(pg_catalog.=) evolve::oid) THEN
        RAISE EXCEPTION 'function with OID % does not exist', evolve::oid USING ERRCODE = '42883';
    END IF;
    -- first, so that a distributed store refuses the policy (0A000, the
    -- table's trigger) before evolve is tried on a stream
    INSERT INTO eventstore.snapshot_policies
        (name, evolve, state_type, initial, stream_prefix, every, on_event_types, snapshot_tag,
         search_path, evolve_owner)
    VALUES (name, evolve::text, pg_typeof(initial)::regtype, initial::text, stream_prefix, every,
            on_event_types, snapshot_tag, caller_search_path,
            (SELECT f.proowner::regrole FROM pg_catalog.pg_proc f WHERE f.oid = evolve::oid));
    -- Checks evolve against the state type (42P13).  It folds no event
    -- (to_version => 0) and reads no snapshot: no user code runs here as
    -- the extension's owner.
    PERFORM eventstore.aggregate_stream(' ', evolve, initial, 0, use_snapshots => false);
    PERFORM eventstore._register_projection(caller, caller_search_path, false, 'snapshot:' || name,
                                            'eventstore._snapshot_step(eventstore.event, text)',
                                            NULL, stream_prefix, 'async', true, 0);
END $$;
COMMENT ON FUNCTION eventstore._create_snapshot_policy(regrole, text, text, regprocedure, anyelement, text, integer, text[], text) IS
    'Implementation of eventstore.create_snapshot_policy (internal)';
REVOKE ALL ON FUNCTION eventstore._create_snapshot_policy(regrole, text, text, regprocedure, anyelement, text, integer, text[], text) FROM PUBLIC;

-- =====================================================================
-- Section 3: durable subscriptions on a distributed store: a checkpoint
-- per partition, the pulled events stored whole (as
-- sql/install/subscriptions.sql; NULL on a single server)
-- =====================================================================

ALTER TABLE eventstore.subscriptions
    ADD COLUMN pulled_partitions jsonb,
    ADD CONSTRAINT subscriptions_pulled_partitions_check CHECK (jsonb_typeof(pulled_partitions) = 'object');
ALTER TABLE eventstore.subscription_events
    ADD COLUMN stream_version   bigint,
    ADD COLUMN event_id         uuid,
    ADD COLUMN event_type       text COLLATE "C",
    ADD COLUMN data             jsonb,
    ADD COLUMN metadata         jsonb,
    ADD COLUMN event_created_at timestamptz;

-- =====================================================================
-- Section 4: the subscription functions that pull from read_partitions on
-- a distributed store, and the status view (as
-- sql/install/subscriptions.sql)
-- =====================================================================

CREATE OR REPLACE FUNCTION eventstore.create_subscription(
    name          text,
    event_types   text[]   DEFAULT NULL,
    stream_prefix text     DEFAULT NULL,
    start_from    bigint   DEFAULT 0,
    lease_timeout interval DEFAULT '30 seconds',
    max_attempts  integer  DEFAULT 5)
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
    -- every fetch computes now() + lease_timeout and now() - lease_timeout
    PERFORM eventstore._check_interval('lease_timeout', lease_timeout);
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

    IF eventstore.is_distributed() THEN
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
            pulled_partitions)
    VALUES (create_subscription.name, v_types, nullif(stream_prefix, ''),
            create_subscription.lease_timeout, create_subscription.max_attempts, v_start,
            v_vector)
    ON CONFLICT ON CONSTRAINT subscriptions_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'duplicate_object',
            MESSAGE = format('subscription "%s" already exists', name);
    END IF;
END
$$;
COMMENT ON FUNCTION eventstore.create_subscription(text, text[], text, bigint, interval, integer) IS
    'Create a durable subscription; start_from 0 = origin, -1 = now, N = after position N (on a distributed store: in every partition)';
REVOKE ALL ON FUNCTION eventstore.create_subscription(text, text[], text, bigint, interval, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore._subscription_fetch(
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
    v_dist     boolean;
    v_pull     record;
    v_full     boolean;
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

    -- One fetch of a subscription at a time; acks and nacks (FOR SHARE) wait
    -- too, so what follows sees a stable set of outstanding events.
    SELECT * INTO v_sub FROM eventstore.subscriptions s
     WHERE s.name = _subscription_fetch.subscription FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM eventstore.subscription_not_found(subscription);
    END IF;
    -- The clock, not now(): the lock may have been waited for, and the
    -- caller's transaction may be old.
    v_now := clock_timestamp();

    INSERT INTO eventstore.subscription_consumers AS c (subscription, consumer, last_seen_at)
    VALUES (v_sub.name, _subscription_fetch.consumer, v_now)
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
    v_dist := eventstore.is_distributed();
    -- (distribute() refuses a store with subscriptions: this is a guard,
    -- after N in every partition being what pulled_position promised)
    IF v_dist AND v_sub.pulled_partitions IS NULL THEN
        v_sub.pulled_partitions := jsonb_build_object('-2147483648', v_sub.pulled_position);
    END IF;
    LOOP
        EXIT WHEN cardinality(v_deliver) >= max_count;
        SELECT count(*) INTO v_pending FROM eventstore.subscription_events se
         WHERE se.subscription = v_sub.name AND se.state = 'pending';
        v_step := greatest(max_count - cardinality(v_deliver), v_step * 2);
        v_want := least(v_step, v_window - v_pending);
        EXIT WHEN v_want <= 0;

        IF v_dist THEN
            -- A distributed store: a page of every partition after its
            -- checkpoint, at most v_want each, stored whole.
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
            v_sub.pulled_partitions := v_pull.partitions;
            v_full := v_pull.more;
        ELSE
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
            v_full := v_got >= v_want;
        END IF;
        IF v_got > 0 THEN
            v_deliver := eventstore.subscription_deliverable(v_sub.name, v_now, max_count);
        END IF;
        EXIT WHEN NOT v_full;
    END LOOP;

    UPDATE eventstore.subscriptions s
       SET pulled_position = v_sub.pulled_position, pulled_partitions = v_sub.pulled_partitions,
           last_fetch_at = v_now
     WHERE s.name = v_sub.name;

    IF v_dist THEN
        -- the events as they were stored when pulled (no join of this
        -- local table with the distributed events)
        RETURN QUERY
        WITH leased AS (
            UPDATE eventstore.subscription_events se
               SET state = 'leased', consumer = _subscription_fetch.consumer,
                   consumer_role = _subscription_fetch.caller,
                   attempts = se.attempts + 1,
                   lease_expires_at = v_now + v_sub.lease_timeout, not_before = NULL
             WHERE se.subscription = v_sub.name AND se.global_position = ANY (v_deliver)
            RETURNING se.*)
        SELECT l.global_position, l.stream_id::text, l.stream_version, l.event_id,
               l.event_type::text, l.data, l.metadata, l.event_created_at, l.attempts
          FROM leased l
         ORDER BY l.global_position;
        RETURN;
    END IF;

    RETURN QUERY
    WITH leased AS (
        UPDATE eventstore.subscription_events se
           SET state = 'leased', consumer = _subscription_fetch.consumer,
               consumer_role = _subscription_fetch.caller,
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
COMMENT ON FUNCTION eventstore._subscription_fetch(regrole, text, text, text, integer) IS
    'Implementation of eventstore.subscription_fetch (internal)';
REVOKE ALL ON FUNCTION eventstore._subscription_fetch(regrole, text, text, text, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore.subscription_parked(subscription text)
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

-- What subscription_status shows of a subscription but its lag (0.8.0):
-- the same on a single server and on a distributed store.
CREATE VIEW eventstore._subscription_state AS
SELECT s.name,
       s.event_types,
       s.stream_prefix,
       CASE WHEN s.pulled_partitions IS NULL
            THEN coalesce(o.first_open - 1, s.pulled_position) END AS position,
       CASE WHEN s.pulled_partitions IS NULL THEN s.pulled_position END AS pulled_position,
       o.in_flight,
       o.pending_retry,
       o.parked,
       coalesce(c.consumers, '{}') AS consumers,
       s.last_fetch_at,
       s.lease_timeout,
       s.max_attempts,
       s.pulled_partitions
  FROM eventstore.subscriptions s
 CROSS JOIN LATERAL (
        SELECT min(se.global_position) FILTER (WHERE se.state <> 'parked') AS first_open,
               count(*) FILTER (WHERE se.state = 'leased') AS in_flight,
               count(*) FILTER (WHERE se.state = 'pending' AND se.attempts > 0) AS pending_retry,
               count(*) FILTER (WHERE se.state = 'parked') AS parked
          FROM eventstore.subscription_events se
         WHERE se.subscription = s.name) o
 CROSS JOIN LATERAL (
        SELECT array_agg(x.consumer ORDER BY x.consumer) AS consumers
          FROM (SELECT sc.consumer FROM eventstore.subscription_consumers sc
                 WHERE sc.subscription = s.name AND sc.last_seen_at > now() - s.lease_timeout
                UNION
                SELECT se.consumer FROM eventstore.subscription_events se
                 WHERE se.subscription = s.name AND se.state = 'leased'
                   AND se.lease_expires_at > now()) x) c;
COMMENT ON VIEW eventstore._subscription_state IS
    'Durable subscriptions as subscription_status shows them, without the lag (internal)';
REVOKE ALL ON TABLE eventstore._subscription_state FROM PUBLIC;

CREATE OR REPLACE VIEW eventstore.subscription_status AS
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
       st.pulled_partitions
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

-- =====================================================================
-- Section 5: async projections on a distributed store: a checkpoint per
-- partition (as sql/install/projections.sql; NULL on a single server)
-- =====================================================================

ALTER TABLE eventstore.projection_checkpoints
    ADD COLUMN partitions jsonb CHECK (jsonb_typeof(partitions) = 'object');

CREATE OR REPLACE FUNCTION eventstore._register_projection(
    owner         regrole,
    search_path   text,
    check_execute boolean,
    name          text,
    handler       regprocedure,
    event_types   text[],
    stream_prefix text,
    mode          text,
    replay        boolean,
    priority      integer)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
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
    IF check_execute AND NOT pg_catalog.has_function_privilege(owner::oid, handler::oid, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', handler
            USING ERRCODE = '42501',
                  DETAIL = format('Role %s, which would run the handler, may not execute it.', owner);
    END IF;

    LOCK TABLE eventstore.projections IN EXCLUSIVE MODE;
    IF EXISTS (SELECT FROM eventstore.projections p WHERE p.name = _register_projection.name) THEN
        RAISE EXCEPTION 'projection "%" already exists', name USING ERRCODE = '42710';
    END IF;
    drawn := eventstore._drawn_position();
    IF mode = 'async' OR (replay AND drawn > 0) THEN
        PERFORM eventstore._need_worker(format('projection "%s"', name));
    END IF;

    -- by name, under the pinned search_path: qualified (0.7.0)
    INSERT INTO eventstore.projections
        (name, handler, event_types, stream_prefix, mode, priority, catching_up, owner, search_path,
         handler_owner)
    VALUES (name, handler::text, event_types, stream_prefix, mode, priority,
            mode = 'inline' AND replay AND drawn > 0, owner, search_path,
            (SELECT f.proowner::regrole FROM pg_catalog.pg_proc f WHERE f.oid = handler::oid));
    -- on a distributed store "from now on" is each partition's horizon
    INSERT INTO eventstore.projection_checkpoints (name, position, partitions)
    VALUES (name, CASE WHEN replay THEN 0 ELSE drawn END,
            CASE WHEN NOT replay AND eventstore.is_distributed()
                 THEN eventstore._horizons_vector() END);
END $$;
COMMENT ON FUNCTION eventstore._register_projection(regrole, text, boolean, text, regprocedure, text[], text, text, boolean, integer) IS
    'Insert a projection with its owner and search_path (internal)';
REVOKE ALL ON FUNCTION eventstore._register_projection(regrole, text, boolean, text, regprocedure, text[], text, text, boolean, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore._enable_projection(caller regrole, caller_search_path text,
                                              name text, catch_up boolean)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
    drawn bigint;
    behind boolean;
BEGIN
    PERFORM eventstore._check_caller(caller);
    p := eventstore._get_projection(name, true);
    drawn := eventstore._drawn_position();
    PERFORM eventstore._check_owner(caller, p.owner, format('projection "%s"', p.name));
    IF catch_up IS NULL THEN
        RAISE EXCEPTION 'catch_up must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF p.enabled THEN
        RETURN;
    END IF;
    IF NOT catch_up THEN
        -- skip what was appended meanwhile: the caller asked for it (on a
        -- distributed store: up to each partition's horizon, never back)
        UPDATE eventstore.projection_checkpoints c
           SET position = greatest(c.position, drawn), updated_at = now(),
               error_count = 0, error_position = NULL, retry_at = NULL,
               partitions = CASE WHEN eventstore.is_distributed() THEN
                   coalesce(c.partitions, jsonb_build_object('-2147483648', c.position))
                   || (SELECT coalesce(jsonb_object_agg(h.key,
                                  greatest(h.value::bigint,
                                           eventstore._vector_after(
                                               coalesce(c.partitions,
                                                        jsonb_build_object('-2147483648', c.position)),
                                               h.key::integer))), '{}')
                         FROM jsonb_each_text(eventstore._horizons_vector()) h) END
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
COMMENT ON FUNCTION eventstore._enable_projection(regrole, text, text, boolean) IS
    'Implementation of eventstore.enable_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._enable_projection(regrole, text, text, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore._rebuild_projection(caller regrole, caller_search_path text, name text)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
BEGIN
    PERFORM eventstore._check_caller(caller);
    p := eventstore._get_projection(name, true);
    PERFORM eventstore._check_owner(caller, p.owner, format('projection "%s"', p.name));
    PERFORM eventstore._need_worker(format('rebuilding projection "%s"', p.name));
    UPDATE eventstore.projection_checkpoints c
       SET position = 0, updated_at = now(), events_total = 0,
           error_count = 0, error_position = NULL, last_error = NULL,
           last_error_at = NULL, retry_at = NULL, partitions = NULL
     WHERE c.name = p.name;
    UPDATE eventstore.projections q
       SET catching_up = (q.mode = 'inline' AND eventstore._drawn_position() > 0)
     WHERE q.name = p.name;
END $$;
COMMENT ON FUNCTION eventstore._rebuild_projection(regrole, text, text) IS
    'Implementation of eventstore.rebuild_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._rebuild_projection(regrole, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore._wait_for_projection(caller regrole, caller_search_path text,
                                                name text, timeout interval)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    p eventstore.projections;
    target bigint;
    targets jsonb;
    deadline timestamptz;
    st record;
BEGIN
    PERFORM eventstore._check_caller(caller);
    p := eventstore._get_projection(name, false);
    IF timeout IS NULL THEN
        RAISE EXCEPTION 'timeout must not be NULL' USING ERRCODE = '22004';
    END IF;
    PERFORM eventstore._check_interval('timeout', timeout);
    deadline := clock_timestamp() + timeout;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'wait_for_projection() needs READ COMMITTED'
            USING ERRCODE = '25001',
                  HINT = 'Under REPEATABLE READ the transaction would never see the projection advance.';
    END IF;
    -- on a distributed store the target is each partition's horizon
    IF eventstore.is_distributed() THEN
        targets := eventstore._horizons_vector();
    ELSE
        target := eventstore.global_horizon();
    END IF;
    LOOP
        SELECT q.enabled, q.mode, q.catching_up, c.position,
               CASE WHEN targets IS NULL THEN c.position >= target
                    ELSE NOT EXISTS (
                        SELECT FROM jsonb_each_text(targets) t
                         WHERE eventstore._vector_after(
                                   coalesce(c.partitions, jsonb_build_object('-2147483648', c.position)),
                                   t.key::integer) < t.value::bigint) END AS reached
          INTO st
          FROM eventstore.projections q
          JOIN eventstore.projection_checkpoints c USING (name)
         WHERE q.name = p.name;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'projection "%" does not exist', p.name USING ERRCODE = '42704';
        END IF;
        -- an inline projection is done when it is live again
        IF st.enabled AND ((st.mode = 'inline' AND NOT st.catching_up)
                           OR (st.mode = 'async' AND st.reached)) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
COMMENT ON FUNCTION eventstore._wait_for_projection(regrole, text, text, interval) IS
    'Implementation of eventstore.wait_for_projection (internal)';
REVOKE ALL ON FUNCTION eventstore._wait_for_projection(regrole, text, text, interval) FROM PUBLIC;

CREATE OR REPLACE VIEW eventstore.projection_status AS
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
       p.owner, p.created_at, c.partitions
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
