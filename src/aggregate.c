/*-------------------------------------------------------------------------
 *
 * aggregate.c
 *	  State from events: folding a stream with a user's evolve function
 *	  (up to a version or as of a time), snapshots of folded state, and
 *	  command handling (load, decide, append with the loaded version).
 *
 * A fold streams the stream's events through the (stream_id,
 * stream_version) index and calls evolve(state, event) for each; the state
 * lives in one of two memory contexts that take turns, so a fold of any
 * length holds two states at most.
 *
 * Snapshots store a folded state as text (the state type's output
 * function), with a tag naming the fold: by default an MD5 of the evolve
 * function's signature and source, the state type and the initial state,
 * so replacing the evolve function makes older snapshots unusable rather
 * than wrong.  A load starts from the newest usable snapshot at or below
 * its target and folds only the tail.  States are written and read as
 * text under fixed settings (es_state_io_begin), so that a session reads
 * back exactly what another one wrote.
 *
 * src/aggregate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "eventstore.h"

/* The query that finds a load's snapshot, prepared once per backend. */
static SPIPlanPtr es_snapshot_lookup_plan = NULL;

/* A fold in progress. */
typedef struct EsFold
{
	FmgrInfo	evolve;
	Oid			state_type;
	int16		typlen;
	bool		typbyval;
	Datum		state;
	bool		isnull;
	MemoryContext state_cxt[2]; /* the state lives in state_cxt[cur] */
	int			cur;
	MemoryContext event_cxt;	/* reset per event */
	TupleDesc	event_desc;
	int64		version;		/* last version folded in (or snapshot's) */
	TimestampTz last_event_at;	/* newest created_at folded in */
	int64		events;			/* events folded by this fold */
} EsFold;

/* What to fold: which versions, as of when. */
typedef struct EsTarget
{
	int64		to_version;		/* PG_INT64_MAX: to the end */
	bool		has_as_of;
	TimestampTz as_of;
} EsTarget;

/*
 * Check that evolve can be called as evolve(state_type, eventstore.event)
 * returning state_type (polymorphic declarations allowed).
 */
static void
es_check_evolve(Oid evolve, Oid state_type, Oid event_typid)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(evolve));
	Form_pg_proc proc;
	bool		ok;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("evolve function %u does not exist", evolve)));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	ok = proc->pronargs == 2 && !proc->proretset && proc->prokind == PROKIND_FUNCTION &&
		(proc->proargtypes.values[0] == state_type ||
		 IsPolymorphicType(proc->proargtypes.values[0])) &&
		proc->proargtypes.values[1] == event_typid &&
		(proc->prorettype == state_type || IsPolymorphicType(proc->prorettype));
	ReleaseSysCache(tuple);

	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("evolve function %s must take (%s, eventstore.event) and return %s",
						format_procedure(evolve), format_type_be(state_type),
						format_type_be(state_type))));
	/* the fold calls it for the caller, who must be entitled to */
	es_check_user_function(evolve, GetUserId(), "evolve function");
}

static void
es_fold_init(EsFold *f, const EsCatalog *cat, Oid evolve, Oid state_type,
			 Datum initial, bool initial_isnull)
{
	FuncExpr   *expr;
	Const	   *state_arg;
	Const	   *event_arg;

	es_check_evolve(evolve, state_type, cat->event_typid);

	f->state_type = state_type;
	get_typlenbyval(state_type, &f->typlen, &f->typbyval);
	fmgr_info(evolve, &f->evolve);
	/* lets polymorphic evolve functions resolve their types */
	state_arg = makeNullConst(state_type, -1, InvalidOid);
	event_arg = makeNullConst(cat->event_typid, -1, InvalidOid);
	expr = makeFuncExpr(evolve, state_type, list_make2(state_arg, event_arg),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_set_expr((Node *) expr, &f->evolve);

	f->state_cxt[0] = AllocSetContextCreate(CurrentMemoryContext, "eventstore fold state",
											ALLOCSET_DEFAULT_SIZES);
	f->state_cxt[1] = AllocSetContextCreate(CurrentMemoryContext, "eventstore fold state",
											ALLOCSET_DEFAULT_SIZES);
	f->event_cxt = AllocSetContextCreate(CurrentMemoryContext, "eventstore fold event",
										 ALLOCSET_DEFAULT_SIZES);
	f->cur = 0;
	f->isnull = initial_isnull;
	f->state = initial_isnull ? (Datum) 0 :
		datumCopy(initial, f->typbyval, f->typlen);
	f->event_desc = lookup_rowtype_tupdesc_copy(cat->event_typid, -1);
	f->version = 0;
	f->last_event_at = DT_NOBEGIN;
	f->events = 0;
}

/* Replace the fold's state, e.g. by a snapshot's. */
static void
es_fold_set_state(EsFold *f, Datum state, bool isnull)
{
	int			next = 1 - f->cur;

	MemoryContextReset(f->state_cxt[next]);
	if (isnull)
		f->state = (Datum) 0;
	else
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(f->state_cxt[next]);

		f->state = datumCopy(state, f->typbyval, f->typlen);
		MemoryContextSwitchTo(oldcxt);
	}
	f->isnull = isnull;
	MemoryContextReset(f->state_cxt[f->cur]);
	f->cur = next;
}

/* state := evolve(state, event) */
static void
es_fold_event(EsFold *f, Datum event)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;
	MemoryContext oldcxt;

	/* a strict evolve leaves a NULL state NULL */
	if (f->isnull && f->evolve.fn_strict)
		return;

	oldcxt = MemoryContextSwitchTo(f->event_cxt);
	InitFunctionCallInfoData(*fcinfo, &f->evolve, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = f->state;
	fcinfo->args[0].isnull = f->isnull;
	fcinfo->args[1].value = event;
	fcinfo->args[1].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	MemoryContextSwitchTo(oldcxt);

	es_fold_set_state(f, result, fcinfo->isnull);
	MemoryContextReset(f->event_cxt);
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
static void
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
		/*
		 * Out-of-line values are fetched when the composite datum is built
		 * (HeapTupleGetDatum flattens it), so the event stands alone.
		 */
		es_fold_event(f, es_event_datum(f->event_desc, slot->tts_values,
										 slot->tts_isnull));
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
 * The text of a value depends on settings (DateStyle, IntervalStyle,
 * extra_float_digits, TimeZone): a date written under 'SQL, DMY' reads
 * back as another date under 'SQL, MDY', a float written with
 * extra_float_digits = 0 loses bits, and a tag computed from a timestamptz
 * would differ between time zones.  States and initial states go to and
 * from text under fixed settings; es_state_io_end() restores the
 * session's.
 */
static int
es_state_io_begin(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("datestyle", "ISO", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "3", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("timezone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

static void
es_state_io_end(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

/*
 * The tag under which a fold's snapshots are stored: SHA-256 of what
 * decides the state -- the evolve function's qualified signature and
 * source (for an SQL-standard body, the parsed body), the state type and
 * the initial state -- and of the caller's explicit tag, if any.  An
 * explicit tag only tells versions of a fold apart (a C evolve, or one
 * whose callees change); it can never name another fold's snapshots, so a
 * snapshot one role takes can never change what another role's fold
 * returns.
 */
static char *
es_snapshot_tag(Oid evolve, Oid state_type, Datum initial, bool initial_isnull,
				const char *explicit_tag)
{
	StringInfoData buf;
	HeapTuple	tuple;
	Datum		src;
	bool		isnull;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	pg_cryptohash_ctx *ctx;

	initStringInfo(&buf);
	/* qualified names: the tag must not depend on the search_path */
	appendStringInfo(&buf, "%s|%s|", format_procedure_qualified(evolve),
					 format_type_be_qualified(state_type));
	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(evolve));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("evolve function %u does not exist", evolve)));
	src = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_prosrc, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(src));
	/* RETURN ... and BEGIN ATOMIC bodies leave prosrc empty */
	src = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_prosqlbody, &isnull);
	if (!isnull)
	{
		appendStringInfoChar(&buf, '|');
		appendStringInfoString(&buf, TextDatumGetCString(src));
	}
	ReleaseSysCache(tuple);
	appendStringInfoChar(&buf, '|');
	if (initial_isnull)
		appendStringInfoString(&buf, "NULL");
	else
	{
		Oid			typoutput;
		bool		typisvarlena;
		int			nestlevel;
		char	   *text;

		getTypeOutputInfo(state_type, &typoutput, &typisvarlena);
		nestlevel = es_state_io_begin();
		text = OidOutputFunctionCall(typoutput, initial);
		es_state_io_end(nestlevel);
		/* length first: no initial state can run into the explicit tag */
		appendStringInfo(&buf, "%zu:%s", strlen(text), text);
	}
	if (explicit_tag != NULL)
		appendStringInfo(&buf, "|tag:%s", explicit_tag);

	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (uint8 *) buf.data, buf.len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	hex_encode((char *) digest, sizeof(digest), hex);
	hex[PG_SHA256_DIGEST_LENGTH * 2] = '\0';
	pfree(buf.data);
	return hex;
}

/*
 * Snapshots are read and written as the owner of eventstore.snapshots:
 * whoever may call the functions needs no privileges on the table, as for
 * the events table.  Only the extension's own queries run as the owner:
 * states are converted from and to text (which may run a domain's checks)
 * as the caller, outside those queries.
 */
static Oid
es_snapshots_owner(void)
{
	const EsCatalog *cat = es_catalog();
	Oid			relid = get_relname_relid("snapshots", cat->namespace_oid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"eventstore.snapshots\" does not exist")));
	return es_relation_owner(relid);
}

/*
 * Start a fold from the newest usable snapshot of the stream with this tag
 * at or below the target.  Returns the snapshot's version (0: none).
 */
static int64
es_fold_from_snapshot(EsFold *f, text *stream_id, const char *tag,
					  const EsTarget *target, Snapshot snapshot)
{
	Datum		args[5];
	Oid			argtypes[5] = {TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, REGTYPEOID};
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int64		version = 0;
	char	   *state_text = NULL;
	TimestampTz last_event_at = 0;
	MemoryContext callercxt = CurrentMemoryContext;
	EsGuard		guard;
	int			ret;

	args[0] = PointerGetDatum(stream_id);
	args[1] = CStringGetTextDatum(tag);
	args[2] = Int64GetDatum(target->to_version);
	args[3] = TimestampTzGetDatum(target->as_of);
	if (!target->has_as_of)
		nulls[3] = 'n';
	args[4] = ObjectIdGetDatum(f->state_type);

	/*
	 * An explicit tag may be shared by folds of different state types: a
	 * snapshot is only ever read as the type it was written as.
	 */
	es_spi_begin(&guard, es_snapshots_owner());
	if (es_snapshot_lookup_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare("SELECT stream_version, state, last_event_at"
									   "  FROM eventstore.snapshots"
									   " WHERE stream_id OPERATOR(pg_catalog.=) $1"
									   "   AND tag OPERATOR(pg_catalog.=) $2"
									   "   AND stream_version OPERATOR(pg_catalog.<=) $3"
									   "   AND ($4 IS NULL OR last_event_at OPERATOR(pg_catalog.<=) $4)"
									   "   AND state_type OPERATOR(pg_catalog.=) $5"
									   " ORDER BY stream_version DESC LIMIT 1",
									   5, argtypes);

		if (plan == NULL)
			elog(ERROR, "could not prepare the snapshot lookup: %s",
				 SPI_result_code_string(SPI_result));
		/* the plan cache re-plans it if the extension is re-created */
		SPI_keepplan(plan);
		es_snapshot_lookup_plan = plan;
	}
	ret = SPI_execute_snapshot(es_snapshot_lookup_plan, args, nulls, snapshot,
							   InvalidSnapshot, true, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read eventstore.snapshots: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext oldcxt = MemoryContextSwitchTo(callercxt);

		version = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		d = SPI_getbinval(tup, desc, 2, &isnull);
		if (!isnull)
			state_text = TextDatumGetCString(d);
		last_event_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
		MemoryContextSwitchTo(oldcxt);
	}
	es_spi_end(&guard);

	if (version > 0)
	{
		Datum		state = (Datum) 0;

		if (state_text != NULL)
		{
			Oid			typinput;
			Oid			typioparam;
			int			nestlevel;

			getTypeInputInfo(f->state_type, &typinput, &typioparam);
			nestlevel = es_state_io_begin();
			state = OidInputFunctionCall(typinput, state_text, typioparam, -1);
			es_state_io_end(nestlevel);
		}
		es_fold_set_state(f, state, state_text == NULL);
		f->version = version;
		f->last_event_at = last_event_at;
	}
	return version;
}

/* Arguments common to load_state, aggregate_stream and take_snapshot. */
typedef struct EsLoadArgs
{
	text	   *stream_id;
	Oid			evolve;
	Oid			state_type;
	Datum		initial;
	bool		initial_isnull;
	EsTarget	target;
	char	   *tag;			/* NULL: no snapshots */
} EsLoadArgs;

/* The snapshot tag of a fold, from its snapshot_tag argument (or none). */
static char *
es_tag_arg(FunctionCallInfo fcinfo, int tag_arg, const EsLoadArgs *a)
{
	char	   *explicit_tag = NULL;

	if (tag_arg >= 0 && !PG_ARGISNULL(tag_arg))
	{
		explicit_tag = text_to_cstring(PG_GETARG_TEXT_PP(tag_arg));
		if (explicit_tag[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("snapshot_tag must not be empty")));
	}
	return es_snapshot_tag(a->evolve, a->state_type, a->initial,
						   a->initial_isnull, explicit_tag);
}

static void
es_load_args(FunctionCallInfo fcinfo, EsLoadArgs *a, int to_version_arg,
			 int as_of_arg, int use_snapshots_arg, int tag_arg)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream_id must not be NULL")));
	a->stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(a->stream_id);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("evolve must not be NULL")));
	a->evolve = PG_GETARG_OID(1);
	a->state_type = get_fn_expr_argtype(fcinfo->flinfo, 2);
	if (!OidIsValid(a->state_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("could not determine the type of the initial state")));
	a->initial_isnull = PG_ARGISNULL(2);
	a->initial = a->initial_isnull ? (Datum) 0 : PG_GETARG_DATUM(2);

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
		a->tag = es_tag_arg(fcinfo, tag_arg, a);
	}
}

/*
 * Whether the stream's settings (max count, max age, truncate before) hide
 * events: then which events a fold sees changes without an append (a
 * setting changes, the window slides, time passes), and a snapshot, which
 * holds the events folded when it was taken, can be neither trusted nor
 * taken.
 */
static bool
es_view_windowed(const EsStreamView *view)
{
	const EsStreamRules *r = &view->rules;

	return r->found && (r->max_count > 0 || r->truncate_before > 0 || r->has_max_age);
}

/*
 * Load: the newest usable snapshot, then the tail.  *snapshots_usable
 * (when not NULL) tells whether the stream may have snapshots at all.
 */
static int64
es_load(EsFold *f, const EsCatalog *cat, const EsLoadArgs *a, Snapshot snapshot,
		bool *snapshots_usable)
{
	int64		snapshot_version = 0;
	EsStreamView view;
	bool		usable;

	/* what read_stream would read: lifecycle state and settings apply */
	es_stream_view(cat, a->stream_id, snapshot, false, &view);
	usable = !es_view_windowed(&view);

	es_fold_init(f, cat, a->evolve, a->state_type, a->initial, a->initial_isnull);
	if (a->tag != NULL && usable)
		snapshot_version = es_fold_from_snapshot(f, a->stream_id, a->tag, &a->target, snapshot);
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
	const EsCatalog *cat = es_catalog();
	EsLoadArgs	a;
	EsFold		f;
	int64		snapshot_version;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	es_load_args(fcinfo, &a, 3, 4, 5, 6);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	snapshot_version = es_load(&f, cat, &a, GetActiveSnapshot(), NULL);

	values[0] = f.state;
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
	const EsCatalog *cat = es_catalog();
	EsLoadArgs	a;
	EsFold		f;

	es_load_args(fcinfo, &a, 3, 4, 5, 6);
	(void) es_load(&f, cat, &a, GetActiveSnapshot(), NULL);
	if (f.isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(f.state);
}

/* Store a folded state (in the current transaction). */
static void
es_store_snapshot(text *stream_id, const char *tag, EsFold *f)
{
	Datum		args[6];
	Oid			argtypes[6] = {TEXTOID, TEXTOID, INT8OID, REGTYPEOID, TEXTOID, TIMESTAMPTZOID};
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int			ret;
	EsGuard		guard;

	args[0] = PointerGetDatum(stream_id);
	args[1] = CStringGetTextDatum(tag);
	args[2] = Int64GetDatum(f->version);
	args[3] = ObjectIdGetDatum(f->state_type);
	if (f->isnull)
	{
		args[4] = (Datum) 0;
		nulls[4] = 'n';
	}
	else
	{
		Oid			typoutput;
		bool		typisvarlena;
		int			nestlevel;

		getTypeOutputInfo(f->state_type, &typoutput, &typisvarlena);
		nestlevel = es_state_io_begin();
		args[4] = CStringGetTextDatum(OidOutputFunctionCall(typoutput, f->state));
		es_state_io_end(nestlevel);
	}
	args[5] = TimestampTzGetDatum(f->last_event_at);

	es_spi_begin(&guard, es_snapshots_owner());
	ret = SPI_execute_with_args("INSERT INTO eventstore.snapshots"
								" (stream_id, tag, stream_version, state_type, state, last_event_at)"
								" VALUES ($1, $2, $3, $4, $5, $6)"
								" ON CONFLICT (stream_id, tag, state_type, stream_version) DO NOTHING",
								6, argtypes, args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not store a snapshot: %s", SPI_result_code_string(ret));
	es_spi_end(&guard);
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
	const EsCatalog *cat = es_catalog();
	EsLoadArgs	a;
	EsFold		f;
	int64		snapshot_version;
	bool		usable;

	es_load_args(fcinfo, &a, 3, -1, -1, 4);
	snapshot_version = es_load(&f, cat, &a, GetActiveSnapshot(), &usable);
	if (!usable)
		PG_RETURN_INT64(0);	/* settings hide events: no snapshot */
	if (f.version > 0 && f.version != snapshot_version)
		es_store_snapshot(a.stream_id, a.tag, &f);
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

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("evolve must not be NULL")));
	a.evolve = PG_GETARG_OID(0);
	a.state_type = get_fn_expr_argtype(fcinfo->flinfo, 1);
	if (!OidIsValid(a.state_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("could not determine the type of the initial state")));
	a.initial_isnull = PG_ARGISNULL(1);
	a.initial = a.initial_isnull ? (Datum) 0 : PG_GETARG_DATUM(1);
	PG_RETURN_TEXT_P(cstring_to_text(es_tag_arg(fcinfo, 2, &a)));
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
		Oid			state_type = get_fn_expr_argtype(fcinfo->flinfo, 3);

		if (PG_ARGISNULL(2))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("evolve must not be NULL")));
		if (!OidIsValid(state_type))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("could not determine the type of the initial state")));
		f = palloc0(sizeof(EsFold));
		es_fold_init(f, es_catalog(), PG_GETARG_OID(2), state_type,
					 PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3), PG_ARGISNULL(3));
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
	PG_RETURN_DATUM(f->state);
}

/* ---------------------------------------------------------------------
 * Command handling
 * ---------------------------------------------------------------------
 */

static void
es_check_decide(Oid decide, Oid state_type)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(decide));
	Form_pg_proc proc;
	bool		ok;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("decide function %u does not exist", decide)));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	ok = proc->pronargs == 2 && !proc->proretset && proc->prokind == PROKIND_FUNCTION &&
		proc->proargtypes.values[0] == JSONBOID &&
		(proc->proargtypes.values[1] == state_type ||
		 IsPolymorphicType(proc->proargtypes.values[1])) &&
		proc->prorettype == JSONBOID;
	ReleaseSysCache(tuple);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("decide function %s must take (jsonb, %s) and return jsonb",
						format_procedure(decide), format_type_be(state_type))));
	es_check_user_function(decide, GetUserId(), "decide function");
}

/*
 * eventstore.handle_command(stream_id, decide, command jsonb, evolve,
 *		initial anyelement, max_retries, use_snapshots, snapshot_tag,
 *		OUT version bigint, OUT state anyelement, OUT appended integer)
 *
 * Load the state (snapshot + tail), call decide(command, state) for the
 * events to append (a JSON array as append_events takes), append them with
 * the loaded version as the expected version, and fold them into the state.
 * On a version conflict (a concurrent append) load again and decide again,
 * at most max_retries times; then the conflict (ST001) is raised.
 */
PG_FUNCTION_INFO_V1(eventstore_handle_command);
Datum
eventstore_handle_command(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat = es_catalog();
	EsLoadArgs	a;
	Oid			decide;
	Jsonb	   *command;
	int			max_retries;
	FmgrInfo	decide_flinfo;
	FuncExpr   *expr;
	Const	   *command_arg;
	Const	   *state_arg;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	EsFold		f;
	int64		appended = 0;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	/* arguments: 0 stream_id, 1 decide, 2 command, 3 evolve, 4 initial */
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream_id must not be NULL")));
	a.stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(a.stream_id);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("decide and evolve must not be NULL")));
	decide = PG_GETARG_OID(1);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("command must not be NULL")));
	command = PG_GETARG_JSONB_P(2);
	a.evolve = PG_GETARG_OID(3);
	a.state_type = get_fn_expr_argtype(fcinfo->flinfo, 4);
	if (!OidIsValid(a.state_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("could not determine the type of the initial state")));
	a.initial_isnull = PG_ARGISNULL(4);
	a.initial = a.initial_isnull ? (Datum) 0 : PG_GETARG_DATUM(4);
	max_retries = PG_ARGISNULL(5) ? 3 : PG_GETARG_INT32(5);
	if (max_retries < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_retries must not be negative")));
	a.target.to_version = PG_INT64_MAX;
	a.target.has_as_of = false;
	a.target.as_of = 0;
	a.tag = NULL;
	if (PG_ARGISNULL(6) || PG_GETARG_BOOL(6))
		a.tag = es_tag_arg(fcinfo, 7, &a);

	es_check_decide(decide, a.state_type);
	fmgr_info(decide, &decide_flinfo);
	command_arg = makeNullConst(JSONBOID, -1, InvalidOid);
	state_arg = makeNullConst(a.state_type, -1, InvalidOid);
	expr = makeFuncExpr(decide, JSONBOID, list_make2(command_arg, state_arg),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_set_expr((Node *) expr, &decide_flinfo);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	for (int attempt = 0;; attempt++)
	{
		volatile bool conflict = false;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			Snapshot	snapshot;
			int64		loaded;
			Datum		events;
			LOCAL_FCINFO(dfcinfo, 2);

			/*
			 * The first attempt sees what the caller's statement sees, and
			 * what the statement itself has written so far (an earlier
			 * command on the same stream): the append checks the version
			 * against those writes too, and would otherwise report a
			 * conflict with the caller's own transaction.  A retry must see
			 * the append that beat it.
			 */
			if (attempt == 0 || IsolationUsesXactSnapshot())
			{
				CommandCounterIncrement();
				PushCopiedSnapshot(GetActiveSnapshot());
				UpdateActiveSnapshotCommandId();
				snapshot = RegisterSnapshot(GetActiveSnapshot());
				PopActiveSnapshot();
			}
			else
				snapshot = RegisterSnapshot(GetLatestSnapshot());
			(void) es_load(&f, cat, &a, snapshot, NULL);
			UnregisterSnapshot(snapshot);
			loaded = f.version;

			InitFunctionCallInfoData(*dfcinfo, &decide_flinfo, 2, InvalidOid, NULL, NULL);
			dfcinfo->args[0].value = JsonbPGetDatum(command);
			dfcinfo->args[0].isnull = false;
			dfcinfo->args[1].value = f.state;
			dfcinfo->args[1].isnull = f.isnull;
			events = FunctionCallInvoke(dfcinfo);
			if (dfcinfo->isnull)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("decide function %s returned NULL", format_procedure(decide)),
						 errhint("Return '[]' to append nothing.")));

			appended = es_append_events_jsonb(a.stream_id, DatumGetJsonbP(events),
											  true, loaded);
			if (appended > 0)
			{
				/* fold what was appended: our own inserts, seen after a CCI */
				EsStreamView view;

				CommandCounterIncrement();
				snapshot = RegisterSnapshot(GetLatestSnapshot());
				es_stream_view(cat, a.stream_id, snapshot, false, &view);
				es_fold_stream(&f, cat, a.stream_id, &a.target, snapshot, &view);
				UnregisterSnapshot(snapshot);
			}
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			/*
			 * Leave the subtransaction before anything else: an error
			 * thrown with it still open would leave the caller's
			 * transaction in an aborted subtransaction.
			 */
			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;

			if (edata->sqlerrcode != ERRCODE_ES_WRONG_EXPECTED_VERSION ||
				attempt >= max_retries || IsolationUsesXactSnapshot())
				ReThrowError(edata);
			FreeErrorData(edata);
			conflict = true;
		}
		PG_END_TRY();

		if (!conflict)
			break;
		CHECK_FOR_INTERRUPTS();
	}

	values[0] = Int64GetDatum(f.version);
	values[1] = f.state;
	nulls[1] = f.isnull;
	values[2] = Int64GetDatum(appended);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
