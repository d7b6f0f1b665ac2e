#!/usr/bin/env bash
# PNG charts from the CSVs of bench/run.sh, with gnuplot:
#
#   bench/results/append.png  append rates per contender and workload (suite append)
#   bench/results/scale.png   append rate and read_stream latency vs events stored (suite scale)
#   bench/results/reads.png   read rates per contender and workload (suite reads)
#   bench/results/hot.png     successes and conflicts per contender (suite hot)
#
# Each chart is drawn when its CSV exists; every value is the median over
# the rounds, as in the suites' tables.  Needs gnuplot (Debian package
# gnuplot-nox); when it is missing the script installs it with apt-get (as
# root, or with sudo).
#
#   bash bench/plot.sh                 # from bench/results
#   BENCH_RESULTS=DIR bash bench/plot.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}

if ! command -v gnuplot >/dev/null; then
	if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
	echo "== installing gnuplot-nox (apt-get)" >&2
	$SUDO apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gnuplot-nox >/dev/null ||
		{ echo "bench/plot.sh needs gnuplot: apt-get install gnuplot-nox" >&2; exit 1; }
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
made=()

# medians CSV KEYCOLS VALUECOL [FILTER]: "key1|key2|...<TAB>median" for each
# distinct key (columns named in the header, comma-separated), in order of
# first appearance; FILTER is "column=value" (optional).
medians() {
	awk -F, -v keys="$2" -v val="$3" -v filter="${4:-}" '
		NR == 1 {
			for (i = 1; i <= NF; i++) col[$i] = i
			nk = split(keys, k, ",")
			if (filter != "") { split(filter, fl, "="); fc = col[fl[1]]; fv = fl[2] }
			next
		}
		fc && $fc != fv { next }
		$col[val] == "" { next }
		{
			key = $col[k[1]]
			for (i = 2; i <= nk; i++) key = key "|" $col[k[i]]
			if (!(key in n)) order[++m] = key
			x[key, ++n[key]] = $col[val]
		}
		END {
			for (j = 1; j <= m; j++) {
				key = order[j]; c = n[key]
				for (a = 1; a <= c; a++) v[a] = x[key, a] + 0
				for (a = 2; a <= c; a++) for (b = a; b > 1 && v[b - 1] > v[b]; b--) { t = v[b]; v[b] = v[b - 1]; v[b - 1] = t }
				printf "%s\t%s\n", key, (c % 2) ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
			}
		}' "$1"
}

# table MEDIANS SERIES...: from "category|series<TAB>value" lines, a
# whitespace-separated table: header "category SERIES...", one row per
# category (in order of first appearance), "NaN" where a value is missing.
table() {
	local in=$1
	shift
	awk -F'\t' -v series="$*" '
		BEGIN { ns = split(series, s, " ") }
		{
			p = index($1, "|"); cat = substr($1, 1, p - 1); ser = substr($1, p + 1)
			if (!(cat in seen)) { seen[cat] = 1; cats[++nc] = cat }
			v[cat, ser] = $2
		}
		END {
			printf "category"; for (i = 1; i <= ns; i++) printf " %s", s[i]; printf "\n"
			for (j = 1; j <= nc; j++) {
				printf "\"%s\"", cats[j]
				for (i = 1; i <= ns; i++) printf " %s", ((cats[j], s[i]) in v) ? v[cats[j], s[i]] : "NaN"
				printf "\n"
			}
		}' "$in"
}

# bars DATA OUT TITLE YLABEL: a clustered bar chart of a table() file, one
# colour per series, the value over each bar.
bars() {
	local data=$1 out=$2 title=$3 ylabel=$4 k
	k=$(($(head -1 "$data" | wc -w) - 1))
	gnuplot <<GP
set terminal pngcairo size 1100,650 font "Sans,11"
set output "$out"
set title "$title"
set ylabel "$ylabel"
set style fill solid 0.85 border -1
set key top left
set grid ytics
set yrange [0:*]
set offsets 0.5, 0.5, graph 0.08, 0
set format y "%.0f"
set xtics scale 0
set key autotitle columnhead
k = $k
bw = 1.0 / (k + 1)
x(i) = \$0 + (i - 2 - (k - 1) / 2.0) * bw
plot "$data" using 0:(1/0):xtic(1) notitle, \
     for [i=2:k+1] "$data" using (x(i)):i:(bw) with boxes title columnheader(i), \
     for [i=2:k+1] "$data" using (x(i)):i:(sprintf("%.0f", column(i))) \
         with labels offset 0,0.6 font ",9" notitle
GP
	made+=("$out")
}

# append.png: rows/s per workload x clients, one bar per contender.
if [ -f "$RESULTS/append.csv" ]; then
	medians "$RESULTS/append.csv" workload,clients,contender rows_per_s |
		awk -F'\t' '{ split($1, k, "|"); printf "%s, %s client%s|%s\t%s\n", k[1], k[2], (k[2] == 1 ? "" : "s"), k[3], $2 }' >"$TMP/append.m"
	table "$TMP/append.m" plain plpgsql extension >"$TMP/append.dat"
	bars "$TMP/append.dat" "$RESULTS/append.png" \
		"Suite append: events appended per second (median over the rounds)" "events/s"
fi

# reads.png: rows/s per workload x clients, one bar per contender.
if [ -f "$RESULTS/reads.csv" ]; then
	medians "$RESULTS/reads.csv" workload,clients,contender rows_per_s |
		awk -F'\t' '{ split($1, k, "|"); printf "%s, %s client%s|%s\t%s\n", k[1], k[2], (k[2] == 1 ? "" : "s"), k[3], $2 }' >"$TMP/reads.m"
	table "$TMP/reads.m" plain plpgsql extension >"$TMP/reads.dat"
	bars "$TMP/reads.dat" "$RESULTS/reads.png" \
		"Suite reads: events read per second (median over the rounds)" "events/s"
fi

# hot.png: successes/s and conflicts/s per contender in the hot workload.
if [ -f "$RESULTS/hot.csv" ]; then
	{
		medians "$RESULTS/hot.csv" contender successes_per_s workload=hot | sed 's/\t/|successes\/s\t/'
		medians "$RESULTS/hot.csv" contender conflicts_per_s workload=hot | sed 's/\t/|conflicts\/s\t/'
	} >"$TMP/hot.m"
	table "$TMP/hot.m" successes/s conflicts/s >"$TMP/hot.dat"
	bars "$TMP/hot.dat" "$RESULTS/hot.png" \
		"Suite hot: $(awk -F, 'NR == 2 { print $5 " clients on " $6 " streams" }' "$RESULTS/hot.csv"), exact expected versions (median over the rounds)" "transactions/s"
fi

# scale.png: the append rate and the read_stream latency at each scale point
# (events stored; the points are evenly spaced, labelled with their size).
if [ -f "$RESULTS/scale.csv" ]; then
	medians "$RESULTS/scale.csv" scale,contender tps kind=append >"$TMP/rate"
	medians "$RESULTS/scale.csv" scale,contender latency_ms kind=read >"$TMP/lat"
	awk -F'\t' '
		function label(p) {
			if (p >= 1e6) return sprintf("%g M", p / 1e6)
			if (p >= 1e3) return sprintf("%g k", p / 1e3)
			return p
		}
		{ split($1, k, "|"); if (!(k[1] in seen)) { seen[k[1]] = 1; order[++n] = k[1] } }
		FILENAME ~ /rate$/ { r[k[1], k[2]] = $2; next }
		{ l[k[1], k[2]] = $2 }
		END {
			print "point extension_rate plain_rate extension_ms plain_ms"
			for (i = 1; i <= n; i++) {
				p = order[i]
				printf "\"%s\" %s %s %s %s\n", label(p), ((p, "extension") in r) ? r[p, "extension"] : "NaN",
					((p, "plain") in r) ? r[p, "plain"] : "NaN", ((p, "extension") in l) ? l[p, "extension"] : "NaN",
					((p, "plain") in l) ? l[p, "plain"] : "NaN"
			}
		}' "$TMP/rate" "$TMP/lat" >"$TMP/scale.dat"
	clients=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "clients") c = i; next } $3 == "append" { print $c; exit }' "$RESULTS/scale.csv")
	gnuplot <<GP
set terminal pngcairo size 1000,900 font "Sans,11"
set output "$RESULTS/scale.png"
set multiplot layout 2,1 title "Suite scale: as the store fills (median over the rounds)"
set key autotitle columnhead
set grid
set key outside bottom center horizontal
set xlabel "events stored before the runs (scale point)"
set offsets 0.3, 0.3, graph 0.15, 0
set yrange [0:*]
set title "Single-event appends, $clients clients"
set ylabel "appends/s"
plot "$TMP/scale.dat" using 0:2:xtic(1) with linespoints lw 2 pt 7 title "extension (eventstore.append)", \
     "" using 0:3 with linespoints lw 2 pt 5 title "plain INSERT", \
     "" using 0:(\$2 >= \$3 ? \$2 : 1/0):(sprintf("%.0f", \$2)) with labels offset 0,1 notitle, \
     "" using 0:(\$2 < \$3 ? \$2 : 1/0):(sprintf("%.0f", \$2)) with labels offset 0,-1 notitle, \
     "" using 0:(\$3 > \$2 ? \$3 : 1/0):(sprintf("%.0f", \$3)) with labels offset 0,1 notitle, \
     "" using 0:(\$3 <= \$2 ? \$3 : 1/0):(sprintf("%.0f", \$3)) with labels offset 0,-1 notitle
set title "Reading a whole 10-event stream, 1 client"
set ylabel "latency (ms)"
plot "$TMP/scale.dat" using 0:4:xtic(1) with linespoints lw 2 pt 7 title "read\\\\_stream", \
     "" using 0:5 with linespoints lw 2 pt 5 title "plain index scan", \
     "" using 0:(\$4 >= \$5 ? \$4 : 1/0):(sprintf("%.3f", \$4)) with labels offset 0,1 notitle, \
     "" using 0:(\$4 < \$5 ? \$4 : 1/0):(sprintf("%.3f", \$4)) with labels offset 0,-1 notitle, \
     "" using 0:(\$5 > \$4 ? \$5 : 1/0):(sprintf("%.3f", \$5)) with labels offset 0,1 notitle, \
     "" using 0:(\$5 <= \$4 ? \$5 : 1/0):(sprintf("%.3f", \$5)) with labels offset 0,-1 notitle
unset multiplot
GP
	made+=("$RESULTS/scale.png")
fi

if [ ${#made[@]} = 0 ]; then
	echo "no CSV in $RESULTS to plot (run bench/run.sh first)" >&2
	exit 1
fi
printf 'wrote %s\n' "${made[@]}"
