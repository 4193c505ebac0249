#!/bin/bash
# Run every test tier that this machine supports: unit tests, root tests on loop devices
# (when run as root), lint and format checks, and a quick run of the benchmark script.
# Installs the system packages the tests need first. Usage: tests/run.sh [cargo test args]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [[ $(id -u) == 0 ]]; then
	# altdisk's own packages, and the fixture tools: ACLs, xattrs, capabilities, LVM
	# signatures, the benchmark's fixture, udevadm, a private D-Bus.
	"$repo/core/install.sh" --deps acl attr libcap2-bin lvm2 rsync mmdebstrap time python3 shellcheck udev dbus-daemon
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

echo "== tests"
cargo test --locked --workspace -q "$@" 2>&1 | tee /tmp/altdisk-test.log
grep -q "test result: FAILED" /tmp/altdisk-test.log && exit 1

if [[ $(id -u) == 0 ]]; then
	echo "== benchmark script (quick fixture, one run; figures are not judged)"
	cargo build --locked --release -q -p altdisk
	shellcheck tests/bench/bench.sh core/install.sh tests/run.sh
	tests/bench/bench.sh --quick --runs 1
fi
# One closing line for the whole run, in the plain form CI reads.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' /tmp/altdisk-test.log
