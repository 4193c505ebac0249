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
//!
//! Here are the plan's types and its rendering; `layout` holds the layout, [`build()`] makes
//! a plan step by step (`build`) and `place` lays its partitions out on the targets. [`safety`]
//! refuses targets that must not be written, [`lock`] keeps two runs off one target, and
//! [`customize`] is what phase 2 will do.

mod build;
pub mod customize;
mod layout;
pub mod lock;
mod place;
pub mod safety;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use build::build;
pub use layout::{alt_label, default_layout, label_max, Layout, LayoutFs, LayoutSwap};

use crate::discover::source::Source;
use crate::error::{Error, Result};
use crate::size;

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
    /// Inodes the source's files use (its own and those merged into it).
    #[serde(default)]
    pub used_inodes: u64,
    /// Inodes it must be made with, when what mkfs gives a filesystem of its size by default
    /// would be too few for the source's files (ext: `mkfs -N`; xfs: the share of space
    /// inodes may take); None: the default is plenty.
    #[serde(default)]
    pub inodes: Option<u64>,
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
                            "{} {} {}{from}{merged}, {} used{}",
                            fs.fstype,
                            fs.mountpoint,
                            fs.label.as_deref().map(|l| format!("[{l}]")).unwrap_or_default(),
                            size::human(fs.used),
                            fs.inodes.map(|n| format!(", made with {n} inodes")).unwrap_or_default()
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

    #[test]
    fn phases_parse() {
        assert_eq!(Phases::parse("all").unwrap(), Phases::All);
        assert_eq!(Phases::parse("'all'").unwrap(), Phases::All);
        assert!(Phases::parse("12").unwrap().has(2));
        assert!(!Phases::parse("12").unwrap().has(3));
        assert!(Phases::parse("4").is_err());
    }
}
