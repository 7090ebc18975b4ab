"""Decode stage: Packet -> protocol Message (HTTP, MySQL, memcached, AMQP, Redis, TCP close).

Everything comes from PDML fields, never from display strings.  Each layer of a packet goes
to the decoder of the protocol that reads it (:mod:`osflow.protocols`): a MySQL reply spreads
over many PDUs, an AMQP message over a method frame, a content header and body frames, a
Redis value over segments; each protocol's decoder keeps its per-connection state and emits
a message when one is complete.  This module keeps what is common: the frames and start of a
PDU reassembled from several segments, and the :class:`~osflow.model.Closed` message of the
first FIN or RST each side sends (after what that side was still sending, marked incomplete).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from . import protocols
from .model import Closed, Message, Packet
from .protocols.base import LayerDecoder
from .protocols.http import header, header_lines, keystone_auth, token_info
from .protocols.memcache import MEMCACHE_WORDS

__all__ = ["MEMCACHE_WORDS", "Decoder", "header", "header_lines", "keystone_auth", "token_info"]


class Decoder:
    """Turn packets into messages, each protocol's decoder keeping its own per-connection state."""

    def __init__(self) -> None:
        self._times: dict[int, float] = {}  # frame -> time of recent payload frames, for reassembled PDUs
        self._closed: dict[tuple[int, object], None] = {}  # the ends that sent their FIN or RST (the latest)
        self._decoders: dict[str, LayerDecoder] = {}  # layer name -> its protocol's decoder
        self._all: list[LayerDecoder] = []
        self._watchers: list[LayerDecoder] = []  # those that look at every packet (LayerDecoder.packet)
        for module in protocols.PROTOCOLS:
            d = module.decoder()
            self._all.append(d)
            if type(d).packet is not LayerDecoder.packet:
                self._watchers.append(d)
            self._decoders[module.name] = d
            for name in module.pdml_protos:
                self._decoders[name] = d

    def decode(self, packets: Iterable[Packet]) -> Iterator[Message]:
        for packet in packets:
            yield from self.packet(packet)
        yield from self.flush()

    def packet(self, p: Packet) -> Iterator[Message]:
        if p.payload:
            self._times[p.number] = p.time
            if len(self._times) > 8192:
                for k in list(self._times)[:4096]:
                    del self._times[k]
        if p.layers:
            for w in self._watchers:
                w.packet(p)
        first = True
        for layer in p.layers:
            frames: tuple[int, ...] = (p.number,)
            start = p.time
            if first and p.segments:
                frames = tuple(sorted(set(p.segments) | {p.number}))
                start = min((self._times.get(f, p.time) for f in frames), default=p.time)
            first = False
            d = self._decoders.get(layer.name)
            if d is not None:
                yield from d.layer(p, layer, frames, start)
        if p.fin or p.rst:
            end = (p.stream, p.src)
            if end not in self._closed:
                self._closed[end] = None
                if len(self._closed) > 8192:  # a long capture: forget the oldest half (a late FIN is harmless)
                    for old in list(self._closed)[:4096]:
                        del self._closed[old]
                for d in self._all:
                    yield from d.closed(p.stream, p.src)
                yield Closed(
                    protocol="tcp",
                    stream=p.stream,
                    src=p.src,
                    dst=p.dst,
                    start=p.time,
                    end=p.time,
                    frames=(p.number,),
                    is_request=False,
                    reset=p.rst,
                )

    def flush(self) -> Iterator[Message]:
        """Emit replies still being assembled when the input ends (marked incomplete)."""
        for d in self._all:
            yield from d.flush()

    def notes(self) -> list[str]:
        """What the protocols' decoders have to say about the input (a TLS connection left opaque)."""
        return [n for d in self._all for n in d.notes()]
