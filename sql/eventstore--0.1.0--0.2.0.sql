-- eventstore 0.1.0 -> 0.2.0: read models.  Projections run inside the append
-- transaction or by the background worker; durable subscriptions are
-- consumed by clients.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------
-- Projections
-- ---------------------------------------------------------------------

-- ---------------------------------------------------------------------
-- Durable subscriptions
-- ---------------------------------------------------------------------
