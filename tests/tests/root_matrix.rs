//! Root tier, the boot-stack matrix on loop devices (issue 14): source layouts beyond one
//! ext4 root, built on loop devices this test made, cloned, and compared mount point by mount
//! point: btrfs subvolume layouts (one filesystem mounted several times, as Ubuntu, Fedora
//! and openSUSE install it), 4K-sector targets, xfs root with an ext4 /boot; and the stacks
//! altdisk refuses, refused before anything is written. Run as root.

use std::path::{Path, PathBuf};

use altdisk::discover::record::{self, State};
use altdisk_tests::*;

const MIB: u64 = 1 << 20;

fn assert_ok(o: &std::process::Output) {
    assert!(o.status.success(), "altdisk failed: {}", stderr(o));
}

fn part(dev: &Path, n: u32) -> PathBuf {
    altdisk::write::partition::partition_path(dev, n)
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

/// The subvolume a mount point shows (mountinfo's root field), if mounted.
fn mounted_subvol(at: &Path) -> Option<String> {
    let t = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    t.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (Path::new(f[4]) == at).then(|| f[3].to_string())
    })
}

/// Paths of the subvolumes of the btrfs filesystem mounted at `at` (`btrfs subvolume list -a`,
/// `<FS_TREE>/` stripped), sorted.
fn subvolumes(at: &Path) -> Vec<String> {
    let out = run("btrfs", &["subvolume", "list", "-a", p(at)]).unwrap();
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(" path ").nth(1))
        .map(|s| s.trim().trim_start_matches("<FS_TREE>/").to_string())
        .collect();
    v.sort();
    v
}

/// A Ubuntu-style btrfs system on one loop device: subvolumes @ (mounted at src/), @home
/// (src/home) and @log (src/var/log), @ the default subvolume; nested in @ a plain
/// subvolume (var/lib/machines, as systemd makes it) and snapper's `.snapshots` with one
/// read-only snapshot of @ (`.snapshots/1/snapshot` and its info.xml); nested in @home a
/// writable snapshot of it (a hand-made backup). fstab names the three mounts by UUID, one
/// with a `subvolid=` too.
fn btrfs_source(s: &mut Scratch) -> (PathBuf, PathBuf) {
    let dev = s.loopdev("src-btrfs.img", 1024 * MIB);
    let top = s.mkfs_mount(&dev, "btrfs", Some("root"), "top");
    for sv in ["@", "@home", "@log"] {
        run("btrfs", &["subvolume", "create", p(&top.join(sv))]).unwrap();
    }
    run("btrfs", &["subvolume", "set-default", p(&top.join("@"))]).unwrap();
    let log_id = run("btrfs", &["subvolume", "show", p(&top.join("@log"))])
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("Subvolume ID:").map(|v| v.trim().to_string()))
        .unwrap();
    run("umount", &[p(&top)]).unwrap();
    let src = s.mkdir("src");
    run("mount", &["-o", "subvol=/@", p(&dev), p(&src)]).unwrap();
    // Every kind of file in @ and in @home (hard links do not cross subvolumes).
    populate(&src).unwrap();
    std::fs::create_dir_all(src.join("var/log")).unwrap();
    run("mount", &["-o", "subvol=@home", p(&dev), p(&src.join("home"))]).unwrap();
    run("mount", &["-o", "subvol=@log", p(&dev), p(&src.join("var/log"))]).unwrap();
    populate(&src.join("home")).unwrap();
    sh(&format!(
        r#"
cd '{src}'
mkdir -p home/bob var/log/apt var/lib
echo 'bob was here' > home/bob/notes.txt
head -c 1000000 /dev/urandom > home/bob/photo.jpg
echo 'Start-Date: 2024-01-01' > var/log/apt/history.log
btrfs -q subvolume create var/lib/machines
echo machine > var/lib/machines/image.raw
btrfs -q subvolume create .snapshots
mkdir .snapshots/1
btrfs -q subvolume snapshot -r . .snapshots/1/snapshot
echo '<snapshot><num>1</num></snapshot>' > .snapshots/1/info.xml
btrfs -q subvolume snapshot home home/.backup-2024
"#,
        src = src.display()
    ))
    .unwrap();
    let uuid = blkid(&dev, "UUID").unwrap();
    std::fs::write(
        src.join("etc/fstab"),
        format!(
            "# <fs> <mount> <type> <opts> <dump> <pass>\n\
             UUID={uuid} /        btrfs defaults,subvol=@ 0 0\n\
             UUID={uuid} /home    btrfs defaults,subvol=@home 0 0\n\
             UUID={uuid} /var/log btrfs subvolid={log_id},subvol=/@log 0 0\n\
             tmpfs /run tmpfs defaults 0 0\n"
        ),
    )
    .unwrap();
    (dev, src)
}

#[test]
fn root_btrfs_subvolume_layout_is_kept() {
    require_root!();
    let mut s = Scratch::new("btrfs-layout");
    let (sdev, src) = btrfs_source(&mut s);
    // btrfs mounts show an anonymous device in mountinfo: the mount table names the disk.
    let table = altdisk::discover::mounts::read().unwrap();
    let home = altdisk::discover::mounts::mount_at(&table, &src.join("home")).unwrap();
    assert_eq!(Some((home.major, home.minor)), altdisk::discover::blockdev::dev_numbers(&sdev));
    let tdev = s.loopdev("target.img", 2048 * MIB);
    let alt = s.path("alt");
    let o = altdisk("alt_disk_copy", &["--source", p(&src), "-d", p(&tdev), "-P1", "--mount-at", p(&alt)]);
    assert_ok(&o);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(out.contains("2 btrfs snapshot(s) not copied"), "{out}");

    // One btrfs filesystem on one partition, mounted three times from its subvolumes.
    let new_uuid = blkid(&part(&tdev, 2), "UUID").unwrap();
    assert_ne!(Some(new_uuid.clone()), blkid(&sdev, "UUID"));
    assert_eq!(blkid(&part(&tdev, 2), "TYPE").as_deref(), Some("btrfs"));
    assert!(!part(&tdev, 3).exists(), "no partition beyond the btrfs one");
    for (at, sv) in [("", "/@"), ("home", "/@home"), ("var/log", "/@log")] {
        let m = if at.is_empty() { alt.clone() } else { alt.join(at) };
        assert_eq!(mounted_subvol(&m).as_deref(), Some(sv), "{}", m.display());
    }
    assert_eq!(
        subvolumes(&alt),
        vec!["@", "@/.snapshots", "@/var/lib/machines", "@home", "@log"],
        "the layout and the plain nested subvolumes are kept; the snapshots are not"
    );
    let def = run("btrfs", &["subvolume", "get-default", p(&alt)]).unwrap();
    assert!(def.trim().ends_with("path @"), "the default subvolume follows: {def}");

    // Each mount point holds what the source's does.
    // (srv/hard2 shares its inode with a file under @'s home directory, hidden by @home.)
    let skip = ["=etc", "etc/fstab", "etc/altdisk", "=.snapshots", ".snapshots/1", "home", "var/log", "srv/hard2"];
    let diffs = compare(&src, &alt, &skip);
    assert!(diffs.is_empty(), "/: differences:\n{}", diffs.join("\n"));
    let diffs = compare(&src.join("home"), &alt.join("home"), &[".backup-2024"]);
    assert!(diffs.is_empty(), "/home: differences:\n{}", diffs.join("\n"));
    assert!(!alt.join("home/.backup-2024").exists(), "the snapshot in @home is not copied");
    for d in ["var/log", "var/lib/machines"] {
        let diffs = compare(&src.join(d), &alt.join(d), &[]);
        assert!(diffs.is_empty(), "/{d}: differences:\n{}", diffs.join("\n"));
    }
    assert!(alt.join(".snapshots").is_dir() && !alt.join(".snapshots/1").exists(), "snapper's snapshot 1 is left out");

    // fstab follows: the new UUID, the same subvolumes, no subvolid (it differs in a clone).
    let fstab = std::fs::read_to_string(alt.join("etc/fstab")).unwrap();
    assert!(fstab.contains(&format!("UUID={new_uuid} /        btrfs defaults,subvol=@ 0 0\n")), "{fstab}");
    assert!(fstab.contains(&format!("UUID={new_uuid} /home    btrfs defaults,subvol=@home 0 0\n")), "{fstab}");
    assert!(fstab.contains(&format!("UUID={new_uuid} /var/log btrfs subvol=/@log 0 0\n")), "{fstab}");
    assert!(!fstab.contains("subvolid"), "{fstab}");

    // The record names each mount's subvolume; wake mounts them again.
    let env = record::read(&tdev).expect("a record").unwrap();
    assert_eq!(env.state, State::Copied);
    let subs: Vec<(String, Option<String>, String)> =
        env.filesystems.iter().map(|f| (f.mountpoint.clone(), f.subvol.clone(), f.uuid.clone())).collect();
    for (mp, sv) in [("/", "/@"), ("/home", "/@home"), ("/var/log", "/@log")] {
        assert!(subs.contains(&(mp.into(), Some(sv.into()), new_uuid.clone())), "{subs:?}");
    }
    assert_ok(&altdisk("alt_rootvg_op", &["-S", "--mount-at", p(&alt)]));
    assert!(mounted_subvol(&alt).is_none());
    assert_ok(&altdisk("alt_rootvg_op", &["-W", "-d", p(&tdev), "--mount-at", p(&alt)]));
    assert_eq!(mounted_subvol(&alt.join("home")).as_deref(), Some("/@home"));
    assert_eq!(std::fs::read_to_string(alt.join("home/bob/notes.txt")).unwrap(), "bob was here\n");
    assert_eq!(std::fs::read_to_string(alt.join("var/log/apt/history.log")).unwrap(), "Start-Date: 2024-01-01\n");
    assert_ok(&altdisk("alt_rootvg_op", &["-S", "--mount-at", p(&alt)]));

    // The source is as it was: its snapshots, subvolumes and default.
    let top = s.mkdir("top-after");
    run("mount", &["-o", "subvolid=5", p(&sdev), p(&top)]).unwrap();
    assert_eq!(
        subvolumes(&top),
        vec![
            "@",
            "@/.snapshots",
            "@/.snapshots/1/snapshot",
            "@/var/lib/machines",
            "@home",
            "@home/.backup-2024",
            "@log"
        ]
    );
    run("umount", &[p(&top)]).unwrap();
}

#[test]
fn root_bind_mount_is_refused_before_writing() {
    require_root!();
    let mut s = Scratch::new("bind-refused");
    let dev = s.loopdev("src.img", 256 * MIB);
    let src = s.mkfs_mount(&dev, "ext4", Some("root"), "src");
    std::fs::create_dir_all(src.join("srv/data")).unwrap();
    std::fs::create_dir_all(src.join("mnt/data")).unwrap();
    std::fs::write(src.join("srv/data/f"), "x").unwrap();
    run("mount", &["--bind", p(&src.join("srv/data")), p(&src.join("mnt/data"))]).unwrap();
    let tdev = s.loopdev("target.img", 512 * MIB);
    let o = altdisk("alt_disk_copy", &["--source", p(&src), "-d", p(&tdev), "-P1", "--mount-at", p(&s.path("alt"))]);
    assert_eq!(o.status.code(), Some(6), "not supported");
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(e.contains("/mnt/data") && e.contains("bind mount"), "{e}");
    assert!(record::read(&tdev).is_none() && blkid(&tdev, "PTTYPE").is_none(), "nothing written");
}

/// A loop device of 4096-byte logical sectors (a 4Kn disk) over an image file of the scratch
/// directory (detached with it).
fn loopdev_4k(s: &mut Scratch, name: &str, size: u64) -> PathBuf {
    let img = s.image(name, size);
    let dev = run("losetup", &["--find", "--show", "--sector-size", "4096", p(&img)]).unwrap();
    let dev = PathBuf::from(dev.trim());
    assert_eq!(run("blockdev", &["--getss", p(&dev)]).unwrap().trim(), "4096");
    dev
}

/// A source on 512-byte sectors cloned onto a 4Kn disk: the GPT is written in 4096-byte
/// sectors (read back by sfdisk and by the kernel's partition nodes), partitions are aligned,
/// the record is where the table says, and every file is there.
#[test]
fn root_clone_onto_4k_sectors() {
    require_root!();
    let mut s = Scratch::new("clone-4k");
    let sdev = s.loopdev("src.img", 512 * MIB);
    let src = s.mkfs_mount(&sdev, "ext4", Some("root"), "src");
    populate(&src).unwrap();
    let hdev = s.loopdev("src-home.img", 320 * MIB);
    let home = s.mkfs_mount(&hdev, "xfs", Some("home"), "src/home");
    populate(&home).unwrap();
    let (ru, hu) = (blkid(&sdev, "UUID").unwrap(), blkid(&hdev, "UUID").unwrap());
    std::fs::write(
        src.join("etc/fstab"),
        format!("UUID={ru} / ext4 errors=remount-ro 0 1\nUUID={hu} /home xfs defaults 0 2\n"),
    )
    .unwrap();
    let tdev = loopdev_4k(&mut s, "target-4k.img", 2048 * MIB);
    let alt = s.path("alt");
    let o = altdisk("alt_disk_copy", &["--source", p(&src), "-d", p(&tdev), "-P1", "--mount-at", p(&alt)]);
    assert_ok(&o);

    // sfdisk reads the table in the disk's own sectors: starts and sizes in 4096-byte units,
    // 1 MiB aligned, and the kernel's partition nodes agree.
    let j: serde_json::Value = serde_json::from_str(&run("sfdisk", &["--json", p(&tdev)]).unwrap()).unwrap();
    assert_eq!(j["partitiontable"]["label"], "gpt");
    assert_eq!(j["partitiontable"]["sectorsize"], 4096, "{j}");
    let parts = j["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "meta, /, /home: {j}");
    for (i, x) in parts.iter().enumerate() {
        let (start, size) = (x["start"].as_u64().unwrap(), x["size"].as_u64().unwrap());
        assert_eq!(start * 4096 % MIB, 0, "partition {} aligned", i + 1);
        let node = part(&tdev, i as u32 + 1);
        let bytes: u64 = run("blockdev", &["--getsize64", p(&node)]).unwrap().trim().parse().unwrap();
        assert_eq!(bytes, size * 4096, "{}", node.display());
        let sysfs_start: u64 =
            std::fs::read_to_string(format!("/sys/class/block/{}/start", node.file_name().unwrap().to_str().unwrap()))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
        assert_eq!(sysfs_start * 512, start * 4096, "{} starts where the table says", node.display());
    }
    assert_eq!(parts[0]["name"], "altdisk-meta");
    let env = record::read(&tdev).expect("the record, found through the 4K table").unwrap();
    assert_eq!(env.state, State::Copied);
    assert_eq!(
        record::meta_offset(&tdev),
        Some(parts[0]["start"].as_u64().unwrap() * 4096),
        "the record lives at the meta partition"
    );
    for (from, to, skip) in [
        (&src, alt.clone(), vec!["=etc", "etc/fstab", "etc/altdisk", "lost+found", "home", "srv/hard2"]),
        (&home, alt.join("home"), vec![]),
    ] {
        let diffs = compare(from, &to, &skip);
        assert!(diffs.is_empty(), "{}: differences:\n{}", from.display(), diffs.join("\n"));
    }
    assert_eq!(run("blockdev", &["--getss", p(&part(&tdev, 2))]).unwrap().trim(), "4096");
    assert_ok(&altdisk("alt_rootvg_op", &["-S", "--mount-at", p(&alt)]));
}

/// On a BIOS machine (this one, when it has no /sys/firmware/efi) bootlist says the firmware
/// owns the order and what to press; asked to change it, it refuses (exit 6) saying so.
#[test]
fn bios_bootlist_says_the_firmware_owns_the_order() {
    if Path::new("/sys/firmware/efi").exists() {
        eprintln!("SKIPPED: this machine boots through UEFI");
        return;
    }
    let o = altdisk("bootlist", &["-m", "normal", "-o"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("firmware owns the boot order") && out.contains("Esc") && out.contains("F12"), "{out}");
    let o = altdisk("bootlist", &["-m", "normal", "vdb"]);
    assert_eq!(o.status.code(), Some(6));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("boots through BIOS") && e.contains("to boot vdb, pick the disk"), "{e}");
}

/// An xfs root with an ext4 /boot (as RHEL-style installs make it): each keeps its type,
/// gets a new UUID (xfs's too), fstab follows, every file is there.
#[test]
fn root_xfs_root_with_ext4_boot() {
    require_root!();
    let mut s = Scratch::new("xfs-root");
    let rdev = s.loopdev("src-root.img", 512 * MIB);
    let src = s.mkfs_mount(&rdev, "xfs", Some("root"), "src");
    populate(&src).unwrap();
    let bdev = s.loopdev("src-boot.img", 128 * MIB);
    let boot = s.mkfs_mount(&bdev, "ext4", Some("boot"), "src/boot");
    std::fs::write(boot.join("vmlinuz-6.1.0-test"), vec![7u8; 3 << 20]).unwrap();
    std::fs::create_dir_all(boot.join("grub")).unwrap();
    std::fs::write(boot.join("grub/grub.cfg"), "# test\n").unwrap();
    let (ru, bu) = (blkid(&rdev, "UUID").unwrap(), blkid(&bdev, "UUID").unwrap());
    std::fs::write(src.join("etc/fstab"), format!("UUID={ru} / xfs defaults 0 0\nUUID={bu} /boot ext4 defaults 0 2\n"))
        .unwrap();
    let tdev = s.loopdev("target.img", 2048 * MIB);
    let alt = s.path("alt");
    let o = altdisk("alt_disk_copy", &["--source", p(&src), "-d", p(&tdev), "-P1", "--mount-at", p(&alt)]);
    assert_ok(&o);
    // /boot goes before / on the disk, as the plan orders them.
    let (nb, nr) = (part(&tdev, 2), part(&tdev, 3));
    assert_eq!(blkid(&nb, "TYPE").as_deref(), Some("ext4"));
    assert_eq!(blkid(&nr, "TYPE").as_deref(), Some("xfs"));
    let (new_b, new_r) = (blkid(&nb, "UUID").unwrap(), blkid(&nr, "UUID").unwrap());
    assert!(new_b != bu && new_r != ru);
    assert_eq!(blkid(&nr, "LABEL").as_deref(), Some("alt_root"));
    let fstab = std::fs::read_to_string(alt.join("etc/fstab")).unwrap();
    assert_eq!(fstab, format!("UUID={new_r} / xfs defaults 0 0\nUUID={new_b} /boot ext4 defaults 0 2\n"));
    for (from, to, skip) in [
        (&src, alt.clone(), vec!["=etc", "etc/fstab", "etc/altdisk", "boot"]),
        (&boot, alt.join("boot"), vec!["lost+found"]),
    ] {
        let diffs = compare(from, &to, &skip);
        assert!(diffs.is_empty(), "{}: differences:\n{}", from.display(), diffs.join("\n"));
    }
    assert_ok(&altdisk("alt_rootvg_op", &["-S", "--mount-at", p(&alt)]));
}

fn sha(dev: &Path) -> String {
    run("sha256sum", &[p(dev)]).unwrap().split_whitespace().next().unwrap().to_string()
}

/// A system installed in btrfs subvolumes on a disk that is not running (the rescue image's
/// offline disk swap): `altdisk find` looks into its @ subvolume, `copy --source-disk`
/// mounts it as its fstab says (@ on /, @home on /home) and clones the layout, and not a
/// byte of the source disk changes.
#[test]
fn root_btrfs_layout_on_a_disk_is_found_and_cloned_offline() {
    use altdisk::write::partition::{self, PartSpec};
    require_root!();
    let mut s = Scratch::new("btrfs-offline");
    let dev = s.loopdev("system.img", 700 * MIB);
    let parts = [PartSpec {
        number: 1,
        start: MIB,
        size: 640 * MIB,
        type_guid: altdisk::discover::gpt::LINUX_FS_TYPE.into(),
        guid: uuid::Uuid::new_v4(),
        name: "root".into(),
    }];
    partition::write_gpt(&dev, 700 * MIB, uuid::Uuid::new_v4(), 512, &parts).unwrap();
    partition::add_partition_nodes(&dev, &parts).unwrap();
    let fsdev = part(&dev, 1);
    let top = s.mkfs_mount(&fsdev, "btrfs", Some("ubuntu"), "top");
    for sv in ["@", "@home"] {
        run("btrfs", &["subvolume", "create", p(&top.join(sv))]).unwrap();
    }
    let root = top.join("@");
    populate(&root).unwrap();
    populate(&top.join("@home")).unwrap();
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("boot/vmlinuz-6.8.0-test"), b"kernel").unwrap();
    std::fs::write(root.join("etc/os-release"), "NAME=\"Ubuntu\"\nPRETTY_NAME=\"Ubuntu 24.04 LTS\"\n").unwrap();
    let uuid = blkid(&fsdev, "UUID").unwrap();
    std::fs::write(
        root.join("etc/fstab"),
        format!("UUID={uuid} / btrfs defaults,subvol=@ 0 1\nUUID={uuid} /home btrfs defaults,subvol=@home 0 2\n"),
    )
    .unwrap();
    run("umount", &[p(&top)]).unwrap();
    let name = dev.file_name().unwrap().to_str().unwrap().to_string();
    let before = sha(&dev);

    let o = altdisk("altdisk", &["find", "--json"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let sys = v["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["disks"].as_array().unwrap().iter().any(|d| d == name.as_str()))
        .unwrap_or_else(|| panic!("not found: {v}"))
        .clone();
    assert_eq!(sys["os"], "Ubuntu 24.04 LTS");
    assert_eq!(sys["kernels"], serde_json::json!(["6.8.0-test"]));

    let t = s.loopdev("target.img", 1536 * MIB);
    let alt = s.path("alt");
    let o = altdisk("altdisk", &["copy", "--source-disk", &name, "-d", p(&t), "-P1", "--mount-at", p(&alt)]);
    assert_ok(&o);
    assert_eq!(mounted_subvol(&alt).as_deref(), Some("/@"));
    assert_eq!(mounted_subvol(&alt.join("home")).as_deref(), Some("/@home"));
    assert_eq!(subvolumes(&alt), vec!["@", "@home"]);
    let look = s.mkdir("look");
    for (sv, to, skip) in [
        ("@", alt.clone(), vec!["=etc", "etc/fstab", "etc/altdisk", "home", "srv/hard2", "usr/local/lib/altdisk"]),
        ("@home", alt.join("home"), vec![]),
    ] {
        run("mount", &["-o", &format!("ro,subvol={sv}"), p(&fsdev), p(&look)]).unwrap();
        let diffs = compare(&look, &to, &skip);
        run("umount", &[p(&look)]).unwrap();
        assert!(diffs.is_empty(), "{sv}: differences:\n{}", diffs.join("\n"));
    }
    assert_ok(&altdisk("alt_rootvg_op", &["-S", "--mount-at", p(&alt)]));
    assert_eq!(sha(&dev), before, "the source disk was written");
}
