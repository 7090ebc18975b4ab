#!/bin/sh
# Screenshots of real Wireshark with the OpenStack profile and the osflow plugin.
#
#   sh tools/screenshot-wireshark.sh [capture] [output.png]
#       main window: the osflow messages of the capture (display filter below),
#       one frame selected with its "OpenStack flow" tree expanded
#       (default output docs/wireshark-openstack.png)
#   sh tools/screenshot-wireshark.sh --flow [capture] [output.png]
#       the window of Tools -> OpenStack (the flow, one line per message)
#       (default output docs/wireshark-openstack-flow.png)
#
# Needs Debian's wireshark, xvfb, xauth, xdotool and imagemagick packages:
#   apt-get install wireshark xvfb xauth xdotool imagemagick
# Runs Wireshark under Xvfb with a throw-away HOME, so your own Wireshark
# configuration is neither used nor changed.  The column widths are the ones
# the profile ships (profiles/OpenStack/recent), as a fresh install shows them.
#
# Environment: OSFLOW_SCREENSHOT_FRAME (frame to select, default 552: placement
# asks keystone to validate a token), OSFLOW_SCREENSHOT_FILTER (display filter;
# empty for none), OSFLOW_SCREENSHOT_SIZE (default 1680x1050),
# OSFLOW_SCREENSHOT_WAIT (seconds to wait for Wireshark's window, default 60),
# OSFLOW_SCREENSHOT_LOAD (seconds to let it read the capture, default 6),
# OSFLOW_SCREENSHOT_FLOW_SCROLL (lines to scroll the flow window, default 194:
# frame 241 on top; 0 for the top), OSFLOW_SCREENSHOT_TRACE=1 (trace the X steps).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
mode=main
if [ "${1:-}" = "--flow" ]; then
    mode=flow
    shift
fi
capture=${1:-$here/tests/fixtures/captures/resource-class-list-cold/capture.pcapng}
if [ $mode = flow ]; then
    out=${2:-$here/docs/wireshark-openstack-flow.png}
else
    out=${2:-$here/docs/wireshark-openstack.png}
fi
case $capture in /*) ;; *) capture=$(pwd)/$capture ;; esac
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
frame=${OSFLOW_SCREENSHOT_FRAME:-552}
default_filter='osflow.op && !(osflow.service == "mysql")'   # the messages, without the SQL
filter=${OSFLOW_SCREENSHOT_FILTER-$default_filter}
size=${OSFLOW_SCREENSHOT_SIZE:-1680x1050}
wait_max=${OSFLOW_SCREENSHOT_WAIT:-60}
scroll=${OSFLOW_SCREENSHOT_FLOW_SCROLL:-194}

for tool in wireshark xvfb-run xauth xdotool import; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "$tool not found: apt-get install wireshark xvfb xauth xdotool imagemagick" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
mkdir -p "$HOME"

# Install exactly as an analyst would (folders come from tshark -G folders).
PYTHONPATH="$here/postproc${PYTHONPATH:+:$PYTHONPATH}" python3 -m osflow.profile install >/dev/null

# Main window size (recent_common) and the height of the packet list (the
# profile's recent, added to the column widths the profile ships).
width=${size%x*}
height=${size#*x}
upper=$((height * 36 / 100))
cat > "$XDG_CONFIG_HOME/wireshark/recent_common" <<RECENT
gui.geometry_main_x: 0
gui.geometry_main_y: 0
gui.geometry_main_width: $width
gui.geometry_main_height: $height
gui.geometry_main_maximized: FALSE
RECENT
printf '\ngui.geometry_main_upper_pane: %d\n' "$upper" >> "$XDG_CONFIG_HOME/wireshark/profiles/OpenStack/recent"

cat > "$work/shot.sh" <<'SHOT'
#!/bin/sh
# $1 mode, $2 capture, $3 output, $4 frame, $5 filter, $6 width, $7 height, $8 wait, $9 log,
# $10 upper pane, $11 flow window scroll
set -u
mode=$1 capture=$2 out=$3 frame=$4 filter=$5 width=$6 height=$7 wait_max=$8 log=$9 upper=${10} scroll=${11}
if [ -n "$filter" ]; then
    wireshark -C OpenStack -r "$capture" -Y "$filter" -g "$frame" >"$log" 2>&1 &
else
    wireshark -C OpenStack -r "$capture" -g "$frame" >"$log" 2>&1 &
fi
pid=$!
# window id of the first window whose name matches $1, waiting for it
window() {
    i=0
    while [ $i -lt $((wait_max * 2)) ]; do
        w=$(xdotool search --onlyvisible --name "$1" 2>/dev/null | head -1)
        [ -n "$w" ] && { echo "$w"; return 0; }
        kill -0 $pid 2>/dev/null || return 1
        sleep 0.5; i=$((i + 1))
    done
    return 1
}
status=0
main=$(window "$(basename "$capture")") || { echo "Wireshark's main window did not appear" >&2; status=1; }
if [ $status = 0 ]; then
    sleep "${OSFLOW_SCREENSHOT_LOAD:-6}"       # reading, dissection, colouring, -g
    xdotool windowfocus --sync "$main"; sleep 0.5
    if [ $mode = main ]; then
        # Expand the selected frame's "OpenStack flow" tree: focus the packet
        # details (a click in its empty lower part; menus and toolbars take
        # about 100 pixels above the packet list), End = the last top-level
        # item (the post-dissector's; the first End only makes the first item
        # current), Shift+Right = expand it with its subtrees.
        xdotool mousemove 200 $((upper + 100 + 250)) click 1; sleep 0.5
        xdotool key End; sleep 0.3
        xdotool key End; sleep 0.3
        xdotool key shift+Right; sleep 0.3
        xdotool mousemove $((width - 5)) $((height - 5)); sleep 1
        import -window root "$out" || status=1
    else
        # Tools -> OpenStack: the plugin's entry is the menu's last item.
        xdotool key alt+t; sleep 1
        xdotool key Up; sleep 0.3
        xdotool key Return
        flow=$(window "OpenStack flow") || { echo "Tools -> OpenStack opened no window" >&2; status=1; }
        if [ $status = 0 ]; then
            xdotool windowmove "$flow" 40 20 windowsize "$flow" $((width * 84 / 100)) $((height * 93 / 100))
            sleep 1
            # Scroll to the story: placement gets the user's token, misses the
            # token cache, gets a token of its own and has keystone validate
            # the user's token (one Down = one line).
            if [ "$scroll" -gt 0 ]; then
                xdotool mousemove --window "$flow" 300 300 click 1; sleep 0.3
                xdotool key --delay 5 --repeat "$scroll" Down
                xdotool mousemove $((width - 5)) $((height - 5))
            fi
            sleep 1
            import -window "$flow" "$out" || status=1
        fi
    fi
fi
kill $pid 2>/dev/null
wait $pid 2>/dev/null
exit $status
SHOT
if ! xvfb-run -a -s "-screen 0 ${size}x24" sh ${OSFLOW_SCREENSHOT_TRACE:+-x} "$work/shot.sh" "$mode" "$capture" "$out" "$frame" "$filter" \
        "$width" "$height" "$wait_max" "$work/wireshark.log" "$upper" "$scroll"; then
    echo "screenshot failed; Wireshark said:" >&2
    cat "$work/wireshark.log" >&2
    exit 1
fi
echo "wrote $out"
