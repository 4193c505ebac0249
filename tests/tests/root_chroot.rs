//! Root tier: chrooted commands run in a private mount namespace and leave the host's
//! mount table as it was.

use altdisk_tests::*;

/// A root tree with /bin/sh and the libraries it needs, and the standard mount points.
fn mini_root(s: &Scratch) -> std::path::PathBuf {
    let root = s.mkdir("root");
    for d in ["dev", "proc", "sys", "run", "usr/bin", "etc/kernel", "sys/firmware"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/sh", root.join("usr/bin/sh")).unwrap();
    let ldd = run("ldd", &["/bin/sh"]).unwrap();
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let to = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(lib, &to).unwrap();
    }
    // usrmerge: /lib64 and /lib may be links on the host; make the loader findable.
    for l in ["lib64", "lib"] {
        if !root.join(l).exists() {
            let _ = std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l));
        }
    }
    root
}

#[test]
fn root_chrooted_commands_are_isolated() {
    require_root!();
    let s = Scratch::new("chroot");
    let root = mini_root(&s);
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let out = altdisk::cmd::Cmd::in_root("testing the chroot", &root, "sh")
        .unwrap()
        .args(["-c", "test -c /dev/null && test -d /proc/1 && echo inside; while read l; do echo \"$l\"; done < /proc/self/mountinfo"])
        .run()
        .unwrap();
    assert!(out.stdout.starts_with("inside\n"), "{}", out.stdout);
    // Inside, /proc, /dev and /run are mounted at the clone's root.
    let inside: Vec<&str> = out.stdout.lines().skip(1).filter_map(|l| l.split(' ').nth(4)).collect();
    for m in ["/dev", "/proc", "/sys", "/run"] {
        assert!(inside.contains(&m), "{m} not mounted inside: {inside:?}");
    }
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(before, after, "the host's mount table changed");
    assert!(s.mounts().is_empty(), "mounts leaked: {:?}", s.mounts());
    // A tool the clone lacks is named in the error.
    let e = altdisk::cmd::Cmd::in_root("x", &root, "update-initramfs").err().unwrap();
    assert!(e.to_string().contains("update-initramfs"), "{e}");
}
