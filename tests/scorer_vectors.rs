//! Reference vectors for the grammar v3 scorer (`shared/vectors/grammar-v3/`), both modes.
//!
//! Floats that carry a `bits` entry must match bit for bit. Intermediate floats without one
//! (prompt_grammar, imprint) are compared to within 1 ULP, because serde_json's default
//! float parser is not guaranteed to be correctly rounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lem_tui::scorer::{DeltaScore, GrammarScore, Imprint, Mode, Scorer, Thresholds, Token, TokenKind};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/grammar-v3/");

fn load(name: &str) -> Vec<Value> {
    let path = format!("{DIR}{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn by_id(records: Vec<Value>) -> BTreeMap<String, Value> {
    records.into_iter().map(|r| (r["id"].as_str().expect("id").to_owned(), r)).collect()
}

fn ulps(a: f64, b: f64) -> u64 {
    if a == b {
        return 0;
    }
    let key = |x: f64| {
        let i = x.to_bits() as i64;
        if i < 0 { i64::MIN - i } else { i }
    };
    key(a).abs_diff(key(b))
}

#[derive(Default)]
struct Report {
    checked_records: usize,
    checked_floats_bitwise: usize,
    hard: Vec<String>,
    /// Bitwise mismatches that are nevertheless within 1e-9.
    near: Vec<String>,
}

impl Report {
    fn bits(&mut self, id: &str, field: &str, got: f64, exp: &Value) {
        self.checked_floats_bitwise += 1;
        let hex = exp["bits"][field].as_str().unwrap_or_else(|| panic!("{id}: no bits for {field}"));
        let want = f64::from_bits(u64::from_str_radix(hex, 16).expect("hex bits"));
        if got.to_bits() != want.to_bits() {
            let msg = format!("{id}: {field}: got {got:?} ({:016x}), want {want:?} ({hex})", got.to_bits());
            if (got - want).abs() <= 1e-9 {
                self.near.push(msg);
            } else {
                self.hard.push(msg);
            }
        }
    }

    fn ulp(&mut self, id: &str, field: &str, got: f64, want: &Value) {
        let Some(w) = want.as_f64() else {
            self.hard.push(format!("{id}: {field}: expected value missing"));
            return;
        };
        if ulps(got, w) > 1 {
            self.hard.push(format!("{id}: {field}: got {got:?}, want {w:?}"));
        }
    }

    fn int(&mut self, id: &str, field: &str, got: i64, want: &Value) {
        if Some(got) != want.as_i64() {
            self.hard.push(format!("{id}: {field}: got {got}, want {want}"));
        }
    }
}

fn check_grammar(r: &mut Report, id: &str, prefix: &str, g: &GrammarScore, exp: &Value, bitwise: bool) {
    let e = &exp[prefix];
    r.int(id, &format!("{prefix}.domain_depth"), g.domain_depth, &e["domain_depth"]);
    r.int(id, &format!("{prefix}.verb_diversity"), g.verb_diversity, &e["verb_diversity"]);
    r.int(id, &format!("{prefix}.noun_diversity"), g.noun_diversity, &e["noun_diversity"]);
    let floats = [
        ("vocab_richness", g.vocab_richness),
        ("tense_entropy", g.tense_entropy),
        ("question_ratio", g.question_ratio),
        ("composite", g.composite),
    ];
    for (name, v) in floats {
        let field = format!("{prefix}.{name}");
        if bitwise {
            r.bits(id, &field, v, exp);
        } else {
            r.ulp(id, &field, v, &e[name]);
        }
    }
}

fn check_delta(r: &mut Report, id: &str, d: &DeltaScore, exp: &Value) {
    let floats = [
        ("input_composite", d.input_composite),
        ("output_composite", d.output_composite),
        ("uplift", d.uplift),
        ("echo", d.echo),
        ("enrichment", d.enrichment),
    ];
    for (name, v) in floats {
        r.bits(id, &format!("delta.{name}"), v, exp);
    }
    if Some(d.sycophantic) != exp["delta"]["sycophantic"].as_bool() {
        r.hard.push(format!("{id}: delta.sycophantic: got {}", d.sycophantic));
    }
}

fn check_map(r: &mut Report, id: &str, field: &str, got: Vec<(String, f64)>, want: &Value) {
    let Some(obj) = want.as_object() else {
        r.hard.push(format!("{id}: {field}: expected an object"));
        return;
    };
    let got_keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    let mut want_keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    want_keys.sort_unstable();
    if got_keys != want_keys {
        r.hard.push(format!("{id}: {field}: keys {got_keys:?}, want {want_keys:?}"));
        return;
    }
    for (k, v) in &got {
        r.ulp(id, &format!("{field}.{k}"), *v, &obj[k]);
    }
}

fn check_imprint(r: &mut Report, id: &str, side: &str, imp: &Imprint, exp: &Value) {
    let e = &exp["imprint"][side];
    let f = |n: &str| format!("imprint.{side}.{n}");
    r.int(id, &f("token_count"), imp.token_count() as i64, &e["token_count"]);
    r.int(id, &f("unique_verbs"), imp.unique_verbs() as i64, &e["unique_verbs"]);
    r.int(id, &f("unique_nouns"), imp.unique_nouns() as i64, &e["unique_nouns"]);
    r.ulp(id, &f("plural_ratio"), imp.plural_ratio(), &e["plural_ratio"]);
    let tenses = imp.tense_distribution().map(|(k, v)| (k.as_str().to_owned(), v)).collect();
    check_map(r, id, &f("tense_distribution"), tenses, &e["tense_distribution"]);
    let puncts = imp.punctuation_pattern().map(|(k, v)| (k.name().to_owned(), v)).collect();
    check_map(r, id, &f("punctuation_pattern"), puncts, &e["punctuation_pattern"]);
    let arts = imp.article_usage().map(|(k, v)| (k.as_str().to_owned(), v)).collect();
    check_map(r, id, &f("article_usage"), arts, &e["article_usage"]);
    let doms = imp.domain_vocabulary().map(|(k, v)| (k.to_owned(), v as f64)).collect();
    check_map(r, id, &f("domain_vocabulary"), doms, &e["domain_vocabulary"]);
}

fn run_mode(mode: Mode, expected_file: &str) -> Report {
    let inputs = load("grammar-v3-inputs.jsonl");
    let expected = by_id(load(expected_file));
    assert_eq!(inputs.len(), expected.len(), "{expected_file}: record count");
    let scorer = Scorer::new(mode);
    let t = Thresholds::default();
    let mut r = Report::default();
    for input in &inputs {
        let id = input["id"].as_str().expect("id");
        let prompt = input["prompt"].as_str().expect("prompt");
        let response = input["response"].as_str().expect("response");
        let exp = expected.get(id).unwrap_or_else(|| panic!("{id}: no expected record"));

        let g = scorer.score(response);
        let d = scorer.delta(prompt, response, t);
        check_grammar(&mut r, id, "grammar", &g, exp, true);
        check_delta(&mut r, id, &d, exp);
        check_grammar(&mut r, id, "prompt_grammar", &scorer.score(prompt), exp, false);
        check_imprint(&mut r, id, "prompt", &scorer.imprint(prompt), exp);
        check_imprint(&mut r, id, "response", &scorer.imprint(response), exp);
        r.checked_records += 1;
    }
    r
}

fn finish(mode: &str, r: Report) {
    println!(
        "{mode}: {} records, {} bitwise floats checked, {} hard mismatches, {} bitwise-only mismatches within 1e-9",
        r.checked_records,
        r.checked_floats_bitwise,
        r.hard.len(),
        r.near.len()
    );
    if !r.hard.is_empty() || !r.near.is_empty() {
        let mut msg =
            format!("{mode}: {} hard mismatches, {} bitwise mismatches within 1e-9\n", r.hard.len(), r.near.len());
        for m in r.hard.iter().chain(&r.near).take(60) {
            let _ = writeln!(msg, "  {m}");
        }
        panic!("{msg}");
    }
}

#[test]
fn cold_mode_matches_expected() {
    finish("cold", run_mode(Mode::Cold, "grammar-v3-expected.jsonl"));
}

#[test]
fn preloaded_mode_matches_expected() {
    finish("preloaded", run_mode(Mode::Preloaded, "grammar-v3-expected-preloaded.jsonl"));
}

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

#[test]
fn cold_tokens_match_dump() {
    let inputs = by_id(load("grammar-v3-inputs.jsonl"));
    let dumps = load("grammar-v3-tokens.jsonl");
    assert_eq!(dumps.len(), inputs.len());
    let scorer = Scorer::new(Mode::Cold);
    let mut errors = Vec::new();
    let mut checked = 0usize;
    for dump in &dumps {
        let id = dump["id"].as_str().expect("id");
        let input = &inputs[id];
        for side in ["prompt", "response"] {
            let text = input[side].as_str().expect("text");
            let got = scorer.tokenise(text);
            let want = dump[side].as_array().expect("token list");
            if got.len() != want.len() {
                errors.push(format!("{id}: {side}: {} tokens, want {}", got.len(), want.len()));
                continue;
            }
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                checked += 1;
                let (ty, info) = type_info(g);
                let ok = w[0].as_str() == Some(g.raw.as_str())
                    && w[1].as_str() == Some(g.lower.as_str())
                    && w[2].as_str() == Some(ty)
                    && w[3].as_str() == Some(info.as_str())
                    && w[4].as_f64() == Some(g.confidence)
                    && w.as_array().map(Vec::len) == Some(5)
                    && g.alt.is_none();
                if !ok {
                    errors.push(format!(
                        "{id}: {side}[{i}]: got [{:?}, {:?}, {ty}, {info:?}, {}], want {w}",
                        g.raw, g.lower, g.confidence
                    ));
                }
            }
            let imprint_count = scorer.imprint(text).token_count();
            if imprint_count != got.len() {
                errors.push(format!("{id}: {side}: imprint token_count {imprint_count} vs {}", got.len()));
            }
        }
    }
    println!("cold tokens: {checked} tokens checked, {} mismatches", errors.len());
    assert!(errors.is_empty(), "{} token mismatches:\n{}", errors.len(), errors[..errors.len().min(60)].join("\n"));
}

#[test]
fn worked_example_section_3_12() {
    let scorer = Scorer::new(Mode::Cold);
    let prompt = "Why is the sky blue? Explain.";
    let response = "The sky is blue because air molecules scattered the shorter wavelengths. \
                    Running tests, we walked... Is it? Yes!";
    assert_eq!(scorer.imprint(prompt).token_count(), 7);
    assert_eq!(scorer.imprint(response).token_count(), 22);

    let toks = scorer.tokenise(response);
    let verbs: Vec<String> = toks
        .iter()
        .filter_map(|t| match &t.kind {
            TokenKind::Verb { base, tense } => Some(format!("{base}/{}", tense.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(verbs, ["scattere/past", "run/gerund", "walk/past"]);

    let g = scorer.score(response);
    assert_eq!(g.vocab_richness, 7.0 / 22.0);
    assert_eq!(g.tense_entropy, 0.9182958340544896);
    assert_eq!(g.question_ratio, 0.25);
    assert_eq!((g.verb_diversity, g.noun_diversity, g.domain_depth), (3, 4, 0));
    assert_eq!(g.composite, 62.48416142041782);
    assert_eq!(scorer.score(prompt).composite, 45.375);

    let d = scorer.delta(prompt, response, Thresholds::default());
    assert_eq!(d.echo, 0.38898223650461355);
    assert_eq!(d.uplift, 62.48416142041782 - 45.375);
    assert_eq!(d.enrichment, 10.454001546385244);
    assert!(!d.sycophantic);
}
