//! Writing partition tables. A target gets a fresh GPT (protective MBR, primary and backup
//! headers) written with gptman, after its old table and signatures at both ends are wiped.
//! Partition device nodes are then added with the BLKPG ioctl, as `partx -a` does: that works
//! on kernels that do not re-read tables of loop devices (no GPT parser) and never disturbs
//! partitions of other disks.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gptman::{GPTPartitionEntry, GPT};
use uuid::Uuid;

use crate::error::{Error, IoContext, Result};
use crate::size::MIB;

/// One partition to write: where, how big, its type and identity.
#[derive(Debug, Clone)]
pub struct PartSpec {
    pub number: u32,
    /// Byte offset and size on the disk.
    pub start: u64,
    pub size: u64,
    pub type_guid: String,
    pub guid: Uuid,
    pub name: String,
}

/// The device node of partition `n` of `disk`: sda -> sda1, nvme0n1 -> nvme0n1p1, loop0 -> loop0p1.
pub fn partition_path(disk: &Path, n: u32) -> PathBuf {
    let s = disk.display().to_string();
    if s.chars().last().map(|c| c.is_ascii_digit()).unwrap_or(false) {
        PathBuf::from(format!("{s}p{n}"))
    } else {
        PathBuf::from(format!("{s}{n}"))
    }
}

fn guid(s: &str) -> Result<[u8; 16]> {
    Uuid::parse_str(s).map(|u| u.to_bytes_le()).map_err(|_| Error::corrupt(format!("GUID `{s}`"), "it is not a GUID"))
}

fn zero(f: &mut std::fs::File, dev: &Path, offset: u64, len: u64) -> Result<()> {
    let buf = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(offset)).ctx("wiping old signatures", dev)?;
    f.write_all(&buf).ctx("wiping old signatures", dev)
}

/// Wipe the ends of the disk and of every new partition, then write the GPT in units of the
/// disk's logical sectors (`sector`: 512, or 4096 on a 4Kn disk).
pub fn write_gpt(dev: &Path, size: u64, disk_guid: Uuid, sector: u64, parts: &[PartSpec]) -> Result<()> {
    if !matches!(sector, 512 | 1024 | 2048 | 4096)
        || parts.iter().any(|p| p.start % sector != 0 || p.size % sector != 0)
    {
        return Err(Error::corrupt(
            format!("partition table for {}", dev.display()),
            format!("its partitions are not whole {sector}-byte sectors"),
        ));
    }
    let mut f = OpenOptions::new().read(true).write(true).open(dev).ctx("opening the target for writing", dev)?;
    // Old GPT headers, MBR and filesystem superblocks near the ends.
    zero(&mut f, dev, 0, MIB.min(size))?;
    if size > 2 * MIB {
        zero(&mut f, dev, size - MIB, MIB)?;
    }
    for p in parts {
        // Stale superblocks at a partition's start would make probes see the old filesystem.
        zero(&mut f, dev, p.start, MIB.min(p.size))?;
    }
    let mut gpt = GPT::new_from(&mut f, sector, disk_guid.to_bytes_le())
        .map_err(|e| Error::corrupt(format!("new partition table for {}", dev.display()), e.to_string()))?;
    for p in parts {
        let start = p.start / sector;
        let end = (p.start + p.size) / sector - 1;
        if start < gpt.header.first_usable_lba || end > gpt.header.last_usable_lba {
            return Err(Error::corrupt(
                format!("partition {} of {}", p.number, dev.display()),
                "it lies outside the usable area",
            ));
        }
        gpt[p.number] = GPTPartitionEntry {
            partition_type_guid: guid(&p.type_guid)?,
            unique_partition_guid: p.guid.to_bytes_le(),
            starting_lba: start,
            ending_lba: end,
            attribute_bits: 0,
            partition_name: p.name.as_str().into(),
        };
    }
    gpt.write_into(&mut f)
        .map_err(|e| Error::corrupt(format!("writing the partition table of {}", dev.display()), e.to_string()))?;
    GPT::write_protective_mbr_into(&mut f, sector)
        .map_err(|e| Error::corrupt(format!("writing the protective MBR of {}", dev.display()), e.to_string()))?;
    f.sync_all().ctx("flushing the partition table", dev)?;
    Ok(())
}

/// Wipe a disk altdisk wrote: the start of every partition (filesystem superblocks, the
/// state record) and both ends of the disk (MBR, primary and backup GPT).
pub fn wipe(dev: &Path, size: u64, parts: &[(u32, u64, u64)]) -> Result<()> {
    let mut f = OpenOptions::new().write(true).open(dev).ctx("opening the disk to wipe it", dev)?;
    for (_, start, len) in parts {
        zero(&mut f, dev, *start, MIB.min(*len))?;
        // XFS and btrfs keep more copies further in; the end of a partition holds the md
        // and some swap signatures.
        if *len > 2 * MIB {
            zero(&mut f, dev, start + len - MIB, MIB)?;
        }
        if *len > 64 * MIB + MIB {
            zero(&mut f, dev, start + 64 * MIB, MIB)?;
        }
    }
    zero(&mut f, dev, 0, MIB.min(size))?;
    if size > 2 * MIB {
        zero(&mut f, dev, size - MIB, MIB)?;
    }
    f.sync_all().ctx("flushing the wiped disk", dev)
}

#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: libc::c_int,
    devname: [u8; 64],
    volname: [u8; 64],
}

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

const BLKPG_ADD_PARTITION: libc::c_int = 1;
const BLKPG_DEL_PARTITION: libc::c_int = 2;

nix::ioctl_write_ptr_bad!(blkpg, 0x1269, BlkpgIoctlArg);

fn blkpg_call(dev: &Path, op: libc::c_int, pno: u32, start: u64, length: u64) -> nix::Result<()> {
    let f = std::fs::File::open(dev).map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    let mut part = BlkpgPartition {
        start: start as i64,
        length: length as i64,
        pno: pno as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: &mut part as *mut BlkpgPartition as *mut libc::c_void,
    };
    // SAFETY: arg points to a valid blkpg_partition for the duration of the call.
    unsafe { blkpg(f.as_raw_fd(), &arg) }.map(|_| ())
}

/// Remove the kernel's partition nodes 1..=max of `dev` (ignoring those that do not exist).
pub fn remove_partition_nodes(dev: &Path, numbers: impl IntoIterator<Item = u32>) -> Result<()> {
    for n in numbers {
        match blkpg_call(dev, BLKPG_DEL_PARTITION, n, 0, 0) {
            Ok(()) | Err(nix::Error::ENXIO) | Err(nix::Error::EINVAL) => {}
            Err(e) => {
                return Err(Error::io(format!("removing the kernel's partition {n} node"), dev, e.into()));
            }
        }
    }
    Ok(())
}

/// Make the kernel see the new partitions and wait for their device nodes.
pub fn add_partition_nodes(dev: &Path, parts: &[PartSpec]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in parts {
        match blkpg_call(dev, BLKPG_ADD_PARTITION, p.number, p.start, p.size) {
            // EBUSY: the kernel already has it (it re-read the table itself).
            Ok(()) | Err(nix::Error::EBUSY) => {}
            Err(e) => {
                return Err(Error::io(format!("adding the kernel's node for partition {}", p.number), dev, e.into()))
            }
        }
        out.push(wait_node(dev, p)?);
    }
    Ok(out)
}

/// Let udev finish what the new table set off, then make sure every partition node is
/// there again: writing a disk's table makes udev re-read it (the kernel drops and re-adds
/// the partitions), and a tool that opens a partition meanwhile finds no node (seen on
/// NVMe: "mkfs.ext4: The file /dev/nvme0n1p3 does not exist").
pub fn settle_nodes(dev: &Path, parts: &[PartSpec]) -> Result<()> {
    crate::cmd::settle();
    for p in parts {
        wait_node(dev, p)?;
    }
    Ok(())
}

/// Wait (up to 10 s) for the device node of partition `p` of `dev`, and check it is that
/// partition (its size).
fn wait_node(dev: &Path, p: &PartSpec) -> Result<PathBuf> {
    let node = partition_path(dev, p.number);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        use std::os::unix::fs::FileTypeExt;
        if std::fs::metadata(&node).map(|m| m.file_type().is_block_device()).unwrap_or(false) {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::not_found(
                format!("partition node {}", node.display()),
                "the kernel knows the partition but no device node appeared within 10 s",
                "check that /dev is devtmpfs (or udev runs) and try again",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The node must be the partition we asked for: check its size.
    let sz = std::fs::File::open(&node)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .ctx("opening the new partition", &node)?;
    if sz != p.size {
        return Err(Error::corrupt(
            format!("partition {}", node.display()),
            format!("the kernel has it at {} bytes, the new table says {}; an old partition is still known: detach and reattach the disk", sz, p.size),
        ));
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        assert_eq!(partition_path(Path::new("/dev/sda"), 2), PathBuf::from("/dev/sda2"));
        assert_eq!(partition_path(Path::new("/dev/nvme0n1"), 1), PathBuf::from("/dev/nvme0n1p1"));
        assert_eq!(partition_path(Path::new("/dev/loop7"), 3), PathBuf::from("/dev/loop7p3"));
        assert_eq!(partition_path(Path::new("/dev/vdb"), 10), PathBuf::from("/dev/vdb10"));
    }

    #[test]
    fn writes_a_gpt_that_reads_back() {
        let path = std::env::temp_dir().join(format!("altdisk-gpt-{}.img", Uuid::new_v4()));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(64 * MIB).unwrap();
        drop(f);
        let mk = |n, start, size, name: &str| PartSpec {
            number: n,
            start,
            size,
            type_guid: crate::discover::gpt::LINUX_FS_TYPE.into(),
            guid: Uuid::new_v4(),
            name: name.into(),
        };
        let a = mk(1, MIB, MIB, "altdisk-meta");
        let b = mk(2, 2 * MIB, 61 * MIB, "alt_root");
        let dg = Uuid::new_v4();
        write_gpt(&path, 64 * MIB, dg, 512, &[a.clone(), b.clone()]).unwrap();
        let gpt = crate::discover::gpt::read_gpt(&path).unwrap();
        assert_eq!(gpt.header.disk_guid, dg.to_bytes_le());
        assert_eq!(gpt[2].starting_lba, 4096);
        assert_eq!(gpt[2].partition_name.as_str(), "alt_root");
        assert_eq!(gpt[2].unique_partition_guid, b.guid.to_bytes_le());
        // On 4096-byte sectors: the header at byte 4096, LBAs in 4 KiB units.
        write_gpt(&path, 64 * MIB, dg, 4096, &[a, b.clone()]).unwrap();
        let gpt = crate::discover::gpt::read_gpt(&path).unwrap();
        assert_eq!(gpt.sector_size, 4096);
        assert_eq!(gpt[2].starting_lba, 512);
        assert_eq!(gpt[2].ending_lba, (63 * MIB) / 4096 - 1);
        let mut head = vec![0u8; 8];
        let mut f = std::fs::File::open(&path).unwrap();
        f.seek(SeekFrom::Start(4096)).unwrap();
        std::io::Read::read_exact(&mut f, &mut head).unwrap();
        assert_eq!(&head, b"EFI PART");
        std::fs::remove_file(&path).unwrap();
    }
}
