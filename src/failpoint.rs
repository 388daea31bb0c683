//! Named points where a test can freeze the process to kill it at an exact moment (between a
//! commit and a write, in the middle of a line, between an undo's intent and its cut). Built
//! only with the test-only `failpoints` feature; without it every point is an empty inline
//! function, so release builds carry none.
//!
//! With the feature, a point is off unless `LEM_TUI_FAILPOINT` is set to `name` or `name@n`
//! (the n-th time the point is reached, 1-based). At the point the process prints
//! `failpoint <name> reached` on stderr and sleeps until it is killed.

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Armed {
        name: String,
        nth: u64,
        seen: AtomicU64,
    }

    fn armed() -> Option<&'static Armed> {
        static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
        ARMED
            .get_or_init(|| {
                let spec = std::env::var("LEM_TUI_FAILPOINT").ok()?;
                let (name, nth) = match spec.split_once('@') {
                    Some((n, k)) => (n.to_owned(), k.parse().ok()?),
                    None => (spec, 1),
                };
                Some(Armed { name, nth, seen: AtomicU64::new(0) })
            })
            .as_ref()
    }

    /// Counts a pass through `name`; true when this pass is the one to stop at. Callers that
    /// need to set up the moment first (write half a line) check this, then call [`pause`].
    pub fn triggers(name: &str) -> bool {
        match armed() {
            Some(a) if a.name == name => a.seen.fetch_add(1, Ordering::SeqCst) + 1 == a.nth,
            _ => false,
        }
    }

    /// Announces the point and never returns. The store's points are reached on its blocking
    /// thread; `token` freezes an engine worker, which only a test build can do.
    pub fn pause(name: &str) -> ! {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }

    /// Stops here if the armed point is `name` and this is its n-th pass.
    pub fn hit(name: &str) {
        if triggers(name) {
            pause(name);
        }
    }
}

#[cfg(feature = "failpoints")]
pub use armed::{hit, pause, triggers};

/// Without the `failpoints` feature a point is nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// The headless run's stand-in for an operator, for the kill test: with `LEM_TUI_TEST_UNDO`
/// set, the first kept decision is undone, and the reopened probe is then accepted again
/// (its best candidate), so a run passes through an undo of a written line and a rewrite.
#[cfg(feature = "failpoints")]
pub struct UndoHook {
    control: Option<tokio::sync::mpsc::Sender<crate::distill::Control>>,
    undone: Option<usize>,
}

#[cfg(feature = "failpoints")]
impl UndoHook {
    pub fn from_env(control: tokio::sync::mpsc::Sender<crate::distill::Control>) -> Self {
        let on = std::env::var_os("LEM_TUI_TEST_UNDO").is_some();
        Self { control: on.then_some(control), undone: None }
    }

    pub async fn see(&mut self, ev: &crate::distill::EngineEvent) {
        use crate::distill::{Control, Decision, EngineEvent, Review};
        let Some(ctl) = &self.control else { return };
        match ev {
            EngineEvent::ProbeDecided { decision: Decision::Kept { .. }, .. } if self.undone.is_none() => {
                let _ = ctl.send(Control::Undo).await;
                self.undone = Some(usize::MAX);
            }
            EngineEvent::Undone { probe, .. } => self.undone = Some(*probe),
            EngineEvent::AwaitingReview { probe, best, .. } if self.undone == Some(*probe) => {
                let review = match best {
                    Some(run) => Review::Accept { run: *run, below_gate_ok: true },
                    None => Review::Skip,
                };
                let _ = ctl.send(Control::Review { probe: *probe, review }).await;
                self.control = None;
            }
            _ => {}
        }
    }
}
