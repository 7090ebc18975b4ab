#!/usr/bin/env bash
# Stop what tests/lab/up.sh started, by the PIDs it recorded (nothing else).  Packages, configuration
# and databases stay, so the next up.sh is quick.  See tests/lab/README.md.
set -uo pipefail
STATE=${OSFLOW_LAB_STATE:-/var/lib/osflow-lab}
PIDS=$STATE/pids
[ "$(id -u)" = 0 ] || { echo "lab: error: run me as root" >&2; exit 1; }
[ -s "$PIDS" ] || { echo "lab: nothing to stop (no $PIDS)" >&2; exit 0; }

status=0
# Apache first (its keystone/placement daemons hold DB and memcached connections), MariaDB last
for name in apache2 memcached mariadb; do
  pid=$(awk -v n="$name" '$1 == n { print $2 }' "$PIDS" | tail -1)
  [ -n "$pid" ] || continue
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  case "$name:$exe" in
    mariadb:*/mariadbd|memcached:*/memcached|apache2:*/apache2) ;;
    *) echo "lab: $name (pid $pid) no longer runs" >&2; continue ;;
  esac
  kill -TERM "$pid"
  for _ in $(seq 300); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  if [ -d "/proc/$pid" ]; then
    echo "lab: $name (pid $pid) did not stop within 30s: killing it" >&2
    kill -KILL "$pid"; sleep 0.5
    [ ! -d "/proc/$pid" ] || status=1
  fi
  echo "lab: stopped $name (pid $pid)" >&2
done
[ $status = 0 ] && rm -f "$PIDS"
exit $status
