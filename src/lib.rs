//! # lem-tui
//!
//! A terminal workbench for curating LLM distillation data: LEM's `distill` loop (N candidates
//! per probe, grammar v3 scoring, best-of-N, quality gate, lesson JSONL), watched live and
//! memory-safe.
//!
//! ## Layers (a module never imports one above it)
//!
//! ```text
//!  main ─ commands ─┬─ headless ──┐
//!                   └─ app ─ ui ──┼─ setup ── distill (the engine) ─┬─ backend/{worker, llama, mlx, openai}
//!                                 │     └─ store (Journal impl) ───┼─ scorer (pure)
//!                                 └─ cli                           └─ lesson, config, probes
//! ```
//!
//! - [`scorer`] is pure: no I/O, no async. [`config`], [`probes`] and [`lesson`] read and write
//!   LEM's files; outside any project the configuration and demo probes built into the binary
//!   ([`config::builtin`]) stand in for them. [`backend`] owns models; blocking engines live on one dedicated thread each,
//!   the OpenAI-compatible one ([`backend::openai`]) is async tasks on the engine's runtime that
//!   spread candidates over remote endpoints and regenerate those cut off mid-stream
//!   (`JobEvent::Restart`: views drop that candidate's text). [`backend::mlx`] is MLX through
//!   mlx-rs (always on Apple Silicon, `cfg(mlx)`): it samples on the device with go-mlx's chain
//!   as MLX ops, checked against [`backend::sampler`] (the same chain on the host, pure). The
//!   blocking engines share one candidate's bookkeeping (`backend::candidate`).
//! - [`distill::Engine`] is the one implementation of the loop. It reports
//!   [`distill::EngineEvent`]s on a bounded channel and obeys [`distill::Control`] commands; the
//!   headless printer and the TUI are views over it. The engine is the one place that numbers
//!   runs (its events carry them) and that decides what an undo or a stop did. Tags and notes
//!   (`Control::Tag`) and bulk decisions over many probes (`Control::Bulk`, one control
//!   carrying the list, progress reported) go through it too: the views never write the store.
//! - [`app`] is the workbench (the TUI): one `select!` loop owns its [`app::State`]; terminal
//!   keys (through the configurable [`app::Keymap`]), engine events and memory readings become
//!   [`app::Action`]s; [`app::update`] is the only state transition and returns
//!   [`app::Effect`]s (engine controls, quit) for the loop to carry out. [`ui`] draws the state
//!   purely (no tokio, no I/O) with styles from [`theme`]'s semantic roles.
//! - [`dataset`] ingests existing data (lesson, SFT chat, prompt/completion, DPO JSONL) into the
//!   store as a session of scored candidates, so `lem-tui review` curates any dataset with the same
//!   workbench and exports; it sits beside the engine, over [`store`] and [`scorer`].
//! - [`store`] is the session store (SQLite). `setup::engine` plugs it into the engine as its
//!   write-through [`distill::Journal`] with the resume plan (before the async runtime starts:
//!   it may hash the model); the engine owns it while it runs and reaches it, and the lesson
//!   file, only from blocking threads. A decision is committed there before its lesson line is
//!   written; an undo (or a reopened older decision, `Control::Reopen`) is recorded as an intent
//!   before the line is cut, from the middle of the file by an atomic rewrite if need be. An
//!   operator's edit (`Control::AddEdit`) is a candidate of its own, derived from the original.
//! - The memory sampler (`backend::memory::spawn_sampler`) is the only reader of memory in a
//!   loop; the gauge and the engine's over-limit pause share its readings.
//!
//! ## Message flow
//!
//! backend thread ─(bounded `JobEvent`s)→ engine task ─(bounded `EngineEvent`s)→ view.
//! A slow view slows generation rather than growing memory. Cancellation tokens flow the other
//! way: the run's token is the parent of each request's.
//!
//! ## Shutdown order
//!
//! stop input → `Control::Stop` (the probe in progress is finished and its line written) or
//! cancel (the request in flight ends at the next token) → the engine task returns → the
//! backend is dropped, which stops and joins its thread → the terminal is restored.

pub mod app;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dataset;
pub mod distill;
pub mod failpoint;
pub mod headless;
pub mod lesson;
pub mod logging;
pub mod models;
pub mod probes;
pub mod scorer;
pub mod setup;
pub mod store;
pub mod theme;
pub mod ui;
