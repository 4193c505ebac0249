//! altdiskd: the altdisk D-Bus system service (org.altdisk.AltDisk1). Thin: it checks its
//! tools, recovers from an interrupted previous run, serves the Manager object and watches
//! for disks coming and going. `--address` serves on another bus (tests use a private one).

use std::path::PathBuf;

use clap::Parser;

use altdisk::dbus::service::{self, Manager};
use altdisk::dbus::{BUS_NAME, MANAGER_PATH};

#[derive(Parser)]
#[command(name = "altdiskd", version, about = "altdisk D-Bus system service")]
struct Args {
    /// Bus address to serve on instead of the system bus.
    #[arg(long)]
    address: Option<String>,
    /// Where clones are mounted while jobs build them.
    #[arg(long, default_value = service::MOUNT_ROOT)]
    mount_root: PathBuf,
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
    // Fail fast, naming what is missing: a service may run without a useful PATH.
    altdisk::cmd::require(&["lsblk", "blkid", "losetup", "mkfs.ext4", "mkswap"])?;
    std::fs::create_dir_all(&a.mount_root)?;
    for note in tokio::task::spawn_blocking({
        let root = a.mount_root.clone();
        move || service::recover(&root)
    })
    .await??
    {
        tracing::warn!("{note}");
    }
    let builder = match &a.address {
        Some(addr) => zbus::connection::Builder::address(addr.as_str()),
        None => zbus::connection::Builder::system(),
    };
    let conn = builder.name(BUS_NAME).serve_at(MANAGER_PATH, Manager::new(a.mount_root.clone())).build().await?;
    tracing::info!("serving {BUS_NAME} at {MANAGER_PATH}");
    tokio::spawn(service::watch_disks(conn.clone()));
    // Run until stopped.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
