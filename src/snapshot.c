/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  Stored snapshots of folded state: the tag that names a fold, the
 *	  lookup of the newest usable snapshot and the insert of a new one, and
 *	  the rule for when a stream may have snapshots at all.
 *
 * A snapshot stores a folded state as text (the state type's output
 * function), with a tag naming the fold: a hash of the evolve function's
 * signature and source, the state type and the initial state, so replacing
 * the evolve function makes older snapshots unusable rather than wrong.
 * States are written and read as text under fixed settings
 * (es_state_io_begin), so that a session reads back exactly what another
 * one wrote.  The folds themselves are in fold.c; this file knows nothing
 * of them but the state they hand over.
 *
 * src/snapshot.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "eventstore.h"

/* The query that finds a load's snapshot, prepared once per backend. */
static SPIPlanPtr es_snapshot_lookup_plan = NULL;

/*
 * The text of a value depends on settings (DateStyle, IntervalStyle,
 * extra_float_digits, TimeZone): a date written under 'SQL, DMY' reads
 * back as another date under 'SQL, MDY', a float written with
 * extra_float_digits = 0 loses bits, and a tag computed from a timestamptz
 * would differ between time zones.  States and initial states go to and
 * from text under fixed settings; es_state_io_end() restores the
 * session's.
 */
static int
es_state_io_begin(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("datestyle", "ISO", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "3", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("timezone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

static void
es_state_io_end(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

/*
 * The tag under which a fold's snapshots are stored: SHA-256 of what
 * decides the state -- the evolve function's qualified signature and
 * source (for an SQL-standard body, the parsed body), the state type and
 * the initial state -- and of the caller's explicit tag, if any.  An
 * explicit tag only tells versions of a fold apart (a C evolve, or one
 * whose callees change); it can never name another fold's snapshots, so a
 * snapshot one role takes can never change what another role's fold
 * returns.
 */
static char *
es_snapshot_tag(Oid evolve, Oid state_type, Datum initial, bool initial_isnull,
				const char *explicit_tag)
{
	StringInfoData buf;
	HeapTuple	tuple;
	Datum		src;
	bool		isnull;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	pg_cryptohash_ctx *ctx;

	initStringInfo(&buf);
	/* qualified names: the tag must not depend on the search_path */
	appendStringInfo(&buf, "%s|%s|", format_procedure_qualified(evolve),
					 format_type_be_qualified(state_type));
	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(evolve));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("evolve function %u does not exist", evolve)));
	src = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_prosrc, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(src));
	/* RETURN ... and BEGIN ATOMIC bodies leave prosrc empty */
	src = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_prosqlbody, &isnull);
	if (!isnull)
	{
		appendStringInfoChar(&buf, '|');
		appendStringInfoString(&buf, TextDatumGetCString(src));
	}
	ReleaseSysCache(tuple);
	appendStringInfoChar(&buf, '|');
	if (initial_isnull)
		appendStringInfoString(&buf, "NULL");
	else
	{
		Oid			typoutput;
		bool		typisvarlena;
		int			nestlevel;
		char	   *text;

		getTypeOutputInfo(state_type, &typoutput, &typisvarlena);
		nestlevel = es_state_io_begin();
		text = OidOutputFunctionCall(typoutput, initial);
		es_state_io_end(nestlevel);
		/* length first: no initial state can run into the explicit tag */
		appendStringInfo(&buf, "%zu:%s", strlen(text), text);
	}
	if (explicit_tag != NULL)
		appendStringInfo(&buf, "|tag:%s", explicit_tag);

	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (uint8 *) buf.data, buf.len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	hex_encode((char *) digest, sizeof(digest), hex);
	hex[PG_SHA256_DIGEST_LENGTH * 2] = '\0';
	pfree(buf.data);
	return hex;
}

/*
 * Snapshots are read and written as the owner of eventstore.snapshots:
 * whoever may call the functions needs no privileges on the table, as for
 * the events table.  Only the extension's own queries run as the owner:
 * states are converted from and to text (which may run a domain's checks)
 * as the caller, outside those queries.
 */
static Oid
es_snapshots_owner(void)
{
	const EsCatalog *cat = es_catalog();
	Oid			relid = get_relname_relid("snapshots", cat->namespace_oid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"eventstore.snapshots\" does not exist")));
	return es_relation_owner(relid);
}


/*
 * The snapshot tag of a fold from a function's snapshot_tag argument
 * (tag_arg < 0 or NULL: the fold's own tag alone).
 */
char *
es_snapshot_tag_arg(FunctionCallInfo fcinfo, int tag_arg, Oid evolve, Oid state_type,
					Datum initial, bool initial_isnull)
{
	char	   *explicit_tag = NULL;

	if (tag_arg >= 0 && !PG_ARGISNULL(tag_arg))
	{
		explicit_tag = text_to_cstring(PG_GETARG_TEXT_PP(tag_arg));
		if (explicit_tag[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("snapshot_tag must not be empty")));
	}
	return es_snapshot_tag(evolve, state_type, initial, initial_isnull, explicit_tag);
}

/*
 * Whether a stream may have snapshots.  When its settings (max count, max
 * age, truncate before) hide events, which events a fold sees changes
 * without an append (a setting changes, the window slides, time passes),
 * and a snapshot, which holds the events folded when it was taken, can be
 * neither trusted nor taken.
 */
bool
es_snapshots_usable(const EsStreamView *view)
{
	const EsStreamRules *r = &view->rules;

	return !(r->found && (r->max_count > 0 || r->truncate_before > 0 || r->has_max_age));
}

/*
 * The newest snapshot of the stream with this tag and row->state_type at
 * or below the target, as "snapshot" sees it, into row (row->version 0:
 * none).  The state is read back in the current memory context.
 */
void
es_snapshot_find(text *stream_id, const char *tag, const EsTarget *target,
				 Snapshot snapshot, EsSnapshotRow *row)
{
	Datum		args[5];
	Oid			argtypes[5] = {TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID, REGTYPEOID};
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	char	   *state_text = NULL;
	MemoryContext callercxt = CurrentMemoryContext;
	EsGuard		guard;
	int			ret;

	row->version = 0;
	row->state = (Datum) 0;
	row->isnull = true;
	row->last_event_at = 0;

	args[0] = PointerGetDatum(stream_id);
	args[1] = CStringGetTextDatum(tag);
	args[2] = Int64GetDatum(target->to_version);
	args[3] = TimestampTzGetDatum(target->as_of);
	if (!target->has_as_of)
		nulls[3] = 'n';
	args[4] = ObjectIdGetDatum(row->state_type);

	/*
	 * An explicit tag may be shared by folds of different state types: a
	 * snapshot is only ever read as the type it was written as.
	 */
	es_spi_begin(&guard, es_snapshots_owner());
	if (es_snapshot_lookup_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare("SELECT stream_version, state, last_event_at"
									   "  FROM eventstore.snapshots"
									   " WHERE stream_id OPERATOR(pg_catalog.=) $1"
									   "   AND tag OPERATOR(pg_catalog.=) $2"
									   "   AND stream_version OPERATOR(pg_catalog.<=) $3"
									   "   AND ($4 IS NULL OR last_event_at OPERATOR(pg_catalog.<=) $4)"
									   "   AND state_type OPERATOR(pg_catalog.=) $5"
									   " ORDER BY stream_version DESC LIMIT 1",
									   5, argtypes);

		if (plan == NULL)
			elog(ERROR, "could not prepare the snapshot lookup: %s",
				 SPI_result_code_string(SPI_result));
		/* the plan cache re-plans it if the extension is re-created */
		SPI_keepplan(plan);
		es_snapshot_lookup_plan = plan;
	}
	ret = SPI_execute_snapshot(es_snapshot_lookup_plan, args, nulls, snapshot,
							   InvalidSnapshot, true, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read eventstore.snapshots: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext oldcxt = MemoryContextSwitchTo(callercxt);

		row->version = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		d = SPI_getbinval(tup, desc, 2, &isnull);
		if (!isnull)
			state_text = TextDatumGetCString(d);
		row->last_event_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
		MemoryContextSwitchTo(oldcxt);
	}
	es_spi_end(&guard);

	/* as the caller, outside the query: the input may run a domain's checks */
	if (row->version > 0 && state_text != NULL)
	{
		Oid			typinput;
		Oid			typioparam;
		int			nestlevel;

		getTypeInputInfo(row->state_type, &typinput, &typioparam);
		nestlevel = es_state_io_begin();
		row->state = OidInputFunctionCall(typinput, state_text, typioparam, -1);
		es_state_io_end(nestlevel);
		row->isnull = false;
	}
}

/* Store a folded state (in the current transaction). */
void
es_snapshot_store(text *stream_id, const char *tag, const EsSnapshotRow *row)
{
	Datum		args[6];
	Oid			argtypes[6] = {TEXTOID, TEXTOID, INT8OID, REGTYPEOID, TEXTOID, TIMESTAMPTZOID};
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int			ret;
	EsGuard		guard;

	args[0] = PointerGetDatum(stream_id);
	args[1] = CStringGetTextDatum(tag);
	args[2] = Int64GetDatum(row->version);
	args[3] = ObjectIdGetDatum(row->state_type);
	if (row->isnull)
	{
		args[4] = (Datum) 0;
		nulls[4] = 'n';
	}
	else
	{
		Oid			typoutput;
		bool		typisvarlena;
		int			nestlevel;

		getTypeOutputInfo(row->state_type, &typoutput, &typisvarlena);
		nestlevel = es_state_io_begin();
		args[4] = CStringGetTextDatum(OidOutputFunctionCall(typoutput, row->state));
		es_state_io_end(nestlevel);
	}
	args[5] = TimestampTzGetDatum(row->last_event_at);

	es_spi_begin(&guard, es_snapshots_owner());
	ret = SPI_execute_with_args("INSERT INTO eventstore.snapshots"
								" (stream_id, tag, stream_version, state_type, state, last_event_at)"
								" VALUES ($1, $2, $3, $4, $5, $6)"
								" ON CONFLICT (stream_id, tag, state_type, stream_version) DO NOTHING",
								6, argtypes, args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not store a snapshot: %s", SPI_result_code_string(ret));
	es_spi_end(&guard);
}
