# Suite "append": write throughput of eventstore.append / append_events
# against a plain INSERT of the same rows (bench/plain.sql) and a PL/pgSQL
# store with the same semantics (bench/plpgsql_store.sql).  Sourced by
# bench/run.sh, which calls append_setup, append_run and append_report.
#
# A workload is NAME:EVENTS_PER_TRANSACTION; its pgbench scripts are
# bench/append/NAME.CONTENDER.pgbench.  To add one, add the scripts and a
# name here.

APPEND_ALL_WORKLOADS="single:1 batch10:10"
APPEND_ALL_CONTENDERS="plain plpgsql extension"

# The selected workloads (BENCH_APPEND_WORKLOADS, names), as NAME:EVENTS.
APPEND_WORKLOADS=
for w in ${BENCH_APPEND_WORKLOADS:-single batch10}; do
	# shellcheck disable=SC2086 # split on purpose
	m=$(printf '%s\n' $APPEND_ALL_WORKLOADS | grep "^$w:" || true)
	[ -n "$m" ] || { echo "unknown append workload: $w" >&2; exit 2; }
	APPEND_WORKLOADS="$APPEND_WORKLOADS $m"
done
for c in ${BENCH_CONTENDERS:-}; do
	case " $APPEND_ALL_CONTENDERS " in
	*" $c "*) ;;
	*) echo "unknown contender: $c (one of: $APPEND_ALL_CONTENDERS)" >&2; exit 2 ;;
	esac
done

append_setup() {
	bench_log "append: setting up the three contenders"
	bench_psql -c "SET client_min_messages = warning" \
		-c "DROP EXTENSION IF EXISTS eventstore" -c "CREATE EXTENSION eventstore" \
		-c "DROP SCHEMA IF EXISTS bench_plain, bench_plpgsql CASCADE" \
		-f "$BENCH_ROOT/bench/plain.sql" \
		-f "$BENCH_ROOT/bench/plpgsql_store.sql" \
		-c "ALTER DATABASE $BENCH_DB SET bench_plpgsql.notify = '${BENCH_PLPGSQL_NOTIFY:-off}'"
}

# append_reset CONTENDER: every run starts from the same state
# (bench_reset): the contender's table holding BENCH_PRELOAD_EVENTS events
# (default 100000, in streams of 4 events, ids "preload-N", which the
# workloads never touch), its position sequence restarted.  The preload
# matters: on an empty table the planner picks a sequential scan for the
# PL/pgSQL store's version lookup and keeps that generic plan while the
# table grows, and an empty index is not what an event store looks like.
append_reset() { bench_reset "$1" "${BENCH_PRELOAD_EVENTS:-100000}"; }

# append_run: every workload x clients x contender, BENCH_ROUNDS times.
# Within a cell the contenders run back to back; the order rotates from cell
# to cell and round to round so that no contender always goes first or last
# while the machine drifts.  One CSV line per run goes to $1.
append_run() {
	local csv=$1 round workload name per clients contender cell=0
	local -a contenders order
	read -r -a contenders <<<"${BENCH_CONTENDERS:-$APPEND_ALL_CONTENDERS}"
	local events_json
	events_json=$(bench_events_json 10)

	echo "suite,workload,events_per_tx,clients,contender,round,tps,rows_per_s,transactions,failed,latency_ms,rows_appended,unplanned_checkpoints" >"$csv"
	for round in $(seq 1 "$BENCH_ROUNDS"); do
		for workload in $APPEND_WORKLOADS; do
			name=${workload%%:*}
			per=${workload##*:}
			for clients in $BENCH_CLIENTS; do
				read -r -a order <<<"$(bench_rotate $((cell + round - 1)) "${contenders[@]}")"
				cell=$((cell + 1))
				for contender in "${order[@]}"; do
					local script=$BENCH_ROOT/bench/append/$name.$contender.pgbench
					local tag=append-$name-c$clients-$contender-r$round
					local start res tps tx failed lat rows ckpt
					append_reset "$contender"
					bench_quiesce
					start=$(bench_log_lines)
					bench_log "round $round/$BENCH_ROUNDS: $name, $clients client(s), $contender (${BENCH_DURATION}s)"
					res=$(bench_pgbench "$tag" "$clients" "$BENCH_DURATION" -f "$script" \
						-D v=0 -D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA" \
						-D "events=$events_json")
					read -r tps tx failed lat <<<"$res"
					ckpt=$(bench_checkpoints_since "$start")
					rows=$(bench_value "SELECT count(*) FROM $(bench_table "$contender")")
					rows=$((rows - ${BENCH_PRELOAD_EVENTS:-100000}))
					if [ "$rows" != "$((tx * per))" ]; then
						bench_log "WARNING: $tag: $rows rows in the table, expected $tx x $per"
					fi
					[ "$ckpt" = 0 ] || bench_log "WARNING: $tag: $ckpt checkpoint(s) started during the run"
					[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed transactions"
					echo "append,$name,$per,$clients,$contender,$round,$tps,$(awk -v t="$tps" -v p="$per" 'BEGIN { printf "%.1f", t * p }'),$tx,$failed,$lat,$rows,$ckpt" >>"$csv"
				done
			done
		done
	done
}

# append_cell CSV WORKLOAD CLIENTS CONTENDER FIELD: the median of FIELD
# (tps or rows_per_s) over the rounds of one cell.
append_cell() {
	local col
	case $5 in tps) col=7 ;; rows_per_s) col=8 ;; esac
	# shellcheck disable=SC2046
	bench_median $(awk -F, -v w="$2" -v c="$3" -v k="$4" -v col="$col" \
		'NR > 1 && $2 == w && $4 == c && $5 == k { print $col }' "$1")
}

# append_report CSV: the markdown report on stdout.
append_report() {
	local csv=$1 workload name clients
	local -a contenders
	read -r -a contenders <<<"${BENCH_CONTENDERS:-$APPEND_ALL_CONTENDERS}"
	local has_plain='' has_plpgsql='' has_ext=''
	for c in "${contenders[@]}"; do
		case $c in plain) has_plain=1 ;; plpgsql) has_plpgsql=1 ;; extension) has_ext=1 ;; esac
	done

	echo "## append: events per second (median of $BENCH_ROUNDS round(s) of ${BENCH_DURATION}s per cell)"
	echo
	echo "$BENCH_MACHINE"
	echo
	echo "pgbench -M prepared, -j min(${BENCH_JOBS:-2}, clients), synchronous_commit=$(bench_value 'SHOW synchronous_commit');" \
		"each run starts from a table preloaded with ${BENCH_PRELOAD_EVENTS:-100000} events, after VACUUM (ANALYZE) and CHECKPOINT;" \
		"streams 'stream-<client>-<random 1..1000000>', expected_version NULL; ~100-byte data, ~70-byte metadata;" \
		"rows/s = tps x events per transaction; bench_plpgsql.notify=${BENCH_PLPGSQL_NOTIFY:-off}."
	echo
	local head="| workload | clients |" sep="|---|---:|"
	for c in "${contenders[@]}"; do
		head="$head $c rows/s | $c tps |"
		sep="$sep---:|---:|"
	done
	[ -n "$has_ext" ] && [ -n "$has_plain" ] && { head="$head extension/plain |"; sep="$sep---:|"; }
	[ -n "$has_ext" ] && [ -n "$has_plpgsql" ] && { head="$head extension/plpgsql |"; sep="$sep---:|"; }
	# plain/plpgsql bounds what extension/plpgsql can reach: plain is the
	# physical limit.
	[ -n "$has_plain" ] && [ -n "$has_plpgsql" ] && { head="$head plain/plpgsql (ceiling) |"; sep="$sep---:|"; }
	echo "$head"
	echo "$sep"

	local targets=""
	for workload in $APPEND_WORKLOADS; do
		name=${workload%%:*}
		for clients in $BENCH_CLIENTS; do
			local line="| $name | $clients |" r_plain='' r_plpgsql='' r_ext='' q
			for c in "${contenders[@]}"; do
				local rps tps
				rps=$(append_cell "$csv" "$name" "$clients" "$c" rows_per_s)
				tps=$(append_cell "$csv" "$name" "$clients" "$c" tps)
				line="$line $(bench_fmt "$rps") | $(bench_fmt "$tps") |"
				case $c in plain) r_plain=$rps ;; plpgsql) r_plpgsql=$rps ;; extension) r_ext=$rps ;; esac
			done
			if [ -n "$has_ext" ] && [ -n "$has_plain" ]; then
				q=$(bench_ratio "$r_ext" "$r_plain")
				line="$line $q |"
				if [ "$clients" = 8 ]; then
					local want=0.90
					[ "$name" = single ] || want=0.85
					targets="$targets- $name, 8 clients: extension/plain = $q (target >= $want: $(awk -v q="$q" -v w="$want" 'BEGIN { print (q != "n/a" && q >= w) ? "met" : "NOT met" }'))"$'\n'
				fi
			fi
			if [ -n "$has_ext" ] && [ -n "$has_plpgsql" ]; then
				q=$(bench_ratio "$r_ext" "$r_plpgsql")
				line="$line $q |"
				targets="$targets- $name, $clients client(s): extension/plpgsql = $q (target >= 3: $(awk -v q="$q" 'BEGIN { print (q != "n/a" && q >= 3) ? "met" : "NOT met" }'))"$'\n'
			fi
			if [ -n "$has_plain" ] && [ -n "$has_plpgsql" ]; then
				line="$line $(bench_ratio "$r_plain" "$r_plpgsql") |"
			fi
			echo "$line"
		done
	done
	if [ -n "$targets" ]; then
		echo
		echo "Targets (reported, not asserted):"
		echo
		printf '%s' "$targets"
	fi
}
