//! The service: a Manager object that lists disks, systems and the boot list, plans and
//! starts clones, finds the systems on the disks and restores, boots or repairs one (1.2),
//! and a Job object per clone or repair with progress properties (with change signals), Log
//! and Finished signals and Cancel. Handlers are thin: authorise, convert the options
//! ([`CloneOptions::from_dict`]), call the [`Engine`], convert back.
//!
//! Every method call is authorised by polkit for the calling bus name, interactively only
//! when the call carries ALLOW_INTERACTIVE_AUTH (a missing or failing polkit denies); a
//! simulated engine decides itself. Long work runs on its own thread driving a library
//! [`crate::job::Job`]; a task mirrors its progress onto the bus a few times a second. A job
//! belongs to the service, not to its caller: it goes on when the client disconnects, any
//! client finds it (`Jobs`, `ListJobs`), and its object stays for a grace period after it
//! finished so late clients can read the result. One job per device at a time: two names of
//! one device (a by-id link, an alias, a loop device and its backing file) collide (Busy).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use altdisk_api::{
    self as api, actions, BootEntryInfo, BootEnvInfo, CloneOptions, DiskDetail, DiskInfo, FoundSystem, JobInfo,
    PlanDetails, SystemInfo, VerifyOptions, JOBS_PATH, MANAGER_PATH,
};
use zbus::message::{Flags, Header};
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::wire::{OwnedObjectPath, OwnedVariant};
use zbus::{Connection, ObjectServer};
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use super::engine::{collide, DevKey, Engine, Outcome, Work, Writes};
use super::DbusError;
use crate::job::{Event, Job, Level};

type Result<T> = std::result::Result<T, DbusError>;

/// Where the service mounts clones while it builds them, one directory per job.
pub const MOUNT_ROOT: &str = "/run/altdisk/mnt";
/// How long a finished job's object stays on the bus.
pub const JOB_GRACE: Duration = Duration::from_secs(600);
/// Log lines a job keeps for clients that come late.
const LOG_KEEP: usize = 5000;

/// How the service runs.
pub struct Config {
    pub mount_root: PathBuf,
    /// How long a finished job's object stays (tests make it short).
    pub job_grace: Duration,
}

struct JobEntry {
    path: OwnedObjectPath,
    kind: &'static str,
    targets: Vec<String>,
    owner_uid: u32,
    owner: String,
    started: String,
}

struct Shared {
    engine: Arc<dyn Engine>,
    /// The devices each running job writes, by job number.
    busy: Mutex<Vec<(u64, Vec<DevKey>)>>,
    jobs: Mutex<BTreeMap<u64, JobEntry>>,
    next_job: AtomicU64,
    config: Config,
}

impl Shared {
    fn busy_keys(&self) -> Vec<DevKey> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).iter().flat_map(|(_, k)| k.clone()).collect()
    }

    fn release(&self, n: u64) {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).retain(|(j, _)| *j != n);
    }

    /// Job `n` writes these devices from now on; Busy when another job writes one of them.
    fn claim(&self, n: u64, keys: &Writes) -> Result<()> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        for (name, k) in keys {
            if let Some((other, _)) = busy.iter().find(|(_, b)| collide(k, b)) {
                return Err(DbusError::Busy(format!(
                    "{name} is being written by job {JOBS_PATH}/{other}; wait for it to finish, or follow it (ListJobs)"
                )));
            }
        }
        busy.push((n, keys.iter().flat_map(|(_, k)| k.clone()).collect()));
        Ok(())
    }

    /// Job `n` did not start: its devices are free again, its directory goes.
    fn unclaim(&self, n: u64, mount_at: &Path) {
        self.release(n);
        if !self.engine.simulated() {
            let _ = std::fs::remove_dir(mount_at);
        }
    }

    /// The directory job `n` mounts in (made here on a real machine).
    fn job_dir(&self, n: u64) -> PathBuf {
        let at = self.config.mount_root.join(format!("job{n}"));
        if !self.engine.simulated() {
            let _ = std::fs::create_dir_all(&at);
        }
        at
    }

    /// The running job writing one of these devices, if any.
    fn writer(&self, keys: &Writes) -> Option<(String, u64)> {
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().find_map(|(name, k)| busy.iter().find(|(_, b)| collide(k, b)).map(|(j, _)| (name.clone(), *j)))
    }
}

pub struct Manager {
    shared: Arc<Shared>,
}

impl Manager {
    pub fn new(engine: Arc<dyn Engine>, config: Config) -> Manager {
        Manager {
            shared: Arc::new(Shared {
                engine,
                busy: Mutex::new(Vec::new()),
                jobs: Mutex::new(BTreeMap::new()),
                next_job: AtomicU64::new(1),
                config,
            }),
        }
    }

    /// Ask polkit (or the simulated engine) whether the caller of this message may do `action`.
    async fn authorize(&self, conn: &Connection, hdr: &Header<'_>, action: &str) -> Result<()> {
        authorize(&*self.shared.engine, conn, hdr, action).await
    }

    /// Run an engine call off the executor.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Engine) -> crate::Result<T> + Send + 'static,
    ) -> Result<T> {
        let e = self.shared.engine.clone();
        blocking(move || f(&*e)).await
    }
}

async fn authorize(engine: &dyn Engine, conn: &Connection, hdr: &Header<'_>, action: &str) -> Result<()> {
    if let Some(allowed) = engine.local_authorization(action) {
        return if allowed {
            Ok(())
        } else {
            Err(DbusError::AccessDenied(format!("not authorized for {action}: the simulation denies it (sim file)")))
        };
    }
    let interactive = hdr.primary().flags().contains(Flags::ALLOW_INTERACTIVE_AUTH);
    let subject = Subject::new_for_message_header(hdr)
        .map_err(|e| DbusError::AccessDenied(format!("{action}: the caller cannot be identified: {e}")))?;
    let authority = AuthorityProxy::new(conn)
        .await
        .map_err(|e| DbusError::AccessDenied(format!("{action}: polkit is not reachable: {e}")))?;
    let flags =
        if interactive { CheckAuthorizationFlags::ALLOW_USER_INTERACTION } else { CheckAuthorizationFlags::empty() };
    let r = authority
        .check_authorization(&subject, action, &HashMap::new(), flags, "")
        .await
        .map_err(|e| DbusError::AccessDenied(format!("{action}: polkit did not answer: {e}")))?;
    if r.is_authorized {
        // polkit judged a bus name: a caller that left meanwhile (its name may be taken by
        // someone else next) gets nothing done on its behalf.
        let sender = hdr.sender().map(|s| s.to_owned());
        let here = match sender {
            Some(name) => zbus::fdo::DBusProxy::new(conn)
                .await
                .map_err(|e| DbusError::AccessDenied(format!("{action}: the bus does not answer: {e}")))?
                .name_has_owner(name.into())
                .await
                .unwrap_or(false),
            None => false,
        };
        if !here {
            return Err(DbusError::AccessDenied(format!("{action}: the caller left the bus before it was authorized")));
        }
        Ok(())
    } else if r.is_challenge && !interactive {
        Err(DbusError::AccessDenied(format!(
            "{action} needs authentication; call again allowing interactive authorization (as the altdisk GUI does)"
        )))
    } else {
        Err(DbusError::AccessDenied(format!("not authorized for {action}; ask an administrator")))
    }
}

/// Reading a property is reading: the same check as the read methods, without asking the
/// user. `hdr` is None when the service itself reads the value (to signal a change).
async fn may_read(engine: &dyn Engine, conn: &Connection, hdr: Option<Header<'_>>) -> zbus::fdo::Result<()> {
    let Some(hdr) = hdr else { return Ok(()) };
    authorize(engine, conn, &hdr, actions::READ).await.map_err(|e| zbus::fdo::Error::AccessDenied(e.to_string()))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> crate::Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DbusError::Failed(format!("worker failed: {e}")))?
        .map_err(DbusError::from)
}

fn options(d: HashMap<String, OwnedVariant>) -> Result<CloneOptions> {
    let o = CloneOptions::from_dict(d)?;
    o.validate()?;
    Ok(o)
}

#[zbus::interface(name = "org.altdisk.AltDisk1.Manager")]
impl Manager {
    /// Major.minor of this API.
    #[zbus(property)]
    async fn version(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        may_read(&*self.shared.engine, conn, hdr).await?;
        Ok(api::API_VERSION.into())
    }

    async fn disks(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<DiskInfo>> {
        self.authorize(conn, &hdr, actions::READ).await?;
        self.call(|e| e.disks()).await
    }

    async fn boot_environments(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<BootEnvInfo>> {
        self.authorize(conn, &hdr, actions::READ).await?;
        self.call(|e| e.boot_environments()).await
    }

    async fn boot_list(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<BootEntryInfo>> {
        self.authorize(conn, &hdr, actions::READ).await?;
        self.call(|e| e.boot_list()).await
    }

    /// These disks first in the UEFI boot order, every other entry after them.
    async fn set_boot_list(
        &self,
        disks: Vec<String>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        self.authorize(conn, &hdr, actions::BOOTLIST).await?;
        self.call(move |e| e.set_boot_list(&disks)).await
    }

    /// Boot that disk once.
    async fn set_boot_next(
        &self,
        disk: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        self.authorize(conn, &hdr, actions::BOOTLIST).await?;
        self.call(move |e| e.set_boot_next(&disk)).await
    }

    /// The plan for a clone with these options, as JSON (apiVersion altdisk.io/v1); writes nothing.
    async fn plan(
        &self,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        self.authorize(conn, &hdr, actions::READ).await?;
        let o = self::options(options)?;
        let at = self.shared.config.mount_root.join("plan");
        self.call(move |e| e.plan(&o, &at)).await
    }

    /// Start a clone; returns the job object that reports on it.
    async fn clone(
        &self,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<OwnedObjectPath> {
        self.authorize(conn, &hdr, actions::CLONE).await?;
        let o = self::options(options)?;
        let o2 = o.clone();
        let keys = self.call(move |e| e.target_keys(&o2)).await?;
        let n = self.shared.next_job.fetch_add(1, Ordering::SeqCst);
        self.shared.claim(n, &keys)?;
        let mount_at = self.shared.job_dir(n);
        let (o2, at) = (o.clone(), mount_at.clone());
        let work = match self.call(move |e| e.prepare(&o2, &at)).await {
            Ok(w) => w,
            Err(e) => {
                self.shared.unclaim(n, &mount_at);
                return Err(e);
            }
        };
        let steps = o.steps().iter().map(|s| s.as_str().to_string()).collect();
        launch(&self.shared, n, mount_at, work, o.targets.clone(), steps, conn, &hdr, server).await
    }

    /// Compare the clone on `target` with its source (the running system, `source`, or the
    /// system `against`): a job whose `Report` holds what was found. Nothing is written.
    async fn verify(
        &self,
        target: String,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<OwnedObjectPath> {
        self.authorize(conn, &hdr, actions::MANAGE).await?;
        let o = VerifyOptions::from_dict(options).map_err(|e| DbusError::InvalidArgs(e.to_string()))?;
        let t = target.clone();
        let keys = self.call(move |e| e.verify_keys(&t)).await?;
        let n = self.shared.next_job.fetch_add(1, Ordering::SeqCst);
        self.shared.claim(n, &keys)?;
        let mount_at = self.shared.job_dir(n);
        let t = target.clone();
        let work = match self.call(move |e| e.prepare_verify(&t, &o)).await {
            Ok(w) => w,
            Err(e) => {
                self.shared.unclaim(n, &mount_at);
                return Err(e);
            }
        };
        let steps = [api::JobPhase::Validating, api::JobPhase::Copying, api::JobPhase::Done]
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        launch(&self.shared, n, mount_at, work, vec![target], steps, conn, &hdr, server).await
    }

    /// Mount the alternate system on `disk` (never the running one); returns where.
    async fn wake(
        &self,
        disk: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        self.authorize(conn, &hdr, actions::MANAGE).await?;
        let at = self.shared.config.mount_root.join("awake");
        self.call(move |e| e.wake(&disk, &at)).await
    }

    async fn sleep(
        &self,
        mount_point: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        self.authorize(conn, &hdr, actions::MANAGE).await?;
        self.call(move |e| e.sleep(&mount_point)).await
    }

    /// Remove every alternate system of this name: boot entries, signatures; the disks are
    /// free afterwards. polkit's authorization is the confirmation.
    async fn remove(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        self.authorize(conn, &hdr, actions::MANAGE).await?;
        self.call(move |e| e.remove(&name)).await
    }

    async fn rename(
        &self,
        disk: String,
        new_name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        self.authorize(conn, &hdr, actions::MANAGE).await?;
        self.call(move |e| e.rename(&disk, &new_name)).await
    }

    /// The disks changed (plugged, unplugged, repartitioned).
    #[zbus(signal)]
    async fn disks_changed(emitter: &SignalEmitter<'_>, disks: Vec<DiskInfo>) -> zbus::Result<()>;

    // API 1.1 from here on.

    /// Every disk with its partitions, what it holds, and whether a clone may go there.
    async fn disk_details(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<DiskDetail>> {
        self.authorize(conn, &hdr, actions::READ).await?;
        let busy = self.shared.busy_keys();
        self.call(move |e| e.disk_details(&busy)).await
    }

    /// The systems altdisk knows: the running one, its source, the alternate systems.
    async fn systems(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<SystemInfo>> {
        self.authorize(conn, &hdr, actions::READ).await?;
        self.call(|e| e.systems()).await
    }

    /// The plan for a clone with these options, drawable: each target before and after,
    /// what is erased, the text and the JSON. Writes nothing.
    async fn plan_details(
        &self,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<PlanDetails> {
        self.authorize(conn, &hdr, actions::READ).await?;
        let o = self::options(options)?;
        let at = self.shared.config.mount_root.join("plan");
        let busy = self.shared.busy_keys();
        self.call(move |e| e.plan_details(&o, &at, &busy)).await
    }

    /// The jobs on the bus: running ones and finished ones within their grace period.
    async fn list_jobs(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<Vec<JobInfo>> {
        self.authorize(conn, &hdr, actions::READ).await?;
        let entries: Vec<JobInfo> = self
            .shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|j| JobInfo {
                path: j.path.clone(),
                kind: j.kind.into(),
                targets: j.targets.clone(),
                phase: String::new(),
                state: String::new(),
                owner_uid: j.owner_uid,
                owner: j.owner.clone(),
                started: j.started.clone(),
            })
            .collect();
        let mut out = Vec::new();
        for mut j in entries {
            if let Ok(iface) = server.interface::<_, JobObject>(&j.path).await {
                let o = iface.get().await;
                j.phase = o.phase.clone();
                j.state = o.state.clone();
                out.push(j);
            }
        }
        Ok(out)
    }

    /// Boot the alternate system on `disk` once; it becomes the default when it came up
    /// healthy (UEFI).
    async fn trial_boot(
        &self,
        disk: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        self.authorize(conn, &hdr, actions::BOOTLIST).await?;
        self.call(move |e| e.trial_boot(&disk)).await
    }

    /// Remove the alternate system whose record is on `disk` (all its disks).
    async fn remove_system(
        &self,
        disk: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        self.authorize(conn, &hdr, actions::MANAGE).await?;
        self.call(move |e| e.remove_system(&disk)).await
    }

    /// The job objects on the bus (changes are signalled).
    #[zbus(property)]
    async fn jobs(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<Vec<OwnedObjectPath>> {
        may_read(&*self.shared.engine, conn, hdr).await?;
        Ok(self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner()).values().map(|j| j.path.clone()).collect())
    }

    /// uefi or bios.
    #[zbus(property)]
    async fn firmware(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        may_read(&*self.shared.engine, conn, hdr).await?;
        Ok(self.shared.engine.firmware().into())
    }

    /// The service serves simulated disks (altdiskd --sim).
    #[zbus(property)]
    async fn simulated(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<bool> {
        may_read(&*self.shared.engine, conn, hdr).await?;
        Ok(self.shared.engine.simulated())
    }

    // API 1.2 from here on: the rescue actions.

    /// Every system on every disk: the running one, those altdisk made (by their records),
    /// other Linux roots, each with its OS and kernels. Filesystems are looked into read-only;
    /// nothing of a disk a job writes is mounted. Under the manage action, not read: looking
    /// mounts filesystems (read-only) that an unprivileged caller could not mount itself.
    async fn find_systems(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<FoundSystem>> {
        self.authorize(conn, &hdr, actions::MANAGE).await?;
        let busy = self.shared.busy_keys();
        self.call(move |e| e.find_systems(&busy)).await
    }

    /// Make the system found on `disk` the one that boots: its UEFI entry (rebuilt from its
    /// ESP when the firmware lost it) first in the boot order, or `once`: BootNext. Returns
    /// what was done, in a line.
    async fn restore_system(
        &self,
        disk: String,
        once: bool,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        self.authorize(conn, &hdr, actions::BOOTLIST).await?;
        self.refuse_written(&disk).await?;
        self.call(move |e| e.restore(&disk, once)).await
    }

    /// Boot the system found on `disk` now, leaving the boot order as it is: BootNext and a
    /// restart, or `kexec` (also where the firmware cannot be told: BIOS). Refused while a job
    /// runs: a restart would cut it off.
    async fn boot_now(
        &self,
        disk: String,
        kexec: bool,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        self.authorize(conn, &hdr, actions::BOOTLIST).await?;
        let running: Vec<u64> =
            self.shared.busy.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(n, _)| *n).collect();
        if let Some(n) = running.first() {
            return Err(DbusError::Busy(format!(
                "booting the system on {disk} now: job {JOBS_PATH}/{n} is running and a restart would cut it off; wait for it to finish (or cancel it), then boot"
            )));
        }
        self.call(move |e| e.boot_now(&disk, kexec)).await
    }

    /// Run phase 3 again on the system found on `disk` (not the running one): its initramfs,
    /// its boot loader, its boot entry (put first in the UEFI boot order). Returns its job.
    async fn repair_system(
        &self,
        disk: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<OwnedObjectPath> {
        self.authorize(conn, &hdr, actions::MANAGE).await?;
        self.refuse_written(&disk).await?;
        let n = self.shared.next_job.fetch_add(1, Ordering::SeqCst);
        let mount_at = self.shared.job_dir(n);
        let at = mount_at.clone();
        let (keys, work) = match self.call(move |e| e.prepare_repair(&disk, &at)).await {
            Ok(r) => r,
            Err(e) => {
                self.shared.unclaim(n, &mount_at);
                return Err(e);
            }
        };
        if let Err(e) = self.shared.claim(n, &keys) {
            self.shared.unclaim(n, &mount_at);
            return Err(e);
        }
        let targets = keys.iter().map(|(name, _)| name.clone()).collect();
        let steps = api::JobPhase::REPAIR.iter().map(|s| s.as_str().to_string()).collect();
        launch(&self.shared, n, mount_at, work, targets, steps, conn, &hdr, server).await
    }
}

impl Manager {
    /// Busy when a job writes `disk` (by any of its names).
    async fn refuse_written(&self, disk: &str) -> Result<()> {
        let d = disk.to_string();
        let keys = self.call(move |e| e.target_keys(&CloneOptions::new([d]))).await?;
        match self.shared.writer(&keys) {
            Some((name, n)) => Err(DbusError::Busy(format!(
                "{name} is being written by job {JOBS_PATH}/{n}; wait for it to finish, or follow it (ListJobs)"
            ))),
            None => Ok(()),
        }
    }
}

/// The caller's unique name and Unix user id.
async fn caller(conn: &Connection, hdr: &Header<'_>) -> (String, u32) {
    let Some(sender) = hdr.sender() else { return (String::new(), u32::MAX) };
    let uid = match zbus::fdo::DBusProxy::new(conn).await {
        Ok(p) => p.get_connection_unix_user(sender.clone().into()).await.unwrap_or(u32::MAX),
        Err(_) => u32::MAX,
    };
    (sender.to_string(), uid)
}

/// Put a job that is checked and holds its devices on the bus as job `n`, run it on a thread
/// of its own and mirror its progress onto its object; the object goes after the grace
/// period. Clone and RepairSystem start their jobs here.
#[allow(clippy::too_many_arguments)]
async fn launch(
    shared: &Arc<Shared>,
    n: u64,
    mount_at: PathBuf,
    work: Box<dyn Work>,
    targets: Vec<String>,
    steps: Vec<String>,
    conn: &Connection,
    hdr: &Header<'_>,
    server: &ObjectServer,
) -> Result<OwnedObjectPath> {
    let shared = shared.clone();
    let simulated = shared.engine.simulated();
    let (owner, owner_uid) = caller(conn, hdr).await;
    let path = match OwnedObjectPath::try_from(format!("{JOBS_PATH}/{n}")) {
        Ok(p) => p,
        Err(e) => {
            shared.unclaim(n, &mount_at);
            return Err(DbusError::Failed(e.to_string()));
        }
    };
    let job = Job::new();
    let started = crate::discover::record::now_rfc3339();
    let obj = JobObject {
        job: job.clone(),
        engine: shared.engine.clone(),
        phase: "validating".into(),
        state: "running".into(),
        bytes_done: 0,
        bytes_total: 0,
        files_done: 0,
        files_total: 0,
        rate: 0,
        targets: targets.clone(),
        error: String::new(),
        current_path: String::new(),
        steps,
        kind: work.kind().into(),
        owner_uid,
        started: started.clone(),
        mounted_at: String::new(),
        log: Vec::new(),
        report: String::new(),
    };
    if let Err(e) = server.at(&path, obj).await {
        shared.unclaim(n, &mount_at);
        return Err(e.into());
    }
    shared
        .jobs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(n, JobEntry { path: path.clone(), kind: work.kind(), targets, owner_uid, owner, started });
    jobs_changed(server).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    job.on_event(move |e| {
        if let Event::Log { level, message } = e {
            let l = match level {
                Level::Info => api::level::INFO,
                Level::Warning => api::level::WARNING,
            };
            let _ = tx.send((l.to_string(), message.clone()));
        }
    });
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let worker_job = job.clone();
    std::thread::spawn(move || {
        let _ = done_tx.send(work.run(&worker_job));
    });
    let iface = server.interface::<_, JobObject>(&path).await?;
    let server = server.clone();
    let job_path = path.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let result = loop {
            tokio::select! {
                Some((level, msg)) = rx.recv() => log(&iface, level, msg).await,
                _ = tick.tick() => mirror(&iface).await,
                r = &mut done_rx => break r,
            }
        };
        while let Ok((level, msg)) = rx.try_recv() {
            log(&iface, level, msg).await;
        }
        mirror(&iface).await;
        let (ok, err, state, outcome) = match result {
            Ok(Ok(out)) => (true, String::new(), api::JobState::Succeeded, out),
            Ok(Err(crate::Error::Cancelled)) => {
                (false, crate::Error::Cancelled.to_string(), api::JobState::Cancelled, Outcome::default())
            }
            Ok(Err(e)) => (false, e.to_string(), api::JobState::Failed, Outcome::default()),
            Err(_) => {
                (false, "the worker stopped without a result".to_string(), api::JobState::Failed, Outcome::default())
            }
        };
        {
            let mut j = iface.get_mut().await;
            let e = iface.signal_emitter();
            j.state = state.as_str().into();
            j.error = err.clone();
            j.mounted_at = outcome.mounted_at.map(|p| p.display().to_string()).unwrap_or_default();
            j.report = outcome.report.unwrap_or_default();
            let _ = j.mounted_at_changed(e).await;
            let _ = j.report_changed(e).await;
            let _ = j.error_changed(e).await;
            let _ = j.state_changed(e).await;
        }
        let _ = JobObject::finished(iface.signal_emitter(), ok, &err).await;
        shared.release(n);
        if !simulated {
            // Empty unless the clone stays mounted there.
            let _ = std::fs::remove_dir(&mount_at);
        }
        // Late clients may still read the result; then the object goes.
        tokio::time::sleep(shared.config.job_grace).await;
        shared.jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(&n);
        let _ = server.remove::<JobObject, _>(&job_path).await;
        jobs_changed(&server).await;
    });
    Ok(path)
}

async fn jobs_changed(server: &ObjectServer) {
    if let Ok(m) = server.interface::<_, Manager>(MANAGER_PATH).await {
        let _ = m.get().await.jobs_changed(m.signal_emitter()).await;
    }
}

async fn log(iface: &InterfaceRef<JobObject>, level: String, msg: String) {
    let _ = JobObject::log(iface.signal_emitter(), &level, &msg).await;
    let mut j = iface.get_mut().await;
    if j.log.len() >= LOG_KEEP {
        j.log.remove(0);
    }
    j.log.push((level, msg));
}

/// Copy the library job's progress onto the bus object, signalling what changed.
async fn mirror(iface: &InterfaceRef<JobObject>) {
    let mut j = iface.get_mut().await;
    let p = j.job.snapshot();
    let e = iface.signal_emitter();
    let phase = serde_json::to_value(p.phase).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    macro_rules! sync {
        ($field:ident, $changed:ident, $v:expr) => {
            if j.$field != $v {
                j.$field = $v;
                let _ = j.$changed(e).await;
            }
        };
    }
    sync!(phase, phase_changed, phase);
    sync!(bytes_done, bytes_done_changed, p.bytes_done);
    sync!(bytes_total, bytes_total_changed, p.bytes_total);
    sync!(files_done, files_done_changed, p.files_done);
    sync!(files_total, files_total_changed, p.files_total);
    sync!(rate, rate_changed, p.rate);
    sync!(current_path, current_path_changed, p.current);
}

pub struct JobObject {
    job: Job,
    engine: Arc<dyn Engine>,
    phase: String,
    state: String,
    bytes_done: u64,
    bytes_total: u64,
    files_done: u64,
    files_total: u64,
    rate: u64,
    targets: Vec<String>,
    error: String,
    current_path: String,
    steps: Vec<String>,
    kind: String,
    owner_uid: u32,
    started: String,
    mounted_at: String,
    log: Vec<(String, String)>,
    report: String,
}

#[zbus::interface(name = "org.altdisk.AltDisk1.Job")]
impl JobObject {
    /// Stop the job; the targets are left marked incomplete and nothing stays mounted.
    async fn cancel(&self, #[zbus(header)] hdr: Header<'_>, #[zbus(connection)] conn: &Connection) -> Result<()> {
        authorize(&*self.engine, conn, &hdr, actions::CLONE).await?;
        self.job.cancel();
        Ok(())
    }

    #[zbus(property)]
    async fn phase(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.phase.clone())
    }
    /// running, succeeded, failed, cancelled.
    #[zbus(property)]
    async fn state(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.state.clone())
    }
    #[zbus(property)]
    async fn bytes_done(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<u64> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.bytes_done)
    }
    #[zbus(property)]
    async fn bytes_total(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<u64> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.bytes_total)
    }
    #[zbus(property)]
    async fn files_done(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<u64> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.files_done)
    }
    #[zbus(property)]
    async fn files_total(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<u64> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.files_total)
    }
    /// Bytes per second.
    #[zbus(property)]
    async fn rate(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<u64> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.rate)
    }
    #[zbus(property)]
    async fn targets(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<Vec<String>> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.targets.clone())
    }
    /// Why the job failed; empty while running or after success.
    #[zbus(property)]
    async fn error(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.error.clone())
    }

    #[zbus(signal)]
    async fn log(emitter: &SignalEmitter<'_>, level: &str, message: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn finished(emitter: &SignalEmitter<'_>, success: bool, error: &str) -> zbus::Result<()>;

    // API 1.1 from here on.

    /// The log so far (level, message): the Log signals a late client missed.
    async fn log_lines(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<(String, String)>> {
        authorize(&*self.engine, conn, &hdr, actions::READ).await?;
        Ok(self.log.clone())
    }

    /// The path being copied (./relative), while copying.
    #[zbus(property)]
    async fn current_path(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.current_path.clone())
    }
    /// The phases this job goes through, in order.
    #[zbus(property)]
    async fn steps(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<Vec<String>> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.steps.clone())
    }
    /// clone or resume.
    #[zbus(property)]
    async fn kind(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.kind.clone())
    }
    /// Unix user id of the caller that started it.
    #[zbus(property)]
    async fn owner_uid(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<u32> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.owner_uid)
    }
    /// When it started (RFC 3339).
    #[zbus(property)]
    async fn started(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.started.clone())
    }
    /// Where the clone is left mounted after success (phase 1 without phase 3), else empty.
    #[zbus(property)]
    async fn mounted_at(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.mounted_at.clone())
    }

    /// What the job found, as JSON, once it has finished: a clone's or refresh's report, or
    /// verify's (`equal`, the differences by kind and the list); empty before.
    #[zbus(property)]
    async fn report(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
        #[zbus(connection)] conn: &Connection,
    ) -> zbus::fdo::Result<String> {
        may_read(&*self.engine, conn, hdr).await?;
        Ok(self.report.clone())
    }
}

/// Signal DisksChanged for each burst of block device events udev reports.
async fn watch_udev(conn: Connection, engine: Arc<dyn Engine>, mut rx: tokio::sync::mpsc::Receiver<()>) {
    while rx.recv().await.is_some() {
        let e = engine.clone();
        let Ok(Ok(disks)) = tokio::task::spawn_blocking(move || e.disks()).await else { continue };
        if let Ok(em) = SignalEmitter::new(&conn, MANAGER_PATH) {
            let _ = Manager::disks_changed(&em, disks).await;
        }
    }
}

/// Watch for disks coming and going and signal DisksChanged (within about a second): from
/// udev's monitor for real disks (events, no polling), from the simulation's own changes
/// otherwise (or when the monitor cannot be opened).
pub async fn watch_disks(conn: Connection, engine: Arc<dyn Engine>) {
    if !engine.simulated() {
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
        // A full channel means a signal is already due: that one will carry this change too.
        match crate::discover::udevdb::spawn_watch(move || {
            !matches!(tx.try_send(()), Err(tokio::sync::mpsc::error::TrySendError::Closed(_)))
        }) {
            Ok(()) => return watch_udev(conn, engine, rx).await,
            Err(e) => tracing::warn!("udev monitor unavailable ({e}); looking for disk changes every 0.5 s instead"),
        }
    }
    let e = engine.clone();
    let mut last = tokio::task::spawn_blocking(move || e.fingerprint()).await.unwrap_or_default();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let e = engine.clone();
        let now = tokio::task::spawn_blocking(move || e.fingerprint()).await.unwrap_or_default();
        if now == last {
            continue;
        }
        last = now;
        let e = engine.clone();
        let Ok(Ok(disks)) = tokio::task::spawn_blocking(move || e.disks()).await else { continue };
        if let Ok(em) = SignalEmitter::new(&conn, MANAGER_PATH) {
            let _ = Manager::disks_changed(&em, disks).await;
        }
    }
}
