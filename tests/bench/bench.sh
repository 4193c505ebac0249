#!/usr/bin/env bash
# tests/bench/bench.sh: side-by-side copy benchmark, altdisk vs rsync vs cp vs
# partclone, on an idle machine and on a busy one; refresh and verify; a million
# files.
#
# Builds (once, cached) a root-filesystem fixture in an ext4 image, then, for
# each run, attaches it read-only on a loop device, makes a fresh target image
# on another loop device, drops the page cache and times each tool copying the
# tree.  It reports; it never passes or fails on timing.  See README.md.
#
# Needs root, loop devices, mkfs.ext4, rsync, cp, partclone, GNU time,
# setfattr/setfacl and (full fixture only) mmdebstrap with access to a Debian
# mirror.

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
TOOLS="altdisk,rsync,cp,partclone"
BUSY=0
REFRESH=0
MILLION=0
REBUILD=0
FIXTURE_ONLY=0
USE_DIO=1

usage() {
	cat <<'EOF'
Usage: bench.sh [--quick] [--runs N] [--tools altdisk,rsync,cp,partclone] [--busy]
                [--refresh] [--million] [--markdown FILE] [--rebuild] [--fixture-only]
                [--no-direct-io] [-h|--help]

  --quick          small synthetic fixture (no mmdebstrap), for a fast smoke run
  --runs N         timed runs per tool, interleaved (default 3)
  --tools LIST     comma-separated subset of altdisk,rsync,cp,partclone (default: all)
  --busy           the same runs again while another process keeps a CPU busy
  --refresh        refresh after 1 % of the files changed vs rsync --delete, and verify
  --million        a million files and a million hard links (long: builds two fixtures)
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
	--busy) BUSY=1 ;;
	--refresh) REFRESH=1 ;;
	--million) MILLION=1 ;;
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
	case $t in altdisk | rsync | cp | partclone) ;; *) die "unknown tool in --tools: $t" ;; esac
done

((EUID == 0)) || die "must run as root (loop devices, mount, drop_caches)"
for c in losetup mount umount mountpoint findmnt mkfs.ext4 rsync cp du find awk \
	sha256sum flock truncate dd perl setfattr getfattr setfacl getfacl sync; do
	command -v "$c" >/dev/null || die "missing command: $c (apt-get install rsync acl attr e2fsprogs util-linux)"
done
[[ -x /usr/bin/time ]] || die "missing /usr/bin/time (apt-get install time)"
if [[ ,$TOOLS, == *,partclone,* ]]; then
	command -v partclone.ext4 >/dev/null || die "missing partclone.ext4 (apt-get install partclone), or leave it out of --tools"
fi
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

TRACKER_PID=""
stop_tracker() {
	[[ -n $TRACKER_PID ]] || return 0
	kill "$TRACKER_PID" 2>/dev/null || true
	wait "$TRACKER_PID" 2>/dev/null || true
	TRACKER_PID=""
}
release_all() { # undo everything, most recent first
	local i dev
	stop_tracker
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
	# What altdisk adds to its clone is not part of the copy: its record, its own copy of
	# altdisk and the boot units that call it (core/src/boot/units.rs, own_paths).
	find "$1" -mindepth 1 \( -name lost+found -o -path "$1/etc/altdisk" -o -path "$1/usr/local/lib/altdisk" \
		-o -path "$1/etc/systemd/system/altdisk-*.service" \
		-o -path "$1/etc/systemd/system/multi-user.target.wants/altdisk-*.service" \) -prune -o -printf '%y %n\n' | awk '
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

HOG_PID=""
start_hog() { # another process keeping one CPU busy, as on a machine doing other work
	yes >/dev/null &
	HOG_PID=$!
}
stop_hog() {
	[[ -n $HOG_PID ]] || return 0
	kill "$HOG_PID" 2>/dev/null || true
	wait "$HOG_PID" 2>/dev/null || true
	HOG_PID=""
}

run_one() { # TOOL [BUSY]: sets R_STATUS R_WALL R_RSS R_CPU R_WARN R_MSG
	local tool=$1 busy=${2:-0} src_loop="" tgt_loop="" rc=0 t0 t1 out dst
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
	# partclone reads the device itself, and refuses a mounted filesystem.
	if [[ $tool != partclone ]]; then
		do_mount "$src_loop" "$src_mnt" -o ro || {
			R_MSG="cannot mount $src_loop"
			release_all
			return 0
		}
	fi
	rm -f -- "$tgt_img"
	truncate -s "$TARGET_BYTES" "$tgt_img"
	if [[ $tool == altdisk ]]; then
		attach_loop tgt_loop "$tgt_img" --partscan "${LOOP_OPTS[@]}" || R_MSG="cannot attach target image"
	else
		attach_loop tgt_loop "$tgt_img" "${LOOP_OPTS[@]}" || R_MSG="cannot attach target image"
	fi
	if [[ -z $R_MSG && $tool != altdisk && $tool != partclone ]]; then
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
	partclone) cmd=(partclone.ext4 -q -b -s "$src_loop" -o "$tgt_loop") dst=$dst_mnt ;;
	esac

	drop_caches
	((busy)) && start_hog
	t0=$(date +%s.%N)
	/usr/bin/time -f 'RSS_CPU %M %U %S' -o "$rss" -- "${cmd[@]}" >"$log" 2>&1 </dev/null || rc=$?
	# flush: part of the timed copy (partclone wrote the device: fsync it)
	if [[ $tool == partclone ]]; then
		((rc == 0)) && sync -- "$tgt_loop"
	else
		((rc == 0)) && mountpoint -q -- "$dst" && sync -f "$dst"
	fi
	t1=$(date +%s.%N)
	stop_hog
	if [[ $tool == partclone ]] && ((rc == 0)); then
		# The copy of the filesystem, looked at like the others (not timed).
		do_mount "$tgt_loop" "$dst" -o ro,noload || R_MSG="cannot mount the partclone copy"
	fi

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
# Runs, interleaved; on an idle machine, then (--busy) with a CPU kept busy.
# ---------------------------------------------------------------------------
SCENARIOS=(idle)
((BUSY)) && SCENARIOS+=(busy)
KEYS=() # scenario:tool
declare -A TIMES=() RSSMAX=() CPUS=() OKN=() FAILN=() WARNS=() ERRS=()
for sc in "${SCENARIOS[@]}"; do
	for t in "${TOOL_LIST[@]}"; do
		k=$sc:$t
		KEYS+=("$k")
		TIMES[$k]="" RSSMAX[$k]=0 CPUS[$k]="" OKN[$k]=0 FAILN[$k]=0 WARNS[$k]="" ERRS[$k]=""
	done
done

note "fixture $SRC_IMG: $(human_bytes "$DATA_BYTES") allocated, ${INFO[entries]} entries"
note "$RUNS run(s) of: ${TOOL_LIST[*]} (${SCENARIOS[*]})"
for sc in "${SCENARIOS[@]}"; do
	for ((r = 1; r <= RUNS; r++)); do
		for t in "${TOOL_LIST[@]}"; do
			k=$sc:$t
			run_one "$t" "$([[ $sc == busy ]] && echo 1 || echo 0)"
			if [[ $R_STATUS == ok ]]; then
				TIMES[$k]+="$R_WALL "
				CPUS[$k]+="$R_CPU "
				OKN[$k]=$((OKN[$k] + 1))
				((R_RSS > RSSMAX[$k])) && RSSMAX[$k]=$R_RSS
				note "$(printf 'run %d/%d %-4s %-9s %8.2f s %8.1f MB/s  max RSS %6.1f MiB  %s' "$r" "$RUNS" "$sc" "$t" \
					"$R_WALL" "$(awk -v b="$DATA_BYTES" -v s="$R_WALL" 'BEGIN { print b / s / 1e6 }')" \
					"$(awk -v k="$R_RSS" 'BEGIN { print k / 1024 }')" "${R_WARN:-verified}")"
			else
				FAILN[$k]=$((FAILN[$k] + 1))
				[[ ${ERRS[$k]} == *"$R_MSG"* ]] || ERRS[$k]+="$R_MSG; "
				note "$(printf 'run %d/%d %-4s %-9s FAILED: %s' "$r" "$RUNS" "$sc" "$t" "$R_MSG")"
			fi
			if [[ -n $R_WARN && ${WARNS[$k]} != *"$R_WARN"* ]]; then WARNS[$k]+="$R_WARN"; fi
		done
	done
done

median() { tr ' ' '\n' | { grep . || true; } | sort -g | awk '{ a[NR] = $1 }
	END { if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# ---------------------------------------------------------------------------
# --refresh: a clone kept current. A writable copy of the fixture is cloned by
# altdisk and copied by rsync (not timed); then, per run, 1 % of its files
# change and each brings its copy in line: `altdisk copy --refresh` (the clone
# asleep: woken, refreshed, flushed, put to sleep) against `rsync -aHAXS
# --delete`, cold cache, flush included; then `altdisk verify` of the clone.
# ---------------------------------------------------------------------------
REFRESH_ROWS=() # what|runs|median|all|notes
refresh_bench() {
	local rw_img=$WORKDIR/source-rw.img src_loop tgt_loop rs_loop src=$WORKDIR/rw-src
	local clone=$WORKDIR/rw-clone rs_dst=$WORKDIR/rw-rsync log=$WORKDIR/refresh.log
	local r t0 t1 n changed equal rt=() st=() vt=() notes=""
	note "refresh: copying the fixture to a writable image (not timed)"
	cp --sparse=always -- "$SRC_IMG" "$rw_img"
	chmod 0644 "$rw_img"
	attach_loop src_loop "$rw_img" "${LOOP_OPTS[@]}"
	do_mount "$src_loop" "$src"
	truncate -s "$TARGET_BYTES" "$WORKDIR/rw-clone.img" "$WORKDIR/rw-rsync.img"
	attach_loop tgt_loop "$WORKDIR/rw-clone.img" --partscan "${LOOP_OPTS[@]}"
	attach_loop rs_loop "$WORKDIR/rw-rsync.img" "${LOOP_OPTS[@]}"
	mkfs.ext4 -F -q -E lazy_itable_init=0,lazy_journal_init=0 "$rs_loop"
	do_mount "$rs_loop" "$rs_dst"
	mkdir -p "$clone"
	# The change tracker (altdisk-changes.service on an installed system) watches the source
	# from before the clone is made.
	"$ALTDISK" track --source "$src" 2>>"$WORKDIR/tracker.log" &
	TRACKER_PID=$!
	for ((n = 0; n < 200; n++)); do [[ -e /run/altdisk/changes/$TRACKER_PID.json ]] && break; sleep 0.1; done
	ALT_MNT=$clone
	"$ALTDISK" copy --source "$src" -d "$tgt_loop" -P1 --force --mount-at "$clone" >"$log" 2>&1 || {
		REFRESH_ROWS+=("refresh|0/$RUNS|FAILED|-|the first clone failed: $(tail -n 3 "$log" | tr '\n' ' ')")
		return 0
	}
	"$ALTDISK" sleep --mount-at "$clone" >>"$log" 2>&1
	# Left awake by -P1, the clone is compared in full once (not timed); from then on the
	# tracker's list is enough.
	"$ALTDISK" copy --refresh --source "$src" -d "$tgt_loop" --mount-at "$clone" >>"$log" 2>&1
	ALT_MNT=""
	rsync -aHAXS --numeric-ids "$src/" "$rs_dst/"
	n=$(find "$src" -xdev -type f | wc -l)
	changed=$(((n + 99) / 100))
	# shellcheck disable=SC2016 # $RUN and $f belong to the inner shell
	local change='for f; do printf "changed in run %s\n" "$RUN" >>"$f"; done'
	local how tracked=0 walked=0 wt=""
	# One run more than asked: the last without the tracker, for comparison.
	for ((r = 1; r <= RUNS + 1; r++)); do
		((r <= RUNS)) || stop_tracker
		# 1 % of the files change: their data grows by a line (a different 1 % each run).
		find "$src" -xdev -type f -links 1 -size -10M -print0 | shuf -z -n "$changed" --random-source=<(yes "$r") |
			RUN=$r xargs -0 -r sh -c "$change" sh
		sync -f "$src"
		drop_caches
		t0=$(date +%s.%N)
		ALT_MNT=$clone
		/usr/bin/time -f 'RSS_CPU %M %U %S' -o "$WORKDIR/refresh.time" -- \
			"$ALTDISK" copy --refresh --source "$src" -d "$tgt_loop" --mount-at "$clone" >"$log" 2>&1 </dev/null || {
			notes+="refresh run $r failed: $(tail -n 3 "$log" | tr '\n' ' '); "
			ALT_MNT=""
			continue
		}
		t1=$(date +%s.%N)
		ALT_MNT=""
		how=$(grep -m1 -e 'changes tracked since' -e 'comparing every directory' "$log" || true)
		if ((r > RUNS)); then
			wt=$(secs "$t0" "$t1")
			note "refresh without the tracker: $wt s ($how)"
			break
		fi
		rt+=("$(secs "$t0" "$t1")")
		if [[ $how == *"changes tracked"* ]]; then
			tracked=$((tracked + 1))
		else
			walked=$((walked + 1))
			notes+="run $r: $how; "
		fi
		drop_caches
		t0=$(date +%s.%N)
		rsync -aHAXS --delete --numeric-ids "$src/" "$rs_dst/" >"$log" 2>&1 && sync -f "$rs_dst"
		t1=$(date +%s.%N)
		st+=("$(secs "$t0" "$t1")")
		drop_caches
		t0=$(date +%s.%N)
		equal=$("$ALTDISK" verify --json --source "$src" "$tgt_loop" 2>>"$log" | awk -F': ' '/"equal"/ { gsub(/[ ,]/, "", $2); print $2; exit }') || true
		t1=$(date +%s.%N)
		vt+=("$(secs "$t0" "$t1")")
		[[ $equal == true ]] || notes+="verify after refresh run $r said equal=${equal:-?}; "
		note "$(printf 'refresh run %d/%d: %d files changed; altdisk refresh %s s, rsync --delete %s s, verify %s s (equal: %s)' \
			"$r" "$RUNS" "$changed" "${rt[-1]}" "${st[-1]}" "${vt[-1]}" "${equal:-?}")"
	done
	local full med
	full=$(median <<<"${TIMES[idle:altdisk]:-}")
	med=$(median <<<"${rt[*]}")
	local pct="-"
	[[ -n $full && -n $med ]] && pct=$(awk -v a="$med" -v b="$full" 'BEGIN { printf "%.1f %%", a / b * 100 }')
	REFRESH_ROWS+=("altdisk refresh|${#rt[@]}/$RUNS|${med:--}|${rt[*]}|$changed files changed (1 %); $pct of a full clone (${full:-?} s); $tracked run(s) by the tracker's list, $walked compared in full; RSS $(awk '$1 == "RSS_CPU" { printf "%.1f MiB", $2 / 1024 }' "$WORKDIR/refresh.time")")
	local wpct="-"
	[[ -n $full && -n $wt ]] && wpct=$(awk -v a="$wt" -v b="$full" 'BEGIN { printf "%.1f %%", a / b * 100 }')
	REFRESH_ROWS+=("refresh, no tracker|$([[ -n $wt ]] && echo 1 || echo 0)/1|${wt:--}|${wt:--}|every directory of both compared; $wpct of a full clone")
	REFRESH_ROWS+=("rsync --delete|${#st[@]}/$RUNS|$(median <<<"${st[*]}")|${st[*]}|-aHAXS --numeric-ids, into the copy it made")
	REFRESH_ROWS+=("altdisk verify|${#vt[@]}/$RUNS|$(median <<<"${vt[*]}")|${vt[*]}|whole clone, every file hashed (xxh3-128), read-only mount; ${notes:-equal after every refresh}")
	release_all
	rm -f -- "$rw_img" "$WORKDIR/rw-clone.img" "$WORKDIR/rw-rsync.img"
}
((REFRESH)) && { [[ -x $ALTDISK ]] && refresh_bench || REFRESH_ROWS+=("refresh|0/$RUNS|FAILED|-|no altdisk binary"); }

# ---------------------------------------------------------------------------
# --million: sources of a million files and of a million hard links, and a
# quarter of each, for how time and memory grow. Fixtures are cached like the
# main one. altdisk and cp, one run each, cold cache.
# ---------------------------------------------------------------------------
MILLION_ROWS=() # fixture|tool|seconds|files/s|RSS MiB|notes
million_fixture() { # NAME FILES LINKS -> image path on stdout (built once)
	local name=$1 files=$2 links=$3 dir img mnt loop
	dir=$CACHE_ROOT/bench-scale-$name-v$BENCH_VERSION
	img=$dir/source.img
	if [[ ! -f $dir/COMPLETE ]]; then
		note "building the $name fixture ($files files, $links links each; one-off)"
		rm -rf --one-file-system -- "$dir"
		mkdir -p "$dir"
		truncate -s 12G "$img"
		mkfs.ext4 -F -q -N $((files * links + files / 10 + 100000)) -E lazy_itable_init=0 "$img"
		attach_loop loop "$img"
		mnt=$WORKDIR/scale-build
		do_mount "$loop" "$mnt"
		perl -e '
			my ($base, $n, $links) = @ARGV; my $per = 1000; my $buf = "x" x 100;
			for (my $i = 0; $i < $n; $i++) {
				my $d = sprintf("%s/d%04d", $base, int($i / $per));
				mkdir $d unless -d $d;
				my $f = sprintf("%s/f%04d", $d, $i % $per);
				open(my $o, ">", $f) or die "$f: $!"; print $o $buf; close($o);
				for (my $l = 1; $l < $links; $l++) {
					my $ld = sprintf("%s/l%d-%04d", $base, $l, int($i / $per));
					mkdir $ld unless -d $ld;
					link($f, sprintf("%s/f%04d", $ld, $i % $per)) or die "link: $!";
				}
			}' "$mnt" "$files" "$links"
		sync -f "$mnt"
		do_umount "$mnt"
		detach_loop "$loop"
		chmod 0444 "$img"
		echo complete >"$dir/COMPLETE"
	fi
	printf '%s' "$img"
}
million_run() { # IMG TOOL -> R_WALL R_RSS R_STATUS
	local img=$1 tool=$2 src_loop tgt_loop src=$WORKDIR/m-src dst=$WORKDIR/m-dst rc=0 t0 t1
	R_STATUS=FAILED R_WALL="" R_RSS=""
	attach_loop src_loop "$img" --read-only "${LOOP_OPTS[@]}"
	do_mount "$src_loop" "$src" -o ro
	truncate -s 12G "$WORKDIR/m-target.img"
	if [[ $tool == altdisk ]]; then
		attach_loop tgt_loop "$WORKDIR/m-target.img" --partscan "${LOOP_OPTS[@]}"
		mkdir -p "$dst"
		ALT_MNT=$dst
		cmd=("$ALTDISK" copy --source "$src" -d "$tgt_loop" -P1 --force --mount-at "$dst")
	else
		attach_loop tgt_loop "$WORKDIR/m-target.img" "${LOOP_OPTS[@]}"
		mkfs.ext4 -F -q -N 2200000 -E lazy_itable_init=0,lazy_journal_init=0 "$tgt_loop"
		do_mount "$tgt_loop" "$dst"
		cmd=(cp -a "$src/." "$dst/")
	fi
	drop_caches
	t0=$(date +%s.%N)
	/usr/bin/time -f 'RSS_CPU %M %U %S' -o "$WORKDIR/m.time" -- "${cmd[@]}" >"$WORKDIR/m.log" 2>&1 </dev/null || rc=$?
	((rc == 0)) && sync -f "$dst"
	t1=$(date +%s.%N)
	if ((rc == 0)); then
		R_STATUS=ok
		R_WALL=$(secs "$t0" "$t1")
		R_RSS=$(awk '$1 == "RSS_CPU" { print $2 }' "$WORKDIR/m.time" | tail -n 1)
	else
		note "$tool on $img failed: $(tail -n 3 "$WORKDIR/m.log" | tr '\n' ' ')"
	fi
	release_all
	rm -f -- "$WORKDIR/m-target.img"
}
million_bench() {
	local spec name files links img tool paths
	for spec in "files-250k 250000 1" "files-1m 1000000 1" "links-1m 100000 10"; do
		read -r name files links <<<"$spec"
		img=$(million_fixture "$name" "$files" "$links")
		paths=$((files * links))
		for tool in altdisk cp; do
			million_run "$img" "$tool"
			if [[ $R_STATUS == ok ]]; then
				MILLION_ROWS+=("$name|$tool|$R_WALL|$(awk -v n="$paths" -v s="$R_WALL" 'BEGIN { printf "%.0f", n / s }')|$(awk -v k="$R_RSS" 'BEGIN { printf "%.1f", k / 1024 }')|$paths paths, $files inodes")
			else
				MILLION_ROWS+=("$name|$tool|FAILED|-|-|see the log above")
			fi
			note "million: ${MILLION_ROWS[-1]}"
		done
	done
}
((MILLION)) && million_bench

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
ROWS=() # scenario|tool|runs|median|mbs|vs rsync|vs cp|cpu|rss|all|notes
STATUS=0
for k in "${KEYS[@]}"; do
	sc=${k%%:*} t=${k#*:}
	notes=""
	case $t in
	altdisk) notes="timed incl. partitioning + mkfs; " ;;
	partclone) notes="used blocks of the filesystem, no mkfs; " ;;
	*) notes="mkfs not timed; " ;;
	esac
	((FAILN[$k])) && STATUS=1 && notes+="${FAILN[$k]} run(s) FAILED: ${ERRS[$k]}"
	[[ -n ${WARNS[$k]} ]] && notes+="WARNING: ${WARNS[$k]}"
	notes=${notes%; }
	if ((OKN[$k] == 0)); then
		ROWS+=("$sc|$t|0/$RUNS|FAILED|-|-|-|-|-|-|$notes")
		continue
	fi
	med=$(median <<<"${TIMES[$k]}")
	cpu=$(median <<<"${CPUS[$k]}")
	mbs=$(awk -v b="$DATA_BYTES" -v s="$med" 'BEGIN { printf "%.1f", b / s / 1e6 }')
	vs_rsync="-" vs_cp="-"
	ref=$(median <<<"${TIMES[$sc:rsync]:-}")
	[[ -n $ref ]] && vs_rsync=$(awk -v r="$ref" -v s="$med" 'BEGIN { printf "%.2f", r / s }')
	ref=$(median <<<"${TIMES[$sc:cp]:-}")
	[[ -n $ref ]] && vs_cp=$(awk -v r="$ref" -v s="$med" 'BEGIN { printf "%.2f", r / s }')
	rssm=$(awk -v k="${RSSMAX[$k]}" 'BEGIN { printf "%.1f", k / 1024 }')
	all=$(tr ' ' '\n' <<<"${TIMES[$k]}" | { grep . || true; } | awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), $1 }')
	ROWS+=("$sc|$t|${OKN[$k]}/$RUNS|$(printf '%.2f' "$med")|$mbs|$vs_rsync|$vs_cp|$(printf '%.1f' "$cpu")|$rssm|$all|$notes")
done
for row in "${REFRESH_ROWS[@]}"; do [[ $row == *FAILED* || $row == *failed* ]] && STATUS=1; done
for row in "${MILLION_ROWS[@]}"; do [[ $row == *FAILED* ]] && STATUS=1; done

print_text() {
	echo
	echo "altdisk copy benchmark ($MODE fixture, $RUNS run(s) per tool, interleaved, cold cache)"
	echo "machine   $MACHINE"
	echo "storage   $STORAGE"
	echo "tools     altdisk: $ALT_VER ($ALTDISK); rsync $RSYNC_VER (-aHAXS --numeric-ids); cp $CP_VER (-a); partclone.ext4 -b"
	fixture_summary
	echo "MB/s = allocated source bytes ($(human_bytes "$DATA_BYTES")) / median wall time; wall time includes"
	echo "the final flush of the target; vs X = X's time / tool time (>1 = faster), same scenario;"
	echo "busy = another process (yes >/dev/null) keeps one CPU busy during the run."
	echo
	printf '%-5s %-9s %5s %9s %8s %8s %6s %7s %8s  %-22s %s\n' scen tool runs median_s MB/s "vs rsync" "vs cp" cpu_s "RSS MiB" "all runs (s)" notes
	local row f
	for row in "${ROWS[@]}"; do
		IFS='|' read -r -a f <<<"$row"
		printf '%-5s %-9s %5s %9s %8s %8s %6s %7s %8s  %-22s %s\n' "${f[@]}"
	done
	if ((${#REFRESH_ROWS[@]})); then
		echo
		echo "refresh after 1 % of the files changed (cold cache, flush included)"
		printf '%-16s %5s %9s  %-22s %s\n' what runs median_s "all runs (s)" notes
		for row in "${REFRESH_ROWS[@]}"; do
			IFS='|' read -r -a f <<<"$row"
			printf '%-16s %5s %9s  %-22s %s\n' "${f[@]}"
		done
	fi
	if ((${#MILLION_ROWS[@]})); then
		echo
		echo "scale: one run each, cold cache, flush included; paths/s = paths copied per second"
		printf '%-11s %-8s %9s %9s %8s  %s\n' fixture tool seconds paths/s "RSS MiB" notes
		for row in "${MILLION_ROWS[@]}"; do
			IFS='|' read -r -a f <<<"$row"
			printf '%-11s %-8s %9s %9s %8s  %s\n' "${f[@]}"
		done
	fi
}

print_markdown() {
	echo "# altdisk copy benchmark"
	echo
	echo "$MODE fixture, $RUNS run(s) per tool, interleaved, page cache dropped before each run."
	echo
	echo "| scenario | tool | runs | median s | MB/s | vs rsync | vs cp | CPU s | max RSS MiB | all runs (s) | notes |"
	echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
	local row f
	for row in "${ROWS[@]}"; do
		IFS='|' read -r -a f <<<"$row"
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${f[@]}"
	done
	if ((${#REFRESH_ROWS[@]})); then
		echo
		echo "| refresh | runs | median s | all runs (s) | notes |"
		echo "| --- | --- | ---: | --- | --- |"
		for row in "${REFRESH_ROWS[@]}"; do
			IFS='|' read -r -a f <<<"$row"
			printf '| %s | %s | %s | %s | %s |\n' "${f[@]}"
		done
	fi
	if ((${#MILLION_ROWS[@]})); then
		echo
		echo "| fixture | tool | seconds | paths/s | max RSS MiB | notes |"
		echo "| --- | --- | ---: | ---: | ---: | --- |"
		for row in "${MILLION_ROWS[@]}"; do
			IFS='|' read -r -a f <<<"$row"
			printf '| %s | %s | %s | %s | %s | %s |\n' "${f[@]}"
		done
	fi
	echo
	echo "MB/s = allocated source bytes / median wall time (10^6 bytes); wall time includes the"
	echo "final flush of the target. vs X = X's median / tool median, same scenario (>1 = faster)."
	echo "altdisk is timed including partitioning and mkfs; rsync and cp copy into a filesystem"
	echo "made beforehand (untimed); partclone copies the used blocks device to device."
	echo "Max RSS is the largest resident set of the tool or any child."
	echo
	echo "## Machine"
	echo
	echo "- $MACHINE"
	echo "- $STORAGE"
	echo "- altdisk: $ALT_VER (\`$ALTDISK\`); rsync $RSYNC_VER (\`-aHAXS --numeric-ids\`); cp $CP_VER (\`-a\`); \`partclone.ext4 -b\`"
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
