//! Root tier: alt_rootvg_op on a clone made on a loop device (query, wake, customize,
//! sleep, rename, remove) and resuming phases on an existing clone (-P2).

use altdisk::discover::record::{self, State};
use altdisk_tests::*;

const MIB: u64 = 1 << 20;

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", stderr(o));
}

#[test]
fn root_alt_rootvg_op_query_wake_customize_rename_remove() {
    require_root!();
    let mut s = Scratch::new("altops");
    let sdev = s.loopdev("src.img", 256 * MIB);
    let src = s.mkfs_mount(&sdev, "ext4", Some("root"), "src");
    populate(&src).unwrap();
    std::fs::write(src.join("etc/resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
    let t = s.loopdev("t.img", 512 * MIB);
    let (ts, alts) = (t.to_str().unwrap().to_string(), s.path("alt").to_str().unwrap().to_string());
    let op = |args: &[&str]| {
        let mut v = args.to_vec();
        v.extend(["--mount-at", alts.as_str()]);
        altdisk("alt_rootvg_op", &v)
    };
    ok(&altdisk("alt_disk_copy", &["--source", src.to_str().unwrap(), "-d", &ts, "-P1", "--mount-at", &alts]));

    // -q names the system on the disk; a disk without one says none.
    let q = op(&["-q", "-d", &ts]);
    ok(&q);
    assert_eq!(stdout(&q).trim(), "altinst_rootvg (phase 1 done (copied))");
    let free = s.loopdev("free.img", 64 * MIB);
    assert_eq!(stdout(&op(&["-q", "-d", free.to_str().unwrap()])).trim(), "none");

    // One woken system at a time; -S puts it to sleep; -W wakes it again.
    let again = op(&["-W", "-d", &ts]);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    ok(&op(&["-S"]));
    assert!(s.mounts().iter().all(|m| !m.starts_with(&alts)));
    ok(&op(&["-W", "-d", &ts]));
    assert_eq!(std::fs::read_to_string(s.path("alt/home/alice/hello.txt")).unwrap(), "hello\n");
    let e = op(&["-W", "-d", sdev.to_str().unwrap()]);
    assert_ne!(e.status.code(), Some(0));

    // -C customizes the woken system with phase 2 flags.
    let r = s.path("resolv.new");
    std::fs::write(&r, "nameserver 192.0.2.2\n").unwrap();
    ok(&op(&["-C", "-R", r.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(s.path("alt/etc/resolv.conf")).unwrap(), "nameserver 192.0.2.2\n");
    ok(&op(&["-S"]));

    // Resuming: phase 2 on the existing clone, after it was put to sleep.
    let r3 = s.path("resolv.3");
    std::fs::write(&r3, "nameserver 192.0.2.3\n").unwrap();
    ok(&altdisk("alt_disk_copy", &["-d", &ts, "-P2", "-R", r3.to_str().unwrap(), "--mount-at", &alts]));
    assert_eq!(std::fs::read_to_string(s.path("alt/etc/resolv.conf")).unwrap(), "nameserver 192.0.2.3\n");
    let env = record::read(&t).unwrap().unwrap();
    assert_eq!(env.state, State::Customized);
    assert_eq!(env.phases_done, vec![1, 2]);
    ok(&op(&["-S"]));

    // -v renames; lspv shows the new name.
    ok(&op(&["-v", "mytest", "-d", &ts]));
    let l = stdout(&altdisk("altdisk", &["lspv"]));
    let name = t.file_name().unwrap().to_str().unwrap();
    assert!(l.lines().any(|x| x.starts_with(name) && x.contains("mytest")), "{l}");
    assert_eq!(op(&["-v", "bad name!", "-d", &ts]).status.code(), Some(2));

    // -X asks first (no terminal here: it says to add -y), then frees the disk.
    let x = op(&["-X", "mytest"]);
    assert_eq!(x.status.code(), Some(2), "{}", stderr(&x));
    assert!(stderr(&x).contains("-y"));
    ok(&op(&["-X", "mytest", "-y"]));
    assert!(record::read(&t).is_none(), "the record is gone");
    assert!(blkid(&t, "PTTYPE").is_none(), "the partition table is gone");
    let l = stdout(&altdisk("altdisk", &["lspv"]));
    assert!(l.lines().any(|x| x.starts_with(name) && x.contains(" free")), "{l}");
    assert_eq!(op(&["-X", "mytest", "-y"]).status.code(), Some(3), "nothing left to remove");
}

#[test]
fn root_resuming_an_incomplete_clone_is_refused() {
    require_root!();
    let mut s = Scratch::new("resume-incomplete");
    let sdev = s.loopdev("src.img", 256 * MIB);
    let src = s.mkfs_mount(&sdev, "ext4", None, "src");
    populate(&src).unwrap();
    let t = s.loopdev("t.img", 512 * MIB);
    let alt = s.path("alt");
    ok(&altdisk(
        "alt_disk_copy",
        &["--source", src.to_str().unwrap(), "-d", t.to_str().unwrap(), "-P1", "--mount-at", alt.to_str().unwrap()],
    ));
    ok(&altdisk("alt_rootvg_op", &["-S", "--mount-at", alt.to_str().unwrap()]));
    // As an interrupted run leaves it.
    let mut env = record::read(&t).unwrap().unwrap();
    env.state = State::Incomplete;
    env.phases_done.clear();
    env.note = Some("cancelled".into());
    record::update(&t, &env).unwrap();
    let o = altdisk("alt_disk_copy", &["-d", t.to_str().unwrap(), "-P23", "--mount-at", alt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("phase 1 did not finish"), "{}", stderr(&o));
    assert!(s.mounts().iter().all(|m| !m.starts_with(&alt)));
}
