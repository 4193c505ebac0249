//! A refresh (`alt_disk_copy --refresh -d DISK`): phase 1 entered on a clone made earlier.
//! The clone keeps its identities (filesystem UUIDs, partitions, boot entry); its files are
//! brought in line with the source by the copy engine's update mode, then it gets what a new
//! clone gets: fstab and crypttab pointing at its own identities, its boot units, and phase
//! 3 again when it was bootable. It runs the pipeline every clone runs: the targets locked,
//! the record incomplete with its step from the first write until the end, every filesystem
//! flushed and checked before a phase counts as done. An interrupted refresh is finished by
//! refreshing again.
//!
//! The clone is left as it was found: awake at the mount point, or asleep.

use std::path::Path;
use std::sync::Arc;

use crate::boot::bootloader::RootIds;
use crate::boot::units;
use crate::discover::blockdev;
use crate::discover::boot::{self as bootinfo, Firmware};
use crate::discover::record::{step, EnvFs};
use crate::discover::source::{self, Source, SourceFs};
use crate::error::{Error, Result};
use crate::job::{Job, Phase};
use crate::plan::Phases;
use crate::write::copy::{self, CopyOptions, CopyStats, Update};
use crate::write::exclude::ExcludeList;
use crate::write::fixup::{Identity, LayoutChanges};
use crate::write::journal;

use super::phase1::{rewrite_identities, BtrfsSnapshot, CryptRenames};
use super::request::{CloneReport, CloneRequest, Refresh};
use super::state::Run;

/// Bring the clone on the disks `req` names back in line with its source (the running
/// system, or `req.source_dir`).
pub fn refresh(req: &CloneRequest, r: &Refresh, job: &Job) -> Result<CloneReport> {
    for n in journal::recover()? {
        job.warn(n);
    }
    req.customize.validate()?;
    let exclude = match &req.exclude {
        Some(p) if !p.is_absolute() => {
            return Err(Error::usage(
                format!("exclude list {}", p.display()),
                "it is not a full path",
                "give the full path, as AIX requires",
            ))
        }
        Some(p) => ExcludeList::from_file(p)?,
        None => ExcludeList::empty(),
    };
    let disks = blockdev::list()?;
    let src = source::discover(req.source_dir.as_deref(), &disks)?;
    // Whether the clone is as the last copy left it (told before it is woken).
    let mut untouched = Err(String::new());
    let (mut run, sys, was_awake) = super::open_existing(req, job, |sys, name| {
        untouched = as_left(sys);
        // A copy must have been made: its filesystems exist (an interrupted refresh or copy
        // is finished by refreshing).
        let made = sys.env.phases_done.contains(&1)
            || sys.env.step.as_deref().is_some_and(|s| s != step::PARTITIONING && s != step::MKFS);
        if made {
            return Ok(());
        }
        Err(Error::refused(
            name,
            format!("its filesystems were never made ({})", sys.env.state.describe()),
            "clone again from the start (with --force), or remove it with alt_rootvg_op -X",
        ))
    })?;
    // What ran on the clone before, unless told: phase 3 again for a bootable clone.
    let had = sys.env.phases_done.clone();
    run.phases = r.phases.clone().unwrap_or(if had.contains(&3) {
        Phases::All
    } else if had.contains(&2) {
        Phases::P12
    } else {
        Phases::P1
    });
    if sys.env.was_customized() && req.customize.is_empty() {
        run.warn(
            job,
            "the clone had been customized (phase 2): the refresh brought back the source's files; \
             customize it again (alt_rootvg_op -C) if it needs that"
                .into(),
        );
    }
    run.keep_entry = true;
    run.stay_awake = Some(was_awake);
    run.cmdline = if src.live {
        std::fs::read_to_string("/proc/cmdline").unwrap_or_default().trim().to_string()
    } else {
        String::new()
    };
    run.root_ids = Some(root_ids(&src, &sys.env.filesystems)?);
    let res = (|| {
        if run.phases.has(3) {
            // How the clone will boot is how its source boots, as for a new clone.
            let esp = src.esp().map(|f| f.mountpoint.clone());
            run.boot = match bootinfo::detect(&src.root, Firmware::current(), esp.as_deref()) {
                Ok(b) => Some(b),
                Err(e) if run.skip_boot_checks => {
                    run.warn(job, format!("-g: {e}: the clone is not made bootable"));
                    None
                }
                Err(e) => return Err(e),
            };
        }
        run.check_room(&src, req.skip_space_check, job)?;
        // Before asking the tracker: whatever changes from here on, the next refresh compares.
        let began = crate::discover::record::Began::now();
        let tracked = match (untouched, r.checksum) {
            (_, true) => Err("--checksum compares every file".to_string()),
            (Ok(t0), false) => tracked_changes(&src, t0),
            (Err(why), false) => Err(why),
        };
        run.refresh_copy(&src, exclude, r.checksum, req.threads, (began, tracked), job)?;
        run.later_phases(job)?;
        run.finish(job)
    })();
    run.conclude(res, job)
}

/// When the clone is as its last copy or refresh left it: the time that copy began, on the
/// change tracker's clock of this boot (changes the tracker saw since then are all that
/// differ). Else why it must be walked: the system was restarted since, the clone was
/// customized (phase 2), is awake, was mounted since (an ext4 superblock's mount count;
/// other filesystems cannot tell), or its last run did not finish.
fn as_left(sys: &crate::systems::ops::System) -> std::result::Result<i64, String> {
    let env = &sys.env;
    let (Some(began), Some(_)) = (&env.copy_began, env.synced) else {
        return Err("the clone's record does not say when its last copy began".into());
    };
    if began.boot_id != crate::discover::changes::boot_id() {
        return Err("this system was restarted since the clone's last copy".into());
    }
    if env.step.is_some() || !env.phases_done.contains(&1) {
        return Err("the clone's last run did not finish".into());
    }
    if env.was_customized() {
        return Err("the clone was customized (phase 2)".into());
    }
    let devs: Vec<std::path::PathBuf> = sys.disks.iter().map(|d| d.path.clone()).collect();
    let table = crate::discover::mounts::read().map_err(|e| e.to_string())?;
    for f in env.filesystems.iter().filter(|f| f.fstype != "swap") {
        let dev = devs.get(f.disk).map(|d| crate::write::partition::partition_path(d, f.partition));
        let num = dev.as_ref().and_then(|d| crate::discover::blockdev::dev_numbers(d));
        if num.is_some_and(|n| table.iter().any(|m| (m.major, m.minor) == n)) {
            return Err("the clone is awake (mounted): it may have been changed".into());
        }
    }
    let now = ext4_mount_counts(&devs, &env.filesystems);
    if env.mount_counts.is_empty() || now.is_empty() {
        return Err("its filesystems cannot tell whether they were mounted since (only ext4 can)".into());
    }
    if now != env.mount_counts {
        return Err("the clone was mounted since its last copy".into());
    }
    Ok(began.clock)
}

/// The ext4 mount count of each filesystem of a clone on `devs` (swap apart, in order);
/// empty when one of them is not ext4 on a partition.
pub(super) fn ext4_mount_counts(devs: &[std::path::PathBuf], fs: &[EnvFs]) -> Vec<u32> {
    use std::os::unix::fs::FileExt;
    let mut out = Vec::new();
    for f in fs.iter().filter(|f| f.fstype != "swap") {
        let Some(disk) = devs.get(f.disk).filter(|_| f.fstype == "ext4" && f.lv.is_none()) else { return vec![] };
        let dev = crate::write::partition::partition_path(disk, f.partition);
        let mut sb = [0u8; 1024];
        let ok = std::fs::File::open(&dev).and_then(|d| d.read_exact_at(&mut sb, 1024)).is_ok();
        if !ok || u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
            return vec![];
        }
        out.push(u16::from_le_bytes([sb[0x34], sb[0x35]]) as u32);
    }
    out
}

/// The directories that changed in each source filesystem since `t0`, as the change
/// tracker saw them, with those of the files mapped shared and writable now (written
/// through a mapping without an event); or why they are not known for all of them.
fn tracked_changes(src: &Source, t0: i64) -> std::result::Result<Vec<Arc<copy::Changed>>, String> {
    let roots: Vec<std::path::PathBuf> = src.filesystems.iter().map(|f| f.path.clone()).collect();
    crate::discover::changes::changed_since(&roots, t0)
        .into_iter()
        .zip(crate::discover::changes::mapped_writable(&roots))
        .map(|(a, mapped)| {
            a.map(|mut c| {
                c.dirs.extend(mapped.iter().map(|f| {
                    let dir = f.parent().map(Path::to_path_buf).unwrap_or_default();
                    (dir, Some(f.file_name().map(|n| vec![n.to_os_string()]).unwrap_or_default()))
                }));
                Arc::new(copy::Changed::new(c.dirs, c.made))
            })
        })
        .collect()
}

/// The source root's identities, and the clone's, for kernel command lines.
fn root_ids(src: &Source, fs: &[EnvFs]) -> Result<RootIds> {
    let root = fs
        .iter()
        .find(|f| f.mountpoint == "/")
        .ok_or_else(|| Error::corrupt("altdisk record", "it has no root filesystem"))?;
    let s = src.root_fs();
    let mut old = Vec::new();
    old.extend(s.probe.uuid.iter().map(|u| format!("UUID={u}")));
    old.extend(s.probe.partuuid.iter().map(|u| format!("PARTUUID={u}")));
    old.extend(s.probe.label.iter().map(|u| format!("LABEL={u}")));
    old.extend(s.paths.iter().cloned());
    Ok(RootIds { old, new: format!("UUID={}", root.uuid), subvol: root.subvol.clone() })
}

/// The clone's filesystem that holds `mountpoint` of the source: the one mounted at it, or
/// the nearest one above it (a source filesystem the clone merged into its parent).
fn holder<'a>(fs: &'a [EnvFs], mountpoint: &str) -> Option<&'a EnvFs> {
    fs.iter()
        .filter(|f| f.fstype != "swap" && Path::new(mountpoint).starts_with(&f.mountpoint))
        .max_by_key(|f| f.mountpoint.len())
}

impl Run {
    /// The clone's filesystems must hold what the source uses now (bytes, and inodes where
    /// the filesystem has a fixed number): refused before writing, unless `-S`.
    fn check_room(&mut self, src: &Source, skip: bool, job: &Job) -> Result<()> {
        for f in self.env.filesystems.clone() {
            let mine: Vec<&SourceFs> = src
                .filesystems
                .iter()
                .filter(|s| holder(&self.env.filesystems, &s.mountpoint).is_some_and(|h| h.mountpoint == f.mountpoint))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let at = self.mount_at.join(f.mountpoint.trim_start_matches('/'));
            let Ok(st) = nix::sys::statvfs::statvfs(&at) else { continue };
            let size = st.blocks() * st.fragment_size();
            let inodes = st.files();
            let bytes: u64 = mine.iter().map(|s| s.used_bytes).sum();
            let files: u64 = mine.iter().map(|s| s.used_inodes).sum();
            // Room for the filesystem's own structures and what a copy adds (directories
            // laid out afresh, the journal).
            let what = format!("the clone's {} filesystem ({})", f.mountpoint, f.fstype);
            let e = if bytes > size / 100 * 97 {
                Some(Error::TooSmall {
                    what,
                    needed: crate::size::human(bytes),
                    available: crate::size::human(size),
                    todo:
                        "make a new clone on larger disks (alt_rootvg_op -X, then alt_disk_copy), or -S to try anyway"
                            .into(),
                })
            } else if inodes > 0 && files > inodes {
                Some(Error::TooSmall {
                    what: format!("{what}, in inodes,"),
                    needed: format!("{files} inodes"),
                    available: format!("{inodes} inodes"),
                    todo: "make a new clone (alt_rootvg_op -X, then alt_disk_copy: it sizes the inode tables), or -S to try anyway"
                        .into(),
                })
            } else {
                None
            };
            match e {
                Some(e) if skip => self.warn(job, format!("-S: {e}")),
                Some(e) => return Err(e),
                None => {}
            }
        }
        Ok(())
    }

    /// Phase 1 of a refresh: the copy engine in update mode over each source filesystem,
    /// then the clone's own identities and boot units; flushed and checked.
    fn refresh_copy(
        &mut self,
        src: &Source,
        exclude: ExcludeList,
        checksum: bool,
        threads: usize,
        (began, tracked): (crate::discover::record::Began, std::result::Result<Vec<Arc<copy::Changed>>, String>),
        job: &Job,
    ) -> Result<()> {
        job.check()?;
        job.set_phase(Phase::Copying);
        match &tracked {
            Ok(c) => job.info(format!(
                "changes tracked since the last copy: {} changed directories; only they are compared",
                c.iter().map(|c| c.len()).sum::<usize>()
            )),
            Err(why) => job.info(format!("comparing every directory: {why}")),
        }
        // Not done until done: a resume cannot take a half-refreshed clone for a copied one.
        self.env.phases_done.clear();
        self.save(Some(step::REFRESHING))?;
        let exclude = Arc::new(exclude);
        // A clone made before altdisk kept this time: every entry is compared closely once.
        let since = Some(self.env.synced.unwrap_or(i64::MIN));
        let keep: Arc<Vec<String>> = Arc::new(units::own_paths().iter().map(|p| format!(".{p}")).collect());
        for sf in &src.filesystems {
            job.add_totals(sf.used_bytes, sf.used_inodes);
        }
        let mut total = CopyStats::default();
        for (i, sf) in src.filesystems.iter().enumerate() {
            job.check()?;
            let dst = self.mount_at.join(sf.mountpoint.trim_start_matches('/'));
            let rel_prefix = if sf.mountpoint == "/" { ".".to_string() } else { format!(".{}", sf.mountpoint) };
            let snap = if sf.fstype == "btrfs" && !sf.read_only {
                BtrfsSnapshot::take(&sf.path, &self.env.id, job)?
            } else {
                None
            };
            if let Some(s) = &snap {
                self.journal.update(|j| j.snapshots.push(s.path.clone()))?;
            }
            let from = snap.as_ref().map(|s| s.path.clone()).unwrap_or_else(|| sf.path.clone());
            job.info(format!("refreshing {} from {}", sf.mountpoint, from.display()));
            let mut opts = CopyOptions {
                threads,
                exclude: exclude.clone(),
                rel_prefix,
                detect_changes: snap.is_none() && !sf.read_only,
                skip: Arc::default(),
                update: Some(Update { checksum, since }),
                keep: keep.clone(),
                keep_snapshots: false,
                changed: tracked.as_ref().ok().and_then(|c| c.get(i).cloned()),
            };
            let mut stats = copy::copy_tree(&from, &dst, &opts, job);
            if stats.as_ref().is_ok_and(|s| s.links_unsure) {
                // A hard link was met: its other links may be anywhere.
                job.info(format!("{}: a hard link was made: comparing every directory", sf.mountpoint));
                opts.changed = None;
                let first = stats?;
                stats = copy::copy_tree(&from, &dst, &opts, job).map(|mut s| {
                    // What the first pass wrote, the second found equal.
                    s.rewritten += first.rewritten;
                    s.metadata_only += first.metadata_only;
                    s.deleted += first.deleted;
                    s.unchanged = s.unchanged.saturating_sub(first.rewritten + first.metadata_only);
                    s
                });
            }
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
        job.info(format!(
            "refreshed: {} written, {} with new metadata, {} deleted, {} unchanged",
            total.rewritten, total.metadata_only, total.deleted, total.unchanged
        ));
        self.copy = total;
        self.env.synced = Some(crate::discover::record::now_nanos());
        self.env.copy_began = Some(began);
        let devs: Vec<std::path::PathBuf> = self.disks.iter().map(|d| d.dev.clone()).collect();
        self.env.mount_counts = ext4_mount_counts(&devs, &self.env.filesystems);
        job.check()?;
        job.set_phase(Phase::FixingIdentities);
        self.save(Some(step::IDENTITIES))?;
        let (mut map, layout) = self.identities(src);
        let crypt = self.crypt_identities(src, &mut map);
        let mut warnings = Vec::new();
        self.fstab_changes = rewrite_identities(&self.mount_at, &map, &layout, &crypt, &mut warnings)?;
        self.warnings.extend(warnings);
        units::ensure_in_clone(&self.mount_at, self.needs_units(), job)?;
        self.flush(job)?;
        self.mark_done(1)?;
        Ok(())
    }

    /// An encrypted clone's LUKS containers for its crypttab, as a new clone gets them: the
    /// source's container becomes the clone's of the flipped name (`vda3_crypt` →
    /// `alt_vda3_crypt`), its UUID the clone's; the clone's further containers of that name
    /// (`alt_vda3_crypt_2`, physical volumes the source has no counterpart of) are added.
    fn crypt_identities(&self, src: &Source, map: &mut Vec<(Identity, Identity)>) -> CryptRenames {
        let mut out = CryptRenames::default();
        let mut seen: Vec<&str> = Vec::new();
        for sc in src.filesystems.iter().filter_map(|f| f.crypt.as_ref()) {
            if seen.contains(&sc.name.as_str()) {
                continue;
            }
            seen.push(&sc.name);
            let base = crate::plan::alt_label(&sc.name, 120);
            for c in &self.env.crypts {
                if c.name == base {
                    let old = Identity {
                        uuid: sc.probe.uuid.clone(),
                        partuuid: sc.probe.partuuid.clone(),
                        label: None,
                        partlabel: sc.probe.partlabel.clone(),
                        paths: sc.paths.clone(),
                        mountpoint: None,
                    };
                    let new = Identity {
                        uuid: Some(c.uuid.clone()),
                        partuuid: None,
                        label: None,
                        partlabel: None,
                        paths: vec![],
                        mountpoint: None,
                    };
                    map.push((old, new));
                    out.renames.push((sc.name.clone(), c.name.clone()));
                } else if c.name.strip_prefix(&format!("{base}_")).is_some_and(|n| n.parse::<u32>().is_ok()) {
                    out.extra.push((sc.name.clone(), c.name.clone(), c.uuid.clone()));
                }
            }
        }
        out
    }

    /// (old, new) identities of each filesystem and swap area, and how the clone's layout
    /// differs from the source's, as a new clone of this layout would have them.
    fn identities(&self, src: &Source) -> (Vec<(Identity, Identity)>, LayoutChanges) {
        let names = partition_names(&self.disks.iter().map(|d| d.dev.clone()).collect::<Vec<_>>());
        let new = |f: &EnvFs| Identity {
            uuid: Some(f.uuid.clone()),
            partuuid: (!f.partuuid.is_empty()).then(|| f.partuuid.clone()),
            label: f.label.clone(),
            partlabel: names.iter().find(|(d, n, _)| *d == f.disk && *n == f.partition).map(|(_, _, s)| s.clone()),
            paths: vec![],
            mountpoint: None,
        };
        let old = |p: &crate::discover::blockdev::Probe, paths: &[String], mountpoint: Option<&str>| Identity {
            uuid: p.uuid.clone(),
            partuuid: p.partuuid.clone(),
            label: p.label.clone(),
            partlabel: p.partlabel.clone(),
            paths: paths.to_vec(),
            mountpoint: mountpoint.map(str::to_string),
        };
        let mut map = Vec::new();
        let mut layout = LayoutChanges::default();
        for sf in &src.filesystems {
            match self.env.filesystems.iter().find(|f| f.mountpoint == sf.mountpoint) {
                Some(f) => {
                    map.push((old(&sf.probe, &sf.paths, Some(&sf.mountpoint)), new(f)));
                    if f.fstype != sf.fstype {
                        layout.retype.push((f.mountpoint.clone(), sf.fstype.clone(), f.fstype.clone()));
                    }
                }
                None => layout.merged.push(sf.mountpoint.clone()),
            }
        }
        for f in &self.env.filesystems {
            if !src.filesystems.iter().any(|s| s.mountpoint == f.mountpoint) {
                layout.split.push((f.uuid.clone(), f.mountpoint.clone(), f.fstype.clone()));
            }
        }
        for (s, f) in src.swaps.iter().zip(&self.env.swaps) {
            map.push((old(&s.probe, &s.paths, None), new(f)));
        }
        (map, layout)
    }
}

/// (disk index, partition number, GPT name) of every partition of the clone's disks.
fn partition_names(devs: &[std::path::PathBuf]) -> Vec<(usize, u32, String)> {
    let mut out = Vec::new();
    for (i, d) in devs.iter().enumerate() {
        if let Some(g) = crate::discover::gpt::read_gpt(d) {
            for (n, p) in g.iter().filter(|(_, p)| p.is_used()) {
                out.push((i, n, p.partition_name.as_str().to_string()));
            }
        }
    }
    out
}
