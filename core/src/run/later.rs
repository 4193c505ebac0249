//! Phases 2 and 3 of a run, for a new clone after phase 1 and for a clone made earlier alike:
//! customize it ([`crate::write::customize`]), then make it bootable
//! ([`crate::boot::bootloader`]); each is flushed, checked and recorded as done.

use std::path::{Path, PathBuf};

use crate::boot::bootloader::{self};
use crate::discover::record::step;
use crate::error::{Error, Result};
use crate::job::{Job, Phase};

use super::state::Run;

impl Run {
    pub(super) fn later_phases(&mut self, job: &Job) -> Result<()> {
        if self.phases.has(2) {
            job.check()?;
            job.set_phase(Phase::Customizing);
            self.save(Some(step::CUSTOMIZING))?;
            let disks: Vec<PathBuf> = self.disks.iter().map(|d| d.record.clone()).collect();
            crate::write::customize::run(&self.mount_at, &self.customize, &disks, job)?;
            self.flush(job)?;
            self.env.customized = Some(!self.customize.is_empty());
            self.mark_done(2)?;
        }
        if self.phases.has(3) {
            if let Some(setup) = self.boot.clone() {
                job.check()?;
                job.set_phase(Phase::MakingBootable);
                self.save(Some(step::BOOTABLE))?;
                let ids = self
                    .root_ids
                    .clone()
                    .ok_or_else(|| Error::corrupt("the clone's record", "it names no root filesystem"))?;
                let disks: Vec<&Path> = self.disks.iter().map(|d| d.dev.as_path()).collect();
                bootloader::install(&self.mount_at, &setup, &disks, &ids, &self.cmdline, job)?;
                self.flush(job)?;
                self.mark_done(3)?;
            }
        }
        Ok(())
    }
}
