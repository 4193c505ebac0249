//! Boot environments: the record each clone carries on its disks, naming it
//! (`altinst_rootvg`), saying where it came from and what state it is in. The record lives in
//! the small `altdisk-meta` GPT partition at the start of every target disk, so any system
//! that sees the disk can read it without mounting anything (AIX keeps the same in the VG
//! descriptor). It is written `incomplete` before anything else on the target and only moves
//! on when a phase has finished, so an interrupted run is always recognisable.
//!
//! Format: the magic `ALTDISK1`, a little-endian u32 length, then that many bytes of JSON.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, IoContext, Result};

const MAGIC: &[u8; 8] = b"ALTDISK1";
const MAX_LEN: usize = 1024 * 1024 - 12;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Being built, or a run stopped before finishing a phase.
    Incomplete,
    /// Phase 1 done: the copy is complete and has its own identities.
    Copied,
    /// Phase 2 done: customised.
    Customized,
    /// Phase 3 done: bootable.
    Complete,
}

impl State {
    pub fn describe(self) -> &'static str {
        match self {
            State::Incomplete => "incomplete",
            State::Copied => "phase 1 done (copied)",
            State::Customized => "phase 2 done (customized)",
            State::Complete => "complete (bootable)",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvFs {
    pub mountpoint: String,
    pub fstype: String,
    pub uuid: String,
    pub partuuid: String,
    pub label: Option<String>,
    /// Index of the disk (in `disks`) holding it, and its partition number (0 on LVM).
    pub disk: usize,
    pub partition: u32,
    /// The logical volume holding it, in the record's volume group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lv: Option<String>,
    /// btrfs: the subvolume mounted there ("/@home"); several entries then share one
    /// filesystem (one UUID, one partition or volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subvol: Option<String>,
}

/// A LUKS2 container of the system: which partition, its UUID, and the mapping name its
/// crypttab gives it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvCrypt {
    pub name: String,
    pub uuid: String,
    pub disk: usize,
    pub partition: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceInfo {
    pub hostname: String,
    pub root: PathBuf,
    pub live: bool,
    pub disks: Vec<String>,
    /// Filesystem UUID of the source's root, to recognise it later as old_rootvg.
    #[serde(default)]
    pub root_uuid: Option<String>,
    /// Partition-table UUIDs of the source's disks: old_rootvg is recognised by them where
    /// its root filesystem cannot be read without opening something (inside LUKS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_ids: Vec<String>,
}

impl SourceInfo {
    /// Whether a disk whose partition table has UUID `ptuuid` is one of the source's disks.
    pub fn had_disk(&self, ptuuid: Option<&str>) -> bool {
        ptuuid.is_some_and(|p| !p.is_empty() && self.disk_ids.iter().any(|d| d.eq_ignore_ascii_case(p)))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootEnv {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub name: String,
    pub id: Uuid,
    pub state: State,
    pub phases_done: Vec<u8>,
    pub source: SourceInfo,
    pub created: String,
    pub updated: String,
    /// GPT disk GUIDs of every disk of this system, in order.
    pub disks: Vec<Uuid>,
    /// Which of them this copy of the record is on.
    pub disk_index: usize,
    pub filesystems: Vec<EnvFs>,
    pub swaps: Vec<EnvFs>,
    /// The LVM volume group of this system, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vg: Option<String>,
    /// Its LUKS2 containers (an encrypted system).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crypts: Vec<EnvCrypt>,
    /// The UEFI Boot#### entry made for this system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_entry: Option<u16>,
    /// Set by a trial boot: the entry becomes permanent once the system came up healthy.
    #[serde(default)]
    pub trial: bool,
    /// The step a run was at when this record was written, while the state is incomplete
    /// ("partitioning", "copying files", "writing the boot order"...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Why the last run stopped, when it did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When phase 1 (a copy or a refresh) last finished writing files, in nanoseconds since
    /// 1970: an entry of the clone whose inode changed later was changed by someone else (a
    /// refresh then compares it closely).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<i64>,
    /// When that copy or refresh began reading the source, on the change tracker's clock
    /// and boot: changes the tracker saw from then on are what the next refresh compares
    /// ([`crate::discover::changes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_began: Option<Began>,
    /// The ext4 mount count of each of its filesystems (swap apart, in order) when that copy
    /// or refresh finished: a later mount raises it, so the next refresh knows whether the
    /// clone was mounted, and maybe changed, since. Empty when one cannot tell (not ext4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_counts: Vec<u32>,
    /// Whether phase 2 changed the clone (packages, scripts, a device reset...) rather than
    /// running with nothing to do; None in records written before it was kept (taken as
    /// customized when phase 2 ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customized: Option<bool>,
}

/// A moment on the change tracker's clock ([`crate::discover::changes::clock`]), with the
/// boot it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Began {
    pub boot_id: String,
    pub clock: i64,
}

impl Began {
    pub fn now() -> Began {
        Began { boot_id: crate::discover::changes::boot_id(), clock: crate::discover::changes::clock() }
    }
}

impl BootEnv {
    /// Whether the clone holds changes of its own from phase 2.
    pub fn was_customized(&self) -> bool {
        self.customized.unwrap_or(self.phases_done.contains(&2))
    }
}

/// The steps a record names while a run is at them (what `lspv` shows of an incomplete clone).
pub mod step {
    pub const PARTITIONING: &str = "partitioning";
    pub const MKFS: &str = "making filesystems";
    pub const COPYING: &str = "copying files";
    pub const REFRESHING: &str = "refreshing files from the source";
    pub const IDENTITIES: &str = "rewriting fstab and the clone's identities";
    pub const CUSTOMIZING: &str = "customizing (phase 2)";
    pub const BOOTABLE: &str = "making the clone bootable (phase 3)";
    pub const FLUSHING: &str = "flushing the clone to disk";
    pub const BOOT_ENTRY: &str = "writing the UEFI boot entry";
    pub const BOOT_ORDER: &str = "writing the UEFI boot order";
}

/// Nanoseconds since 1970.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// UTC time as RFC 3339, without pulling in a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub fn encode(env: &BootEnv) -> Result<Vec<u8>> {
    let json = serde_json::to_vec_pretty(env).map_err(|e| Error::corrupt("boot environment record", e.to_string()))?;
    if json.len() > MAX_LEN {
        return Err(Error::corrupt("boot environment record", "it is larger than its partition"));
    }
    let mut v = Vec::with_capacity(json.len() + 12);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&(json.len() as u32).to_le_bytes());
    v.extend_from_slice(&json);
    Ok(v)
}

/// None when the bytes are not an altdisk record (a blank or foreign partition).
pub fn decode(bytes: &[u8]) -> Option<Result<BootEnv>> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().ok()?) as usize;
    if len > MAX_LEN || 12 + len > bytes.len() {
        return Some(Err(Error::corrupt("boot environment record", "its length is out of range")));
    }
    Some(
        serde_json::from_slice(&bytes[12..12 + len])
            .map_err(|e| Error::corrupt("boot environment record", e.to_string())),
    )
}

/// Write the record at byte `offset` of `disk` (the meta partition's start) and flush it.
pub fn write_at(disk: &Path, offset: u64, env: &BootEnv) -> Result<()> {
    let bytes = encode(env)?;
    let mut f =
        std::fs::OpenOptions::new().write(true).open(disk).ctx("opening the target to record its state", disk)?;
    f.seek(SeekFrom::Start(offset)).ctx("recording the clone's state", disk)?;
    // Zero-pad to whole sectors so no stale tail of an older, longer record remains.
    let mut padded = bytes;
    padded.resize(padded.len().div_ceil(4096) * 4096 + 4096, 0);
    f.write_all(&padded).ctx("recording the clone's state", disk)?;
    f.sync_all().ctx("flushing the clone's state", disk)
}

/// Byte offset of the altdisk-meta partition of a disk, if it has one.
pub fn meta_offset(disk: &Path) -> Option<u64> {
    let gpt = crate::discover::gpt::read_gpt(disk)?;
    let meta = Uuid::parse_str(crate::discover::gpt::META_TYPE).ok()?.to_bytes_le();
    let (_, part) = gpt.iter().find(|(_, p)| p.is_used() && p.partition_type_guid == meta)?;
    Some(part.starting_lba * gpt.sector_size)
}

/// Rewrite the record of a disk that already has one.
pub fn update(disk: &Path, env: &BootEnv) -> Result<()> {
    let off = meta_offset(disk).ok_or_else(|| {
        Error::not_found(
            format!("altdisk record on {}", disk.display()),
            "the disk has no altdisk-meta partition",
            "nothing to update",
        )
    })?;
    let mut e = env.clone();
    e.updated = now_rfc3339();
    write_at(disk, off, &e)
}

/// Read the record of a disk (or image file) by finding its altdisk-meta partition.
pub fn read(disk: &Path) -> Option<Result<BootEnv>> {
    let gpt = crate::discover::gpt::read_gpt(disk)?;
    let meta = Uuid::parse_str(crate::discover::gpt::META_TYPE).ok()?.to_bytes_le();
    let (_, part) = gpt.iter().find(|(_, p)| p.is_used() && p.partition_type_guid == meta)?;
    let offset = part.starting_lba * gpt.sector_size;
    let mut f = std::fs::File::open(disk).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = f.read(&mut buf).ok()?;
    let mut bytes = buf[..n].to_vec();
    if bytes.len() >= 12 && &bytes[..8] == MAGIC {
        let len = u32::from_le_bytes(bytes[8..12].try_into().ok()?) as usize;
        if 12 + len > bytes.len() && len <= MAX_LEN {
            let mut rest = vec![0u8; 12 + len - bytes.len()];
            f.read_exact(&mut rest).ok()?;
            bytes.extend(rest);
        }
    }
    decode(&bytes)
}

/// What udev should know about a block device of an altdisk system (`altdisk udev-probe`):
/// `ALTDISK_SYSTEM` (the system's name), `ALTDISK_NAME` (root, boot, home, efi, swap, meta;
/// from its mount point), `ALTDISK_STATE`, and `ALTDISK_RUNNING=1` for the running system.
/// Empty for devices of disks without an altdisk record.
pub fn udev_properties(dev: &Path) -> Vec<(String, String)> {
    let Some(name) = dev.file_name().map(|n| n.to_string_lossy().into_owned()) else { return Vec::new() };
    let sys = Path::new("/sys/class/block").join(&name);
    // A partition has a "partition" attribute and its disk as the parent directory.
    let part: Option<u32> = std::fs::read_to_string(sys.join("partition")).ok().and_then(|s| s.trim().parse().ok());
    let disk_name = match part {
        Some(_) => std::fs::canonicalize(&sys)
            .ok()
            .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned())),
        None => Some(name.clone()),
    };
    let Some(disk_name) = disk_name else { return Vec::new() };
    let disk = PathBuf::from("/dev").join(&disk_name);
    let Some(Ok(env)) = read(&disk) else { return Vec::new() };
    let mut v = vec![
        ("ALTDISK_SYSTEM".to_string(), env.name.clone()),
        ("ALTDISK_STATE".to_string(), format!("{:?}", env.state).to_lowercase()),
    ];
    if running_disk_is(&disk_name) {
        v.push(("ALTDISK_RUNNING".into(), "1".into()));
    }
    if let Some(n) = part {
        let label = if crate::discover::gpt::read_gpt(&disk)
            .and_then(|g| g.iter().find(|(i, _)| *i == n).map(|(_, p)| p.partition_type_guid))
            == Uuid::parse_str(crate::discover::gpt::META_TYPE).ok().map(|u| u.to_bytes_le())
        {
            Some("meta".to_string())
        } else {
            env.filesystems.iter().chain(env.swaps.iter()).find(|f| f.disk == env.disk_index && f.partition == n).map(
                |f| match f.mountpoint.as_str() {
                    "/" => "root".to_string(),
                    "swap" => "swap".to_string(),
                    "/boot/efi" | "/efi" => "efi".to_string(),
                    mp => mp.trim_start_matches('/').replace('/', "-"),
                },
            )
        };
        if let Some(l) = label {
            v.push(("ALTDISK_NAME".into(), l));
        }
    }
    v
}

fn running_disk_is(disk_name: &str) -> bool {
    let Ok(t) = crate::discover::mounts::read() else { return false };
    let Some(root) = crate::discover::mounts::mount_at(&t, Path::new("/")) else { return false };
    let dev = Path::new("/sys/dev/block").join(format!("{}:{}", root.major, root.minor));
    let Ok(real) = std::fs::canonicalize(dev) else { return false };
    // The root device is the disk itself or one of its partitions.
    real.file_name().map(|n| n == disk_name).unwrap_or(false)
        || real.parent().and_then(|p| p.file_name()).map(|n| n == disk_name).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BootEnv {
        BootEnv {
            api_version: crate::API_VERSION.into(),
            name: "altinst_rootvg".into(),
            id: Uuid::new_v4(),
            state: State::Incomplete,
            phases_done: vec![],
            source: SourceInfo {
                hostname: "prod".into(),
                root: "/".into(),
                live: true,
                disks: vec!["vda".into()],
                root_uuid: None,
                disk_ids: vec![],
            },
            created: now_rfc3339(),
            updated: now_rfc3339(),
            disks: vec![Uuid::new_v4()],
            disk_index: 0,
            filesystems: vec![],
            swaps: vec![],
            vg: None,
            crypts: vec![],
            boot_entry: None,
            trial: false,
            step: None,
            note: None,
            synced: None,
            copy_began: None,
            mount_counts: vec![],
            customized: None,
        }
    }

    #[test]
    fn round_trips() {
        let e = sample();
        let b = encode(&e).unwrap();
        assert_eq!(decode(&b).unwrap().unwrap(), e);
        assert!(decode(&[0u8; 100]).is_none());
        let mut bad = b.clone();
        bad[20] = b'!';
        assert!(decode(&bad).unwrap().is_err());
    }

    #[test]
    fn source_disks_are_known_by_their_partition_tables() {
        let mut e = sample();
        assert!(!e.source.had_disk(Some("0b2c1f3a-aaaa-4bbb-8ccc-0123456789ab")), "no ids recorded");
        e.source.disk_ids = vec!["0B2C1F3A-AAAA-4BBB-8CCC-0123456789AB".into(), "8e1d2c3b".into()];
        assert!(e.source.had_disk(Some("0b2c1f3a-aaaa-4bbb-8ccc-0123456789ab")));
        assert!(e.source.had_disk(Some("8e1d2c3b")), "an MBR disk identifier");
        assert!(!e.source.had_disk(Some("8e1d2c3c")));
        assert!(!e.source.had_disk(Some("")));
        assert!(!e.source.had_disk(None));
        // It survives the record, and records written before it read as having none.
        let back = decode(&encode(&e).unwrap()).unwrap().unwrap();
        assert_eq!(back.source.disk_ids, e.source.disk_ids);
        let old = serde_json::to_string(&sample()).unwrap();
        assert!(!old.contains("disk_ids"));
    }

    #[test]
    fn customized_only_when_phase_2_changed_something() {
        let mut e = sample();
        e.phases_done = vec![1, 2, 3];
        assert!(e.was_customized(), "an older record: phase 2 ran, taken as customized");
        e.customized = Some(false);
        assert!(!e.was_customized());
        e.customized = Some(true);
        assert!(e.was_customized());
        e.customized = None;
        e.phases_done = vec![1, 3];
        assert!(!e.was_customized());
    }

    #[test]
    fn time_looks_right() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20"), "{t}");
        assert!(t.ends_with('Z'));
    }
}
