//! altdisk's Debian packages in the VM tier: the .debs built from this tree by
//! `image-build/build-debs.sh` (or `$ALTDISK_DEBS`), installed into a guest with apt from
//! those files alone (`-nic none`: what it depends on is in the production image), and the
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

/// The packages of this tree (altdisk, and altdisk-gui once the GUI is in the workspace):
/// `$ALTDISK_DEBS` (paths separated by blanks), or built once per test process by
/// image-build/build-debs.sh (a release build; lintian is left to tests/run.sh).
pub fn debs() -> Result<Vec<PathBuf>> {
    static DEBS: OnceLock<std::result::Result<Vec<PathBuf>, String>> = OnceLock::new();
    DEBS.get_or_init(|| {
        if let Ok(list) = std::env::var("ALTDISK_DEBS") {
            return Ok(list.split_whitespace().map(PathBuf::from).collect());
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
        Ok(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.ends_with(".deb")).map(PathBuf::from).collect())
    })
    .clone()
    .map_err(|e| anyhow!(e))
    .and_then(|v: Vec<PathBuf>| {
        if v.iter().any(|p| package_name(p) == "altdisk") {
            Ok(v)
        } else {
            bail!("no altdisk_*.deb among the packages {v:?}")
        }
    })
}

/// The package name of a .deb file: NAME_VERSION_ARCH.deb.
pub fn package_name(deb: &std::path::Path) -> String {
    let f = deb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    f.split('_').next().unwrap_or_default().to_string()
}

/// The package's version as dpkg-deb reads it from the file.
pub fn version(deb: &std::path::Path) -> Result<String> {
    let out = Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version").output().context("running dpkg-deb")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Install the packages into the running guest with apt, from the files alone, after taking
/// the list of files the purge check compares with. Returns apt's output.
pub fn install(m: &mut Machine, debs: &[PathBuf]) -> Result<String> {
    m.put_files(debs, GUEST_DIR)?;
    m.sh(&format!("{SNAPSHOT} >{GUEST_DIR}/before.list"))?;
    let files: Vec<String> =
        debs.iter().map(|d| format!("{GUEST_DIR}/{}", d.file_name().unwrap().to_string_lossy())).collect();
    let names: Vec<String> = debs.iter().map(|d| package_name(d)).collect();
    let (rc, out) = m.run(
        &format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Use-Pty=0 {} 2>&1 &&
             dpkg-query -L {} >{GUEST_DIR}/files.list &&
             echo '{}' >{GUEST_DIR}/packages",
            files.join(" "),
            names.join(" "),
            names.join(" ")
        ),
        Duration::from_secs(600),
    )?;
    if rc != 0 {
        bail!("apt-get install of {} failed (exit {rc}):\n{out}", files.join(" "));
    }
    Ok(out)
}

/// `apt-get purge` of the packages installed, then what must be gone: every file they
/// installed, the boot units' enable links and deb-systemd-helper's state, and any path the
/// root filesystem did not have before the installation (none may appear, none may vanish).
/// Returns the problems found (empty: clean).
pub fn purge_and_check(m: &mut Machine) -> Result<Vec<String>> {
    let out = m.sh(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -o Dpkg::Use-Pty=0 $(cat {GUEST_DIR}/packages) 2>&1"
    ))?;
    let mut problems = Vec::new();
    if !out.contains("Purging configuration files for altdisk") {
        problems.push(format!("apt-get purge did not purge altdisk:\n{out}"));
    }
    let left = m.sh(&format!(
        "for p in $(cat {GUEST_DIR}/packages); do dpkg-query -W $p 2>/dev/null && echo \"dpkg still knows $p\"; done
         while IFS= read -r p; do
             [ -d \"$p\" ] && [ ! -L \"$p\" ] && continue   # directories shared with other packages
             if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"left: $p\"; fi
         done <{GUEST_DIR}/files.list
         find /etc/systemd /usr/lib/systemd /var/lib/systemd/deb-systemd-helper-enabled \
              /var/lib/systemd/deb-systemd-helper-masked -name '*altdisk*' -printf 'left: %p\\n' 2>/dev/null
         for u in altdisk-names altdisk-commit altdisk-firstboot altdisk-changes altdiskd; do
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
