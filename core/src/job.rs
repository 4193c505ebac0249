//! Progress and cancellation for long work. A [`Job`] is a cheap, cloneable handle shared by
//! the library (which updates counters and checks for cancellation), and by whoever drives it
//! (the CLI's progress bar, the D-Bus service's job object), which reads [`Job::snapshot`]
//! and may call [`Job::cancel`] from any thread. Discrete happenings (a phase starts, a log
//! line, a file copied for `-V`) go to an optional event sink as [`Event`]s.
//!
//! Counters are atomics: the copy engine's worker threads bump them without locks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};

/// The steps of a clone, in order. Phases 1..3 follow AIX; the others are their parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Validating,
    Partitioning,
    MakingFilesystems,
    Copying,
    FixingIdentities,
    Customizing,
    MakingBootable,
    CleaningUp,
    Done,
}

impl Phase {
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Validating => "checking the plan",
            Phase::Partitioning => "partitioning the targets",
            Phase::MakingFilesystems => "making filesystems",
            Phase::Copying => "copying files",
            Phase::FixingIdentities => "giving the clone its own identities",
            Phase::Customizing => "customizing the clone",
            Phase::MakingBootable => "making the clone bootable",
            Phase::CleaningUp => "cleaning up",
            Phase::Done => "done",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
}

/// Something that happened, for sinks that want more than counters.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Phase {
        phase: Phase,
    },
    Log {
        level: Level,
        message: String,
    },
    /// A file or directory was copied (the `./relative/path` form); sent only when
    /// [`Job::set_list_files`] asked for it (`-V`).
    Copied {
        path: String,
    },
}

/// A point-in-time view of a job's progress.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub phase: Phase,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
    /// Bytes per second since the copy started.
    pub rate: u64,
    pub current: String,
    pub elapsed_ms: u64,
}

type Sink = Box<dyn Fn(&Event) + Send + Sync>;

struct Inner {
    cancelled: AtomicBool,
    phase: Mutex<Phase>,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    files_done: AtomicU64,
    files_total: AtomicU64,
    current: Mutex<PathBuf>,
    started: Instant,
    copy_started: Mutex<Option<Instant>>,
    list_files: AtomicBool,
    sink: Mutex<Option<Sink>>,
}

#[derive(Clone)]
pub struct Job {
    inner: Arc<Inner>,
}

impl Default for Job {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("progress", &self.snapshot()).finish()
    }
}

impl Job {
    pub fn new() -> Self {
        Job {
            inner: Arc::new(Inner {
                cancelled: AtomicBool::new(false),
                phase: Mutex::new(Phase::Validating),
                bytes_done: AtomicU64::new(0),
                bytes_total: AtomicU64::new(0),
                files_done: AtomicU64::new(0),
                files_total: AtomicU64::new(0),
                current: Mutex::new(PathBuf::new()),
                started: Instant::now(),
                copy_started: Mutex::new(None),
                list_files: AtomicBool::new(false),
                sink: Mutex::new(None),
            }),
        }
    }

    /// Receive [`Event`]s. The sink runs on the library's threads: keep it quick.
    pub fn on_event(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        *self.inner.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    /// Ask for an [`Event::Copied`] per entry (`-V`).
    pub fn set_list_files(&self, on: bool) {
        self.inner.list_files.store(on, Ordering::Relaxed);
    }

    pub fn list_files(&self) -> bool {
        self.inner.list_files.load(Ordering::Relaxed)
    }

    /// Request cancellation; the work stops at its next check and cleans up.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once cancellation was requested.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    pub fn emit(&self, e: Event) {
        if let Some(s) = self.inner.sink.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            s(&e);
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        *self.inner.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
        if phase == Phase::Copying {
            *self.inner.copy_started.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        self.emit(Event::Phase { phase });
    }

    pub fn info(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!("{message}");
        self.emit(Event::Log { level: Level::Info, message });
    }

    pub fn warn(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!("{message}");
        self.emit(Event::Log { level: Level::Warning, message });
    }

    pub fn add_totals(&self, bytes: u64, files: u64) {
        self.inner.bytes_total.fetch_add(bytes, Ordering::Relaxed);
        self.inner.files_total.fetch_add(files, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes(&self, n: u64) {
        let done = self.inner.bytes_done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(pct) = test_pause().copy_percent {
            let total = self.inner.bytes_total.load(Ordering::Relaxed).max(1);
            if done * 100 >= total * pct {
                pause(&format!("copying files@{pct}"));
            }
        }
    }

    pub(crate) fn add_file(&self) {
        self.inner.files_done.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_current(&self, p: &Path) {
        if let Ok(mut c) = self.inner.current.try_lock() {
            c.clear();
            c.push(p);
        }
    }

    pub fn snapshot(&self) -> Progress {
        let i = &self.inner;
        let bytes_done = i.bytes_done.load(Ordering::Relaxed);
        let files_done = i.files_done.load(Ordering::Relaxed);
        let copy_started = *i.copy_started.lock().unwrap_or_else(|e| e.into_inner());
        let rate = copy_started
            .map(|t| t.elapsed())
            .filter(|d| *d > Duration::from_millis(200))
            .map(|d| (bytes_done as f64 / d.as_secs_f64()) as u64)
            .unwrap_or(0);
        Progress {
            phase: *i.phase.lock().unwrap_or_else(|e| e.into_inner()),
            bytes_done,
            // Totals are estimates from the source's used space; never show more done than total.
            bytes_total: i.bytes_total.load(Ordering::Relaxed).max(bytes_done),
            files_done,
            files_total: i.files_total.load(Ordering::Relaxed).max(files_done),
            rate,
            current: i.current.lock().unwrap_or_else(|e| e.into_inner()).display().to_string(),
            elapsed_ms: i.started.elapsed().as_millis() as u64,
        }
    }
}

/// Test-only fault injection, for the power-cut tests: `ALTDISK_TEST_PAUSE_AT=STEP` stops the
/// run when its record is about to name STEP (see [`crate::discover::record::step`]), and
/// `ALTDISK_TEST_PAUSE_AT="copying files@PCT"` once PCT percent of the bytes are copied. The
/// run prints `altdisk-test: paused at STEP` to stderr and sleeps until it is killed (the test
/// then cuts the machine's power). Unset, this costs one load of a static.
struct TestPause {
    step: Option<String>,
    copy_percent: Option<u64>,
}

fn test_pause() -> &'static TestPause {
    static P: std::sync::OnceLock<TestPause> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let v = std::env::var("ALTDISK_TEST_PAUSE_AT").ok().filter(|v| !v.is_empty());
        let copy_percent = v.as_deref().and_then(|v| v.strip_prefix("copying files@")).and_then(|p| p.parse().ok());
        TestPause { step: v.filter(|_| copy_percent.is_none()), copy_percent }
    })
}

fn pause(at: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        eprintln!("altdisk-test: paused at {at}");
        // The marker must reach the console before the power is cut.
        nix::unistd::sync();
    });
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Stop here if the test environment asks to (see [`TestPause`]).
pub(crate) fn test_pause_at(step: &str) {
    if test_pause().step.as_deref() == Some(step) {
        pause(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_is_seen_by_clones() {
        let j = Job::new();
        let k = j.clone();
        assert!(j.check().is_ok());
        k.cancel();
        assert!(matches!(j.check(), Err(Error::Cancelled)));
    }

    #[test]
    fn events_reach_the_sink() {
        let j = Job::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        j.on_event(move |e| s.lock().unwrap().push(format!("{e:?}")));
        j.set_phase(Phase::Copying);
        j.warn("careful");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].contains("careful"));
        assert_eq!(j.snapshot().phase, Phase::Copying);
    }

    #[test]
    fn snapshot_never_exceeds_total() {
        let j = Job::new();
        j.add_totals(10, 1);
        j.add_bytes(25);
        j.add_file();
        j.add_file();
        let p = j.snapshot();
        assert_eq!((p.bytes_done, p.bytes_total, p.files_done, p.files_total), (25, 25, 2, 2));
    }
}
