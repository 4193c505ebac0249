//! Before the first write: clean up after runs that died, discover the source, resolve and
//! lock the targets, check them, and build the complete plan. Everything that can be known
//! before writing is checked here, so a run fails before it touches a disk rather than
//! halfway.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::discover::blockdev::Probe;
use crate::discover::blockdev::{self, Named};
use crate::discover::boot::{self as bootinfo, Firmware, Loader};
use crate::discover::{mounts, source};
use crate::error::{Error, Result};
use crate::plan::lock::{Holder, TargetLock};
use crate::plan::safety::{self, Target};
use crate::plan::{self, Plan, PlanOptions, TargetIn};
use crate::systems::mount::SystemMount;
use crate::write::exclude::ExcludeList;
use crate::write::fs as tfs;

use crate::write::journal;

use super::request::CloneRequest;

/// A checked plan, with the locks on its targets and what executing it needs.
pub struct Prepared {
    pub plan: Plan,
    /// What was cleaned up after runs that died (one line each), for the user to read.
    pub notes: Vec<String>,
    pub(super) targets: Vec<Target>,
    pub(super) exclude: ExcludeList,
    pub(super) locks: Vec<TargetLock>,
    /// The system being cloned, when it is not running (`--source-disk`): mounted read-only
    /// for the run, unmounted when the run ends.
    pub(super) source_mount: Option<SystemMount>,
}

/// Tools phase 1 runs.
fn required_tools(plan: &Plan) -> Vec<&'static str> {
    let mut v = vec!["blkid"];
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

/// Clean up after runs that died, then discover, resolve, lock, check and plan. Writes
/// nothing to the targets.
pub fn prepare(req: &CloneRequest) -> Result<Prepared> {
    let notes = journal::recover()?;
    let mut p = plan(req)?;
    p.notes = notes;
    Ok(p)
}

/// Discover, resolve, lock, check and plan, for showing (`--dry-run`, D-Bus `Plan`): writes
/// nothing at all, and leaves what a dead run left for the next real run to clean.
pub fn plan(req: &CloneRequest) -> Result<Prepared> {
    if !req.phases.has(1) {
        return Err(Error::usage(
            format!("-P {}", req.phases.as_str()),
            "without phase 1 there is nothing to plan: phases 2 and 3 work on a clone made earlier",
            "run them with alt_disk_copy -P23 -d DISK, which finds the clone on the disk",
        ));
    }
    crate::plan::safety::check_mount_at(&req.mount_at)?;
    req.customize.validate()?;
    let source_mount = match &req.source_disk {
        Some(d) => Some(mount_source_disk(d, req.source_dir.is_some())?),
        None => None,
    };
    let source_dir = source_mount.as_ref().map(|m| m.root.clone()).or_else(|| req.source_dir.clone());
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
    let mut src = source::discover(source_dir.as_deref(), &disks)?;
    // The bootability checks (AIX -g skips them): how the source boots decides the layout.
    let mut warnings = Vec::new();
    let boot = if req.phases.has(3) {
        let esp = src.esp().map(|f| f.mountpoint.clone());
        match bootinfo::detect(&src.root, Firmware::current(), esp.as_deref()) {
            Ok(b) => Some(b),
            Err(e) if req.skip_boot_checks => {
                warnings.push(format!("-g: {e}: the clone will not be made bootable"));
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    if boot.as_ref().is_some_and(|b| b.loader == Loader::GrubBios) {
        // GRUB on a GPT disk under BIOS keeps its core image in a BIOS boot partition.
        src.has_bios_boot = true;
    }
    if req.customize.wants_packages() && !has_apt(&src.root) {
        return Err(Error::unsupported(
            "installing packages into the clone (-l, -w, -b, -F, -f)",
            format!(": the system being cloned ({}) has no apt-get and dpkg", src.root.display()),
            "install them in the source, or leave the package options out",
        ));
    }
    let needs_units = (req.phases.has(3) && req.bootlist == plan::BootlistMode::Trial)
        || (req.phases.has(2) && (req.customize.first_boot.is_some() || req.customize.device_reset));
    if needs_units && !crate::boot::units::has_systemd(&src.root) {
        return Err(Error::unsupported(
            "a trial boot (--trial), first-boot script (-x) or device reset (-O)",
            format!(
                ": they work through altdisk's systemd units, and the system being cloned ({}) has no systemd",
                src.root.display()
            ),
            "leave those options out",
        ));
    }
    let me = Holder::this_run();
    let mut seen_names = HashSet::new();
    let mut targets = Vec::new();
    let mut tin = Vec::new();
    let mut locks = Vec::new();
    for name in &req.targets {
        if !seen_names.insert(name.clone()) {
            return Err(Error::usage(format!("target {name}"), "it is named twice", "name each target disk once"));
        }
        match blockdev::resolve(name, &disks)? {
            Named::Disk(i) => {
                let d = &disks[i];
                // Locked before it is checked, and held to the end of the run.
                locks.push(TargetLock::acquire(&d.path, &me)?);
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
                locks.push(TargetLock::acquire(&p, &me)?);
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
        phases: req.phases.clone(),
        mount_at: req.mount_at.clone(),
        exclude: exclude.patterns().to_vec(),
        bootlist: req.bootlist,
        customize: req.customize.clone(),
        boot,
        warnings,
    };
    let plan = plan::build(&src, &tin, &opts, &req.name)?;
    check_image_room(&plan, req.skip_space_check)?;
    for t in required_tools(&plan) {
        crate::cmd::which(t)?;
    }
    if let Some(vg) = &plan.vg {
        crate::write::lvm::check_free_name(&vg.name)?;
    }
    Ok(Prepared { plan, notes: Vec::new(), targets, exclude, locks, source_mount })
}

/// Mount the system on `disk` read-only where the run reads it (the offline clone).
fn mount_source_disk(disk: &str, also_source_dir: bool) -> Result<SystemMount> {
    if also_source_dir {
        return Err(Error::usage(
            "--source with --source-disk",
            "they both name the system to clone",
            "give one: --source-disk DISK clones the system on that disk",
        ));
    }
    let f = crate::systems::find::on_disk(disk)?;
    if f.kind == "running" {
        return Err(Error::refused(
            format!("{} on {}", f.name, f.disks.join(" ")),
            "it is the running system",
            "clone the running system without --source-disk",
        ));
    }
    let fstype = Probe::read(&f.root)?.fstype.unwrap_or_default();
    if crate::systems::mount::needs_recovery(&f.root, &fstype) {
        return Err(Error::refused(
            format!("the system on {disk} ({})", f.root.display()),
            "its root filesystem was not unmounted cleanly (its journal waits to be replayed); read as it is, its latest changes would be missing",
            format!("boot it once, or check it with e2fsck -f {} from here, then clone again", f.root.display()),
        ));
    }
    // One directory per mount: the service plans and runs several offline clones at once,
    // and one must never be mounted over (or unmounted under) another.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let at = PathBuf::from(format!("/run/altdisk/source-{}/{n}", std::process::id()));
    SystemMount::mount(&f.root, &at, true)
}

fn has_apt(root: &Path) -> bool {
    ["usr/bin/apt-get", "bin/apt-get"].iter().any(|p| root.join(p).exists())
        && ["usr/bin/dpkg", "bin/dpkg"].iter().any(|p| root.join(p).exists())
}

/// An image file grows as the clone is written: the filesystem it lives on must have room
/// for what will be written (the data, plus the filesystems' own structures), or the writes
/// fail halfway. Refused before writing, unless `-S` said to go ahead.
fn check_image_room(plan: &Plan, skip: bool) -> Result<()> {
    let data: u64 = plan.source.filesystems.iter().map(|f| f.used_bytes).sum();
    for t in &plan.targets {
        if t.image.is_none() {
            continue;
        }
        let img = &t.path;
        let dir = img.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let Ok(st) = nix::sys::statvfs::statvfs(dir) else { continue };
        let free = st.blocks_available() * st.fragment_size();
        let already = std::fs::metadata(img).map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512).unwrap_or(0);
        // The share of the data this disk holds, plus room for metadata and journals.
        let share = if plan.targets.len() == 1 { data } else { data.min(t.size) };
        let need = (share + share / 20 + 64 * crate::size::MIB).min(t.size);
        if free + already < need {
            let e = Error::TooSmall {
                what: format!("the filesystem holding {}", img.display()),
                needed: crate::size::human(need),
                available: crate::size::human(free + already),
                todo: format!(
                    "the image file grows as the clone is written: put it where there is room, or free space in {}",
                    dir.display()
                ),
            };
            if skip {
                tracing::warn!("-S: {e}");
            } else {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The PathBufs of targets, as their records are found (disk or image file).
pub(crate) fn record_paths(targets: &[Target]) -> Vec<PathBuf> {
    targets.iter().map(|t| t.path().to_path_buf()).collect()
}
