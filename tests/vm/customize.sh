#!/bin/bash
# mmdebstrap customize hook of build-image.sh: turns the fresh Debian tree into what an
# installer leaves behind (fstab by UUID, hostname, machine-id, bootloader configuration,
# a small initramfs), plus the test conveniences (root autologin on ttyS0, quiet console).
# Usage: customize.sh ROOTDIR KIND ROOT_UUID ESP_UUID   (KIND: kinds/KIND.conf)
set -euo pipefail
root=$1 kind=$2 root_uuid=$3 esp_uuid=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cmdline="console=ttyS0,115200 quiet loglevel=3"
LOADER='' INITRAMFS=initramfs-tools
# shellcheck disable=SC1090 # one of kinds/*.conf, checked by build-image.sh
source "$here/kinds/$kind.conf"

cat >"$root/etc/fstab" <<EOF
# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=$root_uuid /               ext4    errors=remount-ro 0       1
EOF
if [[ $LOADER != grub-bios ]]; then
	echo "UUID=$esp_uuid  /boot/efi       vfat    umask=0077      0       1" >>"$root/etc/fstab"
	mkdir -p "$root/boot/efi"
fi

echo production >"$root/etc/hostname"
cat >"$root/etc/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	production

::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
echo >>"$root/etc/machine-id"
mkdir -p "$root/var/lib/dbus"
ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"

# Root: no password, autologin on the serial console; kernel messages kept off it.
chroot "$root" passwd -d root >/dev/null
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty -o '-p -f -- \\u' --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
EOF
echo 'kernel.printk = 3 4 1 3' >"$root/etc/sysctl.d/10-altdisk-tests-console.conf"

# A small initramfs: MODULES=list (set in conf.d by the setup hook), zstd; dracut is
# configured by the setup hook alone.
[[ $INITRAMFS != initramfs-tools ]] || cat >>"$root/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
virtio_scsi
ext4
xfs
btrfs
vfat
nls_cp437
nls_ascii
crc32c_generic
dm_mod
9p
9pnet_virtio
EOF

case $LOADER in
grub-efi | grub-bios)
	sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' \
		-e "s/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=\"quiet loglevel=3\"/" \
		-e "s/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX=\"console=ttyS0,115200\"/" \
		"$root/etc/default/grub"
	;;
systemd-boot)
	mkdir -p "$root/etc/kernel"
	echo "root=UUID=$root_uuid ro $cmdline" >"$root/etc/kernel/cmdline"
	;;
esac

install -m 0755 "$here/guest-install.sh" "$root/root/altdisk-image-install.sh"
case $INITRAMFS in
initramfs-tools) chroot "$root" update-initramfs -u -k all ;;
dracut) chroot "$root" dracut --force --regenerate-all ;;
esac
