#!/usr/bin/env bash
# The end-to-end tests on the real OpenStack lab: brings the lab up (up.sh), runs
# `pytest -m lab tests/e2e` with OSFLOW_LAB=1, and always takes the lab down again (down.sh).
# tests/e2e/test_lab.py (keystone and placement) runs first, with nova-compute stopped: its periodic
# calls to placement and keystone would join those recordings (placement's own login, the coverage);
# then nova-compute starts again and the other files (the compute control plane) run.
# Exits non-zero when the lab does not come up or any test fails.  Needs root: it installs
# packages and changes system configuration (see tests/lab/README.md).  Extra arguments go to pytest.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=$ROOT/tests/lab
[ "$(id -u)" = 0 ] || { echo "run-e2e: error: run me as root (the lab installs and starts services)" >&2; exit 1; }

finish() {
  local status=$?
  trap - EXIT INT TERM
  bash "$LAB/down.sh" || status=1
  exit $status
}
trap finish EXIT
trap 'exit 130' INT TERM

bash "$LAB/up.sh" || { echo "run-e2e: error: the lab did not come up" >&2; exit 1; }
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh"   # tshark, .venv with osflow and pytest (as the README's test command)
cd "$ROOT"
status=0
e2e() {  # pytest ARGS...: a failure sets status (5, no test selected by the extra arguments, is none)
  OSFLOW_LAB=1 python -m pytest -q -m lab "$@"
  local rc=$?
  [ $rc = 0 ] || [ $rc = 5 ] || status=1
}
bash "$LAB/restart.sh" --stop nova-compute || exit 1
e2e tests/e2e/test_lab.py "$@"
bash "$LAB/restart.sh" --start nova-compute || exit 1
e2e tests/e2e --ignore=tests/e2e/test_lab.py "$@"
exit $status
