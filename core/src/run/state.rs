//! A run in progress: what it works on (its targets and their records), what it has made
//! (held by guards, undone in reverse when dropped), and the small steps every phase takes:
//! recording the step, flushing and checking, marking a phase done.

use std::path::{Path, PathBuf};

use crate::boot::bootloader::RootIds;
use crate::discover::blockdev::Disk;
use crate::discover::boot::BootSetup;
use crate::discover::record::{self, BootEnv, State};
use crate::error::{IoContext, Result};
use crate::job::Job;
use crate::plan::customize::Customize;
use crate::plan::lock::TargetLock;
use crate::plan::{BootlistMode, Phases};
use crate::write::copy::CopyStats;
use crate::write::fs::{self as tfs, LoopDev, Mounted};
use crate::write::lvm;

use crate::write::journal;

/// Everything made so far, undone in reverse when dropped: mounts (children before parents),
/// then the volume group, then loop devices.
pub(super) struct Made {
    pub(super) loops: Vec<LoopDev>,
    pub(super) mounts: Vec<Mounted>,
    /// A volume group to deactivate.
    pub(super) vg: Option<String>,
}

impl Made {
    pub(super) fn release_mounts(&mut self) -> Result<()> {
        let mut first = None;
        while let Some(m) = self.mounts.pop() {
            if let Err(e) = m.unmount() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            drop(m);
        }
        if let Some(vg) = self.vg.take() {
            if let Err(e) = lvm::deactivate(&vg) {
                tracing::error!("{e}");
            }
        }
        self.loops.clear();
    }
}

/// One target of the run: where its record lives (the disk, or the image file) and the
/// device the clone is written through (the disk, or the loop device over the file).
pub(super) struct RunDisk {
    pub(super) record: PathBuf,
    pub(super) dev: PathBuf,
    /// Byte offset of its altdisk-meta partition.
    pub(super) meta: u64,
    pub(super) image: bool,
}

/// A run in progress: what it works on and what it has made.
pub(super) struct Run {
    pub(super) mount_at: PathBuf,
    pub(super) phases: Phases,
    pub(super) customize: Customize,
    pub(super) bootlist: BootlistMode,
    pub(super) skip_boot_checks: bool,
    pub(super) disks: Vec<RunDisk>,
    pub(super) env: BootEnv,
    pub(super) made: Made,
    /// How the clone boots, for phase 3 (found on the source when planning, or on the clone
    /// when resuming).
    pub(super) boot: Option<BootSetup>,
    pub(super) root_ids: Option<RootIds>,
    pub(super) cmdline: String,
    /// The first target, when it is a disk: its boot entry names it.
    pub(super) boot_disk: Option<Disk>,
    /// The ESP's partition number on the first disk.
    pub(super) esp_part: Option<u32>,
    pub(super) warnings: Vec<String>,
    pub(super) copy: CopyStats,
    pub(super) fstab_changes: usize,
    pub(super) journal: journal::Journal,
    pub(super) _locks: Vec<TargetLock>,
    /// The system being cloned when it is not running, mounted read-only for this run.
    pub(super) _source: Option<crate::systems::mount::SystemMount>,
    /// The clone was awake at the mount point before this run (a resume).
    pub(super) adopted: bool,
    pub(super) started: std::time::Instant,
    pub(super) boot_entry: Option<String>,
    pub(super) mounted_at: Option<PathBuf>,
    pub(super) target_names: Vec<String>,
    /// A refresh: the clone keeps the firmware boot entry it has.
    pub(super) keep_entry: bool,
    /// Stay awake at the mount point at the end (or not), whatever the phases; None: as a
    /// new clone does (awake until phase 3 has run).
    pub(super) stay_awake: Option<bool>,
}

impl Run {
    pub(super) fn warn(&mut self, job: &Job, w: String) {
        job.warn(w.clone());
        self.warnings.push(w);
    }

    pub(super) fn save(&mut self, step: Option<&str>) -> Result<()> {
        self.env.step = step.map(String::from);
        for (i, d) in self.disks.iter().enumerate() {
            self.env.disk_index = i;
            self.env.updated = record::now_rfc3339();
            record::write_at(&d.record, d.meta, &self.env)?;
        }
        self.journal.update(|j| j.step = step.map(String::from))?;
        crate::job::test_pause_at(step.unwrap_or("done"));
        Ok(())
    }

    pub(super) fn flush(&mut self, job: &Job) -> Result<()> {
        job.check()?;
        for m in &self.made.mounts {
            tfs::flush_check(m.target())?;
        }
        Ok(())
    }

    pub(super) fn needs_units(&self) -> bool {
        self.bootlist == BootlistMode::Trial
            || (self.phases.has(2) && (self.customize.first_boot.is_some() || self.customize.device_reset))
    }

    pub(super) fn mark_done(&mut self, phase: u8) -> Result<()> {
        if !self.env.phases_done.contains(&phase) {
            self.env.phases_done.push(phase);
            self.env.phases_done.sort();
        }
        Ok(())
    }

    pub(super) fn final_state(&self) -> State {
        let done = &self.env.phases_done;
        if done.contains(&3) {
            State::Complete
        } else if done.contains(&2) {
            State::Customized
        } else if done.contains(&1) {
            State::Copied
        } else {
            State::Incomplete
        }
    }
}

/// The clone's own copy of its record, for the system once it runs.
pub(super) fn write_clone_record(mount_at: &Path, env: &BootEnv) -> Result<()> {
    let dir = mount_at.join("etc/altdisk");
    std::fs::create_dir_all(&dir).ctx("writing the clone's record", &dir)?;
    let f = dir.join("bootenv.json");
    std::fs::write(&f, serde_json::to_vec_pretty(env).unwrap_or_default()).ctx("writing the clone's record", &f)
}
