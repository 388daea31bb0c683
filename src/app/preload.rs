//! A workbench opened on stored data (`lem-tui review`) shows every probe's candidates and best
//! score from the start, not only once the engine reaches the probe.

use super::state::State;
use crate::distill::ProbeStart;

/// Fills the probe list from the resume plan: stored candidates of undecided probes. Decided
/// probes arrive as the engine's `Resumed` event, as in any resumed session.
pub fn preload(s: &mut State, starts: &[ProbeStart]) {
    for (view, start) in s.probes.iter_mut().zip(starts) {
        if let ProbeStart::Review(stored) = start {
            view.candidates.clone_from(stored);
        }
    }
    s.reorder();
}
