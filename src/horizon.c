/*-------------------------------------------------------------------------
 *
 * horizon.c
 *	  The global-log horizon: the highest position up to which every event
 *	  is decided (committed and visible, or never to be committed).
 *
 * Positions come from a sequence, so they are handed out in increasing
 * order, but the transactions that draw them commit in any order.  Readers
 * of the global log must not return a position q while a transaction that
 * drew some p < q can still commit, or a follower that continues "after q"
 * would skip p forever.
 *
 * The protocol, with all state in shared memory (EsShared):
 *
 * Appender, once per transaction, before drawing its first position:
 *		slot.min_position = drawn_max + 1		(a lower bound: nextval only
 *												 returns values above any
 *												 value it returned before)
 *		full barrier
 *		... nextval(), insert ...
 *		drawn_max = max(drawn_max, last drawn)	(atomic, before commit)
 *		at commit/abort (after the commit is visible): slot.min_position = 0
 *
 * Reader (eventstore.read_all in READ COMMITTED):
 *		D = drawn_max
 *		full barrier
 *		M = min over this database's non-zero slots of min_position
 *		horizon = min(D, M - 1)
 *		take a new snapshot; return visible events with position <= horizon
 *
 * Why it is safe: take p <= horizon <= D drawn by transaction T.  D was
 * published after p was drawn, and T wrote its slot before drawing p, so the
 * reader's slot scan (after reading D) sees T's slot unless T has already
 * finished.  If T is still in flight, M <= p, so p > horizon: contradiction.
 * So T has finished before the scan; if it committed, the snapshot taken
 * after the scan sees p.  Positions drawn after the reader read D are > D.
 *
 * Only transactions that append take part, so a long-running transaction
 * that never appended (even one holding an xid) never holds readers back.
 *
 * Readers that cannot use the live registry -- hot standbys, which know
 * nothing of the primary's in-flight appenders, and REPEATABLE READ /
 * SERIALIZABLE transactions, whose snapshot predates the horizon -- use the
 * horizon the background worker records in eventstore.recorded_horizon instead.
 * The worker writes it after computing it, so every commit of a position at
 * or below it precedes the row's commit in the WAL: any snapshot, on the
 * primary or on a standby, that sees the row also sees those commits.
 *
 * src/horizon.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_sequence.h"
#include "commands/sequence.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/guc.h"

#include "eventstore.h"

EsShared   *es_shared = NULL;

/* GUC: how many databases can use eventstore at once (shared memory). */
static int	es_max_databases = 16;

/* This backend's registration in the current transaction. */
static bool es_xact_registered = false;
static EsDatabaseState *es_xact_db = NULL;
static EsDatabaseState *es_xact_wake = NULL;	/* wake its worker at commit */
static bool es_xact_wake_maintenance = false;	/* ... for retention/archiving */

/* This backend's database entry, once found. */
static EsDatabaseState *es_my_db = NULL;

static int
es_nslots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
es_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(EsShared));

	size = add_size(size, MAXALIGN(mul_size(es_max_databases, sizeof(EsDatabaseState))));
	size = add_size(size, mul_size(es_nslots(), sizeof(EsBackendSlot)));
	return size;
}

/* shmem_request_hook: called in the postmaster once MaxBackends is known. */
void
es_horizon_request_shmem(void)
{
	RequestAddinShmemSpace(es_shmem_size());
	RequestNamedLWLockTranche("eventstore", 1);
}

static void
es_xact_callback(XactEvent event, void *arg)
{
	if (es_shared == NULL)
		return;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (es_xact_registered)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that appended events"),
						 errdetail("A prepared transaction would hold back every reader of the global log until it is committed or rolled back."),
						 errhint("On a store distributed with Citus, which prepares a transaction that wrote on several nodes, append in one transaction only to streams stored on one node.")));
			break;

		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (es_xact_registered)
			{
				/*
				 * The commit is already visible to new snapshots here
				 * (ProcArrayEndTransaction has run), so readers may now pass
				 * our positions.
				 */
				pg_atomic_write_u64(&es_shared->slots[es_my_proc_number()].min_position, 0);
				es_xact_registered = false;
				if (es_xact_db->worker_latch != NULL)
					SetLatch(es_xact_db->worker_latch);
			}
			if (es_xact_wake != NULL)
			{
				if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
				{
					if (es_xact_wake_maintenance)
						pg_atomic_write_u32(&es_xact_wake->maintenance_wanted, 1);
					if (es_xact_wake->worker_latch != NULL)
						SetLatch(es_xact_wake->worker_latch);
					/* a projection to run: the projector's business */
					if (es_xact_wake->projector_latch != NULL)
						SetLatch(es_xact_wake->projector_latch);
				}
				es_xact_wake = NULL;
				es_xact_wake_maintenance = false;
			}
			break;

		default:
			break;
	}
}

/* Backend exit: never leave a registration behind. */
static void
es_horizon_exit(int code, Datum arg)
{
	if (es_xact_registered && MyProc != NULL)
	{
		pg_atomic_write_u64(&es_shared->slots[es_my_proc_number()].min_position, 0);
		es_xact_registered = false;
	}
}

/*
 * Zero a database's statistics (stats.c reads and adds to them), and stamp
 * the time: at server start (init: the atomics are new), when an entry is
 * given to another database, and by eventstore.reset_stats().  EsStats is
 * made of 64-bit atomics only.
 */
StaticAssertDecl(sizeof(EsStats) % sizeof(pg_atomic_uint64) == 0,
				 "EsStats must consist of pg_atomic_uint64 only");

void
es_stats_zero(EsStats *stats, bool init)
{
	pg_atomic_uint64 *words = (pg_atomic_uint64 *) stats;

	for (size_t i = 0; i < sizeof(EsStats) / sizeof(pg_atomic_uint64); i++)
	{
		if (init)
			pg_atomic_init_u64(&words[i], 0);
		else
			pg_atomic_write_u64(&words[i], 0);
	}
	pg_atomic_write_u64(&stats->reset_at, (uint64) GetCurrentTimestamp());
}

/* shmem_startup_hook */
void
es_horizon_shmem_init(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	es_shared = ShmemInitStruct("eventstore", es_shmem_size(), &found);
	if (!found)
	{
		char	   *base = (char *) es_shared;

		memset(es_shared, 0, es_shmem_size());
		es_shared->lock = &(GetNamedLWLockTranche("eventstore"))->lock;
		es_shared->max_databases = es_max_databases;
		es_shared->nslots = es_nslots();
		es_shared->databases = (EsDatabaseState *) (base + MAXALIGN(sizeof(EsShared)));
		es_shared->slots = (EsBackendSlot *)
			(base + MAXALIGN(sizeof(EsShared)) +
			 MAXALIGN(mul_size(es_max_databases, sizeof(EsDatabaseState))));
		for (int i = 0; i < es_shared->max_databases; i++)
		{
			pg_atomic_init_u64(&es_shared->databases[i].drawn_max, 0);
			pg_atomic_init_u32(&es_shared->databases[i].maintenance_wanted, 0);
			pg_atomic_init_u64(&es_shared->databases[i].published, 0);
			pg_atomic_init_u32(&es_shared->databases[i].projector_idle, 0);
			es_stats_zero(&es_shared->databases[i].stats, true);
		}
		for (int i = 0; i < es_shared->nslots; i++)
		{
			EsBackendSlot *slot = &es_shared->slots[i];

			pg_atomic_init_u64(&slot->min_position, 0);
			pg_atomic_init_u64(&slot->xact_start, 0);
			pg_atomic_init_u32(&slot->progress.changes, 0);
			pg_atomic_init_u64(&slot->progress.done, 0);
			pg_atomic_init_u64(&slot->progress.total, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* _PG_init, when preloading: backends inherit the callback. */
void
es_horizon_register_callbacks(void)
{
	RegisterXactCallback(es_xact_callback, NULL);
}

/*
 * The highest position the sequence has handed out: every position at or
 * below it has been drawn.  Read from the sequence's page, as nextval does,
 * so no privilege on the sequence is needed.
 */
static int64
es_sequence_last_drawn(Oid seq_relid)
{
	Relation	seqrel = relation_open(seq_relid, AccessShareLock);
	Buffer		buf;
	Page		page;
	ItemId		lp;
	HeapTupleHeader tuple;
	Form_pg_sequence_data seq;
	int64		last;

	if (seqrel->rd_rel->relkind != RELKIND_SEQUENCE)
		elog(ERROR, "\"%s\" is not a sequence", RelationGetRelationName(seqrel));

	buf = ReadBuffer(seqrel, 0);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	lp = PageGetItemId(page, FirstOffsetNumber);
	if (!ItemIdIsNormal(lp))
		elog(ERROR, "sequence \"%s\" has no tuple", RelationGetRelationName(seqrel));
	tuple = (HeapTupleHeader) PageGetItem(page, lp);
	seq = (Form_pg_sequence_data) ((char *) tuple + tuple->t_hoff);
	last = seq->is_called ? seq->last_value : seq->last_value - 1;
	UnlockReleaseBuffer(buf);
	relation_close(seqrel, AccessShareLock);

	return Max(last, 0);
}

/*
 * Find (or, with create, claim) the shared entry of a database and make sure
 * drawn_max is initialised from the extension's current sequence.  Called
 * before a backend registers or computes a horizon, so initialisation always
 * precedes any registration in the database.
 */
EsDatabaseState *
es_database_state(const EsCatalog *cat, Oid dboid, bool create)
{
	EsDatabaseState *db = NULL;
	EsDatabaseState *unused = NULL;

	if (dboid == MyDatabaseId && es_my_db != NULL &&
		es_my_db->dboid == dboid && es_my_db->initialized &&
		es_my_db->seq_relid == cat->position_seq_relid)
	{
		pg_read_barrier();
		return es_my_db;
	}

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_shared->max_databases; i++)
	{
		EsDatabaseState *entry = &es_shared->databases[i];

		if (entry->dboid == dboid)
		{
			db = entry;
			break;
		}
		if (entry->dboid == InvalidOid && unused == NULL)
			unused = entry;
	}
	if (db == NULL)
	{
		if (!create || unused == NULL)
		{
			LWLockRelease(es_shared->lock);
			if (!create)
				return NULL;
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many databases use eventstore"),
					 errdetail("eventstore.max_databases is %d.", es_shared->max_databases),
					 errhint("Raise eventstore.max_databases and restart the server.")));
		}
		db = unused;
		db->dboid = dboid;
		db->initialized = false;
		db->worker_wanted = false;
		db->worker_pid = 0;
		db->worker_latch = NULL;
		db->projector_pid = 0;
		db->projector_latch = NULL;
		pg_atomic_write_u64(&db->published, 0);
		pg_atomic_write_u32(&db->projector_idle, 0);
		es_stats_zero(&db->stats, false);
	}
	if (!db->initialized || db->seq_relid != cat->position_seq_relid)
	{
		/*
		 * First use since startup, or the extension was re-created: no
		 * transaction of this database can hold an unregistered position, so
		 * the sequence tells exactly what has been drawn.
		 */
		pg_atomic_write_u64(&db->drawn_max,
							(uint64) es_sequence_last_drawn(cat->position_seq_relid));
		db->seq_relid = cat->position_seq_relid;
		pg_write_barrier();
		db->initialized = true;
	}
	LWLockRelease(es_shared->lock);

	if (dboid == MyDatabaseId)
		es_my_db = db;
	return db;
}

/*
 * Called by an append before it draws a position: publish a lower bound of
 * the positions this transaction will draw.  Once per transaction.
 */
void
es_horizon_enter(const EsCatalog *cat)
{
	EsDatabaseState *db;
	EsBackendSlot *slot;

	static bool exit_callback_registered = false;

	if (es_shared == NULL || es_xact_registered)
		return;

	if (!exit_callback_registered)
	{
		before_shmem_exit(es_horizon_exit, (Datum) 0);
		exit_callback_registered = true;
	}

	db = es_database_state(cat, MyDatabaseId, true);
	slot = &es_shared->slots[es_my_proc_number()];

	slot->dboid = MyDatabaseId;
	pg_atomic_write_u64(&slot->xact_start, (uint64) GetCurrentTransactionStartTimestamp());
	pg_write_barrier();
	pg_atomic_write_u64(&slot->min_position, pg_atomic_read_u64(&db->drawn_max) + 1);
	pg_memory_barrier();

	es_xact_registered = true;
	es_xact_db = db;

	if (!db->worker_wanted)
		es_worker_request(db);
}

/*
 * Error out (55000) unless the library was preloaded, which is what sets up
 * the shared memory: "what" (e.g. "eventstore.read_all()") is the subject
 * of the message, "detail" why it needs it (or NULL).  The one wording of
 * this error for everything that cannot work without shared memory.
 */
void
es_require_preload(const char *what, const char *detail)
{
	if (es_shared != NULL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%s requires eventstore to be loaded via shared_preload_libraries", what),
			 detail != NULL ? errdetail("%s", detail) : 0,
			 errhint("Add 'eventstore' to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Make sure this database has a worker and a projector, and wake them when
 * the transaction commits: they have work the transaction prepared for
 * them (a projection to run, a retention pass).  Errors out when they
 * cannot run.
 */
void
es_worker_wake_at_commit(const EsCatalog *cat, const char *what, bool maintenance)
{
	EsDatabaseState *db;

	if (es_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs the eventstore background worker", what),
				 errdetail("The background processes run async projections, catch-ups, retention and archive policies; they run only when the library is preloaded."),
				 errhint("Add 'eventstore' to shared_preload_libraries in postgresql.conf and restart the server, or create an inline projection with replay => false.")));

	db = es_database_state(cat, MyDatabaseId, true);
	if (!db->worker_wanted)
		es_worker_request(db);
	es_xact_wake = db;
	if (maintenance)
		es_xact_wake_maintenance = true;
}

/* Called by an append after drawing its positions, before commit. */
void
es_horizon_drawn(int64 position)
{
	uint64		current;

	if (es_shared == NULL || es_xact_db == NULL)
		return;

	current = pg_atomic_read_u64(&es_xact_db->drawn_max);
	while (current < (uint64) position)
	{
		if (pg_atomic_compare_exchange_u64(&es_xact_db->drawn_max, &current,
										   (uint64) position))
			break;
	}
}

/*
 * The live horizon of a database.  exclude_self leaves out the caller's own
 * registration: a transaction reads its own appends.
 */
int64
es_live_horizon(const EsCatalog *cat, EsDatabaseState *db, bool exclude_self)
{
	uint64		horizon;
	uint64		seq_last;
	int			self = (exclude_self && MyProc != NULL) ? es_my_proc_number() : -1;

	/*
	 * The sequence itself also counts as "drawn": it covers positions set
	 * without an append (a restore's setval) that drawn_max never saw.
	 * Reading its page under the buffer lock orders it after the nextval of
	 * every position it reports, and so after that appender's registration.
	 */
	horizon = pg_atomic_read_u64(&db->drawn_max);
	seq_last = (uint64) es_sequence_last_drawn(cat->position_seq_relid);
	horizon = Max(horizon, seq_last);
	pg_memory_barrier();

	for (int i = 0; i < es_shared->nslots; i++)
	{
		EsBackendSlot *slot = &es_shared->slots[i];
		uint64		min_position;

		if (i == self)
			continue;
		min_position = pg_atomic_read_u64(&slot->min_position);
		if (min_position == 0)
			continue;
		pg_read_barrier();
		if (slot->dboid != db->dboid)
			continue;
		if (min_position - 1 < horizon)
			horizon = min_position - 1;
	}

	return (int64) horizon;
}

/* The horizon recorded by the worker in eventstore.recorded_horizon. */
int64
es_recorded_horizon(const EsCatalog *cat, Snapshot snapshot)
{
	Relation	rel = table_open(cat->horizon_relid, AccessShareLock);
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int64		horizon = 0;

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, cat->horizon_position_att, &isnull);

		if (!isnull)
			horizon = Max(horizon, DatumGetInt64(d));
	}

	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);

	return horizon;
}

/*
 * The step of this node's positions: 1 on a single server, ES_POSITION_STRIDE
 * once a distributed store numbered the node (eventstore._advance_positions).
 */
int64
es_positions_stride(const EsCatalog *cat)
{
	HeapTuple	tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(cat->position_seq_relid));
	int64		stride;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for sequence %u", cat->position_seq_relid);
	stride = ((Form_pg_sequence) GETSTRUCT(tup))->seqincrement;
	ReleaseSysCache(tup);
	return stride;
}

/*
 * Make this node draw positions at or above "floor" from now on, each
 * congruent to "residue" modulo the sequence's step (a distributed store,
 * shard.c: every node draws its own class of numbers, so positions are
 * unique across the store, and a shard that came from another node holds
 * positions that node drew).  The sequence is set forward as its owner,
 * under a lock that waits for the transactions that drew from it and keeps
 * others from drawing meanwhile, so it never moves back.  No position at or
 * below the new value will be drawn here, so drawn_max may pass it: readers
 * then see the shard's events up to it once the appenders in flight have
 * finished.
 */
void
es_positions_advance(const EsCatalog *cat, int64 floor, int64 residue)
{
	Oid			seq = cat->position_seq_relid;
	int64		stride = es_positions_stride(cat);
	int64		last;
	int64		target = 0;
	EsDatabaseState *db;
	uint64		current;

	/*
	 * Mostly there is nothing to do: look first without the lock, which
	 * waits for every transaction that drew from the sequence to end.
	 */
	last = es_sequence_last_drawn(seq);
	if (last >= floor && (stride == 1 || last % stride == residue))
		return;

	LockRelationOid(seq, ExclusiveLock);
	last = es_sequence_last_drawn(seq);
	if (last < floor || (stride > 1 && last % stride != residue))
	{
		Oid			save_userid;
		int			save_sec_context;
		int64		base = Max(floor, last + 1);

		/* the first number of this node's class at or above base */
		target = base + ((residue - base % stride) % stride + stride) % stride;

		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(es_relation_owner(seq),
							   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
		(void) DirectFunctionCall2(setval_oid, ObjectIdGetDatum(seq), Int64GetDatum(target));
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	UnlockRelationOid(seq, ExclusiveLock);

	if (target == 0 || es_shared == NULL)
		return;
	db = es_database_state(cat, MyDatabaseId, true);
	current = pg_atomic_read_u64(&db->drawn_max);
	while (current < (uint64) target)
	{
		if (pg_atomic_compare_exchange_u64(&db->drawn_max, &current, (uint64) target))
			break;
	}
}

/*
 * Lift this node's positions to at least "floor", in the node's own class
 * of numbers (a distributed store: a node whose positions lag behind the
 * others' holds back a reader of the merged log, read.c).  Returns false
 * when the node draws positions as a single server does.
 */
bool
es_positions_lift(const EsCatalog *cat, int64 floor)
{
	int64		stride = es_positions_stride(cat);
	int64		last = es_sequence_last_drawn(cat->position_seq_relid);

	if (stride == 1 || last <= 0)
		return false;
	es_positions_advance(cat, floor, last % stride);
	return true;
}

/*
 * The horizon a reader may read up to, and the snapshot to read with.  The
 * snapshot is registered; the caller unregisters it.
 */
int64
es_reader_horizon(const EsCatalog *cat, Snapshot *snapshot)
{
	EsDatabaseState *db;
	int64		horizon;

	if (RecoveryInProgress() || IsolationUsesXactSnapshot())
	{
		*snapshot = RegisterSnapshot(GetActiveSnapshot());
		return es_recorded_horizon(cat, *snapshot);
	}

	es_require_preload("eventstore.read_all()",
					   "Without the shared registry of appending transactions a reader could skip events.");

	db = es_database_state(cat, MyDatabaseId, true);
	horizon = es_live_horizon(cat, db, true);

	/* Only a snapshot taken after the horizon sees everything below it. */
	*snapshot = RegisterSnapshot(GetLatestSnapshot());
	return horizon;
}

/* An appender found no worker wanted for its database: ask the launcher. */
void
es_worker_request(EsDatabaseState *db)
{
	Latch	   *launcher_latch;

	LWLockAcquire(es_shared->lock, LW_EXCLUSIVE);
	db->worker_wanted = true;
	launcher_latch = es_shared->launcher_latch;
	LWLockRelease(es_shared->lock);

	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/*
 * Define the settings this file reads: the size of the shared registry
 * (preloading only).  Called by _PG_init.
 */
void
es_horizon_define_gucs(void)
{
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
}
