#!/usr/bin/env bash
# scripts/postgres.sh VERSION: prepares PostgreSQL of major version VERSION
# in a per-user cache and prints the path of its pg_config, for
# `PG_CONFIG=$(bash scripts/postgres.sh 18) bash scripts/test.sh`.
#
# A prepared version is reused: the cache holds a marker written only after
# a complete install, so an interrupted build is thrown away and redone.
# Everything but the final path goes to stderr (the build's own output to
# build.log in the cache).
#
# Where the cache is: $ES_PG_CACHE if set, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/eventstore, except for root, whose home is
# not readable by the "postgres" user the server then runs as:
# /var/cache/eventstore.  Each version is in a directory pg<VERSION> there.
#
# How each version is obtained:
#   18  the source package postgresql-18 of Debian unstable, downloaded with
#       apt-get from a private apt state (its own sources list, lists and
#       cache in a temporary directory: the system's apt configuration is
#       never changed), checked by apt against Debian's signed index, and
#       built from the upstream tarball (the .orig.tar; Debian's packaging
#       patches are not applied) with the TAP tests' Perl modules, psql,
#       pg_regress, pg_isolation_regress and contrib.
#   15.18  Debian 12's binary packages of that minor release
#       (postgresql-15, -client-15, -server-dev-15 = 15.18-0+deb12u1), fetched
#       with apt-get download from the system's own sources and unpacked
#       (Debian's PostgreSQL finds its files relative to its programs).  The
#       oldest 15 the tests run on, and the old side of the pg_upgrade test
#       to 18: 15.20 stamps every column with an attribute option,
#       pg_attver, that 18.6 rejects, so no cluster of 15.20 can be
#       upgraded to 18.6 with pg_upgrade (a PostgreSQL matter, not the
#       extension's).
set -euo pipefail

usage() {
	echo "usage: $0 VERSION   (18, 17, 15.18)" >&2
	exit 2
}
[ $# = 1 ] || usage
version=$1

say() { echo "postgres.sh: $*" >&2; }

if [ -n "${ES_PG_CACHE:-}" ]; then
	cache_root=$ES_PG_CACHE
elif [ "$(id -u)" = 0 ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
	cache_root=/var/cache/eventstore
else
	cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/eventstore
fi
prefix=$cache_root/pg$version
marker=$prefix/.complete

if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi

# the download and the build tree, removed at exit
work=
trap '[ -z "$work" ] || rm -rf "$work"' EXIT

# es_pg_deps PACKAGE...: install the Debian packages of the build that are
# missing (from the system's own apt sources, i.e. Debian 12's).
es_pg_deps() {
	local missing= p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	say "installing Debian packages:$missing"
	$SUDO apt-get update -qq >&2
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
}

# complete: the cache holds a finished install of this major version.
complete() {
	[ -f "$marker" ] && [ -x "$prefix/bin/pg_config" ] &&
		case $("$prefix/bin/pg_config" --version 2>/dev/null) in
		"PostgreSQL $version".* | "PostgreSQL $version "*) true ;;
		*) false ;;
		esac
}

# fetch_debian_source SOURCE SUITE DIR: download the source package SOURCE
# of Debian's SUITE into DIR with a private apt state.
fetch_debian_source() {
	local src=$1 suite=$2 dir=$3 apt
	apt=$dir/apt
	mkdir -p "$apt"/etc/sources.list.d "$apt"/etc/preferences.d \
		"$apt"/state/lists/partial "$apt"/cache/archives/partial
	echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
		>"$apt"/etc/sources.list
	local opts=(
		-o Dir::Etc::sourcelist="$apt"/etc/sources.list
		-o Dir::Etc::sourceparts="$apt"/etc/sources.list.d
		-o Dir::Etc::preferencesparts="$apt"/etc/preferences.d
		-o Dir::State="$apt"/state
		-o Dir::Cache="$apt"/cache
		-o APT::Sandbox::User="$(id -un)"
	)
	apt-get "${opts[@]}" -qq update >&2
	(cd "$dir" && apt-get "${opts[@]}" -qq source --download-only "$src" >&2)
}

build_18() {
	local t0 t1 t2 src tarball
	es_pg_deps build-essential bison flex libreadline-dev zlib1g-dev \
		libipc-run-perl pkg-config ca-certificates
	work=$(mktemp -d "${TMPDIR:-/tmp}/eventstore-pg$version.XXXXXX")

	t0=$(date +%s)
	say "downloading the source package postgresql-$version of Debian unstable"
	fetch_debian_source "postgresql-$version" sid "$work"
	tarball=$(ls "$work"/postgresql-"$version"_*.orig.tar.* | head -n 1)
	tar -xf "$tarball" -C "$work"
	src=$(ls -d "$work"/postgresql-"$version".*/ | head -n 1)
	t1=$(date +%s)
	say "downloaded $(basename "$tarball") in $((t1 - t0)) s"

	rm -rf "$prefix"
	mkdir -p "$prefix"
	say "building $(basename "$src") into $prefix (log: $prefix/build.log)"
	if ! (
		cd "$src" &&
			./configure --prefix="$prefix" --enable-tap-tests --without-icu &&
			nice -n 10 make -j"${ES_PG_JOBS:-2}" world-bin &&
			make install-world-bin
	) >"$work/build.log" 2>&1; then
		cp "$work/build.log" "$prefix/build.log" 2>/dev/null || true
		tail -n 40 "$work/build.log" >&2
		say "build failed; see $prefix/build.log"
		exit 1
	fi
	cp "$work/build.log" "$prefix/build.log"
	t2=$(date +%s)
	say "built and installed in $((t2 - t1)) s"
	{
		echo "source: Debian unstable postgresql-$version, $(basename "$tarball")"
		echo "download_seconds: $((t1 - t0))"
		echo "build_seconds: $((t2 - t1))"
		echo "built_at: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	} >"$prefix/BUILD_INFO"
}

# build_15_18: Debian 12's packages of 15.18, unpacked into the prefix in
# their own layout; bin/ and lib/ at the top are links, so the prefix is an
# installation like the others (ES_UPGRADE_FROM takes it).
build_15_18() {
	local debver=15.18-0+deb12u1 t0 d
	work=$(mktemp -d "${TMPDIR:-/tmp}/eventstore-pg$version.XXXXXX")
	chmod go+rx "$work"
	t0=$(date +%s)
	say "downloading Debian 12's PostgreSQL $debver"
	(cd "$work" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" postgresql-15="$debver" postgresql-client-15="$debver" \
		postgresql-server-dev-15="$debver" >&2)
	rm -rf "$prefix"
	mkdir -p "$prefix"
	for d in "$work"/*.deb; do
		dpkg-deb -x "$d" "$prefix"
	done
	ln -s usr/lib/postgresql/15/bin "$prefix/bin"
	ln -s usr/lib/postgresql/15/lib "$prefix/lib"
	# every program must start here (libraries, symbols)
	"$prefix/bin/postgres" --version >&2
	"$prefix/bin/psql" --version >&2
	{
		echo "source: Debian 12 packages postgresql-15, postgresql-client-15, postgresql-server-dev-15 $debver"
		echo "download_seconds: $(($(date +%s) - t0))"
		echo "built_at: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	} >"$prefix/BUILD_INFO"
}

# Another version is added either as a function build_<VERSION> here or as
# scripts/lib/postgres-<VERSION>.sh, sourced, defining es_prepare_pg<VERSION>
# PREFIX that makes PREFIX an installation (progress on stderr, non-zero and
# no PREFIX on failure).
lib=$(dirname "$0")/lib/postgres-$version.sh
build=build_${version//./_}
if ! declare -F "$build" >/dev/null; then
	if [ -f "$lib" ]; then
		# shellcheck source=/dev/null
		. "$lib"
		eval "$build() { es_prepare_pg$version \"\$prefix\"; }"
	else
		say "PostgreSQL $version is not supported by this script"
		usage
	fi
fi

mkdir -p "$cache_root"
chmod go+rx "$cache_root" 2>/dev/null || true
# One preparation at a time per cache.
exec 9>"$cache_root/.pg$version.lock"
flock 9
if complete; then
	say "reusing $prefix"
else
	"$build"
	# readable by the unprivileged user the server runs as
	chmod -R go+rX "$prefix"
	touch "$marker"
fi
echo "$prefix/bin/pg_config"
