//! The plan: what will be written where, derived purely from the discovered source, the
//! resolved targets and the options, before any disk is touched. A plan is serialisable
//! (`--json`), printable as text, and complete: executing it needs no further decisions.
//!
//! Layout rules: GPT on every target; a 1 MiB `altdisk-meta` partition first on each disk
//! (the clone's state, readable without mounting); a BIOS boot partition and an ESP when the
//! source has them (on the first disk, which boots); one filesystem per source filesystem;
//! swap recreated. Sizes come from used space plus headroom, the root filesystem takes the
//! rest of its disk, and partitions that do not fit spill to the next target.
//!
//! The editable part is the [`Layout`] (TOML, `altdisk layout`, `-i FILE`), the counterpart of
//! AIX's image.data: filesystem types, labels, sizes; a source filesystem left out of it is
//! merged into its parent; a mount point that is not a source filesystem is split out of its
//! parent and needs a size.

pub mod customize;
pub mod lock;
pub mod safety;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::discover::gpt::{LINUX_FS_TYPE, LVM_TYPE, META_NAME, META_TYPE, SWAP_TYPE};
use crate::discover::source::{self, Source};
use crate::error::{Error, Result};
use crate::size::{self, GIB, MIB};

/// LVM's default extent, and room for its metadata at the start of each physical volume.
const EXTENT: u64 = 4 * MIB;
const PV_OVERHEAD: u64 = 2 * MIB;

/// Space kept free at the start (GPT, alignment) and end (backup GPT) of each disk.
const DISK_HEAD: u64 = MIB;
const DISK_TAIL: u64 = MIB;
const META_SIZE: u64 = MIB;
const BIOS_BOOT_SIZE: u64 = MIB;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phases {
    #[serde(rename = "1")]
    P1,
    #[serde(rename = "2")]
    P2,
    #[serde(rename = "3")]
    P3,
    #[serde(rename = "12")]
    P12,
    #[serde(rename = "23")]
    P23,
    All,
}

impl Phases {
    pub fn parse(s: &str) -> Result<Phases> {
        Ok(match s.trim().trim_matches('\'') {
            "1" => Phases::P1,
            "2" => Phases::P2,
            "3" => Phases::P3,
            "12" => Phases::P12,
            "23" => Phases::P23,
            "all" | "123" => Phases::All,
            other => {
                return Err(Error::usage(
                    format!("phase `{other}`"),
                    "it is not a phase",
                    "use -P 1, 2, 3, 12, 23 or all",
                ))
            }
        })
    }

    /// As `-P` takes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phases::P1 => "1",
            Phases::P2 => "2",
            Phases::P3 => "3",
            Phases::P12 => "12",
            Phases::P23 => "23",
            Phases::All => "all",
        }
    }

    pub fn has(&self, n: u8) -> bool {
        match self {
            Phases::P1 => n == 1,
            Phases::P2 => n == 2,
            Phases::P3 => n == 3,
            Phases::P12 => n <= 2,
            Phases::P23 => n >= 2,
            Phases::All => true,
        }
    }
}

/// The editable layout, as TOML.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(rename = "filesystem", default)]
    pub filesystems: Vec<LayoutFs>,
    #[serde(rename = "swap", default)]
    pub swaps: Vec<LayoutSwap>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LayoutFs {
    pub mountpoint: String,
    /// ext2, ext3, ext4, xfs, btrfs, vfat (the ESP only).
    pub fstype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// "auto" (used space plus headroom), "grow" (the rest of its disk) or a size ("20G").
    #[serde(default = "auto")]
    pub size: String,
    /// The logical volume holding it in the clone's volume group (LVM sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lv: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LayoutSwap {
    pub size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lv: Option<String>,
}

fn auto() -> String {
    "auto".into()
}

impl Layout {
    pub fn parse(text: &str, origin: &str) -> Result<Layout> {
        toml::from_str(text).map_err(|e| {
            Error::usage(
                format!("layout file {origin}"),
                format!("it is not valid: {}", e.message().trim()),
                "fix it, or start again from `altdisk layout`",
            )
        })
    }

    pub fn to_toml(&self) -> String {
        let head = "# altdisk layout (the counterpart of AIX image.data). Edit and pass with -i FILE.\n\
                    # size: \"auto\" (used space plus headroom), \"grow\" (the rest of its disk) or e.g. \"20G\".\n\
                    # fstype: ext2, ext3, ext4, xfs, btrfs (vfat for the ESP).\n\
                    # Leave a filesystem out to merge it into its parent; add a mount point to split it out.\n\n";
        format!("{head}{}", toml::to_string_pretty(self).unwrap_or_default())
    }
}

/// A label for the clone's copy: AIX prefixes alternate objects with `alt_`; a label that
/// already has the prefix loses it, so a clone of a clone gets the original name back and
/// no two generations share a label.
pub fn alt_label(label: &str, max: usize) -> String {
    let l = match label.strip_prefix("alt_") {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => format!("alt_{label}"),
    };
    l.chars().take(max).collect()
}

pub fn label_max(fstype: &str) -> usize {
    match fstype {
        "xfs" => 12,
        "vfat" => 11,
        "btrfs" => 255,
        "swap" => 15,
        _ => 16,
    }
}

/// Minimum filesystem size mkfs accepts, with room to be useful.
fn min_size(fstype: &str) -> u64 {
    match fstype {
        "xfs" => 300 * MIB,
        "btrfs" => 256 * MIB,
        "vfat" => 64 * MIB,
        _ => 32 * MIB,
    }
}

/// Used space plus headroom for metadata, journal and growth.
fn needed(used: u64, used_inodes: u64, fstype: &str) -> u64 {
    let base = used + used / 5 + used_inodes * 256 + 64 * MIB;
    size::round_up(base.max(min_size(fstype)), MIB)
}

/// The filesystem the layout gives by default for a source filesystem.
pub fn default_layout(src: &Source, convert_ext: bool) -> Layout {
    let filesystems = src
        .filesystems
        .iter()
        .map(|f| {
            let fstype = if convert_ext && matches!(f.fstype.as_str(), "ext2" | "ext3") {
                "ext4".to_string()
            } else {
                f.fstype.clone()
            };
            LayoutFs {
                mountpoint: f.mountpoint.clone(),
                label: f.probe.label.as_deref().map(|l| alt_label(l, label_max(&fstype))),
                size: if let Some(lv) = &f.lv {
                    // Logical volumes keep their size, as AIX keeps its logical volumes'.
                    format!("{}M", lv.size.div_ceil(MIB))
                } else if f.mountpoint == "/" && !src.filesystems.iter().any(|x| x.lv.is_some()) {
                    "grow".into()
                } else if f.mountpoint == "/" {
                    "auto".into()
                } else if source::is_esp(f) {
                    size::human(f.device_size.max(min_size("vfat")))
                } else {
                    "auto".into()
                },
                fstype,
                lv: f.lv.as_ref().map(|l| l.lv.clone()),
            }
        })
        .collect();
    let swaps = src
        .swaps
        .iter()
        .map(|s| LayoutSwap {
            size: format!("{}M", s.size.div_ceil(MIB)),
            label: s.probe.label.as_deref().map(|l| alt_label(l, 15)),
            lv: s.lv.as_ref().map(|l| l.lv.clone()),
        })
        .collect();
    Layout { filesystems, swaps }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanDisk {
    /// As the user wrote it.
    pub name: String,
    pub path: PathBuf,
    pub alias: Option<String>,
    pub size: u64,
    /// Set for image files: whether altdisk creates (or grows) the file.
    pub image: Option<ImageTarget>,
    pub disk_guid: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageTarget {
    pub create: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "index", rename_all = "kebab-case")]
pub enum PartRole {
    Meta,
    BiosBoot,
    Filesystem(usize),
    Swap(usize),
    /// An LVM physical volume of the clone's volume group.
    Pv,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanPart {
    pub disk: usize,
    pub number: u32,
    pub start: u64,
    pub size: u64,
    pub type_guid: String,
    pub guid: Uuid,
    pub name: String,
    pub role: PartRole,
}

/// The identities of the source filesystem a planned one is made from.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SourceRef {
    pub device: PathBuf,
    pub path: PathBuf,
    pub fstype: String,
    pub uuid: Option<String>,
    pub partuuid: Option<String>,
    pub label: Option<String>,
    pub partlabel: Option<String>,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFs {
    pub mountpoint: String,
    pub fstype: String,
    pub label: Option<String>,
    pub uuid: String,
    pub size: u64,
    pub used: u64,
    pub grow: bool,
    /// None for a mount point split out of its parent.
    pub source: Option<SourceRef>,
    /// Source mount points whose contents go into this filesystem.
    pub merged: Vec<String>,
    /// Index into `partitions`; `usize::MAX` for a filesystem on a logical volume.
    pub part: usize,
    /// The logical volume holding it, in `Plan::vg`.
    #[serde(default)]
    pub lv: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanSwap {
    pub size: u64,
    pub label: Option<String>,
    pub uuid: String,
    pub source: Option<SourceRef>,
    pub part: usize,
    #[serde(default)]
    pub lv: Option<String>,
}

/// The clone's LVM volume group, when the source keeps filesystems on LVM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanVg {
    pub name: String,
    /// (name, size in bytes) of each logical volume, in creation order.
    pub lvs: Vec<(String, u64)>,
}

/// Everything the executor needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub name: String,
    pub id: Uuid,
    pub source: Source,
    pub targets: Vec<PlanDisk>,
    pub partitions: Vec<PlanPart>,
    pub filesystems: Vec<PlanFs>,
    pub swaps: Vec<PlanSwap>,
    pub phases: Phases,
    pub mount_at: PathBuf,
    /// Exclude patterns, as given.
    pub exclude: Vec<String>,
    pub needed: u64,
    pub warnings: Vec<String>,
    /// How the clone is made bootable (phase 3), when it is.
    #[serde(default)]
    pub boot: Option<crate::discover::boot::BootSetup>,
    /// What phase 3 does with the firmware boot order.
    #[serde(default)]
    pub bootlist: BootlistMode,
    /// Phase 2: the customization of the clone.
    #[serde(default)]
    pub customize: crate::plan::customize::Customize,
    /// The clone's volume group (LVM sources); its physical volumes are the `Pv` partitions.
    #[serde(default)]
    pub vg: Option<PlanVg>,
}

/// What phase 3 does with the UEFI boot order.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BootlistMode {
    /// The clone first in BootOrder, the old entries after it (AIX default).
    #[default]
    First,
    /// Leave BootOrder alone (-B); the clone's entry is still made.
    Leave,
    /// BootNext only: one trial boot; the clone makes itself permanent once up.
    Trial,
}

/// A target as resolved and measured by the caller.
#[derive(Debug, Clone)]
pub struct TargetIn {
    pub name: String,
    pub path: PathBuf,
    pub alias: Option<String>,
    /// Current size; for a new image file, None (sized from the plan or `image_size`).
    pub size: Option<u64>,
    pub image: bool,
}

/// Everything the plan is built from besides the source and the targets: a plan is complete
/// when [`build`] returns it, and nothing patches it afterwards.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub layout: Option<Layout>,
    pub convert_ext: bool,
    pub skip_space_check: bool,
    /// --size for image files.
    pub image_size: Option<u64>,
    pub phases: Phases,
    pub mount_at: PathBuf,
    /// Exclude patterns, as given.
    pub exclude: Vec<String>,
    pub bootlist: BootlistMode,
    pub customize: crate::plan::customize::Customize,
    /// How the source boots (phase 3), found before planning; None when phase 3 is not run
    /// or `-g` let a source that cannot be made bootable through.
    pub boot: Option<crate::discover::boot::BootSetup>,
    /// Warnings found while discovering, carried into the plan.
    pub warnings: Vec<String>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            layout: None,
            convert_ext: false,
            skip_space_check: false,
            image_size: None,
            phases: Phases::All,
            mount_at: PathBuf::from(crate::ALT_INST),
            exclude: Vec::new(),
            bootlist: BootlistMode::First,
            customize: Default::default(),
            boot: None,
            warnings: Vec::new(),
        }
    }
}

fn source_ref(f: &crate::discover::source::SourceFs) -> SourceRef {
    SourceRef {
        device: f.device.clone(),
        path: f.path.clone(),
        fstype: f.fstype.clone(),
        uuid: f.probe.uuid.clone(),
        partuuid: f.probe.partuuid.clone(),
        label: f.probe.label.clone(),
        partlabel: f.probe.partlabel.clone(),
        paths: f.paths.clone(),
    }
}

fn new_fs_uuid(fstype: &str) -> String {
    let u = Uuid::new_v4();
    if fstype == "vfat" {
        let b = u.as_bytes();
        format!("{:02X}{:02X}-{:02X}{:02X}", b[0], b[1], b[2], b[3])
    } else {
        u.to_string()
    }
}

fn check_fstype(fs: &LayoutFs, esp: bool) -> Result<()> {
    let ok = if esp {
        fs.fstype == "vfat"
    } else {
        matches!(fs.fstype.as_str(), "ext2" | "ext3" | "ext4" | "xfs" | "btrfs")
    };
    if ok {
        return Ok(());
    }
    Err(Error::usage(
        format!("filesystem type `{}` for {}", fs.fstype, fs.mountpoint),
        if esp { "the EFI system partition must stay vfat" } else { "altdisk makes ext2, ext3, ext4, xfs and btrfs" },
        "change fstype in the layout file",
    ))
}

/// One item to place on a disk.
struct Item {
    role: PartRole,
    need: u64,
    type_guid: String,
    name: String,
    first_disk_only: bool,
}

/// Build the plan. Pure: reads nothing from disks.
pub fn build(src: &Source, targets: &[TargetIn], opts: &PlanOptions, name: &str) -> Result<Plan> {
    if targets.is_empty() {
        return Err(Error::usage("-d", "no target disk was named", "name one or more disks: -d sdb or -d \"sdb sdc\""));
    }
    let layout = match &opts.layout {
        Some(l) => l.clone(),
        None => default_layout(src, opts.convert_ext),
    };
    let mut warnings = opts.warnings.clone();

    // Validate the layout against the source.
    let mut seen = std::collections::BTreeSet::new();
    for fs in &layout.filesystems {
        if !fs.mountpoint.starts_with('/') || fs.mountpoint.contains("/../") || fs.mountpoint.ends_with("/..") {
            return Err(Error::usage(
                format!("layout mount point `{}`", fs.mountpoint),
                "it is not an absolute path",
                "write it as /path",
            ));
        }
        if !seen.insert(fs.mountpoint.clone()) {
            return Err(Error::usage(
                format!("layout mount point {}", fs.mountpoint),
                "it is listed twice",
                "keep one entry per mount point",
            ));
        }
    }
    if !seen.contains("/") {
        return Err(Error::usage(
            "layout file",
            "it has no filesystem for /",
            "add a [[filesystem]] with mountpoint = \"/\"",
        ));
    }

    let mut filesystems: Vec<PlanFs> = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    // (role, LV name, size, grows) of what lives on logical volumes.
    let mut lv_items: Vec<(PartRole, String, u64, bool)> = Vec::new();
    for lf in &layout.filesystems {
        let sf = src.filesystems.iter().find(|f| f.mountpoint == lf.mountpoint);
        let esp = sf.map(source::is_esp).unwrap_or(false);
        check_fstype(lf, esp)?;
        if let Some(l) = &lf.label {
            if l.chars().count() > label_max(&lf.fstype) {
                return Err(Error::usage(
                    format!("label `{l}` for {}", lf.mountpoint),
                    format!("{} labels hold at most {} characters", lf.fstype, label_max(&lf.fstype)),
                    "shorten it in the layout file",
                ));
            }
        }
        // Source filesystems left out of the layout are merged into the nearest listed parent.
        let merged: Vec<&crate::discover::source::SourceFs> = src
            .filesystems
            .iter()
            .filter(|f| f.mountpoint != lf.mountpoint && !seen.contains(&f.mountpoint))
            .filter(|f| nearest_parent(&f.mountpoint, &seen) == lf.mountpoint)
            .collect();
        let used = sf.map(|f| f.used_bytes).unwrap_or(0) + merged.iter().map(|f| f.used_bytes).sum::<u64>();
        let inodes = sf.map(|f| f.used_inodes).unwrap_or(0) + merged.iter().map(|f| f.used_inodes).sum::<u64>();
        for m in &merged {
            warnings.push(format!("{} is not in the layout: its files go into {}", m.mountpoint, lf.mountpoint));
        }
        let (need, grow) = match lf.size.as_str() {
            "auto" if sf.is_none() => {
                return Err(Error::usage(
                    format!("layout mount point {}", lf.mountpoint),
                    "it is not a filesystem of the source, so its size cannot be derived",
                    "give it a size such as \"10G\" (its files are split out of the parent filesystem)",
                ))
            }
            "auto" => (needed(used, inodes, &lf.fstype), false),
            "grow" => (needed(used, inodes, &lf.fstype), true),
            s => {
                let v = size::round_up(size::parse(s)?, MIB);
                if v < min_size(&lf.fstype) {
                    return Err(Error::usage(
                        format!("size {s} for {}", lf.mountpoint),
                        format!("{} needs at least {}", lf.fstype, size::human(min_size(&lf.fstype))),
                        "give a larger size",
                    ));
                }
                if v < used && !opts.skip_space_check {
                    return Err(Error::TooSmall {
                        what: format!("size {s} for {}", lf.mountpoint),
                        needed: size::human(needed(used, inodes, &lf.fstype)),
                        available: size::human(v),
                        todo: "give a larger size in the layout file (or -S to skip this check)".into(),
                    });
                }
                (v, false)
            }
        };
        if sf.is_none() {
            warnings.push(format!("{} becomes a filesystem of its own, split out of its parent", lf.mountpoint));
        }
        let idx = filesystems.len();
        let part_name = match sf.and_then(|f| f.probe.partlabel.as_deref()) {
            Some(pl) => alt_label(pl, 36),
            None if esp => "alt_esp".into(),
            None if lf.mountpoint == "/" => "alt_root".into(),
            None => alt_label(lf.mountpoint.trim_start_matches('/').replace('/', "_").as_str(), 36),
        };
        let type_guid = match sf.and_then(|f| f.probe.parttype.clone()) {
            Some(t) => t,
            None if esp => source::ESP_TYPE.into(),
            None => LINUX_FS_TYPE.into(),
        };
        match &lf.lv {
            Some(lv) => {
                check_lv_name(lv)?;
                if esp {
                    return Err(Error::usage(
                        format!("layout for {}", lf.mountpoint),
                        "the EFI system partition cannot live on LVM",
                        "remove lv from it",
                    ));
                }
                lv_items.push((PartRole::Filesystem(idx), lv.clone(), need, grow));
            }
            None => items.push(Item {
                role: PartRole::Filesystem(idx),
                need,
                type_guid,
                name: part_name,
                first_disk_only: esp,
            }),
        }
        filesystems.push(PlanFs {
            mountpoint: lf.mountpoint.clone(),
            fstype: lf.fstype.clone(),
            label: lf.label.clone(),
            uuid: new_fs_uuid(&lf.fstype),
            size: need,
            used,
            grow,
            source: sf.map(source_ref),
            merged: merged.iter().map(|f| f.mountpoint.clone()).collect(),
            part: usize::MAX,
            lv: lf.lv.clone(),
        });
    }
    // Mount order: parents first.
    let mut order: Vec<usize> = (0..filesystems.len()).collect();
    order.sort_by_key(|&i| (filesystems[i].mountpoint.matches('/').count(), filesystems[i].mountpoint != "/"));

    let mut swaps = Vec::new();
    for (i, ls) in layout.swaps.iter().enumerate() {
        let v = size::round_up(size::parse(&ls.size)?, MIB).max(MIB * 16);
        let s = src.swaps.get(i);
        if let Some(lv) = &ls.lv {
            check_lv_name(lv)?;
            lv_items.push((PartRole::Swap(swaps.len()), lv.clone(), v, false));
        } else {
            items.push(Item {
                role: PartRole::Swap(swaps.len()),
                need: v,
                type_guid: s.and_then(|s| s.probe.parttype.clone()).unwrap_or_else(|| SWAP_TYPE.into()),
                name: s
                    .and_then(|s| s.probe.partlabel.as_deref())
                    .map(|l| alt_label(l, 36))
                    .unwrap_or_else(|| "alt_swap".into()),
                first_disk_only: false,
            });
        }
        swaps.push(PlanSwap {
            size: v,
            label: ls.label.clone(),
            uuid: Uuid::new_v4().to_string(),
            source: s.map(|s| SourceRef {
                device: s.device.clone(),
                path: s.device.clone(),
                fstype: "swap".into(),
                uuid: s.probe.uuid.clone(),
                partuuid: s.probe.partuuid.clone(),
                label: s.probe.label.clone(),
                partlabel: s.probe.partlabel.clone(),
                paths: s.paths.clone(),
            }),
            part: usize::MAX,
            lv: ls.lv.clone(),
        });
    }
    {
        let mut names: Vec<&str> = lv_items.iter().map(|(_, n, _, _)| n.as_str()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::usage(
                format!("logical volume {}", w[0]),
                "it is named twice in the layout",
                "give each its own name",
            ));
        }
    }
    // What the volume group needs: its volumes in whole extents, and room for metadata on
    // each physical volume.
    let lv_need: u64 = lv_items.iter().map(|(_, _, n, _)| size::round_up(*n, EXTENT)).sum::<u64>()
        + if lv_items.is_empty() { 0 } else { (PV_OVERHEAD + EXTENT) * targets.len() as u64 };

    // Order on disk: boot things first, then /boot, /, the rest by depth, swap last.
    let rank = |it: &Item| -> (u8, usize) {
        match it.role {
            PartRole::Filesystem(i) if it.first_disk_only => (0, i),
            PartRole::Filesystem(i) if filesystems[i].mountpoint == "/boot" => (1, i),
            PartRole::Filesystem(i) if filesystems[i].mountpoint == "/" => (2, i),
            PartRole::Filesystem(i) => (3, order.iter().position(|&o| o == i).unwrap_or(i)),
            PartRole::Swap(i) => (4, i),
            _ => (5, 0),
        }
    };
    items.sort_by_key(|it| rank(it));

    let total_need: u64 = items.iter().map(|i| i.need).sum::<u64>()
        + lv_need
        + META_SIZE * targets.len() as u64
        + if src.has_bios_boot { BIOS_BOOT_SIZE } else { 0 }
        + (DISK_HEAD + DISK_TAIL) * targets.len() as u64;

    // Sizes of the targets; new image files get what the plan needs.
    let mut plan_disks = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let sz = match (t.size, t.image) {
            (Some(s), false) => s,
            (Some(s), true) if s > 0 && opts.image_size.is_none() => s,
            (_, true) => match opts.image_size {
                Some(s) => s,
                // Only the first image of a set grows to hold everything.
                None if i == 0 => size::round_up(total_need + total_need / 10, MIB),
                None => GIB,
            },
            (None, false) => 0,
        };
        plan_disks.push(PlanDisk {
            name: t.name.clone(),
            path: t.path.clone(),
            alias: t.alias.clone(),
            size: sz,
            image: if t.image {
                Some(ImageTarget { create: t.size.unwrap_or(0) == 0 || opts.image_size.is_some() })
            } else {
                None
            },
            disk_guid: Uuid::new_v4(),
        });
    }
    for d in &plan_disks {
        if d.image.is_some() && d.size % 512 != 0 {
            return Err(Error::usage(
                format!("image {}", d.path.display()),
                "its size is not a multiple of 512 bytes",
                "give --size in whole MiB",
            ));
        }
    }

    // Place: fixed partitions per disk, then items first-fit in order.
    let mut partitions: Vec<PlanPart> = Vec::new();
    let mut cursor: Vec<u64> = Vec::new();
    let mut ends: Vec<u64> = Vec::new();
    for (i, d) in plan_disks.iter().enumerate() {
        let end = size::round_down(d.size.saturating_sub(DISK_TAIL), MIB);
        let mut c = DISK_HEAD;
        if c + META_SIZE > end {
            return Err(Error::TooSmall {
                what: format!("disk {}", d.name),
                needed: size::human(DISK_HEAD + META_SIZE + DISK_TAIL + MIB),
                available: size::human(d.size),
                todo: "use a larger disk".into(),
            });
        }
        partitions.push(PlanPart {
            disk: i,
            number: 1,
            start: c,
            size: META_SIZE,
            type_guid: META_TYPE.into(),
            guid: Uuid::new_v4(),
            name: META_NAME.into(),
            role: PartRole::Meta,
        });
        c += META_SIZE;
        if i == 0 && src.has_bios_boot {
            partitions.push(PlanPart {
                disk: 0,
                number: 2,
                start: c,
                size: BIOS_BOOT_SIZE,
                type_guid: source::BIOS_BOOT_TYPE.into(),
                guid: Uuid::new_v4(),
                name: "alt_bios_boot".into(),
                role: PartRole::BiosBoot,
            });
            c += BIOS_BOOT_SIZE;
        }
        cursor.push(c);
        ends.push(end);
    }
    let available: u64 = cursor.iter().zip(&ends).map(|(c, e)| e.saturating_sub(*c)).sum();
    let items_need: u64 = items.iter().map(|i| i.need).sum::<u64>() + lv_need;
    let scale = if items_need > available {
        if !opts.skip_space_check {
            let what = if targets.len() == 1 {
                format!("target {}", targets[0].name)
            } else {
                "the targets together".to_string()
            };
            return Err(Error::TooSmall {
                what,
                needed: size::human(items_need + (total_need - items_need)),
                available: size::human(plan_disks.iter().map(|d| d.size).sum()),
                todo: "add a disk (-d \"a b\"), use a larger one, shrink sizes with -i, or skip the check with -S"
                    .into(),
            });
        }
        warnings.push(format!(
            "-S: the targets hold {} of the {} planned; sizes are scaled down and the copy may run out of space",
            size::human(available),
            size::human(items_need)
        ));
        available as f64 / items_need as f64
    } else {
        1.0
    };
    for it in &items {
        let mut want = size::round_down((it.need as f64 * scale) as u64, MIB).max(MIB);
        let disks: Vec<usize> = if it.first_disk_only { vec![0] } else { (0..plan_disks.len()).collect() };
        let mut placed = None;
        for &d in &disks {
            let room = ends[d].saturating_sub(cursor[d]);
            if room >= want {
                placed = Some(d);
                break;
            }
        }
        let d = match placed {
            Some(d) => d,
            None if opts.skip_space_check => {
                // Use what is left on the roomiest disk.
                let d = *disks.iter().max_by_key(|&&d| ends[d].saturating_sub(cursor[d])).unwrap_or(&0);
                want = size::round_down(ends[d].saturating_sub(cursor[d]), MIB);
                if want < MIB {
                    return Err(Error::TooSmall {
                        what: "the targets".into(),
                        needed: size::human(it.need),
                        available: "nothing".into(),
                        todo: "add or enlarge a target disk".into(),
                    });
                }
                d
            }
            None => {
                let label = match it.role {
                    PartRole::Filesystem(i) => filesystems[i].mountpoint.clone(),
                    _ => "swap".into(),
                };
                return Err(Error::TooSmall {
                    what: format!("the targets for {label}"),
                    needed: size::human(it.need),
                    available: size::human(disks.iter().map(|&d| ends[d].saturating_sub(cursor[d])).max().unwrap_or(0)),
                    todo: if it.first_disk_only {
                        "make the first target the largest disk".into()
                    } else {
                        "use a larger disk or add one".into()
                    },
                });
            }
        };
        let number = partitions.iter().filter(|p| p.disk == d).count() as u32 + 1;
        let idx = partitions.len();
        partitions.push(PlanPart {
            disk: d,
            number,
            start: cursor[d],
            size: want,
            type_guid: it.type_guid.clone(),
            guid: Uuid::new_v4(),
            name: it.name.clone(),
            role: it.role,
        });
        cursor[d] += want;
        match it.role {
            PartRole::Filesystem(i) => {
                filesystems[i].part = idx;
                filesystems[i].size = want;
            }
            PartRole::Swap(i) => {
                swaps[i].part = idx;
                swaps[i].size = want;
            }
            _ => {}
        }
    }
    // With LVM, what is left on each disk becomes a physical volume of the clone's volume
    // group; otherwise growing filesystems take what is left on their disk.
    let vg = if lv_items.is_empty() {
        None
    } else {
        let mut capacity = 0u64;
        for d in 0..plan_disks.len() {
            let free = size::round_down(ends[d].saturating_sub(cursor[d]), MIB);
            if free < PV_OVERHEAD + 2 * EXTENT {
                continue;
            }
            let number = partitions.iter().filter(|p| p.disk == d).count() as u32 + 1;
            partitions.push(PlanPart {
                disk: d,
                number,
                start: cursor[d],
                size: free,
                type_guid: LVM_TYPE.into(),
                guid: Uuid::new_v4(),
                name: "alt_pv".into(),
                role: PartRole::Pv,
            });
            cursor[d] += free;
            capacity += size::round_down(free - PV_OVERHEAD, EXTENT);
        }
        let want: u64 = lv_items.iter().map(|(_, _, n, _)| size::round_up(*n, EXTENT)).sum();
        let scale_lv = if want > capacity {
            if !opts.skip_space_check {
                return Err(Error::TooSmall {
                    what: "the volume group on the targets".into(),
                    needed: size::human(want),
                    available: size::human(capacity),
                    todo: "add a disk, use a larger one, shrink logical volumes with -i, or skip the check with -S"
                        .into(),
                });
            }
            capacity as f64 / want as f64
        } else {
            1.0
        };
        let mut lvs = Vec::new();
        let mut used = 0u64;
        for (role, name, need, _) in &lv_items {
            let sz = size::round_down((*need as f64 * scale_lv) as u64, EXTENT).max(EXTENT);
            used += sz;
            lvs.push((name.clone(), sz, *role));
        }
        // One volume may grow into what the group has left.
        if let Some(g) = lv_items.iter().position(|(_, _, _, grow)| *grow) {
            lvs[g].1 += capacity.saturating_sub(used);
        }
        for (_, sz, role) in &lvs {
            match role {
                PartRole::Filesystem(i) => filesystems[*i].size = *sz,
                PartRole::Swap(i) => swaps[*i].size = *sz,
                _ => {}
            }
        }
        Some(PlanVg { name: name.to_string(), lvs: lvs.into_iter().map(|(n, s, _)| (n, s)).collect() })
    };
    for d in 0..plan_disks.len() {
        if vg.is_some() {
            break;
        }
        let free = ends[d].saturating_sub(cursor[d]);
        let grow = partitions
            .iter()
            .position(|p| p.disk == d && matches!(p.role, PartRole::Filesystem(i) if filesystems[i].grow));
        if let (Some(g), true) = (grow, free > 0) {
            partitions[g].size += free;
            if let PartRole::Filesystem(i) = partitions[g].role {
                filesystems[i].size = partitions[g].size;
            }
        }
    }
    // Recompute starts in order per disk (growth moved later partitions).
    for d in 0..plan_disks.len() {
        let mut c = DISK_HEAD;
        for p in partitions.iter_mut().filter(|p| p.disk == d) {
            p.start = c;
            c += p.size;
        }
    }
    let mut ordered = Vec::with_capacity(filesystems.len());
    for i in &order {
        ordered.push(filesystems[*i].clone());
    }
    // Re-index partition roles after reordering filesystems.
    for p in partitions.iter_mut() {
        if let PartRole::Filesystem(i) = p.role {
            p.role = PartRole::Filesystem(order.iter().position(|&o| o == i).unwrap_or(i));
        }
    }
    if let Some(esp) = opts.boot.as_ref().and_then(|b| b.esp.as_ref()) {
        if !ordered.iter().any(|f| &f.mountpoint == esp && f.fstype == "vfat") {
            return Err(Error::usage(
                "layout file",
                format!("it has no vfat filesystem for the ESP at {esp}, which the clone needs to boot through UEFI"),
                "keep the ESP in the layout (see `altdisk layout`)",
            ));
        }
    }
    if opts.customize.device_reset && !opts.phases.has(3) {
        warnings.push("-O makes the initramfs generic only when phase 3 rebuilds it: run phase 3 too".into());
    }
    Ok(Plan {
        api_version: crate::API_VERSION.into(),
        name: name.into(),
        id: Uuid::new_v4(),
        source: src.clone(),
        targets: plan_disks,
        partitions,
        filesystems: ordered,
        swaps,
        phases: opts.phases.clone(),
        mount_at: opts.mount_at.clone(),
        exclude: opts.exclude.clone(),
        needed: total_need,
        warnings,
        boot: opts.boot.clone(),
        bootlist: opts.bootlist,
        customize: opts.customize.clone(),
        vg,
    })
}

/// LVM's rules for names, and AIX's: the clone's volumes keep the source's names.
fn check_lv_name(n: &str) -> Result<()> {
    let ok = !n.is_empty()
        && n.len() <= 127
        && !n.starts_with('-')
        && n != "."
        && n != ".."
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(
            format!("logical volume name `{n}`"),
            "LVM names use letters, digits and + _ . -",
            "rename it in the layout",
        ))
    }
}

fn nearest_parent(mp: &str, listed: &std::collections::BTreeSet<String>) -> String {
    let mut p = std::path::Path::new(mp);
    while let Some(parent) = p.parent() {
        let s = parent.display().to_string();
        if listed.contains(&s) {
            return s;
        }
        p = parent;
    }
    "/".into()
}

impl Plan {
    /// The partition device of partition `part` once the disk is attached as `disk_dev`.
    pub fn part_of_fs(&self, fs: &PlanFs) -> &PlanPart {
        &self.partitions[fs.part]
    }

    /// Human-readable summary, as `altdisk plan` and `--dry-run` print it.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let src = if self.source.live {
            "the running system".to_string()
        } else {
            format!("the system at {}", self.source.root.display())
        };
        let _ = writeln!(
            s,
            "Plan: clone {src} to {} ({})",
            self.name,
            self.targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        let _ = writeln!(
            s,
            "Phases: {}",
            serde_json::to_value(&self.phases).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
        );
        for (i, d) in self.targets.iter().enumerate() {
            let kind = match &d.image {
                Some(ImageTarget { create: true }) => " (image file, created)",
                Some(_) => " (image file)",
                None => "",
            };
            let _ =
                writeln!(s, "\nDisk {} {}{kind}: {}", d.name, d.alias.as_deref().unwrap_or(""), size::human(d.size));
            let _ = writeln!(s, "  {:>3}  {:>8}  {:>8}  {:<16} contents", "#", "start", "size", "name");
            for p in self.partitions.iter().filter(|p| p.disk == i) {
                let what = match p.role {
                    PartRole::Meta => "altdisk state (incomplete until done)".to_string(),
                    PartRole::BiosBoot => "BIOS boot".to_string(),
                    PartRole::Filesystem(f) => {
                        let fs = &self.filesystems[f];
                        let from = match &fs.source {
                            Some(r) if r.fstype != fs.fstype => {
                                format!(" from {} ({} converted)", r.device.display(), r.fstype)
                            }
                            Some(r) => format!(" from {}", r.device.display()),
                            None => " (new, split out)".into(),
                        };
                        let merged = if fs.merged.is_empty() {
                            String::new()
                        } else {
                            format!(", with {}", fs.merged.join(", "))
                        };
                        format!(
                            "{} {} {}{from}{merged}, {} used",
                            fs.fstype,
                            fs.mountpoint,
                            fs.label.as_deref().map(|l| format!("[{l}]")).unwrap_or_default(),
                            size::human(fs.used)
                        )
                    }
                    PartRole::Swap(_) => "swap (recreated)".into(),
                    PartRole::Pv => {
                        format!("LVM physical volume of {}", self.vg.as_ref().map(|v| v.name.as_str()).unwrap_or("?"))
                    }
                };
                let _ = writeln!(
                    s,
                    "  {:>3}  {:>8}  {:>8}  {:<16} {}",
                    p.number,
                    size::human(p.start),
                    size::human(p.size),
                    p.name,
                    what
                );
            }
        }
        if let Some(vg) = &self.vg {
            let _ = writeln!(s, "\nVolume group {} (new UUIDs):", vg.name);
            for (lv, size) in &vg.lvs {
                let what = self
                    .filesystems
                    .iter()
                    .find(|f| f.lv.as_deref() == Some(lv.as_str()))
                    .map(|f| format!("{} {}", f.fstype, f.mountpoint))
                    .unwrap_or_else(|| "swap (recreated)".into());
                let _ = writeln!(s, "  {:<16} {:>8}  {what}", lv, size::human(*size));
            }
        }
        let c = &self.customize;
        if !c.is_empty() {
            let mut parts = Vec::new();
            if let Some(d) = &c.images {
                let n = c.packages.len();
                let what = match (n, c.update_all) {
                    (0, true) => "update all packages".to_string(),
                    (n, true) => format!("install {n} package(s) and update all"),
                    (n, false) => format!("install {n} package(s)"),
                };
                parts.push(format!("{what} from {}", d.display()));
            }
            if c.resolv_conf.is_some() {
                parts.push("replace resolv.conf".into());
            }
            if c.device_reset {
                parts.push("device reset".into());
            }
            if let Some(con) = &c.console {
                parts.push(format!("console {con}"));
            }
            if c.first_boot.is_some() {
                parts.push("first-boot script".into());
            }
            if let Some(sc) = &c.script {
                parts.push(format!("run {}", sc.display()));
            }
            let _ = writeln!(s, "\nCustomize (phase 2): {}.", parts.join(", "));
        }
        if let Some(b) = &self.boot {
            let loader = match &b.loader {
                crate::discover::boot::Loader::GrubEfi { id, shim } => {
                    format!("GRUB for UEFI (\\EFI\\{id}{})", if *shim { ", through shim" } else { "" })
                }
                crate::discover::boot::Loader::SystemdBoot => "systemd-boot".into(),
                crate::discover::boot::Loader::GrubBios => "GRUB for BIOS".into(),
            };
            let list = match (b.firmware, self.bootlist) {
                (crate::discover::boot::Firmware::Bios, _) => "the BIOS boot order stays with the firmware".to_string(),
                (_, BootlistMode::First) => "the clone goes first in the UEFI boot order".into(),
                (_, BootlistMode::Leave) => "the UEFI boot order is left alone (-B)".into(),
                (_, BootlistMode::Trial) => "the clone is booted once (BootNext) and kept if it comes up".into(),
            };
            let _ = writeln!(s, "\nBoot: {loader}, initramfs for kernel(s) {}; {list}.", b.kernels.join(", "));
        }
        if !self.exclude.is_empty() {
            let _ = writeln!(s, "\nExcluded: {} pattern(s): {}", self.exclude.len(), self.exclude.join("  "));
        }
        let _ = writeln!(s, "\nThe clone is mounted at {} while it is built.", self.mount_at.display());
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::blockdev::Probe;
    use crate::discover::source::{SourceFs, SourceSwap};

    fn fs(mp: &str, fstype: &str, used: u64, label: Option<&str>) -> SourceFs {
        SourceFs {
            mountpoint: mp.into(),
            path: format!("/mnt/src{mp}").into(),
            device: format!("/dev/vda{}", mp.len()).into(),
            major: 254,
            minor: mp.len() as u32,
            fstype: fstype.into(),
            probe: Probe {
                fstype: Some(fstype.into()),
                uuid: Some(Uuid::new_v4().to_string()),
                label: label.map(String::from),
                ..Default::default()
            },
            device_size: 10 * GIB,
            used_bytes: used,
            used_inodes: 1000,
            read_only: false,
            paths: vec![],
            lv: None,
        }
    }

    fn source() -> Source {
        Source {
            root: "/mnt/src".into(),
            live: false,
            disks: vec!["vda".into()],
            filesystems: vec![
                fs("/", "ext4", 2 * GIB, Some("root")),
                fs("/boot", "ext3", 200 * MIB, None),
                fs("/home", "ext4", GIB, Some("alt_home")),
            ],
            swaps: vec![SourceSwap {
                device: "/dev/vda9".into(),
                size: GIB,
                probe: Probe::default(),
                paths: vec![],
                lv: None,
            }],
            has_bios_boot: false,
            hostname: "prod".into(),
        }
    }

    fn disk(name: &str, size: u64) -> TargetIn {
        TargetIn { name: name.into(), path: format!("/dev/{name}").into(), alias: None, size: Some(size), image: false }
    }

    #[test]
    fn one_disk_root_grows() {
        let p = build(&source(), &[disk("vdb", 20 * GIB)], &PlanOptions::default(), "altinst_rootvg").unwrap();
        assert_eq!(p.filesystems[0].mountpoint, "/");
        assert_eq!(p.partitions[0].role, PartRole::Meta);
        let used: u64 = p.partitions.iter().map(|x| x.size).sum();
        assert_eq!(used, 20 * GIB - 2 * MIB, "root should take the rest");
        // contiguous, aligned, no overlap
        let mut c = MIB;
        for x in &p.partitions {
            assert_eq!(x.start, c);
            assert_eq!(x.start % MIB, 0);
            c += x.size;
        }
        // labels flip the alt_ prefix
        let root = &p.filesystems[0];
        assert_eq!(root.label.as_deref(), Some("alt_root"));
        let home = p.filesystems.iter().find(|f| f.mountpoint == "/home").unwrap();
        assert_eq!(home.label.as_deref(), Some("home"));
        assert_eq!(p.swaps.len(), 1);
    }

    #[test]
    fn smaller_disk_works_when_data_fits_and_too_small_is_an_error() {
        let p = build(&source(), &[disk("vdb", 6 * GIB)], &PlanOptions::default(), "x").unwrap();
        assert!(p.filesystems[0].size >= 2 * GIB);
        let e = build(&source(), &[disk("vdb", 3 * GIB)], &PlanOptions::default(), "x").unwrap_err();
        assert!(matches!(e, Error::TooSmall { .. }), "{e}");
        assert!(e.to_string().contains("vdb"), "{e}");
        // -S goes ahead with scaled sizes
        let p = build(
            &source(),
            &[disk("vdb", 3 * GIB)],
            &PlanOptions { skip_space_check: true, ..Default::default() },
            "x",
        )
        .unwrap();
        assert!(p.partitions.iter().filter(|x| x.disk == 0).map(|x| x.size).sum::<u64>() <= 3 * GIB - 2 * MIB);
        assert!(!p.warnings.is_empty());
    }

    #[test]
    fn two_disks_share_the_load() {
        let p = build(&source(), &[disk("vdb", 3 * GIB), disk("vdc", 3 * GIB)], &PlanOptions::default(), "x").unwrap();
        assert!(p
            .partitions
            .iter()
            .any(|x| x.disk == 1 && matches!(x.role, PartRole::Filesystem(_) | PartRole::Swap(_))));
        assert_eq!(p.partitions.iter().filter(|x| x.role == PartRole::Meta).count(), 2);
        for d in 0..2 {
            let total: u64 = p.partitions.iter().filter(|x| x.disk == d).map(|x| x.size).sum();
            assert!(total <= 3 * GIB - 2 * MIB);
        }
    }

    #[test]
    fn convert_and_layout_edits() {
        let p =
            build(&source(), &[disk("vdb", 20 * GIB)], &PlanOptions { convert_ext: true, ..Default::default() }, "x")
                .unwrap();
        assert_eq!(p.filesystems.iter().find(|f| f.mountpoint == "/boot").unwrap().fstype, "ext4");
        let mut l = default_layout(&source(), false);
        l.filesystems.retain(|f| f.mountpoint != "/home");
        l.filesystems.push(LayoutFs {
            mountpoint: "/var".into(),
            fstype: "xfs".into(),
            label: None,
            size: "2G".into(),
            lv: None,
        });
        l.filesystems[0].fstype = "btrfs".into();
        let text = l.to_toml();
        let back = Layout::parse(&text, "t").unwrap();
        assert_eq!(back, l);
        let p =
            build(&source(), &[disk("vdb", 20 * GIB)], &PlanOptions { layout: Some(back), ..Default::default() }, "x")
                .unwrap();
        let root = &p.filesystems[0];
        assert_eq!(root.fstype, "btrfs");
        assert_eq!(root.merged, vec!["/home".to_string()]);
        assert!(p.filesystems.iter().any(|f| f.mountpoint == "/var" && f.source.is_none() && f.fstype == "xfs"));
    }

    #[test]
    fn layout_errors() {
        let bad = "[[filesystem]]\nmountpoint = \"/home\"\nfstype = \"ext4\"\n";
        let e = build(
            &source(),
            &[disk("vdb", 20 * GIB)],
            &PlanOptions { layout: Some(Layout::parse(bad, "t").unwrap()), ..Default::default() },
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no filesystem for /"), "{e}");
        assert!(Layout::parse("[[filesystem]]\nmountpoint = \"/\"\nfstype = \"ext4\"\nbogus = 1\n", "t").is_err());
        let mut l = default_layout(&source(), false);
        l.filesystems[0].fstype = "ntfs".into();
        let e = build(&source(), &[disk("vdb", 20 * GIB)], &PlanOptions { layout: Some(l), ..Default::default() }, "x")
            .unwrap_err();
        assert!(e.to_string().contains("ntfs"), "{e}");
        let mut l = default_layout(&source(), false);
        l.filesystems.push(LayoutFs {
            mountpoint: "/opt".into(),
            fstype: "ext4".into(),
            label: None,
            size: "auto".into(),
            lv: None,
        });
        assert!(build(
            &source(),
            &[disk("vdb", 20 * GIB)],
            &PlanOptions { layout: Some(l), ..Default::default() },
            "x"
        )
        .is_err());
    }

    #[test]
    fn new_image_is_sized_from_the_plan() {
        let t = TargetIn { name: "/tmp/x.img".into(), path: "/tmp/x.img".into(), alias: None, size: None, image: true };
        let p = build(&source(), &[t], &PlanOptions::default(), "x").unwrap();
        assert!(p.targets[0].size >= p.needed);
        assert!(p.targets[0].image.as_ref().unwrap().create);
    }

    #[test]
    fn lvm_sources_get_a_volume_group() {
        let mut src = source();
        let lv = |n: &str, sz| Some(crate::discover::source::SourceLv { vg: "rootvg".into(), lv: n.into(), size: sz });
        src.filesystems[0].lv = lv("root", 3 * GIB);
        src.filesystems[2].lv = lv("home", GIB);
        src.swaps[0].lv = lv("swap", 512 * MIB);
        src.swaps[0].size = 512 * MIB;
        let l = default_layout(&src, false);
        assert_eq!(l.filesystems[0].lv.as_deref(), Some("root"));
        assert_eq!(l.filesystems[0].size, "3072M", "logical volumes keep their size");
        let p = build(&src, &[disk("vdb", 20 * GIB)], &PlanOptions::default(), "altinst_rootvg").unwrap();
        let vg = p.vg.as_ref().unwrap();
        assert_eq!(vg.name, "altinst_rootvg");
        assert_eq!(
            vg.lvs,
            vec![("root".to_string(), 3 * GIB), ("home".to_string(), GIB), ("swap".to_string(), 512 * MIB)]
        );
        // /boot stays a partition; the rest of the disk is one physical volume.
        assert!(p.filesystems.iter().any(|f| f.mountpoint == "/boot" && f.lv.is_none() && f.part != usize::MAX));
        let pv = p.partitions.iter().find(|x| x.role == PartRole::Pv).unwrap();
        assert_eq!(pv.type_guid, LVM_TYPE);
        assert_eq!(pv.start + pv.size, 20 * GIB - MIB);
        assert!(p.render().contains("Volume group altinst_rootvg"));
        // Too small for the volumes.
        let e = build(&src, &[disk("vdb", 4 * GIB)], &PlanOptions::default(), "x").unwrap_err();
        assert!(matches!(e, Error::TooSmall { .. }), "{e}");
    }

    #[test]
    fn alt_label_flips() {
        assert_eq!(alt_label("root", 16), "alt_root");
        assert_eq!(alt_label("alt_root", 16), "root");
        assert_eq!(alt_label("verylongfilesystemlabel", 12), "alt_verylong");
        assert_eq!(alt_label("alt_", 16), "alt_alt_");
    }

    #[test]
    fn phases_parse() {
        assert_eq!(Phases::parse("all").unwrap(), Phases::All);
        assert_eq!(Phases::parse("'all'").unwrap(), Phases::All);
        assert!(Phases::parse("12").unwrap().has(2));
        assert!(!Phases::parse("12").unwrap().has(3));
        assert!(Phases::parse("4").is_err());
    }
}
