#!/usr/bin/env bash
# Build the Debian packages postgresql-NN-eventstore from debian/ with
# Debian's tooling for PostgreSQL extensions (pg_buildext): one package per
# PostgreSQL version of debian/pgversions whose development files are
# installed (the system's by default; with apt.postgresql.org's packages,
# install postgresql-server-dev-NN for each version wanted first).
#
#   bash scripts/package.sh            packages of HEAD into dist/
#
# dist/ gets the source package too (eventstore_VERSION.orig.tar.gz from
# git archive, eventstore_VERSION-N.debian.tar.xz, eventstore_VERSION-N.dsc:
# dpkg-source -x unpacks it, any Debian build tool builds it) and the
# .changes and .buildinfo of the build.
#
# It packages the committed tree (HEAD, exported with git archive, built in
# a temporary directory), so that no build product or uncommitted change of
# the working tree slips in.  Installs the build dependencies (as root, or
# with sudo).  Works as root and as a normal user.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

ES_EXTRA_PACKAGES="git debhelper dpkg-dev postgresql-server-dev-all"
es_install_deps

git rev-parse --verify -q HEAD >/dev/null || { echo "package.sh: not a git checkout" >&2; exit 1; }
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
	echo "package.sh: uncommitted changes are not packaged (HEAD is)" >&2

version=$(es_control_version eventstore.control)
debian_version=$(dpkg-parsechangelog -l debian/changelog -S Version)
if [ "${debian_version%-*}" != "$version" ]; then
	echo "package.sh: debian/changelog is at $debian_version, eventstore.control at $version: add a debian/changelog entry" >&2
	exit 1
fi

build=$(mktemp -d "${TMPDIR:-/tmp}/eventstore-deb.XXXXXX")
trap 'rm -rf "$build"' EXIT
# the upstream tarball of the source package, which is also the tree built
git archive --format=tar.gz --prefix="eventstore-$version/" -o "$build/eventstore_$version.orig.tar.gz" HEAD
tar -xzf "$build/eventstore_$version.orig.tar.gz" -C "$build"

# every version of debian/pgversions whose server development files are
# installed here, not only the distribution's default (postgresql-common's
# "installed" list, which pg_buildext intersects with debian/pgversions)
export PG_SUPPORTED_VERSIONS=installed PG_UPDATECONTROL=yes
versions=$(cd "$build/eventstore-$version" && pg_buildext supported-versions | xargs)
[ -n "$versions" ] || { echo "package.sh: no PostgreSQL of debian/pgversions has its postgresql-server-dev-NN installed" >&2; exit 1; }
echo "== building postgresql-NN-eventstore $debian_version of $(git rev-parse --short HEAD) for PostgreSQL $versions"
(
	cd "$build/eventstore-$version"
	pg_buildext updatecontrol
	dpkg-buildpackage -us -uc
) >"$build/build.log" 2>&1 || {
	tail -n 60 "$build/build.log"
	echo "package.sh: dpkg-buildpackage failed (the last 60 lines of its log are above)" >&2
	exit 1
}

mkdir -p dist
rm -f dist/postgresql-*-eventstore_* dist/eventstore_*
mv "$build"/postgresql-*-eventstore_*.deb "$build"/eventstore_* dist/
ls -1 dist/*
