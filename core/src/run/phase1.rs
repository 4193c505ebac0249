//! Phase 1: partition the targets, make the volume group and filesystems, copy the source,
//! and give the clone its own identities (fstab, crypttab, resume) and working boot units.
//! Each step is named in the targets' records before it starts, and everything it makes is
//! held by the run's guards and named in its journal.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::boot::bootloader::RootIds;
use crate::boot::units;
use crate::cmd::Cmd;
use crate::discover::disk::Probe;
use crate::discover::record::{self, BootEnv, EnvFs, SourceInfo, State};
use crate::error::{Error, IoContext, Result};
use crate::job::{Job, Phase};
use crate::plan::safety::Target;
use crate::plan::{self, PartRole, Plan};
use crate::write::copy::{self, CopyOptions, CopyStats};
use crate::write::exclude::ExcludeList;
use crate::write::fixup::{self, Identity};
use crate::write::fs::{self as tfs, LoopDev, Mounted};
use crate::write::{lvm, partition};

use crate::discover::record::step;
use crate::write::journal;

use super::prepare::{self, Prepared};
use super::state::{Made, Run, RunDisk};

/// What phase 1 needs beyond the run itself.
pub(super) struct Phase1 {
    plan: Plan,
    targets: Vec<Target>,
    exclude: ExcludeList,
    /// The passphrase of the clone's LUKS2 containers, if it has any.
    luks: Option<crate::write::luks::Passphrase>,
}

/// Set up the run of a new clone (nothing written yet).
pub(super) fn start(prep: Prepared) -> Result<(Run, Phase1)> {
    let Prepared { plan, targets, exclude, locks, source_mount, luks, .. } = prep;
    let journal = journal::Journal::begin(
        &crate::plan::lock::Holder::this_run().what,
        prepare::record_paths(&targets),
        Some(plan.mount_at.clone()),
    )?;
    let esp_part = plan.boot.as_ref().and_then(|b| b.esp.as_ref()).and_then(|esp| {
        let f = plan.filesystems.iter().find(|f| &f.mountpoint == esp)?;
        let p = plan.partitions.get(f.part)?;
        (p.disk == 0).then_some(p.number)
    });
    let cmdline = if plan.source.live {
        std::fs::read_to_string("/proc/cmdline").unwrap_or_default().trim().to_string()
    } else {
        String::new()
    };
    let mut run = Run {
        mount_at: plan.mount_at.clone(),
        phases: plan.phases.clone(),
        customize: plan.customize.clone(),
        bootlist: plan.bootlist,
        skip_boot_checks: false,
        disks: Vec::new(),
        env: initial_env(&plan),
        made: Made { loops: Vec::new(), mounts: Vec::new(), vg: None, crypts: Vec::new() },
        boot: plan.boot.clone(),
        root_ids: Some(root_ids(&plan)),
        cmdline,
        boot_disk: match targets.first() {
            Some(Target::Disk(d)) => Some(d.clone()),
            _ => None,
        },
        esp_part,
        warnings: plan.warnings.clone(),
        copy: CopyStats::default(),
        fstab_changes: 0,
        journal,
        _locks: locks,
        _source: source_mount,
        adopted: false,
        started: std::time::Instant::now(),
        boot_entry: None,
        mounted_at: None,
        target_names: plan.targets.iter().map(|t| t.name.clone()).collect(),
        keep_entry: false,
        stay_awake: None,
    };
    if let Some(root) = run._source.as_ref().map(|s| s.root.clone()) {
        run.journal.update(|j| j.source_mount = Some(root))?;
    }
    Ok((run, Phase1 { plan, targets, exclude, luks }))
}

impl Run {
    pub(super) fn phase1(&mut self, p: Phase1, job: &Job) -> Result<()> {
        let Phase1 { plan, targets, exclude, luks } = p;
        job.check()?;
        job.set_phase(Phase::Partitioning);
        let me = crate::plan::lock::Holder::this_run();
        let mut disk_parts = Vec::new();
        for (i, (t, d)) in targets.iter().zip(&plan.targets).enumerate() {
            job.check()?;
            let parts: Vec<partition::PartSpec> = plan
                .partitions
                .iter()
                .filter(|p| p.disk == i)
                .map(|p| partition::PartSpec {
                    number: p.number,
                    start: p.start,
                    size: p.size,
                    type_guid: p.type_guid.clone(),
                    guid: p.guid,
                    name: p.name.clone(),
                })
                .collect();
            let meta = plan
                .partitions
                .iter()
                .find(|p| p.disk == i && p.role == PartRole::Meta)
                .expect("every disk has a meta partition")
                .start;
            let (record, image) = match t {
                Target::Image(path) => {
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(path)
                        .ctx("creating the image file", path)?;
                    if f.metadata().ctx("sizing the image file", path)?.len() != d.size {
                        f.set_len(d.size).ctx("sizing the image file", path)?;
                    }
                    drop(f);
                    (path.clone(), true)
                }
                Target::Disk(disk) => {
                    let old: Vec<u32> = (1..=disk.partitions.len().max(16) as u32).collect();
                    partition::remove_partition_nodes(&disk.path, old)?;
                    (disk.path.clone(), false)
                }
            };
            partition::write_gpt(&record, d.size, d.disk_guid, d.sector_size, &parts)?;
            self.disks.push(RunDisk { record: record.clone(), dev: record.clone(), meta, image });
            self.save(Some(step::PARTITIONING))?;
            if image {
                let l = LoopDev::attach(&record)?;
                let dev = l.dev.clone();
                self.made.loops.push(l);
                self.journal.update(|j| j.loops.push(dev.clone()))?;
                // The loop device is one more name of this target.
                self._locks[i].add(&dev, &me)?;
                self.disks[i].dev = dev;
            }
            let dev = self.disks[i].dev.clone();
            job.info(format!("partitioned {} ({})", d.name, dev.display()));
            partition::add_partition_nodes(&dev, &parts)?;
            disk_parts.push((dev, parts));
        }
        for (dev, parts) in &disk_parts {
            partition::settle_nodes(dev, parts)?;
        }
        let devs: Vec<PathBuf> = self.disks.iter().map(|d| d.dev.clone()).collect();
        // The device a partition's contents go on: the partition, or its open LUKS container.
        let inner = |p: &plan::PlanPart| match &p.crypt {
            Some(c) => crate::write::luks::mapper_path(&c.name),
            None => partition::partition_path(&devs[p.disk], p.number),
        };
        for p in &plan.partitions {
            let (Some(c), Some(pass)) = (&p.crypt, luks.as_ref()) else { continue };
            job.check()?;
            let dev = partition::partition_path(&devs[p.disk], p.number);
            self.journal.update(|j| j.crypts.push(c.name.clone()))?;
            self.made.crypts.push(crate::write::luks::Opened::make(&dev, &c.name, &c.uuid, pass)?);
            job.info(format!("made the LUKS2 container {} on {} (its own UUID and volume key)", c.name, dev.display()));
        }
        drop(luks);
        if let Some(vg) = &plan.vg {
            job.check()?;
            let pvs: Vec<PathBuf> = plan.partitions.iter().filter(|p| p.role == PartRole::Pv).map(&inner).collect();
            self.made.vg = Some(vg.name.clone());
            self.journal.update(|j| j.vg = Some(vg.name.clone()))?;
            lvm::create(&vg.name, &pvs, &vg.lvs)?;
            job.info(format!(
                "made volume group {} on {}",
                vg.name,
                pvs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
            ));
        }
        job.check()?;
        job.set_phase(Phase::MakingFilesystems);
        self.save(Some(step::MKFS))?;
        let dev_of = |part: usize, lv: &Option<String>| -> PathBuf {
            match (lv, &plan.vg) {
                (Some(lv), Some(vg)) => lvm::lv_path(&vg.name, lv),
                _ => inner(&plan.partitions[part]),
            }
        };
        for f in plan.filesystems.iter().filter(|f| f.on.is_none()) {
            job.check()?;
            let dev = dev_of(f.part, &f.lv);
            tfs::mkfs(&dev, &f.fstype, &f.uuid, f.label.as_deref(), f.inodes)?;
            job.info(format!("made {} {} on {}", f.fstype, f.mountpoint, dev.display()));
            let subvols = f.subvolumes_of(&plan.filesystems);
            if !subvols.is_empty() || f.default_subvol.is_some() {
                std::fs::create_dir_all(&plan.mount_at).ctx("creating the mount point", &plan.mount_at)?;
                tfs::make_subvolumes(&dev, &plan.mount_at, &subvols, f.default_subvol.as_deref())?;
                job.info(format!("made btrfs subvolumes {} on {}", subvols.join(" "), dev.display()));
            }
        }
        for s in &plan.swaps {
            tfs::mkfs(&dev_of(s.part, &s.lv), "swap", &s.uuid, s.label.as_deref(), None)?;
        }
        job.check()?;
        std::fs::create_dir_all(&plan.mount_at).ctx("creating the mount point", &plan.mount_at)?;
        for f in &plan.filesystems {
            let at = plan.mount_at.join(f.mountpoint.trim_start_matches('/'));
            std::fs::create_dir_all(&at).ctx("creating a mount point in the clone", &at)?;
            let opts = f.mount_options();
            self.made.mounts.push(Mounted::mount(&dev_of(f.part, &f.lv), &at, &f.fstype, opts.as_deref())?);
        }

        job.set_phase(Phase::Copying);
        self.save(Some(step::COPYING))?;
        let mut skip = HashSet::new();
        for t in &targets {
            if let Target::Image(p) = t {
                if let Ok(m) = std::fs::metadata(p) {
                    skip.insert((m.dev(), m.ino()));
                }
            }
        }
        let skip = Arc::new(skip);
        let exclude = Arc::new(exclude);
        for sf in &plan.source.filesystems {
            job.add_totals(sf.used_bytes, sf.used_inodes);
        }
        let mut total = CopyStats::default();
        let began = record::Began::now();
        for sf in &plan.source.filesystems {
            job.check()?;
            let dst = plan.mount_at.join(sf.mountpoint.trim_start_matches('/'));
            let rel_prefix = if sf.mountpoint == "/" { ".".to_string() } else { format!(".{}", sf.mountpoint) };
            let snap = if sf.fstype == "btrfs" && !sf.read_only {
                BtrfsSnapshot::take(&sf.path, &plan.id, job)?
            } else {
                None
            };
            if let Some(s) = &snap {
                self.journal.update(|j| j.snapshots.push(s.path.clone()))?;
            }
            let from = snap.as_ref().map(|s| s.path.clone()).unwrap_or_else(|| sf.path.clone());
            job.info(format!("copying {} from {}", sf.mountpoint, from.display()));
            let opts = CopyOptions {
                threads: 0,
                exclude: exclude.clone(),
                rel_prefix,
                detect_changes: snap.is_none() && !sf.read_only,
                skip: skip.clone(),
                keep_snapshots: false,
                update: None,
                keep: Arc::default(),
                changed: None,
            };
            let stats = copy::copy_tree(&from, &dst, &opts, job);
            if let Some(s) = snap {
                let path = s.path.clone();
                s.delete()?;
                self.journal.update(|j| j.snapshots.retain(|x| x != &path))?;
            }
            total.add(stats?);
        }
        if total.changed_count > 0 {
            self.warnings.push(format!(
                "{} files changed while they were copied (the copy of a live system): {}{}",
                total.changed_count,
                total.changed.iter().take(10).cloned().collect::<Vec<_>>().join(", "),
                if total.changed_count > 10 { ", ..." } else { "" }
            ));
        }
        if total.snapshots_skipped > 0 {
            job.info(format!(
                "{} btrfs snapshot(s) not copied (the clone starts without the source's snapshots)",
                total.snapshots_skipped
            ));
        }
        if total.sockets_skipped > 0 {
            job.info(format!("{} sockets skipped (they belong to running programs)", total.sockets_skipped));
        }
        self.copy = total;
        self.env.synced = Some(record::now_nanos());
        self.env.copy_began = Some(began);
        let devs: Vec<PathBuf> = self.disks.iter().map(|d| d.dev.clone()).collect();
        self.env.mount_counts = super::refresh::ext4_mount_counts(&devs, &self.env.filesystems);

        job.check()?;
        job.set_phase(Phase::FixingIdentities);
        self.save(Some(step::IDENTITIES))?;
        self.fstab_changes = fix_identities(&plan, &mut self.warnings)?;
        units::ensure_in_clone(&self.mount_at, self.needs_units(), job)?;
        self.flush(job)?;
        self.mark_done(1)?;
        Ok(())
    }
}

fn identity_old(r: &plan::SourceRef, mountpoint: Option<&str>) -> Identity {
    Identity {
        uuid: r.uuid.clone(),
        partuuid: r.partuuid.clone(),
        label: r.label.clone(),
        partlabel: r.partlabel.clone(),
        paths: r.paths.clone(),
        mountpoint: mountpoint.map(String::from),
    }
}

/// The source root's identities, and the clone's, for kernel command lines.
fn root_ids(plan: &Plan) -> RootIds {
    let root = plan.filesystems.iter().find(|f| f.mountpoint == "/").expect("the plan has a root filesystem");
    let mut old = Vec::new();
    if let Some(r) = &root.source {
        old.extend(r.uuid.iter().map(|u| format!("UUID={u}")));
        old.extend(r.partuuid.iter().map(|u| format!("PARTUUID={u}")));
        old.extend(r.label.iter().map(|u| format!("LABEL={u}")));
        old.extend(r.paths.iter().cloned());
    }
    RootIds { old, new: format!("UUID={}", root.uuid), subvol: root.subvol.clone() }
}

/// The record of a new clone, before anything is written: incomplete, no phase done.
fn initial_env(plan: &Plan) -> BootEnv {
    // Where a filesystem or swap lives: a partition (GUID, disk, number) or a logical volume.
    let env_fs = |mountpoint: &str,
                  fstype: &str,
                  uuid: &str,
                  label: &Option<String>,
                  part: usize,
                  lv: &Option<String>,
                  subvol: &Option<String>| {
        let (partuuid, disk, partition) = match plan.partitions.get(part) {
            Some(p) => (p.guid.to_string(), p.disk, p.number),
            None => (String::new(), 0, 0),
        };
        EnvFs {
            mountpoint: mountpoint.into(),
            fstype: fstype.into(),
            uuid: uuid.into(),
            partuuid,
            label: label.clone(),
            disk,
            partition,
            lv: lv.clone(),
            subvol: subvol.clone(),
        }
    };
    BootEnv {
        api_version: crate::API_VERSION.into(),
        name: plan.name.clone(),
        id: plan.id,
        state: State::Incomplete,
        phases_done: vec![],
        source: SourceInfo {
            hostname: plan.source.hostname.clone(),
            root: plan.source.root.clone(),
            live: plan.source.live,
            disks: plan.source.disks.clone(),
            root_uuid: plan.source.filesystems.first().and_then(|f| f.probe.uuid.clone()),
            disk_ids: plan
                .source
                .disks
                .iter()
                .filter_map(|n| Probe::read(&Path::new("/dev").join(n)).ok()?.ptuuid)
                .collect(),
        },
        created: record::now_rfc3339(),
        updated: record::now_rfc3339(),
        disks: plan.targets.iter().map(|t| t.disk_guid).collect(),
        disk_index: 0,
        filesystems: plan
            .filesystems
            .iter()
            .map(|f| env_fs(&f.mountpoint, &f.fstype, &f.uuid, &f.label, f.part, &f.lv, &f.subvol))
            .collect(),
        swaps: plan.swaps.iter().map(|w| env_fs("swap", "swap", &w.uuid, &w.label, w.part, &w.lv, &None)).collect(),
        vg: plan.vg.as_ref().map(|v| v.name.clone()),
        crypts: plan
            .partitions
            .iter()
            .filter_map(|p| {
                p.crypt.as_ref().map(|c| record::EnvCrypt {
                    name: c.name.clone(),
                    uuid: c.uuid.to_string(),
                    disk: p.disk,
                    partition: p.number,
                })
            })
            .collect(),
        boot_entry: None,
        trial: false,
        step: Some(step::PARTITIONING.into()),
        note: None,
        synced: None,
        copy_began: None,
        mount_counts: vec![],
        customized: None,
    }
}

/// Rewrite fstab and crypttab of the clone; returns how many lines changed.
fn fix_identities(plan: &Plan, warnings: &mut Vec<String>) -> Result<usize> {
    let mut map = Vec::new();
    for f in &plan.filesystems {
        let p = plan.partitions.get(f.part);
        let new = Identity {
            uuid: Some(f.uuid.clone()),
            partuuid: p.map(|p| p.guid.to_string()),
            label: f.label.clone(),
            partlabel: p.map(|p| p.name.clone()),
            paths: vec![],
            mountpoint: None,
        };
        if let Some(r) = &f.source {
            map.push((identity_old(r, Some(&f.mountpoint)), new.clone()));
        }
    }
    for s in &plan.swaps {
        let p = plan.partitions.get(s.part);
        if let Some(r) = &s.source {
            let new = Identity {
                uuid: Some(s.uuid.clone()),
                partuuid: p.map(|p| p.guid.to_string()),
                label: s.label.clone(),
                partlabel: p.map(|p| p.name.clone()),
                paths: vec![],
                mountpoint: None,
            };
            map.push((identity_old(r, None), new));
        }
    }
    // The LUKS containers: the source's become the clone's (its own UUID and name).
    let mut renames = Vec::new();
    let mut extra = Vec::new();
    for p in &plan.partitions {
        let Some(c) = &p.crypt else { continue };
        match &c.source {
            Some(r) => {
                let new = Identity {
                    uuid: Some(c.uuid.to_string()),
                    partuuid: Some(p.guid.to_string()),
                    label: None,
                    partlabel: Some(p.name.clone()),
                    paths: vec![],
                    mountpoint: None,
                };
                map.push((identity_old(r, None), new));
                renames.push((c.source_name.clone(), c.name.clone()));
            }
            None => extra.push((c.source_name.clone(), c.name.clone(), c.uuid.to_string())),
        }
    }
    rewrite_identities(&plan.mount_at, &map, &layout_changes(plan), &CryptRenames { renames, extra }, warnings)
}

/// The clone's LUKS containers for its crypttab: (source name, clone name) of each copied
/// container, and (source name, clone name, UUID) of each the source's crypttab lacks.
#[derive(Default)]
pub(super) struct CryptRenames {
    pub renames: Vec<(String, String)>,
    pub extra: Vec<(String, String, String)>,
}

/// Point the clone at `mount_at` to its own identities: fstab (and its layout changes),
/// the initramfs resume configuration and crypttab, each from (old, new) pairs. Returns how
/// many lines changed.
pub(super) fn rewrite_identities(
    mount_at: &Path,
    map: &[(Identity, Identity)],
    layout: &fixup::LayoutChanges,
    crypt: &CryptRenames,
    warnings: &mut Vec<String>,
) -> Result<usize> {
    let CryptRenames { renames, extra } = crypt;
    let mut changes = 0;
    let fstab = mount_at.join("etc/fstab");
    if let Ok(text) = std::fs::read_to_string(&fstab) {
        let r = fixup::rewrite_fstab(&text, map);
        changes += r.changed;
        warnings.extend(r.warnings);
        let l = fixup::adjust_layout(&r.text, layout);
        changes += l.changed;
        warnings.extend(l.warnings);
        // Left alone (its times too) when no line changed.
        if l.text != text {
            replace_file(&fstab, &l.text)?;
        }
    } else {
        warnings.push("the clone has no /etc/fstab: nothing to rewrite".into());
    }
    // initramfs-tools resumes from the swap its configuration names (the installer writes
    // RESUME=UUID=...): point it at the clone's swap.
    let resume = mount_at.join("etc/initramfs-tools/conf.d/resume");
    if let Ok(text) = std::fs::read_to_string(&resume) {
        let mut t = text.clone();
        for (old, new) in map {
            if let (Some(o), Some(n)) = (&old.uuid, &new.uuid) {
                t = t.replace(o.as_str(), n);
            }
        }
        if t != text {
            replace_file(&resume, &t)?;
            changes += 1;
        }
    }
    let crypttab = mount_at.join("etc/crypttab");
    if let Ok(text) = std::fs::read_to_string(&crypttab) {
        let r = fixup::rewrite_crypttab(&text, map);
        changes += r.changed;
        warnings.extend(r.warnings);
        let n = fixup::rename_crypttab(&r.text, renames, extra);
        changes += n.changed;
        warnings.extend(n.warnings);
        if n.text != text {
            replace_file(&crypttab, &n.text)?;
        }
    } else if !renames.is_empty() {
        return Err(Error::not_found(
            "the clone's /etc/crypttab",
            "the source is encrypted but has no crypttab to unlock its clone at boot",
            "give the source system its /etc/crypttab (as its installer wrote it), then clone again",
        ));
    }
    Ok(changes)
}

/// What changed between the source's layout and the clone's, for fstab.
fn layout_changes(plan: &Plan) -> fixup::LayoutChanges {
    let mut c = fixup::LayoutChanges::default();
    for f in &plan.filesystems {
        match &f.source {
            Some(r) if r.fstype != f.fstype => {
                c.retype.push((f.mountpoint.clone(), r.fstype.clone(), f.fstype.clone()))
            }
            Some(_) => {}
            None => c.split.push((f.uuid.clone(), f.mountpoint.clone(), f.fstype.clone())),
        }
        if f.fstype == "btrfs" {
            c.subvol.push((f.mountpoint.clone(), f.subvol.clone()));
        }
        c.merged.extend(f.merged.iter().cloned());
    }
    c
}

/// Replace a file's contents, keeping its owner and mode, atomically.
fn replace_file(path: &Path, text: &str) -> Result<()> {
    let md = std::fs::symlink_metadata(path).ctx("reading", path)?;
    let real = if md.file_type().is_symlink() {
        // A symlinked fstab points somewhere inside the clone; resolve relative to it.
        return Err(Error::unsupported(
            format!("{} is a symlink", path.display()),
            " for rewriting",
            "make it a regular file in the source",
        ));
    } else {
        path.to_path_buf()
    };
    let tmp = real.with_extension("altdisk-new");
    std::fs::write(&tmp, text).ctx("writing", &tmp)?;
    std::os::unix::fs::chown(&tmp, Some(md.uid()), Some(md.gid())).ctx("setting the owner of", &tmp)?;
    std::fs::set_permissions(&tmp, md.permissions()).ctx("setting the mode of", &tmp)?;
    std::fs::rename(&tmp, &real).ctx("replacing", &real)
}

/// A read-only snapshot of a btrfs subvolume, deleted when done. It lives in the directory
/// it snapshots (the only place certain to be on the same filesystem); that directory's times
/// are put back afterwards so the source looks untouched.
pub(super) struct BtrfsSnapshot {
    pub(super) path: PathBuf,
    parent: PathBuf,
    times: Option<(std::fs::FileTimes, std::fs::File)>,
    live: bool,
}

impl BtrfsSnapshot {
    /// Snapshot the subvolume mounted at `mount`. None (copy live) when it holds nested
    /// subvolumes, which a snapshot would show as empty directories.
    pub(super) fn take(mount: &Path, id: &uuid::Uuid, job: &Job) -> Result<Option<BtrfsSnapshot>> {
        let out = Cmd::new("listing btrfs subvolumes", "btrfs")?.args(["subvolume", "list", "-o"]).arg(mount).run()?;
        if out.stdout.lines().any(|l| !l.trim().is_empty()) {
            job.warn(format!(
                "{} holds nested btrfs subvolumes: copying it live instead of from a snapshot",
                mount.display()
            ));
            return Ok(None);
        }
        let path = mount.join(format!(".altdisk-snapshot-{id}"));
        let times = std::fs::File::open(mount).and_then(|f| {
            let md = f.metadata()?;
            Ok((std::fs::FileTimes::new().set_accessed(md.accessed()?).set_modified(md.modified()?), f))
        });
        Cmd::new("taking a read-only btrfs snapshot", "btrfs")?
            .args(["subvolume", "snapshot", "-r"])
            .arg(mount)
            .arg(&path)
            .run()?;
        Ok(Some(BtrfsSnapshot { path, parent: mount.to_path_buf(), times: times.ok(), live: true }))
    }

    pub(super) fn delete(mut self) -> Result<()> {
        self.live = false;
        Cmd::new("deleting the btrfs snapshot", "btrfs")?.args(["subvolume", "delete"]).arg(&self.path).run()?;
        self.restore_times()
    }

    fn restore_times(&mut self) -> Result<()> {
        if let Some((t, f)) = self.times.take() {
            f.set_times(t).ctx("restoring the times of", &self.parent)?;
        }
        Ok(())
    }
}

impl Drop for BtrfsSnapshot {
    fn drop(&mut self) {
        if self.live {
            if let Ok(c) = Cmd::new("deleting the btrfs snapshot", "btrfs") {
                if let Err(e) = c.args(["subvolume", "delete"]).arg(&self.path).run() {
                    tracing::error!("{e}");
                }
            }
            let _ = self.restore_times();
        }
    }
}
