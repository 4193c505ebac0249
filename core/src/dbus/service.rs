//! The service: a Manager object that lists disks, boot environments and the boot list,
//! plans and starts clones, and a Job object per clone with progress properties (with change
//! signals), Log and Finished signals and Cancel. Every call is authorised by polkit for the
//! calling bus name (a missing or failing polkit denies). Long work runs on its own thread
//! driving a library [`crate::job::Job`]; a task mirrors its progress onto the bus a few
//! times a second. A job belongs to the service, not to the caller: it goes on when the
//! client disconnects. One job per disk at a time.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::wire::{OwnedObjectPath, OwnedVariant};
use zbus::{Connection, ObjectServer};
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use super::{
    BootEntryInfo, BootEnvInfo, DbusError, DiskInfo, ACTION_BOOTLIST, ACTION_CLONE, ACTION_MANAGE, ACTION_READ,
    JOBS_PATH, MANAGER_PATH,
};
use crate::job::{Event, Job, Level};
use crate::plan::{BootlistMode, Layout, Phases};
use crate::run::{self, CloneRequest};

type Result<T> = std::result::Result<T, DbusError>;

/// Where the service mounts clones while it builds them, one directory per job.
pub const MOUNT_ROOT: &str = "/run/altdisk/mnt";

/// Ask polkit whether the caller of this message may do `action`.
async fn authorize(conn: &Connection, hdr: &Header<'_>, action: &str) -> Result<()> {
    let subject = Subject::new_for_message_header(hdr)
        .map_err(|e| DbusError::AccessDenied(format!("{action}: the caller cannot be identified: {e}")))?;
    let authority = AuthorityProxy::new(conn)
        .await
        .map_err(|e| DbusError::AccessDenied(format!("{action}: polkit is not reachable: {e}")))?;
    let r = authority
        .check_authorization(&subject, action, &HashMap::new(), CheckAuthorizationFlags::ALLOW_USER_INTERACTION, "")
        .await
        .map_err(|e| DbusError::AccessDenied(format!("{action}: polkit did not answer: {e}")))?;
    if r.is_authorized {
        Ok(())
    } else {
        Err(DbusError::AccessDenied(format!("not authorized for {action}; ask an administrator")))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> crate::Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DbusError::Failed(format!("worker failed: {e}")))?
        .map_err(DbusError::from)
}

/// The current disks, as the service shows them.
pub fn disk_infos() -> crate::Result<Vec<DiskInfo>> {
    let disks = crate::discover::blockdev::list()?;
    let roles = crate::discover::roles::lspv()?;
    Ok(roles
        .into_iter()
        .map(|r| {
            let d = disks.iter().find(|d| d.path == r.path);
            DiskInfo {
                name: r.name,
                alias: r.alias,
                path: r.path.display().to_string(),
                model: r.model.unwrap_or_default(),
                serial: d.and_then(|d| d.serial.clone()).unwrap_or_default(),
                size: r.size,
                bus: d.and_then(|d| d.transport.clone()).unwrap_or_default(),
                removable: d.map(|d| d.removable).unwrap_or(false),
                role: r.role.to_string(),
                detail: r.detail,
            }
        })
        .collect())
}

fn boot_envs() -> crate::Result<Vec<BootEnvInfo>> {
    let rows = crate::discover::roles::lspv()?;
    let mut out: Vec<(Option<uuid::Uuid>, BootEnvInfo)> = Vec::new();
    for r in rows {
        let (id, info) = match (&r.bootenv, r.role.as_str()) {
            (Some(e), _) => (
                Some(e.id),
                BootEnvInfo {
                    name: if r.role == crate::discover::roles::Role::Rootvg { "rootvg".into() } else { e.name.clone() },
                    disks: vec![r.name.clone()],
                    state: e.state.describe().into(),
                    source: e.source.hostname.clone(),
                    created: e.created.clone(),
                },
            ),
            (None, "rootvg" | "old_rootvg") => (
                None,
                BootEnvInfo {
                    name: r.role.to_string(),
                    disks: vec![r.name.clone()],
                    state: r.detail.clone(),
                    source: String::new(),
                    created: String::new(),
                },
            ),
            _ => continue,
        };
        match out.iter_mut().find(|(i, _)| id.is_some() && *i == id) {
            Some((_, e)) => e.disks.push(r.name),
            None => out.push((id, info)),
        }
    }
    Ok(out.into_iter().map(|(_, e)| e).collect())
}

fn boot_list() -> crate::Result<Vec<BootEntryInfo>> {
    let m = crate::boot::efi::BootManager { vars: crate::boot::efi::Efivarfs::system()? };
    Ok(crate::boot::bootlist::show(&m)?
        .into_iter()
        .map(|e| BootEntryInfo {
            number: e.number,
            description: e.description,
            disk: e.disk.unwrap_or_default(),
            system: e.system.unwrap_or_default(),
            active: e.active,
            in_order: e.in_order,
            next: e.next,
            current: e.current,
        })
        .collect())
}

fn opt_str(o: &HashMap<String, OwnedVariant>, k: &str) -> Result<Option<String>> {
    o.get(k)
        .map(|v| {
            String::try_from(v.clone()).map_err(|_| DbusError::InvalidArgs(format!("option {k} must be a string")))
        })
        .transpose()
}

fn opt_bool(o: &HashMap<String, OwnedVariant>, k: &str) -> Result<bool> {
    Ok(o.get(k)
        .map(|v| bool::try_from(v.clone()).map_err(|_| DbusError::InvalidArgs(format!("option {k} must be a boolean"))))
        .transpose()?
        .unwrap_or(false))
}

/// Turn the options of Plan and Clone into a request. Keys: targets (as), source (s),
/// phases (s), exclude (s, a path), layout (s, TOML text), convert (b), skip_space_check (b),
/// skip_boot_checks (b), force (b), size (t), bootlist (s: first, leave, trial).
pub fn request_from(o: &HashMap<String, OwnedVariant>, mount_at: PathBuf) -> Result<CloneRequest> {
    const KNOWN: &[&str] = &[
        "targets",
        "source",
        "phases",
        "exclude",
        "layout",
        "convert",
        "skip_space_check",
        "skip_boot_checks",
        "force",
        "size",
        "bootlist",
    ];
    if let Some(k) = o.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(DbusError::InvalidArgs(format!("unknown option {k}; known: {}", KNOWN.join(", "))));
    }
    let targets: Vec<String> = match o.get("targets") {
        Some(v) => Vec::<String>::try_from(v.clone())
            .map_err(|_| DbusError::InvalidArgs("option targets must be an array of strings".into()))?,
        None => return Err(DbusError::InvalidArgs("option targets is required: the disks to clone onto".into())),
    };
    let phases = Phases::parse(&opt_str(o, "phases")?.unwrap_or_else(|| "all".into()))?;
    let layout = match opt_str(o, "layout")? {
        Some(t) => Some(Layout::parse(&t, "given over D-Bus")?),
        None => None,
    };
    let size = o
        .get("size")
        .map(|v| u64::try_from(v.clone()).map_err(|_| DbusError::InvalidArgs("option size must be a u64".into())))
        .transpose()?;
    let bootlist = match opt_str(o, "bootlist")?.as_deref() {
        None | Some("first") => BootlistMode::First,
        Some("leave") => BootlistMode::Leave,
        Some("trial") => BootlistMode::Trial,
        Some(x) => return Err(DbusError::InvalidArgs(format!("bootlist `{x}`: use first, leave or trial"))),
    };
    Ok(CloneRequest {
        targets,
        source_dir: opt_str(o, "source")?.map(PathBuf::from),
        phases,
        layout,
        exclude: opt_str(o, "exclude")?.map(PathBuf::from),
        convert_ext: opt_bool(o, "convert")?,
        skip_space_check: opt_bool(o, "skip_space_check")?,
        skip_boot_checks: opt_bool(o, "skip_boot_checks")?,
        force: opt_bool(o, "force")?,
        image_size: size,
        mount_at,
        name: crate::ALTINST_ROOTVG.into(),
        threads: 0,
        bootlist,
        customize: Default::default(),
    })
}

/// What a job does.
enum Work {
    New(Box<run::Prepared>),
    Resume(Box<CloneRequest>),
}

struct Shared {
    busy: Mutex<HashSet<PathBuf>>,
    next_job: AtomicU64,
    mount_root: PathBuf,
}

pub struct Manager {
    shared: Arc<Shared>,
}

impl Manager {
    pub fn new(mount_root: PathBuf) -> Manager {
        Manager {
            shared: Arc::new(Shared { busy: Mutex::new(HashSet::new()), next_job: AtomicU64::new(1), mount_root }),
        }
    }
}

#[zbus::interface(name = "org.altdisk.AltDisk1.Manager")]
impl Manager {
    /// Major.minor of this API.
    #[zbus(property)]
    fn version(&self) -> String {
        "1.0".into()
    }

    async fn disks(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<DiskInfo>> {
        authorize(conn, &hdr, ACTION_READ).await?;
        blocking(disk_infos).await
    }

    async fn boot_environments(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<BootEnvInfo>> {
        authorize(conn, &hdr, ACTION_READ).await?;
        blocking(boot_envs).await
    }

    async fn boot_list(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<BootEntryInfo>> {
        authorize(conn, &hdr, ACTION_READ).await?;
        blocking(boot_list).await
    }

    async fn set_boot_list(
        &self,
        disks: Vec<String>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        authorize(conn, &hdr, ACTION_BOOTLIST).await?;
        blocking(move || {
            let m = crate::boot::efi::BootManager { vars: crate::boot::efi::Efivarfs::system()? };
            crate::boot::bootlist::set(&m, &disks).map(|_| ())
        })
        .await
    }

    async fn set_boot_next(
        &self,
        disk: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        authorize(conn, &hdr, ACTION_BOOTLIST).await?;
        blocking(move || {
            let m = crate::boot::efi::BootManager { vars: crate::boot::efi::Efivarfs::system()? };
            crate::boot::bootlist::set_next(&m, &disk).map(|_| ())
        })
        .await
    }

    /// The plan for a clone with these options, as JSON (apiVersion altdisk.io/v1); writes nothing.
    async fn plan(
        &self,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        authorize(conn, &hdr, ACTION_READ).await?;
        let req = request_from(&options, self.shared.mount_root.join("plan"))?;
        let prep = blocking(move || run::plan(&req)).await?;
        serde_json::to_string_pretty(&prep.plan).map_err(|e| DbusError::Failed(e.to_string()))
    }

    /// Start a clone; returns the job object that reports on it.
    async fn clone(
        &self,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<OwnedObjectPath> {
        authorize(conn, &hdr, ACTION_CLONE).await?;
        let n = self.shared.next_job.fetch_add(1, Ordering::SeqCst);
        let mount_at = self.shared.mount_root.join(format!("job{n}"));
        let req = request_from(&options, mount_at.clone())?;
        let _ = std::fs::create_dir_all(&mount_at);
        // A new clone is planned and checked before the job exists; resuming phases 2 and 3
        // (no phase 1) works on the clone the targets hold.
        let work = if req.phases.has(1) {
            let r2 = req.clone();
            match blocking(move || run::prepare(&r2)).await {
                Ok(p) => Work::New(Box::new(p)),
                Err(e) => {
                    let _ = std::fs::remove_dir(&mount_at);
                    return Err(e);
                }
            }
        } else {
            Work::Resume(Box::new(req.clone()))
        };
        let (disks, names): (Vec<PathBuf>, Vec<String>) = match &work {
            Work::New(p) => p.plan.targets.iter().map(|t| (t.path.clone(), t.name.clone())).unzip(),
            Work::Resume(r) => r.targets.iter().map(|t| (PathBuf::from(t), t.clone())).unzip(),
        };
        {
            let mut busy = self.shared.busy.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(d) = disks.iter().find(|d| busy.contains(*d)) {
                return Err(DbusError::Busy(format!(
                    "{} is being written by another job; wait for it to finish",
                    d.display()
                )));
            }
            busy.extend(disks.iter().cloned());
        }
        let path = format!("{JOBS_PATH}/{n}");
        let job = Job::new();
        let obj = JobObject {
            job: job.clone(),
            phase: "validating".into(),
            state: "running".into(),
            bytes_done: 0,
            bytes_total: 0,
            files_done: 0,
            files_total: 0,
            rate: 0,
            targets: names,
            error: String::new(),
        };
        server.at(path.as_str(), obj).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
        job.on_event(move |e| {
            if let Event::Log { level, message } = e {
                let l = match level {
                    Level::Info => "info",
                    Level::Warning => "warning",
                };
                let _ = tx.send((l.to_string(), message.clone()));
            }
        });
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        let worker_job = job.clone();
        std::thread::spawn(move || {
            let r = match work {
                Work::New(prep) => run::execute(*prep, &worker_job),
                Work::Resume(req) => run::resume(&req, &worker_job),
            };
            let _ = done_tx.send(r);
        });
        let iface = server.interface::<_, JobObject>(path.as_str()).await?;
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let result = loop {
                tokio::select! {
                    Some((level, msg)) = rx.recv() => {
                        let _ = JobObject::log(iface.signal_emitter(), &level, &msg).await;
                    }
                    _ = tick.tick() => {
                        mirror(&iface).await;
                    }
                    r = &mut done_rx => break r,
                }
            };
            while let Ok((level, msg)) = rx.try_recv() {
                let _ = JobObject::log(iface.signal_emitter(), &level, &msg).await;
            }
            mirror(&iface).await;
            let (ok, err, state) = match result {
                Ok(Ok(_)) => (true, String::new(), "succeeded"),
                Ok(Err(crate::Error::Cancelled)) => (false, crate::Error::Cancelled.to_string(), "cancelled"),
                Ok(Err(e)) => (false, e.to_string(), "failed"),
                Err(_) => (false, "the worker stopped without a result".to_string(), "failed"),
            };
            {
                let mut j = iface.get_mut().await;
                j.state = state.into();
                j.error = err.clone();
                let _ = j.state_changed(iface.signal_emitter()).await;
                let _ = j.error_changed(iface.signal_emitter()).await;
            }
            let _ = JobObject::finished(iface.signal_emitter(), ok, &err).await;
            let mut busy = shared.busy.lock().unwrap_or_else(|p| p.into_inner());
            for d in &disks {
                busy.remove(d);
            }
        });
        OwnedObjectPath::try_from(path).map_err(|e| DbusError::Failed(e.to_string()))
    }

    /// Mount the alternate system on `disk` (never the running one); returns where.
    async fn wake(
        &self,
        disk: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        authorize(conn, &hdr, ACTION_MANAGE).await?;
        let at = self.shared.mount_root.join("awake");
        blocking(move || {
            let sys = crate::systems::ops::find_by_disk(&disk)?;
            crate::systems::ops::wake(&sys, &at)?;
            Ok(at.display().to_string())
        })
        .await
    }

    async fn sleep(
        &self,
        mount_point: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        authorize(conn, &hdr, ACTION_MANAGE).await?;
        blocking(move || crate::systems::awake::sleep(Path::new(&mount_point)).map(|_| ())).await
    }

    /// Remove every alternate system of this name: boot entries, signatures; the disks are
    /// free afterwards. polkit's authorization is the confirmation.
    async fn remove(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        authorize(conn, &hdr, ACTION_MANAGE).await?;
        blocking(move || {
            let systems = crate::systems::ops::find_by_name(&name)?;
            if systems.is_empty() {
                return Err(crate::Error::not_found(
                    format!("alternate system {name}"),
                    "no disk holds one by that name",
                    "see Disks",
                ));
            }
            let job = Job::new();
            for s in &systems {
                crate::systems::ops::remove(s, &job)?;
            }
            Ok(())
        })
        .await
    }

    async fn rename(
        &self,
        disk: String,
        new_name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        authorize(conn, &hdr, ACTION_MANAGE).await?;
        blocking(move || crate::systems::ops::rename(&crate::systems::ops::find_by_disk(&disk)?, &new_name)).await
    }

    /// The disks changed (plugged, unplugged, repartitioned).
    #[zbus(signal)]
    async fn disks_changed(emitter: &SignalEmitter<'_>, disks: Vec<DiskInfo>) -> zbus::Result<()>;
}

/// Copy the library job's progress onto the bus object, signalling what changed.
async fn mirror(iface: &zbus::object_server::InterfaceRef<JobObject>) {
    let mut j = iface.get_mut().await;
    let p = j.job.snapshot();
    let e = iface.signal_emitter();
    let phase = serde_json::to_value(p.phase).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    if j.phase != phase {
        j.phase = phase;
        let _ = j.phase_changed(e).await;
    }
    macro_rules! sync {
        ($field:ident, $changed:ident, $v:expr) => {
            if j.$field != $v {
                j.$field = $v;
                let _ = j.$changed(e).await;
            }
        };
    }
    sync!(bytes_done, bytes_done_changed, p.bytes_done);
    sync!(bytes_total, bytes_total_changed, p.bytes_total);
    sync!(files_done, files_done_changed, p.files_done);
    sync!(files_total, files_total_changed, p.files_total);
    sync!(rate, rate_changed, p.rate);
}

pub struct JobObject {
    job: Job,
    phase: String,
    state: String,
    bytes_done: u64,
    bytes_total: u64,
    files_done: u64,
    files_total: u64,
    rate: u64,
    targets: Vec<String>,
    error: String,
}

#[zbus::interface(name = "org.altdisk.AltDisk1.Job")]
impl JobObject {
    /// Stop the job; the targets are left marked incomplete and nothing stays mounted.
    async fn cancel(&self, #[zbus(header)] hdr: Header<'_>, #[zbus(connection)] conn: &Connection) -> Result<()> {
        authorize(conn, &hdr, ACTION_CLONE).await?;
        self.job.cancel();
        Ok(())
    }

    #[zbus(property)]
    fn phase(&self) -> String {
        self.phase.clone()
    }
    /// running, succeeded, failed, cancelled.
    #[zbus(property)]
    fn state(&self) -> String {
        self.state.clone()
    }
    #[zbus(property)]
    fn bytes_done(&self) -> u64 {
        self.bytes_done
    }
    #[zbus(property)]
    fn bytes_total(&self) -> u64 {
        self.bytes_total
    }
    #[zbus(property)]
    fn files_done(&self) -> u64 {
        self.files_done
    }
    #[zbus(property)]
    fn files_total(&self) -> u64 {
        self.files_total
    }
    /// Bytes per second.
    #[zbus(property)]
    fn rate(&self) -> u64 {
        self.rate
    }
    #[zbus(property)]
    fn targets(&self) -> Vec<String> {
        self.targets.clone()
    }
    /// Why the job failed; empty while running or after success.
    #[zbus(property)]
    fn error(&self) -> String {
        self.error.clone()
    }

    #[zbus(signal)]
    async fn log(emitter: &SignalEmitter<'_>, level: &str, message: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn finished(emitter: &SignalEmitter<'_>, success: bool, error: &str) -> zbus::Result<()>;
}

/// A cheap fingerprint of the block devices: names and sizes from sysfs.
fn disks_fingerprint() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir("/sys/class/block")
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let size = std::fs::read_to_string(e.path().join("size")).unwrap_or_default();
                    (n, size.trim().to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Watch for disks coming and going and signal DisksChanged (within about a second).
pub async fn watch_disks(conn: Connection) {
    let mut last = disks_fingerprint();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let now = tokio::task::spawn_blocking(disks_fingerprint).await.unwrap_or_default();
        if now == last {
            continue;
        }
        last = now;
        let Ok(disks) = tokio::task::spawn_blocking(disk_infos)
            .await
            .unwrap_or_else(|e| Err(crate::Error::corrupt("disk scan", e.to_string())))
        else {
            continue;
        };
        if let Ok(em) = SignalEmitter::new(&conn, MANAGER_PATH) {
            let _ = Manager::disks_changed(&em, disks).await;
        }
    }
}

/// At start: a previous instance may have died mid-job. Unmount what it left under the
/// mount root; the targets' records already say incomplete (they only move on when a phase
/// finishes), and get a note saying why.
pub fn recover(mount_root: &Path) -> crate::Result<Vec<String>> {
    // What killed runs (of this service or of the command) left behind, by their journals.
    let mut notes = crate::write::journal::recover()?;
    let table = crate::discover::mounts::read()?;
    let mut left: Vec<&crate::discover::mounts::Mount> =
        table.iter().filter(|m| m.target.starts_with(mount_root)).collect();
    left.sort_by_key(|m| std::cmp::Reverse(m.target.components().count()));
    for m in left {
        crate::write::fs::unmount(&m.target)?;
        notes.push(format!("unmounted {} left by an interrupted job", m.target.display()));
    }
    for d in crate::discover::blockdev::list()? {
        // A disk another run holds is being written now: not interrupted.
        if crate::plan::lock::holder(&d.path).is_some() {
            continue;
        }
        if let Some(Ok(mut env)) = crate::discover::record::read(&d.path) {
            if env.state == crate::discover::record::State::Incomplete && env.note.is_none() {
                env.note = Some("interrupted: the altdisk service stopped during the run".into());
                crate::discover::record::update(&d.path, &env)?;
                notes.push(format!("{}: marked incomplete (interrupted run)", d.name));
            }
        }
    }
    Ok(notes)
}
