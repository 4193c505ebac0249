//! Support for altdisk's integration tests: scratch directories, image files and loop
//! devices that the test made itself (and releases even when it fails), a fixture holding
//! every kind of file the clone must keep, and a tree comparison that reports each
//! difference in metadata or content.
//!
//! Tiers (see tests/README.md): `cli_*` tests run the built binary as any user; `root_*`
//! tests need root and use loop devices; `vm_*` tests boot QEMU (`pkg`: altdisk's Debian
//! package in a guest). Nothing here touches a device it did not create.

pub mod bus;
pub mod pkg;
pub mod rescue;
pub mod vm;
pub mod vm_derived;
pub mod vm_lvm;
pub mod vm_matrix;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use anyhow::{anyhow, bail, Context, Result};

/// True when running as root; root tests call this and return early (printing why) if not.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("SKIPPED: this test needs root (loop devices, mounts)");
            return;
        }
    };
}

/// The altdisk binary of this workspace (built by `cargo build`), or $ALTDISK_BIN.
pub fn altdisk_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ALTDISK_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("altdisk");
        if p.exists() {
            return p;
        }
    }
    panic!("the altdisk binary is not built: run `cargo build` first (or set ALTDISK_BIN)");
}

/// Run altdisk (or one of its AIX names) with arguments.
pub fn altdisk(name: &str, args: &[&str]) -> Output {
    let bin = altdisk_bin();
    let mut c = Command::new(&bin);
    if name != "altdisk" {
        use std::os::unix::process::CommandExt;
        c.arg0(name);
    }
    let out = c.args(args).env("ALTDISK_LOG", "warn").output().expect("running altdisk");
    eprintln!(
        "$ {name} {}\n--- exit {:?}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn run(prog: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(prog).args(args).output().with_context(|| format!("running {prog}"))?;
    if !out.status.success() {
        bail!("{prog} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn sh(script: &str) -> Result<String> {
    run("sh", &["-ec", script])
}

/// A directory for one test; on drop it unmounts everything below it, detaches the loop
/// devices it made (and those backed by files inside it), and removes itself.
pub struct Scratch {
    pub dir: PathBuf,
    loops: Vec<PathBuf>,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = PathBuf::from(format!("/var/tmp/altdisk-tests/{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir, loops: Vec::new() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A sparse image file of `size` bytes.
    pub fn image(&self, name: &str, size: u64) -> PathBuf {
        let p = self.dir.join(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(size).unwrap();
        p
    }

    /// An image file attached as a loop device, detached when the scratch goes.
    pub fn loopdev(&mut self, name: &str, size: u64) -> PathBuf {
        let img = self.image(name, size);
        let dev = run("losetup", &["--find", "--show", img.to_str().unwrap()]).unwrap();
        let dev = PathBuf::from(dev.trim());
        self.loops.push(dev.clone());
        // Partitions added by hand (BLKPG, partx) outlive a detach of a loop device without
        // partition scanning: drop any an earlier user left on this (now our) device.
        let _ = Command::new("partx").arg("-d").arg(&dev).stderr(std::process::Stdio::null()).status();
        dev
    }

    /// Make a filesystem on `dev` and mount it at `rel`.
    pub fn mkfs_mount(&self, dev: &Path, fstype: &str, label: Option<&str>, rel: &str) -> PathBuf {
        let mut args: Vec<String> = match fstype {
            "xfs" | "btrfs" => vec!["-f".into(), "-q".into()],
            _ => vec!["-F".into(), "-q".into()],
        };
        if let Some(l) = label {
            args.push("-L".into());
            args.push(l.into());
        }
        args.push(dev.display().to_string());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&format!("mkfs.{fstype}"), &a).unwrap();
        let at = self.mkdir(rel);
        run("mount", &[dev.to_str().unwrap(), at.to_str().unwrap()]).unwrap();
        at
    }

    /// Mount points at or below the scratch directory, deepest first.
    pub fn mounts(&self) -> Vec<PathBuf> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut v: Vec<PathBuf> = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|t| PathBuf::from(t.replace("\\040", " ")))
            .filter(|t| t.starts_with(&self.dir))
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        v.dedup();
        v
    }

    /// Loop devices backed by this file.
    pub fn loops_of(&self, file: &Path) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/sys/block") {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
                    if Path::new(b.trim().trim_end_matches(" (deleted)")) == file {
                        v.push(PathBuf::from("/dev").join(e.file_name()));
                    }
                }
            }
        }
        v
    }

    /// Loop devices whose backing file is inside the scratch directory.
    pub fn own_loops(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/sys/block") {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
                    if Path::new(b.trim().trim_end_matches(" (deleted)")).starts_with(&self.dir) {
                        v.push(PathBuf::from("/dev").join(e.file_name()));
                    }
                }
            }
        }
        v
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in self.mounts() {
            let _ = Command::new("umount").arg(&m).status();
            if self.mounts().contains(&m) {
                let _ = Command::new("umount").arg("-l").arg(&m).status();
            }
        }
        let _ = Command::new("swapoff").args(self.loops.iter()).stderr(std::process::Stdio::null()).status();
        let mut loops = self.loops.clone();
        for l in self.own_loops() {
            if !loops.contains(&l) {
                loops.push(l);
            }
        }
        for l in loops {
            // Only devices this test made (listed, or backed by its own files); their
            // partition nodes first, which a detach would leave behind.
            let _ = Command::new("partx").arg("-d").arg(&l).stderr(std::process::Stdio::null()).status();
            let _ = Command::new("losetup").arg("-d").arg(&l).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // The awake record altdisk keeps for mounts below our directory.
        if let Ok(rd) = std::fs::read_dir("/run/altdisk") {
            let key: String = self
                .dir
                .display()
                .to_string()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().contains(&key) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Fill `dir` with every kind of entry the clone must keep.
pub fn populate(dir: &Path) -> Result<()> {
    let d = dir.display();
    sh(&format!(
        r#"
cd '{d}'
mkdir -p etc home/alice/docs tmp/cache var/tmp srv/data 'with space/dir' usr/bin scratch/x
echo prod > etc/hostname
printf 'hello\n' > home/alice/hello.txt
head -c 3000000 /dev/urandom > home/alice/big.bin
head -c 5000 /dev/urandom > home/alice/docs/small.bin
: > home/alice/empty
for i in $(seq 1 300); do echo "file $i" > srv/data/f$i; done
ln home/alice/hello.txt home/alice/hard1
ln home/alice/hello.txt srv/hard2
ln -s ../alice/hello.txt home/alice/docs/link
ln -s /nonexistent/target home/alice/dangling
mkfifo srv/fifo
mknod srv/null c 1 3
mknod srv/loopish b 7 200
truncate -s 200M srv/sparse
printf 'middle' | dd of=srv/sparse bs=1 seek=104857600 conv=notrunc status=none
printf 'end' | dd of=srv/sparse bs=1 seek=209715197 conv=notrunc status=none
cp /bin/true usr/bin/setuidprog && chmod 4755 usr/bin/setuidprog
cp /bin/true usr/bin/setgidprog && chmod 2711 usr/bin/setgidprog
chmod 1777 tmp
cp /bin/true usr/bin/pinger && setcap cap_net_raw+ep usr/bin/pinger
chown 1234:5678 home/alice/docs/small.bin
chown -h 4321:8765 home/alice/docs/link
chown 1000:1000 home/alice
chmod 0750 home/alice
setfattr -n user.color -v blue home/alice/hello.txt
setfattr -n user.bin -v 0x00ff00 home/alice/big.bin
setfattr -n trusted.secret -v s3cr3t srv/data/f1
setfattr -n security.selinux -v 'system_u:object_r:etc_t:s0' etc/hostname
setfacl -m u:1234:rw- home/alice/docs/small.bin
setfacl -d -m g:5678:r-x home/alice/docs
setfacl -m u:99:rwx home/alice/docs
echo 'x' > 'with space/dir/file name'
# Names as the kernel allows them: a newline, bytes that are not UTF-8.
printf 'nl\n' > "$(printf 'new\nline')"
printf 'raw\n' > "$(printf 'raw\377name\001')"
mkdir "$(printf 'dir\nwith newline')" && printf 'in\n' > "$(printf 'dir\nwith newline/f')"
echo keep > tmp/cache/item
echo keep > var/tmp/item
echo drop > scratch/x/item
echo immutable > srv/immutable
chattr +i srv/immutable
echo append > srv/appendonly
chattr +a srv/appendonly
echo nodump > srv/nodump
chattr +d srv/nodump
touch -h -d '2001-02-03 04:05:06.123456789' home/alice/docs/link
touch -d '1999-12-31 23:59:59.987654321' home/alice/hello.txt
touch -d '2010-01-01 00:00:00.5' srv/data
python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('srv/socket')"
touch -d '2005-05-05 05:05:05.555' home/alice/docs
"#
    ))?;
    Ok(())
}

/// What the comparison looks at for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub rdev: u64,
    pub link: Option<PathBuf>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub flags: u32,
    pub blocks: u64,
    pub ino: u64,
    pub nlink: u64,
}

fn kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_socket() {
        "socket"
    } else {
        "other"
    }
}

fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut list = vec![0u8; 65536];
    let Ok(n) = rustix::fs::llistxattr(p, &mut list[..]) else { return out };
    // XFS's own view of ACLs; the portable names are system.posix_acl_*.
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty() && !n.starts_with(b"trusted.SGI_ACL_")) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut val = vec![0u8; 65536];
        if let Ok(l) = rustix::fs::lgetxattr(p, name.as_str(), &mut val[..]) {
            out.insert(name, val[..l].to_vec());
        }
    }
    out
}

fn flags(p: &Path, k: &str) -> u32 {
    if k != "file" && k != "dir" {
        return 0;
    }
    let Ok(f) = rustix::fs::open(
        p,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    ) else {
        return 0;
    };
    // immutable, append, nodump, noatime, nocow
    rustix::fs::ioctl_getflags(&f).map(|f| f.bits() & (0x10 | 0x20 | 0x40 | 0x80 | 0x0080_0000)).unwrap_or(0)
}

/// Every entry below `root` (not crossing mounts), keyed by relative path.
pub fn scan(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let dev = std::fs::symlink_metadata(root).unwrap().dev();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let md = std::fs::symlink_metadata(&p).unwrap();
        let k = kind(md.file_type());
        out.insert(
            rel.clone(),
            Entry {
                kind: k,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: if k == "file" || k == "symlink" { md.size() } else { 0 },
                mtime: (md.mtime(), md.mtime_nsec()),
                rdev: md.rdev(),
                link: if k == "symlink" { std::fs::read_link(&p).ok() } else { None },
                xattrs: xattrs(&p),
                flags: flags(&p, k),
                blocks: md.blocks(),
                ino: md.ino(),
                nlink: md.nlink(),
            },
        );
        if k == "dir" && (rel.as_os_str().is_empty() || md.dev() == dev) {
            for e in std::fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                let child = rel.join(e.file_name());
                let cm = std::fs::symlink_metadata(root.join(&child)).unwrap();
                if cm.is_dir() && cm.dev() != dev {
                    // A mount point: record it, do not enter it.
                    out.insert(
                        child,
                        Entry {
                            kind: "mountpoint",
                            mode: 0,
                            uid: 0,
                            gid: 0,
                            size: 0,
                            mtime: (0, 0),
                            rdev: 0,
                            link: None,
                            xattrs: BTreeMap::new(),
                            flags: 0,
                            blocks: 0,
                            ino: 0,
                            nlink: 0,
                        },
                    );
                    continue;
                }
                stack.push(child);
            }
        }
    }
    out
}

/// Compare the tree at `dst` with the one at `src`. `skip` names relative paths (and their
/// subtrees) expected to differ; a name starting with `=` skips only that entry itself (a
/// directory whose contents the clone changed on purpose). One line per difference.
pub fn compare(src: &Path, dst: &Path, skip: &[&str]) -> Vec<String> {
    let skipped = |p: &Path| {
        skip.iter().any(|s| match s.strip_prefix('=') {
            Some(exact) => p == Path::new(exact),
            None => p.starts_with(s),
        })
    };
    let a = scan(src);
    let b = scan(dst);
    let mut diffs = Vec::new();
    // Hard-link groups by source inode must map to one destination inode.
    let mut groups: BTreeMap<u64, Vec<&PathBuf>> = BTreeMap::new();
    for (p, e) in &a {
        if skipped(p) {
            continue;
        }
        if e.kind == "socket" {
            if b.contains_key(p) {
                diffs.push(format!("{}: socket was copied", p.display()));
            }
            continue;
        }
        let Some(f) = b.get(p) else {
            diffs.push(format!("{}: missing in the copy", p.display()));
            continue;
        };
        if e.kind == "mountpoint" || f.kind == "mountpoint" {
            continue;
        }
        let mut d = |what: &str, x: String, y: String| diffs.push(format!("{}: {what} {x} != {y}", p.display()));
        if e.kind != f.kind {
            d("kind", e.kind.into(), f.kind.into());
            continue;
        }
        if e.mode != f.mode {
            d("mode", format!("{:o}", e.mode), format!("{:o}", f.mode));
        }
        if (e.uid, e.gid) != (f.uid, f.gid) {
            d("owner", format!("{}:{}", e.uid, e.gid), format!("{}:{}", f.uid, f.gid));
        }
        if e.size != f.size {
            d("size", e.size.to_string(), f.size.to_string());
        }
        if e.mtime != f.mtime {
            d("mtime", format!("{:?}", e.mtime), format!("{:?}", f.mtime));
        }
        if e.rdev != f.rdev {
            d("rdev", e.rdev.to_string(), f.rdev.to_string());
        }
        if e.link != f.link {
            d("symlink target", format!("{:?}", e.link), format!("{:?}", f.link));
        }
        if e.xattrs != f.xattrs {
            d("xattrs", format!("{:?}", e.xattrs.keys()), format!("{:?}", f.xattrs.keys()));
        }
        if e.flags != f.flags {
            d("inode flags", format!("{:#x}", e.flags), format!("{:#x}", f.flags));
        }
        if e.nlink != f.nlink && e.kind != "dir" {
            d("link count", e.nlink.to_string(), f.nlink.to_string());
        }
        if e.kind == "file" {
            // Sparse files must stay sparse: no more than a little over the source's blocks.
            if f.blocks > e.blocks + 64 && f.blocks > e.blocks * 2 {
                d("allocated blocks", e.blocks.to_string(), f.blocks.to_string());
            }
            let x = std::fs::read(src.join(p)).unwrap();
            let y = std::fs::read(dst.join(p)).unwrap();
            if x != y {
                d("content", "differs".into(), String::new());
            }
            if e.nlink > 1 {
                groups.entry(e.ino).or_default().push(p);
            }
        }
    }
    for p in b.keys() {
        if !a.contains_key(p) && !skipped(p) {
            diffs.push(format!("{}: only in the copy", p.display()));
        }
    }
    for paths in groups.values() {
        let inos: std::collections::BTreeSet<u64> = paths.iter().filter_map(|p| b.get(*p)).map(|e| e.ino).collect();
        if inos.len() > 1 {
            diffs.push(format!("hard links {:?} are separate files in the copy", paths));
        }
    }
    diffs
}

/// `blkid -p` value of a device.
pub fn blkid(dev: &Path, tag: &str) -> Option<String> {
    let out = Command::new("blkid").args(["-p", "-o", "value", "-s", tag]).arg(dev).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A Linux system on a disk of its own (GPT, one ext4 partition): `Rescue Test 1`, with a
/// kernel and boot tools that only write down how they were called (the chroot runs them
/// with the disk's own /bin/sh, into /var/log/boot-tools.log), or without a kernel. For the
/// rescue tests (restore, repair). Unmounted when returned.
pub fn rescue_disk(s: &mut Scratch, name: &str, bootable: bool) -> PathBuf {
    use altdisk::write::partition::{self, PartSpec};
    let dev = s.loopdev(&format!("{name}.img"), 320 << 20);
    let parts = vec![PartSpec {
        number: 1,
        start: 1 << 20,
        size: 300 << 20,
        type_guid: altdisk::discover::gpt::LINUX_FS_TYPE.into(),
        guid: uuid::Uuid::new_v4(),
        name: "root".into(),
    }];
    partition::write_gpt(&dev, 320 << 20, uuid::Uuid::new_v4(), 512, &parts).unwrap();
    partition::add_partition_nodes(&dev, &parts).unwrap();
    let root = partition::partition_path(&dev, 1);
    let r = s.mkfs_mount(&root, "ext4", Some(name), name);
    for d in
        ["etc", "boot", "dev", "proc", "sys", "run", "tmp", "var/log", "usr/bin", "usr/sbin", "usr/lib/grub/i386-pc"]
    {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("etc/os-release"), "NAME=\"Rescue Test\"\nPRETTY_NAME=\"Rescue Test 1\"\n").unwrap();
    let uuid = blkid(&root, "UUID").unwrap();
    std::fs::write(r.join("etc/fstab"), format!("UUID={uuid} / ext4 errors=remount-ro 0 1\n")).unwrap();
    if bootable {
        std::fs::create_dir_all(r.join("lib/modules/6.1.0-test")).unwrap();
        std::fs::write(r.join("boot/vmlinuz-6.1.0-test"), b"kernel").unwrap();
        std::fs::write(r.join("boot/initrd.img-6.1.0-test"), b"initrd").unwrap();
        // The shell the fake tools run with, and its libraries.
        std::fs::copy("/bin/sh", r.join("usr/bin/sh")).unwrap();
        for lib in run("ldd", &["/bin/sh"]).unwrap().split_whitespace().filter(|w| w.starts_with('/')) {
            let to = r.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, &to).unwrap();
        }
        for l in ["bin", "lib64", "lib"] {
            if !r.join(l).exists() {
                std::os::unix::fs::symlink(format!("usr/{l}"), r.join(l)).unwrap();
            }
        }
        for tool in ["update-initramfs", "grub-install", "update-grub"] {
            let p = r.join("usr/sbin").join(tool);
            // update-initramfs takes a moment, so the job is seen running.
            let pause = if tool == "update-initramfs" { "sleep 1\n" } else { "" };
            std::fs::write(&p, format!("#!/bin/sh\n{pause}echo \"{tool} $*\" >> /var/log/boot-tools.log\n")).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
    }
    run("umount", &[r.to_str().unwrap()]).unwrap();
    dev
}
