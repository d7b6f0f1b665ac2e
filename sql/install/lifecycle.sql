-- eventstore stream lifecycle: per-stream retention settings, soft delete
-- and tombstones, archiving out of the hot table, and the background
-- worker's share (retention and archive policies in bounded batches).

-- ---------------------------------------------------------------------
-- Stream states
-- ---------------------------------------------------------------------

-- One row per stream that has settings or a lifecycle state; a stream
-- without a row is an ordinary one.  Appends and reads consult this table
-- (by its primary key) in C; write it only through the functions below,
-- which take the stream's append lock first.  The column order is known to
-- src/lifecycle.c.
CREATE TABLE eventstore.streams (
    stream_id       text COLLATE "C" NOT NULL PRIMARY KEY,
    max_age         interval,       -- events older than this read as gone
    max_count       bigint CHECK (max_count > 0),   -- only the newest N read
    truncate_before bigint CHECK (truncate_before > 0), -- versions below read as gone
    deleted_version bigint,         -- soft delete: the version at deletion
    deleted_at      timestamptz,
    tombstoned_at   timestamptz,    -- hard delete: no append ever again
    archived_at     timestamptz,    -- events live in eventstore.archived_events
    removed_through bigint NOT NULL DEFAULT 0,  -- highest version removed from storage
    settings_version bigint NOT NULL DEFAULT 1, -- counts changes of the settings and state
    retention_checked boolean NOT NULL DEFAULT false,   -- removal done for these settings
    CHECK (max_age > interval '0')
);
COMMENT ON TABLE eventstore.streams IS 'Per-stream settings (max age, max count, truncate before) and lifecycle state (deleted, tombstoned, archived)';

-- Reads across streams cache the rows of this table in every backend
-- (lifecycle.c); a change of what decides what reads see tells them to
-- forget the cache (the worker's bookkeeping, removed_through and
-- retention_checked, does not).
CREATE FUNCTION eventstore.streams_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'eventstore_projections_changed'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.streams_changed() IS 'Trigger telling every backend to forget its cached stream settings';
REVOKE ALL ON FUNCTION eventstore.streams_changed() FROM PUBLIC;
CREATE TRIGGER streams_changed
    AFTER INSERT
       OR UPDATE OF max_age, max_count, truncate_before, deleted_version, tombstoned_at, archived_at
       OR DELETE OR TRUNCATE ON eventstore.streams
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.streams_changed();
ALTER TABLE eventstore.streams ENABLE ALWAYS TRIGGER streams_changed;
SELECT pg_catalog.pg_extension_config_dump('eventstore.streams', '');
REVOKE ALL ON TABLE eventstore.streams FROM PUBLIC;

-- Archived events: the rows of archived streams, moved out of the hot
-- table unchanged (same positions, ids, timestamps, bytes).  Put it on a
-- cheaper tablespace with ALTER TABLE ... SET TABLESPACE.
CREATE TABLE eventstore.archived_events (
    global_position bigint      NOT NULL,
    stream_version  bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    event_id        uuid        NOT NULL,
    stream_id       text COLLATE "C" NOT NULL,
    event_type      text COLLATE "C" NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb,
    CONSTRAINT archived_events_stream_version_key UNIQUE (stream_id, stream_version)
);
COMMENT ON TABLE eventstore.archived_events IS 'Events of archived streams, moved out of eventstore.events; read through eventstore.read_stream';
SELECT pg_catalog.pg_extension_config_dump('eventstore.archived_events', '');
REVOKE ALL ON TABLE eventstore.archived_events FROM PUBLIC;

-- Rows move between the two tables only through the functions below (in C,
-- below the executor); SQL may not change them.
CREATE TRIGGER archived_events_append_only
    BEFORE UPDATE OR DELETE ON eventstore.archived_events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.forbid_change();
CREATE TRIGGER archived_events_no_truncate
    BEFORE TRUNCATE ON eventstore.archived_events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstore.forbid_change();
ALTER TABLE eventstore.archived_events ENABLE ALWAYS TRIGGER archived_events_append_only;
ALTER TABLE eventstore.archived_events ENABLE ALWAYS TRIGGER archived_events_no_truncate;

-- Archive policies: the background worker archives the streams that match
-- (stream id prefix, no event for inactive_for).
CREATE TABLE eventstore.archive_policies (
    name          text COLLATE "C" PRIMARY KEY CHECK (name <> ''),
    inactive_for  interval NOT NULL CHECK (inactive_for > interval '0'),
    stream_prefix text COLLATE "C",
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_run_at   timestamptz,
    last_archived bigint NOT NULL DEFAULT 0    -- streams archived by the current or last run
);
COMMENT ON TABLE eventstore.archive_policies IS 'Which streams the background worker archives';
SELECT pg_catalog.pg_extension_config_dump('eventstore.archive_policies', '');
REVOKE ALL ON TABLE eventstore.archive_policies FROM PUBLIC;

-- The streams a policy's run found inactive and has yet to archive: one
-- scan of the hot table per run, then batches of their own.
CREATE TABLE eventstore.archive_candidates (
    policy    text COLLATE "C" NOT NULL
              REFERENCES eventstore.archive_policies (name) ON DELETE CASCADE,
    stream_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (policy, stream_id)
);
COMMENT ON TABLE eventstore.archive_candidates IS 'Streams an archive policy run still has to archive';
REVOKE ALL ON TABLE eventstore.archive_candidates FROM PUBLIC;

CREATE TYPE eventstore.stream_info AS (
    stream_id       text,
    state           text,           -- absent, active, deleted, tombstoned, archived
    stream_version  bigint,         -- what eventstore.stream_version() returns
    last_version    bigint,         -- highest version ever written (numbering goes on from it)
    max_age         interval,
    max_count       bigint,
    truncate_before bigint,
    deleted_at      timestamptz,
    tombstoned_at   timestamptz,
    archived_at     timestamptz
);
COMMENT ON TYPE eventstore.stream_info IS 'Settings and lifecycle state of a stream';

-- ---------------------------------------------------------------------
-- Primitives in C (not for direct use)
-- ---------------------------------------------------------------------

-- The transaction-scoped lock appends take; with wait = false, returns
-- false instead of waiting.
CREATE FUNCTION eventstore._lock_stream(stream_id text, wait boolean)
RETURNS boolean
    AS 'MODULE_PATHNAME', 'eventstore_lock_stream'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._lock_stream(text, boolean) IS
    'Take the transaction-scoped lock appends take on a stream; without wait, false instead of waiting (internal)';
REVOKE ALL ON FUNCTION eventstore._lock_stream(text, boolean) FROM PUBLIC;

-- The highest version stored for the stream in the hot table (or, with
-- archived, in the archive), as of now: sees every committed append.
CREATE FUNCTION eventstore._stored_head(stream_id text, archived boolean)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_stored_head'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._stored_head(text, boolean) IS
    'The highest version stored for a stream in the hot table or the archive, as of now (internal)';
REVOKE ALL ON FUNCTION eventstore._stored_head(text, boolean) FROM PUBLIC;

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

-- Move every event of a stream between the hot table and the archive,
-- unchanged.  Returns the number of events moved.
CREATE FUNCTION eventstore._move_stream(stream_id text, to_archive boolean)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_move_stream'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._move_stream(text, boolean) IS
    'Move every event of a stream between eventstore.events and eventstore.archived_events, unchanged; returns the number moved (internal)';
REVOKE ALL ON FUNCTION eventstore._move_stream(text, boolean) FROM PUBLIC;

-- Remove at most max_rows events of a stream from storage (the hot table,
-- or with archived the archive), oldest first: those with a version up to
-- through_version, and those created before created_before.  Returns the
-- number removed and the highest version removed (0: none).
CREATE FUNCTION eventstore._remove_events(
    stream_id       text,
    archived        boolean,
    through_version bigint,
    created_before  timestamptz,
    max_rows        integer,
    OUT removed     bigint,
    OUT last_version bigint)
    AS 'MODULE_PATHNAME', 'eventstore_remove_events'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._remove_events(text, boolean, bigint, timestamptz, integer) IS
    'Remove at most max_rows events of a stream, oldest first, up to a version or created before a time; returns the number removed and the highest version removed (internal)';
REVOKE ALL ON FUNCTION eventstore._remove_events(text, boolean, bigint, timestamptz, integer) FROM PUBLIC;

-- Lock the stream, read its row (locked) and its versions as of now.
-- Raises ST002 for a tombstoned stream unless allow_tombstoned.
CREATE FUNCTION eventstore._stream_for_change(
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
COMMENT ON FUNCTION eventstore._stream_for_change(text, boolean) IS
    'Lock a stream and read its row and versions for a lifecycle change; ST002 for a tombstoned stream unless allowed (internal)';
REVOKE ALL ON FUNCTION eventstore._stream_for_change(text, boolean) FROM PUBLIC;

-- Snapshots are derived from the events: they leave with them.
CREATE FUNCTION eventstore._forget_snapshots(p_stream_id text) RETURNS void
    LANGUAGE sql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$ DELETE FROM eventstore.snapshots WHERE stream_id = p_stream_id $$;
COMMENT ON FUNCTION eventstore._forget_snapshots(text) IS
    'Delete the snapshots of a stream whose events go (internal)';
REVOKE ALL ON FUNCTION eventstore._forget_snapshots(text) FROM PUBLIC;

-- An interval as ISO 8601 text ('P1DT2H'), whatever the session's
-- IntervalStyle: how $metadata markers spell max_age (0.7.0).
CREATE FUNCTION eventstore._iso_interval(i interval) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    SET IntervalStyle = 'iso_8601'
AS $$ SELECT i::pg_catalog.text $$;
COMMENT ON FUNCTION eventstore._iso_interval(interval) IS
    'An interval as ISO 8601 text whatever the session''s IntervalStyle (internal)';
REVOKE ALL ON FUNCTION eventstore._iso_interval(interval) FROM PUBLIC;

CREATE FUNCTION eventstore.set_stream_metadata(
    stream_id       text,
    max_age         interval DEFAULT NULL,
    max_count       bigint   DEFAULT NULL,
    truncate_before bigint   DEFAULT NULL)
RETURNS eventstore.stream_info
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    IF max_age IS NOT NULL AND max_age <= interval '0' THEN
        RAISE EXCEPTION 'max_age must be positive' USING ERRCODE = '22023';
    END IF;
    IF max_count IS NOT NULL AND max_count < 1 THEN
        RAISE EXCEPTION 'max_count must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF truncate_before IS NOT NULL AND truncate_before < 1 THEN
        RAISE EXCEPTION 'truncate_before must be a positive version' USING ERRCODE = '22023';
    END IF;
    -- retention and reads compute now() - max_age and versions + max_count
    PERFORM eventstore._check_interval('max_age', max_age);
    PERFORM eventstore._check_count('max_count', max_count, 1000000000000000);
    PERFORM eventstore._check_count('truncate_before', truncate_before, 1000000000000000);
    c := eventstore._stream_for_change(stream_id, false);
    INSERT INTO eventstore.streams AS s (stream_id, max_age, max_count, truncate_before)
        VALUES (set_stream_metadata.stream_id, set_stream_metadata.max_age,
                set_stream_metadata.max_count, set_stream_metadata.truncate_before)
    ON CONFLICT ON CONSTRAINT streams_pkey DO UPDATE
        SET max_age = excluded.max_age, max_count = excluded.max_count,
            truncate_before = excluded.truncate_before,
            settings_version = s.settings_version + 1, retention_checked = false;
    -- a snapshot holds the events folded when it was taken: with other
    -- settings it may hold events now hidden, or miss ones now shown
    PERFORM eventstore._forget_snapshots(stream_id);
    -- followers of the global log learn of it (0.7.0)
    PERFORM eventstore._append_marker(stream_id, '$metadata',
                pg_catalog.jsonb_build_object('stream_id', set_stream_metadata.stream_id,
                                              'max_age', eventstore._iso_interval(set_stream_metadata.max_age),
                                              'max_count', set_stream_metadata.max_count,
                                              'truncate_before', set_stream_metadata.truncate_before));
    PERFORM eventstore._need_worker('stream retention');
    RETURN eventstore.stream_info(stream_id);
END $$;
COMMENT ON FUNCTION eventstore.set_stream_metadata(text, interval, bigint, bigint) IS
    'Set a stream''s max age, max count and truncate-before (NULL: no limit); reads honour them at once, the worker removes what they exclude; appends a $metadata marker to $$<stream_id>';
REVOKE ALL ON FUNCTION eventstore.set_stream_metadata(text, interval, bigint, bigint) FROM PUBLIC;

CREATE FUNCTION eventstore.stream_info(stream_id text)
RETURNS eventstore.stream_info
    AS 'MODULE_PATHNAME', 'eventstore_stream_info'
    LANGUAGE C STABLE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION eventstore.stream_info(text) IS
    'Settings and lifecycle state of a stream (absent, active, deleted, tombstoned, archived)';
REVOKE ALL ON FUNCTION eventstore.stream_info(text) FROM PUBLIC;

CREATE FUNCTION eventstore.get_stream_metadata(
    stream_id           text,
    OUT max_age         interval,
    OUT max_count       bigint,
    OUT truncate_before bigint)
    LANGUAGE sql STABLE CALLED ON NULL INPUT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT i.max_age, i.max_count, i.truncate_before FROM eventstore.stream_info(stream_id) i $$;
COMMENT ON FUNCTION eventstore.get_stream_metadata(text) IS
    'A stream''s settings as set_stream_metadata set them (NULL: no limit; all NULL for a tombstoned stream)';
REVOKE ALL ON FUNCTION eventstore.get_stream_metadata(text) FROM PUBLIC;

-- Soft delete (hard = false) or tombstone (hard = true).  The events of an
-- archived stream go at once (they are not in the hot table, where the
-- worker's retention works); the others are left to the worker.
CREATE FUNCTION eventstore._delete_stream(p_stream_id text, expected_version bigint, hard boolean)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    c := eventstore._stream_for_change(p_stream_id, false);
    PERFORM eventstore._check_expected(p_stream_id, expected_version, c.visible, c.head);
    IF c.visible = 0 AND NOT hard THEN
        RETURN 0;               -- absent already: nothing to do
    END IF;
    IF (c.st).archived_at IS NOT NULL THEN
        PERFORM eventstore._remove_events(p_stream_id, true, c.head, NULL, NULL);
    END IF;
    INSERT INTO eventstore.streams AS s (stream_id, tombstoned_at, deleted_version, deleted_at)
        VALUES (p_stream_id, CASE WHEN hard THEN now() END, c.head, now())
    ON CONFLICT ON CONSTRAINT streams_pkey DO UPDATE
        SET tombstoned_at = excluded.tombstoned_at,
            deleted_version = excluded.deleted_version, deleted_at = excluded.deleted_at,
            -- a tombstone takes the stream's settings with it for good
            max_age = CASE WHEN NOT hard THEN s.max_age END,
            max_count = CASE WHEN NOT hard THEN s.max_count END,
            truncate_before = CASE WHEN NOT hard THEN s.truncate_before END,
            archived_at = NULL,
            settings_version = s.settings_version + 1, retention_checked = false,
            removed_through = CASE WHEN s.archived_at IS NOT NULL THEN excluded.deleted_version
                                   ELSE s.removed_through END;
    PERFORM eventstore._forget_snapshots(p_stream_id);
    -- followers of the global log learn of it (0.7.0)
    PERFORM eventstore._append_marker(p_stream_id,
                                      CASE WHEN hard THEN '$tombstoned' ELSE '$deleted' END,
                                      pg_catalog.jsonb_build_object('stream_id', p_stream_id,
                                                                    'deleted_version', c.head));
    PERFORM eventstore._need_worker('stream retention');
    RETURN c.head;
END $$;
COMMENT ON FUNCTION eventstore._delete_stream(text, bigint, boolean) IS
    'Soft delete (hard = false) or tombstone (hard = true) a stream: the implementation of delete_stream and tombstone_stream (internal)';
REVOKE ALL ON FUNCTION eventstore._delete_stream(text, bigint, boolean) FROM PUBLIC;

CREATE FUNCTION eventstore.delete_stream(stream_id text, expected_version bigint DEFAULT NULL)
RETURNS bigint
    LANGUAGE sql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventstore._delete_stream(stream_id, expected_version, false) $$;
COMMENT ON FUNCTION eventstore.delete_stream(text, bigint) IS
    'Soft delete: the stream reads as absent; a later append recreates it, numbering going on; appends a $deleted marker to $$<stream_id>.  Returns the version deleted (0: nothing to delete)';
REVOKE ALL ON FUNCTION eventstore.delete_stream(text, bigint) FROM PUBLIC;

CREATE FUNCTION eventstore.tombstone_stream(stream_id text, expected_version bigint DEFAULT NULL)
RETURNS bigint
    LANGUAGE sql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventstore._delete_stream(stream_id, expected_version, true) $$;
COMMENT ON FUNCTION eventstore.tombstone_stream(text, bigint) IS
    'Hard delete: the stream reads as absent and every later append fails with ST002; appends a $tombstoned marker to $$<stream_id>.  Returns the version deleted';
REVOKE ALL ON FUNCTION eventstore.tombstone_stream(text, bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Archiving
-- ---------------------------------------------------------------------

-- Archive one stream.  Without wait, a stream whose lock is busy is left
-- alone (NULL); with inactive_for, so is one that had an event since.
CREATE FUNCTION eventstore._archive_stream(p_stream_id text, wait boolean,
                                           inactive_for interval DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_archive_stream'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._archive_stream(text, boolean, interval) IS
    'Move one stream''s events to eventstore.archived_events; without wait a busy stream, with inactive_for an active, tombstoned or deleted one, is left alone (internal)';
REVOKE ALL ON FUNCTION eventstore._archive_stream(text, boolean, interval) FROM PUBLIC;

CREATE FUNCTION eventstore.archive_stream(stream_id text)
RETURNS bigint
    LANGUAGE sql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventstore._archive_stream(stream_id, true) $$;
COMMENT ON FUNCTION eventstore.archive_stream(text) IS
    'Move a stream''s events out of the hot table into eventstore.archived_events; read_stream still reads them.  Returns the number moved';
REVOKE ALL ON FUNCTION eventstore.archive_stream(text) FROM PUBLIC;

CREATE FUNCTION eventstore.restore_stream(stream_id text)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    moved bigint;
BEGIN
    c := eventstore._stream_for_change(stream_id, false);
    IF (c.st).archived_at IS NULL THEN
        RETURN 0;               -- not archived
    END IF;
    moved := eventstore._move_stream(stream_id, false);
    -- back in the hot table: retention looks at it again
    UPDATE eventstore.streams s
       SET archived_at = NULL, settings_version = s.settings_version + 1, retention_checked = false
     WHERE s.stream_id = restore_stream.stream_id;
    -- a row that only said "archived" has nothing left to say
    DELETE FROM eventstore.streams s
     WHERE s.stream_id = restore_stream.stream_id
       AND s.max_age IS NULL AND s.max_count IS NULL AND s.truncate_before IS NULL
       AND s.deleted_version IS NULL AND s.tombstoned_at IS NULL AND s.removed_through = 0;
    RETURN moved;
END $$;
COMMENT ON FUNCTION eventstore.restore_stream(text) IS
    'Move an archived stream''s events back into the hot table, unchanged.  Returns the number moved';
REVOKE ALL ON FUNCTION eventstore.restore_stream(text) FROM PUBLIC;

-- Streams with a stored event but none for inactive_for, oldest first.
CREATE FUNCTION eventstore._inactive_streams(inactive_for interval, stream_prefix text, max_streams integer)
RETURNS SETOF text
    LANGUAGE sql STABLE CALLED ON NULL INPUT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT e.stream_id
      FROM eventstore.events e
     WHERE (stream_prefix IS NULL
            OR left(e.stream_id, length(stream_prefix)) = stream_prefix COLLATE "C")
       -- lifecycle markers stay in the hot table for good (0.7.0)
       AND left(e.stream_id, 2) <> '$$' COLLATE "C"
     GROUP BY e.stream_id
    HAVING max(e.created_at) < now() - inactive_for
       -- tombstoned and deleted streams: their events are on their way out
       AND NOT EXISTS (SELECT FROM eventstore.streams t
                        WHERE t.stream_id = e.stream_id
                          AND (t.tombstoned_at IS NOT NULL
                               OR t.deleted_version >= max(e.stream_version)))
     ORDER BY max(e.created_at), e.stream_id
     LIMIT max_streams
$fn$;
COMMENT ON FUNCTION eventstore._inactive_streams(interval, text, integer) IS
    'Streams with a stored event but none for inactive_for, oldest first (internal)';
REVOKE ALL ON FUNCTION eventstore._inactive_streams(interval, text, integer) FROM PUBLIC;

CREATE FUNCTION eventstore.archive_streams(
    inactive_for  interval,
    stream_prefix text    DEFAULT NULL,
    max_streams   integer DEFAULT 1000)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    streams text[];
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
    streams := ARRAY(SELECT * FROM eventstore._inactive_streams(inactive_for, stream_prefix, max_streams));
    -- eventstore.progress shows how far it is (0.9.0)
    PERFORM eventstore._report_progress('archive_streams', stream_prefix, 0,
                                        pg_catalog.cardinality(streams));
    -- _archive_stream passes over tombstoned and deleted streams
    FOR i IN 1 .. pg_catalog.cardinality(streams) LOOP
        moved := eventstore._archive_stream(streams[i], false, inactive_for);
        IF moved > 0 THEN
            n := n + 1;
        END IF;
        PERFORM eventstore._report_progress('archive_streams', stream_prefix, i, NULL);
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION eventstore.archive_streams(interval, text, integer) IS
    'Archive up to max_streams streams (with the prefix) that have had no event for inactive_for; returns the number of streams archived';
REVOKE ALL ON FUNCTION eventstore.archive_streams(interval, text, integer) FROM PUBLIC;

CREATE FUNCTION eventstore.create_archive_policy(
    name          text,
    inactive_for  interval,
    stream_prefix text DEFAULT NULL)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'archive policy name must not be empty' USING ERRCODE = '22023';
    END IF;
    IF inactive_for IS NULL OR inactive_for <= interval '0' THEN
        RAISE EXCEPTION 'inactive_for must be a positive interval' USING ERRCODE = '22023';
    END IF;
    -- every run of the policy computes now() - inactive_for
    PERFORM eventstore._check_interval('inactive_for', inactive_for);
    INSERT INTO eventstore.archive_policies (name, inactive_for, stream_prefix)
        VALUES (create_archive_policy.name, create_archive_policy.inactive_for,
                nullif(create_archive_policy.stream_prefix, ''));
    PERFORM eventstore._need_worker('archive policies');
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'archive policy "%" already exists', name USING ERRCODE = '42710';
END $$;
COMMENT ON FUNCTION eventstore.create_archive_policy(text, interval, text) IS
    'Have the background worker archive the streams (with the prefix) that have had no event for inactive_for';
REVOKE ALL ON FUNCTION eventstore.create_archive_policy(text, interval, text) FROM PUBLIC;

CREATE FUNCTION eventstore.drop_archive_policy(name text, if_exists boolean DEFAULT false)
RETURNS void
    LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'archive policy name must not be NULL' USING ERRCODE = '22004';
    END IF;
    DELETE FROM eventstore.archive_policies p WHERE p.name = drop_archive_policy.name;
    IF NOT FOUND AND NOT coalesce(if_exists, false) THEN
        RAISE EXCEPTION 'archive policy "%" does not exist', name USING ERRCODE = '42704';
    END IF;
END $$;
COMMENT ON FUNCTION eventstore.drop_archive_policy(text, boolean) IS 'Drop an archive policy';
REVOKE ALL ON FUNCTION eventstore.drop_archive_policy(text, boolean) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- The worker's share: retention and archive policies, in bounded batches
-- ---------------------------------------------------------------------

-- Both steps are C (src/lifecycle.c, es_retention_step and es_archive_step),
-- which the worker calls directly; these are their SQL entry points, for
-- tests and for running a step by hand.  What a stream's settings exclude
-- (the retention bounds) is computed there only.

-- Remove at most batch_size events that the streams' settings exclude,
-- each stream's oldest first.  Never waits for a lock an appender holds:
-- the removed rows are old, appends add new ones.  Returns the number of
-- events removed, and whether it looked at every stream it had to (not when
-- it stopped at batch_size or skipped a stream whose row was locked).
--
-- Which streams it looks at: those whose settings changed since their last
-- complete removal (retention_checked is false), those with max_age (time
-- passes), and those with max_count or truncate_before that got events
-- after after_position (the worker passes the horizon of its last complete
-- pass; with 0, those of them that hold events to remove).
CREATE FUNCTION eventstore._retention_step(batch_size integer, after_position bigint DEFAULT 0,
                                           OUT removed bigint, OUT complete boolean)
    AS 'MODULE_PATHNAME', 'eventstore_retention_step'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._retention_step(integer, bigint) IS
    'Remove at most batch_size events that the streams'' settings exclude; run by the background worker (internal)';
REVOKE ALL ON FUNCTION eventstore._retention_step(integer, bigint) FROM PUBLIC;

-- Archive at most max_streams streams for the archive policies; returns
-- the number archived.  A policy's run finds its inactive streams with one
-- scan of the hot table (every inactive_for / 10, at most hourly) and
-- archives them over as many steps as it takes; each stream is checked
-- again under its lock.
CREATE FUNCTION eventstore._archive_step(max_streams integer)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'eventstore_archive_step'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._archive_step(integer) IS
    'Archive at most max_streams streams for the archive policies; run by the background worker (internal)';
REVOKE ALL ON FUNCTION eventstore._archive_step(integer) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Observability
-- ---------------------------------------------------------------------

-- One row of counters for dashboards: streams by lifecycle state, what the
-- worker still has to look at, and the size of both tables.
CREATE VIEW eventstore.lifecycle_status AS
SELECT count(*) FILTER (WHERE s.max_age IS NOT NULL OR s.max_count IS NOT NULL
                          OR s.truncate_before IS NOT NULL)            AS streams_with_settings,
       count(*) FILTER (WHERE s.deleted_version IS NOT NULL AND s.tombstoned_at IS NULL)
                                                                        AS deleted_streams,
       count(*) FILTER (WHERE s.tombstoned_at IS NOT NULL)             AS tombstoned_streams,
       count(*) FILTER (WHERE s.archived_at IS NOT NULL)               AS archived_streams,
       count(*) FILTER (WHERE NOT s.retention_checked AND s.archived_at IS NULL)
                                                                        AS streams_pending_retention,
       (SELECT count(*) FROM eventstore.archive_candidates)            AS streams_pending_archive,
       pg_catalog.pg_total_relation_size('eventstore.events')          AS hot_table_bytes,
       pg_catalog.pg_total_relation_size('eventstore.archived_events') AS archive_table_bytes
  FROM eventstore.streams s;
COMMENT ON VIEW eventstore.lifecycle_status IS 'Counters of the stream lifecycle: streams by state, pending work, table sizes';
REVOKE ALL ON TABLE eventstore.lifecycle_status FROM PUBLIC;
