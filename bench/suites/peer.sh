# Suite "peer": eventstore against a real SQL-only event store users would
# pick instead, Emmett's PostgreSQL event store (npm
# @event-driven-io/emmett-postgresql), and a plain INSERT of the same rows,
# all three driven from one Node.js client stack (node-postgres) by
# bench/peer/driver.mjs.  Sourced by bench/run.sh, which calls peer_setup,
# peer_run and peer_report.  Everything lives in its own database
# (bench_peer), dropped at the end of the run.
#
# If npm cannot install bench/peer's packages (registry unreachable, Node
# too old), Emmett is skipped with a message and the other two are still
# measured: through the Node driver when node-postgres can be loaded anyway
# (Debian's node-pg), otherwise through pgbench (bench/peer/pgbench/), and
# the report says which client measured them.
#
# See bench/README.md, section "Suite peer".

PEER_DIR=$BENCH_ROOT/bench/peer
PEER_DB=bench_peer
PEER_ALL_WORKLOADS="single:1 batch10:10"
PEER_ALL_CONTENDERS="emmett extension plain"

PEER_WORKLOADS=
for w in ${BENCH_PEER_WORKLOADS:-single batch10}; do
	# shellcheck disable=SC2086 # split on purpose
	m=$(printf '%s\n' $PEER_ALL_WORKLOADS | grep "^$w:" || true)
	[ -n "$m" ] || { echo "unknown peer workload: $w (one of: single batch10)" >&2; exit 2; }
	PEER_WORKLOADS="$PEER_WORKLOADS $m"
done
PEER_CONTENDERS=${BENCH_PEER_CONTENDERS:-$PEER_ALL_CONTENDERS}
for c in $PEER_CONTENDERS; do
	case " $PEER_ALL_CONTENDERS " in
	*" $c "*) ;;
	*) echo "unknown peer contender: $c (one of: $PEER_ALL_CONTENDERS)" >&2; exit 2 ;;
	esac
done

# Set by peer_setup:
PEER_CLIENT=        # node | pgbench: what measures extension and plain
PEER_NODE_PATH=     # NODE_PATH for the driver ('' or Debian's /usr/share/nodejs)
PEER_PG=            # node-postgres version
PEER_EMMETT=        # Emmett version, empty when skipped
PEER_EMMETT_SKIP=   # why Emmett is skipped

peer_psql() { bench_psql_db "$PEER_DB" "$@"; }
peer_value() { peer_psql -At -c "$1"; }

# peer_node ARGS...: the driver, connected to the bench cluster's socket.
peer_node() {
	(
		cd "$PEER_DIR" || exit 1
		export PEER_HOST="$BENCH_WORK" PEER_PORT="$BENCH_PORT" PEER_USER=postgres PEER_DB="$PEER_DB"
		if [ -n "$PEER_NODE_PATH" ]; then export NODE_PATH="$PEER_NODE_PATH"; fi
		exec timeout $((${BENCH_DURATION:-15} + 300)) node driver.mjs "$@"
	)
}

# peer_probe: "pg=VERSION emmett=VERSION|none (why)" from the driver.
peer_probe() { { peer_node probe 2>&1 || true; } | tail -n 1; }

# peer_install: make bench/peer's node_modules match package-lock.json
# (npm ci, only when `npm ls` finds the installed tree incomplete or the
# driver cannot load Emmett), then decide who measures what.
peer_install() {
	local probe log=$BENCH_WORK/peer-npm.log major npm_failed=''
	PEER_CLIENT=pgbench
	if ! command -v node >/dev/null 2>&1; then
		PEER_EMMETT_SKIP="node is not installed (Debian: apt-get install nodejs npm)"
		return 0
	fi
	major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
	probe=$(peer_probe)
	if ! (cd "$PEER_DIR" && npm ls --all --omit=dev >/dev/null 2>&1) ||
		[[ $probe != *"emmett="[0-9]* ]]; then
		if ! command -v npm >/dev/null 2>&1; then
			npm_failed="npm is not installed"
			bench_log "peer: WARNING: npm is not installed, cannot install bench/peer's packages"
		else
			bench_log "peer: npm ci in bench/peer (the versions of package-lock.json)"
			if ! (cd "$PEER_DIR" && timeout 600 npm ci --no-audit --no-fund --loglevel=error \
				--fetch-retries=1 --fetch-timeout=60000) >"$log" 2>&1; then
				npm_failed="npm ci failed (its output is above)"
				bench_log "peer: WARNING: npm ci failed (registry unreachable? node $(node --version)); its output:"
				tail -n 15 "$log" >&2
			fi
		fi
		probe=$(peer_probe)
	fi
	case $probe in
	*"emmett="[0-9]*)
		PEER_EMMETT=${probe##*emmett=}
		PEER_EMMETT=${PEER_EMMETT%% *} ;;
	*)
		PEER_EMMETT_SKIP="${npm_failed:+$npm_failed; }node $(node --version) cannot load @event-driven-io/emmett-postgresql: ${probe#*emmett=none }"
		[ "$major" -ge 20 ] || PEER_EMMETT_SKIP="$PEER_EMMETT_SKIP; Node.js >= 20 is what bench/peer is tested with" ;;
	esac
	if [[ $probe != *"pg=none"* ]]; then
		PEER_CLIENT=node
	elif [ -d /usr/share/nodejs/pg ] && [[ $(PEER_NODE_PATH=/usr/share/nodejs peer_probe) != *"pg=none"* ]]; then
		PEER_CLIENT=node
		PEER_NODE_PATH=/usr/share/nodejs
		probe=$(peer_probe)
		bench_log "peer: using Debian's node-pg from /usr/share/nodejs"
	fi
	if [ "$PEER_CLIENT" = node ]; then
		PEER_PG=${probe#pg=}
		PEER_PG=${PEER_PG%% *}
	fi
}

peer_setup() {
	peer_install
	if [ -n "$PEER_EMMETT_SKIP" ]; then
		bench_log "peer: WARNING: Emmett is SKIPPED: $PEER_EMMETT_SKIP"
	fi
	if [ "$PEER_CLIENT" = pgbench ]; then
		bench_log "peer: WARNING: node-postgres cannot be loaded: extension and plain are measured with pgbench instead of the Node.js driver"
	fi
	bench_log "peer: database $PEER_DB: extension, plain table${PEER_EMMETT:+, the Emmett schema (created through its API)}; client: $PEER_CLIENT${PEER_PG:+ (node-postgres $PEER_PG)}"
	bench_psql_db postgres -c "SET client_min_messages = warning" \
		-c "DROP DATABASE IF EXISTS $PEER_DB" -c "CREATE DATABASE $PEER_DB"
	# The plain contender: as bench/plain.sql, in a schema of its own.
	peer_psql <<'SQL'
CREATE EXTENSION eventstore;
CREATE SCHEMA bench_peer_plain;
CREATE TABLE bench_peer_plain.events (LIKE eventstore.events INCLUDING ALL);
CREATE SEQUENCE bench_peer_plain.global_position_seq AS bigint MINVALUE 1 NO CYCLE CACHE 1
    OWNED BY bench_peer_plain.events.global_position;
ALTER TABLE bench_peer_plain.events
    ALTER COLUMN global_position SET DEFAULT nextval('bench_peer_plain.global_position_seq'),
    ALTER COLUMN event_id        SET DEFAULT gen_random_uuid(),
    ALTER COLUMN created_at      SET DEFAULT now();
SQL
	if [ -n "$PEER_EMMETT" ]; then
		local log=$BENCH_WORK/peer-emmett-migrate.log
		if ! peer_node migrate >"$log" 2>&1; then
			PEER_EMMETT_SKIP="its schema migration failed: $(tail -n 3 "$log" | tr '\n' ' ')"
			PEER_EMMETT=
			bench_log "peer: WARNING: Emmett is SKIPPED: $PEER_EMMETT_SKIP"
		fi
	fi
}

peer_table() {
	case $1 in
	emmett) echo emt_messages ;;
	extension) echo eventstore.events ;;
	plain) echo bench_peer_plain.events ;;
	esac
}

# peer_reset CONTENDER: as the append suite: the contender's tables hold
# BENCH_PRELOAD_EVENTS events (streams "preload-N" of 4 events, never touched
# by the workloads) and its position sequence restarts; then VACUUM
# (ANALYZE) and CHECKPOINT.  Emmett's store is two tables: the events
# (emt_messages) and one row per stream with its version (emt_streams).
peer_reset() {
	local n=${BENCH_PRELOAD_EVENTS:-100000}
	case $1 in
	emmett)
		peer_psql -c "TRUNCATE emt_streams, emt_messages" \
			-c "ALTER SEQUENCE emt_global_message_position RESTART" ;;
	extension)
		peer_psql -c "DROP EXTENSION eventstore" -c "CREATE EXTENSION eventstore" ;;
	plain)
		peer_psql -c "TRUNCATE bench_peer_plain.events RESTART IDENTITY" ;;
	esac
	if [ "$n" -gt 0 ]; then
		if [ "$1" = emmett ]; then
			# The rows emt_append_to_stream would write (partition and
			# is_archived from their defaults).
			peer_psql -v data="$BENCH_DATA" -v metadata="$BENCH_METADATA" <<SQL
INSERT INTO emt_messages
    (stream_id, stream_position, message_data, message_metadata, message_schema_version,
     message_type, message_kind, message_id, transaction_id)
SELECT 'preload-' || s, v, :'data'::jsonb, :'metadata'::jsonb, '1',
       'MoneyDeposited', 'E', gen_random_uuid()::text, pg_current_xact_id()
  FROM generate_series(1, ($n + 3) / 4) AS s, generate_series(1, 4) AS v
 ORDER BY s, v
 LIMIT $n;
INSERT INTO emt_streams (stream_id, stream_position, stream_type, stream_metadata)
SELECT stream_id, max(stream_position), 'preload', '{}' FROM emt_messages GROUP BY stream_id;
SQL
		else
			local table
			table=$(peer_table "$1")
			peer_psql -v data="$BENCH_DATA" -v metadata="$BENCH_METADATA" <<SQL
INSERT INTO $table
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT nextval(pg_get_serial_sequence('$table', 'global_position')), v, now(), gen_random_uuid(),
       'preload-' || s, 'MoneyDeposited', :'data'::jsonb, :'metadata'::jsonb
  FROM generate_series(1, ($n + 3) / 4) AS s, generate_series(1, 4) AS v
 ORDER BY s, v
 LIMIT $n;
SQL
		fi
	fi
	peer_psql -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
}

# peer_measure TAG CONTENDER WORKLOAD EVENTS CLIENTS: one run; prints
# "tps transactions failed latency_ms warmup_transactions client".
peer_measure() {
	local tag=$1 contender=$2 name=$3 per=$4 clients=$5 jobs=${BENCH_JOBS:-2} res
	local log=$BENCH_WORK/$tag.log
	if [ "$contender" = emmett ] || [ "$PEER_CLIENT" = node ]; then
		if ! res=$(peer_node run "$contender" "$per" "$clients" "$jobs" "$BENCH_DURATION" \
			"$BENCH_DATA" "$BENCH_METADATA" 2>"$log"); then
			bench_log "peer driver failed ($tag); its output:"
			tail -n 30 "$log" >&2
			return 1
		fi
		[ -s "$log" ] && sed 's/^/   /' "$log" >&2
		echo "$res node"
	else
		local events_json
		events_json=$(bench_events_json 10)
		res=$(BENCH_DB=$PEER_DB bench_pgbench "$tag" "$clients" "$BENCH_DURATION" \
			-f "$PEER_DIR/pgbench/$name.$contender.pgbench" \
			-D v=0 -D "data=$BENCH_DATA" -D "metadata=$BENCH_METADATA" -D "events=$events_json") || return 1
		local tps tx failed lat
		read -r tps tx failed lat <<<"$res"
		echo "$tps $tx $failed $lat 0 pgbench"
	fi
}

# peer_run CSV: every workload x clients x contender, BENCH_ROUNDS times,
# the order of the contenders rotating from cell to cell and round to round.
peer_run() {
	local csv=$1 round workload name per clients contender cell=0
	local -a contenders order
	contenders=()
	for c in $PEER_CONTENDERS; do
		[ "$c" = emmett ] && [ -z "$PEER_EMMETT" ] && continue
		contenders+=("$c")
	done
	echo "suite,workload,events_per_tx,clients,contender,client,round,tps,events_per_s,transactions,failed,latency_ms,rows_appended,unplanned_checkpoints" >"$csv"
	for round in $(seq 1 "$BENCH_ROUNDS"); do
		for workload in $PEER_WORKLOADS; do
			name=${workload%%:*}
			per=${workload##*:}
			for clients in $BENCH_CLIENTS; do
				read -r -a order <<<"$(bench_rotate $((cell + round - 1)) "${contenders[@]}")"
				cell=$((cell + 1))
				for contender in "${order[@]}"; do
					local tag=peer-$name-c$clients-$contender-r$round
					local start res tps tx failed lat warm client rows ckpt
					peer_reset "$contender"
					start=$(bench_log_lines)
					bench_log "round $round/$BENCH_ROUNDS: peer $name, $clients client(s), $contender (${BENCH_DURATION}s)"
					res=$(peer_measure "$tag" "$contender" "$name" "$per" "$clients")
					read -r tps tx failed lat warm client <<<"$res"
					ckpt=$(bench_checkpoints_since "$start")
					rows=$(peer_value "SELECT count(*) FROM $(peer_table "$contender")")
					rows=$((rows - ${BENCH_PRELOAD_EVENTS:-100000} - warm * per))
					if [ "$rows" != "$((tx * per))" ]; then
						bench_log "WARNING: $tag: $rows rows appended, expected $tx x $per"
					fi
					[ "$ckpt" = 0 ] || bench_log "WARNING: $tag: $ckpt checkpoint(s) started during the run"
					[ "$failed" = 0 ] || bench_log "WARNING: $tag: $failed failed appends"
					echo "peer,$name,$per,$clients,$contender,$client,$round,$tps,$(awk -v t="$tps" -v p="$per" 'BEGIN { printf "%.1f", t * p }'),$tx,$failed,$lat,$rows,$ckpt" >>"$csv"
				done
			done
		done
	done
	if [ -z "${BENCH_KEEP:-}" ]; then
		bench_psql_db postgres -c "DROP DATABASE $PEER_DB" >/dev/null 2>&1 ||
			bench_psql_db postgres -c "DROP DATABASE $PEER_DB WITH (FORCE)" >/dev/null
	fi
}

# peer_cell CSV WORKLOAD CLIENTS CONTENDER COLUMN: the median over the rounds.
peer_cell() {
	# shellcheck disable=SC2046
	bench_median $(awk -F, -v w="$2" -v c="$3" -v k="$4" -v col="$5" \
		'NR > 1 && $2 == w && $4 == c && $5 == k { print $col }' "$1")
}

# peer_report CSV: the markdown report on stdout.
peer_report() {
	local csv=$1 workload name clients c
	local -a contenders
	read -r -a contenders <<<"$PEER_CONTENDERS"
	local has_e='' has_x='' has_p=''
	for c in "${contenders[@]}"; do
		case $c in emmett) has_e=1 ;; extension) has_x=1 ;; plain) has_p=1 ;; esac
	done
	local stack
	if [ "$PEER_CLIENT" = node ]; then
		stack="Node.js $(node --version) with node-postgres $PEER_PG${PEER_NODE_PATH:+ (from Debian, node-pg)} for every contender"
	else
		stack="extension and plain measured by pgbench -M prepared, not by the Node.js driver (node-postgres could not be loaded)"
	fi

	echo "## peer: events per second, Emmett vs eventstore vs plain INSERT (median of $BENCH_ROUNDS round(s) of ${BENCH_DURATION}s per cell)"
	echo
	echo "$BENCH_MACHINE"
	echo
	echo "Client: $stack; min(${BENCH_JOBS:-2}, clients) threads, one connection per client;" \
		"emmett = @event-driven-io/emmett-postgresql ${PEER_EMMETT:-(skipped)}, appendToStream through its own pool;" \
		"extension = eventstore.append / append_events as prepared statements; plain = INSERT of the same rows (the physical limit)." \
		"synchronous_commit=$(bench_value 'SHOW synchronous_commit'); each run starts from tables preloaded with ${BENCH_PRELOAD_EVENTS:-100000} events, after VACUUM (ANALYZE) and CHECKPOINT;" \
		"streams 'stream-<client>-<random 1..1000000>', no expected version; ~100-byte data, ~70-byte metadata; events/s = tps x events per append."
	if [ -n "$has_e" ] && [ -n "$PEER_EMMETT_SKIP" ]; then
		echo
		echo "**Emmett was skipped**: $PEER_EMMETT_SKIP."
	fi
	echo
	local head="| workload | clients |" sep="|---|---:|"
	for c in "${contenders[@]}"; do
		head="$head $c events/s | $c tps |"
		sep="$sep---:|---:|"
	done
	[ -n "$has_x" ] && [ -n "$has_e" ] && { head="$head extension/emmett |"; sep="$sep---:|"; }
	[ -n "$has_x" ] && [ -n "$has_p" ] && { head="$head extension/plain |"; sep="$sep---:|"; }
	[ -n "$has_p" ] && [ -n "$has_e" ] && { head="$head plain/emmett (ceiling) |"; sep="$sep---:|"; }
	echo "$head"
	echo "$sep"
	for workload in $PEER_WORKLOADS; do
		name=${workload%%:*}
		for clients in $BENCH_CLIENTS; do
			local line="| $name | $clients |" r_e='' r_x='' r_p=''
			for c in "${contenders[@]}"; do
				local eps tps
				if [ "$c" = emmett ] && [ -z "$PEER_EMMETT" ]; then
					line="$line skipped | skipped |"
					continue
				fi
				eps=$(peer_cell "$csv" "$name" "$clients" "$c" 9)
				tps=$(peer_cell "$csv" "$name" "$clients" "$c" 8)
				line="$line $(bench_fmt "$eps") | $(bench_fmt "$tps") |"
				case $c in emmett) r_e=$eps ;; extension) r_x=$eps ;; plain) r_p=$eps ;; esac
			done
			[ -n "$has_x" ] && [ -n "$has_e" ] && line="$line $(bench_ratio "$r_x" "$r_e") |"
			[ -n "$has_x" ] && [ -n "$has_p" ] && line="$line $(bench_ratio "$r_x" "$r_p") |"
			[ -n "$has_p" ] && [ -n "$has_e" ] && line="$line $(bench_ratio "$r_p" "$r_e") |"
			echo "$line"
		done
	done
	if [ -n "$has_e" ] && [ -n "$PEER_EMMETT" ]; then
		echo
		echo "Per append, Emmett $PEER_EMMETT sends three statements on one pooled connection, in the simple query protocol:" \
			"BEGIN; SELECT * FROM emt_append_to_stream(ARRAY[...]::text[], ARRAY[...]::jsonb[], ...) with every value inlined as a literal" \
			"(a PL/pgSQL function: read the stream's row in emt_streams, INSERT it or UPDATE its position, INSERT the events into the" \
			"partitioned emt_messages); COMMIT. No advisory lock, no NOTIFY. See bench/README.md."
	fi
}
