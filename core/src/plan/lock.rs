//! Exclusive locks on targets, held from the first check of a run to its end, so two runs
//! (two commands, a command and the service, two service jobs) never write one disk or image
//! file at the same time.
//!
//! A target is locked under every name that reaches the same blocks, as
//! [`crate::discover::identity`] finds them: a block device by its device number; an image
//! file by its filesystem and inode and by its canonical path (for a file not made yet); a
//! loop device also by the file behind it. So `-d /var/tmp/a.img` in one run and
//! `-d /dev/loop3` (over that file) in another collide, whatever `--force` says.
//!
//! The locks are `flock`s on files under `/run/altdisk/locks`: the kernel drops them when the
//! holder exits, however it exits (a killed run holds nothing), and each file names its last
//! holder so a refusal can say who has the disk.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::discover::identity::{self, DevId};
use crate::error::{Error, IoContext, Result};

/// Where the lock files live (a tmpfs: nothing survives a reboot, nor needs to).
pub const LOCK_DIR: &str = "/run/altdisk/locks";

/// Who holds a target, as written into its lock file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// The command line, or "altdiskd job N".
    pub what: String,
    pub since: String,
}

impl Holder {
    /// This process, by its command line (the program by its name), for the refusal another
    /// run gets: "altdiskd (a D-Bus job)" for the service.
    pub fn this_run() -> Holder {
        let args: Vec<String> = std::env::args().collect();
        let me = if args.first().is_some_and(|a| a.ends_with("altdiskd")) {
            "altdiskd (a D-Bus job)".to_string()
        } else {
            args.iter()
                .map(|a| {
                    let p = Path::new(a);
                    // The program by its name, not the path it was run from.
                    if a == &args[0] {
                        p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| a.clone())
                    } else {
                        a.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        Holder::me(me)
    }

    /// This process, doing `what`.
    pub fn me(what: impl Into<String>) -> Holder {
        Holder { pid: std::process::id(), what: what.into(), since: crate::discover::record::now_rfc3339() }
    }
}

/// The locks of one target, released when dropped.
#[derive(Debug)]
pub struct TargetLock {
    pub target: PathBuf,
    /// The keys held, with their open (locked) files.
    held: Vec<(String, File)>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fn dir() -> PathBuf {
    std::env::var_os("ALTDISK_LOCK_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(LOCK_DIR))
}

/// The lock names of a target: one for every name that reaches its blocks.
pub fn keys(target: &Path) -> Vec<String> {
    let mut keys: Vec<String> = identity::ids(target).iter().map(lock_name).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The lock file of one identity of a target.
fn lock_name(id: &DevId) -> String {
    match id {
        DevId::Block(rdev) => format!("dev-{}-{}", nix::sys::stat::major(*rdev), nix::sys::stat::minor(*rdev)),
        DevId::File(dev, ino) => format!("file-{dev}-{ino}"),
        DevId::Path(p) => format!("path-{:016x}", fnv1a(p.as_os_str().as_encoded_bytes())),
    }
}

fn open_key(key: &str) -> Result<File> {
    let d = dir();
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&d).ctx("making the lock directory", &d)?;
    // Made earlier with a looser mode (an older altdisk): root's alone.
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).ctx("securing", &d)?;
    let p = d.join(key);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&p)
        .ctx("opening a lock file", &p)
}

fn read_holder(f: &mut File) -> Option<Holder> {
    let mut s = String::new();
    f.rewind().ok()?;
    f.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

impl TargetLock {
    /// Lock `target` for this run, or refuse it naming the run that holds it.
    pub fn acquire(target: &Path, holder: &Holder) -> Result<TargetLock> {
        let mut lock = TargetLock { target: target.to_path_buf(), held: Vec::new() };
        lock.add(target, holder)?;
        Ok(lock)
    }

    /// Lock another name of the same target (the loop device made over an image file).
    pub fn add(&mut self, name: &Path, holder: &Holder) -> Result<()> {
        for key in keys(name) {
            // flock is per open file: taking a key this lock holds again would collide with itself.
            if self.held.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let mut f = open_key(&key)?;
            match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let who = read_holder(&mut f);
                    return Err(busy(&self.target, who.as_ref()));
                }
                Err(e) => return Err(Error::io("locking the target", dir().join(&key), e.into())),
            }
            // Name the holder for whoever is refused next.
            let text = serde_json::to_string(holder).unwrap_or_default();
            if f.set_len(0).and_then(|_| f.rewind()).and_then(|_| f.write_all(text.as_bytes())).is_err() {
                tracing::warn!("could not note the holder in lock {key}");
            }
            self.held.push((key, f));
        }
        Ok(())
    }
}

fn busy(target: &Path, who: Option<&Holder>) -> Error {
    let why = match who {
        Some(h) => format!("another altdisk run is writing it (pid {}: {}, since {})", h.pid, h.what, h.since),
        None => "another altdisk run is writing it".into(),
    };
    let todo = match who {
        Some(h) => format!("wait for it to finish, or stop it (kill {}); the next run cleans up after it", h.pid),
        None => "wait for it to finish".into(),
    };
    Error::Busy { target: target.display().to_string(), why, todo }
}

/// Who holds `target` now, if anyone (a lock held by a process that died is free).
pub fn holder(target: &Path) -> Option<Holder> {
    for key in keys(target) {
        let p = dir().join(&key);
        let Ok(mut f) = File::open(&p) else { continue };
        match rustix::fs::flock(&f, FlockOperation::NonBlockingLockShared) {
            Ok(()) => {
                let _ = rustix::fs::flock(&f, FlockOperation::Unlock);
            }
            Err(_) => {
                return Some(read_holder(&mut f).unwrap_or(Holder {
                    pid: 0,
                    what: "unknown".into(),
                    since: String::new(),
                }))
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_one_file_is_refused_and_freed_on_drop() {
        let d = std::env::temp_dir().join(format!("altdisk-lock-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        std::env::set_var("ALTDISK_LOCK_DIR", d.join("locks"));
        let img = d.join("a.img");
        // Not made yet: locked by its path.
        let a = TargetLock::acquire(&img, &Holder::me("test one")).unwrap();
        std::fs::write(&img, b"x").unwrap();
        // The same file by another name (a symlink) collides.
        std::os::unix::fs::symlink(&img, d.join("link.img")).unwrap();
        // flock is per open file description: a second open in this process conflicts too.
        let e = TargetLock::acquire(&d.join("link.img"), &Holder::me("test two")).unwrap_err();
        assert!(matches!(e, Error::Busy { .. }), "{e}");
        assert!(e.to_string().contains("test one"), "{e}");
        assert_eq!(holder(&img).map(|h| h.what), Some("test one".into()));
        drop(a);
        assert_eq!(holder(&img), None);
        let _b = TargetLock::acquire(&d.join("link.img"), &Holder::me("test two")).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }
}
