"""Where the HTML report finds mermaid's browser build (``mermaid.min.js``), inlined when it is written.

osflow ships a copy: ``osflow/data/mermaid/`` holds ``dist/mermaid.min.js`` of the npm package
``mermaid`` (:data:`PINNED`, MIT licence), its ``package.json`` and ``LICENSE``, and
``THIRD-PARTY-LICENSES`` (the licences of the packages it bundles).  The first of these that exists
is inlined:

1. ``--mermaid-js PATH`` (an error when PATH is not a readable mermaid build);
2. ``$OSFLOW_MERMAID_JS`` (likewise);
3. ``$XDG_DATA_HOME/osflow/mermaid/mermaid.min.js`` (``~/.local/share/osflow/mermaid/``), where
   ``scripts/install-mermaid-js.sh`` puts another version, then
   ``/usr/local/share/osflow/mermaid/mermaid.min.js`` (the same script run with that folder, for
   every user);
4. the copy shipped in the package (:data:`PACKAGED`).

With none (a package whose data was removed), the report is still written: waterfall, tables and
the Mermaid source, with one line saying how to get the drawing (:data:`INSTALL_HINT`);
``osflow-post`` warns on stderr.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

#: The environment variable naming a mermaid build.
ENV = "OSFLOW_MERMAID_JS"
#: The oldest mermaid whose browser API (``mermaid.run``) the report uses.
MIN_MAJOR = 10
#: One line on how to get the drawing.
INSTALL_HINT = (
    "get mermaid's browser build with scripts/install-mermaid-js.sh (npm pack mermaid), "
    "or pass --mermaid-js PATH/mermaid.min.js (or set $OSFLOW_MERMAID_JS), then write the report again"
)
#: The version of the copy shipped in the package (``scripts/install-mermaid-js.sh`` updates it).
PINNED = "11.17.2"
#: The copy shipped in the package, with its ``package.json``, ``LICENSE`` and ``THIRD-PARTY-LICENSES``.
PACKAGED = Path(__file__).resolve().parent / "data" / "mermaid" / "mermaid.min.js"
_VERSION_IN_SOURCE = re.compile(r'\{version:"(\d+\.\d+\.\d+[^"]{0,20})"\}')


@dataclass(frozen=True)
class MermaidBuild:
    """A mermaid browser build read from disk: where, which version, and its text."""

    path: str
    version: str | None
    source: str = field(repr=False)

    @property
    def major(self) -> int | None:
        return int(self.version.split(".")[0]) if self.version else None


def candidates(env: Mapping[str, str] = os.environ) -> list[Path]:
    """The well-known places, in the order they are tried (steps 3 and 4 above).

    >>> [str(p) for p in candidates({"XDG_DATA_HOME": "/x", "HOME": "/h"})][:2]
    ['/x/osflow/mermaid/mermaid.min.js', '/usr/local/share/osflow/mermaid/mermaid.min.js']
    >>> str(candidates({"HOME": "/h"})[0])
    '/h/.local/share/osflow/mermaid/mermaid.min.js'
    """
    data_home = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return [Path(data_home) / "osflow" / "mermaid" / "mermaid.min.js",
            Path("/usr/local/share/osflow/mermaid/mermaid.min.js"), PACKAGED]


def find(explicit: str | None = None, env: Mapping[str, str] = os.environ) -> MermaidBuild | None:
    """The mermaid build to inline, or None when there is none (see the module's docstring).

    A path given on purpose (``explicit``, ``$OSFLOW_MERMAID_JS``) that is not a readable mermaid
    build is an :class:`~osflow.errors.InputError`; a well-known place that is not is skipped.
    """
    if explicit:
        return load(explicit, "--mermaid-js")
    if env.get(ENV):
        return load(env[ENV], f"${ENV}")
    for path in candidates(env):
        if path.is_file():
            try:
                return load(str(path), str(path))
            except InputError:
                continue
    return None


def load(path: str, what: str) -> MermaidBuild:
    """Read the mermaid build at ``path`` (``what`` names where the path came from, for errors)."""
    if path.endswith(".mjs"):
        raise InputError(f"{what}: {path} is mermaid's ES module build: give its browser build, dist/mermaid.min.js")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{what}: cannot read {path}: {e.strerror} ({INSTALL_HINT})") from None
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what}: {path} is not a mermaid build (not UTF-8 text)") from None
    if "mermaid" not in source[-2000:]:  # the browser build ends by setting globalThis.mermaid
        raise InputError(f"{what}: {path} is not mermaid's browser build (dist/mermaid.min.js of the npm package)")
    build = MermaidBuild(path, version(Path(path), source), source)
    if build.major is not None and build.major < MIN_MAJOR:
        raise InputError(f"{what}: {path} is mermaid {build.version}; the report needs mermaid {MIN_MAJOR} or later")
    return build


def version(path: Path, source: str) -> str | None:
    """The build's version: from the npm package's ``package.json`` beside it or one folder up,
    else from the ``{version:"…"}`` the build carries.

    >>> version(Path("/nonexistent/mermaid.min.js"), 'x={version:"11.17.2"},y')
    '11.17.2'
    >>> version(Path("/nonexistent/mermaid.min.js"), "x") is None
    True
    """
    for pkg in (path.parent / "package.json", path.parent.parent / "package.json"):
        try:
            meta = json.loads(pkg.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("name") == "mermaid" and isinstance(meta.get("version"), str):
            return meta["version"]
    m = _VERSION_IN_SOURCE.search(source)
    return m.group(1) if m else None
