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

CREATE FUNCTION eventstore.snapshot_tag(
    evolve       regprocedure,
    initial      anyelement,
    snapshot_tag text DEFAULT NULL)
RETURNS text
    AS 'MODULE_PATHNAME', 'eventstore_snapshot_tag'
    LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION eventstore.snapshot_tag(regprocedure, anyelement, text) IS
    'The tag (eventstore.snapshots.tag) under which the snapshots of the fold evolve from initial, with an optional explicit tag, are stored';
REVOKE ALL ON FUNCTION eventstore.snapshot_tag(regprocedure, anyelement, text) FROM PUBLIC;

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

-- (end of section 5)
