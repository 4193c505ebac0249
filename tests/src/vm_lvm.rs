//! A cached "production" machine whose root is on LVM, as most servers have it: a 4 GiB
//! GPT disk with 1 = ESP (256 MiB, vfat), 2 = /boot (512 MiB, ext4), 3 = an LVM PV holding
//! the volume group `rootvg` with the LVs `root` (2.2 GiB, ext4, /), `home` (300 MiB, ext4,
//! /home, with a few files) and `swap` (256 MiB). fstab names everything by UUID=; GRUB
//! and the initramfs (with LVM) were installed chrooted, the way an installer does it.
//!
//! Recipe: boot the GRUB production image ([`production_image`]`(Kind::Grub)`) with one
//! blank 4 GiB disk, build the LVM system on that disk from inside the guest
//! ([`BUILD_SCRIPT`]: partition, pvcreate/vgcreate/lvcreate, copy the running system,
//! fstab, initramfs, grub-install (which writes the NVRAM entry for the new ESP), update-grub,
//! NVRAM cleanup), power off, then boot the new disk ALONE (as vda) through OVMF with that
//! NVRAM and check it ([`VERIFY_SCRIPT`]). The cached result is that disk (a standalone raw
//! file) and the NVRAM after the verification boot.
//!
//! Cache: `$ALTDISK_VM_CACHE/vm-lvm-<hash>` (default /var/cache/altdisk-tests), built and
//! kept as every image built inside a guest is ([`crate::vm_derived`]); `image.env` in the
//! directory records the UUIDs, sizes and timings.
//!
//! Call [`lvm_production_image`] before booting any machine of your own: a build needs
//! a VM slot, and a process that holds a slot while waiting for the build's lock would
//! wait for the slot timeout.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::vm::{Image, Kind};
use crate::vm_derived::{derived_image, Recipe};

/// Bump when the Rust side of the recipe (below) changes in a way the image shows.
pub const RECIPE_VERSION: &str = "lvm-1";

/// The volume group and its logical volumes.
pub const VG: &str = "rootvg";
pub const LVS: [&str; 3] = ["home", "root", "swap"];

const GIB: u64 = 1 << 30;

/// Runs in the GRUB production guest (root on /dev/vda2) and builds the LVM system on
/// the blank /dev/vdb. Prints `IMAGE_ENV KEY=VALUE` lines for image.env.
pub const BUILD_SCRIPT: &str = r#"set -euo pipefail
exec 2>&1
# Everything runs in a private mount namespace: a mount made in the main one propagates
# into the namespaces of services (udevd has PrivateMounts=yes), where the copies under
# the chroot's rbind mounts survive `umount -R` and keep the LVs busy.
if [ -z "${LVM_BUILD_PRIVATE_NS:-}" ]; then
	LVM_BUILD_PRIVATE_NS=1 exec unshare --mount --propagation private bash "$0"
fi
say() { echo "lvm-build: [$SECONDS s] $*"; }
disk=/dev/vdb t=/mnt/new

# --- guards: the running system is the GRUB image, vdb is blank, lvm2 is there ----------
test "$(findmnt -no SOURCE /)" = /dev/vda2 || { say "/ is not /dev/vda2"; exit 1; }
test -b $disk || { say "no $disk"; exit 1; }
test -z "$(wipefs --noheadings $disk)" || { say "$disk is not blank"; exit 1; }
command -v pvcreate >/dev/null || { say "lvm2 is not installed in the GRUB image"; exit 1; }
grep -qi '^[[:space:]]*use_devicesfile[[:space:]]*=[[:space:]]*1' /etc/lvm/lvm.conf &&
	{ say "use_devicesfile=1: a devices file would tie the PV to this disk's serial"; exit 1; }
mountpoint -q /sys/firmware/efi/efivars || mount -t efivarfs efivarfs /sys/firmware/efi/efivars

# --- disk: GPT, ESP + /boot + LVM PV -------------------------------------------------------
say "partitioning $disk"
sfdisk -q --wipe always $disk <<'EOF'
label: gpt
start=2048, size=256MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System Partition"
size=512MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="boot"
type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name="lvm"
EOF
udevadm settle
mkfs.vfat -F 32 ${disk}1 >/dev/null
mkfs.ext4 -q -F ${disk}2
say "LVM: rootvg on ${disk}3"
pvcreate -q -y ${disk}3
vgcreate -q rootvg ${disk}3
lvcreate -q -y -W y -L 2.2G -n root rootvg
lvcreate -q -y -W y -L 300M -n home rootvg
lvcreate -q -y -W y -L 256M -n swap rootvg
udevadm settle
mkfs.ext4 -q -F /dev/rootvg/root
mkfs.ext4 -q -F /dev/rootvg/home
mkswap /dev/rootvg/swap >/dev/null
test ! -e /etc/lvm/devices/system.devices || { say "lvm wrote a devices file"; exit 1; }
vgs; lvs

# --- copy the running system -------------------------------------------------------------
mkdir -p $t
mount /dev/rootvg/root $t
mkdir $t/boot && mount ${disk}2 $t/boot
mkdir $t/boot/efi && mount ${disk}1 $t/boot/efi
mkdir $t/home && mount /dev/rootvg/home $t/home
say "copying / (one file system: /boot and /home land on their own)"
cp -ax /. $t/
cp -rT --preserve=timestamps /boot/efi $t/boot/efi
rmdir $t/mnt/new 2>/dev/null || true
for d in dev proc sys run tmp; do mkdir -p $t/$d; done
chmod 1777 $t/tmp

uuid() { blkid -p -s UUID -o value "$1"; }
root_uuid=$(uuid /dev/rootvg/root) home_uuid=$(uuid /dev/rootvg/home) swap_uuid=$(uuid /dev/rootvg/swap)
boot_uuid=$(uuid ${disk}2) esp_uuid=$(uuid ${disk}1)
esp_partuuid=$(blkid -p -s PART_ENTRY_UUID -o value ${disk}1 | tr A-F a-f)
for v in root_uuid home_uuid swap_uuid boot_uuid esp_uuid esp_partuuid; do
	test -n "${!v}" || { say "no $v"; exit 1; }
done
cat >$t/etc/fstab <<EOF
# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=$root_uuid /               ext4    errors=remount-ro 0       1
UUID=$boot_uuid /boot           ext4    defaults        0       2
UUID=$esp_uuid  /boot/efi       vfat    umask=0077      0       1
UUID=$home_uuid /home           ext4    defaults        0       2
UUID=$swap_uuid none            swap    sw              0       0
EOF
# As the installer does: hibernation resumes from the swap LV.
echo "RESUME=UUID=$swap_uuid" >$t/etc/initramfs-tools/conf.d/resume

# --- a user and some data in /home -----------------------------------------------------
chroot $t useradd -m -u 1000 -s /bin/bash -c 'Alice Example' alice
mkdir -p $t/home/alice/docs $t/home/alice/.config
printf 'hello from /home on rootvg-home\n' >$t/home/alice/hello.txt
head -c 2097152 /dev/urandom >$t/home/alice/docs/data.bin
for i in $(seq 1 20); do echo "note $i" >$t/home/alice/docs/note$i.txt; done
echo 'color=blue' >$t/home/alice/.config/app.conf
ln -s docs/data.bin $t/home/alice/latest
chown -R -h 1000:1000 $t/home/alice
(cd $t/home && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >$t/root/home-manifest.sha256

# --- initramfs and GRUB, chrooted --------------------------------------------------------
for d in dev proc sys run; do
	mount --rbind /$d $t/$d
	mount --make-rslave $t/$d
done
say "update-initramfs (chroot)"
chroot $t update-initramfs -u -k all
say "grub-install (chroot)"
chroot $t grub-install --target=x86_64-efi --efi-directory=/boot/efi --bootloader-id=debian
say "update-grub (chroot)"
chroot $t update-grub
kver=$(ls $t/lib/modules | sort -V | tail -n1)
chroot $t lsinitramfs /boot/initrd.img-$kver >/tmp/initrd.list
for f in 'usr/sbin/lvm$|/sbin/lvm$' '69-lvm.rules$' 'dm-mod.ko' 'conf.d/resume$'; do
	grep -Eq "$f" /tmp/initrd.list || { say "the initramfs lacks $f"; exit 1; }
done
echo "initramfs LVM parts:"; grep -E 'lvm|dm-mod|dmsetup|conf.d/resume' /tmp/initrd.list
echo "resume config:"; chroot $t sh -c 'cat /etc/initramfs-tools/conf.d/resume'
roots=$(grep -o 'root=[^ ]*' $t/boot/grub/grub.cfg | sort -u | paste -sd' ')
echo "grub.cfg: $roots"
test -e $t/boot/efi/EFI/debian/grubx64.efi
find $t/boot/efi -type f

# --- NVRAM: only the new ESP's entry may point at a disk, and it goes first -------------
efibootmgr -v
new=$(efibootmgr -v | { grep -i "GPT,$esp_partuuid" || true; } | sed -n 's/^Boot\([0-9A-Fa-f]\{4\}\).*/\1/p')
test "$(echo "$new" | wc -w)" = 1 || { say "not exactly one entry for the new ESP: '$new'"; exit 1; }
for b in $(efibootmgr -v | { grep -i 'HD(.*GPT,' || true; } | { grep -vi "GPT,$esp_partuuid" || true; } |
	sed -n 's/^Boot\([0-9A-Fa-f]\{4\}\).*/\1/p'); do
	say "removing Boot$b (another disk)"
	efibootmgr -q -b $b -B
done
rest=$(efibootmgr | sed -n 's/^BootOrder: //p' | tr ',' '\n' | { grep -vix "$new" || true; } | paste -sd,)
efibootmgr -q -o "$new${rest:+,$rest}"
efibootmgr -v

# --- done --------------------------------------------------------------------------------
sync
umount -R $t
vgchange -q -an rootvg || {
	say "rootvg is still in use:"
	dmsetup info -c
	grep -l rootvg /proc/[0-9]*/mountinfo 2>/dev/null | while read -r f; do
		p=${f%/mountinfo}; echo "$p $(cat $p/comm 2>/dev/null)"; grep rootvg "$f"
	done
	exit 1
}
sync
for v in root_uuid home_uuid swap_uuid boot_uuid esp_uuid esp_partuuid kver; do
	echo "IMAGE_ENV ${v^^}=${!v}"
done
echo "IMAGE_ENV GRUB_ROOT=${roots// /;}"
echo "IMAGE_ENV BOOT_ENTRY=$new"
say "built"
"#;

/// Runs in the new system booted alone (as vda) and checks it; exit 0 when all is well.
pub const VERIFY_SCRIPT: &str = r#"set -u
exec 2>&1
fail=0
check() {
	if [ "$2" = "$3" ]; then echo "ok: $1 = $2"; else echo "FAIL: $1 is '$2', expected '$3'"; fail=1; fi
}
check root "$(findmnt -no SOURCE /)" /dev/mapper/rootvg-root
check home "$(findmnt -no SOURCE /home)" /dev/mapper/rootvg-home
check boot "$(findmnt -no SOURCE /boot)" /dev/vda2
check esp "$(findmnt -no SOURCE /boot/efi)" /dev/vda1
swap=$(swapon --show=NAME --noheadings --raw | head -n1)
check swap "$(readlink -f "${swap:-none}")" "$(readlink -f /dev/mapper/rootvg-swap)"
check vgs "$(vgs --noheadings -o vg_name | tr -d ' ' | paste -sd,)" rootvg
check pvs "$(pvs --noheadings -o pv_name | tr -d ' ' | paste -sd,)" /dev/vda3
check lvs "$(lvs --noheadings -o lv_name rootvg | tr -d ' ' | sort | paste -sd,)" home,root,swap
check home-data "$(cd /home && sha256sum --quiet -c /root/home-manifest.sha256 >/dev/null 2>&1 && echo intact)" intact
check fstab-mapper "$(grep -c mapper /etc/fstab)" 0
cur=$(efibootmgr | sed -n 's/^BootCurrent: //p')
first=$(efibootmgr | sed -n 's/^BootOrder: \([0-9A-Fa-f]*\).*/\1/p')
check boot-current "$cur" "$first"
partuuid=$(blkid -p -s PART_ENTRY_UUID -o value /dev/vda1 | tr A-F a-f)
check boot-entry-esp "$(efibootmgr -v | grep "^Boot$cur" | grep -ci "GPT,$partuuid")" 1
echo "cmdline: $(cat /proc/cmdline)"
echo "failed units:"; systemctl --failed --no-legend --no-pager
lsblk -o NAME,SIZE,TYPE,FSTYPE,MOUNTPOINTS
efibootmgr -v
exit $fail
"#;

/// How the image is built.
pub const RECIPE: Recipe = Recipe {
    name: "lvm",
    version: RECIPE_VERSION,
    base: Kind::Grub,
    disks: &[4 * GIB],
    build: BUILD_SCRIPT,
    verify: VERIFY_SCRIPT,
    console_answer: None,
};

/// The cached LVM production image (built first if needed: about five minutes under TCG,
/// progress on stderr). See the module documentation.
pub fn lvm_production_image() -> Result<Image> {
    derived_image(&RECIPE)
}

/// KEY=VALUE pairs of the image's image.env (UUIDs of root, home, swap, boot, ESP; the
/// ESP's PARTUUID; KVER; GRUB_ROOT, the root= of grub.cfg; timings).
pub fn image_env(image: &Image) -> Result<BTreeMap<String, String>> {
    crate::vm_derived::image_env(image)
}
