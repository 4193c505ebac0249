#!/usr/bin/env bash
# tests/bench/bench.sh: side-by-side copy benchmark, altdisk vs rsync vs cp.
#
# Builds (once, cached) a root-filesystem fixture in an ext4 image, then, for
# each run, attaches it read-only on a loop device, makes a fresh target image
# on another loop device, drops the page cache and times each tool copying the
# tree.  It reports; it never passes or fails on timing.  See README.md.
#
# Needs root, loop devices, mkfs.ext4, rsync, cp, GNU time, setfattr/setfacl
# and (full fixture only) mmdebstrap with access to a Debian mirror.

# Functions run from traps or by computed name look unreachable to shellcheck.
# shellcheck disable=SC2317
set -Eeuo pipefail
shopt -s nullglob

readonly BENCH_VERSION=1 # bump to invalidate every cached fixture
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)

ALTDISK=${ALTDISK:-$REPO_DIR/target/release/altdisk}
CACHE_ROOT=${ALTDISK_BENCH_CACHE:-/var/cache/altdisk-tests}
WORK_PARENT=${ALTDISK_BENCH_WORKDIR:-/var/tmp}
MIRROR=${ALTDISK_BENCH_MIRROR:-} # optional mmdebstrap mirror / sources.list line

RUNS=3
QUICK=0
MARKDOWN=""
TOOLS="altdisk,rsync,cp"
REBUILD=0
FIXTURE_ONLY=0
USE_DIO=1

usage() {
	cat <<'EOF'
Usage: bench.sh [--quick] [--runs N] [--tools altdisk,rsync,cp] [--markdown FILE]
                [--rebuild] [--fixture-only] [--no-direct-io] [-h|--help]

  --quick          small synthetic fixture (no mmdebstrap), for a fast smoke run
  --runs N         timed runs per tool, interleaved (default 3)
  --tools LIST     comma-separated subset of altdisk,rsync,cp (default: all three)
  --markdown FILE  also write the report as Markdown to FILE
  --rebuild        throw away the cached fixture and build it again
  --fixture-only   build (or check) the cached fixture, print its summary, exit
  --no-direct-io   attach loop devices without --direct-io=on

Environment:
  ALTDISK               altdisk binary (default: <repo>/target/release/altdisk)
  ALTDISK_BENCH_CACHE   fixture cache root (default: /var/cache/altdisk-tests)
  ALTDISK_BENCH_WORKDIR where per-run target images go (default: /var/tmp)
  ALTDISK_BENCH_MIRROR  extra mmdebstrap mirror argument (default: mmdebstrap's)

Exit status: 0 if every requested tool completed every run (verification
warnings are printed but do not change it), 1 if any run of any tool failed
(e.g. the altdisk binary is missing), 2 on usage or setup errors.
EOF
}

die() {
	printf 'bench: error: %s\n' "$*" >&2
	exit 2
}
note() { printf 'bench: %s\n' "$*" >&2; }

while (($#)); do
	case $1 in
	--quick) QUICK=1 ;;
	--runs)
		[[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive integer"
		RUNS=$2
		shift
		;;
	--runs=*)
		RUNS=${1#--runs=}
		[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive integer"
		;;
	--tools)
		[[ -n ${2:-} ]] || die "--tools needs a list"
		TOOLS=$2
		shift
		;;
	--tools=*) TOOLS=${1#--tools=} ;;
	--markdown)
		[[ -n ${2:-} ]] || die "--markdown needs a file name"
		MARKDOWN=$2
		shift
		;;
	--markdown=*) MARKDOWN=${1#--markdown=} ;;
	--rebuild) REBUILD=1 ;;
	--fixture-only) FIXTURE_ONLY=1 ;;
	--no-direct-io) USE_DIO=0 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $1"
		;;
	esac
	shift
done

IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
((${#TOOL_LIST[@]})) || die "--tools is empty"
for t in "${TOOL_LIST[@]}"; do
	case $t in altdisk | rsync | cp) ;; *) die "unknown tool in --tools: $t" ;; esac
done

((EUID == 0)) || die "must run as root (loop devices, mount, drop_caches)"
for c in losetup mount umount mountpoint findmnt mkfs.ext4 rsync cp du find awk \
	sha256sum flock truncate dd perl setfattr getfattr setfacl getfacl sync; do
	command -v "$c" >/dev/null || die "missing command: $c (apt-get install rsync acl attr e2fsprogs util-linux)"
done
[[ -x /usr/bin/time ]] || die "missing /usr/bin/time (apt-get install time)"
if ((!QUICK)); then
	command -v mmdebstrap >/dev/null || die "missing mmdebstrap (apt-get install mmdebstrap), or use --quick"
fi

# ---------------------------------------------------------------------------
# Resource tracking and cleanup.  Only what this script mounted or attached is
# ever unmounted or detached; loop devices are checked against their backing
# file before detaching so a recycled /dev/loopN belonging to someone else is
# never touched.
# ---------------------------------------------------------------------------
MOUNTS=()       # mount points we mounted (in order)
LOOPS=()        # "dev|backing-file" of loop devices we attached
ALT_MNT=""      # where an altdisk clone may be mounted
WORKDIR=""      # per-invocation scratch dir (target images, mount points)
BUILD_TMP=""    # in-progress fixture build dir
CLEANUP_MSGS=() # things cleanup had to force (printed and reported)

loop_backing() { # DEV -> backing file path of a loop device (or nothing)
	local b
	b=$(losetup -n -O BACK-FILE "$1" 2>/dev/null) || return 0
	b=${b% (deleted)}
	printf '%s' "$b"
}

attach_loop() { # VAR FILE [losetup options...]: attach, record, store dev in VAR
	local -n _dev=$1
	local file dev
	file=$(realpath -- "$2")
	shift 2
	dev=$(losetup --find --show "$@" "$file") || return 1
	LOOPS+=("$dev|$file")
	_dev=$dev
}

detach_loop() { # DEV: detach if it is still ours, forget it
	local dev=$1 entry keep=() file="" tries
	for entry in "${LOOPS[@]}"; do
		if [[ ${entry%%|*} == "$dev" ]]; then file=${entry#*|}; else keep+=("$entry"); fi
	done
	LOOPS=("${keep[@]}")
	[[ -n $file ]] || return 0
	if [[ $(loop_backing "$dev") != "$file" ]]; then
		return 0 # already gone (or recycled by someone else: not ours any more)
	fi
	for tries in 1 2 3 4 5; do
		losetup -d "$dev" 2>/dev/null && return 0
		sleep "0.$tries"
	done
	CLEANUP_MSGS+=("could not detach $dev ($file)")
	note "warning: could not detach $dev ($file)"
	return 1
}

do_mount() { # DEV MOUNTPOINT [mount options...]
	local dev=$1 mp=$2
	shift 2
	mkdir -p -- "$mp"
	mount "$@" -- "$dev" "$mp" || return 1
	MOUNTS+=("$mp")
}

force_umount() { # MOUNTPOINT: unmount it and anything below it
	local mp=$1 tries
	mountpoint -q -- "$mp" || return 0
	for tries in 1 2 3 4 5; do
		umount -R -- "$mp" 2>/dev/null && return 0
		sleep "0.$tries"
	done
	CLEANUP_MSGS+=("$mp was busy; lazily unmounted")
	note "warning: $mp busy; lazy unmount"
	umount -R -l -- "$mp" 2>/dev/null || true
}

do_umount() { # MOUNTPOINT: unmount, forget it
	local mp=$1 m keep=()
	for m in "${MOUNTS[@]}"; do [[ $m == "$mp" ]] || keep+=("$m"); done
	MOUNTS=("${keep[@]}")
	force_umount "$mp"
}

alt_unmount() { # unmount an altdisk clone via "altdisk sleep", then by force
	local mp=$ALT_MNT
	[[ -n $mp ]] || return 0
	ALT_MNT=""
	mountpoint -q -- "$mp" || return 0
	if [[ -x $ALTDISK ]] && ! "$ALTDISK" sleep --mount-at "$mp" >"$WORKDIR/altdisk-sleep.log" 2>&1; then
		CLEANUP_MSGS+=("'altdisk sleep --mount-at' failed: $(tail -n 3 "$WORKDIR/altdisk-sleep.log" | tr '\n' ' ')")
		note "warning: altdisk sleep failed; unmounting $mp by force"
	fi
	if mountpoint -q -- "$mp"; then
		CLEANUP_MSGS+=("clone still mounted at $mp after 'altdisk sleep'; unmounted by force")
		force_umount "$mp"
	fi
}

stray_loops() { # loops backed by a file in WORKDIR or by one of our loop devices
	local ours=() entry
	for entry in "${LOOPS[@]}"; do ours+=("${entry%%|*}"); done
	losetup -l -n --raw -O NAME,BACK-FILE 2>/dev/null | awk -v w="$WORKDIR/" -v ours="${ours[*]}" '
		BEGIN { n = split(ours, o, " "); for (i = 1; i <= n; i++) mine[o[i]] = 1 }
		$1 in mine { next }
		(w != "/" && index($2, w) == 1) || ($2 in mine) { print $1 }'
}

release_all() { # undo everything, most recent first
	local i dev
	alt_unmount
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do do_umount "${MOUNTS[i]}"; done
	if [[ -n $WORKDIR ]]; then
		# Loop devices created by a tool (e.g. for partitions) on our target
		# image or on our loop device: created for this run, so ours to remove.
		for dev in $(stray_loops); do
			CLEANUP_MSGS+=("loop device $dev ($(loop_backing "$dev")) was left attached; detached it")
			note "warning: $dev was left attached by the tool; detaching"
			losetup -d "$dev" 2>/dev/null || true
		done
	fi
	for ((i = ${#LOOPS[@]} - 1; i >= 0; i--)); do detach_loop "${LOOPS[i]%%|*}" || true; done
}

safe_rmdir() { # remove a scratch tree, never across a mount
	local d=$1
	[[ -n $d && -d $d ]] || return 0
	if findmnt -rn -o TARGET | awk -v d="$d" 'index($0, d "/") == 1 || $0 == d { f = 1 } END { exit !f }'; then
		note "warning: something is still mounted under $d; leaving it in place"
		return 0
	fi
	rm -rf --one-file-system -- "$d"
}

on_exit() {
	local rc=$?
	set +e
	trap '' INT TERM HUP
	release_all
	safe_rmdir "$BUILD_TMP"
	safe_rmdir "$WORKDIR"
	exit "$rc"
}
trap on_exit EXIT
trap 'note "unexpected failure (status $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'note "interrupted"; exit 130' INT
trap 'note "terminated"; exit 143' TERM HUP

# ---------------------------------------------------------------------------
# Fixture recipe.  Everything from here to "end of recipe" is hashed (together
# with BENCH_VERSION and the mode) into the cache key: change the recipe and a
# new fixture is built.
# ---------------------------------------------------------------------------
recipe_params_full() {
	IMG_SIZE=4G
	DEBIAN_ROOT=1
	DEB_SUITE=bookworm
	DEB_VARIANT=standard
	DEB_INCLUDE=build-essential,git,python3,openssh-client,ca-certificates,locales,vim
	SMALL_FILES=40000 TOP_DIRS=40 SUB_DIRS=50 SMALL_MIN=1024 SMALL_MAX=16384
	LARGE_FILES=3 LARGE_MIB=256
	SPARSE_FILES=2 SPARSE_MIB=2048
	LINKS_X5=50 LINKS_X3=250 LINKS_X2=300 # extra links: 50*4 + 250*2 + 300*1 = 1000
	XATTR_FILES=3000 ACL_FILES=500 SYMLINKS=500
	SEED=20240601
}

recipe_params_quick() {
	IMG_SIZE=1G
	DEBIAN_ROOT=0
	SMALL_FILES=5000 TOP_DIRS=10 SUB_DIRS=25 SMALL_MIN=1024 SMALL_MAX=16384
	LARGE_FILES=1 LARGE_MIB=64
	SPARSE_FILES=2 SPARSE_MIB=256
	LINKS_X5=5 LINKS_X3=25 LINKS_X2=50 # extra links: 20 + 50 + 50 = 120
	XATTR_FILES=500 ACL_FILES=100 SYMLINKS=100
	SEED=20240601
}

perl_generator() { # small files, hard links, symlinks, xattr/ACL file lists
	cat <<'PERL'
use strict; use warnings;
my %a = map { split /=/, $_, 2 } @ARGV;
my $base = $a{base};
srand($a{seed});
open(my $rnd, '<:raw', '/dev/urandom') or die "urandom: $!";
sub mkd { my $d = shift; mkdir($d) or die "mkdir $d: $!"; }
mkd("$base/data"); mkd("$base/links"); mkd("$base/symlinks");
my @dirs;
for my $i (0 .. $a{top} - 1) {
    my $t = sprintf('%s/data/d%03d', $base, $i); mkd($t);
    for my $j (0 .. $a{sub} - 1) { my $d = sprintf('%s/s%03d', $t, $j); mkd($d); push @dirs, $d; }
}
my @files;
for my $k (0 .. $a{files} - 1) {
    my $d = $dirs[int(rand(@dirs))];
    my $name = sprintf('f%05d.dat', $k);
    $name = sprintf("r\xc3\xa9sum\xc3\xa9 %05d \xe6\x97\xa5\xe6\x9c\xac.txt", $k) if $k % 997 == 0;
    $name = ('long_name_' x 22) . sprintf('%05d', $k) if $k % 991 == 1;
    my $size = $a{min} + int(rand($a{max} - $a{min} + 1));
    my $buf = '';
    my $got = read($rnd, $buf, $size);
    die "short read from urandom" unless defined($got) && $got == $size;
    my $f = "$d/$name";
    open(my $o, '>:raw', $f) or die "$f: $!";
    print {$o} $buf or die "$f: $!";
    close($o) or die "$f: $!";
    push @files, $f;
}
for (my $i = $#files; $i > 0; $i--) { my $j = int(rand($i + 1)); @files[$i, $j] = @files[$j, $i]; }
my @ldirs = map { my $d = sprintf('%s/links/l%02d', $base, $_); mkd($d); $d } 0 .. 9;
my ($p, $nl) = (0, 0);
for my $spec ([$a{x5}, 4], [$a{x3}, 2], [$a{x2}, 1]) {
    my ($count, $extra) = @$spec;
    for (1 .. $count) {
        my $f = $files[$p++];
        for my $e (1 .. $extra) {
            my $dst = ($e % 2)
                ? sprintf('%s/h%05d_%d', $ldirs[$p % 10], $p, $e)
                : sprintf('%s/hl%05d_%d', $dirs[int(rand(@dirs))], $p, $e);
            link($f, $dst) or die "link $dst: $!";
            $nl++;
        }
    }
}
for my $s (0 .. $a{symlinks} - 1) {
    my $rel = substr($files[int(rand(@files))], length($base) + 1);
    my $target = ($s % 3 == 0) ? "/home/bench/$rel" : ($s % 3 == 1) ? "../$rel" : "/nonexistent/dangling$s";
    symlink($target, sprintf('%s/symlinks/l%04d', $base, $s)) or die "symlink: $!";
}
symlink('../data', "$base/symlinks/dir-link") or die "symlink: $!";
sub writelist { my ($path, @l) = @_; open(my $o, '>:raw', $path) or die "$path: $!"; print {$o} map { "$_\0" } @l; close($o) or die; }
writelist($a{xattr_list}, @files[$#files - $a{xattrs} + 1 .. $#files]);
writelist($a{acl_list}, @files[$p .. $p + $a{acls} - 1]);
print "small files: ", scalar(@files), ", dirs: ", scalar(@dirs), ", extra hard links: $nl\n";
PERL
}

recipe_debian_root() { # ROOT: a Debian root made by mmdebstrap
	local root=$1
	local mirror=()
	[[ -z $MIRROR ]] || mirror=("$MIRROR")
	# shellcheck disable=SC2016 # "$1" is expanded by mmdebstrap's hook shell
	mmdebstrap --quiet --mode=root --variant="$DEB_VARIANT" --include="$DEB_INCLUDE" \
		--aptopt='Acquire::Retries "3"' \
		--customize-hook='chroot "$1" useradd -m -u 1000 -U -s /bin/bash bench' \
		--customize-hook='chroot "$1" useradd -M -u 1001 -g 100 -s /usr/sbin/nologin bench2' \
		"$DEB_SUITE" "$root" "${mirror[@]}"
}

recipe_skeleton_root() { # ROOT: a tiny root-like skeleton (quick mode)
	local root=$1 b
	mkdir -p "$root"/{etc,usr/bin,usr/lib,usr/sbin,home/bench,root,tmp,var/log,dev,proc,sys,run}
	ln -s usr/bin "$root/bin"
	ln -s usr/lib "$root/lib"
	ln -s usr/sbin "$root/sbin"
	chmod 1777 "$root/tmp"
	chmod 0700 "$root/root"
	printf 'root:x:0:0:root:/root:/bin/bash\nbench:x:1000:1000::/home/bench:/bin/bash\nbench2:x:1001:100::/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
	printf 'root:x:0:\nusers:x:100:\nbench:x:1000:\n' >"$root/etc/group"
	printf '# <file system> <mount point> <type> <options> <dump> <pass>\n' >"$root/etc/fstab"
	printf 'bench-quick\n' >"$root/etc/hostname"
	for b in bash ls cat cp mv rm; do cp -a "$(command -v "$b")" "$root/usr/bin/"; done
	mknod -m 0666 "$root/dev/null" c 1 3
	mknod -m 0666 "$root/dev/zero" c 1 5
	dd if=/dev/urandom of="$root/var/log/syslog" bs=64K count=16 status=none
}

recipe_home() { # HOME: synthetic home directory
	local home=$1 tmp=$2 i off last
	mkdir -p "$home"
	perl_generator >"$tmp/gen.pl"
	perl "$tmp/gen.pl" base="$home" seed="$SEED" files="$SMALL_FILES" top="$TOP_DIRS" \
		sub="$SUB_DIRS" min="$SMALL_MIN" max="$SMALL_MAX" x5="$LINKS_X5" x3="$LINKS_X3" \
		x2="$LINKS_X2" symlinks="$SYMLINKS" xattrs="$XATTR_FILES" acls="$ACL_FILES" \
		xattr_list="$tmp/xattr.list" acl_list="$tmp/acl.list" >&2

	mkdir "$home/big"
	for ((i = 0; i < LARGE_FILES; i++)); do
		dd if=/dev/urandom of="$home/big/large$i.bin" bs=4M count=$((LARGE_MIB / 4)) \
			iflag=fullblock status=none
	done
	ln "$home/big/large0.bin" "$home/big/large0.hardlink"

	mkdir "$home/sparse"
	for ((i = 0; i < SPARSE_FILES; i++)); do
		truncate -s "${SPARSE_MIB}M" "$home/sparse/sparse$i.img"
		last=$((SPARSE_MIB - 1))
		((i % 2)) && last=$((SPARSE_MIB * 5 / 6)) # odd files end in a hole
		for off in $((i)) $((SPARSE_MIB / 4)) $((SPARSE_MIB / 2 + 3)) "$last"; do
			dd if=/dev/urandom of="$home/sparse/sparse$i.img" bs=1M count=1 seek="$off" \
				conv=notrunc status=none
		done
	done

	mkdir -p "$home/empty"/dir{001..050}
	touch "$home/empty"/file{001..100}
	mkdir "$home/special"
	mkfifo "$home/special/fifo"
	mknod "$home/special/null" c 1 3

	chown -R 1000:1000 "$home"
	chown -R 1001:100 "$home/data/d000"
	find "$home/data/d001" -type f -exec chmod 0600 {} +
	find "$home/data/d002" -type f -exec chmod 0755 {} +
	find "$home/data/d003" -exec touch -h -d '2001-02-03 04:05:06.123456789' {} +

	xargs -0 -r -n 1000 setfattr -n user.bench.origin -v altdisk-bench <"$tmp/xattr.list"
	head -z -n $((XATTR_FILES / 3)) "$tmp/xattr.list" |
		xargs -0 -r -n 1000 setfattr -n user.bench.blob -v "0s$(head -c 1024 /dev/urandom | base64 -w0)"
	setfattr -n user.bench.dir -v "top level data dir" "$home/data"/d00*
	xargs -0 -r -n 1000 setfacl -m u:1000:rw-,u:1001:r--,g:100:r--,m::rw- <"$tmp/acl.list"

	mkdir "$home/acl-inherit"
	setfacl -m u:1001:rwx,g:100:r-x "$home/acl-inherit"
	setfacl -d -m u:1000:rwx,u:1001:r-x,g:100:r-x,o::--- "$home/acl-inherit"
	mkdir "$home/acl-inherit/sub"
	for i in {01..20}; do
		head -c 2048 /dev/urandom >"$home/acl-inherit/f$i"
		head -c 2048 /dev/urandom >"$home/acl-inherit/sub/f$i"
	done
}

recipe_populate() { # ROOT TMP
	local root=$1 tmp=$2
	if ((DEBIAN_ROOT)); then
		recipe_debian_root "$root"
	else
		recipe_skeleton_root "$root"
	fi
	recipe_home "$root/home/bench" "$tmp"
}
# ---------------------------- end of recipe ---------------------------------

MODE=full
((QUICK)) && MODE=quick
"recipe_params_$MODE"

recipe_text() {
	printf 'altdisk-bench fixture v%s mode=%s\n' "$BENCH_VERSION" "$MODE"
	declare -f "recipe_params_$MODE" perl_generator recipe_debian_root recipe_skeleton_root \
		recipe_home recipe_populate
}
HASH=$(recipe_text | sha256sum | cut -c1-16)
FIXTURE_DIR=$CACHE_ROOT/bench-$MODE-$HASH
SRC_IMG=$FIXTURE_DIR/source.img
INFO_FILE=$FIXTURE_DIR/fixture.info
MARKER=$FIXTURE_DIR/COMPLETE

tree_stats() { # DIR -> "entries files dirs symlinks other links_sum linked_paths"
	# etc/altdisk is the record altdisk adds to its clone; it is not part of the copy.
	find "$1" -mindepth 1 \( -name lost+found -o -path "$1/etc/altdisk" \) -prune -o -printf '%y %n\n' | awk '
		{ n++; t[$1]++; if ($1 != "d" && $2 > 1) { ls += $2; lp++ } }
		END { printf "%d %d %d %d %d %d %d\n", n, t["f"], t["d"], t["l"],
		      n - t["f"] - t["d"] - t["l"], ls, lp }'
}
xattr_count() { # DIR -> number of entries carrying user.* xattrs
	[[ -d $1 ]] || {
		echo 0
		return
	}
	{ getfattr -R -P -h -m '^user\.' --absolute-names -- "$1" 2>/dev/null || true; } | grep -c '^# file:' || true
}
acl_count() { # DIR -> number of entries with extended or default ACLs
	[[ -d $1 ]] || {
		echo 0
		return
	}
	{ getfacl -R -P -s -p -- "$1" 2>/dev/null || true; } | grep -c '^# file:' || true
}

compute_info() { # ROOT: fixture statistics as key=value lines
	local root=$1 st
	read -r -a st <<<"$(tree_stats "$root")"
	echo "entries=${st[0]}"
	echo "files=${st[1]}"
	echo "dirs=${st[2]}"
	echo "symlinks=${st[3]}"
	echo "other=${st[4]}"
	echo "links_sum=${st[5]}"
	echo "linked_paths=${st[6]}"
	echo "bytes_alloc=$(du -sxB1 -- "$root" | cut -f1)"
	echo "bytes_apparent=$(du -sxb -- "$root" | cut -f1)"
	echo "home_bytes_alloc=$(du -sxB1 -- "$root/home/bench" | cut -f1)"
	echo "sparse_alloc=$(du -sB1 -- "$root/home/bench/sparse" | cut -f1)"
	echo "sparse_apparent=$(du -sb -- "$root/home/bench/sparse" | cut -f1)"
	echo "xattr_entries=$(xattr_count "$root/home/bench")"
	echo "acl_entries=$(acl_count "$root/home/bench")"
}

lock_fd() { # FD MODE(-x|-s) WHAT
	flock -n "$2" "$1" && return 0
	note "waiting for the $3 lock (another bench.sh is running)..."
	flock -w 7200 "$2" "$1" || die "timed out waiting for the $3 lock"
}

build_fixture() {
	local t0 t1 loop mnt
	t0=$(date +%s.%N)
	note "building $MODE fixture $HASH in $FIXTURE_DIR (one-off; cached afterwards)"
	for d in "$CACHE_ROOT/bench-$MODE-$HASH.tmp."*; do safe_rmdir "$d"; done # stale, under lock
	BUILD_TMP=$CACHE_ROOT/bench-$MODE-$HASH.tmp.$$
	mkdir -p "$BUILD_TMP"
	truncate -s "$IMG_SIZE" "$BUILD_TMP/source.img"
	mkfs.ext4 -F -q -L altdisk-bench "$BUILD_TMP/source.img"
	attach_loop loop "$BUILD_TMP/source.img"
	mnt=$WORKDIR/build-root
	do_mount "$loop" "$mnt"
	recipe_populate "$mnt" "$WORKDIR"
	sync -f "$mnt"
	note "fixture populated; computing its statistics"
	{
		echo "hash=$HASH"
		echo "mode=$MODE"
		echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "image_size=$(stat -c %s "$BUILD_TMP/source.img")"
		compute_info "$mnt"
	} >"$BUILD_TMP/fixture.info.tmp"
	do_umount "$mnt"
	detach_loop "$loop"
	t1=$(date +%s.%N)
	echo "build_seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" >>"$BUILD_TMP/fixture.info.tmp"
	mv "$BUILD_TMP/fixture.info.tmp" "$BUILD_TMP/fixture.info"
	recipe_text >"$BUILD_TMP/recipe.txt"
	chmod 0444 "$BUILD_TMP/source.img"
	echo "$HASH" >"$BUILD_TMP/COMPLETE"
	sync -f "$BUILD_TMP/COMPLETE"
	rm -rf --one-file-system -- "$FIXTURE_DIR"
	mv -T -- "$BUILD_TMP" "$FIXTURE_DIR"
	BUILD_TMP=""
	prune_old_fixtures
	note "fixture built in $(grep '^build_seconds=' "$INFO_FILE" | cut -d= -f2) s"
}

prune_old_fixtures() { # other recipes' fixtures of this mode that nobody is using
	local d lock fd
	for d in "$CACHE_ROOT/bench-$MODE-"*; do
		[[ -d $d && $d != "$FIXTURE_DIR" && $d != *.tmp.* ]] || continue
		lock=$d.lock
		exec {fd}>"$lock"
		if flock -n -x "$fd"; then
			note "removing stale fixture $d (older recipe)"
			rm -rf --one-file-system -- "$d"
			rm -f -- "$lock"
		fi
		exec {fd}>&-
	done
}

fixture_ok() { [[ -f $MARKER && $(<"$MARKER") == "$HASH" && -f $SRC_IMG && -f $INFO_FILE ]]; }

WORKDIR=$(mktemp -d "$WORK_PARENT/altdisk-bench.XXXXXX")
mkdir -p "$CACHE_ROOT"

# Fixture: exclusive lock to build, then held shared while it is in use.
exec {FIX_LOCK}>"$CACHE_ROOT/bench-$MODE-$HASH.lock"
if ((REBUILD)) || ! fixture_ok; then
	lock_fd "$FIX_LOCK" -x fixture
	if ((REBUILD)) || ! fixture_ok; then
		build_fixture
	fi
fi
lock_fd "$FIX_LOCK" -s fixture
fixture_ok || die "fixture $FIXTURE_DIR is not complete"

declare -A INFO=()
while IFS='=' read -r k v; do [[ -n $k ]] && INFO[$k]=$v; done <"$INFO_FILE"

human_bytes() { awk -v b="$1" 'BEGIN { split("B KiB MiB GiB TiB", u, " "); i = 1
	while (b >= 1024 && i < 5) { b /= 1024; i++ } printf (i == 1 ? "%d %s" : "%.1f %s"), b, u[i] }'; }

fixture_summary() { # plain text lines
	printf 'fixture   %s (%s), built %s in %s s, image %s\n' "$HASH" "$MODE" "${INFO[built]}" \
		"${INFO[build_seconds]}" "$(human_bytes "${INFO[image_size]}")"
	printf '          %s entries: %s files, %s dirs, %s symlinks, %s other\n' "${INFO[entries]}" \
		"${INFO[files]}" "${INFO[dirs]}" "${INFO[symlinks]}" "${INFO[other]}"
	printf '          data %s allocated (%s apparent), of which home %s\n' \
		"$(human_bytes "${INFO[bytes_alloc]}")" "$(human_bytes "${INFO[bytes_apparent]}")" \
		"$(human_bytes "${INFO[home_bytes_alloc]}")"
	printf '          hard links: %s paths share an inode (nlink sum %s)\n' "${INFO[linked_paths]}" \
		"${INFO[links_sum]}"
	printf '          sparse files: %s apparent, %s allocated\n' "$(human_bytes "${INFO[sparse_apparent]}")" \
		"$(human_bytes "${INFO[sparse_alloc]}")"
	printf '          home: %s entries with user.* xattrs, %s with ACLs\n' "${INFO[xattr_entries]}" \
		"${INFO[acl_entries]}"
}

if ((FIXTURE_ONLY)); then
	fixture_summary
	echo "image     $SRC_IMG"
	exit 0
fi

# Only one benchmark at a time on this machine: they would skew each other.
exec {RUN_LOCK}>"$CACHE_ROOT/bench-run.lock"
lock_fd "$RUN_LOCK" -x run

# ---------------------------------------------------------------------------
# Machine facts, loop direct I/O probe, drop_caches check.
# ---------------------------------------------------------------------------
LOOP_OPTS=()
DIO_STATE=off
if ((USE_DIO)); then
	probe=""
	if attach_loop probe "$SRC_IMG" --read-only --direct-io=on 2>/dev/null; then
		[[ $(losetup -n -O DIO "$probe" | tr -d ' ') == 1 ]] && DIO_STATE=on
		detach_loop "$probe"
	fi
	[[ $DIO_STATE == on ]] && LOOP_OPTS=(--direct-io=on)
fi

DROP_OK=1
sync
if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
	DROP_OK=0
	note "warning: cannot write /proc/sys/vm/drop_caches; runs are NOT cold-cache"
fi
drop_caches() {
	sync
	((DROP_OK)) || return 0
	echo 3 >/proc/sys/vm/drop_caches
}

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_TOTAL=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
MACHINE="$(nproc) CPUs (${CPU_MODEL:-unknown}), $MEM_TOTAL RAM, kernel $(uname -r)"
STORAGE="images on $(findmnt -n -o FSTYPE -T "$CACHE_ROOT") ($(findmnt -n -o SOURCE -T "$CACHE_ROOT")) and $(findmnt -n -o FSTYPE -T "$WORKDIR"), loop direct I/O $DIO_STATE, page cache dropped before each run: $( ((DROP_OK)) && echo yes || echo NO)"
RSYNC_VER=$(rsync --version | awk 'NR == 1 { print $3 }')
CP_VER=$(cp --version | awk 'NR == 1 { print $NF }')
ALT_VER="not found"
if [[ -x $ALTDISK ]]; then ALT_VER=$("$ALTDISK" --version 2>/dev/null | head -n 1 || true) && ALT_VER=${ALT_VER:-unknown}; fi
TARGET_BYTES=${INFO[image_size]}
DATA_BYTES=${INFO[bytes_alloc]}

# ---------------------------------------------------------------------------
# One timed run.
# ---------------------------------------------------------------------------
verify_copy() { # ROOT -> appends to R_WARN
	local root=$1 st a n
	read -r -a st <<<"$(tree_stats "$root")"
	[[ ${st[0]} == "${INFO[entries]}" ]] || R_WARN+="entries ${st[0]} != ${INFO[entries]}; "
	[[ ${st[1]} == "${INFO[files]}" ]] || R_WARN+="files ${st[1]} != ${INFO[files]}; "
	[[ ${st[2]} == "${INFO[dirs]}" ]] || R_WARN+="dirs ${st[2]} != ${INFO[dirs]}; "
	[[ ${st[3]} == "${INFO[symlinks]}" ]] || R_WARN+="symlinks ${st[3]} != ${INFO[symlinks]}; "
	[[ ${st[4]} == "${INFO[other]}" ]] || R_WARN+="special files ${st[4]} != ${INFO[other]}; "
	[[ ${st[5]} == "${INFO[links_sum]}" ]] || R_WARN+="hard-link nlink sum ${st[5]} != ${INFO[links_sum]}; "
	n=$(xattr_count "$root/home/bench")
	[[ $n == "${INFO[xattr_entries]}" ]] || R_WARN+="xattr entries $n != ${INFO[xattr_entries]}; "
	n=$(acl_count "$root/home/bench")
	[[ $n == "${INFO[acl_entries]}" ]] || R_WARN+="ACL entries $n != ${INFO[acl_entries]}; "
	if [[ -d $root/home/bench/sparse ]]; then
		a=$(du -sB1 -- "$root/home/bench/sparse" | cut -f1)
		((a <= 2 * INFO[sparse_alloc] + 1048576)) || R_WARN+="sparse files not sparse ($(human_bytes "$a") allocated); "
	fi
	return 0
}

run_one() { # TOOL: sets R_STATUS R_WALL R_RSS R_CPU R_WARN R_MSG
	local tool=$1 src_loop="" tgt_loop="" rc=0 t0 t1 out dst
	local src_mnt=$WORKDIR/src dst_mnt=$WORKDIR/dst tgt_img=$WORKDIR/target.img
	local log=$WORKDIR/$tool.log rss=$WORKDIR/$tool.time
	R_STATUS=FAILED R_WALL="" R_RSS="" R_CPU="" R_WARN="" R_MSG=""
	CLEANUP_MSGS=()
	if [[ $tool == altdisk && ! -x $ALTDISK ]]; then
		R_MSG="altdisk binary not found or not executable: $ALTDISK (cargo build --release, or set ALTDISK=...)"
		return 0
	fi

	attach_loop src_loop "$SRC_IMG" --read-only "${LOOP_OPTS[@]}" || {
		R_MSG="cannot attach $SRC_IMG"
		return 0
	}
	do_mount "$src_loop" "$src_mnt" -o ro || {
		R_MSG="cannot mount $src_loop"
		release_all
		return 0
	}
	rm -f -- "$tgt_img"
	truncate -s "$TARGET_BYTES" "$tgt_img"
	if [[ $tool == altdisk ]]; then
		attach_loop tgt_loop "$tgt_img" --partscan "${LOOP_OPTS[@]}" || R_MSG="cannot attach target image"
	else
		attach_loop tgt_loop "$tgt_img" "${LOOP_OPTS[@]}" || R_MSG="cannot attach target image"
	fi
	if [[ -z $R_MSG && $tool != altdisk ]]; then
		# Not timed.  Full inode-table init so the kernel's lazy init thread
		# does not compete with the timed copy.
		mkfs.ext4 -F -q -E lazy_itable_init=0,lazy_journal_init=0 "$tgt_loop" >"$log" 2>&1 ||
			R_MSG="mkfs.ext4 of target failed: $(tail -n 2 "$log" | tr '\n' ' ')"
		[[ -n $R_MSG ]] || do_mount "$tgt_loop" "$dst_mnt" || R_MSG="cannot mount target"
	fi
	if [[ -n $R_MSG ]]; then
		release_all
		rm -f -- "$tgt_img"
		return 0
	fi

	local cmd=()
	case $tool in
	rsync) cmd=(rsync -aHAXS --numeric-ids "$src_mnt/" "$dst_mnt/") dst=$dst_mnt ;;
	cp) cmd=(cp -a "$src_mnt/." "$dst_mnt/") dst=$dst_mnt ;;
	altdisk)
		dst=$WORKDIR/clone
		mkdir -p "$dst"
		ALT_MNT=$dst
		cmd=("$ALTDISK" copy --source "$src_mnt" -d "$tgt_loop" -P1 --force --mount-at "$dst")
		;;
	esac

	drop_caches
	t0=$(date +%s.%N)
	/usr/bin/time -f 'RSS_CPU %M %U %S' -o "$rss" -- "${cmd[@]}" >"$log" 2>&1 </dev/null || rc=$?
	((rc == 0)) && mountpoint -q -- "$dst" && sync -f "$dst" # flush: part of the timed copy
	t1=$(date +%s.%N)

	if ((rc != 0)); then
		R_MSG="'${cmd[*]}' exited $rc: $(tail -n 5 "$log" | tr '\n' ' ')"
		[[ -s $log ]] || R_MSG+="(no output)"
	elif ! mountpoint -q -- "$dst"; then
		R_MSG="exited 0 but nothing is mounted at $dst"
	else
		R_STATUS=ok
		R_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
		out=$(awk '$1 == "RSS_CPU" { print $2, $3 + $4 }' "$rss" | tail -n 1)
		R_RSS=${out% *} R_CPU=${out#* }
		verify_copy "$dst"
	fi
	if [[ $R_STATUS != ok && -s $log ]]; then
		note "--- last lines of $tool output ---"
		tail -n 20 "$log" >&2
		note "---"
	fi

	release_all
	rm -f -- "$tgt_img"
	local m
	for m in "${CLEANUP_MSGS[@]}"; do R_WARN+="cleanup: $m; "; done
	return 0
}

# ---------------------------------------------------------------------------
# Runs, interleaved.
# ---------------------------------------------------------------------------
declare -A TIMES=() RSSMAX=() CPUS=() OKN=() FAILN=() WARNS=() ERRS=()
for t in "${TOOL_LIST[@]}"; do
	TIMES[$t]="" RSSMAX[$t]=0 CPUS[$t]="" OKN[$t]=0 FAILN[$t]=0 WARNS[$t]="" ERRS[$t]=""
done

note "fixture $SRC_IMG: $(human_bytes "$DATA_BYTES") allocated, ${INFO[entries]} entries"
note "$RUNS run(s) of: ${TOOL_LIST[*]}"
for ((r = 1; r <= RUNS; r++)); do
	for t in "${TOOL_LIST[@]}"; do
		run_one "$t"
		if [[ $R_STATUS == ok ]]; then
			TIMES[$t]+="$R_WALL "
			CPUS[$t]+="$R_CPU "
			OKN[$t]=$((OKN[$t] + 1))
			((R_RSS > RSSMAX[$t])) && RSSMAX[$t]=$R_RSS
			note "$(printf 'run %d/%d %-7s %8.2f s %8.1f MB/s  max RSS %6.1f MiB  %s' "$r" "$RUNS" "$t" \
				"$R_WALL" "$(awk -v b="$DATA_BYTES" -v s="$R_WALL" 'BEGIN { print b / s / 1e6 }')" \
				"$(awk -v k="$R_RSS" 'BEGIN { print k / 1024 }')" "${R_WARN:-verified}")"
		else
			FAILN[$t]=$((FAILN[$t] + 1))
			[[ ${ERRS[$t]} == *"$R_MSG"* ]] || ERRS[$t]+="$R_MSG; "
			note "$(printf 'run %d/%d %-7s FAILED: %s' "$r" "$RUNS" "$t" "$R_MSG")"
		fi
		if [[ -n $R_WARN && ${WARNS[$t]} != *"$R_WARN"* ]]; then WARNS[$t]+="$R_WARN"; fi
	done
done

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 }
	END { if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

RSYNC_MED=""
[[ -n ${TIMES[rsync]:-} ]] && RSYNC_MED=$(median <<<"${TIMES[rsync]}")
ROWS=() # tool|runs|median|mbs|ratio|cpu|rss|all|notes
STATUS=0
for t in "${TOOL_LIST[@]}"; do
	notes=""
	[[ $t == altdisk ]] && notes="timed incl. partitioning + mkfs; "
	[[ $t != altdisk ]] && notes="mkfs not timed; "
	((FAILN[$t])) && STATUS=1 && notes+="${FAILN[$t]} run(s) FAILED: ${ERRS[$t]}"
	[[ -n ${WARNS[$t]} ]] && notes+="WARNING: ${WARNS[$t]}"
	notes=${notes%; }
	if ((OKN[$t] == 0)); then
		ROWS+=("$t|0/$RUNS|FAILED|-|-|-|-|-|$notes")
		continue
	fi
	med=$(median <<<"${TIMES[$t]}")
	cpu=$(median <<<"${CPUS[$t]}")
	mbs=$(awk -v b="$DATA_BYTES" -v s="$med" 'BEGIN { printf "%.1f", b / s / 1e6 }')
	ratio="-"
	[[ -n $RSYNC_MED ]] && ratio=$(awk -v r="$RSYNC_MED" -v s="$med" 'BEGIN { printf "%.2f", r / s }')
	rssm=$(awk -v k="${RSSMAX[$t]}" 'BEGIN { printf "%.1f", k / 1024 }')
	all=$(tr ' ' '\n' <<<"${TIMES[$t]}" | grep . | awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $1 }')
	ROWS+=("$t|${OKN[$t]}/$RUNS|$(printf '%.2f' "$med")|$mbs|$ratio|$(printf '%.1f' "$cpu")|$rssm|$all|$notes")
done

print_text() {
	echo
	echo "altdisk copy benchmark ($MODE fixture, $RUNS run(s) per tool, interleaved, cold cache)"
	echo "machine   $MACHINE"
	echo "storage   $STORAGE"
	echo "tools     altdisk: $ALT_VER ($ALTDISK); rsync $RSYNC_VER (-aHAXS --numeric-ids); cp $CP_VER (-a)"
	fixture_summary
	echo "MB/s = allocated source bytes ($(human_bytes "$DATA_BYTES")) / median wall time; wall time includes"
	echo "the final flush (sync -f) of the target; vs rsync = rsync time / tool time (>1 = faster)."
	echo
	printf '%-8s %5s %9s %8s %8s %7s %8s  %-22s %s\n' tool runs median_s MB/s "vs rsync" cpu_s "RSS MiB" "all runs (s)" notes
	local row f
	for row in "${ROWS[@]}"; do
		IFS='|' read -r -a f <<<"$row"
		printf '%-8s %5s %9s %8s %8s %7s %8s  %-22s %s\n' "${f[@]}"
	done
}

print_markdown() {
	echo "# altdisk copy benchmark"
	echo
	echo "$MODE fixture, $RUNS run(s) per tool, interleaved, page cache dropped before each run."
	echo
	echo "| tool | runs | median s | MB/s | vs rsync | CPU s | max RSS MiB | all runs (s) | notes |"
	echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"
	local row f
	for row in "${ROWS[@]}"; do
		IFS='|' read -r -a f <<<"$row"
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${f[@]}"
	done
	echo
	echo "MB/s = allocated source bytes / median wall time (10^6 bytes); wall time includes the"
	echo "final flush of the target. vs rsync = rsync median / tool median (>1 = faster than rsync)."
	echo "altdisk is timed including partitioning and mkfs; rsync and cp copy into a filesystem"
	echo "made beforehand (untimed). Max RSS is the largest resident set of the tool or any child."
	echo
	echo "## Machine"
	echo
	echo "- $MACHINE"
	echo "- $STORAGE"
	echo "- altdisk: $ALT_VER (\`$ALTDISK\`); rsync $RSYNC_VER (\`-aHAXS --numeric-ids\`); cp $CP_VER (\`-a\`)"
	echo
	echo "## Fixture"
	echo
	echo '```'
	fixture_summary
	echo '```'
}

print_text
if [[ -n $MARKDOWN ]]; then
	print_markdown >"$MARKDOWN"
	note "Markdown report written to $MARKDOWN"
fi
exit "$STATUS"
