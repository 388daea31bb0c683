//! Several probes in flight (`probes_in_flight`, auto mode): their requests go out together,
//! and the decisions, lesson lines and controls come out as they do one probe at a time.
//! The scripted backend holds each candidate after its first piece, so a test sees every
//! probe streaming at once before anything finishes, from the events alone.

#[allow(dead_code)] // the harness serves several test files; this one uses part of it
mod engine_harness;

use engine_harness::*;
use lem_tui::backend::GenRequest;
use lem_tui::backend::scripted::{Call, Step};
use lem_tui::distill::{Control, CurationMode, EngineEvent, Outcome};

/// Every candidate holds once, after its first piece.
fn hold_each(req: &GenRequest, call: Call) -> Vec<Step> {
    let mut steps = plain(req, call);
    steps.insert(1, Step::Hold);
    steps
}

fn wide(k: u32) -> Setup {
    Setup { probes: 3, runs: 2, probes_in_flight: k, ..Setup::new(CurationMode::Auto) }
}

/// Waits until every probe in `probes` has streamed a piece: all of them in flight together.
async fn all_streaming(h: &mut Harness, probes: &[usize]) {
    for &p in probes {
        h.seen_or_until("a piece of each probe", token(p)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_probes_in_flight_write_what_one_at_a_time_writes() {
    let mut h = Harness::start(&wide(3), hold_each, tmp());
    all_streaming(&mut h, &[0, 1, 2]).await;
    assert_eq!(h.backend.requests().len(), 3, "one request per probe, all sent");
    assert!(
        h.position(|e| matches!(e, EngineEvent::CandidateDone { .. })).is_none(),
        "nothing finished while held: {:#?}",
        h.seen
    );
    h.backend.release(6);
    let (summary, seen, dir) = h.finish().await;
    assert_eq!(summary.probes_done, 3);
    let order: Vec<usize> = seen
        .iter()
        .filter_map(|e| match e {
            EngineEvent::ProbeDecided { probe, .. } => Some(*probe),
            _ => None,
        })
        .collect();
    assert_eq!(order, [0, 1, 2], "decided in queue order");

    let one = Harness::start(&wide(1), plain, tmp());
    let (_, _, one_dir) = one.finish().await;
    let (wave_lines, one_lines) = (lesson(dir.path()), lesson(one_dir.path()));
    assert_eq!(wave_lines.len(), 3);
    assert_eq!(wave_lines, one_lines, "the same lines, in the same order");
    assert_eq!(decisions(dir.path()), decisions(one_dir.path()));
}

/// Stop now while three probes stream: every candidate ends cancelled and on record, no line
/// is written, and the same command (the same store) generates what is missing and writes each
/// probe's line once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_now_mid_wave_then_resume_writes_each_line_once() {
    let mut h = Harness::start(&wide(3), hold_each, tmp());
    all_streaming(&mut h, &[0, 1, 2]).await;
    h.send(Control::Stop { now: true }).await;
    let (summary, seen, dir) = h.finish().await;
    assert_eq!(summary.probes_done, 0);
    assert!(summary.stopped_early.is_some(), "{summary:?}");
    let cancelled = seen
        .iter()
        .filter(
            |e| matches!(e, EngineEvent::CandidateDone { candidate, .. } if candidate.outcome == Outcome::Cancelled),
        )
        .count();
    assert_eq!(cancelled, 6, "every candidate of the three probes ends, cancelled");
    assert!(lesson(dir.path()).is_empty());

    let again = Harness::start(&wide(3), plain, dir);
    let (summary, _, dir) = again.finish().await;
    assert_eq!(summary.probes_done, 3);
    let lines = lesson(dir.path());
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let unique: std::collections::HashSet<&String> = lines.iter().collect();
    assert_eq!(unique.len(), 3, "no line twice");
    let probes: Vec<String> = decisions(dir.path()).into_iter().map(|(p, _)| p).collect();
    assert_eq!(probes, ["P0", "P1", "P2"], "each probe decided once, in order");
}

/// Cancelling the generation cancels every probe of the wave; each is then decided (by the
/// gate, with nothing to keep) and the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_generation_cancels_the_whole_wave() {
    let setup = Setup { probes: 3, runs: 2, probes_in_flight: 2, ..Setup::new(CurationMode::Auto) };
    let mut h = Harness::start(&setup, hold_each, tmp());
    all_streaming(&mut h, &[0, 1]).await;
    assert!(h.position(started(2)).is_none(), "P2 waits for the next wave");
    h.send(Control::CancelGeneration).await;
    h.until("P1 decided", decided(1)).await;
    h.until("P2 streams", token(2)).await;
    h.backend.release(2);
    let (summary, seen, dir) = h.finish().await;
    assert_eq!(summary.probes_done, 3);
    let cancelled: Vec<usize> = seen
        .iter()
        .filter_map(|e| match e {
            EngineEvent::CandidateDone { probe, candidate } if candidate.outcome == Outcome::Cancelled => Some(*probe),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled.len(), 4, "both candidates of P0 and P1: {cancelled:?}");
    assert!(cancelled.iter().all(|&p| p < 2));
    assert_eq!(lesson(dir.path()).len(), 1, "only P2 had anything to keep");
}
