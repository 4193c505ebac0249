//! The seam between the service and what it serves (stratisd's engine trait): the service
//! authorises, converts and calls an [`Engine`]; [`super::real::RealEngine`] calls the
//! library on this machine's disks, [`super::sim::SimEngine`] serves a described set of disks
//! and systems without root. Engine methods block; the service runs them off its executor.
//!
//! Also here: [`DevKey`], how the service tells that two names mean one device (the Busy
//! check): block devices by device number, files by (st_dev, st_ino) and canonical path, and
//! a loop device as its backing file too.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use altdisk_api::{BootEntryInfo, BootEnvInfo, CloneOptions, DiskDetail, DiskInfo, PlanDetails, SystemInfo};

use crate::error::Result;
use crate::job::Job;

/// One identity of a device; two targets collide when any of their keys are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DevKey {
    /// A block device, by its device number (st_rdev).
    Block(u64),
    /// A file, by (st_dev, st_ino).
    File(u64, u64),
    /// A file by its canonical path (also before it exists).
    Path(PathBuf),
    /// A simulated disk, by name.
    Sim(String),
}

/// The keys of whatever `path` names: a disk, a loop device (and its backing file), an image
/// file (existing or not yet).
pub fn keys_of(path: &Path) -> Vec<DevKey> {
    let mut v = Vec::new();
    match std::fs::metadata(path) {
        Ok(md) if md.file_type().is_block_device() => {
            v.push(DevKey::Block(md.rdev()));
            if let Some(file) = loop_backing_file(md.rdev()) {
                v.extend(file_keys(&file));
            }
        }
        Ok(_) => v.extend(file_keys(path)),
        Err(_) => {
            // Not there yet (an image file to create): its canonical directory and name.
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if let (Ok(dir), Some(name)) = (std::fs::canonicalize(parent), path.file_name()) {
                v.push(DevKey::Path(dir.join(name)));
            } else {
                v.push(DevKey::Path(path.to_path_buf()));
            }
        }
    }
    v
}

fn file_keys(path: &Path) -> Vec<DevKey> {
    let mut v = Vec::new();
    if let Ok(md) = std::fs::metadata(path) {
        v.push(DevKey::File(md.dev(), md.ino()));
    }
    v.push(DevKey::Path(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())));
    v
}

/// The backing file of the loop device with this device number, if it is one.
fn loop_backing_file(rdev: u64) -> Option<PathBuf> {
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}/loop/backing_file"));
    let text = std::fs::read_to_string(sys).ok()?;
    let f = text.trim_end_matches('\n').trim_end_matches(" (deleted)");
    (!f.is_empty()).then(|| PathBuf::from(f))
}

/// Whether any key of `a` is among `b`.
pub fn collide(a: &[DevKey], b: &[DevKey]) -> bool {
    a.iter().any(|k| b.contains(k))
}

/// What a finished job leaves behind.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Where the clone is left mounted (phase 1 without phase 3).
    pub mounted_at: Option<PathBuf>,
}

/// A job, checked and ready to run on a thread of its own.
pub trait Work: Send {
    /// clone or resume.
    fn kind(&self) -> &'static str;
    /// Do it, reporting progress to `job` and stopping when it is cancelled.
    fn run(self: Box<Self>, job: &Job) -> Result<Outcome>;
}

/// What the service needs from whatever serves the disks.
pub trait Engine: Send + Sync + 'static {
    /// A simulation (the `Simulated` property, and no polkit).
    fn simulated(&self) -> bool;
    /// Some(allowed) when the engine decides authorisation itself (a simulation); None: ask
    /// polkit.
    fn local_authorization(&self, _action: &str) -> Option<bool> {
        None
    }
    /// `uefi` or `bios`.
    fn firmware(&self) -> &'static str;
    fn disks(&self) -> Result<Vec<DiskInfo>>;
    /// Disks with partitions and contents; nothing of a disk with a key in `busy` is mounted
    /// to look into it.
    fn disk_details(&self, busy: &[DevKey]) -> Result<Vec<DiskDetail>>;
    fn systems(&self) -> Result<Vec<SystemInfo>>;
    fn boot_environments(&self) -> Result<Vec<BootEnvInfo>>;
    fn boot_list(&self) -> Result<Vec<BootEntryInfo>>;
    fn set_boot_list(&self, disks: &[String]) -> Result<()>;
    fn set_boot_next(&self, disk: &str) -> Result<()>;
    fn trial_boot(&self, disk: &str) -> Result<()>;
    /// The plan as JSON; writes nothing.
    fn plan(&self, o: &CloneOptions, mount_at: &Path) -> Result<String>;
    fn plan_details(&self, o: &CloneOptions, mount_at: &Path, busy: &[DevKey]) -> Result<PlanDetails>;
    /// The devices a job with these options writes, by name, each with its keys. Cheap:
    /// called before the job is planned, to refuse one that would collide (Busy).
    fn target_keys(&self, o: &CloneOptions) -> Result<Vec<(String, Vec<DevKey>)>>;
    /// Check and plan a job; `mount_at` is its own mount point.
    fn prepare(&self, o: &CloneOptions, mount_at: &Path) -> Result<Box<dyn Work>>;
    /// Mount the system on `disk` at `at`; returns where.
    fn wake(&self, disk: &str, at: &Path) -> Result<String>;
    fn sleep(&self, mount_point: &str) -> Result<()>;
    /// Remove every alternate system of this name.
    fn remove(&self, name: &str) -> Result<()>;
    /// Remove the system whose record is on `disk`.
    fn remove_system(&self, disk: &str) -> Result<()>;
    fn rename(&self, disk: &str, new_name: &str) -> Result<()>;
    /// At start: clean up after an interrupted previous run; returns what was done.
    fn recover(&self) -> Result<Vec<String>>;
    /// A cheap value that changes when the disks change (polled for DisksChanged).
    fn fingerprint(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_the_same_by_any_path() {
        let dir = std::env::temp_dir().join(format!("altdisk-keys-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let f = dir.join("x.img");
        // Before it exists: by path, so a second job naming it another way collides too.
        let before = keys_of(&f);
        assert!(collide(&before, &keys_of(&dir.join("sub/../x.img"))));
        std::fs::write(&f, b"x").unwrap();
        std::os::unix::fs::symlink(&f, dir.join("link.img")).unwrap();
        let k = keys_of(&f);
        assert!(collide(&k, &keys_of(&dir.join("link.img"))));
        assert!(collide(&k, &before), "created meanwhile: the path still matches");
        assert!(!collide(&k, &keys_of(&dir.join("y.img"))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
