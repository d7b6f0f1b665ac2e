/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background workers: a launcher, and one worker per database that
 *	  uses eventstore.
 *
 * The launcher is registered when the library is preloaded.  At start it
 * asks for a worker in every connectable database; a worker that finds no
 * eventstore extension in its database gives its entry back and exits.
 * Later, the first append in a database asks for a worker if none runs
 * (es_worker_request), so CREATE EXTENSION needs no restart.  The launcher
 * restarts a worker that died, with a one second pause.
 *
 * A database's worker sleeps on its latch.  Appending transactions set the
 * latch when they commit or abort; the worker then computes the live
 * horizon and, if it advanced, sends one NOTIFY on ES_NOTIFY_CHANNEL with
 * the horizon as payload and records the horizon in eventstore.recorded_horizon
 * (for hot standbys and REPEATABLE READ readers), both in one transaction.
 * Bursts of commits coalesce into one notification; appenders never touch
 * the notification queue or its lock.
 *
 * Commands that need a database without connections (DROP DATABASE,
 * ALTER DATABASE RENAME / SET TABLESPACE, CREATE DATABASE ... TEMPLATE) stop
 * that database's worker first, through a ProcessUtility hook.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "eventstore.h"

PGDLLEXPORT void eventstore_launcher_main(Datum main_arg);
PGDLLEXPORT void eventstore_worker_main(Datum main_arg);

/* GUC: longest a worker sleeps between two looks at the horizon (ms). */
int			es_worker_naptime = 1000;

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

/* An appender found no worker wanted for its database: ask the launcher. */
void
es_worker_request(EsDatabaseState *db)
{
	Latch	   *launcher_latch;

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	db->worker_wanted = true;
	launcher_latch = es_shared->launcher_latch;
	LWLockRelease(es_shared->lock);

	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/* ---------------------------------------------------------------------
 * Launcher
 * ---------------------------------------------------------------------
 */

typedef struct EsLauncherEntry
{
	Oid			dboid;			/* database the handle's worker serves */
	BackgroundWorkerHandle *handle;
	TimestampTz not_before;		/* restart pause */
} EsLauncherEntry;

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

/* Claim an entry for every connectable, non-template database. */
static void
es_launcher_claim_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database dbform = (Form_pg_database) GETSTRUCT(tup);
		bool		known = false;
		EsDatabaseState *unused = NULL;

		if (!dbform->datallowconn || dbform->datistemplate)
			continue;

		LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
		for (int i = 0; i < es_shared->max_databases; i++)
		{
			EsDatabaseState *db = &es_shared->databases[i];

			if (db->dboid == dbform->oid)
				known = true;
			else if (db->dboid == InvalidOid && unused == NULL)
				unused = db;
		}
		if (!known && unused != NULL)
		{
			unused->dboid = dbform->oid;
			unused->initialized = false;
			unused->worker_wanted = true;
			unused->worker_pid = 0;
			unused->worker_latch = NULL;
		}
		LWLockRelease(es_shared->lock);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();
}

static bool
es_launcher_start_worker(EsLauncherEntry *entry, Oid dboid)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "eventstore");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "eventstore_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "eventstore worker for database %u", dboid);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "eventstore worker");
	bgw.bgw_main_arg = ObjectIdGetDatum(dboid);
	bgw.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&bgw, &entry->handle))
	{
		ereport(LOG,
				(errmsg("eventstore launcher could not start a worker for database %u", dboid),
				 errhint("Raise max_worker_processes.")));
		entry->handle = NULL;
		return false;
	}
	entry->dboid = dboid;
	return true;
}

/*
 * Start the workers that are wanted and not running.  Returns how long the
 * launcher may sleep (ms) before a restart pause ends.
 */
static long
es_launcher_scan(EsLauncherEntry *entries)
{
	long		sleep_ms = 10000;
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < es_shared->max_databases; i++)
	{
		EsLauncherEntry *entry = &entries[i];
		Oid			dboid;
		bool		wanted;
		pid_t		pid;

		LWLockAcquire(es_shared->lock, LW_SHARED);
		dboid = es_shared->databases[i].dboid;
		wanted = es_shared->databases[i].worker_wanted;
		LWLockRelease(es_shared->lock);

		if (entry->handle != NULL &&
			GetBackgroundWorkerPid(entry->handle, &pid) == BGWH_STOPPED)
		{
			pfree(entry->handle);
			entry->handle = NULL;
			/* A worker that died while wanted is restarted after a pause. */
			entry->not_before = wanted ? TimestampTzPlusMilliseconds(now, 1000) : 0;
		}

		if (!OidIsValid(dboid) || !wanted || entry->handle != NULL)
			continue;

		if (entry->dboid == dboid && now < entry->not_before)
		{
			long		secs;
			int			usecs;

			TimestampDifference(now, entry->not_before, &secs, &usecs);
			sleep_ms = Min(sleep_ms, secs * 1000 + usecs / 1000 + 1);
			continue;
		}

		if (!es_launcher_start_worker(entry, dboid))
			sleep_ms = Min(sleep_ms, 1000);
	}

	return sleep_ms;
}

void
eventstore_launcher_main(Datum main_arg)
{
	EsLauncherEntry *entries;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("eventstore launcher");

	entries = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(EsLauncherEntry) * es_shared->max_databases);

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	es_shared->launcher_pid = MyProcPid;
	es_shared->launcher_latch = MyLatch;
	LWLockRelease(es_shared->lock);
	before_shmem_exit(es_launcher_exit, (Datum) 0);

	es_launcher_claim_databases();

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		sleep_ms = es_launcher_scan(entries);

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
	LWLockRelease(es_shared->lock);
}

/* The extension is not (or no longer) installed: give the entry back. */
static void
es_worker_retire(void)
{
	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	es_worker_db->worker_wanted = false;
	es_worker_db->worker_pid = 0;
	es_worker_db->worker_latch = NULL;
	es_worker_db->dboid = InvalidOid;
	LWLockRelease(es_shared->lock);
	es_worker_db = NULL;
}

/*
 * One look at the horizon.  Returns false when the extension is gone.
 */
static bool
es_worker_cycle(int64 *last_published, Oid *last_seq)
{
	const EsCatalog *cat;
	int64		horizon;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "eventstore: publishing the log horizon");

	cat = es_catalog_lookup(true);
	if (cat == NULL || es_worker_db->dboid != MyDatabaseId)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		return false;
	}

	(void) es_database_state(cat, MyDatabaseId, true);
	if (*last_seq != cat->position_seq_relid)
	{
		/* first cycle, or the extension was re-created */
		*last_seq = cat->position_seq_relid;
		*last_published = es_recorded_horizon(cat, GetActiveSnapshot());
		if (*last_published == 0)
			*last_published = -1;	/* publish even an empty log once */
	}

	horizon = es_live_horizon(es_worker_db, false);
	if (horizon > *last_published)
	{
		char		payload[32];
		Datum		arg = Int64GetDatum(horizon);
		Oid			argtype = INT8OID;
		int			ret;

		snprintf(payload, sizeof(payload), INT64_FORMAT, horizon);
		Async_Notify(ES_NOTIFY_CHANNEL, payload);

		SPI_connect();
		ret = SPI_execute_with_args("UPDATE eventstore.recorded_horizon"
									"   SET position = $1, recorded_at = now()"
									" WHERE position < $1",
									1, &argtype, &arg, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "could not record the log horizon: %s",
				 SPI_result_code_string(ret));
		SPI_finish();

		*last_published = horizon;
	}

	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return true;
}

void
eventstore_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	int64		last_published = -1;
	Oid			last_seq = InvalidOid;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("eventstore worker");

	/*
	 * The recorded horizon may lag after a crash without harm: it only ever
	 * understates.  So the worker's commits need not wait for a flush.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_shared->max_databases; i++)
	{
		if (es_shared->databases[i].dboid == dboid)
			es_worker_db = &es_shared->databases[i];
	}
	if (es_worker_db != NULL)
	{
		es_worker_db->worker_pid = MyProcPid;
		es_worker_db->worker_latch = MyLatch;
	}
	LWLockRelease(es_shared->lock);
	if (es_worker_db == NULL)
		proc_exit(0);
	before_shmem_exit(es_worker_exit, (Datum) 0);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (!es_worker_cycle(&last_published, &last_seq))
		{
			es_worker_retire();
			proc_exit(0);
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 es_worker_naptime, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * Commands that need a database to themselves
 * ---------------------------------------------------------------------
 */

/*
 * Stop the worker of a database and wait until it has gone.  With forget,
 * give its entry back too (the database is being dropped).
 */
static void
es_release_database(const char *dbname, bool forget)
{
	Oid			dboid;
	EsDatabaseState *db = NULL;
	pid_t		pid = 0;

	if (dbname == NULL)
		return;
	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid))
		return;

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_shared->max_databases; i++)
	{
		if (es_shared->databases[i].dboid == dboid)
			db = &es_shared->databases[i];
	}
	if (db != NULL)
	{
		db->worker_wanted = false;
		pid = db->worker_pid;
		if (forget)
			db->dboid = InvalidOid;
	}
	LWLockRelease(es_shared->lock);

	if (pid == 0)
		return;

	kill(pid, SIGTERM);
	for (int waited_ms = 0; waited_ms < 10000; waited_ms += 10)
	{
		bool		gone;

		LWLockAcquire(es_shared->lock, LW_SHARED);
		gone = (db->worker_pid != pid);
		LWLockRelease(es_shared->lock);
		if (gone || kill(pid, 0) != 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

static void
es_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (es_shared != NULL)
	{
		if (IsA(parsetree, DropdbStmt))
			es_release_database(((DropdbStmt *) parsetree)->dbname, true);
		else if (IsA(parsetree, RenameStmt) &&
				 ((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
			es_release_database(((RenameStmt *) parsetree)->subname, false);
		else if (IsA(parsetree, AlterDatabaseStmt))
			es_release_database(((AlterDatabaseStmt *) parsetree)->dbname, false);
		else if (IsA(parsetree, CreatedbStmt))
		{
			ListCell   *lc;

			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
					es_release_database(defGetString(opt), false);
			}
		}
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

void
es_worker_install_hooks(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = es_process_utility;
}
