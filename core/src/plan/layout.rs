//! The editable layout (TOML, `altdisk layout`, `-i FILE`), the counterpart of AIX's
//! image.data: which filesystems the clone has, their types, labels and sizes, and which swap.
//! Here are its parsing, the default derived from the source, and the rules a layout must
//! keep (types altdisk makes, label lengths, LVM names, the smallest useful sizes), which
//! the plan applies when it is built.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::discover::source::{self, Source};
use crate::error::{Error, Result};
use crate::size::{self, MIB};

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

    /// The mount points the layout lists, each checked: an absolute path, listed once, and `/`
    /// among them.
    pub(super) fn mount_points(&self) -> Result<BTreeSet<String>> {
        let mut seen = BTreeSet::new();
        for fs in &self.filesystems {
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
        Ok(seen)
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
pub(super) fn min_size(fstype: &str) -> u64 {
    match fstype {
        "xfs" => 300 * MIB,
        "btrfs" => 256 * MIB,
        "vfat" => 64 * MIB,
        _ => 32 * MIB,
    }
}

/// Used space plus headroom for metadata, journal and growth, and room for the inodes the
/// files need ([`inode_bytes`]).
pub(super) fn needed(used: u64, used_inodes: u64, fstype: &str) -> u64 {
    let base = used + used / 5 + inode_bytes(fstype, inodes_needed(used_inodes)) + 64 * MIB;
    size::round_up(base.max(min_size(fstype)), MIB)
}

/// Inodes a clone needs for `used_inodes` files of the source: a quarter more, and some.
pub(super) fn inodes_needed(used_inodes: u64) -> u64 {
    used_inodes + used_inodes / 4 + 16_384
}

/// Inodes a filesystem of this type and size gets when it is made without being told: what
/// mke2fs's default of one inode per 16 KiB gives (small filesystems get more); xfs and
/// btrfs make inodes as files come, xfs up to a quarter of its space.
pub(super) fn default_inodes(fstype: &str, size: u64) -> u64 {
    match fstype {
        "ext2" | "ext3" | "ext4" => size / EXT_BYTES_PER_INODE,
        "xfs" => size / 4 / XFS_INODE,
        _ => u64::MAX,
    }
}

/// mke2fs's default bytes per inode for filesystems of 512 MiB and more.
pub(super) const EXT_BYTES_PER_INODE: u64 = 16 * 1024;
/// The smallest bytes per inode mke2fs takes.
pub(super) const EXT_MIN_BYTES_PER_INODE: u64 = 1024;
const EXT_INODE: u64 = 256;
const XFS_INODE: u64 = 512;

/// Room `n` inodes take: ext's inode tables are laid out at mkfs (256 bytes each), xfs
/// allocates 512-byte inodes in chunks, btrfs keeps each file's inode, name and back
/// reference in metadata it duplicates (about 2 KiB a file).
pub(super) fn inode_bytes(fstype: &str, n: u64) -> u64 {
    match fstype {
        "ext2" | "ext3" | "ext4" => n * EXT_INODE,
        "xfs" => n * XFS_INODE,
        "btrfs" => n * 2048,
        _ => 0,
    }
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

/// The layout may ask only for filesystems altdisk makes; the ESP stays vfat.
pub(super) fn check_fstype(fs: &LayoutFs, esp: bool) -> Result<()> {
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

/// A label fits its filesystem type.
pub(super) fn check_label(fs: &LayoutFs) -> Result<()> {
    match &fs.label {
        Some(l) if l.chars().count() > label_max(&fs.fstype) => Err(Error::usage(
            format!("label `{l}` for {}", fs.mountpoint),
            format!("{} labels hold at most {} characters", fs.fstype, label_max(&fs.fstype)),
            "shorten it in the layout file",
        )),
        _ => Ok(()),
    }
}

/// LVM's rules for names, and AIX's: the clone's volumes keep the source's names.
pub(super) fn check_lv_name(n: &str) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_label_flips() {
        assert_eq!(alt_label("root", 16), "alt_root");
        assert_eq!(alt_label("alt_root", 16), "root");
        assert_eq!(alt_label("verylongfilesystemlabel", 12), "alt_verylong");
        assert_eq!(alt_label("alt_", 16), "alt_alt_");
    }
}
