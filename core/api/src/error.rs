//! The service's errors, by D-Bus name (`org.altdisk.AltDisk1.Error.` + the variant). Each
//! carries the same one-line message (what failed, why, what to do) the command line prints.
//! A client turns a failed call into this type with `Error::from(zbus_error)` and acts on the
//! variant: for instance `Busy` (wait for the other job), `AccessDenied` (polkit said no).

/// Errors on the bus, by name; a caller can act on each.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.altdisk.AltDisk1.Error")]
pub enum Error {
    /// A transport error, or an error name this API does not know.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// polkit did not authorise the caller (or could not be asked).
    AccessDenied(String),
    /// An option, a name or a value is wrong.
    InvalidArgs(String),
    /// A named disk, file or system does not exist.
    NotFound(String),
    /// A target must not be written: in use, holding data, the running system.
    Refused(String),
    /// The data does not fit on the targets.
    TooSmall(String),
    /// Not supported (yet), or no meaning on this machine.
    NotSupported(String),
    /// A job is already writing one of the disks.
    Busy(String),
    /// A command or the copy failed.
    Failed(String),
    /// The work was cancelled.
    Cancelled(String),
}

impl From<crate::OptionError> for Error {
    fn from(e: crate::OptionError) -> Self {
        Error::InvalidArgs(e.to_string())
    }
}

impl Error {
    /// The one-line message, without the error name.
    pub fn message(&self) -> String {
        match self {
            Error::ZBus(e) => e.to_string(),
            Error::AccessDenied(m)
            | Error::InvalidArgs(m)
            | Error::NotFound(m)
            | Error::Refused(m)
            | Error::TooSmall(m)
            | Error::NotSupported(m)
            | Error::Busy(m)
            | Error::Failed(m)
            | Error::Cancelled(m) => m.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_errors_become_variants() {
        let name = zbus::names::OwnedErrorName::try_from("org.altdisk.AltDisk1.Error.Busy").unwrap();
        let msg = zbus::message::Message::method_call("/", "X").build(&()).unwrap();
        let e = zbus::Error::MethodError(name, Some("sdb is being written".into()), msg);
        match Error::from(e) {
            Error::Busy(m) => assert_eq!(m, "sdb is being written"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            zbus::DBusError::name(&Error::Refused(String::new())).as_str(),
            "org.altdisk.AltDisk1.Error.Refused"
        );
    }
}
