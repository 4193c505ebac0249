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
use altdisk_tests::vm::{production_image, BootStep, Firmware, Kind, Machine, Medium};
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
    screenshot_to(m, name, "ALTDISK_RESCUE_SCREENSHOT");
}

/// [`screenshot`], copied to the file the environment variable `env` names, when set.
fn screenshot_to(m: &mut Machine, name: &str, env: &str) {
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
    if let Some(to) = std::env::var_os(env) {
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

/// `altdisk find --json` in the machine: each system as (first disk, the JSON object).
fn systems(m: &mut Machine) -> Vec<(String, serde_json::Value)> {
    let out = m.sh("altdisk find --json").unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("find --json: {e}: {out}"));
    v["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["disks"][0].as_str().unwrap_or_default().to_string(), s.clone()))
        .collect()
}

fn system_on(m: &mut Machine, disk: &str) -> serde_json::Value {
    let all = systems(m);
    all.iter()
        .find(|(d, _)| d == disk)
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| panic!("no system on {disk}: {all:?}"))
}

/// The UEFI boot order, as entry numbers.
fn boot_order(m: &mut Machine) -> Vec<String> {
    let out = m.sh("efibootmgr").unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix("BootOrder: "))
        .map(|o| o.trim().split(',').map(String::from).collect())
        .unwrap_or_default()
}

/// The recovery story of issue 13, and the offline disk swap, on one machine (OVMF):
/// 1. a production machine clones itself onto vdb and boots the clone (vda is old_rootvg);
/// 2. the clone breaks (its kernels removed) while the firmware still starts it first;
/// 3. the rescue ISO (a CD) finds both systems, refuses to restore the broken one, and
///    clones old_rootvg offline onto the blank vdc (the disk swap); the NVRAM loses
///    old_rootvg's entry, and `altdisk restore vda` rebuilds it and puts it first; the GUI
///    in the kiosk shows the systems (a picture, `ALTDISK_RESCUE_GUI_SCREENSHOT=FILE`);
/// 4. without the ISO the machine boots old_rootvg;
/// 5. vdc alone, with fresh NVRAM, boots its own root: the new disk of the swap.
///
/// About 30 minutes under TCG: outside CI's budget, one command (tests/README.md).
#[test]
#[ignore = "the recovery story (about 30 min): sudo cargo test -p altdisk-tests --test vm_rescue vm_rescue_restores -- --ignored --nocapture"]
fn vm_rescue_restores_old_rootvg_and_swaps_a_disk_offline() {
    require_tools();
    let started = Instant::now();
    let iso = rescue_iso().expect("rescue ISO");
    let image = production_image(Kind::Grub).expect("production image");
    let mut m = Machine::new("rescue-story", &image, &[6 * GIB, 6 * GIB]).unwrap();
    let disks = m.disks().to_vec();

    // 1. The clone, booted: vda becomes old_rootvg.
    m.boot().unwrap();
    m.install_altdisk(&altdisk_bin()).unwrap();
    m.sh("altdisk install-units && systemctl daemon-reload").unwrap();
    let out = m.sh("alt_disk_copy -d vdb 2>&1").unwrap();
    assert!(out.contains("complete (bootable)"), "{out}");
    m.reboot().unwrap();
    assert_eq!(m.sh("findmnt -no SOURCE /").unwrap().trim(), "/dev/vdb3");
    let prod_root_uuid = m.sh("blkid -p -s UUID -o value /dev/vda2").unwrap().trim().to_string();

    // 2. The clone breaks: no kernel left in its /boot; its entry stays first.
    m.sh("rm -f /boot/vmlinuz-* /boot/initrd.img-* && sync").unwrap();
    let order = boot_order(&mut m);
    let first = m.sh(&format!("efibootmgr | grep '^Boot{}'", order[0])).unwrap();
    assert!(first.contains("on vdb"), "the clone's entry is not first: {first}");
    m.shutdown().unwrap();
    eprintln!("[story] clone made, booted and broken after {:.0?}", started.elapsed());

    // 3. The rescue ISO.
    m.set_medium(Some(Medium::Cdrom(iso)));
    m.set_boot_steps(vec![BootStep::new(&[READY, "choice> "], "s\n")]);
    m.boot().unwrap();
    assert!(m.sh("grep -qw boot=live /proc/cmdline && echo live").unwrap().contains("live"), "not the rescue system");
    let old = system_on(&mut m, "vda");
    assert!(old["name"] == "old_rootvg" || old["kind"] == "old_rootvg", "vda is not old_rootvg: {old}");
    assert_eq!(old["bootable"], true, "{old}");
    let broken = system_on(&mut m, "vdb");
    assert_eq!(broken["bootable"], false, "{broken}");
    assert_eq!(broken["kernels"].as_array().map(Vec::len), Some(0), "{broken}");
    let (rc, out) = m.run("altdisk restore vdb 2>&1", Duration::from_secs(300)).unwrap();
    assert!(rc != 0 && out.contains("does not look bootable"), "restoring the broken clone: exit {rc}: {out}");

    // The GUI (kiosk) on the screen: its rescue screen with the systems it found.
    let kiosk = m.run("systemctl -q is-active altdisk-kiosk.service", Duration::from_secs(30)).unwrap().0 == 0;
    if kiosk {
        std::thread::sleep(Duration::from_secs(30));
        screenshot_to(&mut m, "rescue-gui-systems", "ALTDISK_RESCUE_GUI_SCREENSHOT");
    }

    // The offline disk swap: old_rootvg onto the blank vdc.
    let before = boot_order(&mut m);
    let (rc, out) = m.run("altdisk copy --source-disk vda -d vdc 2>&1", Duration::from_secs(3600)).unwrap();
    assert_eq!(rc, 0, "the offline copy failed:\n{out}");
    let swap = system_on(&mut m, "vdc");
    assert_eq!(swap["bootable"], true, "{swap}");
    let swap_root_uuid = swap["root_uuid"].as_str().unwrap().to_string();
    assert_ne!(swap_root_uuid, prod_root_uuid, "the copy has its own root UUID");
    eprintln!(
        "[story] offline copy done after {:.0?}; boot order {before:?} -> {:?}",
        started.elapsed(),
        boot_order(&mut m)
    );

    // The NVRAM loses old_rootvg's entry; restore rebuilds it from its ESP and puts it first.
    let esp = m.sh("lsblk -rno PARTUUID,PARTTYPE /dev/vda | awk 'tolower($2)==\"c12a7328-f81f-11d2-ba4b-00a0c93ec93b\" {print tolower($1)}'").unwrap();
    let esp = esp.trim().to_string();
    assert!(!esp.is_empty(), "no ESP on vda");
    m.sh(&format!(
        "for n in $(efibootmgr -v | grep -i '{esp}' | sed -n 's/^Boot\\([0-9A-F]\\{{4\\}}\\).*/\\1/p'); do efibootmgr -q -b $n -B; done; \
         ! efibootmgr -v | grep -qi '{esp}'"
    ))
    .unwrap();
    let (rc, out) = m.run("altdisk restore vda 2>&1", Duration::from_secs(600)).unwrap();
    assert_eq!(rc, 0, "altdisk restore vda: {out}");
    assert!(out.contains("first in the UEFI boot order") && out.contains("made Boot"), "{out}");
    let order = boot_order(&mut m);
    let first = m.sh(&format!("efibootmgr -v | grep '^Boot{}'", order[0])).unwrap();
    assert!(first.to_lowercase().contains(&esp), "old_rootvg's entry is not first: {first}");
    m.shutdown().unwrap();
    eprintln!("[story] restored from the rescue system after {:.0?}", started.elapsed());

    // 4. Without the ISO, the firmware starts old_rootvg.
    m.set_medium(None);
    m.set_boot_steps(Vec::new());
    m.boot().unwrap();
    assert_eq!(m.sh("findmnt -no SOURCE /").unwrap().trim(), "/dev/vda2");
    assert_eq!(m.sh("findmnt -no UUID /").unwrap().trim(), prod_root_uuid);
    m.shutdown().unwrap();

    // 5. The new disk alone, with fresh NVRAM, boots its own root.
    m.set_disks(vec![disks[2].clone()]);
    m.fresh_vars().unwrap();
    m.boot().unwrap();
    assert_eq!(m.sh("findmnt -no UUID /").unwrap().trim(), swap_root_uuid, "the lone new disk booted its own root");
    m.shutdown().unwrap();
    eprintln!("[story] passed in {:.0?}", started.elapsed());
}
