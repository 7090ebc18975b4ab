"""The capture: dumpcap on the interfaces (by default :func:`host_interfaces`: loopback and every
interface with an address of the host's own) with a filter on the captured ports (:class:`Capture`),
started and stopped by PID, live only once a UDP canary of record's own reaches the file (on
loopback); dumpcap's failures as one clear line (:func:`dumpcap_problem`)."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence

from ..errors import InputError, ToolMissing
from .kernel import read_file
from .ring import capture_files
from .socketlog import socket_fds


def capture_filter(ports: Iterable[int], canary_port: int | None = None) -> str:
    """The BPF capture filter: every port, plus record's own UDP canary.

    >>> capture_filter([5000, 8778])
    'tcp port 5000 or tcp port 8778'
    >>> capture_filter([3306], 40000)
    'tcp port 3306 or (udp dst port 40000 and dst host 127.0.0.1)'
    """
    text = " or ".join(f"tcp port {p}" for p in sorted(set(ports)))
    if canary_port is not None:
        text += f" or (udp dst port {canary_port} and dst host 127.0.0.1)"
    return text


def interfaces() -> list[str]:
    """The names of this machine's network interfaces (none when /sys does not tell)."""
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


def _flags(interface: str) -> int:
    """The interface's IFF_* flags (0 when /sys does not tell)."""
    raw = read_file(f"/sys/class/net/{interface}/flags")
    try:
        return int(raw or b"0", 16)
    except ValueError:
        return 0


def is_loopback(interface: str) -> bool:
    """Whether the interface is a loopback one (``lo``, ``any`` or IFF_LOOPBACK): the canary works there."""
    if interface in ("lo", "any"):
        return True
    return bool(_flags(interface) & 0x8)


_SIOCGIFADDR = 0x8915


def _has_ipv4(interface: str) -> bool:
    """Whether the interface has an IPv4 address (SIOCGIFADDR: its first one)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
        return True
    except OSError:  # EADDRNOTAVAIL: none; ENODEV: gone
        return False


def _with_ipv6(if_inet6: bytes | None) -> set[str]:
    """The interfaces with an IPv6 address other than a link-local one, from /proc/net/if_inet6
    (address, index, prefix length, scope, flags, name; scope 0x20 is link-local).

    >>> sorted(_with_ipv6(b"fe80000000000000000000000000000a 03 40 20 80 veth0\\n"
    ...                   b"20010db8000000000000000000000001 02 40 00 80 eth0\\n"))
    ['eth0']
    """
    names = set()
    for line in (if_inet6 or b"").decode("ascii", "replace").splitlines():
        parts = line.split()
        if len(parts) == 6 and int(parts[3], 16) & 0xF0 != 0x20:
            names.add(parts[5])
    return names


def host_interfaces() -> list[str]:
    """The interfaces that carry this host's own traffic: loopback, and every interface that is up
    and has an address of its own (IPv4, or IPv6 other than link-local), in /sys's order.

    Each packet to or from an address of this host goes through exactly one of them: a bridge's
    ports, a bond's slaves, a veth whose address is on a bridge have none of their own, so a packet
    is not seen once on the bridge and again on its port (as ``-i any`` sees it).  Traffic between
    two of the host's own addresses goes through loopback.  ``["any"]`` when /sys does not tell."""
    names = interfaces()
    if not names:
        return ["any"]
    v6 = _with_ipv6(read_file("/proc/net/if_inet6"))
    out = []
    for name in names:
        flags = _flags(name)
        if flags & 0x8 or (flags & 0x1 and (name in v6 or _has_ipv4(name))):
            out.append(name)
    return out or ["any"]


def check_interface(interface: str) -> None:
    """Raise InputError when the interface does not exist (when /sys tells)."""
    names = interfaces()
    if names and interface != "any" and interface not in names:
        raise InputError(f"no such interface: {interface} (this machine has: {', '.join(names)}, any)")


def dumpcap_problem(interface: str, stderr: str, status: int | None) -> InputError:
    """dumpcap's failure as one clear line."""
    if "permission" in stderr.lower() or "Operation not permitted" in stderr:
        return InputError(
            f"no permission to capture on {interface}: run osflow record as root, or allow your user "
            "to capture (sudo dpkg-reconfigure wireshark-common, answer yes; sudo usermod -aG wireshark $USER; "
            "log in again)"
        )
    if "no device named" in stderr.lower() or "No such device" in stderr:
        names = interfaces()
        have = f" (this machine has: {', '.join(names)}, any)" if names else ""
        return InputError(f"no such interface: {interface}{have}")
    lines = [
        ln.strip()
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith(("Capturing on", "File: ")) and "Running as user" not in ln
    ]
    why = lines[0] if lines else f"it exited with status {status}"
    return InputError(f"dumpcap could not capture on {interface}: {why}")


#: ``PACKET_IGNORE_OUTGOING`` (Linux 4.20): a packet socket with it is not handed the packets its
#: interface sends, only those it receives
SOL_PACKET, PACKET_IGNORE_OUTGOING = 263, 23
_PIDFD_GETFD = {"x86_64": 438, "aarch64": 438, "ppc64le": 438, "s390x": 438, "riscv64": 438}


def loopback_sockets(pid: int, proc: str = "/proc") -> list[int]:
    """The fds of ``pid``'s packet sockets bound to a loopback interface (``/proc/net/packet``'s
    ``Iface`` column, matched to ``/proc/PID/fd`` by inode); none when /proc does not tell."""
    indexes = set()
    for name in interfaces():
        if not is_loopback(name):
            continue
        try:
            indexes.add(socket.if_nametoindex(name))
        except OSError:
            pass
    inodes = set()
    for line in (read_file(f"{proc}/net/packet") or b"").splitlines()[1:]:
        parts = line.split()  # sk RefCnt Type Proto Iface R Rmem User Inode
        if len(parts) >= 9 and parts[4].isdigit() and int(parts[4]) in indexes:
            inodes.add(int(parts[8]))
    try:
        return sorted(fd for inode, fd in socket_fds(pid, proc) if inode in inodes)
    except OSError:  # the process is gone
        return []


def ignore_outgoing_on_loopback(pid: int) -> tuple[int, str | None]:
    """Set ``PACKET_IGNORE_OUTGOING`` on dumpcap's (``pid``) packet sockets on loopback.

    Loopback hands every packet to a packet socket twice: as it is sent and as it is received.
    libpcap keeps only the received copy, but the kernel has already cloned, filtered and copied
    the sent one into dumpcap's ring, in the sending process's time: half of what capturing a
    loopback packet costs the services.  With the option the kernel skips the sent copy; the capture
    is the same.  The socket is dumpcap's, so record takes a copy of its fd (``pidfd_getfd``, Linux
    5.6, the same privilege as ptrace: root) to set it.  Returns (sockets set, why none were)."""
    import ctypes
    import platform

    number = _PIDFD_GETFD.get(platform.machine())
    if number is None or not hasattr(os, "pidfd_open"):
        return 0, f"no pidfd_getfd() on {platform.machine()}"
    fds = loopback_sockets(pid)
    if not fds:
        return 0, f"no packet socket of process {pid} on loopback"
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as e:
        return 0, f"pidfd_open(): {e.strerror}"
    done, why = 0, None
    try:
        for fd in fds:
            mine = libc.syscall(number, pidfd, fd, 0)
            if mine < 0:
                why = f"pidfd_getfd(): {os.strerror(ctypes.get_errno())}"
                continue
            try:
                sock = socket.socket(fileno=mine)
                try:
                    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                    done += 1
                finally:
                    sock.detach()
            except OSError as e:
                why = f"setsockopt(PACKET_IGNORE_OUTGOING): {e.strerror}"
            finally:
                os.close(mine)
    finally:
        os.close(pidfd)
    return done, None if done else why


def _die_with_parent() -> None:
    """In dumpcap's child before exec: get SIGTERM when record dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: record still stops dumpcap itself
        pass


class Capture:
    """dumpcap writing a pcapng file (or, with ``ring``, dumpcap's ``-b`` arguments, a ring of
    them beside ``path``: :mod:`~osflow.record.ring`), started and stopped by PID."""

    def __init__(self, dumpcap: str, interfaces: str | Sequence[str], ports: Sequence[int], path: str,
                 ring: Sequence[str] = ()) -> None:
        self.dumpcap = dumpcap
        self.interfaces = [interfaces] if isinstance(interfaces, str) else list(interfaces)
        self.interface = ", ".join(self.interfaces)  #: for messages
        self.path = path
        self.ring = list(ring)
        #: the canary works when one of the interfaces is loopback
        self.loopback = any(is_loopback(i) for i in self.interfaces)
        self.canary: socket.socket | None = None
        if self.loopback:
            self.canary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.canary.bind(("127.0.0.1", 0))
        self.filter = capture_filter(ports, self.canary.getsockname()[1] if self.canary else None)
        self.proc: subprocess.Popen | None = None
        self.stderr: list[str] = []
        self.canaries = 0
        self._reader: threading.Thread | None = None
        #: dumpcap's loopback sockets told to skip the copies loopback sends (the received ones are
        #: the capture), or why not (:func:`ignore_outgoing_on_loopback`), for meta.json
        self.outgoing_skipped: int | None = None
        self.outgoing_kept_why: str | None = None

    @property
    def command(self) -> list[str]:
        """dumpcap's command line: each interface with the filter after it (dumpcap applies ``-f`` to
        the ``-i`` before it), into one pcapng file (one interface block per interface)."""
        each = [a for i in self.interfaces for a in ("-i", i, "-f", self.filter)]
        return [self.dumpcap, *each, "-w", self.path, "-B", "16", *self.ring]

    def _size(self) -> tuple[int, int]:
        """How far the capture got: (ring file number, its size); a later file is further."""
        number, path = (capture_files(os.path.dirname(self.path)) or [(0, "")])[-1] if self.ring else (0, self.path)
        try:
            return number, os.path.getsize(path)
        except OSError:
            return number, 0

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            if not raw.startswith(b"File: "):  # a ring's every new file: hours of them
                self.stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _sing(self) -> None:
        assert self.canary is not None
        self.canaries += 1
        self.canary.sendto(b"osflow record: capture is live", self.canary.getsockname())

    def start(self, timeout: float = 10) -> None:
        """Start dumpcap and wait until the capture is live (raises InputError when it cannot capture)."""
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # the terminal's Ctrl-C must not cut the capture short
                preexec_fn=_die_with_parent,
            )
        except OSError as e:
            raise ToolMissing(f"cannot run {self.dumpcap}: {e.strerror}") from None
        self._reader = threading.Thread(target=self._read_stderr, name="osflow-dumpcap-stderr", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        header: tuple[int, int] | None = None
        sung = 0.0
        while time.monotonic() < deadline:
            status = self.proc.poll()
            if status is not None:
                self._reader.join(2)
                raise dumpcap_problem(self.interface, "\n".join(self.stderr), status)
            size = self._size()
            if header is None:
                if size[1] > 0:  # dumpcap opened the interface and wrote the pcapng header
                    time.sleep(0.05)
                    header = self._size()
                    if not self.loopback:
                        time.sleep(0.3)  # no canary off loopback: give the kernel filter a moment
                        return
                    self.outgoing_skipped, self.outgoing_kept_why = ignore_outgoing_on_loopback(self.proc.pid)
                    self._sing()
                    sung = time.monotonic()
            elif size > header:  # the canary (or real traffic) reached the file
                return
            elif time.monotonic() - sung > 0.2:  # dumpcap flushes its file every 100 ms
                self._sing()
                sung = time.monotonic()
            time.sleep(0.01)
        self.stop()
        raise InputError(
            f"dumpcap did not start capturing on {self.interface} within {timeout:g} s"
            + (f": {self.stderr[-1]}" if self.stderr else "")
        )

    def drain(self, timeout: float = 3) -> bool:
        """Wait until every packet so far is in the file (a last canary); False when unsure."""
        if self.canary is None or self.proc is None or self.proc.poll() is not None:
            time.sleep(0.3)
            return False
        base = self._size()
        self._sing()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._size() > base:
                return True
            time.sleep(0.01)
        return False

    def stop(self, timeout: float = 10) -> int | None:
        """Stop dumpcap (SIGTERM by PID, then SIGKILL); its exit status (None when it never started).
        The canary's socket is closed either way."""
        if self.proc is None:
            if self.canary is not None:
                self.canary.close()
                self.canary = None
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        if self.canary is not None:
            self.canary.close()
            self.canary = None
        return self.proc.returncode

    def dropped(self) -> int | None:
        """Packets the kernel or dumpcap dropped, from dumpcap's final statistics."""
        total = None
        for line in self.stderr:
            if line.startswith("Packets received/dropped"):
                try:
                    total = (total or 0) + int(line.split(":")[-1].split("(")[0].split("/")[1])
                except (IndexError, ValueError):
                    pass
        return total
