#!/bin/sh
# Runs inside the guest on its first boot (kernel loaded by QEMU through OVMF, so EFI
# variables are writable): installs the bootloader the way Debian's installer does, then
# removes itself. Usage: altdisk-image-install.sh KIND KERNEL_VERSION
set -eux
kind=$1 kver=$2

mountpoint -q /boot/efi || mount /boot/efi
test -d /sys/firmware/efi/efivars
mountpoint -q /sys/firmware/efi/efivars || mount -t efivarfs efivarfs /sys/firmware/efi/efivars

# The chroot could not probe the root device: the initramfs lacks fsck.ext4 until now.
update-initramfs -u -k "$kver"

case $kind in
grub)
	grub-install --target=x86_64-efi --efi-directory=/boot/efi --bootloader-id=debian
	update-grub
	test -e /boot/efi/EFI/debian/grubx64.efi
	test -e /boot/grub/grub.cfg
	;;
systemd-boot)
	bootctl install
	kernel-install add "$kver" "/boot/vmlinuz-$kver"
	ls -lR /boot/efi/loader
	test -n "$(ls /boot/efi/loader/entries/)"
	bootctl status --no-pager || true
	;;
esac

efibootmgr -v
# The new entry comes first in BootOrder (grub-install and bootctl both put it there).
first=$(efibootmgr | sed -n 's/^BootOrder: \([0-9A-Fa-f]*\).*/\1/p')
efibootmgr | grep "^Boot$first" | grep -Eq 'debian|Linux Boot Manager'

rm -f /root/altdisk-image-install.sh
sync
echo ALTDISK-INSTALL-"OK"
