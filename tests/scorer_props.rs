//! Property tests for the grammar v3 scorer: no panics, finite in-range results, and
//! agreement between the public entry points, in both modes.

use std::sync::LazyLock;

use lem_tui::scorer::{DeltaScore, GrammarScore, Imprint, Mode, Scorer, Thresholds, delta_from};
use proptest::prelude::*;

static COLD: LazyLock<Scorer> = LazyLock::new(|| Scorer::new(Mode::Cold));
static PRELOADED: LazyLock<Scorer> = LazyLock::new(|| Scorer::new(Mode::Preloaded));

fn scorers() -> [&'static Scorer; 2] {
    [&COLD, &PRELOADED]
}

/// Characters chosen to hit the tokeniser's edges: White_Space and look-alikes, the split
/// punctuation, `.`, suffix letters, case-mapping specials, multi-byte characters whose
/// encodings end in repeated bytes, controls, and a spread of scripts.
fn edge_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            'a', 'e', 'i', 'o', 'u', 'y', 's', 'd', 'n', 'g', 'f', 'x', 'z', 'c', 'h', 'p', 't',
            'r', 'l', 'w', 'E', 'D', 'S', 'I', 'N', 'G', '\'',
        ]),
        2 => prop::sample::select(vec![
            ' ', '\t', '\n', '\u{0B}', '\u{0C}', '\r', '\u{85}', '\u{A0}', '\u{1680}', '\u{2000}',
            '\u{200A}', '\u{2028}', '\u{2029}', '\u{202F}', '\u{205F}', '\u{3000}', '\u{200B}',
            '\u{FEFF}', '\u{180E}', '\u{1C}', '\u{1F}',
        ]),
        2 => prop::sample::select(vec!['?', ':', '!', ';', ',', '.', '…', ')', '"']),
        1 => prop::sample::select(vec![
            '\u{130}', '\u{212A}', 'Σ', 'ς', 'ẞ', 'ß', 'é', '\u{301}', '\u{4000}', '\u{2D2D}',
            '\u{10D50}', '\u{A7CB}', '日', 'ع', 'ш', '😀', '\u{0}', '\u{7F}', '\u{1B}',
        ]),
        1 => any::<char>(),
    ]
}

fn edge_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(edge_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Words from the tables and their inflections, so dual-class words, articles and signal
/// words meet each other often.
fn wordy_text() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "the",
        "a",
        "an",
        "The",
        "run",
        "runs",
        "running",
        "ran",
        "test",
        "tests",
        "tested",
        "build",
        "built",
        "check",
        "checks",
        "commit",
        "commits",
        "file",
        "files",
        "filed",
        "to",
        "is",
        "was",
        "don't",
        "and",
        "but",
        "so",
        "this",
        "these",
        "every",
        "URL",
        "API",
        "cpus",
        "?",
        "...",
        ",",
        "walked...",
        "Yes!",
        "deleted",
        "children",
        "wolves",
        "stopping",
    ]);
    prop::collection::vec((words, prop::sample::select(vec![" ", "  ", "\n", "? ", ", "])), 0..40)
        .prop_map(|v| v.into_iter().map(|(w, sep)| format!("{w}{sep}")).collect())
}

fn grammar_ok(g: &GrammarScore) -> Result<(), TestCaseError> {
    let floats = [g.vocab_richness, g.tense_entropy, g.question_ratio, g.composite];
    prop_assert!(floats.iter().all(|f| f.is_finite()), "{g:?}");
    // An alternative reading adds a base to both sets, so richness can exceed 1.
    prop_assert!((0.0..=2.0).contains(&g.vocab_richness), "{g:?}");
    prop_assert!((0.0..=1.585).contains(&g.tense_entropy), "{g:?}");
    prop_assert!((0.0..=1.0).contains(&g.question_ratio), "{g:?}");
    prop_assert!((0.0..=100.0).contains(&g.composite), "{g:?}");
    prop_assert!(g.domain_depth >= 0 && g.verb_diversity >= 0 && g.noun_diversity >= 0);
    Ok(())
}

fn delta_ok(d: &DeltaScore) -> Result<(), TestCaseError> {
    let floats = [d.input_composite, d.output_composite, d.uplift, d.echo, d.enrichment];
    prop_assert!(floats.iter().all(|f| f.is_finite()), "{d:?}");
    prop_assert!((0.0..=1.0 + 1e-12).contains(&d.echo), "{d:?}");
    Ok(())
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn g_bits(g: &GrammarScore) -> Vec<f64> {
    vec![g.vocab_richness, g.tense_entropy, g.question_ratio, g.composite]
}

fn d_bits(d: &DeltaScore) -> Vec<f64> {
    vec![d.input_composite, d.output_composite, d.uplift, d.echo, d.enrichment]
}

fn check_pair(s: &Scorer, prompt: &str, response: &str) -> Result<(), TestCaseError> {
    let t = Thresholds::default();
    let g = s.score(response);
    grammar_ok(&g)?;
    grammar_ok(&s.score(prompt))?;
    let d = s.delta(prompt, response, t);
    delta_ok(&d)?;

    let (g2, d2) = s.score_with_delta(prompt, response, t);
    prop_assert!(g == g2 && same_bits(&g_bits(&g), &g_bits(&g2)));
    prop_assert!(d == d2 && same_bits(&d_bits(&d), &d_bits(&d2)));

    let p_imp: Imprint = s.imprint(prompt);
    let (g3, d3) = s.score_against(&p_imp, response, t);
    prop_assert!(same_bits(&g_bits(&g2), &g_bits(&g3)) && g2 == g3);
    prop_assert!(same_bits(&d_bits(&d2), &d_bits(&d3)) && d2.sycophantic == d3.sycophantic);

    let r_imp = s.imprint(response);
    let d4 = delta_from(&p_imp, &r_imp, t);
    prop_assert!(same_bits(&d_bits(&d), &d_bits(&d4)) && d.sycophantic == d4.sycophantic);
    prop_assert!(same_bits(&g_bits(&g), &g_bits(&r_imp.grammar_score())));

    for text in [prompt, response] {
        let toks = s.tokenise(text);
        prop_assert_eq!(toks.len(), s.imprint(text).token_count());
        for tok in &toks {
            prop_assert!(tok.confidence.is_finite() && (0.0..=1.0).contains(&tok.confidence));
        }
    }
    let sim = p_imp.similar(&r_imp);
    prop_assert!(sim.is_finite());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_unicode(prompt in any::<String>(), response in any::<String>()) {
        for s in scorers() {
            check_pair(s, &prompt, &response)?;
        }
    }

    #[test]
    fn edge_characters(prompt in edge_text(80), response in edge_text(200)) {
        for s in scorers() {
            check_pair(s, &prompt, &response)?;
        }
    }

    #[test]
    fn arbitrary_bytes(prompt in prop::collection::vec(any::<u8>(), 0..120),
                       response in prop::collection::vec(any::<u8>(), 0..400)) {
        let prompt = String::from_utf8_lossy(&prompt);
        let response = String::from_utf8_lossy(&response);
        for s in scorers() {
            check_pair(s, &prompt, &response)?;
        }
    }

    #[test]
    fn dual_class_and_signal_words(prompt in wordy_text(), response in wordy_text()) {
        for s in scorers() {
            check_pair(s, &prompt, &response)?;
        }
    }

    #[test]
    fn blank_text_scores_zero(ws in prop::collection::vec(prop::sample::select(vec![
        ' ', '\t', '\n', '\u{0B}', '\u{0C}', '\r', '\u{85}', '\u{A0}', '\u{1680}', '\u{2003}',
        '\u{2028}', '\u{2029}', '\u{202F}', '\u{205F}', '\u{3000}',
    ]), 0..20)) {
        let ws: String = ws.into_iter().collect();
        for s in scorers() {
            prop_assert_eq!(s.score(&ws), GrammarScore::default());
            prop_assert_eq!(s.imprint(&ws).token_count(), 0);
            prop_assert!(s.tokenise(&ws).is_empty());
            let d = s.delta(&ws, &ws, Thresholds::default());
            prop_assert!(d.echo == 1.0 && d.uplift == 0.0 && d.sycophantic);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Single tokens of 5,000+ bytes with inflection-looking tails.
    #[test]
    fn huge_tokens(unit in prop::sample::select(vec!["a", "é", "\u{4000}", "😀", "ss", "Σ", "İ"]),
                   reps in 5000usize..8000,
                   tail in prop::sample::select(vec!["", "ed", "ied", "ing", "ying", "s", "ies", "ves", "es", "...", "?", "ed,"])) {
        let word = format!("{}{tail}", unit.repeat(reps));
        prop_assert!(word.len() >= 5000);
        let text = format!("The {word} and {word} {word}? yes");
        for s in scorers() {
            check_pair(s, &word, &text)?;
        }
    }
}
