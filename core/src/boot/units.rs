//! What runs when a system boots (from systemd units altdisk installs, present in every
//! clone because they are part of the copied system): the running system calls itself
//! `rootvg` and a former one `old_rootvg`, flipping on each switch; a trial boot that came
//! up healthy makes the clone permanent in the UEFI boot order; a first-boot script (-x)
//! runs once.

use std::path::{Path, PathBuf};

use crate::boot::efi;
use crate::discover::blockdev::{self, Disk};
use crate::discover::mounts;
use crate::discover::record;
use crate::error::{IoContext, Result};

fn running_disk(disks: &[Disk]) -> Result<Option<Disk>> {
    let t = mounts::read()?;
    let Some(root) = mounts::mount_at(&t, Path::new("/")) else { return Ok(None) };
    Ok(disks.iter().find(|d| d.holds(root.major, root.minor)).cloned())
}

/// Rename: the running system's record says rootvg, another that said rootvg says old_rootvg.
/// Returns what changed, for the journal.
pub fn names() -> Result<Vec<String>> {
    let disks = blockdev::list()?;
    let running = running_disk(&disks)?;
    let mut changed = Vec::new();
    for d in &disks {
        let Some(Ok(mut env)) = record::read(&d.path) else { continue };
        let is_running = running.as_ref().map(|r| r.path == d.path).unwrap_or(false);
        let new = if is_running && env.name != "rootvg" {
            "rootvg"
        } else if !is_running && env.name == "rootvg" {
            "old_rootvg"
        } else {
            continue;
        };
        changed.push(format!("{}: {} is now {new}", d.name, env.name));
        env.name = new.into();
        record::update(&d.path, &env)?;
    }
    Ok(changed)
}

/// After a healthy trial boot of a clone, put its entry first in BootOrder.
pub fn commit() -> Result<Option<String>> {
    let disks = blockdev::list()?;
    let Some(d) = running_disk(&disks)? else { return Ok(None) };
    let Some(Ok(mut env)) = record::read(&d.path) else { return Ok(None) };
    let (true, Some(n)) = (env.trial, env.boot_entry) else { return Ok(None) };
    let m = efi::BootManager { vars: efi::Efivarfs::system()? };
    if m.current()? != Some(n) {
        return Ok(None);
    }
    m.put_first(&[n])?;
    env.trial = false;
    record::update(&d.path, &env)?;
    Ok(Some(format!(
        "trial boot of {} on {} succeeded: {} is now first in the boot order",
        env.name,
        d.name,
        efi::boot_name(n)
    )))
}

fn unit_firstboot(exe: &Path) -> String {
    format!(
        "[Unit]\nDescription=altdisk: run the clone's first-boot script (-x) once\n\
         After=local-fs.target remote-fs.target\nBefore=ssh.service sshd.service\n\
         ConditionPathExists=/var/lib/altdisk/firstboot/pending\n\n\
         [Service]\nType=oneshot\nExecStart={} boot-hook first-boot\n\n[Install]\nWantedBy=multi-user.target\n",
        exe.display()
    )
}

fn unit_names(exe: &Path) -> String {
    format!(
        "[Unit]\nDescription=altdisk: name this system rootvg and a former one old_rootvg\nAfter=local-fs.target\n\n\
         [Service]\nType=oneshot\nExecStart={} boot-hook names\n\n[Install]\nWantedBy=multi-user.target\n",
        exe.display()
    )
}

fn unit_commit(exe: &Path) -> String {
    format!(
        "[Unit]\nDescription=altdisk: keep a trial boot that came up healthy\n\
         After=multi-user.target boot-complete.target altdisk-names.service\n\n\
         [Service]\nType=oneshot\nExecStart={} boot-hook commit\n\n[Install]\nWantedBy=multi-user.target\n",
        exe.display()
    )
}

/// Install and enable the boot units in the system at `root` (usually "/"), for the binary
/// at `exe`. Enabling is done with the symlinks systemctl would make, so it works offline.
pub fn install_units(root: &Path, exe: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("etc/systemd/system");
    let wants = dir.join("multi-user.target.wants");
    std::fs::create_dir_all(&wants).ctx("creating", &wants)?;
    let mut made = Vec::new();
    for (name, text) in [
        ("altdisk-names.service", unit_names(exe)),
        ("altdisk-commit.service", unit_commit(exe)),
        ("altdisk-firstboot.service", unit_firstboot(exe)),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).ctx("writing the unit", &p)?;
        let link = wants.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new("/etc/systemd/system").join(name), &link)
            .ctx("enabling the unit", &link)?;
        made.push(p);
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_enabled_units() {
        let root = std::env::temp_dir().join(format!("altdisk-units-{}", uuid::Uuid::new_v4()));
        let made = install_units(&root, Path::new("/usr/local/sbin/altdisk")).unwrap();
        assert_eq!(made.len(), 3);
        let t = std::fs::read_to_string(root.join("etc/systemd/system/altdisk-names.service")).unwrap();
        assert!(t.contains("ExecStart=/usr/local/sbin/altdisk boot-hook names"));
        let l =
            std::fs::read_link(root.join("etc/systemd/system/multi-user.target.wants/altdisk-commit.service")).unwrap();
        assert_eq!(l, PathBuf::from("/etc/systemd/system/altdisk-commit.service"));
        install_units(&root, Path::new("/usr/local/sbin/altdisk")).unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }
}
