#!/usr/bin/env bash
# The osflow lab: an OpenStack controller on 127.0.0.1 only, as analysts run it (Debian 12 packages,
# OpenStack Zed): MariaDB 3306, memcached 11211, Apache mod_wsgi with keystone on 5000 (5 daemon
# processes) and placement on 8778 (1 process, keystonemiddleware's token cache in memcached).
#
# Idempotent: installs what is missing, (re)writes the configuration, starts what is not running and
# records the PIDs of what it started in $OSFLOW_LAB_STATE/pids (down.sh stops those, by PID).
# Needs root.  Every password is "openstack".  See tests/lab/README.md.
set -euo pipefail

LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${OSFLOW_LAB_STATE:-/var/lib/osflow-lab}
PASSWORD=openstack
PACKAGES="mariadb-server memcached apache2 libapache2-mod-wsgi-py3 python3-keystone python3-placement
python3-openstackclient python3-osc-placement python3-pymysql python3-memcache"
OPENSTACK=/usr/bin/openstack  # Debian's client: a pip-installed one elsewhere on PATH differs

say() { echo "lab: $*" >&2; }
die() { echo "lab: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root (I install packages and start services)"
mkdir -p "$STATE"
chmod 700 "$STATE"
PIDS=$STATE/pids
touch "$PIDS"

# ---------------------------------------------------------------- packages
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
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

render() {  # template -> file, with the password filled in
  sed "s/@PASSWORD@/$PASSWORD/g" "$LAB/$1" > "$2"
}
render keystone.conf /etc/keystone/keystone.conf
render placement.conf /etc/placement/placement.conf
chown root:keystone /etc/keystone/keystone.conf
chown root:placement /etc/placement/placement.conf
chmod 640 /etc/keystone/keystone.conf /etc/placement/placement.conf

# ---------------------------------------------------------------- process helpers
# alive NAME: the recorded PID of NAME when that process still runs the expected program
alive() {
  local pid exe
  pid=$(awk -v n="$1" '$1 == n { print $2 }' "$PIDS" | tail -1)
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  case "$1:$exe" in
    mariadb:*/mariadbd|memcached:*/memcached|apache2:*/apache2) echo "$pid" ;;
    *) return 1 ;;
  esac
}
record_pid() {
  local rest
  rest=$(awk -v n="$1" '$1 != n' "$PIDS")
  { [ -z "$rest" ] || printf '%s\n' "$rest"; echo "$1 $2"; } > "$PIDS.new"
  mv "$PIDS.new" "$PIDS"
}
port_busy() { ss -Htln "sport = :$1" | grep -q .; }
wait_for() {  # SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "$what did not come up within ${limit}s"
    sleep 0.2
  done
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
CREATE USER IF NOT EXISTS 'keystone'@'localhost' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'keystone'@'%' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'placement'@'localhost' IDENTIFIED BY '$PASSWORD';
CREATE USER IF NOT EXISTS 'placement'@'%' IDENTIFIED BY '$PASSWORD';
GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'localhost';
GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'%';
GRANT ALL PRIVILEGES ON placement.* TO 'placement'@'localhost';
GRANT ALL PRIVILEGES ON placement.* TO 'placement'@'%';
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
  --bootstrap-admin-url http://controller:5000/v3/ \
  --bootstrap-internal-url http://controller:5000/v3/ \
  --bootstrap-public-url http://controller:5000/v3/ \
  --bootstrap-region-id RegionOne >>"$log" 2>&1 || die "keystone-manage bootstrap failed (see $log)"
chown -R keystone:keystone /var/log/keystone
as placement placement-manage db sync >>"$log" 2>&1 || die "placement-manage db sync failed (see $log)"
chown -R placement:placement /var/log/placement

# ---------------------------------------------------------------- Apache
[ -e /etc/apache2/ports.conf.osflow-lab-orig ] || cp -p /etc/apache2/ports.conf /etc/apache2/ports.conf.osflow-lab-orig
cp "$LAB/apache-ports.conf" /etc/apache2/ports.conf
cp "$LAB/apache-keystone.conf" /etc/apache2/sites-available/osflow-lab-keystone.conf
cp "$LAB/apache-placement.conf" /etc/apache2/sites-available/osflow-lab-placement.conf
a2enmod -q wsgi >/dev/null
a2dissite -q 000-default >/dev/null 2>&1 || true
a2ensite -q osflow-lab-keystone osflow-lab-placement >/dev/null
timeout 30 apache2ctl configtest >>"$log" 2>&1 || die "apache2ctl configtest failed (see $log)"
if pid=$(alive apache2); then
  say "Apache runs (pid $pid): reloading its configuration"
  timeout 60 apache2ctl graceful
else
  for port in 5000 8778; do
    port_busy $port && die "port $port is taken by a process this lab did not start: stop it first"
  done
  # apache2ctl daemonises; its pid file names the parent
  rm -f /var/run/apache2/apache2.pid
  timeout 60 apache2ctl start
  wait_for 30 "Apache's pid file" test -s /var/run/apache2/apache2.pid
  record_pid apache2 "$(cat /var/run/apache2/apache2.pid)"
  say "started Apache (pid $(cat /var/run/apache2/apache2.pid))"
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
export OS_AUTH_URL=http://controller:5000/v3
export OS_IDENTITY_API_VERSION=3
export OS_REGION_NAME=RegionOne
EOF
chmod 600 "$OPENRC"
# shellcheck disable=SC1090
source "$OPENRC"
os() { timeout 60 "$OPENSTACK" "$@"; }
wait_for 120 "keystone on http://controller:5000/v3" \
  timeout 10 curl -fsS -o /dev/null http://controller:5000/v3
os project show service >/dev/null 2>&1 || os project create --domain default --description "Service Project" service >/dev/null
os user show --domain default placement >/dev/null 2>&1 || os user create --domain default --password "$PASSWORD" placement >/dev/null
os role add --project service --user placement admin
os service show placement >/dev/null 2>&1 || os service create --name placement --description "Placement API" placement >/dev/null
for iface in public internal admin; do
  [ -n "$(os endpoint list --service placement --interface $iface -f value -c ID)" ] \
    || os endpoint create --region RegionOne placement $iface http://controller:8778 >/dev/null
done
wait_for 120 "placement on http://controller:8778" \
  timeout 10 curl -fsS -o /dev/null http://controller:8778/
os --os-placement-api-version 1.2 resource class list -f value -c name >/dev/null \
  || die "'openstack resource class list' failed"
say "up: keystone http://controller:5000/v3, placement http://controller:8778; credentials: source $OPENRC"
say "PIDs started by the lab: $(tr '\n' ' ' < "$PIDS")"
