//! The rescue ISO boots: under OVMF (UEFI) and SeaBIOS (BIOS), from a CD drive and from a
//! USB stick, to the line `altdisk-rescue: ready` on the serial console, printed once, after
//! altdiskd answered on the system bus; then the service, the altdisk commands and the text
//! menu work, tty1 shows the menu (a picture of the screen is taken), and altdisk's boot
//! units kept their hands off the disks. The "to RAM" entry lets the stick be pulled.
//!
//! Two combinations run by default (OVMF + USB stick with "to RAM", SeaBIOS + CD); the other
//! two with `--include-ignored` (see tests/README.md). Needs root, qemu-system-x86, ovmf,
//! seabios and the image build tools (image-build/install-deps.sh, tests/vm/install-deps.sh).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use altdisk_tests::rescue::{ppm_foreground_pixels, rescue_iso};
use altdisk_tests::vm::{BootStep, Firmware, Machine, Medium};
use altdisk_tests::*;

const GIB: u64 = 1 << 30;
const READY: &str = "altdisk-rescue: ready";

/// Fails (does not skip) when the VM tier cannot run here: CI installs what it needs.
fn require_tools() {
    assert!(is_root(), "vm_* tests need root (the image build uses mmdebstrap and chroot)");
    for tool in ["qemu-system-x86_64", "mmdebstrap", "xorriso", "grub-mkrescue", "mksquashfs"] {
        let found =
            std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists())).unwrap_or(false);
        assert!(found, "{tool} is missing: run image-build/install-deps.sh (or tests/run.sh as root)");
    }
    for f in [vm::ovmf_code(), vm::ovmf_vars()] {
        assert!(f.exists(), "{} is missing: apt-get install ovmf", f.display());
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stick {
    Cd,
    Usb,
}

/// Boots the ISO; returns the machine at its root shell (the menu left with "s") and how
/// long QEMU took from its start to the ready line.
fn boot(name: &str, firmware: Firmware, stick: Stick, to_ram: bool) -> (Machine, Duration) {
    require_tools();
    let iso = rescue_iso().expect("rescue ISO");
    let medium = match stick {
        Stick::Cd => Medium::Cdrom(iso),
        Stick::Usb => Medium::UsbStick(iso),
    };
    // One blank disk, for lspv to find.
    let mut m = Machine::live(name, firmware, medium, &[GIB]).unwrap();
    let mut steps = Vec::new();
    if to_ram {
        // GRUB's countdown on the serial line; "r" is the to-RAM entry's hotkey.
        steps.push(BootStep::new(&["executed automatically in"], "r"));
    }
    steps.push(BootStep::new(&[READY, "choice> "], "s\n"));
    m.set_boot_steps(steps);
    m.boot().unwrap();
    let times = m.boot_step_times();
    let ready = *times.last().unwrap();
    eprintln!("[{name}] ready line after {ready:.0?}, shell after {:.0?}", m.last_boot_time().unwrap());
    (m, ready)
}

/// What every boot must show, whatever the firmware and medium.
fn check_live(m: &mut Machine, firmware: Firmware, stick: Stick, to_ram: bool) {
    // The ready line: once, on a line of its own; no complaint that altdiskd did not answer.
    let console = m.console_text();
    let lines = console.lines().filter(|l| l.trim() == READY).count();
    assert_eq!(lines, 1, "the ready line shows {lines} times on the serial console");
    assert!(!console.contains("altdiskd does not answer"), "{console}");

    // The service: started by D-Bus activation, answering a read call.
    assert_eq!(m.sh("systemctl is-active altdisk-rescue-ready.service altdiskd.service").unwrap(), "active\nactive\n");
    let disks =
        m.sh("busctl call org.altdisk.AltDisk1 /org/altdisk/AltDisk1 org.altdisk.AltDisk1.Manager Disks").unwrap();
    assert!(
        disks.contains("\"/dev/vda\"") && disks.contains("\"free\""),
        "Disks() did not list the blank vda: {disks}"
    );

    // The altdisk commands, from the package.
    assert_eq!(m.sh("command -v altdisk").unwrap().trim(), "/usr/sbin/altdisk");
    let lspv = m.sh("altdisk lspv").unwrap();
    assert!(
        lspv.lines().any(|l| l.starts_with("vda ") && l.contains("free")),
        "lspv does not show the blank disk as free:\n{lspv}"
    );
    let efi = m.run("test -d /sys/firmware/efi", Duration::from_secs(30)).unwrap().0 == 0;
    assert_eq!(efi, firmware == Firmware::Ovmf, "booted in the wrong firmware mode");
    let bootlist = m.sh("altdisk bootlist").unwrap();
    if efi {
        assert!(bootlist.contains("Boot"), "no UEFI boot entries listed:\n{bootlist}");
    } else {
        assert!(bootlist.contains("BIOS machine"), "{bootlist}");
    }

    // The live medium.
    let medium = m.sh("findmnt -no SOURCE /run/live/medium || true").unwrap();
    if to_ram {
        assert!(m.sh("grep -qw toram /proc/cmdline && echo yes").unwrap().contains("yes"), "not booted to RAM");
    } else {
        let want = match stick {
            Stick::Cd => "/dev/sr0",
            Stick::Usb => "/dev/sd",
        };
        assert!(medium.trim().starts_with(want), "the live medium is {medium:?}, not {want}*");
    }

    // altdisk find: every system on the disks (none here: a blank disk), without error.
    let (rc, found) = m.run("altdisk find", Duration::from_secs(300)).unwrap();
    assert_eq!(rc, 0, "altdisk find failed:\n{found}");

    // The menu, fed through a pipe: find, lspv, a bad choice, then the shell.
    let menu = m.sh("printf '1\\n\\n2\\n\\nx\\ns\\n' | altdisk-rescue").unwrap();
    assert!(menu.contains("# altdisk find") && menu.contains("# altdisk lspv"), "{menu}");
    assert!(menu.lines().any(|l| l.starts_with("vda ") && l.contains("free")), "{menu}");
    assert!(menu.contains("'x' is not a choice"), "{menu}");
    assert_eq!(menu.contains("altdisk restore DISK"), efi, "UEFI-only entry shown wrongly:\n{menu}");
    assert!(menu.contains(if efi { "altdisk boot-now DISK" } else { "altdisk boot-now --kexec DISK" }), "{menu}");
    assert!(menu.contains(if efi { "UEFI boot" } else { "BIOS (legacy) boot" }), "{menu}");

    // The screen: tty1 is in front and runs the menu (no GUI package in this build) or the
    // kiosk: weston with the GUI as its client (with it).
    assert_eq!(m.sh("cat /sys/class/tty/tty0/active").unwrap().trim(), "tty1");
    let kiosk = m.run("systemctl -q is-enabled altdisk-kiosk.service", Duration::from_secs(30)).unwrap().0 == 0;
    if kiosk {
        let (rc, out) = m
            .run(
                "systemctl -q is-active altdisk-kiosk.service && pgrep -a -P \"$(pgrep -x weston)\" | grep -v sd-pam ||
                 { systemctl status altdisk-kiosk.service --no-pager -l; journalctl -b -u altdisk-kiosk.service --no-pager | tail -n 30; exit 1; }",
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(rc, 0, "the kiosk (weston and the GUI) does not run on tty1:\n{out}");
    } else {
        m.sh("pgrep -t tty1 -f altdisk-rescue").unwrap();
    }

    // altdisk's boot units (they belong to installed systems) stayed masked.
    let masked = m.sh("systemctl is-enabled altdisk-names.service altdisk-commit.service || true").unwrap();
    assert_eq!(masked, "masked\nmasked\n");
}

/// A picture of the VGA screen at the ready point: not blank (a GUI may take a while to draw
/// its first frame under TCG: up to a minute). Kept in the machine's directory; copied to
/// $ALTDISK_RESCUE_SCREENSHOT when set (docs/ keeps one).
fn screenshot(m: &mut Machine, name: &str) {
    let ppm = m.dir().join(format!("{name}.ppm"));
    let start = Instant::now();
    let (w, h, fg) = loop {
        m.screendump(&ppm).unwrap();
        let (w, h, fg) = ppm_foreground_pixels(&fs::read(&ppm).unwrap()).unwrap();
        if fg > 2000 || start.elapsed() > Duration::from_secs(60) {
            break (w, h, fg);
        }
        std::thread::sleep(Duration::from_secs(3));
    };
    eprintln!("[{name}] screen {w}x{h}, {fg} foreground pixels");
    assert!(w >= 640 && h >= 400, "screen {w}x{h}");
    assert!(fg > 2000, "the screen is (nearly) blank: {fg} foreground pixels of {}", w * h);
    let png = m.dir().join(format!("{name}.png"));
    m.screendump(&png).unwrap();
    if let Some(to) = std::env::var_os("ALTDISK_RESCUE_SCREENSHOT") {
        fs::copy(&png, Path::new(&to)).unwrap();
        eprintln!("[{name}] screenshot copied to {}", Path::new(&to).display());
    }
}

/// Powers the machine off (it must stop by itself) and says how long the test took.
fn poweroff(m: &mut Machine, started: Instant) {
    m.shutdown().unwrap();
    assert!(!m.is_running());
    eprintln!("[{}] boot, checks and power-off: {:.0?}", m.dir().display(), started.elapsed());
}

#[test]
fn vm_rescue_ovmf_usb_stick_to_ram_can_be_pulled() {
    let started = Instant::now();
    let (mut m, _) = boot("rescue-ovmf-usb-ram", Firmware::Ovmf, Stick::Usb, true);
    check_live(&mut m, Firmware::Ovmf, Stick::Usb, true);

    // Pull the stick: the kernel sees it go, and the system, running from RAM, reads files
    // it had not read before (kernel modules) and still runs altdisk.
    let before = m.sh("lsblk -dno NAME,TRAN").unwrap();
    assert!(before.lines().any(|l| l.split_whitespace().nth(1) == Some("usb")), "no USB disk before:\n{before}");
    m.unplug("stick").unwrap();
    m.sh("for i in $(seq 60); do lsblk -dno TRAN | grep -qx usb || exit 0; sleep 1; done; lsblk; exit 1").unwrap();
    let read =
        m.sh("find /usr/lib/modules -path '*/kernel/drivers/net/*' -name '*.ko' -exec cat {} + | wc -c").unwrap();
    let bytes: u64 = read.trim().parse().unwrap_or(0);
    assert!(bytes > 1_000_000, "read only {bytes} bytes of modules after the stick was pulled");
    let lspv = m.sh("altdisk lspv").unwrap();
    assert!(lspv.lines().any(|l| l.starts_with("vda ")), "{lspv}");
    let errors = m.sh("dmesg | grep -ci 'squashfs error' || true").unwrap();
    assert_eq!(errors.trim(), "0", "squashfs errors after the stick was pulled");
    poweroff(&mut m, started);
}

#[test]
fn vm_rescue_seabios_cd() {
    let started = Instant::now();
    let (mut m, _) = boot("rescue-seabios-cd", Firmware::SeaBios, Stick::Cd, false);
    check_live(&mut m, Firmware::SeaBios, Stick::Cd, false);
    screenshot(&mut m, "rescue-seabios-cd");
    poweroff(&mut m, started);
}

#[test]
#[ignore = "the rest of the firmware x medium matrix: cargo test --test vm_rescue -- --include-ignored"]
fn vm_rescue_ovmf_cd() {
    let started = Instant::now();
    let (mut m, _) = boot("rescue-ovmf-cd", Firmware::Ovmf, Stick::Cd, false);
    check_live(&mut m, Firmware::Ovmf, Stick::Cd, false);
    screenshot(&mut m, "rescue-ovmf-cd");
    poweroff(&mut m, started);
}

#[test]
#[ignore = "the rest of the firmware x medium matrix: cargo test --test vm_rescue -- --include-ignored"]
fn vm_rescue_seabios_usb_stick() {
    let started = Instant::now();
    let (mut m, _) = boot("rescue-seabios-usb", Firmware::SeaBios, Stick::Usb, false);
    check_live(&mut m, Firmware::SeaBios, Stick::Usb, false);
    poweroff(&mut m, started);
}
