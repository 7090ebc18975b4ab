#!/usr/bin/env bash
# Quick start 2: set up, then run the whole test suite.  Setting up installs tshark with apt
# when it is missing and osflow into .venv/; the tests themselves change nothing on the system
# (the lab's end-to-end tests, which do, are tests/lab/run-e2e.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec python -m pytest -q --durations=25 "$@"
