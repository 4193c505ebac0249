//! What changed in a system's filesystems, tracked as it happens, so that a refresh compares
//! only the directories that changed since the clone was last brought in line instead of
//! walking both trees (issue: a refresh after 1 % of the files changed).
//!
//! The tracker ([`track`], `altdisk track`, run by `altdisk-changes.service` from boot) puts
//! one fanotify mark on each ext4 or xfs filesystem of the system (`FAN_MARK_FILESYSTEM`,
//! reporting the directory and name of each event) and keeps, per filesystem, the set of
//! directories in which something was created, deleted, moved, written or given new
//! metadata, with the time it last saw such an event there. It writes nothing on its own.
//!
//! A refresh asks it ([`changed_since`]): it makes a file in [`BARRIER_DIR`] and waits until
//! the tracker has read that event and written its state (in [`STATE_DIR`]) naming it, so every
//! change made before the question is in the answer. The answer is used only when it is
//! complete: a tracker of this boot has watched every filesystem of the source since before
//! the clone's last copy began (it starts afresh when events were lost, or when its lists
//! grow past a bound). Otherwise the refresh walks everything, as it always did, and says
//! why. The clone's side is vouched for by [`crate::run`]'s refresh: asleep, and not mounted
//! since its last copy (ext4's mount count).
//!
//! Writes through a shared writable memory mapping raise no event while the mapping lasts
//! (its going closes the file: an event): a refresh also compares the directories of the
//! files mapped so at the time ([`mapped_writable`]).
//!
//! Within a changed directory only the entries events named are compared, unless an event
//! named the directory itself. Inode flags set alone (`chattr`) raise no event: a refresh
//! by the list does not see them (`--checksum` and verify do).
//!
//! A hard link is the one thing a directory list cannot follow: a multiply-linked file
//! whose name was made since is left to a walk of the whole tree (see
//! [`crate::write::copy::Changed`]).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Where each tracker writes its answer (`PID.json`), when it starts and when it sees a
/// barrier.
pub const STATE_DIR: &str = "/run/altdisk/changes";
/// Where a refresh makes its barrier file: on the root filesystem, which is always tracked.
pub const BARRIER_DIR: &str = "/var/lib/altdisk/changes";
/// Above this many changed directories, or names made in them, in one filesystem the tracker
/// starts afresh (memory stays bounded; a clone synced before then is compared in full once).
const MAX_DIRS: usize = 200_000;
const MAX_NAMES: usize = 1_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub boot_id: String,
    pub pid: u32,
    /// The last barrier seen: every event before it is in this state.
    pub barrier: String,
    pub filesystems: Vec<FsState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FsState {
    /// Where the tracker sees it mounted.
    pub path: PathBuf,
    /// Its device number (st_dev of its root).
    pub dev: u64,
    /// When tracking it began ([`clock`]): no change after this was missed.
    pub since: i64,
    /// The directories in which something changed, with what.
    pub dirs: Vec<DirState>,
}

/// A changed directory: since when its whole list is to be compared (an event that named
/// no entry), and the entries events named.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirState {
    /// Relative to the filesystem's root ("" for the root), as bytes (names need not be UTF-8).
    #[serde(with = "hex")]
    pub path: Vec<u8>,
    /// The last event that named no entry of it ([`clock`]; 0: none).
    pub whole: i64,
    pub names: Vec<NameState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameState {
    #[serde(with = "hex")]
    pub name: Vec<u8>,
    /// The last event that named it.
    pub when: i64,
    /// The last time it was made (created, linked, moved there), when it is no directory.
    pub made: Option<i64>,
}

/// Bytes as a hex string in the state file.
mod hex {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| D::Error::custom("not hex"))
    }
}

/// What the refresh of one filesystem may take as changed, or why it must walk everything.
pub type Answer = std::result::Result<Changes, String>;

/// The changes in one filesystem since a time.
#[derive(Debug, Default)]
pub struct Changes {
    /// Changed directories (relative to the root), each with the names in it that changed,
    /// or None when its whole list is to be compared.
    pub dirs: Vec<(PathBuf, Option<Vec<std::ffi::OsString>>)>,
    /// Names of other than directories made since, relative to the root.
    pub made: Vec<PathBuf>,
}

// fanotify, from <linux/fanotify.h>.
const FAN_CLOEXEC: u32 = 0x1;
const FAN_CLASS_NOTIF: u32 = 0x0;
const FAN_UNLIMITED_QUEUE: u32 = 0x10;
const FAN_REPORT_DIR_FID: u32 = 0x400;
const FAN_REPORT_NAME: u32 = 0x800;
const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_FILESYSTEM: u32 = 0x100;
const FAN_MODIFY: u64 = 0x2;
const FAN_ATTRIB: u64 = 0x4;
const FAN_CLOSE_WRITE: u64 = 0x8;
const FAN_MOVED_FROM: u64 = 0x40;
const FAN_MOVED_TO: u64 = 0x80;
const FAN_CREATE: u64 = 0x100;
const FAN_DELETE: u64 = 0x200;
const FAN_Q_OVERFLOW: u64 = 0x4000;
const FAN_ONDIR: u64 = 0x4000_0000;
const FAN_EVENT_INFO_TYPE_DFID_NAME: u8 = 2;
const FAN_EVENT_INFO_TYPE_DFID: u8 = 3;
const EVENTS: u64 =
    FAN_MODIFY | FAN_ATTRIB | FAN_CLOSE_WRITE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_CREATE | FAN_DELETE | FAN_ONDIR;

/// Now on the clock the tracker keeps its times by: nanoseconds since this boot
/// (`CLOCK_BOOTTIME`), which no adjustment of the wall clock moves; a time on it means
/// something only with the boot it belongs to ([`boot_id`]).
pub fn clock() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// This boot's identity (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string()
}

/// A path for a system call.
fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::corrupt(path.display().to_string(), "it holds a NUL byte"))
}

/// Add a fanotify mark on `path` for `mask`.
fn mark(fan: &OwnedFd, flags: u32, mask: u64, path: &Path) -> Result<()> {
    let c = c_path(path)?;
    if unsafe { libc::fanotify_mark(fan.as_raw_fd(), FAN_MARK_ADD | flags, mask, libc::AT_FDCWD, c.as_ptr()) } != 0 {
        return Err(Error::io("tracking changes (fanotify_mark)", path, std::io::Error::last_os_error()));
    }
    Ok(())
}

fn fsid(path: &Path) -> Result<[i32; 2]> {
    let c = c_path(path)?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::io("reading the filesystem of", path, std::io::Error::last_os_error()));
    }
    // SAFETY: fsid_t is two ints.
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(st.f_fsid) })
}

/// One filesystem being tracked.
struct Tracked {
    path: PathBuf,
    dev: u64,
    fsid: [i32; 2],
    mount: OwnedFd,
    since: i64,
    /// Directory file handle (type, then bytes) → what changed in it.
    dirs: HashMap<Vec<u8>, Dir>,
    /// Names in `dirs`.
    names: usize,
}

impl Tracked {
    /// Forget everything and start afresh at `now`: changes before are no longer known.
    fn restart(&mut self, now: i64) {
        self.dirs = HashMap::new();
        self.names = 0;
        self.since = now;
    }
}

#[derive(Default)]
struct Dir {
    /// The last event that named no entry of it (0: none).
    whole: i64,
    /// Entries events named: when the last named it, and when it was last made (no
    /// directory).
    names: HashMap<Vec<u8>, (i64, Option<i64>)>,
}

/// Above this many names in one directory, its whole list is compared instead.
const MAX_NAMES_PER_DIR: usize = 10_000;

/// Track the filesystems mounted at `roots` (their root directories) until the process is
/// stopped. Only ext4 and xfs are tracked: others are left out, and a refresh of them walks.
pub fn track(roots: &[PathBuf]) -> Result<()> {
    let mut kinds = Vec::new();
    for root in roots {
        let kind = fs_type(root)?;
        if kind == "ext4" || kind == "xfs" {
            kinds.push(root.clone());
        } else {
            tracing::warn!("{}: {kind} is not tracked; a refresh of it compares every directory", root.display());
        }
    }
    if kinds.is_empty() {
        // A live system (overlay), or only filesystems that cannot be tracked.
        tracing::warn!("nothing to track here");
        return Ok(());
    }
    // Trackers of this boot that are gone leave their answers: remove them.
    if let Ok(dir) = std::fs::read_dir(STATE_DIR) {
        let live: Vec<u32> = trackers().iter().map(|s| s.pid).collect();
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.trim_start_matches('.').split('.').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !live.contains(&p)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let roots = kinds;
    let fd = unsafe {
        libc::fanotify_init(
            FAN_CLOEXEC | FAN_CLASS_NOTIF | FAN_UNLIMITED_QUEUE | FAN_REPORT_DIR_FID | FAN_REPORT_NAME,
            (libc::O_RDONLY | libc::O_LARGEFILE) as u32,
        )
    };
    if fd < 0 {
        return Err(Error::io("starting change tracking (fanotify_init)", "/", std::io::Error::last_os_error()));
    }
    let fan = unsafe { OwnedFd::from_raw_fd(fd) };
    std::fs::create_dir_all(BARRIER_DIR).ctx("making the directory", BARRIER_DIR)?;
    let barrier_fsid = fsid(Path::new(BARRIER_DIR))?;
    let barrier_handle = handle_of(Path::new(BARRIER_DIR))?;
    // The barrier directory itself, whichever filesystem holds it.
    mark(&fan, 0, FAN_CREATE, Path::new(BARRIER_DIR))?;
    let mut tracked: Vec<Tracked> = Vec::new();
    for root in &roots {
        let since = clock();
        mark(&fan, FAN_MARK_FILESYSTEM, EVENTS, root)?;
        let mount = std::fs::File::open(root).ctx("opening", root)?.into();
        let dev = std::fs::metadata(root).ctx("reading the status of", root)?.dev();
        tracked.push(Tracked {
            path: root.clone(),
            dev,
            fsid: fsid(root)?,
            mount,
            since,
            dirs: HashMap::new(),
            names: 0,
        });
        tracing::warn!("tracking changes in {}", root.display());
    }
    // Say who tracks, so that a refresh knows whom to ask.
    write_state(&tracked, "", i64::MAX)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = unsafe { libc::read(fan.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("reading change events", "/", e));
        }
        let now = clock();
        let mut barrier = None;
        for ev in events(&buf[..n as usize]) {
            if ev.mask & FAN_Q_OVERFLOW != 0 {
                // Events were lost: what is known from here on is complete again.
                for t in &mut tracked {
                    t.restart(now);
                }
                continue;
            }
            if ev.fsid == barrier_fsid && ev.handle == barrier_handle {
                if ev.mask & FAN_CREATE != 0 && !ev.name.is_empty() {
                    barrier = Some(String::from_utf8_lossy(&ev.name).into_owned());
                }
                continue;
            }
            let Some(t) = tracked.iter_mut().find(|t| t.fsid == ev.fsid) else { continue };
            if (t.dirs.len() >= MAX_DIRS && !t.dirs.contains_key(&ev.handle)) || t.names >= MAX_NAMES {
                t.restart(now);
            }
            let made = ev.mask & (FAN_CREATE | FAN_MOVED_TO) != 0 && ev.mask & FAN_ONDIR == 0;
            let e = t.dirs.entry(ev.handle).or_default();
            if ev.name.is_empty() || ev.name == b"." {
                e.whole = now;
                continue;
            }
            if e.names.len() >= MAX_NAMES_PER_DIR && !e.names.contains_key(&ev.name) {
                // Too many to list: the whole directory, keeping the names made (hard links).
                e.whole = now;
                e.names.retain(|_, (_, m)| m.is_some());
                if !made {
                    continue;
                }
            }
            let n = e.names.entry(ev.name).or_insert_with(|| {
                t.names += 1;
                (now, None)
            });
            n.0 = now;
            if made {
                n.1 = Some(now);
            }
        }
        if let Some(b) = barrier {
            // The barrier's name: a nonce, then the time the answer starts from.
            let since = b.rsplit_once('@').and_then(|(_, t)| t.parse().ok()).unwrap_or(0);
            write_state(&tracked, &b, since)?;
        }
    }
}

fn fs_type(root: &Path) -> Result<String> {
    let table = crate::discover::mounts::read()?;
    Ok(crate::discover::mounts::mount_at(&table, root).map(|m| m.fstype.clone()).unwrap_or_default())
}

struct Event {
    mask: u64,
    fsid: [i32; 2],
    /// handle_type (4 bytes, native order), then the handle's bytes.
    handle: Vec<u8>,
    name: Vec<u8>,
}

/// The events in a buffer read from a fanotify group reporting directory handles and names.
fn events(buf: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut at = 0;
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap_or_default());
    while at + 24 <= buf.len() {
        let len = u32_at(buf, at) as usize;
        if len < 24 || at + len > buf.len() {
            break;
        }
        let ev = &buf[at..at + len];
        at += len;
        let meta_len = u16_at(ev, 6) as usize;
        let mask = u64::from_ne_bytes(ev[8..16].try_into().unwrap_or_default());
        let fd = i32::from_ne_bytes(ev[16..20].try_into().unwrap_or_default());
        if fd >= 0 {
            // Not in FID mode; never expected.
            unsafe { libc::close(fd) };
        }
        if mask & FAN_Q_OVERFLOW != 0 {
            out.push(Event { mask, fsid: [0, 0], handle: vec![], name: vec![] });
            continue;
        }
        let mut i = meta_len;
        while i + 4 <= ev.len() {
            let (kind, ilen) = (ev[i], u16_at(ev, i + 2) as usize);
            if ilen < 4 || i + ilen > ev.len() {
                break;
            }
            let info = &ev[i..i + ilen];
            i += ilen;
            if kind != FAN_EVENT_INFO_TYPE_DFID_NAME && kind != FAN_EVENT_INFO_TYPE_DFID {
                continue;
            }
            // header (4), fsid (8), file_handle: handle_bytes (4), handle_type (4), bytes.
            if info.len() < 20 {
                continue;
            }
            let fsid = [
                i32::from_ne_bytes(info[4..8].try_into().unwrap_or_default()),
                i32::from_ne_bytes(info[8..12].try_into().unwrap_or_default()),
            ];
            let hb = u32_at(info, 12) as usize;
            if 20 + hb > info.len() {
                continue;
            }
            let mut handle = info[16..20].to_vec();
            handle.extend_from_slice(&info[20..20 + hb]);
            let name = if kind == FAN_EVENT_INFO_TYPE_DFID_NAME {
                let rest = &info[20 + hb..];
                rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())].to_vec()
            } else {
                vec![]
            };
            out.push(Event { mask, fsid, handle, name });
        }
    }
    out
}

/// `name_to_handle_at` of a directory, in the form [`Event::handle`] has.
fn handle_of(p: &Path) -> Result<Vec<u8>> {
    let c = c_path(p)?;
    let mut raw = vec![0u8; 8 + 128];
    raw[0..4].copy_from_slice(&128u32.to_ne_bytes());
    let mut mount_id: libc::c_int = 0;
    let r = unsafe {
        libc::syscall(libc::SYS_name_to_handle_at, libc::AT_FDCWD, c.as_ptr(), raw.as_mut_ptr(), &mut mount_id, 0)
    };
    if r != 0 {
        return Err(Error::io("reading the file handle of", p, std::io::Error::last_os_error()));
    }
    let hb = u32::from_ne_bytes(raw[0..4].try_into().unwrap_or_default()) as usize;
    let mut h = raw[4..8].to_vec();
    h.extend_from_slice(&raw[8..8 + hb]);
    Ok(h)
}

/// The path (relative to the filesystem's root) of a directory handle; None when it is gone.
fn resolve(t: &Tracked, handle: &[u8]) -> Option<PathBuf> {
    let hb = handle.len().checked_sub(4)?;
    let mut raw = Vec::with_capacity(8 + hb);
    raw.extend_from_slice(&(hb as u32).to_ne_bytes());
    raw.extend_from_slice(&handle[..4]);
    raw.extend_from_slice(&handle[4..]);
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            t.mount.as_raw_fd(),
            raw.as_mut_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    if p.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return None;
    }
    p.strip_prefix(&t.path).ok().map(Path::to_path_buf)
}

/// Write what changed since `since` ([`clock`]), answering the barrier `barrier`.
fn write_state(tracked: &[Tracked], barrier: &str, since: i64) -> Result<()> {
    let state = State {
        boot_id: boot_id(),
        pid: std::process::id(),
        barrier: barrier.to_string(),
        filesystems: tracked
            .iter()
            .map(|t| {
                let mut f = FsState { path: t.path.clone(), dev: t.dev, since: t.since, dirs: Vec::new() };
                for (h, d) in &t.dirs {
                    // Only what changed since the time asked about.
                    let last = d.names.values().map(|(w, _)| *w).max().unwrap_or(0).max(d.whole);
                    if last < since {
                        continue;
                    }
                    let Some(dir) = resolve(t, h) else { continue };
                    f.dirs.push(DirState {
                        path: dir.into_os_string().into_vec(),
                        whole: d.whole,
                        names: d
                            .names
                            .iter()
                            .filter(|(_, (w, _))| *w >= since)
                            .map(|(n, (w, m))| NameState { name: n.clone(), when: *w, made: *m })
                            .collect(),
                    });
                }
                f
            })
            .collect(),
    };
    let dir = Path::new(STATE_DIR);
    std::fs::create_dir_all(dir).ctx("making the directory", dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let path = dir.join(format!("{}.json", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&state).unwrap_or_default()).ctx("writing", &tmp)?;
    std::fs::rename(&tmp, &path).ctx("writing", &path)?;
    Ok(())
}

/// The states of the trackers of this boot that still run.
fn trackers() -> Vec<State> {
    let boot = boot_id();
    let Ok(dir) = std::fs::read_dir(STATE_DIR) else { return vec![] };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| serde_json::from_slice::<State>(&std::fs::read(e.path()).ok()?).ok())
        .filter(|s| s.boot_id == boot && unsafe { libc::kill(s.pid as i32, 0) } == 0)
        .collect()
}

/// The directories that changed since `t0` (on [`clock`], this boot) in each filesystem whose
/// root is one of `roots` (by device number), as the tracker saw them; for each, the reason
/// when the tracker cannot answer for it. Asks the tracker with a barrier, waiting at most
/// a few seconds, and only when a tracker of this boot runs.
pub fn changed_since(roots: &[PathBuf], t0: i64) -> Vec<Answer> {
    let all = |why: String| roots.iter().map(|_| Err(why.clone())).collect();
    let devs: Vec<Option<u64>> = roots.iter().map(|r| std::fs::metadata(r).ok().map(|m| m.dev())).collect();
    // The tracker of each root's filesystem.
    let pids: Vec<Option<u32>> = {
        let live = trackers();
        devs.iter()
            .map(|d| live.iter().find(|s| s.filesystems.iter().any(|f| Some(f.dev) == *d)).map(|s| s.pid))
            .collect()
    };
    if pids.iter().all(Option::is_none) {
        return all("no change tracker runs for it (altdisk-changes.service)".into());
    }
    let nonce = format!("{}@{t0}", uuid::Uuid::new_v4());
    let mark = Path::new(BARRIER_DIR).join(&nonce);
    if let Err(e) = std::fs::write(&mark, b"") {
        return all(format!("the change tracker could not be asked ({}: {e})", mark.display()));
    }
    let _ = std::fs::remove_file(&mark);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut wanted: Vec<u32> = pids.iter().flatten().copied().collect();
    wanted.dedup();
    let states = loop {
        let got: Vec<State> = wanted
            .iter()
            .filter_map(|pid| {
                let b = std::fs::read(Path::new(STATE_DIR).join(format!("{pid}.json"))).ok()?;
                serde_json::from_slice::<State>(&b).ok().filter(|s| s.barrier == nonce)
            })
            .collect();
        if got.len() == wanted.len() {
            break got;
        }
        if Instant::now() > deadline {
            return all("the change tracker did not answer within 5 seconds".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    roots
        .iter()
        .zip(devs)
        .map(|(root, dev)| {
            let fs = states
                .iter()
                .flat_map(|s| s.filesystems.iter())
                .find(|f| Some(f.dev) == dev)
                .ok_or_else(|| format!("{} is not tracked", root.display()))?;
            if fs.since > t0 {
                return Err(format!(
                    "the change tracker has not watched {} since the clone's last copy began",
                    root.display()
                ));
            }
            let mut out = Changes::default();
            for d in &fs.dirs {
                let dir = PathBuf::from(std::ffi::OsString::from_vec(d.path.clone()));
                let names: Vec<&NameState> = d.names.iter().filter(|n| n.when >= t0).collect();
                if d.whole < t0 && names.is_empty() {
                    continue;
                }
                out.made.extend(
                    names
                        .iter()
                        .filter(|n| n.made.is_some_and(|m| m >= t0))
                        .map(|n| dir.join(std::ffi::OsStr::from_bytes(&n.name))),
                );
                let list = (d.whole < t0)
                    .then(|| names.iter().map(|n| std::ffi::OsString::from_vec(n.name.clone())).collect());
                out.dirs.push((dir, list));
            }
            Ok(out)
        })
        .collect()
}

/// Files that a process has mapped shared and writable now, on the filesystems whose roots
/// are `roots`: for each root, their paths relative to it. Writes through such a mapping
/// raise no fanotify event until it goes (its file is closed then: `FAN_CLOSE_WRITE`), so a
/// refresh compares these too.
pub fn mapped_writable(roots: &[PathBuf]) -> Vec<Vec<PathBuf>> {
    let devs: Vec<Option<u64>> = roots.iter().map(|r| std::fs::metadata(r).ok().map(|m| m.dev())).collect();
    let mut found: Vec<PathBuf> = Vec::new();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            if !p.file_name().as_bytes().iter().all(u8::is_ascii_digit) {
                continue;
            }
            // "addr perms offset dev inode path", perms like "rw-s".
            let Ok(maps) = std::fs::read_to_string(p.path().join("maps")) else { continue };
            for l in maps.lines() {
                let f: Vec<&str> = l.splitn(6, ' ').collect();
                if f.len() == 6 && f[1].as_bytes().get(1) == Some(&b'w') && f[1].as_bytes().get(3) == Some(&b's') {
                    let path = f[5].trim_start();
                    if path.starts_with('/') {
                        found.push(PathBuf::from(path));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    roots
        .iter()
        .zip(devs)
        .map(|(root, dev)| {
            found
                .iter()
                .filter(|f| {
                    f.starts_with(root)
                        && std::fs::symlink_metadata(f).is_ok_and(|m| m.file_type().is_file() && Some(m.dev()) == dev)
                })
                .filter_map(|f| f.strip_prefix(root).ok().map(Path::to_path_buf))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_mapped_shared_and_writable() {
        let dir = std::env::temp_dir().join(format!("altdisk-mapped-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = |name: &str, prot: i32, flags: i32| {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.join(name))
                .unwrap();
            f.set_len(4096).unwrap();
            let a = unsafe { libc::mmap(std::ptr::null_mut(), 4096, prot, flags, f.as_raw_fd(), 0) };
            assert_ne!(a, libc::MAP_FAILED);
            a // its descriptor closed here
        };
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let maps = [
            map("shared", rw, libc::MAP_SHARED),
            map("private", rw, libc::MAP_PRIVATE),
            map("read-only", libc::PROT_READ, libc::MAP_SHARED),
        ];
        let got = mapped_writable(std::slice::from_ref(&dir)).remove(0);
        assert_eq!(got, [PathBuf::from("shared")]);
        for a in maps {
            unsafe { libc::munmap(a, 4096) };
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_events_with_directory_handles_and_names() {
        // One event: metadata (24 bytes), then a DFID_NAME record.
        let mut ev = Vec::new();
        let handle = [7u8, 8, 9, 10, 11, 12, 13, 14];
        let name = b"file.txt\0";
        let info_len = 4 + 8 + 8 + handle.len() + name.len();
        let info_len = info_len.div_ceil(4) * 4;
        let total = 24 + info_len;
        ev.extend_from_slice(&(total as u32).to_ne_bytes());
        ev.extend_from_slice(&[3, 0]);
        ev.extend_from_slice(&24u16.to_ne_bytes());
        ev.extend_from_slice(&(FAN_MODIFY).to_ne_bytes());
        ev.extend_from_slice(&(-1i32).to_ne_bytes());
        ev.extend_from_slice(&42i32.to_ne_bytes());
        ev.extend_from_slice(&[FAN_EVENT_INFO_TYPE_DFID_NAME, 0]);
        ev.extend_from_slice(&(info_len as u16).to_ne_bytes());
        ev.extend_from_slice(&5i32.to_ne_bytes());
        ev.extend_from_slice(&6i32.to_ne_bytes());
        ev.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        ev.extend_from_slice(&1i32.to_ne_bytes());
        ev.extend_from_slice(&handle);
        ev.extend_from_slice(name);
        ev.resize(total, 0);
        // Twice, and a truncated third.
        let mut buf = ev.clone();
        buf.extend_from_slice(&ev);
        buf.extend_from_slice(&ev[..30]);
        let got = events(&buf);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].mask, FAN_MODIFY);
        assert_eq!(got[0].fsid, [5, 6]);
        assert_eq!(got[0].handle[..4], 1i32.to_ne_bytes());
        assert_eq!(&got[0].handle[4..], &handle);
        assert_eq!(got[0].name, b"file.txt");
    }
}
