//! The file copy engine: copies one mounted filesystem tree into another, file by file,
//! never crossing into another mount, keeping everything a root system depends on.
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
//! How: a pool of worker threads takes directories from a shared stack (depth first, so
//! pending work stays proportional to depth, not to the tree). A worker lists a directory,
//! creates its entries, copies small files itself and queues large files and
//! subdirectories. Each directory is a reference-counted node held by its queued children;
//! when the last child is done the node drops and sets the directory's metadata, so times
//! are right without keeping a list of every directory. The only whole-tree state is the
//! hard-link table, holding one entry per multiply-linked inode.
//!
//! Order of metadata per entry: create, data, owner (chown clears capabilities and
//! setuid bits), xattrs, mode, times, flags.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rustix::fs::{AtFlags, FileType, IFlags, Mode, OFlags, Statx, StatxFlags, Timestamps, CWD};
use rustix::io::Errno;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{Event, Job};
use crate::write::exclude::ExcludeList;

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
fn copyable_flags() -> IFlags {
    IFlags::IMMUTABLE
        | IFlags::APPEND
        | IFlags::NODUMP
        | IFlags::NOATIME
        | IFlags::SYNC
        | IFlags::DIRSYNC
        | IFlags::NOCOW
}

#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Worker threads; 0 means the default for this machine.
    pub threads: usize,
    pub exclude: Arc<ExcludeList>,
    /// The `./path` form of the source root in the whole system ("." for the root
    /// filesystem, "./home" for /home), so exclude patterns see full paths.
    pub rel_prefix: String,
    /// Report files whose size or times changed while they were copied (live copies).
    pub detect_changes: bool,
    /// Files never to copy, by (st_dev, st_ino): image files the clone is being written to.
    pub skip: Arc<std::collections::HashSet<(u64, u64)>>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            threads: 0,
            exclude: Arc::new(ExcludeList::empty()),
            rel_prefix: ".".into(),
            detect_changes: true,
            skip: Arc::default(),
        }
    }
}

fn default_threads() -> usize {
    if let Some(n) = std::env::var("ALTDISK_COPY_THREADS").ok().and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0)
    {
        return n;
    }
    // Cold reads are latency-bound: keep several requests in flight per core.
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    (cpus * 4).clamp(4, 32)
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
    pub bytes: u64,
    pub sparse_files: u64,
    pub changed_count: u64,
    pub changed: Vec<String>,
    pub vanished: u64,
    pub error_count: u64,
    pub errors: Vec<String>,
    /// Metadata that the target filesystem cannot hold (vfat: owners, xattrs), counted.
    pub metadata_dropped: u64,
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
    bytes: AtomicU64,
    sparse: AtomicU64,
    vanished: AtomicU64,
    dropped: AtomicU64,
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
    abort: AtomicBool,
    fatal: Mutex<Option<Error>>,
    errors: Mutex<Named>,
    changed: Mutex<Named>,
    links: Mutex<HashMap<(u64, u64), PathBuf>>,
    c: Counters,
    cfr_works: AtomicBool,
}

/// The work queue, apart from [`Shared`] so that queued nodes (which hold `Shared`) do not
/// form a cycle with it.
struct Pool {
    queue: Mutex<Queue>,
    wake: Condvar,
}

struct Queue {
    tasks: Vec<Task>,
    active: usize,
}

enum Task {
    Dir(Arc<DirNode>),
    File { parent: Arc<DirNode>, name: CString, st: Box<Statx> },
}

/// A directory being copied. Dropped when it and everything below it is done, at which
/// point its metadata is applied to the copy.
struct DirNode {
    shared: Arc<Shared>,
    rel: PathBuf,
    st: Statx,
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
            let dfd = rustix::fs::open(
                &dst,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ("opening the copied directory".to_string(), e))?;
            let sfd = rustix::fs::open(
                &src,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok();
            s.finish_fd(sfd.as_ref().map(|f| f.as_fd()), &dfd, &self.st, true)
        })();
        if let Err((what, e)) = r {
            s.error(&self.rel, &what, e);
        }
    }
}

fn is_type(st: &Statx, t: FileType) -> bool {
    FileType::from_raw_mode(st.stx_mode as u32) == t
}

fn mode_bits(st: &Statx) -> Mode {
    Mode::from_raw_mode(st.stx_mode as u32 & 0o7777)
}

fn timestamps(st: &Statx) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: st.stx_atime.tv_sec, tv_nsec: st.stx_atime.tv_nsec as _ },
        last_modification: rustix::fs::Timespec { tv_sec: st.stx_mtime.tv_sec, tv_nsec: st.stx_mtime.tv_nsec as _ },
    }
}

fn statx_at(dirfd: impl AsFd, name: &CStr) -> rustix::io::Result<Statx> {
    rustix::fs::statx(dirfd, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)
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
}

impl Pool {
    fn push(&self, t: Task) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).tasks.push(t);
        self.wake.notify_one();
    }
}

impl Shared {
    fn worker(self: &Arc<Self>, pool: &Pool) {
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            let task = {
                let mut q = pool.queue.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if self.abort.load(Ordering::Relaxed) {
                        // Drop what is queued so nodes release; they skip their metadata.
                        q.tasks.clear();
                    }
                    if let Some(t) = q.tasks.pop() {
                        q.active += 1;
                        break Some(t);
                    }
                    if q.active == 0 {
                        break None;
                    }
                    q = pool.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let Some(task) = task else {
                pool.wake.notify_all();
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
                            (Ok(s), Ok(d)) => self.copy_entry(&s, &d, &name, &rel, &st, &mut buf),
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
        let dir = match rustix::fs::Dir::read_from(&sfd) {
            Ok(d) => d,
            Err(e) => return self.error(&node.rel, "reading the directory", e),
        };
        for ent in dir {
            if self.abort.load(Ordering::Relaxed) {
                return;
            }
            let ent = match ent {
                Ok(e) => e,
                Err(e) => return self.error(&node.rel, "reading the directory", e),
            };
            let name = ent.file_name();
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
                Err(Errno::NOENT) => {
                    self.c.vanished.fetch_add(1, Ordering::Relaxed);
                    self.changed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("{} (vanished)", self.show(&rel)));
                    continue;
                }
                Err(e) => {
                    self.error(&rel, "reading its status", e);
                    continue;
                }
            };
            if !self.opts.skip.is_empty()
                && self.opts.skip.contains(&(rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino))
            {
                self.c.excluded.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if is_type(&st, FileType::Directory) {
                self.make_dir(pool, &node, &sfd, &dfd, name, rel, st);
            } else if is_type(&st, FileType::RegularFile) && st.stx_size >= LARGE_FILE && st.stx_nlink == 1 {
                pool.push(Task::File { parent: node.clone(), name: name.to_owned(), st: Box::new(st) });
            } else {
                self.copy_entry(&sfd, &dfd, name, &rel, &st, buf);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn make_dir(
        self: &Arc<Self>,
        pool: &Pool,
        parent: &Arc<DirNode>,
        sfd: &OwnedFd,
        dfd: &OwnedFd,
        name: &CStr,
        rel: PathBuf,
        st: Statx,
    ) {
        let mount_point = st.stx_mnt_id != self.src_mnt_id;
        let subvol = !mount_point && self.src_btrfs && st.stx_ino == BTRFS_FIRST_FREE_OBJECTID;
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
            Err(Errno::EXIST) if statx_at(dfd, name).map(|s| is_type(&s, FileType::Directory)).unwrap_or(false) => {}
            Err(e) => return self.error(&rel, "creating the directory", e),
        }
        self.c.dirs.fetch_add(1, Ordering::Relaxed);
        self.job.add_file();
        if self.job.list_files() {
            self.job.emit(Event::Copied { path: self.show(&rel) });
        }
        if mount_point {
            // Another filesystem is mounted here: the copy gets an empty mount point with the
            // visible directory's metadata, and is not entered.
            self.c.mount_points.fetch_add(1, Ordering::Relaxed);
            let r = rustix::fs::openat(dfd, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ("opening the mount point".to_string(), e))
                .and_then(|d| self.finish_fd(None, &d, &st, false));
            if let Err((what, e)) = r {
                self.error(&rel, &what, e);
            }
            let _ = sfd;
            return;
        }
        pool.push(Task::Dir(Arc::new(DirNode { shared: self.clone(), rel, st, _parent: Some(parent.clone()) })));
    }

    fn copy_entry(&self, sfd: &OwnedFd, dfd: &OwnedFd, name: &CStr, rel: &Path, st: &Statx, buf: &mut [u8]) {
        self.job.set_current(rel);
        let ft = FileType::from_raw_mode(st.stx_mode as u32);
        if ft == FileType::Socket {
            // A socket is a rendezvous of a running program, meaningless in a copy.
            self.c.sockets.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if st.stx_nlink > 1 {
            let key = ((st.stx_dev_major as u64) << 32 | st.stx_dev_minor as u64, st.stx_ino);
            let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(first) = links.get(&key) {
                let first = self.dst_root.join(first);
                drop(links);
                match rustix::fs::linkat(CWD, &first, dfd, name, AtFlags::empty()) {
                    Ok(()) => {
                        self.c.hardlinks.fetch_add(1, Ordering::Relaxed);
                        self.job.add_file();
                        if self.job.list_files() {
                            self.job.emit(Event::Copied { path: self.show(rel) });
                        }
                    }
                    Err(e) => self.error(rel, "making the hard link", e),
                }
                return;
            }
            // Create under the lock so a racing link to the same inode finds the file.
            let r = self.create_entry(sfd, dfd, name, rel, st, ft, buf, true);
            links.insert(key, rel.to_path_buf());
            drop(links);
            if let Some(f) = r {
                self.fill_entry(sfd, dfd, name, rel, st, ft, f, buf);
            }
            return;
        }
        if let Some(f) = self.create_entry(sfd, dfd, name, rel, st, ft, buf, false) {
            self.fill_entry(sfd, dfd, name, rel, st, ft, f, buf);
        }
    }

    /// Make the entry exist at the target. For regular files returns the open pair of
    /// descriptors; for the rest finishes them entirely and returns `None`.
    #[allow(clippy::too_many_arguments)]
    fn create_entry(
        &self,
        sfd: &OwnedFd,
        dfd: &OwnedFd,
        name: &CStr,
        rel: &Path,
        st: &Statx,
        ft: FileType,
        _buf: &mut [u8],
        _linked: bool,
    ) -> Option<(OwnedFd, OwnedFd)> {
        match ft {
            FileType::RegularFile => {
                let src = match rustix::fs::openat(
                    sfd,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME,
                    Mode::empty(),
                )
                .or_else(|_| {
                    rustix::fs::openat(sfd, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                }) {
                    Ok(f) => f,
                    Err(Errno::NOENT) => {
                        self.c.vanished.fetch_add(1, Ordering::Relaxed);
                        self.changed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("{} (vanished)", self.show(rel)));
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

    #[allow(clippy::too_many_arguments)]
    fn fill_entry(
        &self,
        _sfd: &OwnedFd,
        _dfd: &OwnedFd,
        _name: &CStr,
        rel: &Path,
        st: &Statx,
        _ft: FileType,
        (src, dst): (OwnedFd, OwnedFd),
        buf: &mut [u8],
    ) {
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
                if now.stx_size != st.stx_size
                    || (now.stx_mtime.tv_sec, now.stx_mtime.tv_nsec) != (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec)
                    || (now.stx_ctime.tv_sec, now.stx_ctime.tv_nsec) != (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec)
                {
                    self.changed.lock().unwrap_or_else(|p| p.into_inner()).push(self.show(rel));
                }
            }
        }
        if let Err((w, e)) = self.finish_fd(Some(src.as_fd()), &dst, st, false) {
            return self.error(rel, &w, e);
        }
        if !sflags.is_empty() && !self.dst_lossy {
            if let Err(e) = set_flags(&dst, sflags) {
                self.error(rel, "setting its inode flags", e);
            }
        }
        self.c.files.fetch_add(1, Ordering::Relaxed);
        self.done_entry(rel, copied);
    }

    fn done_entry(&self, rel: &Path, bytes: u64) {
        self.job.add_file();
        if self.job.list_files() {
            self.job.emit(Event::Copied { path: self.show(rel) });
        }
        let _ = bytes;
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
        src: Option<std::os::fd::BorrowedFd<'_>>,
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
            copy_xattrs_fd(src, dst).map_err(|(n, e)| (format!("copying xattr {n}"), e))?;
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
            copy_xattrs_path(&src, &dst).map_err(|e| ("copying its xattrs", e))?;
            if !is_link {
                rustix::fs::chmodat(dfd, name, mode_bits(st), AtFlags::empty()).map_err(|e| ("setting its mode", e))?;
            }
        }
        rustix::fs::utimensat(dfd, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ("setting its times", e))?;
        Ok(())
    }
}

/// Add the copied flags to those the target filesystem set itself (ext4's extents flag
/// cannot be cleared, and SETFLAGS replaces the whole set).
fn set_flags(dst: &OwnedFd, flags: IFlags) -> rustix::io::Result<()> {
    let current = rustix::fs::ioctl_getflags(dst).unwrap_or(IFlags::empty());
    let want = (current - copyable_flags()) | flags;
    if want == current {
        return Ok(());
    }
    rustix::fs::ioctl_setflags(dst, want)
}

fn open_dir(p: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

/// Split a listxattr buffer into names. XFS shows its on-disk form of POSIX ACLs as
/// `trusted.SGI_ACL_*` besides `system.posix_acl_*`; only the latter is portable.
fn xattr_names(list: &[u8]) -> impl Iterator<Item = &CStr> {
    list.split_inclusive(|&b| b == 0)
        .filter_map(|n| CStr::from_bytes_with_nul(n).ok())
        .filter(|n| !n.is_empty() && !n.to_bytes().starts_with(b"trusted.SGI_ACL_"))
}

fn copy_xattrs_fd(src: std::os::fd::BorrowedFd<'_>, dst: &OwnedFd) -> std::result::Result<(), (String, Errno)> {
    let mut list = [0u8; 65536];
    let n = match rustix::fs::flistxattr(src, &mut list[..]) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(("list".into(), e)),
    };
    if n == 0 {
        return Ok(());
    }
    let mut val = vec![0u8; 65536];
    for name in xattr_names(&list[..n]) {
        let len = match rustix::fs::fgetxattr(src, name, &mut val[..]) {
            Ok(l) => l,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err((name.to_string_lossy().into_owned(), e)),
        };
        rustix::fs::fsetxattr(dst, name, &val[..len], rustix::fs::XattrFlags::empty())
            .map_err(|e| (name.to_string_lossy().into_owned(), e))?;
    }
    Ok(())
}

fn copy_xattrs_path(src: &Path, dst: &Path) -> rustix::io::Result<()> {
    let mut list = [0u8; 65536];
    let n = match rustix::fs::llistxattr(src, &mut list[..]) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e),
    };
    if n == 0 {
        return Ok(());
    }
    let mut val = vec![0u8; 65536];
    for name in xattr_names(&list[..n]) {
        let len = match rustix::fs::lgetxattr(src, name, &mut val[..]) {
            Ok(l) => l,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(e),
        };
        rustix::fs::lsetxattr(dst, name, &val[..len], rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
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
/// which must exist (normally the root of a fresh filesystem). Stops at mount points.
/// Per-entry failures are collected and returned as [`Error::CopyFailed`] at the end; a full
/// or failing target stops the copy at once; cancellation through `job` stops it cleanly.
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
    let shared = Arc::new(Shared {
        src_root: src.to_path_buf(),
        dst_root: dst.to_path_buf(),
        src_mnt_id: root_st.stx_mnt_id,
        src_btrfs: fs_magic(src)? == BTRFS_SUPER_MAGIC,
        dst_btrfs: dst_magic == BTRFS_SUPER_MAGIC,
        dst_lossy: dst_magic == MSDOS_SUPER_MAGIC,
        opts: opts.clone(),
        job: job.clone(),
        abort: AtomicBool::new(false),
        fatal: Mutex::new(None),
        errors: Mutex::new(Named::default()),
        changed: Mutex::new(Named::default()),
        links: Mutex::new(HashMap::new()),
        c: Counters::default(),
        cfr_works: AtomicBool::new(true),
    });
    let pool = Pool { queue: Mutex::new(Queue { tasks: Vec::new(), active: 0 }), wake: Condvar::new() };
    let threads = if opts.threads == 0 { default_threads() } else { opts.threads };
    {
        let root = Arc::new(DirNode { shared: shared.clone(), rel: PathBuf::new(), st: root_st, _parent: None });
        pool.push(Task::Dir(root));
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| shared.worker(&pool));
            }
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
        bytes: c.bytes.load(Ordering::Relaxed),
        sparse_files: c.sparse.load(Ordering::Relaxed),
        changed_count: changed.count,
        changed: changed.names,
        vanished: c.vanished.load(Ordering::Relaxed),
        error_count: errors.count,
        errors: errors.names.clone(),
        metadata_dropped: c.dropped.load(Ordering::Relaxed),
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
