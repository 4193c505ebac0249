//! Where the planned partitions go on the targets: the fixed partitions at the head of each
//! disk (altdisk's state, BIOS boot), then the space check, then each partition first-fit in
//! its disk order, then either the clone's volume group in what is left or the growing
//! filesystems taking it. The disk layout this leaves is contiguous, MiB-aligned and within
//! each disk's margins.

use uuid::Uuid;

use super::{PartRole, PlanDisk, PlanFs, PlanPart, PlanSwap, PlanVg};
use crate::discover::gpt::{LVM_TYPE, META_NAME, META_TYPE};
use crate::discover::source;
use crate::error::{Error, Result};
use crate::size::{self, MIB};

/// LVM's default extent, and room for its metadata at the start of each physical volume.
pub(super) const EXTENT: u64 = 4 * MIB;
const PV_OVERHEAD: u64 = 2 * MIB;

/// Space kept free at the start (GPT, alignment) and end (backup GPT) of each disk.
const DISK_HEAD: u64 = MIB;
const DISK_TAIL: u64 = MIB;
const META_SIZE: u64 = MIB;
const BIOS_BOOT_SIZE: u64 = MIB;

/// A partition to place on a disk.
pub(super) struct Item {
    pub role: PartRole,
    pub need: u64,
    pub type_guid: String,
    pub name: String,
    /// The ESP: it goes on the first disk, which boots.
    pub first_disk_only: bool,
}

/// A logical volume of the clone's volume group.
pub(super) struct LvItem {
    pub role: PartRole,
    pub name: String,
    pub need: u64,
    /// It takes what the volume group has left.
    pub grow: bool,
}

/// What the volume group needs: its volumes in whole extents, and room for metadata on
/// each physical volume (one a disk). Nothing without logical volumes.
pub(super) fn vg_need(lvs: &[LvItem], disks: usize) -> u64 {
    lvs.iter().map(|l| size::round_up(l.need, EXTENT)).sum::<u64>()
        + if lvs.is_empty() { 0 } else { (PV_OVERHEAD + EXTENT) * disks as u64 }
}

/// Everything the targets must hold: the partitions, the volume group, the fixed partitions
/// and each disk's margins. A new image file is made this big (and a tenth more); the space
/// check names it.
pub(super) fn total_need(items: &[Item], vg_need: u64, disks: usize, bios_boot: bool) -> u64 {
    items.iter().map(|i| i.need).sum::<u64>()
        + vg_need
        + META_SIZE * disks as u64
        + if bios_boot { BIOS_BOOT_SIZE } else { 0 }
        + (DISK_HEAD + DISK_TAIL) * disks as u64
}

/// The partitions laid out so far, and how far each disk is filled.
pub(super) struct Disks {
    partitions: Vec<PlanPart>,
    /// Where the next partition starts on each disk.
    cursor: Vec<u64>,
    /// Where the usable room ends on each disk (before the backup GPT).
    ends: Vec<u64>,
}

impl Disks {
    /// The fixed partitions at the head of each disk: altdisk's state partition on every
    /// disk, and a BIOS boot partition on the first when the source has one. Fails on a disk
    /// too small to hold even those.
    pub(super) fn new(disks: &[PlanDisk], bios_boot: bool) -> Result<Disks> {
        let mut out = Disks { partitions: Vec::new(), cursor: Vec::new(), ends: Vec::new() };
        for (i, d) in disks.iter().enumerate() {
            let end = size::round_down(d.size.saturating_sub(DISK_TAIL), MIB);
            if DISK_HEAD + META_SIZE > end {
                return Err(Error::TooSmall {
                    what: format!("disk {}", d.name),
                    needed: size::human(DISK_HEAD + META_SIZE + DISK_TAIL + MIB),
                    available: size::human(d.size),
                    todo: "use a larger disk".into(),
                });
            }
            out.cursor.push(DISK_HEAD);
            out.ends.push(end);
            out.push(i, META_SIZE, META_TYPE, META_NAME, PartRole::Meta);
            if i == 0 && bios_boot {
                out.push(0, BIOS_BOOT_SIZE, source::BIOS_BOOT_TYPE, "alt_bios_boot", PartRole::BiosBoot);
            }
        }
        Ok(out)
    }

    /// Room left on disk `d`.
    fn room(&self, d: usize) -> u64 {
        self.ends[d].saturating_sub(self.cursor[d])
    }

    /// Add a partition of `size` after the last one on disk `d`; returns its index.
    fn push(&mut self, d: usize, size: u64, type_guid: &str, name: &str, role: PartRole) -> usize {
        let number = self.partitions.iter().filter(|p| p.disk == d).count() as u32 + 1;
        self.partitions.push(PlanPart {
            disk: d,
            number,
            start: self.cursor[d],
            size,
            type_guid: type_guid.into(),
            guid: Uuid::new_v4(),
            name: name.into(),
            role,
        });
        self.cursor[d] += size;
        self.partitions.len() - 1
    }

    /// The space check: whether `items_need` (the partitions and the volume group) fits the
    /// room the disks have left. When it does not, the targets are too small (naming
    /// `total_need`, all they must hold), or with -S (`skip`) every size is scaled down by
    /// the factor returned, with a warning.
    pub(super) fn scale(
        &self,
        disks: &[PlanDisk],
        items_need: u64,
        total_need: u64,
        skip: bool,
        warnings: &mut Vec<String>,
    ) -> Result<f64> {
        let available: u64 = (0..self.cursor.len()).map(|d| self.room(d)).sum();
        let scale = scale_to_fit(items_need, available, skip, || Error::TooSmall {
            what: if disks.len() == 1 {
                format!("target {}", disks[0].name)
            } else {
                "the targets together".to_string()
            },
            needed: size::human(total_need),
            available: size::human(disks.iter().map(|d| d.size).sum()),
            todo: "add a disk (-d \"a b\"), use a larger one, shrink sizes with -i, or skip the check with -S".into(),
        })?;
        if items_need > available {
            warnings.push(format!(
                "-S: the targets hold {} of the {} planned; sizes are scaled down and the copy may run out of space",
                size::human(available),
                size::human(items_need)
            ));
        }
        Ok(scale)
    }

    /// Place each item, in order, on the first disk with room for it (the ESP on the first
    /// disk only), its size scaled by `scale`; its filesystem or swap learns its partition
    /// and final size. With -S (`skip`) an item that fits nowhere takes what is left on the
    /// roomiest disk; otherwise the targets are too small for it.
    pub(super) fn place(
        &mut self,
        items: &[Item],
        scale: f64,
        skip: bool,
        filesystems: &mut [PlanFs],
        swaps: &mut [PlanSwap],
    ) -> Result<()> {
        for it in items {
            let mut want = size::round_down((it.need as f64 * scale) as u64, MIB).max(MIB);
            let disks: Vec<usize> = if it.first_disk_only { vec![0] } else { (0..self.cursor.len()).collect() };
            let d = match disks.iter().copied().find(|&d| self.room(d) >= want) {
                Some(d) => d,
                None if skip => {
                    let d = *disks.iter().max_by_key(|&&d| self.room(d)).unwrap_or(&0);
                    want = size::round_down(self.room(d), MIB);
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
                        available: size::human(disks.iter().map(|&d| self.room(d)).max().unwrap_or(0)),
                        todo: if it.first_disk_only {
                            "make the first target the largest disk".into()
                        } else {
                            "use a larger disk or add one".into()
                        },
                    });
                }
            };
            let idx = self.push(d, want, &it.type_guid, &it.name, it.role);
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
        Ok(())
    }

    /// The clone's volume group: what is left on each disk (when it holds a few extents)
    /// becomes one of its physical volumes, and each logical volume gets its size in whole
    /// extents; with -S (`skip`) sizes are scaled down to fit, otherwise the group is too
    /// small. One volume that grows takes what the group has left. Its filesystem or swap
    /// learns its final size.
    pub(super) fn volume_group(
        &mut self,
        name: &str,
        lv_items: &[LvItem],
        skip: bool,
        filesystems: &mut [PlanFs],
        swaps: &mut [PlanSwap],
    ) -> Result<PlanVg> {
        let mut capacity = 0u64;
        for d in 0..self.cursor.len() {
            let free = size::round_down(self.room(d), MIB);
            if free < PV_OVERHEAD + 2 * EXTENT {
                continue;
            }
            self.push(d, free, LVM_TYPE, "alt_pv", PartRole::Pv);
            capacity += size::round_down(free - PV_OVERHEAD, EXTENT);
        }
        let want: u64 = lv_items.iter().map(|l| size::round_up(l.need, EXTENT)).sum();
        let scale = scale_to_fit(want, capacity, skip, || Error::TooSmall {
            what: "the volume group on the targets".into(),
            needed: size::human(want),
            available: size::human(capacity),
            todo: "add a disk, use a larger one, shrink logical volumes with -i, or skip the check with -S".into(),
        })?;
        let mut lvs = Vec::new();
        let mut used = 0u64;
        for l in lv_items {
            let sz = size::round_down((l.need as f64 * scale) as u64, EXTENT).max(EXTENT);
            used += sz;
            lvs.push((l.name.clone(), sz));
        }
        if let Some(g) = lv_items.iter().position(|l| l.grow) {
            lvs[g].1 += capacity.saturating_sub(used);
        }
        for (l, (_, sz)) in lv_items.iter().zip(&lvs) {
            match l.role {
                PartRole::Filesystem(i) => filesystems[i].size = *sz,
                PartRole::Swap(i) => swaps[i].size = *sz,
                _ => {}
            }
        }
        Ok(PlanVg { name: name.to_string(), lvs })
    }

    /// Without a volume group: on each disk, the first filesystem that grows takes what is
    /// left of the disk.
    pub(super) fn grow(&mut self, filesystems: &mut [PlanFs]) {
        for d in 0..self.cursor.len() {
            let free = self.room(d);
            let grow = self
                .partitions
                .iter()
                .position(|p| p.disk == d && matches!(p.role, PartRole::Filesystem(i) if filesystems[i].grow));
            if let (Some(g), true) = (grow, free > 0) {
                let p = &mut self.partitions[g];
                p.size += free;
                if let PartRole::Filesystem(i) = p.role {
                    filesystems[i].size = p.size;
                }
                self.cursor[d] += free;
            }
        }
    }

    /// The partitions, each disk's laid out end to end from its head (growth moved later
    /// partitions).
    pub(super) fn into_partitions(mut self) -> Vec<PlanPart> {
        for d in 0..self.cursor.len() {
            let mut c = DISK_HEAD;
            for p in self.partitions.iter_mut().filter(|p| p.disk == d) {
                p.start = c;
                c += p.size;
            }
        }
        self.partitions
    }
}

/// The factor sizes are scaled by for `want` to fit in `have`: 1 when it fits; the fraction
/// that fits with -S (`skip`); otherwise the error `too_small` makes.
fn scale_to_fit(want: u64, have: u64, skip: bool, too_small: impl FnOnce() -> Error) -> Result<f64> {
    if want <= have {
        Ok(1.0)
    } else if skip {
        Ok(have as f64 / want as f64)
    } else {
        Err(too_small())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(size: u64) -> PlanDisk {
        PlanDisk { name: "vdb".into(), path: "/dev/vdb".into(), alias: None, size, image: None, disk_guid: Uuid::nil() }
    }

    #[test]
    fn the_volume_group_takes_what_is_left_and_shrinks_only_with_skip() {
        let swap = PlanSwap { size: 0, label: None, uuid: String::new(), source: None, part: usize::MAX, lv: None };
        let lvs = [LvItem { role: PartRole::Swap(0), name: "swap".into(), need: 200 * MIB, grow: false }];
        let mut swaps = [swap];
        // 100 MiB: 1 MiB head, altdisk's state, 97 MiB for the physical volume, 1 MiB tail.
        let mut d = Disks::new(&[disk(100 * MIB)], false).unwrap();
        let e = d.volume_group("vg", &lvs, false, &mut [], &mut swaps).unwrap_err();
        assert!(matches!(e, Error::TooSmall { .. }), "{e}");
        assert!(e.to_string().contains("volume group"), "{e}");

        let mut d = Disks::new(&[disk(100 * MIB)], false).unwrap();
        let vg = d.volume_group("vg", &lvs, true, &mut [], &mut swaps).unwrap();
        let capacity = size::round_down(97 * MIB - PV_OVERHEAD, EXTENT);
        let (name, sz) = &vg.lvs[0];
        assert_eq!(name, "swap");
        assert!(*sz <= capacity && *sz >= capacity - EXTENT && sz % EXTENT == 0, "{sz}");
        assert_eq!(swaps[0].size, *sz);
        let parts = d.into_partitions();
        assert_eq!(
            parts.iter().map(|p| (p.role, p.start, p.size)).collect::<Vec<_>>(),
            [(PartRole::Meta, MIB, MIB), (PartRole::Pv, 2 * MIB, 97 * MIB)]
        );
    }
}
