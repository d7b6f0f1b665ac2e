-- eventstore 0.8.0 -> 0.9.0: operating a store (issue 18).
-- test/t/014_upgrade_chain.pl checks that this script and a fresh install
-- of 0.9.0 agree.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.9.0'" to load this file. \quit
