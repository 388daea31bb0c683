//! What `update` asks the loop to do. Effects are carried out by the app loop and the tasks it
//! owns, never by `update` itself.

use crate::distill::Control;

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send a command to the engine task.
    Control(Control),
    /// Suspend the terminal and run `editor` on `text` (candidate `parent` of `probe`); the
    /// loop answers with [`super::Action::Edited`].
    Edit { editor: String, probe: usize, parent: u32, text: String },
    /// Start the shutdown order: stop input, cancel the generation in flight, let the engine
    /// finish, restore the terminal.
    Quit,
}
