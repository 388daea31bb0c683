//! What can happen to the workbench's state: an operator [`Command`] (whose names are the
//! keymap's), text typed into a form, or news from the engine, the memory sampler or the
//! terminal. [`super::update::update`] is the one place that applies them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::MemorySnapshot;
use crate::distill::{Control, EngineEvent};

/// An operator command. The snake_case names are the keymap file's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Move the selection (or scroll) up one row.
    Up,
    /// Move the selection (or scroll) down one row.
    Down,
    /// Scroll up one page.
    PageUp,
    /// Scroll down one page.
    PageDown,
    /// Jump to the first row.
    Top,
    /// Jump to the last row (and follow the stream again).
    Bottom,
    /// Focus the next pane.
    NextPane,
    /// Focus the previous pane.
    PrevPane,
    /// Open the selected candidate's full text and scores; submit a form.
    Open,
    /// Close the open view, form or prompt.
    Back,
    /// Keep the selected candidate for the probe under review.
    Accept,
    /// Reject every candidate of the probe under review.
    Reject,
    /// Reject every candidate, giving a reason (stored as the decision's note).
    RejectWithReason,
    /// Generate more candidates for the probe under review.
    More,
    /// Decide nothing about the probe under review and move on.
    Skip,
    /// Take back the last decision (its lesson line is removed).
    Undo,
    /// Pause or resume the queue.
    Pause,
    /// Cancel the candidate being generated.
    Cancel,
    /// Edit memory and cache limits, runs and temperature.
    Limits,
    /// Switch between auto and review curation.
    Mode,
    /// Filter the probe list (by id, domain, status, `tag:NAME`, `note:WORD`, `g<60`).
    Filter,
    /// Tag the selected probe's decision, with an optional note.
    Tag,
    /// Accept, reject, skip or tag every probe in the filter (after a count confirmation).
    Bulk,
    /// Sort the focused list (probes, or the candidate table) by its next column.
    Sort,
    /// Reverse the focused list's sort.
    SortReverse,
    /// Compare the selected candidate with another of its probe, side by side.
    Compare,
    /// Edit the selected candidate (in $EDITOR, else inline); the edit becomes a new candidate.
    Edit,
    /// The last decisions; any can be reopened and changed.
    History,
    /// Show or hide the key help.
    Help,
    /// Quit (asks first while generating).
    Quit,
    /// Answer yes to a confirmation.
    Confirm,
}

impl Command {
    /// Every command, in the order the help overlay lists them.
    pub const ALL: [Command; 31] = [
        Command::Up,
        Command::Down,
        Command::PageUp,
        Command::PageDown,
        Command::Top,
        Command::Bottom,
        Command::NextPane,
        Command::PrevPane,
        Command::Open,
        Command::Back,
        Command::Accept,
        Command::Reject,
        Command::RejectWithReason,
        Command::More,
        Command::Skip,
        Command::Undo,
        Command::Pause,
        Command::Cancel,
        Command::Limits,
        Command::Mode,
        Command::Filter,
        Command::Tag,
        Command::Bulk,
        Command::Sort,
        Command::SortReverse,
        Command::Compare,
        Command::Edit,
        Command::History,
        Command::Help,
        Command::Quit,
        Command::Confirm,
    ];

    /// The keymap name.
    pub fn name(self) -> &'static str {
        match self {
            Command::Up => "up",
            Command::Down => "down",
            Command::PageUp => "page_up",
            Command::PageDown => "page_down",
            Command::Top => "top",
            Command::Bottom => "bottom",
            Command::NextPane => "next_pane",
            Command::PrevPane => "prev_pane",
            Command::Open => "open",
            Command::Back => "back",
            Command::Accept => "accept",
            Command::Reject => "reject",
            Command::RejectWithReason => "reject_with_reason",
            Command::More => "more",
            Command::Skip => "skip",
            Command::Undo => "undo",
            Command::Pause => "pause",
            Command::Cancel => "cancel",
            Command::Limits => "limits",
            Command::Mode => "mode",
            Command::Filter => "filter",
            Command::Tag => "tag",
            Command::Bulk => "bulk",
            Command::Sort => "sort",
            Command::SortReverse => "sort_reverse",
            Command::Compare => "compare",
            Command::Edit => "edit",
            Command::History => "history",
            Command::Help => "help",
            Command::Quit => "quit",
            Command::Confirm => "confirm",
        }
    }

    /// One line for the help overlay.
    pub fn describe(self) -> &'static str {
        match self {
            Command::Up => "up / scroll up",
            Command::Down => "down / scroll down",
            Command::PageUp => "page up",
            Command::PageDown => "page down",
            Command::Top => "first row",
            Command::Bottom => "last row; follow stream",
            Command::NextPane => "next pane",
            Command::PrevPane => "previous pane",
            Command::Open => "open candidate / submit",
            Command::Back => "close / clear filter",
            Command::Accept => "accept selected candidate",
            Command::Reject => "reject all candidates",
            Command::RejectWithReason => "reject, with a reason",
            Command::More => "more candidates",
            Command::Skip => "skip this probe",
            Command::Undo => "undo last decision",
            Command::Pause => "pause / resume queue",
            Command::Cancel => "cancel current candidate",
            Command::Limits => "limits, runs, temperature",
            Command::Mode => "switch auto / review",
            Command::Filter => "filter (tag:NAME g<60 …)",
            Command::Tag => "tag / note the decision",
            Command::Bulk => "bulk over the filter",
            Command::Sort => "sort by next column",
            Command::SortReverse => "reverse the sort",
            Command::Compare => "compare two candidates (diff)",
            Command::Edit => "edit (a new candidate)",
            Command::History => "history; reopen any",
            Command::Help => "this help",
            Command::Quit => "quit",
            Command::Confirm => "yes (in a confirmation)",
        }
    }
}

/// Everything `update` applies. `at` is the time since the workbench started, so `update`
/// never reads a clock.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// An operator command.
    Command(Command),
    /// A character typed into the filter or the limits form.
    Char(char),
    /// Backspace in the filter or the limits form.
    Backspace,
    /// News from the engine.
    Engine { event: EngineEvent, at: Duration },
    /// A memory reading (also the clock tick that lets throughput decay to zero).
    Memory { snapshot: MemorySnapshot, at: Duration },
    /// The terminal's new size.
    Resize { width: u16, height: u16 },
    /// The engine task ended; `error` when it failed.
    EngineExited { error: Option<String> },
    /// A control could not be handed to the engine (its queue is full, or it has stopped).
    ControlNotSent { control: Control, why: String },
    /// A key in the inline editor.
    Edit(super::edit::EditKey),
    /// `$EDITOR` returned: the saved text, or why there is none.
    Edited { probe: usize, parent: u32, result: Result<String, String> },
}
