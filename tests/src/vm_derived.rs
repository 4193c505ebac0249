//! Cached production images built inside a guest: boot a production image made by
//! `tests/vm/build-image.sh` ([`production_image`]) with blank disks, run a build script in
//! it that installs a new system on the first blank disk (vdb) the way an installer does
//! (partitions, filesystems, a copy of the running system, fstab, initramfs and boot loader
//! installed chrooted, which writes the firmware entry), power off, then boot that disk ALONE
//! (as vda) with the NVRAM the build left and run a verification script in it. The cached
//! image is that disk (a standalone raw file) and the NVRAM after the verification boot.
//!
//! This is how the layouts the host cannot make without mounting (LVM, btrfs subvolumes,
//! xfs, LUKS) get a production image. Each [`Recipe`] names its images
//! `$ALTDISK_VM_CACHE/vm-<name>-<hash>` (default /var/cache/altdisk-tests), where <hash>
//! covers the recipe's version, its scripts and the base image's directory name (itself a
//! hash of tests/vm/), so any change builds a new image. Built in `vm-<name>-<hash>.tmp.*`,
//! renamed when complete (COMPLETE is written last); an flock on `vm-<name>-<hash>.lock`
//! keeps two builds from racing. Older `vm-<name>-*` images are pruned after a build
//! (`ALTDISK_VM_PRUNE=0` keeps them). `image.env` in the directory holds the `IMAGE_ENV
//! KEY=VALUE` lines the build printed, and timings.
//!
//! Call [`derived_image`] before booting any machine of your own: a build needs a VM slot,
//! and a process that holds a slot while waiting for the build's lock would wait for the
//! slot timeout.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::vm::{production_image, Image, Kind, Machine};

/// How to build one derived image.
#[derive(Debug, Clone, Copy)]
pub struct Recipe {
    /// The cache name: vm-<name>-<hash>.
    pub name: &'static str,
    /// Bump when the Rust side of the recipe changes in a way the image shows.
    pub version: &'static str,
    /// The production image booted to build it.
    pub base: Kind,
    /// Blank disks of the build machine, in bytes; the first (vdb) becomes the image.
    pub disks: &'static [u64],
    /// Runs in the base guest (bash, as root) and installs the new system on vdb; prints
    /// `IMAGE_ENV KEY=VALUE` lines for image.env.
    pub build: &'static str,
    /// Runs in the new system booted alone (as vda); exit 0 when all is well. A line
    /// `cmdline: ...` is kept in image.env as CMDLINE.
    pub verify: &'static str,
    /// (prompt, text): what the new system's boots need typed at the console (a LUKS
    /// passphrase), see [`Machine::set_console_answer`].
    pub console_answer: Option<(&'static str, &'static str)>,
}

/// The cache root (env ALTDISK_VM_CACHE, default /var/cache/altdisk-tests).
fn cache_root() -> PathBuf {
    std::env::var_os("ALTDISK_VM_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/cache/altdisk-tests"))
}

/// FNV-1a, 64 bits: stable across Rust versions (unlike DefaultHasher).
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn image_in(dir: &Path) -> Image {
    Image { disk: dir.join("disk.raw"), vars: dir.join("vars.fd") }
}

fn complete(dir: &Path) -> bool {
    dir.join("COMPLETE").exists() && dir.join("disk.raw").exists() && dir.join("vars.fd").exists()
}

/// The cached image of `r` (built first if needed: several minutes under TCG, progress on
/// stderr). See the module documentation.
pub fn derived_image(r: &Recipe) -> Result<Image> {
    static LOCK: Mutex<()> = Mutex::new(());
    let base = production_image(r.base)?;
    let base_dir = base
        .disk
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("odd base image path {}", base.disk.display()))?
        .to_string();
    let recipe = format!("{}\n{base_dir}\n{}\n{}", r.version, r.build, r.verify);
    let name = format!("vm-{}-{:016x}", r.name, fnv1a(recipe.as_bytes()));
    let tag = format!("vm-{}", r.name);
    let root = cache_root();
    let out = root.join(&name);
    if complete(&out) {
        return Ok(image_in(&out));
    }

    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(format!("{name}.lock")))
        .context("opening the build lock")?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        eprintln!("{tag}: another build of {} is running: waiting for it", out.display());
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).context("locking the build")?;
    }
    if complete(&out) {
        return Ok(image_in(&out));
    }
    // Leftovers of an interrupted build of this image (we hold its lock).
    let _ = fs::remove_dir_all(&out);
    remove_matching(&root, |n| n.starts_with(&format!("{name}.tmp.")));

    let work = root.join(format!("{name}.tmp.{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir_all(&work)?;
    let start = Instant::now();
    eprintln!("{tag}: building the {} production image in {} (from {base_dir})", r.name, work.display());
    match build(r, &base, &work) {
        Ok(env) => {
            let mut text = format!("BASE_IMAGE={base_dir}\nRECIPE={}\n", r.version);
            for (k, v) in &env {
                text.push_str(&format!("{k}={v}\n"));
            }
            text.push_str(&format!("BUILD_SECONDS={}\n", start.elapsed().as_secs()));
            fs::write(work.join("image.env"), text)?;
            for f in ["disk.raw", "vars.fd"] {
                read_only(&work.join(f))?;
            }
            fs::write(work.join("COMPLETE"), format!("{}\n", uuid::Uuid::new_v4()))?;
            fs::rename(&work, &out).with_context(|| format!("renaming {} to {}", work.display(), out.display()))?;
            eprintln!("{tag}: done in {:.0?}: {}", start.elapsed(), out.display());
        }
        Err(e) => {
            if std::env::var("ALTDISK_KEEP_VM").as_deref() == Ok("1") {
                eprintln!("{tag}: keeping the failed build in {}", work.display());
            } else {
                let _ = fs::remove_dir_all(&work);
            }
            return Err(e.context(format!("building the {} production image", r.name)));
        }
    }
    drop(lock);
    prune(&root, &tag, &name);
    Ok(image_in(&out))
}

/// KEY=VALUE pairs of an image's image.env.
pub fn image_env(image: &Image) -> Result<BTreeMap<String, String>> {
    let p = image.disk.with_file_name("image.env");
    let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// The build proper, into `work`: returns the image.env pairs.
fn build(r: &Recipe, base: &Image, work: &Path) -> Result<BTreeMap<String, String>> {
    let tag = format!("vm-{}", r.name);
    let mut env = BTreeMap::new();
    let mut log = String::new();
    let mut m = Machine::new(&format!("{}-build", r.name), base, r.disks)?;
    if r.base.bios() {
        m.set_bios(true);
    }
    m.boot().context("booting the base image")?;
    eprintln!("{tag}: base image up after {:.0?}; building on vdb", m.last_boot_time().unwrap_or_default());
    let t = Instant::now();
    let (rc, out) = m.run(r.build, Duration::from_secs(3600))?;
    log.push_str(&out);
    fs::write(work.join("build.log"), &log)?;
    if rc != 0 {
        bail!("the build script failed (exit {rc}):\n{}", crate::vm::tail_str(&out, 6000));
    }
    eprintln!("{tag}: built in the guest in {:.0?}", t.elapsed());
    for l in out.lines() {
        if let Some((k, v)) = l.strip_prefix("IMAGE_ENV ").and_then(|kv| kv.split_once('=')) {
            env.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    m.shutdown()?;
    powered_off(&m, "build")?;

    // The new disk, standalone, becomes the image's disk.
    let disk = work.join("disk.raw");
    move_sparse(&m.disks()[1], &disk)?;

    // Verification: the new disk alone (vda), the NVRAM the build wrote.
    m.set_disks(vec![disk.clone()]);
    if let Some((prompt, text)) = r.console_answer {
        m.set_console_answer(prompt, text);
    }
    m.boot().context("booting the new disk alone")?;
    let boot = m.last_boot_time().unwrap_or_default();
    eprintln!("{tag}: the new disk booted alone in {boot:.0?}");
    let (rc, out) = m.run(r.verify, Duration::from_secs(600))?;
    log.push_str("\n--- verification boot ---\n");
    log.push_str(&out);
    fs::write(work.join("build.log"), &log)?;
    if rc != 0 {
        bail!("the new disk booted alone, but: \n{}", crate::vm::tail_str(&out, 6000));
    }
    if let Some(c) = out.lines().find_map(|l| l.strip_prefix("cmdline: ")) {
        env.insert("CMDLINE".into(), c.trim().to_string());
    }
    env.insert("BOOT_SECONDS".into(), boot.as_secs().to_string());
    m.shutdown()?;
    powered_off(&m, "verification")?;
    fs::copy(m.vars(), work.join("vars.fd")).context("copying the NVRAM")?;
    Ok(env)
}

/// The guest powered itself off (rather than being killed after a shutdown timeout).
fn powered_off(m: &Machine, what: &str) -> Result<()> {
    let log = fs::read(m.serial_log()).unwrap_or_default();
    let text = String::from_utf8_lossy(&log);
    let last = text.rsplit("Power down").next().unwrap_or("");
    if !text.contains("Power down") || last.len() > 4096 {
        bail!("the {what} boot did not power off cleanly; end of the console:\n{}", crate::vm::tail_str(&text, 3000));
    }
    Ok(())
}

/// Rename when on the same file system, else a sparse copy.
fn move_sparse(from: &Path, to: &Path) -> Result<()> {
    if fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let st = Command::new("cp").arg("--sparse=always").arg(from).arg(to).status()?;
    if !st.success() {
        bail!("cp {} {} failed", from.display(), to.display());
    }
    Ok(())
}

fn read_only(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o444)).with_context(|| format!("chmod {}", p.display()))
}

fn remove_matching(root: &Path, f: impl Fn(&str) -> bool) {
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_name().to_str().is_some_and(&f) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Drops images of this recipe's other versions (unless being built: their lock is held), so
/// the cache does not grow with each edit. ALTDISK_VM_PRUNE=0 keeps them.
fn prune(root: &Path, tag: &str, keep: &str) {
    if std::env::var("ALTDISK_VM_PRUNE").as_deref() == Ok("0") {
        return;
    }
    let prefix = format!("{tag}-");
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        let Some(n) = e.file_name().to_str().map(String::from) else { continue };
        // An image directory, or the lock of a build that failed (no directory).
        let n = match n.strip_suffix(".lock") {
            Some(base) if !root.join(base).exists() => base.to_string(),
            _ => n,
        };
        // vm-<tag>-<16 hex digits>: not another recipe whose name starts like this one.
        let ours = n.strip_prefix(&prefix).is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if !ours || n == keep {
            continue;
        }
        let lock_path = root.join(format!("{n}.lock"));
        let Ok(lock) = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path) else {
            continue;
        };
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            if root.join(&n).is_dir() {
                let _ = fs::remove_dir_all(root.join(&n));
                eprintln!("{tag}: pruned the outdated image {}", root.join(&n).display());
            }
            remove_matching(root, |x| x.starts_with(&format!("{n}.tmp.")));
            let _ = fs::remove_file(&lock_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_reference() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
