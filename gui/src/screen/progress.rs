//! Progress: one clone job followed live. Its steps (done, now, to come), a bar with bytes
//! and files, the rate and the time left, the path being copied, the log as it is written,
//! and Cancel (asked first). A repair job (Rescue's "Repair its boot") is followed here too:
//! its steps and log, without a byte count, and not cancelled halfway. The job belongs to the service: closing the window leaves it
//! running, and a new window finds it (`ListJobs`), reads what it missed (`LogLines`) and
//! follows it from there.

use altdisk_api::{JobInfo, JobPhase};
use iced::widget::{column, container, progress_bar, row, scrollable, text, Space};
use iced::{Alignment, Element, Length};

use crate::client::{ApiError, ErrorKind, JobEvent, JobSnapshot, Snapshot};
use crate::format;
use crate::ui::{self, Kind, Tone};

/// Log lines kept on screen (the service keeps 5000).
const LOG_KEEP: usize = 2000;

#[derive(Debug, Default)]
pub struct Progress {
    /// The job followed, by object path.
    following: Option<String>,
    job: Option<JobSnapshot>,
    /// Cancel was pressed: ask first.
    confirm_cancel: bool,
    cancelling: bool,
    /// Why the job cannot be followed any more (its last state stays).
    lost: Option<String>,
    /// Its end was handed to the app (once, however it was learnt).
    ended: bool,
}

#[derive(Debug, Clone)]
pub enum Message {
    Follow(String),
    Event(JobEvent),
    AskCancel,
    KeepGoing,
    Cancel,
    Cancelled(Result<(), ApiError>),
    Sleep(String),
    NewClone,
    ShowDisks,
    ShowRescue,
}

#[derive(Debug)]
pub enum Action {
    None,
    /// Cancel the job at this path.
    Cancel(String),
    /// Unmount the clone left mounted here.
    Sleep(String),
    /// The job ended: read disks and systems again; with an error when it failed.
    Finished(Option<ApiError>),
    Error(ApiError),
    NewClone,
    ShowDisks,
    ShowRescue,
}

impl Progress {
    /// The job this screen follows (the app subscribes to its signals).
    pub fn following(&self) -> Option<&str> {
        self.following.as_deref()
    }

    pub fn job(&self) -> Option<&JobSnapshot> {
        self.job.as_ref()
    }

    pub fn asks_to_cancel(&self) -> bool {
        self.confirm_cancel
    }

    /// Follow `path` (a clone just started, or one found running).
    pub fn follow(&mut self, path: String) {
        if self.following.as_deref() != Some(&path) {
            *self = Progress { following: Some(path), ..Progress::default() };
        }
    }

    /// Escape: close the question.
    pub fn escape(&mut self) -> bool {
        std::mem::take(&mut self.confirm_cancel)
    }

    pub fn update(&mut self, message: Message) -> Action {
        match message {
            Message::Follow(p) => self.follow(p),
            Message::Event(e) => return self.event(e),
            Message::AskCancel => self.confirm_cancel = true,
            Message::KeepGoing => self.confirm_cancel = false,
            Message::Cancel => {
                self.confirm_cancel = false;
                if let (Some(p), false) = (&self.following, self.cancelling) {
                    self.cancelling = true;
                    return Action::Cancel(p.clone());
                }
            }
            Message::Cancelled(r) => {
                if let Err(e) = r {
                    self.cancelling = false;
                    return Action::Error(e);
                }
            }
            Message::Sleep(at) => return Action::Sleep(at),
            Message::NewClone => return Action::NewClone,
            Message::ShowDisks => return Action::ShowDisks,
            Message::ShowRescue => return Action::ShowRescue,
        }
        Action::None
    }

    fn event(&mut self, e: JobEvent) -> Action {
        let mine = |p: &str| self.following.as_deref() == Some(p);
        match e {
            JobEvent::Snapshot(s) if mine(&s.path) => {
                let done = s.finished();
                let failed = (s.state == "failed").then(|| failed_text(&s.kind, &s.error));
                let mut s = s;
                trim(&mut s.log);
                self.job = Some(s);
                self.lost = None;
                if done && !std::mem::replace(&mut self.ended, true) {
                    return Action::Finished(failed.map(|m| ApiError::new(ErrorKind::JobFailed, m)));
                }
            }
            JobEvent::Changed(p, changed) if mine(&p) => {
                if let Some(j) = &mut self.job {
                    for (k, v) in &changed {
                        j.apply(k, &v.to_value());
                    }
                }
            }
            JobEvent::Log(p, level, msg) if mine(&p) => {
                if let Some(j) = &mut self.job {
                    j.log.push((level, msg));
                    trim(&mut j.log);
                }
            }
            JobEvent::Finished(p, ok, error) if mine(&p) => {
                self.cancelling = false;
                self.confirm_cancel = false;
                if let Some(j) = &mut self.job {
                    if j.state == "running" || j.state.is_empty() {
                        j.state = if ok {
                            "succeeded".into()
                        } else if error.to_lowercase().contains("cancel") {
                            "cancelled".into()
                        } else {
                            "failed".into()
                        };
                    }
                    if !ok && j.error.is_empty() {
                        j.error = error.clone();
                    }
                }
                let cancelled = self.job.as_ref().is_some_and(|j| j.state == "cancelled");
                let kind = self.job.as_ref().map(|j| j.kind.clone()).unwrap_or_default();
                if std::mem::replace(&mut self.ended, true) {
                    return Action::None;
                }
                return Action::Finished(
                    (!ok && !cancelled).then(|| ApiError::new(ErrorKind::JobFailed, failed_text(&kind, &error))),
                );
            }
            // A finished job leaving the bus after its grace period is not news.
            JobEvent::Lost(p, e) if mine(&p) && !self.job.as_ref().is_some_and(JobSnapshot::finished) => {
                self.lost = Some(e.message.clone());
                return Action::Error(e);
            }
            _ => {}
        }
        Action::None
    }

    pub fn view<'a>(&'a self, data: &'a Snapshot) -> Element<'a, Message> {
        let mut page = column![].spacing(ui::SPACE_M).padding(ui::SPACE_L);
        let others: Vec<&JobInfo> = data.jobs.iter().collect();
        let Some(job) = &self.job else {
            page = page.push(ui::title("Progress"));
            if self.following.is_some() {
                page = page.push(ui::muted("Reading the job…"));
            } else {
                page = page.push(ui::card(
                    column![
                        ui::body("No clone is running."),
                        row![
                            ui::button("new-clone", "Start a clone", Kind::Primary, Some(Message::NewClone)),
                            ui::button("show-disks", "Show the disks", Kind::Secondary, Some(Message::ShowDisks)),
                        ]
                        .spacing(ui::SPACE_S),
                    ]
                    .spacing(ui::SPACE_M),
                ));
            }
            if !others.is_empty() {
                page = page.push(jobs_list(&others, self.following.as_deref()));
            }
            return page.into();
        };

        let targets = job.targets.join(", ");
        let named: Vec<String> = job
            .targets
            .iter()
            .map(|t| match data.disks.iter().find(|d| &d.name == t || &d.path == t) {
                Some(d) => format::disk_short(d),
                None => t.clone(),
            })
            .collect();
        let (state_text, tone) = match job.state.as_str() {
            "running" => ("running", Tone::Primary),
            "succeeded" => ("finished", Tone::Success),
            "failed" => ("failed", Tone::Danger),
            "cancelled" => ("cancelled", Tone::Warning),
            _ => ("…", Tone::Neutral),
        };
        let repair = job.kind == altdisk_api::job_kind::REPAIR;
        let headline = match (job.kind.as_str(), job.state.as_str()) {
            ("repair", "running") => format!("Repairing the boot of the system on {}", named.join(", ")),
            ("repair", "succeeded") => format!("Repaired the boot of the system on {}", named.join(", ")),
            ("repair", "failed") => format!("Repair of the system on {} failed", named.join(", ")),
            ("repair", _) => format!("Repair of the system on {}", named.join(", ")),
            ("resume", "running") => format!("Finishing the clone on {}", named.join(", ")),
            ("resume", "succeeded") => format!("Finished the clone on {}", named.join(", ")),
            (_, "running") => format!("Cloning to {}", named.join(", ")),
            (_, "succeeded") => format!("Cloned to {}", named.join(", ")),
            (_, "cancelled") => format!("Clone to {} cancelled", named.join(", ")),
            (_, "failed") => format!("Clone to {} failed", named.join(", ")),
            _ => format!("Clone to {}", named.join(", ")),
        };
        page = page.push(
            row![
                column![
                    text(headline).size(ui::TEXT_XL).font(ui::BOLD),
                    ui::muted(format!(
                        "started {} · job {}",
                        format::date(&job.started),
                        job.path.rsplit('/').next().unwrap_or("")
                    )),
                ]
                .spacing(ui::SPACE_XS)
                // A long headline wraps rather than push the state off the window.
                .width(Length::Fill),
                ui::badge(state_text, tone),
            ]
            .spacing(ui::SPACE_S)
            .align_y(Alignment::Center),
        );

        // Steps: done, now, to come.
        let current = JobPhase::parse(&job.phase);
        let steps: Vec<JobPhase> = if job.steps.is_empty() {
            JobPhase::ALL.to_vec()
        } else {
            job.steps.iter().filter_map(|s| JobPhase::parse(s)).collect()
        };
        let at = current.and_then(|c| steps.iter().position(|s| *s == c)).unwrap_or(0);
        let mut step_col = column![].spacing(ui::SPACE_S);
        for (i, s) in steps.iter().enumerate() {
            let finished_ok = job.state == "succeeded";
            let (mark, tone) = if finished_ok || i < at {
                ("✓", Tone::Success)
            } else if i == at && job.state == "running" {
                ("▸", Tone::Primary)
            } else if i == at && job.finished() {
                ("✗", Tone::Danger)
            } else {
                ("·", Tone::Neutral)
            };
            let label = if repair { repair_step(*s).to_string() } else { capitalise(s.describe()) };
            let line = row![
                container(ui::toned(mark, tone)).width(Length::Fixed(18.0)),
                if i == at && job.state == "running" {
                    text(label).size(ui::TEXT_M).font(ui::SEMIBOLD).into()
                } else if i < at || finished_ok {
                    ui::body(label)
                } else {
                    ui::dim(label)
                },
            ]
            .spacing(ui::SPACE_XS)
            .align_y(Alignment::Center);
            step_col = step_col.push(line);
        }

        // The bar.
        // The total is an estimate made before the copy (used space); a finished clone is
        // all there whatever the figures say.
        let fraction = if job.state == "succeeded" {
            1.0
        } else if repair {
            // No bytes to count: the steps done.
            at as f32 / steps.len().max(1) as f32
        } else if job.bytes_total > 0 {
            (job.bytes_done as f32 / job.bytes_total as f32).min(1.0)
        } else {
            0.0
        };
        let bar = progress_bar(0.0..=1.0, fraction).girth(14).style(move |t: &iced::Theme| {
            let c = ui::colors(t);
            progress_bar::Style {
                background: iced::Background::Color(c.surface_alt),
                bar: iced::Background::Color(match tone {
                    Tone::Danger => c.danger,
                    Tone::Warning => c.warning,
                    Tone::Success => c.success,
                    _ => c.primary,
                }),
                border: iced::Border { radius: 7.0.into(), ..iced::Border::default() },
            }
        });
        let mut detail = if job.state == "succeeded" {
            format!("{} files", job.files_done)
        } else {
            format!("{} of {} files", job.files_done, job.files_total)
        };
        if job.state == "running" && job.rate > 0 {
            detail.push_str(&format!(" · {}", format::rate(job.rate)));
            if let Some(left) = format::time_left(job.bytes_done, job.bytes_total, job.rate) {
                detail.push_str(&format!(" · about {left} left"));
            }
        }
        let headline = if job.state == "succeeded" {
            format!("{} copied", format::bytes(job.bytes_done))
        } else {
            format!(
                "{} of {} · {}",
                format::bytes(job.bytes_done),
                format::bytes(job.bytes_total),
                format::percent(job.bytes_done.min(job.bytes_total), job.bytes_total)
            )
        };
        let (headline, detail) = if repair {
            let now = match (job.state.as_str(), current) {
                ("succeeded", _) => "The boot is repaired".to_string(),
                ("running", Some(c)) => repair_step(c).to_string(),
                (_, _) => capitalise(&job.state),
            };
            (now, "The system's own tools make its initramfs and install its boot loader: a minute or two.".into())
        } else {
            (headline, detail)
        };
        let figures = column![text(headline).size(ui::TEXT_L).font(ui::SEMIBOLD), ui::muted(detail)].spacing(2);
        let current_path = if repair {
            Space::new().into()
        } else if job.current_path.is_empty() {
            ui::muted(current.map(|c| capitalise(c.describe())).unwrap_or_default())
        } else {
            text(&job.current_path).font(ui::MONO).size(ui::TEXT_S).wrapping(text::Wrapping::None).into()
        };
        let mut progress =
            column![figures, bar, container(current_path).clip(true).width(Length::Fill)].spacing(ui::SPACE_S);
        if let Some(l) = &self.lost {
            progress = progress.push(ui::toned(format!("Not followed any more: {l}"), Tone::Warning));
        }

        // What the user can do now.
        let mut actions = row![].spacing(ui::SPACE_S).align_y(Alignment::Center);
        if job.state == "running" && repair {
            actions = actions.push(ui::muted(
                "A repair is not stopped halfway: a boot loader half installed boots nothing. It ends by itself.",
            ));
        } else if job.state == "running" {
            if self.confirm_cancel {
                actions = actions
                    .push(ui::toned(
                        format!("Stop cloning to {targets}? The disks are left marked incomplete."),
                        Tone::Danger,
                    ))
                    .push(ui::button(
                        "cancel-confirm",
                        format!("Stop the clone onto {targets}"),
                        Kind::Danger,
                        Some(Message::Cancel),
                    ))
                    .push(ui::button("cancel-keep", "Keep going", Kind::Secondary, Some(Message::KeepGoing)));
            } else if self.cancelling {
                actions = actions.push(ui::muted("Stopping…"));
            } else {
                actions = actions.push(ui::button("cancel", "Cancel…", Kind::Secondary, Some(Message::AskCancel)));
            }
        } else {
            // What became of it, taking the room the buttons leave (a long error wraps).
            let said: Option<Element<'_, Message>> = match job.state.as_str() {
                "succeeded" if !job.mounted_at.is_empty() => {
                    Some(ui::toned(format!("The clone is mounted at {}.", job.mounted_at), Tone::Success))
                }
                "succeeded" if repair => Some(ui::toned("The boot is repaired: the system can start.", Tone::Success)),
                "succeeded" => Some(ui::toned("The clone is ready.", Tone::Success)),
                "failed" => Some(ui::toned(failed_text(&job.kind, &job.error), Tone::Danger)),
                "cancelled" => Some(ui::toned("Cancelled: the targets are marked incomplete.", Tone::Warning)),
                _ => None,
            };
            actions = actions.push(container(said.unwrap_or_else(|| Space::new().into())).width(Length::Fill));
            if job.state == "succeeded" && !job.mounted_at.is_empty() {
                actions = actions.push(ui::button(
                    "sleep-clone",
                    "Unmount it",
                    Kind::Secondary,
                    Some(Message::Sleep(job.mounted_at.clone())),
                ));
            }
            actions =
                actions.push(ui::button("show-disks", "Show the disks", Kind::Secondary, Some(Message::ShowDisks)));
            actions = if repair {
                actions.push(ui::button("show-rescue", "Back to Rescue", Kind::Primary, Some(Message::ShowRescue)))
            } else {
                actions.push(ui::button("new-clone", "Another clone", Kind::Primary, Some(Message::NewClone)))
            };
        }

        // The log, newest at the bottom, following as it grows.
        let mut log = column![].spacing(1);
        for (level, line) in &job.log {
            let warn = level == altdisk_api::level::WARNING;
            log = log.push(text(line).font(ui::MONO).size(ui::TEXT_S).style(move |t: &iced::Theme| {
                let c = ui::colors(t);
                text::Style { color: Some(if warn { c.warning } else { c.text }) }
            }));
        }
        if job.log.is_empty() {
            log = log.push(ui::muted("No log lines yet."));
        }
        let log_pane = container(
            scrollable(log.width(Length::Fill)).id("log").anchor_bottom().height(Length::Fill).width(Length::Fill),
        )
        .padding(ui::SPACE_S)
        .height(Length::Fill)
        .style(|t: &iced::Theme| {
            let c = ui::colors(t);
            container::Style {
                background: Some(iced::Background::Color(c.surface_alt)),
                border: iced::Border { color: c.border, width: 1.0, radius: ui::RADIUS.into() },
                ..container::Style::default()
            }
        });

        let top = row![
            container(ui::card(column![ui::heading("Steps"), step_col].spacing(ui::SPACE_S)))
                .width(Length::Fixed(320.0)),
            column![ui::card(progress), actions].spacing(ui::SPACE_M).width(Length::Fill),
        ]
        .spacing(ui::SPACE_M);
        page = page.push(top);
        if others.len() > 1 {
            page = page.push(jobs_list(&others, self.following.as_deref()));
        }
        page = page.push(ui::heading("Log"));
        page = page.push(log_pane);
        page.height(Length::Fill).into()
    }
}

fn jobs_list<'a>(jobs: &[&'a JobInfo], following: Option<&str>) -> Element<'a, Message> {
    let mut col = column![ui::heading("Jobs on the service")].spacing(ui::SPACE_S);
    for j in jobs {
        let on = following == Some(j.path.as_str());
        let on_to = if j.kind == altdisk_api::job_kind::REPAIR { "on" } else { "to" };
        let label = format!("{} {on_to} {} · {} · {}", j.kind, j.targets.join(", "), j.state, format::date(&j.started));
        let button: Element<'a, Message> = if on {
            ui::badge("shown", Tone::Primary)
        } else {
            ui::button(
                format!("follow-{}", j.path.as_str().rsplit('/').next().unwrap_or("")),
                "Show",
                Kind::Secondary,
                Some(Message::Follow(j.path.to_string())),
            )
        };
        col = col.push(row![ui::body(label), Space::new().width(Length::Fill), button].align_y(Alignment::Center));
    }
    ui::card(col)
}

fn trim(log: &mut Vec<(String, String)>) {
    if log.len() > LOG_KEEP {
        log.drain(..log.len() - LOG_KEEP);
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A repair's steps, in words.
fn repair_step(p: JobPhase) -> &'static str {
    match p {
        JobPhase::Validating => "Finding the system and mounting it",
        JobPhase::MakingBootable => "Making its initramfs, installing its boot loader and boot entry",
        JobPhase::Done => "Done",
        _ => p.describe(),
    }
}

/// "The clone failed: ..." (or the repair) in one line.
pub fn failed_text(kind: &str, error: &str) -> String {
    let what = if kind == altdisk_api::job_kind::REPAIR { "The repair" } else { "The clone" };
    if error.is_empty() {
        format!("{what} failed (the service gave no reason).")
    } else {
        format!("{what} failed: {error}")
    }
}
