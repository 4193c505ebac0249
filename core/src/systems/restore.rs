//! Making a system found on a disk the one that boots, from the rescue image or any running
//! system: `altdisk restore DISK` puts its UEFI entry first (rebuilding the entry from its
//! ESP when the NVRAM lost it), `--once` boots it at the next boot only (BootNext), and
//! `altdisk boot-now DISK` boots it at once (BootNext and a reboot, or kexec where the
//! firmware cannot serve: a BIOS machine, a rescue system started without UEFI). `altdisk
//! repair DISK` re-runs phase 3 on a system that is not running: its initramfs, its boot
//! loader (with the removable fallback path) and its boot entry.

use std::path::{Path, PathBuf};

use crate::boot::efi::{self, BootManager, Efivarfs};
use crate::discover::blockdev::{self, Disk, Probe};
use crate::discover::boot::{self as bootinfo, Firmware};
use crate::discover::source::ESP_TYPE;
use crate::error::{Error, IoContext, Result};
use crate::job::Job;
use crate::plan::BootlistMode;
use crate::systems::find::{self, Found};
use crate::systems::mount::SystemMount;
use crate::write::fs::Mounted;

/// The disk a system boots from (its first disk) and the system.
fn system_and_disk(name: &str) -> Result<(Found, Disk)> {
    let f = find::on_disk(name)?;
    let disks = blockdev::list()?;
    let first = f.disks.first().cloned().unwrap_or_default();
    let d = disks
        .into_iter()
        .find(|d| d.name == first)
        .ok_or_else(|| Error::not_found(format!("disk {first}"), "it vanished while looking", "try again"))?;
    Ok((f, d))
}

fn refuse_running(f: &Found) -> Result<()> {
    if f.kind == "running" {
        return Err(Error::refused(
            format!("{} on {}", f.name, f.disks.join(" ")),
            "it is the running system",
            "name the system to restore or repair (see `altdisk find`)",
        ));
    }
    Ok(())
}

fn bios_refusal(d: &Disk) -> Error {
    Error::unsupported(
        format!("changing the boot order to {}", d.name),
        ": on a BIOS machine the firmware's setup owns the order",
        format!(
            "choose {} in the firmware's boot menu at power-on (often F12, F11 or Esc), or make it the first disk in the setup; `altdisk repair {}` puts its GRUB in its boot code",
            d.name, d.name
        ),
    )
}

/// The ESP of a disk: (partition number, device).
fn esp_of(d: &Disk) -> Option<(u32, PathBuf)> {
    let gpt = crate::discover::gpt::read_gpt(&d.path)?;
    let esp = uuid::Uuid::parse_str(ESP_TYPE).ok()?.to_bytes_le();
    let (n, _) = gpt.iter().find(|(_, p)| p.is_used() && p.partition_type_guid == esp)?;
    Some((n, crate::write::partition::partition_path(&d.path, n)))
}

/// The loader file a firmware entry should start from an ESP mounted at `esp`: the system's
/// own (through shim when it has one), else the removable fallback.
fn loader_on(esp: &Path) -> Option<String> {
    let efi = esp.join("EFI");
    let mut dirs: Vec<String> = std::fs::read_dir(&efi)
        .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_str().map(String::from)).collect())
        .unwrap_or_default();
    dirs.sort();
    for want in ["shimx64.efi", "grubx64.efi", "systemd-bootx64.efi"] {
        for d in dirs.iter().filter(|d| !d.eq_ignore_ascii_case("BOOT")) {
            if efi.join(d).join(want).is_file() {
                return Some(format!("\\EFI\\{d}\\{want}"));
            }
        }
    }
    dirs.iter()
        .find(|d| d.eq_ignore_ascii_case("BOOT") && efi.join(d).join("BOOTX64.EFI").is_file())
        .map(|d| format!("\\EFI\\{d}\\BOOTX64.EFI"))
}

/// Make the entry of the system on `d` (reuse one that boots from its ESP, else rebuild it
/// from what its ESP holds) and place it as `mode` says. Returns a line saying what was done.
fn place(f: &Found, d: &Disk, mode: BootlistMode, job: &Job) -> Result<String> {
    if Firmware::current() == Firmware::Bios {
        return Err(bios_refusal(d));
    }
    let m = BootManager { vars: Efivarfs::system()? };
    let (esp_n, esp_dev) = esp_of(d).ok_or_else(|| {
        Error::not_found(
            format!("EFI system partition on {}", d.name),
            "the disk has none",
            "repair it from a system that has one",
        )
    })?;
    let hd = efi::HardDrive::of_partition(&d.path, esp_n)?;
    let existing = m.entries()?.into_iter().find(|e| e.option.active() && e.option.hd.as_ref() == Some(&hd));
    let n = match existing {
        Some(e) => e.number,
        None => {
            // The NVRAM lost it: rebuild from the loader the ESP holds (read-only look).
            let at = PathBuf::from(format!("/run/altdisk/look-{}/esp-{}", std::process::id(), d.name));
            std::fs::create_dir_all(&at).ctx("making a mount point", &at)?;
            let file = {
                let _esp = Mounted::mount_with(&esp_dev, &at, "vfat", None, true)?;
                loader_on(&at)
            };
            let _ = std::fs::remove_dir(&at);
            let file = file.ok_or_else(|| {
                Error::not_found(
                    format!("boot loader on {}", esp_dev.display()),
                    "its ESP holds no EFI loader",
                    format!("repair the system first: altdisk repair {}", d.name),
                )
            })?;
            let option = efi::LoadOption::new(&format!("{} on {}", f.name, d.name), hd.clone(), &file);
            let n = m.add(&option)?;
            job.info(format!("made {} ({}) booting {file}", efi::boot_name(n), option.description));
            n
        }
    };
    Ok(match mode {
        BootlistMode::Trial => {
            m.set_next(Some(n))?;
            format!("{} on {} boots next, once ({})", f.name, d.name, efi::boot_name(n))
        }
        _ => {
            m.put_first(&[n])?;
            format!("{} on {} is first in the UEFI boot order ({})", f.name, d.name, efi::boot_name(n))
        }
    })
}

fn refuse_unbootable(f: &Found, d: &Disk) -> Result<()> {
    if !f.bootable {
        return Err(Error::refused(
            format!("{} on {}", f.name, d.name),
            format!(
                "it does not look bootable ({}{})",
                f.state,
                if f.kernels.is_empty() { ", no kernel in /boot" } else { "" }
            ),
            format!("repair it first (altdisk repair {}), or choose another system (altdisk find)", d.name),
        ));
    }
    Ok(())
}

/// `altdisk restore DISK [--once]`: the system on DISK boots from now on (or next time only).
pub fn restore(disk: &str, once: bool, job: &Job) -> Result<String> {
    let (f, d) = system_and_disk(disk)?;
    refuse_running(&f)?;
    refuse_unbootable(&f, &d)?;
    place(&f, &d, if once { BootlistMode::Trial } else { BootlistMode::First }, job)
}

/// `altdisk boot-now DISK [--kexec]`: boot the system on DISK at once, leaving the boot order
/// as it is: BootNext and a reboot on UEFI, or kexec (also where UEFI cannot serve). A system
/// that does not look bootable is refused before the machine goes down.
pub fn boot_now(disk: &str, kexec: bool, job: &Job) -> Result<String> {
    let (f, d) = system_and_disk(disk)?;
    refuse_running(&f)?;
    refuse_unbootable(&f, &d)?;
    if !kexec && Firmware::current() == Firmware::Uefi {
        let line = place(&f, &d, BootlistMode::Trial, job)?;
        job.info(line.clone());
        crate::cmd::Cmd::new("rebooting", "systemctl")?.arg("reboot").run()?;
        return Ok(format!("{line}; rebooting"));
    }
    kexec_into(&f, job)
}

/// Load the system's newest kernel with kexec and jump into it.
fn kexec_into(f: &Found, job: &Job) -> Result<String> {
    let at = PathBuf::from(format!("/run/altdisk/look-{}/kexec", std::process::id()));
    let sm = SystemMount::mount(&f.root, &at, true)?;
    let kernel = f.kernels.last().cloned().ok_or_else(|| {
        Error::not_found(format!("kernel of {}", f.name), "its /boot holds no vmlinuz", "repair it first")
    })?;
    let vmlinuz = sm.root.join(format!("boot/vmlinuz-{kernel}"));
    let initrd = ["initrd.img-", "initramfs-"]
        .iter()
        .map(|p| sm.root.join(format!("boot/{p}{kernel}")))
        .chain([sm.root.join(format!("boot/initramfs-{kernel}.img"))])
        .find(|p| p.is_file());
    let cmdline = kernel_cmdline(&sm.root, f);
    let mut c = crate::cmd::Cmd::new("loading the kernel with kexec", "kexec")?.arg("-l").arg(&vmlinuz);
    if let Some(i) = &initrd {
        c = c.arg(format!("--initrd={}", i.display()));
    }
    c.arg(format!("--command-line={cmdline}")).run()?;
    sm.unmount()?;
    job.info(format!("loaded {kernel} of {} ({cmdline})", f.name));
    crate::cmd::Cmd::new("starting the loaded kernel", "systemctl")?.arg("kexec").run()?;
    Ok(format!("booting {} ({kernel}) with kexec", f.name))
}

/// The kernel command line a system boots with: its own (/etc/kernel/cmdline, else the first
/// `linux` line of its grub.cfg), else its root by UUID.
fn kernel_cmdline(root: &Path, f: &Found) -> String {
    if let Ok(t) = std::fs::read_to_string(root.join("etc/kernel/cmdline")) {
        if !t.trim().is_empty() {
            return t.trim().to_string();
        }
    }
    if let Ok(t) = std::fs::read_to_string(root.join("boot/grub/grub.cfg")) {
        if let Some(l) = t.lines().map(str::trim).find(|l| l.starts_with("linux ") || l.starts_with("linux\t")) {
            let args: Vec<&str> = l.split_whitespace().skip(2).collect();
            if args.iter().any(|a| a.starts_with("root=")) {
                return args.join(" ");
            }
        }
    }
    format!("root=UUID={} ro", f.root_uuid.clone().unwrap_or_default())
}

/// The system on `disk`, when `repair` may be asked for it (it is not the running one): what
/// the service checks before it starts a repair job.
pub fn repairable(disk: &str) -> Result<Found> {
    let (f, _) = system_and_disk(disk)?;
    refuse_running(&f)?;
    Ok(f)
}

/// `altdisk repair DISK`: re-run phase 3 on the system on DISK (not the running one): mounted
/// read-write as its fstab says, its initramfs regenerated and its boot loader installed with
/// its own tools (chrooted), then its boot entry made and put first (`mode`), as after a clone.
pub fn repair(disk: &str, mount_at: &Path, mode: BootlistMode, job: &Job) -> Result<String> {
    let (f, d) = system_and_disk(disk)?;
    refuse_running(&f)?;
    if f.kind == "altdisk" || f.kind == "old_rootvg" {
        if let Some(Ok(_)) = crate::discover::record::read(&d.path) {
            job.info("a system altdisk made: its phase 3 runs again through the clone pipeline");
        }
    }
    crate::plan::safety::check_mount_at(mount_at)?;
    let me = crate::plan::lock::Holder::this_run();
    let _locks = f
        .disks
        .iter()
        .map(|n| crate::plan::lock::TargetLock::acquire(&PathBuf::from(format!("/dev/{n}")), &me))
        .collect::<Result<Vec<_>>>()?;
    let sm = SystemMount::mount(&f.root, mount_at, false)?;
    let r = (|| -> Result<String> {
        let esp = ["boot/efi", "efi"].iter().find(|p| {
            let t = sm.root.join(p);
            crate::discover::mounts::read().is_ok_and(|tab| crate::discover::mounts::mount_at(&tab, &t).is_some())
        });
        let setup = bootinfo::detect(&sm.root, Firmware::current(), esp.map(|e| format!("/{e}")).as_deref())?;
        let ids = crate::boot::bootloader::RootIds {
            old: vec![],
            new: format!("UUID={}", Probe::read(&f.root)?.uuid.unwrap_or_default()),
            subvol: None,
        };
        crate::boot::bootloader::install(&sm.root, &setup, &[d.path.as_path()], &ids, "", job)?;
        let mut said = format!("{} on {}: initramfs and boot loader installed", f.name, d.name);
        if setup.firmware == Firmware::Uefi {
            if let Some((n, _)) = esp_of(&d) {
                let hd = efi::HardDrive::of_partition(&d.path, n)?;
                if let Some(e) = crate::boot::entry::place_boot_entry(&setup, &f.name, &d, hd, mode, job, |_| Ok(()))? {
                    said.push_str(&format!("; {} made", efi::boot_name(e)));
                }
            }
        }
        Ok(said)
    })();
    let u = sm.unmount();
    let said = r?;
    u?;
    Ok(said)
}
