#!/bin/bash
# Build (or reuse) a cached "production" VM image for altdisk's vm_* tests: an installed
# Debian 12 (bookworm) system on a 4 GiB raw GPT disk (1 = 256 MiB ESP on /boot/efi,
# 2 = ext4 root), booted through OVMF and the bootloader that was installed inside the
# guest the way an installer does it, plus the OVMF NVRAM (vars.fd) holding its boot entry.
#
# Usage: tests/vm/build-image.sh KIND [OUTDIR]
#   KIND    grub | systemd-boot
#   OUTDIR  default: $ALTDISK_VM_CACHE/vm-KIND-<hash> (ALTDISK_VM_CACHE defaults to
#           /var/cache/altdisk-tests; <hash> covers this script and its helper files, so
#           editing them builds a new image)
#   --print-outdir KIND   only print the default OUTDIR
#
# Prints OUTDIR as the last line of stdout. Progress goes to stderr, the tools' output to
# OUTDIR/build.log. The image is built in OUTDIR.tmp.* and renamed to OUTDIR when complete
# (COMPLETE is written last); an flock on OUTDIR.lock keeps two builds from racing.
# Nothing here touches a disk of this machine: the only disk is an image file made here,
# written without mounting anything (mke2fs -d, mkfs.vfat --offset); the bootloader is
# installed inside QEMU (TCG, -nic none).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OVMF_CODE=${ALTDISK_OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
OVMF_VARS=${ALTDISK_OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}
MIRROR=${ALTDISK_VM_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${ALTDISK_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DISK_SIZE=$((4 * 1024 * 1024 * 1024))
ESP_START=2048           # sectors (1 MiB)
ESP_SECTORS=524288       # 256 MiB
INSTALL_TIMEOUT=${ALTDISK_VM_INSTALL_TIMEOUT:-1500}
BOOT_TIMEOUT=${ALTDISK_VM_BOOT_TIMEOUT:-600}

say() { echo "build-image: $*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

image_hash() {
	# Every file of tests/vm that goes into the image (not the README).
	(cd "$here" && find . -type f ! -name '*.md' ! -name install-deps.sh -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) |
		sha256sum | cut -c1-16
}

default_outdir() {
	echo "${ALTDISK_VM_CACHE:-/var/cache/altdisk-tests}/vm-$1-$(image_hash)"
}

if [[ ${1:-} == --print-outdir ]]; then
	[[ $# == 2 ]] || die "usage: $0 --print-outdir KIND"
	default_outdir "$2"
	exit 0
fi
[[ $# == 1 || $# == 2 ]] || die "usage: $0 KIND [OUTDIR]"
KIND=$1
case $KIND in
grub) loader_pkg=grub-efi-amd64 ;;
systemd-boot) loader_pkg=systemd-boot ;;
*) die "KIND must be grub or systemd-boot, not '$KIND'" ;;
esac
OUTDIR=${2:-$(default_outdir "$KIND")}
OUTDIR=$(realpath -m "$OUTDIR")

if [[ -e $OUTDIR/COMPLETE ]]; then
	echo "$OUTDIR"
	exit 0
fi

[[ $(id -u) == 0 ]] || die "building the image needs root (mmdebstrap, chroot)"
for tool in mmdebstrap qemu-system-x86_64 qemu-img mkfs.vfat mcopy mke2fs sfdisk flock timeout; do
	command -v "$tool" >/dev/null || die "$tool is missing: run tests/vm/install-deps.sh"
done
[[ -r $OVMF_CODE && -r $OVMF_VARS ]] || die "OVMF firmware not found ($OVMF_CODE, $OVMF_VARS): apt-get install ovmf"

mkdir -p "$(dirname "$OUTDIR")"
exec 9>"$OUTDIR.lock"
if ! flock -n 9; then
	say "another build of $OUTDIR is running: waiting for it"
	flock 9
fi
if [[ -e $OUTDIR/COMPLETE ]]; then
	echo "$OUTDIR"
	exit 0
fi
# Leftovers of an interrupted build of this image (we hold its lock).
rm -rf "$OUTDIR" "$OUTDIR".tmp.*

work=$(mktemp -d "$OUTDIR.tmp.XXXXXX")
chmod 0755 "$work"
log=$work/build.log
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ -d $work ]]; then
		if [[ ${ALTDISK_KEEP_VM:-} == 1 ]]; then
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
say "building $KIND image in $work (log: $log)"

# --- 1. the root tree --------------------------------------------------------------------
root_uuid=$(cat /proc/sys/kernel/random/uuid)
esp_id=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n' | tr a-f A-F)
esp_uuid="${esp_id:0:4}-${esp_id:4:4}"

say "mmdebstrap bookworm (+ linux-image-amd64, $loader_pkg)"
# polkitd: altdisk's package recommends it (altdiskd authorises every call through it), and
# the package test installs that package offline, with what the image holds.
pkgs=linux-image-amd64,systemd-sysv,udev,initramfs-tools,zstd,e2fsprogs,dosfstools,util-linux,fdisk
pkgs+=,efibootmgr,kmod,procps,lvm2,btrfs-progs,xfsprogs,dbus,polkitd,$loader_pkg
# shellcheck disable=SC2016 # the hooks' $1 is mmdebstrap's, expanded in the hook's shell
mmdebstrap --mode=root --variant=minbase --include="$pkgs" \
	--setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && printf "MODULES=list\nCOMPRESS=zstd\n" >"$1/etc/initramfs-tools/conf.d/altdisk-tests.conf"' \
	--customize-hook="\"$here/customize.sh\" \"\$1\" $KIND $root_uuid $esp_uuid" \
	bookworm "$work/root" \
	"deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
	"deb $SECURITY_MIRROR bookworm-security main" >>"$log" 2>&1 || fail "mmdebstrap failed"
say "root tree done ($((SECONDS - start)) s)"

kver=$(find "$work/root/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n1)
[[ -n $kver && -e $work/root/boot/initrd.img-$kver ]] || fail "no kernel/initrd in the root tree"
cp "$work/root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$work/root/boot/initrd.img-$kver" "$work/initrd.img"

# --- 2. the disk: GPT, ESP (vfat) and root (ext4) written at their offsets --------------
disk=$work/disk.raw
truncate -s "$DISK_SIZE" "$disk"
sfdisk -q "$disk" >>"$log" 2>&1 <<EOF || fail "sfdisk failed"
label: gpt
start=$ESP_START, size=$ESP_SECTORS, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System Partition"
start=$((ESP_START + ESP_SECTORS)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
EOF
read -r root_start root_sectors < <(sfdisk -d "$disk" |
	sed -n 's/.*disk\.raw2 : start= *\([0-9]*\), size= *\([0-9]*\),.*/\1 \2/p')
[[ -n ${root_sectors:-} ]] || fail "cannot read the root partition back"

mkfs.vfat -F 32 -s 2 -i "$esp_id" -n ESP --offset "$ESP_START" "$disk" $((ESP_SECTORS / 2)) >>"$log" 2>&1 ||
	fail "mkfs.vfat failed"
# The root tree goes in whole (mke2fs -d copies owners, modes, links, xattrs).
mke2fs -F -q -t ext4 -U "$root_uuid" -E offset=$((root_start * 512)) -d "$work/root" \
	"$disk" "$((root_sectors / 2))k" >>"$log" 2>&1 || fail "mke2fs failed"
rm -rf "$work/root"
cp "$OVMF_VARS" "$work/vars.fd"
say "disk image done ($((SECONDS - start)) s)"

# --- 3. QEMU, driven over a pair of FIFOs -------------------------------------------------
# qemu_start NAME [extra args...]: starts QEMU in the background, its console in
# $work/NAME.serial.log, keystrokes through $work/NAME.in
qemu_start() {
	local name=$1
	shift
	local fifo=$work/$name
	mkfifo "$fifo.in" "$fifo.out"
	cat "$fifo.out" >"$work/$name.serial.log" &
	pids+=($!)
	timeout --kill-after=10 "$1" qemu-system-x86_64 -accel tcg -machine q35 -cpu max -m 2048 -smp 2 \
		-nic none -display none -no-reboot -monitor none \
		-drive if=pflash,format=raw,unit=0,readonly=on,file="$OVMF_CODE" \
		-drive if=pflash,format=raw,unit=1,file="$work/vars.fd" \
		-drive file="$disk",format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0 \
		-serial pipe:"$fifo" "${@:2}" >>"$log" 2>&1 &
	qemu_pid=$!
	pids+=("$qemu_pid")
}
# wait_for NAME PATTERN SECONDS: waits until the console log matches (grep -E)
wait_for() {
	local deadline=$((SECONDS + $3))
	while ((SECONDS < deadline)); do
		grep -qaE "$2" "$work/$1.serial.log" 2>/dev/null && return 0
		kill -0 "$qemu_pid" 2>/dev/null || return 1
		sleep 1
	done
	return 1
}
# type NAME TEXT: types a line at the guest's console
type_line() { printf '%s\n' "$2" >"$work/$1.in"; }
qemu_wait_exit() {
	local rc=0
	wait "$qemu_pid" || rc=$?
	return $rc
}
shell_prompt='root@production:[^#]*# '

# Install boot: the disk's own kernel and initrd, loaded by QEMU through OVMF (so the
# guest has EFI runtime services and writes the boot entry into vars.fd).
say "install boot: $KIND into the ESP and the NVRAM"
qemu_start install "$INSTALL_TIMEOUT" -kernel "$work/vmlinuz" -initrd "$work/initrd.img" \
	-append "root=UUID=$root_uuid ro console=ttyS0,115200 quiet loglevel=3"
wait_for install "$shell_prompt" "$BOOT_TIMEOUT" || fail "install boot: no root shell (see $work/install.serial.log)"
say "install boot: shell after $((SECONDS - start)) s"
sleep 2
type_line install "sh /root/altdisk-image-install.sh $KIND $kver 2>&1; systemctl poweroff"
qemu_wait_exit || fail "install boot: QEMU failed or timed out (see $work/install.serial.log)"
grep -qa 'ALTDISK-INSTALL-OK' "$work/install.serial.log" ||
	fail "installation failed: $(grep -a -A20 'ALTDISK-INSTALL' "$work/install.serial.log" | tail -n 20)"
say "installed ($((SECONDS - start)) s)"

# Verify boot: the firmware, the NVRAM entry and the installed bootloader alone.
say "verify boot: OVMF -> $KIND -> kernel -> autologin shell"
boot_start=$SECONDS
qemu_start verify "$BOOT_TIMEOUT"
wait_for verify "$shell_prompt" "$BOOT_TIMEOUT" || fail "verify boot: no root shell (see $work/verify.serial.log)"
boot_time=$((SECONDS - boot_start))
sleep 2
# shellcheck disable=SC2016 # expanded by the guest's shell
type_line verify 'findmnt -no SOURCE /; efibootmgr; echo ALTDISK-VERIFY-"$(findmnt -no SOURCE /)"; systemctl poweroff'
qemu_wait_exit || fail "verify boot: QEMU failed or timed out"
grep -qa 'ALTDISK-VERIFY-/dev/vda2' "$work/verify.serial.log" || fail "verify boot: / is not /dev/vda2"
say "verify boot: shell after $boot_time s"

# --- 4. publish --------------------------------------------------------------------------
rm -f "$work"/*.in "$work"/*.out "$work/vmlinuz" "$work/initrd.img"
chmod 0444 "$disk" "$work/vars.fd"
cat >"$work/image.env" <<EOF
KIND=$KIND
KERNEL=$kver
ROOT_UUID=$root_uuid
ESP_UUID=$esp_uuid
BUILD_SECONDS=$((SECONDS - start))
BOOT_SECONDS=$boot_time
EOF
date -u +%FT%TZ >"$work/COMPLETE"
mv -T "$work" "$OUTDIR"
say "done in $((SECONDS - start)) s: $OUTDIR"

# Images of this kind built by other versions of these scripts are dropped once they are two
# days old (unless one is being built right now, or ALTDISK_VM_PRUNE=0), so the cache does not
# grow with each edit; a younger one may still be in use by another checkout's tests.
if [[ ${ALTDISK_VM_PRUNE:-1} == 1 && -z ${2:-} ]]; then
	for old in "$(dirname "$OUTDIR")/vm-$KIND-"*; do
		[[ -d $old && $old != "$OUTDIR" && $old != *.tmp.* ]] || continue
		[[ -n $(find "$old" -maxdepth 0 -mmin +2880) ]] || continue
		if (flock -n 8 && rm -rf "$old" "$old".tmp.*) 8>"$old.lock"; then
			rm -f "$old.lock"
			say "pruned the outdated image $old"
		fi
	done
fi
echo "$OUTDIR"
