use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::error::{ConfigError, ConfigWarning, ConfigWarningKind};
use super::schema::{AiConfig, KNOWN_BACKENDS, ModelConfig, ProbesConfig};

/// A parsed config file with where it came from and what was odd about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    pub config: T,
    pub path: PathBuf,
    pub warnings: Vec<ConfigWarning>,
}

#[must_use]
pub fn ai_dir(root: &Path) -> PathBuf {
    root.join(".core").join("ai")
}

#[must_use]
pub fn ai_yaml_path(root: &Path) -> PathBuf {
    ai_dir(root).join("ai.yaml")
}

/// `model` is LEM's `--model` value, `<family>/<size>`; `.yaml` is appended as LEM does.
#[must_use]
pub fn model_yaml_path(root: &Path, model: &str) -> PathBuf {
    ai_dir(root).join("models").join(format!("{model}.yaml"))
}

#[must_use]
pub fn probes_yaml_path(root: &Path) -> PathBuf {
    ai_dir(root).join("probes.yaml")
}

pub fn load_ai_config(root: &Path) -> Result<Loaded<AiConfig>, ConfigError> {
    let mut loaded: Loaded<AiConfig> = load_yaml(&ai_yaml_path(root))?;
    let backend = loaded.config.backend.trim().to_ascii_lowercase();
    if !KNOWN_BACKENDS.contains(&backend.as_str()) {
        let w = ConfigWarning {
            path: loaded.path.clone(),
            key: "backend".into(),
            kind: ConfigWarningKind::UnrecognisedBackend(loaded.config.backend.clone()),
        };
        tracing::warn!("{w}");
        loaded.warnings.push(w);
    }
    Ok(loaded)
}

pub fn load_model_config(root: &Path, model: &str) -> Result<Loaded<ModelConfig>, ConfigError> {
    let path = model_yaml_path(root, model);
    match load_yaml(&path) {
        Err(ConfigError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Err(ConfigError::ModelNotFound { model: model.to_owned(), path, available: available_models(root) })
        }
        other => other,
    }
}

/// [`load_model_config`] without the path, for callers that only want the values.
pub fn load_model(root: &Path, model: &str) -> Result<(ModelConfig, Vec<ConfigWarning>), ConfigError> {
    load_model_config(root, model).map(|l| (l.config, l.warnings))
}

pub fn load_probes_config(root: &Path) -> Result<Loaded<ProbesConfig>, ConfigError> {
    load_yaml(&probes_yaml_path(root))
}

/// `<family>/<size>` for every `models/*/*.yaml`, sorted, for "did you mean" messages.
#[must_use]
pub fn available_models(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(families) = fs::read_dir(ai_dir(root).join("models")) else {
        return out;
    };
    for family in families.flatten() {
        let Ok(sizes) = fs::read_dir(family.path()) else {
            continue;
        };
        for size in sizes.flatten() {
            let p = size.path();
            let stem = p.file_stem().filter(|_| p.extension().is_some_and(|e| e == "yaml"));
            if let Some(stem) = stem {
                out.push(format!("{}/{}", family.file_name().to_string_lossy(), stem.to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

/// Parses one YAML file into `T`, reporting keys `T` does not know as warnings.
///
/// Unknown keys are found by comparing the raw document with `T` serialised back: every field
/// serialises (an absent `Option` as null), so any key left over is one nobody reads. This keeps
/// the public structs free of catch-all fields.
pub fn load_yaml<T>(path: &Path) -> Result<Loaded<T>, ConfigError>
where
    T: DeserializeOwned + Serialize,
{
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let config: T = serde_yaml::from_str(&text).map_err(|e| ConfigError::from_yaml(path, &e))?;

    let mut keys = Vec::new();
    if let (Ok(mut raw), Ok(known)) = (serde_yaml::from_str::<Value>(&text), serde_yaml::to_value(&config)) {
        // A `<<:` merge is not a key of ours; resolve it the way the typed parse saw it.
        let _ = raw.apply_merge();
        unknown_keys(&raw, &known, "", &mut keys);
    }
    let warnings = keys
        .into_iter()
        .map(|key| {
            let w = ConfigWarning { path: path.to_owned(), key, kind: ConfigWarningKind::UnknownKey };
            tracing::warn!("{w}");
            w
        })
        .collect();
    Ok(Loaded { config, path: path.to_owned(), warnings })
}

/// lem-tui's sections parse with `deny_unknown_fields`, so whatever got through is known; their
/// key aliases (`fetch.file` for `fetch.files`) would otherwise be reported as unknown.
const STRICT_SECTIONS: &[&str] = &["fetch", "api"];

fn unknown_keys(raw: &Value, known: &Value, prefix: &str, out: &mut Vec<String>) {
    let (Value::Mapping(raw), Value::Mapping(known)) = (raw, known) else {
        return;
    };
    if STRICT_SECTIONS.contains(&prefix) {
        return;
    }
    for (key, raw_value) in raw {
        let name = key_name(key);
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        // Compare keys as text: `1:` under a string-keyed map parses as a number in the raw
        // document but serialises back as the string "1".
        match known.iter().find(|(k, _)| key_name(k) == name) {
            Some((_, known_value)) => unknown_keys(raw_value, known_value, &path, out),
            None => out.push(path),
        }
    }
}

fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".to_owned(),
        other => serde_yaml::to_string(other).map(|s| s.trim_end().to_owned()).unwrap_or_default(),
    }
}
