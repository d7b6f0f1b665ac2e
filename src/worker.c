/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  A database's worker: publishes the global-log horizon, notifies
 *	  listeners, and runs retention and archive policies.
 *
 * A database's worker sleeps on its latch.  Appending transactions set the
 * latch when they commit or abort; the worker then computes the live
 * horizon and, if it advanced, sends one NOTIFY on ES_NOTIFY_CHANNEL with
 * the horizon as payload and records the horizon in eventstore.recorded_horizon
 * (for hot standbys and REPEATABLE READ readers), both in one transaction.
 * Bursts of commits coalesce into one notification; appenders never touch
 * the notification queue or its lock.  The worker then tells the projector
 * (projector.c) how far the log may be projected.
 *
 * The worker also runs retention and archive policies, in steps of bounded
 * size (es_retention_step and es_archive_step, lifecycle.c).  It never runs
 * a user's code: nothing a handler does can delay the horizon, the
 * notifications or the maintenance.
 *
 * The launcher (launcher.c) starts the worker; what the worker shares with
 * the projector is in process.c.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "eventstore.h"

PGDLLEXPORT void eventstore_worker_main(Datum main_arg);

/* GUC: time between two retention and archiving passes (ms). */
static int	es_maintenance_interval = 10 * 1000;

/* GUC: events removed (a tenth of it: streams archived) per step. */
static int	es_maintenance_batch_size = 1000;

/* GUC: shortest time between two looks at the horizon (ms). */
static int	es_notify_interval = 5;

/* The prepared UPDATE of eventstore.recorded_horizon, per worker. */
static SPIPlanPtr es_record_plan = NULL;

/* What a worker has published so far, and its maintenance passes. */
typedef struct EsWorkerState
{
	Oid			seq_relid;		/* extension incarnation the rest refers to */
	int64		recorded;		/* horizon last written to recorded_horizon */
	int64		notified;		/* every commit up to it was announced */
	/* retention and archive policies */
	TimestampTz last_maintenance;	/* start of the last pass (0: none yet) */
	bool		more_maintenance;	/* the last pass stopped short */
	Oid			retention_seq;	/* extension incarnation retention_after is of */
	int64		retention_after;	/* horizon of the last complete retention */
} EsWorkerState;

/* Retention steps per pass, so that the horizon keeps its pace. */
#define ES_MAINTENANCE_STEPS_PER_PASS	8

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
	es_process_db->worker_wanted = false;
	pg_memory_barrier();
	for (int i = 0; i < es_shared->nslots; i++)
	{
		EsBackendSlot *slot = &es_shared->slots[i];

		if (pg_atomic_read_u64(&slot->min_position) != 0 &&
			slot->dboid == es_process_db->dboid)
			busy = true;
	}
	if (busy)
		es_process_db->worker_wanted = true;
	else
	{
		es_process_db->worker_pid = 0;
		es_process_db->worker_latch = NULL;
		/* the projector sees worker_wanted unset and retires too */
		if (es_process_db->projector_latch != NULL)
			SetLatch(es_process_db->projector_latch);
	}
	LWLockRelease(es_shared->lock);

	return !busy;
}

/*
 * The newest committed position in (after, upto] of the events "cat"
 * names, or 0: one backward step of the primary key under a snapshot taken
 * after the horizon was computed.
 */
static int64
es_newest_committed_in(const EsCatalog *cat, int64 after, int64 upto)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	Relation	heap = table_open(cat->events_relid, AccessShareLock);
	Relation	index = index_open(cat->position_index_relid, AccessShareLock);
	EsEventScan scan;
	TupleTableSlot *slot;
	int64		newest = 0;

	/* after < upto: the caller asks only when the horizon moved past it */
	es_scan_positions_begin(&scan, heap, index, snapshot, after + 1, upto,
							BackwardScanDirection, NULL);
	if ((slot = es_scan_next(&scan)) != NULL)
	{
		bool		isnull;

		newest = DatumGetInt64(slot_getattr(slot, Anum_es_global_position, &isnull));
	}
	es_scan_end(&scan);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	UnregisterSnapshot(snapshot);

	return newest;
}

/*
 * The same for this node's log, or 0 when nothing in (after, upto] was
 * committed: on a distributed store the newest of the first partition
 * placed here that has one (each node's worker notifies its own listeners
 * about its own partitions; one notification wakes them for all, so the
 * other partitions need not be looked at).
 */
static int64
es_newest_committed(const EsCatalog *cat, int64 after, int64 upto)
{
	EsPartition *parts;
	int			nparts;
	int64		newest = 0;

	if (!es_store_distributed(cat))
		return es_newest_committed_in(cat, after, upto);
	nparts = es_log_partitions(cat, &parts);
	for (int i = 0; i < nparts && newest == 0; i++)
	{
		const EsCatalog *pcat = parts[i].local ? es_partition_catalog(cat, parts[i].id) : NULL;

		if (pcat != NULL)
			newest = es_newest_committed_in(pcat, after, upto);
	}
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
	int64		published = 0;	/* positions the cycle published */
	bool		notified = false;
	TimestampTz started;

	SetCurrentStatementStartTimestamp();
	started = GetCurrentStatementStartTimestamp();
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

	if (es_database_state(cat, MyDatabaseId, true) != es_process_db)
		elog(ERROR, "the shared entry of database %u moved", MyDatabaseId);
	if (state->seq_relid != cat->position_seq_relid)
	{
		/* first cycle, or the extension was re-created */
		state->seq_relid = cat->position_seq_relid;
		state->recorded = es_recorded_horizon(cat, GetActiveSnapshot());
		state->notified = state->recorded;
	}

	horizon = es_live_horizon(cat, es_process_db, false);
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
		published = horizon - state->recorded;
		state->recorded = horizon;

		/*
		 * Every position up to the horizon is decided, and the scan's
		 * snapshot sees every commit among them: whether or not one is
		 * found, nothing in (notified, horizon] is left to announce.
		 */
		newest = es_newest_committed(cat, state->notified, horizon);
		if (newest > state->notified)
		{
			char		payload[32];

			snprintf(payload, sizeof(payload), INT64_FORMAT, newest);
			Async_Notify(ES_NOTIFY_CHANNEL, payload);
			notified = true;
		}
		state->notified = horizon;
	}

	/*
	 * Counted before the commit: whoever sees the new horizon sees the
	 * counts too (a failing commit ends the worker, and is in the log).
	 */
	if (published > 0)
	{
		if (notified)
			es_stats_add(es_process_db, ES_STAT_NOTIFICATIONS, 1);
		es_stats_duty(es_process_db, ES_DUTY_NOTIFY, published, started);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* committed: the projector may run the projections up to it */
	if ((uint64) state->recorded != pg_atomic_read_u64(&es_process_db->published))
	{
		Latch	   *latch = es_process_db->projector_latch;

		pg_atomic_write_u64(&es_process_db->published, (uint64) state->recorded);
		/* with nothing to run, appends cost the projector no wake-up */
		if (latch != NULL && pg_atomic_read_u32(&es_process_db->projector_idle) == 0)
			SetLatch(latch);
	}
	return true;
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
 * ES_MAINTENANCE_STEPS_PER_PASS batches, so notifications and projections
 * keep their pace.
 */
static void
es_worker_maintenance(EsWorkerState *state)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		wanted = pg_atomic_exchange_u32(&es_process_db->maintenance_wanted, 0) != 0;
	int			batch = es_maintenance_batch_size;
	int64		done = 0;
	int64		removed = 0;	/* events, by the whole retention pass */
	TimestampTz started;
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

		/*
		 * Version 0.3.0 or later, and not distributed: a store distributed
		 * with Citus keeps its streams in shards that these passes, written
		 * for one server's tables, do not reach -- through the distributed
		 * tables each pass would query every shard of the store from every
		 * node, to remove nothing.  (Reads still hide what retention would
		 * remove.)
		 */
		lifecycle = (cat != NULL && OidIsValid(cat->streams_relid) &&
					 !es_store_distributed(cat));
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
	started = GetCurrentTimestamp();
	es_progress_begin(ES_PROGRESS_RETENTION, NULL, -1, false);
	for (int i = 0; i < ES_MAINTENANCE_STEPS_PER_PASS; i++)
	{
		bool		complete = false;

		CHECK_FOR_INTERRUPTS();
		done = es_worker_maintenance_step(true, "eventstore: stream retention", batch,
										  state->retention_after, &complete);
		if (done > 0)
			es_progress_update(removed += done, -1);
		if (done >= batch)
			continue;
		/* a stream skipped for a lock keeps the horizon where it was */
		if (done >= 0 && complete)
			state->retention_after = Max(state->retention_after, upto);
		break;
	}
	es_progress_end();
	if (removed > 0 || done >= 0)
		es_stats_duty(es_process_db, ES_DUTY_RETENTION, removed, started);
	if (done >= batch)
		state->more_maintenance = true;
	if (done == ES_MAINTENANCE_BUSY)
	{
		/* a command holds the tables: try again after a nap */
		state->last_maintenance = 0;
		return;
	}

	/* archiving moves whole streams: a batch is a number of streams */
	started = GetCurrentTimestamp();
	es_progress_begin(ES_PROGRESS_ARCHIVING, NULL, -1, false);
	done = es_worker_maintenance_step(false, "eventstore: archive policies",
									  Max(batch / 10, 1), 0, NULL);
	es_progress_end();
	if (done >= 0)
		es_stats_duty(es_process_db, ES_DUTY_ARCHIVING, done, started);
	if (done >= Max(batch / 10, 1))
		state->more_maintenance = true;
	if (done == ES_MAINTENANCE_BUSY)
		state->last_maintenance = 0;
}

/*
 * The worker: publishes the horizon, notifies, runs retention and archive
 * policies.  It never runs user code, so a slow handler never holds up
 * what readers, standbys and listeners wait for.
 */
void
eventstore_worker_main(Datum main_arg)
{
	EsWorkerState state = {InvalidOid, 0, 0, 0, false, InvalidOid, 0};

	es_process_start(DatumGetObjectId(main_arg), ES_PROC_WORKER);

	/*
	 * The recorded horizon may lag after a crash without harm: it only ever
	 * understates.  So the worker's commits need not wait for a flush.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	for (;;)
	{
		long		timeout = es_worker_naptime;

		es_process_interrupts();

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
							 es_notify_interval, es_wait_event(ES_WAIT_NOTIFY_DELAY));

		es_process_sleep(timeout, 0, ES_WAIT_WORKER_MAIN);
	}
}

/*
 * Define the settings this file reads: the worker's notifications and
 * maintenance.  Called by _PG_init.
 */
void
es_worker_define_gucs(void)
{
	DefineCustomIntVariable("eventstore.notify_interval",
							"Shortest time between two notifications of the background worker.",
							"Commits within the interval are covered by one notification.",
							&es_notify_interval,
							5,
							0,
							10000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventstore.maintenance_interval",
							"Time between the background worker's retention and archiving passes.",
							"Stream settings, deletes and new archive policies start a pass at once.",
							&es_maintenance_interval,
							10 * 1000,
							10,
							24 * 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventstore.maintenance_batch_size",
							"Events the background worker removes or archives per transaction.",
							"Retention and archiving run in transactions of at most this many events (archiving: streams).",
							&es_maintenance_batch_size,
							1000,
							1,
							1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}
