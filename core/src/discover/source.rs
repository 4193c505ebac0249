//! What is being cloned: the running system (`/` and every filesystem mounted from the disks
//! that hold it, AIX's "mounted filesystems of rootvg") or a root tree mounted at a directory
//! (`--source DIR`, with every block-device filesystem mounted below it). Other mounts
//! (proc, sys, tmpfs, network filesystems, other disks) are not cloned; the copy engine
//! leaves empty mount points for them. Swap areas are found so they can be recreated.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::discover::blockdev::{Disk, Probe};
use crate::discover::mounts::{self, Mount};
use crate::error::{Error, Result};

/// GPT type of a BIOS boot partition (GRUB's core image on BIOS machines).
pub const BIOS_BOOT_TYPE: &str = "21686148-6449-6e6f-744e-656564454649";
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

/// A logical volume the source keeps a filesystem or swap on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceLv {
    pub vg: String,
    pub lv: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceFs {
    /// Where the filesystem is mounted in the system being cloned: "/", "/boot", "/home".
    pub mountpoint: String,
    /// Where it can be read now ("/home", or "/mnt/old/home" with --source).
    pub path: PathBuf,
    pub device: PathBuf,
    pub major: u32,
    pub minor: u32,
    pub fstype: String,
    pub probe: Probe,
    /// Size of the device holding it.
    pub device_size: u64,
    pub used_bytes: u64,
    pub used_inodes: u64,
    pub read_only: bool,
    /// Other names of the device (kernel name, /dev/disk/by-* links) for fstab rewriting.
    pub paths: Vec<String>,
    /// Set when the filesystem lives on an LVM logical volume.
    #[serde(default)]
    pub lv: Option<SourceLv>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceSwap {
    pub device: PathBuf,
    pub size: u64,
    pub probe: Probe,
    pub paths: Vec<String>,
    #[serde(default)]
    pub lv: Option<SourceLv>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    /// "/" for the running system, else the --source directory.
    pub root: PathBuf,
    /// True when cloning the running system.
    pub live: bool,
    /// Whole disks holding the source filesystems, by kernel name.
    pub disks: Vec<String>,
    pub filesystems: Vec<SourceFs>,
    pub swaps: Vec<SourceSwap>,
    pub has_bios_boot: bool,
    pub hostname: String,
}

impl Source {
    pub fn root_fs(&self) -> &SourceFs {
        &self.filesystems[0]
    }

    pub fn esp(&self) -> Option<&SourceFs> {
        self.filesystems.iter().find(|f| is_esp(f))
    }
}

pub fn is_esp(f: &SourceFs) -> bool {
    f.fstype == "vfat"
        && (matches!(f.mountpoint.as_str(), "/boot/efi" | "/efi") || f.probe.parttype.as_deref() == Some(ESP_TYPE))
}

fn device_size(dev: &Path) -> u64 {
    std::fs::File::open(dev).and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))).unwrap_or(0)
}

/// Names under /dev/disk/by-* that point at `dev`, plus `dev` itself.
fn device_paths(dev: &Path) -> Vec<String> {
    let mut v = vec![dev.display().to_string()];
    let real = std::fs::canonicalize(dev).unwrap_or_else(|_| dev.to_path_buf());
    if real != dev {
        v.push(real.display().to_string());
    }
    for kind in ["by-id", "by-path", "by-uuid", "by-partuuid", "by-label", "by-partlabel", "by-diskseq"] {
        let dir = Path::new("/dev/disk").join(kind);
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if std::fs::canonicalize(e.path()).map(|p| p == real).unwrap_or(false) {
                v.push(e.path().display().to_string());
            }
        }
    }
    v
}

fn usage_of(path: &Path) -> Result<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| Error::io("measuring used space", path, e.into()))?;
    let used = (s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64;
    let inodes = (s.files() as u64).saturating_sub(s.files_free() as u64);
    Ok((used, inodes))
}

/// The LVM logical volume that is block device (major, minor), if it is one.
pub fn lvm_volume(major: u32, minor: u32) -> Result<Option<SourceLv>> {
    let uuid = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/dm/uuid")).unwrap_or_default();
    if !uuid.starts_with("LVM-") {
        return Ok(None);
    }
    let out = crate::cmd::Cmd::new("listing LVM logical volumes", "lvs")?
        .args([
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_name,lv_name,lv_size,lv_kernel_major,lv_kernel_minor",
        ])
        .run()?;
    Ok(parse_lvs(&out.stdout).into_iter().find(|(ma, mi, _)| (*ma, *mi) == (major, minor)).map(|(_, _, lv)| lv))
}

/// `lvs --reportformat json` rows as (major, minor, volume).
pub fn parse_lvs(json: &str) -> Vec<(u32, u32, SourceLv)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let mut out = Vec::new();
    for report in v["report"].as_array().into_iter().flatten() {
        for lv in report["lv"].as_array().into_iter().flatten() {
            let s = |k: &str| lv[k].as_str().unwrap_or("").trim().to_string();
            let (Ok(ma), Ok(mi), Ok(size)) =
                (s("lv_kernel_major").parse(), s("lv_kernel_minor").parse(), s("lv_size").parse())
            else {
                continue;
            };
            out.push((ma, mi, SourceLv { vg: s("vg_name"), lv: s("lv_name"), size }));
        }
    }
    out
}

/// The names LVM gives a logical volume.
fn lv_paths(lv: &SourceLv) -> Vec<String> {
    let dm = |s: &str| s.replace('-', "--");
    vec![format!("/dev/{}/{}", lv.vg, lv.lv), format!("/dev/mapper/{}-{}", dm(&lv.vg), dm(&lv.lv))]
}

fn to_fs(m: &Mount, mountpoint: String) -> Result<SourceFs> {
    let (used_bytes, used_inodes) = usage_of(&m.target)?;
    let device = PathBuf::from(&m.source);
    let lv = lvm_volume(m.major, m.minor)?;
    let mut paths = device_paths(&device);
    paths.extend(lv.iter().flat_map(lv_paths));
    Ok(SourceFs {
        lv,
        mountpoint,
        path: m.target.clone(),
        probe: Probe::read(&device)?,
        device_size: device_size(&device),
        paths,
        device,
        major: m.major,
        minor: m.minor,
        fstype: m.fstype.clone(),
        used_bytes,
        used_inodes,
        read_only: m.is_read_only(),
    })
}

/// The disks that hold device (major, minor): its own disk, or for a device-mapper device
/// (an LVM volume) the disks of the devices below it.
fn disks_of(disks: &[Disk], major: u32, minor: u32) -> Vec<&Disk> {
    disks.iter().filter(|d| d.holds(major, minor)).collect()
}

/// Find what to clone. `dir` None means the running system.
pub fn discover(dir: Option<&Path>, disks: &[Disk]) -> Result<Source> {
    let table = mounts::read()?;
    let live = dir.is_none();
    let root = match dir {
        None => PathBuf::from("/"),
        Some(d) => std::fs::canonicalize(d).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::not_found(
                format!("source directory {}", d.display()),
                "no such directory",
                "mount the system to clone there (its root, with its other filesystems below), or use --source-disk DISK",
            ),
            _ => Error::io("finding the source directory", d, e),
        })?,
    };
    let root_mount = mounts::mount_at(&table, &root).ok_or_else(|| {
        Error::usage(
            format!("source {}", root.display()),
            "no filesystem is mounted there",
            "mount the system's root filesystem at that directory (and its other filesystems below it) and try again",
        )
    })?;
    if !root_mount.is_block_backed() {
        return Err(Error::unsupported(
            format!("cloning a {} root filesystem ({})", root_mount.fstype, root_mount.source),
            ": altdisk clones systems whose root lives on a disk",
            "run altdisk on an installed system, or point --source at a mounted disk filesystem",
        ));
    }
    let mut src_disks: Vec<String> =
        disks_of(disks, root_mount.major, root_mount.minor).iter().map(|d| d.name.clone()).collect();
    let mut filesystems = vec![to_fs(root_mount, "/".into())?];
    let mut seen_devs = vec![(root_mount.major, root_mount.minor)];
    for m in mounts::below(&table, &root) {
        if !m.is_block_backed() {
            continue;
        }
        let on_rootvg = disks_of(disks, m.major, m.minor).iter().any(|d| src_disks.contains(&d.name));
        if live && !on_rootvg {
            continue;
        }
        let rel = m.target.strip_prefix(&root).unwrap_or(&m.target);
        let mountpoint = format!("/{}", rel.display());
        if seen_devs.contains(&(m.major, m.minor)) {
            return Err(Error::unsupported(
                format!("{} mounted again at {mountpoint}", m.source),
                " yet (several mounts of one filesystem, such as btrfs subvolumes @ and @home)",
                "clone with --source after mounting the filesystem once, or wait for subvolume-layout support",
            ));
        }
        seen_devs.push((m.major, m.minor));
        for d in disks_of(disks, m.major, m.minor) {
            if !src_disks.contains(&d.name) {
                src_disks.push(d.name.clone());
            }
        }
        filesystems.push(to_fs(m, mountpoint)?);
    }
    let mut swaps = Vec::new();
    if live {
        for sw in mounts::swaps()? {
            let Ok(md) = std::fs::metadata(&sw) else { continue };
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            if !md.file_type().is_block_device() {
                continue;
            }
            let (major, minor) = (nix::sys::stat::major(md.rdev()) as u32, nix::sys::stat::minor(md.rdev()) as u32);
            if disks_of(disks, major, minor).iter().any(|d| src_disks.contains(&d.name)) {
                let lv = lvm_volume(major, minor)?;
                let mut paths = device_paths(&sw);
                paths.extend(lv.iter().flat_map(lv_paths));
                swaps.push(SourceSwap { size: device_size(&sw), probe: Probe::read(&sw)?, paths, device: sw, lv });
            }
        }
    } else {
        swaps = swaps_from_fstab(&root, disks)?;
    }
    let has_bios_boot = disks.iter().filter(|d| src_disks.contains(&d.name)).any(|d| {
        d.partitions
            .iter()
            .any(|p| Probe::read(&p.path).ok().and_then(|q| q.parttype).as_deref() == Some(BIOS_BOOT_TYPE))
    });
    let hostname = std::fs::read_to_string(root.join("etc/hostname")).map(|s| s.trim().to_string()).unwrap_or_default();
    Ok(Source { root, live, disks: src_disks, filesystems, swaps, has_bios_boot, hostname })
}

/// For an offline source: swap partitions its fstab names that exist on this machine.
fn swaps_from_fstab(root: &Path, disks: &[Disk]) -> Result<Vec<SourceSwap>> {
    let Ok(text) = std::fs::read_to_string(root.join("etc/fstab")) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[0].starts_with('#') || f[2] != "swap" {
            continue;
        }
        let spec = mounts::unescape(f[0]);
        // Partitions, and whole devices that carry swap without a partition table.
        let candidates = disks.iter().flat_map(|d| {
            std::iter::once((d.path.clone(), d.size)).chain(d.partitions.iter().map(|p| (p.path.clone(), p.size)))
        });
        for (path, size) in candidates {
            let probe = Probe::read(&path)?;
            if probe.fstype.as_deref() != Some("swap") {
                continue;
            }
            let hit = match spec.split_once('=') {
                Some(("UUID", v)) => probe.uuid.as_deref().map(|u| u.eq_ignore_ascii_case(v)).unwrap_or(false),
                Some(("PARTUUID", v)) => probe.partuuid.as_deref().map(|u| u.eq_ignore_ascii_case(v)).unwrap_or(false),
                Some(("LABEL", v)) => probe.label.as_deref() == Some(v),
                Some(("PARTLABEL", v)) => probe.partlabel.as_deref() == Some(v),
                _ => std::fs::canonicalize(&spec).map(|p| p == path).unwrap_or(false),
            };
            if hit && !out.iter().any(|s: &SourceSwap| s.device == path) {
                out.push(SourceSwap { device: path.clone(), size, paths: device_paths(&path), probe, lv: None });
            }
        }
    }
    Ok(out)
}
