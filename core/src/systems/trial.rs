//! Booting an existing alternate system once, as a trial: its UEFI entry becomes BootNext
//! and its record says `trial`, so at its next boot altdisk's commit unit puts it first in
//! the boot order when it came up healthy (see [`crate::boot::units::commit`]). A system that
//! fails to boot leaves the old order in charge. The same as `alt_disk_copy --trial` does
//! for a new clone, for one made earlier.

use crate::boot::efi::{self, BootManager, Efivarfs};
use crate::discover::record::{self, State};
use crate::error::{Error, Result};
use crate::systems::ops as altops;

/// Boot the system on `disk` once, as a trial; returns its entry (Boot####).
pub fn trial_boot(disk: &str) -> Result<String> {
    let sys = altops::find_by_disk(disk)?;
    let name = format!("{} on {}", sys.env.name, sys.disk_names());
    if altops::is_running(&sys)? {
        return Err(Error::refused(&name, "it is the running system", "choose an alternate system to try"));
    }
    if sys.env.state != State::Complete {
        return Err(Error::refused(
            &name,
            format!("it is not bootable yet ({})", sys.env.state.describe()),
            format!("make it bootable first: alt_disk_copy -P3 -d {disk}"),
        ));
    }
    let Some(n) = sys.env.boot_entry else {
        return Err(Error::not_found(
            format!("UEFI boot entry of {name}"),
            "its record names none",
            format!("make one by running phase 3 again: alt_disk_copy -P3 -d {disk}"),
        ));
    };
    let m = BootManager { vars: Efivarfs::system()? };
    if !m.entries()?.iter().any(|e| e.number == n) {
        return Err(Error::not_found(
            format!("{} of {name}", efi::boot_name(n)),
            "the firmware no longer has it",
            format!("make it again by running phase 3: alt_disk_copy -P3 -d {disk}"),
        ));
    }
    for d in &sys.disks {
        let mut e =
            record::read(&d.path).ok_or_else(|| Error::corrupt(format!("record on {}", d.name), "it vanished"))??;
        e.trial = true;
        record::update(&d.path, &e)?;
    }
    m.set_next(Some(n))?;
    Ok(efi::boot_name(n))
}
