"""The model's shared ==, hash() and repr() behave as the methods @dataclass would generate."""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools

import pytest

from osflow import model, tables
from osflow.decode import Decoder
from osflow.pair import Pairing
from osflow.pipeline import Tables, analyse
from osflow.source import PdmlReader
from support import case_dir, pdml_bytes

pytestmark = pytest.mark.tshark

CASES = ("resource-class-list-cold", "token-issue", "captures-compute/server-create",
         "captures-compute/lab-service-start",  # holds Connection.Start-Ok (AmqpOpen)
         "proxy/haproxy-loopback")  # requests through HAProxy (ProxiedExchange)
SHARED = sorted(
    (c for c in vars(model).values() if isinstance(c, type) and issubclass(c, model._Fields)
     and c not in (model._Fields, model.Message)),  # Message: only a base, never made
    key=lambda c: c.__name__,
)


def _walk(obj, found: dict) -> None:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if id(obj) not in found:
            found[id(obj)] = obj
            for f in dataclasses.fields(obj):
                _walk(getattr(obj, f.name), found)
    elif isinstance(obj, (tuple, list)):
        for x in obj:
            _walk(x, found)


@pytest.fixture(scope="module")
def real_objects() -> dict[type, list]:
    """Every model object of two real captures: packets, messages, table rows, the flow and all it holds."""
    found: dict = {}
    for case in CASES:
        d = case_dir(case)
        ss, ps = d / "ss.txt", d / "ps.txt"
        packets = list(PdmlReader(io.BytesIO(pdml_bytes(case)), case))
        _walk(packets, found)
        messages = list(Decoder().decode(iter(packets)))
        _walk(messages, found)
        pairing = Pairing()
        pairing.feed(messages)
        _walk(pairing.finish(), found)
        _walk(list(pairing.rpc.connections().values()), found)
        _walk(tables.parse_ss(ss.read_text(), source=str(ss)).entries, found)
        _walk(tables.parse_ps(ps.read_text(), source=str(ps)).processes, found)
        flow = analyse(io.BytesIO(pdml_bytes(case)), case, Tables.load([str(ss)], [str(ps)])).flow
        _walk(flow, found)
    by_class: dict[type, list] = {}
    for obj in found.values():
        by_class.setdefault(type(obj), []).append(obj)
    return by_class


def _generated(cls: type) -> type:
    """A twin of ``cls`` with the methods @dataclass generates (same name, same fields)."""
    twin = type(cls.__name__, (cls,), {"__qualname__": cls.__qualname__, "__doc__": cls.__doc__})
    return dataclasses.dataclass(frozen=True, eq=True, repr=True)(twin)


@pytest.mark.parametrize("cls", SHARED, ids=lambda c: c.__name__)
def test_shared_methods_match_the_generated_ones(cls, real_objects):
    objs = real_objects.get(cls, [])[:40]
    assert objs, f"no {cls.__name__} in the real captures: this test would check nothing"
    gen = _generated(cls)
    for a, b in itertools.product(objs[:8], objs):
        assert (a == b) is gen.__eq__(a, b)
    for a in objs:
        assert repr(a) == gen.__repr__(a)
        assert hash(a) == gen.__hash__(a)
        twin = copy.copy(a)
        assert twin == a and hash(twin) == hash(a) and twin is not a
        assert a.__eq__(object()) is NotImplemented


def test_a_secret_is_compared_but_not_shown():
    t = model.Token("T1", "f7934039", "admin@admin", secret="gAAAAABexample")
    assert "gAAAAAB" not in repr(t) and repr(t) == "Token(id='T1', fingerprint='f7934039', owner='admin@admin')"
    assert t != dataclasses.replace(t, secret=None)
