//! The options of `Clone`, `Plan` and `PlanDetails`, typed, and their `a{sv}` form. This is
//! the only place an option key is spelled ([`keys`]): the service reads a dictionary with
//! [`CloneOptions::from_dict`], clients write one with [`CloneOptions::to_dict`]. Unknown keys
//! and values of the wrong type are refused, naming the key.
//!
//! The AIX flag each option stands for is in brackets.

use std::collections::HashMap;

use zbus::wire::{OwnedVariant, Variant};

use crate::types::JobPhase;

/// The keys of the options dictionary, one constant each.
pub mod keys {
    /// `as` [-d] target disks (name, path, by-id link, hdiskN alias) or image files. Required.
    pub const TARGETS: &str = "targets";
    /// `s` a mounted system to clone instead of the running one (offline clone).
    pub const SOURCE: &str = "source";
    /// `s` 1.2: a disk holding a system that is not running, to clone (the offline disk swap).
    pub const SOURCE_DISK: &str = "source_disk";
    /// `s` [-P] 1, 2, 3, 12, 23 or all.
    pub const PHASES: &str = "phases";
    /// `s` [-e] full path of an exclude list.
    pub const EXCLUDE: &str = "exclude";
    /// `s` [-i] layout, as TOML text (see `altdisk layout`).
    pub const LAYOUT: &str = "layout";
    /// `b` [-T] ext2/ext3 become ext4.
    pub const CONVERT: &str = "convert";
    /// `b` [-S] go ahead when the targets look too small.
    pub const SKIP_SPACE_CHECK: &str = "skip_space_check";
    /// `b` [-g] skip the bootability checks.
    pub const SKIP_BOOT_CHECKS: &str = "skip_boot_checks";
    /// `b` write targets that hold data.
    pub const FORCE: &str = "force";
    /// `t` size in bytes of an image file target.
    pub const SIZE: &str = "size";
    /// `s` [-B, --trial] first, leave or trial.
    pub const BOOTLIST: &str = "bootlist";
    /// `s` [-l] directory of packages (.deb files or a local apt repository).
    pub const PACKAGES_DIR: &str = "packages_dir";
    /// `as` [-w] packages to install from the packages directory.
    pub const PACKAGES: &str = "packages";
    /// `as` [-F] fixes to install (on Debian, packages too).
    pub const FIXES: &str = "fixes";
    /// `as` [-b] bundle files: package names, one a line.
    pub const BUNDLES: &str = "bundles";
    /// `as` [-f] fix bundle files: package names, one a line.
    pub const FIX_BUNDLES: &str = "fix_bundles";
    /// `b` [-b update_all] upgrade every installed package the directory holds newer.
    pub const UPDATE_ALL: &str = "update_all";
    /// `as` [-I] extra apt-get options.
    pub const INSTALL_FLAGS: &str = "install_flags";
    /// `s` [-s] customisation script, run on this system with ALT_ROOT and ALT_DISKS.
    pub const SCRIPT: &str = "script";
    /// `s` [-x] script run once at the clone's first boot.
    pub const FIRST_BOOT_SCRIPT: &str = "first_boot_script";
    /// `s` [-R] file that replaces the clone's /etc/resolv.conf.
    pub const RESOLV_CONF: &str = "resolv_conf";
    /// `b` [-O] device reset: the disk will run another machine.
    pub const DEVICE_RESET: &str = "device_reset";
    /// `s` [-c] console of the clone (with device_reset).
    pub const CONSOLE: &str = "console";
    /// `b` [--refresh] *1.3* bring the clone on the targets back in line with its source.
    pub const REFRESH: &str = "refresh";
    /// `b` [--checksum] *1.3* with refresh: decide whether a file changed by its bytes.
    pub const CHECKSUM: &str = "checksum";
    /// `s` *1.3* `Verify`: another system (a disk of it, or its name) to compare with.
    pub const AGAINST: &str = "against";

    /// Every key, in the order docs/dbus.md lists them.
    pub const ALL: &[&str] = &[
        TARGETS,
        SOURCE,
        SOURCE_DISK,
        PHASES,
        EXCLUDE,
        LAYOUT,
        CONVERT,
        SKIP_SPACE_CHECK,
        SKIP_BOOT_CHECKS,
        FORCE,
        SIZE,
        BOOTLIST,
        PACKAGES_DIR,
        PACKAGES,
        FIXES,
        BUNDLES,
        FIX_BUNDLES,
        UPDATE_ALL,
        INSTALL_FLAGS,
        SCRIPT,
        FIRST_BOOT_SCRIPT,
        RESOLV_CONF,
        DEVICE_RESET,
        CONSOLE,
        REFRESH,
        CHECKSUM,
    ];

    /// Every key of `Verify`'s options.
    pub const VERIFY: &[&str] = &[SOURCE, AGAINST, EXCLUDE];
}

/// A bad options dictionary; the service answers it with `InvalidArgs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    Unknown { key: String },
    WrongType { key: &'static str, expected: &'static str },
    BadValue { key: &'static str, value: String, allowed: &'static str },
    Missing { key: &'static str, why: &'static str },
    Conflict { what: String, why: String, todo: String },
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionError::Unknown { key } => {
                write!(f, "option `{key}`: no such option; known: {}", keys::ALL.join(", "))
            }
            OptionError::WrongType { key, expected } => {
                write!(f, "option `{key}`: wrong type; give {expected}")
            }
            OptionError::BadValue { key, value, allowed } => {
                write!(f, "option `{key}`: `{value}` is not allowed; use {allowed}")
            }
            OptionError::Missing { key, why } => write!(f, "option `{key}` is required: {why}"),
            OptionError::Conflict { what, why, todo } => write!(f, "{what}: {why}; {todo}"),
        }
    }
}

impl std::error::Error for OptionError {}

/// Which AIX phases run: 1 copy, 2 customise, 3 make bootable. Without phase 1 the work
/// resumes a clone the targets already hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phases {
    P1,
    P2,
    P3,
    P12,
    P23,
    #[default]
    All,
}

impl Phases {
    pub fn as_str(self) -> &'static str {
        match self {
            Phases::P1 => "1",
            Phases::P2 => "2",
            Phases::P3 => "3",
            Phases::P12 => "12",
            Phases::P23 => "23",
            Phases::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<Phases> {
        Some(match s.trim() {
            "1" => Phases::P1,
            "2" => Phases::P2,
            "3" => Phases::P3,
            "12" => Phases::P12,
            "23" => Phases::P23,
            "all" | "123" => Phases::All,
            _ => return None,
        })
    }

    pub fn has(self, n: u8) -> bool {
        match self {
            Phases::P1 => n == 1,
            Phases::P2 => n == 2,
            Phases::P3 => n == 3,
            Phases::P12 => n == 1 || n == 2,
            Phases::P23 => n == 2 || n == 3,
            Phases::All => (1..=3).contains(&n),
        }
    }
}

/// What phase 3 does with the UEFI boot order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BootlistMode {
    /// The clone first in the boot order (AIX default).
    #[default]
    First,
    /// The clone's entry is made; the order is left alone [-B].
    Leave,
    /// Boot the clone once (BootNext); it makes itself permanent when it came up healthy.
    Trial,
}

impl BootlistMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BootlistMode::First => "first",
            BootlistMode::Leave => "leave",
            BootlistMode::Trial => "trial",
        }
    }

    pub fn parse(s: &str) -> Option<BootlistMode> {
        Some(match s {
            "first" => BootlistMode::First,
            "leave" => BootlistMode::Leave,
            "trial" => BootlistMode::Trial,
            _ => return None,
        })
    }
}

/// Phase 2: what is done to the clone before it is made bootable. Paths are full paths on
/// the machine the service runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phase2Options {
    /// [-l] directory of .deb files, or a local apt repository.
    pub packages_dir: Option<String>,
    /// [-w] package names.
    pub packages: Vec<String>,
    /// [-F] fixes (package names on Debian).
    pub fixes: Vec<String>,
    /// [-b FILE] bundle files.
    pub bundles: Vec<String>,
    /// [-f FILE] fix bundle files.
    pub fix_bundles: Vec<String>,
    /// [-b update_all]
    pub update_all: bool,
    /// [-I] extra apt-get options, one word each.
    pub install_flags: Vec<String>,
    /// [-s] customisation script.
    pub script: Option<String>,
    /// [-x] first-boot script.
    pub first_boot_script: Option<String>,
    /// [-R] resolv.conf for the clone.
    pub resolv_conf: Option<String>,
    /// [-O] device reset.
    pub device_reset: bool,
    /// [-c] console, e.g. `ttyS0,115200n8` (with device_reset).
    pub console: Option<String>,
}

impl Phase2Options {
    /// Nothing to do in phase 2.
    pub fn is_empty(&self) -> bool {
        *self == Phase2Options::default()
    }
}

/// The options of a clone (`Clone`, `Plan`, `PlanDetails`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloneOptions {
    /// [-d] the disks (or image files) to clone onto; for phases 2 and 3 alone, the disks of
    /// the clone to resume.
    pub targets: Vec<String>,
    /// A mounted system to clone instead of the running one.
    pub source: Option<String>,
    /// A disk holding a system that is not running, to clone (offline disk swap).
    pub source_disk: Option<String>,
    /// [-P]
    pub phases: Phases,
    /// [-e] full path of an exclude list.
    pub exclude: Option<String>,
    /// [-i] layout TOML text.
    pub layout: Option<String>,
    /// [-T]
    pub convert: bool,
    /// [-S]
    pub skip_space_check: bool,
    /// [-g]
    pub skip_boot_checks: bool,
    /// Write targets that hold data (a partition table, a filesystem, an older clone).
    pub force: bool,
    /// Size of an image file target, in bytes.
    pub size: Option<u64>,
    /// [-B, --trial]
    pub bootlist: BootlistMode,
    /// Phase 2 [-l -w -F -b -f -I -s -x -R -O -c].
    pub phase2: Phase2Options,
    /// [--refresh] bring the clone on the targets back in line with its source (its
    /// identities and boot entry stay; the phases it had run again; `phases` is not used).
    pub refresh: bool,
    /// [--checksum] with `refresh`: a file's data is compared by its bytes.
    pub checksum: bool,
}

/// The options of `Verify` *1.3*: what the clone is compared with (by default the running
/// system).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// A system mounted at this directory.
    pub source: Option<String>,
    /// Another system on disks: a disk of it, or its name.
    pub against: Option<String>,
    /// Full path of the exclude list the clone was made with.
    pub exclude: Option<String>,
}

impl VerifyOptions {
    pub fn from_dict(d: HashMap<String, OwnedVariant>) -> Result<VerifyOptions, OptionError> {
        let mut r = Reader { d };
        let o = VerifyOptions {
            source: r.string(keys::SOURCE)?,
            against: r.string(keys::AGAINST)?,
            exclude: r.string(keys::EXCLUDE)?,
        };
        if let Some(key) = r.d.into_keys().min() {
            return Err(OptionError::Unknown { key });
        }
        if o.source.is_some() && o.against.is_some() {
            return Err(OptionError::Conflict {
                what: "options `source` and `against`".into(),
                why: "they both name what the clone is compared with".into(),
                todo: "give one".into(),
            });
        }
        Ok(o)
    }

    pub fn to_dict(&self) -> HashMap<String, OwnedVariant> {
        let mut w = Writer::default();
        w.string(keys::SOURCE, &self.source);
        w.string(keys::AGAINST, &self.against);
        w.string(keys::EXCLUDE, &self.exclude);
        w.d
    }
}

fn owned(v: Variant<'_>) -> OwnedVariant {
    // Strings, booleans, integers and arrays of strings always make an owned variant; only
    // file descriptors can fail, and options hold none.
    v.try_into_owned().expect("plain values convert")
}

/// Reads typed values out of a dictionary, consuming it, so what is left is unknown.
struct Reader {
    d: HashMap<String, OwnedVariant>,
}

impl Reader {
    fn string(&mut self, key: &'static str) -> Result<Option<String>, OptionError> {
        self.d
            .remove(key)
            .map(|v| String::try_from(v).map_err(|_| OptionError::WrongType { key, expected: "a string (s)" }))
            .transpose()
    }

    fn strings(&mut self, key: &'static str) -> Result<Vec<String>, OptionError> {
        Ok(self
            .d
            .remove(key)
            .map(|v| {
                Vec::<String>::try_from(v)
                    .map_err(|_| OptionError::WrongType { key, expected: "an array of strings (as)" })
            })
            .transpose()?
            .unwrap_or_default())
    }

    fn flag(&mut self, key: &'static str) -> Result<bool, OptionError> {
        Ok(self
            .d
            .remove(key)
            .map(|v| bool::try_from(v).map_err(|_| OptionError::WrongType { key, expected: "a boolean (b)" }))
            .transpose()?
            .unwrap_or(false))
    }

    fn number(&mut self, key: &'static str) -> Result<Option<u64>, OptionError> {
        self.d
            .remove(key)
            .map(|v| {
                u64::try_from(v).map_err(|_| OptionError::WrongType { key, expected: "an unsigned 64-bit number (t)" })
            })
            .transpose()
    }
}

/// Writes the non-default values into a dictionary.
#[derive(Default)]
struct Writer {
    d: HashMap<String, OwnedVariant>,
}

impl Writer {
    fn string(&mut self, key: &str, v: &Option<String>) {
        if let Some(s) = v {
            self.d.insert(key.into(), owned(Variant::from(s.as_str())));
        }
    }

    fn strings(&mut self, key: &str, v: &[String]) {
        if !v.is_empty() {
            self.d.insert(key.into(), owned(Variant::from(v.to_vec())));
        }
    }

    fn flag(&mut self, key: &str, v: bool) {
        if v {
            self.d.insert(key.into(), owned(Variant::from(true)));
        }
    }
}

impl CloneOptions {
    /// Options for cloning onto `targets` with everything else at its default.
    pub fn new(targets: impl IntoIterator<Item = impl Into<String>>) -> CloneOptions {
        CloneOptions { targets: targets.into_iter().map(Into::into).collect(), ..Default::default() }
    }

    /// Read the `a{sv}` form. Unknown keys, wrong types and bad values are errors naming the
    /// key. Checks that need more than one key are in [`CloneOptions::validate`].
    pub fn from_dict(d: HashMap<String, OwnedVariant>) -> Result<CloneOptions, OptionError> {
        use keys::*;
        let mut r = Reader { d };
        let phases = match r.string(PHASES)? {
            None => Phases::All,
            Some(s) => Phases::parse(&s).ok_or(OptionError::BadValue {
                key: PHASES,
                value: s,
                allowed: "1, 2, 3, 12, 23 or all",
            })?,
        };
        let bootlist = match r.string(BOOTLIST)? {
            None => BootlistMode::First,
            Some(s) => BootlistMode::parse(&s).ok_or(OptionError::BadValue {
                key: BOOTLIST,
                value: s,
                allowed: "first, leave or trial",
            })?,
        };
        let o = CloneOptions {
            targets: r.strings(TARGETS)?,
            source: r.string(SOURCE)?,
            source_disk: r.string(SOURCE_DISK)?,
            phases,
            exclude: r.string(EXCLUDE)?,
            layout: r.string(LAYOUT)?,
            convert: r.flag(CONVERT)?,
            skip_space_check: r.flag(SKIP_SPACE_CHECK)?,
            skip_boot_checks: r.flag(SKIP_BOOT_CHECKS)?,
            force: r.flag(FORCE)?,
            size: r.number(SIZE)?,
            bootlist,
            phase2: Phase2Options {
                packages_dir: r.string(PACKAGES_DIR)?,
                packages: r.strings(PACKAGES)?,
                fixes: r.strings(FIXES)?,
                bundles: r.strings(BUNDLES)?,
                fix_bundles: r.strings(FIX_BUNDLES)?,
                update_all: r.flag(UPDATE_ALL)?,
                install_flags: r.strings(INSTALL_FLAGS)?,
                script: r.string(SCRIPT)?,
                first_boot_script: r.string(FIRST_BOOT_SCRIPT)?,
                resolv_conf: r.string(RESOLV_CONF)?,
                device_reset: r.flag(DEVICE_RESET)?,
                console: r.string(CONSOLE)?,
            },
            refresh: r.flag(REFRESH)?,
            checksum: r.flag(CHECKSUM)?,
        };
        let mut left: Vec<String> = r.d.into_keys().collect();
        left.sort();
        match left.into_iter().next() {
            Some(key) => Err(OptionError::Unknown { key }),
            None => Ok(o),
        }
    }

    /// The `a{sv}` form: every value that differs from its default, and the phases and boot
    /// list mode always.
    pub fn to_dict(&self) -> HashMap<String, OwnedVariant> {
        use keys::*;
        let mut w = Writer::default();
        w.strings(TARGETS, &self.targets);
        w.string(SOURCE, &self.source);
        w.string(SOURCE_DISK, &self.source_disk);
        w.string(PHASES, &Some(self.phases.as_str().into()));
        w.string(EXCLUDE, &self.exclude);
        w.string(LAYOUT, &self.layout);
        w.flag(CONVERT, self.convert);
        w.flag(SKIP_SPACE_CHECK, self.skip_space_check);
        w.flag(SKIP_BOOT_CHECKS, self.skip_boot_checks);
        w.flag(FORCE, self.force);
        if let Some(n) = self.size {
            w.d.insert(SIZE.into(), owned(Variant::from(n)));
        }
        w.string(BOOTLIST, &Some(self.bootlist.as_str().into()));
        let p = &self.phase2;
        w.string(PACKAGES_DIR, &p.packages_dir);
        w.strings(PACKAGES, &p.packages);
        w.strings(FIXES, &p.fixes);
        w.strings(BUNDLES, &p.bundles);
        w.strings(FIX_BUNDLES, &p.fix_bundles);
        w.flag(UPDATE_ALL, p.update_all);
        w.strings(INSTALL_FLAGS, &p.install_flags);
        w.string(SCRIPT, &p.script);
        w.string(FIRST_BOOT_SCRIPT, &p.first_boot_script);
        w.string(RESOLV_CONF, &p.resolv_conf);
        w.flag(DEVICE_RESET, p.device_reset);
        w.string(CONSOLE, &p.console);
        w.flag(REFRESH, self.refresh);
        w.flag(CHECKSUM, self.checksum);
        w.d
    }

    /// Checks across keys, the same the command line makes: targets are named, phase 2
    /// options come with phase 2, a console with the device reset.
    pub fn validate(&self) -> Result<(), OptionError> {
        if self.targets.is_empty() {
            return Err(OptionError::Missing { key: keys::TARGETS, why: "name the disks to clone onto" });
        }
        if !self.phase2.is_empty() && !self.phases.has(2) {
            return Err(OptionError::Conflict {
                what: "phase 2 options".into(),
                why: format!("they customise the clone in phase 2, which phases `{}` leave out", self.phases.as_str()),
                todo: "add phase 2 (phases 12, 23 or all), or drop them".into(),
            });
        }
        if self.checksum && !self.refresh {
            return Err(OptionError::Conflict {
                what: format!("option `{}`", keys::CHECKSUM),
                why: "it says how a refresh compares files".into(),
                todo: format!("set `{}` too, or drop it", keys::REFRESH),
            });
        }
        if self.refresh
            && (self.layout.is_some()
                || self.convert
                || self.size.is_some()
                || self.force
                || self.source_disk.is_some())
        {
            return Err(OptionError::Conflict {
                what: format!("option `{}`", keys::REFRESH),
                why: "a refresh keeps the clone's layout and disks (layout, convert, size, force and source_disk make a new one)"
                    .into(),
                todo: "drop those options, or make a new clone".into(),
            });
        }
        if self.phase2.console.is_some() && !self.phase2.device_reset {
            return Err(OptionError::Conflict {
                what: format!("option `{}`", keys::CONSOLE),
                why: "the console is set as part of the device reset".into(),
                todo: format!("set `{}` too, or drop the console", keys::DEVICE_RESET),
            });
        }
        Ok(())
    }

    /// Whether this resumes a clone the targets hold (no phase 1).
    pub fn resumes(&self) -> bool {
        !self.refresh && !self.phases.has(1)
    }

    /// Whether this works on a clone the targets hold (a resume or a refresh): on all its
    /// disks, named or not.
    pub fn existing(&self) -> bool {
        self.refresh || self.resumes()
    }

    /// The steps a job with these options goes through, in order, as its `Phase` property
    /// names them (a step may be skipped when there is nothing to do in it).
    pub fn steps(&self) -> Vec<JobPhase> {
        let mut v = vec![JobPhase::Validating];
        if self.refresh {
            // The phases the clone had: phase 3 may or may not come; it is listed.
            v.extend([JobPhase::Copying, JobPhase::FixingIdentities]);
            if !self.phase2.is_empty() {
                v.push(JobPhase::Customizing);
            }
            v.extend([JobPhase::MakingBootable, JobPhase::CleaningUp, JobPhase::Done]);
            return v;
        }
        if self.phases.has(1) {
            v.extend([
                JobPhase::Partitioning,
                JobPhase::MakingFilesystems,
                JobPhase::Copying,
                JobPhase::FixingIdentities,
            ]);
        }
        if self.phases.has(2) && !self.phase2.is_empty() {
            v.push(JobPhase::Customizing);
        }
        if self.phases.has(3) {
            v.push(JobPhase::MakingBootable);
        }
        v.extend([JobPhase::CleaningUp, JobPhase::Done]);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options with every key set to something other than its default.
    fn everything() -> CloneOptions {
        CloneOptions {
            targets: vec!["sdb".into(), "/var/tmp/x.img".into()],
            source: Some("/mnt/sys".into()),
            source_disk: Some("vdc".into()),
            phases: Phases::P12,
            exclude: Some("/etc/exclude.rootvg".into()),
            layout: Some("[[swap]]\nsize = \"1G\"\n".into()),
            convert: true,
            skip_space_check: true,
            skip_boot_checks: true,
            force: true,
            size: Some(8 << 30),
            bootlist: BootlistMode::Trial,
            phase2: Phase2Options {
                packages_dir: Some("/srv/debs".into()),
                packages: vec!["htop".into(), "tmux".into()],
                fixes: vec!["openssl".into()],
                bundles: vec!["/srv/bundle".into()],
                fix_bundles: vec!["/srv/fixes".into()],
                update_all: true,
                install_flags: vec!["--no-install-recommends".into()],
                script: Some("/root/custom.sh".into()),
                first_boot_script: Some("/root/first.sh".into()),
                resolv_conf: Some("/root/resolv.conf".into()),
                device_reset: true,
                console: Some("ttyS0,115200n8".into()),
            },
            refresh: true,
            checksum: true,
        }
    }

    #[test]
    fn every_key_round_trips() {
        let o = everything();
        let d = o.to_dict();
        let mut written: Vec<&str> = d.keys().map(String::as_str).collect();
        written.sort();
        let mut all = keys::ALL.to_vec();
        all.sort();
        assert_eq!(written, all, "to_dict writes every key when every option is set");
        assert_eq!(CloneOptions::from_dict(d.clone()).unwrap(), o);
        // And the dictionary survives the trip through the typed form.
        assert_eq!(CloneOptions::from_dict(d.clone()).unwrap().to_dict(), d);
    }

    #[test]
    fn each_key_alone_round_trips() {
        // One option at a time, so a key read into the wrong field cannot hide behind another.
        let full = everything();
        let full_dict = full.to_dict();
        for key in keys::ALL {
            let mut d = CloneOptions::default().to_dict();
            d.insert(key.to_string(), full_dict[*key].clone());
            let o = CloneOptions::from_dict(d.clone()).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(o.to_dict(), d, "{key}");
            assert_ne!(o, CloneOptions::default(), "{key} was read");
        }
    }

    #[test]
    fn defaults_are_empty_but_name_phases_and_bootlist() {
        let d = CloneOptions::default().to_dict();
        let mut k: Vec<&str> = d.keys().map(String::as_str).collect();
        k.sort();
        assert_eq!(k, vec![keys::BOOTLIST, keys::PHASES]);
        assert_eq!(CloneOptions::from_dict(HashMap::new()).unwrap(), CloneOptions::default());
    }

    #[test]
    fn bad_dictionaries_name_the_key() {
        let mut d = CloneOptions::new(["sdb"]).to_dict();
        d.insert("targetz".into(), owned(Variant::from("sdb")));
        let e = CloneOptions::from_dict(d).unwrap_err();
        assert_eq!(e, OptionError::Unknown { key: "targetz".into() });
        assert!(e.to_string().contains("known: targets, source"), "{e}");

        let mut d = HashMap::new();
        d.insert(keys::FORCE.to_string(), owned(Variant::from("yes")));
        assert_eq!(
            CloneOptions::from_dict(d).unwrap_err(),
            OptionError::WrongType { key: keys::FORCE, expected: "a boolean (b)" }
        );
        let mut d = HashMap::new();
        d.insert(keys::TARGETS.to_string(), owned(Variant::from("sdb")));
        assert!(matches!(CloneOptions::from_dict(d), Err(OptionError::WrongType { key: "targets", .. })));
        let mut d = HashMap::new();
        d.insert(keys::SIZE.to_string(), owned(Variant::from(5i32)));
        assert!(matches!(CloneOptions::from_dict(d), Err(OptionError::WrongType { key: "size", .. })));
        let mut d = HashMap::new();
        d.insert(keys::PHASES.to_string(), owned(Variant::from("13")));
        assert!(matches!(CloneOptions::from_dict(d), Err(OptionError::BadValue { key: "phases", .. })));
        let mut d = HashMap::new();
        d.insert(keys::BOOTLIST.to_string(), owned(Variant::from("last")));
        assert!(matches!(CloneOptions::from_dict(d), Err(OptionError::BadValue { key: "bootlist", .. })));
    }

    #[test]
    fn validate_checks_across_keys() {
        assert!(matches!(CloneOptions::default().validate(), Err(OptionError::Missing { key: "targets", .. })));
        let mut o = CloneOptions::new(["sdb"]);
        assert!(o.validate().is_ok());
        o.phases = Phases::P1;
        o.phase2.packages = vec!["htop".into()];
        assert!(matches!(o.validate(), Err(OptionError::Conflict { .. })));
        o.phases = Phases::P12;
        assert!(o.validate().is_ok());
        o.phase2.console = Some("ttyS0".into());
        assert!(o.validate().is_err());
        o.phase2.device_reset = true;
        assert!(o.validate().is_ok());
    }

    #[test]
    fn refresh_and_verify_options() {
        let mut o = CloneOptions::new(["sdb"]);
        o.checksum = true;
        assert!(matches!(o.validate(), Err(OptionError::Conflict { .. })), "checksum needs refresh");
        o.refresh = true;
        assert!(o.validate().is_ok());
        assert!(o.existing() && !o.resumes());
        assert_eq!(o.steps()[1], JobPhase::Copying);
        o.force = true;
        assert!(matches!(o.validate(), Err(OptionError::Conflict { .. })), "refresh keeps the layout");
        let v = VerifyOptions { against: Some("sdc".into()), exclude: Some("/etc/x".into()), source: None };
        assert_eq!(VerifyOptions::from_dict(v.to_dict()).unwrap(), v);
        let mut d = v.to_dict();
        d.insert(keys::SOURCE.into(), owned(Variant::from("/mnt")));
        assert!(matches!(VerifyOptions::from_dict(d), Err(OptionError::Conflict { .. })));
        let mut d = HashMap::new();
        d.insert("targets".to_string(), owned(Variant::from("sdb")));
        assert_eq!(VerifyOptions::from_dict(d).unwrap_err(), OptionError::Unknown { key: "targets".into() });
    }

    #[test]
    fn phases_and_steps() {
        for p in [Phases::P1, Phases::P2, Phases::P3, Phases::P12, Phases::P23, Phases::All] {
            assert_eq!(Phases::parse(p.as_str()), Some(p));
        }
        assert_eq!(Phases::parse("123"), Some(Phases::All));
        let mut o = CloneOptions::new(["sdb"]);
        o.phases = Phases::P23;
        assert!(o.resumes());
        assert_eq!(
            o.steps(),
            vec![JobPhase::Validating, JobPhase::MakingBootable, JobPhase::CleaningUp, JobPhase::Done]
        );
        o.phases = Phases::All;
        assert!(!o.resumes());
        assert!(o.steps().contains(&JobPhase::Copying) && !o.steps().contains(&JobPhase::Customizing));
    }
}
