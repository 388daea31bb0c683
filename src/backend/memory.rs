//! Memory as the gauge shows it: what the backend measures, plus the system around it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const GIB: u64 = 1024 * 1024 * 1024;
pub const MIB: u64 = 1024 * 1024;

/// Memory limits in bytes; 0 means no limit (LEM's convention for `distill.*_limit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub cache_bytes: u64,
    pub memory_bytes: u64,
}

impl Limits {
    pub fn from_gb(cache_gb: u64, memory_gb: u64) -> Self {
        Self { cache_bytes: cache_gb.saturating_mul(GIB), memory_bytes: memory_gb.saturating_mul(GIB) }
    }
}

/// MLX allocator figures (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MlxMemory {
    pub active: u64,
    pub cache: u64,
    /// The highest active memory since the current (or last) request began.
    pub peak: u64,
    /// The highest buffer-cache reading seen during the current (or last) request, before the
    /// cache is handed back at its end.
    #[serde(default)]
    pub cache_high: u64,
    /// The device's memory as MLX reports it (a GPU's own on CUDA, unified memory on Metal);
    /// 0 where MLX reports none (its CPU backend: system memory is the figure there).
    #[serde(default)]
    pub device_total: u64,
}

impl MlxMemory {
    /// What MLX holds at its highest point: the larger of the live reading and the peak.
    pub fn held(&self) -> u64 {
        (self.active + self.cache).max(self.peak)
    }
}

/// A GPU's memory as llama.cpp's device reports it (bytes), and this process's estimated share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuMemory {
    /// In use on the device, by every process (total − free).
    pub used: u64,
    pub total: u64,
    /// The weights of the offloaded layers.
    pub model: u64,
    /// The KV cache of the offloaded layers.
    pub kv: u64,
}

impl GpuMemory {
    /// From a device's free and total bytes and the share of the model offloaded to it
    /// (`offloaded` of `layers`); `None` when the device reports no memory.
    pub fn from_reading(
        free: u64,
        total: u64,
        model_bytes: u64,
        kv_bytes: u64,
        offloaded: u32,
        layers: u32,
    ) -> Option<Self> {
        if total == 0 {
            return None;
        }
        let share = |bytes: u64| {
            if layers == 0 { 0 } else { bytes.saturating_mul(u64::from(offloaded.min(layers))) / u64::from(layers) }
        };
        Some(Self { used: total.saturating_sub(free), total, model: share(model_bytes), kv: share(kv_bytes) })
    }
}

/// One reading for the memory gauge. Fields a backend cannot measure are 0 / `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySnapshot {
    /// "llama.cpp", "mlx" or "remote".
    pub source: String,
    /// Resident set of this process.
    pub rss: u64,
    /// Weights as loaded.
    pub model_bytes: u64,
    /// KV cache of the current context (estimated from the model's shape where the engine
    /// does not report it).
    pub kv_bytes: u64,
    pub mlx: Option<MlxMemory>,
    /// The GPU llama.cpp offloads to; `None` on the CPU (or where the device reports nothing).
    #[serde(default)]
    pub gpu: Option<GpuMemory>,
    pub system_used: u64,
    pub system_total: u64,
    pub swap_used: u64,
    pub swap_total: u64,
    /// macOS `kern.memorystatus_vm_pressure_level`: 1 normal, 2 warn, 4 critical.
    pub pressure: Option<u8>,
    pub limits: Limits,
}

impl MemorySnapshot {
    /// Memory the limit is held against: the process's RSS, or what MLX holds, or what is in
    /// use on the GPU llama.cpp offloads to, whichever is more (a GPU's memory is not in the
    /// RSS; MLX's peak catches a request that went over between two readings).
    pub fn used(&self) -> u64 {
        let mlx = self.mlx.map_or(0, |m| m.held());
        let gpu = self.gpu.map_or(0, |g| g.used);
        self.rss.max(mlx).max(gpu)
    }

    /// True when the process is over its memory limit (0 = unlimited).
    pub fn over_limit(&self) -> bool {
        self.limits.memory_bytes > 0 && self.used() > self.limits.memory_bytes
    }
}

/// Reads process and system memory. Owned by whoever samples; refreshing costs a few syscalls.
pub struct SystemProbe {
    sys: System,
    pid: Option<Pid>,
}

impl Default for SystemProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemProbe {
    pub fn new() -> Self {
        let sys = System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::everything()));
        Self { sys, pid: sysinfo::get_current_pid().ok() }
    }

    /// Fills the system and process fields of `snap`.
    pub fn fill(&mut self, snap: &mut MemorySnapshot) {
        self.sys.refresh_memory();
        snap.system_used = self.sys.used_memory();
        snap.system_total = self.sys.total_memory();
        snap.swap_used = self.sys.used_swap();
        snap.swap_total = self.sys.total_swap();
        if let Some(pid) = self.pid {
            self.sys.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                false,
                ProcessRefreshKind::nothing().with_memory(),
            );
            if let Some(p) = self.sys.process(pid) {
                snap.rss = p.memory();
            }
        }
        snap.pressure = pressure_level();
    }
}

#[cfg(target_os = "macos")]
fn pressure_level() -> Option<u8> {
    // `sysctl -n` is readable without root; a subprocess keeps this crate free of unsafe FFI.
    let out = std::process::Command::new("sysctl").args(["-n", "kern.memorystatus_vm_pressure_level"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[cfg(not(target_os = "macos"))]
fn pressure_level() -> Option<u8> {
    None
}

/// Reads `backend`'s memory every `every` on a blocking thread (a reading takes a lock and a few
/// syscalls; on macOS it forks `sysctl`) and publishes the latest. The view's gauge and the
/// engine's over-limit check share these readings; nothing else reads memory in a loop.
pub fn spawn_sampler(
    backend: Arc<dyn super::Backend>,
    every: Duration,
    cancel: CancellationToken,
) -> (watch::Receiver<MemorySnapshot>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(MemorySnapshot::default());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {
                    let b = Arc::clone(&backend);
                    let Ok(snap) = tokio::task::spawn_blocking(move || b.memory()).await else { return };
                    if tx.send(snap).is_err() {
                        return;
                    }
                }
            }
        }
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GPU's memory is not in the RSS: MLX's readings (its per-request peak included) count
    /// against the limit, so a request that went over between two readings still pauses.
    #[test]
    fn mlx_readings_count_against_the_limit() {
        let mut snap = MemorySnapshot {
            rss: 300 * MIB,
            limits: Limits { cache_bytes: 0, memory_bytes: GIB },
            mlx: Some(MlxMemory { active: 600 * MIB, cache: 100 * MIB, peak: 700 * MIB, ..MlxMemory::default() }),
            ..MemorySnapshot::default()
        };
        assert!(!snap.over_limit());
        snap.mlx = Some(MlxMemory { active: 600 * MIB, cache: 0, peak: 1100 * MIB, ..MlxMemory::default() });
        assert!(snap.over_limit(), "the request's peak went over");
        assert_eq!(snap.used(), 1100 * MIB);
        snap.mlx = None;
        assert!(!snap.over_limit(), "llama.cpp: the RSS alone");
    }
}

#[cfg(test)]
mod gpu_tests {
    use super::*;

    /// llama.cpp on a GPU: the device's used memory counts against the limit (the weights and
    /// KV cache are there, not in the RSS); without a reading, the RSS alone, as before.
    #[test]
    fn device_memory_counts_against_the_limit() {
        let gpu = GpuMemory::from_reading(60 * GIB, 80 * GIB, 4 * GIB, 2 * GIB, 999, 18).expect("a reading");
        assert_eq!(gpu, GpuMemory { used: 20 * GIB, total: 80 * GIB, model: 4 * GIB, kv: 2 * GIB });
        let mut snap = MemorySnapshot {
            rss: GIB,
            limits: Limits { cache_bytes: 0, memory_bytes: 16 * GIB },
            gpu: Some(gpu),
            ..MemorySnapshot::default()
        };
        assert_eq!(snap.used(), 20 * GIB);
        assert!(snap.over_limit(), "20 GiB in use on the device against a 16 GiB limit");
        snap.limits.memory_bytes = 24 * GIB;
        assert!(!snap.over_limit());
        snap.gpu = None;
        assert_eq!(snap.used(), GIB, "no device reading: the RSS");
    }

    #[test]
    fn partial_offload_puts_that_share_on_the_device_and_no_memory_means_no_reading() {
        let gpu = GpuMemory::from_reading(10 * GIB, 12 * GIB, 900 * MIB, 300 * MIB, 6, 18).expect("a reading");
        assert_eq!((gpu.model, gpu.kv), (300 * MIB, 100 * MIB));
        assert_eq!(GpuMemory::from_reading(0, 0, GIB, GIB, 18, 18), None);
        assert_eq!(GpuMemory::from_reading(GIB, GIB, GIB, GIB, 18, 0).map(|g| g.model), Some(0));
    }

    /// Readings saved before the GPU field existed still parse.
    #[test]
    fn snapshots_without_a_gpu_field_parse() {
        let mut v = serde_json::to_value(MemorySnapshot::default()).expect("serialise");
        v.as_object_mut().expect("object").remove("gpu");
        let back: MemorySnapshot = serde_json::from_value(v).expect("parse");
        assert_eq!(back.gpu, None);
    }
}
