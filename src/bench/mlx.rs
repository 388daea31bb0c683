//! `lem-tui bench` on an MLX checkpoint, with mlx-lm (same MLX, same checkpoint, same prompts)
//! as the peer: its `stream_generate` for N = 1 and for N candidates one after another (as LEM
//! does), and its `BatchGenerator` with the prompt N times (mlx-lm's own batching).
//!
//! Two sampling modes run: greedy, and LEM's sampling (temperature 0.8, top-k 40, top-p 0.95,
//! repeat penalty 1.1). Every candidate runs to exactly `max_tokens` on both sides. The greedy
//! ids of prompt 0 are compared token by token (lem-tui's through the same code path as the
//! parity tests).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::{Figures, measure};
use crate::backend::memory::MlxMemory;
use crate::backend::{Message, Sampling};
use crate::cli::BenchArgs;
use crate::setup::{self, Prepared};

#[derive(Debug, Serialize)]
pub struct MlxReport {
    pub model: String,
    pub dir: String,
    /// MLX's default device ("NVIDIA H200", "Apple M3 Max", "cpu").
    pub device: String,
    /// The device's memory as MLX reports it (0 on MLX's CPU backend).
    pub device_memory: u64,
    pub max_tokens: u32,
    pub prompts: usize,
    pub modes: Vec<ModeReport>,
    pub greedy_ids: Option<IdsReport>,
    /// MLX's readings after lem-tui's last request.
    pub memory: Option<MlxMemory>,
    /// MLX's settings from the environment for lem-tui (the peer runs with MLX's defaults
    /// where lem-tui chose one for itself).
    pub mlx_env: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct ModeReport {
    /// "greedy" or "sampled".
    pub mode: String,
    pub sampling: Sampling,
    pub lem_tui: Vec<Figures>,
    pub peer: Option<PeerModes>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PeerModes {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub device: String,
    pub stream_generate: Vec<Figures>,
    pub batch_generator: Vec<Figures>,
}

#[derive(Debug, Serialize)]
pub struct IdsReport {
    pub lem_tui: Vec<u32>,
    pub peer: Vec<u32>,
    /// How many leading ids agree.
    pub equal_prefix: usize,
}

#[derive(Deserialize)]
struct PeerOut {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    device: String,
    modes: PeerFigures,
    #[serde(default)]
    greedy_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct PeerFigures {
    stream_generate: Vec<Figures>,
    batch_generator: Vec<Figures>,
}

/// LEM's sampling (`.core/ai/ai.yaml` distill defaults) and greedy, as the two modes measured.
fn modes(args: &BenchArgs, max_tokens: u32, seed: u64) -> Vec<(&'static str, Sampling)> {
    let base = Sampling { max_tokens, seed, ignore_eos: true, ..Sampling::default() };
    let greedy = ("greedy", base);
    let sampled = ("sampled", Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, repeat_penalty: 1.1, ..base });
    [greedy, sampled].into_iter().filter(|(m, _)| args.modes.iter().any(|a| a == m)).collect()
}

pub fn run(args: &BenchArgs, prepared: &Prepared) -> anyhow::Result<MlxReport> {
    let mut say = |s: &str| eprintln!("{s}");
    let dir = setup::mlx_dir(prepared)?;
    let backend = setup::start_backend(prepared, &mut say)?;
    let prompts: Vec<String> = prepared.probes.iter().take(args.prompts.max(1)).map(|p| p.prompt.clone()).collect();
    let max_tokens = if args.distill.max_tokens > 0 { args.distill.max_tokens } else { 128 };
    let seed = args.distill.seed.unwrap_or(42);
    let modes = modes(args, max_tokens, seed);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;

    // MLX compiles its GPU kernels on first use (about a minute on CUDA), for each batch shape
    // and sampling path: warm every one of them before anything is timed.
    eprintln!("warm-up…");
    for (_, s) in &modes {
        for &n in &args.n {
            let warm = Sampling { max_tokens: 8, ..*s };
            runtime.block_on(measure(&backend, &prompts[..1], n, warm, 1))?;
        }
    }
    // One request at a time in an interleaved order (see [`schedule`]), each cell's figures
    // merged afterwards: a machine that slows down or speeds up during the run then weighs on
    // every mode and N alike instead of on whichever was measured last.
    let mut cells: Vec<Vec<Vec<Figures>>> = vec![vec![Vec::new(); args.n.len()]; modes.len()];
    for (p, m, k) in schedule(prompts.len(), modes.len(), args.n.len()) {
        let ((mode, s), n) = (&modes[m], args.n[k]);
        eprintln!("lem-tui {mode}: N={n}, prompt {}", p + 1);
        cells[m][k].push(runtime.block_on(measure(&backend, &prompts[p..=p], n, *s, 1))?);
    }
    let mut reports: Vec<ModeReport> = modes
        .iter()
        .zip(cells)
        .map(|((mode, s), per_n)| ModeReport {
            mode: (*mode).to_owned(),
            sampling: *s,
            lem_tui: per_n.iter().map(|runs| merge(runs, s.max_tokens)).collect(),
            peer: None,
        })
        .collect();
    let memory = backend.memory().mlx;
    drop(backend);

    let device = crate::backend::mlx::alloc::device();
    let lem_ids = if args.ids > 0 {
        let msgs = [Message::user(prompts[0].clone())];
        let (_, ids) = crate::backend::mlx::greedy_ids(&dir, &msgs, args.ids).map_err(anyhow::Error::msg)?;
        Some(ids)
    } else {
        None
    };
    let mut peer_ids = Vec::new();
    if args.peer != "none" {
        for r in &mut reports {
            eprintln!("peer: mlx-lm {}, N={:?}", r.mode, args.n);
            let out = run_peer(args, &dir, &prompts, r.sampling, r.mode == "greedy")?;
            if r.mode == "greedy" {
                peer_ids = out.greedy_ids;
            }
            r.peer = Some(PeerModes {
                name: if out.name.is_empty() { "mlx-lm".into() } else { out.name },
                version: out.version,
                device: out.device,
                stream_generate: out.modes.stream_generate,
                batch_generator: out.modes.batch_generator,
            });
        }
    }
    let greedy_ids = lem_ids.map(|lem| {
        let equal_prefix = lem.iter().zip(&peer_ids).take_while(|(a, b)| a == b).count();
        IdsReport { lem_tui: lem, peer: peer_ids, equal_prefix }
    });
    Ok(MlxReport {
        model: args.distill.model.clone(),
        dir: dir.display().to_string(),
        device: if device.name.is_empty() { prepared.device().to_owned() } else { device.name.clone() },
        device_memory: device.memory,
        max_tokens,
        prompts: prompts.len(),
        modes: reports,
        greedy_ids,
        memory,
        mlx_env: crate::backend::mlx::process_env::report().into_iter().collect(),
    })
}

/// The order lem-tui's requests run in: (prompt, mode, N) indices. Prompt by prompt, every
/// mode and N once per prompt, their order reversed on every other prompt, so each cell sees
/// the same mix of early and late slots (the H200's step times drift by tens of percent from
/// one request to the next; measured mode after mode, the drift read as a difference between
/// modes).
fn schedule(prompts: usize, modes: usize, ns: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::with_capacity(prompts * modes * ns);
    for p in 0..prompts {
        let mut round: Vec<(usize, usize, usize)> = (0..modes).flat_map(|m| (0..ns).map(move |k| (p, m, k))).collect();
        if p % 2 == 1 {
            round.reverse();
        }
        out.extend(round);
    }
    out
}

/// One cell's figures from its requests' (one prompt each): means over the requests, as
/// [`measure`] takes them over several prompts.
#[allow(clippy::cast_precision_loss)]
fn merge(runs: &[Figures], max_tokens: u32) -> Figures {
    let count = runs.len().max(1) as f64;
    let mean = |f: fn(&Figures) -> f64| runs.iter().map(f).sum::<f64>() / count;
    let n = runs.first().map_or(1, |f| f.n);
    let wall = mean(|f| f.wall_per_probe_s);
    Figures {
        n,
        wall_per_probe_s: wall,
        aggregate_tok_s: if wall > 0.0 { f64::from(n) * f64::from(max_tokens) / wall } else { 0.0 },
        decode_tok_s: mean(|f| f.decode_tok_s),
        ttft_ms: mean(|f| f.ttft_ms),
        prefill_tok_s: mean(|f| f.prefill_tok_s),
        prompt_tokens: runs.iter().flat_map(|f| f.prompt_tokens.iter().copied()).collect(),
    }
}

fn peer_script(args: &BenchArgs) -> PathBuf {
    args.peer_script.clone().unwrap_or_else(|| args.distill.root.join("scripts/peer_mlx_lm.py"))
}

fn run_peer(args: &BenchArgs, dir: &Path, prompts: &[String], s: Sampling, greedy: bool) -> anyhow::Result<PeerOut> {
    let script = peer_script(args);
    let job = serde_json::json!({
        "model": dir, "prompts": prompts, "ns": args.n, "max_tokens": s.max_tokens, "seed": s.seed,
        "greedy": greedy,
        "sampling": {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p,
                     "repeat_penalty": s.repeat_penalty},
        "ignore_eos": true, "ids_tokens": if greedy { args.ids } else { 0 },
    });
    let mut peer = Command::new(&args.peer);
    for (k, _) in crate::backend::mlx::process_env::set_by_lem_tui() {
        peer.env_remove(k);
    }
    let mut child = peer
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the peer: {} {}", args.peer, script.display()))?;
    child.stdin.take().context("peer stdin")?.write_all(job.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("the peer failed ({}); is mlx-lm installed? `python3 -m pip install mlx-lm`", out.status);
    }
    serde_json::from_slice(&out.stdout).context("parsing the peer's JSON")
}

/// The side-by-side table, one block per sampling mode.
pub fn table(r: &MlxReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model {} ({}), MLX on {}{}, {} prompts × {} tokens",
        r.model,
        r.dir,
        r.device,
        if r.device_memory > 0 { format!(" ({})", crate::ui::bytes(r.device_memory)) } else { String::new() },
        r.prompts,
        r.max_tokens
    );
    for m in &r.modes {
        let _ = writeln!(s, "\n{} ({})", m.mode, sampling_label(&m.sampling));
        let _ =
            writeln!(s, "{:<32} {:>10} {:>14} {:>14} {:>8}", "", "lem-tui", "mlx-lm stream", "mlx-lm batch", "ratio");
        let peer = m.peer.as_ref();
        let find = |v: Option<&Vec<Figures>>, n: u32| v.and_then(|v| v.iter().find(|f| f.n == n)).cloned();
        let row = |s: &mut String, label: &str, a: f64, b: Option<f64>, c: Option<f64>| {
            let f = |v: Option<f64>| v.filter(|v| *v > 0.0).map_or("-".to_owned(), |v| format!("{v:.1}"));
            // The ratio is against mlx-lm's best way of doing the same work.
            let best = match (b.filter(|v| *v > 0.0), c.filter(|v| *v > 0.0)) {
                (Some(x), Some(y)) if label.contains("wall") || label.contains("ms") => Some(x.min(y)),
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            };
            let ratio = best.map_or("-".to_owned(), |p| format!("{:.2}×", a / p));
            let _ = writeln!(s, "{label:<32} {a:>10.1} {:>14} {:>14} {ratio:>8}", f(b), f(c));
        };
        if let Some(one) = m.lem_tui.iter().find(|f| f.n == 1) {
            let p = find(peer.map(|p| &p.stream_generate), 1);
            row(&mut s, "prefill tok/s", one.prefill_tok_s, p.as_ref().map(|p| p.prefill_tok_s), None);
            row(&mut s, "time to first token, ms", one.ttft_ms, p.as_ref().map(|p| p.ttft_ms), None);
            row(&mut s, "single-stream decode tok/s", one.decode_tok_s, p.as_ref().map(|p| p.decode_tok_s), None);
        }
        for f in &m.lem_tui {
            let sg = find(peer.map(|p| &p.stream_generate), f.n);
            let bg = find(peer.map(|p| &p.batch_generator), f.n).filter(|_| f.n > 1);
            row(
                &mut s,
                &format!("best-of-{} wall per probe, s", f.n),
                f.wall_per_probe_s,
                sg.as_ref().map(|p| p.wall_per_probe_s),
                bg.as_ref().map(|p| p.wall_per_probe_s),
            );
            row(
                &mut s,
                &format!("best-of-{} aggregate tok/s", f.n),
                f.aggregate_tok_s,
                sg.as_ref().map(|p| p.aggregate_tok_s),
                bg.as_ref().map(|p| p.aggregate_tok_s),
            );
        }
        if let (Some(one), Some(top)) =
            (m.lem_tui.iter().find(|f| f.n == 1), m.lem_tui.iter().max_by_key(|f| f.n).filter(|f| f.n > 1))
        {
            let _ = writeln!(
                s,
                "lem-tui best-of-{} aggregate / N=1 aggregate: {:.2}×",
                top.n,
                top.aggregate_tok_s / one.aggregate_tok_s
            );
        }
    }
    if let (Some(g), Some(sm)) =
        (r.modes.iter().find(|m| m.mode == "greedy"), r.modes.iter().find(|m| m.mode == "sampled"))
    {
        if let (Some(a), Some(b)) = (g.lem_tui.iter().max_by_key(|f| f.n), sm.lem_tui.iter().max_by_key(|f| f.n)) {
            let _ = writeln!(
                s,
                "\nlem-tui sampled / greedy aggregate at N={}: {:.2}×",
                a.n,
                b.aggregate_tok_s / a.aggregate_tok_s.max(1e-9)
            );
        }
    }
    if let Some(ids) = &r.greedy_ids {
        let _ = writeln!(
            s,
            "greedy ids, prompt 0: {} of {} equal mlx-lm's{}",
            ids.equal_prefix,
            ids.lem_tui.len(),
            if ids.peer.is_empty() { " (no peer ids)" } else { "" }
        );
    }
    if let Some(m) = &r.memory {
        let _ = writeln!(
            s,
            "MLX memory after the last request: active {}, peak {}, cache high {}",
            crate::ui::bytes(m.active),
            crate::ui::bytes(m.peak),
            crate::ui::bytes(m.cache_high)
        );
    }
    s
}

fn sampling_label(s: &Sampling) -> String {
    if s.temperature <= 0.0 {
        return "argmax".into();
    }
    format!("temperature {}, top-k {}, top-p {}, repeat penalty {}", s.temperature, s.top_k, s.top_p, s.repeat_penalty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_runs_once_per_prompt_in_alternating_order() {
        let order = schedule(3, 2, 2);
        assert_eq!(order.len(), 12);
        assert_eq!(&order[..4], &[(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)]);
        assert_eq!(&order[4..8], &[(1, 1, 1), (1, 1, 0), (1, 0, 1), (1, 0, 0)]);
        for m in 0..2 {
            for k in 0..2 {
                let prompts: Vec<usize> = order.iter().filter(|o| o.1 == m && o.2 == k).map(|o| o.0).collect();
                assert_eq!(prompts, [0, 1, 2]);
            }
        }
    }

    #[test]
    fn merged_cell_is_the_mean_over_its_requests() {
        let one = |wall: f64, decode: f64, tokens: u32| Figures {
            n: 8,
            wall_per_probe_s: wall,
            aggregate_tok_s: 0.0,
            decode_tok_s: decode,
            ttft_ms: 10.0,
            prefill_tok_s: 100.0,
            prompt_tokens: vec![tokens],
        };
        let f = merge(&[one(1.0, 100.0, 51), one(3.0, 50.0, 46)], 128);
        assert_eq!(f.n, 8);
        assert!((f.wall_per_probe_s - 2.0).abs() < 1e-12);
        assert!((f.aggregate_tok_s - 512.0).abs() < 1e-9);
        assert!((f.decode_tok_s - 75.0).abs() < 1e-12);
        assert_eq!(f.prompt_tokens, [51, 46]);
    }
}
