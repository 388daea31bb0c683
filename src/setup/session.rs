//! The session store for a prepared run: opened (and locked) early so a damaged store or a
//! second process is refused before any model loads, then turned into the engine's journal and
//! resume plan once the model is known.

use std::sync::Arc;

use anyhow::Context;

use super::Prepared;
use crate::backend::Backend;
use crate::distill::{CurationMode, Journal, ProbeStart};
use crate::store::{self, Opened, SessionSpec};

/// Opens the store and takes the session lock, unless `--no-store`. Idempotent.
pub fn open_store(p: &Prepared) -> anyhow::Result<()> {
    let Some(path) = &p.store else { return Ok(()) };
    let mut slot = p.session.lock().map_err(|_| anyhow::anyhow!("session store slot poisoned"))?;
    if slot.is_none() {
        *slot = Some(Opened::open(path, &p.distill.output)?);
    }
    Ok(())
}

/// Everything the run is, for the run's row: enough to reproduce it or to know why two runs
/// differ.
fn snapshot(p: &Prepared, mode: CurationMode) -> serde_json::Value {
    let r = &p.resolved;
    serde_json::json!({
        "root": store::canonical(&r.root),
        "model": r.model_spec,
        "model_config_path": r.model_path,
        "model_config": r.model,
        "ai_config_path": r.ai_path,
        "ai_config": r.ai,
        "probes": p.probes_spec,
        "phase": p.phase,
        "probe_count": p.probes.len(),
        "output": p.distill.output,
        "runs": p.distill.runs,
        "min_score": p.distill.min_score,
        "min_chars": p.distill.min_chars,
        "echo_threshold": p.distill.thresholds.echo,
        "uplift_threshold": p.distill.thresholds.uplift,
        "sampling": p.distill.sampling,
        "kernel": p.distill.kernel,
        "kernel_path": r.kernel.as_ref().map(|k| &k.path),
        "signature": p.distill.signature,
        "signature_path": r.signature.as_ref().map(|k| &k.path),
        "sequential": p.distill.sequential,
        "probes_in_flight": p.distill.probes_in_flight,
        "backend": p.backend.label(),
        "threads": p.threads,
        "cache_limit_gb": r.cache_limit_gb,
        "memory_limit_gb": r.memory_limit_gb,
        "mode": mode,
    })
}

type Plugged = (Option<Box<dyn Journal>>, Vec<ProbeStart>);

/// The journal and where each probe starts; `(None, [])` with `--no-store`.
pub(super) fn journal(
    p: &Prepared,
    backend: &Arc<dyn Backend>,
    mode: CurationMode,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<Plugged> {
    if p.store.is_none() {
        return Ok((None, Vec::new()));
    }
    open_store(p)?;
    let opened = p
        .session
        .lock()
        .map_err(|_| anyhow::anyhow!("session store slot poisoned"))?
        .take()
        .context("the session store was already handed to an engine")?;
    let info = backend.info();
    let mut last = None;
    let mut progress = |done: u64, total: u64| {
        // Every 10 %: a line each on stderr (the workbench has not taken the screen yet). A
        // small file is hashed before anyone could read the line.
        if total < 256 * crate::backend::memory::MIB {
            return;
        }
        let step = (done.saturating_mul(10)).checked_div(total).unwrap_or(10);
        if last != Some(step) {
            last = Some(step);
            say(&format!("hashing the model weights (sha256, cached afterwards): {}%", step * 10));
        }
    };
    let model = store::model_identity_with_progress(
        &opened.store,
        &p.model_name,
        p.backend.label(),
        &info.path,
        &mut progress,
    )?;
    let mode_name = match mode {
        CurationMode::Auto => "auto",
        CurationMode::Review => "review",
    };
    let spec = SessionSpec {
        root: store::canonical(&p.resolved.root),
        model: p.resolved.model_spec.clone(),
        probes: p.probes_spec.clone(),
        output: store::canonical(&p.distill.output),
        fresh: p.fresh,
        kernel: p.distill.kernel.clone(),
        signature: p.distill.signature.clone(),
        mode: mode_name.into(),
        sampling: p.distill.sampling,
        config: snapshot(p, mode),
    };
    let (journal, starts, report) = opened.begin(&spec, &p.probes, &model)?;
    tracing::info!("{report}");
    let _ = p.resume.set(report);
    Ok((Some(Box::new(journal)), starts))
}
