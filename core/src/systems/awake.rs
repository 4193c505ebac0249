//! A system that is awake: mounted at a mount point (`/alt_inst`) by a clone left there after
//! `-P1` or by `alt_rootvg_op -W`. The awake record (in `/run/altdisk`) says what was done
//! to mount it (loop devices attached, a volume group activated), so [`sleep`] undoes
//! exactly that, and refuses to unmount anything altdisk did not wake.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::discover::{blockdev, mounts, record};
use crate::error::{Error, IoContext, Result};
use crate::write::{fs as tfs, lvm};

const RUN_DIR: &str = "/run/altdisk";

/// What a mounted (awake) system leaves behind, so `sleep` can undo exactly that.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Awake {
    pub mount_at: PathBuf,
    pub loops: Vec<PathBuf>,
    pub name: String,
    pub disks: Vec<PathBuf>,
    /// A volume group altdisk activated for it, deactivated on sleep.
    #[serde(default)]
    pub vg: Option<String>,
    /// LUKS mappings altdisk opened for it, closed on sleep (after the volume group).
    #[serde(default)]
    pub crypts: Vec<String>,
}

fn awake_file(mount_at: &Path) -> PathBuf {
    let key: String =
        mount_at.display().to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    Path::new(RUN_DIR).join(format!("awake{key}.json"))
}

/// Record that a system is mounted (awake) at `a.mount_at`.
pub fn record(a: &Awake) -> Result<()> {
    std::fs::create_dir_all(RUN_DIR).ctx("recording the mounted clone", RUN_DIR)?;
    let f = awake_file(&a.mount_at);
    std::fs::write(&f, serde_json::to_vec_pretty(a).unwrap_or_default()).ctx("recording the mounted clone", &f)
}

/// The record of a system mounted at `mount_at`, if altdisk mounted one there and it is
/// still mounted (a record whose mount is gone, say unmounted by the cleanup after a killed
/// run, is forgotten here).
pub fn read(mount_at: &Path) -> Option<Awake> {
    let a: Awake = serde_json::from_slice(&std::fs::read(awake_file(mount_at)).ok()?).ok()?;
    let mounted = mounts::read().is_ok_and(|t| mounts::mount_at(&t, mount_at).is_some());
    if !mounted {
        let _ = forget(mount_at);
        // Loop devices it attached and nothing uses now go too.
        for l in &a.loops {
            let _ = tfs::detach_loop(l);
        }
        return None;
    }
    Some(a)
}

/// Forget the record (the run that made it unmounts by itself).
pub fn forget(mount_at: &Path) -> Result<()> {
    let f = awake_file(mount_at);
    match std::fs::remove_file(&f) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("forgetting the mounted clone", &f, e)),
        _ => Ok(()),
    }
}

/// Whether the filesystem of `m` lives on a disk that carries an altdisk system other than
/// the running one: what a dead run or an old altdisk left awake.
fn is_alternate(m: &mounts::Mount, table: &[mounts::Mount]) -> bool {
    let Ok(disks) = blockdev::list() else { return false };
    let root = mounts::mount_at(table, Path::new("/")).map(|r| (r.major, r.minor));
    disks.iter().any(|d| {
        d.holds(m.major, m.minor)
            && !root.is_some_and(|(a, b)| d.holds(a, b))
            && matches!(record::read(&d.path), Some(Ok(_)))
    })
}

/// Unmount the system awake at `mount_at` (AIX `alt_rootvg_op -S`): everything mounted at or
/// below it, deepest first, then what was done to mount it (volume group, loop devices).
/// Returns what was done, one line each. Refuses a mount point holding anything else.
pub fn sleep(mount_at: &Path) -> Result<Vec<String>> {
    let mut done = crate::write::journal::recover()?;
    let table = mounts::read()?;
    let rec = read(mount_at);
    let here = mounts::mount_at(&table, mount_at);
    let mut below: Vec<&mounts::Mount> = mounts::below(&table, mount_at);
    if rec.is_none() {
        if let Some(m) = here.or(below.first().copied()) {
            if !is_alternate(m, &table) {
                return Err(Error::refused(
                    mount_at.display().to_string(),
                    format!("{} mounted there is not an alternate system altdisk woke", m.source),
                    "unmount it yourself if that is what you mean (altdisk puts to sleep only its own systems)",
                ));
            }
        }
    }
    below.reverse();
    for m in below {
        tfs::unmount(&m.target)?;
        done.push(format!("unmounted {}", m.target.display()));
    }
    if here.is_some() {
        tfs::unmount(mount_at)?;
        done.push(format!("unmounted {}", mount_at.display()));
    }
    if let Some(a) = rec {
        if let Some(vg) = &a.vg {
            crate::cmd::settle();
            lvm::deactivate(vg)?;
            done.push(format!("deactivated volume group {vg}"));
        }
        for c in &a.crypts {
            crate::write::luks::close(c)?;
            done.push(format!("closed the encrypted device {c}"));
        }
        for l in &a.loops {
            tfs::detach_loop(l)?;
            done.push(format!("detached {}", l.display()));
        }
        forget(mount_at)?;
    }
    if done.is_empty() {
        return Err(Error::not_found(
            format!("alternate system at {}", mount_at.display()),
            "nothing is mounted there",
            "nothing to do; see `altdisk lspv` for the alternate systems on the disks",
        ));
    }
    Ok(done)
}
