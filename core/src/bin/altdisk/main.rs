//! The `altdisk` command, also answering to the AIX names `alt_disk_copy`, `alt_rootvg_op`
//! and `bootlist` when called through links with those names. Thin: it parses arguments,
//! calls the library and renders results; errors become one line and a documented exit code.

mod aix;
mod progress;
mod rescue;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use altdisk::error::Error;

#[derive(Parser)]
#[command(
    name = "altdisk",
    version,
    about = "Clone the running system onto free disks as a bootable alternate (AIX alt_disk_copy for Linux)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Clone the system onto free disks (AIX alt_disk_copy; same flags).
    Copy(aix::CopyArgs),
    /// Print the plan for a clone without writing anything (same flags as copy).
    Plan(aix::CopyArgs),
    /// Print the default layout (TOML) to edit and pass with -i.
    Layout(aix::LayoutArgs),
    /// List disks with their role: rootvg, altinst_rootvg, free, in use.
    Lspv(aix::LspvArgs),
    /// Operate on alternate systems (AIX alt_rootvg_op).
    Op(aix::OpArgs),
    /// Unmount a clone left mounted by -P1 (alt_rootvg_op -S).
    Sleep(aix::SleepArgs),
    /// Show or set the firmware boot order (AIX bootlist).
    Bootlist(aix::BootlistArgs),
    /// Compare a clone with its source, file by file: exit 0 when equal, 7 when it differs.
    Verify(aix::VerifyArgs),
    /// Every system on the disks: running, made by altdisk, or another Linux root.
    Find(rescue::FindArgs),
    /// Make the system on DISK the one that boots (UEFI), from now on or --once.
    Restore(rescue::RestoreArgs),
    /// Boot the system on DISK now (UEFI BootNext and a reboot, or kexec).
    BootNow(rescue::BootNowArgs),
    /// Re-run phase 3 (initramfs, boot loader, boot entry) on the system on DISK.
    Repair(rescue::RepairArgs),
    /// Run at boot by altdisk's systemd units.
    #[command(hide = true)]
    BootHook(aix::BootHookArgs),
    /// Install and enable altdisk's boot units (rootvg/old_rootvg names, trial commit).
    InstallUnits(aix::InstallUnitsArgs),
    /// For udev rules: KEY=VALUE lines describing a device of an altdisk system.
    #[command(hide = true)]
    UdevProbe { device: std::path::PathBuf },
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let prog = argv
        .first()
        .and_then(|a| PathBuf::from(a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "altdisk".into());
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALTDISK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().init();

    // Called by an AIX name: the whole command line is that command's.
    let cmd = match prog.as_str() {
        "alt_disk_copy" => parse_as::<aix::CopyArgs>(&prog, &argv).map(Command::Copy),
        "alt_rootvg_op" => parse_as::<aix::OpArgs>(&prog, &argv).map(Command::Op),
        "bootlist" => parse_as::<aix::BootlistArgs>(&prog, &argv).map(Command::Bootlist),
        _ => Some(Cli::parse_from(&argv).cmd),
    };
    let Some(cmd) = cmd else { unreachable!("parse_as exits on error") };
    let name = match &cmd {
        Command::Copy(_) if prog == "alt_disk_copy" => "alt_disk_copy",
        Command::Op(_) if prog == "alt_rootvg_op" => "alt_rootvg_op",
        Command::Bootlist(_) if prog == "bootlist" => "bootlist",
        _ => "altdisk",
    };
    let r = match cmd {
        Command::Copy(a) => aix::copy(a, false),
        Command::Plan(a) => aix::copy(a, true),
        Command::Layout(a) => aix::layout(a),
        Command::Lspv(a) => aix::lspv(a),
        Command::Op(a) => aix::op(a),
        Command::Sleep(a) => aix::sleep(a),
        Command::Bootlist(a) => aix::bootlist(a),
        Command::Verify(a) => aix::verify(a),
        Command::Find(a) => rescue::find(a),
        Command::Restore(a) => rescue::restore(a),
        Command::BootNow(a) => rescue::boot_now(a),
        Command::Repair(a) => rescue::repair(a),
        Command::BootHook(a) => aix::boot_hook(a),
        Command::InstallUnits(a) => aix::install_units(a),
        Command::UdevProbe { device } => {
            for (k, v) in altdisk::discover::record::udev_properties(&device) {
                println!("{k}={v}");
            }
            Ok(())
        }
    };
    if let Err(e) = r {
        eprintln!("{name}: error: {e}");
        std::process::exit(e.exit_code());
    }
}

fn parse_as<T: clap::Args>(prog: &str, argv: &[OsString]) -> Option<T> {
    // Program names live for the whole run; leaking one string is fine.
    let name: &'static str = Box::leak(prog.to_string().into_boxed_str());
    let mut cmd = T::augment_args(clap::Command::new(name).disable_version_flag(true));
    match cmd.try_get_matches_from_mut(argv) {
        Ok(mut m) => match <T as clap::FromArgMatches>::from_arg_matches_mut(&mut m) {
            Ok(v) => Some(v),
            Err(e) => e.format(&mut cmd).exit(),
        },
        Err(e) => e.exit(),
    }
}

/// Shorthand for the binary's own error results.
pub(crate) type Result<T> = std::result::Result<T, Error>;
