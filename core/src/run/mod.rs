//! The one run of a clone (AIX `alt_disk_copy`), from the first check to "done". A new clone
//! enters at phase 1 ([`prepare`], then [`execute`]); a clone made earlier enters at phase 2
//! or 3 ([`resume`]). Both go through the same steps and the same ending:
//!
//! 1. phase 1: partition, make filesystems, copy, give the clone its own identities and its
//!    boot units ([`phase1`]); flushed and checked, then recorded as done;
//! 2. phase 2: customize ([`crate::write::customize`]); flushed, checked, recorded;
//! 3. phase 3: initramfs and boot loader ([`crate::boot::bootloader`]); flushed, checked,
//!    recorded;
//! 4. [`Run::finish`]: the clone's own copy of its record, the last flush and check, unmount
//!    (or stay awake at the mount point until phase 3 has run, as on AIX), the firmware boot
//!    entry and boot order, the final record, the volume group deactivated.
//!
//! The targets are locked from the first check to the end ([`crate::plan::lock`]); what the
//! run makes is held by guards (undone on failure or cancel) and named in its journal (undone
//! by the next run if this one is killed, [`journal`]). Each disk's record says `incomplete`,
//! with the step, from the first write until the run has finished; "done" is said only when
//! every write and flush succeeded.

pub mod journal;
mod phase1;
mod prepare;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use prepare::{plan, prepare, Prepared};

use crate::boot::bootloader::{self, RootIds};
use crate::boot::{efi, units};
use crate::discover::blockdev::Disk;
use crate::discover::boot::{BootSetup, Firmware};
use crate::discover::record::{self, BootEnv, State};
use crate::error::{Error, IoContext, Result};
use crate::job::{Job, Phase};
use crate::plan::customize::Customize;
use crate::plan::lock::TargetLock;
use crate::plan::{BootlistMode, Layout, Phases};
use crate::systems::{awake, ops};
use crate::write::copy::CopyStats;
use crate::write::fs::{self as tfs, LoopDev, Mounted};
use crate::write::lvm;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct CloneRequest {
    pub targets: Vec<String>,
    pub source_dir: Option<PathBuf>,
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

/// The steps a record names while a run is at them (what `lspv` shows of an incomplete clone).
pub mod step {
    pub const PARTITIONING: &str = "partitioning";
    pub const MKFS: &str = "making filesystems";
    pub const COPYING: &str = "copying files";
    pub const IDENTITIES: &str = "rewriting fstab and the clone's identities";
    pub const CUSTOMIZING: &str = "customizing (phase 2)";
    pub const BOOTABLE: &str = "making the clone bootable (phase 3)";
    pub const FLUSHING: &str = "flushing the clone to disk";
    pub const BOOT_ENTRY: &str = "writing the UEFI boot entry";
    pub const BOOT_ORDER: &str = "writing the UEFI boot order";
}

/// Everything made so far, undone in reverse when dropped: mounts (children before parents),
/// then the volume group, then loop devices.
struct Made {
    loops: Vec<LoopDev>,
    mounts: Vec<Mounted>,
    /// A volume group to deactivate.
    vg: Option<String>,
}

impl Made {
    fn release_mounts(&mut self) -> Result<()> {
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
struct RunDisk {
    record: PathBuf,
    dev: PathBuf,
    /// Byte offset of its altdisk-meta partition.
    meta: u64,
    image: bool,
}

/// A run in progress: what it works on and what it has made.
struct Run {
    mount_at: PathBuf,
    phases: Phases,
    customize: Customize,
    bootlist: BootlistMode,
    skip_boot_checks: bool,
    disks: Vec<RunDisk>,
    env: BootEnv,
    made: Made,
    /// How the clone boots, for phase 3 (found on the source when planning, or on the clone
    /// when resuming).
    boot: Option<BootSetup>,
    root_ids: Option<RootIds>,
    cmdline: String,
    /// The first target, when it is a disk: its boot entry names it.
    boot_disk: Option<Disk>,
    /// The ESP's partition number on the first disk.
    esp_part: Option<u32>,
    warnings: Vec<String>,
    copy: CopyStats,
    fstab_changes: usize,
    journal: journal::Journal,
    _locks: Vec<TargetLock>,
    /// The clone was awake at the mount point before this run (a resume).
    adopted: bool,
    started: std::time::Instant,
    boot_entry: Option<String>,
    mounted_at: Option<PathBuf>,
    target_names: Vec<String>,
}

/// Carry out a prepared plan: phase 1, then the phases asked for, then the ending.
pub fn execute(prep: Prepared, job: &Job) -> Result<CloneReport> {
    for n in &prep.notes {
        job.warn(n.clone());
    }
    let (mut run, input) = phase1::start(prep)?;
    let r = run.phase1(input, job).and_then(|_| run.later_phases(job)).and_then(|_| run.finish(job));
    run.conclude(r, job)
}

/// Phases 2 and 3 on a clone whose phase 1 is done (AIX `-P2`, `-P3`, `-P23`), also after
/// the running system rebooted: the clone is found by its record on the named disk, woken
/// (or used where it is awake), and taken through the same steps and ending as a new clone.
pub fn resume(req: &CloneRequest, job: &Job) -> Result<CloneReport> {
    for n in journal::recover()? {
        job.warn(n);
    }
    req.customize.validate()?;
    let first = req
        .targets
        .first()
        .ok_or_else(|| Error::usage("-d", "no target disk was named", "name the disk of the clone: -d vdb"))?;
    let sys = ops::find_by_disk(first)?;
    for t in &req.targets[1..] {
        let other = ops::find_by_disk(t)?;
        if other.env.id != sys.env.id {
            return Err(Error::usage(
                format!("-d {t}"),
                format!("it holds another system than {first}"),
                "name the disks of one clone",
            ));
        }
    }
    let name = format!("{} on {}", sys.env.name, sys.disk_names());
    let me = prepare::holder();
    let locks = sys.disks.iter().map(|d| TargetLock::acquire(&d.path, &me)).collect::<Result<Vec<_>>>()?;
    if !sys.env.phases_done.contains(&1) {
        return Err(Error::refused(
            &name,
            format!(
                "its phase 1 did not finish ({}{})",
                sys.env.state.describe(),
                sys.env.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default()
            ),
            "clone again from the start (-P1 or all phases, with --force), or remove it with alt_rootvg_op -X",
        ));
    }
    if ops::is_running(&sys)? {
        return Err(Error::refused(&name, "it is the running system", "boot the other system to work on this one"));
    }
    let mut disks = Vec::new();
    for d in &sys.disks {
        let meta = record::meta_offset(&d.path).ok_or_else(|| {
            Error::corrupt(format!("{} on {}", sys.env.name, d.name), "its altdisk-meta partition vanished")
        })?;
        disks.push(RunDisk { record: d.path.clone(), dev: d.path.clone(), meta, image: false });
    }
    let journal = journal::Journal::begin(
        &me.what,
        sys.disks.iter().map(|d| d.path.clone()).collect(),
        Some(req.mount_at.clone()),
    )?;
    // Use the clone where it is awake, or wake it.
    let awake_here = awake::read(&req.mount_at).is_some_and(|a| a.disks.first() == sys.disks.first().map(|d| &d.path));
    let (mounts, loops, vg) = if awake_here {
        let a = awake::read(&req.mount_at).expect("read above");
        let table = crate::discover::mounts::read()?;
        let mut m: Vec<Mounted> = vec![Mounted::adopt(&req.mount_at)];
        m.extend(crate::discover::mounts::below(&table, &req.mount_at).iter().map(|x| Mounted::adopt(&x.target)));
        let loops = a.loops.iter().map(|l| LoopDev::adopt(l)).collect();
        (m, loops, a.vg)
    } else {
        let woken = ops::wake(&sys, &req.mount_at)?;
        job.info(format!("woke {name} at {}", req.mount_at.display()));
        (woken.iter().map(|p| Mounted::adopt(p)).collect(), Vec::new(), sys.env.vg.clone())
    };
    // The run owns the mounts now; the awake record is rewritten at the end if it stays awake.
    awake::forget(&req.mount_at)?;
    let esp_part = sys
        .env
        .filesystems
        .iter()
        .find(|f| f.fstype == "vfat" && f.disk == 0 && matches!(f.mountpoint.as_str(), "/boot/efi" | "/efi"))
        .map(|f| f.partition);
    let mut env = sys.env.clone();
    env.state = State::Incomplete;
    let mut run = Run {
        mount_at: req.mount_at.clone(),
        phases: req.phases.clone(),
        customize: req.customize.clone(),
        bootlist: req.bootlist,
        skip_boot_checks: req.skip_boot_checks,
        disks,
        env,
        made: Made { loops, mounts, vg },
        boot: None,
        root_ids: ops::root_ids(&sys).ok(),
        cmdline: String::new(),
        boot_disk: sys.disks.first().cloned(),
        esp_part,
        warnings: Vec::new(),
        copy: CopyStats::default(),
        fstab_changes: 0,
        journal,
        _locks: locks,
        adopted: true,
        started: std::time::Instant::now(),
        boot_entry: None,
        mounted_at: None,
        target_names: sys.disks.iter().map(|d| d.name.clone()).collect(),
    };
    let r = (|| {
        if run.phases.has(3) {
            run.boot = match ops::boot_setup(&sys, &run.mount_at) {
                Ok(s) => Some(s),
                Err(e) if run.skip_boot_checks => {
                    run.warn(job, format!("-g: {e}: the clone is not made bootable"));
                    None
                }
                Err(e) => return Err(e),
            };
        }
        // A clone made by an older altdisk may lack working boot units.
        units::ensure_in_clone(&run.mount_at, run.needs_units(), job)?;
        run.later_phases(job)?;
        run.finish(job)
    })();
    run.conclude(r, job)
}

impl Run {
    fn warn(&mut self, job: &Job, w: String) {
        job.warn(w.clone());
        self.warnings.push(w);
    }

    /// Write each disk's record (its own index), naming the step the run is at.
    fn save(&mut self, step: Option<&str>) -> Result<()> {
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

    /// Flush every mounted filesystem of the clone and check that nothing was lost.
    fn flush(&mut self, job: &Job) -> Result<()> {
        job.check()?;
        for m in &self.made.mounts {
            tfs::flush_check(m.target())?;
        }
        Ok(())
    }

    /// Whether what this run does depends on the clone's boot units running.
    fn needs_units(&self) -> bool {
        self.bootlist == BootlistMode::Trial
            || (self.phases.has(2) && (self.customize.first_boot.is_some() || self.customize.device_reset))
    }

    fn mark_done(&mut self, phase: u8) -> Result<()> {
        if !self.env.phases_done.contains(&phase) {
            self.env.phases_done.push(phase);
            self.env.phases_done.sort();
        }
        Ok(())
    }

    /// Phases 2 and 3, as asked.
    fn later_phases(&mut self, job: &Job) -> Result<()> {
        if self.phases.has(2) {
            job.check()?;
            job.set_phase(Phase::Customizing);
            self.save(Some(step::CUSTOMIZING))?;
            let disks: Vec<PathBuf> = self.disks.iter().map(|d| d.record.clone()).collect();
            crate::write::customize::run(&self.mount_at, &self.customize, &disks, job)?;
            self.flush(job)?;
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
                bootloader::install(&self.mount_at, &setup, &self.disks[0].dev, &ids, &self.cmdline, job)?;
                self.flush(job)?;
                self.mark_done(3)?;
            }
        }
        Ok(())
    }

    /// The state the clone is in once this run has finished.
    fn final_state(&self) -> State {
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

    /// The ending both ways into a run share. The order matters for a power cut at any
    /// point: until the last step every record says incomplete, and the firmware variables
    /// are written last, entry before order, so the boot order only ever names a clone that
    /// is complete and on disk. A cut between the entry and the order leaves an entry that
    /// nothing boots (the next run reuses it); a cut between the order and the final record
    /// leaves a complete clone first in the order whose record still says incomplete (its boot
    /// units finish the record when it boots, see [`crate::boot::units::names`]).
    fn finish(&mut self, job: &Job) -> Result<()> {
        job.check()?;
        let state = self.final_state();
        // As on AIX, the clone stays mounted until phase 3 has made it bootable.
        let keep_mounted = !self.phases.has(3);
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
            self.boot_list(job)?;
        }
        // 4. The final record.
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
            })?;
            self.mounted_at = Some(self.mount_at.clone());
        } else {
            // As AIX leaves altinst_rootvg varied off: last, once nothing writes to its disks
            // any more (udev answers writes with events that may activate it again).
            if let Some(vg) = self.made.vg.take() {
                lvm::settle();
                lvm::deactivate(&vg)?;
            }
            self.made.loops.clear();
            for d in self.disks.iter().filter(|d| d.image) {
                tfs::fsync_path(&d.record)?;
            }
        }
        Ok(())
    }

    /// Make the clone's UEFI boot entry and place it as asked. Nothing to do on BIOS (the
    /// firmware owns the order) or for an image file (it boots through the removable path
    /// once written to a disk).
    fn boot_list(&mut self, job: &Job) -> Result<()> {
        let Some(setup) = self.boot.clone() else { return Ok(()) };
        let Some(disk) = self.boot_disk.clone() else {
            job.info("the clone is an image file: no firmware boot entry made (it boots through \\EFI\\BOOT\\BOOTX64.EFI when written to a disk)");
            return Ok(());
        };
        if setup.firmware == Firmware::Bios {
            job.info(format!(
                "BIOS machine: the boot order belongs to the firmware setup; {} now carries GRUB",
                disk.name
            ));
            return Ok(());
        }
        let part = self.esp_part.ok_or_else(|| {
            Error::corrupt(format!("{} on {}", self.env.name, disk.name), "it has no EFI system partition")
        })?;
        let hd = efi::HardDrive::of_partition(&disk.path, part)?;
        self.save(Some(step::BOOT_ENTRY))?;
        let name = self.env.name.clone();
        let n = place_boot_entry(&setup, &name, &disk, hd, self.bootlist, job, |n| {
            self.env.boot_entry = Some(n);
            self.env.trial = self.bootlist == BootlistMode::Trial;
            self.save(Some(step::BOOT_ORDER))
        })?;
        self.boot_entry = n.map(efi::boot_name);
        Ok(())
    }

    /// Report success, or undo what was made and leave the targets marked incomplete.
    fn conclude(mut self, r: Result<()>, job: &Job) -> Result<CloneReport> {
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

/// Make a boot entry for the system whose ESP is `hd` on `disk` and place it as `mode` says.
/// `made` runs between writing the entry and changing the order (the caller records the
/// entry's number there), so a cut between the two never leaves the order naming an entry
/// nobody recorded. Returns the entry's number; None on BIOS.
pub(crate) fn place_boot_entry(
    setup: &BootSetup,
    name: &str,
    disk: &Disk,
    hd: efi::HardDrive,
    mode: BootlistMode,
    job: &Job,
    made: impl FnOnce(u16) -> Result<()>,
) -> Result<Option<u16>> {
    if setup.firmware == Firmware::Bios {
        job.info(format!("BIOS machine: the boot order belongs to the firmware setup; {} now carries GRUB", disk.name));
        return Ok(None);
    }
    let file = setup.efi_file().expect("UEFI loaders have a file");
    let option = efi::LoadOption::new(&format!("{name} on {}", disk.name), hd.clone(), &file);
    let m = efi::BootManager { vars: efi::Efivarfs::system()? };
    for n in m.remove_strays(&option.description, &hd)? {
        job.info(format!("removed {}: a stray entry of an earlier, interrupted run", efi::boot_name(n)));
    }
    let n = m.add(&option)?;
    made(n)?;
    match mode {
        BootlistMode::First => {
            m.put_first(&[n])?;
            crate::job::test_pause_at("boot order written");
            job.info(format!("{} ({}) is first in the UEFI boot order", efi::boot_name(n), option.description));
        }
        BootlistMode::Trial => {
            m.set_next(Some(n))?;
            job.info(format!(
                "{} ({}) boots next, once; it stays when the clone comes up healthy",
                efi::boot_name(n),
                option.description
            ));
        }
        BootlistMode::Leave => {
            job.info(format!("{} ({}) made; the boot order is left alone (-B)", efi::boot_name(n), option.description))
        }
    }
    Ok(Some(n))
}

/// The clone's own copy of its record, for the system once it runs.
fn write_clone_record(mount_at: &Path, env: &BootEnv) -> Result<()> {
    let dir = mount_at.join("etc/altdisk");
    std::fs::create_dir_all(&dir).ctx("writing the clone's record", &dir)?;
    let f = dir.join("bootenv.json");
    std::fs::write(&f, serde_json::to_vec_pretty(env).unwrap_or_default()).ctx("writing the clone's record", &f)
}
