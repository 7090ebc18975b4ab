#!/usr/bin/env bash
# Quick start 2: set up, then run the whole test suite.  Setting up installs tshark with apt
# when it is missing and osflow into .venv/; the tests themselves change nothing on the system
# (the lab's end-to-end tests, which do, are tests/lab/run-e2e.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
# Two or more cores: the test files spread over as many workers (at most 4; OSFLOW_TEST_WORKERS=1
# runs them in this process), each file whole in one worker so that its cached captures are made once.
workers=${OSFLOW_TEST_WORKERS:-$(nproc)}
[ "$workers" -le 4 ] || workers=4
spread=()
[ "$workers" -le 1 ] || spread=(-n "$workers" --dist loadfile)
exec python -m pytest -q --durations=25 "${spread[@]}" "$@"
