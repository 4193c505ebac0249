//! The boot list (AIX `bootlist`): the UEFI boot order shown as disks and the systems on
//! them, and set by naming disks. Entries that point at a partition are matched to disks
//! by the partition's GPT GUID; entries of the firmware itself (network, shell) are kept
//! after the named disks, in their old order, so setting a list never loses one.

use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use crate::boot::efi::{self, BootManager, Vars};
use crate::discover::blockdev::{self, Disk};
use crate::discover::mounts;
use crate::discover::record;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    pub number: String,
    pub description: String,
    pub disk: Option<String>,
    pub system: Option<String>,
    pub file: Option<String>,
    pub active: bool,
    pub in_order: bool,
    pub next: bool,
    pub current: bool,
}

/// GPT partition GUIDs of every disk.
fn partition_guids(disks: &[Disk]) -> Vec<(Uuid, usize)> {
    let mut v = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        if let Some(gpt) = crate::discover::gpt::read_gpt(&d.path) {
            for (_, p) in gpt.iter().filter(|(_, p)| p.is_used()) {
                v.push((Uuid::from_bytes_le(p.unique_partition_guid), i));
            }
        }
    }
    v
}

/// The name of the system on a disk: rootvg for the running one, else its record's name.
pub fn system_name(disk: &Disk, root_dev: Option<(u32, u32)>) -> Option<String> {
    if root_dev.map(|(a, b)| disk.holds(a, b)).unwrap_or(false) {
        return Some("rootvg".into());
    }
    record::read(&disk.path).and_then(|r| r.ok()).map(|e| e.name)
}

fn root_dev() -> Option<(u32, u32)> {
    let t = mounts::read().ok()?;
    mounts::mount_at(&t, Path::new("/")).map(|m| (m.major, m.minor))
}

/// The boot list in order: the BootOrder entries first, then the other entries.
pub fn show<V: Vars>(m: &BootManager<V>) -> Result<Vec<ListEntry>> {
    let disks = blockdev::list()?;
    let guids = partition_guids(&disks);
    let order = m.order()?;
    let next = m.next()?;
    let current = m.current()?;
    let rd = root_dev();
    let mut entries = m.entries()?;
    entries.sort_by_key(|e| order.iter().position(|&n| n == e.number).unwrap_or(usize::MAX));
    Ok(entries
        .into_iter()
        .map(|e| {
            let disk = e
                .option
                .hd
                .as_ref()
                .and_then(|hd| guids.iter().find(|(g, _)| *g == hd.partuuid))
                .map(|(_, i)| &disks[*i]);
            ListEntry {
                number: efi::boot_name(e.number),
                description: e.option.description.clone(),
                disk: disk.map(|d| d.name.clone()),
                system: disk.and_then(|d| system_name(d, rd)),
                file: e.option.file.clone(),
                active: e.option.active(),
                in_order: order.contains(&e.number),
                next: next == Some(e.number),
                current: current == Some(e.number),
            }
        })
        .collect())
}

/// The entries (by number) that boot from `disk`, in boot order.
fn entries_of<V: Vars>(m: &BootManager<V>, disk: &Disk) -> Result<Vec<u16>> {
    let guids: Vec<Uuid> = partition_guids(std::slice::from_ref(disk)).into_iter().map(|(g, _)| g).collect();
    let order = m.order()?;
    let mut v: Vec<(usize, u16)> = m
        .entries()?
        .into_iter()
        .filter(|e| e.option.active() && e.option.hd.as_ref().map(|h| guids.contains(&h.partuuid)).unwrap_or(false))
        .map(|e| (order.iter().position(|&n| n == e.number).unwrap_or(usize::MAX), e.number))
        .collect();
    v.sort();
    Ok(v.into_iter().map(|(_, n)| n).collect())
}

/// Resolve disk names and find each one's boot entry.
fn entries_for<V: Vars>(m: &BootManager<V>, names: &[String]) -> Result<Vec<u16>> {
    let disks = blockdev::list()?;
    let mut out = Vec::new();
    for name in names {
        let d = match blockdev::resolve(name, &disks)? {
            blockdev::Named::Disk(i) => &disks[i],
            blockdev::Named::Image(p) => {
                return Err(Error::usage(
                    format!("boot list entry {}", p.display()),
                    "it is not a disk",
                    "name disks, as altdisk lspv shows them",
                ))
            }
        };
        let found = entries_of(m, d)?;
        let Some(first) = found.first() else {
            return Err(Error::not_found(
                format!("UEFI boot entry for {}", d.name),
                "no entry boots from a partition of that disk",
                "make one by cloning onto it with alt_disk_copy, or with efibootmgr",
            ));
        };
        out.push(*first);
    }
    Ok(out)
}

/// `bootlist -m normal disk...`: these disks first, in this order; every other entry after.
pub fn set<V: Vars>(m: &BootManager<V>, names: &[String]) -> Result<Vec<u16>> {
    let first = entries_for(m, names)?;
    m.put_first(&first)?;
    Ok(first)
}

/// `bootlist --next disk`: boot that disk once.
pub fn set_next<V: Vars>(m: &BootManager<V>, name: &str) -> Result<u16> {
    let n = entries_for(m, &[name.to_string()])?[0];
    m.set_next(Some(n))?;
    Ok(n)
}

/// On a BIOS machine: the disks whose first sector carries a boot loader.
pub fn bios_bootable() -> Result<Vec<(String, PathBuf)>> {
    let mut v = Vec::new();
    for d in blockdev::list()? {
        let mut buf = [0u8; 512];
        use std::io::Read;
        if std::fs::File::open(&d.path).and_then(|mut f| f.read_exact(&mut buf)).is_ok()
            && buf[510] == 0x55
            && buf[511] == 0xaa
            && buf.windows(4).any(|w| w == b"GRUB")
        {
            v.push((d.name.clone(), d.path.clone()));
        }
    }
    Ok(v)
}

pub fn render(entries: &[ListEntry]) -> String {
    let mut s = String::new();
    for e in entries.iter().filter(|e| e.in_order || e.next) {
        let mark =
            [(e.current, "current"), (e.next, "next"), (!e.active, "inactive"), (!e.in_order, "not in BootOrder")]
                .iter()
                .filter(|(b, _)| *b)
                .map(|(_, t)| *t)
                .collect::<Vec<_>>()
                .join(", ");
        s.push_str(&format!(
            "{:<10} {:<16} {}  {}{}\n",
            e.disk.as_deref().unwrap_or("-"),
            e.system.as_deref().unwrap_or("-"),
            e.number,
            e.description,
            if mark.is_empty() { String::new() } else { format!("  ({mark})") }
        ));
    }
    s
}
