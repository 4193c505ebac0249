//! Device identity: which names reach the same blocks. A block device is known by its device
//! number; a file by its filesystem and inode, and by its canonical path (also before it
//! exists, for an image file still to be made); a loop device also as the file behind it. So
//! a disk named through a by-id link or an alias, or an image file named directly and through
//! the loop device over it, is one device.
//!
//! The target locks (two runs never write one disk) and the service's Busy check (two jobs
//! never get one disk) both ask this module, so they agree on what "the same disk" means.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One identity of a device; two names mean one device when any of their identities are
/// equal (see [`collide`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DevId {
    /// A block device, by its device number (st_rdev).
    Block(u64),
    /// A regular file, by (st_dev, st_ino).
    File(u64, u64),
    /// A file by its canonical path (also before it exists).
    Path(PathBuf),
}

/// The identities of whatever `path` names: a disk, a loop device (and its backing file), an
/// image file (existing or not yet). Sorted, each once.
pub fn ids(path: &Path) -> Vec<DevId> {
    let mut ids = Vec::new();
    match std::fs::metadata(path) {
        Ok(md) if md.file_type().is_block_device() => {
            ids.push(DevId::Block(md.rdev()));
            if let Some(file) = loop_backing(md.rdev()) {
                file_ids(&file, &mut ids);
            }
        }
        _ => file_ids(path, &mut ids),
    }
    ids.sort();
    ids.dedup();
    ids
}

fn file_ids(path: &Path, ids: &mut Vec<DevId>) {
    if let Some(md) = std::fs::metadata(path).ok().filter(|md| md.is_file()) {
        ids.push(DevId::File(md.dev(), md.ino()));
    }
    ids.push(DevId::Path(canonical(path)));
}

/// Whether any identity of `a` is among `b`.
pub fn collide<K: PartialEq>(a: &[K], b: &[K]) -> bool {
    a.iter().any(|k| b.contains(k))
}

/// The canonical path of `p`, also when its last component does not exist yet.
pub fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            std::fs::canonicalize(parent).map(|c| c.join(name)).unwrap_or_else(|_| p.to_path_buf())
        }
        _ => p.to_path_buf(),
    }
}

/// The file behind a loop device, given its device number, if it is a loop device with one
/// (the file as the kernel names it, also when it was deleted since).
pub fn loop_backing(rdev: u64) -> Option<PathBuf> {
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let sys = format!("/sys/dev/block/{major}:{minor}/loop/backing_file");
    backing_file(Path::new(&sys))
}

fn backing_file(sys: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(sys).ok()?;
    let f = text.trim_end_matches('\n').trim_end_matches(" (deleted)");
    (!f.is_empty()).then(|| PathBuf::from(f))
}

/// The loop devices attached over `file` (`/dev/loopN`): the same file by filesystem and
/// inode, or by name when the file behind the loop device can no longer be looked at.
pub fn loops_over(file: &Path) -> Vec<PathBuf> {
    let Ok(md) = std::fs::metadata(file) else { return Vec::new() };
    let Ok(rd) = std::fs::read_dir("/sys/block") else { return Vec::new() };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.starts_with("loop") {
            continue;
        }
        let Some(bf) = backing_file(&e.path().join("loop/backing_file")) else { continue };
        let same = match std::fs::metadata(&bf) {
            Ok(m) => m.dev() == md.dev() && m.ino() == md.ino(),
            Err(_) => bf == file,
        };
        if same {
            out.push(PathBuf::from(format!("/dev/{n}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_the_same_by_any_path() {
        let dir = std::env::temp_dir().join(format!("altdisk-ids-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let f = dir.join("x.img");
        // Before it exists: by path, so a second name for it collides too.
        let before = ids(&f);
        assert_eq!(before, [DevId::Path(std::fs::canonicalize(&dir).unwrap().join("x.img"))]);
        assert!(collide(&before, &ids(&dir.join("sub/../x.img"))));
        std::fs::write(&f, b"x").unwrap();
        std::os::unix::fs::symlink(&f, dir.join("link.img")).unwrap();
        let k = ids(&f);
        assert!(k.iter().any(|i| matches!(i, DevId::File(..))), "{k:?}");
        assert!(collide(&k, &ids(&dir.join("link.img"))));
        assert!(collide(&k, &before), "made meanwhile: the path still matches");
        assert!(!collide(&k, &ids(&dir.join("y.img"))));
        // A hard link is the same file by inode alone.
        std::fs::hard_link(&f, dir.join("hard.img")).unwrap();
        assert!(collide(&k, &ids(&dir.join("hard.img"))));
        assert!(loops_over(&f).is_empty(), "nothing is attached over a file made just now");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_block_device_is_known_by_its_number() {
        // Any block device this machine has will do; the test needs no root.
        let Some(dev) = std::fs::read_dir("/dev")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device()))
        else {
            return;
        };
        let rdev = std::fs::metadata(&dev).unwrap().rdev();
        assert!(ids(&dev).contains(&DevId::Block(rdev)), "{}", dev.display());
    }
}
