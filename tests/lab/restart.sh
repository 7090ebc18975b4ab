#!/usr/bin/env bash
# Restart one service the lab started: stop it by its recorded PID, start it again as up.sh does, and
# wait until it serves (an RPC service: until it is connected to RabbitMQ).  For recordings that must
# see a service start, e.g. the AMQP Connection.Start-Ok that names the process:
#   osflow record --linger 15 -- bash tests/lab/restart.sh nova-conductor
# --stop only stops it, --start only starts it (when it is not running): run-e2e.sh keeps nova-compute,
# whose periodic calls to placement and keystone would join the keystone/placement recordings, stopped
# while tests/e2e/test_lab.py runs.
# Services: rabbitmq glance-api neutron-server nova-api nova-conductor nova-scheduler nova-compute,
# in the kolla shape nova-compute1 (in compute1's namespaces) and haproxy, in the devstack shape
# keystone-uwsgi and placement-uwsgi (a uwsgi master and its workers).
set -euo pipefail
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$LAB/lib.sh"
die() { echo "lab restart: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root"
action=restart
case "${1:-}" in --stop) action=stop; shift ;; --start) action=start; shift ;; esac
[ $# = 1 ] || die "usage: restart.sh [--stop|--start] SERVICE"
name=$1
case "$name" in
  rabbitmq|glance-api|neutron-server|nova-api|nova-conductor|nova-scheduler|nova-compute|nova-compute1|haproxy|keystone-uwsgi|placement-uwsgi) ;;
  *) die "not a service restart.sh restarts: $name" ;;
esac
old=$(alive "$name" || true)
case "$action" in
  restart) [ -n "$old" ] || die "$name is not running as the lab started it (tests/lab/up.sh first)" ;;
  stop) [ -n "$old" ] || { echo "lab: $name is not running" >&2; exit 0; } ;;
  start) [ -z "$old" ] || { echo "lab: $name runs (pid $old)" >&2; exit 0; } ;;
esac
if [ -n "$old" ]; then
  stop_service "$name" || die "$name (pid $old) would not stop"
fi
[ "$action" != stop ] || exit 0
launch "$name"
end=$((SECONDS + 180))
until ready "$name"; do
  [ $SECONDS -lt $end ] || die "$name did not serve again within 180s (log: $STATE/$name.log)"
  sleep 0.2
done
echo "lab: ${old:+re}started $name (pid ${old:+$old -> }$(alive "$name"))" >&2
