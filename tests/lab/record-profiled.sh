#!/usr/bin/env bash
# Record an OpenStack command with osflow record while OSProfiler traces it (the lab's
# OSFLOW_LAB_PROFILER variant), and keep OSProfiler's trace beside the capture: DIR/osprofiler.json,
# what `osprofiler trace show --json` prints (a JSON list of traces when there are several).
#
#   tests/lab/record-profiled.sh [-n N] DIR -- openstack ARGS...
#
# -n N runs N copies of the command at once (N users), the last argument of copy i suffixed -i (a
# server's name); each copy is its own trace.  The command runs with `--os-profile` (the lab's HMAC
# key) inserted after `openstack`; its trace ids come from its standard error ("Trace ID: …").  One
# copy is recorded as itself (meta.json names it); N copies through a script that starts them, which
# meta.json names instead (without socket tables osflow-post then does not know the command's ends).
# Needs root (osflow record), the lab up with OSFLOW_LAB_PROFILER=1 and its openrc sourced.
set -euo pipefail

LAB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$LAB/lib.sh"
REPO=$(cd "$LAB/../.." && pwd)
STORE=${OSFLOW_PROFILER_STORE:-redis://127.0.0.1:6379}

n=1
if [ "${1:-}" = -n ]; then n=$2; shift 2; fi
[ $# -ge 3 ] && [ "$2" = -- ] || { echo "usage: $0 [-n N] DIR -- openstack ARGS..." >&2; exit 2; }
out=$1; shift 2
[ "$(basename "$1")" = openstack ] || { echo "record-profiled: expected an openstack command, found '$1'" >&2; exit 2; }
[ ! -e "$out" ] || { echo "record-profiled: $out exists" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the command osflow record runs: N copies, each with --os-profile, their standard error kept
cat > "$work/run.sh" <<'EOF'
#!/usr/bin/env bash
work=$1 n=$2 key=$3; shift 3
cmd=$1; shift
last=${*: -1}
args=("${@:1:$#-1}")
status=0
for i in $(seq 1 "$n"); do
  name=$last
  [ "$n" = 1 ] || name=$last-$i
  "$cmd" --os-profile "$key" "${args[@]}" "$name" >"$work/out.$i" 2>"$work/err.$i" &
done
for _ in $(seq 1 "$n"); do wait -n || status=1; done
cat "$work"/out.* 2>/dev/null
cat "$work"/err.* >&2 2>/dev/null
exit $status
EOF
chmod 755 "$work/run.sh"

python_bin=${OSFLOW_PYTHON:-$REPO/.venv/bin/python}
[ -x "$python_bin" ] || python_bin=python3
status=0
if [ "$n" = 1 ]; then
  # the command itself, so that meta.json names it (osflow-post finds the command's ends by it
  # when there are no socket tables); its standard error copied for the trace id
  cmd=$1; shift
  "$python_bin" -m osflow record --linger 3 -o "$out" -- "$cmd" --os-profile "$PROFILER_KEY" "$@" \
    2> >(tee "$work/err.1" >&2) || status=$?
  sleep 0.5  # tee's last lines
else
  "$python_bin" -m osflow record --linger 3 -o "$out" -- bash "$work/run.sh" "$work" "$n" "$PROFILER_KEY" "$@" \
    || status=$?
fi

ids=$(cat "$work"/err.* 2>/dev/null | sed -n 's/.*Trace ID: \([0-9a-f-]*\).*/\1/p')
[ -n "$ids" ] || { echo "record-profiled: no trace id in the command's output (is OSProfiler on?)" >&2; exit 1; }
sleep 2  # the last spans of a cast's work reach the store after the command ends
{
  echo "["
  first=1
  for id in $ids; do
    [ $first = 1 ] || echo ","
    first=0
    osprofiler trace show --json --connection-string "$STORE" "$id" \
      || { echo "record-profiled: no trace $id in $STORE (is the lab up with OSFLOW_LAB_PROFILER=1?)" >&2; exit 1; }
  done
  echo "]"
} > "$work/traces.json"
python3 - "$work/traces.json" "$out/osprofiler.json" <<'EOF'
import json, sys
traces = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    json.dump(traces[0] if len(traces) == 1 else traces, f, indent=1)
    f.write("\n")
EOF
chmod 600 "$out/osprofiler.json"
echo "record-profiled: $out: $(wc -w <<< "$ids") trace(s): $(tr '\n' ' ' <<< "$ids")" >&2
exit $status
