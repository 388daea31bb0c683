//! Tags, a reject's reason and bulk actions: the tag editor, the bulk chooser and its count
//! confirmation. Nothing reaches the engine before the operator submits or confirms.

use super::super::effect::Effect;
use super::super::state::{BulkPlan, Level, Modal, State, Status, TagForm, TagTarget};
use super::{control, note, review_target, send_review};
use crate::app::Command;
use crate::distill::{BulkAction, Control, Review, Tagging};

/// `t`: the selected probe's tags and note.
pub(super) fn open_tag(s: &mut State) {
    let Some(p) = s.probes.get(s.selected) else { return };
    let form = TagForm::new(TagTarget::One(s.selected), &p.tagging, &s.recent_tags);
    s.modal = Some(Modal::Tag(Box::new(form)));
}

/// `X`: reject the probe under review, with a reason (the tag editor, on its note).
pub(super) fn open_reject(s: &mut State) {
    let Some(probe) = review_target(s) else { return };
    let current = s.probes.get(probe).map(|p| p.tagging.clone()).unwrap_or_default();
    s.modal = Some(Modal::Tag(Box::new(TagForm::new(TagTarget::Reject(probe), &current, &s.recent_tags))));
}

/// `B`: what to do to every probe the filter shows.
pub(super) fn open_bulk(s: &mut State) {
    let probes = s.visible();
    if probes.is_empty() {
        note(s, Level::Info, "no probe in the filter: nothing to do in bulk");
        return;
    }
    s.modal = Some(Modal::BulkChoose { probes });
}

pub(super) fn tag_key(s: &mut State, mut form: Box<TagForm>, c: Command, fx: &mut Vec<Effect>) {
    match c {
        Command::Open if form.picked().is_some() => {
            form.toggle_picked();
            s.modal = Some(Modal::Tag(form));
        }
        Command::Open => submit_tags(s, *form, fx),
        Command::Back => note(s, Level::Info, "tags unchanged"),
        Command::Up => {
            form.prev();
            s.modal = Some(Modal::Tag(form));
        }
        Command::Down => {
            form.next();
            s.modal = Some(Modal::Tag(form));
        }
        _ => s.modal = Some(Modal::Tag(form)),
    }
}

fn submit_tags(s: &mut State, form: TagForm, fx: &mut Vec<Effect>) {
    let tagging = form.tagging();
    match form.target {
        TagTarget::One(probe) => control(s, Control::Tag { probe, tagging }, fx),
        TagTarget::Reject(probe) => {
            if s.reviewing != Some(probe) || s.decision_sent {
                let id = s.probes.get(probe).map_or("?", |p| p.id.as_str());
                note(s, Level::Warn, format!("{id} is no longer awaiting review: not rejected"));
                return;
            }
            send_review(s, probe, Review::RejectAll, fx);
            // Sent after the reject, so it lands on the reject's decision.
            if !tagging.is_empty() {
                control(s, Control::Tag { probe, tagging }, fx);
            }
        }
        TagTarget::Bulk(probes) => {
            let plan = plan(s, probes, BulkAction::Tag(tagging));
            s.modal = Some(Modal::ConfirmBulk(Box::new(plan)));
        }
    }
}

pub(super) fn choose_key(s: &mut State, probes: Vec<usize>, c: Command) {
    let action = match c {
        Command::Accept => BulkAction::Accept,
        Command::Reject | Command::RejectWithReason => BulkAction::Reject,
        Command::Skip => BulkAction::Skip,
        Command::Tag => {
            let form = TagForm::new(TagTarget::Bulk(probes), &Tagging::default(), &s.recent_tags);
            s.modal = Some(Modal::Tag(Box::new(form)));
            return;
        }
        Command::Help => {
            s.modal = Some(Modal::BulkChoose { probes });
            return;
        }
        _ => return note(s, Level::Info, "no bulk action: nothing changed"),
    };
    s.modal = Some(Modal::ConfirmBulk(Box::new(plan(s, probes, action))));
}

pub(super) fn confirm_key(s: &mut State, plan: BulkPlan, c: Command, fx: &mut Vec<Effect>) {
    if c != Command::Confirm {
        return note(s, Level::Info, "bulk cancelled: nothing changed");
    }
    let n = plan.probes.len();
    control(s, Control::Bulk { probes: plan.probes, action: plan.action }, fx);
    if !s.engine_gone {
        note(s, Level::Info, format!("bulk sent: {n} probes"));
    }
}

/// What a bulk would do, counted from what the workbench knows (the engine decides the same
/// way: undecided probes with candidates; to accept, one with a score).
pub(super) fn plan(s: &State, probes: Vec<usize>, action: BulkAction) -> BulkPlan {
    let (mut deciding, mut below_gate) = (0, 0);
    if matches!(action, BulkAction::Tag(_)) {
        deciding = probes.len();
    } else {
        for &i in &probes {
            let Some(p) = s.probes.get(i) else { continue };
            let open = matches!(p.status, Status::Queued | Status::Review) && s.current != Some(i);
            if !open || p.candidates.is_empty() {
                continue;
            }
            match (&action, p.best().and_then(crate::distill::Candidate::composite)) {
                (BulkAction::Accept, Some(g)) => {
                    deciding += 1;
                    below_gate += usize::from(g < s.info.gate);
                }
                (BulkAction::Accept, None) => {}
                _ => deciding += 1,
            }
        }
    }
    BulkPlan { probes, action, deciding, below_gate }
}

/// The confirmation's lines.
#[must_use]
pub fn describe(plan: &BulkPlan, gate: f64) -> Vec<String> {
    let n = plan.probes.len();
    let left = n - plan.deciding;
    let mut lines = vec![match &plan.action {
        BulkAction::Accept => format!("Keep the best candidate of {} of the {n} probes", plan.deciding),
        BulkAction::Reject => format!("Reject every candidate of {} of the {n} probes", plan.deciding),
        BulkAction::Skip => format!("Skip {} of the {n} probes", plan.deciding),
        BulkAction::Tag(t) => {
            let tags = if t.tags.is_empty() { "no tags".to_owned() } else { t.tags.join(", ") };
            format!("Set the tags of all {n} probes to: {tags}")
        }
    }];
    if let BulkAction::Tag(t) = &plan.action {
        lines.push(format!("note: {}", t.note.as_deref().unwrap_or("(none)")));
    } else {
        lines.push("in the filter; each decision is written as a single one is.".into());
        if left > 0 {
            lines.push(format!("{left} decided already (or with nothing to keep) are left as they are."));
        }
    }
    if plan.below_gate > 0 {
        lines.push(format!("{} of them score below the gate of {gate:.1}.", plan.below_gate));
    }
    lines
}
