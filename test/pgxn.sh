#!/usr/bin/env bash
# The PGXN release: "make dist" and the archive it writes.
#
#   PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config bash test/pgxn.sh
#
# Runs "make dist" at the top of this checkout (which writes META.json and
# eventstore-VERSION.zip there, both gitignored), unpacks the archive into a
# temporary directory and checks it as PGXN takes it: one top directory
# eventstore-VERSION/; a META.json with every field the PGXN Meta Spec 1.0.0
# requires, whose versions are the default_version of eventstore.control;
# the files META.json names; no build products; and that the unpacked tree
# builds (make, no install).  One line per check; exits non-zero on the
# first failure.  As root or as a normal user: it writes nothing else
# (the temporary directory is removed on exit).
#
# The archive holds the files committed at HEAD: commit before running it.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
PG_CONFIG=${PG_CONFIG:-pg_config}

ok() { echo "ok - $*"; }
fail() {
	echo "not ok - $*"
	exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eventstore-pgxn.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

command -v python3 >/dev/null || fail "python3 (to read JSON and zip) is not installed"
"$PG_CONFIG" --version >/dev/null 2>&1 || fail "PG_CONFIG=$PG_CONFIG is not a working pg_config"

# default_version of eventstore.control, read apart from the Makefile's sed
control_version() {
	python3 - "$1" <<'EOF'
import re, sys
for line in open(sys.argv[1], encoding="utf-8"):
    m = re.match(r"\s*default_version\s*=\s*'([^']*)'", line)
    if m:
        print(m.group(1))
        break
EOF
}
version=$(control_version eventstore.control)
[ -n "$version" ] || fail "eventstore.control has a default_version"
ok "eventstore.control: default_version $version"
dist=eventstore-$version
zip=$dist.zip

# 1. make dist
rm -f "$zip"
if ! make -s dist PG_CONFIG="$PG_CONFIG" >"$tmp/dist.log" 2>&1; then
	sed 's/^/    /' "$tmp/dist.log"
	fail "make dist"
fi
[ -f "$zip" ] || fail "make dist wrote $zip"
ok "make dist wrote $zip ($(wc -c <"$zip") bytes)"

# 2. the archive and its META.json, checked by python3 (one line per check)
mkdir "$tmp/unpacked"
python3 - "$top/$zip" "$tmp/unpacked" "$dist" "$version" <<'EOF'
import json, os, re, sys, time, zipfile

zip_path, dest, dist, control_version = sys.argv[1:5]
failed = False

def check(cond, what):
    global failed
    print(("ok - " if cond else "not ok - ") + what)
    if not cond:
        failed = True
    return cond

def stop():
    if failed:
        sys.exit(1)

# semver.org's regular expression for SemVer 2.0.0, which the spec requires
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")

def is_str(v):
    return isinstance(v, str) and v != ""

# -- the archive
check(zipfile.is_zipfile(zip_path), "the archive is a zip file")
stop()
with zipfile.ZipFile(zip_path) as z:
    infos = z.infolist()
    names = [i.filename for i in infos]
    check(z.testzip() is None, "every member's CRC is right")
    tops = sorted({n.split("/", 1)[0] for n in names})
    check(tops == [dist] and all(n.startswith(dist + "/") for n in names),
          "one top directory, %s/ (found: %s)" % (dist, ", ".join(tops)))
    check(len(names) == len(set(names)), "no member twice")
    check(not any(n.startswith("/") or ".." in n.split("/") for n in names),
          "no absolute path or .. in a member")
    stop()
    # unpack with the modes and times the archive records
    for i in infos:
        z.extract(i, dest)
        path = os.path.join(dest, i.filename)
        mode = (i.external_attr >> 16) & 0o777
        if mode and not i.is_dir():
            os.chmod(path, mode)
        t = time.mktime(i.date_time + (0, 0, -1))
        os.utime(path, (t, t))
root = os.path.join(dest, dist)
files = {n[len(dist) + 1:] for n in names if not n.endswith("/")}
check(len(files) > 0, "the archive holds %d files" % len(files))

# -- no build products (git archive takes committed files only)
build = re.compile(
    r"(^|/)(tmp_check[^/]*|results|output_iso|log|node_modules|\.git)(/|$)"
    r"|\.(o|so|bc|dylib|zip)$"
    r"|(^|/)regression\.(diffs|out)$"
    r"|^eventstore--[^/]*\.sql$"          # the built install script (sql/versions/ is the frozen ones)
    r"|^\.pg_config_built$")
products = sorted(f for f in files if build.search(f))
check(not products, "no build products in the archive%s" % (": " + ", ".join(products[:10]) if products else ""))

# -- META.json
check("META.json" in files, "META.json at the top of %s/" % dist)
stop()
try:
    meta = json.load(open(os.path.join(root, "META.json"), encoding="utf-8"))
    check(isinstance(meta, dict), "META.json parses as a JSON object")
except ValueError as e:
    check(False, "META.json parses as JSON: %s" % e)
stop()

# the archive's own control file: the one META.json must agree with
cv = None
for line in open(os.path.join(root, "eventstore.control"), encoding="utf-8"):
    m = re.match(r"\s*default_version\s*=\s*'([^']*)'", line)
    if m:
        cv = m.group(1)
        break
check(cv == control_version,
      "the archive's eventstore.control says default_version %s, as the checkout's does" % cv)

# every key the spec requires
term = lambda v: is_str(v) and len(v) >= 2 and not re.search(r"[/\\\s\x00-\x1f\x7f]", v)
check(term(meta.get("name")) and meta.get("name") == "eventstore", "name: %r" % meta.get("name"))
check(is_str(meta.get("abstract")), "abstract: %r" % meta.get("abstract"))
mt = meta.get("maintainer")
check(is_str(mt) or (isinstance(mt, list) and mt and all(is_str(x) for x in mt)),
      "maintainer: a string or a list of strings: %r" % mt)
LICENSES = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd",
            "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit",
            "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay",
            "sun", "zlib", "open_source", "restricted", "unrestricted", "unknown"}
lic = meta.get("license")
check((is_str(lic) and lic in LICENSES)
      or (isinstance(lic, list) and lic and all(x in LICENSES for x in lic))
      or (isinstance(lic, dict) and lic and all(is_str(k) and is_str(v) for k, v in lic.items())),
      "license: a license string, a list of them or a map to URIs: %r" % (lic,))
ms = meta.get("meta-spec")
check(isinstance(ms, dict) and ms.get("version") == "1.0.0", "meta-spec.version: 1.0.0")
if isinstance(ms, dict) and "url" in ms:
    check(ms["url"] in ("https://pgxn.org/meta/spec.txt", "http://pgxn.org/meta/spec.txt"),
          "meta-spec.url: %r" % ms["url"])
v = meta.get("version")
check(is_str(v) and SEMVER.match(v) is not None, "version %r is a semantic version" % v)
check(v == control_version, "version %r is default_version of eventstore.control (%s)" % (v, control_version))
prov = meta.get("provides")
if not check(isinstance(prov, dict) and "eventstore" in prov, "provides: a map naming eventstore"):
    sys.exit(1)
for ext, p in sorted(prov.items()):
    check(term(ext) and isinstance(p, dict), "provides.%s: a map" % ext)
    if not isinstance(p, dict):
        continue
    pv = p.get("version")
    check(is_str(pv) and SEMVER.match(pv) is not None, "provides.%s.version %r is a semantic version" % (ext, pv))
    for key in ("file", "docfile"):
        if key == "docfile" and key not in p:
            continue
        f = p.get(key)
        check(is_str(f) and f in files and os.path.isfile(os.path.join(root, f)),
              "provides.%s.%s %r is in the archive" % (ext, key, f))
check(prov["eventstore"].get("version") == v,
      "provides.eventstore.version %r is the distribution's version" % prov["eventstore"].get("version"))

# the optional keys present must be as the spec says, and no other key
KEYS = {"name", "abstract", "maintainer", "license", "provides", "meta-spec", "version",
        "description", "generated_by", "tags", "no_index", "prereqs", "release_status", "resources"}
unknown = sorted(k for k in meta if k not in KEYS and not re.match(r"x_", k, re.I))
check(not unknown, "no key outside the spec%s" % (": " + ", ".join(unknown) if unknown else ""))
if "release_status" in meta:
    check(meta["release_status"] in ("stable", "testing", "unstable"),
          "release_status: %r" % meta["release_status"])
if "tags" in meta:
    tags = meta["tags"]
    check(isinstance(tags, list) and tags
          and all(is_str(t) and 2 <= len(t) < 256 and not re.search(r"[/\\\x00-\x1f\x7f]", t) for t in tags),
          "tags: %d tags, each of 2 to 255 characters without / \\ or control characters" % len(tags))
if "prereqs" in meta:
    pg = meta["prereqs"].get("runtime", {}).get("requires", {}).get("PostgreSQL")
    check(isinstance(pg, str) and SEMVER.match(pg) is not None,
          "prereqs.runtime.requires.PostgreSQL %r is a semantic version" % pg)
if "resources" in meta:
    check(isinstance(meta["resources"], dict), "resources: a map")

sys.exit(1 if failed else 0)
EOF

d=$tmp/unpacked/$dist

# 3. the unpacked archive builds
if ! make -C "$d" PG_CONFIG="$PG_CONFIG" >"$tmp/build.log" 2>&1; then
	tail -n 40 "$tmp/build.log" | sed 's/^/    /'
	fail "the unpacked archive builds with make PG_CONFIG=$PG_CONFIG"
fi
ok "the unpacked archive builds with make PG_CONFIG=$PG_CONFIG"
[ -f "$d/eventstore--$version.sql" ] || fail "the build wrote the install script eventstore--$version.sql"
lib=
for f in "$d"/eventstore.so "$d"/eventstore.dylib "$d"/eventstore.dll; do
	[ -f "$f" ] && lib=${f##*/}
done
[ -n "$lib" ] || fail "the build wrote the library eventstore.so"
ok "the build wrote eventstore--$version.sql and $lib"

# 4. make dist refuses outside a git checkout (the unpacked archive is not one)
if (cd "$d" && make -s dist PG_CONFIG="$PG_CONFIG") >"$tmp/nodist.log" 2>&1; then
	fail "make dist refuses in the unpacked archive (not a git checkout)"
fi
grep -q "not the top of a git checkout" "$tmp/nodist.log" ||
	{ sed 's/^/    /' "$tmp/nodist.log"; fail "make dist says why it refuses outside a git checkout"; }
[ ! -e "$d/$zip" ] || fail "make dist wrote no archive outside a git checkout"
ok "make dist refuses outside a git checkout: $(grep -m1 'not the top' "$tmp/nodist.log")"

echo "ok - all checks passed: $zip"
