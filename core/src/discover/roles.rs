//! What each disk is to altdisk (`altdisk lspv`): the running system (`rootvg`), the system
//! it was cloned from (`old_rootvg`), a system altdisk made (by the name in its record), free,
//! in use (and why) or holding data (and what). [`usage`] is the one place that decides
//! whether a disk is in use; the plan's refusals ([`crate::plan::safety`]) and `lspv` both
//! read it, so the two never disagree.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::discover::blockdev::{self, Disk, Probe};
use crate::discover::mounts::{self, Mount};
use crate::discover::record::{self, BootEnv};
use crate::error::Result;
use crate::size;

/// What a disk holds or is used for now, as far as writing to it is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    Free,
    /// It holds the running system's root filesystem.
    Running,
    /// It holds the system being cloned (`--source`).
    Source,
    ReadOnly,
    /// A filesystem on it is mounted (`by`: the desktop mounted it for a user, through UDisks2).
    Mounted {
        device: String,
        at: PathBuf,
        by: Option<String>,
    },
    /// It, or a partition of it, is active swap.
    Swap {
        device: PathBuf,
    },
    /// The device mapper or md holds it (LVM, encryption, multipath, RAID).
    Held {
        holder: String,
    },
    /// A signature that belongs to a larger whole: an LVM physical volume, a RAID member, a
    /// LUKS volume. Never overwritten, not even with `--force`.
    Member {
        what: String,
    },
    /// It carries an altdisk system (a record in its altdisk-meta partition).
    System {
        what: String,
    },
    /// A partition table or filesystem signature: data someone may still want.
    Data {
        what: String,
    },
}

impl Usage {
    /// Why the disk cannot be written as it is, in words that finish "refusing DISK: ...".
    pub fn why(&self) -> String {
        match self {
            Usage::Free => "it is free".into(),
            Usage::Running => "it holds the running system".into(),
            Usage::Source => "it holds the system being cloned".into(),
            Usage::ReadOnly => "it is read-only".into(),
            Usage::Mounted { device, at, by: None } => format!("{device} is mounted at {}", at.display()),
            Usage::Mounted { device, at, by: Some(by) } => format!("{device} is mounted at {} {by}", at.display()),
            Usage::Swap { device } => format!("{} is active swap", device.display()),
            Usage::Held { holder } if holder.starts_with("md") => format!("it is a RAID member (held by {holder})"),
            Usage::Held { holder } => format!("it is in use by {holder} (LVM, encryption or multipath)"),
            Usage::Member { what } | Usage::System { what } | Usage::Data { what } => what.clone(),
        }
    }

    /// What the user does about it.
    pub fn todo(&self) -> &'static str {
        match self {
            Usage::Free => "",
            Usage::Running | Usage::Source => "choose a free disk (see altdisk lspv)",
            Usage::ReadOnly => "choose a writable disk",
            Usage::Mounted { .. } => "unmount it first if its data is no longer needed, or choose another disk",
            Usage::Swap { .. } => "swapoff it first, or choose another disk",
            Usage::Held { .. } => "deactivate what uses it first, or choose another disk",
            Usage::Member { .. } => "remove it from its volume group or array first, or choose another disk",
            Usage::System { .. } | Usage::Data { .. } => "if its contents can be destroyed, run again with --force",
        }
    }

    /// Whether `--force` may overwrite it (only data at rest: an old table, a filesystem, a clone).
    pub fn forceable(&self) -> bool {
        matches!(self, Usage::Free | Usage::System { .. } | Usage::Data { .. })
    }
}

fn describe_signature(what: &str, probe: &Probe) -> Option<Usage> {
    match probe.fstype.as_deref() {
        Some("LVM2_member") => Some(Usage::Member { what: format!("{what} is an LVM physical volume") }),
        Some(t) if t.ends_with("raid_member") => Some(Usage::Member { what: format!("{what} is a RAID member ({t})") }),
        Some("crypto_LUKS") => Some(Usage::Member { what: format!("{what} holds a LUKS encrypted volume") }),
        _ => probe.describe().map(|d| Usage::Data { what: format!("{what} holds data ({d})") }),
    }
}

/// The altdisk system a disk or image file carries, described for a refusal.
pub fn existing_system(p: &Path) -> Option<Usage> {
    let what = match record::read(p)? {
        Ok(env) => {
            format!("it holds the alternate system {} ({}, made {})", env.name, env.state.describe(), env.created)
        }
        Err(_) => "it holds a damaged altdisk record".into(),
    };
    Some(Usage::System { what })
}

/// The first signature found on an image file, as a usage.
pub fn image_usage(p: &Path) -> Result<Usage> {
    if let Some(u) = existing_system(p) {
        return Ok(u);
    }
    Ok(describe_signature("it", &Probe::read(p)?).unwrap_or(Usage::Free))
}

/// What `d` is used for. The hardest reason wins: the running system before a mount, a mount
/// before a signature, a volume-group member before data that `--force` may overwrite.
pub fn usage(
    d: &Disk,
    source_disks: &[String],
    table: &[Mount],
    root_dev: Option<(u32, u32)>,
    swaps: &[(u32, u32)],
) -> Result<Usage> {
    if root_dev.is_some_and(|(a, b)| d.holds(a, b)) {
        return Ok(Usage::Running);
    }
    if source_disks.contains(&d.name) {
        return Ok(Usage::Source);
    }
    if d.read_only {
        return Ok(Usage::ReadOnly);
    }
    if let Some(m) = table.iter().find(|m| d.holds(m.major, m.minor)) {
        return Ok(Usage::Mounted { device: m.source.clone(), at: m.target.clone(), by: udisks_mounter(&m.target) });
    }
    if let Some(part) = d.partitions.iter().find(|p| swaps.contains(&(p.major, p.minor))) {
        return Ok(Usage::Swap { device: part.path.clone() });
    }
    if swaps.contains(&(d.major, d.minor)) {
        return Ok(Usage::Swap { device: d.path.clone() });
    }
    if let Some(h) = d.holders.iter().chain(d.partitions.iter().flat_map(|p| p.holders.iter())).next() {
        return Ok(Usage::Held { holder: h.clone() });
    }
    let mut soft = existing_system(&d.path);
    // The disk itself, then each partition: LVM and RAID are final, other data needs --force.
    let devices = std::iter::once(("it".to_string(), d.path.clone()))
        .chain(d.partitions.iter().map(|p| (p.path.display().to_string(), p.path.clone())));
    for (what, dev) in devices {
        match describe_signature(&what, &Probe::read(&dev)?) {
            Some(u @ Usage::Member { .. }) => return Ok(u),
            Some(u) => {
                soft.get_or_insert(u);
            }
            None => {}
        }
    }
    Ok(soft.unwrap_or(Usage::Free))
}

/// Who the desktop mounted `at` for, when UDisks2 did it: from its record of the mounts it
/// made (`/run/udisks2/mounted-fs`), or the places it mounts under (/media/USER, /run/media/USER).
pub fn udisks_mounter(at: &Path) -> Option<String> {
    let user_of = |uid: u32| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or(uid.to_string())
    };
    let text = std::fs::read_to_string("/run/udisks2/mounted-fs").unwrap_or_default();
    for line in text.lines() {
        let kv: std::collections::HashMap<&str, &str> =
            line.split_whitespace().filter_map(|w| w.split_once('=')).collect();
        if kv.get("mount_point").map(Path::new) == Some(at) {
            let uid = kv.get("mounted_by_uid").and_then(|u| u.parse().ok()).unwrap_or(0);
            return Some(format!("by the desktop (UDisks2) for {}", user_of(uid)));
        }
    }
    let rel = at.strip_prefix("/media").or_else(|_| at.strip_prefix("/run/media")).ok()?;
    let user = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    Some(format!("by the desktop (UDisks2) for {user}"))
}

/// The device numbers of active swap areas.
pub fn swap_devices(swaps: &[PathBuf]) -> Vec<(u32, u32)> {
    swaps.iter().filter_map(|p| blockdev::dev_numbers(p)).collect()
}

/// Where a failed boot hook of altdisk's units leaves its error (see
/// [`crate::boot::units::run_hook`]), relative to the system's root.
pub const HOOK_FAILED: &str = "var/lib/altdisk/boot-hook-failed";

/// The boot hooks that failed on this system, one line each.
pub fn failed_hooks() -> Vec<String> {
    std::fs::read_to_string(Path::new("/").join(HOOK_FAILED))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// A disk's role, as `lspv` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The running system.
    Rootvg,
    /// The system the running one was cloned from.
    OldRootvg,
    /// A system altdisk made, by the name in its record (altinst_rootvg, or as renamed).
    System(String),
    Free,
    InUse,
    /// Holds data that `--force` would overwrite.
    NotFree,
}

impl Role {
    pub fn as_str(&self) -> &str {
        match self {
            Role::Rootvg => "rootvg",
            Role::OldRootvg => "old_rootvg",
            Role::System(n) => n,
            Role::Free => "free",
            Role::InUse => "in use",
            Role::NotFree => "not free",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A disk with what it is to altdisk (`altdisk lspv`).
#[derive(Debug, Clone, Serialize)]
pub struct DiskRole {
    pub name: String,
    pub alias: String,
    pub path: PathBuf,
    pub size: u64,
    pub model: Option<String>,
    pub role: Role,
    pub detail: String,
    pub bootenv: Option<BootEnv>,
}

/// List disks with their roles.
pub fn lspv() -> Result<Vec<DiskRole>> {
    let disks = blockdev::list()?;
    let table = mounts::read()?;
    let swaps = swap_devices(&mounts::swaps()?);
    let root = mounts::mount_at(&table, Path::new("/")).map(|m| (m.major, m.minor));
    // The system this one was cloned from shows as old_rootvg (AIX names it so after the
    // switch), recognised by its root filesystem's UUID in the running system's record, or
    // by its disks' partition tables where that root is out of sight (inside LUKS).
    let running_source = disks
        .iter()
        .find(|d| root.is_some_and(|(a, b)| d.holds(a, b)))
        .and_then(|d| record::read(&d.path))
        .and_then(|r| r.ok())
        .map(|e| e.source);
    let running_source_uuid = running_source.as_ref().and_then(|s| s.root_uuid.clone());
    let former_dev = running_source_uuid.as_deref().and_then(blockdev::device_with_uuid);
    let mut out = Vec::new();
    for d in &disks {
        let env = record::read(&d.path).and_then(|r| r.ok());
        let by_root = || {
            running_source_uuid.as_ref().is_some_and(|u| {
                former_dev.is_some_and(|(a, b)| d.holds(a, b))
                    || d.partitions.iter().any(|p| {
                        Probe::read(&p.path).ok().and_then(|x| x.uuid).is_some_and(|x| x.eq_ignore_ascii_case(u))
                    })
            })
        };
        let by_table = || {
            running_source
                .as_ref()
                .is_some_and(|s| s.had_disk(Probe::read(&d.path).ok().and_then(|p| p.ptuuid).as_deref()))
        };
        let is_former = env.is_none() && (by_root() || by_table());
        let (role, detail) = if root.is_some_and(|(a, b)| d.holds(a, b)) {
            let failed = failed_hooks();
            let detail = if failed.is_empty() {
                "the running system".to_string()
            } else {
                format!(
                    "the running system; altdisk's boot units failed: {} (journalctl -u 'altdisk-*')",
                    failed.join("; ")
                )
            };
            (Role::Rootvg, detail)
        } else if is_former {
            (Role::OldRootvg, "the system this one was cloned from".to_string())
        } else if let Some(e) = &env {
            let from = if e.source.hostname.is_empty() { String::new() } else { format!(" of {}", e.source.hostname) };
            let mounted = table
                .iter()
                .find(|m| d.holds(m.major, m.minor))
                .map(|m| format!(", mounted at {}", m.target.display()))
                .unwrap_or_default();
            let step = match (&e.step, e.state) {
                (Some(s), record::State::Incomplete) => format!(" (stopped while {s})"),
                _ => String::new(),
            };
            (Role::System(e.name.clone()), format!("{}{step}{from}, made {}{mounted}", e.state.describe(), e.created))
        } else {
            match usage(d, &[], &table, root, &swaps) {
                Ok(Usage::Free) => (Role::Free, String::new()),
                Ok(u @ Usage::Data { .. }) => (Role::NotFree, u.why()),
                Ok(u) => (Role::InUse, u.why()),
                Err(e) => (Role::InUse, format!("it cannot be read: {e}")),
            }
        };
        out.push(DiskRole {
            name: d.name.clone(),
            alias: d.alias.clone(),
            path: d.path.clone(),
            size: d.size,
            model: d.model.clone(),
            role,
            detail,
            bootenv: env,
        });
    }
    Ok(out)
}

/// Render `lspv` as a table.
pub fn render_lspv(rows: &[DiskRole]) -> String {
    let mut s = format!("{:<10} {:<8} {:>8}  {:<20} {:<16} {}\n", "NAME", "ALIAS", "SIZE", "MODEL", "ROLE", "DETAIL");
    for r in rows {
        s.push_str(&format!(
            "{:<10} {:<8} {:>8}  {:<20} {:<16} {}\n",
            r.name,
            r.alias,
            size::human(r.size),
            r.model.as_deref().unwrap_or("-").chars().take(20).collect::<String>(),
            r.role,
            r.detail
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktop_mounts_name_their_user() {
        if std::path::Path::new("/run/udisks2/mounted-fs").exists() {
            return;
        }
        assert_eq!(
            udisks_mounter(Path::new("/media/alice/USB")).as_deref(),
            Some("by the desktop (UDisks2) for alice")
        );
        assert_eq!(udisks_mounter(Path::new("/run/media/bob/x")).as_deref(), Some("by the desktop (UDisks2) for bob"));
        assert_eq!(udisks_mounter(Path::new("/mnt/data")), None);
        let u = Usage::Mounted {
            device: "/dev/sdb1".into(),
            at: "/media/alice/USB".into(),
            by: udisks_mounter(Path::new("/media/alice/USB")),
        };
        assert_eq!(u.why(), "/dev/sdb1 is mounted at /media/alice/USB by the desktop (UDisks2) for alice");
        assert!(!u.forceable());
    }
}
