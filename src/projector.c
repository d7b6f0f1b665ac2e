/*-------------------------------------------------------------------------
 *
 * projector.c
 *	  A database's projector: runs the async projections (snapshot policies
 *	  among them) and the replays of inline projections, as their owners.
 *
 * The projector is the only process of the extension that runs users'
 * code.  The worker (worker.c) wakes it when the horizon it published
 * moved -- unless its last pass found nothing to run -- and committed
 * definition changes wake it directly.  It runs each projection up to that
 * horizon in batches (es_projection_run_batch, projection.c), each in a
 * transaction of its own; a handler's error is recorded with its position
 * and retried after a backoff.  Each batch runs within
 * eventstore.handler_timeout, enforced by a timer of our own.
 *
 * It retires with the worker when the extension is dropped.
 *
 * src/projector.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/guc.h"

#include "eventstore.h"

PGDLLEXPORT void eventstore_projector_main(Datum main_arg);

/* GUC: longest a projector's batch may run (ms); 0: no limit. */
static int	es_handler_timeout = 60 * 1000;

/* What the projector has run so far. */
typedef struct EsProjectorState
{
	int64		recorded;		/* horizon the worker last published */
	int64		projected;		/* horizon of the last pass over them */
	uint64		generation;		/* es_projection_generation at that pass */
	bool		more_work;		/* the last pass stopped short */
	bool		any_projections;	/* the last pass found some to run */
	bool		poll;			/* ... on a distributed store: pass every nap */
	TimestampTz next_retry;		/* a failing projection is due then (or 0) */
	MemoryContext pass_cxt;		/* reset per pass */
} EsProjectorState;

/* Batches of one projection per pass, so that others get their turn. */
#define ES_PROJECTOR_BATCHES_PER_PASS	8

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
es_projector_step(const char *name, bool go_live, int64 *handled,
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

/* Look at the projections again after a nap, whatever happens meanwhile. */
static void
es_projector_retry_later(EsProjectorState *state)
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
es_projector_pass(EsProjectorState *state)
{
	List	   *names;
	ListCell   *lc;
	TimestampTz next_retry;
	bool		busy;

	/*
	 * On a distributed store the events are appended on other nodes, whose
	 * horizons this node's worker does not publish: look every nap.
	 */
	if (!state->more_work && !state->poll &&
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
		const EsCatalog *cat;

		names = es_projections_for_worker(&next_retry, &busy);
		MemoryContextSwitchTo(oldcxt);
		cat = es_catalog_lookup(true);
		state->poll = (names != NIL && cat != NULL && es_store_distributed(cat));
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* taken after the transaction: its start processed the invalidations */
	state->generation = es_projection_generation;
	state->next_retry = next_retry;
	state->any_projections = (names != NIL);
	if (busy)
		es_projector_retry_later(state);

	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		bool		caught_up = false;
		int64		events = 0;
		TimestampTz started = GetCurrentTimestamp();

		/*
		 * eventstore.progress shows it, with its checkpoint and horizon (a
		 * snapshot policy is the projection "snapshot:<policy>", state.sql)
		 */
		es_progress_begin(strncmp(name, "snapshot:", 9) == 0 ?
						  ES_PROGRESS_SNAPSHOTS : ES_PROGRESS_PROJECTION,
						  name, -1, false);
		for (int batch = 0; batch < ES_PROJECTOR_BATCHES_PER_PASS; batch++)
		{
			int64		handled;
			bool		needs_live;
			EsStepResult result;

			CHECK_FOR_INTERRUPTS();
			result = es_projector_step(name, false, &handled, &caught_up, &needs_live);
			events += Max(handled, 0);
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
				es_projector_retry_later(state);
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
					es_projector_step(name, true, &handled, &caught_up,
									  &needs_live) != ES_STEP_OK)
					es_projector_retry_later(state);	/* e.g. the lock was busy */
				break;
			}
		}
		es_progress_end();
		if (events > 0)
			es_stats_duty(es_process_db, ES_DUTY_PROJECTIONS, events, started);
		if (!caught_up)
			state->more_work = true;
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
	EsProjectorState state = {0, 0, 0, false, false, false, 0, NULL};

	es_process_start(DatumGetObjectId(main_arg), ES_PROC_PROJECTOR);
	es_handler_timeout_id = RegisterTimeout(USER_TIMEOUT, es_handler_timeout_handler);

	state.pass_cxt = AllocSetContextCreate(TopMemoryContext,
										   "eventstore projector",
										   ALLOCSET_SMALL_SIZES);
	/* run the projections once at start: some may be due */
	state.more_work = true;

	for (;;)
	{
		bool		present;

		es_process_interrupts();

		StartTransactionCommand();
		present = (es_catalog_lookup(true) != NULL);
		CommitTransactionCommand();
		if (!present)
		{
			bool		wanted;

			/* the extension is gone: leave with the worker */
			LWLockAcquire(es_shared->lock, LW_SHARED);
			wanted = es_process_db->worker_wanted;
			LWLockRelease(es_shared->lock);
			if (!wanted)
				proc_exit(0);
			es_process_sleep(es_worker_naptime, state.next_retry, ES_WAIT_PROJECTOR_MAIN);
			continue;
		}

		state.recorded = (int64) pg_atomic_read_u64(&es_process_db->published);
		es_projector_pass(&state);
		pg_atomic_write_u32(&es_process_db->projector_idle,
							!state.any_projections && !state.more_work &&
							state.next_retry == 0);
		pgstat_report_stat(false);
		if (state.more_work)
			continue;
		es_process_sleep(es_worker_naptime, state.next_retry, ES_WAIT_PROJECTOR_MAIN);
	}
}

/*
 * Define the settings this file reads: the time a handler batch may take.
 * Called by _PG_init.
 */
void
es_projector_define_gucs(void)
{
	DefineCustomIntVariable("eventstore.handler_timeout",
							"Longest time one batch of an async projection may run in the background projector.",
							"The batch is canceled and the projection fails with a backoff, as for any handler error; 0 means no limit.",
							&es_handler_timeout,
							60 * 1000,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}
