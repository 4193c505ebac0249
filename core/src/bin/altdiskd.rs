//! altdiskd: the altdisk D-Bus system service (org.altdisk.AltDisk1). Thin: it checks its
//! tools, recovers from an interrupted previous run, serves the Manager object and watches
//! for disks coming and going. `--address` serves on another bus (tests use a private one);
//! `--sim FILE` serves simulated disks described in FILE, without root and without polkit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use altdisk::dbus::engine::Engine;
use altdisk::dbus::real::RealEngine;
use altdisk::dbus::service::{self, Config, Manager};
use altdisk::dbus::sim::SimEngine;
use altdisk::dbus::{BUS_NAME, MANAGER_PATH};

#[derive(Parser)]
#[command(name = "altdiskd", version, about = "altdisk D-Bus system service")]
struct Args {
    /// Bus address to serve on instead of the system bus (a private bus, for tests).
    #[arg(long, value_name = "ADDRESS")]
    address: Option<String>,
    /// Serve on the session bus instead of the system bus (the default with --sim).
    #[arg(long)]
    session: bool,
    /// Where clones are mounted while jobs build them.
    #[arg(long, value_name = "DIR", default_value = service::MOUNT_ROOT)]
    mount_root: PathBuf,
    /// Serve simulated disks and systems described in FILE (TOML, see docs/sim-sample.toml)
    /// instead of this machine's: no root, no polkit, nothing is written.
    #[arg(long, value_name = "FILE")]
    sim: Option<PathBuf>,
    /// Seconds a finished job's object stays on the bus for late clients.
    #[arg(long, value_name = "SECONDS", default_value_t = service::JOB_GRACE.as_secs_f64())]
    job_grace: f64,
}

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALTDISK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().init();
    if let Err(e) = run(Args::parse()).await {
        eprintln!("altdiskd: error: {e}");
        std::process::exit(1);
    }
}

async fn run(a: Args) -> anyhow::Result<()> {
    if !(a.job_grace.is_finite() && a.job_grace >= 0.0) {
        anyhow::bail!("--job-grace {}: not a number of seconds; give one such as 600", a.job_grace);
    }
    let engine: Arc<dyn Engine> = match &a.sim {
        Some(file) => {
            let e = SimEngine::new(file)?;
            tracing::warn!(
                "SIMULATION: serving the disks described in {}, not this machine's; nothing is written \
                 and polkit is NOT asked (only the sim file's `deny` list is)",
                file.display()
            );
            Arc::new(e)
        }
        None => {
            // Fail fast, naming what is missing: a service may run without a useful PATH.
            altdisk::cmd::require(&["blkid", "losetup", "mkfs.ext4", "mkswap"])?;
            std::fs::create_dir_all(&a.mount_root)?;
            Arc::new(RealEngine::new(a.mount_root.clone()))
        }
    };
    let e = engine.clone();
    for note in tokio::task::spawn_blocking(move || e.recover()).await?? {
        tracing::warn!("{note}");
    }
    let builder = match &a.address {
        Some(addr) => zbus::connection::Builder::address(addr.as_str()),
        None if a.session || a.sim.is_some() => zbus::connection::Builder::session(),
        None => zbus::connection::Builder::system(),
    };
    let config = Config { mount_root: a.mount_root.clone(), job_grace: Duration::from_secs_f64(a.job_grace) };
    let conn = builder.name(BUS_NAME).serve_at(MANAGER_PATH, Manager::new(engine.clone(), config)).build().await?;
    tracing::info!("serving {BUS_NAME} at {MANAGER_PATH}{}", if a.sim.is_some() { " (SIMULATION)" } else { "" });
    tokio::spawn(service::watch_disks(conn.clone(), engine));
    // Run until stopped.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// docs/man/altdiskd.8 is generated from the definition above and checked in; this test
/// fails when it is out of date (`ALTDISK_BLESS=1 cargo test -p altdisk --bin altdiskd`
/// writes it). The altdisk binary's pages are made the same way (its docs module).
#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap_mangen::roff::{italic, roman, Roff};

    fn page() -> Vec<u8> {
        let man = clap_mangen::Man::new(super::Args::command()).section("8").manual("System Administration");
        let mut out = Vec::new();
        man.render(&mut out).unwrap();
        let mut r = Roff::new();
        r.control("SH", ["DESCRIPTION OF THE SERVICE"]);
        r.text([roman(
            "altdiskd serves org.altdisk.AltDisk1 on the system bus: listing disks and systems, planning \
             and cloning (a job object per clone, with progress signals), the boot list, waking, sleeping, \
             renaming and removing alternate systems. The bus starts it on the first call (D-Bus activation \
             through systemd); every call is authorised by polkit for the caller (actions org.altdisk.read, \
             .clone, .bootlist, .manage), and a missing polkit denies. On start it cleans up what an \
             interrupted earlier run left mounted below its mount root.",
        )]);
        r.control("SH", ["FILES"]);
        for (path, what) in [
            ("/usr/lib/systemd/system/altdiskd.service", "the systemd unit (Type=dbus)"),
            ("/usr/share/dbus-1/system-services/org.altdisk.AltDisk1.service", "D-Bus activation"),
            ("/usr/share/dbus-1/system.d/org.altdisk.AltDisk1.conf", "bus policy: only root owns the name"),
            ("/usr/share/polkit-1/actions/org.altdisk.policy", "the polkit actions"),
        ] {
            r.control("TP", []).text([italic(path)]).text([roman(what)]);
        }
        r.control("SH", ["SEE ALSO"]);
        r.text([roman("altdisk(8), alt_disk_copy(8), busctl(1), polkit(8)")]);
        out.extend_from_slice(r.to_roff().as_bytes());
        out
    }

    #[test]
    fn man_page_is_current() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man/altdiskd.8");
        if std::env::var("ALTDISK_BLESS").as_deref() == Ok("1") {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, page()).unwrap();
        }
        assert!(
            std::fs::read(&p).ok() == Some(page()),
            "{} is missing or out of date: ALTDISK_BLESS=1 cargo test -p altdisk --bin altdiskd",
            p.display()
        );
    }

    #[test]
    fn every_flag_has_help() {
        for a in super::Args::command().get_arguments() {
            assert!(a.get_help().is_some(), "altdiskd {} has no help text", a.get_id());
        }
    }
}
