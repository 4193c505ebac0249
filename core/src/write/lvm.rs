//! LVM for the clone: its volume group (named `altinst_rootvg`, fresh PV, VG and LV UUIDs,
//! the source's logical volume names and sizes), activation around the work, and removal.
//! Everything goes through the LVM tools; names are checked so the machine never holds
//! two volume groups of one name.

use std::path::{Path, PathBuf};

use crate::cmd::Cmd;
use crate::error::{Error, Result};

pub fn lv_path(vg: &str, lv: &str) -> PathBuf {
    Path::new("/dev").join(vg).join(lv)
}

/// Volume group names on this machine.
pub fn vg_names() -> Result<Vec<String>> {
    let out = Cmd::new("listing LVM volume groups", "vgs")?.args(["--noheadings", "-o", "vg_name"]).run()?;
    Ok(out.stdout.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
}

/// Refuse a name a volume group on this machine already has.
pub fn check_free_name(vg: &str) -> Result<()> {
    if vg_names()?.iter().any(|n| n == vg) {
        return Err(Error::refused(
            format!("volume group {vg}"),
            "one of that name exists on this machine already (an earlier clone?)",
            "remove it with alt_rootvg_op -X, or rename it, before cloning again",
        ));
    }
    Ok(())
}

/// Make the volume group on `pvs` with the logical volumes `lvs` (name, bytes).
pub fn create(vg: &str, pvs: &[PathBuf], lvs: &[(String, u64)]) -> Result<()> {
    Cmd::new("making LVM physical volumes", "pvcreate")?.args(["-ff", "-y"]).args(pvs).run()?;
    Cmd::new(format!("making volume group {vg}"), "vgcreate")?.args(["-y", vg]).args(pvs).run()?;
    for (lv, size) in lvs {
        Cmd::new(format!("making logical volume {vg}/{lv}"), "lvcreate")?
            .args(["-y", "-W", "y", "-Z", "y", "-L"])
            .arg(format!("{size}b"))
            .args(["-n", lv, vg])
            .run()?;
    }
    Ok(())
}

pub fn activate(vg: &str) -> Result<()> {
    Cmd::new(format!("activating volume group {vg}"), "vgchange")?.args(["-a", "y", vg]).run().map(|_| ())
}

pub fn deactivate(vg: &str) -> Result<()> {
    crate::cmd::settle();
    Cmd::new(format!("deactivating volume group {vg}"), "vgchange")?.args(["-a", "n", vg]).run().map(|_| ())
}

/// Remove a volume group and its physical volumes' labels.
pub fn remove(vg: &str) -> Result<()> {
    let out = Cmd::new(format!("listing the physical volumes of {vg}"), "pvs")?
        .args(["--noheadings", "-o", "pv_name", "-S"])
        .arg(format!("vg_name={vg}"))
        .run()?;
    let pvs: Vec<String> = out.stdout.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    let _ = deactivate(vg);
    Cmd::new(format!("removing volume group {vg}"), "vgremove")?.args(["-f", "-y", vg]).run()?;
    if !pvs.is_empty() {
        Cmd::new("removing LVM physical volume labels", "pvremove")?.args(["-ff", "-y"]).args(&pvs).run()?;
    }
    Ok(())
}
