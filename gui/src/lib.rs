//! altdisk-gui: the desktop front-end of altdisk. It shows the disks and the systems on
//! them, clones a system onto free disks, follows the copy, manages the alternate systems
//! and the UEFI boot list, all through the altdiskd D-Bus service (`altdisk-api`): it never
//! links the engine and never needs root; polkit asks for a password when a change needs one.
//!
//! The library holds the whole app so tests drive its `update` and `view` headless (iced's
//! simulator) against `altdiskd --sim`; `main.rs` only parses the command line and opens
//! the window.

// Messages carry the service's answers (a plan, a job's state) as they are: boxing them
// would buy nothing in an app that handles a few messages a second (iced's own habit).
#![allow(clippy::large_enum_variant)]

pub mod app;
pub mod client;
pub mod format;
pub mod screen;
pub mod ui;

pub use app::{App, Banner, Config, Message};
pub use client::Bus;
pub use screen::Tab;

/// The application id: the desktop entry, the AppStream id, the Wayland app id.
pub const APP_ID: &str = "org.altdisk.Gui";

/// Open the window and run until it is closed.
pub fn run(config: Config, size: Option<(f32, f32)>) -> iced::Result {
    let (w, h) = size.unwrap_or((1120.0, 780.0));
    iced::application(move || App::new(config.clone()), App::update, App::view)
        .title(App::title)
        .theme(App::theme)
        .subscription(App::subscription)
        .window(iced::window::Settings {
            size: iced::Size::new(w, h),
            min_size: Some(iced::Size::new(800.0, 600.0)),
            platform_specific: iced::window::settings::PlatformSpecific {
                application_id: APP_ID.to_string(),
                ..Default::default()
            },
            ..Default::default()
        })
        .run()
}

#[cfg(test)]
mod tests {
    /// The desktop entry, the icon and the metainfo agree with the app id and the binary.
    #[test]
    fn data_files_name_the_app() {
        let desktop = include_str!("../data/org.altdisk.Gui.desktop");
        let metainfo = include_str!("../data/org.altdisk.Gui.metainfo.xml");
        let icon = include_str!("../data/org.altdisk.Gui.svg");
        assert!(desktop.lines().any(|l| l == "Exec=altdisk-gui"), "{desktop}");
        assert!(desktop.lines().any(|l| l == format!("Icon={}", super::APP_ID)));
        assert!(desktop.lines().any(|l| l == format!("StartupWMClass={}", super::APP_ID)));
        assert!(metainfo.contains(&format!("<id>{}</id>", super::APP_ID)));
        assert!(metainfo.contains(&format!("<launchable type=\"desktop-id\">{}.desktop</launchable>", super::APP_ID)));
        assert!(metainfo.contains("<binary>altdisk-gui</binary>"));
        assert!(icon.starts_with("<svg") && icon.contains("viewBox=\"0 0 128 128\""));
    }
}
