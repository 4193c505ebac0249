//! Executing a clone (AIX `alt_disk_copy`). [`prepare`] discovers the source, resolves and
//! checks the targets and builds the [`Plan`] without writing anything; [`execute`] carries
//! the plan out step by step, reporting to a [`Job`]. Every step that makes something holds a
//! guard (mounts, loop devices) that undoes it on failure or cancel; the targets' state
//! record says `incomplete` from the first write until a phase has finished.
//!
//! Phase 1: partition, make filesystems, copy, give the clone its own identities (fstab,
//! crypttab); phase 2: [`crate::write::customize`]; phase 3: [`crate::boot::bootloader`] and the boot
//! list. Until phase 3 has run the clone stays mounted at the mount point (`/alt_inst`), as
//! on AIX; [`sleep`] unmounts it.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::boot::bootloader::{self, Firmware, RootIds};
use crate::boot::efi;
use crate::cmd::Cmd;
use crate::discover::blockdev::{self, Disk, Named};
use crate::discover::mounts;
use crate::discover::record::{self, BootEnv, EnvFs, SourceInfo, State};
use crate::discover::source;
use crate::error::{Error, IoContext, Result};
use crate::job::{Job, Phase};
use crate::plan::safety::{self, Target};
use crate::plan::{self, BootlistMode, Layout, PartRole, Phases, Plan, PlanOptions, TargetIn};
use crate::size;
use crate::write::copy::{self, CopyOptions, CopyStats};
use crate::write::exclude::ExcludeList;
use crate::write::fixup::{self, Identity};
use crate::write::fs::{self as tfs, LoopDev, Mounted};
use crate::write::partition;

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
    pub customize: crate::write::customize::Customize,
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

/// A validated plan with what executing it needs.
pub struct Prepared {
    pub plan: Plan,
    targets: Vec<Target>,
    exclude: ExcludeList,
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

/// Tools phase 1 runs.
fn required_tools(plan: &Plan) -> Vec<&'static str> {
    let mut v = vec!["blkid", "lsblk"];
    for f in &plan.filesystems {
        v.extend(tfs::tools_for(&f.fstype));
    }
    if !plan.swaps.is_empty() {
        v.push("mkswap");
    }
    if plan.targets.iter().any(|t| t.image.is_some()) {
        v.push("losetup");
    }
    if plan.vg.is_some() {
        v.extend(["pvcreate", "vgcreate", "lvcreate", "vgchange", "vgs"]);
    }
    v
}

/// Discover, resolve, check and plan. Writes nothing.
pub fn prepare(req: &CloneRequest) -> Result<Prepared> {
    if !req.phases.has(1) {
        // Resuming goes through `resume`; callers check the phases first.
        return Err(Error::unsupported(
            format!(
                "running phase {} on an existing clone",
                serde_json::to_value(&req.phases).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
            ),
            " yet (resuming comes with the phases issue)",
            "run phase 1 with the others, e.g. -P12 or -P1",
        ));
    }
    req.customize.validate()?;
    let exclude = match &req.exclude {
        Some(p) => {
            if !p.is_absolute() {
                return Err(Error::usage(
                    format!("exclude list {}", p.display()),
                    "it is not a full path",
                    "give the full path, as AIX requires",
                ));
            }
            ExcludeList::from_file(p)?
        }
        None => ExcludeList::empty(),
    };
    let disks = blockdev::list()?;
    let mut src = source::discover(req.source_dir.as_deref(), &disks)?;
    // The bootability checks (AIX -g skips them): how the source boots decides the layout.
    let mut boot_warning = None;
    let boot = if req.phases.has(3) {
        let esp = src.esp().map(|f| f.mountpoint.clone());
        match bootloader::detect(&src.root, Firmware::current(), esp.as_deref()) {
            Ok(b) => Some(b),
            Err(e) if req.skip_boot_checks => {
                boot_warning = Some(format!("-g: {e}: the clone will not be made bootable"));
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    if let Some(b) = &boot {
        if b.loader == bootloader::Loader::GrubBios {
            // GRUB on a GPT disk under BIOS keeps its core image in a BIOS boot partition.
            src.has_bios_boot = true;
        }
    }
    let mut seen_names = HashSet::new();
    let mut targets = Vec::new();
    let mut tin = Vec::new();
    for name in &req.targets {
        if !seen_names.insert(name.clone()) {
            return Err(Error::usage(format!("target {name}"), "it is named twice", "name each target disk once"));
        }
        match blockdev::resolve(name, &disks)? {
            Named::Disk(i) => {
                let d: &Disk = &disks[i];
                tin.push(TargetIn {
                    name: name.clone(),
                    path: d.path.clone(),
                    alias: Some(d.alias.clone()),
                    size: Some(d.size),
                    image: false,
                });
                targets.push(Target::Disk(d.clone()));
            }
            Named::Image(p) => {
                let size = std::fs::metadata(&p).ok().map(|m| m.len());
                tin.push(TargetIn { name: name.clone(), path: p.clone(), alias: None, size, image: true });
                targets.push(Target::Image(p));
            }
        }
    }
    let table = mounts::read()?;
    safety::check(&targets, &src, &table, &mounts::swaps()?, req.force)?;
    let opts = PlanOptions {
        layout: req.layout.clone(),
        convert_ext: req.convert_ext,
        skip_space_check: req.skip_space_check,
        image_size: req.image_size,
    };
    let mut plan = plan::build(&src, &tin, &opts, &req.name)?;
    plan.phases = req.phases.clone();
    plan.mount_at = req.mount_at.clone();
    plan.exclude = exclude.patterns().to_vec();
    plan.warnings.extend(boot_warning);
    if let Some(b) = &boot {
        if let Some(esp) = &b.esp {
            if !plan.filesystems.iter().any(|f| &f.mountpoint == esp && f.fstype == "vfat") {
                return Err(Error::usage(
                    "layout file",
                    format!(
                        "it has no vfat filesystem for the ESP at {esp}, which the clone needs to boot through UEFI"
                    ),
                    "keep the ESP in the layout (see `altdisk layout`)",
                ));
            }
        }
    }
    plan.boot = boot;
    plan.bootlist = req.bootlist;
    plan.customize = req.customize.clone();
    if plan.customize.device_reset && !req.phases.has(3) {
        plan.warnings.push("-O makes the initramfs generic only when phase 3 rebuilds it: run phase 3 too".into());
    }
    if !req.mount_at.is_absolute() {
        return Err(Error::usage(
            format!("mount point {}", req.mount_at.display()),
            "it is not an absolute path",
            "give a full path",
        ));
    }
    check_mount_at(&req.mount_at, &table)?;
    for t in required_tools(&plan) {
        crate::cmd::which(t)?;
    }
    if let Some(vg) = &plan.vg {
        crate::write::lvm::check_free_name(&vg.name)?;
    }
    Ok(Prepared { plan, targets, exclude })
}

fn check_mount_at(dir: &Path, table: &[mounts::Mount]) -> Result<()> {
    if mounts::mount_at(table, dir).is_some() || !mounts::below(table, dir).is_empty() {
        return Err(Error::refused(
            dir.display().to_string(),
            "something is already mounted there (an alternate system is awake)",
            "put it to sleep with `alt_rootvg_op -S` (or unmount it) first",
        ));
    }
    if let Ok(mut rd) = std::fs::read_dir(dir) {
        if rd.next().is_some() {
            return Err(Error::refused(
                dir.display().to_string(),
                "the directory is not empty",
                "empty or remove it, or choose another with --mount-at",
            ));
        }
    }
    Ok(())
}

/// What a mounted (awake) clone leaves behind, so `sleep` can undo exactly that.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Awake {
    pub(crate) mount_at: PathBuf,
    pub(crate) loops: Vec<PathBuf>,
    pub(crate) name: String,
    pub(crate) disks: Vec<PathBuf>,
    /// A volume group altdisk activated for it, deactivated on sleep.
    #[serde(default)]
    pub(crate) vg: Option<String>,
}

/// Record that a clone is mounted (awake) at `a.mount_at`.
pub(crate) fn record_awake(a: &Awake) -> Result<()> {
    std::fs::create_dir_all(RUN_DIR).ctx("recording the mounted clone", RUN_DIR)?;
    let f = awake_file(&a.mount_at);
    std::fs::write(&f, serde_json::to_vec_pretty(a).unwrap_or_default()).ctx("recording the mounted clone", &f)
}

/// The record of a clone mounted at `mount_at`, if altdisk mounted one there.
pub(crate) fn read_awake(mount_at: &Path) -> Option<Awake> {
    serde_json::from_slice(&std::fs::read(awake_file(mount_at)).ok()?).ok()
}

const RUN_DIR: &str = "/run/altdisk";

fn awake_file(mount_at: &Path) -> PathBuf {
    let key: String =
        mount_at.display().to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    Path::new(RUN_DIR).join(format!("awake{key}.json"))
}

/// Everything made so far, undone in reverse when dropped.
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
        // Mounts first (children before parents), then loop devices.
        while let Some(m) = self.mounts.pop() {
            drop(m);
        }
        if let Some(vg) = self.vg.take() {
            if let Err(e) = crate::write::lvm::deactivate(&vg) {
                tracing::error!("{e}");
            }
        }
        self.loops.clear();
    }
}

fn identity_old(r: &plan::SourceRef) -> Identity {
    Identity {
        uuid: r.uuid.clone(),
        partuuid: r.partuuid.clone(),
        label: r.label.clone(),
        partlabel: r.partlabel.clone(),
        paths: r.paths.clone(),
    }
}

/// Carry out a prepared plan.
pub fn execute(prep: Prepared, job: &Job) -> Result<CloneReport> {
    let started = std::time::Instant::now();
    let Prepared { plan, targets, exclude } = prep;
    let mut made = Made { loops: Vec::new(), mounts: Vec::new(), vg: None };
    let mut env = initial_env(&plan);
    let mut devs: Vec<PathBuf> = Vec::new();
    let mut warnings = plan.warnings.clone();

    let result = (|| -> Result<(CopyStats, usize)> {
        job.check()?;
        job.set_phase(Phase::Partitioning);
        for (i, (t, d)) in targets.iter().zip(&plan.targets).enumerate() {
            let parts: Vec<&plan::PlanPart> = plan.partitions.iter().filter(|p| p.disk == i).collect();
            let dev = match t {
                Target::Image(p) => {
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(p)
                        .ctx("creating the image file", p)?;
                    if f.metadata().ctx("sizing the image file", p)?.len() != d.size {
                        f.set_len(d.size).ctx("sizing the image file", p)?;
                    }
                    drop(f);
                    partition::write_gpt(p, d.size, d.disk_guid, &parts)?;
                    write_env(p, &plan, i, &mut env)?;
                    let l = LoopDev::attach(p)?;
                    let dev = l.dev.clone();
                    made.loops.push(l);
                    dev
                }
                Target::Disk(disk) => {
                    let old: Vec<u32> = (1..=disk.partitions.len().max(16) as u32).collect();
                    partition::remove_partition_nodes(&disk.path, old)?;
                    partition::write_gpt(&disk.path, d.size, d.disk_guid, &parts)?;
                    write_env(&disk.path, &plan, i, &mut env)?;
                    disk.path.clone()
                }
            };
            job.info(format!("partitioned {} ({})", d.name, dev.display()));
            partition::add_partition_nodes(&dev, &parts)?;
            devs.push(dev);
        }
        if let Some(vg) = &plan.vg {
            job.check()?;
            let pvs: Vec<PathBuf> = plan
                .partitions
                .iter()
                .filter(|p| p.role == PartRole::Pv)
                .map(|p| partition::partition_path(&devs[p.disk], p.number))
                .collect();
            made.vg = Some(vg.name.clone());
            crate::write::lvm::create(&vg.name, &pvs, &vg.lvs)?;
            job.info(format!(
                "made volume group {} on {}",
                vg.name,
                pvs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
            ));
        }
        job.check()?;
        job.set_phase(Phase::MakingFilesystems);
        let dev_of = |part: usize, lv: &Option<String>| -> PathBuf {
            match (lv, &plan.vg) {
                (Some(lv), Some(vg)) => crate::write::lvm::lv_path(&vg.name, lv),
                _ => {
                    let p = &plan.partitions[part];
                    partition::partition_path(&devs[p.disk], p.number)
                }
            }
        };
        for f in &plan.filesystems {
            job.check()?;
            let dev = dev_of(f.part, &f.lv);
            tfs::mkfs(&dev, &f.fstype, &f.uuid, f.label.as_deref())?;
            job.info(format!("made {} {} on {}", f.fstype, f.mountpoint, dev.display()));
        }
        for s in &plan.swaps {
            tfs::mkfs(&dev_of(s.part, &s.lv), "swap", &s.uuid, s.label.as_deref())?;
        }
        job.check()?;
        std::fs::create_dir_all(&plan.mount_at).ctx("creating the mount point", &plan.mount_at)?;
        for f in &plan.filesystems {
            let at = plan.mount_at.join(f.mountpoint.trim_start_matches('/'));
            std::fs::create_dir_all(&at).ctx("creating a mount point in the clone", &at)?;
            made.mounts.push(Mounted::mount(&dev_of(f.part, &f.lv), &at, &f.fstype, None)?);
        }

        job.set_phase(Phase::Copying);
        let mut skip = HashSet::new();
        for t in &targets {
            if let Target::Image(p) = t {
                if let Ok(m) = std::fs::metadata(p) {
                    skip.insert((m.dev(), m.ino()));
                }
            }
        }
        let skip = Arc::new(skip);
        let exclude = Arc::new(exclude);
        for sf in &plan.source.filesystems {
            job.add_totals(sf.used_bytes, sf.used_inodes);
        }
        let mut total = CopyStats::default();
        for sf in &plan.source.filesystems {
            job.check()?;
            let dst = plan.mount_at.join(sf.mountpoint.trim_start_matches('/'));
            let rel_prefix = if sf.mountpoint == "/" { ".".to_string() } else { format!(".{}", sf.mountpoint) };
            let opts = CopyOptions {
                threads: 0,
                exclude: exclude.clone(),
                rel_prefix,
                detect_changes: true,
                skip: skip.clone(),
            };
            let snap = if sf.fstype == "btrfs" && !sf.read_only {
                BtrfsSnapshot::take(&sf.path, &plan.id, job)?
            } else {
                None
            };
            let from = snap.as_ref().map(|s| s.path.clone()).unwrap_or_else(|| sf.path.clone());
            job.info(format!("copying {} from {}", sf.mountpoint, from.display()));
            let stats = copy::copy_tree(
                &from,
                &dst,
                &CopyOptions { detect_changes: snap.is_none() && !sf.read_only, ..opts },
                job,
            );
            if let Some(s) = snap {
                s.delete()?;
            }
            add_stats(&mut total, stats?);
        }
        if total.changed_count > 0 {
            warnings.push(format!(
                "{} files changed while they were copied (the copy of a live system): {}{}",
                total.changed_count,
                total.changed.iter().take(10).cloned().collect::<Vec<_>>().join(", "),
                if total.changed_count > 10 { ", ..." } else { "" }
            ));
        }
        if total.sockets_skipped > 0 {
            job.info(format!("{} sockets skipped (they belong to running programs)", total.sockets_skipped));
        }

        job.check()?;
        job.set_phase(Phase::FixingIdentities);
        let changes = fix_identities(&plan, &mut warnings)?;
        write_clone_record(&plan, &env)?;
        if plan.phases.has(2) {
            let disks: Vec<PathBuf> = targets.iter().map(|t| t.path().to_path_buf()).collect();
            crate::write::customize::run(&plan.mount_at, &plan.customize, &disks, job)?;
        }
        if let (true, Some(setup)) = (plan.phases.has(3), &plan.boot) {
            job.check()?;
            job.set_phase(Phase::MakingBootable);
            let cmdline = if plan.source.live {
                std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
            } else {
                String::new()
            };
            bootloader::install(&plan.mount_at, setup, &devs[0], &root_ids(&plan), cmdline.trim(), job)?;
        }
        Ok((total, changes))
    })();

    match result {
        Ok((copy, fstab_changes)) => {
            // As on AIX, the clone stays mounted until phase 3 has made it bootable.
            let keep_mounted = !plan.phases.has(3);
            env.state = State::Copied;
            env.phases_done = vec![1];
            if plan.phases.has(2) {
                env.state = State::Customized;
                env.phases_done.push(2);
            }
            let bootable = plan.phases.has(3) && plan.boot.is_some();
            if bootable {
                env.state = State::Complete;
                env.phases_done.push(3);
            }
            env.note = None;
            for (i, d) in devs.iter().enumerate() {
                write_env(&targets_path(&targets, i, d), &plan, i, &mut env)?;
            }
            // Make sure the copy is on disk before saying so.
            nix::unistd::sync();
            let mounted_at = if keep_mounted {
                let loops: Vec<PathBuf> = made.loops.drain(..).map(|l| l.keep()).collect();
                for m in made.mounts.drain(..) {
                    m.keep();
                }
                let awake = Awake {
                    mount_at: plan.mount_at.clone(),
                    loops,
                    name: plan.name.clone(),
                    disks: devs.clone(),
                    vg: made.vg.take(),
                };
                std::fs::create_dir_all(RUN_DIR).ctx("recording the mounted clone", RUN_DIR)?;
                let f = awake_file(&plan.mount_at);
                std::fs::write(&f, serde_json::to_vec_pretty(&awake).unwrap_or_default())
                    .ctx("recording the mounted clone", &f)?;
                Some(plan.mount_at.clone())
            } else {
                job.set_phase(Phase::CleaningUp);
                made.release_mounts()?;
                None
            };
            // The boot order changes last, once the clone is complete and on disk: a run that
            // failed before this point leaves it as it was.
            let mut boot_entry = None;
            if bootable {
                if let Some(n) = set_boot_list(&plan, &targets, job)? {
                    env.boot_entry = Some(n);
                    env.trial = plan.bootlist == BootlistMode::Trial;
                    for (i, d) in devs.iter().enumerate() {
                        write_env(&targets_path(&targets, i, d), &plan, i, &mut env)?;
                    }
                    boot_entry = Some(efi::boot_name(n));
                }
            }
            // As AIX leaves altinst_rootvg varied off: last, once nothing writes to its disks
            // any more (udev answers writes with events that may activate it again).
            if mounted_at.is_none() {
                if let Some(vg) = made.vg.take() {
                    crate::write::lvm::settle();
                    crate::write::lvm::deactivate(&vg)?;
                }
            }
            drop(made);
            job.set_phase(Phase::Done);
            Ok(CloneReport {
                api_version: crate::API_VERSION.into(),
                name: plan.name.clone(),
                state: env.state,
                mounted_at,
                targets: plan.targets.iter().map(|t| t.name.clone()).collect(),
                copy,
                fstab_changes,
                boot_entry,
                warnings,
                seconds: started.elapsed().as_secs_f64(),
            })
        }
        Err(e) => {
            job.set_phase(Phase::CleaningUp);
            // Unmount and detach first so the record write is the last thing on the disk.
            let undo = made.release_mounts().err();
            env.state = State::Incomplete;
            env.note = Some(e.to_string());
            for (i, d) in devs.iter().enumerate() {
                let _ = write_env(&targets_path(&targets, i, d), &plan, i, &mut env);
            }
            drop(made);
            match undo {
                Some(u) => Err(Error::UndoFailed { cause: Box::new(e), undo: u.to_string() }),
                None => Err(e),
            }
        }
    }
}

/// The source root's identities, and the clone's, for kernel command lines.
fn root_ids(plan: &Plan) -> RootIds {
    let root = plan.filesystems.iter().find(|f| f.mountpoint == "/").expect("the plan has a root filesystem");
    let mut old = Vec::new();
    if let Some(r) = &root.source {
        old.extend(r.uuid.iter().map(|u| format!("UUID={u}")));
        old.extend(r.partuuid.iter().map(|u| format!("PARTUUID={u}")));
        old.extend(r.label.iter().map(|u| format!("LABEL={u}")));
        old.extend(r.paths.iter().cloned());
    }
    RootIds { old, new: format!("UUID={}", root.uuid) }
}

/// Make the clone's UEFI boot entry and put it in the boot order as asked. None when there
/// is no UEFI boot list to change (BIOS, an image file).
fn set_boot_list(plan: &Plan, targets: &[Target], job: &Job) -> Result<Option<u16>> {
    let Some(setup) = &plan.boot else { return Ok(None) };
    let Target::Disk(disk) = &targets[0] else {
        job.info("the clone is an image file: no firmware boot entry made (it boots through \\EFI\\BOOT\\BOOTX64.EFI when written to a disk)");
        return Ok(None);
    };
    let esp_mp = setup.esp.as_deref().unwrap_or("/boot/efi");
    let esp = plan.filesystems.iter().find(|f| f.mountpoint == esp_mp);
    let hd = esp.map(|f| {
        let part = &plan.partitions[f.part];
        efi::HardDrive {
            partition: part.number,
            start_lba: part.start / 512,
            size_lba: part.size / 512,
            partuuid: part.guid,
        }
    });
    boot_entry(setup, &plan.name, disk, hd, plan.bootlist, job)
}

/// The boot entry of a system whose ESP is `hd` on `disk`, placed as `mode` says.
pub(crate) fn boot_entry(
    setup: &bootloader::BootSetup,
    name: &str,
    disk: &Disk,
    hd: Option<efi::HardDrive>,
    mode: BootlistMode,
    job: &Job,
) -> Result<Option<u16>> {
    if setup.firmware == Firmware::Bios {
        job.info(format!("BIOS machine: the boot order belongs to the firmware setup; {} now carries GRUB", disk.name));
        return Ok(None);
    }
    let hd = hd.ok_or_else(|| Error::corrupt(format!("{name} on {}", disk.name), "it has no EFI system partition"))?;
    let file = setup.efi_file().expect("UEFI loaders have a file");
    let option = efi::LoadOption::new(&format!("{name} on {}", disk.name), hd, &file);
    let m = efi::BootManager { vars: efi::Efivarfs::system()? };
    let n = m.add(&option)?;
    match mode {
        BootlistMode::First => {
            m.put_first(&[n])?;
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

/// Phases 2 and 3 on a clone whose phase 1 is done (AIX `-P2`, `-P3`, `-P23`), also after
/// the running system rebooted: the clone is found by its record on the named disk, woken
/// (or used where it is awake), customised, made bootable and put to sleep.
pub fn resume(req: &CloneRequest, job: &Job) -> Result<CloneReport> {
    let started = std::time::Instant::now();
    req.customize.validate()?;
    let first = req
        .targets
        .first()
        .ok_or_else(|| Error::usage("-d", "no target disk was named", "name the disk of the clone: -d vdb"))?;
    let sys = crate::systems::ops::find_by_disk(first)?;
    for t in &req.targets[1..] {
        let other = crate::systems::ops::find_by_disk(t)?;
        if other.env.id != sys.env.id {
            return Err(Error::usage(
                format!("-d {t}"),
                format!("it holds another system than {first}"),
                "name the disks of one clone",
            ));
        }
    }
    let name = format!("{} on {}", sys.env.name, sys.disk_names());
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
    if crate::systems::ops::is_running(&sys)? {
        return Err(Error::refused(&name, "it is the running system", "boot the other system to work on this one"));
    }
    let setup = if req.phases.has(3) {
        job.set_phase(Phase::Validating);
        Some(())
    } else {
        None
    };
    // Use the clone where it is awake, or wake it.
    let awake_here =
        read_awake(&req.mount_at).map(|a| a.disks.first() == sys.disks.first().map(|d| &d.path)).unwrap_or(false);
    if !awake_here {
        crate::systems::ops::wake(&sys, &req.mount_at)?;
        job.info(format!("woke {name} at {}", req.mount_at.display()));
    }
    let disks: Vec<PathBuf> = sys.disks.iter().map(|d| d.path.clone()).collect();
    let mut env = sys.env.clone();
    let work = (|| -> Result<Option<bootloader::BootSetup>> {
        if req.phases.has(2) {
            crate::write::customize::run(&req.mount_at, &req.customize, &disks, job)?;
        }
        if setup.is_some() {
            let s = match crate::systems::ops::boot_setup(&sys, &req.mount_at) {
                Ok(s) => s,
                Err(e) if req.skip_boot_checks => {
                    job.warn(format!("-g: {e}: the clone is not made bootable"));
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            job.set_phase(Phase::MakingBootable);
            bootloader::install(&req.mount_at, &s, &sys.disks[0].path, &crate::systems::ops::root_ids(&sys)?, "", job)?;
            return Ok(Some(s));
        }
        Ok(None)
    })();
    let boot = match work {
        Ok(b) => b,
        Err(e) => {
            env.state = State::Incomplete;
            env.note = Some(e.to_string());
            for d in &sys.disks {
                let _ = record::update(&d.path, &env);
            }
            let _ = sleep(&req.mount_at);
            return Err(e);
        }
    };
    if req.phases.has(2) && !env.phases_done.contains(&2) {
        env.phases_done.push(2);
        env.state = State::Customized;
    }
    let mut boot_entry_name = None;
    let mounted_at = if let Some(s) = &boot {
        env.phases_done.retain(|&p| p != 3);
        env.phases_done.push(3);
        env.state = State::Complete;
        env.note = None;
        for d in &sys.disks {
            record::update(&d.path, &env)?;
        }
        nix::unistd::sync();
        job.set_phase(Phase::CleaningUp);
        sleep(&req.mount_at)?;
        let esp = sys.env.filesystems.iter().find(|f| Some(&f.mountpoint) == s.esp.as_ref());
        let hd = match esp {
            Some(f) => {
                let d = &sys.disks[f.disk];
                partition::read_gpt(&d.path).and_then(|g| {
                    g.iter().find(|(n, p)| *n == f.partition && p.is_used()).map(|(_, p)| efi::HardDrive {
                        partition: f.partition,
                        start_lba: p.starting_lba * g.sector_size / 512,
                        size_lba: (p.ending_lba + 1 - p.starting_lba) * g.sector_size / 512,
                        partuuid: uuid::Uuid::from_bytes_le(p.unique_partition_guid),
                    })
                })
            }
            None => None,
        };
        if let Some(n) = boot_entry(s, &env.name, &sys.disks[0], hd, req.bootlist, job)? {
            env.boot_entry = Some(n);
            env.trial = req.bootlist == BootlistMode::Trial;
            boot_entry_name = Some(efi::boot_name(n));
        }
        for d in &sys.disks {
            record::update(&d.path, &env)?;
        }
        if let Some(vg) = &env.vg {
            crate::write::lvm::deactivate(vg)?;
        }
        None
    } else {
        for d in &sys.disks {
            record::update(&d.path, &env)?;
        }
        Some(req.mount_at.clone())
    };
    job.set_phase(Phase::Done);
    Ok(CloneReport {
        api_version: crate::API_VERSION.into(),
        name: env.name.clone(),
        state: env.state,
        mounted_at,
        targets: sys.disks.iter().map(|d| d.name.clone()).collect(),
        copy: CopyStats::default(),
        fstab_changes: 0,
        boot_entry: boot_entry_name,
        warnings: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Where the record of disk `i` is written: the image file itself, or the disk.
fn targets_path(targets: &[Target], i: usize, dev: &Path) -> PathBuf {
    match &targets[i] {
        Target::Image(_) => dev.to_path_buf(),
        Target::Disk(d) => d.path.clone(),
    }
}

fn add_stats(t: &mut CopyStats, s: CopyStats) {
    t.files += s.files;
    t.dirs += s.dirs;
    t.symlinks += s.symlinks;
    t.hardlinks += s.hardlinks;
    t.specials += s.specials;
    t.sockets_skipped += s.sockets_skipped;
    t.excluded += s.excluded;
    t.mount_points += s.mount_points;
    t.subvolumes += s.subvolumes;
    t.bytes += s.bytes;
    t.sparse_files += s.sparse_files;
    t.changed_count += s.changed_count;
    t.changed.extend(s.changed);
    t.vanished += s.vanished;
    t.metadata_dropped += s.metadata_dropped;
}

fn initial_env(plan: &Plan) -> BootEnv {
    // Where a filesystem or swap lives: a partition (GUID, disk, number) or a logical volume.
    let env_fs =
        |mountpoint: &str, fstype: &str, uuid: &str, label: &Option<String>, part: usize, lv: &Option<String>| {
            let (partuuid, disk, partition) = match plan.partitions.get(part) {
                Some(p) => (p.guid.to_string(), p.disk, p.number),
                None => (String::new(), 0, 0),
            };
            EnvFs {
                mountpoint: mountpoint.into(),
                fstype: fstype.into(),
                uuid: uuid.into(),
                partuuid,
                label: label.clone(),
                disk,
                partition,
                lv: lv.clone(),
            }
        };
    BootEnv {
        api_version: crate::API_VERSION.into(),
        name: plan.name.clone(),
        id: plan.id,
        state: State::Incomplete,
        phases_done: vec![],
        source: SourceInfo {
            hostname: plan.source.hostname.clone(),
            root: plan.source.root.clone(),
            live: plan.source.live,
            disks: plan.source.disks.clone(),
            root_uuid: plan.source.filesystems.first().and_then(|f| f.probe.uuid.clone()),
        },
        created: record::now_rfc3339(),
        updated: record::now_rfc3339(),
        disks: plan.targets.iter().map(|t| t.disk_guid).collect(),
        disk_index: 0,
        filesystems: plan
            .filesystems
            .iter()
            .map(|f| env_fs(&f.mountpoint, &f.fstype, &f.uuid, &f.label, f.part, &f.lv))
            .collect(),
        swaps: plan.swaps.iter().map(|w| env_fs("swap", "swap", &w.uuid, &w.label, w.part, &w.lv)).collect(),
        vg: plan.vg.as_ref().map(|v| v.name.clone()),
        boot_entry: None,
        trial: false,
        note: None,
    }
}

fn write_env(dev: &Path, plan: &Plan, disk: usize, env: &mut BootEnv) -> Result<()> {
    let meta = plan
        .partitions
        .iter()
        .find(|p| p.disk == disk && p.role == PartRole::Meta)
        .expect("every disk has a meta partition");
    env.disk_index = disk;
    env.updated = record::now_rfc3339();
    record::write_at(dev, meta.start, env)
}

/// The clone's own copy of its record, for the system once it runs.
fn write_clone_record(plan: &Plan, env: &BootEnv) -> Result<()> {
    let dir = plan.mount_at.join("etc/altdisk");
    std::fs::create_dir_all(&dir).ctx("writing the clone's record", &dir)?;
    let f = dir.join("bootenv.json");
    std::fs::write(&f, serde_json::to_vec_pretty(env).unwrap_or_default()).ctx("writing the clone's record", &f)
}

/// Rewrite fstab and crypttab of the clone; returns how many lines changed.
fn fix_identities(plan: &Plan, warnings: &mut Vec<String>) -> Result<usize> {
    let mut map = Vec::new();
    for f in &plan.filesystems {
        let p = plan.partitions.get(f.part);
        let new = Identity {
            uuid: Some(f.uuid.clone()),
            partuuid: p.map(|p| p.guid.to_string()),
            label: f.label.clone(),
            partlabel: p.map(|p| p.name.clone()),
            paths: vec![],
        };
        if let Some(r) = &f.source {
            map.push((identity_old(r), new.clone()));
        }
    }
    for s in &plan.swaps {
        let p = plan.partitions.get(s.part);
        if let Some(r) = &s.source {
            let new = Identity {
                uuid: Some(s.uuid.clone()),
                partuuid: p.map(|p| p.guid.to_string()),
                label: s.label.clone(),
                partlabel: p.map(|p| p.name.clone()),
                paths: vec![],
            };
            map.push((identity_old(r), new));
        }
    }
    let mut changes = 0;
    let fstab = plan.mount_at.join("etc/fstab");
    if let Ok(text) = std::fs::read_to_string(&fstab) {
        let r = fixup::rewrite_fstab(&text, &map);
        changes += r.changed;
        warnings.extend(r.warnings);
        let l = fixup::adjust_layout(&r.text, &layout_changes(plan));
        changes += l.changed;
        warnings.extend(l.warnings);
        replace_file(&fstab, &l.text)?;
    } else {
        warnings.push("the clone has no /etc/fstab: nothing to rewrite".into());
    }
    // initramfs-tools resumes from the swap its configuration names (the installer writes
    // RESUME=UUID=...): point it at the clone's swap.
    let resume = plan.mount_at.join("etc/initramfs-tools/conf.d/resume");
    if let Ok(text) = std::fs::read_to_string(&resume) {
        let mut t = text.clone();
        for (old, new) in &map {
            if let (Some(o), Some(n)) = (&old.uuid, &new.uuid) {
                t = t.replace(o.as_str(), n);
            }
        }
        if t != text {
            replace_file(&resume, &t)?;
            changes += 1;
        }
    }
    let crypttab = plan.mount_at.join("etc/crypttab");
    if let Ok(text) = std::fs::read_to_string(&crypttab) {
        let r = fixup::rewrite_crypttab(&text, &map);
        changes += r.changed;
        warnings.extend(r.warnings);
        replace_file(&crypttab, &r.text)?;
    }
    Ok(changes)
}

/// What changed between the source's layout and the clone's, for fstab.
fn layout_changes(plan: &Plan) -> fixup::LayoutChanges {
    let mut c = fixup::LayoutChanges::default();
    for f in &plan.filesystems {
        match &f.source {
            Some(r) if r.fstype != f.fstype => {
                c.retype.push((f.mountpoint.clone(), r.fstype.clone(), f.fstype.clone()))
            }
            Some(_) => {}
            None => c.split.push((f.uuid.clone(), f.mountpoint.clone(), f.fstype.clone())),
        }
        c.merged.extend(f.merged.iter().cloned());
    }
    c
}

/// Replace a file's contents, keeping its owner and mode, atomically.
fn replace_file(path: &Path, text: &str) -> Result<()> {
    let md = std::fs::symlink_metadata(path).ctx("reading", path)?;
    let real = if md.file_type().is_symlink() {
        // A symlinked fstab points somewhere inside the clone; resolve relative to it.
        return Err(Error::unsupported(
            format!("{} is a symlink", path.display()),
            " for rewriting",
            "make it a regular file in the source",
        ));
    } else {
        path.to_path_buf()
    };
    let tmp = real.with_extension("altdisk-new");
    std::fs::write(&tmp, text).ctx("writing", &tmp)?;
    std::os::unix::fs::chown(&tmp, Some(md.uid()), Some(md.gid())).ctx("setting the owner of", &tmp)?;
    std::fs::set_permissions(&tmp, md.permissions()).ctx("setting the mode of", &tmp)?;
    std::fs::rename(&tmp, &real).ctx("replacing", &real)
}

/// A read-only snapshot of a btrfs subvolume, deleted when done. It lives in the directory
/// it snapshots (the only place certain to be on the same filesystem); that directory's times
/// are put back afterwards so the source looks untouched.
struct BtrfsSnapshot {
    path: PathBuf,
    parent: PathBuf,
    times: Option<(std::fs::FileTimes, std::fs::File)>,
    live: bool,
}

impl BtrfsSnapshot {
    /// Snapshot the subvolume mounted at `mount`. None (copy live) when it holds nested
    /// subvolumes, which a snapshot would show as empty directories.
    fn take(mount: &Path, id: &uuid::Uuid, job: &Job) -> Result<Option<BtrfsSnapshot>> {
        let out = Cmd::new("listing btrfs subvolumes", "btrfs")?.args(["subvolume", "list", "-o"]).arg(mount).run()?;
        if out.stdout.lines().any(|l| !l.trim().is_empty()) {
            job.warn(format!(
                "{} holds nested btrfs subvolumes: copying it live instead of from a snapshot",
                mount.display()
            ));
            return Ok(None);
        }
        let path = mount.join(format!(".altdisk-snapshot-{id}"));
        let times = std::fs::File::open(mount).and_then(|f| {
            let md = f.metadata()?;
            Ok((std::fs::FileTimes::new().set_accessed(md.accessed()?).set_modified(md.modified()?), f))
        });
        Cmd::new("taking a read-only btrfs snapshot", "btrfs")?
            .args(["subvolume", "snapshot", "-r"])
            .arg(mount)
            .arg(&path)
            .run()?;
        Ok(Some(BtrfsSnapshot { path, parent: mount.to_path_buf(), times: times.ok(), live: true }))
    }

    fn delete(mut self) -> Result<()> {
        self.live = false;
        Cmd::new("deleting the btrfs snapshot", "btrfs")?.args(["subvolume", "delete"]).arg(&self.path).run()?;
        self.restore_times()
    }

    fn restore_times(&mut self) -> Result<()> {
        if let Some((t, f)) = self.times.take() {
            f.set_times(t).ctx("restoring the times of", &self.parent)?;
        }
        Ok(())
    }
}

impl Drop for BtrfsSnapshot {
    fn drop(&mut self) {
        if self.live {
            if let Ok(c) = Cmd::new("deleting the btrfs snapshot", "btrfs") {
                if let Err(e) = c.args(["subvolume", "delete"]).arg(&self.path).run() {
                    tracing::error!("{e}");
                }
            }
            let _ = self.restore_times();
        }
    }
}

/// Unmount a clone left mounted by `-P1` (AIX `alt_rootvg_op -S`): everything mounted at or
/// below `mount_at`, deepest first, then the loop devices altdisk attached for it.
pub fn sleep(mount_at: &Path) -> Result<Vec<PathBuf>> {
    let table = mounts::read()?;
    let mut below: Vec<&mounts::Mount> = mounts::below(&table, mount_at);
    below.reverse();
    let mut done = Vec::new();
    for m in below {
        tfs::unmount(&m.target)?;
        done.push(m.target.clone());
    }
    if mounts::mount_at(&table, mount_at).is_some() {
        tfs::unmount(mount_at)?;
        done.push(mount_at.to_path_buf());
    }
    let rec = awake_file(mount_at);
    if let Ok(bytes) = std::fs::read(&rec) {
        if let Ok(a) = serde_json::from_slice::<Awake>(&bytes) {
            if let Some(vg) = &a.vg {
                crate::write::lvm::deactivate(vg)?;
            }
            for l in &a.loops {
                tfs::detach_loop(l)?;
            }
        }
        std::fs::remove_file(&rec).ctx("forgetting the mounted clone", &rec)?;
    } else if done.is_empty() {
        return Err(Error::not_found(
            format!("alternate system at {}", mount_at.display()),
            "nothing is mounted there",
            "nothing to do; see `altdisk lspv` for the alternate systems on the disks",
        ));
    }
    Ok(done)
}

/// A disk with what it is to altdisk (`altdisk lspv`).
#[derive(Debug, Clone, Serialize)]
pub struct DiskRole {
    pub name: String,
    pub alias: String,
    pub path: PathBuf,
    pub size: u64,
    pub model: Option<String>,
    pub role: String,
    pub detail: String,
    pub bootenv: Option<BootEnv>,
}

/// List disks with their roles: rootvg (the running system), an altdisk system by name,
/// free, or in use (and why).
pub fn lspv() -> Result<Vec<DiskRole>> {
    let disks = blockdev::list()?;
    let table = mounts::read()?;
    let swaps = mounts::swaps()?;
    let root = mounts::mount_at(&table, Path::new("/")).map(|m| (m.major, m.minor));
    let empty_source = source::Source {
        root: "/".into(),
        live: true,
        disks: vec![],
        filesystems: vec![],
        swaps: vec![],
        has_bios_boot: false,
        hostname: String::new(),
    };
    // The system this one was cloned from shows as old_rootvg (AIX names it so after the
    // switch), recognised by its root filesystem's UUID.
    let running_source_uuid = disks
        .iter()
        .find(|d| root.map(|(a, b)| d.holds(a, b)).unwrap_or(false))
        .and_then(|d| record::read(&d.path))
        .and_then(|r| r.ok())
        .and_then(|e| e.source.root_uuid);
    let mut out = Vec::new();
    for d in &disks {
        let env = record::read(&d.path).and_then(|r| r.ok());
        let former_dev = running_source_uuid.as_deref().and_then(blockdev::device_with_uuid);
        let is_former = env.is_none()
            && running_source_uuid.as_ref().is_some_and(|u| {
                former_dev.map(|(a, b)| d.holds(a, b)).unwrap_or(false)
                    || d.partitions.iter().any(|p| {
                        blockdev::Probe::read(&p.path)
                            .ok()
                            .and_then(|x| x.uuid)
                            .is_some_and(|x| x.eq_ignore_ascii_case(u))
                    })
            });
        let (role, detail) = if root.map(|(a, b)| d.holds(a, b)).unwrap_or(false) {
            ("rootvg".to_string(), "the running system".to_string())
        } else if is_former {
            ("old_rootvg".to_string(), "the system this one was cloned from".to_string())
        } else if let Some(e) = &env {
            let from = if e.source.hostname.is_empty() { String::new() } else { format!(" of {}", e.source.hostname) };
            let mounted = table
                .iter()
                .find(|m| d.holds(m.major, m.minor))
                .map(|m| format!(", mounted at {}", m.target.display()))
                .unwrap_or_default();
            (e.name.clone(), format!("{}{from}, made {}{mounted}", e.state.describe(), e.created))
        } else {
            match safety::check(&[Target::Disk(d.clone())], &empty_source, &table, &swaps, false) {
                Ok(()) => ("free".into(), String::new()),
                Err(Error::Refused { why, .. }) => {
                    let r = if why.starts_with("it holds data") || why.contains("holds data") {
                        "not free"
                    } else {
                        "in use"
                    };
                    (r.into(), why)
                }
                Err(e) => ("unknown".into(), e.to_string()),
            }
        };
        out.push(DiskRole {
            name: d.name.clone(),
            alias: d.alias.clone(),
            path: d.path.clone(),
            size: d.size,
            model: d.model.clone(),
            role,
            detail,
            bootenv: env,
        });
    }
    Ok(out)
}

/// Render `lspv` as a table.
pub fn render_lspv(rows: &[DiskRole]) -> String {
    let mut s = format!("{:<10} {:<8} {:>8}  {:<20} {:<16} {}\n", "NAME", "ALIAS", "SIZE", "MODEL", "ROLE", "DETAIL");
    for r in rows {
        s.push_str(&format!(
            "{:<10} {:<8} {:>8}  {:<20} {:<16} {}\n",
            r.name,
            r.alias,
            size::human(r.size),
            r.model.as_deref().unwrap_or("-").chars().take(20).collect::<String>(),
            r.role,
            r.detail
        ));
    }
    s
}
