//! `lem-tui score` as a user runs it: JSONL in, the vectors' field names out, bad lines named.

mod common;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/grammar-v3/");

fn score(args: &[&str], input: &str) -> (String, String, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .arg("score")
        .args(args)
        .env("LEM_TUI_LOG", std::env::temp_dir().join("lem-tui-score-test.log"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let _watched = common::watch_child("lem-tui score", &child, None);
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("waits");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn scores_the_public_vectors_with_their_field_names_in_both_modes() {
    let _deadline = common::deadline(Duration::from_secs(180));
    let inputs = std::fs::read_to_string(format!("{VECTORS}grammar-v3-inputs.jsonl")).expect("inputs");
    for (mode, file) in [("cold", "grammar-v3-expected.jsonl"), ("preloaded", "grammar-v3-expected-preloaded.jsonl")] {
        let expected = std::fs::read_to_string(format!("{VECTORS}{file}")).expect("expected");
        let (out, err, code) = score(&["--mode", mode], &inputs);
        assert_eq!(code, Some(0), "{err}");
        let got: Vec<&str> = out.lines().collect();
        let want: Vec<serde_json::Value> = expected.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert!(g.starts_with(r#"{"id":"#), "id first: {g}");
            let g: serde_json::Value = serde_json::from_str(g).expect("output is JSON");
            assert_eq!(g["id"], w["id"]);
            for part in ["grammar", "delta"] {
                let (go, wo) = (g[part].as_object().expect("object"), w[part].as_object().expect("object"));
                assert_eq!(go.keys().collect::<Vec<_>>(), wo.keys().collect::<Vec<_>>(), "{part} fields");
                for (k, wv) in wo {
                    match (wv.as_f64(), go[k].as_f64()) {
                        (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-9, "{} {part}.{k}: {b} vs {a}", w["id"]),
                        _ => assert_eq!(&go[k], wv, "{} {part}.{k}", w["id"]),
                    }
                }
            }
        }
    }
}

#[test]
fn a_malformed_line_is_named_and_the_rest_are_scored() {
    let _deadline = common::deadline(Duration::from_secs(180));
    let input = "{\"id\":\"a\",\"prompt\":\"Why?\",\"response\":\"Because the sky is blue.\"}\n{\"id\":\"b\",\"prompt\":\n\n{\"id\":\"c\",\"response\":\"We walked home.\"}\n";
    let (out, err, code) = score(&[], input);
    assert_eq!(code, Some(2), "non-zero exit when a line was bad");
    assert!(err.contains("<stdin>:2:"), "names line 2: {err}");
    let ids: Vec<String> =
        out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["id"].to_string()).collect();
    assert_eq!(ids, ["\"a\"", "\"c\""]);
}

#[test]
fn thresholds_change_the_sycophancy_flag() {
    let _deadline = common::deadline(Duration::from_secs(180));
    let rec = "{\"id\":1,\"prompt\":\"The cat sat on the mat.\",\"response\":\"The cat sat on the mat.\"}\n";
    let (out, _, _) = score(&[], rec);
    assert!(out.contains("\"sycophantic\":true"), "{out}");
    let (out, _, _) = score(&["--echo-threshold", "1.5"], rec);
    assert!(out.contains("\"sycophantic\":false"), "{out}");
}
