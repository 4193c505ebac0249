//! The production machines of the boot-stack matrix (issue 14) that are built inside a
//! guest ([`crate::vm_derived`]): each boots the GRUB production image with a blank disk,
//! installs on it a Debian 12 of another layout the way an installer does (partitions,
//! filesystems, a copy of the running system, fstab, initramfs and GRUB chrooted, the
//! firmware entry), then boots that disk alone and checks it.
//!
//! - [`BTRFS`]: GPT, ESP + one btrfs filesystem with the subvolumes `@` (/), `@home`
//!   (/home) and `@log` (/var/log) as Ubuntu installs it; snapper's `.snapshots` in `@`
//!   holding one read-only snapshot, and a plain nested subvolume (`/var/lib/machines`).
//! - [`XFS`]: GPT, ESP + ext4 /boot + xfs root.
//! - [`DRACUT_LVM`]: from the dracut image: GPT, ESP + ext4 /boot + LVM (`rootvg`: root,
//!   swap), the initramfs made by dracut.
//! - [`LUKS`]: from the cryptsetup image: LVM on LUKS2 as Debian's guided install makes it.
//!
//! Every build script writes `/root/home-manifest.sha256` (checksums of /home) for the
//! clone to be checked against, and prints `IMAGE_ENV` lines (UUIDs) for image.env.

use crate::vm::Kind;
use crate::vm_derived::Recipe;

const GIB: u64 = 1 << 30;

/// The start of every build script: strict bash in a private mount namespace (mounts made in
/// the main one would propagate into services' namespaces and keep the disk busy), and the
/// guards: the running system is the GRUB image, vdb is blank.
macro_rules! build_prelude {
    () => {
        r#"set -euo pipefail
exec 2>&1
if [ -z "${BUILD_PRIVATE_NS:-}" ]; then
	BUILD_PRIVATE_NS=1 exec unshare --mount --propagation private bash "$0"
fi
say() { echo "build: [$SECONDS s] $*"; }
disk=/dev/vdb t=/mnt/new
test "$(findmnt -no SOURCE /)" = /dev/vda2 || { say "/ is not /dev/vda2"; exit 1; }
test -b $disk || { say "no $disk"; exit 1; }
test -z "$(wipefs --noheadings $disk)" || { say "$disk is not blank"; exit 1; }
mountpoint -q /sys/firmware/efi/efivars || mount -t efivarfs efivarfs /sys/firmware/efi/efivars
uuid() { blkid -p -s UUID -o value "$1"; }
"#
    };
}

/// Copy the running system into $t (its filesystems mounted there), the ESP too; some data
/// in /home (user alice) with its manifest.
macro_rules! build_copy {
    () => {
        r#"
say "copying / (one file system: the new mounts below $t get their share)"
cp -ax /. $t/
cp -rT --preserve=timestamps /boot/efi $t/boot/efi
rmdir $t/mnt/new 2>/dev/null || true
for d in dev proc sys run tmp; do mkdir -p $t/$d; done
chmod 1777 $t/tmp
chroot $t useradd -m -u 1000 -s /bin/bash -c 'Alice Example' alice
mkdir -p $t/home/alice/docs
printf 'hello from /home\n' >$t/home/alice/hello.txt
head -c 2097152 /dev/urandom >$t/home/alice/docs/data.bin
for i in $(seq 1 20); do echo "note $i" >$t/home/alice/docs/note$i.txt; done
chown -R -h 1000:1000 $t/home/alice
(cd $t/home && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) >$t/root/home-manifest.sha256
"#
    };
}

/// The initramfs (`update-initramfs`, or the given tool and command) and GRUB, chrooted, as
/// an installer does; then only the new ESP's firmware entry may name a disk, and it goes
/// first. Needs $esp_partuuid.
macro_rules! build_boot {
    () => {
        build_boot!("update-initramfs", "update-initramfs -u -k all")
    };
    ($tool:literal, $cmd:literal) => {
        concat!(
            r#"
for d in dev proc sys run; do
	mount --rbind /$d $t/$d
	mount --make-rslave $t/$d
done
say ""#,
            $tool,
            " (chroot)\"\nchroot $t ",
            $cmd,
            "\n",
            build_boot_grub!()
        )
    };
}

macro_rules! build_boot_grub {
    () => {
        r#"say "grub-install (chroot)"
chroot $t grub-install --target=x86_64-efi --efi-directory=/boot/efi --bootloader-id=debian
say "update-grub (chroot)"
chroot $t update-grub
roots=$(grep -o 'root=[^ ]*' $t/boot/grub/grub.cfg | sort -u | paste -sd' ')
echo "grub.cfg: $roots; $(grep -o 'rootflags=[^ ]*' $t/boot/grub/grub.cfg | sort -u | paste -sd' ')"
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
sync
umount -R $t
sync
echo "IMAGE_ENV BOOT_ENTRY=$new"
say "built"
"#
    };
}

/// The start of every verification script.
macro_rules! verify_prelude {
    () => {
        r#"set -u
exec 2>&1
fail=0
check() {
	if [ "$2" = "$3" ]; then echo "ok: $1 = $2"; else echo "FAIL: $1 is '$2', expected '$3'"; fail=1; fi
}
check home-data "$(cd /home && sha256sum --quiet -c /root/home-manifest.sha256 >/dev/null 2>&1 && echo intact)" intact
cur=$(efibootmgr | sed -n 's/^BootCurrent: //p')
first=$(efibootmgr | sed -n 's/^BootOrder: \([0-9A-Fa-f]*\).*/\1/p')
check boot-current "$cur" "$first"
echo "cmdline: $(cat /proc/cmdline)"
"#
    };
}

macro_rules! verify_end {
    () => {
        r#"
echo "failed units:"; systemctl --failed --no-legend --no-pager
lsblk -o NAME,SIZE,TYPE,FSTYPE,MOUNTPOINTS
exit $fail
"#
    };
}

/// The btrfs subvolume layout (see the module documentation).
pub const BTRFS: Recipe = Recipe {
    name: "btrfs",
    version: "btrfs-2",
    base: Kind::Grub,
    disks: &[4 * GIB],
    build: concat!(
        build_prelude!(),
        r#"
say "partitioning $disk: ESP + btrfs"
sfdisk -q --wipe always $disk <<'EOF'
label: gpt
start=2048, size=256MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System Partition"
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
EOF
udevadm settle
mkfs.vfat -F 32 ${disk}1 >/dev/null
mkfs.btrfs -q -f -L root ${disk}2
mkdir -p $t
mount ${disk}2 $t
for sv in @ @home @log; do btrfs -q subvolume create $t/$sv; done
umount $t
mount -o subvol=@ ${disk}2 $t
mkdir -p $t/home $t/var/log $t/boot/efi
mount -o subvol=@home ${disk}2 $t/home
mount -o subvol=@log ${disk}2 $t/var/log
mount ${disk}1 $t/boot/efi
"#,
        build_copy!(),
        r#"
echo 'the production log' >$t/var/log/altdisk-matrix.log
btrfs -q subvolume create $t/var/lib/machines
echo machine >$t/var/lib/machines/image.raw
# snapper's layout: .snapshots in @, snapshot 1 read-only, with its info.xml
btrfs -q subvolume create $t/.snapshots
mkdir $t/.snapshots/1
btrfs -q subvolume snapshot -r $t $t/.snapshots/1/snapshot
printf '<?xml version="1.0"?>\n<snapshot><type>single</type><num>1</num><description>before the clone</description></snapshot>\n' >$t/.snapshots/1/info.xml
root_uuid=$(uuid ${disk}2) esp_uuid=$(uuid ${disk}1)
esp_partuuid=$(blkid -p -s PART_ENTRY_UUID -o value ${disk}1 | tr A-F a-f)
cat >$t/etc/fstab <<EOF
# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=$root_uuid /               btrfs   defaults,subvol=@ 0       0
UUID=$root_uuid /home           btrfs   defaults,subvol=@home 0   0
UUID=$root_uuid /var/log        btrfs   defaults,subvol=@log 0    0
UUID=$esp_uuid  /boot/efi       vfat    umask=0077      0       1
EOF
btrfs subvolume list $t
echo "IMAGE_ENV ROOT_UUID=$root_uuid"
"#,
        build_boot!(),
    ),
    verify: concat!(
        verify_prelude!(),
        r#"
check root "$(findmnt -no SOURCE /)" "/dev/vda2[/@]"
check home "$(findmnt -no SOURCE /home)" "/dev/vda2[/@home]"
check log "$(findmnt -no SOURCE /var/log)" "/dev/vda2[/@log]"
check esp "$(findmnt -no SOURCE /boot/efi)" /dev/vda1
check subvolumes "$(btrfs subvolume list -a / | sed 's/.* path //; s|^<FS_TREE>/||' | sort | paste -sd,)" "@,@/.snapshots,@/.snapshots/1/snapshot,@/var/lib/machines,@home,@log"
check rootflags "$(grep -o 'rootflags=subvol=@' /proc/cmdline)" rootflags=subvol=@
check log-data "$(cat /var/log/altdisk-matrix.log)" "the production log"
"#,
        verify_end!(),
    ),
    console_answer: None,
};

/// xfs root with a separate ext4 /boot, as RHEL-style installs make it.
pub const XFS: Recipe = Recipe {
    name: "xfs",
    version: "xfs-1",
    base: Kind::Grub,
    disks: &[4 * GIB],
    build: concat!(
        build_prelude!(),
        r#"
say "partitioning $disk: ESP + ext4 /boot + xfs /"
printf '%s\n' 'label: gpt' \
	'start=2048, size=256MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System Partition"' \
	'size=512MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="boot"' \
	'type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"' | sfdisk -q --wipe always $disk
udevadm settle
mkfs.vfat -F 32 ${disk}1 >/dev/null
mkfs.ext4 -q -F -L boot ${disk}2
mkfs.xfs -q -f -L root ${disk}3
mkdir -p $t
mount ${disk}3 $t
mkdir -p $t/boot && mount ${disk}2 $t/boot
mkdir -p $t/boot/efi && mount ${disk}1 $t/boot/efi
"#,
        build_copy!(),
        r#"
root_uuid=$(uuid ${disk}3) boot_uuid=$(uuid ${disk}2) esp_uuid=$(uuid ${disk}1)
esp_partuuid=$(blkid -p -s PART_ENTRY_UUID -o value ${disk}1 | tr A-F a-f)
{
	echo '# /etc/fstab: static file system information.'
	echo "UUID=$root_uuid /               xfs     defaults        0       0"
	echo "UUID=$boot_uuid /boot           ext4    defaults        0       2"
	echo "UUID=$esp_uuid  /boot/efi       vfat    umask=0077      0       1"
} >$t/etc/fstab
echo "IMAGE_ENV ROOT_UUID=$root_uuid"
"#,
        build_boot!(),
    ),
    verify: concat!(
        verify_prelude!(),
        r#"
check root "$(findmnt -no SOURCE,FSTYPE /)" "/dev/vda3 xfs"
check boot "$(findmnt -no SOURCE,FSTYPE /boot)" "/dev/vda2 ext4"
check esp "$(findmnt -no SOURCE /boot/efi)" /dev/vda1
"#,
        verify_end!(),
    ),
    console_answer: None,
};

/// dracut on LVM: the dracut production image's system on GPT, ESP + ext4 /boot + an LVM
/// PV holding `rootvg` (root, swap), its initramfs made by dracut.
pub const DRACUT_LVM: Recipe = Recipe {
    name: "dracut-lvm",
    version: "dracut-lvm-1",
    base: Kind::Dracut,
    disks: &[4 * GIB],
    build: concat!(
        build_prelude!(),
        r#"
command -v dracut >/dev/null || { say "the base image has no dracut"; exit 1; }
say "partitioning $disk: ESP + ext4 /boot + LVM"
printf '%s\n' 'label: gpt' \
	'start=2048, size=256MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System Partition"' \
	'size=512MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="boot"' \
	'type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name="lvm"' | sfdisk -q --wipe always $disk
udevadm settle
mkfs.vfat -F 32 ${disk}1 >/dev/null
mkfs.ext4 -q -F -L boot ${disk}2
pvcreate -q -y ${disk}3
vgcreate -q rootvg ${disk}3
lvcreate -q -y -W y -L 2.2G -n root rootvg
lvcreate -q -y -W y -L 256M -n swap rootvg
udevadm settle
test ! -e /etc/lvm/devices/system.devices || { say "lvm wrote a devices file"; exit 1; }
mkfs.ext4 -q -F /dev/rootvg/root
mkswap /dev/rootvg/swap >/dev/null
mkdir -p $t
mount /dev/rootvg/root $t
mkdir -p $t/boot && mount ${disk}2 $t/boot
mkdir -p $t/boot/efi && mount ${disk}1 $t/boot/efi
"#,
        build_copy!(),
        r#"
root_uuid=$(uuid /dev/rootvg/root) swap_uuid=$(uuid /dev/rootvg/swap)
boot_uuid=$(uuid ${disk}2) esp_uuid=$(uuid ${disk}1)
esp_partuuid=$(blkid -p -s PART_ENTRY_UUID -o value ${disk}1 | tr A-F a-f)
{
	echo '# /etc/fstab: static file system information.'
	echo "UUID=$root_uuid /               ext4    errors=remount-ro 0     1"
	echo "UUID=$boot_uuid /boot           ext4    defaults        0       2"
	echo "UUID=$esp_uuid  /boot/efi       vfat    umask=0077      0       1"
	echo "UUID=$swap_uuid none            swap    sw              0       0"
} >$t/etc/fstab
echo "IMAGE_ENV ROOT_UUID=$root_uuid"
"#,
        build_boot!("dracut", "dracut --force --regenerate-all"),
        r#"
vgchange -q -an rootvg
"#,
    ),
    verify: concat!(
        verify_prelude!(),
        r#"
check root "$(findmnt -no SOURCE /)" /dev/mapper/rootvg-root
check boot "$(findmnt -no SOURCE /boot)" /dev/vda2
swap=$(swapon --show=NAME --noheadings --raw | head -n1)
check swap "$(readlink -f "${swap:-none}")" "$(readlink -f /dev/mapper/rootvg-swap)"
check initramfs-tool "$(lsinitrd /boot/initrd.img-$(uname -r) 2>/dev/null | grep -c 'dracut modules:')" 1
"#,
        verify_end!(),
    ),
    console_answer: None,
};

/// The passphrase of the LUKS machine's disk, typed at its initramfs prompt.
pub const LUKS_PASSPHRASE: &str = "correct horse battery staple";
/// What the initramfs (cryptsetup-initramfs) asks on the console.
pub const LUKS_PROMPT: &str = "Please unlock disk vda3_crypt:";

/// LVM on LUKS2 as Debian's guided install makes it: GPT, ESP + ext4 /boot + LUKS2
/// (`vda3_crypt`) holding the volume group `production-vg` (root, swap_1); crypttab by the
/// LUKS UUID, fstab by /dev/mapper names. The key is derived with PBKDF2 at few iterations,
/// not argon2id: unlocking stays quick under TCG.
pub const LUKS: Recipe = Recipe {
    name: "luks",
    version: "luks-1",
    base: Kind::GrubCrypt,
    disks: &[4 * GIB],
    build: concat!(
        build_prelude!(),
        r#"
command -v cryptsetup >/dev/null || { say "the base image has no cryptsetup"; exit 1; }
pass='correct horse battery staple'
say "partitioning $disk: ESP + ext4 /boot + LUKS2"
printf '%s\n' 'label: gpt' \
	'start=2048, size=256MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System Partition"' \
	'size=512MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="boot"' \
	'type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="crypt"' | sfdisk -q --wipe always $disk
udevadm settle
mkfs.vfat -F 32 ${disk}1 >/dev/null
mkfs.ext4 -q -F ${disk}2
printf '%s' "$pass" | cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 \
	--pbkdf-force-iterations 1000 --key-file - ${disk}3
printf '%s' "$pass" | cryptsetup open --key-file - ${disk}3 vda3_crypt
pvcreate -q -y /dev/mapper/vda3_crypt
vgcreate -q production-vg /dev/mapper/vda3_crypt
lvcreate -q -y -W y -L 2.2G -n root production-vg
lvcreate -q -y -W y -L 256M -n swap_1 production-vg
udevadm settle
test ! -e /etc/lvm/devices/system.devices || { say "lvm wrote a devices file"; exit 1; }
mkfs.ext4 -q -F /dev/production-vg/root
mkswap /dev/production-vg/swap_1 >/dev/null
mkdir -p $t
mount /dev/production-vg/root $t
mkdir -p $t/boot && mount ${disk}2 $t/boot
mkdir -p $t/boot/efi && mount ${disk}1 $t/boot/efi
"#,
        build_copy!(),
        r#"
luks_uuid=$(uuid ${disk}3) boot_uuid=$(uuid ${disk}2) esp_uuid=$(uuid ${disk}1)
esp_partuuid=$(blkid -p -s PART_ENTRY_UUID -o value ${disk}1 | tr A-F a-f)
{
	echo '# /etc/fstab: static file system information.'
	echo "/dev/mapper/production--vg-root /               ext4    errors=remount-ro 0       1"
	echo "UUID=$boot_uuid /boot           ext4    defaults        0       2"
	echo "UUID=$esp_uuid  /boot/efi       vfat    umask=0077      0       1"
	echo "/dev/mapper/production--vg-swap_1 none            swap    sw              0       0"
} >$t/etc/fstab
echo "vda3_crypt UUID=$luks_uuid none luks,discard" >$t/etc/crypttab
echo "IMAGE_ENV LUKS_UUID=$luks_uuid"
"#,
        build_boot!(),
        r#"
vgchange -q -an production-vg
cryptsetup close vda3_crypt
"#,
    ),
    verify: concat!(
        verify_prelude!(),
        r#"
check root "$(findmnt -no SOURCE /)" /dev/mapper/production--vg-root
check crypt "$(lsblk -rno NAME,TYPE /dev/vda3 | grep -c 'vda3_crypt crypt')" 1
check luks "$(cryptsetup luksDump /dev/vda3 | sed -n 's/^Version:[[:space:]]*//p')" 2
check boot "$(findmnt -no SOURCE /boot)" /dev/vda2
"#,
        verify_end!(),
    ),
    console_answer: Some((LUKS_PROMPT, LUKS_PASSPHRASE)),
};
