//! Rescue: every system found on the machine's disks (`FindSystems`): the running one, those
//! altdisk made (old_rootvg, alternates, clones left incomplete) and other Linux systems,
//! each with its operating system, kernels, state and disks. For each one that is not
//! running: make it the system that boots (its boot entry first), boot it once, boot it now
//! (the machine restarts: asked first), repair its boot (a job, followed on the progress
//! screen), or clone it onto another disk (the clone wizard opens with it as the source: the
//! offline disk swap). What cannot be done to a system says why next to it.
//!
//! Finding looks into every filesystem (read-only, seconds), so it runs when the screen is
//! opened and the disks changed since, and when asked (Refresh), not on every refresh of the
//! other screens.

use altdisk_api::{found_kind, DiskDetail, FoundSystem};
use iced::widget::{column, row, scrollable, text, Space};
use iced::{Alignment, Element, Length};

use crate::client::{ApiError, Snapshot};
use crate::format;
use crate::ui::{self, Kind, Tone};

#[derive(Debug, Default)]
pub struct Rescue {
    /// What `FindSystems` said last; None until it answered once.
    found: Option<Vec<FoundSystem>>,
    /// `FindSystems` is out.
    finding: bool,
    /// The disks (or the systems on them) changed since the systems were found.
    stale: bool,
    /// A question open, about the system on this disk.
    ask: Option<Ask>,
    /// In the boot-now question: start the kernel with kexec, not through the firmware.
    kexec: bool,
    /// A call is out: what it does, shown instead of the buttons.
    busy: Option<String>,
    /// The last thing done, said under the title.
    done: Option<String>,
}

/// A question before a change, about the system on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    Restore(String),
    BootNow(String),
    Repair(String),
}

impl Ask {
    fn disk(&self) -> &str {
        match self {
            Ask::Restore(d) | Ask::BootNow(d) | Ask::Repair(d) => d,
        }
    }
}

/// A change the app asks the service for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Restore { disk: String, once: bool },
    BootNow { disk: String, kexec: bool },
    Repair(String),
}

impl Call {
    /// What it does, in words, for the "…ing" note.
    pub fn describe(&self) -> String {
        match self {
            Call::Restore { disk, once: false } => format!("making the system on {disk} the one that boots"),
            Call::Restore { disk, once: true } => format!("setting the system on {disk} to boot once"),
            Call::BootNow { disk, .. } => format!("booting the system on {disk}"),
            Call::Repair(disk) => format!("starting the repair of the system on {disk}"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Message {
    Refresh,
    Found(Result<Vec<FoundSystem>, ApiError>),
    Ask(Ask),
    Kexec(bool),
    CancelAsk,
    Do(Call),
    /// A call came back: what it was, and its answer (the service's line; a repair: its job).
    Done(Call, Result<String, ApiError>),
    /// Clone the system on this disk (its name) onto another disk; an empty disk: the
    /// running system.
    CloneFrom {
        disk: String,
        name: String,
    },
}

#[derive(Debug)]
pub enum Action {
    None,
    /// Ask the service for the systems on the disks (the answer: [`Message::Found`]).
    Find,
    Call(Call),
    /// The call failed: the banner says why.
    Error(ApiError),
    /// The boot order changed: read it (and the disks) again.
    Refresh,
    /// A repair started: follow its job.
    Follow(String),
    /// Open the clone wizard with this system as the source (`disk` empty: the running one).
    CloneFrom {
        disk: String,
        name: String,
    },
}

impl Rescue {
    pub fn found(&self) -> Option<&[FoundSystem]> {
        self.found.as_deref()
    }

    pub fn finding(&self) -> bool {
        self.finding
    }

    pub fn asking(&self) -> Option<&Ask> {
        self.ask.as_ref()
    }

    /// What the last call that worked did, in words.
    pub fn done(&self) -> Option<&str> {
        self.done.as_deref()
    }

    /// What was found may be out of date: look again when the screen is next shown.
    pub fn stale(&mut self) {
        self.stale = true;
    }

    /// The screen is shown: look for the systems when that was never done, or the disks
    /// changed since.
    pub fn shown(&mut self) -> Action {
        if (self.found.is_none() || self.stale) && !self.finding {
            self.finding = true;
            return Action::Find;
        }
        Action::None
    }

    /// Escape: close an open question.
    pub fn escape(&mut self) -> bool {
        self.ask.take().is_some()
    }

    pub fn update(&mut self, message: Message) -> Action {
        match message {
            Message::Refresh => {
                if !self.finding {
                    self.finding = true;
                    return Action::Find;
                }
            }
            Message::Found(r) => {
                self.finding = false;
                match r {
                    Ok(found) => {
                        self.stale = false;
                        // A question about a system that is gone closes.
                        if let Some(a) = &self.ask {
                            if !found.iter().any(|f| f.disks.first().map(String::as_str) == Some(a.disk())) {
                                self.ask = None;
                            }
                        }
                        self.found = Some(found);
                    }
                    Err(e) => return Action::Error(e),
                }
            }
            Message::Ask(a) => {
                if self.busy.is_none() {
                    self.kexec = false;
                    self.ask = Some(a);
                }
            }
            Message::Kexec(v) => self.kexec = v,
            Message::CancelAsk => self.ask = None,
            Message::Do(call) => {
                if self.busy.is_some() {
                    return Action::None;
                }
                self.ask = None;
                self.busy = Some(call.describe());
                self.done = None;
                return Action::Call(call);
            }
            Message::Done(call, r) => {
                self.busy = None;
                return match r {
                    Ok(answer) => {
                        if let Call::Repair(_) = call {
                            self.stale = true;
                            return Action::Follow(answer);
                        }
                        self.done = Some(done_text(&call, &answer));
                        Action::Refresh
                    }
                    Err(e) => Action::Error(e),
                };
            }
            Message::CloneFrom { disk, name } => return Action::CloneFrom { disk, name },
        }
        Action::None
    }

    pub fn view<'a>(&'a self, data: &'a Snapshot) -> Element<'a, Message> {
        let uefi = data.firmware == altdisk_api::firmware::UEFI;
        let header = column![
            ui::spread(
                ui::title("Rescue"),
                ui::button(
                    "rescue-refresh",
                    "Look again",
                    Kind::Secondary,
                    (!self.finding && self.busy.is_none()).then_some(Message::Refresh),
                ),
            ),
            ui::muted(
                "Every system found on this machine's disks. Make one the system that boots, boot it now, repair its \
                 boot, or clone it onto another disk (the offline disk swap: the new disk then boots alone)."
            ),
        ]
        .spacing(ui::SPACE_XS);
        let mut page = column![header].spacing(ui::SPACE_M).padding(ui::SPACE_L);
        if let Some(b) = &self.busy {
            page = page.push(ui::toned(format!("{}…", capitalise(b)), Tone::Primary));
        } else if let Some(d) = &self.done {
            page = page.push(ui::toned(d.clone(), Tone::Success));
        }
        if self.finding {
            page = page.push(ui::toned(
                "Looking into the disks… (each filesystem is mounted read-only for a moment)",
                Tone::Primary,
            ));
        } else if self.stale && self.found.is_some() {
            page = page.push(ui::toned("The disks changed since: Look again to see them as they are.", Tone::Warning));
        }
        let Some(found) = &self.found else {
            if !self.finding {
                page = page.push(ui::card(ui::muted("The systems have not been looked for yet.")));
            }
            return scrollable(page).height(Length::Fill).into();
        };
        page = page.push(ui::muted(summary(found)));
        if !uefi {
            page = page.push(ui::card(
                column![
                    text("BIOS firmware").size(ui::TEXT_M).font(ui::SEMIBOLD),
                    ui::muted(
                        "The firmware chooses the disk at power-on (its boot menu, often F12, F11 or Esc), so no system \
                         can be made the one that boots from here. Repairing a system writes GRUB to its disk's boot code; \
                         booting one now starts its kernel directly (kexec)."
                    ),
                ]
                .spacing(ui::SPACE_XS),
            ));
        }
        let mut systems: Vec<&FoundSystem> = found.iter().collect();
        // The ones a rescue is about first: old_rootvg, bootable systems, the others, the
        // incomplete ones; the running system last.
        systems.sort_by_key(|f| (f.kind == found_kind::RUNNING, f.kind != found_kind::OLD_ROOTVG, !f.bootable));
        for f in systems {
            page = page.push(self.card(f, data, uefi));
        }
        if found.is_empty() {
            page = page.push(ui::card(ui::muted("No system was found on the disks.")));
        }
        scrollable(page).height(Length::Fill).into()
    }

    fn card<'a>(&'a self, f: &'a FoundSystem, data: &'a Snapshot, uefi: bool) -> Element<'a, Message> {
        let (what, tone) = kind_badge(f);
        let mut badges = row![ui::badge(what, tone)].spacing(ui::SPACE_XS);
        if f.kind != found_kind::RUNNING {
            badges = badges.push(if f.bootable {
                ui::badge("bootable", Tone::Success)
            } else {
                ui::badge("not bootable", Tone::Danger)
            });
        }
        let title = if f.kind == found_kind::OTHER && !f.os.is_empty() { f.os.clone() } else { f.name.clone() };
        let head = ui::spread(text(title).size(ui::TEXT_L).font(ui::BOLD), badges);
        let disks: Vec<String> = f.disks.iter().map(|n| disk_words(n, &data.disks)).collect();
        // Two columns of facts: what it is on the left, its history on the right.
        let mut left = column![].spacing(ui::SPACE_XS).width(Length::FillPortion(1));
        let mut right = column![].spacing(ui::SPACE_XS).width(Length::FillPortion(1));
        if !f.os.is_empty() && f.kind != found_kind::OTHER {
            left = left.push(ui::fact("System", f.os.clone()));
        }
        left = left.push(ui::fact("Disks", disks.join("; ")));
        left = left.push(ui::fact(
            "Kernels",
            if f.kernels.is_empty() { "none found in /boot".to_string() } else { f.kernels.join(", ") },
        ));
        right = right.push(ui::fact("State", f.state.clone()));
        if !f.host.is_empty() || !f.created.is_empty() {
            let mut made = Vec::new();
            if !f.host.is_empty() {
                made.push(format!("cloned from {}", f.host));
            }
            if !f.created.is_empty() {
                made.push(format::date(&f.created));
            }
            right = right.push(ui::fact("Made", made.join(", ")));
        }
        if !f.root.is_empty() {
            right = right.push(ui::fact("Root", f.root.clone()));
        }
        let facts = row![left, right].spacing(ui::SPACE_M);
        let mut col = column![head, facts].spacing(ui::SPACE_S);
        let Some(disk) = f.disks.first() else {
            return ui::card(col);
        };
        let idle = self.busy.is_none() && self.ask.is_none();
        let maybe = |ok: bool, m: Message| (idle && ok).then_some(m);
        if f.kind == found_kind::RUNNING {
            col = col.push(ui::muted(
                "This machine runs it now: it is the system every other one here is restored from or to.",
            ));
            col = col.push(ui::button(
                "clone-from-running",
                "Clone to a disk…",
                Kind::Secondary,
                maybe(true, Message::CloneFrom { disk: String::new(), name: f.name.clone() }),
            ));
            return ui::card(col);
        }
        let who = format!("{} on {disk}", f.name);
        let incomplete = f.state.starts_with("incomplete");
        let mut actions = row![].spacing(ui::SPACE_S);
        if uefi {
            actions = actions
                .push(ui::button(
                    format!("restore-{disk}"),
                    "Boot from now on…",
                    // What a rescue is usually for: going back to old_rootvg.
                    if f.kind == found_kind::OLD_ROOTVG { Kind::Primary } else { Kind::Secondary },
                    maybe(f.bootable, Message::Ask(Ask::Restore(disk.clone()))),
                ))
                .push(ui::button(
                    format!("once-{disk}"),
                    "Boot once",
                    Kind::Secondary,
                    maybe(f.bootable, Message::Do(Call::Restore { disk: disk.clone(), once: true })),
                ));
        }
        actions = actions
            .push(ui::button(
                format!("boot-now-{disk}"),
                if uefi { "Boot now…" } else { "Boot now (kexec)…" },
                Kind::Secondary,
                maybe(f.bootable, Message::Ask(Ask::BootNow(disk.clone()))),
            ))
            .push(ui::button(
                format!("repair-{disk}"),
                "Repair boot…",
                Kind::Secondary,
                maybe(!f.kernels.is_empty() && !incomplete, Message::Ask(Ask::Repair(disk.clone()))),
            ))
            .push(ui::button(
                format!("clone-from-{disk}"),
                "Clone to a disk…",
                Kind::Secondary,
                maybe(!incomplete && !f.os.is_empty(), Message::CloneFrom { disk: disk.clone(), name: f.name.clone() }),
            ));
        col = col.push(actions.wrap().vertical_spacing(ui::SPACE_S));
        // Why what is greyed cannot be done.
        if incomplete {
            col = col.push(ui::toned(
                format!(
                    "An incomplete clone: it cannot boot and holds nothing to clone. Clone onto {disk} again, or remove it \
                     (Manage)."
                ),
                Tone::Warning,
            ));
        } else if !f.bootable {
            col = col.push(ui::toned(
                if f.kernels.is_empty() {
                    "Not bootable: no kernel in its /boot, so there is nothing to boot or repair.".to_string()
                } else {
                    format!("Not bootable ({}): repair its boot first.", f.state)
                },
                Tone::Warning,
            ));
        }
        if let Some(a) = self.ask.as_ref().filter(|a| a.disk() == disk) {
            col = col.push(ui::separator());
            col = col.push(self.question(a, f, &who, data, uefi));
        }
        ui::card(col)
    }

    /// The question before a change: what changes, in words, and a button that says it.
    fn question<'a>(
        &'a self,
        a: &Ask,
        f: &'a FoundSystem,
        who: &str,
        data: &'a Snapshot,
        uefi: bool,
    ) -> Element<'a, Message> {
        let disk = f.disks.first().cloned().unwrap_or_default();
        let running: Vec<String> = data
            .systems
            .iter()
            .filter(|s| s.running)
            .flat_map(|s| s.disks.iter().map(|d| disk_words(d, &data.disks)))
            .collect();
        let kernel = f.kernels.last().cloned().unwrap_or_default();
        let cancel = ui::button("ask-cancel", "Cancel", Kind::Secondary, Some(Message::CancelAsk));
        let kexec_choice = || -> Element<'a, Message> {
            ui::check(
                "boot-now-kexec",
                format!("Start its kernel {kernel} directly (kexec), without the firmware"),
                self.kexec,
                Message::Kexec,
            )
        };
        let (words, extra, button): (String, Option<Element<'a, Message>>, Element<'a, Message>) = match a {
            Ask::Restore(_) => (
                format!(
                    "Make {who} the system that boots: its UEFI boot entry (made again from its EFI system partition if \
                     the firmware lost it) goes first in the boot order, and every start boots it from now on. \
                     The running system{} stays as it is, one boot-order change away.",
                    if running.is_empty() { String::new() } else { format!(" on {}", running.join(", ")) }
                ),
                None,
                ui::button(
                    "restore-confirm",
                    format!("Boot {} from now on", f.name),
                    Kind::Primary,
                    Some(Message::Do(Call::Restore { disk: disk.clone(), once: false })),
                ),
            ),
            // Under UEFI the question offers kexec as the other way; without it, kexec is the way.
            Ask::BootNow(_) if uefi && !self.kexec => (
                format!(
                    "Restart the machine now into {who}, once (UEFI BootNext): the boot order stays as it is. Every \
                     program running here stops: save your work first."
                ),
                Some(kexec_choice()),
                ui::button(
                    "boot-now-confirm",
                    format!("Restart now into {}", f.name),
                    Kind::Danger,
                    Some(Message::Do(Call::BootNow { disk: disk.clone(), kexec: false })),
                ),
            ),
            Ask::BootNow(_) => (
                format!(
                    "Start the kernel {kernel} of {who} now with kexec: this system is left at once, without a firmware \
                     restart, and the boot order stays as it is. Every program running here stops: save your work first."
                ),
                uefi.then(kexec_choice),
                ui::button(
                    "boot-now-confirm",
                    format!("Leave this system and start {} now", f.name),
                    Kind::Danger,
                    Some(Message::Do(Call::BootNow { disk: disk.clone(), kexec: true })),
                ),
            ),
            Ask::Repair(_) => (
                format!(
                    "Repair the boot of {who}: it is mounted read-write, its initramfs made again for {} and its boot \
                     loader installed again with its own tools{}. Its other files are not changed.",
                    f.kernels.join(", "),
                    if uefi {
                        " (with the fallback \\EFI\\BOOT\\BOOTX64.EFI); its UEFI boot entry is made and put first in the \
                         boot order, so the next start boots it"
                    } else {
                        ", GRUB written to the boot code of its disk"
                    }
                ),
                None,
                ui::button(
                    "repair-confirm",
                    format!("Rewrite the boot files of {} on {}", f.name, f.disks.join(", ")),
                    Kind::Danger,
                    Some(Message::Do(Call::Repair(disk.clone()))),
                ),
            ),
        };
        let mut q = column![text(words).size(ui::TEXT_M)].spacing(ui::SPACE_S);
        if let Some(e) = extra {
            q = q.push(e);
        }
        q.push(row![button, cancel, Space::new().width(Length::Fill)].spacing(ui::SPACE_S).align_y(Alignment::Center))
            .into()
    }
}

/// How a found system is called in its badge.
fn kind_badge(f: &FoundSystem) -> (&'static str, Tone) {
    match f.kind.as_str() {
        found_kind::RUNNING => ("running", Tone::Success),
        found_kind::OLD_ROOTVG => ("old_rootvg", Tone::Primary),
        found_kind::ALTDISK if f.state.starts_with("incomplete") => ("incomplete clone", Tone::Warning),
        found_kind::ALTDISK => ("made by altdisk", Tone::Primary),
        _ => ("not made by altdisk", Tone::Neutral),
    }
}

/// "5 systems: 1 running, 1 old_rootvg, 2 made by altdisk (1 incomplete), 1 other".
fn summary(found: &[FoundSystem]) -> String {
    let n = |k: &str| found.iter().filter(|f| f.kind == k).count();
    let incomplete =
        found.iter().filter(|f| f.kind == found_kind::ALTDISK && f.state.starts_with("incomplete")).count();
    let mut parts = Vec::new();
    for (k, label) in [
        (found_kind::RUNNING, "running"),
        (found_kind::OLD_ROOTVG, "old_rootvg"),
        (found_kind::ALTDISK, "made by altdisk"),
        (found_kind::OTHER, "other"),
    ] {
        let c = n(k);
        if c > 0 {
            let mut p = format!("{c} {label}");
            if k == found_kind::ALTDISK && incomplete > 0 {
                p.push_str(&format!(" ({incomplete} incomplete)"));
            }
            parts.push(p);
        }
    }
    let total = found.len();
    format!("{total} system{} found: {}", if total == 1 { "" } else { "s" }, parts.join(", "))
}

/// A disk as people know it: "CT500MX500SSD1 (sda), 465 GiB".
fn disk_words(name: &str, disks: &[DiskDetail]) -> String {
    match disks.iter().find(|d| d.name == name) {
        Some(d) => format!("{}, {}", format::disk_short(d), format::bytes(d.size)),
        None => name.to_string(),
    }
}

/// What a call that worked did; `answer` is the service's line.
fn done_text(call: &Call, answer: &str) -> String {
    match call {
        Call::Restore { once: false, .. } => format!("Done: {answer}. The next start boots it."),
        Call::Restore { once: true, .. } => format!("Done: {answer}. The boot order stays as it is."),
        Call::BootNow { .. } => format!("Done: {answer}."),
        Call::Repair(d) => format!("The repair of the system on {d} started."),
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
    use crate::client::ErrorKind;

    fn found(disk: &str, kind: &str) -> FoundSystem {
        FoundSystem { name: "x".into(), kind: kind.into(), disks: vec![disk.into()], ..Default::default() }
    }

    #[test]
    fn finds_once_and_again_only_when_stale() {
        let mut r = Rescue::default();
        assert!(matches!(r.shown(), Action::Find));
        assert!(matches!(r.shown(), Action::None), "a second find while one is out");
        r.update(Message::Found(Ok(vec![found("sda", found_kind::OLD_ROOTVG)])));
        assert!(matches!(r.shown(), Action::None), "found again without a change");
        r.stale();
        assert!(matches!(r.shown(), Action::Find));
        // A failed find says why and may be tried again.
        let a = r.update(Message::Found(Err(ApiError::new(ErrorKind::AccessDenied, "no"))));
        assert!(matches!(a, Action::Error(_)) && !r.finding());
        assert!(matches!(r.update(Message::Refresh), Action::Find));
    }

    #[test]
    fn a_question_closes_when_its_system_goes_and_a_repair_is_followed() {
        let mut r = Rescue::default();
        r.update(Message::Found(Ok(vec![found("sda", found_kind::OLD_ROOTVG), found("sdc", found_kind::OTHER)])));
        r.update(Message::Ask(Ask::Repair("sdc".into())));
        assert_eq!(r.asking(), Some(&Ask::Repair("sdc".into())));
        r.update(Message::Found(Ok(vec![found("sda", found_kind::OLD_ROOTVG)])));
        assert!(r.asking().is_none(), "a question about an unplugged disk stays open");
        assert!(!r.escape(), "Escape closed nothing and said it did");
        // Nothing is asked twice while a call is out; a repair's answer is its job.
        let call = Call::Repair("sda".into());
        assert!(matches!(r.update(Message::Do(call.clone())), Action::Call(_)));
        assert!(matches!(r.update(Message::Do(call.clone())), Action::None));
        let a = r.update(Message::Done(call, Ok("/org/altdisk/AltDisk1/jobs/3".into())));
        assert!(matches!(a, Action::Follow(p) if p == "/org/altdisk/AltDisk1/jobs/3"));
        // Restore's answer is said, and the boot list read again.
        let call = Call::Restore { disk: "sda".into(), once: false };
        r.update(Message::Do(call.clone()));
        let a =
            r.update(Message::Done(call, Ok("old_rootvg on sda is first in the UEFI boot order (Boot0002)".into())));
        assert!(matches!(a, Action::Refresh));
        assert_eq!(
            r.done(),
            Some("Done: old_rootvg on sda is first in the UEFI boot order (Boot0002). The next start boots it.")
        );
    }
}
