//! The D-Bus API of altdisk's service, `altdiskd`, as its clients see it: the bus name,
//! object paths and interface names, the info types the methods return, the typed options
//! of `Clone` and `Plan` with their `a{sv}` form, the error names, and the proxies. The
//! service, the GUI, the tests and the rescue image's tools share this crate; it never pulls
//! in the engine (`altdisk`), so a client builds without it.
//!
//! Versioned from day one: the major version is in the bus name, the interface names and
//! the object paths, and a published interface only grows (methods, properties and signals
//! are added; none changes). [`API_VERSION`] is what the service's `Version` property says.
//! docs/dbus.md describes every member; docs/*.xml hold the introspection the tests compare
//! with the live service.
//!
//! A client connects to the system bus, makes a [`ManagerProxy`] and calls it; every method
//! of the proxies allows interactive authorisation, so polkit's agent may ask the user.

pub mod error;
pub mod options;
pub mod proxy;
pub mod types;

pub use error::Error;
pub use options::{BootlistMode, CloneOptions, OptionError, Phase2Options, Phases, VerifyOptions};
pub use proxy::{JobProxy, ManagerProxy};
pub use types::*;

/// The well-known bus name of the service.
pub const BUS_NAME: &str = "org.altdisk.AltDisk1";
/// The Manager object.
pub const MANAGER_PATH: &str = "/org/altdisk/AltDisk1";
/// Job objects live below this path, one per job (`.../jobs/N`).
pub const JOBS_PATH: &str = "/org/altdisk/AltDisk1/jobs";
pub const MANAGER_IFACE: &str = "org.altdisk.AltDisk1.Manager";
pub const JOB_IFACE: &str = "org.altdisk.AltDisk1.Job";
/// Prefix of the D-Bus error names (see [`Error`]).
pub const ERROR_PREFIX: &str = "org.altdisk.AltDisk1.Error";
/// Major.minor of this API, as the `Version` property says it. The major version is the `1`
/// in the names above; the minor one counts additions.
pub const API_VERSION: &str = "1.3";

/// polkit actions (core/dist/org.altdisk.policy), by what a method does.
pub mod actions {
    /// List disks, systems (also those found on the disks), the boot list, jobs; plan.
    pub const READ: &str = "org.altdisk.read";
    /// Start a clone, cancel a job.
    pub const CLONE: &str = "org.altdisk.clone";
    /// Change the firmware boot order (boot list, boot next, trial boot), restore a found
    /// system, boot one now.
    pub const BOOTLIST: &str = "org.altdisk.bootlist";
    /// Wake, sleep, rename, remove an alternate system; repair a found system's boot.
    pub const MANAGE: &str = "org.altdisk.manage";
}
