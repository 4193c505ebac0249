//! A system's UEFI boot entry: made (or reused) for its ESP and placed in the boot order as
//! asked: first, left alone, or booted once (BootNext). Used by a run's ending and by the
//! tools that restore or repair a system found on a disk.

use crate::boot::efi;
use crate::discover::blockdev::Disk;
use crate::discover::boot::{BootSetup, Firmware};
use crate::error::Result;
use crate::job::Job;
use crate::plan::BootlistMode;

/// Make a boot entry for the system whose ESP is `hd` on `disk` and place it as `mode` says.
/// `made` runs between writing the entry and changing the order (the caller records the
/// entry's number there), so a cut between the two never leaves the order naming an entry
/// nobody recorded. Returns the entry's number; None on BIOS.
pub fn place_boot_entry(
    setup: &BootSetup,
    name: &str,
    disk: &Disk,
    hd: efi::HardDrive,
    mode: BootlistMode,
    job: &Job,
    made: impl FnOnce(u16) -> Result<()>,
) -> Result<Option<u16>> {
    if setup.firmware == Firmware::Bios {
        job.info(format!("BIOS machine: the boot order belongs to the firmware setup; {} now carries GRUB", disk.name));
        return Ok(None);
    }
    let file = setup.efi_file().expect("UEFI loaders have a file");
    let option = efi::LoadOption::new(&format!("{name} on {}", disk.name), hd.clone(), &file);
    let m = efi::BootManager { vars: efi::Efivarfs::system()? };
    for n in m.remove_strays(&option.description, &hd)? {
        job.info(format!("removed {}: a stray entry of an earlier, interrupted run", efi::boot_name(n)));
    }
    let n = m.add(&option)?;
    made(n)?;
    match mode {
        BootlistMode::First => {
            m.put_first(&[n])?;
            crate::job::test_pause_at("boot order written");
            job.info(format!("{} ({}) is first in the UEFI boot order", efi::boot_name(n), option.description));
        }
        BootlistMode::Trial => {
            m.set_next(Some(n))?;
            job.info(format!(
                "{} ({}) boots next, once; it stays when the clone comes up healthy",
                efi::boot_name(n),
                option.description
            ));
        }
        BootlistMode::Leave => {
            job.info(format!("{} ({}) made; the boot order is left alone (-B)", efi::boot_name(n), option.description))
        }
    }
    Ok(Some(n))
}
