# Suite "global": the global log.  Sourced by bench/run.sh, which calls
# global_setup, global_run and global_report.
#
#   1. append throughput (8 clients, single-event appends, the append suite's
#      bench/append/single.extension.pgbench) with one client LISTENing on
#      eventstore_events vs none, alternating; notifications received and
#      appends per notification (coalescing);
#   2. commit -> notification latency (bench/global/latency.py), on an idle
#      server and while 8 pgbench clients append;
#   3. eventstore.read_all pages of 1000 vs a plain primary-key range scan of
#      the same rows (bench/global/*.pgbench), unfiltered and filtered by one
#      of ten event types, over a preloaded log of BENCH_GLOBAL_EVENTS events.
#
# See bench/README.md, section "Suite global".

GLOBAL_QUICK=$BENCH_IS_QUICK

GLOBAL_PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
# Many short runs, alternating between the two contenders of a cell, rather
# than BENCH_ROUNDS long ones: on a shared machine the noise comes in bursts
# of seconds, and alternating often spreads them over both contenders.
GLOBAL_SECONDS=${BENCH_GLOBAL_SECONDS:-${GLOBAL_QUICK:+3}}
GLOBAL_SECONDS=${GLOBAL_SECONDS:-5}
GLOBAL_ROUNDS=${BENCH_GLOBAL_ROUNDS:-${GLOBAL_QUICK:+1}}
GLOBAL_ROUNDS=${GLOBAL_ROUNDS:-6}
GLOBAL_EVENTS=${BENCH_GLOBAL_EVENTS:-${GLOBAL_QUICK:+200000}}
GLOBAL_EVENTS=${GLOBAL_EVENTS:-1000000}
GLOBAL_APPEND_CLIENTS=${BENCH_GLOBAL_APPEND_CLIENTS:-8}
GLOBAL_READ_CLIENTS=${BENCH_GLOBAL_READ_CLIENTS:-1 2}
GLOBAL_LATENCY_SAMPLES=${BENCH_GLOBAL_LATENCY_SAMPLES:-${GLOBAL_QUICK:+100}}
GLOBAL_LATENCY_SAMPLES=${GLOBAL_LATENCY_SAMPLES:-400}
GLOBAL_LOAD_SECONDS=${BENCH_GLOBAL_LOAD_SECONDS:-${GLOBAL_QUICK:+8}}
GLOBAL_LOAD_SECONDS=${GLOBAL_LOAD_SECONDS:-25}
GLOBAL_LISTENER=${BENCH_GLOBAL_LISTENER:-count}
# The parts to run (they run in the order read, append, latency).
GLOBAL_PARTS=${BENCH_GLOBAL_PARTS:-append latency read}
# Rows past the last random start position: enough that a page filtered on
# one of the ten types (~10% of the rows) is always full (checked in setup).
GLOBAL_TAIL=20000
GLOBAL_MAXSTART=$((GLOBAL_EVENTS - GLOBAL_TAIL))
# The ten event types of the preloaded log, as a text[] literal (pgbench -D).
GLOBAL_TYPES='{OrderPlaced,OrderPaid,OrderShipped,OrderCancelled,MoneyDeposited,MoneyWithdrawn,CustomerRegistered,CustomerMoved,ItemAdded,ItemRemoved}'

[ "$GLOBAL_EVENTS" -gt $((GLOBAL_TAIL + 1000)) ] ||
	{ echo "BENCH_GLOBAL_EVENTS must be above $((GLOBAL_TAIL + 1000))" >&2; exit 2; }
bench_parts global "append latency read" "$GLOBAL_PARTS"
case $GLOBAL_LISTENER in
count | follow) ;;
*) echo "BENCH_GLOBAL_LISTENER must be count or follow" >&2; exit 2 ;;
esac
"$GLOBAL_PYTHON" -c 'import psycopg2' 2>/dev/null ||
	{ echo "suite global needs $GLOBAL_PYTHON with psycopg2 (Debian: apt-get install python3-psycopg2; or set BENCH_PYTHON)" >&2; exit 1; }

# global_sql_of FILE: the SQL statement of a pgbench script, with the
# variables as the parameters pgbench -M prepared sends ($1 start, $2 types,
# $3 t), so that PREPARE plans exactly what pgbench runs.
global_sql_of() {
	grep -v -e '^\\' -e '^--' "$1" | sed -e 's/:start/$1/g' -e 's/:types/$2/g' -e 's/:t\b/$3/g'
}

# global_setup: a fresh extension holding GLOBAL_EVENTS events written
# straight into eventstore.events (as its owner; bench only, it bypasses the
# append path): positions 1..N in N/10 streams of ten events interleaved
# across the log ('account-K', versions 1..10), one of ten event types per
# event (pseudo-random, hashint8 of the position),
# created_at one millisecond apart.  Then the sequence is set to N, VACUUM
# (ANALYZE), the table and its primary key are loaded into shared buffers
# (pg_prewarm), the plain queries' plans are checked to use the primary key,
# and the pages the benchmark reads are checked to be full and equal.
global_setup() {
	local n=$GLOBAL_EVENTS streams=$((GLOBAL_EVENTS / 10)) t0 t1
	bench_log "global: recreating the extension and preloading $n events"
	bench_psql -c "SET client_min_messages = warning" \
		-c "DROP EXTENSION IF EXISTS eventstore" -c "CREATE EXTENSION eventstore"
	t0=$(date +%s)
	bench_psql -v data="$BENCH_DATA" -v metadata="$BENCH_METADATA" -v types="$GLOBAL_TYPES" >/dev/null <<SQL
INSERT INTO eventstore.events
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT g, (g - 1) / $streams + 1,
       now() - ($n - g) * interval '1 millisecond', gen_random_uuid(),
       'account-' || ((g - 1) % $streams + 1),
       (:'types'::text[])[1 + (hashint8(g) & 2147483647) % 10],
       :'data'::jsonb, :'metadata'::jsonb
  FROM generate_series(1, $n) AS g;
SELECT setval('eventstore.global_position_seq', $n);
SQL
	bench_quiesce
	t1=$(date +%s)
	bench_log "global: preloaded, vacuumed and checkpointed in $((t1 - t0)) s"
	if bench_psql -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" 2>/dev/null; then
		bench_psql -At -c "SELECT pg_prewarm('eventstore.events'), pg_prewarm('eventstore.events_pkey')" >/dev/null
	else
		bench_log "WARNING: pg_prewarm unavailable; the first read runs warm the cache"
	fi

	# The plain queries must be primary-key range scans: generic plans (what
	# pgbench -M prepared ends up with) and custom plans.
	local explain=$BENCH_WORK/global-explain.txt f mode args
	: >"$explain"
	for f in plain plain_filtered; do
		args=$((GLOBAL_MAXSTART / 2))
		[ "$f" = plain ] || args="$args, '$GLOBAL_TYPES', 3"
		for mode in force_generic_plan force_custom_plan; do
			{
				echo "-- bench/global/$f.pgbench, plan_cache_mode=$mode:"
				bench_psql -At -c "SET plan_cache_mode = $mode" \
					-c "PREPARE q AS $(global_sql_of "$BENCH_ROOT/bench/global/$f.pgbench")" \
					-c "EXPLAIN (COSTS OFF) EXECUTE q($args)"
				echo
			} >>"$explain"
		done
	done
	if [ "$(grep -c 'Index Scan using events_pkey on events' "$explain")" != 4 ]; then
		bench_log "WARNING: a plain query does not scan the primary key; the plans:"
		cat "$explain" >&2
	fi

	# Every page the benchmark reads is full (1000 rows), and read_all
	# returns exactly the plain query's rows.
	local check cols='global_position, stream_id, stream_version, event_id, event_type, data, metadata, created_at'
	local m=$GLOBAL_MAXSTART h=$((GLOBAL_MAXSTART / 2))
	check=$(bench_psql -At -v types="$GLOBAL_TYPES" <<SQL | tr '\n' ' '
SELECT count(*) FROM eventstore.read_all($m, 1000);
SELECT min((SELECT count(*) FROM eventstore.read_all($m, 1000, ARRAY[t]))) FROM unnest(:'types'::text[]) AS t;
SELECT count(*) FROM (
    SELECT * FROM eventstore.read_all($h, 1000)
    EXCEPT ALL
    SELECT $cols FROM eventstore.events WHERE global_position > $h ORDER BY global_position LIMIT 1000) d;
SELECT count(*) FROM (
    SELECT * FROM eventstore.read_all($h, 1000, ARRAY[(:'types'::text[])[3]])
    EXCEPT ALL
    SELECT $cols FROM eventstore.events WHERE global_position > $h AND event_type = (:'types'::text[])[3]
     ORDER BY global_position LIMIT 1000) d;
SQL
)
	if [ "$check" != "1000 1000 0 0 " ]; then
		bench_log "WARNING: page check failed (want '1000 1000 0 0': a full page, full pages for every type, no difference to the plain queries): '$check'"
	fi

	bench_wait_worker
}

# global_csv_line FIELDS...: one CSV line; the header is in global_run.
global_csv_line() {
	local IFS=,
	echo "global,$*"
}

# global_read_run CSV: read_all vs plain, unfiltered and filtered, at each
# client count, GLOBAL_ROUNDS times; the two contenders of a cell alternate
# which goes first from cell to cell and round to round.  Nothing writes
# meanwhile, so no quiesce between runs.
global_read_run() {
	local csv=$1 round kind clients cell=0 c res tps tx failed lat
	local -a order
	for round in $(seq 1 "$GLOBAL_ROUNDS"); do
		for kind in all filtered; do
			for clients in $GLOBAL_READ_CLIENTS; do
				if [ "$kind" = all ]; then order=(read_all plain); else order=(read_all_filtered plain_filtered); fi
				if [ $(((cell + round) % 2)) = 1 ]; then order=("${order[1]}" "${order[0]}"); fi
				cell=$((cell + 1))
				for c in "${order[@]}"; do
					bench_log "round $round/$GLOBAL_ROUNDS: read $c, $clients client(s) (${GLOBAL_SECONDS}s)"
					res=$(bench_pgbench "global-read-$c-c$clients-r$round" "$clients" "$GLOBAL_SECONDS" \
						-f "$BENCH_ROOT/bench/global/$c.pgbench" \
						-D "maxstart=$GLOBAL_MAXSTART" -D "types=$GLOBAL_TYPES")
					read -r tps tx failed lat <<<"$res"
					[ "$failed" = 0 ] || bench_log "WARNING: read $c: $failed failed transactions"
					global_csv_line read "$c" "$clients" "$round" "$tps" \
						"$(awk -v t="$tps" 'BEGIN { printf "%.1f", t * 1000 }')" "$tx" "$failed" "$lat" \
						'' '' '' '' '' '' '' '' >>"$csv"
				done
			done
		done
	done
}

# global_listener_start OUT: start bench/global/listener.py in the
# background (pid in GLOBAL_LISTENER_PID) and wait until it listens.
global_listener_start() {
	local out=$1 i follow=
	[ "$GLOBAL_LISTENER" = follow ] && follow=--follow
	"$GLOBAL_PYTHON" "$BENCH_ROOT/bench/global/listener.py" --dsn "$(bench_dsn)" $follow \
		>"$out" 2>"$out.err" &
	GLOBAL_LISTENER_PID=$!
	for i in $(seq 1 150); do
		grep -q '^ready$' "$out" 2>/dev/null && return 0
		kill -0 "$GLOBAL_LISTENER_PID" 2>/dev/null || break
		sleep 0.1
	done
	bench_log "the listener did not start:"
	cat "$out.err" >&2
	return 1
}

# global_append_run CSV: GLOBAL_APPEND_CLIENTS clients appending single
# events, without and with one listener, GLOBAL_ROUNDS times, alternating
# which goes first.  Each run starts after VACUUM (ANALYZE) and CHECKPOINT;
# the log grows from run to run (the alternation spreads that evenly).
global_append_run() {
	local csv=$1 round c clients=$GLOBAL_APPEND_CLIENTS
	local -a order
	for round in $(seq 1 "$GLOBAL_ROUNDS"); do
		order=(none listener)
		[ $((round % 2)) = 1 ] || order=(listener none)
		for c in "${order[@]}"; do
			local tag=global-append-$c-c$clients-r$round out=$BENCH_WORK/global-listener-r$round.out
			local before after start res tps tx failed lat ckpt notif='' apn='' last=''
			bench_quiesce
			before=$(bench_value "SELECT last_value FROM eventstore.global_position_seq")
			start=$(bench_log_lines)
			[ "$c" = listener ] && global_listener_start "$out"
			bench_log "round $round/$GLOBAL_ROUNDS: append, $clients clients, $c listener (${GLOBAL_SECONDS}s)"
			res=$(bench_pgbench "$tag" "$clients" "$GLOBAL_SECONDS" \
				-f "$BENCH_ROOT/bench/append/single.extension.pgbench" \
				-D v=0 -D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA")
			read -r tps tx failed lat <<<"$res"
			after=$(bench_value "SELECT max(global_position) FROM eventstore.events")
			if [ "$c" = listener ]; then
				# Let the last cycle's notification arrive, then stop.
				sleep 0.5
				kill -TERM "$GLOBAL_LISTENER_PID"
				wait "$GLOBAL_LISTENER_PID" || bench_log "WARNING: the listener exited with an error"
				notif=$(sed -n 's/^notifications=\([0-9]*\) .*/\1/p' "$out")
				last=$(sed -n 's/.* last=\([0-9]*\) .*/\1/p' "$out")
				apn=$(awk -v t="$tx" -v n="$notif" 'BEGIN { if (n > 0) printf "%.1f", t / n }')
				[ "${last:-0}" -ge "$after" ] ||
					bench_log "WARNING: $tag: last notification announced ${last:-nothing}, the log ends at $after"
				bench_log "listener: $(tail -n 1 "$out")"
			fi
			[ "$((after - before))" = "$tx" ] ||
				bench_log "WARNING: $tag: $((after - before)) positions drawn, $tx transactions"
			ckpt=$(bench_checkpoints_since "$start")
			[ "$ckpt" = 0 ] || bench_log "WARNING: $tag: $ckpt checkpoint(s) started during the run"
			[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed transactions"
			global_csv_line append "$c" "$clients" "$round" "$tps" "$tps" "$tx" "$failed" "$lat" \
				"$notif" "$apn" '' '' '' '' '' '' >>"$csv"
		done
	done
}

# global_latency CSV CASE: one latency.py run (CASE idle, or load with
# GLOBAL_APPEND_CLIENTS pgbench clients appending meanwhile).
global_latency() {
	local csv=$1 case=$2 res tps='' clients=0 pid=''
	local samples=$BENCH_RESULTS/global_latency.csv
	bench_quiesce
	if [ "$case" = load ]; then
		clients=$GLOBAL_APPEND_CLIENTS
		bench_log "latency: $GLOBAL_LATENCY_SAMPLES samples while $clients clients append (${GLOBAL_LOAD_SECONDS}s)"
		bench_pgbench global-latency-load "$clients" "$GLOBAL_LOAD_SECONDS" \
			-f "$BENCH_ROOT/bench/append/single.extension.pgbench" \
			-D v=0 -D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA" \
			>"$BENCH_WORK/global-latency-load.res" &
		pid=$!
		sleep 2
		res=$("$GLOBAL_PYTHON" "$BENCH_ROOT/bench/global/latency.py" --dsn "$(bench_dsn)" \
			--samples "$GLOBAL_LATENCY_SAMPLES" --seconds $((GLOBAL_LOAD_SECONDS - 4)) \
			--label load --csv "$samples")
		wait "$pid" || bench_log "WARNING: the background pgbench failed"
		tps=$(cut -d' ' -f1 "$BENCH_WORK/global-latency-load.res")
	else
		bench_log "latency: $GLOBAL_LATENCY_SAMPLES samples on an idle server"
		res=$("$GLOBAL_PYTHON" "$BENCH_ROOT/bench/global/latency.py" --dsn "$(bench_dsn)" \
			--samples "$GLOBAL_LATENCY_SAMPLES" --seconds 300 --label idle --csv "$samples")
	fi
	bench_log "latency ($case): $res"
	local s t p50 p95 p99 max
	s=$(sed -n 's/.*samples=\([0-9]*\).*/\1/p' <<<"$res")
	t=$(sed -n 's/.*timeouts=\([0-9]*\).*/\1/p' <<<"$res")
	p50=$(sed -n 's/.* p50=\([^ ]*\).*/\1/p' <<<"$res")
	p95=$(sed -n 's/.* p95=\([^ ]*\).*/\1/p' <<<"$res")
	p99=$(sed -n 's/.* p99=\([^ ]*\).*/\1/p' <<<"$res")
	max=$(sed -n 's/.* max=\([^ ]*\).*/\1/p' <<<"$res")
	[ "${t:-0}" = 0 ] || bench_log "WARNING: latency ($case): $t sample(s) got no notification within 5 s"
	global_csv_line latency "$case" "$clients" 1 "$tps" "$tps" '' '' '' '' '' \
		"$s" "$t" "$p50" "$p95" "$p99" "$max" >>"$csv"
}

global_run() {
	local csv=$1
	echo "suite,part,case,clients,round,tps,rows_per_s,transactions,failed,latency_ms,notifications,appends_per_notification,samples,timeouts,p50_ms,p95_ms,p99_ms,max_ms" >"$csv"
	echo "label,sample,commit_ms,latency_ms" >"$BENCH_RESULTS/global_latency.csv"
	if bench_part "$GLOBAL_PARTS" read; then global_read_run "$csv"; fi
	if bench_part "$GLOBAL_PARTS" append; then global_append_run "$csv"; fi
	if bench_part "$GLOBAL_PARTS" latency; then
		global_latency "$csv" idle
		global_latency "$csv" load
	fi
}

# global_cell CSV PART CASE CLIENTS COLUMN: the median of a numeric column
# over the rounds.
global_cell() {
	# shellcheck disable=SC2046
	bench_median $(awk -F, -v p="$2" -v k="$3" -v c="$4" -v col="$5" \
		'NR > 1 && $2 == p && $3 == k && $4 == c && $col != "" { print $col }' "$1")
}

# global_ratio_range CSV PART A B CLIENTS COLUMN: the per-round ratios A/B
# (the two runs of a round are adjacent in time, so slow drift cancels) as
# "median (min-max)".
global_ratio_range() {
	local -a q
	# shellcheck disable=SC2207
	q=($(awk -F, -v p="$2" -v a="$3" -v b="$4" -v c="$5" -v col="$6" '
		NR > 1 && $2 == p && $4 == c && $3 == a { va[$5] = $col }
		NR > 1 && $2 == p && $4 == c && $3 == b { vb[$5] = $col }
		END { for (r in va) if ((r in vb) && vb[r] + 0 > 0) printf "%.4f\n", va[r] / vb[r] }' "$1" | sort -g))
	if [ "${#q[@]}" = 0 ]; then
		echo "n/a"
	else
		printf '%s\n' "${q[@]}" | awk '
			{ v[NR] = $1 }
			END {
				m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
				printf "%.2f (%.2f-%.2f)\n", m, v[1], v[NR]
			}'
	fi
}

# global_field CSV PART CASE COLUMN: a column of the (single) latency line.
global_field() {
	awk -F, -v p="$2" -v k="$3" -v col="$4" 'NR > 1 && $2 == p && $3 == k { print $col; exit }' "$1"
}

# global_target VALUE OP LIMIT: "met" / "NOT met".
global_target() {
	awk -v v="${1:-}" -v op="$2" -v l="$3" 'BEGIN {
		if (v == "" || v == "n/a" || v == "nan") { print "n/a"; exit }
		ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0)
		print ok ? "met" : "NOT met"
	}'
}

global_report() {
	local csv=$1 clients=$GLOBAL_APPEND_CLIENTS targets='' q
	echo "## global: the global log (median of $GLOBAL_ROUNDS round(s) of ${GLOBAL_SECONDS}s per cell)"
	echo
	echo "$BENCH_MACHINE"
	echo
	echo "pgbench -M prepared, -j min(${BENCH_JOBS:-2}, clients), synchronous_commit=$(bench_value 'SHOW synchronous_commit')," \
		"eventstore.notify_interval=$(bench_value 'SHOW eventstore.notify_interval'), eventstore.worker_naptime=$(bench_value 'SHOW eventstore.worker_naptime');" \
		"the log is preloaded with $GLOBAL_EVENTS events ($((GLOBAL_EVENTS / 10)) streams of 10 interleaved, 10 event types, ~100-byte data, ~70-byte metadata), then VACUUM (ANALYZE) and pg_prewarm."
	echo

	if bench_part "$GLOBAL_PARTS" append; then
		echo "### 1. Append throughput with one listener attached"
		echo
		echo "$clients clients, bench/append/single.extension.pgbench (one event per transaction, new streams), each run after VACUUM (ANALYZE) and CHECKPOINT," \
			"runs alternating; the listener is bench/global/listener.py ($GLOBAL_LISTENER$([ "$GLOBAL_LISTENER" = follow ] && echo ': catches up with read_all after every notification' || echo ': LISTEN and count, no reads'))."
		echo
		echo "| clients | no listener appends/s | one listener appends/s | listener/none | per-round listener/none: median (min-max) | notifications received | appends per notification |"
		echo "|---:|---:|---:|---:|---:|---:|---:|"
		local none with notif apn
		none=$(global_cell "$csv" append none "$clients" 6)
		with=$(global_cell "$csv" append listener "$clients" 6)
		notif=$(global_cell "$csv" append listener "$clients" 11)
		apn=$(global_cell "$csv" append listener "$clients" 12)
		q=$(bench_ratio "$with" "$none")
		echo "| $clients | $(bench_fmt "$none") | $(bench_fmt "$with") | $q | $(global_ratio_range "$csv" append listener none "$clients" 6) | $(bench_fmt "$notif") | ${apn:-n/a} |"
		targets="$targets- append with one listener / without: $q (target >= 0.9: $(global_target "$q" '>=' 0.9))"$'\n'
		echo
	fi

	if bench_part "$GLOBAL_PARTS" latency; then
		echo "### 2. Commit → notification latency (ms)"
		echo
		echo "bench/global/latency.py: one process, two connections; A appends one event in autocommit (t0 = the call returned, so committed)," \
			"B LISTENs and waits for the first notification with payload >= the appended position (t1); latency = t1 - t0;" \
			"random pause of 0-20 ms before each sample. Every sample is in bench/results/global_latency.csv."
		echo
		echo "| server | samples | p50 | p95 | p99 | max | timeouts (> 5 s) | background appends/s |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|"
		local case label
		for case in idle load; do
			if [ "$case" = idle ]; then label=idle; else label="$clients clients appending"; fi
			local tps p99
			tps=$(global_field "$csv" latency "$case" 6)
			p99=$(global_field "$csv" latency "$case" 17)
			echo "| $label | $(global_field "$csv" latency "$case" 13) | $(global_field "$csv" latency "$case" 15) |" \
				"$(global_field "$csv" latency "$case" 16) | $p99 | $(global_field "$csv" latency "$case" 18) |" \
				"$(global_field "$csv" latency "$case" 14) | $([ -n "$tps" ] && bench_fmt "$tps" || echo -) |"
			targets="$targets- notification latency p99, $label: $p99 ms (target <= 20: $(global_target "$p99" '<=' 20))"$'\n'
		done
		echo
	fi

	if bench_part "$GLOBAL_PARTS" read; then
		echo "### 3. read_all vs a plain primary-key range scan"
		echo
		echo "Pages of 1000 events after a random position in [0, $GLOBAL_MAXSTART] (so every page is full), every column;" \
			"filtered: event_types => one of the 10 types, drawn per transaction (~10% of the rows, so ~10000 rows scanned per page)." \
			"rows/s = tps x 1000."
		echo
		echo "| query | clients | read_all rows/s | plain rows/s | read_all/plain | per-round read_all/plain: median (min-max) |"
		echo "|---|---:|---:|---:|---:|---:|"
		local kind a p label_k range
		for kind in all filtered; do
			for clients in $GLOBAL_READ_CLIENTS; do
				if [ "$kind" = all ]; then
					a=$(global_cell "$csv" read read_all "$clients" 7)
					p=$(global_cell "$csv" read plain "$clients" 7)
					label_k="page of 1000"
					range=$(global_ratio_range "$csv" read read_all plain "$clients" 7)
				else
					a=$(global_cell "$csv" read read_all_filtered "$clients" 7)
					p=$(global_cell "$csv" read plain_filtered "$clients" 7)
					label_k="page of 1000, one event type"
					range=$(global_ratio_range "$csv" read read_all_filtered plain_filtered "$clients" 7)
				fi
				q=$(bench_ratio "$a" "$p")
				echo "| $label_k | $clients | $(bench_fmt "$a") | $(bench_fmt "$p") | $q | $range |"
				targets="$targets- read_all/plain, $label_k, $clients client(s): $q (target >= 0.9: $(global_target "$q" '>=' 0.9))"$'\n'
			done
		done
		echo
		echo "Plans of the plain queries (from bench/global/plain*.pgbench, as prepared by pgbench -M prepared):"
		echo
		echo '```'
		cat "$BENCH_WORK/global-explain.txt" 2>/dev/null || echo "(not available)"
		echo '```'
		echo
	fi
	echo "Targets (reported, not asserted):"
	echo
	printf '%s' "$targets"
}
