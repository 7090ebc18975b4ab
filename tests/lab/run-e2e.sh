#!/usr/bin/env bash
# The end-to-end tests on the real OpenStack lab: brings the lab up (up.sh), runs
# `pytest -m lab tests/e2e` with OSFLOW_LAB=1, and always takes the lab down again (down.sh).
# tests/e2e/test_lab.py (keystone and placement) runs first, in the keystone/placement lab alone
# (OSFLOW_LAB_ONLY=identity; compute services a former run left are stopped): nova-compute's periodic
# calls to placement and keystone would join its recordings (placement's own login), and the busier
# machine makes osflow record's socket log miss short-lived ends (its 100% coverage check).  Then
# up.sh brings up the rest and the other files (the compute control plane) run.  Then
# OSFLOW_LAB_PROFILER=1 up.sh turns OSProfiler on in every service and tests/e2e/test_osprofiler_lab.py
# records the commands of docs/accuracy.md with their traces and prints the scorer's figures.  Then
# OSFLOW_LAB_SHAPE=kolla up.sh switches the lab to the kolla shape (HAProxy on a VIP, compute1 in a
# network namespace) and tests/e2e/test_multihost_lab.py records on both hosts.  Then
# OSFLOW_LAB_SHAPE=devstack up.sh (keystone and placement under uwsgi behind Apache on port 80) for
# tests/e2e/test_devstack_lab.py, and OSFLOW_LAB_SHAPE=tls up.sh (HAProxy terminating TLS in front of
# them) for tests/e2e/test_tls_lab.py: keystone and placement only, a few minutes each.
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

OSFLOW_LAB_ONLY=identity bash "$LAB/up.sh" || { echo "run-e2e: error: the lab did not come up" >&2; exit 1; }
for s in nova-compute nova-scheduler nova-conductor nova-api neutron-server glance-api rabbitmq; do
  bash "$LAB/restart.sh" --stop "$s" || exit 1
done
# shellcheck disable=SC1091
source "$ROOT/scripts/setup.sh"   # tshark, .venv with osflow and pytest (as the README's test command)
cd "$ROOT"
status=0
e2e() {  # pytest ARGS...: a failure sets status (5, no test selected by the extra arguments, is none)
  OSFLOW_LAB=1 python -m pytest -q -m lab "$@"
  local rc=$?
  [ $rc = 0 ] || [ $rc = 5 ] || status=1
}
e2e tests/e2e/test_lab.py "$@"
bash "$LAB/up.sh" || { echo "run-e2e: error: the compute lab did not come up" >&2; exit 1; }
e2e tests/e2e --ignore=tests/e2e/test_lab.py --ignore=tests/e2e/test_multihost_lab.py \
  --ignore=tests/e2e/test_devstack_lab.py --ignore=tests/e2e/test_tls_lab.py \
  --ignore=tests/e2e/test_osprofiler_lab.py "$@"
OSFLOW_LAB_PROFILER=1 bash "$LAB/up.sh" || { echo "run-e2e: error: the lab with OSProfiler did not come up" >&2; exit 1; }
OSFLOW_LAB_PROFILER=1 e2e -s tests/e2e/test_osprofiler_lab.py "$@"
OSFLOW_LAB_SHAPE=kolla bash "$LAB/up.sh" || { echo "run-e2e: error: the kolla shape did not come up" >&2; exit 1; }
OSFLOW_LAB_SHAPE=kolla e2e tests/e2e/test_multihost_lab.py "$@"
OSFLOW_LAB_SHAPE=devstack bash "$LAB/up.sh" || { echo "run-e2e: error: the devstack shape did not come up" >&2; exit 1; }
OSFLOW_LAB_SHAPE=devstack e2e tests/e2e/test_devstack_lab.py "$@"
OSFLOW_LAB_SHAPE=tls bash "$LAB/up.sh" || { echo "run-e2e: error: the TLS shape did not come up" >&2; exit 1; }
OSFLOW_LAB_SHAPE=tls e2e tests/e2e/test_tls_lab.py "$@"
exit $status
