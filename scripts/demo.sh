#!/usr/bin/env bash
# Quick start 1: set up, then run osflow-post on a real capture shipped in the repo
# (openstack resource class list, cold caches) and print the timeline and the Mermaid code.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/setup.sh"
CASE=${1:-resource-class-list-cold}
DIR="$ROOT/tests/fixtures/captures/$CASE"
exec osflow-post -r "$DIR/capture.pcapng" --ss "$DIR/ss.txt" --ps "$DIR/ps.txt" --format md
