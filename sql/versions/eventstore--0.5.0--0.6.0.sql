-- eventstore 0.5.0 -> 0.6.0: stream semantics a KurrentDB user can rely on
-- (issue 14).  test/t/014_upgrade_chain.pl checks that this script and a
-- fresh install of 0.6.0 agree.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '0.6.0'" to load this file. \quit

-- =====================================================================
-- Section 1: exactly once per event id
-- =====================================================================

-- The index through which appends recognise retries by event id
-- (src/append.c).  Before 0.6.0 a retry with expected version NULL or -1
-- was recognised only while its events were the stream's newest, so a
-- database may already hold one id twice.  Such a database keeps its
-- events untouched: the update never deletes or rewrites an event.  It
-- gets the same index without uniqueness and a WARNING naming how many
-- ids are repeated; appends check ids through it just the same under the
-- stream lock, and only two concurrent appends of one new id to two
-- different streams escape the check until the index is made unique (see
-- "Idempotent appends" in docs/reference.md).
DO $$
DECLARE
    repeated bigint;
BEGIN
    SELECT count(*) INTO repeated
      FROM (SELECT event_id FROM eventstore.events
             GROUP BY event_id HAVING count(*) OPERATOR(pg_catalog.>) 1) d;
    IF repeated OPERATOR(pg_catalog.=) 0 THEN
        CREATE UNIQUE INDEX events_event_id_key ON eventstore.events (event_id);
    ELSE
        CREATE INDEX events_event_id_key ON eventstore.events (event_id);
        RAISE WARNING '% event ids are stored more than once in eventstore.events', repeated
            USING DETAIL = 'Retries appended before 0.6.0 stored their events again; the index events_event_id_key is created without uniqueness and no event is changed.',
                  HINT = 'Find them with SELECT event_id FROM eventstore.events GROUP BY event_id HAVING count(*) > 1; once each is stored once (retention removes events), make the index unique: DROP INDEX eventstore.events_event_id_key; CREATE UNIQUE INDEX events_event_id_key ON eventstore.events (event_id);';
    END IF;
END
$$;

-- =====================================================================
-- Section 2: recreation after delete
-- =====================================================================
