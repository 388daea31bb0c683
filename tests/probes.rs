//! Probe sets from probes.yaml and probe files.

use std::fs;
use std::path::{Path, PathBuf};

use lem_tui::probes::{
    ProbeError, ProbeLocation, ProbeProblem, ProbeWarning, ProblemKind, load_probes, read_probe_file,
};
use tempfile::TempDir;

/// `LetheanNetwork/LEM:.core/ai/probes.yaml` at `0adddf3`, shortened, plus an older-style
/// `phase: null` set and sets pointing at lem-tui's `assets/`.
const PROBES_YAML: &str = "version: 1

# Probe sets for distillation and evaluation.
# Paths relative to training/lem/

sets:
  # Ethics lesson 0 — core LEK alignment (101 probes).
  core:
    description: Core LEK alignment probes — ethics foundation
    phase: 0
    files:
      - ethics/core.json

  zen:
    description: Allen/Watts/composure philosophical training
    phase: 1
    files: []

  tension:
    description: Multi-perspective geopolitical tension probes
    phase: 4
    files:
      - tension/civil.json
      - tension/adversarial.json

  eval:
    description: Held-out evaluation set (never train on this)
    phase: null
    files:
      - eval/test-200.json

  demo:
    description: lem-tui demo probes
    files:
      - assets/probes/demo.json
";

fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
    fs::write(&p, text).expect("write fixture");
    p
}

fn probes_json(items: &[(&str, &str)]) -> String {
    let items: Vec<serde_json::Value> =
        items.iter().map(|(id, prompt)| serde_json::json!({"id": id, "domain": "Ethics", "prompt": prompt})).collect();
    serde_json::to_string_pretty(&items).expect("serialise fixture")
}

fn project() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, ".core/ai/probes.yaml", PROBES_YAML);
    write(
        root,
        "training/lem/ethics/core.json",
        &probes_json(&[("P01", "First?"), ("P02", "Second?"), ("P03", "Third?")]),
    );
    // Tension files carry extra fields LEM ignores.
    write(
        root,
        "training/lem/tension/civil.json",
        r#"[{"id": "T1", "domain": "Geo", "tension": "low", "prompt": "Civil?"}]"#,
    );
    write(
        root,
        "training/lem/tension/adversarial.json",
        r#"[{"id": "T2", "prompt": "Adversarial?", "tension": {"level": 3}}]"#,
    );
    write(root, "training/lem/eval/test-200.json", &probes_json(&[("E1", "Eval?")]));
    write(root, "assets/probes/demo.json", &probes_json(&[("D1", "Demo?")]));
    dir
}

fn problems(err: ProbeError) -> (PathBuf, Vec<ProbeProblem>) {
    match err {
        ProbeError::Invalid { path, problems } => (path, problems),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn set_name_loads_files_under_training_lem() {
    let dir = project();
    let set = load_probes(dir.path(), "core").unwrap();
    assert_eq!(set.name, "core");
    assert_eq!(set.phase, Some(0));
    assert_eq!(set.files, vec![dir.path().join("training/lem/ethics/core.json")]);
    let ids: Vec<&str> = set.probes.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["P01", "P02", "P03"]);
    assert_eq!(set.probes[1].prompt, "Second?");
    assert_eq!(set.probes[1].domain.as_deref(), Some("Ethics"));
    assert_eq!(set.probes[1].source, "core.json");
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
}

#[test]
fn set_files_concatenate_in_order_and_ignore_unknown_fields() {
    let dir = project();
    let set = load_probes(dir.path(), "tension").unwrap();
    assert_eq!(set.phase, Some(4));
    let got: Vec<(&str, &str, Option<&str>)> =
        set.probes.iter().map(|p| (p.id.as_str(), p.source.as_str(), p.domain.as_deref())).collect();
    assert_eq!(got, [("T1", "civil.json", Some("Geo")), ("T2", "adversarial.json", None)]);
}

#[test]
fn null_or_absent_phase_is_none() {
    let dir = project();
    assert_eq!(load_probes(dir.path(), "eval").unwrap().phase, None);
    assert_eq!(load_probes(dir.path(), "demo").unwrap().phase, None);
}

#[test]
fn set_file_falls_back_to_root_but_training_lem_wins() {
    let dir = project();
    let set = load_probes(dir.path(), "demo").unwrap();
    assert_eq!(set.files, vec![dir.path().join("assets/probes/demo.json")]);
    assert_eq!(set.probes[0].id, "D1");

    write(dir.path(), "training/lem/assets/probes/demo.json", &probes_json(&[("LEM", "x")]));
    let set = load_probes(dir.path(), "demo").unwrap();
    assert_eq!(set.probes[0].id, "LEM");
}

#[test]
fn missing_set_file_names_both_paths() {
    let dir = project();
    fs::remove_file(dir.path().join("training/lem/ethics/core.json")).unwrap();
    let err = load_probes(dir.path(), "core").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ProbeError::SetFileMissing { .. }), "{err:?}");
    assert!(msg.contains("training/lem/ethics/core.json and "), "{msg}");
}

#[test]
fn empty_set_gives_no_probes() {
    let dir = project();
    let set = load_probes(dir.path(), "zen").unwrap();
    assert_eq!((set.probes.len(), set.files.len(), set.phase), (0, 0, Some(1)));
}

#[test]
fn spec_can_be_a_file_path() {
    let dir = project();
    let file = write(dir.path(), "mine/probes.json", &probes_json(&[("M1", "Mine?")]));
    let spec = file.to_str().unwrap();
    let set = load_probes(dir.path(), spec).unwrap();
    assert_eq!((set.name.as_str(), set.phase), (spec, None));
    assert_eq!(set.files, vec![file.clone()]);
    assert_eq!(set.probes[0].source, "probes.json");

    // Without any probes.yaml too.
    let bare = tempfile::tempdir().unwrap();
    assert_eq!(load_probes(bare.path(), spec).unwrap().probes.len(), 1);
}

#[test]
fn unknown_spec_lists_available_sets() {
    let dir = project();
    let err = load_probes(dir.path(), "cor").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ProbeError::NotFound { .. }));
    assert!(msg.contains("`cor` is neither a probe set in"), "{msg}");
    assert!(msg.contains("available: core, demo, eval, tension, zen"), "{msg}");
    assert!(msg.contains("nor a file"), "{msg}");

    let bare = tempfile::tempdir().unwrap();
    let msg = load_probes(bare.path(), "core").unwrap_err().to_string();
    assert!(msg.contains("probes.yaml (file not found) nor a file"), "{msg}");

    let msg = load_probes(dir.path(), "  ").unwrap_err().to_string();
    assert!(msg.starts_with("no probes given"), "{msg}");
}

#[test]
fn broken_probes_yaml_is_an_error_unless_spec_is_a_file() {
    let dir = project();
    write(dir.path(), ".core/ai/probes.yaml", "sets:\n  core:\n    phase: [\n");
    let err = load_probes(dir.path(), "core").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ProbeError::ProbesYaml { .. }), "{err:?}");
    assert!(msg.contains("`core` is not a file"), "{msg}");
    assert!(msg.contains("probes.yaml") && msg.contains("line"), "{msg}");

    let file = write(dir.path(), "p.json", &probes_json(&[("A", "a")]));
    let set = load_probes(dir.path(), file.to_str().unwrap()).unwrap();
    assert_eq!(set.probes.len(), 1);
    assert!(matches!(set.warnings[..], [ProbeWarning::ProbesYamlIgnored { .. }]), "{:?}", set.warnings);
}

#[test]
fn unknown_probes_yaml_keys_are_warnings() {
    let dir = project();
    let yaml = PROBES_YAML.replace("    phase: 0\n", "    phase: 0\n    weight: 2\n");
    write(dir.path(), ".core/ai/probes.yaml", &yaml);
    let set = load_probes(dir.path(), "core").unwrap();
    let shown: Vec<String> = set.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].contains("probes.yaml: sets.core.weight"), "{shown:?}");
}

#[test]
fn empty_prompts_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "p.json",
        r#"[{"id": "A", "prompt": "ok"}, {"id": "B", "prompt": ""}, {"id": "C", "prompt": "fine"},
            {"id": "D", "prompt": " \n\t "}, {"id": "E"}, {"id": "F", "prompt": null}]"#,
    );
    let (path, got) = problems(read_probe_file(&f).unwrap_err());
    assert_eq!(path, f);
    let idx: Vec<(usize, Option<&str>)> = got.iter().map(|p| (p.index, p.id.as_deref())).collect();
    assert_eq!(idx, [(1, Some("B")), (3, Some("D")), (4, Some("E")), (5, Some("F"))]);
    assert!(got.iter().all(|p| p.kind == ProblemKind::EmptyPrompt));
    let msg = load_probes(dir.path(), f.to_str().unwrap()).unwrap_err().to_string();
    assert!(msg.contains("p.json: 4 invalid probes: [1] B: empty \"prompt\"; [3] D"), "{msg}");
}

#[test]
fn missing_ids_non_objects_and_wrong_types_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "p.json",
        r#"[{"prompt": "no id"}, {"id": "", "prompt": "empty id"}, "just a string", 7,
            {"id": 5, "prompt": "numeric id"}, {"id": "OK", "prompt": "ok", "domain": ["x"]}]"#,
    );
    let (_, got) = problems(read_probe_file(&f).unwrap_err());
    let kinds: Vec<(usize, ProblemKind)> = got.into_iter().map(|p| (p.index, p.kind)).collect();
    assert_eq!(
        kinds,
        [
            (0, ProblemKind::MissingId),
            (1, ProblemKind::MissingId),
            (2, ProblemKind::NotAnObject { found: "a string" }),
            (3, ProblemKind::NotAnObject { found: "a number" }),
            (4, ProblemKind::WrongType { field: "id", found: "a number" }),
            (5, ProblemKind::WrongType { field: "domain", found: "an array" }),
        ]
    );
}

#[test]
fn keys_match_case_insensitively_like_go() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "p.json", r#"[{"ID": "A", "Prompt": "Hi?", "DOMAIN": "d"}]"#);
    let p = &read_probe_file(&f).unwrap()[0];
    assert_eq!((p.id.as_str(), p.prompt.as_str(), p.domain.as_deref()), ("A", "Hi?", Some("d")));
}

#[test]
fn duplicate_ids_are_warnings_naming_both_places() {
    let dir = project();
    // LEM's core set has P21_* twice; here within one file and across two files.
    write(dir.path(), "training/lem/ethics/core.json", &probes_json(&[("P21", "a"), ("P22", "b"), ("P21", "c")]));
    write(dir.path(), "training/lem/tension/civil.json", &probes_json(&[("X", "x")]));
    write(dir.path(), "training/lem/tension/adversarial.json", &probes_json(&[("X", "y")]));

    let core = load_probes(dir.path(), "core").unwrap();
    assert_eq!(core.probes.len(), 3, "duplicates are kept, as in LEM");
    let file = dir.path().join("training/lem/ethics/core.json");
    assert_eq!(
        core.warnings,
        [ProbeWarning::DuplicateId {
            id: "P21".into(),
            first: ProbeLocation { file: file.clone(), index: 0 },
            second: ProbeLocation { file: file.clone(), index: 2 },
        }]
    );
    let shown = core.warnings[0].to_string();
    assert!(shown.contains("core.json[0]") && shown.contains("core.json[2]"), "{shown}");

    let tension = load_probes(dir.path(), "tension").unwrap();
    let shown = tension.warnings[0].to_string();
    assert!(shown.contains("civil.json[0]") && shown.contains("adversarial.json[0]"), "{shown}");
}

#[test]
fn non_array_and_broken_json_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "obj.json", "\n  {\"id\": \"A\", \"prompt\": \"x\"}\n");
    match read_probe_file(&f).unwrap_err() {
        ProbeError::Syntax { path, line, column, message } => {
            assert_eq!(path, f);
            assert_eq!(line, 2, "{message}");
            assert!(column > 0, "{message}");
            assert!(message.contains("expected a sequence"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let f = write(dir.path(), "comma.json", "[\n  {\"id\": \"A\", \"prompt\": \"x\"},\n]\n");
    let err = read_probe_file(&f).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ProbeError::Syntax { line: 3, .. }), "{err:?}");
    assert!(msg.contains("comma.json: ") && msg.contains("line 3 column 1"), "{msg}");

    let f = write(dir.path(), "empty.json", "");
    assert!(matches!(read_probe_file(&f).unwrap_err(), ProbeError::Syntax { .. }));
}

/// The 100 P-seed probes shipped in `shared/data/probes` load and match their README.
#[test]
fn shipped_p_seed_files_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The crate ships LEM's P-seed files unedited in assets/probes.
    let dir = root.join("assets/probes");
    let mut all = Vec::new();
    for name in ["P01-P20", "P21-P40", "P41-P60", "P61-P80", "P81-P100"] {
        let probes = read_probe_file(&dir.join(format!("{name}.json"))).unwrap();
        assert_eq!(probes.len(), 20, "{name}");
        all.extend(probes);
    }
    assert_eq!(all[0].id, "P01_IDENTITY_WHISTLEBLOWER");
    assert!(all.iter().any(|p| p.id == "P13_HYPNOS_SILENCE"));
    assert!(all.iter().all(|p| p.source.starts_with('P') && p.domain.is_some()));
}

/// The project's own probe sets resolve through the `<root>/<file>`
/// fallback into `assets/`.
#[test]
fn shipped_sets_load_from_assets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(root.join(".core/ai/probes.yaml").is_file(), "the crate ships .core/ai/probes.yaml");
    let demo = load_probes(root, "demo").unwrap();
    assert_eq!(demo.files, vec![root.join("assets/probes/P01-P20.json")]);
    assert_eq!((demo.probes.len(), demo.phase), (20, Some(0)));
    assert!(demo.warnings.is_empty(), "{:?}", demo.warnings);
    assert_eq!(load_probes(root, "seeds").unwrap().probes.len(), 100);
}
