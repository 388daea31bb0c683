//! Decisions as training data, each export written atomically with a manifest whose `sha256`
//! (over the ordered records) is a training run's provenance in one hash.
//!
//! - `lesson`: LEM's lesson JSONL, byte-compatible with `lem distill` (user turn as the lesson
//!   file got it, i.e. sandwiched when the model config has a kernel; `--plain` for the bare
//!   probe).
//! - `sft`: `{"messages": [user, assistant]}` (bare probe unless `--sandwich`).
//! - `dpo`: `{"prompt", "chosen", "rejected"}`: chosen is the kept candidate; rejected is, when
//!   the kept candidate is an operator's edit, the original it was edited from (the correction
//!   is the preference; `--no-edit-pairs` turns this off); otherwise a candidate the operator
//!   rejected for the same prompt, else the lowest-scored other candidate of the probe. Probes
//!   with nothing to pair are counted as unpaired.
//! - `kto`: `{"prompt", "completion", "label"}`: kept candidates are `true`; candidates of
//!   probes the operator rejected or the gate skipped are `false`. An operator's plain skip
//!   says nothing about quality and is left out.
//!
//! Where any exported probe is tagged, SFT, DPO and KTO lines carry a `meta` object
//! (`{"tags": [...], "note": "..."}`) and the manifest counts records per tag.
//!
//! By default every decision in the store counts (the decision that stands after undos);
//! `Filter` narrows by session, model, probe set and score. Identical records appear once.

mod records;
mod write;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde::Serialize;

use super::rows::sha256_hex;
use super::{Store, StoreError};
use crate::lesson::{TrainingExample, training_line};
use records::ProbeData;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Lesson,
    Sft,
    Dpo,
    Kto,
}

/// The user turn: the bare probe, or kernel + probe + signature as the lesson file has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptStyle {
    Plain,
    Sandwich,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Filter {
    /// Session ids; empty means all.
    pub sessions: Vec<i64>,
    pub model: Option<String>,
    pub probes: Option<String>,
    /// Minimum composite of a kept (chosen) candidate.
    pub min_score: Option<f64>,
    /// Only probes tagged with this (case-insensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Split {
    /// Fraction of records for `valid.jsonl`, in (0, 1).
    pub valid: f64,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub format: Format,
    /// `None`: sandwich for `lesson`, plain for the others.
    pub prompt: Option<PromptStyle>,
    pub filter: Filter,
    pub split: Option<Split>,
    /// A file, or with a split a directory that gets `train.jsonl`, `valid.jsonl` and
    /// `manifest.json` (mlx-lm's layout).
    pub out: PathBuf,
    /// DPO: a kept edit is paired with the original it was edited from (the default); off, it
    /// is paired like any kept candidate.
    pub edit_pairs: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub records: usize,
    pub train: usize,
    pub valid: usize,
    pub sessions: usize,
    pub probes: usize,
    /// Records dropped because an identical one was already exported.
    pub duplicates: usize,
    /// DPO: kept probes with no candidate to pair against.
    pub unpaired: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileEntry {
    pub path: PathBuf,
    pub records: usize,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Manifest {
    pub lem_tui: String,
    pub format: Format,
    pub prompt: PromptStyle,
    pub created_at: String,
    pub store: PathBuf,
    pub filter: Filter,
    pub split: Option<Split>,
    /// DPO only: whether kept edits were paired with their originals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit_pairs: Option<bool>,
    pub counts: Counts,
    /// sha256 over the records (JSONL lines, newline included) in export order, before the split.
    pub sha256: String,
    /// Records per tag (a record counts under each tag of its probe's decision).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, usize>,
    pub files: Vec<FileEntry>,
    #[serde(skip)]
    pub manifest_path: PathBuf,
}

/// Builds the records and writes them with their manifest.
pub fn export(store: &Store, req: &Request) -> Result<Manifest, StoreError> {
    let sessions = records::sessions(store, &req.filter)?;
    if sessions.is_empty() {
        return Err(StoreError::Other(format!(
            "nothing to export: no session in {} matches the filter",
            store.path.display()
        )));
    }
    let mut probes = records::probes(store, &sessions)?;
    if let Some(tag) = &req.filter.tag {
        let tag = tag.to_lowercase();
        probes.retain(|p| p.tagging.tags.iter().any(|t| t.to_lowercase() == tag));
    }
    let prompt =
        req.prompt.unwrap_or(if req.format == Format::Lesson { PromptStyle::Sandwich } else { PromptStyle::Plain });
    let sandwiches = records::run_sandwiches(store)?;
    let mut counts = Counts { sessions: sessions.len(), probes: probes.len(), ..Counts::default() };
    // Tags ride along in a `meta` object where the format allows one (not LEM's lesson lines),
    // on every line once any probe is tagged, so the column has one type throughout.
    let meta = req.format != Format::Lesson && probes.iter().any(|p| !p.tagging.is_empty());
    let builder =
        Builder { prompt, min_score: req.filter.min_score, sandwiches: &sandwiches, meta, edit_pairs: req.edit_pairs };
    let mut tags = std::collections::BTreeMap::new();
    let lines = builder.build(req.format, &probes, &mut counts, &mut tags);
    if lines.is_empty() {
        return Err(StoreError::Other(format!(
            "nothing to export: {} session(s), {} probe(s), but no {} records match (kept decisions are what \
             lesson/sft/dpo draw on)",
            counts.sessions,
            counts.probes,
            serde_json::to_value(req.format).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
        )));
    }
    counts.records = lines.len();
    let sha256 = sha256_hex(lines.concat().as_bytes());
    let created_at: String =
        store.conn.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ','now')", [], |r| r.get(0)).map_err(store.sql())?;
    let mut manifest = Manifest {
        lem_tui: env!("CARGO_PKG_VERSION").into(),
        format: req.format,
        prompt,
        created_at,
        store: store.path.clone(),
        filter: req.filter.clone(),
        split: req.split,
        edit_pairs: (req.format == Format::Dpo).then_some(req.edit_pairs),
        counts,
        sha256,
        tags,
        files: Vec::new(),
        manifest_path: PathBuf::new(),
    };
    write::write_all(req, &lines, &mut manifest)?;
    let filter = serde_json::to_string(&req.filter).unwrap_or_default();
    let text = serde_json::to_string(&manifest).unwrap_or_default();
    store
        .conn
        .execute(
            "INSERT INTO exports (format, filter, output, manifest, sha256, records) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                serde_json::to_value(req.format).ok().and_then(|v| v.as_str().map(str::to_owned)),
                filter,
                req.out.to_string_lossy(),
                text,
                manifest.sha256,
                i64::try_from(manifest.counts.records).unwrap_or(i64::MAX)
            ],
        )
        .map_err(store.sql())?;
    Ok(manifest)
}

struct Builder<'a> {
    prompt: PromptStyle,
    min_score: Option<f64>,
    sandwiches: &'a records::Sandwiches,
    meta: bool,
    edit_pairs: bool,
}

/// A record's tags and note (`note` is "" when there is none, so the column keeps one type).
#[derive(Serialize)]
struct Meta<'a> {
    tags: &'a [String],
    note: &'a str,
}

/// TRL's DPO columns, in the order people read them.
#[derive(Serialize)]
struct Dpo<'a> {
    prompt: &'a str,
    chosen: &'a str,
    rejected: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Meta<'a>>,
}

/// TRL's KTO (unpaired preference) columns.
#[derive(Serialize)]
struct Kto<'a> {
    prompt: &'a str,
    completion: &'a str,
    label: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Meta<'a>>,
}

/// SFT's chat record with its meta.
#[derive(Serialize)]
struct Sft<'a> {
    #[serde(flatten)]
    example: &'a TrainingExample,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Meta<'a>>,
}

fn jsonl(v: &impl Serialize) -> String {
    let mut s = serde_json::to_string(v).unwrap_or_default();
    s.push('\n');
    s
}

impl Builder<'_> {
    /// The user turn for a candidate of `p` generated by `run`.
    fn user(&self, p: &ProbeData, run: i64, kept: bool) -> String {
        match self.prompt {
            PromptStyle::Plain => p.prompt.clone(),
            PromptStyle::Sandwich => match (&p.kept_user, kept) {
                (Some(u), true) => u.clone(),
                _ => {
                    let (k, s) = self.sandwiches.get(&run).cloned().unwrap_or_default();
                    crate::config::sandwich(k.as_deref(), s.as_deref(), &p.prompt)
                }
            },
        }
    }

    fn passes(&self, composite: Option<f64>) -> bool {
        self.min_score.is_none_or(|m| composite.is_some_and(|c| c >= m))
    }

    fn meta<'p>(&self, p: &'p ProbeData) -> Option<Meta<'p>> {
        self.meta.then(|| Meta { tags: &p.tagging.tags, note: p.tagging.note.as_deref().unwrap_or("") })
    }

    fn build(
        &self,
        format: Format,
        probes: &[ProbeData],
        counts: &mut Counts,
        tags: &mut std::collections::BTreeMap<String, usize>,
    ) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut push = |key: String, line: String, p: &ProbeData, counts: &mut Counts| {
            if seen.insert(sha256_hex(key.as_bytes())) {
                out.push(line);
                for t in &p.tagging.tags {
                    *tags.entry(t.clone()).or_default() += 1;
                }
            } else {
                counts.duplicates += 1;
            }
        };
        // Candidates the operator rejected, by prompt: DPO's preferred negatives.
        let mut rejected: HashMap<&str, Vec<&records::Cand>> = HashMap::new();
        for p in probes.iter().filter(|p| p.kind() == Some("rejected")) {
            rejected.entry(p.prompt.as_str()).or_default().extend(p.candidates.iter());
        }
        let lowest = |cs: &mut dyn Iterator<Item = &records::Cand>, not: &str| {
            cs.filter(|c| c.text != not && !c.text.trim().is_empty())
                .min_by(|a, b| a.composite.unwrap_or(0.0).total_cmp(&b.composite.unwrap_or(0.0)))
                .map(|c| c.text.clone())
        };
        for p in probes {
            let chosen = p.chosen().filter(|c| self.passes(c.composite));
            match format {
                Format::Lesson | Format::Sft => {
                    let Some(c) = chosen else { continue };
                    let user = self.user(p, c.run_id, true);
                    let ex = TrainingExample::user_assistant(user.clone(), c.text.clone());
                    let line = if format == Format::Lesson {
                        training_line(&ex)
                    } else {
                        jsonl(&Sft { example: &ex, meta: self.meta(p) })
                    };
                    push(format!("{}\0{}", user, c.text), line, p, counts);
                }
                Format::Dpo => {
                    let Some(c) = chosen else { continue };
                    let negative = p
                        .original_of(c)
                        .filter(|_| self.edit_pairs)
                        .map(|o| o.text.clone())
                        .or_else(|| {
                            rejected.get(p.prompt.as_str()).and_then(|cs| lowest(&mut cs.iter().copied(), &c.text))
                        })
                        .or_else(|| lowest(&mut p.candidates.iter(), &c.text));
                    let Some(negative) = negative else {
                        counts.unpaired += 1;
                        continue;
                    };
                    let prompt = self.user(p, c.run_id, true);
                    let v = Dpo { prompt: &prompt, chosen: &c.text, rejected: &negative, meta: self.meta(p) };
                    push(format!("{prompt}\0{}\0{negative}", c.text), jsonl(&v), p, counts);
                }
                Format::Kto => {
                    if let Some(c) = chosen {
                        let prompt = self.user(p, c.run_id, true);
                        let v = Kto { prompt: &prompt, completion: &c.text, label: true, meta: self.meta(p) };
                        push(format!("{prompt}\0{}", c.text), jsonl(&v), p, counts);
                    }
                }
            }
        }
        if format == Format::Kto {
            // Negatives after every positive, so a response both kept and rejected stays positive.
            for p in probes {
                let negative = match &p.decision {
                    Some(d) if d.kind == "rejected" => true,
                    Some(d) if d.kind == "skipped" => d.decider == crate::distill::Decider::Gate.as_str(),
                    _ => false,
                };
                if !negative {
                    continue;
                }
                for c in p.candidates.iter().filter(|c| !c.text.trim().is_empty()) {
                    let prompt = self.user(p, c.run_id, false);
                    let v = Kto { prompt: &prompt, completion: &c.text, label: false, meta: self.meta(p) };
                    push(format!("{prompt}\0{}", c.text), jsonl(&v), p, counts);
                }
            }
        }
        out
    }
}
