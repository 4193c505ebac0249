//! Building the plan from the discovered source, the layout and the measured targets, in
//! steps that each decide one thing: the layout's mount points; the filesystems and what
//! each needs; their mount order; the swap areas; what the volume group needs; the order of
//! the partitions on disk; the targets' sizes; where the partitions go ([`super::place`]);
//! the final order of the filesystems; the ESP a UEFI clone needs. Pure: nothing is read
//! from a disk.

use std::collections::BTreeSet;
use std::path::Path;

use uuid::Uuid;

use super::layout::{
    alt_label, check_fstype, check_label, check_lv_name, default_inodes, default_layout, inode_bytes, inodes_needed,
    min_size, needed, EXT_MIN_BYTES_PER_INODE,
};
use super::place::{self, Disks, Item, LvItem};
use super::{
    ImageTarget, Layout, LayoutFs, PartRole, Plan, PlanDisk, PlanFs, PlanOptions, PlanPart, PlanSwap, SourceRef,
    TargetIn,
};
use crate::discover::blockdev::Probe;
use crate::discover::boot::BootSetup;
use crate::discover::gpt::{LINUX_FS_TYPE, SWAP_TYPE};
use crate::discover::source::{self, Source, SourceFs};
use crate::error::{Error, Result};
use crate::size::{self, GIB, MIB};

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
    let listed = layout.mount_points()?;

    let mut demand = Demand::default();
    let mut filesystems = plan_filesystems(src, &layout, &listed, opts.skip_space_check, &mut demand, &mut warnings)?;
    let order = mount_order(&filesystems);
    let mut swaps = plan_swaps(src, &layout, &mut demand)?;
    check_lv_names(&demand.lvs)?;
    let vg_need = place::vg_need(&demand.lvs, targets.len());
    disk_order(&mut demand.parts, &filesystems, &order);
    let total_need = place::total_need(&demand.parts, vg_need, targets.len(), src.has_bios_boot);
    let plan_disks = size_targets(targets, opts.image_size, total_need)?;

    let mut disks = Disks::new(&plan_disks, src.has_bios_boot)?;
    let items_need = demand.parts.iter().map(|i| i.need).sum::<u64>() + vg_need;
    let scale = disks.scale(&plan_disks, items_need, total_need, opts.skip_space_check, &mut warnings)?;
    disks.place(&demand.parts, scale, opts.skip_space_check, &mut filesystems, &mut swaps)?;
    // With LVM, what is left on each disk becomes a physical volume of the clone's volume
    // group; otherwise growing filesystems take what is left on their disk.
    let vg = if demand.lvs.is_empty() {
        disks.grow(&mut filesystems);
        None
    } else {
        Some(disks.volume_group(name, &demand.lvs, opts.skip_space_check, &mut filesystems, &mut swaps)?)
    };
    let mut partitions = disks.into_partitions();
    let mut filesystems = reorder(&filesystems, &mut partitions, &order);
    size_inodes(&mut filesystems, opts.skip_space_check, &mut warnings)?;

    check_esp(opts.boot.as_ref(), &filesystems)?;
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
        filesystems,
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

/// What the layout asks the targets to hold, before anything is placed.
#[derive(Default)]
struct Demand {
    /// Partitions, placed first-fit in their disk order.
    parts: Vec<Item>,
    /// Logical volumes of the clone's volume group, in creation order.
    lvs: Vec<LvItem>,
}

/// The filesystems of the layout, checked against the source. Each gets its type, label and
/// size (and whether it grows), the source filesystem it is made from, the source
/// filesystems left out of the layout whose files it takes, and its place in `demand`: a
/// partition, or a logical volume.
fn plan_filesystems(
    src: &Source,
    layout: &Layout,
    listed: &BTreeSet<String>,
    skip_space_check: bool,
    demand: &mut Demand,
    warnings: &mut Vec<String>,
) -> Result<Vec<PlanFs>> {
    let mut filesystems = Vec::new();
    for lf in &layout.filesystems {
        let sf = src.filesystems.iter().find(|f| f.mountpoint == lf.mountpoint);
        let esp = sf.map(source::is_esp).unwrap_or(false);
        check_fstype(lf, esp)?;
        check_label(lf)?;
        let merged = merged_into(src, &lf.mountpoint, listed);
        let used = sf.map(|f| f.used_bytes).unwrap_or(0) + merged.iter().map(|f| f.used_bytes).sum::<u64>();
        let inodes = sf.map(|f| f.used_inodes).unwrap_or(0) + merged.iter().map(|f| f.used_inodes).sum::<u64>();
        for m in &merged {
            warnings.push(format!("{} is not in the layout: its files go into {}", m.mountpoint, lf.mountpoint));
        }
        let (need, grow) = fs_size(lf, sf.is_some(), used, inodes, skip_space_check)?;
        if sf.is_none() {
            warnings.push(format!("{} becomes a filesystem of its own, split out of its parent", lf.mountpoint));
        }
        let role = PartRole::Filesystem(filesystems.len());
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
                demand.lvs.push(LvItem { role, name: lv.clone(), need, grow });
            }
            None => {
                let name = match sf.and_then(|f| f.probe.partlabel.as_deref()) {
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
                demand.parts.push(Item { role, need, type_guid, name, first_disk_only: esp });
            }
        }
        filesystems.push(PlanFs {
            mountpoint: lf.mountpoint.clone(),
            fstype: lf.fstype.clone(),
            label: lf.label.clone(),
            uuid: new_fs_uuid(&lf.fstype),
            size: need,
            used,
            grow,
            source: sf.map(|f| source_ref(&f.device, &f.path, &f.fstype, &f.probe, &f.paths)),
            merged: merged.iter().map(|f| f.mountpoint.clone()).collect(),
            part: usize::MAX,
            lv: lf.lv.clone(),
            used_inodes: inodes,
            inodes: None,
        });
    }
    Ok(filesystems)
}

/// The source filesystems left out of the layout whose files go into the one at `mountpoint`:
/// those whose nearest listed parent it is.
fn merged_into<'a>(src: &'a Source, mountpoint: &str, listed: &BTreeSet<String>) -> Vec<&'a SourceFs> {
    src.filesystems
        .iter()
        .filter(|f| f.mountpoint != mountpoint && !listed.contains(&f.mountpoint))
        .filter(|f| nearest_parent(&f.mountpoint, listed) == mountpoint)
        .collect()
}

fn nearest_parent(mp: &str, listed: &BTreeSet<String>) -> String {
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

/// How big a filesystem is planned, and whether it takes the rest of its disk: "auto" is
/// the used space (`used`, `inodes`: its own and what is merged into it) plus headroom, and
/// needs a source filesystem to measure; "grow" starts there; a given size must hold the
/// filesystem type's minimum and, unless -S (`skip_space_check`), the files.
fn fs_size(lf: &LayoutFs, from_source: bool, used: u64, inodes: u64, skip_space_check: bool) -> Result<(u64, bool)> {
    Ok(match lf.size.as_str() {
        "auto" if !from_source => {
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
            if v < used && !skip_space_check {
                return Err(Error::TooSmall {
                    what: format!("size {s} for {}", lf.mountpoint),
                    needed: size::human(needed(used, inodes, &lf.fstype)),
                    available: size::human(v),
                    todo: "give a larger size in the layout file (or -S to skip this check)".into(),
                });
            }
            (v, false)
        }
    })
}

/// Once sizes are final: the inodes each filesystem is made with, when the default for its
/// size would be too few for the files it receives (a source of many small files); refused
/// when its size cannot hold them at all, unless -S.
fn size_inodes(filesystems: &mut [PlanFs], skip_space_check: bool, warnings: &mut Vec<String>) -> Result<()> {
    for f in filesystems.iter_mut() {
        if f.used_inodes == 0 {
            continue;
        }
        let need = inodes_needed(f.used_inodes);
        if need <= default_inodes(&f.fstype, f.size) {
            continue;
        }
        let fits = match f.fstype.as_str() {
            "ext2" | "ext3" | "ext4" => {
                need <= f.size / EXT_MIN_BYTES_PER_INODE && inode_bytes(&f.fstype, need) + f.used <= f.size
            }
            "xfs" => inode_bytes(&f.fstype, need) + f.used <= f.size,
            _ => true,
        };
        if !fits {
            let e = Error::TooSmall {
                what: format!(
                    "the clone's {} filesystem ({}, {}), in inodes,",
                    f.mountpoint,
                    f.fstype,
                    size::human(f.size)
                ),
                needed: format!("{need} inodes ({} files in the source)", f.used_inodes),
                available: format!("room for {}", (f.size.saturating_sub(f.used)) / inode_bytes(&f.fstype, 1).max(1)),
                todo: "give it a larger size in a layout file (-i), or larger disks (or -S to try anyway)".into(),
            };
            if !skip_space_check {
                return Err(e);
            }
            warnings.push(format!("-S: {e}"));
        }
        if matches!(f.fstype.as_str(), "ext2" | "ext3" | "ext4" | "xfs") {
            f.inodes = Some(need);
        }
    }
    Ok(())
}

/// The identities of a source device (`path`: where its files are read), which the clone's
/// fstab and boot configuration replace.
fn source_ref(device: &Path, path: &Path, fstype: &str, probe: &Probe, paths: &[String]) -> SourceRef {
    SourceRef {
        device: device.to_path_buf(),
        path: path.to_path_buf(),
        fstype: fstype.into(),
        uuid: probe.uuid.clone(),
        partuuid: probe.partuuid.clone(),
        label: probe.label.clone(),
        partlabel: probe.partlabel.clone(),
        paths: paths.to_vec(),
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

/// The order the filesystems are mounted in, as indexes: parents first (by depth, `/` before
/// its siblings at depth one).
fn mount_order(filesystems: &[PlanFs]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..filesystems.len()).collect();
    order.sort_by_key(|&i| (filesystems[i].mountpoint.matches('/').count(), filesystems[i].mountpoint != "/"));
    order
}

/// The swap areas of the layout, the n-th made from the source's n-th (its partition type,
/// name and identities), each at least 16 MiB, and each given its place in `demand`.
fn plan_swaps(src: &Source, layout: &Layout, demand: &mut Demand) -> Result<Vec<PlanSwap>> {
    let mut swaps = Vec::new();
    for (i, ls) in layout.swaps.iter().enumerate() {
        let v = size::round_up(size::parse(&ls.size)?, MIB).max(MIB * 16);
        let s = src.swaps.get(i);
        let role = PartRole::Swap(swaps.len());
        if let Some(lv) = &ls.lv {
            check_lv_name(lv)?;
            demand.lvs.push(LvItem { role, name: lv.clone(), need: v, grow: false });
        } else {
            demand.parts.push(Item {
                role,
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
            source: s.map(|s| source_ref(&s.device, &s.device, "swap", &s.probe, &s.paths)),
            part: usize::MAX,
            lv: ls.lv.clone(),
        });
    }
    Ok(swaps)
}

/// Each logical volume is named once.
fn check_lv_names(lvs: &[LvItem]) -> Result<()> {
    let mut names: Vec<&str> = lvs.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    match names.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(Error::usage(
            format!("logical volume {}", w[0]),
            "it is named twice in the layout",
            "give each its own name",
        )),
        None => Ok(()),
    }
}

/// The order of the partitions on disk: boot things first, then /boot, /, the other
/// filesystems in mount order, swap last.
fn disk_order(parts: &mut [Item], filesystems: &[PlanFs], order: &[usize]) {
    parts.sort_by_key(|it| match it.role {
        PartRole::Filesystem(i) if it.first_disk_only => (0, i),
        PartRole::Filesystem(i) if filesystems[i].mountpoint == "/boot" => (1, i),
        PartRole::Filesystem(i) if filesystems[i].mountpoint == "/" => (2, i),
        PartRole::Filesystem(i) => (3, order.iter().position(|&o| o == i).unwrap_or(i)),
        PartRole::Swap(i) => (4, i),
        _ => (5, 0),
    });
}

/// The size of each target: a disk or an existing image file as it is; a new image file (or
/// one --size sets, `image_size`) that size, or, without it, the first image what the whole
/// plan needs (`total_need`, and a tenth more) and any other 1 GiB. An image's size is a
/// whole number of sectors.
fn size_targets(targets: &[TargetIn], image_size: Option<u64>, total_need: u64) -> Result<Vec<PlanDisk>> {
    let mut plan_disks = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let sz = match (t.size, t.image) {
            (Some(s), false) => s,
            (Some(s), true) if s > 0 && image_size.is_none() => s,
            (_, true) => match image_size {
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
                Some(ImageTarget { create: t.size.unwrap_or(0) == 0 || image_size.is_some() })
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
    Ok(plan_disks)
}

/// The filesystems in mount order (`order`), and the partitions' roles re-indexed to match.
fn reorder(filesystems: &[PlanFs], partitions: &mut [PlanPart], order: &[usize]) -> Vec<PlanFs> {
    for p in partitions.iter_mut() {
        if let PartRole::Filesystem(i) = p.role {
            p.role = PartRole::Filesystem(order.iter().position(|&o| o == i).unwrap_or(i));
        }
    }
    order.iter().map(|&i| filesystems[i].clone()).collect()
}

/// A clone made bootable through UEFI keeps the ESP (`boot`'s) as a vfat filesystem.
fn check_esp(boot: Option<&BootSetup>, filesystems: &[PlanFs]) -> Result<()> {
    if let Some(esp) = boot.and_then(|b| b.esp.as_ref()) {
        if !filesystems.iter().any(|f| &f.mountpoint == esp && f.fstype == "vfat") {
            return Err(Error::usage(
                "layout file",
                format!("it has no vfat filesystem for the ESP at {esp}, which the clone needs to boot through UEFI"),
                "keep the ESP in the layout (see `altdisk layout`)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::blockdev::Probe;
    use crate::discover::gpt::LVM_TYPE;
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
    fn partitions_go_boot_first_and_filesystems_are_listed_in_mount_order() {
        let mut src = source();
        let mut esp = fs("/boot/efi", "vfat", 10 * MIB, None);
        esp.device_size = 100 * MIB;
        src.filesystems.insert(2, esp);
        src.filesystems.push(fs("/var/log", "ext4", GIB, None));
        src.filesystems.insert(1, fs("/var", "xfs", GIB, None));
        let p = build(&src, &[disk("vdb", 40 * GIB)], &PlanOptions::default(), "x").unwrap();
        let on_disk: Vec<&str> = p
            .partitions
            .iter()
            .map(|x| match x.role {
                PartRole::Filesystem(i) => p.filesystems[i].mountpoint.as_str(),
                PartRole::Swap(_) => "swap",
                _ => "-",
            })
            .collect();
        assert_eq!(on_disk, ["-", "/boot/efi", "/boot", "/", "/var", "/home", "/var/log", "swap"]);
        let listed: Vec<&str> = p.filesystems.iter().map(|f| f.mountpoint.as_str()).collect();
        assert_eq!(listed, ["/", "/var", "/boot", "/home", "/boot/efi", "/var/log"], "parents first");
        // Each filesystem and its partition point at each other after the reordering.
        for (i, f) in p.filesystems.iter().enumerate() {
            assert_eq!(p.partitions[f.part].role, PartRole::Filesystem(i));
            assert_eq!(p.partitions[f.part].size, f.size);
        }
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
    fn many_small_files_get_the_inodes_they_need() {
        // 900,000 small files and 100,000 hard links in 3.4 GB: sized by bytes alone, mkfs
        // would give the root a third of the inodes it needs.
        let mut src = source();
        src.filesystems[0].used_inodes = 900_000;
        src.filesystems[0].used_bytes = 3400 * MIB;
        let p = build(&src, &[disk("vdb", 10 * GIB)], &PlanOptions::default(), "x").unwrap();
        let root = &p.filesystems[0];
        assert_eq!(root.inodes, Some(inodes_needed(900_000)));
        assert!(root.inodes.unwrap() > root.size / super::super::layout::EXT_BYTES_PER_INODE);
        assert!(p.render().contains(&format!("made with {} inodes", inodes_needed(900_000))), "{}", p.render());
        // The other filesystems have few files: mkfs's default is plenty.
        assert!(p.filesystems[1..].iter().all(|f| f.inodes.is_none()));
        // On a large disk the default is plenty for the root too.
        let p = build(&src, &[disk("vdb", 200 * GIB)], &PlanOptions::default(), "x").unwrap();
        assert_eq!(p.filesystems[0].inodes, None);
        // A given size that holds the bytes but not the inodes is refused before writing.
        let mut l = default_layout(&src, false);
        l.filesystems[0].size = "3600M".into();
        let opts = PlanOptions { layout: Some(l), ..Default::default() };
        let e = build(&src, &[disk("vdb", 200 * GIB)], &opts, "x").unwrap_err();
        assert!(matches!(&e, Error::TooSmall { what, .. } if what.contains("inodes")), "{e}");
        // xfs and btrfs make inodes as they go; their size makes room for them.
        let mut l = default_layout(&src, false);
        l.filesystems[0].fstype = "btrfs".into();
        let opts = PlanOptions { layout: Some(l), ..Default::default() };
        let p = build(&src, &[disk("vdb", 200 * GIB)], &opts, "x").unwrap();
        assert!(p.needed >= 3400 * MIB + inode_bytes("btrfs", 900_000), "{}", p.needed);
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
}
