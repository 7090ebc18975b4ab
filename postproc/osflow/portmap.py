"""The OpenStack port map: the one source of truth for service keys, ports and labels.

The Wireshark plugin (``dissectors/osflow.lua``) carries the same table; a test
(``tests/test_portmap_lua.py``) fails when the two disagree.

A *service key* is lowercase (``keystone``, ``nova-api``, ``mysql``); a *label* is
what diagrams show (``keystone``, ``RabbitMQ``, ``OpenStackClient``).  MySQL
servers are labelled after the database they serve: ``placement DB``.

>>> service_for_port(8778).key
'placement'
>>> label_for("rabbitmq")
'RabbitMQ'
>>> db_label("keystone")
'keystone DB'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    """One OpenStack (or infrastructure) service."""

    key: str
    label: str
    ports: tuple[int, ...]
    protocol: str  # http | mysql | memcache | amqp | redis | other
    database: str | None = None  # the schema this service keeps in MySQL


#: Every service osflow knows.  Order matters only for documentation.
SERVICES: tuple[Service, ...] = (
    Service("keystone", "keystone", (5000, 35357), "http", "keystone"),
    Service("placement", "placement", (8778,), "http", "placement"),
    Service("glance", "glance", (9292,), "http", "glance"),
    Service("nova-api", "nova-api", (8774,), "http", "nova_api"),
    Service("nova-metadata", "nova-metadata", (8775,), "http"),  # uses nova's schema, but so does every nova-*
    Service("nova-novncproxy", "nova-novncproxy", (6080,), "http"),
    Service("neutron-server", "neutron-server", (9696,), "http", "neutron"),
    Service("cinder-api", "cinder-api", (8776,), "http", "cinder"),
    Service("heat-api", "heat-api", (8004,), "http", "heat"),
    Service("heat-api-cfn", "heat-api-cfn", (8000,), "http", "heat"),
    Service("swift-proxy", "swift-proxy", (8080,), "http"),
    Service("barbican", "barbican", (9311,), "http", "barbican"),
    Service("octavia", "octavia", (9876,), "http", "octavia"),
    Service("designate", "designate", (9001,), "http", "designate"),
    Service("manila", "manila", (8786,), "http", "manila"),
    Service("ironic", "ironic", (6385,), "http", "ironic"),
    Service("gnocchi", "gnocchi", (8041,), "http", "gnocchi"),
    Service("aodh", "aodh", (8042,), "http", "aodh"),
    Service("memcached", "memcached", (11211,), "memcache"),
    Service("mysql", "MySQL", (3306,), "mysql"),
    Service("rabbitmq", "RabbitMQ", (5672,), "amqp"),
    Service("redis", "Redis", (6379,), "redis"),  # OSProfiler's traces, tooz's coordination
    Service("openstackclient", "OpenStackClient", (), "http"),
)

_BY_KEY = {s.key: s for s in SERVICES}
_BY_PORT = {p: s for s in SERVICES for p in s.ports}

#: Ports whose traffic is HTTP (tshark needs ``-d tcp.port==N,http`` for some).
HTTP_PORTS: tuple[int, ...] = tuple(sorted(p for s in SERVICES if s.protocol == "http" for p in s.ports))
#: Every port in the map, for capture filters.
ALL_PORTS: tuple[int, ...] = tuple(sorted(_BY_PORT))
#: A web server in front of several services (devstack's Apache, a TLS front): what ``osflow record``
#: captures besides the map's ports.
WEB_PORTS: tuple[int, ...] = (80, 443)


def service(key: str) -> Service | None:
    """The service with this key, or None."""
    return _BY_KEY.get(key)


def service_for_port(port: int, overrides: dict[int, str] | None = None) -> Service | None:
    """The service that listens on ``port`` by convention (``--service PORT=NAME`` wins).

    >>> service_for_port(5000).label
    'keystone'
    >>> service_for_port(5000, {5000: "glance"}).key
    'glance'
    >>> service_for_port(4444, {4444: "my-api"}).label
    'my-api'
    >>> service_for_port(12345) is None
    True
    """
    if overrides and port in overrides:
        name = overrides[port]
        return _BY_KEY.get(name) or Service(name, name, (port,), PROTOCOL_WORDS.get(name, "other"))
    return _BY_PORT.get(port)


def label_for(key: str) -> str:
    """The diagram label of a service key; unknown keys are their own label."""
    s = _BY_KEY.get(key)
    return s.label if s else key


def db_label(database: str) -> str:
    """The participant label of a MySQL server serving ``database``."""
    return f"{database} DB"


def database_of(key: str) -> str | None:
    """The schema a service keeps in MySQL (keystone -> keystone)."""
    s = _BY_KEY.get(key)
    return s.database if s else None


def service_for_database(database: str) -> Service | None:
    """The service whose schema is ``database`` (nova_api -> nova-api)."""
    for s in SERVICES:
        if s.database == database:
            return s
    return None


#: ``--service PORT=PROTO``: the protocol words that name no service (``--service 8080=http``).
PROTOCOL_WORDS = {"http": "http", "mysql": "mysql", "memcache": "memcache", "amqp": "amqp"}


def tshark_decode_as(overrides: dict[int, str] | None = None) -> list[str]:
    """tshark arguments that decode every OpenStack HTTP port as HTTP, and each port of ``overrides``
    (``--service PORT=NAME``) as its service's protocol.

    >>> tshark_decode_as({5432: "mysql", 4444: "my-api"})[-2:]
    ['-d', 'tcp.port==5432,mysql']
    """
    args: list[str] = []
    for port in HTTP_PORTS:
        args += ["-d", f"tcp.port=={port},http"]
    for port in sorted(overrides or ()):
        svc = service_for_port(port, overrides)
        if svc is not None and svc.protocol in ("http", "mysql", "memcache", "amqp"):
            args += ["-d", f"tcp.port=={port},{svc.protocol}"]
    return args
