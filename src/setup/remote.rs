//! The openai backend's settings: `--endpoint`, `--api-model` and `--concurrency` over ai.yaml's
//! `api` section over the backend's defaults. The API key is read from the environment only when
//! the backend starts, so a dry run never needs it.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::backend::Limits;
use crate::backend::openai::{ApiKey, EndpointOptions, OpenAiOptions};
use crate::cli::DistillArgs;
use crate::config::Resolved;

/// What [`start`](super::start_backend) needs besides the key.
#[derive(Clone, Debug)]
pub struct Remote {
    pub options: OpenAiOptions,
    /// The environment variable holding the key (`api.api_key_env`).
    pub key_env: Option<String>,
}

pub fn plan(args: &DistillArgs, resolved: &Resolved, limits: Limits) -> anyhow::Result<Remote> {
    let api = resolved.ai.api.clone().unwrap_or_default();
    let mut o = OpenAiOptions { limits, ..OpenAiOptions::default() };
    o.endpoints = if args.endpoints.is_empty() {
        api.endpoints.iter().map(|e| EndpointOptions { url: e.url.clone(), concurrency: e.concurrency }).collect()
    } else {
        args.endpoints.iter().map(|u| EndpointOptions { url: u.clone(), concurrency: None }).collect()
    };
    if o.endpoints.is_empty() {
        bail!(
            "the openai backend needs an endpoint: pass --endpoint URL (repeatable) or list api.endpoints in {}",
            resolved.ai_path.display()
        );
    }
    o.model = args.api_model.clone().or(api.model);
    o.concurrency = args.concurrency.or(api.concurrency).unwrap_or(o.concurrency);
    let secs = |v: Option<f64>, d: Duration| v.map_or(d, Duration::from_secs_f64);
    o.timeouts.connect = secs(api.timeouts.connect, o.timeouts.connect);
    o.timeouts.first_byte = secs(api.timeouts.first_byte, o.timeouts.first_byte);
    o.timeouts.idle = secs(api.timeouts.idle, o.timeouts.idle);
    o.max_attempts = api.max_attempts.unwrap_or(o.max_attempts);
    o.stop = api.stop;
    o.batch_n = api.batch_n.unwrap_or(o.batch_n);
    o.give_up = args.endpoint_wait.map(|s| Duration::from_secs(s.into())).unwrap_or(secs(api.endpoint_wait, o.give_up));
    Ok(Remote { options: o, key_env: api.api_key_env })
}

/// The options with the key read from its variable.
pub fn with_key(remote: &Remote) -> anyhow::Result<OpenAiOptions> {
    let mut o = remote.options.clone();
    if let Some(var) = &remote.key_env {
        let key = std::env::var(var)
            .with_context(|| format!("api.api_key_env names ${var}, which is not set (export it before running)"))?;
        if key.trim().is_empty() {
            bail!("${var} (api.api_key_env) is empty");
        }
        o.api_key = Some(ApiKey(key.trim().to_owned()));
    }
    Ok(o)
}
