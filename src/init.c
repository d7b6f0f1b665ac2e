/*-------------------------------------------------------------------------
 *
 * init.c
 *	  Module entry point, the top of the house: _PG_init has each module
 *	  define the settings it reads (es_<file>_define_gucs), reserves the
 *	  prefix, and installs the shared-memory hooks, the utility hook and
 *	  the launcher.
 *
 * src/init.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"

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
	/* each module defines the settings it reads */
	es_append_define_gucs();
	es_projection_define_gucs();
	es_horizon_define_gucs();
	es_process_define_gucs();
	es_worker_define_gucs();
	es_projector_define_gucs();
	es_read_define_gucs();

	MarkGUCPrefixReserved("eventstore");

	/* before Citus routes a call of one stream (a distributed store) */
	es_shard_install_hooks();
	/* read_stream in FROM returns rows as it reads them */
	es_read_install_hooks();

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
	es_stats_register_callbacks();
	es_worker_install_hooks();
	es_worker_register_launcher();
}
