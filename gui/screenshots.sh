#!/bin/bash
# Screenshots of altdisk-gui's screens, of the real window under Xvfb, against the simulated
# service (altdiskd --sim docs/sim-sample.toml) on a private D-Bus: docs/gui-*.png.
# The window is driven the way a user without a mouse would: xdotool presses keys (Alt+N
# picks a screen, Alt+Right goes on in the clone wizard); a clone is started by another
# client, and a new window finds and follows it.
#
# Usage: gui/screenshots.sh [OUTDIR]   (default: docs). Needs: xvfb, xdotool, imagemagick,
# dbus-daemon (tests/run.sh installs them). Run as root, the service and the window run as
# `nobody`: neither needs privileges. Exit codes: 0 done, 1 a step failed (said on stderr).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$repo/docs}")
mkdir -p "$out"
cd "$repo"

for tool in Xvfb xdotool import dbus-daemon; do
	command -v "$tool" >/dev/null || { echo "screenshots.sh: $tool is missing: install xvfb, xdotool, imagemagick and dbus-daemon" >&2; exit 1; }
done
cargo build -q -p altdisk --bin altdiskd
cargo build -q -p altdisk-gui
target=${CARGO_TARGET_DIR:-$repo/target}/debug

work=$(mktemp -d /tmp/altdisk-shots.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# Run unprivileged: as ourselves, or as nobody when we are root.
as_user=()
if [[ $(id -u) == 0 ]]; then
	as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env --)
	cp "$target/altdiskd" "$target/altdisk-gui" "$work/"
	bin=$work
else
	bin=$target
fi

# The sample machine, its copy slowed so a screenshot catches it midway.
sed -e 's/^rate = "400M"/rate = "150M"/' -e 's/^step_seconds = 0.5/step_seconds = 0.3/' docs/sim-sample.toml >"$work/sim.toml"
cat >"$work/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path=$work/bus.sock</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>
EOF
dbus-daemon --config-file="$work/bus.conf" --nofork 2>/dev/null &
pids+=("$!")
for _ in $(seq 100); do [[ -S $work/bus.sock ]] && break; sleep 0.05; done
chmod 777 "$work/bus.sock"
address="unix:path=$work/bus.sock"

service() {
	"${as_user[@]}" "$bin/altdiskd" --sim "$work/sim.toml" --address "$address" --mount-root "$work/mnt" 2>>"$work/altdiskd.log" &
	service_pid=$!
	pids+=("$service_pid")
	for _ in $(seq 100); do
		busctl --address="$address" status org.altdisk.AltDisk1 >/dev/null 2>&1 && return
		sleep 0.1
	done
	echo "screenshots.sh: altdiskd --sim did not come up: $(cat "$work/altdiskd.log")" >&2
	exit 1
}

screen() { # WIDTH HEIGHT: a fresh X screen of that size, on a display number X picks free
	if [[ -n ${xvfb_pid:-} ]]; then
		kill "$xvfb_pid" 2>/dev/null || true
		wait "$xvfb_pid" 2>/dev/null || true
	fi
	: >"$work/display"
	Xvfb -displayfd 3 -screen 0 "${1}x${2}x24" -nolisten tcp -ac -noreset 3>"$work/display" 2>>"$work/xvfb.log" &
	xvfb_pid=$!
	pids+=("$xvfb_pid")
	for _ in $(seq 100); do
		if [[ -s $work/display ]]; then
			display=:$(tr -d '[:space:]' <"$work/display")
			DISPLAY=$display xdotool getdisplaygeometry >/dev/null 2>&1 && return
		fi
		sleep 0.05
	done
	echo "screenshots.sh: Xvfb did not start" >&2
	exit 1
}

window() { # ARGS...: start the window; wait until it is drawn
	if [[ -n ${gui_pid:-} ]]; then
		kill "$gui_pid" 2>/dev/null || true
		wait "$gui_pid" 2>/dev/null || true
	fi
	local t0
	t0=$(date +%s%N)
	DISPLAY=$display "${as_user[@]}" env DISPLAY="$display" ALTDISK_BUS_ADDRESS="$address" ALTDISK_GUI_THEME="${theme:-light}" \
		"$bin/altdisk-gui" "$@" 2>>"$work/gui.log" &
	gui_pid=$!
	pids+=("$gui_pid")
	local w=
	for _ in $(seq 200); do
		w=$(DISPLAY=$display xdotool search --onlyvisible --name '^altdisk' 2>/dev/null | head -1) && [[ -n $w ]] && break
		sleep 0.02
	done
	[[ -n $w ]] || { echo "screenshots.sh: the window did not open: $(cat "$work/gui.log"); X: $(tail -5 "$work/xvfb.log")" >&2; exit 1; }
	echo "window up after $((($(date +%s%N) - t0) / 1000000)) ms"
	DISPLAY=$display xdotool windowfocus --sync "$w"
	sleep "${settle:-2}"
}

keys() { DISPLAY=$display xdotool key --delay 80 "$@"; sleep "${settle:-1.5}"; }

shot() { # NAME: the whole screen (the window fills it)
	DISPLAY=$display import -window root -strip -define png:compression-level=9 "$out/gui-$1.png"
	echo "wrote $out/gui-$1.png"
}

service
screen 1120 780
window --size 1120x780
shot disks
# The clone wizard with a disk that holds data chosen: what it erases is said at each step.
window --size 1120x780 --target sdc
shot clone-targets
keys alt+Right
shot clone-options
keys alt+Right
shot clone-plan
keys alt+Right
shot clone-confirm
# A clone started by another client; a new window finds it and follows it.
busctl --address="$address" call org.altdisk.AltDisk1 /org/altdisk/AltDisk1 org.altdisk.AltDisk1.Manager \
	Clone 'a{sv}' 2 targets as 1 sdd phases s all >/dev/null
settle=12 window --size 1120x780
shot progress
keys alt+4
shot manage
keys alt+5
shot bootlist
theme=dark window --size 1120x780 --open disks
shot dark
# Rescue: every system found on the disks, on the machine as the sample describes it (the
# service started again: the clone above is forgotten).
kill "$service_pid"
wait "$service_pid" 2>/dev/null || true
service
# Keys: the focus goes through the six screens, Look again, then the first card's
# (old_rootvg on sda) buttons: boot from now on, boot once, boot now, repair, clone.
settle=3 window --size 1120x780 --open rescue
shot rescue
keys Tab Tab Tab Tab Tab Tab Tab Tab Return
shot rescue-restore
theme=dark settle=3 window --size 1120x780 --open rescue
shot rescue-dark
# Clone old_rootvg onto another disk (the offline disk swap): the wizard opens with it.
settle=3 window --size 1120x780 --open rescue
keys Tab Tab Tab Tab Tab Tab Tab Tab Tab Tab Tab Tab Return
shot clone-offline
# Repair its boot: asked first; Tab then reaches the question's button (the card's are
# disabled while it is open); the job is followed on the progress screen.
settle=3 window --size 1120x780 --open rescue
keys Tab Tab Tab Tab Tab Tab Tab Tab Tab Tab Tab Return
shot rescue-repair-confirm
settle=4 keys Tab Tab Tab Tab Tab Tab Tab Tab Return
shot rescue-repair
# 1024x768: everything still reads.
screen 1024 768
settle=3 window --size 1024x768 --open progress
shot progress-1024x768
# The service stops: the banner says so and how to start it.
kill "$service_pid"
wait "$service_pid" 2>/dev/null || true
settle=1.5 window --size 1024x768
shot not-running
