//! Filesystems and mounts on the target: mkfs with the identities the plan chose, mount
//! guards that unmount in Drop (so an error or a cancel never leaves the clone mounted),
//! and loop devices for image-file targets, detached in Drop unless kept.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::cmd::Cmd;
use crate::error::{Error, IoContext, Result};

/// The tools each filesystem type needs.
pub fn tools_for(fstype: &str) -> &'static [&'static str] {
    match fstype {
        "ext2" => &["mkfs.ext2"],
        "ext3" => &["mkfs.ext3"],
        "ext4" => &["mkfs.ext4"],
        "xfs" => &["mkfs.xfs"],
        "btrfs" => &["mkfs.btrfs"],
        "vfat" => &["mkfs.vfat"],
        "swap" => &["mkswap"],
        _ => &[],
    }
}

/// Make a filesystem with the given UUID and label.
pub fn mkfs(dev: &Path, fstype: &str, uuid: &str, label: Option<&str>) -> Result<()> {
    let desc = format!("making the {fstype} filesystem on {}", dev.display());
    let cmd = match fstype {
        "ext2" | "ext3" | "ext4" => {
            let c = Cmd::new(desc, &format!("mkfs.{fstype}"))?.args(["-F", "-q", "-U", uuid]);
            match label {
                Some(l) => c.arg("-L").arg(l),
                None => c,
            }
        }
        "xfs" => {
            let c = Cmd::new(desc, "mkfs.xfs")?.args(["-f", "-q", "-m"]).arg(format!("uuid={uuid}"));
            match label {
                Some(l) => c.arg("-L").arg(l),
                None => c,
            }
        }
        "btrfs" => {
            let c = Cmd::new(desc, "mkfs.btrfs")?.args(["-f", "-q", "-U", uuid]);
            match label {
                Some(l) => c.arg("-L").arg(l),
                None => c,
            }
        }
        "vfat" => {
            let c = Cmd::new(desc, "mkfs.vfat")?.args(["-F", "32", "-i"]).arg(uuid.replace('-', ""));
            match label {
                Some(l) => c.arg("-n").arg(l),
                None => c,
            }
        }
        "swap" => {
            let c = Cmd::new(desc, "mkswap")?.args(["-U", uuid]);
            match label {
                Some(l) => c.arg("-L").arg(l),
                None => c,
            }
        }
        other => {
            return Err(Error::unsupported(
                format!("making a {other} filesystem"),
                "",
                "choose ext4, xfs or btrfs in the layout",
            ));
        }
    };
    cmd.arg(dev).run().map(|_| ())
}

/// A mounted filesystem, unmounted when dropped unless [`Mounted::keep`] was called.
#[derive(Debug)]
pub struct Mounted {
    target: PathBuf,
    active: bool,
}

impl Mounted {
    pub fn mount(dev: &Path, target: &Path, fstype: &str, options: Option<&str>) -> Result<Mounted> {
        nix::mount::mount(Some(dev), target, Some(fstype), MsFlags::empty(), options)
            .ctx(&format!("mounting {} ({fstype})", dev.display()), target)?;
        Ok(Mounted { target: target.to_path_buf(), active: true })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Leave it mounted (the clone stays at /alt_inst after -P1).
    pub fn keep(mut self) {
        self.active = false;
    }

    pub fn unmount(mut self) -> Result<()> {
        self.active = false;
        unmount(&self.target)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.active {
            if let Err(e) = unmount(&self.target) {
                tracing::error!("{e}");
            }
        }
    }
}

/// Unmount, falling back to a lazy detach if something still holds it.
pub fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::Error::EBUSY) => {
            tracing::warn!("{} is busy; detaching it lazily", target.display());
            nix::mount::umount2(target, MntFlags::MNT_DETACH).ctx("unmounting", target)
        }
        Err(e) => Err(Error::io("unmounting", target, e.into())),
    }
}

/// A loop device over an image file, detached when dropped unless kept.
#[derive(Debug)]
pub struct LoopDev {
    pub dev: PathBuf,
    active: bool,
}

impl LoopDev {
    pub fn attach(file: &Path) -> Result<LoopDev> {
        let out = Cmd::new(format!("attaching {} as a loop device", file.display()), "losetup")?
            .args(["--find", "--show", "--partscan"])
            .arg(file)
            .run()?;
        let dev = PathBuf::from(out.stdout.trim());
        if !dev.starts_with("/dev/") {
            return Err(Error::corrupt("losetup output", format!("`{}` is not a device", out.stdout.trim())));
        }
        Ok(LoopDev { dev, active: true })
    }

    pub fn keep(mut self) -> PathBuf {
        self.active = false;
        std::mem::take(&mut self.dev)
    }
}

pub fn detach_loop(dev: &Path) -> Result<()> {
    Cmd::new(format!("detaching {}", dev.display()), "losetup")?.arg("-d").arg(dev).run().map(|_| ())
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        if self.active {
            if let Err(e) = detach_loop(&self.dev) {
                tracing::error!("{e}");
            }
        }
    }
}
