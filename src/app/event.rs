//! What arrives at the app loop, and how it becomes an [`Action`].

use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyEvent, KeyEventKind};

use super::action::Action;
use super::keymap::Keymap;
use super::state::State;
use crate::backend::MemorySnapshot;
use crate::distill::EngineEvent;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A key press or repeat (releases are dropped).
    Key(KeyEvent),
    /// The terminal was resized.
    Resize(u16, u16),
    /// News from the engine task.
    Engine(EngineEvent),
    /// A reading from the memory sampler task.
    Memory(MemorySnapshot),
    /// The engine task returned (`Err` carries its error).
    EngineExited(Result<(), String>),
}

impl Event {
    /// Terminal events the workbench cares about.
    pub fn from_terminal(ev: TermEvent) -> Option<Event> {
        match ev {
            TermEvent::Key(k) if k.kind != KeyEventKind::Release => Some(Event::Key(k)),
            TermEvent::Resize(w, h) => Some(Event::Resize(w, h)),
            _ => None,
        }
    }

    /// `at` is the time since the workbench started.
    pub fn into_action(self, state: &State, keymap: &Keymap, at: Duration) -> Option<Action> {
        match self {
            Event::Key(k) => keymap.resolve(state.input_context(), &k),
            Event::Resize(width, height) => Some(Action::Resize { width, height }),
            Event::Engine(event) => Some(Action::Engine { event, at }),
            Event::Memory(snapshot) => Some(Action::Memory { snapshot, at }),
            Event::EngineExited(r) => Some(Action::EngineExited { error: r.err() }),
        }
    }
}
