//! Manage: each system altdisk knows, with what can be done to it. An alternate system can
//! be woken (mounted, to look at or change) and put back to sleep, renamed, booted once on
//! trial, made the default, or removed; removing asks for its name to be typed, because its
//! disks are wiped. The running system is shown for reference and cannot be touched.

use altdisk_api::{DiskDetail, SystemInfo};
use iced::widget::{column, row, scrollable, text, text_input, Space};
use iced::{Alignment, Element, Length};

use crate::client::{ApiError, Snapshot};
use crate::format;
use crate::screen::disks;
use crate::ui::{self, Kind, Tone};

#[derive(Debug, Default)]
pub struct Manage {
    /// Renaming the system on this disk: (disk, new name typed).
    rename: Option<(String, String)>,
    /// Removing the system on this disk: (disk, its name, what was typed).
    remove: Option<(String, String, String)>,
    /// A call is out: what it does, shown instead of the buttons.
    busy: Option<String>,
    /// The last thing done, said under the title.
    done: Option<String>,
    /// The system to show first (from a disk card's "Manage").
    focus_disk: Option<String>,
}

/// A change the app asks the service for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Wake(String),
    Sleep(String),
    Rename(String, String),
    Remove(String),
    TrialBoot(String),
    MakeDefault(String),
}

impl Call {
    /// What it does, in words, for "…ing" notes and the banner.
    pub fn describe(&self) -> String {
        match self {
            Call::Wake(d) => format!("waking the system on {d}"),
            Call::Sleep(at) => format!("putting the system at {at} to sleep"),
            Call::Rename(d, n) => format!("renaming the system on {d} to {n}"),
            Call::Remove(d) => format!("removing the system on {d}"),
            Call::TrialBoot(d) => format!("setting {d} to boot once"),
            Call::MakeDefault(d) => format!("making {d} the default"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Message {
    Do(Call),
    StartRename(String, String),
    RenameText(String),
    ApplyRename,
    StartRemove(String, String),
    RemoveText(String),
    ConfirmRemove,
    CancelEdit,
    /// A call came back: what it was, and its answer (Wake answers where it mounted).
    Done(Call, Result<String, ApiError>),
}

#[derive(Debug)]
pub enum Action {
    None,
    Call(Call),
    /// The call failed: the banner says why.
    Error(ApiError),
    /// The call worked: read systems and disks again.
    Refresh,
}

impl Manage {
    /// Show this disk's system first.
    pub fn show(&mut self, disk: &str) {
        self.focus_disk = Some(disk.to_string());
    }

    /// Escape: close an open question.
    pub fn escape(&mut self) -> bool {
        let open = self.rename.is_some() || self.remove.is_some();
        self.rename = None;
        self.remove = None;
        open
    }

    pub fn update(&mut self, message: Message) -> Action {
        match message {
            Message::Do(call) => {
                if self.busy.is_some() {
                    return Action::None;
                }
                self.busy = Some(call.describe());
                self.done = None;
                return Action::Call(call);
            }
            Message::StartRename(disk, name) => {
                self.remove = None;
                self.rename = Some((disk, name));
            }
            Message::RenameText(t) => {
                if let Some(r) = &mut self.rename {
                    r.1 = t;
                }
            }
            Message::ApplyRename => {
                if let Some((disk, name)) = self.rename.take() {
                    let name = name.trim().to_string();
                    if !name.is_empty() {
                        return self.update(Message::Do(Call::Rename(disk, name)));
                    }
                }
            }
            Message::StartRemove(disk, name) => {
                self.rename = None;
                self.remove = Some((disk, name, String::new()));
            }
            Message::RemoveText(t) => {
                if let Some(r) = &mut self.remove {
                    r.2 = t;
                }
            }
            Message::ConfirmRemove => {
                if let Some((disk, name, typed)) = &self.remove {
                    if typed.trim() == name {
                        let disk = disk.clone();
                        self.remove = None;
                        return self.update(Message::Do(Call::Remove(disk)));
                    }
                }
            }
            Message::CancelEdit => {
                self.rename = None;
                self.remove = None;
            }
            Message::Done(call, r) => {
                self.busy = None;
                return match r {
                    Ok(answer) => {
                        self.done = Some(done_text(&call, &answer));
                        Action::Refresh
                    }
                    Err(e) => Action::Error(e),
                };
            }
        }
        Action::None
    }

    pub fn view<'a>(&'a self, data: &'a Snapshot) -> Element<'a, Message> {
        let mut page = column![ui::title("Manage systems")].spacing(ui::SPACE_M).padding(ui::SPACE_L);
        page = page.push(ui::muted(
            "Alternate systems made by altdisk: wake one to look inside, boot it once to try it, make it the default, or remove it.",
        ));
        if let Some(b) = &self.busy {
            page = page.push(ui::toned(format!("{}…", capitalise(b)), Tone::Primary));
        } else if let Some(d) = &self.done {
            page = page.push(ui::toned(d.clone(), Tone::Success));
        }
        let mut systems: Vec<&SystemInfo> = data.systems.iter().collect();
        // The one asked for first, then alternates, the former system, the running one last.
        systems.sort_by_key(|s| {
            let asked = self.focus_disk.as_ref().is_some_and(|d| s.disks.contains(d));
            (!asked, s.running, s.former)
        });
        let uefi = data.firmware == altdisk_api::firmware::UEFI;
        for s in systems {
            page = page.push(self.system_card(s, &data.disks, uefi));
        }
        if data.systems.is_empty() {
            page = page.push(ui::card(ui::muted("No systems known yet.")));
        }
        scrollable(page).height(Length::Fill).into()
    }

    fn system_card<'a>(&'a self, s: &'a SystemInfo, all_disks: &'a [DiskDetail], uefi: bool) -> Element<'a, Message> {
        let (role, tone) = disks::system_role(s);
        let mut badges = row![ui::badge(role, tone)].spacing(ui::SPACE_XS);
        if !s.awake_at.is_empty() {
            badges = badges.push(ui::badge(format!("awake at {}", s.awake_at), Tone::Primary));
        }
        if s.trial {
            badges = badges.push(ui::badge("trial boot pending", Tone::Warning));
        }
        let head = ui::spread(text(&s.name).size(ui::TEXT_L).font(ui::BOLD), badges);
        let disk_names: Vec<String> = s
            .disks
            .iter()
            .map(|n| match all_disks.iter().find(|d| &d.name == n) {
                Some(d) => format::disk_name(d),
                None => n.clone(),
            })
            .collect();
        let mut facts = column![ui::fact("Disks", disk_names.join("; "))].spacing(ui::SPACE_XS);
        if !s.state_text.is_empty() {
            facts = facts.push(ui::fact("State", s.state_text.clone()));
        }
        if !s.source_host.is_empty() {
            facts = facts.push(ui::fact("Cloned from", s.source_host.clone()));
        }
        if !s.created.is_empty() {
            facts = facts.push(ui::fact("Created", format::date(&s.created)));
        }
        if !s.updated.is_empty() && s.updated != s.created {
            facts = facts.push(ui::fact("Updated", format::date(&s.updated)));
        }
        if !s.boot_entry.is_empty() {
            facts = facts.push(ui::fact("Boot entry", s.boot_entry.clone()));
        }
        if !s.volume_group.is_empty() {
            facts = facts.push(ui::fact("Volume group", s.volume_group.clone()));
        }
        if !s.note.is_empty() {
            facts = facts.push(ui::toned(s.note.clone(), Tone::Warning));
        }
        let mut col = column![head, facts].spacing(ui::SPACE_S);
        let Some(disk) = s.disks.first() else {
            return ui::card(col);
        };
        if s.running {
            col = col.push(ui::muted("This is the running system: it is managed by running it."));
            return ui::card(col);
        }
        let key = |what: &str| format!("{what}-{disk}");
        let idle = self.busy.is_none();
        let maybe = |m: Message| idle.then_some(m);
        if let Some((d, name)) = self.rename.as_ref().filter(|(d, _)| d == disk) {
            col = col.push(
                row![
                    text_input("new name", name)
                        .id("rename-input")
                        .on_input(Message::RenameText)
                        .on_submit(Message::ApplyRename)
                        .padding(7)
                        .size(ui::TEXT_M)
                        .style(ui::input_style)
                        .width(Length::Fixed(260.0)),
                    ui::button(
                        "rename-apply",
                        format!("Rename {} to {}", s.name, name.trim()),
                        Kind::Primary,
                        (!name.trim().is_empty() && idle && d == disk).then_some(Message::ApplyRename),
                    ),
                    ui::button("rename-cancel", "Cancel", Kind::Secondary, Some(Message::CancelEdit)),
                ]
                .spacing(ui::SPACE_S)
                .align_y(Alignment::Center),
            );
        } else if let Some((_, name, typed)) = self.remove.as_ref().filter(|(d, _, _)| d == disk) {
            let matches = typed.trim() == name;
            col = col.push(ui::toned(
                format!(
                    "Removing {name} wipes {} and deletes its boot entry. Type its name, {name}, to confirm.",
                    s.disks.join(", ")
                ),
                Tone::Danger,
            ));
            col = col.push(
                row![
                    text_input(name, typed)
                        .id("remove-input")
                        .on_input(Message::RemoveText)
                        .on_submit(Message::ConfirmRemove)
                        .padding(7)
                        .size(ui::TEXT_M)
                        .style(ui::input_style)
                        .width(Length::Fixed(260.0)),
                    ui::button(
                        "remove-confirm",
                        format!("Remove {name} and wipe {}", s.disks.join(", ")),
                        Kind::Danger,
                        (matches && idle).then_some(Message::ConfirmRemove),
                    ),
                    ui::button("remove-cancel", "Cancel", Kind::Secondary, Some(Message::CancelEdit)),
                ]
                .spacing(ui::SPACE_S)
                .align_y(Alignment::Center),
            );
        } else {
            let mut actions = row![].spacing(ui::SPACE_S);
            actions = if s.awake_at.is_empty() {
                actions.push(ui::button(
                    key("wake"),
                    "Wake",
                    Kind::Secondary,
                    maybe(Message::Do(Call::Wake(disk.clone()))),
                ))
            } else {
                actions.push(ui::button(
                    key("sleep"),
                    "Sleep",
                    Kind::Secondary,
                    maybe(Message::Do(Call::Sleep(s.awake_at.clone()))),
                ))
            };
            actions = actions.push(ui::button(
                key("rename"),
                "Rename…",
                Kind::Secondary,
                maybe(Message::StartRename(disk.clone(), s.name.clone())),
            ));
            if uefi {
                actions = actions
                    .push(ui::button(
                        key("trial"),
                        "Boot it once",
                        Kind::Secondary,
                        maybe(Message::Do(Call::TrialBoot(disk.clone()))),
                    ))
                    .push(ui::button(
                        key("default"),
                        "Make it the default",
                        Kind::Secondary,
                        maybe(Message::Do(Call::MakeDefault(disk.clone()))),
                    ));
            }
            actions = actions.push(Space::new().width(Length::Fill)).push(ui::button(
                key("remove"),
                "Remove…",
                Kind::Danger,
                maybe(Message::StartRemove(disk.clone(), s.name.clone())),
            ));
            col = col.push(actions);
            if !uefi {
                col = col.push(ui::muted("BIOS firmware: choose the disk to boot in the firmware's boot menu."));
            }
        }
        ui::card(col)
    }
}

/// What a call that worked did; `answer` is what the service returned (Wake: where).
fn done_text(call: &Call, answer: &str) -> String {
    match call {
        Call::Wake(d) => format!("The system on {d} is awake: mounted at {answer}."),
        Call::Sleep(at) => format!("Put to sleep: {at} is unmounted."),
        Call::Rename(d, n) => format!("The system on {d} is now called {n}."),
        Call::Remove(d) => format!("Removed: {d} is free."),
        Call::TrialBoot(d) => {
            format!("{d} boots once at the next start; it becomes the default if it comes up healthy.")
        }
        Call::MakeDefault(d) => format!("{d} is now first in the boot order."),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
