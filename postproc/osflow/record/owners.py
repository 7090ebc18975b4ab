"""Who owns each connection, from the kernel as it happens: eBPF programs on syscall tracepoints.

Polling ``/proc`` for the owner of every new socket costs the machine it watches (every poll lists
the sockets, every new one sends the poller through ``/proc/<pid>/fd``), and a connection that
lives 0.2 ms can be gone before any look.  The kernel knows the owner when the socket is connected
or accepted: :class:`KernelOwners` loads three small programs (assembled here, loaded with
``bpf()`` through ctypes, as :mod:`osflow.record.ebpf` does) on the syscall tracepoints

* ``syscalls/sys_enter_connect`` and ``syscalls/sys_enter_listen``: the thread's fd, kept in a hash
  map by thread;
* ``syscalls/sys_exit_connect`` (0 or ``EINPROGRESS``), ``syscalls/sys_exit_listen`` (0),
  ``syscalls/sys_exit_accept4`` and ``syscalls/sys_exit_accept`` (the new fd): the current
  process, its parent (``task->real_parent->tgid``) and user, its fd, and from its file table
  (``task->files->fdt->fd[fd]``, offsets read from the kernel's BTF, ``/sys/kernel/btf/vmlinux``)
  the socket's inode, its addresses (``struct sock_common``) and its network namespace
  (``skc_net->ns.inum``: a compute node in a namespace of the same machine is another host),

and sends each connection on a captured port (a hash map of ports, checked in the kernel) to user
space through a BPF ring buffer, read from shared memory without a system call (:meth:`KernelOwners.read`);
an event the ring buffer had no room for is counted (:attr:`KernelOwners.lost`: the watcher then polls).
Nothing is attached for longer than the recording: the programs, maps and perf events live as
long as their fds.

Before it is used, a test connection on loopback must come back named right (both ends, their fds
and inodes), else the kernel's path is refused.  Needs root, BTF, ``BPF_MAP_TYPE_RINGBUF`` (Linux
5.8) and the syscall tracepoints; the tracepoint
ids are read from tracefs (mounted in a private mount namespace of a short-lived child when the
system has not mounted it).  Elsewhere :class:`KernelOwners` raises OSError saying why, and the
recorder polls as before (``meta.json``'s ``socket_log.owners`` says which ran).

The programs are lists of instructions, labels and map loads, put together by :func:`assemble`
(a jump to itself is -1; a map's fd takes two instructions):

>>> assemble([("x",), (_JA, 0, 0, "x", 0)]).hex(), assemble([("map", R1, 7)]).hex()
('0500ffff00000000', '18110000070000000000000000000000')
>>> len(enter_connect(3)) // 8
15
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import operator
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .ebpf import _bpf, insn, load_program
from .kernel import sock_key

BTF_PATH = "/sys/kernel/btf/vmlinux"
TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
#: the environment variable that refuses the kernel's paths (tests of the fallback, or a user's choice)
NO_BPF_ENV = "OSFLOW_NO_BPF"

_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
_MAP_CREATE, _MAP_LOOKUP_ELEM_CMD, _MAP_UPDATE_ELEM_CMD, _MAP_DELETE_ELEM_CMD = 0, 1, 2, 3
_MAP_HASH, _MAP_ARRAY, _MAP_LRU_HASH, _MAP_RINGBUF = 1, 2, 9, 27
_PROG_TYPE_TRACEPOINT = 5
_PERF_TYPE_TRACEPOINT = 2
_PERF_SAMPLE_RAW = 1 << 10
_PERF_FLAG_FD_CLOEXEC = 8
_PERF_EVENT_IOC_ENABLE, _PERF_EVENT_IOC_SET_BPF = 0x2400, 0x40042408
# helpers
_MAP_LOOKUP, _MAP_UPDATE, _MAP_DELETE = 1, 2, 3
_KTIME_GET_NS, _GET_CURRENT_PID_TGID, _GET_CURRENT_UID_GID, _GET_CURRENT_COMM, _GET_CURRENT_TASK = 5, 14, 15, 16, 35
_PROBE_READ_KERNEL, _RINGBUF_OUTPUT = 113, 130
# opcodes
_LDX_B, _LDX_H, _LDX_W, _LDX_DW = 0x71, 0x69, 0x61, 0x79
_STX_W, _STX_DW, _ST_W, _ST_DW = 0x63, 0x7B, 0x62, 0x7A
_MOV_REG, _MOV_IMM, _ADD_IMM, _ADD_REG, _RSH_IMM, _LSH_IMM, _OR_IMM = 0xBF, 0xB7, 0x07, 0x0F, 0x77, 0x67, 0x47
_JEQ_IMM, _JNE_IMM, _JSLT_IMM, _JA = 0x15, 0x55, 0xC5, 0x05
_MOV32_REG = 0xBC
_CALL, _EXIT, _LD_IMM64 = 0x85, 0x95, 0x18
_ATOMIC_DW, _ATOMIC_ADD = 0xDB, 0x00
_PSEUDO_MAP_FD = 1
R0, R1, R2, R3, R4, R6, R7, R8, R9, R10 = 0, 1, 2, 3, 4, 6, 7, 8, 9, 10

CONNECT, ACCEPT, LISTEN = 1, 2, 3
_EINPROGRESS = 115
_SOCK_STREAM = 1
#: the event: kind, tgid, tid, fd, inode, time (CLOCK_MONOTONIC ns), the syscall's return, comm,
#: the parent's tgid, the uid, the socket's network namespace (its inode number, 0: not read), then
#: the first bytes of the socket's ``struct sock_common``
_HEAD = struct.Struct("=IIIIQQq16sIII4x")
#: the ring buffer's size (bytes, a power of two): ~27,000 events (a connection is two) unread before
#: any is lost: 2.5 s of a client connecting flat out on this project's VM (1 MiB lost events there)
RING_BYTES = 1 << 22
#: the most connects in flight (thread -> fd) remembered
MAX_CONNECTING = 8192


# --------------------------------------------------------------------------- BTF: the kernel's own struct offsets

# bytes after the 12-byte ``struct btf_type`` for each kind: fixed, per member (vlen)
_EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0), 15: (0, 12),
          17: (4, 0), 19: (0, 12)}
_STRUCT, _UNION, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG = 4, 5, 8, 9, 10, 11, 18


class Btf:
    """The kernel's types (``/sys/kernel/btf/vmlinux``): where a member is in a struct, by name."""

    def __init__(self, data: bytes) -> None:
        magic, _, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("=HBBIIIII", data)
        if magic != 0xEB9F:
            raise OSError(errno.EINVAL, "not BTF data")
        self.data = data
        self.strings = hdr_len + str_off
        self.at: list[int] = [0]  # type id -> offset of its btf_type
        self.structs: dict[str, int] = {}
        off, end = hdr_len + type_off, hdr_len + type_off + type_len
        unpack = struct.Struct("=III").unpack_from
        while off < end:
            name_off, info, _ = unpack(data, off)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if kind == _STRUCT and name_off:
                self.structs.setdefault(self._name(name_off), len(self.at))
            self.at.append(off)
            fixed, each = _EXTRA.get(kind, (0, 0))
            off += 12 + fixed + each * vlen

    def _name(self, off: int) -> str:
        start = self.strings + off
        return self.data[start : self.data.index(b"\0", start)].decode()

    def _resolve(self, tid: int) -> int:
        while True:
            _, info, ref = struct.unpack_from("=III", self.data, self.at[tid])
            if (info >> 24) & 0x1F not in (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG):
                return tid
            tid = ref

    def _find(self, tid: int, member: str) -> int | None:
        off = self.at[tid]
        _, info, _ = struct.unpack_from("=III", self.data, off)
        kind_flag = info >> 31
        for k in range(info & 0xFFFF):
            name_off, mtype, bits = struct.unpack_from("=III", self.data, off + 12 + 12 * k)
            if kind_flag:
                bits &= 0xFFFFFF
            if name_off and self._name(name_off) == member:
                return bits // 8
            if not name_off:  # an anonymous struct or union: its members are the parent's
                inner = self._resolve(mtype)
                if (struct.unpack_from("=III", self.data, self.at[inner])[1] >> 24) & 0x1F in (_STRUCT, _UNION):
                    found = self._find(inner, member)
                    if found is not None:
                        return bits // 8 + found
        return None

    def offset(self, struct_name: str, member: str) -> int:
        """The byte offset of ``member`` in ``struct struct_name``; OSError when the kernel has neither."""
        tid = self.structs.get(struct_name)
        found = self._find(tid, member) if tid is not None else None
        if found is None:
            raise OSError(errno.ENOENT, f"BTF: no struct {struct_name}.{member} in this kernel")
        return found


@dataclass(frozen=True)
class Offsets:
    """What the programs and :class:`Decoder` need to know of the kernel's structs."""

    files: int  # task_struct.files
    real_parent: int  # task_struct.real_parent
    tgid: int  # task_struct.tgid
    fdt: int  # files_struct.fdt
    fd: int  # fdtable.fd
    private_data: int  # file.private_data (the struct socket)
    f_inode: int  # file.f_inode
    i_ino: int  # inode.i_ino
    sock_type: int  # socket.type
    sk: int  # socket.sk
    daddr: int  # sock_common.skc_daddr ...
    rcv_saddr: int
    dport: int
    num: int
    family: int
    v6_daddr: int
    v6_rcv_saddr: int
    skc_net: int = 0  # sock_common.skc_net (the namespace's struct net)
    ns_inum: int = 0  # net.ns + ns_common.inum (the namespace's inode number)

    @property
    def sk_bytes(self) -> int:
        """How much of ``struct sock_common`` each event copies (8-byte aligned)."""
        return (max(self.v6_daddr, self.v6_rcv_saddr, self.family, self.num, self.skc_net) + 16 + 7) & ~7

    @classmethod
    def from_btf(cls, btf: Btf) -> Offsets:
        o = btf.offset
        try:  # the namespace: 0, not read, where this kernel's structs differ (the /proc look then tells)
            net = (o("sock_common", "skc_net"), o("net", "ns") + o("ns_common", "inum"))
        except OSError:
            net = (0, 0)
        return cls(o("task_struct", "files"), o("task_struct", "real_parent"), o("task_struct", "tgid"),
                   o("files_struct", "fdt"), o("fdtable", "fd"),
                   o("file", "private_data"), o("file", "f_inode"), o("inode", "i_ino"), o("socket", "type"),
                   o("socket", "sk"), o("sock_common", "skc_daddr"), o("sock_common", "skc_rcv_saddr"),
                   o("sock_common", "skc_dport"), o("sock_common", "skc_num"), o("sock_common", "skc_family"),
                   o("sock_common", "skc_v6_daddr"), o("sock_common", "skc_v6_rcv_saddr"), *net)


# --------------------------------------------------------------------------- the programs


def assemble(code: list) -> bytes:
    """Instructions (code, dst, src, off, imm), labels (``("name",)``) and map loads
    (``("map", reg, fd)``, two instructions); a jump's ``off`` may name a label."""
    where: dict[str, int] = {}
    n = 0
    for item in code:
        if item[0] == "map":
            n += 2
        elif isinstance(item[0], str):
            where[item[0]] = n
        else:
            n += 1
    out = []
    n = 0
    for item in code:
        if item[0] == "map":
            out.append(insn(_LD_IMM64, item[1], _PSEUDO_MAP_FD, 0, item[2]) + insn(0))
            n += 2
            continue
        if isinstance(item[0], str):
            continue
        c, dst, src, off, imm = (*item, 0, 0, 0, 0)[:5]
        if isinstance(off, str):
            off = where[off] - (n + 1)
        out.append(insn(c, dst, src, off, imm))
        n += 1
    return b"".join(out)


def enter_connect(connecting: int) -> bytes:
    """``sys_enter_connect`` or ``sys_enter_listen``: connecting[thread] = fd."""
    return assemble([
        (_MOV_REG, R6, R1),
        (_CALL, 0, 0, 0, _GET_CURRENT_PID_TGID),
        (_STX_DW, R10, R0, -8, 0),
        (_LDX_DW, R1, R6, 16, 0),  # fd
        (_STX_DW, R10, R1, -16, 0),
        ("map", R1, connecting),
        (_MOV_REG, R2, R10), (_ADD_IMM, R2, 0, 0, -8),
        (_MOV_REG, R3, R10), (_ADD_IMM, R3, 0, 0, -16),
        (_MOV_IMM, R4, 0, 0, 0),
        (_CALL, 0, 0, 0, _MAP_UPDATE),
        (_MOV_IMM, R0, 0, 0, 0),
        (_EXIT,),
    ])


def exit_program(kind: int, o: Offsets, ports: int, ring: int, lost: int, connecting: int | None = None) -> bytes:
    """``sys_exit_connect`` or ``sys_exit_listen`` (``connecting``: the map :func:`enter_connect` fills) or
    ``sys_exit_accept{,4}``: the event of a connection on a captured port, to the ring buffer (or,
    when it is full, one more in ``lost``, an array of one counter).

    The stack: -8 a scratch word for each read, -16 the port key, from -24 down the event
    (:data:`_HEAD`, then :attr:`Offsets.sk_bytes` of ``struct sock_common``)."""
    size = _HEAD.size + o.sk_bytes
    ev = -(16 + size)
    out, ok = "out", "ok"

    def read(base: int, off: int) -> list:  # scratch = *(u64 *)(base + off); r3 = scratch, out if 0 or a fault
        return [
            (_MOV_REG, R3, base), (_ADD_IMM, R3, 0, 0, off),
            (_MOV_REG, R1, R10), (_ADD_IMM, R1, 0, 0, -8),
            (_MOV_IMM, R2, 0, 0, 8),
            (_CALL, 0, 0, 0, _PROBE_READ_KERNEL),
            (_JNE_IMM, R0, 0, out, 0),
            (_LDX_DW, R3, R10, -8, 0),
            (_JEQ_IMM, R3, 0, out, 0),
        ]

    code: list = [(_MOV_REG, R6, R1), (_LDX_DW, R7, R6, 16, 0)]  # r7 = ret
    if connecting is not None:
        code += [
            (_CALL, 0, 0, 0, _GET_CURRENT_PID_TGID),
            (_STX_DW, R10, R0, -8, 0),
            ("map", R1, connecting),
            (_MOV_REG, R2, R10), (_ADD_IMM, R2, 0, 0, -8),
            (_CALL, 0, 0, 0, _MAP_LOOKUP),
            (_JEQ_IMM, R0, 0, out, 0),
            (_LDX_DW, R8, R0, 0, 0),  # r8 = fd
            ("map", R1, connecting),
            (_MOV_REG, R2, R10), (_ADD_IMM, R2, 0, 0, -8),
            (_CALL, 0, 0, 0, _MAP_DELETE),
            (_JEQ_IMM, R7, 0, ok, 0),
            (_JNE_IMM, R7, 0, out, -_EINPROGRESS),
            (ok,),
        ]
    else:
        code += [(_JSLT_IMM, R7, 0, out, 0), (_MOV_REG, R8, R7)]  # r8 = the new fd
    netns = [  # the socket's namespace: sk->skc_net->ns.inum (left 0 when it cannot be read)
        (_LDX_DW, R3, R10, ev + _HEAD.size + o.skc_net, 0),
        (_ADD_IMM, R3, 0, 0, o.ns_inum),
        (_MOV_REG, R1, R10), (_ADD_IMM, R1, 0, 0, ev + 64),
        (_MOV_IMM, R2, 0, 0, 4),
        (_CALL, 0, 0, 0, _PROBE_READ_KERNEL),
    ] if o.ns_inum else []
    code += [
        (_ST_W, R10, 0, ev, kind),
        (_CALL, 0, 0, 0, _GET_CURRENT_PID_TGID),
        (_STX_W, R10, R0, ev + 8, 0),  # tid
        (_RSH_IMM, R0, 0, 0, 32),
        (_STX_W, R10, R0, ev + 4, 0),  # tgid: the process
        (_STX_W, R10, R8, ev + 12, 0),
        (_STX_DW, R10, R7, ev + 32, 0),
        (_CALL, 0, 0, 0, _KTIME_GET_NS),
        (_STX_DW, R10, R0, ev + 24, 0),
        (_MOV_REG, R1, R10), (_ADD_IMM, R1, 0, 0, ev + 40),
        (_MOV_IMM, R2, 0, 0, 16),
        (_CALL, 0, 0, 0, _GET_CURRENT_COMM),
        (_CALL, 0, 0, 0, _GET_CURRENT_UID_GID),
        (_STX_W, R10, R0, ev + 60, 0),  # uid: the lower half
        (_ST_DW, R10, 0, ev + 64, 0),  # the namespace, read once the port is known to be captured
        (_CALL, 0, 0, 0, _GET_CURRENT_TASK),
        (_MOV_REG, R9, R0),
        *read(R9, o.real_parent),  # the parent's tgid (0 for the first process): read as it is
        (_ADD_IMM, R3, 0, 0, o.tgid),
        (_MOV_REG, R1, R10), (_ADD_IMM, R1, 0, 0, ev + 56),
        (_MOV_IMM, R2, 0, 0, 4),
        (_CALL, 0, 0, 0, _PROBE_READ_KERNEL),
        (_JNE_IMM, R0, 0, out, 0),
        *read(R9, o.files),
        *read(R3, o.fdt),
        *read(R3, o.fd),
        (_MOV_REG, R9, R3),
        (_MOV_REG, R1, R8), (_LSH_IMM, R1, 0, 0, 3), (_ADD_REG, R9, R1),  # &fd[fd]
        *read(R9, 0),
        (_MOV_REG, R9, R3),  # r9 = the file
        *read(R9, o.f_inode),
        *read(R3, o.i_ino),
        (_STX_DW, R10, R3, ev + 16, 0),  # the socket's inode
        *read(R9, o.private_data),
        (_MOV_REG, R9, R3),  # r9 = the struct socket
        *read(R9, o.sock_type),
        (_LDX_H, R1, R10, -8, 0),
        (_JNE_IMM, R1, 0, out, _SOCK_STREAM),
        *read(R9, o.sk),
        (_MOV_REG, R1, R10), (_ADD_IMM, R1, 0, 0, ev + _HEAD.size),
        (_MOV_IMM, R2, 0, 0, o.sk_bytes),
        (_CALL, 0, 0, 0, _PROBE_READ_KERNEL),
        (_JNE_IMM, R0, 0, out, 0),
        # a captured port? the local one (host order), else the remote one (network order, + 0x10000)
        (_LDX_H, R1, R10, ev + _HEAD.size + o.num, 0),
        (_STX_W, R10, R1, -16, 0),
        ("map", R1, ports),
        (_MOV_REG, R2, R10), (_ADD_IMM, R2, 0, 0, -16),
        (_CALL, 0, 0, 0, _MAP_LOOKUP),
        (_JNE_IMM, R0, 0, "send", 0),
        (_LDX_H, R1, R10, ev + _HEAD.size + o.dport, 0),
        (_OR_IMM, R1, 0, 0, 0x10000),
        (_STX_W, R10, R1, -16, 0),
        ("map", R1, ports),
        (_MOV_REG, R2, R10), (_ADD_IMM, R2, 0, 0, -16),
        (_CALL, 0, 0, 0, _MAP_LOOKUP),
        (_JEQ_IMM, R0, 0, out, 0),
        ("send",),
        *netns,
        ("map", R1, ring),
        (_MOV_REG, R2, R10), (_ADD_IMM, R2, 0, 0, ev),
        (_MOV_IMM, R3, 0, 0, size),
        (_MOV_IMM, R4, 0, 0, 0),
        (_CALL, 0, 0, 0, _RINGBUF_OUTPUT),
        (_JEQ_IMM, R0, 0, out, 0),
        (_ST_W, R10, 0, -16, 0),  # no room: lost[0] += 1
        ("map", R1, lost),
        (_MOV_REG, R2, R10), (_ADD_IMM, R2, 0, 0, -16),
        (_CALL, 0, 0, 0, _MAP_LOOKUP),
        (_JEQ_IMM, R0, 0, out, 0),
        (_MOV_IMM, R1, 0, 0, 1),
        (_ATOMIC_DW, R0, R1, 0, _ATOMIC_ADD),
        (out,),
        (_MOV_IMM, R0, 0, 0, 0),
        (_EXIT,),
    ]
    return assemble(code)


# --------------------------------------------------------------------------- the events


class Event(NamedTuple):
    """A socket on a captured port, as the kernel saw its process connect, accept or listen on it
    (immutable; a named tuple: thousands a second are made)."""

    kind: int  # CONNECT, ACCEPT or LISTEN
    pid: int  # the process (thread group id)
    tid: int
    fd: int
    inode: int
    when: float  # epoch seconds
    established: bool  # connect() returned 0 (else EINPROGRESS: SYN-SENT); accept, listen: always
    comm: str  # the thread's name
    family: int
    local: tuple[str, int]
    remote: tuple[str, int]
    key: bytes  # as :func:`osflow.record.kernel.sock_key` builds it (the netlink rows' key)
    ppid: int = 0  # the parent process when the syscall ran (0: not known)
    uid: int = -1  # the process's user (-1: not known)
    netns: int = 0  # the socket's network namespace, its inode number (0: not known)


class Decoder:
    """Events from the ring buffer (:meth:`__call__`), for one kernel's offsets: one unpack of
    ``struct sock_common``'s members an event (a :class:`struct.Struct` with their offsets), and the
    texts events repeat (an address, a thread's name) made once.  Thousands of events a second go
    through it, in the recorder's own time.

    OSError when the members overlap (then the kernel's path is refused, as for any offsets that do
    not fit)."""

    #: the most addresses and thread names remembered (then forgotten all at once)
    MAX_KEPT = 4096

    def __init__(self, o: Offsets) -> None:
        # (offset, size, format) of daddr, rcv_saddr, dport, num, family, v6_daddr, v6_rcv_saddr
        members = [(o.daddr, 4, "4s"), (o.rcv_saddr, 4, "4s"), (o.dport, 2, "H"), (o.num, 2, "H"),
                   (o.family, 2, "H"), (o.v6_daddr, 16, "16s"), (o.v6_rcv_saddr, 16, "16s")]
        order = sorted(range(len(members)), key=lambda i: members[i][0])
        fmt, at = "=", 0
        for i in order:
            off, size, code = members[i]
            if off < at:
                raise OSError(errno.EINVAL, "BTF: struct sock_common's members overlap")
            fmt += f"{off - at}x{code}"
            at = off + size
        self._sk = struct.Struct(fmt)
        self._pick = operator.itemgetter(*(order.index(i) for i in range(len(members))))
        self._hosts: dict[bytes, str] = {}
        self._comms: dict[bytes, str] = {}

    def __call__(self, raw: bytes, clock: tuple[float, int]) -> Event | None:
        """The event of ``raw`` (``clock``: ``time.time()`` and ``time.monotonic_ns()`` at one moment);
        None when not an IPv4/IPv6 socket."""
        kind, tgid, tid, fd, inode, ns, ret, comm, ppid, uid, netns = _HEAD.unpack_from(raw)
        daddr, saddr, dport, sport, family, v6_daddr, v6_saddr = self._pick(self._sk.unpack_from(raw, _HEAD.size))
        if family == socket.AF_INET:
            src, dst = saddr, daddr
        elif family == socket.AF_INET6:
            src, dst = v6_saddr, v6_daddr
        else:
            return None
        dport = socket.ntohs(dport)
        hosts = self._hosts
        if len(hosts) > self.MAX_KEPT or len(self._comms) > self.MAX_KEPT:
            hosts.clear()
            self._comms.clear()
        local = hosts.get(src) or hosts.setdefault(src, socket.inet_ntop(family, src))
        remote = hosts.get(dst) or hosts.setdefault(dst, socket.inet_ntop(family, dst))
        name = self._comms.get(comm)
        if name is None:
            name = self._comms[comm] = comm.split(b"\0", 1)[0].decode("utf-8", "replace")
        wall, mono = clock
        return Event(kind, tgid, tid, fd, inode, wall - (mono - ns) / 1e9, kind != CONNECT or ret == 0, name,
                     family, (local, sport), (remote, dport), sock_key(src, sport, dst, dport), ppid, uid, netns)


def _perf_event_open(tracepoint_id: int) -> int:
    import platform

    number = _PERF_EVENT_OPEN.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"no perf_event_open() number known for {platform.machine()}")
    attr = struct.pack("=IIQQQ", _PERF_TYPE_TRACEPOINT, 128, tracepoint_id, 1, _PERF_SAMPLE_RAW).ljust(128, b"\0")
    attr = attr[:48] + struct.pack("=I", 1) + attr[52:]  # wakeup_events
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    # any process, CPU 0: the program runs on every CPU all the same
    fd = libc.syscall(number, buf, -1, 0, -1, _PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"perf_event_open(): {os.strerror(e)}")
    return fd


def _ioctl(fd: int, request: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ioctl(fd, ctypes.c_ulong(request), ctypes.c_ulong(arg)) < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"ioctl(perf event): {os.strerror(e)}")


_TRACEPOINTS = ("syscalls/sys_enter_connect", "syscalls/sys_exit_connect", "syscalls/sys_exit_accept4",
                "syscalls/sys_exit_accept", "syscalls/sys_enter_listen", "syscalls/sys_exit_listen")

# run in a child: tracefs mounted in a mount namespace of its own, the ids printed
_IDS_CHILD = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x20000) or libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) \\
        or libc.mount(b"nodev", b"/sys/kernel/tracing", b"tracefs", 0, None):
    sys.exit("cannot mount tracefs: errno %d" % ctypes.get_errno())
for name in sys.argv[1:]:
    with open("/sys/kernel/tracing/events/%s/id" % name) as f:
        print(f.read().strip())
"""


def tracepoint_ids(names: Iterable[str] = _TRACEPOINTS) -> list[int]:
    """The ids of tracepoints ``group/name``, from tracefs: where the system mounted it, else in a
    child's private mount namespace (the system's mounts stay as they are)."""
    names = list(names)
    for base in TRACEFS:
        if os.path.isdir(f"{base}/events"):
            try:
                return [int(_read(f"{base}/events/{n}/id")) for n in names]
            except (OSError, ValueError) as e:
                raise OSError(errno.ENOENT, f"tracepoint missing: {e}") from None
    try:
        done = subprocess.run([sys.executable, "-c", _IDS_CHILD, *names], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise OSError(errno.ENOENT, f"cannot read the tracepoint ids: {e}") from None
    if done.returncode:
        why = done.stderr.strip().splitlines()
        raise OSError(errno.ENOENT, f"cannot read the tracepoint ids: {why[-1] if why else done.returncode}")
    return [int(x) for x in done.stdout.split()]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _map(kind: int, key: int, value: int, entries: int, what: str) -> int:
    try:
        return _bpf(_MAP_CREATE, struct.pack("=IIIII", kind, key, value, entries, 0))
    except OSError as e:
        raise OSError(e.errno, f"the kernel refused the {what} map: {e.strerror}") from None


class KernelOwners:
    """The programs, their maps and perf events; :meth:`read` gives the connections seen since.

    OSError (saying why) when this kernel or user cannot: then nothing stays open."""

    def __init__(self, ports: Iterable[int], btf_path: str = BTF_PATH) -> None:
        if os.environ.get(NO_BPF_ENV):
            raise OSError(errno.EPERM, f"{NO_BPF_ENV} is set")
        self.fds: list[int] = []
        self.events = 0
        self._lost = 0
        self._pending: list[Event] = []  # events read during the self-check, not the check's own
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            probe.bind(("127.0.0.1", 0))
            probe.listen(1)
            ports = {*ports, probe.getsockname()[1]}
            try:
                with open(btf_path, "rb") as f:
                    self.offsets = Offsets.from_btf(Btf(f.read()))
            except OSError as e:
                raise OSError(e.errno or errno.ENOENT, f"no kernel BTF ({btf_path}): {e.strerror or e}") from None
            self.decode = Decoder(self.offsets)
            ids = tracepoint_ids()
            self.ring_fd = self._keep(_map(_MAP_RINGBUF, 0, 0, RING_BYTES, "ring buffer"))
            ports_fd = self._keep(_map(_MAP_HASH, 4, 4, 2 * max(1, len(set(ports))), "ports"))
            for p in set(ports):
                for key in (p, (socket.htons(p)) | 0x10000):
                    _update(ports_fd, struct.pack("=I", key), struct.pack("=I", 1))
            connecting = self._keep(_map(_MAP_LRU_HASH, 8, 8, MAX_CONNECTING, "connecting"))
            self.lost_fd = self._keep(_map(_MAP_ARRAY, 4, 8, 1, "lost events"))
            o, ring, lost = self.offsets, self.ring_fd, self.lost_fd
            programs = [enter_connect(connecting), exit_program(CONNECT, o, ports_fd, ring, lost, connecting),
                        exit_program(ACCEPT, o, ports_fd, ring, lost), exit_program(ACCEPT, o, ports_fd, ring, lost),
                        enter_connect(connecting), exit_program(LISTEN, o, ports_fd, ring, lost, connecting)]
            for name, tp, prog in zip(_TRACEPOINTS, ids, programs, strict=True):
                prog_fd = self._keep(load_program(prog, _PROG_TYPE_TRACEPOINT, f"{name} program"))
                event = self._keep(_perf_event_open(tp))
                _ioctl(event, _PERF_EVENT_IOC_SET_BPF, prog_fd)
                _ioctl(event, _PERF_EVENT_IOC_ENABLE, 0)
            page = mmap.PAGESIZE
            self._consumer = mmap.mmap(self.ring_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._data = mmap.mmap(self.ring_fd, page + 2 * RING_BYTES, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=page)
            self._check(probe, ports_fd)
        except BaseException:
            self.close()
            raise
        finally:
            probe.close()

    def _check(self, probe: socket.socket, ports_fd: int) -> None:
        """Connect to ``probe`` (a listener of this process on loopback, its port added to the
        captured ones): the kernel's events must name both ends, their fds and inodes, as this
        process sees them (and its parent, user and network namespace), within a second, else
        OSError (offsets that do not fit this kernel, a program that runs nowhere): the recorder
        then polls.  The probe's port is then removed; the other events read meanwhile are kept
        for :meth:`read`."""
        port = probe.getsockname()[1]
        netns = os.stat("/proc/self/ns/net").st_ino if self.offsets.ns_inum else 0
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        server, _ = probe.accept()
        try:
            want = {(CONNECT, client.fileno(), os.fstat(client.fileno()).st_ino, port),
                    (ACCEPT, server.fileno(), os.fstat(server.fileno()).st_ino, port)}
            seen: set[tuple] = set()
            deadline = time.monotonic() + 1.0
            while not want <= seen and time.monotonic() < deadline:
                for ev in self.read():
                    mine = ev.local[1] == port or ev.remote[1] == port
                    if mine and (ev.pid, ev.ppid, ev.uid, ev.netns) == (os.getpid(), os.getppid(), os.getuid(), netns):
                        seen.add((ev.kind, ev.fd, ev.inode, port))
                    elif not mine:
                        self._pending.append(ev)
                time.sleep(0.005)
        finally:
            client.close()
            server.close()
        for key in (port, socket.htons(port) | 0x10000):
            k = ctypes.create_string_buffer(struct.pack("=I", key), 4)
            _bpf(_MAP_DELETE_ELEM_CMD, struct.pack("=IIQ", ports_fd, 0, ctypes.addressof(k)))
        self.events = len(self._pending)
        if not want <= seen:
            raise OSError(errno.EPROTO, "the kernel's events did not name a test connection on loopback "
                          f"(its ends: {sorted(want - seen)} missing)")

    def _keep(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    @property
    def lost(self) -> int:
        """Events the ring buffer had no room for, so far (once closed: until then)."""
        if not self.fds:
            return self._lost
        key = ctypes.create_string_buffer(4)
        value = ctypes.create_string_buffer(8)
        _bpf(_MAP_LOOKUP_ELEM_CMD, struct.pack("=IIQQQ", self.lost_fd, 0, ctypes.addressof(key),
                                              ctypes.addressof(value), 0))
        self._lost = int(struct.unpack("=Q", value.raw)[0])
        return self._lost

    def raw(self) -> Iterator[bytes]:
        """The records the programs wrote since the last call (none: two reads of shared memory)."""
        consumer, data = self._consumer, self._data
        page, mask = mmap.PAGESIZE, RING_BYTES - 1
        pos = struct.unpack_from("=Q", consumer, 0)[0]
        end = struct.unpack_from("=Q", data, 0)[0]
        while pos < end:
            at = page + (pos & mask)
            length = struct.unpack_from("=I", data, at)[0]
            if length & (1 << 31):  # still being written
                break
            size = length & 0x3FFFFFFF
            if not length & (1 << 30):  # not discarded
                yield data[at + 8 : at + 8 + size]
            pos += (size + 8 + 7) & ~7
            struct.pack_into("=Q", consumer, 0, pos)

    def read(self) -> list[Event]:
        """The sockets on the captured ports connected, accepted or listened on since the last call."""
        clock = (time.time(), time.monotonic_ns())
        decode = self.decode
        out, self._pending = self._pending, []  # counted already
        fresh = 0
        for raw in self.raw():
            ev = decode(raw, clock)
            if ev is not None:
                out.append(ev)
                fresh += 1
        self.events += fresh
        return out

    def close(self) -> None:
        if self.fds and getattr(self, "lost_fd", None) in self.fds:
            try:
                self.lost  # noqa: B018 - kept for meta.json once the map is gone
            except OSError:
                pass
        for m in ("_data", "_consumer"):
            mm = getattr(self, m, None)
            if mm is not None:
                mm.close()
                setattr(self, m, None)
        for fd in reversed(self.fds):
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


def _update(map_fd: int, key: bytes, value: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    _bpf(_MAP_UPDATE_ELEM_CMD, struct.pack("=IIQQQ", map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))
