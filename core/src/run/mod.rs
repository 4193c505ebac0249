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

mod finish;
mod later;
mod phase1;
mod prepare;
mod refresh;
mod request;
mod state;

pub use crate::discover::record::step;
pub use prepare::{plan, prepare, Prepared};
pub use refresh::refresh;
pub use request::{CloneReport, CloneRequest, Refresh};

use crate::boot::units;
use crate::discover::record::{self, State};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::plan::lock::TargetLock;
use crate::systems::{awake, ops};
use crate::write::copy::CopyStats;
use crate::write::fs::{LoopDev, Mounted};
use crate::write::journal;

use state::{Made, Run, RunDisk};

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
    let (mut run, sys, _) = open_existing(req, job, |sys, name| {
        if sys.env.phases_done.contains(&1) {
            return Ok(());
        }
        Err(Error::refused(
            name,
            format!(
                "its phase 1 did not finish ({}{})",
                sys.env.state.describe(),
                sys.env.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default()
            ),
            "clone again from the start (-P1 or all phases, with --force), or remove it with alt_rootvg_op -X",
        ))
    })?;
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

/// Enter the run of a clone made earlier, named by the disks of `req`: found by its record,
/// locked, `check`ed (with its name), never the running system; woken at the mount point
/// (or used where it is awake there, which the third value says), its record incomplete.
fn open_existing(
    req: &CloneRequest,
    job: &Job,
    check: impl FnOnce(&ops::System, &str) -> Result<()>,
) -> Result<(Run, ops::System, bool)> {
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
    let me = crate::plan::lock::Holder::this_run();
    let locks = sys.disks.iter().map(|d| TargetLock::acquire(&d.path, &me)).collect::<Result<Vec<_>>>()?;
    check(&sys, &name)?;
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
    let run = Run {
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
        _source: None,
        adopted: true,
        started: std::time::Instant::now(),
        boot_entry: None,
        mounted_at: None,
        target_names: sys.disks.iter().map(|d| d.name.clone()).collect(),
        keep_entry: false,
        stay_awake: None,
    };
    Ok((run, sys, awake_here))
}
