/*-------------------------------------------------------------------------
 *
 * subscription.c
 *	  The pull of a durable subscription's fetch: the events read from the
 *	  global log sorted, as they are read, into those the fetch leases and
 *	  those it leaves waiting.
 *
 * Durable subscriptions are PL/pgSQL (sql/install/subscriptions.sql).  A
 * fetch that has room for more events than its subscription has ready pulls
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

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

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
} EsPull;

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
