//! Mounting a system that is not running the way it mounts itself: its root filesystem, then
//! what its own `/etc/fstab` names on this machine's disks (`/boot`, `/boot/efi`, `/home`...),
//! below a directory. Read-only for looking at it or cloning it offline (no journal is
//! replayed, nothing is written to its disks), read-write for repairing it. Every mount is a
//! guard: dropped, it is undone.

use std::path::{Path, PathBuf};

use crate::discover::blockdev::{self, Probe};
use crate::discover::mounts;
use crate::error::{Error, IoContext, Result};
use crate::write::fs::Mounted;

/// A system mounted below `root`.
pub struct SystemMount {
    pub root: PathBuf,
    /// Deepest last; unmounted in reverse.
    mounts: Vec<Mounted>,
    /// What was mounted where, for the caller to say.
    pub mounted: Vec<(String, PathBuf)>,
}

/// Mount options that, with the read-only flag, read a filesystem without changing a byte
/// of it (no journal replayed).
pub(crate) fn read_only_options(fstype: &str) -> &'static str {
    match fstype {
        "ext3" | "ext4" => "noload",
        "xfs" => "norecovery",
        "btrfs" => "rescue=nologreplay",
        _ => "",
    }
}

/// Whether an ext3/ext4 filesystem has a journal waiting to be replayed (it was not
/// unmounted cleanly): read without replaying it, its newest changes are missing.
pub fn needs_recovery(dev: &Path, fstype: &str) -> bool {
    if !matches!(fstype, "ext3" | "ext4") {
        return false;
    }
    crate::cmd::Cmd::new(format!("reading the superblock of {}", dev.display()), "dumpe2fs")
        .and_then(|c| c.arg("-h").arg(dev).run())
        .is_ok_and(|o| o.stdout.lines().any(|l| l.starts_with("Filesystem features:") && l.contains("needs_recovery")))
}

/// The device an fstab source names (`UUID=`, `PARTUUID=`, `LABEL=`, `PARTLABEL=`, a path),
/// among this machine's partitions and logical volumes.
fn resolve_spec(spec: &str) -> Option<PathBuf> {
    let (key, value) = match spec.split_once('=') {
        Some((k, v)) if ["UUID", "PARTUUID", "LABEL", "PARTLABEL"].contains(&k) => (k, v.trim_matches('"')),
        _ => {
            let p = PathBuf::from(spec);
            return std::fs::canonicalize(&p).ok().filter(|c| blockdev::dev_numbers(c).is_some());
        }
    };
    let disks = blockdev::list().ok()?;
    let matches = |p: &Probe| match key {
        "UUID" => p.uuid.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(value)),
        "PARTUUID" => p.partuuid.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(value)),
        "LABEL" => p.label.as_deref() == Some(value),
        _ => p.partlabel.as_deref() == Some(value),
    };
    let mut found = Vec::new();
    for d in &disks {
        for part in &d.partitions {
            if Probe::read(&part.path).is_ok_and(|p| matches(&p)) {
                found.push(part.path.clone());
            }
        }
    }
    // Two devices with one identity (a clone made by another tool): not for us to pick.
    (found.len() == 1).then(|| found.remove(0))
}

/// A line of fstab that this system mounts at boot from a local disk.
struct FstabLine {
    spec: String,
    mountpoint: String,
    fstype: String,
    options: String,
}

fn fstab_lines(text: &str) -> Vec<FstabLine> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| FstabLine {
                spec: mounts::unescape(f[0]),
                mountpoint: mounts::unescape(f[1]),
                fstype: f[2].to_string(),
                options: f.get(3).unwrap_or(&"defaults").to_string(),
            })
        })
        .filter(|l| {
            l.mountpoint.starts_with('/')
                && l.mountpoint != "/"
                && matches!(l.fstype.as_str(), "ext2" | "ext3" | "ext4" | "xfs" | "btrfs" | "vfat")
                && !l.options.split(',').any(|o| o == "noauto")
        })
        .collect()
}

impl SystemMount {
    /// Mount the system whose root filesystem is on `dev` at `at` (an empty directory, made
    /// if missing), then its other local filesystems as its fstab says, parents first.
    pub fn mount(dev: &Path, at: &Path, read_only: bool) -> Result<SystemMount> {
        std::fs::create_dir_all(at).ctx("making the mount point", at)?;
        let probe = Probe::read(dev)?;
        let fstype = probe.fstype.clone().ok_or_else(|| {
            Error::not_found(
                format!("filesystem on {}", dev.display()),
                "no filesystem was found on it",
                "name the root partition",
            )
        })?;
        let opts = |t: &str, extra: Option<&str>| {
            let base = if read_only { read_only_options(t).to_string() } else { String::new() };
            match (base.is_empty(), extra) {
                (true, None) => None,
                (true, Some(e)) => Some(e.to_string()),
                (false, None) => Some(base),
                (false, Some(e)) => Some(format!("{base},{e}")),
            }
        };
        let mut sm = SystemMount { root: at.to_path_buf(), mounts: Vec::new(), mounted: Vec::new() };
        sm.mounts.push(Mounted::mount_with(dev, at, &fstype, opts(&fstype, None).as_deref(), read_only)?);
        sm.mounted.push((dev.display().to_string(), at.to_path_buf()));
        let fstab = std::fs::read_to_string(at.join("etc/fstab")).unwrap_or_default();
        let mut lines = fstab_lines(&fstab);
        lines.sort_by_key(|l| l.mountpoint.matches('/').count());
        for l in lines {
            let Some(d) = resolve_spec(&l.spec) else { continue };
            let target = at.join(l.mountpoint.trim_start_matches('/'));
            if !target.is_dir() {
                continue;
            }
            let subvol = l.options.split(',').find(|o| o.starts_with("subvol=")).map(String::from);
            sm.mounts.push(Mounted::mount_with(
                &d,
                &target,
                &l.fstype,
                opts(&l.fstype, subvol.as_deref()).as_deref(),
                read_only,
            )?);
            sm.mounted.push((d.display().to_string(), target));
        }
        Ok(sm)
    }

    /// Unmount everything, deepest first.
    pub fn unmount(mut self) -> Result<()> {
        let mut first = None;
        while let Some(m) = self.mounts.pop() {
            if let Err(e) = m.unmount() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for SystemMount {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            drop(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_lines_a_system_mounts_itself() {
        let t = "UUID=a / ext4 errors=remount-ro 0 1\n\
                 UUID=b /boot ext4 defaults 0 2\n\
                 UUID=C-D /boot/efi vfat umask=0077 0 1\n\
                 UUID=e none swap sw 0 0\n\
                 tmpfs /tmp tmpfs defaults 0 0\n\
                 LABEL=data /srv/my\\040data xfs noauto 0 0\n\
                 UUID=f /home btrfs subvol=@home 0 0 # comment\n";
        let l = fstab_lines(t);
        let mp: Vec<&str> = l.iter().map(|l| l.mountpoint.as_str()).collect();
        assert_eq!(mp, vec!["/boot", "/boot/efi", "/home"]);
        assert_eq!(l[2].options, "subvol=@home");
        assert_eq!(read_only_options("ext4"), "noload");
        assert_eq!(read_only_options("vfat"), "");
    }
}
