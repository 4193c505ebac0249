//! The AIX command lines: every flag of alt_disk_copy is parsed; each either has its Linux
//! meaning, or fails with a clear error saying why it has none (yet).

use std::path::PathBuf;

use clap::{ArgAction, Args};

use altdisk::error::Error;
use altdisk::job::Job;
use altdisk::plan::{BootlistMode, Layout, Phases};
use altdisk::run::{self, CloneRequest};
use altdisk::write::customize::Customize;

use crate::progress::Progress;
use crate::Result;

#[derive(Args, Debug, Default)]
#[command(disable_version_flag = true)]
pub struct CopyArgs {
    /// Target disks: sdb, /dev/sdb, "sdb sdc", /dev/disk/by-id/..., hdiskN, or an image file
    /// path. The value is split at blanks (AIX -d "sdb sdc") unless it names an existing path.
    #[arg(short = 'd', value_name = "TARGETS", action = ArgAction::Append)]
    pub disks: Vec<String>,
    /// One target taken whole, never split at blanks: for a path holding a space.
    #[arg(long = "target", value_name = "PATH", action = ArgAction::Append)]
    pub target_paths: Vec<String>,
    /// All targets in command-line order (-d values split, --target values whole); filled
    /// by [`CopyArgs::from_matches`].
    #[arg(skip)]
    pub ordered: Vec<TargetArg>,
    /// Layout file (TOML; see `altdisk layout`), the counterpart of AIX image.data. Full path.
    #[arg(short = 'i', value_name = "LAYOUT")]
    pub layout: Option<PathBuf>,
    /// Exclude list: grep patterns matched against ./relative/paths. Full path.
    #[arg(short = 'e', value_name = "EXCLUDE")]
    pub exclude: Option<PathBuf>,
    /// Remain NIM client: no Linux meaning, accepted with a warning.
    #[arg(short = 'n')]
    pub nim: bool,
    /// Phases to run: 1 (copy), 2 (customize), 3 (make bootable), 12, 23 or all (the default;
    /// with --refresh, those the clone had).
    #[arg(short = 'P', value_name = "PHASES")]
    pub phases: Option<String>,
    /// Debug: print every command run.
    #[arg(short = 'D')]
    pub debug: bool,
    /// Do not change the boot list (the clone's UEFI entry is made, BootOrder is left alone).
    #[arg(short = 'B')]
    pub no_bootlist: bool,
    /// Verbose: list every file copied.
    #[arg(short = 'V')]
    pub verbose: bool,
    /// Skip the bootability checks (a clone that cannot be made bootable is then left so).
    #[arg(short = 'g')]
    pub skip_boot_checks: bool,
    /// Reboot into the clone when done (needs phase 3; not with -B).
    #[arg(short = 'r')]
    pub reboot: bool,
    /// Convert ext2/ext3 filesystems to ext4 (AIX: JFS to JFS2).
    #[arg(short = 'T')]
    pub convert: bool,
    /// Skip the space check on the targets.
    #[arg(short = 'S')]
    pub skip_space: bool,
    /// Copy WPAR filesystems: no Linux meaning, accepted with a warning.
    #[arg(short = 'u')]
    pub wpar: bool,
    /// SMIT internal values: accepted and ignored, with a warning.
    #[arg(short = 'z', value_name = "SMIT", action = ArgAction::Append, allow_hyphen_values = true)]
    pub smit: Vec<String>,
    /// Clone the system mounted at DIR (offline clone) instead of the running one.
    #[arg(long = "source", value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Clone the system on DISK, which is not running (mounted read-only for the run): the
    /// offline disk swap.
    #[arg(long = "source-disk", value_name = "DISK", conflicts_with = "source")]
    pub source_disk: Option<String>,
    /// An encrypted (LUKS) source: the passphrase of the clone's own LUKS2 containers, the
    /// first line of FILE (- reads standard input); it is never stored or logged.
    #[arg(long = "luks-passphrase-file", value_name = "FILE")]
    pub luks_passphrase_file: Option<PathBuf>,
    /// An encrypted (LUKS) source: a key file that unlocks the clone's LUKS2 containers
    /// (the whole file is the key).
    #[arg(long = "luks-key-file", value_name = "FILE", conflicts_with = "luks_passphrase_file")]
    pub luks_key_file: Option<PathBuf>,
    /// Write targets that hold a partition table or filesystem signature.
    #[arg(long)]
    pub force: bool,
    /// Size of a new image file target (e.g. 20G); default: what the plan needs.
    #[arg(long = "size", value_name = "SIZE")]
    pub size: Option<String>,
    /// Where the clone is mounted while it is built.
    #[arg(long = "mount-at", value_name = "DIR", default_value = altdisk::ALT_INST)]
    pub mount_at: PathBuf,
    /// Print the plan and write nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Print the plan (with --dry-run) or the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Boot the clone once (UEFI BootNext); it makes itself permanent when it comes up healthy.
    #[arg(long, conflicts_with = "no_bootlist")]
    pub trial: bool,
    /// Bring the clone on -d back in line with its source (new, changed and deleted files),
    /// keeping its identities and boot entry; phase 3 again when it was bootable.
    #[arg(long, conflicts_with_all = ["layout", "convert", "size", "dry_run", "force", "trial"])]
    pub refresh: bool,
    /// With --refresh: decide whether a file changed by its bytes, not its size and mtime.
    #[arg(long)]
    pub checksum: bool,
    /// Last: its help heading applies to the flags after it.
    #[command(flatten)]
    pub p2: Phase2Args,
}

/// One target as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetArg {
    /// A -d value: split at blanks unless it names an existing path.
    Split(String),
    /// A --target value: one path, taken whole.
    Whole(String),
}

impl CopyArgs {
    /// The arguments, with the targets in command-line order (clap keeps -d and --target
    /// apart; their indices say which came first: the first target gets the boot partitions).
    pub fn from_matches(m: &clap::ArgMatches) -> std::result::Result<CopyArgs, clap::Error> {
        let mut a = <CopyArgs as clap::FromArgMatches>::from_arg_matches(m)?;
        let mut all: Vec<(usize, TargetArg)> = Vec::new();
        for (id, whole) in [("disks", false), ("target_paths", true)] {
            let (Some(idx), Some(vals)) = (m.indices_of(id), m.get_many::<String>(id)) else { continue };
            all.extend(
                idx.zip(vals)
                    .map(|(i, v)| (i, if whole { TargetArg::Whole(v.clone()) } else { TargetArg::Split(v.clone()) })),
            );
        }
        all.sort_by_key(|(i, _)| *i);
        a.ordered = all.into_iter().map(|(_, t)| t).collect();
        Ok(a)
    }

    /// The targets: in command-line order when parsed through [`CopyArgs::from_matches`],
    /// else the -d values, then the --target values.
    fn target_args(&self) -> Vec<TargetArg> {
        if !self.ordered.is_empty() {
            return self.ordered.clone();
        }
        let d = self.disks.iter().map(|v| TargetArg::Split(v.clone()));
        d.chain(self.target_paths.iter().map(|v| TargetArg::Whole(v.clone()))).collect()
    }
}

/// A -d value as target names. AIX takes several disks in one value (`-d "sdb sdc"`), so
/// the value is split at blanks; a value naming an existing path is taken whole (an image
/// file with a space in its name). A word of a split value that looks like a path and does
/// not exist is refused: it is most likely the piece of a path that held a blank, and would
/// otherwise become a new image file of that name.
fn split_targets(v: &str) -> Result<Vec<String>> {
    let words: Vec<&str> = v.split_whitespace().collect();
    if words.len() > 1 && v.contains('/') && std::fs::symlink_metadata(v).is_ok() {
        return Ok(vec![v.to_string()]);
    }
    if words.len() > 1 {
        if let Some(w) = words.iter().find(|w| w.contains('/') && std::fs::symlink_metadata(w).is_err()) {
            return Err(usage(
                &format!("-d \"{v}\""),
                &format!("{w} does not exist, and -d splits its value at blanks (AIX -d \"sdb sdc\")"),
                "name a path that holds a blank with --target PATH, and each new image file with its own -d",
            ));
        }
    }
    Ok(words.into_iter().map(String::from).collect())
}

fn usage(what: &str, why: &str, todo: &str) -> Error {
    Error::usage(what, why, todo)
}

fn need_full_path(flag: &str, p: &std::path::Path) -> Result<()> {
    if !p.is_absolute() {
        return Err(usage(
            &format!("{flag} {}", p.display()),
            "it is not a full path",
            "give the full path, as AIX requires",
        ));
    }
    Ok(())
}

/// A file named by a flag must exist: a missing one is "not found" (exit 3), said before
/// anything else is looked at.
fn need_file(flag: &str, what: &str, p: &std::path::Path) -> Result<()> {
    need_full_path(flag, p)?;
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(usage(&format!("{flag} {}", p.display()), &format!("it is not a file ({what})"), "name a file")),
        Err(_) => Err(Error::not_found(
            format!("{what} {} ({flag})", p.display()),
            "no such file",
            "check the path, or create the file",
        )),
    }
}

/// Turn the AIX flags into a request, refusing what has no meaning (yet).
fn request(a: &CopyArgs) -> Result<CloneRequest> {
    let mut targets = Vec::new();
    for t in a.target_args() {
        match t {
            TargetArg::Split(v) => targets.extend(split_targets(&v)?),
            TargetArg::Whole(v) if v.is_empty() => {
                return Err(usage("--target", "the path is empty", "name a disk or an image file"))
            }
            TargetArg::Whole(v) => targets.push(v),
        }
    }
    if targets.is_empty() {
        return Err(usage(
            "-d",
            "no target disk was named",
            "name one or more free disks: -d sdb or -d \"sdb sdc\" (see altdisk lspv)",
        ));
    }
    let phases = Phases::parse(a.phases.as_deref().unwrap_or("all"))?;
    if a.reboot && a.no_bootlist {
        return Err(usage(
            "-r with -B",
            "rebooting into the clone needs the boot list that -B leaves alone",
            "drop one of the two flags",
        ));
    }
    if a.p2.console.is_some() && !a.p2.device_reset {
        return Err(usage("-c", "a console is set only with a device reset", "add -O, or drop -c"));
    }
    for (flag, set) in [
        ("-b", a.p2.bundle.is_some()),
        ("-w", a.p2.filesets.is_some()),
        ("-F", a.p2.fixes.is_some()),
        ("-f", a.p2.fixbundle.is_some()),
        ("-I", a.p2.install_flags.is_some()),
    ] {
        if set && a.p2.images.is_none() {
            return Err(usage(
                flag,
                "it installs packages from the -l location",
                "add -l DIR naming the directory of packages",
            ));
        }
    }
    // Phase 2: customization of the clone.
    let customize = a.p2.to_customize();
    if !customize.is_empty() && !phases.has(2) {
        return Err(usage(
            "phase 2 options (-l, -w, -b, -s, -x, -R, -O)",
            "they customize the clone in phase 2, which -P leaves out",
            "add phase 2 (-P 12 or -P all), or drop them",
        ));
    }
    if a.reboot && !phases.has(3) {
        return Err(usage(
            "-r",
            "rebooting into the clone needs phase 3, which makes it bootable",
            "run all phases (-P all, the default) or drop -r",
        ));
    }
    if a.nim {
        eprintln!("warning: -n (remain NIM client) has no meaning on Linux: there is no NIM; ignored");
    }
    if a.wpar {
        eprintln!("warning: -u (copy WPAR filesystems) has no meaning on Linux: containers live inside the copied filesystems; ignored");
    }
    if !a.smit.is_empty() {
        eprintln!("warning: -z values are SMIT internals with no meaning here; ignored ({} given)", a.smit.len());
    }
    if let Some(p) = &a.exclude {
        need_file("-e", "exclude list", p)?;
    }
    if let Some(d) = &a.source {
        if !d.is_dir() {
            return Err(Error::not_found(
                format!("source directory {} (--source)", d.display()),
                "no such directory",
                "mount the system to clone there (its other filesystems below it) and name that directory",
            ));
        }
    }
    let layout = match &a.layout {
        Some(p) => {
            need_file("-i", "layout file", p)?;
            let text = std::fs::read_to_string(p).map_err(|e| Error::io("reading the layout file", p, e))?;
            Some(Layout::parse(&text, &p.display().to_string())?)
        }
        None => None,
    };
    let image_size = a.size.as_deref().map(altdisk::size::parse).transpose()?;
    let luks_passphrase = match (&a.luks_passphrase_file, &a.luks_key_file) {
        (Some(f), _) => Some(altdisk::write::luks::Passphrase::from_file(f)?),
        (None, Some(f)) => Some(altdisk::write::luks::Passphrase::from_key_file(f)?),
        (None, None) => None,
    };
    Ok(CloneRequest {
        targets,
        source_dir: a.source.clone(),
        source_disk: a.source_disk.clone(),
        phases,
        layout,
        exclude: a.exclude.clone(),
        convert_ext: a.convert,
        skip_space_check: a.skip_space,
        skip_boot_checks: a.skip_boot_checks,
        force: a.force,
        image_size,
        mount_at: a.mount_at.clone(),
        name: altdisk::ALTINST_ROOTVG.into(),
        threads: 0,
        customize,
        luks_passphrase,
        bootlist: if a.trial {
            BootlistMode::Trial
        } else if a.no_bootlist {
            BootlistMode::Leave
        } else {
            BootlistMode::First
        },
    })
}

pub fn copy(a: CopyArgs, plan_only: bool) -> Result<()> {
    altdisk::cmd::set_echo(a.debug);
    let req = request(&a)?;
    if a.checksum && !a.refresh {
        return Err(usage(
            "--checksum",
            "it says how --refresh compares files, and --refresh was not given",
            "add --refresh, or drop --checksum",
        ));
    }
    if a.refresh {
        if plan_only {
            return Err(usage(
                "altdisk plan --refresh",
                "a refresh works on the clone as it is; there is no plan to show",
                "run altdisk copy --refresh (or alt_disk_copy --refresh)",
            ));
        }
        let phases = a.phases.as_deref().map(Phases::parse).transpose()?;
        if phases.as_ref().is_some_and(|p| !p.has(1)) {
            return Err(usage(
                "--refresh with -P2, -P3 or -P23",
                "a refresh is phase 1 done again on the clone",
                "give -P1, -P12 or -Pall, or leave -P out (the phases the clone had)",
            ));
        }
        let job = Job::new();
        job.set_list_files(a.verbose);
        let progress = Progress::start(&job, a.verbose);
        let r = run::refresh(&req, &run::Refresh { checksum: a.checksum, phases }, &job);
        progress.finish();
        return report(&a, r?);
    }
    if !req.phases.has(1) {
        // Phases 2 and 3 of a clone made earlier (AIX -P23).
        if plan_only || a.dry_run {
            return Err(usage(
                "--dry-run with -P2, -P3 or -P23",
                "resuming works on the clone as it is; there is no plan to show",
                "run without --dry-run",
            ));
        }
        let job = Job::new();
        let progress = Progress::start(&job, a.verbose);
        let r = run::resume(&req, &job);
        progress.finish();
        return report(&a, r?);
    }
    let prep = if plan_only || a.dry_run {
        run::plan(&req)?
    } else {
        // What a killed run left is cleaned up first and said, also when the plan then refuses.
        for n in altdisk::write::journal::recover()? {
            eprintln!("warning: {n}");
        }
        run::prepare(&req)?
    };
    if plan_only || a.dry_run {
        if a.json {
            println!("{}", serde_json::to_string_pretty(&prep.plan).unwrap_or_default());
        } else {
            print!("{}", prep.plan.render());
        }
        return Ok(());
    }
    if !a.json {
        eprint!("{}", prep.plan.render());
    }
    let job = Job::new();
    job.set_list_files(a.verbose);
    let progress = Progress::start(&job, a.verbose);
    let r = run::execute(prep, &job);
    progress.finish();
    report(&a, r?)
}

fn report(a: &CopyArgs, report: run::CloneReport) -> Result<()> {
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        let c = &report.copy;
        println!(
            "{}: {} on {} ({} files, {} directories, {} symlinks, {} hard links, {} special files; {} copied in {:.1} s)",
            report.name,
            report.state.describe(),
            report.targets.join(", "),
            c.files,
            c.dirs,
            c.symlinks,
            c.hardlinks,
            c.specials,
            altdisk::size::human(c.bytes),
            report.seconds
        );
        if a.refresh {
            println!(
                "refreshed: {} written, {} with new metadata only, {} deleted, {} unchanged",
                c.rewritten, c.metadata_only, c.deleted, c.unchanged
            );
        }
        if c.excluded > 0 {
            println!("excluded: {} entries", c.excluded);
        }
        if c.sockets_skipped > 0 {
            println!("sockets skipped: {}", c.sockets_skipped);
        }
        println!("fstab/crypttab lines rewritten: {}", report.fstab_changes);
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        if let Some(e) = &report.boot_entry {
            println!("UEFI boot entry: {e}");
        }
        match &report.mounted_at {
            Some(m) => println!("The clone is mounted at {}; unmount it with `alt_rootvg_op -S`.", m.display()),
            None => println!("The clone is unmounted."),
        }
    }
    if a.reboot {
        println!("rebooting into the clone (-r)");
        altdisk::cmd::Cmd::new("rebooting", "systemctl")?.arg("reboot").run()?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct LayoutArgs {
    /// Describe the system mounted at DIR instead of the running one.
    #[arg(long = "source", value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Convert ext2/ext3 to ext4 in the default.
    #[arg(short = 'T')]
    pub convert: bool,
}

pub fn layout(a: LayoutArgs) -> Result<()> {
    let disks = altdisk::discover::blockdev::list()?;
    let src = altdisk::discover::source::discover(a.source.as_deref(), &disks)?;
    print!("{}", altdisk::plan::default_layout(&src, a.convert).to_toml());
    Ok(())
}

#[derive(Args, Debug)]
pub struct LspvArgs {
    /// Print the disks as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn lspv(a: LspvArgs) -> Result<()> {
    let rows = altdisk::discover::roles::lspv()?;
    if a.json {
        let v = serde_json::json!({"apiVersion": altdisk::API_VERSION, "disks": rows});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", altdisk::discover::roles::render_lspv(&rows));
    }
    Ok(())
}

#[derive(Args, Debug)]
#[command(disable_version_flag = true)]
pub struct OpArgs {
    /// Sleep: unmount the alternate system awake at /alt_inst.
    #[arg(short = 'S')]
    pub sleep: bool,
    /// Query: which system lives on the disk given with -d.
    #[arg(short = 'q')]
    pub query: bool,
    /// Wake: mount the alternate system on -d at /alt_inst.
    #[arg(short = 'W')]
    pub wake: bool,
    /// Remove an alternate system (default altinst_rootvg): its disks become free.
    #[arg(short = 'X', num_args = 0..=1, value_name = "NAME")]
    pub remove: Option<Option<String>>,
    /// Rename the alternate system on -d.
    #[arg(short = 'v', value_name = "NAME")]
    pub rename: Option<String>,
    /// Customize the awake alternate system with the phase 2 flags (-l, -w, -b, -s, -x, -R, -O, -c).
    #[arg(short = 'C')]
    pub customize: bool,
    /// With -S: rebuild the boot image (initramfs and boot loader configuration) first.
    #[arg(short = 't')]
    pub rebuild: bool,
    /// The disk of the system to query, wake, rename or remove (sdb, /dev/sdb, hdiskN, an image file).
    #[arg(short = 'd', value_name = "DISKS")]
    pub disks: Option<String>,
    /// Debug: print every command run.
    #[arg(short = 'D')]
    pub debug: bool,
    /// Do not ask before removing.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Where the alternate system is (or is to be) awake.
    #[arg(long = "mount-at", value_name = "DIR", default_value = altdisk::ALT_INST)]
    pub mount_at: PathBuf,
    #[command(flatten)]
    pub p2: Phase2Args,
}

// The phase 2 flags (AIX: installp, scripts, resolv.conf, device reset), the same for
// alt_disk_copy and alt_rootvg_op -C. (A doc comment here would become the about text of
// every command that flattens it.)
#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Phase 2: customize the clone")]
pub struct Phase2Args {
    /// Directory of .deb packages (or a local apt repository) to install from, offline.
    #[arg(short = 'l', value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Packages to install into the clone (needs -l).
    #[arg(short = 'w', value_name = "PKGS")]
    pub filesets: Option<String>,
    /// File listing packages to install into the clone, or update_all (needs -l).
    #[arg(short = 'b', value_name = "BUNDLE")]
    pub bundle: Option<String>,
    /// File listing more packages to install (needs -l).
    #[arg(short = 'f', value_name = "FILE")]
    pub fixbundle: Option<PathBuf>,
    /// More packages to install (needs -l; Debian has no APARs).
    #[arg(short = 'F', value_name = "FIXES")]
    pub fixes: Option<String>,
    /// Extra apt-get options for the installs, e.g. "--no-install-recommends" (needs -l;
    /// installp letters are refused).
    #[arg(short = 'I', value_name = "FLAGS", allow_hyphen_values = true)]
    pub install_flags: Option<String>,
    /// Script run on this system after the installs, before the clone is unmounted, with
    /// ALT_ROOT and ALT_DISKS set (full path, executable).
    #[arg(short = 's', value_name = "SCRIPT")]
    pub script: Option<PathBuf>,
    /// Script to run once at the clone's first boot (full path).
    #[arg(short = 'x', value_name = "SCRIPT")]
    pub first_boot: Option<PathBuf>,
    /// resolv.conf to put in the clone (full path).
    #[arg(short = 'R', value_name = "RESOLVCONF")]
    pub resolv: Option<PathBuf>,
    /// Device reset for a disk that will run another machine: empty machine-id, SSH host
    /// keys made again at first boot, no MAC-bound network configuration, generic initramfs.
    #[arg(short = 'O')]
    pub device_reset: bool,
    /// Kernel console for the clone, e.g. ttyS0,115200 (only with -O).
    #[arg(short = 'c', value_name = "CONSOLE")]
    pub console: Option<String>,
}

impl Phase2Args {
    pub fn to_customize(&self) -> Customize {
        let mut c = Customize {
            images: self.images.clone(),
            script: self.script.clone(),
            first_boot: self.first_boot.clone(),
            resolv_conf: self.resolv.clone(),
            device_reset: self.device_reset,
            console: self.console.clone(),
            ..Default::default()
        };
        for list in [&self.filesets, &self.fixes].into_iter().flatten() {
            c.packages.extend(Customize::split_names(list));
        }
        if let Some(b) = &self.bundle {
            c.bundle(b);
        }
        if let Some(f) = &self.fixbundle {
            c.bundles.push(f.clone());
        }
        if let Some(i) = &self.install_flags {
            c.install_flags = Customize::split_flags(i);
        }
        c
    }
}

/// The disk named with -d (the first of several; a value naming an existing path is taken
/// whole, blanks included).
fn one_disk(a: &OpArgs, what: &str) -> Result<String> {
    let first = a.disks.as_deref().and_then(|v| {
        if v.contains('/') && std::fs::symlink_metadata(v).is_ok() {
            Some(v.to_string())
        } else {
            v.split_whitespace().next().map(String::from)
        }
    });
    match first {
        Some(d) => Ok(d),
        None => Err(usage(
            &format!("alt_rootvg_op {what}"),
            "it needs the disk of the system",
            "add -d DISK (see altdisk lspv)",
        )),
    }
}

pub fn op(a: OpArgs) -> Result<()> {
    use altdisk::systems::ops;
    altdisk::cmd::set_echo(a.debug);
    let job = Job::new();
    let ops =
        [a.sleep, a.query, a.wake, a.remove.is_some(), a.rename.is_some(), a.customize].iter().filter(|b| **b).count();
    if ops == 0 {
        return Err(usage("alt_rootvg_op", "no operation was given", "use -q, -W, -S, -C, -v or -X (see --help)"));
    }
    if ops > 1 {
        return Err(usage(
            "alt_rootvg_op",
            "more than one operation was given",
            "give one of -q, -W, -S, -C, -v, -X at a time",
        ));
    }
    if a.query {
        println!("{}", ops::query(&one_disk(&a, "-q")?)?);
        return Ok(());
    }
    if a.wake {
        let sys = ops::find_by_disk(&one_disk(&a, "-W")?)?;
        let done = ops::wake(&sys, &a.mount_at)?;
        println!(
            "{} on {} is awake at {} ({} filesystems)",
            sys.env.name,
            sys.disk_names(),
            a.mount_at.display(),
            done.len()
        );
        return Ok(());
    }
    if let Some(new) = &a.rename {
        let sys = ops::find_by_disk(&one_disk(&a, "-v")?)?;
        ops::rename(&sys, new)?;
        println!("{} on {} is now {new}", sys.env.name, sys.disk_names());
        return Ok(());
    }
    if a.customize {
        let c = a.p2.to_customize();
        if c.is_empty() {
            return Err(usage(
                "alt_rootvg_op -C",
                "no customization was given",
                "add phase 2 flags: -l DIR -w PKGS, -s, -x, -R, -O",
            ));
        }
        c.validate()?;
        let sys = ops::awake(&a.mount_at)?;
        let disks: Vec<PathBuf> = sys.disks.iter().map(|d| d.path.clone()).collect();
        let progress = Progress::start(&job, false);
        let r = altdisk::write::customize::run(&a.mount_at, &c, &disks, &job);
        progress.finish();
        r?;
        println!("{} on {} customized", sys.env.name, sys.disk_names());
        return Ok(());
    }
    if let Some(name) = &a.remove {
        let systems = match (&a.disks, name) {
            (Some(_), None) => vec![ops::find_by_disk(&one_disk(&a, "-X")?)?],
            (_, n) => ops::find_by_name(n.as_deref().unwrap_or(altdisk::ALTINST_ROOTVG))?,
        };
        if systems.is_empty() {
            return Err(Error::not_found(
                format!("alternate system {}", name.as_deref().unwrap_or(altdisk::ALTINST_ROOTVG)),
                "no disk holds one by that name",
                "see `altdisk lspv`",
            ));
        }
        for sys in systems {
            let what = format!("{} on {}", sys.env.name, sys.disk_names());
            if !a.yes && !confirm(&format!("Remove {what}? Its disks will be wiped and free. [y/N] "))? {
                return Err(Error::Cancelled);
            }
            let progress = Progress::start(&job, false);
            let r = ops::remove(&sys, &job);
            progress.finish();
            r?;
            println!("removed {what}");
        }
        return Ok(());
    }
    // -S [-t]
    if a.rebuild {
        let sys = ops::awake(&a.mount_at)?;
        let progress = Progress::start(&job, false);
        let r = ops::rebuild_boot(&sys, &a.mount_at, &job);
        progress.finish();
        r?;
    }
    sleep(SleepArgs { mount_at: a.mount_at })
}

/// Ask on the terminal; without one, refuse (a script says -y).
fn confirm(question: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(usage(
            "alt_rootvg_op -X",
            "it asks for confirmation and there is no terminal",
            "add -y to confirm",
        ));
    }
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| Error::io("reading the answer", "stdin", e))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

#[derive(Args, Debug)]
pub struct SleepArgs {
    /// Where the awake clone is mounted.
    #[arg(long = "mount-at", value_name = "DIR", default_value = altdisk::ALT_INST)]
    pub mount_at: PathBuf,
}

pub fn sleep(a: SleepArgs) -> Result<()> {
    for line in altdisk::systems::awake::sleep(&a.mount_at)? {
        println!("{line}");
    }
    Ok(())
}

#[derive(Args, Debug)]
#[command(disable_version_flag = true)]
pub struct BootlistArgs {
    /// normal (the boot order), prevboot (what booted last); service and both have no UEFI meaning.
    #[arg(short = 'm', value_name = "MODE", default_value = "normal")]
    pub mode: String,
    /// Show the list.
    #[arg(short = 'o')]
    pub show: bool,
    /// Boot this disk once, at the next boot only (UEFI BootNext).
    #[arg(long, value_name = "DISK")]
    pub next: Option<String>,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
    /// Disks to boot from, in order: they go first, every other entry stays after them.
    pub disks: Vec<String>,
}

pub fn bootlist(a: BootlistArgs) -> Result<()> {
    use altdisk::boot::bootlist as bl;
    use altdisk::boot::efi::{BootManager, Efivarfs};
    match a.mode.as_str() {
        "normal" | "prevboot" => {}
        "service" | "both" => {
            return Err(Error::unsupported(
                format!("bootlist -m {}", a.mode),
                ": UEFI has one boot order, there is no separate service list",
                "use -m normal; for a one-time boot use --next DISK",
            ))
        }
        other => {
            return Err(usage(
                &format!("bootlist -m {other}"),
                "it is not a mode",
                "use -m normal (or prevboot to see what booted last)",
            ))
        }
    }
    let vars = match Efivarfs::system() {
        Ok(v) => v,
        Err(Error::Unsupported { .. }) => {
            // BIOS: nothing to set, but say which disks can boot and how to pick one.
            if let Some(d) = a.disks.first().or(a.next.as_ref()) {
                let what = match &a.next {
                    Some(n) => format!("bootlist --next {n}"),
                    None => format!("bootlist -m {} {}", a.mode, a.disks.join(" ")),
                };
                return Err(bl::bios_refusal(&what, d));
            }
            println!("BIOS machine: the firmware owns the boot order; to boot another disk, {}.", bl::BIOS_HOWTO);
            println!("Disks carrying a boot loader:");
            for (name, path) in bl::bios_bootable()? {
                println!("{name} ({})", path.display());
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let m = BootManager { vars };
    if a.mode == "prevboot" {
        let cur = m.current()?.map(altdisk::boot::efi::boot_name);
        match bl::show(&m)?.into_iter().find(|e| Some(&e.number) == cur.as_ref()) {
            Some(e) => println!(
                "{} {} {}  {}",
                e.disk.as_deref().unwrap_or("-"),
                e.system.as_deref().unwrap_or("-"),
                e.number,
                e.description
            ),
            None => println!("-"),
        }
        return Ok(());
    }
    if let Some(d) = &a.next {
        let n = bl::set_next(&m, d)?;
        println!("{d} boots next, once ({})", altdisk::boot::efi::boot_name(n));
    }
    if !a.disks.is_empty() {
        let disks: Vec<String> = a.disks.iter().flat_map(|d| d.split_whitespace().map(String::from)).collect();
        bl::set(&m, &disks)?;
    }
    if a.show || (a.disks.is_empty() && a.next.is_none()) {
        let entries = bl::show(&m)?;
        if a.json {
            let v = serde_json::json!({"apiVersion": altdisk::API_VERSION, "entries": entries});
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print!("{}", bl::render(&entries));
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The clone: a disk of it (sdb, /dev/..., hdiskN) or its name (altinst_rootvg).
    #[arg(value_name = "SYSTEM|DISK")]
    pub target: String,
    /// Compare with the system mounted at DIR instead of the running one.
    #[arg(long = "source", value_name = "DIR", conflicts_with = "against")]
    pub source: Option<PathBuf>,
    /// Compare with another system on disks (a disk of it, or its name).
    #[arg(long, value_name = "SYSTEM|DISK")]
    pub against: Option<String>,
    /// Exclude list the clone was made with (full path): matching paths are not compared.
    #[arg(short = 'e', value_name = "EXCLUDE")]
    pub exclude: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Exit status of `altdisk verify` when the clone differs from its source.
const DIFFERS: i32 = 7;

pub fn verify(a: VerifyArgs) -> Result<()> {
    use altdisk::systems::verify::{self as v, VerifyRequest};
    let req = VerifyRequest {
        target: a.target.clone(),
        source_dir: a.source.clone(),
        against: a.against.clone(),
        exclude: a.exclude.clone(),
        threads: 0,
    };
    let job = Job::new();
    let progress = Progress::start(&job, false);
    let r = v::verify(&req, &job);
    progress.finish();
    let r = r?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        print!("{}", v::render(&r));
    }
    if !r.equal {
        std::process::exit(DIFFERS);
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct BootHookArgs {
    /// names: rootvg/old_rootvg; commit: keep a healthy trial boot; first-boot: the -x script.
    pub what: String,
}

pub fn boot_hook(a: BootHookArgs) -> Result<()> {
    // A failure is kept for `altdisk lspv` and fails the unit, so the journal has it too.
    for l in altdisk::boot::units::run_hook(&a.what)? {
        println!("{l}");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct InstallUnitsArgs {
    /// Root of the system to install into.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// The altdisk binary the units run, as seen from inside that system (default: this one).
    #[arg(long, value_name = "PATH")]
    pub exe: Option<PathBuf>,
}

pub fn install_units(a: InstallUnitsArgs) -> Result<()> {
    let exe = match a.exe {
        Some(p) => {
            need_full_path("--exe", &p)?;
            p
        }
        None => std::env::current_exe().map_err(|e| Error::io("finding the altdisk binary", "/proc/self/exe", e))?,
    };
    for p in altdisk::boot::units::install_units(&a.root, &exe)? {
        println!("installed {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    #[command(disable_version_flag = true)]
    struct T {
        #[command(flatten)]
        a: CopyArgs,
    }

    fn parse(args: &[&str]) -> CopyArgs {
        let mut v = vec!["alt_disk_copy"];
        v.extend_from_slice(args);
        T::try_parse_from(v).unwrap().a
    }

    #[test]
    fn aix_example_line_parses() {
        let a = parse(&[
            "-d", "hdisk1", "-Pall", "-z", "c", "-z", "N", "-z", "g", "-z", "X", "-z", "", "-z", "", "-z", "Y", "-B",
        ]);
        assert_eq!(a.disks, vec!["hdisk1"]);
        assert_eq!(a.phases.as_deref(), Some("all"));
        assert_eq!(a.smit, vec!["c", "N", "g", "X", "", "", "Y"]);
        assert!(a.no_bootlist);
        let r = request(&a).unwrap();
        assert_eq!(r.phases, Phases::All);
    }

    #[test]
    fn clustered_flags_and_quoted_disks() {
        let a = parse(&["-DBOV", "-d", "sdb sdc", "-P", "12"]);
        assert!(a.debug && a.no_bootlist && a.p2.device_reset && a.verbose);
        let a = parse(&["-DBV", "-d", "sdb sdc", "-P", "12"]);
        let r = request(&a).unwrap();
        assert_eq!(r.targets, vec!["sdb", "sdc"]);
        assert_eq!(r.phases, Phases::P12);
        let a = parse(&["-d", "sdb", "-d", "/dev/nvme1n1", "-TS"]);
        let r = request(&a).unwrap();
        assert_eq!(r.targets, vec!["sdb", "/dev/nvme1n1"]);
        assert!(r.convert_ext && r.skip_space_check);
    }

    #[test]
    fn phase2_flags_fill_the_customization() {
        let r = request(&parse(&[
            "-d",
            "sdb",
            "-l",
            "/srv/pkgs",
            "-w",
            "a b",
            "-F",
            "c",
            "-b",
            "update_all",
            "-I",
            "--no-install-recommends",
            "-R",
            "/etc/r.conf",
            "-O",
            "-c",
            "ttyS0",
        ]))
        .unwrap();
        let c = &r.customize;
        assert_eq!(c.images.as_deref(), Some(std::path::Path::new("/srv/pkgs")));
        assert_eq!(c.packages, vec!["a", "b", "c"]);
        assert!(c.update_all && c.device_reset);
        assert_eq!(c.install_flags, vec!["--no-install-recommends"]);
        assert_eq!(c.console.as_deref(), Some("ttyS0"));
        let e = request(&parse(&["-d", "sdb", "-P1", "-x", "/bin/true"])).unwrap_err();
        assert!(e.to_string().contains("phase 2"), "{e}");
    }

    #[test]
    fn bad_combinations() {
        let e = request(&parse(&["-d", "sdb", "-w", "pkg"])).unwrap_err();
        assert!(e.to_string().contains("-l"), "{e}");
        let e = request(&parse(&["-d", "sdb", "-c", "ttyS0"])).unwrap_err();
        assert!(e.to_string().contains("-O"), "{e}");
        let e = request(&parse(&["-d", "sdb", "-r", "-P12"])).unwrap_err();
        assert!(e.to_string().contains("phase 3"), "{e}");
        let e = request(&parse(&["-d", "sdb", "-r", "-B"])).unwrap_err();
        assert!(matches!(e, Error::Usage { .. }), "{e}");
        let e = request(&parse(&["-P", "1"])).unwrap_err();
        assert!(e.to_string().contains("-d"), "{e}");
        let e = request(&parse(&["-d", "sdb", "-P", "5"])).unwrap_err();
        assert!(e.to_string().contains("phase"), "{e}");
        let e = request(&parse(&["-d", "sdb", "-e", "relative/list"])).unwrap_err();
        assert!(e.to_string().contains("full path"), "{e}");
        let e = request(&parse(&["-d", "sdb", "-i", "layout.toml"])).unwrap_err();
        assert!(e.to_string().contains("full path"), "{e}");
    }

    #[test]
    fn targets_with_blanks_keep_command_line_order() {
        use clap::CommandFactory;
        let dir = std::env::temp_dir().join(format!("altdisk test {}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("web 1.img");
        std::fs::write(&img, b"").unwrap();
        let img = img.to_str().unwrap();
        let new = dir.join("new 2.img");
        let new = new.to_str().unwrap();
        let m =
            T::command().try_get_matches_from(["x", "-d", "sdb", "--target", new, "-d", img, "-d", "sdc sdd"]).unwrap();
        let r = request(&CopyArgs::from_matches(&m).unwrap()).unwrap();
        assert_eq!(r.targets, vec!["sdb", new, img, "sdc", "sdd"]);
        // Split, a path with a blank that does not exist is refused, naming --target.
        let e = request(&parse(&["-d", new])).unwrap_err();
        assert!(matches!(e, Error::Usage { .. }) && e.to_string().contains("--target"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nim_and_wpar_are_accepted() {
        let r = request(&parse(&["-d", "sdb", "-n", "-u", "-g"])).unwrap();
        assert!(r.skip_boot_checks);
    }
}
