//! The GUI's only way to see or change anything: altdiskd over D-Bus, through the API crate's
//! proxies (every method allows interactive authorisation, so the desktop's polkit agent may
//! ask for a password). Calls are async functions the app turns into Tasks; signals are
//! streams the app turns into Subscriptions; nothing here blocks the UI thread.
//!
//! Errors become [`ApiError`]: the service's own one-line message with a kind a view acts on
//! (the service is not running, access was denied, a disk is gone, ...).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use altdisk_api::{
    BootEntryInfo, CloneOptions, DiskDetail, FoundSystem, JobInfo, JobProxy, ManagerProxy, PlanDetails, SystemInfo,
    BUS_NAME, JOB_IFACE, MANAGER_IFACE, MANAGER_PATH,
};
use iced::futures::channel::mpsc::Sender;
use iced::futures::{SinkExt, Stream, StreamExt};
use zbus::proxy::CacheProperties;

/// Which bus to talk on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bus {
    /// The system bus, where the installed service lives.
    System,
    /// The session bus (`altdiskd --sim FILE` without `--address` serves there).
    Session,
    /// A bus address (a private bus in tests: `unix:path=/tmp/x/bus.sock`).
    Address(String),
}

impl Bus {
    /// How the banner names it.
    pub fn describe(&self) -> String {
        match self {
            Bus::System => "the system bus".into(),
            Bus::Session => "the session bus".into(),
            Bus::Address(a) => format!("the bus at {a}"),
        }
    }
}

/// What went wrong, by what the user can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Nothing owns org.altdisk.AltDisk1: the service is not running or not installed.
    NotRunning,
    /// The bus itself cannot be reached.
    NoBus,
    /// polkit (or the bus policy) said no.
    AccessDenied,
    /// A disk, file or system named is not there (unplugged meanwhile, removed).
    NotFound,
    /// A job is already writing one of the disks.
    Busy,
    /// The service refused or failed: its message says why.
    Refused,
    /// The clone failed or was cancelled (a job's end, not a call's).
    JobFailed,
    /// A bad value the user gave (an option, a path).
    Invalid,
}

/// A call that failed: the kind, and the service's one-line message (what, why, what to do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into() }
    }

    fn connecting(bus: &Bus, e: zbus::Error) -> ApiError {
        ApiError::new(ErrorKind::NoBus, format!("cannot reach {}: {e}", bus.describe()))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<zbus::Error> for ApiError {
    fn from(e: zbus::Error) -> ApiError {
        use zbus::fdo::Error as Fdo;
        // The bus's own errors (org.freedesktop.DBus.Error.*) come as FDO errors.
        if let zbus::Error::FDO(f) = &e {
            return match &**f {
                Fdo::ServiceUnknown(m)
                | Fdo::NameHasNoOwner(m)
                | Fdo::NoReply(m)
                | Fdo::Disconnected(m)
                | Fdo::SpawnServiceNotFound(m)
                | Fdo::SpawnChildExited(m) => ApiError::new(ErrorKind::NotRunning, m.clone()),
                Fdo::AccessDenied(m) => {
                    ApiError::new(ErrorKind::AccessDenied, format!("the bus refused the call: {m}"))
                }
                Fdo::UnknownObject(m) | Fdo::UnknownMethod(m) => ApiError::new(ErrorKind::NotFound, m.clone()),
                other => ApiError::new(ErrorKind::Refused, other.to_string()),
            };
        }
        if matches!(e, zbus::Error::InputOutput(_)) {
            return ApiError::new(ErrorKind::NotRunning, format!("the connection to the service broke: {e}"));
        }
        use altdisk_api::Error as E;
        match E::from(e) {
            E::AccessDenied(m) => ApiError::new(ErrorKind::AccessDenied, m),
            E::NotFound(m) => ApiError::new(ErrorKind::NotFound, m),
            E::Busy(m) => ApiError::new(ErrorKind::Busy, m),
            E::InvalidArgs(m) => ApiError::new(ErrorKind::Invalid, m),
            E::Cancelled(m) => ApiError::new(ErrorKind::JobFailed, m),
            E::Refused(m) | E::TooSmall(m) | E::NotSupported(m) | E::Failed(m) => ApiError::new(ErrorKind::Refused, m),
            E::ZBus(e) => ApiError::new(ErrorKind::Refused, e.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, ApiError>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A connection to the service. Cheap to clone; equal (and hashed) by connection, so a
/// Subscription keyed on it lasts as long as the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    bus: Bus,
    conn: zbus::Connection,
    manager: ManagerProxy<'static>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({}, {:?})", self.inner.id, self.inner.bus)
    }
}

impl PartialEq for Client {
    fn eq(&self, other: &Client) -> bool {
        self.inner.id == other.inner.id
    }
}

impl Hash for Client {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.id.hash(state);
    }
}

/// What the windows show, read in one go.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub disks: Vec<DiskDetail>,
    pub systems: Vec<SystemInfo>,
    pub jobs: Vec<JobInfo>,
    /// uefi or bios.
    pub firmware: String,
    pub simulated: bool,
    pub version: String,
    /// The UEFI boot entries (empty on BIOS).
    pub boot: Vec<BootEntryInfo>,
}

impl Client {
    /// Connect to the bus. This does not need the service: a missing service shows up as
    /// [`ErrorKind::NotRunning`] on the first call, and the app follows it coming and going.
    pub async fn connect(bus: Bus) -> Result<Client> {
        let builder = match &bus {
            Bus::System => zbus::connection::Builder::system(),
            Bus::Session => zbus::connection::Builder::session(),
            Bus::Address(a) => zbus::connection::Builder::address(a.as_str()),
        };
        let conn = builder.build().await.map_err(|e| ApiError::connecting(&bus, e))?;
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| ApiError::connecting(&bus, e))?;
        Ok(Client { inner: Arc::new(Inner { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), bus, conn, manager }) })
    }

    pub fn bus(&self) -> &Bus {
        &self.inner.bus
    }

    fn m(&self) -> &ManagerProxy<'static> {
        &self.inner.manager
    }

    /// Everything the screens show, asked for at once.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let m = self.m();
        let (disks, systems, jobs, firmware, simulated, version) = iced::futures::join!(
            m.disk_details(),
            m.systems(),
            m.list_jobs(),
            m.firmware(),
            m.simulated(),
            m.version()
        );
        let firmware = firmware?;
        let boot = if firmware == altdisk_api::firmware::UEFI { self.boot_list().await? } else { Vec::new() };
        Ok(Snapshot {
            disks: disks?,
            systems: systems?,
            jobs: jobs?,
            firmware,
            simulated: simulated.unwrap_or(false),
            version: version.unwrap_or_default(),
            boot,
        })
    }

    pub async fn disks(&self) -> Result<Vec<DiskDetail>> {
        Ok(self.m().disk_details().await?)
    }

    pub async fn systems(&self) -> Result<Vec<SystemInfo>> {
        Ok(self.m().systems().await?)
    }

    pub async fn jobs(&self) -> Result<Vec<JobInfo>> {
        Ok(self.m().list_jobs().await?)
    }

    pub async fn boot_list(&self) -> Result<Vec<BootEntryInfo>> {
        Ok(self.m().boot_list().await?)
    }

    pub async fn plan(&self, o: CloneOptions) -> Result<PlanDetails> {
        Ok(self.m().plan_details_of(&o).await?)
    }

    /// Start a clone; the job's object path.
    pub async fn start_clone(&self, o: CloneOptions) -> Result<String> {
        Ok(self.m().start_clone(&o).await?.to_string())
    }

    pub async fn cancel(&self, job: String) -> Result<()> {
        Ok(self.job(&job).await?.cancel().await?)
    }

    pub async fn wake(&self, disk: String) -> Result<String> {
        Ok(self.m().wake(&disk).await?)
    }

    pub async fn sleep(&self, mount_point: String) -> Result<()> {
        Ok(self.m().sleep(&mount_point).await?)
    }

    pub async fn rename(&self, disk: String, name: String) -> Result<()> {
        Ok(self.m().rename(&disk, &name).await?)
    }

    pub async fn remove_system(&self, disk: String) -> Result<()> {
        Ok(self.m().remove_system(&disk).await?)
    }

    pub async fn trial_boot(&self, disk: String) -> Result<()> {
        Ok(self.m().trial_boot(&disk).await?)
    }

    pub async fn set_boot_list(&self, disks: Vec<String>) -> Result<()> {
        Ok(self.m().set_boot_list(disks).await?)
    }

    pub async fn set_boot_next(&self, disk: String) -> Result<()> {
        Ok(self.m().set_boot_next(&disk).await?)
    }

    /// Every system on every disk (the service looks into filesystems read-only: seconds).
    pub async fn find_systems(&self) -> Result<Vec<FoundSystem>> {
        Ok(self.m().find_systems().await?)
    }

    /// Make the system on `disk` the one that boots (`once`: the next boot only); what was
    /// done, in a line.
    pub async fn restore_system(&self, disk: String, once: bool) -> Result<String> {
        Ok(self.m().restore_system(&disk, once).await?)
    }

    /// Boot the system on `disk` now: the machine restarts (or kexecs) after the answer.
    pub async fn boot_now(&self, disk: String, kexec: bool) -> Result<String> {
        Ok(self.m().boot_now(&disk, kexec).await?)
    }

    /// Repair the boot of the system on `disk`; the job's object path.
    pub async fn repair_system(&self, disk: String) -> Result<String> {
        Ok(self.m().repair_system(&disk).await?.to_string())
    }

    async fn job(&self, path: &str) -> Result<JobProxy<'static>> {
        Ok(JobProxy::builder(&self.inner.conn)
            .path(path.to_string())
            .cache_properties(CacheProperties::No)
            .build()
            .await?)
    }

    /// Everything about a job now: its properties and its log so far.
    pub async fn job_snapshot(&self, path: &str) -> Result<JobSnapshot> {
        let props = self.properties(path).await?;
        let all =
            props.get_all(JOB_IFACE.try_into().expect("valid interface name")).await.map_err(zbus::Error::from)?;
        let mut s = JobSnapshot { path: path.to_string(), ..JobSnapshot::default() };
        for (k, v) in &all {
            s.apply(k, v);
        }
        s.log = self.job(path).await?.log_lines().await?;
        Ok(s)
    }

    async fn properties(&self, path: &str) -> Result<zbus::fdo::PropertiesProxy<'static>> {
        Ok(zbus::fdo::PropertiesProxy::builder(&self.inner.conn)
            .destination(BUS_NAME)
            .path(path.to_string())
            .cache_properties(CacheProperties::No)
            .build()
            .await?)
    }
}

/// A job as the progress screen draws it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobSnapshot {
    pub path: String,
    pub phase: String,
    pub state: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub rate: u64,
    pub targets: Vec<String>,
    pub error: String,
    pub current_path: String,
    pub steps: Vec<String>,
    pub kind: String,
    pub owner_uid: u32,
    pub started: String,
    pub mounted_at: String,
    /// (level, message)
    pub log: Vec<(String, String)>,
}

impl JobSnapshot {
    /// Take one property's new value (from GetAll or PropertiesChanged).
    pub fn apply(&mut self, name: &str, v: &zbus::Variant<'_>) {
        let num = || u64::try_from(v).unwrap_or(0);
        let text = || <&str>::try_from(v).map(str::to_string).unwrap_or_default();
        let list = || v.try_clone().ok().and_then(|v| <Vec<String>>::try_from(v).ok()).unwrap_or_default();
        match name {
            "Phase" => self.phase = text(),
            "State" => self.state = text(),
            "BytesDone" => self.bytes_done = num(),
            "BytesTotal" => self.bytes_total = num(),
            "FilesDone" => self.files_done = num(),
            "FilesTotal" => self.files_total = num(),
            "Rate" => self.rate = num(),
            "Targets" => self.targets = list(),
            "Error" => self.error = text(),
            "CurrentPath" => self.current_path = text(),
            "Steps" => self.steps = list(),
            "Kind" => self.kind = text(),
            "OwnerUid" => self.owner_uid = u32::try_from(v).unwrap_or(u32::MAX),
            "Started" => self.started = text(),
            "MountedAt" => self.mounted_at = text(),
            _ => {}
        }
    }

    pub fn finished(&self) -> bool {
        !self.state.is_empty() && self.state != "running"
    }
}

/// What the service says without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A disk was plugged, unplugged or changed: read the disks again.
    DisksChanged,
    /// Jobs came or went (the Jobs property changed).
    JobsChanged,
    /// The service left the bus (stopped, crashed).
    ServiceGone,
    /// The service is on the bus (again).
    ServiceBack,
}

/// The service's signals, for as long as the connection lasts.
pub fn events(client: &Client) -> impl Stream<Item = Event> + use<> {
    let client = client.clone();
    iced::stream::channel(32, async move |mut out: Sender<Event>| {
        if let Err(e) = follow_service(&client, &mut out).await {
            tracing::warn!("not following the service's signals: {e}");
        }
        // Park rather than end: iced would not start a finished subscription again, and a
        // broken connection shows up as errors on the next call anyway.
        std::future::pending::<()>().await;
    })
}

async fn follow_service(client: &Client, out: &mut Sender<Event>) -> Result<()> {
    let conn = &client.inner.conn;
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let mut owners = dbus.receive_name_owner_changed_with_args(&[(0, BUS_NAME)]).await?;
    let mut disks = client.m().receive_disks_changed().await?;
    let props = client.properties(MANAGER_PATH).await?;
    let mut manager_props = props.receive_properties_changed().await?;
    loop {
        let event = tokio::select! {
            o = owners.next() => {
                let Some(o) = o else { return Ok(()) };
                let Ok(args) = o.args() else { continue };
                if args.new_owner().is_some() { Event::ServiceBack } else { Event::ServiceGone }
            }
            d = disks.next() => {
                if d.is_none() { return Ok(()) }
                Event::DisksChanged
            }
            p = manager_props.next() => {
                let Some(p) = p else { return Ok(()) };
                let Ok(args) = p.args() else { continue };
                if args.interface_name().as_str() != MANAGER_IFACE || !args.changed_properties().contains_key("Jobs") {
                    continue;
                }
                Event::JobsChanged
            }
        };
        if out.send(event).await.is_err() {
            return Ok(());
        }
    }
}

/// What a followed job says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// Everything about it (sent first, and again after a reconnect).
    Snapshot(JobSnapshot),
    /// Some properties changed: (name, value) pairs applied in order.
    Changed(String, Vec<(String, ChangedValue)>),
    Log(String, String, String),
    Finished(String, bool, String),
    /// It cannot be followed (gone from the bus: its grace period ended, or the service
    /// stopped): the last state shown stays.
    Lost(String, ApiError),
}

/// A changed property's value, in a form messages can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedValue {
    Num(u64),
    Text(String),
    List(Vec<String>),
}

impl ChangedValue {
    fn of(v: &zbus::Variant<'_>) -> Option<ChangedValue> {
        use zbus::Variant as Value;
        match v {
            Value::U64(n) => Some(ChangedValue::Num(*n)),
            Value::U32(n) => Some(ChangedValue::Num(u64::from(*n))),
            Value::Str(s) => Some(ChangedValue::Text(s.to_string())),
            Value::Array(_) => v.try_clone().ok().and_then(|v| <Vec<String>>::try_from(v).ok()).map(ChangedValue::List),
            _ => None,
        }
    }

    pub fn to_value(&self) -> zbus::Variant<'_> {
        use zbus::Variant as Value;
        match self {
            ChangedValue::Num(n) => Value::U64(*n),
            ChangedValue::Text(s) => Value::from(s.as_str()),
            ChangedValue::List(l) => Value::from(l.clone()),
        }
    }
}

/// Follow the job at `path`: a snapshot first, then its changes, log lines and end.
pub fn job_events(client: &Client, path: &str) -> impl Stream<Item = JobEvent> + use<> {
    let client = client.clone();
    let path = path.to_string();
    iced::stream::channel(64, async move |mut out: Sender<JobEvent>| {
        if let Err(e) = follow_job(&client, &path, &mut out).await {
            let _ = out.send(JobEvent::Lost(path.clone(), e)).await;
        }
        std::future::pending::<()>().await;
    })
}

async fn follow_job(client: &Client, path: &str, out: &mut Sender<JobEvent>) -> Result<()> {
    // Subscribe first, then read: nothing that happens in between is missed.
    let props = client.properties(path).await?;
    let mut changes = props.receive_properties_changed().await?;
    let job = client.job(path).await?;
    let mut log = job.receive_log().await?;
    let mut finished = job.receive_finished().await?;
    let dbus = zbus::fdo::DBusProxy::new(&client.inner.conn).await?;
    let mut owners = dbus.receive_name_owner_changed_with_args(&[(0, BUS_NAME)]).await?;
    let snapshot = client.job_snapshot(path).await?;
    let done = snapshot.finished();
    out.send(JobEvent::Snapshot(snapshot)).await.ok();
    if done {
        return Ok(());
    }
    let p = path.to_string();
    loop {
        // Biased: what came before the end (the last progress, the last log lines) is taken
        // before the end itself.
        let event = tokio::select! {
            biased;
            c = changes.next() => {
                let Some(c) = c else { break };
                let Ok(args) = c.args() else { continue };
                if args.interface_name().as_str() != JOB_IFACE {
                    continue;
                }
                let mut changed: Vec<(String, ChangedValue)> = args
                    .changed_properties()
                    .iter()
                    .filter_map(|(k, v)| ChangedValue::of(v).map(|v| (k.to_string(), v)))
                    .collect();
                changed.sort_by(|a, b| a.0.cmp(&b.0));
                JobEvent::Changed(p.clone(), changed)
            }
            l = log.next() => {
                let Some(l) = l else { break };
                let Ok(a) = l.args() else { continue };
                JobEvent::Log(p.clone(), a.level.to_string(), a.message.to_string())
            }
            f = finished.next() => {
                let Some(f) = f else { break };
                let Ok(a) = f.args() else { continue };
                let e = JobEvent::Finished(p.clone(), a.success, a.error.to_string());
                out.send(e).await.ok();
                // The final figures and log, as the service has them now.
                if let Ok(s) = client.job_snapshot(path).await {
                    out.send(JobEvent::Snapshot(s)).await.ok();
                }
                return Ok(());
            }
            o = owners.next() => {
                match o.as_ref().and_then(|o| o.args().ok()) {
                    Some(a) if a.new_owner().is_some() => continue,
                    _ => return Err(ApiError::new(ErrorKind::NotRunning, "altdiskd left the bus while following the job")),
                }
            }
        };
        if out.send(event).await.is_err() {
            return Ok(());
        }
    }
    Err(ApiError::new(ErrorKind::NotFound, format!("job {path} is gone from the bus")))
}
