"""Where Wireshark's tools are: tshark (``osflow-post -r``, record's coverage), dumpcap
(``osflow record``) and mergecap (a ring recording's files as one), found the same way by :func:`find_tool`."""

from __future__ import annotations

import os

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
    must then be an executable file; else PATH, then :data:`FOLDERS`, then pyshark's discovery
    (its ``config.ini``, Windows' Program Files, macOS' Wireshark.app).
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
    for folder in FOLDERS:
        path = os.path.join(folder, name)
        if _executable(path):
            return path
    try:  # pyshark knows the usual Windows and macOS places
        from pyshark.tshark.tshark import get_process_path

        path = get_process_path(process_name=name)
    except Exception:  # noqa: BLE001 - not installed, or it found nothing: TSharkNotFoundException
        path = None
    if path and _executable(path):
        return path
    raise ToolMissing(f"{name} not found: install it {how}")


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)
