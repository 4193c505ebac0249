//! Operations on alternate systems that exist (AIX `alt_rootvg_op`): which system lives on
//! a disk (-q), wake it (mount at /alt_inst, -W), customise it (-C), rebuild its boot image
//! (-S -t), rename it (-v), remove it (-X: its disks become free, its boot entries go).
//! Systems are found through the record on their disks (see [`crate::discover::record`]); the
//! running system is never woken, renamed or removed.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::boot::bootloader::{self, RootIds};
use crate::boot::efi;
use crate::discover::blockdev::{self, Disk};
use crate::discover::boot::{self as bootinfo, Firmware};
use crate::discover::mounts;
use crate::discover::record::{self, BootEnv};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::systems::awake::{self, Awake};
use crate::write::fs::Mounted;
use crate::write::partition;

/// An alternate system: its record and its disks, in the record's order.
#[derive(Debug, Clone)]
pub struct System {
    pub env: BootEnv,
    pub disks: Vec<Disk>,
}

impl System {
    pub fn disk_names(&self) -> String {
        self.disks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(" ")
    }

    /// The device holding a filesystem of the system.
    pub fn device(&self, f: &record::EnvFs) -> Option<PathBuf> {
        match (&f.lv, &self.env.vg) {
            (Some(lv), Some(vg)) => Some(crate::write::lvm::lv_path(vg, lv)),
            _ => Some(partition::partition_path(&self.disks.get(f.disk)?.path, f.partition)),
        }
    }
}

fn disk_guid(d: &Disk) -> Option<Uuid> {
    crate::discover::gpt::read_gpt(&d.path).map(|g| Uuid::from_bytes_le(g.header.disk_guid))
}

fn assemble(env: BootEnv, all: &[Disk]) -> Result<System> {
    let mut disks = Vec::new();
    for (i, g) in env.disks.iter().enumerate() {
        match all.iter().find(|d| disk_guid(d) == Some(*g)) {
            Some(d) => disks.push(d.clone()),
            None => {
                return Err(Error::not_found(
                    format!("disk {} of {} (GPT disk GUID {g})", i + 1, env.name),
                    "it is not attached to this machine",
                    "attach all the disks of the system and try again",
                ))
            }
        }
    }
    Ok(System { env, disks })
}

/// The system whose record is on the named disk.
pub fn find_by_disk(name: &str) -> Result<System> {
    let all = blockdev::list()?;
    let d = match blockdev::resolve(name, &all)? {
        blockdev::Named::Disk(i) => &all[i],
        blockdev::Named::Image(p) => {
            return Err(Error::usage(
                format!("-d {}", p.display()),
                "it is not a disk",
                "attach the image with losetup and name the loop device",
            ))
        }
    };
    match record::read(&d.path) {
        Some(Ok(env)) => assemble(env, &all),
        Some(Err(e)) => Err(e),
        None => Err(Error::not_found(
            format!("altdisk system on {}", d.name),
            "the disk has no altdisk record",
            "see `altdisk lspv` for the disks that hold one",
        )),
    }
}

/// Every system with this name (usually one).
pub fn find_by_name(name: &str) -> Result<Vec<System>> {
    let all = blockdev::list()?;
    let mut out: Vec<System> = Vec::new();
    for d in &all {
        if let Some(Ok(env)) = record::read(&d.path) {
            if env.name == name && !out.iter().any(|s| s.env.id == env.id) {
                out.push(assemble(env, &all)?);
            }
        }
    }
    Ok(out)
}

/// Whether the system runs this machine now.
pub fn is_running(sys: &System) -> Result<bool> {
    let t = mounts::read()?;
    Ok(mounts::mount_at(&t, Path::new("/"))
        .map(|m| sys.disks.iter().any(|d| d.holds(m.major, m.minor)))
        .unwrap_or(false))
}

fn refuse_running(sys: &System, what: &str) -> Result<()> {
    if is_running(sys)? {
        return Err(Error::refused(
            format!("{} on {}", sys.env.name, sys.disk_names()),
            format!("it is the running system, which cannot be {what}"),
            "boot the other system first (bootlist), or choose an alternate system",
        ));
    }
    Ok(())
}

/// `alt_rootvg_op -q -d disk`: the name of the system on a disk, and its state.
pub fn query(disk: &str) -> Result<String> {
    let rows = crate::discover::roles::lspv()?;
    let all = blockdev::list()?;
    let d = match blockdev::resolve(disk, &all)? {
        blockdev::Named::Disk(i) => all[i].clone(),
        blockdev::Named::Image(p) => {
            return Err(Error::usage(format!("-d {}", p.display()), "it is not a disk", "name a disk"))
        }
    };
    let r = rows
        .into_iter()
        .find(|r| r.path == d.path)
        .ok_or_else(|| Error::not_found(format!("disk {disk}"), "it vanished", "try again"))?;
    use crate::discover::roles::Role;
    Ok(match (&r.role, &r.bootenv) {
        (Role::Rootvg | Role::OldRootvg, _) => r.role.to_string(),
        (_, Some(e)) => format!("{} ({})", e.name, e.state.describe()),
        _ => "none".into(),
    })
}

/// The device node of a system's LUKS container.
fn crypt_dev(sys: &System, c: &record::EnvCrypt) -> String {
    sys.disks
        .get(c.disk)
        .map(|d| partition::partition_path(&d.path, c.partition).display().to_string())
        .unwrap_or_default()
}

/// An encrypted system is used only once its LUKS containers are open: altdisk asks no
/// passphrase outside a clone run.
fn refuse_locked(sys: &System, what: &str) -> Result<()> {
    let locked: Vec<&record::EnvCrypt> =
        sys.env.crypts.iter().filter(|c| !crate::write::luks::is_open(&c.name)).collect();
    if locked.is_empty() {
        return Ok(());
    }
    Err(Error::refused(
        format!("{} on {}", sys.env.name, sys.disk_names()),
        format!("it is encrypted and cannot be {what} while its LUKS containers are locked"),
        format!(
            "unlock them first ({}), then run again",
            locked
                .iter()
                .map(|c| format!("cryptsetup open {} {}", crypt_dev(sys, c), c.name))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    ))
}

/// `alt_rootvg_op -W -d disk`: mount the system at `mount_at`. One woken system at a time.
pub fn wake(sys: &System, mount_at: &Path) -> Result<Vec<PathBuf>> {
    refuse_running(sys, "woken")?;
    let table = mounts::read()?;
    if mounts::mount_at(&table, mount_at).is_some() || !mounts::below(&table, mount_at).is_empty() {
        return Err(Error::refused(
            mount_at.display().to_string(),
            "another alternate system is awake there",
            "put it to sleep first (alt_rootvg_op -S)",
        ));
    }
    if let Some(m) = table.iter().find(|m| sys.disks.iter().any(|d| d.holds(m.major, m.minor))) {
        return Err(Error::refused(
            format!("{} on {}", sys.env.name, sys.disk_names()),
            format!("{} is already mounted at {}", m.source, m.target.display()),
            "unmount it first",
        ));
    }
    refuse_locked(sys, "woken")?;
    if let Some(vg) = &sys.env.vg {
        crate::write::lvm::activate(vg)?;
    }
    let mut fs = sys.env.filesystems.clone();
    fs.sort_by_key(|f| (f.mountpoint.matches('/').count(), f.mountpoint != "/"));
    let mut made = Vec::new();
    for f in &fs {
        let dev =
            sys.device(f).ok_or_else(|| Error::corrupt("altdisk record", format!("no device for {}", f.mountpoint)))?;
        let at = mount_at.join(f.mountpoint.trim_start_matches('/'));
        std::fs::create_dir_all(&at).map_err(|e| Error::io("creating a mount point", &at, e))?;
        let opts = f.subvol.as_ref().map(|s| format!("subvol={s}"));
        made.push(Mounted::mount(&dev, &at, &f.fstype, opts.as_deref())?);
    }
    let done: Vec<PathBuf> = made.iter().map(|m| m.target().to_path_buf()).collect();
    for m in made {
        m.keep();
    }
    awake::record(&Awake {
        mount_at: mount_at.to_path_buf(),
        loops: vec![],
        name: sys.env.name.clone(),
        disks: sys.disks.iter().map(|d| d.path.clone()).collect(),
        vg: sys.env.vg.clone(),
        // Opened by the admin (altdisk asks no passphrase when waking): left open.
        crypts: Vec::new(),
    })?;
    Ok(done)
}

/// The system awake at `mount_at`.
pub fn awake(mount_at: &Path) -> Result<System> {
    let a = awake::read(mount_at).ok_or_else(|| {
        Error::not_found(
            format!("alternate system at {}", mount_at.display()),
            "none is awake there",
            "wake one first: alt_rootvg_op -W -d DISK",
        )
    })?;
    let first = a.disks.first().ok_or_else(|| Error::corrupt("awake record", "it names no disk"))?;
    find_by_disk(&first.display().to_string())
}

/// Detect how the awake system boots (its own tools, its own ESP).
pub fn boot_setup(sys: &System, mount_at: &Path) -> Result<bootinfo::BootSetup> {
    let esp = sys
        .env
        .filesystems
        .iter()
        .find(|f| f.fstype == "vfat" && matches!(f.mountpoint.as_str(), "/boot/efi" | "/efi"))
        .map(|f| f.mountpoint.clone());
    bootinfo::detect(mount_at, Firmware::current(), esp.as_deref())
}

/// Old identities for a clone's kernel command line: its own root, as the clone has it.
pub fn root_ids(sys: &System) -> Result<RootIds> {
    let root = sys
        .env
        .filesystems
        .iter()
        .find(|f| f.mountpoint == "/")
        .ok_or_else(|| Error::corrupt("altdisk record", "it has no root filesystem"))?;
    Ok(RootIds { old: vec![], new: format!("UUID={}", root.uuid), subvol: root.subvol.clone() })
}

/// `alt_rootvg_op -S -t`: rebuild the initramfs and boot loader configuration of an awake
/// system (the boot list is not touched).
pub fn rebuild_boot(sys: &System, mount_at: &Path, job: &Job) -> Result<()> {
    let setup = boot_setup(sys, mount_at)?;
    let disks: Vec<&Path> = sys.disks.iter().map(|d| d.path.as_path()).collect();
    bootloader::install(mount_at, &setup, &disks, &root_ids(sys)?, "", job)
}

/// `alt_rootvg_op -v`: rename a system.
pub fn rename(sys: &System, new: &str) -> Result<()> {
    let ok = !new.is_empty() && new.len() <= 32 && new.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::usage(
            format!("name `{new}`"),
            "names are 1 to 32 letters, digits, `_`, `.` or `-`",
            "choose another name",
        ));
    }
    if new == "rootvg" && !is_running(sys)? {
        return Err(Error::usage("name rootvg", "it belongs to the running system", "choose another name"));
    }
    for d in &sys.disks {
        let mut e =
            record::read(&d.path).ok_or_else(|| Error::corrupt(format!("record on {}", d.name), "it vanished"))??;
        e.name = new.into();
        record::update(&d.path, &e)?;
    }
    Ok(())
}

/// `alt_rootvg_op -X`: remove a system. Its UEFI boot entries go, every signature on its
/// disks is wiped, and the disks show as free.
pub fn remove(sys: &System, job: &Job) -> Result<()> {
    refuse_running(sys, "removed")?;
    let table = mounts::read()?;
    if let Some(m) = table.iter().find(|m| sys.disks.iter().any(|d| d.holds(m.major, m.minor))) {
        return Err(Error::refused(
            format!("{} on {}", sys.env.name, sys.disk_names()),
            format!("{} is mounted at {}", m.source, m.target.display()),
            "put it to sleep first (alt_rootvg_op -S)",
        ));
    }
    // Boot entries pointing at any partition of its disks.
    if let Ok(vars) = efi::Efivarfs::system() {
        let m = efi::BootManager { vars };
        let guids: Vec<Uuid> = sys
            .disks
            .iter()
            .filter_map(|d| crate::discover::gpt::read_gpt(&d.path))
            .flat_map(|g| {
                g.iter()
                    .filter(|(_, p)| p.is_used())
                    .map(|(_, p)| Uuid::from_bytes_le(p.unique_partition_guid))
                    .collect::<Vec<_>>()
            })
            .collect();
        for e in m.entries()? {
            if e.option.hd.as_ref().map(|h| guids.contains(&h.partuuid)).unwrap_or(false) {
                m.remove(e.number)?;
                job.info(format!("removed UEFI boot entry {} ({})", efi::boot_name(e.number), e.option.description));
            }
        }
    }
    let locked = sys.env.crypts.iter().any(|c| !crate::write::luks::is_open(&c.name));
    match &sys.env.vg {
        // Inside locked LUKS containers the group is not seen: wiping their headers removes it.
        Some(vg) if locked => {
            job.info(format!("volume group {vg} is in locked LUKS containers: wiping them removes it"))
        }
        Some(vg) => {
            crate::write::lvm::remove(vg)?;
            job.info(format!("removed volume group {vg}"));
        }
        None => {}
    }
    for c in &sys.env.crypts {
        crate::write::luks::close(&c.name)?;
    }
    for d in &sys.disks {
        let parts: Vec<(u32, u64, u64)> = crate::discover::gpt::read_gpt(&d.path)
            .map(|g| {
                g.iter()
                    .filter(|(_, p)| p.is_used())
                    .map(|(n, p)| {
                        (n, p.starting_lba * g.sector_size, (p.ending_lba + 1 - p.starting_lba) * g.sector_size)
                    })
                    .collect()
            })
            .unwrap_or_default();
        partition::wipe(&d.path, d.size, &parts)?;
        partition::remove_partition_nodes(&d.path, parts.iter().map(|p| p.0))?;
        job.info(format!("{} is free", d.name));
    }
    Ok(())
}
