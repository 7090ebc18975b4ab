#!/usr/bin/env bash
# Quick start 1: set up, then run osflow-post on a real capture shipped in the repo
# (openstack resource class list, cold caches) and print the timeline and the Mermaid code.
# ./scripts/demo.sh token-issue: another capture of tests/fixtures/captures/;
# ./scripts/demo.sh captures-compute/server-create: one of the compute captures (RPC over RabbitMQ).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/setup.sh"
CASE=${1:-resource-class-list-cold}
case "$CASE" in
    */*) DIR="$ROOT/tests/fixtures/$CASE" ;;
    *) DIR="$ROOT/tests/fixtures/captures/$CASE" ;;
esac
if [ ! -f "$DIR/capture.pcapng" ]; then
    echo "demo.sh: no capture.pcapng in $DIR" >&2
    exit 2
fi
exec osflow-post -r "$DIR/capture.pcapng" --ss "$DIR/ss.txt" --ps "$DIR/ps.txt" --format md
