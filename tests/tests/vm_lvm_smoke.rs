//! VM tier: the cached LVM production image (tests/src/vm_lvm.rs: / on rootvg-root, /home
//! on rootvg-home, swap on rootvg-swap, /boot and the ESP as plain partitions) boots
//! through OVMF with a blank second disk, as altdisk's LVM tests start it.
//! Run as root; needs qemu-system-x86 and ovmf (tests/run.sh installs them).

use std::sync::Mutex;

use altdisk_tests::vm::Machine;
use altdisk_tests::vm_lvm::{image_env, lvm_production_image};
use altdisk_tests::*;

/// VMs are CPU-bound under TCG: one at a time.
static ONE_VM: Mutex<()> = Mutex::new(());

const GIB: u64 = 1 << 30;

#[test]
#[ignore = "harness diagnostics; vm_lvm covers the same ground: run with --ignored"]
fn vm_lvm_production_image_boots() {
    require_root!();
    let _one = ONE_VM.lock().unwrap_or_else(|p| p.into_inner());
    let image = lvm_production_image().expect("LVM production image");
    let env = image_env(&image).unwrap();
    let mut m = Machine::new("lvm-smoke", &image, &[8 * GIB]).unwrap();
    m.boot().unwrap();
    eprintln!("lvm-smoke: booted in {:.0?}", m.last_boot_time().unwrap_or_default());

    let mut sh = |cmd: &str| m.sh(cmd).unwrap().trim().to_string();
    assert_eq!(sh("findmnt -no SOURCE /"), "/dev/mapper/rootvg-root", "{}", sh("cat /proc/cmdline"));
    assert_eq!(sh("findmnt -no UUID /"), env["ROOT_UUID"]);
    assert_eq!(sh("findmnt -no SOURCE /home"), "/dev/mapper/rootvg-home");
    assert_eq!(sh("findmnt -no SOURCE /boot"), "/dev/vda2");
    assert_eq!(sh("findmnt -no SOURCE /boot/efi"), "/dev/vda1");
    let swap = sh("swapon --show=NAME --noheadings --raw");
    assert!(!swap.is_empty(), "no swap active");
    assert_eq!(sh(&format!("readlink -f {swap}")), sh("readlink -f /dev/mapper/rootvg-swap"), "swap is rootvg-swap");
    assert_eq!(sh("vgs --noheadings -o vg_name | tr -d ' '"), "rootvg");
    assert_eq!(sh("pvs --noheadings -o pv_name | tr -d ' '"), "/dev/vda3");
    assert_eq!(sh("lvs --noheadings -o lv_name rootvg | tr -d ' ' | sort | paste -sd,"), "home,root,swap");
    // The data in /home is what the build wrote.
    sh("cd /home && sha256sum --quiet -c /root/home-manifest.sha256");
    assert_eq!(sh("cat /home/alice/hello.txt"), "hello from /home on rootvg-home");
    // The blank disk is there, untouched.
    assert_eq!(sh("blockdev --getsize64 /dev/vdb"), (8 * GIB).to_string());
    assert_eq!(sh("wipefs --noheadings /dev/vdb"), "");
    m.shutdown().unwrap();
}
