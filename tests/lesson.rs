//! Go `encoding/json` byte-compatibility and the append-only lesson writer.

use std::fs;

use lem_tui::lesson::{ChatMessage, LessonWarning, LessonWriter, TrainingExample, go_json_string, training_line};
use proptest::prelude::*;

fn esc(s: &str) -> String {
    let mut out = String::new();
    go_json_string(s, &mut out);
    out
}

#[test]
fn go_escapes_each_special_character() {
    let cases: &[(&str, &str)] = &[
        ("", r#""""#),
        ("plain text", r#""plain text""#),
        ("\"", r#""\"""#),
        ("\\", r#""\\""#),
        ("\n", r#""\n""#),
        ("\r", r#""\r""#),
        ("\t", r#""\t""#),
        // Go 1.22+ (LEM builds with 1.25) uses the short forms for these two.
        ("\u{8}", r#""\b""#),
        ("\u{c}", r#""\f""#),
        ("\u{0}", r#""\u0000""#),
        ("\u{1}", r#""\u0001""#),
        ("\u{b}", r#""\u000b""#),
        ("\u{1b}", r#""\u001b""#),
        ("\u{1f}", r#""\u001f""#),
        ("<", r#""\u003c""#),
        (">", r#""\u003e""#),
        ("&", r#""\u0026""#),
        ("\u{2028}", r#""\u2028""#),
        ("\u{2029}", r#""\u2029""#),
        // Not escaped by Go: DEL, other non-ASCII, astral characters, U+FFFD, `/`, `'`.
        ("\u{7f}", "\"\u{7f}\""),
        ("é—ü", "\"é—ü\""),
        ("🦀👩‍💻", "\"🦀👩‍💻\""),
        ("\u{FFFD}", "\"\u{FFFD}\""),
        ("\u{2027}\u{202a}", "\"\u{2027}\u{202a}\""),
        ("a/b's", "\"a/b's\""),
    ];
    for (input, want) in cases {
        assert_eq!(esc(input), *want, "input {input:?}");
    }
    assert_eq!(
        esc("<b>Tom & \"Jerry\"</b>\n\tend\u{2028}"),
        r#""\u003cb\u003eTom \u0026 \"Jerry\"\u003c/b\u003e\n\tend\u2028""#
    );
}

#[test]
fn go_json_string_appends() {
    let mut out = String::from("x=");
    go_json_string("<", &mut out);
    assert_eq!(out, r#"x="\u003c""#);
}

#[test]
fn training_line_is_what_go_marshal_writes() {
    let ex = TrainingExample::user_assistant(
        "KERNEL {\"a\": 1}\n\nIs 3 < 4 & 5 > 2?\n\nDream lofty dreams",
        "Yes — \"obviously\".\u{2028}🦀",
    );
    assert_eq!(
        training_line(&ex),
        concat!(
            r#"{"messages":[{"role":"user","content":"KERNEL {\"a\": 1}\n\nIs 3 \u003c 4 \u0026 5 \u003e 2?\n\nDream lofty dreams"},"#,
            r#"{"role":"assistant","content":"Yes — \"obviously\".\u2028🦀"}]}"#,
            "\n"
        )
    );
    let three = TrainingExample {
        messages: vec![
            ChatMessage { role: "system".into(), content: "k".into() },
            ChatMessage { role: "user".into(), content: "p".into() },
            ChatMessage { role: "assistant".into(), content: "r".into() },
        ],
    };
    assert_eq!(
        training_line(&three),
        "{\"messages\":[{\"role\":\"system\",\"content\":\"k\"},{\"role\":\"user\",\"content\":\"p\"},{\"role\":\"assistant\",\"content\":\"r\"}]}\n"
    );
    assert_eq!(training_line(&TrainingExample { messages: vec![] }), "{\"messages\":[]}\n");
}

proptest! {
    #[test]
    fn escaped_strings_round_trip_through_serde_json(s in any::<String>()) {
        let out = esc(&s);
        prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s.clone());
        let inner = &out[1..out.len() - 1];
        prop_assert!(!inner.chars().any(|c| c < ' ' || "<>&\u{2028}\u{2029}".contains(c)), "{}", out);
    }

    #[test]
    fn training_lines_round_trip(user in ".*", assistant in any::<String>()) {
        let ex = TrainingExample::user_assistant(user, assistant);
        let line = training_line(&ex);
        prop_assert!(line.ends_with('\n'));
        prop_assert_eq!(line.matches('\n').count(), 1);
        let back: TrainingExample = serde_json::from_str(&line).unwrap();
        prop_assert_eq!(back, ex);
    }
}

fn read_lines(path: &std::path::Path) -> Vec<TrainingExample> {
    fs::read_to_string(path)
        .expect("read lesson file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is a TrainingExample"))
        .collect()
}

#[test]
fn writer_creates_parents_and_appends_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("training/lem/model/gemma3/4b/lesson-0.jsonl");
    let mut w = LessonWriter::open(&path).unwrap();
    assert_eq!(w.warnings(), [LessonWarning::CreatedDirectory(dir.path().join("training/lem/model/gemma3/4b"))]);
    assert_eq!(w.path(), path);
    let a = TrainingExample::user_assistant("p1", "r1 <ok>");
    let b = TrainingExample::user_assistant("p2\nline", "r2");
    w.append(&a).unwrap();
    // Each append is on disk immediately, whole.
    assert_eq!(fs::read_to_string(&path).unwrap(), training_line(&a));
    w.append(&b).unwrap();
    drop(w);

    // Re-opening appends; nothing is truncated (LEM re-runs append duplicates).
    let mut w = LessonWriter::open(&path).unwrap();
    assert!(w.warnings().is_empty(), "{:?}", w.warnings());
    w.append(&a).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text, [training_line(&a), training_line(&b), training_line(&a)].concat());
    assert_eq!(read_lines(&path), [a.clone(), b, a]);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
        assert_eq!(mode & 0o133, 0, "no exec bits, no group/other write: {mode:o}");
    }
}

#[test]
fn torn_last_line_is_reported_and_not_glued_onto() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lesson-0.jsonl");
    let good = training_line(&TrainingExample::user_assistant("a", "b"));
    let torn = r#"{"messages":[{"role":"user","content":"half"#;
    fs::write(&path, format!("{good}{torn}")).unwrap();

    let mut w = LessonWriter::open(&path).unwrap();
    assert_eq!(w.warnings(), [LessonWarning::TornLastLine(path.clone())]);
    // Opening alone does not modify the file.
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{good}{torn}"));

    let c = TrainingExample::user_assistant("c", "d");
    w.append(&c).unwrap();
    w.append(&c).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let line = training_line(&c);
    assert_eq!(text, format!("{good}{torn}\n{line}{line}"));
    let parsed: Vec<bool> = text.lines().map(|l| serde_json::from_str::<TrainingExample>(l).is_ok()).collect();
    assert_eq!(parsed, [true, false, true, true]);
}

#[test]
fn unwritable_location_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    fs::write(&blocker, "x").unwrap();
    let err = LessonWriter::open(&blocker.join("sub/lesson.jsonl")).unwrap_err();
    assert!(err.to_string().contains(&blocker.display().to_string()), "{err}");
}
