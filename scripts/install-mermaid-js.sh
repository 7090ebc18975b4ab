#!/bin/sh
# mermaid's browser build (dist/mermaid.min.js of the npm package mermaid, MIT licence) for the HTML report.
#
# osflow ships one (postproc/osflow/data/mermaid/, the version osflow/mermaidjs.py's PINNED names); this
# script puts another version where the report finds it first, or refreshes the shipped copy:
#
#   sh scripts/install-mermaid-js.sh [DIR]      # default: ${XDG_DATA_HOME:-~/.local/share}/osflow/mermaid
#   sh scripts/install-mermaid-js.sh /usr/local/share/osflow/mermaid     # for every user (as root)
#   OSFLOW_MERMAID_VERSION=11.x.y sh scripts/install-mermaid-js.sh --package   # the copy osflow ships
#
# Needs npm (Debian: apt-get install npm).  DIR gets mermaid.min.js, its package.json (the version) and
# LICENSE, from one tarball (`npm pack`).  --package also installs mermaid's dependency tree in a
# temporary folder (no scripts run) to collect the licences of what the build bundles into
# THIRD-PARTY-LICENSES; then update PINNED in postproc/osflow/mermaidjs.py.  Idempotent: does nothing
# when the folder already holds that version.
set -eu

version=${OSFLOW_MERMAID_VERSION:-11.17.2}  # the version tests/tools/install-mermaid.sh's mermaid-cli brings
package=
if [ "${1:-}" = "--package" ]; then
    package=1
    dest=$(cd "$(dirname "$0")/.." && pwd)/postproc/osflow/data/mermaid
else
    dest=${1:-${XDG_DATA_HOME:-$HOME/.local/share}/osflow/mermaid}
fi

if [ -f "$dest/mermaid.min.js" ] && grep -q "\"version\": *\"$version\"" "$dest/package.json" 2>/dev/null; then
    echo "install-mermaid-js: mermaid $version is already in $dest"
    exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "install-mermaid-js: npm is missing (apt-get install npm)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "mermaid@$version" >/dev/null)
tar -xzf "$work"/mermaid-*.tgz -C "$work" package/dist/mermaid.min.js package/package.json package/LICENSE
mkdir -p "$dest"
for f in dist/mermaid.min.js package.json LICENSE; do
    cp "$work/package/$f" "$dest/$(basename "$f").tmp"
    mv "$dest/$(basename "$f").tmp" "$dest/$(basename "$f")"
done
if [ -n "$package" ]; then
    mkdir "$work/tree"
    echo '{"name": "licences", "version": "1.0.0", "private": true}' >"$work/tree/package.json"
    (cd "$work/tree" && npm install --silent --ignore-scripts --no-audit --no-fund "mermaid@$version" >/dev/null)
    (cd "$work/tree" && npm ls --all --omit=dev --parseable) | tail -n +2 | python3 -c '
import json, os, sys
seen = {}
for p in sys.stdin.read().split():
    j = json.load(open(os.path.join(p, "package.json"), encoding="utf-8"))
    if j["name"] == "mermaid" or (j["name"], j["version"]) in seen:
        continue
    lic = j.get("license") or j.get("licenses")
    texts = [(f, open(os.path.join(p, f), encoding="utf-8", errors="replace").read().strip())
             for f in sorted(os.listdir(p)) if f.lower().startswith(("license", "licence", "copying", "notice"))]
    if not isinstance(lic, str):  # khroma 2.1.0 names none in package.json; its licence file is MIT
        lic = "see its licence file" if texts else json.dumps(lic)
    seen[(j["name"], j["version"])] = (lic, texts)
out = ["Licences of the packages mermaid %s depends on (its production dependency tree as npm" % sys.argv[1],
       "installs it, a superset of what dist/mermaid.min.js bundles), each as its npm tarball gives it.",
       "mermaid'"'"'s own licence is LICENSE beside this file.", ""]
for (name, ver), (lic, texts) in sorted(seen.items()):
    out += ["=" * 78, "%s %s — %s" % (name, ver, lic), "=" * 78]
    if not texts:
        out.append("(the npm tarball carries no licence file; its package.json says %s)" % lic)
    for f, t in texts:
        out += (["--- " + f] if len(texts) > 1 else []) + [t]
    out.append("")
sys.stdout.write("\n".join(out))
' "$version" >"$dest/THIRD-PARTY-LICENSES"
    echo "install-mermaid-js: now set PINNED = \"$version\" in postproc/osflow/mermaidjs.py"
fi
echo "install-mermaid-js: mermaid $version in $dest/mermaid.min.js ($(wc -c <"$dest/mermaid.min.js") bytes)"
