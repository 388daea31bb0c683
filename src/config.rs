//! LEM-compatible configuration: the three `.core/ai/` YAML files, LEM's merge and override
//! rules for `lem distill`, output routing, the kernel/signature "sandwich" and the dry-run text.
//!
//! LEM's keys are read tolerantly (unknown keys become [`ConfigWarning`]s, missing keys are Go
//! zero values); lem-tui's additions (`paths.gguf`, `template`, `fetch` in the model file, `api` in ai.yaml) are
//! validated strictly. Nothing here depends on the UI, async code or a backend.

mod api;
pub mod builtin;
mod dry_run;
mod error;
mod load;
mod resolve;
mod schema;
mod validate;

pub use api::{ApiConfig, ApiEndpoint, ApiTimeouts, check_endpoint_url, check_env_name};
pub use dry_run::{dry_run_text, go_fixed};
pub use error::{ConfigError, ConfigWarning, ConfigWarningKind};
pub use load::{
    Loaded, ai_dir, ai_yaml_path, available_models, load_ai_config, load_model, load_model_config, load_probes_config,
    load_yaml, model_yaml_path, probes_yaml_path,
};
pub use resolve::{Flags, Kernel, Resolved, merge, output_path, resolve};
pub use schema::{
    AiConfig, BackendChoice, Baselines, ChatTemplate, DistillConfig, Fetch, GenerateConfig, KNOWN_BACKENDS,
    ModelConfig, ModelPaths, ProbeSetConfig, ProbesConfig, ScorerConfig,
};

/// The user turn LEM (from `8408cc0`) writes to the training file: kernel, blank line, prompt,
/// and blank line + signature when the signature is non-empty. Inference never sees this; it
/// gets the bare prompt. Without a kernel the prompt is returned unchanged.
#[must_use]
pub fn sandwich(kernel: Option<&str>, signature: Option<&str>, prompt: &str) -> String {
    let Some(kernel) = kernel else {
        return prompt.to_owned();
    };
    let mut s = String::with_capacity(kernel.len() + prompt.len() + 4);
    s.push_str(kernel);
    s.push_str("\n\n");
    s.push_str(prompt);
    if let Some(sig) = signature.filter(|s| !s.is_empty()) {
        s.push_str("\n\n");
        s.push_str(sig);
    }
    s
}
