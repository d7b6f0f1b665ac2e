# Shared by scripts/demo.sh, scripts/test.sh and bench/run.sh: dependencies,
# build and install, and running PostgreSQL as an unprivileged user.
# PostgreSQL refuses to run as root; when we are root, the server (and
# everything that starts one) runs as the "postgres" system user.

# The system PostgreSQL by default: the major version this Debian release
# packages (Debian 12: 15, Debian 13: 17), installed by es_install_deps if
# it is not there yet.  Another installation is chosen with PG_CONFIG, its
# pg_config, or PGBIN, the directory of its programs; everything then builds,
# installs and runs from there.  It may be another copy of a supported
# version (a relocated one, a source build) or another supported major
# version, e.g. PG_CONFIG=$(bash scripts/postgres.sh 18).
ES_SUPPORTED_PG_MAJORS="15 17 18"
es_system_pg_major() {
	local id= version_id= major=
	if [ -r /etc/os-release ]; then
		id=$(. /etc/os-release && echo "${ID:-}")
		version_id=$(. /etc/os-release && echo "${VERSION_ID:-}")
	fi
	case "$id:$version_id" in
	debian:12) major=15 ;;
	debian:13) major=17 ;;
	*) # another release: what its "postgresql" package depends on, if apt knows
		major=$(apt-cache depends postgresql 2>/dev/null |
			sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1) || major= ;;
	esac
	echo "${major:-15}"
}
ES_SYSTEM_PG_MAJOR=$(es_system_pg_major)
if [ -n "${PG_CONFIG:-}" ]; then
	PG_BINDIR=$("$PG_CONFIG" --bindir) ||
		{ echo "PG_CONFIG=$PG_CONFIG: not a working pg_config" >&2; exit 1; }
elif [ -n "${PGBIN:-}" ]; then
	PG_BINDIR=$PGBIN
else
	PG_BINDIR=/usr/lib/postgresql/$ES_SYSTEM_PG_MAJOR/bin
fi
PG_CONFIG=${PG_CONFIG:-$PG_BINDIR/pg_config}
export PG_CONFIG
# "PostgreSQL 18.1", "PostgreSQL 15.18 (Debian 15.18-0+deb12u1)", "PostgreSQL
# 18beta1"; nothing when it is not there (yet)
PG_MAJOR=
if [ -x "$PG_CONFIG" ] || command -v "$PG_CONFIG" >/dev/null 2>&1; then
	PG_MAJOR=$("$PG_CONFIG" --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p') || PG_MAJOR=
fi
# the system's, not installed yet: es_install_deps installs it
if [ -z "$PG_MAJOR" ] && [ "$PG_BINDIR" = "/usr/lib/postgresql/$ES_SYSTEM_PG_MAJOR/bin" ]; then
	PG_MAJOR=$ES_SYSTEM_PG_MAJOR
fi
case " $ES_SUPPORTED_PG_MAJORS " in
*" ${PG_MAJOR:-none} "*) ;;
*) echo "$PG_CONFIG is not the pg_config of a supported PostgreSQL ($ES_SUPPORTED_PG_MAJORS; set PG_CONFIG or PGBIN)" >&2; exit 1 ;;
esac

if [ "$(id -u)" = 0 ]; then
	SUDO=
	ES_RUN_AS=postgres
else
	SUDO=sudo
	ES_RUN_AS=
fi

# Debian packages needed to build, install and test.
# Debian 12 packages only the system's major version; the others come with
# their own client, headers and test tools (scripts/postgres.sh).
ES_PACKAGES="build-essential libipc-run-perl python3-psycopg2 pgbouncer"
if [ "$PG_MAJOR" = "$ES_SYSTEM_PG_MAJOR" ]; then
	ES_PACKAGES="$ES_PACKAGES postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-client-$PG_MAJOR"
fi

es_install_deps() {
	local missing=
	for p in $ES_PACKAGES ${ES_EXTRA_PACKAGES:-}; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "== installing Debian packages:$missing"
		$SUDO apt-get update -qq
		# (through env: sudo drops the variables of the environment)
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
	fi
}

es_build_install() {
	echo "== building and installing eventstore"
	# make cannot tell objects built against another PostgreSQL: a tree
	# built for one version and then tested on another is built afresh
	local built_for= want
	want="$PG_CONFIG $("$PG_CONFIG" --version)"
	[ -f .pg_config_built ] && built_for=$(cat .pg_config_built)
	if [ "$built_for" != "$want" ]; then
		make -s clean PG_CONFIG="$PG_CONFIG"
		echo "$want" >.pg_config_built
	fi
	make -s PG_CONFIG="$PG_CONFIG"
	# a PostgreSQL in the user's own cache needs no sudo
	if [ -w "$("$PG_CONFIG" --pkglibdir)" ] && [ -w "$("$PG_CONFIG" --sharedir)/extension" ]; then
		make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
	else
		$SUDO make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
	fi
}

# es_control_version CONTROL_FILE: its default_version
es_control_version() {
	sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$1"
}

# es_check_installed: for ES_INSTALLED=1, where the suite tests an
# eventstore installed by other means (the Debian package): it must be
# installed in $PG_CONFIG's PostgreSQL, and be this tree's version.
es_check_installed() {
	local ctl lib have want owner
	ctl="$("$PG_CONFIG" --sharedir)/extension/eventstore.control"
	lib="$("$PG_CONFIG" --pkglibdir)/eventstore.so"
	if [ ! -f "$ctl" ] || [ ! -f "$lib" ]; then
		echo "ES_INSTALLED=1: eventstore is not installed in the PostgreSQL of $PG_CONFIG ($ctl, $lib)" >&2
		exit 1
	fi
	have=$(es_control_version "$ctl")
	want=$(es_control_version eventstore.control)
	if [ "$have" != "$want" ]; then
		echo "ES_INSTALLED=1: the installed eventstore is $have, this tree tests $want" >&2
		exit 1
	fi
	owner=$(dpkg-query -S "$lib" 2>/dev/null | cut -d: -f1) || owner=
	echo "== testing the installed eventstore $have (${owner:-not from a Debian package}): nothing is built or installed"
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
