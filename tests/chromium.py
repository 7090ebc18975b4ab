"""Load a page in real headless Chromium (Debian's ``chromium``) and take its DOM after load.

``tests/tools/install-mermaid.sh`` installs Chromium (the mermaid build the HTML report inlines ships
with osflow).  Tests get at this through the ``report_browser`` fixture of
``tests/test_report.py``, which skips when :func:`available` gives a reason, and fails instead
when ``OSFLOW_REQUIRE_MERMAID`` is set (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import mermaid_cli

INSTALL_HINT = mermaid_cli.INSTALL_HINT
#: Seconds one page load may take (a server-create report takes about 5).
TIMEOUT = 180
#: Virtual milliseconds Chromium lets the page run before it dumps the DOM (mermaid draws in this time).
BUDGET_MS = 60_000
ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--hide-scrollbars")


def executable() -> str | None:
    """$OSFLOW_CHROMIUM, else /usr/bin/chromium, else ``chromium`` on PATH."""
    for c in (os.environ.get("OSFLOW_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if c and os.access(c, os.X_OK):
            return c
    return None


def available() -> str | None:
    """Why the report cannot be loaded in Chromium with mermaid here, or None when it can."""
    if executable() is None:
        return f"Chromium is not installed ({INSTALL_HINT})"
    from osflow import mermaidjs

    if mermaidjs.find() is None:
        return f"no mermaid build (mermaid.min.js) found ({INSTALL_HINT})"
    return None


def dump_dom(page: Path, fragment: str = "", timeout: float = TIMEOUT) -> str:
    """The DOM of ``page`` (a local file) after load and ``BUDGET_MS`` virtual ms, as HTML."""
    return _run([f"--virtual-time-budget={BUDGET_MS:d}", "--dump-dom", page.resolve().as_uri() + fragment], timeout)


def screenshot(page: Path, out: Path, fragment: str = "", size: str = "1400,1000", timeout: float = TIMEOUT) -> Path:
    _run([f"--virtual-time-budget={BUDGET_MS:d}", f"--window-size={size}", f"--screenshot={out}",
          page.resolve().as_uri() + fragment], timeout)
    return out


def _run(args: list[str], timeout: float) -> str:
    chromium = executable()
    if chromium is None:
        raise RuntimeError(f"Chromium is not installed ({INSTALL_HINT})")
    with tempfile.TemporaryDirectory(prefix="osflow-chromium-") as profile:
        cmd = [chromium, *ARGS, f"--user-data-dir={profile}", *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"chromium took more than {timeout} s: {cmd}") from None
    if proc.returncode != 0:
        raise AssertionError(f"chromium exited {proc.returncode}: {cmd}\n{proc.stderr[-4000:]}")
    return proc.stdout
