//! What a disk holds now, in the words a person about to erase it needs: its partitions
//! (number, name, start, size, filesystem, label, where mounted) and an operating system
//! found on them, by the `PRETTY_NAME` of its os-release.
//!
//! Promises:
//! - Nothing is written. A filesystem that is not mounted is looked into through a private,
//!   read-only mount that replays no journal (`noload`, `norecovery`, `nologreplay`), with no
//!   device nodes, setuid or exec, and unmounted again at once; a filesystem that is mounted
//!   is read where it is.
//! - Only what the caller allows is mounted ([`Look::mount_dir`] is None: nothing is): the
//!   service does not look into disks a job is writing.
//! - Paths inside a looked-at system never lead out of it: os-release links are resolved
//!   within its root.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use crate::blockdev::{Disk, Partition, Probe};
use crate::mounts::Mount;
use crate::size;

/// A partition as it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartContent {
    pub number: u32,
    pub device: PathBuf,
    /// GPT partition name.
    pub name: String,
    pub start: u64,
    pub size: u64,
    pub fstype: String,
    pub label: String,
    pub uuid: String,
    pub mountpoint: String,
    /// The operating system on it, if one was found.
    pub os: String,
}

/// How far to look.
pub struct Look<'a> {
    /// The mount table.
    pub table: &'a [Mount],
    /// Where private read-only mounts may be made; None: look only into mounted filesystems.
    pub mount_dir: Option<&'a Path>,
    /// Answers already found, by filesystem UUID (kept by a long-running caller).
    pub cache: Option<&'a OsCache>,
}

/// Operating systems found earlier, by filesystem type and UUID.
#[derive(Default)]
pub struct OsCache {
    found: Mutex<HashMap<(String, String), String>>,
}

fn sysfs_u64(part: &str, file: &str) -> Option<u64> {
    std::fs::read_to_string(Path::new("/sys/class/block").join(part).join(file)).ok()?.trim().parse().ok()
}

/// The partitions of `d`, in order, with what each holds.
pub fn partitions(d: &Disk, look: &Look) -> Vec<PartContent> {
    let mut v: Vec<PartContent> = d.partitions.iter().map(|p| partition(p, look)).collect();
    v.sort_by_key(|p| (p.number, p.start));
    v
}

fn partition(p: &Partition, look: &Look) -> PartContent {
    let probe = Probe::read(&p.path).unwrap_or_default();
    let mounted = look
        .table
        .iter()
        .filter(|m| (m.major, m.minor) == (p.major, p.minor))
        .min_by_key(|m| m.target.as_os_str().len());
    let mut c = PartContent {
        number: sysfs_u64(&p.name, "partition").unwrap_or(0) as u32,
        device: p.path.clone(),
        name: probe.partlabel.clone().unwrap_or_default(),
        start: sysfs_u64(&p.name, "start").map(|s| s * 512).unwrap_or(0),
        size: p.size,
        fstype: probe.fstype.clone().unwrap_or_default(),
        label: probe.label.clone().unwrap_or_default(),
        uuid: probe.uuid.clone().unwrap_or_default(),
        mountpoint: mounted.map(|m| m.target.display().to_string()).unwrap_or_default(),
        os: String::new(),
    };
    c.os = find_os(&c, mounted, p.holders.is_empty(), look).unwrap_or_default();
    c
}

/// Mount options that keep a read-only mount from writing (no journal replay).
fn ro_options(fstype: &str) -> Option<&'static str> {
    match fstype {
        "ext2" => Some(""),
        "ext3" | "ext4" => Some("noload"),
        "xfs" => Some("norecovery"),
        "btrfs" => Some("rescue=nologreplay"),
        _ => None,
    }
}

fn find_os(c: &PartContent, mounted: Option<&Mount>, unheld: bool, look: &Look) -> Option<String> {
    let opts = ro_options(&c.fstype)?;
    if let Some(m) = mounted {
        // Read where it is mounted, when the whole filesystem is mounted there.
        return if m.root == "/" { os_name(&m.target) } else { None };
    }
    // Tiny filesystems (an ESP, /boot) hold no system; held ones belong to something else.
    if !unheld || c.size < 256 << 20 {
        return None;
    }
    let key = (c.fstype.clone(), c.uuid.clone());
    if let (Some(cache), false) = (look.cache, c.uuid.is_empty()) {
        if let Some(os) = cache.found.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Some(os.clone()).filter(|s| !s.is_empty());
        }
    }
    let dir = look.mount_dir?;
    let at = dir.join(c.device.file_name()?);
    std::fs::create_dir_all(&at).ok()?;
    use nix::mount::MsFlags;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let os = match nix::mount::mount(Some(&c.device), &at, Some(c.fstype.as_str()), flags, Some(opts)) {
        Ok(()) => {
            let os = os_name(&at);
            if let Err(e) = nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!("unmounting {} after looking into {}: {e}", at.display(), c.device.display());
            }
            os
        }
        Err(e) => {
            tracing::debug!("looking into {} ({}): {e}", c.device.display(), c.fstype);
            None
        }
    };
    let _ = std::fs::remove_dir(&at);
    if let (Some(cache), false) = (look.cache, c.uuid.is_empty()) {
        cache.found.lock().unwrap_or_else(|e| e.into_inner()).insert(key, os.clone().unwrap_or_default());
    }
    os
}

/// `rel` (a path inside a system) with `link` (a symlink's target there) applied, lexically,
/// never above the system's root.
fn within(rel_dir: &Path, link: &Path) -> PathBuf {
    let mut parts: Vec<std::ffi::OsString> = if link.is_absolute() {
        Vec::new()
    } else {
        rel_dir.components().filter(|c| matches!(c, Component::Normal(_))).map(|c| c.as_os_str().into()).collect()
    };
    for c in link.components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(n) => parts.push(n.into()),
            _ => {}
        }
    }
    parts.iter().collect()
}

/// The PRETTY_NAME (or NAME VERSION) of the system whose root is `root`.
pub fn os_name(root: &Path) -> Option<String> {
    for rel in ["etc/os-release", "usr/lib/os-release"] {
        let mut rel = PathBuf::from(rel);
        // Follow a few links, each inside the root.
        for _ in 0..4 {
            match std::fs::symlink_metadata(root.join(&rel)) {
                Ok(md) if md.file_type().is_symlink() => {
                    let Ok(link) = std::fs::read_link(root.join(&rel)) else { break };
                    rel = within(rel.parent().unwrap_or(Path::new("")), &link);
                }
                Ok(md) if md.is_file() => {
                    if let Some(name) = std::fs::read_to_string(root.join(&rel)).ok().and_then(|t| parse_os_release(&t))
                    {
                        return Some(name);
                    }
                    break;
                }
                _ => break,
            }
        }
    }
    None
}

/// PRETTY_NAME, else NAME and VERSION, of an os-release file.
pub fn parse_os_release(text: &str) -> Option<String> {
    let get = |k: &str| {
        text.lines().find_map(|l| {
            let v = l.trim().strip_prefix(k)?.strip_prefix('=')?;
            let v = v.trim().trim_matches('"').trim_matches('\'').trim();
            (!v.is_empty()).then(|| v.to_string())
        })
    };
    get("PRETTY_NAME").or_else(|| match (get("NAME"), get("VERSION")) {
        (Some(n), Some(v)) => Some(format!("{n} {v}")),
        (n, _) => n,
    })
}

/// The line saying a disk carries an altdisk system.
pub fn system_line(name: &str, state: &str, created: &str) -> String {
    format!("the altdisk system {name} ({state}, made {created})")
}

/// What a disk holds, one line each: the altdisk system on it (see [`system_line`]), each
/// partition's filesystem (with label, size, where mounted, the OS on it), or, for a disk
/// without partitions, its signature (`a gpt partition table`). Pure.
pub fn describe(parts: &[PartContent], system: Option<String>, signature: Option<String>) -> Vec<String> {
    let mut v: Vec<String> = system.into_iter().collect();
    let mut found = false;
    for p in parts {
        let what = match p.fstype.as_str() {
            "" => continue,
            "swap" => "swap area".to_string(),
            "LVM2_member" => "LVM physical volume".to_string(),
            "crypto_LUKS" => "encrypted volume (LUKS)".to_string(),
            t if t.ends_with("raid_member") => format!("RAID member ({t})"),
            t => format!("{t} filesystem"),
        };
        found = true;
        let mut line = format!("{}: {what}", p.device.display());
        if !p.label.is_empty() {
            line.push_str(&format!(" `{}`", p.label));
        }
        line.push_str(&format!(", {}", size::human(p.size)));
        if !p.mountpoint.is_empty() {
            line.push_str(&format!(", mounted at {}", p.mountpoint));
        }
        if !p.os.is_empty() {
            line.push_str(&format!(", with {}", p.os));
        }
        v.push(line);
    }
    if parts.is_empty() {
        v.extend(signature);
    } else if !found {
        v.push(format!("{} partitions without a filesystem signature", parts.len()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_names() {
        assert_eq!(
            parse_os_release("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            parse_os_release("NAME=Fedora\nVERSION=\"40 (Workstation)\"\n").as_deref(),
            Some("Fedora 40 (Workstation)")
        );
        assert_eq!(parse_os_release("ID=x\n"), None);
    }

    #[test]
    fn links_stay_inside_the_root() {
        assert_eq!(within(Path::new("etc"), Path::new("../usr/lib/os-release")), PathBuf::from("usr/lib/os-release"));
        assert_eq!(
            within(Path::new("etc"), Path::new("../../../../host/etc/shadow")),
            PathBuf::from("host/etc/shadow")
        );
        assert_eq!(within(Path::new("etc"), Path::new("/usr/lib/os-release")), PathBuf::from("usr/lib/os-release"));
    }

    #[test]
    fn describes_what_is_erased() {
        let p = |n: u32, fstype: &str, label: &str, mp: &str, os: &str| PartContent {
            number: n,
            device: format!("/dev/sdb{n}").into(),
            size: 20 << 30,
            fstype: fstype.into(),
            label: label.into(),
            mountpoint: mp.into(),
            os: os.into(),
            ..Default::default()
        };
        let lines = describe(
            &[p(1, "vfat", "", "", ""), p(2, "ext4", "root", "", "Debian GNU/Linux 12"), p(3, "", "", "", "")],
            Some(system_line("altinst_rootvg", "complete (bootable)", "2025-01-01T00:00:00Z")),
            None,
        );
        assert_eq!(
            lines,
            vec![
                "the altdisk system altinst_rootvg (complete (bootable), made 2025-01-01T00:00:00Z)",
                "/dev/sdb1: vfat filesystem, 20.0G",
                "/dev/sdb2: ext4 filesystem `root`, 20.0G, with Debian GNU/Linux 12",
            ]
        );
        assert_eq!(describe(&[], None, Some("a gpt partition table".into())), vec!["a gpt partition table"]);
        assert_eq!(describe(&[p(1, "", "", "", "")], None, None), vec!["1 partitions without a filesystem signature"]);
        assert!(describe(&[], None, None).is_empty());
    }

    #[test]
    fn reads_a_system_root() {
        let dir = std::env::temp_dir().join(format!("altdisk-contents-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
        std::fs::write(dir.join("usr/lib/os-release"), "PRETTY_NAME=\"Test OS 1\"\n").unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", dir.join("etc/os-release")).unwrap();
        assert_eq!(os_name(&dir).as_deref(), Some("Test OS 1"));
        // A link that points out of the root is read inside it (where nothing is).
        std::fs::remove_file(dir.join("etc/os-release")).unwrap();
        std::fs::remove_file(dir.join("usr/lib/os-release")).unwrap();
        std::os::unix::fs::symlink("/../../etc/os-release", dir.join("etc/os-release")).unwrap();
        assert_eq!(os_name(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
