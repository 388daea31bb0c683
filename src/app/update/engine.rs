//! Engine news into the state: statuses, live candidates, the stream, notes.

use std::time::Duration;

use super::note;
use crate::app::Command;
use crate::app::state::{Level, LiveRun, Row, State, Status};
use crate::app::wrap::Wrapped;
use crate::distill::{Candidate, CurationMode, Decision, EngineEvent, Outcome};

fn live_mut(s: &mut State, run: u32) -> Option<&mut LiveRun> {
    s.live.iter_mut().find(|l| l.run == run)
}

/// Whether the event can change the probe list's order (statuses, candidates, tags): the
/// high-volume token stream never does.
pub(super) fn reorders(ev: &EngineEvent) -> bool {
    !matches!(
        ev,
        EngineEvent::Token { .. }
            | EngineEvent::Prefilled { .. }
            | EngineEvent::Restarted { .. }
            | EngineEvent::Settings(_)
            | EngineEvent::Refused { .. }
            | EngineEvent::LimitsRefused { .. }
            | EngineEvent::Paused { .. }
            | EngineEvent::Unpaused
            | EngineEvent::BulkProgress { .. }
    )
}

/// Applies news from the engine.
pub(super) fn apply(s: &mut State, ev: EngineEvent, at: Duration) {
    match ev {
        EngineEvent::Settings(settings) => {
            if settings.limits != s.settings.limits {
                s.limits_refused = None;
            }
            s.settings = settings;
        }
        EngineEvent::Resumed { done, undecided } => {
            // Earlier runs' decisions, oldest first: the history lists the newest at the top.
            for (i, d) in &done {
                super::curation::decided(s, *i, d);
            }
            for (i, d) in done {
                if let Some(p) = s.probes.get_mut(i) {
                    p.status = status_of(&d, &p.candidates);
                    p.decision = Some(d);
                }
            }
            // Shown as they were before the stop, run numbers (and their gaps) included.
            for (i, candidates) in undecided {
                if let Some(p) = s.probes.get_mut(i) {
                    p.candidates = candidates;
                    p.status = Status::Queued;
                    p.decision = None;
                }
            }
        }
        EngineEvent::ProbeStarted { probe, runs } => {
            s.first_start.get_or_insert(at);
            s.current = Some(probe);
            s.decision_sent = false;
            if s.reviewing == Some(probe) {
                s.reviewing = None;
                // The status line no longer says the probe awaits review.
                let id = s.probes.get(probe).map_or("?", |p| p.id.as_str());
                let text = format!("{id}: generating {} more candidate(s)", runs.len());
                note(s, Level::Info, text);
            }
            let first = runs.first().copied();
            s.live = runs.into_iter().map(|run| LiveRun { run, text: String::new(), tokens: 0, done: false }).collect();
            if let Some(p) = s.probes.get_mut(probe) {
                p.status = Status::Generating;
            }
            s.throughput.request(at);
            if s.auto_select {
                s.selected = probe;
                s.cand = first.and_then(|f| s.rows(probe).iter().position(|r| r.run() == f)).unwrap_or(0);
            }
        }
        EngineEvent::Prefilled { prompt_tokens, elapsed, .. } => {
            let secs = elapsed.as_secs_f64();
            s.throughput.prefill_tok_s = (secs > 0.0).then(|| f64::from(prompt_tokens) / secs);
        }
        EngineEvent::Token { probe, run, text } => {
            s.throughput.token(at);
            if let Some(l) = live_mut(s, run) {
                l.text.push_str(&text);
                l.tokens += 1;
            }
            if s.stream.target == Some((probe, run)) {
                s.stream.text.push_str(&text);
            } else if s.auto_select && s.selected == probe && !matches!(s.selected_row(), Some(Row::Live(_))) {
                // Sequential runs: follow the candidate that is streaming now.
                if let Some(i) = s.rows(probe).iter().position(|r| r.run() == run) {
                    s.cand = i;
                }
            }
        }
        EngineEvent::Restarted { probe, run, reason } => {
            if let Some(l) = live_mut(s, run) {
                l.text.clear();
                l.tokens = 0;
            }
            if s.stream.target == Some((probe, run)) {
                s.stream.text = Wrapped::new(s.stream.text.width());
                s.stream.follow = true;
                s.stream.top = 0;
            }
            note(s, Level::Warn, format!("candidate {} restarted: {reason}", run + 1));
        }
        EngineEvent::CandidateDone { probe, candidate } => {
            if let Some(l) = live_mut(s, candidate.run) {
                l.done = true;
            }
            s.throughput.last_decode_tok_s = Some(candidate.metrics.decode_tok_s).filter(|r| *r > 0.0);
            refresh_stream_text(s, probe, &candidate);
            if let Some(p) = s.probes.get_mut(probe) {
                p.candidates.retain(|c| c.run != candidate.run);
                p.candidates.push(candidate);
                p.candidates.sort_by_key(|c| c.run);
            }
        }
        EngineEvent::AwaitingReview { probe, candidates, best, gate } => {
            s.info.gate = gate;
            if s.current == Some(probe) {
                s.current = None;
                s.live.clear();
            } else if let Some(other) = s.current.filter(|_| s.live.iter().all(|l| l.done)) {
                // An undo put this probe before the one just generated, which now waits its turn.
                if let Some(p) = s.probes.get_mut(other) {
                    p.status = Status::Queued;
                }
                s.current = None;
                s.live.clear();
            }
            s.reviewing = Some(probe);
            s.decision_sent = false;
            for c in &candidates {
                refresh_stream_text(s, probe, c);
            }
            if let Some(p) = s.probes.get_mut(probe) {
                p.candidates = candidates;
                p.status = Status::Review;
                p.decision = None;
            }
            s.selected = probe;
            s.auto_select = true;
            keep_filter_showing(s, probe);
            s.cand = best.and_then(|b| s.rows(probe).iter().position(|r| r.run() == b)).unwrap_or(0);
            let id = s.probes.get(probe).map_or("?", |p| p.id.as_str());
            note(s, Level::Info, format!("{id} awaits review: the best is selected"));
        }
        EngineEvent::ProbeDecided { probe, decision, .. } => {
            if s.reviewing == Some(probe) {
                s.reviewing = None;
            }
            if s.current == Some(probe) {
                s.current = None;
            }
            s.decision_sent = false;
            super::curation::decided(s, probe, &decision);
            if let Some(p) = s.probes.get_mut(probe) {
                p.status = status_of(&decision, &p.candidates);
                let id = p.id.clone();
                let text = match &decision {
                    Decision::Kept { run, .. } => format!("{id}: kept candidate {} (lesson line written)", run + 1),
                    Decision::Skipped { best, .. } => format!("{id}: skipped (best g={best:.1})"),
                    Decision::Rejected => format!("{id}: all candidates rejected"),
                };
                p.decision = Some(decision);
                note(s, Level::Info, text);
            }
            let c = s.counts();
            if c.done == c.total && s.settings.mode == CurationMode::Review && s.finished.is_none() {
                // The engine waits so the last decision can still be undone.
                let (undo, quit) = (s.keymap.hint(Command::Undo), s.keymap.hint(Command::Quit));
                note(
                    s,
                    Level::Info,
                    format!("all {} probes decided: {undo} undoes the last decision, {quit} quits", c.total),
                );
            }
        }
        EngineEvent::EditAdded { probe, candidate } => super::curation::edit_added(s, probe, candidate),
        EngineEvent::Undone { probe, decision } => {
            super::curation::undone(s, probe);
            if let Some(p) = s.probes.get_mut(probe) {
                p.status = Status::Review;
                p.decision = None;
                let what = match decision {
                    Decision::Kept { run, .. } => format!("kept candidate {}; its lesson line was removed", run + 1),
                    Decision::Skipped { .. } => "skipped".into(),
                    Decision::Rejected => "rejected".into(),
                };
                let text = format!("undone: {} ({what})", p.id);
                note(s, Level::Info, text);
            }
            if s.reviewing.is_some_and(|r| r != probe) {
                if let Some(p) = s.reviewing.and_then(|r| s.probes.get_mut(r)) {
                    p.status = Status::Queued;
                }
                s.reviewing = None;
            }
            s.decision_sent = false;
        }
        EngineEvent::Tagged { tags } => {
            let mut used: Vec<String> = Vec::new();
            for (i, tagging) in tags {
                for t in &tagging.tags {
                    if !used.contains(t) {
                        used.push(t.clone());
                    }
                }
                if let Some(p) = s.probes.get_mut(i) {
                    p.tagging = tagging;
                }
            }
            crate::app::tagform::remember(&mut s.recent_tags, &used);
        }
        EngineEvent::BulkProgress { done, total, decided } => {
            let text = if done < total {
                format!("bulk: {done}/{total} probes handled, {decided} changed")
            } else {
                format!("bulk done: {decided} of {total} probes changed")
            };
            note(s, Level::Info, text);
        }
        EngineEvent::Refused { reason } => {
            s.decision_sent = false;
            note(s, Level::Warn, reason);
        }
        EngineEvent::LimitsRefused { limits, reason } => {
            let text = format!(
                "limits refused (memory {} GB, cache {} GB): {reason}",
                crate::app::form::gb(limits.memory_bytes),
                crate::app::form::gb(limits.cache_bytes)
            );
            // The limits editor shows why (its line is short), until limits are applied.
            s.limits_refused = Some(format!("refused: {reason}"));
            note(s, Level::Error, text);
        }
        EngineEvent::Paused { reason } => note(s, Level::Warn, format!("paused: {reason}")),
        EngineEvent::Unpaused => note(s, Level::Info, "resumed"),
        EngineEvent::Finished(summary) => {
            let text = match &summary.stopped_early {
                Some(why) => format!("run ended ({why}): kept {}, skipped {}", summary.kept, summary.skipped),
                None => format!("run finished: kept {}, skipped {} — q quits", summary.kept, summary.skipped),
            };
            s.finished = Some(summary);
            s.current = None;
            s.reviewing = None;
            for l in &mut s.live {
                l.done = true;
            }
            note(s, Level::Info, text);
        }
    }
}

/// The stream shows what was streamed; when the final text differs (a restart, a backend that
/// trims), the final text wins, keeping the scroll position.
fn refresh_stream_text(s: &mut State, probe: usize, c: &Candidate) {
    if s.stream.target == Some((probe, c.run)) {
        let streamed = s.live.iter().find(|l| l.run == c.run).map(|l| l.text.as_str());
        if streamed != Some(c.text.as_str()) {
            s.stream.text = Wrapped::with_text(s.stream.text.width(), &c.text);
        }
    }
}

fn keep_filter_showing(s: &mut State, probe: usize) {
    if !s.order().contains(&probe) {
        s.filter.clear();
        s.reorder();
    }
}

fn status_of(d: &Decision, candidates: &[Candidate]) -> Status {
    match d {
        Decision::Kept { .. } => Status::Kept,
        Decision::Rejected => Status::Rejected,
        Decision::Skipped { .. } => {
            let scored = candidates.iter().any(|c| c.composite().is_some());
            let failed = candidates.iter().any(|c| matches!(c.outcome, Outcome::Failed(_)));
            if !scored && failed { Status::Failed } else { Status::Skipped }
        }
    }
}
