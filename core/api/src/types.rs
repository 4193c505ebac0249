//! What the service's methods return, as D-Bus structures. D-Bus has no optional values:
//! an empty string (or 0) means "none" wherever a field says so.
//!
//! The first three ([`DiskInfo`], [`BootEnvInfo`], [`BootEntryInfo`]) are API 1.0 and never
//! change; [`FoundSystem`] came with 1.2 (the rescue actions); the others came with 1.1 and
//! carry what a GUI draws.

use serde::{Deserialize, Serialize};
use zbus::wire::{OwnedObjectPath, Type};

/// A disk as `Disks()` shows it (1.0): `(ssssstsbss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DiskInfo {
    pub name: String,
    pub alias: String,
    pub path: String,
    pub model: String,
    pub serial: String,
    pub size: u64,
    pub bus: String,
    pub removable: bool,
    /// rootvg, old_rootvg, free, in use, not free, or the name of the altdisk system on it.
    pub role: String,
    /// Why it is in use, or the state of the system on it.
    pub detail: String,
}

/// A boot environment, a system on disks altdisk knows (1.0): `(sassss)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct BootEnvInfo {
    pub name: String,
    pub disks: Vec<String>,
    pub state: String,
    pub source: String,
    pub created: String,
}

/// One UEFI boot entry, matched to a disk where it points at one (1.0): `(ssssbbbb)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct BootEntryInfo {
    /// Boot####
    pub number: String,
    pub description: String,
    /// The disk it boots from; empty for firmware entries (network, shell).
    pub disk: String,
    /// The system on that disk (rootvg, altinst_rootvg, ...); empty when none.
    pub system: String,
    pub active: bool,
    pub in_order: bool,
    pub next: bool,
    pub current: bool,
}

/// What a disk is to altdisk, for a client to branch on (DiskDetail::kind).
pub mod kind {
    /// It holds the running system.
    pub const RUNNING: &str = "running";
    /// It holds the system the running one was cloned from (old_rootvg).
    pub const FORMER: &str = "former";
    /// It holds an altdisk system (altinst_rootvg, or renamed); see DiskDetail::system.
    pub const ALTERNATE: &str = "alternate";
    /// Nothing on it: a clone may be made there.
    pub const FREE: &str = "free";
    /// Mounted, swap, held by LVM/RAID/crypt, read-only: it cannot be written.
    pub const IN_USE: &str = "in-use";
    /// It holds data (a partition table, filesystems): a clone erases them (force).
    pub const HOLDS_DATA: &str = "holds-data";
}

/// The system recorded on a disk, or empty strings when there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SystemRef {
    pub name: String,
    /// The record's id (a UUID); the same on every disk of one system.
    pub id: String,
    /// incomplete, copied, customized, complete (or running for rootvg).
    pub state: String,
    /// The host it was cloned from.
    pub source_host: String,
    /// RFC 3339.
    pub created: String,
}

/// A partition: one that is on a disk now, or one a plan makes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct PartInfo {
    pub number: u32,
    /// The partition's device (`/dev/sdb1`); empty for a planned one.
    pub device: String,
    /// GPT partition name.
    pub name: String,
    /// Planned partitions: meta, bios-boot, filesystem, swap, lvm-pv. Existing: empty.
    pub role: String,
    /// Byte offset on the disk.
    pub start: u64,
    pub size: u64,
    /// Filesystem or signature (ext4, vfat, swap, LVM2_member); empty when none.
    pub fstype: String,
    pub label: String,
    /// Existing: where it is mounted now; planned: where the clone mounts it.
    pub mountpoint: String,
    /// Planned: bytes of data copied into it.
    pub used: u64,
    /// Planned: the source device its contents come from (empty for a new one).
    pub source: String,
    /// Existing: the operating system found on it (PRETTY_NAME of os-release), if any.
    pub os: String,
}

/// A disk as the GUI's cards draw it (`DiskDetails()`, 1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DiskDetail {
    pub name: String,
    /// hdiskN
    pub alias: String,
    pub path: String,
    pub model: String,
    pub serial: String,
    pub size: u64,
    /// Transport: sata, nvme, usb, ...; empty when unknown (virtual disks, loop devices).
    pub bus: String,
    pub removable: bool,
    pub read_only: bool,
    /// A loop device (an image file attached).
    pub loop_device: bool,
    /// One of [`kind`].
    pub kind: String,
    /// As `Disks()` says: rootvg, old_rootvg, free, in use, not free, or a system's name.
    pub role: String,
    /// Why it is in use, or the state of the system on it.
    pub detail: String,
    /// A clone may be made on it as it is.
    pub usable: bool,
    /// A clone may be made on it with `force` (it holds data that would be erased).
    pub erasable: bool,
    pub system: SystemRef,
    pub partitions: Vec<PartInfo>,
    /// What it holds now, one line each (filesystems with labels, an OS found, a system).
    pub holds: Vec<String>,
}

/// A system altdisk knows, for the manage screen (`Systems()`, 1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SystemInfo {
    pub name: String,
    /// The record's id; empty for a system without a record (the original rootvg).
    pub id: String,
    /// Disk names, in the record's order.
    pub disks: Vec<String>,
    /// incomplete, copied, customized, complete; running for the running system.
    pub state: String,
    /// Human words for the state.
    pub state_text: String,
    pub source_host: String,
    pub created: String,
    pub updated: String,
    pub phases_done: Vec<u8>,
    /// It is the running system (rootvg).
    pub running: bool,
    /// It is the system the running one was cloned from (old_rootvg).
    pub former: bool,
    /// Where it is mounted (awake), or empty.
    pub awake_at: String,
    /// Its UEFI entry (Boot####), or empty.
    pub boot_entry: String,
    /// A trial boot is pending: it becomes the default once it came up healthy.
    pub trial: bool,
    /// Why its last run stopped, when it did not finish.
    pub note: String,
    /// Its LVM volume group, or empty.
    pub volume_group: String,
}

/// What a found system is (FoundSystem::kind).
pub mod found_kind {
    /// The system this machine runs (rootvg).
    pub const RUNNING: &str = "running";
    /// A system altdisk made (altinst_rootvg, a renamed one, an incomplete clone).
    pub const ALTDISK: &str = "altdisk";
    /// The system the running one was cloned from, or the one that ran before a switch.
    pub const OLD_ROOTVG: &str = "old_rootvg";
    /// Another Linux root altdisk did not make.
    pub const OTHER: &str = "other";
}

/// A system found on the disks (`FindSystems()`, 1.2): every root filesystem with an
/// operating system, whoever made it, with what a rescue needs to choose: `(sssbsssasssas)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct FoundSystem {
    /// rootvg for the running system, the record's name for one altdisk made, `linux` for
    /// another Linux root.
    pub name: String,
    /// One of [`found_kind`].
    pub kind: String,
    /// Its state in words: "complete (bootable)", "incomplete (stopped while copying
    /// files)", "not made by altdisk", "the running system".
    pub state: String,
    /// It looks able to boot: complete (for altdisk's), with a kernel.
    pub bootable: bool,
    /// Its operating system (PRETTY_NAME of its os-release), or empty.
    pub os: String,
    /// The host it was cloned from (altdisk's), or empty.
    pub host: String,
    /// When altdisk made it (RFC 3339), or empty.
    pub created: String,
    /// Its disks; the first is the one to name in RestoreSystem, BootNow, RepairSystem and
    /// the `source_disk` option.
    pub disks: Vec<String>,
    /// Its root filesystem's device, or empty.
    pub root: String,
    /// Its root filesystem's UUID, or empty.
    pub root_uuid: String,
    /// The kernel versions in its /boot, oldest first.
    pub kernels: Vec<String>,
}

/// What a job does (`JobInfo::kind`, the Job's `Kind`).
pub mod job_kind {
    /// A new clone.
    pub const CLONE: &str = "clone";
    /// Phases 2 and 3 of an existing clone.
    pub const RESUME: &str = "resume";
    /// 1.2: phase 3 again on a system found on a disk (`RepairSystem`).
    pub const REPAIR: &str = "repair";
}

/// A job the service runs (`ListJobs()`, 1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct JobInfo {
    pub path: OwnedObjectPath,
    /// One of [`job_kind`]: clone, resume (phases 2 and 3 of an existing one), repair (1.2).
    pub kind: String,
    pub targets: Vec<String>,
    /// See [`JobPhase`].
    pub phase: String,
    /// See [`JobState`].
    pub state: String,
    /// Unix user id of the caller that started it.
    pub owner_uid: u32,
    /// Its unique bus name (gone once it disconnected).
    pub owner: String,
    /// RFC 3339.
    pub started: String,
}

/// A logical volume of the clone's volume group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct LvPlan {
    pub name: String,
    pub size: u64,
    /// ext4, xfs, ..., or swap.
    pub fstype: String,
    pub mountpoint: String,
}

/// One target of a plan: the disk as it is and as it will be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct TargetPlan {
    /// As given in the options.
    pub name: String,
    pub path: String,
    pub alias: String,
    pub model: String,
    pub serial: String,
    pub size: u64,
    /// An image file, not a disk.
    pub image: bool,
    /// The image file is created (or grown) by the clone.
    pub image_created: bool,
    /// Its partitions now.
    pub before: Vec<PartInfo>,
    /// Its partitions after the clone.
    pub after: Vec<PartInfo>,
    /// What is erased, one line each; empty when it holds nothing.
    pub erased: Vec<String>,
}

/// The plan of a clone, drawable (`PlanDetails()`, 1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct PlanDetails {
    /// The clone's name (altinst_rootvg).
    pub name: String,
    /// What is cloned: "the running system" or "the system at DIR".
    pub source: String,
    /// 1, 2, 3, 12, 23, all.
    pub phases: String,
    /// Bytes of data to copy.
    pub needed: u64,
    pub targets: Vec<TargetPlan>,
    /// The clone's volume group, or empty.
    pub volume_group: String,
    pub logical_volumes: Vec<LvPlan>,
    /// How the clone is made bootable, or empty when it is not (no phase 3).
    pub boot: String,
    /// What happens to the boot order.
    pub bootlist: String,
    pub warnings: Vec<String>,
    /// The plan as `altdisk plan` prints it.
    pub text: String,
    /// The plan as JSON, as `Plan()` returns it.
    pub json: String,
}

/// The steps of a job, as its `Phase` property names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPhase {
    Validating,
    Partitioning,
    MakingFilesystems,
    Copying,
    FixingIdentities,
    Customizing,
    MakingBootable,
    CleaningUp,
    Done,
}

impl JobPhase {
    pub const ALL: [JobPhase; 9] = [
        JobPhase::Validating,
        JobPhase::Partitioning,
        JobPhase::MakingFilesystems,
        JobPhase::Copying,
        JobPhase::FixingIdentities,
        JobPhase::Customizing,
        JobPhase::MakingBootable,
        JobPhase::CleaningUp,
        JobPhase::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Validating => "validating",
            JobPhase::Partitioning => "partitioning",
            JobPhase::MakingFilesystems => "making-filesystems",
            JobPhase::Copying => "copying",
            JobPhase::FixingIdentities => "fixing-identities",
            JobPhase::Customizing => "customizing",
            JobPhase::MakingBootable => "making-bootable",
            JobPhase::CleaningUp => "cleaning-up",
            JobPhase::Done => "done",
        }
    }

    /// The steps of a repair (`RepairSystem`): finding and mounting the system, its
    /// initramfs, boot loader and boot entry, done.
    pub const REPAIR: [JobPhase; 3] = [JobPhase::Validating, JobPhase::MakingBootable, JobPhase::Done];

    pub fn parse(s: &str) -> Option<JobPhase> {
        JobPhase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Words for a progress screen.
    pub fn describe(self) -> &'static str {
        match self {
            JobPhase::Validating => "checking the plan",
            JobPhase::Partitioning => "partitioning the targets",
            JobPhase::MakingFilesystems => "making filesystems",
            JobPhase::Copying => "copying files",
            JobPhase::FixingIdentities => "giving the clone its own identities",
            JobPhase::Customizing => "customizing the clone",
            JobPhase::MakingBootable => "making the clone bootable",
            JobPhase::CleaningUp => "cleaning up",
            JobPhase::Done => "done",
        }
    }
}

/// A job's `State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [JobState::Running, JobState::Succeeded, JobState::Failed, JobState::Cancelled]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        self != JobState::Running
    }
}

/// How the machine booted (the `Firmware` property): on BIOS the firmware owns the boot
/// order and the boot list methods answer NotSupported.
pub mod firmware {
    pub const UEFI: &str = "uefi";
    pub const BIOS: &str = "bios";
}

/// A `Log` line's level.
pub mod level {
    pub const INFO: &str = "info";
    pub const WARNING: &str = "warning";
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::wire::Type;

    #[test]
    fn signatures_of_the_published_types_stay() {
        // 1.0 types: a change here breaks every client; add a new type instead.
        assert_eq!(DiskInfo::SIGNATURE.to_string(), "(ssssstsbss)");
        assert_eq!(BootEnvInfo::SIGNATURE.to_string(), "(sassss)");
        assert_eq!(BootEntryInfo::SIGNATURE.to_string(), "(ssssbbbb)");
        assert_eq!(PartInfo::SIGNATURE.to_string(), "(usssttssstss)");
        // 1.1 and 1.2 types, as docs/dbus.md gives them.
        assert_eq!(SystemInfo::SIGNATURE.to_string(), "(ssassssssaybbssbss)");
        assert_eq!(FoundSystem::SIGNATURE.to_string(), "(sssbsssasssas)");
    }

    /// A value as the bus carries it: written in the D-Bus wire format, read back.
    fn over_the_wire<T>(v: &T) -> T
    where
        T: Serialize + for<'de> Deserialize<'de> + Type,
    {
        use zbus::wire::{serialized::Context, to_bytes, LE};
        let ctx = Context::new(LE, 0);
        let bytes = to_bytes(ctx, v).expect("serialises");
        bytes.deserialize().expect("deserialises").0
    }

    #[test]
    fn found_systems_round_trip() {
        let every = FoundSystem {
            name: "old_rootvg".into(),
            kind: found_kind::OLD_ROOTVG.into(),
            state: "complete (bootable)".into(),
            bootable: true,
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            host: "prod1".into(),
            created: "2025-03-02T09:14:00Z".into(),
            disks: vec!["sda".into(), "sdb".into()],
            root: "/dev/sda2".into(),
            root_uuid: "0b7c7f4e-8f3e-4c59-9d5d-6f1c2a3b4c5d".into(),
            kernels: vec!["6.1.0-17-amd64".into(), "6.1.0-18-amd64".into()],
        };
        assert_eq!(over_the_wire(&every), every);
        // Empty strings and lists are the "none" of D-Bus.
        let bare = FoundSystem { name: "linux".into(), kind: found_kind::OTHER.into(), ..Default::default() };
        assert_eq!(over_the_wire(&bare), bare);
        let list = vec![every, bare];
        assert_eq!(over_the_wire(&list), list);
    }

    #[test]
    fn phases_and_states_parse_back() {
        for p in JobPhase::ALL {
            assert_eq!(JobPhase::parse(p.as_str()), Some(p));
        }
        for s in ["running", "succeeded", "failed", "cancelled"] {
            assert_eq!(JobState::parse(s).unwrap().as_str(), s);
        }
        assert!(JobState::parse("done").is_none());
    }
}
