//! How a quantized projection is shaped for the kernel MLX picks on the device.
//!
//! MLX's CUDA backend (0.32, `QuantizedMatmul::eval_gpu`) chooses its kernel from the shape of
//! the call, and two of its choices cost a decoding batch most of its speed on an sm90 GPU:
//!
//! - `x` of `[rows, 1, hidden]` (every decode step of a batch) is a batch of `rows` one-row
//!   products, each reading the whole weight matrix again through the tiled GEMM (`qmm_sm90`,
//!   128-row tiles, the scales and biases transposed on every call). Folded to `[1, rows,
//!   hidden]`, it is one product that reads the weights once. mlx-lm's `BatchGenerator` passes
//!   `[rows, 1, hidden]` and pays for it.
//! - The bandwidth-bound one-row kernel (`qmv`) is only taken when the output has at most
//!   16,384 columns, so a 262,144-token output projection at one row goes through the GEMM
//!   as well. Split into 16,384-row slices of the (row-contiguous) weights, each slice is a
//!   `qmv` and the pieces are joined.
//!
//! Folding changes no number: the same kernel computes each row's dot products the same way
//! wherever the row sits. Splitting swaps the GEMM for `qmv`, another kernel with its own order
//! of summation, so those logits can differ from mlx-lm's in the last bits (and a near-tie's
//! argmax with them).
//!
//! Measured on an H200 (assets/bench/mlx-h200.md): folding doubles best-of-8 on 12B 4-bit
//! (318 against 165 tok/s); splitting, on by default in that run, was 10-14 % slower at one row
//! on 12B 4-bit than the unsplit head in the same lease (one A/B; identical runs there differ by
//! up to 8 %), and no faster anywhere it was measured. The GPU work it saves hides under the
//! host's time there (decode on that machine is bound by building and submitting each step's
//! graph), while its 17 extra operations do not, so it is off by default and kept for a host
//! fast enough to be bound by the GPU. `LEM_TUI_MLX_SHAPING`: `fold` (the default), `all` (fold
//! and split), `mlx-lm` (neither: mlx-lm's own shapes, for a before/after on one binary).

use std::sync::OnceLock;

use mlx_rs::Array;
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::ops::{concatenate, quantized_matmul, reshape};

use super::layers::R;

/// The widest output MLX's CUDA `qmv` takes (`N <= 16384` in `QuantizedMatmul::eval_gpu`).
const QMV_MAX_COLUMNS: i32 = 16_384;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shaping {
    /// `[rows, 1, k]` goes to the kernel as `[1, rows, k]`.
    pub fold_rows: bool,
    /// One-row products wider than `qmv` takes are split into slices it does take.
    pub split_wide: bool,
}

impl Shaping {
    /// `mlx-lm`, `fold`, `all`; anything else is the default (`fold`).
    pub fn named(name: &str) -> Self {
        match name {
            "mlx-lm" => Self { fold_rows: false, split_wide: false },
            "all" => Self { fold_rows: true, split_wide: true },
            _ => Self { fold_rows: true, split_wide: false },
        }
    }
}

/// `LEM_TUI_MLX_SHAPING`, read once per process.
pub fn get() -> Shaping {
    static SHAPING: OnceLock<Shaping> = OnceLock::new();
    *SHAPING.get_or_init(|| {
        let s = Shaping::named(std::env::var("LEM_TUI_MLX_SHAPING").as_deref().unwrap_or(""));
        tracing::info!(fold_rows = s.fold_rows, split_wide = s.split_wide, "mlx projection shaping");
        s
    })
}

/// `x @ w.T` for an affine-quantized `w` (`[n, k·bits/32]`, transposed as `nn.QuantizedLinear`
/// stores it), shaped per [`get`].
pub fn qmatmul(x: &Array, w: &Array, scales: &Array, biases: Option<&Array>, group: i32, bits: i32) -> R<Array> {
    qmatmul_with(get(), x, w, scales, biases, group, bits)
}

/// [`qmatmul`] with a given shaping (the tests compare them).
pub fn qmatmul_with(
    shaping: Shaping,
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    group: i32,
    bits: i32,
) -> R<Array> {
    let shape = x.shape();
    let nd = shape.len();
    let k = shape[nd - 1];
    let rows: i32 = shape[..nd - 1].iter().product();
    let n = w.shape()[0];
    let folded = shaping.fold_rows && nd >= 3 && rows > shape[nd - 2];
    let x2 = if folded { reshape(x, &[1, rows, k])? } else { x.clone() };
    let y = if shaping.split_wide && rows == 1 && n > QMV_MAX_COLUMNS && k <= QMV_MAX_COLUMNS {
        let mut parts = Vec::with_capacity((n / QMV_MAX_COLUMNS + 1) as usize);
        for start in (0..n).step_by(QMV_MAX_COLUMNS as usize) {
            let end = (start + QMV_MAX_COLUMNS).min(n);
            let part = |a: &Array| a.try_index((start..end, ..));
            let b = biases.map(part).transpose()?;
            parts.push(quantized_matmul(&x2, part(w)?, part(scales)?, b.as_ref(), true, group, bits)?);
        }
        concatenate(&parts, -1)?
    } else {
        quantized_matmul(&x2, w, scales, biases, true, group, bits)?
    };
    if folded {
        let mut out: Vec<i32> = shape[..nd - 1].to_vec();
        out.push(n);
        reshape(&y, &out)
    } else {
        Ok(y)
    }
}
