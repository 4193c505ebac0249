//! The simulated engine (`altdiskd --sim FILE`, as stratisd has its sim engine): the same API
//! served from a described set of disks, systems and boot entries (a TOML file; the sample is
//! docs/sim-sample.toml), so the GUI and other clients are developed and tested without root
//! or disks. It never touches a device or mounts anything.
//!
//! What it simulates:
//! - Disks with partitions, filesystems, labels, an OS found; roles as the real service
//!   derives them (the disk with `/` mounted is rootvg, a disk in a `[[system]]` holds that
//!   system, mounted or `in_use` is in use, partitions mean it holds data, else free).
//! - Clone jobs that go through the real phases in time, with bytes, files, rate, the current
//!   path and log lines; they can be cancelled, and fail where the file says (`fail_at`, a
//!   percentage of the copy, on a target disk). A finished clone becomes an altinst_rootvg
//!   system on its targets, with a boot entry when phase 3 ran.
//! - Wake, sleep, rename, remove, the UEFI boot list, boot next and trial boots.
//! - The rescue actions (1.2): the systems found on the disks (the running one, those in
//!   `[[system]]`, and other Linux roots: partitions with an `os`, with their `kernels`),
//!   restoring one (its boot entry first, or made when there is none), booting one now (the
//!   boot entry set; the machine, being simulated, keeps running), repair jobs (failing on a
//!   disk with `fail_at`), and offline clones of a system on a disk (`source_disk`).
//! - Hot-plug: the file is read again when it changes (disks added or removed there appear
//!   and vanish; what jobs did to a disk stays).
//! - polkit: actions listed under `deny` are refused, every other one is allowed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use altdisk_api::{
    self as api, found_kind, kind, BootEntryInfo, BootEnvInfo, CloneOptions, DiskDetail, DiskInfo, FoundSystem,
    PartInfo, PlanDetails, SystemInfo, SystemRef, TargetPlan, VerifyOptions,
};
use serde::{Deserialize, Serialize};

use super::engine::{DevKey, Engine, Outcome, Work, Writes};
use crate::discover::contents::{self, PartContent};
use crate::discover::identity::DevId;
use crate::error::{Error, Result};
use crate::job::{Job, Phase};
use crate::size::{self, GIB, MIB};

// ---- The file ----

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimFile {
    #[serde(default = "default_hostname")]
    hostname: String,
    #[serde(default = "default_firmware")]
    firmware: String,
    /// polkit actions the simulation denies.
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    copy: CopySpec,
    #[serde(default, rename = "disk")]
    disks: Vec<FileDisk>,
    #[serde(default, rename = "system")]
    systems: Vec<FileSystem>,
    #[serde(default, rename = "boot_entry")]
    boot_entries: Vec<FileEntry>,
}

fn default_hostname() -> String {
    "simhost".into()
}

fn default_firmware() -> String {
    api::firmware::UEFI.into()
}

fn yes() -> bool {
    true
}

/// What a clone copies, and how fast.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CopySpec {
    #[serde(default = "default_bytes")]
    bytes: String,
    #[serde(default = "default_files")]
    files: u64,
    /// Bytes per second.
    #[serde(default = "default_rate")]
    rate: String,
    /// Seconds each step other than the copy takes.
    #[serde(default = "default_step")]
    step_seconds: f64,
}

impl Default for CopySpec {
    fn default() -> Self {
        CopySpec { bytes: default_bytes(), files: default_files(), rate: default_rate(), step_seconds: default_step() }
    }
}

fn default_bytes() -> String {
    "6G".into()
}
fn default_files() -> u64 {
    150_000
}
fn default_rate() -> String {
    "400M".into()
}
fn default_step() -> f64 {
    0.5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDisk {
    name: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    serial: String,
    size: String,
    #[serde(default)]
    bus: String,
    #[serde(default)]
    removable: bool,
    #[serde(default)]
    read_only: bool,
    /// Why it is in use (beyond its mounts), e.g. "it is in use by md0 (RAID)".
    #[serde(default)]
    in_use: String,
    /// A clone onto this disk fails when the copy reaches this percentage.
    #[serde(default)]
    fail_at: Option<u8>,
    #[serde(default, rename = "partition")]
    partitions: Vec<FilePart>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePart {
    #[serde(default)]
    name: String,
    size: String,
    #[serde(default)]
    fstype: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    mountpoint: String,
    /// An operating system found on it.
    #[serde(default)]
    os: String,
    /// The kernel versions in its /boot (with `os`: a system that can boot).
    #[serde(default)]
    kernels: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSystem {
    name: String,
    disks: Vec<String>,
    /// incomplete, copied, customized, complete.
    #[serde(default = "default_state")]
    state: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    created: String,
    #[serde(default)]
    boot_entry: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    volume_group: String,
    /// The system the running one was cloned from (shown as old_rootvg).
    #[serde(default)]
    former: bool,
}

fn default_state() -> String {
    "complete".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    number: String,
    description: String,
    #[serde(default)]
    disk: String,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default = "yes")]
    in_order: bool,
    #[serde(default)]
    next: bool,
    #[serde(default)]
    current: bool,
}

// ---- The world ----

#[derive(Debug, Clone, Default, Serialize)]
struct Part {
    number: u32,
    name: String,
    start: u64,
    size: u64,
    fstype: String,
    label: String,
    mountpoint: String,
    os: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    kernels: Vec<String>,
    /// Planned: bytes copied in, and from where.
    used: u64,
    source: String,
    role: String,
}

#[derive(Debug, Clone)]
struct Disk {
    name: String,
    alias: String,
    model: String,
    serial: String,
    size: u64,
    bus: String,
    removable: bool,
    read_only: bool,
    in_use: String,
    fail_at: Option<u8>,
    parts: Vec<Part>,
}

impl Disk {
    fn path(&self) -> String {
        format!("/dev/{}", self.name)
    }

    fn part_path(&self, n: u32) -> String {
        if self.name.ends_with(|c: char| c.is_ascii_digit()) {
            format!("/dev/{}p{n}", self.name)
        } else {
            format!("/dev/{}{n}", self.name)
        }
    }

    fn running(&self) -> bool {
        self.parts.iter().any(|p| p.mountpoint == "/")
    }

    /// Its root filesystem: the one mounted at /, else the first with an operating system.
    fn root(&self) -> Option<&Part> {
        self.parts.iter().find(|p| p.mountpoint == "/").or_else(|| self.parts.iter().find(|p| !p.os.is_empty()))
    }
}

#[derive(Debug, Clone)]
struct System {
    id: String,
    name: String,
    disks: Vec<String>,
    state: String,
    source: String,
    created: String,
    updated: String,
    phases_done: Vec<u8>,
    boot_entry: String,
    trial: bool,
    note: String,
    volume_group: String,
    former: bool,
    awake_at: String,
    /// Made by a job here (kept when the file is read again).
    made: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    number: String,
    description: String,
    disk: String,
    active: bool,
    in_order: bool,
    next: bool,
    current: bool,
}

struct World {
    file: PathBuf,
    mtime: Option<SystemTime>,
    hostname: String,
    firmware: &'static str,
    deny: Vec<String>,
    copy_bytes: u64,
    copy_files: u64,
    rate: u64,
    step: Duration,
    disks: Vec<Disk>,
    systems: Vec<System>,
    entries: Vec<Entry>,
    /// Disks a job or an operation changed: the file no longer describes them.
    touched: HashSet<String>,
    entries_touched: bool,
    generation: u64,
    next_id: u64,
}

fn state_words(s: &str) -> &'static str {
    match s {
        "incomplete" => "incomplete",
        "copied" => "phase 1 done (copied)",
        "customized" => "phase 2 done (customized)",
        "complete" => "complete (bootable)",
        "running" => "the running system",
        _ => "unknown",
    }
}

fn bad_file(file: &Path, why: impl std::fmt::Display) -> Error {
    Error::usage(format!("sim file {}", file.display()), why.to_string(), "fix it (see docs/sim-sample.toml)")
}

fn size_of(file: &Path, what: &str, s: &str) -> Result<u64> {
    size::parse(s).map_err(|e| bad_file(file, format!("{what}: {e}")))
}

fn disk_from_file(file: &Path, d: &FileDisk, alias: String) -> Result<Disk> {
    let mut start = MIB;
    let mut parts = Vec::new();
    for (i, p) in d.partitions.iter().enumerate() {
        let sz = size_of(file, &format!("disk {} partition {}", d.name, i + 1), &p.size)?;
        parts.push(Part {
            number: i as u32 + 1,
            name: p.name.clone(),
            start,
            size: sz,
            fstype: p.fstype.clone(),
            label: p.label.clone(),
            mountpoint: p.mountpoint.clone(),
            os: p.os.clone(),
            kernels: p.kernels.clone(),
            ..Default::default()
        });
        start += sz;
    }
    let size = size_of(file, &format!("disk {}", d.name), &d.size)?;
    if start > size {
        return Err(bad_file(file, format!("disk {}: its partitions are larger than the disk", d.name)));
    }
    Ok(Disk {
        name: d.name.clone(),
        alias,
        model: d.model.clone(),
        serial: d.serial.clone(),
        size,
        bus: d.bus.clone(),
        removable: d.removable,
        read_only: d.read_only,
        in_use: d.in_use.clone(),
        fail_at: d.fail_at,
        parts,
    })
}

impl World {
    fn load(file: &Path) -> Result<World> {
        let mut w = World {
            file: file.to_path_buf(),
            mtime: None,
            hostname: String::new(),
            firmware: api::firmware::UEFI,
            deny: Vec::new(),
            copy_bytes: 0,
            copy_files: 0,
            rate: 1,
            step: Duration::ZERO,
            disks: Vec::new(),
            systems: Vec::new(),
            entries: Vec::new(),
            touched: HashSet::new(),
            entries_touched: false,
            generation: 0,
            next_id: 1,
        };
        w.reload()?;
        Ok(w)
    }

    /// Read the file again, keeping what jobs and operations changed.
    fn reload(&mut self) -> Result<()> {
        let file = self.file.clone();
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io("reading the sim file", &file, e))?;
        let f: SimFile = toml::from_str(&text).map_err(|e| bad_file(&file, e.message().to_string()))?;
        self.mtime = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
        self.hostname = f.hostname.clone();
        self.firmware = match f.firmware.as_str() {
            "uefi" => api::firmware::UEFI,
            "bios" => api::firmware::BIOS,
            other => return Err(bad_file(&file, format!("firmware `{other}`: use uefi or bios"))),
        };
        self.deny = f.deny.clone();
        self.copy_bytes = size_of(&file, "copy.bytes", &f.copy.bytes)?;
        self.copy_files = f.copy.files.max(1);
        self.rate = size_of(&file, "copy.rate", &f.copy.rate)?.max(1);
        self.step = Duration::from_secs_f64(f.copy.step_seconds.clamp(0.0, 60.0));
        let mut disks = Vec::new();
        for (i, d) in f.disks.iter().enumerate() {
            if disks.iter().any(|x: &Disk| x.name == d.name) {
                return Err(bad_file(&file, format!("disk {} is described twice", d.name)));
            }
            let alias = format!("hdisk{i}");
            match self.disks.iter().find(|x| x.name == d.name && self.touched.contains(&x.name)) {
                Some(kept) => disks.push(Disk { alias, ..kept.clone() }),
                None => disks.push(disk_from_file(&file, d, alias)?),
            }
        }
        for s in &f.systems {
            if let Some(d) = s.disks.iter().find(|n| !disks.iter().any(|x| &x.name == *n)) {
                return Err(bad_file(&file, format!("system {}: no disk {d} is described", s.name)));
            }
            if state_words(&s.state) == "unknown" {
                return Err(bad_file(
                    &file,
                    format!("system {}: state `{}`: use incomplete, copied, customized or complete", s.name, s.state),
                ));
            }
        }
        self.touched.retain(|n| disks.iter().any(|d| &d.name == n));
        // Systems: those jobs made, while their disks are here; then the file's, unless a job
        // overwrote one of their disks.
        let mut systems: Vec<System> = self
            .systems
            .iter()
            .filter(|s| s.made && s.disks.iter().all(|n| disks.iter().any(|d| &d.name == n)))
            .cloned()
            .collect();
        for s in &f.systems {
            if s.disks.iter().any(|n| self.touched.contains(n)) {
                continue;
            }
            let old = self.systems.iter().find(|o| !o.made && o.disks == s.disks);
            systems.push(System {
                id: format!("sim-{}", s.disks.join("-")),
                name: old.map(|o| o.name.clone()).unwrap_or_else(|| s.name.clone()),
                disks: s.disks.clone(),
                state: s.state.clone(),
                source: s.source.clone(),
                created: s.created.clone(),
                updated: s.created.clone(),
                phases_done: phases_done(&s.state),
                boot_entry: s.boot_entry.clone(),
                trial: old.map(|o| o.trial).unwrap_or(false),
                note: s.note.clone(),
                volume_group: s.volume_group.clone(),
                former: s.former,
                awake_at: old.map(|o| o.awake_at.clone()).unwrap_or_default(),
                made: false,
            });
        }
        if !self.entries_touched {
            self.entries = f
                .boot_entries
                .iter()
                .map(|e| Entry {
                    number: e.number.clone(),
                    description: e.description.clone(),
                    disk: e.disk.clone(),
                    active: e.active,
                    in_order: e.in_order,
                    next: e.next,
                    current: e.current,
                })
                .collect();
        }
        self.disks = disks;
        self.systems = systems;
        self.generation += 1;
        Ok(())
    }

    /// Read the file again if it changed since.
    fn refresh(&mut self) {
        let now = std::fs::metadata(&self.file).and_then(|m| m.modified()).ok();
        if now != self.mtime {
            if let Err(e) = self.reload() {
                // Keep serving the last good description; say why once per change.
                tracing::warn!("sim: {e}");
                self.mtime = now;
            }
        }
    }

    fn disk(&self, name: &str) -> Result<&Disk> {
        let n = name.trim();
        self.disks.iter().find(|d| d.name == n || d.alias == n || d.path() == n).ok_or_else(|| {
            if n.starts_with("/dev/") || !n.contains('/') {
                Error::not_found(format!("disk `{n}`"), "no such disk or hdisk alias", "see Disks")
            } else {
                Error::usage(format!("disk `{n}`"), "it is not a disk", "name a disk (see Disks)")
            }
        })
    }

    fn system_on(&self, disk: &str) -> Option<&System> {
        self.systems.iter().find(|s| s.disks.iter().any(|d| d == disk))
    }

    /// (kind, role, detail) of a disk, as the real service derives them.
    fn role(&self, d: &Disk) -> (&'static str, String, String) {
        if d.running() {
            return (kind::RUNNING, "rootvg".into(), "the running system".into());
        }
        if let Some(s) = self.system_on(&d.name) {
            if s.former {
                return (kind::FORMER, "old_rootvg".into(), "the system this one was cloned from".into());
            }
            let from = if s.source.is_empty() { String::new() } else { format!(" of {}", s.source) };
            let mounted = if s.awake_at.is_empty() { String::new() } else { format!(", mounted at {}", s.awake_at) };
            return (
                kind::ALTERNATE,
                s.name.clone(),
                format!("{}{from}, made {}{mounted}", state_words(&s.state), s.created),
            );
        }
        if d.read_only {
            return (kind::IN_USE, "in use".into(), "it is read-only".into());
        }
        if !d.in_use.is_empty() {
            return (kind::IN_USE, "in use".into(), d.in_use.clone());
        }
        if let Some(p) = d.parts.iter().find(|p| !p.mountpoint.is_empty() && p.fstype != "swap") {
            return (
                kind::IN_USE,
                "in use".into(),
                format!("{} is mounted at {}", d.part_path(p.number), p.mountpoint),
            );
        }
        if let Some(p) = d.parts.iter().find(|p| p.fstype == "swap" && !p.mountpoint.is_empty()) {
            return (kind::IN_USE, "in use".into(), format!("{} is active swap", d.part_path(p.number)));
        }
        if !d.parts.is_empty() {
            return (kind::HOLDS_DATA, "not free".into(), "it holds data (a gpt partition table)".into());
        }
        (kind::FREE, "free".into(), String::new())
    }

    fn contents(&self, d: &Disk) -> Vec<PartContent> {
        d.parts
            .iter()
            .map(|p| PartContent {
                number: p.number,
                device: d.part_path(p.number).into(),
                name: p.name.clone(),
                start: p.start,
                size: p.size,
                fstype: p.fstype.clone(),
                label: p.label.clone(),
                uuid: String::new(),
                mountpoint: p.mountpoint.clone(),
                os: p.os.clone(),
            })
            .collect()
    }

    fn holds(&self, d: &Disk) -> Vec<String> {
        let system = self
            .system_on(&d.name)
            .filter(|s| !s.former)
            .map(|s| contents::system_line(&s.name, state_words(&s.state), &s.created));
        contents::describe(&self.contents(d), system, None)
    }

    fn part_infos(&self, d: &Disk) -> Vec<PartInfo> {
        d.parts
            .iter()
            .map(|p| PartInfo {
                number: p.number,
                device: d.part_path(p.number),
                name: p.name.clone(),
                role: String::new(),
                start: p.start,
                size: p.size,
                fstype: p.fstype.clone(),
                label: p.label.clone(),
                mountpoint: p.mountpoint.clone(),
                used: 0,
                source: String::new(),
                os: p.os.clone(),
            })
            .collect()
    }

    /// Refuse a disk a clone must not write, as the real safety checks do.
    fn check_target(&self, d: &Disk, force: bool) -> Result<()> {
        let (k, _, detail) = self.role(d);
        let name = d.path();
        match k {
            kind::RUNNING => {
                Err(Error::refused(&name, "it holds the running system", "choose a free disk (see Disks)"))
            }
            kind::IN_USE => Err(Error::refused(&name, detail, "choose another disk")),
            kind::ALTERNATE if !self.system_on(&d.name).map(|s| s.awake_at.is_empty()).unwrap_or(true) => {
                Err(Error::refused(&name, detail, "put it to sleep first"))
            }
            kind::FREE => Ok(()),
            _ if force => Ok(()),
            _ => {
                let why = match self.system_on(&d.name) {
                    Some(s) => format!(
                        "it holds the alternate system {} ({}, made {})",
                        s.name,
                        state_words(&s.state),
                        s.created
                    ),
                    None => "it holds data (a gpt partition table)".into(),
                };
                Err(Error::refused(&name, why, "if its contents can be destroyed, run again with --force"))
            }
        }
    }

    fn entry_for(&self, disk: &Disk) -> Result<usize> {
        self.entries.iter().position(|e| e.disk == disk.name && e.active).ok_or_else(|| {
            Error::not_found(
                format!("UEFI boot entry for {}", disk.name),
                "no entry boots from a partition of that disk",
                "make one by cloning onto it",
            )
        })
    }

    fn uefi(&self) -> Result<()> {
        if self.firmware == api::firmware::BIOS {
            return Err(Error::unsupported(
                "the UEFI boot list",
                ": this machine did not boot through UEFI",
                "on a BIOS machine the boot order belongs to the firmware setup",
            ));
        }
        Ok(())
    }

    fn new_entry(&mut self, disk: &str, description: &str) -> String {
        let n = (0..0xffffu32).map(|n| format!("Boot{n:04X}")).find(|b| !self.entries.iter().any(|e| &e.number == b));
        let number = n.unwrap_or_else(|| "BootFFFF".into());
        self.entries.retain(|e| e.disk != disk);
        self.entries.push(Entry {
            number: number.clone(),
            description: description.into(),
            disk: disk.into(),
            active: true,
            in_order: true,
            next: false,
            current: false,
        });
        self.entries_touched = true;
        number
    }

    fn put_first(&mut self, numbers: &[String]) {
        let mut first: Vec<Entry> = Vec::new();
        for n in numbers {
            if let Some(i) = self.entries.iter().position(|e| &e.number == n) {
                let mut e = self.entries.remove(i);
                e.in_order = true;
                first.push(e);
            }
        }
        first.append(&mut self.entries);
        self.entries = first;
        self.entries_touched = true;
    }

    fn set_next(&mut self, number: &str) {
        for e in &mut self.entries {
            e.next = e.number == number;
        }
        self.entries_touched = true;
    }

    fn changed(&mut self, disks: &[String]) {
        self.touched.extend(disks.iter().cloned());
        self.generation += 1;
    }

    /// Every system on the disks, as the real `find` sees them: the running one, those with
    /// a record (`[[system]]`), then other Linux roots (partitions with an OS).
    fn found(&self) -> Vec<FoundSystem> {
        let mut out = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        if let Some(d) = self.disks.iter().find(|d| d.running()) {
            let root = d.root();
            out.push(FoundSystem {
                name: "rootvg".into(),
                kind: found_kind::RUNNING.into(),
                state: "the running system".into(),
                bootable: true,
                os: root.map(|p| p.os.clone()).unwrap_or_default(),
                host: self.hostname.clone(),
                disks: vec![d.name.clone()],
                root: root.map(|p| d.part_path(p.number)).unwrap_or_default(),
                kernels: root.map(|p| p.kernels.clone()).unwrap_or_default(),
                ..Default::default()
            });
            seen.insert(&d.name);
        }
        for s in &self.systems {
            if s.disks.iter().any(|n| seen.contains(n.as_str())) {
                continue;
            }
            seen.extend(s.disks.iter().map(String::as_str));
            let disk = s.disks.first().and_then(|n| self.disks.iter().find(|d| &d.name == n));
            let root = disk.and_then(Disk::root);
            // An incomplete clone is not looked into: it may hold anything.
            let incomplete = s.state == "incomplete";
            let (os, kernels) = match root {
                Some(p) if !incomplete => (p.os.clone(), p.kernels.clone()),
                _ => (String::new(), Vec::new()),
            };
            out.push(FoundSystem {
                name: if s.former { "old_rootvg".into() } else { s.name.clone() },
                kind: if s.former { found_kind::OLD_ROOTVG } else { found_kind::ALTDISK }.into(),
                state: if incomplete && !s.note.is_empty() {
                    format!("incomplete ({})", s.note)
                } else {
                    state_words(&s.state).into()
                },
                bootable: s.state == "complete" && !kernels.is_empty(),
                os,
                host: s.source.clone(),
                created: s.created.clone(),
                disks: s.disks.clone(),
                root: match (disk, root) {
                    (Some(d), Some(p)) => d.part_path(p.number),
                    _ => String::new(),
                },
                root_uuid: String::new(),
                kernels,
            });
        }
        for d in self.disks.iter().filter(|d| !seen.contains(d.name.as_str())) {
            for p in d.parts.iter().filter(|p| !p.os.is_empty()) {
                out.push(FoundSystem {
                    name: "linux".into(),
                    kind: found_kind::OTHER.into(),
                    state: "not made by altdisk".into(),
                    bootable: !p.kernels.is_empty(),
                    os: p.os.clone(),
                    disks: vec![d.name.clone()],
                    root: d.part_path(p.number),
                    kernels: p.kernels.clone(),
                    ..Default::default()
                });
            }
        }
        out
    }

    /// The system whose root is on the named disk.
    fn found_on(&self, disk: &str) -> Result<FoundSystem> {
        let d = self.disk(disk)?.name.clone();
        self.found().into_iter().find(|f| f.disks.contains(&d)).ok_or_else(|| {
            Error::not_found(
                format!("system on {d}"),
                "no root filesystem with an operating system was found on it",
                "see FindSystems for the systems on this machine's disks",
            )
        })
    }

    /// Make the boot entry of the system `f` (reuse the one that boots its disk, else make one
    /// as if from its ESP) and put it first, or `once`: BootNext. What was done, in a line.
    fn place(&mut self, f: &FoundSystem, once: bool) -> Result<String> {
        let disk = f.disks.first().cloned().unwrap_or_default();
        if self.firmware == api::firmware::BIOS {
            return Err(Error::unsupported(
                format!("changing the boot order to {disk}"),
                ": on a BIOS machine the firmware's setup owns the order",
                format!(
                    "choose {disk} in the firmware's boot menu at power-on (often F12, F11 or Esc), or make it the first disk in the setup; repairing it (RepairSystem) puts its GRUB in its boot code"
                ),
            ));
        }
        let mut said = Vec::new();
        let number = match self.entries.iter().find(|e| e.disk == disk && e.active) {
            Some(e) => e.number.clone(),
            None => {
                let description = format!("{} on {disk}", f.name);
                let n = self.new_entry(&disk, &description);
                said.push(format!("made {n} ({description}) booting \\EFI\\BOOT\\BOOTX64.EFI (simulated)"));
                n
            }
        };
        if once {
            self.set_next(&number);
            said.push(format!("{} on {disk} boots next, once ({number})", f.name));
        } else {
            self.put_first(std::slice::from_ref(&number));
            said.push(format!("{} on {disk} is first in the UEFI boot order ({number})", f.name));
        }
        Ok(said.join("; "))
    }
}

fn refuse_running(f: &FoundSystem) -> Result<()> {
    if f.kind == found_kind::RUNNING {
        return Err(Error::refused(
            format!("{} on {}", f.name, f.disks.join(" ")),
            "it is the running system",
            "name the system to restore or repair (see FindSystems)",
        ));
    }
    Ok(())
}

fn refuse_unbootable(f: &FoundSystem) -> Result<()> {
    if !f.bootable {
        let disk = f.disks.first().cloned().unwrap_or_default();
        return Err(Error::refused(
            format!("{} on {disk}", f.name),
            format!(
                "it does not look bootable ({}{})",
                f.state,
                if f.kernels.is_empty() { ", no kernel in /boot" } else { "" }
            ),
            "repair it first (RepairSystem), or choose another system (FindSystems)",
        ));
    }
    Ok(())
}

fn phases_done(state: &str) -> Vec<u8> {
    match state {
        "copied" => vec![1],
        "customized" => vec![1, 2],
        "complete" => vec![1, 2, 3],
        _ => vec![],
    }
}

// ---- Plans ----

/// What a simulated clone makes.
#[derive(Debug, Clone, Serialize)]
struct SimPlan {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    simulated: bool,
    name: String,
    source: String,
    /// The disk of the system cloned offline.
    source_disk: Option<String>,
    phases: String,
    needed: u64,
    targets: Vec<SimTarget>,
    bootlist: String,
    boot: String,
    warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct SimTarget {
    name: String,
    /// The simulated disk, or None for an image file.
    disk: Option<String>,
    path: String,
    size: u64,
    parts: Vec<Part>,
}

/// One filesystem or swap area of the clone.
struct Item {
    role: &'static str,
    name: String,
    fstype: String,
    label: String,
    mountpoint: String,
    size: u64,
    grow: bool,
    used: u64,
    source: String,
}

fn alt_label(l: &str) -> String {
    if l.is_empty() {
        String::new()
    } else if let Some(rest) = l.strip_prefix("alt_") {
        rest.into()
    } else {
        format!("alt_{l}")
    }
}

impl World {
    /// The clone's filesystems: from the layout given, else from the running disk.
    fn items(&self, o: &CloneOptions) -> Result<Vec<Item>> {
        let convert =
            |t: &str| if o.convert && matches!(t, "ext2" | "ext3") { "ext4".to_string() } else { t.to_string() };
        if let Some(text) = &o.layout {
            let l = crate::plan::Layout::parse(text, "given over D-Bus")?;
            let mut v = Vec::new();
            for f in &l.filesystems {
                let (size, grow) = match f.size.as_str() {
                    "grow" => (GIB, true),
                    "auto" => (if f.mountpoint == "/" { self.copy_bytes + self.copy_bytes / 5 } else { GIB }, false),
                    s => (size::parse(s)?, false),
                };
                v.push(Item {
                    role: "filesystem",
                    name: if f.fstype == "vfat" { "EFI System Partition".into() } else { f.mountpoint.clone() },
                    fstype: f.fstype.clone(),
                    label: f.label.clone().unwrap_or_default(),
                    mountpoint: f.mountpoint.clone(),
                    size,
                    grow,
                    used: if f.mountpoint == "/" { self.copy_bytes } else { 0 },
                    source: String::new(),
                });
            }
            for s in &l.swaps {
                v.push(Item {
                    role: "swap",
                    name: "swap".into(),
                    fstype: "swap".into(),
                    label: s.label.clone().unwrap_or_default(),
                    mountpoint: String::new(),
                    size: size::parse(&s.size)?,
                    grow: false,
                    used: 0,
                    source: String::new(),
                });
            }
            return Ok(v);
        }
        // The disk cloned: the one named (offline: nothing of it is mounted, so its ESP and root
        // are known by their kind), else the running one.
        let offline = o.source_disk.is_some();
        let source = match &o.source_disk {
            Some(n) => self.disks.iter().find(|d| &d.name == n),
            None => self.disks.iter().find(|d| d.running()),
        };
        let mut v = Vec::new();
        match source {
            Some(d) => {
                let root_number = d.root().map(|p| p.number);
                for p in &d.parts {
                    let (role, mountpoint) = match p.fstype.as_str() {
                        "swap" => ("swap", String::new()),
                        "" => continue,
                        _ if !p.mountpoint.is_empty() && !offline => ("filesystem", p.mountpoint.clone()),
                        "vfat" if offline => ("filesystem", "/boot/efi".to_string()),
                        _ if offline && Some(p.number) == root_number => ("filesystem", "/".to_string()),
                        _ => continue,
                    };
                    let root = mountpoint == "/";
                    let name = match (p.name.as_str(), role) {
                        ("", "swap") => "swap".to_string(),
                        ("", _) if root => "root".to_string(),
                        ("", _) => mountpoint.trim_start_matches('/').replace('/', "-"),
                        (n, _) => n.to_string(),
                    };
                    v.push(Item {
                        role,
                        name,
                        fstype: convert(&p.fstype),
                        label: alt_label(&p.label),
                        size: if root { self.copy_bytes + self.copy_bytes / 5 } else { p.size },
                        grow: root,
                        used: if root { self.copy_bytes } else { 0 },
                        source: d.part_path(p.number),
                        mountpoint,
                    });
                }
            }
            None => {
                if self.firmware == api::firmware::UEFI {
                    v.push(Item {
                        role: "filesystem",
                        name: "EFI System Partition".into(),
                        fstype: "vfat".into(),
                        label: String::new(),
                        mountpoint: "/boot/efi".into(),
                        size: 512 * MIB,
                        grow: false,
                        used: 0,
                        source: String::new(),
                    });
                }
                v.push(Item {
                    role: "filesystem",
                    name: "root".into(),
                    fstype: "ext4".into(),
                    label: "alt_root".into(),
                    mountpoint: "/".into(),
                    size: self.copy_bytes + self.copy_bytes / 5,
                    grow: true,
                    used: self.copy_bytes,
                    source: String::new(),
                });
            }
        }
        if !v.iter().any(|i| i.mountpoint == "/") {
            return Err(Error::usage("layout", "it has no root filesystem (/)", "add one for /"));
        }
        Ok(v)
    }

    fn plan(&self, o: &CloneOptions) -> Result<SimPlan> {
        if o.resumes() {
            return Err(Error::unsupported(
                "planning phases 2 and 3 alone",
                ": they work on the clone the disk holds",
                "start the job (Clone) to resume it",
            ));
        }
        if let Some(s) = &o.source {
            if !s.starts_with('/') {
                return Err(Error::usage(format!("source {s}"), "it is not a full path", "give the full path"));
            }
        }
        check_phase2(o)?;
        // Offline: the system on a disk, read-only.
        let source_disk = match &o.source_disk {
            Some(n) => {
                if o.source.is_some() {
                    return Err(Error::usage(
                        "source with source_disk",
                        "they both name the system to clone",
                        "give one: source_disk clones the system on that disk",
                    ));
                }
                let f = self.found_on(n)?;
                let what = format!("{} on {}", f.name, f.disks.join(" "));
                if f.kind == found_kind::RUNNING {
                    return Err(Error::refused(
                        what,
                        "it is the running system",
                        "clone the running system without source_disk",
                    ));
                }
                if f.os.is_empty() {
                    return Err(Error::refused(
                        what,
                        format!("nothing on it can be cloned ({})", f.state),
                        "choose a complete system (see FindSystems)",
                    ));
                }
                Some((self.disk(n)?.name.clone(), f.os))
            }
            None => None,
        };
        let mut targets = Vec::new();
        let mut seen = HashSet::new();
        for t in &o.targets {
            let (disk, path, size) = if t.starts_with('/') && !t.starts_with("/dev/") {
                (None, t.clone(), o.size.unwrap_or(0))
            } else {
                let d = self.disk(t)?;
                if source_disk.as_ref().is_some_and(|(n, _)| n == &d.name) {
                    return Err(Error::refused(d.path(), "it holds the system being cloned", "choose another disk"));
                }
                self.check_target(d, o.force)?;
                (Some(d.name.clone()), d.path(), d.size)
            };
            if !seen.insert(path.clone()) {
                return Err(Error::usage(format!("target {t}"), "it is named twice", "name each target disk once"));
            }
            targets.push(SimTarget { name: t.clone(), disk, path, size, parts: Vec::new() });
        }
        let items = self.items(o)?;
        let fixed: u64 = items.iter().map(|i| i.size).sum::<u64>() + MIB * targets.len() as u64 + MIB;
        let needed = self.copy_bytes;
        // An image file without a size gets what the plan needs, with room to spare.
        for t in targets.iter_mut().filter(|t| t.disk.is_none() && t.size == 0) {
            t.size = size::round_up(fixed + fixed / 4, MIB);
        }
        let available: u64 = targets.iter().map(|t| t.size).sum();
        let mut warnings = Vec::new();
        if available < fixed {
            if !o.skip_space_check {
                return Err(Error::TooSmall {
                    what: "the targets".into(),
                    needed: size::human(fixed),
                    available: size::human(available),
                    todo: "choose a larger disk, add another (-d \"a b\"), or exclude data".into(),
                });
            }
            warnings.push("the targets look too small (space check skipped): sizes scaled down".into());
        }
        // Every target starts with its state record; the others go first-fit, / last on the
        // first target, taking the rest of it.
        let mut free: Vec<(u64, u64)> = Vec::new();
        for t in targets.iter_mut() {
            t.parts.push(Part {
                number: 1,
                name: crate::discover::gpt::META_NAME.into(),
                start: MIB,
                size: MIB,
                role: "meta".into(),
                ..Default::default()
            });
            free.push((2 * MIB, t.size.saturating_sub(2 * MIB + MIB)));
        }
        let scale = if available < fixed { available as f64 / fixed as f64 } else { 1.0 };
        let (root, others): (Vec<&Item>, Vec<&Item>) = items.iter().partition(|i| i.grow);
        let root_min = root.iter().map(|i| (i.size as f64 * scale) as u64).sum::<u64>();
        for it in others.iter().chain(root.iter()) {
            let size = size::round_up((it.size as f64 * scale) as u64, MIB);
            let slot = (0..targets.len()).find(|&k| {
                let reserve = if k == 0 && !it.grow { root_min } else { 0 };
                free[k].1 >= size + reserve
            });
            let k = slot.unwrap_or(0);
            let size = if it.grow { free[k].1 } else { size.min(free[k].1) };
            let t = &mut targets[k];
            t.parts.push(Part {
                number: t.parts.len() as u32 + 1,
                name: it.name.clone(),
                start: free[k].0,
                size,
                fstype: it.fstype.clone(),
                label: it.label.clone(),
                mountpoint: it.mountpoint.clone(),
                os: String::new(),
                kernels: Vec::new(),
                used: it.used,
                source: it.source.clone(),
                role: it.role.into(),
            });
            free[k].0 += size;
            free[k].1 = free[k].1.saturating_sub(size);
        }
        let uefi = self.firmware == api::firmware::UEFI;
        let (boot, bootlist) = if o.phases.has(3) {
            (
                if uefi { "GRUB for UEFI (\\EFI\\debian)" } else { "GRUB for BIOS" }.to_string(),
                match (uefi, o.bootlist) {
                    (false, _) => "the BIOS boot order stays with the firmware",
                    (_, api::BootlistMode::First) => "the clone goes first in the UEFI boot order",
                    (_, api::BootlistMode::Leave) => "the UEFI boot order is left alone",
                    (_, api::BootlistMode::Trial) => "the clone is booted once (BootNext) and kept if it comes up",
                }
                .to_string(),
            )
        } else {
            (String::new(), String::new())
        };
        Ok(SimPlan {
            api_version: crate::API_VERSION,
            simulated: true,
            name: crate::ALTINST_ROOTVG.into(),
            source: match (&source_disk, &o.source) {
                (Some((d, os)), _) => format!("the system on {d} ({os})"),
                (None, Some(s)) => format!("the system at {s}"),
                (None, None) => "the running system".into(),
            },
            source_disk: source_disk.map(|(d, _)| d),
            phases: o.phases.as_str().into(),
            needed,
            targets,
            bootlist,
            boot,
            warnings,
        })
    }
}

fn check_phase2(o: &CloneOptions) -> Result<()> {
    let p = &o.phase2;
    let paths = [&p.packages_dir, &p.script, &p.first_boot_script, &p.resolv_conf]
        .into_iter()
        .flatten()
        .chain(p.bundles.iter())
        .chain(p.fix_bundles.iter());
    for path in paths {
        if !path.starts_with('/') {
            return Err(Error::usage(format!("phase 2 path {path}"), "it is not a full path", "give the full path"));
        }
    }
    let wants_packages = !p.packages.is_empty()
        || !p.fixes.is_empty()
        || !p.bundles.is_empty()
        || !p.fix_bundles.is_empty()
        || p.update_all
        || !p.install_flags.is_empty();
    if wants_packages && p.packages_dir.is_none() {
        return Err(Error::usage(
            "packages, bundles and install flags",
            "they name packages to install, which come from the packages directory",
            format!("add {} with the packages", api::options::keys::PACKAGES_DIR),
        ));
    }
    Ok(())
}

fn render(p: &SimPlan) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let names: Vec<&str> = p.targets.iter().map(|t| t.name.as_str()).collect();
    let _ = writeln!(s, "Plan: clone {} to {} ({}) [simulated]", p.source, p.name, names.join(", "));
    let _ = writeln!(s, "Phases: {}", p.phases);
    for t in &p.targets {
        let kind = if t.disk.is_none() { " (image file, created)" } else { "" };
        let _ = writeln!(s, "\nDisk {}{kind}: {}", t.name, size::human(t.size));
        let _ = writeln!(s, "  {:>3}  {:>8}  {:>8}  {:<16} contents", "#", "start", "size", "name");
        for q in &t.parts {
            let what = match q.role.as_str() {
                "meta" => "altdisk state (incomplete until done)".to_string(),
                "swap" => "swap (recreated)".to_string(),
                _ => format!(
                    "{} {} {}{}, {} used",
                    q.fstype,
                    q.mountpoint,
                    if q.label.is_empty() { String::new() } else { format!("[{}]", q.label) },
                    if q.source.is_empty() { String::new() } else { format!(" from {}", q.source) },
                    size::human(q.used)
                ),
            };
            let _ = writeln!(
                s,
                "  {:>3}  {:>8}  {:>8}  {:<16} {what}",
                q.number,
                size::human(q.start),
                size::human(q.size),
                q.name
            );
        }
    }
    if !p.boot.is_empty() {
        let _ = writeln!(s, "\nBoot: {}; {}.", p.boot, p.bootlist);
    }
    for w in &p.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

// ---- Jobs ----

enum SimJob {
    New { plan: SimPlan },
    Resume { system: String, disks: Vec<String> },
    Refresh { system: String, disks: Vec<String> },
    Verify { system: String, disks: Vec<String> },
}

struct SimWork {
    world: Arc<Mutex<World>>,
    job: SimJob,
    opts: CloneOptions,
    mount_at: PathBuf,
}

/// Sample paths the simulated copy shows, as the copy engine names them.
const PATHS: &[&str] = &[
    "./usr/lib/x86_64-linux-gnu/libc.so.6",
    "./usr/share/doc/bash/copyright",
    "./usr/bin/python3.11",
    "./usr/share/zoneinfo/Europe/Berlin",
    "./usr/lib/modules/6.1.0-18-amd64/kernel/fs/ext4/ext4.ko",
    "./home/alice/Documents/report.odt",
    "./etc/ssh/sshd_config",
    "./usr/share/locale/de/LC_MESSAGES/coreutils.mo",
];

impl SimWork {
    fn lock(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait `d`, stopping early when the job is cancelled.
    fn wait(job: &Job, d: Duration) -> Result<()> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            job.check()?;
            std::thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
        }
        job.check()
    }

    fn step(&self, job: &Job, phase: Phase, message: String) -> Result<()> {
        job.check()?;
        job.set_phase(phase);
        job.info(message);
        let step = self.lock().step;
        Self::wait(job, step)
    }

    fn copy(&self, job: &Job, plan: &SimPlan) -> Result<()> {
        let (bytes, files, rate) = {
            let w = self.lock();
            (w.copy_bytes, w.copy_files, w.rate)
        };
        // The first target disk marked to fail, and where.
        let fail = {
            let w = self.lock();
            plan.targets
                .iter()
                .filter_map(|t| t.disk.as_ref())
                .filter_map(|n| w.disks.iter().find(|d| &d.name == n))
                .find_map(|d| {
                    d.fail_at.map(|pct| (d.part_path(2), (u128::from(bytes) * u128::from(pct.min(100)) / 100) as u64))
                })
        };
        job.set_phase(Phase::Copying);
        job.add_totals(bytes, files);
        job.info(format!("copying {} in {files} files", size::human(bytes)));
        let started = Instant::now();
        let (mut done, mut files_done, mut i) = (0u64, 0u64, 0usize);
        while done < bytes {
            job.check()?;
            std::thread::sleep(Duration::from_millis(50));
            let want = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(bytes);
            if let Some((dev, at)) = &fail {
                if want >= *at {
                    job.add_bytes(at.saturating_sub(done));
                    return Err(Error::io(
                        "writing the clone (simulated failure)",
                        dev,
                        std::io::Error::from_raw_os_error(libc::EIO),
                    ));
                }
            }
            job.add_bytes(want - done);
            done = want;
            let f = (u128::from(done) * u128::from(files) / u128::from(bytes.max(1))) as u64;
            for _ in files_done..f {
                job.add_file();
            }
            files_done = f;
            i += 1;
            job.set_current(Path::new(PATHS[i % PATHS.len()]));
        }
        job.info(format!("copied {} in {files} files", size::human(bytes)));
        Ok(())
    }

    fn run_new(&self, job: &Job, plan: &SimPlan) -> Result<Outcome> {
        let o = &self.opts;
        let disks: Vec<String> = plan.targets.iter().filter_map(|t| t.disk.clone()).collect();
        let id = {
            let mut w = self.lock();
            w.next_id += 1;
            format!("sim-job-{}", w.next_id)
        };
        if let Some(d) = &plan.source_disk {
            job.info(format!("mounted the system on {d} read-only, as its fstab says (simulated)"));
        }
        self.step(job, Phase::Validating, format!("checked {}", plan.targets.len()))?;
        job.check()?;
        job.set_phase(Phase::Partitioning);
        {
            // The record says incomplete from the first write, as on a real disk.
            let mut w = self.lock();
            let now = crate::discover::record::now_rfc3339();
            let host = w.hostname.clone();
            w.systems.retain(|s| !s.disks.iter().any(|d| disks.contains(d)));
            w.entries.retain(|e| !disks.contains(&e.disk));
            // The clone's partitions, not mounted here; its root carries the source's OS.
            let (os, kernels) = w
                .disks
                .iter()
                .find(|d| match &plan.source_disk {
                    Some(n) => &d.name == n,
                    None => d.running(),
                })
                .and_then(Disk::root)
                .map(|p| (p.os.clone(), p.kernels.clone()))
                .unwrap_or_default();
            for t in &plan.targets {
                if let Some(n) = &t.disk {
                    if let Some(d) = w.disks.iter_mut().find(|d| &d.name == n) {
                        d.parts = t
                            .parts
                            .iter()
                            .map(|p| Part {
                                os: if p.mountpoint == "/" { os.clone() } else { String::new() },
                                kernels: if p.mountpoint == "/" { kernels.clone() } else { Vec::new() },
                                mountpoint: String::new(),
                                ..p.clone()
                            })
                            .collect();
                    }
                }
            }
            if !disks.is_empty() {
                w.systems.push(System {
                    id: id.clone(),
                    name: plan.name.clone(),
                    disks: disks.clone(),
                    state: "incomplete".into(),
                    source: host,
                    created: now.clone(),
                    updated: now,
                    phases_done: vec![],
                    boot_entry: String::new(),
                    trial: false,
                    note: String::new(),
                    volume_group: String::new(),
                    former: false,
                    awake_at: String::new(),
                    made: true,
                });
            }
            w.changed(&disks);
        }
        let step = self.lock().step;
        job.info(format!(
            "wrote GPT partition tables on {}",
            plan.targets.iter().map(|t| t.path.as_str()).collect::<Vec<_>>().join(", ")
        ));
        Self::wait(job, step)?;
        job.set_phase(Phase::MakingFilesystems);
        for t in &plan.targets {
            for p in t.parts.iter().filter(|p| !p.fstype.is_empty()) {
                job.info(format!("made {} on {} partition {}", p.fstype, t.path, p.number));
            }
        }
        Self::wait(job, step)?;
        self.copy(job, plan)?;
        self.step(job, Phase::FixingIdentities, "fstab: 3 lines now name the clone's filesystems".into())?;
        if o.phases.has(2) && !o.phase2.is_empty() {
            self.customize(job)?;
        }
        let mut entry = String::new();
        if o.phases.has(3) {
            self.step(job, Phase::MakingBootable, format!("installed {} (simulated)", plan.boot))?;
            let mut w = self.lock();
            if w.firmware == api::firmware::UEFI {
                if let Some(first) = disks.first() {
                    entry = w.new_entry(first, &plan.name);
                    match o.bootlist {
                        api::BootlistMode::First => w.put_first(std::slice::from_ref(&entry)),
                        api::BootlistMode::Leave => {
                            if let Some(e) = w.entries.iter_mut().find(|e| e.number == entry) {
                                e.in_order = false;
                            }
                        }
                        api::BootlistMode::Trial => {
                            if let Some(e) = w.entries.iter_mut().find(|e| e.number == entry) {
                                e.in_order = false;
                            }
                            w.set_next(&entry);
                        }
                    }
                    drop(w);
                    job.info(format!("made UEFI boot entry {entry} ({})", plan.bootlist));
                }
            }
        }
        let keep_mounted = !o.phases.has(3);
        if !keep_mounted {
            self.step(job, Phase::CleaningUp, "unmounted the clone".into())?;
        }
        let mut w = self.lock();
        let at = self.mount_at.display().to_string();
        if let Some(s) = w.systems.iter_mut().find(|s| s.id == id) {
            s.phases_done = (1..=3).filter(|n| o.phases.has(*n)).collect();
            s.state = match s.phases_done.last() {
                Some(3) => "complete",
                Some(2) => "customized",
                _ => "copied",
            }
            .into();
            s.boot_entry = entry;
            s.trial = o.bootlist == api::BootlistMode::Trial && o.phases.has(3);
            s.updated = crate::discover::record::now_rfc3339();
            if keep_mounted {
                s.awake_at = at.clone();
            }
        }
        w.changed(&disks);
        drop(w);
        job.set_phase(Phase::Done);
        Ok(Outcome { mounted_at: keep_mounted.then(|| self.mount_at.clone()), report: None })
    }

    fn customize(&self, job: &Job) -> Result<()> {
        let p = &self.opts.phase2;
        job.check()?;
        job.set_phase(Phase::Customizing);
        let pkgs: Vec<&str> = p.packages.iter().chain(&p.fixes).map(String::as_str).collect();
        if let Some(dir) = &p.packages_dir {
            job.info(format!(
                "installing from {dir}: {} (simulated)",
                if pkgs.is_empty() { "bundles".into() } else { pkgs.join(", ") }
            ));
        }
        if let Some(r) = &p.resolv_conf {
            job.info(format!("replaced /etc/resolv.conf with {r}"));
        }
        if p.device_reset {
            job.info("device reset: machine-id emptied, SSH host keys removed".to_string());
        }
        if let Some(s) = &p.first_boot_script {
            job.info(format!("first-boot script {s} staged"));
        }
        if let Some(s) = &p.script {
            job.info(format!("ran {s} (simulated)"));
        }
        let step = self.lock().step;
        Self::wait(job, step)
    }

    /// A refresh: the phases the system had, on the same disks; nothing else changes.
    fn run_refresh(&self, job: &Job, system: &str, disks: &[String]) -> Result<Outcome> {
        self.step(job, Phase::Validating, format!("refreshing {system} on {}", disks.join(" ")))?;
        self.step(
            job,
            Phase::Copying,
            "refreshed: 412 written, 37 with new metadata, 9 deleted, 60211 unchanged (simulated)".into(),
        )?;
        self.step(job, Phase::FixingIdentities, "fstab follows the clone's identities (simulated)".into())?;
        let bootable = self.lock().systems.iter().any(|s| s.disks == disks && s.phases_done.contains(&3));
        if bootable {
            self.step(job, Phase::MakingBootable, "rebuilt the initramfs and boot loader (simulated)".into())?;
        }
        self.step(job, Phase::CleaningUp, "left as it was found".into())?;
        let mut w = self.lock();
        if let Some(s) = w.systems.iter_mut().find(|s| s.disks == disks) {
            s.updated = crate::discover::record::now_rfc3339();
        }
        w.changed(disks);
        drop(w);
        job.set_phase(Phase::Done);
        Ok(Outcome::default())
    }

    /// A verify: the simulated clone equals its source.
    fn run_verify(&self, job: &Job, system: &str, disks: &[String]) -> Result<Outcome> {
        self.step(job, Phase::Validating, format!("mounting {system} on {} read-only (simulated)", disks.join(" ")))?;
        self.step(job, Phase::Copying, "compared 60669 entries (simulated)".into())?;
        job.set_phase(Phase::Done);
        let report = serde_json::json!({
            "apiVersion": crate::API_VERSION,
            "source": "the running system",
            "clone": format!("{system} on {}", disks.join(" ")),
            "equal": true,
            "entries": 60669,
            "files_hashed": 52111,
            "bytes_hashed": 3_900_000_000u64,
            "differences": {},
            "unexpected": 0,
            "expected": 2,
            "list": [
                {"kind": "content", "path": "/etc/fstab", "expected": true},
                {"kind": "times", "path": "/etc", "expected": true}
            ],
            "seconds": 1.0
        });
        Ok(Outcome { mounted_at: None, report: Some(report.to_string()) })
    }

    fn run_resume(&self, job: &Job, system: &str, disks: &[String]) -> Result<Outcome> {
        let o = &self.opts;
        self.step(job, Phase::Validating, format!("resuming {system} on {}", disks.join(" ")))?;
        if o.phases.has(2) && !o.phase2.is_empty() {
            self.customize(job)?;
        }
        let mut entry = None;
        if o.phases.has(3) {
            self.step(job, Phase::MakingBootable, "installed the boot loader (simulated)".into())?;
            let mut w = self.lock();
            if w.firmware == api::firmware::UEFI {
                let e = w.new_entry(&disks[0], system);
                if o.bootlist == api::BootlistMode::First {
                    w.put_first(std::slice::from_ref(&e));
                } else if o.bootlist == api::BootlistMode::Trial {
                    w.set_next(&e);
                }
                entry = Some(e);
            }
        }
        self.step(job, Phase::CleaningUp, "put the clone to sleep".into())?;
        let mut w = self.lock();
        if let Some(s) = w.systems.iter_mut().find(|s| s.disks == disks) {
            for n in 2..=3 {
                if o.phases.has(n) && !s.phases_done.contains(&n) {
                    s.phases_done.push(n);
                }
            }
            s.state = if s.phases_done.contains(&3) { "complete" } else { "customized" }.into();
            if let Some(e) = entry {
                s.boot_entry = e;
            }
            s.awake_at.clear();
            s.updated = crate::discover::record::now_rfc3339();
            s.made = true;
        }
        w.changed(disks);
        drop(w);
        job.set_phase(Phase::Done);
        Ok(Outcome::default())
    }
}

impl Work for SimWork {
    fn kind(&self) -> &'static str {
        match self.job {
            SimJob::New { .. } => "clone",
            SimJob::Resume { .. } => "resume",
            SimJob::Refresh { .. } => "refresh",
            SimJob::Verify { .. } => "verify",
        }
    }

    fn run(self: Box<Self>, job: &Job) -> Result<Outcome> {
        let r = match &self.job {
            SimJob::New { plan } => self.run_new(job, plan),
            SimJob::Resume { system, disks } => self.run_resume(job, system, disks),
            SimJob::Refresh { system, disks } => self.run_refresh(job, system, disks),
            SimJob::Verify { system, disks } => self.run_verify(job, system, disks),
        };
        if let Err(e) = &r {
            job.set_phase(Phase::CleaningUp);
            job.warn(format!("{e}"));
            let disks: Vec<String> = match &self.job {
                SimJob::New { plan } => plan.targets.iter().filter_map(|t| t.disk.clone()).collect(),
                SimJob::Resume { disks, .. } | SimJob::Refresh { disks, .. } => disks.clone(),
                SimJob::Verify { .. } => Vec::new(),
            };
            let mut w = self.lock();
            if let Some(s) = w.systems.iter_mut().find(|s| s.disks == disks) {
                s.state = "incomplete".into();
                s.note = e.to_string();
                s.awake_at.clear();
                s.made = true;
            }
            w.changed(&disks);
        }
        r
    }
}

/// Phase 3 again on a system found on a disk (`RepairSystem`).
struct SimRepair {
    world: Arc<Mutex<World>>,
    found: FoundSystem,
    mount_at: PathBuf,
}

impl Work for SimRepair {
    fn kind(&self) -> &'static str {
        api::job_kind::REPAIR
    }

    fn run(self: Box<Self>, job: &Job) -> Result<Outcome> {
        let f = &self.found;
        let disk = f.disks.first().cloned().unwrap_or_default();
        let (step, uefi, fail) = {
            let w = self.world.lock().unwrap_or_else(|p| p.into_inner());
            let d = w.disks.iter().find(|d| d.name == disk);
            (w.step, w.firmware == api::firmware::UEFI, d.and_then(|d| d.fail_at.map(|_| d.part_path(1))))
        };
        job.set_phase(Phase::Validating);
        job.info(format!(
            "mounted {} read-write at {}, with its other filesystems as its fstab says (simulated)",
            f.root,
            self.mount_at.display()
        ));
        SimWork::wait(job, step)?;
        job.set_phase(Phase::MakingBootable);
        job.info(format!("regenerated the initramfs of {} (simulated)", f.kernels.join(", ")));
        SimWork::wait(job, step)?;
        if let Some(dev) = fail {
            return Err(Error::io(
                "installing the boot loader (simulated failure)",
                dev,
                std::io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        let mut said = format!("{} on {disk}: initramfs and boot loader installed", f.name);
        if uefi {
            job.info("installed GRUB for UEFI (\\EFI\\debian), and the fallback \\EFI\\BOOT\\BOOTX64.EFI (simulated)");
            let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
            let n = w.new_entry(&disk, &f.name);
            w.put_first(std::slice::from_ref(&n));
            if let Some(s) = w.systems.iter_mut().find(|s| s.disks.contains(&disk)) {
                s.boot_entry = n.clone();
                s.made = true;
            }
            w.generation += 1;
            said.push_str(&format!("; {n} made"));
        } else {
            job.info(format!("installed GRUB for BIOS in the boot code of {disk} (simulated)"));
        }
        SimWork::wait(job, step)?;
        job.info(said);
        job.info(format!("unmounted {}", self.mount_at.display()));
        job.set_phase(Phase::Done);
        Ok(Outcome::default())
    }
}

// ---- The engine ----

pub struct SimEngine {
    world: Arc<Mutex<World>>,
}

impl SimEngine {
    /// Serve the disks and systems described in `file`.
    pub fn new(file: &Path) -> Result<SimEngine> {
        Ok(SimEngine { world: Arc::new(Mutex::new(World::load(file)?)) })
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        let mut w = self.world.lock().unwrap_or_else(|p| p.into_inner());
        w.refresh();
        w
    }
}

fn system_info(s: &System) -> SystemInfo {
    SystemInfo {
        name: if s.former { "old_rootvg".into() } else { s.name.clone() },
        id: s.id.clone(),
        disks: s.disks.clone(),
        state: s.state.clone(),
        state_text: state_words(&s.state).into(),
        source_host: s.source.clone(),
        created: s.created.clone(),
        updated: s.updated.clone(),
        phases_done: s.phases_done.clone(),
        running: false,
        former: s.former,
        awake_at: s.awake_at.clone(),
        boot_entry: s.boot_entry.clone(),
        trial: s.trial,
        note: s.note.clone(),
        volume_group: s.volume_group.clone(),
    }
}

impl Engine for SimEngine {
    fn simulated(&self) -> bool {
        true
    }

    fn local_authorization(&self, action: &str) -> Option<bool> {
        Some(!self.world().deny.iter().any(|a| a == action))
    }

    fn firmware(&self) -> &'static str {
        self.world().firmware
    }

    fn disks(&self) -> Result<Vec<DiskInfo>> {
        let w = self.world();
        Ok(w.disks
            .iter()
            .map(|d| {
                let (_, role, detail) = w.role(d);
                DiskInfo {
                    name: d.name.clone(),
                    alias: d.alias.clone(),
                    path: d.path(),
                    model: d.model.clone(),
                    serial: d.serial.clone(),
                    size: d.size,
                    bus: d.bus.clone(),
                    removable: d.removable,
                    role,
                    detail,
                }
            })
            .collect())
    }

    fn disk_details(&self, _busy: &[DevKey]) -> Result<Vec<DiskDetail>> {
        let w = self.world();
        Ok(w.disks
            .iter()
            .map(|d| {
                let (k, role, detail) = w.role(d);
                let sys = w.system_on(&d.name);
                let system = if k == kind::RUNNING {
                    SystemRef {
                        name: "rootvg".into(),
                        state: "running".into(),
                        source_host: w.hostname.clone(),
                        ..Default::default()
                    }
                } else {
                    sys.map(|s| SystemRef {
                        name: if s.former { "old_rootvg".into() } else { s.name.clone() },
                        id: s.id.clone(),
                        state: s.state.clone(),
                        source_host: s.source.clone(),
                        created: s.created.clone(),
                    })
                    .unwrap_or_default()
                };
                let awake = sys.map(|s| !s.awake_at.is_empty()).unwrap_or(false);
                DiskDetail {
                    name: d.name.clone(),
                    alias: d.alias.clone(),
                    path: d.path(),
                    model: d.model.clone(),
                    serial: d.serial.clone(),
                    size: d.size,
                    bus: d.bus.clone(),
                    removable: d.removable,
                    read_only: d.read_only,
                    loop_device: false,
                    kind: k.into(),
                    role,
                    detail,
                    usable: k == kind::FREE,
                    erasable: matches!(k, kind::HOLDS_DATA | kind::ALTERNATE | kind::FORMER) && !awake,
                    system,
                    partitions: w.part_infos(d),
                    holds: w.holds(d),
                }
            })
            .collect())
    }

    fn systems(&self) -> Result<Vec<SystemInfo>> {
        let w = self.world();
        let mut out = Vec::new();
        if let Some(d) = w.disks.iter().find(|d| d.running()) {
            out.push(SystemInfo {
                name: "rootvg".into(),
                disks: vec![d.name.clone()],
                state: "running".into(),
                state_text: "the running system".into(),
                source_host: w.hostname.clone(),
                running: true,
                boot_entry: w.entries.iter().find(|e| e.disk == d.name).map(|e| e.number.clone()).unwrap_or_default(),
                ..Default::default()
            });
        }
        out.extend(w.systems.iter().map(system_info));
        Ok(out)
    }

    fn boot_environments(&self) -> Result<Vec<BootEnvInfo>> {
        Ok(self
            .systems()?
            .into_iter()
            .map(|s| BootEnvInfo {
                name: s.name,
                disks: s.disks,
                state: s.state_text,
                source: s.source_host,
                created: s.created,
            })
            .collect())
    }

    fn boot_list(&self) -> Result<Vec<BootEntryInfo>> {
        let w = self.world();
        w.uefi()?;
        Ok(w.entries
            .iter()
            .map(|e| {
                let system = w
                    .disks
                    .iter()
                    .find(|d| d.name == e.disk)
                    .map(|d| match w.role(d) {
                        (kind::RUNNING, ..) => "rootvg".to_string(),
                        (kind::FORMER, ..) => "old_rootvg".to_string(),
                        _ => w.system_on(&d.name).map(|s| s.name.clone()).unwrap_or_default(),
                    })
                    .unwrap_or_default();
                BootEntryInfo {
                    number: e.number.clone(),
                    description: e.description.clone(),
                    disk: e.disk.clone(),
                    system,
                    active: e.active,
                    in_order: e.in_order,
                    next: e.next,
                    current: e.current,
                }
            })
            .collect())
    }

    fn set_boot_list(&self, disks: &[String]) -> Result<()> {
        let mut w = self.world();
        w.uefi()?;
        let mut numbers = Vec::new();
        for n in disks {
            let d = w.disk(n)?;
            let i = w.entry_for(d)?;
            numbers.push(w.entries[i].number.clone());
        }
        w.put_first(&numbers);
        Ok(())
    }

    fn set_boot_next(&self, disk: &str) -> Result<()> {
        let mut w = self.world();
        w.uefi()?;
        let d = w.disk(disk)?;
        let i = w.entry_for(d)?;
        let n = w.entries[i].number.clone();
        w.set_next(&n);
        Ok(())
    }

    fn trial_boot(&self, disk: &str) -> Result<()> {
        let mut w = self.world();
        w.uefi()?;
        let d = w.disk(disk)?.clone();
        if d.running() {
            return Err(Error::refused(&d.name, "it is the running system", "choose an alternate system to try"));
        }
        let s = w.system_on(&d.name).cloned().ok_or_else(|| {
            Error::not_found(format!("altdisk system on {}", d.name), "the disk has no altdisk record", "see Disks")
        })?;
        if s.state != "complete" {
            return Err(Error::refused(
                format!("{} on {}", s.name, s.disks.join(" ")),
                format!("it is not bootable yet ({})", state_words(&s.state)),
                format!("make it bootable first: alt_disk_copy -P3 -d {disk}"),
            ));
        }
        let i = w.entry_for(&d)?;
        let n = w.entries[i].number.clone();
        w.set_next(&n);
        if let Some(s) = w.systems.iter_mut().find(|x| x.id == s.id) {
            s.trial = true;
        }
        Ok(())
    }

    fn plan(&self, o: &CloneOptions, _mount_at: &Path) -> Result<String> {
        let p = self.world().plan(o)?;
        serde_json::to_string_pretty(&p).map_err(|e| Error::corrupt("the plan", e.to_string()))
    }

    fn plan_details(&self, o: &CloneOptions, _mount_at: &Path, _busy: &[DevKey]) -> Result<PlanDetails> {
        let w = self.world();
        let p = w.plan(o)?;
        let targets = p
            .targets
            .iter()
            .map(|t| {
                let d = t.disk.as_ref().and_then(|n| w.disks.iter().find(|d| &d.name == n));
                TargetPlan {
                    name: t.name.clone(),
                    path: t.path.clone(),
                    alias: d.map(|d| d.alias.clone()).unwrap_or_default(),
                    model: d.map(|d| d.model.clone()).unwrap_or_default(),
                    serial: d.map(|d| d.serial.clone()).unwrap_or_default(),
                    size: t.size,
                    image: d.is_none(),
                    image_created: d.is_none(),
                    before: d.map(|d| w.part_infos(d)).unwrap_or_default(),
                    after: t
                        .parts
                        .iter()
                        .map(|q| PartInfo {
                            number: q.number,
                            device: String::new(),
                            name: q.name.clone(),
                            role: q.role.clone(),
                            start: q.start,
                            size: q.size,
                            fstype: q.fstype.clone(),
                            label: q.label.clone(),
                            mountpoint: q.mountpoint.clone(),
                            used: q.used,
                            source: q.source.clone(),
                            os: String::new(),
                        })
                        .collect(),
                    erased: d.map(|d| w.holds(d)).unwrap_or_default(),
                }
            })
            .collect();
        Ok(PlanDetails {
            name: p.name.clone(),
            source: p.source.clone(),
            phases: p.phases.clone(),
            needed: p.needed,
            targets,
            volume_group: String::new(),
            logical_volumes: Vec::new(),
            boot: p.boot.clone(),
            bootlist: p.bootlist.clone(),
            warnings: p.warnings.clone(),
            text: render(&p),
            json: serde_json::to_string_pretty(&p).map_err(|e| Error::corrupt("the plan", e.to_string()))?,
        })
    }

    fn target_keys(&self, o: &CloneOptions) -> Result<Vec<(String, Vec<DevKey>)>> {
        let w = self.world();
        if o.existing() {
            if let Some(s) = o.targets.first().and_then(|t| w.disk(t).ok()).and_then(|d| w.system_on(&d.name)) {
                return Ok(s.disks.iter().map(|n| (n.clone(), vec![DevKey::Sim(n.clone())])).collect());
            }
        }
        o.targets
            .iter()
            .map(|t| {
                if t.starts_with('/') && !t.starts_with("/dev/") {
                    Ok((t.clone(), vec![DevKey::Dev(DevId::Path(PathBuf::from(t)))]))
                } else {
                    w.disk(t).map(|d| (t.clone(), vec![DevKey::Sim(d.name.clone())]))
                }
            })
            .collect()
    }

    fn verify_keys(&self, target: &str) -> Result<Vec<(String, Vec<DevKey>)>> {
        let w = self.world();
        let d = w.disk(target)?;
        let s = w.system_on(&d.name).ok_or_else(|| {
            Error::not_found(format!("altdisk system on {}", d.name), "the disk has no altdisk record", "see Systems")
        })?;
        Ok(s.disks.iter().map(|n| (n.clone(), vec![DevKey::Sim(n.clone())])).collect())
    }

    fn prepare_verify(&self, target: &str, o: &VerifyOptions) -> Result<Box<dyn Work>> {
        let w = self.world();
        let d = w.disk(target)?;
        let s = w.system_on(&d.name).ok_or_else(|| {
            Error::not_found(format!("altdisk system on {}", d.name), "the disk has no altdisk record", "see Systems")
        })?;
        let job = SimJob::Verify { system: s.name.clone(), disks: s.disks.clone() };
        let opts = CloneOptions { targets: vec![target.to_string()], source: o.source.clone(), ..Default::default() };
        Ok(Box::new(SimWork { world: self.world.clone(), job, opts, mount_at: PathBuf::new() }))
    }

    fn prepare(&self, o: &CloneOptions, mount_at: &Path) -> Result<Box<dyn Work>> {
        let w = self.world();
        let job = if o.refresh {
            let first = o.targets.first().map(String::as_str).unwrap_or_default();
            let d = w.disk(first)?;
            let s = w.system_on(&d.name).filter(|s| !s.former && !d.running()).ok_or_else(|| {
                Error::not_found(
                    format!("altdisk system on {}", d.name),
                    "the disk has no alternate system altdisk made",
                    "see Systems for the clones there are",
                )
            })?;
            SimJob::Refresh { system: s.name.clone(), disks: s.disks.clone() }
        } else if o.resumes() {
            check_phase2(o)?;
            let first = o.targets.first().map(String::as_str).unwrap_or_default();
            let d = w.disk(first)?;
            let s = w.system_on(&d.name).filter(|s| !s.former).ok_or_else(|| {
                Error::not_found(
                    format!("altdisk system on {}", d.name),
                    "the disk has no altdisk record",
                    "see Disks for the disks that hold one",
                )
            })?;
            if !s.phases_done.contains(&1) {
                return Err(Error::refused(
                    format!("{} on {}", s.name, s.disks.join(" ")),
                    format!("its phase 1 did not finish ({})", state_words(&s.state)),
                    "clone again from the start (phases 1 or all, with force), or remove it",
                ));
            }
            SimJob::Resume { system: s.name.clone(), disks: s.disks.clone() }
        } else {
            SimJob::New { plan: w.plan(o)? }
        };
        Ok(Box::new(SimWork { world: self.world.clone(), job, opts: o.clone(), mount_at: mount_at.to_path_buf() }))
    }

    fn wake(&self, disk: &str, at: &Path) -> Result<String> {
        let mut w = self.world();
        let d = w.disk(disk)?.clone();
        if d.running() {
            return Err(Error::refused(
                &d.name,
                "it is the running system, which cannot be woken",
                "choose an alternate system",
            ));
        }
        let at_s = at.display().to_string();
        if w.systems.iter().any(|s| s.awake_at == at_s) {
            return Err(Error::refused(&at_s, "another alternate system is awake there", "put it to sleep first"));
        }
        let s = w.systems.iter_mut().find(|s| s.disks.contains(&d.name)).ok_or_else(|| {
            Error::not_found(format!("altdisk system on {}", d.name), "the disk has no altdisk record", "see Disks")
        })?;
        if !s.awake_at.is_empty() {
            return Err(Error::refused(
                format!("{} on {}", s.name, s.disks.join(" ")),
                format!("it is already mounted at {}", s.awake_at),
                "put it to sleep first",
            ));
        }
        s.awake_at = at_s.clone();
        w.generation += 1;
        Ok(at_s)
    }

    fn sleep(&self, mount_point: &str) -> Result<()> {
        let mut w = self.world();
        let s = w.systems.iter_mut().find(|s| s.awake_at == mount_point).ok_or_else(|| {
            Error::not_found(
                format!("alternate system at {mount_point}"),
                "nothing is mounted there",
                "nothing to do; see Systems for where each is awake",
            )
        })?;
        s.awake_at.clear();
        w.generation += 1;
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<()> {
        let ids: Vec<String> = {
            let w = self.world();
            w.systems.iter().filter(|s| s.name == name && !s.former).map(|s| s.id.clone()).collect()
        };
        if ids.is_empty() {
            return Err(Error::not_found(
                format!("alternate system {name}"),
                "no disk holds one by that name",
                "see Disks",
            ));
        }
        for id in ids {
            self.remove_id(&id)?;
        }
        Ok(())
    }

    fn remove_system(&self, disk: &str) -> Result<()> {
        let id = {
            let w = self.world();
            let d = w.disk(disk)?;
            w.system_on(&d.name).map(|s| s.id.clone()).ok_or_else(|| {
                Error::not_found(format!("altdisk system on {}", d.name), "the disk has no altdisk record", "see Disks")
            })?
        };
        self.remove_id(&id)
    }

    fn rename(&self, disk: &str, new_name: &str) -> Result<()> {
        let ok = !new_name.is_empty()
            && new_name.len() <= 32
            && new_name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok || new_name == "rootvg" {
            return Err(Error::usage(
                format!("name `{new_name}`"),
                "names are 1 to 32 letters, digits, `_`, `.` or `-`, and rootvg belongs to the running system",
                "choose another name",
            ));
        }
        let mut w = self.world();
        let d = w.disk(disk)?.clone();
        let s = w.systems.iter_mut().find(|s| s.disks.contains(&d.name)).ok_or_else(|| {
            Error::not_found(format!("altdisk system on {}", d.name), "the disk has no altdisk record", "see Disks")
        })?;
        s.name = new_name.into();
        // Changed here: the file no longer describes it.
        s.made = true;
        let disks = s.disks.clone();
        w.changed(&disks);
        Ok(())
    }

    fn find_systems(&self, _busy: &[DevKey]) -> Result<Vec<FoundSystem>> {
        Ok(self.world().found())
    }

    fn restore(&self, disk: &str, once: bool) -> Result<String> {
        let mut w = self.world();
        let f = w.found_on(disk)?;
        refuse_running(&f)?;
        refuse_unbootable(&f)?;
        w.place(&f, once)
    }

    fn boot_now(&self, disk: &str, kexec: bool) -> Result<String> {
        let mut w = self.world();
        let f = w.found_on(disk)?;
        refuse_running(&f)?;
        refuse_unbootable(&f)?;
        if !kexec && w.firmware == api::firmware::UEFI {
            let line = w.place(&f, true)?;
            return Ok(format!("{line}; rebooting (simulated: the machine keeps running)"));
        }
        let kernel = f.kernels.last().cloned().unwrap_or_default();
        Ok(format!("booting {} ({kernel}) with kexec (simulated: the machine keeps running)", f.name))
    }

    fn prepare_repair(&self, disk: &str, mount_at: &Path) -> Result<(Writes, Box<dyn Work>)> {
        let w = self.world();
        let f = w.found_on(disk)?;
        refuse_running(&f)?;
        if f.kernels.is_empty() {
            return Err(Error::refused(
                format!("{} on {}", f.name, f.disks.join(" ")),
                format!("it has no kernel under /boot with modules in /lib/modules ({}), so it cannot boot", f.state),
                "install a kernel package in it, or clone a complete system again",
            ));
        }
        let keys = f.disks.iter().map(|n| (n.clone(), vec![DevKey::Sim(n.clone())])).collect();
        Ok((keys, Box::new(SimRepair { world: self.world.clone(), found: f, mount_at: mount_at.to_path_buf() })))
    }

    fn recover(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn fingerprint(&self) -> u64 {
        self.world().generation
    }
}

impl SimEngine {
    fn remove_id(&self, id: &str) -> Result<()> {
        let mut w = self.world();
        let s = w
            .systems
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| Error::not_found(id, "it vanished", "see Systems"))?;
        let what = format!("{} on {}", s.name, s.disks.join(" "));
        if w.disks.iter().any(|d| s.disks.contains(&d.name) && d.running()) {
            return Err(Error::refused(
                &what,
                "it is the running system, which cannot be removed",
                "boot the other system first",
            ));
        }
        if !s.awake_at.is_empty() {
            return Err(Error::refused(&what, format!("it is mounted at {}", s.awake_at), "put it to sleep first"));
        }
        w.systems.retain(|x| x.id != id);
        w.entries.retain(|e| !s.disks.contains(&e.disk));
        w.entries_touched = true;
        for d in w.disks.iter_mut().filter(|d| s.disks.contains(&d.name)) {
            d.parts.clear();
        }
        w.changed(&s.disks);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../docs/sim-sample.toml");

    fn engine(text: &str) -> (SimEngine, PathBuf) {
        let dir = std::env::temp_dir().join(format!("altdisk-sim-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("sim.toml");
        std::fs::write(&f, text).unwrap();
        (SimEngine::new(&f).unwrap(), dir)
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::SeqCst)
    }

    #[test]
    fn the_sample_describes_every_role() {
        let (e, dir) = engine(SAMPLE);
        let kinds: HashSet<String> = e.disk_details(&[]).unwrap().into_iter().map(|d| d.kind).collect();
        for k in [kind::RUNNING, kind::FORMER, kind::ALTERNATE, kind::FREE, kind::IN_USE, kind::HOLDS_DATA] {
            assert!(kinds.contains(k), "the sample has no {k} disk: {kinds:?}");
        }
        let running = e.disk_details(&[]).unwrap().into_iter().find(|d| d.kind == kind::RUNNING).unwrap();
        assert!(!running.usable && !running.erasable);
        assert!(running.holds.iter().any(|h| h.contains("Debian")), "{:?}", running.holds);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn refuses_what_the_real_checks_refuse() {
        let (e, dir) = engine(SAMPLE);
        let err = |t: &str, force: bool| {
            let mut o = CloneOptions::new([t]);
            o.force = force;
            e.plan(&o, Path::new("/x")).unwrap_err()
        };
        assert!(matches!(err("nvme0n1", true), Error::Refused { .. }));
        assert!(matches!(err("sdc", false), Error::Refused { .. }));
        assert!(matches!(err("nosuch", false), Error::NotFound { .. }));
        let mut o = CloneOptions::new(["sdc"]);
        o.force = true;
        assert!(e.plan(&o, Path::new("/x")).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn manage_and_boot_list_change_the_machine() {
        let (e, dir) = engine(SAMPLE);
        // Wake, sleep.
        let at = e.wake("sdb", Path::new("/run/altdisk/mnt/awake")).unwrap();
        let card = |n: &str| e.disk_details(&[]).unwrap().into_iter().find(|d| d.name == n).unwrap();
        assert!(card("sdb").detail.contains("mounted at /run/altdisk/mnt/awake") && !card("sdb").erasable);
        assert!(matches!(e.wake("nvme0n1", Path::new("/x")), Err(Error::Refused { .. })));
        assert!(matches!(e.remove_system("sdb"), Err(Error::Refused { .. })), "awake systems stay");
        e.sleep(&at).unwrap();
        assert!(matches!(e.sleep(&at), Err(Error::NotFound { .. })));
        // Rename, kept when the file is read again.
        e.rename("sdb", "test_rootvg").unwrap();
        assert!(matches!(e.rename("sdb", "bad name"), Err(Error::Usage { .. })));
        std::fs::write(dir.join("sim.toml"), format!("{SAMPLE}\n# touched\n")).unwrap();
        let sys = e.systems().unwrap();
        assert!(sys.iter().any(|s| s.name == "test_rootvg" && s.disks == vec!["sdb"]), "{sys:?}");
        // Boot list: trial boot, boot next, reorder.
        e.trial_boot("sdb").unwrap();
        let list = e.boot_list().unwrap();
        assert!(list.iter().any(|b| b.disk == "sdb" && b.next && b.system == "test_rootvg"), "{list:?}");
        assert!(e.systems().unwrap().iter().any(|s| s.name == "test_rootvg" && s.trial));
        e.set_boot_list(&["sdb".into()]).unwrap();
        assert_eq!(e.boot_list().unwrap()[0].disk, "sdb");
        assert!(matches!(e.set_boot_next("sdd"), Err(Error::NotFound { .. })), "no entry boots sdd");
        // Remove: the disk is free, its entry gone.
        e.remove("test_rootvg").unwrap();
        assert_eq!(card("sdb").kind, kind::FREE);
        assert!(!e.boot_list().unwrap().iter().any(|b| b.disk == "sdb"));
        assert!(matches!(e.remove("test_rootvg"), Err(Error::NotFound { .. })));
        // BIOS: the firmware owns the order.
        std::fs::write(dir.join("sim.toml"), SAMPLE.replace("firmware = \"uefi\"", "firmware = \"bios\"")).unwrap();
        assert_eq!(e.firmware(), api::firmware::BIOS);
        assert!(matches!(e.boot_list(), Err(Error::Unsupported { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rescue_finds_restores_boots_and_repairs() {
        let (e, dir) = engine(&SAMPLE.replace("step_seconds = 0.5", "step_seconds = 0.0"));
        let found = e.find_systems(&[]).unwrap();
        let on = |n: &str| {
            found.iter().find(|f| f.disks == [n]).unwrap_or_else(|| panic!("nothing found on {n}: {found:?}")).clone()
        };
        let (running, former, alternate, other, incomplete) =
            (on("nvme0n1"), on("sda"), on("sdb"), on("sdc"), on("nvme1n1"));
        assert_eq!((running.kind.as_str(), running.name.as_str()), (found_kind::RUNNING, "rootvg"));
        assert_eq!(running.kernels, ["6.1.0-17-amd64", "6.1.0-18-amd64"]);
        assert_eq!((former.kind.as_str(), former.bootable), (found_kind::OLD_ROOTVG, true));
        assert_eq!((alternate.kind.as_str(), alternate.name.as_str()), (found_kind::ALTDISK, "altinst_rootvg"));
        assert_eq!(alternate.state, "complete (bootable)");
        assert_eq!(
            (other.kind.as_str(), other.name.as_str(), other.os.as_str()),
            ("other", "linux", "Ubuntu 22.04.4 LTS")
        );
        assert_eq!((other.root.as_str(), other.bootable), ("/dev/sdc1", true));
        assert!(!incomplete.bootable && incomplete.state.starts_with("incomplete (interrupted"), "{incomplete:?}");
        assert!(incomplete.os.is_empty() && incomplete.kernels.is_empty(), "an incomplete clone is looked into");
        assert_eq!(found.len(), 5, "free, in-use and failing disks hold no system: {found:?}");

        // Restore: refused for the running, the incomplete, a disk with nothing; else the
        // entry is made (the firmware had none for sdc) and put first, or booted once.
        assert!(matches!(e.restore("nvme0n1", false), Err(Error::Refused { .. })));
        assert!(matches!(e.restore("nvme1n1", false), Err(Error::Refused { .. })));
        assert!(matches!(e.restore("sdd", false), Err(Error::NotFound { .. })));
        let said = e.restore("sdc", false).unwrap();
        let made = e.boot_list().unwrap()[0].clone();
        assert_eq!((made.disk.as_str(), made.description.as_str()), ("sdc", "linux on sdc"));
        assert!(!["Boot0001", "Boot0002", "Boot0003", "Boot0004"].contains(&made.number.as_str()), "{made:?}");
        assert_eq!(
            said,
            format!(
                "made {0} (linux on sdc) booting \\EFI\\BOOT\\BOOTX64.EFI (simulated); linux on sdc is first in the UEFI boot order ({0})",
                made.number
            )
        );
        let said = e.restore("sda", true).unwrap();
        assert_eq!(said, "old_rootvg on sda boots next, once (Boot0002)");
        let list = e.boot_list().unwrap();
        assert!(list[0].disk == "sdc" && list.iter().any(|b| b.disk == "sda" && b.next), "{list:?}");
        // Boot now: BootNext (the machine keeps running), or kexec.
        assert!(e.boot_now("sdb", false).unwrap().contains("boots next, once (Boot0003); rebooting"));
        assert!(e.boot_list().unwrap().iter().any(|b| b.disk == "sdb" && b.next));
        assert!(e.boot_now("sdb", true).unwrap().starts_with("booting altinst_rootvg (6.1.0-18-amd64) with kexec"));
        assert!(matches!(e.boot_now("nvme1n1", true), Err(Error::Refused { .. })));

        // Repair: a job on the system's disks; its entry made again and put first.
        assert!(matches!(e.prepare_repair("nvme0n1", Path::new("/x")), Err(Error::Refused { .. })));
        assert!(matches!(e.prepare_repair("nvme1n1", Path::new("/x")), Err(Error::Refused { .. })));
        let (keys, work) = e.prepare_repair("sda", Path::new("/run/altdisk/mnt/job9")).unwrap();
        assert_eq!(keys, vec![("sda".to_string(), vec![DevKey::Sim("sda".into())])]);
        assert_eq!(work.kind(), "repair");
        let job = Job::new();
        work.run(&job).unwrap();
        assert_eq!(job.snapshot().phase, Phase::Done);
        let first = e.boot_list().unwrap()[0].clone();
        assert_eq!((first.disk.as_str(), first.system.as_str()), ("sda", "old_rootvg"));
        // On a disk marked to fail, the repair fails.
        let failing = SAMPLE.replace("step_seconds = 0.5", "step_seconds = 0.0").replace(
            "name = \"sdb\"\nmodel = \"WDC WDS500G2B0A\"",
            "name = \"sdb\"\nfail_at = 10\nmodel = \"WDC WDS500G2B0A\"",
        );
        let (e2, dir2) = engine(&failing);
        let (_, work) = e2.prepare_repair("sdb", Path::new("/x")).unwrap();
        let err = work.run(&Job::new()).unwrap_err();
        assert!(err.to_string().contains("simulated failure"), "{err}");

        // An offline clone of the system on sdc: its root, read from the disk.
        let o = CloneOptions { source_disk: Some("sdc".into()), ..CloneOptions::new(["sdd"]) };
        let plan = e.plan_details(&o, Path::new("/x"), &[]).unwrap();
        assert_eq!(plan.source, "the system on sdc (Ubuntu 22.04.4 LTS)");
        let root = plan.targets[0].after.iter().find(|p| p.mountpoint == "/").unwrap();
        assert_eq!(root.source, "/dev/sdc1");
        for (source, target) in [("sdc", "sdc"), ("nvme0n1", "sdd"), ("nvme1n1", "sdd")] {
            let o = CloneOptions { source_disk: Some(source.into()), force: true, ..CloneOptions::new([target]) };
            assert!(matches!(e.plan(&o, Path::new("/x")), Err(Error::Refused { .. })), "{source} onto {target}");
        }
        let o = CloneOptions { source_disk: Some("sdd".into()), ..CloneOptions::new(["sdf"]) };
        assert!(matches!(e.plan(&o, Path::new("/x")), Err(Error::NotFound { .. })));

        // BIOS: the firmware owns the order; kexec still boots.
        std::fs::write(dir.join("sim.toml"), SAMPLE.replace("firmware = \"uefi\"", "firmware = \"bios\"")).unwrap();
        assert!(matches!(e.restore("sda", false), Err(Error::Unsupported { .. })));
        assert!(e.boot_now("sda", false).unwrap().contains("with kexec"));
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(dir2).unwrap();
    }

    #[test]
    fn a_bad_file_is_one_line() {
        let dir = std::env::temp_dir().join(format!("altdisk-sim-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("sim.toml");
        std::fs::write(&f, "[[disk]]\nname = \"a\"\nsize = \"lots\"\n").unwrap();
        let e = SimEngine::new(&f).err().unwrap();
        assert!(e.to_string().contains("sim file") && e.to_string().contains("lots"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
