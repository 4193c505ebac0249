#!/bin/bash
# Print the path of a cached tarball of a minimal Debian root with dpkg and apt
# (mmdebstrap --variant=apt), building it first when it is missing. The cache key is the
# hash of this script: change the recipe and the next run builds a new tarball (and
# removes tarballs of older recipes). Concurrent callers wait on a lock; the tarball is
# built under a temporary name and renamed when complete, so a half-built one is never
# used. Needs root, mmdebstrap and a reachable Debian mirror (about a minute, once).
#
# Usage: debian-apt.sh            -> prints /var/cache/altdisk-tests/debian-apt-HASH.tar
# Env:   ALTDISK_TEST_CACHE (default /var/cache/altdisk-tests)
#        ALTDISK_TEST_MIRROR (optional mmdebstrap mirror argument)
set -euo pipefail

readonly SUITE=bookworm
cache=${ALTDISK_TEST_CACHE:-/var/cache/altdisk-tests}
hash=$(sha256sum "$0" | cut -c1-16)
out=$cache/debian-apt-$hash.tar

die() {
	echo "debian-apt.sh: $*" >&2
	exit 1
}

[[ -f $out ]] && {
	echo "$out"
	exit 0
}
((EUID == 0)) || die "must run as root to build the Debian fixture"
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: apt-get install mmdebstrap"
mkdir -p "$cache"
exec {lock}>"$cache/debian-apt.lock"
flock -w 900 "$lock" || die "timed out waiting for another build of the Debian fixture"
# Someone else may have built it while we waited.
if [[ ! -f $out ]]; then
	rm -f -- "$cache"/debian-apt-"$hash".tar.tmp.*
	tmp=$out.tmp.$$
	trap 'rm -f -- "$tmp"' EXIT
	mirror=()
	[[ -z ${ALTDISK_TEST_MIRROR:-} ]] || mirror=("$ALTDISK_TEST_MIRROR")
	echo "debian-apt.sh: building the Debian $SUITE fixture (once; cached as $out)" >&2
	mmdebstrap --quiet --mode=root --variant=apt --format=tar \
		--aptopt='Acquire::Retries "3"' \
		"$SUITE" "$tmp" "${mirror[@]}" >&2 || die "mmdebstrap failed (is the Debian mirror reachable?)"
	mv -f -- "$tmp" "$out"
	trap - EXIT
	# Tarballs of older recipes.
	for f in "$cache"/debian-apt-*.tar; do
		[[ $f == "$out" ]] || rm -f -- "$f"
	done
fi
echo "$out"
