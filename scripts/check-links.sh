#!/usr/bin/env bash
# Check the relative links of README.md, docs/*.md and bench/README.md: every
# linked file (or directory) exists and every #anchor names a heading of the
# target, with GitHub's rules for heading anchors.  Not part of the test
# suite.  Usage: bash scripts/check-links.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - README.md docs/*.md bench/README.md <<'PY'
import os, re, sys

def anchors(path):
    seen, out = {}, set()
    fence = False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fence = not fence
            continue
        m = None if fence else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(2))
        slug = re.sub(r"[^\w\- ]", "", text.lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else "%s-%d" % (slug, n))
    return out

bad = 0
for src in sys.argv[1:]:
    text = open(src, encoding="utf-8").read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for m in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
        link = m.group(1)
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, frag = link.partition("#")
        target = os.path.normpath(os.path.join(os.path.dirname(src), path)) if path else src
        if not os.path.exists(target):
            print("%s: %s: no such file" % (src, link)); bad += 1; continue
        if frag and target.endswith(".md") and frag not in anchors(target):
            print("%s: %s: no such anchor" % (src, link)); bad += 1
print("links: %d broken" % bad)
sys.exit(1 if bad else 0)
PY
