//! Root tier: the udev rules, run by `udevadm test` (which applies rules without udevd) on
//! the partitions of a clone made on a loop device.

use std::path::{Path, PathBuf};

use altdisk_tests::*;

const MIB: u64 = 1 << 20;

/// The rules, installed for the length of the test in /run/udev/rules.d.
struct Rules(PathBuf);

impl Rules {
    fn install() -> Rules {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../udev-rules/70-altdisk.rules"))
                .unwrap();
        let text = text.replace("@ALTDISK@", altdisk_bin().to_str().unwrap());
        std::fs::create_dir_all("/run/udev/rules.d").unwrap();
        let p = PathBuf::from(format!("/run/udev/rules.d/70-altdisk-test-{}.rules", uuid::Uuid::new_v4().simple()));
        std::fs::write(&p, text).unwrap();
        Rules(p)
    }
}

impl Drop for Rules {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn udev_test(dev: &Path) -> String {
    let name = dev.file_name().unwrap().to_str().unwrap();
    let out = std::process::Command::new("udevadm")
        .args(["test", "--action=add", &format!("/sys/class/block/{name}")])
        .output()
        .expect("udevadm (package udev)");
    let all = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // `udevadm test` keeps the links it made in udev's database: a loop device that an
    // earlier test (or run) used for a clone has its old by-altdisk links removed now, which
    // says nothing about this device.
    all.lines()
        .filter(|l| !l.contains("old device symlink") && !l.contains("No reference left"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn root_udev_rules_hide_and_name_alternate_systems() {
    require_root!();
    let mut s = Scratch::new("udev");
    let sdev = s.loopdev("src.img", 256 * MIB);
    let src = s.mkfs_mount(&sdev, "ext4", None, "src");
    populate(&src).unwrap();
    let t = s.loopdev("t.img", 512 * MIB);
    let alt = s.path("alt");
    let o = altdisk(
        "alt_disk_copy",
        &["--source", src.to_str().unwrap(), "-d", t.to_str().unwrap(), "-P1", "--mount-at", alt.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(altdisk("alt_rootvg_op", &["-S", "--mount-at", alt.to_str().unwrap()]).status.success());
    let root = altdisk::write::partition::partition_path(&t, 2);
    let meta = altdisk::write::partition::partition_path(&t, 1);
    // The probe the rules import.
    let p = stdout(&altdisk("altdisk", &["udev-probe", root.to_str().unwrap()]));
    assert!(p.contains("ALTDISK_SYSTEM=altinst_rootvg\n") && p.contains("ALTDISK_NAME=root\n"), "{p}");
    assert!(!p.contains("ALTDISK_RUNNING"), "{p}");
    assert!(stdout(&altdisk("altdisk", &["udev-probe", meta.to_str().unwrap()])).contains("ALTDISK_NAME=meta"));
    assert!(
        stdout(&altdisk("altdisk", &["udev-probe", sdev.to_str().unwrap()])).is_empty(),
        "a disk without a record has no properties"
    );
    // The rules, applied by udev.
    let _rules = Rules::install();
    let out = udev_test(&root);
    assert!(out.contains("UDISKS_IGNORE=1"), "{out}");
    assert!(out.contains("/dev/disk/by-altdisk/altinst_rootvg/root"), "{out}");
    let out = udev_test(&t);
    assert!(out.contains("UDISKS_IGNORE=1") && out.contains("/dev/disk/by-altdisk/altinst_rootvg/disk"), "{out}");
    // A disk that is no altdisk system is left alone.
    let out = udev_test(&sdev);
    assert!(!out.contains("UDISKS_IGNORE") && !out.contains("by-altdisk"), "{out}");
}
