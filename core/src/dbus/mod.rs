//! The D-Bus API of altdisk (`altdiskd`): versioned from day one (the major version is in
//! the bus name, the interface names and the object paths; a published interface never
//! changes, a new one is added instead). [`service`] is the server, [`client`] the proxies
//! the GUI and the tests use. The API is documented in docs/dbus.md and its introspection
//! XML is checked in under docs/.

pub mod client;
pub mod service;

use serde::{Deserialize, Serialize};
use zbus::wire::Type;

pub const BUS_NAME: &str = "org.altdisk.AltDisk1";
pub const MANAGER_PATH: &str = "/org/altdisk/AltDisk1";
pub const JOBS_PATH: &str = "/org/altdisk/AltDisk1/jobs";
pub const MANAGER_IFACE: &str = "org.altdisk.AltDisk1.Manager";
pub const JOB_IFACE: &str = "org.altdisk.AltDisk1.Job";

/// polkit actions (see udev-rules/../dist/org.altdisk.policy).
pub const ACTION_READ: &str = "org.altdisk.read";
pub const ACTION_CLONE: &str = "org.altdisk.clone";
pub const ACTION_BOOTLIST: &str = "org.altdisk.bootlist";
pub const ACTION_MANAGE: &str = "org.altdisk.manage";

/// A disk as the service shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DiskInfo {
    pub name: String,
    pub alias: String,
    pub path: String,
    pub model: String,
    pub serial: String,
    pub size: u64,
    pub bus: String,
    pub removable: bool,
    /// rootvg, altinst_rootvg, old_rootvg, free, in use, not free.
    pub role: String,
    /// Why it is in use, or the state of the system on it.
    pub detail: String,
}

/// A boot environment (a system on disks altdisk knows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct BootEnvInfo {
    pub name: String,
    pub disks: Vec<String>,
    pub state: String,
    pub source: String,
    pub created: String,
}

/// One UEFI boot entry, matched to a disk where it points at one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct BootEntryInfo {
    pub number: String,
    pub description: String,
    pub disk: String,
    pub system: String,
    pub active: bool,
    pub in_order: bool,
    pub next: bool,
    pub current: bool,
}

/// Errors on the bus, by name; a caller can act on each.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.altdisk.AltDisk1.Error")]
pub enum DbusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    AccessDenied(String),
    InvalidArgs(String),
    NotFound(String),
    Refused(String),
    TooSmall(String),
    NotSupported(String),
    Busy(String),
    Failed(String),
    Cancelled(String),
}

impl From<crate::Error> for DbusError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        let m = e.to_string();
        match e {
            E::Usage { .. } => DbusError::InvalidArgs(m),
            E::NotFound { .. } => DbusError::NotFound(m),
            E::Refused { .. } => DbusError::Refused(m),
            E::Busy { .. } => DbusError::Busy(m),
            E::TooSmall { .. } => DbusError::TooSmall(m),
            E::Unsupported { .. } => DbusError::NotSupported(m),
            E::Cancelled => DbusError::Cancelled(m),
            _ => DbusError::Failed(m),
        }
    }
}
