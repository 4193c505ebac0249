//! The file copy engine: copies one mounted filesystem tree into another, file by file,
//! never crossing into another mount, keeping everything a root system depends on; or, in
//! update mode, brings a copy made earlier back in line with its source, writing only what
//! differs.
//!
//! Promises: regular files with their holes (sparse stays sparse), hard links, symlinks
//! with their own times, device nodes, fifos, numeric owners, modes with setuid/setgid/
//! sticky, nanosecond times (a directory's set after its contents), every xattr (user,
//! trusted, security: capabilities, SELinux labels; system: POSIX ACLs), inode flags
//! (immutable, append-only, nodump, noatime, nocow: set last, nocow first), and btrfs
//! subvolumes (recreated as subvolumes when the target is btrfs). Sockets are skipped and
//! counted. Entries matching the exclude list are not copied; a directory that matches is
//! skipped with its whole subtree.
//!
//! Update mode ([`Update`]) leaves the target as a fresh copy would be, path by path: new
//! entries are made, entries the source no longer has (or excludes) are deleted, an entry
//! whose type changed is replaced. A file's data is rewritten when its size or mtime differs
//! (or, with `checksum`, its bytes); its metadata is set only where it differs: owner, mode
//! and times always compared, xattrs, ACLs and inode flags when the source's inode changed
//! after the target's was written (ctime), or when the data was rewritten. Hard links follow
//! the source: links made are made, links broken are broken (a target inode is kept in place
//! for at most one group of source links; any other path sharing it gets a copy of its own).
//! Immutable and append-only targets are unlocked to be changed and locked again. Nothing is
//! deleted across a mount point of the target, and `lost+found` at the root of a target
//! filesystem stays.
//!
//! How: a pool of worker threads takes directories from a shared stack (depth first, so
//! pending work stays proportional to depth, not to the tree); how many of them work at a
//! time adapts to the machine ([`crate::write::workers`]). A worker lists a directory,
//! creates its entries, copies small files itself and queues large files and
//! subdirectories. Each directory is a reference-counted node held by its queued children;
//! when the last child is done the node drops and sets the directory's metadata, so times
//! are right without keeping a list of every directory. The only whole-tree state is the
//! hard-link table, holding one entry per multiply-linked inode whose links are not all
//! seen yet.
//!
//! Order of metadata per entry: create, data, owner (chown clears capabilities and
//! setuid bits), xattrs, mode, times, flags.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rustix::fs::{AtFlags, FileType, IFlags, Mode, OFlags, Statx, StatxAttributes, StatxFlags, Timestamps, CWD};
use rustix::io::Errno;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{Event, Job};
use crate::write::exclude::ExcludeList;
use crate::write::workers::Gate;

/// Files at least this large are queued as their own task so big files copy in parallel.
const LARGE_FILE: u64 = 1 << 20;
const BUF_SIZE: usize = 1 << 20;
/// How many changed or failed paths are kept by name (the rest are counted).
const KEEP_NAMES: usize = 200;
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
const MSDOS_SUPER_MAGIC: i64 = 0x4d44;
/// Inode number of a btrfs subvolume's root directory.
const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;

/// Inode flags that mean something to the user and carry over between filesystems.
pub(crate) fn copyable_flags() -> IFlags {
    IFlags::IMMUTABLE
        | IFlags::APPEND
        | IFlags::NODUMP
        | IFlags::NOATIME
        | IFlags::SYNC
        | IFlags::DIRSYNC
        | IFlags::NOCOW
}

/// Update mode: the target holds a copy made earlier, to be brought in line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Update {
    /// Decide whether a file's data changed by comparing its bytes, not its size and mtime.
    pub checksum: bool,
    /// When the target was last brought in line (nanoseconds since 1970): a target entry
    /// whose inode changed later was touched since (in the awake clone, by phase 2 or 3), and
    /// is compared closely, as one whose source inode changed after its copy was written.
    /// None: only the source's changes are looked for.
    pub since: Option<i64>,
}

/// Update mode, when the source's changes were tracked since the target was last brought in
/// line ([`crate::discover::changes`]): the directories whose entries, or whose own status,
/// changed (relative to the source root, "" for the root). Only these are compared, and the
/// directories above them passed through; the rest of the tree is taken as unchanged. A
/// multiply-linked file whose name was made since (a new link, or a link moved there) may
/// share its inode with files in directories not walked: the copy then says so
/// ([`CopyStats::links_unsure`]) and the caller walks the whole tree. A name not made since
/// names the inode it named at the last copy, whose other links are where they were or in
/// directories that changed.
#[derive(Debug, Default)]
pub struct Changed {
    dirs: HashSet<PathBuf>,
    /// Of those, the ones where only some entries changed: their names. The others are
    /// compared whole.
    only: HashMap<PathBuf, Vec<CString>>,
    /// Names made since, relative to the root.
    made: HashSet<PathBuf>,
    /// Directory → the names below it that lead to a changed directory.
    below: HashMap<PathBuf, Vec<CString>>,
}

impl Changed {
    /// `dirs`: each changed directory with the names of the entries that changed in it, or
    /// None to compare its whole list; `made`: paths of files made since (new names).
    pub fn new(
        dirs: impl IntoIterator<Item = (PathBuf, Option<Vec<std::ffi::OsString>>)>,
        made: impl IntoIterator<Item = PathBuf>,
    ) -> Changed {
        let normal = |d: PathBuf| -> PathBuf {
            d.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect()
        };
        let mut c = Changed { made: made.into_iter().map(normal).collect(), ..Changed::default() };
        let mut whole = HashSet::new();
        for (d, names) in dirs {
            let d = normal(d);
            match names {
                None => {
                    whole.insert(d.clone());
                }
                Some(n) => {
                    let list = c.only.entry(d.clone()).or_default();
                    for name in n {
                        let name = CString::new(name.into_vec()).unwrap_or_default();
                        if !name.is_empty() && !list.contains(&name) {
                            list.push(name);
                        }
                    }
                }
            }
            let mut here = d.clone();
            while let (Some(name), Some(up)) =
                (here.file_name().map(|n| n.to_owned()), here.parent().map(Path::to_path_buf))
            {
                let names = c.below.entry(up.clone()).or_default();
                let name = CString::new(name.as_bytes()).unwrap_or_default();
                if names.contains(&name) {
                    break;
                }
                names.push(name);
                here = up;
            }
            c.dirs.insert(d);
        }
        // A directory reported whole once is compared whole.
        c.only.retain(|d, _| !whole.contains(d));
        c
    }

    /// How many directories changed.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    fn compares(&self, rel: &Path) -> bool {
        self.dirs.contains(rel)
    }

    fn leads(&self, rel: &Path) -> bool {
        self.below.contains_key(rel)
    }
}

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Worker threads; 0 means adapt to this machine ([`crate::write::workers`]).
    pub threads: usize,
    pub exclude: Arc<ExcludeList>,
    /// The `./path` form of the source root in the whole system ("." for the root
    /// filesystem, "./home" for /home), so exclude patterns see full paths.
    pub rel_prefix: String,
    /// Report files whose size or times changed while they were copied (live copies).
    pub detect_changes: bool,
    /// Files never to copy, by (st_dev, st_ino): image files the clone is being written to.
    pub skip: Arc<HashSet<(u64, u64)>>,
    /// Copy btrfs snapshots nested in the tree too (by default they are left out).
    pub keep_snapshots: bool,
    /// Bring an earlier copy in line instead of copying into an empty tree.
    pub update: Option<Update>,
    /// Update mode: entries of the target (in the `./path` form) that stay when the source
    /// does not have them: what the clone holds of its own.
    pub keep: Arc<Vec<String>>,
    /// Update mode: only these directories of the source changed (tracked); None: walk
    /// everything.
    pub changed: Option<Arc<Changed>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            threads: 0,
            exclude: Arc::new(ExcludeList::empty()),
            rel_prefix: ".".into(),
            detect_changes: true,
            skip: Arc::default(),
            keep_snapshots: false,
            update: None,
            keep: Arc::default(),
            changed: None,
        }
    }
}

/// What a copy did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    pub sockets_skipped: u64,
    pub excluded: u64,
    pub mount_points: u64,
    pub subvolumes: u64,
    /// btrfs snapshots left out (snapper's numbered directories count as one each).
    pub snapshots_skipped: u64,
    pub bytes: u64,
    pub sparse_files: u64,
    pub changed_count: u64,
    pub changed: Vec<String>,
    pub vanished: u64,
    pub error_count: u64,
    pub errors: Vec<String>,
    /// Metadata that the target filesystem cannot hold (vfat: owners, xattrs), counted.
    pub metadata_dropped: u64,
    /// Update mode: entries found equal and left alone.
    pub unchanged: u64,
    /// Update mode: entries whose data (or symlink target, or device number) was rewritten,
    /// or that were replaced by another type.
    pub rewritten: u64,
    /// Update mode: entries whose metadata alone was set.
    pub metadata_only: u64,
    /// Update mode: entries deleted because the source no longer has them.
    pub deleted: u64,
    /// Fewest and most worker threads that worked at a time.
    pub workers: (usize, usize),
    /// Update mode with [`Changed`]: a multiply-linked file was met, whose other links may
    /// be in directories not walked; only a walk of the whole tree brings its links in line.
    pub links_unsure: bool,
}

impl CopyStats {
    /// Add another filesystem's figures.
    pub fn add(&mut self, s: CopyStats) {
        self.files += s.files;
        self.dirs += s.dirs;
        self.symlinks += s.symlinks;
        self.hardlinks += s.hardlinks;
        self.specials += s.specials;
        self.sockets_skipped += s.sockets_skipped;
        self.excluded += s.excluded;
        self.mount_points += s.mount_points;
        self.subvolumes += s.subvolumes;
        self.snapshots_skipped += s.snapshots_skipped;
        self.bytes += s.bytes;
        self.sparse_files += s.sparse_files;
        self.changed_count += s.changed_count;
        self.changed.extend(s.changed);
        self.vanished += s.vanished;
        self.error_count += s.error_count;
        self.errors.extend(s.errors);
        self.metadata_dropped += s.metadata_dropped;
        self.unchanged += s.unchanged;
        self.rewritten += s.rewritten;
        self.metadata_only += s.metadata_only;
        self.deleted += s.deleted;
        self.workers = match self.workers {
            (0, 0) => s.workers,
            (lo, hi) => (lo.min(s.workers.0), hi.max(s.workers.1)),
        };
    }
}

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    hardlinks: AtomicU64,
    specials: AtomicU64,
    sockets: AtomicU64,
    excluded: AtomicU64,
    mount_points: AtomicU64,
    subvolumes: AtomicU64,
    snapshots: AtomicU64,
    bytes: AtomicU64,
    sparse: AtomicU64,
    vanished: AtomicU64,
    dropped: AtomicU64,
    unchanged: AtomicU64,
    rewritten: AtomicU64,
    metadata_only: AtomicU64,
    deleted: AtomicU64,
    links_unsure: AtomicBool,
}

#[derive(Default)]
struct Named {
    count: u64,
    names: Vec<String>,
}

impl Named {
    fn push(&mut self, s: String) {
        self.count += 1;
        if self.names.len() < KEEP_NAMES {
            self.names.push(s);
        }
    }
}

/// A group of hard links met in the source, until all its links are seen.
struct Link {
    /// The first path of the group at the target, relative to its root.
    rel: PathBuf,
    /// Its inode at the target.
    dst_ino: u64,
    /// Links of the source inode not seen yet.
    left: u32,
}

#[derive(Default)]
struct Links {
    /// By source (device, inode).
    groups: HashMap<(u64, u64), Link>,
    /// Update mode: target inodes with several links, kept in place for one source group.
    claimed: HashMap<u64, (u64, u64)>,
}

struct Shared {
    src_root: PathBuf,
    dst_root: PathBuf,
    src_mnt_id: u64,
    src_btrfs: bool,
    dst_btrfs: bool,
    /// vfat and the like: no owners, modes, xattrs or flags.
    dst_lossy: bool,
    opts: CopyOptions,
    job: Job,
    gate: Gate,
    abort: AtomicBool,
    fatal: Mutex<Option<Error>>,
    errors: Mutex<Named>,
    changed: Mutex<Named>,
    links: Mutex<Links>,
    c: Counters,
    cfr_works: AtomicBool,
}

/// The work queue, apart from [`Shared`] so that queued nodes (which hold `Shared`) do not
/// form a cycle with it.
struct Pool {
    queue: Mutex<Queue>,
    /// Workers the gate lets work wait here for a task.
    wake: Condvar,
    /// Parked workers wait here, so a task's wake-up never goes to one that may not take it.
    park: Condvar,
}

struct Queue {
    tasks: Vec<Task>,
    active: usize,
}

enum Task {
    Dir(Arc<DirNode>),
    /// A large file; in update mode with the target's status when it exists.
    File {
        parent: Arc<DirNode>,
        name: CString,
        st: Box<(Statx, Option<Statx>)>,
    },
}

/// A directory being copied. Dropped when it and everything below it is done, at which
/// point its metadata is applied to the copy.
struct DirNode {
    shared: Arc<Shared>,
    rel: PathBuf,
    st: Statx,
    /// Update mode: the target directory's status before this run changed it; None when
    /// this run made it.
    before: Option<Statx>,
    /// Compare xattrs and flags too (the target was unlocked, or the source changed).
    full: bool,
    _parent: Option<Arc<DirNode>>,
}

impl Drop for DirNode {
    fn drop(&mut self) {
        let s = &self.shared;
        if s.abort.load(Ordering::Relaxed) {
            return;
        }
        let src = s.src_root.join(&self.rel);
        let dst = s.dst_root.join(&self.rel);
        let r = (|| -> std::result::Result<(), (String, Errno)> {
            let dfd = open_dir(&dst).map_err(|e| ("opening the copied directory".to_string(), e))?;
            let sfd = open_dir(&src).ok();
            match &self.before {
                Some(before) => {
                    let now = statx_fd(&dfd).map_err(|e| ("reading its status".to_string(), e))?;
                    let since = s.opts.update.and_then(|u| u.since);
                    let full = self.full || suspect(&self.st, before, since);
                    s.sync_meta(sfd.as_ref().map(|f| f.as_fd()), &dfd, &self.st, &now, full, true).map(|_| ())
                }
                None => s.finish_fd(sfd.as_ref().map(|f| f.as_fd()), &dfd, &self.st, true),
            }
        })();
        if let Err((what, e)) = r {
            s.error(&self.rel, &what, e);
        }
    }
}

fn is_type(st: &Statx, t: FileType) -> bool {
    FileType::from_raw_mode(st.stx_mode as u32) == t
}

pub(crate) fn file_type(st: &Statx) -> FileType {
    FileType::from_raw_mode(st.stx_mode as u32)
}

fn mode_bits(st: &Statx) -> Mode {
    Mode::from_raw_mode(st.stx_mode as u32 & 0o7777)
}

pub(crate) fn mtime(st: &Statx) -> (i64, u32) {
    (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec)
}

fn ctime(st: &Statx) -> (i64, u32) {
    (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec)
}

/// The source's inode changed after the target's was last written.
fn newer(src: &Statx, dst: &Statx) -> bool {
    ctime(src) > ctime(dst)
}

/// Whether the entry (target status `d`, source `s`) may differ in ways its size, mtime,
/// owner and mode do not show: its source inode changed after the copy was written, or the
/// copy was changed after the last sync.
fn suspect(s: &Statx, d: &Statx, since: Option<i64>) -> bool {
    // Inode times come from a coarse clock that may lag the one `since` was read from by a
    // tick: entries written in the last moments of the sync count as touched after it.
    const TICK: i64 = 50_000_000;
    let ctime = d.stx_ctime.tv_sec.saturating_mul(1_000_000_000).saturating_add(d.stx_ctime.tv_nsec as i64);
    newer(s, d) || since.is_some_and(|t| ctime > t.saturating_sub(TICK))
}

/// A copy that takes far more room than its source: the holes were filled in.
fn filled(s: &Statx, d: &Statx) -> bool {
    d.stx_blocks > s.stx_blocks + 64 && d.stx_blocks > s.stx_blocks * 2
}

/// Immutable or append-only: must be unlocked before it (or its entries) can change.
fn locked(st: &Statx) -> bool {
    st.stx_attributes.intersects(StatxAttributes::IMMUTABLE | StatxAttributes::APPEND)
}

fn timestamps(st: &Statx) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: st.stx_atime.tv_sec, tv_nsec: st.stx_atime.tv_nsec as _ },
        last_modification: rustix::fs::Timespec { tv_sec: st.stx_mtime.tv_sec, tv_nsec: st.stx_mtime.tv_nsec as _ },
    }
}

pub(crate) fn statx_at(dirfd: impl AsFd, name: &CStr) -> rustix::io::Result<Statx> {
    rustix::fs::statx(dirfd, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)
}

pub(crate) fn statx_fd(fd: impl AsFd) -> rustix::io::Result<Statx> {
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)
}

pub(crate) fn dev_of(st: &Statx) -> u64 {
    rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor)
}

fn ioerr(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

/// Errors on the target that make going on pointless.
fn is_fatal(e: Errno) -> bool {
    matches!(e, Errno::NOSPC | Errno::ROFS | Errno::IO | Errno::DQUOT)
}

impl Shared {
    fn error(&self, rel: &Path, what: &str, e: Errno) {
        let msg = format!("{}: {what}: {}", self.show(rel), ioerr(e));
        if is_fatal(e) {
            let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            if f.is_none() {
                *f = Some(Error::io(what.to_string(), self.dst_root.join(rel), ioerr(e)));
            }
            self.abort.store(true, Ordering::SeqCst);
            return;
        }
        tracing::warn!("{msg}");
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
    }

    /// The `./path` form of an entry, as exclude lists and `-V` see it.
    fn show(&self, rel: &Path) -> String {
        if rel.as_os_str().is_empty() {
            return self.opts.rel_prefix.clone();
        }
        let mut s = self.opts.rel_prefix.clone();
        s.push('/');
        s.push_str(&rel.to_string_lossy());
        s
    }

    fn vanished(&self, rel: &Path) {
        self.c.vanished.fetch_add(1, Ordering::Relaxed);
        self.changed.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{} (vanished)", self.show(rel)));
    }
}

impl Pool {
    fn push(&self, t: Task) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).tasks.push(t);
        self.wake.notify_one();
    }
}

impl Shared {
    fn worker(self: &Arc<Self>, pool: &Pool, me: usize) {
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            let task = {
                let mut q = pool.queue.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if self.abort.load(Ordering::Relaxed) {
                        // Drop what is queued so nodes release; they skip their metadata.
                        q.tasks.clear();
                    }
                    if q.active == 0 && q.tasks.is_empty() {
                        break None;
                    }
                    // A parked worker takes nothing until the gate lets it.
                    let cv = if self.gate.may_work(me) {
                        if let Some(t) = q.tasks.pop() {
                            q.active += 1;
                            break Some(t);
                        }
                        &pool.wake
                    } else {
                        &pool.park
                    };
                    q = cv.wait_timeout(q, std::time::Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
                }
            };
            let Some(task) = task else {
                pool.wake.notify_all();
                pool.park.notify_all();
                return;
            };
            if self.job.is_cancelled() {
                self.abort.store(true, Ordering::SeqCst);
            }
            if !self.abort.load(Ordering::Relaxed) {
                match task {
                    Task::Dir(node) => self.list_dir(pool, node, &mut buf),
                    Task::File { parent, name, st } => {
                        let rel = parent.rel.join(OsStr::from_bytes(name.to_bytes()));
                        let sdir = self.src_root.join(&parent.rel);
                        let ddir = self.dst_root.join(&parent.rel);
                        match (open_dir(&sdir), open_dir(&ddir)) {
                            (Ok(s), Ok(d)) => self.entry(&s, &d, &name, &rel, &st.0, st.1.as_ref(), &mut buf),
                            (Err(e), _) | (_, Err(e)) => self.error(&rel, "opening its directory", e),
                        }
                        drop(parent);
                    }
                }
            }
            let mut q = pool.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.active -= 1;
            if q.active == 0 && q.tasks.is_empty() {
                pool.wake.notify_all();
                pool.park.notify_all();
            }
        }
    }

    fn list_dir(self: &Arc<Self>, pool: &Pool, node: Arc<DirNode>, buf: &mut [u8]) {
        let sdir = self.src_root.join(&node.rel);
        let ddir = self.dst_root.join(&node.rel);
        let (sfd, dfd) = match (open_dir(&sdir), open_dir(&ddir)) {
            (Ok(s), Ok(d)) => (s, d),
            (Err(e), _) => return self.error(&node.rel, "opening the directory", e),
            (_, Err(e)) => return self.error(&node.rel, "opening the copied directory", e),
        };
        // Update mode with tracked changes: a directory that did not change itself is only
        // passed through, to the changed ones below it.
        // Or, where only some entries of it changed, those (and the way to changed ones
        // below), a name the source no longer has deleted from the copy.
        let tracked = self.opts.update.is_some() && node.before.is_some();
        let (passed, some) = match (&self.opts.changed, tracked) {
            (Some(c), true) if !c.compares(&node.rel) => {
                (Some(c.below.get(&node.rel).cloned().unwrap_or_default()), false)
            }
            (Some(c), true) => match c.only.get(&node.rel) {
                Some(names) => {
                    let mut n = names.clone();
                    for b in c.below.get(&node.rel).into_iter().flatten() {
                        if !n.contains(b) {
                            n.push(b.clone());
                        }
                    }
                    (Some(n), true)
                }
                None => (None, false),
            },
            _ => (None, false),
        };
        let here = if some { statx_fd(&dfd).ok() } else { None };
        // Update mode: what the target directory holds; what is left at the end goes.
        let mut left: Option<HashSet<CString>> = None;
        if self.opts.update.is_some() && node.before.is_some() && passed.is_none() {
            match read_names(&dfd) {
                Ok(n) => left = Some(n),
                Err(e) => return self.error(&node.rel, "reading the copied directory", e),
            }
        }
        let names: Box<dyn Iterator<Item = rustix::io::Result<CString>>> = match passed {
            Some(names) => {
                // Its own copy of each (not in `left`): taken from the target as it is.
                Box::new(names.into_iter().map(Ok))
            }
            None => match rustix::fs::Dir::read_from(&sfd) {
                Ok(d) => Box::new(d.map(|e| e.map(|e| e.file_name().to_owned()))),
                Err(e) => return self.error(&node.rel, "reading the directory", e),
            },
        };
        let passing = left.is_none() && self.opts.changed.is_some() && node.before.is_some() && !some;
        for ent in names {
            if self.abort.load(Ordering::Relaxed) {
                return;
            }
            let ent = match ent {
                Ok(e) => e,
                Err(e) => return self.error(&node.rel, "reading the directory", e),
            };
            let name = ent.as_c_str();
            if name == c"." || name == c".." {
                continue;
            }
            let rel = node.rel.join(OsStr::from_bytes(name.to_bytes()));
            if !self.opts.exclude.is_empty() && self.opts.exclude.is_excluded(&self.show(&rel)) {
                self.c.excluded.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let st = match statx_at(&sfd, name) {
                Ok(st) => st,
                // A name that changed and is gone: deleted from the copy too.
                Err(Errno::NOENT) if some => {
                    let keep = (!self.opts.keep.is_empty() && self.opts.keep.contains(&self.show(&rel)))
                        || (name == c"lost+found"
                            && here.is_some_and(|h| h.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)));
                    if !keep && statx_at(&dfd, name).is_ok() {
                        self.delete(&dfd, name, &rel, here.map(|h| h.stx_mnt_id));
                    }
                    continue;
                }
                Err(Errno::NOENT) => {
                    self.vanished(&rel);
                    continue;
                }
                Err(e) => {
                    self.error(&rel, "reading its status", e);
                    continue;
                }
            };
            if !self.opts.skip.is_empty() && self.opts.skip.contains(&(dev_of(&st), st.stx_ino)) {
                self.c.excluded.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if is_type(&st, FileType::Socket) {
                // A socket is a rendezvous of a running program, meaningless in a copy.
                self.c.sockets.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if is_type(&st, FileType::Directory) && self.is_snapshot_entry(&sfd, name, &rel, &st) {
                self.c.snapshots.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if passing && !is_type(&st, FileType::Directory) {
                // Named as a directory on the way to a changed one, now something else: the
                // directory above changed too, and compares it.
                continue;
            }
            // The target's entry of that name, in update mode.
            let there = passing || some || left.as_mut().is_some_and(|l| l.remove(name));
            let dst = if there {
                match statx_at(&dfd, name) {
                    Ok(d) => Some(d),
                    Err(Errno::NOENT) => None,
                    Err(e) => {
                        self.error(&rel, "reading the status of its copy", e);
                        continue;
                    }
                }
            } else {
                None
            };
            if is_type(&st, FileType::Directory) {
                self.make_dir(pool, &node, &dfd, name, rel, st, dst);
            } else if is_type(&st, FileType::RegularFile) && st.stx_size >= LARGE_FILE && st.stx_nlink == 1 {
                pool.push(Task::File { parent: node.clone(), name: name.to_owned(), st: Box::new((st, dst)) });
            } else {
                self.entry(&sfd, &dfd, name, &rel, &st, dst.as_ref(), buf);
            }
        }
        if let Some(left) = left {
            let here = statx_fd(&dfd).ok();
            for name in left {
                if name.as_c_str() == c"lost+found"
                    && here.is_some_and(|h| h.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
                {
                    // The target filesystem's own.
                    continue;
                }
                let rel = node.rel.join(OsStr::from_bytes(name.to_bytes()));
                if !self.opts.keep.is_empty() && self.opts.keep.contains(&self.show(&rel)) {
                    continue;
                }
                self.delete(&dfd, &name, &rel, here.map(|h| h.stx_mnt_id));
            }
        }
    }

    /// A btrfs snapshot nested in the tree, left out unless asked: a subvolume that has a
    /// parent (snapper's, timeshift's, a received backup), or snapper's numbered directory
    /// around one (`.snapshots/N`: its info.xml would name a snapshot that is not there).
    fn is_snapshot_entry(&self, sfd: &OwnedFd, name: &CStr, rel: &Path, st: &Statx) -> bool {
        if self.opts.keep_snapshots || !self.src_btrfs || st.stx_mnt_id != self.src_mnt_id {
            return false;
        }
        let open = |dir: &OwnedFd, n: &CStr| {
            rustix::fs::openat(
                dir,
                n,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()
        };
        if st.stx_ino == BTRFS_FIRST_FREE_OBJECTID {
            return open(sfd, name).is_some_and(crate::discover::btrfs::is_snapshot);
        }
        let shown = self.show(rel);
        let numbered = name.to_bytes().iter().all(u8::is_ascii_digit)
            && Path::new(&shown).parent().and_then(|p| p.file_name()) == Some(OsStr::new(".snapshots"));
        numbered
            && open(sfd, name).is_some_and(|d| {
                statx_at(&d, c"snapshot").is_ok_and(|s| s.stx_ino == BTRFS_FIRST_FREE_OBJECTID)
                    && open(&d, c"snapshot").is_some_and(crate::discover::btrfs::is_snapshot)
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn make_dir(
        self: &Arc<Self>,
        pool: &Pool,
        parent: &Arc<DirNode>,
        dfd: &OwnedFd,
        name: &CStr,
        rel: PathBuf,
        st: Statx,
        dst: Option<Statx>,
    ) {
        let mount_point = st.stx_mnt_id != self.src_mnt_id;
        let subvol = !mount_point && self.src_btrfs && st.stx_ino == BTRFS_FIRST_FREE_OBJECTID;
        // Update mode: a directory there is kept (and unlocked if it is immutable); anything
        // else of that name goes.
        let mut before = None;
        let mut full = false;
        match dst {
            Some(d) if is_type(&d, FileType::Directory) => {
                if locked(&d) {
                    if let Err(e) = unlock_at(dfd, name) {
                        return self.error(&rel, "unlocking its immutable copy", e);
                    }
                    full = true;
                }
                before = Some(d);
            }
            Some(d) if !self.remove(dfd, name, &rel, &d) => return,
            _ => {}
        }
        if before.is_none() {
            let made = if subvol && self.dst_btrfs {
                btrfs_subvol_create(dfd, name).map(|()| {
                    self.c.subvolumes.fetch_add(1, Ordering::Relaxed);
                })
            } else {
                rustix::fs::mkdirat(dfd, name, Mode::from_raw_mode(0o700))
            };
            match made {
                Ok(()) => {}
                // lost+found exists in a fresh ext4.
                Err(Errno::EXIST) if statx_at(dfd, name).map(|s| is_type(&s, FileType::Directory)).unwrap_or(false) => {
                }
                Err(e) => return self.error(&rel, "creating the directory", e),
            }
            if self.opts.update.is_some() {
                self.c.rewritten.fetch_add(1, Ordering::Relaxed);
                self.listed(&rel);
            }
        }
        self.c.dirs.fetch_add(1, Ordering::Relaxed);
        self.job.add_file();
        self.gate.add(1, 0);
        if self.opts.update.is_none() {
            self.listed(&rel);
        }
        let unchanged_below =
            before.is_some() && self.opts.changed.as_ref().is_some_and(|c| !c.compares(&rel) && !c.leads(&rel));
        if unchanged_below && !mount_point {
            // Tracked: nothing below it changed. Its own status is compared, not its entries.
            let r = rustix::fs::openat(dfd, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ("opening the copied directory".to_string(), e))
                .and_then(|d| {
                    let src = open_dir(&self.src_root.join(&rel)).ok();
                    let b = before.as_ref().expect("checked above");
                    self.sync_meta(src.as_ref().map(|f| f.as_fd()), &d, &st, b, full, true).map(|_| ())
                });
            if let Err((what, e)) = r {
                self.error(&rel, &what, e);
            }
            return;
        }
        if mount_point {
            // Another filesystem is mounted here: the copy gets an empty mount point with the
            // visible directory's metadata, and is not entered.
            self.c.mount_points.fetch_add(1, Ordering::Relaxed);
            let r = rustix::fs::openat(dfd, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ("opening the mount point".to_string(), e))
                .and_then(|d| match &before {
                    Some(b) => self.sync_meta(None, &d, &st, b, full, false).map(|_| ()),
                    None => self.finish_fd(None, &d, &st, false),
                });
            if let Err((what, e)) = r {
                self.error(&rel, &what, e);
            }
            return;
        }
        pool.push(Task::Dir(Arc::new(DirNode {
            shared: self.clone(),
            rel,
            st,
            before,
            full,
            _parent: Some(parent.clone()),
        })));
    }

    /// `-V`: name an entry copied (or, in update mode, changed).
    fn listed(&self, rel: &Path) {
        if self.job.list_files() {
            self.job.emit(Event::Copied { path: self.show(rel) });
        }
    }

    /// One entry that is not a directory: copy it, or in update mode bring its copy in line.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        sfd: &OwnedFd,
        dfd: &OwnedFd,
        name: &CStr,
        rel: &Path,
        st: &Statx,
        dst: Option<&Statx>,
        buf: &mut [u8],
    ) {
        self.job.set_current(rel);
        let ft = file_type(st);
        let update = self.opts.update.is_some();
        if st.stx_nlink > 1 {
            if update && self.opts.changed.as_ref().is_some_and(|c| c.made.contains(rel)) {
                self.c.links_unsure.store(true, Ordering::Relaxed);
            }
            let key = (dev_of(st), st.stx_ino);
            let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = links.groups.get_mut(&key) {
                let (first, ino) = (self.dst_root.join(&l.rel), l.dst_ino);
                l.left = l.left.saturating_sub(1);
                if l.left == 0 {
                    links.groups.remove(&key);
                }
                drop(links);
                if dst.is_some_and(|d| d.stx_ino == ino) {
                    self.unchanged(0);
                    return;
                }
                if let Some(d) = dst {
                    if !self.remove(dfd, name, rel, d) {
                        return;
                    }
                }
                match rustix::fs::linkat(CWD, &first, dfd, name, AtFlags::empty()) {
                    Ok(()) => {
                        self.c.hardlinks.fetch_add(1, Ordering::Relaxed);
                        if update {
                            self.c.rewritten.fetch_add(1, Ordering::Relaxed);
                        }
                        self.done_entry(rel, 0);
                    }
                    Err(e) => self.error(rel, "making the hard link", e),
                }
                return;
            }
            // The first link of its group: its copy is kept in place when it is of the same
            // type and no other group of source links holds it.
            let keep = dst.filter(|d| {
                file_type(d) == ft && (d.stx_nlink == 1 || links.claimed.get(&d.stx_ino).is_none_or(|k| *k == key))
            });
            if let Some(d) = keep {
                if d.stx_nlink > 1 {
                    links.claimed.insert(d.stx_ino, key);
                }
                links.groups.insert(key, Link { rel: rel.to_path_buf(), dst_ino: d.stx_ino, left: st.stx_nlink - 1 });
                drop(links);
                return self.update_entry(sfd, dfd, name, rel, st, d, buf);
            }
            if let Some(d) = dst {
                if !self.remove(dfd, name, rel, d) {
                    return;
                }
            }
            // Create under the lock so a racing link to the same inode finds the file.
            let r = self.create_entry(sfd, dfd, name, rel, st, ft);
            let ino = if update { statx_at(dfd, name).map(|d| d.stx_ino).unwrap_or(0) } else { 0 };
            links.groups.insert(key, Link { rel: rel.to_path_buf(), dst_ino: ino, left: st.stx_nlink - 1 });
            drop(links);
            if let Some(f) = r {
                self.fill_entry(rel, st, f, buf);
            }
            return;
        }
        match dst {
            Some(d) if file_type(d) == ft && d.stx_nlink == 1 => {
                return self.update_entry(sfd, dfd, name, rel, st, d, buf)
            }
            Some(d) if !self.remove(dfd, name, rel, d) => return,
            _ => {}
        }
        if let Some(f) = self.create_entry(sfd, dfd, name, rel, st, ft) {
            self.fill_entry(rel, st, f, buf);
        }
    }

    fn unchanged(&self, bytes: u64) {
        self.c.unchanged.fetch_add(1, Ordering::Relaxed);
        self.job.add_file();
        let _ = bytes;
        self.gate.add(1, 0);
    }

    /// Update mode: bring the copy `d` of an entry of the same type in line with the source.
    #[allow(clippy::too_many_arguments)]
    fn update_entry(
        &self,
        sfd: &OwnedFd,
        dfd: &OwnedFd,
        name: &CStr,
        rel: &Path,
        st: &Statx,
        d: &Statx,
        buf: &mut [u8],
    ) {
        let full = suspect(st, d, self.opts.update.and_then(|u| u.since));
        let meta_differs = (st.stx_uid, st.stx_gid) != (d.stx_uid, d.stx_gid)
            || (st.stx_mode & 0o7777) != (d.stx_mode & 0o7777)
            || mtime(st) != mtime(d);
        match file_type(st) {
            FileType::RegularFile => {
                let checksum = self.opts.update.is_some_and(|u| u.checksum);
                let mut data = st.stx_size != d.stx_size || mtime(st) != mtime(d) || filled(st, d);
                if !data && !checksum && !full && !meta_differs {
                    return self.unchanged(st.stx_size);
                }
                let src = match open_file(sfd, name) {
                    Ok(f) => f,
                    Err(Errno::NOENT) => return self.vanished(rel),
                    Err(e) => return self.error(rel, "opening the file", e),
                };
                let dst = match rustix::fs::openat(
                    dfd,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(f) => f,
                    Err(e) => return self.error(rel, "opening its copy", e),
                };
                // A file whose inode changed may have new bytes behind an mtime set back.
                if !data && (checksum || full) {
                    data = match same_bytes(&src, &dst, st.stx_size, buf) {
                        Ok(same) => !same,
                        Err(e) => return self.error(rel, "comparing its data", e),
                    };
                }
                if !data {
                    return self.meta_only(Some(src.as_fd()), &dst, rel, st, d, full || checksum, true);
                }
                if locked(d) {
                    if let Err(e) = unlock(&dst) {
                        return self.error(rel, "unlocking its immutable copy", e);
                    }
                }
                drop(dst);
                let dst = match rustix::fs::openat(
                    dfd,
                    name,
                    OFlags::WRONLY | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(f) => f,
                    Err(e) => return self.error(rel, "opening its copy for writing", e),
                };
                self.c.rewritten.fetch_add(1, Ordering::Relaxed);
                self.rewrite(rel, st, src, dst, buf);
            }
            FileType::Symlink => {
                let (a, b) = match (
                    rustix::fs::readlinkat(sfd, name, Vec::new()),
                    rustix::fs::readlinkat(dfd, name, Vec::new()),
                ) {
                    (Ok(a), Ok(b)) => (a, b),
                    (Err(Errno::NOENT), _) => return self.vanished(rel),
                    (Err(e), _) | (_, Err(e)) => return self.error(rel, "reading the symlink", e),
                };
                if a != b {
                    if !self.remove(dfd, name, rel, d) {
                        return;
                    }
                    self.c.rewritten.fetch_add(1, Ordering::Relaxed);
                    let _ = self.create_entry(sfd, dfd, name, rel, st, FileType::Symlink);
                    return;
                }
                self.meta_only_at(dfd, name, rel, st, d, full);
            }
            _ => {
                if (st.stx_rdev_major, st.stx_rdev_minor) != (d.stx_rdev_major, d.stx_rdev_minor) {
                    if !self.remove(dfd, name, rel, d) {
                        return;
                    }
                    self.c.rewritten.fetch_add(1, Ordering::Relaxed);
                    let _ = self.create_entry(sfd, dfd, name, rel, st, file_type(st));
                    return;
                }
                self.meta_only_at(dfd, name, rel, st, d, full);
            }
        }
    }

    /// Set what differs of the metadata of an open copy; count it.
    #[allow(clippy::too_many_arguments)]
    fn meta_only(
        &self,
        src: Option<BorrowedFd<'_>>,
        dst: &OwnedFd,
        rel: &Path,
        st: &Statx,
        d: &Statx,
        full: bool,
        flags: bool,
    ) {
        match self.sync_meta(src, dst, st, d, full, flags) {
            Ok(true) => {
                self.c.metadata_only.fetch_add(1, Ordering::Relaxed);
                self.done_entry(rel, 0);
            }
            Ok(false) => self.unchanged(st.stx_size),
            Err((w, e)) => self.error(rel, &w, e),
        }
    }

    /// The same for a symlink or special file, by name.
    fn meta_only_at(&self, dfd: &OwnedFd, name: &CStr, rel: &Path, st: &Statx, d: &Statx, full: bool) {
        let owner = (st.stx_uid, st.stx_gid) != (d.stx_uid, d.stx_gid);
        let mode = !is_type(st, FileType::Symlink) && (st.stx_mode & 0o7777) != (d.stx_mode & 0o7777);
        let times = mtime(st) != mtime(d);
        let r = (|| -> std::result::Result<bool, (&'static str, Errno)> {
            let mut changed = false;
            if self.dst_lossy {
                return Ok(false);
            }
            if owner {
                rustix::fs::chownat(
                    dfd,
                    name,
                    Some(rustix::fs::Uid::from_raw(st.stx_uid)),
                    Some(rustix::fs::Gid::from_raw(st.stx_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| ("setting its owner", e))?;
                changed = true;
            }
            if full || owner {
                let src = XTarget::Path(self.src_root.join(rel));
                let dst = XTarget::Path(self.dst_root.join(rel));
                changed |= sync_xattrs(&src, &dst).map_err(|(_, e)| ("copying its xattrs", e))?;
            }
            if mode || (owner && !is_type(st, FileType::Symlink)) {
                rustix::fs::chmodat(dfd, name, mode_bits(st), AtFlags::empty()).map_err(|e| ("setting its mode", e))?;
                changed = true;
            }
            if times {
                rustix::fs::utimensat(dfd, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| ("setting its times", e))?;
                changed = true;
            }
            Ok(changed)
        })();
        match r {
            Ok(true) => {
                self.c.metadata_only.fetch_add(1, Ordering::Relaxed);
                self.done_entry(rel, 0);
            }
            Ok(false) => self.unchanged(0),
            Err((w, e)) => self.error(rel, w, e),
        }
    }

    /// Remove the target's entry `name` (a whole tree for a directory), unlocking what is
    /// immutable; never across a mount. False when it could not be removed (reported).
    fn remove(&self, dfd: &OwnedFd, name: &CStr, rel: &Path, d: &Statx) -> bool {
        let here = statx_fd(dfd).map(|h| h.stx_mnt_id).ok();
        match remove_tree(dfd, name, d, here) {
            Ok(n) => {
                self.c.deleted.fetch_add(n, Ordering::Relaxed);
                true
            }
            Err((what, e)) => {
                self.error(rel, what, e);
                false
            }
        }
    }

    /// Delete an entry of the target the source does not have.
    fn delete(&self, dfd: &OwnedFd, name: &CStr, rel: &Path, here: Option<u64>) {
        let d = match statx_at(dfd, name) {
            Ok(d) => d,
            Err(Errno::NOENT) => return,
            Err(e) => return self.error(rel, "reading the status of its copy", e),
        };
        if here.is_some_and(|m| m != d.stx_mnt_id) {
            tracing::warn!("{}: a mount point of the target that the source does not have: left alone", self.show(rel));
            return;
        }
        if self.remove(dfd, name, rel, &d) {
            self.listed(rel);
        }
    }

    /// Make the entry exist at the target. For regular files returns the open pair of
    /// descriptors; for the rest finishes them entirely and returns `None`.
    fn create_entry(
        &self,
        sfd: &OwnedFd,
        dfd: &OwnedFd,
        name: &CStr,
        rel: &Path,
        st: &Statx,
        ft: FileType,
    ) -> Option<(OwnedFd, OwnedFd)> {
        match ft {
            FileType::RegularFile => {
                let src = match open_file(sfd, name) {
                    Ok(f) => f,
                    Err(Errno::NOENT) => {
                        self.vanished(rel);
                        return None;
                    }
                    Err(e) => {
                        self.error(rel, "opening the file", e);
                        return None;
                    }
                };
                match rustix::fs::openat(
                    dfd,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                ) {
                    Ok(dst) => Some((src, dst)),
                    Err(e) => {
                        self.error(rel, "creating the file", e);
                        None
                    }
                }
            }
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(sfd, name, Vec::new()) {
                    Ok(t) => t,
                    Err(e) => {
                        self.error(rel, "reading the symlink", e);
                        return None;
                    }
                };
                let r = rustix::fs::symlinkat(target.as_c_str(), dfd, name)
                    .map_err(|e| ("creating the symlink", e))
                    .and_then(|()| self.finish_at(dfd, name, rel, st));
                match r {
                    Ok(()) => {
                        self.c.symlinks.fetch_add(1, Ordering::Relaxed);
                        self.done_entry(rel, 0);
                    }
                    Err((w, e)) => self.error(rel, w, e),
                }
                None
            }
            FileType::BlockDevice | FileType::CharacterDevice | FileType::Fifo => {
                let dev = rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor);
                let r = rustix::fs::mknodat(dfd, name, ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| ("creating the special file", e))
                    .and_then(|()| self.finish_at(dfd, name, rel, st));
                match r {
                    Ok(()) => {
                        self.c.specials.fetch_add(1, Ordering::Relaxed);
                        self.done_entry(rel, 0);
                    }
                    Err((w, e)) => self.error(rel, w, e),
                }
                None
            }
            _ => None,
        }
    }

    /// A new file's data and metadata.
    fn fill_entry(&self, rel: &Path, st: &Statx, (src, dst): (OwnedFd, OwnedFd), buf: &mut [u8]) {
        if self.opts.update.is_some() {
            self.c.rewritten.fetch_add(1, Ordering::Relaxed);
        }
        self.rewrite(rel, st, src, dst, buf)
    }

    /// Write a file's data into `dst` (empty) and give it the source's metadata.
    fn rewrite(&self, rel: &Path, st: &Statx, src: OwnedFd, dst: OwnedFd, buf: &mut [u8]) {
        let sflags = rustix::fs::ioctl_getflags(&src).unwrap_or(IFlags::empty()) & copyable_flags();
        if sflags.contains(IFlags::NOCOW) && !self.dst_lossy {
            // nocow only takes effect on an empty file.
            let _ = rustix::fs::ioctl_setflags(&dst, IFlags::NOCOW);
        }
        let copied = match self.copy_data(&src, &dst, st, buf) {
            Ok(n) => n,
            Err(e) => return self.error(rel, "copying the data", e),
        };
        if self.opts.detect_changes {
            if let Ok(now) = rustix::fs::statx(&src, c"", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS) {
                if now.stx_size != st.stx_size || mtime(&now) != mtime(st) || ctime(&now) != ctime(st) {
                    self.changed.lock().unwrap_or_else(|p| p.into_inner()).push(self.show(rel));
                }
            }
        }
        let r = if self.opts.update.is_some() {
            // A rewritten copy keeps xattrs of its own until they are synced.
            statx_fd(&dst)
                .map_err(|e| ("reading its status".to_string(), e))
                .and_then(|now| self.sync_meta(Some(src.as_fd()), &dst, st, &now, true, false).map(|_| ()))
        } else {
            self.finish_fd(Some(src.as_fd()), &dst, st, false)
        };
        if let Err((w, e)) = r {
            return self.error(rel, &w, e);
        }
        if !self.dst_lossy && (!sflags.is_empty() || self.opts.update.is_some()) {
            if let Err(e) = set_flags(&dst, sflags) {
                self.error(rel, "setting its inode flags", e);
            }
        }
        self.c.files.fetch_add(1, Ordering::Relaxed);
        self.done_entry(rel, copied);
    }

    fn done_entry(&self, rel: &Path, bytes: u64) {
        self.job.add_file();
        self.gate.add(1, bytes);
        self.listed(rel);
    }

    /// Copy the bytes, keeping holes. Returns the data bytes written.
    fn copy_data(&self, src: &OwnedFd, dst: &OwnedFd, st: &Statx, buf: &mut [u8]) -> rustix::io::Result<u64> {
        let size = st.stx_size;
        if size == 0 {
            return Ok(0);
        }
        // Fewer blocks than the size needs: there are holes worth finding.
        let sparse = st.stx_blocks * 512 < size;
        let mut written = 0u64;
        if sparse {
            self.c.sparse.fetch_add(1, Ordering::Relaxed);
            let mut pos = 0u64;
            while pos < size {
                let data = match rustix::fs::seek(src, rustix::fs::SeekFrom::Data(pos)) {
                    Ok(d) => d,
                    Err(Errno::NXIO) => break,
                    Err(e) => return Err(e),
                };
                let hole = rustix::fs::seek(src, rustix::fs::SeekFrom::Hole(data))?.min(size);
                written += self.copy_range(src, dst, data, hole, buf)?;
                pos = hole;
            }
            rustix::fs::ftruncate(dst, size)?;
        } else {
            written = self.copy_range(src, dst, 0, u64::MAX, buf)?;
        }
        Ok(written)
    }

    /// Copy [from, to) or until end of file.
    fn copy_range(&self, src: &OwnedFd, dst: &OwnedFd, from: u64, to: u64, buf: &mut [u8]) -> rustix::io::Result<u64> {
        let mut off = from;
        let mut done = 0u64;
        if self.cfr_works.load(Ordering::Relaxed) {
            let mut soff = from;
            let mut doff = from;
            loop {
                let want = (to - soff).min(1 << 30) as usize;
                if want == 0 {
                    return Ok(done);
                }
                match rustix::fs::copy_file_range(src, Some(&mut soff), dst, Some(&mut doff), want) {
                    Ok(0) => return Ok(done),
                    Ok(n) => {
                        done += n as u64;
                        self.c.bytes.fetch_add(n as u64, Ordering::Relaxed);
                        self.job.add_bytes(n as u64);
                    }
                    // Across filesystems the kernel refuses; fall back to read/write for good.
                    Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL) if done == 0 => {
                        self.cfr_works.store(false, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        while off < to {
            let want = ((to - off).min(buf.len() as u64)) as usize;
            let n = match rustix::io::pread(src, &mut buf[..want], off) {
                Ok(0) => break,
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            };
            let mut w = 0;
            while w < n {
                match rustix::io::pwrite(dst, &buf[w..n], off + w as u64) {
                    Ok(k) => w += k,
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(e),
                }
            }
            off += n as u64;
            done += n as u64;
            self.c.bytes.fetch_add(n as u64, Ordering::Relaxed);
            self.job.add_bytes(n as u64);
        }
        Ok(done)
    }

    /// Owner, xattrs, mode, times, for something we hold open (a file or a directory);
    /// for directories also the inode flags.
    fn finish_fd(
        &self,
        src: Option<BorrowedFd<'_>>,
        dst: &OwnedFd,
        st: &Statx,
        dir_flags: bool,
    ) -> std::result::Result<(), (String, Errno)> {
        if self.dst_lossy {
            self.c.dropped.fetch_add(1, Ordering::Relaxed);
            let _ = rustix::fs::futimens(dst, &timestamps(st));
            return Ok(());
        }
        rustix::fs::fchown(
            dst,
            Some(rustix::fs::Uid::from_raw(st.stx_uid)),
            Some(rustix::fs::Gid::from_raw(st.stx_gid)),
        )
        .map_err(|e| ("setting its owner".to_string(), e))?;
        if let Some(src) = src {
            copy_xattrs(&XTarget::Fd(src), &XTarget::Fd(dst.as_fd()))
                .map_err(|(n, e)| (format!("copying xattr {n}"), e))?;
        }
        rustix::fs::fchmod(dst, mode_bits(st)).map_err(|e| ("setting its mode".to_string(), e))?;
        rustix::fs::futimens(dst, &timestamps(st)).map_err(|e| ("setting its times".to_string(), e))?;
        if dir_flags {
            if let Some(src) = src {
                let f = rustix::fs::ioctl_getflags(src).unwrap_or(IFlags::empty()) & copyable_flags();
                if !f.is_empty() {
                    set_flags(dst, f).map_err(|e| ("setting its inode flags".to_string(), e))?;
                }
            }
        }
        Ok(())
    }

    /// Update mode: make the metadata of `dst` (whose status is `now`) match the source's,
    /// setting only what differs. `full` compares xattrs (and, with `flags`, inode flags),
    /// which the status does not show. An immutable or append-only target is unlocked only
    /// when something must be set, and locked again after. Returns whether anything was set.
    fn sync_meta(
        &self,
        src: Option<BorrowedFd<'_>>,
        dst: &OwnedFd,
        st: &Statx,
        now: &Statx,
        full: bool,
        flags: bool,
    ) -> std::result::Result<bool, (String, Errno)> {
        let times = mtime(st) != mtime(now);
        if self.dst_lossy {
            if times {
                rustix::fs::futimens(dst, &timestamps(st)).map_err(|e| ("setting its times".to_string(), e))?;
            }
            return Ok(times);
        }
        let owner = (st.stx_uid, st.stx_gid) != (now.stx_uid, now.stx_gid);
        let mode = (st.stx_mode & 0o7777) != (now.stx_mode & 0o7777);
        // chown drops capabilities: the xattrs are looked at after it anyway.
        let xattrs = match src.filter(|_| full || owner) {
            Some(src) => {
                let want = read_xattrs(&XTarget::Fd(src)).map_err(|(n, e)| (format!("reading xattr {n}"), e))?;
                let have =
                    read_xattrs(&XTarget::Fd(dst.as_fd())).map_err(|(n, e)| (format!("reading xattr {n}"), e))?;
                (want != have || owner).then_some((want, have))
            }
            None => None,
        };
        let cur = rustix::fs::ioctl_getflags(dst).unwrap_or(IFlags::empty());
        let want_flags = match src.filter(|_| full && flags) {
            Some(src) => {
                let f = rustix::fs::ioctl_getflags(src).unwrap_or(IFlags::empty()) & copyable_flags();
                Some((cur - copyable_flags()) | f)
            }
            None => None,
        };
        let flags_differ = want_flags.is_some_and(|w| w != cur);
        if !(owner || mode || times || xattrs.is_some() || flags_differ) {
            return Ok(false);
        }
        let unlocked = cur.intersects(IFlags::IMMUTABLE | IFlags::APPEND);
        if unlocked {
            unlock(dst).map_err(|e| ("unlocking its immutable copy".to_string(), e))?;
        }
        if owner {
            rustix::fs::fchown(
                dst,
                Some(rustix::fs::Uid::from_raw(st.stx_uid)),
                Some(rustix::fs::Gid::from_raw(st.stx_gid)),
            )
            .map_err(|e| ("setting its owner".to_string(), e))?;
        }
        if let (Some(src), Some(_)) = (src, &xattrs) {
            sync_xattrs(&XTarget::Fd(src), &XTarget::Fd(dst.as_fd()))
                .map_err(|(n, e)| (format!("copying xattr {n}"), e))?;
        }
        // chown clears setuid and setgid; an ACL written sets the group bits.
        let cur_mode = statx_fd(dst).map(|s| s.stx_mode & 0o7777).unwrap_or(0);
        if cur_mode != st.stx_mode & 0o7777 {
            rustix::fs::fchmod(dst, mode_bits(st)).map_err(|e| ("setting its mode".to_string(), e))?;
        }
        rustix::fs::futimens(dst, &timestamps(st)).map_err(|e| ("setting its times".to_string(), e))?;
        match want_flags {
            Some(w) if w != rustix::fs::ioctl_getflags(dst).unwrap_or(IFlags::empty()) => {
                rustix::fs::ioctl_setflags(dst, w).map_err(|e| ("setting its inode flags".to_string(), e))?
            }
            None if unlocked => {
                rustix::fs::ioctl_setflags(dst, cur).map_err(|e| ("locking it again".to_string(), e))?
            }
            _ => {}
        }
        Ok(true)
    }

    /// The same for entries we cannot open: symlinks and special files.
    fn finish_at(
        &self,
        dfd: &OwnedFd,
        name: &CStr,
        rel: &Path,
        st: &Statx,
    ) -> std::result::Result<(), (&'static str, Errno)> {
        let is_link = is_type(st, FileType::Symlink);
        if !self.dst_lossy {
            rustix::fs::chownat(
                dfd,
                name,
                Some(rustix::fs::Uid::from_raw(st.stx_uid)),
                Some(rustix::fs::Gid::from_raw(st.stx_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| ("setting its owner", e))?;
            let src = self.src_root.join(rel);
            let dst = self.dst_root.join(rel);
            copy_xattrs(&XTarget::Path(src), &XTarget::Path(dst)).map_err(|(_, e)| ("copying its xattrs", e))?;
            if !is_link {
                rustix::fs::chmodat(dfd, name, mode_bits(st), AtFlags::empty()).map_err(|e| ("setting its mode", e))?;
            }
        }
        rustix::fs::utimensat(dfd, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ("setting its times", e))?;
        Ok(())
    }
}

/// Open a source file for reading, without touching its access time where allowed.
pub(crate) fn open_file(dir: impl AsFd, name: &CStr) -> rustix::io::Result<OwnedFd> {
    let dir = dir.as_fd();
    rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME, Mode::empty())
        .or_else(|_| rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()))
}

/// Whether two open files hold the same `size` bytes.
fn same_bytes(a: &OwnedFd, b: &OwnedFd, size: u64, buf: &mut [u8]) -> rustix::io::Result<bool> {
    let half = buf.len() / 2;
    let (x, y) = buf.split_at_mut(half);
    let mut off = 0u64;
    while off < size {
        let want = ((size - off).min(half as u64)) as usize;
        let n = read_full(a, &mut x[..want], off)?;
        let m = read_full(b, &mut y[..want], off)?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            break;
        }
        off += n as u64;
    }
    Ok(true)
}

/// pread until `buf` is full or the file ends.
pub(crate) fn read_full(f: &OwnedFd, buf: &mut [u8], off: u64) -> rustix::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::pread(f, &mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Every name in a directory but `.` and `..`.
fn read_names(dir: &OwnedFd) -> rustix::io::Result<HashSet<CString>> {
    let mut out = HashSet::new();
    for ent in rustix::fs::Dir::read_from(dir)? {
        let ent = ent?;
        let n = ent.file_name();
        if n != c"." && n != c".." {
            out.insert(n.to_owned());
        }
    }
    Ok(out)
}

/// Take the immutable and append-only flags off an open file or directory.
fn unlock(f: &OwnedFd) -> rustix::io::Result<()> {
    let cur = rustix::fs::ioctl_getflags(f)?;
    let want = cur - (IFlags::IMMUTABLE | IFlags::APPEND);
    if want != cur {
        rustix::fs::ioctl_setflags(f, want)?;
    }
    Ok(())
}

fn unlock_at(dir: &OwnedFd, name: &CStr) -> rustix::io::Result<()> {
    let f = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    unlock(&f)
}

/// Remove `name` in `dir` (status `d`), a whole tree for a directory, unlocking immutable
/// entries; a directory on another mount than `mnt` is not entered. Returns how many
/// entries went.
fn remove_tree(
    dir: &OwnedFd,
    name: &CStr,
    d: &Statx,
    mnt: Option<u64>,
) -> std::result::Result<u64, (&'static str, Errno)> {
    if mnt.is_some_and(|m| m != d.stx_mnt_id) {
        return Err(("removing it", Errno::BUSY));
    }
    let ft = file_type(d);
    if locked(d) && matches!(ft, FileType::RegularFile | FileType::Directory) {
        unlock_at(dir, name).map_err(|e| ("unlocking it to remove it", e))?;
    }
    if ft != FileType::Directory {
        rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| ("removing it", e))?;
        return Ok(1);
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ("opening it to remove it", e))?;
    let mut n = 0;
    for child in read_names(&sub).map_err(|e| ("reading it to remove it", e))? {
        let cst = match statx_at(&sub, &child) {
            Ok(s) => s,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(("reading the status of an entry to remove", e)),
        };
        n += remove_tree(&sub, &child, &cst, Some(d.stx_mnt_id))?;
    }
    drop(sub);
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| ("removing it", e))?;
    Ok(n + 1)
}

/// Add the copied flags to those the target filesystem set itself (ext4's extents flag
/// cannot be cleared, and SETFLAGS replaces the whole set).
fn set_flags(dst: &OwnedFd, flags: IFlags) -> rustix::io::Result<()> {
    set_flags_changed(dst, flags).map(|_| ())
}

fn set_flags_changed(dst: &OwnedFd, flags: IFlags) -> rustix::io::Result<bool> {
    let current = rustix::fs::ioctl_getflags(dst).unwrap_or(IFlags::empty());
    let want = (current - copyable_flags()) | flags;
    if want == current {
        return Ok(false);
    }
    rustix::fs::ioctl_setflags(dst, want)?;
    Ok(true)
}

fn open_dir(p: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

/// Where xattrs are read or written: an open file, or a path (not followed).
pub(crate) enum XTarget<'a> {
    Fd(BorrowedFd<'a>),
    Path(PathBuf),
}

impl XTarget<'_> {
    fn list(&self, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            XTarget::Fd(f) => rustix::fs::flistxattr(f, buf),
            XTarget::Path(p) => rustix::fs::llistxattr(p, buf),
        }
    }

    fn get(&self, name: &CStr, buf: &mut [u8]) -> rustix::io::Result<usize> {
        match self {
            XTarget::Fd(f) => rustix::fs::fgetxattr(f, name, buf),
            XTarget::Path(p) => rustix::fs::lgetxattr(p, name, buf),
        }
    }

    fn set(&self, name: &CStr, v: &[u8]) -> rustix::io::Result<()> {
        match self {
            XTarget::Fd(f) => rustix::fs::fsetxattr(f, name, v, rustix::fs::XattrFlags::empty()),
            XTarget::Path(p) => rustix::fs::lsetxattr(p, name, v, rustix::fs::XattrFlags::empty()),
        }
    }

    fn remove(&self, name: &CStr) -> rustix::io::Result<()> {
        match self {
            XTarget::Fd(f) => rustix::fs::fremovexattr(f, name),
            XTarget::Path(p) => rustix::fs::lremovexattr(p, name),
        }
    }
}

/// Split a listxattr buffer into names. XFS shows its on-disk form of POSIX ACLs as
/// `trusted.SGI_ACL_*` besides `system.posix_acl_*`; only the latter is portable.
fn xattr_names(list: &[u8]) -> impl Iterator<Item = &CStr> {
    list.split_inclusive(|&b| b == 0)
        .filter_map(|n| CStr::from_bytes_with_nul(n).ok())
        .filter(|n| !n.is_empty() && !n.to_bytes().starts_with(b"trusted.SGI_ACL_"))
}

/// Extended attributes: (name, value), sorted by name.
pub(crate) type Xattrs = Vec<(CString, Vec<u8>)>;

/// Every xattr (name, value), sorted by name. Empty where the filesystem has none.
pub(crate) fn read_xattrs(t: &XTarget<'_>) -> std::result::Result<Xattrs, (String, Errno)> {
    let mut list = vec![0u8; 65536];
    let n = match t.list(&mut list[..]) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(("list".into(), e)),
    };
    let mut out = Vec::new();
    let mut val = vec![0u8; 65536];
    for name in xattr_names(&list[..n]) {
        let len = match t.get(name, &mut val[..]) {
            Ok(l) => l,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err((name.to_string_lossy().into_owned(), e)),
        };
        out.push((name.to_owned(), val[..len].to_vec()));
    }
    out.sort();
    Ok(out)
}

fn copy_xattrs(src: &XTarget<'_>, dst: &XTarget<'_>) -> std::result::Result<(), (String, Errno)> {
    for (name, v) in read_xattrs(src)? {
        dst.set(&name, &v).map_err(|e| (name.to_string_lossy().into_owned(), e))?;
    }
    Ok(())
}

/// Make the target's xattrs those of the source: set what differs, remove what the source
/// does not have. Returns whether anything changed.
fn sync_xattrs(src: &XTarget<'_>, dst: &XTarget<'_>) -> std::result::Result<bool, (String, Errno)> {
    let want = read_xattrs(src)?;
    let have = read_xattrs(dst)?;
    if want == have {
        return Ok(false);
    }
    for (name, _) in &have {
        if !want.iter().any(|(n, _)| n == name) {
            match dst.remove(name) {
                Ok(()) | Err(Errno::NODATA) => {}
                Err(e) => return Err((name.to_string_lossy().into_owned(), e)),
            }
        }
    }
    for (name, v) in &want {
        if !have.iter().any(|(n, w)| n == name && w == v) {
            dst.set(name, v).map_err(|e| (name.to_string_lossy().into_owned(), e))?;
        }
    }
    Ok(true)
}

/// The copyable inode flags of an open file or directory.
pub(crate) fn inode_flags(f: &OwnedFd) -> IFlags {
    rustix::fs::ioctl_getflags(f).unwrap_or(IFlags::empty()) & copyable_flags()
}

#[repr(C)]
struct BtrfsVolArgs {
    fd: i64,
    name: [u8; 4088],
}

nix::ioctl_write_ptr!(btrfs_ioc_subvol_create, 0x94, 14, BtrfsVolArgs);

/// Create a btrfs subvolume named `name` in the directory `dir`.
fn btrfs_subvol_create(dir: &OwnedFd, name: &CStr) -> rustix::io::Result<()> {
    let bytes = name.to_bytes();
    if bytes.len() >= 4088 {
        return Err(Errno::NAMETOOLONG);
    }
    let mut args = BtrfsVolArgs { fd: 0, name: [0; 4088] };
    args.name[..bytes.len()].copy_from_slice(bytes);
    use std::os::fd::AsRawFd;
    // SAFETY: the argument is a properly sized, initialised btrfs_ioctl_vol_args.
    unsafe { btrfs_ioc_subvol_create(dir.as_raw_fd(), &args) }
        .map(|_| ())
        .map_err(|e| Errno::from_raw_os_error(e as i32))
}

fn fs_magic(p: &Path) -> Result<i64> {
    let s = rustix::fs::statfs(p).map_err(|e| Error::io("looking at the filesystem", p, ioerr(e)))?;
    Ok(s.f_type as i64)
}

/// Copy the filesystem mounted at (or the directory tree at) `src` into the directory `dst`,
/// which must exist (normally the root of a fresh filesystem; in update mode, the copy made
/// earlier). Stops at mount points. Per-entry failures are collected and returned as
/// [`Error::CopyFailed`] at the end; a full or failing target stops the copy at once;
/// cancellation through `job` stops it cleanly.
pub fn copy_tree(src: &Path, dst: &Path, opts: &CopyOptions, job: &Job) -> Result<CopyStats> {
    let root_st = rustix::fs::statx(CWD, src, AtFlags::empty(), StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)
        .map_err(|e| Error::io("reading the source", src, ioerr(e)))?;
    if !is_type(&root_st, FileType::Directory) {
        return Err(Error::usage(
            format!("source {}", src.display()),
            "it is not a directory",
            "name the directory a filesystem is mounted at",
        ));
    }
    let dst_magic = fs_magic(dst)?;
    // Update mode: the target root as it was, unlocked when immutable.
    let mut before = None;
    let mut full = false;
    if opts.update.is_some() {
        let d = rustix::fs::statx(CWD, dst, AtFlags::empty(), StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)
            .map_err(|e| Error::io("reading the copy", dst, ioerr(e)))?;
        if locked(&d) {
            open_dir(dst).and_then(|f| unlock(&f)).map_err(|e| Error::io("unlocking the copy", dst, ioerr(e)))?;
            full = true;
        }
        before = Some(d);
    }
    let shared = Arc::new(Shared {
        src_root: src.to_path_buf(),
        dst_root: dst.to_path_buf(),
        src_mnt_id: root_st.stx_mnt_id,
        src_btrfs: fs_magic(src)? == BTRFS_SUPER_MAGIC,
        dst_btrfs: dst_magic == BTRFS_SUPER_MAGIC,
        dst_lossy: dst_magic == MSDOS_SUPER_MAGIC,
        opts: opts.clone(),
        job: job.clone(),
        gate: Gate::new(opts.threads),
        abort: AtomicBool::new(false),
        fatal: Mutex::new(None),
        errors: Mutex::new(Named::default()),
        changed: Mutex::new(Named::default()),
        links: Mutex::new(Links::default()),
        c: Counters::default(),
        cfr_works: AtomicBool::new(true),
    });
    let pool =
        Pool { queue: Mutex::new(Queue { tasks: Vec::new(), active: 0 }), wake: Condvar::new(), park: Condvar::new() };
    {
        let root =
            Arc::new(DirNode { shared: shared.clone(), rel: PathBuf::new(), st: root_st, before, full, _parent: None });
        pool.push(Task::Dir(root));
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..shared.gate.max)
                .map(|i| {
                    let (shared, pool) = (&shared, &pool);
                    s.spawn(move || shared.worker(pool, i))
                })
                .collect();
            s.spawn(|| {
                shared.gate.control(|| {
                    pool.wake.notify_all();
                    pool.park.notify_all();
                })
            });
            for w in workers {
                let _ = w.join();
            }
            shared.gate.finish();
        });
    }
    if let Some(e) = shared.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    if job.is_cancelled() {
        return Err(Error::Cancelled);
    }
    let errors = std::mem::take(&mut *shared.errors.lock().unwrap_or_else(|p| p.into_inner()));
    let changed = std::mem::take(&mut *shared.changed.lock().unwrap_or_else(|p| p.into_inner()));
    let c = &shared.c;
    let stats = CopyStats {
        files: c.files.load(Ordering::Relaxed),
        dirs: c.dirs.load(Ordering::Relaxed),
        symlinks: c.symlinks.load(Ordering::Relaxed),
        hardlinks: c.hardlinks.load(Ordering::Relaxed),
        specials: c.specials.load(Ordering::Relaxed),
        sockets_skipped: c.sockets.load(Ordering::Relaxed),
        excluded: c.excluded.load(Ordering::Relaxed),
        mount_points: c.mount_points.load(Ordering::Relaxed),
        subvolumes: c.subvolumes.load(Ordering::Relaxed),
        snapshots_skipped: c.snapshots.load(Ordering::Relaxed),
        bytes: c.bytes.load(Ordering::Relaxed),
        sparse_files: c.sparse.load(Ordering::Relaxed),
        changed_count: changed.count,
        changed: changed.names,
        vanished: c.vanished.load(Ordering::Relaxed),
        error_count: errors.count,
        errors: errors.names.clone(),
        metadata_dropped: c.dropped.load(Ordering::Relaxed),
        unchanged: c.unchanged.load(Ordering::Relaxed),
        rewritten: c.rewritten.load(Ordering::Relaxed),
        metadata_only: c.metadata_only.load(Ordering::Relaxed),
        deleted: c.deleted.load(Ordering::Relaxed),
        workers: shared.gate.range(),
        links_unsure: c.links_unsure.load(Ordering::Relaxed),
    };
    if errors.count > 0 {
        return Err(Error::CopyFailed {
            count: errors.count,
            first: errors.names.first().cloned().unwrap_or_default(),
        });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn tmpdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("altdisk-copy-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn copies_a_tree_with_links_holes_and_times() {
        let src = tmpdir("src");
        let dst = tmpdir("dst");
        std::fs::create_dir_all(src.join("a/b/c")).unwrap();
        std::fs::write(src.join("a/small"), b"hello").unwrap();
        std::fs::write(src.join("a/b/big"), vec![7u8; 3 << 20]).unwrap();
        std::os::unix::fs::symlink("../small", src.join("a/b/link")).unwrap();
        std::fs::hard_link(src.join("a/small"), src.join("a/b/c/hard")).unwrap();
        let f = std::fs::File::create(src.join("sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"data", 32 << 20).unwrap();
        drop(f);
        std::fs::set_permissions(src.join("a/small"), std::fs::Permissions::from_mode(0o4751)).unwrap();
        let t = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: 1_000_000_000, tv_nsec: 123_456_789 },
            last_modification: rustix::fs::Timespec { tv_sec: 1_100_000_000, tv_nsec: 987_654_321 },
        };
        rustix::fs::utimensat(CWD, src.join("a/b"), &t, AtFlags::empty()).unwrap();
        let excl = ExcludeList::empty();
        let opts = CopyOptions { exclude: Arc::new(excl), ..Default::default() };
        let job = Job::new();
        let stats = copy_tree(&src, &dst, &opts, &job).unwrap();
        assert_eq!(stats.files, 3, "{stats:?}");
        assert_eq!(stats.hardlinks, 1);
        assert_eq!(stats.symlinks, 1);
        assert_eq!(std::fs::read(dst.join("a/b/big")).unwrap(), vec![7u8; 3 << 20]);
        assert_eq!(std::fs::read_link(dst.join("a/b/link")).unwrap(), PathBuf::from("../small"));
        let m1 = std::fs::metadata(dst.join("a/small")).unwrap();
        let m2 = std::fs::metadata(dst.join("a/b/c/hard")).unwrap();
        assert_eq!(m1.ino(), m2.ino());
        assert_eq!(m1.mode() & 0o7777, 0o4751);
        let sp = std::fs::metadata(dst.join("sparse")).unwrap();
        assert_eq!(sp.len(), 64 << 20);
        assert!(sp.blocks() * 512 < 1 << 20, "sparse file lost its holes: {} blocks", sp.blocks());
        let d = std::fs::metadata(dst.join("a/b")).unwrap();
        assert_eq!((d.mtime(), d.mtime_nsec()), (1_100_000_000, 987_654_321));
        assert_eq!((d.atime(), d.atime_nsec()), (1_000_000_000, 123_456_789));
        let p = job.snapshot();
        assert!(p.bytes_done >= 3 << 20);
        std::fs::remove_dir_all(&src).unwrap();
        std::fs::remove_dir_all(&dst).unwrap();
    }

    /// What a test compares of a tree: per path, type, mode, owner, size, mtime, symlink
    /// target, data, user xattrs, and which paths share an inode.
    fn snapshot(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut inodes: HashMap<u64, Vec<String>> = HashMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let p = root.join(&rel);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let data = if md.is_file() {
                format!("{:x}", xxhash_rust::xxh3::xxh3_64(&std::fs::read(&p).unwrap()))
            } else if md.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().display().to_string()
            } else {
                String::new()
            };
            let x = read_xattrs(&XTarget::Path(p.clone())).unwrap();
            let mtime = if md.is_dir() { 0 } else { md.mtime_nsec() as i64 + md.mtime() * 1_000_000_000 };
            out.push(format!(
                "{} {:o} {}:{} {} {} {} {:?}",
                rel.display(),
                md.mode(),
                md.uid(),
                md.gid(),
                if md.is_dir() { 0 } else { md.len() },
                mtime,
                data,
                x
            ));
            if md.is_file() && md.nlink() > 1 {
                inodes.entry(md.ino()).or_default().push(rel.display().to_string());
            }
            if md.is_dir() {
                for e in std::fs::read_dir(&p).unwrap() {
                    stack.push(rel.join(e.unwrap().file_name()));
                }
            }
        }
        let mut groups: Vec<String> = inodes
            .into_values()
            .map(|mut v| {
                v.sort();
                v.join("=")
            })
            .collect();
        groups.sort();
        out.sort();
        out.extend(groups);
        out
    }

    #[test]
    fn update_mode_leaves_what_a_fresh_copy_would() {
        let src = tmpdir("usrc");
        let dst = tmpdir("udst");
        let fresh = tmpdir("ufresh");
        let w = |p: &str, d: &[u8]| {
            let p = src.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, d).unwrap();
        };
        w("keep", b"same");
        w("change", b"old data");
        w("grow", b"x");
        w("meta", b"metadata only");
        w("gone", b"deleted later");
        w("dir/deep/file", b"in a tree that goes");
        w("becomes-dir", b"a file first");
        w("was-dir/inner", b"a dir first");
        w("linked", b"one inode");
        std::fs::hard_link(src.join("linked"), src.join("link2")).unwrap();
        w("separate", b"two inodes");
        w("to-link", b"joins separate");
        std::os::unix::fs::symlink("keep", src.join("sym")).unwrap();
        std::fs::write(src.join("big"), vec![3u8; 3 << 20]).unwrap();
        rustix::fs::setxattr(src.join("meta"), "user.a", b"1", rustix::fs::XattrFlags::empty()).unwrap();
        let opts = CopyOptions::default();
        copy_tree(&src, &dst, &opts, &Job::new()).unwrap();
        // Every kind of change.
        std::thread::sleep(std::time::Duration::from_millis(20));
        w("change", b"new data");
        w("grow", b"xxxxxxxx");
        std::fs::set_permissions(src.join("meta"), std::fs::Permissions::from_mode(0o640)).unwrap();
        rustix::fs::removexattr(src.join("meta"), "user.a").unwrap();
        rustix::fs::setxattr(src.join("meta"), "user.b", b"2", rustix::fs::XattrFlags::empty()).unwrap();
        std::fs::remove_file(src.join("gone")).unwrap();
        std::fs::remove_dir_all(src.join("dir")).unwrap();
        std::fs::remove_file(src.join("becomes-dir")).unwrap();
        w("becomes-dir/now", b"a dir now");
        std::fs::remove_dir_all(src.join("was-dir")).unwrap();
        w("was-dir", b"a file now");
        // Link broken, link made.
        std::fs::remove_file(src.join("link2")).unwrap();
        w("link2", b"own inode now");
        std::fs::remove_file(src.join("to-link")).unwrap();
        std::fs::hard_link(src.join("separate"), src.join("to-link")).unwrap();
        std::fs::remove_file(src.join("sym")).unwrap();
        std::os::unix::fs::symlink("grow", src.join("sym")).unwrap();
        w("new/file", b"brand new");
        let mut big = std::fs::OpenOptions::new().write(true).open(src.join("big")).unwrap();
        use std::io::{Seek, Write};
        big.seek(std::io::SeekFrom::Start(1 << 20)).unwrap();
        big.write_all(b"changed in the middle").unwrap();
        drop(big);
        let up = CopyOptions { update: Some(Update::default()), ..Default::default() };
        let stats = copy_tree(&src, &dst, &up, &Job::new()).unwrap();
        copy_tree(&src, &fresh, &opts, &Job::new()).unwrap();
        assert_eq!(snapshot(&dst), snapshot(&fresh));
        assert!(stats.unchanged >= 2, "{stats:?}");
        assert!(stats.metadata_only >= 1, "{stats:?}");
        assert!(stats.deleted >= 4, "{stats:?}");
        // A second update finds nothing to do (directories apart, whose times it checks).
        let again = copy_tree(&src, &dst, &up, &Job::new()).unwrap();
        assert_eq!((again.rewritten, again.metadata_only, again.deleted), (0, 0, 0), "{again:?}");
        // A change behind an mtime set back: found by the source's inode change.
        let t = std::fs::metadata(src.join("keep")).unwrap().modified().unwrap();
        w("keep", b"SAME");
        std::fs::File::options().write(true).open(src.join("keep")).unwrap().set_modified(t).unwrap();
        copy_tree(&src, &dst, &up, &Job::new()).unwrap();
        assert_eq!(std::fs::read(dst.join("keep")).unwrap(), b"SAME");
        // A change made to the copy, with its mtime set back: found only with checksum (or
        // with the time of the last sync, which this test does not give).
        std::fs::write(dst.join("keep"), b"Same").unwrap();
        std::fs::File::options().write(true).open(dst.join("keep")).unwrap().set_modified(t).unwrap();
        copy_tree(&src, &dst, &up, &Job::new()).unwrap();
        assert_eq!(std::fs::read(dst.join("keep")).unwrap(), b"Same");
        let sum = CopyOptions { update: Some(Update { checksum: true, since: None }), ..Default::default() };
        let s = copy_tree(&src, &dst, &sum, &Job::new()).unwrap();
        assert_eq!(std::fs::read(dst.join("keep")).unwrap(), b"SAME");
        assert_eq!(s.rewritten, 1, "{s:?}");
        // With the time of the last sync, a change made to the copy since is found too.
        std::fs::write(dst.join("keep"), b"Same").unwrap();
        std::fs::File::options().write(true).open(dst.join("keep")).unwrap().set_modified(t).unwrap();
        let since = CopyOptions { update: Some(Update { checksum: false, since: Some(0) }), ..Default::default() };
        copy_tree(&src, &dst, &since, &Job::new()).unwrap();
        assert_eq!(std::fs::read(dst.join("keep")).unwrap(), b"SAME");
        for d in [src, dst, fresh] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn tracked_update_compares_only_the_changed_directories() {
        let src = tmpdir("tsrc");
        let dst = tmpdir("tdst");
        let fresh = tmpdir("tfresh");
        let w = |p: &str, d: &[u8]| {
            let p = src.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, d).unwrap();
        };
        w("a/b/changed", b"old");
        w("a/b/same", b"same");
        w("a/linked", b"one inode");
        std::fs::hard_link(src.join("a/linked"), src.join("a/b/link2")).unwrap();
        w("c/untracked", b"old");
        w("d/gone/inner", b"goes");
        copy_tree(&src, &dst, &CopyOptions::default(), &Job::new()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        w("a/b/changed", b"new data");
        w("a/b/new/deep", b"a new tree");
        std::fs::remove_dir_all(src.join("d/gone")).unwrap();
        std::fs::set_permissions(src.join("a/b/same"), std::fs::Permissions::from_mode(0o600)).unwrap();
        // A change the tracker did not report: left alone (only the changed are compared).
        w("c/untracked", b"new");
        // The data of a multiply-linked file, through a name not made since: in place.
        w("a/linked", b"one inode, new data");
        let tracked_names = |dirs: &[(&str, Option<&[&str]>)], made: &[&str]| CopyOptions {
            update: Some(Update::default()),
            changed: Some(Arc::new(Changed::new(
                dirs.iter()
                    .map(|(d, n)| (PathBuf::from(d), n.map(|n| n.iter().map(std::ffi::OsString::from).collect()))),
                made.iter().map(PathBuf::from),
            ))),
            ..Default::default()
        };
        let tracked =
            |dirs: &[&str], made: &[&str]| tracked_names(&dirs.iter().map(|d| (*d, None)).collect::<Vec<_>>(), made);
        let s = copy_tree(&src, &dst, &tracked(&["a/b", "a", "d"], &["a/b/new"]), &Job::new()).unwrap();
        assert!(!s.links_unsure, "{s:?}");
        assert_eq!(std::fs::read(dst.join("a/b/changed")).unwrap(), b"new data");
        assert_eq!(std::fs::read(dst.join("a/b/new/deep")).unwrap(), b"a new tree");
        assert_eq!(std::fs::read(dst.join("a/b/link2")).unwrap(), b"one inode, new data", "links kept");
        assert!(!dst.join("d/gone").exists());
        assert_eq!(std::fs::metadata(dst.join("a/b/same")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(dst.join("c/untracked")).unwrap(), b"old", "c was not walked");
        // With c reported too, the copy equals a fresh one.
        let s = copy_tree(&src, &dst, &tracked(&["c"], &[]), &Job::new()).unwrap();
        copy_tree(&src, &fresh, &CopyOptions::default(), &Job::new()).unwrap();
        assert_eq!(snapshot(&dst), snapshot(&fresh));
        assert_eq!(s.rewritten, 1, "{s:?}");
        // Only some names of a directory changed: those are compared, a gone one deleted,
        // and another change there (not reported) is left alone.
        w("c/second", b"new");
        w("c/third", b"new");
        std::fs::remove_file(src.join("c/untracked")).unwrap();
        let s =
            copy_tree(&src, &dst, &tracked_names(&[("c", Some(&["second", "untracked"]))], &[]), &Job::new()).unwrap();
        assert_eq!(std::fs::read(dst.join("c/second")).unwrap(), b"new");
        assert!(!dst.join("c/untracked").exists(), "{s:?}");
        assert!(!dst.join("c/third").exists(), "only the names given were compared");
        assert_eq!(s.deleted, 1, "{s:?}");
        // Given whole, the rest follows.
        copy_tree(&src, &dst, &tracked(&["c"], &[]), &Job::new()).unwrap();
        copy_tree(&src, &fresh, &CopyOptions { update: Some(Update::default()), ..Default::default() }, &Job::new())
            .unwrap();
        assert_eq!(snapshot(&dst), snapshot(&fresh));
        w("c/untracked", b"back");
        // A link made since, to a file elsewhere: the copy cannot follow it, and says so.
        std::fs::hard_link(src.join("c/untracked"), src.join("a/b/made")).unwrap();
        let s = copy_tree(&src, &dst, &tracked(&["a/b"], &["a/b/made"]), &Job::new()).unwrap();
        assert!(s.links_unsure, "{s:?}");
        for d in [src, dst, fresh] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn cancel_stops_the_copy() {
        let src = tmpdir("csrc");
        let dst = tmpdir("cdst");
        for i in 0..50 {
            std::fs::write(src.join(format!("f{i}")), b"x").unwrap();
        }
        let job = Job::new();
        job.cancel();
        let r = copy_tree(&src, &dst, &CopyOptions::default(), &job);
        assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
        std::fs::remove_dir_all(&src).unwrap();
        std::fs::remove_dir_all(&dst).unwrap();
    }
}
