#!/usr/bin/env bash
# The README's promise, tested on machines that have nothing installed: a
# minimal Debian root file system made with debootstrap (from Debian's
# archive, into a temporary directory), a clean checkout copied in, and
# inside it (a chroot with /proc, /dev and /dev/shm mounted), failing on any
# error:
#
#   root    as root:                     bash scripts/demo.sh; bash scripts/test.sh
#   user    as a normal user with sudo:  the same two commands
#   deb     the Debian packages built from debian/ (dpkg-buildpackage; the
#           source package is unpacked with dpkg-source -x), then,
#           in another fresh root file system, installed with apt and tested
#           in place by debian/tests/installcheck (no make install)
#
# Each step starts from a fresh copy of the debootstrapped system, with a
# clean checkout of this repository's HEAD (commit what is to be tested).
#
#   sudo bash test/fresh-debian.sh [SUITE ...]         default: bookworm
#   ES_FRESH_STEPS="root user deb"                       the steps to run
#   ES_FRESH_MIRROR=http://deb.debian.org/debian         the archive
#
# Runs as root (debootstrap and chroot need it).  SUITE is a Debian suite
# whose PostgreSQL the scripts support: bookworm (Debian 12, PostgreSQL 15)
# or trixie (Debian 13, PostgreSQL 17).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

suites=${*:-bookworm}
steps=${ES_FRESH_STEPS:-root user deb}
mirror=${ES_FRESH_MIRROR:-http://deb.debian.org/debian}

say() { echo "fresh-debian: $*"; }
die() { say "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: debootstrap and chroot need it"
git -C "$top" rev-parse --verify -q HEAD >/dev/null || die "$top is not a git checkout"
if ! command -v debootstrap >/dev/null; then
	say "installing debootstrap"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fresh-debian.XXXXXX")
chmod 755 "$work"
mounted=()

# every process whose root is inside DIR (a server a failed step left)
kill_inside() {
	local p r
	for p in /proc/[0-9]*; do
		r=$(readlink "$p/root" 2>/dev/null) || continue
		case "$r" in "$1" | "$1"/*) kill -9 "${p#/proc/}" 2>/dev/null || true ;; esac
	done
}

unmount_all() {
	local i
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" 2>/dev/null || true
	done
	mounted=()
}

cleanup() {
	local d
	for d in "$work"/*/; do [ -d "$d" ] && kill_inside "${d%/}"; done
	unmount_all
	# never rm -rf through a mount point still attached
	if ! grep -q " $work/" /proc/mounts; then rm -rf "$work"; else say "left $work (still mounted)"; fi
}
trap cleanup EXIT
# interrupted too: stop what runs inside and unmount before leaving
trap 'exit 130' INT TERM

mount_into() { # ROOT
	mount -t proc proc "$1/proc" && mounted+=("$1/proc")
	mount --bind /dev "$1/dev" && mounted+=("$1/dev")
	mount --bind /dev/pts "$1/dev/pts" && mounted+=("$1/dev/pts")
	mount -t tmpfs -o mode=1777 shm "$1/dev/shm" && mounted+=("$1/dev/shm")
	# the steps of a suite share the packages apt downloads (each step
	# still installs them into its own fresh system)
	if [ -d "$work/apt-archives" ]; then
		mount --bind "$work/apt-archives" "$1/var/cache/apt/archives" && mounted+=("$1/var/cache/apt/archives")
	fi
}

# fresh NAME: a copy of the debootstrapped system, mounted, in $work/NAME,
# named by $root (not a subshell: the mounts are remembered for cleanup)
fresh() {
	root=$work/$1
	cp -a "$work/base" "$root"
	mount_into "$root"
}

# done_with ROOT: stop what runs there, unmount and remove it
done_with() {
	kill_inside "$1"
	unmount_all
	rm -rf "$1"
}

in_root() { # ROOT CMD...: run CMD in the chroot with a clean environment
	local root=$1
	shift
	chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# checkout ROOT DIR [OWNER]: a clean checkout of HEAD at DIR inside ROOT
checkout() {
	git clone -q --no-hardlinks "$top" "$1$2"
	if [ -n "${3:-}" ]; then in_root "$1" chown -R "$3:" "$2"; fi
}

timed() { # LABEL CMD...
	local label=$1 t0
	shift
	t0=$(date +%s)
	say "$label"
	"$@"
	say "$label: passed in $(($(date +%s) - t0)) s"
}

make_base() { # SUITE
	local suite=$1 base=$work/base
	rm -rf "$base"
	debootstrap --variant=minbase "$suite" "$base" "$mirror" >"$work/debootstrap-$suite.log" 2>&1 ||
		{ tail -n 20 "$work/debootstrap-$suite.log"; die "debootstrap $suite failed"; }
	# what a Debian installation has beyond minbase: its updates and
	# security archives, name resolution, git to clone with
	cat >"$base/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
	cp /etc/resolv.conf "$base/etc/resolv.conf"
	cp /etc/hosts "$base/etc/hosts"
	# no services started by packages in a chroot (the clusters Debian's
	# postgresql package creates stay stopped: the scripts start their own)
	printf '#!/bin/sh\nexit 101\n' >"$base/usr/sbin/policy-rc.d"
	chmod 755 "$base/usr/sbin/policy-rc.d"
	mount_into "$base"
	in_root "$base" apt-get update -qq
	in_root "$base" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends git ca-certificates >/dev/null
	in_root "$base" apt-get clean
	unmount_all
	rm -rf "$work/apt-archives"
	cp -a "$base/var/cache/apt/archives" "$work/apt-archives"
}

step_root() {
	local root
	fresh root
	checkout "$root" /root/eventstore
	in_root "$root" bash -c 'cd /root/eventstore && bash scripts/demo.sh && bash scripts/test.sh'
	done_with "$root"
}

step_user() {
	local root
	fresh user
	in_root "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null
	in_root "$root" useradd -m -s /bin/bash dev
	echo 'dev ALL=(ALL) NOPASSWD:ALL' >"$root/etc/sudoers.d/dev"
	chmod 440 "$root/etc/sudoers.d/dev"
	checkout "$root" /home/dev/eventstore dev
	in_root "$root" runuser -u dev -- /usr/bin/env HOME=/home/dev \
		bash -c 'cd ~/eventstore && bash scripts/demo.sh && bash scripts/test.sh'
	done_with "$root"
}

step_deb() {
	local root debs
	fresh build
	checkout "$root" /root/eventstore
	in_root "$root" bash /root/eventstore/scripts/package.sh
	# the source package unpacks as Debian's tools take it
	in_root "$root" bash -c 'cd /tmp && dpkg-source -x /root/eventstore/dist/eventstore_*.dsc src >/dev/null && test -x src/debian/rules'
	mkdir -p "$work/debs"
	cp "$root"/root/eventstore/dist/*.deb "$work/debs/"
	done_with "$root"
	debs=$(cd "$work/debs" && ls ./*.deb)
	say "built: $(echo $debs)"

	fresh pkg
	mkdir -p "$root/root/debs"
	cp "$work"/debs/*.deb "$root/root/debs/"
	in_root "$root" bash -c 'cd /root/debs && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./*.deb >/dev/null'
	checkout "$root" /root/eventstore
	in_root "$root" bash -c 'cd /root/eventstore && bash debian/tests/installcheck'
	# the files tested are the package's, as installed (nothing rebuilt
	# or reinstalled them): dpkg --verify reports any that changed
	local changed
	changed=$(in_root "$root" bash -c 'dpkg --verify $(dpkg-query -W -f="\${Package}\n" "postgresql-*-eventstore")' 2>&1) ||
		die "dpkg --verify failed: $changed"
	[ -z "$changed" ] || die "files of the installed package changed during the test: $changed"
	say "dpkg --verify: the tested files are the package's"
	done_with "$root"
}

t_all=$(date +%s)
for suite in $suites; do
	timed "$suite: debootstrap --variant=minbase" make_base "$suite"
	for step in $steps; do
		case "$step" in
		root) timed "$suite: as root: demo.sh, test.sh" step_root ;;
		user) timed "$suite: as a user with sudo: demo.sh, test.sh" step_user ;;
		deb) timed "$suite: the Debian package: build, install, test in place" step_deb ;;
		*) die "unknown step $step (root, user, deb)" ;;
		esac
	done
	rm -rf "$work/base" "$work/debs" "$work/apt-archives"
done
say "all passed in $(($(date +%s) - t_all)) s"
