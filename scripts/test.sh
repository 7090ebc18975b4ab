#!/usr/bin/env bash
# Quick start 2: set up, then run the whole test suite (safe on a desktop: no system changes).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec python -m pytest -q "$@"
