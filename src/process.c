/*-------------------------------------------------------------------------
 *
 * process.c
 *	  What the background processes of a database (worker.c, projector.c)
 *	  and the launcher (launcher.c) share: their names, signals, the
 *	  connection with its pinned search_path, the claim of the database's
 *	  entry in shared memory, and how they wait.
 *
 * A database's worker and projector each hold their database's entry in
 * shared memory (EsDatabaseState, horizon.c) under their pid and latch:
 * committing appenders and definition changes wake them through it, the
 * launcher learns from it which processes run, and a process that finds
 * the entry held by a live process of its kind leaves.
 *
 * src/process.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "eventstore.h"

/* GUC: longest a worker or projector sleeps between two looks (ms). */
int			es_worker_naptime = 1000;

/* The names of the per-database processes (bgw_type, application_name). */
const char *const es_proc_type[ES_NUM_PROC_KINDS] = {
	"eventstore worker", "eventstore projector"
};

/* SIGHUP reloads the configuration, SIGTERM ends the process. */
void
es_process_signals(void)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
}

/* At the top of a process's loop: interrupts, and a pending reload. */
void
es_process_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* Milliseconds from now until "t" (rounded up; at least 1). */
long
es_ms_until(TimestampTz t)
{
	long		secs;
	int			usecs;

	TimestampDifference(GetCurrentTimestamp(), t, &secs, &usecs);
	return secs * 1000 + usecs / 1000 + 1;
}

/*
 * Sleep until the latch is set or "timeout" (ms), and no later than
 * "not_after" when it is not 0; pg_stat_activity shows "wait".
 */
void
es_process_sleep(long timeout, TimestampTz not_after, EsWait wait)
{
	if (not_after != 0)
		timeout = Min(timeout, es_ms_until(not_after));
	(void) WaitLatch(MyLatch,
					 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout, es_wait_event(wait));
	ResetLatch(MyLatch);
}

/* This process's database entry (worker or projector). */
EsDatabaseState *es_process_db = NULL;

static void
es_process_exit(int code, Datum arg)
{
	if (es_process_db == NULL)
		return;
	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	if (es_process_db->worker_pid == MyProcPid)
	{
		es_process_db->worker_pid = 0;
		es_process_db->worker_latch = NULL;
	}
	if (es_process_db->projector_pid == MyProcPid)
	{
		es_process_db->projector_pid = 0;
		es_process_db->projector_latch = NULL;
	}
	LWLockRelease(es_shared->lock);
}

/*
 * Connect to the database and pin this session's search_path: settings of
 * the database or role (ALTER DATABASE / ALTER ROLE ... SET search_path, which
 * a database owner may set) are overridden.  A later SET still wins, but
 * every query of the extension pins the path again for its own duration
 * (es_spi_begin), and user code runs inside a GUC nest level that is rolled
 * back (es_user_code_begin, es_projector_step).
 */
static void
es_process_connect(Oid dboid, const char *appname)
{
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname(appname);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * The start of a worker or projector (kind) for database dboid: signals,
 * connection, then this process's entry in shared memory, claimed unless
 * another live process of the kind holds it.  Returns with es_process_db
 * set and es_process_exit registered to give the entry back; exits when the
 * database has no extension or is served already.
 */
void
es_process_start(Oid dboid, EsProcKind kind)
{
	pid_t	   *pid;
	Latch	  **latch;
	Latch	   *launcher_latch;

	es_process_signals();
	es_process_connect(dboid, es_proc_type[kind]);

	/* A database without the extension needs neither process. */
	StartTransactionCommand();
	{
		const EsCatalog *cat = es_catalog_lookup(true);

		if (cat != NULL)
			es_process_db = es_database_state(cat, dboid, true);
	}
	CommitTransactionCommand();
	if (es_process_db == NULL)
		proc_exit(0);

	if (kind == ES_PROC_WORKER)
	{
		pid = &es_process_db->worker_pid;
		latch = &es_process_db->worker_latch;
	}
	else
	{
		pid = &es_process_db->projector_pid;
		latch = &es_process_db->projector_latch;
	}

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	if (*pid != 0 && *pid != MyProcPid && kill(*pid, 0) == 0)
	{
		/* another process of the kind serves this database already */
		LWLockRelease(es_shared->lock);
		proc_exit(0);
	}
	if (kind == ES_PROC_WORKER)
		es_process_db->worker_wanted = true;
	*pid = MyProcPid;
	*latch = MyLatch;
	launcher_latch = es_shared->launcher_latch;
	LWLockRelease(es_shared->lock);
	before_shmem_exit(es_process_exit, (Datum) 0);

	/* a worker: the database is wanted, the launcher starts its projector too */
	if (kind == ES_PROC_WORKER && launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/*
 * Define the settings this file reads: how long the background processes sleep.
 * Called by _PG_init.
 */
void
es_process_define_gucs(void)
{
	DefineCustomIntVariable("eventstore.worker_naptime",
							"Longest time the background worker sleeps between two looks at the global log.",
							"Committing appenders wake the worker at once; this bounds the wait otherwise.",
							&es_worker_naptime,
							1000,
							10,
							3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}
