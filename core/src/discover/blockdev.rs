//! Block device discovery: which disks exist, what their partitions hold, and how a user's
//! name for a disk (`sdb`, `/dev/sdb`, `/dev/disk/by-id/...`, `hdisk1`) maps to one device.
//!
//! Topology comes from `lsblk -J` (sysfs, works without udevd); identities (filesystem type,
//! UUID, label, partition table) come from `blkid -p`, which probes the device itself, so
//! they are right even where the udev database is empty (rescue systems, containers, CI).
//! The `hdiskN` aliases number whole disks in a stable order: real disks by kernel name,
//! then loop devices by number.

use std::path::{Path, PathBuf};

pub use crate::discover::disk::{Disk, Partition, Probe};

use crate::cmd::Cmd;
use crate::error::{Error, Result};

impl Probe {
    /// Probe a device (or image file) for signatures: what udev found, else `blkid -p`.
    /// Nothing found is an empty probe.
    pub fn read(dev: &Path) -> Result<Probe> {
        if let Some(p) = crate::discover::udevdb::probe(dev) {
            return Ok(p);
        }
        Self::read_blkid(dev)
    }

    /// Probe with `blkid -p`, which reads the device itself.
    pub fn read_blkid(dev: &Path) -> Result<Probe> {
        let (code, out) = Cmd::new(format!("probing {}", dev.display()), "blkid")?
            .args(["-p", "-o", "export"])
            .arg(dev)
            .run_code()?;
        match code {
            0 => Ok(Probe::parse_export(&out.stdout)),
            // 2: no signature found.
            2 => Ok(Probe::default()),
            _ => Err(Error::Command {
                description: format!("probing {}", dev.display()),
                command: format!("blkid -p -o export {}", dev.display()),
                status: format!("exited with status {code}"),
                stderr: format!(": {}", out.stderr.trim()),
            }),
        }
    }
}

fn holders_of(name: &str) -> Vec<String> {
    let dir = Path::new("/sys/class/block").join(name).join("holders");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The device (major, minor) holding the filesystem with this UUID, if any (`blkid -U`).
pub fn device_with_uuid(uuid: &str) -> Option<(u32, u32)> {
    let (code, out) = Cmd::new("finding a filesystem by UUID", "blkid").ok()?.args(["-U", uuid]).run_code().ok()?;
    if code != 0 {
        return None;
    }
    dev_numbers(Path::new(out.stdout.trim()))
}

/// The (major, minor) of a block device node; None for anything else.
pub fn dev_numbers(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::metadata(path).ok()?;
    md.file_type()
        .is_block_device()
        .then(|| (nix::sys::stat::major(md.rdev()) as u32, nix::sys::stat::minor(md.rdev()) as u32))
}

/// Number disks hdisk0.. : real disks by kernel name (natural order), then loop devices.
fn assign_aliases(disks: &mut [Disk]) {
    fn key(d: &Disk) -> (bool, String, u64, String) {
        let digits: String =
            d.name.chars().rev().take_while(|c| c.is_ascii_digit()).collect::<Vec<_>>().into_iter().rev().collect();
        let stem = d.name[..d.name.len() - digits.len()].to_string();
        (d.is_loop, stem.clone(), digits.parse().unwrap_or(0), d.name.clone())
    }
    let mut order: Vec<usize> = (0..disks.len()).collect();
    order.sort_by_key(|&i| key(&disks[i]));
    for (n, i) in order.into_iter().enumerate() {
        disks[i].alias = format!("hdisk{n}");
    }
    disks.sort_by_key(key);
}

/// All whole disks of this machine (and attached loop devices), with partitions and holders,
/// from udev (see [`crate::discover::udevdb`]).
pub fn list() -> Result<Vec<Disk>> {
    let mut disks = crate::discover::udevdb::disks()?;
    assign_aliases(&mut disks);
    for d in &mut disks {
        d.holders = holders_of(&d.name);
        for p in &mut d.partitions {
            p.holders = holders_of(&p.name);
        }
    }
    Ok(disks)
}

/// How the user named a target, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// A whole disk, by its index in the list.
    Disk(usize),
    /// A regular file (existing or to be created) that will hold a disk image.
    Image(PathBuf),
}

/// Resolve `sdb`, `/dev/sdb`, `/dev/disk/by-id/..`, `hdisk1` or an image file path.
pub fn resolve(name: &str, disks: &[Disk]) -> Result<Named> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::usage(
            "target disk",
            "an empty name was given",
            "name a disk such as sdb, /dev/sdb or hdisk1",
        ));
    }
    if let Some(i) = disks.iter().position(|d| d.alias == name || d.name == name) {
        return Ok(Named::Disk(i));
    }
    let p = if name.starts_with('/') || name.starts_with('.') || name.contains('/') {
        PathBuf::from(name)
    } else {
        // A bare name that is no disk: maybe a partition, or a typo.
        if disks.iter().any(|d| d.partitions.iter().any(|p| p.name == name)) {
            return Err(Error::usage(
                format!("target `{name}`"),
                "it is a partition, and altdisk writes whole disks",
                "name the disk that holds it (see altdisk lspv)",
            ));
        }
        return Err(Error::not_found(
            format!("disk `{name}`"),
            "no such disk or hdisk alias",
            "see `altdisk lspv` for the disks of this machine",
        ));
    };
    let meta = std::fs::metadata(&p);
    match meta {
        Ok(m) => {
            use std::os::unix::fs::FileTypeExt;
            if m.file_type().is_block_device() {
                let real = std::fs::canonicalize(&p).map_err(|e| Error::io("resolving the target", &p, e))?;
                if let Some(i) = disks.iter().position(|d| d.path == real) {
                    return Ok(Named::Disk(i));
                }
                if disks.iter().any(|d| d.partitions.iter().any(|q| q.path == real)) {
                    return Err(Error::usage(
                        format!("target {}", p.display()),
                        "it is a partition, and altdisk writes whole disks",
                        "name the disk that holds it (see altdisk lspv)",
                    ));
                }
                Err(Error::usage(
                    format!("target {}", p.display()),
                    "it is a block device that is not a whole disk",
                    "name a whole disk (see altdisk lspv)",
                ))
            } else if m.is_file() {
                Ok(Named::Image(p))
            } else {
                Err(Error::usage(
                    format!("target {}", p.display()),
                    "it is neither a disk nor a regular file",
                    "name a disk or the path of an image file",
                ))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if p.starts_with("/dev") {
                return Err(Error::not_found(
                    format!("disk {}", p.display()),
                    "no such device",
                    "see `altdisk lspv` for the disks of this machine",
                ));
            }
            let parent = p.parent().filter(|x| !x.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(Error::not_found(
                    format!("directory {}", parent.display()),
                    format!("the image file {} would be created there", p.display()),
                    "create the directory or name another path",
                ));
            }
            Ok(Named::Image(p))
        }
        Err(e) => Err(Error::io("looking at the target", &p, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, major: u32, minor: u32, parts: &[(&str, u32)]) -> Disk {
        Disk {
            name: name.into(),
            path: PathBuf::from(format!("/dev/{name}")),
            alias: String::new(),
            major,
            minor,
            size: 1 << 30,
            model: (major == 259).then(|| "Samsung SSD 980".to_string()),
            serial: None,
            transport: None,
            removable: name == "sdb",
            read_only: false,
            is_loop: name.starts_with("loop"),
            partitions: parts
                .iter()
                .map(|(p, m)| Partition {
                    name: p.to_string(),
                    path: PathBuf::from(format!("/dev/{p}")),
                    major,
                    minor: *m,
                    size: 1 << 20,
                    holders: Vec::new(),
                })
                .collect(),
            holders: Vec::new(),
        }
    }

    /// As discovery finds them, in no particular order.
    fn machine() -> Vec<Disk> {
        let mut d = vec![
            disk("loop10", 7, 10, &[]),
            disk("sdb", 8, 16, &[]),
            disk("nvme0n1", 259, 0, &[("nvme0n1p1", 1), ("nvme0n1p2", 2)]),
            disk("loop2", 7, 2, &[]),
            disk("sda", 8, 0, &[("sda1", 1)]),
        ];
        assign_aliases(&mut d);
        d
    }

    #[test]
    fn aliases_follow_kernel_names_then_loops() {
        let d = machine();
        let names: Vec<_> = d.iter().map(|x| (x.name.as_str(), x.alias.as_str())).collect();
        assert_eq!(
            names,
            vec![
                ("nvme0n1", "hdisk0"),
                ("sda", "hdisk1"),
                ("sdb", "hdisk2"),
                ("loop2", "hdisk3"),
                ("loop10", "hdisk4")
            ]
        );
        let nvme = &d[0];
        assert_eq!(nvme.partitions.len(), 2);
        assert_eq!(nvme.partitions[1].path, PathBuf::from("/dev/nvme0n1p2"));
        assert_eq!(nvme.model.as_deref(), Some("Samsung SSD 980"));
        assert!(d[2].removable);
        assert!(nvme.contains_dev(259, 2));
        assert!(!nvme.contains_dev(8, 0));
    }

    #[test]
    fn resolves_names() {
        let d = machine();
        assert_eq!(resolve("sdb", &d).unwrap(), Named::Disk(2));
        assert_eq!(resolve("hdisk0", &d).unwrap(), Named::Disk(0));
        assert!(matches!(resolve("sdz", &d), Err(Error::NotFound { .. })));
        assert!(matches!(resolve("nvme0n1p2", &d), Err(Error::Usage { .. })));
        assert!(matches!(resolve("", &d), Err(Error::Usage { .. })));
        assert_eq!(
            resolve("/tmp/new-altdisk-image-xyz.img", &d).unwrap(),
            Named::Image("/tmp/new-altdisk-image-xyz.img".into())
        );
        assert!(matches!(resolve("/nonexistent-dir/x.img", &d), Err(Error::NotFound { .. })));
    }

    #[test]
    fn parses_blkid_export() {
        let p = Probe::parse_export(
            "DEVNAME=/dev/vda2\nUUID=abcd\nTYPE=ext4\nPART_ENTRY_UUID=1111\nPART_ENTRY_NAME=EFI\\ System\\ Partition\nLABEL=\n",
        );
        assert_eq!(p.fstype.as_deref(), Some("ext4"));
        assert_eq!(p.partuuid.as_deref(), Some("1111"));
        assert_eq!(p.label, None);
        assert_eq!(p.partlabel.as_deref(), Some("EFI System Partition"));
        assert_eq!(p.describe().as_deref(), Some("a ext4 signature"));
        assert_eq!(Probe::default().describe(), None);
    }
}
