//! Root tier: systems that are not running. A Linux system on a disk of its own (GPT, /boot
//! and / partitions, an fstab naming /boot by UUID) is found by `altdisk find` with its OS and
//! kernel, and cloned offline with `altdisk copy --source-disk`: the clone holds both its
//! filesystems, and the source disk is not changed by a single byte. Run as root.

use std::path::{Path, PathBuf};

use altdisk::write::partition::{self, PartSpec};
use altdisk_tests::*;

const MIB: u64 = 1 << 20;

fn sha(dev: &Path) -> String {
    run("sha256sum", &[dev.to_str().unwrap()]).unwrap().split_whitespace().next().unwrap().to_string()
}

/// A disk holding "Test Linux": partition 1 /boot, partition 2 /; both unmounted afterwards.
fn system_disk(s: &mut Scratch) -> PathBuf {
    let dev = s.loopdev("system.img", 600 * MIB);
    let parts = vec![
        PartSpec {
            number: 1,
            start: MIB,
            size: 128 * MIB,
            type_guid: altdisk::discover::gpt::LINUX_FS_TYPE.into(),
            guid: uuid::Uuid::new_v4(),
            name: "boot".into(),
        },
        PartSpec {
            number: 2,
            start: 129 * MIB,
            size: 400 * MIB,
            type_guid: altdisk::discover::gpt::LINUX_FS_TYPE.into(),
            guid: uuid::Uuid::new_v4(),
            name: "root".into(),
        },
    ];
    partition::write_gpt(&dev, 600 * MIB, uuid::Uuid::new_v4(), &parts).unwrap();
    partition::add_partition_nodes(&dev, &parts).unwrap();
    let boot = partition::partition_path(&dev, 1);
    let root = partition::partition_path(&dev, 2);
    let r = s.mkfs_mount(&root, "ext4", Some("testroot"), "sys");
    populate(&r).unwrap();
    let b = s.mkfs_mount(&boot, "ext4", Some("testboot"), "sys/boot");
    std::fs::write(b.join("vmlinuz-6.1.0-test"), b"kernel").unwrap();
    std::fs::write(b.join("initrd.img-6.1.0-test"), b"initrd").unwrap();
    std::fs::write(r.join("etc/os-release"), "NAME=\"Test Linux\"\nPRETTY_NAME=\"Test Linux 1\"\n").unwrap();
    let (ru, bu) = (blkid(&root, "UUID").unwrap(), blkid(&boot, "UUID").unwrap());
    std::fs::write(
        r.join("etc/fstab"),
        format!("UUID={ru} / ext4 errors=remount-ro 0 1\nUUID={bu} /boot ext4 defaults 0 2\n"),
    )
    .unwrap();
    run("umount", &[b.to_str().unwrap()]).unwrap();
    run("umount", &[r.to_str().unwrap()]).unwrap();
    dev
}

#[test]
fn root_a_system_on_a_disk_is_found_and_cloned_offline_without_a_write_to_it() {
    require_root!();
    let mut s = Scratch::new("offline");
    let dev = system_disk(&mut s);
    let name = dev.file_name().unwrap().to_str().unwrap().to_string();
    let before = sha(&dev);

    let o = altdisk("altdisk", &["find", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let sys = v["systems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["disks"].as_array().unwrap().iter().any(|d| d == name.as_str()))
        .unwrap_or_else(|| panic!("not found: {v}"))
        .clone();
    assert_eq!(sys["kind"], "other");
    assert_eq!(sys["os"], "Test Linux 1");
    // Its kernel lives on /boot, a filesystem of its own, found through its fstab.
    assert_eq!(sys["kernels"], serde_json::json!(["6.1.0-test"]));

    let t = s.loopdev("target.img", 1024 * MIB);
    let alt = s.path("alt");
    let o = altdisk(
        "altdisk",
        &["copy", "--source-disk", &name, "-d", t.to_str().unwrap(), "-P1", "--mount-at", alt.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(alt.join("boot/vmlinuz-6.1.0-test")).unwrap(), b"kernel");
    assert_eq!(
        std::fs::read_to_string(alt.join("etc/os-release")).unwrap().lines().nth(1),
        Some("PRETTY_NAME=\"Test Linux 1\"")
    );
    // The clone is the source, entry by entry (fstab rewritten, altdisk's record added).
    let look = s.mkdir("look");
    run("mount", &["-o", "ro,noload", partition::partition_path(&dev, 2).to_str().unwrap(), look.to_str().unwrap()])
        .unwrap();
    let diffs = compare(
        &look,
        &alt,
        &["=etc", "etc/fstab", "etc/altdisk", "lost+found", "boot", "usr/local/lib/altdisk", "etc/systemd"],
    );
    run("umount", &[look.to_str().unwrap()]).unwrap();
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    let fstab = std::fs::read_to_string(alt.join("etc/fstab")).unwrap();
    assert!(fstab.lines().any(|l| l.contains(" /boot ext4")), "{fstab}");
    // Not a byte of the source disk changed, and nothing of it stays mounted.
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains("/run/altdisk/source-"),
        "the source stays mounted"
    );
    assert_eq!(sha(&dev), before, "the source disk was written");
    let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", alt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The running system is no offline source.
    let root_disk = stdout(&altdisk("altdisk", &["lspv"]))
        .lines()
        .find(|l| l.contains("rootvg"))
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap();
    let o = altdisk("altdisk", &["copy", "--source-disk", &root_disk, "-d", t.to_str().unwrap(), "-P1", "--force"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("running system"), "{}", stderr(&o));
}
