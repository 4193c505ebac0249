//! Phase 2: customizing a clone mounted at a directory while production keeps running (AIX
//! installs updates into the alternate disk). Owns package installation from a local
//! directory (`-l`, `-w`, `-b`, `-F`, `-f`, `-I`), the customization script run on this
//! system (`-s`), the first-boot script (`-x`), resolv.conf (`-R`), the device reset for a
//! disk that will run another machine (`-O`) and its console (`-c`).
//!
//! Promises:
//! - [`Customize::validate`] checks every option before anything is written.
//! - Every package tool runs chrooted in the clone ([`Cmd::in_root`]); the running system's
//!   package database, files and services are never touched. Packages come only from the
//!   given directory: apt sees one local source and nothing else (no network).
//! - Services are kept from starting in the clone: `/usr/sbin/policy-rc.d` answers 101 for
//!   the duration and is restored (or removed) afterwards, also on failure.
//! - No write follows a symlink out of the clone: paths inside it are resolved as the clone
//!   would resolve them, and files such as resolv.conf are replaced, never written through.
//! - The first-boot script runs exactly once: its pending marker is removed before it runs.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::cmd::{Cmd, Output};
use crate::error::{Error, IoContext, Result};
use crate::job::{Job, Phase};
pub use crate::plan::customize::Customize;
use crate::plan::customize::{console_name, package_files, source_kind, SourceKind};

/// Where the first-boot state lives in a system.
const FIRSTBOOT_DIR: &str = "var/lib/altdisk/firstboot";
const FIRSTBOOT_LOG: &str = "var/log/altdisk/firstboot.log";
/// The local package source inside the clone, for the duration of the installs.
const REPO_DIR: &str = "var/cache/altdisk-pkgs";
const POLICY_RC_D: &str =
    "#!/bin/sh\n# altdisk: no service starts while packages are installed into a clone\nexit 101\n";
/// Suffix of network configuration disabled by the device reset.
const DISABLED: &str = ".altdisk-disabled";

/* ---------------------------------------------------------------------------------------- */
/* Paths inside the clone                                                                   */
/* ---------------------------------------------------------------------------------------- */

/// `rel` inside the system at `root`, with symlinks resolved as that system sees them (an
/// absolute link target starts again at `root`, `..` stops at it), so nothing escapes into
/// the running system. The last component is followed only when `follow_last`.
pub(crate) fn resolve_in(root: &Path, rel: impl AsRef<Path>, follow_last: bool) -> Result<PathBuf> {
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = std::collections::VecDeque::new();
    let push_all = |todo: &mut std::collections::VecDeque<std::ffi::OsString>, p: &Path, front: bool| {
        let comps: Vec<std::ffi::OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        if front {
            for c in comps.into_iter().rev() {
                todo.push_front(c);
            }
        } else {
            todo.extend(comps);
        }
    };
    push_all(&mut todo, rel.as_ref(), false);
    let mut done: Vec<std::ffi::OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        done.push(c);
        if todo.is_empty() && !follow_last {
            break;
        }
        let here: PathBuf = done.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        match std::fs::symlink_metadata(&here) {
            Ok(md) if md.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(Error::corrupt(
                        format!("{} in the clone", rel.as_ref().display()),
                        "too many levels of symbolic links",
                    ));
                }
                let target = std::fs::read_link(&here).ctx("reading a symlink in the clone", &here)?;
                done.pop();
                if target.is_absolute() {
                    done.clear();
                }
                push_all(&mut todo, &target, true);
            }
            _ => {}
        }
    }
    Ok(done.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// Replace the directory entry `path` (a file or a symlink, never followed) with a regular
/// file holding `data`: written to a temporary name beside it, synced, renamed over it.
fn replace_file(path: &Path, data: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.altdisk-tmp"));
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if let Some((u, g)) = owner {
            std::os::unix::fs::fchown(&f, Some(u), Some(g))?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("writing into the clone", path, e)
    })
}

/// Rewrite a file of the clone (following its links inside the clone), keeping its mode and
/// owner. Returns false when `edit` left it unchanged (nothing is written).
fn edit_file(root: &Path, rel: &str, edit: impl FnOnce(&str) -> String) -> Result<Option<bool>> {
    let p = resolve_in(root, rel, true)?;
    let md = match std::fs::metadata(&p) {
        Ok(md) if md.is_file() => md,
        _ => return Ok(None),
    };
    let text = std::fs::read_to_string(&p).ctx("reading a file of the clone", &p)?;
    let new = edit(&text);
    if new == text {
        return Ok(Some(false));
    }
    replace_file(&p, new.as_bytes(), md.permissions().mode() & 0o7777, Some((md.uid(), md.gid())))?;
    Ok(Some(true))
}

fn exists_in(root: &Path, rel: &str) -> bool {
    resolve_in(root, rel, true).map(|p| p.exists()).unwrap_or(false)
}

fn has_tool(root: &Path, tool: &str) -> bool {
    ["usr/sbin", "usr/bin", "sbin", "bin"].iter().any(|d| exists_in(root, &format!("{d}/{tool}")))
}

/* ---------------------------------------------------------------------------------------- */
/* Packages                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/// `Key: value` stanzas (Packages, dpkg status, dpkg-deb -f output); continuation lines are
/// kept with their field.
fn stanzas(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
        } else if line.starts_with([' ', '\t']) {
            if let Some(k) = &last {
                if let Some(v) = cur.get_mut(k) {
                    v.push('\n');
                    v.push_str(line);
                }
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.insert(k.trim().to_string(), v.trim().to_string());
            last = Some(k.trim().to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Installed packages of the clone: "name:arch" -> version.
fn installed(root: &Path) -> Result<BTreeMap<String, String>> {
    let out = Cmd::in_root("listing the clone's installed packages", root, "dpkg-query")?
        .args(["-W", "-f", "${Package}\t${Architecture}\t${Version}\t${db:Status-Abbrev}\n"])
        .run()?;
    Ok(parse_installed(&out.stdout))
}

fn parse_installed(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            // Status-Abbrev: desired, current, error; current `i` is installed.
            (f.len() >= 4 && f[3].chars().nth(1) == Some('i')).then(|| (format!("{}:{}", f[0], f[1]), f[2].to_string()))
        })
        .collect()
}

/// Installed packages (`name:arch` -> version) of which the local source (`apt-cache
/// dumpavail` output) has another version: the names to hand to `apt-get install
/// --only-upgrade`, which takes only newer versions and installs nothing new.
fn upgrade_candidates(avail: &str, installed: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in stanzas(avail) {
        let (Some(name), Some(arch), Some(ver)) = (s.get("Package"), s.get("Architecture"), s.get("Version")) else {
            continue;
        };
        for (k, v) in installed {
            let Some((n, a)) = k.split_once(':') else { continue };
            if n == name && (a == arch || arch == "all" || a == "all") && v != ver {
                out.push(if arch == "all" || a == "all" { name.clone() } else { k.clone() });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The policy-rc.d of the clone, answering 101 ("action forbidden") while packages are
/// installed, so no maintainer script starts a service; the clone's own one (if any) is
/// kept aside and put back by [`PolicyGuard::restore`], or by Drop on failure.
struct PolicyGuard {
    path: PathBuf,
    saved: PathBuf,
    active: bool,
}

impl PolicyGuard {
    fn install(root: &Path) -> Result<PolicyGuard> {
        let dir = resolve_in(root, "usr/sbin", true)?;
        let path = dir.join("policy-rc.d");
        let saved = dir.join("policy-rc.d.altdisk-saved");
        let ours = |p: &Path| std::fs::read(p).map(|b| b == POLICY_RC_D.as_bytes()).unwrap_or(false);
        let present = |p: &Path| std::fs::symlink_metadata(p).is_ok();
        if present(&saved) {
            // A run that was killed left the clone's own policy aside: it is the one to restore.
            if present(&path) && !ours(&path) {
                return Err(Error::corrupt(
                    format!("{} in the clone", path.display()),
                    format!(
                        "both it and {} exist; restore the one the system should keep and remove the other",
                        saved.display()
                    ),
                ));
            }
        } else if present(&path) {
            std::fs::rename(&path, &saved).ctx("setting the clone's policy-rc.d aside", &path)?;
        }
        let guard = PolicyGuard { path, saved, active: true };
        replace_file(&guard.path, POLICY_RC_D.as_bytes(), 0o755, None)?;
        Ok(guard)
    }

    fn undo(&mut self) -> Result<()> {
        self.active = false;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing altdisk's policy-rc.d from the clone", &self.path, e)),
        }
        if std::fs::symlink_metadata(&self.saved).is_ok() {
            std::fs::rename(&self.saved, &self.path).ctx("restoring the clone's policy-rc.d", &self.saved)?;
        }
        Ok(())
    }

    fn restore(mut self) -> Result<()> {
        self.undo()
    }
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        if self.active {
            if let Err(e) = self.undo() {
                tracing::error!("{e}");
            }
        }
    }
}

/// The local package source inside the clone: /var/cache/altdisk-pkgs with the user's
/// directory bound read-only below it (never copied, never written), the index altdisk
/// wrote for loose .deb files, a sources.list naming only it, and apt's lists for it.
/// Dropping it unmounts the directory and removes the rest.
struct LocalRepo {
    base: PathBuf,
    /// The user's directory is bound at base/pool.
    mounted: bool,
}

impl LocalRepo {
    fn create(root: &Path) -> Result<LocalRepo> {
        let base = resolve_in(root, REPO_DIR, false)?;
        // Left by a run that was killed: unmount and remove it first.
        LocalRepo { base: base.clone(), mounted: false }.cleanup()?;
        for d in ["", "pool", "lists/partial", "sources.list.d"] {
            let p = base.join(d);
            std::fs::create_dir_all(&p).ctx("making the local package source in the clone", &p)?;
        }
        Ok(LocalRepo { base, mounted: false })
    }

    fn bind(&mut self, dir: &Path) -> Result<()> {
        use nix::mount::{mount, MsFlags};
        let at = self.base.join("pool");
        let none: Option<&str> = None;
        mount(Some(dir), &at, none, MsFlags::MS_BIND, none)
            .ctx(&format!("making {} visible inside the clone", dir.display()), &at)?;
        self.mounted = true;
        mount(none, &at, none, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY, none)
            .ctx("making the package directory read-only inside the clone", &at)?;
        Ok(())
    }

    /// Unmount the user's directory, then remove what altdisk wrote. Never deletes through
    /// the mount: pool/ is removed with rmdir, which fails on anything still in it.
    fn cleanup(&mut self) -> Result<()> {
        let pool = self.base.join("pool");
        if std::fs::symlink_metadata(&self.base).is_err() {
            self.mounted = false;
            return Ok(());
        }
        if self.mounted || is_mount_point(&pool) {
            match crate::write::fs::unmount(&pool) {
                Ok(()) => {}
                // Not mounted (any more).
                Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
            self.mounted = false;
        }
        match std::fs::remove_dir(&pool) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    "removing the local package source from the clone (is the package directory still mounted there? unmount it)",
                    &pool,
                    e,
                ))
            }
        }
        std::fs::remove_dir_all(&self.base).ctx("removing the local package source from the clone", &self.base)
    }
}

impl Drop for LocalRepo {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::error!("{e}");
        }
    }
}

fn is_mount_point(p: &Path) -> bool {
    let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = p.display().to_string().replace(' ', "\\040");
    table.lines().any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// The clone-side path of the local source and of its index.
fn in_clone(rel: &str) -> String {
    format!("/{REPO_DIR}/{rel}")
}

/// apt-get/apt-cache options that make apt see only the local source, keep the clone's own
/// lists and caches as they are, and never ask.
fn apt_options() -> Vec<String> {
    let mut v = Vec::new();
    for o in [
        format!("Dir::Etc::SourceList={}", in_clone("sources.list")),
        format!("Dir::Etc::SourceParts={}", in_clone("sources.list.d")),
        format!("Dir::State::Lists={}", in_clone("lists")),
        "Dir::Cache::pkgcache=".to_string(),
        "Dir::Cache::srcpkgcache=".to_string(),
        // The directory is bound read-only and may not be readable by apt's _apt user.
        "APT::Sandbox::User=root".to_string(),
        "Acquire::Languages=none".to_string(),
        "Acquire::GzipIndexes=false".to_string(),
        "Dpkg::Use-Pty=0".to_string(),
        // Keep the clone's changed configuration files; take new ones where it has none.
        "Dpkg::Options::=--force-confdef".to_string(),
        "Dpkg::Options::=--force-confold".to_string(),
    ] {
        v.push("-o".to_string());
        v.push(o);
    }
    v
}

/// A chrooted apt/dpkg tool with the environment that keeps it quiet and offline.
fn pkg_tool(description: &str, root: &Path, tool: &str) -> Result<Cmd> {
    Ok(Cmd::in_root(description, root, tool)?
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
        .env("APT_LISTCHANGES_FRONTEND", "none")
        .env("UCF_FORCE_CONFFOLD", "1")
        // needrestart would look at the running system's processes (the chroot shares /proc).
        .env("NEEDRESTART_SUSPEND", "1")
        .env("SYSTEMD_OFFLINE", "1"))
}

/// Run an apt command; on failure the error carries apt's own words: the tail of its stderr
/// and the lines of its stdout that explain unmet dependencies.
fn run_apt(cmd: Cmd, description: &str) -> Result<Output> {
    let line = cmd.command_line();
    let (code, out) = cmd.run_code()?;
    if code == 0 {
        return Ok(out);
    }
    let mut why: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| {
            [" : Depends:", " : PreDepends:", " : Breaks:", " : Conflicts:", "Depends:", "Unable to locate"]
                .iter()
                .any(|k| l.contains(k))
        })
        .map(|l| l.trim().to_string())
        .collect();
    let err: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("W: ")).collect();
    why.extend(err[err.len().saturating_sub(3)..].iter().map(|l| l.trim().to_string()));
    why.dedup();
    Err(Error::Command {
        description: description.to_string(),
        command: line,
        status: if code < 0 { "was killed by a signal".into() } else { format!("exited with status {code}") },
        stderr: if why.is_empty() { String::new() } else { format!(": {}", why.join(" | ")) },
    })
}

/// Write the index of loose .deb files (fields from `dpkg-deb -f`, plus Filename, Size and
/// SHA256 which apt needs) and a Release naming it, in the clone's local source.
fn write_index(root: &Path, repo: &LocalRepo, dir: &Path, debs: &[PathBuf], job: &Job) -> Result<()> {
    for d in debs {
        let s = d.to_string_lossy();
        if s.contains(char::is_whitespace) {
            return Err(Error::usage(
                format!("package file {} (-l)", dir.join(d).display()),
                "apt cannot use file names with blanks",
                "rename it",
            ));
        }
        let real = std::fs::canonicalize(dir.join(d)).ctx("reading a package file (-l)", dir.join(d))?;
        let top = std::fs::canonicalize(dir).ctx("reading the package directory (-l)", dir)?;
        if !real.starts_with(&top) {
            return Err(Error::usage(
                format!("package file {} (-l)", dir.join(d).display()),
                format!("it is a link to {}, outside the directory", real.display()),
                "copy the package into the directory",
            ));
        }
    }
    job.info(format!("indexing {} package file(s) from {}", debs.len(), dir.display()));
    let in_pool: Vec<String> = debs.iter().map(|d| format!("pool/{}", d.display())).collect();
    let sums = Cmd::in_root("computing the checksums of the packages", root, "sha256sum")?
        .args(in_pool.iter().map(|p| in_clone(p)))
        .run()?;
    let sums: Vec<&str> = sums.stdout.lines().filter_map(|l| l.split_whitespace().next()).collect();
    if sums.len() != debs.len() {
        return Err(Error::corrupt("sha256sum output", "one checksum per package was expected"));
    }
    let mut index = String::new();
    for (i, rel) in in_pool.iter().enumerate() {
        job.check()?;
        let host = dir.join(&debs[i]);
        let fields = Cmd::in_root(format!("reading the control fields of {}", host.display()), root, "dpkg-deb")?
            .arg("-f")
            .arg(in_clone(rel))
            .run()?;
        let size = std::fs::metadata(&host).ctx("reading a package file (-l)", &host)?.len();
        index.push_str(fields.stdout.trim_end());
        index.push_str(&format!("\nFilename: {rel}\nSize: {size}\nSHA256: {}\n\n", sums[i]));
    }
    let packages = repo.base.join("Packages");
    std::fs::write(&packages, &index).ctx("writing the package index in the clone", &packages)?;
    let sum = Cmd::in_root("computing the checksum of the package index", root, "sha256sum")?
        .arg(in_clone("Packages"))
        .run()?;
    let sum = sum.stdout.split_whitespace().next().unwrap_or("").to_string();
    let release = format!(
        "Origin: altdisk\nLabel: altdisk local packages\nDate: {}\nSHA256:\n {sum} {} Packages\n",
        rfc2822(now()),
        index.len()
    );
    let p = repo.base.join("Release");
    std::fs::write(&p, release).ctx("writing the package index in the clone", &p)?;
    Ok(())
}

/// `deb` lines for a repository with dists/: every suite, with the components it has.
fn dists_sources(dir: &Path, uri: &str) -> Result<Vec<String>> {
    let dists = dir.join("dists");
    let mut lines = Vec::new();
    let mut suites: Vec<_> = std::fs::read_dir(&dists).ctx("reading the repository (-l)", &dists)?.flatten().collect();
    suites.sort_by_key(|e| e.file_name());
    for s in suites {
        if !s.path().is_dir() {
            continue;
        }
        let suite = s.file_name().to_string_lossy().into_owned();
        let mut comps: Vec<String> = std::fs::read_dir(s.path())
            .map(|rd| {
                rd.flatten()
                    .filter(|c| {
                        std::fs::read_dir(c.path())
                            .map(|r| r.flatten().any(|b| b.file_name().to_string_lossy().starts_with("binary-")))
                            .unwrap_or(false)
                    })
                    .map(|c| c.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        comps.sort();
        if !comps.is_empty() {
            lines.push(format!("deb [trusted=yes] {uri} {suite} {}", comps.join(" ")));
        }
    }
    if lines.is_empty() {
        return Err(Error::usage(
            format!("-l {}", dir.display()),
            "its dists/ holds no suite with a component for binary packages",
            "give the top of an apt repository (with dists/<suite>/<component>/binary-<arch>/), or a directory of .deb files",
        ));
    }
    Ok(lines)
}

fn packages(root: &Path, c: &Customize, dir: &Path, job: &Job) -> Result<()> {
    let names = c.package_names()?;
    if !has_tool(root, "dpkg") {
        return if has_tool(root, "rpm") {
            Err(Error::unsupported(
                "installing rpm packages into the clone",
                " yet",
                "install them from a -s script (e.g. dnf --installroot=\"$ALT_ROOT\" install ...) or after booting the clone",
            ))
        } else {
            Err(Error::not_found(
                "a package manager in the clone",
                "it has neither dpkg nor rpm",
                "leave -l out for this system",
            ))
        };
    }
    if !has_tool(root, "apt-get") {
        return Err(Error::not_found(
            "tool `apt-get` in the clone",
            "the clone has dpkg without apt, which is needed to resolve dependencies",
            "install apt in the source system",
        ));
    }
    let kind = source_kind(dir)?;
    let debs = match kind {
        SourceKind::Debs => package_files(dir, false)?.0,
        SourceKind::Rpms => {
            return Err(Error::usage(
                format!("-l {}", dir.display()),
                "it holds rpm packages but the clone installs packages with dpkg",
                "give a directory of .deb packages",
            ))
        }
        SourceKind::Empty => {
            return Err(Error::usage(
                format!("-l {}", dir.display()),
                "it holds no packages",
                "put the .deb files to install in it",
            ))
        }
        _ => Vec::new(),
    };

    job.check()?;
    let policy = PolicyGuard::install(root)?;
    let mut repo = LocalRepo::create(root)?;
    repo.bind(dir)?;
    let source = match kind {
        SourceKind::Debs => {
            write_index(root, &repo, dir, &debs, job)?;
            vec![format!("deb [trusted=yes] file:{} ./", in_clone(""))]
        }
        SourceKind::FlatRepo => vec![format!("deb [trusted=yes] file:{} ./", in_clone("pool"))],
        _ => dists_sources(dir, &format!("file:{}", in_clone("pool")))?,
    };
    let list = repo.base.join("sources.list");
    std::fs::write(&list, source.join("\n") + "\n").ctx("writing the local package source in the clone", &list)?;

    job.check()?;
    job.info(format!("reading the packages in {}", dir.display()));
    let opts = apt_options();
    run_apt(
        pkg_tool("reading the local package index", root, "apt-get")?.args(&opts).args(["-q", "update"]),
        "reading the local package index",
    )?;
    let before = installed(root)?;

    if !names.is_empty() {
        job.check()?;
        job.info(format!("installing {} into the clone", names.join(" ")));
        let d = "installing packages into the clone";
        run_apt(
            pkg_tool(d, root, "apt-get")?
                .args(&opts)
                .args(["-y", "-q", "--no-remove", "install"])
                .args(&c.install_flags)
                .args(&names),
            d,
        )?;
    }
    if c.update_all {
        job.check()?;
        let avail = pkg_tool("listing the packages in the local source", root, "apt-cache")?
            .args(&opts)
            .arg("dumpavail")
            .run()?;
        let upgrade = upgrade_candidates(&avail.stdout, &installed(root)?);
        if upgrade.is_empty() {
            job.info(format!(
                "update_all: {} holds no other version of a package installed in the clone",
                dir.display()
            ));
        } else {
            job.info(format!(
                "update_all: {} holds other versions of {}; apt upgrades those that are newer",
                dir.display(),
                upgrade.join(" ")
            ));
            let d = "upgrading the clone's packages";
            run_apt(
                pkg_tool(d, root, "apt-get")?
                    .args(&opts)
                    .args(["-y", "-q", "--no-remove", "--only-upgrade", "install"])
                    .args(&c.install_flags)
                    .args(&upgrade),
                d,
            )?;
        }
    }
    let after = installed(root)?;
    let mut changes = 0;
    for (k, v) in &after {
        match before.get(k) {
            None => job.info(format!("installed {k} {v}")),
            Some(old) if old != v => job.info(format!("upgraded {k} {old} -> {v}")),
            _ => continue,
        }
        changes += 1;
    }
    if changes == 0 {
        job.info("the clone's packages are already at the versions asked for");
    }
    repo.cleanup()?;
    policy.restore()
}

/* ---------------------------------------------------------------------------------------- */
/* resolv.conf, device reset, console                                                       */
/* ---------------------------------------------------------------------------------------- */

fn resolv_conf(root: &Path, from: &Path, job: &Job) -> Result<()> {
    let data = std::fs::read(from).ctx("reading the resolv.conf for the clone (-R)", from)?;
    let etc = resolve_in(root, "etc", true)?;
    let at = etc.join("resolv.conf");
    match std::fs::symlink_metadata(&at) {
        Ok(md) if md.file_type().is_symlink() => {
            let to = std::fs::read_link(&at).unwrap_or_default();
            job.info(format!(
                "/etc/resolv.conf of the clone was a link to {}: it is now a regular file from {}",
                to.display(),
                from.display()
            ));
        }
        Ok(md) if md.is_file() && std::fs::read(&at).map(|b| b == data).unwrap_or(false) => {
            job.info(format!("/etc/resolv.conf of the clone already matches {}", from.display()));
            return Ok(());
        }
        _ => job.info(format!("/etc/resolv.conf of the clone replaced with {}", from.display())),
    }
    replace_file(&at, &data, 0o644, None)
}

/// Files of the device reset: what was done to each, for the report.
fn device_reset(root: &Path, job: &Job) -> Result<()> {
    // The machine identity: systemd makes a new one at first boot when the file is empty.
    let etc = resolve_in(root, "etc", true)?;
    let mid = etc.join("machine-id");
    if std::fs::symlink_metadata(&mid).is_ok() {
        replace_file(&mid, b"", 0o444, None)?;
        job.info("device reset: /etc/machine-id emptied (systemd makes a new one at first boot)");
    }
    let dbus = resolve_in(root, "var/lib/dbus", true)?.join("machine-id");
    match std::fs::symlink_metadata(&dbus) {
        Ok(md) if !md.file_type().is_symlink() => {
            std::fs::remove_file(&dbus).ctx("replacing D-Bus's machine id", &dbus)?;
            std::os::unix::fs::symlink("/etc/machine-id", &dbus).ctx("replacing D-Bus's machine id", &dbus)?;
            job.info("device reset: /var/lib/dbus/machine-id is now a link to /etc/machine-id");
        }
        _ => {}
    }

    // SSH host keys: made again at first boot (see first_boot).
    let ssh = resolve_in(root, "etc/ssh", true)?;
    if ssh.is_dir() {
        let mut keys: Vec<PathBuf> = std::fs::read_dir(&ssh)
            .ctx("listing the clone's SSH host keys", &ssh)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("ssh_host_"))
            .map(|e| e.path())
            .collect();
        keys.sort();
        for k in &keys {
            std::fs::remove_file(k).ctx("removing an SSH host key from the clone", k)?;
        }
        if !keys.is_empty() {
            job.info(format!(
                "device reset: {} SSH host key file(s) removed from /etc/ssh; new keys are made at first boot",
                keys.len()
            ));
        }
        stage_marker(root, "ssh-keygen")?;
    }

    network(root, job)?;

    // A generic initramfs: the next machine's storage drivers must be in it.
    let mut generic = false;
    if resolve_in(root, "etc/initramfs-tools", true)?.is_dir() || has_tool(root, "update-initramfs") {
        let d = resolve_in(root, "etc/initramfs-tools/conf.d", true)?;
        std::fs::create_dir_all(&d).ctx("configuring the clone's initramfs", &d)?;
        replace_file(
            &d.join("zz-altdisk-generic"),
            b"# altdisk -O: this disk may boot another machine; include most drivers\nMODULES=most\n",
            0o644,
            None,
        )?;
        job.info("device reset: initramfs-tools set to MODULES=most (/etc/initramfs-tools/conf.d/zz-altdisk-generic)");
        generic = true;
    }
    if resolve_in(root, "etc/dracut.conf.d", true)?.is_dir() || has_tool(root, "dracut") {
        let d = resolve_in(root, "etc/dracut.conf.d", true)?;
        std::fs::create_dir_all(&d).ctx("configuring the clone's initramfs", &d)?;
        replace_file(
            &d.join("zz-altdisk-generic.conf"),
            b"# altdisk -O: this disk may boot another machine; not host-only\nhostonly=\"no\"\n",
            0o644,
            None,
        )?;
        job.info("device reset: dracut set to hostonly=\"no\" (/etc/dracut.conf.d/zz-altdisk-generic.conf)");
        generic = true;
    }
    if !generic {
        job.info("device reset: the clone has neither initramfs-tools nor dracut; no initramfs setting to change");
    }
    Ok(())
}

/// Network configuration bound to this machine's MAC addresses: removed (udev's persistent
/// names), disabled by renaming (networkd .link/.network, netplan: they would match nothing,
/// or everything, on another machine), or with the MAC line dropped (NetworkManager
/// keyfiles, ifcfg files), as virt-sysprep does. Each file is reported.
fn network(root: &Path, job: &Job) -> Result<()> {
    let list = |rel: &str| -> Vec<PathBuf> {
        let Ok(d) = resolve_in(root, rel, true) else { return Vec::new() };
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_file() && !p.is_symlink()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let shown = |p: &Path| format!("/{}", p.strip_prefix(root).unwrap_or(p).display());
    let disable = |p: &Path, why: &str| -> Result<()> {
        let mut to = p.as_os_str().to_owned();
        to.push(DISABLED);
        std::fs::rename(p, &to).ctx("disabling MAC-bound network configuration in the clone", p)?;
        job.info(format!("device reset: {} {why}: disabled (renamed to {}{DISABLED})", shown(p), shown(p)));
        Ok(())
    };

    for p in list("etc/udev/rules.d") {
        let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name == "70-persistent-net.rules" {
            std::fs::remove_file(&p).ctx("removing persistent network names from the clone", &p)?;
            job.info(format!("device reset: {} removed (interface names bound to MAC addresses)", shown(&p)));
        } else if name.ends_with(".rules")
            && std::fs::read_to_string(&p).map(|t| t.contains("ATTR{address}==")).unwrap_or(false)
        {
            disable(&p, "names interfaces by MAC address")?;
        }
    }
    for dir in ["etc/systemd/network", "run/systemd/network"] {
        for p in list(dir) {
            let ext = p.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
            if (ext == "link" || ext == "network")
                && std::fs::read_to_string(&p).map(|t| networkd_matches_mac(&t)).unwrap_or(false)
            {
                disable(&p, "matches a MAC address")?;
            }
        }
    }
    for p in list("etc/netplan") {
        let ext = p.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
        if (ext == "yaml" || ext == "yml")
            && std::fs::read_to_string(&p)
                .map(|t| t.lines().any(|l| l.trim_start().starts_with("macaddress:")))
                .unwrap_or(false)
        {
            disable(&p, "names a MAC address")?;
        }
    }
    let drop_lines = |p: &Path, keys: &[&str], what: &str| -> Result<()> {
        let rel = p.strip_prefix(root).unwrap_or(p).to_string_lossy().into_owned();
        let changed = edit_file(root, &rel, |t| {
            let mut out: String = t
                .lines()
                .filter(|l| {
                    let k = l.trim_start().split('=').next().unwrap_or("").trim();
                    !keys.contains(&k)
                })
                .collect::<Vec<_>>()
                .join("\n");
            if t.ends_with('\n') {
                out.push('\n');
            }
            out
        })?;
        if changed == Some(true) {
            job.info(format!("device reset: {} no longer names a MAC address ({what} removed)", shown(p)));
        }
        Ok(())
    };
    for p in list("etc/NetworkManager/system-connections") {
        drop_lines(&p, &["mac-address"], "mac-address=")?;
    }
    for p in list("etc/sysconfig/network-scripts") {
        if p.file_name().unwrap_or_default().to_string_lossy().starts_with("ifcfg-") {
            drop_lines(&p, &["HWADDR"], "HWADDR=")?;
        }
    }
    Ok(())
}

/// True when a systemd .link/.network file's [Match] section names a MAC address.
fn networkd_matches_mac(text: &str) -> bool {
    let mut in_match = false;
    for l in text.lines() {
        let l = l.trim();
        if l.starts_with('[') {
            in_match = l.eq_ignore_ascii_case("[Match]");
        } else if in_match {
            let k = l.split('=').next().unwrap_or("").trim();
            if k == "MACAddress" || k == "PermanentMACAddress" {
                return true;
            }
        }
    }
    false
}

/// Remove `console=` words from a kernel command line and, with `add`, append one.
fn set_console_words(line: &str, add: Option<&str>) -> String {
    let mut w: Vec<&str> = line.split_whitespace().filter(|w| !w.starts_with("console=")).collect();
    let c = add.map(|c| format!("console={c}"));
    if let Some(c) = &c {
        w.push(c);
    }
    w.join(" ")
}

/// Split a shell assignment's value into (quote, inner words, what follows): `"a b" # c`.
fn split_shell_value(value: &str) -> (String, &str, &str) {
    let mut chars = value.char_indices();
    match chars.next() {
        Some((_, q @ ('"' | '\''))) => {
            let mut escaped = false;
            for (i, ch) in chars {
                if ch == q && !escaped {
                    return (q.to_string(), &value[1..i], &value[i + 1..]);
                }
                escaped = q == '"' && ch == '\\' && !escaped;
            }
            // No closing quote: take the rest as the value.
            (q.to_string(), &value[1..], "")
        }
        _ => {
            let end = value.find(char::is_whitespace).unwrap_or(value.len());
            ("\"".to_string(), &value[..end], &value[end..])
        }
    }
}

/// Edit the GRUB_CMDLINE_LINUX (gets the console) and GRUB_CMDLINE_LINUX_DEFAULT (loses
/// its console= words, which would compete) assignments of a shell-style GRUB defaults file.
/// With `ensure`, a missing GRUB_CMDLINE_LINUX is added. Other lines are kept as they are.
fn grub_defaults_console(text: &str, console: &str, ensure: bool) -> String {
    let mut seen = false;
    let mut changed = false;
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let (prefix, rest) = match t.strip_prefix("export ") {
            Some(r) => ("export ", r.trim_start()),
            None => ("", t),
        };
        let (var, value) = match rest.split_once('=') {
            Some((v, val)) if v == "GRUB_CMDLINE_LINUX" || v == "GRUB_CMDLINE_LINUX_DEFAULT" => (v, val),
            _ => {
                out.push(line.to_string());
                continue;
            }
        };
        let indent = &line[..line.len() - t.len()];
        let (q, inner, after) = split_shell_value(value);
        let add = (var == "GRUB_CMDLINE_LINUX").then_some(console);
        seen |= add.is_some();
        let new = format!("{indent}{prefix}{var}={q}{}{q}{after}", set_console_words(inner, add));
        changed |= new != line;
        out.push(new);
    }
    if ensure && !seen {
        out.push(format!("GRUB_CMDLINE_LINUX=\"console={console}\""));
        changed = true;
    }
    if !changed {
        return text.to_string();
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

fn console(root: &Path, console: &str, job: &Job) -> Result<()> {
    let c = console_name(console)?;
    let mut done = false;
    if let Some(changed) = edit_file(root, "etc/default/grub", |t| grub_defaults_console(t, &c, true))? {
        done = true;
        job.info(if changed {
            format!("console: console={c} set in GRUB_CMDLINE_LINUX of /etc/default/grub")
        } else {
            format!("console: /etc/default/grub already has console={c}")
        });
        // Files sourced after it must not bring their own console back.
        if let Ok(d) = resolve_in(root, "etc/default/grub.d", true) {
            let mut cfgs: Vec<PathBuf> = std::fs::read_dir(&d)
                .map(|rd| {
                    rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "cfg")).collect()
                })
                .unwrap_or_default();
            cfgs.sort();
            for p in cfgs {
                let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned();
                // A GRUB_CMDLINE_LINUX set here overrides the one above: it gets the console too.
                let strip = |t: &str| grub_defaults_console(t, &c, false);
                if edit_file(root, &rel, strip)? == Some(true) {
                    job.info(format!("console: console= of /{rel} replaced"));
                }
            }
        }
    }
    if let Some(changed) = edit_file(root, "etc/kernel/cmdline", |t| set_console_words(t.trim(), Some(&c)) + "\n")? {
        done = true;
        if changed {
            job.info(format!("console: console={c} set in /etc/kernel/cmdline"));
        }
    }
    if !done {
        return Err(Error::unsupported(
            format!("setting the clone's console to {c} (-c)"),
            ": the clone has neither /etc/default/grub nor /etc/kernel/cmdline",
            "set console= in its boot loader configuration from a -s script",
        ));
    }
    Ok(())
}

/* ---------------------------------------------------------------------------------------- */
/* First boot                                                                               */
/* ---------------------------------------------------------------------------------------- */

fn firstboot_dir(root: &Path) -> Result<PathBuf> {
    let d = resolve_in(root, FIRSTBOOT_DIR, true)?;
    std::fs::create_dir_all(&d).ctx("preparing the first-boot work of the clone", &d)?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
        .ctx("preparing the first-boot work of the clone", &d)?;
    Ok(d)
}

/// Ask [`first_boot`] to do something at the system's first boot.
fn stage_marker(root: &Path, what: &str) -> Result<()> {
    let d = firstboot_dir(root)?;
    replace_file(&d.join(what), b"", 0o600, None)?;
    replace_file(&d.join("pending"), b"", 0o600, None)
}

fn stage_first_boot(root: &Path, script: &Path, job: &Job) -> Result<()> {
    let data = std::fs::read(script).ctx("reading the first-boot script (-x)", script)?;
    let d = firstboot_dir(root)?;
    replace_file(&d.join("script"), &data, 0o700, None)?;
    stage_marker(root, "run-script")?;
    job.info(format!(
        "first boot: {} staged at /{FIRSTBOOT_DIR}/script; it runs once when the clone first boots, output in /{FIRSTBOOT_LOG}",
        script.display()
    ));
    Ok(())
}

/// At boot (from a systemd unit): run the pending first-boot work of the system at `root`
/// ("/" at boot; another root is entered with chroot), exactly once: the pending marker is
/// removed before anything runs, so a script that reboots the machine does not run again.
/// Regenerates SSH host keys after a device reset, then runs the -x script. Output goes to
/// /var/log/altdisk/firstboot.log in that system and to standard output (the journal).
/// Returns a line for the journal, or None when nothing was pending.
pub fn first_boot(root: &Path) -> Result<Option<String>> {
    let dir = resolve_in(root, FIRSTBOOT_DIR, true)?;
    let pending = dir.join("pending");
    if std::fs::symlink_metadata(&pending).is_err() {
        return Ok(None);
    }
    std::fs::remove_file(&pending).ctx("clearing the pending first-boot work", &pending)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    let log_path = resolve_in(root, FIRSTBOOT_LOG, true)?;
    if let Some(p) = log_path.parent() {
        std::fs::create_dir_all(p).ctx("creating the first-boot log", p)?;
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .ctx("opening the first-boot log", &log_path)?;
    let mut say = |text: &str| {
        print!("{text}");
        let _ = std::io::stdout().flush();
        let _ = log.write_all(text.as_bytes());
    };
    let in_root = root != Path::new("/");
    let tool = |desc: &str, t: &str| if in_root { Cmd::in_root(desc, root, t) } else { Cmd::new(desc, t) };
    let mut summary: Vec<String> = Vec::new();
    let mut failed: Option<Error> = None;

    let marker = dir.join("ssh-keygen");
    if marker.exists() {
        let _ = std::fs::remove_file(&marker);
        if resolve_in(root, "etc/ssh", true)?.is_dir() && has_tool(root, "ssh-keygen") {
            let r = tool("making new SSH host keys", "ssh-keygen").and_then(|c| c.arg("-A").run());
            match r {
                Ok(o) => {
                    say(&format!("{} altdisk first boot: ssh-keygen -A made new SSH host keys\n{}", stamp(), o.stdout));
                    summary.push("new SSH host keys made".into());
                }
                Err(e) => {
                    say(&format!("{} altdisk first boot: {e}\n", stamp()));
                    failed.get_or_insert(e);
                }
            }
        }
    }

    let marker = dir.join("run-script");
    let script = dir.join("script");
    if marker.exists() {
        let _ = std::fs::remove_file(&marker);
        let inside = format!("/{FIRSTBOOT_DIR}/script");
        if script.is_file() {
            // `env` runs the script by path: it may be any executable, not only a shell script.
            let desc = "running the first-boot script";
            let r = tool(desc, "env").and_then(|c| c.arg(&inside).run_code());
            match r {
                Ok((code, o)) => {
                    say(&format!("{} altdisk first boot: {inside} exited with status {code}\n", stamp()));
                    say(&o.stdout);
                    say(&o.stderr);
                    if code == 0 {
                        summary.push(format!("first-boot script ran (output in /{FIRSTBOOT_LOG})"));
                    } else {
                        let tail: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
                        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
                        failed.get_or_insert(Error::Command {
                            description: desc.into(),
                            command: inside.clone(),
                            status: if code < 0 {
                                "was killed by a signal".into()
                            } else {
                                format!("exited with status {code}")
                            },
                            stderr: if tail.is_empty() {
                                format!(" (output in /{FIRSTBOOT_LOG})")
                            } else {
                                format!(": {tail} (output in /{FIRSTBOOT_LOG})")
                            },
                        });
                    }
                }
                Err(e) => {
                    say(&format!("{} altdisk first boot: {e}\n", stamp()));
                    failed.get_or_insert(e);
                }
            }
        }
    }
    let _ = log.sync_all();
    match failed {
        Some(e) => Err(e),
        None if summary.is_empty() => Ok(Some("altdisk first boot: nothing left to do".into())),
        None => Ok(Some(format!("altdisk first boot: {}", summary.join("; ")))),
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The customization script and phase 2 as a whole                                          */
/* ---------------------------------------------------------------------------------------- */

/// ALT_DISKS: kernel names of block devices ("vdb vdc"), full paths of image files.
fn disk_names(disks: &[PathBuf]) -> String {
    disks
        .iter()
        .map(|d| {
            let real = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
            if real.starts_with("/dev") {
                real.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            } else {
                real.display().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn script(root: &Path, script: &Path, disks: &[PathBuf], job: &Job) -> Result<()> {
    let disks = disk_names(disks);
    job.info(format!(
        "running the customization script {} (ALT_ROOT={}, ALT_DISKS={disks})",
        script.display(),
        root.display()
    ));
    let out = Cmd::new(format!("running the customization script {} (-s)", script.display()), "env")?
        .arg(script)
        .env("ALT_ROOT", &root.display().to_string())
        .env("ALT_DISKS", &disks)
        .run()?;
    for l in out.stdout.lines().chain(out.stderr.lines()) {
        job.info(format!("{}: {l}", script.display()));
    }
    Ok(())
}

/// Run phase 2 on the clone mounted at `root`. `disks` are the clone's target disks (for
/// ALT_DISKS). Order: packages, resolv.conf, device reset, console, first-boot staging,
/// then the customization script, which sees the result. On error the clone is left as it
/// is (the caller marks it incomplete); altdisk's temporary changes to it are undone.
pub fn run(root: &Path, c: &Customize, disks: &[PathBuf], job: &Job) -> Result<()> {
    if c.is_empty() {
        return Ok(());
    }
    c.validate()?;
    job.set_phase(Phase::Customizing);
    if let Some(dir) = &c.images {
        packages(root, c, dir, job)?;
    }
    job.check()?;
    if let Some(r) = &c.resolv_conf {
        resolv_conf(root, r, job)?;
    }
    if c.device_reset {
        device_reset(root, job)?;
        if let Some(con) = &c.console {
            console(root, con, job)?;
        }
    }
    if let Some(s) = &c.first_boot {
        stage_first_boot(root, s, job)?;
    }
    job.check()?;
    if let Some(s) = &c.script {
        script(root, s, disks, job)?;
    }
    Ok(())
}

/* ---------------------------------------------------------------------------------------- */
/* Time, without a calendar crate                                                           */
/* ---------------------------------------------------------------------------------------- */

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// (year, month, day, hour, minute, second, weekday with 0 = Sunday) in UTC.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = (days + 4).rem_euclid(7) as u32;
    (y, m, d, (rem / 3600) as u32, (rem / 60 % 60) as u32, (rem % 60) as u32, wd)
}

fn rfc2822(secs: i64) -> String {
    let (y, m, d, h, mi, s, wd) = civil(secs);
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{}, {d:02} {} {y} {h:02}:{mi:02}:{s:02} UTC", DAYS[wd as usize], MONTHS[m as usize - 1])
}

fn stamp() -> String {
    let (y, m, d, h, mi, s, _) = civil(now());
    format!("{y}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("altdisk-cust-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(p: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn empty_and_bundle_words() {
        let mut c = Customize::default();
        assert!(c.is_empty());
        c.bundle("update_all");
        assert!(c.update_all && c.bundles.is_empty() && !c.is_empty());
        c.bundle("/root/list");
        assert_eq!(c.bundles, vec![PathBuf::from("/root/list")]);
        assert_eq!(Customize::split_names(" a,b  c "), vec!["a", "b", "c"]);
    }

    #[test]
    fn validate_checks_paths_flags_and_combinations() {
        let d = tmp("validate");
        let script = d.join("s.sh");
        write(&script, "#!/bin/sh\n", 0o755);
        let plain = d.join("plain");
        write(&plain, "x", 0o644);
        let debs = d.join("debs");
        write(&debs.join("sub/a_1_all.deb"), "", 0o644);
        let empty = d.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let list = d.join("list");
        write(&list, "# updates\nfoo\nbar baz # trailing\n\n", 0o644);

        let ok = Customize { script: Some(script.clone()), ..Default::default() };
        ok.validate().unwrap();
        let e = Customize { script: Some("s.sh".into()), ..Default::default() }.validate().unwrap_err();
        assert!(matches!(e, Error::Usage { .. }) && e.to_string().contains("full path"), "{e}");
        let e = Customize { script: Some(plain.clone()), ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("not executable"), "{e}");
        let e = Customize { first_boot: Some(d.join("nope")), ..Default::default() }.validate().unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");

        let e = Customize { packages: vec!["foo".into()], ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("-l DIR"), "{e}");
        let e =
            Customize { images: Some(empty.clone()), update_all: true, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("no .deb"), "{e}");
        let e = Customize { images: Some(debs.clone()), ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("nothing is named"), "{e}");
        let mut c = Customize { images: Some(debs.clone()), ..Default::default() };
        c.bundle(list.to_str().unwrap());
        c.validate().unwrap();
        assert_eq!(c.package_names().unwrap(), vec!["foo", "bar", "baz"]);
        c.packages = vec!["-o".into()];
        assert!(c.validate().unwrap_err().to_string().contains("not a package name"));
        c.packages = vec!["foo=1.0".into(), "bar:amd64".into()];
        c.install_flags = Customize::split_flags("--no-install-recommends -o Dpkg::Options::=--force-confnew");
        c.validate().unwrap();
        assert_eq!(c.package_names().unwrap(), vec!["foo=1.0", "bar:amd64", "foo", "bar", "baz"]);
        c.install_flags = Customize::split_flags("acgXY");
        assert!(c.validate().unwrap_err().to_string().contains("installp"));
        c.install_flags = Customize::split_flags("-acgX");
        assert!(c.validate().unwrap_err().to_string().contains("installp"));
        c.install_flags = Customize::split_flags("-qq -y -oAPT::Get::Foo=1");
        c.validate().unwrap();
        c.install_flags = Customize::split_flags("-o");
        assert!(c.validate().unwrap_err().to_string().contains("needs a value"));

        let e = Customize { console: Some("ttyS0".into()), ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("-O"), "{e}");
        Customize { console: Some("/dev/ttyS0".into()), device_reset: true, ..Default::default() }.validate().unwrap();
        let e = Customize { console: Some("tty0 $(x)".into()), device_reset: true, ..Default::default() }
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("not a kernel console"), "{e}");
        let e = Customize { resolv_conf: Some(d.clone()), ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn source_kinds() {
        let d = tmp("kinds");
        write(&d.join("flat/Packages.gz"), "", 0o644);
        std::fs::create_dir_all(d.join("dists/dists/bookworm/main/binary-amd64")).unwrap();
        write(&d.join("rpms/x.rpm"), "", 0o644);
        assert_eq!(source_kind(&d.join("flat")).unwrap(), SourceKind::FlatRepo);
        assert_eq!(source_kind(&d.join("dists")).unwrap(), SourceKind::DistsRepo);
        assert_eq!(source_kind(&d.join("rpms")).unwrap(), SourceKind::Rpms);
        assert_eq!(
            dists_sources(&d.join("dists"), "file:/x").unwrap(),
            vec!["deb [trusted=yes] file:/x bookworm main".to_string()]
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn resolves_links_inside_the_root() {
        let r = tmp("resolve");
        std::fs::create_dir_all(r.join("run/systemd/resolve")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::os::unix::fs::symlink("/run/systemd/resolve/stub-resolv.conf", r.join("etc/resolv.conf")).unwrap();
        std::os::unix::fs::symlink("../../../../../..", r.join("etc/up")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("etc2")).unwrap();
        assert_eq!(resolve_in(&r, "etc/resolv.conf", true).unwrap(), r.join("run/systemd/resolve/stub-resolv.conf"));
        assert_eq!(resolve_in(&r, "etc/resolv.conf", false).unwrap(), r.join("etc/resolv.conf"));
        assert_eq!(resolve_in(&r, "etc/up/etc", true).unwrap(), r.join("etc"));
        assert_eq!(resolve_in(&r, "/etc2/resolv.conf", false).unwrap(), r.join("etc/resolv.conf"));
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_in(&r, "loop/x", true).is_err());
        std::fs::remove_dir_all(r).unwrap();
    }

    #[test]
    fn replace_file_replaces_a_link_not_its_target() {
        let r = tmp("replace");
        write(&r.join("target"), "old", 0o644);
        std::os::unix::fs::symlink(r.join("target"), r.join("link")).unwrap();
        replace_file(&r.join("link"), b"new", 0o640, None).unwrap();
        assert_eq!(std::fs::read_to_string(r.join("target")).unwrap(), "old");
        let md = std::fs::symlink_metadata(r.join("link")).unwrap();
        assert!(md.is_file() && md.permissions().mode() & 0o777 == 0o640);
        assert_eq!(std::fs::read_to_string(r.join("link")).unwrap(), "new");
        std::fs::remove_dir_all(r).unwrap();
    }

    #[test]
    fn policy_rc_d_is_set_aside_and_restored() {
        let r = tmp("policy");
        write(&r.join("usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 0\n", 0o755);
        let g = PolicyGuard::install(&r).unwrap();
        assert_eq!(std::fs::read_to_string(r.join("usr/sbin/policy-rc.d")).unwrap(), POLICY_RC_D);
        drop(g); // as on failure
        assert_eq!(std::fs::read_to_string(r.join("usr/sbin/policy-rc.d")).unwrap(), "#!/bin/sh\nexit 0\n");
        assert!(!r.join("usr/sbin/policy-rc.d.altdisk-saved").exists());
        std::fs::remove_file(r.join("usr/sbin/policy-rc.d")).unwrap();
        PolicyGuard::install(&r).unwrap().restore().unwrap();
        assert!(std::fs::read_dir(r.join("usr/sbin")).unwrap().next().is_none());
        std::fs::remove_dir_all(r).unwrap();
    }

    #[test]
    fn local_source_cleanup_never_deletes_through_pool() {
        let r = tmp("repo");
        let mut repo = LocalRepo::create(&r).unwrap();
        std::fs::write(repo.base.join("Packages"), "x").unwrap();
        repo.cleanup().unwrap();
        assert!(!r.join(REPO_DIR).exists());
        // Something in pool/ (as if the user's directory were still there): kept, and an error.
        let mut repo = LocalRepo::create(&r).unwrap();
        std::fs::write(repo.base.join("pool/user.deb"), "x").unwrap();
        assert!(repo.cleanup().unwrap_err().to_string().contains("still mounted"));
        assert!(r.join(REPO_DIR).join("pool/user.deb").exists());
        std::fs::remove_file(r.join(REPO_DIR).join("pool/user.deb")).unwrap();
        drop(repo);
        assert!(!r.join(REPO_DIR).exists());
        std::fs::remove_dir_all(r).unwrap();
    }

    #[test]
    fn parses_stanzas_and_installed() {
        let s = stanzas("Package: a\nVersion: 1\nDescription: x\n more\n\nPackage: b\nVersion: 2:1.0-1\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["Description"], "x\n more");
        assert_eq!(s[1]["Version"], "2:1.0-1");
        let i = parse_installed("a\tamd64\t1.0\tii \nb\tall\t2\trc \nc\tall\t3\thi \n");
        assert_eq!(i.len(), 2);
        assert_eq!(i["a:amd64"], "1.0");
        assert_eq!(i["c:all"], "3");
    }

    #[test]
    fn update_all_candidates() {
        let avail = "Package: a\nVersion: 2\nArchitecture: all\n\nPackage: b\nVersion: 1\nArchitecture: amd64\n\n\
                     Package: c\nVersion: 5\nArchitecture: amd64\n\nPackage: d\nVersion: 1\nArchitecture: i386\n";
        let inst = parse_installed("a\tall\t1\tii \nb\tamd64\t1\tii \nc\tamd64\t4\tii \nd\tamd64\t0\tii \n");
        // a and c differ; b is the same version; d is another architecture; e is not installed.
        assert_eq!(upgrade_candidates(avail, &inst), vec!["a", "c:amd64"]);
    }

    #[test]
    fn grub_console() {
        let t = "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet console=tty1\"\nGRUB_CMDLINE_LINUX=\"console=tty0 net.ifnames=0\"\n";
        assert_eq!(
            grub_defaults_console(t, "ttyS0,115200n8", true),
            "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"net.ifnames=0 console=ttyS0,115200n8\"\n"
        );
        assert_eq!(
            grub_defaults_console("GRUB_TIMEOUT=5\n", "ttyS0", true),
            "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"console=ttyS0\"\n"
        );
        assert_eq!(
            grub_defaults_console("  export GRUB_CMDLINE_LINUX=''\n", "hvc0", true),
            "  export GRUB_CMDLINE_LINUX='console=hvc0'\n"
        );
        assert_eq!(
            grub_defaults_console("GRUB_CMDLINE_LINUX=\"quiet console=tty0\" # serial\nX=1", "ttyS0", true),
            "GRUB_CMDLINE_LINUX=\"quiet console=ttyS0\" # serial\nX=1\n"
        );
        let same = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"";
        assert_eq!(grub_defaults_console(same, "ttyS0", false), same);
        assert_eq!(set_console_words("root=UUID=x console=tty0 ro", Some("ttyS1")), "root=UUID=x ro console=ttyS1");
        assert_eq!(console_name("console=/dev/ttyS0").unwrap(), "ttyS0");
    }

    #[test]
    fn networkd_mac_match() {
        assert!(networkd_matches_mac("[Match]\nMACAddress=52:54:00:12:34:56\n[Link]\nName=lan0\n"));
        assert!(!networkd_matches_mac("[Match]\nName=eth0\n[Link]\nMACAddress=52:54:00:12:34:56\n"));
    }

    #[test]
    fn device_reset_on_a_tree() {
        let r = tmp("reset");
        write(&r.join("etc/machine-id"), "0123456789abcdef0123456789abcdef\n", 0o444);
        write(&r.join("var/lib/dbus/machine-id"), "0123456789abcdef0123456789abcdef\n", 0o444);
        write(&r.join("etc/ssh/ssh_host_ed25519_key"), "k", 0o600);
        write(&r.join("etc/ssh/ssh_host_ed25519_key.pub"), "k", 0o644);
        write(&r.join("etc/ssh/sshd_config"), "x", 0o644);
        write(&r.join("etc/udev/rules.d/70-persistent-net.rules"), "x", 0o644);
        write(
            &r.join("etc/systemd/network/10-lan.link"),
            "[Match]\nMACAddress=52:54:00:12:34:56\n[Link]\nName=lan0\n",
            0o644,
        );
        write(&r.join("etc/systemd/network/20-dhcp.network"), "[Match]\nName=en*\n[Network]\nDHCP=yes\n", 0o644);
        write(
            &r.join("etc/NetworkManager/system-connections/w.nmconnection"),
            "[connection]\nid=w\n[ethernet]\nmac-address=52:54:00:12:34:56\ncloned-mac-address=stable\n",
            0o600,
        );
        write(
            &r.join("etc/netplan/50-cloud-init.yaml"),
            "network:\n  ethernets:\n    eth0:\n      match:\n        macaddress: 52:54:00:12:34:56\n",
            0o600,
        );
        std::fs::create_dir_all(r.join("etc/initramfs-tools")).unwrap();
        let job = Job::new();
        device_reset(&r, &job).unwrap();
        assert_eq!(std::fs::read(r.join("etc/machine-id")).unwrap(), b"");
        assert_eq!(std::fs::read_link(r.join("var/lib/dbus/machine-id")).unwrap(), PathBuf::from("/etc/machine-id"));
        assert!(!r.join("etc/ssh/ssh_host_ed25519_key").exists() && r.join("etc/ssh/sshd_config").exists());
        assert!(r.join(FIRSTBOOT_DIR).join("pending").exists() && r.join(FIRSTBOOT_DIR).join("ssh-keygen").exists());
        assert!(!r.join("etc/udev/rules.d/70-persistent-net.rules").exists());
        assert!(!r.join("etc/systemd/network/10-lan.link").exists());
        assert!(r.join("etc/systemd/network/10-lan.link.altdisk-disabled").exists());
        assert!(r.join("etc/systemd/network/20-dhcp.network").exists());
        let nm = std::fs::read_to_string(r.join("etc/NetworkManager/system-connections/w.nmconnection")).unwrap();
        assert_eq!(nm, "[connection]\nid=w\n[ethernet]\ncloned-mac-address=stable\n");
        let md = std::fs::metadata(r.join("etc/NetworkManager/system-connections/w.nmconnection")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        assert!(r.join("etc/netplan/50-cloud-init.yaml.altdisk-disabled").exists());
        assert_eq!(
            std::fs::read_to_string(r.join("etc/initramfs-tools/conf.d/zz-altdisk-generic")).unwrap().lines().last(),
            Some("MODULES=most")
        );
        std::fs::remove_dir_all(r).unwrap();
    }

    #[test]
    fn dates() {
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 UTC");
        assert_eq!(rfc2822(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 UTC");
        assert_eq!(civil(951_782_400).0, 2000);
    }
}
