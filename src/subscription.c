/*-------------------------------------------------------------------------
 *
 * subscription.c
 *	  The pull of a durable subscription's fetch: the events read from the
 *	  global log sorted, as they are read, into those the fetch leases and
 *	  those it leaves waiting; and the usual fetch and ack.
 *
 * Durable subscriptions are PL/pgSQL (sql/install/subscriptions.sql), but
 * for the state they spend their life in, which this file recognises and
 * serves in C (below: "The usual fetch and ack").  A fetch that has room for more events than its subscription has ready pulls
 * them from the log, as read_all reads it, and sorts each one: an event of
 * a stream that an outstanding event closes waits (it is stored pending),
 * and so does one the batch has no room left for; the others are leased at
 * once.  Doing that in SQL took a query with a window, a common table
 * expression and five aggregates, whose set-up alone cost more than the
 * rest of a small fetch (0.9.0).
 *
 * Of a subscription in lanes (0.9.0) a fetch pulls one lane at a time: the
 * events of the streams that _stream_lane() puts in it, the others passed
 * over as if filtered out.
 *
 * src/subscription.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_collation_d.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "eventstore.h"

/* One pull: what closes a stream, and the events sorted so far. */
typedef struct EsPull
{
	Datum	   *closed;			/* stream ids (text), sorted bytewise */
	int			nclosed;
	int32		lane;			/* the lane pulled (0 to lanes - 1) */
	int32		lanes;			/* the subscription's lanes */
	int64		room;			/* how many more it may lease */
	int64		got;			/* events read */
	int64		last;			/* the last one's position */
	MemoryContext cxt;			/* of the arrays built */
	ArrayBuildState *leased;
	ArrayBuildState *leased_streams;
	ArrayBuildState *waiting;
	ArrayBuildState *waiting_streams;
	/* the usual fetch (below): the events leased, as it returns them */
	Tuplestorestate *rows;
	TupleDesc	rowdesc;
	struct EsKept *kept;		/* of several lanes: sorted at the end */
	int			nkept;
	int			maxkept;
} EsPull;

/* A row of the result kept to be sorted, and its position. */
typedef struct EsKept
{
	int64		position;
	HeapTuple	tuple;
} EsKept;

/*
 * The lane of a stream in a subscription of "lanes" lanes, 0 to lanes - 1:
 * a hash of its id's bytes, which never changes (PostgreSQL keeps
 * hash_bytes_extended stable, as hash partitions store what it gives).
 */
static int32
es_stream_lane(text *stream_id, int32 lanes)
{
	uint64		hash;

	if (lanes <= 1)
		return 0;
	hash = hash_bytes_extended((const unsigned char *) VARDATA_ANY(stream_id),
							   VARSIZE_ANY_EXHDR(stream_id), 0);
	return (int32) (hash % (uint64) lanes);
}

/* Stream ids compare bytewise (they are COLLATE "C" everywhere). */
static int
es_stream_cmp(const char *a, Size alen, const char *b, Size blen)
{
	int			c = memcmp(a, b, Min(alen, blen));

	if (c != 0)
		return c;
	return (alen > blen) - (alen < blen);
}

static int
es_stream_datum_cmp(const void *a, const void *b)
{
	text	   *ta = DatumGetTextPP(*(const Datum *) a);
	text	   *tb = DatumGetTextPP(*(const Datum *) b);

	return es_stream_cmp(VARDATA_ANY(ta), VARSIZE_ANY_EXHDR(ta),
						 VARDATA_ANY(tb), VARSIZE_ANY_EXHDR(tb));
}

static void es_fetch_put(EsPull *pull, TupleTableSlot *slot);

static bool
es_pull_closed(const EsPull *pull, text *stream_id)
{
	const char *id = VARDATA_ANY(stream_id);
	Size		len = VARSIZE_ANY_EXHDR(stream_id);
	int			lo = 0;
	int			hi = pull->nclosed - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		text	   *m = DatumGetTextPP(pull->closed[mid]);
		int			c = es_stream_cmp(id, len, VARDATA_ANY(m), VARSIZE_ANY_EXHDR(m));

		if (c == 0)
			return true;
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return false;
}

/*
 * Each event, in position order: leased while its stream is open and the
 * batch has room; waiting otherwise.  (A stream whose event waits for room
 * is closed from it on by that alone: the room never comes back within a
 * pull, and the fetch closes the stream for its next pull.)  An event of a
 * stream in another lane is passed over: it does not count toward the
 * pull's max_count, so a pull of a lane reads until it has that many of
 * its own.
 */
static bool
es_pull_sink(void *arg, TupleTableSlot *slot, text *stream_id)
{
	EsPull	   *pull = (EsPull *) arg;
	bool		isnull;
	Datum		position;

	if (pull->lanes > 1 && es_stream_lane(stream_id, pull->lanes) != pull->lane)
		return false;
	position = slot_getattr(slot, Anum_es_global_position, &isnull);
	if (pull->room > 0 && !es_pull_closed(pull, stream_id))
	{
		pull->room--;
		pull->leased = accumArrayResult(pull->leased, position, false, INT8OID, pull->cxt);
		pull->leased_streams = accumArrayResult(pull->leased_streams, PointerGetDatum(stream_id),
												false, TEXTOID, pull->cxt);
		if (pull->rows != NULL)
			es_fetch_put(pull, slot);
	}
	else
	{
		pull->waiting = accumArrayResult(pull->waiting, position, false, INT8OID, pull->cxt);
		pull->waiting_streams = accumArrayResult(pull->waiting_streams, PointerGetDatum(stream_id),
												 false, TEXTOID, pull->cxt);
	}
	pull->got++;
	pull->last = DatumGetInt64(position);
	return true;
}

/* The array built, or an empty one of that type. */
static Datum
es_pull_array(ArrayBuildState *astate, Oid elemtype, MemoryContext cxt)
{
	if (astate == NULL)
		return PointerGetDatum(construct_empty_array(elemtype));
	return makeArrayResult(astate, cxt);
}

/*
 * eventstore._subscription_pull(after_position bigint, max_count bigint,
 *		event_types text[], stream_prefix text, closed text[], room bigint,
 *		lane integer, lanes integer,
 *		OUT got bigint, OUT last_position bigint, OUT horizon bigint,
 *		OUT leased bigint[], OUT leased_streams text[],
 *		OUT waiting bigint[], OUT waiting_streams text[])
 *
 * Reads what read_all(after_position, max_count, event_types,
 * stream_prefix) would return and sorts it: "leased", in position order,
 * the first "room" events of streams not in "closed"; "waiting" the others.
 * Of a subscription in several lanes (0.9.0), only the events of streams in
 * "lane" are read as if the others were filtered out: "got" counts them,
 * and with got < max_count no other of them is at or below the horizon.
 * "horizon" is the one the read stopped at (the filtered-follower pattern:
 * with got < max_count, nothing else matching is at or below it).
 * Internal: called by _subscription_fetch, as the extension's owner.
 */
PG_FUNCTION_INFO_V1(eventstore_subscription_pull);
Datum
eventstore_subscription_pull(PG_FUNCTION_ARGS)
{
	int64		after;
	int64		max_count;
	ArrayType  *types = PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2);
	text	   *prefix = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	ArrayType  *closed;
	EsPull		pull = {0};
	bool	   *closed_nulls;
	int			nclosed;
	int64		horizon;
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {false};

	es_arg_not_null(fcinfo, 0, "after_position");
	es_arg_not_null(fcinfo, 1, "max_count");
	es_arg_not_null(fcinfo, 4, "closed");
	es_arg_not_null(fcinfo, 5, "room");
	es_arg_not_null(fcinfo, 6, "lane");
	es_arg_not_null(fcinfo, 7, "lanes");
	after = PG_GETARG_INT64(0);
	max_count = PG_GETARG_INT64(1);
	closed = PG_GETARG_ARRAYTYPE_P(4);
	if (after < 0 || max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_position and max_count must not be negative")));
	pull.lane = PG_GETARG_INT32(6);
	pull.lanes = PG_GETARG_INT32(7);
	if (pull.lanes < 1 || pull.lane < 0 || pull.lane >= pull.lanes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lane %d is not one of %d lanes", pull.lane, pull.lanes)));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function returning record called in context that cannot accept type record")));

	/* NULL stream ids close nothing (a stream id is never NULL) */
	deconstruct_array(closed, TEXTOID, -1, false, TYPALIGN_INT,
					  &pull.closed, &closed_nulls, &nclosed);
	for (int i = 0; i < nclosed; i++)
	{
		if (!closed_nulls[i])
			pull.closed[pull.nclosed++] = pull.closed[i];
	}
	if (pull.nclosed > 1)
		qsort(pull.closed, pull.nclosed, sizeof(Datum), es_stream_datum_cmp);
	pull.room = PG_GETARG_INT64(5);
	pull.cxt = CurrentMemoryContext;

	horizon = es_read_all_into(es_pull_sink, &pull, after, max_count, types, prefix);

	values[0] = Int64GetDatum(pull.got);
	values[1] = Int64GetDatum(pull.last);
	nulls[1] = pull.got == 0;
	values[2] = Int64GetDatum(horizon);
	values[3] = es_pull_array(pull.leased, INT8OID, pull.cxt);
	values[4] = es_pull_array(pull.leased_streams, TEXTOID, pull.cxt);
	values[5] = es_pull_array(pull.waiting, INT8OID, pull.cxt);
	values[6] = es_pull_array(pull.waiting_streams, TEXTOID, pull.cxt);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/*
 * eventstore._stream_lane(stream_id text, lanes integer) RETURNS integer
 *
 * The lane, 0 to lanes - 1, that a subscription of "lanes" lanes puts the
 * stream in (0.9.0): what _subscription_pull sorts by.  Internal.
 */
PG_FUNCTION_INFO_V1(eventstore_stream_lane);
Datum
eventstore_stream_lane(PG_FUNCTION_ARGS)
{
	int32		lanes = PG_GETARG_INT32(1);

	if (lanes < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lanes must be at least 1, not %d", lanes)));
	PG_RETURN_INT32(es_stream_lane(PG_GETARG_TEXT_PP(0), lanes));
}

/*
 * The usual fetch and ack, in C (0.9.0).
 *
 * A subscription whose consumers keep up spends its life in one state:
 * nothing outstanding but the live lease rows of batches being processed.
 * Then a fetch only locks its lane (the subscription's row for one lane, a
 * row of subscription_lanes for more), pulls from the log (sorting out the
 * streams the lane's lease rows hold), stores what it left waiting, moves
 * the lane's pulled position and writes one lease row, lane after lane
 * while the batch has room; an ack deletes the lease row it names.  In PL/pgSQL those were a dozen
 * statements whose executor start-up, and the CHECK constraints every
 * UPDATE and INSERT parse again, cost five times the plain work queue's
 * instructions.  Here they are done with the table and index access
 * methods directly.
 *
 * Everything else -- a first fetch of a consumer (or one not seen for a
 * hundredth of the lease timeout), any row in subscription_events that is
 * not parked in the lane (retries, expired leases, waiting events), an
 * expired lease row of the lane, every lane held by other fetches (the
 * general way waits), a distributed store, bad arguments, an ack that is
 * not exactly one lease row of the caller's, a row changed under
 * REPEATABLE READ -- goes to the PL/pgSQL implementation
 * (_subscription_fetch_general, _subscription_ack_general), which has
 * every rule; the checks here only recognise the state in which those
 * rules come down to the steps above, and write nothing before they pass.
 * The general way takes the same locks again, which it then already holds.
 */

/* The subscriptions' tables and the columns C reads or writes. */
typedef struct EsSubCatalog
{
	Oid			general_fetch;	/* _subscription_fetch_general */
	Oid			general_ack;	/* _subscription_ack_general */
	Oid			subs;
	Oid			subs_pkey;
	Oid			events;			/* subscription_events */
	Oid			events_pkey;
	Oid			leases;
	Oid			leases_pkey;
	Oid			consumers;
	Oid			consumers_pkey;
	Oid			lanes;			/* subscription_lanes */
	Oid			lanes_pkey;
	/* subscriptions */
	AttrNumber	s_event_types;
	AttrNumber	s_stream_prefix;
	AttrNumber	s_lease_timeout;
	AttrNumber	s_pulled_position;
	AttrNumber	s_last_fetch_at;
	AttrNumber	s_lanes;
	/* subscription_events */
	AttrNumber	e_subscription;
	AttrNumber	e_global_position;
	AttrNumber	e_stream_id;
	AttrNumber	e_state;
	AttrNumber	e_attempts;
	/* subscription_leases */
	AttrNumber	l_subscription;
	AttrNumber	l_first_position;
	AttrNumber	l_consumer;
	AttrNumber	l_consumer_role;
	AttrNumber	l_expires_at;
	AttrNumber	l_positions;
	AttrNumber	l_streams;
	AttrNumber	l_lane;
	/* subscription_consumers */
	AttrNumber	c_last_seen_at;
	/* subscription_lanes */
	AttrNumber	n_lane;
	AttrNumber	n_pulled_position;
	AttrNumber	n_last_fetch_at;
} EsSubCatalog;

static EsSubCatalog es_sub_catalog;
static bool es_sub_catalog_valid = false;
static bool es_sub_callback_registered = false;

static void
es_sub_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == es_sub_catalog.subs ||
		relid == es_sub_catalog.events || relid == es_sub_catalog.leases ||
		relid == es_sub_catalog.consumers || relid == es_sub_catalog.lanes)
		es_sub_catalog_valid = false;
}

/* Looked up once per backend, again after any change of these tables. */
static const EsSubCatalog *
es_subscriptions_catalog(void)
{
	EsSubCatalog *c = &es_sub_catalog;
	const Oid	fetch_args[] = {REGROLEOID, TEXTOID, TEXTOID, TEXTOID, INT4OID};
	const Oid	ack_args[] = {REGROLEOID, TEXTOID, TEXTOID, TEXTOID, INT8ARRAYOID};

	if (es_sub_catalog_valid)
		return c;
	if (!es_sub_callback_registered)
	{
		CacheRegisterRelcacheCallback(es_sub_relcache_callback, (Datum) 0);
		es_sub_callback_registered = true;
	}
	(void) es_catalog();		/* the schema, for the lookups below */
	c->subs = es_lookup_relation("subscriptions");
	c->subs_pkey = es_lookup_relation("subscriptions_pkey");
	c->events = es_lookup_relation("subscription_events");
	c->events_pkey = es_lookup_relation("subscription_events_pkey");
	c->leases = es_lookup_relation("subscription_leases");
	c->leases_pkey = es_lookup_relation("subscription_leases_pkey");
	c->consumers = es_lookup_relation("subscription_consumers");
	c->consumers_pkey = es_lookup_relation("subscription_consumers_pkey");
	c->s_event_types = es_lookup_column(c->subs, "subscriptions", "event_types");
	c->s_stream_prefix = es_lookup_column(c->subs, "subscriptions", "stream_prefix");
	c->s_lease_timeout = es_lookup_column(c->subs, "subscriptions", "lease_timeout");
	c->s_pulled_position = es_lookup_column(c->subs, "subscriptions", "pulled_position");
	c->s_last_fetch_at = es_lookup_column(c->subs, "subscriptions", "last_fetch_at");
	c->s_lanes = es_lookup_column(c->subs, "subscriptions", "lanes");
	c->e_subscription = es_lookup_column(c->events, "subscription_events", "subscription");
	c->e_global_position = es_lookup_column(c->events, "subscription_events", "global_position");
	c->e_stream_id = es_lookup_column(c->events, "subscription_events", "stream_id");
	c->e_state = es_lookup_column(c->events, "subscription_events", "state");
	c->e_attempts = es_lookup_column(c->events, "subscription_events", "attempts");
	c->l_subscription = es_lookup_column(c->leases, "subscription_leases", "subscription");
	c->l_first_position = es_lookup_column(c->leases, "subscription_leases", "first_position");
	c->l_consumer = es_lookup_column(c->leases, "subscription_leases", "consumer");
	c->l_consumer_role = es_lookup_column(c->leases, "subscription_leases", "consumer_role");
	c->l_expires_at = es_lookup_column(c->leases, "subscription_leases", "expires_at");
	c->l_positions = es_lookup_column(c->leases, "subscription_leases", "positions");
	c->l_streams = es_lookup_column(c->leases, "subscription_leases", "streams");
	c->l_lane = es_lookup_column(c->leases, "subscription_leases", "lane");
	c->c_last_seen_at = es_lookup_column(c->consumers, "subscription_consumers", "last_seen_at");
	c->lanes = es_lookup_relation("subscription_lanes");
	c->lanes_pkey = es_lookup_relation("subscription_lanes_pkey");
	c->n_lane = es_lookup_column(c->lanes, "subscription_lanes", "lane");
	c->n_pulled_position = es_lookup_column(c->lanes, "subscription_lanes", "pulled_position");
	c->n_last_fetch_at = es_lookup_column(c->lanes, "subscription_lanes", "last_fetch_at");
	c->general_fetch = es_lookup_function("_subscription_fetch_general", 5, fetch_args);
	c->general_ack = es_lookup_function("_subscription_ack_general", 5, ack_args);
	es_sub_catalog_valid = true;
	return c;
}

/*
 * The general way: the PL/pgSQL implementation, with the same arguments.
 * With track_functions = 'pl', pg_stat_user_functions counts how often it
 * is taken.
 */
static Datum
es_sub_general(FunctionCallInfo fcinfo, Oid fn)
{
	FmgrInfo   *flinfo = (FmgrInfo *) fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(gfcinfo, 5);
	PgStat_FunctionCallUsage usage;
	Datum		result;

	/* per call site: the implementation keeps its own state in it */
	if (flinfo == NULL || flinfo->fn_oid != fn)
	{
		flinfo = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(fn, flinfo, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = flinfo;
	}
	Assert(PG_NARGS() == 5);
	InitFunctionCallInfoData(*gfcinfo, flinfo, 5, fcinfo->fncollation, NULL,
							 fcinfo->resultinfo);
	for (int i = 0; i < 5; i++)
		gfcinfo->args[i] = fcinfo->args[i];
	/* counted as a call from a query would be (track_functions) */
	pgstat_init_function_usage(gfcinfo, &usage);
	result = FunctionCallInvoke(gfcinfo);
	pgstat_end_function_usage(&usage, true);
	fcinfo->isnull = gfcinfo->isnull;
	return result;
}

/* key "column = value" of a text column (COLLATE "C") of an index */
static void
es_sub_text_key(ScanKey key, AttrNumber indexcol, text *value)
{
	ScanKeyEntryInitialize(key, 0, indexcol, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, PointerGetDatum(value));
}

static bool
es_text_equal(Datum a, text *b)
{
	text	   *ta = DatumGetTextPP(a);

	return es_stream_cmp(VARDATA_ANY(ta), VARSIZE_ANY_EXHDR(ta),
						 VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b)) == 0;
}

/*
 * A leased event, as the fetch returns it: the event, then its attempt.
 * Of a subscription of one lane straight into the result, in position
 * order as pulled; of several, kept until every lane served is pulled
 * (es_fetch_emit sorts them).
 */
static void
es_fetch_put(EsPull *pull, TupleTableSlot *slot)
{
	Datum		values[Natts_es_event_type + 1];
	bool		nulls[Natts_es_event_type + 1];
	MemoryContext oldcxt;

	es_event_values(slot, pull->rowdesc, 0, values, nulls);
	values[Natts_es_event_type] = Int32GetDatum(1);
	nulls[Natts_es_event_type] = false;
	if (pull->lanes == 1)
	{
		tuplestore_putvalues(pull->rows, pull->rowdesc, values, nulls);
		return;
	}
	oldcxt = MemoryContextSwitchTo(pull->cxt);
	if (pull->nkept == pull->maxkept)
	{
		pull->maxkept = Max(16, pull->maxkept * 2);
		pull->kept = pull->kept ? repalloc(pull->kept, pull->maxkept * sizeof(EsKept))
			: palloc(pull->maxkept * sizeof(EsKept));
	}
	pull->kept[pull->nkept].position = DatumGetInt64(values[0]);
	pull->kept[pull->nkept].tuple = heap_form_tuple(pull->rowdesc, values, nulls);
	pull->nkept++;
	MemoryContextSwitchTo(oldcxt);
}

/* rows kept by es_fetch_put, by position */
static int
es_kept_cmp(const void *a, const void *b)
{
	int64		pa = ((const EsKept *) a)->position;
	int64		pb = ((const EsKept *) b)->position;

	return (pa > pb) - (pa < pb);
}

/* Add stream ids to the closed ones, kept sorted. */
static void
es_pull_close(EsPull *pull, ArrayBuildState *streams)
{
	if (streams == NULL || streams->nelems == 0)
		return;
	pull->closed = repalloc(pull->closed, (pull->nclosed + streams->nelems + 1) * sizeof(Datum));
	memcpy(pull->closed + pull->nclosed, streams->dvalues, streams->nelems * sizeof(Datum));
	pull->nclosed += streams->nelems;
	qsort(pull->closed, pull->nclosed, sizeof(Datum), es_stream_datum_cmp);
}

/* One usual fetch: what its steps share. */
typedef struct EsFetch
{
	const EsSubCatalog *c;
	Oid			caller;
	text	   *sub;
	text	   *consumer;
	int32		max_count;
	Snapshot	snapshot;		/* registered; renewed after each lock */
	TimestampTz now;
	TimestampTz expires;
	ArrayType  *types;			/* the subscription's filter */
	text	   *prefix;
	EsPull		pull;			/* of the lane being served */
	int64		taken;			/* events leased so far, every lane */
	Relation	events;			/* subscription_events, once written */
	TupleTableSlot *eslot;
	EsRowWriter ewriter;
} EsFetch;

/* After a lock: what the transaction it waited for committed counts. */
static void
es_fetch_renew_snapshot(EsFetch *f)
{
	UnregisterSnapshot(f->snapshot);
	f->snapshot = RegisterSnapshot(GetTransactionSnapshot());
}

/* The consumer was seen within a hundredth of the lease timeout. */
static bool
es_fetch_consumer_seen(EsFetch *f, Interval *lease_timeout)
{
	const EsSubCatalog *c = f->c;
	Relation	rel = table_open(c->consumers, AccessShareLock);
	Relation	index = index_open(c->consumers_pkey, AccessShareLock);
	TimestampTz seen_after;
	EsEventScan scan;
	ScanKeyData keys[2];
	bool		seen = false;

	seen_after = DatumGetTimestampTz(
		DirectFunctionCall2(timestamptz_mi_interval, TimestampTzGetDatum(f->now),
							DirectFunctionCall2(interval_div,
												IntervalPGetDatum(lease_timeout),
												Float8GetDatum(100.0))));
	es_sub_text_key(&keys[0], 1, f->sub);
	es_sub_text_key(&keys[1], 2, f->consumer);
	es_scan_begin(&scan, rel, index, f->snapshot, keys, 2, ForwardScanDirection, NULL);
	if (es_scan_next(&scan) != NULL)
	{
		bool		isnull;
		Datum		at = slot_getattr(scan.slot, c->c_last_seen_at, &isnull);

		seen = !isnull && DatumGetTimestampTz(at) >= seen_after;
	}
	es_scan_end(&scan);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return seen;
}

/*
 * Is the lane in the usual state: no event of its streams in
 * subscription_events but parked ones, and no lease row of it expired?
 * Then the streams of its lease rows are the closed ones (f->pull.closed,
 * sorted); the lane is held.
 */
static bool
es_fetch_lane_usual(EsFetch *f, int32 lane, int32 lanes)
{
	const EsSubCatalog *c = f->c;
	Relation	rel;
	Relation	index;
	EsEventScan scan;
	ScanKeyData key;
	bool		usual = true;
	text	   *parked = cstring_to_text("parked");

	rel = table_open(c->events, AccessShareLock);
	index = index_open(c->events_pkey, AccessShareLock);
	es_sub_text_key(&key, 1, f->sub);
	es_scan_begin(&scan, rel, index, f->snapshot, &key, 1, ForwardScanDirection, NULL);
	while (usual && es_scan_next(&scan) != NULL)
	{
		bool		isnull;
		bool		id_null;
		Datum		state = slot_getattr(scan.slot, c->e_state, &isnull);
		Datum		id = slot_getattr(scan.slot, c->e_stream_id, &id_null);

		CHECK_FOR_INTERRUPTS();
		if (isnull || id_null)
			usual = false;
		else if (lanes == 1 || es_stream_lane(DatumGetTextPP(id), lanes) == lane)
			usual = es_text_equal(state, parked);
	}
	es_scan_end(&scan);
	index_close(index, NoLock);
	table_close(rel, NoLock);

	f->pull.nclosed = 0;
	if (!usual)
		return false;
	rel = table_open(c->leases, AccessShareLock);
	index = index_open(c->leases_pkey, AccessShareLock);
	es_scan_begin(&scan, rel, index, f->snapshot, &key, 1, ForwardScanDirection, NULL);
	while (usual && es_scan_next(&scan) != NULL)
	{
		bool		at_null;
		bool		streams_null;
		bool		lane_null;
		Datum		at = slot_getattr(scan.slot, c->l_expires_at, &at_null);
		Datum		streams = slot_getattr(scan.slot, c->l_streams, &streams_null);
		Datum		row_lane = slot_getattr(scan.slot, c->l_lane, &lane_null);
		ArrayType  *arr;
		Datum	   *ids;
		bool	   *idnulls;
		int			n;

		CHECK_FOR_INTERRUPTS();
		if (at_null || streams_null || lane_null)
		{
			usual = false;
			break;
		}
		if (DatumGetInt32(row_lane) != lane)
			continue;
		if (DatumGetTimestampTz(at) <= f->now)
		{
			usual = false;
			break;
		}
		arr = DatumGetArrayTypePCopy(streams);
		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &ids, &idnulls, &n);
		f->pull.closed = repalloc(f->pull.closed, (f->pull.nclosed + n + 1) * sizeof(Datum));
		for (int i = 0; i < n; i++)
		{
			if (!idnulls[i])
				f->pull.closed[f->pull.nclosed++] = ids[i];
		}
	}
	es_scan_end(&scan);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	if (usual && f->pull.nclosed > 1)
		qsort(f->pull.closed, f->pull.nclosed, sizeof(Datum), es_stream_datum_cmp);
	return usual;
}

/* An event pulled while its stream is closed waits: a pending row. */
static void
es_fetch_store_waiting(EsFetch *f, Datum position, Datum stream_id)
{
	const EsSubCatalog *c = f->c;
	TupleTableSlot *slot;
	Datum	   *v;
	bool	   *n;

	if (f->events == NULL)
	{
		f->events = table_open(c->events, RowExclusiveLock);
		f->eslot = table_slot_create(f->events, NULL);
		es_rows_begin(&f->ewriter, f->events);
	}
	slot = f->eslot;
	v = slot->tts_values;
	n = slot->tts_isnull;
	ExecClearTuple(slot);
	memset(n, true, slot->tts_tupleDescriptor->natts * sizeof(bool));
	v[c->e_subscription - 1] = PointerGetDatum(f->sub);
	v[c->e_global_position - 1] = position;
	v[c->e_stream_id - 1] = stream_id;
	v[c->e_state - 1] = CStringGetTextDatum("pending");
	v[c->e_attempts - 1] = Int32GetDatum(0);
	n[c->e_subscription - 1] = n[c->e_global_position - 1] = n[c->e_stream_id - 1] =
		n[c->e_state - 1] = n[c->e_attempts - 1] = false;
	ExecStoreVirtualTuple(slot);
	es_rows_insert(&f->ewriter, slot);
}

/*
 * Pull the lane after "pulled" for what the batch has room for, as the
 * general way's pull loop does with nothing ready and nothing pending:
 * events of open streams are leased (f->pull.leased), the others stored
 * pending, closing their streams; each further pull twice as large.
 * Returns the lane's new pulled position.
 */
static int64
es_fetch_pull_lane(EsFetch *f, int32 lane, int32 lanes, int64 pulled)
{
	EsPull	   *pull = &f->pull;
	int64		window = Max(1000, f->max_count);
	int64		pending = 0;
	int64		step = 0;
	int64		taken = 0;

	pull->lane = lane;
	pull->lanes = lanes;
	pull->leased = NULL;
	pull->leased_streams = NULL;
	for (;;)
	{
		int64		room = f->max_count - f->taken - taken;
		int64		want;
		int64		horizon;

		if (room <= 0)
			break;
		step = Max(room, step * 2);
		want = Min(step, window - pending);
		if (want <= 0)
			break;
		pull->room = room;
		pull->got = 0;
		pull->last = 0;
		pull->waiting = NULL;
		pull->waiting_streams = NULL;
		horizon = es_read_all_into(es_pull_sink, pull, pulled, want, f->types, f->prefix);
		taken = pull->leased ? pull->leased->nelems : 0;
		if (pull->waiting != NULL)
		{
			for (int i = 0; i < pull->waiting->nelems; i++)
				es_fetch_store_waiting(f, pull->waiting->dvalues[i],
									   pull->waiting_streams->dvalues[i]);
			pending += pull->waiting->nelems;
			es_pull_close(pull, pull->waiting_streams);
		}
		/* the filtered-follower pattern (README) */
		if (pull->got < want)
			return Max(pulled, Max(pull->last, horizon));
		pulled = pull->last;
	}
	return pulled;
}

/* The lease row of what the lane's pull leased, if anything. */
static void
es_fetch_lease_row(EsFetch *f, int32 lane)
{
	const EsSubCatalog *c = f->c;
	Relation	rel;
	TupleTableSlot *slot;
	EsRowWriter writer;
	Datum	   *v;
	bool	   *n;

	if (f->pull.leased == NULL || f->pull.leased->nelems == 0)
		return;
	f->taken += f->pull.leased->nelems;
	rel = table_open(c->leases, RowExclusiveLock);
	slot = table_slot_create(rel, NULL);
	v = slot->tts_values;
	n = slot->tts_isnull;
	ExecClearTuple(slot);
	memset(n, true, slot->tts_tupleDescriptor->natts * sizeof(bool));
	v[c->l_subscription - 1] = PointerGetDatum(f->sub);
	v[c->l_first_position - 1] = f->pull.leased->dvalues[0];
	v[c->l_consumer - 1] = PointerGetDatum(f->consumer);
	v[c->l_consumer_role - 1] = ObjectIdGetDatum(f->caller);
	v[c->l_expires_at - 1] = TimestampTzGetDatum(f->expires);
	/* (the table's CHECK: as many streams as positions, at least one) */
	v[c->l_positions - 1] = es_pull_array(f->pull.leased, INT8OID, f->pull.cxt);
	v[c->l_streams - 1] = es_pull_array(f->pull.leased_streams, TEXTOID, f->pull.cxt);
	v[c->l_lane - 1] = Int32GetDatum(lane);
	n[c->l_subscription - 1] = n[c->l_first_position - 1] = n[c->l_consumer - 1] =
		n[c->l_consumer_role - 1] = n[c->l_expires_at - 1] = n[c->l_positions - 1] =
		n[c->l_streams - 1] = n[c->l_lane - 1] = false;
	ExecStoreVirtualTuple(slot);
	es_rows_begin(&writer, rel);
	es_rows_insert(&writer, slot);
	es_rows_end(&writer);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
}

/*
 * Write a new version of the locked row at "tid" (in "locked", as it is):
 * a lane's pulled position and last fetch -- the subscription's row for
 * one lane, a row of subscription_lanes for more.
 */
static void
es_fetch_cursor(EsFetch *f, Relation rel, ItemPointer tid, TupleTableSlot *locked,
				AttrNumber pulled_att, AttrNumber fetch_att, int64 pulled)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int			natts = slot->tts_tupleDescriptor->natts;
	EsRowWriter writer;

	/* (the subscription's CHECK: pulled_position >= 0; it only grows) */
	Assert(pulled >= 0);
	slot_getallattrs(locked);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, locked->tts_values, natts * sizeof(Datum));
	memcpy(slot->tts_isnull, locked->tts_isnull, natts * sizeof(bool));
	slot->tts_values[pulled_att - 1] = Int64GetDatum(pulled);
	slot->tts_isnull[pulled_att - 1] = false;
	slot->tts_values[fetch_att - 1] = TimestampTzGetDatum(f->now);
	slot->tts_isnull[fetch_att - 1] = false;
	ExecStoreVirtualTuple(slot);
	es_rows_begin(&writer, rel);
	es_rows_update(&writer, tid, slot);
	es_rows_end(&writer);
	ExecDropSingleTupleTableSlot(slot);
}

/* Begin the result: from here on the usual fetch goes to its end. */
static void
es_fetch_begin_result(FunctionCallInfo fcinfo, EsFetch *f)
{
	MemoryContext cxt = CurrentMemoryContext;
	ReturnSetInfo *rsinfo;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	MemoryContextSwitchTo(cxt);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	f->pull.rows = rsinfo->setResult;
	f->pull.rowdesc = rsinfo->setDesc;
}

/* A lane of a subscription of several, as subscription_lanes has it. */
typedef struct EsLaneRow
{
	int32		lane;
	bool		fetched;		/* last_fetch_at is set */
	TimestampTz last_fetch_at;
	ItemPointerData tid;
} EsLaneRow;

/* the order lanes are taken in: fetched longest ago (never first), lane */
static int
es_lane_row_cmp(const void *a, const void *b)
{
	const EsLaneRow *la = (const EsLaneRow *) a;
	const EsLaneRow *lb = (const EsLaneRow *) b;

	if (la->fetched != lb->fetched)
		return la->fetched ? 1 : -1;
	if (la->fetched && la->last_fetch_at != lb->last_fetch_at)
		return la->last_fetch_at < lb->last_fetch_at ? -1 : 1;
	return (la->lane > lb->lane) - (la->lane < lb->lane);
}

/*
 * A subscription of several lanes: each lane no fetch holds, in the order
 * the general way takes them, while the batch has room; a lane found not
 * in the usual state ends the fetch there (or, first, sends it the general
 * way).  Returns how many lanes were served.
 */
static int
es_fetch_lanes(FunctionCallInfo fcinfo, EsFetch *f, int32 lanes)
{
	const EsSubCatalog *c = f->c;
	Relation	rel;
	Relation	index;
	TupleTableSlot *slot;
	EsEventScan scan;
	ScanKeyData key;
	EsLaneRow  *rows;
	int			nrows = 0;
	int			served = 0;

	rel = table_open(c->lanes, RowExclusiveLock);
	index = index_open(c->lanes_pkey, RowExclusiveLock);
	slot = table_slot_create(rel, NULL);
	rows = palloc(lanes * sizeof(EsLaneRow));
	es_sub_text_key(&key, 1, f->sub);
	es_scan_begin(&scan, rel, index, f->snapshot, &key, 1, ForwardScanDirection, slot);
	while (nrows < lanes && es_scan_next(&scan) != NULL)
	{
		bool		lane_null;
		bool		at_null;
		Datum		lane = slot_getattr(slot, c->n_lane, &lane_null);
		Datum		at = slot_getattr(slot, c->n_last_fetch_at, &at_null);

		if (lane_null || DatumGetInt32(lane) < 0 || DatumGetInt32(lane) >= lanes)
			continue;
		rows[nrows].lane = DatumGetInt32(lane);
		rows[nrows].fetched = !at_null;
		rows[nrows].last_fetch_at = at_null ? 0 : DatumGetTimestampTz(at);
		rows[nrows].tid = slot->tts_tid;
		nrows++;
	}
	es_scan_end(&scan);
	qsort(rows, nrows, sizeof(EsLaneRow), es_lane_row_cmp);

	for (int i = 0; i < nrows && f->taken < f->max_count; i++)
	{
		ItemPointerData tid = rows[i].tid;
		bool		isnull;
		Datum		pulled;
		int64		to;

		/* FOR NO KEY UPDATE SKIP LOCKED */
		if (!es_row_lock(rel, &tid, f->snapshot, slot, LockTupleNoKeyExclusive, false))
			continue;
		es_fetch_renew_snapshot(f);
		pulled = slot_getattr(slot, c->n_pulled_position, &isnull);
		if (isnull || !es_fetch_lane_usual(f, rows[i].lane, lanes))
			break;
		if (served == 0)
			es_fetch_begin_result(fcinfo, f);
		to = es_fetch_pull_lane(f, rows[i].lane, lanes, DatumGetInt64(pulled));
		es_fetch_cursor(f, rel, &tid, slot, c->n_pulled_position, c->n_last_fetch_at, to);
		es_fetch_lease_row(f, rows[i].lane);
		served++;
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return served;
}

/*
 * The usual fetch (see above): false, having written nothing, when the
 * subscription is not in the usual state; then the caller takes the
 * general way.  The steps and their order are those of
 * _subscription_fetch_general for that state.
 */
static bool
es_fetch_usual(FunctionCallInfo fcinfo, const EsSubCatalog *c)
{
	EsFetch		f = {0};
	Relation	subs;
	Relation	subs_pkey;
	TupleTableSlot *sslot;
	EsEventScan scan;
	ScanKeyData key;
	ItemPointerData tid;
	bool		usual;
	bool		isnull;
	int32		lanes = 0;
	Interval   *lease_timeout = NULL;
	MemoryContext work;
	MemoryContext oldcxt;

	if (PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		return false;
	f.c = c;
	f.caller = PG_GETARG_OID(0);
	f.sub = PG_GETARG_TEXT_PP(2);
	f.consumer = PG_GETARG_TEXT_PP(3);
	f.max_count = PG_GETARG_INT32(4);
	if (VARSIZE_ANY_EXHDR(f.sub) == 0 || VARSIZE_ANY_EXHDR(f.consumer) == 0 ||
		f.max_count < 1 || f.max_count > 100000)
		return false;
	if (es_store_distributed(es_catalog()))
		return false;

	work = AllocSetContextCreate(CurrentMemoryContext, "eventstore fetch",
								 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(work);

	/* as a statement would: see what earlier ones of this transaction did */
	CommandCounterIncrement();
	f.snapshot = RegisterSnapshot(GetTransactionSnapshot());

	/*
	 * The subscription's row.  Of one lane it is the lane: locked as FOR NO
	 * KEY UPDATE does.  (lanes never changes; of several lanes a fetch
	 * locks lanes, not this row.)
	 */
	subs = table_open(c->subs, RowExclusiveLock);
	subs_pkey = index_open(c->subs_pkey, RowExclusiveLock);
	sslot = table_slot_create(subs, NULL);
	es_sub_text_key(&key, 1, f.sub);
	es_scan_begin(&scan, subs, subs_pkey, f.snapshot, &key, 1, ForwardScanDirection, sslot);
	usual = es_scan_next(&scan) != NULL;
	if (usual)
	{
		/* the filter and the lease timeout never change, nor lanes */
		Datum		d = slot_getattr(sslot, c->s_lanes, &isnull);

		lanes = isnull ? 0 : DatumGetInt32(d);
		d = slot_getattr(sslot, c->s_lease_timeout, &isnull);
		usual = lanes >= 1 && !isnull;
		if (usual)
			lease_timeout = DatumGetIntervalP(datumCopy(d, false, sizeof(Interval)));
		d = slot_getattr(sslot, c->s_event_types, &isnull);
		f.types = isnull ? NULL : DatumGetArrayTypePCopy(d);
		d = slot_getattr(sslot, c->s_stream_prefix, &isnull);
		f.prefix = isnull ? NULL : DatumGetTextPCopy(d);
		tid = sslot->tts_tid;
	}
	es_scan_end(&scan);
	if (usual && lanes == 1)
	{
		usual = es_row_lock(subs, &tid, f.snapshot, sslot, LockTupleNoKeyExclusive, true);
		if (usual)
			es_fetch_renew_snapshot(&f);
	}

	if (usual)
	{
		/* the clock: the lock may have been waited for */
		f.now = GetCurrentTimestamp();
		f.expires = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															TimestampTzGetDatum(f.now),
															IntervalPGetDatum(lease_timeout)));
		f.pull.closed = palloc(sizeof(Datum));
		f.pull.cxt = work;
		usual = es_fetch_consumer_seen(&f, lease_timeout);
	}

	if (usual && lanes == 1)
	{
		Datum		pulled = slot_getattr(sslot, c->s_pulled_position, &isnull);

		usual = !isnull && es_fetch_lane_usual(&f, 0, 1);
		if (usual)
		{
			int64		to;

			es_fetch_begin_result(fcinfo, &f);
			to = es_fetch_pull_lane(&f, 0, 1, DatumGetInt64(pulled));
			es_fetch_cursor(&f, subs, &tid, sslot, c->s_pulled_position,
							c->s_last_fetch_at, to);
			es_fetch_lease_row(&f, 0);
		}
	}
	else if (usual)
	{
		usual = es_fetch_lanes(fcinfo, &f, lanes) > 0;
		/* the events of every lane served, in position order */
		if (usual && f.pull.nkept > 0)
		{
			qsort(f.pull.kept, f.pull.nkept, sizeof(EsKept), es_kept_cmp);
			for (int i = 0; i < f.pull.nkept; i++)
				tuplestore_puttuple(f.pull.rows, f.pull.kept[i].tuple);
		}
	}

	if (f.events != NULL)
	{
		es_rows_end(&f.ewriter);
		ExecDropSingleTupleTableSlot(f.eslot);
		table_close(f.events, NoLock);
	}
	ExecDropSingleTupleTableSlot(sslot);
	index_close(subs_pkey, NoLock);
	table_close(subs, NoLock);
	UnregisterSnapshot(f.snapshot);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(work);
	return usual;
}

/*
 * eventstore._subscription_fetch(caller regrole, caller_search_path text,
 *		subscription text, consumer text, max_count integer)
 *		RETURNS TABLE (global_position bigint, ..., attempt integer)
 *
 * The implementation of subscription_fetch (0.9.0: C, the usual fetch;
 * otherwise _subscription_fetch_general).
 */
PG_FUNCTION_INFO_V1(eventstore_subscription_fetch);
Datum
eventstore_subscription_fetch(PG_FUNCTION_ARGS)
{
	const EsSubCatalog *c;

	es_check_caller(PG_ARGISNULL(0), PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0));
	c = es_subscriptions_catalog();
	if (es_fetch_usual(fcinfo, c))
		return (Datum) 0;
	return es_sub_general(fcinfo, c->general_fetch);
}

/*
 * Is the lease row in "slot" exactly "positions", leased to "consumer" for
 * the role "caller" or one it is a member of?  (The ack's DELETE's
 * condition; a superuser is a member of every role.)
 */
static bool
es_lease_is(const EsSubCatalog *c, TupleTableSlot *slot, text *consumer,
			ArrayType *positions, Oid caller)
{
	bool		isnull;
	Datum		d;
	ArrayType  *held;
	Oid			role;

	d = slot_getattr(slot, c->l_consumer, &isnull);
	if (isnull || !es_text_equal(d, consumer))
		return false;
	d = slot_getattr(slot, c->l_positions, &isnull);
	if (isnull)
		return false;
	held = DatumGetArrayTypeP(d);
	if (ARR_NDIM(held) != 1 || ARR_HASNULL(held) || ARR_ELEMTYPE(held) != INT8OID ||
		ARR_DIMS(held)[0] != ARR_DIMS(positions)[0] ||
		ARR_LBOUND(held)[0] != ARR_LBOUND(positions)[0] ||
		memcmp(ARR_DATA_PTR(held), ARR_DATA_PTR(positions),
			   ARR_DIMS(held)[0] * sizeof(int64)) != 0)
		return false;
	d = slot_getattr(slot, c->l_consumer_role, &isnull);
	if (isnull)
		return false;
	role = DatumGetObjectId(d);
	return role == caller || is_member_of_role(caller, role);
}

/*
 * The usual ack: the positions of one lease row as the fetch returned
 * them, by the consumer and role that fetched them.  Sets *count and
 * returns true having deleted the row; false, having written nothing,
 * otherwise (the general way then looks further).
 */
static bool
es_ack_usual(FunctionCallInfo fcinfo, const EsSubCatalog *c, int32 *count)
{
	Oid			caller = PG_GETARG_OID(0);
	text	   *sub;
	text	   *consumer;
	ArrayType  *positions;
	Snapshot	snapshot;
	Relation	rel;
	Relation	index;
	TupleTableSlot *slot;
	EsEventScan scan;
	ScanKeyData keys[2];
	ItemPointerData tid;
	bool		usual;

	if (PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		return false;
	sub = PG_GETARG_TEXT_PP(2);
	consumer = PG_GETARG_TEXT_PP(3);
	positions = PG_GETARG_ARRAYTYPE_P(4);
	if (VARSIZE_ANY_EXHDR(sub) == 0 || VARSIZE_ANY_EXHDR(consumer) == 0 ||
		ARR_NDIM(positions) != 1 || ARR_HASNULL(positions) ||
		ARR_ELEMTYPE(positions) != INT8OID || ARR_DIMS(positions)[0] < 1)
		return false;

	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	rel = table_open(c->leases, RowExclusiveLock);
	index = index_open(c->leases_pkey, RowExclusiveLock);
	slot = table_slot_create(rel, NULL);
	es_sub_text_key(&keys[0], 1, sub);
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid, InvalidOid,
						   F_INT8EQ, Int64GetDatum(((int64 *) ARR_DATA_PTR(positions))[0]));
	es_scan_begin(&scan, rel, index, snapshot, keys, 2, ForwardScanDirection, slot);
	usual = es_scan_next(&scan) != NULL && es_lease_is(c, slot, consumer, positions, caller);
	if (usual)
		tid = slot->tts_tid;
	es_scan_end(&scan);
	/* locked, as the DELETE would, and still the same (READ COMMITTED) */
	usual = usual && es_row_lock(rel, &tid, snapshot, slot, LockTupleExclusive, true) &&
		es_lease_is(c, slot, consumer, positions, caller);
	if (usual)
	{
		simple_table_tuple_delete(rel, &tid, snapshot);
		*count = ARR_DIMS(positions)[0];
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	UnregisterSnapshot(snapshot);
	return usual;
}

/*
 * eventstore._subscription_ack(caller regrole, caller_search_path text,
 *		subscription text, consumer text, positions bigint[]) RETURNS integer
 *
 * The implementation of subscription_ack (0.9.0: C, the usual ack;
 * otherwise _subscription_ack_general).
 */
PG_FUNCTION_INFO_V1(eventstore_subscription_ack);
Datum
eventstore_subscription_ack(PG_FUNCTION_ARGS)
{
	const EsSubCatalog *c;
	int32		count;

	es_check_caller(PG_ARGISNULL(0), PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0));
	c = es_subscriptions_catalog();
	if (es_ack_usual(fcinfo, c, &count))
		PG_RETURN_INT32(count);
	return es_sub_general(fcinfo, c->general_ack);
}
