"""A bounded, seeded fuzz test: mutated captures, PDML and tables through every format.

It fails on a traceback or an internal error, an exit status osflow does not document for bad input,
a message that is not one line of osflow's, a hang (a minute per run), or a secret in the output (a
Fernet token of the capture, a password put into the tables).  The mutations are seeded: a failure
names its case, and the same case comes back on the next run.  About a minute on two cores.
"""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import signal
import subprocess

import pytest

from osflow.errors import ExitStatus
from support import case_dir, pdml_bytes, run_post

SEED = 21
FORMATS = ("timeline", "md", "mermaid", "json", "otlp", "html", "stats")
#: what a hostile process table carries, and what no output may show (nor its prefix)
TABLE_SECRET = "FuzzS3cretPw"
TOKEN = re.compile(r"gAAAA[A-Za-z0-9_=-]{30,}")
CAPTURES = ("token-issue", "resource-class-list-cache-hit", "captures-compute/lab-compressed")
#: a run that takes longer hangs
TIMEOUT = 60


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: int):
    def alarm(signum, frame):
        raise Hang(f"no answer after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check(case: str, argv: list[str], stdin: bytes | None = None) -> int:
    """Run osflow-post on one mutated input; fail on anything but a clean result or a clean refusal."""
    with deadline(TIMEOUT):
        try:
            status, out, err = run_post(argv, stdin=stdin)
        except Hang:
            pytest.fail(f"{case}: hangs ({' '.join(argv)})")
    assert status in (ExitStatus.OK, ExitStatus.INPUT, ExitStatus.PARTIAL), (case, status, err[-2000:])
    assert "Traceback" not in err and "internal error" not in err, (case, err[-2000:])
    stray = [line for line in err.splitlines() if line and not line.startswith("osflow-post: ")]
    assert not stray, (case, stray[:3])
    assert TABLE_SECRET[:6] not in out + err, (case, [x for x in (out + err).splitlines() if "FuzzS3" in x][:2])
    assert not TOKEN.search(out + err), (case, TOKEN.search(out + err))
    return status


def _mutate_bytes(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One mutation of a byte string, and its name."""
    n = len(data)
    kind = rng.choice(("flip", "cut", "delete", "duplicate", "insert"))
    at = rng.randrange(n)
    if kind == "flip":
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(n)
            b[i] = rng.randrange(256)
        return f"flip@{at}", bytes(b)
    if kind == "cut":
        return f"cut@{at}", data[:at]
    size = rng.randint(1, 4096)
    if kind == "delete":
        return f"delete@{at}+{size}", data[:at] + data[at + size:]
    if kind == "duplicate":
        return f"duplicate@{at}+{size}", data[:at + size] + data[at:at + size] + data[at + size:]
    junk = rng.choice((b"<", b"&", b"\xff\xfe", b"]]>", b"<!--", b'"', b"\x00", b"<packet>", b"</proto>"))
    return f"insert@{at}", data[:at] + junk + data[at:]


@pytest.mark.tshark
def test_fuzz_mutated_captures(tmp_path):
    editcap = shutil.which("editcap")
    rng = random.Random(SEED)
    runs = 0
    for case in CAPTURES:
        d = case_dir(case)
        real = (d / "capture.pcapng").read_bytes()
        tables = ["--ss", str(d / "ss.txt"), "--ps", str(d / "ps.txt")]
        for k in range(6):
            path = tmp_path / f"{case.replace('/', '_')}-{k}.pcapng"
            if k < 3 and editcap:  # editcap's own error injection: damaged bytes inside frames
                rate = rng.choice(("0.002", "0.01", "0.05"))
                seed = str(rng.randrange(1000))
                subprocess.run([editcap, "-E", rate, "--seed", seed, str(d / "capture.pcapng"), str(path)],
                               check=True, capture_output=True)
                name = f"{case} editcap -E {rate} --seed {seed}"
            else:  # the file itself damaged: cut, bytes flipped, a block repeated or gone
                what, data = _mutate_bytes(rng, real)
                path.write_bytes(data)
                name = f"{case} {what}"
            fmt = FORMATS[runs % len(FORMATS)]
            explain = ["--explain"] if fmt in ("timeline", "md") and rng.random() < 0.5 else []
            check(name, ["-r", str(path), *tables, "--format", fmt, *explain])
            runs += 1
    assert runs == 18


@pytest.mark.tshark
def test_fuzz_mutated_pdml():
    rng = random.Random(SEED + 1)
    real = pdml_bytes("resource-class-list-cache-hit")
    statuses = set()
    for k in range(21):
        data = real
        names = []
        for _ in range(rng.randint(1, 3)):
            what, data = _mutate_bytes(rng, data)
            names.append(what)
        statuses.add(check("pdml " + " ".join(names), ["--format", FORMATS[k % len(FORMATS)]], stdin=data))
    assert ExitStatus.PARTIAL in statuses or ExitStatus.INPUT in statuses  # the mutations did break something


def _mutate_table(rng: random.Random, text: str) -> tuple[str, str]:
    lines = text.splitlines()
    kind = rng.choice(("secrets", "shuffle", "garbage", "cut", "flip", "columns"))
    if kind == "secrets":  # what a process started with its secrets on the command line shows
        for _ in range(rng.randint(1, 20)):
            i = rng.randrange(len(lines))
            secret = rng.choice((f"--os-password {TABLE_SECRET}", f"--password={TABLE_SECRET}",
                                 f"rabbit://nova:{TABLE_SECRET}@ctl:5672/",
                                 f"mysql+pymysql://nova:{TABLE_SECRET}@127.0.0.1/nova",
                                 f"--os-token gAAAAAB{TABLE_SECRET}{'x' * 40}"))
            words = lines[i].split(" ")
            j = rng.randrange(len(words) + 1)
            lines[i] = " ".join(words[:j] + [secret] + words[j:])
    elif kind == "shuffle":
        rng.shuffle(lines)
    elif kind == "garbage":
        lines += [f"garbage {n} --password={TABLE_SECRET}" for n in range(rng.randint(1, 3000))]
    elif kind == "cut":
        lines = lines[: rng.randrange(len(lines) + 1)]
        if lines:
            lines[-1] = lines[-1][: rng.randrange(len(lines[-1]) + 1)]
    elif kind == "flip":
        t = list("\n".join(lines))
        for _ in range(rng.randint(1, 50)):
            t[rng.randrange(len(t))] = rng.choice(("\t", " ", ":", "[", "]", "\x00", "é", "9", "-", "("))
        lines = "".join(t).split("\n")
    else:  # columns dropped or doubled
        lines = [" ".join(x for x in line.split() if rng.random() > 0.2) for line in lines]
    return kind, "\n".join(lines) + "\n"


@pytest.mark.tshark
def test_fuzz_hostile_tables(tmp_path):
    rng = random.Random(SEED + 2)
    case = "resource-class-list-cache-hit"
    d = case_dir(case)
    ss, ps = (d / "ss.txt").read_text(), (d / "ps.txt").read_text()
    for k in range(21):
        which = rng.choice(("ss", "ps", "both"))
        kinds = []
        ss_text, ps_text = ss, ps
        if which in ("ss", "both"):
            kind, ss_text = _mutate_table(rng, ss)
            kinds.append(f"ss:{kind}")
        if which in ("ps", "both"):
            kind, ps_text = _mutate_table(rng, ps)
            kinds.append(f"ps:{kind}")
        (tmp_path / "ss.txt").write_text(ss_text)
        (tmp_path / "ps.txt").write_text(ps_text)
        fmt = FORMATS[k % len(FORMATS)]
        explain = ["--explain"] if fmt == "timeline" else []
        check(f"tables {' '.join(kinds)}", ["-r", str(d / "capture.pcapng"), "--ss", str(tmp_path / "ss.txt"),
                                            "--ps", str(tmp_path / "ps.txt"), "--format", fmt, *explain])
