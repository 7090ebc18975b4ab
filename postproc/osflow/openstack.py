"""What osflow knows about OpenStack besides its ports (those are in :mod:`osflow.portmap`).

One place for the facts the stages share, and the ones the Wireshark plugin
(``dissectors/osflow.lua``) knows too — the token headers, the MySQL command names,
the User-Agent rules: ``tests/test_shared_truth.py`` checks that both sides agree.

* process command lines -> service (:func:`service_of_command`);
* User-Agents -> service (:func:`service_of_user_agent`);
* the tables each service's queries touch (:data:`SERVICE_TABLES`, :func:`tables_in`);
* the headers that carry tokens (:data:`TOKEN_HEADERS`);
* MySQL's command codes (:data:`MYSQL_COMMANDS`);
* the services behind one web server's path prefixes: devstack's (:data:`ENDPOINT_PREFIXES`), the
  keystone catalog's service types (:data:`SERVICE_TYPES`), endpoints (:class:`Endpoint`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

# --------------------------------------------------------------------------- tokens

#: HTTP headers that carry a keystone token (Swift's X-Storage-Token is an auth token too).
TOKEN_HEADERS = ("X-Auth-Token", "X-Subject-Token", "X-Service-Token", "X-Storage-Token")

# --------------------------------------------------------------------------- MySQL

#: COM_* codes (``mysql.command``) -> osflow's command names (the COM_ name in lower case).
MYSQL_COMMANDS = {
    0: "sleep",
    1: "quit",
    2: "init_db",
    3: "query",
    4: "field_list",
    5: "create_db",
    6: "drop_db",
    7: "refresh",
    8: "shutdown",
    9: "statistics",
    10: "process_info",
    12: "process_kill",
    13: "debug",
    14: "ping",
    17: "change_user",
    22: "stmt_prepare",
    23: "stmt_execute",
    24: "stmt_send_long_data",
    25: "stmt_close",
    26: "stmt_reset",
    27: "set_option",
    28: "stmt_fetch",
    31: "reset_connection",
}

# --------------------------------------------------------------------------- processes

#: Services that serve several RPCs or requests at once in one process, each in a green thread of its own
#: (eventlet), each green thread with a database connection of its own from the pool while it works.
GREEN_THREADS = frozenset({"nova-conductor", "nova-scheduler", "nova-compute", "glance", "neutron-server",
                           "cinder-volume", "cinder-scheduler", "heat-engine"})

# Command lines (ps args, or ss's process name) -> service key.  First match wins.  A name
# counts only where a program name can stand (not inside an option such as
# --os-placement-api-version); the openstack CLI is recognised first, by its executable.
# Compiled on first use (re caches them): a capture read without --ss/--ps never needs them.
_NAME = r"(?<![\w-])(?:{})"
PROCESS_PATTERNS: tuple[tuple[str, str | None], ...] = tuple(
    (_NAME.format(p), key)
    for p, key in (
        (r"wsgi:keystone|keystone-wsgi|keystone-all|keystone-api\b|uwsgi.*keystone|gunicorn.*keystone", "keystone"),
        (r"wsgi:placement|placement-api\b|placement-wsgi|uwsgi.*placement|gunicorn.*placement", "placement"),
        # devstack's metadata API is ``uwsgi --procname-prefix nova-api-meta``: before nova-api
        (r"wsgi:nova-metadata|nova-metadata|nova-api-meta\b", "nova-metadata"),
        (r"wsgi:nova-api|nova-api-wsgi|nova-api\b|uwsgi.*nova-api", "nova-api"),
        (r"nova-(?:compute|conductor|scheduler|novncproxy|spicehtml5proxy|serialproxy)\b", None),
        (r"wsgi:neutron|neutron-api\b|neutron-server\b|uwsgi.*neutron", "neutron-server"),
        (r"neutron-[a-z0-9-]+-agent\b", None),
        (r"wsgi:cinder|cinder-wsgi|cinder-api\b", "cinder-api"),
        (r"cinder-(?:volume|scheduler|backup)\b", None),
        (r"wsgi:glance|glance-api\b|uwsgi.*glance", "glance"),
        (r"wsgi:heat-api-cfn|heat-api-cfn\b", "heat-api-cfn"),
        (r"wsgi:heat|heat-api\b", "heat-api"),
        (r"heat-engine\b", None),
        (r"wsgi:barbican|barbican-api\b", "barbican"),
        (r"wsgi:octavia|octavia-api\b", "octavia"),
        (r"designate-api\b", "designate"),
        (r"wsgi:manila|manila-api\b", "manila"),
        (r"wsgi:ironic|ironic-api\b", "ironic"),
        (r"swift-proxy", "swift-proxy"),
        (r"gnocchi-api\b", "gnocchi"),
        (r"aodh-api\b", "aodh"),
        (r"mariadbd\b|mysqld\b|mariadb\b", "mysql"),
        (r"memcached\b", "memcached"),
        (r"beam\.smp.*rabbit|rabbitmq-server|beam\.smp$", "rabbitmq"),
        (r"python-openstackclient", "openstackclient"),
    )
)
#: Component processes without a port of their own (key None above): the matched word is the key.
_COMPONENT = (
    r"\b(nova-(compute|conductor|scheduler|novncproxy|spicehtml5proxy|serialproxy)|neutron-[a-z0-9-]+-agent|"
    r"cinder-(volume|scheduler|backup)|heat-engine)\b"
)
#: Processes that own sockets for others (web servers): they name no service.
_AMBIGUOUS = r"(^|/)(apache2|httpd|nginx|haproxy)( |$)|^\(?apache2"
#: uwsgi renames its processes ``<prefix>uWSGI master``, ``<prefix>uWSGI worker 1``, … when given
#: ``--procname-prefix`` (devstack starts each API as ``uwsgi --procname-prefix keystone --ini …``;
#: ``ss -p`` still says ``uwsgi``): the prefix names the service, as ``uwsgi … keystone`` would.
_UWSGI_PROCNAME = re.compile(r"^\s*(\S+?)uWSGI (?:master|worker|http|mule|spooler|cheaper)\b")


def service_of_command(args: str) -> tuple[str | None, bool]:
    """The service key a command line names, and whether the process is an ambiguous web server.

    >>> service_of_command("(wsgi:placement-a -k start")
    ('placement', False)
    >>> service_of_command("/usr/sbin/mariadbd --user=mysql")
    ('mysql', False)
    >>> service_of_command("/usr/sbin/apache2 -k start")
    (None, True)
    >>> service_of_command("openstack")
    ('openstackclient', False)
    >>> service_of_command("/usr/bin/python3 /usr/bin/openstack --os-placement-api-version 1.2 resource class list")
    ('openstackclient', False)
    >>> service_of_command("/usr/bin/python3 /usr/bin/nova-conductor --config-file x")
    ('nova-conductor', False)
    >>> [service_of_command(a)[0] for a in ("keystoneuWSGI master", "placementuWSGI worker 1",
    ...                                     "nova-api-metauWSGI worker 2", "glance-apiuWSGI http 1")]
    ['keystone', 'placement', 'nova-metadata', 'glance']
    """
    procname = _UWSGI_PROCNAME.match(args)
    if procname:
        return service_of_command(f"uwsgi --procname-prefix {procname.group(1)}")
    words = args.split()
    if any(os.path.basename(w) in ("openstack", "openstack-client") for w in words[:2]):
        return "openstackclient", False  # its options name services (--os-placement-api-version)
    for pattern, key in PROCESS_PATTERNS:
        if re.search(pattern, args):
            if key is None:
                m = re.search(_COMPONENT, args)
                return (m.group(1) if m else None), False
            return key, False
    if re.search(_AMBIGUOUS, args):
        return None, True
    return None, False


#: kolla-ansible's containers whose name is no program's: container name -> service key (the
#: others, ``nova_conductor``, ``placement_api``, ``mariadb``, are read as command lines, ``_`` as ``-``)
KOLLA_CONTAINERS: dict[str, str] = {
    "keystone": "keystone",
    "rabbitmq": "rabbitmq",
    "haproxy": "haproxy",
    "proxysql": "proxysql",
    "horizon": "horizon",
}
_CONTAINER_ID = re.compile(r"[0-9a-f]{12}(?:[0-9a-f]{52})?$")


def service_of_container(name: str) -> str | None:
    """The service key a container's name gives a process whose command line names none (a
    ``python3``, ``uwsgi`` or ``apache2`` in kolla's ``placement_api`` is placement): the service
    its name says as a command line would (``_`` read as ``-``), else kolla's names, else the
    container's own name; None for a bare container id (it says nothing of the service).

    >>> [service_of_container(n) for n in ("placement_api", "nova_conductor", "keystone", "mariadb")]
    ['placement', 'nova-conductor', 'keystone', 'mysql']
    >>> service_of_container("kolla_toolbox"), service_of_container("3f2a1b9c0d4e")
    ('kolla_toolbox', None)
    """
    if not name or _CONTAINER_ID.match(name):
        return None
    known = KOLLA_CONTAINERS.get(name)
    if known is not None:
        return known
    key, _ = service_of_command(name.replace("_", "-"))
    return key or name


# --------------------------------------------------------------------------- User-Agents

#: The product a User-Agent starts with (``placement/unknown keystonemiddleware…``, lower case,
#: before the first ``/``) -> service key.  Checked first.
USER_AGENT_PRODUCTS: dict[str, str] = {
    "placement": "placement",
    "keystone": "keystone",
    "nova": "nova-api",
    "nova-api": "nova-api",
    "neutron": "neutron-server",
    "neutron-server": "neutron-server",
    "cinder": "cinder-api",
    "cinder-api": "cinder-api",
    "glance": "glance",
    "glance-api": "glance",
    "heat": "heat-api",
    "nova-compute": "nova-compute",  # "nova-compute keystoneauth1/5.0.0 ...": a product without a version
    "nova-conductor": "nova-conductor",
    "nova-scheduler": "nova-scheduler",
    # the client library the OpenStack client calls nova through (``openstack server stop``); a
    # service that uses it names itself first (nova-compute's ``nova-compute keystoneauth1/…``)
    "python-novaclient": "openstackclient",
}
#: Words anywhere in a User-Agent (lower case) that make it the OpenStack client.
USER_AGENT_CLIENT_WORDS = ("python-openstackclient", "openstacksdk/", "osc-lib")

_PRODUCT = re.compile(r"\s*([\w.-]+)(?:[/ ]|$)")  # a product, with its /version or without, or alone


def service_of_user_agent(ua: str | None) -> str | None:
    """The service a User-Agent names; ``python-keystoneclient`` names none.

    >>> service_of_user_agent("placement/unknown keystonemiddleware.auth_token/10.1.0 keystoneauth1/5.0.0")
    'placement'
    >>> service_of_user_agent("openstacksdk/0.101.0 keystoneauth1/5.0.0 python-requests/2.28.1")
    'openstackclient'
    >>> service_of_user_agent("Nova/27.0.0 openstacksdk/1.0")  # the product first, case-insensitive
    'nova-api'
    >>> service_of_user_agent("nova-compute keystoneauth1/5.0.0 python-requests/2.28.1")  # no version
    'nova-compute'
    >>> service_of_user_agent("python-novaclient")  # `openstack server stop`'s, a product alone
    'openstackclient'
    >>> service_of_user_agent("python-keystoneclient") is None
    True
    """
    if not ua:
        return None
    low = ua.lower()
    m = _PRODUCT.match(low)
    if m is not None:
        key = USER_AGENT_PRODUCTS.get(m.group(1))
        if key is not None:
            return key
    if any(w in low for w in USER_AGENT_CLIENT_WORDS):
        return "openstackclient"
    return None


# --------------------------------------------------------------------------- tables

#: Tables a service's queries touch (a query's client is named by majority vote over them).
SERVICE_TABLES: dict[str, frozenset[str]] = {
    "keystone": frozenset([
        "user", "local_user", "password", "project", "assignment", "role", "implied_role", "token",
        "revocation_event", "federated_user", "nonlocal_user", "access_rule", "application_credential",
        "credential", "endpoint", "service", "region", "policy", "domain_config", "group", "user_group_membership",
        "trust", "system_assignment", "project_tag", "limit", "registered_limit", "expiring_user_group_membership"
    ]),
    "placement": frozenset([
        "resource_classes", "traits", "resource_providers", "inventories", "allocations", "consumers", "projects",
        "users", "resource_provider_traits", "resource_provider_aggregates", "placement_aggregates",
        "consumer_types"
    ]),
    "nova-api": frozenset([
        "cell_mappings", "host_mappings", "instance_mappings", "flavors", "build_requests", "request_specs"
    ]),
    "neutron-server": frozenset([
        "networks", "subnets", "ports", "routers", "securitygroups", "securitygrouprules", "agents"
    ]),
    "glance": frozenset(["images", "image_properties", "image_locations", "image_members", "tasks"]),
    "cinder-api": frozenset(["volumes", "snapshots", "backups", "volume_types", "quotas"]),
}

_TABLE_REF = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+`?([A-Za-z_][A-Za-z0-9_]*)`?", re.I)


def tables_in(sql: str | None) -> list[str]:
    """Tables a statement names after FROM/JOIN/INTO/UPDATE, in order.

    >>> tables_in("SELECT a FROM user INNER JOIN local_user ON x WHERE y IN (SELECT b FROM `project`)")
    ['user', 'local_user', 'project']
    >>> tables_in(None)
    []
    """
    return list(_tables_in(sql)) if sql else []


@functools.lru_cache(maxsize=1024)
def _tables_in(sql: str) -> tuple[str, ...]:
    # the same few statements run again and again (pool pings, token and resource lookups)
    seen: dict[str, None] = {}
    for m in _TABLE_REF.finditer(sql):
        seen.setdefault(m.group(1), None)
    return tuple(seen)


# --------------------------------------------------------------------------- RPC topics

#: oslo.messaging topics -> the service that consumes them (a routing key, or a fanout exchange
#: without its ``_fanout``, is matched on its first dot- or dash-separated words: ``compute.controller``
#: is the ``compute`` topic on host ``controller``; ``neutron-vo-Network-1.1`` a neutron versioned-object push).
#: Longest prefix first.  The Lua plugin holds the same map (tests/test_shared_truth.py).
RPC_TOPICS: dict[str, str] = {
    "conductor": "nova-conductor",
    "scheduler": "nova-scheduler",
    "compute": "nova-compute",
    "consoleauth": "nova-consoleauth",
    "q-plugin": "neutron-server",
    "q-reports-plugin": "neutron-server",
    "q-l3-plugin": "neutron-server",
    "q-server-resource-versions": "neutron-server",
    "neutron-vo": "neutron-agent",
    "q-agent-notifier": "neutron-agent",
    "dhcp_agent": "neutron-dhcp-agent",
    "l3_agent": "neutron-l3-agent",
    "cinder-volume": "cinder-volume",
    "cinder-scheduler": "cinder-scheduler",
    "cinder-backup": "cinder-backup",
    "engine": "heat-engine",
}


_TOPICS_LONGEST_FIRST = tuple(sorted(RPC_TOPICS, key=len, reverse=True))


def service_of_topic(topic: str) -> str | None:
    """The service that consumes an RPC topic (a routing key or a fanout exchange), or None.

    >>> [service_of_topic(t) for t in ("conductor", "compute.controller", "scheduler_fanout",
    ...                                 "neutron-vo-Network-1.1_fanout", "reply_ab12", "")]
    ['nova-conductor', 'nova-compute', 'nova-scheduler', 'neutron-agent', None, None]
    """
    if topic.endswith("_fanout"):
        topic = topic[: -len("_fanout")]
    for prefix in _TOPICS_LONGEST_FIRST:
        if topic == prefix or topic.startswith((prefix + ".", prefix + "-")):
            return RPC_TOPICS[prefix]
    return None


# --------------------------------------------------------------------------- databases

#: The schema a component without a port of its own uses (a DB end named after its client says
#: ``nova DB``, not ``nova-conductor DB``).
COMPONENT_DATABASES: dict[str, str] = {
    "nova-conductor": "nova",
    "nova-scheduler": "nova",
    "nova-compute": "nova",
    "nova-novncproxy": "nova",
    "nova-metadata": "nova",
    "cinder-volume": "cinder",
    "cinder-scheduler": "cinder",
    "cinder-backup": "cinder",
    "heat-engine": "heat",
}
#: Schemas several services use: naming a client from one of them alone is a guess (``nova_api``:
#: nova-conductor's build requests and request specs, nova-scheduler's host mappings and aggregates).
SHARED_SCHEMAS = frozenset({"nova", "nova_api", "nova_cell0", "nova_cell1", "cinder", "heat"})


def component_database(key: str) -> str | None:
    """The schema of a component service: ``component_database("nova-conductor") == "nova"``."""
    return COMPONENT_DATABASES.get(key)


def shared_schema(schema: str) -> bool:
    """Is this schema one several services use (``nova``, ``nova_cell0``, ...)?"""
    return schema in SHARED_SCHEMAS


# --------------------------------------------------------------------------- endpoints

#: devstack's path prefixes: one Apache on port 80 serves each API under its own path, each proxied
#: to a uwsgi process of its own (devstack's ``lib/apache``: ``write_uwsgi_config`` writes
#: ``ProxyPass "/identity" "unix:/var/run/uwsgi/keystone-api.socket|uwsgi://…"``, glance's ``/image``
#: goes through ``write_local_uwsgi_http_config``).  Used when the capture holds no keystone catalog
#: that says otherwise.  The Lua plugin holds the same map (tests/test_shared_truth.py).
ENDPOINT_PREFIXES: dict[str, str] = {
    "/identity": "keystone",
    "/compute": "nova-api",
    "/placement": "placement",
    "/image": "glance",
    "/volume": "cinder-api",
    "/networking": "neutron-server",
}

#: The keystone catalog's service types -> service key (a catalog entry names its service by type).
SERVICE_TYPES: dict[str, str] = {
    "identity": "keystone",
    "compute": "nova-api",
    "placement": "placement",
    "image": "glance",
    "volume": "cinder-api",
    "volumev2": "cinder-api",
    "volumev3": "cinder-api",
    "block-storage": "cinder-api",
    "network": "neutron-server",
    "orchestration": "heat-api",
    "cloudformation": "heat-api-cfn",
    "object-store": "swift-proxy",
    "key-manager": "barbican",
    "load-balancer": "octavia",
    "dns": "designate",
    "share": "manila",
    "sharev2": "manila",
    "shared-file-system": "manila",
    "baremetal": "ironic",
    "metric": "gnocchi",
    "alarming": "aodh",
}


def prefix_of_path(path: str, prefixes: Iterable[str]) -> str | None:
    """The longest of ``prefixes`` that ``path`` starts with, at a segment's end (``/compute`` is a
    prefix of ``/compute/v2.1/servers`` and of ``/compute?x``, not of ``/computers``); a prefix ``/``
    or empty matches every path.

    >>> prefix_of_path("/compute/v2.1/servers", ENDPOINT_PREFIXES)
    '/compute'
    >>> prefix_of_path("/computers", ENDPOINT_PREFIXES) is None
    True
    >>> prefix_of_path("/", ("",))
    ''
    """
    best: str | None = None
    for p in prefixes:
        bare = p.rstrip("/")
        if (not bare or path == bare or path.startswith((bare + "/", bare + "?"))) and (
                best is None or len(bare) > len(best)):
            best = bare
    return best


def service_of_path(path: str) -> str | None:
    """The service devstack serves under ``path``'s prefix (:data:`ENDPOINT_PREFIXES`), or None.

    >>> [service_of_path(p) for p in ("/identity/v3/auth/tokens", "/placement", "/image/v2/images", "/v3")]
    ['keystone', 'placement', 'glance', None]
    """
    prefix = prefix_of_path(path, ENDPOINT_PREFIXES)
    return ENDPOINT_PREFIXES[prefix] if prefix else None


@dataclass(frozen=True)
class Endpoint:
    """A URL a service is reached at: its host (None: any), port (None: any) and path prefix."""

    host: str | None
    port: int | None
    path: str  #: without a trailing ``/``; empty: every path
    key: str  #: the service key
    source: str  #: where it comes from, for the evidence ("devstack's prefix", "the keystone catalog", "--endpoint")

    def matches(self, host: str | None, server: str, port: int, path: str) -> bool:
        """Does a request for ``path`` with the Host header's host ``host``, sent to ``server``:``port``,
        go to this endpoint?"""
        if self.port is not None and self.port != port:
            return False
        if self.host is not None and self.host not in (host, server):
            return False
        return prefix_of_path(path, (self.path,)) is not None


def parse_endpoint(url: str, key: str, source: str) -> Endpoint:
    """An endpoint from a URL (``http://10.0.0.5/identity``, ``https://ctl:8443/compute/v2.1/``;
    the port is the scheme's when the URL has none); ValueError when it is no http(s) URL.

    >>> parse_endpoint("http://10.0.0.5/identity/", "keystone", "--endpoint")
    Endpoint(host='10.0.0.5', port=80, path='/identity', key='keystone', source='--endpoint')
    >>> parse_endpoint("https://[fd00::5]:8443/compute/v2.1", "nova-api", "the keystone catalog").port
    8443
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, found {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"expected a port number in {url!r}") from None
    return Endpoint(parts.hostname.lower(), port, parts.path.rstrip("/"), key, source)


def catalog_endpoints(catalog: object) -> tuple[tuple[str, str], ...]:
    """(URL, service key) of each endpoint of a keystone token's ``catalog`` whose service type
    osflow knows (:data:`SERVICE_TYPES`), each URL once.

    >>> catalog_endpoints([{"type": "identity", "endpoints": [{"url": "http://10.0.0.5/identity"}]},
    ...                    {"type": "no-such", "endpoints": [{"url": "http://x/"}]}])
    (('http://10.0.0.5/identity', 'keystone'),)
    """
    out: dict[str, str] = {}
    for entry in catalog if isinstance(catalog, list) else ():
        kind = entry.get("type") if isinstance(entry, dict) else None
        key = SERVICE_TYPES.get(kind) if isinstance(kind, str) else None
        if key is None or not isinstance(entry, dict):
            continue
        for ep in entry.get("endpoints") or ():
            url = ep.get("url") if isinstance(ep, dict) else None
            if isinstance(url, str) and url:
                out.setdefault(url, key)
    return tuple(out.items())


# --------------------------------------------------------------------------- resource identifiers

_UUID = re.compile(r"(?<![0-9A-Za-z-])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                   r"(?![0-9A-Za-z-])")
#: At most this many identifiers are kept of one message (a request spec names dozens).
MAX_IDS = 32


#: a keystone token's audit id: 16 random bytes in URL-safe base64, no padding
AUDIT_ID = re.compile(r"[A-Za-z0-9_-]{22}")
_AUDIT_SQL = re.compile(rf"\baudit_(?:chain_)?id\s*=\s*'({AUDIT_ID.pattern})'")


def audit_id(value: str) -> str:
    """A token's audit id as an identifier beside the resource UUIDs (``audit:<id>``)."""
    return f"audit:{value}"


def audit_ids(text: str | None) -> tuple[str, ...]:
    """The token audit ids a statement names, as identifiers: keystone checks a token it validates
    against its revocation events by the token's audit id (``… audit_id = 'nkW-mo6mTXKQgNhj5RKyPQ'``),
    and the validation's response names the same id (``audit_ids``), so the check is that request's.

    >>> audit_ids("SELECT … WHERE (revocation_event.audit_id IS NULL OR "
    ...           "revocation_event.audit_id = 'nkW-mo6mTXKQgNhj5RKyPQ')")
    ('audit:nkW-mo6mTXKQgNhj5RKyPQ',)
    >>> audit_ids("SELECT 1"), audit_ids(None)
    ((), ())
    """
    if not text or "audit_" not in text:
        return ()
    return tuple(dict.fromkeys(audit_id(m.group(1)) for m in _AUDIT_SQL.finditer(text)))


def resource_ids(text: str | None) -> tuple[str, ...]:
    """The resource UUIDs a text names (an instance's, a port's, an image's), lower case, each once,
    in order: what ties a request, the RPC it casts and the SQL its handling runs.  A request id
    (``req-<uuid>``) is no resource; keystone's ids (32 hex digits, no dashes) name users and
    projects, which every request of theirs names.

    >>> resource_ids("GET /v2.1/servers/10E35D5A-e6fc-42d2-a208-979396f2d2e9/action")
    ('10e35d5a-e6fc-42d2-a208-979396f2d2e9',)
    >>> resource_ids("WHERE instances.uuid = '6c1b0f7e-0d3a-4b8e-9a57-2f0e1c9d8b7a' AND project_id = "
    ...              "'0f3c4e2a9b8d4c6e8f1a2b3c4d5e6f70' -- req-11111111-2222-3333-4444-555555555555")
    ('6c1b0f7e-0d3a-4b8e-9a57-2f0e1c9d8b7a',)
    >>> resource_ids(None)
    ()
    """
    if not text:
        return ()
    found = dict.fromkeys(m.group(0).lower() for m in _UUID.finditer(text))
    return tuple(found)[:MAX_IDS]
