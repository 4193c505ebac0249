//! The screens, one module each, in the icebreaker shape: a state struct, its `Message`, an
//! `update` that returns an `Action` for the app to carry out (a bus call, a change of
//! screen, an error for the banner), and a `view` of the state and the service's data.
//! Screens never hold the D-Bus connection.

pub mod bootlist;
pub mod clone;
pub mod disks;
pub mod manage;
pub mod progress;
pub mod rescue;

/// The screens, in the order the navigation lists them (Alt+1 … Alt+6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Disks,
    Clone,
    Progress,
    Manage,
    BootList,
    Rescue,
}

impl Tab {
    pub const ALL: [Tab; 6] = [Tab::Disks, Tab::Clone, Tab::Progress, Tab::Manage, Tab::BootList, Tab::Rescue];

    pub fn label(self) -> &'static str {
        match self {
            Tab::Disks => "Systems and disks",
            Tab::Clone => "Clone",
            Tab::Progress => "Progress",
            Tab::Manage => "Manage",
            Tab::BootList => "Boot list",
            Tab::Rescue => "Rescue",
        }
    }

    /// The navigation button's id (tests click it).
    pub fn id(self) -> &'static str {
        match self {
            Tab::Disks => "nav-disks",
            Tab::Clone => "nav-clone",
            Tab::Progress => "nav-progress",
            Tab::Manage => "nav-manage",
            Tab::BootList => "nav-bootlist",
            Tab::Rescue => "nav-rescue",
        }
    }
}
