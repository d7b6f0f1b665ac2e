-- eventstore 0.4.0 -> 0.5.0: one house.  The SQL of the extension is now
-- written by concern (sql/install/) and the install script of 0.5.0 is
-- built from it; this script brings a database at 0.4.0 to the same
-- objects.  test/t/014_upgrade_chain.pl checks that both paths agree.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.5.0'" to load this file. \quit

-- =====================================================================
-- Section 1: labels and comments
-- =====================================================================

-- (end of section 1)
--
--
--
--
--

-- =====================================================================
-- Section 2: retention and archive steps in C
-- =====================================================================

-- (end of section 2)
