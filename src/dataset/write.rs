//! Writing ingested items into the session store: the session (found or created by its key),
//! one `ingest` run per file, probes by prompt, candidates with their scores, where each came
//! from, and the file's report. One transaction per file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::parse::{Item, LineError, Role, Shape};
use super::sandwich;
use super::score::{self, Job};
use super::{DatasetError, Duplicate, FileReport, Options};
use crate::backend::{Metrics, Sampling};
use crate::probes::Probe;
use crate::scorer::Scorer;
use crate::store::{SessionSpec, Store, StoreError};

/// The name every grammar v3 score is stored under (with lem-tui's version).
pub const SCORER: &str = "grammar-v3";

type Hash = [u8; 32];

fn hash(s: &str) -> Hash {
    Sha256::digest(s.as_bytes()).into()
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session a review of `files` (canonical paths) works on: the same key every time the
/// same files are reviewed into the same lesson file. Kernel and signature are the ingested
/// files' when they all agree, so a kept answer's lesson line is sandwiched as the file was.
pub fn review_spec(store: &Store, root: &Path, files: &[PathBuf], output: &Path) -> Result<SessionSpec, StoreError> {
    let mut spec = SessionSpec {
        root: crate::store::canonical(root),
        model: "dataset".into(),
        probes: files.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>().join(", "),
        output: crate::store::canonical(output),
        fresh: false,
        kernel: None,
        signature: None,
        mode: "review".into(),
        sampling: Sampling::default(),
        config: json!({ "files": files }),
    };
    let sql = |source| StoreError::Sql { path: store.path().to_owned(), source };
    let session: Option<i64> = store
        .conn()
        .query_row("SELECT id FROM sessions WHERE key = ?1 ORDER BY id DESC LIMIT 1", [spec.key()], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    if let Some(session) = session {
        let mut stmt =
            store.conn().prepare("SELECT config FROM runs WHERE session_id = ?1 AND mode = 'ingest'").map_err(sql)?;
        let configs: Vec<String> =
            stmt.query_map([session], |r| r.get(0)).map_err(sql)?.collect::<Result<_, _>>().map_err(sql)?;
        let sandwiches: Vec<(Option<String>, Option<String>)> = configs
            .iter()
            .map(|c| {
                let v: serde_json::Value = serde_json::from_str(c).unwrap_or_default();
                let s = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_owned);
                (s("kernel"), s("signature"))
            })
            .collect();
        if let Some(first) = sandwiches.first().filter(|f| sandwiches.iter().all(|s| s == *f)) {
            (spec.kernel, spec.signature) = first.clone();
            spec.config["kernel"] = json!(spec.kernel);
            spec.config["signature"] = json!(spec.signature);
        }
    }
    Ok(spec)
}

/// The session's probes in the order they were ingested, as the engine takes them.
pub fn dataset_probes(store: &Store, session: i64) -> Result<Vec<Probe>, StoreError> {
    let sql = |source| StoreError::Sql { path: store.path().to_owned(), source };
    let mut stmt = store
        .conn()
        .prepare("SELECT probe_id, domain, prompt, source FROM probes WHERE session_id = ?1 ORDER BY id")
        .map_err(sql)?;
    stmt.query_map([session], |r| Ok(Probe { id: r.get(0)?, domain: r.get(1)?, prompt: r.get(2)?, source: r.get(3)? }))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)
}

pub(super) struct Writer<'a> {
    store: &'a Store,
    session: i64,
    opts: &'a Options,
    /// Prompt hash → (probe row, next run number).
    probes: HashMap<Hash, (i64, u32)>,
    /// (prompt hash, answer hash) → where that pair is stored, for naming duplicates.
    seen: HashMap<(Hash, Hash), String>,
}

impl<'a> Writer<'a> {
    /// Finds or creates the session for `files` and loads what it already holds.
    pub fn open(store: &'a Store, files: &[PathBuf], opts: &'a Options) -> Result<Self, DatasetError> {
        let spec = review_spec(store, &opts.root, files, &opts.output)?;
        let conn = store.conn();
        let sql = |source| StoreError::Sql { path: store.path().to_owned(), source };
        let key = spec.key();
        let existing: Option<i64> = conn
            .query_row("SELECT id FROM sessions WHERE key = ?1 ORDER BY id DESC LIMIT 1", [&key], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        let session = match existing {
            Some(id) => id,
            None => {
                conn.execute(
                    "INSERT INTO sessions (key, root, model, probes, output) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![key, spec.root.to_string_lossy(), spec.model, spec.probes, spec.output.to_string_lossy()],
                )
                .map_err(sql)?;
                conn.last_insert_rowid()
            }
        };
        let mut probes = HashMap::new();
        let mut rows = HashMap::new();
        let mut stmt = conn.prepare("SELECT id, prompt FROM probes WHERE session_id = ?1").map_err(sql)?;
        for r in stmt.query_map([session], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).map_err(sql)? {
            let (row, prompt) = r.map_err(sql)?;
            let h = hash(&prompt);
            probes.insert(h, (row, 0));
            rows.insert(row, h);
        }
        let mut seen = HashMap::new();
        let mut stmt = conn
            .prepare(
                "SELECT c.probe_row, c.text_sha256, c.id, c.run_no FROM candidates c
                 JOIN probes p ON p.id = c.probe_row WHERE p.session_id = ?1",
            )
            .map_err(sql)?;
        let found = stmt
            .query_map([session], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, u32>(3)?))
            })
            .map_err(sql)?;
        for r in found {
            let (row, text_sha, id, run_no) = r.map_err(sql)?;
            let Some(&h) = rows.get(&row) else { continue };
            if let Some(p) = probes.get_mut(&h) {
                p.1 = p.1.max(run_no + 1);
            }
            let mut t = [0u8; 32];
            for (i, b) in t.iter_mut().enumerate() {
                *b = u8::from_str_radix(text_sha.get(i * 2..i * 2 + 2).unwrap_or("00"), 16).unwrap_or(0);
            }
            seen.insert((h, t), format!("candidate {id} of an earlier ingest"));
        }
        Ok(Self { store, session, opts, probes, seen })
    }

    pub fn session(&self) -> i64 {
        self.session
    }

    /// Dedups, scores and stores one file's items.
    pub fn file(
        &mut self,
        path: &Path,
        canonical: &Path,
        bytes: &[u8],
        parsed: Vec<Result<Item, LineError>>,
        scorer: &Scorer,
        threads: usize,
    ) -> Result<FileReport, DatasetError> {
        let name = path.file_name().map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy()).into_owned();
        let mut report = FileReport { path: path.to_owned(), lines: super::line_count(bytes), ..FileReport::default() };
        let mut items = Vec::with_capacity(parsed.len());
        for p in parsed {
            match p {
                Ok(item) => items.push(item),
                Err(e) => report.bad.push(e),
            }
        }
        let sandwich = self.opts.sandwich.clone().unwrap_or_else(|| {
            sandwich::detect(items.iter().filter(|i| i.shape == Shape::Lesson).map(|i| i.user.as_str()))
        });
        // LEM's older lessons carry the kernel as a system turn: the same one on every line.
        let plain_kernel = {
            let mut systems =
                items.iter().filter(|i| i.shape == Shape::LessonPlain).filter_map(|i| i.system.as_deref());
            systems.next().filter(|first| systems.all(|s| s == *first)).map(str::to_owned)
        };
        report.kernel_chars = sandwich.kernel.as_ref().map(|k| k.chars().count());
        report.signature_chars = sandwich.signature.as_ref().map(|s| s.chars().count());

        // Dedup before scoring: a duplicate costs neither a score nor a row.
        struct Keep<'i> {
            item: &'i Item,
            prompt: &'i str,
            prompt_hash: Hash,
            answers: Vec<(Role, &'i str, Hash)>,
        }
        let mut keep = Vec::with_capacity(items.len());
        for item in &items {
            *report.shapes.entry(item.shape.as_str()).or_default() += 1;
            let prompt = if item.shape == Shape::Lesson { sandwich.strip(&item.user) } else { item.user.as_str() };
            let prompt_hash = hash(prompt);
            let mut answers = Vec::new();
            let mut dup_of = None;
            for (role, text) in &item.answers {
                let h = hash(text);
                match self.seen.get(&(prompt_hash, h)) {
                    Some(of) => dup_of = Some(of.clone()),
                    None => {
                        self.seen.insert((prompt_hash, h), format!("{name}:{}", item.line));
                        answers.push((*role, text.as_str(), h));
                    }
                }
            }
            if let Some(of) = dup_of {
                report.duplicates.push(Duplicate { line: item.line, of });
            }
            if !answers.is_empty() {
                keep.push(Keep { item, prompt, prompt_hash, answers });
            }
        }
        let jobs: Vec<Job<'_>> = keep
            .iter()
            .map(|k| Job {
                prompt: k.prompt,
                answers: k.answers.iter().map(|a| a.1).collect(),
                earlier: k.item.earlier.iter().map(|e| (e.user.as_str(), e.assistant.as_str())).collect(),
            })
            .collect();
        let t = std::time::Instant::now();
        let scores = score::score_all(scorer, self.opts.thresholds, &jobs, threads);
        report.seconds.score = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();

        let conn = self.store.conn();
        let sql = |source| StoreError::Sql { path: self.store.path().to_owned(), source };
        // A larger page cache for the bulk insert: index pages stay in memory instead of being
        // spilled to the WAL and rewritten (the connection's default is 2 MB).
        conn.pragma_update(None, "cache_size", -65_536).map_err(sql)?;
        let tx = conn.unchecked_transaction().map_err(sql)?;
        let file_sha = hex(&Sha256::digest(bytes).into());
        let kernel = sandwich.kernel.clone().or(plain_kernel.clone());
        let config = json!({
            "file": canonical,
            "kernel": kernel,
            "signature": sandwich.signature,
            "thresholds": self.opts.thresholds,
        });
        tx.execute(
            "INSERT INTO runs (session_id, pid, version, mode, backend, model_name, model_path, model_size,
                 model_sha256, sampling, config) VALUES (?1, ?2, ?3, 'ingest', 'none', 'dataset', ?4, ?5, ?6, ?7, ?8)",
            params![
                self.session,
                std::process::id(),
                env!("CARGO_PKG_VERSION"),
                canonical.to_string_lossy(),
                i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                file_sha,
                serde_json::to_string(&Sampling::default()).unwrap_or_default(),
                config.to_string(),
            ],
        )
        .map_err(sql)?;
        let run = tx.last_insert_rowid();
        // The counts are known before anything is inserted, so the file's row is written whole.
        report.candidates = keep.iter().map(|k| k.answers.len()).sum();
        let mut new = std::collections::HashSet::new();
        report.new_probes =
            keep.iter().filter(|k| !self.probes.contains_key(&k.prompt_hash) && new.insert(k.prompt_hash)).count();
        tx.execute(
            "INSERT INTO datasets (session_id, run_id, path, sha256, lines, items, duplicates, bad, report)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                self.session,
                run,
                canonical.to_string_lossy(),
                file_sha,
                count(report.lines),
                count(report.candidates),
                count(report.duplicates.len()),
                count(report.bad.len()),
                serde_json::to_string(&report).unwrap_or_default()
            ],
        )
        .map_err(sql)?;
        let dataset = tx.last_insert_rowid();
        let metrics = serde_json::to_string(&Metrics::default()).unwrap_or_default();
        {
            let mut probe_stmt = tx
                .prepare_cached(
                    "INSERT INTO probes (session_id, probe_id, domain, prompt, source) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql)?;
            let mut cand_stmt = tx
                .prepare_cached(
                    "INSERT INTO candidates (probe_row, run_id, run_no, text, text_sha256, outcome, seed, temperature,
                         top_p, top_k, repeat_penalty, max_tokens, composite, uplift, echo, enrichment, sycophantic,
                         grammar, delta, metrics, prompt_tokens, generated_tokens, decode_tok_s, wall_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'scored', 0, 0, 0, 0, 0, 0, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                         0, 0, 0, 0)",
                )
                .map_err(sql)?;
            let mut item_stmt = tx
                .prepare_cached(
                    "INSERT INTO dataset_items (candidate_id, dataset_id, line, format, role, context)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql)?;
            for (k, s) in keep.iter().zip(&scores) {
                let (row, next) = match self.probes.get_mut(&k.prompt_hash) {
                    Some(p) => p,
                    None => {
                        let id = k.item.id.clone().unwrap_or_else(|| format!("{name}:{}", k.item.line));
                        probe_stmt.execute(params![self.session, id, k.item.domain, k.prompt, name]).map_err(sql)?;
                        self.probes.entry(k.prompt_hash).or_insert((tx.last_insert_rowid(), 0))
                    }
                };
                let context = context(k.item, plain_kernel.as_deref(), &s.earlier);
                for ((role, text, h), (g, d)) in k.answers.iter().zip(&s.answers) {
                    cand_stmt
                        .execute(params![
                            *row,
                            run,
                            *next,
                            text,
                            hex(h),
                            g.composite,
                            d.uplift,
                            d.echo,
                            d.enrichment,
                            d.sycophantic,
                            serde_json::to_string(g).ok(),
                            serde_json::to_string(d).ok(),
                            metrics,
                        ])
                        .map_err(sql)?;
                    *next += 1;
                    let cand = tx.last_insert_rowid();
                    item_stmt
                        .execute(params![
                            cand,
                            dataset,
                            count(k.item.line),
                            k.item.shape.as_str(),
                            role.as_str(),
                            context
                        ])
                        .map_err(sql)?;
                }
            }
        }
        tx.commit().map_err(sql)?;
        report.seconds.store = t.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// What a candidate's line held besides its prompt and answer: a system turn that is not the
/// file's kernel, and earlier exchanges with their scores. `None` when there is nothing.
fn context(item: &Item, kernel: Option<&str>, earlier: &[score::Score]) -> Option<String> {
    let system = item.system.as_deref().filter(|s| Some(*s) != kernel);
    if system.is_none() && item.earlier.is_empty() {
        return None;
    }
    let earlier: Vec<_> = item
        .earlier
        .iter()
        .zip(earlier)
        .map(|(e, (g, d))| {
            json!({
                "user": e.user, "assistant": e.assistant,
                "scorer": SCORER, "composite": g.composite, "uplift": d.uplift, "echo": d.echo,
                "enrichment": d.enrichment,
            })
        })
        .collect();
    Some(json!({ "system": system, "earlier": earlier }).to_string())
}
