//! What `update` asks the loop to do. Effects are carried out by the app loop and the tasks it
//! owns, never by `update` itself.

use crate::distill::Control;

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send a command to the engine task.
    Control(Control),
    /// Start the shutdown order: stop input, cancel the generation in flight, let the engine
    /// finish, restore the terminal.
    Quit,
}
