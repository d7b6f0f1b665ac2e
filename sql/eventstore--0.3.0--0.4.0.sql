-- eventstore 0.3.0 -> 0.4.0: security and integrity.  No role can act with
-- another's rights through the extension: every query the extension runs
-- is immune to the caller's search_path and operators, whose rights a
-- handler runs with comes from what the extension recorded, and every user
-- function called on someone's behalf is checked for EXECUTE.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.4.0'" to load this file. \quit

-- =====================================================================
-- Section 1: what the C code reads (recorded search paths, snapshots)
-- =====================================================================

-- The search_path a projection's handler runs under: the one its creator
-- had when creating it.  Projections created before 0.4.0 keep the
-- server's default path.
ALTER TABLE eventstore.projections
    ADD COLUMN search_path text NOT NULL DEFAULT '"$user", public';

-- Snapshot tags now bind the fold that computed the state (evolve, state
-- type, initial state) even when an explicit tag is given: snapshots taken
-- under the old scheme could have been forged.  Snapshots are a cache.
DELETE FROM eventstore.snapshots;

-- (end of section 1)
--
--
--
--
--

-- =====================================================================
-- Section 2: managing projections and snapshot policies
-- =====================================================================

-- (end of section 2)
--
--
--
--
--

-- =====================================================================
-- Section 3: durable subscriptions
-- =====================================================================

-- (end of section 3)
--
--
--
--
--

-- =====================================================================
-- Section 4: stream lifecycle and argument ranges
-- =====================================================================

-- (end of section 4)
--
--
--
--
--

-- =====================================================================
-- Section 5: parallel safety and the worker
-- =====================================================================

-- Parallel safety (tested by security_parallel).  Nothing is RESTRICTED: a
-- restricted function runs in the leader while the query is in parallel
-- mode, where PostgreSQL forbids what these functions do.  read_all and
-- global_horizon compute the horizon and then take the latest snapshot
-- (GetLatestSnapshot: "cannot update SecondarySnapshot during a parallel
-- operation", XX000, under any parallel plan).  aggregate_stream and
-- load_state call the user's evolve, which may write or be parallel unsafe
-- itself.  The SAFE readers (read_stream, stream_version, stream_info,
-- get_stream_metadata, subscription_parked) keep their label: they read
-- only what the statement's snapshot shows and work in a worker.
ALTER FUNCTION eventstore.read_all(bigint, bigint, text[], text) PARALLEL UNSAFE;
ALTER FUNCTION eventstore.global_horizon() PARALLEL UNSAFE;
ALTER FUNCTION eventstore.aggregate_stream(text, regprocedure, anyelement, bigint, timestamptz, boolean, text)
    PARALLEL UNSAFE;
ALTER FUNCTION eventstore.load_state(text, regprocedure, anyelement, bigint, timestamptz, boolean, text)
    PARALLEL UNSAFE;

-- (end of section 5)
