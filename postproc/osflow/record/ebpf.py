"""Who sent a SYN, from the kernel: an eBPF socket filter on the SYN trigger's packet socket.

A connection to a one-process server can close 0.2 ms after its SYN; looking its socket up in
``/proc`` after the SYN woke the recorder lost that race on a loaded machine (two busy loops on two
cores: the lookup ran 0.17-0.22 ms after the SYN).  The kernel knows the sender at the moment it
sends: on the loopback interface (``noqueue``) a SYN reaches the packet sockets inside the
sender's own ``connect()``, so a socket filter running there sees the connecting process as the
current task.  :class:`SynSenders` loads such a filter: it lets through TCP SYNs (as the classic
:data:`osflow.record.watcher.SYN_FILTER` does) and, for a SYN without ACK sent on loopback
(``ifindex`` 1, ``PACKET_OUTGOING``; IPv4 or IPv6), notes the current task's pid (the thread group: the process)
and ``comm`` in an LRU hash map keyed by the 4-tuple, which :meth:`SynSenders.sender` reads.

Needs root (``CAP_BPF``) and a kernel whose socket filters may call ``bpf_get_current_pid_tgid``
and ``bpf_get_current_comm``; elsewhere :class:`SynSenders` raises OSError and the trigger keeps
the classic filter (the owner is then looked up in ``/proc`` as before).  Nothing is attached to
the system: the program lives as long as the packet socket, the map as long as its fd.

The program (:func:`program`) is a list of instructions, each assembled by :func:`insn`:

>>> len(insn(0x85, imm=14)), insn(0xb7, 0, imm=1).hex()
(8, 'b700000001000000')
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
_MAP_CREATE, _MAP_LOOKUP_ELEM, _MAP_DELETE_ELEM, _PROG_LOAD = 0, 1, 3, 5
_MAP_TYPE_LRU_HASH = 9
_PROG_TYPE_SOCKET_FILTER = 1
SO_ATTACH_BPF = 50
_GET_CURRENT_PID_TGID, _GET_CURRENT_COMM, _MAP_UPDATE_ELEM = 14, 16, 2
#: sport << 16 | dport, source, destination (4 words each) as LD_ABS reads them (host order)
KEY = struct.Struct("=I4I4I")
VALUE = struct.Struct("=I16s")  #: pid (the thread group id), comm
#: the most SYN senders remembered (least recently used ones go first)
MAX_ENTRIES = 16384


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One eBPF instruction (``struct bpf_insn``)."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


# opcodes
_LDABS_B, _LDABS_H, _LDABS_W, _LDIND_B, _LDIND_W = 0x30, 0x28, 0x20, 0x50, 0x40
_LDX_W, _STX_W, _ST_W = 0x61, 0x63, 0x62
_MOV_REG, _MOV_IMM, _ADD_IMM, _AND_IMM, _RSH_IMM, _LSH_IMM = 0xBF, 0xB7, 0x07, 0x57, 0x77, 0x67
_JNE_IMM, _JSET_IMM, _JA = 0x55, 0x45, 0x05
_CALL, _EXIT, _LD_IMM64 = 0x85, 0x95, 0x18
_PSEUDO_MAP_FD = 1
R0, R1, R2, R3, R4, R6, R7, R8, R10 = 0, 1, 2, 3, 4, 6, 7, 8, 10


def program(map_fd: int) -> bytes:
    """The filter: SYNs through (128 bytes), the rest dropped; an outgoing SYN on loopback noted.

    The key (36 bytes on the stack at r10-40): the ports' word, the source's four words, the
    destination's four (an IPv4 address in the first word, the other three zero); the value (20
    bytes at r10-64): pid, comm.  Jumps are counted in instructions (a 64-bit immediate load
    takes two)."""
    accept, drop = "accept", "drop"

    def words(first: int, at: int, n: int) -> list:  # n words of the packet from ``first`` to the stack at ``at``
        out: list = []
        for k in range(n):
            out += [(_LDABS_W, 0, 0, 0, first + 4 * k), (_STX_W, R10, R0, at + 4 * k, 0)]
        return out

    zeros = lambda at: [(_ST_W, R10, 0, at + 4 * k, 0) for k in range(3)]  # noqa: E731
    noted_here = [  # SYN-ACK, arriving, or not on loopback: through, not noted
        (_JSET_IMM, R8, 0, accept, 0x10),
        (_LDX_W, R0, R6, 4, 0),  # skb->pkt_type
        (_JNE_IMM, R0, 0, accept, 4),  # PACKET_OUTGOING only: the sender is the current task
        (_LDX_W, R0, R6, 40, 0),  # skb->ifindex
        (_JNE_IMM, R0, 0, accept, 1),  # loopback only (noqueue: sent inside connect())
    ]
    code: list = [
        (_MOV_REG, R6, R1),  # r6 = skb (LD_ABS/LD_IND read through r6)
        (_LDABS_B, 0, 0, 0, 0),  # r0 = version, IHL
        (_RSH_IMM, R0, 0, 0, 4),
        (_JNE_IMM, R0, 0, "v6", 4),
        (_LDABS_B, 0, 0, 0, 9),  # protocol
        (_JNE_IMM, R0, 0, drop, 6),
        (_LDABS_H, 0, 0, 0, 6),  # fragment offset
        (_JSET_IMM, R0, 0, drop, 0x1FFF),
        (_LDABS_B, 0, 0, 0, 0),
        (_AND_IMM, R0, 0, 0, 0xF),
        (_LSH_IMM, R0, 0, 0, 2),
        (_MOV_REG, R7, R0),  # r7 = IP header length
        (_LDIND_B, 0, R7, 0, 13),  # TCP flags
        (_MOV_REG, R8, R0),
        (_JSET_IMM, R8, 0, "syn4", 0x02),
        (_JA, 0, 0, drop, 0),
        ("syn4",),
        *noted_here,
        (_LDIND_W, 0, R7, 0, 0),  # sport, dport
        (_STX_W, R10, R0, -40, 0),
        *words(12, -36, 1), *zeros(-32),  # source address
        *words(16, -20, 1), *zeros(-16),  # destination address
        (_JA, 0, 0, "note", 0),
        ("v6",),
        (_JNE_IMM, R0, 0, drop, 6),
        (_LDABS_B, 0, 0, 0, 6),  # next header
        (_JNE_IMM, R0, 0, drop, 6),
        (_LDABS_B, 0, 0, 0, 53),  # TCP flags (40 + 13)
        (_MOV_REG, R8, R0),
        (_JSET_IMM, R8, 0, "syn6", 0x02),
        (_JA, 0, 0, drop, 0),
        ("syn6",),
        *noted_here,
        *words(40, -40, 1),  # sport, dport
        *words(8, -36, 4),  # source address
        *words(24, -20, 4),  # destination address
        ("note",),
        (_CALL, 0, 0, 0, _GET_CURRENT_PID_TGID),
        (_RSH_IMM, R0, 0, 0, 32),
        (_STX_W, R10, R0, -64, 0),  # value: pid, then comm
        (_MOV_REG, R1, R10),
        (_ADD_IMM, R1, 0, 0, -60),
        (_MOV_IMM, R2, 0, 0, 16),
        (_CALL, 0, 0, 0, _GET_CURRENT_COMM),
        ("map",),
        (_MOV_REG, R2, R10),
        (_ADD_IMM, R2, 0, 0, -40),
        (_MOV_REG, R3, R10),
        (_ADD_IMM, R3, 0, 0, -64),
        # BPF_NOEXIST: a SYN sent again by the kernel's timer (any task is current) keeps the first
        (_MOV_IMM, R4, 0, 0, 1),
        (_CALL, 0, 0, 0, _MAP_UPDATE_ELEM),
        (_JA, 0, 0, accept, 0),
        (drop,),
        (_MOV_IMM, R0, 0, 0, 0),
        (_EXIT,),
        (accept,),
        (_MOV_IMM, R0, 0, 0, 128),
        (_EXIT,),
    ]
    # positions: a label is where the next instruction is; the map load is two instructions
    where: dict[str, int] = {}
    n = 0
    for item in code:
        if isinstance(item[0], str):
            where[item[0]] = n
            n += 2 if item[0] == "map" else 0
        else:
            n += 1
    out = []
    n = 0
    for item in code:
        if item[0] == "map":
            out.append(insn(_LD_IMM64, R1, _PSEUDO_MAP_FD, 0, map_fd) + insn(0))
            n += 2
            continue
        if isinstance(item[0], str):
            continue
        c, dst, src, off, imm = (*item, 0, 0, 0, 0)[:5]
        if isinstance(off, str):  # a jump: to the label, relative to the next instruction
            off = where[off] - (n + 1)
        out.append(insn(c, dst, src, off, imm))
        n += 1
    return b"".join(out)


def _words(address: bytes) -> tuple[int, int, int, int]:
    """An address as the key holds it: four big-endian words (IPv4: the first, then zeros).

    >>> _words(socket.inet_aton("127.0.0.1"))
    (2130706433, 0, 0, 0)
    >>> _words(socket.inet_pton(socket.AF_INET6, "::1"))
    (0, 0, 0, 1)
    """
    padded = address.ljust(16, b"\0")
    return tuple(int.from_bytes(padded[k : k + 4], "big") for k in range(0, 16, 4))  # type: ignore[return-value]


_syscall = None  # (libc's syscall(), bpf's number), found once: sender() calls bpf() twice per SYN


def _bpf(cmd: int, attr: bytes) -> int:
    global _syscall
    if _syscall is None:
        import platform

        number = _BPF_SYSCALL.get(platform.machine())
        if number is None:
            raise OSError(errno.ENOSYS, f"no bpf() system call number known for {platform.machine()}")
        _syscall = ctypes.CDLL(None, use_errno=True).syscall, number
    call, number = _syscall
    buf = ctypes.create_string_buffer(attr, max(len(attr), 128))
    fd = call(number, cmd, buf, len(buf))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf(): {os.strerror(e)}")
    return fd


def load_program(prog: bytes, kind: int, what: str) -> int:
    """Load the eBPF program ``prog`` (``kind``: its program type) and return its fd; the kernel's
    verifier's last word, when it refuses, is the :class:`OSError`'s message, naming ``what``."""
    insns = ctypes.create_string_buffer(prog, len(prog))
    licence = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = struct.pack("=IIQQIIQII", kind, len(prog) // 8, ctypes.addressof(insns),
                       ctypes.addressof(licence), 1, len(log), ctypes.addressof(log), 0, 0)
    try:
        return _bpf(_PROG_LOAD, attr)
    except OSError as e:
        why = log.value.decode("ascii", "replace").strip().splitlines()
        raise OSError(e.errno, f"the kernel refused the {what}: {why[-1] if why else e.strerror}") from None


class SynSenders:
    """The filter and its map; :meth:`attach` puts the filter on a packet socket."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.map_fd = _bpf(_MAP_CREATE, struct.pack("=IIIII", _MAP_TYPE_LRU_HASH, KEY.size, VALUE.size,
                                                     max_entries, 0))
        try:
            self.prog_fd = load_program(program(self.map_fd), _PROG_TYPE_SOCKET_FILTER, "SYN filter")
        except OSError:
            os.close(self.map_fd)
            raise
        self._key = ctypes.create_string_buffer(KEY.size)
        self._value = ctypes.create_string_buffer(VALUE.size)
        self._lookup = struct.pack("=IIQQQ", self.map_fd, 0, ctypes.addressof(self._key),
                                   ctypes.addressof(self._value), 0)
        self._delete = struct.pack("=IIQ", self.map_fd, 0, ctypes.addressof(self._key))  # nothing past the key

    def attach(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, self.prog_fd)

    def sender(self, src: bytes, sport: int, dst: bytes, dport: int) -> tuple[str, int] | None:
        """(comm, pid) of the process that sent this SYN (IPv4 or IPv6 addresses as bytes) on loopback,
        read once (the entry is deleted: the 4-tuple's next connection is another's); None when not
        noted, or noted in no process's name (pid 0: a SYN the kernel sent again from a timer, while idle)."""
        self._key.raw = KEY.pack((sport << 16) | dport, *_words(src), *_words(dst))
        try:
            _bpf(_MAP_LOOKUP_ELEM, self._lookup)
        except OSError:  # ENOENT: not noted (another interface, or forgotten)
            return None
        try:
            _bpf(_MAP_DELETE_ELEM, self._delete)
        except OSError:
            pass
        pid, comm = VALUE.unpack(self._value.raw)
        if pid == 0:
            return None
        return comm.split(b"\0", 1)[0].decode("utf-8", "replace"), pid

    def close(self) -> None:
        for fd in (self.prog_fd, self.map_fd):
            try:
                os.close(fd)
            except OSError:
                pass
