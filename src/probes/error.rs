use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::config::{ConfigError, ConfigWarning};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "no probes given: --probes takes a set name from {} or a path to a JSON array file",
        probes_yaml.display()
    )]
    NoSpec { probes_yaml: PathBuf },

    /// `available` is `None` when probes.yaml does not exist.
    #[error(
        "`{spec}` is neither a probe set in {} ({}) nor a file; pass --probes a set name or the path of a JSON \
         array of {{id, domain, prompt}}",
        probes_yaml.display(),
        match available {
            None => "file not found".to_owned(),
            Some(v) if v.is_empty() => "it defines no sets".to_owned(),
            Some(v) => format!("available: {}", v.join(", ")),
        }
    )]
    NotFound { spec: String, probes_yaml: PathBuf, available: Option<Vec<String>> },

    /// probes.yaml exists but is broken, and `spec` is not a file either, so it was probably meant
    /// as a set name.
    #[error("`{spec}` is not a file, and the probe sets could not be read: {source}")]
    ProbesYaml {
        spec: String,
        #[source]
        source: ConfigError,
    },

    #[error(
        "probe set `{set}`: file `{file}` not found; tried {} (fix the set's `files` in probes.yaml)",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
    )]
    SetFileMissing { set: String, file: String, tried: Vec<PathBuf> },

    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Not JSON, or not an array. `message` is `serde_json`'s and ends with the location.
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },

    /// Every bad element of the file, not just the first, so one edit fixes them all.
    #[error(
        "{}: {} invalid probe{}: {}",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Invalid { path: PathBuf, problems: Vec<ProbeProblem> },
}

/// One bad element of a probe file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeProblem {
    /// 0-based index in the JSON array.
    pub index: usize,
    /// The element's id, when it has one, to make the message easier to act on.
    pub id: Option<String>,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    NotAnObject { found: &'static str },
    MissingId,
    EmptyPrompt,
    WrongType { field: &'static str, found: &'static str },
}

impl fmt::Display for ProbeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.index)?;
        if let Some(id) = &self.id {
            write!(f, " {id}")?;
        }
        match &self.kind {
            ProblemKind::NotAnObject { found } => write!(f, ": expected an object, found {found}"),
            ProblemKind::MissingId => f.write_str(": missing or empty \"id\""),
            ProblemKind::EmptyPrompt => f.write_str(": empty \"prompt\""),
            ProblemKind::WrongType { field, found } => {
                write!(f, ": \"{field}\" must be a string, found {found}")
            }
        }
    }
}

/// Where a probe came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeLocation {
    pub file: PathBuf,
    pub index: usize,
}

impl fmt::Display for ProbeLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.file.display(), self.index)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeWarning {
    /// LEM keeps both (its own core set has two `P21_*` ids); results keyed by id may collide.
    DuplicateId { id: String, first: ProbeLocation, second: ProbeLocation },
    /// An unknown key in probes.yaml.
    Config(ConfigWarning),
    /// probes.yaml could not be read, but `spec` named a file, so it was not needed (LEM ignores
    /// this silently).
    ProbesYamlIgnored { error: String },
}

impl fmt::Display for ProbeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateId { id, first, second } => {
                write!(f, "duplicate probe id `{id}` at {first} and {second}")
            }
            Self::Config(w) => w.fmt(f),
            Self::ProbesYamlIgnored { error } => write!(f, "probe sets ignored: {error}"),
        }
    }
}
