//! The seam between the service and what it serves (stratisd's engine trait): the service
//! authorises, converts and calls an [`Engine`]; [`super::real::RealEngine`] calls the
//! library on this machine's disks, [`super::sim::SimEngine`] serves a described set of disks
//! and systems without root. Engine methods block; the service runs them off its executor.
//!
//! Also here: [`DevKey`], how the service tells that two names mean one device (the Busy
//! check): on this machine by [`crate::discover::identity`] (which the target locks use too),
//! in a simulation by the simulated disk's name.

use std::path::{Path, PathBuf};

use altdisk_api::{
    BootEntryInfo, BootEnvInfo, CloneOptions, DiskDetail, DiskInfo, FoundSystem, PlanDetails, SystemInfo, VerifyOptions,
};

pub use crate::discover::identity::collide;
use crate::discover::identity::{self, DevId};
use crate::error::Result;
use crate::job::Job;

/// One identity of a device a job may write; two targets collide when any of their keys are
/// equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DevKey {
    /// A disk, loop device or image file of this machine.
    Dev(DevId),
    /// A simulated disk, by name.
    Sim(String),
}

/// The keys of whatever `path` names: a disk, a loop device (and its backing file), an image
/// file (existing or not yet).
pub fn keys_of(path: &Path) -> Vec<DevKey> {
    identity::ids(path).into_iter().map(DevKey::Dev).collect()
}

/// The devices a job writes, by name, each with its keys.
pub type Writes = Vec<(String, Vec<DevKey>)>;

/// What a finished job leaves behind.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Where the clone is left mounted (phase 1 without phase 3).
    pub mounted_at: Option<PathBuf>,
    /// What the job found, as JSON (the job's `Report`).
    pub report: Option<String>,
}

/// A job, checked and ready to run on a thread of its own.
pub trait Work: Send {
    /// clone, resume or repair ([`altdisk_api::job_kind`]).
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
    /// The devices a verify of the system on `target` reads (all its disks), by name.
    fn verify_keys(&self, target: &str) -> Result<Vec<(String, Vec<DevKey>)>>;
    /// Check and plan the comparison of the system on `target` with its source.
    fn prepare_verify(&self, target: &str, o: &VerifyOptions) -> Result<Box<dyn Work>>;
    /// Mount the system on `disk` at `at`; returns where.
    fn wake(&self, disk: &str, at: &Path) -> Result<String>;
    fn sleep(&self, mount_point: &str) -> Result<()>;
    /// Remove every alternate system of this name.
    fn remove(&self, name: &str) -> Result<()>;
    /// Remove the system whose record is on `disk`.
    fn remove_system(&self, disk: &str) -> Result<()>;
    fn rename(&self, disk: &str, new_name: &str) -> Result<()>;
    /// Every system on the disks (1.2); nothing of a disk with a key in `busy` is mounted to
    /// look into it.
    fn find_systems(&self, busy: &[DevKey]) -> Result<Vec<FoundSystem>>;
    /// Make the system on `disk` the one that boots (`once`: at the next boot only); the line
    /// saying what was done.
    fn restore(&self, disk: &str, once: bool) -> Result<String>;
    /// Boot the system on `disk` now: the machine restarts into it (or jumps into its kernel
    /// with kexec); the line saying what was done.
    fn boot_now(&self, disk: &str, kexec: bool) -> Result<String>;
    /// Check a repair of the system on `disk` (phase 3 again) and make it ready to run: the
    /// devices it writes, by name, each with its keys (for Busy), and the work; `mount_at` is
    /// where the system is mounted while it is repaired.
    fn prepare_repair(&self, disk: &str, mount_at: &Path) -> Result<(Writes, Box<dyn Work>)>;
    /// At start: clean up after an interrupted previous run; returns what was done.
    fn recover(&self) -> Result<Vec<String>>;
    /// A cheap value that changes when the disks change (polled for DisksChanged).
    fn fingerprint(&self) -> u64;
}
