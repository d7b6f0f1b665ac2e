#!/usr/bin/env bash
# The layering of src/: a file may call (or use a variable of) only files on
# lower floors.  The floors are written once, in the comment at the top of
# src/eventstore.h; this reads them there and checks the object files'
# symbols (nm), so a call upward -- or a circle -- fails the test suite.
# Usage: bash test/layering.sh [DIR]   (DIR: the built tree, default .)
set -euo pipefail
dir=${1:-.}
declare -A floor
while read -r n files; do
	for f in $files; do floor[$f]=$n; done
done < <(sed -n '/^ \* The files of src\//,/^ \*\//p' "$dir/src/eventstore.h" |
	sed -n 's/^ \*[[:space:]]*\([0-9]\)[[:space:]]\+\([a-z_. ]*\.c\)\([[:space:]].*\)\{0,1\}$/\1 \2/p')

status=0
declare -A defined_in
for o in "$dir"/src/*.o; do
	f=$(basename "$o" .o).c
	if [ -z "${floor[$f]:-}" ]; then
		echo "layering: src/$f has no floor in src/eventstore.h" >&2
		status=1
		continue
	fi
	while read -r sym; do defined_in[$sym]=$f; done < <(nm --defined-only -g "$o" | awk '{print $3}')
done
for o in "$dir"/src/*.o; do
	f=$(basename "$o" .o).c
	[ -n "${floor[$f]:-}" ] || continue
	while read -r sym; do
		g=${defined_in[$sym]:-}
		[ -n "$g" ] && [ "$g" != "$f" ] || continue
		if [ "${floor[$g]}" -ge "${floor[$f]}" ]; then
			echo "layering: src/$f (floor ${floor[$f]}) uses $sym of src/$g (floor ${floor[$g]})" >&2
			status=1
		fi
	done < <(nm --undefined-only "$o" | awk '{print $2}')
done
[ "$status" = 0 ] && echo "layering: ${#floor[@]} files, nothing calls upward"
exit "$status"
