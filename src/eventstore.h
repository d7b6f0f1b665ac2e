/*-------------------------------------------------------------------------
 *
 * eventstore.h
 *	  Declarations shared by the files of the eventstore extension.
 *
 * src/eventstore.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENTSTORE_H
#define EVENTSTORE_H

#include "postgres.h"

#include "access/attnum.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

/*
 * SQLSTATEs of our own, in class "ST" (stream).  The class is outside the
 * ranges the SQL standard and PostgreSQL use, so clients can tell these
 * errors apart from the server's.
 */
#define ERRCODE_ES_WRONG_EXPECTED_VERSION	MAKE_SQLSTATE('S','T','0','0','1')

/*
 * Advisory locks taken by appends live in their own key space: field4 of an
 * advisory LOCKTAG is 1 or 2 for the SQL-level pg_advisory_* functions, so a
 * distinct value can never collide with an application's own advisory locks.
 * pg_locks shows these as locktype 'advisory' with objsubid 17747 ('ES').
 */
#define ES_ADVISORY_LOCK_CLASS		0x4553

/* Limits on identifiers; longer ones are rejected with 54000. */
#define ES_MAX_STREAM_ID_BYTES		1024
#define ES_MAX_EVENT_TYPE_BYTES		1024

/*
 * Physical column order of eventstore.events.  Fixed-width columns come first
 * so a row carries no alignment padding; the eventstore.event type that reads
 * return keeps the order of the contract, see es_event_to_output().
 */
#define Anum_es_global_position		1
#define Anum_es_stream_version		2
#define Anum_es_created_at			3
#define Anum_es_event_id			4
#define Anum_es_stream_id			5
#define Anum_es_event_type			6
#define Anum_es_data				7
#define Anum_es_metadata			8
#define Natts_es_events				8

/* Column order of the eventstore.event composite type (the contract). */
#define Natts_es_event_type			8

/*
 * OIDs of the extension's objects in the current database, looked up once
 * per backend and forgotten when the events relation's cache entry is
 * invalidated (DROP/CREATE EXTENSION, ALTER TABLE, CREATE INDEX, ...).
 */
typedef struct EsCatalog
{
	Oid			namespace_oid;
	Oid			events_relid;
	Oid			stream_index_relid; /* unique (stream_id, stream_version) */
	Oid			position_seq_relid; /* draws global positions */
} EsCatalog;

/* append.c */
struct TupleTableSlot;
extern int64 es_stream_head(Relation heap, Relation stream_index, text *stream_id,
							Snapshot snapshot, struct TupleTableSlot *slot);

/* eventstore.c */
extern int	es_max_event_size;
extern const EsCatalog *es_catalog(void);
extern void es_check_stream_id(text *stream_id);
extern void es_event_to_output(const Datum *row_values, const bool *row_nulls,
							   Datum *out_values, bool *out_nulls);

#endif							/* EVENTSTORE_H */
