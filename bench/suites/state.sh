# Suite "state": folding streams into state, snapshots and their policies,
# and command handling.  Sourced by bench/run.sh, which calls state_setup,
# state_run and state_report.
#
#   1. load: one stream of STATE_EVENTS (100000) account events, loaded
#      with a PL/pgSQL evolve (bench/state/state.sql): by the extension
#      (load_state without snapshots, i.e. a full replay; the fold()
#      aggregate over read_stream; from a snapshot at the head, from one 100
#      events behind, from the snapshots a policy took every 1000 events),
#      and by hand-written PL/pgSQL loops calling the same evolve over a
#      plain table with the same rows (from a hand-written snapshot or not)
#      and over the PL/pgSQL store's read function.  All cases in each
#      round, the order rotating; time per load inside the backend (wall
#      and CPU), median over the rounds.  Then the backend's private memory
#      (RssAnon) while folding 1000 and STATE_EVENTS events, sampled by
#      bench/memory/measure.py: a fold that streams does not grow with the
#      stream.
#   2. policy: STATE_CLIENTS (1 8) clients append single events (durable)
#      to accounts of their own, with no snapshot policy and with a policy
#      every 100 and every 10 events on those accounts, alternating; the
#      policy's lag (projection_status of 'snapshot:<name>') sampled every
#      100 ms during the load, the server's CPU per event read after the
#      worker has caught up; every snapshot checked against a full fold.
#   3. command: handle_command against the hand-written PL/pgSQL equivalent
#      (bench_state.handle_command: load with a loop, the same decide,
#      append_events with the loaded version), with and without snapshots,
#      on accounts of 10-30 events (growing by the commands), at
#      STATE_CLIENTS clients, the four cases back to back in each round;
#      then the CPU per command of the same four in one backend
#      (bench_state.command_loop, synchronous_commit = off).
#
# In a database of its own (STATE_DB): every function that talks to the
# server declares "local BENCH_DB=$STATE_DB".  See bench/README.md, suite
# "state".

STATE_DB=state
STATE_QUICK=$BENCH_IS_QUICK

STATE_PARTS=${BENCH_STATE_PARTS:-load policy command}
STATE_EVENTS=${BENCH_STATE_EVENTS:-100000}
STATE_LOAD_ROUNDS=${BENCH_STATE_LOAD_ROUNDS:-${STATE_QUICK:+3}}
STATE_LOAD_ROUNDS=${STATE_LOAD_ROUNDS:-7}
STATE_CLIENTS=${BENCH_STATE_CLIENTS:-${STATE_QUICK:+8}}
STATE_CLIENTS=${STATE_CLIENTS:-1 8}
STATE_EVERY=${BENCH_STATE_EVERY:-100 10}
STATE_POLICY_SECONDS=${BENCH_STATE_POLICY_SECONDS:-${STATE_QUICK:+3}}
STATE_POLICY_SECONDS=${STATE_POLICY_SECONDS:-5}
STATE_POLICY_ROUNDS=${BENCH_STATE_POLICY_ROUNDS:-${STATE_QUICK:+1}}
STATE_POLICY_ROUNDS=${STATE_POLICY_ROUNDS:-3}
STATE_CMD_STREAMS=${BENCH_STATE_CMD_STREAMS:-${STATE_QUICK:+2000}}
STATE_CMD_STREAMS=${STATE_CMD_STREAMS:-8000}
STATE_CMD_SECONDS=${BENCH_STATE_CMD_SECONDS:-${STATE_QUICK:+3}}
STATE_CMD_SECONDS=${STATE_CMD_SECONDS:-4}
STATE_CMD_ROUNDS=${BENCH_STATE_CMD_ROUNDS:-${STATE_QUICK:+1}}
STATE_CMD_ROUNDS=${STATE_CMD_ROUNDS:-3}
STATE_CPU_ITERATIONS=${BENCH_STATE_CPU_ITERATIONS:-${STATE_QUICK:+1000}}
STATE_CPU_ITERATIONS=${STATE_CPU_ITERATIONS:-5000}
STATE_PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
# Accounts per client in part 2: few, so that each grows by a few hundred
# events in a run and passes the policy's "every" several times.
STATE_POLICY_STREAMS=10
STATE_SAMPLE_PERIOD=0.1
STATE_EVOLVE='bench_state.account_evolve(bench_state.account,eventstore.event)'
STATE_CMD_CASES="extension:false plpgsql:false extension:true plpgsql:true"
# The part-1 cases: the full replays, then the loads from snapshots.
STATE_LOAD_FULL="ext_full ext_fold_agg plain_loop plpgsql_read_loop"
# More full replays, timed with the others but not measured for memory: the
# same fold with the evolve written in SQL (one expression, inlinable), and
# the hand-written loops over the extension's read_stream.
STATE_LOAD_MORE="ext_full_sql ext_fold_agg_sql plain_loop_sql ext_read_loop ext_read_loop_sql"
STATE_LOAD_SNAP="ext_snap_head ext_snap_100 ext_policy_500 ext_policy_999 plain_snap_head plain_snap_100"

bench_parts state "load policy command" "$STATE_PARTS"
[ "$STATE_EVENTS" -ge 2000 ] || { echo "BENCH_STATE_EVENTS must be at least 2000" >&2; exit 2; }
for c in $STATE_CLIENTS; do
	[ $((STATE_CMD_STREAMS % c)) = 0 ] ||
		{ echo "BENCH_STATE_CMD_STREAMS ($STATE_CMD_STREAMS) must be a multiple of every client count" >&2; exit 2; }
done

STATE_CSV_HEADER="suite,part,case,clients,round,reps,wall_us,cpu_us,version,tps,transactions,failed,latency_ms,server_cpu_us,wal_bytes,snapshots,lag_events_p50,lag_events_p95,lag_events_max,lag_ms_p50,lag_ms_p95,lag_ms_max,drain_ms,start_anon_kb,peak_anon_kb,end_anon_kb,stream_events,tail_events"

# state_csv PART CASE CLIENTS ROUND NAME=VALUE...: one CSV line, the named
# columns set, the others empty.
state_csv() { bench_csv_line "$STATE_CSV_HEADER" "state,$1,$2,$3,$4" "${@:5}"; }

# state_check TAG WHAT GOT WANT: warn when GOT is not WANT, and remember it
# for the report.
STATE_FAILED_CHECKS=
state_check() { bench_check STATE_FAILED_CHECKS "$@"; }

state_setup() {
	local BENCH_DB=$STATE_DB n=$STATE_EVENTS t0
	bench_log "state: creating database $STATE_DB"
	bench_create_db "$STATE_DB" \
		-f "$BENCH_ROOT/bench/plain.sql" \
		-f "$BENCH_ROOT/bench/reads/plpgsql_read.sql" \
		-f "$BENCH_ROOT/bench/projections/readmodels.sql" \
		-f "$BENCH_ROOT/bench/state/state.sql"
	# Written straight into the tables (as their owner; bench only): the
	# long stream 'load-big' and a short one, 'load-small', of 1000 events,
	# the same rows in bench_plain.events; the accounts of part 3, 10 to 30
	# events each, growing side by side (a stream's events lie
	# STATE_CMD_STREAMS rows apart, as when many accounts live at once).
	bench_log "state: writing a stream of $n events, one of 1000 and $STATE_CMD_STREAMS accounts of 10-30 events"
	bench_psql -v metadata="$BENCH_METADATA" <<SQL >/dev/null
INSERT INTO eventstore.events
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT nextval('eventstore.global_position_seq'), v, now(), gen_random_uuid(), s,
       bench_state.event_type(v), bench_state.event_data(s, v), :'metadata'::jsonb
  FROM (VALUES ('load-big', $n), ('load-small', 1000)) AS x(s, len),
       LATERAL generate_series(1, len) AS v
 ORDER BY s, v;
INSERT INTO bench_plain.events SELECT * FROM eventstore.events;
SELECT setval('bench_plain.global_position_seq', (SELECT max(global_position) FROM bench_plain.events));
INSERT INTO eventstore.events
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT nextval('eventstore.global_position_seq'), v, now(), gen_random_uuid(), 'cmd-' || k,
       bench_state.event_type(v), bench_state.event_data('cmd-' || k, v), :'metadata'::jsonb
  FROM generate_series(1, 30) AS v, generate_series(0, $STATE_CMD_STREAMS - 1) AS k
 WHERE v <= 10 + (k * 7919) % 21
 ORDER BY v, k;
SQL
	bench_quiesce >/dev/null
	bench_wait_worker
	if bench_part "$STATE_PARTS" load; then
		# The snapshots of part 1: the extension's with explicit tags, the
		# hand-written ones at the same versions; then a policy every 1000
		# events, built by the worker (timed).
		bench_psql <<SQL >/dev/null
SELECT eventstore.take_snapshot('load-big', '$STATE_EVOLVE', NULL::bench_state.account, snapshot_tag => 'at-head');
SELECT eventstore.take_snapshot('load-big', '$STATE_EVOLVE', NULL::bench_state.account, to_version => $n - 100, snapshot_tag => 'behind-100');
INSERT INTO bench_state.snapshots SELECT 'load-big', 'at-head', l.version, l.state FROM bench_state.plain_load('load-big') l;
INSERT INTO bench_state.snapshots SELECT 'load-big', 'behind-100', l.version, l.state FROM bench_state.plain_load('load-big', NULL, $n - 100) l;
SQL
		bench_log "state: a snapshot policy every 1000 events on the stream of $n (the worker replays it)"
		t0=$(date +%s.%N)
		bench_psql -c "SELECT eventstore.create_snapshot_policy('loads', '$STATE_EVOLVE', NULL::bench_state.account, stream_prefix => 'load-', every => 1000)" >/dev/null
		state_check "policy build" "caught up" "$(bench_value "SELECT eventstore.wait_for_projection('snapshot:loads', '600 s')")" t
		STATE_POLICY_BUILD_MS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
		state_check "policy build" "snapshots of load-big" "$(bench_value "SELECT count(*) FROM eventstore.snapshots WHERE stream_id = 'load-big' AND tag = eventstore.snapshot_tag('$STATE_EVOLVE', NULL::bench_state.account)")" $((n / 1000))
		bench_psql -c "SELECT eventstore.drop_snapshot_policy('loads')" >/dev/null
	fi
	if bench_part "$STATE_PARTS" command; then
		state_command_snapshots
	fi
	bench_quiesce >/dev/null
	STATE_RUN=0
}

# ---------------------------------------------------------------------------
# Part 1: loading the long stream
# ---------------------------------------------------------------------------

state_load_run() {
	local csv=$1 round cases r how reps wall cpu version st ref='' states=''
	state_csv load policy_build 1 1 wall_us="${STATE_POLICY_BUILD_MS:+${STATE_POLICY_BUILD_MS}000}" version="$STATE_EVENTS" snapshots=$((STATE_EVENTS / 1000)) >>"$csv"
	for round in $(seq 1 "$STATE_LOAD_ROUNDS"); do
		# shellcheck disable=SC2086 # word lists
		cases="$(bench_rotate $((round - 1)) $STATE_LOAD_FULL $STATE_LOAD_MORE)$(bench_rotate $((round - 1)) $STATE_LOAD_SNAP)"
		bench_log "round $round/$STATE_LOAD_ROUNDS: loads of the $STATE_EVENTS-event stream ($cases)"
		while IFS='|' read -r r how reps wall cpu version st; do
			state_csv load "$how" 1 "$r" reps="$reps" wall_us="$wall" cpu_us="$cpu" version="$version" >>"$csv"
			states="$states$how $version $st"$'\n'
		done < <(bench_psql -At -c "SELECT * FROM bench_state.time_loads($round, string_to_array(trim('$cases'), ' '), 'load-big', $STATE_EVENTS, 150)")
	done
	# Every case must reach the state of a full replay at its version.
	ref=$(bench_psql -At -c "
		SELECT string_agg(x.how || ' ' || l.version || ' ' || l.state::text, E'\n' ORDER BY x.how)
		  FROM (VALUES ('ext_policy_500', $STATE_EVENTS - 500), ('ext_policy_999', $STATE_EVENTS - 1)) x(how, v),
		       LATERAL eventstore.load_state('load-big', '$STATE_EVOLVE', NULL::bench_state.account,
		                                     to_version => x.v, use_snapshots => false) l")
	while read -r how version st; do
		local want
		case $how in
		ext_policy_500 | ext_policy_999) want=$(grep "^$how " <<<"$ref" | cut -d' ' -f2-) ;;
		*) want=$(grep "^ext_full " <<<"$states" | head -1 | cut -d' ' -f2-) ;;
		esac
		state_check "load $how" "version and state" "$version $st" "$want"
	done < <(sort -u <<<"$states" | sed '/^$/d')
	state_memory_run "$csv"
}

# state_memory_run CSV: the backend's private memory while it folds the
# short and the long stream, each case in a fresh backend warmed up by the
# same fold of the short stream; and the long one three times in one
# backend (a leak would raise the peak).
state_memory_run() {
	local csv=$1 how s len rep line version seconds start peak end
	if ! "$STATE_PYTHON" -c 'import ctypes; ctypes.CDLL("libpq.so.5")' 2>/dev/null; then
		bench_log "WARNING: no $STATE_PYTHON with libpq.so.5: the memory of the folds is not measured (set BENCH_PYTHON)"
		return 0
	fi
	for how in $STATE_LOAD_FULL; do
		for s in load-small:1000 load-big:"$STATE_EVENTS" load-big:"$STATE_EVENTS":3; do
			IFS=: read -r s len rep <<<"$s"
			[ -z "$rep" ] || [ "$how" = ext_full ] || continue
			bench_log "state: memory of $how over $len events${rep:+ x$rep}"
			line=$("$STATE_PYTHON" "$BENCH_ROOT/bench/memory/measure.py" \
				--dsn "$(bench_dsn "$STATE_DB")" \
				--label "$how" --sql "SELECT version FROM bench_state.load('$how', '$s', $len)" \
				--setup "SELECT bench_state.load('$how', 'load-small', 1000)" --repeat "${rep:-1}")
			# label,result,rows,seconds,param_bytes,start_rss_kb,start_anon_kb,start_shmem_kb,
			# peak_anon_kb,peak_rss_kb,vmhwm_kb,end_anon_kb,end_shmem_kb,samples
			IFS=, read -r _ version _ seconds _ _ start _ peak _ _ end _ _ <<<"$line"
			state_csv memory "$how${rep:+ x$rep}" 1 1 reps="${rep:-1}" version="$version" \
				wall_us="$(awk -v s="$seconds" 'BEGIN { printf "%.0f", s * 1e6 }')" \
				start_anon_kb="$start" peak_anon_kb="$peak" end_anon_kb="$end" >>"$csv"
		done
	done
}

# ---------------------------------------------------------------------------
# Part 2: what a snapshot policy costs appends
# ---------------------------------------------------------------------------

# state_policy_one CSV CLIENTS KIND ROUND: one run of part 2, KIND none or
# everyN (a policy every N events on this run's accounts, created and caught
# up before the load).  During a policy's run bench_proj.sample_lag
# (bench/projections/readmodels.sql) samples its lag; after the load the
# worker is waited for, and only then are the CPU and WAL read, so they
# include its whole share.
state_policy_one() {
	local BENCH_DB=$STATE_DB
	local csv=$1 clients=$2 kind=$3 round=$4 every='' sampler='' stats=''
	local tag start before wal0 cpu0 cpu1 res tps tx failed lat after wal1 end_load drain ckpt
	local snaps=0 want_snaps=0 bad=0 cpu wal
	STATE_RUN=$((STATE_RUN + 1))
	tag=state-policy-$kind-c$clients-r$round
	[ "$kind" = none ] || every=${kind#every}
	bench_psql -c "SELECT eventstore.drop_snapshot_policy('acct', if_exists => true)" >/dev/null
	if [ -n "$every" ]; then
		bench_psql -c "SELECT eventstore.create_snapshot_policy('acct', '$STATE_EVOLVE', NULL::bench_state.account, stream_prefix => 'acct-$STATE_RUN-', every => $every)" >/dev/null
		state_check "$tag" "policy caught up before the load" "$(bench_value "SELECT eventstore.wait_for_projection('snapshot:acct', '300 s')")" t
	fi
	bench_quiesce eventstore.events eventstore.snapshots eventstore.projection_checkpoints >/dev/null
	bench_log "round $round/$STATE_POLICY_ROUNDS: appends, $clients client(s), policy: $kind (${STATE_POLICY_SECONDS}s)"
	start=$(bench_log_lines)
	read -r before wal0 <<<"$(bench_psql -At -F ' ' -c "SELECT count(*), pg_current_wal_insert_lsn() FROM eventstore.events")"
	if [ -n "$every" ]; then
		bench_psql -c "CALL bench_proj.sample_lag($STATE_RUN, 'snapshot:acct', $STATE_POLICY_SECONDS, $STATE_SAMPLE_PERIOD)" &
		sampler=$!
	fi
	cpu0=$(bench_server_cpu)
	res=$(bench_pgbench "$tag" "$clients" "$STATE_POLICY_SECONDS" -f "$BENCH_ROOT/bench/state/append.pgbench" \
		-D run="$STATE_RUN" -D streams="$STATE_POLICY_STREAMS" -D data="$BENCH_DATA" -D metadata="$BENCH_METADATA")
	end_load=$(date +%s.%N)
	read -r tps tx failed lat <<<"$res"
	if [ -n "$every" ]; then
		state_check "$tag" "policy caught up after the load" \
			"$(bench_value "SELECT eventstore.wait_for_projection('snapshot:acct', '300 s')")" t
		# the start of the worker's last batch, after the load ended (0: none)
		drain=$(bench_value "SELECT greatest(0, round(extract(epoch FROM updated_at - to_timestamp($end_load)) * 1000))
			FROM eventstore.projection_checkpoints WHERE name = 'snapshot:acct'")
	fi
	cpu1=$(bench_server_cpu)
	read -r after wal1 <<<"$(bench_psql -At -F ' ' -c "SELECT count(*), pg_current_wal_insert_lsn() - '$wal0'::pg_lsn FROM eventstore.events")"
	ckpt=$(bench_checkpoints_since "$start")
	state_check "$tag" "rows appended" "$((after - before))" "$tx"
	state_check "$tag" "failed transactions" "$failed" 0
	state_check "$tag" "checkpoints started during the run" "$ckpt" 0
	if [ -n "$every" ]; then
		wait "$sampler" || state_check "$tag" "the lag sampler" failed ok
		# Snapshots: one per account at every multiple of "every" it
		# reached, each the state of a full fold to its version.
		read -r snaps want_snaps bad <<<"$(bench_psql -At -F ' ' -c "
			SELECT (SELECT count(*) FROM eventstore.snapshots WHERE starts_with(stream_id, 'acct-$STATE_RUN-')),
			       (SELECT coalesce(sum(m / $every), 0) FROM (SELECT max(stream_version) AS m FROM eventstore.events
			                                                   WHERE starts_with(stream_id, 'acct-$STATE_RUN-') GROUP BY stream_id) x),
			       (SELECT count(*) FROM eventstore.snapshots s
			         WHERE starts_with(s.stream_id, 'acct-$STATE_RUN-')
			           AND s.state IS DISTINCT FROM eventstore.aggregate_stream(s.stream_id, '$STATE_EVOLVE', NULL::bench_state.account,
			                                                                    to_version => s.stream_version, use_snapshots => false)::text)")"
		state_check "$tag" "snapshots taken" "$snaps" "$want_snaps"
		state_check "$tag" "snapshots whose state differs from a full fold" "$bad" 0
		stats=$(bench_value "
			SELECT concat_ws(' ', 'lag_events_p50=' || percentile_disc(0.5) WITHIN GROUP (ORDER BY lag_events),
			                 'lag_events_p95=' || percentile_disc(0.95) WITHIN GROUP (ORDER BY lag_events),
			                 'lag_events_max=' || max(lag_events),
			                 'lag_ms_p50=' || round(percentile_disc(0.5) WITHIN GROUP (ORDER BY lag_ms)::numeric, 1),
			                 'lag_ms_p95=' || round(percentile_disc(0.95) WITHIN GROUP (ORDER BY lag_ms)::numeric, 1),
			                 'lag_ms_max=' || round(max(lag_ms)::numeric, 1))
			  FROM bench_proj.lag_samples WHERE run = $STATE_RUN")
		bench_psql -c "SELECT eventstore.drop_snapshot_policy('acct')" >/dev/null
	fi
	cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$tx" 'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / n }')
	wal=$(awk -v w="$wal1" -v n="$tx" 'BEGIN { if (n > 0) printf "%.0f", w / n }')
	bench_log "$tag: $(bench_fmt "$tps") appends/s, $cpu µs CPU/event${every:+, $snaps snapshots, lag $stats, drain ${drain}ms}"
	# shellcheck disable=SC2086 # stats: NAME=VALUE words
	state_csv policy "$kind" "$clients" "$round" tps="$tps" transactions="$tx" failed="$failed" \
		latency_ms="$lat" server_cpu_us="$cpu" wal_bytes="$wal" snapshots="$snaps" drain_ms="${drain:-}" $stats >>"$csv"
}

state_policy_run() {
	local csv=$1 clients round kind
	local -a kinds=(none)
	for kind in $STATE_EVERY; do kinds+=("every$kind"); done
	for clients in $STATE_CLIENTS; do
		for round in $(seq 1 "$STATE_POLICY_ROUNDS"); do
			for kind in $(bench_rotate $((round - 1)) "${kinds[@]}"); do
				state_policy_one "$csv" "$clients" "$kind" "$round"
			done
		done
	done
}

# ---------------------------------------------------------------------------
# Part 3: handle_command against the hand-written equivalent
# ---------------------------------------------------------------------------

# state_command_snapshots: both contenders' snapshots of every account at
# its head: the extension's (default tag, as handle_command reads them)
# and the hand-written ones (tag 'cmd'); before each round, so that the
# runs with snapshots start from recent ones.
state_command_snapshots() {
	local BENCH_DB=$STATE_DB
	bench_psql <<SQL >/dev/null
SELECT count(eventstore.take_snapshot('cmd-' || k, '$STATE_EVOLVE', NULL::bench_state.account))
  FROM generate_series(0, $STATE_CMD_STREAMS - 1) AS k;
INSERT INTO bench_state.snapshots
SELECT 'cmd-' || k, 'cmd', l.version, l.state
  FROM generate_series(0, $STATE_CMD_STREAMS - 1) AS k,
       LATERAL eventstore.load_state('cmd-' || k, '$STATE_EVOLVE', NULL::bench_state.account) l
ON CONFLICT DO NOTHING;
SQL
}

# state_command_lengths: "mean version, mean events after the newest
# snapshot" of the accounts.
state_command_lengths() {
	bench_value "
		SELECT round(avg(e.v), 1) || ' ' || round(avg(e.v - coalesce(s.v, 0)), 1)
		  FROM (SELECT stream_id, max(stream_version) AS v FROM eventstore.events
		         WHERE starts_with(stream_id, 'cmd-') GROUP BY stream_id) e
		  LEFT JOIN (SELECT stream_id, max(version) AS v FROM bench_state.snapshots
		              WHERE tag = 'cmd' GROUP BY stream_id) s USING (stream_id)"
}

# state_command_one CSV CLIENTS CONTENDER:SNAP ROUND: one pgbench run of
# part 3 and its CSV line.  Checked: one event appended per command.
state_command_one() {
	local BENCH_DB=$STATE_DB
	local csv=$1 clients=$2 contender=${3%%:*} snap=${3##*:} round=$4
	local tag=state-command-$contender-$snap-c$clients-r$round start before after cpu0 cpu1 res tps tx failed lat ckpt cpu
	bench_quiesce eventstore.events eventstore.snapshots bench_state.snapshots >/dev/null
	bench_log "round $round/$STATE_CMD_ROUNDS: commands, $contender, snapshots $snap, $clients client(s) (${STATE_CMD_SECONDS}s)"
	start=$(bench_log_lines)
	before=$(bench_value "SELECT count(*) FROM eventstore.events")
	cpu0=$(bench_server_cpu)
	res=$(bench_pgbench "$tag" "$clients" "$STATE_CMD_SECONDS" -f "$BENCH_ROOT/bench/state/command.$contender.pgbench" \
		-D clients="$clients" -D per_client=$((STATE_CMD_STREAMS / clients)) -D snap="$snap")
	cpu1=$(bench_server_cpu)
	after=$(bench_value "SELECT count(*) FROM eventstore.events")
	read -r tps tx failed lat <<<"$res"
	ckpt=$(bench_checkpoints_since "$start")
	state_check "$tag" "events appended" "$((after - before))" "$tx"
	state_check "$tag" "failed transactions" "$failed" 0
	state_check "$tag" "checkpoints started during the run" "$ckpt" 0
	cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$tx" 'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / n }')
	state_csv command "$contender-$([ "$snap" = true ] && echo snap || echo nosnap)" "$clients" "$round" \
		tps="$tps" transactions="$tx" failed="$failed" latency_ms="$lat" server_cpu_us="$cpu" >>"$csv"
}

# state_command_cpu_one CSV CONTENDER:SNAP ROUND: one measurement of the
# CPU per command in one backend (tps = commands per CPU second).
state_command_cpu_one() {
	local BENCH_DB=$STATE_DB
	local csv=$1 contender=${2%%:*} snap=${2##*:} round=$3 cpu wall
	STATE_RUN=$((STATE_RUN + 1))
	IFS='|' read -r cpu wall <<<"$(bench_psql -At -c "SET synchronous_commit = off" \
		-c "CALL bench_state.command_loop('$contender', $snap, $STATE_CMD_STREAMS, $STATE_CPU_ITERATIONS, $((STATE_RUN * 7)))")"
	bench_log "round $round/$STATE_CMD_ROUNDS: CPU loop, $contender, snapshots $snap: $(bench_fmt "$cpu") µs CPU, $(bench_fmt "$wall") µs wall per command"
	state_csv cpu "$contender-$([ "$snap" = true ] && echo snap || echo nosnap)" 1 "$round" \
		reps="$STATE_CPU_ITERATIONS" cpu_us="$cpu" wall_us="$wall" \
		tps="$(awk -v c="$cpu" 'BEGIN { if (c > 0) printf "%.1f", 1e6 / c }')" >>"$csv"
}

state_command_run() {
	local BENCH_DB=$STATE_DB
	local csv=$1 clients round c lengths bad
	lengths=$(state_command_lengths)
	state_csv lengths start 0 0 stream_events="${lengths% *}" tail_events="${lengths#* }" >>"$csv"
	for clients in $STATE_CLIENTS; do
		for round in $(seq 1 "$STATE_CMD_ROUNDS"); do
			# shellcheck disable=SC2086 # word list
			for c in $(bench_rotate $((round - 1)) $STATE_CMD_CASES); do
				state_command_one "$csv" "$clients" "$c" "$round"
			done
			state_command_snapshots
		done
	done
	for round in $(seq 1 "$STATE_CMD_ROUNDS"); do
		# shellcheck disable=SC2086 # word list
		for c in $(bench_rotate $((round - 1)) $STATE_CMD_CASES); do
			state_command_cpu_one "$csv" "$c" "$round"
		done
	done
	lengths=$(state_command_lengths)
	state_csv lengths end 0 0 stream_events="${lengths% *}" tail_events="${lengths#* }" >>"$csv"
	# Every account's state, loaded by the extension from its snapshot and
	# by a full replay, and from the hand-written snapshot plus the tail,
	# must agree.
	bad=$(bench_psql -At -c "
		SELECT count(*) FILTER (WHERE a.state::text IS DISTINCT FROM b.state::text OR a.version <> b.version),
		       count(*) FILTER (WHERE h.state::text IS DISTINCT FROM b.state::text)
		  FROM generate_series(0, $STATE_CMD_STREAMS - 1) AS k,
		       LATERAL eventstore.load_state('cmd-' || k, '$STATE_EVOLVE', NULL::bench_state.account) a,
		       LATERAL eventstore.load_state('cmd-' || k, '$STATE_EVOLVE', NULL::bench_state.account, use_snapshots => false) b,
		       LATERAL (SELECT s.version, s.state FROM bench_state.snapshots s
		                 WHERE s.stream_id = 'cmd-' || k AND s.tag = 'cmd' ORDER BY s.version DESC LIMIT 1) hs,
		       LATERAL (SELECT eventstore.fold(e, '$STATE_EVOLVE', hs.state ORDER BY e.stream_version) AS state
		                  FROM eventstore.read_stream('cmd-' || k, hs.version + 1) e) h0,
		       LATERAL (SELECT coalesce(h0.state, hs.state) AS state) h" | tr '|' ' ')
	state_check "command" "accounts whose state differs (extension snapshot, hand-written snapshot) from a full replay" "$bad" "0 0"
}

state_run() {
	local BENCH_DB=$STATE_DB
	local csv=$1
	echo "$STATE_CSV_HEADER" >"$csv"
	if bench_part "$STATE_PARTS" load; then state_load_run "$csv"; fi
	if bench_part "$STATE_PARTS" policy; then state_policy_run "$csv"; fi
	if bench_part "$STATE_PARTS" command; then state_command_run "$csv"; fi
}

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

# state_cell CSV COLUMN NAME=VALUE...: the median of COLUMN over the
# matching runs.
state_cell() {
	# shellcheck disable=SC2046
	bench_median $(bench_csv_values "$@")
}

# state_round_ratios CSV PART COLUMN A B CLIENTS: COLUMN(A) / COLUMN(B)
# round by round (cases A and B), one per line.
state_round_ratios() {
	awk -F, -v p="$2" -v col="$3" -v a="$4" -v b="$5" -v c="$6" '
		NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
		$2 == p && $4 == c && $3 == a { x[$5] = $idx[col] }
		$2 == p && $4 == c && $3 == b { y[$5] = $idx[col] }
		END { for (r in x) if ((r in y) && y[r] + 0 > 0) printf "%.4f\n", x[r] / y[r] }' "$1"
}

# state_ms US: microseconds as milliseconds, with sensible digits.
state_ms() {
	awk -v x="${1:-}" 'BEGIN { if (x == "") { print "n/a"; exit } x /= 1000
		if (x >= 100) printf "%.0f\n", x; else if (x >= 1) printf "%.2f\n", x; else printf "%.3f\n", x }'
}

state_report() {
	local BENCH_DB=$STATE_DB
	local csv=$1 how label clients kind c s
	echo "## state: folding streams, snapshots and their policies, commands"
	echo
	echo "$BENCH_MACHINE"
	echo
	if [ -z "$STATE_FAILED_CHECKS" ]; then
		echo "Checks (parts: $STATE_PARTS): all passed. Part 1: every load reaches the state of a full replay at its version;" \
			"part 2: one snapshot per account and multiple of N, each equal to a full fold to its version; parts 2 and 3: every run" \
			"appended one event per transaction, no failed transaction, no checkpoint; part 3: every account's state from the" \
			"extension's snapshot and from the hand-written one equals a full replay."
	else
		echo "**Checks that failed:**"
		echo
		printf '%s' "$STATE_FAILED_CHECKS"
	fi
	echo
	if bench_part "$STATE_PARTS" load; then
		local w cpu full
		echo "### 1. Loading a stream of $STATE_EVENTS events (median of $STATE_LOAD_ROUNDS round(s); time per load, inside the backend)"
		echo
		echo "A bank account (a composite type of 7 fields) folded by a PL/pgSQL evolve (bench/state/state.sql: a CASE on the event type," \
			"jsonb fields into numeric and text), over ~100-byte events (AccountOpened, then deposits and withdrawals), written in one go." \
			"Every case in every round, the order rotating; a full replay timed once per round after one untimed call, a load from a snapshot" \
			"averaged over as many calls as fit in 150 ms. CPU: the backend's time on a CPU (/proc/self/schedstat)." \
			"Hand-written = a PL/pgSQL function calling the same evolve in a FOR loop over" \
			"\`SELECT ... FROM bench_plain.events WHERE stream_id = \$1 ORDER BY stream_version\` (a plain table with the same rows, same indexes)," \
			"its snapshot a row of a plain table with the state as a composite column."
		echo
		echo "| load | events folded | ms per load | CPU ms | full replay / this | per round | extension / hand-written |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
		for how in ext_full ext_fold_agg plain_loop plpgsql_read_loop ext_read_loop \
			ext_full_sql ext_fold_agg_sql plain_loop_sql ext_read_loop_sql ext_snap_head ext_snap_100 ext_policy_500 ext_policy_999 plain_snap_head plain_snap_100; do
			local folded hand='' vs=''
			case $how in
			ext_full) label="extension: \`load_state(..., use_snapshots => false)\`: full replay"; folded=$STATE_EVENTS; hand=plain_loop ;;
			ext_fold_agg) label="extension: \`fold(e, ...) FROM read_stream(...)\` (aggregate)"; folded=$STATE_EVENTS ;;
			plain_loop) label="hand-written: PL/pgSQL loop over the plain table: full replay"; folded=$STATE_EVENTS ;;
			plpgsql_read_loop) label="hand-written: PL/pgSQL loop over the PL/pgSQL store's \`read_stream\` (bench/reads/plpgsql_read.sql)"; folded=$STATE_EVENTS ;;
			ext_read_loop) label="hand-written: PL/pgSQL loop over the extension's \`read_stream\`"; folded=$STATE_EVENTS ;;
			ext_full_sql) label="SQL evolve: \`load_state(..., use_snapshots => false)\`: full replay"; folded=$STATE_EVENTS; hand=plain_loop_sql ;;
			ext_fold_agg_sql) label="SQL evolve: \`fold(e, ...) FROM read_stream(...)\` (aggregate)"; folded=$STATE_EVENTS ;;
			plain_loop_sql) label="SQL evolve, hand-written: PL/pgSQL loop over the plain table"; folded=$STATE_EVENTS ;;
			ext_read_loop_sql) label="SQL evolve, hand-written: PL/pgSQL loop over the extension's \`read_stream\`"; folded=$STATE_EVENTS ;;
			ext_snap_head) label="extension: \`load_state\`, snapshot at the head (version $STATE_EVENTS)"; folded=0; hand=plain_snap_head ;;
			ext_snap_100) label="extension: \`load_state\`, snapshot 100 events behind the head"; folded=100; hand=plain_snap_100 ;;
			ext_policy_500) label="extension: \`load_state(to_version => $((STATE_EVENTS - 500)))\`, policy's snapshots every 1000 (typical tail)"; folded=500 ;;
			ext_policy_999) label="extension: \`load_state(to_version => $((STATE_EVENTS - 1)))\`, policy's snapshots every 1000 (longest tail)"; folded=999 ;;
			plain_snap_head) label="hand-written: snapshot at the head"; folded=0 ;;
			plain_snap_100) label="hand-written: snapshot 100 events behind, then the loop"; folded=100 ;;
			esac
			w=$(state_cell "$csv" wall_us part=load case="$how")
			cpu=$(state_cell "$csv" cpu_us part=load case="$how")
			[ -z "$hand" ] || vs=$(bench_ratio "$w" "$(state_cell "$csv" wall_us part=load case="$hand")")
			full=ext_full
			case $how in plain_snap_* | plain_loop | plain_loop_sql) full=plain_loop ;; esac
			# shellcheck disable=SC2046
			echo "| $label | $folded | $(state_ms "$w") | $(state_ms "$cpu") |" \
				"**$(awk -v a="$(state_cell "$csv" wall_us part=load case="$full")" -v b="$w" 'BEGIN { if (b > 0) printf (a / b >= 100 ? "%.0f" : "%.2f"), a / b; else print "n/a" }')** |" \
				"$(bench_range $(state_round_ratios "$csv" load wall_us "$full" "$how" 1)) |" \
				"${vs:-} |"
		done
		echo
		echo "\"full replay / this\" divides the full replay of the same machinery (extension: \`load_state\` without snapshots; hand-written: its loop)" \
			"by the row's time; \"per round\" is the same ratio within each round (adjacent runs), median (min-max);" \
			"\"extension / hand-written\" is the time ratio of the extension's load to the hand-written one doing the same (lower: the extension is faster)." \
			"The snapshot policy (every 1000 events, on this stream only) took $(bench_csv_values "$csv" snapshots part=load case=policy_build) snapshots" \
			"in $(state_ms "$(bench_csv_values "$csv" wall_us part=load case=policy_build)") ms of the worker's replay of the $STATE_EVENTS events (from \`create_snapshot_policy\` to \`wait_for_projection\`)."
		echo
		echo "**Full replay, extension / hand-written loop, per round** (time ratio, median (min-max); lower: the extension is faster)," \
			"in wall-clock time and in the backend's CPU time (steadier when the machine is busy)." \
			"The SQL evolve (\`bench_state.account_evolve_sql\`) is the PL/pgSQL one written as a single SQL expression."
		echo
		echo "| evolve | time | \`load_state\` / loop over the plain table | \`load_state\` / loop over \`read_stream\` | \`fold\` aggregate / loop over \`read_stream\` |"
		echo "|---|---|---:|---:|---:|"
		for kind in "PL/pgSQL:" "SQL:_sql"; do
			local k=${kind#*:} col
			for col in wall_us cpu_us; do
				# shellcheck disable=SC2046
				echo "| ${kind%%:*} | ${col%_us} | $(bench_range $(state_round_ratios "$csv" load "$col" "ext_full$k" "plain_loop$k" 1)) |" \
					"$(bench_range $(state_round_ratios "$csv" load "$col" "ext_full$k" "ext_read_loop$k" 1)) |" \
					"$(bench_range $(state_round_ratios "$csv" load "$col" "ext_fold_agg$k" "ext_read_loop$k" 1)) |"
			done
		done
		echo
		if [ -n "$(bench_csv_values "$csv" peak_anon_kb part=memory)" ]; then
			echo "**Memory.** The backend's private memory (RssAnon from /proc, sampled every 2 ms by bench/memory/measure.py) while it folds" \
				"a stream of 1000 and one of $STATE_EVENTS events, each in a fresh backend that first ran the same fold over 1000 events (caches, compiled functions)."
			echo
			echo "| fold | events | calls | seconds | private KB before | peak | peak − before | after |"
			echo "|---|---:|---:|---:|---:|---:|---:|---:|"
			awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
				$2 == "memory" {
					printf "| %s | %s | %s | %.2f | %s | %s | **%+d** | %s |\n", $idx["case"], $idx["version"], $idx["reps"],
						$idx["wall_us"] / 1e6, $idx["start_anon_kb"], $idx["peak_anon_kb"],
						$idx["peak_anon_kb"] - $idx["start_anon_kb"], $idx["end_anon_kb"] }' "$csv"
			echo
			echo "(ext_full = \`load_state\`; ext_fold_agg = the \`fold\` aggregate over \`read_stream\`, which materialises the stream in a tuplestore" \
				"(work_mem, then a temporary file) before the aggregate sees a row; plain_loop = the hand-written loop, whose cursor fetches 50 rows at a time;" \
				"plpgsql_read_loop = the loop over a PL/pgSQL \`RETURN QUERY\` function, which also materialises.)"
			echo
		fi
	fi
	if bench_part "$STATE_PARTS" policy; then
		echo "### 2. What a snapshot policy costs appends (median of $STATE_POLICY_ROUNDS round(s) of ${STATE_POLICY_SECONDS}s)"
		echo
		echo "pgbench -M prepared, synchronous_commit=$(bench_value 'SHOW synchronous_commit'): one event per transaction through" \
			"\`eventstore.append\` (no expected version, the append suite's payloads) to one of $STATE_POLICY_STREAMS accounts per client," \
			"'acct-<run>-<client>-<k>', so each account grows by a few hundred events in a run; with no policy, or with" \
			"\`create_snapshot_policy(..., stream_prefix => 'acct-<run>-', every => N)\` (the worker folds each account from its last snapshot" \
			"and stores the state at every multiple of N). The kinds alternate, the order rotating by round; each run after VACUUM and CHECKPOINT." \
			"CPU (every server process, from /proc) and WAL are read after the worker has caught up, so they include its whole share." \
			"Lag: \`lag_events\` and \`lag_time\` of \`projection_status\` for 'snapshot:acct', sampled every ${STATE_SAMPLE_PERIOD}s from another session;" \
			"drain: from the end of the load to the start of the worker's last batch. Every snapshot was checked against a full fold to its version."
		echo
		echo "| clients | policy | appends/s | vs none | per round | CPU µs/event | WAL bytes/event | snapshots / 1000 events | lag events p50 / p95 / max | lag ms p50 / p95 / max | drain ms | avg latency ms |"
		echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for clients in $STATE_CLIENTS; do
			local none
			none=$(state_cell "$csv" tps part=policy case=none clients="$clients")
			for kind in none $(for e in $STATE_EVERY; do echo "every$e"; done); do
				local t snaps
				t=$(state_cell "$csv" tps part=policy case="$kind" clients="$clients")
				# shellcheck disable=SC2046
				snaps=$(awk -v s="$(printf '%s+' $(bench_csv_values "$csv" snapshots part=policy case="$kind" clients="$clients"))0" \
					-v t="$(printf '%s+' $(bench_csv_values "$csv" transactions part=policy case="$kind" clients="$clients"))0" '
					function sum(x,  a, n, i, r) { n = split(x, a, "+"); for (i = 1; i <= n; i++) r += a[i]; return r }
					BEGIN { if (sum(t) > 0) printf "%.1f", sum(s) * 1000 / sum(t) }')
				if [ "$kind" = none ]; then
					echo "| $clients | none | $(bench_fmt "$t") | 1.00 | | $(bench_fmt "$(state_cell "$csv" server_cpu_us part=policy case=none clients="$clients")") |" \
						"$(bench_fmt "$(state_cell "$csv" wal_bytes part=policy case=none clients="$clients")") | | | | | $(state_cell "$csv" latency_ms part=policy case=none clients="$clients") |"
					continue
				fi
				# shellcheck disable=SC2046
				echo "| $clients | every ${kind#every} | $(bench_fmt "$t") | **$(bench_ratio "$t" "$none")** |" \
					"$(bench_range $(state_round_ratios "$csv" policy tps "$kind" none "$clients")) |" \
					"$(bench_fmt "$(state_cell "$csv" server_cpu_us part=policy case="$kind" clients="$clients")") |" \
					"$(bench_fmt "$(state_cell "$csv" wal_bytes part=policy case="$kind" clients="$clients")") | ${snaps:-n/a} |" \
					"$(bench_fmt "$(state_cell "$csv" lag_events_p50 part=policy case="$kind" clients="$clients")") /" \
					"$(bench_fmt "$(state_cell "$csv" lag_events_p95 part=policy case="$kind" clients="$clients")") /" \
					"$(bench_fmt "$(state_cell "$csv" lag_events_max part=policy case="$kind" clients="$clients")") |" \
					"$(bench_fmt "$(state_cell "$csv" lag_ms_p50 part=policy case="$kind" clients="$clients")") /" \
					"$(bench_fmt "$(state_cell "$csv" lag_ms_p95 part=policy case="$kind" clients="$clients")") /" \
					"$(bench_fmt "$(state_cell "$csv" lag_ms_max part=policy case="$kind" clients="$clients")") |" \
					"$(bench_fmt "$(state_cell "$csv" drain_ms part=policy case="$kind" clients="$clients")") |" \
					"$(state_cell "$csv" latency_ms part=policy case="$kind" clients="$clients") |"
			done
		done
		echo
		echo "(Medians over the rounds, each lag statistic a median of the runs' own; \"vs none\": ratio of the medians;" \
			"\"per round\": appends/s with the policy / without in the same round, median (min-max).)"
		echo
	fi
	if bench_part "$STATE_PARTS" command; then
		local l0 l1
		l0=$(bench_csv_values "$csv" stream_events part=lengths case=start)
		l1=$(bench_csv_values "$csv" stream_events part=lengths case=end)
		echo "### 3. \`handle_command\` against a hand-written PL/pgSQL equivalent (median of $STATE_CMD_ROUNDS round(s) of ${STATE_CMD_SECONDS}s)"
		echo
		echo "One command per transaction (deposit 2/3, withdraw 1/3, built by pgbench as jsonb) on one of $STATE_CMD_STREAMS accounts, client c taking" \
			"those = c (mod clients), so no two clients race: extension = \`eventstore.handle_command(account, decide, command, evolve, NULL::bench_state.account," \
			"use_snapshots => ...)\`; plpgsql = \`bench_state.handle_command\` (bench/state/state.sql): the newest hand-written snapshot (or none), a PL/pgSQL" \
			"loop over \`eventstore.events\` calling the same evolve, the same decide, \`eventstore.append_events(..., expected_version => loaded)\`," \
			"a loop over what was appended, all in an exception block that retries on ST001 (a subtransaction, as handle_command's attempts)." \
			"Accounts: $l0 events on average at the start, $l1 at the end (each command appends one); before each round both contenders'" \
			"snapshots are brought to every account's head, so a load with snapshots folds the few events appended since" \
			"($(bench_csv_values "$csv" tail_events part=lengths case=end) on average at the end). The four cases of a round run back to back, the order rotating."
		echo
		echo "| clients | snapshots | extension cmds/s | plpgsql cmds/s | extension / plpgsql | per round | CPU µs/cmd extension | plpgsql | avg latency ms extension | plpgsql |"
		echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
		for clients in $STATE_CLIENTS; do
			for s in nosnap snap; do
				local e p
				e=$(state_cell "$csv" tps part=command case="extension-$s" clients="$clients")
				p=$(state_cell "$csv" tps part=command case="plpgsql-$s" clients="$clients")
				# shellcheck disable=SC2046
				echo "| $clients | $([ $s = snap ] && echo yes || echo no) | $(bench_fmt "$e") | $(bench_fmt "$p") | **$(bench_ratio "$e" "$p")** |" \
					"$(bench_range $(state_round_ratios "$csv" command tps "extension-$s" "plpgsql-$s" "$clients")) |" \
					"$(bench_fmt "$(state_cell "$csv" server_cpu_us part=command case="extension-$s" clients="$clients")") |" \
					"$(bench_fmt "$(state_cell "$csv" server_cpu_us part=command case="plpgsql-$s" clients="$clients")") |" \
					"$(state_cell "$csv" latency_ms part=command case="extension-$s" clients="$clients") |" \
					"$(state_cell "$csv" latency_ms part=command case="plpgsql-$s" clients="$clients") |"
			done
		done
		echo
		echo "With snapshots / without, per round (median (min-max)):"
		for clients in $STATE_CLIENTS; do
			# shellcheck disable=SC2046
			echo "$clients client(s): extension $(bench_range $(state_round_ratios "$csv" command tps extension-snap extension-nosnap "$clients")), plpgsql $(bench_range $(state_round_ratios "$csv" command tps plpgsql-snap plpgsql-nosnap "$clients"))."
		done
		echo
		echo "**CPU per command in one backend** (bench_state.command_loop: $STATE_CPU_ITERATIONS commands in a PL/pgSQL loop, each committed on its own" \
			"with synchronous_commit = off, the backend's time on a CPU from /proc/self/schedstat; median of $STATE_CMD_ROUNDS round(s)):" \
			"the cost of the work itself, which the durable rates above hide behind the WAL flush."
		echo
		echo "| snapshots | extension µs CPU/cmd | plpgsql µs CPU/cmd | extension / plpgsql (CPU; lower: the extension is cheaper) | per round |"
		echo "|---|---:|---:|---:|---:|"
		for s in nosnap snap; do
			local e p
			e=$(state_cell "$csv" cpu_us part=cpu case="extension-$s")
			p=$(state_cell "$csv" cpu_us part=cpu case="plpgsql-$s")
			# shellcheck disable=SC2046
			echo "| $([ $s = snap ] && echo yes || echo no) | $e | $p | **$(bench_ratio "$e" "$p")** |" \
				"$(bench_range $(state_round_ratios "$csv" cpu cpu_us "extension-$s" "plpgsql-$s" 1)) |"
		done
		echo
	fi
}
