#!/bin/sh
# Screenshot of real Wireshark with the OpenStack profile and the osflow plugin.
#
#   sh tools/screenshot-wireshark.sh [capture] [output.png]
#
# Needs Debian's wireshark, xvfb and imagemagick packages:
#   apt-get install wireshark xvfb xauth imagemagick
# Runs Wireshark under Xvfb with a throw-away HOME, so your own Wireshark
# configuration is neither used nor changed.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
capture=${1:-$here/tests/fixtures/captures/resource-class-list-cold/capture.pcapng}
out=${2:-$here/docs/wireshark-openstack.png}
frame=${OSFLOW_SCREENSHOT_FRAME:-320}
size=${OSFLOW_SCREENSHOT_SIZE:-1680x1050}

for tool in wireshark xvfb-run import; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool not found: apt-get install wireshark xvfb xauth imagemagick" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
mkdir -p "$HOME"

# Install exactly as an analyst would (folders come from tshark -G folders).
PYTHONPATH="$here/postproc${PYTHONPATH:+:$PYTHONPATH}" python3 -m osflow.profile install >/dev/null

# Window size and column widths: Wireshark's own "recent" files (throw-away HOME).
width=${size%x*}
height=${size#*x}
cat > "$XDG_CONFIG_HOME/wireshark/recent_common" <<RECENT
gui.geometry_main_x: 0
gui.geometry_main_y: 0
gui.geometry_main_width: $width
gui.geometry_main_height: $height
gui.geometry_main_maximized: FALSE
gui.geometry_main_upper_pane: $((height * 62 / 100))
RECENT
cat > "$XDG_CONFIG_HOME/wireshark/profiles/OpenStack/recent" <<RECENT
# Packet list column pixel widths.
# Each pair of strings consists of a column format and its pixel width.
column.width: "%m", "50", "%t", "95", "%Cus:osflow.service:0:R", "85", "%Cus:osflow.flow:0:R", "230", "%p", "80", "%L", "55", "%Cus:osflow.op:0:R", "560", "%i", "600"
RECENT

cat > "$work/shot.sh" <<SHOT
#!/bin/sh
wireshark -C OpenStack -r "$capture" -g "$frame" >"$work/wireshark.log" 2>&1 &
pid=\$!
sleep \${OSFLOW_SCREENSHOT_WAIT:-12}
import -window root "$out"
kill \$pid
wait \$pid 2>/dev/null || true
SHOT
xvfb-run -a -s "-screen 0 ${size}x24" sh "$work/shot.sh"
echo "wrote $out"
