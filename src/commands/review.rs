//! `lem-tui review`: ingest datasets into the session store, then curate them in the workbench.
//!
//! The ingested data is a session like a distill run's: the same engine (review mode, every
//! probe resumed from its stored candidates) drives the same workbench, with a backend that
//! cannot generate ([`NoBackend`]), and decisions append to the session's lesson file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::backend::none::NoBackend;
use crate::backend::{Backend, Sampling};
use crate::cli::ReviewArgs;
use crate::dataset::{self, Options, Sandwich};
use crate::distill::{CurationMode, DistillConfig, Engine};
use crate::scorer::{Mode, Scorer, Thresholds};
use crate::store::{ModelIdentity, Opened, ResumeReport, Store};

fn read_trimmed(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    Ok(text.trim().to_owned())
}

pub fn review(args: &ReviewArgs) -> anyhow::Result<ExitCode> {
    let sandwich = match &args.kernel {
        Some(k) => Some(Sandwich {
            kernel: Some(read_trimmed(k, "--kernel")?),
            signature: args.signature.as_deref().map(|s| read_trimmed(s, "--signature")).transpose()?,
        }),
        None => None,
    };
    // The workbench's own checks (a terminal, theme, keymap) fail before anything is ingested.
    let workbench = if args.ingest_only {
        None
    } else {
        Some(crate::app::launch::options_with(args.theme.clone(), CurationMode::Review, &[])?)
    };
    let output = args.output.clone().unwrap_or_else(|| dataset::default_output(&args.files));
    let path = crate::store::store_path(&args.root, args.store.as_deref());
    let store = Store::open(&path)?;
    let thresholds = Thresholds { echo: args.echo_threshold, uplift: args.uplift_threshold };
    let opts = Options { root: args.root.clone(), output: output.clone(), sandwich, thresholds, threads: args.threads };
    let report = dataset::ingest(&store, &args.files, &opts)?;
    drop(store);
    eprintln!("{report}");
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let Some(workbench) = workbench else {
        eprintln!(
            "decisions on this data append to {}; `lem-tui export FORMAT --store {} --session {}` writes training files",
            output.display(),
            path.display(),
            report.session
        );
        return Ok(ExitCode::SUCCESS);
    };

    let Generation { backend, config, backend_label, model_label } = generation_backend(args, &output)?;
    let s = open_session_with(
        &path,
        &args.root,
        &args.files,
        &output,
        args.min_score,
        thresholds,
        backend,
        config.as_ref(),
    )?;
    eprintln!("{}", s.resume);
    let mut state = crate::app::State::new(
        crate::app::RunInfo {
            backend: backend_label,
            model: model_label,
            output: s.output.display().to_string(),
            gate: args.min_score,
        },
        &s.engine.probes,
        crate::app::State::initial_settings(CurationMode::Review, 1, 0.0, s.backend.memory().limits),
    );
    state.keymap = workbench.keymap.clone();
    crate::app::preload::preload(&mut state, &s.engine.start);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(crate::app::run_engine(state, s.engine, s.backend, workbench))?;
    crate::app::launch::print_summary(summary.as_ref(), &s.output);
    Ok(ExitCode::SUCCESS)
}

/// The backend `r` generates more candidates with: the model or endpoints named, loaded as
/// `distill` loads them (its config, its sampling); with neither, [`NoBackend`].
fn generation_backend(args: &ReviewArgs, output: &Path) -> anyhow::Result<Generation> {
    if args.model.is_none() && args.endpoints.is_empty() {
        return Ok(Generation {
            backend: Arc::new(NoBackend),
            config: None,
            backend_label: "none".into(),
            model_label: "dataset".into(),
        });
    }
    // The same flags `distill` takes, so the model is found, fetched-checked and loaded the one
    // way; its lesson file is the review's, and the session store is review's own.
    let mut argv: Vec<String> = vec!["lem-tui".into(), "distill".into(), "--no-store".into()];
    argv.extend(["--root".into(), args.root.display().to_string()]);
    argv.extend(["--output".into(), output.display().to_string()]);
    if let Some(m) = &args.model {
        argv.extend(["--model".into(), m.clone()]);
    }
    for e in &args.endpoints {
        argv.extend(["--endpoint".into(), e.clone()]);
    }
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(&argv).context("review --model/--endpoint")?;
    let Some(crate::cli::Command::Distill(distill)) = cli.command else {
        anyhow::bail!("review --model/--endpoint: not a distill command line");
    };
    let prepared = crate::setup::prepare(&distill)?;
    let backend = crate::setup::start_backend(&prepared, &mut |m| eprintln!("{m}"))?;
    Ok(Generation {
        backend,
        config: Some(prepared.distill.clone()),
        backend_label: prepared.backend.label().into(),
        model_label: prepared.model_name.clone(),
    })
}

/// What `r` generates with, and how the status bar names it.
struct Generation {
    backend: Arc<dyn Backend>,
    config: Option<DistillConfig>,
    backend_label: String,
    model_label: String,
}

/// An ingested session ready to curate: the engine in review mode over its probes, each resumed
/// from its stored candidates.
pub struct ReviewSession {
    pub engine: Engine,
    pub backend: Arc<dyn Backend>,
    pub resume: ResumeReport,
    /// The lesson file decisions append to.
    pub output: PathBuf,
}

/// Opens the session of `files` (ingested already) in the store at `store_path` for review.
/// `backend` answers "more candidates" (`r`): [`NoBackend`] when no model is configured.
pub fn open_session(
    store_path: &Path,
    root: &Path,
    files: &[PathBuf],
    output: &Path,
    gate: f64,
    thresholds: Thresholds,
    backend: Arc<dyn Backend>,
) -> anyhow::Result<ReviewSession> {
    open_session_with(store_path, root, files, output, gate, thresholds, backend, None)
}

/// [`open_session`] with a backend that generates: `generation` (a `distill` configuration)
/// gives its sampling and minimum length. Still one candidate a probe to start with: the
/// stored ones; `r` asks for more.
#[allow(clippy::too_many_arguments)]
pub fn open_session_with(
    store_path: &Path,
    root: &Path,
    files: &[PathBuf],
    output: &Path,
    gate: f64,
    thresholds: Thresholds,
    backend: Arc<dyn Backend>,
    generation: Option<&DistillConfig>,
) -> anyhow::Result<ReviewSession> {
    let files: Vec<PathBuf> = files.iter().map(|f| crate::store::canonical(f)).collect();
    let store = Store::open(store_path)?;
    let spec = dataset::review_spec(&store, root, &files, output)?;
    let session: i64 = store
        .conn()
        .query_row("SELECT id FROM sessions WHERE key = ?1 ORDER BY id DESC LIMIT 1", [spec.key()], |r| r.get(0))
        .with_context(|| format!("no ingested session for {} in {}", spec.probes, store_path.display()))?;
    let probes = dataset::dataset_probes(&store, session)?;
    drop(store);
    let opened = Opened::open(store_path, &spec.output)?;
    let model = ModelIdentity { name: "dataset".into(), backend: "none".into(), ..ModelIdentity::default() };
    let (journal, starts, resume) = opened.begin(&spec, &probes, &model)?;
    let cfg = DistillConfig {
        runs: 1,
        min_chars: generation.map_or(0, |g| g.min_chars),
        min_score: gate,
        thresholds,
        sampling: generation.map_or_else(Sampling::default, |g| g.sampling),
        kernel: spec.kernel.clone(),
        signature: spec.signature.clone(),
        sequential: generation.is_some_and(|g| g.sequential),
        probes_in_flight: 1,
        output: spec.output.clone(),
    };
    let engine = Engine {
        cfg,
        backend: Arc::clone(&backend),
        scorer: Arc::new(Scorer::new(Mode::Cold)),
        probes,
        mode: CurationMode::Review,
        journal: Some(Box::new(journal)),
        start: starts,
        decided_order: resume.decided_order.clone(),
        memory: None,
    };
    Ok(ReviewSession { engine, backend, resume, output: spec.output })
}
