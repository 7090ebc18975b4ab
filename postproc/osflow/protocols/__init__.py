"""The protocols osflow reads, one module each, and the registry the stages iterate.

Each module (:mod:`.http`, :mod:`.mysql`, :mod:`.memcache`, :mod:`.amqp`, :mod:`.redis`, :mod:`.tls`) holds
everything osflow knows about its protocol -- the PDML and ``-T fields`` layers it reads, its
decoder, its pairing rule, its join evidence, its noise and grouping rules, its words, its OTLP
attributes and stats endpoint -- as the hooks of a :class:`~.base.ProtocolModule`.  The stages
ask this registry, never a protocol's message classes:

>>> [m.name for m in PROTOCOLS]
['http', 'mysql', 'memcache', 'amqp', 'redis', 'tls']
>>> by_name("rpc").name, by_layer("resp").name
('amqp', 'redis')
"""

from __future__ import annotations

from ..model import Exchange, Message
from .amqp import AMQP
from .base import Failure, LayerDecoder, PairText, ProtocolModule, Vote, Words
from .http import HTTP
from .memcache import MEMCACHE
from .mysql import MYSQL
from .redis import REDIS
from .tls import TLS

#: Every protocol, in the order the stages consult them.
PROTOCOLS: tuple[ProtocolModule, ...] = (HTTP, MYSQL, MEMCACHE, AMQP, REDIS, TLS)

_BY_NAME = {n: m for m in PROTOCOLS for n in (m.name, *m.also)}
_BY_LAYER = {p: m for m in PROTOCOLS for p in m.pdml_protos}
_NONE = ProtocolModule()  # the answer for what no protocol claims (a TCP close): every hook's default


def by_name(name: str) -> ProtocolModule:
    """The module of a message's or an exchange's ``protocol`` (the defaults for ``tcp``)."""
    return _BY_NAME.get(name, _NONE)


def by_layer(name: str) -> ProtocolModule | None:
    """The module that reads a PDML ``<proto name=...>``, or None."""
    return _BY_LAYER.get(name)


def of(x: Exchange | Message) -> ProtocolModule:
    """The module of a message or an exchange."""
    return _BY_NAME.get(x.protocol, _NONE)


def tshark_fields() -> tuple[str, ...]:
    """The fields every protocol asks ``tshark -T fields`` for, in registry order, each once."""
    return tuple(dict.fromkeys(f for m in PROTOCOLS for f in m.tshark_fields))


def decode_as(overrides: dict[int, str] | None = None, pdml: bool = False) -> list[str]:
    """The tshark ``-d`` arguments the protocols' ports need beyond the port map's HTTP ones (``pdml``:
    for the PDML command, else for ``-T fields``)."""
    return [a for m in PROTOCOLS for a in m.decode_as(overrides, pdml)]


__all__ = ["PROTOCOLS", "Failure", "LayerDecoder", "PairText", "ProtocolModule", "Vote", "Words", "by_layer",
           "by_name", "decode_as", "of", "tshark_fields"]
