//! The KV cache of one layer, as mlx-lm's `KVCache` (global layers) and a bounded window
//! (sliding layers), with the batch-row operations best-of-N needs.

use mlx_rs::Array;
use mlx_rs::error::Exception;
use mlx_rs::ops::indexing::take_axis;
use mlx_rs::ops::indexing::{TryIndexMutOp, TryIndexOp};
use mlx_rs::ops::{concatenate, zeros_dtype};

use super::model::R;

/// One layer's keys and values.
///
/// Global layers write into buffers grown 256 positions at a time and updated in place (as
/// mlx-lm's `KVCache`), so a long answer costs no per-token copy of the whole cache and the
/// allocator sees few, stable buffer sizes. Sliding-window layers do the same up to the window
/// and then overwrite their oldest position (mlx-lm's `RotatingKVCache`, `keep` 0), so a decode
/// step sees exactly the last `window` positions.
///
/// Why in place: a sliding layer that appended by concatenation made a new, one position
/// larger buffer every step in every sliding layer. MLX's buffer cache cannot hand a freed
/// buffer to a larger request, so on the H200 it held 13 GB after one 128-token best-of-8
/// request on Gemma 3 4B, every step allocating afresh from the device. `LEM_TUI_MLX_SLIDING=concat`
/// keeps that way for a before/after.
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    /// Positions seen so far (the RoPE offset of the next token).
    pub offset: i32,
    window: Option<i32>,
    /// Sliding layers: where the next decode step writes in the buffers (mlx-lm's `_idx`).
    idx: i32,
}

/// `kept` followed by `grow` zero positions shaped and typed as `like` (`[rows, heads, _, dim]`):
/// a cache buffer with room for what comes next.
fn grown(kept: Option<Array>, like: &Array, grow: i32) -> R<Array> {
    let sh = like.shape();
    let fresh = zeros_dtype(&[sh[0], sh[1], grow, sh[3]], like.dtype())?;
    match kept {
        Some(o) => concatenate(&[o, fresh], 2),
        None => Ok(fresh),
    }
}

/// `LEM_TUI_MLX_SLIDING=concat`: sliding layers append by concatenation (the before/after).
fn sliding_concat() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("LEM_TUI_MLX_SLIDING").as_deref() == Ok("concat"))
}

/// mlx-lm's `KVCache.step`.
const KV_STEP: i32 = 256;

impl KvCache {
    pub(super) fn new(window: Option<i32>) -> Self {
        Self { keys: None, values: None, offset: 0, window, idx: 0 }
    }

    /// Cached positions the next chunk's queries can see.
    pub(super) fn len(&self) -> i32 {
        match self.window {
            None => self.offset,
            Some(_) if sliding_concat() => self.keys.as_ref().map_or(0, |k| k.shape()[2]),
            // What a chunk of more than one position is given (`update_chunk`): at most the
            // last `window - 1`.
            Some(w) => self.offset.min(self.stored()).min(w - 1),
        }
    }

    fn stored(&self) -> i32 {
        self.keys.as_ref().map_or(0, |k| k.shape()[2])
    }

    pub(super) fn update(&mut self, k: Array, v: Array) -> R<(Array, Array)> {
        match self.window {
            None => self.update_global(k, v),
            Some(w) if sliding_concat() => self.update_sliding(k, v, w),
            Some(w) if k.shape()[2] == 1 => self.update_ring(k, v, w),
            Some(w) => self.update_chunk(k, v, w),
        }
    }

    fn update_global(&mut self, k: Array, v: Array) -> R<(Array, Array)> {
        let prev = self.offset;
        let l = k.shape()[2];
        let end = prev + l;
        let cap = self.keys.as_ref().map_or(0, |a| a.shape()[2]);
        if end > cap {
            let grow = (l + KV_STEP - 1) / KV_STEP * KV_STEP;
            let upto = |a: &Array| a.try_index((.., .., ..prev, ..));
            let (ok, ov) = (self.keys.as_ref().map(upto).transpose()?, self.values.as_ref().map(upto).transpose()?);
            self.keys = Some(grown(ok, &k, grow)?);
            self.values = Some(grown(ov, &v, grow)?);
        }
        let (Some(keys), Some(values)) = (self.keys.as_mut(), self.values.as_mut()) else {
            return Err(Exception::custom("kv cache buffers missing"));
        };
        keys.try_index_mut((.., .., prev..end, ..), &k)?;
        values.try_index_mut((.., .., prev..end, ..), &v)?;
        self.offset = end;
        Ok((keys.try_index((.., .., ..end, ..))?, values.try_index((.., .., ..end, ..))?))
    }

    fn update_sliding(&mut self, k: Array, v: Array, w: i32) -> R<(Array, Array)> {
        let added = k.shape()[2];
        let (k, v) = match (&self.keys, &self.values) {
            (Some(pk), Some(pv)) => (concatenate(&[pk, &k], 2)?, concatenate(&[pv, &v], 2)?),
            _ => (k, v),
        };
        self.offset += added;
        let keep = |a: &Array| -> R<Array> {
            let n = a.shape()[2];
            if n > w - 1 { a.try_index((.., .., n - (w - 1).., ..)) } else { Ok(a.clone()) }
        };
        self.keys = Some(keep(&k)?);
        self.values = Some(keep(&v)?);
        Ok((k, v))
    }

    /// mlx-lm's `RotatingKVCache._update_concat`: a chunk of several positions (a prefill)
    /// after the cached ones put back in temporal order and cut to the last `window - 1`, so
    /// every query of the chunk has its whole window; all of it is kept until the next step.
    fn update_chunk(&mut self, k: Array, v: Array, w: i32) -> R<(Array, Array)> {
        let added = k.shape()[2];
        let (k, v) = match (self.keys.take(), self.values.take()) {
            (Some(pk), Some(pv)) => {
                let (pk, pv) = (self.temporal(pk)?, self.temporal(pv)?);
                let past = pk.shape()[2];
                let cut = (past - (w - 1)).max(0);
                let tail = |a: &Array| a.try_index((.., .., cut.., ..));
                (concatenate(&[tail(&pk)?, k], 2)?, concatenate(&[tail(&pv)?, v], 2)?)
            }
            _ => (k, v),
        };
        self.offset += added;
        self.idx = k.shape()[2];
        self.keys = Some(k.clone());
        self.values = Some(v.clone());
        Ok((k, v))
    }

    /// mlx-lm's `_temporal_order`: the stored positions oldest first.
    fn temporal(&self, a: Array) -> R<Array> {
        let len = a.shape()[2];
        if self.idx == len {
            Ok(a)
        } else if self.idx < self.offset {
            concatenate(&[a.try_index((.., .., self.idx.., ..))?, a.try_index((.., .., ..self.idx, ..))?], 2)
        } else {
            a.try_index((.., .., ..self.idx, ..))
        }
    }

    /// mlx-lm's `RotatingKVCache._update_in_place` for one position: the buffers grow 256
    /// positions at a time up to the window, then the newest position overwrites the oldest.
    /// Attention does not depend on the order of the keys it is given, only on which.
    fn update_ring(&mut self, k: Array, v: Array, w: i32) -> R<(Array, Array)> {
        let prev = self.offset;
        let stored = self.stored();
        if self.keys.is_none() || (prev >= stored && stored < w) {
            let grow = KV_STEP.min(w - prev).max(1);
            self.keys = Some(grown(self.keys.take(), &k, grow)?);
            self.values = Some(grown(self.values.take(), &v, grow)?);
            self.idx = prev;
        }
        // A prefill can leave more than the window stored: keep its newest `w` (oldest first).
        let over = self.stored() - w;
        if over > 0 {
            let trim = |a: &Array| a.try_index((.., .., over.., ..));
            self.keys = self.keys.as_ref().map(trim).transpose()?;
            self.values = self.values.as_ref().map(trim).transpose()?;
            self.idx = w;
        }
        if self.idx == w {
            self.idx = 0;
        }
        let (Some(keys), Some(values)) = (self.keys.as_mut(), self.values.as_mut()) else {
            return Err(Exception::custom("kv cache buffers missing"));
        };
        let at = self.idx;
        keys.try_index_mut((.., .., at..at + 1, ..), &k)?;
        values.try_index_mut((.., .., at..at + 1, ..), &v)?;
        self.offset += 1;
        self.idx += 1;
        if self.offset < w {
            let o = self.offset;
            Ok((keys.try_index((.., .., ..o, ..))?, values.try_index((.., .., ..o, ..))?))
        } else {
            Ok((keys.clone(), values.clone()))
        }
    }

    /// Keeps only the batch rows in `rows` (finished candidates leave the batch).
    pub(super) fn select_rows(&mut self, rows: &Array) -> R<()> {
        if let Some(k) = &self.keys {
            self.keys = Some(take_axis(k, rows, 0)?);
        }
        if let Some(v) = &self.values {
            self.values = Some(take_axis(v, rows, 0)?);
        }
        Ok(())
    }

    /// Repeats the (single) batch row `n` times: the prompt's cache shared by `n` candidates.
    pub(super) fn repeat_rows(&mut self, n: i32) -> R<()> {
        let rows = Array::from_slice(&vec![0i32; n as usize], &[n]);
        self.select_rows(&rows)
    }

    pub fn arrays(&self) -> impl Iterator<Item = &Array> {
        self.keys.iter().chain(self.values.iter())
    }

    pub fn nbytes(&self) -> usize {
        self.arrays().map(Array::nbytes).sum()
    }
}
