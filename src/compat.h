/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL major versions eventstore
 *	  builds against (15, 17 and 18), in one place.
 *
 * The rest of src/ is written against one API, the names below; nothing
 * outside this file tests PG_VERSION_NUM.  Each entry says in which
 * version the server's API changed, so that an entry can be dropped with
 * the last version that needs it.
 *
 * src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENTSTORE_COMPAT_H
#define EVENTSTORE_COMPAT_H

#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "catalog/pg_database_d.h"
#include "catalog/pg_proc_d.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "nodes/parsenodes.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/fmgrprotos.h"
#include "utils/rel.h"
#include "utils/uuid.h"

#if PG_VERSION_NUM < 150000
#error "eventstore needs PostgreSQL 15 or later"
#endif

/*
 * 18 replaced pg_attribute_noreturn(), written after a declaration, by
 * pg_noreturn, written before it (C11 _Noreturn).  GCC and clang take the
 * attribute in front as well.
 */
#if PG_VERSION_NUM < 180000
#define pg_noreturn pg_attribute_noreturn()
#endif

/*
 * The index of a backend's PGPROC, which the horizon's slots are indexed
 * by: MyProc->pgprocno until 17 made it MyProcNumber (a ProcNumber, the
 * former BackendId merged into it).
 */
#if PG_VERSION_NUM >= 170000
#define es_my_proc_number()		((int) MyProcNumber)
#else
#define es_my_proc_number()		(MyProc->pgprocno)
#endif

/*
 * 16 replaced the per-object-class pg_*_aclcheck() and pg_*_ownercheck()
 * by object_aclcheck() and object_ownercheck().
 */
static inline AclResult
es_proc_aclcheck(Oid fn, Oid role, AclMode mode)
{
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(ProcedureRelationId, fn, role, mode);
#else
	return pg_proc_aclcheck(fn, role, mode);
#endif
}

static inline bool
es_database_ownercheck(Oid dboid, Oid role)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(DatabaseRelationId, dboid, role);
#else
	return pg_database_ownercheck(dboid, role);
#endif
}

/*
 * The range table of an executor state that writes one relation, as
 * logical replication's apply worker builds it: 16 moved the permissions
 * out of the RangeTblEntry into a list of RTEPermissionInfo (none needed:
 * nothing checks permissions on this state), and 18 added the set of range
 * table entries that survived pruning at plan time (all of them, here).
 */
static inline void
es_init_range_table(EState *estate, Relation rel, LOCKMODE lockmode)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = lockmode;
#if PG_VERSION_NUM >= 180000
	ExecInitRangeTable(estate, list_make1(rte), NIL, bms_make_singleton(1));
#elif PG_VERSION_NUM >= 160000
	ExecInitRangeTable(estate, list_make1(rte), NIL);
#else
	ExecInitRangeTable(estate, list_make1(rte));
#endif
}

/*
 * Index entries for a new row (not an update): 16 added onlySummarizing,
 * for HOT updates that touch only summarizing indexes.
 */
static inline List *
es_insert_index_tuples(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
					   bool noDupErr, bool *specConflict, List *arbiterIndexes)
{
#if PG_VERSION_NUM >= 160000
	return ExecInsertIndexTuples(rri, slot, estate, false, noDupErr, specConflict,
								 arbiterIndexes, false);
#else
	return ExecInsertIndexTuples(rri, slot, estate, false, noDupErr, specConflict,
								 arbiterIndexes);
#endif
}

/*
 * The index entries of a row inserted, or (update) of a new version of a
 * row whose indexed columns changed; since 16 an update may need only the
 * summarizing ones (BRIN).
 */
#if PG_VERSION_NUM >= 160000
#define ES_UPDATE_INDEXES TU_UpdateIndexes
#define es_update_needs_indexes(u)	((u) != TU_None)
#define es_update_only_summarizing(u)	((u) == TU_Summarizing)
#else
#define ES_UPDATE_INDEXES bool
#define es_update_needs_indexes(u)	(u)
#define es_update_only_summarizing(u)	false
#endif

static inline List *
es_insert_index_tuples_update(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
							  bool update, bool only_summarizing)
{
#if PG_VERSION_NUM >= 160000
	return ExecInsertIndexTuples(rri, slot, estate, update, false, NULL, NIL,
								 only_summarizing);
#else
	Assert(!only_summarizing);
	return ExecInsertIndexTuples(rri, slot, estate, update, false, NULL, NIL);
#endif
}

/*
 * An index scan: 18 added the instrumentation EXPLAIN ANALYZE fills in
 * (none here).
 */
static inline IndexScanDesc
es_index_beginscan(Relation heap, Relation index, Snapshot snapshot,
				   int nkeys, int norderbys)
{
#if PG_VERSION_NUM >= 180000
	return index_beginscan(heap, index, snapshot, NULL, nkeys, norderbys);
#else
	return index_beginscan(heap, index, snapshot, nkeys, norderbys);
#endif
}

/*
 * A version 7 UUID for an event appended without an id.  18 generates them
 * itself (the SQL function uuidv7()), with a sub-millisecond counter: the
 * ids a backend generates strictly increase, within a millisecond too.
 * Before 18 this returns false and the caller builds one (append.c):
 * ordered to the millisecond, random within it.
 */
static inline bool
es_builtin_uuidv7(pg_uuid_t *uuid)
{
#if PG_VERSION_NUM >= 180000
	LOCAL_FCINFO(fcinfo, 0);
	pg_uuid_t  *made;

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	made = DatumGetUUIDP(uuidv7(fcinfo));
	*uuid = *made;
	pfree(made);
	return true;
#else
	(void) uuid;
	return false;
#endif
}

/*
 * DatumGetHeapTupleHeader(), without calling it: the headers of 17.12 and
 * 18 declare it a function of the server, which the servers of 17.10 and
 * 18 do not export (their postmasters refuse a library that calls it).
 * The same detoasting, through pg_detoast_datum, which every server has.
 */
#define es_datum_get_tuple_header(d) \
	((HeapTupleHeader) PG_DETOAST_DATUM(d))

#endif							/* EVENTSTORE_COMPAT_H */
