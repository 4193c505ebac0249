//! btrfs facts read from a mounted filesystem: its default subvolume (what mounts without
//! `subvol=`), and whether a subvolume is a snapshot (it has a parent subvolume), which the
//! copy leaves out unless asked.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use crate::cmd::Cmd;
use crate::error::Result;

/// The default subvolume of the btrfs filesystem mounted at `mount`, as a path from its top
/// level ("/@"); None when it is the top level itself.
pub fn default_subvol(mount: &Path) -> Result<Option<String>> {
    let out = Cmd::new("reading the default btrfs subvolume", "btrfs")?
        .args(["subvolume", "get-default"])
        .arg(mount)
        .run()?;
    Ok(parse_default(&out.stdout))
}

/// `btrfs subvolume get-default` output: "ID 5 (FS_TREE)" for the top level, else
/// "ID 256 gen 9 top level 5 path @".
pub fn parse_default(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("ID "))?;
    let id: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    if id == 5 {
        return None;
    }
    let path = line.split_once(" path ")?.1.trim();
    let path = path.strip_prefix("<FS_TREE>/").unwrap_or(path);
    (!path.is_empty()).then(|| format!("/{}", path.trim_start_matches('/')))
}

/// `struct btrfs_ioctl_get_subvol_info_args` (linux/btrfs.h).
#[repr(C)]
struct SubvolInfo {
    treeid: u64,
    name: [u8; 256],
    parent_id: u64,
    dirid: u64,
    generation: u64,
    flags: u64,
    uuid: [u8; 16],
    parent_uuid: [u8; 16],
    received_uuid: [u8; 16],
    transids: [u64; 4],
    /// ctime, otime, stime, rtime: { u64 sec; u32 nsec } each, padded to 16 bytes.
    times: [[u64; 2]; 4],
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<SubvolInfo>() == 504);

nix::ioctl_read!(btrfs_get_subvol_info, 0x94, 60, SubvolInfo);

/// Whether the subvolume whose root directory is open as `dir` is a snapshot of another (a
/// snapper or timeshift snapshot, a received backup). False when it cannot be told (not
/// btrfs, a kernel before 4.18).
pub fn is_snapshot(dir: impl AsFd) -> bool {
    // SAFETY: all-zero bytes are a valid SubvolInfo (integers and byte arrays only).
    let mut info: SubvolInfo = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel fills `info`, a struct of the size the ioctl number encodes.
    match unsafe { btrfs_get_subvol_info(dir.as_fd().as_raw_fd(), &mut info) } {
        Ok(_) => info.parent_uuid != [0u8; 16],
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default_subvolume() {
        assert_eq!(parse_default("ID 5 (FS_TREE)\n"), None);
        assert_eq!(parse_default("ID 256 gen 9 top level 5 path @\n").as_deref(), Some("/@"));
        assert_eq!(
            parse_default("ID 268 gen 1543 top level 267 path @/.snapshots/1/snapshot\n").as_deref(),
            Some("/@/.snapshots/1/snapshot")
        );
        assert_eq!(parse_default("ID 257 gen 3 top level 5 path <FS_TREE>/root\n").as_deref(), Some("/root"));
        assert_eq!(parse_default("ERROR: not a btrfs filesystem\n"), None);
    }
}
