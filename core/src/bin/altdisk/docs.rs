//! The man pages (docs/man) and shell completions (docs/completions) are generated from the
//! clap definitions and checked in, so the package build needs no generator and a reader
//! of the repository sees them. The tests here regenerate them and fail when the checked-in
//! files differ; `ALTDISK_BLESS=1 cargo test -p altdisk --bin altdisk docs` writes them.
//! altdiskd's page is made the same way by that binary's own test.

use std::path::{Path, PathBuf};

use clap_mangen::roff::{bold, italic, roman, Roff};

/// The repository's docs folder.
fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// Sections every page ends with: exit status, environment, see also.
fn common_sections(r: &mut Roff, name: &str) {
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        ("0", "done"),
        ("1", "a command or the copy failed"),
        ("2", "bad usage: a flag, a file, a value"),
        ("3", "a named disk, file or tool was not found"),
        ("4", "a target was refused (in use, holds data, the running system)"),
        ("5", "the targets are too small"),
        ("6", "not supported (yet)"),
        ("130", "cancelled (Ctrl-C, SIGTERM)"),
    ] {
        r.control("TP", []).text([bold(code)]).text([roman(meaning)]);
    }
    r.control("PP", [])
        .text([roman("Every refusal and error is one line on standard error: what failed, why, and what to do.")]);
    r.control("SH", ["ENVIRONMENT"]);
    r.control("TP", []).text([bold("ALTDISK_LOG")]).text([roman(
        "Log filter for the diagnostic messages on standard error (tracing syntax: warn, info, debug, \
         altdisk=debug); default warn,altdisk::job=off (a run's own messages are its output, said once).",
    )]);
    r.control("SH", ["SEE ALSO"]);
    let pages = ["altdisk", "alt_disk_copy", "alt_rootvg_op", "bootlist", "altdiskd"];
    let mut refs: Vec<_> = pages.iter().filter(|p| **p != name).map(|p| format!("{p}(8)")).collect();
    refs.push("lsblk(8)".into());
    refs.push("efibootmgr(8)".into());
    r.text([roman(refs.join(", "))]);
    r.control("PP", []).text([
        roman("The README, with the AIX flags and what each means here: "),
        italic("/usr/share/doc/altdisk/README.md"),
    ]);
}

/// Extra sections of the pages that name files: where clones live, what altdisk installs.
fn files_section(r: &mut Roff) {
    r.control("SH", ["FILES"]);
    for (path, what) in [
        ("/alt_inst", "where a clone is mounted while it is built, and while it is awake (-W)"),
        (
            "/usr/lib/udev/rules.d/70-altdisk.rules",
            "names under /dev/disk/by-altdisk/SYSTEM/NAME; alternate systems kept from desktop automounters",
        ),
        (
            "/usr/lib/systemd/system/altdisk-*.service",
            "boot units: the rootvg and old_rootvg names, keeping a healthy trial boot, the first-boot script (-x)",
        ),
        ("/var/log/altdisk/firstboot.log", "output of a first-boot script, in the clone"),
    ] {
        r.control("TP", []).text([italic(path)]).text([roman(what)]);
    }
}

/// Examples, for the pages of the commands people type most.
fn examples(r: &mut Roff, name: &str) {
    let list: &[(&str, &str)] = match name {
        "alt_disk_copy" | "altdisk-copy" => &[
            (
                "alt_disk_copy -d sdb",
                "clone the running system onto sdb, make it bootable and put it first in the boot order",
            ),
            ("alt_disk_copy -d \"sdb sdc\" -B", "clone across two disks; leave the boot order alone"),
            ("alt_disk_copy -d /var/tmp/altinst_rootvg.img -P1", "clone into an image file, left mounted at /alt_inst"),
            ("alt_disk_copy --target \"/srv/images/web 1.img\" -P1", "an image file whose path holds a space"),
            (
                "alt_disk_copy -d sdb -P23 -l /srv/debs -w \"nginx\"",
                "resume: install a package into the clone, then make it bootable",
            ),
            ("alt_disk_copy -d sdb --trial", "boot the clone once; it stays first only when it came up healthy"),
        ],
        "alt_rootvg_op" | "altdisk-op" => &[
            ("alt_rootvg_op -q -d sdb", "which system lives on sdb"),
            ("alt_rootvg_op -W -d sdb", "wake the system on sdb at /alt_inst"),
            ("alt_rootvg_op -C -R /etc/resolv.conf.new", "customize the awake system"),
            ("alt_rootvg_op -S -t", "rebuild its boot image, then put it to sleep"),
            ("alt_rootvg_op -X old_rootvg -y", "remove the former system; its disks become free"),
        ],
        "bootlist" | "altdisk-bootlist" => &[
            ("bootlist -m normal -o", "show the boot order as disks and systems"),
            ("bootlist -m normal sda", "boot the system on sda from now on"),
            ("bootlist --next sdb", "boot sdb once, at the next boot only"),
        ],
        _ => return,
    };
    r.control("SH", ["EXAMPLES"]);
    for (cmd, what) in list {
        r.control("TP", []).text([bold(*cmd)]).text([roman(*what)]);
    }
}

fn page(cmd: clap::Command, name: &str, files: bool) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd).section("8").manual("System Administration");
    let mut out = Vec::new();
    man.render(&mut out).expect("rendering into memory");
    let mut r = Roff::new();
    examples(&mut r, name);
    if files {
        files_section(&mut r);
    }
    common_sections(&mut r, name);
    out.extend_from_slice(r.to_roff().as_bytes());
    out
}

/// Every man page of the altdisk binary: altdisk(8) and one per visible subcommand
/// (altdisk-copy(8), ...), and the AIX names.
pub(crate) fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut top = crate::program("altdisk");
    top.build();
    out.push(("altdisk.8".to_string(), page(top.clone(), "altdisk", true)));
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = sub.get_display_name().unwrap_or(sub.get_name()).to_string();
        out.push((format!("{name}.8"), page(sub.clone(), &name, false)));
    }
    for name in &crate::PROGRAMS[1..] {
        out.push((format!("{name}.8"), page(crate::program(name), name, *name == "alt_disk_copy")));
    }
    out
}

/// Shell completions for every program name: (path under docs/completions, text).
pub(crate) fn completions() -> Vec<(String, Vec<u8>)> {
    use clap_complete::Shell;
    let mut out = Vec::new();
    for name in crate::PROGRAMS {
        for (shell, file) in [
            (Shell::Bash, format!("bash/{name}")),
            (Shell::Zsh, format!("zsh/_{name}")),
            (Shell::Fish, format!("fish/{name}.fish")),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut crate::program(name), name, &mut buf);
            out.push((file, buf));
        }
    }
    out
}

/// Compare generated files with the checked-in ones under `dir` (or write them, when
/// ALTDISK_BLESS=1); files in `dir` that nothing generates are stale. Returns the problems.
pub(crate) fn check_or_bless(dir: &Path, files: &[(String, Vec<u8>)], owned: impl Fn(&str) -> bool) -> Vec<String> {
    let bless = std::env::var("ALTDISK_BLESS").as_deref() == Ok("1");
    let mut problems = Vec::new();
    for (rel, text) in files {
        let p = dir.join(rel);
        if bless {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        } else if std::fs::read(&p).ok().as_deref() != Some(text.as_slice()) {
            problems.push(format!("{} is missing or out of date", p.display()));
        }
    }
    // Stale files: generated once, no longer.
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if owned(&rel) && !files.iter().any(|(f, _)| *f == rel) {
                if bless {
                    std::fs::remove_file(&p).unwrap();
                } else {
                    problems.push(format!("{} is no longer generated", p.display()));
                }
            }
        }
    }
    problems
}

#[test]
fn man_pages_and_completions_are_current() {
    let mut problems =
        check_or_bless(&docs_dir().join("man"), &man_pages(), |rel| rel.ends_with(".8") && rel != "altdiskd.8");
    problems.extend(check_or_bless(&docs_dir().join("completions"), &completions(), |_| true));
    assert!(
        problems.is_empty(),
        "{}\nregenerate them: ALTDISK_BLESS=1 cargo test -p altdisk --bin altdisk docs",
        problems.join("\n")
    );
}

#[test]
fn every_flag_has_help() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path} {}", a.get_id()));
            }
        }
        for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if s.get_about().is_none() {
                missing.push(format!("{path} {} (the command)", s.get_name()));
            }
            walk(s, &format!("{path} {}", s.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    for name in crate::PROGRAMS {
        let mut cmd = crate::program(name);
        cmd.build();
        walk(&cmd, name, &mut missing);
    }
    assert!(missing.is_empty(), "flags without help text: {missing:?}");
}

#[test]
fn version_is_the_workspace_version() {
    // The one place the version is written: [workspace.package] in the top Cargo.toml.
    let toml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml")).unwrap();
    let ws = toml.split("[workspace.package]").nth(1).unwrap();
    let v = ws.lines().find_map(|l| l.strip_prefix("version = ")).unwrap().trim_matches('"');
    assert_eq!(env!("CARGO_PKG_VERSION"), v);
    for name in crate::PROGRAMS {
        let e = crate::program(name).try_get_matches_from([name, "--version"]).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(e.to_string().trim(), format!("{name} {v}"));
    }
}
