# Suite "subscriptions": durable subscriptions (sql/install/subscriptions.sql)
# against a plain work queue of the same events.  Sourced by bench/run.sh,
# which calls subscriptions_setup, subscriptions_run and
# subscriptions_report.  See bench/README.md, suite "subscriptions".
#
# Part "consume": the store holds SUBS_EVENTS events (streams of 4, as
# bench_preload writes them); C competing consumers (SUBS_CLIENTS) each
# take batches of B events (SUBS_BATCHES) until the run ends:
#   subscription  eventstore.subscription_fetch('bench', 'c<id>', B), then
#                 eventstore.subscription_ack of those positions (two
#                 transactions), from a subscription created at the origin
#                 before each run;
#   subscription_tx  the same in one transaction (BEGIN, fetch, ack,
#                 COMMIT: a consumer whose effects are in the same database);
#   lanes         subscription_tx on a subscription of C lanes (0.9.0: one
#                 per consumer, so that their fetches do not wait for each
#                 other's commits);
#   plain         SELECT ... FOR UPDATE SKIP LOCKED + DELETE ... RETURNING
#                 of the first B rows of bench_subs.queue, a table holding the
#                 same events (one transaction), refilled before each run.
# Events/s = events consumed (rows deleted; acknowledged events) per second
# of pgbench's run; the ratios subscription/plain and subscription_tx/plain
# and lanes/plain are reported (the goal: >= 0.8).
#
# Part "lag": SUBS_LAG_APPEND_CLIENTS clients append one event per
# transaction (the append suite's single.extension.pgbench) for
# SUBS_LAG_SECONDS while N consumers (SUBS_LAG_CONSUMERS; 0 = none, the
# appenders' own rate) consume a subscription created at the end of the log
# with batches of SUBS_LAG_BATCH; one session samples
# eventstore.subscription_status every SUBS_LAG_PERIOD s.
#
# The suite runs in a database of its own (SUBS_DB): its setup drops and
# creates it, so it may run any number of times.  Every function below that
# talks to the server declares "local BENCH_DB=$SUBS_DB".

SUBS_DB=subs
SUBS_QUICK=$BENCH_IS_QUICK
SUBS_CLIENTS=${BENCH_SUBS_CLIENTS:-1 2 4 8}
SUBS_BATCHES=${BENCH_SUBS_BATCHES:-1 10 100}
SUBS_SECONDS=${BENCH_SUBS_SECONDS:-${SUBS_QUICK:+3}}
SUBS_SECONDS=${SUBS_SECONDS:-5}
SUBS_ROUNDS=${BENCH_SUBS_ROUNDS:-${SUBS_QUICK:+1}}
SUBS_ROUNDS=${SUBS_ROUNDS:-2}
SUBS_EVENTS=${BENCH_SUBS_EVENTS:-${SUBS_QUICK:+200000}}
SUBS_EVENTS=${SUBS_EVENTS:-400000}
SUBS_LAG_CONSUMERS=${BENCH_SUBS_LAG_CONSUMERS:-0 1 4}
SUBS_LAG_SECONDS=${BENCH_SUBS_LAG_SECONDS:-${SUBS_QUICK:+4}}
SUBS_LAG_SECONDS=${SUBS_LAG_SECONDS:-10}
SUBS_LAG_BATCH=${BENCH_SUBS_LAG_BATCH:-100}
SUBS_LAG_APPEND_CLIENTS=${BENCH_SUBS_LAG_APPEND_CLIENTS:-8}
SUBS_LAG_PERIOD=0.5
SUBS_PARTS=${BENCH_SUBS_PARTS:-consume lag}
SUBS_CSV_HEADER="suite,part,contender,clients,batch,round,tps,transactions,failed,latency_ms,events,events_per_s,server_cpu_us_per_event,ran_dry,append_tps,samples,lag_events_p50,lag_events_max,lag_ms_p50,lag_ms_max,lag_events_end"

subscriptions_setup() {
	local BENCH_DB=$SUBS_DB
	bench_parts subscriptions "consume lag" "$SUBS_PARTS"
	bench_log "subscriptions: creating database $SUBS_DB with $SUBS_EVENTS events and the plain queue"
	bench_create_db "$SUBS_DB" -f "$BENCH_ROOT/bench/subscriptions/queue.sql"
	# diagnosis only: SQL run once the extension is created (e.g. another
	# version of a function, to compare); the report says so
	if [ -n "${BENCH_SUBS_SETUP_SQL:-}" ]; then
		bench_log "subscriptions: WARNING: diagnosis: running $BENCH_SUBS_SETUP_SQL"
		bench_psql -f "$BENCH_SUBS_SETUP_SQL" >/dev/null
	fi
	bench_preload eventstore.events eventstore.global_position_seq "$SUBS_EVENTS" "$BENCH_DATA" "$BENCH_METADATA"
	# the worker runs before any measured run; its append ('bench-warmup')
	# also moves the horizon past the preloaded events
	bench_wait_worker
	bench_quiesce
}

# subscriptions_reset CONTENDER [START [LANES]]: the contender's queue full
# again: subscription 'bench' created afresh at START (0: the origin, every
# event of the store to consume; -1: the end of the log) with LANES lanes
# (default 1), or bench_subs.queue holding every event of the store.  Then
# VACUUM and CHECKPOINT.
subscriptions_reset() {
	case $1 in
	subscription | subscription_tx | lanes)
		bench_psql -c "SET client_min_messages = warning" \
			-c "SELECT eventstore.drop_subscription('bench', if_exists => true)" \
			-c "SELECT eventstore.create_subscription('bench', start_from => ${2:-0}, lanes => ${3:-1})" >/dev/null ;;
	plain)
		bench_psql -c "TRUNCATE bench_subs.queue" \
			-c "INSERT INTO bench_subs.queue SELECT * FROM eventstore.events" >/dev/null ;;
	esac
	bench_quiesce
}

# subscriptions_remaining CONTENDER: events the contender's queue still
# holds (subscription: not pulled yet, or pulled and not acknowledged; of
# several lanes: not pulled yet by their stream's lane).
subscriptions_remaining() {
	case $1 in
	subscription | subscription_tx | lanes)
		bench_value "SELECT (SELECT count(*) FROM eventstore.events e
		                      WHERE e.global_position > s.pulled_position AND s.lanes = 1)
		                  + (SELECT count(*) FROM eventstore.events e
		                       JOIN eventstore.subscription_lanes l
		                         ON l.subscription = s.name
		                        AND l.lane = eventstore._stream_lane(e.stream_id, s.lanes)
		                      WHERE e.global_position > l.pulled_position)
		                  + (SELECT count(*) FROM eventstore._subscription_outstanding se
		                      WHERE se.subscription = s.name)
		               FROM eventstore.subscriptions s WHERE s.name = 'bench'" ;;
	plain) bench_value "SELECT count(*) FROM bench_subs.queue" ;;
	esac
}

# subscriptions_one CSV CONTENDER CLIENTS BATCH ROUND: one consume run and
# its CSV line.
subscriptions_one() {
	local csv=$1 contender=$2 clients=$3 batch=$4 round=$5
	local tag=subs-$contender-c$clients-b$batch-r$round
	local before after res tps tx failed lat events cpu0 cpu1 dry=0 script=$contender
	# lanes: one per consumer, each consumer a transaction per batch
	[ "$contender" = lanes ] && script=subscription_tx
	subscriptions_reset "$contender" 0 "$([ "$contender" = lanes ] && echo "$clients" || echo 1)"
	before=$(subscriptions_remaining "$contender")
	cpu0=$(bench_server_cpu)
	bench_log "round $round/$SUBS_ROUNDS: $contender, $clients consumer(s), batches of $batch (${SUBS_SECONDS}s)"
	res=$(bench_pgbench "$tag" "$clients" "$SUBS_SECONDS" \
		-f "$BENCH_ROOT/bench/subscriptions/consume.$script.pgbench" -D "batch=$batch")
	read -r tps tx failed lat <<<"$res"
	sleep 0.3 # the run's backends exit and are reaped
	cpu1=$(bench_server_cpu)
	after=$(subscriptions_remaining "$contender")
	events=$((before - after))
	[ "$after" -gt 0 ] || { dry=1; bench_log "WARNING: $tag: the queue ran dry (raise BENCH_SUBS_EVENTS)"; }
	[ "$events" -gt 0 ] || { bench_log "ERROR: $tag: no event consumed"; return 1; }
	[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed transactions"
	bench_csv_line "$SUBS_CSV_HEADER" "subscriptions,consume,$contender,$clients,$batch,$round" \
		tps="$tps" transactions="$tx" failed="$failed" latency_ms="$lat" events="$events" \
		events_per_s="$(awk -v t="$tps" -v n="$tx" -v e="$events" 'BEGIN { printf "%.1f", (n > 0 ? t * e / n : 0) }')" \
		server_cpu_us_per_event="$(awk -v a="$cpu0" -v b="$cpu1" -v e="$events" 'BEGIN { printf "%.1f", (b - a) * 1e6 / e }')" \
		ran_dry="$dry" >>"$csv"
}

# subscriptions_lag CSV CONSUMERS ROUND: appenders, CONSUMERS consumers of
# a subscription created at the end of the log, and the sampler, together.
subscriptions_lag() {
	local csv=$1 consumers=$2 round=$3 run
	local tag=subs-lag-c$consumers-r$round
	local apid cpid='' spid res tps tx failed lat ctps ctx cfailed clat events=0 stats end
	run=$((consumers * 100 + round))
	subscriptions_reset subscription -1
	local pos0
	pos0=$(bench_value "SELECT pulled_position FROM eventstore.subscriptions WHERE name = 'bench'")
	bench_log "round $round/$SUBS_ROUNDS: lag, $SUBS_LAG_APPEND_CLIENTS appenders, $consumers consumer(s) (batches of $SUBS_LAG_BATCH, ${SUBS_LAG_SECONDS}s)"
	bench_psql -c "CALL bench_subs.sample_lag($run, $SUBS_LAG_SECONDS, $SUBS_LAG_PERIOD)" &
	spid=$!
	bench_pgbench "$tag-append" "$SUBS_LAG_APPEND_CLIENTS" "$SUBS_LAG_SECONDS" \
		-f "$BENCH_ROOT/bench/append/single.extension.pgbench" \
		-D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA" >"$BENCH_WORK/$tag-append.res" &
	apid=$!
	if [ "$consumers" -gt 0 ]; then
		bench_pgbench "$tag-consume" "$consumers" "$SUBS_LAG_SECONDS" \
			-f "$BENCH_ROOT/bench/subscriptions/consume.subscription.pgbench" \
			-D "batch=$SUBS_LAG_BATCH" >"$BENCH_WORK/$tag-consume.res" &
		cpid=$!
	fi
	wait "$apid" || { bench_log "ERROR: $tag: the appenders failed"; return 1; }
	[ -z "$cpid" ] || wait "$cpid" || { bench_log "ERROR: $tag: the consumers failed"; return 1; }
	wait "$spid" || { bench_log "ERROR: $tag: the sampler failed"; return 1; }
	read -r tps tx failed lat <"$BENCH_WORK/$tag-append.res"
	if [ -n "$cpid" ]; then
		read -r ctps ctx cfailed clat <"$BENCH_WORK/$tag-consume.res"
		# acknowledged: pulled after pos0, minus what is still outstanding
		events=$(bench_value "SELECT (SELECT count(*) FROM eventstore.events e
			WHERE e.global_position > $pos0 AND e.global_position <= s.pulled_position)
			- (SELECT count(*) FROM eventstore._subscription_outstanding se WHERE se.subscription = s.name)
			FROM eventstore.subscriptions s WHERE s.name = 'bench'")
	fi
	end=$(bench_value "SELECT lag_events FROM eventstore.subscription_status WHERE name = 'bench'")
	stats=$(bench_value "SELECT count(*) || ',' || coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY lag_events), 0)
		|| ',' || coalesce(max(lag_events), 0)
		|| ',' || round(coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY lag_ms), 0)::numeric, 1)
		|| ',' || round(coalesce(max(lag_ms), 0)::numeric, 1)
		FROM bench_subs.lag_samples WHERE run = $run")
	local samples l50 lmax m50 mmax
	IFS=, read -r samples l50 lmax m50 mmax <<<"$stats"
	[ "$samples" -gt 0 ] || { bench_log "ERROR: $tag: no lag sample"; return 1; }
	bench_log "lag: appends/s $tps, consumed $events events, lag events p50 $l50 max $lmax, ms p50 $m50 max $mmax, at the end $end"
	bench_csv_line "$SUBS_CSV_HEADER" "subscriptions,lag,subscription,$consumers,$SUBS_LAG_BATCH,$round" \
		tps="${ctps:-0}" transactions="${ctx:-0}" failed="$((failed + ${cfailed:-0}))" latency_ms="${clat:-}" \
		events="$events" events_per_s="$(awk -v e="$events" -v s="$SUBS_LAG_SECONDS" 'BEGIN { printf "%.1f", e / s }')" \
		append_tps="$tps" samples="$samples" lag_events_p50="$l50" lag_events_max="$lmax" \
		lag_ms_p50="$m50" lag_ms_max="$mmax" lag_events_end="$end" >>"$csv"
}

# subscriptions_run CSV: part consume (every clients x batch cell, the
# four contenders back to back in an order that rotates), then part lag,
# SUBS_ROUNDS times each.
subscriptions_run() {
	local BENCH_DB=$SUBS_DB
	local csv=$1 round clients batch cell=0 c n
	local -a order
	echo "$SUBS_CSV_HEADER" >"$csv"
	if bench_part "$SUBS_PARTS" consume; then
		for round in $(seq 1 "$SUBS_ROUNDS"); do
			for clients in $SUBS_CLIENTS; do
				for batch in $SUBS_BATCHES; do
					cell=$((cell + 1))
					read -r -a order <<<"$(bench_rotate $(((cell + round - 1) % 4)) subscription plain subscription_tx lanes)"
					for c in "${order[@]}"; do
						subscriptions_one "$csv" "$c" "$clients" "$batch" "$round"
					done
				done
			done
		done
	fi
	if bench_part "$SUBS_PARTS" lag; then
		for round in $(seq 1 "$SUBS_ROUNDS"); do
			for n in $SUBS_LAG_CONSUMERS; do
				subscriptions_lag "$csv" "$n" "$round"
			done
		done
	fi
}

# subscriptions_cell CSV PART CONTENDER CLIENTS BATCH COLUMN: the median of
# COLUMN over the rounds.
subscriptions_cell() {
	# shellcheck disable=SC2046
	bench_median $(bench_csv_values "$1" "$6" part="$2" contender="$3" clients="$4" batch="$5")
}

# subscriptions_rounds CSV CONTENDER CLIENTS BATCH: CONTENDER/plain in
# events/s, each round's.
subscriptions_rounds() {
	paste -d' ' <(bench_csv_values "$1" events_per_s part=consume contender="$2" clients="$3" batch="$4") \
		<(bench_csv_values "$1" events_per_s part=consume contender=plain clients="$3" batch="$4") |
		awk '{ printf "%s%.2f", (NR > 1 ? " " : ""), ($2 > 0 ? $1 / $2 : 0) }'
}

subscriptions_report() {
	local BENCH_DB=$SUBS_DB
	local csv=$1 clients batch s t l p dry
	echo "## subscriptions: competing consumers of a durable subscription against a plain work queue (median of $SUBS_ROUNDS round(s))"
	echo
	echo "$BENCH_MACHINE${BENCH_SUBS_SETUP_SQL:+ Diagnosis: $BENCH_SUBS_SETUP_SQL was run after CREATE EXTENSION.}"
	echo
	if bench_part "$SUBS_PARTS" consume; then
		echo "Consumers (pgbench -M prepared, ${SUBS_SECONDS}s per run, synchronous_commit=$(bench_value 'SHOW synchronous_commit'))" \
			"take batches of up to B events from a store of $SUBS_EVENTS events (streams of 4) until the run ends." \
			"subscription: \`subscription_fetch('bench', consumer, B)\` then \`subscription_ack\` of the positions (two transactions)," \
			"from a subscription created at the origin before each run; one transaction: the same between BEGIN and COMMIT; lanes: one transaction, from a subscription of as many lanes as consumers (0.9.0); plain: \`SELECT ... ORDER BY global_position LIMIT B FOR UPDATE SKIP LOCKED\`" \
			"+ \`DELETE ... RETURNING\` of the same events in a plain table keyed by position (one transaction; no per-stream order, no lease, no retry)." \
			"Events/s: events acknowledged (deleted) per second; server CPU: user + system time of every server process per event."
		echo
		echo "| consumers | batch | subscription events/s | one transaction | lanes | plain events/s | subscription/plain (each round) | one transaction/plain (each round) | lanes/plain (each round) | CPU µs/event subscription | one transaction | lanes | plain |"
		echo "|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|"
		for clients in $SUBS_CLIENTS; do
			for batch in $SUBS_BATCHES; do
				s=$(subscriptions_cell "$csv" consume subscription "$clients" "$batch" events_per_s)
				t=$(subscriptions_cell "$csv" consume subscription_tx "$clients" "$batch" events_per_s)
				l=$(subscriptions_cell "$csv" consume lanes "$clients" "$batch" events_per_s)
				p=$(subscriptions_cell "$csv" consume plain "$clients" "$batch" events_per_s)
				dry=''
				bench_csv_values "$csv" ran_dry part=consume clients="$clients" batch="$batch" | grep -q 1 && dry=', a queue ran dry'
				echo "| $clients | $batch | $(bench_fmt "$s") | $(bench_fmt "$t") | $(bench_fmt "$l") | $(bench_fmt "$p") |" \
					"**$(bench_ratio "$s" "$p")** ($(subscriptions_rounds "$csv" subscription "$clients" "$batch")$dry) |" \
					"**$(bench_ratio "$t" "$p")** ($(subscriptions_rounds "$csv" subscription_tx "$clients" "$batch")) |" \
					"**$(bench_ratio "$l" "$p")** ($(subscriptions_rounds "$csv" lanes "$clients" "$batch")) |" \
					"$(subscriptions_cell "$csv" consume subscription "$clients" "$batch" server_cpu_us_per_event) |" \
					"$(subscriptions_cell "$csv" consume subscription_tx "$clients" "$batch" server_cpu_us_per_event) |" \
					"$(subscriptions_cell "$csv" consume lanes "$clients" "$batch" server_cpu_us_per_event) |" \
					"$(subscriptions_cell "$csv" consume plain "$clients" "$batch" server_cpu_us_per_event) |"
			done
		done
		echo
	fi
	if bench_part "$SUBS_PARTS" lag; then
		echo "Lag: $SUBS_LAG_APPEND_CLIENTS clients append one event per transaction (\`append/single.extension.pgbench\`) for ${SUBS_LAG_SECONDS}s" \
			"while N consumers take batches of up to $SUBS_LAG_BATCH from a subscription created at the end of the log;" \
			"\`subscription_status\` sampled every ${SUBS_LAG_PERIOD}s (lag_events: matching events after the checkpoint; lag_time: age of the oldest)." \
			"N = 0: nobody consumes (the appenders alone; the lag is everything appended)."
		echo
		echo "| consumers | appends/s | appends/s vs no consumer | consumed events/s | lag events p50 | max | at the end | lag ms p50 | max |"
		echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		local base a
		base=$(subscriptions_cell "$csv" lag subscription 0 "$SUBS_LAG_BATCH" append_tps)
		for clients in $SUBS_LAG_CONSUMERS; do
			a=$(subscriptions_cell "$csv" lag subscription "$clients" "$SUBS_LAG_BATCH" append_tps)
			echo "| $clients | $(bench_fmt "$a") | $(bench_ratio "$a" "$base") |" \
				"$(bench_fmt "$(subscriptions_cell "$csv" lag subscription "$clients" "$SUBS_LAG_BATCH" events_per_s)") |" \
				"$(bench_fmt "$(subscriptions_cell "$csv" lag subscription "$clients" "$SUBS_LAG_BATCH" lag_events_p50)") |" \
				"$(bench_fmt "$(subscriptions_cell "$csv" lag subscription "$clients" "$SUBS_LAG_BATCH" lag_events_max)") |" \
				"$(bench_fmt "$(subscriptions_cell "$csv" lag subscription "$clients" "$SUBS_LAG_BATCH" lag_events_end)") |" \
				"$(bench_fmt "$(subscriptions_cell "$csv" lag subscription "$clients" "$SUBS_LAG_BATCH" lag_ms_p50)") |" \
				"$(bench_fmt "$(subscriptions_cell "$csv" lag subscription "$clients" "$SUBS_LAG_BATCH" lag_ms_max)") |"
		done
	fi
}
