//! altdisk: clone a running Linux root system onto free disks as a complete, independent,
//! bootable alternate system (`altinst_rootvg`), in the manner of AIX `alt_disk_copy`.
//!
//! Data flows one way, and the folders follow it: [`discover`] finds what exists (disks,
//! mounts, the source system, the records of systems altdisk made), [`plan`] derives a pure,
//! printable [`plan::Plan`] and checks it, [`write`] partitions, makes filesystems, copies
//! and customizes, [`boot`] makes the clone bootable and manages the boot list, [`systems`]
//! works on systems that exist (wake, sleep, rename, remove), and [`run`] is the one
//! pipeline that takes a request through those steps while reporting to a [`job::Job`].
//! Underneath all of them: [`cmd`] (the one runner of external tools), [`error`], [`size`].
//! [`dbus`] serves the same library on the system bus.

pub mod boot;
pub mod cmd;
pub mod dbus;
pub mod discover;
pub mod error;
pub mod job;
pub mod plan;
pub mod run;
pub mod size;
pub mod systems;
pub mod write;

pub use error::{Error, Result};

/// Version of the JSON documents altdisk prints (`--json`) and stores on disks.
pub const API_VERSION: &str = "altdisk.io/v1";

/// Where the alternate system is mounted while it is being built, as on AIX.
pub const ALT_INST: &str = "/alt_inst";

/// The name a freshly made clone carries until it is booted.
pub const ALTINST_ROOTVG: &str = "altinst_rootvg";
