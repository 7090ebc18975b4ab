#!/usr/bin/env bash
# Restart one service the lab started: stop it by its recorded PID, start it again as up.sh does, and
# wait until it serves (an RPC service: until it is connected to RabbitMQ).  For recordings that must
# see a service start, e.g. the AMQP Connection.Start-Ok that names the process:
#   osflow record --linger 15 -- bash tests/lab/restart.sh nova-conductor
# Services: rabbitmq glance-api neutron-server nova-api nova-conductor nova-scheduler nova-compute.
set -euo pipefail
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$LAB/lib.sh"
die() { echo "lab restart: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run me as root"
[ $# = 1 ] || die "usage: restart.sh SERVICE"
name=$1
case "$name" in
  rabbitmq|glance-api|neutron-server|nova-api|nova-conductor|nova-scheduler|nova-compute) ;;
  *) die "not a service restart.sh restarts: $name" ;;
esac
old=$(alive "$name") || die "$name is not running as the lab started it (tests/lab/up.sh first)"
stop_service "$name" || die "$name (pid $old) would not stop"
launch "$name"
end=$((SECONDS + 180))
until ready "$name"; do
  [ $SECONDS -lt $end ] || die "$name did not serve again within 180s (log: $STATE/$name.log)"
  sleep 0.2
done
echo "lab: restarted $name (pid $old -> $(alive "$name"))" >&2
