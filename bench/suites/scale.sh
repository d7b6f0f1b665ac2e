# Suite "scale": does the store slow down as it fills?  At each scale point
# (events already stored: 0, 1 M, 10 M by default) it measures the append
# rate (single-event appends, BENCH_SCALE_CLIENTS = 8 clients, the extension
# and a plain INSERT of the same row into the same table) and the latency of
# reading a whole 10-event stream (read_stream, and the plain index scan),
# and the table's and indexes' size per event.  Sourced by bench/run.sh,
# which calls scale_setup, scale_run and scale_report.
#
# The stored events are written straight into eventstore.events (as its
# owner; bench only), fast: INSERT ... SELECT from generate_series in chunks,
# BENCH_SCALE_LOAD_JOBS (2) sessions at a time, then setval of the position
# sequence, VACUUM (ANALYZE), CHECKPOINT.  The points are reached in
# increasing order, each load adding to the previous one.
#
# Runs in a database of its own (SCALE_DB), dropped at the end of the run
# (it holds gigabytes); the functions that talk to the server declare
# "local BENCH_DB=$SCALE_DB" (bench/lib.sh's helpers read BENCH_DB when
# called).  See bench/README.md, suite "scale".

SCALE_DB=scale
SCALE_QUICK=$BENCH_IS_QUICK
SCALE_POINTS=${BENCH_SCALES:-${SCALE_QUICK:+0 100000 1000000}}
SCALE_POINTS=${SCALE_POINTS:-0 1000000 10000000}
SCALE_CLIENTS=${BENCH_SCALE_CLIENTS:-8}
SCALE_LOAD_JOBS=${BENCH_SCALE_LOAD_JOBS:-2}
# Loaded streams: SCALE_STREAM_EVENTS events each, SCALE_WINDOW streams
# growing side by side (so a stream's events lie SCALE_WINDOW rows apart in
# the heap, and the stream index is filled in a moving window, as when
# streams are born, live and go quiet); a load is a multiple of one window.
SCALE_STREAM_EVENTS=10
SCALE_WINDOW=1000
SCALE_BLOCK=$((SCALE_STREAM_EVENTS * SCALE_WINDOW))
SCALE_CHUNK=1000000
# Streams written for the read test at the point 0, where nothing is stored.
SCALE_PROBE=$SCALE_BLOCK
# The plain read is an index scan (as in the reads suite).
SCALE_PLAIN_READ_OPTIONS='-c enable_bitmapscan=off'

# BENCH_SCALE_MAX caps the points.
if [ -n "${BENCH_SCALE_MAX:-}" ]; then
	SCALE_POINTS=$(for p in $SCALE_POINTS; do [ "$p" -le "$BENCH_SCALE_MAX" ] && echo "$p"; done | paste -sd' ')
fi
for p in $SCALE_POINTS; do
	case $p in
	*[!0-9]*) echo "BENCH_SCALES: not a number: $p" >&2; exit 2 ;;
	esac
	[ $((p % SCALE_BLOCK)) = 0 ] || { echo "BENCH_SCALES: $p is not a multiple of $SCALE_BLOCK" >&2; exit 2; }
done
[ -n "$SCALE_POINTS" ] || { echo "scale: no scale point left (BENCH_SCALES / BENCH_SCALE_MAX)" >&2; exit 2; }

SCALE_LOADED=0   # events written by scale_load since the last reset (numbers the streams)
SCALE_SERIAL=0   # pgbench runs so far (the plain contender's version offset)

scale_setup() {
	local BENCH_DB=$SCALE_DB
	bench_log "scale: creating database $SCALE_DB (points: $SCALE_POINTS events)"
	bench_create_db "$SCALE_DB"
}

# scale_stored: events in the table.  Every event, loaded or appended by
# either contender, has a position drawn from (or set into) the sequence,
# and nothing rolls back, so it is the sequence's value.
scale_stored() {
	bench_value "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM eventstore.global_position_seq"
}

# scale_reset: an empty store (the extension recreated; its table refuses
# TRUNCATE) with its worker running (started by a first append, so that its
# start-up falls in no measured run).
scale_reset() {
	bench_psql -c "DROP EXTENSION eventstore" -c "CREATE EXTENSION eventstore" >/dev/null
	SCALE_LOADED=0
	bench_wait_worker
}

# scale_load N: write N more events (a multiple of SCALE_BLOCK) after the
# highest position, in SCALE_CHUNK-event statements run by SCALE_LOAD_JOBS
# sessions; loaded event k (1, 2, ... since the last reset) is version
# ((k-1) % BLOCK) / WINDOW + 1 of stream 'load-<10-digit number>' with number
# (k-1) / BLOCK * WINDOW + (k-1) % WINDOW + 1; its event id is derived from
# k.  Then setval, VACUUM (ANALYZE), CHECKPOINT.
scale_load() {
	local n=$1 k0=$SCALE_LOADED base a b j t0 pid
	local -a pids=()
	[ "$n" -gt 0 ] || return 0
	t0=$(date +%s)
	base=$(bench_value "SELECT greatest((SELECT coalesce(max(global_position), 0) FROM eventstore.events),
		(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM eventstore.global_position_seq))")
	bench_log "scale: loading $n events (positions $((base + 1))..$((base + n)), $SCALE_LOAD_JOBS sessions)"
	for ((j = 0; j < SCALE_LOAD_JOBS; j++)); do
		(
			for ((a = k0 + j * SCALE_CHUNK; a < k0 + n; a += SCALE_LOAD_JOBS * SCALE_CHUNK)); do
				b=$((a + SCALE_CHUNK))
				[ "$b" -le $((k0 + n)) ] || b=$((k0 + n))
				bench_psql -v data="$BENCH_DATA" -v metadata="$BENCH_METADATA" <<SQL
INSERT INTO eventstore.events
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT $base + (k - $k0), (k - 1) % $SCALE_BLOCK / $SCALE_WINDOW + 1, now(),
       ('00000000-0000-7000-8000-' || lpad(to_hex(k), 12, '0'))::uuid,
       'load-' || lpad(((k - 1) / $SCALE_BLOCK * $SCALE_WINDOW + (k - 1) % $SCALE_WINDOW + 1)::text, 10, '0'),
       'MoneyDeposited', :'data'::jsonb, :'metadata'::jsonb
  FROM generate_series($((a + 1)), $b) AS k;
SQL
			done
		) &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || { bench_log "scale: a load session failed"; return 1; }
	done
	bench_psql -c "SELECT setval('eventstore.global_position_seq', $((base + n)))" >/dev/null
	SCALE_LOADED=$((k0 + n))
	bench_quiesce
	bench_log "scale: loaded, vacuumed and checkpointed in $(($(date +%s) - t0)) s"
	SCALE_LOAD_SECONDS=$((SCALE_LOAD_SECONDS + $(date +%s) - t0))
}

scale_cpu_per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.4f", (b - a) * 1000 / n }'; }

# scale_append CSV POINT CONTENDER ROUND: one append run; at the point 0 the
# store is emptied first.
scale_append() {
	local csv=$1 point=$2 contender=$3 round=$4
	local tag=scale-$point-append-$contender-r$round before after start res tps tx failed lat ckpt cpu0 cpu1 wal0 wal
	[ "$point" = 0 ] && scale_reset
	bench_quiesce
	SCALE_SERIAL=$((SCALE_SERIAL + 1))
	before=$(scale_stored)
	start=$(bench_log_lines)
	cpu0=$(bench_server_cpu)
	wal0=$(bench_value "SELECT pg_current_wal_insert_lsn()")
	bench_log "scale $point, round $round/$BENCH_ROUNDS: append, $SCALE_CLIENTS clients, $contender, $before events stored (${BENCH_DURATION}s)"
	res=$(bench_pgbench "$tag" "$SCALE_CLIENTS" "$BENCH_DURATION" \
		-f "$BENCH_ROOT/bench/scale/append.$contender.pgbench" \
		-D "v=$((SCALE_SERIAL * 100000000))" -D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA")
	read -r tps tx failed lat <<<"$res"
	sleep 0.3 # the run's backends exit and are reaped
	cpu1=$(bench_server_cpu)
	wal=$(bench_value "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$wal0')")
	ckpt=$(bench_checkpoints_since "$start")
	after=$(scale_stored)
	[ "$((after - before))" = "$tx" ] || bench_log "WARNING: $tag: $((after - before)) positions drawn by $tx transactions"
	[ "$ckpt" = 0 ] || bench_log "WARNING: $tag: $ckpt checkpoint(s) started during the run"
	[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed transactions"
	echo "scale,$point,append,$contender,$round,$SCALE_CLIENTS,$before,$tps,$tps,$tx,$failed,$lat,$((after - before)),$ckpt,,,,,$(scale_cpu_per "$cpu0" "$cpu1" "$tx"),$(awk -v w="$wal" -v n="$tx" 'BEGIN { if (n > 0) printf "%.0f", w / n }')" >>"$csv"
}

# scale_read CSV POINT CONTENDER ROUND: one read run, 1 client, a random
# loaded stream per transaction.
scale_read() {
	local csv=$1 point=$2 contender=$3 round=$4 opts=${PGOPTIONS:-}
	local tag=scale-$point-read-$contender-r$round before res tps tx failed lat cpu0 cpu1
	before=$(scale_stored)
	cpu0=$(bench_server_cpu)
	[ "$contender" = plain ] && opts="$opts $SCALE_PLAIN_READ_OPTIONS"
	bench_log "scale $point, round $round/$BENCH_ROUNDS: read_stream, 1 client, $contender, $before events stored (${BENCH_DURATION}s)"
	res=$(PGOPTIONS=$opts bench_pgbench "$tag" 1 "$BENCH_DURATION" \
		-f "$BENCH_ROOT/bench/scale/read.$contender.pgbench" -D "streams=$((SCALE_LOADED / SCALE_STREAM_EVENTS))")
	read -r tps tx failed lat <<<"$res"
	sleep 0.3
	cpu1=$(bench_server_cpu)
	[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed transactions"
	echo "scale,$point,read,$contender,$round,1,$before,$tps,$(awk -v t="$tps" -v p="$SCALE_STREAM_EVENTS" 'BEGIN { printf "%.1f", t * p }'),$tx,$failed,$lat,0,0,,,,,$(scale_cpu_per "$cpu0" "$cpu1" "$tx")" >>"$csv"
}

# scale_check: the plain read is an index scan (generic plan, as pgbench
# -M prepared ends up with) and read_stream returns a whole loaded stream.
scale_check() {
	local plan rows
	plan=$(PGOPTIONS="$SCALE_PLAIN_READ_OPTIONS" bench_psql -At -c "SET plan_cache_mode = force_generic_plan" \
		-c "PREPARE q(text) AS $(grep -v -e '^\\' -e '^--' "$BENCH_ROOT/bench/scale/read.plain.pgbench" | sed -e 's/:s::text/$1::text/' -e 's/;$//')" \
		-c "EXPLAIN (COSTS OFF) EXECUTE q('1')")
	echo "$plan" | grep -q 'Index Scan using events_stream_version_key on events' ||
		{ bench_log "WARNING: the plain read is not an index scan of events_stream_version_key:"; echo "$plan" >&2; }
	rows=$(bench_value "SELECT count(*) FROM eventstore.read_stream('load-' || lpad('$((SCALE_LOADED / SCALE_STREAM_EVENTS))', 10, '0'))")
	[ "$rows" = "$SCALE_STREAM_EVENTS" ] ||
		bench_log "WARNING: the last loaded stream has $rows events, not $SCALE_STREAM_EVENTS"
}

# scale_run CSV: for each point: load up to it, the append runs (both
# contenders, BENCH_ROUNDS rounds, order rotating), the read runs, the sizes.
scale_run() {
	local BENCH_DB=$SCALE_DB
	local csv=$1 point round c stored n prev='' i
	local -a order
	SCALE_LOAD_SECONDS=0
	echo "suite,scale,kind,contender,round,clients,stored_events,tps,rows_per_s,transactions,failed,latency_ms,rows_gained,unplanned_checkpoints,heap_bytes,index_bytes,other_bytes,load_seconds,server_cpu_ms_per_tx,wal_bytes_per_tx" >"$csv"
	for point in $SCALE_POINTS; do
		# Leaving the point 0 (or starting above it): start from an empty store.
		if [ -z "$prev" ] || [ "$prev" = 0 ]; then
			[ "$point" = 0 ] || scale_reset
		fi
		prev=$point
		if [ "$point" != 0 ]; then
			stored=$(scale_stored)
			# to the nearest whole block: the load is in blocks
			n=$(((point - stored + SCALE_BLOCK / 2) / SCALE_BLOCK * SCALE_BLOCK))
			[ "$n" -ge 0 ] || n=0
			SCALE_LOAD_SECONDS=0
			scale_load "$n"
		fi
		for round in $(seq 1 "$BENCH_ROUNDS"); do
			order=(extension plain)
			[ $((round % 2)) = 1 ] || order=(plain extension)
			for c in "${order[@]}"; do scale_append "$csv" "$point" "$c" "$round"; done
		done
		# Something to read at the point 0.
		[ "$SCALE_LOADED" -gt 0 ] || { SCALE_LOAD_SECONDS=0; scale_load "$SCALE_PROBE"; }
		scale_check
		for round in $(seq 1 "$BENCH_ROUNDS"); do
			order=(extension plain)
			[ $((round % 2)) = 1 ] || order=(plain extension)
			for c in "${order[@]}"; do scale_read "$csv" "$point" "$c" "$round"; done
		done
		stored=$(scale_stored)
		echo "scale,$point,size,,,,$stored,,,,,,,,$(bench_value "SELECT pg_relation_size('eventstore.events') || ',' || pg_indexes_size('eventstore.events') || ',' ||
			(pg_total_relation_size('eventstore.events') - pg_relation_size('eventstore.events') - pg_indexes_size('eventstore.events'))"),$SCALE_LOAD_SECONDS," >>"$csv"
		for i in events_pkey events_stream_version_key; do
			bench_log "scale $point: $i $(bench_value "SELECT pg_size_pretty(pg_relation_size('eventstore.$i'))")"
		done
	done
	bench_log "scale: dropping database $SCALE_DB"
	bench_psql_db postgres -c "DROP DATABASE $SCALE_DB" >/dev/null
}

# scale_cell CSV POINT KIND CONTENDER COLUMN: median over the rounds (four
# decimals).
scale_cell() {
	# shellcheck disable=SC2046
	bench_median_fmt '%.4f' $(bench_csv_values "$1" "$5" scale="$2" kind="$3" contender="$4")
}

scale_report() {
	local csv=$1 point e p r_e r_p first='' size stored heap idx other load
	echo "## scale: appends and reads as the store fills (median of $BENCH_ROUNDS round(s) of ${BENCH_DURATION}s per cell)"
	echo
	echo "$BENCH_MACHINE"
	echo
	echo "Append: pgbench -M prepared -c $SCALE_CLIENTS -j min(${BENCH_JOBS:-2}, clients), synchronous_commit=$(bench_psql_db postgres -At -c 'SHOW synchronous_commit')," \
		"one event per transaction to a random, mostly new stream (expected_version NULL); extension = eventstore.append," \
		"plain = INSERT of the same row into the same table (eventstore.events, position from its sequence, version from a client counter)." \
		"Read: 1 client, a whole stream of $SCALE_STREAM_EVENTS events chosen at random among the stored ones (read_stream; plain = index scan," \
		"$SCALE_PLAIN_READ_OPTIONS); latency = pgbench's average." \
		"Stored events: streams of $SCALE_STREAM_EVENTS events, $SCALE_WINDOW at a time growing side by side, written straight into the table," \
		"then setval, VACUUM (ANALYZE), CHECKPOINT; the runs of a point add their appends (stored = at the start of the run, median)." \
		"At 0 each append run starts from an empty store, and the read runs read $SCALE_PROBE events written for them." \
		"Sizes after the point's runs: pg_relation_size (heap), pg_indexes_size (both indexes), per stored event." \
		"Server CPU: user + system time of every server process during the run (from /proc), per append: with durable commits the rate is" \
		"bound by WAL flushes, and CPU per append shows what the rate hides (and what the load of other programs leaves alone)." \
		"WAL: bytes written per append during the run; each run starts after a CHECKPOINT, so the first change to a page writes" \
		"a full-page image, and appends to random streams touch a different leaf of the stream index each time once it is large."
	echo
	echo "| point | events stored | extension appends/s | plain appends/s | extension/plain | extension vs empty | server CPU µs/append: extension | plain | WAL B/append: extension | plain | read_stream ms | plain read ms | heap B/event | indexes B/event | load s |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for point in $SCALE_POINTS; do
		r_e=$(scale_cell "$csv" "$point" append extension tps)
		r_p=$(scale_cell "$csv" "$point" append plain tps)
		stored=$(scale_cell "$csv" "$point" append extension stored_events)
		[ -n "$first" ] || first=$r_e
		size=$(awk -F, -v p="$point" '$2 == p && $3 == "size" { print $7, $15, $16, $17, $18 }' "$csv")
		read -r e heap idx other load <<<"$size"
		echo "| $point | $(bench_fmt "$stored") | $(bench_fmt "$r_e") | $(bench_fmt "$r_p") | $(bench_ratio "$r_e" "$r_p") | $(bench_ratio "$r_e" "$first") |" \
			"$(awk -v x="$(scale_cell "$csv" "$point" append extension server_cpu_ms_per_tx)" 'BEGIN { printf "%.0f", x * 1000 }') |" \
			"$(awk -v x="$(scale_cell "$csv" "$point" append plain server_cpu_ms_per_tx)" 'BEGIN { printf "%.0f", x * 1000 }') |" \
			"$(bench_fmt "$(scale_cell "$csv" "$point" append extension wal_bytes_per_tx)") |" \
			"$(bench_fmt "$(scale_cell "$csv" "$point" append plain wal_bytes_per_tx)") |" \
			"$(awk -v x="$(scale_cell "$csv" "$point" read extension latency_ms)" 'BEGIN { printf "%.3f", x }') |" \
			"$(awk -v x="$(scale_cell "$csv" "$point" read plain latency_ms)" 'BEGIN { printf "%.3f", x }') |" \
			"$(awk -v h="$heap" -v e="$e" 'BEGIN { if (e > 0) printf "%.0f", h / e; else print "n/a" }') |" \
			"$(awk -v h="$idx" -v e="$e" 'BEGIN { if (e > 0) printf "%.0f", h / e; else print "n/a" }') | ${load:-0} |"
	done
	local last=${SCALE_POINTS##* } q
	q=$(bench_ratio "$(scale_cell "$csv" "$last" append extension tps)" "$(scale_cell "$csv" "${SCALE_POINTS%% *}" append extension tps)")
	local c0 c1
	c0=$(scale_cell "$csv" "${SCALE_POINTS%% *}" append extension server_cpu_ms_per_tx)
	c1=$(scale_cell "$csv" "$last" append extension server_cpu_ms_per_tx)
	echo
	echo "Server CPU per extension append at $last stored events: $(bench_ratio "$c1" "$c0") x at ${SCALE_POINTS%% *}."
	echo
	echo "Target (reported, not asserted): extension append rate at $last stored events >= 0.8 x at ${SCALE_POINTS%% *}: $q" \
		"($(awk -v q="$q" 'BEGIN { print (q != "n/a" && q >= 0.8) ? "met" : "NOT met" }'))."
}
