//! How many worker threads a parallel tree walk (the copy engine, verify) keeps busy: as
//! many as pay off on this machine now, found by measuring.
//!
//! Promises: between 1 and a bound of threads work at a time; the rest are parked (they take
//! no task) and come back when the measured throughput says more help. A fixed number is
//! wrong both ways: cold reads want several requests in flight per core, while on a machine
//! where another process keeps a CPU busy the same number of threads only preempts itself
//! (a worker holding a queue or table lock is descheduled, the others queue behind it) and
//! loses to one plain `cp -a`.
//!
//! How: hill climbing. Every interval the controller measures the work done (entries plus
//! bytes in 32 KiB units), compares it with the interval before, and moves the number of
//! allowed workers: on in the same direction when the last move helped by more than the
//! noise margin, back when it hurt. When it made no difference, the machine's idle CPU time
//! in that interval (`/proc/stat`) breaks the tie: with a CPU to spare the copy waits on the
//! disks, and more requests in flight cost nothing, so one up; with none, fewer threads that
//! do as much leave the CPU to others, so one down. `ALTDISK_COPY_THREADS=N` fixes the number
//! instead.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often the controller measures and moves.
const INTERVAL: Duration = Duration::from_millis(250);
/// A change of throughput smaller than this is noise.
const MARGIN: f64 = 0.08;

/// The number of worker threads that may take tasks, and how it is chosen.
#[derive(Debug)]
pub(crate) struct Gate {
    /// Threads started; never more than this work.
    pub(crate) max: usize,
    allowed: AtomicUsize,
    adaptive: bool,
    /// Work done so far, in units (an entry, or 32 KiB of data).
    work: AtomicU64,
    done: AtomicBool,
    /// Highest and lowest number of workers allowed during the run, for the report.
    high: AtomicUsize,
    low: AtomicUsize,
}

impl Gate {
    /// A gate for `requested` threads (0: adapt, within this machine's bound).
    pub(crate) fn new(requested: usize) -> Gate {
        let fixed = if requested > 0 {
            Some(requested)
        } else {
            std::env::var("ALTDISK_COPY_THREADS").ok().and_then(|v| v.parse().ok()).filter(|&n: &usize| n > 0)
        };
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let (max, start, adaptive) = match fixed {
            Some(n) => (n, n, false),
            // Cold reads are latency-bound: many requests in flight per core pay (a worker
            // waiting on a read costs no CPU), up to sixteen a core.
            None => ((cpus * 16).clamp(8, 64), (cpus * 4).clamp(4, 32), true),
        };
        Gate {
            max,
            allowed: AtomicUsize::new(start),
            adaptive,
            work: AtomicU64::new(0),
            done: AtomicBool::new(false),
            high: AtomicUsize::new(start),
            low: AtomicUsize::new(start),
        }
    }

    /// Whether worker number `i` (0-based) may take a task now. Worker 0 always may.
    pub(crate) fn may_work(&self, i: usize) -> bool {
        i < self.allowed.load(Ordering::Relaxed)
    }

    /// Count work done: one entry and `bytes` of data.
    pub(crate) fn add(&self, entries: u64, bytes: u64) {
        self.work.fetch_add(entries + (bytes >> 15), Ordering::Relaxed);
    }

    /// The walk is over: the controller stops.
    pub(crate) fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
    }

    /// (lowest, highest) number of workers allowed during the run.
    pub(crate) fn range(&self) -> (usize, usize) {
        (self.low.load(Ordering::Relaxed), self.high.load(Ordering::Relaxed))
    }

    fn set(&self, n: usize) {
        self.allowed.store(n, Ordering::Relaxed);
        self.high.fetch_max(n, Ordering::Relaxed);
        self.low.fetch_min(n, Ordering::Relaxed);
    }

    /// Run the controller until [`Gate::finish`]; `wake` is called after each change so that
    /// parked workers look again.
    pub(crate) fn control(&self, wake: impl Fn()) {
        if !self.adaptive {
            return;
        }
        let mut climb = Climb::new(self.allowed.load(Ordering::Relaxed), self.max);
        let mut last = (Instant::now(), self.work.load(Ordering::Relaxed));
        let mut cpu = cpu_times();
        while !self.done.load(Ordering::SeqCst) {
            // Sleep in small steps so the end of the walk is not kept waiting.
            let until = last.0 + INTERVAL;
            while Instant::now() < until && !self.done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.done.load(Ordering::SeqCst) {
                break;
            }
            let now = (Instant::now(), self.work.load(Ordering::Relaxed));
            let rate = (now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64();
            last = now;
            let c = cpu_times();
            let spare = spare_cpus(cpu, c);
            cpu = c;
            let n = climb.step(rate, spare);
            if n != self.allowed.load(Ordering::Relaxed) {
                tracing::debug!("copy workers: {n} (rate {rate:.0} units/s)");
                self.set(n);
                wake();
            }
        }
    }
}

/// (idle, total) jiffies of all CPUs since boot; idle counts I/O wait (a CPU waiting on a
/// disk is free to run something).
fn cpu_times() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((idle, total))
}

/// How many CPUs were idle between two readings (None: unknown).
fn spare_cpus(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let ((i0, t0), (i1, t1)) = (a?, b?);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    (t1 > t0).then(|| (i1.saturating_sub(i0)) as f64 / (t1 - t0) as f64 * cpus)
}

/// The hill climber, apart from time so it can be tested.
#[derive(Debug)]
struct Climb {
    n: usize,
    max: usize,
    dir: isize,
    prev: Option<f64>,
    /// Moves in a row that made no difference.
    flat: u32,
}

impl Climb {
    fn new(start: usize, max: usize) -> Climb {
        Climb { n: start.clamp(1, max), max, dir: 1, prev: None, flat: 0 }
    }

    /// The next number of workers, given the throughput measured with the current one and
    /// how many CPUs stood idle meanwhile.
    fn step(&mut self, rate: f64, spare: Option<f64>) -> usize {
        if let Some(p) = self.prev {
            if rate > p * (1.0 + MARGIN) {
                // The last move helped: go on.
                self.flat = 0;
            } else if rate < p * (1.0 - MARGIN) {
                self.dir = -self.dir;
                self.flat = 0;
            } else {
                // No difference: with a CPU to spare, the copy waits on the disks and more
                // requests in flight cost nothing; without, fewer threads doing as much leave
                // the CPU to others (now and then looking up again, as the machine may have
                // become free).
                self.flat += 1;
                let idle = spare.is_some_and(|s| s >= 0.5);
                self.dir = if idle || self.n == 1 || self.flat.is_multiple_of(6) { 1 } else { -1 };
            }
        }
        self.prev = Some(rate);
        // Larger steps far from one, so a 2-core and a 32-core machine settle as fast.
        let stride = (self.n / 4).max(1) as isize;
        self.n = (self.n as isize + self.dir * stride).clamp(1, self.max as isize) as usize;
        self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine where throughput grows with threads up to `best`, then falls.
    fn machine(n: usize, best: usize) -> f64 {
        if n <= best {
            100.0 * n as f64
        } else {
            100.0 * best as f64 - 30.0 * (n - best) as f64
        }
    }

    #[test]
    fn climbs_to_where_more_threads_stop_helping() {
        for best in [1, 2, 5, 12] {
            let mut c = Climb::new(2, 32);
            let mut seen = Vec::new();
            let mut n = 2;
            for _ in 0..60 {
                n = c.step(machine(n, best), Some(0.0));
                seen.push(n);
            }
            // After settling it stays within one step of the best number.
            let tail = &seen[40..];
            let stride = (best / 4).max(1) + 1;
            assert!(tail.iter().all(|&x| x.abs_diff(best) <= stride), "best {best}: {seen:?}");
        }
    }

    #[test]
    fn a_flat_machine_ends_with_few_threads() {
        // A CPU-starved machine: more threads do nothing.
        let mut c = Climb::new(8, 32);
        let mut n = 8;
        for _ in 0..40 {
            n = c.step(500.0, Some(0.1));
        }
        assert!(n <= 2, "{n}");
        // A machine waiting on its disks with CPUs to spare: threads cost nothing, more stay.
        let mut c = Climb::new(2, 32);
        let mut n = 2;
        for _ in 0..40 {
            n = c.step(500.0, Some(1.5));
        }
        assert!(n >= 16, "{n}");
    }

    #[test]
    fn fixed_number_does_not_adapt() {
        let g = Gate::new(3);
        assert!(g.may_work(2) && !g.may_work(3));
        g.control(|| panic!("no changes when fixed"));
    }
}
