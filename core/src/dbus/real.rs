//! The engine on this machine's disks: each method converts the API's options into the
//! library's request, calls the library, and converts the answer into the API's types.
//! Nothing here decides what may be written; the library does.

use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use altdisk_api::{
    self as api, kind, BootEntryInfo, BootEnvInfo, CloneOptions, DiskDetail, DiskInfo, FoundSystem, PartInfo,
    PlanDetails, SystemInfo, SystemRef, TargetPlan, VerifyOptions,
};

use super::engine::{collide, keys_of, DevKey, Engine, Outcome, Work, Writes};
use crate::boot::{bootlist, efi};
use crate::discover::blockdev::{self, Disk, Named, Probe};
use crate::discover::boot::{Firmware, Loader};
use crate::discover::contents::{self, Look, OsCache, PartContent};
use crate::discover::mounts::{self, Mount};
use crate::discover::record::{self, BootEnv};
use crate::discover::roles::{lspv, DiskRole, Role};
use crate::error::Result;
use crate::job::Job;
use crate::plan::customize::Customize;
use crate::plan::{BootlistMode, Layout, PartRole, Phases, Plan};
use crate::run::{self, CloneRequest};
use crate::systems::find::{self, Found};
use crate::systems::{awake, ops, restore};

pub struct RealEngine {
    /// Where jobs mount their clones, and where the service looks into disks.
    mount_root: PathBuf,
    os_cache: OsCache,
    /// One look into the disks at a time: `find` mounts what it looks into below one
    /// directory of this process, so two at once would mount over each other.
    finding: Mutex<()>,
}

impl RealEngine {
    pub fn new(mount_root: PathBuf) -> RealEngine {
        RealEngine { mount_root, os_cache: OsCache::default(), finding: Mutex::new(()) }
    }
}

/// A found system as the API gives it.
fn found_info(f: Found) -> FoundSystem {
    FoundSystem {
        name: f.name,
        kind: f.kind,
        state: f.state,
        bootable: f.bootable,
        os: f.os.unwrap_or_default(),
        host: f.host.unwrap_or_default(),
        created: f.created.unwrap_or_default(),
        disks: f.disks,
        root: f.root.display().to_string(),
        root_uuid: f.root_uuid.unwrap_or_default(),
        kernels: f.kernels,
    }
}

/// Run `f` with a job of its own; its answer, after the lines it logged ("made Boot0007
/// ...; old_rootvg on sda is first in the UEFI boot order"), so a method's caller reads
/// everything that was done.
fn logged(f: impl FnOnce(&Job) -> Result<String>) -> Result<String> {
    let job = Job::new();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let l = lines.clone();
    job.on_event(move |e| {
        if let crate::job::Event::Log { message, .. } = e {
            l.lock().unwrap_or_else(|p| p.into_inner()).push(message.clone());
        }
    });
    let answer = f(&job)?;
    let mut all = std::mem::take(&mut *lines.lock().unwrap_or_else(|p| p.into_inner()));
    all.retain(|l| l != &answer);
    all.push(answer);
    Ok(all.join("; "))
}

/// Phase 3 again on a system found on a disk (`RepairSystem`).
struct Repair {
    disk: String,
    mount_at: PathBuf,
}

impl Work for Repair {
    fn kind(&self) -> &'static str {
        api::job_kind::REPAIR
    }

    fn run(self: Box<Self>, job: &Job) -> Result<Outcome> {
        job.info(format!("repairing the boot of the system on {}, mounted at {}", self.disk, self.mount_at.display()));
        job.set_phase(crate::job::Phase::MakingBootable);
        let said = restore::repair(&self.disk, &self.mount_at, BootlistMode::First, job)?;
        job.info(said);
        job.set_phase(crate::job::Phase::Done);
        Ok(Outcome::default())
    }
}

/// The library's request for these options.
pub fn request(o: &CloneOptions, mount_at: PathBuf) -> Result<CloneRequest> {
    let p = &o.phase2;
    let mut customize = Customize {
        images: p.packages_dir.as_ref().map(PathBuf::from),
        packages: p.packages.iter().chain(&p.fixes).cloned().collect(),
        bundles: p.bundles.iter().chain(&p.fix_bundles).map(PathBuf::from).collect(),
        update_all: p.update_all,
        install_flags: p.install_flags.clone(),
        script: p.script.as_ref().map(PathBuf::from),
        first_boot: p.first_boot_script.as_ref().map(PathBuf::from),
        resolv_conf: p.resolv_conf.as_ref().map(PathBuf::from),
        device_reset: p.device_reset,
        console: p.console.clone(),
    };
    customize.packages.dedup();
    Ok(CloneRequest {
        targets: o.targets.clone(),
        source_dir: o.source.as_ref().map(PathBuf::from),
        source_disk: o.source_disk.clone(),
        phases: Phases::parse(o.phases.as_str())?,
        layout: o.layout.as_deref().map(|t| Layout::parse(t, "given over D-Bus")).transpose()?,
        exclude: o.exclude.as_ref().map(PathBuf::from),
        convert_ext: o.convert,
        skip_space_check: o.skip_space_check,
        skip_boot_checks: o.skip_boot_checks,
        force: o.force,
        image_size: o.size,
        mount_at,
        name: crate::ALTINST_ROOTVG.into(),
        threads: 0,
        bootlist: match o.bootlist {
            api::BootlistMode::First => BootlistMode::First,
            api::BootlistMode::Leave => BootlistMode::Leave,
            api::BootlistMode::Trial => BootlistMode::Trial,
        },
        customize,
    })
}

enum RealWork {
    Verify(Box<crate::systems::verify::VerifyRequest>),
    Refresh(Box<CloneRequest>, run::Refresh),
    New(Box<run::Prepared>),
    Resume(Box<CloneRequest>),
}

impl Work for RealWork {
    fn kind(&self) -> &'static str {
        match self {
            RealWork::New(_) => "clone",
            RealWork::Resume(_) => "resume",
            RealWork::Refresh(..) => "refresh",
            RealWork::Verify(_) => "verify",
        }
    }

    fn run(self: Box<Self>, job: &Job) -> Result<Outcome> {
        let report = match *self {
            RealWork::New(prep) => run::execute(*prep, job)?,
            RealWork::Resume(req) => run::resume(&req, job)?,
            RealWork::Refresh(req, r) => run::refresh(&req, &r, job)?,
            RealWork::Verify(req) => {
                let r = crate::systems::verify::verify(&req, job)?;
                return Ok(Outcome { mounted_at: None, report: serde_json::to_string(&r).ok() });
            }
        };
        Ok(Outcome { report: serde_json::to_string(&report).ok(), mounted_at: report.mounted_at })
    }
}

fn env_state(e: &BootEnv) -> String {
    serde_json::to_value(e.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

fn system_ref(r: &DiskRole) -> SystemRef {
    let running = r.role == Role::Rootvg;
    match (&r.bootenv, &r.role) {
        (Some(e), _) => SystemRef {
            name: if running { "rootvg".into() } else { e.name.clone() },
            id: e.id.to_string(),
            state: if running { "running".into() } else { env_state(e) },
            source_host: e.source.hostname.clone(),
            created: e.created.clone(),
        },
        (None, Role::Rootvg) => SystemRef { name: "rootvg".into(), state: "running".into(), ..Default::default() },
        (None, Role::OldRootvg) => SystemRef { name: "old_rootvg".into(), ..Default::default() },
        _ => SystemRef::default(),
    }
}

fn disk_kind(r: &DiskRole) -> &'static str {
    match (&r.role, &r.bootenv) {
        (Role::Rootvg, _) => kind::RUNNING,
        (Role::OldRootvg, _) => kind::FORMER,
        (Role::System(_), _) | (_, Some(_)) => kind::ALTERNATE,
        (Role::Free, _) => kind::FREE,
        (Role::NotFree, _) => kind::HOLDS_DATA,
        (Role::InUse, _) => kind::IN_USE,
    }
}

/// What a disk holds, for people about to erase it.
fn holds(d: &Disk, parts: &[PartContent], env: Option<&BootEnv>) -> Vec<String> {
    let system = env.map(|e| contents::system_line(&e.name, e.state.describe(), &e.created));
    let signature = if parts.is_empty() { Probe::read(&d.path).ok().and_then(|p| p.describe()) } else { None };
    contents::describe(parts, system, signature)
}

fn part_info(c: &PartContent) -> PartInfo {
    PartInfo {
        number: c.number,
        device: c.device.display().to_string(),
        name: c.name.clone(),
        role: String::new(),
        start: c.start,
        size: c.size,
        fstype: c.fstype.clone(),
        label: c.label.clone(),
        mountpoint: c.mountpoint.clone(),
        used: 0,
        source: String::new(),
        os: c.os.clone(),
    }
}

/// The partitions a plan makes on target `i`.
fn planned_parts(plan: &Plan, i: usize) -> Vec<PartInfo> {
    plan.partitions
        .iter()
        .filter(|p| p.disk == i)
        .map(|p| {
            let mut info =
                PartInfo { number: p.number, name: p.name.clone(), start: p.start, size: p.size, ..Default::default() };
            match p.role {
                PartRole::Meta => info.role = "meta".into(),
                PartRole::BiosBoot => info.role = "bios-boot".into(),
                PartRole::Filesystem(f) => {
                    let fs = &plan.filesystems[f];
                    info.role = "filesystem".into();
                    info.fstype = fs.fstype.clone();
                    info.label = fs.label.clone().unwrap_or_default();
                    info.mountpoint = fs.mountpoint.clone();
                    info.used = fs.used;
                    info.source = fs.source.as_ref().map(|s| s.device.display().to_string()).unwrap_or_default();
                }
                PartRole::Swap(s) => {
                    info.role = "swap".into();
                    info.fstype = "swap".into();
                    info.label = plan.swaps[s].label.clone().unwrap_or_default();
                }
                PartRole::Pv => {
                    info.role = "lvm-pv".into();
                    info.fstype = "LVM2_member".into();
                }
            }
            info
        })
        .collect()
}

fn boot_words(plan: &Plan) -> (String, String) {
    let Some(b) = &plan.boot else { return (String::new(), String::new()) };
    let loader = match &b.loader {
        Loader::GrubEfi { id, shim: true } => format!("GRUB for UEFI (\\EFI\\{id}, through shim)"),
        Loader::GrubEfi { id, shim: false } => format!("GRUB for UEFI (\\EFI\\{id})"),
        Loader::SystemdBoot => "systemd-boot".into(),
        Loader::GrubBios => "GRUB for BIOS".into(),
    };
    let list = match (b.firmware, plan.bootlist) {
        (Firmware::Bios, _) => "the BIOS boot order stays with the firmware",
        (_, BootlistMode::First) => "the clone goes first in the UEFI boot order",
        (_, BootlistMode::Leave) => "the UEFI boot order is left alone",
        (_, BootlistMode::Trial) => "the clone is booted once (BootNext) and kept if it comes up",
    };
    (loader, list.into())
}

impl RealEngine {
    fn look<'a>(&'a self, table: &'a [Mount], unmounted: bool) -> Look<'a> {
        Look { table, unmounted, cache: Some(&self.os_cache) }
    }

    /// A disk's unmounted filesystems are read only when no job writes it.
    fn may_look(d: &Disk, busy: &[DevKey]) -> bool {
        !collide(&keys_of(&d.path), busy)
    }
}

impl Engine for RealEngine {
    fn simulated(&self) -> bool {
        false
    }

    fn firmware(&self) -> &'static str {
        match Firmware::current() {
            Firmware::Uefi => api::firmware::UEFI,
            Firmware::Bios => api::firmware::BIOS,
        }
    }

    fn disks(&self) -> Result<Vec<DiskInfo>> {
        let disks = blockdev::list()?;
        Ok(lspv()?
            .into_iter()
            .map(|r| {
                let d = disks.iter().find(|d| d.path == r.path);
                DiskInfo {
                    name: r.name,
                    alias: r.alias,
                    path: r.path.display().to_string(),
                    model: r.model.unwrap_or_default(),
                    serial: d.and_then(|d| d.serial.clone()).unwrap_or_default(),
                    size: r.size,
                    bus: d.and_then(|d| d.transport.clone()).unwrap_or_default(),
                    removable: d.map(|d| d.removable).unwrap_or(false),
                    role: r.role.to_string(),
                    detail: r.detail,
                }
            })
            .collect())
    }

    fn disk_details(&self, busy: &[DevKey]) -> Result<Vec<DiskDetail>> {
        let disks = blockdev::list()?;
        let roles = lspv()?;
        let table = mounts::read()?;
        let mut out = Vec::new();
        for d in &disks {
            let Some(r) = roles.iter().find(|r| r.path == d.path) else { continue };
            let parts = contents::partitions(d, &self.look(&table, Self::may_look(d, busy)));
            let k = disk_kind(r);
            let mounted = table.iter().any(|m| d.holds(m.major, m.minor));
            let held = !d.holders.is_empty() || d.partitions.iter().any(|p| !p.holders.is_empty());
            out.push(DiskDetail {
                name: d.name.clone(),
                alias: d.alias.clone(),
                path: d.path.display().to_string(),
                model: d.model.clone().unwrap_or_default(),
                serial: d.serial.clone().unwrap_or_default(),
                size: d.size,
                bus: d.transport.clone().unwrap_or_default(),
                removable: d.removable,
                read_only: d.read_only,
                loop_device: d.is_loop,
                kind: k.into(),
                role: r.role.to_string(),
                detail: r.detail.clone(),
                usable: k == kind::FREE,
                erasable: matches!(k, kind::HOLDS_DATA | kind::ALTERNATE | kind::FORMER)
                    && !mounted
                    && !held
                    && !d.read_only,
                system: system_ref(r),
                holds: holds(d, &parts, r.bootenv.as_ref()),
                partitions: parts.iter().map(part_info).collect(),
            });
        }
        Ok(out)
    }

    fn systems(&self) -> Result<Vec<SystemInfo>> {
        let disks = blockdev::list()?;
        let table = mounts::read()?;
        let mut out: Vec<SystemInfo> = Vec::new();
        for r in lspv()? {
            let Some(d) = disks.iter().find(|d| d.path == r.path) else { continue };
            let running = r.role == Role::Rootvg;
            let former = r.role == Role::OldRootvg;
            let awake = if running {
                None
            } else {
                table.iter().filter(|m| d.holds(m.major, m.minor)).min_by_key(|m| m.target.as_os_str().len())
            };
            let id = r.bootenv.as_ref().map(|e| e.id.to_string()).unwrap_or_default();
            if let Some(s) = out.iter_mut().find(|s| !id.is_empty() && s.id == id) {
                s.disks.push(r.name.clone());
                if s.awake_at.is_empty() {
                    s.awake_at = awake.map(|m| m.target.display().to_string()).unwrap_or_default();
                }
                continue;
            }
            let info = match &r.bootenv {
                Some(e) => SystemInfo {
                    name: if running { "rootvg".into() } else { e.name.clone() },
                    id,
                    disks: vec![r.name.clone()],
                    state: if running { "running".into() } else { env_state(e) },
                    state_text: if running { "the running system".into() } else { e.state.describe().into() },
                    source_host: e.source.hostname.clone(),
                    created: e.created.clone(),
                    updated: e.updated.clone(),
                    phases_done: e.phases_done.clone(),
                    running,
                    former,
                    awake_at: awake.map(|m| m.target.display().to_string()).unwrap_or_default(),
                    boot_entry: e.boot_entry.map(efi::boot_name).unwrap_or_default(),
                    trial: e.trial,
                    note: e.note.clone().unwrap_or_default(),
                    volume_group: e.vg.clone().unwrap_or_default(),
                },
                None if running || former => SystemInfo {
                    name: r.role.to_string(),
                    disks: vec![r.name.clone()],
                    state: if running { "running".into() } else { String::new() },
                    state_text: r.detail.clone(),
                    running,
                    former,
                    ..Default::default()
                },
                None => continue,
            };
            out.push(info);
        }
        Ok(out)
    }

    fn boot_environments(&self) -> Result<Vec<BootEnvInfo>> {
        let mut out: Vec<(Option<uuid::Uuid>, BootEnvInfo)> = Vec::new();
        for r in lspv()? {
            let (id, info) = match (&r.bootenv, r.role.as_str()) {
                (Some(e), _) => (
                    Some(e.id),
                    BootEnvInfo {
                        name: if r.role == Role::Rootvg { "rootvg".into() } else { e.name.clone() },
                        disks: vec![r.name.clone()],
                        state: e.state.describe().into(),
                        source: e.source.hostname.clone(),
                        created: e.created.clone(),
                    },
                ),
                (None, "rootvg" | "old_rootvg") => (
                    None,
                    BootEnvInfo {
                        name: r.role.to_string(),
                        disks: vec![r.name.clone()],
                        state: r.detail.clone(),
                        source: String::new(),
                        created: String::new(),
                    },
                ),
                _ => continue,
            };
            match out.iter_mut().find(|(i, _)| id.is_some() && *i == id) {
                Some((_, e)) => e.disks.push(r.name),
                None => out.push((id, info)),
            }
        }
        Ok(out.into_iter().map(|(_, e)| e).collect())
    }

    fn boot_list(&self) -> Result<Vec<BootEntryInfo>> {
        let m = efi::BootManager { vars: efi::Efivarfs::system()? };
        Ok(bootlist::show(&m)?
            .into_iter()
            .map(|e| BootEntryInfo {
                number: e.number,
                description: e.description,
                disk: e.disk.unwrap_or_default(),
                system: e.system.unwrap_or_default(),
                active: e.active,
                in_order: e.in_order,
                next: e.next,
                current: e.current,
            })
            .collect())
    }

    fn set_boot_list(&self, disks: &[String]) -> Result<()> {
        let m = efi::BootManager { vars: efi::Efivarfs::system()? };
        bootlist::set(&m, disks).map(|_| ())
    }

    fn set_boot_next(&self, disk: &str) -> Result<()> {
        let m = efi::BootManager { vars: efi::Efivarfs::system()? };
        bootlist::set_next(&m, disk).map(|_| ())
    }

    fn trial_boot(&self, disk: &str) -> Result<()> {
        crate::systems::trial::trial_boot(disk).map(|_| ())
    }

    fn plan(&self, o: &CloneOptions, mount_at: &Path) -> Result<String> {
        let prep = run::plan(&request(o, mount_at.to_path_buf())?)?;
        serde_json::to_string_pretty(&prep.plan).map_err(|e| crate::Error::corrupt("the plan", e.to_string()))
    }

    fn plan_details(&self, o: &CloneOptions, mount_at: &Path, busy: &[DevKey]) -> Result<PlanDetails> {
        let prep = run::plan(&request(o, mount_at.to_path_buf())?)?;
        let plan = &prep.plan;
        let disks = blockdev::list()?;
        let table = mounts::read()?;
        let mut targets = Vec::new();
        for (i, t) in plan.targets.iter().enumerate() {
            let disk = disks.iter().find(|d| d.path == t.path);
            let (before, erased) = match disk {
                Some(d) => {
                    let parts = contents::partitions(d, &self.look(&table, Self::may_look(d, busy)));
                    let env = record::read(&d.path).and_then(|r| r.ok());
                    (parts.iter().map(part_info).collect(), holds(d, &parts, env.as_ref()))
                }
                None => {
                    let held = std::fs::metadata(&t.path).map(|m| m.len() > 0).unwrap_or(false);
                    let probe = if held { Probe::read(&t.path).ok() } else { None };
                    let env = if held { record::read(&t.path).and_then(|r| r.ok()) } else { None };
                    let system = env.map(|e| contents::system_line(&e.name, e.state.describe(), &e.created));
                    (Vec::new(), contents::describe(&[], system, probe.and_then(|p| p.describe())))
                }
            };
            targets.push(TargetPlan {
                name: t.name.clone(),
                path: t.path.display().to_string(),
                alias: t.alias.clone().unwrap_or_default(),
                model: disk.and_then(|d| d.model.clone()).unwrap_or_default(),
                serial: disk.and_then(|d| d.serial.clone()).unwrap_or_default(),
                size: t.size,
                image: t.image.is_some(),
                image_created: t.image.as_ref().map(|i| i.create).unwrap_or(false),
                before,
                after: planned_parts(plan, i),
                erased,
            });
        }
        let (boot, bootlist) = if plan.phases.has(3) { boot_words(plan) } else { (String::new(), String::new()) };
        Ok(PlanDetails {
            name: plan.name.clone(),
            source: match (&o.source_disk, plan.source.live) {
                // Mounted read-only where the plan read it, for as long as `prep` lives.
                (Some(d), _) => match contents::os_name(&plan.source.root) {
                    Some(os) => format!("the system on {d} ({os})"),
                    None => format!("the system on {d}"),
                },
                (None, true) => "the running system".into(),
                (None, false) => format!("the system at {}", plan.source.root.display()),
            },
            phases: o.phases.as_str().into(),
            needed: plan.needed,
            targets,
            volume_group: plan.vg.as_ref().map(|v| v.name.clone()).unwrap_or_default(),
            logical_volumes: plan
                .vg
                .iter()
                .flat_map(|vg| vg.lvs.iter())
                .map(|(lv, size)| {
                    let fs = plan.filesystems.iter().find(|f| f.lv.as_deref() == Some(lv.as_str()));
                    api::LvPlan {
                        name: lv.clone(),
                        size: *size,
                        fstype: fs.map(|f| f.fstype.clone()).unwrap_or_else(|| "swap".into()),
                        mountpoint: fs.map(|f| f.mountpoint.clone()).unwrap_or_default(),
                    }
                })
                .collect(),
            boot,
            bootlist,
            warnings: plan.warnings.clone(),
            text: plan.render(),
            json: serde_json::to_string_pretty(plan).map_err(|e| crate::Error::corrupt("the plan", e.to_string()))?,
        })
    }

    fn target_keys(&self, o: &CloneOptions) -> Result<Vec<(String, Vec<DevKey>)>> {
        let disks = blockdev::list()?;
        // Resuming and refreshing work on every disk of the clone, also those not named.
        if o.existing() {
            if let Some(sys) = o.targets.first().and_then(|t| ops::find_by_disk(t).ok()) {
                return Ok(sys.disks.iter().map(|d| (d.name.clone(), keys_of(&d.path))).collect());
            }
        }
        let mut out = Vec::new();
        for name in &o.targets {
            let path = match blockdev::resolve(name, &disks)? {
                Named::Disk(i) => disks[i].path.clone(),
                Named::Image(p) => p,
            };
            out.push((name.clone(), keys_of(&path)));
        }
        Ok(out)
    }

    fn prepare(&self, o: &CloneOptions, mount_at: &Path) -> Result<Box<dyn Work>> {
        let req = request(o, mount_at.to_path_buf())?;
        if o.refresh {
            // The checks a refresh makes first, before a job exists.
            req.customize.validate()?;
            ops::find_by_disk(req.targets.first().map(String::as_str).unwrap_or_default())?;
            let r = run::Refresh { checksum: o.checksum, phases: None };
            return Ok(Box::new(RealWork::Refresh(Box::new(req), r)));
        }
        if req.phases.has(1) {
            Ok(Box::new(RealWork::New(Box::new(run::prepare(&req)?))))
        } else {
            // The checks resume makes first, before a job exists.
            req.customize.validate()?;
            ops::find_by_disk(req.targets.first().map(String::as_str).unwrap_or_default())?;
            Ok(Box::new(RealWork::Resume(Box::new(req))))
        }
    }

    fn verify_keys(&self, target: &str) -> Result<Vec<(String, Vec<DevKey>)>> {
        let sys = ops::find_by_disk(target)?;
        Ok(sys.disks.iter().map(|d| (d.name.clone(), keys_of(&d.path))).collect())
    }

    fn prepare_verify(&self, target: &str, o: &VerifyOptions) -> Result<Box<dyn Work>> {
        let req = crate::systems::verify::VerifyRequest {
            target: target.to_string(),
            source_dir: o.source.as_ref().map(PathBuf::from),
            against: o.against.clone(),
            exclude: o.exclude.as_ref().map(PathBuf::from),
            threads: 0,
        };
        ops::find_by_disk(target)?;
        Ok(Box::new(RealWork::Verify(Box::new(req))))
    }

    fn wake(&self, disk: &str, at: &Path) -> Result<String> {
        let sys = ops::find_by_disk(disk)?;
        ops::wake(&sys, at)?;
        Ok(at.display().to_string())
    }

    fn sleep(&self, mount_point: &str) -> Result<()> {
        awake::sleep(Path::new(mount_point)).map(|_| ())
    }

    fn remove(&self, name: &str) -> Result<()> {
        let systems = ops::find_by_name(name)?;
        if systems.is_empty() {
            return Err(crate::Error::not_found(
                format!("alternate system {name}"),
                "no disk holds one by that name",
                "see Disks",
            ));
        }
        let job = Job::new();
        for s in &systems {
            ops::remove(s, &job)?;
        }
        Ok(())
    }

    fn remove_system(&self, disk: &str) -> Result<()> {
        ops::remove(&ops::find_by_disk(disk)?, &Job::new())
    }

    fn rename(&self, disk: &str, new_name: &str) -> Result<()> {
        ops::rename(&ops::find_by_disk(disk)?, new_name)
    }

    fn find_systems(&self, busy: &[DevKey]) -> Result<Vec<FoundSystem>> {
        let _one = self.finding.lock().unwrap_or_else(|p| p.into_inner());
        // Not into a disk a job here writes, nor one another run (the command line) holds.
        let found =
            find::find_except(|d| collide(&keys_of(&d.path), busy) || crate::plan::lock::holder(&d.path).is_some())?;
        Ok(found.into_iter().map(found_info).collect())
    }

    fn restore(&self, disk: &str, once: bool) -> Result<String> {
        let _one = self.finding.lock().unwrap_or_else(|p| p.into_inner());
        logged(|job| restore::restore(disk, once, job))
    }

    fn boot_now(&self, disk: &str, kexec: bool) -> Result<String> {
        let _one = self.finding.lock().unwrap_or_else(|p| p.into_inner());
        logged(|job| restore::boot_now(disk, kexec, job))
    }

    fn prepare_repair(&self, disk: &str, mount_at: &Path) -> Result<(Writes, Box<dyn Work>)> {
        let f = {
            let _one = self.finding.lock().unwrap_or_else(|p| p.into_inner());
            restore::repairable(disk)?
        };
        let disks = blockdev::list()?;
        let keys = f
            .disks
            .iter()
            .map(|n| {
                let path = disks.iter().find(|d| &d.name == n).map(|d| d.path.clone());
                (n.clone(), path.map(|p| keys_of(&p)).unwrap_or_default())
            })
            .collect();
        Ok((keys, Box::new(Repair { disk: disk.to_string(), mount_at: mount_at.to_path_buf() })))
    }

    fn recover(&self) -> Result<Vec<String>> {
        recover(&self.mount_root)
    }

    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut v: Vec<(String, String)> = std::fs::read_dir("/sys/class/block")
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        let size = std::fs::read_to_string(e.path().join("size")).unwrap_or_default();
                        (n, size.trim().to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.hash(&mut h);
        h.finish()
    }
}

/// At start: a previous instance may have died mid-job. Clean up what killed runs left (by
/// their journals), unmount what is left under the mount root; the targets' records already
/// say incomplete (they only move on when a phase finishes), and get a note saying why.
pub fn recover(mount_root: &Path) -> Result<Vec<String>> {
    // What killed runs (of this service or of the command) left behind, by their journals.
    let mut notes = crate::write::journal::recover()?;
    let table = mounts::read()?;
    let mut left: Vec<&Mount> = table.iter().filter(|m| m.target.starts_with(mount_root)).collect();
    left.sort_by_key(|m| std::cmp::Reverse(m.target.components().count()));
    for m in left {
        crate::write::fs::unmount(&m.target)?;
        notes.push(format!("unmounted {} left by an interrupted job", m.target.display()));
    }
    for d in blockdev::list()? {
        // A disk another run holds is being written now: not interrupted.
        if crate::plan::lock::holder(&d.path).is_some() {
            continue;
        }
        if let Some(Ok(mut env)) = record::read(&d.path) {
            if env.state == record::State::Incomplete && env.note.is_none() {
                env.note = Some("interrupted: the altdisk service stopped during the run".into());
                record::update(&d.path, &env)?;
                notes.push(format!("{}: marked incomplete (interrupted run)", d.name));
            }
        }
    }
    Ok(notes)
}
