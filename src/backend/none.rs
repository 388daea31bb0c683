//! The backend of a review with no model: the stored candidates are all there is. Asking it for
//! more fails each candidate with a reason the operator sees in the candidate table (the engine
//! records it like any failed generation), so the session goes on.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Backend, BackendError, GenRequest, JobEvent, Limits, LimitsReply, MemorySnapshot, ModelInfo, limits_reply,
};

/// What a request to [`NoBackend`] answers.
pub const NO_BACKEND: &str = "no backend: this review was started without a model, so it cannot generate";

#[derive(Debug, Default)]
pub struct NoBackend;

impl Backend for NoBackend {
    fn info(&self) -> ModelInfo {
        ModelInfo { backend: "none".into(), ..ModelInfo::default() }
    }

    fn generate(
        &self,
        req: GenRequest,
        events: mpsc::Sender<JobEvent>,
        _cancel: CancellationToken,
    ) -> Result<(), BackendError> {
        for candidate in 0..req.n {
            // The engine reads these only after this call returns; the channel holds TOKEN_CHANNEL
            // events and n is at most 64, so nothing blocks.
            if events.try_send(JobEvent::Failed { candidate, error: NO_BACKEND.into() }).is_err() {
                break;
            }
        }
        Ok(())
    }

    fn memory(&self) -> MemorySnapshot {
        MemorySnapshot { source: "none".into(), ..MemorySnapshot::default() }
    }

    fn set_limits(&self, _limits: Limits) -> Result<LimitsReply, BackendError> {
        Ok(limits_reply(Ok(())))
    }
}
