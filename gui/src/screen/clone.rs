//! Clone: a wizard of four steps. (1) What to clone (the running system, a system on a disk
//! that is not running, read from the disk as it is: an alternate, old_rootvg, another Linux
//! found there (the offline disk swap); a system mounted at a directory) and where (disks a clone may go to; the others
//! are listed greyed with the reason; or an image file). (2) Options: phases, conversion,
//! exclude list, layout, what happens to the boot list, phase 2 packages and scripts.
//! (3) The plan as the service computed it (`PlanDetails`), each target drawn before and
//! after. (4) A confirmation naming every disk to be erased by model, serial and what it
//! holds now; the button that starts says what it destroys.
//!
//! The screen asks the app for everything (plan, start, wake an LVM source) through [`Action`];
//! a disk that vanishes while chosen is dropped and said so.

use std::collections::BTreeMap;

use altdisk_api::{kind, BootlistMode, CloneOptions, DiskDetail, Phase2Options, Phases, PlanDetails, SystemInfo};
use iced::widget::{column, container, row, scrollable, text, Space};
use iced::{Alignment, Element, Length};

use crate::client::{ApiError, ErrorKind, Snapshot};
use crate::format;
use crate::screen::disks;
use crate::ui::{self, Kind, Tone};

/// The wizard's steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    #[default]
    Choose,
    Options,
    Review,
    Confirm,
}

impl Step {
    const ALL: [(Step, &'static str); 4] = [
        (Step::Choose, "Source and targets"),
        (Step::Options, "Options"),
        (Step::Review, "Plan"),
        (Step::Confirm, "Confirm"),
    ];
}

/// What is cloned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Source {
    /// The system this machine runs.
    #[default]
    Running,
    /// A system mounted at a directory (an awake alternate, or one mounted by hand).
    Directory(String),
    /// A system on a disk that is not running (`source_disk`): the service mounts it
    /// read-only as its fstab says, clones it and unmounts it; the disk is not written.
    Disk { disk: String, name: String },
    /// An alternate system on LVM that is asleep: woken first (waking activates its volume
    /// group), then cloned from where it is mounted.
    Asleep { disk: String, name: String },
}

#[derive(Debug, Default)]
pub struct Wizard {
    step: Step,
    source: Source,
    /// Typed directory of a mounted system.
    source_dir: String,
    /// Chosen disks, in the order they were chosen (the first holds /boot and the ESP).
    targets: Vec<String>,
    /// Their cards when chosen, to name them after they vanish.
    chosen_cards: BTreeMap<String, DiskDetail>,
    image: bool,
    image_path: String,
    image_size: String,
    phases: Phases,
    convert: bool,
    skip_space_check: bool,
    skip_boot_checks: bool,
    exclude: String,
    layout_file: String,
    bootlist: BootlistMode,
    packages_dir: String,
    packages: String,
    update_all: bool,
    script: String,
    first_boot_script: String,
    resolv_conf: String,
    device_reset: bool,
    console: String,
    plan: Option<PlanDetails>,
    show_plan_text: bool,
    /// A request is out (plan, start, wake): buttons wait.
    waiting: Option<&'static str>,
    /// What is wrong with the form, said next to it (the service's errors go to the banner).
    problem: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Message {
    Source(Source),
    SourceDir(String),
    ToggleTarget(String),
    Image(bool),
    ImagePath(String),
    ImageSize(String),
    Phases(Phases),
    Convert(bool),
    SkipSpace(bool),
    SkipBoot(bool),
    Exclude(String),
    LayoutFile(String),
    Bootlist(BootlistMode),
    PackagesDir(String),
    Packages(String),
    UpdateAll(bool),
    Script(String),
    FirstBootScript(String),
    ResolvConf(String),
    DeviceReset(bool),
    Console(String),
    ShowPlanText(bool),
    Next,
    Back,
    GoTo(Step),
    Planned(Result<PlanDetails, ApiError>),
    Woken(Result<String, ApiError>),
    Start,
    Started(Result<String, ApiError>),
    Reset,
}

/// What the app does for this screen.
#[derive(Debug)]
pub enum Action {
    None,
    /// Ask for the plan of these options (reading the layout file first, when given).
    Plan {
        options: CloneOptions,
        layout_file: Option<String>,
    },
    /// Start the clone; the answer comes back as [`Message::Started`].
    Start {
        options: CloneOptions,
        layout_file: Option<String>,
    },
    /// Wake the alternate system on this disk (mount it) to clone it.
    Wake(String),
    /// Follow the job at this path (the clone started).
    Follow(String),
    /// Show the service's error in the banner.
    Error(ApiError),
}

impl Wizard {
    pub fn step(&self) -> Step {
        self.step
    }

    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    pub fn plan(&self) -> Option<&PlanDetails> {
        self.plan.as_ref()
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Start over with `source` as what is cloned (from the rescue screen's "Clone it onto
    /// another disk").
    pub fn start_from(&mut self, source: Source) {
        *self = Wizard::default();
        if let Source::Directory(d) = &source {
            self.source_dir = d.clone();
        }
        self.source = source;
    }

    /// Start over with `disk` as the only target (from a disk card's "Clone to this disk").
    pub fn choose_target(&mut self, disk: &DiskDetail) {
        *self = Wizard::default();
        self.targets = vec![disk.name.clone()];
        self.chosen_cards.insert(disk.name.clone(), disk.clone());
    }

    /// The disks changed: a chosen target that is gone (or no longer usable) is dropped,
    /// and the wizard goes back to the choice. Returns what to tell the user.
    pub fn disks_changed(&mut self, disks: &[DiskDetail]) -> Option<String> {
        let mut gone = Vec::new();
        self.targets.retain(|t| {
            let ok = disks.iter().any(|d| &d.name == t && (d.usable || d.erasable));
            if !ok {
                gone.push(t.clone());
            }
            ok
        });
        if let Source::Asleep { disk, name } | Source::Disk { disk, name } = &self.source {
            if !disks.iter().any(|d| &d.name == disk) {
                gone.push(format!("{disk} (the source, {name})"));
                self.source = Source::Running;
            }
        }
        if gone.is_empty() {
            return None;
        }
        let names: Vec<String> = gone
            .iter()
            .map(|n| match self.chosen_cards.get(n) {
                Some(d) => format::disk_short(d),
                None => n.clone(),
            })
            .collect();
        for n in &gone {
            self.chosen_cards.remove(n);
        }
        if self.step > Step::Choose {
            self.step = Step::Choose;
            self.plan = None;
        }
        Some(format!(
            "{} {} no longer there (unplugged or now in use): it was taken off the clone's targets; choose again",
            names.join(", "),
            if gone.len() == 1 { "is" } else { "are" }
        ))
    }

    /// The options as the service takes them, or what is wrong with the form.
    pub fn options(&self, data: &Snapshot) -> Result<(CloneOptions, Option<String>), String> {
        let mut targets = self.targets.clone();
        let mut size = None;
        if self.image {
            let p = self.image_path.trim();
            if !p.starts_with('/') {
                return Err("image file: give its full path, such as /var/tmp/altinst_rootvg.img".into());
            }
            targets.push(p.to_string());
            if !self.image_size.trim().is_empty() {
                size = Some(format::parse_size(&self.image_size).ok_or_else(|| {
                    format!("image size `{}`: not a size; write it as 20G or 512M", self.image_size.trim())
                })?);
            }
        }
        if targets.is_empty() {
            return Err("choose a target disk (or an image file) first".into());
        }
        let (source, source_disk) = match &self.source {
            Source::Running => (None, None),
            Source::Directory(d) if d.trim().is_empty() => {
                return Err("source: give the directory the system to clone is mounted at".into());
            }
            Source::Directory(d) => (Some(d.trim().to_string()), None),
            Source::Disk { disk, .. } => (None, Some(disk.clone())),
            Source::Asleep { name, .. } => {
                return Err(format!("source {name}: wake it first (choose it again)"));
            }
        };
        // A disk holding data is written only when the user confirmed erasing it (force).
        let force = self.targets.iter().any(|t| data.disks.iter().any(|d| &d.name == t && !d.usable && d.erasable));
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let options = CloneOptions {
            targets,
            source,
            source_disk,
            phases: self.phases,
            exclude: opt(&self.exclude),
            layout: None,
            convert: self.convert,
            skip_space_check: self.skip_space_check,
            skip_boot_checks: self.skip_boot_checks,
            force,
            size,
            bootlist: self.bootlist,
            // A new clone: refreshing one is offered where the systems are managed.
            refresh: false,
            checksum: false,
            phase2: if self.phases.has(2) {
                Phase2Options {
                    packages_dir: opt(&self.packages_dir),
                    packages: words(&self.packages),
                    update_all: self.update_all,
                    script: opt(&self.script),
                    first_boot_script: opt(&self.first_boot_script),
                    resolv_conf: opt(&self.resolv_conf),
                    device_reset: self.device_reset,
                    console: if self.device_reset { opt(&self.console) } else { None },
                    ..Phase2Options::default()
                }
            } else {
                Phase2Options::default()
            },
        };
        Ok((options, opt(&self.layout_file)))
    }

    pub fn update(&mut self, message: Message, data: &Snapshot) -> Action {
        self.problem = None;
        match message {
            Message::Source(s) => {
                // The system cloned is never a target too.
                if let Source::Asleep { disk, .. } | Source::Disk { disk, .. } = &s {
                    if let Some(i) = self.targets.iter().position(|t| t == disk) {
                        self.targets.remove(i);
                        self.chosen_cards.remove(disk);
                        self.plan = None;
                    }
                }
                if let Source::Asleep { disk, .. } = &s {
                    self.waiting = Some("waking the source");
                    let disk = disk.clone();
                    self.source = s;
                    return Action::Wake(disk);
                }
                self.source = s;
            }
            Message::SourceDir(d) => {
                self.source_dir = d.clone();
                self.source = Source::Directory(d);
            }
            Message::ToggleTarget(name) => {
                if let Some(i) = self.targets.iter().position(|t| t == &name) {
                    self.targets.remove(i);
                    self.chosen_cards.remove(&name);
                } else if let Some(d) = data.disks.iter().find(|d| d.name == name && (d.usable || d.erasable)) {
                    self.targets.push(name.clone());
                    self.chosen_cards.insert(name, d.clone());
                }
                self.plan = None;
            }
            Message::Image(on) => self.image = on,
            Message::ImagePath(p) => self.image_path = p,
            Message::ImageSize(s) => self.image_size = s,
            Message::Phases(p) => self.phases = p,
            Message::Convert(v) => self.convert = v,
            Message::SkipSpace(v) => self.skip_space_check = v,
            Message::SkipBoot(v) => self.skip_boot_checks = v,
            Message::Exclude(s) => self.exclude = s,
            Message::LayoutFile(s) => self.layout_file = s,
            Message::Bootlist(b) => self.bootlist = b,
            Message::PackagesDir(s) => self.packages_dir = s,
            Message::Packages(s) => self.packages = s,
            Message::UpdateAll(v) => self.update_all = v,
            Message::Script(s) => self.script = s,
            Message::FirstBootScript(s) => self.first_boot_script = s,
            Message::ResolvConf(s) => self.resolv_conf = s,
            Message::DeviceReset(v) => self.device_reset = v,
            Message::Console(s) => self.console = s,
            Message::ShowPlanText(v) => self.show_plan_text = v,
            Message::GoTo(step) if step <= self.step => self.step = step,
            Message::GoTo(_) => {}
            Message::Back => {
                self.step = match self.step {
                    Step::Choose | Step::Options => Step::Choose,
                    Step::Review => Step::Options,
                    Step::Confirm => Step::Review,
                };
            }
            Message::Next => match self.step {
                Step::Choose => match self.options(data) {
                    Ok(_) => self.step = Step::Options,
                    Err(e) => self.problem = Some(e),
                },
                Step::Options => match self.options(data) {
                    Ok((options, layout_file)) => {
                        self.waiting = Some("planning");
                        self.plan = None;
                        return Action::Plan { options, layout_file };
                    }
                    Err(e) => self.problem = Some(e),
                },
                Step::Review if self.plan.is_some() => self.step = Step::Confirm,
                Step::Review | Step::Confirm => {}
            },
            Message::Planned(r) => {
                self.waiting = None;
                match r {
                    Ok(p) => {
                        self.plan = Some(p);
                        self.step = Step::Review;
                    }
                    Err(e) => return Action::Error(e),
                }
            }
            Message::Woken(r) => {
                self.waiting = None;
                match r {
                    Ok(at) => {
                        self.source_dir = at.clone();
                        self.source = Source::Directory(at);
                    }
                    Err(e) => {
                        self.source = Source::Running;
                        return Action::Error(e);
                    }
                }
            }
            Message::Start => {
                if self.step != Step::Confirm || self.waiting.is_some() {
                    return Action::None;
                }
                return match self.options(data) {
                    Ok((options, layout_file)) => {
                        self.waiting = Some("starting");
                        Action::Start { options, layout_file }
                    }
                    Err(e) => {
                        self.problem = Some(e);
                        Action::None
                    }
                };
            }
            Message::Started(r) => {
                self.waiting = None;
                return match r {
                    Ok(path) => {
                        *self = Wizard::default();
                        Action::Follow(path)
                    }
                    Err(e) => {
                        // The plan may no longer hold (a disk went, another job took it).
                        if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Busy) {
                            self.step = Step::Choose;
                            self.plan = None;
                        }
                        Action::Error(e)
                    }
                };
            }
            Message::Reset => *self = Wizard::default(),
        }
        Action::None
    }

    pub fn view<'a>(&'a self, data: &'a Snapshot) -> Element<'a, Message> {
        let mut steps = row![].spacing(ui::SPACE_S).align_y(Alignment::Center);
        for (i, (step, label)) in Step::ALL.iter().enumerate() {
            let tone = if *step == self.step {
                Tone::Primary
            } else if *step < self.step {
                Tone::Success
            } else {
                Tone::Neutral
            };
            let reachable = *step < self.step;
            if i > 0 {
                steps = steps.push(ui::muted("›"));
            }
            let label = format!("{} {label}", i + 1);
            steps = steps.push(ui::chip(format!("step-{i}"), label, tone, reachable.then_some(Message::GoTo(*step))));
        }
        let body = match self.step {
            Step::Choose => self.view_choose(data),
            Step::Options => self.view_options(),
            Step::Review => self.view_review(data),
            Step::Confirm => self.view_confirm(data),
        };
        let mut page = column![ui::title("Clone a system"), steps].spacing(ui::SPACE_M);
        if let Some(p) = &self.problem {
            page = page.push(ui::toned(p.clone(), Tone::Danger));
        }
        page = page.push(body);
        let nav = self.view_nav();
        column![scrollable(page.padding(ui::SPACE_L)).height(Length::Fill), nav].into()
    }

    fn view_nav(&self) -> Element<'_, Message> {
        let back: Element<'_, Message> = if self.step == Step::Choose {
            Space::new().into()
        } else {
            ui::button("back", "Back", Kind::Secondary, Some(Message::Back))
        };
        let waiting = self.waiting.map(|w| ui::muted(format!("{w}…")));
        let next: Element<'_, Message> = match self.step {
            Step::Choose => {
                ui::button("next", "Next: options", Kind::Primary, self.waiting.is_none().then_some(Message::Next))
            }
            Step::Options => {
                ui::button("next", "Show the plan", Kind::Primary, self.waiting.is_none().then_some(Message::Next))
            }
            Step::Review => {
                ui::button("next", "Next: confirm", Kind::Primary, self.plan.as_ref().map(|_| Message::Next))
            }
            Step::Confirm => Space::new().into(),
        };
        let mut r = row![back, Space::new().width(Length::Fill)].spacing(ui::SPACE_S).align_y(Alignment::Center);
        if let Some(w) = waiting {
            r = r.push(w);
        }
        r = r.push(next);
        container(r)
            .padding([ui::SPACE_S + 2.0, ui::SPACE_L])
            .width(Length::Fill)
            .style(|t: &iced::Theme| {
                let c = ui::colors(t);
                container::Style {
                    background: Some(iced::Background::Color(c.surface)),
                    border: iced::Border { color: c.border, width: 1.0, radius: 0.0.into() },
                    ..container::Style::default()
                }
            })
            .into()
    }

    fn view_choose<'a>(&'a self, data: &'a Snapshot) -> Element<'a, Message> {
        // Sources: the running system, each alternate system (awake: its directory; asleep:
        // wake it first), a directory typed in.
        let mut sources = column![].spacing(ui::SPACE_S);
        sources = sources.push(source_choice(
            "source-running",
            "The running system",
            running_description(data),
            self.source == Source::Running,
            Source::Running,
        ));
        // Systems altdisk knows (an incomplete clone holds nothing to clone).
        let mut listed: Vec<&str> = Vec::new();
        for s in data.systems.iter().filter(|s| !s.running && s.state != "incomplete") {
            let (label, desc, choice) = alternate_source(s);
            let on = same_source(&self.source, &choice);
            let id = match &choice {
                Source::Disk { disk, .. } => {
                    listed.extend(s.disks.first().map(String::as_str));
                    format!("source-disk-{disk}")
                }
                _ => format!("source-{}", s.name),
            };
            sources = sources.push(source_choice(id, label, desc, on, choice));
        }
        // Other systems found on a disk that holds no altdisk system and is not mounted.
        for (disk, os, part) in systems_on_disks(data) {
            if listed.contains(&disk) {
                continue;
            }
            listed.push(disk);
            let choice = Source::Disk { disk: disk.to_string(), name: os.to_string() };
            sources = sources.push(source_choice(
                format!("source-disk-{disk}"),
                format!("{os} on {disk}"),
                format!("found on {part}: read from its disk, read-only (an offline clone)"),
                same_source(&self.source, &choice),
                choice,
            ));
        }
        // A system chosen elsewhere (the rescue screen) that the lists above do not show.
        if let Source::Disk { disk, name } = &self.source {
            if !listed.contains(&disk.as_str()) {
                sources = sources.push(source_choice(
                    format!("source-disk-{disk}"),
                    format!("{name} on {disk}"),
                    "read from its disk, read-only (an offline clone)".to_string(),
                    true,
                    self.source.clone(),
                ));
            }
        }
        // Systems found mounted somewhere (the rescue image's user mounted the installed one).
        let found = found_systems(data);
        for (i, (os, part, at)) in found.iter().enumerate() {
            let on = matches!(&self.source, Source::Directory(d) if d == at);
            sources = sources.push(source_choice(
                format!("source-found-{i}"),
                format!("{os} at {at}"),
                format!("found on {part}: an offline clone"),
                on,
                Source::Directory(at.clone()),
            ));
        }
        let dir_on = matches!(&self.source, Source::Directory(d)
            if d.is_empty()
                || !(data.systems.iter().any(|s| &s.awake_at == d) || found.iter().any(|(_, _, at)| at == d)));
        sources = sources.push(source_choice(
            "source-dir",
            "A system mounted at a directory".to_string(),
            "an offline clone: its other filesystems mounted below it".to_string(),
            dir_on,
            Source::Directory(self.source_dir.clone()),
        ));
        if dir_on {
            sources = sources.push(ui::field(
                "source-dir-path",
                "Directory",
                "/mnt/sysimage",
                &self.source_dir,
                Message::SourceDir,
            ));
        }

        let source_disks: Vec<&str> = match &self.source {
            Source::Running => {
                data.systems.iter().filter(|s| s.running).flat_map(|s| s.disks.iter().map(String::as_str)).collect()
            }
            Source::Asleep { disk, .. } | Source::Disk { disk, .. } => vec![disk.as_str()],
            Source::Directory(d) => data
                .systems
                .iter()
                .filter(|s| &s.awake_at == d)
                .flat_map(|s| s.disks.iter().map(String::as_str))
                .collect(),
        };
        let mut usable = column![].spacing(ui::SPACE_S);
        let mut erasable = column![].spacing(ui::SPACE_S);
        let mut others = column![].spacing(ui::SPACE_XS);
        let (mut n_usable, mut n_erasable) = (0, 0);
        for d in &data.disks {
            let chosen = self.targets.contains(&d.name);
            let is_source = source_disks.contains(&d.name.as_str());
            let order = self.targets.iter().position(|t| t == &d.name);
            if d.usable && !is_source {
                usable = usable.push(target_card(d, chosen, order));
                n_usable += 1;
            } else if d.erasable && !is_source {
                erasable = erasable.push(target_card(d, chosen, order));
                n_erasable += 1;
            } else {
                let why = if is_source && d.kind != kind::RUNNING {
                    "it holds the system being cloned".to_string()
                } else {
                    not_usable_reason(d)
                };
                others = others.push(
                    row![
                        text(format::disk_name(d)).size(ui::TEXT_S).width(Length::FillPortion(2)),
                        container(ui::muted(why)).width(Length::FillPortion(3)),
                    ]
                    .spacing(ui::SPACE_S),
                );
            }
        }
        let image = column![
            ui::check("target-image", "An image file", self.image, Message::Image),
            if self.image {
                row![
                    container(ui::field(
                        "image-path",
                        "Full path",
                        "/var/tmp/altinst_rootvg.img",
                        &self.image_path,
                        Message::ImagePath
                    ))
                    .width(Length::FillPortion(3)),
                    container(ui::field(
                        "image-size",
                        "Size (empty: what the data needs)",
                        "auto",
                        &self.image_size,
                        Message::ImageSize
                    ))
                    .width(Length::FillPortion(2)),
                ]
                .spacing(ui::SPACE_M)
                .into()
            } else {
                Element::from(Space::new())
            },
        ]
        .spacing(ui::SPACE_S);
        // What is chosen, said at the top: the list below may be long.
        let chosen: Element<'a, Message> = if self.targets.is_empty() && !self.image {
            ui::dim("Nothing chosen yet.")
        } else {
            let mut names: Vec<String> = self
                .targets
                .iter()
                .map(|t| {
                    let d = data.disks.iter().find(|d| &d.name == t);
                    let erased = d.is_some_and(|d| !d.usable && d.erasable);
                    let name = d.map(format::disk_short).unwrap_or_else(|| t.clone());
                    if erased {
                        format!("{name}, erased")
                    } else {
                        name
                    }
                })
                .collect();
            if self.image {
                names.push(format!("image file {}", self.image_path.trim()));
            }
            text(format!("Chosen: {}", names.join("; "))).size(ui::TEXT_M).font(ui::SEMIBOLD).into()
        };
        let mut col = column![
            ui::heading("What to clone"),
            sources,
            ui::heading("Where to"),
            ui::muted("Choose one disk, or several to spread the clone over them (the first holds the boot files)."),
            chosen,
        ]
        .spacing(ui::SPACE_M);
        if n_usable > 0 {
            col = col.push(usable);
        } else {
            col = col.push(ui::muted("No free disk: plug one in, or choose one below whose data may go."));
        }
        if n_erasable > 0 {
            col = col.push(
                text("Disks holding data: chosen, everything on them is erased").size(ui::TEXT_M).font(ui::SEMIBOLD),
            );
            col = col.push(erasable);
        }
        col = col.push(ui::card(image));
        col = col.push(ui::heading("Disks that cannot be chosen"));
        col = col.push(ui::card(others));
        col.into()
    }

    fn view_options(&self) -> Element<'_, Message> {
        let phases = column![
            text("Phases").size(ui::TEXT_M).font(ui::SEMIBOLD),
            ui::segments(
                "phases",
                &[
                    (Phases::All, "All (1 2 3)"),
                    (Phases::P1, "1: copy"),
                    (Phases::P12, "1 2: copy, customise"),
                    (Phases::P23, "2 3: finish a copy"),
                    (Phases::P3, "3: make bootable"),
                ],
                self.phases,
                Message::Phases,
            ),
            ui::muted(match self.phases {
                Phases::All => "Copy, customise and make the clone bootable.",
                Phases::P1 => "Copy only: the clone stays mounted (at /alt_inst) to look at or change; finish it later with phases 2 3.",
                Phases::P12 => "Copy and customise; make it bootable later (phase 3).",
                Phases::P2 => "Customise a clone made earlier.",
                Phases::P23 => "Customise and make bootable a clone made earlier (on the chosen disks).",
                Phases::P3 => "Make a clone made earlier bootable.",
            }),
        ]
        .spacing(ui::SPACE_S);
        let boot = column![
            text("Boot list").size(ui::TEXT_M).font(ui::SEMIBOLD),
            ui::segments(
                "bootlist",
                &[
                    (BootlistMode::First, "Clone first"),
                    (BootlistMode::Trial, "Boot it once (trial)"),
                    (BootlistMode::Leave, "Leave the order"),
                ],
                self.bootlist,
                Message::Bootlist,
            ),
            ui::muted(match self.bootlist {
                BootlistMode::First => "The clone boots next time and after (the old system stays in the list).",
                BootlistMode::Trial => "The clone boots once; it becomes the default only if it came up healthy.",
                BootlistMode::Leave => "Its boot entry is made; the boot order stays as it is.",
            }),
        ]
        .spacing(ui::SPACE_S);
        let copy = column![
            text("Copy").size(ui::TEXT_M).font(ui::SEMIBOLD),
            ui::check("opt-convert", "Convert ext2/ext3 to ext4", self.convert, Message::Convert),
            ui::check(
                "opt-skip-space",
                "Go ahead when the targets look too small",
                self.skip_space_check,
                Message::SkipSpace
            ),
            ui::check("opt-skip-boot", "Skip the bootability checks", self.skip_boot_checks, Message::SkipBoot),
            row![
                container(ui::field(
                    "opt-exclude",
                    "Exclude list (file of patterns)",
                    "/etc/altdisk/exclude",
                    &self.exclude,
                    Message::Exclude
                ))
                .width(Length::Fill),
                container(ui::field(
                    "opt-layout",
                    "Layout file (TOML; see altdisk layout)",
                    "/root/layout.toml",
                    &self.layout_file,
                    Message::LayoutFile
                ))
                .width(Length::Fill),
            ]
            .spacing(ui::SPACE_M),
        ]
        .spacing(ui::SPACE_S);
        let mut p2 =
            column![text("Phase 2: customise the clone").size(ui::TEXT_M).font(ui::SEMIBOLD)].spacing(ui::SPACE_S);
        if self.phases.has(2) {
            p2 = p2
                .push(
                    row![
                        container(ui::field(
                            "p2-dir",
                            "Packages directory (.deb files or apt repository)",
                            "/srv/debs",
                            &self.packages_dir,
                            Message::PackagesDir
                        ))
                        .width(Length::Fill),
                        container(ui::field(
                            "p2-packages",
                            "Packages to install",
                            "htop tmux",
                            &self.packages,
                            Message::Packages
                        ))
                        .width(Length::Fill),
                    ]
                    .spacing(ui::SPACE_M),
                )
                .push(ui::check(
                    "p2-update-all",
                    "Upgrade every package the directory holds newer",
                    self.update_all,
                    Message::UpdateAll,
                ))
                .push(
                    row![
                        container(ui::field(
                            "p2-script",
                            "Script run on this system (ALT_ROOT set)",
                            "/root/customize.sh",
                            &self.script,
                            Message::Script
                        ))
                        .width(Length::Fill),
                        container(ui::field(
                            "p2-first-boot",
                            "Script run once at the clone's first boot",
                            "/root/firstboot.sh",
                            &self.first_boot_script,
                            Message::FirstBootScript
                        ))
                        .width(Length::Fill),
                    ]
                    .spacing(ui::SPACE_M),
                )
                .push(ui::field(
                    "p2-resolv",
                    "resolv.conf for the clone",
                    "/etc/resolv.conf.clone",
                    &self.resolv_conf,
                    Message::ResolvConf,
                ))
                .push(ui::check(
                    "p2-device-reset",
                    "The clone will run another machine (new machine-id, SSH host keys, no MAC-bound network)",
                    self.device_reset,
                    Message::DeviceReset,
                ));
            if self.device_reset {
                p2 = p2.push(ui::field(
                    "p2-console",
                    "Console of the clone",
                    "ttyS0,115200n8",
                    &self.console,
                    Message::Console,
                ));
            }
        } else {
            p2 = p2.push(ui::muted("Phase 2 is not among the chosen phases."));
        }
        column![ui::card(phases), ui::card(boot), ui::card(copy), ui::card(p2)].spacing(ui::SPACE_M).into()
    }

    fn view_review<'a>(&'a self, data: &'a Snapshot) -> Element<'a, Message> {
        let Some(plan) = &self.plan else {
            return ui::muted("Planning…");
        };
        let mut summary = column![
            ui::fact("Source", plan.source.clone()),
            ui::fact("Clone", plan.name.clone()),
            ui::fact("Phases", plan.phases.clone()),
            ui::fact("To copy", format::bytes(plan.needed)),
        ]
        .spacing(ui::SPACE_XS);
        if !plan.boot.is_empty() {
            summary = summary.push(ui::fact("Boot", plan.boot.clone()));
        }
        if !plan.bootlist.is_empty() {
            summary = summary.push(ui::fact("Boot list", plan.bootlist.clone()));
        }
        if !plan.volume_group.is_empty() {
            let lvs: Vec<String> = plan
                .logical_volumes
                .iter()
                .map(|l| format!("{} {} {} {}", l.name, format::bytes(l.size), l.fstype, l.mountpoint))
                .collect();
            summary = summary.push(ui::fact("Volume group", format!("{}: {}", plan.volume_group, lvs.join(", "))));
        }
        let mut col =
            column![ui::card(column![ui::heading("The plan"), summary].spacing(ui::SPACE_S))].spacing(ui::SPACE_M);
        for w in &plan.warnings {
            col = col.push(ui::toned(format!("⚠ {w}"), Tone::Warning));
        }
        for t in &plan.targets {
            let card = data.disks.iter().find(|d| d.path == t.path || d.name == t.name);
            let title = if t.image {
                format!("Image file {}{}", t.path, if t.image_created { " (created)" } else { "" })
            } else if t.model.is_empty() {
                t.path.clone()
            } else {
                t.model.clone()
            };
            let mut ident = Vec::new();
            if !t.image {
                ident.push(t.name.clone());
                if !t.alias.is_empty() {
                    ident.push(t.alias.clone());
                }
                if !t.serial.is_empty() {
                    ident.push(format!("serial {}", t.serial));
                }
            }
            ident.push(format::bytes(t.size));
            let mut c = column![
                column![text(title).size(ui::TEXT_L).font(ui::BOLD), ui::muted(ident.join(" · "))].spacing(2),
                text("Now").size(ui::TEXT_S).font(ui::SEMIBOLD),
                ui::bar::bar_with_legend(t.size, &t.before),
                text("After the clone").size(ui::TEXT_S).font(ui::SEMIBOLD),
                ui::bar::bar_with_legend(t.size, &t.after),
            ]
            .spacing(ui::SPACE_S);
            if t.erased.is_empty() {
                c = c.push(ui::toned("Nothing on it is erased.", Tone::Success));
            } else {
                c = c.push(ui::toned("Erased:", Tone::Danger));
                for e in &t.erased {
                    c = c.push(ui::toned(format!("• {e}"), Tone::Danger));
                }
            }
            if let Some(d) = card {
                if d.kind == kind::HOLDS_DATA || d.kind == kind::ALTERNATE {
                    c = c.push(ui::muted(disks::role_sentence(d)));
                }
            }
            col = col.push(ui::card(c));
        }
        col = col.push(ui::check("plan-text", "Show the plan as text", self.show_plan_text, Message::ShowPlanText));
        if self.show_plan_text {
            col = col.push(ui::card(text(&plan.text).font(ui::MONO).size(ui::TEXT_S)));
        }
        col.into()
    }

    fn view_confirm<'a>(&'a self, data: &'a Snapshot) -> Element<'a, Message> {
        let Some(plan) = &self.plan else {
            return ui::muted("No plan yet.");
        };
        let mut list = column![].spacing(ui::SPACE_M);
        let mut names = Vec::new();
        for t in &plan.targets {
            let card = data.disks.iter().find(|d| d.path == t.path || d.name == t.name);
            let (ident, short) = match card {
                Some(d) => (format::disk_identity(d), format::disk_short(d)),
                None if t.image => (format!("image file {}", t.path), t.path.clone()),
                None => (format!("{} {} ({})", t.model, t.serial, t.name), t.name.clone()),
            };
            names.push(short);
            let holds: Vec<String> = if !t.erased.is_empty() {
                t.erased.clone()
            } else if let Some(d) = card {
                d.holds.clone()
            } else {
                Vec::new()
            };
            let mut c = column![text(ident).size(ui::TEXT_M).font(ui::BOLD)].spacing(ui::SPACE_XS);
            if holds.is_empty() {
                c = c.push(ui::muted("Holds nothing now (free)."));
            } else {
                c = c.push(ui::muted("Holds now, and loses:"));
                for h in holds {
                    c = c.push(ui::toned(format!("• {h}"), Tone::Danger));
                }
            }
            list = list.push(ui::card_selected(c, true, Tone::Danger));
        }
        let label = if plan.targets.iter().all(|t| t.image) {
            format!("Write the clone to {}", names.join(", "))
        } else if names.len() == 1 {
            format!("Erase {} and clone", names[0])
        } else {
            format!("Erase {} disks ({}) and clone", names.len(), names.join(", "))
        };
        let what = if plan.targets.len() == 1 { "This disk is" } else { "These disks are" };
        let mut then = column![ui::body(format!(
            "Then {} is cloned onto {} as {} (phases {}).",
            plan.source,
            if plan.targets.len() == 1 { "it" } else { "them" },
            plan.name,
            plan.phases
        ))]
        .spacing(ui::SPACE_XS);
        if !plan.bootlist.is_empty() {
            then = then.push(ui::muted(format!("Boot list: {}.", plan.bootlist)));
        }
        for w in &plan.warnings {
            then = then.push(ui::toned(format!("⚠ {w}"), Tone::Warning));
        }
        column![
            ui::heading(format!(
                "{what} erased: everything on {} is lost",
                if plan.targets.len() == 1 { "it" } else { "them" }
            )),
            list,
            then,
            row![
                ui::button("confirm-start", label, Kind::Danger, self.waiting.is_none().then_some(Message::Start)),
                ui::button("confirm-back", "Back to the plan", Kind::Secondary, Some(Message::Back)),
            ]
            .spacing(ui::SPACE_M),
        ]
        .spacing(ui::SPACE_M)
        .into()
    }
}

/// Why a disk cannot be a target, in words.
pub fn not_usable_reason(d: &DiskDetail) -> String {
    match d.kind.as_str() {
        kind::RUNNING => "the running system is on it".into(),
        kind::FORMER => format!("it holds {}, the system this one came from (remove it first)", d.system.name),
        kind::ALTERNATE => format!("it holds the alternate system {} (remove it first)", d.system.name),
        kind::IN_USE => format!("in use: {}", if d.detail.is_empty() { "mounted or held" } else { &d.detail }),
        _ if d.read_only => "read-only".into(),
        _ if !d.detail.is_empty() => d.detail.clone(),
        _ => "it cannot be written".into(),
    }
}

/// Operating systems found on partitions mounted somewhere other than `/`: (what, the
/// partition, where it is mounted). The running system and awake alternates are listed
/// on their own.
fn found_systems(data: &Snapshot) -> Vec<(String, String, String)> {
    let awake: Vec<&str> = data.systems.iter().map(|s| s.awake_at.as_str()).filter(|a| !a.is_empty()).collect();
    let mut out = Vec::new();
    for d in data.disks.iter().filter(|d| d.kind != kind::RUNNING) {
        for p in &d.partitions {
            let at = p.mountpoint.as_str();
            if !p.os.is_empty() && at.starts_with('/') && at != "/" && !awake.contains(&at) {
                let part =
                    if p.device.is_empty() { d.name.clone() } else { p.device.trim_start_matches("/dev/").to_string() };
                out.push((p.os.clone(), part, at.to_string()));
            }
        }
    }
    out
}

fn running_description(data: &Snapshot) -> String {
    match data.systems.iter().find(|s| s.running) {
        Some(s) => format!("{} on {}", s.name, s.disks.join(", ")),
        None => "the system this machine runs".into(),
    }
}

/// Whether two sources are the same system: a system on a disk is its disk, whatever it is
/// called (the rescue screen and the disk cards name it differently).
fn same_source(a: &Source, b: &Source) -> bool {
    match (a, b) {
        (Source::Disk { disk: x, .. }, Source::Disk { disk: y, .. }) => x == y,
        (a, b) => a == b,
    }
}

/// Operating systems found on unmounted partitions of disks that hold no altdisk system:
/// (the disk, the OS, the partition). The service reads them from the disk (`source_disk`).
fn systems_on_disks(data: &Snapshot) -> Vec<(&str, &str, String)> {
    let mut out = Vec::new();
    for d in data.disks.iter().filter(|d| d.kind == kind::HOLDS_DATA) {
        if let Some(p) = d.partitions.iter().find(|p| !p.os.is_empty() && p.mountpoint.is_empty()) {
            let part =
                if p.device.is_empty() { d.name.clone() } else { p.device.trim_start_matches("/dev/").to_string() };
            out.push((d.name.as_str(), p.os.as_str(), part));
        }
    }
    out
}

fn alternate_source(s: &SystemInfo) -> (String, String, Source) {
    let disk = s.disks.first().cloned().unwrap_or_default();
    if s.awake_at.is_empty() && !s.volume_group.is_empty() {
        // Waking activates its volume group; reading it from the disk would not.
        (
            format!("{} on {}", s.name, s.disks.join(", ")),
            format!("{}; woken (mounted) to be cloned: its volume group is activated", s.state_text),
            Source::Asleep { disk, name: s.name.clone() },
        )
    } else if s.awake_at.is_empty() {
        let what = if s.state_text.is_empty() { "not running".to_string() } else { s.state_text.clone() };
        (
            format!("{} on {}", s.name, s.disks.join(", ")),
            format!("{what}; read from its disk, read-only (not woken)"),
            Source::Disk { disk, name: s.name.clone() },
        )
    } else {
        (
            format!("{} on {}", s.name, s.disks.join(", ")),
            format!("awake at {}", s.awake_at),
            Source::Directory(s.awake_at.clone()),
        )
    }
}

fn source_choice<'a>(
    id: impl Into<iced::widget::Id>,
    label: impl Into<String>,
    desc: String,
    on: bool,
    choice: Source,
) -> Element<'a, Message> {
    let msg = Message::Source(choice);
    let pick = msg.clone();
    let radio = iced::widget::radio(label.into(), true, on.then_some(true), move |_| pick).text_size(ui::TEXT_M);
    // The whole line picks it, its description too.
    let line = iced::widget::mouse_area(row![radio, ui::muted(desc)].spacing(ui::SPACE_M).align_y(Alignment::Center))
        .on_press(msg.clone());
    ui::focusable(id, line, Some(msg))
}

fn target_card(d: &DiskDetail, chosen: bool, order: Option<usize>) -> Element<'_, Message> {
    let (role, tone) = disks::disk_role(d);
    let title = format::disk_name(d);
    let mut head = row![
        iced::widget::checkbox(chosen).size(18).on_toggle(|_| Message::ToggleTarget(d.name.clone())),
        column![
            text(title).size(ui::TEXT_M).font(ui::BOLD),
            ui::muted(format!(
                "{} · {} · serial {}",
                if d.alias.is_empty() { d.path.clone() } else { d.alias.clone() },
                format::bus(d),
                if d.serial.is_empty() { "—" } else { &d.serial }
            )),
        ]
        .spacing(2)
        .width(Length::Fill),
    ]
    .spacing(ui::SPACE_M)
    .align_y(Alignment::Center);
    if let Some(i) = order {
        head = head.push(ui::badge(
            if i == 0 { "target 1 (boot)".to_string() } else { format!("target {}", i + 1) },
            Tone::Primary,
        ));
    }
    head = head.push(ui::badge(role, tone));
    let mut col = column![head, ui::bar::bar(d.size, &d.partitions)].spacing(ui::SPACE_S);
    if !d.usable && d.erasable {
        let mut holds = column![].spacing(2);
        for h in &d.holds {
            holds = holds.push(
                text(format!("• {h}"))
                    .size(ui::TEXT_S)
                    .style(|t: &iced::Theme| text::Style { color: Some(ui::colors(t).warning) }),
            );
        }
        col = col.push(holds);
    }
    ui::focusable(
        format!("target-{}", d.name),
        iced::widget::mouse_area(ui::card_selected(col, chosen, if d.usable { Tone::Primary } else { Tone::Danger }))
            .on_press(Message::ToggleTarget(d.name.clone())),
        Some(Message::ToggleTarget(d.name.clone())),
    )
}
