"""The osflow Lua post-dissector on the real captures (tshark -X lua_script:dissectors/osflow.lua).

Golden files: tests/golden/lua/<capture>.tsv, one line per frame that carries a
request or a response.  Regenerate with OSFLOW_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
from pathlib import Path

import pytest

from osflow import openstack, portmap
from osflow_wireshark import (
    ALL_CAPTURES,
    CAPTURES,
    COMPUTE_CAPTURES,
    GOLDEN_DIR,
    LAB_ERRORS,
    PLUGIN,
    TSHARK,
    amqp_deliver,
    amqp_frame,
    amqp_header,
    amqp_longstr,
    amqp_message,
    amqp_method,
    amqp_publish,
    amqp_shortstr,
    amqp_table,
    clean_env,
    fields,
    install_plugin_only,
    needs_tshark,
    oslo_body,
    stderr_lines,
    tshark,
    write_tcp_conversations,
)
from support import check_golden

pytestmark = needs_tshark

GOLDEN_FIELDS = [
    "frame.number", "osflow.service", "osflow.client", "osflow.server", "osflow.flow",
    "osflow.direction", "osflow.op", "osflow.token", "osflow.cache", "osflow.db",
    "osflow.request_in", "osflow.request_id",
]

COLD = CAPTURES["resource-class-list-cold"]


def golden_rows(capture: Path, home: Path, *, plugin: bool = True, extra=None) -> str:
    rows = fields(capture, GOLDEN_FIELDS, home, display_filter="osflow.direction", plugin=plugin,
                  extra=extra)
    return "\t".join(GOLDEN_FIELDS) + "\n" + "".join("\t".join(r) + "\n" for r in rows)


@pytest.mark.parametrize("name", sorted(ALL_CAPTURES))
def test_fields_match_golden(name, tmp_path):
    check_golden(f"lua/{name}.tsv", golden_rows(ALL_CAPTURES[name], tmp_path))


@pytest.mark.parametrize("name", ["resource-class-list-cold", "resource-provider-create"])
def test_installed_plugin_gives_the_same_fields(name, tmp_path):
    """The plugin found in the personal Lua plugins folder (no -X) behaves the same."""
    install_plugin_only(tmp_path)
    text = golden_rows(CAPTURES[name], tmp_path, plugin=False)
    assert text == (GOLDEN_DIR / f"{name}.tsv").read_text(encoding="utf-8")


def test_two_pass_only_adds_what_later_frames_tell(tmp_path):
    """With -2 (as in the GUI) a pooled connection is named by its later replies."""
    two = golden_rows(COLD, tmp_path, extra=["-2"]).splitlines()
    one = (GOLDEN_DIR / "resource-class-list-cold.tsv").read_text(encoding="utf-8").splitlines()
    assert len(one) == len(two)
    learnt = {"osflow.client", "osflow.flow", "osflow.db"}
    filled = 0
    for a, b in zip(one, two, strict=True):
        for name, x, y in zip(GOLDEN_FIELDS, a.split("\t"), b.split("\t"), strict=True):
            if name in learnt and x != y:
                assert name == "osflow.flow" or x == "", (name, x, y)
                filled += 1
            else:
                assert x == y, (name, x, y)
    assert filled > 0
    assert "\tkeystone\tmysql\tkeystone → keystone DB\trequest\tmysql: SELECT 1\t" in "\n".join(two)


def test_golden_says_what_the_issue_asks_for():
    """Spot checks, so a regenerated golden file cannot silently lose the meaning."""
    cold = (GOLDEN_DIR / "resource-class-list-cold.tsv").read_text(encoding="utf-8")
    rows = {r.split("\t")[0]: r.split("\t") for r in cold.splitlines()[1:]}
    col = {n: i for i, n in enumerate(GOLDEN_FIELDS)}
    assert rows["9"][col["osflow.op"]] == "keystone: issue token (password, user admin, project admin)"
    assert rows["9"][col["osflow.client"]] == "openstackclient"
    assert rows["248"][col["osflow.op"]] == "placement: GET /resource_classes (microversion 1.2)"
    assert rows["255"][col["osflow.op"]] == "mysql: login placement@placement"
    assert rows["294"][col["osflow.op"]] == "mysql: SELECT … FROM resource_classes"
    assert rows["305"][col["osflow.op"]] == "memcached: get token cache → miss"
    assert rows["305"][col["osflow.cache"]] == "miss"
    assert rows["305"][col["osflow.client"]] == "placement"
    assert rows["552"][col["osflow.op"]] == "keystone: validate token"
    assert rows["552"][col["osflow.client"]] == "placement"
    assert rows["303"][col["osflow.token"]] == rows["248"][col["osflow.token"]] == "bb9ff2e7"
    hit = (GOLDEN_DIR / "resource-class-list-cache-hit.tsv").read_text(encoding="utf-8")
    assert "memcached: get token cache → hit\tc5456bf4\thit" in hit


#: a header line carrying a token (osflow.openstack.TOKEN_HEADERS, any case)
TOKEN_HEADER = re.compile(r"^,?({}):\s*(\S+)".format("|".join(map(re.escape, openstack.TOKEN_HEADERS))), re.I)


def _token_headers(capture: Path, home: Path) -> list[tuple[int, str]]:
    """(frame, token) for every token header, read with Wireshark only (no plugin)."""
    out = []
    for row in fields(capture, ["frame.number", "http.request.line", "http.response.line"], home,
                      plugin=False, extra=["-d", "tcp.port==5000,http", "-d", "tcp.port==8778,http"]):
        for line in ",".join(row[1:]).split("\\r\\n"):
            m = TOKEN_HEADER.match(line.strip())
            if m:
                out.append((int(row[0]), m.group(2)))
    return out


@pytest.mark.parametrize("name", sorted(ALL_CAPTURES))
def test_token_fingerprint_is_sha256_prefix_and_never_the_token(name, tmp_path):
    capture = ALL_CAPTURES[name]
    tokens = _token_headers(capture, tmp_path)
    assert tokens, "every capture carries tokens"
    rows = {int(r[0]): r for r in fields(capture, ["frame.number", "osflow.token", "osflow.op", "osflow.flow"],
                                          tmp_path)}
    for frame, token in tokens:
        fp = hashlib.sha256(token.encode()).hexdigest()[:8]
        assert fp in rows[frame][1].split(","), (frame, token[:12])
    everything = "\n".join("\t".join(r) for r in rows.values())
    for _, token in tokens:
        assert token not in everything
        assert token[:20] not in everything


@pytest.mark.parametrize("name", sorted(ALL_CAPTURES))
def test_password_never_shown(name, tmp_path):
    capture = ALL_CAPTURES[name]
    bodies = fields(capture, ["http.file_data"], tmp_path, display_filter='http.request.method == "POST"')
    passwords = set()
    for (body,) in bodies:
        try:
            doc = json.loads(body)
        except ValueError:
            continue
        user = doc.get("auth", {}).get("identity", {}).get("password", {}).get("user", {})
        if "password" in user:
            passwords.add(user["password"])
    ops = [r[0] for r in fields(capture, ["osflow.op"], tmp_path, display_filter="osflow.op")]
    assert ops
    for pw in passwords:
        assert all(pw not in re.sub(r"\b(openstackclient|OpenStackClient)\b", "", op) for op in ops), pw


def test_memcache_key_fingerprint_is_the_key_prefix(tmp_path):
    for capture in CAPTURES.values():
        for frame, key, fp in fields(capture, ["frame.number", "memcache.key", "osflow.token"], tmp_path,
                                     display_filter='memcache.key matches "^tokens/"'):
            assert fp == key[len("tokens/"):][:8], frame


CONNECTION_FIELDS = ["frame.number", "tcp.stream", "tcp.srcport", "tcp.dstport", "osflow.service",
                     "osflow.server", "osflow.client", "osflow.direction", "http", "mysql", "memcache"]


def expected_service(sport: int, dport: int) -> str:
    """The server end's key by the port map (both ends in the map: the lower port serves)."""
    src, dst = portmap.service_for_port(sport), portmap.service_for_port(dport)
    if src and dst and src != dst:
        return (src if sport < dport else dst).key
    return (dst or src).key if (dst or src) else ""


def connection_rows(capture: Path, home: Path, extra=None, display_filter=None) -> list[dict]:
    rows = fields(capture, CONNECTION_FIELDS, home, extra=extra, display_filter=display_filter)
    out = [dict(zip(CONNECTION_FIELDS, r, strict=True)) for r in rows]
    for r in out:
        r["message"] = bool(r["http"] or r["mysql"] or r["memcache"])
    return out


def check_every_frame_has_its_service(rows: list[dict]) -> None:
    assert rows
    messages = 0
    for r in rows:
        frame, expect = r["frame.number"], expected_service(int(r["tcp.srcport"]), int(r["tcp.dstport"]))
        assert expect, frame  # the real captures hold only connections on the map's ports
        assert r["osflow.service"] == r["osflow.server"] == expect, frame
        assert bool(r["osflow.direction"]) == r["message"], frame  # direction marks messages only
        messages += r["message"]
    assert 0 < messages < len(rows)  # SYN, ACK, FIN, segments: frames without a message too


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_every_frame_of_a_connection_has_the_service_in_one_pass(name, tmp_path):
    """SYN to FIN: osflow.service on every frame; a bare frame's client is what is known by then."""
    rows = connection_rows(CAPTURES[name], tmp_path)
    check_every_frame_has_its_service(rows)
    first_client: dict[str, str] = {}  # stream -> the first client its frames named
    for r in rows:
        stream, client = r["tcp.stream"], r["osflow.client"]
        if not r["message"]:
            assert client == first_client.get(stream, ""), r["frame.number"]
        if client:
            first_client.setdefault(stream, client)


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_every_frame_of_a_named_connection_has_its_ends_with_two_passes(name, tmp_path):
    """With -2 (as in the GUI) a connection named by any frame has its client on every frame."""
    capture = CAPTURES[name]
    # -Y makes tshark build the protocol tree on its first pass too, as the GUI does
    rows = connection_rows(capture, tmp_path, extra=["-2"], display_filter="tcp")
    check_every_frame_has_its_service(rows)
    by_stream: dict[str, list[dict]] = {}
    for r in rows:
        by_stream.setdefault(r["tcp.stream"], []).append(r)
    named = 0
    for stream, frames in by_stream.items():
        clients = {r["osflow.client"] for r in frames if r["message"]}
        if clients <= {""}:  # no message named the client (or no message at all)
            continue
        named += 1
        assert "" not in clients, stream
        for r in frames:
            assert r["osflow.client"] in clients, (stream, r["frame.number"])
    assert named > 0
    # without -Y the first pass has no tree to read: the second pass still names every frame
    check_every_frame_has_its_service(connection_rows(capture, tmp_path, extra=["-2"]))


def test_service_filter_shows_the_whole_conversation(tmp_path):
    """osflow.service == "placement" shows placement's connections from SYN to FIN."""
    frames = [r[0] for r in fields(COLD, ["frame.number"], tmp_path,
                                     display_filter='osflow.service == "placement"')]
    by_port = [r[0] for r in fields(COLD, ["frame.number"], tmp_path, display_filter="tcp.port == 8778",
                                      plugin=False)]
    assert frames == by_port
    flags = fields(COLD, ["tcp.flags.syn", "tcp.flags.fin"], tmp_path,
                   display_filter='osflow.service == "placement" && !osflow.direction')
    assert ["1", "0"] in flags and ["0", "1"] in flags


def test_info_column_is_prefixed_with_the_service(tmp_path):
    lines = tshark(["-r", str(CAPTURES["resource-class-list-cache-hit"])], tmp_path).stdout.splitlines()
    assert lines and all(re.search(r"\[(placement|memcached|keystone|mysql)\] ", ln) for ln in lines)
    assert any("[memcached] get tokens/" in ln for ln in lines)


def test_errors_get_expert_info(tmp_path):
    rows = fields(LAB_ERRORS, ["frame.number", "osflow.op"], tmp_path, display_filter="osflow.error")
    ops = [op for _, op in rows]
    assert any(op.endswith("→ 401 Unauthorized") for op in ops)
    assert any("→ 503 Service Unavailable" in op for op in ops)
    assert any("→ error 1045" in op for op in ops)
    assert any("→ error 1146" in op for op in ops)
    for capture in CAPTURES.values():   # the real captures hold no error
        assert fields(capture, ["frame.number"], tmp_path, display_filter="osflow.error") == []


def test_loads_silently(tmp_path):
    """No output of its own: stdout carries PDML/fields only, stderr nothing new."""
    capture = str(CAPTURES["resource-class-list-cache-hit"])
    with_plugin = tshark(["-r", capture, "-q"], tmp_path)
    assert with_plugin.stdout == ""
    assert stderr_lines(with_plugin) == []
    install_plugin_only(tmp_path / "installed")
    installed = tshark(["-r", capture, "-q"], tmp_path / "installed", plugin=False)
    assert installed.stdout == "" and stderr_lines(installed) == []
    # and it really was loaded
    plugins = tshark(["-G", "plugins"], tmp_path / "installed", plugin=False).stdout
    assert "osflow.lua" in plugins


@pytest.mark.parametrize("name", ["resource-class-list-cold", "lab-errors"])
def test_pdml_is_valid_xml_with_osflow(name, tmp_path):
    lxml = pytest.importorskip("lxml.etree")
    proc = tshark(["-r", str(ALL_CAPTURES[name]), "-T", "pdml"], tmp_path)
    assert stderr_lines(proc) == []
    assert proc.stdout.startswith("<?xml")
    root = lxml.fromstring(proc.stdout.encode())
    packets = root.findall("packet")
    assert packets
    with_message = 0
    for pkt in packets:
        protos = pkt.findall("proto[@name='osflow']")
        assert len(protos) == 1  # every frame of these captures is on a port of the map
        names = {f.get("name") for f in protos[0].iter("field")}
        assert {"osflow.service", "osflow.server", "osflow.flow"} <= names
        if pkt.findall("proto[@name='http']") + pkt.findall("proto[@name='mysql']") \
                + pkt.findall("proto[@name='memcache']"):
            with_message += 1
            assert "osflow.direction" in names
        else:
            assert not names & {"osflow.direction", "osflow.op", "osflow.token", "osflow.request_in"}
    assert 10 < with_message < len(packets)
    ops = [f.get("show") for f in root.iter("field") if f.get("name") == "osflow.op"]
    assert any("issue token" in op for op in ops)
    assert "Lua Error" not in proc.stdout


@pytest.mark.parametrize("name", sorted(ALL_CAPTURES))
def test_no_lua_error_and_no_internal_error(name, tmp_path):
    proc = tshark(["-r", str(ALL_CAPTURES[name]), "-V"], tmp_path)
    assert "Lua Error" not in proc.stdout + proc.stderr
    assert "osflow plugin error" not in proc.stdout


def test_port_map_preference(tmp_path):
    """The map is a preference: drop keystone, rename the placement port."""
    rows = fields(COLD, ["frame.number", "osflow.service"], tmp_path,
                  extra=["-o", "osflow.services:my-api=8778;memcached=11211;mysql=3306"])
    services = {s for _, s in rows}
    assert services == {"my-api", "memcached", "mysql", ""}
    keystone_frames = fields(COLD, ["frame.number"], tmp_path, display_filter="tcp.port == 5000 && osflow",
                             extra=["-o", "osflow.services:placement=8778"])
    assert keystone_frames == []


def test_bad_preference_entries_are_reported_not_fatal(tmp_path):
    proc = tshark(["-r", str(COLD), "-o", "osflow.services:keystone=5000;junk;placement=99999",
                   "-T", "fields", "-e", "frame.number", "-Y", "osflow.bad_pref"], tmp_path)
    assert proc.stdout.split() == ["1"]
    assert "Lua Error" not in proc.stdout + proc.stderr


def test_info_prefix_preference(tmp_path):
    out = tshark(["-r", str(CAPTURES["resource-class-list-cache-hit"]), "-o", "osflow.info_prefix:FALSE"],
                 tmp_path).stdout
    assert "[placement]" not in out and "GET /resource_classes" in out


# --------------------------------------------------------------------------- fuzz

FUZZ_SEEDS = [1, 2, 3, 4, 5, 6]
#: frames where a Lua error surfaced, or where osflow caught one of its own
ERROR_FILTER = "_ws.lua.error || osflow.internal_error"


def lua_error_frames(capture: Path, home: Path, script_args: list[str]) -> tuple[list[str], str]:
    assert TSHARK
    proc = subprocess.run([TSHARK, *script_args, "-r", str(capture), "-Y", ERROR_FILTER, "-T", "fields",
                           "-e", "frame.number", "-e", "_ws.expert.message"],
                          capture_output=True, text=True, errors="replace", env=clean_env(home), timeout=120)
    return [ln for ln in proc.stdout.splitlines() if ln.strip()], proc.stderr


def test_error_detection_sees_a_lua_error(tmp_path):
    """The fuzz test's detector works: a script that raises is caught."""
    bad = tmp_path / "raises.lua"
    bad.write_text('local p = Proto.new("osflowtestbad", "x")\n'
                   'function p.dissector(tvb, pinfo, tree) if pinfo.number == 2 then error("boom") end end\n'
                   "register_postdissector(p)\n")
    frames, _ = lua_error_frames(CAPTURES["resource-class-list-cache-hit"], tmp_path,
                                 ["-X", f"lua_script:{bad}", "-X", f"lua_script:{PLUGIN}"])
    assert [f.split("\t")[0] for f in frames] == ["2"]
    assert "Lua Error" in frames[0]


def fuzz(captures: dict, seeds, tmp_path: Path) -> list[str]:
    """Corrupt each capture with editcap -E for each seed and run the plugin on it: no Lua error
    may come of it (the plugin degrades to expert info).  The names fuzzed, once per seed."""
    editcap = Path(TSHARK).with_name("editcap")
    if not editcap.exists():
        pytest.skip("editcap not installed")
    done = []
    for seed in seeds:
        for name, capture in sorted(captures.items()):
            out = tmp_path / f"{name}-{seed}.pcapng"
            subprocess.run([str(editcap), "-E", "0.02", "--seed", str(seed), str(capture), str(out)],
                           check=True, capture_output=True, env=clean_env(tmp_path))
            frames, stderr = lua_error_frames(out, tmp_path, ["-X", f"lua_script:{PLUGIN}"])
            assert frames == [], (name, seed, frames[:3])
            assert "Lua Error" not in stderr, (name, seed)
            done.append(name)
    return done


def test_fuzzed_captures_never_raise_lua_errors(tmp_path):
    """editcap -E corrupts bytes; the plugin must degrade to expert info, never a Lua error."""
    assert sum(FRAME_COUNTS[name] for name in fuzz(ALL_CAPTURES, FUZZ_SEEDS, tmp_path)) > 5000


FRAME_COUNTS = {"resource-class-list-cache-hit": 23, "resource-class-list-cold": 1005,
                "resource-provider-create": 775, "token-issue": 248, "lab-errors": 72}


# --------------------------------------------------------------------------- RPC over RabbitMQ

RPC_FIELDS = ["osflow.rpc.kind", "osflow.rpc.topic", "osflow.rpc.method", "osflow.rpc.target",
              "osflow.rpc.msg_id", "osflow.rpc.failure"]
SERVER_CREATE = COMPUTE_CAPTURES["server-create"]


def compute_golden_rows(capture: Path, home: Path) -> str:
    names = GOLDEN_FIELDS + RPC_FIELDS
    rows = fields(capture, names, home, display_filter="osflow.direction")
    return "\t".join(names) + "\n" + "".join("\t".join(r) + "\n" for r in rows)


@pytest.mark.parametrize("name", sorted(COMPUTE_CAPTURES))
def test_compute_fields_match_golden(name, tmp_path):
    check_golden(f"lua/compute-{name}.tsv", compute_golden_rows(COMPUTE_CAPTURES[name], tmp_path))


def _by_frame(capture: Path, names: list[str], home: Path, display_filter: str = "osflow.direction") -> dict:
    rows = fields(capture, ["frame.number", *names], home, display_filter=display_filter)
    return {r[0]: dict(zip(["frame.number", *names], r, strict=True)) for r in rows}


def test_rpc_ops_on_server_create(tmp_path):
    """The RPC that builds the server, frame by frame (the README of the captures tells the story)."""
    names = ["osflow.service", "osflow.direction", "osflow.op", "osflow.client", "osflow.request_in",
             "osflow.request_id", *RPC_FIELDS]
    rows = _by_frame(SERVER_CREATE, names, tmp_path, "tcp.port == 5672 && osflow.direction")
    assert {r["osflow.service"] for r in rows.values()} == {"rabbitmq"}

    def row(frame: int, op: str, direction: str) -> dict:
        r = rows[str(frame)]
        assert (r["osflow.op"], r["osflow.direction"]) == (op, direction), frame
        return r

    cast = row(1017, "rpc cast conductor.schedule_and_build_instances", "request")
    assert (cast["osflow.rpc.kind"], cast["osflow.rpc.target"], cast["osflow.rpc.msg_id"]) == (
        "cast", "nova-conductor", "")
    assert cast["osflow.request_id"].startswith("req-")
    assert row(1020, "rpc deliver cast conductor.schedule_and_build_instances", "response")["osflow.client"] \
        == "nova-conductor"
    call = row(1043, "rpc call scheduler.select_destinations", "request")
    assert (call["osflow.rpc.kind"], call["osflow.rpc.topic"], call["osflow.rpc.method"]) == \
        ("call", "scheduler", "select_destinations")
    assert call["osflow.rpc.msg_id"] and call["osflow.request_id"] == cast["osflow.request_id"]
    assert row(1046, "rpc deliver call scheduler.select_destinations", "response")["osflow.client"] == "nova-scheduler"
    reply = row(1252, "rpc reply result (scheduler.select_destinations)", "request")
    assert reply["osflow.request_in"] == "1043" and reply["osflow.client"] == "nova-scheduler"
    assert (reply["osflow.rpc.kind"], reply["osflow.rpc.msg_id"]) == ("reply", call["osflow.rpc.msg_id"])
    assert row(1255, "rpc deliver reply result (scheduler.select_destinations)", "response")["osflow.request_in"] \
        == "1043"
    assert row(1468, "rpc cast compute.controller.build_and_run_instance", "request")["osflow.rpc.target"] \
        == "nova-compute"
    assert row(1500, "rpc call conductor.object_action (Instance.save)", "request")
    fanout = row(1996, "rpc fanout scheduler.update_instance_info", "request")
    assert (fanout["osflow.rpc.kind"], fanout["osflow.rpc.target"]) == ("fanout", "nova-scheduler")
    assert row(1999, "rpc deliver fanout scheduler.update_instance_info", "response")["osflow.client"] \
        == "nova-scheduler"
    assert row(116, "amqp heartbeat", "request")["osflow.rpc.kind"] == ""
    assert row(1018, "amqp ack", "response")
    assert row(1021, "amqp ack", "request")
    # every AMQP frame has an op; no RPC failure in this capture
    amqp_frames = {r[0] for r in fields(SERVER_CREATE, ["frame.number"], tmp_path, display_filter="amqp",
                                        plugin=False)}
    assert amqp_frames == set(rows)
    assert fields(SERVER_CREATE, ["frame.number"], tmp_path,
                  display_filter="tcp.port == 5672 && (osflow.error || osflow.malformed)") == []


def test_rpc_ops_on_network_create(tmp_path):
    rows = _by_frame(COMPUTE_CAPTURES["network-create"], ["osflow.op", "osflow.rpc.target"], tmp_path,
                     "tcp.port == 5672 && osflow.direction")
    assert rows["929"] == {"frame.number": "929", "osflow.op": "rpc fanout neutron-vo-Network-1.1.push",
                           "osflow.rpc.target": "neutron-agent"}
    assert rows["925"]["osflow.op"] == "amqp exchange.declare neutron-vo-Network-1.1_fanout"


def _rpc_payload_tokens(capture: Path, home: Path) -> dict[int, list[str]]:
    """frame -> the _context_auth_token of each oslo message in it, read without the plugin."""
    out: dict[int, list[str]] = {}
    for frame, payloads in fields(capture, ["frame.number", "amqp.payload"], home, display_filter="amqp.payload",
                                  plugin=False):
        for hexed in payloads.split(","):
            doc = json.loads(bytes.fromhex(hexed.replace(":", "")))
            message = json.loads(doc["oslo.message"]) if "oslo.message" in doc else doc
            if message.get("_context_auth_token"):
                out.setdefault(int(frame), []).append(message["_context_auth_token"])
    return out


#: the captures whose RPC carries the user's token (image-create's is nova-compute's periodic work)
RPC_WITH_TOKENS = ["network-create", "server-create"]


@pytest.mark.parametrize("name", RPC_WITH_TOKENS)
def test_rpc_token_fingerprint_is_the_http_one(name, tmp_path):
    """_context_auth_token gets the fingerprint an HTTP header of the same token gets."""
    capture = COMPUTE_CAPTURES[name]
    rpc_tokens = _rpc_payload_tokens(capture, tmp_path)
    assert rpc_tokens, "the user's token rides in RPC messages"
    rows = {int(r[0]): r for r in fields(capture, ["frame.number", "osflow.token", "osflow.token.source"], tmp_path)}
    for frame, tokens in rpc_tokens.items():
        shown = rows[frame][1].split(",")
        for token in tokens:
            assert hashlib.sha256(token.encode()).hexdigest()[:8] in shown, frame
        assert "_context_auth_token" in rows[frame][2].split(","), frame
    http = {token: fp for frame, token in _token_headers(capture, tmp_path)
            for fp in rows[frame][1].split(",") if fp == hashlib.sha256(token.encode()).hexdigest()[:8]}
    assert {t for ts in rpc_tokens.values() for t in ts} <= set(http), "the RPC token came over HTTP first"


@pytest.mark.parametrize("name", sorted(COMPUTE_CAPTURES))
def test_no_token_or_password_in_any_osflow_field(name, tmp_path):
    capture = COMPUTE_CAPTURES[name]
    secrets = {t for _, t in _token_headers(capture, tmp_path)}
    secrets |= {t for ts in _rpc_payload_tokens(capture, tmp_path).values() for t in ts}
    for (body,) in fields(capture, ["http.file_data"], tmp_path, display_filter='http.request.method == "POST"'):
        try:
            user = json.loads(body)["auth"]["identity"]["password"]["user"]
        except (ValueError, KeyError, TypeError):
            continue
        secrets.add(user["password"])
    assert secrets
    text = "\n".join("\t".join(r) for r in fields(capture, ALL_OSFLOW_FIELDS, tmp_path))
    text = re.sub(r"\b(openstackclient|OpenStackClient)\b", "", text)
    for secret in secrets:
        assert secret not in text and secret[:20] not in text


#: every string field of the plugin (for the secret checks)
ALL_OSFLOW_FIELDS = ["osflow.service", "osflow.client", "osflow.server", "osflow.flow", "osflow.direction",
                     "osflow.op", "osflow.token", "osflow.token.source", "osflow.cache", "osflow.db",
                     "osflow.request_id", "osflow.rpc", *RPC_FIELDS, "_ws.expert.message"]

CALL_ID = "1f2e3d4c5b6a"
NOT_JSON = b'{"oslo.version": "2.0", "oslo.mess'
USER_TOKEN = "gAAAAABsynthetic-user-token-0123456789"
BROKER_PASSWORD = "broker-s3cret-pw"


def _call(method: str = "select_destinations", **extra) -> dict:
    return {"method": method, "args": {"spec": "x" * 3000}, "namespace": None, "version": "4.5",
            "_msg_id": CALL_ID, "_reply_q": "reply_0123abcd", "_timeout": None, "_unique_id": "u1",
            "_context_request_id": "req-synthetic-1", "_context_auth_token": USER_TOKEN, **extra}


def _cast(method: str) -> dict:
    return {"method": method, "args": {}, "namespace": "compute_task", "version": "1.0", "_unique_id": method,
            "_context_request_id": "req-synthetic-2", "_context_auth_token": USER_TOKEN}


def synthetic_rpc_segments() -> list[tuple[int, bool, bytes]]:
    """(connection, to the broker?, bytes): what the plugin must read beyond the real captures."""
    start_ok = amqp_table({"product": "py-amqp", "connection_name": "nova-conductor:4242:5f0c1b2a"}) \
        + amqp_shortstr("PLAIN") + amqp_longstr(b"\0guest\0" + BROKER_PASSWORD.encode()) + amqp_shortstr("en_US")
    big_call = amqp_message(amqp_publish("nova", "scheduler"), oslo_body(_call()), frame_max=1200)
    failure = {"failure": json.dumps({"class": "NoValidHost", "module": "nova.exception",
                                      "message": "No valid host was found. ", "tb": ["Traceback ..."]}),
               "result": None, "ending": True, "_msg_id": CALL_ID}
    two_casts = amqp_message(amqp_publish("nova", "conductor"), oslo_body(_cast("build_instances"))) \
        + amqp_message(amqp_publish("nova", "conductor", channel=2), oslo_body(_cast("rebuild_instance")), channel=2)
    import gzip
    import zlib

    notification = {"message_id": "n1", "publisher_id": "compute.controller", "event_type": "instance.create.end",
                    "priority": "INFO", "payload": {}, "timestamp": "2026-01-01 00:00:00"}
    return [
        (0, True, amqp_method(10, 11, start_ok, channel=0)),                         # 1
        (1, True, big_call[:1000]), (1, True, big_call[1000:2500]), (1, True, big_call[2500:]),   # 2-4
        (2, False, amqp_message(amqp_deliver("nova", "scheduler"), oslo_body(_call()))),          # 5
        (2, True, amqp_message(amqp_publish("", "reply_0123abcd"), oslo_body(failure))),          # 6
        (1, False, amqp_message(amqp_deliver("", "reply_0123abcd"), oslo_body(failure))),         # 7
        (3, True, two_casts),                                                                     # 8
        (3, False, amqp_method(60, 80, bytes(9)) * 2 + amqp_frame(8, 0, b"")),                    # 9
        (4, True, amqp_message(amqp_publish("nova", "conductor"), zlib.compress(oslo_body(_cast("x"))),
                               headers={"compression": "application/x-gzip"})),                   # 10
        (4, True, amqp_message(amqp_publish("nova", "conductor"), gzip.compress(oslo_body(_cast("y"))))),  # 11
        (5, True, amqp_publish("nova", "notifications.info")),                                    # 12
        (5, True, amqp_header(len(oslo_body(notification))) + amqp_frame(3, 1, oslo_body(notification))),  # 13
        (6, True, amqp_message(amqp_publish("nova", "conductor"), NOT_JSON)),  # 14
        (6, False, amqp_method(20, 40, struct.pack("!H", 404) + amqp_shortstr("NOT_FOUND - no queue 'q1'")
                               + struct.pack("!HH", 50, 10))),                                    # 15
        (6, True, b"AMQP\0\0\x09\x01"),                                                           # 16
    ]


BIG_CALL = len(oslo_body(_call()))
SYNTHETIC_OPS = {
    1: "amqp connection.start-ok nova-conductor:4242:5f0c1b2a (user guest)",
    2: f"amqp publish nova/scheduler (body 0 of {BIG_CALL} bytes)",
    3: f"amqp publish nova/scheduler (body 2400 of {BIG_CALL} bytes)",
    4: "rpc call scheduler.select_destinations",
    5: "rpc deliver call scheduler.select_destinations",
    6: "rpc reply failure NoValidHost (scheduler.select_destinations)",
    7: "rpc deliver reply failure NoValidHost (scheduler.select_destinations)",
    8: "rpc cast conductor.build_instances; rpc cast conductor.rebuild_instance",
    9: "amqp ack ×2; amqp heartbeat",
    10: "amqp compressed body (application/x-gzip, publish nova/conductor)",
    11: "amqp compressed body (gzip, publish nova/conductor)",
    12: "amqp publish nova/notifications.info (header follows)",
    13: "rpc notify instance.create.end",
    14: f"amqp publish nova/conductor ({len(NOT_JSON)} bytes, not JSON)",
    15: "amqp channel.close 404 NOT_FOUND - no queue 'q1'",
    16: "amqp protocol header",
}


@pytest.fixture(scope="module")
def synthetic_rpc(tmp_path_factory) -> Path:
    return write_tcp_conversations(tmp_path_factory.mktemp("rpc") / "rpc.pcap", synthetic_rpc_segments(),
                                   server_port=5672)


def test_rpc_synthetic_messages(synthetic_rpc, tmp_path):
    """Bodies over several body frames and TCP segments, failures, several messages in a frame,
    compressed bodies, a notification, a body that is not JSON, Connection.Start-Ok."""
    names = ["osflow.op", "osflow.client", "osflow.token", "osflow.request_in", "osflow.rpc.kind",
             "osflow.rpc.failure", "osflow.rpc.msg_id", "osflow.error", "osflow.malformed", "_ws.expert.message"]
    rows = {int(k): v for k, v in _by_frame(synthetic_rpc, names, tmp_path).items()}
    assert {f: r["osflow.op"] for f, r in rows.items()} == SYNTHETIC_OPS
    fp = hashlib.sha256(USER_TOKEN.encode()).hexdigest()[:8]
    assert rows[1]["osflow.client"] == "nova-conductor"
    assert rows[4]["osflow.token"] == fp and rows[4]["osflow.rpc.msg_id"] == CALL_ID
    assert rows[2]["osflow.token"] == rows[3]["osflow.token"] == ""
    assert rows[5]["osflow.client"] == "nova-scheduler"
    for f in (6, 7):
        assert rows[f]["osflow.request_in"] == "4" and rows[f]["osflow.rpc.failure"] == "NoValidHost"
        assert rows[f]["osflow.error"] and "NoValidHost (nova.exception)" in rows[f]["_ws.expert.message"]
    assert rows[6]["osflow.client"] == "nova-scheduler"
    assert rows[8]["osflow.rpc.kind"] == "cast,cast" and rows[8]["osflow.token"] == f"{fp},{fp}"
    assert rows[13]["osflow.rpc.kind"] == "notify"
    assert rows[14]["osflow.malformed"] and not rows[13]["osflow.malformed"]
    assert rows[15]["osflow.error"] and "404" in rows[15]["_ws.expert.message"]
    everything = tshark(["-r", str(synthetic_rpc), "-T", "fields", *[a for n in ALL_OSFLOW_FIELDS for a in ("-e", n)]],
                        tmp_path).stdout
    assert BROKER_PASSWORD not in everything and USER_TOKEN not in everything and USER_TOKEN[:20] not in everything


def test_rpc_two_passes_agree(synthetic_rpc, tmp_path):
    """tshark -2 (as the GUI) joins the bodies once: the same ops as one pass."""
    one = fields(synthetic_rpc, ["frame.number", "osflow.op", "osflow.request_in"], tmp_path)
    two = fields(synthetic_rpc, ["frame.number", "osflow.op", "osflow.request_in"], tmp_path,
                 extra=["-2", "-Y", "tcp"])
    assert one == two and len(one) == len(SYNTHETIC_OPS)


def test_rpc_body_parsing_only_on_amqp_frames():
    """Plain HTTP/MySQL/memcached frames never reach the AMQP code: it is the analyser of the
    amqp protocol only, and no field of it is extracted elsewhere."""
    text = PLUGIN.read_text(encoding="utf-8")
    assert text.count("analyse_amqp(") == 1 and "amqp     = { f_amqp, analyse_amqp }," in text
    assert re.findall(r'field\("amqp[^"]*"\)', text) == ['field("amqp")']


def test_fuzzed_compute_captures_never_raise_lua_errors(tmp_path):
    """editcap -E on the RPC captures (the lab's too: bodies over frames, compressed, Start-Ok):
    the AMQP code degrades to expert info too."""
    captures = {**COMPUTE_CAPTURES, **{name: LAB / name / "capture.pcapng"
                                       for name in ("lab-frame-max", "lab-compressed", "lab-service-start")}}
    assert len(fuzz(captures, FUZZ_SEEDS[:3], tmp_path)) == 3 * 6


def mutated_amqp_segments(seed: int, variants: int = 40) -> list[tuple[int, bool, bytes]]:
    """The synthetic RPC segments, each variant with bytes flipped, cut or sizes rewritten."""
    import random

    rng = random.Random(seed)
    base = synthetic_rpc_segments()
    out = []
    for v in range(variants):
        for conn, to_server, payload in base:
            b = bytearray(payload)
            for _ in range(rng.randint(1, 6)):
                what = rng.random()
                if what < 0.5 and b:
                    b[rng.randrange(len(b))] = rng.randrange(256)
                elif what < 0.7 and len(b) > 8:
                    b[3:7] = rng.randrange(1 << 32).to_bytes(4, "big")      # the frame size
                elif what < 0.85 and b:
                    del b[rng.randrange(len(b)):]
                else:
                    b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            out.append((v * 10 + conn, to_server, bytes(b)))
    return out


@pytest.mark.parametrize("seed", FUZZ_SEEDS[:3])
def test_mutated_amqp_frames_never_raise_lua_errors(seed, tmp_path):
    """Broken AMQP frames, bodies and oslo JSON (what editcap rarely makes of them): no Lua error,
    and every AMQP frame still gets an op."""
    capture = write_tcp_conversations(tmp_path / "mutated.pcap", mutated_amqp_segments(seed), server_port=5672)
    frames, stderr = lua_error_frames(capture, tmp_path, ["-X", f"lua_script:{PLUGIN}"])
    assert frames == [], frames[:3]
    assert "Lua Error" not in stderr
    rows = fields(capture, ["frame.number", "osflow.op"], tmp_path, display_filter="amqp")
    assert len(rows) > 100 and all(op for _, op in rows)
    assert fields(capture, ["frame.number"], tmp_path, display_filter="osflow.malformed")


LAB = Path(__file__).resolve().parent / "fixtures" / "captures-compute"


def test_rpc_ops_on_the_lab_s_recordings(tmp_path):
    """What the synthetic AMQP tests check, on real frames recorded in the lab (tests/lab/)."""
    names = ["osflow.op", "osflow.client", "osflow.request_in", "osflow.token", *RPC_FIELDS]
    novalidhost = _by_frame(LAB / "lab-server-create-novalidhost" / "capture.pcapng", names, tmp_path,
                            "tcp.port == 5672 && osflow.direction")
    failure = novalidhost["1207"]
    assert failure["osflow.op"] == "rpc reply failure NoValidHost (scheduler.select_destinations)"
    assert (failure["osflow.rpc.failure"], failure["osflow.rpc.kind"], failure["osflow.request_in"]) == (
        "NoValidHost", "reply", "1157")
    assert novalidhost["1157"]["osflow.op"] == "rpc call scheduler.select_destinations"

    # frame_max = 4096: the 13,697-byte cast came in four body frames, read as one message
    split = _by_frame(LAB / "lab-frame-max" / "capture.pcapng", names, tmp_path, "frame.number == 45")["45"]
    assert split["osflow.op"] == "rpc cast conductor.schedule_and_build_instances"
    assert re.fullmatch(r"[0-9a-f]{8}", split["osflow.token"])

    # kombu_compression = gzip in nova-conductor: its bodies are said to be compressed, not misread
    compressed = _by_frame(LAB / "lab-compressed" / "capture.pcapng", names, tmp_path,
                           "tcp.port == 5672 && osflow.direction")
    ops = [r["osflow.op"] for r in compressed.values()]
    assert any(op.startswith("amqp compressed body (application/x-gzip") for op in ops)
    assert any(op == "rpc cast conductor.schedule_and_build_instances" for op in ops)  # nova-api's: plain

    # a service start: Connection.Start-Ok names the process, never its password
    start = _by_frame(LAB / "lab-service-start" / "capture.pcapng", names, tmp_path, "frame.number == 525")["525"]
    assert re.fullmatch(r"amqp connection\.start-ok nova-conductor:7921:[0-9a-f-]{36}", start["osflow.op"])
    assert start["osflow.client"] == "nova-conductor"
