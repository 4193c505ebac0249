//! CLI tier: bad command lines, run through the built binary under each of its names. Each
//! must fail with ONE line on stderr (`PROG: error: what: why; what to do`), nothing on
//! stdout, the documented exit status, and nothing written: the image file named as target
//! keeps its (unallocated) blocks and time, no new file or mount point appears. Runs as any
//! user (the checks come before anything needs root); root runs it too.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use altdisk_tests::*;

/// A scratch directory (owned by this test, removed at the end): an existing sparse image
/// file `t.img`, a directory of packages `debs/`, a layout and an exclude list.
struct Dir {
    path: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let base = if is_root() { PathBuf::from("/var/tmp/altdisk-tests") } else { std::env::temp_dir() };
        let path = base.join(format!("cli-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(path.join("debs")).unwrap();
        std::fs::File::create(path.join("t.img")).unwrap().set_len(64 << 20).unwrap();
        std::fs::write(path.join("debs/foo_1.0_all.deb"), b"not read by these tests").unwrap();
        std::fs::write(path.join("layout.toml"), "[[filesystem]]\nmountpoint = \"/\"\nsize = \"grow\"\n").unwrap();
        std::fs::write(path.join("exclude.list"), "^./tmp/\n").unwrap();
        Dir { path }
    }

    /// Every entry below the directory: (size, blocks, mtime), to compare before and after.
    fn snapshot(&self) -> BTreeMap<PathBuf, (u64, u64, i64)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.path.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let m = e.path().symlink_metadata().unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                }
                out.insert(e.path(), (m.len(), m.blocks(), m.mtime()));
            }
        }
        out
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One bad command line: program, arguments (`{d}` is the scratch directory), exit status,
/// and the words the one-line message must hold.
struct Case {
    prog: &'static str,
    args: &'static [&'static str],
    code: i32,
    says: &'static [&'static str],
}

const fn case(prog: &'static str, args: &'static [&'static str], code: i32, says: &'static [&'static str]) -> Case {
    Case { prog, args, code, says }
}

/// The table. Common tail of the copy lines: a target and a mount point inside the scratch
/// directory, so that a run that wrongly went ahead would show there.
const CASES: &[Case] = &[
    // clap's own errors, under every name: one line, exit 2.
    case("alt_disk_copy", &["-d", "{d}/t.img", "--frce"], 2, &["`--frce`", "no such flag", "did you mean --force?"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "-B", "-B"], 2, &["-B", "given more than once"]),
    case(
        "alt_disk_copy",
        &["-d", "{d}/t.img", "-i", "{d}/layout.toml", "-i", "{d}/layout.toml"],
        2,
        &["-i", "more than once"],
    ),
    case("alt_disk_copy", &["-d"], 2, &["-d", "needs a value"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "--trial", "-B"], 2, &["--trial with -B", "cannot be used together"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "stray"], 2, &["`stray`", "takes no such argument"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "--size"], 2, &["--size", "needs a value"]),
    case("altdisk", &[], 2, &["no command was given", "altdisk --help"]),
    case("altdisk", &["lsvp"], 2, &["`lsvp`", "no such command", "did you mean `altdisk lspv`?"]),
    case(
        "altdisk",
        &["copy", "-d", "{d}/t.img", "--frce"],
        2,
        &["altdisk copy has no such flag", "altdisk copy --help"],
    ),
    case("altdisk", &["plan", "-d", "{d}/t.img", "-P"], 2, &["-P", "needs a value"]),
    case("altdisk", &["lspv", "--json", "--json"], 2, &["--json", "more than once"]),
    case("altdisk", &["-V"], 2, &["`-V`", "no such flag"]),
    case("alt_rootvg_op", &["-Q"], 2, &["`-Q`", "alt_rootvg_op has no such flag"]),
    case("alt_rootvg_op", &["-q", "-d"], 2, &["-d", "needs a value"]),
    case("alt_rootvg_op", &["-S", "-S"], 2, &["-S", "more than once"]),
    case("bootlist", &["-m"], 2, &["-m", "needs a value"]),
    case("bootlist", &["-m", "normal", "-x"], 2, &["`-x`", "bootlist has no such flag"]),
    // Targets: -d splits at blanks (AIX -d "sdb sdc"); a path with a blank needs --target.
    case(
        "alt_disk_copy",
        &["-d", "{d}/my new.img", "-P1", "--mount-at", "{d}/alt"],
        2,
        &["does not exist", "--target PATH"],
    ),
    case("alt_disk_copy", &["--target", "", "-P1"], 2, &["--target", "empty"]),
    case("alt_disk_copy", &["-P1"], 2, &["-d", "no target disk was named"]),
    // Files named by flags: missing ones are "not found" (exit 3), relative ones bad usage.
    case(
        "alt_disk_copy",
        &["-d", "{d}/t.img", "-e", "{d}/missing.list", "--mount-at", "{d}/alt"],
        3,
        &["exclude list", "not found"],
    ),
    case(
        "alt_disk_copy",
        &["-d", "{d}/t.img", "-i", "{d}/missing.toml", "--mount-at", "{d}/alt"],
        3,
        &["layout file", "not found"],
    ),
    case(
        "alt_disk_copy",
        &["-d", "{d}/t.img", "--source", "{d}/nowhere", "--mount-at", "{d}/alt"],
        3,
        &["source directory", "not found"],
    ),
    case("altdisk", &["plan", "-d", "{d}/t.img", "--source", "{d}/nowhere"], 3, &["source directory", "not found"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "-e", "exclude.list"], 2, &["-e exclude.list", "full path"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "-i", "{d}/debs"], 2, &["-i", "not a file"]),
    case(
        "alt_disk_copy",
        &["-d", "{d}/t.img", "-x", "{d}/missing.sh", "--mount-at", "{d}/alt"],
        3,
        &["-x", "not found"],
    ),
    case(
        "alt_disk_copy",
        &["-d", "{d}/t.img", "-l", "{d}/nodir", "-w", "foo", "--mount-at", "{d}/alt"],
        3,
        &["-l", "not found"],
    ),
    // installp letters, bare or after a dash, are refused (README: -I).
    case(
        "alt_disk_copy",
        &["-d", "{d}/t.img", "-l", "{d}/debs", "-w", "foo", "-I", "-acgX", "--mount-at", "{d}/alt"],
        2,
        &["-acgX", "installp"],
    ),
    case(
        "alt_disk_copy",
        &["-d", "{d}/t.img", "-l", "{d}/debs", "-w", "foo", "-I", "acgXY", "--mount-at", "{d}/alt"],
        2,
        &["acgXY", "installp"],
    ),
    // Values and combinations the command checks itself.
    case("alt_disk_copy", &["-d", "{d}/t.img", "-P", "5"], 2, &["phase", "5"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "-r", "-B"], 2, &["-r with -B"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "-c", "ttyS0"], 2, &["-c", "add -O"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "-w", "foo"], 2, &["-w", "-l"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "-P1", "-x", "/bin/true"], 2, &["phase 2"]),
    case("alt_rootvg_op", &[], 2, &["no operation was given"]),
    case("alt_rootvg_op", &["-q"], 2, &["-q", "add -d DISK"]),
    case("alt_rootvg_op", &["-q", "-W", "-d", "{d}/t.img"], 2, &["more than one operation"]),
    case("bootlist", &["-m", "service"], 6, &["not supported", "-m normal"]),
    case("bootlist", &["-m", "sideways"], 2, &["-m sideways", "not a mode"]),
    // Refresh and verify.
    case("alt_disk_copy", &["-d", "{d}/t.img", "--checksum"], 2, &["--checksum", "--refresh"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "--refresh", "-P23"], 2, &["--refresh with -P2", "phase 1"]),
    case("alt_disk_copy", &["-d", "{d}/t.img", "--refresh", "--force"], 2, &["--force", "--refresh"]),
    case("altdisk", &["plan", "-d", "{d}/t.img", "--refresh"], 2, &["plan --refresh", "no plan"]),
    case("altdisk", &["verify"], 2, &["SYSTEM|DISK"]),
    case("altdisk", &["verify", "sdb", "--source", "/mnt", "--against", "sdc"], 2, &["--source", "--against"]),
];

#[test]
fn cli_bad_command_lines_fail_in_one_line_and_write_nothing() {
    let dir = Dir::new();
    let d = dir.path.to_str().unwrap().to_string();
    let before = dir.snapshot();
    let mut failures = Vec::new();
    for c in CASES {
        let args: Vec<String> = c.args.iter().map(|a| a.replace("{d}", &d)).collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = altdisk(c.prog, &argv);
        let err = stderr(&out);
        let line = format!("{} {}", c.prog, args.join(" "));
        let prefix = format!("{}: error: ", c.prog);
        if out.status.code() != Some(c.code) {
            failures.push(format!("{line}: exit {:?}, expected {}: {err}", out.status.code(), c.code));
        } else if err.lines().count() != 1 || !err.starts_with(&prefix) {
            failures.push(format!("{line}: not one `{prefix}...` line: {err:?}"));
        } else if let Some(w) = c.says.iter().find(|w| !err.contains(*w)) {
            failures.push(format!("{line}: the message lacks {w:?}: {err}"));
        } else if !stdout(&out).is_empty() {
            failures.push(format!("{line}: printed on stdout: {}", stdout(&out)));
        }
        let after = dir.snapshot();
        if after != before {
            failures.push(format!("{line}: wrote into {d}: {before:?} -> {after:?}"));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad command lines misbehaved:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    // A figure for docs/reliability.md (tests/reliability-doc.sh).
    let figures = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reliability");
    if std::fs::create_dir_all(&figures).is_ok() {
        let _ = std::fs::write(
            figures.join("bad-command-lines.md"),
            format!(
                "- {} bad command lines under altdisk, alt_disk_copy, alt_rootvg_op and bootlist: each failed in one line with its exit status, nothing written.\n",
                CASES.len()
            ),
        );
    }
}

#[test]
fn cli_help_and_version_print_on_stdout_and_exit_0() {
    let v = workspace_version();
    for prog in ["altdisk", "alt_disk_copy", "alt_rootvg_op", "bootlist"] {
        let out = altdisk(prog, &["--help"]);
        assert_eq!(out.status.code(), Some(0), "{prog} --help");
        assert!(stdout(&out).contains("Usage:") && stderr(&out).is_empty(), "{prog} --help");
        let out = altdisk(prog, &["--version"]);
        assert_eq!(out.status.code(), Some(0), "{prog} --version");
        assert_eq!(stdout(&out).trim(), format!("{prog} {v}"));
    }
    // -V is alt_disk_copy's verbose flag, not the version.
    let out = altdisk("altdisk", &["copy", "--help"]);
    assert!(stdout(&out).contains("-V ") && stdout(&out).contains("Verbose"), "{}", stdout(&out));
}

/// [workspace.package] version in the top Cargo.toml: the one place it is written.
fn workspace_version() -> String {
    let toml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml")).unwrap();
    let ws = toml.split("[workspace.package]").nth(1).unwrap();
    ws.lines().find_map(|l| l.strip_prefix("version = ")).unwrap().trim_matches('"').to_string()
}

/// `altdisk --version` and the package built from this tree (when it has been built, by
/// image-build/build-debs.sh) agree with the workspace version.
#[test]
fn cli_version_agrees_with_the_workspace_and_the_package() {
    let v = workspace_version();
    let out = altdisk("altdisk", &["--version"]);
    assert_eq!(stdout(&out).trim(), format!("altdisk {v}"));
    let arch = run("dpkg", &["--print-architecture"]).map(|a| a.trim().to_string()).unwrap_or_default();
    let deb = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/debian/altdisk_{v}_{arch}.deb"));
    if !deb.exists() {
        eprintln!("SKIPPED the package part: {} is not built (image-build/build-debs.sh)", deb.display());
        return;
    }
    let field = run("dpkg-deb", &["-f", deb.to_str().unwrap(), "Version"]).unwrap();
    assert_eq!(field.trim(), v, "{}", deb.display());
}
