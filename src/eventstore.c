/*-------------------------------------------------------------------------
 *
 * eventstore.c
 *	  Module entry point: GUCs, the per-backend catalog cache, and the
 *	  trigger that keeps the events table append-only.
 *
 * src/eventstore.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "catalog/pg_type.h"

#include "eventstore.h"

PG_MODULE_MAGIC;

/* GUC: largest data + metadata of one event, in bytes of jsonb. */
int			es_max_event_size = 1024 * 1024;

static EsCatalog es_catalog_cache;
static bool es_catalog_valid = false;
static bool es_callback_registered = false;

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

/*
 * Forget the cached OIDs when the events relation (or every relation) is
 * invalidated.  Dropping the extension drops the relation, so a later
 * CREATE EXTENSION is picked up by the next call.
 */
static void
es_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == es_catalog_cache.events_relid)
		es_catalog_valid = false;
	/* an older version may be updated: look for the newer objects again */
	if (!OidIsValid(es_catalog_cache.streams_relid))
		es_catalog_valid = false;
}

static Oid
es_lookup_relation(const char *relname)
{
	Oid			relid = get_relname_relid(relname, es_catalog_cache.namespace_oid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"eventstore.%s\" does not exist", relname),
				 errhint("The eventstore extension seems damaged; reinstall it with DROP EXTENSION and CREATE EXTENSION.")));
	return relid;
}

const EsCatalog *
es_catalog(void)
{
	return es_catalog_lookup(false);
}

/* With missing_ok, NULL when the extension is not installed. */
const EsCatalog *
es_catalog_lookup(bool missing_ok)
{
	if (es_catalog_valid)
		return &es_catalog_cache;

	if (!es_callback_registered)
	{
		CacheRegisterRelcacheCallback(es_relcache_callback, (Datum) 0);
		es_callback_registered = true;
	}

	es_catalog_cache.namespace_oid = get_namespace_oid("eventstore", true);
	if (!OidIsValid(es_catalog_cache.namespace_oid) ||
		!OidIsValid(get_extension_oid("eventstore", true)))
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"eventstore\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION eventstore.")));
	}

	es_catalog_cache.events_relid = es_lookup_relation("events");
	es_catalog_cache.stream_index_relid = es_lookup_relation("events_stream_version_key");
	es_catalog_cache.position_seq_relid = es_lookup_relation("global_position_seq");
	es_catalog_cache.position_index_relid = es_lookup_relation("events_pkey");
	es_catalog_cache.horizon_relid = es_lookup_relation("recorded_horizon");
	es_catalog_cache.event_typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
												   CStringGetDatum("event"),
												   ObjectIdGetDatum(es_catalog_cache.namespace_oid));
	/* added by version 0.2.0 */
	es_catalog_cache.projections_relid = get_relname_relid("projections",
														   es_catalog_cache.namespace_oid);
	/* added by version 0.3.0 */
	es_catalog_cache.streams_relid = get_relname_relid("streams",
													   es_catalog_cache.namespace_oid);
	es_catalog_cache.streams_pkey_relid = get_relname_relid("streams_pkey",
															es_catalog_cache.namespace_oid);
	es_catalog_cache.archive_relid = get_relname_relid("archived_events",
													   es_catalog_cache.namespace_oid);
	es_catalog_cache.archive_index_relid = get_relname_relid("archived_events_stream_version_key",
															 es_catalog_cache.namespace_oid);
	if (!OidIsValid(es_catalog_cache.streams_pkey_relid) ||
		!OidIsValid(es_catalog_cache.archive_relid) ||
		!OidIsValid(es_catalog_cache.archive_index_relid))
		es_catalog_cache.streams_relid = InvalidOid;
	es_catalog_valid = true;

	return &es_catalog_cache;
}

/*
 * Stream ids are compared bytewise and must fit in an index entry with room
 * to spare.
 */
/* The stream id argument of a SQL function, checked. */
text *
es_stream_id_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *stream_id;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream_id must not be NULL")));
	stream_id = PG_GETARG_TEXT_PP(argno);
	es_check_stream_id(stream_id);
	return stream_id;
}

void
es_check_stream_id(text *stream_id)
{
	Size		len = VARSIZE_ANY_EXHDR(stream_id);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream_id must not be empty")));
	if (len > ES_MAX_STREAM_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stream_id is too long"),
				 errdetail("The stream_id has %zu bytes; the limit is %d.",
						   len, ES_MAX_STREAM_ID_BYTES)));
}

/* Does an event of this stream and type pass the filter? */
bool
es_filter_matches(const EsFilter *filter, const char *stream_id, int stream_len,
				  const char *type, int type_len)
{
	if (filter->prefix != NULL &&
		(stream_len < filter->prefix_len ||
		 memcmp(stream_id, filter->prefix, filter->prefix_len) != 0))
		return false;
	if (filter->has_types)
	{
		for (int i = 0; i < filter->ntypes; i++)
		{
			if (filter->type_lens[i] == type_len &&
				memcmp(filter->types[i], type, type_len) == 0)
				return true;
		}
		return false;
	}
	return true;
}

/*
 * Reorder one row of eventstore.events into the column order of the
 * eventstore.event type.
 */
void
es_event_to_output(const Datum *row_values, const bool *row_nulls,
				   Datum *out_values, bool *out_nulls)
{
	static const AttrNumber map[Natts_es_event_type] = {
		Anum_es_global_position,
		Anum_es_stream_id,
		Anum_es_stream_version,
		Anum_es_event_id,
		Anum_es_event_type,
		Anum_es_data,
		Anum_es_metadata,
		Anum_es_created_at,
	};

	for (int i = 0; i < Natts_es_event_type; i++)
	{
		out_values[i] = row_values[map[i] - 1];
		out_nulls[i] = row_nulls[map[i] - 1];
	}
}

/*
 * Statement-level trigger on eventstore.events: events are immutable.  Only
 * the owner could try UPDATE/DELETE/TRUNCATE at all; this makes the
 * append-only rule hold for the owner and superusers too.
 */
PG_FUNCTION_INFO_V1(eventstore_forbid_change);
Datum
eventstore_forbid_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("eventstore_forbid_change() was not called by the trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("eventstore_forbid_change() must be fired BEFORE, FOR EACH STATEMENT")));

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		op = "TRUNCATE";
	else
		op = "INSERT";

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s on %s is not allowed", op,
					RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("Events are immutable: the events table is append-only."),
			 errhint("Append with eventstore.append() or eventstore.append_events().")));

	PG_RETURN_NULL();			/* keep compiler quiet */
}
