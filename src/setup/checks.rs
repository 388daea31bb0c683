//! Refusals before anything is generated: settings that cannot mean what the user wants, an
//! empty probe list, and a lesson file that could not be written. Each names where the bad
//! value came from (flag, or file and field) and creates nothing.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use crate::backend::Sampling;
use crate::cli::DistillArgs;
use crate::config::Resolved;
use crate::probes::ProbeSet;

/// Most candidates per probe; the engine's live `SetRuns` control allows the same.
pub const MAX_RUNS: u32 = 64;
/// More tokens than any local context holds.
pub const MAX_TOKENS: u32 = 262_144;
/// Memory and cache limits, GB.
pub const MAX_LIMIT_GB: u64 = 4096;
pub const MAX_THREADS: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{origin}: {field}: {message}")]
    Value { origin: String, field: String, message: String },
    #[error("probe set `{spec}` has no probes ({}): nothing to distill", describe(files))]
    NoProbes { spec: String, files: Vec<PathBuf> },
    #[error("cannot write the lesson file {}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
}

fn describe(files: &[PathBuf]) -> String {
    if files.is_empty() {
        "its `files:` list is empty".into()
    } else {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        format!("{} holds an empty array", names.join(", "))
    }
}

/// Where a merged generate value came from: the model file when it set one (> 0), else ai.yaml.
fn origin(r: &Resolved, model_set: bool) -> String {
    if model_set { r.model_path.display().to_string() } else { r.ai_path.display().to_string() }
}

fn bad(origin: String, field: &str, message: String) -> CheckError {
    CheckError::Value { origin, field: field.to_owned(), message }
}

pub fn settings(args: &DistillArgs, r: &Resolved, s: &Sampling) -> Result<(), CheckError> {
    let flag = |f: &str| format!("--{f}");
    if r.runs > MAX_RUNS {
        let src = if args.runs != 0 { flag("runs") } else { r.ai_path.display().to_string() };
        return Err(bad(
            src,
            "distill.runs",
            format!("{} candidates per probe is more than the {MAX_RUNS} allowed", r.runs),
        ));
    }
    let g = &r.generate;
    let m = &r.model.generate;
    if args.max_tokens == 0 && g.max_tokens < 0 {
        return Err(bad(
            origin(r, m.max_tokens > 0),
            "generate.max_tokens",
            format!("must not be negative (got {})", g.max_tokens),
        ));
    }
    if s.max_tokens > MAX_TOKENS {
        let src = if args.max_tokens > 0 { flag("max-tokens") } else { origin(r, m.max_tokens > 0) };
        return Err(bad(src, "generate.max_tokens", format!("{} is more than {MAX_TOKENS}", s.max_tokens)));
    }
    #[allow(clippy::cast_precision_loss)]
    let top_k = g.top_k as f64;
    let ranges: [(&str, f64, bool, f64, f64); 4] = [
        ("generate.temperature", g.temperature, m.temperature > 0.0, 0.0, 5.0),
        ("generate.top_p", g.top_p, m.top_p > 0.0, 0.0, 1.0),
        ("generate.top_k", top_k, m.top_k > 0, 0.0, 1e6),
        ("generate.repeat_penalty", g.repeat_penalty, m.repeat_penalty > 0.0, 0.0, 10.0),
    ];
    for (field, v, from_model, lo, hi) in ranges {
        if !(lo..=hi).contains(&v) {
            return Err(bad(origin(r, from_model), field, format!("must be between {lo} and {hi} (got {v})")));
        }
    }
    if !(0.0..=100.0).contains(&r.min_score) {
        #[allow(clippy::float_cmp)]
        let src = if args.min_score == 0.0 { r.ai_path.display().to_string() } else { flag("min-score") };
        return Err(bad(
            src,
            "scorer.min_score",
            format!("the composite is 0-100, so {} would keep nothing", r.min_score),
        ));
    }
    for (name, v) in [("cache-limit", r.cache_limit_gb), ("mem-limit", r.memory_limit_gb)] {
        if v > MAX_LIMIT_GB {
            let (src, field) = if name == "cache-limit" {
                (if args.cache_limit > 0 { flag(name) } else { r.ai_path.display().to_string() }, "distill.cache_limit")
            } else {
                (if args.mem_limit > 0 { flag(name) } else { r.ai_path.display().to_string() }, "distill.memory_limit")
            };
            return Err(bad(src, field, format!("{v} GB is more than {MAX_LIMIT_GB} GB")));
        }
    }
    if let Some(t) = args.threads.filter(|t| *t == 0 || *t > MAX_THREADS) {
        return Err(bad(flag("threads"), "threads", format!("must be 1-{MAX_THREADS} (got {t})")));
    }
    if args.probes_in_flight > 1 {
        // The workbench follows one probe's candidates at a time, and --sequential asks for
        // one candidate at a time: neither has room for several probes at once.
        let why = if !args.headless {
            Some("needs --headless (the workbench generates one probe at a time)")
        } else if args.sequential {
            Some("cannot go with --sequential (one candidate at a time)")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(bad(flag("probes-in-flight"), "probes_in_flight", format!("{} {why}", args.probes_in_flight)));
        }
    }
    Ok(())
}

pub fn probes(set: &ProbeSet, spec: &str) -> Result<(), CheckError> {
    if set.probes.is_empty() {
        return Err(CheckError::NoProbes { spec: spec.to_owned(), files: set.files.clone() });
    }
    Ok(())
}

/// The lesson file can be appended to, or created along with its missing directories. Nothing
/// is created: an existing file is opened for append and closed, a new one is tried as a
/// scratch file in the nearest existing directory.
pub fn output(path: &Path) -> Result<(), CheckError> {
    let fail = |reason: String| CheckError::Output { path: path.to_owned(), reason };
    if path.is_dir() {
        return Err(fail("it is a directory".into()));
    }
    if path.exists() {
        return OpenOptions::new().append(true).open(path).map(drop).map_err(|e| fail(e.to_string()));
    }
    let parent = path.parent().map(Path::to_owned).unwrap_or_default();
    let mut dir = parent.clone();
    loop {
        let shown = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir.clone() };
        if shown.is_dir() {
            let scratch = shown.join(format!(".lem-tui-write-check-{}", std::process::id()));
            return match OpenOptions::new().write(true).create_new(true).open(&scratch) {
                Ok(f) => {
                    drop(f);
                    let _ = std::fs::remove_file(&scratch);
                    Ok(())
                }
                Err(e) if dir == parent => Err(fail(format!("directory {} is not writable ({e})", shown.display()))),
                Err(e) => Err(fail(format!(
                    "directory {} does not exist and cannot be created in {} ({e})",
                    parent.display(),
                    shown.display()
                ))),
            };
        }
        if shown.exists() {
            return Err(fail(format!("{} is not a directory", shown.display())));
        }
        match dir.parent() {
            Some(p) => dir = p.to_owned(),
            None => return Err(fail("no existing directory above it".into())),
        }
    }
}
