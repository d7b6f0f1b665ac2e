# Helpers shared by the benchmark suites (bench/suites/*.sh), sourced by
# bench/run.sh after scripts/common.sh.  Provides: a throwaway cluster
# (bench_cluster_start / bench_cluster_stop), a database per suite
# (bench_create_db), the contenders' tables (bench_table, bench_sequence,
# bench_reset, bench_preload), psql and pgbench wrappers, a quiet point
# between runs, the order of the contenders in a cell (bench_rotate), the
# parts of a suite (bench_parts, bench_part), statistics and the machine
# description.  Every suite writes its results to bench/results/SUITE.csv
# and bench/results/SUITE.md (bench/run.sh; BENCH_RESULTS).
#
# Globals set here: BENCH_WORK (work dir), BENCH_PORT, BENCH_DB, BENCH_DATA,
# BENCH_METADATA, BENCH_IS_QUICK, BENCH_IS_SMOKE.

BENCH_DB=bench
BENCH_PGBENCH=$PG_BINDIR/pgbench
BENCH_PSQL=$PG_BINDIR/psql

# BENCH_IS_QUICK: 1 when BENCH_QUICK asks for a smoke test (short runs, one
# round, smaller data), else empty.
BENCH_IS_QUICK=
if [ -n "${BENCH_QUICK:-}" ] && [ "${BENCH_QUICK}" != 0 ]; then
	# shellcheck disable=SC2034 # read by run.sh and the suites
	BENCH_IS_QUICK=1
fi

# BENCH_IS_SMOKE: 1 when BENCH_SMOKE asks for a smoke run (every suite for
# seconds, the smallest data: to catch errors, not to read numbers; implies
# quick mode), else empty.  bench/run.sh sets the shared settings, each suite
# its own.
BENCH_IS_SMOKE=
if [ -n "${BENCH_SMOKE:-}" ] && [ "${BENCH_SMOKE}" != 0 ]; then
	# shellcheck disable=SC2034 # read by run.sh and the suites
	BENCH_IS_SMOKE=1
	# shellcheck disable=SC2034
	BENCH_IS_QUICK=1
fi

# bench_smoke_defaults: the settings of a smoke run (BENCH_SMOKE=1), each
# unless set in the environment: one round of one second, two clients, the
# smallest data each suite accepts.  bench/run.sh calls it before it sources
# the suites, which read their settings when sourced.
bench_smoke_defaults() {
	local kv name
	for kv in BENCH_DURATION=1 BENCH_ROUNDS=1 BENCH_CLIENTS=2 BENCH_PRELOAD_EVENTS=2000 \
		BENCH_GLOBAL_EVENTS=30000 BENCH_GLOBAL_SECONDS=1 BENCH_GLOBAL_ROUNDS=1 \
		BENCH_GLOBAL_APPEND_CLIENTS=2 BENCH_GLOBAL_READ_CLIENTS=1 \
		BENCH_GLOBAL_LATENCY_SAMPLES=10 BENCH_GLOBAL_LOAD_SECONDS=2 \
		BENCH_HOT_CLIENTS=2 BENCH_HOT_LOOP_CALLS=200 \
		BENCH_READS_STREAMS=10 BENCH_READS_EVENTS=100 BENCH_READS_CLIENTS=1 \
		BENCH_MEMORY_BATCHES=1000 BENCH_MEMORY_STREAMS="1000 3000" \
		BENCH_SCALES="0 10000" BENCH_SCALE_CLIENTS=2 \
		BENCH_PROJ_SECONDS=1 BENCH_PROJ_ROUNDS=1 BENCH_PROJ_CLIENTS=2 BENCH_PROJ_COUNTS="0 1" \
		BENCH_PROJ_CPU_ITERATIONS=200 BENCH_PROJ_CPU_ROUNDS=1 BENCH_PROJ_ASYNC_CLIENTS=2 \
		BENCH_PROJ_ASYNC_SECONDS=2 BENCH_PROJ_ASYNC_ROUNDS=1 \
		BENCH_STATE_EVENTS=2000 BENCH_STATE_LOAD_ROUNDS=1 BENCH_STATE_CLIENTS=2 BENCH_STATE_EVERY=10 \
		BENCH_STATE_POLICY_SECONDS=1 BENCH_STATE_POLICY_ROUNDS=1 BENCH_STATE_CMD_STREAMS=200 \
		BENCH_STATE_CMD_SECONDS=1 BENCH_STATE_CMD_ROUNDS=1 BENCH_STATE_CPU_ITERATIONS=100 \
		BENCH_LC_STREAMS=10000 BENCH_LC_ARCHIVE_BATCH=5000 BENCH_LC_APPEND_CLIENTS=2 BENCH_LC_SECONDS=1 \
		BENCH_LC_ROUNDS=1 BENCH_LC_RESTORE=100 BENCH_LC_HOT_CLIENTS=2 BENCH_LC_LOOP_CALLS=200 \
		BENCH_LC_READ_EVENTS=20000 \
		BENCH_CITUS_SHARDS=4 \
		BENCH_SUBS_CLIENTS=2 BENCH_SUBS_BATCHES=10 BENCH_SUBS_SECONDS=1 BENCH_SUBS_ROUNDS=1 \
		BENCH_SUBS_EVENTS=5000 BENCH_SUBS_LAG_CONSUMERS="0 1" BENCH_SUBS_LAG_SECONDS=2; do
		name=${kv%%=*}
		# shellcheck disable=SC2163 # NAME=VALUE, on purpose
		[ -n "${!name:-}" ] || export "$kv"
	done
}

# The payload of every suite's events: ~100 bytes of data and ~70 of
# metadata, passed to the server as text parameters (pgbench -D, psql -v) so
# every transaction parses its JSON, as an application's append would.
BENCH_DATA='{"account": "ACC-0001234567", "amount": 1250, "currency": "EUR", "reference": "invoice 2024-000123"}'
BENCH_METADATA='{"correlation_id": "7d6f5a1e-3c2b-4a19-9e8d-0b1c2d3e4f50", "user": "bench"}'

# bench_events_json N: the JSON array of N such events (type
# MoneyDeposited), as append_events takes them.
bench_events_json() {
	local k sep='' out='['
	for ((k = 0; k < $1; k++)); do
		out="$out$sep{\"type\": \"MoneyDeposited\", \"data\": $BENCH_DATA, \"metadata\": $BENCH_METADATA}"
		sep=', '
	done
	echo "$out]"
}

bench_log() { echo "== $*" >&2; }

# bench_cluster_start: initdb a fresh cluster in a new work dir, with the
# extension preloaded and durable settings, start it and create $BENCH_DB.
bench_cluster_start() {
	BENCH_WORK=$(es_workdir)
	BENCH_PORT=$(es_free_port 55432)
	bench_log "starting a throwaway cluster in $BENCH_WORK (port $BENCH_PORT)"
	bench_node_start "$BENCH_WORK/data" "$BENCH_PORT" "$BENCH_WORK/server.log" eventstore
	bench_psql_db postgres -c "CREATE DATABASE $BENCH_DB" >/dev/null
}

# bench_node_start DATADIR PORT LOG PRELOAD [CONF]: initdb a server in
# DATADIR (under $BENCH_WORK), with the bench settings, PRELOAD as
# shared_preload_libraries and the lines CONF appended, listening on a
# unix socket in $BENCH_WORK on PORT, and start it, logging to LOG.  The
# bench cluster is one; a suite that needs more servers (citus) starts
# them here too, and bench_cluster_stop stops them all.
bench_node_start() {
	local data=$1 port=$2 log=$3 preload=$4 conf=${5:-}
	es_as_server_user "$PG_BINDIR/initdb" -D "$data" -A trust -U postgres \
		--no-instructions >"$data.initdb.log" 2>&1 ||
		{ cat "$data.initdb.log" >&2; return 1; }
	# Durable (fsync, synchronous_commit and full_page_writes on, the
	# defaults, spelt out; BENCH_SYNCHRONOUS_COMMIT=off is for diagnosis
	# only: it takes the commit flush out and shows CPU cost); WAL large enough that no checkpoint starts during
	# a run: bench_quiesce checkpoints between runs instead.  Autovacuum is
	# off so it cannot land in one contender's run and not another's;
	# bench_quiesce vacuums between runs.
	cat >>"$data/postgresql.conf" <<CONF

# --- bench/run.sh ---
shared_preload_libraries = '$preload'
port = $port
listen_addresses = ''
unix_socket_directories = '$BENCH_WORK'
shared_buffers = ${BENCH_SHARED_BUFFERS:-1GB}
fsync = on
synchronous_commit = ${BENCH_SYNCHRONOUS_COMMIT:-on}
full_page_writes = on
wal_level = replica
max_wal_size = ${BENCH_MAX_WAL_SIZE:-16GB}
min_wal_size = 1GB
checkpoint_timeout = 1h
log_checkpoints = on
autovacuum = off
max_connections = 100
# The suites that run in a database of their own leave it behind, and each
# database with the extension has a worker and a projector: room for all.
max_worker_processes = 32
$conf
CONF
	# BENCH_SERVER_ENV (diagnosis only): NAME=VALUE words added to the
	# server's environment, e.g. GLIBC_TUNABLES=glibc.malloc.trim_threshold=...
	# shellcheck disable=SC2086 # split on purpose
	es_as_server_user env ${BENCH_SERVER_ENV:-} "$PG_BINDIR/pg_ctl" -D "$data" \
		-l "$log" -w -t 120 start >/dev/null ||
		{ tail -n 40 "$log" >&2; return 1; }
}

# bench_node_stop DATADIR: stop the server of DATADIR if one runs there.
bench_node_stop() {
	[ -f "$1/postmaster.pid" ] || return 0
	es_as_server_user "$PG_BINDIR/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1 || true
}

bench_cluster_stop() {
	[ -n "${BENCH_WORK:-}" ] || return 0
	local d
	# the bench cluster and every server a suite started (bench_node_start)
	for d in "$BENCH_WORK"/*/; do
		[ -f "$d/PG_VERSION" ] && bench_node_stop "${d%/}"
	done
	if [ -n "${BENCH_KEEP:-}" ]; then
		bench_log "kept $BENCH_WORK (BENCH_KEEP set; server stopped)"
	else
		rm -rf "$BENCH_WORK"
	fi
}

# bench_wait_worker: start the extension's background worker of the bench
# database now (the first append after CREATE EXTENSION asks for it) and wait
# until it runs, so that its start-up falls in no measured run.  Appends one
# event to the stream 'bench-warmup'.
bench_wait_worker() {
	local i
	bench_psql -c "SELECT eventstore.append('bench-warmup', 'Warmup', '{}')" >/dev/null
	for i in $(seq 1 300); do
		[ "$(bench_value "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eventstore worker' AND datname = current_database()")" = 1 ] && return 0
		sleep 0.1
	done
	bench_log "WARNING: no eventstore worker after 30 s"
}

# bench_create_db DB [PSQL_ARGS...]: database DB created afresh with the
# extension, then PSQL_ARGS (-f FILE, -c SQL) run in it.
bench_create_db() {
	local db=$1
	shift
	bench_psql_db postgres -c "SET client_min_messages = warning" \
		-c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
	bench_psql_db "$db" -c "CREATE EXTENSION eventstore" "$@" >/dev/null
}

# bench_table CONTENDER, bench_sequence CONTENDER: the events table and the
# position sequence of a contender: plain (bench/plain.sql), plpgsql
# (bench/plpgsql_store.sql) or extension.
bench_table() {
	case $1 in
	plain) echo bench_plain.events ;;
	plpgsql) echo bench_plpgsql.events ;;
	extension) echo eventstore.events ;;
	*) echo "unknown contender $1" >&2; return 1 ;;
	esac
}

bench_sequence() {
	case $1 in
	plain) echo bench_plain.global_position_seq ;;
	plpgsql) echo bench_plpgsql.global_position_seq ;;
	extension) echo eventstore.global_position_seq ;;
	*) echo "unknown contender $1" >&2; return 1 ;;
	esac
}

# bench_reset CONTENDER N [worker]: every run starts from the same state:
# the contender's table holding N events (bench_preload), its position
# sequence restarted.  The extension's table refuses TRUNCATE, so it is
# recreated with the extension (with "worker", whose worker is then started
# by bench_wait_worker).  bench_quiesce follows, by the caller.
bench_reset() {
	case $1 in
	plain | plpgsql)
		bench_psql -c "TRUNCATE $(bench_table "$1") RESTART IDENTITY" ;;
	extension)
		bench_psql -c "DROP EXTENSION eventstore" -c "CREATE EXTENSION eventstore"
		[ "${3:-}" != worker ] || bench_wait_worker ;;
	esac
	bench_preload "$(bench_table "$1")" "$(bench_sequence "$1")" "$2" "$BENCH_DATA" "$BENCH_METADATA"
}

# bench_rotate K WORDS...: WORDS rotated left by K.  Within a cell the
# contenders run back to back; rotating their order from cell to cell and
# round to round (K = cell + round - 1), no contender always goes first or
# last while the machine drifts.
bench_rotate() {
	local k=$1
	shift
	local -a w=("$@")
	local i n=${#w[@]}
	for ((i = 0; i < n; i++)); do printf '%s ' "${w[$(((i + k) % n))]}"; done
}

# bench_parts SUITE ALLOWED SELECTED: exit 2 unless each word of SELECTED
# is one of ALLOWED (the parts of SUITE).
bench_parts() {
	local p
	for p in $3; do
		case " $2 " in
		*" $p "*) ;;
		*) echo "unknown part of suite $1: $p (${2// /, })" >&2; exit 2 ;;
		esac
	done
}

# bench_part SELECTED PART: whether PART is one of the words of SELECTED.
bench_part() { case " $1 " in *" $2 "*) return 0 ;; *) return 1 ;; esac; }

# bench_preload TABLE SEQUENCE N DATA METADATA: write N events straight into
# TABLE (a table of eventstore.events' shape), positions from SEQUENCE, in
# streams 'preload-K' of 4 events that no workload touches, type
# MoneyDeposited.  A store is not empty in real life, and on an empty,
# analysed table the planner picks a sequential scan for the PL/pgSQL store's
# version lookup and keeps that generic plan while the table grows.
bench_preload() {
	local table=$1 seq=$2 n=$3
	[ "$n" -gt 0 ] || return 0
	bench_psql -v data="$4" -v metadata="$5" <<SQL
INSERT INTO $table
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT nextval('$seq'), v, now(), gen_random_uuid(),
       'preload-' || s, 'MoneyDeposited', :'data'::jsonb, :'metadata'::jsonb
  FROM generate_series(1, ($n + 3) / 4) AS s, generate_series(1, 4) AS v
 ORDER BY s, v
 LIMIT $n;
SQL
}

# bench_psql_db DB ARGS...: psql against the bench cluster, stopping at the
# first error.
bench_psql_db() {
	local db=$1
	shift
	"$BENCH_PSQL" -X -q -v ON_ERROR_STOP=1 -h "$BENCH_WORK" -p "$BENCH_PORT" \
		-U postgres -d "$db" "$@"
}

# bench_dsn [DB]: the libpq connection string of a database of the bench
# cluster (default $BENCH_DB), for the Python and Node.js clients.
bench_dsn() { echo "host=$BENCH_WORK port=$BENCH_PORT user=postgres dbname=${1:-$BENCH_DB}"; }

# bench_psql ARGS...: psql against the bench database.
bench_psql() { bench_psql_db "$BENCH_DB" "$@"; }

# bench_value SQL: one value, unaligned.
bench_value() { bench_psql -At -c "$1"; }

# bench_quiesce [TABLE...]: the same starting point for every run:
# statistics fresh, visibility map set (of the named tables, or of the whole
# database), dirty buffers written, WAL flushed by a checkpoint.
bench_quiesce() {
	local tables
	tables=$(IFS=,; echo "$*")
	bench_psql -c "VACUUM (ANALYZE) $tables" -c "CHECKPOINT"
}

# bench_pgbench LOGNAME CLIENTS SECONDS PGBENCH_ARGS...: run pgbench in
# prepared mode against the bench database (-n: our tables are not
# pgbench's) and print "tps transactions failed latency_ms".  The full output goes to
# $BENCH_WORK/LOGNAME.log; a run whose clients aborted fails the benchmark.
bench_pgbench() {
	local name=$1 clients=$2 seconds=$3
	shift 3
	local jobs=${BENCH_JOBS:-2}
	[ "$jobs" -gt "$clients" ] && jobs=$clients
	local log=$BENCH_WORK/$name.log
	if ! "$BENCH_PGBENCH" -n -M prepared -c "$clients" -j "$jobs" -T "$seconds" \
		-h "$BENCH_WORK" -p "$BENCH_PORT" -U postgres "$@" "$BENCH_DB" >"$log" 2>&1; then
		bench_log "pgbench failed ($name); its output:"
		tail -n 30 "$log" >&2
		return 1
	fi
	awk '
		/^number of transactions actually processed:/ { tx = $6 }
		/^number of failed transactions:/ { failed = $5 }
		/^latency average = / { lat = $4 }
		/^tps = / { tps = $3 }
		END {
			if (tps == "" || tx == "") exit 1
			printf "%s %s %s %s\n", tps, tx, (failed == "" ? 0 : failed), (lat == "" ? "n/a" : lat)
		}' "$log" || { bench_log "cannot parse $log"; cat "$log" >&2; return 1; }
}

# bench_median NUMBERS...: the median (mean of the middle two for an even
# count) with one decimal, or empty without numbers; bench_median_fmt FORMAT
# NUMBERS...: the same in a printf FORMAT.
bench_median_fmt() {
	local fmt=$1
	shift
	[ $# -gt 0 ] || return 0
	printf '%s\n' "$@" | sort -g | awk -v fmt="$fmt\n" '
		{ v[NR] = $1 }
		END {
			if (NR % 2) printf fmt, v[(NR + 1) / 2]
			else printf fmt, (v[NR / 2] + v[NR / 2 + 1]) / 2
		}'
}

bench_median() { bench_median_fmt '%.1f' "$@"; }

# bench_range NUMBERS...: "median (min-max)", two decimals, or "n/a".
bench_range() {
	[ $# -gt 0 ] || { echo "n/a"; return 0; }
	printf '%s\n' "$@" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.2f (%.2f-%.2f)\n", m, v[1], v[NR]
		}'
}

# bench_csv_values CSV COLUMN NAME=VALUE...: the non-empty values of COLUMN
# (named as in the CSV's header line) in the rows where every NAME column
# equals its VALUE, one per line.
bench_csv_values() {
	local csv=$1 col=$2
	shift 2
	awk -F, -v col="$col" -v conds="$*" '
		NR == 1 {
			for (i = 1; i <= NF; i++) idx[$i] = i
			if (!(col in idx)) { print "bench_csv_values: no column " col > "/dev/stderr"; exit 1 }
			n = split(conds, cs, " ")
			for (j = 1; j <= n; j++) {
				k = index(cs[j], "=")
				name[j] = substr(cs[j], 1, k - 1)
				want[j] = substr(cs[j], k + 1)
				if (!(name[j] in idx)) { print "bench_csv_values: no column " name[j] > "/dev/stderr"; exit 1 }
			}
			next
		}
		{
			for (j = 1; j <= n; j++) if ($idx[name[j]] != want[j]) next
			if ($idx[col] != "") print $idx[col]
		}' "$csv"
}

# bench_csv_line HEADER FIXED NAME=VALUE...: one CSV line of the columns
# of HEADER: the first ones from FIXED (comma-separated), the NAMEd ones set,
# the others empty.
bench_csv_line() {
	awk -v header="$1" -v fixed="$2" -v sets="${*:3}" 'BEGIN {
		n = split(header, h, ",")
		k = split(fixed, f, ",")
		for (i = 1; i <= k; i++) v[h[i]] = f[i]
		m = split(sets, s, " ")
		for (i = 1; i <= m; i++) { j = index(s[i], "="); v[substr(s[i], 1, j - 1)] = substr(s[i], j + 1) }
		line = v[h[1]]
		for (i = 2; i <= n; i++) line = line "," v[h[i]]
		print line
	}'
}

# bench_check VAR TAG WHAT GOT WANT: warn when GOT is not WANT, and append
# the line to the variable VAR for the suite's report.
bench_check() {
	local var=$1
	[ "$4" != "$5" ] || return 0
	bench_log "WARNING: $2: $3 = $4, expected $5"
	printf -v "$var" '%s- %s: %s = %s, expected %s\n' "${!var}" "$2" "$3" "$4" "$5"
}

# bench_ratio A B: A/B with two decimals, "n/a" when B is missing or zero.
bench_ratio() {
	awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
		if (a == "" || b == "" || b + 0 == 0) print "n/a"
		else printf "%.2f\n", a / b
	}'
}

# bench_fmt N: a rate rounded to a whole number, "n/a" when missing.
bench_fmt() { awk -v n="${1:-}" 'BEGIN { if (n == "") print "n/a"; else printf "%.0f\n", n }'; }

# bench_checkpoints_since LINE [LOG]: number of checkpoints started by WAL
# volume or by time (not by our CHECKPOINT) in the server log (of the bench
# cluster, or LOG) after line LINE.
bench_checkpoints_since() {
	tail -n +"$(($1 + 1))" "${2:-$BENCH_WORK/server.log}" 2>/dev/null |
		grep -cE 'checkpoint starting: .*(wal|time)' || true
}

# bench_log_lines [LOG]: lines in the server log (of the bench cluster, or LOG).
bench_log_lines() { wc -l <"${1:-$BENCH_WORK/server.log}"; }

# bench_machine: one line describing the machine and the server settings.
bench_machine() {
	local mem cpu version settings load commit so
	mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	version=$(bench_value "SHOW server_version")
	settings=$(bench_value "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name)
		FROM pg_settings WHERE name IN ('shared_buffers', 'fsync', 'synchronous_commit',
		'full_page_writes', 'wal_level', 'max_wal_size', 'checkpoint_timeout', 'autovacuum',
		'wal_buffers', 'shared_preload_libraries')")
	commit=$(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	# What the server loaded is the installed library, which need not be
	# built from this checkout: name it by checksum and date too.
	so=$("$PG_CONFIG" --pkglibdir)/eventstore.so
	so="$(md5sum "$so" | cut -c1-12), installed $(date -r "$so" '+%Y-%m-%d %H:%M')"
	echo "Machine: nproc=$(nproc), memory=$mem, CPU=${cpu:-unknown}, load average at start=$load;" \
		"PostgreSQL $version ($PG_BINDIR); $settings;${BENCH_SERVER_ENV:+ server environment (diagnosis) $BENCH_SERVER_ENV;}" \
		"checkout at commit $commit, eventstore.so md5 $so."
}

# bench_server_cpu [DATADIR]: CPU seconds (user + system) used so far by
# the server (the bench cluster's, or the one of DATADIR):
# the postmaster, its live children and, through the postmaster's cutime and
# cstime, its children that have exited (backends of earlier runs).  The
# difference around a run over its transactions is the server's CPU per
# transaction, which the load of other programs on the machine does not
# change the way it changes throughput.
bench_server_cpu() {
	local pm c
	pm=$(head -1 "${1:-$BENCH_WORK/data}/postmaster.pid")
	{
		cat "/proc/$pm/stat"
		for c in $(pgrep -P "$pm"); do cat "/proc/$c/stat" 2>/dev/null || true; done
	} | awk -v hz="$(getconf CLK_TCK)" '
		{ sub(/^.*\) /, "") }
		NR == 1 { t += $12 + $13 + $14 + $15; next }
		{ t += $12 + $13 }
		END { printf "%.2f\n", t / hz }'
}
