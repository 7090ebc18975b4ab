"""Source stage: streaming PDML, bad input, hostile XML."""

from __future__ import annotations

import io

import pytest

from osflow.errors import InputError
from osflow.source import PdmlReader
from support import CASES, pdml_bytes, tshark

pytestmark = pytest.mark.tshark


def read(data: bytes, name: str = "x.pdml"):
    reader = PdmlReader(io.BytesIO(data), name)
    return reader, list(reader)


@pytest.mark.parametrize("case", CASES)
def test_every_tcp_frame_is_read(case):
    reader, packets = read(pdml_bytes(case))
    assert reader.partial is None
    assert packets and [p.number for p in packets] == sorted(p.number for p in packets)
    assert packets[0].number == 1
    assert all(p.src.port and p.dst.port for p in packets)


def test_packet_fields_of_a_reassembled_request():
    _, packets = read(pdml_bytes("resource-class-list-cold"))
    p = {p.number: p for p in packets}[9]
    assert (str(p.src), str(p.dst)) == ("127.0.0.1:56474", "127.0.0.1:5000")
    assert p.segments == (8, 9)
    (http,) = p.layers
    assert http.get("http.request.method") == "POST"
    assert http.get("http.request.uri") == "/v3/auth/tokens"
    assert "password" in http.get("http.file_data")  # the body is kept for decode, which drops the password


def test_elements_are_cleared_as_they_are_read():
    data = pdml_bytes("resource-class-list-cold")
    reader = PdmlReader(io.BytesIO(data))
    it = iter(reader)
    sizes = []
    for _ in it:
        # the parser's root holds only the few packets of its read-ahead, however long the capture
        sizes.append(len(it.gi_frame.f_locals["root"]))
    assert len(sizes) > 1000 and max(sizes) <= 4


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "found empty input"),
        (b"   \n", "found empty input"),
        (b"this is not xml", "found not XML"),
        (b'<?xml version="1.0"?><html><body/></html>',
         "with a <pdml> root, found an XML document whose root is <html>"),
    ],
)
def test_bad_input_is_one_clear_error(data, expected):
    with pytest.raises(InputError) as e:
        read(data)
    assert expected in str(e.value)
    assert "x.pdml" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("fraction", [0.13, 0.5, 0.77, 0.999])
def test_truncated_pdml_keeps_every_packet_before_the_cut(fraction):
    data = pdml_bytes("resource-class-list-cold")
    cut = data[: int(len(data) * fraction)]
    reader, packets = read(cut)
    assert reader.partial is not None
    full = cut.count(b"</packet>")
    assert len(packets) == full
    assert f"after frame {packets[-1].number}" in str(reader.partial)


def test_external_entities_and_entity_bombs_are_not_expanded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    real = pdml_bytes("resource-class-list-cache-hit").decode()
    head, rest = real.split("<pdml", 1)
    doctype = (
        f'<!DOCTYPE pdml [<!ENTITY xxe SYSTEM "file://{secret}">'
        '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    )
    # put the entities where a field value would be read
    hostile = (head + doctype + "<pdml" + rest).replace('show="GET"', 'show="&xxe;&d;"', 1)
    reader, packets = read(hostile.encode())
    values = [v for p in packets for layer in p.layers for _, v in layer.fields]
    assert not any("TOPSECRET" in v for v in values)
    assert not any("aaaaaaaaaa" in v for v in values)


@pytest.mark.parametrize("case", ["resource-class-list-cold", "resource-provider-create"])
def test_result_sets_read_by_position_decode_as_the_full_walk(case, monkeypatch):
    # result_set_pdu reads column definitions and rows by position; the walk of mysql_fields is what it
    # stands in for: both must give the same messages on real result sets.
    if tshark() is None:
        pytest.skip("tshark is not installed")
    from osflow.decode import Decoder
    from osflow.protocols import mysql

    data = pdml_bytes(case)
    by_position = []
    read = mysql.result_set_pdu

    def counted(proto):
        fields = read(proto)
        by_position.append(fields is not None)
        return fields

    monkeypatch.setattr(mysql, "result_set_pdu", counted)
    fast = list(Decoder().decode(PdmlReader(io.BytesIO(data))))
    assert sum(by_position) > 50  # the positional path did the work
    monkeypatch.setattr(mysql, "result_set_pdu", lambda proto: None)
    assert list(Decoder().decode(PdmlReader(io.BytesIO(data)))) == fast


def test_addresses_are_made_once_per_endpoint_and_do_not_pile_up():
    from osflow import source
    from osflow.model import Address

    made = source._Addresses()
    first = made["::ffff:127.0.0.1", "5000"]
    assert first == Address("127.0.0.1", 5000) and made["::ffff:127.0.0.1", "5000"] is first
    for port in range(made.LIMIT + 10):  # a long capture of many short connections
        assert made["10.0.0.1", str(port)].port == port
    assert len(made) <= made.LIMIT
    with pytest.raises(ValueError):
        made["10.0.0.1", "http"]  # the reader skips such a frame
