-- Contender "plain": the same rows as eventstore.events, written by a plain
-- INSERT.  No lock, no version lookup, no validation: the client supplies
-- stream_version itself.  This is the physical limit an append can reach.
--
-- The table is created LIKE eventstore.events, so the column order, types,
-- collations, NOT NULL constraints, primary key and unique index are those of
-- the extension's table by construction.  Only the defaults are added: the
-- position from a sequence with CACHE 1 (as eventstore.global_position_seq),
-- a random event id and the transaction time.
CREATE SCHEMA bench_plain;

CREATE TABLE bench_plain.events (LIKE eventstore.events INCLUDING ALL);

CREATE SEQUENCE bench_plain.global_position_seq AS bigint MINVALUE 1 NO CYCLE CACHE 1
    OWNED BY bench_plain.events.global_position;

ALTER TABLE bench_plain.events
    ALTER COLUMN global_position SET DEFAULT nextval('bench_plain.global_position_seq'),
    ALTER COLUMN event_id        SET DEFAULT gen_random_uuid(),
    ALTER COLUMN created_at      SET DEFAULT now();
