//! Root tier: sources of many small files. The plan sizes inode tables from what the source
//! uses (a default mkfs would run out of inodes and the copy die with "No space left on
//! device" after writing), and refuses, before writing, a target that cannot hold them.

use std::path::Path;

use altdisk_tests::*;

const MIB: u64 = 1 << 20;

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

#[test]
fn root_many_small_files_clone_and_too_small_for_the_inodes_is_refused() {
    require_root!();
    let mut s = Scratch::new("inodes");
    // 200,000 empty files: a few MB of data, but more inodes than mkfs gives 1 GiB by default
    // (one per 16 KiB: 65,536).
    let sdev = s.loopdev("src.img", 512 * MIB);
    run("mkfs.ext4", &["-q", "-F", "-N", "220000", p(&sdev)]).unwrap();
    let src = s.mkdir("src");
    run("mount", &[p(&sdev), p(&src)]).unwrap();
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/fstab"), "/dev/root / ext4 defaults 0 1\n").unwrap();
    for d in 0..400 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..500 {
            std::fs::File::create(dir.join(format!("f{f}"))).unwrap();
        }
    }
    let used = nix::sys::statvfs::statvfs(&src).unwrap();
    let files = used.files() - used.files_free();
    assert!(files > 200_000, "{files}");
    // Too small for the inodes (not for the bytes): refused before anything is written.
    let small = s.loopdev("small.img", 96 * MIB);
    let alt = s.path("alt");
    let o = altdisk("alt_disk_copy", &["--source", p(&src), "-d", p(&small), "-P1", "--mount-at", p(&alt)]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("too small"), "{}", stderr(&o));
    assert!(blkid(&small, "PTTYPE").is_none(), "nothing was written");
    // Room enough: the plan gives the root the inodes it needs, and the clone is complete.
    let t = s.loopdev("t.img", 1024 * MIB);
    let plan = altdisk("altdisk", &["plan", "--source", p(&src), "-d", p(&t), "-P1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let inodes = v["filesystems"][0]["inodes"].as_u64().expect("inodes sized");
    assert!(inodes > 250_000, "{v}");
    let o = altdisk("alt_disk_copy", &["--source", p(&src), "-d", p(&t), "-P1", "--mount-at", p(&alt)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = nix::sys::statvfs::statvfs(&alt).unwrap();
    assert!(c.files() >= inodes, "made with {} inodes", c.files());
    // Every file, and the clone's own record (/etc/altdisk and its file).
    assert_eq!(c.files() - c.files_free(), files + 2);
    let (code, out) = {
        let o = altdisk("altdisk", &["verify", "--source", p(&src), p(&t)]);
        (o.status.code(), stdout(&o))
    };
    assert_eq!(code, Some(0), "{out}");
    assert!(altdisk("alt_rootvg_op", &["-S", "--mount-at", p(&alt)]).status.success());
}
