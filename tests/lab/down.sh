#!/usr/bin/env bash
# Stop what tests/lab/up.sh started, by the PIDs it recorded (nothing else), and remove the kolla
# shape's network namespace compute1 and veth osf-ctl and the devstack shape's uwsgi socket folders.
# Packages, configuration and databases stay, so the next up.sh is quick.  See tests/lab/README.md.
set -uo pipefail
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$LAB/lib.sh"
[ "$(id -u)" = 0 ] || { echo "lab: error: run me as root" >&2; exit 1; }
[ -s "$PIDS" ] || { echo "lab: nothing to stop (no $PIDS)" >&2; net_down; uwsgi_down; exit 0; }

status=0
# the compute services first (they hold broker and DB connections), then the APIs, Apache, the broker,
# memcached, MariaDB last ($LAB_SERVICES is in that order)
for name in $LAB_SERVICES; do
  stop_service "$name" || status=1
done
net_down || status=1
uwsgi_down
left=$(awk '{ print $1 }' "$PIDS" 2>/dev/null | tr '\n' ' ')
[ -z "$left" ] || { echo "lab: still recorded, not stopped: $left" >&2; status=1; }
[ $status = 0 ] && rm -f "$PIDS"
exit $status
