"""Render Mermaid with the real renderer: mermaid-cli (mmdc) driving Chromium.

Install both with ``sh tests/tools/install-mermaid.sh``.  Tests get at this
through the ``mermaid_render`` fixture (``tests/conftest.py``), which skips
when :func:`available` gives a reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent / "tools"
MMDC = TOOLS / "mermaid" / "node_modules" / ".bin" / "mmdc"
PUPPETEER_CONFIG = TOOLS / "puppeteer.json"
INSTALL_HINT = "run: sh tests/tools/install-mermaid.sh"

#: Seconds one mmdc run may take (it usually takes 2-3).
TIMEOUT = 120

#: What mermaid writes into its output instead of the diagram, in some
#: versions and cases, while mmdc still exits 0.
ERROR_MARKERS = (
    "Syntax error in text",
    'aria-roledescription="error"',
    "Maximum text size in diagram exceeded",
)


def _chromium() -> str | None:
    try:
        config = json.loads(PUPPETEER_CONFIG.read_text())
    except (OSError, ValueError):
        return None
    return config.get("executablePath")


def available() -> str | None:
    """Why Mermaid cannot be rendered here, or None when it can."""
    if shutil.which("node") is None:
        return f"node is not installed ({INSTALL_HINT})"
    if not os.access(MMDC, os.X_OK):
        return f"mermaid-cli is not installed: no {MMDC} ({INSTALL_HINT})"
    if not PUPPETEER_CONFIG.is_file():
        return f"no {PUPPETEER_CONFIG} ({INSTALL_HINT})"
    chromium = _chromium()
    if not chromium:
        return f"{PUPPETEER_CONFIG} names no executablePath ({INSTALL_HINT})"
    if not os.access(chromium, os.X_OK):
        return f"Chromium is not installed: no {chromium} ({INSTALL_HINT})"
    return None


def svg_error(svg: str) -> str | None:
    """The error marker found in mermaid's output `svg`, or None.

    >>> svg_error('<svg aria-roledescription="sequence"><text>ok</text></svg>')
    >>> svg_error('<svg aria-roledescription="error"><text>Syntax error in text</text></svg>')
    'Syntax error in text'
    """
    for marker in ERROR_MARKERS:
        if marker in svg:
            return marker
    return None


def version() -> str:
    """mmdc's version, e.g. ``11.17.0``."""
    out = subprocess.run(
        [str(MMDC), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.strip()


def render(mmd_text: str, tmp_path: Path, name: str = "diagram", timeout: float = TIMEOUT) -> Path:
    """Render `mmd_text` to ``tmp_path/<name>.svg`` with mmdc; return that path.

    Raises AssertionError, with mmdc's output, when mmdc fails, times out,
    writes nothing, or writes mermaid's error diagram instead of the diagram.
    """
    reason = available()
    if reason:
        raise RuntimeError(reason)
    src = Path(tmp_path) / f"{name}.mmd"
    out = Path(tmp_path) / f"{name}.svg"
    src.write_text(mmd_text, encoding="utf-8")
    if out.exists():
        out.unlink()
    cmd = [str(MMDC), "-p", str(PUPPETEER_CONFIG), "-i", str(src), "-o", str(out), "-q"]
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, cwd=tmp_path, capture_output=True, text=True, errors="replace", timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"mmdc took more than {timeout} s on {src}\n{_streams(exc.stdout, exc.stderr)}"
        ) from None
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise AssertionError(
            f"mmdc exited {proc.returncode} on {src} after {elapsed:.1f} s\n"
            f"{_streams(proc.stdout, proc.stderr)}"
        )
    if not out.is_file() or out.stat().st_size == 0:
        raise AssertionError(f"mmdc wrote no {out}\n{_streams(proc.stdout, proc.stderr)}")
    marker = svg_error(out.read_text(encoding="utf-8", errors="replace"))
    if marker:
        raise AssertionError(
            f"mermaid drew an error diagram ({marker!r}) for {src}\n"
            f"{_streams(proc.stdout, proc.stderr)}"
        )
    return out


def _streams(stdout: str | bytes | None, stderr: str | bytes | None) -> str:
    def text(s: str | bytes | None) -> str:
        if isinstance(s, bytes):
            s = s.decode("utf-8", "replace")
        return (s or "").strip()[-4000:]

    return f"--- stderr ---\n{text(stderr)}\n--- stdout ---\n{text(stdout)}"
