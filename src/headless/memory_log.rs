//! `--memory-log`: one JSON line per decided probe with the backend's memory readings, so a long
//! run's memory can be plotted (scripts/plot_memory.py).
//!
//! Reading the backend's memory (procfs, MLX's counters) and writing the file are blocking, so
//! both happen on a thread of their own: the event loop hands it a probe's number and id and
//! never waits. A write that fails is reported once and the run goes on without the log.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context as _;

use crate::backend::Backend;

/// Lines waiting for the writer; one per probe, so a full queue means the writer is stuck.
const QUEUE: usize = 256;

pub struct MemoryLog {
    tx: Option<SyncSender<(usize, String)>>,
    writer: Option<JoinHandle<()>>,
}

impl MemoryLog {
    /// No log without a path. The file is opened (created, appended to) before this returns, so
    /// a path that cannot be written is an error before the run starts.
    pub async fn open(path: Option<&Path>, backend: Arc<dyn Backend>) -> anyhow::Result<Self> {
        let Some(path) = path.map(Path::to_path_buf) else { return Ok(Self { tx: None, writer: None }) };
        let file = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening the memory log {}", path.display()))
        })
        .await??;
        let (tx, rx) = sync_channel::<(usize, String)>(QUEUE);
        let started = Instant::now();
        let writer = std::thread::Builder::new().name("memory-log".into()).spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            for (seq, probe) in rx {
                let m = backend.memory();
                let line = serde_json::json!({
                    "seq": seq,
                    "probe": probe,
                    "t_s": started.elapsed().as_secs_f64(),
                    "rss": m.rss,
                    "mlx": m.mlx,
                    "kv": m.kv_bytes,
                    "limits": m.limits,
                });
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    tracing::warn!("memory log: write failed; no more lines");
                    return;
                }
            }
        })?;
        Ok(Self { tx: Some(tx), writer: Some(writer) })
    }

    /// The readings after the `seq`-th decided probe, `probe`.
    pub fn record(&mut self, seq: usize, probe: &str) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send((seq, probe.to_owned())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => tracing::warn!(seq, "memory log: the writer is behind; line dropped"),
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }

    /// Every line queued is written before this returns.
    pub async fn close(mut self) {
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
    }
}
