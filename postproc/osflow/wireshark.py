"""Where Wireshark's tools are: tshark (``osflow-post -r``, record's coverage), dumpcap
(``osflow record``) and mergecap (a ring recording's files as one), found the same way by :func:`find_tool`."""

from __future__ import annotations

import os
import sys

from .errors import ToolMissing

#: where a tool not on PATH usually is (a sudo or cron PATH may lack the sbin folders)
FOLDERS = ("/usr/bin", "/usr/sbin", "/usr/local/bin")

#: how to install each tool
INSTALL = {
    "tshark": "Debian/Ubuntu: sudo apt-get install tshark",
    "dumpcap": "Debian/Ubuntu: sudo apt-get install tshark, which brings wireshark-common",
    "mergecap": "Debian/Ubuntu: sudo apt-get install tshark, which brings wireshark-common",
}


def find_tool(name: str, env_var: str) -> str:
    """The path of Wireshark's ``name`` (``tshark``, ``dumpcap``); :class:`ToolMissing` when there is none.

    ``$env_var`` (``TSHARK``, ``DUMPCAP``: a path, or a name looked up on PATH) when set, which
    must then be an executable file; else PATH, then :data:`FOLDERS`, then where Wireshark's
    installers put it on Windows and macOS (:func:`installer_places`).
    """
    import shutil  # here, not at the top: reading PDML on stdin needs no tool

    how = f"({INSTALL[name]}) or set {env_var}=/path/to/{name}"
    env = os.environ.get(env_var)
    if env:
        found = shutil.which(env)
        if found is None:
            raise ToolMissing(f"{env_var}={env} is not an executable file: install {name} {how}")
        return found
    found = shutil.which(name)
    if found:
        return found
    for path in [os.path.join(folder, name) for folder in FOLDERS] + installer_places(name):
        if _executable(path):
            return path
    raise ToolMissing(f"{name} not found: install it {how}")


def installer_places(name: str, platform: str = sys.platform) -> list[str]:
    """Where Wireshark's installers put ``name``: Program Files on Windows, Wireshark.app on macOS.

    >>> installer_places("tshark", "darwin")
    ['/Applications/Wireshark.app/Contents/MacOS/tshark']
    >>> installer_places("tshark", "linux")
    []
    """
    if platform.startswith("win"):
        folders = (os.environ.get(env) for env in ("ProgramFiles", "ProgramFiles(x86)"))
        return [os.path.join(folder, "Wireshark", f"{name}.exe") for folder in folders if folder]
    if platform == "darwin":
        return [f"/Applications/Wireshark.app/Contents/MacOS/{name}"]
    return []


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)
