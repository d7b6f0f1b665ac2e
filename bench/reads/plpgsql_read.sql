-- Suite "reads": a PL/pgSQL read function with the semantics of
-- eventstore.read_stream (DESIGN.md section 1): forward, versions >=
-- from_version (NULL: from the start), ascending; backward, versions <=
-- from_version (NULL: from the end), descending; at most max_count rows.  It
-- is how an SQL-only store would write it: one RETURN QUERY per direction over
-- the (stream_id, stream_version) index.  It reads eventstore.events, the
-- very rows the extension reads, so only the access path differs.
CREATE SCHEMA bench_reads;

CREATE FUNCTION bench_reads.read_stream(
    stream_id    text,
    from_version bigint  DEFAULT NULL,
    max_count    bigint  DEFAULT NULL,
    backward     boolean DEFAULT false)
RETURNS SETOF eventstore.event
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p_stream_id    ALIAS FOR stream_id;
    p_from_version ALIAS FOR from_version;
    p_max_count    ALIAS FOR max_count;
    p_backward     ALIAS FOR backward;
BEGIN
    IF p_stream_id IS NULL THEN
        RAISE EXCEPTION 'stream_id must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF p_stream_id = '' THEN
        RAISE EXCEPTION 'stream_id must not be empty' USING ERRCODE = '22023';
    END IF;
    IF p_from_version < 0 OR p_max_count < 0 THEN
        RAISE EXCEPTION 'from_version and max_count must not be negative' USING ERRCODE = '22023';
    END IF;
    IF p_backward THEN
        RETURN QUERY
            SELECT e.global_position, e.stream_id, e.stream_version, e.event_id,
                   e.event_type, e.data, e.metadata, e.created_at
              FROM eventstore.events e
             WHERE e.stream_id = p_stream_id
               AND e.stream_version <= coalesce(p_from_version, 9223372036854775807)
             ORDER BY e.stream_version DESC
             LIMIT p_max_count;
    ELSE
        RETURN QUERY
            SELECT e.global_position, e.stream_id, e.stream_version, e.event_id,
                   e.event_type, e.data, e.metadata, e.created_at
              FROM eventstore.events e
             WHERE e.stream_id = p_stream_id
               AND e.stream_version >= coalesce(p_from_version, 0)
             ORDER BY e.stream_version
             LIMIT p_max_count;
    END IF;
END
$$;
