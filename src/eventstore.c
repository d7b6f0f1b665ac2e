/*-------------------------------------------------------------------------
 *
 * eventstore.c
 *	  Module entry point, the top of the house: _PG_init defines every GUC
 *	  (each variable lives in the file that uses it), reserves the prefix,
 *	  and installs the shared-memory hooks, the utility hook and the
 *	  launcher.
 *
 * src/eventstore.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "eventstore.h"

PG_MODULE_MAGIC;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

static void
es_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	es_horizon_request_shmem();
}

static void
es_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	es_horizon_shmem_init();
}

void
_PG_init(void)
{
	DefineCustomIntVariable("eventstore.max_event_size",
							"Largest event accepted by an append, in bytes.",
							"Counts the jsonb size of data plus metadata of one event.",
							&es_max_event_size,
							1024 * 1024,
							1024,
							MaxAllocSize / 2,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

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

	/* PGC_POSTMASTER variables can only be defined while preloading. */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("eventstore.max_databases",
								"How many databases can use eventstore at the same time.",
								"Sizes the shared registry of appending transactions; needs a restart.",
								&es_max_databases,
								16,
								1,
								1024,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	MarkGUCPrefixReserved("eventstore");

	/*
	 * Everything below needs shared memory and the postmaster: the registry
	 * of appending transactions and the background workers.  Without
	 * preloading, appends and stream reads still work; read_all says what
	 * is missing.
	 */
	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;


	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = es_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = es_shmem_startup;

	es_horizon_register_callbacks();
	es_worker_install_hooks();
	es_worker_register_launcher();
}
