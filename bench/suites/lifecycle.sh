# Suite "lifecycle": what archiving gives back to the hot table, and what
# the stream lifecycle (0.3.0) costs the hot path.  Sourced by bench/run.sh,
# which calls lifecycle_setup, lifecycle_run and lifecycle_report.
#
#   1. archive: LC_STREAMS (100000; quick 20000) streams 'acct-K' of 10
#      events (1M events), 1000 growing side by side, the oldest 90 % idle
#      for 15+ days, the newest 10 % active in the last 10 days.  At each
#      stage -- before, after archiving the idle 90 %
#      (eventstore.archive_streams('12 days', max_streams => LC_ARCHIVE_BATCH)
#      in a loop, one transaction per call, timed), after a plain VACUUM,
#      after VACUUM FULL -- the sizes of eventstore.events (heap, total, each
#      index) and the append rate (LC_APPEND_CLIENTS clients, one event to a
#      random new stream, expected_version NULL: the scale suite's scripts,
#      extension and a plain INSERT into the same table, alternating).  The
#      same move done by plain SQL (DELETE ... RETURNING into a copy) on a
#      copy of the rows, as the baseline of the archiving rate.  Then
#      read_stream of an archived stream against a hot one (and the plain
#      index scan of a hot one), and restore_stream of LC_RESTORE streams.
#   2. hot: one event per transaction, expected_version NULL, to 10000
#      streams 'set-K' (preloaded with 4 events each), through the
#      extension, the PL/pgSQL store and a plain INSERT, in three cases:
#      none (eventstore.streams empty), settings (each of the 10000 streams
#      has a row: max_count 1000000, which removes nothing) and event_id
#      (no settings, every call carries an event id: the idempotency check).
#      As the append suite: every run from a re-created, preloaded table,
#      contenders rotating, LC_HOT_CLIENTS (1 8) clients, median of
#      BENCH_ROUNDS; server CPU and WAL per append.
#   3. read_all: pages of 1000 events of a log of LC_READ_EVENTS (200000;
#      quick 100000) events in 10-event streams, 1000 side by side (so a
#      page touches 1000 streams), with eventstore.streams empty, holding
#      10000 rows of other streams, and holding a row for every stream
#      read; against the plain range scan of the primary key.
#
# In a database of its own (LC_DB).  See bench/README.md, suite "lifecycle".

LC_DB=lifecycle
LC_QUICK=$BENCH_IS_QUICK

LC_PARTS=${BENCH_LC_PARTS:-archive hot read}
LC_STREAMS=${BENCH_LC_STREAMS:-${LC_QUICK:+20000}}
LC_STREAMS=${LC_STREAMS:-100000}
LC_ARCHIVE_BATCH=${BENCH_LC_ARCHIVE_BATCH:-10000}
LC_APPEND_CLIENTS=${BENCH_LC_APPEND_CLIENTS:-4}
LC_SECONDS=${BENCH_LC_SECONDS:-${LC_QUICK:+3}}
LC_SECONDS=${LC_SECONDS:-10}
LC_ROUNDS=${BENCH_LC_ROUNDS:-${LC_QUICK:+1}}
LC_ROUNDS=${LC_ROUNDS:-2}
LC_RESTORE=${BENCH_LC_RESTORE:-1000}
LC_HOT_CLIENTS=${BENCH_LC_HOT_CLIENTS:-1 8}
LC_HOT_STREAMS=10000
LC_HOT_CASES=${BENCH_LC_HOT_CASES:-none other settings event_id}
LC_LOOP_CALLS=${BENCH_LC_LOOP_CALLS:-${LC_QUICK:+2000}}
LC_LOOP_CALLS=${LC_LOOP_CALLS:-20000}
LC_READ_CASES=${BENCH_LC_READ_CASES:-empty other all}
LC_PRELOAD=${BENCH_PRELOAD_EVENTS:-100000}
LC_READ_EVENTS=${BENCH_LC_READ_EVENTS:-${LC_QUICK:+100000}}
LC_READ_EVENTS=${LC_READ_EVENTS:-200000}
LC_READ_CLIENTS=${BENCH_LC_READ_CLIENTS:-1}

[ $((LC_STREAMS % 1000)) = 0 ] && [ "$LC_STREAMS" -ge 10000 ] ||
	{ echo "BENCH_LC_STREAMS must be a multiple of 1000, at least 10000" >&2; exit 2; }
for c in $LC_HOT_CLIENTS; do
	[ $((LC_HOT_STREAMS % c)) = 0 ] || { echo "BENCH_LC_HOT_CLIENTS: $c does not divide $LC_HOT_STREAMS" >&2; exit 2; }
done

LC_CSV_HEADER="suite,part,stage,contender,clients,round,tps,transactions,failed,latency_ms,server_cpu_us,wal_bytes,rows_ok,what,bytes,ms,events"

# lc_csv PART STAGE CONTENDER CLIENTS ROUND NAME=VALUE...: one CSV line.
lc_csv() { bench_csv_line "$LC_CSV_HEADER" "lifecycle,$1,$2,$3,$4,$5" "${@:6}"; }

LC_FAILED_CHECKS=
lc_check() { bench_check LC_FAILED_CHECKS "$@"; }

# lc_ms SQL...: run the statements (one transaction each, psql -c) and
# print the server-reported time of each in ms (psql \timing), summed.
lc_ms() {
	local BENCH_DB=$LC_DB args=() s
	for s in "$@"; do args+=(-c "$s"); done
	bench_psql -c '\timing on' "${args[@]}" | awk '/^Time: / { t += $2 } END { printf "%.1f\n", t }'
}

lc_recreate() {
	local BENCH_DB=$LC_DB
	bench_psql -c "SET client_min_messages = warning" -c "DROP EXTENSION IF EXISTS eventstore CASCADE" \
		-c "DROP SCHEMA IF EXISTS bench_plain CASCADE" -c "DROP SCHEMA IF EXISTS bench_plpgsql CASCADE" \
		-c "CREATE EXTENSION eventstore" >/dev/null
}

lifecycle_setup() {
	bench_log "lifecycle: creating database $LC_DB"
	bench_psql_db postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $LC_DB" -c "CREATE DATABASE $LC_DB"
}

# lc_pgbench_run TAG CLIENTS SCRIPT PGBENCH_ARGS...: one measured run;
# prints "tps tx failed latency cpu_us_per_tx wal_bytes_per_tx ckpts".
lc_pgbench_run() {
	local BENCH_DB=$LC_DB tag=$1 clients=$2 script=$3
	shift 3
	local start cpu0 cpu1 wal0 wal1 res tps tx failed lat ckpt
	start=$(bench_log_lines)
	cpu0=$(bench_server_cpu)
	wal0=$(bench_value "SELECT pg_current_wal_insert_lsn()")
	res=$(bench_pgbench "$tag" "$clients" "$LC_SECONDS" -f "$script" "$@")
	cpu1=$(bench_server_cpu)
	wal1=$(bench_value "SELECT pg_current_wal_insert_lsn()")
	read -r tps tx failed lat <<<"$res"
	ckpt=$(bench_checkpoints_since "$start")
	[ "$ckpt" = 0 ] || bench_log "WARNING: $tag: $ckpt checkpoint(s) started during the run"
	[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed transactions"
	echo "$tps $tx $failed $lat" \
		"$(awk -v a="$cpu0" -v b="$cpu1" -v n="$tx" 'BEGIN { printf "%.1f", (n > 0 ? (b - a) * 1e6 / n : 0) }')" \
		"$(bench_value "SELECT round(pg_wal_lsn_diff('$wal1', '$wal0') / greatest($tx, 1))")" "$ckpt"
}

# ---------------------------------------------------------------------------
# Part 1: archiving 90 % of 1M events
# ---------------------------------------------------------------------------

# lc_sizes CSV STAGE [PASS]: the sizes of eventstore.events (heap, total, each
# index), of the archive and of eventstore.streams, and the live rows.
lc_sizes() {
	local BENCH_DB=$LC_DB csv=$1 stage=$2 pass=${3:-sizes} what bytes
	while IFS='|' read -r what bytes; do
		lc_csv archive "$stage" size "" "$pass" what="$what" bytes="$bytes" >>"$csv"
	done < <(bench_psql -At <<'SQL'
SELECT 'events_heap', pg_relation_size('eventstore.events')
UNION ALL SELECT 'events_total', pg_total_relation_size('eventstore.events')
UNION ALL SELECT 'events_rows', count(*) FROM eventstore.events
UNION ALL (SELECT 'index:' || c.relname, pg_relation_size(c.oid)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = 'eventstore.events'::regclass ORDER BY c.relname)
UNION ALL SELECT 'archive_total', pg_total_relation_size('eventstore.archived_events')
UNION ALL SELECT 'archive_rows', count(*) FROM eventstore.archived_events
UNION ALL SELECT 'streams_total', pg_total_relation_size('eventstore.streams')
UNION ALL SELECT 'streams_rows', count(*) FROM eventstore.streams;
SQL
	)
}

# lc_append_stage CSV STAGE: the append rate at this stage, extension and
# plain alternating, LC_ROUNDS rounds.  Between runs ANALYZE and CHECKPOINT
# only: a VACUUM would change the stage.
lc_append_stage() {
	local BENCH_DB=$LC_DB csv=$1 stage=$2 round c r before after
	for round in $(seq 1 "$LC_ROUNDS"); do
		local pair="extension plain"
		[ $(((round + LC_STAGE_NO) % 2)) = 0 ] || pair="plain extension"
		for c in $pair; do
			bench_psql -c "ANALYZE eventstore.events" -c "CHECKPOINT" >/dev/null
			before=$(bench_value "SELECT count(*) FROM eventstore.events")
			bench_log "lifecycle archive: $stage, appends, $c, $LC_APPEND_CLIENTS clients, round $round/$LC_ROUNDS (${LC_SECONDS}s)"
			LC_V_OFFSET=$((LC_V_OFFSET + 10000000))
			r=$(lc_pgbench_run "lc-$stage-$c-r$round" "$LC_APPEND_CLIENTS" \
				"$BENCH_ROOT/bench/scale/append.$c.pgbench" \
				-D v="$LC_V_OFFSET" -D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA")
			read -r tps tx failed lat cpu wal _ <<<"$r"
			after=$(bench_value "SELECT count(*) FROM eventstore.events")
			lc_check "$stage $c r$round" "rows appended" "$((after - before))" "$tx"
			lc_csv archive "$stage" "$c" "$LC_APPEND_CLIENTS" "$round" tps="$tps" transactions="$tx" \
				failed="$failed" latency_ms="$lat" server_cpu_us="$cpu" wal_bytes="$wal" \
				rows_ok="$([ $((after - before)) = "$tx" ] && echo 1 || echo 0)" >>"$csv"
		done
	done
	LC_STAGE_NO=$((LC_STAGE_NO + 1))
}

# lc_load WITH_PLAIN_COPY: a fresh extension and the 1M events (see the
# top); with WITH_PLAIN_COPY = 1 also the same rows in bench_plain.events
# and an empty bench_plain.archived_events, for the plain move.
lc_load() {
	local BENCH_DB=$LC_DB n=$LC_STREAMS groups cold t0
	groups=$((n / 1000))
	cold=$((n * 9 / 10))
	lc_recreate
	bench_psql -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" >/dev/null
	# Streams acct-1 .. acct-N of 10 events, in groups of 1000 growing side
	# by side (a stream's events lie 1000 rows apart), groups in time order:
	# group g is (G - g) * 100 / G days old, the idle 90 % 5 days more, and
	# a stream's events a minute apart.  So archive_streams('12 days')
	# takes exactly acct-1 .. acct-(0.9 N), and the active 10 % are the
	# newest rows at the end of the table.
	bench_log "lifecycle archive: writing $((n * 10)) events in $n streams${1:+ (and a plain copy)}"
	t0=$(date +%s)
	bench_psql -v data="$BENCH_DATA" -v metadata="$BENCH_METADATA" <<SQL >/dev/null
INSERT INTO eventstore.events
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT nextval('eventstore.global_position_seq'), v,
       now() - make_interval(days => 1) * (($groups - g) * 100.0 / $groups + CASE WHEN k <= $cold THEN 5 ELSE 0 END)
             - make_interval(mins => 10 - v),
       gen_random_uuid(), 'acct-' || k, 'MoneyDeposited', :'data'::jsonb, :'metadata'::jsonb
  FROM generate_series(0, $groups - 1) AS g, generate_series(1, 10) AS v,
       LATERAL generate_series(g * 1000 + 1, g * 1000 + 1000) AS k
 ORDER BY g, v, k;
SQL
	if [ -n "${1:-}" ]; then
		bench_psql <<'SQL' >/dev/null
CREATE SCHEMA bench_plain;
CREATE TABLE bench_plain.events (LIKE eventstore.events INCLUDING ALL);
INSERT INTO bench_plain.events SELECT * FROM eventstore.events ORDER BY global_position;
CREATE TABLE bench_plain.archived_events (LIKE eventstore.archived_events INCLUDING ALL);
SQL
	fi
	bench_psql -c "VACUUM (ANALYZE)" -c "CHECKPOINT" >/dev/null
	bench_log "lifecycle archive: loaded in $(($(date +%s) - t0)) s"
	bench_wait_worker
	lc_check "load" "events" "$(bench_value "SELECT count(*) FROM eventstore.events WHERE stream_id LIKE 'acct-%'")" $((n * 10))
	bench_psql -c "SELECT pg_prewarm('eventstore.events'), pg_prewarm('eventstore.events_pkey'), pg_prewarm('eventstore.events_stream_version_key')" >/dev/null
}

# lc_archive CSV PASS: archive_streams('12 days', NULL, LC_ARCHIVE_BATCH)
# until it returns 0, one transaction per call, timed.
lc_archive() {
	local BENCH_DB=$LC_DB csv=$1 pass=$2 ms=0 total=0 calls=0 moved out events cold=$((LC_STREAMS * 9 / 10))
	bench_log "lifecycle archive ($pass): archive_streams('12 days', max_streams => $LC_ARCHIVE_BATCH), one transaction per call"
	while :; do
		out=$(bench_psql -At -c '\timing on' -c "SELECT eventstore.archive_streams('12 days', NULL, $LC_ARCHIVE_BATCH)")
		moved=$(head -1 <<<"$out")
		ms=$(awk -v a="$ms" -v b="$(awk '/^Time: / { print $2 }' <<<"$out")" 'BEGIN { printf "%.1f", a + b }')
		calls=$((calls + 1))
		[ "${moved:-0}" -gt 0 ] || break
		total=$((total + moved))
	done
	events=$(bench_value "SELECT count(*) FROM eventstore.archived_events")
	lc_csv archive move extension 1 "$pass" ms="$ms" events="$events" what="calls=$calls;streams=$total" >>"$csv"
	lc_check "archive ($pass)" "streams archived" "$total" "$cold"
	lc_check "archive ($pass)" "events archived" "$events" $((cold * 10))
	bench_psql -c "CHECKPOINT" >/dev/null
}

# Part 1 runs twice on the same data: pass "sizes" without appends (so the
# sizes show what archiving and vacuuming did, nothing else; and the times
# of the archiving, the VACUUMs, the reads and the restore), pass "appends"
# with the append runs at each stage (which add rows between the stages).
lc_archive_run() {
	local BENCH_DB=$LC_DB csv=$1 cold=$((LC_STREAMS * 9 / 10)) ms moved total=0 calls=0 out
	LC_STAGE_NO=0
	LC_V_OFFSET=0

	# --- pass "sizes"
	lc_load 1
	lc_sizes "$csv" before
	# The baseline: the same selection and move by plain SQL, on the copy.
	bench_log "lifecycle archive: plain SQL move of the idle streams, $LC_ARCHIVE_BATCH per transaction"
	ms=0
	while :; do
		out=$(bench_psql -At -c '\timing on' -c "
			WITH s AS (SELECT stream_id FROM bench_plain.events GROUP BY stream_id
			            HAVING max(created_at) < now() - interval '12 days'
			            ORDER BY max(created_at), stream_id LIMIT $LC_ARCHIVE_BATCH),
			     m AS (DELETE FROM bench_plain.events e USING s WHERE e.stream_id = s.stream_id RETURNING e.*),
			     i AS (INSERT INTO bench_plain.archived_events SELECT * FROM m RETURNING 1)
			SELECT count(*) FROM i")
		moved=$(head -1 <<<"$out")
		ms=$(awk -v a="$ms" -v b="$(awk '/^Time: / { print $2 }' <<<"$out")" 'BEGIN { printf "%.1f", a + b }')
		calls=$((calls + 1))
		[ "${moved:-0}" -gt 0 ] || break
		total=$((total + moved))
	done
	lc_csv archive move plain 1 sizes ms="$ms" events="$total" what="calls=$calls" >>"$csv"
	lc_check "plain move" "events moved" "$total" $((cold * 10))
	bench_psql -c "DROP SCHEMA bench_plain CASCADE" -c "CHECKPOINT" >/dev/null

	lc_archive "$csv" sizes
	# The selection alone (a GROUP BY over the hot table), once, now that
	# nothing is left to select: what each call pays before it moves.
	lc_csv archive select extension 1 sizes ms="$(lc_ms "SELECT count(*) FROM eventstore._inactive_streams('12 days', NULL, $LC_ARCHIVE_BATCH)")" >>"$csv"
	lc_sizes "$csv" archived
	bench_log "lifecycle archive: VACUUM eventstore.events"
	lc_csv archive vacuum extension 1 sizes ms="$(lc_ms "VACUUM eventstore.events")" >>"$csv"
	lc_sizes "$csv" vacuumed
	bench_log "lifecycle archive: VACUUM FULL eventstore.events"
	lc_csv archive vacuum_full extension 1 sizes ms="$(lc_ms "VACUUM FULL eventstore.events")" >>"$csv"
	lc_sizes "$csv" vacuum_full
	bench_psql -c "VACUUM (ANALYZE) eventstore.events" -c "CHECKPOINT" >/dev/null

	lc_read_archived "$csv"

	bench_log "lifecycle archive: restore_stream of $LC_RESTORE archived streams (one statement), and 20 one by one"
	local before
	before=$(bench_value "SELECT count(*) FROM eventstore.archived_events")
	ms=$(lc_ms "SELECT sum(eventstore.restore_stream('acct-' || k)) FROM generate_series(1, $LC_RESTORE) k")
	lc_check "restore" "events restored" "$((before - $(bench_value "SELECT count(*) FROM eventstore.archived_events")))" $((LC_RESTORE * 10))
	lc_csv archive restore extension 1 sizes ms="$ms" events=$((LC_RESTORE * 10)) what="streams=$LC_RESTORE" >>"$csv"
	local stmts=() k
	for k in $(seq $((LC_RESTORE + 1)) $((LC_RESTORE + 20))); do
		stmts+=("SELECT eventstore.restore_stream('acct-$k')")
	done
	lc_csv archive restore_one extension 1 sizes ms="$(lc_ms "${stmts[@]}")" events=200 what="streams=20" >>"$csv"

	# --- pass "appends"
	lc_load
	lc_append_stage "$csv" before
	lc_archive "$csv" appends
	lc_sizes "$csv" archived appends
	lc_append_stage "$csv" archived
	bench_psql -c "VACUUM eventstore.events" >/dev/null
	lc_sizes "$csv" vacuumed appends
	lc_append_stage "$csv" vacuumed
	bench_psql -c "VACUUM FULL eventstore.events" -c "VACUUM (ANALYZE) eventstore.events" -c "CHECKPOINT" >/dev/null
	lc_sizes "$csv" vacuum_full appends
	lc_append_stage "$csv" vacuum_full
	lc_sizes "$csv" end appends
}

# lc_read_archived CSV: read_stream of an archived stream and of a hot one,
# and the plain index scan of a hot one, alternating.
lc_read_archived() {
	local BENCH_DB=$LC_DB csv=$1 round c cold=$((LC_STREAMS * 9 / 10)) r
	bench_psql -c "SELECT pg_prewarm('eventstore.archived_events'), pg_prewarm('eventstore.archived_events_stream_version_key')" >/dev/null
	lc_check "read" "archived stream rows" "$(bench_value "SELECT count(*) FROM eventstore.read_stream('acct-$cold')")" 10
	lc_check "read" "hot stream rows" "$(bench_value "SELECT count(*) FROM eventstore.read_stream('acct-$LC_STREAMS')")" 10
	for round in $(seq 1 "$LC_ROUNDS"); do
		for c in archived:extension:1:$cold hot:extension:$((cold + 1)):$LC_STREAMS hot:plain:$((cold + 1)):$LC_STREAMS; do
			IFS=: read -r which who lo hi <<<"$c"
			bench_log "lifecycle archive: read_stream, $which, $who, round $round/$LC_ROUNDS (${LC_SECONDS}s)"
			r=$(lc_pgbench_run "lc-read-$which-$who-r$round" 1 "$BENCH_ROOT/bench/lifecycle/read.$who.pgbench" -D lo="$lo" -D hi="$hi")
			read -r tps tx failed lat cpu _ _ <<<"$r"
			lc_csv archive "read_$which" "$who" 1 "$round" tps="$tps" transactions="$tx" failed="$failed" \
				latency_ms="$lat" server_cpu_us="$cpu" >>"$csv"
		done
	done
}

# ---------------------------------------------------------------------------
# Part 2: the hot path with and without stream settings, with event ids
# ---------------------------------------------------------------------------

# lc_hot_reset CONTENDER CASE: a fresh table of the contender holding
# LC_PRELOAD events (bench_preload) and 4 events in each of the streams
# set-1 .. set-10000; for the extension in case "settings" a row in
# eventstore.streams for each of those; VACUUM (ANALYZE) and CHECKPOINT.
lc_hot_reset() {
	local BENCH_DB=$LC_DB table seq
	table=$(bench_table "$1") seq=$(bench_sequence "$1")
	case $1 in
	plain | plpgsql)
		bench_psql -c "TRUNCATE $table RESTART IDENTITY" >/dev/null ;;
	extension)
		bench_psql -c "DROP EXTENSION eventstore CASCADE" -c "CREATE EXTENSION eventstore" >/dev/null 2>&1 ;;
	esac
	bench_preload "$table" "$seq" "$LC_PRELOAD" "$BENCH_DATA" "$BENCH_METADATA" >/dev/null
	bench_psql -v data="$BENCH_DATA" -v metadata="$BENCH_METADATA" <<SQL >/dev/null
INSERT INTO $table
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT nextval('$seq'), v, now(), gen_random_uuid(), 'set-' || k, 'MoneyDeposited', :'data'::jsonb, :'metadata'::jsonb
  FROM generate_series(1, 4) AS v, generate_series(1, $LC_HOT_STREAMS) AS k
 ORDER BY v, k;
SQL
	if [ "$1" = extension ] && [ "$2" = settings ]; then
		lc_set_metadata set- "$LC_HOT_STREAMS"
	fi
	if [ "$1" = extension ] && [ "$2" = other ]; then
		lc_set_metadata other- "$LC_HOT_STREAMS"
	fi
	if [ "$1" = extension ]; then
		bench_wait_worker
	fi
	bench_psql -c "VACUUM (ANALYZE)" -c "CHECKPOINT" >/dev/null
}

# lc_set_metadata PREFIX N: set_stream_metadata(PREFIX || k, max_count =>
# 1000000) for k = 1 .. N, 2000 streams per transaction: each call holds
# the stream's advisory lock to the end of its transaction, and 20000 in
# one transaction exhaust the lock table ("out of shared memory" with the
# default max_locks_per_transaction).
lc_set_metadata() {
	local BENCH_DB=$LC_DB lo
	for ((lo = 1; lo <= $2; lo += 2000)); do
		bench_psql -c "SELECT count(eventstore.set_stream_metadata('$1' || k, max_count => 1000000)) FROM generate_series($lo, least($lo + 1999, $2)) k" >/dev/null
	done
}

lc_hot_run() {
	local BENCH_DB=$LC_DB csv=$1 round case clients c cell=0 script before after r
	local -a contenders=(plain plpgsql extension) order
	lc_recreate
	bench_psql -f "$BENCH_ROOT/bench/plain.sql" -f "$BENCH_ROOT/bench/plpgsql_store.sql" \
		-f "$BENCH_ROOT/bench/lifecycle/loop.sql" >/dev/null
	for round in $(seq 1 "$LC_ROUNDS"); do
		for case in $LC_HOT_CASES; do
			for clients in $LC_HOT_CLIENTS; do
				read -r -a order <<<"$(bench_rotate $((cell + round - 1)) "${contenders[@]}")"
				cell=$((cell + 1))
				for c in "${order[@]}"; do
					script=hot
					[ "$case" = event_id ] && script=hot_id
					lc_hot_reset "$c" "$case"
					[ "$c" != extension ] || [ "$case" = none ] || [ "$case" = event_id ] ||
						lc_check "hot settings" "rows in eventstore.streams" "$(bench_value "SELECT count(*) FROM eventstore.streams")" "$LC_HOT_STREAMS"
					before=$(bench_value "SELECT count(*) FROM $(bench_table "$c")")
					bench_log "lifecycle hot: round $round/$LC_ROUNDS, $case, $clients client(s), $c (${LC_SECONDS}s)"
					r=$(lc_pgbench_run "lc-hot-$case-c$clients-$c-r$round" "$clients" \
						"$BENCH_ROOT/bench/lifecycle/$script.$c.pgbench" -D v=4 \
						-D per=$((LC_HOT_STREAMS / clients)) -D nclients="$clients" \
						-D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA")
					read -r tps tx failed lat cpu wal _ <<<"$r"
					after=$(bench_value "SELECT count(*) FROM $(bench_table "$c")")
					lc_check "hot $case c$clients $c r$round" "rows appended" "$((after - before))" "$tx"
					lc_csv hot "$case" "$c" "$clients" "$round" tps="$tps" transactions="$tx" failed="$failed" \
						latency_ms="$lat" server_cpu_us="$cpu" wal_bytes="$wal" \
						rows_ok="$([ $((after - before)) = "$tx" ] && echo 1 || echo 0)" >>"$csv"
					# once per case, contender and round (not per client count): the
					# append path's cost in one backend, no commit
					if [ "$clients" = "${LC_HOT_CLIENTS%% *}" ]; then
						bench_psql -c "VACUUM (ANALYZE) $(bench_table "$c")" >/dev/null
						lc_csv hot "$case" "$c" loop "$round" ms="$(bench_value "SELECT round(bench_lc.loop_us('$c', $([ "$case" = event_id ] && echo true || echo false), $LC_LOOP_CALLS)::numeric, 2)")" \
							events="$LC_LOOP_CALLS" >>"$csv"
					fi
				done
			done
		done
	done
}

# ---------------------------------------------------------------------------
# Part 3: read_all with an empty and a non-empty eventstore.streams
# ---------------------------------------------------------------------------

lc_read_run() {
	local BENCH_DB=$LC_DB csv=$1 n=$LC_READ_EVENTS streams round case clients c r maxstart
	streams=$((n / 10))
	maxstart=$((n - 2000))
	lc_recreate
	bench_psql -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" >/dev/null
	bench_log "lifecycle read: writing $n events in $streams streams of 10, 1000 side by side"
	bench_psql -v data="$BENCH_DATA" -v metadata="$BENCH_METADATA" <<SQL >/dev/null
INSERT INTO eventstore.events
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT nextval('eventstore.global_position_seq'), v, now(), gen_random_uuid(), 'r-' || k,
       'MoneyDeposited', :'data'::jsonb, :'metadata'::jsonb
  FROM generate_series(0, $streams / 1000 - 1) AS g, generate_series(1, 10) AS v,
       LATERAL generate_series(g * 1000 + 1, g * 1000 + 1000) AS k
 ORDER BY g, v, k;
SELECT setval('eventstore.global_position_seq', $n);
SQL
	bench_psql -c "VACUUM (ANALYZE)" -c "CHECKPOINT" -c "SELECT pg_prewarm('eventstore.events'), pg_prewarm('eventstore.events_pkey')" >/dev/null
	bench_wait_worker
	for case in $LC_READ_CASES; do
		case $case in
		other) lc_set_metadata other- 10000 ;;
		all) lc_set_metadata r- "$streams" ;;
		esac
		bench_psql -c "VACUUM (ANALYZE)" -c "CHECKPOINT" >/dev/null
		lc_check "read_all $case" "rows of a page" "$(bench_value "SELECT count(*) FROM eventstore.read_all($maxstart, 1000)")" 1000
		lc_check "read_all $case" "distinct streams of a page" "$(bench_value "SELECT count(DISTINCT stream_id) FROM eventstore.read_all(0, 1000)")" 1000
		for round in $(seq 1 "$LC_ROUNDS"); do
			for clients in $LC_READ_CLIENTS; do
				local pair="read_all plain"
				[ $((round % 2)) = 1 ] || pair="plain read_all"
				for c in $pair; do
					bench_log "lifecycle read: streams $case, $c, $clients client(s), round $round/$LC_ROUNDS (${LC_SECONDS}s)"
					r=$(lc_pgbench_run "lc-readall-$case-$c-c$clients-r$round" "$clients" \
						"$BENCH_ROOT/bench/global/$c.pgbench" -D maxstart="$maxstart")
					read -r tps tx failed lat cpu _ _ <<<"$r"
					lc_csv read "$case" "$c" "$clients" "$round" tps="$tps" transactions="$tx" failed="$failed" \
						latency_ms="$lat" server_cpu_us="$cpu" >>"$csv"
				done
			done
		done
	done
}

lifecycle_run() {
	local csv=$1
	echo "$LC_CSV_HEADER" >"$csv"
	bench_part "$LC_PARTS" archive && lc_archive_run "$csv"
	bench_part "$LC_PARTS" hot && lc_hot_run "$csv"
	bench_part "$LC_PARTS" read && lc_read_run "$csv"
	bench_psql_db postgres -c "DROP DATABASE IF EXISTS $LC_DB" >/dev/null
}

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

# lc_med CSV COLUMN NAME=VALUE...: the median of COLUMN over matching rows.
lc_med() {
	local csv=$1 col=$2
	shift 2
	# shellcheck disable=SC2046
	bench_median $(bench_csv_values "$csv" "$col" "$@")
}

lc_mib() { awk -v b="${1:-}" 'BEGIN { if (b == "") print "n/a"; else printf "%.1f\n", b / 1048576 }'; }

# lc_size CSV STAGE WHAT [PASS]: a size recorded by lc_sizes.
lc_size() { bench_csv_values "$1" bytes part=archive stage="$2" contender=size what="$3" round="${4:-sizes}" | head -1; }

lifecycle_report() {
	local csv=$1 stage
	echo "## lifecycle: archiving, and the lifecycle on the hot path"
	echo
	echo "$BENCH_MACHINE"
	echo
	echo "Runs of ${LC_SECONDS}s, median of $LC_ROUNDS round(s), pgbench -M prepared, durable commits;" \
		"server CPU = user + system time of every server process (the worker included) per transaction;" \
		"WAL = bytes of WAL per transaction."
	if bench_part "$LC_PARTS" archive; then
		local idx
		idx=$(bench_csv_values "$csv" what part=archive stage=before contender=size round=sizes | grep '^index:' | sed 's/^index://')
		echo
		echo "### 1. Archiving 90 % of $((LC_STREAMS * 10)) events ($LC_STREAMS streams of 10)"
		echo
		echo "Sizes of eventstore.events in MiB (pg_relation_size; total = pg_total_relation_size, heap + indexes + TOAST):"
		echo
		local head="| stage | rows in events | heap | total |" sep="|---|---:|---:|---:|" i
		for i in $idx; do head="$head $i |"; sep="$sep---:|"; done
		echo "$head archived_events total | eventstore.streams rows | heap with the appends of the earlier stages (pass 2) |"
		echo "$sep---:|---:|---:|"
		local b_heap b_total
		b_heap=$(lc_size "$csv" before events_heap)
		b_total=$(lc_size "$csv" before events_total)
		for stage in before archived vacuumed vacuum_full; do
			local line heap total
			heap=$(lc_size "$csv" $stage events_heap)
			total=$(lc_size "$csv" $stage events_total)
			line="| $stage | $(lc_size "$csv" $stage events_rows) | $(lc_mib "$heap") ($(bench_ratio "$heap" "$b_heap")x) | $(lc_mib "$total") ($(bench_ratio "$total" "$b_total")x) |"
			for i in $idx; do line="$line $(lc_mib "$(lc_size "$csv" $stage "index:$i")") |"; done
			local h2
			h2=$(lc_size "$csv" $stage events_heap appends)
			[ $stage = before ] && h2=$heap
			echo "$line $(lc_mib "$(lc_size "$csv" $stage archive_total)") | $(lc_size "$csv" $stage streams_rows) | $(lc_mib "$h2") |"
		done
		echo
		echo "Appends at each stage: $LC_APPEND_CLIENTS clients, one event to a random new stream, expected_version NULL" \
			"(bench/scale/append.*.pgbench: the extension, and plain = an INSERT of the same row into eventstore.events):"
		echo
		echo "| stage | extension appends/s | plain appends/s | extension/plain | extension vs before | ext CPU µs/append | plain CPU µs/append | ext WAL B/append | plain WAL B/append |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		local e0
		e0=$(lc_med "$csv" tps part=archive stage=before contender=extension)
		for stage in before archived vacuumed vacuum_full; do
			local e p
			e=$(lc_med "$csv" tps part=archive stage=$stage contender=extension)
			p=$(lc_med "$csv" tps part=archive stage=$stage contender=plain)
			echo "| $stage | $(bench_fmt "$e") | $(bench_fmt "$p") | $(bench_ratio "$e" "$p") | $(bench_ratio "$e" "$e0") |" \
				"$(bench_fmt "$(lc_med "$csv" server_cpu_us part=archive stage=$stage contender=extension)") |" \
				"$(bench_fmt "$(lc_med "$csv" server_cpu_us part=archive stage=$stage contender=plain)") |" \
				"$(bench_fmt "$(lc_med "$csv" wal_bytes part=archive stage=$stage contender=extension)") |" \
				"$(bench_fmt "$(lc_med "$csv" wal_bytes part=archive stage=$stage contender=plain)") |"
		done
		echo
		echo "Moving the idle streams out (one transaction per call of $LC_ARCHIVE_BATCH streams):"
		echo
		echo "| what | events moved | calls | seconds | events/s |"
		echo "|---|---:|---:|---:|---:|"
		local ms ev what
		for c in extension plain; do
			ms=$(bench_csv_values "$csv" ms part=archive stage=move contender=$c round=sizes)
			ev=$(bench_csv_values "$csv" events part=archive stage=move contender=$c round=sizes)
			what=$(bench_csv_values "$csv" what part=archive stage=move contender=$c round=sizes)
			local label="eventstore.archive_streams('12 days', NULL, $LC_ARCHIVE_BATCH)"
			[ $c = plain ] && label="plain SQL: same selection, DELETE ... RETURNING into a copy"
			echo "| $label | $ev | ${what%%;*} | $(awk -v m="$ms" 'BEGIN { printf "%.1f", m / 1000 }') | $(awk -v m="$ms" -v e="$ev" 'BEGIN { printf "%.0f", (m > 0 ? e * 1000 / m : 0) }') |" | sed 's/calls=//'
		done
		echo
		echo "- archive_streams/plain move rate: $(bench_ratio \
			"$(bench_csv_values "$csv" ms part=archive stage=move contender=plain round=sizes)" \
			"$(bench_csv_values "$csv" ms part=archive stage=move contender=extension round=sizes)")x" \
			"(time of plain / time of extension); archive_streams in the second pass (the same data): $(awk -v m="$(bench_csv_values "$csv" ms part=archive stage=move contender=extension round=appends)" 'BEGIN { printf "%.1f", m / 1000 }') s"
		echo "- the selection alone (_inactive_streams: a GROUP BY over the hot table, paid by every call): $(bench_csv_values "$csv" ms part=archive stage=select) ms after archiving"
		echo "- VACUUM eventstore.events: $(bench_csv_values "$csv" ms part=archive stage=vacuum) ms; VACUUM FULL: $(bench_csv_values "$csv" ms part=archive stage=vacuum_full) ms (ACCESS EXCLUSIVE: appends wait that long)"
		ms=$(bench_csv_values "$csv" ms part=archive stage=restore)
		ev=$(bench_csv_values "$csv" events part=archive stage=restore)
		echo "- restore_stream of $LC_RESTORE streams ($ev events) in one statement: $ms ms" \
			"($(awk -v m="$ms" -v n="$LC_RESTORE" 'BEGIN { printf "%.2f", m / n }') ms per stream," \
			"$(awk -v m="$ms" -v e="$ev" 'BEGIN { printf "%.0f", e * 1000 / m }') events/s);" \
			"20 streams one transaction each: $(awk -v m="$(bench_csv_values "$csv" ms part=archive stage=restore_one)" 'BEGIN { printf "%.2f", m / 20 }') ms per call"
		echo
		echo "read_stream of a whole 10-event stream, 1 client:"
		echo
		echo "| read | rows/s | CPU µs/read | latency ms | vs extension hot |"
		echo "|---|---:|---:|---:|---:|"
		local hot
		hot=$(lc_med "$csv" tps part=archive stage=read_hot contender=extension)
		for c in read_archived:extension read_hot:extension read_hot:plain; do
			local t
			t=$(lc_med "$csv" tps part=archive stage="${c%%:*}" contender="${c##*:}")
			echo "| ${c##*:} ${c%%:*} | $(bench_fmt "$(awk -v t="$t" 'BEGIN { print t * 10 }')") |" \
				"$(bench_fmt "$(lc_med "$csv" server_cpu_us part=archive stage="${c%%:*}" contender="${c##*:}")") |" \
				"$(lc_med "$csv" latency_ms part=archive stage="${c%%:*}" contender="${c##*:}") | $(bench_ratio "$t" "$hot") |"
		done
	fi
	if bench_part "$LC_PARTS" hot; then
		echo
		echo "### 2. The hot path: one event, expected_version NULL, to 10000 streams (events/s)"
		echo
		echo "none: eventstore.streams empty; other: 10000 rows of other streams (the probe misses in a non-empty table);" \
			"settings: every target stream has a row (max_count 1000000, the probe hits);" \
			"event_id: no settings, each call carries an event id (the idempotency check reads the stream's newest event)."
		echo
		echo "| case | clients | plain | plpgsql | extension | extension/plain | extension/plpgsql | extension vs none | CPU µs/append plain / plpgsql / extension | WAL B/append extension |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"
		local case clients
		for case in $LC_HOT_CASES; do
			for clients in $LC_HOT_CLIENTS; do
				local p q e n0
				p=$(lc_med "$csv" tps part=hot stage=$case contender=plain clients="$clients")
				q=$(lc_med "$csv" tps part=hot stage=$case contender=plpgsql clients="$clients")
				e=$(lc_med "$csv" tps part=hot stage=$case contender=extension clients="$clients")
				n0=$(lc_med "$csv" tps part=hot stage=none contender=extension clients="$clients")
				echo "| $case | $clients | $(bench_fmt "$p") | $(bench_fmt "$q") | $(bench_fmt "$e") | $(bench_ratio "$e" "$p") | $(bench_ratio "$e" "$q") | $(bench_ratio "$e" "$n0") |" \
					"$(bench_fmt "$(lc_med "$csv" server_cpu_us part=hot stage=$case contender=plain clients="$clients")") /" \
					"$(bench_fmt "$(lc_med "$csv" server_cpu_us part=hot stage=$case contender=plpgsql clients="$clients")") /" \
					"$(bench_fmt "$(lc_med "$csv" server_cpu_us part=hot stage=$case contender=extension clients="$clients")") |" \
					"$(bench_fmt "$(lc_med "$csv" wal_bytes part=hot stage=$case contender=extension clients="$clients")") |"
			done
		done
	fi
	if bench_part "$LC_PARTS" hot; then
		echo
		echo "The append path in one backend, no commit, no client ($LC_LOOP_CALLS appends in one transaction, bench_lc.loop_us: the backend's CPU time from /proc/self/schedstat, µs per append, median of $LC_ROUNDS):"
		echo
		echo "| case | plain | plpgsql | extension | extension/plain | extension/plpgsql | extension vs none |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
		local n0l
		n0l=$(lc_med "$csv" ms part=hot stage=none contender=extension clients=loop)
		for case in $LC_HOT_CASES; do
			local p q e
			p=$(lc_med "$csv" ms part=hot stage=$case contender=plain clients=loop)
			q=$(lc_med "$csv" ms part=hot stage=$case contender=plpgsql clients=loop)
			e=$(lc_med "$csv" ms part=hot stage=$case contender=extension clients=loop)
			echo "| $case | $p | $q | $e | $(bench_ratio "$e" "$p") | $(bench_ratio "$e" "$q") | $(bench_ratio "$e" "$n0l") |"
		done
	fi
	if bench_part "$LC_PARTS" read; then
		echo
		echo "### 3. read_all of 1000 events (1000 distinct streams per page), rows/s"
		echo
		echo "| eventstore.streams | clients | read_all | plain | read_all/plain | read_all vs empty | CPU µs/page read_all / plain |"
		echo "|---|---:|---:|---:|---:|---:|---|"
		local e0
		for case in $LC_READ_CASES; do
			for clients in $LC_READ_CLIENTS; do
				local a p
				a=$(lc_med "$csv" tps part=read stage=$case contender=read_all clients="$clients")
				p=$(lc_med "$csv" tps part=read stage=$case contender=plain clients="$clients")
				e0=$(lc_med "$csv" tps part=read stage=empty contender=read_all clients="$clients")
				local label=$case
				case $case in
				empty) label="empty" ;;
				other) label="10000 rows, other streams" ;;
				all) label="a row for every stream read ($((LC_READ_EVENTS / 10)))" ;;
				esac
				echo "| $label | $clients | $(bench_fmt "$(awk -v t="$a" 'BEGIN { print t * 1000 }')") | $(bench_fmt "$(awk -v t="$p" 'BEGIN { print t * 1000 }')") |" \
					"$(bench_ratio "$a" "$p") | $(bench_ratio "$a" "$e0") |" \
					"$(bench_fmt "$(lc_med "$csv" server_cpu_us part=read stage=$case contender=read_all clients="$clients")") / $(bench_fmt "$(lc_med "$csv" server_cpu_us part=read stage=$case contender=plain clients="$clients")") |"
			done
		done
	fi
	if [ -n "$LC_FAILED_CHECKS" ]; then
		echo
		echo "Failed checks:"
		echo
		printf '%s' "$LC_FAILED_CHECKS"
	fi
}
