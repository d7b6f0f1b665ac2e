-- ---------------------------------------------------------------------
-- Statistics and progress (0.9.0, src/stats.c)
-- ---------------------------------------------------------------------
-- Counters kept in shared memory per database since the server started
-- (or eventstore.reset_stats()), the appenders in flight and the horizons,
-- the background processes' duties, and the long operations running now.
-- The views are the interface, readable by pg_monitor; the owner grants
-- SELECT on them to other roles.  The functions under them are executable
-- by PUBLIC but answer only a role that may read their view (42501).

-- pg_monitor finds the views (and only these: every other object of the
-- schema stays ungranted)
GRANT USAGE ON SCHEMA eventstore TO pg_monitor;

CREATE FUNCTION eventstore._store_stats(
    OUT appends bigint, OUT events bigint, OUT bytes bigint,
    OUT conflicts bigint, OUT retries bigint,
    OUT inline_calls bigint, OUT inline_time double precision,
    OUT notifications bigint,
    OUT appenders_in_flight integer, OUT oldest_appender_pid integer,
    OUT oldest_appender_age interval,
    OUT drawn_position bigint, OUT live_horizon bigint,
    OUT recorded_horizon bigint, OUT horizon_lag bigint,
    OUT stats_reset timestamptz)
    AS 'MODULE_PATHNAME', 'eventstore_store_stats'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._store_stats() IS
    'The statistics of this database''s store (the view eventstore.store_stats)';
REVOKE ALL ON FUNCTION eventstore._store_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore._store_stats() TO PUBLIC;

CREATE VIEW eventstore.store_stats AS
    SELECT * FROM eventstore._store_stats();
COMMENT ON VIEW eventstore.store_stats IS
    'Appends, events, bytes, conflicts, retries, inline handler calls and notifications since the last reset; appenders in flight and the log horizons now';
REVOKE ALL ON TABLE eventstore.store_stats FROM PUBLIC;
GRANT SELECT ON TABLE eventstore.store_stats TO pg_monitor;

CREATE FUNCTION eventstore._worker_stats(
    OUT duty text, OUT process text, OUT cycles bigint, OUT items bigint,
    OUT total_time double precision, OUT last_cycle_at timestamptz)
RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'eventstore_worker_stats'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE ROWS 4;
COMMENT ON FUNCTION eventstore._worker_stats() IS
    'The duties of this database''s background processes (the view eventstore.worker_stats)';
REVOKE ALL ON FUNCTION eventstore._worker_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore._worker_stats() TO PUBLIC;

CREATE VIEW eventstore.worker_stats AS
    SELECT * FROM eventstore._worker_stats();
COMMENT ON VIEW eventstore.worker_stats IS
    'Cycles, work done and time of each duty of the worker and the projector since the last reset';
REVOKE ALL ON TABLE eventstore.worker_stats FROM PUBLIC;
GRANT SELECT ON TABLE eventstore.worker_stats TO pg_monitor;

CREATE FUNCTION eventstore._progress(
    OUT pid integer, OUT operation text, OUT target text,
    OUT started_at timestamptz, OUT done bigint, OUT total bigint,
    OUT unit text, OUT rate double precision)
RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'eventstore_progress'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE ROWS 4;
COMMENT ON FUNCTION eventstore._progress() IS
    'The long operations running in this database (the view eventstore.progress)';
REVOKE ALL ON FUNCTION eventstore._progress() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore._progress() TO PUBLIC;

CREATE VIEW eventstore.progress AS
    SELECT * FROM eventstore._progress();
COMMENT ON VIEW eventstore.progress IS
    'Long operations running now: projections and snapshot policies catching up, archive_streams, retention and archiving passes';
REVOKE ALL ON TABLE eventstore.progress FROM PUBLIC;
GRANT SELECT ON TABLE eventstore.progress TO pg_monitor;

CREATE FUNCTION eventstore.reset_stats()
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_reset_stats'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore.reset_stats() IS
    'Zero the counters of eventstore.store_stats and eventstore.worker_stats in this database';
REVOKE ALL ON FUNCTION eventstore.reset_stats() FROM PUBLIC;

CREATE FUNCTION eventstore._report_progress(operation text, target text,
                                            done bigint, total bigint)
RETURNS void
    AS 'MODULE_PATHNAME', 'eventstore_report_progress'
    LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION eventstore._report_progress(text, text, bigint, bigint) IS
    'How far an operation of the extension is, for eventstore.progress (internal)';
REVOKE ALL ON FUNCTION eventstore._report_progress(text, text, bigint, bigint) FROM PUBLIC;
