# The lab's process bookkeeping, sourced by up.sh, down.sh and restart.sh (bash).  Every process the
# lab starts is one line of $STATE/pids: "<name> <pid> <start time>" (the start time is field 22 of
# /proc/<pid>/stat, so a recycled PID is never taken for ours).  A process counts as the lab's only
# while it has that PID, that start time and runs the program expected for its name.
STATE=${OSFLOW_LAB_STATE:-/var/lib/osflow-lab}
PIDS=$STATE/pids

# The kolla shape (OSFLOW_LAB_SHAPE=kolla): the compute node in network namespace $NETNS, a veth pair
# ($VETH here, eth0 there), the VIP on $VETH, HAProxy's configuration in the state folder
NETNS=compute1
VETH=osf-ctl
CONTROLLER_IP=198.18.0.1
COMPUTE1_IP=198.18.0.2
VIP=198.18.0.100
# the HMAC key of OSProfiler's traces (OSFLOW_LAB_PROFILER): `openstack --os-profile $PROFILER_KEY …`
PROFILER_KEY=osflow-lab
HAPROXY_CFG=$STATE/haproxy.cfg
# The devstack shape (OSFLOW_LAB_SHAPE=devstack): keystone and placement each under a uwsgi of its own,
# behind Apache on 127.0.0.1:80 by path prefix (mod_proxy_uwsgi), over a unix socket in a folder of
# the service's user: $UWSGI_RUN/<user>/<name>.socket
UWSGI_RUN=/run/uwsgi
# The TLS shape (OSFLOW_LAB_SHAPE=tls): HAProxy terminating TLS on the public address $PUBLIC_IP (on
# loopback), keystone on :$TLS_KEYSTONE_PORT and placement on :$TLS_PLACEMENT_PORT (TripleO's public
# ports), with a certificate of the lab's own CA ($TLS_DIR: ca.crt, controller.pem)
PUBLIC_IP=127.0.0.2
TLS_KEYSTONE_PORT=13000
TLS_PLACEMENT_PORT=13778
TLS_DIR=$STATE/tls

# the order down.sh stops them in: clients of the broker and databases first, MariaDB last
LAB_SERVICES="nova-compute1 nova-compute nova-scheduler nova-conductor nova-api neutron-server glance-api placement-uwsgi keystone-uwsgi haproxy apache2 rabbitmq epmd memcached mariadb redis"

# proc_start PID: the process's start time (clock ticks since boot), or nothing
proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }               # the command name, in parentheses, may hold spaces
  # shellcheck disable=SC2086
  set -- $stat                    # fields 3.. of stat: field 22 is the 20th here
  echo "${20}"
}

# runs_as NAME PID: whether PID runs the program of the lab's NAME
runs_as() {
  local exe cmd
  exe=$(readlink "/proc/$2/exe" 2>/dev/null) || return 1
  cmd=$(tr '\0' ' ' < "/proc/$2/cmdline" 2>/dev/null) || return 1
  case "$1" in
    mariadb) [[ $exe == */mariadbd ]] ;;
    memcached) [[ $exe == */memcached ]] ;;
    apache2) [[ $exe == */apache2 ]] ;;
    epmd) [[ $exe == */epmd ]] ;;
    rabbitmq) [[ $exe == */beam.smp ]] ;;
    glance-api) [[ $cmd == "/usr/bin/python3 /usr/bin/glance-api "* ]] ;;
    neutron-server) [[ $cmd == "/usr/bin/python3 /usr/bin/neutron-server "* ]] ;;
    nova-api) [[ $cmd == "/usr/bin/uwsgi_python3"*" --http-socket 127.0.0.1:8774 "* ]] ;;
    nova-conductor) [[ $cmd == "/usr/bin/python3 /usr/bin/nova-conductor "* ]] ;;
    nova-scheduler) [[ $cmd == "/usr/bin/python3 /usr/bin/nova-scheduler "* ]] ;;
    nova-compute) [[ $cmd == "/usr/bin/python3 /usr/local/lib/osflow-lab/nova-compute "* ]] && ! in_netns "$2" ;;
    nova-compute1) [[ $cmd == "/usr/bin/python3 /usr/local/lib/osflow-lab/nova-compute "* ]] && in_netns "$2" ;;
    haproxy) [[ $exe == */haproxy ]] ;;
    # devstack's `uwsgi --procname-prefix NAME --ini …` (the master; its workers are its children): uwsgi
    # renames its processes `NAMEuWSGI master`, `NAMEuWSGI worker 1`, … (their comm stays uwsgi)
    keystone-uwsgi) [[ $exe == */uwsgi-core ]] && [[ $cmd == "keystoneuWSGI master "* || $cmd == *"/uwsgi --procname-prefix keystone "* ]] ;;
    placement-uwsgi) [[ $exe == */uwsgi-core ]] && [[ $cmd == "placementuWSGI master "* || $cmd == *"/uwsgi --procname-prefix placement "* ]] ;;
    # Debian's redis-server is a link to redis-check-rdb; the process names itself redis-server
    redis) [[ $exe == */redis-check-rdb || $exe == */redis-server ]] && [[ $cmd == *redis-server* ]] ;;
    *) return 1 ;;
  esac
}

# in_netns PID: PID runs in the network namespace $NETNS
in_netns() {
  local ns
  ns=$(stat -L -c %i "/run/netns/$NETNS" 2>/dev/null) || return 1
  [ "$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null)" = "$ns" ]
}

# alive NAME: the recorded PID of NAME, when that very process still runs
alive() {
  local pid start
  read -r pid start < <(awk -v n="$1" '$1 == n { p = $2; s = $3 } END { if (p) print p, s }' "$PIDS" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  [ -z "$start" ] || [ "$(proc_start "$pid")" = "$start" ] || return 1
  runs_as "$1" "$pid" && echo "$pid"
}

# record_pid NAME PID: NAME is now PID (replacing any earlier line for NAME)
record_pid() {
  local rest
  rest=$(awk -v n="$1" '$1 != n' "$PIDS" 2>/dev/null)
  { [ -z "$rest" ] || printf '%s\n' "$rest"; echo "$1 $2 $(proc_start "$2")"; } > "$PIDS.new"
  mv "$PIDS.new" "$PIDS"
}

forget_pid() {
  awk -v n="$1" '$1 != n' "$PIDS" > "$PIDS.new" 2>/dev/null || true
  mv "$PIDS.new" "$PIDS"
}

# descendants PID: "pid start" of every process below PID (its workers), deepest last
descendants() {
  local kids k
  kids=$(cat /proc/"$1"/task/*/children 2>/dev/null) || return 0
  for k in $kids; do
    echo "$k $(proc_start "$k")"
    descendants "$k"
  done
}

# stop_service NAME: SIGTERM to the recorded process, SIGKILL after 30 s; then the same for any of its
# workers that outlive it (only those that were its children when we began).  Returns 1 when
# something would not die.
stop_service() {
  local name=$1 pid kids k s start _ status=0
  pid=$(alive "$name") || { awk -v n="$name" '$1 == n { f = 1 } END { exit !f }' "$PIDS" 2>/dev/null \
    && echo "lab: $name no longer runs" >&2; forget_pid "$name"; return 0; }
  kids=$(descendants "$pid")
  start=$(proc_start "$pid")
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 300); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  if [ -d "/proc/$pid" ]; then
    echo "lab: $name (pid $pid) did not stop within 30s: killing it" >&2
    kill -KILL "$pid"
    for _ in $(seq 50); do [ "$(proc_start "$pid")" = "$start" ] || break; sleep 0.1; done
    [ "$(proc_start "$pid")" != "$start" ] || status=1
  fi
  while read -r k s; do
    [ -n "$k" ] && [ "$(proc_start "$k")" = "$s" ] || continue
    for _ in $(seq 50); do [ "$(proc_start "$k")" = "$s" ] || break; sleep 0.1; done
    if [ "$(proc_start "$k")" = "$s" ]; then
      echo "lab: $name's worker (pid $k) outlived it: killing it" >&2
      kill -KILL "$k" 2>/dev/null; sleep 0.2
    fi
  done <<< "$kids"
  [ $status = 0 ] && forget_pid "$name"
  echo "lab: stopped $name (pid $pid)" >&2
  return $status
}

# ---------------------------------------------------------------- the services up.sh and restart.sh start
# as_user USER: the prefix that runs a command as USER, in its home, as Debian's init scripts do
as_user() { echo "setpriv --reuid=$1 --regid=$1 --init-groups env -C /var/lib/$1 HOME=/var/lib/$1"; }

# service_argv NAME: ARGV = the command line that starts NAME (in the foreground, its PID the service's)
service_argv() {
  local uwsgi="" i
  case "$1" in
    epmd) ARGV=(setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/bin/epmd -address 127.0.0.1) ;;
    rabbitmq)
      # RUNNING_UNDER_SYSTEMD: the script execs the Erlang VM instead of waiting on it in a shell
      # shellcheck disable=SC2207
      ARGV=($(as_user rabbitmq) RUNNING_UNDER_SYSTEMD=true ERL_EPMD_ADDRESS=127.0.0.1 /usr/lib/rabbitmq/bin/rabbitmq-server) ;;
    glance-api)
      # shellcheck disable=SC2207
      ARGV=($(as_user glance) /usr/bin/glance-api --config-file /etc/glance/glance-api-paste.ini
            --config-file /etc/glance/glance-api.conf) ;;
    neutron-server)
      # shellcheck disable=SC2207
      ARGV=($(as_user neutron) /usr/bin/neutron-server --config-file /etc/neutron/neutron.conf) ;;
    nova-api)
      for i in 3 35 36 37 38 39 310 311 312 313 314 315; do  # as Debian's init script picks it
        [ -x "/usr/bin/uwsgi_python$i" ] && uwsgi=/usr/bin/uwsgi_python$i
      done
      # uwsgi starts as root and becomes nova itself (uid/gid in the ini)
      ARGV=(env -C /var/lib/nova "$uwsgi" --http-socket 127.0.0.1:8774 --ini /etc/nova/nova-api-uwsgi.ini) ;;
    nova-conductor)
      # shellcheck disable=SC2207
      ARGV=($(as_user nova) /usr/bin/nova-conductor --config-file=/etc/nova/nova.conf
            --config-file=/etc/nova/nova-conductor.conf) ;;
    nova-scheduler)
      # shellcheck disable=SC2207
      ARGV=($(as_user nova) /usr/bin/nova-scheduler --config-file=/etc/nova/nova.conf) ;;
    nova-compute)
      # shellcheck disable=SC2207
      ARGV=($(as_user nova) /usr/local/lib/osflow-lab/nova-compute --config-file=/etc/nova/nova.conf) ;;
    nova-compute1)
      # the compute node: network namespace compute1 (its /etc/netns/compute1/nova/nova.conf is its
      # /etc/nova/nova.conf there) and a UTS namespace whose host name is compute1; every exec keeps the PID
      # shellcheck disable=SC2207
      ARGV=(ip netns exec "$NETNS" unshare --uts sh -c 'hostname compute1 && exec "$@"' sh
            $(as_user nova) /usr/local/lib/osflow-lab/nova-compute --config-file=/etc/nova/nova.conf) ;;
    haproxy) ARGV=(/usr/sbin/haproxy -W -db -f "$HAPROXY_CFG") ;;
    # the devstack shape: as devstack's systemd units start them, as the service's user
    keystone-uwsgi)
      # shellcheck disable=SC2207
      ARGV=($(as_user keystone) /usr/bin/uwsgi --procname-prefix keystone --ini /etc/keystone/keystone-uwsgi-public.ini) ;;
    placement-uwsgi)
      # shellcheck disable=SC2207
      ARGV=($(as_user placement) /usr/bin/uwsgi --procname-prefix placement --ini /etc/placement/placement-uwsgi.ini) ;;
    redis)
      # OSProfiler's store: in memory only; on the controller's address too when compute1 exists
      ARGV=(setpriv --reuid=redis --regid=redis --init-groups /usr/bin/redis-server --port 6379 --save ""
            --appendonly no --daemonize no --bind 127.0.0.1)
      [ ! -e "/run/netns/$NETNS" ] || ARGV+=("$CONTROLLER_IP") ;;
    *) return 1 ;;
  esac
}

# launch NAME: start NAME in its own session (output in $STATE/NAME.log) and record its PID
launch() {
  service_argv "$1" || { echo "lab: error: no command for $1" >&2; return 1; }
  setsid "${ARGV[@]}" </dev/null >>"$STATE/$1.log" 2>&1 &
  record_pid "$1" $!
  echo "lab: started $1 (pid $!)" >&2
}

# amqp_answers: RabbitMQ on 127.0.0.1:5672 answers an AMQP 0-9-1 header with a method frame
amqp_answers() {
  timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672 && printf "AMQP\0\0\x09\x01" >&3 &&
    [ "$(head -c 1 <&3 | od -An -tx1 | tr -d " ")" = 01 ]' 2>/dev/null
}

# amqp_connected PID [NETNS]: PID has a connection to RabbitMQ (an oslo.messaging service is consuming)
amqp_connected() {
  local ns=()
  [ -z "${2:-}" ] || ns=(ip netns exec "$2")
  "${ns[@]}" ss -Htnp state established "dport = :5672" 2>/dev/null | grep "pid=$1," >/dev/null
}

# ready NAME: NAME serves (HTTP answers, the broker speaks AMQP, an RPC service is connected)
ready() {
  local pid at
  case "$1" in
    epmd) ss -Htln "sport = :4369" | grep . >/dev/null ;;
    rabbitmq) amqp_answers ;;
    glance-api) timeout 10 curl -sS -o /dev/null http://127.0.0.1:9292/versions ;;
    neutron-server) timeout 10 curl -fsS -o /dev/null http://127.0.0.1:9696/ ;;
    nova-api) timeout 10 curl -fsS -o /dev/null http://127.0.0.1:8774/ ;;
    nova-conductor|nova-scheduler|nova-compute) pid=$(alive "$1") && amqp_connected "$pid" ;;
    nova-compute1) pid=$(alive "$1") && amqp_connected "$pid" "$NETNS" ;;
    haproxy)  # its first listener answers (the kolla shape's VIP:5000, the TLS shape's public address)
      at=$(awk '$1 == "bind" { print $2; exit }' "$HAPROXY_CFG")
      timeout 5 bash -c "exec 3<>/dev/tcp/${at%:*}/${at##*:}" 2>/dev/null ;;
    keystone-uwsgi) [ -S "$UWSGI_RUN/keystone/keystone-wsgi-public.socket" ] \
      && timeout 10 curl -fsS -o /dev/null http://127.0.0.1/identity/v3 ;;
    placement-uwsgi) [ -S "$UWSGI_RUN/placement/placement-api.socket" ] \
      && timeout 10 curl -fsS -o /dev/null http://127.0.0.1/placement/ ;;
    redis) [ "$(timeout 5 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------- the kolla shape's network
# net_up: network namespace compute1 with lo and eth0 (198.18.0.2/24), its peer osf-ctl here
# (198.18.0.1/24 and the VIP 198.18.0.100/32); no default route anywhere: nothing leaves the machine
net_up() {
  [ -e "/run/netns/$NETNS" ] || ip netns add "$NETNS"
  if ! ip link show "$VETH" >/dev/null 2>&1; then
    ip link add "$VETH" type veth peer name eth0 netns "$NETNS"
  fi
  ip addr replace "$CONTROLLER_IP/24" dev "$VETH"
  ip addr replace "$VIP/32" dev "$VETH"
  ip link set "$VETH" up
  ip netns exec "$NETNS" ip link set lo up
  ip netns exec "$NETNS" ip addr replace "$COMPUTE1_IP/24" dev eth0
  ip netns exec "$NETNS" ip link set eth0 up
}

# net_down: the namespace (and with it the veth pair) and compute1's files in /etc/netns
net_down() {
  if [ -e "/run/netns/$NETNS" ]; then
    ip netns delete "$NETNS" || return 1
    echo "lab: removed network namespace $NETNS and veth $VETH" >&2
  fi
  ! ip link show "$VETH" >/dev/null 2>&1 || ip link delete "$VETH"
  rm -rf "/etc/netns/$NETNS"
  rmdir /etc/netns 2>/dev/null || true
}

# uwsgi_down: the devstack shape's socket folders (uwsgi leaves its socket behind when it stops), once
# neither of its uwsgi processes runs
uwsgi_down() {
  ! alive keystone-uwsgi >/dev/null && ! alive placement-uwsgi >/dev/null || return 0
  rm -rf "$UWSGI_RUN/keystone" "$UWSGI_RUN/placement"
  rmdir "$UWSGI_RUN" 2>/dev/null || true
}
