"""mermaid's browser build ships inside osflow (``osflow/data/mermaid/``): the HTML report draws on any
install, with no npm.  Its version is pinned, its licence and the licences of what it bundles are beside it,
the wheel carries all of it, and ``--mermaid-js`` / ``$OSFLOW_MERMAID_JS`` still override it."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from osflow import mermaidjs
from support import ROOT, case_dir, run_post, tables_args

SHIPPED = ("mermaid.min.js", "package.json", "LICENSE", "THIRD-PARTY-LICENSES")


def test_the_shipped_build_is_the_pinned_version_with_its_licences():
    folder = mermaidjs.PACKAGED.parent
    meta = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    assert meta["name"] == "mermaid" and meta["version"] == mermaidjs.PINNED and meta["license"] == "MIT"
    assert "MIT License" in (folder / "LICENSE").read_text(encoding="utf-8")
    build = mermaidjs.load(str(mermaidjs.PACKAGED), "test")
    assert build.version == mermaidjs.PINNED and build.major is not None and build.major >= mermaidjs.MIN_MAJOR
    licences = (folder / "THIRD-PARTY-LICENSES").read_text(encoding="utf-8")
    # what the build bundles: the diagram engines it draws with, and the sanitiser it runs text through
    for dep in ("d3-selection ", "dagre-d3-es ", "dompurify ", "khroma ", "cytoscape ", "marked ", "katex ", "stylis "):
        assert f"\n{dep}" in licences, dep
    assert "Apache License" in licences and "Mozilla Public License" in licences  # dompurify's two


def test_without_anything_installed_the_shipped_build_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv(mermaidjs.ENV, raising=False)
    build = mermaidjs.find(env={"HOME": str(tmp_path)})
    assert build is not None and build.path == str(mermaidjs.PACKAGED) and build.version == mermaidjs.PINNED


def test_mermaid_js_and_the_environment_still_override_it(tmp_path):
    other = tmp_path / "mermaid.min.js"
    other.write_text('globalThis.mermaid = {version:"11.0.1"}; // mermaid\n')
    assert mermaidjs.find(str(other), env={"HOME": str(tmp_path)}).path == str(other)
    assert mermaidjs.find(env={mermaidjs.ENV: str(other), "HOME": str(tmp_path)}).path == str(other)
    mine = tmp_path / "data" / "osflow" / "mermaid" / "mermaid.min.js"  # scripts/install-mermaid-js.sh's place
    mine.parent.mkdir(parents=True)
    mine.write_text(other.read_text())
    assert mermaidjs.find(env={"XDG_DATA_HOME": str(tmp_path / "data")}).path == str(mine)


@pytest.mark.tshark
def test_a_report_written_with_no_option_inlines_the_shipped_build(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv(mermaidjs.ENV, raising=False)
    case = "token-issue"
    out = tmp_path / "report.html"
    status, _, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case), "-o", str(out)])
    assert status == 0 and "no mermaid build found" not in err, err
    page = out.read_text(encoding="utf-8")
    assert f"/* mermaid {mermaidjs.PINNED}: MIT licence" in page and 'data-mermaid="pending"' in page
    assert mermaidjs.PACKAGED.read_text(encoding="utf-8").rstrip("\n") in page


def test_the_wheel_carries_the_build_and_its_licences(tmp_path):
    """``pip install .`` from a clone (no npm anywhere) gets the build: it is in the wheel."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = tmp_path.glob("osflow-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {f"osflow/data/mermaid/{n}" for n in SHIPPED} <= names
        assert {"osflow/data/report/report.js", "osflow/data/report/report.css"} <= names
        assert z.read("osflow/data/mermaid/mermaid.min.js") == mermaidjs.PACKAGED.read_bytes()
    assert wheel.stat().st_size < 2_000_000  # README gives its size (compressed: about 1.2 MB)
