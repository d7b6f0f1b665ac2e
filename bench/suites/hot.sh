# Suite "hot": optimistic concurrency on hot streams.  BENCH_HOT_CLIENTS (8)
# clients append to BENCH_HOT_STREAMS (10) streams; each transaction reads the
# stream's version and appends one event expecting exactly that version, so
# two clients that read the same version race and one of them gets a
# conflict.  Reported: successful appends/s and conflicts/s for the
# extension, the PL/pgSQL store (same semantics, bench/plpgsql_store.sql) and
# plain SQL optimistic concurrency (INSERT of the next version, the unique
# index refusing a duplicate).  Sourced by bench/run.sh, which calls
# hot_setup, hot_run and hot_report.
#
# The suite runs in a database of its own (HOT_DB), so it neither needs nor
# disturbs the schemas of the other suites.  Every function below that talks
# to the server declares "local BENCH_DB=$HOT_DB": bench/lib.sh's helpers read
# BENCH_DB when called, and bash locals are visible to the functions called.
#
# pgbench aborts a client on an error other than a serialization failure or
# deadlock, so each append goes through a PL/pgSQL wrapper that catches the
# conflict (bench/hot/wrappers.sql).  The "own" workload measures what the
# wrapper costs: every client appends to a stream of its own (no conflicts),
# through the wrapper and directly.  See bench/README.md, suite "hot".

HOT_DB=hot
HOT_PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
HOT_CLIENTS=${BENCH_HOT_CLIENTS:-8}
HOT_STREAMS=${BENCH_HOT_STREAMS:-10}
HOT_PRELOAD=${BENCH_PRELOAD_EVENTS:-100000}
# The runs of one round: WORKLOAD:CONTENDER:VARIANT.  Script:
# bench/hot/WORKLOAD.CONTENDER[.VARIANT].pgbench ("hot" runs are wrapped).
HOT_HOT_RUNS="hot:plain:wrapped hot:plpgsql:wrapped hot:extension:wrapped"
HOT_OWN_RUNS="own:extension:direct own:extension:wrapped own:plpgsql:direct own:plpgsql:wrapped"

hot_setup() {
	local BENCH_DB=$HOT_DB
	bench_log "hot: creating database $HOT_DB with the three contenders and the wrappers"
	bench_create_db "$HOT_DB" \
		-f "$BENCH_ROOT/bench/plain.sql" \
		-f "$BENCH_ROOT/bench/plpgsql_store.sql" \
		-f "$BENCH_ROOT/bench/hot/wrappers.sql" \
		-c "ALTER DATABASE $HOT_DB SET bench_plpgsql.notify = '${BENCH_PLPGSQL_NOTIFY:-off}'"
}

# hot_reset CONTENDER: the contender's table emptied and preloaded with
# HOT_PRELOAD events in streams "preload-N" of 4 events (as in the append
# suite: on an empty, analysed table the PL/pgSQL store's version lookup gets a
# sequential-scan plan that it keeps while the table grows).  The extension's
# table refuses TRUNCATE: it is recreated with the extension.
hot_reset() { bench_reset "$1" "$HOT_PRELOAD" worker; }

# hot_one CSV WORKLOAD CONTENDER VARIANT ROUND: one pgbench run and its CSV
# line.  Successes are the rows the table gained (each successful
# transaction appends one event), conflicts the other transactions.
hot_one() {
	local csv=$1 workload=$2 contender=$3 variant=$4 round=$5
	local script=$BENCH_ROOT/bench/hot/$workload.$contender.pgbench
	[ "$workload" = hot ] || script=$BENCH_ROOT/bench/hot/$workload.$contender.$variant.pgbench
	local tag=hot-$workload-$contender-$variant-r$round table
	local before after start res tps tx failed lat ok conflicts ckpt gaps cpu0 cpu1
	table=$(bench_table "$contender")
	hot_reset "$contender"
	bench_quiesce
	before=$(bench_value "SELECT count(*) FROM $table")
	start=$(bench_log_lines)
	cpu0=$(bench_server_cpu)
	bench_log "round $round/$BENCH_ROUNDS: $workload, $HOT_CLIENTS clients, $contender ($variant) (${BENCH_DURATION}s)"
	res=$(bench_pgbench "$tag" "$HOT_CLIENTS" "$BENCH_DURATION" -f "$script" \
		-D "streams=$HOT_STREAMS" -D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA")
	read -r tps tx failed lat <<<"$res"
	sleep 0.3 # the run's backends exit and are reaped
	cpu1=$(bench_server_cpu)
	ckpt=$(bench_checkpoints_since "$start")
	after=$(bench_value "SELECT count(*) FROM $table")
	ok=$((after - before))
	conflicts=$((tx - ok))
	# Every stream the run wrote must be gapless: versions 1..count.
	gaps=$(bench_value "SELECT count(*) FROM (SELECT stream_id FROM $table
		WHERE stream_id LIKE '$workload-%' GROUP BY stream_id
		HAVING max(stream_version) <> count(*)) g")
	[ "$gaps" = 0 ] || bench_log "WARNING: $tag: $gaps stream(s) with a gap in their versions"
	[ "$conflicts" -ge 0 ] || bench_log "WARNING: $tag: $ok rows appended by $tx transactions"
	[ "$workload" = hot ] || [ "$conflicts" = 0 ] ||
		bench_log "WARNING: $tag: $conflicts conflicts where none can happen"
	[ "$ckpt" = 0 ] || bench_log "WARNING: $tag: $ckpt checkpoint(s) started during the run"
	[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed transactions"
	echo "hot,$workload,$contender,$variant,$HOT_CLIENTS,$HOT_STREAMS,$round,$tps,$tx,$ok,$conflicts,$(awk -v t="$tps" -v n="$tx" -v ok="$ok" -v c="$conflicts" \
		'BEGIN { if (n > 0) printf "%.1f,%.1f", t * ok / n, t * c / n; else printf "0,0" }'),$failed,$lat,$ckpt,$(awk -v a="$cpu0" -v b="$cpu1" -v n="$tx" 'BEGIN { printf "%.4f", (b - a) * 1000 / n }')" >>"$csv"
}

# hot_run CSV: the hot cell (three contenders) and the own cell (four
# variants), BENCH_ROUNDS times; within a cell the order rotates from round
# to round.
hot_run() {
	local BENCH_DB=$HOT_DB
	local csv=$1 round cell run w c v
	local -a runs order
	echo "suite,workload,contender,variant,clients,streams,round,tps,transactions,successes,conflicts,successes_per_s,conflicts_per_s,failed,latency_ms,unplanned_checkpoints,server_cpu_ms_per_tx" >"$csv"
	for round in $(seq 1 "$BENCH_ROUNDS"); do
		for cell in "$HOT_HOT_RUNS" "$HOT_OWN_RUNS"; do
			read -r -a runs <<<"$cell"
			read -r -a order <<<"$(bench_rotate $((round - 1)) "${runs[@]}")"
			for run in "${order[@]}"; do
				IFS=: read -r w c v <<<"$run"
				hot_one "$csv" "$w" "$c" "$v" "$round"
			done
		done
	done
	hot_loop "$csv"
}

# hot_loop CSV: the wrapper's CPU cost per call, commits excluded
# (bench/hot/loop.py runs bench_hot.loop_us: HOT_LOOP_CALLS appends in one
# transaction, each expecting the previous version, in a fresh backend, and
# reads the backend's CPU time from /proc), direct and wrapped,
# HOT_LOOP_ROUNDS rounds in alternating order.  CSV lines of workload "loop":
# latency_ms = wall-clock ms per call, server_cpu_ms_per_tx = the backend's
# CPU ms per call, tps = calls per CPU second.
HOT_LOOP_CALLS=${BENCH_HOT_LOOP_CALLS:-20000}
HOT_LOOP_ROUNDS=5
hot_loop() {
	local csv=$1 round kind wall cpu c
	local -a kinds
	for c in extension plpgsql; do
		hot_reset "$c"
	done
	bench_quiesce
	bench_log "hot: the wrapper's cost per call, $HOT_LOOP_ROUNDS x $HOT_LOOP_CALLS calls per variant"
	for round in $(seq 1 "$HOT_LOOP_ROUNDS"); do
		if [ $((round % 2)) = 1 ]; then
			kinds=(extension-direct extension-wrapped plpgsql-direct plpgsql-wrapped)
		else
			kinds=(plpgsql-wrapped plpgsql-direct extension-wrapped extension-direct)
		fi
		for kind in "${kinds[@]}"; do
			read -r wall cpu < <("$HOT_PYTHON" "$BENCH_ROOT/bench/hot/loop.py" \
				"$(bench_dsn "$HOT_DB")" \
				"$kind" "$HOT_LOOP_CALLS" "$BENCH_DATA" "$BENCH_METADATA")
			[ -n "$cpu" ] || { bench_log "hot: bench/hot/loop.py $kind failed"; return 1; }
			echo "hot,loop,${kind%-*},${kind#*-},1,1,$round,$(awk -v u="$cpu" 'BEGIN { if (u > 0) printf "%.1f", 1e6 / u; else print 0 }'),$HOT_LOOP_CALLS,$HOT_LOOP_CALLS,0,,,0,$(awk -v u="$wall" 'BEGIN { printf "%.6f", u / 1000 }'),0,$(awk -v u="$cpu" 'BEGIN { printf "%.6f", u / 1000 }')" >>"$csv"
		done
	done
}

# hot_cell CSV WORKLOAD CONTENDER VARIANT COLUMN: the median of COLUMN over
# the rounds (mean of the middle two for an even count), four decimals.
hot_cell() {
	# shellcheck disable=SC2046
	bench_median_fmt '%.4f' $(bench_csv_values "$1" "$5" workload="$2" contender="$3" variant="$4")
}

# hot_min CSV WORKLOAD CONTENDER VARIANT COLUMN: the minimum over the rounds.
hot_min() {
	awk -F, -v w="$2" -v k="$3" -v v="$4" -v col="$5" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
		$2 == w && $3 == k && $4 == v && $c != "" && (m == "" || $c + 0 < m + 0) { m = $c }
		END { if (m != "") printf "%.6f\n", m }' "$1"
}

hot_fmt2() { awk -v n="${1:-}" 'BEGIN { if (n == "") print "n/a"; else printf "%.2f\n", n }'; }

hot_report() {
	local BENCH_DB=$HOT_DB
	local csv=$1 c att ok cf lat r_ext='' r_plp='' r_plain=''
	echo "## hot: $HOT_CLIENTS clients appending to $HOT_STREAMS streams with exact expected versions (median of $BENCH_ROUNDS round(s) of ${BENCH_DURATION}s)"
	echo
	echo "$BENCH_MACHINE"
	echo
	echo "pgbench -M prepared -c $HOT_CLIENTS -j min(${BENCH_JOBS:-2}, clients), synchronous_commit=$(bench_value 'SHOW synchronous_commit');" \
		"each transaction: BEGIN; read the version of stream 'hot-<random 1..$HOT_STREAMS>'; append one event expecting exactly that version" \
		"through a PL/pgSQL wrapper that returns false on a conflict (ST001; 23505 for plain); END." \
		"Successes = rows appended, conflicts = the other transactions; attempts/s = pgbench tps." \
		"Each run starts from the contender's table preloaded with $HOT_PRELOAD events, after VACUUM (ANALYZE) and CHECKPOINT." \
		"Server CPU: user + system time of every server process during the run (from /proc) per transaction; with durable commits" \
		"the rates are bound by WAL flushes, the CPU shows the cost of each path."
	echo
	echo "| contender | attempts/s | successes/s | conflicts/s | conflicts % | latency ms | server CPU µs/attempt |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for c in plain plpgsql extension; do
		att=$(hot_cell "$csv" hot "$c" wrapped tps)
		ok=$(hot_cell "$csv" hot "$c" wrapped successes_per_s)
		cf=$(hot_cell "$csv" hot "$c" wrapped conflicts_per_s)
		lat=$(hot_cell "$csv" hot "$c" wrapped latency_ms)
		case $c in plain) r_plain=$ok ;; plpgsql) r_plp=$ok ;; extension) r_ext=$ok ;; esac
		echo "| $c | $(bench_fmt "$att") | $(bench_fmt "$ok") | $(bench_fmt "$cf") |" \
			"$(awk -v a="$att" -v c="$cf" 'BEGIN { if (a + 0 > 0) printf "%.1f", 100 * c / a; else print "n/a" }') | $(hot_fmt2 "$lat") |" \
			"$(awk -v x="$(hot_cell "$csv" hot "$c" wrapped server_cpu_ms_per_tx)" 'BEGIN { printf "%.0f", x * 1000 }') |"
	done
	echo
	echo "Successes/s: extension/plpgsql = $(bench_ratio "$r_ext" "$r_plp"), extension/plain = $(bench_ratio "$r_ext" "$r_plain")" \
		"(plain: INSERT of the next version into a table with the same unique index; no lock, no lookup inside the call)."
	echo
	echo "What the wrapper costs on the success path (workload \"own\": each client appends to a stream of its own," \
		"read version + append with it, never a conflict; transactions/s, wrapped = the exception block of the hot runs):"
	echo
	echo "| contender | unwrapped tps | wrapped tps | wrapped/unwrapped | unwrapped latency ms | wrapped latency ms | server CPU µs/tx unwrapped | wrapped |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	local d w
	for c in extension plpgsql; do
		d=$(hot_cell "$csv" own "$c" direct tps)
		w=$(hot_cell "$csv" own "$c" wrapped tps)
		echo "| $c | $(bench_fmt "$d") | $(bench_fmt "$w") | $(bench_ratio "$w" "$d") |" \
			"$(hot_fmt2 "$(hot_cell "$csv" own "$c" direct latency_ms)") | $(hot_fmt2 "$(hot_cell "$csv" own "$c" wrapped latency_ms)") |" \
			"$(awk -v x="$(hot_cell "$csv" own "$c" direct server_cpu_ms_per_tx)" 'BEGIN { printf "%.0f", x * 1000 }') |" \
			"$(awk -v x="$(hot_cell "$csv" own "$c" wrapped server_cpu_ms_per_tx)" 'BEGIN { printf "%.0f", x * 1000 }') |"
	done
	echo
	echo "The wrapper's CPU cost per call, commits excluded (bench/hot/loop.py: $HOT_LOOP_CALLS appends with exact expected versions" \
		"in one transaction, one session, the backend's CPU time from /proc; $HOT_LOOP_ROUNDS rounds: the minimum, which other programs" \
		"on this machine can only raise, and the median):"
	echo
	echo "| contender | unwrapped CPU µs/call min | wrapped min | wrapper cost min | unwrapped median | wrapped median | wrapper cost median |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	local dm wm
	for c in extension plpgsql; do
		d=$(hot_cell "$csv" loop "$c" direct server_cpu_ms_per_tx)
		w=$(hot_cell "$csv" loop "$c" wrapped server_cpu_ms_per_tx)
		dm=$(hot_min "$csv" loop "$c" direct server_cpu_ms_per_tx)
		wm=$(hot_min "$csv" loop "$c" wrapped server_cpu_ms_per_tx)
		awk -v c="$c" -v d="$d" -v w="$w" -v dm="$dm" -v wm="$wm" 'BEGIN {
			printf "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", c, dm * 1000, wm * 1000, (wm - dm) * 1000, d * 1000, w * 1000, (w - d) * 1000 }'
	done
}
