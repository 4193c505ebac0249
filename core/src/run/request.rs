//! What a run is asked to do, and what it reports when done.

use std::path::PathBuf;

use serde::Serialize;

use crate::discover::record::State;
use crate::plan::customize::Customize;
use crate::plan::{BootlistMode, Layout, Phases};
use crate::write::copy::CopyStats;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct CloneRequest {
    pub targets: Vec<String>,
    pub source_dir: Option<PathBuf>,
    /// Clone the system on this disk (not running), mounted read-only for the run: the
    /// offline disk swap of the rescue image.
    pub source_disk: Option<String>,
    pub phases: Phases,
    pub layout: Option<Layout>,
    pub exclude: Option<PathBuf>,
    pub convert_ext: bool,
    pub skip_space_check: bool,
    pub skip_boot_checks: bool,
    pub force: bool,
    pub image_size: Option<u64>,
    pub mount_at: PathBuf,
    pub name: String,
    pub threads: usize,
    pub bootlist: BootlistMode,
    /// Phase 2: what to do to the clone before it is made bootable.
    pub customize: Customize,
}

impl Default for CloneRequest {
    fn default() -> Self {
        CloneRequest {
            targets: Vec::new(),
            source_dir: None,
            source_disk: None,
            phases: Phases::All,
            layout: None,
            exclude: None,
            convert_ext: false,
            skip_space_check: false,
            skip_boot_checks: false,
            force: false,
            image_size: None,
            mount_at: PathBuf::from(crate::ALT_INST),
            name: crate::ALTINST_ROOTVG.into(),
            threads: 0,
            bootlist: BootlistMode::First,
            customize: Default::default(),
        }
    }
}

/// A refresh of a clone made earlier (`alt_disk_copy --refresh`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Decide whether a file's data changed by its bytes, not its size and mtime.
    pub checksum: bool,
    /// The phases to run after the copy; None: those the clone had done (phase 3 again for
    /// a bootable clone).
    pub phases: Option<Phases>,
}

/// What a finished run did.
#[derive(Debug, Clone, Serialize)]
pub struct CloneReport {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub name: String,
    pub state: State,
    pub mounted_at: Option<PathBuf>,
    pub targets: Vec<String>,
    pub copy: CopyStats,
    pub fstab_changes: usize,
    /// The UEFI entry made for the clone (Boot####), when one was.
    pub boot_entry: Option<String>,
    pub warnings: Vec<String>,
    pub seconds: f64,
}
