#!/bin/bash
# Run every test tier that this machine supports: unit tests, the CLI tests, root tests on
# loop devices (when run as root), lint and format checks, the Debian package (built and
# checked by lintian), and a quick run of the benchmark script.
# Installs the system packages the tests need first. Usage: tests/run.sh [cargo test args]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [[ $(id -u) == 0 ]]; then
	# altdisk's own packages, and the fixture tools: ACLs, xattrs, capabilities, LVM
	# signatures, the benchmark's fixture, udevadm, a private D-Bus.
	"$repo/core/install.sh" --deps acl attr libcap2-bin lvm2 rsync partclone mmdebstrap time python3 shellcheck udev dbus-daemon \
		lintian xvfb xdotool imagemagick appstream desktop-file-utils
	# The VM tier: QEMU, OVMF and the image-building tools.
	"$repo/tests/vm/install-deps.sh"
	"$repo/image-build/install-deps.sh" # the rescue ISO: mmdebstrap, squashfs, grub-mkrescue
else
	echo "run.sh: not root: root-tier tests will be skipped" >&2
fi

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -q -- -D warnings

echo "== build"
cargo build --locked --workspace -q

echo "== packages (image-build/build-debs.sh, lintian)"
# The VM tier installs these packages (vm_grub_package_...); the cli tier compares versions.
ALTDISK_DEBS=$(image-build/build-debs.sh | grep '\.deb$' | paste -sd' ')
export ALTDISK_DEBS

echo "== tests"
cargo test --locked --workspace -q "$@" 2>&1 | tee /tmp/altdisk-test.log
grep -q "test result: FAILED" /tmp/altdisk-test.log && exit 1

if [[ $(id -u) == 0 ]]; then
	echo "== benchmark script (quick fixture, one run; figures are not judged)"
	cargo build --locked --release -q -p altdisk
	shellcheck tests/bench/bench.sh core/install.sh tests/run.sh image-build/build-debs.sh gui/screenshots.sh \
		image-build/debian/altdisk.postinst image-build/debian/altdisk.prerm image-build/debian/altdisk.postrm \
		image-build/build-iso.sh image-build/install-deps.sh image-build/rescue/customize.sh \
		image-build/rescue/rootfs/usr/local/sbin/altdisk-rescue image-build/rescue/rootfs/usr/local/lib/altdisk-rescue/{ready,gui}
	tests/bench/bench.sh --quick --runs 1 --busy --refresh
fi
# The GUI's real window under Xvfb, screen by screen (docs/gui-*.png are made the same way,
# by hand: gui/screenshots.sh); here into target/ so a run changes no tracked file.
if command -v Xvfb >/dev/null && command -v xdotool >/dev/null; then
	echo "== gui: desktop entry, AppStream metainfo, screenshots"
	desktop-file-validate gui/data/org.altdisk.Gui.desktop
	appstreamcli validate --no-net gui/data/org.altdisk.Gui.metainfo.xml
	bash gui/screenshots.sh target/gui-screenshots
fi
# docs/reliability.md from the figures the fault tests measured.
bash tests/reliability-doc.sh
# One closing line for the whole run, in the plain form CI reads.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' /tmp/altdisk-test.log
