/*-------------------------------------------------------------------------
 *
 * command.c
 *	  Command handling: eventstore.handle_command loads a stream's state
 *	  (fold.c), asks the user's decide function for the events a command
 *	  produces, appends them with the loaded version as the expected one
 *	  (append.c) and, when a concurrent append wins, loads and decides
 *	  again.
 *
 * src/command.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "eventstore.h"

static void
es_check_decide(Oid decide, Oid state_type)
{
	if (!es_function_fits(decide, "decide function", state_type,
						  JSONBOID, InvalidOid, JSONBOID))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("decide function %s must take (jsonb, %s) and return jsonb",
						format_procedure(decide), format_type_be(state_type))));
	es_check_user_function(decide, GetUserId(), "decide function");
}

/*
 * eventstore.handle_command(stream_id, decide, command jsonb, evolve,
 *		initial anyelement, max_retries, use_snapshots, snapshot_tag,
 *		OUT version bigint, OUT state anyelement, OUT appended integer)
 *
 * Load the state (snapshot + tail), call decide(command, state) for the
 * events to append (a JSON array as append_events takes), append them with
 * the loaded version as the expected version, and fold them into the state.
 * On a version conflict (a concurrent append) load again and decide again,
 * at most max_retries times; then the conflict (ST001) is raised.
 */
PG_FUNCTION_INFO_V1(eventstore_handle_command);
Datum
eventstore_handle_command(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat;
	EsLoadArgs	a;
	Oid			decide;
	Jsonb	   *command;
	int			max_retries;
	FmgrInfo	decide_flinfo;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	EsFold		f;
	int64		appended = 0;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	/* arguments: 0 stream_id, 1 decide, 2 command, 3 evolve, 4 initial */
	a.stream_id = es_writable_stream_id_arg(fcinfo, 0);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("decide and evolve must not be NULL")));
	decide = PG_GETARG_OID(1);
	es_arg_not_null(fcinfo, 2, "command");
	command = PG_GETARG_JSONB_P(2);
	a.evolve = PG_GETARG_OID(3);
	es_fold_args(fcinfo, -1, 4, &a);
	max_retries = PG_ARGISNULL(5) ? 3 : PG_GETARG_INT32(5);
	if (max_retries < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_retries must not be negative")));
	a.target.to_version = PG_INT64_MAX;
	a.target.has_as_of = false;
	a.target.as_of = 0;
	a.tag = NULL;
	if (PG_ARGISNULL(6) || PG_GETARG_BOOL(6))
		a.tag = es_snapshot_tag_arg(fcinfo, 7, a.evolve, a.state_type,
									a.initial, a.initial_isnull);

	es_check_decide(decide, a.state_type);
	cat = es_stream_catalog(es_catalog(), a.stream_id);
	es_fmgr_info_typed(decide, JSONBOID, JSONBOID, a.state_type, &decide_flinfo);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	for (int attempt = 0;; attempt++)
	{
		volatile bool conflict = false;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			Snapshot	snapshot;
			int64		loaded;
			Datum		events;
			LOCAL_FCINFO(dfcinfo, 2);

			/*
			 * The first attempt sees what the caller's statement sees, and
			 * what the statement itself has written so far (an earlier
			 * command on the same stream): the append checks the version
			 * against those writes too, and would otherwise report a
			 * conflict with the caller's own transaction.  A retry must see
			 * the append that beat it.
			 */
			if (attempt == 0 || IsolationUsesXactSnapshot())
			{
				CommandCounterIncrement();
				PushCopiedSnapshot(GetActiveSnapshot());
				UpdateActiveSnapshotCommandId();
				snapshot = RegisterSnapshot(GetActiveSnapshot());
				PopActiveSnapshot();
			}
			else
				snapshot = RegisterSnapshot(GetLatestSnapshot());
			(void) es_load(&f, cat, &a, snapshot, NULL);
			UnregisterSnapshot(snapshot);
			loaded = f.version;

			InitFunctionCallInfoData(*dfcinfo, &decide_flinfo, 2, InvalidOid, NULL, NULL);
			dfcinfo->args[0].value = JsonbPGetDatum(command);
			dfcinfo->args[0].isnull = false;
			dfcinfo->args[1].value = f.state;
			dfcinfo->args[1].isnull = f.isnull;
			events = FunctionCallInvoke(dfcinfo);
			if (dfcinfo->isnull)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("decide function %s returned NULL", format_procedure(decide)),
						 errhint("Return '[]' to append nothing.")));

			appended = es_append_events_jsonb(a.stream_id, DatumGetJsonbP(events),
											  true, loaded);
			if (appended > 0)
			{
				/* fold what was appended: our own inserts, seen after a CCI */
				EsStreamView view;

				CommandCounterIncrement();
				snapshot = RegisterSnapshot(GetLatestSnapshot());
				es_stream_view(cat, a.stream_id, snapshot, false, &view);
				es_fold_stream(&f, cat, a.stream_id, &a.target, snapshot, &view);
				UnregisterSnapshot(snapshot);
			}
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			/*
			 * Leave the subtransaction before anything else: an error
			 * thrown with it still open would leave the caller's
			 * transaction in an aborted subtransaction.
			 */
			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;

			if (edata->sqlerrcode != ERRCODE_ES_WRONG_EXPECTED_VERSION ||
				attempt >= max_retries || IsolationUsesXactSnapshot())
				ReThrowError(edata);
			FreeErrorData(edata);
			conflict = true;
		}
		PG_END_TRY();

		if (!conflict)
			break;
		CHECK_FOR_INTERRUPTS();
	}

	values[0] = Int64GetDatum(f.version);
	values[1] = f.state;
	nulls[1] = f.isnull;
	values[2] = Int64GetDatum(appended);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
