"""``osflow record`` on a host with a network: the interfaces it captures by default, the host's
name, and the socket log of connections to and from another host.

The other host is a network namespace this test creates (198.18.3.0/24, a veth pair, no default
route: no packet leaves the machine), deleted afterwards, also on failure.  A client in the
namespace talks to a server in the root namespace and a client in the root namespace to a
server in the namespace; record runs in the root namespace (in a UTS namespace of its own named
``osflow-rec-test``) and must capture both connections, on IPv4 and, on loopback, IPv6, and own
every local end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from osflow import tables
from osflow.record import capture
from osflow.record.coverage import local_hosts

ROOT = Path(__file__).resolve().parents[1]
HOST_ADDR, PEER_ADDR = "198.18.3.1", "198.18.3.2"
HOSTNAME = "osflow-rec-test"

_SERVER = ("import socket,sys\n"
           "family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
           "l = socket.socket(family); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
           "l.bind((sys.argv[1], 0)); l.listen(16)\n"
           "print(l.getsockname()[1], flush=True)\n"
           "while True:\n"
           "    c, _ = l.accept(); c.recv(100); c.sendall(b'pong\\n'); c.recv(100); c.close()\n")
_CLIENT = ("import socket,sys,time\n"
           "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n"
           "s.sendall(b'ping\\n'); assert s.recv(10) == b'pong\\n'; time.sleep(0.05); s.close()\n")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def peer_netns():
    """A network namespace at 198.18.3.2, reached through a veth whose root end is 198.18.3.1/24."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, ip and unshare")
    tag = f"{os.getpid() % 100000}"
    ns, host_if, peer_if = f"osft{tag}", f"osfth{tag}", f"osftp{tag}"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", ns)
        _ip("addr", "add", f"{HOST_ADDR}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{PEER_ADDR}/24", "dev", peer_if)
        _ip("-n", ns, "link", "set", peer_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        yield ns, host_if, peer_if
    finally:
        _ip("netns", "del", ns, check=False)  # takes the veth pair with it
        _ip("link", "del", host_if, check=False)


def _server(address: str, netns: str | None = None) -> tuple[subprocess.Popen, int]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    proc = subprocess.Popen([*prefix, sys.executable, "-c", _SERVER, address], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.strip().isdigit():
        proc.kill()
        proc.wait()
        pytest.fail(f"the test server on {address} did not start")
    return proc, int(line)


def test_host_interfaces_in_a_namespace_are_loopback_and_those_with_an_address(peer_netns):
    """In the namespace: lo and the veth (198.18.3.2), not a bridge's port nor an interface without
    an address of its own (only link-local IPv6) nor one that is down."""
    ns, _, peer_if = peer_netns
    for args in (("link", "add", "osftbr", "type", "bridge"),
                 ("link", "add", "osftport", "type", "veth", "peer", "name", "osftdown"),
                 ("link", "set", "osftport", "master", "osftbr"), ("addr", "add", "198.18.3.129/25", "dev", "osftbr"),
                 ("link", "set", "osftbr", "up"), ("link", "set", "osftport", "up"),
                 ("addr", "add", "198.18.3.200/32", "dev", "osftdown")):
        _ip("-n", ns, *args)
    code = "from osflow.record.capture import host_interfaces; print(','.join(host_interfaces()))"
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT / "postproc")), timeout=60, check=True)
    assert sorted(r.stdout.strip().split(",")) == sorted(["lo", "osftbr", peer_if]), r.stdout


def test_the_dumpcap_command_gives_each_interface_the_filter():
    cap = capture.Capture("dumpcap", ["lo", "eth0"], [5000, 8778], "/nonexistent/x.pcapng")
    try:
        f = cap.filter
        assert cap.command[:9] == ["dumpcap", "-i", "lo", "-f", f, "-i", "eth0", "-f", f]
        assert cap.loopback and f.startswith("tcp port 5000 or tcp port 8778 or (udp dst port ")
    finally:
        cap.stop()
        assert cap.canary is None


def _record(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """osflow record in a UTS namespace of its own named HOSTNAME (the root network namespace)."""
    code = ("import argparse,sys; from osflow import record, cli; p=argparse.ArgumentParser(prog='osflow record'); "
            "record.add_arguments(p); a=cli.record_options(p.parse_args(sys.argv[1:])); "
            "sys.exit(cli.run(lambda: record.run(a), False, 'osflow record'))")
    env = dict(env or os.environ, PYTHONPATH=str(ROOT / "postproc"))
    script = f'hostname {HOSTNAME} && exec "$0" "$@"'
    return subprocess.run(["unshare", "--uts", "sh", "-c", script, sys.executable, "-c", code, *args],
                          capture_output=True, text=True, env=env, timeout=240)


def _kernel_owners() -> str:
    try:
        from osflow.record.owners import KernelOwners

        KernelOwners([9]).close()
    except (OSError, AttributeError) as e:
        return f"the kernel's owners are not available here: {e}"
    return ""


@pytest.mark.parametrize("path", ["kernel", "polls"])
def test_record_connections_to_and_from_another_host(peer_netns, tmp_path, path):
    if path == "kernel" and _kernel_owners():
        pytest.skip(_kernel_owners())
    if shutil.which("dumpcap") is None:
        pytest.skip("dumpcap is not installed")
    ns, host_if, peer_if = peer_netns
    local, port_in = _server(HOST_ADDR)  # a local service a remote client calls
    remote, port_out = _server(PEER_ADDR, ns)  # a remote service a local client calls
    local6, port6 = _server("::1")  # IPv6, on loopback
    client = tmp_path / "client.py"
    client.write_text(_CLIENT)
    command = tmp_path / "command.sh"
    command.write_text(f"set -e\nip netns exec {ns} {sys.executable} {client} {HOST_ADDR} {port_in}\n"
                       f"{sys.executable} {client} {PEER_ADDR} {port_out}\n"
                       f"{sys.executable} {client} ::1 {port6}\n")
    out = tmp_path / "rec"
    env = dict(os.environ, OSFLOW_NO_BPF="1") if path == "polls" else None
    try:
        r = _record(["-o", str(out), "--ports", f"{port_in},{port_out},{port6}", "--", "sh", str(command)], env)
    finally:
        for proc in (local, remote, local6):  # by pid: only what this test started
            proc.kill()
            proc.wait()
    if "no permission to capture" in r.stderr:
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    # the host: its UTS name; the interfaces: loopback and the NIC towards the other host, not the other's
    assert meta["host"] == HOSTNAME
    assert {"lo", host_if} <= set(meta["interfaces"]) and peer_if not in meta["interfaces"], meta["interfaces"]
    assert meta["interface"] == ",".join(meta["interfaces"])
    # the host's own addresses, for osflow-post to place ends on hosts without socket tables
    assert HOST_ADDR in meta["addresses"] and PEER_ADDR not in meta["addresses"], meta["addresses"]
    assert not any(a.startswith("127.") or a == "::1" for a in meta["addresses"]), meta["addresses"]
    assert f"capturing on {', '.join(meta['interfaces'])} into" in r.stderr
    # the capture holds each connection once: to the local service, to the remote one, over ::1
    syn = "tcp.flags.syn == 1 && tcp.flags.ack == 0"
    fields = subprocess.run(["tshark", "-r", str(out / "capture.pcapng"), "-Y", syn, "-T", "fields", "-e", "ip.src",
                             "-e", "ipv6.src", "-e", "tcp.dstport"],
                            capture_output=True, text=True, timeout=120, check=True).stdout.split("\n")
    syns = sorted(tuple(x for x in line.split("\t") if x) for line in fields if line.strip())
    assert syns == sorted([(PEER_ADDR, str(port_in)), (HOST_ADDR, str(port_out)), ("::1", str(port6))]), syns
    # every local end owned: the local server's end, the local client's end, both ends over ::1
    assert HOST_ADDR in local_hosts() and PEER_ADDR not in local_hosts()
    assert (meta["coverage"]["owned"], meta["coverage"]["total"]) == (4, 4), (meta["coverage"], r.stderr)
    ends: dict[tuple, set[int]] = {}
    for e in tables.parse_ss((out / "ss.txt").read_text(), "ss.txt").entries:
        if e.peername is not None and e.users:
            ends.setdefault((e.sockname.host, e.sockname.port, e.peername.host, e.peername.port),
                            {u.pid for u in e.users})
    served = [pids for (h, p, ph, _), pids in ends.items() if (h, p, ph) == (HOST_ADDR, port_in, PEER_ADDR)]
    assert served == [{local.pid}], ends
    called = [pids for (h, _, ph, pp), pids in ends.items() if (h, ph, pp) == (HOST_ADDR, PEER_ADDR, port_out)]
    assert len(called) == 1 and called[0] <= set(_pids_of_command(out)), (ends, meta)
    # the other host's own sockets are not this host's: none of the namespace's ends is logged
    assert not [k for k in ends if k[0] == PEER_ADDR], ends
    if path == "kernel":
        assert meta["socket_log"]["owners"].startswith("kernel: eBPF"), meta["socket_log"]
        assert meta["socket_log"]["kernel_events_other_netns"] >= 2, meta["socket_log"]  # the namespace's ends
    # osflow-post reads the folder's meta.json (unknown keys and all): the command is its pid's tree
    meta["a-key-of-a-later-version"] = {"nested": [1, 2]}
    (out / "meta.json").write_text(json.dumps(meta))
    post = subprocess.run([sys.executable, "-m", "osflow", "post", "-r", str(out / "capture.pcapng"), "--ss",
                           str(out / "ss.txt"), "--ps", str(out / "ps.txt"), "--explain"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "postproc")),
                          timeout=240)
    assert post.returncode == 0, post.stderr
    assert f"the command's pid {meta['command_pid']}" in post.stdout + post.stderr


def _pids_of_command(out: Path) -> list[int]:
    """COMMAND's pid and the pids of the processes it started that owned a socket (meta.json)."""
    meta = json.loads((out / "meta.json").read_text())
    return [meta["command_pid"], *(p["pid"] for p in meta["socket_owners_not_in_ps"])]


def test_interface_options():
    """-i repeatable (a name given twice is captured once); none: the host's; any: alone."""
    import argparse

    from osflow import cli, record
    from osflow.errors import UsageError

    def parse(argv):
        p = argparse.ArgumentParser(prog="osflow record")
        record.add_arguments(p)
        return cli.record_options(p.parse_args(argv))

    assert parse(["-i", "lo", "--interface", "eth0", "--", "true"]).interface == ("lo", "eth0")
    assert parse(["--", "true"]).interface == ()
    with pytest.raises(UsageError, match="-i any already captures on every interface: give it alone"):
        record.run(parse(["-i", "any", "-i", "lo", "--", "true"]))
    names = capture.host_interfaces()
    assert "lo" in names or names == ["any"]
