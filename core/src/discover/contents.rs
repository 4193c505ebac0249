//! What a disk holds now, in the words a person about to erase it needs: its partitions
//! (number, name, start, size, filesystem, label, where mounted) and an operating system
//! found on them, by the `PRETTY_NAME` of its os-release.
//!
//! Promises:
//! - Nothing is written and nothing is mounted. A mounted filesystem is read where it is
//!   mounted; an unmounted ext2/3/4 filesystem is read with `debugfs -c` (read-only, from
//!   the device, without the kernel mounting it); other unmounted filesystems are not
//!   looked into.
//! - Only what the caller allows is read ([`Look::unmounted`]): the service does not look
//!   into disks a job is writing.
//! - Paths inside a looked-at system never lead out of it: os-release links are resolved
//!   within its root.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use crate::discover::blockdev::{Disk, Partition, Probe};
use crate::discover::mounts::Mount;
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
    /// Read unmounted filesystems too (debugfs); false: only mounted ones.
    pub unmounted: bool,
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

fn find_os(c: &PartContent, mounted: Option<&Mount>, unheld: bool, look: &Look) -> Option<String> {
    if let Some(m) = mounted {
        // Read where it is mounted, when the whole filesystem is mounted there.
        return if m.root == "/" { os_name(&m.target) } else { None };
    }
    // Tiny filesystems (an ESP, /boot) hold no system; held ones belong to something else.
    if !look.unmounted || !unheld || c.size < 256 << 20 || !matches!(c.fstype.as_str(), "ext2" | "ext3" | "ext4") {
        return None;
    }
    let key = (c.fstype.clone(), c.uuid.clone());
    if let (Some(cache), false) = (look.cache, c.uuid.is_empty()) {
        if let Some(os) = cache.found.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Some(os.clone()).filter(|s| !s.is_empty());
        }
    }
    // /etc/os-release is usually a link to /usr/lib/os-release, which debugfs does not
    // follow (it prints nothing for a link): the file first where it is a file.
    let os = ["/etc/os-release", "/usr/lib/os-release"]
        .into_iter()
        .find_map(|f| ext_file(&c.device, f).and_then(|t| parse_os_release(&t)));
    if let (Some(cache), false) = (look.cache, c.uuid.is_empty()) {
        cache.found.lock().unwrap_or_else(|e| e.into_inner()).insert(key, os.clone().unwrap_or_default());
    }
    os
}

/// A file of the unmounted ext2/3/4 filesystem on `dev`, read by debugfs in read-only
/// catastrophic mode (no bitmaps read); None when it is not there or debugfs is missing.
fn ext_file(dev: &Path, file: &str) -> Option<String> {
    let out = crate::cmd::Cmd::new(format!("reading {file} on {}", dev.display()), "debugfs")
        .ok()?
        .args(["-c", "-R"])
        .arg(format!("cat {file}"))
        .arg(dev)
        .run()
        .ok()?;
    (!out.stdout.trim().is_empty()).then_some(out.stdout)
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
    fn reads_an_unmounted_ext4_without_mounting_it() {
        if crate::cmd::which("mkfs.ext4").is_err() || crate::cmd::which("debugfs").is_err() {
            eprintln!("SKIPPED: needs mkfs.ext4 and debugfs (e2fsprogs)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("altdisk-contents-ext4-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("root/usr/lib")).unwrap();
        std::fs::create_dir_all(dir.join("root/etc")).unwrap();
        std::fs::write(dir.join("root/usr/lib/os-release"), "PRETTY_NAME=\"Test OS 2\"\n").unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", dir.join("root/etc/os-release")).unwrap();
        let img = dir.join("fs.img");
        std::fs::File::create(&img).unwrap().set_len(300 << 20).unwrap();
        let ok = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-d"])
            .arg(dir.join("root"))
            .arg(&img)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let c = PartContent {
            device: img.clone(),
            size: 300 << 20,
            fstype: "ext4".into(),
            uuid: "u1".into(),
            ..Default::default()
        };
        let cache = OsCache::default();
        let look = Look { table: &[], unmounted: true, cache: Some(&cache) };
        assert_eq!(find_os(&c, None, true, &look).as_deref(), Some("Test OS 2"));
        // Cached by UUID: found again without reading (the file is gone now).
        std::fs::remove_file(&img).unwrap();
        assert_eq!(find_os(&c, None, true, &look).as_deref(), Some("Test OS 2"));
        let not_allowed = Look { table: &[], unmounted: false, cache: None };
        assert_eq!(find_os(&c, None, true, &not_allowed), None);
        std::fs::remove_dir_all(&dir).unwrap();
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
