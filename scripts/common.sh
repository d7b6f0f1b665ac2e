# Shared by scripts/demo.sh, scripts/test.sh and bench/run.sh: dependencies,
# build and install, and running PostgreSQL as an unprivileged user.
# PostgreSQL refuses to run as root; when we are root, the server (and
# everything that starts one) runs as the "postgres" system user.

PG_MAJOR=15
# The system PostgreSQL by default.  Another installation of PostgreSQL 15
# (a private or relocated copy, a source build) is chosen with PG_CONFIG, its
# pg_config, or PGBIN, the directory of its programs; everything then builds,
# installs and runs from there.
if [ -n "${PG_CONFIG:-}" ]; then
	PG_BINDIR=$("$PG_CONFIG" --bindir) ||
		{ echo "PG_CONFIG=$PG_CONFIG: not a working pg_config" >&2; exit 1; }
elif [ -n "${PGBIN:-}" ]; then
	PG_BINDIR=$PGBIN
else
	PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
fi
PG_CONFIG=${PG_CONFIG:-$PG_BINDIR/pg_config}
export PG_CONFIG
case $("$PG_CONFIG" --version 2>/dev/null) in
"PostgreSQL $PG_MAJOR".*) ;;
*) echo "$PG_CONFIG is not the pg_config of PostgreSQL $PG_MAJOR (set PG_CONFIG or PGBIN)" >&2; exit 1 ;;
esac

if [ "$(id -u)" = 0 ]; then
	SUDO=
	ES_RUN_AS=postgres
else
	SUDO=sudo
	ES_RUN_AS=
fi

# Debian packages needed to build, install and test.
ES_PACKAGES="build-essential postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-client-$PG_MAJOR libipc-run-perl python3-psycopg2 pgbouncer"

es_install_deps() {
	local missing=
	for p in $ES_PACKAGES ${ES_EXTRA_PACKAGES:-}; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "== installing Debian packages:$missing"
		$SUDO apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
	fi
}

es_build_install() {
	echo "== building and installing eventstore"
	make -s PG_CONFIG="$PG_CONFIG"
	$SUDO make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
}

# es_as_server_user CMD...: run CMD as the user the server runs as.
es_as_server_user() {
	if [ -n "$ES_RUN_AS" ]; then
		runuser -u "$ES_RUN_AS" -- "$@"
	else
		"$@"
	fi
}

# es_workdir: a fresh directory the server user can write to.
es_workdir() {
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/eventstore.XXXXXX")
	chmod 755 "$d"
	[ -n "$ES_RUN_AS" ] && chown "$ES_RUN_AS" "$d"
	echo "$d"
}

# es_free_port: a TCP port nobody listens on.
es_free_port() {
	local port=${1:-55432}
	while ss -ltn 2>/dev/null | grep -q ":$port "; do port=$((port + 1)); done
	echo "$port"
}
