/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  What a store does, for its operators (0.9.0): counters of appends and
 *	  of the background processes' duties, the progress of long operations,
 *	  and the names of what the extension's processes wait for.
 *
 * The counters of a database live in its shared entry (EsDatabaseState.
 * stats, fixed at server start), as 64-bit atomics.  Appenders do not touch
 * them per event: a transaction gathers what it appended in backend memory,
 * by (sub)transaction level, and adds it when it commits -- a rolled back
 * append, or one rolled back to a savepoint, is not counted.  Conflicts
 * (ST001) are the exception: they abort their transaction, so they are added
 * when raised.  The worker and the projector add each cycle of a duty when
 * it ends.  eventstore.reset_stats() zeroes a database's counters.
 *
 * Progress: each backend slot (EsBackendSlot, one per PGPROC) describes the
 * long operation its process runs, if any; only that process writes it.
 * Readers copy the description under a change counter, as pg_stat_activity
 * reads a backend's status.  A backend's operation ends with its transaction
 * (archive_streams); the background processes end theirs explicitly, and at
 * exit.
 *
 * src/stats.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "eventstore.h"

/*
 * What the current transaction appended, by subtransaction level: the
 * innermost level first.  Allocated in TopTransactionContext, forgotten at
 * the transaction's end.
 */
typedef struct EsPendingStats
{
	int			level;
	int64		counters[ES_NUM_COUNTERS];
	struct EsPendingStats *outer;
} EsPendingStats;

static EsPendingStats *es_pending = NULL;
static EsDatabaseState *es_pending_db = NULL;

/* This backend runs an operation shown in eventstore.progress. */
static bool es_progress_active = false;
static bool es_progress_xact_bound = false;

static const char *const es_duty_names[ES_NUM_DUTIES] = {
	"notify", "projections", "retention", "archiving"
};

static const char *const es_duty_process[ES_NUM_DUTIES] = {
	"worker", "projector", "worker", "worker"
};

static const char *const es_progress_names[ES_NUM_PROGRESS_KINDS] = {
	NULL, "projection", "snapshot policy", "archive_streams", "retention",
	"archiving"
};

static const char *const es_progress_units[ES_NUM_PROGRESS_KINDS] = {
	NULL, "positions", "positions", "streams", "events", "streams"
};

static EsBackendSlot *
es_my_slot(void)
{
	return &es_shared->slots[es_my_proc_number()];
}

/* ----------------------------------------------------------------------
 * Counters
 * ----------------------------------------------------------------------
 */

/* The pending counters of the current (sub)transaction level. */
static int64 *
es_pending_counters(const EsCatalog *cat)
{
	int			level = GetCurrentTransactionNestLevel();

	if (es_pending == NULL || es_pending->level < level)
	{
		EsPendingStats *p = MemoryContextAllocZero(TopTransactionContext,
												   sizeof(EsPendingStats));

		p->level = level;
		p->outer = es_pending;
		es_pending = p;
	}
	/* the database's entry: the append claimed it, unless it stored nothing */
	if (es_pending_db == NULL)
		es_pending_db = es_database_state(cat, MyDatabaseId, false);
	return es_pending->counters;
}

/* An append call succeeded: count it when the transaction commits. */
void
es_stats_append(const EsCatalog *cat, int64 events, int64 bytes, bool retry)
{
	int64	   *c;

	if (es_shared == NULL)
		return;
	c = es_pending_counters(cat);
	c[ES_STAT_APPENDS]++;
	c[ES_STAT_EVENTS] += events;
	c[ES_STAT_BYTES] += bytes;
	if (retry)
		c[ES_STAT_RETRIES]++;
}

/* An inline handler ran for an append. */
void
es_stats_inline_call(const EsCatalog *cat, int64 time_us)
{
	int64	   *c;

	if (es_shared == NULL)
		return;
	c = es_pending_counters(cat);
	c[ES_STAT_INLINE_CALLS]++;
	c[ES_STAT_INLINE_TIME] += time_us;
}

/* An append is about to raise ST001: its transaction will not commit. */
void
es_stats_conflict(const EsCatalog *cat)
{
	EsDatabaseState *db;

	if (es_shared == NULL)
		return;
	/* never raise another error than the conflict: no entry, no count */
	db = es_database_state(cat, MyDatabaseId, false);
	if (db != NULL)
		es_stats_add(db, ES_STAT_CONFLICTS, 1);
}

void
es_stats_add(EsDatabaseState *db, EsCounter counter, int64 n)
{
	if (n != 0)
		pg_atomic_fetch_add_u64(&db->stats.counters[counter], (uint64) n);
}

/* A cycle of a background process's duty ended: it began at "started". */
void
es_stats_duty(EsDatabaseState *db, EsDuty duty, int64 items, TimestampTz started)
{
	EsDutyStats *d = &db->stats.duties[duty];
	TimestampTz now = GetCurrentTimestamp();

	pg_atomic_fetch_add_u64(&d->cycles, 1);
	pg_atomic_fetch_add_u64(&d->items, (uint64) Max(items, 0));
	pg_atomic_fetch_add_u64(&d->time_us, (uint64) Max(now - started, 0));
	pg_atomic_write_u64(&d->last_at, (uint64) now);
}

static void
es_stats_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (es_pending != NULL && es_pending_db != NULL)
			{
				/* only the top level is left: inner ones merged or dropped */
				for (EsPendingStats *p = es_pending; p != NULL; p = p->outer)
					for (int i = 0; i < ES_NUM_COUNTERS; i++)
						es_stats_add(es_pending_db, (EsCounter) i, p->counters[i]);
			}
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			es_pending = NULL;
			es_pending_db = NULL;
			if (es_progress_active && es_progress_xact_bound)
				es_progress_end();
			break;
		default:
			break;
	}
}

static void
es_stats_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (es_pending == NULL || es_pending->level < level)
		return;
	Assert(es_pending->level == level);

	if (event == SUBXACT_EVENT_ABORT_SUB)
		es_pending = es_pending->outer;
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		EsPendingStats *inner = es_pending;

		if (inner->outer != NULL && inner->outer->level == level - 1)
		{
			for (int i = 0; i < ES_NUM_COUNTERS; i++)
				inner->outer->counters[i] += inner->counters[i];
			es_pending = inner->outer;
		}
		else
			inner->level = level - 1;
	}
}

/* _PG_init, when preloading. */
void
es_stats_register_callbacks(void)
{
	RegisterXactCallback(es_stats_xact_callback, NULL);
	RegisterSubXactCallback(es_stats_subxact_callback, NULL);
}

/* ----------------------------------------------------------------------
 * Progress
 * ----------------------------------------------------------------------
 */

static void
es_progress_exit(int code, Datum arg)
{
	if (es_progress_active && MyProc != NULL)
		es_progress_end();
}

/*
 * This process starts a long operation on "target" (may be NULL), of
 * "total" units if known (else -1).  It ends with es_progress_end(), at
 * the latest at exit, or with the transaction if until_xact_end (a
 * backend's: an error may end it anywhere).
 */
void
es_progress_begin(EsProgressKind kind, const char *target, int64 total,
				  bool until_xact_end)
{
	EsProgress *p;
	int			len;

	static bool exit_callback_registered = false;

	if (es_shared == NULL || MyProc == NULL)
		return;
	if (!exit_callback_registered)
	{
		before_shmem_exit(es_progress_exit, (Datum) 0);
		exit_callback_registered = true;
	}

	p = &es_my_slot()->progress;
	pg_atomic_fetch_add_u32(&p->changes, 1);
	pg_write_barrier();
	p->kind = kind;
	p->dboid = MyDatabaseId;
	p->pid = MyProcPid;
	p->started_at = GetCurrentTimestamp();
	p->has_base = false;
	if (target == NULL)
		target = "";
	len = pg_mbcliplen(target, strlen(target), ES_PROGRESS_TARGET_LEN - 1);
	memcpy(p->target, target, len);
	p->target[len] = '\0';
	pg_atomic_write_u64(&p->done, 0);
	pg_atomic_write_u64(&p->total, total >= 0 ? (uint64) total : PG_UINT64_MAX);
	pg_write_barrier();
	pg_atomic_fetch_add_u32(&p->changes, 1);

	es_progress_active = true;
	es_progress_xact_bound = until_xact_end;
}

/* How far it is: done of total (a negative total: unchanged). */
void
es_progress_update(int64 done, int64 total)
{
	EsProgress *p;

	if (!es_progress_active)
		return;
	p = &es_my_slot()->progress;
	if (!p->has_base)
	{
		/* the rate counts from the first report */
		pg_atomic_fetch_add_u32(&p->changes, 1);
		pg_write_barrier();
		p->base = done;
		p->base_at = GetCurrentTimestamp();
		p->has_base = true;
		pg_write_barrier();
		pg_atomic_fetch_add_u32(&p->changes, 1);
	}
	pg_atomic_write_u64(&p->done, (uint64) Max(done, 0));
	if (total >= 0)
		pg_atomic_write_u64(&p->total, (uint64) total);
}

void
es_progress_end(void)
{
	EsProgress *p;

	if (!es_progress_active)
		return;
	p = &es_my_slot()->progress;
	pg_atomic_fetch_add_u32(&p->changes, 1);
	pg_write_barrier();
	p->kind = ES_PROGRESS_NONE;
	pg_write_barrier();
	pg_atomic_fetch_add_u32(&p->changes, 1);
	es_progress_active = false;
}

/* ----------------------------------------------------------------------
 * Wait events
 * ----------------------------------------------------------------------
 */

static const char *const es_wait_names[ES_NUM_WAITS] = {
	"EventstoreWorkerMain", "EventstoreProjectorMain",
	"EventstoreLauncherMain", "EventstoreNotifyDelay",
	"EventstoreProcessesExit"
};

/*
 * The wait event to report while waiting for "which": its own name on 17
 * and later (registered in shared memory at first use), else "Extension".
 */
uint32
es_wait_event(EsWait which)
{
#if PG_VERSION_NUM >= 170000
	static uint32 ids[ES_NUM_WAITS];

	if (ids[which] == 0)
		ids[which] = WaitEventExtensionNew(es_wait_names[which]);
	return ids[which];
#else
	(void) es_wait_names;
	return PG_WAIT_EXTENSION;
#endif
}

/* ----------------------------------------------------------------------
 * SQL functions
 * ----------------------------------------------------------------------
 */

/*
 * This database's entry, for a function that shows the view "view": the
 * right to read the view is the right to call the function.  (NULL: for
 * reset_stats, whose EXECUTE right the function manager checked.)
 */
static EsDatabaseState *
es_stats_db(const EsCatalog *cat, const char *view)
{
	if (view != NULL)
	{
		Oid			relid = get_relname_relid(view, cat->namespace_oid);
		AclResult	aclresult;

		if (!OidIsValid(relid))
			elog(ERROR, "view eventstore.%s is missing", view);
		aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
		if (aclresult != ACLCHECK_OK)
			aclcheck_error(aclresult, OBJECT_VIEW, view);
	}
	es_require_preload(view != NULL ? psprintf("eventstore.%s", view) : "eventstore.reset_stats()",
					   "The statistics and the progress of long operations are kept in shared memory.");
	return es_database_state(cat, MyDatabaseId, true);
}

static Datum
es_interval_us(int64 us)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = us;
	return IntervalPGetDatum(iv);
}

/*
 * eventstore._store_stats(): the counters of this database, the appenders
 * in flight and the horizons, as one row (the view eventstore.store_stats).
 */
PG_FUNCTION_INFO_V1(eventstore_store_stats);
Datum
eventstore_store_stats(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat = es_catalog();
	EsDatabaseState *db = es_stats_db(cat, "store_stats");
	Datum		values[16];
	bool		nulls[16];
	int			n = 0;
	int			in_flight = 0;
	int			oldest_pid = 0;
	TimestampTz oldest = 0;
	TimestampTz now = GetCurrentTimestamp();
	int64		live;
	int64		recorded;
	Snapshot	snapshot;

	memset(nulls, false, sizeof(nulls));
	for (int i = 0; i < ES_STAT_NOTIFICATIONS + 1; i++)
	{
		uint64		v = pg_atomic_read_u64(&db->stats.counters[i]);

		if (i == ES_STAT_INLINE_TIME)
			values[n++] = Float8GetDatum((double) v / 1000.0);
		else
			values[n++] = Int64GetDatum((int64) v);
	}

	/* the appending transactions in flight, and the oldest of them */
	for (int i = 0; i < es_shared->nslots; i++)
	{
		EsBackendSlot *slot = &es_shared->slots[i];
		TimestampTz start;

		if (pg_atomic_read_u64(&slot->min_position) == 0 || slot->dboid != MyDatabaseId)
			continue;
		pg_read_barrier();
		start = (TimestampTz) pg_atomic_read_u64(&slot->xact_start);
		in_flight++;
		if (oldest_pid == 0 || start < oldest)
		{
			oldest = start;
			oldest_pid = GetPGProcByNumber(i)->pid;
		}
	}
	values[n++] = Int32GetDatum(in_flight);
	nulls[n] = (in_flight == 0);
	values[n++] = Int32GetDatum(oldest_pid);
	nulls[n] = (in_flight == 0);
	values[n++] = es_interval_us(Max(now - oldest, 0));

	live = es_live_horizon(cat, db, false);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	recorded = es_recorded_horizon(cat, snapshot);
	UnregisterSnapshot(snapshot);
	values[n++] = Int64GetDatum((int64) pg_atomic_read_u64(&db->drawn_max));
	values[n++] = Int64GetDatum(live);
	values[n++] = Int64GetDatum(recorded);
	values[n++] = Int64GetDatum(Max(live - recorded, 0));
	values[n++] = TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&db->stats.reset_at));
	Assert(n == lengthof(values));

	return es_result_row(fcinfo, values, nulls);
}

/*
 * eventstore._worker_stats(): a row per duty of the background processes
 * (the view eventstore.worker_stats).
 */
PG_FUNCTION_INFO_V1(eventstore_worker_stats);
Datum
eventstore_worker_stats(PG_FUNCTION_ARGS)
{
	EsDatabaseState *db = es_stats_db(es_catalog(), "worker_stats");
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < ES_NUM_DUTIES; i++)
	{
		EsDutyStats *d = &db->stats.duties[i];
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};
		uint64		last_at = pg_atomic_read_u64(&d->last_at);

		values[0] = CStringGetTextDatum(es_duty_names[i]);
		values[1] = CStringGetTextDatum(es_duty_process[i]);
		values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&d->cycles));
		values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&d->items));
		values[4] = Float8GetDatum((double) pg_atomic_read_u64(&d->time_us) / 1000.0);
		values[5] = TimestampTzGetDatum((TimestampTz) last_at);
		nulls[5] = (last_at == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * eventstore.reset_stats(): zero this database's counters (not the
 * appenders in flight or the horizons, which are states, not counts).
 */
PG_FUNCTION_INFO_V1(eventstore_reset_stats);
Datum
eventstore_reset_stats(PG_FUNCTION_ARGS)
{
	EsDatabaseState *db = es_stats_db(es_catalog(), NULL);

	es_stats_zero(&db->stats, false);
	PG_RETURN_VOID();
}

/*
 * eventstore._progress(): the long operations running in this database (the
 * view eventstore.progress).
 */
PG_FUNCTION_INFO_V1(eventstore_progress);
Datum
eventstore_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();

	(void) es_stats_db(es_catalog(), "progress");
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < es_shared->nslots; i++)
	{
		EsProgress *p = &es_shared->slots[i].progress;
		EsProgress	copy;
		Datum		values[8];
		bool		nulls[8] = {false, false, false, false, false, false, false, false};
		uint64		total;
		int64		done;

		CHECK_FOR_INTERRUPTS();
		/* a consistent copy: retry while its process rewrites it */
		for (;;)
		{
			uint32		before = pg_atomic_read_u32(&p->changes);

			pg_read_barrier();
			copy.kind = p->kind;
			copy.dboid = p->dboid;
			copy.pid = p->pid;
			copy.started_at = p->started_at;
			copy.has_base = p->has_base;
			copy.base = p->base;
			copy.base_at = p->base_at;
			memcpy(copy.target, p->target, ES_PROGRESS_TARGET_LEN);
			pg_read_barrier();
			if ((before & 1) == 0 && before == pg_atomic_read_u32(&p->changes))
				break;
			CHECK_FOR_INTERRUPTS();
		}
		if (copy.kind == ES_PROGRESS_NONE || copy.dboid != MyDatabaseId)
			continue;
		copy.target[ES_PROGRESS_TARGET_LEN - 1] = '\0';
		done = (int64) pg_atomic_read_u64(&p->done);
		total = pg_atomic_read_u64(&p->total);

		values[0] = Int32GetDatum(copy.pid);
		values[1] = CStringGetTextDatum(es_progress_names[copy.kind]);
		values[2] = CStringGetTextDatum(copy.target);
		nulls[2] = (copy.target[0] == '\0');
		values[3] = TimestampTzGetDatum(copy.started_at);
		values[4] = Int64GetDatum(done);
		values[5] = Int64GetDatum((int64) total);
		nulls[5] = (total == PG_UINT64_MAX);
		values[6] = CStringGetTextDatum(es_progress_units[copy.kind]);
		/* per second, since the first report */
		if (copy.has_base && now > copy.base_at)
			values[7] = Float8GetDatum((double) (done - copy.base) * 1000000.0 /
									   (double) (now - copy.base_at));
		else
			nulls[7] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * eventstore._report_progress(operation, target, done, total): a PL/pgSQL
 * function of the extension reports how far it is (internal; the operation
 * ends with the transaction).
 */
PG_FUNCTION_INFO_V1(eventstore_report_progress);
Datum
eventstore_report_progress(PG_FUNCTION_ARGS)
{
	const char *operation;
	int64		done = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);
	int64		total = PG_ARGISNULL(3) ? -1 : PG_GETARG_INT64(3);

	es_arg_not_null(fcinfo, 0, "operation");
	operation = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (strcmp(operation, "archive_streams") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown operation \"%s\"", operation)));
	if (!es_progress_active)
		es_progress_begin(ES_PROGRESS_ARCHIVE_STREAMS,
						  PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
						  total, true);
	es_progress_update(done, total);
	PG_RETURN_VOID();
}
