//! Client proxies for the altdisk service, used by the GUI and the tests.

use std::collections::HashMap;

use zbus::wire::{OwnedObjectPath, OwnedVariant};

use super::{BootEntryInfo, BootEnvInfo, DiskInfo};

#[zbus::proxy(
    interface = "org.altdisk.AltDisk1.Manager",
    default_service = "org.altdisk.AltDisk1",
    default_path = "/org/altdisk/AltDisk1"
)]
pub trait Manager {
    fn disks(&self) -> zbus::Result<Vec<DiskInfo>>;
    fn boot_environments(&self) -> zbus::Result<Vec<BootEnvInfo>>;
    fn boot_list(&self) -> zbus::Result<Vec<BootEntryInfo>>;
    fn set_boot_list(&self, disks: Vec<String>) -> zbus::Result<()>;
    fn set_boot_next(&self, disk: &str) -> zbus::Result<()>;
    fn plan(&self, options: HashMap<String, OwnedVariant>) -> zbus::Result<String>;
    fn clone(&self, options: HashMap<String, OwnedVariant>) -> zbus::Result<OwnedObjectPath>;
    fn wake(&self, disk: &str) -> zbus::Result<String>;
    fn sleep(&self, mount_point: &str) -> zbus::Result<()>;
    fn remove(&self, name: &str) -> zbus::Result<()>;
    fn rename(&self, disk: &str, new_name: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn disks_changed(&self, disks: Vec<DiskInfo>) -> zbus::Result<()>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
}

#[zbus::proxy(interface = "org.altdisk.AltDisk1.Job", default_service = "org.altdisk.AltDisk1")]
pub trait Job {
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
}

/// Build the options dictionary of Plan and Clone from simple values.
pub fn options<'a>(
    pairs: impl IntoIterator<Item = (&'a str, zbus::wire::Variant<'a>)>,
) -> HashMap<String, OwnedVariant> {
    pairs.into_iter().filter_map(|(k, v)| OwnedVariant::try_from(v).ok().map(|v| (k.to_string(), v))).collect()
}
