-- eventstore 0.5.0 -> 0.6.0: stream semantics a KurrentDB user can rely on
-- (issue 14).  test/t/014_upgrade_chain.pl checks that this script and a
-- fresh install of 0.6.0 agree.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.6.0'" to load this file. \quit

-- =====================================================================
-- Section 1: exactly once per event id
-- =====================================================================

-- Every id a caller gave an append, with the event that took it
-- (src/append.c looks retries up here); the same definition as
-- sql/install/core.sql.
CREATE TABLE eventstore.event_ids (
    event_id        uuid        NOT NULL,
    global_position bigint      NOT NULL,
    stream_version  bigint      NOT NULL,
    stream_id       text COLLATE "C" NOT NULL,
    CONSTRAINT event_ids_pkey PRIMARY KEY (event_id)
);
COMMENT ON TABLE eventstore.event_ids IS 'Event ids given by callers of appends and the event each took, kept for good: retries are recognised by them';
SELECT pg_catalog.pg_extension_config_dump('eventstore.event_ids', '');
REVOKE ALL ON TABLE eventstore.event_ids FROM PUBLIC;

-- Before 0.6.0 nothing told ids callers gave from generated ones, so the
-- ids of all stored events are taken, archived ones too.  A retry with
-- expected version NULL or -1 was recognised only while its events were
-- the stream's newest, so an id may be stored twice: the first event that
-- took it keeps it, no event is changed, and a WARNING says how many.
DO $$
DECLARE
    total bigint;
    kept bigint;
BEGIN
    INSERT INTO eventstore.event_ids (event_id, global_position, stream_version, stream_id)
    SELECT e.event_id, e.global_position, e.stream_version, e.stream_id
      FROM (SELECT event_id, global_position, stream_version, stream_id FROM eventstore.events
            UNION ALL
            SELECT event_id, global_position, stream_version, stream_id FROM eventstore.archived_events) e
     ORDER BY e.global_position
    ON CONFLICT ON CONSTRAINT event_ids_pkey DO NOTHING;
    GET DIAGNOSTICS kept = ROW_COUNT;
    SELECT (SELECT count(*) FROM eventstore.events)
           OPERATOR(pg_catalog.+) (SELECT count(*) FROM eventstore.archived_events)
      INTO total;
    IF total OPERATOR(pg_catalog.>) kept THEN
        RAISE WARNING '% stored events carry an event id an earlier event carries', total OPERATOR(pg_catalog.-) kept
            USING DETAIL = 'Retries appended before 0.6.0 stored their events again; eventstore.event_ids names the first event of each id, and no event is changed.',
                  HINT = 'Find them with SELECT event_id FROM eventstore.events GROUP BY event_id HAVING count(*) > 1.';
    END IF;
END
$$;

-- =====================================================================
-- Section 2: recreation after delete; metadata of tombstoned streams
-- =====================================================================

-- The expected-version check learns the stream's last version: a stream
-- soft-deleted at version d (nothing appended since) is expected by 0 and
-- by d, the version a writer last saw (src/catalog.c).  The 0.6.0 library
-- still serves the three-argument form for databases not yet updated.
DROP FUNCTION eventstore._check_expected(text, bigint, bigint);

-- actual: the version the stream reads as; last_version: the highest it
-- ever had (a stream that reads as 0 with a last version is soft-deleted
-- at it, and expecting that version recreates it).
CREATE FUNCTION eventstore._check_expected(p_stream_id text, expected bigint, actual bigint,
                                           last_version bigint)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_check_expected'
    LANGUAGE C IMMUTABLE CALLED ON NULL INPUT PARALLEL SAFE;
COMMENT ON FUNCTION eventstore._check_expected(text, bigint, bigint, bigint) IS
    'Raise 22023 for an invalid expected version, ST001 when it does not match the stream''s actual and last versions (internal)';
REVOKE ALL ON FUNCTION eventstore._check_expected(text, bigint, bigint, bigint) FROM PUBLIC;

-- delete_stream and tombstone_stream pass the last version to the check;
-- a tombstone clears the stream's settings.
--
-- Soft delete (hard = false) or tombstone (hard = true).  The events of an
-- archived stream go at once (they are not in the hot table, where the
-- worker's retention works); the others are left to the worker.
CREATE OR REPLACE FUNCTION eventstore._delete_stream(p_stream_id text, expected_version bigint, hard boolean)
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
    PERFORM eventstore._need_worker('stream retention');
    RETURN c.head;
END $$;
COMMENT ON FUNCTION eventstore._delete_stream(text, bigint, boolean) IS
    'Soft delete (hard = false) or tombstone (hard = true) a stream: the implementation of delete_stream and tombstone_stream (internal)';

-- Streams tombstoned before 0.6.0 lose their settings as a tombstone now
-- takes them (get_stream_metadata reads NULLs, as for those tombstoned
-- from now on); nothing else reads them.
UPDATE eventstore.streams s
   SET max_age = NULL, max_count = NULL, truncate_before = NULL
 WHERE s.tombstoned_at IS NOT NULL
   AND (s.max_age IS NOT NULL OR s.max_count IS NOT NULL OR s.truncate_before IS NOT NULL);

COMMENT ON FUNCTION eventstore.get_stream_metadata(text) IS
    'A stream''s settings as set_stream_metadata set them (NULL: no limit; all NULL for a tombstoned stream)';
