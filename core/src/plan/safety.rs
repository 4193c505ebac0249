//! The refusals. A target is written only if it is a whole disk (or image file) the user
//! named, that does not hold the running system or the source, has nothing mounted, no active
//! swap, is no LVM physical volume, RAID member or otherwise held by the device mapper, and
//! carries no partition table or filesystem signature (`--force` overrides only that last
//! one). Each refusal is one line: what, why, and what to do.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::discover::blockdev::Disk;
use crate::discover::identity;
use crate::discover::mounts::{self, Mount};
use crate::discover::roles::{self, Usage};
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

/// Check every target, failing on the first that must not be written.
pub fn check(targets: &[Target], source: &Source, table: &[Mount], swaps: &[PathBuf], force: bool) -> Result<()> {
    let root_dev = mounts::mount_at(table, Path::new("/")).map(|m| (m.major, m.minor));
    let swap_devs = roles::swap_devices(swaps);
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
    let u = roles::usage(d, &source.disks, table, root_dev, swaps)?;
    if u == Usage::Free || (force && u.forceable()) {
        return Ok(());
    }
    Err(Error::refused(d.path.display().to_string(), u.why(), u.todo()))
}

fn check_image(p: &Path, table: &[Mount], force: bool) -> Result<()> {
    let name = p.display().to_string();
    let Ok(md) = std::fs::metadata(p) else { return Ok(()) };
    // An image already attached as a loop device may be in use through it.
    if let Some(dev) = identity::loops_over(p).into_iter().next() {
        let dev = dev.display();
        return Err(Error::refused(
            &name,
            format!("it is attached as {dev}"),
            format!("detach it (losetup -d {dev}) or name {dev} instead"),
        ));
    }
    let _ = table;
    if md.len() > 0 {
        let u = roles::image_usage(p)?;
        if u != Usage::Free && !(force && u.forceable()) {
            return Err(Error::refused(
                &name,
                u.why(),
                "if its contents can be destroyed, run again with --force, or name a new file",
            ));
        }
    }
    Ok(())
}

/// The mount point must be an absolute path to an empty directory (or nothing yet) with
/// nothing mounted on or below it.
pub fn check_mount_at(dir: &Path) -> Result<()> {
    if !dir.is_absolute() {
        return Err(Error::usage(
            format!("mount point {}", dir.display()),
            "it is not an absolute path",
            "give a full path (--mount-at /alt_inst)",
        ));
    }
    if dir == Path::new("/") {
        return Err(Error::usage("mount point /", "it is the running system's root", "choose an empty directory"));
    }
    match std::fs::symlink_metadata(dir) {
        Ok(md) if md.file_type().is_symlink() => {
            return Err(Error::usage(
                format!("mount point {}", dir.display()),
                "it is a symbolic link",
                "give the directory it points to, or another empty directory",
            ))
        }
        Ok(md) if !md.is_dir() => {
            return Err(Error::usage(
                format!("mount point {}", dir.display()),
                "it exists and is not a directory",
                "choose an empty directory (--mount-at DIR)",
            ))
        }
        _ => {}
    }
    let table = mounts::read()?;
    if mounts::mount_at(&table, dir).is_some() || !mounts::below(&table, dir).is_empty() {
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
