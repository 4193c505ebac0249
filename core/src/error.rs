//! Typed errors at the library boundary. Each variant is something a caller can act on;
//! every message says what failed, why, and what to do next. [`Error::exit_code`] gives the
//! documented exit status of the `altdisk` command for each kind.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: a flag, a file, a value.
    #[error("{what}: {why}; {todo}")]
    Usage { what: String, why: String, todo: String },

    /// A disk, file or system that was named does not exist.
    #[error("{what} not found: {why}; {todo}")]
    NotFound { what: String, why: String, todo: String },

    /// A target that must not be written: in use, holding data, the running system.
    #[error("refusing {target}: {why}; {todo}")]
    Refused { target: String, why: String, todo: String },

    /// The data does not fit on the targets.
    #[error("{what} is too small: {needed} needed, {available} available; {todo}")]
    TooSmall { what: String, needed: String, available: String, todo: String },

    /// A feature that a later release provides, or that has no Linux meaning.
    #[error("{what} is not supported{why}; {todo}")]
    Unsupported { what: String, why: String, todo: String },

    /// An external command failed.
    #[error("{description} failed: `{command}` {status}{stderr}")]
    Command { description: String, command: String, status: String, stderr: String },

    /// A system call or file operation failed.
    #[error("{context} ({path}): {source}{}", io_hint(source))]
    Io {
        context: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The user (or a signal) cancelled the run.
    #[error("cancelled: the target is left marked incomplete; to start over, run the same command again with --force")]
    Cancelled,

    /// Writes to a target did not reach it: a flush failed, or its filesystem recorded
    /// errors or went read-only. The clone cannot be trusted.
    #[error("{what}: {why}; the target is left marked incomplete; {todo}")]
    TargetFailed { what: String, why: String, todo: String },

    /// Another altdisk run holds a target.
    #[error("refusing {target}: {why}; {todo}")]
    Busy { target: String, why: String, todo: String },

    /// The copy finished but some entries could not be copied.
    #[error(
        "{count} entries could not be copied, first: {first}; the target is left marked incomplete; \
         mend or exclude (-e) what the errors name (ALTDISK_LOG=warn lists each), then run again with --force"
    )]
    CopyFailed { count: u64, first: String },

    /// Cleaning up after a failure failed too; the original cause is kept.
    #[error("{cause}; while undoing: {undo}")]
    UndoFailed { cause: Box<Error>, undo: String },

    /// Something on disk is not what altdisk wrote or expects.
    #[error("{what}: {why}")]
    Corrupt { what: String, why: String },
}

impl Error {
    pub fn usage(what: impl Into<String>, why: impl Into<String>, todo: impl Into<String>) -> Self {
        Error::Usage { what: what.into(), why: why.into(), todo: todo.into() }
    }

    pub fn refused(target: impl Into<String>, why: impl Into<String>, todo: impl Into<String>) -> Self {
        Error::Refused { target: target.into(), why: why.into(), todo: todo.into() }
    }

    pub fn not_found(what: impl Into<String>, why: impl Into<String>, todo: impl Into<String>) -> Self {
        Error::NotFound { what: what.into(), why: why.into(), todo: todo.into() }
    }

    /// `why` is appended after "is not supported", so start it with " yet" or ": ...".
    pub fn unsupported(what: impl Into<String>, why: impl Into<String>, todo: impl Into<String>) -> Self {
        Error::Unsupported { what: what.into(), why: why.into(), todo: todo.into() }
    }

    pub fn io(context: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), path: path.into(), source }
    }

    pub fn corrupt(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Corrupt { what: what.into(), why: why.into() }
    }

    /// Exit status of the `altdisk` command for this error (documented in README.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage { .. } => 2,
            Error::NotFound { .. } => 3,
            Error::Refused { .. } | Error::Busy { .. } => 4,
            Error::TooSmall { .. } => 5,
            Error::Unsupported { .. } => 6,
            Error::Command { .. }
            | Error::Io { .. }
            | Error::CopyFailed { .. }
            | Error::Corrupt { .. }
            | Error::TargetFailed { .. } => 1,
            Error::Cancelled => 130,
            Error::UndoFailed { cause, .. } => cause.exit_code(),
        }
    }
}

/// What to do about an I/O error, by its cause: the part of the one-line message that
/// tells the user what next.
pub fn io_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => "; the filesystem is full: free space there, or give the clone more room (larger disks, or sizes in a layout file with -i)",
        Some(libc::EDQUOT) => "; a disk quota is exhausted: raise it or write elsewhere",
        Some(libc::EROFS) => "; the filesystem is read-only (it may have been remounted read-only after errors: see dmesg)",
        Some(libc::EIO) => "; an I/O error: the disk may be failing (see dmesg); choose another disk",
        Some(libc::EPERM) | Some(libc::EACCES) => "; check its permissions and flags (lsattr: an immutable or append-only file cannot be written)",
        Some(libc::ENAMETOOLONG) => "; a name is longer than the filesystem allows: exclude it with -e, or rename it",
        Some(libc::ENOENT) => "; check that the path exists",
        Some(libc::EBUSY) => "; something else uses it: close what holds it (fuser -m, lsof) and try again",
        _ => "",
    }
}

/// Attach a context phrase and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: &str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: &str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(context, path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, context: &str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(context, path, std::io::Error::from(e)))
    }
}
