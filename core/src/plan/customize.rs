//! What phase 2 is asked to do (AIX `-l -w -b -F -f -I -s -x -R -O -c`), checked before
//! anything is written: paths are absolute and exist, scripts are executable, the package
//! directory holds packages, package names and apt options are well formed.
//! [`crate::write::customize`] carries it out in the clone.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Phase 2 options, AIX flags in brackets.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Customize {
    /// [-l DIR] a directory of .deb (or .rpm) files, or a local apt repository (it has
    /// Packages, Packages.gz or dists/).
    pub images: Option<PathBuf>,
    /// [-w, -F] package names to install from `images` (on Debian, fixes are packages too).
    pub packages: Vec<String>,
    /// [-b FILE, -f FILE] files listing more package names, one per line, `#` comments.
    /// Read by [`Customize::validate`] and again by [`run`]. See [`Customize::bundle`].
    #[serde(default)]
    pub bundles: Vec<PathBuf>,
    /// [-b update_all] upgrade every installed package that `images` holds in a newer version.
    pub update_all: bool,
    /// [-I "flags"] extra options for apt-get (`--no-install-recommends`, `-o Key=Value`).
    pub install_flags: Vec<String>,
    /// [-s] runs on this system after the installs, before the clone is unmounted, with
    /// ALT_ROOT=<clone root> and ALT_DISKS="vdb vdc"; a non-zero exit aborts phase 2.
    pub script: Option<PathBuf>,
    /// [-x] copied into the clone and run once at its first boot ([`first_boot`]).
    pub first_boot: Option<PathBuf>,
    /// [-R] replaces the clone's /etc/resolv.conf (a symlink there is replaced, not followed).
    pub resolv_conf: Option<PathBuf>,
    /// [-O] device reset: the disk will run another machine.
    pub device_reset: bool,
    /// [-c] kernel console of the clone (only with -O), e.g. `ttyS0,115200n8`.
    pub console: Option<String>,
}

impl Customize {
    /// Nothing to do in phase 2.
    pub fn is_empty(&self) -> bool {
        self.images.is_none()
            && self.packages.is_empty()
            && self.bundles.is_empty()
            && !self.update_all
            && self.install_flags.is_empty()
            && self.script.is_none()
            && self.first_boot.is_none()
            && self.resolv_conf.is_none()
            && !self.device_reset
            && self.console.is_none()
    }

    /// Whether packages are to be installed (which needs apt in the clone).
    pub fn wants_packages(&self) -> bool {
        self.images.is_some() || !self.packages.is_empty() || !self.bundles.is_empty() || self.update_all
    }

    /// Take the argument of AIX `-b`: the word `update_all`, or a file listing packages.
    pub fn bundle(&mut self, arg: &str) {
        if arg == "update_all" {
            self.update_all = true;
        } else {
            self.bundles.push(PathBuf::from(arg));
        }
    }

    /// Split a `-w`/`-F` list ("a b", "a,b") into names.
    pub fn split_names(list: &str) -> Vec<String> {
        list.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()).map(String::from).collect()
    }

    /// Split the `-I` string into words.
    pub fn split_flags(flags: &str) -> Vec<String> {
        flags.split_whitespace().map(String::from).collect()
    }

    /// Every package named with -w/-F and in the -b/-f files, in order, without repeats.
    pub fn package_names(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |n: &str| {
            if !out.iter().any(|o| o == n) {
                out.push(n.to_string());
            }
        };
        for p in &self.packages {
            check_package_name(p, "-w")?;
            add(p);
        }
        for b in &self.bundles {
            for n in read_bundle(b)? {
                add(&n);
            }
        }
        Ok(out)
    }

    /// Checks before anything is written (called while planning): paths are absolute and
    /// exist, -s and -x are executable, -l DIR holds packages (or is a repository), the
    /// package options come with -l, -c with -O, bundle files are readable.
    pub fn validate(&self) -> Result<()> {
        let wants_packages =
            !self.packages.is_empty() || !self.bundles.is_empty() || self.update_all || !self.install_flags.is_empty();
        match &self.images {
            None if wants_packages => {
                return Err(Error::usage(
                    "-w, -b, -F, -f and -I",
                    "they name packages to install, which come from the directory given with -l",
                    "add -l DIR with the packages (a directory of .deb files or a local apt repository)",
                ))
            }
            None => {}
            Some(dir) => {
                absolute(dir, "-l")?;
                if !dir.is_dir() {
                    return Err(Error::not_found(
                        format!("package directory {} (-l)", dir.display()),
                        "it does not exist or is not a directory",
                        "give the full path of a directory of .deb files or of a local apt repository",
                    ));
                }
                if source_kind(dir)? == SourceKind::Empty {
                    return Err(Error::usage(
                        format!("-l {}", dir.display()),
                        "it holds no .deb or .rpm packages and is not an apt repository (no Packages file, no dists/)",
                        "put the packages to install in it",
                    ));
                }
                if self.packages.is_empty() && self.bundles.is_empty() && !self.update_all {
                    return Err(Error::usage(
                        format!("-l {}", dir.display()),
                        "nothing is named to install from it",
                        "name packages with -w \"pkg ...\" or -b FILE, or upgrade what is installed with -b update_all",
                    ));
                }
            }
        }
        self.package_names()?;
        check_install_flags(&self.install_flags)?;
        if let Some(s) = &self.script {
            executable(s, "-s", "the customization script")?;
        }
        if let Some(s) = &self.first_boot {
            executable(s, "-x", "the first-boot script")?;
        }
        if let Some(r) = &self.resolv_conf {
            absolute(r, "-R")?;
            regular_file(r, "-R", "the resolv.conf for the clone")?;
            std::fs::read(r).ctx("reading the resolv.conf for the clone (-R)", r)?;
        }
        if let Some(c) = &self.console {
            if !self.device_reset {
                return Err(Error::usage(
                    "-c",
                    "the console is set as part of a device reset",
                    "add -O, or leave -c out",
                ));
            }
            console_name(c)?;
        }
        Ok(())
    }
}

pub(crate) fn absolute(p: &Path, flag: &str) -> Result<()> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(Error::usage(
            format!("{flag} {}", p.display()),
            "it is not a full path",
            format!("give it as a full path, e.g. {}", Path::new("/root").join(p).display()),
        ))
    }
}

pub(crate) fn regular_file(p: &Path, flag: &str, what: &str) -> Result<std::fs::Metadata> {
    match std::fs::metadata(p) {
        Ok(md) if md.is_file() => Ok(md),
        Ok(_) => Err(Error::usage(
            format!("{what} {} ({flag})", p.display()),
            "it is not a regular file",
            "give the full path of a file",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::not_found(format!("{what} {} ({flag})", p.display()), "no such file", "check the path"))
        }
        Err(e) => Err(Error::io(format!("checking {what} ({flag})"), p, e)),
    }
}

pub(crate) fn executable(p: &Path, flag: &str, what: &str) -> Result<()> {
    absolute(p, flag)?;
    let md = regular_file(p, flag, what)?;
    if md.permissions().mode() & 0o111 == 0 || nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_err() {
        return Err(Error::usage(
            format!("{what} {} ({flag})", p.display()),
            "it is not executable",
            format!("make it executable: chmod +x {}", p.display()),
        ));
    }
    Ok(())
}

/// A package name as apt takes it: `name`, `name:arch`, `name=version`, `name/release`.
pub(crate) fn check_package_name(n: &str, flag: &str) -> Result<()> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"^[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+|/[A-Za-z0-9.+~-]+)?$")
            .expect("regex")
    });
    if re.is_match(n) {
        Ok(())
    } else {
        Err(Error::usage(
            format!("package `{n}` ({flag})"),
            "it is not a package name (lowercase letters, digits, + . -, optionally :arch, =version or /release)",
            "name the package as dpkg does, e.g. openssh-server or openssh-server=1:9.2p1-2",
        ))
    }
}

/// Names in a -b/-f file: one per line (several separated by blanks are accepted), `#` comments.
pub(crate) fn read_bundle(p: &Path) -> Result<Vec<String>> {
    absolute(p, "-b/-f")?;
    regular_file(p, "-b/-f", "the package list")?;
    let text = std::fs::read_to_string(p).ctx("reading the package list (-b/-f)", p)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for n in line.split_whitespace() {
            check_package_name(n, &format!("in {}", p.display()))?;
            out.push(n.to_string());
        }
    }
    Ok(out)
}

/// apt-get options take values: `-o Key=Value`, `-t release`, `-c file`.
pub(crate) fn check_install_flags(flags: &[String]) -> Result<()> {
    const WITH_VALUE: &[&str] =
        &["-o", "--option", "-c", "--config-file", "-t", "--target-release", "--default-release"];
    let mut expect_value = false;
    for f in flags {
        if expect_value {
            expect_value = false;
            continue;
        }
        // installp letters come bare (acgX) or, as in installp's own syntax, after one dash
        // (-acgX); apt-get takes its short options one at a time (-q, -y, -oKey=Value).
        let short = f.strip_prefix('-').filter(|r| !r.starts_with('-'));
        let clustered = short.is_some_and(|r| r.len() > 1 && !r.starts_with('o') && r.chars().any(|c| c != 'q'));
        if !f.starts_with('-') || clustered {
            return Err(Error::usage(
                format!("-I \"{}\"", flags.join(" ")),
                format!(
                    "`{f}` is not an apt-get option (AIX installp flags such as acgXY or -acgX have no apt meaning)"
                ),
                "give apt-get options, e.g. -I \"--no-install-recommends -o Dpkg::Options::=--force-confnew\"",
            ));
        }
        expect_value = WITH_VALUE.contains(&f.as_str());
    }
    if expect_value {
        return Err(Error::usage(
            format!("-I \"{}\"", flags.join(" ")),
            "its last option needs a value",
            "add the value, e.g. -o Key=Value",
        ));
    }
    Ok(())
}

/// The console as the kernel names it: `ttyS0,115200n8`; `console=` and `/dev/` are dropped.
pub(crate) fn console_name(c: &str) -> Result<String> {
    let c = c.trim();
    let c = c.strip_prefix("console=").unwrap_or(c);
    let c = c.strip_prefix("/dev/").unwrap_or(c);
    let ok = !c.is_empty()
        && c.chars().next().is_some_and(|ch| ch.is_ascii_alphanumeric())
        && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ",._:-".contains(ch));
    if ok {
        Ok(c.to_string())
    } else {
        Err(Error::usage(
            format!("console `{c}` (-c)"),
            "it is not a kernel console name",
            "give one console such as ttyS0,115200n8, tty0 or hvc0",
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// A flat apt repository: Packages[.gz|.xz] at the top.
    FlatRepo,
    /// An apt repository with dists/<suite>/<component>/binary-<arch>/.
    DistsRepo,
    /// Loose .deb files (below the directory, any depth).
    Debs,
    Rpms,
    Empty,
}

pub(crate) fn source_kind(dir: &Path) -> Result<SourceKind> {
    if ["Packages", "Packages.gz", "Packages.xz"].iter().any(|f| dir.join(f).is_file()) {
        return Ok(SourceKind::FlatRepo);
    }
    if dir.join("dists").is_dir() {
        return Ok(SourceKind::DistsRepo);
    }
    let (debs, rpms) = package_files(dir, true)?;
    Ok(if !debs.is_empty() {
        SourceKind::Debs
    } else if !rpms.is_empty() {
        SourceKind::Rpms
    } else {
        SourceKind::Empty
    })
}

/// .deb and .rpm files below `dir` (paths relative to it), not entering symlinked
/// directories; with `first`, stop at the first package found.
pub(crate) fn package_files(dir: &Path, first: bool) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut debs, mut rpms) = (Vec::new(), Vec::new());
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let rd = std::fs::read_dir(&here).ctx("listing the package directory (-l)", &here)?;
        for e in rd.flatten() {
            let child = rel.join(e.file_name());
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(child);
                continue;
            }
            let name = e.file_name().to_string_lossy().to_ascii_lowercase();
            let is_file = std::fs::metadata(dir.join(&child)).map(|m| m.is_file()).unwrap_or(false);
            if !is_file {
                continue;
            }
            if name.ends_with(".deb") {
                debs.push(child);
            } else if name.ends_with(".rpm") {
                rpms.push(child);
            } else {
                continue;
            }
            if first {
                return Ok((debs, rpms));
            }
        }
    }
    debs.sort();
    rpms.sort();
    Ok((debs, rpms))
}
