#!/bin/bash
# Install altdisk on a Debian 12 machine from this checkout: the packages it builds with, the
# Debian package built by image-build/build-debs.sh, installed with apt (which brings what it
# depends on). The package puts /usr/sbin/altdisk with its AIX names (alt_disk_copy,
# alt_rootvg_op, bootlist), altdiskd with its D-Bus and polkit files, the udev rules and the
# boot units (enabled). Run as root from a checkout; the build runs as the user who called
# sudo when that user owns the checkout (their rustup toolchain, their target/).
#   core/install.sh                   build the package and install it
#   core/install.sh --deps [PKG...]   only the packages to build and test with (and these)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)

if [[ $(id -u) != 0 ]]; then
	echo "install.sh: error: not root: it installs packages; run it with sudo" >&2
	exit 1
fi

# Tools altdisk runs (the package depends on them; the tests use them without it).
runtime=(util-linux fdisk e2fsprogs xfsprogs btrfs-progs dosfstools mtools)
# Build: a C linker, pkg-config and libudev headers for the udev crate; dpkg-dev (dpkg-shlibdeps)
# and binutils (strip) for the package.
build=(pkg-config libudev-dev gcc dpkg-dev binutils)
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

# Build as the user who ran sudo, when the checkout is theirs: their PATH has cargo.
as_user=()
if [[ -n ${SUDO_USER:-} && $SUDO_USER != root && $(stat -c %U "$repo") == "$SUDO_USER" ]]; then
	home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
	as_user=(runuser -u "$SUDO_USER" -- env "PATH=$home/.cargo/bin:$PATH" "HOME=$home")
fi
if ! "${as_user[@]}" bash -c 'command -v cargo' >/dev/null; then
	echo "install.sh: error: cargo is missing; install Rust $(grep -m1 rust-version "$repo/Cargo.toml" | cut -d'"' -f2) or newer (rustup), then run this again" >&2
	exit 1
fi
mapfile -t debs < <("${as_user[@]}" "$repo/image-build/build-debs.sh" --no-lintian | grep '\.deb$')
((${#debs[@]})) || { echo "install.sh: error: image-build/build-debs.sh made no package (see above)" >&2; exit 1; }

# An installation by an earlier install.sh (/usr/local, units and rules in /etc) would shadow
# the package's files: remove what it made (only files naming /usr/local/sbin/altdisk).
legacy=()
for f in /etc/systemd/system/altdiskd.service /etc/systemd/system/altdisk-{names,commit,firstboot}.service \
	/etc/udev/rules.d/70-altdisk.rules; do
	[[ -f $f ]] && grep -q /usr/local/sbin/altdisk "$f" && legacy+=("$f")
done
if ((${#legacy[@]})) || [[ -e /usr/local/sbin/altdisk ]]; then
	echo "install.sh: removing the earlier installation in /usr/local (${legacy[*]})"
	for f in "${legacy[@]}"; do
		rm -f "$f" "/etc/systemd/system/multi-user.target.wants/$(basename "$f")"
	done
	rm -f /usr/local/sbin/{altdisk,altdiskd,alt_disk_copy,alt_rootvg_op,bootlist}
fi

# apt installs the packages and what they depend on (a path, not a name: the built file);
# --reinstall, as a rebuild keeps the version.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "${debs[@]}" >/dev/null
echo "install.sh: installed $(basename -a "${debs[@]}" | paste -sd' '): /usr/sbin/altdisk (also alt_disk_copy, alt_rootvg_op, bootlist)"
