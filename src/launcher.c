/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher, which starts and restarts every database's worker and
 *	  projector, and the utility hook that stops them for commands that need
 *	  a database without connections.
 *
 * The launcher is registered when the library is preloaded.  At start it
 * starts a worker in every connectable database; a worker that finds no
 * eventstore extension in its database exits at once, one that stays asks
 * the launcher for the database's projector.  Later, the first append in a
 * database asks for both if none is wanted there (es_worker_request,
 * horizon.c), so CREATE EXTENSION needs no restart.  The launcher restarts
 * a process that died, after a one second pause.
 *
 * Commands that need a database without connections (DROP DATABASE,
 * ALTER DATABASE RENAME / SET TABLESPACE, CREATE DATABASE ... TEMPLATE) stop
 * that database's processes first, through a ProcessUtility hook, once the
 * command's own permission checks are known to pass; if the command fails,
 * or leaves the database in place, the launcher starts them again at once.
 *
 * The processes themselves are in worker.c and projector.c; both pin their
 * session's search_path at connection (process.c), and every query of
 * their own runs through es_spi_begin() (guard.c), under a search_path
 * pinned for its duration, whatever a database or role setting or a
 * handler set.
 *
 * src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "eventstore.h"

PGDLLEXPORT void eventstore_launcher_main(Datum main_arg);

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

/* The entry points of the per-database processes, by EsProcKind. */
static const char *const es_proc_function[ES_NUM_PROC_KINDS] = {
	"eventstore_worker_main", "eventstore_projector_main"
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
				sleep_ms = Min(sleep_ms, es_ms_until(lw->not_before[kind]));
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
	es_process_signals();
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
		es_process_interrupts();
		es_process_sleep(es_launcher_scan(), 0, ES_WAIT_LAUNCHER_MAIN);
	}
}

/* ---------------------------------------------------------------------
 * Commands that need a database to themselves
 * ---------------------------------------------------------------------
 */

/*
 * Whether the current user may create databases: superuser or CREATEDB, as
 * CREATE DATABASE checks.  Our own, because have_createdb_privilege() is
 * not exported by every PostgreSQL 15 minor release (15.18 lacks it), and
 * one library must load on all of them.
 */
static bool
es_may_create_databases(void)
{
	HeapTuple	tup;
	bool		result = false;

	if (superuser())
		return true;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	if (HeapTupleIsValid(tup))
	{
		result = ((Form_pg_authid) GETSTRUCT(tup))->rolcreatedb;
		ReleaseSysCache(tup);
	}
	return result;
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
		allowed = es_database_ownercheck(dboid, GetUserId());
	else if (IsA(parsetree, RenameStmt))
		allowed = es_database_ownercheck(dboid, GetUserId()) && es_may_create_databases();
	else if (IsA(parsetree, CreatedbStmt))
	{
		/* a template may be copied by anyone who may create databases */
		HeapTuple	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));

		if (HeapTupleIsValid(tup))
		{
			bool		istemplate = ((Form_pg_database) GETSTRUCT(tup))->datistemplate;

			ReleaseSysCache(tup);
			allowed = es_may_create_databases() &&
				(istemplate || es_database_ownercheck(dboid, GetUserId()));
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
						 10L, es_wait_event(ES_WAIT_PROCESSES_EXIT));
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

