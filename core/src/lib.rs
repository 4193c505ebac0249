//! altdisk: clone a running Linux root system onto free disks as a complete, independent,
//! bootable alternate system (`altinst_rootvg`), in the manner of AIX `alt_disk_copy`.
//!
//! Data flows one way: [`source`] and [`blockdev`] discover what exists, [`plan`] derives a
//! pure, printable [`plan::Plan`], [`clone`] executes it step by step while reporting to a
//! [`job::Job`], and [`bootenv`] records on the target what state the clone is in.

pub mod altops;
pub mod blockdev;
pub mod bootenv;
pub mod boothook;
pub mod bootlist;
pub mod bootloader;
pub mod clone;
pub mod cmd;
pub mod contents;
pub mod copy;
pub mod customize;
pub mod dbus;
pub mod efi;
pub mod error;
pub mod exclude;
pub mod fixup;
pub mod fs;
pub mod job;
pub mod lvm;
pub mod mounts;
pub mod partition;
pub mod plan;
pub mod safety;
pub mod size;
pub mod source;
pub mod trial;

pub use error::{Error, Result};

/// Version of the JSON documents altdisk prints (`--json`) and stores on disks.
pub const API_VERSION: &str = "altdisk.io/v1";

/// Where the alternate system is mounted while it is being built, as on AIX.
pub const ALT_INST: &str = "/alt_inst";

/// The name a freshly made clone carries until it is booted.
pub const ALTINST_ROOTVG: &str = "altinst_rootvg";
