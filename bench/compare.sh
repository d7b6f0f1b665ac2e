#!/usr/bin/env bash
# Before/after: the backend CPU time one statement costs under two builds of
# eventstore, each installed into its own PostgreSQL (make PG_CONFIG=...
# install).  Each round starts a throwaway cluster per build, one after the
# other, and runs the statement N times in one session, a transaction each
# (a DO loop with COMMIT), after a warm-up; the session's CPU time (user +
# system, from /proc) divided by N is reported per round, and the median.
# CPU time, not wall time: on a busy machine it is the steadier measure.
#
#   bash bench/compare.sh PG_CONFIG_A PG_CONFIG_B
#
# Settings (environment): COMPARE_N (100000), COMPARE_ROUNDS (3),
# COMPARE_SQL (the statement; default an append of one small event to one
# of 1000 streams, "i" is the loop's counter).  Works as root (the servers
# run as "postgres") and as a normal user.  Linux only (/proc).
set -euo pipefail
[ $# = 2 ] || { echo "usage: bash bench/compare.sh PG_CONFIG_A PG_CONFIG_B" >&2; exit 2; }
cd "$(dirname "$0")/.."
. scripts/common.sh

n=${COMPARE_N:-100000}
rounds=${COMPARE_ROUNDS:-3}
sql=${COMPARE_SQL:-"PERFORM eventstore.append('s' || (i % 1000), 'T', '{\"a\": 1}')"}
work=$(es_workdir)
bin_stop=
cleanup() {
	for s in a b; do
		if [ -n "$bin_stop" ] && [ -f "$work/$s/data/postmaster.pid" ]; then
			es_as_server_user "$bin_stop" -D "$work/$s/data" -m immediate -w stop >/dev/null 2>&1 || true
		fi
	done
	rm -rf "$work"
}
trap cleanup EXIT

port=$(es_free_port 55990)
declare -A results
for round in $(seq 1 "$rounds"); do
	for side in a b; do
		if [ $side = a ]; then pgc=$1; else pgc=$2; fi
		bin=$("$pgc" --bindir)
		bin_stop=$bin/pg_ctl
		d=$work/$side
		rm -rf "$d"
		mkdir -p "$d"
		[ -n "$ES_RUN_AS" ] && chown "$ES_RUN_AS" "$d"
		es_as_server_user "$bin/initdb" -D "$d/data" -A trust >/dev/null
		printf "%s\n" "shared_preload_libraries = 'eventstore'" "listen_addresses = ''" \
			"unix_socket_directories = '$d'" "port = $port" "fsync = off" \
			"synchronous_commit = off" >> "$d/data/postgresql.conf"
		es_as_server_user "$bin/pg_ctl" -D "$d/data" -l "$d/log" -w start >/dev/null
		cat > "$d/run.sql" <<SQL
\\set ON_ERROR_STOP 1
CREATE EXTENSION eventstore;
SELECT pg_backend_pid() AS pid \\gset
\\setenv COMPARE_PID :pid
DO \$\$ BEGIN FOR i IN 1..$((n / 10)) LOOP $sql; COMMIT; END LOOP; END \$\$;
\\! awk '{print \$14 + \$15}' /proc/\$COMPARE_PID/stat > $d/t0
DO \$\$ BEGIN FOR i IN 1..$n LOOP $sql; COMMIT; END LOOP; END \$\$;
\\! awk '{print \$14 + \$15}' /proc/\$COMPARE_PID/stat > $d/t1
SQL
		chmod a+r "$d/run.sql"
		es_as_server_user "$bin/psql" -h "$d" -p "$port" -X -q -f "$d/run.sql" postgres
		ticks=$(( $(cat "$d/t1") - $(cat "$d/t0") ))
		# clock ticks (1/100 s) per statement, in microseconds
		us=$(awk -v t="$ticks" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
		results[$side]="${results[$side]:-} $us"
		echo "round $round, $side ($(dirname "$bin")): $us us of backend CPU per statement"
		es_as_server_user "$bin/pg_ctl" -D "$d/data" -w stop >/dev/null
	done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ma=$(echo "${results[a]}" | median)
mb=$(echo "${results[b]}" | median)
echo "median: a $ma us, b $mb us, b/a $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.3f", b / a }')"
