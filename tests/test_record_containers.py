"""A process's container: cgroup lines of every known format, real ``/proc/PID/cgroup`` contents
of a process this test puts in a cgroup of its own (docker's and podman's shapes, cgroup v1 and
v2), the names from the runtimes' files, ``ps.txt``'s container section and ps's own CGROUP
column read by ``tables/ps.py``, and a process named after its container when its command line
says nothing."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from osflow import tables
from osflow.join import Joiner
from osflow.model import Address
from osflow.record import procs, socketlog
from osflow.tables.ps import container_of_cgroup

CID = "3f2a1b9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"


@pytest.mark.parametrize(
    "text, expected",
    [
        # docker, systemd cgroup driver: cgroup v2, and v1's hierarchies
        (f"0::/system.slice/docker-{CID}.scope\n", ("docker", CID)),
        (f"12:pids:/system.slice/docker-{CID}.scope\n11:memory:/system.slice/docker-{CID}.scope\n0::/\n",
         ("docker", CID)),
        # docker, cgroupfs driver (kolla's default on older hosts): v1 and v2
        (f"8:pids:/docker/{CID}\n4:memory:/docker/{CID}\n1:name=systemd:/docker/{CID}\n", ("docker", CID)),
        (f"0::/docker/{CID}\n", ("docker", CID)),
        # podman: systemd (rootful, rootless: inside the user's slice, a child cgroup "container"), cgroupfs
        (f"0::/machine.slice/libpod-{CID}.scope/container\n", ("podman", CID)),
        (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope\n", ("podman", CID)),
        (f"7:pids:/libpod_parent/libpod-{CID}\n", ("podman", CID)),
        # containerd under Kubernetes (systemd and cgroupfs drivers), CRI-O, nerdctl
        ("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b1c2d3e_4f5a.slice/"
         f"cri-containerd-{CID}.scope\n", ("containerd", CID)),
        (f"3:cpu:/kubepods/besteffort/pod0b1c2d3e-4f5a/{CID}\n", ("containerd", CID)),
        (f"0::/kubepods.slice/kubepods-pod1.slice/crio-{CID}.scope\n", ("cri-o", CID)),
        (f"0::/system.slice/nerdctl-{CID}.scope\n", ("containerd", CID)),
        # ps's CGROUP column: the lines joined by commas
        (f"8:pids:/docker/{CID},4:memory:/docker/{CID}", ("docker", CID)),
        # no container: a login session, a systemd service, the root, a 32-hex-digit cgroup name
        ("0::/user.slice/user-0.slice/session-3.scope\n", None),
        ("0::/system.slice/nova-conductor.service\n", None),
        ("9:name=systemd:/\n0::/\n", None),
        ("4:memory:/process_api/402aee564b72b585822d9491c7e610b3\n", None),
    ],
)
def test_container_of_cgroup_lines(text, expected):
    assert container_of_cgroup(text) == expected


# --------------------------------------------------------------------------- real cgroups


def _cgroup_root(kind: str) -> Path | None:
    """A writable hierarchy: v1's pids controller, or the cgroup2 one."""
    for path in ((Path("/sys/fs/cgroup/pids"),) if kind == "v1" else (Path("/sys/fs/cgroup/unified"),
                                                                        Path("/sys/fs/cgroup"))):
        if (path / "cgroup.procs").exists() and os.access(path, os.W_OK):
            if kind == "v2" and not (path / "cgroup.controllers").exists():
                continue
            return path
    return None


@pytest.fixture
def in_cgroup(request):
    """A ``sleep`` moved into a cgroup shaped as a runtime makes it (``/docker/<id>`` in cgroup v1,
    ``/system.slice/docker-<id>.scope`` or ``libpod-<id>.scope`` in v2), with a fresh id: (pid, id).
    The process is killed by pid and the cgroups this test made are removed, also on failure."""
    kind, shape = request.param
    root = _cgroup_root(kind)
    if root is None or os.geteuid() != 0:
        pytest.skip(f"needs root and a writable cgroup {kind} hierarchy")
    cid = secrets.token_hex(32)
    parent = root / ("docker" if shape == "docker-dir" else "system.slice")
    leaf = parent / (cid if shape == "docker-dir" else f"{shape}-{cid}.scope")
    made = [p for p in (parent, leaf) if not p.exists()]
    proc = None
    try:
        for p in made:
            p.mkdir()
        proc = subprocess.Popen(["sleep", "60"])
        (leaf / "cgroup.procs").write_text(f"{proc.pid}\n")
        yield proc.pid, cid
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        for p in reversed(made):
            try:
                p.rmdir()
            except OSError:
                pass


CASES = [("v1", "docker-dir"), ("v2", "docker"), ("v2", "libpod")]


@pytest.mark.parametrize("in_cgroup", CASES, indirect=True, ids=["v1-docker", "v2-docker", "v2-podman"])
def test_a_process_in_a_containers_cgroup_is_named_after_it(in_cgroup, tmp_path):
    pid, cid = in_cgroup
    text = Path(f"/proc/{pid}/cgroup").read_text()
    assert container_of_cgroup(text)[1] == cid, text
    # no runtime files: the short id, as docker ps shows it
    bare = procs.Containers(docker=str(tmp_path / "none"), podman=(str(tmp_path / "none"),))
    assert bare.of(pid) == cid[:12]
    assert bare.of(os.getpid()) is None  # this test's own process is in no container
    # the runtime's own files: docker's config.v2.json, podman's containers.json
    docker = tmp_path / "docker"
    (docker / "containers" / cid).mkdir(parents=True)
    (docker / "containers" / cid / "config.v2.json").write_text(json.dumps({"ID": cid, "Name": "/placement_api"}))
    podman = tmp_path / "storage"
    (podman / "overlay-containers").mkdir(parents=True)
    (podman / "overlay-containers" / "containers.json").write_text(
        json.dumps([{"id": "0" * 64, "names": ["other"]}, {"id": cid, "names": ["placement_api"]}]))
    named = procs.Containers(docker=str(docker), podman=(str(podman),))
    assert named.of(pid) == "placement_api"
    # ps.txt's section: only the processes in containers, read back by tables/ps.py
    section = procs.containers_section("BEFORE", containers=named)
    assert section.startswith("##### ") and "BEFORE: osflow record: processes in containers" in section
    read = tables.parse_ps(section, "ps.txt")
    assert read.warnings == ()
    mine = [p for p in read.processes if p.pid == pid]
    assert [(p.container, p.args) for p in mine] == [("placement_api", "sleep 60")]
    assert os.getpid() not in {p.pid for p in read.processes}
    # ps's own CGROUP column (given room: ps cuts it at its default width even with -ww)
    out = subprocess.run(["ps", "-ww", "-o", "pid,ppid,user,cgroup:512,args", "-p", f"{pid},{os.getpid()}"],
                         capture_output=True, text=True, check=True).stdout
    by_pid = {p.pid: p for p in tables.parse_ps(out, "ps-cgroup.txt").processes}
    assert by_pid[pid].container == cid[:12] and by_pid[pid].args == "sleep 60", out
    assert by_pid[os.getpid()].container is None


def test_ps_txt_sections_merge_the_container_into_the_process_table():
    """ps -eo and ps aux know no container, the section does: the table keeps it, whichever line wins."""
    text = ("##### 1.0 BEFORE: ps -eo pid,ppid,user,args\n  PID  PPID USER     COMMAND\n"
            " 4242     1 placeme+ /usr/bin/python3 /usr/bin/uwsgi --ini /etc/uwsgi.ini\n"
            "##### 1.1 BEFORE: osflow record: processes in containers (/proc/PID/cgroup)\n"
            "    PID    PPID USER       CONTAINER            COMMAND\n"
            "   4242       1 placeme+   placement_api        /usr/bin/python3 /usr/bin/uwsgi\n"
            "   4343       1 nova       3f2a1b9c0d4e         python3 -m x\n"
            "   4444       1 root       -                    sleep 1\n")
    table = tables.ProcessTable(tables.parse_ps(text, "ps.txt").processes)
    assert table.get(4242).args.endswith("--ini /etc/uwsgi.ini") and table.get(4242).container == "placement_api"
    assert table.get(4343).container == "3f2a1b9c0d4e" and table.get(4444).container is None


@pytest.mark.parametrize(
    "args, container, key, evidence",
    [
        # the command line says nothing: the container names it (kolla's name -> the service)
        ("/usr/bin/python3 /usr/bin/uwsgi --ini /etc/uwsgi.ini", "placement_api", "placement",
         "in container placement_api"),
        ("/usr/sbin/apache2 -DFOREGROUND", "keystone", "keystone", "in container keystone"),
        ("python3", "kolla_toolbox", "kolla_toolbox", "in container kolla_toolbox"),
        # the command line says more: it stays, the container is in the evidence
        ("/usr/bin/python3 /usr/bin/nova-conductor", "nova_conductor", "nova-conductor",
         "'/usr/bin/python3 /usr/bin/nova-conductor' in container nova_conductor"),
        # a bare id says nothing of the service
        ("/usr/bin/python3 /usr/bin/uwsgi --ini /etc/uwsgi.ini", "3f2a1b9c0d4e", None, None),
    ],
)
def test_a_process_whose_command_line_says_nothing_is_named_after_its_container(args, container, key, evidence):
    ss = socketlog.ss_line("ESTAB", 0, 0, ("127.0.0.1", 8778), ("127.0.0.1", 40000), [("uwsgi", 4242, 7)])
    ps = f"PID PPID USER CONTAINER COMMAND\n4242 1 svc {container} {args}\n"
    joiner = Joiner(tables.SocketTable(tables.parse_ss(f"### 10.0 1 t\n{ss}\n", "ss.txt").entries),
                    tables.ProcessTable(tables.parse_ps(ps, "ps.txt").processes))
    named, note = joiner._from_tables(Address("127.0.0.1", 8778), Address("127.0.0.1", 40000), 10.0)
    if key is None:
        assert named is None and f"in container {container}" in note
        return
    assert named is not None and (named.key, named.pid) == (key, 4242)
    assert evidence in named.evidence


def test_record_writes_the_container_section_only_when_a_process_has_one(tmp_path):
    """On a host without containers ps.txt stays as it was: ps -eo and ps aux only."""
    empty = tmp_path / "proc"
    (empty / "1").mkdir(parents=True)
    (empty / "1" / "cgroup").write_text("0::/init.scope\n")
    assert procs.containers_section("BEFORE", proc=str(empty)) == ""
