//! The commands of the rescue image, also useful on any running system: find every system on
//! the disks, make one boot (from now on, or once), boot one at once, repair one's boot.

use std::path::PathBuf;

use clap::Args;

use altdisk::job::Job;
use altdisk::plan::BootlistMode;

use crate::progress::Progress;
use crate::Result;

#[derive(Args, Debug)]
pub struct FindArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn find(a: FindArgs) -> Result<()> {
    let found = altdisk::systems::find::find()?;
    if a.json {
        let v = serde_json::json!({"apiVersion": altdisk::API_VERSION, "systems": found});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", altdisk::systems::find::render(&found));
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The disk of the system to boot (see `altdisk find`).
    #[arg(value_name = "DISK")]
    pub disk: String,
    /// Boot it at the next boot only (UEFI BootNext); the boot order stays.
    #[arg(long)]
    pub once: bool,
    /// Reboot into it when done.
    #[arg(long)]
    pub reboot: bool,
}

pub fn restore(a: RestoreArgs) -> Result<()> {
    let job = Job::new();
    let progress = Progress::start(&job, false);
    let r = altdisk::systems::restore::restore(&a.disk, a.once, &job);
    progress.finish();
    println!("{}", r?);
    if a.reboot {
        altdisk::cmd::Cmd::new("rebooting", "systemctl")?.arg("reboot").run()?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct BootNowArgs {
    /// The disk of the system to boot now (see `altdisk find`).
    #[arg(value_name = "DISK")]
    pub disk: String,
    /// Boot it with kexec instead of the firmware (the boot loader is not used).
    #[arg(long)]
    pub kexec: bool,
}

pub fn boot_now(a: BootNowArgs) -> Result<()> {
    let job = Job::new();
    let progress = Progress::start(&job, false);
    let r = altdisk::systems::restore::boot_now(&a.disk, a.kexec, &job);
    progress.finish();
    println!("{}", r?);
    Ok(())
}

#[derive(Args, Debug)]
pub struct RepairArgs {
    /// The disk of the system whose boot to repair (not the running one).
    #[arg(value_name = "DISK")]
    pub disk: String,
    /// Make its boot entry but leave the boot order alone.
    #[arg(short = 'B')]
    pub no_bootlist: bool,
    /// Where the system is mounted while it is repaired.
    #[arg(long = "mount-at", value_name = "DIR", default_value = altdisk::ALT_INST)]
    pub mount_at: PathBuf,
}

pub fn repair(a: RepairArgs) -> Result<()> {
    let job = Job::new();
    let progress = Progress::start(&job, false);
    let mode = if a.no_bootlist { BootlistMode::Leave } else { BootlistMode::First };
    let r = altdisk::systems::restore::repair(&a.disk, &a.mount_at, mode, &job);
    progress.finish();
    println!("{}", r?);
    Ok(())
}
