/*-------------------------------------------------------------------------
 *
 * storage.c
 *	  The ground every path stands on: the per-stream lock and the head of
 *	  a stream in its (stream_id, stream_version) index.  Appends, reads and
 *	  the lifecycle functions all use these; they call nothing above.
 *
 * src/storage.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "eventstore.h"

/*
 * Take the transaction-scoped lock that serialises appends to one stream
 * (and the changes of its lifecycle state).  Two streams whose ids hash
 * alike merely serialise; nothing fails.  Without wait, returns false when
 * the lock is busy.
 */
bool
es_lock_stream(text *stream_id, bool wait)
{
	LOCKTAG		tag;
	uint64		hash;

	hash = hash_bytes_extended((const unsigned char *) VARDATA_ANY(stream_id),
							   VARSIZE_ANY_EXHDR(stream_id), 0);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 (uint32) (hash >> 32), (uint32) hash,
						 ES_ADVISORY_LOCK_CLASS);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * The version of the newest event of a stream visible to "snapshot", 0 when
 * there is none: one backward step of the (stream_id, stream_version) index.
 * Used with SnapshotSelf by appends and with the caller's MVCC snapshot by
 * eventstore.stream_version().
 */
int64
es_stream_head(Relation heap, Relation stream_index, text *stream_id,
			   Snapshot snapshot, TupleTableSlot *slot)
{
	ScanKeyData key;
	IndexScanDesc scan;
	int64		version = 0;

	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   stream_index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(stream_id));

	scan = index_beginscan(heap, stream_index, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;

		version = DatumGetInt64(slot_getattr(slot, Anum_es_stream_version, &isnull));
		Assert(!isnull);
	}
	index_endscan(scan);
	ExecClearTuple(slot);

	return version;
}
