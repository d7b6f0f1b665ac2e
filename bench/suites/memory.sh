# Suite "memory": peak memory of one backend for big appends and big reads.
# Each measurement is one statement in a fresh backend, run by
# bench/memory/measure.py, which samples /proc/<backend pid>/status while the
# statement runs: RssAnon (the backend's private memory: palloc, malloc, the
# stack), VmHWM (the kernel's high-water mark of the whole RSS, which also
# counts every shared-buffer page the backend touched: RssShmem) and the
# temporary files the statement wrote (log_temp_files).  Sourced by
# bench/run.sh, which calls memory_setup, memory_run and memory_report.
#
#   - append_events of a batch of BENCH_MEMORY_BATCHES events (10000 100000)
#     that is already jsonb (stored in a table, passed as a subquery), for the
#     extension, the PL/pgSQL store and a plain INSERT ... SELECT from
#     jsonb_array_elements;
#   - the same 100000-event batch as a JSON *text* parameter: the server's own
#     jsonb_in alone (SELECT jsonb_array_length($1::jsonb)), then the
#     extension's call with it, so that what is the parser's and what is the
#     extension's can be told apart;
#   - read_stream of streams of BENCH_MEMORY_STREAMS events (100000 1000000):
#     count(*) over it, and every row fetched to the client; the plain index
#     scan fetching the longest one;
#   - three calls in one backend (the 100000-event append, the longest
#     count): a leak would raise the peak.
#
# Runs in a database of its own (MEMORY_DB); the functions that talk to the
# server declare "local BENCH_DB=$MEMORY_DB".  See bench/README.md, suite
# "memory".

MEMORY_DB=memory
MEMORY_QUICK=$BENCH_IS_QUICK
MEMORY_PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
MEMORY_BATCHES=${BENCH_MEMORY_BATCHES:-10000 100000}
MEMORY_STREAMS=${BENCH_MEMORY_STREAMS:-${MEMORY_QUICK:+100000 300000}}
MEMORY_STREAMS=${MEMORY_STREAMS:-100000 1000000}
MEMORY_COLS='global_position, stream_id, stream_version, event_id, event_type, data, metadata, created_at'

"$MEMORY_PYTHON" -c 'import ctypes; ctypes.CDLL("libpq.so.5")' 2>/dev/null ||
	{ echo "suite memory needs $MEMORY_PYTHON and libpq.so.5 (Debian: libpq5; or set BENCH_PYTHON)" >&2; exit 1; }

memory_setup() {
	local BENCH_DB=$MEMORY_DB n total=0 start
	bench_log "memory: creating database $MEMORY_DB: batches of $MEMORY_BATCHES events, streams of $MEMORY_STREAMS events"
	bench_create_db "$MEMORY_DB" \
		-f "$BENCH_ROOT/bench/plain.sql" \
		-f "$BENCH_ROOT/bench/plpgsql_store.sql" \
		-c "CREATE SCHEMA bench_memory" \
		-c "CREATE TABLE bench_memory.batches (n int PRIMARY KEY, b jsonb NOT NULL)"
	# The batches, as the append suite's events: {"type", "data", "metadata"}.
	for n in $MEMORY_BATCHES; do
		bench_psql -v data="$BENCH_DATA" -v metadata="$BENCH_METADATA" <<SQL
INSERT INTO bench_memory.batches
SELECT $n, jsonb_agg(jsonb_build_object('type', 'MoneyDeposited', 'data', :'data'::jsonb,
                                        'metadata', :'metadata'::jsonb))
  FROM generate_series(1, $n);
SQL
	done
	# The streams to read, written straight into the table (as its owner;
	# bench only): stream 'mem-read-N' holds N events.
	for n in $MEMORY_STREAMS; do
		bench_psql -v data="$BENCH_DATA" -v metadata="$BENCH_METADATA" <<SQL
INSERT INTO eventstore.events
    (global_position, stream_version, created_at, event_id, stream_id, event_type, data, metadata)
SELECT $total + v, v, now(), gen_random_uuid(), 'mem-read-$n', 'MoneyDeposited',
       :'data'::jsonb, :'metadata'::jsonb
  FROM generate_series(1, $n) AS v;
SQL
		total=$((total + n))
	done
	bench_psql -c "SELECT setval('eventstore.global_position_seq', $total)" >/dev/null
	bench_quiesce
}

# memory_one CSV NAME CONTENDER INPUT SQL [measure.py options]: one
# measurement in a fresh backend; the temporary files it wrote are summed
# from the server log (log_temp_files = 0 in that backend).
memory_one() {
	local csv=$1 name=$2 contender=$3 input=$4 sql=$5 start line temp
	shift 5
	bench_log "memory: $name"
	start=$(bench_log_lines)
	line=$("$MEMORY_PYTHON" "$BENCH_ROOT/bench/memory/measure.py" --dsn "$(bench_dsn "$MEMORY_DB")" \
		--label "$name" --sql "$sql" --setup "SET log_temp_files = 0" "$@")
	sleep 0.2 # the log line of the last temporary file
	temp=$(tail -n +"$((start + 1))" "$BENCH_WORK/server.log" |
		awk '/temporary file: path/ { for (i = 1; i <= NF; i++) if ($i == "size") s += $(i + 1) } END { print s + 0 }')
	echo "memory,$contender,$input,$line,$temp" >>"$csv"
}

memory_run() {
	local BENCH_DB=$MEMORY_DB
	local csv=$1 n big=${MEMORY_BATCHES##* } long=${MEMORY_STREAMS##* }
	echo "suite,contender,input,measurement,result,rows,seconds,param_bytes,start_rss_kb,start_anon_kb,start_shmem_kb,peak_anon_kb,peak_rss_kb,vmhwm_kb,end_anon_kb,end_shmem_kb,samples,temp_bytes" >"$csv"
	memory_one "$csv" idle none 0 "SELECT 1"

	# The server's JSON parser alone, then the extension's call, with the
	# batch as a text parameter.
	memory_one "$csv" "parse-text-$big" server "$big" 'SELECT jsonb_array_length($1::jsonb)' \
		--param-sql "SELECT b::text FROM bench_memory.batches WHERE n = $big"
	memory_one "$csv" "append-text-$big" extension "$big" 'SELECT * FROM eventstore.append_events($1, $2::jsonb)' \
		--param "mem-append-text-$big" --param-sql "SELECT b::text FROM bench_memory.batches WHERE n = $big"

	# The batch already jsonb.
	for n in $MEMORY_BATCHES; do
		memory_one "$csv" "append-jsonb-$n" extension "$n" \
			"SELECT * FROM eventstore.append_events('mem-append-jsonb-$n', (SELECT b FROM bench_memory.batches WHERE n = $n))"
	done
	# No leak per call: three calls in one backend peak as high as one.
	memory_one "$csv" "append-jsonb-$big-x3" extension "$big" \
		"SELECT * FROM eventstore.append_events('mem-append-jsonb-$big-x3', (SELECT b FROM bench_memory.batches WHERE n = $big))" \
		--repeat 3
	memory_one "$csv" "append-jsonb-$big" plpgsql "$big" \
		"SELECT * FROM bench_plpgsql.append_events('mem-append-jsonb-$big', (SELECT b FROM bench_memory.batches WHERE n = $big))"
	memory_one "$csv" "append-jsonb-$big" plain "$big" \
		"INSERT INTO bench_plain.events (stream_version, stream_id, event_type, data, metadata)
		 SELECT i, 'mem-append-jsonb-$big', e->>'type', e->'data', e->'metadata'
		   FROM jsonb_array_elements((SELECT b FROM bench_memory.batches WHERE n = $big)) WITH ORDINALITY AS a(e, i)"

	# Reading.
	for n in $MEMORY_STREAMS; do
		memory_one "$csv" "read-count-$n" extension "$n" "SELECT count(*) FROM eventstore.read_stream('mem-read-$n')"
	done
	for n in $MEMORY_STREAMS; do
		memory_one "$csv" "read-fetch-$n" extension "$n" "SELECT * FROM eventstore.read_stream('mem-read-$n')"
	done
	memory_one "$csv" "read-count-$long-x3" extension "$long" "SELECT count(*) FROM eventstore.read_stream('mem-read-$long')" \
		--repeat 3
	memory_one "$csv" "read-fetch-$long" plain "$long" \
		"SELECT $MEMORY_COLS FROM eventstore.events WHERE stream_id = 'mem-read-$long' ORDER BY stream_version"
}

memory_report() {
	local BENCH_DB=$MEMORY_DB
	local csv=$1
	echo "## memory: peak memory of one backend (one measurement each, from a fresh backend)"
	echo
	echo "$BENCH_MACHINE"
	echo
	echo "work_mem=$(bench_value 'SHOW work_mem'); events of ~100-byte data and ~70-byte metadata." \
		"RssAnon is the backend's private memory (sampled every 2 ms: the peak is a lower bound of the true one);" \
		"VmHWM is the kernel's exact peak of the whole RSS, including the shared buffers the backend touched (RssShmem), which are" \
		"shared, counted once for the whole server and bounded by shared_buffers. \"after\" = RssAnon once the statement is over" \
		"(memory glibc keeps for the process). Temp = temporary files written (tuplestores spilling past work_mem)."
	echo
	echo "| measurement | contender | statement | input | result rows | s | RssAnon start MB | RssAnon peak MB | RssAnon peak - start MB | RssAnon after MB | VmHWM MB | RssShmem end MB | temp MB |"
	echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	awk -F, -v cols="$MEMORY_COLS" '
		function mb(kb) { return sprintf("%.1f", kb / 1024) }
		NR == 1 { for (i = 1; i <= NF; i++) f[$i] = i; next }
		{
			m = $f["measurement"]; c = $f["contender"]
			if (m == "idle") what = "SELECT 1 (a fresh backend)"
			else if (m ~ /^parse-text/) what = "SELECT jsonb_array_length($1::jsonb), $1 = the batch as JSON text (" mb($f["param_bytes"] / 1024) " MB)"
			else if (m ~ /^append-text/) what = "append_events(stream, $2::jsonb), $2 = the same JSON text"
			else if (m ~ /^append-jsonb/ && c == "extension") what = "append_events(stream, (SELECT b FROM batches))"
			else if (m ~ /^append-jsonb/ && c == "plpgsql") what = "bench_plpgsql.append_events(stream, (SELECT b FROM batches))"
			else if (m ~ /^append-jsonb/) what = "INSERT ... SELECT FROM jsonb_array_elements((SELECT b FROM batches))"
			else if (m ~ /^read-count/) what = "SELECT count(*) FROM read_stream(stream)"
			else if (m ~ /^read-fetch/ && c == "extension") what = "SELECT * FROM read_stream(stream), all rows to the client"
			else what = "SELECT the event columns WHERE stream_id = ... ORDER BY stream_version, all rows to the client"
			if (m ~ /-x3$/) what = what ", 3 calls in one backend"
			printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m, c, what, $f["input"], $f["rows"],
				$f["seconds"], mb($f["start_anon_kb"]), mb($f["peak_anon_kb"]), mb($f["peak_anon_kb"] - $f["start_anon_kb"]),
				mb($f["end_anon_kb"]), mb($f["vmhwm_kb"]), mb($f["end_shmem_kb"]), mb($f["temp_bytes"] / 1024)
		}' "$csv"
	echo
	# The parser's part and the extension's part of the text-parameter call;
	# private memory of reads at two stream lengths.
	awk -F, '
		NR == 1 { for (i = 1; i <= NF; i++) f[$i] = i; next }
		{ peak[$f["measurement"] "/" $f["contender"]] = ($f["peak_anon_kb"] - $f["start_anon_kb"]) / 1024; input[$f["measurement"] "/" $f["contender"]] = $f["input"] }
		END {
			for (k in peak) {
				if (k ~ /^parse-text/) parse = peak[k]
				if (k ~ /^append-text/) text = peak[k]
				if (k ~ /-x3\//) continue
				if (k ~ /^read-count/ && (minr == "" || input[k] + 0 < input[minr] + 0)) minr = k
				if (k ~ /^read-count/ && (maxr == "" || input[k] + 0 > input[maxr] + 0)) maxr = k
			}
			if (parse != "" && text != "")
				printf "- Text parameter: the server parsing the JSON (jsonb_in) takes %.1f MB of private memory; the whole append_events call with it %.1f MB, so %.1f MB more than the parser.\n", parse, text, text - parse
			if (minr != "" && maxr != "" && minr != maxr)
				printf "- read_stream, count(*): %.1f MB of private memory for %s events, %.1f MB for %s events.\n", peak[minr], input[minr], peak[maxr], input[maxr]
		}' "$csv"
}
