#!/usr/bin/env bash
# Instructions per call of a durable subscription against the plain work
# queue of the subscriptions suite, counted by callgrind: unlike events per
# second, the counts do not move with the machine's disk or its neighbours.
#
#   bash bench/instructions.sh            # batches of 1, 10 and 100
#   BENCH_INSN_BATCHES="1" bash bench/instructions.sh
#
# A throwaway cluster gets BENCH_INSN_EVENTS events (100000; streams of 4,
# the bench's payload), a subscription created at the origin and the plain
# queue of the same events (bench/subscriptions/queue.sql).  Then, for each
# batch size B and contender, a copy of that cluster is run in single-user
# mode under `valgrind --tool=callgrind`, executing one prepared statement
# BENCH_INSN_CALLS (300) and then twice as many times; the difference over
# BENCH_INSN_CALLS is one round trip, its commit included (user-space
# instructions: the flush itself is the kernel's):
#
#   subscription  SELECT subscription_ack('bench', 'c1', (SELECT
#                 array_agg(global_position) FROM subscription_fetch('bench',
#                 'c1', B)))  -- fetch and ack in one transaction
#   plain         the statement of bench/subscriptions/consume.plain.pgbench
#
# Any error in a run fails the script.  Uses the eventstore that is
# installed (PG_CONFIG, else the system's 15) and valgrind; as root the
# server runs as "postgres".  Writes bench/results/instructions.md.
set -euo pipefail
BENCH_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$BENCH_ROOT"
. scripts/common.sh

EVENTS=${BENCH_INSN_EVENTS:-100000}
CALLS=${BENCH_INSN_CALLS:-300}
BATCHES=${BENCH_INSN_BATCHES:-1 10 100}
BINDIR=$("$PG_CONFIG" --bindir)
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
[ -f "$("$PG_CONFIG" --pkglibdir)/eventstore.so" ] ||
	{ echo "eventstore is not installed (make install first)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/eventstore-insn.XXXXXX")
chmod 755 "$work"
[ -z "$ES_RUN_AS" ] || chown "$ES_RUN_AS" "$work"
cleanup() {
	es_as_server_user "$BINDIR/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
say() { echo "== $*" >&2; }

say "a cluster with $EVENTS events, a subscription and the plain queue ($work)"
es_as_server_user "$BINDIR/initdb" -D "$work/data" -A trust -U postgres --no-instructions >"$work/initdb.log" 2>&1 ||
	{ cat "$work/initdb.log" >&2; exit 1; }
cat >>"$work/data/postgresql.conf" <<CONF
shared_preload_libraries = 'eventstore'
listen_addresses = ''
unix_socket_directories = '$work'
port = 54329
autovacuum = off
CONF
es_as_server_user "$BINDIR/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
psql_() { es_as_server_user "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p 54329 -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE insn"
# (appended 4,000 at a time: each stream appended to holds a lock until
# the commit)
psql_ -d insn -c "CREATE EXTENSION eventstore" -f bench/subscriptions/queue.sql \
	-c "DO \$\$ BEGIN FOR k IN 0 .. ($EVENTS - 1) / 4000 LOOP
	        PERFORM eventstore.append('s-' || (i / 4), 'Happened',
	                                  jsonb_build_object('n', i, 'pad', repeat('x', 100)))
	           FROM generate_series(k * 4000 + 1, least($EVENTS, (k + 1) * 4000)) AS i;
	        COMMIT;
	    END LOOP; END \$\$" \
	-c "INSERT INTO bench_subs.queue SELECT * FROM eventstore.events" \
	-c "SELECT eventstore.create_subscription('bench')" >/dev/null
psql_ -d insn -c "VACUUM ANALYZE" >/dev/null
es_as_server_user "$BINDIR/pg_ctl" -D "$work/data" -w stop >/dev/null
sed -i "s/^port = 54329$/port = 54330/" "$work/data/postgresql.conf"
mv "$work/data" "$work/origin"

# count CONTENDER BATCH N: instructions of a single-user backend that runs
# the contender's statement N times, on a fresh copy of the cluster
count() {
	local contender=$1 batch=$2 n=$3 sql=$work/run.sql out
	case $contender in
	subscription)
		echo "PREPARE p AS SELECT eventstore.subscription_ack('bench', 'c1', (SELECT coalesce(array_agg(f.global_position), '{}') FROM eventstore.subscription_fetch('bench', 'c1', $batch) f));" >"$sql" ;;
	plain)
		{ printf 'PREPARE p AS '; grep -v '^--' bench/subscriptions/consume.plain.pgbench |
			sed "s/:batch/$batch/; s/ *\\\\gset\$/;/" | tr '\n' ' '; echo; } >"$sql" ;;
	esac
	for _ in $(seq "$n"); do echo "EXECUTE p;"; done >>"$sql"
	chmod 644 "$sql"
	rm -rf "$work/data"
	cp -a "$work/origin" "$work/data"
	out=$work/$contender-$batch-$n.log
	es_as_server_user valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
		"$BINDIR/postgres" --single -D "$work/data" insn <"$sql" >"$out" 2>&1
	if grep -q 'ERROR' "$out"; then
		grep -m 3 'ERROR' "$out" >&2
		say "$contender, batches of $batch: the statement failed"
		exit 1
	fi
	sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$out"
}

result=bench/results/instructions.md
mkdir -p bench/results
{
	echo "## Instructions per round trip: a durable subscription against the plain queue"
	echo
	echo "callgrind, single-user backend, PostgreSQL $("$PG_CONFIG" --version | sed 's/^PostgreSQL //'), $EVENTS events, $CALLS and $((2 * CALLS)) calls; eventstore.so md5 $(md5sum "$("$PG_CONFIG" --pkglibdir)/eventstore.so" | cut -c1-12)."
	echo
	echo "| batch | plain queue | subscription (fetch + ack, one transaction) | plain / subscription |"
	echo "|---:|---:|---:|---:|"
} >"$result"
for b in $BATCHES; do
	declare -A per
	for c in plain subscription; do
		say "$c, batches of $b"
		one=$(count "$c" "$b" "$CALLS")
		two=$(count "$c" "$b" $((2 * CALLS)))
		per[$c]=$(((two - one) / CALLS))
	done
	awk -v b="$b" -v p="${per[plain]}" -v s="${per[subscription]}" \
		'BEGIN { printf "| %d | %dk | %dk | **%.2f** |\n", b, p / 1000, s / 1000, p / s }' >>"$result"
done
cat "$result"
