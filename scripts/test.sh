#!/usr/bin/env bash
# The whole test suite: pg_regress, pg_isolation_regress and TAP tests, each
# on a temporary instance with eventstore preloaded.  Works as root (the
# tests then run as the "postgres" user on a copy of the tree) and as a
# normal user (who needs sudo for apt-get and make install).
#
# ES_INSTALLED=1 tests the eventstore installed in PG_CONFIG's PostgreSQL
# by other means (the Debian package: debian/tests/installcheck) instead of
# building and installing this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

es_install_deps
if [ -n "${ES_INSTALLED:-}" ]; then
	es_check_installed
else
	es_build_install
	# src/ in layers: nothing calls upward (floors in src/eventstore.h;
	# read from the objects just built, so not for an installed package)
	bash test/layering.sh
fi

if [ -n "$ES_RUN_AS" ]; then
	work=$(es_workdir)
	trap 'rm -rf "$work"' EXIT
	tar --exclude=.git -cf - . | tar -xf - -C "$work"
	chown -R "$ES_RUN_AS" "$work"
	dir=$work
else
	dir=$PWD
fi

status=0
es_as_server_user make -C "$dir" -s installcheck PG_CONFIG="$PG_CONFIG" || status=$?
if [ "$status" != 0 ]; then
	for f in "$dir"/regression.diffs "$dir"/output_iso/regression.diffs; do
		[ -f "$f" ] && { echo "== $f"; cat "$f"; }
	done
	for f in "$dir"/tmp_check/log/regress_log_*; do
		[ -f "$f" ] && { echo "== $f (last 60 lines)"; tail -n 60 "$f"; }
	done
fi
exit "$status"
