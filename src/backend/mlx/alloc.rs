//! MLX's process-wide allocator: the limits this engine applies, the readings the gauge shows,
//! and the device's memory as MLX reports it.
//!
//! MLX's `memory_limit` is a guideline that neither its CUDA nor its CPU backend enforces (an
//! array larger than the limit is allocated anyway), so lem-tui holds requests to it itself:
//! [`kv_plan`] narrows a batch before it starts, and the gauge's reading (which includes MLX's
//! per-request peak) pauses the queue when a request went over.

use mlx_rs::memory;

use super::config::ModelConfig;
use crate::backend::memory::{MIB, MlxMemory};
use crate::backend::worker::WorkerShared;
use crate::backend::{BackendError, Limits};

pub(super) fn mlx_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// MLX's own limits at start-up: what "0 = no limit" goes back to.
#[derive(Clone, Copy, Debug)]
pub(super) struct Defaults {
    memory: usize,
    cache: usize,
}

/// Read once per process: a later backend must not mistake an earlier one's limits for
/// MLX's defaults.
static DEFAULTS: std::sync::OnceLock<Defaults> = std::sync::OnceLock::new();

impl Defaults {
    pub(super) fn get() -> Result<Self, BackendError> {
        if let Some(d) = DEFAULTS.get() {
            return Ok(*d);
        }
        let d = Self::read()?;
        Ok(*DEFAULTS.get_or_init(|| d))
    }

    fn read() -> Result<Self, BackendError> {
        let memory = memory::memory_limit().map_err(|e| BackendError::Other(mlx_err(e)))?;
        // There is no getter for the cache limit; setting returns the previous one.
        let cache = memory::set_cache_limit(memory).map_err(|e| BackendError::Other(mlx_err(e)))?;
        memory::set_cache_limit(cache).map_err(|e| BackendError::Other(mlx_err(e)))?;
        Ok(Self { memory, cache })
    }

    /// Metal's recommended working set: MLX's default memory limit is 1.5 × it.
    pub(super) fn working_set(self) -> u64 {
        (self.memory as u64) / 3 * 2
    }
}

fn apply_limits(limits: Limits, wired: u64, defaults: Defaults) -> Result<(), String> {
    let pick = |v: u64, d: usize| if v > 0 { usize::try_from(v).unwrap_or(usize::MAX) } else { d };
    memory::set_memory_limit(pick(limits.memory_bytes, defaults.memory)).map_err(mlx_err)?;
    memory::set_cache_limit(pick(limits.cache_bytes, defaults.cache)).map_err(mlx_err)?;
    if wired > 0 {
        // Only Metal on macOS 15+ has wired memory; elsewhere MLX refuses, which is fine.
        if let Err(e) = memory::set_wired_limit(usize::try_from(wired).unwrap_or(usize::MAX)) {
            tracing::warn!("mlx: wired limit not applied: {e}");
        }
    }
    tracing::info!(
        cache_mib = limits.cache_bytes / MIB,
        memory_mib = limits.memory_bytes / MIB,
        wired_mib = wired / MIB,
        "mlx limits applied (0 = MLX default)"
    );
    Ok(())
}

/// MLX's process-wide limits as this engine last applied them.
pub(super) struct Allocator {
    pub defaults: Defaults,
    pub wired: u64,
    pub applied: Limits,
}

impl Allocator {
    pub(super) fn apply(&mut self, limits: Limits) -> Result<(), String> {
        apply_limits(limits, self.wired, self.defaults)?;
        self.applied = limits;
        Ok(())
    }

    /// Applies limits the operator changed: the shared copy moves at once, while the
    /// `SetLimits` command waits behind the request in flight.
    pub(super) fn follow(&mut self, shared: &WorkerShared) {
        let wanted = shared.limits();
        if wanted != self.applied {
            if let Err(e) = self.apply(wanted) {
                tracing::warn!("mlx: limits not applied: {e}");
            }
        }
    }
}

/// The gauge's MLX figures now; `cache_high` is the request's highest cache reading so far.
pub(crate) fn readings(cache_high: u64) -> MlxMemory {
    let get = |r: mlx_rs::error::Result<usize>| r.map_or(0, |v| v as u64);
    let cache = get(memory::cache_memory());
    MlxMemory {
        active: get(memory::active_memory()),
        cache,
        peak: get(memory::peak_memory()),
        cache_high: cache_high.max(cache),
        device_total: device().memory,
    }
}

/// What MLX says about its default device.
#[derive(Clone, Debug, Default)]
pub struct DeviceInfo {
    /// "NVIDIA H200", "Apple M3 Max", "AMD EPYC"… (MLX's `device_name`).
    pub name: String,
    /// The device's memory in bytes (`total_memory` / `memory_size`); 0 on MLX's CPU backend.
    pub memory: u64,
    /// True when MLX's default device is a GPU (Metal or CUDA).
    pub gpu: bool,
}

/// Read once: the device does not change while the process runs.
pub fn device() -> &'static DeviceInfo {
    static INFO: std::sync::OnceLock<DeviceInfo> = std::sync::OnceLock::new();
    INFO.get_or_init(|| ffi::device_info().unwrap_or_default())
}

/// mlx-rs wraps no `device_info`; mlx-c's is a handful of plain calls.
#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{CStr, CString};

    use super::DeviceInfo;

    pub(super) fn device_info() -> Option<DeviceInfo> {
        // SAFETY: every handle is created by mlx-c, used only here on this thread, and freed
        // before returning; the strings mlx-c hands back are copied while `info` is alive.
        unsafe {
            let mut dev = mlx_sys::mlx_device_new();
            if mlx_sys::mlx_get_default_device(&raw mut dev) != 0 {
                mlx_sys::mlx_device_free(dev);
                return None;
            }
            let mut gpu_type = mlx_sys::mlx_device_type__MLX_CPU;
            let _ = mlx_sys::mlx_device_get_type(&raw mut gpu_type, dev);
            let mut info = mlx_sys::mlx_device_info_new();
            let ok = mlx_sys::mlx_device_info_get(&raw mut info, dev) == 0;
            let mut out = DeviceInfo { gpu: gpu_type == mlx_sys::mlx_device_type__MLX_GPU, ..DeviceInfo::default() };
            if ok {
                for key in ["total_memory", "memory_size"] {
                    let k = CString::new(key).ok()?;
                    let mut v: usize = 0;
                    if mlx_sys::mlx_device_info_get_size(&raw mut v, info, k.as_ptr()) == 0 && v > 0 {
                        out.memory = v as u64;
                        break;
                    }
                }
                let k = CString::new("device_name").ok()?;
                let mut s: *const std::ffi::c_char = std::ptr::null();
                if mlx_sys::mlx_device_info_get_string(&raw mut s, info, k.as_ptr()) == 0 && !s.is_null() {
                    out.name = CStr::from_ptr(s).to_string_lossy().into_owned();
                }
            }
            mlx_sys::mlx_device_info_free(info);
            mlx_sys::mlx_device_free(dev);
            Some(out)
        }
    }
}

/// How a request's candidates are run so their KV caches fit under `memory_limit`: `width`
/// candidates at a time (all of them when there is no limit or they fit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvPlan {
    pub width: u32,
    /// Bytes the whole request's rows would need at once (weights aside).
    pub need: u64,
    /// Bytes one row needs.
    pub per_row: u64,
}

/// Bytes of KV cache one row of `positions` tokens takes: every global layer holds them all
/// (in 256-position steps, as the cache grows), a sliding layer at most its window.
pub fn kv_row_bytes(cfg: &ModelConfig, positions: u64, elem_bytes: u64) -> u64 {
    let per_pos = 2 * cfg.kv_heads as u64 * cfg.head_dim as u64 * elem_bytes;
    let grown = positions.next_multiple_of(256);
    (0..cfg.layers)
        .map(|i| {
            let held = match cfg.sliding_window {
                // Sliding layers grow their ring 256 positions at a time up to the window.
                Some((w, _)) if cfg.is_sliding(i) => grown.min(w as u64),
                _ => grown,
            };
            held * per_pos
        })
        .sum()
}

/// Narrows `n` rows to what fits under `limit` next to `held` (what MLX already holds: the
/// weights). Besides its KV cache each row needs its step's logits (float32, a few copies
/// while sampling). Width 0: not even one row fits.
pub fn kv_plan(cfg: &ModelConfig, n: u32, positions: u64, elem_bytes: u64, held: u64, limit: u64) -> KvPlan {
    let per_row = kv_row_bytes(cfg, positions, elem_bytes) + 4 * 4 * cfg.vocab_size as u64;
    let need = per_row * u64::from(n);
    if limit == 0 || held + need <= limit {
        return KvPlan { width: n, need, per_row };
    }
    let room = limit.saturating_sub(held);
    let width = u32::try_from(room / per_row.max(1)).unwrap_or(u32::MAX).min(n);
    KvPlan { width, need, per_row }
}
