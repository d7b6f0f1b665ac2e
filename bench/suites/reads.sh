# Suite "reads": eventstore.read_stream against the plain SQL that returns
# the same rows (an index scan of (stream_id, stream_version)) and against a
# PL/pgSQL read function (bench/reads/plpgsql_read.sql), all three over the
# same rows of eventstore.events.  Workloads: a whole 1000-event stream
# ("full") and the last 10 events backward ("last10"), at 1 and 2 clients.
# Sourced by bench/run.sh, which calls reads_setup, reads_run and
# reads_report.
#
# Runs in a database of its own (READS_DB); the functions that talk to the
# server declare "local BENCH_DB=$READS_DB" (bench/lib.sh's helpers read
# BENCH_DB when called).  See bench/README.md, suite "reads".

READS_DB=reads
READS_STREAMS=${BENCH_READS_STREAMS:-100}
READS_EVENTS=${BENCH_READS_EVENTS:-1000}
READS_CLIENTS=${BENCH_READS_CLIENTS:-1 2}
READS_CONTENDERS="plain plpgsql extension"
# The plain contender is the index scan: over streams interleaved in the heap
# the planner prefers a bitmap heap scan and a sort for a whole stream, so its
# connections run with bitmap scans off (the plan is checked and the default
# plan shown in the report).
READS_PLAIN_OPTIONS='-c enable_bitmapscan=off'
# WORKLOAD:ROWS_PER_TRANSACTION; scripts bench/reads/WORKLOAD.CONTENDER.pgbench.
READS_WORKLOADS="full:$READS_EVENTS last10:10"
# The long stream (0.9.0): one stream of READS_LONG events read whole, once
# per contender and round: time and temporary files written (see reads_long).
if [ -n "$BENCH_IS_QUICK" ]; then
	READS_LONG=${BENCH_READS_LONG:-100000}
else
	READS_LONG=${BENCH_READS_LONG:-1000000}
fi

[ "$READS_EVENTS" -ge 10 ] || { echo "BENCH_READS_EVENTS must be at least 10" >&2; exit 2; }

# reads_sql_of FILE: the statement of a pgbench script with :s as $1, as
# pgbench -M prepared sends it.
reads_sql_of() {
	grep -v -e '^\\' -e '^--' "$1" | sed -e 's/:s::text/$1::text/g' -e 's/;$//'
}

# reads_setup: READS_STREAMS streams "reads-K" of READS_EVENTS events each,
# written straight into eventstore.events (as its owner; bench only),
# interleaved as streams that grow side by side are: position g belongs to
# stream (g - 1) % READS_STREAMS + 1, so consecutive events of a stream lie
# READS_STREAMS rows apart and a whole stream touches about READS_EVENTS heap
# pages.  Then VACUUM (ANALYZE), CHECKPOINT, the table and index loaded into
# shared buffers, the plain queries' plans checked to be index scans and every
# contender checked to return the same rows.
reads_setup() {
	local BENCH_DB=$READS_DB n=$((READS_STREAMS * READS_EVENTS))
	bench_log "reads: creating database $READS_DB with $READS_STREAMS streams of $READS_EVENTS events"
	bench_create_db "$READS_DB" -f "$BENCH_ROOT/bench/reads/plpgsql_read.sql"
	bench_psql -v data="$BENCH_DATA" -v metadata="$BENCH_METADATA" <<SQL
INSERT INTO eventstore.events
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT g, (g - 1) / $READS_STREAMS + 1, now() - ($n - g) * interval '1 millisecond',
       gen_random_uuid(), 'reads-' || ((g - 1) % $READS_STREAMS + 1), 'MoneyDeposited',
       :'data'::jsonb, :'metadata'::jsonb
  FROM generate_series(1, $n) AS g;
INSERT INTO eventstore.events
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT $n + g, g, now() - ($READS_LONG - g) * interval '1 millisecond',
       gen_random_uuid(), 'reads-long', 'MoneyDeposited', :'data'::jsonb, :'metadata'::jsonb
  FROM generate_series(1, $READS_LONG) AS g;
SELECT setval('eventstore.global_position_seq', $n + $READS_LONG) \g /dev/null
SQL
	bench_quiesce
	if bench_psql -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" 2>/dev/null; then
		bench_psql -At -c "SELECT pg_prewarm('eventstore.events'), pg_prewarm('eventstore.events_stream_version_key')" >/dev/null
	else
		bench_log "WARNING: pg_prewarm unavailable; the first runs warm the cache"
	fi

	# The plain queries must be index scans of (stream_id, stream_version),
	# with the plain contender's settings, in the generic plan (what pgbench
	# -M prepared ends up with) and in custom plans.  The plan the planner
	# picks by default is kept for the report.
	local explain=$BENCH_WORK/reads-explain.txt w mode
	: >"$explain"
	for w in full last10; do
		for mode in force_generic_plan force_custom_plan; do
			{
				echo "-- bench/reads/$w.plain.pgbench, plan_cache_mode=$mode, $READS_PLAIN_OPTIONS:"
				PGOPTIONS="$READS_PLAIN_OPTIONS" bench_psql -At -c "SET plan_cache_mode = $mode" \
					-c "PREPARE q(text) AS $(reads_sql_of "$BENCH_ROOT/bench/reads/$w.plain.pgbench")" \
					-c "EXPLAIN (COSTS OFF) EXECUTE q('7')"
				echo
			} >>"$explain"
		done
	done
	if [ "$(grep -cE 'Index Scan (Backward )?using events_stream_version_key on events' "$explain")" != 4 ]; then
		bench_log "WARNING: a plain query is not an index scan of events_stream_version_key; the plans:"
		cat "$explain" >&2
	fi
	bench_psql -At -c "SET plan_cache_mode = force_generic_plan" \
		-c "PREPARE q(text) AS $(reads_sql_of "$BENCH_ROOT/bench/reads/full.plain.pgbench")" \
		-c "EXPLAIN (COSTS OFF) EXECUTE q('7')" | sed -e 's/^ *//' -e 's/^-> *//' | grep -vE '^(Sort Key|Recheck Cond|Index Cond|Filter)' |
		paste -sd'|' | sed 's/|/ <- /g' >"$BENCH_WORK/reads-default-plan.txt"

	# Every contender returns the same rows in the same order.
	local check cols='global_position, stream_id, stream_version, event_id, event_type, data, metadata, created_at'
	check=$(bench_psql -At <<SQL | tr '\n' ' '
SELECT count(*) FROM eventstore.read_stream('reads-7');
SELECT count(*) FROM (SELECT row_number() OVER () AS i, r::text AS t FROM eventstore.read_stream('reads-7') r
    EXCEPT ALL SELECT row_number() OVER (ORDER BY stream_version), (ROW($cols)::eventstore.event)::text
      FROM eventstore.events WHERE stream_id = 'reads-7') d;
SELECT count(*) FROM (SELECT row_number() OVER () AS i, r::text AS t FROM eventstore.read_stream('reads-7') r
    EXCEPT ALL SELECT row_number() OVER (), r::text FROM bench_reads.read_stream('reads-7') r) d;
SELECT count(*) FROM (SELECT row_number() OVER () AS i, r::text AS t FROM eventstore.read_stream('reads-7', NULL, 10, true) r
    EXCEPT ALL SELECT row_number() OVER (ORDER BY stream_version DESC), (ROW($cols)::eventstore.event)::text
      FROM (SELECT * FROM eventstore.events WHERE stream_id = 'reads-7' ORDER BY stream_version DESC LIMIT 10) e) d;
SELECT count(*) FROM (SELECT row_number() OVER () AS i, r::text AS t FROM eventstore.read_stream('reads-7', NULL, 10, true) r
    EXCEPT ALL SELECT row_number() OVER (), r::text FROM bench_reads.read_stream('reads-7', NULL, 10, true) r) d;
SQL
)
	if [ "$check" != "$READS_EVENTS 0 0 0 0 " ]; then
		bench_log "WARNING: row check failed (want '$READS_EVENTS 0 0 0 0': a whole stream, no difference between the contenders): '$check'"
	fi
}

# reads_long CSV ROUND: the long stream "reads-long" read whole, each
# statement in a fresh session: "count" (SELECT count(*) of the rows, nothing
# to the client) and "fetch" (every row to the client: psql with FETCH_COUNT
# 1000, through a cursor, to /dev/null).  Contenders: extension, read_stream
# in FROM (a custom scan since 0.9.0); functionscan, the same call WITH
# ORDINALITY, which keeps the FunctionScan that materialises the rows into a
# tuplestore (how every read_stream in FROM ran up to 0.8.0); plain, the index
# scan of the same rows (with the plain contender's settings).  Measured: the
# wall time of the statement (psql's \timing) and the temporary files written
# (pg_stat_database.temp_bytes of the database before and after; nothing else
# runs in it meanwhile).
reads_long() {
	local BENCH_DB=$READS_DB
	local csv=$1 round=$2 what contender sql opts t0 t1 ms
	local cols='global_position, stream_id, stream_version, event_id, event_type, data, metadata, created_at'
	for what in count fetch; do
		for contender in $(bench_rotate "$round" extension functionscan plain); do
			case $contender in
			extension) sql="SELECT $cols FROM eventstore.read_stream('reads-long')" ;;
			functionscan) sql="SELECT $cols FROM eventstore.read_stream('reads-long') WITH ORDINALITY" ;;
			plain) sql="SELECT $cols FROM eventstore.events WHERE stream_id = 'reads-long' ORDER BY stream_version" ;;
			esac
			[ "$what" = count ] && sql="SELECT count(*) FROM ($sql) AS r"
			opts=${PGOPTIONS:-}
			[ "$contender" = plain ] && opts="$opts $READS_PLAIN_OPTIONS"
			bench_log "round $round/$BENCH_ROUNDS: read the long stream ($READS_LONG events, $what), $contender"
			sleep 0.6 # the statistics of the sessions before are flushed
			t0=$(bench_value "SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()")
			ms=$(PGOPTIONS=$opts bench_psql -v FETCH_COUNT=1000 -c '\timing on' -c "$sql" -o /dev/null 2>&1 |
				sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
			sleep 0.6
			t1=$(bench_value "SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()")
			echo "reads_long,$what,$READS_LONG,$contender,$round,${ms:-0},$((t1 - t0))" >>"$csv"
		done
	done
}

# reads_run CSV: every workload x clients x contender, BENCH_ROUNDS times,
# the contenders' order rotating from cell to cell and round to round.
# Nothing writes, so no quiesce between runs.
reads_run() {
	local BENCH_DB=$READS_DB
	local csv=$1 round workload name per clients contender cell=0 res tps tx failed lat
	local -a contenders order
	read -r -a contenders <<<"$READS_CONTENDERS"
	echo "suite,workload,rows_per_tx,clients,contender,round,tps,rows_per_s,transactions,failed,latency_ms,server_cpu_ms_per_tx" >"$csv"
	echo "suite,read,events,contender,round,ms,temp_bytes" >"${csv%.csv}_long.csv"
	for round in $(seq 1 "$BENCH_ROUNDS"); do
		reads_long "${csv%.csv}_long.csv" "$round"
		for workload in $READS_WORKLOADS; do
			name=${workload%%:*}
			per=${workload##*:}
			for clients in $READS_CLIENTS; do
				read -r -a order <<<"$(bench_rotate $((cell + round - 1)) "${contenders[@]}")"
				cell=$((cell + 1))
				for contender in "${order[@]}"; do
					bench_log "round $round/$BENCH_ROUNDS: read $name, $clients client(s), $contender (${BENCH_DURATION}s)"
					local opts=${PGOPTIONS:-} cpu0 cpu1
					cpu0=$(bench_server_cpu)
					[ "$contender" = plain ] && opts="$opts $READS_PLAIN_OPTIONS"
					res=$(PGOPTIONS=$opts bench_pgbench "reads-$name-c$clients-$contender-r$round" "$clients" "$BENCH_DURATION" \
						-f "$BENCH_ROOT/bench/reads/$name.$contender.pgbench" -D "streams=$READS_STREAMS")
					read -r tps tx failed lat <<<"$res"
					sleep 0.3 # the run's backends exit and are reaped
					cpu1=$(bench_server_cpu)
					[ "$failed" = 0 ] || bench_log "WARNING: reads $name $contender: $failed failed transactions"
					echo "reads,$name,$per,$clients,$contender,$round,$tps,$(awk -v t="$tps" -v p="$per" 'BEGIN { printf "%.1f", t * p }'),$tx,$failed,$lat,$(awk -v a="$cpu0" -v b="$cpu1" -v n="$tx" 'BEGIN { printf "%.4f", (b - a) * 1000 / n }')" >>"$csv"
				done
			done
		done
	done
}

# reads_cell CSV WORKLOAD CLIENTS CONTENDER COLUMN: median over the rounds
# (mean of the middle two for an even count), four decimals.
reads_cell() {
	# shellcheck disable=SC2046
	bench_median_fmt '%.4f' $(bench_csv_values "$1" "$5" workload="$2" clients="$3" contender="$4")
}

reads_report() {
	local BENCH_DB=$READS_DB
	local csv=$1 workload name per clients c targets=''
	echo "## reads: read_stream vs a plain index scan vs PL/pgSQL (median of $BENCH_ROUNDS round(s) of ${BENCH_DURATION}s per cell)"
	echo
	echo "$BENCH_MACHINE"
	echo
	echo "pgbench -M prepared -j min(${BENCH_JOBS:-2}, clients); $READS_STREAMS streams of $READS_EVENTS events" \
		"(~100-byte data, ~70-byte metadata), interleaved in the heap (consecutive events of a stream $READS_STREAMS rows apart), all in shared buffers;" \
		"each transaction reads one stream chosen at random." \
		"full: the whole stream, ascending; last10: the last 10 events, descending." \
		"plain: SELECT the event columns FROM eventstore.events WHERE stream_id = \$1 ORDER BY stream_version [DESC LIMIT 10], an index scan (checked), with $READS_PLAIN_OPTIONS" \
		"(by default the planner reads a whole stream with: $(cat "$BENCH_WORK/reads-default-plan.txt" 2>/dev/null || echo unknown));" \
		"plpgsql: bench_reads.read_stream, RETURN QUERY of the same SELECT. rows/s = tps x rows per read." \
		"Server CPU: user + system time of every server process during the run (from /proc) per row read, which the load of other programs" \
		"on the machine leaves alone. Since 0.9.0 read_stream in FROM is a custom scan that returns rows as it reads them (up to 0.8.0 a" \
		"FunctionScan materialised the whole stream first, so that the client got the first row only after the whole read)."
	echo
	local tun
	tun=$(tr '\0' '\n' <"/proc/$(head -1 "$BENCH_WORK/data/postmaster.pid")/environ" 2>/dev/null | sed -n 's/^GLIBC_TUNABLES=//p')
	[ -z "$tun" ] || { echo "The server ran with GLIBC_TUNABLES=$tun (a diagnosis run: see bench/README.md, suite reads)."; echo; }
	echo "| workload | clients | plain rows/s | plpgsql rows/s | extension rows/s | extension latency ms | extension/plain | extension/plpgsql | server CPU µs/row: plain | plpgsql | extension | CPU extension/plain |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for workload in $READS_WORKLOADS; do
		name=${workload%%:*}
		per=${workload##*:}
		for clients in $READS_CLIENTS; do
			local r_plain r_plp r_ext lat q c_plain c_plp c_ext
			r_plain=$(reads_cell "$csv" "$name" "$clients" plain rows_per_s)
			r_plp=$(reads_cell "$csv" "$name" "$clients" plpgsql rows_per_s)
			r_ext=$(reads_cell "$csv" "$name" "$clients" extension rows_per_s)
			c_plain=$(reads_cell "$csv" "$name" "$clients" plain server_cpu_ms_per_tx)
			c_plp=$(reads_cell "$csv" "$name" "$clients" plpgsql server_cpu_ms_per_tx)
			c_ext=$(reads_cell "$csv" "$name" "$clients" extension server_cpu_ms_per_tx)
			lat=$(reads_cell "$csv" "$name" "$clients" extension latency_ms)
			q=$(bench_ratio "$r_ext" "$r_plain")
			echo "| $name | $clients | $(bench_fmt "$r_plain") | $(bench_fmt "$r_plp") | $(bench_fmt "$r_ext") |" \
				"$(awk -v x="$lat" 'BEGIN { printf "%.3f", x }') | $q | $(bench_ratio "$r_ext" "$r_plp") |" \
				"$(awk -v c="$c_plain" -v p="$per" 'BEGIN { printf "%.2f", c * 1000 / p }') |" \
				"$(awk -v c="$c_plp" -v p="$per" 'BEGIN { printf "%.2f", c * 1000 / p }') |" \
				"$(awk -v c="$c_ext" -v p="$per" 'BEGIN { printf "%.2f", c * 1000 / p }') | $(bench_ratio "$c_ext" "$c_plain") |"
			if [ "$name" = full ]; then
				targets="$targets- full, $clients client(s): extension/plain = $q (target >= 0.95: $(awk -v q="$q" 'BEGIN { print (q != "n/a" && q >= 0.95) ? "met" : "NOT met" }'))"$'\n'
			fi
		done
	done
	echo
	echo "Targets (reported, not asserted):"
	echo
	printf '%s' "$targets"
	reads_long_report "${csv%.csv}_long.csv"
}

# The long stream's table: median ms and temporary MB per read and contender.
reads_long_report() {
	local csv=$1 what contender ms temp
	[ -f "$csv" ] || return 0
	echo
	echo "### The long stream: $READS_LONG events read whole (median of $BENCH_ROUNDS round(s), one statement per fresh session)"
	echo
	echo "count: SELECT count(*) of the rows; fetch: every row to the client (psql, FETCH_COUNT 1000)." \
		"extension: read_stream in FROM (a custom scan: rows as they are read); functionscan: the same call WITH ORDINALITY," \
		"a FunctionScan that materialises the rows in a tuplestore, spilling past work_mem (what read_stream in FROM did up to 0.8.0);" \
		"plain: the index scan of the same rows. Temp: pg_stat_database.temp_bytes written by the statement." \
		"Target: no temporary file for the extension."
	echo
	echo "| read | contender | ms | temp MB | ms / plain |"
	echo "|---|---|---:|---:|---:|"
	for what in count fetch; do
		local plain_ms
		# shellcheck disable=SC2046
		plain_ms=$(bench_median_fmt '%.1f' $(bench_csv_values "$csv" ms read="$what" contender=plain))
		for contender in extension functionscan plain; do
			# shellcheck disable=SC2046
			ms=$(bench_median_fmt '%.1f' $(bench_csv_values "$csv" ms read="$what" contender="$contender"))
			# shellcheck disable=SC2046
			temp=$(bench_median_fmt '%.0f' $(bench_csv_values "$csv" temp_bytes read="$what" contender="$contender"))
			echo "| $what | $contender | $ms | $(awk -v t="$temp" 'BEGIN { printf "%.1f", t / 1048576 }') | $(bench_ratio "$ms" "$plain_ms") |"
		done
	done
}
