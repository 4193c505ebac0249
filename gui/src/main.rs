//! `altdisk-gui`: parse the command line, refuse to run as root, open the window.

use std::os::unix::fs::MetadataExt;

use altdisk_gui::{Bus, Config, Tab};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "altdisk-gui",
    version,
    about = "Clone the running system to a free disk, and manage the copies (altdisk)"
)]
struct Args {
    /// Talk to altdiskd on this D-Bus address instead of the system bus (a private bus, or
    /// `altdiskd --sim` for a simulated machine) [env: ALTDISK_BUS_ADDRESS].
    #[arg(long, value_name = "ADDRESS")]
    bus_address: Option<String>,
    /// Talk to altdiskd on the session bus (where `altdiskd --sim FILE` serves by default).
    #[arg(long, conflicts_with = "bus_address")]
    session: bool,
    /// Use the dark theme (default: the desktop's colour scheme).
    #[arg(long, conflicts_with = "light")]
    dark: bool,
    /// Use the light theme.
    #[arg(long)]
    light: bool,
    /// The screen to open at.
    #[arg(long, value_name = "SCREEN", value_parser = ["disks", "clone", "progress", "manage", "bootlist", "rescue"])]
    open: Option<String>,
    /// Open the clone screen with this disk chosen as the target (name, path or hdisk alias).
    #[arg(long, value_name = "DISK")]
    target: Option<String>,
    /// Window size, as WIDTHxHEIGHT (default 1120x780).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    size: Option<(f32, f32)>,
    /// Run even as root (a kiosk session where root is the only user). The GUI needs no
    /// privileges: the service asks polkit for each change.
    #[arg(long)]
    allow_root: bool,
}

/// Exit codes: 0 closed normally, 1 the window could not be opened, 2 bad usage (clap) or
/// started as root without --allow-root.
fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALTDISK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().init();
    let a = Args::parse();
    let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if root && !a.allow_root {
        eprintln!(
            "altdisk-gui: error: running as root: the GUI needs no privileges (altdiskd asks polkit for each \
             change); start it as your own user, or pass --allow-root in a root-only kiosk session"
        );
        std::process::exit(2);
    }
    let address = a.bus_address.or_else(|| std::env::var("ALTDISK_BUS_ADDRESS").ok().filter(|s| !s.is_empty()));
    let bus = match (a.session, address) {
        (true, _) => Bus::Session,
        (false, Some(addr)) => Bus::Address(addr),
        (false, None) => Bus::System,
    };
    let dark = if a.dark {
        Some(true)
    } else if a.light {
        Some(false)
    } else {
        None
    };
    let open = a.open.as_deref().map(|s| match s {
        "clone" => Tab::Clone,
        "progress" => Tab::Progress,
        "manage" => Tab::Manage,
        "bootlist" => Tab::BootList,
        "rescue" => Tab::Rescue,
        _ => Tab::Disks,
    });
    let initial_dark = match dark {
        Some(d) => d,
        None => altdisk_gui::ui::system_theme::read_now(std::time::Duration::from_millis(300)).unwrap_or(false),
    };
    if let Err(e) = altdisk_gui::run(Config { bus, dark, initial_dark, open, target: a.target }, a.size) {
        eprintln!("altdisk-gui: error: cannot open the window: {e}; is there a display (DISPLAY or WAYLAND_DISPLAY)?");
        std::process::exit(1);
    }
}

fn parse_size(s: &str) -> Result<(f32, f32), String> {
    let bad = || format!("`{s}`: give the size as WIDTHxHEIGHT, such as 1024x768");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let w: u16 = w.trim().parse().map_err(|_| bad())?;
    let h: u16 = h.trim().parse().map_err(|_| bad())?;
    if w < 320 || h < 240 {
        return Err(format!("`{s}`: too small; the window needs at least 320x240"));
    }
    Ok((f32::from(w), f32::from(h)))
}
