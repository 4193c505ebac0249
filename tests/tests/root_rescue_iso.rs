//! The rescue ISO without booting it: a hybrid image with El Torito entries for BIOS and
//! UEFI and a partition table for USB sticks, GRUB's menu on the serial line with the "to
//! RAM" entry, and a live root into which dpkg installed the very altdisk package given to
//! the build. Needs root (the build runs mmdebstrap), xorriso and squashfs-tools
//! (image-build/install-deps.sh). A cold build takes about 8 minutes; later runs reuse it.

use std::fs;

use altdisk_tests::pkg;
use altdisk_tests::rescue::{el_torito_report, extract, rescue_iso, squashfs_cat, squashfs_list};
use altdisk_tests::*;

const MIB: u64 = 1 << 20;

#[test]
fn root_rescue_iso_boots_bios_and_uefi_and_holds_the_altdisk_package() {
    require_root!();
    let iso = rescue_iso().expect("rescue ISO");
    let size = fs::metadata(&iso).unwrap().len();
    eprintln!("ISO {} ({} MiB)", iso.display(), size / MIB);
    assert!(size < 500 * MIB, "the ISO is {} MiB, over the 500 MiB goal", size / MIB);

    // El Torito: a BIOS image (GRUB's eltorito.img) and a UEFI one (the FAT efi.img); GRUB's
    // hybrid MBR and a partition table for booting the same file as a disk.
    let report = el_torito_report(&iso).unwrap();
    let images: Vec<&str> = report.lines().filter(|l| l.starts_with("El Torito boot img :")).collect();
    assert!(images.iter().any(|l| l.split_whitespace().nth(6) == Some("BIOS")), "no BIOS boot image:\n{report}");
    assert!(images.iter().any(|l| l.split_whitespace().nth(6) == Some("UEFI")), "no UEFI boot image:\n{report}");
    let record = report.lines().find(|l| l.starts_with("Boot record")).unwrap_or_default();
    assert!(record.contains("El Torito") && record.contains("grub2-mbr"), "not a hybrid image: {record}\n{report}");
    let table = run("sfdisk", &["-d", iso.to_str().unwrap()]).unwrap();
    assert!(
        table.contains("type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "no EFI system partition for USB boot:\n{table}"
    );

    let scratch = Scratch::new("rescue-iso");
    // GRUB: the menu on screen and serial line, the default and "to RAM" entries.
    let cfg_path = scratch.path("grub.cfg");
    extract(&iso, "/boot/grub/grub.cfg", &cfg_path).unwrap();
    let cfg = fs::read_to_string(&cfg_path).unwrap();
    for want in [
        "serial --unit=0 --speed=115200",
        "terminal_output console serial",
        "set default=live",
        "--id toram",
        " toram",
        "console=tty0 console=ttyS0,115200n8",
        "boot=live",
    ] {
        assert!(cfg.contains(want), "grub.cfg lacks {want:?}:\n{cfg}");
    }
    let timeout: u32 = cfg
        .lines()
        .find_map(|l| l.trim().strip_prefix("set timeout="))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("grub.cfg sets no timeout:\n{cfg}"));
    assert!(
        (3..=30).contains(&timeout),
        "GRUB timeout {timeout} s: too short to pick an entry on a serial line, or too long"
    );

    // The live root: dpkg installed the package the build was given, file for file.
    let sqfs = scratch.path("filesystem.squashfs");
    extract(&iso, "/live/filesystem.squashfs", &sqfs).unwrap();
    let list = squashfs_list(&sqfs).unwrap();
    for path in [
        "/usr/sbin/altdisk",
        "/usr/sbin/altdiskd",
        "/usr/share/dbus-1/system-services/org.altdisk.AltDisk1.service",
        "/usr/local/sbin/altdisk-rescue",
        "/usr/local/lib/altdisk-rescue/ready",
        "/etc/systemd/system/altdisk-rescue-ready.service",
    ] {
        assert!(list.lines().any(|l| l.ends_with(&format!(" {path}"))), "the live root lacks {path}");
    }
    let status = String::from_utf8_lossy(&squashfs_cat(&sqfs, "var/lib/dpkg/status").unwrap()).into_owned();
    let stanza = status.split("\n\n").find(|s| s.starts_with("Package: altdisk\n")).expect("dpkg knows no altdisk");
    assert!(stanza.contains("Status: install ok installed"), "{stanza}");
    let files = String::from_utf8_lossy(&squashfs_cat(&sqfs, "var/lib/dpkg/info/altdisk.list").unwrap()).into_owned();
    assert!(files.lines().any(|l| l == "/usr/sbin/altdisk"), "dpkg did not install /usr/sbin/altdisk:\n{files}");

    let deb = pkg::debs().unwrap().into_iter().find(|d| pkg::package_name(d) == "altdisk").unwrap();
    let version = run("dpkg-deb", &["-f", deb.to_str().unwrap(), "Version"]).unwrap();
    assert!(
        stanza.contains(&format!("Version: {}", version.trim())),
        "installed:\n{stanza}\nbuilt from {}",
        deb.display()
    );
    let unpacked = scratch.mkdir("deb");
    run("dpkg-deb", &["-x", deb.to_str().unwrap(), unpacked.to_str().unwrap()]).unwrap();
    for bin in ["usr/sbin/altdisk", "usr/sbin/altdiskd"] {
        let live = squashfs_cat(&sqfs, bin).unwrap();
        assert!(live == fs::read(unpacked.join(bin)).unwrap(), "{bin} in the live root differs from the package's");
    }

    // The GUI: with its package, installed by dpkg and started by the kiosk unit; without it,
    // no kiosk (and no compositor).
    let gui = pkg::debs().unwrap().iter().any(|d| pkg::package_name(d) == "altdisk-gui");
    let kiosk = list.lines().any(|l| l.contains("/etc/systemd/system/multi-user.target.wants/altdisk-kiosk.service"));
    assert_eq!(kiosk, gui, "kiosk unit enabled: {kiosk}, GUI package given: {gui}");
    let has = |path: &str| list.lines().any(|l| l.ends_with(&format!(" {path}")));
    assert_eq!(has("/usr/bin/weston"), gui, "weston installed: {}, GUI package given: {gui}", has("/usr/bin/weston"));
    if gui {
        let files =
            String::from_utf8_lossy(&squashfs_cat(&sqfs, "var/lib/dpkg/info/altdisk-gui.list").unwrap()).into_owned();
        assert!(
            files.lines().any(|l| l == "/usr/bin/altdisk-gui"),
            "dpkg did not install /usr/bin/altdisk-gui:\n{files}"
        );
    }
    assert!(has("/usr/sbin/kexec"), "no kexec for altdisk boot-now --kexec");

    // altdisk's boot units would rename the machine's systems: masked in the rescue system.
    for unit in ["altdisk-names.service", "altdisk-commit.service", "altdisk-firstboot.service"] {
        let line = list.lines().find(|l| l.ends_with(&format!(" /etc/systemd/system/{unit} -> /dev/null")));
        assert!(line.is_some(), "{unit} is not masked in the live root");
    }
}
