//! The one runner for external commands. Every tool altdisk uses is resolved once to an
//! absolute path (a service may run without a useful PATH) and named with the Debian package
//! that provides it when missing. Each run carries a human description, is logged with its
//! exact argument vector, gets no stdin, and fails with the command, its status and the tail
//! of its stderr. Arguments are never joined into a shell string.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Directories searched for tools, in order; PATH is not trusted.
const TOOL_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"];

static ECHO: AtomicBool = AtomicBool::new(false);

/// Print every command to stderr before running it (`-D`, AIX "debug").
pub fn set_echo(on: bool) {
    ECHO.store(on, Ordering::Relaxed);
}

/// Which Debian package provides a tool, for the "install it" hint.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "mkfs.ext4" | "mkfs.ext3" | "mkfs.ext2" | "e2fsck" | "tune2fs" | "resize2fs" | "chattr" => "e2fsprogs",
        "mkfs.xfs" | "xfs_admin" => "xfsprogs",
        "mkfs.btrfs" | "btrfs" => "btrfs-progs",
        "mkfs.vfat" | "fatlabel" => "dosfstools",
        "mkswap" | "swapon" | "losetup" | "mount" | "umount" | "blkid" | "lsblk" | "findmnt" | "wipefs" | "partx"
        | "sfdisk" => "util-linux (fdisk for sfdisk)",
        "rsync" => "rsync",
        _ => "the package that provides it",
    }
}

/// Set up `c` to run chrooted in `root` (see [`Cmd::in_root`]).
fn enter_root(c: &mut Command, root: &Path) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    use std::os::unix::process::CommandExt;
    // Paths are prepared before fork: only system calls run in the child.
    let root = root.to_path_buf();
    let dev = root.join("dev");
    let proc_ = root.join("proc");
    let sys = root.join("sys");
    let run = root.join("run");
    let efivars = root.join("sys/firmware/efi/efivars");
    let has_efivars = Path::new("/sys/firmware/efi/efivars").is_dir();
    for d in [&dev, &proc_, &sys, &run] {
        if !d.is_dir() {
            return Err(Error::not_found(
                format!("directory {}", d.display()),
                "the clone lacks a standard mount point",
                "check that the source system is complete",
            ));
        }
    }
    let none: Option<&str> = None;
    // SAFETY: the closure only makes system calls (unshare, mount, chroot, chdir) on data
    // prepared above; it allocates nothing.
    unsafe {
        c.pre_exec(move || {
            let err = |e: nix::Error| std::io::Error::from_raw_os_error(e as i32);
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(err)?;
            mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).map_err(err)?;
            mount(Some("/dev"), &dev, none, MsFlags::MS_BIND | MsFlags::MS_REC, none).map_err(err)?;
            mount(Some("proc"), &proc_, Some("proc"), MsFlags::empty(), none).map_err(err)?;
            mount(Some("/sys"), &sys, none, MsFlags::MS_BIND | MsFlags::MS_REC, none).map_err(err)?;
            mount(Some("tmpfs"), &run, Some("tmpfs"), MsFlags::empty(), Some("mode=0755")).map_err(err)?;
            if has_efivars {
                mount(none, &efivars, none, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY, none)
                    .map_err(err)?;
            }
            nix::unistd::chroot(&root).map_err(err)?;
            nix::unistd::chdir("/").map_err(err)?;
            Ok(())
        });
    }
    Ok(())
}

/// Whether `p` (and the directory holding it) can be changed only by root: a tool altdisk
/// runs as root must not be one a user could have put there.
fn root_only(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let safe = |q: &Path| std::fs::metadata(q).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
    safe(p) && p.parent().is_none_or(safe)
}

/// Find a tool by name in the system directories. A tool in a place a user can write is not
/// taken (when altdisk runs as root).
pub fn which(tool: &str) -> Result<PathBuf> {
    let as_root = nix::unistd::geteuid().is_root();
    let mut unsafe_one = None;
    for dir in TOOL_DIRS {
        let p = Path::new(dir).join(tool);
        if let Ok(md) = std::fs::metadata(&p) {
            use std::os::unix::fs::PermissionsExt;
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
                if as_root && !root_only(&real) {
                    unsafe_one.get_or_insert(real);
                    continue;
                }
                return Ok(p);
            }
        }
    }
    if let Some(p) = unsafe_one {
        return Err(Error::refused(
            p.display().to_string(),
            format!("`{tool}` there can be changed by a user other than root, and altdisk runs it as root"),
            format!(
                "make it and its directory owned by root and writable only by root, or reinstall {}",
                package_of(tool)
            ),
        ));
    }
    Err(Error::not_found(
        format!("tool `{tool}`"),
        format!("it is not in {}", TOOL_DIRS.join(", ")),
        format!("install {}", package_of(tool)),
    ))
}

/// Check that every named tool exists, failing on the first missing one.
pub fn require(tools: &[&str]) -> Result<()> {
    for t in tools {
        which(t)?;
    }
    Ok(())
}

/// A command about to be run.
/// Let udev finish the events our writes caused (no udev: nothing to wait for).
pub fn settle() {
    if let Ok(c) = Cmd::new("waiting for udev", "udevadm") {
        let _ = c.args(["settle", "--timeout=10"]).run();
    }
}

pub struct Cmd {
    description: String,
    program: PathBuf,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    /// Run inside this root (see [`Cmd::in_root`]).
    root: Option<PathBuf>,
    env: Vec<(String, String)>,
}

/// What a finished command printed.
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

impl Cmd {
    /// `description` says what the command does, lowercase: "creating the ext4 filesystem".
    pub fn new(description: impl Into<String>, tool: &str) -> Result<Self> {
        Ok(Cmd {
            description: description.into(),
            program: which(tool)?,
            args: Vec::new(),
            stdin: None,
            root: None,
            env: Vec::new(),
        })
    }

    /// A tool of the system mounted at `root`, run chrooted there as a child process in a
    /// private mount namespace with /dev, /proc, /sys and a fresh /run; firmware variables
    /// are read-only inside, so no chrooted tool can change the boot order. The namespace
    /// (and every mount in it) goes away with the child.
    pub fn in_root(description: impl Into<String>, root: &Path, tool: &str) -> Result<Self> {
        let program = TOOL_DIRS
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| {
                let host = root.join(p.strip_prefix("/").unwrap_or(p));
                std::fs::symlink_metadata(&host).is_ok()
            })
            .ok_or_else(|| {
                Error::not_found(
                    format!("tool `{tool}` in the clone at {}", root.display()),
                    "the system being cloned does not have it",
                    format!("install {} in the source system", package_of(tool)),
                )
            })?;
        Ok(Cmd {
            description: description.into(),
            program,
            args: Vec::new(),
            stdin: None,
            root: Some(root.to_path_buf()),
            env: vec![
                ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
                ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
            ],
        })
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Feed these bytes on stdin (for tools that read a script, such as sfdisk).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn command_line(&self) -> String {
        let mut s = match &self.root {
            Some(r) => format!("chroot {} {}", r.display(), self.program.display()),
            None => self.program.display().to_string(),
        };
        for a in &self.args {
            s.push(' ');
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                s.push('\'');
                s.push_str(&a.replace('\'', "'\\''"));
                s.push('\'');
            } else {
                s.push_str(&a);
            }
        }
        s
    }

    /// Run, failing unless the exit status is 0.
    pub fn run(self) -> Result<Output> {
        let (status, out) = self.run_status()?;
        match status {
            Ok(()) => Ok(out),
            Err(e) => Err(e),
        }
    }

    /// Run and return the exit code together with the output, for tools whose non-zero
    /// exit carries meaning (blkid returns 2 for "nothing found").
    pub fn run_code(self) -> Result<(i32, Output)> {
        let line = self.command_line();
        let out = self.spawn_wait(&line)?;
        Ok((out.0.code().unwrap_or(-1), out.1))
    }

    fn run_status(self) -> Result<(std::result::Result<(), Error>, Output)> {
        let line = self.command_line();
        let description = self.description.clone();
        let (status, out) = self.spawn_wait(&line)?;
        if status.success() {
            return Ok((Ok(()), out));
        }
        let tail: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
        let stderr = if tail.is_empty() { String::new() } else { format!(": {tail}") };
        let status = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_string(),
        };
        Ok((Err(Error::Command { description, command: line, status, stderr }), out))
    }

    fn spawn_wait(self, line: &str) -> Result<(std::process::ExitStatus, Output)> {
        tracing::debug!(description = %self.description, command = %line, "running");
        if ECHO.load(Ordering::Relaxed) {
            eprintln!("+ {line}");
        }
        let mut c = Command::new(&self.program);
        c.args(&self.args)
            .stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Tools print parseable output in the C locale.
            .env("LC_ALL", "C");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        // A tool dies with altdisk: a killed run must not leave a losetup or mkfs going on
        // behind the next run's back (which is cleaning up after it).
        let parent = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl took effect.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        if let Some(root) = &self.root {
            enter_root(&mut c, root)?;
        }
        let mut child = c.spawn().map_err(|e| Error::io(format!("starting {}", self.description), &self.program, e))?;
        if let Some(data) = self.stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin piped");
            // A tool that exits early closes the pipe; its status tells the story.
            let _ = pipe.write_all(&data);
        }
        let o = child
            .wait_with_output()
            .map_err(|e| Error::io(format!("waiting for {}", self.description), &self.program, e))?;
        Ok((
            o.status,
            Output {
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            },
        ))
    }
}

#[cfg(test)]
mod root_only_tests {
    use super::*;

    #[test]
    fn tools_a_user_could_change_are_not_taken() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("altdisk-which-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let t = d.join("tool");
        std::fs::write(&t, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(root_only(&t));
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(!root_only(&t), "group-writable");
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!root_only(&t), "in a world-writable directory");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
