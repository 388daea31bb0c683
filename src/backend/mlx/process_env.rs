//! MLX settings that MLX reads from the environment once, when it first needs them, chosen
//! for lem-tui's own process: so they are set at the top of `main`, before any thread exists.
//!
//! `LEM_TUI_MLX_CUDA_GRAPHS` (`on` or `off`) sets MLX's `MLX_USE_CUDA_GRAPHS` for lem-tui,
//! `LEM_TUI_MLX_OPS_PER_GRAPH` (a count) its `MLX_MAX_OPS_PER_BUFFER`, and
//! `LEM_TUI_MLX_GRAPH_CACHE` (a count) its `MLX_CUDA_GRAPH_CACHE_SIZE` (400 executable graphs,
//! kept across requests: a suspect in decode steps that slow from one request to the next),
//! unless the operator set MLX's own variable (theirs wins). Unset, MLX's defaults stand.
//!
//! On MLX's CUDA backend (0.32) a step's kernels are recorded into CUDA graphs, 100 operations
//! each on an H100 or H200, and every graph is updated or instantiated again and launched; with
//! graphs off each kernel is launched on the stream as it is encoded. On an H200 neither graphs off nor 400 operations
//! per graph beat MLX's defaults beyond the runs' noise (assets/bench/mlx-h200.md, third round),
//! so lem-tui sets nothing unless asked; the knobs are there to measure the next host with one
//! binary (`scripts/mlx-cuda ab`). `lem-tui bench` records the settings in its report, and its
//! mlx-lm peer runs with MLX's defaults, not with what lem-tui chose for itself.

use std::sync::OnceLock;

/// The MLX variables lem-tui set for itself, with their values.
static SET: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();

/// Sets what lem-tui chooses for MLX. Call first in `main`, while the process has one thread.
#[allow(unsafe_code)]
pub fn set_process_env() {
    let mut set = Vec::new();
    let graphs = match std::env::var("LEM_TUI_MLX_CUDA_GRAPHS").as_deref() {
        Ok("on" | "1") => Some("1".to_owned()),
        Ok("off" | "0") => Some("0".to_owned()),
        _ => None,
    };
    let count = |k: &str| std::env::var(k).ok().filter(|v| v.parse::<u32>().is_ok_and(|n| n > 0));
    for (name, value) in [
        ("MLX_USE_CUDA_GRAPHS", graphs),
        ("MLX_MAX_OPS_PER_BUFFER", count("LEM_TUI_MLX_OPS_PER_GRAPH")),
        ("MLX_CUDA_GRAPH_CACHE_SIZE", count("LEM_TUI_MLX_GRAPH_CACHE")),
    ] {
        if let Some(v) = value
            && std::env::var_os(name).is_none()
        {
            // SAFETY: `main` calls this before it starts any thread (the logger's included), so
            // nothing can read the environment concurrently.
            unsafe { std::env::set_var(name, &v) };
            set.push((name, v));
        }
    }
    let _ = SET.set(set);
}

/// What [`set_process_env`] set: a child process that should see MLX's defaults (the benchmark's
/// peer) has these removed.
pub fn set_by_lem_tui() -> &'static [(&'static str, String)] {
    SET.get().map_or(&[], Vec::as_slice)
}

/// MLX's environment settings as this process runs them, for reports: each variable lem-tui
/// knows to matter, its value (or "default") and who set it.
pub fn report() -> Vec<(String, String)> {
    [
        "MLX_USE_CUDA_GRAPHS",
        "MLX_MAX_OPS_PER_BUFFER",
        "MLX_MAX_MB_PER_BUFFER",
        "MLX_CUDA_GRAPH_CACHE_SIZE",
        "LEM_TUI_MLX_JOIN",
        "LEM_TUI_MLX_SHAPING",
        "LEM_TUI_MLX_TOPK",
    ]
    .iter()
    .map(|k| {
        let v = match std::env::var(k) {
            Ok(v) if set_by_lem_tui().iter().any(|(s, _)| s == k) => format!("{v} (set by lem-tui)"),
            Ok(v) => v,
            Err(_) => "default".to_owned(),
        };
        ((*k).to_owned(), v)
    })
    .collect()
}
