use std::fmt::Write as _;
use std::path::Path;

use super::resolve::Resolved;
use crate::probes::Probe;

/// How many probes the dry-run lists before `... and N more`.
const LISTED: usize = 10;
/// LEM slices the prompt at this many bytes.
const PROMPT_BYTES: usize = 80;

/// LEM's `--dry-run` block (spec §1.9), byte for byte, including the trailing newline.
///
/// Two deliberate departures: the model line shows `paths.gguf` when `paths.base` is empty (a
/// llama.cpp-only model), and a prompt cut inside a multi-byte character shows U+FFFD where Go
/// would print the raw partial bytes, because a Rust `String` cannot hold them.
#[must_use]
pub fn dry_run_text(resolved: &Resolved, probes: &[Probe], output: &Path, backend_label: &str) -> String {
    let model = &resolved.model;
    let location = match (&model.paths.base, &model.paths.gguf) {
        (base, Some(gguf)) if base.is_empty() => gguf.as_str(),
        (base, _) => base.as_str(),
    };
    let n = probes.len() as u64;
    let runs = u64::from(resolved.runs);
    let g = &resolved.generate;

    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "Model:    {} ({location})", model.name);
    let _ = writeln!(s, "Backend:  {backend_label}");
    let _ = writeln!(s, "Probes:   {n}");
    let _ = writeln!(s, "Runs:     {runs} per probe ({} total generations)", n * runs);
    let _ = writeln!(s, "Gate:     grammar v3 composite >= {}", go_fixed(resolved.min_score, 1));
    let _ = writeln!(
        s,
        "Generate: temp={} max_tokens={} top_p={}",
        go_fixed(g.temperature, 2),
        g.max_tokens,
        go_fixed(g.top_p, 2)
    );
    let _ = writeln!(s, "Memory:   cache={}GB limit={}GB", resolved.cache_limit_gb, resolved.memory_limit_gb);
    let _ = writeln!(s, "Output:   {}", output.display());
    s.push('\n');
    for p in probes.iter().take(LISTED) {
        let _ = writeln!(s, "  {}: {}", p.id, truncate_prompt(&p.prompt));
    }
    if probes.len() > LISTED {
        let _ = writeln!(s, "  ... and {} more", probes.len() - LISTED);
    }
    s
}

fn truncate_prompt(prompt: &str) -> String {
    let bytes = prompt.as_bytes();
    if bytes.len() <= PROMPT_BYTES {
        return prompt.to_owned();
    }
    let mut s = String::from_utf8_lossy(&bytes[..PROMPT_BYTES]).into_owned();
    s.push_str("...");
    s
}

/// Go's `%.Nf`. Rust already rounds ties to even like Go; only the non-finite spellings differ.
#[must_use]
pub fn go_fixed(v: f64, precision: usize) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v:.precision$}")
    }
}
