//! go-mlx's sampling chain as MLX operations on a step's `[rows, vocab]` logits, so a step hands
//! the host `rows` token ids instead of `rows × vocab` floats (262,144 per row for Gemma 3).
//!
//! It is the CPU sampler ([`crate::backend::sampler`]) moved onto the device: repeat penalty
//! over each row's generated tokens, temperature, then top-k, top-p (on the whole distribution)
//! and min-p cut a prefix of the sorted tokens, and an inverse-CDF draw with a uniform number
//! that the host draws from the candidate's own seeded generator. Given the same logits and the
//! same draw both pick the same token (tests/mlx_backend.rs checks this), so a seeded run
//! repeats and does not depend on where it was sampled. Two differences remain: the device
//! sums in f32 (the CPU in f64), so a draw within ~1e-6 of a boundary may fall the other side,
//! and where equal logits straddle the top-k cut, which of them stays is MLX's sort's choice, not
//! the lowest id (within the kept tokens ties are ordered by id, as on the CPU).
//!
//! Nothing here waits for the device: every result is a lazy array, which is what lets the
//! decode loop submit step k+1 before it reads step k's tokens. Nor does a step make arrays on
//! the host: the chain's constants are made once per request and the uniform draws a block of
//! steps at a time ([`RowSampler`]). On MLX's CUDA backend an array made on the host lives in
//! managed memory that the GPU then reads, an allocation and a transfer per array.

use std::cell::{OnceCell, RefCell};

use mlx_rs::error::Exception;
use mlx_rs::ops::indexing::{IndexOp, argmax_axis, take_along_axis};
use mlx_rs::ops::{self, argpartition_axis, argsort_axis, concatenate, cumsum};
use mlx_rs::transforms::compile::compile;
use mlx_rs::{Array, Dtype};

use super::model::R;
use crate::backend::Sampling;
use crate::backend::sampler::Rng;

/// Rows are cut into pieces this long for the top-k's first pass: the longest row MLX's CUDA
/// sort takes in one block (512 threads × 8), so each piece is one block's work.
const TOP_K_PIECE: i32 = 4096;

/// Uniform draws are uploaded this many steps at a time.
const DRAW_BLOCK: usize = 64;

/// The chain's settings, shared by every row of a request, and its constants as arrays (made
/// once, not every step).
#[derive(Debug)]
pub struct Chain {
    repeat_penalty: f32,
    cut: Cut,
    /// The cut as one compiled MLX function, traced on first use (see [`Compiled`]); `None`
    /// runs it op by op.
    compiled: Option<Compiled>,
}

/// Everything after the repeat penalty: temperature, the top-k / top-p / min-p cut and the
/// draw. Its inputs keep their shapes for a whole request (`[rows, vocab]` and `[rows]`), so it
/// can be compiled; the penalty's history grows every step, so it stays outside.
#[derive(Clone, Debug)]
struct Cut {
    temperature: f32,
    top_k: i32,
    top_p: f32,
    min_p: f32,
    /// Top-k in two passes over pieces of the row (see [`top_k`]) rather than one partition
    /// of the whole row.
    two_pass_top_k: bool,
    c: Consts,
    /// Each top-k piece's first id, `[1, pieces, 1]`, once the vocabulary is known.
    starts: OnceCell<Array>,
}

type CutFn = Box<dyn FnMut(&[Array]) -> Result<Vec<Array>, Exception>>;

/// The cut compiled with `mx.compile`, as mlx-lm compiles its samplers. On a GPU a decode step
/// is bound by the host building and launching its graph, and the cut is some 50 small
/// operations on top of the model's: compiled, MLX replays a recorded graph and fuses its
/// element-wise runs into single kernels. It is traced once per batch width (rows leave as
/// candidates finish); the trace is the eager path's own operations, so both give the same
/// tokens (tests/mlx_backend.rs checks them against each other and the CPU sampler).
struct Compiled(RefCell<CutFn>);

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compiled")
    }
}

#[derive(Clone, Debug)]
struct Consts {
    zero: Array,
    minus_one: Array,
    one_int: Array,
    penalty: Array,
    inv_temperature: Array,
    top_p: Array,
    min_p: Array,
}

/// `LEM_TUI_MLX_TOPK=sort`: the top-k as one partition of the whole row (the before/after).
fn two_pass_default() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("LEM_TUI_MLX_TOPK").as_deref() != Ok("sort"))
}

/// `LEM_TUI_MLX_SAMPLER=eager`: the cut op by op instead of compiled (the before/after).
fn compiled_default() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("LEM_TUI_MLX_SAMPLER").as_deref() != Ok("eager"))
}

/// The `k` largest entries of each row of `l` (`[rows, vocab]`): their ids and values, in no
/// particular order.
///
/// MLX's `argpartition` is a full sort on CUDA, and a 262,144-entry row is a sort of many
/// passes (a block sort, then six rounds of merges over the whole batch). In two passes the
/// work is two one-block sorts: each 4,096-entry piece's own top k, then the top k of those
/// candidates. The global top k is among the pieces' (any entry beaten by k others in its piece
/// is beaten by k others overall), so the set is the same; only equal values at the cut may be
/// chosen differently, as with any sort.
pub fn top_k(l: &Array, k: i32, two_pass: bool) -> R<(Array, Array)> {
    top_k_with(l, k, two_pass, &OnceCell::new())
}

/// [`top_k`] with the pieces' first ids kept in `starts` between calls.
fn top_k_with(l: &Array, k: i32, two_pass: bool, starts: &OnceCell<Array>) -> R<(Array, Array)> {
    let (rows, vocab) = (l.shape()[0], l.shape()[1]);
    let one_pass = |l: &Array| -> R<(Array, Array)> {
        let ids = argpartition_axis(l.negative()?, k - 1, -1)?.index((.., ..k));
        let vals = take_along_axis(l, &ids, -1)?;
        Ok((ids, vals))
    };
    if !two_pass || vocab <= 2 * TOP_K_PIECE || k > TOP_K_PIECE / 8 {
        return one_pass(l);
    }
    let pieces = (vocab + TOP_K_PIECE - 1) / TOP_K_PIECE;
    let pad = pieces * TOP_K_PIECE - vocab;
    let padded = if pad > 0 {
        // -inf never makes a piece's top k while the piece has k real entries (every piece but
        // the last has TOP_K_PIECE; the last has at least one, and its padding loses to any
        // real entry of the other pieces in the second pass).
        let fill = ops::full::<f32>(&[rows, pad], Array::from_f32(f32::NEG_INFINITY))?.as_dtype(l.dtype())?;
        concatenate(&[l, &fill], 1)?
    } else {
        l.clone()
    };
    let local =
        argpartition_axis(padded.negative()?.reshape(&[rows, pieces, TOP_K_PIECE])?, k - 1, -1)?.index((.., .., ..k));
    let starts = starts.get_or_init(|| {
        let s: Vec<u32> = (0..pieces).map(|p| (p * TOP_K_PIECE) as u32).collect();
        Array::from_slice(&s, &[1, pieces, 1])
    });
    let cand = local.add(starts)?.reshape(&[rows, pieces * k])?;
    let cand_vals = take_along_axis(&padded, &cand, -1)?;
    let (at, vals) = one_pass(&cand_vals)?;
    Ok((take_along_axis(&cand, &at, -1)?, vals))
}

impl Chain {
    pub fn new(s: &Sampling) -> Self {
        let cut = Cut {
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            min_p: s.min_p,
            two_pass_top_k: two_pass_default(),
            c: Consts {
                zero: Array::from_f32(0.0),
                minus_one: Array::from_f32(-1.0),
                one_int: Array::from_int(1),
                penalty: Array::from_f32(s.repeat_penalty),
                inv_temperature: Array::from_f32(if s.temperature > 0.0 { 1.0 / s.temperature } else { 1.0 }),
                top_p: Array::from_f32(s.top_p),
                min_p: Array::from_f32(s.min_p),
            },
            starts: OnceCell::new(),
        };
        Self { repeat_penalty: s.repeat_penalty, cut, compiled: None }.with_compiled(compiled_default())
    }

    /// The same chain with the top-k in one pass or two (the tests compare them).
    pub fn with_two_pass_top_k(mut self, on: bool) -> Self {
        self.cut.two_pass_top_k = on;
        let compiled = self.compiled.is_some();
        self.with_compiled(compiled)
    }

    /// The same chain with its cut compiled or run op by op (the tests compare them).
    pub fn with_compiled(mut self, on: bool) -> Self {
        self.compiled = (on && !self.is_greedy()).then(|| {
            let cut = self.cut.clone();
            let f = move |x: &[Array]| -> Result<Vec<Array>, Exception> { Ok(vec![cut.pick(&x[0], &x[1])?]) };
            Compiled(RefCell::new(Box::new(compile(f, false))))
        });
        self
    }

    pub fn is_greedy(&self) -> bool {
        self.cut.temperature <= 0.0
    }

    fn penalises(&self) -> bool {
        self.repeat_penalty > 1.0
    }

    /// go-mlx's repeat penalty on each row's generated tokens (`history`, `[rows, t]` int32):
    /// positive logits divided by the penalty, negative ones multiplied. A token that appears
    /// twice is written twice with the same value, so it is penalised once, as on the CPU.
    fn penalise(&self, logits: Array, history: Option<&Array>) -> R<Array> {
        let Some(h) = history.filter(|_| self.penalises()) else {
            return Ok(logits);
        };
        let (p, zero) = (&self.cut.c.penalty, &self.cut.c.zero);
        let sel = take_along_axis(&logits, h, -1)?;
        let pen = ops::select(&sel.gt(zero)?, sel.divide(p)?, sel.multiply(p)?)?;
        ops::indexing::put_along_axis(&logits, h, &pen, -1)
    }

    /// Each row's next token (`[rows]` uint32) from its logits (`[rows, vocab]`), its history
    /// and its uniform draw (`uniforms`, `[rows]` f32 in [0, 1); unused when greedy).
    pub fn pick(&self, logits: &Array, history: Option<&Array>, uniforms: &Array) -> R<Array> {
        let l = self.penalise(logits.as_dtype(Dtype::Float32)?, history)?;
        if self.is_greedy() {
            return argmax_axis(&l, -1, None);
        }
        match &self.compiled {
            Some(Compiled(f)) => {
                let out = (f.borrow_mut())(&[l, uniforms.clone()])?;
                out.into_iter().next().ok_or_else(|| Exception::custom("compiled sampler returned nothing"))
            }
            None => self.cut.pick(&l, uniforms),
        }
    }
}

impl Cut {
    /// The tokens of penalised f32 logits `l` (`[rows, vocab]`) for draws `uniforms` (`[rows]`).
    fn pick(&self, l: &Array, uniforms: &Array) -> R<Array> {
        let l = l.multiply(&self.c.inv_temperature)?;
        let vocab = l.shape()[1];
        let max = l.max_axis(-1, true)?;
        // The whole distribution's mass: top-p is a share of it even after top-k.
        let total = l.subtract(&max)?.exp()?.sum_axis(-1, true)?;
        let (ids, vals) = if self.top_k > 0 && self.top_k < vocab {
            let (part, vals) = top_k_with(&l, self.top_k, self.two_pass_top_k, &self.starts)?;
            // Equal values in the order the CPU sampler gives them, by token id: ids ascending
            // first, then a stable sort by value (MLX's argsort is stable on the CPU and CUDA).
            let by_id = argsort_axis(&part, -1)?;
            let (part, vals) = (take_along_axis(&part, &by_id, -1)?, take_along_axis(&vals, &by_id, -1)?);
            let order = argsort_axis(vals.negative()?, -1)?;
            (take_along_axis(&part, &order, -1)?, take_along_axis(&vals, &order, -1)?)
        } else {
            let order = argsort_axis(l.negative()?, -1)?;
            let vals = take_along_axis(&l, &order, -1)?;
            (order, vals)
        };
        let probs = vals.subtract(&max)?.exp()?;
        let mut keep = probs.gt(&self.c.minus_one)?;
        if self.top_p > 0.0 && self.top_p < 1.0 {
            // A token stays while the mass before it is within p: the first always does.
            let before = cumsum(&probs, -1, None, false)?;
            keep = keep.logical_and(&before.le(total.multiply(&self.c.top_p)?)?)?;
        }
        if self.min_p > 0.0 && self.min_p < 1.0 {
            let floor = probs.index((.., ..1)).multiply(&self.c.min_p)?;
            keep = keep.logical_and(&probs.ge(&floor)?)?;
        }
        let q = ops::select(&keep, &probs, &self.c.zero)?;
        let mass = q.sum_axis(-1, true)?;
        let x = uniforms.reshape(&[-1, 1])?.multiply(&mass)?;
        // The first kept token whose running mass passes x; the last kept one if rounding
        // leaves x at the very end.
        let passed = cumsum(&q, -1, None, true)?.le(&x)?.as_dtype(Dtype::Int32)?.sum_axis(-1, true)?;
        let last = keep.as_dtype(Dtype::Int32)?.sum_axis(-1, true)?.subtract(&self.c.one_int)?;
        let at = ops::minimum(&passed, &last)?;
        take_along_axis(&ids, &at, -1)?.reshape(&[-1])?.as_dtype(Dtype::Uint32)
    }
}

/// The rows of one request on the device: their chain, histories and generators.
pub struct RowSampler {
    chain: Chain,
    /// Generated tokens so far, `[rows, t]` int32 (only kept when a penalty applies).
    history: Option<Array>,
    rngs: Vec<Rng>,
    /// The current block of uniform draws, `[rows, DRAW_BLOCK]` (column j: each row's next
    /// draw j steps after the block was made), and the column the next step takes.
    draws: Option<Array>,
    col: usize,
}

impl RowSampler {
    /// `candidates` in row order; candidate `i` draws from `seed + i`, as on the CPU.
    pub fn new(s: &Sampling, candidates: &[u32]) -> Self {
        Self {
            chain: Chain::new(s),
            history: None,
            rngs: candidates.iter().map(|&c| Rng::for_candidate(s.seed, c)).collect(),
            draws: None,
            col: DRAW_BLOCK,
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.chain.is_greedy()
    }

    /// Greedy and nothing to penalise: the engine may take mlx-lm's exact greedy path.
    pub fn is_plain_greedy(&self) -> bool {
        self.chain.is_greedy() && (!self.chain.penalises() || self.history.is_none())
    }

    /// This step's tokens for every row (lazy). Takes one draw per row from its generator
    /// (none when greedy), so each candidate's draws are its own whatever the batch.
    pub fn next(&mut self, logits: &Array) -> R<Array> {
        if self.chain.is_greedy() {
            // A greedy pick never reads the draws.
            return self.chain.pick(logits, self.history.as_ref(), &self.chain.cut.c.zero);
        }
        let uniforms = self.uniforms()?;
        self.chain.pick(logits, self.history.as_ref(), &uniforms)
    }

    /// This step's uniform draw for every row (`[rows]` f32), each row's next number from its
    /// own generator: the same numbers, in the same order, as drawing one per step, but made
    /// and uploaded `DRAW_BLOCK` steps at a time.
    pub fn uniforms(&mut self) -> R<Array> {
        let draws = match &self.draws {
            Some(d) if self.col < DRAW_BLOCK => d.clone(),
            _ => {
                let rows = self.rngs.len();
                let mut block = vec![0.0f32; rows * DRAW_BLOCK];
                for (r, rng) in self.rngs.iter_mut().enumerate() {
                    for u in &mut block[r * DRAW_BLOCK..(r + 1) * DRAW_BLOCK] {
                        #[allow(clippy::cast_possible_truncation)]
                        let v = rng.next_f64() as f32;
                        *u = v;
                    }
                }
                let d = Array::from_slice(&block, &[rows as i32, DRAW_BLOCK as i32]);
                self.draws = Some(d.clone());
                self.col = 0;
                d
            }
        };
        // A slice, not an index array: nothing is made on the host.
        let c = self.col as i32;
        let u = draws.index((.., c..c + 1)).reshape(&[-1])?;
        self.col += 1;
        Ok(u)
    }

    /// Records this step's tokens (`[rows]`, lazy) for the repeat penalty.
    pub fn accept(&mut self, ids: &Array) -> R<()> {
        if !self.chain.penalises() {
            return Ok(());
        }
        let col = ids.as_dtype(Dtype::Int32)?.reshape(&[-1, 1])?;
        self.history = Some(match &self.history {
            Some(h) => concatenate(&[h, &col], 1)?,
            None => col,
        });
        Ok(())
    }

    /// Keeps the rows at `keep` (their positions in the current batch), in that order.
    pub fn keep(&mut self, keep: &[usize], idx: &Array) -> R<()> {
        if let Some(h) = &self.history {
            self.history = Some(ops::indexing::take_axis(h, idx, 0)?);
        }
        if let Some(d) = &self.draws {
            self.draws = Some(ops::indexing::take_axis(d, idx, 0)?);
        }
        let rngs = std::mem::take(&mut self.rngs);
        self.rngs = keep.iter().filter_map(|&i| rngs.get(i).cloned()).collect();
        Ok(())
    }
}
