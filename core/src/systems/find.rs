//! Every system on every disk (`altdisk find`): the running one, those altdisk made (by their
//! records: altinst_rootvg, old_rootvg, incomplete clones) and other Linux roots it did not
//! make, each with its disks, state, host, when it was made, its operating system and its
//! kernels. What the rescue image shows first, and what restore, boot-now, repair and the
//! offline clone choose from.
//!
//! Looking never writes: filesystems that are not mounted are mounted read-only below
//! `/run/altdisk/look-PID` (no journal replayed) and unmounted again at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::discover::blockdev::{self, Disk, Probe};
use crate::discover::contents::os_name;
use crate::discover::mounts;
use crate::discover::record::{self, BootEnv, State};
use crate::error::Result;
use crate::systems::mount::SystemMount;

/// Where a system is mounted to be looked at (`/run/altdisk/look-PID/N`, so what a killed
/// process left is known as its own: see [`crate::write::journal::recover`]). A directory
/// per look: the service may look from several threads at once (a find, a repair, an
/// offline clone's plan), and one look must never mount over another.
fn look_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PathBuf::from(format!("/run/altdisk/look-{}/{n}", std::process::id()))
}

/// A system found on the disks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Found {
    /// rootvg for the running system, the record's name for one altdisk made, "linux" for
    /// another Linux root.
    pub name: String,
    /// "running", "altdisk", "old_rootvg" (the system the running one was cloned from, or the
    /// one that ran before a switch), "other".
    pub kind: String,
    /// What state it is in, in words ("complete (bootable)", "incomplete (stopped while
    /// copying files)", "not made by altdisk").
    pub state: String,
    /// Whether it looks able to boot: complete (for altdisk's), with a kernel.
    pub bootable: bool,
    pub os: Option<String>,
    pub host: Option<String>,
    pub created: Option<String>,
    pub disks: Vec<String>,
    /// Its root filesystem's device.
    pub root: PathBuf,
    pub root_uuid: Option<String>,
    /// Kernel versions in its /boot.
    pub kernels: Vec<String>,
}

fn kernels(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("boot"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("vmlinuz-")).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Read a system's OS and kernels: where it is mounted, or mounted read-only for a moment.
fn look(dev: &Path, table: &[mounts::Mount], id: &str) -> (Option<String>, Vec<String>) {
    let Some((major, minor)) = blockdev::dev_numbers(dev) else { return (None, Vec::new()) };
    if let Some(m) = table.iter().find(|m| (m.major, m.minor) == (major, minor) && m.root == "/") {
        return (os_name(&m.target), kernels(&m.target));
    }
    let dir = look_dir();
    let at = dir.join(id);
    let r = match SystemMount::mount(dev, &at, true) {
        Ok(sm) => {
            let r = (os_name(&sm.root), kernels(&sm.root));
            if let Err(e) = sm.unmount() {
                tracing::warn!("{e}");
            }
            r
        }
        Err(e) => {
            tracing::debug!("not looking into {}: {e}", dev.display());
            (None, Vec::new())
        }
    };
    let _ = std::fs::remove_dir(&at);
    let _ = std::fs::remove_dir(&dir);
    r
}

fn state_words(e: &BootEnv) -> String {
    match (&e.step, e.state) {
        (Some(s), State::Incomplete) => format!("incomplete (stopped while {s})"),
        _ => e.state.describe().to_string(),
    }
}

/// Every system on this machine's disks.
pub fn find() -> Result<Vec<Found>> {
    find_except(|_| false)
}

/// Every system on this machine's disks, without mounting anything of a disk `busy` says
/// another run writes (the service's jobs): of those, only what their records say, and no
/// other Linux roots.
pub fn find_except(busy: impl Fn(&Disk) -> bool) -> Result<Vec<Found>> {
    let disks = blockdev::list()?;
    let table = mounts::read()?;
    let root = mounts::mount_at(&table, Path::new("/")).map(|m| (m.major, m.minor));
    let running_disk = |d: &Disk| root.is_some_and(|(a, b)| d.holds(a, b));
    // The running system's record names where it came from (old_rootvg).
    let running_source = disks
        .iter()
        .filter(|d| running_disk(d))
        .find_map(|d| record::read(&d.path).and_then(|r| r.ok()))
        .and_then(|e| e.source.root_uuid);
    let mut out = Vec::new();
    // Systems altdisk made, one per record id, across their disks.
    let mut by_id: BTreeMap<uuid::Uuid, (BootEnv, Vec<&Disk>)> = BTreeMap::new();
    for d in &disks {
        if let Some(Ok(e)) = record::read(&d.path) {
            by_id.entry(e.id).or_insert_with(|| (e.clone(), Vec::new())).1.push(d);
        }
    }
    // A clone that has run (its units named it rootvg, or a switch named it again) makes the
    // system it was cloned from old_rootvg, also seen from a rescue system, where nothing on
    // the disks runs.
    let former_sources: Vec<String> = by_id
        .values()
        .filter(|(e, _)| e.name != "altinst_rootvg" && e.name != "old_rootvg")
        .filter_map(|(e, _)| e.source.root_uuid.clone())
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    for (id, (env, ds)) in &by_id {
        let rootfs = env.filesystems.iter().find(|f| f.mountpoint == "/");
        let dev = rootfs.and_then(|f| match (&f.lv, &env.vg) {
            (Some(lv), Some(vg)) => Some(crate::write::lvm::lv_path(vg, lv)),
            _ => {
                let disk = env.disks.get(f.disk).and_then(|g| {
                    ds.iter().find(|d| {
                        crate::discover::gpt::read_gpt(&d.path)
                            .is_some_and(|t| uuid::Uuid::from_bytes_le(t.header.disk_guid) == *g)
                    })
                })?;
                Some(crate::write::partition::partition_path(&disk.path, f.partition))
            }
        });
        let running = ds.iter().any(|d| running_disk(d));
        let (os, kernels) = match &dev {
            Some(dev) if dev.exists() && env.state != State::Incomplete && !ds.iter().any(|d| busy(d)) => {
                look(dev, &table, &id.to_string())
            }
            _ => (None, Vec::new()),
        };
        let kind = if running {
            "running"
        } else if env.name == "old_rootvg" {
            "old_rootvg"
        } else {
            "altdisk"
        };
        seen.extend(ds.iter().map(|d| d.name.as_str()));
        out.push(Found {
            name: if running { "rootvg".into() } else { env.name.clone() },
            kind: kind.into(),
            state: state_words(env),
            bootable: env.state == State::Complete && !kernels.is_empty(),
            os,
            host: Some(env.source.hostname.clone()).filter(|h| !h.is_empty()),
            created: Some(env.created.clone()),
            disks: ds.iter().map(|d| d.name.clone()).collect(),
            root: dev.unwrap_or_default(),
            root_uuid: rootfs.map(|f| f.uuid.clone()),
            kernels,
        });
    }
    // Other Linux roots: a filesystem with an os-release, on a disk without a record.
    for d in disks.iter().filter(|d| !seen.contains(&d.name.as_str()) && !busy(d)) {
        for p in d.partitions.iter().filter(|p| p.holders.is_empty() && p.size >= 256 << 20) {
            let probe = Probe::read(&p.path).unwrap_or_default();
            if !matches!(probe.fstype.as_deref(), Some("ext2" | "ext3" | "ext4" | "xfs" | "btrfs")) {
                continue;
            }
            let (os, kernels) = look(&p.path, &table, &p.name);
            let running = root.is_some_and(|r| r == (p.major, p.minor));
            if os.is_none() && !running {
                continue;
            }
            let former =
                probe.uuid.as_ref().is_some_and(|u| running_source.as_ref() == Some(u) || former_sources.contains(u));
            out.push(Found {
                name: if running {
                    "rootvg".into()
                } else if former {
                    "old_rootvg".into()
                } else {
                    "linux".into()
                },
                kind: if running {
                    "running"
                } else if former {
                    "old_rootvg"
                } else {
                    "other"
                }
                .into(),
                state: "not made by altdisk".into(),
                bootable: !kernels.is_empty(),
                os,
                host: None,
                created: None,
                disks: vec![d.name.clone()],
                root: p.path.clone(),
                root_uuid: probe.uuid.clone(),
                kernels,
            });
        }
    }
    // The running system, when it is on neither (a root on a whole disk, on LVM without a
    // record, on a device that is no disk: a live system).
    if !out.iter().any(|f| f.kind == "running") {
        if let Some(m) = mounts::mount_at(&table, Path::new("/")) {
            let on: Vec<String> = disks.iter().filter(|d| running_disk(d)).map(|d| d.name.clone()).collect();
            // On no disk: a live system (the rescue image), which is nobody's rootvg.
            let live = on.is_empty();
            out.insert(
                0,
                Found {
                    name: if live { "live system" } else { "rootvg" }.into(),
                    kind: "running".into(),
                    state: if live { "the running live system, on no disk" } else { "the running system" }.into(),
                    bootable: true,
                    os: os_name(Path::new("/")),
                    // `host` is where a clone was cloned from: nothing here.
                    host: None,
                    created: None,
                    disks: on,
                    root: PathBuf::from(&m.source),
                    root_uuid: None,
                    kernels: kernels(Path::new("/")),
                },
            );
        }
    }
    Ok(out)
}

/// The system whose root is on the named disk (its first root found there).
pub fn on_disk(name: &str) -> Result<Found> {
    let disks = blockdev::list()?;
    let d = match blockdev::resolve(name, &disks)? {
        blockdev::Named::Disk(i) => disks[i].name.clone(),
        blockdev::Named::Image(p) => {
            return Err(crate::Error::usage(
                format!("disk {}", p.display()),
                "it is not a disk",
                "attach the image with losetup and name the loop device",
            ))
        }
    };
    find()?.into_iter().find(|f| f.disks.contains(&d)).ok_or_else(|| {
        crate::Error::not_found(
            format!("system on {d}"),
            "no root filesystem with an operating system was found on it",
            "see `altdisk find` for the systems on this machine's disks",
        )
    })
}

/// Render as a table.
pub fn render(found: &[Found]) -> String {
    let mut s = format!("{:<14} {:<10} {:<10} {:<34} {}\n", "SYSTEM", "DISKS", "KIND", "STATE", "OS / KERNELS");
    for f in found {
        s.push_str(&format!(
            "{:<14} {:<10} {:<10} {:<34} {}{}\n",
            f.name,
            f.disks.join(","),
            f.kind,
            f.state,
            f.os.as_deref().unwrap_or("-"),
            if f.kernels.is_empty() { String::new() } else { format!(" [{}]", f.kernels.join(", ")) }
        ));
    }
    s
}
