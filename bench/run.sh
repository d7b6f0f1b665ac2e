#!/usr/bin/env bash
# Benchmarks of eventstore, side by side with a plain INSERT of the same rows
# and a PL/pgSQL store of the same semantics, on a throwaway cluster that is
# removed at the end.  Works as root (the server runs as "postgres") and as a
# normal user.  Uses the eventstore that is installed; it does not build.
#
#   bash bench/run.sh                 # every suite (append ... subscriptions)
#   bash bench/run.sh global          # named suites
#   BENCH_QUICK=1 bash bench/run.sh   # quick: 3 s per run, 1 round
#   BENCH_SMOKE=1 bash bench/run.sh   # smoke test (CI): every suite for seconds
#
# Settings (environment): BENCH_DURATION (seconds per run, 15; 3 with
# BENCH_QUICK=1), BENCH_ROUNDS (2; 1 with BENCH_QUICK=1; the median is
# reported), BENCH_CLIENTS ("1 8"), BENCH_JOBS (2), BENCH_CONTENDERS,
# BENCH_APPEND_WORKLOADS, BENCH_PRELOAD_EVENTS, BENCH_PLPGSQL_NOTIFY,
# BENCH_SHARED_BUFFERS, BENCH_MAX_WAL_SIZE, BENCH_SYNCHRONOUS_COMMIT,
# BENCH_KEEP, and BENCH_GLOBAL_* (global), BENCH_PROJ_* (projections),
# BENCH_STATE_* (state), BENCH_LC_* (lifecycle) and BENCH_SUBS_*
# (subscriptions) for those suites, BENCH_SMOKE: see
# bench/README.md.
# PG_CONFIG or PGBIN: another PostgreSQL than the system's 15, e.g.
# PG_CONFIG=$(bash scripts/postgres.sh 18) (see README, "Supported versions").
set -euo pipefail
BENCH_ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$BENCH_ROOT"
. scripts/common.sh
. bench/lib.sh

# BENCH_SMOKE=1: every suite (citus too, which skips where Citus is not
# installed), each setup run twice (a setup must be idempotent: the append
# suite's runs again for synchronous_commit = off), for seconds, the smallest
# data; for CI (.ci/run): it fails on any error, its numbers mean nothing.
[ -z "$BENCH_IS_SMOKE" ] || bench_smoke_defaults
if [ -n "$BENCH_IS_QUICK" ]; then
	BENCH_DURATION=${BENCH_DURATION:-3}
	BENCH_ROUNDS=${BENCH_ROUNDS:-1}
fi
BENCH_DURATION=${BENCH_DURATION:-15}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
BENCH_CLIENTS=${BENCH_CLIENTS:-1 8}
BENCH_RESULTS=$BENCH_ROOT/bench/results
default_suites="append global peer hot reads memory scale projections state lifecycle subscriptions"
[ -z "$BENCH_IS_SMOKE" ] || default_suites="$default_suites citus"
suites=${*:-$default_suites}

for s in $suites; do
	[ -f "bench/suites/$s.sh" ] || { echo "unknown suite: $s (see bench/suites/)" >&2; exit 2; }
	# shellcheck source=/dev/null
	. "bench/suites/$s.sh"
done
[ -x "$BENCH_PGBENCH" ] || { echo "pgbench not found at $BENCH_PGBENCH" >&2; exit 1; }
[ -f "$($PG_CONFIG --pkglibdir)/eventstore.so" ] ||
	{ echo "eventstore is not installed (run scripts/demo.sh or make install first)" >&2; exit 1; }

trap bench_cluster_stop EXIT
trap 'exit 130' INT TERM
bench_cluster_start
export BENCH_MACHINE  # read by the suites
BENCH_MACHINE=$(bench_machine)
mkdir -p "$BENCH_RESULTS"

for s in $suites; do
	t0=$(date +%s)
	"${s}_setup"
	[ -z "$BENCH_IS_SMOKE" ] || { bench_log "smoke: $s: its setup once more (idempotent?)"; "${s}_setup"; }
	"${s}_run" "$BENCH_RESULTS/$s.csv"
	# once: a report asks the server and runs many small programs
	"${s}_report" "$BENCH_RESULTS/$s.csv" >"$BENCH_WORK/$s.report.md"
	{
		cat "$BENCH_WORK/$s.report.md"
		echo
		echo "Every run (raw, from $s.csv):"
		echo
		echo '```'
		cat "$BENCH_RESULTS/$s.csv"
		echo '```'
	} >"$BENCH_RESULTS/$s.md"
	echo
	cat "$BENCH_WORK/$s.report.md"
	echo
	echo "(written to bench/results/$s.md, every run in bench/results/$s.csv)"
	bench_log "$s: done in $(($(date +%s) - t0)) s"
done

# The append suite once more with synchronous_commit = off: without the WAL
# flush of every commit, the rates show what each contender costs in CPU.
# BENCH_ASYNC=0 skips it.
if [ "${BENCH_ASYNC:-1}" != 0 ] && [[ " $suites " == *" append "* ]]; then
	bench_psql -q -c "ALTER SYSTEM SET synchronous_commit = off" -c "SELECT pg_reload_conf()" >/dev/null
	append_setup
	append_run "$BENCH_RESULTS/append_async.csv"
	append_report "$BENCH_RESULTS/append_async.csv" >"$BENCH_RESULTS/append_async.md"
	bench_psql -q -c "ALTER SYSTEM RESET synchronous_commit" -c "SELECT pg_reload_conf()" >/dev/null
	echo
	cat "$BENCH_RESULTS/append_async.md"
	echo
	echo "(written to bench/results/append_async.md)"
fi
