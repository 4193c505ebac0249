//! The look, in one place: the light and dark themes, the few sizes and colours the views
//! use (taken from the theme, never written as literals in a view), and the small widgets
//! every screen shares (cards, badges, buttons that take keyboard focus, labelled fields,
//! the partition bar). A view composes these; it does not style widgets itself.

pub mod bar;
pub mod focus;
pub mod system_theme;

use iced::border::Radius;
use iced::widget::{button as iced_button, checkbox, column, container, row, text, text_input, Space};
use iced::{font, Alignment, Background, Border, Color, Element, Font, Length, Padding, Shadow, Theme};

pub use focus::focusable;

/// Spacing between related things (a label and its value).
pub const SPACE_XS: f32 = 4.0;
/// Spacing inside a group (rows of a card).
pub const SPACE_S: f32 = 8.0;
/// Spacing between groups (cards, sections).
pub const SPACE_M: f32 = 14.0;
/// Page margins.
pub const SPACE_L: f32 = 22.0;

/// Small print: captions, legends, the log.
pub const TEXT_S: f32 = 13.0;
/// Body text.
pub const TEXT_M: f32 = 15.0;
/// Card titles.
pub const TEXT_L: f32 = 18.0;
/// Page titles.
pub const TEXT_XL: f32 = 24.0;

pub const RADIUS: f32 = 8.0;
/// Height of a partition bar.
pub const BAR_HEIGHT: f32 = 26.0;
/// Width of the navigation column.
pub const SIDEBAR_WIDTH: f32 = 244.0;

pub const BOLD: Font = Font { weight: font::Weight::Bold, ..Font::DEFAULT };
/// Emphasis short of a title. Bold, as most system sans fonts (DejaVu, Noto) have no
/// semibold face and a missing weight makes the renderer fall back to another family.
pub const SEMIBOLD: Font = Font { weight: font::Weight::Bold, ..Font::DEFAULT };
pub const MONO: Font = Font::MONOSPACE;

/// The two themes; which one follows the desktop's colour scheme ([`system_theme`]).
pub fn theme(dark: bool) -> Theme {
    use iced::theme::Palette;
    let c = |hex: u32| Color::from_rgb8((hex >> 16) as u8, (hex >> 8) as u8, hex as u8);
    if dark {
        Theme::custom(
            "altdisk dark".to_string(),
            Palette {
                background: c(0x1c1e22),
                text: c(0xe4e6ea),
                primary: c(0x4f8ff7),
                success: c(0x3fb57a),
                warning: c(0xe0a63a),
                danger: c(0xef5b57),
            },
        )
    } else {
        Theme::custom(
            "altdisk light".to_string(),
            Palette {
                background: c(0xf3f4f7),
                text: c(0x1d2026),
                primary: c(0x2563d8),
                success: c(0x1f8a52),
                warning: c(0xb86e00),
                danger: c(0xc8322e),
            },
        )
    }
}

/// The colours views use, derived from the theme's palette.
#[derive(Debug, Clone, Copy)]
pub struct Colors {
    pub dark: bool,
    /// The window.
    pub background: Color,
    /// Cards and panels.
    pub surface: Color,
    /// The navigation column, table stripes, inactive bars.
    pub surface_alt: Color,
    pub border: Color,
    pub text: Color,
    /// Secondary text.
    pub muted: Color,
    pub primary: Color,
    pub on_primary: Color,
    pub success: Color,
    pub warning: Color,
    pub danger: Color,
    pub on_danger: Color,
    pub focus: Color,
}

pub fn colors(theme: &Theme) -> Colors {
    let p = theme.palette();
    let ext = theme.extended_palette();
    let dark = ext.is_dark;
    let mix = |a: Color, b: Color, t: f32| {
        Color::from_rgb(a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t)
    };
    Colors {
        dark,
        background: p.background,
        surface: if dark { mix(p.background, Color::WHITE, 0.05) } else { Color::WHITE },
        surface_alt: if dark { mix(p.background, Color::BLACK, 0.25) } else { mix(p.background, p.text, 0.04) },
        border: mix(p.background, p.text, if dark { 0.16 } else { 0.13 }),
        text: p.text,
        muted: mix(p.text, p.background, 0.38),
        primary: p.primary,
        on_primary: Color::WHITE,
        success: p.success,
        warning: p.warning,
        danger: p.danger,
        on_danger: Color::WHITE,
        focus: if dark { mix(p.primary, Color::WHITE, 0.3) } else { p.primary },
    }
}

/// What a badge or a banner says about its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Neutral,
    Primary,
    Success,
    Warning,
    Danger,
}

impl Tone {
    pub fn color(self, c: &Colors) -> Color {
        match self {
            Tone::Neutral => c.muted,
            Tone::Primary => c.primary,
            Tone::Success => c.success,
            Tone::Warning => c.warning,
            Tone::Danger => c.danger,
        }
    }
}

fn tint(base: Color, over: Color, alpha: f32) -> Color {
    Color::from_rgb(
        base.r + (over.r - base.r) * alpha,
        base.g + (over.g - base.g) * alpha,
        base.b + (over.b - base.b) * alpha,
    )
}

/// A page title.
pub fn title<'a, M: 'a>(s: impl text::IntoFragment<'a>) -> Element<'a, M> {
    text(s).size(TEXT_XL).font(BOLD).into()
}

/// A card or section title.
pub fn heading<'a, M: 'a>(s: impl text::IntoFragment<'a>) -> Element<'a, M> {
    text(s).size(TEXT_L).font(SEMIBOLD).into()
}

/// Body text.
pub fn body<'a, M: 'a>(s: impl text::IntoFragment<'a>) -> Element<'a, M> {
    text(s).size(TEXT_M).into()
}

/// Secondary text: captions, explanations, what a value means.
pub fn muted<'a, M: 'a>(s: impl text::IntoFragment<'a>) -> Element<'a, M> {
    text(s).size(TEXT_S).style(|t: &Theme| text::Style { color: Some(colors(t).muted) }).into()
}

/// Secondary text at body size (steps still to come).
pub fn dim<'a, M: 'a>(s: impl text::IntoFragment<'a>) -> Element<'a, M> {
    text(s).size(TEXT_M).style(|t: &Theme| text::Style { color: Some(colors(t).muted) }).into()
}

/// A step of a wizard: a small rounded label, clickable when `on_press` is given.
pub fn chip<'a, M: Clone + 'a>(
    id: impl Into<iced::widget::Id>,
    label: impl text::IntoFragment<'a>,
    tone: Tone,
    on_press: Option<M>,
) -> Element<'a, M> {
    let b = iced_button(text(label).size(TEXT_S).font(SEMIBOLD))
        .padding(Padding { top: 3.0, bottom: 3.0, left: 10.0, right: 10.0 })
        .on_press_maybe(on_press.clone())
        .style(move |t: &Theme, status| {
            let c = colors(t);
            let col = tone.color(&c);
            let hover = matches!(status, iced_button::Status::Hovered | iced_button::Status::Pressed);
            iced_button::Style {
                background: Some(Background::Color(tint(c.surface, col, if hover { 0.24 } else { 0.13 }))),
                text_color: if c.dark { tint(col, Color::WHITE, 0.25) } else { tint(col, Color::BLACK, 0.15) },
                border: Border { color: tint(c.surface, col, 0.45), width: 1.0, radius: Radius::from(12.0) },
                shadow: Shadow::default(),
                snap: true,
            }
        });
    focusable(id, b, on_press)
}

/// Text in a tone (a state, a warning).
pub fn toned<'a, M: 'a>(s: impl text::IntoFragment<'a>, tone: Tone) -> Element<'a, M> {
    text(s).size(TEXT_M).style(move |t: &Theme| text::Style { color: Some(tone.color(&colors(t))) }).into()
}

/// A name, label and value pair laid out on one line: "Serial  19106A801234".
pub fn fact<'a, M: 'a>(label: &'a str, value: impl text::IntoFragment<'a>) -> Element<'a, M> {
    row![
        text(label)
            .size(TEXT_S)
            .width(Length::Fixed(92.0))
            .style(|t: &Theme| text::Style { color: Some(colors(t).muted) }),
        text(value).size(TEXT_S),
    ]
    .spacing(SPACE_S)
    .into()
}

/// Facts on one line: "Serial 19106A801234   Device /dev/sdb".
pub fn facts_inline<'a, M: 'a>(facts: Vec<(&'a str, String)>) -> Element<'a, M> {
    let mut r = row![].spacing(SPACE_L);
    for (label, value) in facts {
        r = r.push(
            row![
                text(label).size(TEXT_S).style(|t: &Theme| text::Style { color: Some(colors(t).muted) }),
                text(value).size(TEXT_S),
            ]
            .spacing(SPACE_S - 2.0),
        );
    }
    r.into()
}

/// A white (or raised dark) card with a thin border.
pub fn card<'a, M: 'a>(content: impl Into<Element<'a, M>>) -> Element<'a, M> {
    container(content).padding(SPACE_M + 2.0).width(Length::Fill).style(card_style).into()
}

/// A card drawn as chosen (a selected target) or not.
pub fn card_selected<'a, M: 'a>(content: impl Into<Element<'a, M>>, selected: bool, tone: Tone) -> Element<'a, M> {
    container(content)
        .padding(SPACE_M + 2.0)
        .width(Length::Fill)
        .style(move |t: &Theme| {
            let c = colors(t);
            let mut s = card_style(t);
            if selected {
                s.border = Border { color: tone.color(&c), width: 2.0, radius: RADIUS.into() };
                s.background = Some(Background::Color(tint(c.surface, tone.color(&c), 0.06)));
            }
            s
        })
        .into()
}

pub fn card_style(t: &Theme) -> container::Style {
    let c = colors(t);
    container::Style {
        background: Some(Background::Color(c.surface)),
        border: Border { color: c.border, width: 1.0, radius: RADIUS.into() },
        // No shadow: iced's software renderer redraws only what changed, by the quads' own
        // bounds, so a shadow outside them would be painted over and over (it darkens).
        shadow: Shadow::default(),
        text_color: Some(c.text),
        snap: true,
    }
}

/// A small rounded label: a role, a state.
pub fn badge<'a, M: 'a>(s: impl text::IntoFragment<'a>, tone: Tone) -> Element<'a, M> {
    container(text(s).size(TEXT_S).font(SEMIBOLD))
        .padding(Padding { top: 2.0, bottom: 2.0, left: 9.0, right: 9.0 })
        .style(move |t: &Theme| {
            let c = colors(t);
            let col = tone.color(&c);
            container::Style {
                background: Some(Background::Color(tint(c.surface, col, if c.dark { 0.22 } else { 0.13 }))),
                border: Border { color: tint(c.surface, col, 0.45), width: 1.0, radius: Radius::from(10.0) },
                text_color: Some(if c.dark { tint(col, Color::WHITE, 0.25) } else { tint(col, Color::BLACK, 0.15) }),
                ..container::Style::default()
            }
        })
        .into()
}

/// How a button looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The next step.
    Primary,
    /// Anything else.
    Secondary,
    /// Erases, removes, stops: its label names what it destroys.
    Danger,
    /// A plain text button (less important actions).
    Quiet,
}

/// A button that takes keyboard focus (Tab) and answers Enter and Space; `id` is stable so
/// tests click it. Without a message it is drawn disabled.
pub fn button<'a, M: Clone + 'a>(
    id: impl Into<iced::widget::Id>,
    label: impl text::IntoFragment<'a>,
    kind: Kind,
    on_press: Option<M>,
) -> Element<'a, M> {
    let b = iced_button(text(label).size(TEXT_M).font(if kind == Kind::Quiet { Font::DEFAULT } else { SEMIBOLD }))
        .padding(Padding { top: 7.0, bottom: 7.0, left: 16.0, right: 16.0 })
        .on_press_maybe(on_press.clone())
        .style(move |t: &Theme, status| button_style(t, status, kind));
    focusable(id, b, on_press)
}

pub fn button_style(t: &Theme, status: iced_button::Status, kind: Kind) -> iced_button::Style {
    let c = colors(t);
    let (bg, fg, border) = match kind {
        Kind::Primary => (Some(c.primary), c.on_primary, c.primary),
        Kind::Danger => (Some(c.danger), c.on_danger, c.danger),
        Kind::Secondary => (Some(c.surface), c.text, c.border),
        Kind::Quiet => (None, c.primary, Color::TRANSPARENT),
    };
    let shade = |col: Color, by: f32| tint(col, if c.dark { Color::WHITE } else { Color::BLACK }, by);
    let (bg, fg) = match status {
        iced_button::Status::Active => (bg, fg),
        iced_button::Status::Hovered => {
            (Some(bg.map(|b| shade(b, 0.08)).unwrap_or(tint(c.surface, c.primary, 0.08))), fg)
        }
        iced_button::Status::Pressed => {
            (Some(bg.map(|b| shade(b, 0.16)).unwrap_or(tint(c.surface, c.primary, 0.16))), fg)
        }
        iced_button::Status::Disabled => (bg.map(|b| tint(b, c.background, 0.55)), tint(fg, c.background, 0.5)),
    };
    iced_button::Style {
        background: bg.map(Background::Color),
        text_color: fg,
        border: Border { color: border, width: if kind == Kind::Secondary { 1.0 } else { 0.0 }, radius: 6.0.into() },
        shadow: Shadow::default(),
        snap: true,
    }
}

/// A checkbox that takes keyboard focus; Enter or Space toggles it.
pub fn check<'a, M: Clone + 'a>(
    id: impl Into<iced::widget::Id>,
    label: impl text::IntoFragment<'a>,
    value: bool,
    on_toggle: impl Fn(bool) -> M + 'a,
) -> Element<'a, M> {
    let toggled = on_toggle(!value);
    focusable(
        id,
        checkbox(value).label(label).text_size(TEXT_M).size(17).spacing(SPACE_S).on_toggle(on_toggle),
        Some(toggled),
    )
}

/// A choice among a few values, as a row of segments; each takes focus.
pub fn segments<'a, M: Clone + 'a, V: Copy + PartialEq + 'a>(
    id: &str,
    choices: &[(V, &'a str)],
    selected: V,
    on_pick: impl Fn(V) -> M + 'a,
) -> Element<'a, M> {
    let mut r = row![].spacing(0);
    let n = choices.len();
    for (i, (v, label)) in choices.iter().enumerate() {
        let on = *v == selected;
        let msg = on_pick(*v);
        let first = i == 0;
        let last = i + 1 == n;
        let b = iced::widget::button(text(*label).size(TEXT_M))
            .padding(Padding { top: 6.0, bottom: 6.0, left: 14.0, right: 14.0 })
            .on_press(msg.clone())
            .style(move |t: &Theme, status| {
                let c = colors(t);
                let bg = if on {
                    c.primary
                } else if matches!(status, iced_button::Status::Hovered | iced_button::Status::Pressed) {
                    tint(c.surface, c.primary, 0.08)
                } else {
                    c.surface
                };
                let r = 6.0;
                iced_button::Style {
                    background: Some(Background::Color(bg)),
                    text_color: if on { c.on_primary } else { c.text },
                    border: Border {
                        color: if on { c.primary } else { c.border },
                        width: 1.0,
                        radius: Radius {
                            top_left: if first { r } else { 0.0 },
                            bottom_left: if first { r } else { 0.0 },
                            top_right: if last { r } else { 0.0 },
                            bottom_right: if last { r } else { 0.0 },
                        },
                    },
                    shadow: Shadow::default(),
                    snap: true,
                }
            });
        r = r.push(focusable(format!("{id}-{i}"), b, Some(msg)));
    }
    r.into()
}

/// A labelled text field; `id` lets Tab and tests reach it.
pub fn field<'a, M: Clone + 'a>(
    id: &'static str,
    label: &'a str,
    placeholder: &'a str,
    value: &'a str,
    on_input: impl Fn(String) -> M + 'a,
) -> Element<'a, M> {
    column![
        text(label).size(TEXT_S).font(SEMIBOLD),
        text_input(placeholder, value).id(id).on_input(on_input).size(TEXT_M).padding(7).style(input_style),
    ]
    .spacing(SPACE_XS)
    .into()
}

pub fn input_style(t: &Theme, status: text_input::Status) -> text_input::Style {
    let c = colors(t);
    let focused = matches!(status, text_input::Status::Focused { .. });
    text_input::Style {
        background: Background::Color(c.surface),
        border: Border {
            color: if focused { c.focus } else { c.border },
            width: if focused { 2.0 } else { 1.0 },
            radius: 6.0.into(),
        },
        icon: c.muted,
        placeholder: c.muted,
        value: c.text,
        selection: tint(c.surface, c.primary, 0.3),
    }
}

/// A thin horizontal line.
pub fn separator<'a, M: 'a>() -> Element<'a, M> {
    container(Space::new().height(1).width(Length::Fill))
        .style(|t: &Theme| container::Style {
            background: Some(Background::Color(colors(t).border)),
            ..container::Style::default()
        })
        .into()
}

/// A row of items spread with a flexible gap before the last ones: `spread(left, right)`.
pub fn spread<'a, M: 'a>(left: impl Into<Element<'a, M>>, right: impl Into<Element<'a, M>>) -> Element<'a, M> {
    row![left.into(), Space::new().width(Length::Fill), right.into()].align_y(Alignment::Center).spacing(SPACE_S).into()
}

/// A small coloured square, for legends.
pub fn swatch<'a, M: 'a>(color: Color) -> Element<'a, M> {
    container(Space::new().width(11).height(11))
        .style(move |_t: &Theme| container::Style {
            background: Some(Background::Color(color)),
            border: Border { radius: 3.0.into(), ..Border::default() },
            ..container::Style::default()
        })
        .into()
}
