//! Verify (`altdisk verify SYSTEM|DISK`): compare a clone with its source (the running
//! system, a system mounted at a directory, or another system on disks) and report every
//! difference by kind: missing, extra, type, content, owner, mode, times, xattrs, ACLs,
//! flags, links, sparseness.
//!
//! Promises: nothing is written. The clone (and another system compared with it) is mounted
//! read-only at a private temporary mount point under `/run/altdisk` (or, when it is awake,
//! its mounts are bound there read-only), and unmounted after, also on error or cancel.
//! Every regular file of the same size is read on both sides and compared by a 128-bit
//! xxh3 hash, in parallel (the copy engine's adaptive workers). The tree is walked as the
//! copy walks it: filesystem by filesystem of the source, never into mounts the clone does
//! not copy; excluded paths (`-e`) are skipped. Differences altdisk itself makes in a clone
//! are reported as expected and do not make it unequal: fstab, crypttab, the initramfs
//! resume configuration, altdisk's own files ([`crate::boot::units::own_paths`]), the boot
//! files phase 3 rebuilt (when it ran), the times of the directories holding those,
//! `lost+found` at a filesystem's root, sockets (never copied), and the metadata of mount
//! points of filesystems that are not cloned (`/proc`, `/run`: the mounted filesystem's
//! root shows through). Atimes are not compared.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use nix::mount::MsFlags;
use rustix::fs::{FileType, Mode, OFlags, Statx, StatxAttributes};
use rustix::io::Errno;
use serde::Serialize;

use crate::discover::{blockdev, mounts, source};
use crate::error::{Error, IoContext, Result};
use crate::job::{Job, Phase};
use crate::systems::ops::{self, System};
use crate::write::copy::{self, XTarget};
use crate::write::exclude::ExcludeList;
use crate::write::fs::Mounted;
use crate::write::workers::Gate;

/// How many differences are kept by name, of each of the two sorts (the rest are counted).
const KEEP: usize = 2000;
const LARGE_FILE: u64 = 1 << 20;
const BUF_SIZE: usize = 1 << 20;

/// What to compare.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    /// The clone: a disk of it (name, path, alias) or its name.
    pub target: String,
    /// Compare with the system mounted at this directory instead of the running one.
    pub source_dir: Option<PathBuf>,
    /// Compare with another system on disks (a disk of it, or its name).
    pub against: Option<String>,
    /// Full path of an exclude list (as for the copy): matching paths are not compared.
    pub exclude: Option<PathBuf>,
    /// Worker threads; 0: adapt.
    pub threads: usize,
}

/// The kinds of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// In the source, not in the clone.
    Missing,
    /// In the clone, not in the source.
    Extra,
    /// A file in one, a directory (or symlink...) in the other.
    Type,
    /// Data, symlink target or device number.
    Content,
    Owner,
    Mode,
    /// Modification time.
    Times,
    /// Extended attributes other than ACLs.
    Xattrs,
    /// POSIX ACLs.
    Acls,
    /// Inode flags (immutable, append-only, nodump, noatime, nocow...).
    Flags,
    /// Hard links: link counts, or paths sharing an inode in one and not the other.
    Links,
    /// A file that is sparse in the source takes its full size in the clone.
    Sparseness,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Type => "type",
            Kind::Content => "content",
            Kind::Owner => "owner",
            Kind::Mode => "mode",
            Kind::Times => "times",
            Kind::Xattrs => "xattrs",
            Kind::Acls => "acls",
            Kind::Flags => "flags",
            Kind::Links => "links",
            Kind::Sparseness => "sparseness",
        }
    }
}

/// One difference.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub kind: Kind,
    /// As the system sees it: `/etc/fstab`.
    pub path: String,
    /// altdisk makes this difference in every clone (see the module documentation).
    pub expected: bool,
    /// The source's side and the clone's, when there is something to show.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub clone: String,
}

/// What verify found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// What was compared: "the running system", a directory, or a system on disks.
    pub source: String,
    pub clone: String,
    /// No difference but the expected ones.
    pub equal: bool,
    /// Entries compared (source side).
    pub entries: u64,
    pub files_hashed: u64,
    /// Bytes read and hashed, both sides.
    pub bytes_hashed: u64,
    /// Differences that make the clone unequal, by kind.
    pub differences: BTreeMap<Kind, u64>,
    pub unexpected: u64,
    pub expected: u64,
    /// The differences themselves: the unexpected ones first (up to 2000 of each sort).
    pub list: Vec<Difference>,
    pub seconds: f64,
}

/// A system mounted read-only for the comparison, unmounted (and its volume group
/// deactivated, if this activated it) when dropped.
struct View {
    root: PathBuf,
    mounts: Vec<Mounted>,
    vg: Option<String>,
    dir: Option<PathBuf>,
}

impl Drop for View {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            if let Err(e) = m.unmount() {
                tracing::error!("{e}");
            }
        }
        if let Some(vg) = self.vg.take() {
            if let Err(e) = crate::write::lvm::deactivate(&vg) {
                tracing::error!("{e}");
            }
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Mount the filesystems of `sys` read-only below a new private directory; the running
/// system is used where it is ("/").
fn view(sys: &System) -> Result<View> {
    if ops::is_running(sys)? {
        return Ok(View { root: PathBuf::from("/"), mounts: Vec::new(), vg: None, dir: None });
    }
    let base = Path::new("/run/altdisk");
    std::fs::create_dir_all(base).ctx("making the directory for verify's mount points", base)?;
    let dir = base.join(format!("verify-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).ctx("making verify's mount point", &dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).ctx("making verify's mount point", &dir)?;
    let mut v = View { root: dir.clone(), mounts: Vec::new(), vg: None, dir: Some(dir) };
    if let Some(vg) = &sys.env.vg {
        let active = sys
            .env
            .filesystems
            .iter()
            .filter_map(|f| f.lv.as_ref())
            .all(|lv| crate::write::lvm::lv_path(vg, lv).exists());
        if !active {
            crate::write::lvm::activate(vg)?;
            v.vg = Some(vg.clone());
        }
    }
    let table = mounts::read()?;
    let mut fs = sys.env.filesystems.clone();
    fs.sort_by_key(|f| (f.mountpoint.matches('/').count(), f.mountpoint != "/"));
    for f in &fs {
        let dev =
            sys.device(f).ok_or_else(|| Error::corrupt("altdisk record", format!("no device for {}", f.mountpoint)))?;
        let at = v.root.join(f.mountpoint.trim_start_matches('/'));
        let rdev = std::fs::metadata(&dev).ctx("looking at a filesystem of the clone", &dev)?;
        let rdev = std::os::unix::fs::MetadataExt::rdev(&rdev);
        let (major, minor) = (nix::sys::stat::major(rdev) as u32, nix::sys::stat::minor(rdev) as u32);
        // Awake (or mounted by hand): bind its mount read-only; a second read-only mount of a
        // filesystem mounted read-write is refused by the kernel.
        match table.iter().find(|m| (m.major, m.minor) == (major, minor) && m.root == "/") {
            Some(m) => {
                nix::mount::mount(Some(&m.target), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .ctx(&format!("binding {} read-only", m.target.display()), &at)?;
                v.mounts.push(Mounted::adopt(&at));
                nix::mount::mount(
                    None::<&str>,
                    &at,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .ctx("making the bind read-only", &at)?;
            }
            None => {
                if crate::systems::mount::needs_recovery(&dev, &f.fstype) {
                    return Err(Error::refused(
                        format!("{} of {} ({})", f.mountpoint, sys.env.name, dev.display()),
                        "it was not unmounted cleanly (its journal waits to be replayed): read as it is, its newest changes would be missing",
                        "wake it and put it to sleep again (alt_rootvg_op -W, then -S), then verify",
                    ));
                }
                // Read-only, and no journal replayed: not a byte of the clone changes.
                let opts = crate::systems::mount::read_only_options(&f.fstype);
                nix::mount::mount(
                    Some(&dev),
                    &at,
                    Some(f.fstype.as_str()),
                    MsFlags::MS_RDONLY,
                    (!opts.is_empty()).then_some(opts),
                )
                .ctx(&format!("mounting {} ({}) read-only", dev.display(), f.fstype), &at)?;
                v.mounts.push(Mounted::adopt(&at));
            }
        }
    }
    Ok(v)
}

/// A system named by a disk of it or by its name.
fn find(name: &str) -> Result<System> {
    let all = blockdev::list()?;
    if blockdev::resolve(name, &all).is_ok_and(|n| matches!(n, blockdev::Named::Disk(_))) {
        return ops::find_by_disk(name);
    }
    let mut systems = ops::find_by_name(name)?;
    match systems.len() {
        1 => Ok(systems.remove(0)),
        0 => Err(Error::not_found(
            format!("system or disk {name}"),
            "no disk by that name, and no system of that name",
            "name a disk of the clone or its system (see `altdisk lspv`)",
        )),
        n => Err(Error::usage(
            format!("system {name}"),
            format!("{n} systems have that name"),
            "name a disk of the one to verify",
        )),
    }
}

/// Compare the clone `req.target` with its source; see the module documentation.
pub fn verify(req: &VerifyRequest, job: &Job) -> Result<VerifyReport> {
    let started = std::time::Instant::now();
    job.set_phase(Phase::Validating);
    let exclude = match &req.exclude {
        Some(p) if !p.is_absolute() => {
            return Err(Error::usage(
                format!("exclude list {}", p.display()),
                "it is not a full path",
                "give the full path, as AIX requires",
            ))
        }
        Some(p) => ExcludeList::from_file(p)?,
        None => ExcludeList::empty(),
    };
    let clone = find(&req.target)?;
    let clone_name = format!("{} on {}", clone.env.name, clone.disk_names());
    if req.against.is_none() && req.source_dir.is_none() && ops::is_running(&clone)? {
        return Err(Error::usage(
            format!("verify {}", req.target),
            "it is the running system: compared with itself it is equal",
            "name a clone, or compare with another system (--against DISK) or a mounted one (--source DIR)",
        ));
    }
    // The source: (mount point, where it can be read now) per filesystem.
    let other;
    let (source_name, pairs): (String, Vec<(String, PathBuf)>) = match &req.against {
        Some(a) => {
            let sys = find(a)?;
            if sys.env.id == clone.env.id {
                return Err(Error::usage(
                    format!("--against {a}"),
                    "it is the same system",
                    "name a disk of another system",
                ));
            }
            let v = view(&sys)?;
            let mut fs: Vec<(String, PathBuf)> = sys
                .env
                .filesystems
                .iter()
                .map(|f| (f.mountpoint.clone(), v.root.join(f.mountpoint.trim_start_matches('/'))))
                .collect();
            fs.sort();
            let name = format!("{} on {}", sys.env.name, sys.disk_names());
            other = Some(v);
            (name, fs)
        }
        None => {
            other = None;
            let disks = blockdev::list()?;
            let src = source::discover(req.source_dir.as_deref(), &disks)?;
            let name = match &req.source_dir {
                Some(d) => format!("the system at {}", d.display()),
                None => "the running system".to_string(),
            };
            (name, src.filesystems.iter().map(|f| (f.mountpoint.clone(), f.path.clone())).collect())
        }
    };
    job.set_phase(Phase::Copying);
    let target = view(&clone)?;
    let expect = Expected::new(clone.env.phases_done.contains(&3));
    let roots: HashSet<String> = pairs.iter().map(|(m, _)| m.clone()).collect();
    let mut out = Findings::default();
    for (mp, from) in &pairs {
        job.check()?;
        job.info(format!("comparing {mp}"));
        let to = target.root.join(mp.trim_start_matches('/'));
        let w = Walk::new(from, &to, mp, &roots, &exclude, &expect, job, req.threads)?;
        w.run();
        if job.is_cancelled() {
            return Err(Error::Cancelled);
        }
        if let Some(e) = w.fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        out.merge(w.found.into_inner().unwrap_or_else(|p| p.into_inner()), &w.c);
    }
    drop(target);
    drop(other);
    let mut list = out.unexpected_list;
    list.extend(out.expected_list);
    Ok(VerifyReport {
        api_version: crate::API_VERSION.into(),
        source: source_name,
        clone: clone_name,
        equal: out.unexpected == 0,
        entries: out.entries,
        files_hashed: out.files_hashed,
        bytes_hashed: out.bytes_hashed,
        differences: out.by_kind,
        unexpected: out.unexpected,
        expected: out.expected,
        list,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What altdisk changes in a clone on purpose, by path.
struct Expected {
    /// Paths whose whole subtree is expected to differ.
    trees: Vec<String>,
    /// Prefixes of names (`/boot/initrd.img-`).
    prefixes: Vec<String>,
    /// Directories whose times follow from the above.
    parents: HashSet<String>,
}

impl Expected {
    fn new(bootable: bool) -> Expected {
        let mut trees: Vec<String> = ["/etc/fstab", "/etc/crypttab", "/etc/initramfs-tools/conf.d/resume"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        trees.extend(crate::boot::units::own_paths());
        let mut prefixes = Vec::new();
        if bootable {
            trees.extend(
                [
                    "/boot/grub",
                    "/boot/grub2",
                    "/boot/efi",
                    "/efi",
                    "/boot/loader",
                    "/etc/kernel/cmdline",
                    crate::boot::bootloader::DRIVER_HOOK,
                    crate::boot::bootloader::DRIVER_DRACUT_CONF,
                ]
                .iter()
                .map(|s| s.to_string()),
            );
            prefixes.extend(["/boot/initrd.img-", "/boot/initramfs-"].iter().map(|s| s.to_string()));
        }
        let mut parents: HashSet<String> = trees
            .iter()
            .chain(prefixes.iter())
            .filter_map(|t| Path::new(t).parent().map(|p| p.display().to_string()))
            .collect();
        parents.remove("/");
        Expected { trees, prefixes, parents }
    }

    fn is(&self, path: &str, kind: Kind) -> bool {
        self.trees
            .iter()
            .any(|t| path == t || (path.starts_with(t.as_str()) && path.as_bytes().get(t.len()) == Some(&b'/')))
            || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
            || (kind == Kind::Times && self.parents.contains(path))
    }
}

#[derive(Default)]
struct Findings {
    entries: u64,
    files_hashed: u64,
    bytes_hashed: u64,
    by_kind: BTreeMap<Kind, u64>,
    unexpected: u64,
    expected: u64,
    unexpected_list: Vec<Difference>,
    expected_list: Vec<Difference>,
}

impl Findings {
    fn push(&mut self, d: Difference) {
        if d.expected {
            self.expected += 1;
            if self.expected_list.len() < KEEP {
                self.expected_list.push(d);
            }
        } else {
            self.unexpected += 1;
            *self.by_kind.entry(d.kind).or_default() += 1;
            if self.unexpected_list.len() < KEEP {
                self.unexpected_list.push(d);
            }
        }
    }

    fn merge(&mut self, other: Findings, c: &Counts) {
        self.entries += c.entries.load(Ordering::Relaxed);
        self.files_hashed += c.files.load(Ordering::Relaxed);
        self.bytes_hashed += c.bytes.load(Ordering::Relaxed);
        self.unexpected += other.unexpected;
        self.expected += other.expected;
        for (k, n) in other.by_kind {
            *self.by_kind.entry(k).or_default() += n;
        }
        let room = KEEP.saturating_sub(self.unexpected_list.len());
        self.unexpected_list.extend(other.unexpected_list.into_iter().take(room));
        let room = KEEP.saturating_sub(self.expected_list.len());
        self.expected_list.extend(other.expected_list.into_iter().take(room));
    }
}

#[derive(Default)]
struct Counts {
    entries: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
}

enum Task {
    Dir(PathBuf),
    /// A large regular file of the same size on both sides: its data to compare.
    Data(PathBuf, Box<(Statx, Statx)>),
}

/// The comparison of one source filesystem with where the clone holds it.
struct Walk<'a> {
    src: &'a Path,
    dst: &'a Path,
    /// Its mount point in the system ("/", "/boot").
    mp: &'a str,
    /// Mount points of every source filesystem compared (each by its own walk).
    roots: &'a HashSet<String>,
    src_mnt: u64,
    exclude: &'a ExcludeList,
    expect: &'a Expected,
    job: &'a Job,
    gate: Gate,
    queue: Mutex<(Vec<Task>, usize)>,
    wake: Condvar,
    /// Parked workers wait here (see the copy engine).
    park: Condvar,
    abort: AtomicBool,
    fatal: Mutex<Option<Error>>,
    found: Mutex<Findings>,
    /// Source inodes with several links: (the clone's inode of the first path met, links
    /// not met yet).
    links: Mutex<HashMap<(u64, u64), (u64, u32)>>,
    c: Counts,
}

fn ioerr(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

fn open_dir(p: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

impl<'a> Walk<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        src: &'a Path,
        dst: &'a Path,
        mp: &'a str,
        roots: &'a HashSet<String>,
        exclude: &'a ExcludeList,
        expect: &'a Expected,
        job: &'a Job,
        threads: usize,
    ) -> Result<Walk<'a>> {
        let root = open_dir(src).map_err(|e| Error::io("reading the source", src, ioerr(e)))?;
        let st = copy::statx_fd(&root).map_err(|e| Error::io("reading the source", src, ioerr(e)))?;
        Ok(Walk {
            src,
            dst,
            mp,
            roots,
            src_mnt: st.stx_mnt_id,
            exclude,
            expect,
            job,
            gate: Gate::new(threads),
            queue: Mutex::new((vec![Task::Dir(PathBuf::new())], 0)),
            wake: Condvar::new(),
            park: Condvar::new(),
            abort: AtomicBool::new(false),
            fatal: Mutex::new(None),
            found: Mutex::new(Findings::default()),
            links: Mutex::new(HashMap::new()),
            c: Counts::default(),
        })
    }

    fn run(&self) {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..self.gate.max).map(|i| s.spawn(move || self.worker(i))).collect();
            s.spawn(|| {
                self.gate.control(|| {
                    self.wake.notify_all();
                    self.park.notify_all();
                })
            });
            for w in workers {
                let _ = w.join();
            }
            self.gate.finish();
        });
    }

    fn worker(&self, me: usize) {
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            let task = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if self.abort.load(Ordering::Relaxed) {
                        q.0.clear();
                    }
                    if q.1 == 0 && q.0.is_empty() {
                        break None;
                    }
                    let cv = if self.gate.may_work(me) {
                        if let Some(t) = q.0.pop() {
                            q.1 += 1;
                            break Some(t);
                        }
                        &self.wake
                    } else {
                        &self.park
                    };
                    q = cv.wait_timeout(q, std::time::Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
                }
            };
            let Some(task) = task else {
                self.wake.notify_all();
                self.park.notify_all();
                return;
            };
            if self.job.is_cancelled() {
                self.abort.store(true, Ordering::SeqCst);
            }
            if !self.abort.load(Ordering::Relaxed) {
                match task {
                    Task::Dir(rel) => self.dir(&rel, &mut buf),
                    Task::Data(rel, st) => self.data(&rel, &st.0, &st.1, &mut buf),
                }
            }
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.1 -= 1;
            if q.1 == 0 && q.0.is_empty() {
                self.wake.notify_all();
                self.park.notify_all();
            }
        }
    }

    fn push(&self, t: Task) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).0.push(t);
        self.wake.notify_one();
    }

    /// The path as the system sees it.
    fn show(&self, rel: &Path) -> String {
        let mut s = self.mp.trim_end_matches('/').to_string();
        if !rel.as_os_str().is_empty() {
            s.push('/');
            s.push_str(&rel.to_string_lossy());
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }

    fn differ(&self, kind: Kind, rel: &Path, source: String, clone: String) {
        self.differ_as(kind, rel, source, clone, false);
    }

    fn differ_as(&self, kind: Kind, rel: &Path, source: String, clone: String, expected: bool) {
        let path = self.show(rel);
        let expected = expected || self.expect.is(&path, kind);
        self.found.lock().unwrap_or_else(|p| p.into_inner()).push(Difference { kind, path, expected, source, clone });
    }

    /// A failure to read either side is a fact about the clone (or the source): reported
    /// as a difference of content, so it cannot pass as equal.
    fn unreadable(&self, rel: &Path, side: &str, e: Errno) {
        let msg = format!("{side} cannot be read: {}", ioerr(e));
        self.differ(
            Kind::Content,
            rel,
            if side == "source" { msg.clone() } else { String::new() },
            if side == "source" { String::new() } else { msg },
        );
    }

    fn dir(&self, rel: &Path, buf: &mut [u8]) {
        let (sfd, dfd) = match (open_dir(&self.src.join(rel)), open_dir(&self.dst.join(rel))) {
            (Ok(s), Ok(d)) => (s, d),
            (Err(e), _) => return self.unreadable(rel, "source", e),
            (_, Err(e)) => return self.unreadable(rel, "clone", e),
        };
        let mut left: HashSet<CString> = match rustix::fs::Dir::read_from(&dfd) {
            Ok(d) => d
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_owned())
                .filter(|n| n.as_c_str() != c"." && n.as_c_str() != c"..")
                .collect(),
            Err(e) => return self.unreadable(rel, "clone", e),
        };
        let here = copy::statx_fd(&dfd).ok();
        let dir = match rustix::fs::Dir::read_from(&sfd) {
            Ok(d) => d,
            Err(e) => return self.unreadable(rel, "source", e),
        };
        for ent in dir {
            if self.abort.load(Ordering::Relaxed) {
                return;
            }
            let Ok(ent) = ent else { return self.unreadable(rel, "source", Errno::IO) };
            let name = ent.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let crel = rel.join(OsStr::from_bytes(name.to_bytes()));
            let dotted = format!(".{}", self.show(&crel));
            if !self.exclude.is_empty() && self.exclude.is_excluded(&dotted) {
                left.remove(name);
                continue;
            }
            left.remove(name);
            self.entry(&sfd, &dfd, name, &crel, buf);
        }
        for name in left {
            let crel = rel.join(OsStr::from_bytes(name.to_bytes()));
            let dotted = format!(".{}", self.show(&crel));
            if !self.exclude.is_empty() && self.exclude.is_excluded(&dotted) {
                continue;
            }
            // The target filesystem's own lost+found.
            let lost = name.as_c_str() == c"lost+found"
                && here.is_some_and(|h| h.stx_attributes.contains(StatxAttributes::MOUNT_ROOT));
            self.differ_as(Kind::Extra, &crel, String::new(), String::new(), lost);
        }
    }

    fn entry(&self, sfd: &OwnedFd, dfd: &OwnedFd, name: &CStr, rel: &Path, buf: &mut [u8]) {
        self.c.entries.fetch_add(1, Ordering::Relaxed);
        self.job.add_file();
        self.gate.add(1, 0);
        let s = match copy::statx_at(sfd, name) {
            Ok(s) => s,
            // Gone meanwhile on a live source: nothing to compare.
            Err(Errno::NOENT) => return,
            Err(e) => return self.unreadable(rel, "source", e),
        };
        let st = copy::file_type(&s);
        let d = match copy::statx_at(dfd, name) {
            Ok(d) => d,
            Err(Errno::NOENT) => {
                // Sockets are never copied.
                return self.differ_as(Kind::Missing, rel, String::new(), String::new(), st == FileType::Socket);
            }
            Err(e) => return self.unreadable(rel, "clone", e),
        };
        if st == FileType::Directory && s.stx_mnt_id != self.src_mnt {
            // Another filesystem is mounted here in the source: a cloned one is compared by
            // its own walk; for one not cloned the copy is an empty mount point, whose
            // metadata is what that filesystem's root shows.
            let mp = self.show(rel);
            if !self.roots.contains(&mp) {
                self.meta(rel, &s, &d, true);
            }
            return;
        }
        let dt = copy::file_type(&d);
        if st != dt {
            return self.differ(Kind::Type, rel, type_name(st).into(), type_name(dt).into());
        }
        self.meta(rel, &s, &d, false);
        self.xattrs(rel);
        match st {
            FileType::Directory => {
                self.flags(rel, sfd, dfd, name);
                self.push(Task::Dir(rel.to_path_buf()));
            }
            FileType::RegularFile => {
                self.links(rel, &s, &d);
                self.flags(rel, sfd, dfd, name);
                if d.stx_blocks > s.stx_blocks + 64 && d.stx_blocks > s.stx_blocks * 2 {
                    self.differ(
                        Kind::Sparseness,
                        rel,
                        format!("{} bytes allocated", s.stx_blocks * 512),
                        format!("{} bytes allocated", d.stx_blocks * 512),
                    );
                }
                if s.stx_size != d.stx_size {
                    self.differ(Kind::Content, rel, format!("{} bytes", s.stx_size), format!("{} bytes", d.stx_size));
                } else if s.stx_size >= LARGE_FILE {
                    self.push(Task::Data(rel.to_path_buf(), Box::new((s, d))));
                } else {
                    self.data(rel, &s, &d, buf);
                }
            }
            FileType::Symlink => {
                self.links(rel, &s, &d);
                let a = rustix::fs::readlinkat(sfd, name, Vec::new());
                let b = rustix::fs::readlinkat(dfd, name, Vec::new());
                match (a, b) {
                    (Ok(a), Ok(b)) if a != b => self.differ(
                        Kind::Content,
                        rel,
                        a.to_string_lossy().into_owned(),
                        b.to_string_lossy().into_owned(),
                    ),
                    (Ok(_), Ok(_)) => {}
                    (Err(e), _) => self.unreadable(rel, "source", e),
                    (_, Err(e)) => self.unreadable(rel, "clone", e),
                }
            }
            _ => {
                self.links(rel, &s, &d);
                if (s.stx_rdev_major, s.stx_rdev_minor) != (d.stx_rdev_major, d.stx_rdev_minor) {
                    self.differ(
                        Kind::Content,
                        rel,
                        format!("device {}:{}", s.stx_rdev_major, s.stx_rdev_minor),
                        format!("device {}:{}", d.stx_rdev_major, d.stx_rdev_minor),
                    );
                }
            }
        }
    }

    /// Owner, mode, mtime.
    fn meta(&self, rel: &Path, s: &Statx, d: &Statx, mount_point: bool) {
        if (s.stx_uid, s.stx_gid) != (d.stx_uid, d.stx_gid) {
            self.differ_as(
                Kind::Owner,
                rel,
                format!("{}:{}", s.stx_uid, s.stx_gid),
                format!("{}:{}", d.stx_uid, d.stx_gid),
                mount_point,
            );
        }
        if copy::file_type(s) != FileType::Symlink && (s.stx_mode & 0o7777) != (d.stx_mode & 0o7777) {
            self.differ_as(
                Kind::Mode,
                rel,
                format!("{:04o}", s.stx_mode & 0o7777),
                format!("{:04o}", d.stx_mode & 0o7777),
                mount_point,
            );
        }
        if copy::mtime(s) != copy::mtime(d) {
            let t = |x: (i64, u32)| format!("{}.{:09}", x.0, x.1);
            self.differ_as(Kind::Times, rel, t(copy::mtime(s)), t(copy::mtime(d)), mount_point);
        }
    }

    /// xattrs and ACLs, by path (symlinks included).
    fn xattrs(&self, rel: &Path) {
        let a = copy::read_xattrs(&XTarget::Path(self.src.join(rel)));
        let b = copy::read_xattrs(&XTarget::Path(self.dst.join(rel)));
        let (Ok(a), Ok(b)) = (a, b) else {
            return self.unreadable(rel, "xattrs of source or clone", Errno::IO);
        };
        let is_acl = |n: &CString| n.as_bytes().starts_with(b"system.posix_acl_");
        let names = |v: &[(CString, Vec<u8>)], acl: bool| -> Vec<(CString, Vec<u8>)> {
            v.iter().filter(|(n, _)| is_acl(n) == acl).cloned().collect()
        };
        for (acl, kind) in [(false, Kind::Xattrs), (true, Kind::Acls)] {
            let (x, y) = (names(&a, acl), names(&b, acl));
            if x != y {
                let show =
                    |v: &[(CString, Vec<u8>)]| v.iter().map(|(n, _)| n.to_string_lossy()).collect::<Vec<_>>().join(",");
                self.differ(kind, rel, show(&x), show(&y));
            }
        }
    }

    fn flags(&self, rel: &Path, sfd: &OwnedFd, dfd: &OwnedFd, name: &CStr) {
        let open = |dir: &OwnedFd| {
            rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOATIME,
                Mode::empty(),
            )
            .or_else(|_| {
                rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            })
        };
        if let (Ok(a), Ok(b)) = (open(sfd), open(dfd)) {
            let (x, y) = (copy::inode_flags(&a), copy::inode_flags(&b));
            if x != y {
                self.differ(Kind::Flags, rel, format!("{:#x}", x.bits()), format!("{:#x}", y.bits()));
            }
        }
    }

    /// Hard links: the same link count, and the paths of one source inode on one clone inode.
    fn links(&self, rel: &Path, s: &Statx, d: &Statx) {
        if s.stx_nlink != d.stx_nlink {
            self.differ(Kind::Links, rel, format!("{} links", s.stx_nlink), format!("{} links", d.stx_nlink));
        }
        if s.stx_nlink > 1 {
            let key = (copy::dev_of(s), s.stx_ino);
            let mut l = self.links.lock().unwrap_or_else(|p| p.into_inner());
            match l.get_mut(&key) {
                Some((ino, left)) => {
                    let other = *ino != d.stx_ino;
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        l.remove(&key);
                    }
                    drop(l);
                    if other {
                        self.differ(Kind::Links, rel, "a hard link".into(), "a separate file".into());
                    }
                }
                None => {
                    l.insert(key, (d.stx_ino, s.stx_nlink - 1));
                }
            }
        }
    }

    /// Read both files and compare their hashes.
    fn data(&self, rel: &Path, s: &Statx, _d: &Statx, buf: &mut [u8]) {
        let path = |root: &Path| CString::new(root.join(rel).into_os_string().into_vec()).unwrap_or_default();
        let a = copy::open_file(rustix::fs::CWD, &path(self.src));
        let b = copy::open_file(rustix::fs::CWD, &path(self.dst));
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(Errno::NOENT), _) => return,
            (Err(e), _) => return self.unreadable(rel, "source", e),
            (_, Err(e)) => return self.unreadable(rel, "clone", e),
        };
        let (x, y) = match (hash(&a, s.stx_size, buf, self.job), hash(&b, s.stx_size, buf, self.job)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) => return self.unreadable(rel, "source", e),
            (_, Err(e)) => return self.unreadable(rel, "clone", e),
        };
        self.c.files.fetch_add(1, Ordering::Relaxed);
        self.c.bytes.fetch_add(s.stx_size * 2, Ordering::Relaxed);
        self.gate.add(0, s.stx_size * 2);
        if x != y {
            self.differ(Kind::Content, rel, format!("xxh3 {x:032x}"), format!("xxh3 {y:032x}"));
        }
    }
}

/// xxh3-128 of the first `size` bytes of a file.
fn hash(f: &OwnedFd, size: u64, buf: &mut [u8], job: &Job) -> rustix::io::Result<u128> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut off = 0u64;
    while off < size {
        let want = ((size - off).min(buf.len() as u64)) as usize;
        let n = copy::read_full(f, &mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        off += n as u64;
        job.add_bytes(n as u64 / 2);
    }
    Ok(h.digest128())
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "unknown",
    }
}

/// The report as text: one line per difference, then a summary.
pub fn render(r: &VerifyReport) -> String {
    let mut s = String::new();
    for d in &r.list {
        let tag = if d.expected { "expected" } else { "DIFFERS" };
        let detail = if d.source.is_empty() && d.clone.is_empty() {
            String::new()
        } else {
            format!(" (source {}, clone {})", or_dash(&d.source), or_dash(&d.clone))
        };
        s.push_str(&format!("{tag:8} {:10} {}{detail}\n", d.kind.as_str(), d.path));
    }
    let by: Vec<String> = r.differences.iter().map(|(k, n)| format!("{n} {}", k.as_str())).collect();
    s.push_str(&format!(
        "{} {} {} ({} entries, {} files hashed, {} read, {:.1} s): {}{}\n",
        r.clone,
        if r.equal { "equals" } else { "differs from" },
        r.source,
        r.entries,
        r.files_hashed,
        crate::size::human(r.bytes_hashed),
        r.seconds,
        if r.equal { "no differences".to_string() } else { format!("{} differences: {}", r.unexpected, by.join(", ")) },
        if r.expected > 0 { format!("; {} expected (altdisk's own changes)", r.expected) } else { String::new() },
    ));
    s
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_paths() {
        let e = Expected::new(true);
        assert!(e.is("/etc/fstab", Kind::Content));
        assert!(e.is("/etc/altdisk/bootenv.json", Kind::Content));
        assert!(e.is("/etc", Kind::Times));
        assert!(!e.is("/etc", Kind::Owner));
        assert!(!e.is("/etc/fstab.bak", Kind::Content));
        assert!(e.is("/boot/initrd.img-6.1.0-9-amd64", Kind::Content));
        assert!(e.is("/boot/grub/grub.cfg", Kind::Content));
        assert!(!e.is("/boot/vmlinuz-6.1.0-9-amd64", Kind::Content));
        assert!(!e.is("/", Kind::Times));
        let n = Expected::new(false);
        assert!(!n.is("/boot/grub/grub.cfg", Kind::Content), "boot files are expected only after phase 3");
    }
}
