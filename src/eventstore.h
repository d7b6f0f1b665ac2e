/*-------------------------------------------------------------------------
 *
 * eventstore.h
 *	  Declarations shared by the files of the eventstore extension.
 *
 * src/eventstore.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENTSTORE_H
#define EVENTSTORE_H

#include "postgres.h"

#include "access/attnum.h"
#include "fmgr.h"
#include "access/sdir.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/array.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "access/tupdesc.h"
#include "nodes/lockoptions.h"
#include "datatype/timestamp.h"
#include "utils/snapshot.h"

/* every difference between PostgreSQL versions */
#include "compat.h"

/*
 * SQLSTATEs of our own, in class "ST" (stream).  The class is outside the
 * ranges the SQL standard and PostgreSQL use, so clients can tell these
 * errors apart from the server's.
 */
#define ERRCODE_ES_WRONG_EXPECTED_VERSION	MAKE_SQLSTATE('S','T','0','0','1')
#define ERRCODE_ES_STREAM_DELETED			MAKE_SQLSTATE('S','T','0','0','2')
#define ERRCODE_ES_STREAM_ARCHIVED			MAKE_SQLSTATE('S','T','0','0','3')
#define ERRCODE_ES_IDEMPOTENCY_CONFLICT		MAKE_SQLSTATE('S','T','0','0','4')
/* a distributed store (0.8.0): the stream's shard is on another node */
#define ERRCODE_ES_STREAM_NOT_LOCAL			MAKE_SQLSTATE('S','T','0','0','5')

/* The channel the background worker notifies on; the payload is a position. */
#define ES_NOTIFY_CHANNEL			"eventstore_events"

/*
 * Advisory locks taken by appends live in their own key space: field4 of an
 * advisory LOCKTAG is 1 or 2 for the SQL-level pg_advisory_* functions, so a
 * distinct value can never collide with an application's own advisory locks.
 * pg_locks shows these as locktype 'advisory' with objsubid 17747 ('ES').
 */
#define ES_ADVISORY_LOCK_CLASS		0x4553

/*
 * Lifecycle markers (0.7.0, catalog.c): the marker stream of stream S is
 * "$$S"; event types beginning with "$" are the extension's own.
 */
#define ES_MARKER_STREAM_PREFIX		"$$"
#define ES_MARKER_STREAM_PREFIX_LEN	2
#define ES_RESERVED_TYPE_PREFIX		'$'

/*
 * On a store distributed with Citus (shard.c), node group g draws the
 * positions congruent to g modulo this: positions are unique across the
 * store, and up to this many node groups can append.
 */
#define ES_POSITION_STRIDE			1024

/* Limits on identifiers; longer ones are rejected with 54000. */
#define ES_MAX_STREAM_ID_BYTES		1024
#define ES_MAX_EVENT_TYPE_BYTES		1024

/*
 * Physical column order of eventstore.events.  Fixed-width columns come first
 * so a row carries no alignment padding; the eventstore.event type that reads
 * return keeps the order of the contract, see es_event_to_output().
 */
#define Anum_es_global_position		1
#define Anum_es_stream_version		2
#define Anum_es_created_at			3
#define Anum_es_event_id			4
#define Anum_es_stream_id			5
#define Anum_es_event_type			6
#define Anum_es_data				7
#define Anum_es_metadata			8
#define Natts_es_events				8

/*
 * Column order of eventstore.event_ids (0.6.0): the ids callers gave
 * appends and the events that took them, checked by the catalog lookup.
 */
#define Anum_es_ids_event_id		1
#define Anum_es_ids_global_position	2
#define Anum_es_ids_stream_version	3
#define Anum_es_ids_stream_id		4
#define Natts_es_event_ids			4

/* Column order of the eventstore.event composite type (the contract). */
#define Natts_es_event_type			8

/*
 * Attribute numbers of the columns of eventstore.streams.  They are looked
 * up by name (catalog.c): a fresh install creates the table with its
 * columns in one order, the update chain from 0.1.0 in another may.
 */
typedef struct EsStreamsColumns
{
	AttrNumber	max_age;
	AttrNumber	max_count;
	AttrNumber	truncate_before;
	AttrNumber	deleted_version;
	AttrNumber	deleted_at;
	AttrNumber	tombstoned_at;
	AttrNumber	archived_at;
	AttrNumber	removed_through;
	AttrNumber	settings_version;
	AttrNumber	retention_checked;
} EsStreamsColumns;

/*
 * OIDs of the extension's objects in the current database, and the column
 * maps of its tables, looked up once per backend and forgotten when the
 * cache entry of the events relation (or of another table mapped here) is
 * invalidated (DROP/CREATE EXTENSION, ALTER TABLE, CREATE INDEX, ...).
 */
typedef struct EsCatalog
{
	Oid			namespace_oid;
	Oid			events_relid;
	Oid			stream_index_relid; /* unique (stream_id, stream_version) */
	Oid			position_seq_relid; /* draws global positions */
	Oid			position_index_relid;	/* primary key (global_position) */
	Oid			horizon_relid;	/* eventstore.recorded_horizon */
	AttrNumber	horizon_position_att;	/* its column "position" */
	Oid			event_typid;	/* the eventstore.event type */
	Oid			projections_relid;	/* InvalidOid before version 0.2.0 */
	/* InvalidOid before version 0.3.0: */
	Oid			streams_relid;	/* eventstore.streams */
	Oid			streams_pkey_relid;
	Oid			archive_relid;	/* eventstore.archived_events */
	Oid			archive_index_relid;	/* unique (stream_id, stream_version) */
	EsStreamsColumns streams_att;	/* columns of eventstore.streams */
	/* InvalidOid before version 0.6.0: */
	Oid			event_ids_relid;	/* eventstore.event_ids */
	Oid			event_ids_pkey_relid;	/* its primary key (event_id) */
} EsCatalog;

/*
 * A stream's row in eventstore.streams: its settings and lifecycle state
 * (lifecycle.c).  Zero means "none" for the versions.
 */
typedef struct EsStreamRules
{
	bool		found;			/* the stream has a row */
	bool		has_max_age;
	Interval	max_age;
	int64		max_count;
	int64		truncate_before;
	bool		deleted;		/* soft-deleted at deleted_version */
	int64		deleted_version;
	TimestampTz deleted_at;
	bool		tombstoned;
	TimestampTz tombstoned_at;
	bool		archived;
	TimestampTz archived_at;
	int64		removed_through;	/* highest version removed from storage */
	/* the worker's bookkeeping: the caches of reads do not keep it current */
	int64		settings_version;	/* counts changes of settings and state */
	bool		retention_checked;	/* removal done for these settings */
} EsStreamRules;

/* What a reader may see of a stream (lifecycle.c). */
typedef struct EsStreamView
{
	EsStreamRules rules;
	Oid			heap_relid;		/* where the events are stored */
	Oid			index_relid;	/* its (stream_id, stream_version) index */
	bool		has_head;
	int64		head;			/* highest version written (if has_head) */
	int64		version;		/* stream_version(): 0 when absent (if has_head) */
	bool		absent;			/* deleted or tombstoned: nothing to read */
	int64		min_version;	/* lower versions read as gone */
	bool		has_cutoff;
	TimestampTz cutoff;			/* events created before read as gone */
} EsStreamView;

/* Per-call cache of stream views, for reads across streams (read_all). */
typedef struct EsViewCache EsViewCache;

/*
 * A filter on events, as read_all and projections take it: event types
 * and a stream id prefix, both compared bytewise.
 */
typedef struct EsFilter
{
	bool		has_types;		/* filter on event types (none listed: nothing) */
	int			ntypes;
	const char **types;
	int		   *type_lens;
	const char *prefix;			/* NULL: every stream */
	int			prefix_len;
} EsFilter;

/* A projection, as cached by every backend (projection.c). */
typedef struct EsProjection
{
	char	   *name;
	Oid			handler;
	Oid			owner;			/* role the worker runs the handler as */
	EsFilter	filter;
	bool		is_inline;
	bool		enabled;
	bool		catching_up;	/* inline, but the worker replays for now */
	bool		pass_name;		/* the handler takes the name as 2nd argument */
	char	   *search_path;	/* the async handler runs under it (NULL: as is) */
} EsProjection;

/*
 * Shared memory (only when the library is preloaded).
 *
 * The global log is read by position, but positions are drawn before their
 * transactions commit, and commits happen in any order.  A reader must never
 * return position q while a transaction that drew some p < q may still
 * commit.  Each appending transaction therefore publishes, before it draws
 * its first position, a lower bound of every position it will draw
 * (EsBackendSlot.min_position); each database publishes the highest position
 * known to be drawn (EsDatabaseState.drawn_max).  A reader's safe horizon is
 *
 *		min(drawn_max, min over in-flight slots of min_position - 1)
 *
 * read in that order, with full barriers on both sides (see horizon.c for
 * the argument).  Unrelated transactions never appear here, so they never
 * hold readers back.
 */
/*
 * Statistics of a database (0.9.0, stats.c), in its EsDatabaseState.
 * Appenders add what their transaction did when it commits; the
 * background processes add each cycle of a duty when it ends.
 */
typedef enum EsCounter
{
	ES_STAT_APPENDS,			/* append calls that succeeded */
	ES_STAT_EVENTS,				/* events they stored */
	ES_STAT_BYTES,				/* bytes of data and metadata stored */
	ES_STAT_CONFLICTS,			/* ST001 raised by appends (when raised) */
	ES_STAT_RETRIES,			/* appends recognised as retries */
	ES_STAT_INLINE_CALLS,		/* inline projection handler calls */
	ES_STAT_INLINE_TIME,		/* their time, microseconds */
	ES_STAT_NOTIFICATIONS,		/* notifications the worker sent */
	ES_NUM_COUNTERS
} EsCounter;

/* What the background processes do, each counted on its own. */
typedef enum EsDuty
{
	ES_DUTY_NOTIFY,				/* worker: publish the horizon, notify */
	ES_DUTY_PROJECTIONS,		/* projector: async projections, snapshots */
	ES_DUTY_RETENTION,			/* worker: retention of stream settings */
	ES_DUTY_ARCHIVING,			/* worker: archive policies */
	ES_NUM_DUTIES
} EsDuty;

typedef struct EsDutyStats
{
	pg_atomic_uint64 cycles;	/* cycles that did something */
	pg_atomic_uint64 items;		/* what they did (notifications, events...) */
	pg_atomic_uint64 time_us;	/* their time */
	pg_atomic_uint64 last_at;	/* TimestampTz of the last one's end */
} EsDutyStats;

typedef struct EsStats
{
	pg_atomic_uint64 counters[ES_NUM_COUNTERS];
	EsDutyStats duties[ES_NUM_DUTIES];
	pg_atomic_uint64 reset_at;	/* TimestampTz: start or last reset */
} EsStats;

typedef struct EsDatabaseState
{
	Oid			dboid;			/* InvalidOid: entry unused */
	Oid			seq_relid;		/* sequence drawn_max was initialised from */
	bool		initialized;	/* drawn_max is valid for seq_relid */
	pg_atomic_uint64 drawn_max; /* every position <= this has been drawn */
	bool		worker_wanted;	/* the launcher should run a worker */
	pid_t		worker_pid;		/* 0 when no worker runs */
	Latch	   *worker_latch;	/* set by committing appenders */
	pg_atomic_uint32 maintenance_wanted;	/* run retention/archiving soon */
	/* the projector: runs the async projections (user code) */
	pid_t		projector_pid;	/* 0 when no projector runs */
	Latch	   *projector_latch;	/* set when the horizon moves or */
									/* a definition changes */
	pg_atomic_uint64 published; /* horizon the worker last recorded */
	pg_atomic_uint32 projector_idle;	/* its last pass found nothing to
										 * run: a moving horizon need not
										 * wake it (definition changes do) */
	EsStats		stats;			/* counters (stats.c) */
} EsDatabaseState;

/*
 * A long operation a backend runs (0.9.0, stats.c), shown by
 * eventstore.progress.  Written only by the backend that owns the slot;
 * "changes" is odd while the description is being rewritten.
 */
typedef enum EsProgressKind
{
	ES_PROGRESS_NONE,
	ES_PROGRESS_PROJECTION,		/* projector: a projection catching up */
	ES_PROGRESS_SNAPSHOTS,		/* projector: a snapshot policy catching up */
	ES_PROGRESS_ARCHIVE_STREAMS,	/* archive_streams() */
	ES_PROGRESS_RETENTION,		/* worker: a retention pass */
	ES_PROGRESS_ARCHIVING,		/* worker: an archiving pass */
	ES_NUM_PROGRESS_KINDS
} EsProgressKind;

#define ES_PROGRESS_TARGET_LEN	128

/*
 * What the extension's processes wait for, named in pg_stat_activity's
 * wait_event on PostgreSQL 17 and later (custom wait events); before 17
 * every one of them shows as "Extension".
 */
typedef enum EsWait
{
	ES_WAIT_WORKER_MAIN,		/* the worker between cycles */
	ES_WAIT_PROJECTOR_MAIN,		/* the projector between passes */
	ES_WAIT_LAUNCHER_MAIN,		/* the launcher between checks */
	ES_WAIT_NOTIFY_DELAY,		/* the worker spacing notifications */
	ES_WAIT_PROCESSES_EXIT,		/* a backend dropping the extension (or a
								 * database) waits for its processes to go */
	ES_NUM_WAITS
} EsWait;

typedef struct EsProgress
{
	pg_atomic_uint32 changes;
	EsProgressKind kind;
	Oid			dboid;
	int			pid;
	TimestampTz started_at;
	bool		has_base;		/* the first report came: */
	int64		base;			/* what was done then */
	TimestampTz base_at;		/* and when */
	char		target[ES_PROGRESS_TARGET_LEN];
	pg_atomic_uint64 done;
	pg_atomic_uint64 total;		/* PG_UINT64_MAX: unknown */
} EsProgress;

typedef struct EsBackendSlot
{
	pg_atomic_uint64 min_position;	/* 0: not appending */
	Oid			dboid;
	pg_atomic_uint64 xact_start;	/* TimestampTz of the appending
									 * transaction's start */
	EsProgress	progress;
} EsBackendSlot;

typedef struct EsShared
{
	LWLock	   *lock;			/* protects the database table */
	Latch	   *launcher_latch;
	pid_t		launcher_pid;
	int			max_databases;
	int			nslots;			/* one per PGPROC */
	EsDatabaseState *databases; /* max_databases entries */
	EsBackendSlot *slots;		/* nslots entries, by PGPROC number */
} EsShared;

extern EsShared *es_shared;

/*
 * The files of src/, from the ground up; a file calls only files on lower
 * floors (test/layering.sh checks it on the object files):
 *
 *	 0	catalog.c storage.c guard.c		objects, checks, stream lock, event scan
 *										and head, rows written without a query,
 *										how SQL and users' code are run
 *	 1	horizon.c						shared memory, the global-log horizon
 *	 2	shard.c stats.c					where a stream is stored (Citus shards),
 *										the partitions of the global log;
 *										statistics and progress
 *	 3	lifecycle.c						what a reader may see of a stream
 *	 4	projection.c read.c caller.c snapshot.c	handlers, reads, management
 *										callers, stored snapshots of state
 *	 5	append.c fold.c subscription.c	the append path; folds of a stream;
 *										a subscription's pull from the log
 *	 6	command.c						handle_command: load, decide, append
 *	 7	process.c						what the background processes share
 *	 8	worker.c projector.c launcher.c	a database's worker and projector,
 *										the launcher and the utility hook
 *	 9	init.c							_PG_init: each module's GUCs, the hooks
 */

/* catalog.c */
extern const EsCatalog *es_catalog(void);
extern const EsCatalog *es_catalog_lookup(bool missing_ok);
extern void es_catalog_map_columns(EsCatalog *c);
extern Oid	es_lookup_relation(const char *relname);
extern AttrNumber es_lookup_column(Oid relid, const char *relname, const char *colname);
extern Oid	es_lookup_function(const char *name, int nargs, const Oid *argtypes);
extern pg_noreturn void es_null_arg_error(const char *name);
extern Oid	es_relation_owner(Oid relid);
extern void es_check_stream_id(text *stream_id);
extern void es_check_identifier(const char *what, Size len, int limit);
struct FunctionCallInfoBaseData;
extern void es_arg_not_null(struct FunctionCallInfoBaseData *fcinfo, int argno, const char *name);
extern text *es_stream_id_arg(struct FunctionCallInfoBaseData *fcinfo, int argno);
extern bool es_is_marker_stream(const char *stream_id, Size len);
extern bool es_is_reserved_type(const char *event_type, Size len);
extern void es_check_writable_stream_id(text *stream_id);
extern text *es_writable_stream_id_arg(struct FunctionCallInfoBaseData *fcinfo, int argno);
extern void es_check_writable_type(const char *event_type, Size len);
extern void es_filter_from_args(EsFilter *filter, ArrayType *event_types, text *stream_prefix);
extern Datum es_result_row(struct FunctionCallInfoBaseData *fcinfo, Datum *values, bool *nulls);
extern bool es_filter_matches(const EsFilter *filter, const char *stream_id,
							  int stream_len, const char *type, int type_len);
extern void es_event_to_output(const Datum *row_values, const bool *row_nulls,
							   Datum *out_values, bool *out_nulls);
extern void es_check_expected_arg(bool has_expected, int64 expected);
extern bool es_expected_version_matches(bool has_expected, int64 expected,
										int64 current, int64 last);
extern void es_check_expected_matches(text *stream_id, bool has_expected,
									  int64 expected, int64 current, int64 last);

/*
 * storage.c.  EsEventScan: an ordered index scan of stored events (see
 * es_scan_stream_begin and es_scan_positions_begin); es_scan_next returns
 * each row in scan->slot, NULL at the end; es_scan_end releases it all.
 */
struct TupleTableSlot;
struct IndexScanDescData;
typedef struct EsEventScan
{
	struct IndexScanDescData *desc;
	struct TupleTableSlot *slot;	/* the current row */
	bool		own_slot;		/* made by the scan, dropped at its end */
	ScanDirection direction;
	MemoryContext cxt;			/* where it began; lives as long as the scan */
} EsEventScan;

extern void es_scan_stream_begin(EsEventScan *scan, Relation heap, Relation index,
								 Snapshot snapshot, text *stream_id,
								 int64 from_version, int64 to_version,
								 ScanDirection direction, struct TupleTableSlot *slot);
extern void es_scan_positions_begin(EsEventScan *scan, Relation heap, Relation index,
									Snapshot snapshot, int64 from_position,
									int64 to_position, ScanDirection direction,
									struct TupleTableSlot *slot);
struct pg_uuid_t;

extern void es_scan_event_id_begin(EsEventScan *scan, Relation heap, Relation index,
								   Snapshot snapshot, const struct pg_uuid_t *event_id,
								   struct TupleTableSlot *slot);
extern struct TupleTableSlot *es_scan_next(EsEventScan *scan);
extern void es_scan_end(EsEventScan *scan);
extern int64 es_highest_position(Oid events_relid, Oid position_index_relid,
								 Snapshot snapshot, int64 upto);
extern bool es_lock_stream(text *stream_id, bool wait);
extern int64 es_stream_head(Relation heap, Relation stream_index, text *stream_id,
							Snapshot snapshot, struct TupleTableSlot *slot);
struct ScanKeyData;
extern void es_scan_begin(EsEventScan *scan, Relation heap, Relation index,
						  Snapshot snapshot, struct ScanKeyData *keys, int nkeys,
						  ScanDirection direction, struct TupleTableSlot *slot);
struct ItemPointerData;
struct EState;
struct ResultRelInfo;
/* writes rows of the extension's own tables without a query (storage.c) */
typedef struct EsRowWriter
{
	Relation	rel;
	struct EState *estate;
	struct ResultRelInfo *rri;
} EsRowWriter;
extern void es_rows_begin(EsRowWriter *w, Relation rel);
extern void es_rows_insert(EsRowWriter *w, struct TupleTableSlot *slot);
extern void es_rows_update(EsRowWriter *w, struct ItemPointerData *tid,
						   struct TupleTableSlot *slot);
extern void es_rows_end(EsRowWriter *w);
extern bool es_row_lock(Relation rel, struct ItemPointerData *tid, Snapshot snapshot,
						struct TupleTableSlot *slot, LockTupleMode mode, bool wait);

/*
 * guard.c: the extension's own queries and users' functions (the lowest
 * layer; every file that runs SQL or user code goes through it).
 */
typedef struct EsGuard
{
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;
	bool		switched;
} EsGuard;

extern void es_spi_begin(EsGuard *g, Oid as_user);
extern void es_spi_end(EsGuard *g);
extern void es_check_user_function(Oid fn, Oid role, const char *what);
extern void es_user_code_begin(EsGuard *g, Oid role, const char *search_path);
extern void es_user_code_end(EsGuard *g);

/* horizon.c */
extern void es_horizon_define_gucs(void);
extern void es_horizon_shmem_init(void);
extern void es_horizon_request_shmem(void);
extern void es_horizon_register_callbacks(void);
extern EsDatabaseState *es_database_state(const EsCatalog *cat, Oid dboid, bool create);
extern void es_horizon_enter(const EsCatalog *cat);
extern void es_horizon_drawn(int64 position);
extern void es_worker_wake_at_commit(const EsCatalog *cat, const char *what,
									 bool maintenance);
extern int64 es_live_horizon(const EsCatalog *cat, EsDatabaseState *db,
							 bool exclude_self);
extern int64 es_recorded_horizon(const EsCatalog *cat, Snapshot snapshot);
extern int64 es_reader_horizon(const EsCatalog *cat, Snapshot *snapshot);
extern void es_require_preload(const char *what, const char *detail);
extern int64 es_positions_stride(const EsCatalog *cat);
extern void es_positions_advance(const EsCatalog *cat, int64 floor, int64 residue);
extern bool es_positions_lift(const EsCatalog *cat, int64 floor);
extern void es_worker_request(EsDatabaseState *db);
extern void es_stats_zero(EsStats *stats, bool init);

/* shard.c */
typedef struct EsPartition
{
	int32		id;				/* the lowest hash of its range */
	bool		local;			/* placed on this node */
	char	   *node_name;		/* else where (NULL: unknown) */
	int32		node_port;
} EsPartition;

extern bool es_store_distributed(const EsCatalog *cat);
extern const EsCatalog *es_stream_catalog(const EsCatalog *cat, text *stream_id);
extern const EsCatalog *es_stream_catalog_for_write(const EsCatalog *cat, text *stream_id);
extern const EsCatalog *es_stream_catalog_for_append(const EsCatalog *cat, text *stream_id);
extern void es_shard_install_hooks(void);
extern int	es_log_partitions(const EsCatalog *cat, EsPartition **parts);
extern const EsCatalog *es_partition_catalog(const EsCatalog *cat, int32 id);
extern void es_require_single_server(const EsCatalog *cat, const char *what,
									 const char *hint);

/* stats.c */
extern void es_stats_register_callbacks(void);
extern void es_stats_append(const EsCatalog *cat, int64 events, int64 bytes, bool retry);
extern void es_stats_conflict(const EsCatalog *cat);
extern void es_stats_inline_call(const EsCatalog *cat, int64 time_us);
extern void es_stats_duty(EsDatabaseState *db, EsDuty duty, int64 items, TimestampTz started);
extern void es_stats_add(EsDatabaseState *db, EsCounter counter, int64 n);
extern void es_progress_begin(EsProgressKind kind, const char *target, int64 total,
							  bool until_xact_end);
extern void es_progress_update(int64 done, int64 total);
extern void es_progress_end(void);
extern uint32 es_wait_event(EsWait which);

/* append.c */
extern void es_append_define_gucs(void);
extern int64 es_append_events_jsonb(text *stream_id, Jsonb *events,
									bool has_expected, int64 expected);

/* lifecycle.c */
extern void es_stream_rules(const EsCatalog *cat, text *stream_id, Snapshot snapshot,
							EsStreamRules *rules);
extern void es_stream_view(const EsCatalog *cat, text *stream_id, Snapshot snapshot,
						   bool need_head, EsStreamView *view);
extern int64 es_rules_head(const EsStreamRules *r, int64 stored);
extern int64 es_rules_version(const EsStreamRules *r, int64 head);
pg_noreturn extern void es_error_tombstoned(text *stream_id, TimestampTz at);
extern bool es_view_hides(const EsStreamView *view, int64 version, TimestampTz created_at);
extern EsViewCache *es_view_cache_create(const EsCatalog *cat, Snapshot snapshot);
extern bool es_view_cache_hides(EsViewCache *cache, text *stream_id, int64 version,
								TimestampTz created_at);
extern void es_view_cache_destroy(EsViewCache *cache);
extern bool es_maintenance_locks(const EsCatalog *cat);
extern int64 es_retention_step(const EsCatalog *cat, int batch_size, int64 after_position,
							   bool *complete);
extern int64 es_archive_step(const EsCatalog *cat, int max_streams);

/*
 * snapshot.c: stored snapshots of folded state.  What a fold reads of a
 * stream (EsTarget) and a snapshot's row (EsSnapshotRow).
 */
typedef struct EsTarget
{
	int64		to_version;		/* PG_INT64_MAX: to the end */
	bool		has_as_of;
	TimestampTz as_of;
} EsTarget;

typedef struct EsSnapshotRow
{
	int64		version;		/* 0: none */
	Oid			state_type;
	Datum		state;
	bool		isnull;
	TimestampTz last_event_at;	/* newest created_at folded in */
} EsSnapshotRow;

extern char *es_snapshot_tag_arg(struct FunctionCallInfoBaseData *fcinfo, int tag_arg,
								 Oid evolve, Oid state_type, Datum initial,
								 bool initial_isnull);
extern bool es_snapshots_usable(const EsStreamView *view);
extern void es_snapshot_find(text *stream_id, const char *tag, const EsTarget *target,
							 Snapshot snapshot, EsSnapshotRow *row);
extern void es_snapshot_store(text *stream_id, const char *tag, const EsSnapshotRow *row);

/* caller.c */
extern void es_check_caller(bool isnull, Oid caller);

/* read.c */
extern void es_read_define_gucs(void);
extern void es_read_install_hooks(void);
/*
 * What a read of the global log hands each event it reads to; it returns
 * whether the event counts toward the read's max_count (one a sink passes
 * over does not).
 */
typedef bool (*EsLogSink) (void *arg, struct TupleTableSlot *slot, text *stream_id);
extern void es_event_values(struct TupleTableSlot *slot, TupleDesc tupdesc, int first,
							Datum *values, bool *nulls);
extern int64 es_read_all_into(EsLogSink sink, void *arg, int64 after, int64 max_count,
							  ArrayType *event_types, text *stream_prefix);

/* projection.c */
struct FmgrInfo;
extern void es_projection_define_gucs(void);
extern uint64 es_projection_generation;
extern int64 es_projecting_position;
extern EsProjection *es_projections(const EsCatalog *cat, int *n);
extern void es_handler_init(const EsProjection *p, Oid role, struct FmgrInfo *flinfo,
							MemoryContext cxt);
extern void es_handler_call(const EsProjection *p, struct FmgrInfo *flinfo,
							Datum event, int64 position);
extern Datum es_event_datum(TupleDesc event_desc, const Datum *row_values,
							const bool *row_nulls);
extern int64 es_projection_run_batch(const char *name, bool *caught_up,
									 bool *needs_live);
extern bool es_projection_go_live(const char *name);
extern void es_projection_record_error(const char *name, int64 position,
									   const char *message);
extern struct List *es_projections_for_worker(TimestampTz *next_retry, bool *busy);

/* fold.c: a fold in progress, and the arguments of a load. */
typedef struct EsFold
{
	Oid			evolve;
	bool		evolve_strict;
	Oid			event_typid;
	/* evolve($1 state, $2 event), planned at the first event (fold.c) */
	ExprState  *evolve_expr;
	ExprContext *econtext;		/* its per-tuple memory is reset per event */
	ParamListInfo params;		/* $1 and $2 */
	MemoryContext fold_cxt;		/* where the fold lives: the plan goes there */
	Oid			state_type;
	int16		typlen;
	bool		typbyval;
	Datum		state;
	bool		isnull;
	MemoryContext state_cxt[2]; /* the state lives in state_cxt[cur] */
	int			cur;
	/* expanded records of the event's and (if composite) the state's type */
	struct ExpandedRecordHeader *event_template;
	struct ExpandedRecordHeader *state_template;
	int64		version;		/* last version folded in (or snapshot's) */
	TimestampTz last_event_at;	/* newest created_at folded in */
	int64		events;			/* events folded by this fold */
} EsFold;

typedef struct EsLoadArgs
{
	text	   *stream_id;
	Oid			evolve;
	Oid			state_type;
	Datum		initial;
	bool		initial_isnull;
	EsTarget	target;
	char	   *tag;			/* NULL: no snapshots */
} EsLoadArgs;

extern bool es_function_fits(Oid fn, const char *what, Oid state_type, Oid arg0,
							 Oid arg1, Oid rettype);
extern void es_fmgr_info_typed(Oid fn, Oid rettype, Oid arg0, Oid arg1,
							   struct FmgrInfo *flinfo);
extern void es_fold_args(struct FunctionCallInfoBaseData *fcinfo, int evolve_arg,
						 int initial_arg, EsLoadArgs *a);
extern void es_fold_stream(EsFold *f, const EsCatalog *cat, text *stream_id,
						   const EsTarget *target, Snapshot snapshot,
						   const EsStreamView *view);
extern int64 es_load(EsFold *f, const EsCatalog *cat, const EsLoadArgs *a,
					 Snapshot snapshot, bool *snapshots_usable);

/* process.c */
typedef enum EsProcKind
{
	ES_PROC_WORKER,				/* horizon, notifications, maintenance */
	ES_PROC_PROJECTOR,			/* async projections (user code) */
	ES_NUM_PROC_KINDS
} EsProcKind;

extern int	es_worker_naptime;
extern void es_process_define_gucs(void);
extern const char *const es_proc_type[ES_NUM_PROC_KINDS];
extern EsDatabaseState *es_process_db;
extern void es_process_signals(void);
extern void es_process_interrupts(void);
extern long es_ms_until(TimestampTz t);
extern void es_process_sleep(long timeout, TimestampTz not_after, EsWait wait);
extern void es_process_start(Oid dboid, EsProcKind kind);

/* worker.c */
extern void es_worker_define_gucs(void);

/* projector.c */
extern void es_projector_define_gucs(void);

/* launcher.c */
extern void es_worker_register_launcher(void);
extern void es_worker_install_hooks(void);

#endif							/* EVENTSTORE_H */
