use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why configuration could not be loaded or resolved. Every variant names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "model config {} not found (--model {model}); available: {} (pass one of them, or add the file)",
        path.display(),
        list_or_none(available)
    )]
    ModelNotFound { model: String, path: PathBuf, available: Vec<String> },

    /// YAML syntax or type error, or a lem-tui key with a bad value. `message` is `serde_yaml`'s,
    /// which starts with the key path (`generate.max_tokens: …`) and ends with the location.
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, line: Option<usize>, column: Option<usize>, message: String },

    /// A value that parsed but cannot be used.
    #[error("{}: {field}: {message}", path.display())]
    Invalid { path: PathBuf, field: String, message: String },

    #[error("--{flag} {message}")]
    Flag { flag: &'static str, message: String },

    /// `kernel:` or `signature:` names a file that exists neither relative to the working
    /// directory nor under the project root.
    #[error(
        "{field} file `{value}` (from {}) not found; tried {} (put the file there, or fix `{field}:` in that file)",
        config.display(),
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
    )]
    MissingFile { field: &'static str, value: String, config: PathBuf, tried: Vec<PathBuf> },
}

impl ConfigError {
    pub(crate) fn from_yaml(path: &Path, err: &serde_yaml::Error) -> Self {
        let loc = err.location();
        Self::Parse {
            path: path.to_owned(),
            line: loc.as_ref().map(serde_yaml::Location::line),
            column: loc.as_ref().map(serde_yaml::Location::column),
            message: err.to_string(),
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".to_owned() } else { items.join(", ") }
}

/// Something in a config file that lem-tui loads anyway but the user may want to know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub path: PathBuf,
    /// Dotted key path, e.g. `generate.min_p`.
    pub key: String,
    pub kind: ConfigWarningKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarningKind {
    /// Neither LEM nor lem-tui reads this key (LEM ignores unknown keys too).
    UnknownKey,
    /// `backend:` is none of [`super::KNOWN_BACKENDS`].
    UnrecognisedBackend(String),
    /// The kernel file is empty after trimming, so the training user turn would start with a
    /// blank line.
    EmptyKernel(PathBuf),
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.path.display(), self.key)?;
        match &self.kind {
            ConfigWarningKind::UnknownKey => f.write_str("unknown key, ignored"),
            ConfigWarningKind::UnrecognisedBackend(v) => {
                write!(f, "unrecognised backend `{v}` (known: {})", super::KNOWN_BACKENDS.join(", "))
            }
            ConfigWarningKind::EmptyKernel(p) => {
                write!(f, "kernel file {} is empty", p.display())
            }
        }
    }
}
