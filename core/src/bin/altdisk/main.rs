//! The `altdisk` command, also answering to the AIX names `alt_disk_copy`, `alt_rootvg_op`
//! and `bootlist` when called through links with those names. Thin: it parses arguments,
//! calls the library and renders results; errors become one line and a documented exit code.

mod aix;
#[cfg(test)]
mod docs;
mod progress;
mod rescue;
mod usage;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};

use altdisk::error::Error;

#[derive(Parser)]
#[command(
    name = "altdisk",
    version,
    disable_version_flag = true,
    about = "Clone the running system onto free disks as a bootable alternate (AIX alt_disk_copy for Linux)",
    long_about = "Clone the running system onto free disks as a bootable alternate (AIX alt_disk_copy for \
                  Linux). The clone (altinst_rootvg) is a complete, independent copy with its own \
                  filesystem UUIDs, partition GUIDs and disk GUID, its /etc/fstab rewritten to match; it \
                  can be updated while production keeps running, and booted through the firmware boot \
                  list. The former system is then old_rootvg, one boot-order change away.\n\n\
                  Called as alt_disk_copy, alt_rootvg_op or bootlist (links to altdisk), the whole \
                  command line is that AIX command's."
)]
struct Cli {
    /// Print the version and exit.
    #[arg(long, action = ArgAction::Version)]
    version: Option<bool>,
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
    /// Track what changes in the system's filesystems (ext4, xfs), so that a refresh
    /// compares only what changed; runs until stopped (altdisk-changes.service).
    Track {
        /// Track the system mounted at DIR instead of the running one.
        #[arg(long, value_name = "DIR")]
        source: Option<std::path::PathBuf>,
    },
    /// For udev rules: KEY=VALUE lines describing a device of an altdisk system.
    #[command(hide = true)]
    UdevProbe {
        /// The block device udev is looking at.
        device: std::path::PathBuf,
    },
}

/// The program names altdisk answers to; the first is its own.
pub(crate) const PROGRAMS: [&str; 4] = ["altdisk", "alt_disk_copy", "alt_rootvg_op", "bootlist"];

/// The command line definition of one program name (see [`PROGRAMS`]).
pub(crate) fn program(name: &str) -> clap::Command {
    use clap::Args;
    let aix = |name: &'static str, about: &'static str, long: &'static str| {
        clap::Command::new(name)
            .version(env!("CARGO_PKG_VERSION"))
            .disable_version_flag(true)
            .about(about)
            .long_about(long)
            .arg(
                clap::Arg::new("version").long("version").action(ArgAction::Version).help("Print the version and exit"),
            )
    };
    match name {
        "alt_disk_copy" => aix::CopyArgs::augment_args(aix(
            "alt_disk_copy",
            "Clone the running system onto free disks as a bootable alternate (altinst_rootvg)",
            "Clone the running system onto free disks as a bootable alternate, altinst_rootvg, in \
             three phases as on AIX: 1 copies (partitions, filesystems, files, fstab), 2 customizes \
             (packages, scripts, resolv.conf, device reset), 3 makes it bootable (initramfs, boot \
             loader, UEFI boot list). Without phase 3 the clone stays mounted at /alt_inst; -P2, -P3 \
             and -P23 resume a clone made earlier. Targets are whole disks or image files; altdisk \
             writes nothing before the whole plan has been checked, and refuses disks in use or \
             holding data (--force overrides only the latter).",
        )),
        "alt_rootvg_op" => aix::OpArgs::augment_args(aix(
            "alt_rootvg_op",
            "Query, wake, sleep, customize, rename or remove alternate systems",
            "Operate on the alternate systems altdisk made (altinst_rootvg, old_rootvg): -q says which \
             system lives on a disk, -W mounts one at /alt_inst (never the running one), -C customizes \
             the awake one with the phase 2 flags, -S unmounts it (-t first rebuilds its boot image), \
             -v renames one, -X removes one (its boot entries go, its disks are wiped and free).",
        )),
        "bootlist" => aix::BootlistArgs::augment_args(aix(
            "bootlist",
            "Show or set the firmware boot order by disk",
            "Show the UEFI boot order as disks and the systems on them (-m normal -o), put disks first \
             in it (bootlist -m normal sdb [sda ...]; every other entry stays after them), boot a disk \
             once (--next), or show what booted last (-m prevboot). On a BIOS machine the order \
             belongs to the firmware: bootlist lists the disks that carry a boot loader.",
        )),
        _ => Cli::command(),
    }
}

/// Parse the command line of the program called `prog`.
fn parse(prog: &str, argv: &[OsString]) -> std::result::Result<Command, clap::Error> {
    let mut cmd = program(prog);
    let m = cmd.try_get_matches_from_mut(argv)?;
    // Copy and plan: -d and --target in command-line order (clap holds them apart).
    let copy_args = |m: &clap::ArgMatches| aix::CopyArgs::from_matches(m).map_err(|e| e.format(&mut cmd.clone()));
    Ok(match prog {
        "alt_disk_copy" => Command::Copy(copy_args(&m)?),
        "alt_rootvg_op" => Command::Op(aix::OpArgs::from_arg_matches(&m).map_err(|e| e.format(&mut cmd.clone()))?),
        "bootlist" => {
            Command::Bootlist(aix::BootlistArgs::from_arg_matches(&m).map_err(|e| e.format(&mut cmd.clone()))?)
        }
        _ => match m.subcommand() {
            Some(("copy", sub)) => Command::Copy(copy_args(sub)?),
            Some(("plan", sub)) => Command::Plan(copy_args(sub)?),
            _ => Cli::from_arg_matches(&m).map_err(|e| e.format(&mut cmd.clone()))?.cmd,
        },
    })
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let called = argv
        .first()
        .and_then(|a| PathBuf::from(a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // Called by an AIX name: the whole command line is that command's.
    let prog = PROGRAMS.into_iter().find(|p| *p == called).unwrap_or("altdisk");
    // A job's own messages reach the terminal as its events ("warning: ..."): the log
    // leaves them out, so each is said once (ALTDISK_LOG=altdisk::job=info shows them).
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALTDISK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,altdisk::job=off"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().init();

    let cmd = match parse(prog, &argv) {
        Ok(c) => c,
        // --help and --version print to stdout and exit 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => fail(prog, usage::from_clap(&command_name(prog, &argv), &e)),
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
        Command::Track { source } => {
            match altdisk::discover::blockdev::list()
                .and_then(|disks| altdisk::discover::source::discover(source.as_deref(), &disks))
            {
                Ok(src) => {
                    let roots: Vec<_> = src.filesystems.iter().map(|f| f.path.clone()).collect();
                    altdisk::discover::changes::track(&roots)
                }
                // A system that cannot be cloned (a live system) has nothing to track: no
                // failure at every boot of the rescue image.
                Err(e) => {
                    eprintln!("altdisk track: nothing to track: {e}");
                    Ok(())
                }
            }
        }
        Command::UdevProbe { device } => {
            for (k, v) in altdisk::discover::record::udev_properties(&device) {
                println!("{k}={v}");
            }
            Ok(())
        }
    };
    if let Err(e) = r {
        fail(prog, e);
    }
}

/// The command the user meant, for "see `altdisk copy --help`": the program, and for altdisk
/// the subcommand named first on the command line, if any.
fn command_name(prog: &str, argv: &[OsString]) -> String {
    if prog != "altdisk" {
        return prog.to_string();
    }
    let cli = Cli::command();
    let sub = argv.iter().skip(1).filter_map(|a| a.to_str()).find(|a| !a.starts_with('-'));
    match sub.and_then(|s| cli.find_subcommand(s)) {
        Some(s) => format!("altdisk {}", s.get_name()),
        None => prog.to_string(),
    }
}

/// One line on stderr, and the documented exit status.
fn fail(prog: &str, e: Error) -> ! {
    eprintln!("{prog}: error: {e}");
    std::process::exit(e.exit_code());
}

/// Shorthand for the binary's own error results.
pub(crate) type Result<T> = std::result::Result<T, Error>;
