//! The workbench: one `select!` loop that owns the [`State`], turns terminal input, engine
//! news and memory readings into [`Action`]s, applies them with [`update`], carries out the
//! returned [`Effect`]s, and redraws at most every [`FRAME`] when something changed.
//!
//! Tasks, each owned here: the engine (a cancellation token + join handle) and the memory
//! sampler (token + handle). Shutdown order: stop reading input → cancel the generation in
//! flight and stop the engine → drain its events until it returns (everything accepted is
//! already written and synced by then) → stop the sampler → restore the terminal.

pub mod action;
pub mod compare;
pub mod diff;
pub mod edit;
pub mod effect;
pub mod event;
pub mod filter;
pub mod form;
pub mod keymap;
pub mod launch;
pub mod preload;
pub mod sort;
pub mod state;
pub mod tagform;
pub mod throughput;
pub mod update;
pub mod wrap;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::EventStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::distill::{Control, CurationMode, DistillError, EngineEvent, Summary};
use crate::setup::Prepared;
use crate::theme::Theme;
pub use action::{Action, Command};
pub use effect::Effect;
pub use event::Event;
pub use keymap::Keymap;
pub use state::{RunInfo, State};
pub use update::update;

/// The shortest time between two frames (~30 fps).
pub const FRAME: Duration = Duration::from_millis(33);
/// How often the memory gauge is sampled.
pub const MEMORY_SAMPLE: Duration = Duration::from_millis(250);
/// Engine events applied before the loop looks at input and the clock again.
const COALESCE: usize = 512;

pub struct Options {
    pub theme: Theme,
    pub keymap: Keymap,
    pub mode: CurationMode,
    /// Warnings from setup, shown in the status line (they are in the log too).
    pub notes: Vec<String>,
}

/// Restores the terminal however the loop ends (the panic hook from `ratatui::init` covers
/// panics).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The initial state for a prepared run.
pub fn initial_state(p: &Prepared, backend: &dyn Backend, opts: &Options) -> State {
    let info = RunInfo {
        backend: p.backend.label().to_owned(),
        model: p.model_name.clone(),
        output: p.distill.output.display().to_string(),
        gate: p.distill.min_score,
    };
    let settings = State::initial_settings(
        opts.mode,
        p.distill.runs.max(1),
        p.distill.sampling.temperature,
        backend.memory().limits,
    );
    let mut s = State::new(info, &p.probes, settings);
    s.keymap = opts.keymap.clone();
    if let Some(n) = opts.notes.last() {
        s.note = Some(state::Note { text: n.clone(), level: state::Level::Warn });
    }
    s
}

/// Runs the workbench until the operator quits. Returns the engine's summary. `engine` comes
/// from [`crate::setup::engine`], built before the runtime (it reads the store and may hash
/// the model).
pub async fn run(
    prepared: Prepared,
    backend: Arc<dyn Backend>,
    engine: crate::distill::Engine,
    opts: Options,
) -> anyhow::Result<Option<Summary>> {
    let state = initial_state(&prepared, backend.as_ref(), &opts);
    run_engine(state, engine, backend, opts).await
}

/// Runs the workbench over an engine built elsewhere (`lem-tui review` builds one over an
/// ingested session) from `state`, until the operator quits.
pub async fn run_engine(
    mut state: State,
    mut engine: crate::distill::Engine,
    backend: Arc<dyn Backend>,
    opts: Options,
) -> anyhow::Result<Option<Summary>> {
    let sampler_cancel = CancellationToken::new();
    let (mut mem_rx, sampler) =
        crate::backend::memory::spawn_sampler(Arc::clone(&backend), MEMORY_SAMPLE, sampler_cancel.clone());
    engine.memory = Some(mem_rx.clone());
    let (ev_tx, mut ev_rx) = mpsc::channel::<EngineEvent>(1024);
    let (ctl_tx, ctl_rx) = mpsc::channel::<Control>(64);
    let cancel = CancellationToken::new();
    let mut engine_task: JoinHandle<Result<Summary, DistillError>> =
        tokio::spawn(engine.run(ev_tx, ctl_rx, cancel.clone()));
    let mut engine_done = false;
    let mut engine_panicked = false;

    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let guard = TerminalGuard;
    let size = terminal.size().context("reading the terminal size")?;
    update(&mut state, Action::Resize { width: size.width, height: size.height });

    let started = Instant::now();
    let mut input = EventStream::new();
    let mut engine_open = true;
    let mut summary: Option<Summary> = None;
    let mut engine_error: Option<DistillError> = None;
    let mut dirty = true;
    let mut next_frame = Instant::now();
    let keymap = opts.keymap;
    let theme = opts.theme;
    if state.editor.is_none() {
        state.editor = std::env::var("EDITOR").ok().filter(|e| !e.trim().is_empty());
    }

    'main: loop {
        if dirty && Instant::now() >= next_frame {
            terminal.draw(|f| crate::ui::render(&state, &theme, f)).context("drawing")?;
            dirty = false;
            next_frame = Instant::now() + FRAME;
        }
        let mut batch: Vec<Event> = Vec::new();
        tokio::select! {
            ev = next_input(&mut input) => match ev {
                Some(Ok(ev)) => batch.extend(Event::from_terminal(ev)),
                // A terminal that cannot be read any more cannot be operated: leave cleanly.
                Some(Err(_)) | None => break 'main,
            },
            ev = ev_rx.recv(), if engine_open => match ev {
                Some(ev) => {
                    batch.push(Event::Engine(ev));
                    // Coalesce a burst of tokens into one frame.
                    while batch.len() < COALESCE {
                        match ev_rx.try_recv() {
                            Ok(ev) => batch.push(Event::Engine(ev)),
                            Err(_) => break,
                        }
                    }
                }
                None => engine_open = false,
            },
            Ok(()) = mem_rx.changed() => batch.push(Event::Memory(mem_rx.borrow_and_update().clone())),
            res = &mut engine_task, if !engine_done => {
                engine_done = true;
                let r = match res {
                    Ok(Ok(s)) => { summary = Some(s); Ok(()) }
                    Ok(Err(e)) => {
                        let shown = e.to_string();
                        engine_error = Some(e);
                        Err(shown)
                    }
                    Err(_) => Err("the engine task panicked".to_owned()),
                };
                if r.is_err() && engine_error.is_none() {
                    engine_panicked = true;
                }
                batch.push(Event::EngineExited(r));
            },
            () = tokio::time::sleep_until(next_frame.into()), if dirty => {},
        }
        let at = started.elapsed();
        let mut actions: std::collections::VecDeque<Action> =
            batch.into_iter().filter_map(|ev| ev.into_action(&state, &keymap, at)).collect();
        while let Some(action) = actions.pop_front() {
            dirty = true;
            for fx in update(&mut state, action) {
                match fx {
                    // Never dropped in silence: what cannot be queued goes back to `update`,
                    // which tells the operator (and lets a decision be made again).
                    Effect::Control(c) => {
                        if let Err(e) = ctl_tx.try_send(c) {
                            let (control, why) = match e {
                                mpsc::error::TrySendError::Full(c) => (c, "the engine is busy; try again"),
                                mpsc::error::TrySendError::Closed(c) => (c, "the engine has stopped"),
                            };
                            tracing::warn!(?control, why, "control not sent");
                            actions.push_front(Action::ControlNotSent { control, why: why.to_owned() });
                        }
                    }
                    Effect::Edit { editor, probe, parent, text } => {
                        let result = edit_suspended(&mut terminal, &mut input, editor, text).await?;
                        actions.push_back(Action::Edited { probe, parent, result });
                    }
                    Effect::Quit => break 'main,
                }
            }
        }
    }

    // Shutdown, in order. Input first: nothing the operator types now can start new work.
    drop(input);
    let _ = ctl_tx.try_send(Control::Stop { now: true });
    cancel.cancel();
    if !engine_done {
        // The engine may be blocked sending to us: keep draining until it returns.
        let drain = async { while ev_rx.recv().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(30), drain).await;
        match tokio::time::timeout(Duration::from_secs(30), &mut engine_task).await {
            Ok(Ok(Ok(s))) => summary = Some(s),
            Ok(Ok(Err(e))) => engine_error = Some(e),
            Ok(Err(_)) => engine_panicked = true,
            Err(_) => tracing::warn!("the engine did not stop within 30 s"),
        }
    }
    sampler_cancel.cancel();
    let _ = sampler.await;
    drop(terminal);
    drop(guard);
    if let Some(e) = engine_error {
        // Kept typed: the exit code tells "no endpoint came back" from other failures.
        return Err(anyhow::Error::new(e).context("the distill engine stopped"));
    }
    if engine_panicked {
        anyhow::bail!("the distill engine failed: the engine task panicked");
    }
    Ok(summary)
}

/// Hands the terminal to `$EDITOR` and takes it back: key reading stops (the old stream's
/// reader thread is shut down, so it cannot steal the editor's keys), raw mode and the
/// alternate screen are left, the editor runs on a blocking thread (the engine keeps working
/// meanwhile; its events wait in their bounded channel), then the screen is restored and
/// redrawn whole.
async fn edit_suspended(
    terminal: &mut ratatui::DefaultTerminal,
    input: &mut EventStream,
    editor: String,
    text: String,
) -> anyhow::Result<Result<String, String>> {
    // A new stream starts no reader until it is polled.
    drop(std::mem::replace(input, EventStream::new()));
    ratatui::restore();
    let dir = std::env::temp_dir();
    let result = tokio::task::spawn_blocking(move || edit::run_editor(&editor, &text, &dir))
        .await
        .unwrap_or_else(|e| Err(format!("the editor's thread failed: {e}")));
    // ratatui's own crossterm: raw mode's saved state lives in that crate, and `ratatui::restore`
    // (on quit) must find it there to leave raw mode.
    use ratatui::crossterm;
    crossterm::terminal::enable_raw_mode().context("taking the terminal back from the editor")?;
    crossterm::execute!(std::io::stdout(), crossterm::terminal::EnterAlternateScreen)
        .context("taking the terminal back from the editor")?;
    terminal.clear().context("redrawing after the editor")?;
    Ok(result)
}

async fn next_input(input: &mut EventStream) -> Option<std::io::Result<crossterm::event::Event>> {
    use futures_core::Stream;
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *input).poll_next(cx)).await
}
