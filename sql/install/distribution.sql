-- ---------------------------------------------------------------------
-- A store distributed by stream with Citus (0.8.0)
-- ---------------------------------------------------------------------
-- eventstore.distribute() splits the tables keyed by stream into
-- co-located shards by stream_id and makes the functions of one stream
-- Citus "distributed functions": called on the coordinator, each runs on
-- the node that holds the stream, where the C code finds the stream's local
-- shards (src/shard.c).  What works across streams (read_all, projections,
-- subscriptions, snapshot and archive policies) stays single-server in
-- this version: on a distributed store it is refused with 0A000, never run
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

CREATE TRIGGER projections_single_server
    BEFORE INSERT ON eventstore.projections
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore._single_server_only('a projection');
CREATE TRIGGER subscriptions_single_server
    BEFORE INSERT ON eventstore.subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore._single_server_only('a durable subscription');
CREATE TRIGGER snapshot_policies_single_server
    BEFORE INSERT ON eventstore.snapshot_policies
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore._single_server_only('a snapshot policy');
CREATE TRIGGER archive_policies_single_server
    BEFORE INSERT ON eventstore.archive_policies
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore._single_server_only('an archive policy');

CREATE FUNCTION eventstore.distribute(shard_count integer DEFAULT 32)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure;
BEGIN
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
    IF EXISTS (SELECT FROM eventstore.projections)
       OR EXISTS (SELECT FROM eventstore.subscriptions)
       OR EXISTS (SELECT FROM eventstore.snapshot_policies)
       OR EXISTS (SELECT FROM eventstore.archive_policies) THEN
        RAISE EXCEPTION 'cannot distribute a store that has projections, subscriptions or policies'
            USING ERRCODE = '0A000',
                  DETAIL = 'This version runs them on one server only.',
                  HINT = 'Drop them first.';
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
END
$$;
COMMENT ON FUNCTION eventstore.distribute(integer) IS 'Distribute the store with Citus by stream_id into shard_count co-located shards; run once on the coordinator';
REVOKE ALL ON FUNCTION eventstore.distribute(integer) FROM PUBLIC;
