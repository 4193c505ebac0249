#!/bin/bash
# mmdebstrap customize hook of build-iso.sh: turns the installed bookworm tree into the live
# system: the files under rootfs/ (consoles, the text menu, the ready marker, the kiosk
# unit), units enabled and disabled, no root password (a rescue console is for whoever
# holds the machine), a fresh machine-id at every boot.
# Usage: customize.sh ROOTDIR KIOSK DEB...   (KIOSK: 1 when altdisk-gui is among the DEBs)
# The DEBs (altdisk, altdisk-gui) are installed with apt inside the tree, their Depends from
# the archive, like on any Debian machine.
set -euo pipefail
root=$1 kiosk=$2
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# apt runs chrooted (not through DPkg::Chroot-Directory), so the files must be inside.
mkdir -p "$root/tmp/altdisk-debs"
cp "$@" "$root/tmp/altdisk-debs/"
(cd "$root/tmp/altdisk-debs" && ls -- *.deb) | sed 's|^|/tmp/altdisk-debs/|' |
	xargs chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends
rm -rf "$root/tmp/altdisk-debs"

# The overlay: owned by root whoever checked the repository out.
cp -r --preserve=mode,timestamps "$here/rootfs/." "$root/"
(cd "$here/rootfs" && find . -mindepth 1 -printf '%P\n') | while read -r p; do chown -h 0:0 "$root/$p"; done

chroot "$root" passwd -d root >/dev/null
# No login banner before the menu; live-boot writes its network stanza into /etc/network.
touch "$root/root/.hushlogin"
mkdir -p "$root/etc/network"
# Empty: systemd makes a new one at each boot (the machine is a different one each time).
: >"$root/etc/machine-id"
mkdir -p "$root/var/lib/dbus"
ln -sfn /etc/machine-id "$root/var/lib/dbus/machine-id"

systemctl --root="$root" enable altdisk-rescue-ready.service getty@tty2.service >/dev/null 2>&1
# altdisk's boot units belong to an installed system: here no disk holds the running root, so
# "names" would call every rootvg on the machine's disks old_rootvg, and "commit" and
# "firstboot" have no system of their own to act on, and a live system has no changes to
# track for a refresh. The rescue system leaves disks alone.
for unit in altdisk-names.service altdisk-commit.service altdisk-firstboot.service altdisk-changes.service; do
	systemctl --root="$root" mask "$unit" >/dev/null 2>&1
done
# kexec is for altdisk boot-now --kexec only: a plain reboot goes through the firmware.
systemctl --root="$root" mask kexec-load.service >/dev/null 2>&1
if [[ $kiosk == 1 ]]; then
	systemctl --root="$root" enable altdisk-kiosk.service >/dev/null 2>&1
fi
# No network in a rescue boot: nothing to fetch, nothing to trim or scrub on a live medium.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
	fstrim.timer; do
	if [[ -e $root/lib/systemd/system/$unit ]]; then systemctl --root="$root" mask "$unit" >/dev/null 2>&1; fi
done
systemctl --root="$root" set-default multi-user.target >/dev/null 2>&1
