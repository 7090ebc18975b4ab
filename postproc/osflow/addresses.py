"""Endpoints as socket tables print them: ``[::1]:5000``, ``10.0.20.11:mysql``, ``*:*``.

Part of the join stage: :mod:`osflow.tables` reads ss, netstat and lsof lines with these,
so that every table spells an endpoint the way the capture does (canonical IPv6, no
``::ffff:`` prefix, wildcards as ``*``, service names turned into ports).
"""

from __future__ import annotations

import ipaddress
import socket

from .model import Address

#: Service names ``ss`` prints without ``-n``, for when this machine's services
#: database lacks them (the machine that ran ``ss`` had them in /etc/services).
_SERVICE_FALLBACK: dict[str, int] = {
    "mysql": 3306,
    "epmd": 4369,
    "amqp": 5672,
    "memcache": 11211,
    "http": 80,
    "https": 443,
    "http-alt": 8080,
    "commplex-main": 5000,  # IANA's name for 5000 (keystone), in some distributions' /etc/services
    "openstack-id": 35357,  # IANA's name for keystone's admin port
}

_service_cache: dict[str, int | None] = {}


def _service_port(name: str) -> int | None:
    """Port of a TCP service name (services database first, then the fallback)."""
    try:
        return _service_cache[name]
    except KeyError:
        pass
    try:
        port: int | None = socket.getservbyname(name, "tcp")
    except (OSError, ValueError):  # unknown; or not even a name (NUL, surrogates)
        port = _SERVICE_FALLBACK.get(name.lower())
    _service_cache[name] = port
    return port


_host_cache: dict[str, str] = {}


def _canonical_host(text: str) -> str:
    """Brackets, ``%iface`` and ``::ffff:`` dropped; wildcards made ``*``."""
    try:
        return _host_cache[text]
    except KeyError:
        pass
    host = text.split("%", 1)[0].strip("[]")
    if host in ("*", "0.0.0.0", "::", ""):
        host = "*"
    elif ":" in host:
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:  # not an address: keep the text (rare, then cached)
            host = host.lower()
        else:
            mapped = ip.ipv4_mapped
            host = str(mapped) if mapped is not None else ("*" if ip.is_unspecified else str(ip))
    _host_cache[text] = host
    return host


#: port value for ``*`` (a listener's peer)
ANY_PORT = -1
#: port value for a service name not in the services database
BAD_PORT = -2


def split_address(text: str) -> tuple[str, int]:
    """``host:port`` as ss prints it -> (canonical host, port | ANY_PORT | BAD_PORT)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        return "", BAD_PORT
    if port.isdigit() and port.isascii():
        number = int(port)
    elif port == "*":
        number = ANY_PORT
    else:
        found = _service_port(port)
        number = BAD_PORT if found is None else found
    return _canonical_host(host), number


def address_entry(text: str) -> tuple[str, int, Address | None]:
    """What parse_ss keeps per address text: host, port, and the Address when there is one."""
    host, port = split_address(text)
    return host, port, (Address(host, port) if host and port >= 0 else None)


def parse_address(text: str) -> Address:
    """One ``host:port`` of ss (``[::1]:5000``, ``10.0.20.11:mysql``, ``*:80``) as an Address.

    Raises ValueError when it is not one (or its port is ``*``).

    >>> parse_address("10.0.20.11:mysql")
    Address(host='10.0.20.11', port=3306)
    >>> parse_address("[::]:5000"), parse_address("0.0.0.0:9292")
    (Address(host='*', port=5000), Address(host='*', port=9292))
    """
    host, port = split_address(text.strip())
    if port < 0 or not host:
        raise ValueError(f"not a host:port with a known port: {text!r}")
    return Address(host, port)


def canonical_address(address: Address) -> Address:
    """The same endpoint as ``parse_ss`` spells it (``::ffff:127.0.0.1`` -> ``127.0.0.1``).

    >>> canonical_address(Address("::ffff:127.0.0.1", 5000))
    Address(host='127.0.0.1', port=5000)
    """
    host = _canonical_host(address.host)
    return address if host == address.host else Address(host, address.port)
