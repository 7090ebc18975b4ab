#!/usr/bin/env bash
# The osflow lab: an OpenStack compute control plane on 127.0.0.1 only, as analysts run it (Debian 12
# packages, OpenStack Zed): MariaDB 3306, memcached 11211, Apache mod_wsgi with keystone on 5000 (5
# daemon processes) and placement on 8778 (1 process, keystonemiddleware's token cache in memcached),
# RabbitMQ 5672, glance-api 9292, neutron-server 9696 (API only), nova-api under uwsgi on 8774,
# nova-conductor, nova-scheduler and nova-compute with the fake driver.
#
# Idempotent: installs what is missing, (re)writes the configuration, starts what is not running,
# restarts a service it started whose configuration changed, and records the PIDs of what it started
# in $OSFLOW_LAB_STATE/pids (down.sh stops those, by PID).  Needs root.  Every password is "openstack"
# (RabbitMQ: guest/guest, loopback only).  See tests/lab/README.md.
#
# Variants for recordings (the configuration changes, so the service concerned is restarted):
#   OSFLOW_LAB_FRAME_MAX=4096         RabbitMQ's frame_max (default: RabbitMQ's, 131072)
#   OSFLOW_LAB_KOMBU_COMPRESSION=gzip nova-conductor compresses what it publishes (default: nothing)
#   OSFLOW_LAB_ONLY=identity          stop after keystone and placement (the services after them that
#                                     run are left running: run-e2e.sh stops them with restart.sh --stop)
#   OSFLOW_LAB_SHAPE=kolla            the multi-host shape: network namespace compute1 (198.18.0.2) on a
#                                     veth (osf-ctl, 198.18.0.1 and the VIP 198.18.0.100 here), HAProxy on
#                                     the VIP in front of every API and of MariaDB, the catalog, every
#                                     database connection and auth_url at the VIP, RabbitMQ also on
#                                     198.18.0.1 (user compute1), nova-compute only in compute1 (its own
#                                     UTS name, host = compute1).  Plain up.sh switches back and removes
#                                     the namespace, the veth and HAProxy.
#   OSFLOW_LAB_SHAPE=devstack         keystone and placement only, each under a uwsgi of its own (devstack's
#                                     `uwsgi --procname-prefix NAME --ini …`, unix socket in $UWSGI_RUN/<user>/)
#                                     behind Apache on 127.0.0.1:80 by path prefix (mod_proxy_uwsgi): catalog
#                                     http://controller/identity/v3 and http://controller/placement, placement's
#                                     token checks through /identity.  The compute services are stopped.
#   OSFLOW_LAB_SHAPE=tls              keystone and placement only, as plain, with HAProxy terminating TLS on
#                                     127.0.0.2:13000 (keystone) and :13778 (placement) with a certificate of the
#                                     lab's own CA ($STATE/tls/ca.crt): public endpoints https, internal and admin
#                                     plain; openrc with OS_CACERT and OS_INTERFACE=public.  Compute stopped.
#   OSFLOW_LAB_PROFILER=1             OSProfiler on in every service (redis-server on 6379 as its store,
#                                     trace_sqlalchemy, HMAC key "osflow-lab"): `openstack --os-profile
#                                     osflow-lab …` traces a command (tests/lab/record-profiled.sh)
set -euo pipefail

LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$LAB/lib.sh"
PASSWORD=openstack
FRAME_MAX=${OSFLOW_LAB_FRAME_MAX:-}
KOMBU_COMPRESSION=${OSFLOW_LAB_KOMBU_COMPRESSION:-}
SHAPE=${OSFLOW_LAB_SHAPE:-plain}
PROFILER=${OSFLOW_LAB_PROFILER:-}
# nova-compute itself is not installed: Debian's package pulls libvirt (see nova-compute here)
PACKAGES="mariadb-server memcached apache2 libapache2-mod-wsgi-py3 python3-keystone python3-placement
python3-openstackclient python3-osc-placement python3-pymysql python3-memcache
rabbitmq-server glance-api neutron-server nova-api nova-conductor nova-scheduler python3-nova"
OPENSTACK=/usr/bin/openstack  # Debian's client: a pip-installed one elsewhere on PATH differs

say() { echo "lab: [${SECONDS}s] $*" >&2; }
die() { echo "lab: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root (I install packages and start services)"
# each shape's API host, keystone's and placement's public and internal URLs, the CA a client trusts
CACERT=""
case "$SHAPE" in
  plain|kolla)
    API_HOST=controller
    [ "$SHAPE" = plain ] || { API_HOST=$VIP; PACKAGES="$PACKAGES haproxy"; }
    KEYSTONE_PUBLIC=http://$API_HOST:5000/v3 KEYSTONE_INTERNAL=http://$API_HOST:5000/v3
    PLACEMENT_PUBLIC=http://$API_HOST:8778 PLACEMENT_INTERNAL=http://$API_HOST:8778 ;;
  devstack)
    API_HOST=controller PACKAGES="$PACKAGES uwsgi-core uwsgi-plugin-python3"
    KEYSTONE_PUBLIC=http://controller/identity/v3 KEYSTONE_INTERNAL=http://controller/identity/v3
    PLACEMENT_PUBLIC=http://controller/placement PLACEMENT_INTERNAL=http://controller/placement ;;
  tls)
    API_HOST=controller PACKAGES="$PACKAGES haproxy openssl" CACERT=$TLS_DIR/ca.crt
    KEYSTONE_PUBLIC=https://$PUBLIC_IP:$TLS_KEYSTONE_PORT/v3 KEYSTONE_INTERNAL=http://controller:5000/v3
    PLACEMENT_PUBLIC=https://$PUBLIC_IP:$TLS_PLACEMENT_PORT PLACEMENT_INTERNAL=http://controller:8778 ;;
  *) die "OSFLOW_LAB_SHAPE must be plain, kolla, devstack or tls, not '$SHAPE'" ;;
esac
[ -z "$PROFILER" ] || PACKAGES="$PACKAGES redis-server python3-redis python3-osprofiler"
mkdir -p "$STATE"
chmod 700 "$STATE"
touch "$PIDS"

# ---------------------------------------------------------------- packages
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing$missing"
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep the packages' scripts from starting services
    printf '#!/bin/sh\n# osflow lab: keep package scripts from starting services\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  timeout 900 apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y -qq --no-install-recommends $missing >/dev/null
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

# ---------------------------------------------------------------- system
grep -Eq '^127\.0\.0\.1([[:space:]].*)?[[:space:]]controller([[:space:]]|$)' /etc/hosts \
  || { say "adding 'controller' -> 127.0.0.1 to /etc/hosts"; echo "127.0.0.1 controller  # osflow lab" >> /etc/hosts; }

for u in keystone placement; do
  # mod_wsgi daemons need an existing home folder, or they restart forever and requests hang
  id "$u" >/dev/null 2>&1 || useradd --system --user-group --home-dir "/var/lib/$u" --shell /usr/sbin/nologin "$u"
  mkdir -p "/var/lib/$u" "/var/log/$u" "/etc/$u"
  chown "$u:$u" "/var/lib/$u" "/var/log/$u"
  chmod 750 "/var/lib/$u"
done

CHANGED=" "   # the configuration files this run changed
# OSProfiler's section, in every service's configuration with OSFLOW_LAB_PROFILER (compute1 reaches
# the store on the controller's address)
PROFILER_SECTION=""
[ -z "$PROFILER" ] || PROFILER_SECTION="[profiler]
enabled = true
hmac_keys = $PROFILER_KEY
connection_string = redis://controller:6379
trace_sqlalchemy = true"
# keystone behind the TLS shape's HAProxy: its links say https (X-Forwarded-Proto)
OSLO_MIDDLEWARE=""
[ "$SHAPE" != tls ] || OSLO_MIDDLEWARE="[oslo_middleware]
enable_proxy_headers_parsing = true"
render() {  # template -> file, with the password (and the variants) filled in; notes a change
  local new kolla=()
  # the kolla shape: every API URL and database connection at the VIP (memcached stays on 127.0.0.1)
  [ "$SHAPE" != kolla ] || kolla=(-e "s#//controller:#//$VIP:#g" -e "s#@controller/#@$VIP/#g"
    -e "s/@LISTENER2@/listeners.tcp.2 = $CONTROLLER_IP:5672/")
  # the devstack shape: keystone at /identity on Apache's port 80
  [ "$SHAPE" != devstack ] || kolla=(-e "s#//controller:5000/v3#//controller/identity/v3#g"
    -e "s#//controller:5000/#//controller/identity/#g")
  new=$(sed -e "s/@PASSWORD@/$PASSWORD/g" \
    -e "s/@FRAME_MAX@/${FRAME_MAX:+frame_max = $FRAME_MAX}/" \
    -e "s/@KOMBU_COMPRESSION@/${KOMBU_COMPRESSION:+kombu_compression = $KOMBU_COMPRESSION}/" \
    "${kolla[@]}" -e "s/@LISTENER2@//" -e "s/@VIP@/$VIP/g" \
    -e "s/@PUBLIC_IP@/$PUBLIC_IP/g" -e "s#@TLS_DIR@#$TLS_DIR#g" -e "s/@TLS_KEYSTONE_PORT@/$TLS_KEYSTONE_PORT/g" \
    -e "s/@TLS_PLACEMENT_PORT@/$TLS_PLACEMENT_PORT/g" "$LAB/$1")
  new=${new//@PROFILER@/$PROFILER_SECTION}
  new=${new//@OSLO_MIDDLEWARE@/$OSLO_MIDDLEWARE}
  [ "$SHAPE" != kolla ] || new=${new//redis:\/\/controller:6379/redis:\/\/$CONTROLLER_IP:6379}
  if [ ! -e "$2" ] || [ "$new" != "$(cat "$2")" ]; then
    printf '%s\n' "$new" > "$2"
    CHANGED="$CHANGED$2 "
  fi
}
changed() { local f; for f; do [[ $CHANGED == *" $f "* ]] && return 0; done; return 1; }
render keystone.conf /etc/keystone/keystone.conf
render placement.conf /etc/placement/placement.conf
chown root:keystone /etc/keystone/keystone.conf
chown root:placement /etc/placement/placement.conf
chmod 640 /etc/keystone/keystone.conf /etc/placement/placement.conf

# the compute services' users come with their packages (nova, glance, neutron, rabbitmq)
install -d -o nova -g nova /var/lib/nova/tmp /var/lib/nova/instances
install -d -o glance -g glance /var/lib/glance/images /var/lib/glance/tmp
install -d -o neutron -g neutron /var/lib/neutron/tmp
install -d -o glance -g glance /var/log/glance
install -d -o neutron -g neutron /var/log/neutron
install -d -o nova -g nova /var/log/nova
render nova.conf /etc/nova/nova.conf
render nova-conductor.conf /etc/nova/nova-conductor.conf
render glance-api.conf /etc/glance/glance-api.conf
render neutron.conf /etc/neutron/neutron.conf
chown root:nova /etc/nova/nova.conf /etc/nova/nova-conductor.conf
chown root:glance /etc/glance/glance-api.conf
chown root:neutron /etc/neutron/neutron.conf
chmod 640 /etc/nova/nova.conf /etc/nova/nova-conductor.conf /etc/glance/glance-api.conf /etc/neutron/neutron.conf
# nova-api under uwsgi as Debian's init script runs it, with 2 processes instead of 16
if ! grep -q '^processes = 2$' /etc/nova/nova-api-uwsgi.ini; then
  sed -i 's/^processes = .*/processes = 2/' /etc/nova/nova-api-uwsgi.ini
  CHANGED="$CHANGED/etc/nova/nova-api-uwsgi.ini "
fi
# uwsgi's --http-socket closes every connection after its response without saying so; a response
# without a body (DELETE's 204) leaves the client's connection in its pool, and the next request on it
# (server delete --wait's first poll) meets a closed socket: "Connection reset by peer".  Say it.
if ! grep -q '^add-header = Connection: close$' /etc/nova/nova-api-uwsgi.ini; then
  echo 'add-header = Connection: close' >> /etc/nova/nova-api-uwsgi.ini
  CHANGED="$CHANGED/etc/nova/nova-api-uwsgi.ini "
fi
render rabbitmq.conf /etc/rabbitmq/rabbitmq.conf
render rabbitmq-env.conf /etc/rabbitmq/rabbitmq-env.conf
chmod 644 /etc/rabbitmq/rabbitmq.conf /etc/rabbitmq/rabbitmq-env.conf
# the launcher for nova-compute (python3-nova's entry point; the nova-compute package pulls libvirt)
install -d /usr/local/lib/osflow-lab
if ! cmp -s "$LAB/nova-compute" /usr/local/lib/osflow-lab/nova-compute; then
  install -m 755 "$LAB/nova-compute" /usr/local/lib/osflow-lab/nova-compute
  CHANGED="$CHANGED/usr/local/lib/osflow-lab/nova-compute "
fi

# ---------------------------------------------------------------- process helpers
# port_busy PORT: a process listens on PORT (HAProxy's listener on the VIP is not in the way)
port_busy() { ss -Htln "sport = :$1" | awk -v vip="$VIP:$1" -v pub="$PUBLIC_IP:$1" '$4 != vip && $4 != pub' | grep . >/dev/null; }
wait_for() {  # SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "$what did not come up within ${limit}s"
    sleep 0.2
  done
}

# ensure NAME PORT CONFIG...: start NAME unless it runs; restart it when this run changed one of its
# configuration files (a variant, or a new lab version); then wait until it serves
ensure() {
  local name=$1 port=$2 pid; shift 2
  if pid=$(alive "$name"); then
    if changed "$@"; then
      say "$name (pid $pid): its configuration changed: restarting it"
      stop_service "$name" || die "$name (pid $pid) would not stop"
    else
      say "$name runs (pid $pid)"
    fi
  fi
  if ! alive "$name" >/dev/null; then
    [ "$port" = - ] || ! port_busy "$port" || die "port $port is taken by a process this lab did not start: stop it first"
    launch "$name"
  fi
  wait_for 180 "$name (log: $STATE/$name.log)" ready "$name"
}
# ---------------------------------------------------------------- MariaDB
if pid=$(alive mariadb); then
  say "MariaDB runs (pid $pid)"
else
  port_busy 3306 && die "port 3306 is taken by a process this lab did not start: stop it first"
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  install -d -o mysql -g mysql /run/mysqld
  setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 \
    </dev/null >>"$STATE/mariadb.log" 2>&1 &
  record_pid mariadb $!
  say "started MariaDB (pid $!)"
fi
wait_for 60 "MariaDB" timeout 5 mariadb-admin --protocol=socket ping
timeout 30 mariadb --protocol=socket <<EOF
CREATE DATABASE IF NOT EXISTS keystone;
CREATE DATABASE IF NOT EXISTS placement;
CREATE DATABASE IF NOT EXISTS glance;
CREATE DATABASE IF NOT EXISTS neutron;
CREATE DATABASE IF NOT EXISTS nova_api;
CREATE DATABASE IF NOT EXISTS nova;
CREATE DATABASE IF NOT EXISTS nova_cell0;
CREATE USER IF NOT EXISTS 'keystone'@'localhost' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'keystone'@'%' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'placement'@'localhost' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'placement'@'%' IDENTIFIED BY '$PASSWORD';
GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'localhost';
GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'%';
GRANT ALL PRIVILEGES ON placement.* TO 'placement'@'localhost';
GRANT ALL PRIVILEGES ON placement.* TO 'placement'@'%';
CREATE USER IF NOT EXISTS 'glance'@'localhost' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'glance'@'%' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'neutron'@'localhost' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'neutron'@'%' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'nova'@'localhost' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'nova'@'%' IDENTIFIED BY '$PASSWORD';
GRANT ALL PRIVILEGES ON glance.* TO 'glance'@'localhost';
GRANT ALL PRIVILEGES ON glance.* TO 'glance'@'%';
GRANT ALL PRIVILEGES ON neutron.* TO 'neutron'@'localhost';
GRANT ALL PRIVILEGES ON neutron.* TO 'neutron'@'%';
GRANT ALL PRIVILEGES ON nova_api.* TO 'nova'@'localhost';
GRANT ALL PRIVILEGES ON nova_api.* TO 'nova'@'%';
GRANT ALL PRIVILEGES ON nova.* TO 'nova'@'localhost';
GRANT ALL PRIVILEGES ON nova.* TO 'nova'@'%';
GRANT ALL PRIVILEGES ON nova_cell0.* TO 'nova'@'localhost';
GRANT ALL PRIVILEGES ON nova_cell0.* TO 'nova'@'%';
CREATE USER IF NOT EXISTS 'haproxy'@'localhost';
CREATE USER IF NOT EXISTS 'haproxy'@'%';
FLUSH PRIVILEGES;
EOF

# ---------------------------------------------------------------- memcached
if pid=$(alive memcached); then
  say "memcached runs (pid $pid)"
else
  port_busy 11211 && die "port 11211 is taken by a process this lab did not start: stop it first"
  setsid /usr/bin/memcached -u memcache -l 127.0.0.1 -p 11211 -U 0 </dev/null >>"$STATE/memcached.log" 2>&1 &
  record_pid memcached $!
  say "started memcached (pid $!)"
fi
wait_for 30 "memcached" timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211'

# ---------------------------------------------------------------- the kolla shape: compute1's network, HAProxy
if [ "$SHAPE" = kolla ]; then
  net_up
  install -d "/etc/netns/$NETNS/nova"
  render compute1-hosts "/etc/netns/$NETNS/hosts"
  chmod 644 "/etc/netns/$NETNS/hosts"
  render nova-compute1.conf "/etc/netns/$NETNS/nova/nova.conf"
  chown root:nova "/etc/netns/$NETNS/nova/nova.conf"
  chmod 640 "/etc/netns/$NETNS/nova/nova.conf"
  render haproxy.cfg "$HAPROXY_CFG"
  timeout 30 haproxy -c -q -f "$HAPROXY_CFG" >>"$STATE/haproxy.log" 2>&1 || die "haproxy -c failed (see $STATE/haproxy.log)"
  ensure haproxy - "$HAPROXY_CFG"
  wait_for 60 "MariaDB through HAProxy on $VIP:3306" \
    timeout 5 mariadb --host="$VIP" --user=keystone --password="$PASSWORD" --execute="SELECT 1"
fi

# ---------------------------------------------------------------- Redis: OSProfiler's store
if [ -n "$PROFILER" ]; then
  ensure redis 6379
fi

# ---------------------------------------------------------------- keystone and placement databases
# keystone-manage / placement-manage print a harmless eventlet traceback at exit: logged, not shown
as() { local u=$1; shift; timeout 300 setpriv --reuid="$u" --regid="$u" --init-groups env HOME="/var/lib/$u" "$@"; }
log=$STATE/manage.log
: > "$log"
as keystone keystone-manage db_sync >>"$log" 2>&1 || die "keystone-manage db_sync failed (see $log)"
install -d -o keystone -g keystone -m 700 /etc/keystone/fernet-keys /etc/keystone/credential-keys
[ -e /etc/keystone/fernet-keys/0 ] \
  || timeout 120 keystone-manage fernet_setup --keystone-user keystone --keystone-group keystone >>"$log" 2>&1 \
  || die "keystone-manage fernet_setup failed (see $log)"
[ -e /etc/keystone/credential-keys/0 ] \
  || timeout 120 keystone-manage credential_setup --keystone-user keystone --keystone-group keystone >>"$log" 2>&1 \
  || die "keystone-manage credential_setup failed (see $log)"
timeout 300 keystone-manage bootstrap --bootstrap-password "$PASSWORD" \
  --bootstrap-admin-url "$KEYSTONE_INTERNAL/" \
  --bootstrap-internal-url "$KEYSTONE_INTERNAL/" \
  --bootstrap-public-url "$KEYSTONE_PUBLIC/" \
  --bootstrap-region-id RegionOne >>"$log" 2>&1 || die "keystone-manage bootstrap failed (see $log)"
chown -R keystone:keystone /var/log/keystone
as placement placement-manage db sync >>"$log" 2>&1 || die "placement-manage db sync failed (see $log)"
chown -R placement:placement /var/log/placement

# ---------------------------------------------------------------- Apache
# plain, kolla, tls: keystone and placement under mod_wsgi on 5000 and 8778; devstack: port 80 only, each
# prefix proxied to the service's own uwsgi (started below)
if [ "$SHAPE" = devstack ]; then
  ports_conf=apache-ports-devstack.conf sites_on="osflow-lab-devstack" listen="80"
  sites_off="osflow-lab-keystone osflow-lab-placement"
else
  ports_conf=apache-ports.conf sites_on="osflow-lab-keystone osflow-lab-placement" listen="5000 8778"
  sites_off="osflow-lab-devstack"
  for name in placement-uwsgi keystone-uwsgi; do  # back from the devstack shape
    stop_service "$name" || die "$name would not stop"
  done
  uwsgi_down
fi
[ -e /etc/apache2/ports.conf.osflow-lab-orig ] || cp -p /etc/apache2/ports.conf /etc/apache2/ports.conf.osflow-lab-orig
ports_changed=""
cmp -s "$LAB/$ports_conf" /etc/apache2/ports.conf || ports_changed=1
cp "$LAB/$ports_conf" /etc/apache2/ports.conf
cp "$LAB/apache-keystone.conf" /etc/apache2/sites-available/osflow-lab-keystone.conf
cp "$LAB/apache-placement.conf" /etc/apache2/sites-available/osflow-lab-placement.conf
cp "$LAB/apache-devstack.conf" /etc/apache2/sites-available/osflow-lab-devstack.conf
a2enmod -q wsgi >/dev/null
[ "$SHAPE" != devstack ] || a2enmod -q proxy proxy_uwsgi >/dev/null
# shellcheck disable=SC2086
a2dissite -q 000-default $sites_off >/dev/null 2>&1 || true
# shellcheck disable=SC2086
a2ensite -q $sites_on >/dev/null
timeout 30 apache2ctl configtest >>"$log" 2>&1 || die "apache2ctl configtest failed (see $log)"
if pid=$(alive apache2); then
  if [ -n "$ports_changed" ]; then  # other ports: a restart (SIGHUP; the parent, our PID, stays)
    say "Apache runs (pid $pid): restarting it on its new ports ($listen)"
    timeout 60 apache2ctl restart
  else
    say "Apache runs (pid $pid): reloading its configuration"
    timeout 60 apache2ctl graceful
  fi
else
  for port in $listen; do
    port_busy $port && die "port $port is taken by a process this lab did not start: stop it first"
  done
  # apache2ctl daemonises; its pid file names the parent
  rm -f /var/run/apache2/apache2.pid
  timeout 60 apache2ctl start
  wait_for 30 "Apache's pid file" test -s /var/run/apache2/apache2.pid
  record_pid apache2 "$(cat /var/run/apache2/apache2.pid)"
  say "started Apache (pid $(cat /var/run/apache2/apache2.pid))"
fi

# ---------------------------------------------------------------- the devstack shape: uwsgi
# Each service's socket in a folder its user owns (uwsgi runs as that user from the start, as devstack's
# units run it); the socket itself is 666 (chmod-socket) for Apache's www-data.
if [ "$SHAPE" = devstack ]; then
  install -d -m 755 "$UWSGI_RUN"
  render keystone-uwsgi-public.ini /etc/keystone/keystone-uwsgi-public.ini
  render placement-uwsgi.ini /etc/placement/placement-uwsgi.ini
  chmod 644 /etc/keystone/keystone-uwsgi-public.ini /etc/placement/placement-uwsgi.ini
  for u in keystone placement; do install -d -o "$u" -g "$u" -m 755 "$UWSGI_RUN/$u"; done
  ensure keystone-uwsgi - /etc/keystone/keystone-uwsgi-public.ini /etc/keystone/keystone.conf
  ensure placement-uwsgi - /etc/placement/placement-uwsgi.ini /etc/placement/placement.conf
fi

# ---------------------------------------------------------------- back from the kolla shape
# What the kolla shape started and made, if it is there.  The services it configured for the VIP
# are stopped first (the ones after Apache start again below with the plain configuration), then
# HAProxy, then the VIP goes: a service still configured for it must never find the VIP gone (its
# connections would follow the default route off the machine).
if [ "$SHAPE" != kolla ] && { [ -e "/run/netns/$NETNS" ] || { [ "$SHAPE" != tls ] && alive haproxy >/dev/null; }; }; then
  for name in nova-compute1 nova-compute nova-scheduler nova-conductor nova-api neutron-server glance-api haproxy; do
    stop_service "$name" || die "$name would not stop"
  done
  net_down || die "could not remove network namespace $NETNS"
fi
# the devstack and TLS shapes are keystone and placement only: the compute services (configured for the
# other shapes' URLs) are stopped; plain up.sh starts them again
if [ "$SHAPE" = devstack ] || [ "$SHAPE" = tls ]; then
  for name in nova-compute1 nova-compute nova-scheduler nova-conductor nova-api neutron-server glance-api; do
    stop_service "$name" || die "$name would not stop"
  done
fi

# ---------------------------------------------------------------- the TLS shape: HAProxy with the lab's CA
if [ "$SHAPE" = tls ]; then
  install -d -m 700 "$TLS_DIR"
  if [ ! -s "$TLS_DIR/ca.crt" ]; then
    timeout 60 openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=osflow lab CA" \
      -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" >>"$log" 2>&1 || die "openssl could not make the CA (see $log)"
    rm -f "$TLS_DIR/controller.pem"
  fi
  if [ ! -s "$TLS_DIR/controller.pem" ]; then  # the public address's certificate, signed by the CA
    printf 'subjectAltName = IP:%s\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n' \
      "$PUBLIC_IP" > "$TLS_DIR/controller.ext"
    timeout 60 openssl req -newkey rsa:2048 -nodes -subj "/CN=$PUBLIC_IP" -keyout "$TLS_DIR/controller.key" \
      -out "$TLS_DIR/controller.csr" >>"$log" 2>&1 \
      && timeout 60 openssl x509 -req -in "$TLS_DIR/controller.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
        -CAcreateserial -days 3650 -extfile "$TLS_DIR/controller.ext" -out "$TLS_DIR/controller.crt" >>"$log" 2>&1 \
      || die "openssl could not make the certificate (see $log)"
    cat "$TLS_DIR/controller.crt" "$TLS_DIR/controller.key" > "$TLS_DIR/controller.pem"
    chmod 600 "$TLS_DIR/controller.pem" "$TLS_DIR/controller.key" "$TLS_DIR/ca.key"
  fi
  render haproxy-tls.cfg "$HAPROXY_CFG"
  timeout 30 haproxy -c -q -f "$HAPROXY_CFG" >>"$STATE/haproxy.log" 2>&1 || die "haproxy -c failed (see $STATE/haproxy.log)"
  ensure haproxy - "$HAPROXY_CFG"
fi

# ---------------------------------------------------------------- OpenStack resources
OPENRC=$STATE/openrc
cat > "$OPENRC" <<EOF
# osflow lab: admin credentials (written by tests/lab/up.sh)
export OS_USERNAME=admin
export OS_PASSWORD=$PASSWORD
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_AUTH_URL=$KEYSTONE_PUBLIC
export OS_IDENTITY_API_VERSION=3
export OS_REGION_NAME=RegionOne
EOF
[ -z "$CACERT" ] || printf 'export OS_CACERT=%s\nexport OS_INTERFACE=public\n' "$CACERT" >> "$OPENRC"
chmod 600 "$OPENRC"
# shellcheck disable=SC1090
source "$OPENRC"
# 180 s: on a machine whose 2 cores are loaded, a call right after a service restart took over 60 s
os() { timeout 180 "$OPENSTACK" "$@"; }
curl_ca=()
[ -z "$CACERT" ] || curl_ca=(--cacert "$CACERT")
wait_for 120 "keystone on $KEYSTONE_PUBLIC" timeout 10 curl -fsS "${curl_ca[@]}" -o /dev/null "$KEYSTONE_PUBLIC"
# each openstack command takes ~3 s (a token from keystone first): list once, create only what is missing
projects=$(os project list -f value -c Name)
grep -qx service <<< "$projects" || os project create --domain default --description "Service Project" service >/dev/null
users=$(os user list --domain default -f value -c Name)
admins=$(os role assignment list --project service --role admin --names -f value -c User)
services=$(os service list -f value -c Type)
endpoints=$(os endpoint list -f value -c ID -c "Service Type" -c Interface -c URL)
# service_user NAME TYPE DESCRIPTION URL [PUBLIC_URL]: a user in project service (role admin), a service,
# 3 endpoints (the public one at PUBLIC_URL when given)
service_user() {
  local name=$1 type=$2 desc=$3 url=$4 iface
  grep -qx "$name" <<< "$users" || os user create --domain default --password "$PASSWORD" "$name" >/dev/null
  grep -qx "$name@Default" <<< "$admins" || os role add --project service --user "$name" admin
  grep -qx "$type" <<< "$services" || os service create --name "$name" --description "$desc" "$type" >/dev/null
  for iface in public internal admin; do
    url=$4
    [ $iface != public ] || url=${5:-$4}
    id="" now=""
    read -r id now < <(awk -v t="$type" -v i="$iface" '$2 == t && $3 == i { print $1, $4 }' <<< "$endpoints") || true
    if [ -z "$id" ]; then
      os endpoint create --region RegionOne "$type" $iface "$url" >/dev/null
    elif [ "$now" != "$url" ]; then  # the other shape's URL
      os endpoint set --url "$url" "$id"
    fi
  done
}
service_user placement placement "Placement API" "$PLACEMENT_INTERNAL" "$PLACEMENT_PUBLIC"
service_user glance image "OpenStack Image" "http://$API_HOST:9292"
service_user neutron network "OpenStack Networking" "http://$API_HOST:9696"
service_user nova compute "OpenStack Compute" "http://$API_HOST:8774/v2.1"
wait_for 120 "placement on $PLACEMENT_PUBLIC" timeout 10 curl -fsS "${curl_ca[@]}" -o /dev/null "$PLACEMENT_PUBLIC/"
os --os-placement-api-version 1.2 resource class list -f value -c name >/dev/null \
  || die "'openstack resource class list' failed"

if [ "${OSFLOW_LAB_ONLY:-}" = identity ] || [ "$SHAPE" = devstack ] || [ "$SHAPE" = tls ]; then
  # run-e2e.sh: the keystone/placement lab of test_lab.py; the devstack and TLS shapes
  say "up ($SHAPE, keystone and placement only): keystone $KEYSTONE_PUBLIC, placement $PLACEMENT_PUBLIC; credentials: source $OPENRC"
  say "PIDs started by the lab: $(tr '\n' ' ' < "$PIDS")"
  exit 0
fi

# ---------------------------------------------------------------- compute: the services
AS_LONG() { local u=$1; shift; timeout 900 setpriv --reuid="$u" --regid="$u" --init-groups env HOME="/var/lib/$u" "$@"; }

# RabbitMQ: epmd (Erlang's port mapper) on 127.0.0.1:4369 first, so the broker does not start its own
# on every address
if pid=$(alive epmd); then
  say "epmd runs (pid $pid)"
elif port_busy 4369; then
  say "an epmd the lab did not start listens on 4369: RabbitMQ uses it"
else
  launch epmd
  wait_for 30 "epmd" ready epmd
fi
ensure rabbitmq 5672 /etc/rabbitmq/rabbitmq.conf /etc/rabbitmq/rabbitmq-env.conf
if [ "$SHAPE" = kolla ]; then  # compute1's user (guest may log in from loopback only)
  rabbitmqctl() { timeout 120 setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups env HOME=/var/lib/rabbitmq /usr/sbin/rabbitmqctl "$@"; }
  rabbit_users=$(rabbitmqctl -q list_users 2>>"$log") || die "rabbitmqctl list_users failed (see $log)"
  if ! grep -q '^compute1[[:space:]]' <<< "$rabbit_users"; then
    rabbitmqctl add_user compute1 "$PASSWORD" >>"$log" 2>&1 || die "rabbitmqctl add_user failed (see $log)"
    rabbitmqctl set_permissions -p / compute1 '.*' '.*' '.*' >>"$log" 2>&1 || die "rabbitmqctl set_permissions failed (see $log)"
  fi
fi

AS_LONG glance glance-manage db_sync >>"$log" 2>&1 || die "glance-manage db_sync failed (see $log)"
ensure glance-api 9292 /etc/glance/glance-api.conf

AS_LONG neutron neutron-db-manage --config-file /etc/neutron/neutron.conf upgrade head >>"$log" 2>&1 \
  || die "neutron-db-manage upgrade head failed (see $log)"
ensure neutron-server 9696 /etc/neutron/neutron.conf
# the kolla shape: HAProxy sends nothing to neutron-server until two health checks (2 s apart) saw it up
wait_for 60 "neutron-server on http://$API_HOST:9696" timeout 10 curl -fsS -o /dev/null "http://$API_HOST:9696/"
# neutron-server Zed: the first port list after a start fails until any other call has configured the
# ORM ("Port has no attribute port_forwardings"): a network list does it
os network list -f value -c ID >/dev/null || die "'openstack network list' failed (see /var/log/neutron/)"

# nova's cells: the API database, cell0, cell1, then the cell database
AS_LONG nova nova-manage api_db sync >>"$log" 2>&1 || die "nova-manage api_db sync failed (see $log)"
AS_LONG nova nova-manage cell_v2 map_cell0 >>"$log" 2>&1 || die "nova-manage cell_v2 map_cell0 failed (see $log)"
cells=$(AS_LONG nova nova-manage cell_v2 list_cells 2>>"$log") || die "nova-manage cell_v2 list_cells failed (see $log)"
if ! grep -q ' cell1 ' <<< "$cells"; then
  AS_LONG nova nova-manage cell_v2 create_cell --name=cell1 >>"$log" 2>&1 || die "nova-manage cell_v2 create_cell failed (see $log)"
fi
# the cell mappings hold database URLs too: the shape's (else the conductor reaches around HAProxy)
timeout 30 mariadb --protocol=socket nova_api <<EOF || die "could not update nova's cell mappings"
UPDATE cell_mappings SET database_connection = 'mysql+pymysql://nova:$PASSWORD@$API_HOST/nova_cell0'
  WHERE uuid = '00000000-0000-0000-0000-000000000000';
UPDATE cell_mappings SET database_connection = 'mysql+pymysql://nova:$PASSWORD@$API_HOST/nova'
  WHERE name = 'cell1';
EOF
AS_LONG nova nova-manage db sync >>"$log" 2>&1 || die "nova-manage db sync failed (see $log)"
chown -R nova:nova /var/log/nova
NOVA_CONF=(/etc/nova/nova.conf /usr/local/lib/osflow-lab/nova-compute)
ensure nova-conductor - /etc/nova/nova.conf /etc/nova/nova-conductor.conf
ensure nova-scheduler - /etc/nova/nova.conf
ensure nova-api 8774 /etc/nova/nova.conf /etc/nova/nova-api-uwsgi.ini
if [ "$SHAPE" = kolla ]; then  # nova-compute runs on compute1 only
  COMPUTE_HOST=compute1 OTHER_HOST=controller
  stop_service nova-compute || die "nova-compute would not stop"
  ensure nova-compute1 - "${NOVA_CONF[@]}" "/etc/netns/$NETNS/nova/nova.conf"
else
  COMPUTE_HOST=controller OTHER_HOST=compute1
  ensure nova-compute - "${NOVA_CONF[@]}"
fi

# ---------------------------------------------------------------- compute: the host, flavors, an image
host_up() { [ "$(os compute service list --service nova-compute --host "$COMPUTE_HOST" -f value -c State)" = up ]; }
wait_for 180 "nova-compute on host $COMPUTE_HOST (state up in 'openstack compute service list')" host_up
AS_LONG nova nova-manage cell_v2 discover_hosts >>"$log" 2>&1 || die "nova-manage cell_v2 discover_hosts failed (see $log)"
provider() { os resource provider list --name "$COMPUTE_HOST" -f value -c uuid | grep . >/dev/null; }
wait_for 120 "the resource provider of host $COMPUTE_HOST in placement" provider
# servers land on the shape's compute host: the other one's service (if it was ever registered) is
# disabled, this one's enabled; back in the plain shape compute1's service (with its compute node
# and resource provider) is deleted, so the lab is the plain one again
if [ "$SHAPE" = plain ]; then
  for id in $(os compute service list --service nova-compute --host compute1 -f value -c ID); do
    os compute service delete "$id" || die "could not delete compute1's compute service"
  done
fi
compute_services=$(os compute service list --service nova-compute -f value -c Host -c Status)
grep -qx "$COMPUTE_HOST enabled" <<< "$compute_services" || os compute service set --enable "$COMPUTE_HOST" nova-compute >/dev/null
! grep -qx "$OTHER_HOST enabled" <<< "$compute_services" || os compute service set --disable "$OTHER_HOST" nova-compute >/dev/null
# m1.nano for servers that build; m1.toobig (2 TiB of RAM: more than the fake host's 800,000 MB
# even with the 1.5 allocation ratio) for NoValidHost; quotas lifted so only the host says no
flavors=$(os flavor list --all -f value -c Name)
grep -qx m1.nano <<< "$flavors" || os flavor create --id 0 --vcpus 1 --ram 64 --disk 1 m1.nano >/dev/null
grep -qx m1.toobig <<< "$flavors" || os flavor create --vcpus 1 --ram 2097152 --disk 1 m1.toobig >/dev/null
[ "$(os quota show admin -f value -c ram)" = -1 ] || os quota set --instances -1 --cores -1 --ram -1 admin
image=$(os image list --name tiny -f value -c Status)
if [ -z "$image" ]; then
  head -c 1048576 /dev/zero > "$STATE/tiny.img"
  # (openstackclient 6.0.0 shows the image as created, "queued", before its upload: list it again)
  os image create --disk-format raw --container-format bare --public --file "$STATE/tiny.img" tiny >/dev/null
  image=$(os image list --name tiny -f value -c Status)
fi
[ "$image" = active ] || die "image tiny is not active (status: $image)"
say "up ($SHAPE): keystone http://$API_HOST:5000/v3, placement http://$API_HOST:8778, glance :9292, neutron :9696, nova :8774, RabbitMQ 127.0.0.1:5672; compute host $COMPUTE_HOST; credentials: source $OPENRC"
say "PIDs started by the lab: $(tr '\n' ' ' < "$PIDS")"
