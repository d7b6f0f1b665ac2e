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
 * read from the archive.
 *
 * read_stream returns rows as it reads them (0.9.0): in FROM, a planner
 * hook makes it a custom scan whose rows point into the stored ones (no
 * tuplestore, no memory per row, no temporary file, and a query that stops
 * early stops the scan); called as a function it returns a row per call.
 * The other reads (read_all, read_partitions) put their rows into the
 * executor's tuplestore, which spills to disk past work_mem.
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
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "access/sysattr.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/optimizer.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
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
es_put_event(Tuplestorestate *tupstore, TupleDesc tupdesc, TupleTableSlot *slot,
			 const int32 *partition)
{
	Datum		values[Natts_es_event_type + 1];
	bool		nulls[Natts_es_event_type + 1];
	int			first = 0;

	/* read_partitions: the partition comes first */
	if (partition != NULL)
	{
		values[0] = Int32GetDatum(*partition);
		nulls[0] = false;
		first = 1;
	}
	es_event_values(slot, tupdesc, first, values, nulls);
	tuplestore_putvalues(tupstore, tupdesc, values, nulls);
}

/*
 * The columns of eventstore.event, in its order, of the events-table row in
 * "slot", as columns first to first + 7 of a result row of "tupdesc" (a
 * subscription's fetch adds its own after them).  Out-of-line values are
 * fetched now, into the current memory context.
 */
void
es_event_values(TupleTableSlot *slot, TupleDesc tupdesc, int first, Datum *values,
				bool *nulls)
{
	slot_getallattrs(slot);
	es_event_to_output(slot->tts_values, slot->tts_isnull, values + first, nulls + first);

	for (int i = first; i < first + Natts_es_event_type; i++)
	{
		if (!nulls[i] && TupleDescAttr(tupdesc, i)->attlen == -1 &&
			VARATT_IS_EXTERNAL(DatumGetPointer(values[i])))
			values[i] = PointerGetDatum(detoast_external_attr((struct varlena *)
															  DatumGetPointer(values[i])));
	}
}

/*
 * Reading one stream, a row at a time.
 *
 * An EsStreamRead holds what a read of one stream keeps open from one row
 * to the next: its relations, its index scan under a registered snapshot,
 * what the stream's lifecycle lets the caller see (lifecycle.c), and a
 * per-row memory context.  es_read_stream_open() checks the arguments and
 * opens it (NULL: nothing to read); es_read_stream_next() returns the next
 * visible row in read order (NULL at the end); es_read_stream_close()
 * releases it all, and does nothing the second time.  On an error nothing
 * needs closing: the resource owner releases the relations, buffer pins
 * and snapshot, and the memory goes with the query's.
 */
typedef struct EsStreamRead
{
	bool		open;
	Relation	heap;
	Relation	index;
	Snapshot	snapshot;
	EsEventScan scan;
	EsStreamView view;
	bool		has_max;
	int64		max_count;
	int64		count;
	MemoryContext row_cxt;
	/* the function's ValuePerCall protocol */
	ExprContext *econtext;		/* where es_read_stream_shutdown is registered */
	TupleDesc	tupdesc;		/* eventstore.event, blessed */
} EsStreamRead;

/*
 * Check read_stream's arguments (stream_id NULL when the argument is) and
 * open a read under "snapshot" in the current memory context, which must
 * live as long as the read (the stream id is copied there).  NULL when
 * there is nothing to read.
 */
static EsStreamRead *
es_read_stream_open(text *stream_id, bool has_from, int64 from_version,
					bool has_max, int64 max_count, bool backward, Snapshot snapshot)
{
	const EsCatalog *cat;
	EsStreamRead *r;
	EsStreamView view;

	if (stream_id == NULL)
		es_null_arg_error("stream_id");
	es_check_stream_id(stream_id);
	if (has_from && from_version < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_version must not be negative")));
	if (has_max && max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must not be negative")));

	if (has_max && max_count == 0)
		return NULL;
	/* Nothing lies at or below version 0. */
	if (backward && has_from && from_version == 0)
		return NULL;

	/* the scan key points at it from one row to the next */
	stream_id = (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(stream_id));

	cat = es_stream_catalog(es_catalog(), stream_id);
	es_stream_view(cat, stream_id, snapshot, false, &view);
	if (view.absent)
		return NULL;
	/* forward, start at the lowest readable version */
	if (!backward && (!has_from || from_version < view.min_version))
	{
		from_version = view.min_version;
		has_from = (from_version > 1);
	}

	r = palloc0(sizeof(EsStreamRead));
	r->view = view;
	r->has_max = has_max;
	r->max_count = max_count;
	r->row_cxt = AllocSetContextCreate(CurrentMemoryContext,
									   "eventstore read_stream row",
									   ALLOCSET_SMALL_SIZES);
	/* the statement's snapshot, held until the read is closed */
	r->snapshot = RegisterSnapshot(snapshot);
	r->heap = table_open(view.heap_relid, AccessShareLock);
	r->index = index_open(view.index_relid, AccessShareLock);

	/* backward, from_version is the highest version read */
	es_scan_stream_begin(&r->scan, r->heap, r->index, r->snapshot, stream_id,
						 (has_from && !backward) ? from_version : 0,
						 (has_from && backward) ? from_version : PG_INT64_MAX,
						 backward ? BackwardScanDirection : ForwardScanDirection, NULL);
	r->open = true;
	return r;
}

/* es_read_stream_open() with the arguments of a call of read_stream */
static EsStreamRead *
es_read_stream_open_fcinfo(FunctionCallInfo fcinfo)
{
	return es_read_stream_open(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0),
							   !PG_ARGISNULL(1), PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1),
							   !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2),
							   !PG_ARGISNULL(3) && PG_GETARG_BOOL(3),
							   GetActiveSnapshot());
}

/*
 * The next row of the read that the caller may see (in the scan's slot,
 * valid until the next call), NULL at the end.  The per-row context is
 * reset first: what the previous row left there is gone.
 */
static TupleTableSlot *
es_read_stream_next(EsStreamRead *r)
{
	TupleTableSlot *slot;

	MemoryContextReset(r->row_cxt);
	if (!r->open || (r->has_max && r->count >= r->max_count))
		return NULL;

	while ((slot = es_scan_next(&r->scan)) != NULL)
	{
		CHECK_FOR_INTERRUPTS();

		if (r->view.rules.found)
		{
			bool		isnull;
			int64		version = DatumGetInt64(slot_getattr(slot, Anum_es_stream_version, &isnull));
			TimestampTz created_at = DatumGetTimestampTz(slot_getattr(slot, Anum_es_created_at, &isnull));

			/* backward, everything below the lowest readable version is gone */
			if (version < r->view.min_version)
				return NULL;
			if (es_view_hides(&r->view, version, created_at))
				continue;
		}
		r->count++;
		return slot;
	}
	return NULL;
}

static void
es_read_stream_close(EsStreamRead *r)
{
	if (!r->open)
		return;
	r->open = false;
	es_scan_end(&r->scan);
	index_close(r->index, AccessShareLock);
	table_close(r->heap, AccessShareLock);
	UnregisterSnapshot(r->snapshot);
	MemoryContextReset(r->row_cxt);
}

/*
 * A query that stops calling the function before the end (LIMIT, a cursor
 * closed early, a rescan) shuts its expression context down: close the
 * read.
 */
static void
es_read_stream_shutdown(Datum arg)
{
	es_read_stream_close((EsStreamRead *) DatumGetPointer(arg));
}

/*
 * eventstore.read_stream(stream_id, from_version, max_count, backward)
 *	  returns setof eventstore.event
 *
 * Forward: versions >= from_version (NULL: from the start), ascending.
 * Backward: versions <= from_version (NULL: from the end), descending.
 *
 * Called in FROM, read_stream is planned as the custom scan below, which
 * hands the caller's plan the rows as it reads them.  Called as a function
 * (in a select list; in FROM WITH ORDINALITY or with arguments from a
 * LATERAL reference, or planned before this library was loaded), it
 * returns a row per call (ValuePerCall): in a select list the rows still
 * go one at a time; a FunctionScan collects them in its tuplestore.
 */
PG_FUNCTION_INFO_V1(eventstore_read_stream);
Datum
eventstore_read_stream(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	EsStreamRead *r;
	TupleTableSlot *slot;

	if (SRF_IS_FIRSTCALL())
	{
		ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
		MemoryContext oldcxt;
		TupleDesc	tupdesc;

		funcctx = SRF_FIRSTCALL_INIT();
		oldcxt = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		tupdesc = BlessTupleDesc(tupdesc);
		r = es_read_stream_open_fcinfo(fcinfo);
		if (r != NULL)
		{
			r->tupdesc = tupdesc;
			/* registered after funcapi's own callback: runs before it */
			r->econtext = rsinfo->econtext;
			RegisterExprContextCallback(r->econtext, es_read_stream_shutdown,
										PointerGetDatum(r));
		}
		funcctx->user_fctx = r;
		MemoryContextSwitchTo(oldcxt);
	}

	funcctx = SRF_PERCALL_SETUP();
	r = (EsStreamRead *) funcctx->user_fctx;
	if (r == NULL)
		SRF_RETURN_DONE(funcctx);

	slot = es_read_stream_next(r);
	if (slot != NULL)
	{
		Datum		values[Natts_es_event_type];
		bool		nulls[Natts_es_event_type];
		MemoryContext oldcxt = MemoryContextSwitchTo(r->row_cxt);
		Datum		result;

		slot_getallattrs(slot);
		es_event_to_output(slot->tts_values, slot->tts_isnull, values, nulls);
		/* fetches out-of-line values: the row outlives the scan's buffer */
		result = HeapTupleGetDatum(heap_form_tuple(r->tupdesc, values, nulls));
		MemoryContextSwitchTo(oldcxt);
		SRF_RETURN_NEXT(funcctx, result);
	}

	UnregisterExprContextCallback(r->econtext, es_read_stream_shutdown, PointerGetDatum(r));
	es_read_stream_close(r);
	SRF_RETURN_DONE(funcctx);
}

/*
 * read_stream in FROM as a custom scan.
 *
 * A set-returning function in FROM is a FunctionScan, which calls the
 * function to the end into a tuplestore before it returns a row: a long
 * stream spilled to temporary files, and the client waited for the whole
 * read.  A planner hook (set_rel_pathlist_hook) replaces the FunctionScan
 * path of a call of read_stream by a CustomScan path: the scan evaluates
 * the arguments when it starts, then returns each visible row as it reads
 * it, the values pointing into the stored row (the scan's buffer stays
 * pinned until the next row), so a read needs no memory per row and stops
 * when the query does (LIMIT, a cursor).  The scan's tuple is the columns
 * of eventstore.event and, when the query uses the whole row (a fold over
 * read_stream e, e::text), the row as a composite value, formed for it.
 *
 * The FunctionScan would check EXECUTE on read_stream; the custom scan
 * checks it when it starts (also under EXPLAIN).  Calls that keep the
 * FunctionScan: WITH ORDINALITY, ROWS FROM with several functions,
 * arguments that refer to another relation (LATERAL), and any plan made
 * before the library was loaded (without shared_preload_libraries, the
 * first query of a backend).
 */
#define ES_READ_SCAN_NAME	"eventstore read_stream"

typedef struct EsReadScanState
{
	CustomScanState css;
	Oid			funcid;
	List	   *args;			/* ExprStates of the four arguments */
	bool		whole_row;		/* the scan tuple's last column is the row */
	TupleDesc	event_desc;		/* eventstore.event, blessed (whole_row) */
	MemoryContext read_cxt;		/* the read: reset at a rescan */
	bool		started;
	EsStreamRead *read;
} EsReadScanState;

static set_rel_pathlist_hook_type es_prev_set_rel_pathlist = NULL;
static Plan *es_read_plan_path(PlannerInfo *root, RelOptInfo *rel, struct CustomPath *best_path,
							   List *tlist, List *clauses, List *custom_plans);
static Node *es_read_create_state(CustomScan *cscan);
static void es_read_begin(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *es_read_exec(CustomScanState *node);
static void es_read_end(CustomScanState *node);
static void es_read_rescan(CustomScanState *node);

static const CustomPathMethods es_read_path_methods = {
	.CustomName = ES_READ_SCAN_NAME,
	.PlanCustomPath = es_read_plan_path,
};
static const CustomScanMethods es_read_scan_methods = {
	.CustomName = ES_READ_SCAN_NAME,
	.CreateCustomScanState = es_read_create_state,
};
static const CustomExecMethods es_read_exec_methods = {
	.CustomName = ES_READ_SCAN_NAME,
	.BeginCustomScan = es_read_begin,
	.ExecCustomScan = es_read_exec,
	.EndCustomScan = es_read_end,
	.ReScanCustomScan = es_read_rescan,
};

/* Whether "funcid" is eventstore.read_stream (this library's C entry). */
static bool
es_is_read_stream(Oid funcid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	Form_pg_proc proc;
	bool		result = false;

	if (!HeapTupleIsValid(tup))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prolang == ClanguageId && proc->pronargs == 4 && proc->proretset &&
		strcmp(NameStr(proc->proname), "read_stream") == 0)
	{
		bool		isnull;
		Datum		src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
		char	   *nsp = get_namespace_name(proc->pronamespace);

		result = !isnull && nsp != NULL && strcmp(nsp, "eventstore") == 0 &&
			strcmp(TextDatumGetCString(src), "eventstore_read_stream") == 0;
	}
	ReleaseSysCache(tup);
	return result;
}

static void
es_read_set_rel_pathlist(PlannerInfo *root, RelOptInfo *rel, Index rti, RangeTblEntry *rte)
{
	RangeTblFunction *rtfunc;
	FuncExpr   *fexpr;
	CustomPath *cpath;
	Path	   *old;

	if (es_prev_set_rel_pathlist)
		es_prev_set_rel_pathlist(root, rel, rti, rte);

	if (rte->rtekind != RTE_FUNCTION || rte->funcordinality ||
		list_length(rte->functions) != 1 || rel->reloptkind != RELOPT_BASEREL ||
		!bms_is_empty(rel->lateral_relids) || rel->pathlist == NIL)
		return;
	rtfunc = linitial_node(RangeTblFunction, rte->functions);
	fexpr = (FuncExpr *) rtfunc->funcexpr;
	if (!IsA(fexpr, FuncExpr) || list_length(fexpr->args) != 4 || !es_is_read_stream(fexpr->funcid))
		return;

	old = (Path *) linitial(rel->pathlist);
	cpath = makeNode(CustomPath);
	cpath->path.pathtype = T_CustomScan;
	cpath->path.parent = rel;
	cpath->path.pathtarget = rel->reltarget;
	cpath->path.param_info = NULL;
	cpath->path.parallel_aware = false;
	cpath->path.parallel_safe = rel->consider_parallel;
	cpath->path.parallel_workers = 0;
	cpath->path.rows = rel->rows;
	/* rows come as they are read: none of the FunctionScan's startup */
	cpath->path.startup_cost = 0;
	cpath->path.total_cost = old->total_cost;
	cpath->path.pathkeys = NIL;
	cpath->flags = 0;
	cpath->custom_paths = NIL;
	cpath->custom_private = NIL;
	cpath->methods = &es_read_path_methods;

	/* the only way to scan it now */
	rel->pathlist = NIL;
	rel->partial_pathlist = NIL;
	add_path(rel, &cpath->path);
}

static Plan *
es_read_plan_path(PlannerInfo *root, RelOptInfo *rel, struct CustomPath *best_path,
				  List *tlist, List *clauses, List *custom_plans)
{
	RangeTblEntry *rte = planner_rt_fetch(rel->relid, root);
	FuncExpr   *fexpr = (FuncExpr *) linitial_node(RangeTblFunction, rte->functions)->funcexpr;
	CustomScan *cscan = makeNode(CustomScan);
	TupleDesc	desc = lookup_rowtype_tupdesc(fexpr->funcresulttype, -1);
	List	   *quals = extract_actual_clauses(clauses, false);
	List	   *scan_tlist = NIL;
	Bitmapset  *attrs = NULL;
	bool		whole_row;
	AttrNumber	resno = 1;

	/* whether the output or a condition uses the whole row */
	pull_varattnos((Node *) tlist, rel->relid, &attrs);
	pull_varattnos((Node *) quals, rel->relid, &attrs);
	whole_row = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, attrs);

	/* the scan tuple: every column of eventstore.event, then the row */
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) makeVar(rel->relid, i + 1, att->atttypid,
															  att->atttypmod, att->attcollation, 0),
											 resno++, NULL, false));
	}
	ReleaseTupleDesc(desc);
	if (whole_row)
		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) makeVar(rel->relid, 0, fexpr->funcresulttype,
															  -1, InvalidOid, 0),
											 resno++, NULL, false));

	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = quals;
	/* no relation to open: the scan tuple is described by custom_scan_tlist */
	cscan->scan.scanrelid = 0;
	cscan->flags = best_path->flags;
	cscan->custom_plans = NIL;
	cscan->custom_exprs = copyObject(fexpr->args);
	cscan->custom_private = list_make2(makeInteger(fexpr->funcid), makeBoolean(whole_row));
	cscan->custom_scan_tlist = scan_tlist;
	cscan->custom_relids = bms_make_singleton(rel->relid);
	cscan->methods = &es_read_scan_methods;
	return &cscan->scan.plan;
}

static Node *
es_read_create_state(CustomScan *cscan)
{
	EsReadScanState *st = (EsReadScanState *) newNode(sizeof(EsReadScanState), T_CustomScanState);

	st->css.methods = &es_read_exec_methods;
	st->funcid = intVal(linitial(cscan->custom_private));
	st->whole_row = boolVal(lsecond(cscan->custom_private));
	return (Node *) st;
}

static void
es_read_begin(CustomScanState *node, EState *estate, int eflags)
{
	EsReadScanState *st = (EsReadScanState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;

	/* what the FunctionScan would check: the right to call read_stream */
	if (es_proc_aclcheck(st->funcid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, get_func_name(st->funcid));
	InvokeFunctionExecuteHook(st->funcid);

	st->args = ExecInitExprList(cscan->custom_exprs, &node->ss.ps);
	if (st->whole_row)
	{
		TupleDesc	desc = node->ss.ss_ScanTupleSlot->tts_tupleDescriptor;

		st->event_desc = BlessTupleDesc(lookup_rowtype_tupdesc_copy(TupleDescAttr(desc, desc->natts - 1)->atttypid, -1));
	}
	st->read_cxt = AllocSetContextCreate(estate->es_query_cxt,
										 "eventstore read_stream scan",
										 ALLOCSET_SMALL_SIZES);
	st->started = false;
	st->read = NULL;
}

/* Evaluate the arguments and open the read. */
static void
es_read_start(EsReadScanState *st)
{
	ExprContext *econtext = st->css.ss.ps.ps_ExprContext;
	Datum		values[4];
	bool		nulls[4];
	int			i = 0;
	ListCell   *lc;
	MemoryContext oldcxt;

	oldcxt = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
	foreach(lc, st->args)
	{
		values[i] = ExecEvalExpr((ExprState *) lfirst(lc), econtext, &nulls[i]);
		i++;
	}
	MemoryContextSwitchTo(st->read_cxt);
	st->read = es_read_stream_open(nulls[0] ? NULL : DatumGetTextPP(values[0]),
								   !nulls[1], nulls[1] ? 0 : DatumGetInt64(values[1]),
								   !nulls[2], nulls[2] ? 0 : DatumGetInt64(values[2]),
								   !nulls[3] && DatumGetBool(values[3]),
								   st->css.ss.ps.state->es_snapshot);
	MemoryContextSwitchTo(oldcxt);
	st->started = true;
}

static TupleTableSlot *
es_read_next(ScanState *ss)
{
	EsReadScanState *st = (EsReadScanState *) ss;
	TupleTableSlot *out = ss->ss_ScanTupleSlot;
	TupleTableSlot *slot;

	if (!st->started)
		es_read_start(st);
	ExecClearTuple(out);
	if (st->read == NULL)
		return out;
	slot = es_read_stream_next(st->read);
	if (slot == NULL)
	{
		es_read_stream_close(st->read);
		return out;
	}

	/* the values point into the stored row, pinned until the next one */
	slot_getallattrs(slot);
	es_event_to_output(slot->tts_values, slot->tts_isnull, out->tts_values, out->tts_isnull);
	if (st->whole_row)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(st->read->row_cxt);

		out->tts_values[Natts_es_event_type] =
			HeapTupleGetDatum(heap_form_tuple(st->event_desc, out->tts_values, out->tts_isnull));
		out->tts_isnull[Natts_es_event_type] = false;
		MemoryContextSwitchTo(oldcxt);
	}
	return ExecStoreVirtualTuple(out);
}

static bool
es_read_recheck(ScanState *ss, TupleTableSlot *slot)
{
	return true;
}

static TupleTableSlot *
es_read_exec(CustomScanState *node)
{
	return ExecScan(&node->ss, es_read_next, es_read_recheck);
}

static void
es_read_stop(EsReadScanState *st)
{
	if (st->read != NULL)
		es_read_stream_close(st->read);
	st->read = NULL;
	st->started = false;
	MemoryContextReset(st->read_cxt);
}

static void
es_read_end(CustomScanState *node)
{
	EsReadScanState *st = (EsReadScanState *) node;

	if (node->ss.ss_ScanTupleSlot)
		ExecClearTuple(node->ss.ss_ScanTupleSlot);
	es_read_stop(st);
}

static void
es_read_rescan(CustomScanState *node)
{
	EsReadScanState *st = (EsReadScanState *) node;

	ExecClearTuple(node->ss.ss_ScanTupleSlot);
	es_read_stop(st);
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
 * Hand to "sink" the events of the global log (of one partition: "cat"
 * names its tables) with after < position <= horizon, ascending, at most
 * max_count of them that match the filter and that the stream's lifecycle
 * state lets readers see.  The sink runs in a context reset after each
 * event: what it keeps, it copies.
 */
static void
es_read_log_into(EsLogSink sink, void *arg, const EsCatalog *cat, Snapshot snapshot,
				 int64 after, int64 horizon, const EsFilter *filter,
				 bool has_max, int64 max_count)
{
	Relation	heap;
	Relation	index;
	EsEventScan scan;
	TupleTableSlot *slot;
	MemoryContext row_cxt;
	int64		count = 0;
	EsViewCache *views;

	if (horizon <= after)
		return;

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

		if (filter->prefix != NULL || filter->has_types)
		{
			text	   *type = DatumGetTextPP(slot_getattr(slot, Anum_es_event_type, &isnull));

			if (!es_filter_matches(filter, VARDATA_ANY(stream_id), VARSIZE_ANY_EXHDR(stream_id),
								   VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type)))
				goto next;
		}

		/* events of deleted streams, or outside their retention settings */
		if (es_view_cache_hides(views, stream_id,
								DatumGetInt64(slot_getattr(slot, Anum_es_stream_version, &isnull)),
								DatumGetTimestampTz(slot_getattr(slot, Anum_es_created_at, &isnull))))
			goto next;

		if (sink(arg, slot, stream_id))
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
}

/* read_all and read_partitions: each event into the result. */
typedef struct EsResultSink
{
	ReturnSetInfo *rsinfo;
	const int32 *partition;		/* read_partitions: put first */
} EsResultSink;

static bool
es_result_sink(void *arg, TupleTableSlot *slot, text *stream_id)
{
	EsResultSink *r = (EsResultSink *) arg;

	es_put_event(r->rsinfo->setResult, r->rsinfo->setDesc, slot, r->partition);
	return true;
}

static void
es_read_log(ReturnSetInfo *rsinfo, const EsCatalog *cat, Snapshot snapshot,
			int64 after, int64 horizon, const EsFilter *filter,
			bool has_max, int64 max_count, const int32 *partition)
{
	EsResultSink r = {rsinfo, partition};

	es_read_log_into(es_result_sink, &r, cat, snapshot, after, horizon, filter,
					 has_max, max_count);
}

/*
 * What read_all(after, max_count, event_types, stream_prefix) reads, handed
 * to "sink" one event at a time instead of returned (subscription.c sorts
 * a subscription's pull as it is read).  Returns the horizon the read
 * stopped at: a read that got fewer than max_count events proves that no
 * other matching event is at or below it.  A single server only.
 */
int64
es_read_all_into(EsLogSink sink, void *arg, int64 after, int64 max_count,
				 ArrayType *event_types, text *stream_prefix)
{
	const EsCatalog *cat = es_catalog();
	EsFilter	filter = {0};
	Snapshot	snapshot;
	int64		horizon;

	es_filter_from_args(&filter, event_types, stream_prefix);
	es_require_single_server(cat, "a subscription's pull",
							 "A distributed store pulls by partition.");
	horizon = es_reader_horizon(cat, &snapshot);
	/* an empty list of types matches nothing */
	if (max_count > 0 && !(filter.has_types && filter.ntypes == 0))
		es_read_log_into(sink, arg, cat, snapshot, after, horizon, &filter,
						 true, max_count);
	UnregisterSnapshot(snapshot);
	return horizon;
}

/* GUC: read_all merges the partitions of a distributed store (0.8.0). */
static bool es_total_order = false;

/*
 * read_all on a distributed store with eventstore.total_order on: the
 * partitions merged into one order by eventstore._read_all_merged, run as
 * the owner of the events (the caller may read them all: it may call
 * read_all), its rows copied into the result.
 */
static void
es_read_all_merged(ReturnSetInfo *rsinfo, const EsCatalog *cat, int64 after,
				   bool has_max, int64 max_count, ArrayType *types, text *prefix)
{
	Datum		args[4];
	Oid			argtypes[4] = {INT8OID, INT8OID, TEXTARRAYOID, TEXTOID};
	char		nulls[4] = {' ', has_max ? ' ' : 'n', types ? ' ' : 'n', prefix ? ' ' : 'n'};
	EsGuard		guard;
	int			ret;

	args[0] = Int64GetDatum(after);
	args[1] = Int64GetDatum(max_count);
	args[2] = PointerGetDatum(types);
	args[3] = PointerGetDatum(prefix);
	es_spi_begin(&guard, es_relation_owner(cat->events_relid));
	ret = SPI_execute_with_args("SELECT * FROM eventstore._read_all_merged($1, $2, $3, $4)",
								4, argtypes, args, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the merged log: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	es_spi_end(&guard);
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
	EsFilter	filter = {0};

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
	if (es_total_order && es_store_distributed(cat))
	{
		es_read_all_merged(rsinfo, cat, after, has_max, max_count, types_array, prefix);
		return (Datum) 0;
	}
	es_require_single_server(cat, "read_all",
							 "Read the log by partition with eventstore.read_partitions(), or merge the partitions into one order with eventstore.total_order = on (see \"Distributing a store with Citus\").");
	horizon = es_reader_horizon(cat, &snapshot);
	if (horizon <= after)
	{
		UnregisterSnapshot(snapshot);
		return (Datum) 0;
	}

	es_read_log(rsinfo, cat, snapshot, after, horizon, &filter, has_max, max_count, NULL);
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

	es_require_single_server(cat, "global_horizon", "Each partition has a horizon of its own: eventstore.partition_horizons().");
	horizon = es_reader_horizon(cat, &snapshot);
	UnregisterSnapshot(snapshot);

	PG_RETURN_INT64(horizon);
}

/* ---------------------------------------------------------------------
 * The partitions of the global log (0.8.0)
 * ---------------------------------------------------------------------
 */

/*
 * A follower's checkpoint in a partitioned log: {"<partition>": position}
 * for the partitions it has read from, sorted by partition.
 */
typedef struct EsVector
{
	int			n;
	int32	   *ids;
	int64	   *positions;
} EsVector;

static pg_noreturn void
es_vector_error(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("after must be a JSON object of partitions and positions"),
			 errdetail("%s", detail),
			 errhint("Pass {} to read from the start, then {\"<partition>\": <last position read>, ...}.")));
}

/* A whole non-negative number that fits in bigint, from its decimal digits. */
static bool
es_parse_int64(const char *s, int64 *result)
{
	uint64		v = 0;

	if (*s == '\0')
		return false;
	for (; *s; s++)
	{
		if (*s < '0' || *s > '9' || v > (PG_INT64_MAX - (*s - '0')) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	*result = (int64) v;
	return true;
}

static void
es_vector_parse(Jsonb *jb, EsVector *v)
{
	JsonbIterator *it;
	JsonbValue	val;
	JsonbIteratorToken tok;
	int			cap;
	int32		key = 0;
	int32	   *pairs_id;
	int64	   *pairs_pos;
	int		   *order;

	v->n = 0;
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		es_vector_error("It is not an object.");
	cap = JB_ROOT_COUNT(jb);
	pairs_id = palloc(sizeof(int32) * Max(cap, 1));
	pairs_pos = palloc(sizeof(int64) * Max(cap, 1));

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &val, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *k = pnstrdup(val.val.string.val, val.val.string.len);
			char	   *end;
			long		l;

			errno = 0;
			l = strtol(k, &end, 10);
			if (*k == '\0' || *end != '\0' || errno != 0 || l < PG_INT32_MIN || l > PG_INT32_MAX)
				es_vector_error(psprintf("Key \"%s\" is not a partition (an integer).", k));
			key = (int32) l;
		}
		else if (tok == WJB_VALUE)
		{
			int64		pos;

			if (val.type != jbvNumeric ||
				!es_parse_int64(DatumGetCString(DirectFunctionCall1(numeric_out,
																	NumericGetDatum(val.val.numeric))),
								&pos))
				es_vector_error(psprintf("The position of partition %d is not a whole number from 0.", key));
			pairs_id[v->n] = key;
			pairs_pos[v->n] = pos;
			v->n++;
		}
	}

	/* sort by partition */
	order = palloc(sizeof(int) * Max(v->n, 1));
	v->ids = palloc(sizeof(int32) * Max(v->n, 1));
	v->positions = palloc(sizeof(int64) * Max(v->n, 1));
	for (int i = 0; i < v->n; i++)
		order[i] = i;
	for (int i = 1; i < v->n; i++)
		for (int j = i; j > 0 && pairs_id[order[j - 1]] > pairs_id[order[j]]; j--)
		{
			int			t = order[j];

			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	for (int i = 0; i < v->n; i++)
	{
		v->ids[i] = pairs_id[order[i]];
		v->positions[i] = pairs_pos[order[i]];
	}
}

/*
 * Where a follower with checkpoint "v" continues in partition "id": after
 * the position it names for it or -- a partition split off a larger one
 * after the checkpoint was made (its range begins inside that one's) --
 * for the partition with the greatest id not above it; from the start
 * when there is none.
 */
static int64
es_vector_after(const EsVector *v, int32 id)
{
	int64		after = 0;

	for (int i = 0; i < v->n && v->ids[i] <= id; i++)
		after = v->positions[i];
	return after;
}

/* The partitions argument, checked and taken apart once (NULL: all). */
typedef struct EsWanted
{
	bool		all;
	int			n;
	Datum	   *ids;
} EsWanted;

static void
es_wanted_arg(ArrayType *array, EsWanted *w)
{
	bool	   *nulls;

	w->all = (array == NULL);
	w->n = 0;
	w->ids = NULL;
	if (array == NULL)
		return;
	if (ARR_NDIM(array) > 1 || array_contains_nulls(array))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partitions must be a one-dimensional array without NULLs")));
	deconstruct_array(array, INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &w->ids, &nulls, &w->n);
}

/* Whether partition "id" is asked for. */
static bool
es_partition_wanted(const EsWanted *w, int32 id)
{
	if (w->all)
		return true;
	for (int i = 0; i < w->n; i++)
		if (DatumGetInt32(w->ids[i]) == id)
			return true;
	return false;
}

/* Append a SQL literal of "value" (or NULL) and a cast to "type". */
static void
es_append_literal(StringInfo buf, const char *value, const char *type)
{
	if (value == NULL)
		appendStringInfoString(buf, "NULL");
	else
		appendStringInfoString(buf, quote_literal_cstr(value));
	appendStringInfo(buf, "::%s", type);
}

/*
 * Run "call" -- a set-returning function of this extension, up to and
 * including the comma before its last argument, the partitions to read --
 * on the nodes holding the partitions flagged in "remote", and put what
 * they return into the result.  One command per node, run there by Citus's
 * master_run_on_worker over connections of the current role, each for the
 * partitions this node's metadata places there (the function run there
 * skips one that moved meanwhile: the next call finds it where it now is).
 * Each node returns its rows as one JSON array, decoded with "columns" (the
 * result's columns, as a column definition list); the array itself is
 * selected only with a node's error (with every row it would be copied
 * once per row: quadratic in the rows of a node).  "fn" names the
 * function whose EXECUTE right the nodes check, for the HINT.
 */
static void
es_fan_out(ReturnSetInfo *rsinfo, const EsPartition *parts, int nparts, const bool *remote,
		   const char *call, const char *columns, const char *fn)
{
	Datum	   *names = palloc(sizeof(Datum) * nparts);
	Datum	   *ports = palloc(sizeof(Datum) * nparts);
	Datum	   *commands = palloc(sizeof(Datum) * nparts);
	bool	   *done = palloc0(sizeof(bool) * nparts);
	int			nnodes = 0;
	int			ncols = rsinfo->setDesc->natts;
	Oid			argtypes[3] = {TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID};
	Datum		args[3];
	Datum	   *values = palloc(sizeof(Datum) * ncols);
	bool	   *nulls = palloc(sizeof(bool) * ncols);
	StringInfoData query;
	EsGuard		g;
	int			ret;

	for (int i = 0; i < nparts; i++)
	{
		StringInfoData cmd;
		bool		first = true;

		if (!remote[i] || done[i])
			continue;
		if (parts[i].node_name == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("partition %d of the global log has no active primary node", parts[i].id)));

		initStringInfo(&cmd);
		appendStringInfo(&cmd,
						 "SELECT COALESCE(pg_catalog.jsonb_agg(r), '[]'::pg_catalog.jsonb)"
						 " FROM %s ARRAY[", call);
		for (int j = i; j < nparts; j++)
		{
			if (!remote[j] || done[j] || parts[j].node_name == NULL ||
				strcmp(parts[j].node_name, parts[i].node_name) != 0 ||
				parts[j].node_port != parts[i].node_port)
				continue;
			appendStringInfo(&cmd, "%s%d", first ? "" : ", ", parts[j].id);
			first = false;
			done[j] = true;
		}
		appendStringInfoString(&cmd, "]::pg_catalog.int4[]) r");

		names[nnodes] = CStringGetTextDatum(parts[i].node_name);
		ports[nnodes] = Int32GetDatum(parts[i].node_port);
		commands[nnodes] = CStringGetTextDatum(cmd.data);
		nnodes++;
	}
	if (nnodes == 0)
		return;

	args[0] = PointerGetDatum(construct_array(names, nnodes, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(ports, nnodes, INT4OID, sizeof(int32), true, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(commands, nnodes, TEXTOID, -1, false, TYPALIGN_INT));

	initStringInfo(&query);
	appendStringInfo(&query,
					 "SELECT w.node_name, w.node_port, w.success,"
					 "       CASE WHEN NOT w.success THEN w.result END, r.*"
					 "  FROM pg_catalog.master_run_on_worker($1, $2, $3, true) w"
					 "  LEFT JOIN LATERAL pg_catalog.jsonb_to_recordset("
					 "         CASE WHEN w.success THEN w.result::pg_catalog.jsonb END)"
					 "       AS r(%s) ON true", columns);

	/* as the current role, whose rights the nodes check again */
	es_spi_begin(&g, InvalidOid);
	ret = SPI_execute_with_args(query.data, 3, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read partitions on other nodes: %s", SPI_result_code_string(ret));

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		if (!DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)) || isnull)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not read the partitions of the global log on node %s:%s",
							SPI_getvalue(tup, desc, 1), SPI_getvalue(tup, desc, 2)),
					 errdetail("%s", SPI_getvalue(tup, desc, 4)),
					 errhint("The calling role needs EXECUTE on eventstore.%s on every node: Citus does not pass that grant on.", fn)));
		/* a node with nothing to return */
		(void) SPI_getbinval(tup, desc, 5, &isnull);
		if (isnull)
			continue;
		for (int c = 0; c < ncols; c++)
			values[c] = SPI_getbinval(tup, desc, 5 + c, &nulls[c]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	es_spi_end(&g);
}

/* read_partitions on the nodes holding the partitions flagged in "remote" */
static void
es_read_remote_partitions(ReturnSetInfo *rsinfo, FunctionCallInfo fcinfo,
						  const EsPartition *parts, int nparts, const bool *remote)
{
	char	   *after = PG_ARGISNULL(0) ? NULL :
		DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(0)));
	char	   *max = PG_ARGISNULL(1) ? NULL :
		DatumGetCString(DirectFunctionCall1(int8out, PG_GETARG_DATUM(1)));
	char	   *types = PG_ARGISNULL(2) ? NULL :
		DatumGetCString(OidFunctionCall3(F_ARRAY_OUT, PG_GETARG_DATUM(2),
										 ObjectIdGetDatum(TEXTOID), Int32GetDatum(-1)));
	char	   *prefix = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	StringInfoData call;

	initStringInfo(&call);
	appendStringInfoString(&call, "eventstore._read_partitions_here(");
	es_append_literal(&call, after, "pg_catalog.jsonb");
	appendStringInfoString(&call, ", ");
	es_append_literal(&call, max, "pg_catalog.int8");
	appendStringInfoString(&call, ", ");
	es_append_literal(&call, types, "pg_catalog.text[]");
	appendStringInfoString(&call, ", ");
	es_append_literal(&call, prefix, "pg_catalog.text");
	appendStringInfoString(&call, ",");

	es_fan_out(rsinfo, parts, nparts, remote, call.data,
			   "partition pg_catalog.int4, global_position pg_catalog.int8,"
			   " stream_id pg_catalog.text, stream_version pg_catalog.int8,"
			   " event_id pg_catalog.uuid, event_type pg_catalog.text,"
			   " data pg_catalog.jsonb, metadata pg_catalog.jsonb,"
			   " created_at pg_catalog.timestamptz",
			   "read_partitions");
}

/*
 * eventstore.read_partitions(after, max_count, event_types, stream_prefix,
 *		partitions) returns setof (partition, the columns of eventstore.event)
 * and eventstore._read_partitions_here(the same), which reads only the
 * partitions placed on this node.
 *
 * The global log as partitions (a distributed store: one per shard; a
 * single server: one, -2147483648): for each partition, its events with
 * after[partition] < global_position <= the horizon of the node that holds
 * it, ascending, at most max_count of them that match the filters.  Within
 * a partition the promise of read_all holds: a follower that passes back
 * the last position it received of each partition sees every committed
 * event exactly once.
 */
static Datum
es_read_partitions(FunctionCallInfo fcinfo, bool here_only)
{
	bool		has_max = !PG_ARGISNULL(1);
	int64		max_count = has_max ? PG_GETARG_INT64(1) : 0;
	ArrayType  *types_array = PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2);
	text	   *prefix = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	ArrayType  *wanted_array = PG_ARGISNULL(4) ? NULL : PG_GETARG_ARRAYTYPE_P(4);
	EsWanted	wanted;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const EsCatalog *cat;
	EsPartition *parts;
	int			nparts;
	bool	   *remote;
	bool		any_remote = false;
	Snapshot	snapshot;
	int64		horizon;
	EsFilter	filter = {0};
	EsVector	vector = {0};

	if (!PG_ARGISNULL(0))
		es_vector_parse(PG_GETARG_JSONB_P(0), &vector);
	if (has_max && max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must not be negative")));
	es_wanted_arg(wanted_array, &wanted);
	es_filter_from_args(&filter, types_array, prefix);

	es_init_result(fcinfo);

	if (has_max && max_count == 0)
		return (Datum) 0;
	if (filter.has_types && filter.ntypes == 0)
		return (Datum) 0;

	cat = es_catalog();
	nparts = es_log_partitions(cat, &parts);
	remote = palloc0(sizeof(bool) * nparts);

	/* the partitions placed here, with this node's horizon */
	horizon = es_reader_horizon(cat, &snapshot);
	for (int i = 0; i < nparts; i++)
	{
		const EsCatalog *pcat;

		if (!es_partition_wanted(&wanted, parts[i].id))
			continue;
		pcat = parts[i].local ? es_partition_catalog(cat, parts[i].id) : NULL;
		if (pcat == NULL)
		{
			remote[i] = !here_only;
			any_remote |= remote[i];
			continue;
		}
		es_read_log(rsinfo, pcat, snapshot, es_vector_after(&vector, parts[i].id), horizon,
					&filter, has_max, max_count, &parts[i].id);
	}
	UnregisterSnapshot(snapshot);

	/* the others, where they are placed */
	if (any_remote)
		es_read_remote_partitions(rsinfo, fcinfo, parts, nparts, remote);

	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(eventstore_read_partitions);
Datum
eventstore_read_partitions(PG_FUNCTION_ARGS)
{
	return es_read_partitions(fcinfo, false);
}

/*
 * The part of read_partitions that one node does for another: whoever may
 * call read_partitions may call this (it is executable by everyone and
 * checks that right itself), so one grant governs both.
 */
PG_FUNCTION_INFO_V1(eventstore_read_partitions_here);
Datum
eventstore_read_partitions_here(PG_FUNCTION_ARGS)
{
	Oid			argtypes[5] = {JSONBOID, INT8OID, TEXTARRAYOID, TEXTOID, INT4ARRAYOID};
	List	   *name = list_make2(makeString("eventstore"), makeString("read_partitions"));
	Oid			fn = LookupFuncName(name, 5, argtypes, false);

	if (es_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function read_partitions")));
	return es_read_partitions(fcinfo, true);
}

/*
 * eventstore.partition_horizons() returns setof (partition, horizon) and
 * eventstore._partition_horizons_here(partitions), the same for the listed
 * partitions placed on this node.
 *
 * For each partition of the global log, the horizon of the node that holds
 * it: the position up to which read_partitions reads it now (on a single
 * server one row, -2147483648, with global_horizon()).  The filtered
 * follower's pattern per partition: a partition of which a read_partitions
 * called after this returned fewer than max_count events has no other
 * matching event up to its horizon, so its checkpoint may move there.
 *
 * "complete" (eventstore._partitions_complete(), 0.9.0): on a distributed
 * store, each partition no further than the highest position it holds.
 * What a follower's checkpoint may move to: a node's horizon also counts
 * the other partitions' appends there, and once a partition moves to
 * another node, that node draws its events above the partition's highest
 * position (shard.c), which may be below the old node's horizon -- below a
 * checkpoint moved up to it (the events were skipped: TAP 016 (m)).  The
 * merged reader of eventstore.total_order keeps the horizons: an idle
 * partition would hold it back for good.
 */
static Datum
es_partition_horizons(FunctionCallInfo fcinfo, ArrayType *wanted_array, bool here_only,
					  bool complete)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EsWanted	wanted;
	const EsCatalog *cat;
	EsPartition *parts;
	int			nparts;
	bool	   *remote;
	bool		any_remote = false;
	Snapshot	snapshot;
	int64		horizon;

	es_wanted_arg(wanted_array, &wanted);

	es_init_result(fcinfo);

	cat = es_catalog();
	nparts = es_log_partitions(cat, &parts);
	remote = palloc0(sizeof(bool) * nparts);

	horizon = es_reader_horizon(cat, &snapshot);
	complete = complete && es_store_distributed(cat);
	for (int i = 0; i < nparts; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};
		const EsCatalog *pcat;

		if (!es_partition_wanted(&wanted, parts[i].id))
			continue;
		pcat = parts[i].local ? es_partition_catalog(cat, parts[i].id) : NULL;
		if (pcat == NULL)
		{
			remote[i] = !here_only;
			any_remote |= remote[i];
			continue;
		}
		values[0] = Int32GetDatum(parts[i].id);
		values[1] = Int64GetDatum(complete ? es_highest_position(pcat->events_relid,
																 pcat->position_index_relid,
																 snapshot, horizon)
								   : horizon);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	UnregisterSnapshot(snapshot);

	if (any_remote && complete)
		es_fan_out(rsinfo, parts, nparts, remote, "eventstore._partitions_complete_here(",
				   "partition pg_catalog.int4, horizon pg_catalog.int8",
				   "_partitions_complete");
	else if (any_remote)
		es_fan_out(rsinfo, parts, nparts, remote, "eventstore._partition_horizons_here(",
				   "partition pg_catalog.int4, horizon pg_catalog.int8",
				   "partition_horizons");

	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(eventstore_partition_horizons);
Datum
eventstore_partition_horizons(PG_FUNCTION_ARGS)
{
	return es_partition_horizons(fcinfo, NULL, false, false);
}

/*
 * The part of a function of horizons (eventstore.<fname>(), no arguments)
 * that one node does for another, executable by everyone: the partitions
 * asked for, once the caller is known to be allowed to call <fname>.
 */
static ArrayType *
es_horizons_here_args(FunctionCallInfo fcinfo, const char *fname)
{
	List	   *name = list_make2(makeString("eventstore"), makeString(pstrdup(fname)));
	Oid			fn = LookupFuncName(name, 0, NULL, false);

	if (es_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", fname)));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("partitions must not be NULL")));
	return PG_GETARG_ARRAYTYPE_P(0);
}

/* The part of partition_horizons that one node does for another. */
PG_FUNCTION_INFO_V1(eventstore_partition_horizons_here);
Datum
eventstore_partition_horizons_here(PG_FUNCTION_ARGS)
{
	return es_partition_horizons(fcinfo, es_horizons_here_args(fcinfo, "partition_horizons"),
								 true, false);
}

/*
 * eventstore._partitions_complete() returns setof (partition, horizon):
 * partition_horizons() as far as a follower's checkpoint may move (0.9.0,
 * see es_partition_horizons).  Internal.
 */
PG_FUNCTION_INFO_V1(eventstore_partitions_complete);
Datum
eventstore_partitions_complete(PG_FUNCTION_ARGS)
{
	return es_partition_horizons(fcinfo, NULL, false, true);
}

/* The part of _partitions_complete that one node does for another. */
PG_FUNCTION_INFO_V1(eventstore_partitions_complete_here);
Datum
eventstore_partitions_complete_here(PG_FUNCTION_ARGS)
{
	return es_partition_horizons(fcinfo, es_horizons_here_args(fcinfo, "_partitions_complete"),
								 true, true);
}

/*
 * Define the settings this file reads: whether read_all merges the
 * partitions of a distributed store.  Called by _PG_init.
 */
void
es_read_define_gucs(void)
{
	DefineCustomBoolVariable("eventstore.total_order",
							 "On a store distributed with Citus, read_all merges the partitions of the global log into one order.",
							 "Each read asks every node for its horizon and lifts the positions of nodes that lag, briefly locking their sequence; off, read_all is refused there (read the partitions with read_partitions).",
							 &es_total_order,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
}

/*
 * read_stream in FROM as a custom scan (see there): its methods, and the
 * planner hook that chooses it.  Called by _PG_init, also when the library
 * is loaded on first use (plans made before that keep the function scan).
 */
void
es_read_install_hooks(void)
{
	RegisterCustomScanMethods(&es_read_scan_methods);
	es_prev_set_rel_pathlist = set_rel_pathlist_hook;
	set_rel_pathlist_hook = es_read_set_rel_pathlist;
}
