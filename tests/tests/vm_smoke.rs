//! VM tier smoke tests: the cached production images boot through OVMF and their own
//! bootloader, look like an installed machine (root on vda2, the boot entry first in the
//! NVRAM's BootOrder, a blank second disk), take the altdisk binary, and come back after a
//! reboot. Needs root, qemu-system-x86, ovmf, mmdebstrap (tests/vm/install-deps.sh).
//! A cold image build takes a few minutes per kind; later runs reuse the cache.

use std::path::Path;
use std::time::{Duration, Instant};

use altdisk_tests::vm::{production_image, Kind, Machine};
use altdisk_tests::*;

const GIB: u64 = 1 << 30;

/// Fails (does not skip) when the VM tier cannot run here: CI installs what it needs.
fn require_vm_tools() {
    assert!(is_root(), "vm_* tests need root (image builds use mmdebstrap and chroot)");
    for tool in ["qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.vfat", "mcopy"] {
        let found =
            std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists())).unwrap_or(false);
        assert!(found, "{tool} is missing: run tests/vm/install-deps.sh (or tests/run.sh as root)");
    }
    for f in [vm::ovmf_code(), vm::ovmf_vars()] {
        assert!(f.exists(), "{} is missing: apt-get install ovmf", f.display());
    }
}

fn smoke(kind: Kind) {
    require_vm_tools();
    let t = Instant::now();
    let image = production_image(kind).expect("production image");
    eprintln!("[{kind:?}] image ready in {:.0?}: {}", t.elapsed(), image.disk.display());

    let mut m = Machine::new(&format!("smoke-{}", kind.name()), &image, &[8 * GIB]).unwrap();
    assert_eq!(m.disks().len(), 2);
    m.boot().unwrap();
    eprintln!("[{kind:?}] boot: {:.0?}", m.last_boot_time().unwrap());

    // An installed machine: root on the first disk's second partition, the ESP mounted.
    assert_eq!(m.sh("findmnt -no SOURCE /").unwrap().trim(), "/dev/vda2");
    assert_eq!(m.sh("findmnt -no SOURCE /boot/efi").unwrap().trim(), "/dev/vda1");
    assert_eq!(m.sh("hostname").unwrap().trim(), "production");
    let fstab = m.sh("cat /etc/fstab").unwrap();
    assert!(fstab.lines().any(|l| l.starts_with("UUID=") && l.split_whitespace().nth(1) == Some("/")), "{fstab}");
    assert!(
        fstab.lines().any(|l| l.starts_with("UUID=") && l.split_whitespace().nth(1) == Some("/boot/efi")),
        "{fstab}"
    );

    // The NVRAM: the installed loader's entry comes first in BootOrder.
    let efi = m.sh("efibootmgr").unwrap();
    let first = efi.lines().find_map(|l| l.strip_prefix("BootOrder: ")).and_then(|o| o.split(',').next()).unwrap();
    let entry = efi.lines().find(|l| l.starts_with(&format!("Boot{}", first.trim()))).unwrap_or_default();
    let label = match kind {
        Kind::SystemdBoot => "Linux Boot Manager",
        _ => "debian",
    };
    assert!(entry.contains(label), "first boot entry is not {label}:\n{efi}");
    match kind {
        Kind::SystemdBoot => {
            let status = m.sh("bootctl status --no-pager").unwrap();
            assert!(status.contains("systemd-boot"), "{status}");
            let entries = m.sh("ls /boot/efi/loader/entries").unwrap();
            assert!(entries.contains(".conf"), "no loader entries: {entries}");
        }
        _ => {
            m.sh("test -e /boot/efi/EFI/debian/grubx64.efi && test -e /boot/grub/grub.cfg").unwrap();
        }
    }

    // The blank disk, and nothing else.
    let lsblk = m.sh("lsblk -dno NAME,SIZE,TYPE").unwrap();
    assert!(lsblk.lines().any(|l| l.starts_with("vdb ") && l.contains("8G")), "{lsblk}");
    assert!(!lsblk.contains("vdc"), "{lsblk}");

    // The command channel: exit codes, stderr, output without a final newline, quoting.
    assert_eq!(m.run("echo out; echo err >&2; exit 3", Duration::from_secs(60)).unwrap(), (3, "out\nerr\n".into()));
    assert_eq!(m.sh("printf 'a b'").unwrap(), "a b");
    assert_eq!(m.sh("x='it'\"'\"'s'; echo \"$x $HOME\"").unwrap(), "it's /root\n");
    assert!(m.sh("false").is_err());
    let big = "y".repeat(10_000);
    assert_eq!(m.sh(&format!("cat <<'EOF' | wc -c\n{big}\nEOF")).unwrap(), "10001\n");
    assert_eq!(m.sh("printf '\\377 ok\\n'").unwrap(), "\u{fffd} ok\n", "invalid UTF-8 is replaced, not fatal");
    // A command that outlives its timeout is interrupted; the shell stays usable.
    let e = m.run("echo start; sleep 300", Duration::from_secs(3)).unwrap_err();
    assert!(format!("{e:#}").contains("did not finish within"), "{e:#}");
    assert_eq!(m.sh("echo after").unwrap(), "after\n");

    // altdisk goes in over 9p.
    let bin = altdisk_bin();
    m.install_altdisk(&bin).unwrap();
    let v = m.sh("altdisk --version").unwrap();
    assert!(v.contains("altdisk"), "{v}");
    m.sh("test -L /usr/local/sbin/alt_disk_copy && test -L /usr/local/sbin/alt_rootvg_op && test -L /usr/local/sbin/bootlist")
        .unwrap();

    // A reboot is a new QEMU on the same disks and NVRAM; what was written stays.
    m.sh("echo kept >/root/marker").unwrap();
    let t = Instant::now();
    m.reboot().unwrap();
    eprintln!("[{kind:?}] reboot (poweroff + boot): {:.0?}", t.elapsed());
    assert_eq!(m.sh("cat /root/marker").unwrap(), "kept\n");
    assert_eq!(m.sh("findmnt -no SOURCE /").unwrap().trim(), "/dev/vda2");
    assert!(m.sh("altdisk --version").is_ok());

    // A reboot from inside the guest ends QEMU (-no-reboot): the driver notices.
    let e = m.run("systemctl reboot; sleep 300", Duration::from_secs(120)).unwrap_err();
    assert!(format!("{e:#}").contains("QEMU exited"), "{e:#}");
    assert!(!m.is_running());
    m.wait_stopped(Duration::from_secs(10)).unwrap();
    m.shutdown().unwrap();
    assert!(Path::new(&m.serial_log()).exists());
}

#[test]
#[ignore = "harness diagnostics; vm_boot covers the same ground: run with --ignored"]
fn vm_production_image_boots() {
    smoke(Kind::Grub);
}

#[test]
#[ignore = "harness diagnostics; vm_boot covers the same ground: run with --ignored"]
fn vm_production_image_boots_systemd_boot() {
    smoke(Kind::SystemdBoot);
}
