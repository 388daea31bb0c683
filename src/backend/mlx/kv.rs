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
/// allocator sees few, stable buffer sizes. Sliding-window layers keep the last `window - 1`
/// positions between calls (bounded), so a decode step sees exactly `window`.
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    /// Positions seen so far (the RoPE offset of the next token).
    pub offset: i32,
    window: Option<i32>,
}

/// mlx-lm's `KVCache.step`.
const KV_STEP: i32 = 256;

impl KvCache {
    pub(super) fn new(window: Option<i32>) -> Self {
        Self { keys: None, values: None, offset: 0, window }
    }

    /// Cached positions the next chunk's queries can see.
    pub(super) fn len(&self) -> i32 {
        match self.window {
            None => self.offset,
            Some(_) => self.keys.as_ref().map_or(0, |k| k.shape()[2]),
        }
    }

    pub(super) fn update(&mut self, k: Array, v: Array) -> R<(Array, Array)> {
        match self.window {
            None => self.update_global(k, v),
            Some(w) => self.update_sliding(k, v, w),
        }
    }

    fn update_global(&mut self, k: Array, v: Array) -> R<(Array, Array)> {
        let prev = self.offset;
        let l = k.shape()[2];
        let end = prev + l;
        let cap = self.keys.as_ref().map_or(0, |a| a.shape()[2]);
        if end > cap {
            let grow = (l + KV_STEP - 1) / KV_STEP * KV_STEP;
            let fresh = |a: &Array| -> R<Array> {
                let sh = a.shape();
                zeros_dtype(&[sh[0], sh[1], grow, sh[3]], a.dtype())
            };
            let (nk, nv) = (fresh(&k)?, fresh(&v)?);
            let extend = |old: Option<&Array>, new: Array| -> R<Array> {
                match old {
                    Some(o) => concatenate(&[o.try_index((.., .., ..prev, ..))?, new], 2),
                    None => Ok(new),
                }
            };
            self.keys = Some(extend(self.keys.as_ref(), nk)?);
            self.values = Some(extend(self.values.as_ref(), nv)?);
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
