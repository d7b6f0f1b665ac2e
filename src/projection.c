/*-------------------------------------------------------------------------
 *
 * projection.c
 *	  Projections: handlers fed with events, inside the append transaction
 *	  (inline) or by the background worker from a checkpoint (async).
 *
 * The definitions live in eventstore.projections.  Each backend keeps them
 * in a cache that a statement trigger on the table invalidates (through a
 * relcache invalidation of the table, which every backend processes when
 * it next locks a relation).
 *
 * Inline projections and concurrent changes.  An append takes ROW SHARE on
 * eventstore.projections before it locks its stream, holds it to the end of
 * its transaction, and only then consults the cache; taking the lock
 * processes pending invalidations, so the cache is current.  Every change
 * of a definition (create, drop, enable, disable, rebuild, going live after
 * a catch-up) runs under EXCLUSIVE on the table.  Hence a change waits
 * until no appending transaction that decided under the old definition is
 * in flight, and every append that starts deciding later sees the new one:
 * there is a sharp line in the log between events handled inline and
 * events left to the worker.
 *
 * Catching up.  A newly created inline projection with history to replay,
 * one that is re-enabled after missing events, and one being rebuilt are
 * "catching up": appends leave them alone while the worker replays the
 * log into them from their checkpoint, up to the global-log horizon (so
 * nothing committed is skipped).  Once a batch finds nothing more below the
 * horizon, the worker takes EXCLUSIVE, which waits for every appender that
 * left the handler alone; the rest of the log after the checkpoint is then
 * committed, so one scan under a fresh snapshot handles it, and the
 * projection goes live in the same transaction.
 *
 * Async projections are run by the worker in batches; each batch calls the
 * handler for its events and advances the checkpoint in one transaction, so
 * every event affects the read model exactly once.  A failing batch is
 * rolled back, the error and the failing position are recorded, and the
 * worker retries after an exponential backoff -- first committing the
 * events before the failing one, so a poison event holds back only itself
 * and what follows it.
 *
 * src/projection.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "eventstore.h"

/* GUCs */
static int	es_projection_batch_size = 1000;
static int	es_projection_retry_delay = 1000;	/* ms, doubled per failure */

/* The longest backoff between two attempts of a failing projection. */
#define ES_MAX_RETRY_DELAY_MS	(5 * 60 * 1000)

/*
 * The projection cache.  A reload puts the previous cache aside until the
 * end of the transaction: an append in progress (or one nested in a
 * handler) may still point into it.
 */
static MemoryContext es_proj_cxt = NULL;
static MemoryContext es_proj_old = NULL;
static EsProjection *es_projs = NULL;
static int	es_nprojs = 0;
static bool es_proj_valid = false;
static bool es_proj_callbacks = false;
static Oid	es_proj_relid = InvalidOid;

/* Bumped by every invalidation; lets the worker notice changes cheaply. */
uint64		es_projection_generation = 0;

/* The event a projection handler is working on, for error reports. */
int64		es_projecting_position = 0;

static void
es_proj_relcache_callback(Datum arg, Oid relid)
{
	/* before the table is known, any invalidation may be its creation */
	if (!OidIsValid(relid) || relid == es_proj_relid || !OidIsValid(es_proj_relid))
	{
		es_proj_valid = false;
		es_projection_generation++;
	}
}

static void
es_proj_xact_callback(XactEvent event, void *arg)
{
	if (es_proj_old != NULL &&
		(event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		 event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_COMMIT ||
		 event == XACT_EVENT_PARALLEL_ABORT))
	{
		MemoryContextDelete(es_proj_old);
		es_proj_old = NULL;
	}
}

static void
es_proj_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	/* a handler may have been dropped or replaced */
	es_proj_valid = false;
	es_projection_generation++;
}

/* Copy a text Datum into the cache as a NUL-terminated string. */
static char *
es_cache_text(Datum d, int *len)
{
	text	   *t = DatumGetTextPP(d);

	*len = VARSIZE_ANY_EXHDR(t);
	return MemoryContextStrdup(es_proj_cxt, text_to_cstring(t));
}

/*
 * Load the definitions, in the order handlers run (priority, then name).
 * The caller holds a lock on eventstore.projections, so the latest
 * committed state is the one that holds for it: read it with a fresh
 * snapshot, whatever the isolation level of the transaction.
 */
static void
es_projections_load(const EsCatalog *cat)
{
	SPIPlanPtr	plan;
	Snapshot	snapshot;
	int			ret;
	EsGuard		guard;
	uint64		generation;
	bool		has_search_path;
	bool		by_name;
	char	   *query;

	if (es_proj_cxt != NULL)
	{
		if (es_proj_old == NULL)
			es_proj_old = es_proj_cxt;
		else
			MemoryContextSetParent(es_proj_cxt, es_proj_old);
	}
	es_proj_cxt = AllocSetContextCreate(CacheMemoryContext,
										"eventstore projections",
										ALLOCSET_SMALL_SIZES);

	/*
	 * The cache becomes valid only once the load has succeeded, and only if
	 * no invalidation arrived meanwhile (the next caller reads again then).
	 * An error part-way leaves it invalid: a failed load must never pass
	 * for "no projections".
	 */
	es_proj_valid = false;
	es_proj_relid = cat->projections_relid;
	es_projs = NULL;
	es_nprojs = 0;
	generation = es_projection_generation;

	/*
	 * Before version 0.4.0 nothing was recorded: handlers ran under the
	 * server's default path, and do so until the update.  Before 0.7.0 the
	 * handler was a regprocedure; since, it is kept by name and owner and
	 * found again here (NULL, so InvalidOid, when it is gone).
	 */
	has_search_path = get_attnum(cat->projections_relid, "search_path") != InvalidAttrNumber;
	by_name = get_attnum(cat->projections_relid, "handler_owner") != InvalidAttrNumber;

	/*
	 * Appending roles need no privileges on the table: read it as its
	 * owner, as the RI triggers read referenced tables.
	 */
	es_spi_begin(&guard, es_relation_owner(cat->projections_relid));
	query = psprintf("SELECT p.name, h.fn, p.event_types, p.stream_prefix,"
					 "       p.mode OPERATOR(pg_catalog.=) 'inline', p.enabled, p.catching_up,"
					 "       p.owner::pg_catalog.oid,"
					 "       coalesce((SELECT f.pronargs OPERATOR(pg_catalog.=) 2 FROM pg_catalog.pg_proc f"
					 "                  WHERE f.oid OPERATOR(pg_catalog.=) h.fn), false),"
					 "       %s"
					 "  FROM eventstore.projections p,"
					 "       LATERAL (SELECT %s AS fn) h"
					 " ORDER BY p.priority, p.name",
					 has_search_path ? "p.search_path" : "'\"$user\", public'::pg_catalog.text",
					 by_name ?
					 "eventstore._function_by_name(p.handler, p.handler_owner)::pg_catalog.oid" :
					 "p.handler::pg_catalog.oid");
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the projection query: %s",
			 SPI_result_code_string(SPI_result));
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	ret = SPI_execute_snapshot(plan, NULL, NULL, snapshot, InvalidSnapshot,
							   true, false, 0);
	UnregisterSnapshot(snapshot);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read eventstore.projections: %s",
			 SPI_result_code_string(ret));

	if (SPI_processed > 0)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		EsProjection *projs;

		projs = MemoryContextAllocZero(es_proj_cxt,
									   SPI_processed * sizeof(EsProjection));
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			EsProjection *p = &projs[i];
			bool		isnull;
			Datum		d;
			int			len;

			p->name = es_cache_text(SPI_getbinval(tup, desc, 1, &isnull), &len);
			p->handler = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
			d = SPI_getbinval(tup, desc, 3, &isnull);
			if (!isnull)
			{
				ArrayType  *arr = DatumGetArrayTypeP(d);
				EsFilter   *f = &p->filter;
				Datum	   *elems;
				bool	   *elem_nulls;
				char	  **types;
				int			n;

				deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
								  &elems, &elem_nulls, &n);
				types = MemoryContextAlloc(es_proj_cxt, n * sizeof(char *));
				f->types = (const char **) types;
				f->type_lens = MemoryContextAlloc(es_proj_cxt, n * sizeof(int));
				for (int j = 0; j < n; j++)
				{
					if (elem_nulls[j])
						continue;
					types[f->ntypes] = es_cache_text(elems[j], &f->type_lens[f->ntypes]);
					f->ntypes++;
				}
				f->has_types = true;
			}
			d = SPI_getbinval(tup, desc, 4, &isnull);
			if (!isnull)
				p->filter.prefix = es_cache_text(d, &p->filter.prefix_len);
			p->is_inline = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
			p->enabled = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
			p->catching_up = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
			p->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 8, &isnull));
			p->pass_name = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
			d = SPI_getbinval(tup, desc, 10, &isnull);
			p->search_path = isnull ? NULL : es_cache_text(d, &len);
		}
		es_projs = projs;
		es_nprojs = (int) SPI_processed;
	}
	SPI_freeplan(plan);
	es_spi_end(&guard);

	es_proj_valid = (generation == es_projection_generation);
}

/*
 * The projections of this database, current for a caller that holds a lock
 * on eventstore.projections.  NULL (and *n = 0) when the installed version
 * of the extension has none.
 */
static void
es_projection_callbacks(void)
{
	if (!es_proj_callbacks)
	{
		CacheRegisterRelcacheCallback(es_proj_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, es_proj_syscache_callback, (Datum) 0);
		RegisterXactCallback(es_proj_xact_callback, NULL);
		es_proj_callbacks = true;
	}
}

EsProjection *
es_projections(const EsCatalog *cat, int *n)
{
	es_projection_callbacks();
	if (!OidIsValid(cat->projections_relid))
	{
		*n = 0;
		return NULL;
	}
	if (!es_proj_valid || es_proj_relid != cat->projections_relid)
		es_projections_load(cat);
	*n = es_nprojs;
	return es_projs;
}

/* ---------------------------------------------------------------------
 * Calling handlers
 * ---------------------------------------------------------------------
 */

typedef struct EsHandlerContext
{
	const char *projection;
	int64		position;
} EsHandlerContext;

static void
es_handler_error_callback(void *arg)
{
	EsHandlerContext *hctx = (EsHandlerContext *) arg;

	errcontext("projection \"%s\", event at global position " INT64_FORMAT,
			   hctx->projection, hctx->position);
}

/*
 * Look up a projection's handler for calls made while "cxt" lives, by
 * "role" (the appender for inline handlers, the creator for the worker's
 * runs): it needs EXECUTE, as for a direct call.  A handler dropped behind
 * the projection's back is an error, never a reason to skip events.
 */
void
es_handler_init(const EsProjection *p, Oid role, FmgrInfo *flinfo, MemoryContext cxt)
{
	char	   *what;

	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(p->handler)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the handler of projection \"%s\" does not exist", p->name),
				 errdetail("The function it was created with has been dropped, or replaced by a function of another role."),
				 errhint("Drop or disable the projection, or re-create it with a new handler.")));
	what = psprintf("handler of projection \"%s\"", p->name);
	es_check_user_function(p->handler, role, what);
	pfree(what);
	fmgr_info_cxt(p->handler, flinfo, cxt);
}

/* Call a handler with one event (a datum of type eventstore.event). */
void
es_handler_call(const EsProjection *p, FmgrInfo *flinfo, Datum event, int64 position)
{
	LOCAL_FCINFO(fcinfo, 2);
	EsHandlerContext hctx;
	ErrorContextCallback errcallback;

	hctx.projection = p->name;
	hctx.position = position;
	errcallback.callback = es_handler_error_callback;
	errcallback.arg = &hctx;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	es_projecting_position = position;
	InitFunctionCallInfoData(*fcinfo, flinfo, p->pass_name ? 2 : 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = event;
	fcinfo->args[0].isnull = false;
	if (p->pass_name)
	{
		fcinfo->args[1].value = CStringGetTextDatum(p->name);
		fcinfo->args[1].isnull = false;
	}
	(void) FunctionCallInvoke(fcinfo);
	es_projecting_position = 0;

	error_context_stack = errcallback.previous;
}

/* An eventstore.event datum from a row of eventstore.events. */
Datum
es_event_datum(TupleDesc event_desc, const Datum *row_values, const bool *row_nulls)
{
	Datum		values[Natts_es_event_type];
	bool		nulls[Natts_es_event_type];

	es_event_to_output(row_values, row_nulls, values, nulls);
	return HeapTupleGetDatum(heap_form_tuple(event_desc, values, nulls));
}

/* ---------------------------------------------------------------------
 * Batches run by the background worker
 * ---------------------------------------------------------------------
 */

/* What the checkpoint row says. */
typedef struct EsCheckpoint
{
	int64		position;
	bool		has_error;		/* error_position is set */
	int64		error_position;
	bool		retry_due;		/* retry_at has passed */
} EsCheckpoint;

static bool
es_read_checkpoint(const char *name, EsCheckpoint *cp)
{
	Datum		arg = CStringGetTextDatum(name);
	Oid			argtype = TEXTOID;
	bool		isnull;
	int			ret;

	ret = SPI_execute_with_args("SELECT position, error_position, coalesce(retry_at <= now(), true)"
								"  FROM eventstore.projection_checkpoints WHERE name = $1",
								1, &argtype, &arg, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the checkpoint of projection \"%s\": %s",
			 name, SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return false;
	cp->position = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	cp->error_position = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 2, &isnull));
	cp->has_error = !isnull;
	cp->retry_due = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 3, &isnull));
	return true;
}

/*
 * Run one batch of a projection in the current transaction: the events
 * after its checkpoint up to "limit", at most max_events of them (0: no
 * limit), under "snapshot".  Returns how many events were handled and
 * moves the checkpoint.  *done is set when nothing matching is left at or
 * below the limit.
 */
static int64
es_project_range(const EsCatalog *cat, const EsProjection *p, EsCheckpoint *cp,
				 int64 limit, Snapshot snapshot, int64 max_events, bool *done)
{
	Relation	heap;
	Relation	index;
	EsEventScan scan;
	TupleTableSlot *slot;
	TupleDesc	event_desc;
	FmgrInfo	flinfo;
	MemoryContext event_cxt;
	MemoryContext oldcxt;
	EsGuard		guard;
	int64		count = 0;
	int64		last = cp->position;
	int64		new_position;
	EsViewCache *views;

	*done = true;
	if (limit <= cp->position)
		return 0;

	heap = table_open(cat->events_relid, AccessShareLock);
	index = index_open(cat->position_index_relid, AccessShareLock);
	event_desc = lookup_rowtype_tupdesc_copy(cat->event_typid, -1);
	es_handler_init(p, p->owner, &flinfo, CurrentMemoryContext);

	event_cxt = AllocSetContextCreate(CurrentMemoryContext,
									  "eventstore projection event",
									  ALLOCSET_DEFAULT_SIZES);
	/* events that stream settings or deletes exclude are not projected */
	views = es_view_cache_create(cat, snapshot);

	/*
	 * Handlers run with the rights of the role that created the projection,
	 * under the search_path it had, and leave nothing behind for the next.
	 */
	es_user_code_begin(&guard, p->owner, p->search_path);

	es_scan_positions_begin(&scan, heap, index, snapshot, cp->position + 1, limit,
							ForwardScanDirection, NULL);
	while ((slot = es_scan_next(&scan)) != NULL)
	{
		bool		isnull;
		int64		position;
		text	   *stream_id;
		text	   *type;

		CHECK_FOR_INTERRUPTS();

		if (max_events > 0 && count >= max_events)
		{
			*done = false;
			break;
		}

		oldcxt = MemoryContextSwitchTo(event_cxt);
		slot_getallattrs(slot);
		position = DatumGetInt64(slot->tts_values[Anum_es_global_position - 1]);
		stream_id = DatumGetTextPP(slot_getattr(slot, Anum_es_stream_id, &isnull));
		type = DatumGetTextPP(slot_getattr(slot, Anum_es_event_type, &isnull));
		if (es_filter_matches(&p->filter, VARDATA_ANY(stream_id), VARSIZE_ANY_EXHDR(stream_id),
								  VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type)) &&
			!es_view_cache_hides(views, stream_id,
								 DatumGetInt64(slot->tts_values[Anum_es_stream_version - 1]),
								 DatumGetTimestampTz(slot->tts_values[Anum_es_created_at - 1])))
		{
			Datum		event = es_event_datum(event_desc, slot->tts_values,
											   slot->tts_isnull);

			es_handler_call(p, &flinfo, event, position);
			count++;
			last = position;
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(event_cxt);
		/* eventstore.progress: how far the projector is (stats.c) */
		es_progress_update(position, -1);
	}
	es_scan_end(&scan);
	es_view_cache_destroy(views);

	es_user_code_end(&guard);

	MemoryContextDelete(event_cxt);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);

	/*
	 * Every matching event up to the limit is handled unless the batch was
	 * cut short; a limit past the end of the log (going live) stops at the
	 * last event.
	 */
	if (!*done)
		new_position = last;
	else if (limit == PG_INT64_MAX)
		new_position = last;
	else
		new_position = limit;

	if (new_position > cp->position)
	{
		Datum		args[3];
		Oid			argtypes[3] = {TEXTOID, INT8OID, INT8OID};
		int			ret;

		args[0] = CStringGetTextDatum(p->name);
		args[1] = Int64GetDatum(new_position);
		args[2] = Int64GetDatum(count);
		ret = SPI_execute_with_args("UPDATE eventstore.projection_checkpoints"
									"   SET position = $2, updated_at = now(),"
									"       events_total = events_total + $3,"
									"       error_count = CASE WHEN $2 >= error_position THEN 0 ELSE error_count END,"
									"       retry_at = CASE WHEN $2 >= error_position THEN NULL ELSE retry_at END,"
									"       error_position = CASE WHEN $2 >= error_position THEN NULL ELSE error_position END"
									" WHERE name = $1",
									3, argtypes, args, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "could not move the checkpoint of projection \"%s\": %s",
				 p->name, SPI_result_code_string(ret));
		cp->position = new_position;
	}

	return count;
}

/*
 * One batch of an async projection on a distributed store, in the current
 * transaction (under es_spi_begin): the matching events of every partition
 * after its entry in the projection's vector checkpoint, at most
 * es_projection_batch_size of each, read on the nodes that hold them by
 * eventstore._pull_partitions (which also says where each partition
 * continues), handled in position order.  The checkpoint moves past the
 * whole pull at once, so a handler's error rolls the batch back and holds
 * the projection back until its retry.  Returns the events handled; *done
 * tells whether no partition had more.
 */
static int64
es_project_partitions(const EsCatalog *cat, const EsProjection *p, bool *done)
{
	Datum		args[4];
	Oid			argtypes[4] = {TEXTOID, INT8OID, JSONBOID, INT8OID};
	bool		isnull;
	int			ret;
	ArrayType  *events;
	Jsonb	   *partitions;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n;
	int64		last = 0;
	FmgrInfo	flinfo;
	MemoryContext event_cxt;
	EsGuard		guard;

	args[0] = CStringGetTextDatum(p->name);
	args[1] = Int64GetDatum(es_projection_batch_size);
	ret = SPI_execute_with_args("SELECT r.events, r.partitions, r.more"
								"  FROM eventstore.projection_checkpoints c"
								"  JOIN eventstore.projections q ON q.name = c.name,"
								"       eventstore._pull_partitions("
								"           coalesce(c.partitions, jsonb_build_object('-2147483648', c.position)),"
								"           $2, q.event_types, q.stream_prefix) r"
								" WHERE c.name = $1",
								2, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the log for projection \"%s\": %s",
			 p->name, SPI_result_code_string(ret));
	/* copies: the handlers run queries of their own */
	events = DatumGetArrayTypePCopy(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
	partitions = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 2, &isnull));
	*done = !DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 3, &isnull));
	SPI_freetuptable(SPI_tuptable);

	deconstruct_array(events, cat->event_typid, -1, false, TYPALIGN_DOUBLE,
					  &elems, &elem_nulls, &n);
	if (n > 0)
	{
		es_handler_init(p, p->owner, &flinfo, CurrentMemoryContext);
		event_cxt = AllocSetContextCreate(CurrentMemoryContext,
										  "eventstore projection event",
										  ALLOCSET_DEFAULT_SIZES);
		es_user_code_begin(&guard, p->owner, p->search_path);
		for (int i = 0; i < n; i++)
		{
			MemoryContext oldcxt;
			int64		position;

			CHECK_FOR_INTERRUPTS();
			oldcxt = MemoryContextSwitchTo(event_cxt);
			/* an element of an array: never toasted on its own */
			position = DatumGetInt64(GetAttributeByNum((HeapTupleHeader) DatumGetPointer(elems[i]),
													   Anum_es_global_position, &isnull));
			es_handler_call(p, &flinfo, elems[i], position);
			last = Max(last, position);
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(event_cxt);
		}
		es_user_code_end(&guard);
		MemoryContextDelete(event_cxt);
	}

	/* the pull went through: an error the projection had is behind it */
	args[2] = JsonbPGetDatum(partitions);
	args[3] = Int64GetDatum(last);
	args[1] = Int64GetDatum(n);
	ret = SPI_execute_with_args("UPDATE eventstore.projection_checkpoints"
								"   SET partitions = $3, position = greatest(position, $4),"
								"       updated_at = now(), events_total = events_total + $2,"
								"       error_count = 0, error_position = NULL, retry_at = NULL"
								" WHERE name = $1 AND ($2 > 0 OR partitions IS DISTINCT FROM $3)",
								4, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not move the checkpoint of projection \"%s\": %s",
			 p->name, SPI_result_code_string(ret));
	return n;
}

static const EsProjection *
es_find_projection(const EsCatalog *cat, const char *name)
{
	int			n;
	EsProjection *projs = es_projections(cat, &n);

	for (int i = 0; i < n; i++)
	{
		if (strcmp(projs[i].name, name) == 0)
			return &projs[i];
	}
	return NULL;
}

/*
 * Lock eventstore.projection_checkpoints in "mode" if that is possible
 * without waiting (see es_projection_run_batch); true when taken.
 */
static bool
es_lock_checkpoints(const EsCatalog *cat, LOCKMODE mode)
{
	Oid			relid = get_relname_relid("projection_checkpoints", cat->namespace_oid);

	return OidIsValid(relid) && ConditionalLockRelationOid(relid, mode);
}

/*
 * One batch of an async or catching-up projection, in the current
 * transaction.  Returns the events handled; *caught_up tells whether
 * nothing is left to do for now (everything readable is handled, or a
 * failing event waits for its retry), *needs_live that a catching-up
 * projection reached the horizon and should now go live.  Returns -1 when the projection is not
 * for the worker (any more) or a lock is busy.
 */
int64
es_projection_run_batch(const char *name, bool *caught_up, bool *needs_live)
{
	const EsCatalog *cat = es_catalog();
	const EsProjection *p;
	EsCheckpoint cp;
	Snapshot	snapshot;
	int64		horizon;
	int64		limit;
	int64		count;
	bool		done;
	EsGuard		guard;

	*caught_up = true;
	*needs_live = false;
	/*
	 * without waiting: DROP EXTENSION takes these in an order of its own
	 * (the checkpoints too: a batch reads and writes them after taking the
	 * others, and waiting for them then could deadlock with it; and the
	 * position sequence, which the horizon reads: the drop locks it before
	 * the events, and a batch waiting for it while holding the events
	 * deadlocked with the drop, 0.9.0)
	 */
	if (!ConditionalLockRelationOid(cat->projections_relid, RowShareLock) ||
		!ConditionalLockRelationOid(cat->events_relid, AccessShareLock) ||
		!ConditionalLockRelationOid(cat->position_index_relid, AccessShareLock) ||
		!ConditionalLockRelationOid(cat->position_seq_relid, AccessShareLock) ||
		!es_lock_checkpoints(cat, RowExclusiveLock))
		return -1;
	p = es_find_projection(cat, name);
	if (p == NULL || !p->enabled || (p->is_inline && !p->catching_up))
		return -1;

	es_spi_begin(&guard, InvalidOid);
	if (!es_read_checkpoint(p->name, &cp))
	{
		es_spi_end(&guard);
		return -1;
	}

	if (es_store_distributed(cat))
	{
		/* Before its retry is due, a failing event holds back everything. */
		count = (cp.has_error && !cp.retry_due) ? 0 :
			es_project_partitions(cat, p, &done);
		if (cp.has_error && !cp.retry_due)
			done = true;
		es_spi_end(&guard);
		*caught_up = done;
		return count;
	}

	horizon = es_reader_horizon(cat, &snapshot);
	limit = horizon;
	/* Before its retry is due, a failing event holds back only itself. */
	if (cp.has_error && !cp.retry_due)
		limit = Min(limit, cp.error_position - 1);

	es_progress_update(cp.position, horizon);
	count = es_project_range(cat, p, &cp, limit, snapshot,
							 es_projection_batch_size, &done);
	UnregisterSnapshot(snapshot);
	es_progress_update(cp.position, horizon);
	es_spi_end(&guard);

	*caught_up = done;
	*needs_live = done && limit == horizon && p->catching_up;
	return count;
}

/*
 * Make a caught-up inline projection live, in the current transaction:
 * wait for the appenders that left it alone, handle the rest of the log
 * and clear catching_up.  Returns false when it was not catching up.
 */
bool
es_projection_go_live(const char *name)
{
	const EsCatalog *cat = es_catalog();
	const EsProjection *p;
	EsCheckpoint cp;
	Snapshot	snapshot;
	bool		done;
	Datum		arg;
	Oid			argtype = TEXTOID;
	int			ret;
	EsGuard		guard;

	/* Waiting holds up every appender queued behind us: keep it short. */
	(void) set_config_option("lock_timeout", "500", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	LockRelationOid(cat->projections_relid, ExclusiveLock);

	p = es_find_projection(cat, name);
	if (p == NULL || !p->enabled || !p->is_inline || !p->catching_up)
		return false;

	es_spi_begin(&guard, InvalidOid);
	if (!es_read_checkpoint(p->name, &cp))
	{
		es_spi_end(&guard);
		return false;
	}

	/* No appender that skipped the handler is in flight any more. */
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	(void) es_project_range(cat, p, &cp, PG_INT64_MAX, snapshot, 0, &done);
	UnregisterSnapshot(snapshot);

	arg = CStringGetTextDatum(p->name);
	ret = SPI_execute_with_args("UPDATE eventstore.projections SET catching_up = false"
								" WHERE name = $1",
								1, &argtype, &arg, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not make projection \"%s\" live: %s",
			 p->name, SPI_result_code_string(ret));
	es_spi_end(&guard);
	return true;
}

/*
 * Record a failed batch (in a fresh transaction of the caller's): the
 * failing position and the message, and when to try again.
 */
void
es_projection_record_error(const char *name, int64 position, const char *message)
{
	Datum		args[4];
	Oid			argtypes[4] = {TEXTOID, INT8OID, TEXTOID, INT8OID};
	int			ret;
	EsGuard		guard;

	args[0] = CStringGetTextDatum(name);
	args[1] = Int64GetDatum(position);
	args[2] = CStringGetTextDatum(message ? message : "unknown error");
	args[3] = Int64GetDatum(es_projection_retry_delay);

	es_spi_begin(&guard, InvalidOid);
	ret = SPI_execute_with_args("UPDATE eventstore.projection_checkpoints"
								"   SET error_count = error_count + 1,"
								"       error_position = $2, last_error = $3,"
								"       last_error_at = now(),"
								"       retry_at = now() + least($4 * power(2, least(error_count, 30)), "
								CppAsString2(ES_MAX_RETRY_DELAY_MS) ") * interval '1 ms'"
								" WHERE name = $1",
								4, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not record the error of projection \"%s\": %s",
			 name, SPI_result_code_string(ret));
	es_spi_end(&guard);
}

/*
 * Names of the projections the worker runs (enabled, async or catching
 * up), allocated in the caller's memory context, and the earliest time a
 * failing one is due again (0 if none).  *busy: the definitions are locked
 * (being changed); look again later.
 */
List *
es_projections_for_worker(TimestampTz *next_retry, bool *busy)
{
	const EsCatalog *cat = es_catalog_lookup(true);
	List	   *names = NIL;
	EsProjection *projs;
	int			n;
	int			ret;
	EsGuard		guard;

	/* from now on, every change of a definition bumps the generation */
	es_projection_callbacks();

	*next_retry = 0;
	*busy = false;
	if (cat == NULL || !OidIsValid(cat->projections_relid))
		return NIL;
	if (!ConditionalLockRelationOid(cat->projections_relid, RowShareLock) ||
		!es_lock_checkpoints(cat, AccessShareLock))
	{
		*busy = true;
		return NIL;
	}
	projs = es_projections(cat, &n);
	for (int i = 0; i < n; i++)
	{
		if (projs[i].enabled && (!projs[i].is_inline || projs[i].catching_up))
			names = lappend(names, pstrdup(projs[i].name));
	}
	if (names == NIL)
		return NIL;

	es_spi_begin(&guard, InvalidOid);
	ret = SPI_execute("SELECT min(retry_at) FROM eventstore.projection_checkpoints"
					  " WHERE retry_at > now()", true, 0);
	if (ret == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			*next_retry = DatumGetTimestampTz(d);
	}
	es_spi_end(&guard);
	return names;
}

/* ---------------------------------------------------------------------
 * SQL-callable helpers
 * ---------------------------------------------------------------------
 */

/*
 * Statement trigger on eventstore.projections: make every backend reload
 * the projections (at its next lock, or at once for this backend's next
 * command).
 */
PG_FUNCTION_INFO_V1(eventstore_projections_changed);
Datum
eventstore_projections_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("eventstore_projections_changed() was not called by the trigger manager")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	PG_RETURN_POINTER(NULL);
}

/*
 * eventstore._need_worker(what): error out when no worker can run, else
 * make sure one runs and wake it when the transaction commits.
 */
PG_FUNCTION_INFO_V1(eventstore_need_worker);
Datum
eventstore_need_worker(PG_FUNCTION_ARGS)
{
	char	   *what = text_to_cstring(PG_GETARG_TEXT_PP(0));

	/*
	 * Stream settings and deletes ask for a retention pass.  Reads honour
	 * them without the worker; only the removal from storage waits for it.
	 */
	if (strcmp(what, "stream retention") == 0)
	{
		if (es_shared == NULL)
		{
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("excluded events stay in storage until the eventstore background worker runs"),
					 errdetail("Reads honour the change at once; the worker removes what it excludes."),
					 errhint("Add 'eventstore' to shared_preload_libraries in postgresql.conf and restart the server.")));
			PG_RETURN_VOID();
		}
		es_worker_wake_at_commit(es_catalog(), what, true);
	}
	else
		es_worker_wake_at_commit(es_catalog(), what,
								 strcmp(what, "archive policies") == 0);
	PG_RETURN_VOID();
}

/*
 * Define the settings this file reads: the pace of async projections.
 * Called by _PG_init.
 */
void
es_projection_define_gucs(void)
{
	DefineCustomIntVariable("eventstore.projection_batch_size",
							"Most events the background worker hands to one projection in one transaction.",
							NULL,
							&es_projection_batch_size,
							1000,
							1,
							1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventstore.projection_retry_delay",
							"Wait before the first retry of a failing async projection.",
							"Doubles with every further failure, up to five minutes.",
							&es_projection_retry_delay,
							1000,
							1,
							300 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}
