//! Projections that read the same input, joined into one product: an attention's q, k and v,
//! and an MLP's gate and up. Their weights are stacked by output row once, at load, and each
//! step splits the one result back into its parts.
//!
//! Why: on a GPU every product is a launch of its own, and on MLX's CUDA backend (0.32) a dense
//! product of more than one row (every decode step of a batch) is a cuBLASLt call that builds its
//! descriptors and asks cuBLASLt's heuristic for an algorithm anew each time, then is captured
//! into the step's CUDA graph. Gemma 3 1B makes 183 such products a step; joined, 105. The
//! weights read are the same bytes, so where the GPU rather than the host bounds a step nothing
//! is lost.
//!
//! Measured on an H200 (assets/bench/mlx-h200.md, third round): best-of-8 greedy on Gemma 3 1B
//! bf16 at 1,180 tok/s joined against 653 separate (1,183 / 712 in a second run); on 4B 4-bit,
//! whose products are MLX's quantized kernels rather than cuBLASLt, no difference (645 / 657).
//!
//! Joining changes no number: every output row of a product is its own dot product over the
//! same input, summed the same way whichever rows sit beside it (the one-row kernels and the
//! quantized ones; tests/mlx_backend.rs checks the result bit for bit on the CPU backend, and the
//! greedy ids still equal mlx-lm's on the GPU). `LEM_TUI_MLX_JOIN`: `all` (the default), `mlp`
//! (gate and up only), `none` (mlx-lm's separate products, for a before/after on one binary).

use std::sync::OnceLock;

use mlx_rs::Array;
use mlx_rs::ops::concatenate;
use mlx_rs::transforms;

use super::layers::{Linear, R};

/// Which projections are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joining {
    pub qkv: bool,
    pub gate_up: bool,
}

impl Joining {
    /// `none`, `mlp`, `all`; anything else is the default (`all`).
    pub fn named(name: &str) -> Self {
        match name {
            "none" => Self { qkv: false, gate_up: false },
            "mlp" => Self { qkv: false, gate_up: true },
            _ => Self { qkv: true, gate_up: true },
        }
    }
}

/// `LEM_TUI_MLX_JOIN`, read once per process.
pub fn get() -> Joining {
    static JOINING: OnceLock<Joining> = OnceLock::new();
    *JOINING.get_or_init(|| {
        let j = Joining::named(std::env::var("LEM_TUI_MLX_JOIN").as_deref().unwrap_or(""));
        tracing::info!(qkv = j.qkv, gate_up = j.gate_up, "mlx projection joining");
        j
    })
}

/// Projections of one input, run separately or as one product.
pub enum Projections {
    Separate(Vec<Linear>),
    /// The parts' weights stacked; `at` are the offsets where the output splits.
    Joined {
        lin: Linear,
        at: Vec<i32>,
    },
}

impl Projections {
    /// Joins `parts` when `join` asks and they can be (the same kind, quantized alike, biased
    /// alike); otherwise keeps them apart.
    pub fn new(parts: Vec<Linear>, join: bool) -> R<Self> {
        if !join || parts.len() < 2 {
            return Ok(Self::Separate(parts));
        }
        match stack(&parts)? {
            Some(lin) => {
                let mut at = Vec::with_capacity(parts.len() - 1);
                let mut end = 0;
                for p in &parts[..parts.len() - 1] {
                    end += out_rows(p);
                    at.push(end);
                }
                // Evaluated now, so each layer's separate weights are freed as it loads rather
                // than all of them sitting beside their stacked copies until the model is built.
                let mut arrays = Vec::new();
                lin.arrays(&mut arrays);
                transforms::eval(arrays)?;
                Ok(Self::Joined { lin, at })
            }
            None => Ok(Self::Separate(parts)),
        }
    }

    /// Each part's output, in order.
    pub fn forward(&self, x: &Array) -> R<Vec<Array>> {
        match self {
            Self::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
            Self::Joined { lin, at } => lin.forward(x)?.split_at_indices(at, -1),
        }
    }

    pub fn arrays<'a>(&'a self, out: &mut Vec<&'a Array>) {
        match self {
            Self::Separate(parts) => parts.iter().for_each(|p| p.arrays(out)),
            Self::Joined { lin, .. } => lin.arrays(out),
        }
    }
}

fn out_rows(p: &Linear) -> i32 {
    match p {
        Linear::Dense { w, .. } | Linear::Quant { w, .. } => w.shape()[0],
    }
}

/// The parts' weights (and scales, biases) stacked by output row, if they are alike.
fn stack(parts: &[Linear]) -> R<Option<Linear>> {
    let cat = |xs: Vec<&Array>| concatenate(&xs, 0);
    // Every part has the optional array, or none has it.
    let all_or_none = |xs: Vec<Option<&Array>>| -> R<Option<Option<Array>>> {
        if xs.iter().all(Option::is_none) {
            Ok(Some(None))
        } else if xs.iter().all(Option::is_some) {
            Ok(Some(Some(cat(xs.into_iter().flatten().collect())?)))
        } else {
            Ok(None)
        }
    };
    match &parts[0] {
        Linear::Dense { w: w0, .. } => {
            let mut ws = Vec::new();
            let mut bs = Vec::new();
            for p in parts {
                match p {
                    Linear::Dense { w, b } if w.dtype() == w0.dtype() && w.shape()[1] == w0.shape()[1] => {
                        ws.push(w);
                        bs.push(b.as_ref());
                    }
                    _ => return Ok(None),
                }
            }
            let Some(b) = all_or_none(bs)? else { return Ok(None) };
            Ok(Some(Linear::Dense { w: cat(ws)?, b }))
        }
        Linear::Quant { w: w0, group: g0, bits: n0, .. } => {
            let (mut ws, mut ss, mut qbs, mut bs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for p in parts {
                match p {
                    Linear::Quant { w, scales, biases, b, group, bits }
                        if group == g0 && bits == n0 && w.shape()[1] == w0.shape()[1] =>
                    {
                        ws.push(w);
                        ss.push(scales);
                        qbs.push(biases.as_ref());
                        bs.push(b.as_ref());
                    }
                    _ => return Ok(None),
                }
            }
            let (Some(biases), Some(b)) = (all_or_none(qbs)?, all_or_none(bs)?) else { return Ok(None) };
            Ok(Some(Linear::Quant { w: cat(ws)?, scales: cat(ss)?, biases, b, group: *g0, bits: *n0 }))
        }
    }
}
