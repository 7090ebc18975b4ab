#!/usr/bin/env bash
# Make the lab cold for a recording: restart the placement daemon (a fresh process that has not loaded
# placement, holds no service token and no DB connection) and empty memcached (flush_all).
# Only touches processes the lab started (the placement daemon is a child of the lab's Apache).
# In the devstack shape placement is a uwsgi of its own: restart.sh restarts it (its worker loads
# placement, and opens its database pool, as it starts: lazy-apps), and it holds no service token.
set -euo pipefail
LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$LAB/lib.sh"
die() { echo "lab cold: error: $*" >&2; exit 1; }

flush() {
  exec 3<>/dev/tcp/127.0.0.1/11211 || die "memcached does not answer on 127.0.0.1:11211"
  printf 'flush_all\r\n' >&3
  IFS= read -r -t 5 reply <&3 || die "memcached did not answer flush_all"
  exec 3>&-
  [ "${reply%$'\r'}" = OK ] || die "memcached answered flush_all with: $reply"
  sleep 1  # flush_all takes effect at the next second boundary: let it pass before the recording
}

if old=$(alive placement-uwsgi); then
  bash "$LAB/restart.sh" placement-uwsgi || die "placement's uwsgi did not restart"
  flush
  echo "lab: cold: placement's uwsgi restarted (pid $old -> $(alive placement-uwsgi)), memcached flushed" >&2
  exit 0
fi

apache=$(awk '$1 == "apache2" { print $2 }' "$STATE/pids" 2>/dev/null | tail -1)
[ -n "$apache" ] && [ -d "/proc/$apache" ] || die "the lab's Apache does not run (tests/lab/up.sh first)"

placement_daemon() {  # the pid of the lab Apache's placement daemon
  local p
  for p in $(cat "/proc/$apache/task/"*/children 2>/dev/null); do
    case "$(tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline")" in
      "(wsgi:placement-a"*) echo "$p"; return 0 ;;
    esac
  done
  return 1
}

old=$(placement_daemon) || die "no placement daemon under Apache (pid $apache)"
kill -TERM "$old"
end=$((SECONDS + 30))
while :; do
  new=$(placement_daemon || true)
  if [ -n "$new" ] && [ "$new" != "$old" ] && ! [ -d "/proc/$old" ]; then break; fi
  [ $SECONDS -lt $end ] || die "the placement daemon did not restart within 30s"
  sleep 0.1
done

flush
echo "lab: cold: placement daemon restarted (pid $old -> $new), memcached flushed" >&2
