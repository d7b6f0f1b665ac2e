/*-------------------------------------------------------------------------
 *
 * fold.c
 *	  The fold engine: state from events with a user's evolve function,
 *	  up to a version or as of a time (load_state, aggregate_stream, the
 *	  fold aggregate), and take_snapshot, which stores what a fold reached.
 *
 * A fold streams the stream's events through the (stream_id,
 * stream_version) index and computes evolve(state, event) for each; the
 * state lives in one of two memory contexts that take turns, so a fold of
 * any length holds two states at most.  A load starts from the newest
 * usable snapshot at or below its target (snapshot.c) and folds only the
 * tail.
 *
 * evolve(state, event) is planned once per fold as an expression over two
 * parameters, as PL/pgSQL plans `state := evolve(state, e)`: the planner
 * inlines an evolve written in SQL as one expression (the usual way to
 * write one), which then costs an expression evaluation per event instead
 * of a query run by the SQL function manager; any other evolve (PL/pgSQL,
 * C, a SQL function the planner does not inline) is simply called by the
 * expression.  The planner inlines only what a direct call would run the
 * same way: never a SECURITY DEFINER function or one with SET clauses, nor
 * one the current user may not EXECUTE; the inlined body is parsed under
 * the search_path and run with the rights of the moment of the fold, as
 * the function manager would parse and run it (a body written BEGIN ATOMIC
 * was bound when it was created, either way).
 *
 * evolve gets the event as an expanded record built from the row's values,
 * and a composite state as an expanded record too, so that the fields it
 * reads are fetched from deformed values, not found by walking a flat
 * tuple each time; a fold flattens its state only to return it.
 *
 * src/fold.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/params.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/expandeddatum.h"
#include "utils/expandedrecord.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "eventstore.h"

/* A declared type fits: InvalidOid wants the state type, or a polymorphic one. */
static bool
es_type_fits(Oid declared, Oid wanted, Oid state_type)
{
	if (!OidIsValid(wanted))
		return declared == state_type || IsPolymorphicType(declared);
	return declared == wanted;
}

/*
 * Whether a user's function (what: "evolve function", ...) is a plain
 * function fn(arg0, arg1) returning rettype, where InvalidOid stands for
 * the state type.  The caller reports a misfit in its own words.
 */
bool
es_function_fits(Oid fn, const char *what, Oid state_type, Oid arg0, Oid arg1,
				 Oid rettype)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	bool		ok;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s %u does not exist", what, fn)));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	ok = proc->pronargs == 2 && !proc->proretset && proc->prokind == PROKIND_FUNCTION &&
		es_type_fits(proc->proargtypes.values[0], arg0, state_type) &&
		es_type_fits(proc->proargtypes.values[1], arg1, state_type) &&
		es_type_fits(proc->prorettype, rettype, state_type);
	ReleaseSysCache(tuple);
	return ok;
}

/*
 * Check that evolve can be called as evolve(state_type, eventstore.event)
 * returning state_type (polymorphic declarations allowed).
 */
static void
es_check_evolve(Oid evolve, Oid state_type, Oid event_typid)
{
	if (!es_function_fits(evolve, "evolve function", state_type,
						  InvalidOid, event_typid, InvalidOid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("evolve function %s must take (%s, eventstore.event) and return %s",
						format_procedure(evolve), format_type_be(state_type),
						format_type_be(state_type))));
	/* the fold calls it for the caller, who must be entitled to */
	es_check_user_function(evolve, GetUserId(), "evolve function");
}

/*
 * Look up fn to be called as fn(arg0, arg1) returning rettype; the call's
 * types let a polymorphic function resolve its own.
 */
void
es_fmgr_info_typed(Oid fn, Oid rettype, Oid arg0, Oid arg1, FmgrInfo *flinfo)
{
	FuncExpr   *expr;

	fmgr_info(fn, flinfo);
	expr = makeFuncExpr(fn, rettype,
						list_make2(makeNullConst(arg0, -1, InvalidOid),
								   makeNullConst(arg1, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_set_expr((Node *) expr, flinfo);
}

static void es_fold_set_state(EsFold *f, Datum state, bool isnull, bool handed_over);

/*
 * The fold lives in the current memory context: the two state contexts,
 * the expression context whose per-tuple memory each event's evaluation
 * uses, and (at the first event) the planned expression.
 */
static void
es_fold_init(EsFold *f, const EsCatalog *cat, Oid evolve, Oid state_type,
			 Datum initial, bool initial_isnull)
{
	es_check_evolve(evolve, state_type, cat->event_typid);

	f->evolve = evolve;
	f->evolve_strict = func_strict(evolve);
	f->event_typid = cat->event_typid;
	f->evolve_expr = NULL;
	f->fold_cxt = CurrentMemoryContext;
	f->state_type = state_type;
	get_typlenbyval(state_type, &f->typlen, &f->typbyval);

	f->state_cxt[0] = AllocSetContextCreate(CurrentMemoryContext, "eventstore fold state",
											ALLOCSET_DEFAULT_SIZES);
	f->state_cxt[1] = AllocSetContextCreate(CurrentMemoryContext, "eventstore fold state",
											ALLOCSET_DEFAULT_SIZES);
	f->econtext = CreateStandaloneExprContext();
	f->params = makeParamList(2);
	f->params->params[0].ptype = state_type;
	f->params->params[0].pflags = 0;
	f->params->params[1].ptype = cat->event_typid;
	f->params->params[1].pflags = 0;
	f->econtext->ecxt_param_list_info = f->params;
	f->event_template = make_expanded_record_from_typeid(cat->event_typid, -1,
														 CurrentMemoryContext);
	f->state_template = get_typtype(state_type) == TYPTYPE_COMPOSITE ?
		make_expanded_record_from_typeid(state_type, -1, CurrentMemoryContext) : NULL;
	f->cur = 0;
	f->isnull = true;
	f->state = (Datum) 0;
	es_fold_set_state(f, initial, initial_isnull, false);
	f->version = 0;
	f->last_event_at = DT_NOBEGIN;
	f->events = 0;
}

/*
 * A composite datum as a read-only expanded record over the same bytes,
 * which must live in cxt as long as the record: a field is then fetched
 * from the record's deformed values, where the flat tuple would be walked
 * from its start at every field an expression reads (what PL/pgSQL gives
 * its record variables).
 */
static Datum
es_expand_record(ExpandedRecordHeader *template, Datum flat, MemoryContext cxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	HeapTuple	tuple = palloc(HEAPTUPLESIZE);
	ExpandedRecordHeader *erh;

	tuple->t_data = es_datum_get_tuple_header(flat);
	tuple->t_len = HeapTupleHeaderGetDatumLength(tuple->t_data);
	ItemPointerSetInvalid(&tuple->t_self);
	tuple->t_tableOid = InvalidOid;
	erh = make_expanded_record_from_exprecord(template, cxt);
	expanded_record_set_tuple(erh, tuple, false, false);
	MemoryContextSwitchTo(oldcxt);
	return ExpandedRecordGetRODatum(erh);
}

/*
 * Replace the fold's state: by evolve's result (handed_over), the initial
 * state or a snapshot's.  The state is copied into the other state
 * context, or, when evolve hands over an expanded object of its own (a
 * read/write pointer: PL/pgSQL's composite and array results), that object
 * is moved there; a composite state is kept as an expanded record.  What
 * the caller passed in is never taken over, only copied.
 */
static void
es_fold_set_state(EsFold *f, Datum state, bool isnull, bool handed_over)
{
	int			next = 1 - f->cur;

	MemoryContextReset(f->state_cxt[next]);
	if (isnull)
		f->state = (Datum) 0;
	else if (handed_over && f->typlen == -1 &&
			 VARATT_IS_EXTERNAL_EXPANDED_RW(DatumGetPointer(state)))
		f->state = MakeExpandedObjectReadOnlyInternal(TransferExpandedObject(state,
																			 f->state_cxt[next]));
	else
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(f->state_cxt[next]);

		f->state = datumCopy(state, f->typbyval, f->typlen);
		MemoryContextSwitchTo(oldcxt);
		if (f->state_template != NULL)
			f->state = es_expand_record(f->state_template, f->state, f->state_cxt[next]);
	}
	f->isnull = isnull;
	MemoryContextReset(f->state_cxt[f->cur]);
	f->cur = next;
}

/* The state as a flat datum in the current memory context, to return. */
static Datum
es_fold_result(const EsFold *f)
{
	if (!f->isnull && f->typlen == -1 &&
		VARATT_IS_EXTERNAL_EXPANDED(DatumGetPointer(f->state)))
		return datumCopy(f->state, false, -1);
	return f->state;
}

/*
 * Plan evolve($1, $2) as an expression, as the parser would build the call
 * evolve(state, event) (the state's collation is the call's), then run it
 * through the planner's expression preprocessing, which inlines an
 * inlinable SQL function.  Done at the first event, not before: a fold
 * with nothing to fold never touches evolve's body, as before 0.9.0.
 */
static void
es_fold_plan(EsFold *f)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(f->fold_cxt);
	Oid			collation = get_typcollation(f->state_type);
	Param	   *state_param = makeNode(Param);
	Param	   *event_param = makeNode(Param);
	FuncExpr   *call;
	Expr	   *planned;

	state_param->paramkind = PARAM_EXTERN;
	state_param->paramid = 1;
	state_param->paramtype = f->state_type;
	state_param->paramtypmod = -1;
	state_param->paramcollid = collation;
	state_param->location = -1;
	event_param->paramkind = PARAM_EXTERN;
	event_param->paramid = 2;
	event_param->paramtype = f->event_typid;
	event_param->paramtypmod = -1;
	event_param->paramcollid = InvalidOid;
	event_param->location = -1;
	call = makeFuncExpr(f->evolve, f->state_type, list_make2(state_param, event_param),
						collation, collation, COERCE_EXPLICIT_CALL);
	planned = expression_planner((Expr *) call);
	f->evolve_expr = ExecInitExprWithParams(planned, f->params);
	MemoryContextSwitchTo(oldcxt);
}

/* state := evolve(state, event) */
static void
es_fold_event(EsFold *f, Datum event)
{
	Datum		result;
	bool		isnull;

	/* a strict evolve leaves a NULL state NULL */
	if (f->isnull && f->evolve_strict)
		return;

	if (f->evolve_expr == NULL)
		es_fold_plan(f);
	f->params->params[0].value = f->state;
	f->params->params[0].isnull = f->isnull;
	f->params->params[1].value = event;
	f->params->params[1].isnull = false;
	result = ExecEvalExprSwitchContext(f->evolve_expr, f->econtext, &isnull);

	/*
	 * An evolve that returns its state argument as it came (an event it
	 * ignores) leaves the state where it is; any other result may point
	 * into the event or the per-event memory, and is copied.
	 */
	if (!(isnull || f->isnull || f->typbyval) && result == f->state)
		;
	else
		es_fold_set_state(f, result, isnull, true);
	ResetExprContext(f->econtext);
}

/*
 * The event of a row of eventstore.events, as an expanded record built
 * from the row's values (no flat tuple is formed, nor deformed again when
 * evolve reads a field), in the current memory context.  Out-of-line
 * values are fetched, so that the event stands alone.
 */
static Datum
es_fold_event_record(EsFold *f, const Datum *row_values, const bool *row_nulls)
{
	Datum		values[Natts_es_event_type];
	bool		nulls[Natts_es_event_type];
	ExpandedRecordHeader *erh;

	es_event_to_output(row_values, row_nulls, values, nulls);
	erh = make_expanded_record_from_exprecord(f->event_template, CurrentMemoryContext);
	expanded_record_set_fields(erh, values, nulls, true);
	return ExpandedRecordGetRODatum(erh);
}

/*
 * Fold the events of a stream after f->version up to the target, as seen
 * by "snapshot", which "view" describes (es_stream_view with the same
 * snapshot): events the stream's settings hide are skipped, but the
 * version goes on past them, so that it is the stream's version an append
 * expects.  As of a time, the fold stops at the first event created later:
 * the state is that of the longest prefix of the stream created at or
 * before the time.
 */
void
es_fold_stream(EsFold *f, const EsCatalog *cat, text *stream_id,
			   const EsTarget *target, Snapshot snapshot, const EsStreamView *view)
{
	Relation	heap;
	Relation	index;
	EsEventScan scan;
	TupleTableSlot *slot;
	MemoryContext row_cxt;
	bool		stopped = false;

	if (f->version >= target->to_version || view->absent)
		return;

	heap = table_open(view->heap_relid, AccessShareLock);
	index = index_open(view->index_relid, AccessShareLock);
	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "eventstore fold row",
									ALLOCSET_DEFAULT_SIZES);

	es_scan_stream_begin(&scan, heap, index, snapshot, stream_id,
						 f->version + 1, target->to_version, ForwardScanDirection, NULL);
	while ((slot = es_scan_next(&scan)) != NULL)
	{
		MemoryContext oldcxt;
		TimestampTz created_at;

		CHECK_FOR_INTERRUPTS();

		oldcxt = MemoryContextSwitchTo(row_cxt);
		slot_getallattrs(slot);
		created_at = DatumGetTimestampTz(slot->tts_values[Anum_es_created_at - 1]);
		if (target->has_as_of && created_at > target->as_of)
		{
			MemoryContextSwitchTo(oldcxt);
			stopped = true;
			break;
		}
		if (view->rules.found &&
			es_view_hides(view, DatumGetInt64(slot->tts_values[Anum_es_stream_version - 1]),
						  created_at))
		{
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(row_cxt);
			continue;
		}
		es_fold_event(f, es_fold_event_record(f, slot->tts_values, slot->tts_isnull));
		f->version = DatumGetInt64(slot->tts_values[Anum_es_stream_version - 1]);
		if (created_at > f->last_event_at)
			f->last_event_at = created_at;
		f->events++;
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(row_cxt);
	}
	es_scan_end(&scan);
	MemoryContextDelete(row_cxt);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);

	/* hidden or removed events at the end still count */
	if (!stopped && view->has_head && view->version > f->version)
		f->version = Min(view->version, target->to_version);
}

/*
 * The evolve function (unless evolve_arg < 0: the caller has it) and the
 * initial state, whose type the call tells.
 */
void
es_fold_args(FunctionCallInfo fcinfo, int evolve_arg, int initial_arg, EsLoadArgs *a)
{
	if (evolve_arg >= 0)
	{
		es_arg_not_null(fcinfo, evolve_arg, "evolve");
		a->evolve = PG_GETARG_OID(evolve_arg);
	}
	a->state_type = get_fn_expr_argtype(fcinfo->flinfo, initial_arg);
	if (!OidIsValid(a->state_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("could not determine the type of the initial state")));
	a->initial_isnull = PG_ARGISNULL(initial_arg);
	a->initial = a->initial_isnull ? (Datum) 0 : PG_GETARG_DATUM(initial_arg);
}

static void
es_load_args(FunctionCallInfo fcinfo, EsLoadArgs *a, int to_version_arg,
			 int as_of_arg, int use_snapshots_arg, int tag_arg)
{
	a->stream_id = es_stream_id_arg(fcinfo, 0);
	es_fold_args(fcinfo, 1, 2, a);

	a->target.to_version = PG_INT64_MAX;
	if (to_version_arg >= 0 && !PG_ARGISNULL(to_version_arg))
	{
		a->target.to_version = PG_GETARG_INT64(to_version_arg);
		if (a->target.to_version < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("to_version must not be negative")));
	}
	a->target.has_as_of = as_of_arg >= 0 && !PG_ARGISNULL(as_of_arg);
	a->target.as_of = a->target.has_as_of ? PG_GETARG_TIMESTAMPTZ(as_of_arg) : 0;

	a->tag = NULL;
	if (use_snapshots_arg < 0 || PG_ARGISNULL(use_snapshots_arg) ||
		PG_GETARG_BOOL(use_snapshots_arg))
	{
		a->tag = es_snapshot_tag_arg(fcinfo, tag_arg, a->evolve, a->state_type,
									 a->initial, a->initial_isnull);
	}
}

/*
 * Load: the newest usable snapshot, then the tail.  *snapshots_usable
 * (when not NULL) tells whether the stream may have snapshots at all.
 */
int64
es_load(EsFold *f, const EsCatalog *cat, const EsLoadArgs *a, Snapshot snapshot,
		bool *snapshots_usable)
{
	int64		snapshot_version = 0;
	EsStreamView view;
	bool		usable;

	/* what read_stream would read: lifecycle state and settings apply */
	es_stream_view(cat, a->stream_id, snapshot, false, &view);
	usable = es_snapshots_usable(&view);

	es_fold_init(f, cat, a->evolve, a->state_type, a->initial, a->initial_isnull);
	if (a->tag != NULL && usable)
	{
		EsSnapshotRow row;

		row.state_type = f->state_type;
		es_snapshot_find(a->stream_id, a->tag, &a->target, snapshot, &row);
		if (row.version > 0)
		{
			es_fold_set_state(f, row.state, row.isnull, false);
			f->version = row.version;
			f->last_event_at = row.last_event_at;
		}
		snapshot_version = row.version;
	}
	es_fold_stream(f, cat, a->stream_id, &a->target, snapshot, &view);
	if (snapshots_usable != NULL)
		*snapshots_usable = usable;
	return snapshot_version;
}

/*
 * eventstore.load_state(stream_id, evolve, initial anyelement, to_version,
 *		as_of, use_snapshots, snapshot_tag,
 *		OUT state anyelement, OUT version bigint, OUT snapshot_version bigint)
 */
PG_FUNCTION_INFO_V1(eventstore_load_state);
Datum
eventstore_load_state(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat;
	EsLoadArgs	a;
	EsFold		f;
	int64		snapshot_version;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	es_load_args(fcinfo, &a, 3, 4, 5, 6);
	cat = es_stream_catalog(es_catalog(), a.stream_id);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	snapshot_version = es_load(&f, cat, &a, GetActiveSnapshot(), NULL);

	values[0] = es_fold_result(&f);
	nulls[0] = f.isnull;
	values[1] = Int64GetDatum(f.version);
	values[2] = Int64GetDatum(snapshot_version);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * eventstore.aggregate_stream(stream_id, evolve, initial anyelement,
 *		to_version, as_of, use_snapshots, snapshot_tag) returns anyelement
 */
PG_FUNCTION_INFO_V1(eventstore_aggregate_stream);
Datum
eventstore_aggregate_stream(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat;
	EsLoadArgs	a;
	EsFold		f;

	es_load_args(fcinfo, &a, 3, 4, 5, 6);
	cat = es_stream_catalog(es_catalog(), a.stream_id);
	(void) es_load(&f, cat, &a, GetActiveSnapshot(), NULL);
	if (f.isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(es_fold_result(&f));
}

/*
 * eventstore.take_snapshot(stream_id, evolve, initial anyelement,
 *		to_version, snapshot_tag) returns bigint
 *
 * Fold the stream (from its newest snapshot) and store the state at the
 * version reached; returns that version, 0 for an empty stream (nothing
 * stored).
 */
PG_FUNCTION_INFO_V1(eventstore_take_snapshot);
Datum
eventstore_take_snapshot(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat;
	EsLoadArgs	a;
	EsFold		f;
	int64		snapshot_version;
	bool		usable;

	es_load_args(fcinfo, &a, 3, -1, -1, 4);
	cat = es_stream_catalog(es_catalog(), a.stream_id);
	snapshot_version = es_load(&f, cat, &a, GetActiveSnapshot(), &usable);
	if (!usable)
		PG_RETURN_INT64(0);	/* settings hide events: no snapshot */
	if (f.version > 0 && f.version != snapshot_version)
	{
		EsSnapshotRow row;

		row.version = f.version;
		row.state_type = f.state_type;
		row.state = es_fold_result(&f);
		row.isnull = f.isnull;
		row.last_event_at = f.last_event_at;
		es_snapshot_store(a.stream_id, a.tag, &row);
	}
	PG_RETURN_INT64(f.version);
}

/*
 * eventstore.snapshot_tag(evolve, initial anyelement, snapshot_tag) returns
 * text: the tag the snapshots of that fold are stored under.
 */
PG_FUNCTION_INFO_V1(eventstore_snapshot_tag);
Datum
eventstore_snapshot_tag(PG_FUNCTION_ARGS)
{
	EsLoadArgs	a;

	es_fold_args(fcinfo, 0, 1, &a);
	PG_RETURN_TEXT_P(cstring_to_text(es_snapshot_tag_arg(fcinfo, 2, a.evolve, a.state_type,
														 a.initial, a.initial_isnull)));
}

/* ---------------------------------------------------------------------
 * eventstore.fold(event, evolve, initial): the fold as an aggregate
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(eventstore_fold_step);
Datum
eventstore_fold_step(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	EsFold	   *f;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("eventstore._fold_step() must be called as an aggregate")));

	if (PG_ARGISNULL(0))
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(aggcxt);
		EsLoadArgs	a;

		es_fold_args(fcinfo, 2, 3, &a);
		f = palloc0(sizeof(EsFold));
		es_fold_init(f, es_catalog(), a.evolve, a.state_type, a.initial, a.initial_isnull);
		MemoryContextSwitchTo(oldcxt);
	}
	else
		f = (EsFold *) PG_GETARG_POINTER(0);

	/* a NULL event (an outer join's empty side) changes nothing */
	if (!PG_ARGISNULL(1))
		es_fold_event(f, PG_GETARG_DATUM(1));

	PG_RETURN_POINTER(f);
}

PG_FUNCTION_INFO_V1(eventstore_fold_final);
Datum
eventstore_fold_final(PG_FUNCTION_ARGS)
{
	EsFold	   *f;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();		/* no rows */
	f = (EsFold *) PG_GETARG_POINTER(0);
	if (f->isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(es_fold_result(f));
}

