#!/bin/sh
# Runs inside the guest on its first boot (kernel loaded by QEMU through OVMF, so EFI
# variables are writable, or through SeaBIOS): installs the bootloader the way Debian's
# installer does, then removes itself.
# Usage: altdisk-image-install.sh LOADER INITRAMFS KERNEL_VERSION
#   LOADER: grub-efi | systemd-boot | grub-bios; INITRAMFS: initramfs-tools | dracut
set -eux
loader=$1 initramfs=$2 kver=$3

if [ "$loader" != grub-bios ]; then
	mountpoint -q /boot/efi || mount /boot/efi
	test -d /sys/firmware/efi/efivars
	mountpoint -q /sys/firmware/efi/efivars || mount -t efivarfs efivarfs /sys/firmware/efi/efivars
fi

# The chroot could not probe the root device: the initramfs lacks fsck.ext4 until now.
case $initramfs in
initramfs-tools) update-initramfs -u -k "$kver" ;;
dracut) dracut --force --kver "$kver" ;;
esac

case $loader in
grub-bios)
	grub-install --target=i386-pc /dev/vda
	update-grub
	test -e /boot/grub/i386-pc/core.img
	test -e /boot/grub/grub.cfg
	rm -f /root/altdisk-image-install.sh
	sync
	echo ALTDISK-INSTALL-"OK"
	exit 0
	;;
grub-efi)
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
