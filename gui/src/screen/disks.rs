//! Systems and disks: every disk as a card (model, serial, size, bus, hdisk alias, its
//! partitions drawn to scale) with its role in words: the running system, an alternate
//! system with its state, source host and date, free, in use and why, or holding data and
//! what. Above them, the systems altdisk knows. Usable disks offer "Clone to this disk".

use altdisk_api::{kind, DiskDetail, SystemInfo};
use iced::widget::{column, container, row, scrollable, text};
use iced::{Alignment, Element, Length};

use crate::client::Snapshot;
use crate::format;
use crate::ui::{self, Kind, Tone};

#[derive(Debug, Default)]
pub struct Disks;

#[derive(Debug, Clone)]
pub enum Message {
    Refresh,
    CloneTo(String),
    Manage(String),
}

/// What the app does for this screen.
#[derive(Debug)]
pub enum Action {
    None,
    Refresh,
    /// Open the clone screen with this disk chosen as the target.
    CloneTo(String),
    /// Open the manage screen at the system on this disk.
    Manage(String),
}

impl Disks {
    pub fn update(&mut self, message: Message) -> Action {
        match message {
            Message::Refresh => Action::Refresh,
            Message::CloneTo(d) => Action::CloneTo(d),
            Message::Manage(d) => Action::Manage(d),
        }
    }

    pub fn view<'a>(&'a self, data: &'a Snapshot) -> Element<'a, Message> {
        let firmware = match data.firmware.as_str() {
            "uefi" => "UEFI firmware",
            "bios" => "BIOS firmware",
            _ => "firmware unknown",
        };
        let summary = format!(
            "{} disk{} · {} · {} system{}",
            data.disks.len(),
            if data.disks.len() == 1 { "" } else { "s" },
            firmware,
            data.systems.len(),
            if data.systems.len() == 1 { "" } else { "s" },
        );
        let header = ui::spread(
            column![ui::title("Systems and disks"), ui::muted(summary)].spacing(ui::SPACE_XS),
            ui::button("refresh", "Refresh", Kind::Secondary, Some(Message::Refresh)),
        );

        let mut systems = row![].spacing(ui::SPACE_M);
        for s in &data.systems {
            systems = systems.push(system_tile(s));
        }
        let mut cards = column![].spacing(ui::SPACE_M);
        for d in &data.disks {
            cards = cards.push(disk_card(d));
        }
        if data.disks.is_empty() {
            cards = cards.push(ui::card(ui::muted("No disks: the service sees none.")));
        }
        let page = column![
            header,
            ui::heading("Systems"),
            systems.wrap().vertical_spacing(ui::SPACE_M),
            ui::heading("Disks"),
            cards,
        ]
        .spacing(ui::SPACE_M)
        .padding(ui::SPACE_L);
        scrollable(page).height(Length::Fill).into()
    }
}

/// A system in a few words: name, state, where it lives.
fn system_tile(s: &SystemInfo) -> Element<'_, Message> {
    let (what, tone) = system_role(s);
    let mut col = column![
        text(&s.name).size(ui::TEXT_L).font(ui::BOLD),
        row![ui::badge(what, tone), ui::muted(format!("on {}", s.disks.join(", ")))]
            .spacing(ui::SPACE_S)
            .align_y(Alignment::Center),
    ]
    .spacing(ui::SPACE_XS);
    if !s.running && !s.state_text.is_empty() {
        col = col.push(ui::muted(s.state_text.clone()));
    }
    if !s.created.is_empty() {
        let from = if s.source_host.is_empty() { String::new() } else { format!(" from {}", s.source_host) };
        col = col.push(ui::muted(format!("cloned{from} {}", format::date(&s.created))));
    }
    if !s.awake_at.is_empty() {
        col = col.push(ui::toned(format!("awake at {}", s.awake_at), Tone::Primary));
    }
    container(ui::card(col)).width(Length::Fixed(250.0)).into()
}

/// How a system is called in a badge.
pub fn system_role(s: &SystemInfo) -> (&'static str, Tone) {
    if s.running {
        ("running", Tone::Success)
    } else if s.former {
        ("former", Tone::Neutral)
    } else {
        match s.state.as_str() {
            "complete" => ("bootable", Tone::Primary),
            "incomplete" => ("incomplete", Tone::Danger),
            "copied" | "customized" => ("not bootable yet", Tone::Warning),
            _ => ("alternate", Tone::Primary),
        }
    }
}

/// A disk's role in a badge: what it is to altdisk.
pub fn disk_role(d: &DiskDetail) -> (String, Tone) {
    match d.kind.as_str() {
        kind::RUNNING => ("running system".into(), Tone::Success),
        kind::FORMER => {
            (if d.system.name.is_empty() { "old_rootvg".into() } else { d.system.name.clone() }, Tone::Neutral)
        }
        kind::ALTERNATE => (d.system.name.clone(), Tone::Primary),
        kind::FREE => ("free".into(), Tone::Success),
        kind::IN_USE => ("in use".into(), Tone::Warning),
        kind::HOLDS_DATA => ("holds data".into(), Tone::Warning),
        _ => (d.role.clone(), Tone::Neutral),
    }
}

/// One sentence saying what the disk is to altdisk.
pub fn role_sentence(d: &DiskDetail) -> String {
    let made = |s: &altdisk_api::SystemRef| {
        let mut t = String::new();
        if !s.source_host.is_empty() {
            t.push_str(&format!(", cloned from {}", s.source_host));
        }
        if !s.created.is_empty() {
            t.push_str(&format!(" on {}", format::date(&s.created)));
        }
        t
    };
    let when = |s: &altdisk_api::SystemRef| {
        let bits: Vec<String> =
            [s.source_host.clone(), format::date(&s.created)].into_iter().filter(|b| !b.is_empty()).collect();
        if bits.is_empty() {
            String::new()
        } else {
            format!(" ({})", bits.join(", "))
        }
    };
    match d.kind.as_str() {
        kind::RUNNING => "The running system (rootvg) is on this disk: it is never a target.".into(),
        kind::FORMER => format!("{}: the system the running one was cloned from{}.", d.system.name, when(&d.system)),
        kind::ALTERNATE => {
            let state = if d.system.state.is_empty() { d.detail.clone() } else { d.system.state.clone() };
            format!("Alternate system {} ({state}){}.", d.system.name, made(&d.system))
        }
        kind::FREE => "Free: a clone can go here.".into(),
        kind::IN_USE => format!("In use: {}.", if d.detail.is_empty() { "by this system" } else { &d.detail }),
        kind::HOLDS_DATA => "Holds data: a clone here erases it.".into(),
        _ => d.detail.clone(),
    }
}

fn disk_card(d: &DiskDetail) -> Element<'_, Message> {
    let (role, tone) = disk_role(d);
    let model = if d.model.trim().is_empty() { d.path.clone() } else { d.model.trim().to_string() };
    let mut ident = vec![d.name.clone()];
    if !d.alias.is_empty() {
        ident.push(d.alias.clone());
    }
    ident.push(format::bus(d));
    ident.push(format::bytes(d.size));
    if d.removable {
        ident.push("removable".into());
    }
    if d.read_only {
        ident.push("read-only".into());
    }
    let head = ui::spread(
        column![text(model).size(ui::TEXT_L).font(ui::BOLD), ui::muted(ident.join(" · "))].spacing(2),
        ui::badge(role, tone),
    );
    let facts = ui::facts_inline(vec![
        ("Serial", if d.serial.is_empty() { "—".to_string() } else { d.serial.clone() }),
        ("Device", d.path.clone()),
    ]);
    let mut col = column![head, facts, ui::bar::bar_with_legend(d.size, &d.partitions)].spacing(ui::SPACE_S);
    let sentence = ui::toned(
        role_sentence(d),
        match d.kind.as_str() {
            kind::IN_USE | kind::HOLDS_DATA => Tone::Warning,
            _ => Tone::Neutral,
        },
    );
    col = col.push(sentence);
    let holds: Vec<&String> = d.holds.iter().filter(|h| !h.is_empty()).collect();
    // The legend shows the partitions; what the service says a disk holding data holds
    // (filesystems, labels, an OS, a partition table) is what a clone there would erase.
    if !holds.is_empty() && d.kind == kind::HOLDS_DATA {
        let mut list = column![].spacing(2);
        for h in holds {
            list = list.push(ui::muted(format!("• {h}")));
        }
        col = col.push(list);
    }
    let mut actions = row![].spacing(ui::SPACE_S);
    if d.usable {
        actions = actions.push(ui::button(
            format!("clone-to-{}", d.name),
            "Clone to this disk",
            Kind::Primary,
            Some(Message::CloneTo(d.name.clone())),
        ));
    } else if d.erasable {
        actions = actions.push(ui::button(
            format!("clone-to-{}", d.name),
            "Clone here (erases it)…",
            Kind::Secondary,
            Some(Message::CloneTo(d.name.clone())),
        ));
    }
    if matches!(d.kind.as_str(), kind::ALTERNATE | kind::FORMER) {
        actions = actions.push(ui::button(
            format!("manage-{}", d.name),
            "Manage…",
            Kind::Secondary,
            Some(Message::Manage(d.name.clone())),
        ));
    }
    col = col.push(actions);
    ui::card(col)
}
