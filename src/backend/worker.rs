//! A blocking engine on its own OS thread.
//!
//! The engine (a llama.cpp model, later an MLX model) is created *on* the thread and never
//! leaves it. Load errors come back through a start-up handshake. Requests are served in order,
//! one at a time, or, for an engine that batches them, together with those queued right behind
//! (several probes in flight); each carries its own bounded event channel and cancellation token.
//! Dropping the [`WorkerBackend`] asks the thread to stop and joins it.

// Only the model backends (llama.cpp, MLX) run an engine here; a build with neither (the
// curation-only `--no-default-features` build) keeps the module for its types alone.
#![cfg_attr(not(any(feature = "llama", mlx)), allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::memory::SystemProbe;
use super::memory::{GpuMemory, MlxMemory};
use super::{Backend, BackendError, GenRequest, JobEvent, Limits, LimitsReply, MemorySnapshot, ModelInfo};

/// One request as the worker hands it to its engine.
pub(crate) struct Job {
    pub req: GenRequest,
    pub events: mpsc::Sender<JobEvent>,
    pub cancel: CancellationToken,
}

/// What a blocking engine does on its thread.
pub(crate) trait Engine {
    fn generate(
        &mut self,
        req: GenRequest,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
        shared: &WorkerShared,
    );
    fn set_limits(&mut self, limits: Limits) -> Result<(), BackendError>;

    /// How many candidates (sequences) this engine decodes together across requests; 0 means
    /// one request at a time. Requests that arrive together (several probes in flight) are
    /// then handed to [`Engine::generate_batch`] up to that many candidates.
    fn batch_sequences(&self) -> u32 {
        0
    }

    /// Answers requests that arrived together; by default one after another, in order.
    fn generate_batch(&mut self, jobs: Vec<Job>, shared: &WorkerShared) {
        for job in jobs {
            self.generate(job.req, &job.events, &job.cancel, shared);
        }
    }

    /// Called once on the thread after loading, before any request (first gauge figures).
    fn started(&mut self, _shared: &WorkerShared) {}
}

enum Command {
    Generate { req: GenRequest, events: mpsc::Sender<JobEvent>, cancel: CancellationToken },
    SetLimits(Limits, tokio::sync::oneshot::Sender<Result<(), BackendError>>),
    Shutdown,
}

/// Reads the GPU an engine offloads to: its free and total bytes (any thread may call it), and
/// how many of the model's layers are there.
pub(crate) struct GpuProbe {
    pub read: Box<dyn Fn() -> Option<(u64, u64)> + Send + Sync>,
    pub offloaded: u32,
    pub layers: u32,
}

/// State both sides read: limits and memory figures for the gauge.
pub(crate) struct WorkerShared {
    source: &'static str,
    limits: Mutex<Limits>,
    model_bytes: AtomicU64,
    kv_bytes: AtomicU64,
    /// MLX allocator figures, as the engine thread last read them.
    mlx: Mutex<Option<MlxMemory>>,
    /// Set once by an engine that offloads to a GPU (llama.cpp).
    gpu: OnceLock<GpuProbe>,
    probe: Mutex<SystemProbe>,
}

impl WorkerShared {
    pub(crate) fn limits(&self) -> Limits {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_kv_bytes(&self, bytes: u64) {
        self.kv_bytes.store(bytes, Ordering::Relaxed);
    }

    /// MLX is read on its own thread only; the engine posts its figures here for the gauge.
    #[cfg_attr(not(mlx), allow(dead_code))]
    pub(crate) fn set_mlx(&self, m: MlxMemory) {
        *self.mlx.lock().unwrap_or_else(PoisonError::into_inner) = Some(m);
    }

    /// The engine's GPU reader; the first one set stays.
    #[cfg_attr(not(feature = "llama"), allow(dead_code))]
    pub(crate) fn set_gpu_probe(&self, probe: GpuProbe) {
        let _ = self.gpu.set(probe);
    }

    /// What the memory limit is held against now ([`MemorySnapshot::used`]): the RSS, or the
    /// GPU's used memory when the engine offloads to one.
    #[cfg_attr(not(feature = "llama"), allow(dead_code))]
    pub(crate) fn used(&self) -> u64 {
        self.snapshot().used()
    }

    fn snapshot(&self) -> MemorySnapshot {
        let mut snap = MemorySnapshot {
            source: self.source.to_owned(),
            model_bytes: self.model_bytes.load(Ordering::Relaxed),
            kv_bytes: self.kv_bytes.load(Ordering::Relaxed),
            limits: self.limits(),
            mlx: *self.mlx.lock().unwrap_or_else(PoisonError::into_inner),
            ..MemorySnapshot::default()
        };
        self.probe.lock().unwrap_or_else(PoisonError::into_inner).fill(&mut snap);
        if let Some(p) = self.gpu.get() {
            snap.gpu = (p.read)().and_then(|(free, total)| {
                GpuMemory::from_reading(free, total, snap.model_bytes, snap.kv_bytes, p.offloaded, p.layers)
            });
        }
        snap
    }
}

/// How long the worker waits for more requests after one arrives, when its engine batches
/// them: a wave of probes sends its requests back to back, microseconds apart, and a request
/// alone pays this once.
const GATHER_WAIT: Duration = Duration::from_millis(3);

/// `first` and the requests queued right behind it, up to `sequences` candidates in all (0:
/// `first` alone). A command that is not a request, or a request that would not fit, ends the
/// gathering and is handed back to run next, so the queue's order holds.
fn gather(first: Job, rx: &std_mpsc::Receiver<Command>, sequences: u32) -> (Vec<Job>, Option<Command>) {
    let mut total = first.req.n.max(1);
    let mut jobs = vec![first];
    if sequences == 0 {
        return (jobs, None);
    }
    while let Ok(cmd) = rx.recv_timeout(GATHER_WAIT) {
        match cmd {
            Command::Generate { req, events, cancel } if total + req.n.max(1) <= sequences => {
                total += req.n.max(1);
                jobs.push(Job { req, events, cancel });
            }
            other => return (jobs, Some(other)),
        }
    }
    (jobs, None)
}

pub struct WorkerBackend {
    info: ModelInfo,
    tx: std_mpsc::Sender<Command>,
    shared: Arc<WorkerShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl WorkerBackend {
    pub(crate) fn spawn<E, F>(source: &'static str, limits: Limits, load: F) -> Result<Self, BackendError>
    where
        E: Engine,
        F: FnOnce() -> Result<(E, ModelInfo), BackendError> + Send + 'static,
    {
        let shared = Arc::new(WorkerShared {
            source,
            limits: Mutex::new(limits),
            model_bytes: AtomicU64::new(0),
            kv_bytes: AtomicU64::new(0),
            mlx: Mutex::new(None),
            gpu: OnceLock::new(),
            probe: Mutex::new(SystemProbe::new()),
        });
        let (tx, rx) = std_mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("{source}-worker"))
            .spawn(move || {
                let mut engine = match load() {
                    Ok((engine, info)) => {
                        thread_shared.model_bytes.store(info.file_bytes, Ordering::Relaxed);
                        let mut engine = engine;
                        engine.started(&thread_shared);
                        let _ = ready_tx.send(Ok(info));
                        engine
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let mut held = None;
                while let Some(cmd) = held.take().or_else(|| rx.recv().ok()) {
                    match cmd {
                        Command::Generate { req, events, cancel } => {
                            let first = Job { req, events, cancel };
                            let (jobs, next) = gather(first, &rx, engine.batch_sequences());
                            held = next;
                            if jobs.len() == 1 {
                                let job = jobs.into_iter().next().expect("one job");
                                engine.generate(job.req, &job.events, &job.cancel, &thread_shared);
                            } else {
                                engine.generate_batch(jobs, &thread_shared);
                            }
                        }
                        Command::SetLimits(limits, reply) => {
                            let answer = engine.set_limits(limits);
                            match &answer {
                                // Only limits the engine took are shown and enforced.
                                Ok(()) => *thread_shared.limits.lock().unwrap_or_else(PoisonError::into_inner) = limits,
                                Err(e) => tracing::warn!("{source}: limits not applied: {e}"),
                            }
                            let _ = reply.send(answer);
                        }
                        Command::Shutdown => break,
                    }
                }
                tracing::debug!(source, "worker stopped");
            })
            .map_err(|e| BackendError::Other(format!("spawn worker thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(info)) => Ok(Self { info, tx, shared, thread: Mutex::new(Some(thread)) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(BackendError::Gone)
            }
        }
    }

    /// Stops the worker after the request in progress (cancel it first to stop sooner).
    pub fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
        let handle = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("backend worker panicked");
            }
        }
    }
}

impl Drop for WorkerBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Backend for WorkerBackend {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn generate(
        &self,
        req: GenRequest,
        events: mpsc::Sender<JobEvent>,
        cancel: CancellationToken,
    ) -> Result<(), BackendError> {
        self.tx.send(Command::Generate { req, events, cancel }).map_err(|_| BackendError::Gone)
    }

    fn memory(&self) -> MemorySnapshot {
        self.shared.snapshot()
    }

    fn set_limits(&self, limits: Limits) -> Result<LimitsReply, BackendError> {
        // The engine thread takes them between requests (a long generation delays the answer);
        // the caller awaits the reply rather than blocking its async task on it.
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send(Command::SetLimits(limits, tx)).map_err(|_| BackendError::Gone)?;
        Ok(rx)
    }
}
