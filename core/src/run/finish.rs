//! The ending every run shares: the clone's own record, the last flush, unmounting (or
//! staying awake), the firmware boot entry and order, the final record; or, on failure, the
//! undoing that leaves the targets marked incomplete.

use std::path::PathBuf;

use crate::boot::efi;
use crate::discover::boot::Firmware;
use crate::discover::record::{step, State};
use crate::error::{Error, Result};
use crate::job::{Job, Phase};
use crate::plan::BootlistMode;
use crate::systems::awake;
use crate::write::fs::{self as tfs};
use crate::write::lvm;

use super::request::CloneReport;
use super::state::{write_clone_record, Run};

impl Run {
    pub(super) fn finish(&mut self, job: &Job) -> Result<()> {
        job.check()?;
        let state = self.final_state();
        // As on AIX, the clone stays mounted until phase 3 has made it bootable.
        let keep_mounted = self.stay_awake.unwrap_or(!self.phases.has(3));
        // 1. The clone's own copy of its record, as it will be when it runs.
        let mut own = self.env.clone();
        own.state = state;
        own.step = None;
        own.note = None;
        own.disk_index = 0;
        write_clone_record(&self.mount_at, &own)?;
        // 2. Everything on disk, checked.
        self.save(Some(step::FLUSHING))?;
        self.flush(job)?;
        if !keep_mounted {
            job.set_phase(Phase::CleaningUp);
            self.made.release_mounts()?;
            for d in &self.disks {
                tfs::fsync_path(&d.dev)?;
            }
        }
        // 3. The firmware boot entry and order, once the clone is complete and on disk.
        if state == State::Complete {
            match self.env.boot_entry.filter(|_| self.keep_entry) {
                Some(n) => job.info(format!("the clone keeps its UEFI boot entry {}", efi::boot_name(n))),
                None => self.boot_list(job)?,
            }
        }
        // 4. The final record. A clone left awake may be changed by anyone: the next refresh
        // cannot vouch for it by its mount counts, and walks it.
        if keep_mounted {
            self.env.mount_counts.clear();
        }
        self.env.state = state;
        self.env.note = None;
        self.save(None)?;
        if keep_mounted {
            let loops: Vec<PathBuf> = self.made.loops.drain(..).map(|l| l.keep()).collect();
            for m in self.made.mounts.drain(..) {
                m.keep();
            }
            awake::record(&awake::Awake {
                mount_at: self.mount_at.clone(),
                loops,
                name: self.env.name.clone(),
                disks: self.disks.iter().map(|d| d.dev.clone()).collect(),
                vg: self.made.vg.take(),
                crypts: self.made.crypts.drain(..).map(|c| c.keep()).collect(),
            })?;
            self.mounted_at = Some(self.mount_at.clone());
        } else {
            // As AIX leaves altinst_rootvg varied off: last, once nothing writes to its disks
            // any more (udev answers writes with events that may activate it again).
            if let Some(vg) = self.made.vg.take() {
                crate::cmd::settle();
                lvm::deactivate(&vg)?;
            }
            while let Some(c) = self.made.crypts.pop() {
                c.close()?;
            }
            self.made.loops.clear();
            for d in self.disks.iter().filter(|d| d.image) {
                tfs::fsync_path(&d.record)?;
            }
        }
        Ok(())
    }

    pub(super) fn boot_list(&mut self, job: &Job) -> Result<()> {
        let Some(setup) = self.boot.clone() else { return Ok(()) };
        let Some(disk) = self.boot_disk.clone() else {
            job.info("the clone is an image file: no firmware boot entry made (it boots through \\EFI\\BOOT\\BOOTX64.EFI when written to a disk)");
            return Ok(());
        };
        if setup.firmware == Firmware::Bios {
            job.info(format!(
                "BIOS machine: {} now carries GRUB; the firmware owns the boot order: to boot it, {}",
                disk.name,
                crate::boot::bootlist::BIOS_HOWTO
            ));
            return Ok(());
        }
        let part = self.esp_part.ok_or_else(|| {
            Error::corrupt(format!("{} on {}", self.env.name, disk.name), "it has no EFI system partition")
        })?;
        let hd = efi::HardDrive::of_partition(&disk.path, part)?;
        self.save(Some(step::BOOT_ENTRY))?;
        let name = self.env.name.clone();
        let n = crate::boot::entry::place_boot_entry(&setup, &name, &disk, hd, self.bootlist, job, |n| {
            self.env.boot_entry = Some(n);
            self.env.trial = self.bootlist == BootlistMode::Trial;
            self.save(Some(step::BOOT_ORDER))
        })?;
        self.boot_entry = n.map(efi::boot_name);
        Ok(())
    }

    pub(super) fn conclude(mut self, r: Result<()>, job: &Job) -> Result<CloneReport> {
        match r {
            Ok(()) => {
                job.set_phase(Phase::Done);
                Ok(CloneReport {
                    api_version: crate::API_VERSION.into(),
                    name: self.env.name.clone(),
                    state: self.env.state,
                    mounted_at: self.mounted_at.take(),
                    targets: self.target_names.clone(),
                    copy: std::mem::take(&mut self.copy),
                    fstab_changes: self.fstab_changes,
                    boot_entry: self.boot_entry.take(),
                    warnings: std::mem::take(&mut self.warnings),
                    seconds: self.started.elapsed().as_secs_f64(),
                })
            }
            Err(e) => {
                job.set_phase(Phase::CleaningUp);
                // Unmount and detach first so the record write is the last thing on the disk.
                let undo = self.made.release_mounts().err();
                self.env.state = State::Incomplete;
                self.env.note = Some(e.to_string());
                let step = self.env.step.clone();
                if let Err(w) = self.save(step.as_deref()) {
                    tracing::error!("could not mark the targets incomplete: {w}");
                }
                if self.adopted {
                    let _ = awake::forget(&self.mount_at);
                }
                drop(self);
                match undo {
                    Some(u) => Err(Error::UndoFailed { cause: Box::new(e), undo: u.to_string() }),
                    None => Err(e),
                }
            }
        }
    }
}
