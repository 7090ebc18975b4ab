"""The recorder: ``osflow record``'s options (:func:`add_arguments`; :class:`RecordOptions`, which the
command line builds from them), their checks (:func:`run`) and
one recording's steps in order (:class:`Recorder`): start the socket log and the capture; run
COMMAND or wait; stop everything in order; write ``meta.json`` with the coverage; render."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import IO

from .. import __version__, portmap
from ..errors import ExitStatus, InputError, OsflowError, ToolMissing, UsageError
from ..hosts import KEYLOG, is_loopback
from ..wireshark import find_tool
from .capture import Capture, check_interface, host_interfaces
from .coverage import Coverage, coverage, local_hosts
from .owners import KernelOwners
from .procs import Containers, ProcInfo, pids_in_ps, ps_sections, user_name
from .ring import CAPTURE, Ring, RingSocketLog, capture_files, parse_ring, socket_log_files
from .socketlog import SocketLog
from .watcher import SocketWatcher, SynTrigger

# --------------------------------------------------------------------------- the options


#: What ``osflow record`` captures by default: the port map's ports, and a web server's (80, 443).
DEFAULT_PORTS: tuple[int, ...] = tuple(sorted(set(portmap.ALL_PORTS) | set(portmap.WEB_PORTS)))


def _ports(text: str | None) -> tuple[int, ...]:
    if not text:
        return DEFAULT_PORTS
    ports = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise UsageError(f"--ports: expected port numbers separated by commas (e.g. 5000,8778), found {part!r}")
        ports.append(int(part))
    if not ports:
        raise UsageError("--ports: no port given")
    return tuple(sorted(set(ports)))


def find_command(name: str) -> str:
    """The program COMMAND names; UsageError when there is none."""
    if os.sep in name:
        if os.path.isfile(name) and os.access(name, os.X_OK):
            return name
        raise UsageError(f"COMMAND not found: {name} (no such executable file)")
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"COMMAND not found: {name} (not on PATH)")
    return found


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, found {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, found {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``osflow record``."""
    parser.description = (
        "Capture the OpenStack traffic (dumpcap, on the port map's ports, 80 and 443) while COMMAND runs, with "
        "its TLS keys (SSLKEYLOGFILE, tls-keys.log), the owner "
        "of every socket (ss.txt) and the processes (ps.txt); exits with COMMAND's status."
    )
    parser.add_argument(
        "-i",
        "--interface",
        action="append",
        metavar="NAME",
        help="an interface to capture on (repeatable; 'any' for every one); default: loopback and every interface "
        "that is up with an address of this host's own (the NICs, a bridge, not its ports): each packet of the "
        "host's own traffic once",
    )
    parser.add_argument(
        "-o", "--output", metavar="DIR", help="folder for the files (default: ./osflow-<YYYYmmdd-HHMMSS>/)"
    )
    parser.add_argument(
        "--ports",
        metavar="LIST",
        help="TCP ports to capture, comma-separated (default: every port of osflow's port map, and a web "
        "server's 80 and 443: " + ",".join(map(str, DEFAULT_PORTS)) + ")",
    )
    parser.add_argument(
        "--duration", type=_positive, metavar="SECONDS", help="capture a running system for SECONDS, no COMMAND"
    )
    parser.add_argument(
        "-b",
        "--ring-buffer",
        action="append",
        default=[],
        metavar="KEY:VALUE",
        help="record into a ring of files, as dumpcap's -b (repeatable): files:N keeps the last N, switching at "
        "filesize:KB, duration:SECONDS, interval:SECONDS or packets:N; the socket log follows (ss_<n>.txt per "
        "capture_<n>_<date>.pcapng). E.g. --duration 36000 -b filesize:100000 -b files:10",
    )
    parser.add_argument("--render", action="store_true", help="then write DIR/flow.md (timeline + Mermaid)")
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="MS",
        help="how often the socket-owner log looks for new sockets, in milliseconds (default: 1)",
    )
    parser.add_argument(
        "--always-poll",
        action="store_true",
        help="poll for new sockets every --interval all the time, instead of in bursts after each SYN "
        "(the default when record may open a packet socket, i.e. as root)",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="keep capturing after COMMAND ends, for late packets (default: 0.5)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]", help="the command to run")


@dataclass(frozen=True)
class RecordOptions:
    """``osflow record``'s options, as :func:`add_arguments` defines them (:func:`run` checks them)."""

    command: tuple[str, ...] = ()  #: COMMAND [ARGS...] (a leading ``--`` is dropped)
    interface: tuple[str, ...] = ()  #: ``-i`` (repeatable); empty: :func:`~osflow.record.capture.host_interfaces`
    output: str | None = None  #: DIR (default: ./osflow-<YYYYmmdd-HHMMSS>/)
    ports: str | None = None  #: ``--ports LIST`` as given (default: the port map's)
    duration: float | None = None  #: record a running system this long, no COMMAND
    ring_buffer: tuple[str, ...] = ()  #: ``-b KEY:VALUE``, dumpcap's ring buffer
    render: bool = False  #: then write DIR/flow.md
    interval: float = 1.0  #: the socket-owner log's poll interval, in milliseconds
    always_poll: bool = False
    linger: float = 0.5  #: seconds of capture after COMMAND ends


def run(args: RecordOptions) -> int:
    """``osflow record``: see :mod:`osflow.record`; returns COMMAND's exit status."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if command and args.duration is not None:
        raise UsageError("give either -- COMMAND or --duration SECONDS, not both")
    if not command and args.duration is None:
        raise UsageError("nothing to record: give -- COMMAND [ARGS...] or --duration SECONDS")
    if not args.interval > 0:
        raise UsageError("--interval: expected a positive number of milliseconds")
    if args.linger < 0:
        raise UsageError("--linger: expected 0 or more seconds")
    ports = _ports(args.ports)
    ring = parse_ring(args.ring_buffer) if args.ring_buffer else None
    if command:
        find_command(command[0])
    chosen = list(dict.fromkeys(args.interface))
    if "any" in chosen and len(chosen) > 1:
        raise UsageError("-i any already captures on every interface: give it alone")
    dumpcap = find_tool("dumpcap", "DUMPCAP")
    chosen = chosen or host_interfaces()
    for name in chosen:
        check_interface(name)
    return Recorder(args, command, ports, dumpcap, ring, tuple(chosen)).run()


# --------------------------------------------------------------------------- the recording


def _make_dir(path: str | None) -> tuple[str, bool]:
    """Create the output folder (0700); (path, whether record created it)."""
    if not path:
        path = time.strftime("osflow-%Y%m%d-%H%M%S")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UsageError(f"{path}: exists and is not a folder")
        if os.listdir(path):
            raise UsageError(f"{path}: exists and is not empty (give another -o DIR)")
        os.chmod(path, 0o700)
        return path, False
    try:
        os.makedirs(path, mode=0o700)
    except OSError as e:
        raise InputError(f"{path}: cannot create it: {e.strerror}") from None
    os.chmod(path, 0o700)
    return path, True


def _versions(dumpcap: str) -> dict:
    v: dict[str, str | None] = {"osflow": __version__, "python": platform.python_version(),
                                "kernel": platform.release()}
    try:
        out = subprocess.run([dumpcap, "-v"], capture_output=True, text=True, timeout=10).stdout
        v["dumpcap"] = out.strip().splitlines()[0] if out.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        v["dumpcap"] = None
    return v


def _say(text: str) -> None:
    print(f"osflow record: {text}", file=sys.stderr, flush=True)


def _raise_interrupt(signum, frame):  # SIGTERM/SIGHUP: stop as on Ctrl-C
    raise KeyboardInterrupt


def _stop_child(proc: subprocess.Popen) -> int:
    """After Ctrl-C: let COMMAND end (it got the terminal's SIGINT), else SIGINT, SIGTERM, SIGKILL by PID."""
    for sig, wait in ((None, 2.0), (signal.SIGINT, 3.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        if sig is not None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def _status(returncode: int) -> int:
    """COMMAND's exit status as a shell gives it (128 + N when signal N ended it)."""
    return 128 - returncode if returncode < 0 else returncode


def _secure(path: str) -> None:
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass


class Recorder:
    """One recording into one folder: :meth:`run` takes the steps in order; each step leaves what
    the later ones need in the attributes."""

    def __init__(self, options: RecordOptions, command: list[str], ports: tuple[int, ...], dumpcap: str,
                 ring: Ring | None = None, interfaces: tuple[str, ...] = ()) -> None:
        self.options = options
        #: the interfaces to capture on: ``-i``'s, else the host's (:func:`~osflow.record.capture.host_interfaces`)
        self.interfaces = interfaces or tuple(options.interface) or tuple(host_interfaces())
        self.command = command
        self.ports = ports
        self.dumpcap = dumpcap
        self.ring = ring  # -b: capture_<n>_<date>.pcapng and ss_<n>.txt instead of capture.pcapng and ss.txt
        self.containers = Containers()  # the container of each process, for ps.txt (names looked up once)
        self.merged: str | None = None  # _merge: a ring's files as one, for the coverage and --render
        self.dir = ""
        self.created = False
        # _start
        self.ss_file: RingSocketLog | IO[str] | None = None
        self.log: SocketLog | None = None
        self.trigger: SynTrigger | None = None
        self.kernel: KernelOwners | None = None  # the owners from the kernel's events, else polls
        self.no_kernel: str | None = None  # why not
        self.watcher: SocketWatcher | None = None
        self.capture: Capture | None = None
        # _run_command
        self.start = 0.0
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.interrupted = False
        # _stop
        self.end = 0.0
        self.during: list[ProcInfo] = []  # socket owners not in ps.txt's BEFORE snapshot
        self.drained = False
        self.dumpcap_status: int | None = None
        self.dropped: int | None = None

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def captures(self) -> list[str]:
        """The capture files of the recording (a ring's, oldest first)."""
        if self.ring is None:
            return [self.path(CAPTURE)]
        return [p for _, p in capture_files(self.dir)]

    def socket_logs(self) -> list[str]:
        """The socket-log files of the recording (a ring's, oldest first)."""
        if self.ring is None:
            return [self.path("ss.txt")]
        return [p for _, p in socket_log_files(self.dir)]

    def files(self) -> list[str]:
        """The names of the files the recording leaves in DIR (readable by the owner only)."""
        keylog = [KEYLOG] if self.command else []  # the TLS key log COMMAND writes (its SSLKEYLOGFILE)
        return [os.path.basename(p) for p in self.captures() + self.socket_logs()] + ["ps.txt", *keylog, "meta.json"]

    def run(self) -> int:
        """Record (files readable by the owner only; SIGTERM and SIGHUP stop it as Ctrl-C does);
        the exit status: COMMAND's, or ``ExitStatus.INTERRUPTED`` when Ctrl-C came during ``--duration``
        or before COMMAND started."""
        old_umask = os.umask(0o077)
        old_handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
        for s in old_handlers:
            signal.signal(s, _raise_interrupt)
        try:
            return self._run()
        finally:
            os.umask(old_umask)
            for s, h in old_handlers.items():
                signal.signal(s, h)

    def _run(self) -> int:
        """The steps in order: start, run COMMAND or wait, stop, coverage and ``meta.json``, render."""
        self._start()
        _say(f"capturing on {', '.join(self.interfaces)} into {self.dir}/ (ports {','.join(map(str, self.ports))})")
        self._run_command()
        self._stop()
        status: int
        if self.interrupted and self.returncode is None:
            status = ExitStatus.INTERRUPTED
        else:
            status = _status(self.returncode or 0)
        try:
            self._merge()
            cov = self._coverage()
            self._write_meta(self._meta(cov))
            if cov is not None:
                print(cov.line(), file=sys.stderr, flush=True)
                for m in cov.missing[:10]:
                    _say(f"no owner for {m}")
            self._render()
        finally:
            if self.merged is not None and self.merged not in self.captures():
                os.unlink(self.merged)
        return status

    def _start(self) -> None:
        """Create DIR, start the socket log (its first snapshot), then the capture (until it is
        live), then write ``ps.txt``'s BEFORE snapshot.  When any of it fails (Ctrl-C too): stop
        what started, remove what was written, and raise."""
        args = self.options
        self.dir, self.created = _make_dir(args.output)
        if os.geteuid() != 0:
            _say("warning: not root: the socket log sees only the sockets of your own processes")
        try:
            if self.ring is not None:
                ring_log = self.ss_file = RingSocketLog(self.dir)
                self.log = SocketLog(ring_log, self.ports)  # type: ignore[arg-type]  # it writes and flushes as IO does
                self.log.on_housekeeping = ring_log.check
            else:  # held open while the log runs, closed by _stop (or below)
                self.ss_file = open(self.path("ss.txt"), "w", encoding="utf-8")  # noqa: SIM115
                self.log = SocketLog(self.ss_file, self.ports)
            if args.always_poll:
                self.no_kernel = "--always-poll"
            else:
                try:  # the owners from the kernel as connections happen; polls only for what it missed
                    self.kernel = KernelOwners(self.ports)
                except (OSError, AttributeError) as e:  # not root, no BTF or ring buffer, not Linux: polls
                    self.no_kernel = (e.strerror if isinstance(e, OSError) else None) or str(e)
            if self.kernel is None and not args.always_poll:
                try:
                    one = self.interfaces[0] if len(self.interfaces) == 1 else "any"
                    self.trigger = SynTrigger(one, self.ports)
                except (OSError, AttributeError):  # not root (CAP_NET_RAW), not Linux: poll all the time
                    self.trigger = None
            self.watcher = SocketWatcher(self.log, args.interval / 1000.0, self.trigger, kernel=self.kernel)
            self.watcher.start()
            self.watcher.ready.wait(60)
            if self.watcher.error is not None:
                raise InputError(f"the socket-owner log failed: {self.watcher.error}")
            ring = self.ring.dumpcap_args() if self.ring is not None else ()
            self.capture = Capture(self.dumpcap, self.interfaces, self.ports, self.path(CAPTURE), ring)
            self.capture.start()
            with open(self.path("ps.txt"), "w", encoding="utf-8") as f:
                f.write(ps_sections("BEFORE", self.containers))
        except BaseException:  # the socket log, the watcher or the capture could not start
            if self.watcher is not None:
                self.watcher.stop()
            if self.watcher is None or self.watcher.ident is None:  # a watcher that ran closed them itself
                for opened in (self.trigger, self.kernel):
                    if opened is not None:
                        opened.close()
            if self.capture is not None:
                self.capture.stop()
            if self.log is not None:
                self.log.close()
            if self.ss_file is not None:
                self.ss_file.close()
            self._abandon()
            raise

    def _abandon(self) -> None:
        """A start that failed: remove what record wrote."""
        for name in self.files()[:-1]:
            try:
                os.unlink(self.path(name))
            except OSError:
                pass
        if self.created:
            try:
                os.rmdir(self.dir)
            except OSError:
                pass

    def _run_command(self) -> None:
        """Run COMMAND with the user's terminal until it ends (or sleep ``--duration``).  Ctrl-C
        (SIGTERM, SIGHUP: see :meth:`run`) ends the wait early: :attr:`interrupted`."""
        self.start = time.time()
        try:
            if self.command:
                # its TLS keys (Python's ssl, urllib3, curl honour SSLKEYLOGFILE): owner-only, as the
                # rest (the umask), there before it starts, never printed
                keylog = self.path(KEYLOG)
                os.close(os.open(keylog, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
                env = {**os.environ, "SSLKEYLOGFILE": os.path.abspath(keylog)}
                try:
                    self.proc = subprocess.Popen(self.command, env=env)
                except OSError as e:  # found a moment ago, gone or not executable now
                    _say(f"error: cannot run {self.command[0]}: {e.strerror}")
                    self.returncode = 127
                    return
                assert self.watcher is not None  # started by _start
                self.watcher.add_root(self.proc.pid)
                self.returncode = self.proc.wait()
            else:
                time.sleep(self.options.duration or 0.0)
        except KeyboardInterrupt:
            self.interrupted = True

    def _stop(self) -> None:
        """Stop everything in order, deaf to Ctrl-C, SIGTERM and SIGHUP meanwhile: COMMAND (when
        interrupted: see :func:`_stop_child`); after ``--linger``, ``ps.txt``'s AFTER snapshot; the
        capture, once a last canary says every packet is in the file; the socket log (a last poll
        and snapshot).  Then warn about what may be missing."""
        args = self.options
        capture, watcher, log, ss_file = self.capture, self.watcher, self.log, self.ss_file
        assert capture is not None and watcher is not None and log is not None and ss_file is not None  # _start's
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            if self.interrupted:
                _say("interrupted: stopping")
                if self.proc is not None:
                    self.returncode = self.proc.wait() if self.proc.poll() is not None else _stop_child(self.proc)
            self.end = time.time()
            if args.linger and not self.interrupted:
                time.sleep(args.linger)
            after = ps_sections("AFTER", self.containers)
            with open(self.path("ps.txt"), encoding="utf-8") as f:
                before_pids = pids_in_ps(f.read())
            with open(self.path("ps.txt"), "a", encoding="utf-8") as f:
                f.write(after)
            self.drained = capture.drain()
            self.dumpcap_status = capture.stop()
            watcher.stop()
            # only now: the watcher's thread adds to log.procs until it has stopped
            self.during = [p for p in log.owners_seen() if p.pid not in before_pids]
            log.close()
            if isinstance(ss_file, RingSocketLog):
                ss_file.finish()  # the socket-log files of the capture files dumpcap removed last
            else:
                ss_file.close()
            if watcher.error is not None:
                _say(f"warning: the socket-owner log failed: {watcher.error}")
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        self.dropped = capture.dropped()
        if self.dropped:
            _say(f"warning: {self.dropped} packets were dropped while capturing")
        if not self.drained and capture.loopback:
            _say("warning: could not confirm that the last packets reached the capture file")
        if log.unreadable():
            _say(f"warning: could not read the sockets of {log.unreadable()} processes (not root?)")

    def _coverage(self) -> Coverage | None:
        """The share of the capture's local connection ends the socket log names an owner for;
        None, with a warning, when it cannot be computed (the recording is done all the same)."""
        try:
            ps = [self.path("ps.txt")] if os.path.exists(self.path("ps.txt")) else []
            if self.merged is None:
                raise InputError("no capture file to read")
            return coverage(self.merged, self.socket_logs(), ps_files=ps)
        except Exception as e:  # noqa: BLE001 - the recording is done; say why there is no number
            _say(f"warning: cannot compute the socket-owner coverage: {e}")
            return None

    def _meta(self, cov: Coverage | None) -> dict:
        """``meta.json``: what ran and when, how it was captured, the socket log's statistics, the
        short-lived socket owners, the versions, and the coverage."""
        args, capture, log, trigger = self.options, self.capture, self.log, self.trigger
        assert capture is not None and log is not None  # _start's
        meta = {
            "command": self.command or None,
            "duration": args.duration,
            "exit_code": self.returncode if self.command else None,
            "interrupted": self.interrupted,
            "command_pid": self.proc.pid if self.proc is not None else None,
            "dumpcap_pid": capture.proc.pid if capture.proc is not None else None,
            "start": self.start,
            "end": self.end,
            "interface": ",".join(self.interfaces),
            "interfaces": list(self.interfaces),
            "ports": list(self.ports),
            "capture_filter": capture.filter,
            "dumpcap_command": capture.command,
            "dumpcap_exit_code": self.dumpcap_status,
            # loopback's sent copies of each packet, which libpcap drops, skipped in the kernel (or why not)
            "loopback_sent_copies": None if not capture.loopback else (
                "skipped" if capture.outgoing_skipped else f"kept: {capture.outgoing_kept_why}"),
            "dropped_packets": self.dropped,
            "canary": "UDP datagrams to 127.0.0.1 (record's own socket) mark the start and end of the capture"
            if capture.loopback
            else None,
            "socket_log": {
                # where the owners came from: the kernel's connect and accept events, or polls (and why)
                "owners": "kernel: eBPF on the connect, accept and listen syscall tracepoints, a poll every "
                f"{SocketWatcher.SAFETY:g} s for the rest" if self.kernel is not None else f"polls: {self.no_kernel}",
                "kernel_events": self.kernel.events if self.kernel is not None else None,
                "kernel_events_lost": self.kernel.lost if self.kernel is not None else None,
                "interval_ms": args.interval,
                "syn_trigger": trigger is not None,
                "syns_seen": trigger.syns if trigger is not None else None,
                # who sent each SYN on loopback, from the kernel (osflow.record.ebpf), or why not
                "syn_senders": None if trigger is None else (
                    "eBPF socket filter" if trigger.senders is not None else f"not used: {trigger.no_senders}"),
                **log.stats(),
            },
            # processes that owned a socket but are in no ps snapshot (the openstack client):
            # ps.txt keeps to BEFORE/AFTER; osflow-post names them from ss's process name
            "socket_owners_not_in_ps": [
                {"pid": p.pid, "ppid": p.ppid, "user": p.user, "comm": p.comm, "args": p.args} for p in self.during
            ],
            "ring_buffer": None if self.ring is None else {
                **self.ring.settings(),
                "capture_files": [os.path.basename(p) for p in self.captures()],
                "socket_logs": [os.path.basename(p) for p in self.socket_logs()],
                "socket_log_switches": self.ss_file.switches if isinstance(self.ss_file, RingSocketLog) else 0,
            },
            "files": self.files(),
            "versions": _versions(self.dumpcap),
            "user": user_name(os.geteuid()),
            "host": os.uname().nodename,  # the UTS host name (a container's or `unshare --uts`'s own)
            # the host's own addresses (a VIP included): osflow-post -r places each end on its host
            # with them when several hosts' recordings are merged and no socket table is read
            "addresses": sorted(a for a in local_hosts() if not is_loopback(a) and not a.startswith("fe80:")),
        }
        if cov is not None:
            meta["coverage"] = {
                "owned": cov.owned,
                "total": cov.total,
                "percent": cov.percent,
                "through_listener": cov.by_listener,
                "without_owner": cov.missing,
            }
        return meta

    def _write_meta(self, meta: dict) -> None:
        """Write ``meta.json``, then make every file of DIR the owner's only."""
        with open(self.path("meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        for name in self.files():
            _secure(self.path(name))

    def _merge(self) -> None:
        """The capture as one file, for the coverage and ``--render`` (:attr:`merged`): capture.pcapng,
        or a ring's files in order, merged by mergecap into DIR/capture-ring.pcapng (removed at the end);
        without mergecap, the last of them, with a warning."""
        files = self.captures()
        self.merged = files[-1] if files else None
        if len(files) < 2:
            return
        last = os.path.basename(files[-1])
        why: object  # what went wrong (falsy: nothing)
        try:
            mergecap = find_tool("mergecap", "MERGECAP")
            target = self.path("capture-ring.pcapng")
            done = subprocess.run([mergecap, "-a", "-w", target, *files], capture_output=True, text=True, timeout=3600)
            why = done.stderr.strip().splitlines()[-1] if done.returncode and done.stderr.strip() else done.returncode
        except (OSError, subprocess.TimeoutExpired, ToolMissing) as e:
            why = e
        if why:
            if os.path.exists(self.path("capture-ring.pcapng")):
                os.unlink(self.path("capture-ring.pcapng"))
            _say(f"warning: cannot merge the ring's {len(files)} capture files ({why}): "
                 f"the coverage and --render read only the last one, {last}")
            return
        self.merged = target

    def _render(self) -> None:
        """With ``--render``: DIR/flow.md through osflow-post's application layer (what it cannot do
        is a warning: the recording stays), from a ring's files merged (:meth:`_merge`); without: say how to render."""
        ps, flow = self.path("ps.txt"), self.path("flow.md")
        ss = self.socket_logs()
        keylog = self.path(KEYLOG) if os.path.isfile(self.path(KEYLOG)) and os.path.getsize(self.path(KEYLOG)) else None
        everything = not self.options.command  # a running system recorded: no command whose story to pick out
        if not self.options.render:
            captures, how = self.captures(), ""
            if len(captures) > 1:  # a ring's files, as one
                how = " ".join(map(shlex.quote, ["mergecap", "-a", "-w", self.path("all.pcapng"), *captures])) + " && "
                captures = [self.path("all.pcapng")]
            post_args = ["-r", *captures[:1], *(a for f in ss for a in ("--ss", f)), "--ps", ps, "-o", flow]
            post_args += ["--tls-keylog", keylog] if keylog else []
            post_args += ["--all"] if everything else []
            _say(f"files in {self.dir}/; render them with: {how}osflow-post {' '.join(map(shlex.quote, post_args))}")
            return
        from ..app import PostOptions, post

        if self.merged is None:
            _say(f"warning: no capture file to render; the recording is in {self.dir}/")
            return
        if self.ring is not None:
            names = [os.path.basename(p) for p in self.captures()]
            what = (f"the {len(names)} capture files the ring kept, {names[0]} to {names[-1]}, merged"
                    if self.merged not in self.captures() else f"{os.path.basename(self.merged)}")
            _say(f"rendering {what}, with {len(ss)} socket-log files")
        try:
            outcome = post(PostOptions(capture=self.merged, ss=tuple(ss), ps=(ps,), output=flow, show_all=everything,
                                       tls_keylog=keylog))
        except OsflowError as e:
            _say(f"warning: osflow-post failed: {e}; the recording is in {self.dir}/")
            return
        except Exception as e:  # noqa: BLE001 - a bug in rendering must not lose the recording or its status
            _say(f"warning: osflow-post failed: internal error: {type(e).__name__}: {e} "
                 f"(run osflow-post on the files with --traceback); the recording is in {self.dir}/")
            return
        for w in outcome.warnings:
            _say(f"warning: {w}")
        if outcome.partial is not None:
            _say(f"warning: {outcome.partial}")
        _secure(flow)
        _say(f"wrote {flow}")
