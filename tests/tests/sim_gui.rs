//! No root needed: altdisk-gui's every screen driven headless (its update loop with Tasks and
//! Subscriptions, iced_test's simulator for the clicks) against `altdiskd --sim` on a
//! private bus: the disk cards and a disk plugged in and out, the clone wizard (the running
//! system's disk cannot be chosen, the confirmation names the disks it erases), progress
//! that moves and a Cancel that asks first, a new window that finds a running job, each
//! error's banner (service not running, access denied, a disk gone mid-wizard, a failed
//! job), the manage and boot list screens, keyboard-only use, and the first frame at once.

mod gui_driver;

use std::time::{Duration, Instant};

use altdisk_api::{kind, CloneOptions, ManagerProxy};
use altdisk_gui::client::ErrorKind;
use altdisk_gui::screen::clone::Step;
use altdisk_gui::{Bus as GuiBus, Config, Tab};
use altdisk_tests::bus::{unprivileged, Bus, Options, TempDir};
use gui_driver::{named, Driver};
use iced::keyboard::key::Named;

const SAMPLE: &str = include_str!("../../docs/sim-sample.toml");
const LONG: Duration = Duration::from_secs(30);

/// The sample machine, its copy at `rate` per second and its other steps short.
fn sample(rate: &str) -> String {
    let s = SAMPLE
        .replace("rate = \"400M\"", &format!("rate = \"{rate}\""))
        .replace("step_seconds = 0.5", "step_seconds = 0.05");
    assert_ne!(s, SAMPLE, "the sample's [copy] section changed: update this test");
    s
}

fn start(dir: &TempDir, text: &str) -> (tokio::runtime::Runtime, Bus) {
    std::fs::write(dir.join("sim.toml"), text).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let opts =
        Options { sim: Some(dir.join("sim.toml")), job_grace: Some(30.0), user: unprivileged(), ..Default::default() };
    let bus = rt.block_on(Bus::start(&dir.path, opts));
    (rt, bus)
}

/// Rewrite the sim file (the service reads it again: disks plugged or unplugged). The
/// service may compare modification times: make sure this one differs.
fn rewrite(dir: &TempDir, text: &str) {
    std::thread::sleep(Duration::from_millis(20));
    let tmp = dir.join("sim.toml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("sim.toml")).unwrap();
}

/// The sim file without the disk `name` (unplugged).
fn without_disk(text: &str, name: &str) -> String {
    let start = text.find(&format!("[[disk]]\nname = \"{name}\"")).expect("the disk is in the sim file");
    let end = text[start + 1..].find("\n[[").map(|i| start + 2 + i).unwrap_or(text.len());
    format!("{}{}", &text[..start], &text[end..])
}

fn loaded(d: &mut Driver) {
    d.until("the first disk list", LONG, |a| a.loaded());
}

/// Through the wizard from the chosen targets to the confirmation.
fn to_confirmation(d: &mut Driver) {
    d.click("next");
    assert_eq!(d.app.clone_wizard().step(), Step::Options, "banner {:?}", d.app.banner());
    d.click("next");
    d.until("the plan", LONG, |a| a.clone_wizard().step() == Step::Review);
    d.click("next");
    assert_eq!(d.app.clone_wizard().step(), Step::Confirm);
}

fn job_state(d: &Driver) -> String {
    job_state_of(&d.app)
}

#[test]
fn sim_gui_disk_cards_and_a_disk_plugged_in_and_out() {
    let dir = TempDir::new("gui-disks");
    let text = sample("3G");
    let (_rt, bus) = start(&dir, &text);
    let mut d = Driver::new(&bus.address);
    loaded(&mut d);
    assert_eq!(d.app.tab(), Tab::Disks);
    for shown in [
        "Samsung SSD 980 PRO 1TB",
        "S5GXNF0R123456A",
        "nvme0n1 · hdisk0 · NVMe · 931 GiB",
        "running system",
        "The running system (rootvg) is on this disk: it is never a target.",
        "Alternate system altinst_rootvg (complete), cloned from prod1 on 2025-11-20 22:05 UTC.",
        "old_rootvg: the system the running one was cloned from (prod1, 2025-03-02 09:14 UTC).",
        "In use: ",
        "Holds data: a clone here erases it.",
        "Free: a clone can go here.",
        "sdc2 · 1.7 TiB · xfs · “backups”",
    ] {
        assert!(d.shows(shown), "the disks screen lacks {shown:?}: {:?}", d.texts());
    }
    assert!(d.texts().iter().any(|t| t.contains("Ubuntu 22.04.4 LTS")), "what sdc holds is said");
    // Only disks a clone may go to offer it; never the running system's.
    assert!(d.has("clone-to-sdd") && d.has("clone-to-sdf"));
    assert!(!d.has("clone-to-nvme0n1"), "the running system's disk offers a clone");
    assert!(!d.has("clone-to-sde"), "a disk in use offers a clone");

    // Plug a disk in: its card is there within two seconds; unplug it: gone as fast.
    let plugged = format!(
        "{text}\n[[disk]]\nname = \"sdg\"\nmodel = \"Kingston DataTraveler 3.0\"\nserial = \"E0D55EA573F1\"\nsize = \"29G\"\nbus = \"usb\"\nremovable = true\n"
    );
    rewrite(&dir, &plugged);
    let t =
        d.until("the plugged disk's card", Duration::from_secs(5), |a| a.data().disks.iter().any(|x| x.name == "sdg"));
    assert!(t < Duration::from_secs(2), "the plugged disk took {t:?} to appear");
    assert!(d.shows("Kingston DataTraveler 3.0") && d.has("clone-to-sdg"));
    rewrite(&dir, &text);
    let t = d.until("the card to go", Duration::from_secs(5), |a| !a.data().disks.iter().any(|x| x.name == "sdg"));
    assert!(t < Duration::from_secs(2), "the unplugged disk took {t:?} to go");
    assert!(!d.shows("Kingston DataTraveler 3.0"));
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
}

#[test]
fn sim_gui_clone_wizard_names_what_it_erases_then_follows_the_clone() {
    let dir = TempDir::new("gui-clone");
    let (_rt, bus) = start(&dir, &sample("1G"));
    let mut d = Driver::new(&bus.address);
    loaded(&mut d);
    d.click("nav-clone");
    assert_eq!(d.app.tab(), Tab::Clone);

    // The running system's disk is listed among those that cannot be chosen, with why;
    // choosing it anyway (a stale message) does nothing.
    assert!(!d.has("target-nvme0n1"), "the running system's disk is offered as a target");
    assert!(d.shows("the running system is on it"), "{:?}", d.texts());
    assert!(d.shows("in use: "), "the disk in use says why");
    d.update(altdisk_gui::Message::Clone(altdisk_gui::screen::clone::Message::ToggleTarget("nvme0n1".into())));
    d.update(altdisk_gui::Message::Clone(altdisk_gui::screen::clone::Message::ToggleTarget("sde".into())));
    assert!(d.app.clone_wizard().targets().is_empty(), "{:?}", d.app.clone_wizard().targets());
    // Without a target the wizard says so and stays.
    d.click("next");
    assert_eq!(d.app.clone_wizard().step(), Step::Choose);
    assert!(d.shows("choose a target disk"), "{:?}", d.texts());

    // A disk holding data: the plan shows it before and after, the confirmation names it by
    // model, serial and what it holds, and the button says it erases it.
    d.click("target-sdc");
    assert_eq!(d.app.clone_wizard().targets(), ["sdc"]);
    to_confirmation(&mut d);
    let plan = d.app.clone_wizard().plan().unwrap().clone();
    assert_eq!(plan.targets.len(), 1);
    assert!(!plan.targets[0].before.is_empty() && !plan.targets[0].after.is_empty());
    for shown in [
        "ST2000DM008-2FR102, serial ZFL1ABCD, 1.8 TiB (sdc, hdisk3)",
        "Ubuntu 22.04.4 LTS",
        "backups",
        "Erase ST2000DM008-2FR102 (sdc) and clone",
        "This disk is erased: everything on it is lost",
    ] {
        assert!(d.shows(shown), "the confirmation lacks {shown:?}: {:?}", d.texts());
    }
    assert!(!d.shows("SanDisk"), "the confirmation names a disk not chosen");

    // Back to the start, the free USB disk instead: nothing erased, named as such.
    d.click("step-0");
    d.click("target-sdc");
    d.click("target-sdd");
    to_confirmation(&mut d);
    assert!(d.shows("SanDisk Extreme, serial 4C530001230811115123, 58 GiB (sdd, hdisk4)"), "{:?}", d.texts());
    assert!(d.shows("Holds nothing now (free)."));
    assert!(d.shows("Erase SanDisk Extreme (sdd) and clone"));
    assert!(!d.shows("ST2000DM008"), "the confirmation still names sdc");

    // Start: the window follows the job, the bar moves, the clone ends on the disk.
    d.click("confirm-start");
    d.until("the job on the progress screen", LONG, |a| a.tab() == Tab::Progress && a.progress().job().is_some());
    let first = d.app.progress().job().unwrap().bytes_done;
    d.until("the copy to move", LONG, |a| {
        a.progress().job().is_some_and(|j| j.bytes_done > first && j.phase == "copying")
    });
    assert!(d.shows("Cloning to SanDisk Extreme (sdd)"), "{:?}", d.texts());
    assert!(d.shows(" files"), "files are counted: {:?}", d.texts());
    d.until("the clone to finish", LONG, |a| job_state_of(a) == "succeeded");
    let j = d.app.progress().job().unwrap().clone();
    assert_eq!(j.bytes_done, j.bytes_total);
    assert!(j.log.iter().any(|(_, l)| l.contains("copied")), "{:?}", j.log);
    assert!(d.shows("Cloned to SanDisk Extreme (sdd)") && d.shows("The clone is ready."), "{:?}", d.texts());
    d.until("sdd to hold the clone", LONG, |a| {
        a.data().disks.iter().any(|x| x.name == "sdd" && x.kind == kind::ALTERNATE)
    });
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
}

fn job_state_of(a: &altdisk_gui::App) -> String {
    a.progress().job().map(|j| j.state.clone()).unwrap_or_default()
}

#[test]
fn sim_gui_cancel_asks_first_then_stops_the_clone() {
    let dir = TempDir::new("gui-cancel");
    let (_rt, bus) = start(&dir, &sample("50M"));
    let mut d = Driver::with(Config {
        dark: Some(false),
        target: Some("sdd".into()),
        ..Config::new(GuiBus::Address(bus.address.clone()))
    });
    loaded(&mut d);
    assert_eq!(d.app.tab(), Tab::Clone, "--target opens the clone screen");
    assert_eq!(d.app.clone_wizard().targets(), ["sdd"]);
    to_confirmation(&mut d);
    d.click("confirm-start");
    d.until("copying", LONG, |a| a.progress().job().is_some_and(|j| j.phase == "copying"));
    d.click("cancel");
    assert!(d.app.progress().asks_to_cancel());
    assert!(d.shows("Stop cloning to sdd? The disks are left marked incomplete."), "{:?}", d.texts());
    d.settle(Duration::from_millis(600));
    assert_eq!(job_state(&d), "running", "asking stopped the job");
    d.click("cancel-keep");
    assert!(!d.app.progress().asks_to_cancel());
    d.settle(Duration::from_millis(300));
    assert_eq!(job_state(&d), "running");
    // Escape closes the question too.
    d.click("cancel");
    d.update(altdisk_gui::Message::Key(iced::keyboard::Event::KeyPressed {
        key: named(Named::Escape),
        modified_key: named(Named::Escape),
        physical_key: iced::keyboard::key::Physical::Unidentified(iced::keyboard::key::NativeCode::Unidentified),
        location: iced::keyboard::Location::Standard,
        modifiers: iced::keyboard::Modifiers::default(),
        text: None,
        repeat: false,
    }));
    assert!(!d.app.progress().asks_to_cancel());
    d.click("cancel");
    d.click("cancel-confirm");
    d.until("the job to stop", LONG, |a| job_state_of(a) == "cancelled");
    assert!(d.app.banner().is_none(), "a cancel the user asked for is no error: {:?}", d.app.banner());
    assert!(
        d.shows("Clone to sdd cancelled") || d.shows("Clone to SanDisk Extreme (sdd) cancelled"),
        "{:?}",
        d.texts()
    );
    d.until("sdd marked incomplete", LONG, |a| {
        a.data().disks.iter().any(|x| x.name == "sdd" && x.system.state == "incomplete")
    });
}

#[test]
fn sim_gui_a_new_window_finds_and_follows_a_running_clone() {
    let dir = TempDir::new("gui-follow");
    let (rt, bus) = start(&dir, &sample("100M"));
    // Another client (a window since closed) started the clone.
    let path = rt.block_on(async {
        let c = bus.client().await;
        let m = ManagerProxy::new(&c).await.unwrap();
        m.start_clone(&CloneOptions::new(["sdd"])).await.unwrap()
    });
    std::thread::sleep(Duration::from_millis(700));
    let mut d = Driver::new(&bus.address);
    loaded(&mut d);
    assert_eq!(d.app.tab(), Tab::Progress, "a new window opens on the running job");
    assert_eq!(d.app.progress().following(), Some(path.as_str()));
    d.until("the job's state and the log so far", LONG, |a| a.progress().job().is_some_and(|j| !j.log.is_empty()));
    let j = d.app.progress().job().unwrap().clone();
    assert_eq!(j.targets, ["sdd"]);
    assert!(j.log.iter().any(|(_, l)| l.contains("GPT")), "the log lines it missed: {:?}", j.log);
    d.until("progress", LONG, |a| a.progress().job().is_some_and(|x| x.bytes_done > j.bytes_done));
    assert!(d.shows("Cloning to SanDisk Extreme (sdd)"));
    // Closing the window leaves the job running; the next window follows it again.
    drop(d);
    std::thread::sleep(Duration::from_millis(300));
    let state = rt.block_on(async {
        let c = bus.client().await;
        let m = ManagerProxy::new(&c).await.unwrap();
        m.job(path.clone()).await.unwrap().state().await.unwrap()
    });
    assert_eq!(state, "running", "closing the window stopped the job");
    let mut d = Driver::new(&bus.address);
    loaded(&mut d);
    d.until("following again", LONG, |a| a.progress().job().is_some_and(|j| j.state == "running"));
    assert_eq!(d.app.progress().following(), Some(path.as_str()));
}

#[test]
fn sim_gui_errors_are_banners() {
    // The service is not running: the banner says so and how to start it; when it comes,
    // the window loads by itself.
    let dir = TempDir::new("gui-errors");
    let text = sample("1G");
    let (rt, mut bus) = start(&dir, &text);
    rt.block_on(bus.crash_service());
    let mut d = Driver::new(&bus.address);
    d.until("the not-running banner", LONG, |a| a.banner().is_some());
    let b = d.app.banner().unwrap().clone();
    assert_eq!(b.kind, ErrorKind::NotRunning, "{b:?}");
    assert!(b.text.contains("The altdisk service is not running"), "{b:?}");
    assert!(b.hint.as_deref().unwrap_or("").contains("altdiskd"), "{b:?}");
    assert!(d.shows("The altdisk service is not running") && d.has("banner-retry"));
    rt.block_on(bus.start_service());
    d.until("the disks once the service is back", LONG, |a| a.loaded() && a.banner().is_none());
    // It stops while the window is open: said at once.
    rt.block_on(bus.crash_service());
    d.until("the service-gone banner", LONG, |a| a.banner().is_some_and(|b| b.kind == ErrorKind::NotRunning));
    rt.block_on(bus.start_service());
    d.until("the banner to clear", LONG, |a| a.banner().is_none());

    // A disk unplugged mid-wizard: taken off the targets, said, back to the choice.
    d.click("nav-clone");
    d.click("target-sdd");
    d.click("next");
    assert_eq!(d.app.clone_wizard().step(), Step::Options);
    rewrite(&dir, &without_disk(&text, "sdd"));
    d.until("the vanished-disk banner", LONG, |a| a.banner().is_some_and(|b| b.kind == ErrorKind::NotFound));
    let b = d.app.banner().unwrap().clone();
    assert!(b.text.contains("SanDisk Extreme (sdd) is no longer there"), "{b:?}");
    assert_eq!(d.app.clone_wizard().step(), Step::Choose);
    assert!(d.app.clone_wizard().targets().is_empty());
    d.click("banner-dismiss");
    assert!(d.app.banner().is_none());
    rewrite(&dir, &text);
    d.until("sdd back", LONG, |a| a.data().disks.iter().any(|x| x.name == "sdd"));

    // A clone that fails (sdf fails at 40 %): the banner says why; progress shows it.
    d.click("nav-clone");
    d.click("target-sdf");
    to_confirmation(&mut d);
    d.click("confirm-start");
    d.until("the failed-job banner", LONG, |a| a.banner().is_some_and(|b| b.kind == ErrorKind::JobFailed));
    let b = d.app.banner().unwrap().clone();
    assert!(b.text.starts_with("The clone failed: "), "{b:?}");
    assert_eq!(job_state(&d), "failed");
    assert!(d.shows("Clone to TOSHIBA DT01ACA100 (sdf) failed"), "{:?}", d.texts());
    drop(d);

    // Access denied (the sim file denies cloning): the banner names it; nothing starts.
    let dir2 = TempDir::new("gui-denied");
    let (_rt2, bus2) = start(&dir2, &sample("1G").replace("deny = []", "deny = [\"org.altdisk.clone\"]"));
    let mut d = Driver::new(&bus2.address);
    loaded(&mut d);
    d.click("nav-clone");
    d.click("target-sdd");
    to_confirmation(&mut d);
    d.click("confirm-start");
    d.until("the access-denied banner", LONG, |a| a.banner().is_some());
    let b = d.app.banner().unwrap().clone();
    assert_eq!(b.kind, ErrorKind::AccessDenied, "{b:?}");
    assert!(b.text.starts_with("Not allowed: ") && b.text.contains("org.altdisk.clone"), "{b:?}");
    assert!(d.shows("Not allowed: "));
    assert_eq!(d.app.tab(), Tab::Clone, "a refused clone stays on the wizard");
    assert!(d.app.data().jobs.is_empty());
}

#[test]
fn sim_gui_manage_wake_sleep_rename_trial_default_remove() {
    let dir = TempDir::new("gui-manage");
    let (rt, bus) = start(&dir, &sample("1G"));
    let mut d = Driver::new(&bus.address);
    loaded(&mut d);
    d.click("nav-manage");
    let sys = |a: &altdisk_gui::App| a.data().systems.iter().find(|s| s.disks.contains(&"sdb".to_string())).cloned();
    // The running system cannot be touched.
    assert!(d.shows("This is the running system: it is managed by running it."));
    assert!(!d.has("remove-nvme0n1") && !d.has("wake-nvme0n1"));

    d.click("wake-sdb");
    d.until("sdb awake", LONG, |a| sys(a).is_some_and(|s| !s.awake_at.is_empty()));
    assert!(d.shows("The system on sdb is awake: mounted at"), "{:?}", d.texts());
    d.click("sleep-sdb");
    d.until("sdb asleep", LONG, |a| sys(a).is_some_and(|s| s.awake_at.is_empty()));

    d.click("rename-sdb");
    d.type_into("rename-input", "2");
    d.click("rename-apply");
    d.until("the new name", LONG, |a| sys(a).is_some_and(|s| s.name == "altinst_rootvg2"));

    d.click("trial-sdb");
    d.until("a pending trial boot", LONG, |a| sys(a).is_some_and(|s| s.trial));
    d.click("default-sdb");
    d.until("sdb first in the boot order", LONG, |a| {
        a.data().boot.iter().find(|e| e.in_order && !e.disk.is_empty()).is_some_and(|e| e.disk == "sdb")
    });
    let first = rt.block_on(async {
        let c = bus.client().await;
        let m = ManagerProxy::new(&c).await.unwrap();
        m.boot_list().await.unwrap().into_iter().find(|e| e.in_order && !e.disk.is_empty()).map(|e| e.disk)
    });
    assert_eq!(first.as_deref(), Some("sdb"), "the service's boot order");

    // Remove asks for the name; the button does nothing until it is typed right.
    d.click("remove-sdb");
    assert!(d.shows("Type its name, altinst_rootvg2, to confirm."), "{:?}", d.texts());
    assert_eq!(d.click("remove-confirm"), 0, "the remove button works before the name is typed");
    d.type_into("remove-input", "altinst_rootvg");
    assert_eq!(d.click("remove-confirm"), 0, "a wrong name removes");
    d.type_into("remove-input", "2");
    assert!(d.shows("Remove altinst_rootvg2 and wipe sdb"));
    d.click("remove-confirm");
    d.until("sdb free", LONG, |a| a.data().disks.iter().any(|x| x.name == "sdb" && x.kind == kind::FREE));
    assert!(sys(&d.app).is_none());
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
}

#[test]
fn sim_gui_boot_list_reorders_boots_next_and_says_bios_owns_it() {
    let dir = TempDir::new("gui-bootlist");
    let text = sample("1G");
    let (rt, bus) = start(&dir, &text);
    let mut d = Driver::new(&bus.address);
    loaded(&mut d);
    d.click("nav-bootlist");
    let rows = |d: &Driver| d.app.bootlist().rows().iter().map(|r| (r.disk.clone(), r.include)).collect::<Vec<_>>();
    assert_eq!(
        rows(&d),
        [("nvme0n1".to_string(), true), ("sda".to_string(), true), ("sdb".to_string(), false)],
        "the boot order as disks"
    );
    assert!(d.shows("booted now") && d.shows("UEFI PXEv4"), "{:?}", d.texts());
    // sdb into the order, up to the top, applied.
    d.click("boot-include-sdb");
    d.click("boot-up-sdb");
    d.click("boot-up-sdb");
    assert_eq!(rows(&d)[0], ("sdb".to_string(), true));
    d.click("bootlist-apply");
    d.until("the order applied", LONG, |a| {
        a.data().boot.iter().filter(|e| e.in_order && !e.disk.is_empty()).map(|e| e.disk.as_str()).next() == Some("sdb")
    });
    let order: Vec<String> = rt.block_on(async {
        let c = bus.client().await;
        let m = ManagerProxy::new(&c).await.unwrap();
        m.boot_list().await.unwrap().into_iter().filter(|e| e.in_order && !e.disk.is_empty()).map(|e| e.disk).collect()
    });
    assert_eq!(order, ["sdb", "nvme0n1", "sda"]);
    // Boot sda once.
    d.click("boot-next-sda");
    d.until("sda next", LONG, |a| a.data().boot.iter().any(|e| e.disk == "sda" && e.next));
    assert!(d.shows("boots next"));
    drop(d);

    // On BIOS the firmware owns the order, and the screen says so.
    let dir2 = TempDir::new("gui-bios");
    let (_rt2, bus2) = start(&dir2, &text.replace("firmware = \"uefi\"", "firmware = \"bios\""));
    let mut d = Driver::new(&bus2.address);
    loaded(&mut d);
    d.click("nav-bootlist");
    assert!(d.shows("The firmware owns the boot order"), "{:?}", d.texts());
    assert!(!d.has("bootlist-apply"));
    d.click("nav-manage");
    assert!(!d.has("trial-sdb"), "trial boots offered on BIOS");
}

#[test]
fn sim_gui_keyboard_only() {
    let dir = TempDir::new("gui-keys");
    let (_rt, bus) = start(&dir, &sample("1G"));
    let mut d = Driver::new(&bus.address);
    loaded(&mut d);
    // Alt+2 opens the clone screen.
    d.alt_key(iced::keyboard::Key::Character("2".into()));
    assert_eq!(d.app.tab(), Tab::Clone);
    // Tab walks the focus through what can be pressed, in order: the six navigation
    // buttons, the five sources (running, old_rootvg, altinst_rootvg, Ubuntu on sdc, a
    // directory), then the first target (sdd); Space picks it.
    let tab = named(Named::Tab);
    let mut keys = vec![tab.clone(); 6 + 5 + 1];
    keys.push(named(Named::Space));
    let sent = d.keys(&keys);
    assert!(!sent.is_empty(), "Tab and Space sent nothing");
    assert_eq!(d.app.clone_wizard().targets(), ["sdd"], "after {sent:?}");
    // Alt+Right goes on; never past the confirmation.
    d.alt_key(named(Named::ArrowRight));
    assert_eq!(d.app.clone_wizard().step(), Step::Options);
    d.alt_key(named(Named::ArrowRight));
    d.until("the plan", LONG, |a| a.clone_wizard().step() == Step::Review);
    d.alt_key(named(Named::ArrowRight));
    d.alt_key(named(Named::ArrowRight));
    assert_eq!(d.app.clone_wizard().step(), Step::Confirm);
    assert!(d.app.data().jobs.is_empty(), "a key started the clone");
    // On a long page the focus scrolls into sight: Tab after Tab on the disks screen of a
    // 1024x768 window, down to the last card's button far below the first screenful, each
    // focused button is shown.
    d.alt_key(iced::keyboard::Key::Character("1".into()));
    let mut lowest = 0.0f32;
    for n in 1..=11 {
        let at = d.focus_after((1024.0, 768.0), &vec![tab.clone(); n]).expect("something has the focus");
        assert!(at.height > 10.0 && at.y >= 0.0 && at.y + at.height <= 768.0, "Tab ×{n}: out of sight: {at:?}");
        lowest = lowest.max(at.y);
    }
    assert!(lowest > 400.0, "the Tabs never went down the page");
    d.alt_key(iced::keyboard::Key::Character("2".into()));
    // In a window just drawn, Tab reaches the first navigation button and Enter presses it.
    let sent = d.keys(&[named(Named::Tab), named(Named::Enter)]);
    assert!(!sent.is_empty());
    assert_eq!(d.app.tab(), Tab::Disks, "Tab then Enter presses the first navigation button: {sent:?}");
}

#[test]
fn sim_gui_first_frame_at_once() {
    // The window draws before the bus answers (here: no bus at all).
    let start = Instant::now();
    let d = Driver::new("unix:path=/nonexistent/altdisk-test.sock");
    let shown = d.shows("Connecting to the altdisk service");
    let t = start.elapsed();
    assert!(shown, "{:?}", d.texts());
    assert!(t < Duration::from_secs(1), "first frame after {t:?}");
    let mut d = d;
    d.until("the no-bus banner", LONG, |a| a.banner().is_some());
    assert_eq!(d.app.banner().unwrap().kind, ErrorKind::NoBus, "{:?}", d.app.banner());
    assert!(d.shows("cannot reach the bus at unix:path=/nonexistent/altdisk-test.sock"), "{:?}", d.texts());
}

#[test]
fn sim_gui_clone_sources_systems_on_disks_read_offline_and_one_found_mounted() {
    let dir = TempDir::new("gui-sources");
    let (_rt, bus) = start(&dir, &sample("1G"));
    let mut d = Driver::new(&bus.address);
    loaded(&mut d);
    d.click("nav-clone");
    // Systems on disks that do not run are cloned from their disks, read-only, without
    // being woken: the alternate, old_rootvg, and Ubuntu found on sdc. Not the incomplete
    // clone on nvme1n1: it holds nothing to clone.
    for id in ["source-disk-sda", "source-disk-sdb", "source-disk-sdc"] {
        assert!(d.has(id), "no source {id}: {:?}", d.texts());
    }
    assert!(!d.has("source-disk-nvme1n1") && !d.has("source-web_rootvg"), "an incomplete clone is a source");
    assert!(d.shows("found on sdc1: read from its disk, read-only (an offline clone)"), "{:?}", d.texts());
    d.click("source-disk-sdb");
    assert!(!d.has("target-sdb"), "the source's disk is offered as a target");
    assert!(d.shows("it holds the system being cloned"), "{:?}", d.texts());
    d.click("target-sdd");
    d.click("next");
    d.click("next");
    d.until("the plan", LONG, |a| a.clone_wizard().step() == Step::Review);
    assert_eq!(d.app.clone_wizard().plan().unwrap().source, "the system on sdb (Debian GNU/Linux 12 (bookworm))");
    assert!(d.app.data().systems.iter().all(|s| s.awake_at.is_empty()), "a source was woken");
    d.click("next");
    assert!(d.shows("Then the system on sdb (Debian GNU/Linux 12 (bookworm)) is cloned onto it"), "{:?}", d.texts());
    d.click("step-0");
    d.click("source-disk-sdc");
    d.click("next");
    d.click("next");
    d.until("the plan", LONG, |a| a.clone_wizard().plan().is_some_and(|p| p.source.contains("sdc")));
    assert_eq!(d.app.clone_wizard().plan().unwrap().source, "the system on sdc (Ubuntu 22.04.4 LTS)");
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
    drop(d);

    // Ubuntu on sdc mounted at /mnt/ubuntu (as in a rescue session): cloned from there.
    let dir2 = TempDir::new("gui-sources-mounted");
    let text = sample("1G").replacen(
        "  os = \"Ubuntu 22.04.4 LTS\"",
        "  os = \"Ubuntu 22.04.4 LTS\"\n  mountpoint = \"/mnt/ubuntu\"",
        1,
    );
    let (_rt2, bus2) = start(&dir2, &text);
    let mut d = Driver::new(&bus2.address);
    loaded(&mut d);
    d.click("nav-clone");
    // (A radio's own label is drawn, not exposed to the simulator: its description is.)
    assert!(d.shows("found on sdc1: an offline clone"), "{:?}", d.texts());
    assert!(!d.has("source-disk-sdc"), "a mounted system is offered from its disk");
    d.click("source-found-0");
    d.click("target-sdd");
    d.click("next");
    d.click("next");
    d.until("the plan", LONG, |a| a.clone_wizard().step() == Step::Review);
    assert_eq!(d.app.clone_wizard().plan().unwrap().source, "the system at /mnt/ubuntu");
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());
}

#[test]
fn sim_gui_rescue_finds_restores_boots_repairs_and_clones_offline() {
    let dir = TempDir::new("gui-rescue");
    // Steps long enough to see a repair running.
    let text = sample("2G").replace("step_seconds = 0.05", "step_seconds = 0.4");
    let (rt, bus) = start(&dir, &text);
    let mut d = Driver::new(&bus.address);
    loaded(&mut d);
    // Alt+6 opens Rescue, which looks for the systems (once: not on every refresh).
    d.alt_key(iced::keyboard::Key::Character("6".into()));
    assert_eq!(d.app.tab(), Tab::Rescue);
    d.until("the systems found", LONG, |a| a.rescue().found().is_some());
    for shown in [
        "5 systems found: 1 running, 1 old_rootvg, 2 made by altdisk (1 incomplete), 1 other",
        "Ubuntu 22.04.4 LTS",
        "5.15.0-105-generic",
        "6.1.0-13-amd64",
        "CT500MX500SSD1 (sda), 465 GiB",
        "An incomplete clone: it cannot boot and holds nothing to clone.",
        "interrupted: the altdisk service stopped during the run",
    ] {
        assert!(d.shows(shown), "Rescue lacks {shown:?}: {:?}", d.texts());
    }
    for disk in ["sda", "sdb", "sdc"] {
        for what in ["restore", "once", "boot-now", "repair", "clone-from"] {
            let id = format!("{what}-{disk}");
            assert!(d.has(id.clone()), "no {id}");
        }
    }
    // The running system offers only a clone; an incomplete clone nothing.
    assert!(!d.has("restore-nvme0n1") && d.has("clone-from-running"));
    assert_eq!(d.click("restore-nvme1n1"), 0, "an incomplete clone can be restored");
    assert_eq!(d.click("repair-nvme1n1"), 0, "an incomplete clone can be repaired");

    // Make old_rootvg the one that boots: asked first, naming what changes.
    d.click("restore-sda");
    assert_eq!(d.app.rescue().asking(), Some(&altdisk_gui::screen::rescue::Ask::Restore("sda".into())));
    assert!(d.shows("Make old_rootvg on sda the system that boots: its UEFI boot entry"), "{:?}", d.texts());
    assert!(d.shows("The running system on Samsung SSD 980 PRO 1TB (nvme0n1), 931 GiB stays as it is"));
    d.click("ask-cancel");
    assert!(d.app.rescue().asking().is_none());
    assert_eq!(d.data_first_boot(), "nvme0n1", "cancel changed the boot order");
    d.click("restore-sda");
    d.click("restore-confirm");
    d.until("sda first in the boot order", LONG, |a| {
        a.data().boot.iter().find(|e| e.in_order && !e.disk.is_empty()).is_some_and(|e| e.disk == "sda")
    });
    assert!(
        d.shows("Done: old_rootvg on sda is first in the UEFI boot order (Boot0002). The next start boots it."),
        "{:?}",
        d.texts()
    );
    // Boot Ubuntu on sdc once: its entry is made (the firmware had none), BootNext.
    d.click("once-sdc");
    d.until("sdc next", LONG, |a| a.data().boot.iter().any(|e| e.disk == "sdc" && e.next));
    assert!(d.shows("boots next, once") && d.shows("The boot order stays as it is."), "{:?}", d.texts());
    assert_eq!(d.data_first_boot(), "sda");

    // Boot now asks, saying the machine restarts; kexec is a choice; Escape closes it.
    d.click("boot-now-sdb");
    assert!(d.shows("Restart the machine now into altinst_rootvg on sdb, once (UEFI BootNext)"), "{:?}", d.texts());
    assert!(d.has("boot-now-confirm") && d.has("boot-now-kexec"));
    d.update(altdisk_gui::Message::Key(iced::keyboard::Event::KeyPressed {
        key: named(Named::Escape),
        modified_key: named(Named::Escape),
        physical_key: iced::keyboard::key::Physical::Unidentified(iced::keyboard::key::NativeCode::Unidentified),
        location: iced::keyboard::Location::Standard,
        modifiers: iced::keyboard::Modifiers::default(),
        text: None,
        repeat: false,
    }));
    assert!(d.app.rescue().asking().is_none(), "Escape left the question open");
    d.click("boot-now-sdb");
    d.click("boot-now-kexec");
    assert!(d.shows("Start the kernel 6.1.0-18-amd64 of altinst_rootvg on sdb now with kexec"), "{:?}", d.texts());
    d.click("boot-now-confirm");
    d.until("the answer", LONG, |a| a.rescue().done().is_some_and(|t| t.contains("kexec")));
    assert!(d.shows("Done: booting altinst_rootvg (6.1.0-18-amd64) with kexec (simulated"), "{:?}", d.texts());

    // Repair: asked first, naming the disk it writes; followed on the progress screen.
    d.click("repair-sda");
    assert!(d.shows("Repair the boot of old_rootvg on sda: it is mounted read-write"), "{:?}", d.texts());
    d.click("repair-confirm");
    d.until("the repair job", LONG, |a| a.tab() == Tab::Progress && a.progress().job().is_some());
    d.until("the repair's state", LONG, |a| a.progress().job().is_some_and(|j| !j.kind.is_empty()));
    let j = d.app.progress().job().unwrap().clone();
    assert_eq!((j.kind.as_str(), j.state.as_str()), ("repair", "running"));
    assert!(d.shows("Repairing the boot of the system on CT500MX500SSD1 (sda)"), "{:?}", d.texts());
    assert!(d.shows("A repair is not stopped halfway") && !d.has("cancel"), "a repair offers Cancel");
    d.until("the repair to end", LONG, |a| job_state_of(a) == "succeeded");
    assert!(d.shows("Repaired the boot of the system on CT500MX500SSD1 (sda)"), "{:?}", d.texts());
    assert!(d.shows("The boot is repaired: the system can start."));
    let log = &d.app.progress().job().unwrap().log;
    assert!(log.iter().any(|(_, l)| l.contains("regenerated the initramfs of 6.1.0-13-amd64")), "{log:?}");
    d.click("show-rescue");
    assert_eq!(d.app.tab(), Tab::Rescue);

    // Clone it onto another disk: the wizard opens with it as the source, read offline.
    d.until("the systems found again", LONG, |a| !a.rescue().finding());
    d.click("clone-from-sdc");
    assert_eq!(d.app.tab(), Tab::Clone);
    assert_eq!(
        d.app.clone_wizard().source(),
        &altdisk_gui::screen::clone::Source::Disk { disk: "sdc".into(), name: "linux".into() }
    );
    assert!(!d.has("target-sdc"), "the source's disk is a target");
    d.click("target-sdd");
    to_confirmation(&mut d);
    assert!(d.shows("Then the system on sdc (Ubuntu 22.04.4 LTS) is cloned onto it"), "{:?}", d.texts());
    d.click("confirm-start");
    d.until("the offline clone to end", LONG, |a| {
        job_state_of(a) == "succeeded" && a.progress().job().is_some_and(|j| j.kind == "clone")
    });
    // Rescue looks again by itself: the new disk holds a copy of Ubuntu.
    d.click("nav-rescue");
    d.until("the clone found", LONG, |a| {
        a.rescue().found().is_some_and(|f| f.iter().any(|s| s.disks == ["sdd"] && s.os == "Ubuntu 22.04.4 LTS"))
    });
    assert!(d.app.banner().is_none(), "{:?}", d.app.banner());

    // Denied: the banner says so; nothing changes.
    rewrite(&dir, &text.replace("deny = []", "deny = [\"org.altdisk.bootlist\"]"));
    d.click("once-sda");
    d.until("the access-denied banner", LONG, |a| a.banner().is_some());
    assert_eq!(d.app.banner().unwrap().kind, ErrorKind::AccessDenied, "{:?}", d.app.banner());
    assert!(d.shows("Not allowed: "));
    let next = rt.block_on(async {
        let c = bus.client().await;
        let m = ManagerProxy::new(&c).await.unwrap();
        m.boot_list().await.unwrap().into_iter().find(|e| e.next).map(|e| e.disk)
    });
    assert_ne!(next.as_deref(), Some("sda"), "a denied call changed BootNext");
    drop(d);

    // BIOS: nothing can be made the one that boots; boot now is kexec; repair writes GRUB.
    let dir2 = TempDir::new("gui-rescue-bios");
    let (_rt2, bus2) = start(&dir2, &text.replace("firmware = \"uefi\"", "firmware = \"bios\""));
    let mut d = Driver::with(Config {
        dark: Some(false),
        open: Some(Tab::Rescue),
        ..Config::new(GuiBus::Address(bus2.address.clone()))
    });
    d.until("the systems found", LONG, |a| a.rescue().found().is_some());
    assert_eq!(d.app.tab(), Tab::Rescue, "--open rescue");
    assert!(d.shows("BIOS firmware") && !d.has("restore-sda") && !d.has("once-sda"), "{:?}", d.texts());
    assert!(d.shows("Boot now (kexec)…"));
    d.click("boot-now-sda");
    assert!(d.shows("Start the kernel 6.1.0-13-amd64 of old_rootvg on sda now with kexec"), "{:?}", d.texts());
    assert!(!d.has("boot-now-kexec"), "kexec is a choice on BIOS");
    d.click("ask-cancel");
    d.click("repair-sda");
    assert!(d.shows("GRUB written to the boot code of its disk"), "{:?}", d.texts());
}
