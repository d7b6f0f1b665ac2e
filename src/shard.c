/*-------------------------------------------------------------------------
 *
 * shard.c
 *	  Where a stream is stored.  On a single server that is the extension's
 *	  own tables.  In a store distributed with Citus (eventstore.distribute,
 *	  0.8.0) the tables keyed by stream -- events, event_ids, streams and
 *	  archived_events -- are split into co-located shards by the hash of
 *	  the stream id, and each node holds some of them.  Every path that
 *	  reads or writes a stream below the executor asks here for the
 *	  stream's tables: on a distributed store, the local shards of the
 *	  stream, never the distributed table itself, which on every node is an
 *	  empty placeholder.  A stream whose shard has no placement on this node
 *	  is refused (ST005) rather than written to the wrong table.
 *
 *	  Citus's metadata (pg_dist_partition, pg_dist_shard, pg_dist_placement,
 *	  pg_dist_local_group) is read once per backend and again after Citus
 *	  changes it: a change of a shard or placement (distribution, move,
 *	  split) invalidates the relcache entry of the distributed table, and
 *	  dropping or creating one of our relations invalidates its own.  The
 *	  relations of a shard are looked up by the names Citus gives them (the
 *	  table's or index's name, "_", the shard id) on first use.
 *
 *	  The lifecycle markers of stream S live in stream "$$S"; they are
 *	  stored with S, in S's shard: the hash is taken of the stream id
 *	  without the marker prefix (es_partition_key), so that a delete and
 *	  its marker are one local transaction.
 *
 * src/shard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#include "optimizer/planner.h"
#include "nodes/pathnodes.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "eventstore.h"

/* The tables split by stream, in the order of EsShard.shardid. */
typedef enum EsShardedTable
{
	ES_SHARD_EVENTS,
	ES_SHARD_EVENT_IDS,
	ES_SHARD_STREAMS,
	ES_SHARD_ARCHIVE,
	ES_NUM_SHARDED
} EsShardedTable;

/* One hash range of the store: a shard of each table, co-located. */
typedef struct EsShard
{
	int32		min_hash;		/* inclusive bounds, as pg_dist_shard has them */
	int32		max_hash;
	int64		shardid[ES_NUM_SHARDED];	/* 0: that table has no such shard */
	bool		local;			/* placed on this node */
	char	   *node_name;		/* where it is placed (NULL: unknown) */
	int32		node_port;
	bool		resolved;		/* "cat" holds the local relations */
	bool		positions_checked;	/* this node draws above its positions */
	EsCatalog	cat;
} EsShard;

static struct
{
	bool		valid;
	uint64		invalidations;	/* counts the callback's resets */
	MemoryContext cxt;			/* holds "shards"; reset on every rebuild */
	Oid			placeholder[ES_NUM_SHARDED];	/* the distributed tables */
	bool		distributed;
	int32		local_group;	/* this node's group (pg_dist_local_group) */
	int32		colocation_id;	/* of the distributed tables */
	int			nfunctions;
	Oid		   *functions;		/* our functions Citus delegates, sorted */
	int			nshards;
	EsShard    *shards;			/* sorted by min_hash */
} es_shards;

static bool es_shard_callback_registered = false;

/*
 * Forget everything on an invalidation of every relation, of one of the
 * distributed tables (Citus's signal that their shards changed) or of a
 * local shard relation we resolved.
 */
static void
es_shards_forget(void)
{
	es_shards.valid = false;
	es_shards.invalidations++;
}

static void
es_shard_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid))
	{
		es_shards_forget();
		return;
	}
	for (int t = 0; t < ES_NUM_SHARDED; t++)
		if (relid == es_shards.placeholder[t])
		{
			es_shards_forget();
			return;
		}
	for (int i = 0; i < es_shards.nshards; i++)
	{
		const EsShard *s = &es_shards.shards[i];

		if (s->resolved &&
			(relid == s->cat.events_relid || relid == s->cat.stream_index_relid ||
			 relid == s->cat.position_index_relid || relid == s->cat.event_ids_relid ||
			 relid == s->cat.event_ids_pkey_relid || relid == s->cat.streams_relid ||
			 relid == s->cat.streams_pkey_relid || relid == s->cat.archive_relid ||
			 relid == s->cat.archive_index_relid))
		{
			es_shards_forget();
			return;
		}
	}
}

static int
es_shard_cmp(const void *a, const void *b)
{
	int32		x = ((const EsShard *) a)->min_hash;
	int32		y = ((const EsShard *) b)->min_hash;

	return (x > y) - (x < y);
}

/*
 * Read Citus's metadata of the four tables: their shards (hash ranges) and
 * whether each is placed here.  Run as the owner of the events table under
 * a pinned search_path; the catalogs are pg_catalog's, named in full.
 */
static void
es_shards_load(const EsCatalog *cat)
{
	Oid			argtypes[1] = {OIDARRAYOID};
	Datum		relids[ES_NUM_SHARDED];
	Datum		args[1];
	EsGuard		g;
	int			ret;
	uint64		n;
	MemoryContext oldcxt;

	for (int t = 0; t < ES_NUM_SHARDED; t++)
		relids[t] = ObjectIdGetDatum(es_shards.placeholder[t]);
	args[0] = PointerGetDatum(construct_array(relids, ES_NUM_SHARDED, OIDOID,
											  sizeof(Oid), true, TYPALIGN_INT));

	es_spi_begin(&g, es_relation_owner(cat->events_relid));
	ret = SPI_execute_with_args(
		"SELECT p.colocationid"
		"  FROM pg_catalog.pg_dist_partition p"
		" WHERE p.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) $1[1]"
		"   AND p.partmethod OPERATOR(pg_catalog.=) 'h'",
		1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_dist_partition: %s", SPI_result_code_string(ret));
	es_shards.distributed = (SPI_processed == 1);
	if (!es_shards.distributed)
	{
		es_spi_end(&g);
		return;
	}
	{
		bool		isnull;

		es_shards.colocation_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
															  SPI_tuptable->tupdesc, 1, &isnull));
	}

	/* the functions of ours that Citus delegates (eventstore.distribute) */
	{
		Oid			nsp_type[1] = {OIDOID};
		Datum		nsp[1] = {ObjectIdGetDatum(cat->namespace_oid)};

		ret = SPI_execute_with_args(
			"SELECT o.objid FROM pg_catalog.pg_dist_object o"
			"  JOIN pg_catalog.pg_proc f ON f.oid OPERATOR(pg_catalog.=) o.objid"
			" WHERE o.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass"
			"   AND o.distribution_argument_index OPERATOR(pg_catalog.=) 0"
			"   AND f.pronamespace OPERATOR(pg_catalog.=) $1"
			" ORDER BY 1",
			1, nsp_type, nsp, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read pg_dist_object: %s", SPI_result_code_string(ret));
		es_shards.nfunctions = (int) SPI_processed;
		es_shards.functions = MemoryContextAlloc(es_shards.cxt,
												 sizeof(Oid) * Max(es_shards.nfunctions, 1));
		for (int i = 0; i < es_shards.nfunctions; i++)
		{
			bool		isnull;

			es_shards.functions[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																	SPI_tuptable->tupdesc, 1,
																	&isnull));
		}
	}

	/* one placement per shard (hash distribution, replication factor 1) */
	ret = SPI_execute_with_args(
		"SELECT s.logicalrelid::pg_catalog.oid, s.shardid,"
		"       s.shardminvalue::pg_catalog.int4, s.shardmaxvalue::pg_catalog.int4,"
		"       pl.groupid OPERATOR(pg_catalog.=) lg.groupid, n.nodename, n.nodeport, lg.groupid"
		"  FROM pg_catalog.pg_dist_shard s"
		"  JOIN pg_catalog.pg_dist_placement pl ON pl.shardid OPERATOR(pg_catalog.=) s.shardid"
		"  LEFT JOIN pg_catalog.pg_dist_node n ON n.groupid OPERATOR(pg_catalog.=) pl.groupid"
		"        AND n.noderole OPERATOR(pg_catalog.=) 'primary'"
		" CROSS JOIN pg_catalog.pg_dist_local_group lg"
		" WHERE s.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1)"
		" ORDER BY 3, 1, 5 DESC",
		1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_dist_shard: %s", SPI_result_code_string(ret));

	n = SPI_processed;
	oldcxt = MemoryContextSwitchTo(es_shards.cxt);
	es_shards.shards = palloc0(sizeof(EsShard) * Max(n, 1));
	MemoryContextSwitchTo(oldcxt);
	es_shards.nshards = 0;
	for (uint64 r = 0; r < n; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull[8];
		Oid			relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull[0]));
		int64		shardid = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull[1]));
		int32		min_hash = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull[2]));
		int32		max_hash = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull[3]));
		bool		local = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull[4]));
		char	   *node_name = SPI_getvalue(tup, desc, 6);
		int32		node_port = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull[6]));
		int32		local_group = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull[7]));
		EsShard    *s;
		int			t;

		if (isnull[0] || isnull[1] || isnull[2] || isnull[3] || isnull[4] || isnull[7])
			continue;
		es_shards.local_group = local_group;
		for (t = 0; t < ES_NUM_SHARDED; t++)
			if (relid == es_shards.placeholder[t])
				break;
		if (t == ES_NUM_SHARDED)
			continue;
		/* rows come by range, so a range's shards are adjacent */
		s = (es_shards.nshards > 0) ? &es_shards.shards[es_shards.nshards - 1] : NULL;
		if (s == NULL || s->min_hash != min_hash)
		{
			s = &es_shards.shards[es_shards.nshards++];
			s->min_hash = min_hash;
			s->max_hash = max_hash;
		}
		if (s->max_hash != max_hash)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the distributed tables of eventstore are not co-located"),
					 errhint("Distribute the store with eventstore.distribute().")));
		/* a second placement of one shard (the local one came first) */
		if (s->shardid[t] == shardid)
			continue;
		s->shardid[t] = shardid;
		/* the placement of the events shard says where the range lives */
		if (t == ES_SHARD_EVENTS)
		{
			s->local = local;
			if (node_name != NULL && !isnull[6])
			{
				s->node_name = MemoryContextStrdup(es_shards.cxt, node_name);
				s->node_port = node_port;
			}
		}
	}
	es_spi_end(&g);
	qsort(es_shards.shards, es_shards.nshards, sizeof(EsShard), es_shard_cmp);
}

/*
 * Make the map current: on a single server, just that it is not
 * distributed.  An error while loading leaves it invalid; an invalidation
 * while loading makes the next call load again (the map loaded is still
 * used by this call, as Citus's own metadata was when the load began).
 */
static void
es_shards_current(const EsCatalog *cat)
{
	uint64		seen;

	if (es_shards.valid && es_shards.placeholder[ES_SHARD_EVENTS] == cat->events_relid)
		return;

	if (!es_shard_callback_registered)
	{
		CacheRegisterRelcacheCallback(es_shard_relcache_callback, (Datum) 0);
		es_shard_callback_registered = true;
	}
	if (es_shards.cxt == NULL)
		es_shards.cxt = AllocSetContextCreate(CacheMemoryContext,
											  "eventstore shard map",
											  ALLOCSET_SMALL_SIZES);
	es_shards.valid = false;
	MemoryContextReset(es_shards.cxt);
	es_shards.shards = NULL;
	es_shards.nshards = 0;
	es_shards.distributed = false;
	es_shards.local_group = -1;
	es_shards.colocation_id = 0;
	es_shards.nfunctions = 0;
	es_shards.functions = NULL;
	es_shards.placeholder[ES_SHARD_EVENTS] = cat->events_relid;
	es_shards.placeholder[ES_SHARD_EVENT_IDS] = cat->event_ids_relid;
	es_shards.placeholder[ES_SHARD_STREAMS] = cat->streams_relid;
	es_shards.placeholder[ES_SHARD_ARCHIVE] = cat->archive_relid;
	seen = es_shards.invalidations;

	/* Citus keeps its metadata in pg_catalog, once it is created here */
	if (OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)))
		es_shards_load(cat);

	es_shards.valid = (es_shards.invalidations == seen);
}

bool
es_store_distributed(const EsCatalog *cat)
{
	es_shards_current(cat);
	return es_shards.distributed;
}

/*
 * The bytes of a stream id that decide its shard: a marker stream "$$S"
 * goes with S.
 */
static void
es_partition_key(text *stream_id, const char **key, int *len)
{
	*key = VARDATA_ANY(stream_id);
	*len = VARSIZE_ANY_EXHDR(stream_id);
	if (es_is_marker_stream(*key, *len))
	{
		*key += ES_MARKER_STREAM_PREFIX_LEN;
		*len -= ES_MARKER_STREAM_PREFIX_LEN;
	}
}

/*
 * The hash Citus gives a value of the distribution column: that of the
 * type's hash function, hashtext() for text, which for a deterministic
 * collation such as "C" hashes the bytes.
 */
static int32
es_stream_hash(text *stream_id)
{
	const char *key;
	int			len;

	es_partition_key(stream_id, &key, &len);
	return DatumGetInt32(hash_any((const unsigned char *) key, len));
}

/* A relation of a local shard: "name_shardid" in our schema. */
static Oid
es_shard_relation(const EsCatalog *cat, const char *name, int64 shardid)
{
	char	   *relname = psprintf("%s_" INT64_FORMAT, name, shardid);
	Oid			relid = get_relname_relid(relname, cat->namespace_oid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard relation \"eventstore.%s\" does not exist on this node", relname),
				 errdetail("Citus places shard " INT64_FORMAT " on this node.", shardid),
				 errhint("Retry; if it persists, check the shard placements in pg_dist_placement.")));
	pfree(relname);
	return relid;
}

static void
es_shard_resolve(const EsCatalog *cat, EsShard *s)
{
	EsCatalog	c = *cat;

	for (int t = 0; t < ES_NUM_SHARDED; t++)
		if (s->shardid[t] == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("eventstore is distributed incompletely"),
					 errdetail("eventstore.events is distributed, but not every table keyed by stream is, co-located with it."),
					 errhint("Distribute the store with eventstore.distribute().")));

	c.events_relid = es_shard_relation(cat, "events", s->shardid[ES_SHARD_EVENTS]);
	c.stream_index_relid = es_shard_relation(cat, "events_stream_version_key",
											 s->shardid[ES_SHARD_EVENTS]);
	c.position_index_relid = es_shard_relation(cat, "events_pkey", s->shardid[ES_SHARD_EVENTS]);
	c.event_ids_relid = es_shard_relation(cat, "event_ids", s->shardid[ES_SHARD_EVENT_IDS]);
	c.event_ids_pkey_relid = es_shard_relation(cat, "event_ids_pkey",
											   s->shardid[ES_SHARD_EVENT_IDS]);
	c.streams_relid = es_shard_relation(cat, "streams", s->shardid[ES_SHARD_STREAMS]);
	c.streams_pkey_relid = es_shard_relation(cat, "streams_pkey", s->shardid[ES_SHARD_STREAMS]);
	c.archive_relid = es_shard_relation(cat, "archived_events", s->shardid[ES_SHARD_ARCHIVE]);
	c.archive_index_relid = es_shard_relation(cat, "archived_events_stream_version_key",
											  s->shardid[ES_SHARD_ARCHIVE]);
	/* a shard has the columns of its table, but not its dropped ones */
	es_catalog_map_columns(&c);
	s->cat = c;
	s->resolved = true;
}

/*
 * The tables that hold a stream, as a catalog: "cat" itself on a single
 * server; on a distributed store a copy (in the current memory context)
 * naming the stream's local shards.  ST005 when the stream's shard is not
 * placed on this node.
 */
/* The range of the map that holds a stream, wherever it is placed. */
static EsShard *
es_find_shard(text *stream_id)
{
	int32		hash;
	int			lo,
				hi;
	EsShard    *s = NULL;

	hash = es_stream_hash(stream_id);
	lo = 0;
	hi = es_shards.nshards - 1;
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		EsShard    *m = &es_shards.shards[mid];

		if (hash < m->min_hash)
			hi = mid - 1;
		else if (hash > m->max_hash)
			lo = mid + 1;
		else
		{
			s = m;
			break;
		}
	}
	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no shard of eventstore.events covers stream \"%s\"",
						text_to_cstring(stream_id)),
				 errdetail("Its hash is %d.", hash)));
	return s;
}

/* The range that holds a stream, placed here, its relations resolved. */
static EsShard *
es_stream_shard(const EsCatalog *cat, text *stream_id)
{
	EsShard    *s = es_find_shard(stream_id);

	if (!s->local)
		ereport(ERROR,
				(errcode(ERRCODE_ES_STREAM_NOT_LOCAL),
				 errmsg("stream \"%s\" is stored on another node",
						text_to_cstring(stream_id)),
				 errdetail("Shard " INT64_FORMAT " of eventstore.events holds it and has no placement on this node.",
						   s->shardid[ES_SHARD_EVENTS]),
				 errhint("Call the eventstore functions of one stream through the coordinator, which runs them where the stream is stored.")));
	if (!s->resolved)
		es_shard_resolve(cat, s);
	return s;
}

static const EsCatalog *
es_shard_catalog_copy(const EsShard *s)
{
	EsCatalog  *copy = palloc(sizeof(EsCatalog));

	*copy = s->cat;
	return copy;
}

/*
 * The tables that hold a stream, as a catalog: "cat" itself on a single
 * server; on a distributed store a copy (in the current memory context)
 * naming the stream's local shards.  ST005 when the stream's shard is not
 * placed on this node.
 */
const EsCatalog *
es_stream_catalog(const EsCatalog *cat, text *stream_id)
{
	es_shards_current(cat);
	if (!es_shards.distributed)
		return cat;
	return es_shard_catalog_copy(es_stream_shard(cat, stream_id));
}

/*
 * This node draws the positions of its class (ES_POSITION_STRIDE): else a
 * node added to the cluster after distribute() would draw numbers other
 * nodes draw.  55000 until eventstore.align_positions() numbered it.
 */
static void
es_check_numbered(const EsCatalog *cat)
{
	if (es_positions_stride(cat) != ES_POSITION_STRIDE)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node does not draw the global positions of the distributed store yet"),
				 errdetail("Each node of a distributed store draws its own class of positions; this node's sequence has not been set up for it."),
				 errhint("Run SELECT eventstore.align_positions() on the coordinator (needed after adding a node).")));
}

/*
 * The positions of a shard that came here from another node (a Citus
 * shard move) were drawn by that node's sequence, which may be ahead of
 * ours: before this backend first appends to a shard relation, make this
 * node draw above the highest position stored in it, so that the shard's
 * positions keep increasing.  A shard relation that arrives again is a new
 * relation, so the check is made again.
 */
static void
es_shard_check_positions(const EsCatalog *cat, EsShard *s)
{
	Snapshot	snapshot;
	int64		highest;

	snapshot = RegisterSnapshot(GetLatestSnapshot());
	highest = es_highest_position(s->cat.events_relid, s->cat.position_index_relid,
								  snapshot, PG_INT64_MAX);
	UnregisterSnapshot(snapshot);

	es_check_numbered(cat);
	if (highest > 0)
		es_positions_advance(cat, highest, es_shards.local_group);
	s->positions_checked = true;
}

/*
 * Take, until the end of the transaction, the lock by which Citus keeps
 * the shards of a range (their placements) from moving while they are
 * written: Citus's own writers hold it in ShareLock mode, and a shard move
 * or split that blocks writes holds it exclusively on every node with
 * metadata.  Its tag is Citus's: the advisory lock of the range's index and
 * the tables' co-location group, class 8 (Citus 11 to 13).
 */
static void
es_lock_shard_placement(int index)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) index,
						 (uint32) es_shards.colocation_id, 8);
	(void) LockAcquire(&tag, ShareLock, false, false);
	/* a move that finished meanwhile changed the metadata */
	AcceptInvalidationMessages();
}

/*
 * The range of a stream a call writes, on a distributed store (NULL on a
 * single server): its shard stays where it is until the transaction ends,
 * and was looked up after any move that had it locked.
 */
static EsShard *
es_write_shard(const EsCatalog *cat, text *stream_id)
{
	es_shards_current(cat);
	if (!es_shards.distributed)
		return NULL;
	es_lock_shard_placement((int) (es_find_shard(stream_id) - es_shards.shards));
	/* the map is current again, and the stream's shard still placed here */
	es_shards_current(cat);
	if (!es_shards.distributed)
		return NULL;
	return es_stream_shard(cat, stream_id);
}

/* es_stream_catalog() for a call that writes the stream (a lifecycle change). */
const EsCatalog *
es_stream_catalog_for_write(const EsCatalog *cat, text *stream_id)
{
	EsShard    *s = es_write_shard(cat, stream_id);

	return s ? es_shard_catalog_copy(s) : cat;
}

/* es_stream_catalog_for_write() for an append, which draws positions. */
const EsCatalog *
es_stream_catalog_for_append(const EsCatalog *cat, text *stream_id)
{
	EsShard    *s = es_write_shard(cat, stream_id);

	if (s == NULL)
		return cat;
	if (!s->positions_checked)
		es_shard_check_positions(cat, s);
	return es_shard_catalog_copy(s);
}

/*
 * The partitions of the global log: on a distributed store each hash
 * range (shard) is one, named by the lowest hash it covers; a single
 * server is one partition covering every hash.  Returns their number and,
 * in *parts (allocated in the current memory context), each with where it
 * is placed, by increasing id.
 */
int
es_log_partitions(const EsCatalog *cat, EsPartition **parts)
{
	EsPartition *p;

	es_shards_current(cat);
	if (!es_shards.distributed)
	{
		p = palloc0(sizeof(EsPartition));
		p->id = PG_INT32_MIN;
		p->local = true;
		*parts = p;
		return 1;
	}
	p = palloc0(sizeof(EsPartition) * Max(es_shards.nshards, 1));
	for (int i = 0; i < es_shards.nshards; i++)
	{
		const EsShard *s = &es_shards.shards[i];

		p[i].id = s->min_hash;
		p[i].local = s->local;
		p[i].node_name = s->node_name ? pstrdup(s->node_name) : NULL;
		p[i].node_port = s->node_port;
	}
	*parts = p;
	return es_shards.nshards;
}

/*
 * The tables of a local partition (es_log_partitions), as a catalog in the
 * current memory context; NULL when it is not (or no longer) placed here.
 */
const EsCatalog *
es_partition_catalog(const EsCatalog *cat, int32 id)
{
	es_shards_current(cat);
	if (!es_shards.distributed)
		return (id == PG_INT32_MIN) ? cat : NULL;
	for (int i = 0; i < es_shards.nshards; i++)
	{
		EsShard    *s = &es_shards.shards[i];

		if (s->min_hash != id)
			continue;
		if (!s->local)
			return NULL;
		if (!s->resolved)
			es_shard_resolve(cat, s);
		return es_shard_catalog_copy(s);
	}
	return NULL;
}

/*
 * Refuse what needs the whole store on one server ("what" names it) when
 * the store is distributed: 0A000.
 */
void
es_require_single_server(const EsCatalog *cat, const char *what, const char *hint)
{
	if (es_store_distributed(cat))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s is not supported on a distributed store", what),
				 errdetail("eventstore.events is distributed with Citus; this version reads and writes one stream at a time there."),
				 errhint("%s", hint ? hint : "See \"Distributing a store with Citus\" in the documentation.")));
}

/*
 * eventstore.is_distributed() returns boolean: whether eventstore.events
 * is distributed with Citus in this database.
 */
PG_FUNCTION_INFO_V1(eventstore_is_distributed);
Datum
eventstore_is_distributed(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(es_store_distributed(es_catalog()));
}

/*
 * Trigger eventstore._single_server_only(what [, hint]): refuses the
 * statement, or the row, on a distributed store.  Guards the tables of what
 * this version runs on one server only (inline projections, policies).
 */
PG_FUNCTION_INFO_V1(eventstore_single_server_only);
Datum
eventstore_single_server_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		trigdata->tg_trigger->tgnargs < 1 || trigdata->tg_trigger->tgnargs > 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("eventstore._single_server_only() must be called as a trigger with one or two arguments")));
	es_require_single_server(es_catalog(), trigdata->tg_trigger->tgargs[0],
							 trigdata->tg_trigger->tgnargs > 1 ? trigdata->tg_trigger->tgargs[1] : NULL);
	/* a row trigger lets the row through on a single server */
	if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_trigtuple);
	return PointerGetDatum(NULL);
}

/*
 * eventstore._lift_positions(floor bigint) returns boolean: make this node,
 * numbered for a distributed store, draw positions above floor from now
 * on (eventstore._lift_all_positions runs it on every node for a reader of
 * the merged log).  The sequence's lock waits for the transactions that
 * drew from it, within the lock_timeout of the function's SET clause.
 */
PG_FUNCTION_INFO_V1(eventstore_lift_positions);
Datum
eventstore_lift_positions(PG_FUNCTION_ARGS)
{
	int64		floor;

	es_arg_not_null(fcinfo, 0, "floor");
	floor = PG_GETARG_INT64(0);
	if (floor < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("floor must not be negative")));
	PreventCommandIfReadOnly("eventstore._lift_positions()");
	PreventCommandDuringRecovery("eventstore._lift_positions()");
	PG_RETURN_BOOL(es_positions_lift(es_catalog(), floor));
}

/*
 * eventstore._advance_positions(floor bigint) returns void: number this
 * node for the distributed store -- its sequence steps by
 * ES_POSITION_STRIDE through the numbers congruent to its node group --
 * and make it draw at or above floor (eventstore.align_positions runs it on
 * every node).
 */
PG_FUNCTION_INFO_V1(eventstore_advance_positions);
Datum
eventstore_advance_positions(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat = es_catalog();
	int64		floor;
	EsGuard		g;
	int			ret;
	int32		group;
	bool		isnull;

	es_arg_not_null(fcinfo, 0, "floor");
	floor = PG_GETARG_INT64(0);
	if (floor < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("floor must not be negative")));
	PreventCommandIfReadOnly("eventstore._advance_positions()");
	PreventCommandDuringRecovery("eventstore._advance_positions()");
	/*
	 * Not "is the store distributed": distribute() numbers the workers over
	 * connections of their own, which do not see its transaction yet.
	 */
	if (!OidIsValid(get_relname_relid("pg_dist_local_group", PG_CATALOG_NAMESPACE)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"citus\" is not installed in this database")));

	/* as the owner of the sequence, under a pinned search_path */
	es_spi_begin(&g, es_relation_owner(cat->position_seq_relid));
	ret = SPI_execute("SELECT groupid FROM pg_catalog.pg_dist_local_group", true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read pg_dist_local_group");
	group = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull || group < 0 || group >= ES_POSITION_STRIDE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("node group %d cannot draw positions of the distributed store", group),
				 errdetail("Node groups 0 to %d can.", ES_POSITION_STRIDE - 1)));
	if (es_positions_stride(cat) != ES_POSITION_STRIDE)
	{
		ret = SPI_execute(psprintf("ALTER SEQUENCE eventstore.global_position_seq INCREMENT BY %d",
								   ES_POSITION_STRIDE), false, 0);
		if (ret != SPI_OK_UTILITY)
			elog(ERROR, "could not number the global positions: %s", SPI_result_code_string(ret));
		CommandCounterIncrement();
	}
	es_spi_end(&g);
	es_positions_advance(cat, floor, group);
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * Before Citus delegates a call
 * ---------------------------------------------------------------------
 */

static planner_hook_type es_prev_planner = NULL;

/*
 * A statement Citus may delegate to a node as a call of one function:
 * "SELECT f(args)" or "SELECT * FROM f(args)".  Sets the function and its
 * first argument.
 */
static bool
es_single_call(Query *parse, Oid *funcid, Node **first_arg)
{
	Node	   *expr;

	if (parse->commandType != CMD_SELECT || parse->utilityStmt != NULL)
		return false;
	if (parse->rtable == NIL && list_length(parse->targetList) == 1)
		expr = (Node *) ((TargetEntry *) linitial(parse->targetList))->expr;
	else if (list_length(parse->rtable) == 1)
	{
		RangeTblEntry *rte = linitial(parse->rtable);

		if (rte->rtekind != RTE_FUNCTION || list_length(rte->functions) != 1)
			return false;
		expr = ((RangeTblFunction *) linitial(rte->functions))->funcexpr;
	}
	else
		return false;
	if (expr == NULL || !IsA(expr, FuncExpr) || ((FuncExpr *) expr)->args == NIL)
		return false;
	*funcid = ((FuncExpr *) expr)->funcid;
	*first_arg = linitial(((FuncExpr *) expr)->args);
	return true;
}

static int
es_oid_cmp(const void *a, const void *b)
{
	Oid			x = *(const Oid *) a;
	Oid			y = *(const Oid *) b;

	return (x > y) - (x < y);
}

/*
 * A call of one of our functions that Citus delegates by its stream id
 * (eventstore.distribute): refuse a NULL stream id here (Citus 13.2 would
 * hash it and crash), and take the lock that keeps the stream's shard where
 * it is before Citus picks the node, as Citus does for its own writes, so a
 * call made during a shard move waits for the move and goes to the node
 * that holds the shard after it.
 */
static void
es_before_delegation(Oid funcid, Node *arg, ParamListInfo params)
{
	const EsCatalog *cat = es_catalog_lookup(true);
	Datum		value;
	bool		isnull;
	EsShard    *s;

	if (cat == NULL)
		return;
	es_shards_current(cat);
	if (!es_shards.distributed ||
		bsearch(&funcid, es_shards.functions, es_shards.nfunctions, sizeof(Oid), es_oid_cmp) == NULL)
		return;

	/*
	 * The stream id as Citus computes it to route the call: the argument
	 * folded to a constant, with the statement's bound parameters ('x-' ||
	 * $1 as well as a literal).  One that does not fold is not delegated.
	 */
	{
		PlannerGlobal glob;
		PlannerInfo root;
		Node	   *folded;

		memset(&glob, 0, sizeof(glob));
		glob.type = T_PlannerGlobal;
		glob.boundParams = params;
		memset(&root, 0, sizeof(root));
		root.type = T_PlannerInfo;
		root.glob = &glob;
		folded = estimate_expression_value(&root, arg);
		if (!IsA(folded, Const) || ((Const *) folded)->consttype != TEXTOID)
			return;
		value = ((Const *) folded)->constvalue;
		isnull = ((Const *) folded)->constisnull;
	}

	if (isnull)
		es_null_arg_error("stream_id");
	s = es_find_shard(DatumGetTextPP(value));
	es_lock_shard_placement((int) (s - es_shards.shards));
}

static PlannedStmt *
es_planner(Query *parse, const char *query_string, int cursor_options,
		   ParamListInfo params)
{
	Oid			funcid;
	Node	   *arg;

	if (es_single_call(parse, &funcid, &arg))
	{
		Oid			nsp = get_func_namespace(funcid);

		if (OidIsValid(nsp) && nsp == get_namespace_oid("eventstore", true))
			es_before_delegation(funcid, arg, params);
	}
	if (es_prev_planner)
		return es_prev_planner(parse, query_string, cursor_options, params);
	return standard_planner(parse, query_string, cursor_options, params);
}

void
es_shard_install_hooks(void)
{
	es_prev_planner = planner_hook;
	planner_hook = es_planner;
}
