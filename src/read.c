/*-------------------------------------------------------------------------
 *
 * read.c
 *	  Reading streams: eventstore.read_stream() and eventstore.stream_version().
 *
 * Reads are direct scans of the (stream_id, stream_version) index under the
 * caller's snapshot, so they see exactly what a SELECT in the same statement
 * would, including the transaction's own appends.  They honour the stream's
 * lifecycle state and settings (lifecycle.c): a deleted stream reads as
 * absent, events that max_age, max_count or truncate_before exclude are
 * skipped before the worker has removed them, and an archived stream is
 * read from the archive.  Rows go into the
 * executor's tuplestore, which spills to disk past work_mem: reading a
 * million-event stream does not hold it in memory.
 *
 * src/read.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "eventstore.h"

/*
 * Result memory.
 *
 * A set-returning function in FROM hands its rows to the executor in a
 * tuplestore.  Built in per-query memory, a page of 1,000 events (some
 * 300 kB) is malloc'd and freed again by every call, and glibc returns it
 * to the kernel each time: page faults cost more than the read itself
 * (measured: a read_all page took four times as long as with trimming off).
 * So the tuplestores live in one backend-lifetime context whose first block
 * (ES_READ_KEEP bytes) survives resets.  Each call registers a callback on
 * its query's memory; when the last query that holds a tuplestore of ours
 * has ended -- normally or by error -- the context is reset.
 */
#define ES_READ_KEEP	(1024 * 1024)

static MemoryContext es_read_cxt = NULL;
static int	es_read_live = 0;

static void
es_read_release(void *arg)
{
	Assert(es_read_live > 0);
	if (--es_read_live == 0)
		MemoryContextReset(es_read_cxt);
}

/* InitMaterializedSRF(), with the tuplestore in es_read_cxt. */
static void
es_init_result(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext per_query;
	MemoryContextCallback *callback;
	MemoryContext oldcxt;
	Tuplestorestate *tupstore;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (!(rsinfo->allowedModes & SFRM_Materialize) || rsinfo->expectedDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));

	if (es_read_cxt == NULL)
		es_read_cxt = AllocSetContextCreate(TopMemoryContext,
											"eventstore read results",
											ES_READ_KEEP, ES_READ_KEEP,
											ALLOCSET_DEFAULT_MAXSIZE);

	per_query = rsinfo->econtext->ecxt_per_query_memory;
	callback = MemoryContextAlloc(per_query, sizeof(MemoryContextCallback));
	callback->func = es_read_release;
	callback->arg = NULL;
	MemoryContextRegisterResetCallback(per_query, callback);
	es_read_live++;

	oldcxt = MemoryContextSwitchTo(es_read_cxt);
	tupstore = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0,
									 false, work_mem);
	MemoryContextSwitchTo(oldcxt);

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	oldcxt = MemoryContextSwitchTo(per_query);
	rsinfo->setDesc = CreateTupleDescCopy(rsinfo->expectedDesc);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Append one events-table row, in eventstore.event order, to a tuplestore.
 * Out-of-line (TOASTed) values are fetched now: the rows may outlive the
 * scan that found them.  Allocations go to the caller's per-row context.
 */
static void
es_put_event(Tuplestorestate *tupstore, TupleDesc tupdesc, TupleTableSlot *slot)
{
	Datum		values[Natts_es_event_type];
	bool		nulls[Natts_es_event_type];

	slot_getallattrs(slot);
	es_event_to_output(slot->tts_values, slot->tts_isnull, values, nulls);

	for (int i = 0; i < Natts_es_event_type; i++)
	{
		if (!nulls[i] && TupleDescAttr(tupdesc, i)->attlen == -1 &&
			VARATT_IS_EXTERNAL(DatumGetPointer(values[i])))
			values[i] = PointerGetDatum(detoast_external_attr((struct varlena *)
															  DatumGetPointer(values[i])));
	}

	tuplestore_putvalues(tupstore, tupdesc, values, nulls);
}

/*
 * eventstore.read_stream(stream_id, from_version, max_count, backward)
 *	  returns setof eventstore.event
 *
 * Forward: versions >= from_version (NULL: from the start), ascending.
 * Backward: versions <= from_version (NULL: from the end), descending.
 */
PG_FUNCTION_INFO_V1(eventstore_read_stream);
Datum
eventstore_read_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	bool		has_from = !PG_ARGISNULL(1);
	int64		from_version = has_from ? PG_GETARG_INT64(1) : 0;
	bool		has_max = !PG_ARGISNULL(2);
	int64		max_count = has_max ? PG_GETARG_INT64(2) : 0;
	bool		backward = !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const EsCatalog *cat;
	Relation	heap;
	Relation	index;
	EsEventScan scan;
	TupleTableSlot *slot;
	MemoryContext row_cxt;
	int64		count = 0;
	EsStreamView view;

	if (has_from && from_version < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_version must not be negative")));
	if (has_max && max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must not be negative")));

	es_init_result(fcinfo);

	if (has_max && max_count == 0)
		return (Datum) 0;
	/* Nothing lies at or below version 0. */
	if (backward && has_from && from_version == 0)
		return (Datum) 0;

	cat = es_stream_catalog(es_catalog(), stream_id);
	es_stream_view(cat, stream_id, GetActiveSnapshot(), false, &view);
	if (view.absent)
		return (Datum) 0;
	/* forward, start at the lowest readable version */
	if (!backward && (!has_from || from_version < view.min_version))
	{
		from_version = view.min_version;
		has_from = (from_version > 1);
	}

	heap = table_open(view.heap_relid, AccessShareLock);
	index = index_open(view.index_relid, AccessShareLock);

	row_cxt = AllocSetContextCreate(CurrentMemoryContext,
									"eventstore read_stream row",
									ALLOCSET_SMALL_SIZES);

	/* backward, from_version is the highest version read */
	es_scan_stream_begin(&scan, heap, index, GetActiveSnapshot(), stream_id,
						 (has_from && !backward) ? from_version : 0,
						 (has_from && backward) ? from_version : PG_INT64_MAX,
						 backward ? BackwardScanDirection : ForwardScanDirection, NULL);

	while ((!has_max || count < max_count) &&
		   (slot = es_scan_next(&scan)) != NULL)
	{
		MemoryContext oldcxt;

		CHECK_FOR_INTERRUPTS();

		if (view.rules.found)
		{
			bool		isnull;
			int64		version = DatumGetInt64(slot_getattr(slot, Anum_es_stream_version, &isnull));
			TimestampTz created_at = DatumGetTimestampTz(slot_getattr(slot, Anum_es_created_at, &isnull));

			/* backward, everything below the lowest readable version is gone */
			if (version < view.min_version)
				break;
			if (es_view_hides(&view, version, created_at))
				continue;
		}

		oldcxt = MemoryContextSwitchTo(row_cxt);
		es_put_event(rsinfo->setResult, rsinfo->setDesc, slot);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(row_cxt);
		count++;
	}

	es_scan_end(&scan);
	MemoryContextDelete(row_cxt);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);

	return (Datum) 0;
}

/*
 * eventstore.stream_version(stream_id) returns bigint: the version of the
 * stream's newest event visible to the caller, 0 when it has none or is
 * deleted.  Events removed by retention do not lower it: numbering goes on.
 */
PG_FUNCTION_INFO_V1(eventstore_stream_version);
Datum
eventstore_stream_version(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_stream_id_arg(fcinfo, 0);
	EsStreamView view;

	es_stream_view(es_stream_catalog(es_catalog(), stream_id), stream_id,
				   GetActiveSnapshot(), true, &view);

	PG_RETURN_INT64(view.version);
}

/*
 * eventstore.read_all(after_position, max_count, event_types, stream_prefix)
 *	  returns setof eventstore.event
 *
 * Events with after_position < global_position <= the safe horizon
 * (horizon.c), ascending, at most max_count of them that match the filters.
 * A follower that passes back the last position it received sees every
 * committed event exactly once.
 */
PG_FUNCTION_INFO_V1(eventstore_read_all);
Datum
eventstore_read_all(PG_FUNCTION_ARGS)
{
	int64		after = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0);
	bool		has_max = !PG_ARGISNULL(1);
	int64		max_count = has_max ? PG_GETARG_INT64(1) : 0;
	ArrayType  *types_array = PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2);
	text	   *prefix = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const EsCatalog *cat;
	Snapshot	snapshot;
	int64		horizon;
	Relation	heap;
	Relation	index;
	EsEventScan scan;
	TupleTableSlot *slot;
	MemoryContext row_cxt;
	int64		count = 0;
	EsFilter	filter = {0};
	EsViewCache *views;

	if (after < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_position must not be negative")));
	if (has_max && max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must not be negative")));
	es_filter_from_args(&filter, types_array, prefix);

	es_init_result(fcinfo);

	if (has_max && max_count == 0)
		return (Datum) 0;
	/* An empty list of types matches nothing. */
	if (filter.has_types && filter.ntypes == 0)
		return (Datum) 0;

	cat = es_catalog();
	es_require_single_server(cat, "read_all");
	horizon = es_reader_horizon(cat, &snapshot);
	if (horizon <= after)
	{
		UnregisterSnapshot(snapshot);
		return (Datum) 0;
	}

	heap = table_open(cat->events_relid, AccessShareLock);
	index = index_open(cat->position_index_relid, AccessShareLock);

	row_cxt = AllocSetContextCreate(CurrentMemoryContext,
									"eventstore read_all row",
									ALLOCSET_SMALL_SIZES);

	views = es_view_cache_create(cat, snapshot);

	es_scan_positions_begin(&scan, heap, index, snapshot, after + 1, horizon,
							ForwardScanDirection, NULL);

	while ((!has_max || count < max_count) &&
		   (slot = es_scan_next(&scan)) != NULL)
	{
		MemoryContext oldcxt;
		bool		isnull;
		text	   *stream_id;

		CHECK_FOR_INTERRUPTS();

		oldcxt = MemoryContextSwitchTo(row_cxt);
		stream_id = DatumGetTextPP(slot_getattr(slot, Anum_es_stream_id, &isnull));

		if (filter.prefix != NULL || filter.has_types)
		{
			text	   *type = DatumGetTextPP(slot_getattr(slot, Anum_es_event_type, &isnull));

			if (!es_filter_matches(&filter, VARDATA_ANY(stream_id), VARSIZE_ANY_EXHDR(stream_id),
								   VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type)))
				goto next;
		}

		/* events of deleted streams, or outside their retention settings */
		if (es_view_cache_hides(views, stream_id,
								DatumGetInt64(slot_getattr(slot, Anum_es_stream_version, &isnull)),
								DatumGetTimestampTz(slot_getattr(slot, Anum_es_created_at, &isnull))))
			goto next;

		es_put_event(rsinfo->setResult, rsinfo->setDesc, slot);
		count++;
next:
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(row_cxt);
	}

	es_scan_end(&scan);
	es_view_cache_destroy(views);
	MemoryContextDelete(row_cxt);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	UnregisterSnapshot(snapshot);

	return (Datum) 0;
}

/*
 * eventstore.global_horizon() returns bigint: the position up to which the
 * global log is complete for this caller -- what read_all would read up to
 * now.  A filtered follower that got fewer than max_count events from a
 * read_all called after this may move its checkpoint up to this value.
 */
PG_FUNCTION_INFO_V1(eventstore_global_horizon);
Datum
eventstore_global_horizon(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat = es_catalog();
	Snapshot	snapshot;
	int64		horizon;

	es_require_single_server(cat, "global_horizon");
	horizon = es_reader_horizon(cat, &snapshot);
	UnregisterSnapshot(snapshot);

	PG_RETURN_INT64(horizon);
}
