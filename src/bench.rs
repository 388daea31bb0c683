//! `lem-tui bench`: lem-tui's llama.cpp backend against a peer, on the same GGUF, threads,
//! prompts and sampling, in one invocation (these machines are noisy; only side-by-side
//! figures mean anything). An MLX checkpoint (`--backend mlx`) is measured against mlx-lm
//! instead ([`mlx`]).
//!
//! Every candidate runs to exactly `max_tokens` (end-of-generation tokens are suppressed on
//! both sides) so the work is identical. lem-tui decodes a probe's N candidates as one batch;
//! the peer (llama-cpp-python) generates them one after another, as LEM does.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, GenRequest, JobEvent, Message, Sampling};
use crate::cli::BenchArgs;
use crate::setup;

#[cfg(mlx)]
pub mod mlx;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Figures {
    pub n: u32,
    /// Mean wall time to produce all N candidates of one probe.
    pub wall_per_probe_s: f64,
    /// N × max_tokens / wall.
    pub aggregate_tok_s: f64,
    /// Per-candidate decode rate (after the first token), averaged.
    pub decode_tok_s: f64,
    pub ttft_ms: f64,
    pub prefill_tok_s: f64,
    /// Prompt length of each probe, in tokens (what a peer without the GGUF's tokenizer matches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_tokens: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub gguf: String,
    pub threads: u32,
    pub max_tokens: u32,
    pub prompts: usize,
    pub native_build: bool,
    pub device: String,
    /// Probes whose requests went out together (`--probes-in-flight`).
    pub probes_in_flight: usize,
    pub lem_tui: Vec<Figures>,
    pub peer: Option<PeerReport>,
}

#[derive(Debug, Serialize)]
pub struct PeerReport {
    pub name: String,
    pub version: String,
    pub figures: Vec<Figures>,
}

/// What a bench run measured: lem-tui's llama.cpp backend against llama-cpp-python, or its
/// MLX backend against mlx-lm.
pub enum Outcome {
    Llama(Report),
    #[cfg(mlx)]
    Mlx(mlx::MlxReport),
}

impl Outcome {
    pub fn table(&self) -> String {
        match self {
            Self::Llama(r) => table(r),
            #[cfg(mlx)]
            Self::Mlx(r) => mlx::table(r),
        }
    }

    pub fn json(&self) -> serde_json::Result<String> {
        match self {
            Self::Llama(r) => serde_json::to_string_pretty(r),
            #[cfg(mlx)]
            Self::Mlx(r) => serde_json::to_string_pretty(r),
        }
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<Outcome> {
    // A bench is headless: `--probes-in-flight` (requests sent together) is allowed.
    let distill = crate::cli::DistillArgs { headless: true, ..args.distill.clone() };
    let prepared = setup::prepare(&distill)?;
    #[cfg(mlx)]
    if prepared.backend == setup::BackendKind::Mlx {
        return mlx::run(args, &prepared).map(Outcome::Mlx);
    }
    run_llama(args, &prepared).map(Outcome::Llama)
}

fn run_llama(args: &BenchArgs, prepared: &setup::Prepared) -> anyhow::Result<Report> {
    let mut say = |s: &str| eprintln!("{s}");
    let gguf = setup::gguf_path(prepared, &mut say)?;
    let backend = setup::start_backend(prepared, &mut say)?;
    let prompts: Vec<String> = prepared.probes.iter().take(args.prompts.max(1)).map(|p| p.prompt.clone()).collect();
    let max_tokens = if args.distill.max_tokens > 0 { args.distill.max_tokens } else { 128 };
    let sampling =
        Sampling { max_tokens, ignore_eos: true, seed: args.distill.seed.unwrap_or(42), ..prepared.distill.sampling };
    let ns = &args.n;
    let in_flight = args.distill.probes_in_flight.max(1) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;

    eprintln!("warm-up…");
    let warm = Sampling { max_tokens: 8, ..sampling };
    runtime.block_on(measure(&backend, &prompts[..1], 1, warm, 1))?;
    let mut lem = Vec::new();
    for &n in ns {
        eprintln!("lem-tui: N={n}, {in_flight} probe(s) in flight");
        lem.push(runtime.block_on(measure(&backend, &prompts, n, sampling, in_flight))?);
    }
    drop(backend);

    let peer = if args.peer == "none" {
        None
    } else {
        eprintln!("peer: llama-cpp-python, N={ns:?}");
        Some(run_peer(args, &gguf, prepared, &prompts, sampling, &lem)?)
    };
    Ok(Report {
        model: args.distill.model.clone(),
        gguf: gguf.display().to_string(),
        threads: prepared.threads,
        max_tokens,
        prompts: prompts.len(),
        native_build: cfg!(target_feature = "avx2"),
        device: prepared.device().to_owned(),
        probes_in_flight: in_flight,
        lem_tui: lem,
        peer,
    })
}

/// What one request's candidates gave: its prompt length, and per candidate the decode rate,
/// time to first token and prefill rate.
#[derive(Default)]
struct Answered {
    prompt_tokens: u32,
    decode: Vec<f64>,
    ttft: Vec<f64>,
    prefill: Vec<f64>,
}

/// Runs the prompts `in_flight` at a time (each group's requests sent together, as
/// `--probes-in-flight` sends them); a probe's wall is its group's wall over the group's size.
async fn measure(
    backend: &Arc<dyn Backend>,
    prompts: &[String],
    n: u32,
    sampling: Sampling,
    in_flight: usize,
) -> anyhow::Result<Figures> {
    let mut walls = Vec::new();
    let mut answered = Vec::new();
    for group in prompts.chunks(in_flight.max(1)) {
        let started = Instant::now();
        let mut readers = Vec::new();
        for prompt in group {
            let req = GenRequest { messages: vec![Message::user(prompt.clone())], sampling, n };
            let (tx, rx) = mpsc::channel(1024);
            backend.generate(req, tx, CancellationToken::new())?;
            // Read every request at once: one left unread would hold the batch up.
            readers.push(tokio::spawn(read_answer(rx, n, sampling.max_tokens)));
        }
        for r in readers {
            answered.push(r.await.context("reading a request's events")??);
        }
        let wall = started.elapsed() / u32::try_from(group.len()).unwrap_or(1);
        walls.extend(std::iter::repeat_n(wall, group.len()));
    }
    let all = |f: fn(&Answered) -> &Vec<f64>| -> f64 {
        let v: Vec<f64> = answered.iter().flat_map(|a| f(a).iter().copied()).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    Ok(Figures {
        prompt_tokens: answered.iter().map(|a| a.prompt_tokens).collect(),
        ..figures(n, sampling.max_tokens, &walls, all(|a| &a.decode), all(|a| &a.ttft), all(|a| &a.prefill))
    })
}

/// Reads one request's events to its end; every candidate must run to `max_tokens`.
async fn read_answer(mut rx: mpsc::Receiver<JobEvent>, n: u32, max_tokens: u32) -> anyhow::Result<Answered> {
    let mut a = Answered::default();
    let mut done = 0;
    while let Some(ev) = rx.recv().await {
        match ev {
            JobEvent::Done { metrics, .. } => {
                a.prompt_tokens = metrics.prompt_tokens;
                if metrics.generated_tokens != max_tokens {
                    bail!("a candidate stopped at {} of {} tokens", metrics.generated_tokens, max_tokens);
                }
                a.decode.push(metrics.decode_tok_s);
                a.ttft.push(metrics.ttft.as_secs_f64());
                a.prefill.push(metrics.prefill_tok_s);
                done += 1;
            }
            JobEvent::Failed { error, .. } | JobEvent::Unavailable { error } => bail!("generation failed: {error}"),
            _ => {}
        }
    }
    if done != n {
        bail!("{done} of {n} candidates finished");
    }
    Ok(a)
}

#[allow(clippy::cast_precision_loss)]
fn figures(n: u32, max_tokens: u32, walls: &[Duration], decode: f64, ttft_s: f64, prefill: f64) -> Figures {
    let wall = walls.iter().map(Duration::as_secs_f64).sum::<f64>() / walls.len().max(1) as f64;
    Figures {
        n,
        wall_per_probe_s: wall,
        aggregate_tok_s: f64::from(n) * f64::from(max_tokens) / wall,
        decode_tok_s: decode,
        ttft_ms: ttft_s * 1000.0,
        prefill_tok_s: prefill,
        prompt_tokens: Vec::new(),
    }
}

#[derive(serde::Deserialize)]
struct PeerOut {
    version: String,
    results: Vec<PeerN>,
}
#[derive(serde::Deserialize)]
struct PeerN {
    n: u32,
    probes: Vec<PeerProbe>,
}
#[derive(serde::Deserialize)]
struct PeerProbe {
    wall: f64,
    candidates: Vec<PeerCand>,
}
#[derive(serde::Deserialize)]
struct PeerCand {
    ttft: f64,
    decode: f64,
}

fn run_peer(
    args: &BenchArgs,
    gguf: &Path,
    prepared: &setup::Prepared,
    prompts: &[String],
    s: Sampling,
    lem: &[Figures],
) -> anyhow::Result<PeerReport> {
    let script = args.distill.root.join("scripts/peer_llama_cpp_python.py");
    let chat_format = match prepared.resolved.model.family.as_str() {
        f if f.starts_with("gemma") => "gemma",
        _ => "chatml",
    };
    let job = serde_json::json!({
        "model": gguf, "threads": prepared.threads, "n_ctx": 4096, "chat_format": chat_format,
        "seed": args.distill.seed.unwrap_or(42), "ns": args.n, "prompts": prompts,
        "sampling": {"max_tokens": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p,
                      "top_k": s.top_k, "repeat_penalty": s.repeat_penalty},
    });
    let mut child = Command::new(&args.peer)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the peer: {} {}", args.peer, script.display()))?;
    child.stdin.take().context("peer stdin")?.write_all(job.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "the peer failed ({}); is llama-cpp-python installed? `python3 -m pip install llama-cpp-python`",
            out.status
        );
    }
    let parsed: PeerOut = serde_json::from_slice(&out.stdout).context("parsing the peer's JSON")?;
    // The peer reports no prompt token count; lem-tui's is the same prompt through the same template.
    let prompt_tokens = lem.first().map_or(0.0, |f| f.prefill_tok_s * f.ttft_ms / 1000.0);
    let figures = parsed
        .results
        .iter()
        .map(|r| {
            let walls: Vec<Duration> = r.probes.iter().map(|p| Duration::from_secs_f64(p.wall)).collect();
            let cands: Vec<&PeerCand> = r.probes.iter().flat_map(|p| &p.candidates).collect();
            #[allow(clippy::cast_precision_loss)]
            let k = cands.len().max(1) as f64;
            let decode = cands.iter().map(|c| f64::from(s.max_tokens - 1) / c.decode.max(1e-9)).sum::<f64>() / k;
            // Only the first candidate of a probe pays the prefill (llama-cpp-python reuses the
            // prompt's KV for the following ones), so TTFT and prefill come from first candidates.
            let firsts: Vec<&PeerCand> = r.probes.iter().filter_map(|p| p.candidates.first()).collect();
            #[allow(clippy::cast_precision_loss)]
            let ttft = firsts.iter().map(|c| c.ttft).sum::<f64>() / firsts.len().max(1) as f64;
            figures(r.n, s.max_tokens, &walls, decode, ttft, prompt_tokens / ttft.max(1e-9))
        })
        .collect();
    Ok(PeerReport { name: "llama-cpp-python".into(), version: parsed.version, figures })
}

/// The side-by-side table.
pub fn table(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model {} ({}), {} threads, {} prompts × {} tokens, {} build, {}",
        r.model,
        r.gguf,
        r.threads,
        r.prompts,
        r.max_tokens,
        if r.native_build { "native" } else { "portable" },
        r.device
    );
    let peer_name = r.peer.as_ref().map_or("peer", |p| p.name.as_str());
    let _ = writeln!(s, "{:<34} {:>12} {:>18} {:>8}", "", "lem-tui", peer_name, "ratio");
    let row = |s: &mut String, label: &str, a: f64, b: Option<f64>| {
        let (bs, ratio) = match b {
            Some(b) if b > 0.0 => (format!("{b:.1}"), format!("{:.2}×", a / b)),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(s, "{label:<34} {a:>12.1} {bs:>18} {ratio:>8}");
    };
    let peer_of = |n: u32| r.peer.as_ref().and_then(|p| p.figures.iter().find(|f| f.n == n));
    if let Some(one) = r.lem_tui.iter().find(|f| f.n == 1) {
        let p = peer_of(1);
        row(&mut s, "prefill tok/s", one.prefill_tok_s, p.map(|p| p.prefill_tok_s));
        row(&mut s, "time to first token, ms", one.ttft_ms, p.map(|p| p.ttft_ms));
        row(&mut s, "single-stream decode tok/s", one.decode_tok_s, p.map(|p| p.decode_tok_s));
    }
    for f in &r.lem_tui {
        let p = peer_of(f.n);
        row(&mut s, &format!("best-of-{} wall per probe, s", f.n), f.wall_per_probe_s, p.map(|p| p.wall_per_probe_s));
        row(&mut s, &format!("best-of-{} aggregate tok/s", f.n), f.aggregate_tok_s, p.map(|p| p.aggregate_tok_s));
    }
    if let (Some(one), Some(eight)) =
        (r.lem_tui.iter().find(|f| f.n == 1), r.lem_tui.iter().max_by_key(|f| f.n).filter(|f| f.n > 1))
    {
        let _ = writeln!(
            s,
            "lem-tui best-of-{} aggregate / single-stream aggregate: {:.2}×",
            eight.n,
            eight.aggregate_tok_s / one.aggregate_tok_s
        );
    }
    s
}
