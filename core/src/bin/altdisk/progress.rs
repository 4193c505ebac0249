//! Drawing a job's progress: a bar on a terminal, plain lines otherwise, file names with -V.
//! Also turns Ctrl-C (and SIGTERM, SIGHUP) into a clean cancel.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use altdisk::job::{Event, Job, Level, Phase};
use altdisk::size::human;

pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(job: &Job, list_files: bool) -> Progress {
        // A bar only where one can be drawn: a terminal that is not "dumb" (serial consoles,
        // emacs shells); elsewhere plain lines, so no log line is lost.
        let tty = std::io::stderr().is_terminal()
            && std::env::var("TERM").map(|t| !t.is_empty() && t != "dumb").unwrap_or(false);
        let bar = if tty {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            Some(b)
        } else {
            None
        };
        let sink_bar = bar.clone().filter(|b| !b.is_hidden());
        job.on_event(move |e| match e {
            Event::Phase { phase } => {
                let line = format!("{}...", phase.describe());
                match &sink_bar {
                    Some(b) => b.set_message(phase.describe()),
                    None if *phase != Phase::Done => eprintln!("{line}"),
                    None => {}
                }
            }
            Event::Log { level: Level::Warning, message } => match &sink_bar {
                Some(b) => b.println(format!("warning: {message}")),
                None => eprintln!("warning: {message}"),
            },
            Event::Log { level: Level::Info, message } => {
                if let Some(b) = &sink_bar {
                    b.println(message);
                } else {
                    eprintln!("{message}");
                }
            }
            Event::Copied { path } if list_files => match &sink_bar {
                Some(b) => b.println(path),
                None => println!("{path}"),
            },
            Event::Copied { .. } => {}
        });
        // Ctrl-C cancels; the library cleans up and marks the target incomplete.
        let cancel_job = job.clone();
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ]) {
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    eprintln!("\ncancelling: cleaning up...");
                    cancel_job.cancel();
                }
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let j = job.clone();
        let thread = std::thread::spawn(move || {
            let mut last_line = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let p = j.snapshot();
                match &bar {
                    Some(b) => {
                        if p.phase == Phase::Copying {
                            b.set_length(p.bytes_total);
                            b.set_position(p.bytes_done);
                        }
                        b.tick();
                    }
                    None => {
                        if p.phase == Phase::Copying && last_line.elapsed() > Duration::from_secs(5) {
                            eprintln!(
                                "copied {} of about {} ({} of about {} files) at {}/s",
                                human(p.bytes_done),
                                human(p.bytes_total),
                                p.files_done,
                                p.files_total,
                                human(p.rate)
                            );
                            last_line = Instant::now();
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        Progress { stop, thread: Some(thread) }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
