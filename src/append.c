/*-------------------------------------------------------------------------
 *
 * append.c
 *	  The append path, start to end: argument checks, the per-stream
 *	  advisory lock, the expected-version check and the insertion of events.
 *
 * An append runs in the caller's transaction:
 *
 *	1. validate every argument (and, for a batch, every element) before
 *	   anything is locked or written;
 *	2. take a transaction-scoped advisory lock keyed by a 64-bit hash of the
 *	   stream id, in a key space of our own (ES_ADVISORY_LOCK_CLASS), so
 *	   appends to one stream serialise and appends to others never wait;
 *	3. read the stream's head version through the unique
 *	   (stream_id, stream_version) index with SnapshotSelf: it sees the
 *	   latest committed state (the previous lock holder has committed or
 *	   aborted before we got the lock) and this transaction's own earlier
 *	   appends, even those of the current command; then the stream's row in
 *	   eventstore.streams, if it has one (lifecycle.c): a tombstoned stream
 *	   refuses appends (ST002), an archived one too (ST003), a soft-deleted
 *	   one counts as absent (expected 0, or the version it was deleted at,
 *	   recreates it), and numbering goes on after events that retention
 *	   removed;
 *	4. look up the ids the call gives in eventstore.event_ids
 *	   (es_append_retry): if they are stored, in order, as consecutive
 *	   events of this stream, the call is the retry of one that stored them
 *	   (after a lost acknowledgement): return that call's result and write
 *	   nothing, whatever the expected version and whatever happened to the
 *	   stream since; if only some are, or not in that order, raise ST001;
 *	   an id stored in another stream raises 23505.  Calls without ids pay
 *	   no lookup.  Otherwise compare with expected_version, raising ST001
 *	   on a mismatch;
 *	5. insert each event with ExecSimpleRelationInsert(): heap insert, index
 *	   entries and user triggers, without planner or SPI overhead.  Each
 *	   event draws its global position from a sequence; before the first
 *	   draw of the transaction, the transaction registers with the global-log
 *	   horizon (horizon.c) so that readers of the log wait for it;
 *	6. call the handlers of the live inline projections whose filter the
 *	   event matches, in their order (projection.c), right after the event
 *	   is inserted.  An error in a handler aborts the append.
 *
 * Before step 2 the append takes ROW SHARE on eventstore.projections and
 * holds it to the end of the transaction: changes of projections wait for
 * appends in flight (see projection.c).
 *
 * The unique indexes are the last line of defence: even a writer that
 * bypassed the lock could not create two events with one version, and two
 * appends of one new id to different streams (different locks) cannot both
 * commit.
 *
 * src/append.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "portability/instr_time.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"
#include "utils/guc.h"

#include "eventstore.h"

/* GUC: largest data + metadata of one event, in bytes of jsonb. */
static int	es_max_event_size = 1024 * 1024;

/* One event to append, as taken from the arguments or from a batch element. */
typedef struct EsEventInput
{
	text	   *event_type;
	Datum		data;			/* jsonb */
	Datum		metadata;		/* jsonb object; valid if has_metadata */
	bool		has_metadata;
	pg_uuid_t	event_id;		/* valid if has_event_id, else generated */
	bool		has_event_id;
} EsEventInput;

/* State of one append call between es_append_begin() and es_append_end(). */
typedef struct EsAppend
{
	const EsCatalog *cat;
	text	   *stream_id;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	Oid			position_seq;
	TimestampTz created_at;
	int64		next_version;
	int64		last_version;
	int64		last_position;	/* 0 until an event is inserted */
	int64		first_version;	/* of the first event of the call */
	bool		retry;			/* a repeated call: nothing to insert */
	int64		bytes;			/* of data and metadata inserted */
	/* eventstore.event_ids, opened only when the call gives ids (0.6.0) */
	Relation	ids_rel;
	ResultRelInfo *ids_rri;
	TupleTableSlot *ids_slot;
	MemoryContext cxt;			/* lives as long as the call */
	int			nprojs;			/* live inline projections */
	const EsProjection **projs;
	FmgrInfo   *handlers;		/* looked up at first use */
	TupleDesc	event_desc;		/* of eventstore.event, for handlers */

	/*
	 * Run handlers as their projections' owners, under the search_path each
	 * recorded, as the worker does: set for lifecycle markers, which the
	 * extension appends in its own (SECURITY DEFINER) functions, where the
	 * current user and search_path are the extension's, not the caller's.
	 */
	bool		handlers_as_owners;
} EsAppend;

/* Context for errors raised while reading a batch element. */
typedef struct EsElementContext
{
	uint32		index;
} EsElementContext;

static void es_check_event_type(const char *type, Size len);
static void es_check_event_size(Size data_size, Size metadata_size);
static void es_parse_element(JsonbContainer *array, uint32 index, EsEventInput *ev);
static void es_element_error_callback(void *arg);
static void es_append_begin(EsAppend *ap, text *stream_id,
							bool has_expected, int64 expected,
							const pg_uuid_t *ids, int nids, int nevents);
static bool es_append_retry(EsAppend *ap, Relation stream_index,
							TupleTableSlot *scanslot, const pg_uuid_t *ids,
							int nids, int nevents);
static void es_check_batch_ids(const pg_uuid_t *ids, const uint32 *index, int nids);
static void es_append_event(EsAppend *ap, const EsEventInput *ev);
static void es_append_end(EsAppend *ap);
static void es_append_batch(EsAppend *ap, text *stream_id, Jsonb *events,
							bool has_expected, int64 expected);
static void es_inline_projections_begin(EsAppend *ap);
static void es_run_inline_projections(EsAppend *ap, Datum *values, bool *nulls,
									  int64 position);
static Datum es_append_result(FunctionCallInfo fcinfo, EsAppend *ap);
static void es_generate_uuid(pg_uuid_t *uuid);

/*
 * eventstore.append(stream_id, event_type, data, metadata, expected_version,
 *					 event_id) returns eventstore.append_result
 */
PG_FUNCTION_INFO_V1(eventstore_append);
Datum
eventstore_append(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	EsEventInput ev;
	bool		has_expected = !PG_ARGISNULL(4);
	int64		expected = has_expected ? PG_GETARG_INT64(4) : 0;
	Size		metadata_size = 0;
	EsAppend	ap;

	es_arg_not_null(fcinfo, 0, "stream_id");
	es_arg_not_null(fcinfo, 1, "event_type");
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("data must not be NULL"),
				 errhint("Use the JSON value 'null' for an event without data.")));

	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_writable_stream_id(stream_id);

	ev.event_type = PG_GETARG_TEXT_PP(1);
	es_check_event_type(VARDATA_ANY(ev.event_type), VARSIZE_ANY_EXHDR(ev.event_type));

	ev.data = PG_GETARG_DATUM(2);

	ev.has_metadata = false;
	if (!PG_ARGISNULL(3))
	{
		Jsonb	   *metadata = PG_GETARG_JSONB_P(3);

		/* The JSON value null means "no metadata", as SQL NULL does. */
		if (JB_ROOT_IS_SCALAR(metadata))
		{
			JsonbValue	scalar;

			if (!JsonbExtractScalar(&metadata->root, &scalar) ||
				scalar.type != jbvNull)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("metadata must be a JSON object")));
		}
		else if (!JB_ROOT_IS_OBJECT(metadata))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("metadata must be a JSON object")));
		else
		{
			ev.metadata = JsonbPGetDatum(metadata);
			ev.has_metadata = true;
			metadata_size = VARSIZE(metadata) - VARHDRSZ;
		}
	}

	es_check_event_size(toast_raw_datum_size(ev.data) - VARHDRSZ, metadata_size);
	es_check_expected_arg(has_expected, expected);

	ev.has_event_id = !PG_ARGISNULL(5);
	if (ev.has_event_id)
		ev.event_id = *PG_GETARG_UUID_P(5);

	es_append_begin(&ap, stream_id, has_expected, expected,
					&ev.event_id, ev.has_event_id ? 1 : 0, 1);
	if (!ap.retry)
		es_append_event(&ap, &ev);
	es_append_end(&ap);

	return es_append_result(fcinfo, &ap);
}

/*
 * eventstore.append_events(stream_id, events jsonb, expected_version)
 *	  returns eventstore.append_result
 *
 * The batch is read twice: once to validate every element before the stream
 * is locked, once to insert.  Each pass works in a memory context reset per
 * element, so memory stays bounded by the size of the input.
 */
PG_FUNCTION_INFO_V1(eventstore_append_events);
Datum
eventstore_append_events(PG_FUNCTION_ARGS)
{
	bool		has_expected = !PG_ARGISNULL(2);
	int64		expected = has_expected ? PG_GETARG_INT64(2) : 0;
	EsAppend	ap;

	es_arg_not_null(fcinfo, 0, "stream_id");
	es_arg_not_null(fcinfo, 1, "events");

	es_append_batch(&ap, PG_GETARG_TEXT_PP(0), PG_GETARG_JSONB_P(1),
					has_expected, expected);

	return es_append_result(fcinfo, &ap);
}

/*
 * eventstore._append_marker(stream_id, event_type, data jsonb)
 *	  returns eventstore.append_result
 *
 * Append a lifecycle marker about stream_id (0.7.0): one event of a reserved
 * type ("$deleted", "$tombstoned", "$metadata") to the marker stream
 * "$$<stream_id>", through the path every append takes -- the stream lock,
 * the global-log horizon, inline projections -- so followers of the log see
 * it in order, exactly like an event.  Internal: the lifecycle functions
 * call it in the transaction that makes the change, holding the lock of
 * stream_id.  They run as the extension's owner, so inline handlers run as
 * their projections' owners here (see EsAppend.handlers_as_owners).
 */
PG_FUNCTION_INFO_V1(eventstore_append_marker);
Datum
eventstore_append_marker(PG_FUNCTION_ARGS)
{
	text	   *subject = es_writable_stream_id_arg(fcinfo, 0);
	StringInfoData marker;
	EsEventInput ev;
	EsAppend	ap;

	es_arg_not_null(fcinfo, 1, "event_type");
	es_arg_not_null(fcinfo, 2, "data");
	ev.event_type = PG_GETARG_TEXT_PP(1);
	if (!es_is_reserved_type(VARDATA_ANY(ev.event_type), VARSIZE_ANY_EXHDR(ev.event_type)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a lifecycle marker's type must begin with \"%c\"",
						ES_RESERVED_TYPE_PREFIX)));
	es_check_identifier("event type", VARSIZE_ANY_EXHDR(ev.event_type), ES_MAX_EVENT_TYPE_BYTES);
	ev.data = PG_GETARG_DATUM(2);
	ev.has_metadata = false;
	ev.has_event_id = false;

	initStringInfo(&marker);
	appendStringInfoString(&marker, ES_MARKER_STREAM_PREFIX);
	appendBinaryStringInfo(&marker, VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject));

	es_append_begin(&ap, cstring_to_text_with_len(marker.data, marker.len),
					false, 0, NULL, 0, 1);
	ap.handlers_as_owners = true;
	es_append_event(&ap, &ev);
	es_append_end(&ap);

	return es_append_result(fcinfo, &ap);
}

/*
 * append_events for C callers (command handling): returns the number of
 * events appended.
 */
int64
es_append_events_jsonb(text *stream_id, Jsonb *events, bool has_expected, int64 expected)
{
	EsAppend	ap;

	es_append_batch(&ap, stream_id, events, has_expected, expected);
	return (ap.last_position == 0 || ap.retry) ? 0 : ap.last_version - ap.first_version + 1;
}

/* The body of append_events. */
static void
es_append_batch(EsAppend *ap, text *stream_id, Jsonb *events,
				bool has_expected, int64 expected)
{
	uint32		nevents;
	MemoryContext element_cxt;
	MemoryContext oldcxt;
	EsElementContext ectx;
	ErrorContextCallback errcallback;
	pg_uuid_t  *ids;
	uint32	   *id_index;
	int			nids = 0;

	es_check_writable_stream_id(stream_id);
	es_check_expected_arg(has_expected, expected);

	if (!JB_ROOT_IS_ARRAY(events) || JB_ROOT_IS_SCALAR(events))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array"),
				 errhint("Pass an array of objects such as [{\"type\": \"Opened\", \"data\": {}}].")));
	nevents = JB_ROOT_COUNT(events);

	ectx.index = 0;
	errcallback.callback = es_element_error_callback;
	errcallback.arg = &ectx;
	errcallback.previous = error_context_stack;

	/*
	 * Pass 1: validate, before taking any lock, and collect the ids the
	 * events carry: a call whose events all carry one may be the retry of an
	 * earlier call, and no id may be stored twice.
	 */
	ids = palloc(Max(nevents, 1) * sizeof(pg_uuid_t));
	id_index = palloc(Max(nevents, 1) * sizeof(uint32));
	element_cxt = AllocSetContextCreate(CurrentMemoryContext,
										"eventstore batch element",
										ALLOCSET_DEFAULT_SIZES);
	error_context_stack = &errcallback;
	for (ectx.index = 0; ectx.index < nevents; ectx.index++)
	{
		EsEventInput ev;

		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(element_cxt);
		es_parse_element(&events->root, ectx.index, &ev);
		if (ev.has_event_id)
		{
			id_index[nids] = ectx.index;
			ids[nids++] = ev.event_id;
		}
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(element_cxt);
	}
	error_context_stack = errcallback.previous;
	if (nids > 1)
		es_check_batch_ids(ids, id_index, nids);

	/* Pass 2: lock, check the version, insert. */
	es_append_begin(ap, stream_id, has_expected, expected, ids, nids, (int) nevents);
	error_context_stack = &errcallback;
	for (ectx.index = 0; !ap->retry && ectx.index < nevents; ectx.index++)
	{
		EsEventInput ev;

		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(element_cxt);
		es_parse_element(&events->root, ectx.index, &ev);
		es_append_event(ap, &ev);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(element_cxt);
	}
	error_context_stack = errcallback.previous;
	es_append_end(ap);

	MemoryContextDelete(element_cxt);
	pfree(ids);
	pfree(id_index);
}

/* An id and the index of the batch element that carries it. */
typedef struct EsBatchId
{
	pg_uuid_t	id;
	uint32		index;
} EsBatchId;

static int
es_batch_id_cmp(const void *a, const void *b)
{
	const EsBatchId *x = a;
	const EsBatchId *y = b;
	int			c = memcmp(&x->id, &y->id, UUID_LEN);

	if (c != 0)
		return c;
	return (x->index > y->index) - (x->index < y->index);
}

/*
 * One call cannot store one id twice, nor can it be the retry of a call
 * that did: 22023 for an id that two elements of the batch carry.
 */
static void
es_check_batch_ids(const pg_uuid_t *ids, const uint32 *index, int nids)
{
	EsBatchId  *sorted = palloc(nids * sizeof(EsBatchId));

	for (int i = 0; i < nids; i++)
	{
		sorted[i].id = ids[i];
		sorted[i].index = index[i];
	}
	qsort(sorted, nids, sizeof(EsBatchId), es_batch_id_cmp);
	for (int i = 1; i < nids; i++)
	{
		if (memcmp(&sorted[i - 1].id, &sorted[i].id, UUID_LEN) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event id %s appears more than once in the batch",
							DatumGetCString(DirectFunctionCall1(uuid_out,
																UUIDPGetDatum(&sorted[i].id)))),
					 errdetail("Elements %u and %u carry the same id; an event id identifies one event.",
							   sorted[i - 1].index, sorted[i].index)));
	}
	pfree(sorted);
}

static void
es_element_error_callback(void *arg)
{
	EsElementContext *ectx = (EsElementContext *) arg;

	errcontext("events[%u]", ectx->index);
}

/* An event type a caller may append: not empty, not too long, not ours. */
static void
es_check_event_type(const char *type, Size len)
{
	es_check_identifier("event type", len, ES_MAX_EVENT_TYPE_BYTES);
	es_check_writable_type(type, len);
}

static void
es_check_event_size(Size data_size, Size metadata_size)
{
	if (data_size + metadata_size > (Size) es_max_event_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event is too large"),
				 errdetail("The event's data and metadata take %zu bytes; the limit is %d.",
						   data_size + metadata_size, es_max_event_size),
				 errhint("The limit is set by eventstore.max_event_size.")));
}

/*
 * Read element "index" of a batch: {"type": string, "data": any,
 * "metadata": object (optional), "id": uuid string (optional)}.  Unknown keys
 * are rejected so that a misspelt key does not silently lose data.
 */
static void
es_parse_element(JsonbContainer *array, uint32 index, EsEventInput *ev)
{
	JsonbValue *elem = getIthJsonbValueFromContainer(array, index);
	JsonbContainer *obj;
	JsonbValue	v;
	int			known = 0;
	Size		data_size;
	Size		metadata_size = 0;

	if (elem == NULL || elem->type != jbvBinary ||
		!JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("each element of events must be a JSON object")));
	obj = elem->val.binary.data;

	/* type */
	if (getKeyJsonValueFromContainer(obj, "type", 4, &v) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event has no \"type\"")));
	if (v.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event \"type\" must be a JSON string")));
	es_check_event_type(v.val.string.val, v.val.string.len);
	ev->event_type = cstring_to_text_with_len(v.val.string.val, v.val.string.len);
	known++;

	/* data: any JSON value, including null, but it must be there */
	if (getKeyJsonValueFromContainer(obj, "data", 4, &v) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event has no \"data\""),
				 errhint("Use \"data\": null for an event without data.")));
	{
		Jsonb	   *data = JsonbValueToJsonb(&v);

		ev->data = JsonbPGetDatum(data);
		data_size = VARSIZE(data) - VARHDRSZ;
	}
	known++;

	/* metadata: optional object; null means none */
	ev->has_metadata = false;
	if (getKeyJsonValueFromContainer(obj, "metadata", 8, &v) != NULL)
	{
		known++;
		if (v.type != jbvNull)
		{
			Jsonb	   *metadata;

			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event \"metadata\" must be a JSON object")));
			metadata = JsonbValueToJsonb(&v);
			ev->metadata = JsonbPGetDatum(metadata);
			ev->has_metadata = true;
			metadata_size = VARSIZE(metadata) - VARHDRSZ;
		}
	}

	/* id: optional uuid string; null means generate one */
	ev->has_event_id = false;
	if (getKeyJsonValueFromContainer(obj, "id", 2, &v) != NULL)
	{
		known++;
		if (v.type == jbvString)
		{
			char	   *str = pnstrdup(v.val.string.val, v.val.string.len);

			/* uuid_in reports malformed input with 22P02 */
			ev->event_id = *DatumGetUUIDP(DirectFunctionCall1(uuid_in,
															  CStringGetDatum(str)));
			ev->has_event_id = true;
		}
		else if (v.type != jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("event \"id\" must be a UUID string")));
	}

	if (known != (int) JsonContainerSize(obj))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event has an unknown key"),
				 errhint("The keys of an event are \"type\", \"data\", \"metadata\" and \"id\".")));

	es_check_event_size(data_size, metadata_size);
}

/*
 * The appends in progress in this backend, innermost last: an inline
 * handler (or a trigger) may append, but never to a stream that an
 * enclosing call is appending to -- that call's next versions are already
 * decided.  Entries point into the callers' frames and are only compared
 * while those frames are live; an abort drops the entries of what it
 * aborts.
 */
#define ES_MAX_APPEND_DEPTH 64

typedef struct EsActiveAppend
{
	text	   *stream_id;
	SubTransactionId subxid;
} EsActiveAppend;

static EsActiveAppend es_active[ES_MAX_APPEND_DEPTH];
static int	es_nactive = 0;
static bool es_active_callbacks = false;

static void
es_active_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		es_nactive = 0;
}

static void
es_active_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		while (es_nactive > 0 && es_active[es_nactive - 1].subxid >= mySubid)
			es_nactive--;
	}
}

static void
es_active_push(text *stream_id)
{
	Size		len = VARSIZE_ANY_EXHDR(stream_id);

	if (!es_active_callbacks)
	{
		RegisterXactCallback(es_active_xact_callback, NULL);
		RegisterSubXactCallback(es_active_subxact_callback, NULL);
		es_active_callbacks = true;
	}
	for (int i = 0; i < es_nactive; i++)
	{
		text	   *other = es_active[i].stream_id;

		if (VARSIZE_ANY_EXHDR(other) == len &&
			memcmp(VARDATA_ANY(other), VARDATA_ANY(stream_id), len) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("cannot append to stream \"%s\" while an append to it is in progress",
							text_to_cstring(stream_id)),
					 errdetail("An inline projection handler or a trigger of an append to the stream tried to append to the same stream."),
					 errhint("Append to another stream, or append in a later statement.")));
	}
	if (es_nactive >= ES_MAX_APPEND_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("appends nested more than %d deep", ES_MAX_APPEND_DEPTH),
				 errdetail("Inline projection handlers append from within appends.")));
	es_active[es_nactive].stream_id = stream_id;
	es_active[es_nactive].subxid = GetCurrentSubTransactionId();
	es_nactive++;
}

static void
es_append_begin(EsAppend *ap, text *stream_id, bool has_expected, int64 expected,
				const pg_uuid_t *ids, int nids, int nevents)
{
	const EsCatalog *cat;
	Relation	stream_index = NULL;
	TupleTableSlot *scanslot;
	EsStreamRules rules;
	int64		head;
	int64		current;

	PreventCommandIfReadOnly("eventstore append");
	PreventCommandDuringRecovery("eventstore append");

	cat = es_stream_catalog_for_append(es_catalog(), stream_id);
	ap->cat = cat;
	ap->cxt = CurrentMemoryContext;
	ap->handlers_as_owners = false;

	es_active_push(stream_id);
	es_inline_projections_begin(ap);
	(void) es_lock_stream(stream_id, true);

	ap->stream_id = stream_id;
	ap->position_seq = cat->position_seq_relid;
	ap->rel = table_open(cat->events_relid, RowExclusiveLock);

	/* A minimal executor state, as logical replication's apply worker uses. */
	ap->estate = CreateExecutorState();
	es_init_range_table(ap->estate, ap->rel, RowExclusiveLock);
	ap->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(ap->rri, ap->rel, 1, NULL, 0);
	/* so that AFTER triggers find it rather than open the table again */
	ap->estate->es_opened_result_relations = list_make1(ap->rri);
	ap->estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(ap->rri, false);

	/*
	 * The ids the call gives go to eventstore.event_ids as well, through
	 * its primary key: a concurrent append of one id to another stream
	 * waits there and fails with 23505.  Calls without ids leave the table
	 * alone, as does a library ahead of a database without it.
	 */
	ap->ids_rel = NULL;
	if (nids > 0 && OidIsValid(cat->event_ids_relid))
	{
		ap->ids_rel = table_open(cat->event_ids_relid, RowExclusiveLock);
		ap->ids_rri = makeNode(ResultRelInfo);
		InitResultRelInfo(ap->ids_rri, ap->ids_rel, 0, NULL, 0);
		ap->estate->es_opened_result_relations =
			lappend(ap->estate->es_opened_result_relations, ap->ids_rri);
		ExecOpenIndices(ap->ids_rri, false);
		ap->ids_slot = ExecInitExtraTupleSlot(ap->estate, RelationGetDescr(ap->ids_rel),
											  &TTSOpsVirtual);
	}
	AfterTriggerBeginQuery();

	for (int i = 0; i < ap->rri->ri_NumIndices; i++)
	{
		if (RelationGetRelid(ap->rri->ri_IndexRelationDescs[i]) == cat->stream_index_relid)
			stream_index = ap->rri->ri_IndexRelationDescs[i];
	}
	if (stream_index == NULL)
		elog(ERROR, "index eventstore.events_stream_version_key is missing");

	ap->slot = ExecInitExtraTupleSlot(ap->estate, RelationGetDescr(ap->rel),
									  &TTSOpsVirtual);
	scanslot = ExecInitExtraTupleSlot(ap->estate, RelationGetDescr(ap->rel),
									  table_slot_callbacks(ap->rel));

	/*
	 * The head, then the stream's row.  In this order: retention removes
	 * events and raises removed_through in one transaction, so if the head
	 * read missed the removed events, the row read sees the new
	 * removed_through.
	 */
	head = es_stream_head(ap->rel, stream_index, stream_id, SnapshotSelf, scanslot);
	es_stream_rules(cat, stream_id, SnapshotSelf, &rules);
	if (rules.tombstoned)
		es_error_tombstoned(stream_id, rules.tombstoned_at);
	if (rules.archived)
		ereport(ERROR,
				(errcode(ERRCODE_ES_STREAM_ARCHIVED),
				 errmsg("stream \"%s\" is archived", text_to_cstring(stream_id)),
				 errdetail("Stream \"%s\" was archived at %s; its events are in eventstore.archived_events.",
						   text_to_cstring(stream_id),
						   timestamptz_to_str(rules.archived_at)),
				 errhint("Restore it with eventstore.restore_stream() before appending.")));
	head = es_rules_head(&rules, head);
	/* a soft-deleted stream is absent until something is appended again */
	current = es_rules_version(&rules, head);

	ap->retry = false;
	ap->bytes = 0;
	if (nids > 0 &&
		es_append_retry(ap, stream_index, scanslot, ids, nids, nevents))
	{
		ap->retry = true;
		return;
	}

	if (!es_expected_version_matches(has_expected, expected, current, head))
		es_stats_conflict(cat);
	es_check_expected_matches(stream_id, has_expected, expected, current, head);

	ap->next_version = head + 1;
	ap->first_version = head + 1;
	/* what an empty batch reports: the version the stream reads as */
	ap->last_version = current;
	ap->last_position = 0;
	ap->created_at = GetCurrentTransactionStartTimestamp();
}

/* Where one id of the call is stored, as SnapshotSelf sees it. */
typedef struct EsStoredId
{
	bool		here;			/* as an event of the appended stream */
	int64		version;		/* if here */
	int64		position;		/* if here */
	text	   *elsewhere;		/* else the stream storing it, or NULL */
} EsStoredId;

/*
 * Find the ids ids[0..nids-1]: in eventstore.event_ids, one probe of its
 * primary key per id; before version 0.6.0 created it, by one pass over
 * the appended stream (ids stored in other streams then go unseen).  With
 * SnapshotSelf under the stream lock, the ids of this stream are seen
 * exactly; those of other streams once committed, or stored earlier in
 * this transaction.
 */
static void
es_find_ids(EsAppend *ap, Relation stream_index, TupleTableSlot *slot,
			const pg_uuid_t *ids, int nids, EsStoredId *stored)
{
	Size		len = VARSIZE_ANY_EXHDR(ap->stream_id);
	Relation	id_index = NULL;
	TupleTableSlot *idslot;
	EsEventScan scan;
	bool		isnull;

	memset(stored, 0, nids * sizeof(EsStoredId));

	if (ap->ids_rel == NULL)
	{
		es_scan_stream_begin(&scan, ap->rel, stream_index, SnapshotSelf, ap->stream_id,
							 0, PG_INT64_MAX, ForwardScanDirection, slot);
		while (es_scan_next(&scan))
		{
			pg_uuid_t  *id = DatumGetUUIDP(slot_getattr(slot, Anum_es_event_id, &isnull));

			CHECK_FOR_INTERRUPTS();
			for (int i = 0; i < nids; i++)
			{
				if (!stored[i].here && memcmp(id, &ids[i], UUID_LEN) == 0)
				{
					stored[i].here = true;
					stored[i].version = DatumGetInt64(slot_getattr(slot, Anum_es_stream_version, &isnull));
					stored[i].position = DatumGetInt64(slot_getattr(slot, Anum_es_global_position, &isnull));
				}
			}
		}
		es_scan_end(&scan);
		return;
	}

	/* ExecOpenIndices() opened the primary key */
	for (int i = 0; i < ap->ids_rri->ri_NumIndices; i++)
	{
		if (RelationGetRelid(ap->ids_rri->ri_IndexRelationDescs[i]) == ap->cat->event_ids_pkey_relid)
			id_index = ap->ids_rri->ri_IndexRelationDescs[i];
	}
	if (id_index == NULL)
		elog(ERROR, "index eventstore.event_ids_pkey is missing");
	idslot = ExecInitExtraTupleSlot(ap->estate, RelationGetDescr(ap->ids_rel),
									table_slot_callbacks(ap->ids_rel));

	for (int i = 0; i < nids; i++)
	{
		CHECK_FOR_INTERRUPTS();
		es_scan_event_id_begin(&scan, ap->ids_rel, id_index, SnapshotSelf, &ids[i], idslot);
		if (es_scan_next(&scan))
		{
			text	   *stream = DatumGetTextPP(slot_getattr(idslot, Anum_es_ids_stream_id, &isnull));

			if (VARSIZE_ANY_EXHDR(stream) == len &&
				memcmp(VARDATA_ANY(stream), VARDATA_ANY(ap->stream_id), len) == 0)
			{
				stored[i].here = true;
				stored[i].version = DatumGetInt64(slot_getattr(idslot, Anum_es_ids_stream_version, &isnull));
				stored[i].position = DatumGetInt64(slot_getattr(idslot, Anum_es_ids_global_position, &isnull));
			}
			else
				stored[i].elsewhere = DatumGetTextPCopy(PointerGetDatum(stream));
		}
		es_scan_end(&scan);
	}
}

/*
 * Is this call the repetition of one that already stored its events (a
 * retry after a lost acknowledgement)?  ids[0..nids-1] are the ids the
 * call's nevents events carry.  If so, note that call's result in ap and
 * return true: nothing is written.
 *
 * The call is a retry when every event carries an id and the ids are
 * stored as consecutive events of this stream, in the call's order,
 * whatever the expected version and whatever the stream went through since
 * (more appends, a soft delete).  Calls made of several former calls'
 * events in order count as well: the ids are what is compared, not the
 * calls.  None of the ids stored: a new append.  Anything in between (some
 * stored and some not, another order, an event without id next to stored
 * ones) is neither: the version conflict ST001, so that clients that catch
 * conflicts catch it (before 0.6.0: ST004).  An id stored in another
 * stream: 23505, as the unique index would say.
 */
static bool
es_append_retry(EsAppend *ap, Relation stream_index, TupleTableSlot *scanslot,
				const pg_uuid_t *ids, int nids, int nevents)
{
	EsStoredId *stored = palloc(nids * sizeof(EsStoredId));
	int			nhere = 0;
	int			first_here = -1;
	bool		retry;

	es_find_ids(ap, stream_index, scanslot, ids, nids, stored);

	for (int i = 0; i < nids; i++)
	{
		if (stored[i].here)
		{
			if (first_here < 0)
				first_here = i;
			nhere++;
		}
		else if (stored[i].elsewhere != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("event id %s is stored in stream \"%s\"",
							DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ids[i]))),
							text_to_cstring(stored[i].elsewhere)),
					 errdetail("An event id identifies one event of the store; the append to stream \"%s\" cannot store it again.",
							   text_to_cstring(ap->stream_id)),
					 errhint("Give a new event a new id; repeat an id only to retry the append that stored it, on the same stream.")));
	}
	if (nhere == 0)
	{
		pfree(stored);
		return false;
	}

	retry = (nhere == nevents);
	for (int i = 1; retry && i < nids; i++)
		retry = (stored[i].version == stored[0].version + i);
	if (!retry)
		es_stats_conflict(ap->cat);
	if (!retry)
		ereport(ERROR,
				(errcode(ERRCODE_ES_WRONG_EXPECTED_VERSION),
				 errmsg("events of the append overlap events stored in stream \"%s\"",
						text_to_cstring(ap->stream_id)),
				 errdetail("Event id %s is stored at version " INT64_FORMAT " of stream \"%s\", but the append is not a repetition of the append that stored it: %d of its %d events carry ids stored in the stream.",
						   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ids[first_here]))),
						   stored[first_here].version, text_to_cstring(ap->stream_id),
						   nhere, nevents),
				 errhint("A retry must repeat the original append exactly: the same events, with the same ids, in the same order.")));

	ap->first_version = stored[0].version;
	ap->last_version = stored[nids - 1].version;
	ap->last_position = stored[nids - 1].position;
	pfree(stored);
	return true;
}

static void
es_append_event(EsAppend *ap, const EsEventInput *ev)
{
	TupleTableSlot *slot = ap->slot;
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;
	pg_uuid_t	generated;
	int64		position;

	ResetPerTupleExprContext(ap->estate);
	ExecClearTuple(slot);

	/* Tell readers of the global log about us before drawing a position. */
	es_horizon_enter(ap->cat);
	position = nextval_internal(ap->position_seq, false);

	values[Anum_es_global_position - 1] = Int64GetDatum(position);
	values[Anum_es_stream_version - 1] = Int64GetDatum(ap->next_version);
	values[Anum_es_created_at - 1] = TimestampTzGetDatum(ap->created_at);
	if (ev->has_event_id)
		values[Anum_es_event_id - 1] = UUIDPGetDatum(&ev->event_id);
	else
	{
		es_generate_uuid(&generated);
		values[Anum_es_event_id - 1] = UUIDPGetDatum(&generated);
	}
	values[Anum_es_stream_id - 1] = PointerGetDatum(ap->stream_id);
	values[Anum_es_event_type - 1] = PointerGetDatum(ev->event_type);
	values[Anum_es_data - 1] = ev->data;
	values[Anum_es_metadata - 1] = ev->has_metadata ? ev->metadata : (Datum) 0;
	memset(nulls, false, Natts_es_events * sizeof(bool));
	nulls[Anum_es_metadata - 1] = !ev->has_metadata;
	ExecStoreVirtualTuple(slot);

	ExecSimpleRelationInsert(ap->rri, ap->estate, slot);

	/* the id the caller gave is taken for good */
	if (ev->has_event_id && ap->ids_rel != NULL)
	{
		TupleTableSlot *ids_slot = ap->ids_slot;

		ExecClearTuple(ids_slot);
		ids_slot->tts_values[Anum_es_ids_event_id - 1] = UUIDPGetDatum(&ev->event_id);
		ids_slot->tts_values[Anum_es_ids_global_position - 1] = Int64GetDatum(position);
		ids_slot->tts_values[Anum_es_ids_stream_version - 1] = Int64GetDatum(ap->next_version);
		ids_slot->tts_values[Anum_es_ids_stream_id - 1] = PointerGetDatum(ap->stream_id);
		memset(ids_slot->tts_isnull, false, Natts_es_event_ids * sizeof(bool));
		ExecStoreVirtualTuple(ids_slot);
		ExecSimpleRelationInsert(ap->ids_rri, ap->estate, ids_slot);
	}

	ap->last_version = ap->next_version++;
	ap->last_position = position;
	ap->bytes += toast_raw_datum_size(ev->data) - VARHDRSZ;
	if (ev->has_metadata)
		ap->bytes += toast_raw_datum_size(ev->metadata) - VARHDRSZ;

	if (ap->nprojs > 0)
		es_run_inline_projections(ap, values, nulls, position);
}

/*
 * Take the lock that orders appends against changes of projections, and
 * note the live inline projections (the cache is current once the lock is
 * held: taking it processes pending invalidations).
 */
static void
es_inline_projections_begin(EsAppend *ap)
{
	EsProjection *projs;
	int			n;

	ap->nprojs = 0;
	if (!OidIsValid(ap->cat->projections_relid))
		return;

	LockRelationOid(ap->cat->projections_relid, RowShareLock);
	projs = es_projections(ap->cat, &n);
	for (int i = 0; i < n; i++)
	{
		if (projs[i].enabled && projs[i].is_inline && !projs[i].catching_up)
		{
			if (ap->nprojs == 0)
				ap->projs = palloc((n - i) * sizeof(EsProjection *));
			ap->projs[ap->nprojs++] = &projs[i];
		}
	}
	if (ap->nprojs > 0)
	{
		ap->handlers = palloc0(ap->nprojs * sizeof(FmgrInfo));
		ap->event_desc = lookup_rowtype_tupdesc_copy(ap->cat->event_typid, -1);
	}
}

/*
 * Hand a freshly inserted event to the inline projections it matches.  The
 * command counter is advanced first, so a handler that reads the events
 * table sees the event.
 */
static void
es_run_inline_projections(EsAppend *ap, Datum *values, bool *nulls, int64 position)
{
	text	   *stream_id = ap->stream_id;
	text	   *type = DatumGetTextPP(values[Anum_es_event_type - 1]);
	Datum		event = (Datum) 0;

	for (int i = 0; i < ap->nprojs; i++)
	{
		const EsProjection *p = ap->projs[i];
		instr_time	start;
		instr_time	end;

		if (!es_filter_matches(&p->filter, VARDATA_ANY(stream_id), VARSIZE_ANY_EXHDR(stream_id),
								   VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type)))
			continue;
		if (event == (Datum) 0)
		{
			CommandCounterIncrement();
			event = es_event_datum(ap->event_desc, values, nulls);
		}
		if (!OidIsValid(ap->handlers[i].fn_oid))
			es_handler_init(p, ap->handlers_as_owners ? p->owner : GetUserId(),
							&ap->handlers[i], ap->cxt);
		INSTR_TIME_SET_CURRENT(start);
		if (ap->handlers_as_owners)
		{
			EsGuard		guard;

			es_user_code_begin(&guard, p->owner, p->search_path);
			es_handler_call(p, &ap->handlers[i], event, position);
			es_user_code_end(&guard);
		}
		else
			es_handler_call(p, &ap->handlers[i], event, position);
		INSTR_TIME_SET_CURRENT(end);
		INSTR_TIME_SUBTRACT(end, start);
		es_stats_inline_call(ap->cat, INSTR_TIME_GET_MICROSEC(end));
	}

	/* later events of the call are inserted after what the handlers did */
	if (event != (Datum) 0)
		ap->estate->es_output_cid = GetCurrentCommandId(true);
}

static void
es_append_end(EsAppend *ap)
{
	/* Our positions are drawn: readers may count them as such. */
	if (ap->last_position != 0 && !ap->retry)
		es_horizon_drawn(ap->last_position);
	es_stats_append(ap->cat,
					(ap->last_position == 0 || ap->retry) ? 0 :
					ap->last_version - ap->first_version + 1,
					ap->bytes, ap->retry);

	/*
	 * Fire AFTER ROW triggers users may have put on the events table, then
	 * close the indexes (and anything the trigger manager opened).
	 */
	AfterTriggerEndQuery(ap->estate);
	ExecCloseResultRelations(ap->estate);
	ExecResetTupleTable(ap->estate->es_tupleTable, false);
	FreeExecutorState(ap->estate);
	if (ap->ids_rel != NULL)
		table_close(ap->ids_rel, NoLock);
	table_close(ap->rel, NoLock);

	Assert(es_nactive > 0);
	es_nactive--;
}

/* Build the eventstore.append_result of the call. */
static Datum
es_append_result(FunctionCallInfo fcinfo, EsAppend *ap)
{
	Datum		values[2];
	bool		nulls[2] = {false, false};

	values[0] = Int64GetDatum(ap->last_version);
	values[1] = Int64GetDatum(ap->last_position);
	/* an empty batch appends nothing and so has no position */
	nulls[1] = (ap->last_position == 0);

	return es_result_row(fcinfo, values, nulls);
}

/*
 * A version 7 UUID (RFC 9562): 48 bits of Unix time in milliseconds, then
 * random bits.  Time-ordered ids keep any index on event_id compact.  The
 * server's own generator where it has one (18, see compat.h).
 */
static void
es_generate_uuid(pg_uuid_t *uuid)
{
	uint64		unix_ms;

	if (es_builtin_uuidv7(uuid))
		return;

	unix_ms = (uint64) (GetCurrentTimestamp() / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	for (int i = 0; i < 6; i++)
		uuid->data[i] = (unsigned char) (unix_ms >> (40 - 8 * i));
	if (!pg_strong_random(&uuid->data[6], UUID_LEN - 6))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x70;	/* version 7 */
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;	/* RFC 9562 variant */
}

/*
 * Define the settings this file reads: the limit on an event's size.
 * Called by _PG_init.
 */
void
es_append_define_gucs(void)
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
}
