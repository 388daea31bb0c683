//! The headless run: the engine's events printed as LEM's stderr lines, plus a progress bar
//! with ETA when stderr is a terminal (drawn with indicatif, which keeps it below the lines).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::distill::{Candidate, Control, Decision, EngineEvent, Outcome, Summary};
use crate::setup::Prepared;

mod memory_log;
use memory_log::MemoryLog;

/// Prints a line without tearing the progress bar.
struct Out {
    bar: Option<ProgressBar>,
}

impl Out {
    fn line(&self, s: &str) {
        match &self.bar {
            Some(bar) => bar.println(s),
            None => eprintln!("{s}"),
        }
    }
}

/// `→ 1234 chars, g=52.1 up=+8.0 echo=0.41 enr=+4.7, 3.2s (136 tok/s)` and its EMPTY / ERROR forms.
pub fn run_line(c: &Candidate) -> String {
    let secs = c.metrics.wall.as_secs_f64();
    match &c.outcome {
        Outcome::Scored { grammar, delta } => format!(
            " → {} chars, g={:.1} up={:+.1} echo={:.2} enr={:+.1}, {:.1}s ({:.0} tok/s)",
            c.text.len(),
            grammar.composite,
            delta.uplift,
            delta.echo,
            delta.enrichment,
            secs,
            c.metrics.decode_tok_s
        ),
        Outcome::TooShort => format!(" → {} chars, EMPTY, {secs:.1}s", c.text.len()),
        Outcome::Failed(e) => format!(" → ERROR: {e}"),
        Outcome::Cancelled => " → CANCELLED".to_owned(),
    }
}

/// `engine` comes from [`crate::setup::engine`], built before the runtime (it reads the store
/// and may hash the model).
pub async fn run(
    prepared: Prepared,
    backend: Arc<dyn Backend>,
    mut engine: crate::distill::Engine,
) -> anyhow::Result<Summary> {
    let total = prepared.probes.len();
    let runs = prepared.distill.runs;
    let min_score = prepared.distill.min_score;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} probes · {msg} · ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    });
    let out = Out { bar: bar.clone() };
    let probes = prepared.probes.clone();
    let remote = Arc::clone(&backend);
    let mut memlog = MemoryLog::open(prepared.memory_log.as_deref(), Arc::clone(&backend)).await?;
    let mut decided = 0usize;
    if let Some(report) = prepared.resume_report() {
        out.line(&report.to_string());
    }
    let sampler_cancel = CancellationToken::new();
    let (memory, sampler) =
        crate::backend::memory::spawn_sampler(backend, crate::app::MEMORY_SAMPLE, sampler_cancel.clone());
    engine.memory = Some(memory);
    let (ev_tx, mut ev_rx) = mpsc::channel(1024);
    let (ctl_tx, ctl_rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(engine.run(ev_tx, ctl_rx, cancel.clone()));

    // Ctrl-C once: finish the probe in progress (its line is written whole), then stop.
    // Twice: cancel the generation in flight.
    let ctl = ctl_tx.clone();
    let signals = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = ctl.send(Control::Stop { now: false }).await;
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = ctl.send(Control::Stop { now: true }).await;
            }
        }
    });
    #[cfg(feature = "failpoints")]
    let mut undo_hook = crate::failpoint::UndoHook::from_env(ctl_tx.clone());

    // Per probe in progress (several with --probes-in-flight): the run numbers the engine gave
    // it, in order, the candidates finished and not yet printed, and how many were printed.
    let mut progress: HashMap<usize, (Vec<u32>, Vec<Candidate>, usize)> = HashMap::new();
    let mut last = None;
    let mut tokens = 0u64;
    let line = |probe: usize, c: &Candidate| {
        format!(
            "  [{}/{}] {} run {}/{}{}",
            probe + 1,
            total,
            probes[probe].id,
            c.run + 1,
            runs.max(c.run + 1),
            run_line(c)
        )
    };
    while let Some(ev) = ev_rx.recv().await {
        #[cfg(feature = "failpoints")]
        undo_hook.see(&ev).await;
        match ev {
            EngineEvent::ProbeStarted { probe, runs } => {
                progress.insert(probe, (runs, Vec::new(), 0));
                if let Some(bar) = &bar {
                    bar.set_message(probes[probe].id.clone());
                }
            }
            EngineEvent::Token { .. } => {
                tokens += 1;
            }
            EngineEvent::CandidateDone { probe, candidate } => {
                let (order, finished, printed) = progress.entry(probe).or_default();
                finished.push(candidate);
                // Batched candidates finish out of order; LEM's lines are in run order.
                while let Some(run) = order.get(*printed) {
                    let Some(at) = finished.iter().position(|c| c.run == *run) else { break };
                    out.line(&line(probe, &finished.swap_remove(at)));
                    *printed += 1;
                }
            }
            EngineEvent::ProbeDecided { probe, decision, best } => {
                progress.remove(&probe);
                let id = &probes[probe].id;
                decided += 1;
                memlog.record(decided, id);
                match decision {
                    Decision::Kept { .. } => {
                        if let Some(Outcome::Scored { grammar, delta }) = best.map(|b| b.outcome) {
                            out.line(&format!(
                                "  ✓ KEPT {id} (g={:.1}, verbs={}, nouns={}, enr={:+.1})",
                                grammar.composite, grammar.verb_diversity, grammar.noun_diversity, delta.enrichment
                            ));
                        }
                    }
                    Decision::Skipped { best, .. } => {
                        out.line(&format!("  ✗ SKIP {id} (best g={best:.1} < {min_score:.1})"));
                    }
                    Decision::Rejected => out.line(&format!("  ✗ REJECTED {id}")),
                }
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
            }
            EngineEvent::Restarted { probe, run, reason } => {
                let of = runs.max(run + 1);
                out.line(&format!("  ↻ {} run {}/{of}: regenerating ({reason})", probes[probe].id, run + 1));
            }
            EngineEvent::Paused { reason } => out.line(&format!("paused: {reason}")),
            EngineEvent::Refused { reason } => out.line(&format!("note: {reason}")),
            EngineEvent::Resumed { done, undecided } => {
                out.line(&format!("resuming: {} probe(s) already decided", done.len()));
                // The stored candidates of probes left undecided, as they were printed before.
                for (probe, candidates) in &undecided {
                    for c in candidates {
                        out.line(&line(*probe, c));
                    }
                }
            }
            EngineEvent::LimitsRefused { reason, .. } => out.line(&format!("note: limits refused: {reason}")),
            EngineEvent::Undone { .. }
            | EngineEvent::EditAdded { .. }
            | EngineEvent::AwaitingReview { .. }
            | EngineEvent::Settings(_)
            | EngineEvent::Unpaused
            | EngineEvent::Prefilled { .. }
            | EngineEvent::Tagged { .. }
            | EngineEvent::BulkProgress { .. } => {}
            EngineEvent::Finished(s) => {
                last = Some(s);
                break;
            }
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    signals.abort();
    sampler_cancel.cancel();
    let _ = sampler.await;
    memlog.close().await;
    let result = task.await?;
    tracing::info!(tokens, "token events");
    // A run the engine ended with an error still reports what it did and each endpoint's state
    // (the error itself is the caller's to print).
    let summary = match (result, last) {
        (Ok(s), _) => s,
        (Err(e), Some(s)) => {
            print_summary(&prepared, &s);
            print_endpoints(&remote.endpoints());
            return Err(e.into());
        }
        (Err(e), None) => return Err(e.into()),
    };
    print_summary(&prepared, &summary);
    print_endpoints(&remote.endpoints());
    Ok(summary)
}

fn print_summary(p: &Prepared, s: &Summary) {
    let runs = p.distill.runs as usize;
    eprintln!("\n=== Distillation Complete ===");
    eprintln!("Model:    {} ({})", p.model_name, p.architecture());
    eprintln!("Probes:   {}", s.probes);
    eprintln!("Runs:     {} per probe ({} total generations)", runs, s.probes * runs);
    eprintln!("Scorer:   go-i18n/reversal grammar v3, gate >= {:.1}", p.distill.min_score);
    eprintln!("Kept:     {}", s.kept);
    eprintln!("Skipped:  {}", s.skipped);
    if s.kept + s.skipped > 0 {
        #[allow(clippy::cast_precision_loss)]
        let rate = s.kept as f64 / (s.kept + s.skipped) as f64 * 100.0;
        eprintln!("Pass rate: {rate:.0}%");
    }
    eprintln!("Output:   {}", p.distill.output.display());
    let secs = s.duration.as_secs_f64();
    eprintln!("Duration: {secs:.0}s ({:.1}m)", secs / 60.0);
    if s.decode_time > Duration::ZERO {
        #[allow(clippy::cast_precision_loss)]
        let rate = s.generated_tokens as f64 / s.decode_time.as_secs_f64();
        eprintln!("Tokens:   {} generated, {rate:.0} tok/s per candidate", s.generated_tokens);
    }
    if s.duration > Duration::ZERO && s.generated_tokens > 0 {
        #[allow(clippy::cast_precision_loss)]
        let overall = s.generated_tokens as f64 / s.duration.as_secs_f64();
        eprintln!("Overall:  {overall:.1} tok/s over {:.2}s", s.duration.as_secs_f64());
    }
    if let Some(why) = &s.stopped_early {
        eprintln!("Stopped:  {why}");
    }
}

/// Remote endpoints (the openai backend), one line each; a down one says why.
fn print_endpoints(endpoints: &[crate::backend::EndpointStatus]) {
    for e in endpoints {
        let why = match (&e.last_error, e.up) {
            (Some(err), false) => format!(" — {err}"),
            _ => String::new(),
        };
        eprintln!(
            "Endpoint: {} {}: {} candidates, {} tokens, {} failed attempts{why}",
            e.url, e.state, e.done, e.tokens, e.failed
        );
    }
}
