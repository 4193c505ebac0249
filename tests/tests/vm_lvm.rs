//! VM tier, LVM: a production machine whose root lives in volume group rootvg (root and
//! home logical volumes, swap) clones itself across two disks, boots the clone, switches
//! back; then the phases one at a time (-P1, later -P23), wake and sleep, and removal.

use altdisk_tests::vm::Machine;
use altdisk_tests::vm_lvm::lvm_production_image;
use altdisk_tests::*;

const GIB: u64 = 1 << 30;

fn vgs(m: &mut Machine) -> Vec<String> {
    m.sh("vgs --noheadings -o vg_name")
        .unwrap()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn vm_lvm_clone_spans_two_disks_boots_and_switches_back() {
    require_root!();
    let image = lvm_production_image().expect("LVM production image");
    let mut m = Machine::new("lvm", &image, &[3 * GIB, 3 * GIB]).unwrap();
    m.boot().unwrap();
    m.install_altdisk(&altdisk_bin()).unwrap();
    m.sh("altdisk install-units && systemctl daemon-reload").unwrap();
    assert_eq!(m.sh("findmnt -no SOURCE /").unwrap().trim(), "/dev/mapper/rootvg-root");

    // Clone across both disks: the volume group spans them.
    let out = m.sh("alt_disk_copy -d 'vdb vdc' 2>&1").unwrap();
    assert!(out.contains("complete (bootable)") && out.contains("Volume group altinst_rootvg"), "{out}");
    let mut names = vgs(&mut m);
    names.sort();
    assert_eq!(names, vec!["altinst_rootvg", "rootvg"], "no duplicate volume group");
    let pvs = m.sh("pvs --noheadings -o pv_name,vg_name").unwrap();
    assert!(
        pvs.contains("/dev/vdb") && pvs.contains("/dev/vdc") && pvs.matches("altinst_rootvg").count() == 2,
        "{pvs}"
    );
    let lvs = m.sh("lvs --noheadings -o lv_name altinst_rootvg").unwrap();
    for lv in ["root", "home", "swap"] {
        assert!(lvs.split_whitespace().any(|x| x == lv), "{lv} in {lvs}");
    }
    assert!(
        m.sh("lvs --noheadings -o lv_active altinst_rootvg").unwrap().trim().is_empty(),
        "left inactive, as AIX leaves it varied off"
    );

    // Boot the clone; switch back.
    m.reboot().unwrap();
    assert_eq!(m.sh("findmnt -no SOURCE /").unwrap().trim(), "/dev/mapper/altinst_rootvg-root");
    assert!(m.sh("findmnt -no SOURCE /home").unwrap().contains("altinst_rootvg-home"));
    let lspv = m.sh("altdisk lspv").unwrap();
    assert!(lspv.lines().any(|l| l.starts_with("vdb") && l.contains("rootvg")), "{lspv}");
    assert!(lspv.lines().any(|l| l.starts_with("vda") && l.contains("old_rootvg")), "{lspv}");
    m.sh("bootlist -m normal vda").unwrap();
    m.reboot().unwrap();
    assert_eq!(m.sh("findmnt -no SOURCE /").unwrap().trim(), "/dev/mapper/rootvg-root");

    // Back on the original, the clone that ran is old_rootvg (its record renamed at boot,
    // its volume group keeps its name). Remove it by that name: the disks are free again.
    let lspv = m.sh("altdisk lspv").unwrap();
    assert!(lspv.lines().any(|l| l.starts_with("vdb") && l.contains("old_rootvg")), "{lspv}");
    m.sh("alt_rootvg_op -X old_rootvg -y").unwrap();
    assert_eq!(vgs(&mut m), vec!["rootvg"]);
    let lspv = m.sh("altdisk lspv").unwrap();
    assert!(
        lspv.lines().filter(|l| l.starts_with("vdb") || l.starts_with("vdc")).all(|l| l.contains(" free")),
        "{lspv}"
    );

    // Phases one at a time: -P1 leaves it mounted; later -P23 finishes it.
    m.sh("alt_disk_copy -d 'vdb vdc' -P1").unwrap();
    let src = m.sh("findmnt -no SOURCE /alt_inst").unwrap();
    assert!(src.contains("altinst_rootvg") && src.contains("root"), "{src}");
    m.sh("alt_rootvg_op -S").unwrap();
    let out = m.sh("alt_disk_copy -d vdb -P23 -B 2>&1").unwrap();
    assert!(out.contains("complete (bootable)"), "{out}");
    // Wake it, read a file of its /home, put it back to sleep.
    m.sh("alt_rootvg_op -W -d vdb").unwrap();
    let home = m.sh("ls /alt_inst/home").unwrap();
    assert!(!home.trim().is_empty(), "its /home is there");
    m.sh("alt_rootvg_op -S").unwrap();
    assert!(m.sh("findmnt /alt_inst || true").unwrap().trim().is_empty());
    m.shutdown().unwrap();
}
