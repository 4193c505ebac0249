//! VM tier, the boot-stack matrix (issue 14): production machines of other layouts clone
//! themselves with altdisk, boot the clone (through the firmware boot order, then the clone
//! disk alone with fresh NVRAM), and come back. Each cell is one test; the cell that covers
//! most (btrfs subvolumes) runs in CI, the others are `#[ignore]`d for time and run with
//!
//!     sudo cargo test -p altdisk-tests --test vm_matrix -- --ignored --test-threads 1
//!
//! (tests/README.md keeps each cell's last result and date). Run as root.

use altdisk_tests::vm::Machine;
use altdisk_tests::vm_derived::derived_image;
use altdisk_tests::vm_matrix;
use altdisk_tests::*;

const GIB: u64 = 1 << 30;

fn sh(m: &mut Machine, cmd: &str) -> String {
    m.sh(cmd).unwrap().trim().to_string()
}

fn boot_order(m: &mut Machine) -> Vec<String> {
    sh(m, "efibootmgr")
        .lines()
        .find_map(|l| l.strip_prefix("BootOrder: "))
        .map(|o| o.split(',').map(String::from).collect())
        .unwrap_or_default()
}

/// The role `altdisk lspv` gives a disk.
fn role_of(m: &mut Machine, disk: &str) -> String {
    let out = sh(m, "altdisk lspv --json");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == disk)
        .map(|d| d["role"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Boot, install this tree's altdisk with its boot units.
fn start(m: &mut Machine) {
    m.boot().unwrap();
    m.install_altdisk(&altdisk_bin()).unwrap();
    m.sh("altdisk install-units && systemctl daemon-reload").unwrap();
}

/// Whether the checksums of /home the image's build recorded still hold; None when the
/// image has none (production images of build-image.sh).
fn home_intact(m: &mut Machine) -> Option<bool> {
    if sh(m, "test -e /root/home-manifest.sha256 && echo yes || echo no") == "no" {
        return None;
    }
    Some(
        m.run("cd /home && sha256sum --quiet -c /root/home-manifest.sha256", std::time::Duration::from_secs(120))
            .is_ok_and(|(rc, _)| rc == 0),
    )
}

/// btrfs subvolumes (@ on /, @home on /home, @log on /var/log, snapper's .snapshots with a
/// snapshot in @): the clone is one btrfs filesystem with the same subvolumes and no
/// snapshot, booted with rootflags=subvol=@, fstab by its new UUID; bootlist switches back;
/// the clone disk alone with fresh NVRAM boots too.
#[test]
fn vm_btrfs_subvolumes_clone_boots_and_switches_back() {
    require_root!();
    let image = derived_image(&vm_matrix::BTRFS).expect("btrfs production image");
    let mut m = Machine::new("btrfs", &image, &[4 * GIB]).unwrap();
    start(&mut m);
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /"), "/dev/vda2[/@]");
    let before = boot_order(&mut m);

    let out = m.sh("alt_disk_copy -d vdb 2>&1").unwrap();
    assert!(out.contains("complete (bootable)") && out.contains("subvolumes /@ on /, /@home on /home"), "{out}");
    assert!(out.contains("1 btrfs snapshot(s) not copied"), "{out}");
    let order = boot_order(&mut m);
    assert_eq!(order[1..], before[..], "the clone's entry goes first: {before:?} -> {order:?}");
    let clone_uuid = sh(&mut m, "blkid -p -s UUID -o value /dev/vdb3");
    assert_eq!(sh(&mut m, "blkid -p -s TYPE -o value /dev/vdb3"), "btrfs");

    // The firmware starts the clone: its subvolumes, its UUID, rootflags from GRUB.
    m.reboot().unwrap();
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /"), "/dev/vdb3[/@]", "{}", sh(&mut m, "cat /proc/cmdline"));
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /home"), "/dev/vdb3[/@home]");
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /var/log"), "/dev/vdb3[/@log]");
    assert_eq!(sh(&mut m, "findmnt -no UUID /"), clone_uuid);
    let cmdline = sh(&mut m, "cat /proc/cmdline");
    assert!(
        cmdline.contains("rootflags=subvol=@") && cmdline.contains(&format!("root=UUID={clone_uuid}")),
        "{cmdline}"
    );
    assert_eq!(
        sh(&mut m, "btrfs subvolume list -a / | sed 's/.* path //; s|^<FS_TREE>/||' | sort | paste -sd,"),
        "@,@/.snapshots,@/var/lib/machines,@home,@log",
        "the layout and the plain nested subvolume, no snapshot"
    );
    assert_eq!(sh(&mut m, "ls -A /.snapshots | wc -l"), "0", "snapper's snapshot 1 is left out");
    let fstab = sh(&mut m, "grep -v '^#' /etc/fstab");
    for (mp, sv) in [("/ ", "subvol=@ "), ("/home ", "subvol=@home "), ("/var/log ", "subvol=@log ")] {
        assert!(
            fstab.lines().any(|l| l.starts_with(&format!("UUID={clone_uuid}")) && l.contains(mp) && l.contains(sv)),
            "{mp}: {fstab}"
        );
    }
    assert_eq!(home_intact(&mut m), Some(true), "the clone's /home matches the production manifest");
    assert_eq!(sh(&mut m, "cat /var/log/altdisk-matrix.log"), "the production log");
    assert_eq!(role_of(&mut m, "vdb"), "rootvg");
    assert_eq!(role_of(&mut m, "vda"), "old_rootvg");
    assert_eq!(
        sh(&mut m, "systemctl --failed --no-legend --no-pager | wc -l"),
        "0",
        "{}",
        sh(&mut m, "systemctl --failed")
    );

    // One boot-list change brings the production system back.
    m.sh("bootlist -m normal vda").unwrap();
    m.reboot().unwrap();
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /"), "/dev/vda2[/@]");
    m.shutdown().unwrap();

    // The clone disk alone, with fresh NVRAM: the removable fallback path boots it.
    let clone_disk = m.disks()[1].clone();
    m.set_disks(vec![clone_disk]);
    m.fresh_vars().unwrap();
    m.boot().unwrap();
    assert_eq!(sh(&mut m, "findmnt -no UUID /"), clone_uuid);
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /home"), "/dev/vda3[/@home]");
    m.shutdown().unwrap();
}

/// The `HD(...)` node `efibootmgr -v` shows for entry `n` ("0003").
fn hd_node(m: &mut Machine, n: &str) -> String {
    let line = sh(m, &format!("efibootmgr -v | grep '^Boot{n}'"));
    let i = line.find("HD(").unwrap_or_else(|| panic!("no HD node: {line}"));
    line[i..i + line[i..].find(')').unwrap() + 1].to_lowercase()
}

/// A 512-byte-sector system cloned onto an NVMe disk of 4096-byte sectors: the GPT in 4K
/// sectors, the ESP grown to hold FAT32, the boot entry's HD node as efibootmgr itself
/// writes it for that partition; the firmware boots it through the boot order, and alone
/// with fresh NVRAM.
#[test]
#[ignore = "VM matrix cell outside CI: see the module documentation"]
fn vm_4k_nvme_target_clone_boots() {
    use altdisk_tests::vm::{production_image, DiskModel, Kind};
    require_root!();
    let image = production_image(Kind::Grub).expect("GRUB production image");
    let mut m = Machine::new("nvme4k", &image, &[4 * GIB]).unwrap();
    let target = m.disks()[1].clone();
    m.set_disk_model(&target, DiskModel::Nvme4k);
    start(&mut m);
    assert_eq!(sh(&mut m, "blockdev --getss /dev/nvme0n1"), "4096");
    let before = boot_order(&mut m);

    let out = m.sh("alt_disk_copy -d nvme0n1 2>&1").unwrap();
    assert!(out.contains("complete (bootable)"), "{out}");
    assert!(out.contains("FAT32 on 4096-byte sectors"), "the ESP grows: {out}");
    let table: serde_json::Value = serde_json::from_str(&sh(&mut m, "sfdisk --json /dev/nvme0n1")).unwrap();
    assert_eq!(table["partitiontable"]["sectorsize"], 4096, "{table}");
    let parts = table["partitiontable"]["partitions"].as_array().unwrap().clone();
    assert!(parts.iter().all(|x| x["start"].as_u64().unwrap() * 4096 % (1 << 20) == 0), "aligned: {table}");
    assert_eq!(parts[1]["size"].as_u64().unwrap() * 4096, 260 << 20, "ESP of 260 MiB: {table}");
    let fsck = sh(&mut m, "fsck.vfat -n /dev/nvme0n1p2");
    let clusters: u64 = fsck
        .split_whitespace()
        .find_map(|w| w.split_once('/').and_then(|(_, t)| t.parse().ok()))
        .unwrap_or_else(|| panic!("{fsck}"));
    assert!(clusters >= 65525, "a real FAT32: {fsck}");

    // altdisk's entry names the ESP as efibootmgr does for that partition.
    let order = boot_order(&mut m);
    assert_eq!(order[1..], before[..]);
    let ours = hd_node(&mut m, &order[0]);
    let made = sh(
        &mut m,
        "efibootmgr -c -d /dev/nvme0n1 -p 2 -L reference -l '\\EFI\\debian\\grubx64.efi' | sed -n 's/^BootCurrent.*//; s/^Boot\\([0-9A-F]\\{4\\}\\)\\* reference.*/\\1/p'",
    );
    let reference = hd_node(&mut m, &made);
    m.sh(&format!("efibootmgr -q -b {made} -B")).unwrap();
    assert_eq!(ours, reference, "HD node: altdisk's vs efibootmgr's");
    assert_eq!(boot_order(&mut m), order, "the reference entry is gone again");
    let clone_uuid = sh(&mut m, "blkid -p -s UUID -o value /dev/nvme0n1p3");

    // The firmware starts the clone from the 4K NVMe disk.
    m.reboot().unwrap();
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /"), "/dev/nvme0n1p3", "{}", sh(&mut m, "efibootmgr -v"));
    assert_eq!(sh(&mut m, "findmnt -no UUID /"), clone_uuid);
    assert_eq!(role_of(&mut m, "nvme0n1"), "rootvg");
    m.sh("bootlist -m normal vda").unwrap();
    m.reboot().unwrap();
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /"), "/dev/vda2");
    m.shutdown().unwrap();

    // The NVMe disk alone, fresh NVRAM: the removable path on the 4K ESP.
    m.set_disks(vec![target]);
    m.fresh_vars().unwrap();
    m.boot().unwrap();
    assert_eq!(sh(&mut m, "findmnt -no UUID /"), clone_uuid);
    m.shutdown().unwrap();
}

/// The common path of a UEFI cell: `alt_disk_copy -d vdb` on the running production
/// machine (its root on `src_root`), then [`boot_clone_and_back`].
fn uefi_cell(m: &mut Machine, src_root: &str, clone_root: &str, in_clone: impl Fn(&mut Machine)) -> String {
    assert_eq!(sh(m, "findmnt -no SOURCE /"), src_root);
    let before = boot_order(m);
    let out = m.sh("alt_disk_copy -d vdb 2>&1").unwrap();
    assert!(out.contains("complete (bootable)"), "{out}");
    let order = boot_order(m);
    assert_eq!(order[1..], before[..], "the clone's entry goes first: {before:?} -> {order:?}");
    boot_clone_and_back(m, src_root, clone_root, in_clone)
}

/// After a clone onto vdb: reboot through the boot order into the clone (its root on
/// `clone_root`, checked further by `in_clone`), `bootlist -m normal vda` and back to
/// `src_root`, then the clone disk alone with fresh NVRAM. Returns the clone's root UUID.
fn boot_clone_and_back(m: &mut Machine, src_root: &str, clone_root: &str, in_clone: impl Fn(&mut Machine)) -> String {
    let src_uuid = sh(m, "findmnt -no UUID /");
    m.reboot().unwrap();
    assert_eq!(sh(m, "findmnt -no SOURCE /"), clone_root, "{}", sh(m, "cat /proc/cmdline"));
    let clone_uuid = sh(m, "findmnt -no UUID /");
    assert_ne!(clone_uuid, src_uuid);
    assert_ne!(home_intact(m), Some(false), "the clone's /home matches the production manifest");
    assert_eq!(role_of(m, "vdb"), "rootvg");
    assert_eq!(role_of(m, "vda"), "old_rootvg");
    assert_eq!(sh(m, "systemctl --failed --no-legend --no-pager | wc -l"), "0", "{}", sh(m, "systemctl --failed"));
    in_clone(m);

    m.sh("bootlist -m normal vda").unwrap();
    m.reboot().unwrap();
    assert_eq!(sh(m, "findmnt -no SOURCE /"), src_root);
    m.shutdown().unwrap();

    let clone_disk = m.disks()[1].clone();
    m.set_disks(vec![clone_disk]);
    m.fresh_vars().unwrap();
    m.boot().unwrap();
    assert_eq!(sh(m, "findmnt -no UUID /"), clone_uuid, "the clone disk alone boots its own root");
    m.shutdown().unwrap();
    clone_uuid
}

/// xfs root with an ext4 /boot: the clone keeps both types; GRUB finds its files on the
/// clone's /boot.
#[test]
#[ignore = "VM matrix cell outside CI: see the module documentation"]
fn vm_xfs_root_ext4_boot_clone_boots_and_switches_back() {
    require_root!();
    let image = derived_image(&vm_matrix::XFS).expect("xfs production image");
    let mut m = Machine::new("xfs", &image, &[4 * GIB]).unwrap();
    start(&mut m);
    assert_eq!(sh(&mut m, "findmnt -no FSTYPE /"), "xfs");
    // meta, ESP, /boot, / on the clone.
    uefi_cell(&mut m, "/dev/vda3", "/dev/vdb4", |m| {
        assert_eq!(sh(m, "findmnt -no SOURCE,FSTYPE /"), "/dev/vdb4 xfs");
        assert_eq!(sh(m, "findmnt -no SOURCE,FSTYPE /boot"), "/dev/vdb3 ext4");
        let grub = sh(m, "grep -c 'search.*--fs-uuid' /boot/grub/grub.cfg");
        assert_ne!(grub, "0", "grub.cfg finds the clone's filesystems by UUID");
    });
}

/// GRUB for BIOS under SeaBIOS, from a disk of `kind` (root on vda`src_part`): the clone
/// (GPT: meta, BIOS boot, root) gets GRUB in its own boot code; bootlist says the firmware
/// owns the order and what to press, and refuses to change it; the clone disk boots alone
/// and names itself rootvg; the production disk, first again, boots its own system.
fn bios_cell(kind: altdisk_tests::vm::Kind, name: &str, src_part: u32) {
    use altdisk_tests::vm::production_image;
    let image = production_image(kind).expect("BIOS production image");
    let mut m = Machine::new(name, &image, &[4 * GIB]).unwrap();
    m.set_bios(true);
    start(&mut m);
    assert_eq!(sh(&mut m, "test -d /sys/firmware/efi && echo uefi || echo bios"), "bios");
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /"), format!("/dev/vda{src_part}"));

    let out = m.sh("alt_disk_copy -d vdb 2>&1").unwrap();
    assert!(out.contains("complete (bootable)") && out.contains("GRUB for BIOS"), "{out}");
    assert!(out.contains("the firmware owns the boot order") && out.contains("Esc"), "{out}");
    let parts = sh(&mut m, "lsblk -rno NAME,PARTTYPE /dev/vdb");
    assert!(parts.contains("vdb2 21686148-6449-6e6f-744e-656564454649"), "a BIOS boot partition: {parts}");
    assert_eq!(sh(&mut m, "dd if=/dev/vdb bs=512 count=1 status=none | grep -ac GRUB"), "1", "GRUB in vdb's MBR");
    let list = sh(&mut m, "bootlist -m normal -o");
    assert!(list.contains("firmware owns the boot order") && list.lines().any(|l| l.starts_with("vdb ")), "{list}");
    let (rc, e) = m.run("bootlist -m normal vdb 2>&1", std::time::Duration::from_secs(60)).unwrap();
    assert!(rc == 6 && e.contains("to boot vdb, pick the disk in the firmware's boot menu"), "exit {rc}: {e}");
    let clone_uuid = sh(&mut m, "blkid -p -s UUID -o value /dev/vdb3");
    let debconf =
        sh(&mut m, "mount /dev/vdb3 /mnt && chroot /mnt debconf-show grub-pc | grep install_devices; umount /mnt");
    assert!(debconf.contains("/dev/disk/by-id/virtio-disk1"), "grub-pc upgrades go to the clone's disk: {debconf}");
    m.shutdown().unwrap();

    // The clone disk alone: SeaBIOS runs its boot code, GRUB finds the clone's root.
    let disks = m.disks().to_vec();
    m.set_disks(vec![disks[1].clone()]);
    m.boot().unwrap();
    assert_eq!(sh(&mut m, "findmnt -no UUID /"), clone_uuid);
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /"), "/dev/vda3");
    assert_eq!(role_of(&mut m, "vda"), "rootvg");
    assert_eq!(
        sh(&mut m, "systemctl --failed --no-legend --no-pager | wc -l"),
        "0",
        "{}",
        sh(&mut m, "systemctl --failed")
    );
    m.shutdown().unwrap();

    // Both disks, the production one first: it boots its own system, the clone is old_rootvg.
    m.set_disks(disks);
    m.boot().unwrap();
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /"), format!("/dev/vda{src_part}"));
    assert_eq!(role_of(&mut m, "vdb"), "old_rootvg");
    m.shutdown().unwrap();
}

/// GRUB for BIOS from an MBR (msdos) disk.
#[test]
#[ignore = "VM matrix cell outside CI: see the module documentation"]
fn vm_bios_mbr_clone_boots_alone() {
    require_root!();
    bios_cell(altdisk_tests::vm::Kind::BiosMbr, "bios-mbr", 1);
}

/// GRUB for BIOS from a GPT disk with a BIOS boot partition.
#[test]
#[ignore = "VM matrix cell outside CI: see the module documentation"]
fn vm_bios_gpt_clone_boots_alone() {
    require_root!();
    bios_cell(altdisk_tests::vm::Kind::BiosGpt, "bios-gpt", 2);
}

/// dracut in place of initramfs-tools, on ext4: altdisk regenerates the clone's initramfs
/// with dracut, and it boots.
#[test]
#[ignore = "VM matrix cell outside CI: see the module documentation"]
fn vm_dracut_ext4_clone_boots_and_switches_back() {
    use altdisk_tests::vm::{production_image, Kind};
    require_root!();
    let image = production_image(Kind::Dracut).expect("dracut production image");
    let mut m = Machine::new("dracut", &image, &[4 * GIB]).unwrap();
    start(&mut m);
    assert_eq!(sh(&mut m, "command -v update-initramfs || echo none"), "none", "dracut only");
    uefi_cell(&mut m, "/dev/vda2", "/dev/vdb3", |m| {
        let initrd = sh(m, "lsinitrd /boot/initrd.img-$(uname -r) | grep -c 'dracut modules:'");
        assert_eq!(initrd, "1", "the clone's initramfs is dracut's");
    });
}

/// dracut on LVM: the clone's volume group altinst_rootvg is found and activated by the
/// initramfs dracut made for it.
#[test]
#[ignore = "VM matrix cell outside CI: see the module documentation"]
fn vm_dracut_lvm_clone_boots_and_switches_back() {
    require_root!();
    let image = derived_image(&vm_matrix::DRACUT_LVM).expect("dracut LVM production image");
    let mut m = Machine::new("dracut-lvm", &image, &[4 * GIB]).unwrap();
    start(&mut m);
    uefi_cell(&mut m, "/dev/mapper/rootvg-root", "/dev/mapper/altinst_rootvg-root", |m| {
        assert_eq!(sh(m, "vgs --noheadings -o vg_name | tr -d ' ' | sort | paste -sd,"), "altinst_rootvg,rootvg");
        let swap = sh(m, "swapon --show=NAME --noheadings --raw | xargs -r readlink -f");
        assert_eq!(swap, sh(m, "readlink -f /dev/mapper/altinst_rootvg-swap"), "the clone's swap");
        assert_eq!(sh(m, "lsinitrd /boot/initrd.img-$(uname -r) | grep -c 'dracut modules:'"), "1");
    });
}

/// Debian 13 (trixie) as the source system.
#[test]
#[ignore = "VM matrix cell outside CI: see the module documentation"]
fn vm_trixie_clone_boots_and_switches_back() {
    use altdisk_tests::vm::{production_image, Kind};
    require_root!();
    let image = production_image(Kind::Trixie).expect("trixie production image");
    let mut m = Machine::new("trixie", &image, &[4 * GIB]).unwrap();
    start(&mut m);
    assert_eq!(sh(&mut m, ". /etc/os-release; echo $VERSION_CODENAME"), "trixie");
    uefi_cell(&mut m, "/dev/vda2", "/dev/vdb3", |m| {
        assert_eq!(sh(m, ". /etc/os-release; echo $VERSION_CODENAME"), "trixie");
    });
}

/// LVM on LUKS2 (Debian's guided encrypted install). Without a passphrase the clone is
/// refused in one line before anything is written; with it, the clone gets LUKS2 containers
/// of its own (new UUID, new volume key, the same passphrase), its crypttab names them, the
/// passphrase is nowhere on disk or in the journal, and the clone boots with the passphrase
/// typed at its initramfs prompt: through the boot order, and alone.
#[test]
#[ignore = "VM matrix cell outside CI: see the module documentation"]
fn vm_luks_lvm_clone_boots_with_its_own_luks_header() {
    require_root!();
    let image = derived_image(&vm_matrix::LUKS).expect("LUKS production image");
    let mut m = Machine::new("luks", &image, &[4 * GIB]).unwrap();
    // The prompt of the source (vda3_crypt) and of the clone (alt_vda3_crypt) alike.
    m.set_console_answer("Please unlock disk ", vm_matrix::LUKS_PASSPHRASE);
    start(&mut m);
    assert_eq!(sh(&mut m, "findmnt -no SOURCE /"), "/dev/mapper/production--vg-root");
    let (rc, out) = m.run("alt_disk_copy -d vdb 2>&1", std::time::Duration::from_secs(300)).unwrap();
    assert_eq!(rc, 2, "a passphrase is needed: {out}");
    assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
    assert!(out.contains("vda3_crypt") && out.contains("--luks-passphrase-file"), "{out}");
    assert_eq!(sh(&mut m, "wipefs --no-act /dev/vdb | wc -l"), "0", "vdb untouched");

    // /run is not cloned: the passphrase file stays out of the clone.
    m.sh(&format!("umask 077; printf '%s\\n' '{}' >/run/pass", vm_matrix::LUKS_PASSPHRASE)).unwrap();
    let out = m.sh("alt_disk_copy -d vdb --luks-passphrase-file /run/pass 2>&1").unwrap();
    assert!(out.contains("complete (bootable)") && out.contains("LUKS2 alt_vda3_crypt"), "{out}");
    // meta, ESP, /boot, then the LUKS2 container holding altinst_rootvg.
    assert_eq!(sh(&mut m, "cryptsetup luksDump /dev/vdb4 | sed -n 's/^Version: *//p'"), "2");
    let (src_uuid, clone_uuid) =
        (sh(&mut m, "cryptsetup luksUUID /dev/vda3"), sh(&mut m, "cryptsetup luksUUID /dev/vdb4"));
    assert_ne!(src_uuid, clone_uuid, "a LUKS UUID of its own");
    let key = |m: &mut Machine, dev: &str| {
        sh(m, &format!("printf %s \"$(head -n 1 /run/pass)\" | cryptsetup luksDump --dump-volume-key --batch-mode --key-file - {dev} | sed -n '/MK dump\\|[Vv]olume key/,$p' | tr -d ' \\t\\n'"))
    };
    let (k1, k2) = (key(&mut m, "/dev/vda3"), key(&mut m, "/dev/vdb4"));
    assert!(
        !k1.is_empty() && k1 != k2,
        "a volume key of its own: {:?}",
        sh(&mut m, "printf %s \"$(head -n 1 /run/pass)\" | cryptsetup luksDump --dump-volume-key --batch-mode --key-file - /dev/vda3 2>&1 | head -n 12")
    );
    assert_eq!(sh(&mut m, "test -e /dev/mapper/alt_vda3_crypt && echo open || echo closed"), "closed");
    assert_eq!(sh(&mut m, "journalctl -b --no-pager | grep -c 'correct horse' || true"), "0", "never logged");

    // A refresh of the encrypted clone: refused in one line while its container is locked;
    // with it unlocked, the source's change reaches the clone and crypttab stays the clone's.
    m.sh("echo refreshed > /root/refresh-marker").unwrap();
    let (rc, out) = m.run("alt_disk_copy --refresh -d vdb 2>&1", std::time::Duration::from_secs(300)).unwrap();
    assert_eq!((rc, out.trim().lines().count()), (4, 1), "{out}");
    assert!(out.contains("cryptsetup open /dev/vdb4 alt_vda3_crypt"), "{out}");
    m.sh("printf %s \"$(head -n 1 /run/pass)\" | cryptsetup open --key-file - /dev/vdb4 alt_vda3_crypt").unwrap();
    let out = m.sh("alt_disk_copy --refresh -d vdb 2>&1").unwrap();
    assert!(out.contains("refreshed:"), "{out}");
    m.sh("rm -f /run/pass").unwrap();

    boot_clone_and_back(&mut m, "/dev/mapper/production--vg-root", "/dev/mapper/altinst_rootvg-root", |m| {
        assert_eq!(sh(m, "cat /root/refresh-marker"), "refreshed", "the refresh reached the clone");
        let crypttab = sh(m, "grep -v '^#' /etc/crypttab");
        let uuid = sh(m, "cryptsetup luksUUID /dev/vdb4");
        assert_eq!(crypttab, format!("alt_vda3_crypt UUID={uuid} none luks,discard"));
        assert_eq!(sh(m, "lsblk -rno NAME,TYPE /dev/vdb4 | grep -c 'alt_vda3_crypt crypt'"), "1");
        let leaks = sh(m, "grep -rIl 'correct horse' /etc /root /var /home 2>/dev/null | wc -l");
        assert_eq!(leaks, "0", "the passphrase is nowhere in the clone");
    });
}
