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
    alt_label, check_fstype, check_label, check_lv_name, check_subvol, default_inodes, default_layout, inode_bytes,
    inodes_needed, min_size, needed, EXT_MIN_BYTES_PER_INODE,
};
use super::place::{self, Disks, Item, LvItem};
use super::{
    ImageTarget, Layout, LayoutFs, PartRole, Plan, PlanDisk, PlanFs, PlanOptions, PlanPart, PlanSwap, SourceRef,
    TargetIn,
};
use crate::discover::blockdev::Probe;
use crate::discover::boot::BootSetup;
use crate::discover::gpt::{self, LINUX_FS_TYPE, SWAP_TYPE};
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
    esp_for_sectors(&mut demand, &mut filesystems, targets[0].sector_size, &mut warnings);
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
    share_filesystems(&mut filesystems);
    size_inodes(&mut filesystems, opts.skip_space_check, &mut warnings)?;
    encrypt(src, &mut partitions, &filesystems, opts.boot.as_ref())?;

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
        let subvol = lf.subvol.as_deref().map(|sv| check_subvol(&lf.mountpoint, sv)).transpose()?;
        if subvol.is_some() && lf.fstype != "btrfs" {
            return Err(Error::usage(
                format!("layout for {}", lf.mountpoint),
                format!("it names a subvolume, which {} does not have", lf.fstype),
                "make it btrfs, or remove subvol",
            ));
        }
        let merged = merged_into(src, &lf.mountpoint, listed);
        let used = sf.map(|f| f.used_bytes).unwrap_or(0) + merged.iter().map(|f| f.used_bytes).sum::<u64>();
        let inodes = sf.map(|f| f.used_inodes).unwrap_or(0) + merged.iter().map(|f| f.used_inodes).sum::<u64>();
        for m in &merged {
            warnings.push(format!("{} is not in the layout: its files go into {}", m.mountpoint, lf.mountpoint));
        }
        if let Some(on) = &lf.on {
            check_subvol_entry(lf, on, subvol.is_some())?;
            filesystems.push(PlanFs {
                mountpoint: lf.mountpoint.clone(),
                fstype: lf.fstype.clone(),
                label: None,
                uuid: String::new(),
                size: 0,
                used,
                grow: false,
                source: sf.map(|f| source_ref(&f.device, &f.path, &f.fstype, &f.probe, &f.paths)),
                merged: merged.iter().map(|f| f.mountpoint.clone()).collect(),
                part: usize::MAX,
                lv: None,
                // Its files count in its filesystem's entry.
                used_inodes: 0,
                inodes: None,
                subvol,
                on: Some(on.clone()),
                default_subvol: None,
            });
            continue;
        }
        // A further mount of a btrfs filesystem counts no used space of its own: made a
        // filesystem of its own, it needs a size.
        let measured = sf.is_some_and(|f| !f.is_subvol_mount());
        if sf.is_some() && !measured && matches!(lf.size.as_str(), "auto" | "grow") {
            return Err(Error::usage(
                format!("layout for {}", lf.mountpoint),
                "it is a btrfs subvolume of the source made a filesystem of its own, and a subvolume's used space is not measured",
                "give it a size such as \"10G\" (or keep it a subvolume with on = and subvol =)",
            ));
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
                let type_guid = match sf.and_then(|f| f.probe.parttype.as_deref()).and_then(gpt::gpt_type_of) {
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
            subvol,
            on: None,
            default_subvol: sf.and_then(|f| f.default_subvol.clone()),
        });
    }
    check_subvolumes(&mut filesystems, demand, warnings)?;
    Ok(filesystems)
}

/// FAT32 needs at least 65525 clusters: on 4096-byte sectors (one sector a cluster at the
/// least) an ESP of 256 MiB is too small, and firmware would read it as FAT16. On a first
/// target of larger sectors the ESP is made at least 260 MiB (what 4Kn installers use).
pub(super) const ESP_MIN_4K: u64 = 260 * MIB;

fn esp_for_sectors(demand: &mut Demand, filesystems: &mut [PlanFs], sector_size: u64, warnings: &mut Vec<String>) {
    if sector_size < 4096 {
        return;
    }
    for it in demand.parts.iter_mut().filter(|it| it.first_disk_only && it.need < ESP_MIN_4K) {
        if let PartRole::Filesystem(i) = it.role {
            warnings.push(format!(
                "{} grows from {} to {}: FAT32 on {sector_size}-byte sectors needs it",
                filesystems[i].mountpoint,
                size::human(it.need),
                size::human(ESP_MIN_4K)
            ));
            filesystems[i].size = ESP_MIN_4K;
        }
        it.need = ESP_MIN_4K;
    }
}

/// A layout entry that is a subvolume of another's filesystem (`on`) names its subvolume
/// and has nothing of a filesystem's own.
fn check_subvol_entry(lf: &LayoutFs, on: &str, has_subvol: bool) -> Result<()> {
    let bad = |why: &str, todo: &str| {
        Err(Error::usage(format!("layout for {} (on = \"{on}\")", lf.mountpoint), why.to_string(), todo.to_string()))
    };
    if lf.fstype != "btrfs" {
        return bad("only btrfs subvolumes live on another mount point's filesystem", "make it btrfs, or remove on");
    }
    if !has_subvol {
        return bad("it names no subvolume", "add subvol = \"/@name\"");
    }
    if lf.label.is_some() || lf.lv.is_some() || lf.size != "auto" {
        return bad(
            "a subvolume has no label, logical volume or size of its own: its filesystem's are used",
            "remove label, lv and size from it (or remove on to make it a filesystem of its own)",
        );
    }
    Ok(())
}

/// The subvolume entries point at a btrfs filesystem of the layout, no subvolume is named
/// twice in one filesystem, the files merged into a subvolume are counted in its
/// filesystem's size, and a default subvolume the clone does not have is dropped.
fn check_subvolumes(filesystems: &mut [PlanFs], demand: &mut Demand, warnings: &mut Vec<String>) -> Result<()> {
    for i in 0..filesystems.len() {
        let Some(on) = filesystems[i].on.clone() else { continue };
        let mp = filesystems[i].mountpoint.clone();
        let Some(o) = filesystems.iter().position(|f| f.mountpoint == on) else {
            return Err(Error::usage(
                format!("layout for {mp}"),
                format!("on = \"{on}\" names no mount point of the layout"),
                "name the mount point whose btrfs filesystem holds the subvolume",
            ));
        };
        if filesystems[o].fstype != "btrfs" || filesystems[o].on.is_some() {
            return Err(Error::usage(
                format!("layout for {mp}"),
                format!("on = \"{on}\" is not a btrfs filesystem of its own"),
                "name the mount point that carries the btrfs filesystem (the one without on)",
            ));
        }
        let extra = filesystems[i].used;
        if extra > 0 {
            let role = PartRole::Filesystem(o);
            if let Some(it) = demand.parts.iter_mut().find(|it| it.role == role) {
                it.need += needed(extra, 0, "btrfs");
            } else if let Some(l) = demand.lvs.iter_mut().find(|l| l.role == role) {
                l.need += needed(extra, 0, "btrfs");
            }
        }
    }
    for f in filesystems.iter().filter(|f| f.on.is_none() && f.fstype == "btrfs") {
        let mut all: Vec<&str> = std::iter::once(f)
            .chain(filesystems.iter().filter(|o| o.on.as_deref() == Some(f.mountpoint.as_str())))
            .filter_map(|o| o.subvol.as_deref())
            .collect();
        all.sort();
        if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::usage(
                format!("subvolume {} of the btrfs filesystem on {}", w[0], f.mountpoint),
                "it is mounted at two mount points of the layout",
                "give each mount point its own subvolume",
            ));
        }
    }
    for i in 0..filesystems.len() {
        let Some(d) = filesystems[i].default_subvol.clone() else { continue };
        if !filesystems[i].subvolumes_of(filesystems).contains(&d.as_str()) {
            warnings.push(format!(
                "the source's default btrfs subvolume {d} (on {}) is not in the clone's layout: the clone's default is its top level",
                filesystems[i].mountpoint
            ));
            filesystems[i].default_subvol = None;
        }
    }
    Ok(())
}

/// The partitions that become LUKS2 containers, as the source's are: the physical volumes
/// of a volume group whose logical volumes live on LUKS (every one: the group may spread
/// over more disks than the source's), and the partition of a filesystem whose source
/// filesystem does. Each gets its own name (the source's with AIX's alt_ prefix flipped, a
/// number after the first) and UUID. A clone made bootable with an encrypted root needs a
/// /boot of its own outside: GRUB is not set up to unlock LUKS.
fn encrypt(src: &Source, partitions: &mut [PlanPart], filesystems: &[PlanFs], boot: Option<&BootSetup>) -> Result<()> {
    let mut seen: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut container = |sc: &source::SourceCrypt| {
        let n = seen.entry(sc.name.clone()).or_insert(0);
        *n += 1;
        let base = alt_label(&sc.name, 120);
        let (name, source) = if *n == 1 {
            (base, Some(source_ref(&sc.device, &sc.device, "crypto_LUKS", &sc.probe, &sc.paths)))
        } else {
            (format!("{base}_{n}"), None)
        };
        super::PlanCrypt { name, uuid: Uuid::new_v4(), source_name: sc.name.clone(), source }
    };
    if let Some(sc) = src.filesystems.iter().filter(|f| f.lv.is_some()).find_map(|f| f.crypt.as_ref()) {
        for p in partitions.iter_mut().filter(|p| p.role == PartRole::Pv) {
            p.crypt = Some(container(sc));
        }
    }
    for f in filesystems.iter().filter(|f| f.lv.is_none() && f.on.is_none()) {
        let sf = src.filesystems.iter().find(|s| s.mountpoint == f.mountpoint && s.lv.is_none());
        if let (Some(sc), Some(p)) = (sf.and_then(|s| s.crypt.as_ref()), partitions.get_mut(f.part)) {
            p.crypt = Some(container(sc));
        }
    }
    let encrypted = |f: &PlanFs| match &f.lv {
        Some(_) => partitions.iter().any(|p| p.role == PartRole::Pv && p.crypt.is_some()),
        None => partitions.get(f.part).is_some_and(|p| p.crypt.is_some()),
    };
    let root = filesystems.iter().find(|f| f.mountpoint == "/");
    let boot_fs = filesystems.iter().find(|f| f.mountpoint == "/boot");
    if boot.is_some() && root.is_some_and(encrypted) && boot_fs.is_none_or(encrypted) {
        return Err(Error::unsupported(
            "making a clone bootable whose /boot is encrypted",
            ": its kernels would live in LUKS, which GRUB is not set up to unlock (GRUB_ENABLE_CRYPTODISK)",
            "keep /boot a filesystem of its own outside the encrypted volume (as Debian's guided install does), or clone with -P12 and make it bootable yourself",
        ));
    }
    Ok(())
}

/// Each subvolume entry takes its filesystem's partition or logical volume and identity.
fn share_filesystems(filesystems: &mut [PlanFs]) {
    for i in 0..filesystems.len() {
        let Some(on) = filesystems[i].on.clone() else { continue };
        if let Some(o) = filesystems.iter().position(|f| f.mountpoint == on) {
            let o = filesystems[o].clone();
            let f = &mut filesystems[i];
            (f.part, f.lv, f.uuid, f.size, f.label) = (o.part, o.lv, o.uuid, o.size, o.label);
        }
    }
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
                type_guid: s
                    .and_then(|s| s.probe.parttype.as_deref())
                    .and_then(gpt::gpt_type_of)
                    .unwrap_or_else(|| SWAP_TYPE.into()),
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
            sector_size: t.sector_size,
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
            subvol: None,
            on: None,
            default_subvol: None,
            crypt: None,
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
        TargetIn {
            name: name.into(),
            path: format!("/dev/{name}").into(),
            alias: None,
            size: Some(size),
            image: false,
            sector_size: 512,
        }
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
            subvol: None,
            on: None,
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
            subvol: None,
            on: None,
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
        let t = TargetIn {
            name: "/tmp/x.img".into(),
            path: "/tmp/x.img".into(),
            alias: None,
            size: None,
            image: true,
            sector_size: 512,
        };
        let p = build(&source(), &[t], &PlanOptions::default(), "x").unwrap();
        assert!(p.targets[0].size >= p.needed);
        assert!(p.targets[0].image.as_ref().unwrap().create);
    }

    /// One btrfs filesystem mounted three times (@ on /, @home on /home, @log on
    /// /var/log), as Ubuntu installs it, beside an ext4 /boot.
    fn btrfs_source() -> Source {
        let mut src = source();
        src.filesystems.retain(|f| f.mountpoint != "/home");
        let root = &mut src.filesystems[0];
        root.fstype = "btrfs".into();
        root.subvol = Some("/@".into());
        root.default_subvol = Some("/@".into());
        for (mp, sv) in [("/home", "/@home"), ("/var/log", "/@log")] {
            let mut f = src.filesystems[0].clone();
            f.mountpoint = mp.into();
            f.subvol = Some(sv.into());
            f.on = Some("/".into());
            f.default_subvol = None;
            f.used_bytes = 0;
            src.filesystems.push(f);
        }
        src
    }

    #[test]
    fn btrfs_subvolumes_share_one_filesystem() {
        let src = btrfs_source();
        let l = default_layout(&src, false);
        let home = l.filesystems.iter().find(|f| f.mountpoint == "/home").unwrap();
        assert_eq!(
            (home.on.as_deref(), home.subvol.as_deref(), home.label.as_deref()),
            (Some("/"), Some("/@home"), None)
        );
        assert_eq!(Layout::parse(&l.to_toml(), "t").unwrap(), l, "the layout round-trips");
        let p = build(&src, &[disk("vdb", 20 * GIB)], &PlanOptions::default(), "x").unwrap();
        let fs_parts: Vec<_> = p.partitions.iter().filter(|x| matches!(x.role, PartRole::Filesystem(_))).collect();
        assert_eq!(fs_parts.len(), 2, "/ (btrfs) and /boot: {:?}", p.partitions);
        let root = &p.filesystems[0];
        assert_eq!(root.mountpoint, "/");
        assert_eq!(root.subvolumes_of(&p.filesystems), vec!["/@", "/@home", "/@log"]);
        assert_eq!(root.default_subvol.as_deref(), Some("/@"));
        assert_eq!(root.mount_options().as_deref(), Some("subvol=/@"));
        for mp in ["/home", "/var/log"] {
            let f = p.filesystems.iter().find(|f| f.mountpoint == mp).unwrap();
            assert_eq!((f.part, &f.uuid, &f.label, f.on.as_deref()), (root.part, &root.uuid, &root.label, Some("/")));
        }
        let text = p.render();
        assert!(text.contains("subvolumes /@ on /, /@home on /home, /@log on /var/log"), "{text}");
        // Still one partition holds it all: the space check counts the filesystem once.
        assert!(build(&src, &[disk("vdb", 4 * GIB)], &PlanOptions::default(), "x").is_ok());
    }

    #[test]
    fn btrfs_subvolume_layout_errors() {
        let src = btrfs_source();
        let try_layout = |edit: &dyn Fn(&mut Layout)| {
            let mut l = default_layout(&src, false);
            edit(&mut l);
            build(&src, &[disk("vdb", 20 * GIB)], &PlanOptions { layout: Some(l), ..Default::default() }, "x")
        };
        let fs = |l: &mut Layout, mp: &str| -> usize { l.filesystems.iter().position(|f| f.mountpoint == mp).unwrap() };
        // /home made a filesystem of its own needs a size: a subvolume's use is not measured.
        let e = try_layout(&|l| {
            let i = fs(l, "/home");
            l.filesystems[i].on = None;
            l.filesystems[i].subvol = None;
            l.filesystems[i].fstype = "ext4".into();
        })
        .unwrap_err();
        assert!(e.to_string().contains("give it a size"), "{e}");
        let p = try_layout(&|l| {
            let i = fs(l, "/home");
            l.filesystems[i].on = None;
            l.filesystems[i].subvol = None;
            l.filesystems[i].fstype = "ext4".into();
            l.filesystems[i].size = "1G".into();
        })
        .unwrap();
        let home = p.filesystems.iter().find(|f| f.mountpoint == "/home").unwrap();
        assert!(home.on.is_none() && home.part != p.filesystems[0].part && home.fstype == "ext4");
        assert_eq!(p.filesystems[0].subvolumes_of(&p.filesystems), vec!["/@", "/@log"]);
        // on = a mount point that is not btrfs, or not in the layout.
        let e = try_layout(&|l| {
            let i = fs(l, "/home");
            l.filesystems[i].on = Some("/boot".into());
        })
        .unwrap_err();
        assert!(e.to_string().contains("not a btrfs filesystem"), "{e}");
        let e = try_layout(&|l| {
            let i = fs(l, "/home");
            l.filesystems[i].on = Some("/nowhere".into());
        })
        .unwrap_err();
        assert!(e.to_string().contains("no mount point"), "{e}");
        // One subvolume at two mount points; a subvolume with a size; a bad path.
        let e = try_layout(&|l| {
            let i = fs(l, "/var/log");
            l.filesystems[i].subvol = Some("@home".into());
        })
        .unwrap_err();
        assert!(e.to_string().contains("two mount points"), "{e}");
        let e = try_layout(&|l| {
            let i = fs(l, "/home");
            l.filesystems[i].size = "2G".into();
        })
        .unwrap_err();
        assert!(e.to_string().contains("no label, logical volume or size"), "{e}");
        let e = try_layout(&|l| {
            let i = fs(l, "/home");
            l.filesystems[i].subvol = Some("/@home/../x".into());
        })
        .unwrap_err();
        assert!(e.to_string().contains("not a subvolume path"), "{e}");
        // Renaming a subvolume drops a default that no longer exists, with a warning.
        let p = try_layout(&|l| l.filesystems[0].subvol = Some("@root".into())).unwrap();
        assert_eq!(p.filesystems[0].default_subvol, None);
        assert!(p.warnings.iter().any(|w| w.contains("default btrfs subvolume /@")), "{:?}", p.warnings);
    }

    #[test]
    fn the_esp_grows_to_hold_fat32_on_4k_sectors() {
        let mut src = source();
        let mut esp = fs("/boot/efi", "vfat", 10 * MIB, None);
        esp.device_size = 256 * MIB;
        src.filesystems.insert(1, esp);
        let esp_of = |p: &Plan| {
            let f = p.filesystems.iter().find(|f| f.mountpoint == "/boot/efi").unwrap();
            (f.size, p.partitions[f.part].size)
        };
        let p = build(&src, &[disk("vdb", 20 * GIB)], &PlanOptions::default(), "x").unwrap();
        assert_eq!(esp_of(&p), (256 * MIB, 256 * MIB));
        assert_eq!(p.targets[0].sector_size, 512);
        let mut t = disk("vdb", 20 * GIB);
        t.sector_size = 4096;
        let p = build(&src, &[t], &PlanOptions::default(), "x").unwrap();
        assert_eq!(esp_of(&p), (super::ESP_MIN_4K, super::ESP_MIN_4K));
        assert_eq!(p.targets[0].sector_size, 4096);
        assert!(p.warnings.iter().any(|w| w.contains("FAT32 on 4096-byte sectors")), "{:?}", p.warnings);
        assert!(p.partitions.iter().all(|x| x.start % 4096 == 0 && x.size % 4096 == 0));
    }

    #[test]
    fn lvm_on_luks_gets_luks_physical_volumes_and_keeps_boot_outside() {
        let mut src = source();
        let crypt = crate::discover::source::SourceCrypt {
            name: "vda3_crypt".into(),
            device: "/dev/vda3".into(),
            probe: Probe { uuid: Some("1111-luks".into()), fstype: Some("crypto_LUKS".into()), ..Default::default() },
            paths: vec!["/dev/vda3".into()],
        };
        let lv = |n: &str, sz| {
            Some(crate::discover::source::SourceLv { vg: "production-vg".into(), lv: n.into(), size: sz })
        };
        src.filesystems[0].lv = lv("root", 3 * GIB);
        src.filesystems[0].crypt = Some(crypt.clone());
        src.filesystems[2].lv = lv("home", GIB);
        src.filesystems[2].crypt = Some(crypt);
        let boot = crate::discover::boot::BootSetup {
            firmware: crate::discover::boot::Firmware::Uefi,
            loader: crate::discover::boot::Loader::GrubEfi { id: "debian".into(), shim: false },
            initramfs: crate::discover::boot::Initramfs::UpdateInitramfs,
            esp: None,
            kernels: vec!["6.1".into()],
        };
        let opts = PlanOptions { boot: Some(boot.clone()), ..Default::default() };
        let p = build(&src, &[disk("vdb", 12 * GIB), disk("vdc", 4 * GIB)], &opts, "altinst_rootvg").unwrap();
        let pvs: Vec<&PlanPart> = p.partitions.iter().filter(|x| x.role == PartRole::Pv).collect();
        assert_eq!(pvs.len(), 2);
        let names: Vec<&str> = pvs.iter().map(|x| x.crypt.as_ref().unwrap().name.as_str()).collect();
        assert_eq!(names, ["alt_vda3_crypt", "alt_vda3_crypt_2"]);
        assert!(pvs[0].crypt.as_ref().unwrap().source.as_ref().is_some_and(|r| r.uuid.as_deref() == Some("1111-luks")));
        assert!(pvs[1].crypt.as_ref().unwrap().source.is_none());
        assert_ne!(pvs[0].crypt.as_ref().unwrap().uuid, pvs[1].crypt.as_ref().unwrap().uuid);
        let boot_part = p.filesystems.iter().find(|f| f.mountpoint == "/boot").map(|f| &p.partitions[f.part]).unwrap();
        assert!(boot_part.crypt.is_none(), "/boot stays outside");
        assert!(p.render().contains("LUKS2 alt_vda3_crypt (new key): LVM physical volume"), "{}", p.render());
        // Without a /boot of its own the kernels would be inside LUKS: refused when made bootable.
        src.filesystems.retain(|f| f.mountpoint != "/boot");
        let e = build(&src, &[disk("vdb", 12 * GIB)], &opts, "x").unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains("/boot is encrypted"), "{e}");
        assert!(build(&src, &[disk("vdb", 12 * GIB)], &PlanOptions::default(), "x").is_ok(), "fine without phase 3");
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
