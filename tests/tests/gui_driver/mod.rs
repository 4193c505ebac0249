//! Drives altdisk-gui headless, as its window would run: the app's `update` loop with its
//! Tasks and Subscriptions running on an iced runtime (tokio), and iced_test's simulator
//! for what a user sees and clicks. Shared by the GUI tests (sim_gui.rs, root_gui.rs); kept
//! out of the support library so only these test binaries link iced.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use altdisk_gui::{App, Bus, Config, Message};
use iced::futures::channel::mpsc;
use iced::futures::StreamExt;
use iced::keyboard;
use iced_test::futures::backend::native::tokio::Executor;
use iced_test::futures::subscription;
use iced_test::futures::Runtime;
use iced_test::runtime::{task, Action};
use iced_test::selector::{self, Candidate};
use iced_test::Simulator;

/// The simulated window: big enough that nothing a test clicks is scrolled out of sight.
pub const SIZE: (f32, f32) = (1280.0, 6000.0);

pub struct Driver {
    pub app: App,
    runtime: Runtime<Executor, mpsc::Sender<Message>, Message>,
    rx: mpsc::Receiver<Message>,
    waiter: tokio::runtime::Runtime,
}

impl Driver {
    /// The app talking to the bus at `address`, light theme (no desktop portal asked).
    pub fn new(address: &str) -> Driver {
        Driver::with(Config { dark: Some(false), ..Config::new(Bus::Address(address.to_string())) })
    }

    pub fn with(config: Config) -> Driver {
        let (tx, rx) = mpsc::channel(256);
        let executor = Executor::new().expect("a tokio runtime for the app");
        let runtime = Runtime::new(executor, tx);
        let (app, boot) = runtime.enter(|| App::new(config));
        let waiter = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut d = Driver { app, runtime, rx, waiter };
        d.run(boot);
        d.resubscribe();
        d
    }

    fn run(&mut self, t: iced::Task<Message>) {
        if let Some(stream) = task::into_stream(t) {
            // Widget operations (focus, scrolling) act on a live window's tree; the
            // simulator keeps its own, so only the messages matter here.
            let messages = stream.filter_map(|a| async move {
                match a {
                    Action::Output(m) => Some(m),
                    _ => None,
                }
            });
            self.runtime.run(messages.boxed());
        }
    }

    fn resubscribe(&mut self) {
        let app = &self.app;
        let recipes = self.runtime.enter(|| subscription::into_recipes(app.subscription()));
        self.runtime.track(recipes);
    }

    /// What `update` does in the window: apply, run the Task, follow the subscriptions.
    pub fn update(&mut self, m: Message) {
        let app = &mut self.app;
        let t = self.runtime.enter(|| app.update(m));
        self.run(t);
        self.resubscribe();
    }

    /// Apply the next message from a Task or a Subscription; false when none came in time.
    pub fn step(&mut self, within: Duration) -> bool {
        let next = self.waiter.block_on(async { tokio::time::timeout(within, self.rx.next()).await });
        match next {
            Ok(Some(m)) => {
                self.update(m);
                true
            }
            _ => false,
        }
    }

    /// Process messages until `done` says so; panics after `limit`, saying what was awaited
    /// and what the window showed.
    pub fn until(&mut self, what: &str, limit: Duration, done: impl Fn(&App) -> bool) -> Duration {
        let start = Instant::now();
        while !done(&self.app) {
            let left = limit.checked_sub(start.elapsed()).unwrap_or_else(|| {
                panic!(
                    "waited {limit:?} for {what}; banner: {:?}; the window shows: {:?}",
                    self.app.banner(),
                    self.texts()
                )
            });
            self.step(left.min(Duration::from_millis(200)));
        }
        start.elapsed()
    }

    /// Process whatever comes in for `d`.
    pub fn settle(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.step(left.min(Duration::from_millis(100)));
        }
    }

    fn simulator(&self) -> Simulator<'_, Message, iced::Theme, iced::Renderer> {
        Simulator::with_size(iced_test::core::Settings::default(), SIZE, self.app.view())
    }

    /// Every text the window shows now (labels, values, text in fields).
    pub fn texts(&self) -> Vec<String> {
        let mut all = Vec::new();
        let mut ui = self.simulator();
        let _ = ui.find(|c: Candidate<'_>| {
            match c {
                Candidate::Text { content, .. } => all.push(content.to_string()),
                Candidate::TextInput { state, .. } => all.push(state.text().to_string()),
                _ => {}
            }
            None::<()>
        });
        all
    }

    /// The disk first in the UEFI boot order, as the window last read it.
    pub fn data_first_boot(&self) -> String {
        self.app
            .data()
            .boot
            .iter()
            .find(|e| e.in_order && !e.disk.is_empty())
            .map(|e| e.disk.clone())
            .unwrap_or_default()
    }

    /// The window shows a text containing `s`.
    pub fn shows(&self, s: &str) -> bool {
        self.texts().iter().any(|t| t.contains(s))
    }

    /// A widget with this id is in the window.
    pub fn has(&self, id: impl Into<iced::widget::Id>) -> bool {
        self.simulator().find(selector::id(id)).is_ok()
    }

    /// Click what `target` selects (a widget id) and apply what that sent.
    pub fn click(&mut self, id: impl Into<iced::widget::Id>) -> usize {
        let id = id.into();
        let messages: Vec<Message> = {
            let mut ui = self.simulator();
            ui.click(id.clone())
                .unwrap_or_else(|e| panic!("clicking {id:?}: {e:?}; the window shows {:?}", self.texts()));
            ui.into_messages().collect()
        };
        let n = messages.len();
        for m in messages {
            self.update(m);
        }
        n
    }

    /// Click the text input `id` and type `text` into it.
    pub fn type_into(&mut self, id: &'static str, text: &str) {
        let messages: Vec<Message> = {
            let mut ui = self.simulator();
            ui.click(selector::id(id)).unwrap_or_else(|e| panic!("clicking {id}: {e:?}"));
            let _ = ui.typewrite(text);
            ui.into_messages().collect()
        };
        for m in messages {
            self.update(m);
        }
    }

    /// Press keys in one window (focus moves with Tab across presses) and apply what they
    /// sent.
    pub fn keys(&mut self, keys: &[keyboard::Key]) -> Vec<Message> {
        let messages: Vec<Message> = {
            let mut ui = self.simulator();
            for k in keys {
                let _ = ui.tap_key(k.clone());
            }
            ui.into_messages().collect()
        };
        for m in messages.clone() {
            self.update(m);
        }
        messages
    }

    /// Press keys in a window of `size`; where the focused widget ends up on screen (its
    /// visible part), if anything has the focus.
    pub fn focus_after(&self, size: (f32, f32), keys: &[keyboard::Key]) -> Option<iced::Rectangle> {
        let mut ui = Simulator::with_size(iced_test::core::Settings::default(), size, self.app.view());
        for k in keys {
            let _ = ui.tap_key(k.clone());
        }
        let found = ui.find(selector::is_focused()).ok()?;
        Some(found.visible_bounds().unwrap_or_default())
    }

    /// A key with Alt held, as the window's keyboard subscription hands it to the app.
    pub fn alt_key(&mut self, key: keyboard::Key) {
        let e = keyboard::Event::KeyPressed {
            key: key.clone(),
            modified_key: key,
            physical_key: keyboard::key::Physical::Unidentified(keyboard::key::NativeCode::Unidentified),
            location: keyboard::Location::Standard,
            modifiers: keyboard::Modifiers::ALT,
            text: None,
            repeat: false,
        };
        self.update(Message::Key(e));
    }
}

pub fn named(k: keyboard::key::Named) -> keyboard::Key {
    keyboard::Key::Named(k)
}
