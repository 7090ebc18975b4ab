"""MySQL's query attributes (``CLIENT_QUERY_ATTRIBUTES``, MySQL 8.0.23+): the SQL text of a COM_QUERY
that carries them, which tshark 4.0 does not show (the MySQL protocol module, :mod:`osflow.protocols.mysql`,
reads it from the TCP payload)."""

from __future__ import annotations

#: Binary-protocol value sizes by MySQL column type: fixed sizes, then the types whose value is a
#: one-byte length and that many bytes (dates and times); every other type is a length-encoded string.
_FIXED_SIZES = {0x01: 1, 0x02: 2, 0x0D: 2, 0x03: 4, 0x09: 4, 0x04: 4, 0x08: 8, 0x05: 8, 0x06: 0}
_SIZED_TYPES = frozenset({0x07, 0x0A, 0x0B, 0x0C})


def _lenenc(b: bytes, pos: int) -> tuple[int, int]:
    """A length-encoded integer at ``pos``: (its value, the position after it); IndexError when cut short."""
    width = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(b[pos], 0 if b[pos] < 0xFB else -1)
    if width < 0 or pos + 1 + width > len(b):
        raise IndexError(f"no length-encoded integer at {pos}")
    return (int.from_bytes(b[pos + 1:pos + 1 + width], "little") if width else b[pos]), pos + 1 + width


def query_with_attributes(body: bytes) -> str | None:
    """The SQL text of a COM_QUERY body that carries query attributes (``CLIENT_QUERY_ATTRIBUTES``:
    count, set count, null bitmap, types and names, binary values, then the text), or None.

    >>> query_with_attributes(bytes.fromhex("03010100010300016e2a000000") + b"SELECT 1")
    'SELECT 1'
    >>> query_with_attributes(b"\\x03\\x00\\x01SELECT 2")
    'SELECT 2'
    """
    try:
        if body[:1] != b"\x03":
            return None
        count, pos = _lenenc(body, 1)
        _, pos = _lenenc(body, pos)  # the parameter set count: always 1
        if count:
            nulls = body[pos:pos + (count + 7) // 8]
            pos += (count + 7) // 8
            if body[pos] != 1:  # no types sent: the values cannot be skipped
                return None
            pos += 1
            types = []
            for _ in range(count):  # a type, a flag byte (0x80: unsigned), a name
                types.append(body[pos])
                length, pos = _lenenc(body, pos + 2)
                pos += length
            for i, t in enumerate(types):
                if nulls[i // 8] & (1 << (i % 8)):
                    continue
                if t in _FIXED_SIZES:
                    pos += _FIXED_SIZES[t]
                elif t in _SIZED_TYPES:
                    pos += 1 + body[pos]
                else:
                    length, pos = _lenenc(body, pos)
                    pos += length
        return body[pos:].decode("utf-8", "replace") if pos <= len(body) else None
    except IndexError:
        return None


def query_in_payload(payload: str | None, length: int | None) -> str | None:
    """The text of the first COM_QUERY in a TCP payload (hex) that has query attributes, or None."""
    try:
        b, pos = bytes.fromhex((payload or "").replace(":", "")), 0
    except ValueError:
        return None
    while pos + 4 <= len(b):
        size = int.from_bytes(b[pos:pos + 3], "little")
        body = b[pos + 4:pos + 4 + size]
        if b[pos + 3] == 0 and body[:1] == b"\x03" and length in (None, size):
            return query_with_attributes(body)
        pos += 4 + size
    return None
