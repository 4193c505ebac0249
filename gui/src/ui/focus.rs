//! Keyboard focus for anything clickable. iced 0.14's buttons, checkboxes and radios take no
//! keyboard focus; this wrapper makes its content a focusable widget (it answers iced's
//! focus operations, so `focus_next`/`focus_previous` move through buttons and text inputs
//! alike), draws a ring around it while focused, and sends its message on Enter or Space.
//! The app turns Tab and Shift+Tab into those operations; this keeps keyboard-only use
//! working without a separate focus model per screen.

use iced::advanced::layout::{self, Layout};
use iced::advanced::renderer::{self, Quad};
use iced::advanced::widget::operation::{self, Operation};
use iced::advanced::widget::tree::{self, Tree};
use iced::advanced::widget::{self, Widget};
use iced::advanced::{mouse, overlay, Clipboard, Shell};
use iced::keyboard::{self, key};
use iced::{Border, Color, Element, Event, Length, Rectangle, Size, Theme, Vector};

/// Wraps `content`; Enter or Space while focused sends `on_activate`. Without a message
/// (a disabled button) it takes no focus, as desktop toolkits skip disabled controls, but
/// keeps its id so tests find it.
pub fn focusable<'a, Message: Clone + 'a>(
    id: impl Into<widget::Id>,
    content: impl Into<Element<'a, Message>>,
    on_activate: Option<Message>,
) -> Element<'a, Message> {
    match on_activate {
        Some(m) => Element::new(Focusable {
            id: id.into(),
            content: content.into(),
            on_activate: Some(m),
            radius: super::RADIUS,
        }),
        None => iced::widget::container(content).id(id).into(),
    }
}

struct Focusable<'a, Message> {
    id: widget::Id,
    content: Element<'a, Message>,
    on_activate: Option<Message>,
    radius: f32,
}

#[derive(Debug, Default, Clone, Copy)]
struct State {
    focused: bool,
}

impl operation::Focusable for State {
    fn is_focused(&self) -> bool {
        self.focused
    }

    fn focus(&mut self) {
        self.focused = true;
    }

    fn unfocus(&mut self) {
        self.focused = false;
    }
}

impl<Message: Clone> Widget<Message, Theme, iced::Renderer> for Focusable<'_, Message> {
    fn tag(&self) -> tree::Tag {
        tree::Tag::of::<State>()
    }

    fn state(&self) -> tree::State {
        tree::State::new(State::default())
    }

    fn children(&self) -> Vec<Tree> {
        vec![Tree::new(&self.content)]
    }

    fn diff(&self, tree: &mut Tree) {
        tree.diff_children(std::slice::from_ref(&self.content));
    }

    fn size(&self) -> Size<Length> {
        self.content.as_widget().size()
    }

    fn size_hint(&self) -> Size<Length> {
        self.content.as_widget().size_hint()
    }

    fn layout(&mut self, tree: &mut Tree, renderer: &iced::Renderer, limits: &layout::Limits) -> layout::Node {
        self.content.as_widget_mut().layout(&mut tree.children[0], renderer, limits)
    }

    fn operate(
        &mut self,
        tree: &mut Tree,
        layout: Layout<'_>,
        renderer: &iced::Renderer,
        operation: &mut dyn Operation,
    ) {
        let state = tree.state.downcast_mut::<State>();
        // The id also lets tests find and click it (iced_test's `selector::id`).
        operation.focusable(Some(&self.id), layout.bounds(), state);
        operation.traverse(&mut |operation| {
            self.content.as_widget_mut().operate(&mut tree.children[0], layout, renderer, operation);
        });
    }

    fn update(
        &mut self,
        tree: &mut Tree,
        event: &Event,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        renderer: &iced::Renderer,
        clipboard: &mut dyn Clipboard,
        shell: &mut Shell<'_, Message>,
        viewport: &Rectangle,
    ) {
        self.content.as_widget_mut().update(
            &mut tree.children[0],
            event,
            layout,
            cursor,
            renderer,
            clipboard,
            shell,
            viewport,
        );
        if shell.is_event_captured() {
            return;
        }
        let state = tree.state.downcast_mut::<State>();
        match event {
            Event::Keyboard(keyboard::Event::KeyPressed { key, modifiers, .. }) if state.focused => {
                let activate = matches!(key, keyboard::Key::Named(key::Named::Enter | key::Named::Space));
                if activate && !modifiers.control() && !modifiers.alt() {
                    if let Some(m) = &self.on_activate {
                        shell.publish(m.clone());
                    }
                    shell.capture_event();
                }
            }
            Event::Mouse(mouse::Event::ButtonPressed(mouse::Button::Left)) => {
                // A click moves the keyboard focus here too, as a desktop toolkit does.
                let over = cursor.is_over(layout.bounds());
                if over != state.focused {
                    state.focused = over;
                    shell.request_redraw();
                }
            }
            _ => {}
        }
    }

    fn mouse_interaction(
        &self,
        tree: &Tree,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        viewport: &Rectangle,
        renderer: &iced::Renderer,
    ) -> mouse::Interaction {
        self.content.as_widget().mouse_interaction(&tree.children[0], layout, cursor, viewport, renderer)
    }

    fn draw(
        &self,
        tree: &Tree,
        renderer: &mut iced::Renderer,
        theme: &Theme,
        style: &renderer::Style,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        viewport: &Rectangle,
    ) {
        self.content.as_widget().draw(&tree.children[0], renderer, theme, style, layout, cursor, viewport);
        if tree.state.downcast_ref::<State>().focused {
            use iced::advanced::Renderer as _;
            let b = layout.bounds().expand(3.0);
            renderer.fill_quad(
                Quad {
                    bounds: b,
                    border: Border {
                        color: super::colors(theme).focus,
                        width: 2.0,
                        radius: (self.radius + 3.0).into(),
                    },
                    ..Quad::default()
                },
                Color::TRANSPARENT,
            );
        }
    }

    fn overlay<'b>(
        &'b mut self,
        tree: &'b mut Tree,
        layout: Layout<'b>,
        renderer: &iced::Renderer,
        viewport: &Rectangle,
        translation: Vector,
    ) -> Option<overlay::Element<'b, Message, Theme, iced::Renderer>> {
        self.content.as_widget_mut().overlay(&mut tree.children[0], layout, renderer, viewport, translation)
    }
}

/// The window's root: Tab and Shift+Tab move the keyboard focus through every focusable
/// widget inside (text inputs and [`focusable`] ones alike), in the order they are drawn.
/// Done here rather than through a Subscription so it needs no round trip and works the
/// same in iced's headless simulator (the keyboard-only tests use it).
pub fn keyboard_root<'a, Message: 'a>(content: impl Into<Element<'a, Message>>) -> Element<'a, Message> {
    Element::new(KeyboardRoot { content: content.into() })
}

struct KeyboardRoot<'a, Message> {
    content: Element<'a, Message>,
}

impl<Message> Widget<Message, Theme, iced::Renderer> for KeyboardRoot<'_, Message> {
    fn children(&self) -> Vec<Tree> {
        vec![Tree::new(&self.content)]
    }

    fn diff(&self, tree: &mut Tree) {
        tree.diff_children(std::slice::from_ref(&self.content));
    }

    fn size(&self) -> Size<Length> {
        self.content.as_widget().size()
    }

    fn layout(&mut self, tree: &mut Tree, renderer: &iced::Renderer, limits: &layout::Limits) -> layout::Node {
        self.content.as_widget_mut().layout(&mut tree.children[0], renderer, limits)
    }

    fn operate(
        &mut self,
        tree: &mut Tree,
        layout: Layout<'_>,
        renderer: &iced::Renderer,
        operation: &mut dyn Operation,
    ) {
        self.content.as_widget_mut().operate(&mut tree.children[0], layout, renderer, operation);
    }

    fn update(
        &mut self,
        tree: &mut Tree,
        event: &Event,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        renderer: &iced::Renderer,
        clipboard: &mut dyn Clipboard,
        shell: &mut Shell<'_, Message>,
        viewport: &Rectangle,
    ) {
        self.content.as_widget_mut().update(
            &mut tree.children[0],
            event,
            layout,
            cursor,
            renderer,
            clipboard,
            shell,
            viewport,
        );
        if shell.is_event_captured() {
            return;
        }
        let Event::Keyboard(keyboard::Event::KeyPressed {
            key: keyboard::Key::Named(key::Named::Tab), modifiers, ..
        }) = event
        else {
            return;
        };
        let mut op: Box<dyn Operation> = if modifiers.shift() {
            Box::new(operation::focusable::focus_previous::<()>())
        } else {
            Box::new(operation::focusable::focus_next::<()>())
        };
        loop {
            self.content.as_widget_mut().operate(&mut tree.children[0], layout, renderer, op.as_mut());
            match op.finish() {
                operation::Outcome::Chain(next) => op = next,
                _ => break,
            }
        }
        // Then bring it into sight: a long page scrolls to what the keyboard reached.
        let mut locate = Locate::default();
        self.content.as_widget_mut().operate(&mut tree.children[0], layout, renderer, &mut locate);
        if let Some((index, dy)) = locate.scroll() {
            let mut by = ScrollBy { index, dy, seen: 0 };
            self.content.as_widget_mut().operate(&mut tree.children[0], layout, renderer, &mut by);
        }
        shell.capture_event();
        shell.request_redraw();
    }

    fn mouse_interaction(
        &self,
        tree: &Tree,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        viewport: &Rectangle,
        renderer: &iced::Renderer,
    ) -> mouse::Interaction {
        self.content.as_widget().mouse_interaction(&tree.children[0], layout, cursor, viewport, renderer)
    }

    fn draw(
        &self,
        tree: &Tree,
        renderer: &mut iced::Renderer,
        theme: &Theme,
        style: &renderer::Style,
        layout: Layout<'_>,
        cursor: mouse::Cursor,
        viewport: &Rectangle,
    ) {
        self.content.as_widget().draw(&tree.children[0], renderer, theme, style, layout, cursor, viewport);
    }

    fn overlay<'b>(
        &'b mut self,
        tree: &'b mut Tree,
        layout: Layout<'b>,
        renderer: &iced::Renderer,
        viewport: &Rectangle,
        translation: Vector,
    ) -> Option<overlay::Element<'b, Message, Theme, iced::Renderer>> {
        self.content.as_widget_mut().overlay(&mut tree.children[0], layout, renderer, viewport, translation)
    }
}

/// A scrollable met while walking the tree: its order, its depth, its viewport.
#[derive(Debug, Clone, Copy)]
struct Seen {
    index: usize,
    depth: usize,
    bounds: Rectangle,
    translation: Vector,
}

/// Finds the focused widget and the innermost scrollable holding it.
#[derive(Debug, Default)]
struct Locate {
    depth: usize,
    count: usize,
    open: Vec<Seen>,
    found: Option<(Rectangle, Option<Seen>)>,
}

impl Locate {
    /// Which scrollable to move, and by how much, so the focused widget shows (with a margin).
    fn scroll(&self) -> Option<(usize, f32)> {
        const MARGIN: f32 = 16.0;
        let (b, Some(s)) = self.found? else { return None };
        let top = b.y - s.translation.y;
        let bottom = top + b.height;
        let (view_top, view_bottom) = (s.bounds.y, s.bounds.y + s.bounds.height);
        if top < view_top {
            Some((s.index, top - view_top - MARGIN))
        } else if bottom > view_bottom {
            Some((s.index, (bottom - view_bottom + MARGIN).min(top - view_top)))
        } else {
            None
        }
    }
}

impl Operation for Locate {
    fn traverse(&mut self, operate: &mut dyn FnMut(&mut dyn Operation)) {
        self.depth += 1;
        operate(self);
        self.depth -= 1;
        // Left a scrollable's subtree: it no longer holds what comes next.
        while self.open.last().is_some_and(|s| s.depth >= self.depth) {
            self.open.pop();
        }
    }

    fn scrollable(
        &mut self,
        _id: Option<&widget::Id>,
        bounds: Rectangle,
        _content_bounds: Rectangle,
        translation: Vector,
        _state: &mut dyn operation::Scrollable,
    ) {
        self.open.push(Seen { index: self.count, depth: self.depth, bounds, translation });
        self.count += 1;
    }

    fn focusable(&mut self, _id: Option<&widget::Id>, bounds: Rectangle, state: &mut dyn operation::Focusable) {
        if state.is_focused() && self.found.is_none() {
            self.found = Some((bounds, self.open.last().copied()));
        }
    }
}

/// Scrolls the `index`th scrollable by `dy`.
struct ScrollBy {
    index: usize,
    dy: f32,
    seen: usize,
}

impl Operation for ScrollBy {
    fn traverse(&mut self, operate: &mut dyn FnMut(&mut dyn Operation)) {
        operate(self);
    }

    fn scrollable(
        &mut self,
        _id: Option<&widget::Id>,
        bounds: Rectangle,
        content_bounds: Rectangle,
        _translation: Vector,
        state: &mut dyn operation::Scrollable,
    ) {
        if self.seen == self.index {
            state.scroll_by(operation::scrollable::AbsoluteOffset { x: 0.0, y: self.dy }, bounds, content_bounds);
        }
        self.seen += 1;
    }
}
