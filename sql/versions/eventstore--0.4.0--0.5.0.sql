-- eventstore 0.4.0 -> 0.5.0: one house.  The SQL of the extension is now
-- written by concern (sql/install/) and the install script of 0.5.0 is
-- built from it; this script brings a database at 0.4.0 to the same
-- objects.  test/t/014_upgrade_chain.pl checks that both paths agree.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.5.0'" to load this file. \quit

-- =====================================================================
-- Section 1: labels and comments
-- =====================================================================

-- Every function has a COMMENT (the internal ones had none).  The
-- volatility, strictness and parallel labels of 0.4.0 stay as they are:
-- sql/install/ now writes each of them out, with the labels 0.4.0 has.
COMMENT ON FUNCTION eventstore._archive_step(integer) IS
    'Archive at most max_streams streams for the archive policies; run by the background worker (internal)';
COMMENT ON FUNCTION eventstore._archive_stream(text, boolean, interval) IS
    'Move one stream''s events to eventstore.archived_events; without wait a busy stream, with inactive_for an active, tombstoned or deleted one, is left alone (internal)';
COMMENT ON FUNCTION eventstore._check_projection_args(regprocedure, text[], text) IS
    'Raise 22004, 42P13 or 22023 unless a handler and an event filter are fit for a projection (internal)';
COMMENT ON FUNCTION eventstore._delete_stream(text, bigint, boolean) IS
    'Soft delete (hard = false) or tombstone (hard = true) a stream: the implementation of delete_stream and tombstone_stream (internal)';
COMMENT ON FUNCTION eventstore._drawn_position() IS
    'The highest global position drawn so far, 0 when none (internal)';
COMMENT ON FUNCTION eventstore._fold_final(internal, eventstore.event, regprocedure, anyelement) IS
    'Final function of the aggregate eventstore.fold (internal)';
COMMENT ON FUNCTION eventstore._fold_step(internal, eventstore.event, regprocedure, anyelement) IS
    'State transition function of the aggregate eventstore.fold (internal)';
COMMENT ON FUNCTION eventstore._forget_snapshots(text) IS
    'Delete the snapshots of a stream whose events go (internal)';
COMMENT ON FUNCTION eventstore._get_projection(text, boolean) IS
    'A projection''s row, with lock under the EXCLUSIVE lock the management functions take; 42704 when there is none (internal)';
COMMENT ON FUNCTION eventstore._inactive_streams(interval, text, integer) IS
    'Streams with a stored event but none for inactive_for, oldest first (internal)';
COMMENT ON FUNCTION eventstore._lock_stream(text, boolean) IS
    'Take the transaction-scoped lock appends take on a stream; without wait, false instead of waiting (internal)';
COMMENT ON FUNCTION eventstore._move_stream(text, boolean) IS
    'Move every event of a stream between eventstore.events and eventstore.archived_events, unchanged; returns the number moved (internal)';
COMMENT ON FUNCTION eventstore._need_worker(text) IS
    'Raise 55000 when the background worker cannot run; else make sure it runs and wake it at commit (internal)';
COMMENT ON FUNCTION eventstore._remove_events(text, boolean, bigint, timestamptz, integer) IS
    'Remove at most max_rows events of a stream, oldest first, up to a version or created before a time; returns the number removed and the highest version removed (internal)';
COMMENT ON FUNCTION eventstore._retention_bounds(eventstore.streams) IS
    'The version through which, and the time before which, a stream''s settings exclude its events (internal)';
COMMENT ON FUNCTION eventstore._retention_step(integer, bigint) IS
    'Remove at most batch_size events that the streams'' settings exclude; run by the background worker (internal)';
COMMENT ON FUNCTION eventstore._stored_head(text, boolean) IS
    'The highest version stored for a stream in the hot table or the archive, as of now (internal)';
COMMENT ON FUNCTION eventstore._stream_for_change(text, boolean) IS
    'Lock a stream and read its row and versions for a lifecycle change; ST002 for a tombstoned stream unless allowed (internal)';

-- (end of section 1)
--
--
--
--
--

-- =====================================================================
-- Section 2: retention and archive steps in C
-- =====================================================================

-- The background worker's retention and archive steps are C (lifecycle.c):
-- the worker calls them directly, and they remove and move events without
-- a round trip through SQL.  The SQL functions below are their entry
-- points, with the signatures (and the COMMENTs, ACLs) of the PL/pgSQL
-- versions they replace.  The bounds of what a stream's settings exclude
-- are computed in C only.
DROP FUNCTION eventstore._retention_bounds(eventstore.streams);

CREATE OR REPLACE FUNCTION eventstore._retention_step(batch_size integer, after_position bigint DEFAULT 0,
                                                      OUT removed bigint, OUT complete boolean)
    AS 'MODULE_PATHNAME', 'eventstore_retention_step'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

CREATE OR REPLACE FUNCTION eventstore._archive_step(max_streams integer)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_archive_step'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- Archiving one stream, for archive_stream, archive_streams and the
-- worker's archive step.
CREATE OR REPLACE FUNCTION eventstore._archive_stream(p_stream_id text, wait boolean,
                                                      inactive_for interval DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_archive_stream'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

-- (end of section 2)

-- =====================================================================
-- Section 3: a stream's versions and ST002 in C only
-- =====================================================================

-- Lifecycle changes computed a stream's head and visible version, and
-- raised ST002, in PL/pgSQL: a second copy of the rules of appends and
-- reads (lifecycle.c).  They now ask C.
-- A stream's head and the version it reads as (0 while deleted), by the
-- rules appends and reads use; ST002 for a tombstoned stream unless
-- allow_tombstoned.  For a caller holding the stream's lock and row.
CREATE FUNCTION eventstore._stream_versions(stream_id text, allow_tombstoned boolean,
                                            OUT head bigint, OUT visible bigint)
    AS 'MODULE_PATHNAME', 'eventstore_stream_versions'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._stream_versions(text, boolean) IS
    'A stream''s head and the version it reads as, as of now; ST002 for a tombstoned stream unless allowed (internal)';
REVOKE ALL ON FUNCTION eventstore._stream_versions(text, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION eventstore._stream_for_change(
    p_stream_id text, allow_tombstoned boolean,
    OUT st eventstore.streams, OUT head bigint, OUT visible bigint)
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore._check_stream_id(p_stream_id);
    PERFORM eventstore._lock_stream(p_stream_id, true);
    SELECT * INTO st FROM eventstore.streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
    SELECT v.head, v.visible INTO head, visible
      FROM eventstore._stream_versions(p_stream_id, allow_tombstoned) v;
END $$;

-- Archiving by inactivity passes over tombstoned and deleted streams in
-- C (_archive_stream with inactive_for), for archive_streams as for the
-- worker's archive step.
CREATE OR REPLACE FUNCTION eventstore.archive_streams(
    inactive_for  interval,
    stream_prefix text    DEFAULT NULL,
    max_streams   integer DEFAULT 1000)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text;
    n bigint := 0;
    moved bigint;
BEGIN
    IF inactive_for IS NULL OR inactive_for <= interval '0' THEN
        RAISE EXCEPTION 'inactive_for must be a positive interval' USING ERRCODE = '22023';
    END IF;
    PERFORM eventstore._check_interval('inactive_for', inactive_for);
    -- each stream archived holds its lock to the end of the transaction
    IF max_streams IS NULL OR max_streams < 1 OR max_streams > 10000 THEN
        RAISE EXCEPTION 'max_streams must be between 1 and 10000' USING ERRCODE = '22023',
            HINT = 'Archive more streams by calling archive_streams again, in a new transaction, until it returns 0.';
    END IF;
    -- _archive_stream passes over tombstoned and deleted streams
    FOR s IN SELECT * FROM eventstore._inactive_streams(inactive_for, stream_prefix, max_streams) LOOP
        moved := eventstore._archive_stream(s, false, inactive_for);
        IF moved > 0 THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;

-- (end of section 3)
