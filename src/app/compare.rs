//! The compare view: two candidates of a probe side by side, their words diffed and their
//! score breakdowns beside each other. A modal with its own state and keys; `update` hands it
//! the commands while it is open.

use super::action::Command;
use super::diff::{self, WordDiff};
use super::state::{Row, State};
use crate::distill::Candidate;

#[derive(Clone, Debug, PartialEq)]
pub struct Compare {
    pub probe: usize,
    /// Run numbers of the left and right candidates.
    pub left: u32,
    pub right: u32,
    pub diff: WordDiff,
    /// First wrapped line shown (both sides scroll together).
    pub top: usize,
}

fn scored(s: &State, probe: usize) -> Vec<&Candidate> {
    s.probes.get(probe).map(|p| p.candidates.iter().filter(|c| c.composite().is_some()).collect()).unwrap_or_default()
}

impl Compare {
    fn new(s: &State, probe: usize, left: u32, right: u32) -> Option<Self> {
        let find = |run| s.probes.get(probe)?.candidates.iter().find(|c| c.run == run);
        let diff = diff::words(&find(left)?.text, &find(right)?.text);
        Some(Self { probe, left, right, diff, top: 0 })
    }

    /// The selected candidate against the best other scored one.
    pub fn open(s: &State) -> Result<Self, &'static str> {
        let Some(Row::Done(left)) = s.selected_row() else {
            return Err("select a finished candidate to compare");
        };
        let right = scored(s, s.selected)
            .into_iter()
            .filter(|c| c.run != left.run)
            .max_by(|a, b| a.composite().unwrap_or(0.0).total_cmp(&b.composite().unwrap_or(0.0)))
            .ok_or("this probe has only one scored candidate: nothing to compare it with")?;
        Self::new(s, s.selected, left.run, right.run).ok_or("the candidates are gone")
    }

    /// The candidate after the right-hand one (skipping the left), in run order.
    fn next_right(&self, s: &State) -> Option<Self> {
        let runs: Vec<u32> = scored(s, self.probe).iter().map(|c| c.run).filter(|r| *r != self.left).collect();
        let at = runs.iter().position(|r| *r == self.right).map_or(0, |i| (i + 1) % runs.len().max(1));
        Self::new(s, self.probe, self.left, *runs.get(at)?)
    }

    /// Applies a command; `None` closes the view.
    #[must_use]
    pub fn key(mut self, s: &State, c: Command, page: usize) -> Option<Self> {
        match c {
            Command::Up => self.top = self.top.saturating_sub(1),
            Command::Down => self.top += 1,
            Command::PageUp => self.top = self.top.saturating_sub(page),
            Command::PageDown => self.top += page,
            Command::Top => self.top = 0,
            Command::NextPane => return Some(self.next_right(s).unwrap_or(self)),
            Command::Back | Command::Open | Command::Compare | Command::Quit => return None,
            _ => {}
        }
        Some(self)
    }
}
