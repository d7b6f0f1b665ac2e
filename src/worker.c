/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background processes: a launcher, and per database that uses
 *	  eventstore a worker and a projector.
 *
 * The launcher is registered when the library is preloaded.  At start it
 * starts a worker in every connectable database; a worker that finds no
 * eventstore extension in its database exits at once, one that stays asks
 * the launcher for the database's projector.  Later, the first append in a
 * database asks for both if none is wanted there (es_worker_request), so
 * CREATE EXTENSION needs no restart.  The launcher restarts a process that
 * died, after a one second pause.
 *
 * A database's worker sleeps on its latch.  Appending transactions set the
 * latch when they commit or abort; the worker then computes the live
 * horizon and, if it advanced, sends one NOTIFY on ES_NOTIFY_CHANNEL with
 * the horizon as payload and records the horizon in eventstore.recorded_horizon
 * (for hot standbys and REPEATABLE READ readers), both in one transaction.
 * Bursts of commits coalesce into one notification; appenders never touch
 * the notification queue or its lock.  The worker also runs retention and
 * archive policies.  It never runs a user's code: nothing a handler does
 * can delay the horizon, the notifications or the maintenance.
 *
 * The projector runs the async projections (and snapshot policies, and the
 * replays of inline projections), woken by the worker when the horizon
 * moved and by committed definition changes.  Each batch runs within
 * eventstore.handler_timeout, enforced by a timer of our own.
 *
 * Both pin their session's search_path at connection, and every query of
 * their own runs through es_spi_begin() (guard.c), under a search_path
 * pinned for its duration, whatever a database or role setting or a
 * handler set.
 *
 * Commands that need a database without connections (DROP DATABASE,
 * ALTER DATABASE RENAME / SET TABLESPACE, CREATE DATABASE ... TEMPLATE) stop
 * that database's processes first, through a ProcessUtility hook, once the
 * command's own permission checks are known to pass; if the command fails,
 * or leaves the database in place, the launcher starts them again at once.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "eventstore.h"

PGDLLEXPORT void eventstore_launcher_main(Datum main_arg);
PGDLLEXPORT void eventstore_worker_main(Datum main_arg);
PGDLLEXPORT void eventstore_projector_main(Datum main_arg);

/* GUC: longest a worker sleeps between two looks at the horizon (ms). */
int			es_worker_naptime = 1000;
int			es_maintenance_interval = 10 * 1000;
int			es_maintenance_batch_size = 1000;

/* GUC: shortest time between two looks at the horizon (ms). */
int			es_notify_interval = 5;

/* GUC: longest a projector's batch may run (ms); 0: no limit. */
int			es_handler_timeout = 60 * 1000;

/* The prepared UPDATE of eventstore.recorded_horizon, per worker. */
static SPIPlanPtr es_record_plan = NULL;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* ---------------------------------------------------------------------
 * Registration
 * ---------------------------------------------------------------------
 */

void
es_worker_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "eventstore");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "eventstore_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "eventstore launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "eventstore launcher");
	RegisterBackgroundWorker(&bgw);
}


/* ---------------------------------------------------------------------
 * Launcher
 * ---------------------------------------------------------------------
 */

/* The two processes the launcher runs per database. */
typedef enum EsProcKind
{
	ES_PROC_WORKER,				/* horizon, notifications, maintenance */
	ES_PROC_PROJECTOR,			/* async projections (user code) */
	ES_NUM_PROC_KINDS
} EsProcKind;

static const char *const es_proc_function[ES_NUM_PROC_KINDS] = {
	"eventstore_worker_main", "eventstore_projector_main"
};
static const char *const es_proc_type[ES_NUM_PROC_KINDS] = {
	"eventstore worker", "eventstore projector"
};

/* The launcher's own record of the processes it started for a database. */
typedef struct EsLaunchedWorker
{
	Oid			dboid;
	BackgroundWorkerHandle *handle[ES_NUM_PROC_KINDS];	/* NULL once stopped */
	TimestampTz not_before[ES_NUM_PROC_KINDS];	/* restart pause */
} EsLaunchedWorker;

static List *es_launched = NIL;		/* of EsLaunchedWorker * */
static List *es_probe_pending = NIL;	/* databases to look at once */

static void
es_launcher_exit(int code, Datum arg)
{
	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	if (es_shared->launcher_pid == MyProcPid)
	{
		es_shared->launcher_pid = 0;
		es_shared->launcher_latch = NULL;
	}
	LWLockRelease(es_shared->lock);
}

/* Every connectable, non-template database gets a look at start. */
static void
es_launcher_list_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext oldcxt;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database dbform = (Form_pg_database) GETSTRUCT(tup);

		if (!dbform->datallowconn || dbform->datistemplate)
			continue;
		oldcxt = MemoryContextSwitchTo(TopMemoryContext);
		es_probe_pending = lappend_oid(es_probe_pending, dbform->oid);
		MemoryContextSwitchTo(oldcxt);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();
}

static EsLaunchedWorker *
es_launched_worker(Oid dboid)
{
	ListCell   *lc;
	EsLaunchedWorker *lw;
	MemoryContext oldcxt;

	foreach(lc, es_launched)
	{
		lw = (EsLaunchedWorker *) lfirst(lc);
		if (lw->dboid == dboid)
			return lw;
	}
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	lw = palloc0(sizeof(EsLaunchedWorker));
	lw->dboid = dboid;
	es_launched = lappend(es_launched, lw);
	MemoryContextSwitchTo(oldcxt);
	return lw;
}

static bool
es_launcher_start(EsLaunchedWorker *lw, EsProcKind kind)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "eventstore");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "%s", es_proc_function[kind]);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "%s for database %u",
			 es_proc_type[kind], lw->dboid);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "%s", es_proc_type[kind]);
	bgw.bgw_main_arg = ObjectIdGetDatum(lw->dboid);
	bgw.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
	{
		ereport(LOG,
				(errmsg("eventstore launcher could not start the %s for database %u",
						kind == ES_PROC_WORKER ? "worker" : "projector", lw->dboid),
				 errhint("Raise max_worker_processes.")));
		return false;
	}
	lw->handle[kind] = handle;	/* allocated in TopMemoryContext */
	return true;
}

/*
 * Reap stopped processes, start the ones that are wanted, and the pending
 * probes.  Returns how long the launcher may sleep (ms).
 */
static long
es_launcher_scan(void)
{
	long		sleep_ms = 10000;
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;
	List	   *still_pending = NIL;

	foreach(lc, es_launched)
	{
		EsLaunchedWorker *lw = (EsLaunchedWorker *) lfirst(lc);

		for (int kind = 0; kind < ES_NUM_PROC_KINDS; kind++)
		{
			pid_t		pid;
			bool		wanted = false;

			if (lw->handle[kind] == NULL ||
				GetBackgroundWorkerPid(lw->handle[kind], &pid) != BGWH_STOPPED)
				continue;
			pfree(lw->handle[kind]);
			lw->handle[kind] = NULL;

			/*
			 * A process that stopped while its database still wants one died:
			 * restart it after a pause.  One that retired starts at once
			 * when it is wanted again.
			 */
			LWLockAcquire(es_shared->lock, LW_SHARED);
			for (int i = 0; i < es_shared->max_databases; i++)
			{
				if (es_shared->databases[i].dboid == lw->dboid)
					wanted = es_shared->databases[i].worker_wanted;
			}
			LWLockRelease(es_shared->lock);
			lw->not_before[kind] = wanted ? TimestampTzPlusMilliseconds(now, 1000) : 0;
		}
	}

	for (int i = 0; i < es_shared->max_databases; i++)
	{
		EsLaunchedWorker *lw;
		Oid			dboid;
		bool		wanted;
		pid_t		pids[ES_NUM_PROC_KINDS];

		LWLockAcquire(es_shared->lock, LW_SHARED);
		dboid = es_shared->databases[i].dboid;
		wanted = es_shared->databases[i].worker_wanted;
		pids[ES_PROC_WORKER] = es_shared->databases[i].worker_pid;
		pids[ES_PROC_PROJECTOR] = es_shared->databases[i].projector_pid;
		LWLockRelease(es_shared->lock);

		if (!OidIsValid(dboid) || !wanted)
			continue;
		lw = es_launched_worker(dboid);
		for (int kind = 0; kind < ES_NUM_PROC_KINDS; kind++)
		{
			if (lw->handle[kind] != NULL)
				continue;

			/*
			 * A process started by an earlier launcher (which died) still
			 * runs: adopt it.  Without a handle we hear of its exit only by
			 * looking, so look again soon.
			 */
			if (pids[kind] != 0 && kill(pids[kind], 0) == 0)
			{
				sleep_ms = Min(sleep_ms, 1000);
				continue;
			}

			if (now < lw->not_before[kind])
			{
				long		secs;
				int			usecs;

				TimestampDifference(now, lw->not_before[kind], &secs, &usecs);
				sleep_ms = Min(sleep_ms, secs * 1000 + usecs / 1000 + 1);
				continue;
			}
			if (!es_launcher_start(lw, kind))
				sleep_ms = Min(sleep_ms, 1000);
		}
	}

	/* a probe starts the worker; it asks for the projector if it stays */
	foreach(lc, es_probe_pending)
	{
		EsLaunchedWorker *lw = es_launched_worker(lfirst_oid(lc));

		if (lw->handle[ES_PROC_WORKER] == NULL &&
			!es_launcher_start(lw, ES_PROC_WORKER))
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

			still_pending = lappend_oid(still_pending, lw->dboid);
			MemoryContextSwitchTo(oldcxt);
			sleep_ms = Min(sleep_ms, 1000);
		}
	}
	list_free(es_probe_pending);
	es_probe_pending = still_pending;

	return sleep_ms;
}

void
eventstore_launcher_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("eventstore launcher");

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	es_shared->launcher_pid = MyProcPid;
	es_shared->launcher_latch = MyLatch;
	LWLockRelease(es_shared->lock);
	before_shmem_exit(es_launcher_exit, (Datum) 0);

	es_launcher_list_databases();

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		sleep_ms = es_launcher_scan();

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * Per-database worker
 * ---------------------------------------------------------------------
 */

/* This process's database entry (worker or projector). */
static EsDatabaseState *es_worker_db = NULL;

static void
es_worker_exit(int code, Datum arg)
{
	if (es_worker_db == NULL)
		return;
	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	if (es_worker_db->worker_pid == MyProcPid)
	{
		es_worker_db->worker_pid = 0;
		es_worker_db->worker_latch = NULL;
	}
	if (es_worker_db->projector_pid == MyProcPid)
	{
		es_worker_db->projector_pid = 0;
		es_worker_db->projector_latch = NULL;
	}
	LWLockRelease(es_shared->lock);
}

/*
 * Connect to the database and pin this session's search_path: settings of
 * the database or role (ALTER DATABASE / ALTER ROLE ... SET search_path, which
 * a database owner may set) are overridden.  A later SET still wins, but
 * every query of the extension pins the path again for its own duration
 * (es_spi_begin), and user code runs inside a GUC nest level that is rolled
 * back (es_user_code_begin, es_worker_project).
 */
static void
es_worker_connect(Oid dboid, const char *appname)
{
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname(appname);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * The extension is gone: stop being wanted, unless an appender registered
 * meanwhile (the extension was re-created).  The appender writes its slot
 * and then reads worker_wanted; we write worker_wanted and then read the
 * slots: one of us sees the other, so no append is left without a worker.
 * Returns false when the worker must carry on.
 */
static bool
es_worker_retire(void)
{
	bool		busy = false;

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	es_worker_db->worker_wanted = false;
	pg_memory_barrier();
	for (int i = 0; i < es_shared->nslots; i++)
	{
		EsBackendSlot *slot = &es_shared->slots[i];

		if (pg_atomic_read_u64(&slot->min_position) != 0 &&
			slot->dboid == es_worker_db->dboid)
			busy = true;
	}
	if (busy)
		es_worker_db->worker_wanted = true;
	else
	{
		es_worker_db->worker_pid = 0;
		es_worker_db->worker_latch = NULL;
		/* the projector sees worker_wanted unset and retires too */
		if (es_worker_db->projector_latch != NULL)
			SetLatch(es_worker_db->projector_latch);
	}
	LWLockRelease(es_shared->lock);

	return !busy;
}

/* What a worker has published so far. */
typedef struct EsWorkerState
{
	Oid			seq_relid;		/* extension incarnation the rest refers to */
	int64		recorded;		/* horizon last written to recorded_horizon */
	int64		notified;		/* newest position last notified */
	/* projections */
	int64		projected;		/* horizon of the last pass over them */
	uint64		generation;		/* es_projection_generation at that pass */
	bool		more_work;		/* the last pass stopped short */
	bool		any_projections;	/* the last pass found some to run */
	TimestampTz next_retry;		/* a failing projection is due then (or 0) */
	MemoryContext pass_cxt;		/* reset per pass */
	/* retention and archive policies */
	TimestampTz last_maintenance;	/* start of the last pass (0: none yet) */
	bool		more_maintenance;	/* the last pass stopped short */
	Oid			retention_seq;	/* extension incarnation retention_after is of */
	int64		retention_after;	/* horizon of the last complete retention */
} EsWorkerState;

/* Batches of one projection per pass, so that others get their turn. */
#define ES_WORKER_BATCHES_PER_PASS	8

/*
 * The newest committed position in (after, upto], or 0: one backward step
 * of the primary key under a snapshot taken after the horizon was computed.
 */
static int64
es_newest_committed(const EsCatalog *cat, int64 after, int64 upto)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	Relation	heap = table_open(cat->events_relid, AccessShareLock);
	Relation	index = index_open(cat->position_index_relid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	ScanKeyData keys[2];
	IndexScanDesc scan;
	int64		newest = 0;

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTGreaterStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8GT, Int64GetDatum(after));
	ScanKeyEntryInitialize(&keys[1], 0, 1, BTLessEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8LE, Int64GetDatum(upto));
	scan = index_beginscan(heap, index, snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;

		newest = DatumGetInt64(slot_getattr(slot, Anum_es_global_position, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	UnregisterSnapshot(snapshot);

	return newest;
}

/*
 * One look at the horizon.  When it has advanced, record it (for standbys
 * and REPEATABLE READ readers) and, if committed events became readable --
 * not merely positions of rolled-back appends -- notify listeners with the
 * newest of them.  Both take effect when the transaction commits.  Returns
 * false when the extension is gone.
 */
static bool
es_worker_cycle(EsWorkerState *state)
{
	const EsCatalog *cat;
	int64		horizon;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "eventstore: publishing the log horizon");

	cat = es_catalog_lookup(true);
	if (cat == NULL)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		return false;
	}

	/*
	 * Take every lock of the cycle up front, without waiting: DROP EXTENSION
	 * locks the same relations in an order of its own, and a worker waiting
	 * in the middle of a cycle would deadlock with it.  If any is taken,
	 * step aside and look again later.
	 */
	if (!ConditionalLockRelationOid(cat->events_relid, AccessShareLock) ||
		!ConditionalLockRelationOid(cat->position_index_relid, AccessShareLock) ||
		!ConditionalLockRelationOid(cat->position_seq_relid, AccessShareLock) ||
		!ConditionalLockRelationOid(cat->horizon_relid, RowExclusiveLock))
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		return true;
	}

	if (es_database_state(cat, MyDatabaseId, true) != es_worker_db)
		elog(ERROR, "the shared entry of database %u moved", MyDatabaseId);
	if (state->seq_relid != cat->position_seq_relid)
	{
		/* first cycle, or the extension was re-created */
		state->seq_relid = cat->position_seq_relid;
		state->recorded = es_recorded_horizon(cat, GetActiveSnapshot());
		state->notified = state->recorded;
	}

	horizon = es_live_horizon(cat, es_worker_db, false);
	if (horizon > state->recorded)
	{
		Datum		arg = Int64GetDatum(horizon);
		Oid			argtype = INT8OID;
		int64		newest;
		int			ret;
		EsGuard		g;

		es_spi_begin(&g, InvalidOid);
		if (es_record_plan == NULL)
		{
			SPIPlanPtr	plan = SPI_prepare("UPDATE eventstore.recorded_horizon"
										   "   SET position = $1, recorded_at = now()"
										   " WHERE position < $1",
										   1, &argtype);

			if (plan == NULL)
				elog(ERROR, "could not prepare the log horizon update: %s",
					 SPI_result_code_string(SPI_result));
			/* the plan cache replans if the extension is re-created */
			SPI_keepplan(plan);
			es_record_plan = plan;
		}
		ret = SPI_execute_plan(es_record_plan, &arg, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "could not record the log horizon: %s",
				 SPI_result_code_string(ret));
		es_spi_end(&g);
		state->recorded = horizon;

		newest = es_newest_committed(cat, state->notified, horizon);
		if (newest > state->notified)
		{
			char		payload[32];

			snprintf(payload, sizeof(payload), INT64_FORMAT, newest);
			Async_Notify(ES_NOTIFY_CHANNEL, payload);
			state->notified = newest;
		}
	}

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* committed: the projector may run the projections up to it */
	if ((uint64) state->recorded != pg_atomic_read_u64(&es_worker_db->published))
	{
		Latch	   *latch = es_worker_db->projector_latch;

		pg_atomic_write_u64(&es_worker_db->published, (uint64) state->recorded);
		/* with nothing to run, appends cost the projector no wake-up */
		if (latch != NULL && pg_atomic_read_u32(&es_worker_db->projector_idle) == 0)
			SetLatch(latch);
	}
	return true;
}

typedef enum EsStepResult
{
	ES_STEP_OK,
	ES_STEP_HANDLER_FAILED,		/* recorded; retried after a backoff */
	ES_STEP_FAILED				/* something else; tried again later */
} EsStepResult;

/*
 * eventstore.handler_timeout: a timer of our own (not statement_timeout,
 * which a handler could SET) cancels the batch that runs too long.  Once
 * it has fired it fires again every second until the batch is over, so a
 * handler that catches query_canceled is canceled again.
 */
static TimeoutId es_handler_timeout_id = MAX_TIMEOUTS;
static volatile sig_atomic_t es_handler_timed_out = false;

#define ES_HANDLER_RECANCEL_MS	1000

static void
es_handler_timeout_handler(void)
{
	es_handler_timed_out = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

static void
es_handler_timer_start(void)
{
	es_handler_timed_out = false;
	if (es_handler_timeout > 0)
		enable_timeout_every(es_handler_timeout_id,
							 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 es_handler_timeout),
							 ES_HANDLER_RECANCEL_MS);
}

/* Returns whether the timer fired. */
static bool
es_handler_timer_stop(void)
{
	bool		fired;

	if (es_handler_timeout_id != MAX_TIMEOUTS)
		disable_timeout(es_handler_timeout_id, false);
	fired = es_handler_timed_out;
	es_handler_timed_out = false;
	/* a cancel that came too late to interrupt anything is void */
	if (fired)
		QueryCancelPending = false;
	return fired;
}

/*
 * Run one step of a projection in a transaction of its own: a batch, or
 * (go_live) the switch of a caught-up inline projection to live.  An error
 * rolls the step back; a handler's error is recorded with its position, so
 * that the projection is retried after a backoff.  A step that runs longer
 * than eventstore.handler_timeout is canceled and recorded as such.
 *
 * Whatever a handler changes in the session's settings (a plain SET or
 * set_config(..., false), say) is rolled back when its batch ends
 * (es_user_code_end in guard.c), so no step leaves settings behind for the
 * next one or for the queries of the extension.
 */
static EsStepResult
es_worker_project(const char *name, bool go_live, int64 *handled,
				  bool *caught_up, bool *needs_live)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile EsStepResult result = ES_STEP_OK;

	*handled = -1;
	*caught_up = true;
	*needs_live = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, go_live ?
							   "eventstore: making a projection live" :
							   "eventstore: running a projection");
		es_handler_timer_start();
		if (go_live)
			(void) es_projection_go_live(name);
		else
			*handled = es_projection_run_batch(name, caught_up, needs_live);
		(void) es_handler_timer_stop();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int64		position = es_projecting_position;
		bool		timed_out = es_handler_timer_stop();
		char	   *message;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		es_projecting_position = 0;

		if (timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			message = psprintf("eventstore.handler_timeout exceeded: the batch ran longer than %d ms and was canceled",
							   es_handler_timeout);
		else
			message = pstrdup(edata->message);

		if (position > 0)
		{
			ereport(LOG,
					(errmsg("eventstore projection \"%s\" failed at global position " INT64_FORMAT ": %s",
							name, position, message)));
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			es_projection_record_error(name, position, message);
			PopActiveSnapshot();
			CommitTransactionCommand();
			result = ES_STEP_HANDLER_FAILED;
		}
		else
		{
			ereport(LOG,
					(errmsg("eventstore projection \"%s\" could not run: %s",
							name, message)));
			result = ES_STEP_FAILED;
		}
		pfree(message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);

	return result;
}

/* es_worker_maintenance_step(): a table was locked, the step did not run */
#define ES_MAINTENANCE_BUSY		(-2)

/*
 * One step of stream maintenance in its own transaction: a retention step
 * (es_retention_step: at most "batch" events, streams that got events after
 * "after"; *complete tells whether it saw all it had to) or an archive step
 * (es_archive_step: at most "batch" streams).  Returns how much it did.  An
 * error is logged and ends the pass; the next pass tries again.  Returns -1
 * on error, 0 when the extension is gone, ES_MAINTENANCE_BUSY when a table
 * it needs is locked.
 */
static int64
es_worker_maintenance_step(bool retention, const char *activity, int batch,
						   int64 after, bool *complete)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile int64 done = -1;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		const EsCatalog *cat;

		PushActiveSnapshot(GetTransactionSnapshot());
		/* the catalog as of this transaction: the extension may be gone */
		cat = es_catalog_lookup(true);
		if (cat == NULL || !OidIsValid(cat->streams_relid))
			done = 0;
		else if (!es_maintenance_locks(cat))
			done = ES_MAINTENANCE_BUSY;
		if (done == -1)
		{
			pgstat_report_activity(STATE_RUNNING, activity);
			if (retention)
				done = es_retention_step(cat, batch, after, complete);
			else
				done = es_archive_step(cat, batch);
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("eventstore %s failed: %s", activity, edata->message)));
		FreeErrorData(edata);
		done = -1;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);

	return done;
}

/*
 * Retention and archive policies, every eventstore.maintenance_interval,
 * at once when a stream's settings changed or a stream was deleted, and
 * again while the last pass stopped short.  A pass removes at most
 * ES_WORKER_BATCHES_PER_PASS batches, so notifications and projections
 * keep their pace.
 */
static void
es_worker_maintenance(EsWorkerState *state)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		wanted = pg_atomic_exchange_u32(&es_worker_db->maintenance_wanted, 0) != 0;
	int			batch = es_maintenance_batch_size;
	int64		done = 0;
	bool		lifecycle;
	int64		upto = state->recorded;

	if (!wanted && !state->more_maintenance && state->last_maintenance != 0 &&
		!TimestampDifferenceExceeds(state->last_maintenance, now, es_maintenance_interval))
		return;
	state->last_maintenance = now;
	state->more_maintenance = false;

	StartTransactionCommand();
	{
		const EsCatalog *cat = es_catalog_lookup(true);

		/* version 0.3.0 or later */
		lifecycle = (cat != NULL && OidIsValid(cat->streams_relid));
		/* a new incarnation of the extension: positions start again */
		if (lifecycle && cat->position_seq_relid != state->retention_seq)
		{
			state->retention_seq = cat->position_seq_relid;
			state->retention_after = 0;
		}
	}
	CommitTransactionCommand();
	if (!lifecycle)
		return;

	/*
	 * Every event up to the recorded horizon has committed (or never
	 * will): once a pass has looked at the streams that got events up to
	 * it, the next pass need only look at those that got events after.
	 */
	for (int i = 0; i < ES_WORKER_BATCHES_PER_PASS; i++)
	{
		bool		complete = false;

		CHECK_FOR_INTERRUPTS();
		done = es_worker_maintenance_step(true, "eventstore: stream retention", batch,
										  state->retention_after, &complete);
		if (done >= batch)
			continue;
		/* a stream skipped for a lock keeps the horizon where it was */
		if (done >= 0 && complete)
			state->retention_after = Max(state->retention_after, upto);
		break;
	}
	if (done >= batch)
		state->more_maintenance = true;
	if (done == ES_MAINTENANCE_BUSY)
	{
		/* a command holds the tables: try again after a nap */
		state->last_maintenance = 0;
		return;
	}

	/* archiving moves whole streams: a batch is a number of streams */
	done = es_worker_maintenance_step(false, "eventstore: archive policies",
									  Max(batch / 10, 1), 0, NULL);
	if (done >= Max(batch / 10, 1))
		state->more_maintenance = true;
	if (done == ES_MAINTENANCE_BUSY)
		state->last_maintenance = 0;
}

/* Look at the projections again after a nap, whatever happens meanwhile. */
static void
es_worker_retry_later(EsWorkerState *state)
{
	TimestampTz at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												 es_worker_naptime);

	if (state->next_retry == 0 || at < state->next_retry)
		state->next_retry = at;
}

/*
 * Run the async projections and the inline ones that catch up, when there
 * may be something for them: the horizon moved, a definition changed, the
 * last pass stopped short, or a retry fell due.
 */
static void
es_worker_projections(EsWorkerState *state)
{
	List	   *names;
	ListCell   *lc;
	TimestampTz next_retry;
	bool		busy;

	if (!state->more_work &&
		(state->recorded == state->projected || !state->any_projections) &&
		state->generation == es_projection_generation &&
		(state->next_retry == 0 || GetCurrentTimestamp() < state->next_retry))
		return;

	MemoryContextReset(state->pass_cxt);
	state->projected = state->recorded;
	state->more_work = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(state->pass_cxt);

		names = es_projections_for_worker(&next_retry, &busy);
		MemoryContextSwitchTo(oldcxt);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* taken after the transaction: its start processed the invalidations */
	state->generation = es_projection_generation;
	state->next_retry = next_retry;
	state->any_projections = (names != NIL);
	if (busy)
		es_worker_retry_later(state);

	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		bool		caught_up = false;

		for (int batch = 0; batch < ES_WORKER_BATCHES_PER_PASS; batch++)
		{
			int64		handled;
			bool		needs_live;
			EsStepResult result;

			CHECK_FOR_INTERRUPTS();
			result = es_worker_project(name, false, &handled, &caught_up, &needs_live);
			if (result == ES_STEP_HANDLER_FAILED)
			{
				/*
				 * Pass again at once: the events before the failing one go
				 * through, and the next pass learns when the retry is due.
				 */
				state->more_work = true;
				caught_up = true;
				break;
			}
			if (result == ES_STEP_FAILED)
			{
				es_worker_retry_later(state);
				caught_up = true;
				break;
			}
			if (handled < 0)
			{
				caught_up = true;
				break;
			}
			if (caught_up)
			{
				if (needs_live &&
					es_worker_project(name, true, &handled, &caught_up,
									  &needs_live) != ES_STEP_OK)
					es_worker_retry_later(state);	/* e.g. the lock was busy */
				break;
			}
		}
		if (!caught_up)
			state->more_work = true;
	}
}

/* Sleep until the latch is set or "timeout" (ms), bounded by a due retry. */
static void
es_worker_sleep(EsWorkerState *state, long timeout)
{
	if (state->next_retry != 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(), state->next_retry, &secs, &usecs);
		timeout = Min(timeout, secs * 1000 + usecs / 1000 + 1);
	}
	(void) WaitLatch(MyLatch,
					 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

/*
 * The start of a worker or projector (kind) for database dboid: signals,
 * connection, then this process's entry in shared memory, claimed unless
 * another live process of the kind holds it.  Returns with es_worker_db
 * set and es_worker_exit registered to give the entry back; exits when the
 * database has no extension or is served already.
 */
static void
es_process_start(Oid dboid, EsProcKind kind)
{
	pid_t	   *pid;
	Latch	  **latch;
	Latch	   *launcher_latch;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	es_worker_connect(dboid, es_proc_type[kind]);

	if (kind == ES_PROC_WORKER)
	{
		/*
		 * The recorded horizon may lag after a crash without harm: it only
		 * ever understates.  So the worker's commits need not wait for a
		 * flush.
		 */
		SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	}
	else
		es_handler_timeout_id = RegisterTimeout(USER_TIMEOUT, es_handler_timeout_handler);

	/* A database without the extension needs neither process. */
	StartTransactionCommand();
	{
		const EsCatalog *cat = es_catalog_lookup(true);

		if (cat != NULL)
			es_worker_db = es_database_state(cat, dboid, true);
	}
	CommitTransactionCommand();
	if (es_worker_db == NULL)
		proc_exit(0);

	if (kind == ES_PROC_WORKER)
	{
		pid = &es_worker_db->worker_pid;
		latch = &es_worker_db->worker_latch;
	}
	else
	{
		pid = &es_worker_db->projector_pid;
		latch = &es_worker_db->projector_latch;
	}

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	if (*pid != 0 && *pid != MyProcPid && kill(*pid, 0) == 0)
	{
		/* another process of the kind serves this database already */
		LWLockRelease(es_shared->lock);
		proc_exit(0);
	}
	if (kind == ES_PROC_WORKER)
		es_worker_db->worker_wanted = true;
	*pid = MyProcPid;
	*latch = MyLatch;
	launcher_latch = es_shared->launcher_latch;
	LWLockRelease(es_shared->lock);
	before_shmem_exit(es_worker_exit, (Datum) 0);

	/* a worker: the database is wanted, the launcher starts its projector too */
	if (kind == ES_PROC_WORKER && launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/*
 * The worker: publishes the horizon, notifies, runs retention and archive
 * policies.  It never runs user code, so a slow handler never holds up
 * what readers, standbys and listeners wait for.
 */
void
eventstore_worker_main(Datum main_arg)
{
	EsWorkerState state = {InvalidOid, 0, 0, 0, 0, false, false, 0, NULL};

	es_process_start(DatumGetObjectId(main_arg), ES_PROC_WORKER);

	for (;;)
	{
		long		timeout = es_worker_naptime;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (!es_worker_cycle(&state) && es_worker_retire())
			proc_exit(0);

		es_worker_maintenance(&state);
		if (state.more_maintenance)
			continue;
		timeout = Min(timeout, es_maintenance_interval);

		/*
		 * Space cycles at least eventstore.notify_interval apart.  The latch
		 * stays set meanwhile, so committing appenders find it set and
		 * return at once from SetLatch; all their commits are covered by
		 * the next cycle.  A commit after a quiet spell is still published
		 * at once.
		 */
		if (es_notify_interval > 0)
			(void) WaitLatch(NULL, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 es_notify_interval, PG_WAIT_EXTENSION);

		es_worker_sleep(&state, timeout);
	}
}

/*
 * The projector: runs the async projections (snapshot policies among them)
 * and the replays of inline ones, as their owners, each batch within
 * eventstore.handler_timeout.  The worker wakes it when the horizon moves,
 * committed definition changes wake it directly.  It retires with the
 * worker when the extension is dropped.
 */
void
eventstore_projector_main(Datum main_arg)
{
	EsWorkerState state = {InvalidOid, 0, 0, 0, 0, false, false, 0, NULL};

	es_process_start(DatumGetObjectId(main_arg), ES_PROC_PROJECTOR);

	state.pass_cxt = AllocSetContextCreate(TopMemoryContext,
										   "eventstore projector",
										   ALLOCSET_SMALL_SIZES);
	/* run the projections once at start: some may be due */
	state.more_work = true;

	for (;;)
	{
		bool		present;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		StartTransactionCommand();
		present = (es_catalog_lookup(true) != NULL);
		CommitTransactionCommand();
		if (!present)
		{
			bool		wanted;

			/* the extension is gone: leave with the worker */
			LWLockAcquire(es_shared->lock, LW_SHARED);
			wanted = es_worker_db->worker_wanted;
			LWLockRelease(es_shared->lock);
			if (!wanted)
				proc_exit(0);
			es_worker_sleep(&state, es_worker_naptime);
			continue;
		}

		state.recorded = (int64) pg_atomic_read_u64(&es_worker_db->published);
		es_worker_projections(&state);
		pg_atomic_write_u32(&es_worker_db->projector_idle,
							!state.any_projections && !state.more_work &&
							state.next_retry == 0);
		pgstat_report_stat(false);
		if (state.more_work)
			continue;
		es_worker_sleep(&state, es_worker_naptime);
	}
}

/* ---------------------------------------------------------------------
 * Commands that need a database to themselves
 * ---------------------------------------------------------------------
 */

/* pg_database_ownercheck() became object_ownercheck() in PostgreSQL 16. */
static bool
es_database_owner(Oid dboid)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(DatabaseRelationId, dboid, GetUserId());
#else
	return pg_database_ownercheck(dboid, GetUserId());
#endif
}

/*
 * The database whose eventstore processes a utility command needs gone,
 * if the command is one that needs the database without connections
 * (DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE, CREATE
 * DATABASE ... TEMPLATE) and the current user passes the command's own
 * permission checks -- the same ones, made first, so that nobody can stop
 * the processes with a command that is then refused.  InvalidOid
 * otherwise.  *dropping: the command removes the database.
 */
static Oid
es_database_to_release(Node *parsetree, bool *dropping)
{
	const char *dbname = NULL;
	Oid			dboid;
	bool		allowed = false;

	*dropping = false;
	if (IsA(parsetree, DropdbStmt))
	{
		dbname = ((DropdbStmt *) parsetree)->dbname;
		*dropping = true;
	}
	else if (IsA(parsetree, RenameStmt) &&
			 ((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
		dbname = ((RenameStmt *) parsetree)->subname;
	else if (IsA(parsetree, AlterDatabaseStmt))
	{
		ListCell   *lc;

		/* CONNECTION LIMIT, ALLOW_CONNECTIONS, IS_TEMPLATE need nobody gone */
		foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
		{
			DefElem    *opt = lfirst_node(DefElem, lc);

			if (strcmp(opt->defname, "tablespace") == 0)
				dbname = ((AlterDatabaseStmt *) parsetree)->dbname;
		}
	}
	else if (IsA(parsetree, CreatedbStmt))
	{
		ListCell   *lc;

		foreach(lc, ((CreatedbStmt *) parsetree)->options)
		{
			DefElem    *opt = lfirst_node(DefElem, lc);

			if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
				dbname = defGetString(opt);
		}
	}
	if (dbname == NULL)
		return InvalidOid;
	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid))
		return InvalidOid;

	if (IsA(parsetree, DropdbStmt) || IsA(parsetree, AlterDatabaseStmt))
		allowed = es_database_owner(dboid);
	else if (IsA(parsetree, RenameStmt))
		allowed = es_database_owner(dboid) && have_createdb_privilege();
	else if (IsA(parsetree, CreatedbStmt))
	{
		/* a template may be copied by anyone who may create databases */
		HeapTuple	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));

		if (HeapTupleIsValid(tup))
		{
			bool		istemplate = ((Form_pg_database) GETSTRUCT(tup))->datistemplate;

			ReleaseSysCache(tup);
			allowed = have_createdb_privilege() &&
				(istemplate || es_database_owner(dboid));
		}
	}
	return allowed ? dboid : InvalidOid;
}

/*
 * Stop the worker and projector of a database and wait until they have
 * gone.  Returns whether the database wanted them (to restore with
 * es_resume_database).
 */
static bool
es_stop_database(Oid dboid)
{
	EsDatabaseState *db = NULL;
	bool		was_wanted = false;
	pid_t		pids[ES_NUM_PROC_KINDS] = {0, 0};

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_shared->max_databases; i++)
	{
		if (es_shared->databases[i].dboid == dboid)
			db = &es_shared->databases[i];
	}
	if (db != NULL)
	{
		was_wanted = db->worker_wanted;
		db->worker_wanted = false;
		pids[ES_PROC_WORKER] = db->worker_pid;
		pids[ES_PROC_PROJECTOR] = db->projector_pid;
	}
	LWLockRelease(es_shared->lock);
	if (db == NULL)
		return false;

	for (int kind = 0; kind < ES_NUM_PROC_KINDS; kind++)
	{
		if (pids[kind] != 0)
			kill(pids[kind], SIGTERM);
	}
	for (int waited_ms = 0; waited_ms < 10000; waited_ms += 10)
	{
		bool		gone = true;

		LWLockAcquire(es_shared->lock, LW_SHARED);
		for (int kind = 0; kind < ES_NUM_PROC_KINDS; kind++)
		{
			pid_t		now_pid = (kind == ES_PROC_WORKER ? db->worker_pid : db->projector_pid);

			if (pids[kind] != 0 && now_pid == pids[kind] && kill(pids[kind], 0) == 0)
				gone = false;
		}
		LWLockRelease(es_shared->lock);
		if (gone)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return was_wanted;
}

/*
 * After a command that stopped them and then failed, or succeeded without
 * removing the database: have the launcher start the processes again.
 * With forget (the database was dropped), give the entry back instead.
 */
static void
es_resume_database(Oid dboid, bool was_wanted, bool forget)
{
	Latch	   *launcher_latch = NULL;

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_shared->max_databases; i++)
	{
		EsDatabaseState *db = &es_shared->databases[i];

		if (db->dboid != dboid)
			continue;
		if (forget)
		{
			db->worker_wanted = false;
			db->dboid = InvalidOid;
		}
		else if (was_wanted)
		{
			db->worker_wanted = true;
			launcher_latch = es_shared->launcher_latch;
		}
	}
	LWLockRelease(es_shared->lock);
	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

static void
es_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	Oid			dboid = InvalidOid;
	bool		dropping = false;
	bool		was_wanted = false;

	if (es_shared != NULL)
		dboid = es_database_to_release(parsetree, &dropping);
	if (OidIsValid(dboid))
		was_wanted = es_stop_database(dboid);

	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		/* the command failed: the database is still there, bring them back */
		if (OidIsValid(dboid))
			es_resume_database(dboid, was_wanted, false);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (OidIsValid(dboid))
		es_resume_database(dboid, was_wanted, dropping);
}

void
es_worker_install_hooks(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = es_process_utility;
}
