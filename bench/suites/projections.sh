# Suite "projections": what read models cost appends, and how far an async
# projection trails the log.  Sourced by bench/run.sh, which calls
# projections_setup, projections_run and projections_report.
#
#   1. inline: single-event appends (as the append suite's "single", the
#      event type one of ten) with 0, 1 and 3 read models kept up to date in
#      the appending transaction: by inline projections for the extension,
#      by AFTER INSERT FOR EACH ROW triggers for a plain INSERT and for the
#      PL/pgSQL store (bench/plpgsql_store.sql).  The read models and their
#      statements are the same for all (bench/projections/readmodels.sql,
#      handlers.sql).  A cell is one number of read models: its three
#      contenders run back to back, so their ratios compare runs adjacent in
#      time; the order of the cells and within them rotates by round.
#   2. cpu: the CPU cost of the same appends without client or disk: one
#      backend appending in a loop, each append committed on its own with
#      synchronous_commit = off (bench_proj.cpu_loop), its CPU time read
#      from /proc/self/stat; per contender and number of read models.
#   3. async: 8 clients appending with no projection vs one async
#      projection (the stream summary, run by the background worker),
#      alternating; during the async runs a separate session samples
#      eventstore.projection_status every 100 ms, and the handler notes when
#      it saw each event; after the load, the time until the projection has
#      caught up.
#
# The tables are preloaded once; between runs only the read models are
# emptied and the projections or triggers switched, and the tables grow by
# what the runs append (as in the global suite; the rotation spreads it).
# Re-creating the extension and preloading for every run would cost more
# than the run.  Each run's streams are its own ('stream-<run>-...').
#
# The suite runs in a database of its own (PROJ_DB), like "hot": every
# function that talks to the server declares "local BENCH_DB=$PROJ_DB".
# See bench/README.md, suite "projections".

PROJ_DB=projections
PROJ_QUICK=$BENCH_IS_QUICK

# Many short runs rather than few long ones, as in the global suite: noise
# on a shared machine comes in bursts of seconds.
PROJ_SECONDS=${BENCH_PROJ_SECONDS:-${PROJ_QUICK:+3}}
PROJ_SECONDS=${PROJ_SECONDS:-4}
PROJ_ROUNDS=${BENCH_PROJ_ROUNDS:-${PROJ_QUICK:+1}}
PROJ_ROUNDS=${PROJ_ROUNDS:-3}
PROJ_CLIENTS=${BENCH_PROJ_CLIENTS:-${PROJ_QUICK:+8}}
PROJ_CLIENTS=${PROJ_CLIENTS:-1 8}
PROJ_COUNTS=${BENCH_PROJ_COUNTS:-0 1 3}
PROJ_CONTENDERS="plain plpgsql extension"
PROJ_PRELOAD=${BENCH_PRELOAD_EVENTS:-${PROJ_QUICK:+20000}}
PROJ_PRELOAD=${PROJ_PRELOAD:-100000}
PROJ_CPU_ITERATIONS=${BENCH_PROJ_CPU_ITERATIONS:-${PROJ_QUICK:+2000}}
PROJ_CPU_ITERATIONS=${PROJ_CPU_ITERATIONS:-10000}
PROJ_CPU_ROUNDS=${BENCH_PROJ_CPU_ROUNDS:-${PROJ_QUICK:+1}}
PROJ_CPU_ROUNDS=${PROJ_CPU_ROUNDS:-3}
PROJ_ASYNC_CLIENTS=${BENCH_PROJ_ASYNC_CLIENTS:-8}
PROJ_ASYNC_SECONDS=${BENCH_PROJ_ASYNC_SECONDS:-${PROJ_QUICK:+4}}
PROJ_ASYNC_SECONDS=${PROJ_ASYNC_SECONDS:-8}
PROJ_ASYNC_ROUNDS=${BENCH_PROJ_ASYNC_ROUNDS:-${PROJ_QUICK:+1}}
PROJ_ASYNC_ROUNDS=${PROJ_ASYNC_ROUNDS:-5}
PROJ_SAMPLE_PERIOD=0.1
PROJ_PARTS=${BENCH_PROJ_PARTS:-inline cpu async}
# The read models, in the order they are added (1 = the first, 3 = all).
PROJ_MODELS="summary type_counts recent"
PROJ_ASYNC_NAME=async_summary
# Ten event types drawn per append (pgbench -D types), so the per-type read
# model has ten rows.
PROJ_TYPES='{OrderPlaced,OrderPaid,OrderShipped,OrderCancelled,MoneyDeposited,MoneyWithdrawn,CustomerRegistered,CustomerMoved,ItemAdded,ItemRemoved}'

bench_parts projections "inline cpu async" "$PROJ_PARTS"
for n in $PROJ_COUNTS; do
	case $n in
	0 | 1 | 2 | 3) ;;
	*) echo "BENCH_PROJ_COUNTS: $n read models? (0 to 3)" >&2; exit 2 ;;
	esac
done

projections_setup() {
	local BENCH_DB=$PROJ_DB c
	bench_log "projections: creating database $PROJ_DB with the three contenders and the read models"
	bench_create_db "$PROJ_DB" \
		-f "$BENCH_ROOT/bench/plain.sql" \
		-f "$BENCH_ROOT/bench/plpgsql_store.sql" \
		-f "$BENCH_ROOT/bench/projections/readmodels.sql" \
		-f "$BENCH_ROOT/bench/projections/handlers.sql" \
		-c "ALTER DATABASE $PROJ_DB SET bench_plpgsql.notify = '${BENCH_PLPGSQL_NOTIFY:-off}'"
	bench_log "projections: preloading $PROJ_PRELOAD events into each table"
	for c in $PROJ_CONTENDERS; do
		bench_preload "$(bench_table "$c")" "$(bench_sequence "$c")" \
			"$PROJ_PRELOAD" "$BENCH_DATA" "$BENCH_METADATA"
	done
	bench_wait_worker
	PROJ_RUN=0
}

# projections_arrange CONTENDER N [async]: the read models emptied and kept
# by N triggers on the contender's table (plain, plpgsql) or by N inline
# projections with priorities 1..N (extension; with "async", one async
# projection instead), and by nothing else.  Projections are created with
# replay => false: the events already stored are history they skip.
projections_arrange() {
	local contender=$1 n=$2 mode=${3:-inline} i=0 m sql
	sql="TRUNCATE bench_proj.stream_summary, bench_proj.type_counts, bench_proj.recent_events;
		SELECT eventstore.drop_projection(name) FROM eventstore.projections;"
	case $contender in
	plain | plpgsql)
		sql="$sql SELECT bench_proj.set_triggers('$(bench_table "$contender")', $n);" ;;
	extension)
		if [ "$mode" = async ]; then
			sql="$sql SELECT eventstore.create_projection('$PROJ_ASYNC_NAME', 'bench_proj_es.summary_timed(eventstore.event)', mode => 'async', replay => false);"
		else
			for m in $PROJ_MODELS; do
				i=$((i + 1))
				[ "$i" -le "$n" ] || break
				sql="$sql SELECT eventstore.create_projection('$m', 'bench_proj_es.$m(eventstore.event)', mode => 'inline', replay => false, priority => $i);"
			done
		fi
		;;
	esac
	bench_psql -c "$sql" >/dev/null
}

# projections_measure TAG CLIENTS SECONDS CONTENDER: one pgbench run of
# bench/projections/append.CONTENDER.pgbench after bench_quiesce, and around
# it the server's CPU time, the WAL and the contender's table.  Sets res
# (bench_pgbench's line), cpu and wal (per event), ckpt (checkpoints started
# meanwhile), appended (rows the table gained) and models ("summary events,
# type-count events, recent rows" of the read models afterwards).  The
# commands PROJ_BEFORE_LOAD and PROJ_AFTER_LOAD, when set, run just before
# the load and after it, before the CPU is read (async: the sampler and the
# drain).  Few psql calls: each costs a connection.
projections_measure() {
	local tag=$1 clients=$2 seconds=$3 contender=$4
	local table start cpu0 cpu1 before wal0 after wal1 tx
	table=$(bench_table "$contender")
	PROJ_RUN=$((PROJ_RUN + 1))
	bench_quiesce "$table" bench_proj.stream_summary bench_proj.type_counts bench_proj.recent_events
	start=$(bench_log_lines)
	read -r before wal0 <<<"$(bench_psql -At -F ' ' -c "SELECT count(*), pg_current_wal_insert_lsn() FROM $table")"
	[ -z "${PROJ_BEFORE_LOAD:-}" ] || $PROJ_BEFORE_LOAD
	cpu0=$(bench_server_cpu)
	res=$(bench_pgbench "$tag" "$clients" "$seconds" \
		-f "$BENCH_ROOT/bench/projections/append.$contender.pgbench" \
		-D v=0 -D "run=$PROJ_RUN" -D "types=$PROJ_TYPES" -D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA")
	PROJ_LOAD_END=$(date +%s.%N)
	[ -z "${PROJ_AFTER_LOAD:-}" ] || $PROJ_AFTER_LOAD
	cpu1=$(bench_server_cpu)
	read -r after wal1 models <<<"$(bench_psql -At -F ' ' -c "
		SELECT count(*), pg_current_wal_insert_lsn() - '$wal0'::pg_lsn,
		       (SELECT coalesce(sum(events), 0) FROM bench_proj.stream_summary),
		       (SELECT coalesce(sum(events), 0) FROM bench_proj.type_counts),
		       (SELECT count(*) FROM bench_proj.recent_events)
		  FROM $table")"
	appended=$((after - before))
	ckpt=$(bench_checkpoints_since "$start")
	tx=$(cut -d' ' -f2 <<<"$res")
	cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$tx" 'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / n }')
	wal=$(awk -v w="$wal1" -v n="$tx" 'BEGIN { if (n > 0) printf "%.0f", w / n }')
}

PROJ_CSV_HEADER="suite,part,contender,projections,clients,round,tps,transactions,failed,latency_ms,server_cpu_us_per_event,wal_bytes_per_event,unplanned_checkpoints,samples,lag_events_p50,lag_events_p95,lag_events_p99,lag_events_max,lag_ms_p50,lag_ms_p95,lag_ms_p99,lag_ms_max,event_lag_ms_p50,event_lag_ms_p95,event_lag_ms_p99,event_lag_ms_max,drain_ms"

# projections_check TAG WHAT GOT WANT: warn when GOT is not WANT.
projections_check() {
	[ "$3" = "$4" ] || bench_log "WARNING: $1: $2 = $3, expected $4"
}

# projections_expected N EVENTS: what the read models hold after EVENTS
# events with N of them kept ("summary events, type-count events, recent
# rows").
projections_expected() {
	echo "$([ "$1" -ge 1 ] && echo "$2" || echo 0) $([ "$1" -ge 2 ] && echo "$2" || echo 0) $([ "$1" -ge 3 ] && echo "$2" || echo 0)"
}

# projections_inline_one CSV CLIENTS CONTENDER N ROUND: one run of part 1
# and its CSV line.  Checked: the table gained one row per transaction and
# each read model holds what those rows make.
projections_inline_one() {
	local csv=$1 clients=$2 contender=$3 n=$4 round=$5
	local tag=projections-$contender-p$n-c$clients-r$round
	local res cpu wal ckpt appended models tps tx failed lat
	projections_arrange "$contender" "$n"
	bench_log "round $round/$PROJ_ROUNDS: $contender + $n read model(s), $clients client(s) (${PROJ_SECONDS}s)"
	projections_measure "$tag" "$clients" "$PROJ_SECONDS" "$contender"
	read -r tps tx failed lat <<<"$res"
	projections_check "$tag" "rows appended" "$appended" "$tx"
	projections_check "$tag" "read models (summary events, type-count events, recent rows)" "$models" \
		"$(projections_expected "$n" "$tx")"
	[ "$ckpt" = 0 ] || bench_log "WARNING: $tag: $ckpt checkpoint(s) started during the run"
	[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed transactions"
	echo "projections,inline,$contender,$n,$clients,$round,$tps,$tx,$failed,$lat,$cpu,$wal,$ckpt,,,,,,,,,,,,,," >>"$csv"
}

# projections_cells ROUNDS FUNCTION ARGS...: FUNCTION ARGS... CONTENDER N
# ROUND for every contender and number of read models, ROUNDS times.  A cell
# is one number of read models, its three contenders back to back; the order
# of the cells and of the contenders within a cell rotates from cell to cell
# and round to round, so that none is always first or last while the
# machine drifts.
projections_cells() {
	local rounds=$1 round i j cell=0 kc kn
	shift
	local -a counts contenders
	read -r -a counts <<<"$PROJ_COUNTS"
	read -r -a contenders <<<"$PROJ_CONTENDERS"
	kn=${#counts[@]}
	kc=${#contenders[@]}
	for round in $(seq 1 "$rounds"); do
		for ((i = 0; i < kn; i++)); do
			for ((j = 0; j < kc; j++)); do
				"$@" "${contenders[$(((j + cell + round - 1) % kc))]}" "${counts[$(((i + round - 1) % kn))]}" "$round"
			done
			cell=$((cell + 1))
		done
	done
}

# projections_inline_run CSV: part 1 at each client count.
projections_inline_run() {
	local csv=$1 clients
	for clients in $PROJ_CLIENTS; do
		projections_cells "$PROJ_ROUNDS" projections_inline_one "$csv" "$clients"
	done
}

# projections_cpu_one CSV CONTENDER N ROUND: one measurement of part 2 and
# its CSV line (tps = appends per CPU second, latency_ms = wall-clock ms per
# append).
projections_cpu_one() {
	local csv=$1 contender=$2 n=$3 round=$4 cpu wall models
	projections_arrange "$contender" "$n"
	bench_quiesce "$(bench_table "$contender")" bench_proj.stream_summary bench_proj.type_counts bench_proj.recent_events
	PROJ_RUN=$((PROJ_RUN + 1))
	IFS='|' read -r cpu wall models <<<"$(bench_psql -At -c "SET synchronous_commit = off" \
		-c "CALL bench_proj.cpu_loop('$contender', $PROJ_RUN, $PROJ_CPU_ITERATIONS, '$BENCH_DATA', '$BENCH_METADATA', '$PROJ_TYPES')" \
		-c "SELECT (SELECT coalesce(sum(events), 0) FROM bench_proj.stream_summary) || ' ' ||
		           (SELECT coalesce(sum(events), 0) FROM bench_proj.type_counts) || ' ' ||
		           (SELECT count(*) FROM bench_proj.recent_events)" | paste -sd '|')"
	projections_check "cpu-$contender-p$n-r$round" "read models (summary events, type-count events, recent rows)" "$models" \
		"$(projections_expected "$n" $((PROJ_CPU_ITERATIONS + 200)))"
	bench_log "round $round/$PROJ_CPU_ROUNDS: cpu, $contender + $n read model(s): $(bench_fmt "$cpu") µs CPU, $(bench_fmt "$wall") µs wall per append"
	echo "projections,cpu,$contender,$n,1,$round,$(awk -v c="$cpu" 'BEGIN { if (c > 0) printf "%.1f", 1e6 / c }'),$PROJ_CPU_ITERATIONS,0,$(awk -v w="$wall" 'BEGIN { printf "%.4f", w / 1000 }'),$cpu,,,,,,,,,,,,,,," >>"$csv"
}

# projections_sampler_start: bench_proj.sample_lag in the background for
# the duration of the load (its pid in sampler).
projections_sampler_start() {
	bench_psql -c "CALL bench_proj.sample_lag($PROJ_ROUND, '$PROJ_ASYNC_NAME', $PROJ_ASYNC_SECONDS, $PROJ_SAMPLE_PERIOD)" &
	sampler=$!
}

# projections_drain: after the load of an async run, wait until the
# projection has handled every event, then PROJ_DRAIN_MS = the time from the
# end of the load (pgbench returning) to the handler's last call, 0 if it
# kept up.  Both clocks are this machine's.
projections_drain() {
	local ok last
	ok=$(bench_value "SELECT eventstore.wait_for_projection('$PROJ_ASYNC_NAME', '300 s')")
	[ "$ok" = t ] || bench_log "WARNING: the async projection did not catch up within 300 s"
	last=$(bench_value "SELECT extract(epoch FROM max(projected_at)) FROM bench_proj.async_lag WHERE run IS NULL")
	PROJ_DRAIN_MS=$(awk -v a="$last" -v b="$PROJ_LOAD_END" 'BEGIN { d = (a - b) * 1000; printf "%.0f", (d > 0 ? d : 0) }')
}

# projections_lag_stats RUN: "samples, p50/p95/p99/max of sampled lag_events,
# of sampled lag_time (ms), of per-event lag (ms)", comma-separated, over
# the samples and events of run RUN (0: every run).  Per-event lag: the
# handler's clock_timestamp() - the event's created_at (the start of the
# appending transaction, so it includes the append and its commit).
projections_lag_stats() {
	local w="run = $1"
	[ "$1" != 0 ] || w=true
	bench_value "
SELECT concat_ws(',', s.n, s.e50, s.e95, s.e99, s.emax,
                 round(s.m50::numeric, 1), round(s.m95::numeric, 1), round(s.m99::numeric, 1), round(s.mmax::numeric, 1),
                 round(e.p50::numeric, 1), round(e.p95::numeric, 1), round(e.p99::numeric, 1), round(e.pmax::numeric, 1))
  FROM (SELECT count(*) AS n,
               percentile_disc(0.50) WITHIN GROUP (ORDER BY lag_events) AS e50,
               percentile_disc(0.95) WITHIN GROUP (ORDER BY lag_events) AS e95,
               percentile_disc(0.99) WITHIN GROUP (ORDER BY lag_events) AS e99,
               max(lag_events) AS emax,
               percentile_disc(0.50) WITHIN GROUP (ORDER BY lag_ms) AS m50,
               percentile_disc(0.95) WITHIN GROUP (ORDER BY lag_ms) AS m95,
               percentile_disc(0.99) WITHIN GROUP (ORDER BY lag_ms) AS m99,
               max(lag_ms) AS mmax
          FROM bench_proj.lag_samples WHERE $w) s,
       (SELECT percentile_disc(0.50) WITHIN GROUP (ORDER BY l) AS p50,
               percentile_disc(0.95) WITHIN GROUP (ORDER BY l) AS p95,
               percentile_disc(0.99) WITHIN GROUP (ORDER BY l) AS p99,
               max(l) AS pmax
          FROM (SELECT extract(epoch FROM projected_at - created_at) * 1000 AS l
                  FROM bench_proj.async_lag WHERE $w) x) e"
}

# projections_async_one CSV KIND ROUND: one run of part 2, KIND none (no
# projection) or async (one async projection, sampled meanwhile, drained
# after).  The CPU is read after the drain, so it includes the worker's
# whole share.
projections_async_one() {
	local csv=$1 kind=$2 round=$3 clients=$PROJ_ASYNC_CLIENTS
	local tag=projections-async-$kind-r$round sampler='' stats=',,,,,,,,,,,,,'
	local res cpu wal ckpt appended models tps tx failed lat
	local PROJ_BEFORE_LOAD='' PROJ_AFTER_LOAD='' PROJ_DRAIN_MS='' PROJ_ROUND=$round
	projections_arrange extension 0 "$kind"
	bench_log "round $round/$PROJ_ASYNC_ROUNDS: async part, $clients clients, $kind projection (${PROJ_ASYNC_SECONDS}s)"
	if [ "$kind" = async ]; then
		PROJ_BEFORE_LOAD=projections_sampler_start
		PROJ_AFTER_LOAD=projections_drain
	fi
	projections_measure "$tag" "$clients" "$PROJ_ASYNC_SECONDS" extension
	read -r tps tx failed lat <<<"$res"
	projections_check "$tag" "rows appended" "$appended" "$tx"
	if [ -n "$sampler" ]; then
		wait "$sampler" || bench_log "WARNING: $tag: the sampler failed"
		bench_psql -c "UPDATE bench_proj.async_lag SET run = $round WHERE run IS NULL"
		projections_check "$tag" "events handled by the async projection" \
			"$(bench_value "SELECT count(*) FROM bench_proj.async_lag WHERE run = $round")" "$tx"
		projections_check "$tag" "events in the stream summary" "${models%% *}" "$tx"
		stats="$(projections_lag_stats "$round"),$PROJ_DRAIN_MS"
		bench_log "async: samples and lag (events p50..max, ms p50..max, per-event ms p50..max), drain ms: $stats"
	fi
	[ "$ckpt" = 0 ] || bench_log "WARNING: $tag: $ckpt checkpoint(s) started during the run"
	[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed transactions"
	echo "projections,async,$kind,$([ "$kind" = async ] && echo 1 || echo 0),$clients,$round,$tps,$tx,$failed,$lat,$cpu,$wal,$ckpt,$stats" >>"$csv"
}

# projections_async_run CSV: PROJ_ASYNC_ROUNDS rounds of none and async,
# alternating which goes first; then one line (round "all") with the lag
# statistics over the samples and events of every round.
projections_async_run() {
	local csv=$1 round kind
	local -a order
	bench_psql -c "TRUNCATE bench_proj.async_lag, bench_proj.lag_samples"
	for round in $(seq 1 "$PROJ_ASYNC_ROUNDS"); do
		order=(none async)
		[ $((round % 2)) = 1 ] || order=(async none)
		for kind in "${order[@]}"; do
			projections_async_one "$csv" "$kind" "$round"
		done
	done
	echo "projections,async,async,1,$PROJ_ASYNC_CLIENTS,all,,,,,,,,$(projections_lag_stats 0)," >>"$csv"
	# every sample, for a closer look (bench/results/projections_lag.csv)
	bench_psql -c "\\copy (SELECT run, extract(epoch FROM sampled_at - min(sampled_at) OVER (PARTITION BY run)) AS t_s, lag_events, lag_ms FROM bench_proj.lag_samples ORDER BY run, sampled_at) TO '$BENCH_RESULTS/projections_lag.csv' CSV HEADER"
}

projections_run() {
	local BENCH_DB=$PROJ_DB
	local csv=$1
	echo "$PROJ_CSV_HEADER" >"$csv"
	if bench_part "$PROJ_PARTS" inline; then projections_inline_run "$csv"; fi
	if bench_part "$PROJ_PARTS" cpu; then projections_cells "$PROJ_CPU_ROUNDS" projections_cpu_one "$csv"; fi
	if bench_part "$PROJ_PARTS" async; then projections_async_run "$csv"; fi
}

# projections_cell CSV COLUMN NAME=VALUE...: the median of COLUMN over the
# matching runs.
projections_cell() {
	# shellcheck disable=SC2046
	bench_median $(bench_csv_values "$@")
}

# projections_round_ratios CSV PART A_CONTENDER A_N B_CONTENDER B_N CLIENTS:
# tps(A) / tps(B) round by round, one per line.
projections_round_ratios() {
	awk -F, -v p="$2" -v ac="$3" -v an="$4" -v bc="$5" -v bn="$6" -v c="$7" '
		NR > 1 && $2 == p && $5 == c && $3 == ac && $4 == an { a[$6] = $7 }
		NR > 1 && $2 == p && $5 == c && $3 == bc && $4 == bn { b[$6] = $7 }
		END { for (r in a) if ((r in b) && b[r] + 0 > 0) printf "%.4f\n", a[r] / b[r] }' "$1"
}

projections_report() {
	local BENCH_DB=$PROJ_DB
	local csv=$1 clients n c
	echo "## projections: read models kept in the append transaction, and an async projection's lag"
	echo
	echo "$BENCH_MACHINE"
	echo
	if bench_part "$PROJ_PARTS" inline; then
		echo "### 1. Appends with 0, 1 and 3 read models kept in the appending transaction (events/s, median of $PROJ_ROUNDS round(s) of ${PROJ_SECONDS}s)"
		echo
		echo "pgbench -M prepared, -j min(${BENCH_JOBS:-2}, clients), synchronous_commit=$(bench_value 'SHOW synchronous_commit');" \
			"one event per transaction to 'stream-<run>-<client>-<random 1..1000000>', its type one of 10, ~100-byte data, ~70-byte metadata;" \
			"each table preloaded once with $PROJ_PRELOAD events (it grows by the runs); each run with empty read models, after VACUUM (ANALYZE) and CHECKPOINT." \
			"Read models (PL/pgSQL, bench/projections/): 1 = per-stream summary upsert; 3 = that, a per-type counter upsert (10 rows)" \
			"and a row per event in a recent-events table. extension = eventstore.append with that many inline projections;" \
			"plain = INSERT with that many AFTER INSERT FOR EACH ROW triggers; plpgsql = bench_plpgsql.append with the triggers on its table." \
			"The three contenders of a row run back to back in each round."
		echo
		echo "| read models | clients | plain + triggers | plpgsql + triggers | extension + inline projections | extension / plain | extension / plpgsql | extension vs 0 | plain vs 0 | plpgsql vs 0 |"
		echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for clients in $PROJ_CLIENTS; do
			local p0 l0 e0
			p0=$(projections_cell "$csv" tps part=inline contender=plain projections=0 clients="$clients")
			l0=$(projections_cell "$csv" tps part=inline contender=plpgsql projections=0 clients="$clients")
			e0=$(projections_cell "$csv" tps part=inline contender=extension projections=0 clients="$clients")
			for n in $PROJ_COUNTS; do
				local p l e
				p=$(projections_cell "$csv" tps part=inline contender=plain projections="$n" clients="$clients")
				l=$(projections_cell "$csv" tps part=inline contender=plpgsql projections="$n" clients="$clients")
				e=$(projections_cell "$csv" tps part=inline contender=extension projections="$n" clients="$clients")
				echo "| $n | $clients | $(bench_fmt "$p") | $(bench_fmt "$l") | $(bench_fmt "$e") |" \
					"**$(bench_ratio "$e" "$p")** | **$(bench_ratio "$e" "$l")** | $(bench_ratio "$e" "$e0") | $(bench_ratio "$p" "$p0") | $(bench_ratio "$l" "$l0") |"
			done
		done
		echo
		echo "The same ratios round by round (median (min-max) over the rounds): extension / plain and extension / plpgsql compare runs" \
			"that were adjacent in time, so the machine's drift cancels in them and their range shows the noise; vs 0 compares runs of one round."
		echo
		echo "| read models | clients | extension / plain | extension / plpgsql | extension vs 0 | plain vs 0 | plpgsql vs 0 |"
		echo "|---:|---:|---:|---:|---:|---:|---:|"
		for clients in $PROJ_CLIENTS; do
			for n in $PROJ_COUNTS; do
				# shellcheck disable=SC2046
				echo "| $n | $clients | $(bench_range $(projections_round_ratios "$csv" inline extension "$n" plain "$n" "$clients")) |" \
					"$(bench_range $(projections_round_ratios "$csv" inline extension "$n" plpgsql "$n" "$clients")) |" \
					"$(bench_range $(projections_round_ratios "$csv" inline extension "$n" extension 0 "$clients")) |" \
					"$(bench_range $(projections_round_ratios "$csv" inline plain "$n" plain 0 "$clients")) |" \
					"$(bench_range $(projections_round_ratios "$csv" inline plpgsql "$n" plpgsql 0 "$clients")) |"
			done
		done
		echo
		echo "Server CPU (user + system of every server process during the run, from /proc) and WAL per event: with durable commits" \
			"the rates are bound by WAL flushes, these show what each path costs."
		echo
		echo "| read models | clients | CPU µs/event plain | plpgsql | extension | WAL bytes/event plain | plpgsql | extension | avg latency ms plain | plpgsql | extension |"
		echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for clients in $PROJ_CLIENTS; do
			for n in $PROJ_COUNTS; do
				local line="| $n | $clients |"
				for c in $PROJ_CONTENDERS; do
					line="$line $(bench_fmt "$(projections_cell "$csv" server_cpu_us_per_event part=inline contender="$c" projections="$n" clients="$clients")") |"
				done
				for c in $PROJ_CONTENDERS; do
					line="$line $(bench_fmt "$(projections_cell "$csv" wal_bytes_per_event part=inline contender="$c" projections="$n" clients="$clients")") |"
				done
				for c in $PROJ_CONTENDERS; do
					line="$line $(projections_cell "$csv" latency_ms part=inline contender="$c" projections="$n" clients="$clients") |"
				done
				echo "$line"
			done
		done
		echo
	fi
	if bench_part "$PROJ_PARTS" cpu; then
		echo "### 2. CPU per append in one backend, without client and disk (µs, median of $PROJ_CPU_ROUNDS round(s) of $PROJ_CPU_ITERATIONS appends)"
		echo
		echo "bench_proj.cpu_loop: one backend appends in a PL/pgSQL loop, one append per transaction, synchronous_commit = off" \
			"(no commit waits for the disk; every one wakes the WAL writer, in every contender), new stream per append; the backend's" \
			"time on a CPU (/proc/self/schedstat). The cost of the work itself, which part 1's rates hide behind the WAL flush."
		echo
		echo "| read models | plain + triggers | plpgsql + triggers | extension + inline projections | extension CPU / plain CPU | extension CPU / plpgsql CPU | read models' cost: plain | plpgsql | extension |"
		echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		local c0p c0l c0e
		c0p=$(projections_cell "$csv" server_cpu_us_per_event part=cpu contender=plain projections=0)
		c0l=$(projections_cell "$csv" server_cpu_us_per_event part=cpu contender=plpgsql projections=0)
		c0e=$(projections_cell "$csv" server_cpu_us_per_event part=cpu contender=extension projections=0)
		for n in $PROJ_COUNTS; do
			local cp cl ce
			cp=$(projections_cell "$csv" server_cpu_us_per_event part=cpu contender=plain projections="$n")
			cl=$(projections_cell "$csv" server_cpu_us_per_event part=cpu contender=plpgsql projections="$n")
			ce=$(projections_cell "$csv" server_cpu_us_per_event part=cpu contender=extension projections="$n")
			awk -v n="$n" -v p="$cp" -v l="$cl" -v e="$ce" -v p0="$c0p" -v l0="$c0l" -v e0="$c0e" 'BEGIN {
				printf "| %s | %.1f | %.1f | %.1f | %.2f | %.2f | %+.1f | %+.1f | %+.1f |\n",
					n, p, l, e, (p > 0 ? e / p : 0), (l > 0 ? e / l : 0), p - p0, l - l0, e - e0 }'
		done
		echo
		echo "(CPU ratios: lower is cheaper, the reverse of the rate ratios of part 1. Cost: µs more than with no read model.)"
		echo
	fi
	if bench_part "$PROJ_PARTS" async; then
		local none with
		echo "### 3. An async projection under load ($PROJ_ASYNC_CLIENTS clients, median of $PROJ_ASYNC_ROUNDS round(s) of ${PROJ_ASYNC_SECONDS}s)"
		echo
		echo "The extension's append as in part 1 (same table), no projection vs one async projection (the per-stream summary upsert, run by the" \
			"background worker in batches of eventstore.projection_batch_size = $(bench_value 'SHOW eventstore.projection_batch_size'); its handler also" \
			"records clock_timestamp() per event), runs alternating. CPU is read after the projection has caught up, so it includes the worker's whole share."
		echo
		echo "| projection | appends/s | CPU µs/event | WAL bytes/event | avg latency ms |"
		echo "|---|---:|---:|---:|---:|"
		for c in none async; do
			echo "| $c | $(bench_fmt "$(projections_cell "$csv" tps part=async contender="$c")") |" \
				"$(bench_fmt "$(projections_cell "$csv" server_cpu_us_per_event part=async contender="$c")") |" \
				"$(bench_fmt "$(projections_cell "$csv" wal_bytes_per_event part=async contender="$c")") |" \
				"$(projections_cell "$csv" latency_ms part=async contender="$c") |"
		done
		none=$(projections_cell "$csv" tps part=async contender=none)
		with=$(projections_cell "$csv" tps part=async contender=async)
		echo
		# shellcheck disable=SC2046
		echo "Appends/s with the async projection / without: **$(bench_ratio "$with" "$none")**;" \
			"per round: $(bench_range $(projections_round_ratios "$csv" async async 1 none 0 "$PROJ_ASYNC_CLIENTS"))."
		echo
		echo "Lag during the load, over every round: sampled every ${PROJ_SAMPLE_PERIOD}s from another session" \
			"(\`SELECT lag_events, lag_time FROM eventstore.projection_status\`), and per event" \
			"(the handler's clock_timestamp() - created_at, which is the start of the appending transaction: it includes the append's own latency)."
		echo
		echo "| lag | p50 | p95 | p99 | max |"
		echo "|---|---:|---:|---:|---:|"
		local stat what
		for what in "lag_events (sampled, $(bench_csv_values "$csv" samples part=async round=all) samples):lag_events" \
			"lag_time ms (sampled):lag_ms" "per event, created_at → handled, ms:event_lag_ms"; do
			stat=${what##*:}
			echo "| ${what%:*} | $(bench_csv_values "$csv" "${stat}_p50" part=async round=all) |" \
				"$(bench_csv_values "$csv" "${stat}_p95" part=async round=all) |" \
				"$(bench_csv_values "$csv" "${stat}_p99" part=async round=all) |" \
				"$(bench_csv_values "$csv" "${stat}_max" part=async round=all) |"
		done
		echo
		# shellcheck disable=SC2046
		echo "Time from the end of the load to the projection's last handled event (drain), ms, median (min-max) over the rounds:" \
			"$(bench_range $(bench_csv_values "$csv" drain_ms part=async contender=async)) (0: it had kept up)." \
			"Every sample: bench/results/projections_lag.csv."
		echo
	fi
}
