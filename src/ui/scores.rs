//! The score breakdown of one candidate: every GrammarScore and DeltaScore field, plus how it
//! was generated.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::distill::{Candidate, Outcome};
use crate::theme::{Role, Theme};

fn kv<'a>(k: &'a str, v: String, t: &Theme, role: Role) -> Line<'a> {
    Line::from(vec![Span::styled(format!("{k:<14}"), t.style(Role::Dim)), Span::styled(v, t.style(role))])
}

pub fn lines<'a>(c: Option<&Candidate>, gate: f64, t: &Theme) -> Vec<Line<'a>> {
    let Some(c) = c else { return vec![Line::styled("no finished candidate selected", t.style(Role::Dim))] };
    let mut out = Vec::new();
    match &c.outcome {
        Outcome::Scored { grammar: g, delta: d } => {
            let pass = g.composite >= gate;
            let verdict = if pass { "pass" } else { "fail" };
            out.push(kv(
                "composite",
                format!("{:.2} ({verdict} ≥ {gate:.1})", g.composite),
                t,
                if pass { Role::GatePass } else { Role::GateFail },
            ));
            out.push(kv("vocab rich.", format!("{:.3}", g.vocab_richness), t, Role::Text));
            out.push(kv("tense entropy", format!("{:.3}", g.tense_entropy), t, Role::Text));
            out.push(kv("question rat.", format!("{:.3}", g.question_ratio), t, Role::Text));
            out.push(kv("domain depth", g.domain_depth.to_string(), t, Role::Text));
            out.push(kv("verbs / nouns", format!("{} / {}", g.verb_diversity, g.noun_diversity), t, Role::Text));
            out.push(kv("input → out", format!("{:.1} → {:.1}", d.input_composite, d.output_composite), t, Role::Text));
            out.push(kv("uplift", format!("{:+.2}", d.uplift), t, Role::Text));
            out.push(kv("echo", format!("{:.3}", d.echo), t, Role::Text));
            out.push(kv("enrichment", format!("{:+.2}", d.enrichment), t, Role::Text));
            let (syc, role) = if d.sycophantic { ("yes ⚠", Role::Warn) } else { ("no", Role::Text) };
            out.push(kv("sycophantic", syc.into(), t, role));
        }
        Outcome::TooShort => out.push(kv("outcome", "too short (not a candidate)".into(), t, Role::Failed)),
        Outcome::Failed(e) => out.push(kv("outcome", format!("failed: {e}"), t, Role::Failed)),
        Outcome::Cancelled => out.push(kv("outcome", "cancelled".into(), t, Role::Failed)),
    }
    let m = &c.metrics;
    out.push(kv("tokens", format!("{} in, {} out", m.prompt_tokens, m.generated_tokens), t, Role::Text));
    out.push(kv(
        "speed",
        format!("{:.0} tok/s, ttft {:.2}s, {:.1}s", m.decode_tok_s, m.ttft.as_secs_f64(), m.wall.as_secs_f64()),
        t,
        Role::Text,
    ));
    out.push(kv("sampling", format!("seed {} · T {}", c.seed, c.temperature), t, Role::Dim));
    out
}

pub fn render(c: Option<&Candidate>, gate: f64, t: &Theme, f: &mut Frame, area: Rect) {
    f.render_widget(Paragraph::new(lines(c, gate, t)), area);
}
