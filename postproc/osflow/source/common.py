"""What the readers of every input format share: endpoints, connection ids, the Packet they make."""

from __future__ import annotations

from typing import IO

from ..errors import PartialInput
from ..model import Address, Layer, Packet

__all__ = ["Addresses", "Reader", "address", "signal_name", "status_text", "stream_id", "tcp_packet", "to_float",
           "to_int"]


def address(host: str, port: str) -> Address:
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return Address(host, int(port))


class Addresses(dict):
    """The Address of each (host, port) text, made once: all frames of a connection share two.

    Emptied when it holds :attr:`LIMIT` endpoints (a long capture of many short
    connections), so that it does not grow with the capture.
    """

    LIMIT = 4096

    def __missing__(self, key: tuple[str, str]) -> Address:
        if len(self) >= self.LIMIT:
            self.clear()
        made = self[key] = address(*key)
        return made


class Reader:
    """What every reader tells the pipeline besides its packets."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.stream = stream
        self.name = name
        self.partial: PartialInput | None = None  # set when the input ended early
        self.count = 0  # TCP packets read
        self.last_frame = 0
        self.first_time: float | None = None  # epoch of the capture's first frame, TCP or not
        self._streams: dict = {}  # connection -> stream id, for input without tcp.stream
        self._addresses = Addresses()



def tcp_packet(number: int, time: float, src: Address, dst: Address, stream: int, flags: int, payload: int,
               layers: tuple[Layer, ...], segments: tuple[int, ...], seq: int | None = None) -> Packet:
    """A Packet, its TCP flag bits (tcp.flags) decoded."""
    return Packet(number=number, time=time, src=src, dst=dst, stream=stream, syn=bool(flags & 0x02),
                  fin=bool(flags & 0x01), rst=bool(flags & 0x04), payload=payload, layers=layers, segments=segments,
                  seq=seq)


def stream_id(streams: dict, src: Address, dst: Address) -> int:
    """A connection id for input without tcp.stream: negative, one per connection."""
    key = (src, dst) if (src.host, src.port) <= (dst.host, dst.port) else (dst, src)
    return streams.setdefault(key, -1 - len(streams))


def to_int(text: str | None, default: int, base: int = 10) -> int:
    try:
        return int(text, base) if text else default
    except ValueError:
        return default


def to_float(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9 (the number itself for one Python does not know).

    >>> signal_name(9), signal_name(200)
    ('SIGKILL', 'signal 200')
    """
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def status_text(status: int, stderr: str) -> str:
    """What a tshark run's exit says: killed by a signal, or its last line on stderr."""
    if status < 0:
        return f"tshark was killed by {signal_name(-status)}"
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "Running as user" not in ln]
    return (lines[-1] if lines else f"tshark exited with status {status}").strip()
