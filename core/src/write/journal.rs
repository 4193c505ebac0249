//! A run's journal: what it has made that must not outlive it (loop devices, mounts under
//! its mount point, btrfs snapshots, an active volume group), kept in `/run/altdisk/runs`
//! while the run lasts. A run that returns, even with an error, undoes what it made through
//! its guards and removes its journal. A run that was killed cannot: its journal stays, its
//! lock on the journal file is gone with it, and the next run (or altdiskd when it starts)
//! finds it with [`recover`], undoes what it names, marks the targets' records as
//! interrupted, and says what it did.
//!
//! A power cut needs none of this: it leaves no mounts, loop devices or journals behind,
//! and the targets' records already say incomplete (see [`crate::discover::record`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::discover::{blockdev, identity, mounts, record};
use crate::error::{IoContext, Result};
use crate::write::{fs as tfs, lvm};

/// Where journals live.
pub const RUN_DIR: &str = "/run/altdisk/runs";

fn dir() -> PathBuf {
    std::env::var_os("ALTDISK_RUN_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(RUN_DIR))
}

/// What a run has made so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Entry {
    pub pid: u32,
    pub what: String,
    pub started: String,
    /// The disks or image files the run writes (where their records are).
    pub targets: Vec<PathBuf>,
    /// Where it mounts the clone.
    pub mount_at: Option<PathBuf>,
    /// Loop devices it attached over image files.
    pub loops: Vec<PathBuf>,
    /// Read-only btrfs snapshots it took of the source.
    pub snapshots: Vec<PathBuf>,
    /// A volume group it activated.
    pub vg: Option<String>,
    /// The step it was at.
    pub step: Option<String>,
    /// Where it mounted the (not running) system it clones, read-only.
    #[serde(default)]
    pub source_mount: Option<PathBuf>,
}

/// The journal of the running run; removed when dropped.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    entry: Entry,
}

impl Journal {
    pub fn begin(what: &str, targets: Vec<PathBuf>, mount_at: Option<PathBuf>) -> Result<Journal> {
        let d = dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .ctx("making the run journal directory", &d)?;
        // Made earlier with a looser mode (an older altdisk): root's alone.
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).ctx("securing", &d)?;
        let path = d.join(format!("{}-{}.json", std::process::id(), uuid::Uuid::new_v4()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .ctx("starting the run journal", &path)?;
        rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| crate::Error::io("locking the run journal", &path, e.into()))?;
        let entry = Entry {
            pid: std::process::id(),
            what: what.into(),
            started: record::now_rfc3339(),
            targets,
            mount_at,
            ..Default::default()
        };
        let mut j = Journal { path, file, entry };
        j.save()?;
        Ok(j)
    }

    pub fn update(&mut self, f: impl FnOnce(&mut Entry)) -> Result<()> {
        f(&mut self.entry);
        self.save()
    }

    fn save(&mut self) -> Result<()> {
        let text = serde_json::to_vec_pretty(&self.entry).unwrap_or_default();
        // Written in place (the lock is on this file); a torn write is read as no journal,
        // and the mounts it named are still found by their devices.
        self.file.set_len(0).ctx("writing the run journal", &self.path)?;
        use std::io::Seek;
        self.file.rewind().ctx("writing the run journal", &self.path)?;
        self.file.write_all(&text).ctx("writing the run journal", &self.path)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Read-only mounts of systems looked at or cloned offline (`/run/altdisk/look-PID`,
/// `/run/altdisk/source-PID`) by processes that are gone.
fn dead_looks() -> Vec<String> {
    let Ok(table) = mounts::read() else { return Vec::new() };
    let mut gone: Vec<&mounts::Mount> = table
        .iter()
        .filter(|m| {
            let Ok(rest) = m.target.strip_prefix("/run/altdisk") else { return false };
            let first =
                rest.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
            let pid = first.strip_prefix("look-").or_else(|| first.strip_prefix("source-"));
            pid.and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        })
        .collect();
    gone.sort_by_key(|m| std::cmp::Reverse(m.target.components().count()));
    let mut notes = Vec::new();
    for m in gone {
        if tfs::unmount(&m.target).is_ok() {
            notes.push(format!("unmounted {}, left mounted read-only by a process that is gone", m.target.display()));
        }
    }
    // Their empty directories go too (nothing is mounted there any more).
    if let Ok(rd) = std::fs::read_dir("/run/altdisk") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix("look-").or_else(|| name.strip_prefix("source-"));
            if pid
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            {
                remove_empty_tree(&e.path());
            }
        }
    }
    notes
}

/// Remove a tree of empty directories (rmdir only: a file or a mount inside keeps it).
fn remove_empty_tree(dir: &std::path::Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Undo what the runs that died left behind, and say what was done (one line each).
pub fn recover() -> Result<Vec<String>> {
    let mut notes = dead_looks();
    let Ok(rd) = std::fs::read_dir(dir()) else { return Ok(notes) };
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(file) = File::open(&path) else { continue };
        // A live run holds its journal locked.
        if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let entry: Option<Entry> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(entry) = entry {
            notes.extend(undo(&entry));
        }
        let _ = std::fs::remove_file(&path);
    }
    Ok(notes)
}

fn undo(e: &Entry) -> Vec<String> {
    let who = format!("interrupted run (pid {}, {})", e.pid, e.what);
    let mut done = Vec::new();
    let mut failed = Vec::new();
    // The devices of the run: its disks and their partitions, its loop devices (found again
    // by their backing files, in case the journal missed one) and their partitions, and the
    // logical volumes of its volume group.
    let mut loops: Vec<PathBuf> = e.loops.clone();
    for t in &e.targets {
        if std::fs::metadata(t).is_ok_and(|m| m.is_file()) {
            for l in identity::loops_over(t) {
                if !loops.contains(&l) {
                    loops.push(l);
                }
            }
        }
    }
    let devices: Vec<PathBuf> = e.targets.iter().chain(loops.iter()).cloned().collect();
    let ours = |m: &mounts::Mount| -> bool {
        devices.iter().any(|d| {
            blockdev::dev_numbers(d)
                .is_some_and(|(a, b)| (m.major, m.minor) == (a, b) || same_disk(a, b, m.major, m.minor))
        }) || e
            .vg
            .as_ref()
            .is_some_and(|vg| m.source.contains(&format!("/{vg}-")) || m.source.contains(&format!("/{vg}/")))
    };
    if let Ok(table) = mounts::read() {
        let from_source = |m: &mounts::Mount| e.source_mount.as_ref().is_some_and(|s| m.target.starts_with(s));
        let mut mine: Vec<&mounts::Mount> = table.iter().filter(|m| ours(m) || from_source(m)).collect();
        mine.sort_by_key(|m| std::cmp::Reverse(m.target.components().count()));
        for m in mine {
            match tfs::unmount(&m.target) {
                Ok(()) => done.push(format!("unmounted {}", m.target.display())),
                Err(err) => failed.push(format!("could not unmount {}: {err}", m.target.display())),
            }
        }
    }
    for s in &e.snapshots {
        if s.exists() {
            let r = crate::cmd::Cmd::new("deleting a btrfs snapshot left by a killed run", "btrfs")
                .and_then(|c| c.args(["subvolume", "delete"]).arg(s).run());
            match r {
                Ok(_) => done.push(format!("deleted snapshot {}", s.display())),
                Err(err) => failed.push(format!("could not delete snapshot {}: {err}", s.display())),
            }
        }
    }
    if let Some(vg) = &e.vg {
        if lvm::deactivate(vg).is_ok() {
            done.push(format!("deactivated volume group {vg}"));
        }
    }
    for l in &loops {
        // Only a loop device still over one of the run's image files.
        let still = e.targets.iter().any(|t| identity::loops_over(t).contains(l));
        if still {
            match tfs::detach_loop(l) {
                Ok(()) => done.push(format!("detached {}", l.display())),
                Err(err) => failed.push(format!("could not detach {}: {err}", l.display())),
            }
        }
    }
    for t in &e.targets {
        if let Some(Ok(mut env)) = record::read(t) {
            if env.state == record::State::Incomplete {
                let step = env.step.clone().or(e.step.clone()).unwrap_or_else(|| "starting".into());
                env.note = Some(format!("interrupted: altdisk (pid {}) was stopped while {step}", e.pid));
                if record::update(t, &env).is_ok() {
                    done.push(format!("{} marked incomplete", t.display()));
                }
            }
        }
    }
    let mut notes = Vec::new();
    if !done.is_empty() {
        notes.push(format!("cleaned up after an {who}: {}", done.join(", ")));
    }
    for f in failed {
        notes.push(format!("after an {who}: {f}"));
    }
    notes
}

/// Whether (a2, b2) is a partition of the disk (a, b): sysfs names the partition's parent.
fn same_disk(a: u32, b: u32, a2: u32, b2: u32) -> bool {
    let part = PathBuf::from(format!("/sys/dev/block/{a2}:{b2}"));
    let Ok(real) = std::fs::canonicalize(&part) else { return false };
    let Some(parent) = real.parent() else { return false };
    std::fs::read_to_string(parent.join("dev")).is_ok_and(|d| d.trim() == format!("{a}:{b}"))
}
