//! Root tier: refreshing a clone (`alt_disk_copy --refresh`) and verifying one
//! (`altdisk verify`), on loop devices this test made. A refreshed clone must be equal, path
//! by path, to a fresh clone of the changed source, keep its identities, and be left awake
//! or asleep as it was; verify must name each kind of difference and say equal when equal.

use std::path::{Path, PathBuf};

use altdisk::discover::record::{self, State};
use altdisk_tests::*;

const MIB: u64 = 1 << 20;

/// A source system: root filesystem on its own loop device, populated, mounted at src/.
fn source(s: &mut Scratch, size: u64) -> (PathBuf, PathBuf) {
    let dev = s.loopdev("src-root.img", size);
    let at = s.mkfs_mount(&dev, "ext4", Some("root"), "src");
    populate(&at).unwrap();
    let uuid = blkid(&dev, "UUID").unwrap();
    std::fs::write(at.join("etc/fstab"), format!("UUID={uuid}\t/\text4\terrors=remount-ro 0 1\n")).unwrap();
    (dev, at)
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

fn assert_ok(o: &std::process::Output) {
    assert!(o.status.success(), "altdisk failed: {}", stderr(o));
}

fn clone(src: &Path, target: &Path, at: &Path) {
    assert_ok(&altdisk("alt_disk_copy", &["--source", p(src), "-d", p(target), "-P1", "--mount-at", p(at)]));
}

fn refresh(src: &Path, target: &Path, at: &Path, extra: &[&str]) -> std::process::Output {
    let mut a = vec!["--refresh", "--source", p(src), "-d", p(target), "--mount-at", p(at)];
    a.extend_from_slice(extra);
    altdisk("alt_disk_copy", &a)
}

/// What the clone changes on purpose, for `compare`.
const CLONE_OWN: &[&str] = &["=etc", "etc/fstab", "etc/altdisk", "lost+found"];

/// Change the source in every way a refresh must follow.
fn change_everything(src: &Path) {
    sh(&format!(
        r#"
cd '{}'
# new files, a new directory, a new sparse file
echo new > srv/newfile
mkdir -p srv/newdir/deeper && echo deep > srv/newdir/deeper/f
truncate -s 64M srv/sparse2 && printf 'mid' | dd of=srv/sparse2 bs=1 seek=33554432 conv=notrunc status=none
# changed content (through a file with hard links), a changed sparse file
printf 'more\n' >> home/alice/hello.txt
printf 'CHANGED' | dd of=srv/sparse bs=1 seek=157286400 conv=notrunc status=none
head -c 3000000 /dev/urandom > home/alice/big.bin
# metadata only: mode, owner, times, xattrs, ACLs, flags
chmod 600 srv/data/f2
chown 7:7 srv/data/f3
touch -d '2003-03-03 03:03:03.333' srv/data/f4
setfattr -n user.added -v yes srv/data/f5
setfattr -x user.color home/alice/hello.txt
setfacl -m u:4242:r-- srv/data/f6
setfacl -b home/alice/docs/small.bin
chattr +d srv/data/f7
chattr -d srv/nodump
# deleted: a file, a tree
rm srv/data/f9
rm -r scratch
# hard links: one made, one broken
ln srv/data/f10 srv/data/f10-link
rm home/alice/hard1 && cp -p home/alice/hello.txt home/alice/hard1
# a file becomes a directory, a directory a file
rm srv/data/f11 && mkdir srv/data/f11 && echo in > srv/data/f11/in
rm -r 'with space/dir' && echo now-a-file > 'with space/dir'
# symlinks: retargeted, new, deleted
ln -sfn ../hello.txt home/alice/docs/link
ln -s srv/newfile newlink
rm home/alice/dangling
# a device node with another number
rm srv/loopish && mknod srv/loopish b 7 201
# immutable and append-only files changed
chattr -i srv/immutable && echo changed > srv/immutable && chattr +i srv/immutable
chattr -a srv/appendonly && echo more >> srv/appendonly && chattr +a srv/appendonly
"#,
        src.display()
    ))
    .unwrap();
}

#[test]
fn root_refresh_awake_clone_equals_a_fresh_clone() {
    require_root!();
    let mut s = Scratch::new("refresh-awake");
    let (_sdev, src) = source(&mut s, 512 * MIB);
    let t = s.loopdev("t.img", 1024 * MIB);
    let alt = s.path("alt");
    clone(&src, &t, &alt);
    let uuid = blkid(&part(&t, 2), "UUID").unwrap();
    let before = record::read(&t).unwrap().unwrap();
    // Changes made in the clone itself are undone too.
    std::fs::write(alt.join("srv/only-in-clone"), b"x").unwrap();
    std::fs::write(alt.join("srv/data/f12"), b"edited in the clone").unwrap();
    change_everything(&src);
    let o = refresh(&src, &t, &alt, &["-V"]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.contains("refreshed:"), "{out}");
    assert!(out.lines().any(|l| l == "./srv/newfile"), "-V names what changed: {out}");
    assert!(!out.lines().any(|l| l == "./srv/data/f1"), "-V does not name what stayed: {out}");
    // Equal to its source, path by path.
    let diffs = compare(&src, &alt, CLONE_OWN);
    assert!(diffs.is_empty(), "refreshed clone vs source:\n{}", diffs.join("\n"));
    // And to a fresh clone of the changed source.
    let t2 = s.loopdev("t2.img", 1024 * MIB);
    let alt2 = s.path("alt2");
    clone(&src, &t2, &alt2);
    let diffs = compare(&alt2, &alt, &["=etc", "etc/fstab", "etc/altdisk"]);
    assert!(diffs.is_empty(), "refreshed vs fresh clone:\n{}", diffs.join("\n"));
    // Same identities, fstab pointing at them, left awake as it was.
    assert_eq!(blkid(&part(&t, 2), "UUID").unwrap(), uuid);
    let fstab = std::fs::read_to_string(alt.join("etc/fstab")).unwrap();
    assert!(fstab.contains(&format!("UUID={uuid}\t/")), "{fstab}");
    let after = record::read(&t).unwrap().unwrap();
    assert_eq!((after.id, after.state, after.created.clone()), (before.id, State::Copied, before.created));
    assert!(s.mounts().contains(&alt), "left awake");
    // A second refresh finds nothing to write.
    let o = refresh(&src, &t, &alt, &["--json"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["copy"]["deleted"], 0, "{v}");
    // fstab is written again each time (the source's, then the clone's identities), and
    // with it the times of /etc.
    assert!(v["copy"]["rewritten"].as_u64().unwrap() <= 1, "{v}");
    assert!(v["copy"]["metadata_only"].as_u64().unwrap() <= 1, "{v}");
    sleep_at(&alt);
    sleep_at(&alt2);
}

fn part(dev: &Path, n: u32) -> PathBuf {
    altdisk::write::partition::partition_path(dev, n)
}

fn sleep_at(at: &Path) {
    assert_ok(&altdisk("alt_rootvg_op", &["-S", "--mount-at", p(at)]));
}

#[test]
fn root_refresh_asleep_clone_stays_asleep() {
    require_root!();
    let mut s = Scratch::new("refresh-asleep");
    let (_sdev, src) = source(&mut s, 512 * MIB);
    let t = s.loopdev("t.img", 1024 * MIB);
    let alt = s.path("alt");
    clone(&src, &t, &alt);
    sleep_at(&alt);
    change_everything(&src);
    let o = refresh(&src, &t, &alt, &["--checksum"]);
    assert_ok(&o);
    assert!(s.mounts().iter().all(|m| !m.starts_with(&alt)), "left asleep: {:?}", s.mounts());
    assert_eq!(record::read(&t).unwrap().unwrap().state, State::Copied);
    assert_ok(&altdisk("alt_rootvg_op", &["-W", "-d", p(&t), "--mount-at", p(&alt)]));
    let diffs = compare(&src, &alt, CLONE_OWN);
    assert!(diffs.is_empty(), "refreshed clone vs source:\n{}", diffs.join("\n"));
    sleep_at(&alt);
    // A disk without a clone is refused, naming it.
    let free = s.loopdev("free.img", 64 * MIB);
    let o = refresh(&src, &free, &alt, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("no altdisk record"), "{}", stderr(&o));
}

fn verify(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut a = vec!["verify", "--json"];
    a.extend_from_slice(args);
    let o = altdisk("altdisk", &a);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    (o.status.code(), v)
}

#[test]
fn root_verify_finds_each_kind_and_says_equal_when_equal() {
    require_root!();
    let mut s = Scratch::new("verify");
    let (_sdev, src) = source(&mut s, 512 * MIB);
    let t = s.loopdev("t.img", 1024 * MIB);
    let alt = s.path("alt");
    clone(&src, &t, &alt);
    // Awake: its mounts are bound read-only for the comparison.
    let (code, v) = verify(&["--source", p(&src), p(&t)]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["equal"], true);
    assert_eq!(v["apiVersion"], "altdisk.io/v1");
    assert!(v["files_hashed"].as_u64().unwrap() > 300, "{v:#}");
    let expected: Vec<&str> = v["list"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert!(expected.contains(&"/etc/fstab"), "fstab is an expected difference: {expected:?}");
    assert!(v["list"].as_array().unwrap().iter().all(|d| d["expected"] == true));
    // Asleep: mounted read-only at a private mount point, unmounted after.
    sleep_at(&alt);
    let (code, _) = verify(&["--source", p(&src), p(&t)]);
    assert_eq!(code, Some(0));
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains("/run/altdisk/verify-"));
    // A difference of every kind.
    assert_ok(&altdisk("alt_rootvg_op", &["-W", "-d", p(&t), "--mount-at", p(&alt)]));
    sh(&format!(
        r#"
cd '{a}'
# sparseness: the clone's copy of a sparse file is filled in, same data and times
t=$(stat -c %y srv/sparse); fallocate -l 200M srv/sparse; touch -d "$t" srv/sparse
# links: a hard link of the clone becomes a separate file
t=$(stat -c %y srv/hard2); cp -p srv/hard2 srv/hard2.tmp && mv srv/hard2.tmp srv/hard2; touch -d "$t" srv/hard2
cd '{s}'
echo new > srv/missing-in-clone
rm srv/data/f20
rm srv/data/f21 && mkdir srv/data/f21
t=$(stat -c %y srv/data/f22); echo 'file 99' > srv/data/f22; touch -d "$t" srv/data/f22
chown 5:5 srv/data/f23
chmod 0711 srv/data/f24
touch -d '2002-02-02' srv/data/f25
setfattr -n user.new -v 1 srv/data/f26
setfacl -m u:77:rw- srv/data/f27
chattr +d srv/data/f28
"#,
        a = alt.display(),
        s = src.display()
    ))
    .unwrap();
    sleep_at(&alt);
    let (code, v) = verify(&["--source", p(&src), p(&t)]);
    assert_eq!(code, Some(7), "{v:#}");
    assert_eq!(v["equal"], false);
    let kinds = v["differences"].as_object().unwrap();
    for k in [
        "missing",
        "extra",
        "type",
        "content",
        "owner",
        "mode",
        "times",
        "xattrs",
        "acls",
        "flags",
        "links",
        "sparseness",
    ] {
        assert!(kinds.contains_key(k), "{k} not found: {v:#}");
    }
    let at = |path: &str, kind: &str| {
        v["list"].as_array().unwrap().iter().any(|d| d["path"] == path && d["kind"] == kind && d["expected"] == false)
    };
    assert!(at("/srv/missing-in-clone", "missing") && at("/srv/data/f20", "extra") && at("/srv/data/f22", "content"));
    assert!(at("/srv/sparse", "sparseness") && at("/srv/data/f28", "flags"));
    // The text form says it too, and the exit status is documented as 7.
    let o = altdisk("altdisk", &["verify", "--source", p(&src), p(&t)]);
    assert_eq!(o.status.code(), Some(7));
    assert!(stdout(&o).contains("DIFFERS  content    /srv/data/f22"), "{}", stdout(&o));
    // A refresh makes it equal again.
    assert_ok(&refresh(&src, &t, &alt, &[]));
    let (code, v) = verify(&["--source", p(&src), p(&t)]);
    assert_eq!(code, Some(0), "{v:#}");
    // Two systems: the refreshed clone and a fresh one are equal.
    let t2 = s.loopdev("t2.img", 1024 * MIB);
    let alt2 = s.path("alt2");
    clone(&src, &t2, &alt2);
    let (code, v) = verify(&["--against", p(&t2), p(&t)]);
    assert_eq!(code, Some(0), "{v:#}");
    sleep_at(&alt2);
}

/// The change tracker (`altdisk track --source DIR`), stopped and waited for when dropped.
struct Tracker(std::process::Child);

impl Tracker {
    fn start(src: &Path) -> Tracker {
        let child = std::process::Command::new(altdisk_bin())
            .args(["track", "--source", p(src)])
            .spawn()
            .expect("starting altdisk track");
        let state = Path::new(altdisk::discover::changes::STATE_DIR).join(format!("{}.json", child.id()));
        let t = Tracker(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !state.exists() {
            assert!(std::time::Instant::now() < deadline, "the tracker said nothing in 20 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        t
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn said(o: &std::process::Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// With the change tracker running, a refresh of an asleep clone compares only the
/// directories that changed, and leaves the clone equal to its source; a link made to a file
/// elsewhere, a clone left awake or mounted since, or no tracker make it compare everything
/// (and say why), equal all the same.
#[test]
fn root_refresh_tracked_compares_only_what_changed() {
    require_root!();
    let mut s = Scratch::new("refresh-tracked");
    let (_sdev, src) = source(&mut s, 512 * MIB);
    let t = s.loopdev("t.img", 1024 * MIB);
    let alt = s.path("alt");
    let tracker = Tracker::start(&src);
    // Phase 2 with nothing to customize leaves nothing of its own in the clone.
    assert_ok(&altdisk("alt_disk_copy", &["--source", p(&src), "-d", p(&t), "-P12", "--mount-at", p(&alt)]));
    sleep_at(&alt);
    // Left awake by -P1: the first refresh cannot vouch for it.
    let o = refresh(&src, &t, &alt, &["--json"]);
    assert_ok(&o);
    assert!(said(&o).contains("comparing every directory: its filesystems cannot tell"), "{}", said(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let whole = v["copy"]["unchanged"].as_u64().unwrap();
    let equal = |s: &Scratch| {
        assert_ok(&altdisk("alt_rootvg_op", &["-W", "-d", p(&t), "--mount-at", p(&alt)]));
        let diffs = compare(&src, &alt, CLONE_OWN);
        assert!(diffs.is_empty(), "refreshed clone vs source:\n{}", diffs.join("\n"));
        sleep_at(&alt);
        assert!(s.mounts().iter().all(|m| !m.starts_with(&alt)));
    };
    // Some files changed, outside the big srv/data: content (of a file with hard links), a
    // new tree, a deleted one, metadata of directories.
    sh(&format!(
        "cd '{}' && printf 'more\\n' >> home/alice/hello.txt && mkdir -p srv/tracked/deep && echo x > srv/tracked/deep/f \
         && rm -r tmp/cache && chmod 600 home/alice/docs && setfattr -n user.t -v 1 usr/bin && echo n > newtop",
        src.display()
    ))
    .unwrap();
    let o = refresh(&src, &t, &alt, &["--json"]);
    assert_ok(&o);
    assert!(said(&o).contains("changed directories; only they are compared"), "{}", said(&o));
    assert!(!said(&o).contains("had been customized"), "{}", said(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The entries of the few changed directories, not the whole tree.
    let seen = v["copy"]["unchanged"].as_u64().unwrap() + v["copy"]["rewritten"].as_u64().unwrap();
    assert!(seen * 3 < whole, "only the changed directories were compared ({seen} of {whole} entries): {v}");
    assert!(v["copy"]["deleted"].as_u64().unwrap() >= 1, "{v}");
    // A file mapped shared and writable (its descriptor closed), written through the
    // mapping, which raises no event while the mapping lasts: compared all the same.
    let mapped = src.join("var/tmp/mapped");
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&mapped).unwrap();
    f.set_len(4096).unwrap();
    use std::os::fd::AsRawFd;
    let addr = unsafe {
        libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, f.as_raw_fd(), 0)
    };
    assert_ne!(addr, libc::MAP_FAILED);
    drop(f);
    assert_ok(&refresh(&src, &t, &alt, &[]));
    std::thread::sleep(std::time::Duration::from_millis(20));
    unsafe {
        std::ptr::copy_nonoverlapping(b"written through the mapping".as_ptr(), addr.cast::<u8>(), 27);
        libc::msync(addr, 4096, libc::MS_SYNC);
    }
    let o = refresh(&src, &t, &alt, &[]);
    unsafe { libc::munmap(addr, 4096) };
    assert_ok(&o);
    assert!(said(&o).contains("changed directories; only they are compared"), "{}", said(&o));
    // The unmapping closed the file (an event): the comparison below is of this refresh.
    assert_ok(&altdisk("alt_rootvg_op", &["-W", "-d", p(&t), "--mount-at", p(&alt)]));
    assert_eq!(&std::fs::read(alt.join("var/tmp/mapped")).unwrap()[..27], b"written through the mapping");
    sleep_at(&alt);
    // Waking it (mounting it) and the refresh after it: walked, then vouched for again.
    equal(&s);
    let o = refresh(&src, &t, &alt, &[]);
    assert_ok(&o);
    assert!(said(&o).contains("comparing every directory: the clone was mounted since"), "{}", said(&o));
    // Every kind of change, a link made among them: the tracked walk cannot follow the link,
    // and the whole tree is compared.
    change_everything(&src);
    let o = refresh(&src, &t, &alt, &[]);
    assert_ok(&o);
    assert!(said(&o).contains("a hard link was made: comparing every directory"), "{}", said(&o));
    equal(&s);
    // Without the tracker: compared in full, and said so.
    drop(tracker);
    std::fs::write(src.join("srv/after"), b"x").unwrap();
    let o = refresh(&src, &t, &alt, &[]);
    assert_ok(&o);
    assert!(said(&o).contains("comparing every directory: the clone was mounted since"), "{}", said(&o));
    let o = refresh(&src, &t, &alt, &[]);
    assert_ok(&o);
    assert!(said(&o).contains("comparing every directory: no change tracker runs"), "{}", said(&o));
    equal(&s);
}
