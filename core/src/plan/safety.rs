//! The refusals. A target is written only if it is a whole disk (or image file) the user
//! named, that does not hold the running system or the source, has nothing mounted, no active
//! swap, is no LVM physical volume, RAID member or otherwise held by the device mapper, and
//! carries no partition table or filesystem signature (`--force` overrides only that last
//! one). Each refusal is one line: what, why, and what to do.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::discover::blockdev::{Disk, Probe};
use crate::discover::mounts::{self, Mount};
use crate::discover::source::Source;
use crate::error::{Error, Result};

/// A target after name resolution.
#[derive(Debug, Clone)]
pub enum Target {
    Disk(Disk),
    Image(PathBuf),
}

impl Target {
    pub fn path(&self) -> &Path {
        match self {
            Target::Disk(d) => &d.path,
            Target::Image(p) => p,
        }
    }
}

fn dev_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::FileTypeExt;
    let md = std::fs::metadata(path).ok()?;
    if md.file_type().is_block_device() {
        Some((nix::sys::stat::major(md.rdev()) as u32, nix::sys::stat::minor(md.rdev()) as u32))
    } else {
        None
    }
}

fn describe_signature(what: &str, probe: &Probe) -> Option<(bool, String)> {
    match probe.fstype.as_deref() {
        Some("LVM2_member") => Some((true, format!("{what} is an LVM physical volume"))),
        Some(t) if t.ends_with("raid_member") => Some((true, format!("{what} is a RAID member ({t})"))),
        Some("crypto_LUKS") => Some((true, format!("{what} holds a LUKS encrypted volume"))),
        _ => probe.describe().map(|d| (false, format!("{what} holds data ({d})"))),
    }
}

/// Check every target, failing on the first that must not be written.
pub fn check(targets: &[Target], source: &Source, table: &[Mount], swaps: &[PathBuf], force: bool) -> Result<()> {
    let root_dev = mounts::mount_at(table, Path::new("/")).map(|m| (m.major, m.minor));
    let swap_devs: Vec<(u32, u32)> = swaps.iter().filter_map(|p| dev_of(p)).collect();
    let mut seen: Vec<(u64, u64)> = Vec::new();
    for t in targets {
        let name = t.path().display().to_string();
        // Duplicates, by identity (two names for one disk count too).
        let id = std::fs::metadata(t.path())
            .map(|m| if m.rdev() != 0 { (u64::MAX, m.rdev()) } else { (m.dev(), m.ino()) })
            .ok();
        if let Some(id) = id {
            if seen.contains(&id) {
                return Err(Error::usage(format!("target {name}"), "it is named twice", "name each target disk once"));
            }
            seen.push(id);
        }
        match t {
            Target::Disk(d) => check_disk(d, source, table, root_dev, &swap_devs, force)?,
            Target::Image(p) => check_image(p, table, force)?,
        }
    }
    Ok(())
}

fn check_disk(
    d: &Disk,
    source: &Source,
    table: &[Mount],
    root_dev: Option<(u32, u32)>,
    swaps: &[(u32, u32)],
    force: bool,
) -> Result<()> {
    let name = d.path.display().to_string();
    if let Some((ma, mi)) = root_dev {
        if d.holds(ma, mi) {
            return Err(Error::refused(&name, "it holds the running system", "choose a free disk (see altdisk lspv)"));
        }
    }
    if source.disks.contains(&d.name) {
        return Err(Error::refused(
            &name,
            "it holds the system being cloned",
            "choose another disk (see altdisk lspv)",
        ));
    }
    if d.read_only {
        return Err(Error::refused(&name, "it is read-only", "choose a writable disk"));
    }
    if let Some(m) = table.iter().find(|m| d.holds(m.major, m.minor)) {
        return Err(Error::refused(
            &name,
            format!("{} is mounted at {}", m.source, m.target.display()),
            "unmount it first if its data is no longer needed, or choose another disk",
        ));
    }
    if let Some(part) = d.partitions.iter().find(|p| swaps.contains(&(p.major, p.minor))) {
        return Err(Error::refused(
            &name,
            format!("{} is active swap", part.path.display()),
            "swapoff it first, or choose another disk",
        ));
    }
    if swaps.contains(&(d.major, d.minor)) {
        return Err(Error::refused(&name, "it is active swap", "swapoff it first, or choose another disk"));
    }
    let held = d.holders.iter().chain(d.partitions.iter().flat_map(|p| p.holders.iter())).next();
    if let Some(h) = held {
        let why = if h.starts_with("md") {
            format!("it is a RAID member (held by {h})")
        } else {
            format!("it is in use by {h} (LVM, encryption or multipath)")
        };
        return Err(Error::refused(&name, why, "deactivate what uses it first, or choose another disk"));
    }
    let mut soft: Option<String> = existing_clone(&d.path);
    // The disk itself, then each partition: LVM and RAID are final, other data needs --force.
    let devices = std::iter::once(("it".to_string(), d.path.clone()))
        .chain(d.partitions.iter().map(|p| (p.path.display().to_string(), p.path.clone())));
    for (what, dev) in devices {
        if let Some((hard, why)) = describe_signature(&what, &Probe::read(&dev)?) {
            if hard {
                return Err(Error::refused(
                    &name,
                    why,
                    "remove it from its volume group or array first, or choose another disk",
                ));
            }
            soft.get_or_insert(why);
        }
    }
    if let Some(why) = soft {
        if !force {
            return Err(Error::refused(&name, why, "if its contents can be destroyed, run again with --force"));
        }
    }
    Ok(())
}

fn check_image(p: &Path, table: &[Mount], force: bool) -> Result<()> {
    let name = p.display().to_string();
    let Ok(md) = std::fs::metadata(p) else { return Ok(()) };
    // An image already attached as a loop device may be in use through it.
    if let Some(dev) = loop_backing(p, md.dev(), md.ino()) {
        return Err(Error::refused(
            &name,
            format!("it is attached as {dev}"),
            format!("detach it (losetup -d {dev}) or name {dev} instead"),
        ));
    }
    let _ = table;
    if md.len() > 0 {
        let probe = Probe::read(p)?;
        if let Some(why) = existing_clone(p).or_else(|| describe_signature("it", &probe).map(|x| x.1)) {
            if !force {
                return Err(Error::refused(
                    &name,
                    why,
                    "if its contents can be destroyed, run again with --force, or name a new file",
                ));
            }
        }
    }
    Ok(())
}

/// "it holds altinst_rootvg (...)" when the disk carries an altdisk system.
fn existing_clone(p: &Path) -> Option<String> {
    match crate::discover::record::read(p)? {
        Ok(env) => {
            Some(format!("it holds the alternate system {} ({}, made {})", env.name, env.state.describe(), env.created))
        }
        Err(_) => Some("it holds a damaged altdisk record".into()),
    }
}

/// The loop device backed by the file with this device and inode, if any.
fn loop_backing(file: &Path, dev: u64, ino: u64) -> Option<String> {
    let rd = std::fs::read_dir("/sys/block").ok()?;
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("loop") {
            continue;
        }
        let Ok(bf) = std::fs::read_to_string(e.path().join("loop/backing_file")) else { continue };
        let bf = bf.trim().trim_end_matches(" (deleted)");
        if let Ok(m) = std::fs::metadata(bf) {
            if m.dev() == dev && m.ino() == ino {
                return Some(format!("/dev/{n}"));
            }
        } else if Path::new(bf) == file {
            return Some(format!("/dev/{n}"));
        }
    }
    None
}
