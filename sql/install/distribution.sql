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

-- How far a follower's checkpoint may move in each partition (0.9.0):
-- partition_horizons(), but on a distributed store no further than the
-- highest position the partition holds.  A node's horizon also counts the
-- other partitions' appends there; when a partition moves to another
-- node, that node draws its events above the partition's highest position
-- (src/shard.c), which may be below the old node's horizon -- and so
-- below a checkpoint moved up to that horizon: the follower skipped them.
CREATE FUNCTION eventstore._partitions_complete()
RETURNS TABLE (partition integer, horizon bigint)
    AS 'MODULE_PATHNAME', 'eventstore_partitions_complete'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 32;
COMMENT ON FUNCTION eventstore._partitions_complete() IS
    'For each partition of the global log, how far a follower''s checkpoint may move now (internal)';
REVOKE ALL ON FUNCTION eventstore._partitions_complete() FROM PUBLIC;

-- What one node reads for _partitions_complete on another; it checks that
-- the caller may execute _partitions_complete.
CREATE FUNCTION eventstore._partitions_complete_here(partitions integer[])
RETURNS TABLE (partition integer, horizon bigint)
    AS 'MODULE_PATHNAME', 'eventstore_partitions_complete_here'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 32;
COMMENT ON FUNCTION eventstore._partitions_complete_here(integer[]) IS
    'The partitions of _partitions_complete placed on this node (internal; needs EXECUTE on _partitions_complete)';
GRANT EXECUTE ON FUNCTION eventstore._partitions_complete_here(integer[]) TO PUBLIC;

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

-- _partitions_complete() as a vector checkpoint: every partition up to
-- where a follower may take it as complete now ({} when there is none;
-- partition_horizons() before 0.9.0).
CREATE FUNCTION eventstore._horizons_vector() RETURNS jsonb
    LANGUAGE sql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    AS $$
SELECT coalesce(pg_catalog.jsonb_object_agg(h.partition::text, h.horizon), '{}')
  FROM eventstore._partitions_complete() h
$$;
COMMENT ON FUNCTION eventstore._horizons_vector() IS
    '_partitions_complete() as a vector checkpoint (internal)';
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
-- is read before the horizons and after the page (a partition moved meanwhile, or skipped by
-- read_partitions for moving, goes only to its last event).  Where a
-- partition continues comes from read_partitions' rule (the entry of the
-- greatest partition not above it), so entries are only added.  more: some
-- partition's page was full (pull again at once).
CREATE FUNCTION eventstore._pull_partitions(
    after jsonb, want bigint, event_types text[], stream_prefix text,
    horizons jsonb DEFAULT NULL,
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
    -- Placements first (0.9.0): a partition that moves after this is seen
    -- moved by the second read below; one that had moved before is asked
    -- where it is now.  (Horizons read first, a move that ended between
    -- them and the placements went unseen.)  "horizons": the caller's
    -- (the merged reader's, read before), else how far each partition is
    -- complete for a follower.
    v_placed := eventstore._partition_placements();
    v_horizons := coalesce(horizons, eventstore._horizons_vector());
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
COMMENT ON FUNCTION eventstore._pull_partitions(jsonb, bigint, text[], text, jsonb) IS
    'A page of every partition after a vector checkpoint, and the checkpoint that follows it (internal)';
REVOKE ALL ON FUNCTION eventstore._pull_partitions(jsonb, bigint, text[], text, jsonb) FROM PUBLIC;

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
    -- (the nodes' horizons, not how far a follower may move: a partition
    -- that receives nothing would hold the order back at its last event)
    SELECT * INTO v_pull
      FROM eventstore._pull_partitions(pg_catalog.jsonb_build_object('-2147483648', after),
                                       v_want, event_types, stream_prefix,
                                       (SELECT coalesce(pg_catalog.jsonb_object_agg(h.partition::text,
                                                                                    h.horizon), '{}')
                                          FROM eventstore.partition_horizons() h));
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
           st.last_fetch_at, st.lease_timeout, st.max_attempts, st.pulled_partitions,
           st.lanes
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
