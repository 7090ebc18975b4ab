"""oslo.messaging bodies: what the JSON inside an AMQP message says (part of the decode stage).

An oslo.messaging body is an envelope, ``{"oslo.version": "2.0", "oslo.message": "<JSON string>"}``;
the message inside is a request (``method``, ``args``, ``namespace``, ``version``, ``_unique_id``,
one ``_context_<key>`` per request-context field, and for a call ``_msg_id``/``_reply_q``) or a
reply (``result``, ``failure``, ``ending``, ``_msg_id``).  :func:`read_body` turns the bytes into an
:class:`~osflow.model.OsloMessage`; the user's token (``_context_auth_token``) is kept only so that
the flow can fingerprint it, never shown.

>>> body = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps({
...     "method": "select_destinations", "args": {}, "version": "4.5", "_msg_id": "m1",
...     "_reply_q": "reply_ab", "_unique_id": "u1", "_context_request_id": "req-1",
...     "_context_auth_token": "gAAAAsecret"})}).encode()
>>> m, compression, why = read_body(body)
>>> (m.method, m.msg_id, m.reply_q, m.request_id, compression, why)
('select_destinations', 'm1', 'reply_ab', 'req-1', None, None)
>>> "gAAAAsecret" in repr(m)
False
"""

from __future__ import annotations

import bz2
import json
import lzma
import zlib
from typing import Any

from .model import OsloMessage
from .openstack import MAX_IDS, resource_ids

#: Largest body osflow decompresses (a compressed body is a few KB; this bounds a "zip bomb").
MAX_INFLATED = 16 << 20

#: Leading bytes of the compressed formats kombu offers (``kombu_compression``): zlib (kombu's
#: "gzip" is zlib.compress), gzip, bzip2, lzma/xz.
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "lzma"))


def compression_of(body: bytes) -> str | None:
    """The compression a body's first bytes show, or None for plain text.

    >>> [compression_of(b) for b in (zlib.compress(b"{}"), b"\\x1f\\x8b\\x08", b'{"a": 1}', b"")]
    ['zlib', 'gzip', None, None]
    """
    if len(body) >= 2 and body[0] == 0x78 and (body[0] * 256 + body[1]) % 31 == 0:
        return "zlib"
    for magic, name in _MAGIC:
        if body.startswith(magic):
            return name
    return None


def _inflate(body: bytes, how: str) -> bytes:
    if how == "zlib" or how == "gzip":
        d = zlib.decompressobj(zlib.MAX_WBITS | (16 if how == "gzip" else 0))
        out = d.decompress(body, MAX_INFLATED)
        if d.unconsumed_tail:
            raise ValueError("larger than osflow decompresses")
        return out
    d2 = bz2.BZ2Decompressor() if how == "bz2" else lzma.LZMADecompressor()
    out = d2.decompress(body, MAX_INFLATED)
    if not d2.eof:
        raise ValueError("larger than osflow decompresses")
    return out


#: Keys only oslo.messaging puts in a message (besides its envelope and ``_context_*``): a JSON body
#: with none of them is another client's, even with a ``result`` (Celery's task-succeeded event).
_OSLO_KEYS = frozenset({"_msg_id", "_unique_id", "_reply_q", "oslo.version"})


def read_body(body: bytes) -> tuple[OsloMessage | None, str | None, str | None]:
    """(message, compression, why not read) of one AMQP body.

    A compressed body is inflated (bounded by :data:`MAX_INFLATED`) and read; ``compression``
    says how it came.  A body that is not an oslo.messaging message gives ``(None, ..., why)``.

    >>> body = b'{"oslo.version": "2.0", "oslo.message": "{\\\\"method\\\\": \\\\"ping\\\\"}"}'
    >>> message, how, why = read_body(zlib.compress(body))
    >>> message.method, message.is_reply, how, why
    ('ping', False, 'zlib', None)
    >>> read_body(b"\\x78\\x9c garbage")[1:]
    ('zlib', 'compressed body (zlib) that does not inflate')
    >>> read_body(b"plain text")[2]
    'not JSON'
    >>> read_body(b'{"uuid": "f33a", "result": "None", "type": "task-succeeded"}')[2]
    'not an oslo.messaging message'
    """
    how = compression_of(body)
    if how is not None:
        try:
            body = _inflate(body, how)
        except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError):
            return None, how, f"compressed body ({how}) that does not inflate"
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, how, "not JSON"
    if isinstance(doc, dict) and isinstance(doc.get("oslo.message"), str):
        try:
            doc = json.loads(doc["oslo.message"])
        except ValueError:
            return None, how, "oslo.message is not JSON"
    elif isinstance(doc, dict) and not any(k in _OSLO_KEYS or k.startswith("_context_") for k in doc):
        return None, how, "not an oslo.messaging message"  # another client's JSON (Celery's events, ...)
    if not isinstance(doc, dict):
        return None, how, "not an oslo.messaging message"
    return message(doc), how, None


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def message(doc: dict) -> OsloMessage:
    """The :class:`OsloMessage` of one decoded oslo.messaging message."""
    common: dict[str, Any] = dict(
        msg_id=_text(doc.get("_msg_id")),
        unique_id=_text(doc.get("_unique_id")),
        request_id=_text(doc.get("_context_request_id")),
        global_request_id=_text(doc.get("_context_global_request_id")),
        user=_text(doc.get("_context_user_name")),
        project=_text(doc.get("_context_project_name")),
        token=_text(doc.get("_context_auth_token")),
    )
    if "method" not in doc and ("result" in doc or "failure" in doc or "ending" in doc):
        failure, text = _failure(doc.get("failure"))
        return OsloMessage(
            **common,
            is_reply=True,
            ending=doc.get("ending", True) is not False,
            result=None if failure else describe(doc.get("result")),
            failure=failure,
            failure_message=text,
        )
    args = doc["args"] if isinstance(doc.get("args"), dict) else {}
    return OsloMessage(
        **common,
        method=_text(doc.get("method")),
        namespace=_text(doc.get("namespace")),
        version=_text(doc.get("version")),
        object_method=object_method(_text(doc.get("method")), args),
        reply_q=_text(doc.get("_reply_q")),
        ids=arg_ids(args),
    )


def arg_ids(args: Any) -> tuple[str, ...]:
    """The resource UUIDs an RPC's arguments name (:func:`osflow.openstack.resource_ids`), in order.

    >>> arg_ids({"instance": {"nova_object.data": {"uuid": "6C1B0F7E-0d3a-4b8e-9a57-2f0e1c9d8b7a"}},
    ...          "host": "compute1", "ports": ["00000000-0000-0000-0000-00000000000a"]})
    ('6c1b0f7e-0d3a-4b8e-9a57-2f0e1c9d8b7a', '00000000-0000-0000-0000-00000000000a')
    """
    found: dict[str, None] = {}
    todo: list[tuple[Any, int]] = [(args, 0)]
    while todo and len(found) < MAX_IDS:
        value, depth = todo.pop()
        if isinstance(value, str):
            found.update(dict.fromkeys(resource_ids(value)))
        elif depth < 16 and isinstance(value, dict):
            todo.extend((v, depth + 1) for v in reversed(list(value.values())))
        elif depth < 16 and isinstance(value, list):
            todo.extend((v, depth + 1) for v in reversed(value))
    return tuple(found)[:MAX_IDS]


def object_method(method: str | None, args: dict) -> str | None:
    """The object method nova's (and oslo.versionedobjects') object RPC runs: ``Instance.save``.

    >>> object_method("object_action", {"objinst": {"nova_object.name": "Instance"}, "objmethod": "save"})
    'Instance.save'
    >>> object_method("object_class_action_versions", {"objname": "Service", "objmethod": "get_minimum_version"})
    'Service.get_minimum_version'
    >>> object_method("select_destinations", {}) is None
    True
    """
    if method not in ("object_action", "object_class_action", "object_class_action_versions"):
        return None
    objmethod = _text(args.get("objmethod"))
    name = _text(args.get("objname"))
    inst = args.get("objinst")
    if name is None and isinstance(inst, dict):
        name = _object_name(inst)
    if not objmethod:
        return None
    return f"{name}.{objmethod}" if name else objmethod


def _object_name(obj: dict) -> str | None:
    for key in ("nova_object.name", "versioned_object.name", "cinder_object.name", "neutron_object.name"):
        if isinstance(obj.get(key), str):
            return obj[key]
    return None


def _failure(value: Any) -> tuple[str | None, str | None]:
    """(exception class, message) of a reply's ``failure`` (a JSON string in oslo.messaging)."""
    if value is None:
        return None, None
    doc = value
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except ValueError:
            return "RemoteError", value[:200]
    if not isinstance(doc, dict):
        return "RemoteError", None
    cls = _text(doc.get("class")) or "RemoteError"
    if cls.endswith("_Remote"):
        cls = cls[: -len("_Remote")]
    text = _text(doc.get("message"))
    return cls, (" ".join(text.split())[:200] if text else None)


def describe(value: Any, depth: int = 0) -> str:
    """A short description of an RPC result: object names, list shapes, short scalars.

    >>> describe([[{"nova_object.name": "Selection", "nova_object.data": {}}]])
    '[[Selection]]'
    >>> describe({"nova_object.name": "Instance"}), describe(None), describe(3), describe({"a": 1, "b": 2})
    ('Instance', 'None', '3', '{2 keys}')
    >>> describe(list(range(9)))
    '[0, 1, 2, … 9 items]'
    """
    if isinstance(value, dict):
        name = _object_name(value)
        if name:
            return name
        return f"{{{len(value)} key{'s' if len(value) != 1 else ''}}}"
    if isinstance(value, list):
        if depth >= 2:
            return f"[{len(value)} items]"
        shown = [describe(v, depth + 1) for v in value[:3]]
        more = f", … {len(value)} items" if len(value) > 3 else ""
        return f"[{', '.join(shown)}{more}]"
    if value is None:
        return "None"
    if isinstance(value, str):
        if value.startswith("gAAAA"):  # a Fernet token is a secret, whatever the method returned it for
            return '"…"'
        return json.dumps(value if len(value) <= 40 else value[:40] + "…", ensure_ascii=False)
    return json.dumps(value)
