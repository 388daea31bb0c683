//! Curating any dataset: ingest lesson JSONL (sandwiched or plain), SFT chats, prompt/completion
//! and DPO files into the session store, as a session whose candidates the workbench and the
//! exports treat like generated ones.
//!
//! - Every line is parsed ([`parse`]); a bad one is named (file:line, what is wrong) in the
//!   [`Report`] and skipped, never fatal.
//! - A lesson file's sandwich (kernel and signature around every prompt) is detected
//!   ([`sandwich`]) so each answer is scored, as the engine scores a candidate, against the
//!   bare prompt; the kernel goes into the ingest run's config, so a lesson export rebuilds the
//!   user turn byte for byte.
//! - Identical (prompt, answer) pairs are stored once: against the session's earlier ingests
//!   and within the files, by content hash. Each duplicate is named in the report.
//! - Answers are scored on every core ([`score`]); the store records each score with its
//!   scorer's name and version (the `scores` table).
//!
//! One session per set of files (its key is the files and the lesson output, as a distill
//! session's is its command line); one run per file, mode `ingest`. Nothing here imports the
//! UI or the engine's run loop.

pub mod parse;
pub mod sandwich;
pub mod score;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use parse::{Item, LineError, Role, Shape};
pub use sandwich::Sandwich;
pub use write::{SCORER, dataset_probes, review_spec};

use crate::scorer::{Scorer, Thresholds};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How to ingest.
#[derive(Clone, Debug)]
pub struct Options {
    /// The project root the session belongs to.
    pub root: PathBuf,
    /// The lesson file decisions on this data append to (part of the session's key).
    pub output: PathBuf,
    /// A known sandwich, instead of detecting one per file.
    pub sandwich: Option<Sandwich>,
    pub thresholds: Thresholds,
    /// Scoring threads (0: one per core).
    pub threads: usize,
}

/// A line left out because the same prompt and answer are already stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Duplicate {
    pub line: usize,
    /// `file:line` of the copy that was kept, or "an earlier ingest" with its candidate id.
    pub of: String,
}

/// What ingesting one file did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub lines: usize,
    /// Usable lines, by shape.
    pub shapes: std::collections::BTreeMap<&'static str, usize>,
    /// Candidates added (a DPO line adds two).
    pub candidates: usize,
    /// Prompts new to the session.
    pub new_probes: usize,
    pub duplicates: Vec<Duplicate>,
    pub bad: Vec<LineError>,
    /// Characters of the kernel found around the prompts (lesson files), if any.
    pub kernel_chars: Option<usize>,
    pub signature_chars: Option<usize>,
    /// Seconds spent parsing, scoring and writing the store (the benchmark's breakdown).
    pub seconds: Phases,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Phases {
    pub parse: f64,
    pub score: f64,
    pub store: f64,
}

/// What an ingest did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    pub store: PathBuf,
    pub session: i64,
    pub files: Vec<FileReport>,
    #[serde(skip)]
    pub elapsed: Duration,
}

impl Report {
    #[must_use]
    pub fn candidates(&self) -> usize {
        self.files.iter().map(|f| f.candidates).sum()
    }

    #[must_use]
    pub fn bad(&self) -> usize {
        self.files.iter().map(|f| f.bad.len()).sum()
    }

    #[must_use]
    pub fn duplicates(&self) -> usize {
        self.files.iter().map(|f| f.duplicates.len()).sum()
    }
}

/// How many bad and duplicate lines a summary names before it counts the rest.
const NAMED: usize = 20;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.files {
            let shapes: Vec<String> = r.shapes.iter().map(|(k, v)| format!("{v} {k}")).collect();
            writeln!(
                f,
                "{}: {} lines ({}), {} candidates added ({} new prompts), {} duplicate(s), {} bad line(s) skipped",
                r.path.display(),
                r.lines,
                if shapes.is_empty() { "none usable".into() } else { shapes.join(", ") },
                r.candidates,
                r.new_probes,
                r.duplicates.len(),
                r.bad.len()
            )?;
            if let Some(k) = r.kernel_chars {
                let sig = r.signature_chars.map(|s| format!(" and a {s}-char signature")).unwrap_or_default();
                writeln!(f, "  sandwich: a {k}-char kernel{sig} around every prompt; scored against the bare prompt")?;
            }
            for b in r.bad.iter().take(NAMED) {
                writeln!(f, "  {}:{}: {}", r.path.display(), b.line, b.what)?;
            }
            for d in r.duplicates.iter().take(NAMED) {
                writeln!(f, "  {}:{}: duplicate of {} (same prompt and answer)", r.path.display(), d.line, d.of)?;
            }
            let more = r.bad.len().saturating_sub(NAMED) + r.duplicates.len().saturating_sub(NAMED);
            if more > 0 {
                writeln!(f, "  ... and {more} more (all recorded in the store's `datasets.report`)")?;
            }
        }
        write!(
            f,
            "session {} in {}: {} candidates added in {:.1}s",
            self.session,
            self.store.display(),
            self.candidates(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Ingests `files` into `store`, in order. A file that cannot be read is an error before
/// anything is written; bad lines are reported, not fatal.
pub fn ingest(store: &Store, files: &[PathBuf], opts: &Options) -> Result<Report, DatasetError> {
    let started = Instant::now();
    let mut texts = Vec::with_capacity(files.len());
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| DatasetError::Read { path: path.clone(), source })?;
        texts.push((path.clone(), bytes));
    }
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        opts.threads
    };
    let canonical: Vec<PathBuf> = files.iter().map(|p| crate::store::canonical(p)).collect();
    let mut w = write::Writer::open(store, &canonical, opts)?;
    let scorer = Scorer::new(crate::scorer::Mode::Cold);
    let mut report = Report { store: store.path().to_owned(), session: w.session(), ..Report::default() };
    for ((path, bytes), canon) in texts.iter().zip(&canonical) {
        let t = Instant::now();
        let parsed = parse_file(bytes, threads);
        let parse = t.elapsed().as_secs_f64();
        let mut file = w.file(path, canon, bytes, parsed, &scorer, threads)?;
        file.seconds.parse = parse;
        report.files.push(file);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Parses every line (in parallel), in line order.
fn parse_file(bytes: &[u8], threads: usize) -> Vec<Result<Item, LineError>> {
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // A final newline leaves an empty last piece that is not a line.
    let n = if lines.last().is_some_and(|l| l.is_empty()) { lines.len() - 1 } else { lines.len() };
    let one = |(i, raw): (usize, &&[u8])| -> Option<Result<Item, LineError>> {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(text) => parse::parse_line(i + 1, text).transpose(),
            Err(e) => Some(Err(LineError { line: i + 1, what: format!("not UTF-8 (at byte {})", e.valid_up_to()) })),
        }
    };
    let chunk = n.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = lines[..n]
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                s.spawn(move || {
                    part.iter().enumerate().filter_map(|(i, l)| one((c * chunk + i, l))).collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// The lines a file has (for the report), counting a last line without a newline.
fn line_count(bytes: &[u8]) -> usize {
    let n = bytes.iter().filter(|&&b| b == b'\n').count();
    if bytes.last().is_some_and(|&b| b != b'\n') { n + 1 } else { n }
}

/// Where the lesson lines of decisions on `files` go by default: `<first file>.reviewed.jsonl`.
#[must_use]
pub fn default_output(files: &[PathBuf]) -> PathBuf {
    let first = files.first().map_or_else(|| Path::new("dataset").to_owned(), Clone::clone);
    let stem = first.file_stem().map_or_else(|| "dataset".into(), |s| s.to_string_lossy().into_owned());
    first.with_file_name(format!("{stem}.reviewed.jsonl"))
}
