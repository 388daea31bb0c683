//! Behaviour the specification (`shared/spec/grammar-v3.md`) states directly: the
//! tokenisation and morphology quirks of §3.2–§3.4 and the edge cases of §3.11.

use std::sync::Arc;

use lem_tui::scorer::{GrammarScore, Imprint, Mode, Scorer, Thresholds, Token, TokenKind};

fn type_info(tok: &Token) -> (&'static str, String) {
    match &tok.kind {
        TokenKind::Verb { base, tense } => ("verb", format!("{base}/{}", tense.as_str())),
        TokenKind::Noun { base, plural } => ("noun", format!("{base}/{}", if *plural { "plural" } else { "singular" })),
        TokenKind::Article(a) => ("article", a.as_str().to_owned()),
        TokenKind::Word { category } => ("word", category.clone()),
        TokenKind::Punct(p) => ("punct", p.name().to_owned()),
        TokenKind::Unknown => ("unknown", String::new()),
    }
}

/// The quirks listed in spec §3.2–§3.4, which the reference reproduces deliberately.
#[test]
fn spec_examples() {
    let scorer = Scorer::new(Mode::Cold);
    let one = |w: &str| {
        let toks = scorer.tokenise(w);
        assert_eq!(toks.len(), 1, "{w}: {toks:?}");
        let (ty, info) = type_info(&toks[0]);
        format!("{ty}:{info}")
    };
    let cases = [
        ("scattered", "verb:scattere/past"),
        ("played", "verb:playe/past"),
        ("passed", "verb:pas/past"),
        ("need", "verb:nee/past"),
        ("bed", "verb:b/past"),
        ("thing", "verb:th/gerund"),
        ("dying", "verb:dy/gerund"),
        ("Running", "verb:run/gerund"),
        ("walked", "verb:walk/past"),
        ("caéed", "verb:caé/past"),
        ("ésopped", "verb:ésopp/past"),
        ("was", "verb:be/past"),
        ("is", "noun:i/plural"),
        ("this", "noun:thi/plural"),
        ("has", "noun:ha/plural"),
        ("yes", "noun:ye/plural"),
        ("status", "noun:statu/plural"),
        ("user's", "noun:user'/plural"),
        ("1990s", "noun:1990/plural"),
        ("URLs", "noun:url/plural"),
        ("fish", "noun:fish/singular"),
        ("seed", "unknown:"),
        ("die", "unknown:"),
        ("lie", "unknown:"),
        ("written", "unknown:"),
        ("walked.", "unknown:"),
        ("?", "unknown:"),
        ("İ", "unknown:"),
        ("THE", "article:definite"),
        ("An", "article:indefinite"),
        // A doubled byte inside a multi-byte character: the cut candidate is skipped.
        ("\u{4000}ed", "verb:\u{4000}/past"),
        ("x\u{4000}ing", "verb:x\u{4000}/gerund"),
    ];
    let mut bad = Vec::new();
    for (word, want) in cases {
        let got = one(word);
        if got != want {
            bad.push(format!("{word}: got {got}, want {want}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));

    let kinds = |s: &str| -> Vec<String> {
        scorer.tokenise(s).iter().map(|t| format!("{}:{}", t.raw, type_info(t).1)).collect()
    };
    assert_eq!(kinds("??"), ["??:", "?:question"]);
    assert_eq!(kinds("...."), ["....:", "...:progress"]);
    assert_eq!(kinds("..."), ["...:progress"]);
    assert_eq!(kinds("a\u{200B}b\u{FEFF}c"), ["a\u{200B}b\u{FEFF}c:"]);
    assert_eq!(kinds("x\u{3000}y\u{85}z"), ["x:", "y:", "z:"]);
}

#[test]
fn edge_cases_section_3_11() {
    let t = Thresholds::default();
    for mode in [Mode::Cold, Mode::Preloaded] {
        let scorer = Scorer::new(mode);
        for blank in ["", "   ", "\u{3000}\n\t\u{2028}"] {
            assert_eq!(scorer.score(blank), GrammarScore::default());
        }
        let d = scorer.delta("", "", t);
        assert_eq!((d.echo, d.uplift, d.sycophantic), (1.0, 0.0, true));
        assert_eq!(scorer.delta("Hello there", "Hello there", t).echo, 1.0);
        let same = "The cat sat on the mat? Yes, it sat.";
        let d = scorer.delta(same, same, t);
        assert!(d.sycophantic && d.uplift == 0.0 && (d.echo - 1.0).abs() < 1e-15);
    }
}

#[test]
fn scorer_is_shareable_and_modes_serialise_lowercase() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Scorer>();
    assert_send_sync::<Imprint>();

    let scorer = Arc::new(Scorer::new(Mode::Preloaded));
    let text = "Commit the changes, then run the test build... Did it pass?";
    let want = scorer.score(text);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let s = Arc::clone(&scorer);
            std::thread::spawn(move || s.score(text))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("scoring thread"), want);
    }

    assert_eq!(Mode::default(), Mode::Cold);
    assert_eq!(serde_json::to_string(&Mode::Preloaded).expect("json"), "\"preloaded\"");
    let mode: Mode = serde_json::from_str("\"cold\"").expect("json");
    assert_eq!(mode, Mode::Cold);
    let t = Thresholds::default();
    assert_eq!((t.echo, t.uplift), (0.6, 5.0));
}
