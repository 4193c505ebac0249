#!/bin/bash
# Install what the vm_* tests need on Debian 12: QEMU (TCG), OVMF, qemu-img, mmdebstrap and
# the tools that build a disk image without mounting it. Run as root. Idempotent.
#
# Pitfall handled here: a machine may carry qemu-utils from bookworm-backports (QEMU 10),
# which Breaks bookworm's qemu-system-common (7.2); then qemu-utils is moved to bookworm's
# version so that qemu-system-x86 installs.
set -euo pipefail
need=(qemu-system-x86 qemu-utils ovmf mmdebstrap dosfstools mtools e2fsprogs fdisk util-linux)
missing=()
for p in "${need[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
	# qemu-utils and qemu-system-* must come from the same QEMU: take the candidate of
	# qemu-system-x86's suite for qemu-utils too.
	ver=$(apt-cache policy qemu-system-x86 | sed -n 's/^ *Candidate: //p')
	[[ -n $ver && $ver != "(none)" ]] || { echo "install-deps: no qemu-system-x86 candidate" >&2; exit 1; }
	others=()
	for p in "${missing[@]}"; do [[ $p == qemu-utils ]] || others+=("$p"); done
	apt-get install -y -qq --no-install-recommends --allow-downgrades "${others[@]}" "qemu-utils=$ver" >/dev/null
fi
