/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  The ground floor: the extension's objects in the current database
 *	  (looked up once per backend, forgotten on invalidation), the checks
 *	  of arguments every path shares, event filters, the output form of an
 *	  event, and the trigger that keeps the events table append-only.
 *	  It calls nothing of the extension above it.
 *
 * src/catalog.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "eventstore.h"

static EsCatalog es_catalog_cache;
static bool es_catalog_valid = false;
static bool es_callback_registered = false;

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
	/* the column maps: ALTER TABLE of a mapped table */
	if (relid == es_catalog_cache.streams_relid ||
		relid == es_catalog_cache.horizon_relid ||
		relid == es_catalog_cache.archive_relid)
		es_catalog_valid = false;
	/* an older version may be updated: look for the newer objects again */
	if (!OidIsValid(es_catalog_cache.streams_relid) ||
		!OidIsValid(es_catalog_cache.event_ids_relid) ||
		relid == es_catalog_cache.event_ids_relid)
		es_catalog_valid = false;
}

/*
 * A relation of the extension's schema by name (catalog.c's lookup, and
 * after es_catalog() any module's: subscription.c): never through
 * search_path.
 */
Oid
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

/*
 * The attribute number of a column of one of the extension's tables, by
 * name: the order of the columns may differ between a fresh install and an
 * updated one.
 */
AttrNumber
es_lookup_column(Oid relid, const char *relname, const char *colname)
{
	AttrNumber	attnum = get_attnum(relid, colname);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("column \"%s\" of relation \"eventstore.%s\" does not exist",
						colname, relname),
				 errhint("The eventstore extension seems damaged; reinstall it with DROP EXTENSION and CREATE EXTENSION.")));
	return attnum;
}

/*
 * A function of the extension's schema by name and argument types (after
 * es_catalog()): by the schema's OID, never through search_path.
 */
Oid
es_lookup_function(const char *name, int nargs, const Oid *argtypes)
{
	Oid			fn = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
									 CStringGetDatum(name),
									 PointerGetDatum(buildoidvector(argtypes, nargs)),
									 ObjectIdGetDatum(es_catalog_cache.namespace_oid));

	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("function \"eventstore.%s\" does not exist", name),
				 errhint("The eventstore extension seems damaged; reinstall it with DROP EXTENSION and CREATE EXTENSION.")));
	return fn;
}

/* Check that a table has its columns in the order C expects. */
static void
es_check_columns(Oid relid, const char *relname, const char *const *names, int natts)
{
	for (int i = 0; i < natts; i++)
	{
		if (es_lookup_column(relid, relname, names[i]) != i + 1)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("relation \"eventstore.%s\" has its columns in an unexpected order",
							relname),
					 errdetail("Column \"%s\" must be column %d.", names[i], i + 1),
					 errhint("The eventstore extension seems damaged; reinstall it with DROP EXTENSION and CREATE EXTENSION.")));
	}
}

/*
 * The events tables are the exception: their physical order is fixed (see
 * eventstore.h), because every read and append uses it on the hot path and
 * the archive takes rows of the hot table unchanged.  Check that the table
 * has it, whichever way it was installed.
 */
static void
es_check_events_columns(Oid relid, const char *relname)
{
	static const char *const names[Natts_es_events] = {
		[Anum_es_global_position - 1] = "global_position",
		[Anum_es_stream_version - 1] = "stream_version",
		[Anum_es_created_at - 1] = "created_at",
		[Anum_es_event_id - 1] = "event_id",
		[Anum_es_stream_id - 1] = "stream_id",
		[Anum_es_event_type - 1] = "event_type",
		[Anum_es_data - 1] = "data",
		[Anum_es_metadata - 1] = "metadata",
	};

	es_check_columns(relid, relname, names, Natts_es_events);
}

/* So is that of eventstore.event_ids (0.6.0), which appends write. */
static void
es_check_event_ids_columns(Oid relid)
{
	static const char *const names[Natts_es_event_ids] = {
		[Anum_es_ids_event_id - 1] = "event_id",
		[Anum_es_ids_global_position - 1] = "global_position",
		[Anum_es_ids_stream_version - 1] = "stream_version",
		[Anum_es_ids_stream_id - 1] = "stream_id",
	};

	es_check_columns(relid, "event_ids", names, Natts_es_event_ids);
}

/* The columns of eventstore.streams that C reads (version 0.3.0 and later). */
static void
es_lookup_streams_columns(Oid relid, EsStreamsColumns *att)
{
	const char *rel = "streams";

	att->max_age = es_lookup_column(relid, rel, "max_age");
	att->max_count = es_lookup_column(relid, rel, "max_count");
	att->truncate_before = es_lookup_column(relid, rel, "truncate_before");
	att->deleted_version = es_lookup_column(relid, rel, "deleted_version");
	att->deleted_at = es_lookup_column(relid, rel, "deleted_at");
	att->tombstoned_at = es_lookup_column(relid, rel, "tombstoned_at");
	att->archived_at = es_lookup_column(relid, rel, "archived_at");
	att->removed_through = es_lookup_column(relid, rel, "removed_through");
	att->settings_version = es_lookup_column(relid, rel, "settings_version");
	att->retention_checked = es_lookup_column(relid, rel, "retention_checked");
}

/*
 * Check the column order of the events tables and map the columns of
 * eventstore.streams, for the relations "c" names: the extension's own
 * tables, or their local shards on a distributed store (shard.c), which
 * have the same columns but not the dropped ones.
 */
void
es_catalog_map_columns(EsCatalog *c)
{
	es_check_events_columns(c->events_relid, "events");
	if (OidIsValid(c->event_ids_relid))
		es_check_event_ids_columns(c->event_ids_relid);
	memset(&c->streams_att, 0, sizeof(EsStreamsColumns));
	if (OidIsValid(c->streams_relid))
	{
		es_lookup_streams_columns(c->streams_relid, &c->streams_att);
		es_check_events_columns(c->archive_relid, "archived_events");
	}
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
	es_catalog_cache.horizon_position_att = es_lookup_column(es_catalog_cache.horizon_relid,
															 "recorded_horizon", "position");
	es_catalog_cache.event_typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
												   CStringGetDatum("event"),
												   ObjectIdGetDatum(es_catalog_cache.namespace_oid));
	/* added by version 0.6.0 */
	es_catalog_cache.event_ids_relid = get_relname_relid("event_ids",
														 es_catalog_cache.namespace_oid);
	es_catalog_cache.event_ids_pkey_relid = get_relname_relid("event_ids_pkey",
															  es_catalog_cache.namespace_oid);
	if (!OidIsValid(es_catalog_cache.event_ids_pkey_relid))
		es_catalog_cache.event_ids_relid = InvalidOid;
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
	es_catalog_map_columns(&es_catalog_cache);
	es_catalog_valid = true;

	return &es_catalog_cache;
}

/* 22004 unless argument "argno" (called "name" in the error) is given. */
void
es_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		es_null_arg_error(name);
}

/* 22004 for argument "name" (also before a call is made: shard.c). */
void
es_null_arg_error(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not be NULL", name)));
}

/*
 * The stream id argument of a SQL function, checked.  Stream ids are
 * compared bytewise and must fit in an index entry with room to spare.
 */
text *
es_stream_id_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *stream_id;

	es_arg_not_null(fcinfo, argno, "stream_id");
	stream_id = PG_GETARG_TEXT_PP(argno);
	es_check_stream_id(stream_id);
	return stream_id;
}

/*
 * Any stream id a caller may read.  A marker stream's id is the reserved
 * prefix and the id of the stream it is about, so it may be longer by the
 * prefix.
 */
void
es_check_stream_id(text *stream_id)
{
	Size		len = VARSIZE_ANY_EXHDR(stream_id);

	es_check_identifier("stream_id", len,
						es_is_marker_stream(VARDATA_ANY(stream_id), len) ?
						ES_MAX_STREAM_ID_BYTES + ES_MARKER_STREAM_PREFIX_LEN :
						ES_MAX_STREAM_ID_BYTES);
}

/*
 * Lifecycle markers (0.7.0).  Deleting, tombstoning and setting the metadata
 * of stream S append a system event to the marker stream "$$S", so that
 * followers of the global log learn of them in order.  Only the extension
 * writes marker streams, and event types beginning with "$" are the
 * extension's: callers get 42939 for either.  This is the one place that
 * knows the reserved prefixes.
 */
bool
es_is_marker_stream(const char *stream_id, Size len)
{
	return len >= ES_MARKER_STREAM_PREFIX_LEN &&
		memcmp(stream_id, ES_MARKER_STREAM_PREFIX, ES_MARKER_STREAM_PREFIX_LEN) == 0;
}

bool
es_is_reserved_type(const char *event_type, Size len)
{
	return len >= 1 && event_type[0] == ES_RESERVED_TYPE_PREFIX;
}

/*
 * A stream id a caller may write (append to, delete, change or archive):
 * not a marker stream, and within the limit of ordinary ids.
 */
void
es_check_writable_stream_id(text *stream_id)
{
	Size		len = VARSIZE_ANY_EXHDR(stream_id);

	if (es_is_marker_stream(VARDATA_ANY(stream_id), len))
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("stream \"%s\" is a marker stream, written only by eventstore",
						text_to_cstring(stream_id)),
				 errdetail("Stream ids beginning with \"%s\" are reserved for the lifecycle markers of other streams.",
						   ES_MARKER_STREAM_PREFIX)));
	es_check_identifier("stream_id", len, ES_MAX_STREAM_ID_BYTES);
}

text *
es_writable_stream_id_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *stream_id;

	es_arg_not_null(fcinfo, argno, "stream_id");
	stream_id = PG_GETARG_TEXT_PP(argno);
	es_check_writable_stream_id(stream_id);
	return stream_id;
}

/* An event type a caller may append. */
void
es_check_writable_type(const char *event_type, Size len)
{
	if (es_is_reserved_type(event_type, len))
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("event type \"%s\" is reserved for eventstore's own events",
						pnstrdup(event_type, len)),
				 errdetail("Event types beginning with \"%c\" are written only by eventstore (lifecycle markers).",
						   ES_RESERVED_TYPE_PREFIX)));
}

/*
 * Identifiers (stream ids, event types) are not empty and at most "limit"
 * bytes long; "what" names the argument in the error.
 */
void
es_check_identifier(const char *what, Size len, int limit)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > (Size) limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too long", what),
				 errdetail("The %s has %zu bytes; the limit is %d.",
						   what, len, limit)));
}

/*
 * The row a SQL function returns: "values" and "nulls" in the columns of
 * its result type (OUT parameters or a composite type).
 */
Datum
es_result_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls));
}

/*
 * The filter of read_all and of subscriptions from SQL arguments: an array
 * of event types (NULL: any type; NULL elements are ignored, so a list of
 * only NULLs matches nothing) and a stream id prefix (NULL or empty: every
 * stream).  The filter points into the arguments.
 */
void
es_filter_from_args(EsFilter *filter, ArrayType *event_types, text *stream_prefix)
{
	memset(filter, 0, sizeof(EsFilter));
	if (event_types != NULL)
	{
		Datum	   *types;
		bool	   *type_nulls;
		int			n;

		if (ARR_NDIM(event_types) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event_types must be a one-dimensional array")));
		deconstruct_array(event_types, TEXTOID, -1, false, TYPALIGN_INT,
						  &types, &type_nulls, &n);
		filter->has_types = true;
		filter->types = palloc(Max(n, 1) * sizeof(char *));
		filter->type_lens = palloc(Max(n, 1) * sizeof(int));
		for (int i = 0; i < n; i++)
		{
			text	   *want;

			if (type_nulls[i])
				continue;
			want = DatumGetTextPP(types[i]);
			filter->types[filter->ntypes] = VARDATA_ANY(want);
			filter->type_lens[filter->ntypes] = VARSIZE_ANY_EXHDR(want);
			filter->ntypes++;
		}
	}
	if (stream_prefix != NULL && VARSIZE_ANY_EXHDR(stream_prefix) > 0)
	{
		filter->prefix = VARDATA_ANY(stream_prefix);
		filter->prefix_len = VARSIZE_ANY_EXHDR(stream_prefix);
	}
}

static inline bool
es_has_prefix(const char *s, int len, const char *prefix, int prefix_len)
{
	return len >= prefix_len && memcmp(s, prefix, prefix_len) == 0;
}

/*
 * Does an event of this stream and type pass the filter?  A stream prefix
 * matches the events of the streams it begins, and the lifecycle markers of
 * those streams: a follower of "order-" learns that "order-1" was deleted
 * (its marker stream "$$order-1" matches "order-" as well as "$$").
 */
bool
es_filter_matches(const EsFilter *filter, const char *stream_id, int stream_len,
				  const char *type, int type_len)
{
	if (filter->prefix != NULL &&
		!es_has_prefix(stream_id, stream_len, filter->prefix, filter->prefix_len) &&
		!(es_is_marker_stream(stream_id, stream_len) &&
		  es_has_prefix(stream_id + ES_MARKER_STREAM_PREFIX_LEN,
						stream_len - ES_MARKER_STREAM_PREFIX_LEN,
						filter->prefix, filter->prefix_len)))
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

/* The owner of a relation: the extension's queries on its tables run as it. */
Oid
es_relation_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * The expected-version rule, for appends (C) and the lifecycle functions
 * (through eventstore._check_expected): NULL is any; 0 no stream; -1 an
 * existing stream; N exactly version N.  Below -1 is 22023.
 */
void
es_check_expected_arg(bool has_expected, int64 expected)
{
	if (has_expected && expected < -1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expected_version must be NULL, -1, 0 or a positive version"),
				 errdetail("The value given was " INT64_FORMAT ".", expected)));
}

/*
 * ST001 unless the stream is in the state the caller expected.  "current"
 * is the version the stream reads as (what stream_version() returns) and
 * "last" the highest version it ever had (stream_info's last_version).
 *
 * A stream that reads as version 0 although it had versions is soft-deleted
 * at "last", with nothing appended since (a tombstoned one never gets here:
 * it is refused with ST002 first).  It is absent, so 0 expects it; and the
 * version a writer last saw before the delete, "last", expects it too: a
 * writer that read the stream and decided on its version does not fail
 * because the stream was deleted meanwhile -- its append recreates the
 * stream, as with 0.  The version of an append of a recreated stream goes
 * on from "last" either way.
 */
bool
es_expected_version_matches(bool has_expected, int64 expected, int64 current,
							int64 last)
{
	bool		deleted = (current == 0 && last > 0);

	if (!has_expected)
		return true;
	if (expected == 0)
		return (current == 0);
	if (expected == -1)
		return (current != 0);
	return (current == expected || (deleted && expected == last));
}

void
es_check_expected_matches(text *stream_id, bool has_expected, int64 expected,
						  int64 current, int64 last)
{
	bool		deleted = (current == 0 && last > 0);
	char		expected_str[64];

	if (es_expected_version_matches(has_expected, expected, current, last))
		return;

	if (expected == 0)
		snprintf(expected_str, sizeof(expected_str), "0 (no stream)");
	else if (expected == -1)
		snprintf(expected_str, sizeof(expected_str), "-1 (any existing stream)");
	else
		snprintf(expected_str, sizeof(expected_str), INT64_FORMAT, expected);

	if (deleted)
		ereport(ERROR,
				(errcode(ERRCODE_ES_WRONG_EXPECTED_VERSION),
				 errmsg("wrong expected version for stream \"%s\"",
						text_to_cstring(stream_id)),
				 errdetail("Stream \"%s\": expected version %s, actual version 0 (deleted at version " INT64_FORMAT "; expect 0 or " INT64_FORMAT " to recreate it).",
						   text_to_cstring(stream_id), expected_str, last, last)));
	ereport(ERROR,
			(errcode(ERRCODE_ES_WRONG_EXPECTED_VERSION),
			 errmsg("wrong expected version for stream \"%s\"",
					text_to_cstring(stream_id)),
			 errdetail("Stream \"%s\": expected version %s, actual version " INT64_FORMAT ".",
					   text_to_cstring(stream_id), expected_str, current)));
}

/*
 * eventstore._check_stream_id(stream_id): the C rule for a stream id a
 * caller may change, for PL/pgSQL
 */
PG_FUNCTION_INFO_V1(eventstore_check_stream_id);
Datum
eventstore_check_stream_id(PG_FUNCTION_ARGS)
{
	(void) es_writable_stream_id_arg(fcinfo, 0);
	PG_RETURN_VOID();
}

/*
 * eventstore._event_matches(stream_id, event_type, event_types, stream_prefix)
 * returns boolean: the filter rule of read_all, for SQL (0.7.0)
 */
PG_FUNCTION_INFO_V1(eventstore_event_matches);
Datum
eventstore_event_matches(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	text	   *type;
	EsFilter	filter;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	stream_id = PG_GETARG_TEXT_PP(0);
	type = PG_GETARG_TEXT_PP(1);
	es_filter_from_args(&filter, PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2),
						PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3));
	PG_RETURN_BOOL(es_filter_matches(&filter,
									 VARDATA_ANY(stream_id), VARSIZE_ANY_EXHDR(stream_id),
									 VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type)));
}

/*
 * eventstore._check_expected(stream_id, expected, actual, last), for
 * PL/pgSQL.  Before 0.6.0 it had no "last" (the deleted version expected
 * nothing): its three-argument form still works that way.
 */
PG_FUNCTION_INFO_V1(eventstore_check_expected);
Datum
eventstore_check_expected(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int64		last = 0;

	if (PG_ARGISNULL(1))
		PG_RETURN_VOID();
	stream_id = es_stream_id_arg(fcinfo, 0);
	es_check_expected_arg(true, PG_GETARG_INT64(1));
	if (PG_ARGISNULL(2) || (PG_NARGS() > 3 && PG_ARGISNULL(3)))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the actual version must not be NULL")));
	if (PG_NARGS() > 3)
		last = PG_GETARG_INT64(3);
	es_check_expected_matches(stream_id, true, PG_GETARG_INT64(1), PG_GETARG_INT64(2), last);
	PG_RETURN_VOID();
}
