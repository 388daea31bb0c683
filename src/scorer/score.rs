//! LEM `ComputeGrammarScore`, `shannonEntropy` and `ComputeDelta` (grammar.go `1b742bf`).

use super::imprint::{Imprint, punct_slot};
use super::log2::log2;
use super::{DeltaScore, GrammarScore, PunctKind, Thresholds};

/// `-Σ p·log2(p)` over the tense keys in ascending order, skipping p ≤ 0.
fn tense_entropy(imp: &Imprint) -> f64 {
    let mut h = 0.0f64;
    for p in imp.tenses.iter().flatten().copied() {
        if p > 0.0 {
            h -= p * log2(p);
        }
    }
    h
}

pub(crate) fn grammar_score(imp: &Imprint) -> GrammarScore {
    let verb_diversity = imp.unique_verbs as i64;
    let noun_diversity = imp.unique_nouns as i64;
    let vocab_richness =
        if imp.token_count > 0 { (imp.unique_verbs + imp.unique_nouns) as f64 / imp.token_count as f64 } else { 0.0 };
    let tense_entropy = tense_entropy(imp);
    let question_ratio = imp.puncts[punct_slot(PunctKind::Question)].unwrap_or(0.0);
    let domain_depth: i64 = imp.domains.iter().map(|(_, c)| *c).sum();

    let tense_norm = tense_entropy / 1.585;
    let vocab_norm = (vocab_richness * 10.0).min(1.0);
    let question_norm = (question_ratio * 5.0).min(1.0);
    let verb_norm = (verb_diversity as f64 / 30.0).min(1.0);
    let noun_norm = (noun_diversity as f64 / 40.0).min(1.0);
    // Left to right, each product rounded before the add (Go amd64 v1 does not fuse).
    let mut composite = 0.25 * tense_norm;
    composite += 0.25 * vocab_norm;
    composite += 0.20 * question_norm;
    composite += 0.15 * verb_norm;
    composite += 0.15 * noun_norm;
    composite *= 100.0;

    GrammarScore {
        vocab_richness,
        tense_entropy,
        question_ratio,
        domain_depth,
        verb_diversity,
        noun_diversity,
        composite,
    }
}

/// LEM `ComputeDelta` from precomputed scores and imprints.
pub(crate) fn delta(
    prompt: &Imprint,
    prompt_score: &GrammarScore,
    response: &Imprint,
    response_score: &GrammarScore,
    t: Thresholds,
) -> DeltaScore {
    let echo = prompt.similar(response);
    let uplift = response_score.composite - prompt_score.composite;
    DeltaScore {
        input_composite: prompt_score.composite,
        output_composite: response_score.composite,
        uplift,
        echo,
        enrichment: uplift * (1.0 - echo),
        sycophantic: echo > t.echo && uplift < t.uplift,
    }
}
