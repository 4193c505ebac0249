#!/bin/bash
# Install altdisk on a Debian 12 machine: the system packages it runs and builds with, a
# release build, the binary in /usr/local/sbin with its AIX names (alt_disk_copy,
# alt_rootvg_op, bootlist) as links. Run as root from a checkout.
#   core/install.sh            packages + build + install
#   core/install.sh --deps [PKG...]   packages only (and these extra ones)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-/usr/local}

if [[ $(id -u) != 0 ]]; then
	echo "install.sh: error: run as root (it installs packages and /usr/local/sbin/altdisk)" >&2
	exit 1
fi

# Runtime: partitioning, probing, mkfs for every filesystem altdisk makes.
runtime=(util-linux fdisk e2fsprogs xfsprogs btrfs-progs dosfstools mtools)
# Build: pkg-config and libudev headers for the udev crate.
build=(pkg-config libudev-dev gcc)
extra=()
[[ ${1:-} == --deps ]] && extra=("${@:2}")
missing=()
for p in "${runtime[@]}" "${build[@]}" "${extra[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "install.sh: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ ${1:-} == --deps ]] && exit 0

if ! command -v cargo >/dev/null; then
	echo "install.sh: error: cargo is missing; install Rust $(grep -m1 rust-version "$repo/Cargo.toml" | cut -d'"' -f2) or newer (rustup)" >&2
	exit 1
fi
cargo build --release --locked --manifest-path "$repo/Cargo.toml" -p altdisk
install -D -m 0755 "$repo/target/release/altdisk" "$prefix/sbin/altdisk"
install -D -m 0755 "$repo/target/release/altdiskd" "$prefix/sbin/altdiskd"
# The D-Bus service: bus policy, activation, systemd unit, polkit actions.
dist=$repo/core/dist
mkdir -p /usr/share/dbus-1/system-services
install -D -m 0644 "$dist/org.altdisk.AltDisk1.conf" /usr/share/dbus-1/system.d/org.altdisk.AltDisk1.conf
sed "s|/usr/local/sbin|$prefix/sbin|" "$dist/org.altdisk.AltDisk1.service" >/usr/share/dbus-1/system-services/org.altdisk.AltDisk1.service
sed "s|/usr/local/sbin|$prefix/sbin|" "$dist/altdiskd.service" >/etc/systemd/system/altdiskd.service
install -D -m 0644 "$dist/org.altdisk.policy" /usr/share/polkit-1/actions/org.altdisk.policy
for name in alt_disk_copy alt_rootvg_op bootlist; do
	ln -sf altdisk "$prefix/sbin/$name"
done
# udev: names under /dev/disk/by-altdisk, alternate systems kept from automounters.
mkdir -p /etc/udev/rules.d
sed "s|@ALTDISK@|$prefix/sbin/altdisk|" "$repo/udev-rules/70-altdisk.rules" >/etc/udev/rules.d/70-altdisk.rules
# The boot units: rootvg/old_rootvg names, keeping a healthy trial boot.
"$prefix/sbin/altdisk" install-units
echo "install.sh: installed $prefix/sbin/altdisk (also alt_disk_copy, alt_rootvg_op, bootlist)"
