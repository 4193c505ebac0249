//! A private D-Bus for the service tests: a dbus-daemon of its own, optionally a fake polkit
//! authority that allows or denies (and records whether interactive authorisation was
//! asked for), and altdiskd on it (real or `--sim`, as this user or as `nobody`). Everything
//! is stopped when the [`Bus`] is dropped, also when the test fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use altdisk_api::JobProxy;
use futures_util::StreamExt;
use zbus::wire::OwnedVariant;

/// The fake org.freedesktop.PolicyKit1 authority.
struct FakePolkit {
    allow: Arc<AtomicBool>,
    last_flags: Arc<AtomicU32>,
    last_flags_not_read: Arc<AtomicU32>,
    delay_ms: Arc<AtomicU32>,
}

#[zbus::interface(name = "org.freedesktop.PolicyKit1.Authority")]
impl FakePolkit {
    async fn check_authorization(
        &self,
        _subject: (String, HashMap<String, OwnedVariant>),
        action_id: String,
        _details: HashMap<String, String>,
        flags: u32,
        _cancellation_id: String,
    ) -> (bool, bool, HashMap<String, String>) {
        self.last_flags.store(flags, Ordering::SeqCst);
        if action_id != "org.altdisk.read" {
            self.last_flags_not_read.store(flags, Ordering::SeqCst);
        }
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay.into())).await;
        }
        (self.allow.load(Ordering::SeqCst), false, HashMap::new())
    }
}

/// How to start the service.
#[derive(Default, Clone)]
pub struct Options {
    /// Copy threads of the service (ALTDISK_COPY_THREADS), to slow a copy down on purpose.
    pub copy_threads: Option<&'static str>,
    /// Serve this sim file (`--sim`).
    pub sim: Option<PathBuf>,
    /// `--job-grace` seconds.
    pub job_grace: Option<f64>,
    /// Serve the fake polkit authority.
    pub polkit: bool,
    /// Run the service as this uid and gid (a root test runner starting it unprivileged).
    pub user: Option<u32>,
}

/// A private bus with altdiskd on it; all stopped on drop.
pub struct Bus {
    pub address: String,
    pub allow: Arc<AtomicBool>,
    /// CheckAuthorization's flags of the last call (1: interactive authorisation allowed).
    pub polkit_flags: Arc<AtomicU32>,
    /// The same for the last check of an action that changes something (not a read: the
    /// service checks property reads too, without asking the user).
    pub polkit_flags_not_read: Arc<AtomicU32>,
    /// How long the fake polkit takes to answer (ms), for callers that leave meanwhile.
    pub polkit_delay: Arc<AtomicU32>,
    dir: PathBuf,
    opts: Options,
    daemon: Child,
    service: Option<Child>,
    _polkit: Option<zbus::Connection>,
}

impl Bus {
    /// Start a bus whose socket, configuration and service log live in `dir`; the service
    /// mounts clones under `dir/mnt`.
    pub async fn start(dir: &Path, opts: Options) -> Bus {
        let sock = dir.join("bus.sock");
        let conf = dir.join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
                 <busconfig><type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
                 <policy context=\"default\"><allow user=\"*\"/><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n",
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
        let polkit_flags = Arc::new(AtomicU32::new(u32::MAX));
        let polkit_delay = Arc::new(AtomicU32::new(0));
        let polkit_flags_not_read = Arc::new(AtomicU32::new(u32::MAX));
        let polkit = if opts.polkit {
            Some(
                zbus::connection::Builder::address(address.as_str())
                    .name("org.freedesktop.PolicyKit1")
                    .serve_at(
                        "/org/freedesktop/PolicyKit1/Authority",
                        FakePolkit {
                            allow: allow.clone(),
                            last_flags: polkit_flags.clone(),
                            last_flags_not_read: polkit_flags_not_read.clone(),
                            delay_ms: polkit_delay.clone(),
                        },
                    )
                    .build()
                    .await
                    .unwrap(),
            )
        } else {
            None
        };
        let mut bus = Bus {
            address,
            allow,
            polkit_flags,
            polkit_flags_not_read,
            polkit_delay,
            dir: dir.to_path_buf(),
            opts,
            daemon,
            service: None,
            _polkit: polkit,
        };
        bus.start_service().await;
        bus
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("altdiskd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub async fn start_service(&mut self) {
        let mut bin = crate::altdisk_bin().with_file_name("altdiskd");
        if self.opts.user.is_some() {
            // Another user may not reach the build directory (a checkout under /root): run a
            // copy from the test's own directory, which every user can read.
            let copy = self.dir.join("altdiskd");
            std::fs::copy(&bin, &copy).expect("copying altdiskd for another user");
            bin = copy;
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut cmd = Command::new(&bin);
        if let Some(n) = self.opts.copy_threads {
            cmd.env("ALTDISK_COPY_THREADS", n);
        }
        let mnt = self.dir.join("mnt");
        cmd.args(["--address", &self.address, "--mount-root", mnt.to_str().unwrap()]);
        if let Some(f) = &self.opts.sim {
            cmd.arg("--sim").arg(f);
        } else {
            std::fs::create_dir_all(&mnt).unwrap();
        }
        if let Some(g) = self.opts.job_grace {
            cmd.arg("--job-grace").arg(g.to_string());
        }
        if let Some(uid) = self.opts.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(uid);
        }
        cmd.stderr(log);
        // The copy made above may still be open for writing in a child another test thread
        // forked meanwhile (until that child execs): exec then fails with ETXTBSY for a moment.
        let mut tries = 0;
        let service = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r.expect("altdiskd built"),
            }
        };
        self.service = Some(service);
        let c = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let dbus = zbus::fdo::DBusProxy::new(&c).await.unwrap();
            if dbus.name_has_owner(altdisk_api::BUS_NAME.try_into().unwrap()).await.unwrap_or(false) {
                break;
            }
            if let Some(Ok(Some(status))) = self.service.as_mut().map(|s| s.try_wait()) {
                panic!("altdiskd exited ({status}): {}", self.log());
            }
            assert!(Instant::now() < deadline, "altdiskd did not come up: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The service's process id.
    pub fn service_pid(&self) -> Option<u32> {
        self.service.as_ref().map(|s| s.id())
    }

    /// Kill the service as a crash would (SIGKILL) and wait until it is gone from the bus.
    pub async fn crash_service(&mut self) {
        if let Some(mut s) = self.service.take() {
            s.kill().unwrap();
            s.wait().unwrap();
        }
        let c = self.client().await;
        let dbus = zbus::fdo::DBusProxy::new(&c).await.unwrap();
        while dbus.name_has_owner(altdisk_api::BUS_NAME.try_into().unwrap()).await.unwrap_or(false) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn client(&self) -> zbus::Connection {
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
/// (docs/NAME.xml); ALTDISK_BLESS=1 writes the file instead. A published interface only
/// grows: a difference here must be an addition (and the minor version goes up).
pub async fn check_api(c: &zbus::Connection, path: &str, iface: &str) {
    let p =
        zbus::fdo::IntrospectableProxy::builder(c).destination(altdisk_api::BUS_NAME).path(path).build().await.unwrap();
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
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(format!("{iface}.xml"));
    if std::env::var("ALTDISK_BLESS").is_ok() {
        std::fs::write(&file, &live).unwrap();
    }
    let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        live,
        checked_in,
        "the {iface} API differs from {} (ALTDISK_BLESS=1 rewrites it: only for additions)",
        file.display()
    );
}

/// The D-Bus error name of a failed call.
pub fn err_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        zbus::Error::FDO(f) => match &**f {
            zbus::fdo::Error::AccessDenied(_) => "org.freedesktop.DBus.Error.AccessDenied".into(),
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    }
}

/// Wait for the job's Finished signal (or a finished State, if it came before we listened).
pub async fn wait_finished(
    job: &JobProxy<'_>,
    mut finished: impl futures_util::Stream<Item = altdisk_api::proxy::Finished> + Unpin,
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

/// A directory for tests that need no root (sim files, a bus socket), readable by every user
/// so a service started as `nobody` can read it; removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("altdisk-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir { path }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The uid a test runs the service as: `nobody` when the test runs as root, else none (the
/// test's own user), so the service never runs as root.
pub fn unprivileged() -> Option<u32> {
    crate::is_root().then_some(65534)
}

/// The real uid of a process.
pub fn uid_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}
