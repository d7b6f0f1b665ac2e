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

-- Nothing to change in SQL: eventstore.read_stream keeps its C entry point,
-- which returns a row per call since 0.9.0, and in FROM the library's
-- planner hook plans it as a custom scan (src/read.c).

-- =====================================================================
-- Section 3: folds (aggregate_stream, load_state) plan evolve once
-- =====================================================================

-- =====================================================================
-- Section 4: durable subscriptions
-- =====================================================================
