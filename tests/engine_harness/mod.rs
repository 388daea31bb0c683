//! The engine under test: a scripted backend, the real store and lesson file in a temporary
//! directory, and a harness that sends controls and waits for events (tests/engine_controls.rs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lem_tui::backend::scripted::{Call, ScriptedBackend, Step};
use lem_tui::backend::{Backend, GenRequest, Sampling};
use lem_tui::distill::{Control, CurationMode, Decision, DistillConfig, DistillError, Engine, EngineEvent, Summary};
use lem_tui::probes::Probe;
use lem_tui::scorer::{Mode, Scorer, Thresholds};
use lem_tui::store::{ModelIdentity, Opened, SessionSpec};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The base seed: a candidate's run number is its seed minus this (see `distill::generate`).
pub const SEED: u64 = 1000;
/// Events are awaited at most this long; it only turns a hang into a failure with the events
/// seen so far, never decides an outcome.
pub const HANG: Duration = Duration::from_secs(60);

pub fn run_of(call: Call) -> u64 {
    call.seed - SEED
}

/// A distinct, scorable answer per probe and run (distinct so no line is a duplicate).
pub fn answer(prompt: &str, run: u64) -> String {
    format!(
        "Answer {run} to {prompt}: the moon pulls the oceans toward it, so the water rises, \
         then it falls again while the earth turns and the bulge moves on."
    )
}

pub fn prompt_of(req: &GenRequest) -> String {
    req.messages.last().map(|m| m.content.clone()).unwrap_or_default()
}

/// Three pieces per candidate.
pub fn plain(req: &GenRequest, call: Call) -> Vec<Step> {
    let text = answer(&prompt_of(req), run_of(call));
    let (a, b) = text.split_at(20);
    vec![Step::text(a), Step::Delay(Duration::from_millis(1)), Step::text(b)]
}

/// Holds the first request after its first piece (every candidate holds once).
pub fn hold_first(req: &GenRequest, call: Call) -> Vec<Step> {
    let mut steps = plain(req, call);
    if call.request == 0 {
        steps.insert(1, Step::Hold);
    }
    steps
}

pub struct Harness {
    pub events: mpsc::Receiver<EngineEvent>,
    pub control: mpsc::Sender<Control>,
    pub task: Option<JoinHandle<Result<Summary, DistillError>>>,
    pub backend: Arc<ScriptedBackend>,
    pub seen: Vec<EngineEvent>,
    pub dir: tempfile::TempDir,
}

pub fn probes(n: usize) -> Vec<Probe> {
    ["Why are there tides?", "How does bread rise?", "Why do rivers bend?"]
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, p)| Probe { id: format!("P{i}"), domain: None, prompt: (*p).to_owned(), source: "t".into() })
        .collect()
}

pub fn spec(dir: &Path) -> SessionSpec {
    SessionSpec {
        root: dir.to_owned(),
        model: "scripted".into(),
        probes: "probes".into(),
        output: dir.join("lesson.jsonl"),
        fresh: false,
        kernel: None,
        signature: None,
        mode: "test".into(),
        sampling: Sampling::default(),
        config: serde_json::json!({}),
    }
}

pub fn model() -> ModelIdentity {
    ModelIdentity { name: "scripted".into(), path: "script".into(), backend: "scripted".into(), ..Default::default() }
}

pub fn db(dir: &Path) -> PathBuf {
    dir.join("store.sqlite3")
}

pub struct Setup {
    pub mode: CurationMode,
    pub probes: usize,
    pub runs: u32,
    pub min_score: f64,
    pub sequential: bool,
    pub probes_in_flight: u32,
}

impl Setup {
    pub fn new(mode: CurationMode) -> Self {
        Self { mode, probes: 2, runs: 2, min_score: -1000.0, sequential: false, probes_in_flight: 1 }
    }
}

impl Harness {
    pub fn start(
        setup: &Setup,
        script: impl Fn(&GenRequest, Call) -> Vec<Step> + Send + Sync + 'static,
        dir: tempfile::TempDir,
    ) -> Self {
        let probes = probes(setup.probes);
        let (journal, start, report) = Opened::open(&db(dir.path()), &dir.path().join("lesson.jsonl"))
            .expect("store")
            .begin(&spec(dir.path()), &probes, &model())
            .expect("begin");
        let backend = Arc::new(ScriptedBackend::new(script));
        let engine = Engine {
            cfg: DistillConfig {
                runs: setup.runs,
                min_chars: 10,
                min_score: setup.min_score,
                thresholds: Thresholds::default(),
                sampling: Sampling { seed: SEED, temperature: 0.7, ..Sampling::default() },
                kernel: None,
                signature: None,
                sequential: setup.sequential,
                probes_in_flight: setup.probes_in_flight,
                output: dir.path().join("lesson.jsonl"),
            },
            backend: Arc::clone(&backend) as Arc<dyn Backend>,
            scorer: Arc::new(Scorer::new(Mode::Cold)),
            probes,
            mode: setup.mode,
            journal: Some(Box::new(journal)),
            start,
            decided_order: report.decided_order,
            memory: None,
        };
        let (ev_tx, events) = mpsc::channel(64);
        let (control, ctl_rx) = mpsc::channel(16);
        let task = tokio::spawn(engine.run(ev_tx, ctl_rx, CancellationToken::new()));
        Self { events, control, task: Some(task), backend, seen: Vec::new(), dir }
    }

    /// Receives events until one matches; returns it. Fails with everything seen on a hang or
    /// when the engine finishes first.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&EngineEvent) -> bool) -> EngineEvent {
        loop {
            let ev = match tokio::time::timeout(HANG, self.events.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => panic!("the engine ended before {what}; events:\n{:#?}", self.seen),
                Err(_) => panic!("no {what} within {HANG:?}; events:\n{:#?}", self.seen),
            };
            self.seen.push(ev.clone());
            if pred(&ev) {
                return ev;
            }
            assert!(!matches!(ev, EngineEvent::Finished(_)), "finished before {what}: {:#?}", self.seen);
        }
    }

    /// Like [`Self::until`], but an event already seen counts (for events whose order among
    /// themselves the engine does not fix).
    pub async fn seen_or_until(&mut self, what: &str, pred: impl Fn(&EngineEvent) -> bool) -> EngineEvent {
        match self.seen.iter().find(|e| pred(e)) {
            Some(e) => e.clone(),
            None => self.until(what, pred).await,
        }
    }

    pub async fn send(&self, c: Control) {
        self.control.send(c).await.expect("the engine takes controls");
    }

    /// Index in `seen` of the first event matching `pred`.
    pub fn position(&self, pred: impl Fn(&EngineEvent) -> bool) -> Option<usize> {
        self.seen.iter().position(pred)
    }

    pub async fn finish(mut self) -> (Summary, Vec<EngineEvent>, tempfile::TempDir) {
        let ev = self.until("Finished", |e| matches!(e, EngineEvent::Finished(_))).await;
        let EngineEvent::Finished(summary) = ev else { unreachable!() };
        let task = self.task.take().expect("task");
        let r = tokio::time::timeout(HANG, task).await.expect("the engine returns").expect("no panic");
        assert_eq!(r.expect("no error"), summary);
        (summary, self.seen, self.dir)
    }

    pub fn lesson(&self) -> Vec<String> {
        lesson(self.dir.path())
    }

    pub fn decisions(&self) -> Vec<(String, String)> {
        decisions(self.dir.path())
    }
}

pub fn reviewing(probe: usize) -> impl Fn(&EngineEvent) -> bool {
    move |e| matches!(e, EngineEvent::AwaitingReview { probe: p, .. } if *p == probe)
}

pub fn lesson(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("lesson.jsonl")).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// The assistant turn of each lesson line.
pub fn responses(dir: &Path) -> Vec<String> {
    lesson(dir)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a whole JSON line");
            v["messages"][1]["content"].as_str().expect("assistant").to_owned()
        })
        .collect()
}

/// (probe id, kind) of every decision row, in order.
pub fn decisions(dir: &Path) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open(db(dir)).expect("store");
    let mut st = c
        .prepare("SELECT p.probe_id, d.kind FROM decisions d JOIN probes p ON p.id = d.probe_row ORDER BY d.id")
        .expect("query");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("rows").collect::<Result<_, _>>().expect("decoded")
}

pub fn d(probe: &str, kind: &str) -> (String, String) {
    (probe.to_owned(), kind.to_owned())
}

pub fn decided(probe: usize) -> impl Fn(&EngineEvent) -> bool {
    move |e| matches!(e, EngineEvent::ProbeDecided { probe: p, .. } if *p == probe)
}

pub fn started(probe: usize) -> impl Fn(&EngineEvent) -> bool {
    move |e| matches!(e, EngineEvent::ProbeStarted { probe: p, .. } if *p == probe)
}

pub fn token(probe: usize) -> impl Fn(&EngineEvent) -> bool {
    move |e| matches!(e, EngineEvent::Token { probe: p, .. } if *p == probe)
}

pub fn refused(what: &'static str) -> impl Fn(&EngineEvent) -> bool {
    move |e| matches!(e, EngineEvent::Refused { reason } if reason.contains(what))
}

pub fn decision_of(ev: &EngineEvent) -> Decision {
    match ev {
        EngineEvent::ProbeDecided { decision, .. } => decision.clone(),
        other => panic!("not a decision: {other:?}"),
    }
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}
