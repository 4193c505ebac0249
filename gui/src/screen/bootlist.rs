//! Boot list: the UEFI boot order shown as disks and the systems on them. Disks can be moved
//! up and down and left out, then applied in one go (`SetBootList`: these disks first, in
//! this order, every other entry after them); any disk can be booted once next time
//! (`SetBootNext`). On a BIOS machine the firmware owns the order, and the screen says so.

use altdisk_api::{firmware, BootEntryInfo};
use iced::widget::{column, container, row, scrollable, text, Space};
use iced::{Alignment, Element, Length};

use crate::client::{ApiError, Snapshot};
use crate::format;
use crate::ui::{self, Kind, Tone};

/// One disk of the order being edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub disk: String,
    /// Put it in the order (first ones); left out, it stays after them as the firmware has it.
    pub include: bool,
}

#[derive(Debug, Default)]
pub struct BootList {
    rows: Vec<Row>,
    /// The user changed the order: a new boot list from the service does not replace it.
    edited: bool,
    busy: Option<String>,
    done: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Message {
    Up(usize),
    Down(usize),
    Include(usize, bool),
    Apply,
    Undo,
    BootNext(String),
    Refresh,
    Done(String, Result<(), ApiError>),
}

#[derive(Debug)]
pub enum Action {
    None,
    SetBootList(Vec<String>),
    BootNext(String),
    Refresh,
    Error(ApiError),
}

impl BootList {
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The order as the firmware has it: disks in BootOrder first, then the others.
    pub fn rows_of(entries: &[BootEntryInfo]) -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::new();
        let mut push = |e: &BootEntryInfo, include: bool| {
            if !e.disk.is_empty() && !rows.iter().any(|r| r.disk == e.disk) {
                rows.push(Row { disk: e.disk.clone(), include });
            }
        };
        for e in entries.iter().filter(|e| e.in_order) {
            push(e, true);
        }
        for e in entries.iter().filter(|e| !e.in_order) {
            push(e, false);
        }
        rows
    }

    /// New entries from the service: shown as they are, unless the user is editing.
    pub fn sync(&mut self, entries: &[BootEntryInfo]) {
        let fresh = BootList::rows_of(entries);
        if !self.edited {
            self.rows = fresh;
        } else {
            // Keep the edit, but drop disks that went and add ones that came.
            self.rows.retain(|r| fresh.iter().any(|f| f.disk == r.disk));
            for f in fresh {
                if !self.rows.iter().any(|r| r.disk == f.disk) {
                    self.rows.push(f);
                }
            }
        }
    }

    pub fn update(&mut self, message: Message, data: &Snapshot) -> Action {
        match message {
            Message::Up(i) if i > 0 && i < self.rows.len() => {
                self.rows.swap(i, i - 1);
                self.edited = true;
            }
            Message::Down(i) if i + 1 < self.rows.len() => {
                self.rows.swap(i, i + 1);
                self.edited = true;
            }
            Message::Up(_) | Message::Down(_) => {}
            Message::Include(i, on) => {
                if let Some(r) = self.rows.get_mut(i) {
                    r.include = on;
                    self.edited = true;
                }
            }
            Message::Undo => {
                self.edited = false;
                self.rows = BootList::rows_of(&data.boot);
            }
            Message::Apply => {
                let disks: Vec<String> = self.rows.iter().filter(|r| r.include).map(|r| r.disk.clone()).collect();
                if disks.is_empty() || self.busy.is_some() {
                    return Action::None;
                }
                self.busy = Some(format!("setting the boot order: {}", disks.join(", ")));
                self.done = None;
                return Action::SetBootList(disks);
            }
            Message::BootNext(disk) => {
                if self.busy.is_some() {
                    return Action::None;
                }
                self.busy = Some(format!("setting {disk} to boot next"));
                self.done = None;
                return Action::BootNext(disk);
            }
            Message::Refresh => return Action::Refresh,
            Message::Done(what, r) => {
                self.busy = None;
                return match r {
                    Ok(()) => {
                        self.edited = false;
                        self.done = Some(what);
                        Action::Refresh
                    }
                    Err(e) => Action::Error(e),
                };
            }
        }
        Action::None
    }

    pub fn view<'a>(&'a self, data: &'a Snapshot) -> Element<'a, Message> {
        let mut page = column![ui::spread(
            ui::title("Boot list"),
            ui::button("bootlist-refresh", "Refresh", Kind::Secondary, Some(Message::Refresh))
        )]
        .spacing(ui::SPACE_M)
        .padding(ui::SPACE_L);
        if data.firmware == firmware::BIOS {
            page = page.push(ui::card(
                column![
                    ui::heading("The firmware owns the boot order"),
                    ui::body(
                        "This machine started in BIOS (legacy) mode: there is no boot list to set from here. \
                         Choose the disk to start from in the firmware's setup or boot menu (often F2, F12, \
                         Esc or Del at power-on); altdisk makes every clone bootable from its own disk."
                    ),
                ]
                .spacing(ui::SPACE_S),
            ));
            return page.into();
        }
        page = page.push(ui::muted(
            "The order the firmware tries the disks in. Move disks, leave some out, then apply; \
             disks left out and other entries (network, shell) come after them.",
        ));
        if let Some(b) = &self.busy {
            page = page.push(ui::toned(format!("{}…", capitalise(b)), Tone::Primary));
        } else if let Some(d) = &self.done {
            page = page.push(ui::toned(d.clone(), Tone::Success));
        }

        let mut table = column![].spacing(ui::SPACE_S);
        let mut position = 0;
        let idle = self.busy.is_none();
        for (i, r) in self.rows.iter().enumerate() {
            let entries: Vec<&BootEntryInfo> = data.boot.iter().filter(|e| e.disk == r.disk).collect();
            let disk = data.disks.iter().find(|d| d.name == r.disk);
            let name = disk.map(format::disk_name).unwrap_or_else(|| r.disk.clone());
            let system = entries.iter().find(|e| !e.system.is_empty()).map(|e| e.system.clone()).unwrap_or_default();
            let numbers: Vec<String> = entries.iter().map(|e| format!("{} {}", e.number, e.description)).collect();
            let mut badges = row![].spacing(ui::SPACE_XS);
            if entries.iter().any(|e| e.current) {
                badges = badges.push(ui::badge("booted now", Tone::Success));
            }
            if entries.iter().any(|e| e.next) {
                badges = badges.push(ui::badge("boots next", Tone::Warning));
            }
            let place = if r.include {
                position += 1;
                text(format!("{position}")).size(ui::TEXT_L).font(ui::BOLD)
            } else {
                text("–").size(ui::TEXT_L)
            };
            let line = row![
                container(place).width(Length::Fixed(28.0)),
                ui::check(format!("boot-include-{}", r.disk), "", r.include, move |on| Message::Include(i, on)),
                column![
                    row![
                        text(if system.is_empty() { "no system known".to_string() } else { system })
                            .size(ui::TEXT_M)
                            .font(ui::SEMIBOLD),
                        badges
                    ]
                    .spacing(ui::SPACE_S)
                    .align_y(Alignment::Center),
                    ui::muted(format!("{name} · {}", numbers.join(", "))),
                ]
                .spacing(2)
                .width(Length::Fill),
                ui::button(
                    format!("boot-up-{}", r.disk),
                    "↑",
                    Kind::Secondary,
                    (i > 0 && idle).then_some(Message::Up(i))
                ),
                ui::button(
                    format!("boot-down-{}", r.disk),
                    "↓",
                    Kind::Secondary,
                    (i + 1 < self.rows.len() && idle).then_some(Message::Down(i)),
                ),
                ui::button(
                    format!("boot-next-{}", r.disk),
                    "Boot next once",
                    Kind::Secondary,
                    idle.then_some(Message::BootNext(r.disk.clone())),
                ),
            ]
            .spacing(ui::SPACE_S)
            .align_y(Alignment::Center);
            table = table.push(ui::card_selected(line, r.include && position == 1, Tone::Primary));
        }
        if self.rows.is_empty() {
            table = table.push(ui::card(ui::muted("No boot entry points at a disk.")));
        }
        page = page.push(table);
        let can_apply = self.edited && idle && self.rows.iter().any(|r| r.include);
        page = page.push(
            row![
                ui::button("bootlist-apply", "Apply this order", Kind::Primary, can_apply.then_some(Message::Apply)),
                ui::button("bootlist-undo", "Undo changes", Kind::Secondary, self.edited.then_some(Message::Undo)),
                Space::new().width(Length::Fill),
            ]
            .spacing(ui::SPACE_S),
        );
        let firmware_entries: Vec<&BootEntryInfo> = data.boot.iter().filter(|e| e.disk.is_empty()).collect();
        if !firmware_entries.is_empty() {
            let mut col = column![ui::heading("Other entries")].spacing(ui::SPACE_XS);
            col = col.push(ui::muted("Not disks: they stay after the disks above."));
            for e in firmware_entries {
                let order = if e.in_order { "in the order" } else { "not in the order" };
                col = col.push(ui::body(format!("{} {} ({order})", e.number, e.description)));
            }
            page = page.push(ui::card(col));
        }
        scrollable(page).height(Length::Fill).into()
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: &str, disk: &str, in_order: bool) -> BootEntryInfo {
        BootEntryInfo {
            number: number.into(),
            description: "x".into(),
            disk: disk.into(),
            system: String::new(),
            active: true,
            in_order,
            next: false,
            current: false,
        }
    }

    #[test]
    fn rows_put_ordered_disks_first_and_drop_firmware_entries() {
        let e = [
            entry("Boot0001", "nvme0n1", true),
            entry("Boot0004", "", true),
            entry("Boot0003", "sdb", false),
            entry("Boot0002", "sda", true),
        ];
        let rows = BootList::rows_of(&e);
        let names: Vec<(&str, bool)> = rows.iter().map(|r| (r.disk.as_str(), r.include)).collect();
        assert_eq!(names, vec![("nvme0n1", true), ("sda", true), ("sdb", false)]);
    }

    #[test]
    fn moving_and_applying_sends_the_included_disks_in_order() {
        let data = Snapshot {
            boot: vec![
                entry("Boot0001", "nvme0n1", true),
                entry("Boot0002", "sda", true),
                entry("Boot0003", "sdb", false),
            ],
            firmware: "uefi".into(),
            ..Snapshot::default()
        };
        let mut b = BootList::default();
        b.sync(&data.boot);
        let _ = b.update(Message::Include(2, true), &data);
        let _ = b.update(Message::Up(2), &data);
        let _ = b.update(Message::Up(1), &data);
        let _ = b.update(Message::Include(2, false), &data);
        match b.update(Message::Apply, &data) {
            Action::SetBootList(d) => assert_eq!(d, vec!["sdb".to_string(), "nvme0n1".to_string()]),
            other => panic!("{other:?}"),
        }
        // While the edit is out, a new list from the service does not undo it.
        b.sync(&data.boot);
        assert_eq!(b.rows()[0].disk, "sdb");
    }
}
