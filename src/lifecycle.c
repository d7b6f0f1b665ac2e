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
 * bounded batches (eventstore._retention_step).  The removal records the
 * highest version it removed in the row, in the same transaction, so the
 * numbering of a stream goes on even when no event of it is left.
 *
 * Archived streams keep their events, unchanged, in
 * eventstore.archived_events; read_stream reads them there.  Rows move
 * between the two tables below the executor (eventstore._move_stream),
 * which is how they get past the triggers that keep both tables
 * append-only for SQL.
 *
 * The SQL-level functions (delete_stream, archive_stream, ...) are in the
 * extension script; this file holds the primitives they use and the reads
 * of the state.
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
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "storage/lmgr.h"
#include "utils/inval.h"
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

static void
es_scan_key_stream(ScanKey key, Relation index, text *stream_id)
{
	ScanKeyEntryInitialize(key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(stream_id));
}

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
	ScanKeyData key;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	const EsStreamsColumns *att = &cat->streams_att;

	memset(rules, 0, sizeof(EsStreamRules));
	if (!OidIsValid(cat->streams_relid))
		return;

	heap = table_open(cat->streams_relid, AccessShareLock);
	index = index_open(cat->streams_pkey_relid, AccessShareLock);
	slot = table_slot_create(heap, NULL);
	es_scan_key_stream(&key, index, stream_id);

	scan = index_beginscan(heap, index, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
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
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
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
			view->cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
																   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
																   IntervalPGetDatum(&r->max_age)));
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
		{
			Relation	heap = table_open(view->heap_relid, AccessShareLock);
			Relation	index = index_open(view->index_relid, AccessShareLock);
			TupleTableSlot *slot = table_slot_create(heap, NULL);

			head = es_stream_head(heap, index, stream_id, snapshot, slot);
			ExecDropSingleTupleTableSlot(slot);
			index_close(index, AccessShareLock);
			table_close(heap, AccessShareLock);
		}

		if (r->removed_through > head)
			head = r->removed_through;
		if (r->deleted && r->deleted_version > head)
			head = r->deleted_version;
		view->has_head = true;
		view->head = head;
		if (r->deleted && head == r->deleted_version)
			view->absent = true;	/* nothing appended since the delete */
		if (r->max_count > 0 && head - r->max_count + 1 > view->min_version)
			view->min_version = head - r->max_count + 1;
		view->version = view->absent ? 0 : head;
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

static const EsCatalog *
es_lifecycle_catalog(void)
{
	const EsCatalog *cat = es_catalog();

	if (!OidIsValid(cat->streams_relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream lifecycle needs eventstore version 0.3.0 or later"),
				 errhint("Run ALTER EXTENSION eventstore UPDATE.")));
	return cat;
}

/*
 * eventstore.stream_info(stream_id) returns eventstore.stream_info
 */
PG_FUNCTION_INFO_V1(eventstore_stream_info);
Datum
eventstore_stream_info(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	const EsCatalog *cat = es_lifecycle_catalog();
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

/*
 * eventstore._stored_head(stream_id, archived) returns bigint
 */
PG_FUNCTION_INFO_V1(eventstore_stored_head);
Datum
eventstore_stored_head(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	bool		archived = PG_GETARG_BOOL(1);
	const EsCatalog *cat = es_lifecycle_catalog();
	Snapshot	snapshot = es_latest_snapshot();
	Relation	heap;
	Relation	index;
	TupleTableSlot *slot;
	int64		head;

	heap = table_open(archived ? cat->archive_relid : cat->events_relid, AccessShareLock);
	index = index_open(archived ? cat->archive_index_relid : cat->stream_index_relid,
					   AccessShareLock);
	slot = table_slot_create(heap, NULL);
	head = es_stream_head(heap, index, stream_id, snapshot, slot);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	UnregisterSnapshot(snapshot);

	PG_RETURN_INT64(head);
}

/*
 * eventstore._move_stream(stream_id, to_archive) returns bigint
 *
 * Moves every stored event of the stream from the hot table to the archive
 * or back, unchanged: each row is inserted into the target (heap and
 * indexes; out-of-line values are copied into the target's TOAST table)
 * and then deleted from the source.  No trigger fires: the events are not
 * new.  The caller holds the stream's lock and its row in
 * eventstore.streams, so neither an append nor the worker's retention
 * touches the stream meanwhile.
 */
PG_FUNCTION_INFO_V1(eventstore_move_stream);
Datum
eventstore_move_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	bool		to_archive = PG_GETARG_BOOL(1);
	const EsCatalog *cat = es_lifecycle_catalog();
	Snapshot	snapshot;
	Relation	src;
	Relation	src_index;
	Relation	dst;
	EState	   *estate;
	RangeTblEntry *rte;
	ResultRelInfo *rri;
	TupleTableSlot *src_slot;
	TupleTableSlot *dst_slot;
	ScanKeyData key;
	IndexScanDesc scan;
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
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(dst);
	rte->relkind = dst->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(estate, list_make1(rte));
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, dst, 1, NULL, 0);
	ExecOpenIndices(rri, false);

	src_slot = table_slot_create(src, NULL);
	dst_slot = table_slot_create(dst, NULL);
	es_scan_key_stream(&key, src_index, stream_id);
	scan = index_beginscan(src, src_index, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);

	while (index_getnext_slot(scan, ForwardScanDirection, src_slot))
	{
		CHECK_FOR_INTERRUPTS();
		ResetPerTupleExprContext(estate);

		ExecCopySlot(dst_slot, src_slot);
		table_tuple_insert(dst, dst_slot, cid, 0, NULL);
		if (rri->ri_NumIndices > 0)
			list_free(ExecInsertIndexTuples(rri, dst_slot, estate, false, false,
											NULL, NIL));
		simple_table_tuple_delete(src, &src_slot->tts_tid, snapshot);
		moved++;
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(src_slot);
	ExecDropSingleTupleTableSlot(dst_slot);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(dst, NoLock);
	index_close(src_index, NoLock);
	table_close(src, NoLock);
	UnregisterSnapshot(snapshot);

	PG_RETURN_INT64(moved);
}

/*
 * eventstore._remove_events(stream_id, archived, through_version,
 *							  created_before, max_rows,
 *							  OUT removed bigint, OUT last_version bigint)
 *
 * Removes, oldest first, the stored events of a stream whose version is at
 * most through_version or that were created before created_before (either
 * may be NULL), at most max_rows of them (NULL: no limit).  Stops at the
 * first event that is kept: retention removes a stream's oldest events.
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
	const EsCatalog *cat = es_lifecycle_catalog();
	Snapshot	snapshot;
	Relation	heap;
	Relation	index;
	TupleTableSlot *slot;
	ScanKeyData key;
	IndexScanDesc scan;
	int64		removed = 0;
	int64		last_version = 0;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	PreventCommandIfReadOnly("eventstore retention");
	snapshot = es_latest_snapshot();

	heap = table_open(archived ? cat->archive_relid : cat->events_relid, RowExclusiveLock);
	index = index_open(archived ? cat->archive_index_relid : cat->stream_index_relid,
					   RowExclusiveLock);
	slot = table_slot_create(heap, NULL);
	es_scan_key_stream(&key, index, stream_id);
	scan = index_beginscan(heap, index, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);

	while ((!has_max || removed < max_rows) &&
		   index_getnext_slot(scan, ForwardScanDirection, slot))
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

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	UnregisterSnapshot(snapshot);

	values[0] = Int64GetDatum(removed);
	values[1] = Int64GetDatum(last_version);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
