//! The mount table, read from /proc/self/mountinfo (never from `mount` output or /etc/mtab),
//! and the active swap areas from /proc/swaps. Parsers are pure and tested on samples.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is mounted here ("/" unless a bind of a subtree
    /// or a btrfs subvolume).
    pub root: String,
    pub target: PathBuf,
    pub options: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

impl Mount {
    /// Filesystems that live on a block device and hold data worth cloning.
    pub fn is_block_backed(&self) -> bool {
        self.source.starts_with("/dev/")
            && !matches!(
                self.fstype.as_str(),
                "devtmpfs" | "tmpfs" | "devpts" | "squashfs" | "iso9660" | "erofs" | "overlay"
            )
    }

    pub fn is_read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }

    /// For btrfs: the `subvol=` the mount shows.
    pub fn btrfs_subvol(&self) -> Option<&str> {
        self.super_options.split(',').find_map(|o| o.strip_prefix("subvol="))
    }
}

/// Decode the octal escapes (`\040` for space) the kernel writes in mountinfo and fstab.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let f: Vec<&str> = left.split(' ').collect();
    if f.len() < 6 {
        return None;
    }
    let (major, minor) = f[2].split_once(':')?;
    let r: Vec<&str> = right.splitn(3, ' ').collect();
    Some(Mount {
        id: f[0].parse().ok()?,
        parent: f[1].parse().ok()?,
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: unescape(f[3]),
        target: PathBuf::from(unescape(f[4])),
        options: f[5].to_string(),
        fstype: r.first()?.to_string(),
        source: unescape(r.get(1).copied().unwrap_or("none")),
        super_options: r.get(2).copied().unwrap_or("").to_string(),
    })
}

/// The current mount table of this process's namespace.
pub fn read() -> Result<Vec<Mount>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").ctx("reading the mount table", "/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

/// The mount that is visible at `path` (the last one stacked there), if `path` is a mount point.
pub fn mount_at<'a>(table: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    table.iter().rev().find(|m| m.target == path)
}

/// Mounts strictly below `dir`, visible ones only (a mount hidden under a later one on the
/// same target is dropped), sorted so parents come before children.
pub fn below<'a>(table: &'a [Mount], dir: &Path) -> Vec<&'a Mount> {
    let mut v: Vec<&Mount> = Vec::new();
    for (i, m) in table.iter().enumerate() {
        if m.target != dir && m.target.starts_with(dir) && !table[i + 1..].iter().any(|n| n.target == m.target) {
            v.push(m);
        }
    }
    v.sort_by_key(|m| m.target.components().count());
    v
}

/// Active swap areas: the device or file paths in /proc/swaps.
pub fn parse_swaps(text: &str) -> Vec<PathBuf> {
    text.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(|p| PathBuf::from(unescape(p))).collect()
}

pub fn swaps() -> Result<Vec<PathBuf>> {
    match std::fs::read_to_string("/proc/swaps") {
        Ok(t) => Ok(parse_swaps(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(crate::Error::io("reading active swap areas", "/proc/swaps", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../tests/fixtures/mountinfo.txt");

    #[test]
    fn parses_sample() {
        let t = parse_mountinfo(SAMPLE);
        let root = mount_at(&t, Path::new("/")).unwrap();
        assert_eq!(root.fstype, "ext4");
        assert_eq!(root.source, "/dev/vda2");
        assert_eq!((root.major, root.minor), (254, 2));
        let efi = mount_at(&t, Path::new("/boot/efi")).unwrap();
        assert_eq!(efi.fstype, "vfat");
        assert!(efi.is_block_backed());
        assert!(!mount_at(&t, Path::new("/proc")).unwrap().is_block_backed());
        let spaced = mount_at(&t, Path::new("/srv/my data")).unwrap();
        assert_eq!(spaced.source, "/dev/vdb1");
        let home = mount_at(&t, Path::new("/home")).unwrap();
        assert_eq!(home.btrfs_subvol(), Some("/@home"));
    }

    #[test]
    fn below_sorts_and_hides_overmounted() {
        let t = parse_mountinfo(SAMPLE);
        let b = below(&t, Path::new("/boot"));
        let targets: Vec<_> = b.iter().map(|m| m.target.to_str().unwrap()).collect();
        assert_eq!(targets, vec!["/boot/efi"]);
        let all = below(&t, Path::new("/"));
        // /run/shm is stacked twice; only the top one counts.
        assert_eq!(all.iter().filter(|m| m.target == Path::new("/run/shm")).count(), 1);
        assert_eq!(all.iter().find(|m| m.target == Path::new("/run/shm")).unwrap().id, 40);
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn parses_swaps() {
        let s = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/vda3                               partition\t1048572\t\t0\t\t-2\n/swap\\040file file 1 0 -3\n";
        assert_eq!(parse_swaps(s), vec![PathBuf::from("/dev/vda3"), PathBuf::from("/swap file")]);
    }
}
