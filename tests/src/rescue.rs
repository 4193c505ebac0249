//! The rescue ISO for the tests: built (or reused from its cache) by
//! `image-build/build-iso.sh` from this checkout's Debian packages, and what the tests
//! check on it without booting (El Torito entries, the live root's packages).
//!
//! The packages are those of the VM package test ([`crate::pkg::debs`]): `$ALTDISK_DEBS`
//! (set by tests/run.sh), or built once per test process by `image-build/build-debs.sh`
//! (an unchanged tree gives packages with the same contents, so the cached ISO is reused).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The checkout's root (the workspace).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs a script of this checkout with its stderr shown (progress), its stdout returned.
fn script(path: &Path, args: &[&str], limit: Duration) -> Result<String> {
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=30").arg(limit.as_secs().to_string()).arg("bash").arg(path).args(args);
    let out = cmd
        .current_dir(repo())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if out.status.code() == Some(124) {
        bail!("{} did not finish within {limit:?}", path.display());
    }
    if !out.status.success() {
        bail!("{} {} failed ({}); its messages are above", path.display(), args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The rescue ISO of this checkout: its cached path (a cold build takes about 8 minutes;
/// its progress goes to stderr). Built once per test process; builds across processes are
/// serialised by build-iso.sh's lock.
pub fn rescue_iso() -> Result<PathBuf> {
    static ISO: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut done = ISO.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = done.as_ref() {
        return Ok(p.clone());
    }
    let mut args = Vec::new();
    for deb in crate::pkg::debs()? {
        args.push("--deb".to_string());
        args.push(deb.to_str().context("non-UTF-8 package path")?.to_string());
    }
    let limit = Duration::from_secs(
        std::env::var("ALTDISK_IMAGE_BUILD_TIMEOUT").ok().and_then(|v| v.parse().ok()).unwrap_or(3600),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = script(&repo().join("image-build/build-iso.sh"), &args, limit)?;
    let iso = PathBuf::from(out.lines().last().unwrap_or("").trim());
    if !iso.is_file() || !iso.parent().is_some_and(|d| d.join("COMPLETE").exists()) {
        bail!("build-iso.sh printed {:?}, which is no complete image", iso);
    }
    *done = Some(iso.clone());
    Ok(iso)
}

/// `xorriso -indev ISO -report_el_torito plain`: the boot record and its images.
pub fn el_torito_report(iso: &Path) -> Result<String> {
    let out = Command::new("xorriso")
        .arg("-indev")
        .arg(iso)
        .args(["-report_el_torito", "plain"])
        .output()
        .context("running xorriso (image-build/install-deps.sh)")?;
    if !out.status.success() {
        bail!("xorriso -report_el_torito failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The report is on stdout, the drive and boot record summary on stderr: both count.
    Ok(format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout)))
}

/// Copies one file out of the ISO (xorriso -osirrox).
pub fn extract(iso: &Path, inside: &str, to: &Path) -> Result<()> {
    let out = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", inside])
        .arg(to)
        .output()
        .context("running xorriso")?;
    if !out.status.success() || !to.exists() {
        bail!("xorriso could not extract {inside}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Reads one file of a squashfs image (unsquashfs -cat).
pub fn squashfs_cat(sqfs: &Path, inside: &str) -> Result<Vec<u8>> {
    let out = Command::new("unsquashfs")
        .args(["-cat"])
        .arg(sqfs)
        .arg(inside)
        .output()
        .context("running unsquashfs (apt-get install squashfs-tools)")?;
    if !out.status.success() {
        bail!("unsquashfs -cat {inside} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// Lists a squashfs image's paths (unsquashfs -lls: type, mode, owner, size, path).
pub fn squashfs_list(sqfs: &Path) -> Result<String> {
    let out = Command::new("unsquashfs")
        .args(["-lls", "-d", ""])
        .arg(sqfs)
        .output()
        .context("running unsquashfs (apt-get install squashfs-tools)")?;
    if !out.status.success() {
        bail!("unsquashfs -lls failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Counts the pixels of a binary PPM (P6, as QEMU's screendump writes it) that differ from
/// the first (the background); errors on anything else.
pub fn ppm_foreground_pixels(ppm: &[u8]) -> Result<(usize, usize, usize)> {
    // Header: "P6" w h maxval, whitespace separated, then one whitespace byte and the data.
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < ppm.len() && ppm[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < ppm.len() && !ppm[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            bail!("not a PPM: the header ends early");
        }
        fields.push(String::from_utf8_lossy(&ppm[start..i]).into_owned());
    }
    if fields[0] != "P6" || fields[3] != "255" {
        bail!("not an 8-bit binary PPM (header {fields:?})");
    }
    let w: usize = fields[1].parse()?;
    let h: usize = fields[2].parse()?;
    let data = &ppm[i + 1..];
    if data.len() < w * h * 3 {
        bail!("PPM data too short: {} bytes for {w}x{h}", data.len());
    }
    let bg = &data[..3];
    let fg = data[..w * h * 3].chunks(3).filter(|p| p != &bg).count();
    Ok((w, h, fg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_counts_what_differs_from_the_background() {
        let mut p = b"P6\n3 2\n255\n".to_vec();
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 255, 255, 255, 0, 0, 0, 9, 9, 9, 0, 0, 0]);
        assert_eq!(ppm_foreground_pixels(&p).unwrap(), (3, 2, 2));
        assert!(ppm_foreground_pixels(b"P5\n1 1\n255\n\0").is_err());
        assert!(ppm_foreground_pixels(b"P6\n2 2\n255\n\0\0\0").is_err());
    }
}
