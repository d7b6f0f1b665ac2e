#!/usr/bin/env bash
# Build Citus from its source release and install it into a PostgreSQL, for
# the distributed tests (test/t/016_citus.pl).  Users install Citus from its
# own packages instead (README, "Distributing a store with Citus").
#
#   bash scripts/citus.sh TARBALL            # the system's PostgreSQL 15
#   PG_CONFIG=... bash scripts/citus.sh TARBALL
#
# TARBALL is a release archive such as ../shared/deps/citus-13.2.2.tar.gz.
# Nothing is done when that Citus is already installed into that
# PostgreSQL.  The build happens in a temporary directory; only
# `make install` writes outside it (with sudo when not root and the
# PostgreSQL is not the user's own).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

tarball=${1:?usage: scripts/citus.sh CITUS_SOURCE_TARBALL}
[ -f "$tarball" ] || { echo "citus: $tarball: no such file" >&2; exit 1; }
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")
# citus-13.2.2.tar.gz -> 13.2.2
version=$(basename "$tarball" | sed -n 's/^citus-\([0-9][0-9.]*[0-9]\)\.tar\.gz$/\1/p')
[ -n "$version" ] || { echo "citus: cannot tell the version from $(basename "$tarball")" >&2; exit 1; }

pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
stamp="$sharedir/extension/citus.eventstore-build"
if [ -f "$pkglibdir/citus.so" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version $(sha256sum "$tarball" | cut -d' ' -f1)" ]; then
	echo "citus: $version is installed in $pkglibdir"
	exit 0
fi

# Citus's build dependencies from Debian (without libcurl: it only sends
# Citus's anonymous statistics, which a test cluster must not)
ES_PACKAGES="build-essential libpq-dev liblz4-dev libzstd-dev libkrb5-dev flex bison autoconf"
if [ "$PG_MAJOR" = "$ES_SYSTEM_PG_MAJOR" ]; then
	ES_PACKAGES="$ES_PACKAGES postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR"
fi
es_install_deps

t0=$(date +%s)
build=$(mktemp -d "${TMPDIR:-/tmp}/citus-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
tar -xzf "$tarball" -C "$build"
src=$(find "$build" -mindepth 1 -maxdepth 1 -type d | head -n 1)

# PostgreSQL 15.20 exports have_createdb_privilege() from
# commands/dbcommands.h, while Citus 13.2 defines a static helper of that
# name for 15 (16 and later always had the function): the build stops at
# "static declaration follows non-static declaration".  Give Citus's helper
# its own name where the server declares one.
compat="$src/src/include/pg_version_compat.h"
if [ "$PG_MAJOR" = 15 ] && grep -q 'have_createdb_privilege' "$("$PG_CONFIG" --includedir-server)/commands/dbcommands.h" &&
	grep -q 'have_createdb_privilege' "$compat"; then
	sed -i 's/\bhave_createdb_privilege\b/citus_have_createdb_privilege/g' "$compat"
	grep -rl '\bhave_createdb_privilege\b' "$src/src" --include='*.c' |
		xargs -r sed -i 's/\bhave_createdb_privilege\b/citus_have_createdb_privilege/g'
fi

echo "== building Citus $version for $("$PG_CONFIG" --version)"
# Citus includes libpq-fe.h; a copied PostgreSQL's include directory may
# not have it, Debian's libpq-dev (above) does
cppflags=
if [ ! -f "$("$PG_CONFIG" --includedir)/libpq-fe.h" ] && [ -f /usr/include/postgresql/libpq-fe.h ]; then
	cppflags=-I/usr/include/postgresql
fi
(cd "$src" && ./configure PG_CONFIG="$PG_CONFIG" CPPFLAGS="$cppflags" --without-libcurl >/dev/null &&
	make -s -j"$(nproc)" >/dev/null 2>"$build/make.err") ||
	{ tail -n 40 "$build/make.err" >&2; exit 1; }
if [ -w "$pkglibdir" ] && [ -w "$sharedir/extension" ]; then
	make -s -C "$src" install >/dev/null
	echo "$version $(sha256sum "$tarball" | cut -d' ' -f1)" >"$stamp"
else
	$SUDO make -s -C "$src" install >/dev/null
	echo "$version $(sha256sum "$tarball" | cut -d' ' -f1)" | $SUDO tee "$stamp" >/dev/null
fi
echo "citus: $version installed in $pkglibdir ($(($(date +%s) - t0)) s)"
