# Suite "citus": appends through a Citus coordinator.  eventstore.append
# (delegated by Citus to the worker holding the stream) against a plain
# INSERT of the same rows into a distributed table of the same shape
# (bench/plain.sql, distributed by stream_id like the store), through the
# same coordinator of the same cluster, in the same run, and against the
# SQL-only way of doing the same job (bench/plpgsql_store.sql, its table
# distributed by stream_id and its functions delegated by stream as
# eventstore's are); and, for context, the first two on the single bench
# cluster.  Sourced by bench/run.sh, which calls
# citus_setup, citus_run and citus_report; not among its default suites
# (it needs Citus): bash bench/run.sh citus.
#
# The suite starts its own coordinator and BENCH_CITUS_WORKERS workers
# (bench_node_start: unix sockets in the work dir, the bench settings,
# shared_preload_libraries = 'citus,eventstore') next to the bench
# cluster, and stops them at the end of citus_run (bench_cluster_stop, on
# any exit).  Without Citus installed in that PostgreSQL it says so and
# measures nothing.
#
# Two more contenders are the extension's appends while one more client
# follows the log from its end: "ordered" in one order (eventstore.total_order
# on, read_all pages of 1000, bench/citus_follow.pgbench), "partitioned" by
# partition (read_partitions with a vector, the same 1000 a page,
# bench/citus_follow_partitions.pgbench): what the opt-in total order costs
# the appenders (its reader lifts lagging nodes' positions, briefly locking
# their sequence) beside what following the log costs anyway, and how many
# pages each reader gets.
#
# On one machine every node shares its cores and disk: this measures what
# the hop through the coordinator and the extension cost, not how appends
# scale with nodes.

CITUS_ALL_WORKLOADS="single:1 batch10:10"

# The selected workloads (BENCH_CITUS_WORKLOADS, names), as NAME:EVENTS;
# the scripts are the append suite's, bench/append/NAME.CONTENDER.pgbench.
CITUS_WORKLOADS=
for w in ${BENCH_CITUS_WORKLOADS:-single}; do
	# shellcheck disable=SC2086 # split on purpose
	m=$(printf '%s\n' $CITUS_ALL_WORKLOADS | grep "^$w:" || true)
	[ -n "$m" ] || { echo "unknown citus workload: $w (single, batch10)" >&2; exit 2; }
	CITUS_WORKLOADS="$CITUS_WORKLOADS $m"
done
CITUS_NWORKERS=${BENCH_CITUS_WORKERS:-2}
CITUS_SHARDS=${BENCH_CITUS_SHARDS:-32}
CITUS_PRELOAD=${BENCH_PRELOAD_EVENTS:-100000}
# they go into SQL text and port numbers: whole numbers only
for v in BENCH_CITUS_WORKERS:CITUS_NWORKERS BENCH_CITUS_SHARDS:CITUS_SHARDS BENCH_PRELOAD_EVENTS:CITUS_PRELOAD; do
	w=${v#*:}
	[[ ${!w} =~ ^[0-9]+$ ]] || { echo "citus: ${v%%:*} must be a whole number: ${!w}" >&2; exit 2; }
done
[ "$CITUS_NWORKERS" -ge 1 ] || { echo "citus: BENCH_CITUS_WORKERS must be at least 1" >&2; exit 2; }

# Set by citus_setup: why the suite is skipped (empty when it runs), the
# nodes' names (citus-coordinator, citus-worker1, ...) and the Citus
# version.
CITUS_SKIP=
CITUS_NODES=()
CITUS_VERSION=

# citus_installed: whether Citus is installed into the PostgreSQL benchmarked.
citus_installed() {
	[ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ] &&
		[ -f "$("$PG_CONFIG" --sharedir)/extension/citus.control" ]
}

# citus_port K: the port of node K (0 the coordinator, 1.. the workers),
# next to the bench cluster's; their sockets are in the work dir too.
citus_port() { echo $((BENCH_PORT + 1 + $1)); }

# citus_psql K ARGS...: psql against the bench database of node K.
citus_psql() {
	local k=$1
	shift
	BENCH_PORT=$(citus_port "$k") bench_psql "$@"
}

citus_setup() {
	if ! citus_installed; then
		CITUS_SKIP="Citus is not installed in this PostgreSQL ($("$PG_CONFIG" --pkglibdir));"
		CITUS_SKIP="$CITUS_SKIP PG_CONFIG=$PG_CONFIG bash scripts/citus.sh CITUS_SOURCE_TARBALL"
		CITUS_SKIP="$CITUS_SKIP (e.g. ../shared/deps/citus-13.2.2.tar.gz) installs it"
		bench_log "citus: SKIPPED: $CITUS_SKIP"
		return 0
	fi
	local k name conf
	bench_log "citus: starting a coordinator and $CITUS_NWORKERS workers (ports $(citus_port 0)-$(citus_port "$CITUS_NWORKERS"))"
	# Citus must come first in shared_preload_libraries; the nodes talk
	# over the unix sockets in the work dir, without SSL, and a
	# transaction over several nodes would need two-phase commit.
	conf="citus.node_conninfo = 'sslmode=disable'
citus.local_hostname = '$BENCH_WORK'
max_prepared_transactions = 20"
	CITUS_NODES=()
	for ((k = 0; k <= CITUS_NWORKERS; k++)); do
		name=citus-worker$k
		[ "$k" != 0 ] || name=citus-coordinator
		CITUS_NODES+=("$name")
		# a second setup starts afresh: the nodes of the first one go
		bench_node_stop "$BENCH_WORK/$name"
		rm -rf "${BENCH_WORK:?}/$name"
		bench_node_start "$BENCH_WORK/$name" "$(citus_port "$k")" "$BENCH_WORK/$name.log" \
			citus,eventstore "$conf"
		BENCH_PORT=$(citus_port "$k") bench_psql_db postgres -c "CREATE DATABASE $BENCH_DB" >/dev/null
		citus_psql "$k" -c "CREATE EXTENSION citus" >/dev/null
	done
	{
		echo "SELECT pg_catalog.citus_set_coordinator_host(:'host', $(citus_port 0));"
		for ((k = 1; k <= CITUS_NWORKERS; k++)); do
			echo "SELECT pg_catalog.citus_add_node(:'host', $(citus_port "$k"));"
		done
	} | citus_psql 0 -v host="$BENCH_WORK" >/dev/null
	CITUS_VERSION=$(citus_psql 0 -At -c "SELECT pg_catalog.citus_version()")
	bench_log "citus: $CITUS_VERSION"

	# the store and the plain table, distributed alike: by stream_id, the
	# plain table co-located with the store's shards
	citus_psql 0 -c "SET client_min_messages = warning" \
		-c "CREATE EXTENSION eventstore" \
		-c "SELECT eventstore.distribute($CITUS_SHARDS)" \
		-f "$BENCH_ROOT/bench/plain.sql" \
		-c "SELECT pg_catalog.create_distributed_table('bench_plain.events', 'stream_id',
		        colocate_with => 'eventstore.events')" >/dev/null
	# the SQL-only way: the PL/pgSQL store of the append suite, distributed
	# the way one would distribute it -- its table by stream_id (created
	# after distribute(), so with the store's keys), its functions delegated
	# to the stream's node as eventstore's are (Citus distributes the
	# position sequence it owns)
	citus_psql 0 -c "SET client_min_messages = warning" \
		-f "$BENCH_ROOT/bench/plpgsql_store.sql" \
		-c "SELECT pg_catalog.create_distributed_table('bench_plpgsql.events', 'stream_id')" \
		-c "SELECT pg_catalog.create_distributed_function(f, '\$1',
		        colocate_with => 'bench_plpgsql.events', force_delegation => true)
		      FROM unnest(ARRAY['bench_plpgsql.append(text,text,jsonb,jsonb,bigint,uuid)',
		                        'bench_plpgsql.append_events(text,jsonb,bigint)']::regprocedure[]) f" \
		>/dev/null

	# the single node for context: the bench cluster, as the append suite
	# sets it up
	if [ "${BENCH_CITUS_SINGLE:-1}" != 0 ]; then
		bench_psql -c "SET client_min_messages = warning" \
			-c "DROP EXTENSION IF EXISTS eventstore" -c "CREATE EXTENSION eventstore" \
			-c "DROP SCHEMA IF EXISTS bench_plain CASCADE" \
			-f "$BENCH_ROOT/bench/plain.sql" >/dev/null
	fi
}

# citus_reset CLUSTER CONTENDER: every run starts from the same state: the
# contender's table holding CITUS_PRELOAD events in streams 'preload-K'
# (bench_preload), its position sequence restarted.  On the single node
# that is bench_reset.  On Citus the store is dropped (CASCADE: the
# shards' triggers on the workers depend on the extension's functions) and
# distributed afresh, and every node is made to draw positions above the
# preloaded ones (align_positions); the plain table is truncated on every
# shard.  Then VACUUM (ANALYZE) and CHECKPOINT on every node of the cluster.
citus_reset() {
	local k
	if [ "$1" = single ]; then
		bench_reset "$2" "$CITUS_PRELOAD" >/dev/null
		bench_quiesce
		return
	fi
	case $2 in
	extension | ordered | partitioned)
		citus_psql 0 -c "SET client_min_messages = warning" \
			-c "DROP EXTENSION eventstore CASCADE" -c "CREATE EXTENSION eventstore" \
			-c "SELECT eventstore.distribute($CITUS_SHARDS)" >/dev/null ;;
	plain | plpgsql)
		citus_psql 0 -c "TRUNCATE $(bench_table "$2") RESTART IDENTITY" >/dev/null ;;
	esac
	local store=$2
	case $store in ordered | partitioned) store=extension ;; esac
	BENCH_PORT=$(citus_port 0) bench_preload "$(bench_table "$store")" "$(bench_sequence "$store")" \
		"$CITUS_PRELOAD" "$BENCH_DATA" "$BENCH_METADATA" >/dev/null
	[ "$store" != extension ] || citus_psql 0 -c "SELECT eventstore.align_positions()" >/dev/null
	for ((k = 0; k <= CITUS_NWORKERS; k++)); do
		BENCH_PORT=$(citus_port "$k") bench_quiesce >/dev/null
	done
}

# citus_data CLUSTER: the data directories of the servers of CLUSTER.
citus_data() {
	local n
	if [ "$1" = single ]; then
		echo "$BENCH_WORK/data"
	else
		for n in "${CITUS_NODES[@]}"; do echo "$BENCH_WORK/$n"; done
	fi
}

# citus_log DATADIR: the server log of the server of DATADIR.
citus_log() {
	if [ "$1" = "$BENCH_WORK/data" ]; then echo "$BENCH_WORK/server.log"; else echo "$1.log"; fi
}

# citus_cpu CLUSTER: CPU seconds used so far by the servers of CLUSTER:
# all of them, then the first (the coordinator, or the single node).
citus_cpu() {
	local d
	for d in $(citus_data "$1"); do bench_server_cpu "$d"; done |
		awk 'NR == 1 { first = $1 } { t += $1 } END { printf "%.2f %.2f\n", t, first }'
}

# citus_settle PORT: wait until the backends of pgbench's clients on the
# server of PORT have exited and, one second more, for the workers'
# backends serving them, so that their CPU time is in the postmasters'
# (bench_server_cpu) and not lost between two samples.
citus_settle() {
	local tries=100
	while [ "$tries" -gt 0 ]; do
		tries=$((tries - 1))
		[ "$(BENCH_PORT=$1 bench_value "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity
			WHERE application_name OPERATOR(pg_catalog.=) 'pgbench'")" = 0 ] && break
		sleep 0.1
	done
	sleep 1
}

# citus_per_event SECONDS ROWS: microseconds per row, empty without rows.
citus_per_event() { awk -v c="$1" -v r="$2" 'BEGIN { if (r > 0) printf "%.1f", c * 1e6 / r }'; }

# citus_run CSV: every workload x clients x (cluster, contender),
# BENCH_ROUNDS times, the order of the four rotating from cell to cell and
# round to round (bench_rotate).  One CSV line per run goes to CSV; the
# Citus nodes are stopped at the end.
citus_run() {
	local csv=$1 round workload name per clients run cell=0
	local -a runs order
	echo "suite,workload,events_per_tx,clients,cluster,contender,round,tps,rows_per_s,transactions,failed,latency_ms,rows_appended,unplanned_checkpoints,server_cpu_s,cpu_us_per_event,coordinator_cpu_us_per_event,reader_pages_per_s" >"$csv"
	[ -z "$CITUS_SKIP" ] || return 0
	local c
	for c in ${BENCH_CITUS_CONTENDERS:-extension plain plpgsql ordered partitioned}; do
		case $c in
		extension | plain | plpgsql | ordered | partitioned) runs+=("citus:$c") ;;
		*) echo "citus: unknown contender $c (extension, plain, plpgsql, ordered, partitioned)" >&2; exit 2 ;;
		esac
	done
	[ "${BENCH_CITUS_SINGLE:-1}" = 0 ] || runs+=(single:extension single:plain)
	local events_json
	events_json=$(bench_events_json 10)

	for round in $(seq 1 "$BENCH_ROUNDS"); do
		for workload in $CITUS_WORKLOADS; do
			name=${workload%%:*}
			per=${workload##*:}
			for clients in $BENCH_CLIENTS; do
				read -r -a order <<<"$(bench_rotate $((cell + round - 1)) "${runs[@]}")"
				cell=$((cell + 1))
				for run in "${order[@]}"; do
					local cluster=${run%%:*} contender=${run##*:}
					local store=$contender reader='' reader_pages=''
					case $store in ordered | partitioned) store=extension ;; esac
					local script=$BENCH_ROOT/bench/append/$name.$store.pgbench
					local tag=citus-$name-c$clients-$cluster-$contender-r$round
					local port=$BENCH_PORT d res tps tx failed lat rows ckpt=0 cpu_s first_s
					local -a cpu0 cpu1
					local -A start=()
					[ "$cluster" = single ] || port=$(citus_port 0)
					citus_reset "$cluster" "$contender"
					for d in $(citus_data "$cluster"); do start[$d]=$(bench_log_lines "$(citus_log "$d")"); done
					read -r -a cpu0 <<<"$(citus_cpu "$cluster")"
					bench_log "round $round/$BENCH_ROUNDS: $name, $clients client(s), $contender on $cluster (${BENCH_DURATION}s)"
					if [ "$store" != "$contender" ]; then
						# the reader starts at the end of the log
						local follow=citus_follow last
						[ "$contender" = ordered ] || follow=citus_follow_partitions
						last=$(citus_psql 0 -At -c "SELECT pg_catalog.max(global_position) FROM eventstore.events")
						reader=$BENCH_WORK/$tag-reader.out
						(BENCH_PORT=$port bench_pgbench "$tag-reader" 1 "$BENCH_DURATION" \
							-f "$BENCH_ROOT/bench/$follow.pgbench" -D "last=$last" \
							-D "vec={\"-2147483648\": $last}" >"$reader") &
					fi
					res=$(BENCH_PORT=$port bench_pgbench "$tag" "$clients" "$BENCH_DURATION" -f "$script" \
						-D v=0 -D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA" \
						-D "events=$events_json")
					if [ -n "$reader" ]; then
						wait
						read -r reader_pages _ <"$reader"
					fi
					citus_settle "$port"
					read -r -a cpu1 <<<"$(citus_cpu "$cluster")"
					read -r tps tx failed lat <<<"$res"
					for d in $(citus_data "$cluster"); do
						ckpt=$((ckpt + $(bench_checkpoints_since "${start[$d]}" "$(citus_log "$d")")))
					done
					rows=$(BENCH_PORT=$port bench_value "SELECT pg_catalog.count(*) FROM $(bench_table "$store")")
					rows=$((rows - CITUS_PRELOAD))
					if [ "$rows" != "$((tx * per))" ]; then
						bench_log "WARNING: $tag: $rows rows in the table, expected $tx x $per"
					fi
					[ "$ckpt" = 0 ] || bench_log "WARNING: $tag: $ckpt checkpoint(s) started during the run"
					[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed transactions"
					# the store's tables on the coordinator are placeholders
					# that no append may write (the extension finds the shards)
					if [ "$cluster:$store" = citus:extension ] &&
						[ "$(citus_psql 0 -At -c "SELECT pg_catalog.pg_relation_size('eventstore.events')")" != 0 ]; then
						bench_log "WARNING: $tag: the coordinator's placeholder eventstore.events was written"
					fi
					cpu_s=$(awk -v a="${cpu0[0]}" -v b="${cpu1[0]}" 'BEGIN { printf "%.2f", b - a }')
					first_s=$(awk -v a="${cpu0[1]}" -v b="${cpu1[1]}" 'BEGIN { printf "%.2f", b - a }')
					echo "citus,$name,$per,$clients,$cluster,$contender,$round,$tps,$(awk -v t="$tps" -v p="$per" 'BEGIN { printf "%.1f", t * p }'),$tx,$failed,$lat,$rows,$ckpt,$cpu_s,$(citus_per_event "$cpu_s" "$rows"),$(citus_per_event "$first_s" "$rows"),$reader_pages" >>"$csv"
				done
			done
		done
	done

	local n
	for n in "${CITUS_NODES[@]}"; do bench_node_stop "$BENCH_WORK/$n"; done
}

# citus_cell CSV WORKLOAD CLIENTS CLUSTER CONTENDER COLUMN: the median of
# COLUMN over the rounds of one cell.
citus_cell() {
	# shellcheck disable=SC2046 # one number per line
	bench_median $(bench_csv_values "$1" "$6" workload="$2" clients="$3" cluster="$4" contender="$5")
}

# citus_round_ratios CSV WORKLOAD CLIENTS: Citus extension/plain of each
# round, the two runs of a round being back to back, comma-separated: on a
# shared machine their spread says more than the median alone.
citus_round_ratios() {
	local r out=''
	for r in $(seq 1 "$BENCH_ROUNDS"); do
		out="$out${out:+, }$(bench_ratio \
			"$(bench_csv_values "$1" rows_per_s workload="$2" clients="$3" cluster=citus contender=extension round="$r")" \
			"$(bench_csv_values "$1" rows_per_s workload="$2" clients="$3" cluster=citus contender=plain round="$r")")"
	done
	echo "$out"
}

# citus_report CSV: the markdown report on stdout.
citus_report() {
	local csv=$1 workload name clients
	if [ -n "$CITUS_SKIP" ]; then
		echo "## citus: skipped"
		echo
		echo "$CITUS_SKIP."
		return 0
	fi
	local single=''
	[ "${BENCH_CITUS_SINGLE:-1}" = 0 ] || single=1

	echo "## citus: events per second through a Citus coordinator (median of $BENCH_ROUNDS round(s) of ${BENCH_DURATION}s per cell)"
	echo
	echo "$BENCH_MACHINE"
	echo
	echo "$CITUS_VERSION: a coordinator and $CITUS_NWORKERS workers on this machine (unix sockets, each server with the settings above" \
		"and shared_preload_libraries = 'citus,eventstore'); the store distributed with eventstore.distribute($CITUS_SHARDS)," \
		"the plain table (bench/plain.sql) with create_distributed_table(..., 'stream_id') co-located with it;" \
		"the SQL-only way (plpgsql): bench/plpgsql_store.sql with its table distributed by stream_id and its functions delegated by stream as eventstore's are." \
		"pgbench -M prepared against the coordinator, -j min(${BENCH_JOBS:-2}, clients), synchronous_commit=$(bench_value 'SHOW synchronous_commit');" \
		"each run starts from a table preloaded with $CITUS_PRELOAD events, after VACUUM (ANALYZE) and CHECKPOINT on every node;" \
		"streams 'stream-<client>-<random 1..1000000>', expected_version NULL; ~100-byte data, ~70-byte metadata;" \
		"events/s = tps x events per transaction; CPU = user + system time of the servers (not pgbench) per event appended, read once their backends have exited."
	[ -z "$single" ] || echo "\"single\" is the same on the bench cluster alone (no Citus), for context."
	echo
	local head="| workload | clients | Citus: extension | Citus: plain | Citus: plpgsql | Citus: extension/plain | Citus: extension/plpgsql |"
	local sep="|---|---:|---:|---:|---:|---:|---:|"
	[ -z "$single" ] || {
		head="$head single: extension | single: plain | single: extension/plain | extension, Citus/single |"
		sep="$sep---:|---:|---:|---:|"
	}
	echo "Events per second:"
	echo
	echo "$head"
	echo "$sep"
	local targets='' line
	for workload in $CITUS_WORKLOADS; do
		name=${workload%%:*}
		for clients in $BENCH_CLIENTS; do
			local ce cp cl se sp q
			ce=$(citus_cell "$csv" "$name" "$clients" citus extension rows_per_s)
			cp=$(citus_cell "$csv" "$name" "$clients" citus plain rows_per_s)
			cl=$(citus_cell "$csv" "$name" "$clients" citus plpgsql rows_per_s)
			q=$(bench_ratio "$ce" "$cp")
			line="| $name | $clients | $(bench_fmt "$ce") | $(bench_fmt "$cp") | $(bench_fmt "$cl") | $q | $(bench_ratio "$ce" "$cl") |"
			targets="$targets- $name, $clients client(s): Citus extension/plain = $q (target >= 0.90: $(awk -v q="$q" 'BEGIN { print (q != "n/a" && q >= 0.9) ? "met" : "NOT met" }'); by round: $(citus_round_ratios "$csv" "$name" "$clients"))"$'\n'
			if [ -n "$single" ]; then
				se=$(citus_cell "$csv" "$name" "$clients" single extension rows_per_s)
				sp=$(citus_cell "$csv" "$name" "$clients" single plain rows_per_s)
				line="$line $(bench_fmt "$se") | $(bench_fmt "$sp") | $(bench_ratio "$se" "$sp") | $(bench_ratio "$ce" "$se") |"
			fi
			echo "$line"
		done
	done

	# where the time goes: the servers' CPU per event, the coordinator's
	# share apart
	echo
	echo "Server CPU per event (µs, user + system of every server of the cluster; of which the coordinator):"
	echo
	head="| workload | clients | Citus: extension | of which coordinator | Citus: plain | of which coordinator | Citus: plpgsql | of which coordinator |"
	sep="|---|---:|---:|---:|---:|---:|---:|---:|"
	[ -z "$single" ] || { head="$head single: extension | single: plain |"; sep="$sep---:|---:|"; }
	echo "$head"
	echo "$sep"
	for workload in $CITUS_WORKLOADS; do
		name=${workload%%:*}
		for clients in $BENCH_CLIENTS; do
			line="| $name | $clients |"
			line="$line $(citus_cell "$csv" "$name" "$clients" citus extension cpu_us_per_event) |"
			line="$line $(citus_cell "$csv" "$name" "$clients" citus extension coordinator_cpu_us_per_event) |"
			line="$line $(citus_cell "$csv" "$name" "$clients" citus plain cpu_us_per_event) |"
			line="$line $(citus_cell "$csv" "$name" "$clients" citus plain coordinator_cpu_us_per_event) |"
			line="$line $(citus_cell "$csv" "$name" "$clients" citus plpgsql cpu_us_per_event) |"
			line="$line $(citus_cell "$csv" "$name" "$clients" citus plpgsql coordinator_cpu_us_per_event) |"
			[ -z "$single" ] ||
				line="$line $(citus_cell "$csv" "$name" "$clients" single extension cpu_us_per_event) | $(citus_cell "$csv" "$name" "$clients" single plain cpu_us_per_event) |"
			echo "$line"
		done
	done
	echo
	echo "The opt-in total order: the extension's appends while one more client follows the log from its end," \
		"in one order (eventstore.total_order = on, read_all pages of 1000, bench/citus_follow.pgbench)" \
		"or by partition (read_partitions with a vector, 1000 a page, bench/citus_follow_partitions.pgbench):"
	echo
	echo "| workload | clients | Citus: extension | with a total-order reader | with/without | its pages/s | with a partition reader | with/without | its pages/s |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	for workload in $CITUS_WORKLOADS; do
		name=${workload%%:*}
		for clients in $BENCH_CLIENTS; do
			local ce co cq
			ce=$(citus_cell "$csv" "$name" "$clients" citus extension rows_per_s)
			co=$(citus_cell "$csv" "$name" "$clients" citus ordered rows_per_s)
			cq=$(citus_cell "$csv" "$name" "$clients" citus partitioned rows_per_s)
			echo "| $name | $clients | $(bench_fmt "$ce") | $(bench_fmt "$co") | $(bench_ratio "$co" "$ce") | $(citus_cell "$csv" "$name" "$clients" citus ordered reader_pages_per_s) |" \
				"$(bench_fmt "$cq") | $(bench_ratio "$cq" "$ce") | $(citus_cell "$csv" "$name" "$clients" citus partitioned reader_pages_per_s) |"
		done
	done
	echo
	echo "Targets (reported, not asserted):"
	echo
	printf '%s' "$targets"
	echo
	echo "One machine hosts every node: the hop and the extension's overhead are measured, not scaling."
}
