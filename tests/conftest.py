"""Shared fixtures for osflow's tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import mermaid_cli
from support import tshark


def pytest_collection_modifyitems(config, items):
    """The one rule for ``@pytest.mark.tshark``: skip when tshark is not installed."""
    if tshark() is not None:
        return
    skip = pytest.mark.skip(reason="tshark is not installed (apt-get install tshark)")
    for item in items:
        if item.get_closest_marker("tshark") is not None:
            item.add_marker(skip)


@pytest.fixture
def mermaid_render(tmp_path: Path) -> Callable[..., Path]:
    """Render Mermaid text with the real mermaid-cli; skip when it is missing.

    ``mermaid_render(text)`` returns the path of the SVG written, or raises
    AssertionError with mmdc's output when the diagram does not render.
    Install the renderer with ``sh tests/tools/install-mermaid.sh``.
    """
    reason = mermaid_cli.available()
    if reason:
        if os.environ.get("OSFLOW_REQUIRE_MERMAID"):  # CI installs it: a missing renderer is a failure there
            pytest.fail(f"OSFLOW_REQUIRE_MERMAID is set but {reason}")
        pytest.skip(reason)

    def render(mmd_text: str, name: str = "diagram") -> Path:
        return mermaid_cli.render(mmd_text, tmp_path, name=name)

    return render
