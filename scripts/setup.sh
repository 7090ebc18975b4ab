#!/usr/bin/env bash
# Installs what osflow needs, when it is missing: tshark (apt), a virtualenv in .venv with
# osflow and its test dependencies (pip).  Sourced by demo.sh and test.sh; safe to re-run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${OSFLOW_VENV:-$ROOT/.venv}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  command -v apt-get >/dev/null || { echo "setup: please install: $*" >&2; exit 1; }
  if [ -z "${OSFLOW_APT_UPDATED:-}" ]; then as_root apt-get update -qq; export OSFLOW_APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

command -v tshark >/dev/null || { echo "setup: installing tshark" >&2; apt_install tshark; }
command -v python3 >/dev/null || apt_install python3
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt_install python3-venv python3-pip
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  python3 -m venv "$VENV"
fi
stamp="$VENV/.osflow-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/setup.cfg" -nt "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "setup: installing osflow and its test dependencies into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
