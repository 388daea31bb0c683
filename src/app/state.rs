//! The workbench's state: owned by the app loop, changed only by [`super::update::update`],
//! read by the pure renderer. Everything the screen shows is derived from here.

use std::time::Duration;

use crate::backend::{Limits, MemorySnapshot};
use crate::distill::{BulkAction, Candidate, CurationMode, Decision, Outcome, Settings, Summary, Tagging};
use crate::probes::Probe;

pub use super::form::LimitsForm;
use super::keymap::Keymap;
use super::sort::{self, Sorts};
pub use super::tagform::{TagForm, TagTarget};
pub use super::throughput::Throughput;
use super::wrap::Wrapped;

/// Where a probe is in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Queued,
    Generating,
    Review,
    Kept,
    Skipped,
    Rejected,
    Failed,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Generating => "generating",
            Status::Review => "review",
            Status::Kept => "kept",
            Status::Skipped => "skipped",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
        }
    }

    pub fn decided(self) -> bool {
        matches!(self, Status::Kept | Status::Skipped | Status::Rejected | Status::Failed)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProbeView {
    pub id: String,
    pub domain: String,
    pub status: Status,
    pub candidates: Vec<Candidate>,
    pub decision: Option<Decision>,
    /// The tags and note that stand for the probe's decision.
    pub tagging: Tagging,
}

impl ProbeView {
    pub fn best(&self) -> Option<&Candidate> {
        crate::distill::best_of(&self.candidates)
    }
}

/// A candidate still being generated (for the probe in progress).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRun {
    pub run: u32,
    pub text: String,
    pub tokens: u32,
    pub done: bool,
}

/// One row of the candidate table: finished, or still streaming.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Row<'a> {
    Done(&'a Candidate),
    Live(&'a LiveRun),
}

impl Row<'_> {
    pub fn run(&self) -> u32 {
        match self {
            Row::Done(c) => c.run,
            Row::Live(l) => l.run,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Probes,
    Stream,
    Candidates,
}

impl Pane {
    pub const ORDER: [Pane; 3] = [Pane::Probes, Pane::Stream, Pane::Candidates];
}

/// What the keys talk to, from the top.
#[derive(Clone, Debug, PartialEq)]
pub enum Modal {
    Help,
    Filter,
    Limits(Box<LimitsForm>),
    ConfirmQuit,
    /// Keeping a candidate under the gate needs a yes.
    ConfirmAccept {
        probe: usize,
        run: u32,
        score: f64,
        gate: f64,
    },
    /// Two candidates of a probe side by side, diffed.
    Compare(Box<super::compare::Compare>),
    /// Tags and a note for a probe (or a bulk, or a reject's reason).
    Tag(Box<TagForm>),
    /// What to do to every probe in the filter (`B`): accept, reject, skip or tag.
    BulkChoose {
        probes: Vec<usize>,
    },
    /// Nothing happens to a bulk until this is answered.
    ConfirmBulk(Box<BulkPlan>),
    /// The inline editor (no `$EDITOR`).
    Edit(Box<super::edit::InlineEdit>),
    /// The last decisions, newest first; `sel` indexes that order.
    History {
        sel: usize,
    },
    /// A candidate's full text and score breakdown.
    Detail {
        probe: usize,
        run: u32,
        text: Wrapped,
        top: usize,
    },
}

/// A bulk the operator is asked to confirm, with what it will do.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkPlan {
    pub probes: Vec<usize>,
    pub action: BulkAction,
    /// Probes the action decides (undecided, with candidates; with a score, to accept).
    pub deciding: usize,
    /// Of those, how many a bulk accept keeps below the gate.
    pub below_gate: usize,
}

/// The probe list's order under the filter and sort, worked out on first read after the data,
/// the filter or the sort changed (a sort of 100,000 probes is milliseconds: not per key).
/// Equal whatever it holds: it is derived, not state.
#[derive(Clone, Debug, Default)]
pub struct OrderCache(std::cell::OnceCell<Vec<usize>>);

impl PartialEq for OrderCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// How keys are read at the moment (see the keymap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputContext {
    Normal,
    Text,
    Confirm,
    /// The inline editor: every printable key is text; Ctrl-S saves, Esc cancels.
    Edit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub level: Level,
}

/// The text the stream pane shows, wrapped for its width, and where it is scrolled.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamView {
    /// (probe, run) shown; `None` before anything was generated.
    pub target: Option<(usize, u32)>,
    pub text: Wrapped,
    pub follow: bool,
    pub top: usize,
}

/// Fixed facts about the run, for the status bar.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunInfo {
    pub backend: String,
    pub model: String,
    pub output: String,
    pub gate: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub info: RunInfo,
    /// For key hints and the help overlay.
    pub keymap: Keymap,
    pub probes: Vec<ProbeView>,
    /// The selected probe (an index into `probes`, always visible under the filter if any is).
    pub selected: usize,
    /// The selected row of the candidate table.
    pub cand: usize,
    pub focus: Pane,
    pub modal: Option<Modal>,
    pub filter: String,
    /// The visible probes in order; reset by [`State::reorder`].
    pub order: OrderCache,
    /// Tags used lately, newest first (the tag editor's picker).
    pub recent_tags: Vec<String>,
    /// The order of the probe list and of the candidate table.
    pub sorts: Sorts,
    pub settings: Settings,
    /// The probe whose candidates are being generated.
    pub current: Option<usize>,
    pub live: Vec<LiveRun>,
    /// The probe awaiting the operator.
    pub reviewing: Option<usize>,
    /// A decision was sent and the engine has not answered yet.
    pub decision_sent: bool,
    /// The selection follows the engine until the operator moves it elsewhere.
    pub auto_select: bool,
    pub stream: StreamView,
    pub throughput: Throughput,
    pub memory: Option<MemorySnapshot>,
    pub note: Option<Note>,
    pub finished: Option<Summary>,
    pub engine_gone: bool,
    /// The backend refused the last limits sent (shown in the limits editor until some apply).
    pub limits_refused: Option<String>,
    pub quitting: bool,
    pub size: (u16, u16),
    pub now: Duration,
    pub first_start: Option<Duration>,
    /// `$EDITOR` (a shell command line); `None` edits inline.
    pub editor: Option<String>,
    /// The decisions that stand, oldest first (the history view shows the newest first).
    pub history: Vec<Decided>,
}

/// A decision in the history view.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub probe: usize,
    pub decision: Decision,
}

impl State {
    pub fn new(info: RunInfo, probes: &[Probe], settings: Settings) -> Self {
        let probes = probes
            .iter()
            .map(|p| ProbeView {
                id: p.id.clone(),
                domain: p.domain.clone().unwrap_or_default(),
                status: Status::Queued,
                candidates: Vec::new(),
                decision: None,
                tagging: Tagging::default(),
            })
            .collect();
        Self {
            info,
            keymap: Keymap::default(),
            probes,
            selected: 0,
            cand: 0,
            focus: Pane::Probes,
            modal: None,
            filter: String::new(),
            order: OrderCache::default(),
            recent_tags: Vec::new(),
            sorts: Sorts::default(),
            settings,
            current: None,
            live: Vec::new(),
            reviewing: None,
            decision_sent: false,
            auto_select: true,
            stream: StreamView { target: None, text: Wrapped::new(1), follow: true, top: 0 },
            throughput: Throughput::default(),
            memory: None,
            note: None,
            finished: None,
            engine_gone: false,
            limits_refused: None,
            quitting: false,
            size: (80, 24),
            now: Duration::ZERO,
            first_start: None,
            editor: None,
            history: Vec::new(),
        }
    }

    /// Settings before the engine reports its own: what the flags and config resolved to.
    pub fn initial_settings(mode: CurationMode, runs: u32, temperature: f32, limits: Limits) -> Settings {
        Settings { mode, runs, temperature, limits, paused: false }
    }

    pub fn input_context(&self) -> InputContext {
        match &self.modal {
            Some(Modal::Filter | Modal::Limits(_) | Modal::Tag(_)) => InputContext::Text,
            Some(Modal::ConfirmQuit | Modal::ConfirmAccept { .. } | Modal::ConfirmBulk(_)) => InputContext::Confirm,
            Some(Modal::Edit(_)) => InputContext::Edit,
            Some(
                Modal::Help
                | Modal::Detail { .. }
                | Modal::Compare(_)
                | Modal::BulkChoose { .. }
                | Modal::History { .. },
            )
            | None => InputContext::Normal,
        }
    }

    /// Indices of the probes the filter lets through, in the probe list's sort order.
    pub fn visible(&self) -> Vec<usize> {
        self.order().to_vec()
    }

    /// [`State::visible`] without a copy.
    pub fn order(&self) -> &[usize] {
        self.order.0.get_or_init(|| {
            let mut v = self.filtered();
            let key = self.sorts.probes.key;
            let tags = (key == sort::SortKey::Tag).then(|| sort::tag_ranks(self.probes.iter().map(|p| &p.tagging)));
            self.sorts.probes.apply(&mut v, |&i| {
                let p = &self.probes[i];
                match &tags {
                    Some(ranks) => sort::tag_value(ranks, &p.tagging),
                    None => sort::probe_value(key, i, p.status, p.best()),
                }
            });
            v
        })
    }

    /// The data, the filter or the sort changed: the order is worked out again on next read.
    pub fn reorder(&mut self) {
        self.order = OrderCache::default();
    }

    fn filtered(&self) -> Vec<usize> {
        let f = super::filter::Filter::parse(&self.filter);
        if f.is_empty() {
            return (0..self.probes.len()).collect();
        }
        (0..self.probes.len()).filter(|&i| f.matches(&self.probes[i])).collect()
    }

    /// The candidate table's rows for probe `i`: finished candidates, then live ones.
    pub fn rows(&self, i: usize) -> Vec<Row<'_>> {
        let Some(p) = self.probes.get(i) else { return Vec::new() };
        let mut rows: Vec<Row<'_>> = p.candidates.iter().map(Row::Done).collect();
        if self.current == Some(i) {
            rows.extend(self.live.iter().filter(|l| !l.done).map(Row::Live));
        }
        rows.sort_by_key(Row::run);
        let key = self.sorts.candidates.key;
        let kept = match p.decision {
            Some(Decision::Kept { run, .. }) => Some(run),
            _ => None,
        };
        // Rows still streaming have no figures yet: they stay at the end.
        self.sorts.candidates.apply(&mut rows, |r| match r {
            // A decision's tags belong to the candidate it kept.
            Row::Done(c) if key == sort::SortKey::Tag => Some(if kept == Some(c.run) { 0.0 } else { 1.0 }),
            Row::Done(c) => sort::candidate_value(key, c),
            Row::Live(_) => None,
        });
        rows
    }

    pub fn selected_row(&self) -> Option<Row<'_>> {
        self.rows(self.selected).get(self.cand).copied()
    }

    /// The history view's rows: the last [`HISTORY`] decisions, newest first.
    pub fn recent(&self) -> impl Iterator<Item = &Decided> {
        self.history.iter().rev().take(HISTORY)
    }

    pub fn generating(&self) -> bool {
        self.current.is_some() && self.live.iter().any(|l| !l.done)
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts { total: self.probes.len(), ..Counts::default() };
        for p in &self.probes {
            match p.status {
                Status::Kept => c.kept += 1,
                Status::Skipped | Status::Failed => c.skipped += 1,
                Status::Rejected => c.rejected += 1,
                _ => {}
            }
        }
        c.done = c.kept + c.skipped + c.rejected;
        c
    }

    /// Remaining time at the pace so far (operator time included in review mode).
    pub fn eta(&self) -> Option<Duration> {
        let c = self.counts();
        let start = self.first_start?;
        if c.done == 0 || c.done >= c.total || self.finished.is_some() {
            return None;
        }
        let per = self.now.saturating_sub(start) / u32::try_from(c.done).ok()?;
        per.checked_mul(u32::try_from(c.total - c.done).ok()?)
    }
}

/// How many decisions the history view lists.
pub const HISTORY: usize = 50;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub done: usize,
    pub kept: usize,
    pub skipped: usize,
    pub rejected: usize,
}

impl Counts {
    pub fn pass_rate(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (self.done > 0).then(|| self.kept as f64 / self.done as f64 * 100.0)
    }
}

/// The numbers a candidate row shows.
pub fn scores(c: &Candidate) -> Option<(&crate::scorer::GrammarScore, &crate::scorer::DeltaScore)> {
    match &c.outcome {
        Outcome::Scored { grammar, delta } => Some((grammar, delta)),
        _ => None,
    }
}
