/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  Stream lifecycle: per-stream settings (max age, max count, truncate
 *	  before), soft delete, tombstones and archiving.
 *
 * A stream with settings or a lifecycle state has a row in
 * eventstore.streams; most streams have none, and cost a reader or an
 * appender one probe of that table's primary key.  The row decides what
 * readers see of the stream (EsStreamView): reads honour a change at once,
 * and the background worker removes what the settings exclude later, in
 * bounded steps (es_retention_step, which the worker calls directly).  The
 * removal records the highest version it removed in the row, in the same
 * transaction, so the numbering of a stream goes on even when no event of
 * it is left.  The columns of the row are read by the column map of
 * catalog.c, not by position.
 *
 * Archived streams keep their events, unchanged, in
 * eventstore.archived_events; read_stream reads them there.  Rows move
 * between the two tables below the executor (es_move_stream), which is how
 * they get past the triggers that keep both tables append-only for SQL.
 * Archiving a stream (es_archive_stream) serves archive_stream,
 * archive_streams and the worker's archive policies (es_archive_step).
 *
 * The SQL-level functions (delete_stream, archive_stream, ...) are in the
 * extension script; this file holds the primitives they use, the reads of
 * the state, and the worker's retention and archive steps.
 *
 * src/lifecycle.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "storage/lmgr.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "eventstore.h"

/* Columns of eventstore.stream_info. */
#define Natts_es_stream_info			10

static void es_stream_view_of(const EsCatalog *cat, text *stream_id, Snapshot snapshot,
							  bool need_head, EsStreamView *view, EsViewCache *cache);
static int64 es_view_cache_head(EsViewCache *cache, text *stream_id);

/*
 * Read the row of a stream in eventstore.streams as "snapshot" sees it.
 * Before version 0.3.0 there is no such table and no stream has a row.
 */
void
es_stream_rules(const EsCatalog *cat, text *stream_id, Snapshot snapshot,
				EsStreamRules *rules)
{
	Relation	heap;
	Relation	index;
	EsEventScan scan;
	TupleTableSlot *slot;
	const EsStreamsColumns *att = &cat->streams_att;

	memset(rules, 0, sizeof(EsStreamRules));
	if (!OidIsValid(cat->streams_relid))
		return;

	heap = table_open(cat->streams_relid, AccessShareLock);
	index = index_open(cat->streams_pkey_relid, AccessShareLock);

	/* the primary key is the stream id: the scan of a stream fits it */
	es_scan_stream_begin(&scan, heap, index, snapshot, stream_id, 0, PG_INT64_MAX,
						 ForwardScanDirection, NULL);
	if ((slot = es_scan_next(&scan)) != NULL)
	{
		Datum	   *v;
		bool	   *n;

		slot_getallattrs(slot);
		v = slot->tts_values;
		n = slot->tts_isnull;
		rules->found = true;
		if (!n[att->max_age - 1])
		{
			rules->has_max_age = true;
			rules->max_age = *DatumGetIntervalP(v[att->max_age - 1]);
		}
		if (!n[att->max_count - 1])
			rules->max_count = DatumGetInt64(v[att->max_count - 1]);
		if (!n[att->truncate_before - 1])
			rules->truncate_before = DatumGetInt64(v[att->truncate_before - 1]);
		if (!n[att->deleted_version - 1])
		{
			rules->deleted = true;
			rules->deleted_version = DatumGetInt64(v[att->deleted_version - 1]);
			if (!n[att->deleted_at - 1])
				rules->deleted_at = DatumGetTimestampTz(v[att->deleted_at - 1]);
		}
		if (!n[att->tombstoned_at - 1])
		{
			rules->tombstoned = true;
			rules->tombstoned_at = DatumGetTimestampTz(v[att->tombstoned_at - 1]);
		}
		if (!n[att->archived_at - 1])
		{
			rules->archived = true;
			rules->archived_at = DatumGetTimestampTz(v[att->archived_at - 1]);
		}
		rules->removed_through = DatumGetInt64(v[att->removed_through - 1]);
		rules->settings_version = DatumGetInt64(v[att->settings_version - 1]);
		rules->retention_checked = DatumGetBool(v[att->retention_checked - 1]);
	}
	es_scan_end(&scan);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
}

/*
 * The highest version of a stream stored in a table of events (the hot
 * table or the archive, with its (stream_id, stream_version) index) as
 * "snapshot" sees it; 0 when none.
 */
static int64
es_head_in(Oid heap_relid, Oid index_relid, text *stream_id, Snapshot snapshot)
{
	Relation	heap = table_open(heap_relid, AccessShareLock);
	Relation	index = index_open(index_relid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	int64		head;

	head = es_stream_head(heap, index, stream_id, snapshot, slot);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	return head;
}

/*
 * The head of a stream whose highest stored version is "stored": numbering
 * goes on past the events that retention removed and past a soft delete.
 */
int64
es_rules_head(const EsStreamRules *r, int64 stored)
{
	int64		head = stored;

	if (r->removed_through > head)
		head = r->removed_through;
	if (r->deleted && r->deleted_version > head)
		head = r->deleted_version;
	return head;
}

/*
 * The version a stream with head "head" reads as: 0 while it is absent
 * (tombstoned, or soft-deleted with nothing appended since), else its head.
 */
int64
es_rules_version(const EsStreamRules *r, int64 head)
{
	if (r->tombstoned || (r->deleted && head == r->deleted_version))
		return 0;
	return head;
}

/* ST002: the stream was tombstoned at "at"; it takes no more events. */
void
es_error_tombstoned(text *stream_id, TimestampTz at)
{
	ereport(ERROR,
			(errcode(ERRCODE_ES_STREAM_DELETED),
			 errmsg("stream \"%s\" is deleted", text_to_cstring(stream_id)),
			 errdetail("Stream \"%s\" was tombstoned at %s; it takes no more events.",
					   text_to_cstring(stream_id), timestamptz_to_str(at))));
}

/* max_age: events created before this (now() - max_age) are gone. */
static TimestampTz
es_rules_cutoff(const EsStreamRules *r)
{
	Assert(r->has_max_age);
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
												   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
												   IntervalPGetDatum(&r->max_age)));
}

/*
 * What a reader with "snapshot" may see of a stream: where its events are,
 * the lowest readable version, the age cutoff and, with need_head or when
 * the stream has a row in eventstore.streams, its head version.
 *
 *	- tombstoned: nothing (absent);
 *	- soft-deleted at version d: versions <= d are gone; while nothing was
 *	  appended after d, the stream is absent;
 *	- truncate_before t: versions < t are gone;
 *	- max_count n: versions <= head - n are gone;
 *	- max_age a: events created before now() - a are gone.
 */
void
es_stream_view(const EsCatalog *cat, text *stream_id, Snapshot snapshot,
			   bool need_head, EsStreamView *view)
{
	es_stream_rules(cat, stream_id, snapshot, &view->rules);
	/* with a row, the head is always known: numbering goes on past hidden events */
	es_stream_view_of(cat, stream_id, snapshot, need_head || view->rules.found, view, NULL);
}

/*
 * es_stream_view() with view->rules already read; a read across streams
 * passes its cache, which keeps the hot table's index open for the heads.
 */
static void
es_stream_view_of(const EsCatalog *cat, text *stream_id, Snapshot snapshot,
				  bool need_head, EsStreamView *view, EsViewCache *cache)
{
	EsStreamRules *r = &view->rules;

	view->heap_relid = r->archived ? cat->archive_relid : cat->events_relid;
	view->index_relid = r->archived ? cat->archive_index_relid : cat->stream_index_relid;
	view->has_head = false;
	view->head = 0;
	view->version = 0;
	view->absent = r->tombstoned;
	view->min_version = 1;
	view->has_cutoff = false;
	view->cutoff = 0;

	if (!r->found)
	{
		if (!need_head)
			return;
	}
	else
	{
		if (r->truncate_before > view->min_version)
			view->min_version = r->truncate_before;
		if (r->deleted && r->deleted_version + 1 > view->min_version)
			view->min_version = r->deleted_version + 1;
		if (r->has_max_age)
		{
			view->has_cutoff = true;
			view->cutoff = es_rules_cutoff(r);
		}
	}

	/*
	 * The head is needed for max_count; a deleted stream's events hide
	 * through min_version, so only callers that report the version
	 * (need_head) learn whether it is absent.
	 */
	if (need_head || r->max_count > 0)
	{
		int64		head;

		if (cache != NULL && !r->archived)
			head = es_view_cache_head(cache, stream_id);
		else
			head = es_head_in(view->heap_relid, view->index_relid, stream_id, snapshot);

		head = es_rules_head(r, head);
		view->has_head = true;
		view->head = head;
		view->version = es_rules_version(r, head);
		/* events stored, yet it reads as version 0: deleted, absent */
		if (view->version == 0 && head > 0)
			view->absent = true;
		if (r->max_count > 0 && head - r->max_count + 1 > view->min_version)
			view->min_version = head - r->max_count + 1;
	}
}

/* Whether the event at "version", created at "created_at", reads as gone. */
bool
es_view_hides(const EsStreamView *view, int64 version, TimestampTz created_at)
{
	return view->absent || version < view->min_version ||
		(view->has_cutoff && created_at < view->cutoff);
}

/*
 * Reads across streams (read_all, async projections) look up the rules of
 * every stream they meet.  Two caches keep that cheap:
 *
 *	- a backend-lifetime cache of the rows of eventstore.streams, "no row"
 *	  included, filled with the latest committed state and emptied by the
 *	  relcache invalidation that every change of the table sends (statement
 *	  trigger streams_changed, as for the projections);
 *	- per read, the views of the streams that do have a row (their head,
 *	  for max_count, is read with the reader's snapshot).
 *
 * A stream without a row -- most of them -- costs a hash lookup.
 */
typedef struct EsStreamKey
{
	uint32		hash;
	uint32		len;
	const char *id;
} EsStreamKey;

typedef struct EsRulesEntry
{
	EsStreamKey key;
	EsStreamRules rules;
} EsRulesEntry;

typedef struct EsViewEntry
{
	EsStreamKey key;
	EsStreamView view;
} EsViewEntry;

struct EsViewCache
{
	const EsCatalog *cat;
	Snapshot	snapshot;
	bool		any;			/* some stream may have a row */
	MemoryContext cxt;
	HTAB	   *views;
	/* for heads in the hot table, opened at first use */
	Relation	heap;
	Relation	index;
	TupleTableSlot *slot;
};

/* Forget the cached rules when this many streams are cached. */
#define ES_RULES_CACHE_MAX	100000

static MemoryContext es_rules_cxt = NULL;
static HTAB *es_rules = NULL;
static Oid	es_rules_relid = InvalidOid;	/* eventstore.streams they are of */
static bool es_rules_callback_registered = false;

static uint32
es_stream_key_hash(const void *key, Size keysize)
{
	return ((const EsStreamKey *) key)->hash;
}

static int
es_stream_key_match(const void *key1, const void *key2, Size keysize)
{
	const EsStreamKey *a = key1;
	const EsStreamKey *b = key2;

	if (a->hash != b->hash || a->len != b->len)
		return 1;
	return memcmp(a->id, b->id, a->len);
}

static HTAB *
es_stream_hash(const char *name, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(EsStreamKey);
	ctl.entrysize = entrysize;
	ctl.hash = es_stream_key_hash;
	ctl.match = es_stream_key_match;
	ctl.hcxt = cxt;
	return hash_create(name, 256, &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

static void
es_stream_key(EsStreamKey *key, text *stream_id)
{
	key->len = VARSIZE_ANY_EXHDR(stream_id);
	key->id = VARDATA_ANY(stream_id);
	key->hash = hash_bytes((const unsigned char *) key->id, key->len);
}

static void
es_rules_forget(void)
{
	if (es_rules_cxt != NULL)
		MemoryContextReset(es_rules_cxt);
	es_rules = NULL;
}

static void
es_rules_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == es_rules_relid)
		es_rules_forget();
}

/*
 * The rules of a stream as the latest committed state has them.  The read
 * happens before the entry is made: taking a lock may process invalidations,
 * which empty the cache.  Both locks are taken before the snapshot, so an
 * invalidation processed by them is of a change the snapshot sees; one that
 * comes later empties the cache again.
 */
static const EsStreamRules *
es_cached_rules(const EsCatalog *cat, text *stream_id)
{
	EsStreamKey key;
	EsRulesEntry *entry;
	EsStreamRules rules;
	Snapshot	latest;

	if (!es_rules_callback_registered)
	{
		CacheRegisterRelcacheCallback(es_rules_relcache_callback, (Datum) 0);
		es_rules_callback_registered = true;
	}

	es_stream_key(&key, stream_id);
	if (es_rules != NULL && es_rules_relid == cat->streams_relid)
	{
		entry = hash_search(es_rules, &key, HASH_FIND, NULL);
		if (entry != NULL)
			return &entry->rules;
	}

	LockRelationOid(cat->streams_relid, AccessShareLock);
	LockRelationOid(cat->streams_pkey_relid, AccessShareLock);
	latest = RegisterSnapshot(GetLatestSnapshot());
	es_stream_rules(cat, stream_id, latest, &rules);
	UnregisterSnapshot(latest);

	if (es_rules != NULL &&
		(es_rules_relid != cat->streams_relid ||
		 hash_get_num_entries(es_rules) >= ES_RULES_CACHE_MAX))
		es_rules_forget();
	if (es_rules == NULL)
	{
		if (es_rules_cxt == NULL)
			es_rules_cxt = AllocSetContextCreate(TopMemoryContext,
												 "eventstore stream rules",
												 ALLOCSET_DEFAULT_SIZES);
		es_rules = es_stream_hash("eventstore stream rules", sizeof(EsRulesEntry),
								  es_rules_cxt);
		es_rules_relid = cat->streams_relid;
	}
	{
		char	   *copy = MemoryContextAlloc(es_rules_cxt, Max(key.len, 1));

		memcpy(copy, key.id, key.len);
		key.id = copy;
	}
	entry = hash_search(es_rules, &key, HASH_ENTER, NULL);
	entry->rules = rules;
	return &entry->rules;
}

EsViewCache *
es_view_cache_create(const EsCatalog *cat, Snapshot snapshot)
{
	EsViewCache *cache = palloc0(sizeof(EsViewCache));

	cache->cat = cat;
	cache->snapshot = snapshot;
	if (OidIsValid(cat->streams_relid))
	{
		Relation	rel = table_open(cat->streams_relid, AccessShareLock);

		cache->any = RelationGetNumberOfBlocks(rel) > 0;
		table_close(rel, AccessShareLock);
	}
	if (cache->any)
	{
		/* changes committed since the cached rules were read */
		AcceptInvalidationMessages();
		/* in the caller's context: lookups may happen in shorter-lived ones */
		cache->cxt = AllocSetContextCreate(CurrentMemoryContext,
										   "eventstore stream views",
										   ALLOCSET_DEFAULT_SIZES);
	}
	return cache;
}

bool
es_view_cache_hides(EsViewCache *cache, text *stream_id, int64 version,
					TimestampTz created_at)
{
	const EsStreamRules *rules;
	EsStreamKey key;
	EsViewEntry *entry;
	bool		found;

	if (!cache->any)
		return false;
	rules = es_cached_rules(cache->cat, stream_id);
	if (!rules->found)
		return false;

	if (cache->views == NULL)
		cache->views = es_stream_hash("eventstore stream views", sizeof(EsViewEntry),
									  cache->cxt);
	es_stream_key(&key, stream_id);
	entry = hash_search(cache->views, &key, HASH_FIND, NULL);
	if (entry == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(cache->cxt);
		EsStreamView view;
		char	   *copy = palloc(Max(key.len, 1));

		view.rules = *rules;
		es_stream_view_of(cache->cat, stream_id, cache->snapshot, false, &view, cache);
		memcpy(copy, key.id, key.len);
		key.id = copy;
		entry = hash_search(cache->views, &key, HASH_ENTER, &found);
		entry->view = view;
		MemoryContextSwitchTo(oldcxt);
	}
	return es_view_hides(&entry->view, version, created_at);
}

/* The head of a stream in the hot table, as the read's snapshot sees it. */
static int64
es_view_cache_head(EsViewCache *cache, text *stream_id)
{
	if (cache->heap == NULL)
	{
		cache->heap = table_open(cache->cat->events_relid, AccessShareLock);
		cache->index = index_open(cache->cat->stream_index_relid, AccessShareLock);
		cache->slot = table_slot_create(cache->heap, NULL);
	}
	return es_stream_head(cache->heap, cache->index, stream_id, cache->snapshot, cache->slot);
}

void
es_view_cache_destroy(EsViewCache *cache)
{
	if (cache->heap != NULL)
	{
		ExecDropSingleTupleTableSlot(cache->slot);
		index_close(cache->index, AccessShareLock);
		table_close(cache->heap, AccessShareLock);
	}
	if (cache->cxt != NULL)
		MemoryContextDelete(cache->cxt);
	pfree(cache);
}

/* ---------------------------------------------------------------------
 * SQL-callable
 * ---------------------------------------------------------------------
 */

/*
 * The catalog for a lifecycle function of one stream (its tables: the
 * local shards on a distributed store), or of the store (stream_id NULL:
 * the worker's steps, which on a distributed store find nothing in the
 * placeholder tables).  "write": the call changes the stream's rows, so
 * its shard must stay where it is (shard.c).
 */
static const EsCatalog *
es_lifecycle_catalog(text *stream_id, bool write)
{
	const EsCatalog *cat = es_catalog();

	if (!OidIsValid(cat->streams_relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream lifecycle needs eventstore version 0.3.0 or later"),
				 errhint("Run ALTER EXTENSION eventstore UPDATE.")));
	if (stream_id == NULL)
		return cat;
	return write ? es_stream_catalog_for_write(cat, stream_id) : es_stream_catalog(cat, stream_id);
}

/*
 * eventstore.stream_info(stream_id) returns eventstore.stream_info
 */
PG_FUNCTION_INFO_V1(eventstore_stream_info);
Datum
eventstore_stream_info(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	const EsCatalog *cat = es_lifecycle_catalog(stream_id, false);
	EsStreamView view;
	EsStreamRules *r = &view.rules;
	TupleDesc	tupdesc;
	Datum		values[Natts_es_stream_info];
	bool		nulls[Natts_es_stream_info];
	const char *state;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	if (tupdesc->natts != Natts_es_stream_info)
		elog(ERROR, "eventstore.stream_info has %d columns, expected %d",
			 tupdesc->natts, Natts_es_stream_info);

	es_stream_view(cat, stream_id, GetActiveSnapshot(), true, &view);

	if (r->tombstoned)
		state = "tombstoned";
	else if (view.absent)
		state = "deleted";
	else if (view.head == 0)
		state = "absent";
	else if (r->archived)
		state = "archived";
	else
		state = "active";

	memset(nulls, true, sizeof(nulls));
	values[0] = PointerGetDatum(stream_id);
	nulls[0] = false;
	values[1] = CStringGetTextDatum(state);
	nulls[1] = false;
	values[2] = Int64GetDatum(view.version);
	nulls[2] = false;
	values[3] = Int64GetDatum(view.head);
	nulls[3] = false;
	if (r->has_max_age)
	{
		Interval   *age = palloc(sizeof(Interval));

		*age = r->max_age;
		values[4] = IntervalPGetDatum(age);
		nulls[4] = false;
	}
	if (r->max_count > 0)
	{
		values[5] = Int64GetDatum(r->max_count);
		nulls[5] = false;
	}
	if (r->truncate_before > 0)
	{
		values[6] = Int64GetDatum(r->truncate_before);
		nulls[6] = false;
	}
	if (r->deleted && r->deleted_at != 0)
	{
		values[7] = TimestampTzGetDatum(r->deleted_at);
		nulls[7] = false;
	}
	if (r->tombstoned)
	{
		values[8] = TimestampTzGetDatum(r->tombstoned_at);
		nulls[8] = false;
	}
	if (r->archived)
	{
		values[9] = TimestampTzGetDatum(r->archived_at);
		nulls[9] = false;
	}

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * eventstore._lock_stream(stream_id, wait) returns boolean
 */
PG_FUNCTION_INFO_V1(eventstore_lock_stream);
Datum
eventstore_lock_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);

	PreventCommandIfReadOnly("eventstore stream change");
	PG_RETURN_BOOL(es_lock_stream(stream_id, PG_GETARG_BOOL(1)));
}

/*
 * A snapshot that sees every committed change and this transaction's own,
 * whatever the isolation level: the caller holds the stream's lock, so
 * nothing it must see can be in flight.
 */
static Snapshot
es_latest_snapshot(void)
{
	CommandCounterIncrement();
	return RegisterSnapshot(GetLatestSnapshot());
}

/* A stream's row as of now (the caller may hold its lock). */
static void
es_latest_rules(const EsCatalog *cat, text *stream_id, EsStreamRules *rules)
{
	Snapshot	snapshot = es_latest_snapshot();

	es_stream_rules(cat, stream_id, snapshot, rules);
	UnregisterSnapshot(snapshot);
}

/*
 * The highest version of a stream stored in the hot table (or, with
 * archived, in the archive), as of now: sees every committed append.
 */
static int64
es_stored_head(const EsCatalog *cat, text *stream_id, bool archived)
{
	Snapshot	snapshot = es_latest_snapshot();
	int64		head;

	head = es_head_in(archived ? cat->archive_relid : cat->events_relid,
					  archived ? cat->archive_index_relid : cat->stream_index_relid,
					  stream_id, snapshot);
	UnregisterSnapshot(snapshot);
	return head;
}

/*
 * eventstore._stream_versions(stream_id, allow_tombstoned, OUT head,
 * OUT visible): a stream's head and the version it reads as, for a
 * lifecycle change that holds the stream's lock and its row in
 * eventstore.streams (so the newest snapshot is the state it changes).
 * ST002 for a tombstoned stream unless allow_tombstoned.  The same
 * rules as appends and reads (es_rules_head, es_rules_version).
 */
PG_FUNCTION_INFO_V1(eventstore_stream_versions);
Datum
eventstore_stream_versions(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	bool		allow_tombstoned = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	const EsCatalog *cat = es_lifecycle_catalog(stream_id, false);
	EsStreamRules rules;
	int64		head;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	es_latest_rules(cat, stream_id, &rules);
	if (rules.tombstoned && !allow_tombstoned)
		es_error_tombstoned(stream_id, rules.tombstoned_at);
	head = es_rules_head(&rules, es_stored_head(cat, stream_id, rules.archived));
	values[0] = Int64GetDatum(head);
	values[1] = Int64GetDatum(es_rules_version(&rules, head));
	return es_result_row(fcinfo, values, nulls);
}

/*
 * eventstore._stored_head(stream_id, archived) returns bigint
 */
PG_FUNCTION_INFO_V1(eventstore_stored_head);
Datum
eventstore_stored_head(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	bool		archived = PG_GETARG_BOOL(1);

	PG_RETURN_INT64(es_stored_head(es_lifecycle_catalog(stream_id, false), stream_id, archived));
}

/*
 * Move every stored event of the stream from the hot table to the archive
 * or back, unchanged: each row is inserted into the target (heap and
 * indexes; out-of-line values are copied into the target's TOAST table)
 * and then deleted from the source.  No trigger fires: the events are not
 * new.  The caller holds the stream's lock and its row in
 * eventstore.streams, so neither an append nor the worker's retention
 * touches the stream meanwhile.
 */
static int64
es_move_stream(const EsCatalog *cat, text *stream_id, bool to_archive)
{
	Snapshot	snapshot;
	Relation	src;
	Relation	src_index;
	Relation	dst;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *src_slot;
	TupleTableSlot *dst_slot;
	EsEventScan scan;
	CommandId	cid;
	int64		moved = 0;

	PreventCommandIfReadOnly("eventstore archive");
	snapshot = es_latest_snapshot();
	cid = GetCurrentCommandId(true);

	src = table_open(to_archive ? cat->events_relid : cat->archive_relid, RowExclusiveLock);
	src_index = index_open(to_archive ? cat->stream_index_relid : cat->archive_index_relid,
						   RowExclusiveLock);
	dst = table_open(to_archive ? cat->archive_relid : cat->events_relid, RowExclusiveLock);

	if (RelationGetDescr(src)->natts != Natts_es_events ||
		RelationGetDescr(dst)->natts != Natts_es_events)
		elog(ERROR, "eventstore.events and eventstore.archived_events differ in shape");

	estate = CreateExecutorState();
	es_init_range_table(estate, dst, RowExclusiveLock);
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, dst, 1, NULL, 0);
	ExecOpenIndices(rri, false);

	dst_slot = table_slot_create(dst, NULL);
	es_scan_stream_begin(&scan, src, src_index, snapshot, stream_id, 0, PG_INT64_MAX,
						 ForwardScanDirection, NULL);

	while ((src_slot = es_scan_next(&scan)) != NULL)
	{
		CHECK_FOR_INTERRUPTS();
		ResetPerTupleExprContext(estate);

		ExecCopySlot(dst_slot, src_slot);
		table_tuple_insert(dst, dst_slot, cid, 0, NULL);
		if (rri->ri_NumIndices > 0)
			list_free(es_insert_index_tuples(rri, dst_slot, estate, false,
											 NULL, NIL));
		simple_table_tuple_delete(src, &src_slot->tts_tid, snapshot);
		moved++;
	}

	es_scan_end(&scan);
	ExecDropSingleTupleTableSlot(dst_slot);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(dst, NoLock);
	index_close(src_index, NoLock);
	table_close(src, NoLock);
	UnregisterSnapshot(snapshot);

	return moved;
}

/*
 * eventstore._move_stream(stream_id, to_archive) returns bigint
 */
PG_FUNCTION_INFO_V1(eventstore_move_stream);
Datum
eventstore_move_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	bool		to_archive = PG_GETARG_BOOL(1);

	PG_RETURN_INT64(es_move_stream(es_lifecycle_catalog(stream_id, true), stream_id, to_archive));
}

/*
 * Remove, oldest first, the stored events of a stream (in the hot table,
 * or with archived in the archive) whose version is at most "through" or
 * that were created before "cutoff" (each if given), at most max_rows of
 * them (has_max).  Stops at the first event that is kept: retention
 * removes a stream's oldest events.  Returns the number removed, and in
 * *last_version_out the highest version removed (0: none).
 */
static int64
es_remove_events(const EsCatalog *cat, text *stream_id, bool archived,
				 bool has_through, int64 through, bool has_cutoff, TimestampTz cutoff,
				 bool has_max, int64 max_rows, int64 *last_version_out)
{
	Snapshot	snapshot;
	Relation	heap;
	Relation	index;
	TupleTableSlot *slot;
	EsEventScan scan;
	int64		removed = 0;
	int64		last_version = 0;

	PreventCommandIfReadOnly("eventstore retention");
	snapshot = es_latest_snapshot();

	heap = table_open(archived ? cat->archive_relid : cat->events_relid, RowExclusiveLock);
	index = index_open(archived ? cat->archive_index_relid : cat->stream_index_relid,
					   RowExclusiveLock);
	es_scan_stream_begin(&scan, heap, index, snapshot, stream_id, 0, PG_INT64_MAX,
						 ForwardScanDirection, NULL);

	while ((!has_max || removed < max_rows) &&
		   (slot = es_scan_next(&scan)) != NULL)
	{
		bool		isnull;
		int64		version;
		TimestampTz created_at;

		CHECK_FOR_INTERRUPTS();
		version = DatumGetInt64(slot_getattr(slot, Anum_es_stream_version, &isnull));
		created_at = DatumGetTimestampTz(slot_getattr(slot, Anum_es_created_at, &isnull));
		if (!(has_through && version <= through) &&
			!(has_cutoff && created_at < cutoff))
			break;
		simple_table_tuple_delete(heap, &slot->tts_tid, snapshot);
		removed++;
		last_version = version;
	}

	es_scan_end(&scan);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	UnregisterSnapshot(snapshot);

	*last_version_out = last_version;
	return removed;
}

/*
 * eventstore._remove_events(stream_id, archived, through_version,
 *							  created_before, max_rows,
 *							  OUT removed bigint, OUT last_version bigint)
 *
 * NULL through_version, created_before or max_rows: no such bound.
 */
PG_FUNCTION_INFO_V1(eventstore_remove_events);
Datum
eventstore_remove_events(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	bool		archived = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	bool		has_through = !PG_ARGISNULL(2);
	int64		through = has_through ? PG_GETARG_INT64(2) : 0;
	bool		has_cutoff = !PG_ARGISNULL(3);
	TimestampTz cutoff = has_cutoff ? PG_GETARG_TIMESTAMPTZ(3) : 0;
	bool		has_max = !PG_ARGISNULL(4);
	int64		max_rows = has_max ? PG_GETARG_INT32(4) : 0;
	const EsCatalog *cat = es_lifecycle_catalog(stream_id, true);
	int64		last_version;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	values[0] = Int64GetDatum(es_remove_events(cat, stream_id, archived,
											   has_through, through, has_cutoff, cutoff,
											   has_max, max_rows, &last_version));
	values[1] = Int64GetDatum(last_version);
	PG_RETURN_DATUM(es_result_row(fcinfo, values, nulls));
}

/* ---------------------------------------------------------------------
 * Archiving one stream
 * ---------------------------------------------------------------------
 */

/* Run one of our queries (under es_spi_begin); "expected" is its result code. */
static void
es_spi_exec(const char *sql, int nargs, Oid *argtypes, Datum *args, int expected)
{
	int			ret = SPI_execute_with_args(sql, nargs, argtypes, args, NULL, false, 0);

	if (ret != expected)
		elog(ERROR, "could not run \"%s\": %s", sql, SPI_result_code_string(ret));
}

/* A boolean of the last result (NULL: false). */
static bool
es_spi_bool(uint64 row, int column)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  column, &isnull);

	return !isnull && DatumGetBool(d);
}

/*
 * Archive one stream: move its events into the archive and mark its row.
 * Without wait, a stream whose lock is busy is left alone; with
 * inactive_for, so is one that had an event since.  Returns the number of
 * events moved (0: archived already, or nothing stored), or -1 when the
 * stream was left alone.
 *
 * The queries on eventstore.streams and eventstore.snapshots go through
 * SPI: the row is locked and upserted as SQL does it (ON CONFLICT, the
 * table's trigger), and snapshots leave through the one rule that says so
 * (eventstore._forget_snapshots).  The events move below the executor.
 */
static int64
es_archive_stream(const EsCatalog *cat, text *stream_id, bool wait,
				  bool has_inactive_for, Interval *inactive_for)
{
	Datum		id = PointerGetDatum(stream_id);
	Oid			texttype = TEXTOID;
	EsGuard		g;
	int64		moved = -1;

	PreventCommandIfReadOnly("eventstore stream change");

	/*
	 * Lifecycle markers stay in the hot table, readable by read_all for good:
	 * archiving by inactivity passes over marker streams; by name, they are
	 * refused.
	 */
	if (es_is_marker_stream(VARDATA_ANY(stream_id), VARSIZE_ANY_EXHDR(stream_id)))
	{
		if (has_inactive_for)
			return 0;
		es_check_writable_stream_id(stream_id);
	}

	/*
	 * Archiving by inactivity passes over tombstoned and soft-deleted
	 * streams (nothing stored after the delete), without taking their lock:
	 * retention is removing their events.  Asked for by name, a tombstoned
	 * stream is an error.
	 */
	if (has_inactive_for)
	{
		EsStreamRules rules;

		es_latest_rules(cat, stream_id, &rules);
		if (rules.found &&
			(rules.tombstoned || rules.archived ||
			 (rules.deleted &&
			  rules.deleted_version >= es_stored_head(cat, stream_id, false))))
			return 0;
	}

	if (!es_lock_stream(stream_id, wait))
		return -1;				/* busy: left for later */

	es_spi_begin(&g, InvalidOid);
	if (has_inactive_for)
	{
		Datum		args[2] = {id, IntervalPGetDatum(inactive_for)};
		Oid			types[2] = {TEXTOID, INTERVALOID};
		bool		active;

		es_spi_exec("SELECT e.created_at OPERATOR(pg_catalog.>=)"
					"       (pg_catalog.now() OPERATOR(pg_catalog.-) $2)"
					"  FROM eventstore.events e"
					" WHERE e.stream_id OPERATOR(pg_catalog.=) $1"
					" ORDER BY e.stream_version DESC LIMIT 1",
					2, types, args, SPI_OK_SELECT);
		active = SPI_processed == 1 && es_spi_bool(0, 1);
		SPI_freetuptable(SPI_tuptable);
		if (active)
		{
			es_spi_end(&g);
			return -1;			/* active again */
		}
	}

	es_spi_exec("SELECT s.tombstoned_at, s.archived_at IS NOT NULL"
				"  FROM eventstore.streams s"
				" WHERE s.stream_id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
				1, &texttype, &id, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		tombstoned_at = SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			es_error_tombstoned(stream_id, DatumGetTimestampTz(tombstoned_at));
		if (es_spi_bool(0, 2))
			moved = 0;			/* archived already */
	}
	SPI_freetuptable(SPI_tuptable);

	if (moved != 0)
	{
		moved = es_move_stream(cat, stream_id, true);
		if (moved > 0)
		{
			es_spi_exec("INSERT INTO eventstore.streams AS s (stream_id, archived_at)"
						"     VALUES ($1, pg_catalog.now())"
						" ON CONFLICT ON CONSTRAINT streams_pkey"
						" DO UPDATE SET archived_at = excluded.archived_at",
						1, &texttype, &id, SPI_OK_INSERT);
			es_spi_exec("SELECT eventstore._forget_snapshots($1)",
						1, &texttype, &id, SPI_OK_SELECT);
		}
	}
	es_spi_end(&g);

	return moved;
}

/*
 * eventstore._archive_stream(stream_id, wait, inactive_for) returns bigint
 *
 * NULL when the stream was left alone (busy, or active again).
 */
PG_FUNCTION_INFO_V1(eventstore_archive_stream);
Datum
eventstore_archive_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	bool		wait = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	bool		has_inactive_for = !PG_ARGISNULL(2);
	int64		moved;

	moved = es_archive_stream(es_lifecycle_catalog(stream_id, true), stream_id, wait, has_inactive_for,
							  has_inactive_for ? PG_GETARG_INTERVAL_P(2) : NULL);
	if (moved < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(moved);
}

/* ---------------------------------------------------------------------
 * The worker's share: retention and archive policies, in bounded steps
 * ---------------------------------------------------------------------
 */

/*
 * Take, without waiting, every table lock a maintenance step may need.
 * DROP EXTENSION (or another command that locks these tables exclusively)
 * takes them in an order of its own; a step that waited for one of them
 * while holding another would deadlock with it.  Returns false, holding
 * whatever it took until the end of the transaction, if one is taken.
 */
bool
es_maintenance_locks(const EsCatalog *cat)
{
	Oid			relids[6];

	relids[0] = cat->events_relid;
	relids[1] = cat->archive_relid;
	relids[2] = cat->streams_relid;
	relids[3] = get_relname_relid("archive_policies", cat->namespace_oid);
	relids[4] = get_relname_relid("archive_candidates", cat->namespace_oid);
	relids[5] = get_relname_relid("snapshots", cat->namespace_oid);
	for (int i = 0; i < lengthof(relids); i++)
	{
		if (OidIsValid(relids[i]) &&
			!ConditionalLockRelationOid(relids[i], RowExclusiveLock))
			return false;
	}
	return true;
}

/*
 * What a stream's settings exclude from the hot table: every stored
 * version up to *through (when *has_through), and with max_age every event
 * created before *cutoff.  Nothing when nothing is stored.
 */
static void
es_retention_bounds(const EsCatalog *cat, text *stream_id, const EsStreamRules *r,
					bool *has_through, int64 *through,
					bool *has_cutoff, TimestampTz *cutoff)
{
	int64		stored = es_stored_head(cat, stream_id, false);
	int64		head = es_rules_head(r, stored);

	*has_through = *has_cutoff = false;
	if (stored == 0)
		return;					/* nothing stored: nothing to remove */

	*has_through = true;
	*through = 0;
	if (r->truncate_before > 0)
		*through = Max(*through, r->truncate_before - 1);
	if (r->deleted)
		*through = Max(*through, r->deleted_version);
	if (r->max_count > 0)
		*through = Max(*through, head - r->max_count);
	if (r->tombstoned)
		*through = Max(*through, head);
	if (r->has_max_age)
	{
		*has_cutoff = true;
		*cutoff = es_rules_cutoff(r);
	}
}


/* How many candidates a step fetches from its cursor at a time. */
#define ES_STEP_FETCH	50

/*
 * Retention of one stream of the candidates: remove at most "want" of the
 * events its settings exclude, as they are under the stream's row lock.
 * Returns how many were removed, or -1 when the row is busy.
 */
static int64
es_retain_stream(const EsCatalog *cat, text *stream_id, int64 want)
{
	Oid			texttype = TEXTOID;
	EsStreamRules rules;
	bool		has_through;
	int64		through;
	bool		has_cutoff;
	TimestampTz cutoff;
	int64		last_version;
	int64		n;
	bool		locked;

	es_latest_rules(cat, stream_id, &rules);
	if (!rules.found || rules.archived)
		return 0;
	es_retention_bounds(cat, stream_id, &rules, &has_through, &through,
						&has_cutoff, &cutoff);
	if ((!has_through || through <= rules.removed_through) && !has_cutoff)
	{
		/* nothing to remove */
		if (!rules.retention_checked)
		{
			Datum		args[2] = {PointerGetDatum(stream_id),
			Int64GetDatum(rules.settings_version)};
			Oid			types[2] = {TEXTOID, INT8OID};

			es_spi_exec("UPDATE eventstore.streams s SET retention_checked = true"
						" WHERE s.stream_id OPERATOR(pg_catalog.=) $1"
						"   AND s.settings_version OPERATOR(pg_catalog.=) $2",
						2, types, args, SPI_OK_UPDATE);
		}
		return 0;
	}

	/*
	 * The row lock orders us against set_stream_metadata and deletes: skip
	 * a stream whose row is busy rather than wait, and go by the settings
	 * as they are now, not as the candidates' snapshot saw them.
	 */
	{
		Datum		id = PointerGetDatum(stream_id);

		es_spi_exec("SELECT FROM eventstore.streams s"
					" WHERE s.stream_id OPERATOR(pg_catalog.=) $1"
					"   FOR UPDATE SKIP LOCKED",
					1, &texttype, &id, SPI_OK_SELECT);
	}
	locked = SPI_processed == 1;
	SPI_freetuptable(SPI_tuptable);
	if (!locked)
		return -1;				/* busy: the next pass looks again */
	es_latest_rules(cat, stream_id, &rules);
	if (!rules.found || rules.archived)
		return 0;
	es_retention_bounds(cat, stream_id, &rules, &has_through, &through,
						&has_cutoff, &cutoff);
	n = es_remove_events(cat, stream_id, false, has_through, through,
						 has_cutoff, cutoff, true, want, &last_version);

	/*
	 * In the same transaction as the removal: appends number on from here
	 * even when no event is left.
	 */
	{
		Datum		args[3] = {PointerGetDatum(stream_id), Int64GetDatum(last_version),
		BoolGetDatum(n < want)};
		Oid			types[3] = {TEXTOID, INT8OID, BOOLOID};

		es_spi_exec("UPDATE eventstore.streams s"
					"   SET removed_through = GREATEST(s.removed_through, $2),"
					"       retention_checked = $3"
					" WHERE s.stream_id OPERATOR(pg_catalog.=) $1",
					3, types, args, SPI_OK_UPDATE);
	}
	return n;
}

/*
 * Remove at most batch_size events that the streams' settings exclude,
 * each stream's oldest first.  Never waits for a lock an appender holds:
 * the removed rows are old, appends add new ones.  Returns the number of
 * events removed; *complete tells whether it looked at every stream it had
 * to (not when it stopped at batch_size or skipped a stream whose row was
 * locked).
 *
 * Which streams it looks at: those whose settings changed since their last
 * complete removal (retention_checked is false), those with max_age (time
 * passes), and those with max_count or truncate_before that got events
 * after after_position (the worker passes the horizon of its last complete
 * pass; with 0, those of them that hold events to remove).
 *
 * The candidates are chosen by one query through SPI: a semi-join over the
 * events since a position and index probes per stream are the planner's
 * trade, and this runs once per maintenance pass, not per event.  The
 * streams' rows are read in C (the column map of catalog.c), locked and
 * updated through SPI (FOR UPDATE SKIP LOCKED, as SQL does it); the
 * events are removed in C.
 */
int64
es_retention_step(const EsCatalog *cat, int batch_size, int64 after_position,
				  bool *complete)
{
	Datum		after = Int64GetDatum(after_position);
	Oid			int8type = INT8OID;
	MemoryContext cxt;
	Portal		portal;
	EsGuard		g;
	int64		removed = 0;
	bool		done = false;

	*complete = true;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "eventstore retention step",
								ALLOCSET_DEFAULT_SIZES);
	es_spi_begin(&g, InvalidOid);
	portal = SPI_cursor_open_with_args(NULL,
									   "WITH fresh AS MATERIALIZED ("
									   "     SELECT DISTINCT e.stream_id FROM eventstore.events e"
									   "      WHERE e.global_position OPERATOR(pg_catalog.>) $1)"
									   " SELECT s.stream_id FROM eventstore.streams s"
									   "  WHERE s.archived_at IS NULL"
									   "    AND (NOT s.retention_checked"
									   "         OR s.max_age IS NOT NULL"
	/* got events since the last complete pass */
									   "         OR ($1 OPERATOR(pg_catalog.>) 0"
									   "             AND (s.max_count IS NOT NULL OR s.truncate_before IS NOT NULL)"
									   "             AND s.stream_id OPERATOR(pg_catalog.=) ANY (SELECT f.stream_id FROM fresh f))"
	/*
	 * no such pass (the worker just started): one index probe per stream
	 * instead of a scan of the whole log
	 */
									   "         OR ($1 OPERATOR(pg_catalog.=) 0 AND s.max_count IS NOT NULL"
									   "             AND EXISTS (SELECT FROM eventstore.events e"
									   "                          WHERE e.stream_id OPERATOR(pg_catalog.=) s.stream_id"
									   "                            AND e.stream_version OPERATOR(pg_catalog.>)"
									   "                                (s.removed_through OPERATOR(pg_catalog.+) s.max_count)))"
									   "         OR ($1 OPERATOR(pg_catalog.=) 0 AND s.truncate_before IS NOT NULL"
									   "             AND EXISTS (SELECT FROM eventstore.events e"
									   "                          WHERE e.stream_id OPERATOR(pg_catalog.=) s.stream_id"
									   "                            AND e.stream_version OPERATOR(pg_catalog.>) s.removed_through"
									   "                            AND e.stream_version OPERATOR(pg_catalog.<) s.truncate_before)))"
									   "  ORDER BY s.stream_id",
									   1, &int8type, &after, NULL, false, 0);

	while (!done)
	{
		SPITupleTable *candidates;

		SPI_cursor_fetch(portal, true, ES_STEP_FETCH);
		candidates = SPI_tuptable;
		if (candidates->numvals == 0)
		{
			SPI_freetuptable(candidates);
			break;
		}
		for (uint64 i = 0; i < candidates->numvals && !done; i++)
		{
			MemoryContext oldcxt;
			bool		isnull;
			text	   *stream_id;
			int64		n;

			CHECK_FOR_INTERRUPTS();
			if (removed >= batch_size)
			{
				*complete = false;
				done = true;
				break;
			}
			MemoryContextReset(cxt);
			oldcxt = MemoryContextSwitchTo(cxt);
			stream_id = DatumGetTextPP(SPI_getbinval(candidates->vals[i], candidates->tupdesc,
													 1, &isnull));
			stream_id = (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(stream_id));
			MemoryContextSwitchTo(oldcxt);

			n = es_retain_stream(cat, stream_id, batch_size - removed);
			if (n < 0)
			{
				*complete = false;
				continue;
			}
			if (n >= batch_size - removed)
				*complete = false;
			removed += n;
		}
		SPI_freetuptable(candidates);
	}
	SPI_cursor_close(portal);
	es_spi_end(&g);
	MemoryContextDelete(cxt);

	return removed;
}

/*
 * Archive at most max_streams streams for the archive policies; returns
 * the number archived.  A policy's run finds its inactive streams with one
 * scan of the hot table (every inactive_for / 10, at most hourly) and
 * archives them over as many steps as it takes; each stream is checked
 * again under its lock.
 *
 * The policies and their queue of candidates are tables the worker reads
 * and writes a few rows of per step: that is SPI's (not a hot path).  The
 * streams are archived in C.
 */
int64
es_archive_step(const EsCatalog *cat, int max_streams)
{
	Portal		portal;
	EsGuard		g;
	int64		total = 0;
	bool		done = false;

	es_spi_begin(&g, InvalidOid);

	/*
	 * Lock each policy as the loop reaches it, skipping one a client holds
	 * (drop_archive_policy): the worker never waits for a policy row, so a
	 * client changing several policies cannot deadlock with it.
	 */
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT p.name, p.inactive_for, p.stream_prefix,"
									   "       p.last_run_at OPERATOR(pg_catalog.>)"
									   "         (pg_catalog.now() OPERATOR(pg_catalog.-)"
									   "          LEAST(p.inactive_for OPERATOR(pg_catalog./) 10, interval '1 hour'))"
									   "  FROM eventstore.archive_policies p"
									   " ORDER BY p.last_run_at NULLS FIRST, p.name"
									   "   FOR UPDATE SKIP LOCKED",
									   0, NULL, NULL, NULL, false, 0);
	while (!done)
	{
		SPITupleTable *policies;

		SPI_cursor_fetch(portal, true, ES_STEP_FETCH);
		policies = SPI_tuptable;
		if (policies->numvals == 0)
		{
			SPI_freetuptable(policies);
			break;
		}
		for (uint64 i = 0; i < policies->numvals; i++)
		{
			HeapTuple	tup = policies->vals[i];
			TupleDesc	desc = policies->tupdesc;
			bool		isnull;
			Datum		name = SPI_getbinval(tup, desc, 1, &isnull);
			Datum		inactive_for = SPI_getbinval(tup, desc, 2, &isnull);
			Datum		prefix = SPI_getbinval(tup, desc, 3, &isnull);
			bool		no_prefix = isnull;
			bool		not_due;
			bool		queued;
			SPITupleTable *streams;

			CHECK_FOR_INTERRUPTS();
			if (total >= max_streams)
			{
				done = true;
				break;
			}
			not_due = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull)) && !isnull;

			{
				Oid			texttype = TEXTOID;

				es_spi_exec("SELECT EXISTS (SELECT FROM eventstore.archive_candidates ac"
							"                WHERE ac.policy OPERATOR(pg_catalog.=) $1)",
							1, &texttype, &name, SPI_OK_SELECT);
				queued = es_spi_bool(0, 1);
				SPI_freetuptable(SPI_tuptable);
			}
			if (!queued)
			{
				Datum		args[3] = {name, inactive_for, prefix};
				Oid			types[3] = {TEXTOID, INTERVALOID, TEXTOID};
				char		nulls[3] = {' ', ' ', no_prefix ? 'n' : ' '};

				if (not_due)
					continue;
				if (SPI_execute_with_args("INSERT INTO eventstore.archive_candidates (policy, stream_id)"
										  "     SELECT $1, i FROM eventstore._inactive_streams($2, $3, NULL) i",
										  3, types, args, nulls, false, 0) != SPI_OK_INSERT)
					elog(ERROR, "could not queue the streams of an archive policy");
				es_spi_exec("UPDATE eventstore.archive_policies ap"
							"   SET last_run_at = pg_catalog.now(), last_archived = 0"
							" WHERE ap.name OPERATOR(pg_catalog.=) $1",
							1, types, args, SPI_OK_UPDATE);
			}

			{
				Datum		args[2] = {name, Int64GetDatum(max_streams - total)};
				Oid			types[2] = {TEXTOID, INT8OID};

				es_spi_exec("DELETE FROM eventstore.archive_candidates ac"
							" WHERE ac.policy OPERATOR(pg_catalog.=) $1"
							"   AND ac.stream_id OPERATOR(pg_catalog.=) ANY (SELECT ac2.stream_id"
							"                          FROM eventstore.archive_candidates ac2"
							"                         WHERE ac2.policy OPERATOR(pg_catalog.=) $1"
							"                         ORDER BY ac2.stream_id LIMIT $2)"
							" RETURNING ac.stream_id",
							2, types, args, SPI_OK_DELETE_RETURNING);
				streams = SPI_tuptable;
			}
			for (uint64 j = 0; j < streams->numvals; j++)
			{
				text	   *stream_id;
				Interval   *inactive = DatumGetIntervalP(inactive_for);

				CHECK_FOR_INTERRUPTS();
				stream_id = DatumGetTextPP(SPI_getbinval(streams->vals[j], streams->tupdesc,
														 1, &isnull));
				if (es_archive_stream(cat, stream_id, false, true, inactive) > 0)
				{
					Oid			texttype = TEXTOID;

					total++;
					es_spi_exec("UPDATE eventstore.archive_policies ap"
								"   SET last_archived = ap.last_archived OPERATOR(pg_catalog.+) 1"
								" WHERE ap.name OPERATOR(pg_catalog.=) $1",
								1, &texttype, &name, SPI_OK_UPDATE);
				}
			}
			SPI_freetuptable(streams);
		}
		SPI_freetuptable(policies);
	}
	SPI_cursor_close(portal);
	es_spi_end(&g);

	return total;
}

/*
 * eventstore._retention_step(batch_size, after_position,
 *							   OUT removed bigint, OUT complete boolean)
 */
PG_FUNCTION_INFO_V1(eventstore_retention_step);
Datum
eventstore_retention_step(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat = es_lifecycle_catalog(NULL, false);
	Datum		values[2];
	bool		nulls[2] = {false, false};
	bool		complete;

	values[0] = Int64GetDatum(es_retention_step(cat, PG_GETARG_INT32(0), PG_GETARG_INT64(1),
												&complete));
	values[1] = BoolGetDatum(complete);
	PG_RETURN_DATUM(es_result_row(fcinfo, values, nulls));
}

/*
 * eventstore._archive_step(max_streams) returns bigint
 */
PG_FUNCTION_INFO_V1(eventstore_archive_step);
Datum
eventstore_archive_step(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(es_archive_step(es_lifecycle_catalog(NULL, false), PG_GETARG_INT32(0)));
}
