#!/usr/bin/env bash
# Record a command on both hosts of the lab's kolla shape (OSFLOW_LAB_SHAPE=kolla up.sh) at once, each
# with `osflow record -i any` on its own host: compute1's inside compute1's network and UTS namespaces
# (so its socket log is compute1's and its meta.json names host compute1), started first with
# --duration, then the controller's around COMMAND (in a UTS namespace named controller); compute1's is stopped (SIGTERM, by PID) once the
# controller's has ended.  Writes OUT/controller/ and OUT/compute1/ (osflow record folders) and each
# recorder's output as OUT/<host>.out.
#
#   record-hosts.sh [--controller-only] [--linger SECONDS] OUT -- COMMAND [ARGS...]
#
# OSFLOW (default: the osflow of this checkout's .venv, else on PATH) is the osflow command.  COMMAND
# runs with the caller's environment (source the lab's openrc first).  Exits with the controller's
# recorder's status (COMMAND's), or 1 when compute1's recording failed.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LAB=$ROOT/tests/lab
# shellcheck source=lib.sh
source "$LAB/lib.sh"
die() { echo "record-hosts: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root (osflow record in compute1's namespaces)"
both=1 linger=2
while [ $# -gt 0 ]; do
  case "$1" in
    --controller-only) both=""; shift ;;
    --linger) linger=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] && [ "$2" = -- ] || die "usage: record-hosts.sh [--controller-only] [--linger SECONDS] OUT -- COMMAND [ARGS...]"
out=$1; shift 2
OSFLOW=${OSFLOW:-}
if [ -z "$OSFLOW" ]; then
  if [ -x "$ROOT/.venv/bin/osflow" ]; then OSFLOW=$ROOT/.venv/bin/osflow; else OSFLOW=osflow; fi
fi
mkdir -p "$out"
[ ! -e "$out/controller" ] && [ ! -e "$out/compute1" ] || die "$out already holds a recording"

pid=""
if [ -n "$both" ]; then
  [ -e "/run/netns/$NETNS" ] || die "no network namespace $NETNS: bring the lab up with OSFLOW_LAB_SHAPE=kolla"
  # an upper bound only: it is stopped as soon as the controller's recording has ended
  ip netns exec "$NETNS" unshare --uts sh -c 'hostname compute1 && exec "$@"' sh \
    "$OSFLOW" record -i any --duration 1800 -o "$out/compute1" >"$out/compute1.out" 2>&1 &
  pid=$!
  # capturing once dumpcap has written its file's header
  for _ in $(seq 150); do
    [ -s "$out/compute1/capture.pcapng" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$out/compute1.out" >&2; die "compute1's osflow record ended early"; }
    sleep 0.1
  done
  [ -s "$out/compute1/capture.pcapng" ] || { kill -TERM "$pid"; die "compute1's osflow record did not start capturing"; }
  sleep 1
fi
# the controller's recorder in a UTS namespace named controller (the lab's name for this machine,
# whatever its own host name), so that its meta.json says host controller
unshare --uts sh -c 'hostname controller && exec "$@"' sh \
  "$OSFLOW" record -i any --linger "$linger" -o "$out/controller" -- "$@" >"$out/controller.out" 2>&1
status=$?
if [ -n "$pid" ]; then
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  rc=$?
  # 130: stopped during --duration, as by Ctrl-C; its files are complete
  if [ $rc != 0 ] && [ $rc != 130 ]; then
    cat "$out/compute1.out" >&2
    echo "record-hosts: error: compute1's osflow record exited $rc" >&2
    [ $status != 0 ] || status=1
  fi
fi
exit $status
