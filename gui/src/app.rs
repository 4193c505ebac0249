//! The application: it owns the D-Bus connection and the service's data, shows one screen
//! at a time beside the navigation, and carries out what screens ask for: each bus call
//! becomes a Task whose answer comes back as a message, the service's signals (disks
//! plugged, jobs coming and going, the service leaving and returning, a followed job's
//! progress) arrive through Subscriptions, so `update` never waits on the bus.
//!
//! Errors are one banner at the top: the service's one-line message, and what to do.

use altdisk_api::{CloneOptions, JobInfo};
use iced::keyboard::{self, key};
use iced::widget::{column, container, row, text, Space};
use iced::{Alignment, Background, Border, Element, Length, Subscription, Task, Theme};

use crate::client::{self, ApiError, Bus, Client, ErrorKind, Snapshot};
use crate::screen::{bootlist, clone, disks, manage, progress, rescue, Tab};
use crate::ui::{self, system_theme, Kind, Tone};

/// How the app starts.
#[derive(Debug, Clone)]
pub struct Config {
    pub bus: Bus,
    /// Dark or light, fixed (else the desktop's, followed).
    pub dark: Option<bool>,
    /// When following the desktop: what it said before the window opened.
    pub initial_dark: bool,
    /// The screen to open at.
    pub open: Option<Tab>,
    /// A disk to clone to: the clone screen opens with it chosen.
    pub target: Option<String>,
}

impl Config {
    /// Talk on `bus`, everything else as by default.
    pub fn new(bus: Bus) -> Config {
        Config { bus, dark: None, initial_dark: false, open: None, target: None }
    }
}

/// The message in the banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    pub kind: ErrorKind,
    pub text: String,
    /// What to do about it.
    pub hint: Option<String>,
}

pub struct App {
    bus: Bus,
    client: Option<Client>,
    connecting: bool,
    data: Snapshot,
    loaded: bool,
    tab: Tab,
    banner: Option<Banner>,
    dark: bool,
    follow_theme: bool,
    /// `--target`: chosen once the disks are known.
    target: Option<String>,
    /// `--open` named the screen: a running job does not take its place.
    opened_at: bool,
    disks: disks::Disks,
    clone: clone::Wizard,
    progress: progress::Progress,
    manage: manage::Manage,
    bootlist: bootlist::BootList,
    rescue: rescue::Rescue,
}

#[derive(Debug, Clone)]
pub enum Message {
    Connected(Result<Client, ApiError>),
    /// Connect again (the banner's "Try again").
    Retry,
    Loaded(Result<Snapshot, ApiError>),
    JobsLoaded(Result<Vec<JobInfo>, ApiError>),
    /// A call whose answer needs nothing but a refresh (sleep after a clone).
    Called(Result<(), ApiError>),
    Service(client::Event),
    Job(client::JobEvent),
    Dark(bool),
    Key(keyboard::Event),
    Show(Tab),
    DismissBanner,
    Disks(disks::Message),
    Clone(clone::Message),
    Progress(progress::Message),
    Manage(manage::Message),
    BootList(bootlist::Message),
    Rescue(rescue::Message),
}

impl App {
    pub fn new(config: Config) -> (App, Task<Message>) {
        let dark = config.dark.or_else(system_theme::from_env);
        let app = App {
            bus: config.bus.clone(),
            client: None,
            connecting: true,
            data: Snapshot::default(),
            loaded: false,
            tab: config.open.unwrap_or_default(),
            banner: None,
            dark: dark.unwrap_or(config.initial_dark),
            follow_theme: dark.is_none(),
            target: config.target.clone(),
            opened_at: config.open.is_some(),
            disks: disks::Disks,
            clone: clone::Wizard::default(),
            progress: progress::Progress::default(),
            manage: manage::Manage::default(),
            bootlist: bootlist::BootList::default(),
            rescue: rescue::Rescue::default(),
        };
        (app, Task::perform(Client::connect(config.bus), Message::Connected))
    }

    pub fn title(&self) -> String {
        format!("altdisk — {}", self.tab.label())
    }

    pub fn theme(&self) -> Theme {
        ui::theme(self.dark)
    }

    // What tests and the screenshots look at.
    pub fn tab(&self) -> Tab {
        self.tab
    }
    pub fn banner(&self) -> Option<&Banner> {
        self.banner.as_ref()
    }
    pub fn data(&self) -> &Snapshot {
        &self.data
    }
    pub fn loaded(&self) -> bool {
        self.loaded
    }
    pub fn connected(&self) -> bool {
        self.client.is_some()
    }
    pub fn clone_wizard(&self) -> &clone::Wizard {
        &self.clone
    }
    pub fn progress(&self) -> &progress::Progress {
        &self.progress
    }
    pub fn bootlist(&self) -> &bootlist::BootList {
        &self.bootlist
    }
    pub fn rescue(&self) -> &rescue::Rescue {
        &self.rescue
    }

    /// Show `tab`; the rescue screen looks for the systems when it has not, or the disks
    /// changed since.
    fn show(&mut self, tab: Tab) -> Task<Message> {
        self.tab = tab;
        if tab == Tab::Rescue && self.loaded {
            let a = self.rescue.shown();
            return self.rescue_action(a);
        }
        Task::none()
    }

    fn refresh(&self) -> Task<Message> {
        match &self.client {
            Some(c) => {
                let c = c.clone();
                Task::perform(async move { c.snapshot().await }, Message::Loaded)
            }
            None => Task::none(),
        }
    }

    /// Run `f` on the connection; its answer comes back through `to`. Without a connection
    /// the answer is the not-running error, at once.
    fn call<T, Fut>(
        &self,
        f: impl FnOnce(Client) -> Fut,
        to: impl FnOnce(Result<T, ApiError>) -> Message + Send + 'static,
    ) -> Task<Message>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        match &self.client {
            Some(c) => Task::perform(f(c.clone()), to),
            None => Task::done(to(Err(ApiError::new(ErrorKind::NotRunning, "not connected to altdiskd")))),
        }
    }

    fn show_error(&mut self, e: ApiError) {
        let service = format!("altdiskd (org.altdisk.AltDisk1) on {}", self.bus.describe());
        let (text, hint) = match e.kind {
            ErrorKind::NotRunning => (
                format!("The altdisk service is not running: nothing answers as {service}."),
                Some(if self.bus == Bus::System {
                    "Start it with `sudo systemctl start altdiskd` (altdisk's install script installs it); \
                     this window connects by itself when it appears."
                        .to_string()
                } else {
                    "Start it on that bus (`altdiskd --sim FILE --address ADDRESS` for the simulation); \
                     this window connects by itself when it appears."
                        .to_string()
                }),
            ),
            ErrorKind::NoBus => (
                e.message.clone(),
                Some("Is D-Bus running? Check the bus address (--bus-address or ALTDISK_BUS_ADDRESS).".into()),
            ),
            ErrorKind::AccessDenied => (
                format!("Not allowed: {}", e.message),
                Some("Your account may not do this: authenticate when asked, or ask an administrator.".into()),
            ),
            ErrorKind::NotFound => (e.message.clone(), Some("The lists were read again.".into())),
            ErrorKind::Busy => (e.message.clone(), Some("Wait for the other job to finish (see Progress).".into())),
            ErrorKind::JobFailed | ErrorKind::Refused | ErrorKind::Invalid => (e.message.clone(), None),
        };
        tracing::warn!("{text}");
        self.banner = Some(Banner { kind: e.kind, text, hint });
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        match message {
            Message::Connected(Ok(c)) => {
                self.connecting = false;
                self.client = Some(c);
                return self.refresh();
            }
            Message::Connected(Err(e)) => {
                self.connecting = false;
                self.show_error(e);
            }
            Message::Retry => {
                if self.client.is_none() {
                    self.connecting = true;
                    return Task::perform(Client::connect(self.bus.clone()), Message::Connected);
                }
                return self.refresh();
            }
            Message::Loaded(Ok(s)) => {
                if self.banner.as_ref().is_some_and(|b| matches!(b.kind, ErrorKind::NotRunning | ErrorKind::NoBus)) {
                    self.banner = None;
                }
                if let Some(gone) = self.clone.disks_changed(&s.disks) {
                    self.show_error(ApiError::new(ErrorKind::NotFound, gone));
                }
                self.bootlist.sync(&s.boot);
                let first = !self.loaded;
                // Disks plugged or unplugged, systems made or removed: what Rescue found may
                // be out of date (looked for again when it is shown).
                let names = |d: &[altdisk_api::DiskDetail]| d.iter().map(|x| x.name.clone()).collect::<Vec<_>>();
                let moved = names(&self.data.disks) != names(&s.disks) || self.data.systems != s.systems;
                if moved && !first {
                    self.rescue.stale();
                }
                self.data = s;
                self.loaded = true;
                let mut find = Task::none();
                if self.tab == Tab::Rescue && (first || moved) {
                    let a = self.rescue.shown();
                    find = self.rescue_action(a);
                }
                if let Some(t) = self.target.take() {
                    match self.data.disks.iter().find(|d| d.name == t || d.path == t || d.alias == t) {
                        Some(d) if d.usable || d.erasable => {
                            self.clone.choose_target(d);
                            self.tab = Tab::Clone;
                        }
                        Some(d) => self.show_error(ApiError::new(
                            ErrorKind::Refused,
                            format!("{t} cannot be a target: {}", clone::not_usable_reason(d)),
                        )),
                        None => self.show_error(ApiError::new(ErrorKind::NotFound, format!("{t}: no such disk"))),
                    }
                }
                // A window opened while a clone runs shows it.
                if self.progress.following().is_none() {
                    if let Some(j) = self.data.jobs.iter().find(|j| j.state == "running") {
                        self.progress.follow(j.path.to_string());
                        if first && !self.opened_at {
                            self.tab = Tab::Progress;
                        }
                    }
                }
                return find;
            }
            Message::Loaded(Err(e)) | Message::JobsLoaded(Err(e)) | Message::Called(Err(e)) => self.show_error(e),
            Message::Called(Ok(())) => return self.refresh(),
            Message::JobsLoaded(Ok(jobs)) => {
                self.data.jobs = jobs;
                if self.progress.following().is_none() {
                    if let Some(j) = self.data.jobs.iter().find(|j| j.state == "running") {
                        self.progress.follow(j.path.to_string());
                    }
                }
            }
            Message::Service(e) => match e {
                client::Event::DisksChanged => return self.refresh(),
                client::Event::JobsChanged => {
                    return self.call(|c| async move { c.jobs().await }, Message::JobsLoaded);
                }
                client::Event::ServiceGone => {
                    self.show_error(ApiError::new(ErrorKind::NotRunning, "altdiskd left the bus"));
                }
                client::Event::ServiceBack => {
                    if self.banner.as_ref().is_some_and(|b| b.kind == ErrorKind::NotRunning) {
                        self.banner = None;
                    }
                    return self.refresh();
                }
            },
            Message::Job(e) => {
                let a = self.progress.update(progress::Message::Event(e));
                return self.progress_action(a);
            }
            Message::Dark(d) => {
                if self.follow_theme {
                    self.dark = d;
                }
            }
            Message::Key(e) => return self.key(e),
            Message::Show(tab) => return self.show(tab),
            Message::DismissBanner => self.banner = None,
            Message::Disks(m) => {
                return match self.disks.update(m) {
                    disks::Action::None => Task::none(),
                    disks::Action::Refresh => self.refresh(),
                    disks::Action::CloneTo(name) => {
                        if let Some(d) = self.data.disks.iter().find(|d| d.name == name) {
                            self.clone.choose_target(d);
                        }
                        self.tab = Tab::Clone;
                        Task::none()
                    }
                    disks::Action::Manage(name) => {
                        self.manage.show(&name);
                        self.tab = Tab::Manage;
                        Task::none()
                    }
                };
            }
            Message::Clone(m) => {
                let a = self.clone.update(m, &self.data);
                return self.clone_action(a);
            }
            Message::Progress(m) => {
                let a = self.progress.update(m);
                return self.progress_action(a);
            }
            Message::Manage(m) => {
                return match self.manage.update(m) {
                    manage::Action::None => Task::none(),
                    manage::Action::Refresh => self.refresh(),
                    manage::Action::Error(e) => {
                        self.show_error(e);
                        self.refresh()
                    }
                    manage::Action::Call(call) => {
                        let done = call.clone();
                        let to = move |r| Message::Manage(manage::Message::Done(done, r));
                        match call {
                            manage::Call::Wake(d) => self.call(|c| async move { c.wake(d).await }, to),
                            manage::Call::Sleep(at) => {
                                self.call(|c| async move { c.sleep(at).await.map(|_| String::new()) }, to)
                            }
                            manage::Call::Rename(d, n) => {
                                self.call(|c| async move { c.rename(d, n).await.map(|_| String::new()) }, to)
                            }
                            manage::Call::Remove(d) => {
                                self.call(|c| async move { c.remove_system(d).await.map(|_| String::new()) }, to)
                            }
                            manage::Call::TrialBoot(d) => {
                                self.call(|c| async move { c.trial_boot(d).await.map(|_| String::new()) }, to)
                            }
                            manage::Call::MakeDefault(d) => {
                                self.call(|c| async move { c.set_boot_list(vec![d]).await.map(|_| String::new()) }, to)
                            }
                        }
                    }
                };
            }
            Message::Rescue(m) => {
                let a = self.rescue.update(m);
                return self.rescue_action(a);
            }
            Message::BootList(m) => {
                return match self.bootlist.update(m, &self.data) {
                    bootlist::Action::None => Task::none(),
                    bootlist::Action::Refresh => self.refresh(),
                    bootlist::Action::Error(e) => {
                        self.show_error(e);
                        self.refresh()
                    }
                    bootlist::Action::SetBootList(disks) => {
                        let what = format!("The boot order now starts with {}.", disks.join(", "));
                        self.call(
                            |c| async move { c.set_boot_list(disks).await },
                            move |r| Message::BootList(bootlist::Message::Done(what, r)),
                        )
                    }
                    bootlist::Action::BootNext(disk) => {
                        let what = format!("{disk} boots once at the next start.");
                        self.call(
                            |c| async move { c.set_boot_next(disk).await },
                            move |r| Message::BootList(bootlist::Message::Done(what, r)),
                        )
                    }
                };
            }
        }
        Task::none()
    }

    fn clone_action(&mut self, a: clone::Action) -> Task<Message> {
        match a {
            clone::Action::None => Task::none(),
            clone::Action::Error(e) => {
                let refresh = e.kind == ErrorKind::NotFound;
                self.show_error(e);
                if refresh {
                    self.refresh()
                } else {
                    Task::none()
                }
            }
            clone::Action::Plan { options, layout_file } => self.call(
                |c| async move { c.plan(with_layout(options, layout_file).await?).await },
                |r| Message::Clone(clone::Message::Planned(r)),
            ),
            clone::Action::Start { options, layout_file } => self.call(
                |c| async move { c.start_clone(with_layout(options, layout_file).await?).await },
                |r| Message::Clone(clone::Message::Started(r)),
            ),
            clone::Action::Wake(disk) => {
                self.call(|c| async move { c.wake(disk).await }, |r| Message::Clone(clone::Message::Woken(r)))
            }
            clone::Action::Follow(path) => {
                self.banner = None;
                self.progress.follow(path);
                self.tab = Tab::Progress;
                self.refresh()
            }
        }
    }

    fn rescue_action(&mut self, a: rescue::Action) -> Task<Message> {
        match a {
            rescue::Action::None => Task::none(),
            rescue::Action::Find => {
                self.call(|c| async move { c.find_systems().await }, |r| Message::Rescue(rescue::Message::Found(r)))
            }
            rescue::Action::Call(call) => {
                let done = call.clone();
                let to = move |r| Message::Rescue(rescue::Message::Done(done, r));
                match call {
                    rescue::Call::Restore { disk, once } => {
                        self.call(|c| async move { c.restore_system(disk, once).await }, to)
                    }
                    rescue::Call::BootNow { disk, kexec } => {
                        self.call(|c| async move { c.boot_now(disk, kexec).await }, to)
                    }
                    rescue::Call::Repair(disk) => self.call(|c| async move { c.repair_system(disk).await }, to),
                }
            }
            rescue::Action::Error(e) => {
                self.show_error(e);
                Task::none()
            }
            rescue::Action::Refresh => self.refresh(),
            rescue::Action::Follow(path) => {
                self.banner = None;
                self.progress.follow(path);
                self.tab = Tab::Progress;
                self.refresh()
            }
            rescue::Action::CloneFrom { disk, name } => {
                let source = if disk.is_empty() { clone::Source::Running } else { clone::Source::Disk { disk, name } };
                self.clone.start_from(source);
                self.tab = Tab::Clone;
                Task::none()
            }
        }
    }

    fn progress_action(&mut self, a: progress::Action) -> Task<Message> {
        match a {
            progress::Action::None => Task::none(),
            progress::Action::Cancel(path) => self
                .call(|c| async move { c.cancel(path).await }, |r| Message::Progress(progress::Message::Cancelled(r))),
            progress::Action::Sleep(at) => self.call(|c| async move { c.sleep(at).await }, Message::Called),
            progress::Action::Finished(error) => {
                if let Some(e) = error {
                    self.show_error(e);
                }
                // A clone or a repair changed what is on the disks.
                self.rescue.stale();
                self.refresh()
            }
            progress::Action::Error(e) => {
                self.show_error(e);
                Task::none()
            }
            progress::Action::NewClone => {
                self.tab = Tab::Clone;
                Task::none()
            }
            progress::Action::ShowDisks => {
                self.tab = Tab::Disks;
                Task::none()
            }
            progress::Action::ShowRescue => self.show(Tab::Rescue),
        }
    }

    /// Keys for keyboard-only use, besides Tab, Shift+Tab, Enter and Space (moving the focus
    /// and pressing: [`ui::focus`]): Alt+1…6 pick a screen, Alt+Right and Alt+Left go
    /// forward and back in the clone wizard (never past the confirmation), Escape closes a
    /// question or the banner, F5 reads everything again.
    fn key(&mut self, e: keyboard::Event) -> Task<Message> {
        let keyboard::Event::KeyPressed { key, modifiers, .. } = e else {
            return Task::none();
        };
        match key.as_ref() {
            keyboard::Key::Named(key::Named::ArrowRight) if modifiers.alt() && self.tab == Tab::Clone => {
                self.update(Message::Clone(clone::Message::Next))
            }
            keyboard::Key::Named(key::Named::ArrowLeft) if modifiers.alt() && self.tab == Tab::Clone => {
                self.update(Message::Clone(clone::Message::Back))
            }
            keyboard::Key::Named(key::Named::Escape) => {
                let closed = match self.tab {
                    Tab::Progress => self.progress.escape(),
                    Tab::Manage => self.manage.escape(),
                    Tab::Rescue => self.rescue.escape(),
                    _ => false,
                };
                if !closed {
                    self.banner = None;
                }
                Task::none()
            }
            keyboard::Key::Named(key::Named::F5) => {
                let refresh = self.refresh();
                if self.tab != Tab::Rescue {
                    return refresh;
                }
                let a = self.rescue.update(rescue::Message::Refresh);
                Task::batch([refresh, self.rescue_action(a)])
            }
            keyboard::Key::Character(c) if modifiers.alt() || modifiers.control() => {
                match c.parse::<usize>().ok().and_then(|n| Tab::ALL.get(n.wrapping_sub(1))) {
                    Some(tab) => self.show(*tab),
                    None => Task::none(),
                }
            }
            _ => Task::none(),
        }
    }

    pub fn subscription(&self) -> Subscription<Message> {
        let mut subs = vec![keyboard::listen().map(Message::Key)];
        if self.follow_theme {
            subs.push(Subscription::run(system_theme::changes).map(Message::Dark));
        }
        if let Some(c) = &self.client {
            subs.push(Subscription::run_with(c.clone(), client::events).map(Message::Service));
            if let Some(p) = self.progress.following() {
                subs.push(
                    Subscription::run_with((c.clone(), p.to_string()), |(c, p): &(Client, String)| {
                        client::job_events(c, p)
                    })
                    .map(Message::Job),
                );
            }
        }
        Subscription::batch(subs)
    }

    pub fn view(&self) -> Element<'_, Message> {
        let content: Element<'_, Message> = if !self.loaded {
            self.view_waiting()
        } else {
            match self.tab {
                Tab::Disks => self.disks.view(&self.data).map(Message::Disks),
                Tab::Clone => self.clone.view(&self.data).map(Message::Clone),
                Tab::Progress => self.progress.view(&self.data).map(Message::Progress),
                Tab::Manage => self.manage.view(&self.data).map(Message::Manage),
                Tab::BootList => self.bootlist.view(&self.data).map(Message::BootList),
                Tab::Rescue => self.rescue.view(&self.data).map(Message::Rescue),
            }
        };
        let mut main = column![].height(Length::Fill).width(Length::Fill);
        if let Some(b) = &self.banner {
            main = main.push(self.view_banner(b));
        }
        main = main.push(content);
        ui::focus::keyboard_root(row![self.view_nav(), main].height(Length::Fill))
    }

    fn view_waiting(&self) -> Element<'_, Message> {
        let what = if self.connecting {
            "Connecting to the altdisk service…"
        } else if self.banner.is_some() {
            "Nothing to show until the service answers."
        } else {
            "Reading the disks…"
        };
        container(column![ui::title("altdisk"), ui::muted(what)].spacing(ui::SPACE_S).align_x(Alignment::Center))
            .center(Length::Fill)
            .into()
    }

    fn view_banner<'a>(&'a self, b: &'a Banner) -> Element<'a, Message> {
        let tone = match b.kind {
            ErrorKind::NotFound | ErrorKind::Busy => Tone::Warning,
            _ => Tone::Danger,
        };
        let mut words = column![text(&b.text).size(ui::TEXT_M).font(ui::SEMIBOLD)].spacing(2).width(Length::Fill);
        if let Some(h) = &b.hint {
            words = words.push(text(h).size(ui::TEXT_S));
        }
        let mut r = row![words].spacing(ui::SPACE_S).align_y(Alignment::Center);
        if matches!(b.kind, ErrorKind::NotRunning | ErrorKind::NoBus) {
            r = r.push(ui::button("banner-retry", "Try again", Kind::Secondary, Some(Message::Retry)));
        }
        r = r.push(ui::button("banner-dismiss", "Dismiss", Kind::Secondary, Some(Message::DismissBanner)));
        container(r)
            .padding([ui::SPACE_S + 2.0, ui::SPACE_L])
            .width(Length::Fill)
            .id("banner")
            .style(move |t: &Theme| {
                let c = ui::colors(t);
                let col = tone.color(&c);
                let mix = |a: iced::Color, b: iced::Color, k: f32| {
                    iced::Color::from_rgb(a.r + (b.r - a.r) * k, a.g + (b.g - a.g) * k, a.b + (b.b - a.b) * k)
                };
                container::Style {
                    background: Some(Background::Color(mix(c.background, col, if c.dark { 0.25 } else { 0.14 }))),
                    border: Border { color: col, width: 0.0, radius: 0.0.into() },
                    text_color: Some(if c.dark { iced::Color::WHITE } else { mix(col, iced::Color::BLACK, 0.35) }),
                    ..container::Style::default()
                }
            })
            .into()
    }

    fn view_nav(&self) -> Element<'_, Message> {
        let mut nav = column![
            column![text("altdisk").size(ui::TEXT_XL).font(ui::BOLD), ui::muted("alternate disk systems")].spacing(2),
            Space::new().height(ui::SPACE_M),
        ]
        .spacing(ui::SPACE_XS)
        .padding(ui::SPACE_M)
        .width(Length::Fixed(ui::SIDEBAR_WIDTH))
        .height(Length::Fill);
        let running = self.data.jobs.iter().filter(|j| j.state == "running").count();
        for (i, tab) in Tab::ALL.iter().enumerate() {
            let on = *tab == self.tab;
            let mut label = row![text(tab.label()).size(ui::TEXT_M)].spacing(ui::SPACE_S).align_y(Alignment::Center);
            if *tab == Tab::Progress && running > 0 {
                label = label.push(ui::badge(format!("{running}"), Tone::Primary));
            }
            label = label.push(Space::new().width(Length::Fill)).push(ui::muted(format!("Alt+{}", i + 1)));
            let b = iced::widget::button(label)
                .width(Length::Fill)
                .padding([7, 8])
                .on_press(Message::Show(*tab))
                .style(move |t: &Theme, status| {
                    let c = ui::colors(t);
                    let hover =
                        matches!(status, iced::widget::button::Status::Hovered | iced::widget::button::Status::Pressed);
                    iced::widget::button::Style {
                        background: if on {
                            Some(Background::Color(c.surface))
                        } else if hover {
                            Some(Background::Color(iced::Color { a: 0.5, ..c.surface }))
                        } else {
                            None
                        },
                        text_color: if on { c.primary } else { c.text },
                        border: Border {
                            color: if on { c.border } else { iced::Color::TRANSPARENT },
                            width: 1.0,
                            radius: 6.0.into(),
                        },
                        ..iced::widget::button::Style::default()
                    }
                });
            nav = nav.push(ui::focusable(tab.id(), b, Some(Message::Show(*tab))));
        }
        nav = nav.push(Space::new().height(Length::Fill));
        let status = if self.client.is_none() || !self.loaded {
            ui::muted(if self.connecting { "connecting…" } else { "not connected" })
        } else {
            let mut s = format!("altdiskd {}", self.data.version);
            if self.data.simulated {
                s.push_str(" · simulated");
            }
            ui::muted(s)
        };
        nav = nav.push(status);
        if self.data.simulated {
            nav = nav.push(ui::badge("SIMULATION", Tone::Warning));
        }
        container(nav)
            .height(Length::Fill)
            .style(|t: &Theme| {
                let c = ui::colors(t);
                container::Style {
                    background: Some(Background::Color(c.surface_alt)),
                    border: Border { color: c.border, width: 0.0, radius: 0.0.into() },
                    ..container::Style::default()
                }
            })
            .into()
    }
}

/// The options with the layout file's text in them (the service takes the TOML text, not a
/// path: it may not be able to read the user's files).
async fn with_layout(mut options: CloneOptions, layout_file: Option<String>) -> Result<CloneOptions, ApiError> {
    if let Some(f) = layout_file {
        let text = tokio::fs::read_to_string(&f).await.map_err(|e| {
            ApiError::new(ErrorKind::Invalid, format!("layout file {f}: cannot read it ({e}); check the path"))
        })?;
        options.layout = Some(text);
    }
    Ok(options)
}
