//! Root tier: the real altdiskd on a private dbus-daemon, with a fake polkit authority that
//! allows or denies, against loop devices. What a GUI would see: denied callers get
//! AccessDenied from every method; allowed callers list disks, plan, clone with progress
//! signals, cancel; hot-plugged disks show up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use altdisk_api::{CloneOptions, JobProxy, ManagerProxy, Phases};
use altdisk_tests::bus::{check_api, err_name, wait_finished, Bus, Options};
use altdisk_tests::*;
use futures_util::StreamExt;

const MIB: u64 = 1 << 20;

fn polkit() -> Options {
    Options { polkit: true, ..Default::default() }
}

/// A service whose copies are slow (one thread), for tests that stop one midway.
fn slow() -> Options {
    Options { polkit: true, copy_threads: Some("1"), ..Default::default() }
}

/// A populated source system on its own loop device.
fn source(s: &mut Scratch, size: u64) -> PathBuf {
    let dev = s.loopdev("src.img", size);
    let at = s.mkfs_mount(&dev, "ext4", Some("root"), "src");
    populate(&at).unwrap();
    at
}

fn clone_opts(src: &str, target: &str) -> CloneOptions {
    CloneOptions { source: Some(src.into()), phases: Phases::P1, ..CloneOptions::new([target]) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_denied_callers_get_access_denied_everywhere() {
    require_root!();
    let mut s = Scratch::new("dbus-deny");
    let src = source(&mut s, 256 * MIB);
    let t = s.loopdev("t.img", 512 * MIB);
    let bus = Bus::start(&s.path(""), polkit()).await;
    bus.allow.store(false, Ordering::SeqCst);
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let o = clone_opts(src.to_str().unwrap(), t.to_str().unwrap());
    let results: Vec<(&str, zbus::Error)> = vec![
        ("Disks", m.disks().await.unwrap_err()),
        ("BootEnvironments", m.boot_environments().await.unwrap_err()),
        ("BootList", m.boot_list().await.unwrap_err()),
        ("SetBootList", m.set_boot_list(vec!["vdb".into()]).await.unwrap_err()),
        ("SetBootNext", m.set_boot_next("vdb").await.unwrap_err()),
        ("Plan", m.plan(o.to_dict()).await.unwrap_err()),
        ("Clone", m.start_clone(&o).await.unwrap_err()),
        ("Wake", m.wake("vdb").await.unwrap_err()),
        ("Sleep", m.sleep("/alt_inst").await.unwrap_err()),
        ("Remove", m.remove("old_rootvg").await.unwrap_err()),
        ("Rename", m.rename("vdb", "x").await.unwrap_err()),
        ("DiskDetails", m.disk_details().await.unwrap_err()),
        ("Systems", m.systems().await.unwrap_err()),
        ("PlanDetails", m.plan_details_of(&o).await.unwrap_err()),
        ("ListJobs", m.list_jobs().await.unwrap_err()),
        ("TrialBoot", m.trial_boot("vdb").await.unwrap_err()),
        ("RemoveSystem", m.remove_system("vdb").await.unwrap_err()),
        ("FindSystems", m.find_systems().await.unwrap_err()),
        ("RestoreSystem", m.restore_system("vdb", false).await.unwrap_err()),
        ("BootNow", m.boot_now("vdb", true).await.unwrap_err()),
        ("RepairSystem", m.repair_system("vdb").await.unwrap_err()),
    ];
    for (method, e) in results {
        assert_eq!(err_name(&e), "org.altdisk.AltDisk1.Error.AccessDenied", "{method}: {e}");
    }
    assert!(blkid(&t, "PTTYPE").is_none(), "a denied Clone wrote nothing");
    // The proxies allow interactive authorisation; a call without the flag does not ask.
    assert_eq!(bus.polkit_flags.load(Ordering::SeqCst), 1, "CheckAuthorization without ALLOW_USER_INTERACTION");
    let raw: zbus::Result<Vec<altdisk_api::DiskInfo>> = m.inner().call("Disks", &()).await;
    assert_eq!(err_name(&raw.unwrap_err()), "org.altdisk.AltDisk1.Error.AccessDenied");
    assert_eq!(bus.polkit_flags.load(Ordering::SeqCst), 0, "interactive authorisation asked without the flag");
    // Allowed again: the same calls work (or say why they cannot, other than access).
    bus.allow.store(true, Ordering::SeqCst);
    let disks = m.disks().await.unwrap();
    assert!(disks.iter().any(|d| d.path == t.to_str().unwrap() && d.role == "free"), "{disks:?}");
    let plan = m.plan(o.to_dict()).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(v["apiVersion"], "altdisk.io/v1");
    assert_eq!(err_name(&m.wake("nosuchdisk").await.unwrap_err()), "org.altdisk.AltDisk1.Error.NotFound");
    assert_eq!(err_name(&m.remove("nosuchsystem").await.unwrap_err()), "org.altdisk.AltDisk1.Error.NotFound");
    assert_eq!(m.version().await.unwrap(), altdisk_api::API_VERSION);
    assert!(!m.simulated().await.unwrap());
    let card = m.disk_details().await.unwrap().into_iter().find(|d| d.path == t.to_str().unwrap()).unwrap();
    assert_eq!((card.kind.as_str(), card.usable, card.loop_device), (altdisk_api::kind::FREE, true, true));
    let plan = m.plan_details_of(&o).await.unwrap();
    let after = &plan.targets[0].after;
    let root = after.iter().find(|p| p.mountpoint == "/").unwrap_or_else(|| panic!("{after:?}"));
    assert!(root.role == "filesystem" && !root.source.is_empty() && root.used > 0, "{root:?}");
    assert!(plan.targets[0].erased.is_empty() && plan.targets[0].before.is_empty(), "{:?}", plan.targets[0]);
    assert!(plan.text.starts_with("Plan:") && plan.json.contains("altdisk.io/v1"));
    check_api(&c, altdisk_api::MANAGER_PATH, altdisk_api::MANAGER_IFACE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_clone_job_reports_progress_and_finishes() {
    require_root!();
    let mut s = Scratch::new("dbus-clone");
    let src = source(&mut s, 512 * MIB);
    sh(&format!(
        "cd '{}' && mkdir bulk && for i in $(seq 1 20); do head -c 4000000 /dev/urandom > bulk/f$i; done",
        src.display()
    ))
    .unwrap();
    let t = s.loopdev("t.img", 1024 * MIB);
    let bus = Bus::start(&s.path(""), polkit()).await;
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let path = m.start_clone(&clone_opts(src.to_str().unwrap(), t.to_str().unwrap())).await.unwrap();
    let job = JobProxy::builder(&c)
        .path(path.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let finished = job.receive_finished().await.unwrap();
    // Property change signals, as a progress bar would follow them (a caching proxy).
    let watch = JobProxy::builder(&c).path(path.clone()).build().await.unwrap();
    let mut progress = watch.receive_bytes_done_changed().await;
    let seen = Arc::new(std::sync::Mutex::new((0u32, 0u64, true)));
    let seen2 = seen.clone();
    let follower = tokio::spawn(async move {
        while let Some(ch) = progress.next().await {
            if let Ok(v) = ch.get().await {
                let mut s = seen2.lock().unwrap();
                if v < s.1 {
                    s.2 = false;
                }
                s.1 = v;
                s.0 += 1;
            }
        }
    });
    // One job per disk: a second clone onto the same disk is refused while this one runs.
    let again = m.start_clone(&clone_opts(src.to_str().unwrap(), t.to_str().unwrap())).await;
    if let Err(e) = &again {
        let name = err_name(e);
        assert!(name.ends_with(".Busy") || name.ends_with(".Refused"), "{e}");
    } else {
        panic!("a second job on the same disk was accepted");
    }
    assert_eq!(job.targets().await.unwrap(), vec![t.display().to_string()]);
    check_api(&c, path.as_str(), altdisk_api::JOB_IFACE).await;
    let (ok, err) = wait_finished(&job, finished, Duration::from_secs(300)).await;
    assert!(ok, "the job failed: {err}");
    assert!(job.bytes_done().await.unwrap() >= 75 * MIB, "{}", job.bytes_done().await.unwrap());
    assert_eq!(job.phase().await.unwrap(), "done");
    assert_eq!(job.mounted_at().await.unwrap(), s.path("mnt/job1").display().to_string());
    tokio::time::sleep(Duration::from_millis(300)).await;
    follower.abort();
    let (changes, last, monotonic) = *seen.lock().unwrap();
    assert!(changes >= 1 && last > 0, "progress signals seen: {changes}, last {last}");
    assert!(monotonic, "bytes done went backwards");
    drop(c);
    let env = altdisk::discover::record::read(&t).unwrap().unwrap();
    assert_eq!(env.state, altdisk::discover::record::State::Copied);
    // The clone is left mounted (phase 1) under the service's mount root; Sleep unmounts it.
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let mnt = s.path("mnt/job1");
    assert!(mnt.join("home/alice/hello.txt").exists());
    // The manage screen's view of it: an awake alternate system, phase 1 done.
    let name = t.file_name().unwrap().to_string_lossy().to_string();
    let systems = m.systems().await.unwrap();
    let sys = systems.iter().find(|x| x.disks == vec![name.clone()]).unwrap_or_else(|| panic!("{systems:?}"));
    assert_eq!((sys.name.as_str(), sys.state.as_str(), sys.phases_done.clone()), ("altinst_rootvg", "copied", vec![1]));
    assert_eq!(sys.awake_at, mnt.display().to_string());
    assert!(!sys.running && !sys.id.is_empty() && !sys.created.is_empty());
    let card = m.disk_details().await.unwrap().into_iter().find(|d| d.name == name).unwrap();
    assert_eq!((card.kind.as_str(), card.system.name.as_str()), (altdisk_api::kind::ALTERNATE, "altinst_rootvg"));
    assert!(!card.erasable, "awake: mounted");
    m.sleep(mnt.to_str().unwrap()).await.unwrap();
    assert!(s.mounts().iter().all(|p| !p.starts_with(s.path("mnt"))), "{:?}", s.mounts());
    let envs = m.boot_environments().await.unwrap();
    assert!(
        envs.iter()
            .any(|e| e.name == "altinst_rootvg"
                && e.disks.contains(&t.file_name().unwrap().to_string_lossy().to_string())),
        "{envs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_cancel_leaves_target_incomplete_and_unmounted() {
    require_root!();
    let mut s = Scratch::new("dbus-cancel");
    let src = source(&mut s, 1024 * MIB);
    sh(&format!(
        "cd '{}' && mkdir bulk && for i in $(seq 1 60); do head -c 8000000 /dev/urandom > bulk/f$i; done",
        src.display()
    ))
    .unwrap();
    let t = s.loopdev("t.img", 1024 * MIB);
    let bus = Bus::start(&s.path(""), slow()).await;
    sh("sync; echo 3 > /proc/sys/vm/drop_caches").unwrap();
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let path = m.start_clone(&clone_opts(src.to_str().unwrap(), t.to_str().unwrap())).await.unwrap();
    let job =
        JobProxy::builder(&c).path(path).cache_properties(zbus::proxy::CacheProperties::No).build().await.unwrap();
    let finished = job.receive_finished().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while job.phase().await.unwrap() != "copying" || job.bytes_done().await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "the copy never started");
        assert_eq!(
            job.state().await.unwrap(),
            "running",
            "finished before it could be cancelled: {}",
            job.error().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    job.cancel().await.unwrap();
    let (ok, err) = wait_finished(&job, finished, Duration::from_secs(120)).await;
    assert!(!ok && err.contains("cancelled"), "{err}");
    assert_eq!(job.state().await.unwrap(), "cancelled");
    assert!(s.mounts().iter().all(|p| !p.starts_with(s.path("mnt"))), "still mounted: {:?}", s.mounts());
    assert_eq!(
        altdisk::discover::record::read(&t).unwrap().unwrap().state,
        altdisk::discover::record::State::Incomplete
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_hotplugged_disk_appears_within_two_seconds() {
    require_root!();
    let mut s = Scratch::new("dbus-hotplug");
    let bus = Bus::start(&s.path(""), polkit()).await;
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let mut changed = m.receive_disks_changed().await.unwrap();
    let before = m.disks().await.unwrap();
    let dev = s.loopdev("new.img", 64 * MIB);
    assert!(!before.iter().any(|d| Path::new(&d.path) == dev));
    let start = Instant::now();
    let found = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(sig) = changed.next().await {
            let disks = sig.args().unwrap().disks.clone();
            if disks.iter().any(|d| Path::new(&d.path) == dev) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no DisksChanged naming {} within 2 s", dev.display());
    eprintln!("DisksChanged after {:?}", start.elapsed());
    assert!(m.disks().await.unwrap().iter().any(|d| Path::new(&d.path) == dev));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_restart_after_a_crash_cleans_up_and_marks_incomplete() {
    require_root!();
    let mut s = Scratch::new("dbus-crash");
    let src = source(&mut s, 1024 * MIB);
    sh(&format!(
        "cd '{}' && mkdir bulk && for i in $(seq 1 60); do head -c 8000000 /dev/urandom > bulk/f$i; done",
        src.display()
    ))
    .unwrap();
    let t = s.loopdev("t.img", 1024 * MIB);
    // One copy thread and a cold cache, so the crash comes in the middle of the copy.
    let mut bus = Bus::start(&s.path(""), slow()).await;
    sh("sync; echo 3 > /proc/sys/vm/drop_caches").unwrap();
    {
        let c = bus.client().await;
        let m = ManagerProxy::new(&c).await.unwrap();
        let path = m.start_clone(&clone_opts(src.to_str().unwrap(), t.to_str().unwrap())).await.unwrap();
        let job =
            JobProxy::builder(&c).path(path).cache_properties(zbus::proxy::CacheProperties::No).build().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while job.phase().await.unwrap() != "copying" {
            assert!(Instant::now() < deadline, "the copy never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    bus.crash_service().await;
    assert!(
        s.mounts().iter().any(|p| p.starts_with(s.path("mnt"))),
        "the crash left the clone mounted (as a real crash would)"
    );
    bus.start_service().await;
    assert!(s.mounts().iter().all(|p| !p.starts_with(s.path("mnt"))), "still mounted after restart: {:?}", s.mounts());
    let env = altdisk::discover::record::read(&t).unwrap().unwrap();
    assert_eq!(env.state, altdisk::discover::record::State::Incomplete);
    assert!(env.note.unwrap_or_default().contains("interrupted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_details_name_what_a_disk_holds() {
    require_root!();
    let mut s = Scratch::new("dbus-details");
    let src = source(&mut s, 256 * MIB);
    // A disk with a swap area and a Linux system on it, not mounted.
    let dev = s.loopdev("data.img", 700 * MIB);
    sh(&format!("printf 'label: gpt\\nsize=64MiB\\ntype=linux\\n' | sfdisk -q {0} && partx -a {0}", dev.display()))
        .unwrap();
    let p1 = PathBuf::from(format!("{}p1", dev.display()));
    let p2 = PathBuf::from(format!("{}p2", dev.display()));
    run("mkswap", &["-L", "oldswap", p1.to_str().unwrap()]).unwrap();
    let at = s.mkfs_mount(&p2, "ext4", Some("olddata"), "old");
    std::fs::create_dir_all(at.join("usr/lib")).unwrap();
    std::fs::create_dir_all(at.join("etc")).unwrap();
    std::fs::write(at.join("usr/lib/os-release"), "NAME=Test\nPRETTY_NAME=\"Test Linux 9\"\n").unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", at.join("etc/os-release")).unwrap();
    run("umount", &[at.to_str().unwrap()]).unwrap();
    let bus = Bus::start(&s.path(""), polkit()).await;
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let card = m.disk_details().await.unwrap().into_iter().find(|d| Path::new(&d.path) == dev).unwrap();
    assert_eq!((card.kind.as_str(), card.usable, card.erasable), (altdisk_api::kind::HOLDS_DATA, false, true));
    let parts: Vec<(u32, &str, &str, &str)> =
        card.partitions.iter().map(|p| (p.number, p.fstype.as_str(), p.label.as_str(), p.os.as_str())).collect();
    assert_eq!(parts, vec![(1, "swap", "oldswap", ""), (2, "ext4", "olddata", "Test Linux 9")]);
    assert_eq!(card.partitions[0].start, MIB);
    assert_eq!(card.partitions[0].size, 64 * MIB);
    assert!(card.holds.iter().any(|h| h.contains("`olddata`") && h.contains("Test Linux 9")), "{:?}", card.holds);
    assert!(s.mounts().iter().all(|p| !p.starts_with(s.path("mnt"))), "a look stayed mounted: {:?}", s.mounts());
    // The plan names what a clone there erases; without force it is refused.
    let o = clone_opts(src.to_str().unwrap(), dev.to_str().unwrap());
    let e = m.plan_details_of(&o).await.unwrap_err();
    assert!(err_name(&e).ends_with(".Refused"), "{e}");
    let plan = m.plan_details_of(&CloneOptions { force: true, ..o }).await.unwrap();
    let t = &plan.targets[0];
    assert_eq!(t.before.len(), 2);
    assert!(t.erased.iter().any(|l| l.contains("Test Linux 9")), "{:?}", t.erased);
    assert!(t.erased.iter().any(|l| l.contains("swap area `oldswap`")), "{:?}", t.erased);
    assert!(blkid(&p2, "LABEL").as_deref() == Some("olddata"), "looking wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_busy_by_any_name_of_one_disk() {
    require_root!();
    let mut s = Scratch::new("dbus-busy");
    let src = source(&mut s, 1024 * MIB);
    sh(&format!(
        "cd '{}' && mkdir bulk && for i in $(seq 1 60); do head -c 8000000 /dev/urandom > bulk/f$i; done",
        src.display()
    ))
    .unwrap();
    let t = s.loopdev("t.img", 1024 * MIB);
    let img = s.path("t.img");
    let bus = Bus::start(&s.path(""), Options { job_grace: Some(2.0), ..slow() }).await;
    sh("sync; echo 3 > /proc/sys/vm/drop_caches").unwrap();
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let alias = m.disks().await.unwrap().into_iter().find(|d| Path::new(&d.path) == t).unwrap().alias;
    let path = m.start_clone(&clone_opts(src.to_str().unwrap(), t.to_str().unwrap())).await.unwrap();
    let job = JobProxy::builder(&c)
        .path(path.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let finished = job.receive_finished().await.unwrap();
    // The same disk by its backing file, its kernel name, its hdisk alias; a new clone and a
    // resume: all collide with the running job.
    let kernel = t.file_name().unwrap().to_str().unwrap().to_string();
    for other in [img.to_str().unwrap(), kernel.as_str(), alias.as_str()] {
        let o = CloneOptions { force: true, ..clone_opts(src.to_str().unwrap(), other) };
        let e = m.start_clone(&o).await.unwrap_err();
        assert!(err_name(&e).ends_with(".Busy"), "{other}: {e}");
        assert!(e.to_string().contains(path.as_str()), "names the job: {e}");
    }
    let resume = CloneOptions { phases: Phases::P23, ..CloneOptions::new([kernel.as_str()]) };
    let e = m.start_clone(&resume).await.unwrap_err();
    assert!(err_name(&e).ends_with(".Busy"), "resume: {e}");
    // A new client finds the job.
    let c2 = bus.client().await;
    let m2 = ManagerProxy::new(&c2).await.unwrap();
    let jobs = m2.list_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!((jobs[0].path.as_str(), jobs[0].kind.as_str(), jobs[0].owner_uid), (path.as_str(), "clone", 0));
    assert_eq!(jobs[0].targets, vec![t.display().to_string()]);
    assert_eq!(m2.jobs().await.unwrap(), vec![path.clone()]);
    // Stopped: the disk is free for jobs again, and the finished job goes after its grace.
    let deadline = Instant::now() + Duration::from_secs(120);
    while job.bytes_done().await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "the copy never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    job.cancel().await.unwrap();
    let (ok, err) = altdisk_tests::bus::wait_finished(&job, finished, Duration::from_secs(120)).await;
    assert!(!ok && err.contains("cancelled"), "{err}");
    assert_eq!(m2.list_jobs().await.unwrap()[0].state, "cancelled", "readable during the grace period");
    let o = CloneOptions { force: true, ..clone_opts(src.to_str().unwrap(), img.to_str().unwrap()) };
    let e = m.start_clone(&o).await.unwrap_err();
    assert!(err_name(&e).ends_with(".Refused"), "no longer Busy; the library refuses an attached image: {e}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m2.jobs().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the finished job stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(job.state().await.is_err(), "its object is gone");
    assert!(s.mounts().iter().all(|p| !p.starts_with(s.path("mnt"))), "still mounted: {:?}", s.mounts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_phase2_options_reach_the_clone() {
    require_root!();
    let mut s = Scratch::new("dbus-phase2");
    let src = source(&mut s, 256 * MIB);
    std::fs::write(src.join("etc/resolv.conf"), "nameserver 198.51.100.1\n").unwrap();
    let resolv = s.path("resolv.conf");
    std::fs::write(&resolv, "nameserver 192.0.2.53\n").unwrap();
    let script = s.path("custom.sh");
    std::fs::write(&script, "#!/bin/sh\nset -e\necho \"$ALT_DISKS\" > \"$ALT_ROOT/etc/customized-by\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let t = s.loopdev("t.img", 512 * MIB);
    let bus = Bus::start(&s.path(""), polkit()).await;
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let mut o = clone_opts(src.to_str().unwrap(), t.to_str().unwrap());
    o.phase2 = altdisk_api::Phase2Options {
        resolv_conf: Some(resolv.display().to_string()),
        script: Some(script.display().to_string()),
        ..Default::default()
    };
    // Phase 2 options without phase 2 are refused before anything runs.
    let e = m.start_clone(&o).await.unwrap_err();
    assert!(err_name(&e).ends_with(".InvalidArgs"), "{e}");
    o.phases = Phases::P12;
    let path = m.start_clone(&o).await.unwrap();
    let job = m.job(path).await.unwrap();
    let finished = job.receive_finished().await.unwrap();
    assert!(job.steps().await.unwrap().contains(&"customizing".to_string()));
    let (ok, err) = altdisk_tests::bus::wait_finished(&job, finished, Duration::from_secs(300)).await;
    assert!(ok, "{err}");
    // Read afresh: the Finished signal may come to us before the cache saw MountedAt change.
    let mounted_at = get_prop(&c, job.inner().path().as_str(), altdisk_api::JOB_IFACE, "MountedAt").await.unwrap();
    let at = PathBuf::from(String::try_from(mounted_at).unwrap());
    assert_eq!(std::fs::read_to_string(at.join("etc/resolv.conf")).unwrap(), "nameserver 192.0.2.53\n");
    let by = std::fs::read_to_string(at.join("etc/customized-by")).unwrap();
    assert_eq!(by.trim(), t.file_name().unwrap().to_str().unwrap(), "the script ran with ALT_ROOT and ALT_DISKS");
    assert_eq!(
        altdisk::discover::record::read(&t).unwrap().unwrap().state,
        altdisk::discover::record::State::Customized
    );
    m.sleep(at.to_str().unwrap()).await.unwrap();
}

/// Read a property with a plain Get (no cache), as any client can.
async fn get_prop(c: &zbus::Connection, path: &str, iface: &str, name: &str) -> zbus::Result<zbus::OwnedVariant> {
    let p = zbus::fdo::PropertiesProxy::builder(c)
        .destination(altdisk_api::BUS_NAME)
        .path(zbus::ObjectPath::try_from(path.to_string()).unwrap())
        .build()
        .await?;
    p.get(zbus::names::InterfaceName::try_from(iface.to_string()).unwrap(), name).await.map_err(zbus::Error::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_properties_other_callers_jobs_and_callers_that_leave_are_refused() {
    require_root!();
    let mut s = Scratch::new("dbus-authz");
    let src = source(&mut s, 512 * MIB);
    sh(&format!(
        "cd '{}' && mkdir bulk && for i in $(seq 1 30); do head -c 4000000 /dev/urandom > bulk/f$i; done",
        src.display()
    ))
    .unwrap();
    let t = s.loopdev("t.img", 1024 * MIB);
    let t2 = s.loopdev("t2.img", 512 * MIB);
    let bus = Bus::start(&s.path(""), slow()).await;
    // Caller A, allowed, starts a job.
    let a = bus.client().await;
    let ma = ManagerProxy::new(&a).await.unwrap();
    sh("sync; echo 3 > /proc/sys/vm/drop_caches").unwrap();
    let path = ma.start_clone(&clone_opts(src.to_str().unwrap(), t.to_str().unwrap())).await.unwrap();
    // Caller B, denied from now on: every property of the manager and of A's job, the job's
    // log, and cancelling A's job.
    bus.allow.store(false, Ordering::SeqCst);
    let b = bus.client().await;
    for name in ["Version", "Jobs", "Firmware", "Simulated"] {
        let e = get_prop(&b, altdisk_api::MANAGER_PATH, altdisk_api::MANAGER_IFACE, name).await.unwrap_err();
        assert!(err_name(&e).ends_with("AccessDenied"), "Manager.{name}: {e}");
    }
    for name in [
        "Phase",
        "State",
        "BytesDone",
        "BytesTotal",
        "FilesDone",
        "FilesTotal",
        "Rate",
        "Targets",
        "Error",
        "CurrentPath",
        "Steps",
        "Kind",
        "OwnerUid",
        "Started",
        "MountedAt",
    ] {
        let e = get_prop(&b, path.as_str(), altdisk_api::JOB_IFACE, name).await.unwrap_err();
        assert!(err_name(&e).ends_with("AccessDenied"), "Job.{name}: {e}");
    }
    let jb = JobProxy::builder(&b)
        .path(path.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    assert!(err_name(&jb.cancel().await.unwrap_err()).ends_with("AccessDenied"));
    assert!(err_name(&jb.log_lines().await.unwrap_err()).ends_with("AccessDenied"));
    bus.allow.store(true, Ordering::SeqCst);
    let ja = JobProxy::builder(&a)
        .path(path.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    assert_eq!(ja.state().await.unwrap(), "running", "B's cancel did nothing");

    // Caller C asks for a clone and leaves while polkit thinks: nothing is done for it.
    bus.polkit_delay.store(1500, Ordering::SeqCst);
    let c = bus.client().await;
    let o = clone_opts(src.to_str().unwrap(), t2.to_str().unwrap());
    let mc = ManagerProxy::new(&c).await.unwrap();
    let call = tokio::spawn(async move { mc.start_clone(&o).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.abort();
    c.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    bus.polkit_delay.store(0, Ordering::SeqCst);
    assert_eq!(ma.list_jobs().await.unwrap().len(), 1, "no job was started for the caller that left");
    assert!(blkid(&t2, "PTTYPE").is_none(), "nothing was written for it");
    ja.cancel().await.unwrap();
}

/// Bad option dictionaries for Clone and Plan: each is refused with the error its fault
/// calls for, no job starts and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_bad_calls_are_refused_and_write_nothing() {
    require_root!();
    use zbus::{OwnedVariant, Variant};
    let mut s = Scratch::new("dbus-bad");
    let src = source(&mut s, 256 * MIB);
    let t = s.loopdev("t.img", 512 * MIB);
    let bus = Bus::start(&s.path(""), polkit()).await;
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let good = clone_opts(src.to_str().unwrap(), t.to_str().unwrap()).to_dict();
    let v = |x: Variant<'static>| OwnedVariant::try_from(x).unwrap();
    let with = |k: &str, x: Option<OwnedVariant>| {
        let mut d = good.clone();
        match x {
            Some(x) => {
                d.insert(k.to_string(), x);
            }
            None => {
                d.remove(k);
            }
        }
        d
    };
    let rel = s.path("rel-exclude");
    std::fs::write(&rel, "^./tmp/\n").unwrap();
    let cases: Vec<(&str, HashMap<String, OwnedVariant>, &str)> = vec![
        ("an unknown key", with("colour", Some(v(Variant::from("red")))), "InvalidArgs"),
        ("targets of the wrong type", with("targets", Some(v(Variant::from(7u32)))), "InvalidArgs"),
        ("no targets", with("targets", None), "InvalidArgs"),
        ("empty targets", with("targets", Some(v(Variant::from(Vec::<String>::new())))), "InvalidArgs"),
        ("a phase that is none", with("phases", Some(v(Variant::from("7")))), "InvalidArgs"),
        ("a boot list mode that is none", with("bootlist", Some(v(Variant::from("sideways")))), "InvalidArgs"),
        ("a size that is none", with("size", Some(v(Variant::from("huge")))), "InvalidArgs"),
        ("a layout that is not TOML", with("layout", Some(v(Variant::from("[[filesystem]")))), "InvalidArgs"),
        ("a relative exclude list", with("exclude", Some(v(Variant::from("rel-exclude")))), "InvalidArgs"),
        ("a missing exclude list", with("exclude", Some(v(Variant::from("/nonexistent/exclude")))), "NotFound"),
        ("a console without device reset", with("console", Some(v(Variant::from("ttyS0")))), "InvalidArgs"),
        (
            "phase 2 options without phase 2",
            with("packages", Some(v(Variant::from(vec!["htop".to_string()])))),
            "InvalidArgs",
        ),
        ("a source that is not mounted", with("source", Some(v(Variant::from("/nonexistent/src")))), "NotFound"),
        ("a target that is no disk", with("targets", Some(v(Variant::from(vec!["sdzz".to_string()])))), "NotFound"),
        (
            "the running system as target",
            {
                let root = stdout(&altdisk("altdisk", &["lspv"]))
                    .lines()
                    .find(|l| l.contains("rootvg"))
                    .and_then(|l| l.split_whitespace().next().map(String::from))
                    .unwrap();
                with("targets", Some(v(Variant::from(vec![root]))))
            },
            "Refused",
        ),
    ];
    let mut failures = Vec::new();
    for (what, dict, want) in &cases {
        for (method, r) in
            [("Clone", m.clone(dict.clone()).await.map(|_| ())), ("Plan", m.plan(dict.clone()).await.map(|_| ()))]
        {
            match r {
                Ok(()) => failures.push(format!("{method} with {what}: accepted")),
                Err(e) if !err_name(&e).ends_with(want) => failures.push(format!("{method} with {what}: {e}")),
                Err(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{} bad calls misbehaved:\n{}", failures.len(), failures.join("\n"));
    assert!(m.list_jobs().await.unwrap().is_empty(), "no job started");
    assert!(blkid(&t, "PTTYPE").is_none(), "nothing written");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reliability");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bad-dbus-calls.md"),
        format!(
            "- {} bad D-Bus calls (Clone and Plan with {} bad option dictionaries): each refused with its error name, no job started, nothing written; and every method and property refused to a caller polkit denies (root_dbus).\n",
            cases.len() * 2,
            cases.len()
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_rescue_finds_repairs_and_refuses_to_boot_without_uefi() {
    require_root!();
    let mut s = Scratch::new("dbus-rescue");
    let good = rescue_disk(&mut s, "rescuegood", true);
    let bare = rescue_disk(&mut s, "rescuebare", false);
    let (good_name, bare_name) = [&good, &bare].map(|d| d.file_name().unwrap().to_string_lossy().into_owned()).into();
    let bus = Bus::start(&s.path(""), polkit()).await;
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();

    // Find: both systems on their loop devices, with OS and kernels, and the running one;
    // nothing stays mounted after looking.
    let found = m.find_systems().await.unwrap();
    let on = |n: &str| found.iter().find(|f| f.disks == [n]).cloned().unwrap_or_else(|| panic!("{n}: {found:?}"));
    let g = on(&good_name);
    assert_eq!((g.kind.as_str(), g.name.as_str(), g.os.as_str()), ("other", "linux", "Rescue Test 1"));
    assert_eq!((g.kernels.clone(), g.bootable), (vec!["6.1.0-test".to_string()], true));
    assert_eq!(g.root, altdisk::write::partition::partition_path(&good, 1).display().to_string());
    assert_eq!(g.root_uuid, blkid(&altdisk::write::partition::partition_path(&good, 1), "UUID").unwrap());
    let b = on(&bare_name);
    assert!(!b.bootable && b.kernels.is_empty() && b.os == "Rescue Test 1", "{b:?}");
    let running = found.iter().find(|f| f.kind == "running").unwrap_or_else(|| panic!("{found:?}"));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains("/run/altdisk/look-"), "a look stays mounted");

    // Restore and boot now need the firmware's variables: refused here, saying why, before
    // anything is written; a system that cannot boot, and the running one, are refused.
    let uefi = m.firmware().await.unwrap() == altdisk_api::firmware::UEFI;
    for once in [false, true] {
        let e = m.restore_system(&good_name, once).await.unwrap_err();
        if uefi {
            // (Where there are UEFI variables: the test disk has no ESP to boot from.)
            assert!(err_name(&e).ends_with(".NotFound") && e.to_string().contains("EFI system partition"), "{e}");
        } else {
            assert!(err_name(&e).ends_with(".NotSupported"), "{e}");
            assert!(e.to_string().contains("BIOS") && e.to_string().contains("boot menu"), "{e}");
        }
    }
    for (e, why) in [
        (m.restore_system(&bare_name, false).await.unwrap_err(), "does not look bootable"),
        (m.boot_now(&bare_name, false).await.unwrap_err(), "does not look bootable"),
        (m.boot_now(&bare_name, true).await.unwrap_err(), "does not look bootable"),
        (m.restore_system(&running.disks[0], false).await.unwrap_err(), "running system"),
        (m.boot_now(&running.disks[0], false).await.unwrap_err(), "running system"),
        (m.repair_system(&running.disks[0]).await.unwrap_err(), "running system"),
    ] {
        assert!(err_name(&e).ends_with(".Refused") && e.to_string().contains(why), "{why}: {e}");
    }

    // The offline disk swap, planned: the system read from its disk, named as such, and
    // unmounted again (it is not a target).
    let t = s.loopdev("swap-target.img", 512 * MIB);
    let o = CloneOptions {
        source_disk: Some(good_name.clone()),
        phases: Phases::P1,
        ..CloneOptions::new([t.to_str().unwrap()])
    };
    let plan = m.plan_details_of(&o).await.unwrap();
    assert_eq!(plan.source, format!("the system on {good_name} (Rescue Test 1)"));
    let e = m
        .plan_details_of(&CloneOptions {
            source_disk: Some(good_name.clone()),
            ..CloneOptions::new([good.to_str().unwrap()])
        })
        .await
        .unwrap_err();
    assert!(err_name(&e).ends_with(".Refused"), "the source as its own target: {e}");
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains("/run/altdisk/source-"));

    // Repair: a job; the system's own tools run chrooted in it, GRUB onto its disk.
    let path = m.repair_system(&good_name).await.unwrap();
    let j = JobProxy::builder(&c)
        .path(path.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let finished = j.receive_finished().await.unwrap();
    assert_eq!(j.kind().await.unwrap(), "repair");
    assert_eq!(j.targets().await.unwrap(), vec![good_name.clone()]);
    let e = m.repair_system(&good_name).await.unwrap_err();
    assert!(err_name(&e).ends_with(".Busy"), "a second repair of the same disk: {e}");
    let (ok, err) = wait_finished(&j, finished, Duration::from_secs(120)).await;
    assert!(ok, "{err}");
    assert_eq!(j.phase().await.unwrap(), "done");
    let lines = j.log_lines().await.unwrap();
    assert!(
        lines.iter().any(|(_, l)| l == &format!("linux on {good_name}: initramfs and boot loader installed")),
        "{lines:?}"
    );
    let look = s.mkdir("look");
    let part = altdisk::write::partition::partition_path(&good, 1);
    run("mount", &["-o", "ro", part.to_str().unwrap(), look.to_str().unwrap()]).unwrap();
    let called = std::fs::read_to_string(look.join("var/log/boot-tools.log")).unwrap_or_default();
    run("umount", &[look.to_str().unwrap()]).unwrap();
    let mut want = vec!["update-initramfs -u -k all".to_string()];
    if !uefi {
        want.push(format!("grub-install --target=i386-pc {}", good.display()));
        want.push("update-grub".into());
    }
    assert_eq!(called.lines().map(str::trim_end).collect::<Vec<_>>(), want, "the boot tools the repair ran");
    // Nothing of it stays mounted, and its job's directory is gone.
    assert!(s.mounts().is_empty(), "still mounted: {:?}", s.mounts());
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(part.to_str().unwrap()));

    // A system without a kernel: the job fails, saying so.
    let j = JobProxy::builder(&c)
        .path(m.repair_system(&bare_name).await.unwrap())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let finished = j.receive_finished().await.unwrap();
    let (ok, err) = wait_finished(&j, finished, Duration::from_secs(60)).await;
    assert!(!ok && err.contains("no kernel"), "{err}");
    assert!(s.mounts().is_empty(), "still mounted: {:?}", s.mounts());
}
