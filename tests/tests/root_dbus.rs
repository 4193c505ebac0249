//! Root tier: the real altdiskd on a private dbus-daemon, with a fake polkit authority that
//! allows or denies, against loop devices. What a GUI would see: denied callers get
//! AccessDenied from every method; allowed callers list disks, plan, clone with progress
//! signals, cancel; hot-plugged disks show up.

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
    ];
    for (method, e) in results {
        assert_eq!(err_name(&e), "org.altdisk.AltDisk1.Error.AccessDenied", "{method}: {e}");
    }
    assert!(blkid(&t, "PTTYPE").is_none(), "a denied Clone wrote nothing");
    // Allowed again: the same calls work (or say why they cannot, other than access).
    bus.allow.store(true, Ordering::SeqCst);
    let disks = m.disks().await.unwrap();
    assert!(disks.iter().any(|d| d.path == t.to_str().unwrap() && d.role == "free"), "{disks:?}");
    let plan = m.plan(o.to_dict()).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(v["apiVersion"], "altdisk.io/v1");
    assert_eq!(err_name(&m.wake("nosuchdisk").await.unwrap_err()), "org.altdisk.AltDisk1.Error.NotFound");
    assert_eq!(err_name(&m.remove("nosuchsystem").await.unwrap_err()), "org.altdisk.AltDisk1.Error.NotFound");
    assert_eq!(m.version().await.unwrap(), "1.0");
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    follower.abort();
    let (changes, last, monotonic) = *seen.lock().unwrap();
    assert!(changes >= 1 && last > 0, "progress signals seen: {changes}, last {last}");
    assert!(monotonic, "bytes done went backwards");
    drop(c);
    let env = altdisk::bootenv::read(&t).unwrap().unwrap();
    assert_eq!(env.state, altdisk::bootenv::State::Copied);
    // The clone is left mounted (phase 1) under the service's mount root; Sleep unmounts it.
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let mnt = s.path("mnt/job1");
    assert!(mnt.join("home/alice/hello.txt").exists());
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
    assert_eq!(altdisk::bootenv::read(&t).unwrap().unwrap().state, altdisk::bootenv::State::Incomplete);
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
    let env = altdisk::bootenv::read(&t).unwrap().unwrap();
    assert_eq!(env.state, altdisk::bootenv::State::Incomplete);
    assert!(env.note.unwrap_or_default().contains("interrupted"));
}
