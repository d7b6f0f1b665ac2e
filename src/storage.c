/*-------------------------------------------------------------------------
 *
 * storage.c
 *	  The ground every path stands on: the per-stream lock, the one scan
 *	  of stored events (a stream by version, the global log by position),
 *	  the head of a stream, and (0.9.0) locking and writing rows of the
 *	  extension's own tables without a query.  Appends, reads, folds,
 *	  projections, subscriptions and the lifecycle functions all use these;
 *	  they call nothing above.
 *
 * src/storage.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "eventstore.h"

/*
 * Take the transaction-scoped lock that serialises appends to one stream
 * (and the changes of its lifecycle state).  Two streams whose ids hash
 * alike merely serialise; nothing fails.  Without wait, returns false when
 * the lock is busy.
 */
bool
es_lock_stream(text *stream_id, bool wait)
{
	LOCKTAG		tag;
	uint64		hash;

	hash = hash_bytes_extended((const unsigned char *) VARDATA_ANY(stream_id),
							   VARSIZE_ANY_EXHDR(stream_id), 0);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 (uint32) (hash >> 32), (uint32) hash,
						 ES_ADVISORY_LOCK_CLASS);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * An ordered scan of stored rows through an index led by stream_id, by
 * stream_version: one stream's events in eventstore.events or
 * eventstore.archived_events.  Both bounds are inclusive; from_version <= 0
 * and to_version = PG_INT64_MAX leave their side open (versions start at 1),
 * and with both open the scan fits any index whose first column is the
 * stream id, such as the primary key of eventstore.streams.
 *
 * With a slot, the rows are read into it, and it is only cleared at the
 * end (the append path reuses one); without, the scan makes its own.
 */
void
es_scan_stream_begin(EsEventScan *scan, Relation heap, Relation index,
					 Snapshot snapshot, text *stream_id,
					 int64 from_version, int64 to_version,
					 ScanDirection direction, TupleTableSlot *slot)
{
	ScanKeyData keys[3];
	int			nkeys = 0;

	ScanKeyEntryInitialize(&keys[nkeys++], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(stream_id));
	if (from_version > 0)
		ScanKeyEntryInitialize(&keys[nkeys++], 0, 2, BTGreaterEqualStrategyNumber,
							   InvalidOid, InvalidOid, F_INT8GE,
							   Int64GetDatum(from_version));
	if (to_version < PG_INT64_MAX)
		ScanKeyEntryInitialize(&keys[nkeys++], 0, 2, BTLessEqualStrategyNumber,
							   InvalidOid, InvalidOid, F_INT8LE,
							   Int64GetDatum(to_version));
	es_scan_begin(scan, heap, index, snapshot, keys, nkeys, direction, slot);
}

/*
 * The same over the global log: eventstore.events through its primary key
 * (global_position), from_position through to_position, both inclusive.
 * Callers hold after-a-position bounds; they pass after + 1, which cannot
 * overflow as long as after is below to_position.
 */
void
es_scan_positions_begin(EsEventScan *scan, Relation heap, Relation index,
						Snapshot snapshot, int64 from_position, int64 to_position,
						ScanDirection direction, TupleTableSlot *slot)
{
	ScanKeyData keys[2];

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTGreaterEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8GE, Int64GetDatum(from_position));
	ScanKeyEntryInitialize(&keys[1], 0, 1, BTLessEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8LE, Int64GetDatum(to_position));
	es_scan_begin(scan, heap, index, snapshot, keys, 2, direction, slot);
}

/*
 * The highest position stored in an events table (or one of its shards)
 * at or below "upto", as "snapshot" sees it; 0 when there is none.
 */
int64
es_highest_position(Oid events_relid, Oid position_index_relid, Snapshot snapshot, int64 upto)
{
	Relation	heap;
	Relation	index;
	EsEventScan scan;
	TupleTableSlot *slot;
	int64		highest = 0;

	heap = table_open(events_relid, AccessShareLock);
	index = index_open(position_index_relid, AccessShareLock);
	es_scan_positions_begin(&scan, heap, index, snapshot, 1, upto,
							BackwardScanDirection, NULL);
	if ((slot = es_scan_next(&scan)) != NULL)
	{
		bool		isnull;

		highest = DatumGetInt64(slot_getattr(slot, Anum_es_global_position, &isnull));
	}
	es_scan_end(&scan);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	return highest;
}

/*
 * The row of one event id in eventstore.event_ids (0.6.0), through its
 * primary key: at most one.
 */
void
es_scan_event_id_begin(EsEventScan *scan, Relation heap, Relation index,
					   Snapshot snapshot, const pg_uuid_t *event_id,
					   TupleTableSlot *slot)
{
	ScanKeyData key;

	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_UUID_EQ, UUIDPGetDatum(event_id));
	es_scan_begin(scan, heap, index, snapshot, &key, 1, ForwardScanDirection, slot);
}

/*
 * The rows of any table through one of its indexes, with the caller's keys
 * (the subscriptions' tables, subscription.c): what the scans above are
 * made of.
 */
void
es_scan_begin(EsEventScan *scan, Relation heap, Relation index, Snapshot snapshot,
			  ScanKey keys, int nkeys, ScanDirection direction, TupleTableSlot *slot)
{
	scan->cxt = CurrentMemoryContext;
	scan->own_slot = (slot == NULL);
	scan->slot = slot ? slot : table_slot_create(heap, NULL);
	scan->direction = direction;
	scan->desc = es_index_beginscan(heap, index, snapshot, nkeys, 0);
	/* the index scan keeps its own copy of the keys */
	index_rescan(scan->desc, keys, nkeys, NULL, 0);
}

/*
 * The next row in the scan's direction, in scan->slot, or NULL at the end.
 * Loops over many rows check for interrupts themselves.
 *
 * The index AM allocates some of the scan's state lazily, in the memory
 * context current at the call (btgettuple: the array of killed items, the
 * first time a row turns out dead to everyone), keeps pointing at it and
 * frees it at index_endscan().  So the scan steps in the context it began
 * in, which lives as long as the scan, never in the caller's: read_stream
 * is called once per row in a context reset between rows, and a step there
 * left the scan writing into memory already given back to malloc.
 */
TupleTableSlot *
es_scan_next(EsEventScan *scan)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(scan->cxt);
	bool		found;

	found = index_getnext_slot(scan->desc, scan->direction, scan->slot);
	MemoryContextSwitchTo(oldcxt);
	return found ? scan->slot : NULL;
}

void
es_scan_end(EsEventScan *scan)
{
	index_endscan(scan->desc);
	if (scan->own_slot)
		ExecDropSingleTupleTableSlot(scan->slot);
	else
		ExecClearTuple(scan->slot);
	scan->desc = NULL;
	scan->slot = NULL;
}

/*
 * The version of the newest event of a stream visible to "snapshot", 0 when
 * there is none: one backward step of the (stream_id, stream_version) index.
 * Used with SnapshotSelf by appends and with the caller's MVCC snapshot by
 * eventstore.stream_version().
 */
int64
es_stream_head(Relation heap, Relation stream_index, text *stream_id,
			   Snapshot snapshot, TupleTableSlot *slot)
{
	EsEventScan scan;
	int64		version = 0;

	es_scan_stream_begin(&scan, heap, stream_index, snapshot, stream_id,
						 0, PG_INT64_MAX, BackwardScanDirection, slot);
	if (es_scan_next(&scan))
	{
		bool		isnull;

		version = DatumGetInt64(slot_getattr(scan.slot, Anum_es_stream_version, &isnull));
		Assert(!isnull);
	}
	es_scan_end(&scan);

	return version;
}

/*
 * Writing rows of the extension's own tables without a query
 * (subscription.c's usual fetch and ack).  These write the heap and its
 * indexes as an INSERT, UPDATE or DELETE would, but evaluate no CHECK
 * constraint and fire no trigger: the caller writes only values it has
 * checked against the table's constraints itself.  (Every statement
 * evaluates a table's CHECKs from their stored text again, which cost a
 * fetch more than the rest of its update.)  Unique indexes are checked.
 */

/* Begin writing rows of rel: a short-lived executor state for its indexes. */
void
es_rows_begin(EsRowWriter *w, Relation rel)
{
	w->rel = rel;
	w->estate = CreateExecutorState();
	es_init_range_table(w->estate, rel, RowExclusiveLock);
	w->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(w->rri, rel, 1, NULL, 0);
	ExecOpenIndices(w->rri, false);
}

/* Insert the row in "slot" (a slot of the table's own kind). */
void
es_rows_insert(EsRowWriter *w, TupleTableSlot *slot)
{
	ResetPerTupleExprContext(w->estate);
	table_tuple_insert(w->rel, slot, GetCurrentCommandId(true), 0, NULL);
	if (w->rri->ri_NumIndices > 0)
		list_free(es_insert_index_tuples_update(w->rri, slot, w->estate, false, false));
}

/*
 * Replace the row at "tid", which this transaction has locked (so no other
 * one can have changed it), by the one in "slot".
 */
void
es_rows_update(EsRowWriter *w, ItemPointer tid, TupleTableSlot *slot)
{
	ES_UPDATE_INDEXES update_indexes;

	ResetPerTupleExprContext(w->estate);
	simple_table_tuple_update(w->rel, tid, slot, GetActiveSnapshot(), &update_indexes);
	if (w->rri->ri_NumIndices > 0 && es_update_needs_indexes(update_indexes))
		list_free(es_insert_index_tuples_update(w->rri, slot, w->estate, true,
												es_update_only_summarizing(update_indexes)));
}

void
es_rows_end(EsRowWriter *w)
{
	ExecCloseIndices(w->rri);
	FreeExecutorState(w->estate);
	w->estate = NULL;
	w->rri = NULL;
}

/*
 * Lock the row at *tid as a statement's FOR UPDATE (or FOR NO KEY UPDATE)
 * would, waiting for its writer (or, without wait, as SKIP LOCKED: false
 * when another transaction holds it): true when it is locked, in "slot" as it
 * is now, and *tid where it is now.  Under READ COMMITTED a row updated
 * meanwhile is followed to its newest version, which the caller checks
 * again; under REPEATABLE READ and SERIALIZABLE, and for a row deleted
 * meanwhile, false (the caller takes the way of the statements, which
 * report it as they would).
 */
bool
es_row_lock(Relation rel, ItemPointer tid, Snapshot snapshot, TupleTableSlot *slot,
			LockTupleMode mode, bool wait)
{
	TM_FailureData tmfd;
	TM_Result	result;

	result = table_tuple_lock(rel, tid, snapshot, slot, GetCurrentCommandId(true), mode,
							  wait ? LockWaitBlock : LockWaitSkip,
							  IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
							  &tmfd);
	if (result != TM_Ok)
		return false;
	*tid = slot->tts_tid;
	return true;
}
