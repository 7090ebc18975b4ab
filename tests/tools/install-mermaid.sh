#!/bin/sh
# Install the real Mermaid renderer used by the tests marked `mermaid`:
# Debian's Chromium plus @mermaid-js/mermaid-cli (mmdc) in tests/tools/mermaid/.
#
# Idempotent: Chromium is installed only when /usr/bin/chromium is missing, and
# npm runs only when the pinned mermaid-cli is not already installed.
# Puppeteer's own browser download is skipped; mmdc is pointed at the system
# Chromium through tests/tools/puppeteer.json.
#
# Usage (as root, from anywhere):  sh tests/tools/install-mermaid.sh
set -eu

here=$(cd "$(dirname "$0")" && pwd)
pkgdir="$here/mermaid"
config="$here/puppeteer.json"
chromium=/usr/bin/chromium

if [ ! -x "$chromium" ]; then
    echo "install-mermaid: installing chromium with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends chromium
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "install-mermaid: npm is missing (install Node.js >= 20 and npm)" >&2
    exit 1
fi

if [ ! -f "$config" ]; then
    cat >"$config" <<JSON
{
  "executablePath": "$chromium",
  "args": [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run"
  ]
}
JSON
fi

# The version pinned in package.json, and the one installed (if any).
wanted=$(node -p 'require(process.argv[1]).dependencies["@mermaid-js/mermaid-cli"]' \
    "$pkgdir/package.json")
have=$(node -p 'try { require(process.argv[1]).version } catch (e) { "" }' \
    "$pkgdir/node_modules/@mermaid-js/mermaid-cli/package.json" 2>/dev/null || true)

if [ "$have" != "$wanted" ] || [ ! -x "$pkgdir/node_modules/.bin/mmdc" ]; then
    echo "install-mermaid: installing @mermaid-js/mermaid-cli@$wanted with npm" >&2
    cd "$pkgdir"
    PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --no-package-lock
fi

"$pkgdir/node_modules/.bin/mmdc" --version
