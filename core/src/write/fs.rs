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

/// Make a filesystem with the given UUID and label; `inodes`: room for at least that many
/// files where the type fixes it when made (ext: the inode count; xfs: the share of space
/// inodes may take).
pub fn mkfs(dev: &Path, fstype: &str, uuid: &str, label: Option<&str>, inodes: Option<u64>) -> Result<()> {
    let desc = format!("making the {fstype} filesystem on {}", dev.display());
    let cmd = match fstype {
        "ext2" | "ext3" | "ext4" => {
            let mut c = Cmd::new(desc, &format!("mkfs.{fstype}"))?.args(["-F", "-q", "-U", uuid]);
            if let Some(n) = inodes {
                c = c.arg("-N").arg(n.to_string());
            }
            match label {
                Some(l) => c.arg("-L").arg(l),
                None => c,
            }
        }
        "xfs" => {
            let mut c = Cmd::new(desc, "mkfs.xfs")?.args(["-f", "-q", "-m"]).arg(format!("uuid={uuid}"));
            if let Some(n) = inodes {
                let size = device_size(dev).max(1);
                // 512-byte inodes, with room to spare, as a percentage of the space.
                let pct = (n * 512 * 100).div_ceil(size) + 5;
                c = c.arg("-i").arg(format!("maxpct={}", pct.clamp(25, 100)));
            }
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

fn device_size(dev: &Path) -> u64 {
    std::fs::File::open(dev).and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))).unwrap_or(0)
}

/// A mounted filesystem, unmounted when dropped unless [`Mounted::keep`] was called.
#[derive(Debug)]
pub struct Mounted {
    target: PathBuf,
    active: bool,
}

impl Mounted {
    pub fn mount(dev: &Path, target: &Path, fstype: &str, options: Option<&str>) -> Result<Mounted> {
        Mounted::mount_with(dev, target, fstype, options, false)
    }

    /// Mount, read-only when asked (the kernel's flag, not an option string).
    pub fn mount_with(
        dev: &Path,
        target: &Path,
        fstype: &str,
        options: Option<&str>,
        read_only: bool,
    ) -> Result<Mounted> {
        let flags = if read_only { MsFlags::MS_RDONLY } else { MsFlags::empty() };
        let options = options.filter(|o| !o.is_empty());
        nix::mount::mount(Some(dev), target, Some(fstype), flags, options)
            .ctx(&format!("mounting {} ({fstype})", dev.display()), target)?;
        Ok(Mounted { target: target.to_path_buf(), active: true })
    }

    /// Take charge of a filesystem already mounted at `target` (a clone left awake), so it is
    /// unmounted on failure like one this run mounted.
    pub fn adopt(target: &Path) -> Mounted {
        Mounted { target: target.to_path_buf(), active: true }
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

    /// Take charge of a loop device attached earlier (a clone left awake).
    pub fn adopt(dev: &Path) -> LoopDev {
        LoopDev { dev: dev.to_path_buf(), active: true }
    }

    pub fn keep(mut self) -> PathBuf {
        self.active = false;
        std::mem::take(&mut self.dev)
    }
}

/// Detach a loop device. The kernel defers a detach while something still has the device
/// open (a probe by udev or blkid): wait a little for it, so "detached" means gone.
pub fn detach_loop(dev: &Path) -> Result<()> {
    Cmd::new(format!("detaching {}", dev.display()), "losetup")?.arg("-d").arg(dev).run()?;
    let Some(name) = dev.file_name() else { return Ok(()) };
    let backing = Path::new("/sys/block").join(name).join("loop/backing_file");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while backing.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if backing.exists() {
        tracing::warn!("{} is still open somewhere; the kernel detaches it when it is closed", dev.display());
    }
    Ok(())
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

/// Flush a mounted filesystem and check that every write reached its device: `syncfs`
/// reports writeback errors since the filesystem was mounted, and the filesystem's own
/// error state (ext4's error count, a remount read-only after errors) tells of failures
/// that were seen earlier and written around. A write that succeeded into the page cache
/// proves nothing until this passes.
pub fn flush_check(mount: &Path) -> Result<()> {
    let f = std::fs::File::open(mount).ctx("opening the clone's filesystem to flush it", mount)?;
    if let Err(e) = rustix::fs::syncfs(&f) {
        return Err(Error::TargetFailed {
            what: format!("flushing the clone's filesystem at {}", mount.display()),
            why: format!("{}: writes did not reach the disk", std::io::Error::from(e)),
            todo: "check the target disk (dmesg, smartctl) and its free space, then run again with --force or choose another disk"
                .into(),
        });
    }
    use std::os::unix::fs::MetadataExt;
    let md = f.metadata().ctx("checking the clone's filesystem", mount)?;
    let (major, minor) = (nix::sys::stat::major(md.dev()), nix::sys::stat::minor(md.dev()));
    let name = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if let Some(name) = name {
        let count = std::fs::read_to_string(format!("/sys/fs/ext4/{name}/errors_count"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if count > 0 {
            return Err(Error::TargetFailed {
                what: format!("the clone's filesystem at {} ({name})", mount.display()),
                why: format!("it recorded {count} errors while being written (see dmesg)"),
                todo: "check the target disk (dmesg, smartctl), then run again with --force or choose another disk"
                    .into(),
            });
        }
    }
    let table = crate::discover::mounts::read()?;
    if let Some(m) = crate::discover::mounts::mount_at(&table, mount) {
        if m.is_read_only() || m.super_options.split(',').any(|o| o == "ro") {
            return Err(Error::TargetFailed {
                what: format!("the clone's filesystem at {}", mount.display()),
                why: "it went read-only after write errors (see dmesg)".into(),
                todo: "check the target disk (dmesg, smartctl), then run again with --force or choose another disk"
                    .into(),
            });
        }
    }
    Ok(())
}

/// fsync a device or file: what is still in its page cache goes to its storage, and a
/// failure of earlier writeback is reported.
pub fn fsync_path(path: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new().read(true).open(path).ctx("opening to flush", path)?;
    f.sync_all().map_err(|e| Error::TargetFailed {
        what: format!("flushing {}", path.display()),
        why: format!("{e}: writes did not reach it"),
        todo: "check the target (dmesg, smartctl, free space where an image file lives), then run again with --force"
            .into(),
    })
}
