//! Root tier: clones on loop devices and image files this test made. Each test builds a
//! source system on its own loop devices, runs altdisk, and checks what a user would check:
//! the copy is identical path by path, the identities are new and fstab follows them, the
//! state record says what happened, nothing stays mounted. Run as root.

use std::path::{Path, PathBuf};

use altdisk::discover::record::{self, State};
use altdisk_tests::*;

const MIB: u64 = 1 << 20;

/// A source system: root filesystem on its own loop device, populated, mounted at src/.
fn source(s: &mut Scratch, fstype: &str, size: u64) -> (PathBuf, PathBuf) {
    let dev = s.loopdev("src-root.img", size);
    let at = s.mkfs_mount(&dev, fstype, Some("root"), "src");
    populate(&at).unwrap();
    let uuid = blkid(&dev, "UUID").unwrap();
    std::fs::write(at.join("etc/fstab"), format!("# <fs> <mount> <type> <opts> <dump> <pass>\nUUID={uuid}\t/\t{fstype}\terrors=remount-ro 0 1\ntmpfs /run tmpfs defaults 0 0\n")).unwrap();
    (dev, at)
}

fn clone_args<'a>(src: &'a str, targets: &'a str, mount_at: &'a str) -> Vec<&'a str> {
    vec!["--source", src, "-d", targets, "-P1", "--mount-at", mount_at]
}

fn assert_ok(o: &std::process::Output) {
    assert!(o.status.success(), "altdisk failed: {}", stderr(o));
}

/// Partition `n` of a loop device or disk.
fn part(dev: &Path, n: u32) -> PathBuf {
    altdisk::write::partition::partition_path(dev, n)
}

fn sleep(mount_at: &Path) {
    let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", mount_at.to_str().unwrap()]);
    assert_ok(&o);
}

#[test]
fn root_clone_every_file_kind_to_one_disk() {
    require_root!();
    let mut s = Scratch::new("one-disk");
    let (sdev, src) = source(&mut s, "ext4", 512 * MIB);
    let tdev = s.loopdev("target.img", 1024 * MIB);
    let alt = s.path("alt");
    let o = altdisk("alt_disk_copy", &clone_args(src.to_str().unwrap(), tdev.to_str().unwrap(), alt.to_str().unwrap()));
    assert_ok(&o);
    // The copy is identical entry by entry (sockets are skipped; lost+found is the fs's own).
    let diffs = compare(&src, &alt, &["=etc", "etc/fstab", "etc/altdisk", "lost+found"]);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    assert!(!alt.join("srv/socket").exists(), "sockets are not copied");
    assert!(stdout(&o).contains("sockets skipped: 1"), "{}", stdout(&o));
    // New identities: the root filesystem and its partition differ from the source.
    let new_uuid = blkid(&part(&tdev, 2), "UUID").unwrap();
    let old_uuid = blkid(&sdev, "UUID").unwrap();
    assert_ne!(new_uuid, old_uuid);
    assert_eq!(blkid(&part(&tdev, 2), "LABEL").as_deref(), Some("alt_root"));
    let fstab = std::fs::read_to_string(alt.join("etc/fstab")).unwrap();
    assert!(fstab.contains(&format!("UUID={new_uuid}\t/\text4\terrors=remount-ro 0 1")), "{fstab}");
    assert!(fstab.starts_with("# <fs> <mount>"), "comments kept: {fstab}");
    assert!(fstab.contains("tmpfs /run tmpfs defaults 0 0"));
    assert!(!fstab.contains(&old_uuid));
    // The state record, on the disk and in the clone.
    let env = record::read(&tdev).expect("a record").unwrap();
    assert_eq!(env.name, "altinst_rootvg");
    assert_eq!(env.state, State::Copied);
    assert_eq!(env.phases_done, vec![1]);
    assert_eq!(env.source.hostname, "prod");
    assert_eq!(env.filesystems[0].uuid, new_uuid);
    assert!(alt.join("etc/altdisk/bootenv.json").exists());
    // lspv names the clone; its alias resolves to the same disk.
    let l = altdisk("altdisk", &["lspv", "--json"]);
    assert_ok(&l);
    let v: serde_json::Value = serde_json::from_slice(&l.stdout).unwrap();
    let row = v["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == tdev.to_str().unwrap())
        .expect("target listed")
        .clone();
    assert_eq!(row["role"], "altinst_rootvg");
    let src_row = v["disks"].as_array().unwrap().iter().find(|d| d["path"] == sdev.to_str().unwrap()).unwrap().clone();
    assert_eq!(src_row["role"], "in use");
    // Sleep unmounts everything.
    sleep(&alt);
    assert!(s.mounts().iter().all(|m| !m.starts_with(&alt)), "still mounted: {:?}", s.mounts());
    // A second clone onto the same disk is refused: it holds altinst_rootvg.
    let again =
        altdisk("alt_disk_copy", &clone_args(src.to_str().unwrap(), tdev.to_str().unwrap(), alt.to_str().unwrap()));
    assert_eq!(again.status.code(), Some(4));
    assert!(stderr(&again).contains("altinst_rootvg"), "{}", stderr(&again));
    assert_eq!(stderr(&again).lines().count(), 1, "one error line");
}

#[test]
fn root_clone_spans_two_disks_with_separate_filesystems() {
    require_root!();
    let mut s = Scratch::new("two-disks");
    let (_sdev, src) = source(&mut s, "ext4", 512 * MIB);
    // /home and /boot are filesystems of their own.
    let hdev = s.loopdev("src-home.img", 256 * MIB);
    let home = s.mkfs_mount(&hdev, "ext4", Some("home"), "src/home");
    populate(&home).unwrap();
    let bdev = s.loopdev("src-boot.img", 128 * MIB);
    let boot = s.mkfs_mount(&bdev, "ext2", None, "src/boot");
    std::fs::write(boot.join("vmlinuz-test"), vec![1u8; 4 * 1024 * 1024]).unwrap();
    let hu = blkid(&hdev, "UUID").unwrap();
    let bu = blkid(&bdev, "UUID").unwrap();
    let mut fstab = std::fs::read_to_string(src.join("etc/fstab")).unwrap();
    fstab.push_str(&format!("LABEL=home /home ext4 defaults 0 2\n/dev/disk/by-uuid/{bu} /boot ext2 defaults 0 2\n"));
    std::fs::write(src.join("etc/fstab"), fstab).unwrap();
    // Two small disks: no single one holds everything.
    let a = s.loopdev("t1.img", 160 * MIB);
    let b = s.loopdev("t2.img", 160 * MIB);
    let alt = s.path("alt");
    let targets = format!("{} {}", a.display(), b.display());
    let plan = altdisk("altdisk", &["plan", "--source", src.to_str().unwrap(), "-d", &targets, "-P1", "--json"]);
    assert_ok(&plan);
    let p: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let disks_used: std::collections::BTreeSet<u64> =
        p["partitions"].as_array().unwrap().iter().map(|x| x["disk"].as_u64().unwrap()).collect();
    assert_eq!(disks_used.len(), 2, "both disks used: {}", stdout(&plan));
    // plan wrote nothing
    assert!(record::read(&a).is_none());
    let o = altdisk("alt_disk_copy", &clone_args(src.to_str().unwrap(), &targets, alt.to_str().unwrap()));
    assert_ok(&o);
    for (from, to) in [(&src, alt.clone()), (&home, alt.join("home")), (&boot, alt.join("boot"))] {
        // srv/hard2 shares its inode with files hidden under the /home mount of the source.
        let diffs =
            compare(from, &to, &["=etc", "etc/fstab", "etc/altdisk", "lost+found", "home", "boot", "srv/hard2"]);
        assert!(diffs.is_empty(), "{}: differences:\n{}", from.display(), diffs.join("\n"));
    }
    let fstab = std::fs::read_to_string(alt.join("etc/fstab")).unwrap();
    assert!(!fstab.contains(&hu) && !fstab.contains(&bu), "{fstab}");
    assert!(fstab.contains("LABEL=alt_home /home"), "{fstab}");
    assert!(fstab.contains("/dev/disk/by-uuid/"), "{fstab}");
    // Both disks carry the record of the same system.
    let ea = record::read(&a).unwrap().unwrap();
    let eb = record::read(&b).unwrap().unwrap();
    assert_eq!(ea.id, eb.id);
    assert_eq!((ea.disk_index, eb.disk_index), (0, 1));
    assert_eq!(ea.filesystems.len(), 3);
    sleep(&alt);
    // Phase 2 later, on both disks (the resume path): each disk keeps its own record.
    let resolv = s.path("resolv.conf");
    std::fs::write(&resolv, "nameserver 192.0.2.1\n").unwrap();
    let o = altdisk(
        "alt_disk_copy",
        &["-d", &targets, "-P2", "--mount-at", alt.to_str().unwrap(), "-R", resolv.to_str().unwrap()],
    );
    assert_ok(&o);
    let ea = record::read(&a).unwrap().unwrap();
    let eb = record::read(&b).unwrap().unwrap();
    assert_eq!((ea.disk_index, eb.disk_index), (0, 1), "each disk keeps its own index after a resume");
    assert_eq!((ea.state, eb.state), (State::Customized, State::Customized));
    assert_eq!(ea.phases_done, vec![1, 2]);
    assert_eq!(std::fs::read_to_string(alt.join("etc/resolv.conf")).unwrap(), "nameserver 192.0.2.1\n");
    sleep(&alt);
}

#[test]
fn root_clone_to_a_smaller_disk_and_too_small_is_refused() {
    require_root!();
    let mut s = Scratch::new("smaller");
    let (_sdev, src) = source(&mut s, "ext4", 1024 * MIB);
    let small = s.loopdev("small.img", 200 * MIB);
    let alt = s.path("alt");
    let o =
        altdisk("alt_disk_copy", &clone_args(src.to_str().unwrap(), small.to_str().unwrap(), alt.to_str().unwrap()));
    assert_ok(&o);
    let diffs = compare(&src, &alt, &["=etc", "etc/fstab", "etc/altdisk", "lost+found"]);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    sleep(&alt);
    let tiny = s.loopdev("tiny.img", 40 * MIB);
    let o = altdisk("alt_disk_copy", &clone_args(src.to_str().unwrap(), tiny.to_str().unwrap(), alt.to_str().unwrap()));
    assert_eq!(o.status.code(), Some(5), "too small exits 5");
    let e = stderr(&o);
    assert!(e.contains("too small") && e.contains("needed"), "{e}");
    assert!(blkid(&tiny, "PTTYPE").is_none(), "nothing was written to the tiny disk");
}

#[test]
fn root_convert_ext3_to_ext4_with_t() {
    require_root!();
    let mut s = Scratch::new("ext3");
    let (_sdev, src) = source(&mut s, "ext3", 512 * MIB);
    let t = s.loopdev("t.img", 512 * MIB);
    let alt = s.path("alt");
    let mut args = clone_args(src.to_str().unwrap(), t.to_str().unwrap(), alt.to_str().unwrap());
    args.push("-T");
    let o = altdisk("alt_disk_copy", &args);
    assert_ok(&o);
    assert_eq!(blkid(&part(&t, 2), "TYPE").as_deref(), Some("ext4"));
    let diffs = compare(&src, &alt, &["=etc", "etc/fstab", "etc/altdisk", "lost+found"]);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    let fstab = std::fs::read_to_string(alt.join("etc/fstab")).unwrap();
    assert!(fstab.contains("\t/\text4\t"), "fstab type follows the conversion: {fstab}");
    sleep(&alt);
}

fn convert_with_layout(to: &str) {
    let mut s = Scratch::new(&format!("to-{to}"));
    let (_sdev, src) = source(&mut s, "ext4", 512 * MIB);
    let t = s.loopdev("t.img", 1024 * MIB);
    let alt = s.path("alt");
    let l = altdisk("altdisk", &["layout", "--source", src.to_str().unwrap()]);
    assert_ok(&l);
    let layout = stdout(&l).replace("fstype = \"ext4\"", &format!("fstype = \"{to}\""));
    let lf = s.path("layout.toml");
    std::fs::write(&lf, layout).unwrap();
    let mut args = clone_args(src.to_str().unwrap(), t.to_str().unwrap(), alt.to_str().unwrap());
    args.extend(["-i", lf.to_str().unwrap()]);
    let o = altdisk("alt_disk_copy", &args);
    assert_ok(&o);
    assert_eq!(blkid(&part(&t, 2), "TYPE").as_deref(), Some(to));
    let diffs = compare(&src, &alt, &["=etc", "etc/fstab", "etc/altdisk", "lost+found"]);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    let fstab = std::fs::read_to_string(alt.join("etc/fstab")).unwrap();
    assert!(fstab.contains(&format!("\t/\t{to}\t")), "fstab type follows the new filesystem: {fstab}");
    sleep(&alt);
}

#[test]
fn root_ext4_to_xfs() {
    require_root!();
    convert_with_layout("xfs");
}

#[test]
fn root_ext4_to_btrfs() {
    require_root!();
    convert_with_layout("btrfs");
}

#[test]
fn root_btrfs_subvolumes_are_recreated() {
    require_root!();
    let mut s = Scratch::new("subvol");
    let dev = s.loopdev("src.img", 512 * MIB);
    let src = s.mkfs_mount(&dev, "btrfs", Some("root"), "src");
    run("btrfs", &["subvolume", "create", src.join("home").to_str().unwrap()]).unwrap();
    populate(&src.join("home")).unwrap();
    std::fs::write(src.join("top-level-file"), b"top").unwrap();
    run("btrfs", &["subvolume", "create", src.join("var").to_str().unwrap()]).unwrap();
    run("btrfs", &["subvolume", "create", src.join("var/lib").to_str().unwrap()]).unwrap();
    std::fs::write(src.join("var/lib/state"), b"nested").unwrap();
    let t = s.loopdev("t.img", 1024 * MIB);
    let alt = s.path("alt");
    let o = altdisk("alt_disk_copy", &clone_args(src.to_str().unwrap(), t.to_str().unwrap(), alt.to_str().unwrap()));
    assert_ok(&o);
    // This source has no /etc: the clone gains one (its record), which touches its root.
    let diffs = compare(&src, &alt, &["=", "etc"]);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    let list = run("btrfs", &["subvolume", "list", alt.to_str().unwrap()]).unwrap();
    for sv in ["path home", "path var", "path var/lib"] {
        assert!(list.lines().any(|l| l.ends_with(sv)), "{sv} missing in: {list}");
    }
    // No snapshot is left behind on the source.
    assert!(!std::fs::read_dir(&src)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".altdisk-snapshot")));
    sleep(&alt);
}

#[test]
fn root_btrfs_without_nested_subvolumes_copies_from_a_snapshot() {
    require_root!();
    let mut s = Scratch::new("snap");
    let dev = s.loopdev("src.img", 512 * MIB);
    let src = s.mkfs_mount(&dev, "btrfs", None, "src");
    populate(&src).unwrap();
    let t = s.loopdev("t.img", 1024 * MIB);
    let alt = s.path("alt");
    let mut args = clone_args(src.to_str().unwrap(), t.to_str().unwrap(), alt.to_str().unwrap());
    args.push("-D");
    let o = altdisk("alt_disk_copy", &args);
    assert_ok(&o);
    assert!(stderr(&o).contains("snapshot -r"), "a read-only snapshot was taken: {}", stderr(&o));
    let diffs = compare(&src, &alt, &["=etc", "etc/altdisk"]);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    let list = run("btrfs", &["subvolume", "list", src.to_str().unwrap()]).unwrap();
    assert!(list.trim().is_empty(), "snapshot deleted: {list}");
    sleep(&alt);
}

#[test]
fn root_exclude_list_follows_aix_rules() {
    require_root!();
    let mut s = Scratch::new("exclude");
    let (_sdev, src) = source(&mut s, "ext4", 512 * MIB);
    let t = s.loopdev("t.img", 512 * MIB);
    let alt = s.path("alt");
    let list = s.path("exclude.list");
    std::fs::write(&list, "^./tmp/\n/scratch/\n\\.bin$\n").unwrap();
    let mut args = clone_args(src.to_str().unwrap(), t.to_str().unwrap(), alt.to_str().unwrap());
    args.extend(["-e", list.to_str().unwrap(), "-V"]);
    let o = altdisk("alt_disk_copy", &args);
    assert_ok(&o);
    assert!(alt.join("tmp").is_dir(), "./tmp itself stays");
    assert!(!alt.join("tmp/cache").exists(), "^./tmp/ excludes the top /tmp contents");
    assert!(alt.join("var/tmp/item").exists(), "^./tmp/ leaves /var/tmp alone");
    assert!(alt.join("scratch").is_dir() && !alt.join("scratch/x").exists(), "/scratch/ empties scratch");
    assert!(!alt.join("home/alice/big.bin").exists() && alt.join("home/alice/hello.txt").exists());
    // -V lists files as AIX does: ./relative/path
    assert!(stdout(&o).lines().any(|l| l == "./home/alice/hello.txt"), "{}", stdout(&o));
    sleep(&alt);
    // An invalid pattern is an error before anything is written.
    let t2 = s.loopdev("t2.img", 512 * MIB);
    std::fs::write(&list, "good\nbad\\(\n").unwrap();
    let o = altdisk(
        "alt_disk_copy",
        &clone_args(src.to_str().unwrap(), t2.to_str().unwrap(), alt.to_str().unwrap())
            .into_iter()
            .chain(["-e", list.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
    assert!(blkid(&t2, "PTTYPE").is_none(), "nothing written");
}

#[test]
fn root_image_file_target_is_created_at_the_needed_size() {
    require_root!();
    let mut s = Scratch::new("image");
    let (_sdev, src) = source(&mut s, "ext4", 512 * MIB);
    let img = s.path("clone.img");
    let alt = s.path("alt");
    let o = altdisk("alt_disk_copy", &clone_args(src.to_str().unwrap(), img.to_str().unwrap(), alt.to_str().unwrap()));
    assert_ok(&o);
    let diffs = compare(&src, &alt, &["=etc", "etc/fstab", "etc/altdisk", "lost+found"]);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    let size = std::fs::metadata(&img).unwrap().len();
    assert!(size < 512 * MIB, "sized from used space, not the source disk: {size}");
    sleep(&alt);
    assert!(s.loops_of(&img).is_empty(), "sleep detached the image's loop device");
    assert_eq!(record::read(&img).unwrap().unwrap().state, State::Copied);
    // --size makes a larger one; the root filesystem takes the rest.
    let img2 = s.path("clone2.img");
    let mut args = clone_args(src.to_str().unwrap(), img2.to_str().unwrap(), alt.to_str().unwrap());
    args.extend(["--size", "700M"]);
    assert_ok(&altdisk("alt_disk_copy", &args));
    assert_eq!(std::fs::metadata(&img2).unwrap().len(), 700 * MIB);
    let df = nix::sys::statvfs::statvfs(&alt).unwrap();
    assert!(df.blocks() as u64 * df.fragment_size() as u64 > 600 * MIB);
    sleep(&alt);
}

#[test]
fn root_refusals_write_nothing() {
    require_root!();
    let mut s = Scratch::new("refuse");
    let (sdev, src) = source(&mut s, "ext4", 256 * MIB);
    let alt = s.path("alt");
    let srcs = src.to_str().unwrap().to_string();
    let altdir = alt.to_str().unwrap().to_string();
    let try_clone = |target: &str, extra: &[&str]| {
        let mut a = clone_args(&srcs, target, &altdir);
        a.extend_from_slice(extra);
        altdisk("alt_disk_copy", &a)
    };
    let refused = |o: &std::process::Output, code: i32, needle: &str| {
        assert_eq!(o.status.code(), Some(code), "{}", stderr(o));
        let e = stderr(o);
        assert_eq!(e.lines().filter(|l| l.contains("error")).count(), 1, "one error line: {e}");
        assert!(e.contains(needle), "expected `{needle}` in: {e}");
    };
    // The source disk itself.
    refused(&try_clone(sdev.to_str().unwrap(), &[]), 4, "holds the system being cloned");
    // A mounted filesystem.
    let m = s.loopdev("mounted.img", 128 * MIB);
    s.mkfs_mount(&m, "ext4", None, "other");
    refused(&try_clone(m.to_str().unwrap(), &["--force"]), 4, "is mounted at");
    // Active swap.
    let sw = s.loopdev("swap.img", 64 * MIB);
    run("mkswap", &[sw.to_str().unwrap()]).unwrap();
    run("swapon", &[sw.to_str().unwrap()]).unwrap();
    let o = try_clone(sw.to_str().unwrap(), &["--force"]);
    let _ = run("swapoff", &[sw.to_str().unwrap()]);
    refused(&o, 4, "active swap");
    // An LVM physical volume: --force does not override it.
    if altdisk::cmd::which("pvcreate").is_ok() {
        let pv = s.loopdev("pv.img", 64 * MIB);
        run("pvcreate", &["-ff", "-y", pv.to_str().unwrap()]).unwrap();
        refused(&try_clone(pv.to_str().unwrap(), &["--force"]), 4, "LVM physical volume");
    } else {
        panic!("pvcreate is missing: install lvm2 (the test suite needs it)");
    }
    // A RAID member (an md 1.2 superblock), also not overridable.
    let md = s.loopdev("md.img", 64 * MIB);
    write_md_superblock(&md);
    refused(&try_clone(md.to_str().unwrap(), &["--force"]), 4, "RAID member");
    // A disk holding a filesystem: refused, and --force overrides exactly that.
    let data = s.loopdev("data.img", 256 * MIB);
    run("mkfs.ext4", &["-q", "-F", data.to_str().unwrap()]).unwrap();
    refused(&try_clone(data.to_str().unwrap(), &[]), 4, "holds data");
    assert_eq!(blkid(&data, "TYPE").as_deref(), Some("ext4"), "untouched");
    let o = try_clone(data.to_str().unwrap(), &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    sleep(&alt);
    // The same disk twice.
    let free = s.loopdev("free.img", 256 * MIB);
    let twice = format!("{} {}", free.display(), free.display());
    refused(&try_clone(&twice, &[]), 2, "named twice");
    // A disk that does not exist, an hdisk alias that does not exist.
    refused(&try_clone("/dev/nonexistent-disk", &[]), 3, "not found");
    refused(&try_clone("hdisk999", &[]), 3, "not found");
    // Nothing was written to the free disk by any of this.
    assert!(blkid(&free, "PTTYPE").is_none());
    assert!(s.mounts().iter().all(|p| !p.starts_with(&alt)));
}

/// A Linux md 1.2 superblock at 4 KiB with a valid checksum, as blkid recognises it.
fn write_md_superblock(dev: &Path) {
    let mut sb = vec![0u8; 264];
    let put32 = |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |b: &mut [u8], off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut sb, 0, 0xa92b_4efc);
    put32(&mut sb, 4, 1);
    sb[16..32].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    sb[32..38].copy_from_slice(b"test:0");
    put32(&mut sb, 72, 1); // level
    put64(&mut sb, 80, 120_000); // size
    put32(&mut sb, 92, 2); // raid_disks
    put64(&mut sb, 128, 2048); // data_offset
    put64(&mut sb, 136, 120_000); // data_size
    put64(&mut sb, 144, 8); // super_offset (sectors)
    sb[168..184].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    put32(&mut sb, 220, 4); // max_dev
    sb[256..264].copy_from_slice(&[0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff]);
    let mut sum: u64 = 0;
    for c in sb.chunks(4) {
        sum += u32::from_le_bytes(c.try_into().unwrap()) as u64;
    }
    let csum = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
    put32(&mut sb, 216, csum);
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(dev).unwrap();
    f.seek(SeekFrom::Start(4096)).unwrap();
    f.write_all(&sb).unwrap();
    f.sync_all().unwrap();
    assert_eq!(blkid(dev, "TYPE").as_deref(), Some("linux_raid_member"));
}

#[test]
fn root_cancel_leaves_the_target_incomplete_and_nothing_mounted() {
    require_root!();
    let mut s = Scratch::new("cancel");
    let (_sdev, src) = source(&mut s, "ext4", 512 * MIB);
    let t = s.loopdev("t.img", 512 * MIB);
    let alt = s.path("alt");
    let req = altdisk::run::CloneRequest {
        targets: vec![t.display().to_string()],
        source_dir: Some(src.clone()),
        phases: altdisk::plan::Phases::P1,
        mount_at: alt.clone(),
        ..Default::default()
    };
    let prep = altdisk::run::prepare(&req).unwrap();
    let job = altdisk::job::Job::new();
    job.set_list_files(true);
    let j = job.clone();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen2 = seen.clone();
    // Cancel in the middle of the copy: after 50 entries were copied.
    job.on_event(move |e| {
        if let altdisk::job::Event::Copied { .. } = e {
            if seen2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 50 {
                j.cancel();
            }
        }
    });
    let r = altdisk::run::execute(prep, &job);
    assert!(matches!(r, Err(altdisk::Error::Cancelled)), "{r:?}");
    assert!(seen.load(std::sync::atomic::Ordering::SeqCst) >= 50);
    assert!(s.mounts().iter().all(|m| !m.starts_with(&alt)), "still mounted: {:?}", s.mounts());
    let env = record::read(&t).expect("a record").unwrap();
    assert_eq!(env.state, State::Incomplete);
    assert!(env.note.unwrap_or_default().contains("cancelled"));
    // lspv shows it as an incomplete altinst_rootvg.
    let l = altdisk("altdisk", &["lspv"]);
    let line = stdout(&l)
        .lines()
        .find(|x| x.contains(t.file_name().unwrap().to_str().unwrap()))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("altinst_rootvg") && line.contains("incomplete"), "{line}");
}

#[test]
fn root_cli_interrupt_cleans_up() {
    require_root!();
    let mut s = Scratch::new("sigint");
    let (_sdev, src) = source(&mut s, "ext4", 1024 * MIB);
    // Enough data that the copy is still running when the signal comes.
    sh(&format!(
        "cd '{}' && mkdir bulk && for i in $(seq 1 40); do head -c 8000000 /dev/urandom > bulk/f$i; done",
        src.display()
    ))
    .unwrap();
    let t = s.loopdev("t.img", 1024 * MIB);
    let alt = s.path("alt");
    // A cold cache keeps the copy running long enough to be interrupted.
    sh("sync; echo 3 > /proc/sys/vm/drop_caches").unwrap();
    let mut child = std::process::Command::new(altdisk_bin())
        .arg("copy")
        .args(clone_args(src.to_str().unwrap(), t.to_str().unwrap(), alt.to_str().unwrap()))
        .env("ALTDISK_COPY_THREADS", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the copy phase, then interrupt as Ctrl-C would.
    use std::io::BufRead;
    let err = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(err).lines();
    let mut log = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        log.push_str(&l);
        log.push('\n');
        if l.starts_with("copying /") {
            break;
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    for l in lines {
        log.push_str(&l.unwrap());
        log.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("cancelled"), "{log}");
    assert!(s.mounts().iter().all(|m| !m.starts_with(&alt)), "still mounted: {:?}", s.mounts());
    assert_eq!(record::read(&t).unwrap().unwrap().state, State::Incomplete);
}

#[test]
fn root_swap_is_recreated_with_a_new_identity() {
    require_root!();
    let mut s = Scratch::new("swap");
    let (_sdev, src) = source(&mut s, "ext4", 256 * MIB);
    let sw = s.loopdev("src-swap.img", 64 * MIB);
    run("mkswap", &["-q", "-L", "swap", sw.to_str().unwrap()]).unwrap();
    let old = blkid(&sw, "UUID").unwrap();
    let mut fstab = std::fs::read_to_string(src.join("etc/fstab")).unwrap();
    fstab.push_str(&format!("LABEL=swap none swap sw 0 0\nUUID={old} none swap sw,pri=1 0 0\n"));
    std::fs::write(src.join("etc/fstab"), fstab).unwrap();
    std::fs::create_dir_all(src.join("etc/initramfs-tools/conf.d")).unwrap();
    std::fs::write(src.join("etc/initramfs-tools/conf.d/resume"), format!("RESUME=UUID={old}\n")).unwrap();
    let t = s.loopdev("t.img", 512 * MIB);
    let alt = s.path("alt");
    assert_ok(&altdisk(
        "alt_disk_copy",
        &clone_args(src.to_str().unwrap(), t.to_str().unwrap(), alt.to_str().unwrap()),
    ));
    let p3 = part(&t, 3);
    assert_eq!(blkid(&p3, "TYPE").as_deref(), Some("swap"));
    assert_eq!(blkid(&p3, "LABEL").as_deref(), Some("alt_swap"));
    let new = blkid(&p3, "UUID").unwrap();
    assert_ne!(new, old);
    let fstab = std::fs::read_to_string(alt.join("etc/fstab")).unwrap();
    assert!(fstab.contains("LABEL=alt_swap none swap sw 0 0"), "{fstab}");
    assert!(fstab.contains(&format!("UUID={new} none swap sw,pri=1 0 0")), "{fstab}");
    let resume = std::fs::read_to_string(alt.join("etc/initramfs-tools/conf.d/resume")).unwrap();
    assert_eq!(resume, format!("RESUME=UUID={new}\n"), "the initramfs resumes from the clone's swap");
    sleep(&alt);
}
