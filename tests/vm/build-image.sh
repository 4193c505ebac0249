#!/bin/bash
# Build (or reuse) a cached "production" VM image for altdisk's vm_* tests: an installed
# Debian system on a 4 GiB raw disk, booted through its firmware and the bootloader that was
# installed inside the guest the way an installer does it, plus the OVMF NVRAM (vars.fd)
# holding its boot entry (a pristine one for BIOS kinds).
#
# Each KIND is described by kinds/KIND.conf: SUITE (bookworm | trixie), LOADER (grub-efi |
# systemd-boot | grub-bios), LABEL (gpt | dos; grub-bios only), INITRAMFS (initramfs-tools |
# dracut), EXTRA_PKGS (more packages, comma-separated). The disk:
#   UEFI loaders       GPT: 1 = 256 MiB ESP on /boot/efi, 2 = ext4 root (OVMF)
#   grub-bios, gpt     GPT: 1 = 1 MiB BIOS boot partition, 2 = ext4 root (SeaBIOS)
#   grub-bios, dos     msdos: 1 = ext4 root, bootable (SeaBIOS)
#
# Usage: tests/vm/build-image.sh KIND [OUTDIR]
#   KIND    a file name of kinds/ without .conf: grub, systemd-boot, bios-mbr, bios-gpt,
#           dracut, trixie, grub-crypt
#   OUTDIR  default: $ALTDISK_VM_CACHE/vm-KIND-<hash> (ALTDISK_VM_CACHE defaults to
#           /var/cache/altdisk-tests; <hash> covers this script, its helper files and
#           kinds/KIND.conf, not the other kinds, so editing them builds a new image of
#           that kind only)
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
BIOS_BOOT_SECTORS=2048   # 1 MiB
INSTALL_TIMEOUT=${ALTDISK_VM_INSTALL_TIMEOUT:-1500}
BOOT_TIMEOUT=${ALTDISK_VM_BOOT_TIMEOUT:-600}

say() { echo "build-image: $*" >&2; }
die() {
	say "ERROR: $*"
	exit 1
}

image_hash() {
	# Every file of tests/vm that goes into an image of KIND $1 (not the README, not the
	# other kinds).
	(cd "$here" && find . -type f ! -name '*.md' ! -name install-deps.sh \
		\( ! -path './kinds/*' -o -path "./kinds/$1.conf" \) -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) |
		sha256sum | cut -c1-16
}

default_outdir() {
	echo "${ALTDISK_VM_CACHE:-/var/cache/altdisk-tests}/vm-$1-$(image_hash "$1")"
}

# load_kind KIND: the variables of kinds/KIND.conf, checked.
load_kind() {
	[[ $1 =~ ^[a-z0-9-]+$ && -f $here/kinds/$1.conf ]] ||
		die "KIND must be one of: $(find "$here/kinds" -name '*.conf' -printf '%f\n' | sed 's/\.conf$//' | sort | paste -sd' '), not '$1'"
	SUITE='' LOADER='' LABEL=gpt INITRAMFS=initramfs-tools EXTRA_PKGS=''
	# shellcheck disable=SC1090 # one of kinds/*.conf
	source "$here/kinds/$1.conf"
	case $SUITE in bookworm | trixie) ;; *) die "kinds/$1.conf: SUITE '$SUITE'" ;; esac
	case $LOADER in
	grub-efi) loader_pkg=grub-efi-amd64 ;;
	systemd-boot) loader_pkg=systemd-boot ;;
	grub-bios) loader_pkg=grub-pc ;;
	*) die "kinds/$1.conf: LOADER '$LOADER'" ;;
	esac
	case $INITRAMFS in initramfs-tools | dracut) ;; *) die "kinds/$1.conf: INITRAMFS '$INITRAMFS'" ;; esac
	case $LOADER/$LABEL in
	grub-bios/dos) ROOT_PART=1 BIOS=1 ;;
	grub-bios/gpt) ROOT_PART=2 BIOS=1 ;;
	*/gpt) ROOT_PART=2 BIOS=0 ;;
	*) die "kinds/$1.conf: LABEL '$LABEL' with LOADER '$LOADER'" ;;
	esac
}

if [[ ${1:-} == --print-outdir ]]; then
	[[ $# == 2 ]] || die "usage: $0 --print-outdir KIND"
	default_outdir "$2"
	exit 0
fi
[[ $# == 1 || $# == 2 ]] || die "usage: $0 KIND [OUTDIR]"
KIND=$1
load_kind "$KIND"
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

say "mmdebstrap $SUITE (+ linux-image-amd64, $loader_pkg, $INITRAMFS${EXTRA_PKGS:+, $EXTRA_PKGS})"
# polkitd: altdisk's package recommends it (altdiskd authorises every call through it), and
# the package test installs that package offline, with what the image holds.
pkgs=linux-image-amd64,systemd-sysv,udev,$INITRAMFS,zstd,e2fsprogs,dosfstools,util-linux,fdisk
pkgs+=,efibootmgr,kmod,procps,lvm2,btrfs-progs,xfsprogs,dbus,polkitd,$loader_pkg${EXTRA_PKGS:+,$EXTRA_PKGS}
# A small initramfs, configured before the kernel package makes the first one.
case $INITRAMFS in
initramfs-tools)
	# shellcheck disable=SC2016 # the hook's $1 is mmdebstrap's, expanded in the hook's shell
	setup_hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && printf "MODULES=list\nCOMPRESS=zstd\n" >"$1/etc/initramfs-tools/conf.d/altdisk-tests.conf"'
	;;
dracut)
	# shellcheck disable=SC2016 # as above
	setup_hook='mkdir -p "$1/etc/dracut.conf.d" && printf "hostonly=\"no\"\ncompress=\"zstd\"\nadd_drivers+=\" virtio_pci virtio_blk virtio_scsi \"\n" >"$1/etc/dracut.conf.d/altdisk-tests.conf"'
	;;
esac
# shellcheck disable=SC2016 # the hooks' $1 is mmdebstrap's, expanded in the hook's shell
mmdebstrap --mode=root --variant=minbase --include="$pkgs" \
	--setup-hook="$setup_hook" \
	--customize-hook="\"$here/customize.sh\" \"\$1\" $KIND $root_uuid $esp_uuid" \
	"$SUITE" "$work/root" \
	"deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
	"deb $SECURITY_MIRROR $SUITE-security main" >>"$log" 2>&1 || fail "mmdebstrap failed"
say "root tree done ($((SECONDS - start)) s)"

kver=$(find "$work/root/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n1)
[[ -n $kver && -e $work/root/boot/initrd.img-$kver ]] || fail "no kernel/initrd in the root tree"
cp "$work/root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$work/root/boot/initrd.img-$kver" "$work/initrd.img"

# --- 2. the disk: the partition table, ESP (vfat) and root (ext4) written at their offsets
disk=$work/disk.raw
truncate -s "$DISK_SIZE" "$disk"
case $LOADER/$LABEL in
grub-bios/dos)
	table="label: dos
start=$ESP_START, type=83, bootable"
	;;
grub-bios/gpt)
	table="label: gpt
start=$ESP_START, size=$BIOS_BOOT_SECTORS, type=21686148-6449-6E6F-744E-656564454649, name=\"BIOS boot partition\"
start=$((ESP_START + BIOS_BOOT_SECTORS)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\""
	;;
*)
	table="label: gpt
start=$ESP_START, size=$ESP_SECTORS, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI System Partition\"
start=$((ESP_START + ESP_SECTORS)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\""
	;;
esac
sfdisk -q "$disk" <<<"$table" >>"$log" 2>&1 || fail "sfdisk failed"
read -r root_start root_sectors < <(sfdisk -d "$disk" |
	sed -n "s/.*disk\\.raw$ROOT_PART : start= *\\([0-9]*\\), size= *\\([0-9]*\\),.*/\\1 \\2/p")
[[ -n ${root_sectors:-} ]] || fail "cannot read the root partition back"

if [[ $BIOS == 0 ]]; then
	mkfs.vfat -F 32 -s 2 -i "$esp_id" -n ESP --offset "$ESP_START" "$disk" $((ESP_SECTORS / 2)) >>"$log" 2>&1 ||
		fail "mkfs.vfat failed"
fi
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
	local firmware=()
	if [[ $BIOS == 0 ]]; then
		# shellcheck disable=SC2054 # QEMU's option values hold commas
		firmware=(-drive if=pflash,format=raw,unit=0,readonly=on,file="$OVMF_CODE"
			-drive if=pflash,format=raw,unit=1,file="$work/vars.fd")
	fi
	timeout --kill-after=10 "$1" qemu-system-x86_64 -accel tcg -machine q35 -cpu max -m 2048 -smp 2 \
		-nic none -display none -no-reboot -monitor none "${firmware[@]}" \
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
# guest has EFI runtime services and writes the boot entry into vars.fd), or through SeaBIOS.
say "install boot: $LOADER ($KIND)"
qemu_start install "$INSTALL_TIMEOUT" -kernel "$work/vmlinuz" -initrd "$work/initrd.img" \
	-append "root=UUID=$root_uuid ro console=ttyS0,115200 quiet loglevel=3"
wait_for install "$shell_prompt" "$BOOT_TIMEOUT" || fail "install boot: no root shell (see $work/install.serial.log)"
say "install boot: shell after $((SECONDS - start)) s"
sleep 2
type_line install "sh /root/altdisk-image-install.sh $LOADER $INITRAMFS $kver 2>&1; systemctl poweroff"
qemu_wait_exit || fail "install boot: QEMU failed or timed out (see $work/install.serial.log)"
grep -qa 'ALTDISK-INSTALL-OK' "$work/install.serial.log" ||
	fail "installation failed: $(grep -a -A20 'ALTDISK-INSTALL' "$work/install.serial.log" | tail -n 20)"
say "installed ($((SECONDS - start)) s)"

# Verify boot: the firmware, the NVRAM entry (UEFI) or the disk's boot code (BIOS), and the
# installed bootloader alone.
say "verify boot: firmware -> $LOADER -> kernel -> autologin shell"
boot_start=$SECONDS
qemu_start verify "$BOOT_TIMEOUT"
wait_for verify "$shell_prompt" "$BOOT_TIMEOUT" || fail "verify boot: no root shell (see $work/verify.serial.log)"
boot_time=$((SECONDS - boot_start))
sleep 2
# shellcheck disable=SC2016 # expanded by the guest's shell
type_line verify 'findmnt -no SOURCE /; efibootmgr; echo ALTDISK-VERIFY-"$(findmnt -no SOURCE /)"; systemctl poweroff'
qemu_wait_exit || fail "verify boot: QEMU failed or timed out"
grep -qa "ALTDISK-VERIFY-/dev/vda$ROOT_PART" "$work/verify.serial.log" || fail "verify boot: / is not /dev/vda$ROOT_PART"
say "verify boot: shell after $boot_time s"

# --- 4. publish --------------------------------------------------------------------------
rm -f "$work"/*.in "$work"/*.out "$work/vmlinuz" "$work/initrd.img"
chmod 0444 "$disk" "$work/vars.fd"
cat >"$work/image.env" <<EOF
KIND=$KIND
SUITE=$SUITE
LOADER=$LOADER
INITRAMFS=$INITRAMFS
ROOT_PART=$ROOT_PART
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
		# vm-KIND-<16 hex digits> only: vm-grub-* also matches vm-grub-crypt-*.
		[[ -d $old && $old != "$OUTDIR" && ${old##*/} =~ ^vm-$KIND-[0-9a-f]{16}$ ]] || continue
		[[ -n $(find "$old" -maxdepth 0 -mmin +2880) ]] || continue
		if (flock -n 8 && rm -rf "$old" "$old".tmp.*) 8>"$old.lock"; then
			rm -f "$old.lock"
			say "pruned the outdated image $old"
		fi
	done
fi
echo "$OUTDIR"
