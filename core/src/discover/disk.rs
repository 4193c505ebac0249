//! What a disk is, as discovery reports it: the disk with its partitions and holders, and
//! what a probe found on a device (filesystem, partition table, identities). Plain data;
//! [`crate::discover::blockdev`] fills it in (through [`crate::discover::udevdb`] and blkid).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Probe {
    /// Filesystem or signature type ("ext4", "swap", "LVM2_member", "linux_raid_member").
    pub fstype: Option<String>,
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// Partition-table type on a whole disk ("gpt", "dos").
    pub pttype: Option<String>,
    pub ptuuid: Option<String>,
    pub partuuid: Option<String>,
    pub partlabel: Option<String>,
    pub parttype: Option<String>,
}

impl Probe {
    pub fn parse_export(text: &str) -> Probe {
        let kv: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        // `blkid -o export` escapes spaces, quotes and backslashes with a backslash.
        let unescape = |v: &str| {
            let mut out = String::with_capacity(v.len());
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        };
        let get = |k: &str| kv.get(k).map(|v| unescape(v)).filter(|v| !v.is_empty());
        Probe {
            fstype: get("TYPE"),
            uuid: get("UUID"),
            label: get("LABEL"),
            pttype: get("PTTYPE"),
            ptuuid: get("PTUUID"),
            partuuid: get("PART_ENTRY_UUID"),
            partlabel: get("PART_ENTRY_NAME"),
            parttype: get("PART_ENTRY_TYPE"),
        }
    }

    /// Some signature that means the device holds something.
    pub fn describe(&self) -> Option<String> {
        match (&self.pttype, &self.fstype) {
            (Some(pt), _) => Some(format!("a {pt} partition table")),
            (None, Some(fs)) => Some(format!("a {fs} signature")),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub path: PathBuf,
    pub major: u32,
    pub minor: u32,
    pub size: u64,
    /// Devices stacked on this partition (LVM, RAID, crypt), by kernel name.
    pub holders: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub path: PathBuf,
    /// `hdiskN`, the AIX-style alias `altdisk lspv` shows.
    pub alias: String,
    pub major: u32,
    pub minor: u32,
    pub size: u64,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub transport: Option<String>,
    pub removable: bool,
    pub read_only: bool,
    pub is_loop: bool,
    pub partitions: Vec<Partition>,
    pub holders: Vec<String>,
}

impl Disk {
    /// Whether device `(major, minor)` lives on this disk: the disk, one of its partitions,
    /// or a device-mapper device (an LVM volume) stacked on them.
    pub fn holds(&self, major: u32, minor: u32) -> bool {
        if self.contains_dev(major, minor) {
            return true;
        }
        let slaves = std::fs::read_dir(format!("/sys/dev/block/{major}:{minor}/slaves"));
        slaves.into_iter().flatten().flatten().any(|e| {
            let dev = std::fs::read_to_string(e.path().join("dev")).unwrap_or_default();
            match dev.trim().split_once(':').map(|(a, b)| (a.parse(), b.parse())) {
                Some((Ok(a), Ok(b))) => self.holds(a, b),
                _ => false,
            }
        })
    }

    /// Whether `(major, minor)` is this disk or one of its partitions.
    pub fn contains_dev(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) == (major, minor)
            || self.partitions.iter().any(|p| (p.major, p.minor) == (major, minor))
    }
}
