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
use crate::error::{Error, IoContext, Result};
use crate::job::Job;

fn running_disk(disks: &[Disk]) -> Result<Option<Disk>> {
    let t = mounts::read()?;
    let Some(root) = mounts::mount_at(&t, Path::new("/")) else { return Ok(None) };
    Ok(disks.iter().find(|d| d.holds(root.major, root.minor)).cloned())
}

/// Rename: the running system's record says rootvg, another that said rootvg says old_rootvg.
/// Every disk of the running system counts (a volume group may span several), recognised
/// by the record's id. A running system whose record stopped at the very last step of its
/// run (the boot order was written, the final record was not) is complete: it booted, so
/// its record is finished here. Returns what changed, for the journal.
pub fn names() -> Result<Vec<String>> {
    let disks = blockdev::list()?;
    let t = mounts::read()?;
    let root = mounts::mount_at(&t, Path::new("/")).map(|m| (m.major, m.minor));
    let records: Vec<(&Disk, record::BootEnv)> =
        disks.iter().filter_map(|d| Some((d, record::read(&d.path)?.ok()?))).collect();
    let running: Vec<uuid::Uuid> =
        records.iter().filter(|(d, _)| root.is_some_and(|(a, b)| d.holds(a, b))).map(|(_, e)| e.id).collect();
    let mut changed = Vec::new();
    for (d, mut env) in records {
        let is_running = running.contains(&env.id);
        let mut dirty = false;
        if is_running
            && env.state == record::State::Incomplete
            && env.phases_done.contains(&3)
            && env.step.as_deref() == Some(crate::discover::record::step::BOOT_ORDER)
        {
            env.state = record::State::Complete;
            env.step = None;
            env.note = None;
            changed.push(format!("{}: the record of {} finished at its first boot", d.name, env.name));
            dirty = true;
        }
        let new = if is_running && env.name != "rootvg" {
            Some("rootvg")
        } else if !is_running && env.name == "rootvg" {
            Some("old_rootvg")
        } else {
            None
        };
        if let Some(new) = new {
            changed.push(format!("{}: {} is now {new}", d.name, env.name));
            env.name = new.into();
            dirty = true;
        }
        if dirty {
            record::update(&d.path, &env)?;
        }
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

/// The units, in the order they run.
pub const UNITS: [&str; 3] = ["altdisk-names.service", "altdisk-commit.service", "altdisk-firstboot.service"];

/// Where a clone gets its own copy of the binary its units call, when it has none that works.
pub const CLONE_BINARY: &str = "/usr/local/lib/altdisk/altdisk";

/// What altdisk itself puts into every clone, as paths in the clone's system: its record
/// (`/etc/altdisk`), its own copy of altdisk, and its boot units with their enabling links.
/// A refresh leaves them when the source lacks them; verify expects them.
pub fn own_paths() -> Vec<String> {
    let mut v = vec!["/etc/altdisk".to_string(), "/usr/local/lib/altdisk".to_string()];
    for u in UNITS {
        v.push(format!("/etc/systemd/system/{u}"));
        v.push(format!("/etc/systemd/system/multi-user.target.wants/{u}"));
    }
    v
}

/// Run one boot hook (`altdisk boot-hook WHAT`, from the units). A failure is written to
/// [`crate::discover::roles::HOOK_FAILED`] (so `lspv` shows it) and returned, so the unit fails and the journal has
/// it; a success clears an older failure of the same hook.
pub fn run_hook(what: &str) -> Result<Vec<String>> {
    let r = match what {
        "names" => names(),
        "commit" => commit().map(|o| o.into_iter().collect()),
        "first-boot" => crate::write::customize::first_boot(Path::new("/")).map(|o| o.into_iter().collect()),
        other => {
            return Err(Error::usage(
                format!("boot-hook {other}"),
                "there is no such hook",
                "use names, commit or first-boot",
            ))
        }
    };
    let f = Path::new("/").join(crate::discover::roles::HOOK_FAILED);
    let prefix = format!("{what}: ");
    let kept: Vec<String> = std::fs::read_to_string(&f)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with(&prefix) && !l.is_empty())
        .map(String::from)
        .collect();
    let mut lines = kept;
    if let Err(e) = &r {
        lines.push(format!("{prefix}{e} ({})", crate::discover::record::now_rfc3339()));
    }
    if lines.is_empty() {
        let _ = std::fs::remove_file(&f);
    } else {
        if let Some(d) = f.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = std::fs::write(&f, lines.join("\n") + "\n");
    }
    r
}

/// The program a unit of the system at `root` runs, if the unit is there and enabled and the
/// program exists in that system and is executable.
fn working_unit(root: &Path, unit: &str) -> Option<PathBuf> {
    let text = ["etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"]
        .iter()
        .find_map(|d| std::fs::read_to_string(root.join(d).join(unit)).ok())?;
    let exe = text.lines().find_map(|l| l.trim().strip_prefix("ExecStart="))?.split_whitespace().next()?;
    let exe = exe.trim_start_matches(['-', '@', '+', '!', ':']);
    let inside = crate::write::customize::resolve_in(root, exe.trim_start_matches('/'), true).ok()?;
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::metadata(&inside).ok()?;
    let enabled = std::fs::symlink_metadata(root.join("etc/systemd/system/multi-user.target.wants").join(unit)).is_ok();
    (md.is_file() && md.permissions().mode() & 0o111 != 0 && enabled).then(|| PathBuf::from(exe))
}

/// Make sure the clone at `root` runs altdisk's boot units when it boots, calling a binary
/// that is in the clone and runs there. The clone keeps units that already work (a packaged
/// altdisk, or units installed on the source); otherwise it gets a copy of the running binary
/// at [`CLONE_BINARY`] and units that call it. The binary is then run once, chrooted in the
/// clone, so a copy that cannot run there is found now and not at the clone's first boot.
///
/// A clone without systemd cannot run the units: that is an error when `required` (the
/// trial boot, a first-boot script and the device reset depend on them), else a warning.
pub fn ensure_in_clone(root: &Path, required: bool, job: &Job) -> Result<Option<PathBuf>> {
    if !has_systemd(root) {
        let why = "the system has no systemd, so altdisk's boot units (rootvg/old_rootvg names, keeping a trial boot, the first-boot script) cannot run in it";
        if required {
            return Err(Error::unsupported(
                "a trial boot (--trial), first-boot script (-x) or device reset (-O)",
                format!(": {why}"),
                "leave those options out",
            ));
        }
        job.warn(format!("{why}; the clone will not name itself rootvg when booted"));
        return Ok(None);
    }
    if let Some(exe) = UNITS.iter().map(|u| working_unit(root, u)).collect::<Option<Vec<_>>>().and_then(|v| {
        let first = v.first().cloned()?;
        v.iter().all(|e| *e == first).then_some(first)
    }) {
        return Ok(Some(exe));
    }
    let me = std::env::current_exe().ctx("finding the altdisk binary", "/proc/self/exe")?;
    let dst = root.join(CLONE_BINARY.trim_start_matches('/'));
    if let Some(d) = dst.parent() {
        std::fs::create_dir_all(d).ctx("making the directory for altdisk in the clone", d)?;
    }
    let tmp = dst.with_extension("altdisk-new");
    std::fs::copy(&me, &tmp).ctx("copying altdisk into the clone", &tmp)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).ctx("making altdisk executable", &tmp)?;
    std::fs::rename(&tmp, &dst).ctx("copying altdisk into the clone", &dst)?;
    install_units(root, Path::new(CLONE_BINARY))?;
    crate::cmd::Cmd::in_root("checking that altdisk runs in the clone", root, CLONE_BINARY)?.arg("--version").run()?;
    job.info(format!("the clone runs altdisk's boot units with its own copy of altdisk ({CLONE_BINARY})"));
    Ok(Some(PathBuf::from(CLONE_BINARY)))
}

/// Whether the system at `root` boots with systemd.
pub fn has_systemd(root: &Path) -> bool {
    ["usr/lib/systemd/systemd", "lib/systemd/systemd"].iter().any(|p| std::fs::symlink_metadata(root.join(p)).is_ok())
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
