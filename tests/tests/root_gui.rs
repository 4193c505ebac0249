//! Root tier: a real clone made from the GUI. The app's update loop (the same Tasks and
//! Subscriptions the window runs, clicks through iced's simulator) drives the real altdiskd
//! on a private bus with a fake polkit authority, to clone a system on a loop device (an
//! offline clone of a mounted directory, phase 1) onto another loop device; then the clone
//! is compared with its source file by file, and put to sleep from the window. Rescue: a
//! system on a loop device is found by the window and its boot repaired from it (its own
//! boot tools, stand-ins that write down how they were called, run chrooted in it).

mod gui_driver;

use std::sync::atomic::Ordering;
use std::time::Duration;

use altdisk_gui::screen::clone::Step;
use altdisk_gui::Tab;
use altdisk_tests::bus::{Bus, Options};
use altdisk_tests::*;
use gui_driver::Driver;

const MIB: u64 = 1 << 20;

#[test]
fn root_gui_clones_a_loop_device_system_from_the_window() {
    require_root!();
    let mut s = Scratch::new("gui-clone");
    let src_dev = s.loopdev("src.img", 512 * MIB);
    let src = s.mkfs_mount(&src_dev, "ext4", Some("root"), "src");
    populate(&src).unwrap();
    let t = s.loopdev("t.img", 1024 * MIB);
    let name = t.file_name().unwrap().to_string_lossy().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let bus = rt.block_on(Bus::start(&s.path(""), Options { polkit: true, ..Default::default() }));

    let mut d = Driver::new(&bus.address);
    d.until("the disks", Duration::from_secs(60), |a| a.loaded());
    assert!(
        d.app.data().disks.iter().any(|x| x.name == name && x.usable && x.loop_device),
        "the target loop device is not a usable disk: {:?}",
        d.app.data().disks.iter().map(|x| (&x.name, &x.kind)).collect::<Vec<_>>()
    );
    d.click("nav-clone");
    // Source: the system mounted at a directory (an offline clone); target: the loop device.
    d.click("source-dir");
    d.type_into("source-dir-path", src.to_str().unwrap());
    d.click(format!("target-{name}"));
    d.click("next");
    assert_eq!(d.app.clone_wizard().step(), Step::Options, "banner: {:?}", d.app.banner());
    d.click("phases-1"); // 1: copy
    d.click("next");
    d.until("the plan", Duration::from_secs(120), |a| a.clone_wizard().step() == Step::Review || a.banner().is_some());
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
    let plan = d.app.clone_wizard().plan().unwrap().clone();
    assert_eq!(plan.phases, "1");
    assert!(plan.source.contains(src.to_str().unwrap()), "{}", plan.source);
    let root = plan.targets[0].after.iter().find(|p| p.mountpoint == "/").expect("a root filesystem planned");
    assert!(root.used > 0, "{root:?}");
    assert!(d.shows("Nothing on it is erased."), "{:?}", d.texts());
    d.click("next");
    assert!(
        d.shows(&format!("{}, 1 GiB ({name}", t.display())),
        "the confirmation names the loop device: {:?}",
        d.texts()
    );
    assert!(d.shows(&format!("Erase {} and clone", t.display())), "{:?}", d.texts());
    d.click("confirm-start");
    d.until("the job", Duration::from_secs(60), |a| a.tab() == Tab::Progress && a.progress().job().is_some());
    d.until("the clone to end", Duration::from_secs(600), |a| a.progress().job().is_some_and(|j| j.finished()));
    let job = d.app.progress().job().unwrap().clone();
    assert_eq!(job.state, "succeeded", "{}", job.error);
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
    assert!(job.bytes_done > 0 && job.files_done > 300, "{job:?}");
    assert_eq!(job.phase, "done");
    assert!(job.log.iter().any(|(_, l)| l.contains("copying / from")), "{:?}", job.log);
    assert!(d.shows(&format!("Cloned to {}", t.display())), "{:?}", d.texts());
    // The clone was asked for with interactive authorisation allowed (the desktop's agent
    // prompts); property reads are checked without asking.
    assert_eq!(bus.polkit_flags_not_read.load(Ordering::SeqCst), 1, "polkit asked without ALLOW_USER_INTERACTION");

    // The clone, left mounted by phase 1, is its source file by file.
    let at = std::path::PathBuf::from(&job.mounted_at);
    assert!(at.join("home/alice/hello.txt").exists(), "not mounted at {at:?}");
    let diffs = compare(&src, &at, &["=etc", "etc/fstab", "etc/altdisk", "lost+found"]);
    assert!(diffs.is_empty(), "the clone differs from its source:\n{}", diffs.join("\n"));
    assert_eq!(altdisk::discover::record::read(&t).unwrap().unwrap().state, altdisk::discover::record::State::Copied);
    // Unmounted from the window.
    assert!(d.shows(&format!("The clone is mounted at {}.", job.mounted_at)), "{:?}", d.texts());
    d.click("sleep-clone");
    // Asleep as the window shows it, and as the mount table says (the window's systems may
    // have been read before the loop device's partitions were known, awake_at empty then).
    let mnt = s.path("mnt");
    d.until("the clone asleep", Duration::from_secs(60), |a| {
        a.data().systems.iter().any(|x| x.disks == [name.clone()] && x.awake_at.is_empty())
            && !std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().contains(mnt.to_str().unwrap())
    });
    assert!(s.mounts().iter().all(|p| !p.starts_with(s.path("mnt"))), "still mounted: {:?}", s.mounts());
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
}

#[test]
fn root_gui_rescue_finds_a_loop_device_system_and_repairs_its_boot() {
    require_root!();
    let mut s = Scratch::new("gui-rescue");
    let dev = rescue_disk(&mut s, "rescuegui", true);
    let name = dev.file_name().unwrap().to_string_lossy().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let bus = rt.block_on(Bus::start(&s.path(""), Options { polkit: true, ..Default::default() }));

    let mut d = Driver::new(&bus.address);
    d.until("the disks", Duration::from_secs(60), |a| a.loaded());
    d.click("nav-rescue");
    d.until("the systems found", Duration::from_secs(120), |a| a.rescue().found().is_some() || a.banner().is_some());
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
    let found = d.app.rescue().found().unwrap().to_vec();
    let f = found.iter().find(|f| f.disks == [name.clone()]).unwrap_or_else(|| panic!("{name}: {found:?}"));
    assert_eq!((f.os.as_str(), f.kernels.clone()), ("Rescue Test 1", vec!["6.1.0-test".to_string()]));
    assert!(d.shows("Rescue Test 1") && d.shows("6.1.0-test"), "{:?}", d.texts());
    // This machine has no UEFI variables: nothing is made the one that boots from here.
    let uefi = d.app.data().firmware == altdisk_api::firmware::UEFI;
    assert_eq!(d.has(format!("restore-{name}")), uefi);

    // Repair from the window: asked first, then a real job on the loop device.
    d.click(format!("repair-{name}"));
    assert!(d.shows(&format!("Repair the boot of linux on {name}")), "{:?}", d.texts());
    d.click("repair-confirm");
    d.until("the repair job", Duration::from_secs(60), |a| {
        a.tab() == Tab::Progress && a.progress().job().is_some_and(|j| j.kind == "repair") || a.banner().is_some()
    });
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
    d.until("the repair to end", Duration::from_secs(300), |a| a.progress().job().is_some_and(|j| j.finished()));
    let job = d.app.progress().job().unwrap().clone();
    assert_eq!(job.state, "succeeded", "{}", job.error);
    assert_eq!(job.targets, vec![name.clone()]);
    assert!(d.shows("The boot is repaired: the system can start."), "{:?}", d.texts());
    // The system's own tools ran in it; nothing of it stays mounted.
    let look = s.mkdir("look");
    let part = altdisk::write::partition::partition_path(&dev, 1);
    run("mount", &["-o", "ro", part.to_str().unwrap(), look.to_str().unwrap()]).unwrap();
    let called = std::fs::read_to_string(look.join("var/log/boot-tools.log")).unwrap_or_default();
    run("umount", &[look.to_str().unwrap()]).unwrap();
    assert!(called.starts_with("update-initramfs -u -k all\n"), "{called}");
    assert!(s.mounts().is_empty(), "still mounted: {:?}", s.mounts());
    // The polkit action asked for is the one for changing a system, interactively.
    assert_eq!(bus.polkit_flags_not_read.load(Ordering::SeqCst), 1, "polkit asked without ALLOW_USER_INTERACTION");
    d.click("show-rescue");
    d.until("the systems found again", Duration::from_secs(120), |a| {
        a.rescue().found().is_some() && !a.rescue().finding()
    });
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
}
