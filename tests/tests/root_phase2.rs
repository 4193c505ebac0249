//! Root tier, phase 2: customizing a clone of a real Debian root (mmdebstrap's apt variant,
//! built once and cached by tests/fixtures-debian/debian-apt.sh) cloned with `-P1` and left
//! mounted. Each test checks what a user would: the versions dpkg reports in the clone,
//! that the running system's and the source's package databases did not change, the files
//! the options replace or remove, and that the first-boot script runs once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use altdisk::job::{Event, Job};
use altdisk::write::customize::{self, Customize};
use altdisk_tests::*;

const MIB: u64 = 1 << 20;

/// The cached Debian tarball (built on first use, ~15-60 s with a reachable mirror).
fn debian_tarball() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures-debian/debian-apt.sh");
    let out = run(script.to_str().unwrap(), &[]).expect("building the Debian fixture");
    PathBuf::from(out.trim())
}

/// A test's world: a Debian source on its own loop device, a target, the clone's mount point.
struct World {
    s: Scratch,
    src: PathBuf,
    target: PathBuf,
    alt: PathBuf,
}

impl World {
    /// Extract the Debian root into a fresh filesystem at src/ and let `prepare` change it.
    fn new(name: &str, prepare: impl FnOnce(&Path)) -> World {
        let tarball = debian_tarball();
        let mut s = Scratch::new(name);
        let dev = s.loopdev("src.img", 768 * MIB);
        let src = s.mkfs_mount(&dev, "ext4", Some("root"), "src");
        run(
            "tar",
            &[
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "-xpf",
                tarball.to_str().unwrap(),
                "-C",
                src.to_str().unwrap(),
            ],
        )
        .unwrap();
        let uuid = blkid(&dev, "UUID").unwrap();
        std::fs::write(src.join("etc/fstab"), format!("UUID={uuid}\t/\text4\terrors=remount-ro 0 1\n")).unwrap();
        prepare(&src);
        let target = s.loopdev("target.img", 1024 * MIB);
        let alt = s.path("alt");
        World { s, src, target, alt }
    }

    /// Clone with -P1, leaving the clone mounted at alt/.
    fn clone(&self) {
        let o = altdisk(
            "altdisk",
            &[
                "copy",
                "--source",
                self.src.to_str().unwrap(),
                "-d",
                self.target.to_str().unwrap(),
                "-P1",
                "--mount-at",
                self.alt.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "clone failed: {}", stderr(&o));
    }

    fn run(&self, c: &Customize) -> (altdisk::Result<()>, Vec<String>) {
        let job = Job::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        job.on_event(move |e| {
            if let Event::Log { message, .. } = e {
                l.lock().unwrap().push(message.clone());
            }
        });
        let r = customize::run(&self.alt, c, std::slice::from_ref(&self.target), &job);
        let log = log.lock().unwrap().clone();
        eprintln!("phase 2 log:\n  {}\nresult: {r:?}", log.join("\n  "));
        (r, log)
    }

    fn sleep(&self) {
        let o = altdisk("alt_rootvg_op", &["-S", "--mount-at", self.alt.to_str().unwrap()]);
        assert!(o.status.success(), "sleep failed: {}", stderr(&o));
        assert!(self.s.mounts().iter().all(|m| !m.starts_with(&self.alt)), "still mounted: {:?}", self.s.mounts());
    }
}

/// A .deb built with dpkg-deb: ships /usr/share/altdisk-test/<name>.
fn build_deb(out_dir: &Path, work: &Path, name: &str, version: &str, extra_control: &str, postinst: Option<&str>) {
    let d = work.join(format!("{name}-{version}"));
    std::fs::create_dir_all(d.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(d.join("usr/share/altdisk-test")).unwrap();
    std::fs::write(
        d.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: altdisk tests <tests@example.invalid>\n{extra_control}Description: altdisk test package\n"
        ),
    )
    .unwrap();
    if let Some(p) = postinst {
        let f = d.join("DEBIAN/postinst");
        std::fs::write(&f, p).unwrap();
        run("chmod", &["0755", f.to_str().unwrap()]).unwrap();
    }
    std::fs::write(d.join(format!("usr/share/altdisk-test/{name}")), format!("{name} {version}\n")).unwrap();
    std::fs::create_dir_all(out_dir).unwrap();
    let deb = out_dir.join(format!("{name}_{version}_all.deb"));
    run("dpkg-deb", &["--root-owner-group", "-Zgzip", "--build", d.to_str().unwrap(), deb.to_str().unwrap()]).unwrap();
}

/// `name version` lines of the installed packages of the system whose dpkg database is at `admindir`.
fn versions(admindir: &Path) -> String {
    run(
        "dpkg-query",
        &[&format!("--admindir={}", admindir.display()), "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n"],
    )
    .unwrap()
}

fn version_of(admindir: &Path, pkg: &str) -> Option<String> {
    versions(admindir)
        .lines()
        .find(|l| l.split(' ').next() == Some(pkg) && l.split(' ').nth(2).is_some_and(|s| s.starts_with("ii")))
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = scan(dir).keys().map(|p| p.display().to_string()).collect();
    v.sort();
    v
}

const POLICY_PROBE: &str = "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n  rc=0\n  /usr/sbin/policy-rc.d altdisk-test start || rc=$?\n  echo \"policy-rc.d answered $rc\" > /var/lib/altdisk-test-policy\nfi\n";

#[test]
fn root_phase2_installs_and_upgrades_from_a_directory_offline() {
    require_root!();
    let w = World::new("p2-packages", |src| {
        // Version 1.0 of a package is installed in the source; the directory holds 2.0.
        let v1 = src.join("tmp/v1");
        build_deb(&v1, &src.join("tmp/build"), "altdisk-test-upgrade", "1.0", "", None);
        run("chroot", &[src.to_str().unwrap(), "dpkg", "-i", "/tmp/v1/altdisk-test-upgrade_1.0_all.deb"]).unwrap();
        run("rm", &["-rf", src.join("tmp/v1").to_str().unwrap(), src.join("tmp/build").to_str().unwrap()]).unwrap();
    });
    let debs = w.s.mkdir("debs");
    build_deb(&debs, &w.s.path("build"), "altdisk-test-hello", "1.0", "", Some(POLICY_PROBE));
    build_deb(&debs.join("updates"), &w.s.path("build"), "altdisk-test-upgrade", "2.0", "", None);
    // In the directory but neither named nor installed: update_all leaves it out.
    build_deb(&debs, &w.s.path("build"), "altdisk-test-extra", "1.0", "", None);
    w.clone();
    assert_eq!(version_of(&w.alt.join("var/lib/dpkg"), "altdisk-test-upgrade").as_deref(), Some("1.0"));

    let host_status = std::fs::read("/var/lib/dpkg/status").unwrap();
    let src_status = std::fs::read(w.src.join("var/lib/dpkg/status")).unwrap();
    let src_versions = versions(&w.src.join("var/lib/dpkg"));
    let debs_before = listing(&debs);
    let lists_before = listing(&w.alt.join("var/lib/apt/lists"));
    let sources_before = std::fs::read(w.alt.join("etc/apt/sources.list")).ok();

    let c = Customize {
        images: Some(debs.clone()),
        packages: vec!["altdisk-test-hello".into()],
        update_all: true,
        install_flags: vec!["--no-install-recommends".into()],
        ..Default::default()
    };
    c.validate().unwrap();
    let (r, log) = w.run(&c);
    r.unwrap();

    let admin = w.alt.join("var/lib/dpkg");
    assert_eq!(version_of(&admin, "altdisk-test-hello").as_deref(), Some("1.0"), "{}", versions(&admin));
    assert_eq!(version_of(&admin, "altdisk-test-upgrade").as_deref(), Some("2.0"), "{}", versions(&admin));
    assert_eq!(version_of(&admin, "altdisk-test-extra"), None, "update_all installs nothing new");
    assert_eq!(
        std::fs::read_to_string(w.alt.join("usr/share/altdisk-test/altdisk-test-upgrade")).unwrap(),
        "altdisk-test-upgrade 2.0\n"
    );
    assert!(w.alt.join("usr/share/altdisk-test/altdisk-test-hello").is_file());
    // Services were kept from starting while the package was configured, and only then.
    assert_eq!(
        std::fs::read_to_string(w.alt.join("var/lib/altdisk-test-policy")).unwrap().trim(),
        "policy-rc.d answered 101"
    );
    assert!(std::fs::symlink_metadata(w.alt.join("usr/sbin/policy-rc.d")).is_err(), "policy-rc.d left behind");
    assert!(!w.alt.join("var/cache/altdisk-pkgs").exists(), "the local source is removed");
    assert!(w.s.mounts().iter().all(|m| !m.starts_with(w.alt.join("var"))), "a bind mount stayed: {:?}", w.s.mounts());
    assert!(log.iter().any(|l| l.contains("upgraded altdisk-test-upgrade") && l.contains("1.0 -> 2.0")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("installed altdisk-test-hello")), "{log:?}");
    // The clone's own apt configuration and lists, the directory, the running system's and
    // the source's package databases are as they were.
    assert_eq!(listing(&w.alt.join("var/lib/apt/lists")), lists_before);
    assert_eq!(std::fs::read(w.alt.join("etc/apt/sources.list")).ok(), sources_before);
    assert_eq!(listing(&debs), debs_before, "the package directory was changed");
    assert!(std::fs::read("/var/lib/dpkg/status").unwrap() == host_status, "the running system's dpkg status changed");
    assert!(
        std::fs::read(w.src.join("var/lib/dpkg/status")).unwrap() == src_status,
        "the source's dpkg status changed"
    );
    assert_eq!(versions(&w.src.join("var/lib/dpkg")), src_versions);

    // Running it again is a no-op that says so.
    let (r, log) = w.run(&c);
    r.unwrap();
    assert!(log.iter().any(|l| l.contains("already at the versions")), "{log:?}");
    w.sleep();
}

#[test]
fn root_phase2_unsatisfiable_dependency_fails_and_cleans_up() {
    require_root!();
    let w = World::new("p2-broken", |src| {
        // The source has its own policy-rc.d: it must come back as it was.
        std::fs::write(src.join("usr/sbin/policy-rc.d"), "#!/bin/sh\n# the admin's own\nexit 0\n").unwrap();
        run("chmod", &["0755", src.join("usr/sbin/policy-rc.d").to_str().unwrap()]).unwrap();
    });
    let debs = w.s.mkdir("debs");
    build_deb(&debs, &w.s.path("build"), "altdisk-test-broken", "1.0", "Depends: altdisk-no-such-package\n", None);
    w.clone();
    let host_status = std::fs::read("/var/lib/dpkg/status").unwrap();
    let c =
        Customize { images: Some(debs.clone()), packages: vec!["altdisk-test-broken".into()], ..Default::default() };
    let (r, _) = w.run(&c);
    let e = r.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, altdisk::Error::Command { .. }), "{msg}");
    assert!(msg.contains("installing packages into the clone failed"), "{msg}");
    assert!(msg.contains("altdisk-test-broken") && msg.contains("altdisk-no-such-package"), "apt's reason: {msg}");
    assert_eq!(e.exit_code(), 1);
    assert_eq!(
        std::fs::read_to_string(w.alt.join("usr/sbin/policy-rc.d")).unwrap(),
        "#!/bin/sh\n# the admin's own\nexit 0\n",
        "the clone's own policy-rc.d is back"
    );
    assert!(!w.alt.join("usr/sbin/policy-rc.d.altdisk-saved").exists());
    assert!(!w.alt.join("var/cache/altdisk-pkgs").exists());
    assert!(w.s.mounts().iter().all(|m| !m.starts_with(w.alt.join("var"))), "a bind mount stayed: {:?}", w.s.mounts());
    assert_eq!(version_of(&w.alt.join("var/lib/dpkg"), "altdisk-test-broken"), None);
    assert!(std::fs::read("/var/lib/dpkg/status").unwrap() == host_status);
    // A name the directory does not have is apt's "unable to locate".
    let c = Customize { images: Some(debs), packages: vec!["altdisk-test-absent".into()], ..Default::default() };
    let msg = w.run(&c).0.unwrap_err().to_string();
    assert!(msg.contains("Unable to locate package altdisk-test-absent"), "{msg}");
    w.sleep();
}

#[test]
fn root_phase2_customization_script_runs_on_this_system() {
    require_root!();
    let w = World::new("p2-script", |_| {});
    w.clone();
    let dir = w.s.mkdir("scripts");
    let good = dir.join("custom.sh");
    std::fs::write(&good, "#!/bin/sh\nset -e\necho \"disks=$ALT_DISKS\" > \"$ALT_ROOT/etc/from-script\"\necho done\n")
        .unwrap();
    run("chmod", &["0755", good.to_str().unwrap()]).unwrap();
    let plain = dir.join("plain.sh");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    let failing = dir.join("fails.sh");
    std::fs::write(&failing, "#!/bin/sh\necho 'something went wrong' >&2\nexit 3\n").unwrap();
    run("chmod", &["0755", failing.to_str().unwrap()]).unwrap();

    // Refused before anything is written: a relative path, a file that is not executable.
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 192.0.2.1\n").unwrap();
    let before = std::fs::read(w.alt.join("etc/resolv.conf")).unwrap();
    for bad in [PathBuf::from("scripts/custom.sh"), plain.clone()] {
        let c = Customize { script: Some(bad.clone()), resolv_conf: Some(resolv.clone()), ..Default::default() };
        let e = c.validate().unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains(&bad.display().to_string()), "{e}");
        assert!(w.run(&c).0.is_err());
        assert_eq!(std::fs::read(w.alt.join("etc/resolv.conf")).unwrap(), before, "written before the check");
    }

    let c = Customize { script: Some(good.clone()), ..Default::default() };
    let (r, log) = w.run(&c);
    r.unwrap();
    let loopname = w.target.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(std::fs::read_to_string(w.alt.join("etc/from-script")).unwrap(), format!("disks={loopname}\n"));
    assert!(log.iter().any(|l| l.ends_with(": done")), "{log:?}");

    let c = Customize { script: Some(failing.clone()), ..Default::default() };
    let msg = w.run(&c).0.unwrap_err().to_string();
    assert!(msg.contains(failing.to_str().unwrap()) && msg.contains("status 3"), "{msg}");
    assert!(msg.contains("something went wrong"), "{msg}");
    w.sleep();
}

#[test]
fn root_phase2_resolv_conf_replaces_a_file_and_a_symlink() {
    require_root!();
    let w = World::new("p2-resolv", |src| {
        std::fs::write(src.join("etc/resolv.conf"), "nameserver 198.51.100.1\n").unwrap();
    });
    w.clone();
    let new = w.s.path("resolv.conf");
    std::fs::write(&new, "# for the clone\nnameserver 192.0.2.53\n").unwrap();
    let c = Customize { resolv_conf: Some(new.clone()), ..Default::default() };
    w.run(&c).0.unwrap();
    let at = w.alt.join("etc/resolv.conf");
    assert_eq!(std::fs::read_to_string(&at).unwrap(), "# for the clone\nnameserver 192.0.2.53\n");

    // systemd-resolved's layout: an absolute link into /run. It is replaced, and neither the
    // clone's link target nor the running system's file of that name is written.
    let stub = w.alt.join("run/systemd/resolve/stub-resolv.conf");
    std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
    std::fs::write(&stub, "nameserver 127.0.0.53\n").unwrap();
    std::fs::remove_file(&at).unwrap();
    std::os::unix::fs::symlink("/run/systemd/resolve/stub-resolv.conf", &at).unwrap();
    let host_stub = std::fs::read("/run/systemd/resolve/stub-resolv.conf").ok();
    w.run(&c).0.unwrap();
    let md = std::fs::symlink_metadata(&at).unwrap();
    assert!(md.is_file(), "still a link");
    assert_eq!(std::fs::read_to_string(&at).unwrap(), "# for the clone\nnameserver 192.0.2.53\n");
    assert_eq!(std::fs::read_to_string(&stub).unwrap(), "nameserver 127.0.0.53\n");
    assert_eq!(std::fs::read("/run/systemd/resolve/stub-resolv.conf").ok(), host_stub);
    std::fs::remove_dir_all(w.alt.join("run/systemd")).unwrap();
    w.sleep();
}

#[test]
fn root_phase2_device_reset_and_console() {
    require_root!();
    let w = World::new("p2-reset", |src| {
        let files: &[(&str, &str)] = &[
            ("etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
            ("var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n"),
            ("etc/ssh/ssh_host_ed25519_key", "fake private key\n"),
            ("etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA fake\n"),
            ("etc/ssh/ssh_host_rsa_key", "fake private key\n"),
            ("etc/ssh/sshd_config", "PermitRootLogin no\n"),
            ("etc/udev/rules.d/70-persistent-net.rules", "SUBSYSTEM==\"net\", ATTR{address}==\"52:54:00:12:34:56\", NAME=\"eth0\"\n"),
            ("etc/systemd/network/10-lan.link", "[Match]\nMACAddress=52:54:00:12:34:56\n\n[Link]\nName=lan0\n"),
            ("etc/systemd/network/20-any.network", "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n"),
            ("etc/initramfs-tools/initramfs.conf", "MODULES=dep\n"),
            ("etc/default/grub", "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"console=tty0 net.ifnames=0\"\n"),
            ("etc/kernel/cmdline", "root=UUID=x ro console=tty0\n"),
        ];
        for (p, text) in files {
            let f = src.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, text).unwrap();
        }
    });
    w.clone();
    let c = Customize { device_reset: true, console: Some("ttyS0,115200n8".into()), ..Default::default() };
    c.validate().unwrap();
    let (r, log) = w.run(&c);
    r.unwrap();
    let a = &w.alt;
    assert_eq!(std::fs::read(a.join("etc/machine-id")).unwrap(), b"", "machine-id emptied");
    assert_eq!(std::fs::read_link(a.join("var/lib/dbus/machine-id")).unwrap(), PathBuf::from("/etc/machine-id"));
    let keys: Vec<_> = std::fs::read_dir(a.join("etc/ssh"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ssh_host_"))
        .collect();
    assert!(keys.is_empty(), "host keys left: {keys:?}");
    assert!(a.join("etc/ssh/sshd_config").exists());
    assert!(a.join("var/lib/altdisk/firstboot/pending").exists(), "key regeneration is staged for first boot");
    assert!(!a.join("etc/udev/rules.d/70-persistent-net.rules").exists());
    assert!(!a.join("etc/systemd/network/10-lan.link").exists(), "the MAC-matched .link is dropped");
    assert!(a.join("etc/systemd/network/20-any.network").exists(), "a .network without a MAC stays");
    for f in ["70-persistent-net.rules", "10-lan.link"] {
        assert!(log.iter().any(|l| l.contains(f)), "{f} not reported: {log:?}");
    }
    let conf = std::fs::read_to_string(a.join("etc/initramfs-tools/conf.d/zz-altdisk-generic")).unwrap();
    assert!(conf.lines().any(|l| l == "MODULES=most"), "{conf}");
    let grub = std::fs::read_to_string(a.join("etc/default/grub")).unwrap();
    assert!(grub.contains("GRUB_CMDLINE_LINUX=\"net.ifnames=0 console=ttyS0,115200n8\"\n"), "{grub}");
    assert_eq!(grub.matches("console=").count(), 1, "{grub}");
    assert_eq!(
        std::fs::read_to_string(a.join("etc/kernel/cmdline")).unwrap(),
        "root=UUID=x ro console=ttyS0,115200n8\n"
    );
    // The source keeps its identity.
    assert_eq!(std::fs::read_to_string(w.src.join("etc/machine-id")).unwrap(), "0123456789abcdef0123456789abcdef\n");
    assert!(w.src.join("etc/ssh/ssh_host_rsa_key").exists());
    // At first boot the clone has no ssh-keygen here (no openssh): nothing fails, it is done once.
    let line = customize::first_boot(&w.alt).unwrap();
    assert!(line.is_some());
    assert_eq!(customize::first_boot(&w.alt).unwrap(), None);
    w.sleep();
}

#[test]
fn root_phase2_first_boot_script_runs_once() {
    require_root!();
    let w = World::new("p2-firstboot", |_| {});
    w.clone();
    let script = w.s.path("firstboot.sh");
    std::fs::write(&script, "#!/bin/sh\necho run >> /root/first-boot-runs\necho \"hello from first boot in $(pwd)\"\n")
        .unwrap();
    run("chmod", &["0755", script.to_str().unwrap()]).unwrap();
    let c = Customize { first_boot: Some(script.clone()), ..Default::default() };
    w.run(&c).0.unwrap();
    let staged = w.alt.join("var/lib/altdisk/firstboot/script");
    assert_eq!(std::fs::read(&staged).unwrap(), std::fs::read(&script).unwrap());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&staged).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    assert!(!w.alt.join("root/first-boot-runs").exists(), "it does not run before the first boot");

    let line = customize::first_boot(&w.alt).unwrap().expect("something was pending");
    assert!(line.contains("first-boot script ran"), "{line}");
    assert_eq!(std::fs::read_to_string(w.alt.join("root/first-boot-runs")).unwrap(), "run\n");
    let log = std::fs::read_to_string(w.alt.join("var/log/altdisk/firstboot.log")).unwrap();
    assert!(log.contains("hello from first boot in /"), "{log}");
    assert_eq!(customize::first_boot(&w.alt).unwrap(), None, "it runs once");
    assert_eq!(std::fs::read_to_string(w.alt.join("root/first-boot-runs")).unwrap(), "run\n");

    // A failing script is reported (the unit fails) and is not run again either.
    std::fs::write(&script, "#!/bin/sh\necho broken >&2\nexit 4\n").unwrap();
    w.run(&c).0.unwrap();
    let e = customize::first_boot(&w.alt).unwrap_err().to_string();
    assert!(e.contains("status 4") && e.contains("broken"), "{e}");
    assert_eq!(customize::first_boot(&w.alt).unwrap(), None);
    assert!(std::fs::read_to_string(w.alt.join("var/log/altdisk/firstboot.log")).unwrap().contains("broken"));
    w.sleep();
}

/// A Packages index for the .deb files in `repo` (paths relative to `top`), as
/// dpkg-scanpackages writes it.
fn packages_index(top: &Path, debs: &[PathBuf]) -> String {
    let mut s = String::new();
    for d in debs {
        let fields = run("dpkg-deb", &["-f", d.to_str().unwrap()]).unwrap();
        let sum = run("sha256sum", &[d.to_str().unwrap()]).unwrap();
        let size = std::fs::metadata(d).unwrap().len();
        s.push_str(&format!(
            "{}\nFilename: {}\nSize: {size}\nSHA256: {}\n\n",
            fields.trim_end(),
            d.strip_prefix(top).unwrap().display(),
            sum.split_whitespace().next().unwrap()
        ));
    }
    s
}

#[test]
fn root_phase2_installs_from_local_apt_repositories() {
    require_root!();
    let w = World::new("p2-repos", |_| {});
    // A flat repository with only Packages.gz and no Release, as people make by hand.
    let flat = w.s.mkdir("flat");
    build_deb(&flat.join("pool"), &w.s.path("build"), "altdisk-test-flat", "1.0", "", None);
    let index = packages_index(&flat, &[flat.join("pool/altdisk-test-flat_1.0_all.deb")]);
    std::fs::write(flat.join("Packages"), index).unwrap();
    run("gzip", &[flat.join("Packages").to_str().unwrap()]).unwrap();
    // A repository with dists/ (suite and component), as a mirror has it.
    let arch = run("dpkg", &["--print-architecture"]).unwrap().trim().to_string();
    let mirror = w.s.mkdir("mirror");
    build_deb(&mirror.join("pool/main"), &w.s.path("build"), "altdisk-test-mirror", "3.1-1", "", None);
    let bin = mirror.join(format!("dists/stable/main/binary-{arch}"));
    std::fs::create_dir_all(&bin).unwrap();
    let index = packages_index(&mirror, &[mirror.join("pool/main/altdisk-test-mirror_3.1-1_all.deb")]);
    std::fs::write(bin.join("Packages"), index).unwrap();
    w.clone();
    for (dir, pkg, ver) in [(&flat, "altdisk-test-flat", "1.0"), (&mirror, "altdisk-test-mirror", "3.1-1")] {
        let c = Customize { images: Some(dir.clone()), packages: vec![pkg.into()], ..Default::default() };
        c.validate().unwrap();
        let (r, log) = w.run(&c);
        r.unwrap();
        assert_eq!(version_of(&w.alt.join("var/lib/dpkg"), pkg).as_deref(), Some(ver), "{log:?}");
        assert!(!w.alt.join("var/cache/altdisk-pkgs").exists());
    }
    w.sleep();
}

/// The whole of phases 1 and 2 from the command line, as an admin runs it.
#[test]
fn root_phase2_from_the_command_line() {
    require_root!();
    // A system that boots with systemd (the fixture has no init: this stands in for it), so
    // the first-boot script can run through altdisk's units.
    let w = World::new("p2-cli", |src| {
        let sd = src.join("usr/lib/systemd/systemd");
        std::fs::create_dir_all(sd.parent().unwrap()).unwrap();
        std::fs::write(&sd, "#!/bin/sh\n").unwrap();
    });
    let debs = w.s.mkdir("debs");
    build_deb(&debs, &w.s.mkdir("build"), "altdisk-test-hello", "1.0", "", None);
    let resolv = w.s.path("resolv.conf");
    std::fs::write(&resolv, "nameserver 192.0.2.53\n").unwrap();
    let script = w.s.path("first.sh");
    std::fs::write(&script, "#!/bin/sh\necho first boot ran\n").unwrap();
    run("chmod", &["755", script.to_str().unwrap()]).unwrap();
    let o = altdisk(
        "alt_disk_copy",
        &[
            "--source",
            w.src.to_str().unwrap(),
            "-d",
            w.target.to_str().unwrap(),
            "-P12",
            "--mount-at",
            w.alt.to_str().unwrap(),
            "-l",
            debs.to_str().unwrap(),
            "-w",
            "altdisk-test-hello",
            "-R",
            resolv.to_str().unwrap(),
            "-x",
            script.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("phase 2 done"), "{}", stdout(&o));
    // Without phase 3 the clone stays mounted, as on AIX.
    let env = altdisk::discover::record::read(&w.target).unwrap().unwrap();
    assert_eq!(env.state, altdisk::discover::record::State::Customized);
    assert_eq!(version_of(&w.alt.join("var/lib/dpkg"), "altdisk-test-hello").as_deref(), Some("1.0"));
    assert_eq!(std::fs::read_to_string(w.alt.join("etc/resolv.conf")).unwrap_or_default(), "nameserver 192.0.2.53\n");
    assert!(w.alt.join("var/lib/altdisk/firstboot/pending").exists(), "the first-boot script is pending in the clone");
    // Modes of what altdisk made in the clone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&w.alt.join("etc/resolv.conf")), 0o644, "resolv.conf");
    assert_eq!(mode(&w.alt.join("var/lib/altdisk/firstboot/script")), 0o700, "the first-boot script");
    assert_eq!(mode(&w.alt.join("etc/altdisk/bootenv.json")), 0o644, "the clone's record");
    assert_eq!(mode(&w.alt.join("usr/local/lib/altdisk/altdisk")), 0o755, "the clone's altdisk");
    // The units that run it are in the clone, enabled, and call a binary the clone holds.
    let bin = w.alt.join("usr/local/lib/altdisk/altdisk");
    assert!(bin.is_file(), "the clone has its own altdisk");
    for unit in ["altdisk-firstboot.service", "altdisk-names.service", "altdisk-commit.service"] {
        let text = std::fs::read_to_string(w.alt.join("etc/systemd/system").join(unit)).unwrap();
        assert!(text.contains("ExecStart=/usr/local/lib/altdisk/altdisk boot-hook"), "{text}");
        let link = w.alt.join("etc/systemd/system/multi-user.target.wants").join(unit);
        assert!(std::fs::symlink_metadata(link).is_ok(), "{unit} is enabled");
    }
    w.sleep();
    assert_eq!(version_of(Path::new("/var/lib/dpkg"), "altdisk-test-hello"), None, "the running system is untouched");
}
