//! The D-Bus service of altdisk (`altdiskd`). The API itself (names, info types, typed
//! options, errors, proxies) is the `altdisk-api` crate, which clients use without this
//! engine; here are the server ([`service`]), the seam it calls ([`engine`]) and the two
//! engines behind it: this machine's disks ([`real`]) and a described, simulated set
//! ([`sim`], `altdiskd --sim FILE`). The API is documented in docs/dbus.md and its
//! introspection XML is checked in under docs/.

pub mod engine;
pub mod real;
pub mod service;
pub mod sim;

pub use altdisk_api as api;
pub use altdisk_api::Error as DbusError;
pub use altdisk_api::{BUS_NAME, JOBS_PATH, JOB_IFACE, MANAGER_IFACE, MANAGER_PATH};

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
            E::UndoFailed { cause, .. } if matches!(*cause, E::Cancelled) => DbusError::Cancelled(m),
            _ => DbusError::Failed(m),
        }
    }
}
