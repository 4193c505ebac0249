//! Root tier: the real altdiskd on a private dbus-daemon, with a fake polkit authority that
//! allows or denies, against loop devices. What a GUI would see: denied callers get
//! AccessDenied from every method; allowed callers list disks, plan, clone with progress
//! signals, cancel; hot-plugged disks show up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use altdisk::dbus::client::{options, JobProxy, ManagerProxy};
use altdisk_tests::*;
use futures_util::StreamExt;
use zbus::wire::{OwnedVariant, Variant};

const MIB: u64 = 1 << 20;

/// The fake org.freedesktop.PolicyKit1 authority.
struct FakePolkit {
    allow: Arc<AtomicBool>,
}

#[zbus::interface(name = "org.freedesktop.PolicyKit1.Authority")]
impl FakePolkit {
    fn check_authorization(
        &self,
        _subject: (String, HashMap<String, OwnedVariant>),
        _action_id: String,
        _details: HashMap<String, String>,
        _flags: u32,
        _cancellation_id: String,
    ) -> (bool, bool, HashMap<String, String>) {
        (self.allow.load(Ordering::SeqCst), false, HashMap::new())
    }
}

/// A private bus with the fake authority and altdiskd on it; all stopped on drop.
struct Bus {
    /// Copy threads of the service (ALTDISK_COPY_THREADS), to slow a copy down on purpose.
    copy_threads: Option<&'static str>,
    address: String,
    daemon: Child,
    service: Option<Child>,
    allow: Arc<AtomicBool>,
    _polkit: zbus::Connection,
}

impl Bus {
    async fn start(s: &Scratch) -> Bus {
        Bus::start_with(s, None).await
    }

    /// `copy_threads` slows the service's copies down (tests that stop one midway).
    async fn start_with(s: &Scratch, copy_threads: Option<&'static str>) -> Bus {
        let sock = s.path("bus.sock");
        let conf = s.path("bus.conf");
        std::fs::write(
            &conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
                 <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
                sock.display()
            ),
        )
        .unwrap();
        let daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (package dbus-daemon)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let address = format!("unix:path={}", sock.display());
        let allow = Arc::new(AtomicBool::new(true));
        let polkit = zbus::connection::Builder::address(address.as_str())
            .name("org.freedesktop.PolicyKit1")
            .serve_at("/org/freedesktop/PolicyKit1/Authority", FakePolkit { allow: allow.clone() })
            .build()
            .await
            .unwrap();
        let mut bus = Bus { copy_threads, address, daemon, service: None, allow, _polkit: polkit };
        bus.start_service(s).await;
        bus
    }

    async fn start_service(&mut self, s: &Scratch) {
        let bin = altdisk_bin().with_file_name("altdiskd");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(s.path("altdiskd.log")).unwrap();
        let mut cmd = Command::new(&bin);
        if let Some(n) = self.copy_threads {
            cmd.env("ALTDISK_COPY_THREADS", n);
        }
        let service = cmd
            .args(["--address", &self.address, "--mount-root", s.mkdir("mnt").to_str().unwrap()])
            .stderr(log)
            .spawn()
            .expect("altdiskd built");
        self.service = Some(service);
        let bus = &*self;
        let c = bus.client().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let dbus = zbus::fdo::DBusProxy::new(&c).await.unwrap();
            if dbus.name_has_owner(altdisk::dbus::BUS_NAME.try_into().unwrap()).await.unwrap_or(false) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "altdiskd did not come up: {}",
                std::fs::read_to_string(s.path("altdiskd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kill the service as a crash would (SIGKILL) and wait until it is gone from the bus.
    async fn crash_service(&mut self) {
        if let Some(mut s) = self.service.take() {
            s.kill().unwrap();
            s.wait().unwrap();
        }
        let c = self.client().await;
        let dbus = zbus::fdo::DBusProxy::new(&c).await.unwrap();
        while dbus.name_has_owner(altdisk::dbus::BUS_NAME.try_into().unwrap()).await.unwrap_or(false) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn client(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str()).build().await.unwrap()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        if let Some(mut s) = self.service.take() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && s.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Compare the live introspection of `path` with the checked-in API description
/// (docs/NAME.xml); ALTDISK_BLESS=1 writes the file instead. A published interface must not
/// change: a difference here means a new interface is due, not an edit.
async fn check_api(c: &zbus::Connection, path: &str, name: &str, iface: &str) {
    let p = zbus::fdo::IntrospectableProxy::builder(c)
        .destination(altdisk::dbus::BUS_NAME)
        .path(path)
        .build()
        .await
        .unwrap();
    let xml = p.introspect().await.unwrap();
    // Keep only our interface: the standard ones and child nodes come and go.
    let start = xml.find(&format!("<interface name=\"{iface}\">")).expect("interface present");
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    // Doc comments are not the API: drop them, keep every name and signature.
    let mut body = xml[start..end].to_string();
    while let Some(a) = body.find("<!--") {
        let b = body[a..].find("-->").map(|b| a + b + 3).unwrap_or(body.len());
        body.replace_range(a..b, "");
    }
    let live: String = body.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n") + "\n";
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(format!("{name}.xml"));
    if std::env::var("ALTDISK_BLESS").is_ok() {
        std::fs::write(&file, &live).unwrap();
    }
    let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        live,
        checked_in,
        "the {iface} API differs from {} (run with ALTDISK_BLESS=1 only for a new interface)",
        file.display()
    );
}

fn err_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => format!("{other:?}"),
    }
}

/// A populated source system on its own loop device.
fn source(s: &mut Scratch, size: u64) -> PathBuf {
    let dev = s.loopdev("src.img", size);
    let at = s.mkfs_mount(&dev, "ext4", Some("root"), "src");
    populate(&at).unwrap();
    at
}

fn clone_opts<'a>(src: &'a str, target: &'a str) -> HashMap<String, OwnedVariant> {
    options([
        ("targets", Variant::from(vec![target.to_string()])),
        ("source", Variant::from(src)),
        ("phases", Variant::from("1")),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_dbus_denied_callers_get_access_denied_everywhere() {
    require_root!();
    let mut s = Scratch::new("dbus-deny");
    let src = source(&mut s, 256 * MIB);
    let t = s.loopdev("t.img", 512 * MIB);
    let bus = Bus::start(&s).await;
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
        ("Plan", m.plan(o.clone()).await.unwrap_err()),
        ("Clone", m.clone(o.clone()).await.unwrap_err()),
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
    let plan = m.plan(o).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(v["apiVersion"], "altdisk.io/v1");
    assert_eq!(err_name(&m.wake("nosuchdisk").await.unwrap_err()), "org.altdisk.AltDisk1.Error.NotFound");
    assert_eq!(err_name(&m.remove("nosuchsystem").await.unwrap_err()), "org.altdisk.AltDisk1.Error.NotFound");
    assert_eq!(m.version().await.unwrap(), "1.0");
    check_api(&c, altdisk::dbus::MANAGER_PATH, "org.altdisk.AltDisk1.Manager", altdisk::dbus::MANAGER_IFACE).await;
}

/// Wait for the job's Finished signal (or a finished State, if it came before we listened).
async fn wait_finished(
    job: &JobProxy<'_>,
    mut finished: impl futures_util::Stream<Item = altdisk::dbus::client::Finished> + Unpin,
    limit: Duration,
) -> (bool, String) {
    let deadline = Instant::now() + limit;
    loop {
        let state = job.state().await.unwrap();
        if state != "running" {
            return (state == "succeeded", job.error().await.unwrap());
        }
        match tokio::time::timeout(Duration::from_millis(500), finished.next()).await {
            Ok(Some(sig)) => {
                let a = sig.args().unwrap();
                return (a.success, a.error.to_string());
            }
            _ => assert!(Instant::now() < deadline, "the job did not finish in {limit:?}"),
        }
    }
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
    let bus = Bus::start(&s).await;
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let path = m.clone(clone_opts(src.to_str().unwrap(), t.to_str().unwrap())).await.unwrap();
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
    let again = m.clone(clone_opts(src.to_str().unwrap(), t.to_str().unwrap())).await;
    if let Err(e) = &again {
        let name = err_name(e);
        assert!(name.ends_with(".Busy") || name.ends_with(".Refused"), "{e}");
    } else {
        panic!("a second job on the same disk was accepted");
    }
    assert_eq!(job.targets().await.unwrap(), vec![t.display().to_string()]);
    check_api(&c, path.as_str(), "org.altdisk.AltDisk1.Job", altdisk::dbus::JOB_IFACE).await;
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
    let env = altdisk::discover::record::read(&t).unwrap().unwrap();
    assert_eq!(env.state, altdisk::discover::record::State::Copied);
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
    let bus = Bus::start_with(&s, Some("1")).await;
    sh("sync; echo 3 > /proc/sys/vm/drop_caches").unwrap();
    let c = bus.client().await;
    let m = ManagerProxy::new(&c).await.unwrap();
    let path = m.clone(clone_opts(src.to_str().unwrap(), t.to_str().unwrap())).await.unwrap();
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
    let bus = Bus::start(&s).await;
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
    let mut bus = Bus::start_with(&s, Some("1")).await;
    sh("sync; echo 3 > /proc/sys/vm/drop_caches").unwrap();
    {
        let c = bus.client().await;
        let m = ManagerProxy::new(&c).await.unwrap();
        let path = m.clone(clone_opts(src.to_str().unwrap(), t.to_str().unwrap())).await.unwrap();
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
    bus.start_service(&s).await;
    assert!(s.mounts().iter().all(|p| !p.starts_with(s.path("mnt"))), "still mounted after restart: {:?}", s.mounts());
    let env = altdisk::discover::record::read(&t).unwrap().unwrap();
    assert_eq!(env.state, altdisk::discover::record::State::Incomplete);
    assert!(env.note.unwrap_or_default().contains("interrupted"));
}
