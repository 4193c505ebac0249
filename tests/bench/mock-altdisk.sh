#!/usr/bin/env bash
# Stand-in for altdisk that implements only the contract bench.sh relies on,
# so the benchmark itself can be tested without the real binary:
#   mock-altdisk.sh copy --source DIR -d DEV -P1 --force --mount-at MNT
#   mock-altdisk.sh sleep --mount-at MNT
# It is NOT a benchmark of anything: it runs mkfs.ext4 on the whole device and
# cp -a.  MOCK_ALTDISK_MISBEHAVE=1 makes it leave a partition-style loop device
# attached and ignore "sleep", to exercise bench.sh's cleanup.
set -euo pipefail
cmd=${1:-}
(($#)) && shift
src="" dev="" mnt=""
while (($#)); do
	case $1 in
	--source) src=$2 && shift ;;
	-d) dev=$2 && shift ;;
	--mount-at) mnt=$2 && shift ;;
	-P) shift ;;
	-P[0-9]* | --force) ;;
	*) echo "mock-altdisk: unknown argument: $1" >&2 && exit 2 ;;
	esac
	shift
done
case $cmd in
copy)
	[[ -d $src && -b $dev && -n $mnt ]] || { echo "mock-altdisk: copy needs --source, -d, --mount-at" >&2; exit 2; }
	mkfs.ext4 -F -q "$dev"
	mkdir -p "$mnt"
	mount "$dev" "$mnt"
	cp -a "$src/." "$mnt/"
	if [[ ${MOCK_ALTDISK_MISBEHAVE:-0} == 1 ]]; then
		losetup --find --show --offset 1048576 --sizelimit 1048576 --read-only "$dev"
	fi
	;;
sleep)
	[[ ${MOCK_ALTDISK_MISBEHAVE:-0} == 1 ]] && { echo "mock-altdisk: pretending sleep failed" >&2; exit 1; }
	umount "$mnt"
	;;
--version) echo "mock-altdisk (mkfs.ext4 + cp -a stand-in)" ;;
*) echo "usage: mock-altdisk.sh copy|sleep ..." >&2 && exit 2 ;;
esac
