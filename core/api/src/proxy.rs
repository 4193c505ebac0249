//! Client proxies of the service's two interfaces. Every method call carries the
//! ALLOW_INTERACTIVE_AUTH flag, so the desktop's polkit agent may ask the user to
//! authenticate; a call without it (a plain `zbus::Proxy::call`) is answered without asking,
//! with AccessDenied when polkit wants a password.
//!
//! Methods that take options have typed forms too ([`ManagerProxy::start_clone`],
//! [`ManagerProxy::plan_details_of`]); errors turn into [`crate::Error`] with `From`.

use std::collections::HashMap;

use zbus::wire::{OwnedObjectPath, OwnedVariant};

use crate::options::CloneOptions;
use crate::types::{BootEntryInfo, BootEnvInfo, DiskDetail, DiskInfo, FoundSystem, JobInfo, PlanDetails, SystemInfo};

#[zbus::proxy(
    interface = "org.altdisk.AltDisk1.Manager",
    default_service = "org.altdisk.AltDisk1",
    default_path = "/org/altdisk/AltDisk1"
)]
pub trait Manager {
    #[zbus(allow_interactive_auth)]
    fn disks(&self) -> zbus::Result<Vec<DiskInfo>>;
    #[zbus(allow_interactive_auth)]
    fn boot_environments(&self) -> zbus::Result<Vec<BootEnvInfo>>;
    #[zbus(allow_interactive_auth)]
    fn boot_list(&self) -> zbus::Result<Vec<BootEntryInfo>>;
    #[zbus(allow_interactive_auth)]
    fn set_boot_list(&self, disks: Vec<String>) -> zbus::Result<()>;
    #[zbus(allow_interactive_auth)]
    fn set_boot_next(&self, disk: &str) -> zbus::Result<()>;
    #[zbus(allow_interactive_auth)]
    fn plan(&self, options: HashMap<String, OwnedVariant>) -> zbus::Result<String>;
    #[zbus(allow_interactive_auth)]
    fn clone(&self, options: HashMap<String, OwnedVariant>) -> zbus::Result<OwnedObjectPath>;
    #[zbus(allow_interactive_auth)]
    fn wake(&self, disk: &str) -> zbus::Result<String>;
    #[zbus(allow_interactive_auth)]
    fn sleep(&self, mount_point: &str) -> zbus::Result<()>;
    #[zbus(allow_interactive_auth)]
    fn remove(&self, name: &str) -> zbus::Result<()>;
    #[zbus(allow_interactive_auth)]
    fn rename(&self, disk: &str, new_name: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn disks_changed(&self, disks: Vec<DiskInfo>) -> zbus::Result<()>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;

    // 1.1
    #[zbus(allow_interactive_auth)]
    fn disk_details(&self) -> zbus::Result<Vec<DiskDetail>>;
    #[zbus(allow_interactive_auth)]
    fn systems(&self) -> zbus::Result<Vec<SystemInfo>>;
    #[zbus(allow_interactive_auth)]
    fn plan_details(&self, options: HashMap<String, OwnedVariant>) -> zbus::Result<PlanDetails>;
    #[zbus(allow_interactive_auth)]
    fn list_jobs(&self) -> zbus::Result<Vec<JobInfo>>;
    #[zbus(allow_interactive_auth)]
    fn trial_boot(&self, disk: &str) -> zbus::Result<()>;
    #[zbus(allow_interactive_auth)]
    fn remove_system(&self, disk: &str) -> zbus::Result<()>;
    #[zbus(property)]
    fn jobs(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
    #[zbus(property)]
    fn firmware(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn simulated(&self) -> zbus::Result<bool>;

    // 1.2: the rescue actions.
    /// Every system on every disk: the running one, those altdisk made, other Linux roots.
    #[zbus(allow_interactive_auth)]
    fn find_systems(&self) -> zbus::Result<Vec<FoundSystem>>;
    /// Make the system on `disk` the one that boots (`once`: at the next boot only); the
    /// line saying what was done.
    #[zbus(allow_interactive_auth)]
    fn restore_system(&self, disk: &str, once: bool) -> zbus::Result<String>;
    /// Boot the system on `disk` now (the machine restarts; `kexec`: without the firmware).
    #[zbus(allow_interactive_auth)]
    fn boot_now(&self, disk: &str, kexec: bool) -> zbus::Result<String>;
    /// Run phase 3 again on the system on `disk`; returns its job object.
    #[zbus(allow_interactive_auth)]
    fn repair_system(&self, disk: &str) -> zbus::Result<OwnedObjectPath>;

    // 1.3
    /// Compare the clone on `target` with its source; returns a job whose `Report` is the
    /// result (JSON) when it finishes.
    #[zbus(allow_interactive_auth)]
    fn verify(&self, target: &str, options: HashMap<String, OwnedVariant>) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(interface = "org.altdisk.AltDisk1.Job", default_service = "org.altdisk.AltDisk1")]
pub trait Job {
    #[zbus(allow_interactive_auth)]
    fn cancel(&self) -> zbus::Result<()>;
    #[zbus(property)]
    fn phase(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn bytes_done(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn bytes_total(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn files_done(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn files_total(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn rate(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn targets(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn error(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn log(&self, level: String, message: String) -> zbus::Result<()>;
    #[zbus(signal)]
    fn finished(&self, success: bool, error: String) -> zbus::Result<()>;

    // 1.1
    /// The log so far (level, message), for a client that came late.
    #[zbus(allow_interactive_auth)]
    fn log_lines(&self) -> zbus::Result<Vec<(String, String)>>;
    #[zbus(property)]
    fn current_path(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn steps(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn kind(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn owner_uid(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn started(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn mounted_at(&self) -> zbus::Result<String>;

    // 1.3
    /// What the job found, as JSON (`apiVersion` altdisk.io/v1), once it has finished: a
    /// clone's or refresh's report, or verify's; empty before.
    #[zbus(property)]
    fn report(&self) -> zbus::Result<String>;
}

impl ManagerProxy<'_> {
    /// `Clone` with typed options.
    pub async fn start_clone(&self, o: &CloneOptions) -> zbus::Result<OwnedObjectPath> {
        self.clone(o.to_dict()).await
    }

    /// `PlanDetails` with typed options.
    pub async fn plan_details_of(&self, o: &CloneOptions) -> zbus::Result<PlanDetails> {
        self.plan_details(o.to_dict()).await
    }

    /// `Verify` with typed options.
    pub async fn start_verify(&self, target: &str, o: &crate::options::VerifyOptions) -> zbus::Result<OwnedObjectPath> {
        self.verify(target, o.to_dict()).await
    }

    /// A proxy for the job at `path`, on the same connection.
    pub async fn job(&self, path: OwnedObjectPath) -> zbus::Result<JobProxy<'static>> {
        JobProxy::builder(self.inner().connection()).path(path).build().await
    }
}
