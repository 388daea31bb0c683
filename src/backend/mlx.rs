//! MLX through `mlx-rs`: Apple Silicon (Metal) first, Linux against PyPI's `mlx[cpu]`
//! (scripts/mlx-linux) so the same code is built and run in CI, and the same binary against
//! the CUDA wheel's `libmlx.so` on NVIDIA GPUs (scripts/mlx-cuda).
//!
//! Everything MLX happens on the worker thread ([`super::worker`]): the model, the KV caches,
//! the allocator limits. A request with `n` candidates prefills the prompt once (batch 1, as
//! mlx-lm: all but the last token in chunks, then the last token alone), shares the prompt's
//! cache with `n` batch rows and decodes the live rows together; finished rows leave the batch.
//! Tokens are picked on the device ([`sample`]), the decode is pipelined ([`decode`]) and
//! quantized projections are shaped for the kernels MLX picks on a GPU ([`shaping`]).
//!
//! Memory: `cache_limit` / `memory_limit` (and an optional wired limit) are applied before the
//! weights load and again whenever the operator changes them, even mid-generation. Since MLX
//! does not enforce its memory limit, lem-tui narrows a batch that would not fit under it
//! ([`alloc::kv_plan`]). Active / cache / peak bytes and the device's memory go to the gauge a
//! few times a second; the peak is reset per request, the buffer cache is cleared between
//! requests and every `clear_cache_every` decode steps.

pub mod config;

#[cfg(mlx)]
pub mod alloc;
#[cfg(mlx)]
mod chat;
#[cfg(mlx)]
mod decode;
#[cfg(mlx)]
mod engine;
#[cfg(mlx)]
mod gemma3;
#[cfg(mlx)]
pub mod joined;
#[cfg(mlx)]
mod kv;
#[cfg(mlx)]
mod layers;
#[cfg(mlx)]
mod llama;
#[cfg(mlx)]
mod model;
#[cfg(mlx)]
pub mod process_env;
#[cfg(mlx)]
mod qwen;
#[cfg(mlx)]
pub mod sample;
#[cfg(mlx)]
pub mod shaping;
#[cfg(mlx)]
mod weights;

#[cfg(mlx)]
pub use engine::{MlxOptions, greedy_ids, spawn, step_logits};
