#!/bin/bash
# Install what image-build/build-iso.sh needs on Debian 12: mmdebstrap (the live root),
# squashfs-tools, and grub-mkrescue with both GRUB platforms (BIOS and UEFI), xorriso and
# mtools (the EFI boot image is written without mounting). Run as root. Idempotent.
# QEMU, OVMF and SeaBIOS for booting the ISO come from tests/vm/install-deps.sh.
set -euo pipefail
need=(mmdebstrap squashfs-tools xorriso mtools grub-common grub-pc-bin grub-efi-amd64-bin zstd)
missing=()
for p in "${need[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
