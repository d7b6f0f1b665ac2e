#!/usr/bin/env bash
# Build, install, start a throwaway PostgreSQL with eventstore preloaded, run
# scripts/demo.sql against it, and remove the cluster again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

es_install_deps
es_build_install

work=$(es_workdir)
port=$(es_free_port 55432)
cleanup() {
	es_as_server_user "$PG_BINDIR/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "== starting a throwaway cluster in $work (port $port)"
es_as_server_user "$PG_BINDIR/initdb" -D "$work/data" -A trust -U postgres >/dev/null
cat >>"$work/data/postgresql.conf" <<CONF
shared_preload_libraries = 'eventstore'
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
CONF
es_as_server_user "$PG_BINDIR/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null

echo "== running scripts/demo.sql"
"$PG_BINDIR/psql" -X -h "$work" -p "$port" -U postgres -d postgres \
	-v ON_ERROR_STOP=1 -f scripts/demo.sql
echo "== the demo ran (the one error above is the conflict it shows)"
