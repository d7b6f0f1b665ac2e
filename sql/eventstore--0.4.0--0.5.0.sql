-- 2. Retention and archive steps in C (issue 13)

-- The background worker's retention and archive steps are C (lifecycle.c):
-- the worker calls them directly, and they remove and move events without
-- a round trip through SQL.  The SQL functions below are their entry
-- points, kept for tests and for running a step by hand; their signatures
-- are those of the PL/pgSQL versions they replace.  The bounds of what a
-- stream's settings exclude are computed in C only.
DROP FUNCTION eventstore._retention_bounds(eventstore.streams);

CREATE OR REPLACE FUNCTION eventstore._retention_step(batch_size integer, after_position bigint DEFAULT 0,
                                                      OUT removed bigint, OUT complete boolean)
    AS 'MODULE_PATHNAME', 'eventstore_retention_step'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._retention_step(integer, bigint) IS
    'Remove at most batch_size events that the streams'' settings exclude, oldest first; complete is false when streams were left for the next step (internal: the worker''s retention step)';
REVOKE ALL ON FUNCTION eventstore._retention_step(integer, bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore._archive_step(max_streams integer)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_archive_step'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._archive_step(integer) IS
    'Archive at most max_streams streams for the archive policies; returns the number archived (internal: the worker''s archive step)';
REVOKE ALL ON FUNCTION eventstore._archive_step(integer) FROM PUBLIC;

-- Archive one stream (archive_stream, archive_streams and the worker's
-- archive step).  Without wait, a stream whose lock is busy is left alone
-- (NULL); with inactive_for, so is one that had an event since.
CREATE OR REPLACE FUNCTION eventstore._archive_stream(p_stream_id text, wait boolean,
                                                      inactive_for interval DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_archive_stream'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._archive_stream(text, boolean, interval) IS
    'Move a stream''s events into the archive and mark it archived; NULL when left alone (internal)';
REVOKE ALL ON FUNCTION eventstore._archive_stream(text, boolean, interval) FROM PUBLIC;
