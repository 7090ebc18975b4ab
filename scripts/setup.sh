# Installs what osflow needs, when it is missing: tshark (apt), a virtualenv in .venv with
# osflow and its test and dev dependencies (pip: the `test` and `dev` extras, the latter the pinned
# linters `make lint` runs), then puts .venv/bin first on PATH.
#
# Meant to be sourced — by demo.sh and test.sh, or by you: `source scripts/setup.sh`.  Safe
# to source into an interactive shell: it sets no shell options, never exits your shell
# (a failure returns 1 with one line on stderr) and leaves only PATH and OSFLOW_APT_UPDATED
# behind.  Safe to re-run: it installs only what is missing or out of date.

_osflow_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_osflow_venv=${OSFLOW_VENV:-$_osflow_root/.venv}

_osflow_as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

_osflow_apt() {
  command -v apt-get >/dev/null || { echo "setup: please install: $*" >&2; return 1; }
  if [ -z "${OSFLOW_APT_UPDATED:-}" ]; then
    _osflow_as_root apt-get update -qq || return 1
    export OSFLOW_APT_UPDATED=1
  fi
  _osflow_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

_osflow_setup() {
  if ! command -v tshark >/dev/null; then
    echo "setup: installing tshark" >&2
    _osflow_apt tshark || return 1
  fi
  command -v python3 >/dev/null || _osflow_apt python3 || return 1
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    _osflow_apt python3-venv python3-pip || return 1
  fi
  if [ ! -x "$_osflow_venv/bin/python" ]; then
    echo "setup: creating $_osflow_venv" >&2
    python3 -m venv "$_osflow_venv" || return 1
  fi
  local stamp="$_osflow_venv/.osflow-installed"
  if [ ! -f "$stamp" ] || [ "$_osflow_root/setup.cfg" -nt "$stamp" ] \
     || [ "$_osflow_root/pyproject.toml" -nt "$stamp" ]; then
    echo "setup: installing osflow and its test and dev dependencies into $_osflow_venv" >&2
    "$_osflow_venv/bin/python" -m pip install -q --upgrade pip >/dev/null || return 1
    "$_osflow_venv/bin/python" -m pip install -q -e "$_osflow_root[test,dev]" || return 1
    touch "$stamp"
  fi
  case ":$PATH:" in
    *":$_osflow_venv/bin:"*) ;;
    *) export PATH="$_osflow_venv/bin:$PATH" ;;
  esac
}

_osflow_setup
_osflow_status=$?
unset -f _osflow_as_root _osflow_apt _osflow_setup
unset _osflow_root _osflow_venv
if [ "$_osflow_status" != 0 ]; then
  echo "setup: failed (see above)" >&2
fi
# the status of the last command is what `source` returns
[ "$_osflow_status" = 0 ] && unset _osflow_status
