//! Root tier, faults on purpose: a target that fails under the copy, two runs on one target,
//! runs killed at random points, an interrupt and the advice it gives, mount points that are
//! not altdisk's. Each test checks what a user would: the exit status and its one line, the
//! record on the target, and that nothing stays mounted or attached. Run as root.
//!
//! Figures (kills survived, with the seed) go to `$CARGO_TARGET_TMPDIR/reliability/`, from
//! which tests/run.sh writes docs/reliability.md.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use altdisk::discover::record::{self, State};
use altdisk_tests::*;

const MIB: u64 = 1 << 20;

fn source(s: &mut Scratch, size: u64, bulk_mib: u64) -> PathBuf {
    let dev = s.loopdev("src-root.img", size);
    let at = s.mkfs_mount(&dev, "ext4", Some("root"), "src");
    populate(&at).unwrap();
    let uuid = blkid(&dev, "UUID").unwrap();
    std::fs::write(at.join("etc/fstab"), format!("UUID={uuid}\t/\text4\terrors=remount-ro 0 1\n")).unwrap();
    if bulk_mib > 0 {
        sh(&format!(
            "cd '{}' && mkdir bulk && for i in $(seq 1 {}); do head -c 4000000 /dev/urandom > bulk/f$i; done",
            at.display(),
            bulk_mib / 4
        ))
        .unwrap();
    }
    at
}

fn copy_args(src: &Path, target: &Path, alt: &Path) -> Vec<String> {
    [
        "copy",
        "--source",
        src.to_str().unwrap(),
        "-d",
        target.to_str().unwrap(),
        "-P1",
        "--mount-at",
        alt.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_altdisk(args: &[String], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(altdisk_bin());
    c.args(args).env("ALTDISK_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running altdisk")
}

fn error_lines(o: &std::process::Output) -> Vec<String> {
    stderr(o).lines().filter(|l| l.contains("error:")).map(String::from).collect()
}

/// Write a figure for docs/reliability.md.
fn figure(name: &str, text: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reliability");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.md")), text).unwrap();
}

/// A child altdisk run, followed until its copy has started.
fn spawn_until_copying(args: &[String], env: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut c = Command::new(altdisk_bin());
    c.args(args).env("ALTDISK_COPY_THREADS", "1").stderr(Stdio::piped()).stdout(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(err).lines();
    let mut log = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        log.push_str(&l);
        log.push('\n');
        if l.starts_with("copying /") {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, log)
}

#[test]
fn root_failing_target_is_never_reported_done() {
    require_root!();
    let mut s = Scratch::new("fail-target");
    let src = source(&mut s, 512 * MIB, 96);
    // The image file lives on a 40 MB tmpfs: it cannot grow to hold 100 MB of data.
    let small = s.mkdir("small");
    run("mount", &["-t", "tmpfs", "-o", "size=40m", "tmpfs", small.to_str().unwrap()]).unwrap();
    let img = small.join("clone.img");
    let alt = s.path("alt");
    let mut args = copy_args(&src, &img, &alt);
    args.extend(["--size".into(), "1G".into()]);

    // Planned: refused before anything is written, the image not even made.
    let o = run_altdisk(&args, &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let e = error_lines(&o);
    assert_eq!(e.len(), 1, "{}", stderr(&o));
    assert!(e[0].contains("grows as the clone is written"), "{}", e[0]);
    assert!(!img.exists(), "nothing was written");

    // Told to go ahead (-S): the writes fail under the copy, and the run says so.
    args.push("-S".into());
    let o = run_altdisk(&args, &[]);
    assert_ne!(o.status.code(), Some(0), "a failing target was reported as a good clone: {}", stdout(&o));
    let e = error_lines(&o);
    assert_eq!(e.len(), 1, "one error line: {}", stderr(&o));
    assert!(e[0].contains("incomplete"), "{}", e[0]);
    assert!(!stdout(&o).contains("done"), "{}", stdout(&o));
    let env = record::read(&img).expect("a record").expect("readable");
    assert_eq!(env.state, State::Incomplete, "{env:?}");
    assert!(env.note.is_some());
    assert!(s.mounts().iter().all(|m| !m.starts_with(&alt)), "still mounted: {:?}", s.mounts());
    assert!(s.loops_of(&img).is_empty(), "loop device left attached");
    figure(
        "failing-target",
        &format!(
            "- Image target on a 40 MB tmpfs, 100 MB to copy: refused before writing (exit 5); with `-S` \
             the run fails with exit {} and the record says incomplete: `{}`\n",
            o.status.code().unwrap_or(-1),
            e[0].trim().replace(&s.dir.display().to_string(), "<scratch>")
        ),
    );
}

#[test]
fn root_two_runs_on_one_target_collide_and_the_interrupt_advice_works() {
    require_root!();
    let mut s = Scratch::new("two-runs");
    let src = source(&mut s, 1024 * MIB, 320);
    let img = s.path("clone.img");
    let alt = s.path("alt");
    let alt2 = s.path("alt2");
    sh("sync; echo 3 > /proc/sys/vm/drop_caches").unwrap();
    let args = copy_args(&src, &img, &alt);
    let (mut first, _) = spawn_until_copying(&args, &[]);

    // What a run keeps while it works is root's alone: its locks and its journal.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(Path::new("/run/altdisk/locks")), 0o700);
    assert_eq!(mode(Path::new("/run/altdisk/runs")), 0o700);
    for dir in ["/run/altdisk/locks", "/run/altdisk/runs"] {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        }
    }
    // The same file again, from another run: refused, naming the first.
    let o = run_altdisk(&copy_args(&src, &img, &alt2), &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let e = error_lines(&o);
    assert_eq!(e.len(), 1, "{}", stderr(&o));
    assert!(e[0].contains("another altdisk run") && e[0].contains(&first.id().to_string()), "{}", e[0]);
    // The first run's loop device over that file, with --force: refused too.
    let loops = s.loops_of(&img);
    assert_eq!(loops.len(), 1, "{loops:?}");
    let mut by_loop = copy_args(&src, &loops[0], &alt2);
    by_loop.push("--force".into());
    let o = run_altdisk(&by_loop, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(error_lines(&o)[0].contains("another altdisk run"), "{}", stderr(&o));
    assert!(!alt2.exists() || std::fs::read_dir(&alt2).unwrap().next().is_none());

    // Ctrl-C: the first run stops, and its advice is the one that works.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    assert_eq!(first.wait().unwrap().code(), Some(130));
    assert_eq!(record::read(&img).unwrap().unwrap().state, State::Incomplete);
    let o = run_altdisk(&args, &[]);
    assert_eq!(o.status.code(), Some(4), "an incomplete clone is not overwritten without --force");
    assert!(error_lines(&o)[0].contains("--force"), "{}", stderr(&o));
    let mut again = args.clone();
    again.push("--force".into());
    let o = run_altdisk(&again, &[]);
    assert!(o.status.success(), "the advised command failed: {}", stderr(&o));
    assert_eq!(record::read(&img).unwrap().unwrap().state, State::Copied);
    let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", alt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(s.loops_of(&img).is_empty(), "sleep detached the image's loop device");
}

#[test]
fn root_sleep_unmounts_only_what_altdisk_woke() {
    require_root!();
    let mut s = Scratch::new("sleep-other");
    let dev = s.loopdev("other.img", 64 * MIB);
    let other = s.mkfs_mount(&dev, "ext4", None, "other");
    let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(error_lines(&o)[0].contains("not an alternate system altdisk woke"), "{}", stderr(&o));
    assert!(s.mounts().contains(&other), "it stays mounted");
    let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", "/"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let empty = s.mkdir("empty");
    let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

#[test]
fn root_killed_runs_are_cleaned_up_by_the_next() {
    require_root!();
    let mut s = Scratch::new("kills");
    let src = source(&mut s, 512 * MIB, 48);
    let alt = s.path("alt");
    let runs = s.mkdir("runs");
    let runs_s = runs.to_str().unwrap().to_string();
    // This test's own journal directory: other tests' runs never clean up after its kills.
    let env: [(&str, &str); 1] = [("ALTDISK_RUN_DIR", runs_s.as_str())];
    let kills: u64 = std::env::var("ALTDISK_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let seed: u64 = std::env::var("ALTDISK_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 & 0xffff_ffff
    });
    eprintln!("kill seed {seed} (replay: ALTDISK_KILL_SEED={seed} ALTDISK_KILLS={kills})");
    let mut rng = seed;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let img = s.path("clone.img");
    let disk = s.loopdev("disk.img", 512 * MIB);
    // How long a whole run takes here, to spread the kills over it.
    let t0 = Instant::now();
    let o = run_altdisk(&copy_args(&src, &img, &alt), &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let full = t0.elapsed();
    let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", alt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut cleaned = 0;
    let mut log = Vec::new();
    for i in 0..kills {
        // Alternate image files (loop devices altdisk attaches) and loop-device disks.
        let target = if i % 2 == 0 { img.clone() } else { disk.clone() };
        let mut args = copy_args(&src, &target, &alt);
        args.push("--force".into());
        let at = Duration::from_millis(next() % (full.as_millis() as u64 * 5 / 4).max(1));
        let mut child = Command::new(altdisk_bin())
            .args(&args)
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        let _ = child.kill();
        let status = child.wait().unwrap();
        let finished =
            record::read(&target).and_then(|r| r.ok()).is_some_and(|e| e.state == State::Copied && e.step.is_none());
        if status.success() || (finished && altdisk::systems::awake::read(&alt).is_some()) {
            // It finished before the kill: its clone is awake at the mount point, as -P1 leaves it.
            let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", alt.to_str().unwrap()]);
            assert!(o.status.success(), "{}", stderr(&o));
        }
        // The next run: cleans what the killed one left, says so, and does its job.
        let o = run_altdisk(&args, &env);
        assert!(o.status.success(), "kill {i} at {at:?} (seed {seed}): the next run failed: {}", stderr(&o));
        let said = stderr(&o).contains("cleaned up after an interrupted run");
        if said {
            cleaned += 1;
        }
        log.push(format!(
            "| {i} | {} | {} ms | {} | {} |",
            target.file_name().unwrap().to_string_lossy(),
            at.as_millis(),
            if status.success() { "finished first" } else { "killed" },
            if said { "cleaned up, said so" } else { "nothing to clean" }
        ));
        assert_eq!(record::read(&target).unwrap().unwrap().state, State::Copied);
        let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", alt.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(s.mounts().iter().all(|m| !m.starts_with(&alt)), "leaked mounts: {:?}", s.mounts());
        assert!(s.loops_of(&img).is_empty(), "leaked loop devices: {:?}", s.loops_of(&img));
        assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0, "a journal was left");
    }
    figure(
        "kills",
        &format!(
            "- SIGKILL at random points of a loop-device clone: {kills} kills (seed {seed}), {cleaned} left \
             something that the next run cleaned up and named; every next run succeeded, nothing leaked.\n\n\
             | kill | target | after | the killed run | the next run |\n|---|---|---|---|---|\n{}\n",
            log.join("\n")
        ),
    );
}

#[test]
fn root_bad_plans_are_refused_before_writing() {
    require_root!();
    let mut s = Scratch::new("bad-plans");
    let src = source(&mut s, 256 * MIB, 0);
    let t = s.loopdev("t.img", 512 * MIB);
    let untouched = |t: &Path| assert_eq!(blkid(t, "PTTYPE"), None, "the target was written");
    // --mount-at naming a regular file: found by the plan, not after partitioning.
    let file = s.path("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = run_altdisk(&copy_args(&src, &t, &file), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(error_lines(&o)[0].contains("not a directory"), "{}", stderr(&o));
    untouched(&t);
    // Packages for a clone without apt: refused up front.
    let debs = s.mkdir("debs");
    std::fs::write(debs.join("x_1_all.deb"), b"!<arch>\n").unwrap();
    let mut a = copy_args(&src, &t, &s.path("alt"));
    a[5] = "-P12".into();
    a.extend(["-l".into(), debs.display().to_string(), "-w".into(), "x".into()]);
    let o = run_altdisk(&a, &[]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(error_lines(&o)[0].contains("no apt-get"), "{}", stderr(&o));
    untouched(&t);
    // A trial boot of a system without systemd: refused up front.
    let mut a = copy_args(&src, &t, &s.path("alt"));
    a[5] = "-Pall".into();
    a.extend(["--trial".into(), "-g".into()]);
    let o = run_altdisk(&a, &[]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(error_lines(&o)[0].contains("no systemd"), "{}", stderr(&o));
    untouched(&t);
}

#[test]
fn root_records_agree_and_an_untouched_fstab_keeps_its_times() {
    require_root!();
    let mut s = Scratch::new("records");
    let src = source(&mut s, 256 * MIB, 0);
    // No line names a device: nothing to rewrite.
    std::fs::write(src.join("etc/fstab"), "tmpfs /run tmpfs defaults 0 0\n").unwrap();
    let before = std::fs::metadata(src.join("etc/fstab")).unwrap();
    let t = s.loopdev("t.img", 512 * MIB);
    let alt = s.path("alt");
    let o = run_altdisk(&copy_args(&src, &t, &alt), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = std::fs::metadata(alt.join("etc/fstab")).unwrap();
    assert_eq!(after.modified().unwrap(), before.modified().unwrap(), "fstab was rewritten for nothing");
    let disk = record::read(&t).unwrap().unwrap();
    let own: record::BootEnv =
        serde_json::from_slice(&std::fs::read(alt.join("etc/altdisk/bootenv.json")).unwrap()).unwrap();
    assert_eq!(disk.state, State::Copied);
    assert_eq!(own.state, disk.state, "the clone's own record says what the disk's says");
    assert_eq!(own.phases_done, disk.phases_done);
    assert_eq!(disk.step, None);
    let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", alt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn root_unreadable_source_file_is_named_and_the_target_left_incomplete() {
    require_root!();
    let mut s = Scratch::new("unreadable");
    let src = source(&mut s, 256 * MIB, 0);
    // Owned by someone else and unreadable: root reads it only through CAP_DAC_*, which the
    // run below lacks.
    let secret = src.join("srv/unreadable file");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, b"secret").unwrap();
    run("chown", &["4321:4321", secret.to_str().unwrap()]).unwrap();
    run("chmod", &["0000", secret.to_str().unwrap()]).unwrap();
    let t = s.loopdev("t.img", 512 * MIB);
    let alt = s.path("alt");
    let args = copy_args(&src, &t, &alt);
    let mut c = Command::new("capsh");
    c.args(["--drop=cap_dac_override,cap_dac_read_search", "--"])
        .arg("-c")
        .arg(format!(
            "exec '{}' {}",
            altdisk_bin().display(),
            args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ")
        ))
        .env("ALTDISK_LOG", "warn");
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = error_lines(&o);
    assert_eq!(e.len(), 1, "{}", stderr(&o));
    assert!(e[0].contains("entries could not be copied, first: ./") && e[0].contains("ermission denied"), "{}", e[0]);
    // Each one is named in the log (ALTDISK_LOG=warn), this one among them.
    assert!(stderr(&o).contains("./srv/unreadable file"), "{}", stderr(&o));
    assert!(e[0].contains("incomplete") && e[0].contains("--force"), "{}", e[0]);
    assert_eq!(record::read(&t).unwrap().unwrap().state, State::Incomplete);
    assert!(s.mounts().iter().all(|m| !m.starts_with(&alt)), "still mounted: {:?}", s.mounts());
}

/// A bad layout file (`-i`): its text, the exit status and the words of the one line.
struct BadLayout {
    text: &'static str,
    code: i32,
    says: &'static [&'static str],
}

const BAD_LAYOUTS: &[BadLayout] = &[
    BadLayout { text: "[[filesystem]\n", code: 2, says: &["layout file", "not valid"] },
    BadLayout { text: "", code: 2, says: &["no filesystem for /"] },
    BadLayout { text: "filesystem = 3\n", code: 2, says: &["invalid type"] },
    BadLayout {
        text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nsize=\"grow\"\ncolour=\"red\"\n",
        code: 2,
        says: &["unknown field `colour`"],
    },
    BadLayout { text: "[[filesystem]]\nmountpoint=\"/\"\nsize=\"grow\"\n", code: 2, says: &["missing field `fstype`"] },
    BadLayout {
        text: "[[filesystem]]\nmountpoint=\"/home\"\nfstype=\"ext4\"\nsize=\"1G\"\n",
        code: 2,
        says: &["no filesystem for /"],
    },
    BadLayout {
        text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nsize=\"grow\"\n[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nsize=\"1G\"\n",
        code: 2,
        says: &["listed twice"],
    },
    BadLayout {
        text: "[[filesystem]]\nmountpoint=\"home\"\nfstype=\"ext4\"\nsize=\"1G\"\n",
        code: 2,
        says: &["not an absolute path"],
    },
    BadLayout {
        text: "[[filesystem]]\nmountpoint=\"/../x\"\nfstype=\"ext4\"\nsize=\"1G\"\n",
        code: 2,
        says: &["not an absolute path"],
    },
    BadLayout { text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ntfs\"\nsize=\"grow\"\n", code: 2, says: &["`ntfs`"] },
    BadLayout { text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"vfat\"\nsize=\"grow\"\n", code: 2, says: &["`vfat` for /"] },
    BadLayout { text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nsize=\"12 apples\"\n", code: 2, says: &["not a size"] },
    BadLayout { text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nsize=\"-5G\"\n", code: 2, says: &["not a size"] },
    BadLayout { text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nsize=\"0\"\n", code: 2, says: &["needs at least"] },
    BadLayout {
        text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"xfs\"\nsize=\"10M\"\n",
        code: 2,
        says: &["xfs needs at least 300M"],
    },
    BadLayout {
        text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nlabel=\"a-label-that-is-far-too-long\"\nsize=\"grow\"\n",
        code: 2,
        says: &["at most 16 characters"],
    },
    BadLayout {
        text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nsize=\"grow\"\n[[filesystem]]\nmountpoint=\"/var\"\nfstype=\"ext4\"\n",
        code: 2,
        says: &["give it a size"],
    },
    BadLayout {
        text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nsize=\"grow\"\n[[swap]]\nsize=\"x\"\n",
        code: 2,
        says: &["not a size"],
    },
    BadLayout {
        text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nsize=\"grow\"\n[[filesystem]]\nmountpoint=\"/home\"\nfstype=\"ext4\"\nsize=\"64M\"\nlv=\"bad name\"\n",
        code: 2,
        says: &["logical volume name"],
    },
    BadLayout { text: "[[filesystem]]\nmountpoint=\"/\"\nfstype=\"ext4\"\nsize=\"100T\"\n", code: 5, says: &["too small"] },
];

#[test]
fn root_bad_layout_files_are_refused_in_one_line_before_writing() {
    require_root!();

    let mut s = Scratch::new("bad-layouts");
    let src = source(&mut s, 256 * MIB, 0);
    let t = s.loopdev("t.img", 1024 * MIB);
    let alt = s.path("alt");
    let layout = s.path("layout.toml");
    let mut failures = Vec::new();
    for (i, c) in BAD_LAYOUTS.iter().enumerate() {
        std::fs::write(&layout, c.text).unwrap();
        let mut args = copy_args(&src, &t, &alt);
        args.extend(["-i".into(), layout.display().to_string()]);
        let o = run_altdisk(&args, &[]);
        let e = error_lines(&o);
        if o.status.code() != Some(c.code) {
            failures.push(format!("layout {i}: exit {:?}, expected {}: {}", o.status.code(), c.code, stderr(&o)));
        } else if e.len() != 1 {
            failures.push(format!("layout {i}: not one error line: {}", stderr(&o)));
        } else if let Some(w) = c.says.iter().find(|w| !e[0].contains(*w)) {
            failures.push(format!("layout {i}: the message lacks {w:?}: {}", e[0]));
        }
        if blkid(&t, "PTTYPE").is_some() || alt.exists() {
            failures.push(format!("layout {i}: something was written"));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad layouts misbehaved:\n{}",
        failures.len(),
        BAD_LAYOUTS.len(),
        failures.join("\n")
    );
    figure(
        "bad-layouts",
        &format!(
            "- {} bad layout files (`-i`): each refused in one line with its exit status before anything was written.\n",
            BAD_LAYOUTS.len()
        ),
    );
}
