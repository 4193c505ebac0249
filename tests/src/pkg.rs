//! altdisk's Debian package in the VM tier: the .deb built from this tree by
//! `image-build/build-debs.sh` (or `$ALTDISK_DEB`), installed into a guest with apt from
//! that file alone (`-nic none`: what it depends on is in the production image), and the
//! checks that `apt purge` takes away everything the package put there.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::vm::Machine;

/// Where the guest keeps the package and the file lists of these checks.
const GUEST_DIR: &str = "/var/tmp/altdisk-pkg";

/// The paths of the guest's root filesystem, sorted, without the places that change by
/// themselves while a system runs (logs, caches, apt's and dpkg's own state, systemd's
/// timers and random seed, root's shell history, temporary directories). What the package
/// installs, and what its scripts make, lives elsewhere: /usr, /etc, /var/lib/altdisk.
const SNAPSHOT: &str = "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
     -o -path /var/tmp -o -path /var/log -o -path /var/cache -o -path /var/lib/apt -o -path /var/lib/dpkg \
     -o -path /var/lib/systemd -o -path /root -o -path /lost+found \\) -prune -o -print | LC_ALL=C sort";

/// The altdisk package of this tree: `$ALTDISK_DEB`, or built once per test process by
/// image-build/build-debs.sh (a release build; lintian is left to tests/run.sh).
pub fn deb() -> Result<PathBuf> {
    static DEB: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DEB.get_or_init(|| {
        if let Some(p) = std::env::var_os("ALTDISK_DEB") {
            return Ok(PathBuf::from(p));
        }
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../image-build/build-debs.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("--no-lintian")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed ({}); its messages are above", script.display(), out.status));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(PathBuf::from)
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("altdisk_")))
            .ok_or_else(|| format!("{} printed no altdisk_*.deb", script.display()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// The package's version as dpkg-deb reads it from the file.
pub fn version(deb: &std::path::Path) -> Result<String> {
    let out = Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version").output().context("running dpkg-deb")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Install the package into the running guest with apt, from the file alone, after taking
/// the list of files the purge check compares with. Returns apt's output.
pub fn install(m: &mut Machine, deb: &std::path::Path) -> Result<String> {
    m.put_files(&[deb.to_path_buf()], GUEST_DIR)?;
    m.sh(&format!("{SNAPSHOT} >{GUEST_DIR}/before.list"))?;
    let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let (rc, out) = m.run(
        &format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Use-Pty=0 {GUEST_DIR}/{name} 2>&1 &&
             dpkg-query -L altdisk >{GUEST_DIR}/files.list"
        ),
        Duration::from_secs(600),
    )?;
    if rc != 0 {
        bail!("apt-get install of {name} failed (exit {rc}):\n{out}");
    }
    Ok(out)
}

/// `apt-get purge altdisk`, then what must be gone: every file the package installed, the
/// boot units' enable links and deb-systemd-helper's state, and any path the root
/// filesystem did not have before the installation (none may appear, none may vanish).
/// Returns the problems found (empty: clean).
pub fn purge_and_check(m: &mut Machine) -> Result<Vec<String>> {
    let out = m.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -o Dpkg::Use-Pty=0 altdisk 2>&1")?;
    let mut problems = Vec::new();
    if !out.contains("Purging configuration files for altdisk") && !out.contains("Removing altdisk") {
        problems.push(format!("apt-get purge did not remove altdisk:\n{out}"));
    }
    let left = m.sh(&format!(
        "dpkg-query -W altdisk 2>/dev/null && echo 'dpkg still knows altdisk'
         while IFS= read -r p; do
             [ -d \"$p\" ] && [ ! -L \"$p\" ] && continue   # directories shared with other packages
             if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"left: $p\"; fi
         done <{GUEST_DIR}/files.list
         find /etc/systemd /usr/lib/systemd /var/lib/systemd/deb-systemd-helper-enabled \
              /var/lib/systemd/deb-systemd-helper-masked -name '*altdisk*' -printf 'left: %p\\n' 2>/dev/null
         for u in altdisk-names altdisk-commit altdisk-firstboot altdiskd; do
             systemctl is-enabled $u.service >/dev/null 2>&1 && echo \"enabled: $u.service\"
             systemctl is-active --quiet $u.service && echo \"running: $u.service\"
         done
         {SNAPSHOT} >{GUEST_DIR}/after.list
         LC_ALL=C comm -3 {GUEST_DIR}/before.list {GUEST_DIR}/after.list | sed 's/^\\t/appeared: /; /^appeared/!s/^/vanished: /'
         true"
    ))?;
    problems.extend(left.lines().filter(|l| !l.trim().is_empty()).map(String::from));
    Ok(problems)
}
