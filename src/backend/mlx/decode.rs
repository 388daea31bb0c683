//! Answering one request on the worker thread: its candidates planned against the memory
//! limit, then each wave of them prefilled once and decoded as one batch, pipelined as mlx-lm's.
//!
//! Pipelining: step k+1 is built and submitted (`async_eval`) before step k's tokens are read
//! back, so the device never waits for the host to stream text, count tokens or build the next
//! graph. Reading step k can show that a row stopped; its share of step k+1 is then dropped
//! (its cache row leaves the batch before step k+2), so what is streamed is exactly what a
//! step-by-step loop streams. The cost is one discarded step per finished row.

use std::time::{Duration, Instant};

use mlx_rs::ops::indexing::take_axis;
use mlx_rs::{Array, memory, transforms};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::alloc::{self, readings};
use super::chat::Detokenizer;
use super::engine::{GAUGE_EVERY, MlxEngine, choose, forward, prefill, token_array};
use super::model::{Model, R};
use super::sample::RowSampler;
use crate::backend::candidate::{self, Candidate, RequestClock};
use crate::backend::memory::MIB;
use crate::backend::worker::WorkerShared;
use crate::backend::{FinishReason, GenRequest, JobEvent};

/// Where a request's decode steps spend their time, for the log: building and submitting the
/// next step's graph, waiting for the device to finish the current one, and the host's work on
/// its tokens (streaming, stops, rows leaving the batch). With the decode pipelined, a host that
/// is the bottleneck shows as `build` + `host` and almost no `wait`; time `async_eval` itself
/// spends waiting on the device also shows in `build`.
#[derive(Default)]
struct StepSplit {
    build: Duration,
    wait: Duration,
    host: Duration,
    /// Each step's whole time, for the spread within a request (a step slowing down as the
    /// answer grows reads differently from a request that is slow throughout).
    each: Vec<f32>,
}

impl StepSplit {
    /// (median, 90th percentile, mean of the first 32, mean of the last 32) in ms.
    fn spread(&self) -> (f32, f32, f32, f32) {
        if self.each.is_empty() {
            return (0.0, 0.0, 0.0, 0.0);
        }
        let mut sorted = self.each.clone();
        sorted.sort_by(f32::total_cmp);
        let at = |q: f32| sorted[((sorted.len() - 1) as f32 * q).round() as usize];
        let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len().max(1) as f32;
        let k = self.each.len().min(32);
        (at(0.5), at(0.9), mean(&self.each[..k]), mean(&self.each[self.each.len() - k..]))
    }
}

/// A candidate in the batch: its bookkeeping and its detokenizer.
struct Row {
    cand: Candidate,
    detok: Detokenizer,
}

/// Candidates still owed an answer, and why they failed.
pub(super) struct Failure(pub(super) Vec<u32>, pub(super) String);

fn fail(owed: &[u32], why: String) -> Failure {
    Failure(owed.to_vec(), why)
}

impl MlxEngine {
    pub(super) fn run(
        &mut self,
        req: &GenRequest,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
        shared: &WorkerShared,
        cache_high: &mut u64,
    ) -> Result<(), Failure> {
        let started = Instant::now();
        let n = req.n.max(1);
        let all: Vec<u32> = (0..n).collect();
        let prompt = self.prompt(&req.messages).map_err(|e| fail(&all, e))?;
        if prompt.is_empty() {
            return Err(fail(&all, "the prompt encodes to no tokens".into()));
        }
        let prompt_len = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        let ctx = u32::try_from(self.model.cfg.max_position_embeddings).unwrap_or(u32::MAX);
        if prompt_len.saturating_add(8) > ctx {
            return Err(fail(&all, format!("prompt is {prompt_len} tokens; the model's context is {ctx}")));
        }
        // lem-tui's own hold on `memory_limit` (MLX's is not enforced): as many candidates at
        // a time as fit next to what MLX already holds.
        let limit = shared.limits().memory_bytes;
        let positions = u64::from(prompt_len) + u64::from(req.sampling.max_tokens);
        let held = readings(0).active;
        let plan = alloc::kv_plan(&self.model.cfg, n, positions, self.model.activation_bytes(), held, limit);
        shared.set_kv_bytes(plan.need.min(plan.per_row * u64::from(plan.width.max(1))));
        if plan.width == 0 {
            return Err(fail(
                &all,
                format!(
                    "over the memory limit: one candidate needs {} MiB of KV cache on top of {} MiB held; the limit \
                     is {} MiB (raise distill.memory_limit / --mem-limit, or lower max_tokens)",
                    plan.per_row / MIB,
                    held / MIB,
                    limit / MIB
                ),
            ));
        }
        if plan.width < n {
            tracing::warn!(
                n,
                width = plan.width,
                need_mib = plan.need / MIB,
                held_mib = held / MIB,
                limit_mib = limit / MIB,
                "mlx: the batch does not fit under the memory limit; candidates run {} at a time",
                plan.width
            );
        }
        for wave in all.chunks(plan.width as usize) {
            if cancel.is_cancelled() {
                let at = wave.first().copied().unwrap_or(0) as usize;
                candidate::cancelled(events, &all[at..], prompt_len, started);
                return Ok(());
            }
            self.wave(req, &prompt, wave, started, events, cancel, shared, cache_high)?;
        }
        Ok(())
    }

    /// Prefills the prompt once and decodes the candidates `wave` as one batch.
    #[allow(clippy::too_many_arguments)]
    fn wave(
        &mut self,
        req: &GenRequest,
        prompt: &[u32],
        wave: &[u32],
        started: Instant,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
        shared: &WorkerShared,
        cache_high: &mut u64,
    ) -> Result<(), Failure> {
        let Self { model, chat, clear_cache_every, alloc } = self;
        let model = &*model;
        let prompt_len = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        let rows_n = wave.len() as i32;
        let mut caches = model.new_cache();
        match prefill(model, prompt, &mut caches, cancel) {
            Ok(true) => {}
            Ok(false) => {
                candidate::cancelled(events, wave, prompt_len, started);
                return Ok(());
            }
            Err(e) => return Err(fail(wave, format!("prefill: {e}"))),
        }
        let mut sampler = RowSampler::new(&req.sampling, wave);
        // The last prompt token, once; its logits serve every candidate's first pick.
        let mut first = || -> R<Array> {
            let logits = forward(model, &token_array(&[&prompt[prompt.len() - 1..]]), &mut caches)?;
            if rows_n > 1 {
                take_axis(&logits, Array::from_slice(&vec![0i32; wave.len()], &[rows_n]), 0)
            } else {
                Ok(logits)
            }
        };
        let mut cur = first()
            .and_then(|logits| choose(&mut sampler, &logits))
            .map_err(|e| fail(wave, format!("prefill: {e}")))?;
        cur.eval().map_err(|e| fail(wave, format!("prefill: {e}")))?;
        let prefill_time = started.elapsed();
        let clock = RequestClock {
            started,
            prompt_tokens: prompt_len,
            prefill_tok_s: crate::backend::Metrics::rate(prompt_len, prefill_time),
        };
        let _ = events.blocking_send(JobEvent::Prefilled { prompt_tokens: prompt_len, elapsed: prefill_time });
        if rows_n > 1 {
            Model::repeat_rows(&mut caches, rows_n).map_err(|e| fail(wave, format!("kv: {e}")))?;
        }
        let mut rows: Vec<Row> =
            wave.iter().map(|&c| Row { cand: Candidate::new(c), detok: Detokenizer::default() }).collect();
        shared.set_mlx(readings(*cache_high));
        let max_tokens = req.sampling.max_tokens;
        let mut gauge_at = Instant::now();
        let mut steps = 0_u32;
        let mut split = StepSplit::default();
        loop {
            if cancel.is_cancelled() {
                for r in &mut rows {
                    let tail = r.detok.finish(chat).unwrap_or_default();
                    r.cand.done(&tail, FinishReason::Cancelled, &clock, events);
                }
                return Ok(());
            }
            let owed: Vec<u32> = rows.iter().map(|r| r.cand.candidate).collect();
            // Submit step k+1 before reading step k, unless step k is every row's last.
            let last_step = rows.iter().all(|r| r.cand.generated + 1 >= max_tokens);
            let t_build = Instant::now();
            let next = if last_step {
                None
            } else {
                let tokens = cur.reshape(&[-1, 1]).map_err(|e| fail(&owed, format!("decode: {e}")))?;
                let ids = forward(model, &tokens, &mut caches)
                    .and_then(|logits| choose(&mut sampler, &logits))
                    .map_err(|e| fail(&owed, format!("decode: {e}")))?;
                transforms::async_eval([&ids]).map_err(|e| fail(&owed, format!("decode: {e}")))?;
                Some(ids)
            };
            let t_wait = Instant::now();
            cur.eval().map_err(|e| fail(&owed, format!("decode: {e}")))?;
            let ids = cur.as_slice::<u32>().to_vec();
            let t_host = Instant::now();
            split.build += t_wait - t_build;
            split.wait += t_host - t_wait;
            let mut keep = Vec::with_capacity(rows.len());
            for (i, (r, &id)) in rows.iter_mut().zip(&ids).enumerate() {
                let stop = chat.is_stop(id) && !req.sampling.ignore_eos;
                if !stop {
                    let piece = r.detok.push(chat, id).unwrap_or_default();
                    r.cand.token(piece, events, cancel);
                }
                match r.cand.finish_reason(stop, max_tokens) {
                    Some(finish) => {
                        let tail = r.detok.finish(chat).unwrap_or_default();
                        r.cand.done(&tail, finish, &clock, events);
                    }
                    None => keep.push(i),
                }
            }
            let Some(mut next) = next.filter(|_| !keep.is_empty()) else {
                split.host += t_host.elapsed();
                let per_step = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(steps.max(1));
                let (p50, p90, first, last) = split.spread();
                // MLX's own figures as the request ends: beside the step split, what the next
                // request inherits.
                let mem = readings(*cache_high);
                tracing::info!(
                    n = wave.len(),
                    prompt_tokens = prompt_len,
                    steps,
                    wall_ms = started.elapsed().as_millis() as u64,
                    step_build_ms = per_step(split.build),
                    step_wait_ms = per_step(split.wait),
                    step_host_ms = per_step(split.host),
                    step_p50_ms = p50,
                    step_p90_ms = p90,
                    step_first32_ms = first,
                    step_last32_ms = last,
                    active_mib = mem.active / MIB,
                    cache_mib = mem.cache / MIB,
                    peak_mib = mem.peak / MIB,
                    "mlx generation"
                );
                return Ok(());
            };
            if keep.len() < rows.len() {
                // Rows that stopped leave the batch: their part of the step already submitted
                // is dropped with them.
                let owed: Vec<u32> = keep.iter().map(|&i| rows[i].cand.candidate).collect();
                let idx: Vec<i32> = keep.iter().map(|&i| i as i32).collect();
                let idx_arr = Array::from_slice(&idx, &[idx.len() as i32]);
                let kv = |e| fail(&owed, format!("kv: {e}"));
                Model::select_rows(&mut caches, &idx).map_err(kv)?;
                next = take_axis(&next, &idx_arr, 0).map_err(kv)?;
                sampler.keep(&keep, &idx_arr).map_err(kv)?;
                let mut k = 0;
                rows.retain(|_| {
                    let stay = keep.contains(&k);
                    k += 1;
                    stay
                });
            }
            cur = next;
            steps += 1;
            split.host += t_host.elapsed();
            split.each.push(t_build.elapsed().as_secs_f32() * 1000.0);
            let every = *clear_cache_every;
            if every > 0 && steps.is_multiple_of(every) {
                *cache_high = (*cache_high).max(readings(0).cache);
                let _ = memory::clear_cache();
            }
            if gauge_at.elapsed() >= GAUGE_EVERY {
                gauge_at = Instant::now();
                let now = readings(*cache_high);
                *cache_high = now.cache_high;
                shared.set_mlx(now);
                shared.set_kv_bytes(caches.iter().map(|c| c.nbytes() as u64).sum());
                // Limits the operator changed while this request runs apply now.
                alloc.follow(shared);
            }
        }
    }
}
