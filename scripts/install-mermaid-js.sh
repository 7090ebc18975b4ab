#!/bin/sh
# Install mermaid's browser build (dist/mermaid.min.js of the npm package mermaid, MIT licence) where
# osflow-post's HTML report finds it, so that `osflow-post -o report.html` draws the sequence diagram.
#
#   sh scripts/install-mermaid-js.sh [DIR]      # default: ${XDG_DATA_HOME:-~/.local/share}/osflow/mermaid
#   sh scripts/install-mermaid-js.sh /usr/local/share/osflow/mermaid     # for every user (as root)
#
# Needs npm (Debian: apt-get install npm); fetches one tarball with `npm pack` (no dependencies, no
# node_modules) and keeps mermaid.min.js, its package.json (the version) and LICENSE.  Idempotent: does
# nothing when DIR already holds the pinned version.  OSFLOW_MERMAID_VERSION picks another version.
set -eu

version=${OSFLOW_MERMAID_VERSION:-11.17.2}  # the version tests/tools/install-mermaid.sh's mermaid-cli brings
dest=${1:-${XDG_DATA_HOME:-$HOME/.local/share}/osflow/mermaid}

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
echo "install-mermaid-js: mermaid $version in $dest/mermaid.min.js ($(wc -c <"$dest/mermaid.min.js") bytes)"
