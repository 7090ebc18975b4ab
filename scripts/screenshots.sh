#!/usr/bin/env bash
# The HTML report's screenshots in docs/ (shown in README.md), made again from the real captures in
# tests/fixtures/ with headless Chromium:
#   docs/report-waterfall.png  server create: the waterfall zoomed to POST /v2.1/servers, its pair shown
#   docs/report-diagram.png    resource class list (cold): the sequence diagram mermaid drew
#   docs/report-map.png        server create: the service map
#   docs/report-drill.png      server create: report.html#step=N, the scheduler's select_destinations drawn alone
#   docs/diff.png              osflow diff -o diff.html: resource class list, cold vs cache hit
# Needs Chromium and mermaid's browser build (sh tests/tools/install-mermaid.sh installs both; any
# build osflow finds will do, see README "The HTML report").  Usage: ./scripts/screenshots.sh [OUTDIR]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/setup.sh"
out=${1:-$ROOT/docs}
chromium=${OSFLOW_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "screenshots: no Chromium at $chromium (sh tests/tools/install-mermaid.sh)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

report() {  # report CASE OUT.html: osflow-post on a real capture, refusing to go on without mermaid
  local dir="$ROOT/tests/fixtures/$1"
  osflow-post -r "$dir/capture.pcapng" --ss "$dir/ss.txt" --ps "$dir/ps.txt" -o "$2" 2>"$work/err" \
    || { cat "$work/err" >&2; exit 1; }
  if grep -q "no mermaid build found" "$work/err"; then cat "$work/err" >&2; exit 1; fi
}

shot() {  # shot PAGE#FRAGMENT WIDTH,HEIGHT OUT.png ("only-<section>" frames one section: see report.js)
  "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-background-networking \
    --user-data-dir="$work/profile" --virtual-time-budget=60000 --window-size="$2" --screenshot="$3" "file://$1" \
    2>"$work/chromium.err" || { cat "$work/chromium.err" >&2; exit 1; }
  echo "screenshots: $3 ($(stat -c %s "$3") bytes)"
}

report captures-compute/server-create "$work/server-create.html"
report captures/resource-class-list-cold "$work/cold.html"
# the step of the user's POST /v2.1/servers (its number depends on what the flow groups and leaves out)
step=$(grep -o 'id="w[0-9]*"[^>]*title="[0-9]*\. OpenStackClient → nova-api: POST /v2.1/servers ' \
         "$work/server-create.html" | head -1 | sed 's/^id="w\([0-9]*\)".*/\1/')
[ -n "$step" ] || { echo "screenshots: no POST /v2.1/servers in the server-create report" >&2; exit 1; }
shot "$work/server-create.html#only-waterfall&w$step&zoom" 1500,1100 "$out/report-waterfall.png"
shot "$work/cold.html#only-diagram&fit" 1800,1120 "$out/report-diagram.png"
shot "$work/server-create.html#only-map" 1500,1000 "$out/report-map.png"
# the step of nova-conductor's call select_destinations: what the scheduler did for it
step=$(grep -o 'id="w[0-9]*"[^>]*title="[0-9]*\. nova-conductor → nova-scheduler: call select_destinations' \
       "$work/server-create.html" | head -1 | sed 's/^id="w\([0-9]*\)".*/\1/')
[ -n "$step" ] || { echo "screenshots: no select_destinations in the server-create report" >&2; exit 1; }
shot "$work/server-create.html#only-diagram&step=$step&fit" 1500,1000 "$out/report-drill.png"
osflow diff "$ROOT/tests/fixtures/captures/resource-class-list-cold" \
    "$ROOT/tests/fixtures/captures/resource-class-list-cache-hit" -o "$work/diff.html"
shot "$work/diff.html" 1500,560 "$out/diff.png"
