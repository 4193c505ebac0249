#!/bin/bash
# Build (or reuse) altdisk's rescue ISO: a hybrid image (El Torito for BIOS and UEFI, a
# partition table for USB sticks) holding a small Debian 12 live system (live-boot,
# squashfs) with the altdisk packages installed by apt, altdiskd started by D-Bus
# activation, a text menu on every console and, when the altdisk-gui package is given,
# the GUI in a weston kiosk on tty1.
#
# Usage: image-build/build-iso.sh [--debs DIR | --deb FILE...] [--output FILE]
#        image-build/build-iso.sh --print-outdir [--debs DIR | --deb FILE...]
#   --debs DIR     where the packages are (default: target/debian of this checkout): the
#                  newest altdisk_*_amd64.deb (required) and altdisk-gui_*_amd64.deb
#                  (optional: without it there is no kiosk session, and the build says so)
#   --deb FILE     a package file, instead of --debs (repeat it: altdisk, altdisk-gui)
#   --output FILE  also copy the finished ISO to FILE
#   --print-outdir only print the cache directory this recipe builds into
#
# Prints the ISO's path as the last line of stdout; progress goes to stderr, the tools'
# output to build.log. The ISO is cached in $ALTDISK_IMAGE_CACHE/rescue-<hash>
# (default /var/cache/altdisk-images) where <hash> covers this script, everything under
# image-build/rescue/, the packages' contents and the grub-mkrescue version: the same
# recipe is built once. The build runs in OUTDIR.tmp.*, renamed to OUTDIR when complete
# (COMPLETE is written last); an flock on OUTDIR.lock keeps two builds from racing.
# Nothing is mounted and no loop device is used: mmdebstrap makes the tree, mksquashfs
# packs it, grub-mkrescue (xorriso, mtools) writes the ISO and its EFI image.
#
# Exit codes: 0 built or reused, 1 the build failed (the log's end is shown), 2 bad usage
# or a missing input (no altdisk package, a missing tool, not root).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
recipe=$here/rescue
MIRROR=${ALTDISK_IMAGE_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${ALTDISK_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=${ALTDISK_IMAGE_CACHE:-/var/cache/altdisk-images}

say() { echo "build-iso: $*" >&2; }
usage_error() {
	say "error: $*"
	exit 2
}

debs=$repo/target/debian
files=()
output=
print_outdir=0
while (($#)); do
	case $1 in
	--debs)
		(($# >= 2)) || usage_error "--debs needs a directory"
		debs=$2
		shift 2
		;;
	--deb)
		(($# >= 2)) || usage_error "--deb needs a package file"
		files+=("$2")
		shift 2
		;;
	--output)
		(($# >= 2)) || usage_error "--output needs a file name"
		output=$2
		shift 2
		;;
	--print-outdir)
		print_outdir=1
		shift
		;;
	-h | --help)
		sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
		exit 0
		;;
	*) usage_error "unknown argument '$1' (see --help)" ;;
	esac
done

# newest_deb NAME: the newest NAME_*_amd64.deb in $debs (by its control fields), or nothing.
newest_deb() {
	local f best='' best_ver='' pkg ver arch
	for f in "$debs/$1"_*.deb; do
		[[ -f $f ]] || continue
		pkg=$(dpkg-deb -f "$f" Package) ver=$(dpkg-deb -f "$f" Version) arch=$(dpkg-deb -f "$f" Architecture)
		[[ $pkg == "$1" && $arch == amd64 ]] || continue
		if [[ -z $best ]] || dpkg --compare-versions "$ver" gt "$best_ver"; then
			best=$f best_ver=$ver
		fi
	done
	[[ -z $best ]] || realpath "$best"
}

# deb_digest FILE: a hash of what a package installs (control fields, paths, modes, link
# targets, file contents), not of the archive: a rebuild that only changes time stamps
# inside the .deb keeps the cached ISO.
deb_digest() {
	local tmp
	tmp=$(mktemp -d)
	dpkg-deb -R "$1" "$tmp/x"
	(cd "$tmp/x" && find . -printf '%P %y %m %l\n' | LC_ALL=C sort &&
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -c1-64
	rm -rf "$tmp"
}

for tool in dpkg-deb sha256sum; do
	command -v "$tool" >/dev/null || usage_error "$tool is missing: run image-build/install-deps.sh"
done
altdisk_deb='' gui_deb=''
if ((${#files[@]})); then
	for f in "${files[@]}"; do
		[[ -f $f ]] || usage_error "no package file $f"
		pkg=$(dpkg-deb -f "$f" Package 2>/dev/null) || usage_error "$f is not a Debian package"
		case $pkg in
		altdisk) altdisk_deb=$(realpath "$f") ;;
		altdisk-gui) gui_deb=$(realpath "$f") ;;
		*) usage_error "$f holds the package '$pkg': the image takes altdisk and altdisk-gui only" ;;
		esac
	done
	[[ -n $altdisk_deb ]] || usage_error "no altdisk package among ${files[*]}: name it with --deb FILE"
else
	[[ -d $debs ]] || usage_error "no package directory $debs: build the packages first (image-build/build-debs.sh) or name one with --debs DIR"
	altdisk_deb=$(newest_deb altdisk)
	gui_deb=$(newest_deb altdisk-gui)
	[[ -n $altdisk_deb ]] || usage_error "no altdisk_*_amd64.deb in $debs: build it first (image-build/build-debs.sh) or name its directory with --debs DIR"
fi

recipe_hash() {
	{
		(cd "$here" && find build-iso.sh rescue -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		echo "altdisk $(deb_digest "$altdisk_deb")"
		[[ -z $gui_deb ]] || echo "altdisk-gui $(deb_digest "$gui_deb")"
		grub-mkrescue --version 2>/dev/null || echo "no grub-mkrescue"
	} | sha256sum | cut -c1-16
}
OUTDIR=$CACHE/rescue-$(recipe_hash)
ISO=$OUTDIR/altdisk-rescue.iso

if ((print_outdir)); then
	echo "$OUTDIR"
	exit 0
fi

publish() {
	if [[ -n $output ]]; then
		cp --reflink=auto "$ISO" "$output.tmp" && mv -f "$output.tmp" "$output"
		say "copied to $output"
	fi
	echo "$ISO"
}

if [[ -e $OUTDIR/COMPLETE ]]; then
	say "cached: $ISO"
	publish
	exit 0
fi

[[ $(id -u) == 0 ]] || usage_error "building the image needs root (mmdebstrap --mode=root, chroot)"
for tool in mmdebstrap mksquashfs grub-mkrescue xorriso mformat zstd flock; do
	command -v "$tool" >/dev/null || usage_error "$tool is missing: run image-build/install-deps.sh"
done
for dir in /usr/lib/grub/i386-pc /usr/lib/grub/x86_64-efi; do
	[[ -d $dir ]] || usage_error "$dir is missing: run image-build/install-deps.sh (grub-pc-bin, grub-efi-amd64-bin)"
done

mkdir -p "$CACHE"
exec 9>"$OUTDIR.lock"
if ! flock -n 9; then
	say "another build of $OUTDIR is running: waiting for it"
	flock 9
fi
if [[ -e $OUTDIR/COMPLETE ]]; then
	publish
	exit 0
fi
# Leftovers of an interrupted build of this recipe (we hold its lock).
rm -rf "$OUTDIR" "$OUTDIR".tmp.*

work=$(mktemp -d "$OUTDIR.tmp.XXXXXX")
chmod 0755 "$work"
log=$work/build.log
cleanup() {
	if [[ -d $work ]]; then
		if [[ ${ALTDISK_KEEP_BUILD:-} == 1 ]]; then
			say "keeping the failed build in $work"
		else
			rm -rf "$work"
		fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	say "ERROR: $*"
	say "last lines of $log:"
	tail -n 40 "$log" >&2 || true
	exit 1
}

start=$SECONDS
kiosk=0
[[ -n $gui_deb ]] && kiosk=1
say "building $OUTDIR (log: $log)"
say "altdisk package: $altdisk_deb"
if ((kiosk)); then
	say "altdisk-gui package: $gui_deb: the GUI runs in a kiosk session (weston) on tty1"
else
	say "no altdisk-gui package given: no kiosk session, the text menu only"
fi

# --- 1. the live root -------------------------------------------------------------------
# The package list (image-build/rescue/packages), plus the kiosk's when the GUI is there.
mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$recipe/packages")
((kiosk)) && pkgs+=(weston fonts-dejavu-core libpam-systemd)
local_debs=("$altdisk_deb")
((kiosk)) && local_debs+=("$gui_deb")

say "mmdebstrap bookworm: ${#pkgs[@]} packages + the altdisk package$( ((kiosk)) && echo s)"
# Documentation and translations stay out (copyright files stay); the initramfs is zstd.
# shellcheck disable=SC2016 # the hooks' $1 is mmdebstrap's, expanded in the hook's shell
nice mmdebstrap --mode=root --variant=minbase --include="$(
	IFS=,
	echo "${pkgs[*]}"
)" \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && printf "COMPRESS=zstd\n" >"$1/etc/initramfs-tools/conf.d/altdisk-rescue.conf"' \
	--customize-hook="$(printf '%q ' "$recipe/customize.sh") \"\$1\" $kiosk $(printf '%q ' "${local_debs[@]}")" \
	bookworm "$work/root" \
	"deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
	"deb $SECURITY_MIRROR bookworm-security main" >>"$log" 2>&1 || fail "mmdebstrap failed"
say "live root done ($((SECONDS - start)) s, $(du -sm "$work/root" | cut -f1) MiB)"

# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
chroot "$work/root" dpkg-query -W -f='${Package} ${Version}\n' >"$work/packages.txt"
grep -q '^altdisk ' "$work/packages.txt" || fail "the altdisk package is not installed in the live root"
for f in /usr/sbin/altdisk /usr/sbin/altdiskd; do
	[[ -x $work/root$f ]] || fail "the altdisk package did not install $f"
done
if ((kiosk)); then
	grep -q '^altdisk-gui ' "$work/packages.txt" || fail "the altdisk-gui package is not installed in the live root"
fi

# --- 2. the ISO tree: kernel, initrd, squashfs, GRUB -------------------------------------
iso=$work/iso
mkdir -p "$iso/live" "$iso/boot/grub"
kver=$(find "$work/root/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n1)
[[ -n $kver && -e $work/root/boot/initrd.img-$kver ]] || fail "no kernel/initrd in the live root"
# live-boot's hook put its boot script into the (zstd) initramfs: boot=live needs it.
# (grep reads to the end: with -q, zstd would die of SIGPIPE and fail the pipeline.)
zstd -dc "$work/root/boot/initrd.img-$kver" 2>/dev/null | grep -a 'scripts/live' >/dev/null ||
	fail "the initrd lacks live-boot's scripts/live"
cp "$work/root/boot/vmlinuz-$kver" "$iso/live/vmlinuz"
cp "$work/root/boot/initrd.img-$kver" "$iso/live/initrd.img"

# zstd: a third faster to build than xz and much faster to read (a boot under QEMU's TCG
# reads ~150 MB of it) for a fifth more size.
say "mksquashfs (zstd)"
nice mksquashfs "$work/root" "$iso/live/filesystem.squashfs" -noappend -comp zstd -Xcompression-level 15 -b 1M \
	-wildcards -e 'boot/vmlinuz*' -e 'boot/initrd.img*' -e 'var/cache/apt/*.bin' -e 'var/lib/apt/lists/*' \
	-e 'tmp/*' -e 'var/tmp/*' -e 'var/log/*' -no-progress >>"$log" 2>&1 || fail "mksquashfs failed"
say "squashfs done ($((SECONDS - start)) s, $(du -m "$iso/live/filesystem.squashfs" | cut -f1) MiB)"
rm -rf "$work/root"

built=$(date -u +%FT%TZ)
altdisk_ver=$(dpkg-deb -f "$altdisk_deb" Version)
{
	echo "altdisk rescue image, built $built"
	echo "recipe: $(basename "$OUTDIR")"
	echo "kernel: $kver"
	echo "kiosk: $( ((kiosk)) && echo "altdisk-gui in weston kiosk-shell on tty1" || echo "none (no altdisk-gui package)")"
	echo
	cat "$work/packages.txt"
} >"$iso/altdisk-rescue.txt"

# GRUB: menu on the screen and the serial line; "to RAM" copies the squashfs into memory so
# the stick can be pulled; "text only" keeps the kiosk off.
cmdline="boot=live noeject quiet loglevel=3 console=tty0 console=ttyS0,115200n8"
{
	cat <<EOF
# altdisk rescue $altdisk_ver (built $built)
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
# The kernel gets the firmware's frame buffer (UEFI GOP) for its console and the kiosk.
insmod all_video
set gfxpayload=keep
set default=live
set timeout=5
set timeout_style=menu

menuentry "altdisk rescue $altdisk_ver" --id live {
	linux /live/vmlinuz $cmdline
	initrd /live/initrd.img
}
menuentry "altdisk rescue, to RAM (r): the USB stick or CD can be removed once booted" --id toram --hotkey=r {
	linux /live/vmlinuz $cmdline toram
	initrd /live/initrd.img
}
EOF
	if ((kiosk)); then
		cat <<EOF
menuentry "altdisk rescue, text only (t): no graphical session" --id text --hotkey=t {
	linux /live/vmlinuz $cmdline altdisk.kiosk=0
	initrd /live/initrd.img
}
EOF
	fi
	cat <<'EOF'
if [ "$grub_platform" = efi ]; then
	menuentry "UEFI firmware settings" --id fwsetup {
		fwsetup
	}
fi
EOF
} >"$iso/boot/grub/grub.cfg"

say "grub-mkrescue"
nice grub-mkrescue --compress=xz -o "$work/altdisk-rescue.iso" "$iso" -- -volid ALTDISK_RESCUE >>"$log" 2>&1 ||
	fail "grub-mkrescue failed"
cp "$iso/altdisk-rescue.txt" "$work/contents.txt"
rm -rf "$iso"

# --- 3. check and publish -----------------------------------------------------------------
report=$(xorriso -indev "$work/altdisk-rescue.iso" -report_el_torito plain 2>&1) || fail "xorriso cannot read the ISO"
grep -Eq 'El Torito boot img : +[0-9]+ +BIOS' <<<"$report" || fail "the ISO has no BIOS El Torito boot image"
grep -Eq 'El Torito boot img : +[0-9]+ +UEFI' <<<"$report" || fail "the ISO has no UEFI El Torito boot image"
size=$(stat -c %s "$work/altdisk-rescue.iso")
chmod 0444 "$work/altdisk-rescue.iso"
cat >"$work/image.env" <<EOF
ALTDISK_VERSION=$altdisk_ver
KERNEL=$kver
KIOSK=$kiosk
ISO_BYTES=$size
BUILD_SECONDS=$((SECONDS - start))
BUILT=$built
EOF
echo "$built" >"$work/COMPLETE"
mv -T "$work" "$OUTDIR"
say "done in $((SECONDS - start)) s: $ISO ($((size / 1024 / 1024)) MiB)"

# ISOs built from other recipes are dropped (unless one is being built right now, or
# ALTDISK_IMAGE_PRUNE=0), so the cache does not grow with each edit.
if [[ ${ALTDISK_IMAGE_PRUNE:-1} == 1 ]]; then
	for lock in "$CACHE"/rescue-*.lock; do
		old=${lock%.lock}
		[[ -e $lock && $old != "$OUTDIR" ]] || continue
		# A build of that recipe running now holds its lock: leave it alone.
		if (flock -n 8 && rm -rf "$old" "$old".tmp.*) 8>"$lock"; then
			rm -f "$lock"
			say "pruned the outdated image $old"
		fi
	done
fi
publish
