//! No root needed: `altdiskd --sim` (the sample machine of docs/sim-sample.toml, made fast)
//! on a private bus, run as an unprivileged user (`nobody` when the test runner is root), and
//! driven through the API crate's proxies as the GUI drives it: disk cards, a drawable plan,
//! a clone with phase 2 options followed to completion (phases, bytes, log lines), a second
//! client that finds the running job, Busy for another name of the same disk, a cancel, a
//! failure, a hot-plugged disk, a denied action, and finished jobs leaving the bus after
//! their grace period. The checked-in introspection XML is compared here too.

use std::time::{Duration, Instant};

use altdisk_api::{found_kind, kind, CloneOptions, JobPhase, JobProxy, ManagerProxy, Phase2Options};
use altdisk_tests::bus::{check_api, err_name, uid_of, unprivileged, wait_finished, Bus, Options, TempDir};
use futures_util::StreamExt;

const SAMPLE: &str = include_str!("../../docs/sim-sample.toml");

/// The sample machine with a quick copy (6G at 3G/s) and short steps.
fn sample() -> String {
    let s = SAMPLE.replace("rate = \"400M\"", "rate = \"3G\"").replace("step_seconds = 0.5", "step_seconds = 0.05");
    assert_ne!(s, SAMPLE, "the sample's [copy] section changed: update this test");
    s
}

async fn start(dir: &TempDir, text: &str) -> Bus {
    std::fs::write(dir.join("sim.toml"), text).unwrap();
    let opts =
        Options { sim: Some(dir.join("sim.toml")), job_grace: Some(1.5), user: unprivileged(), ..Default::default() };
    Bus::start(&dir.path, opts).await
}

async fn job(c: &zbus::Connection, path: zbus::wire::OwnedObjectPath) -> JobProxy<'static> {
    JobProxy::builder(c).path(path).cache_properties(zbus::proxy::CacheProperties::No).build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_clone_cancel_failure_hotplug_through_the_proxies() {
    let dir = TempDir::new("sim-dbus");
    let bus = start(&dir, &sample()).await;
    let uid = uid_of(bus.service_pid().unwrap()).unwrap();
    assert_ne!(uid, 0, "the simulated service runs unprivileged");
    assert!(bus.log().contains("SIMULATION"), "the log says loudly that it simulates: {}", bus.log());
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    assert!(m.simulated().await.unwrap());
    assert_eq!(m.version().await.unwrap(), altdisk_api::API_VERSION);
    assert_eq!(m.firmware().await.unwrap(), altdisk_api::firmware::UEFI);
    check_api(&c, altdisk_api::MANAGER_PATH, altdisk_api::MANAGER_IFACE).await;

    // Disk cards: every role, and what each holds.
    let cards = m.disk_details().await.unwrap();
    let card = |n: &str| cards.iter().find(|d| d.name == n).unwrap_or_else(|| panic!("no card {n}: {cards:?}"));
    assert_eq!((card("nvme0n1").kind.as_str(), card("nvme0n1").usable), (kind::RUNNING, false));
    assert_eq!(card("nvme0n1").system.name, "rootvg");
    assert_eq!((card("sdd").kind.as_str(), card("sdd").usable, card("sdd").bus.as_str()), (kind::FREE, true, "usb"));
    assert_eq!(card("sdb").system.name, "altinst_rootvg");
    assert_eq!(card("sda").kind, kind::FORMER);
    assert_eq!(card("sde").kind, kind::IN_USE);
    assert!(card("sde").detail.contains("/srv/media"), "{:?}", card("sde"));
    let sdc = card("sdc");
    assert!(sdc.kind == kind::HOLDS_DATA && sdc.erasable && !sdc.usable);
    assert!(sdc.holds.iter().any(|h| h.contains("Ubuntu 22.04")), "{:?}", sdc.holds);
    assert!(sdc.holds.iter().any(|h| h.contains("`backups`")), "{:?}", sdc.holds);
    assert_eq!(sdc.partitions.len(), 2);

    // A drawable plan: the free USB disk before (empty) and after.
    let mut o = CloneOptions::new(["sdd"]);
    o.phase2 = Phase2Options {
        packages_dir: Some("/srv/debs".into()),
        packages: vec!["htop".into()],
        device_reset: true,
        ..Default::default()
    };
    let plan = m.plan_details_of(&o).await.unwrap();
    let t = &plan.targets[0];
    assert!(t.before.is_empty() && t.erased.is_empty(), "{t:?}");
    let roles: Vec<&str> = t.after.iter().map(|p| p.role.as_str()).collect();
    // / comes last and takes the rest of the disk.
    assert_eq!(roles, vec!["meta", "filesystem", "swap", "filesystem"], "{:?}", t.after);
    assert_eq!(t.after.last().unwrap().name, "root");
    let root = t.after.iter().find(|p| p.mountpoint == "/").unwrap();
    assert_eq!((root.fstype.as_str(), root.label.as_str()), ("ext4", "alt_root"));
    assert!(root.used > 0 && root.source.starts_with("/dev/nvme0n1"), "{root:?}");
    assert!(t.after.iter().map(|p| p.size).sum::<u64>() <= t.size);
    assert!(plan.text.contains("sdd") && plan.json.contains("\"apiVersion\""));
    // A disk holding data is refused without force, and with force says what is erased.
    let e = m.plan_details_of(&CloneOptions::new(["sdc"])).await.unwrap_err();
    assert!(err_name(&e).ends_with(".Refused"), "{e}");
    let forced = m.plan_details_of(&CloneOptions { force: true, ..CloneOptions::new(["sdc"]) }).await.unwrap();
    assert!(forced.targets[0].erased.iter().any(|l| l.contains("Ubuntu")), "{:?}", forced.targets[0].erased);
    assert_eq!(forced.targets[0].before.len(), 2);
    let e = m.start_clone(&CloneOptions::new(["nvme0n1"])).await.unwrap_err();
    assert!(err_name(&e).ends_with(".Refused"), "the running system: {e}");

    // A clone followed to the end, with phase 2.
    let path = m.start_clone(&o).await.unwrap();
    let j = job(&c, path.clone()).await;
    let finished = j.receive_finished().await.unwrap();
    let mut logs = j.receive_log().await.unwrap();
    let watch = m.job(path.clone()).await.unwrap();
    let mut bytes = watch.receive_bytes_done_changed().await;
    check_api(&c, path.as_str(), altdisk_api::JOB_IFACE).await;
    let steps = j.steps().await.unwrap();
    assert!(steps.contains(&JobPhase::Customizing.as_str().to_string()), "{steps:?}");
    assert_eq!(j.kind().await.unwrap(), "clone");
    assert_eq!(j.targets().await.unwrap(), vec!["sdd"]);
    // Another name of the same disk is Busy.
    let e = m.start_clone(&CloneOptions::new(["hdisk4"])).await.unwrap_err();
    assert!(err_name(&e).ends_with(".Busy"), "{e}");
    // A second client (a new window) finds the running job and follows it.
    let c2 = bus.client().await;
    let m2 = ManagerProxy::new(&c2).await.unwrap();
    let jobs = m2.list_jobs().await.unwrap();
    let found = jobs.iter().find(|x| x.path == path).unwrap_or_else(|| panic!("{jobs:?}"));
    assert_eq!((found.state.as_str(), found.targets.clone()), ("running", vec!["sdd".to_string()]));
    assert_eq!(found.owner_uid, nix::unistd::getuid().as_raw());
    assert!(m2.jobs().await.unwrap().contains(&path));
    let j2 = m2.job(path.clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while j2.phase().await.unwrap() != "copying" {
        assert!(Instant::now() < deadline, "never reached copying");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Property change signals, as a progress bar follows them (the first is the value then).
    let moved = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ch) = bytes.next().await {
            if ch.get().await.unwrap() > 0 {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(moved, Ok(true), "no BytesDone change while copying");
    let (ok, err) = wait_finished(&j, finished, Duration::from_secs(30)).await;
    assert!(ok, "{err}");
    assert_eq!(j.phase().await.unwrap(), "done");
    assert_eq!(j.bytes_done().await.unwrap(), j.bytes_total().await.unwrap());
    assert!(j.files_done().await.unwrap() > 0 && j.rate().await.unwrap() > 0);
    assert!(!j.current_path().await.unwrap().is_empty());
    let lines = j.log_lines().await.unwrap();
    assert!(lines.iter().any(|(_, m)| m.contains("htop")), "phase 2 ran: {lines:?}");
    let sig = tokio::time::timeout(Duration::from_secs(1), logs.next()).await.expect("Log signals").unwrap();
    assert!(!sig.args().unwrap().message.is_empty());
    // The disk now holds the clone, first in the boot order.
    let sdd = m.disk_details().await.unwrap().into_iter().find(|d| d.name == "sdd").unwrap();
    assert_eq!(
        (sdd.kind.as_str(), sdd.system.name.as_str(), sdd.system.state.as_str()),
        (kind::ALTERNATE, "altinst_rootvg", "complete")
    );
    let list = m.boot_list().await.unwrap();
    assert_eq!(list[0].disk, "sdd", "{list:?}");
    let systems = m.systems().await.unwrap();
    assert!(systems.iter().any(|s| s.disks == vec!["sdd"] && s.phases_done == vec![1, 2, 3]), "{systems:?}");

    // Cancel: a clone onto the failing disk, stopped before it fails.
    let path = m.start_clone(&CloneOptions::new(["sdf"])).await.unwrap();
    let j = job(&c, path.clone()).await;
    let finished = j.receive_finished().await.unwrap();
    while j.bytes_done().await.unwrap() == 0 {
        assert_eq!(j.state().await.unwrap(), "running", "{}", j.error().await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    j.cancel().await.unwrap();
    let (ok, err) = wait_finished(&j, finished, Duration::from_secs(10)).await;
    assert!(!ok && err.contains("cancelled"), "{err}");
    assert_eq!(j.state().await.unwrap(), "cancelled");
    let sdf = m.disk_details().await.unwrap().into_iter().find(|d| d.name == "sdf").unwrap();
    assert_eq!(sdf.system.state, "incomplete", "{sdf:?}");

    // Failure: the disk is marked to fail at 40 % of the copy.
    let e = m.start_clone(&CloneOptions::new(["sdf"])).await.unwrap_err();
    assert!(err_name(&e).ends_with(".Refused"), "an incomplete clone needs force: {e}");
    let path = m.start_clone(&CloneOptions { force: true, ..CloneOptions::new(["sdf"]) }).await.unwrap();
    let j = job(&c, path.clone()).await;
    let finished = j.receive_finished().await.unwrap();
    let (ok, err) = wait_finished(&j, finished, Duration::from_secs(30)).await;
    assert!(!ok && err.contains("simulated failure"), "{err}");
    assert_eq!(j.state().await.unwrap(), "failed");
    let (done, total) = (j.bytes_done().await.unwrap(), j.bytes_total().await.unwrap());
    assert_eq!((done as f64 * 100.0 / total as f64).round(), 40.0, "failed at {done} of {total}");

    // Finished jobs leave the bus after the grace period (1.5 s here).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.jobs().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "finished jobs stayed: {:?}", m.jobs().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(m.list_jobs().await.unwrap().is_empty());
    assert!(job(&c, path).await.state().await.is_err(), "the object is gone");

    // Hot-plug: a disk added to the sim file appears within two seconds, and goes again.
    let mut changed = m.receive_disks_changed().await.unwrap();
    let plugged = format!(
        "{}\n[[disk]]\nname = \"sdg\"\nmodel = \"Kingston DataTraveler\"\nsize = \"32G\"\nbus = \"usb\"\nremovable = true\n",
        sample()
    );
    std::fs::write(dir.join("sim.toml"), &plugged).unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(sig) = changed.next().await {
            if sig.args().unwrap().disks.iter().any(|d| d.name == "sdg") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "no DisksChanged naming sdg within 2 s");
    let sdd_now = m.disk_details().await.unwrap().into_iter().find(|d| d.name == "sdd").unwrap();
    assert_eq!(sdd_now.kind, kind::ALTERNATE, "what the clone did stays when the file is read again");
    std::fs::write(dir.join("sim.toml"), sample().replace("deny = []", "deny = [\"org.altdisk.clone\"]")).unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(sig) = changed.next().await {
            if !sig.args().unwrap().disks.iter().any(|d| d.name == "sdg") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(gone, Ok(true), "sdg did not go");
    // The same file now denies cloning.
    let e = m.start_clone(&CloneOptions::new(["sdd"])).await.unwrap_err();
    assert_eq!(err_name(&e), "org.altdisk.AltDisk1.Error.AccessDenied", "{e}");
    assert!(m.disks().await.is_ok(), "reading is still allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_rescue_find_restore_boot_now_repair_and_an_offline_clone() {
    let dir = TempDir::new("sim-rescue");
    // Steps slow enough to act while a repair runs.
    let text = sample().replace("step_seconds = 0.05", "step_seconds = 0.4");
    let bus = start(&dir, &text).await;
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    assert_eq!(m.version().await.unwrap(), "1.3");
    check_api(&c, altdisk_api::MANAGER_PATH, altdisk_api::MANAGER_IFACE).await;

    // Find: every system, whoever made it, with its OS and kernels.
    let found = m.find_systems().await.unwrap();
    let on = |n: &str| found.iter().find(|f| f.disks == [n]).cloned().unwrap_or_else(|| panic!("{n}: {found:?}"));
    assert_eq!((on("nvme0n1").kind.as_str(), on("nvme0n1").host.as_str()), (found_kind::RUNNING, "prod1"));
    assert_eq!(
        (on("sda").kind.as_str(), on("sda").kernels.clone()),
        (found_kind::OLD_ROOTVG, vec!["6.1.0-13-amd64".into()])
    );
    let other = on("sdc");
    assert_eq!(
        (other.kind.as_str(), other.os.as_str(), other.bootable),
        (found_kind::OTHER, "Ubuntu 22.04.4 LTS", true)
    );
    assert_eq!(other.kernels, ["5.15.0-105-generic"]);
    let incomplete = on("nvme1n1");
    assert!(incomplete.kind == found_kind::ALTDISK && !incomplete.bootable, "{incomplete:?}");

    // Restore: the system on sdc boots from now on (its entry made), sda once.
    let said = m.restore_system("sdc", false).await.unwrap();
    assert!(said.contains("linux on sdc is first in the UEFI boot order"), "{said}");
    assert_eq!(m.boot_list().await.unwrap()[0].disk, "sdc");
    assert!(m.restore_system("sda", true).await.unwrap().contains("boots next, once"));
    assert!(m.boot_list().await.unwrap().iter().any(|b| b.disk == "sda" && b.next));
    for (e, name) in [
        (m.restore_system("nvme0n1", false).await.unwrap_err(), "Refused"),
        (m.restore_system("nvme1n1", false).await.unwrap_err(), "Refused"),
        (m.restore_system("sdd", false).await.unwrap_err(), "NotFound"),
        (m.boot_now("nvme0n1", false).await.unwrap_err(), "Refused"),
        (m.repair_system("nvme0n1").await.unwrap_err(), "Refused"),
        (m.repair_system("nosuchdisk").await.unwrap_err(), "NotFound"),
    ] {
        assert_eq!(err_name(&e), format!("org.altdisk.AltDisk1.Error.{name}"), "{e}");
    }
    let said = m.boot_now("sdb", false).await.unwrap();
    assert!(said.contains("altinst_rootvg on sdb boots next, once") && said.contains("rebooting"), "{said}");

    // Repair: a job like a clone's, on the system's disks.
    let path = m.repair_system("hdisk2").await.unwrap();
    let j = job(&c, path.clone()).await;
    let finished = j.receive_finished().await.unwrap();
    assert_eq!(j.kind().await.unwrap(), "repair");
    assert_eq!(j.targets().await.unwrap(), ["sdb"]);
    assert_eq!(j.steps().await.unwrap(), ["validating", "making-bootable", "done"]);
    let listed = m.list_jobs().await.unwrap();
    assert!(listed.iter().any(|x| x.path == path && x.kind == "repair" && x.state == "running"), "{listed:?}");
    // While it runs: the disk is Busy by any name, and nothing restarts the machine.
    for e in [
        m.repair_system("sdb").await.unwrap_err(),
        m.restore_system("sdb", false).await.unwrap_err(),
        m.start_clone(&CloneOptions { force: true, ..CloneOptions::new(["hdisk2"]) }).await.unwrap_err(),
        m.boot_now("sda", false).await.unwrap_err(),
    ] {
        assert!(err_name(&e).ends_with(".Busy"), "{e}");
    }
    let (ok, err) = wait_finished(&j, finished, Duration::from_secs(30)).await;
    assert!(ok, "{err}");
    assert_eq!(j.phase().await.unwrap(), "done");
    let lines = j.log_lines().await.unwrap();
    assert!(lines.iter().any(|(_, l)| l.contains("regenerated the initramfs of 6.1.0-18-amd64")), "{lines:?}");
    assert!(lines.iter().any(|(_, l)| l.starts_with("altinst_rootvg on sdb: initramfs and boot loader installed")));
    assert_eq!(m.boot_list().await.unwrap()[0].disk, "sdb", "the repaired system's entry goes first");
    // A repair on a disk marked to fail: the job fails, saying why.
    let failing = text.replace("name = \"sdb\"\nmodel", "name = \"sdb\"\nfail_at = 5\nmodel");
    assert_ne!(failing, text);
    std::fs::write(dir.join("sim.toml"), &failing).unwrap();
    let j = job(&c, m.repair_system("sdb").await.unwrap()).await;
    let finished = j.receive_finished().await.unwrap();
    let (ok, err) = wait_finished(&j, finished, Duration::from_secs(30)).await;
    assert!(!ok && err.contains("simulated failure"), "{err}");

    // The offline disk swap: the system on sdc cloned onto sdd, read from its disk.
    let o = CloneOptions { source_disk: Some("sdc".into()), ..CloneOptions::new(["sdd"]) };
    let plan = m.plan_details_of(&o).await.unwrap();
    assert_eq!(plan.source, "the system on sdc (Ubuntu 22.04.4 LTS)");
    let e = m
        .plan_details_of(&CloneOptions { source_disk: Some("sdc".into()), force: true, ..CloneOptions::new(["sdc"]) })
        .await
        .unwrap_err();
    assert!(err_name(&e).ends_with(".Refused"), "the source as its own target: {e}");
    let j = job(&c, m.start_clone(&o).await.unwrap()).await;
    let finished = j.receive_finished().await.unwrap();
    let (ok, err) = wait_finished(&j, finished, Duration::from_secs(60)).await;
    assert!(ok, "{err}");
    let clone = m.find_systems().await.unwrap().into_iter().find(|f| f.disks == ["sdd"]).unwrap();
    assert_eq!((clone.kind.as_str(), clone.os.as_str()), (found_kind::ALTDISK, "Ubuntu 22.04.4 LTS"));
    assert_eq!((clone.kernels.clone(), clone.bootable), (vec!["5.15.0-105-generic".to_string()], true));

    // Denied: the rescue actions, finding too (it mounts filesystems to look into them).
    std::fs::write(
        dir.join("sim.toml"),
        text.replace("deny = []", "deny = [\"org.altdisk.bootlist\", \"org.altdisk.manage\"]"),
    )
    .unwrap();
    for e in [
        m.restore_system("sda", false).await.unwrap_err(),
        m.boot_now("sda", false).await.unwrap_err(),
        m.repair_system("sda").await.unwrap_err(),
        m.find_systems().await.unwrap_err(),
    ] {
        assert_eq!(err_name(&e), "org.altdisk.AltDisk1.Error.AccessDenied", "{e}");
    }
}

/// 1.3: Verify returns a job whose Report says equal; a refresh keeps the clone's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_verify_and_refresh_through_the_proxies() {
    let dir = TempDir::new("sim-verify");
    let bus = start(&dir, &sample()).await;
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let before = m.systems().await.unwrap().into_iter().find(|s| s.disks.contains(&"sdb".to_string())).unwrap();
    // Verify: a job of kind verify, whose report says what was found.
    let path = m.start_verify("sdb", &altdisk_api::VerifyOptions::default()).await.unwrap();
    let j = job(&c, path).await;
    let finished = j.receive_finished().await.unwrap();
    let (ok, err) = wait_finished(&j, finished, Duration::from_secs(30)).await;
    assert!(ok, "{err}");
    assert_eq!(j.kind().await.unwrap(), "verify");
    let report: serde_json::Value = serde_json::from_str(&j.report().await.unwrap()).unwrap();
    assert_eq!(report["equal"], true, "{report}");
    assert_eq!(report["apiVersion"], "altdisk.io/v1");
    // Bad options name the key.
    let mut d = altdisk_api::VerifyOptions::default().to_dict();
    d.insert("targets".into(), zbus::Variant::from("sdb").try_into().unwrap());
    let e = m.verify("sdb", d).await.unwrap_err();
    assert!(err_name(&e).ends_with("InvalidArgs"), "{e}");
    // Refresh: a job of kind refresh, through copying and identities; same system after.
    let mut o = CloneOptions::new(["sdb"]);
    o.refresh = true;
    let path = m.start_clone(&o).await.unwrap();
    let j = job(&c, path).await;
    let finished = j.receive_finished().await.unwrap();
    let (ok, err) = wait_finished(&j, finished, Duration::from_secs(30)).await;
    assert!(ok, "{err}");
    assert_eq!(j.kind().await.unwrap(), "refresh");
    assert!(j.steps().await.unwrap().contains(&"copying".to_string()));
    let after = m.systems().await.unwrap().into_iter().find(|s| s.disks.contains(&"sdb".to_string())).unwrap();
    assert_eq!((after.id, after.state, after.boot_entry), (before.id, before.state, before.boot_entry));
    // A refresh with layout options is refused before a job exists.
    o.force = true;
    assert!(err_name(&m.start_clone(&o).await.unwrap_err()).ends_with("InvalidArgs"));
}
