//! Probe sets and probe files, as `lem distill --probes` reads them (spec §1.4).
//!
//! A spec is first looked up as a set name in `<root>/.core/ai/probes.yaml`, then used as a path
//! to a JSON array of `{id, domain, prompt}` objects. Unlike LEM, elements are validated (an empty
//! prompt or id is an error) and duplicate ids are reported.

mod error;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::{ConfigError, load_probes_config, probes_yaml_path};

pub use error::{ProbeError, ProbeLocation, ProbeProblem, ProbeWarning, ProblemKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub id: String,
    pub domain: Option<String>,
    pub prompt: String,
    /// Base name of the file the probe came from (LEM's `Source`, never serialised).
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSet {
    /// The set name, or the spec as given when it was a file path.
    pub name: String,
    /// The set's phase; `None` for a file or a `phase: null` set (LEM then uses 0).
    pub phase: Option<i64>,
    pub probes: Vec<Probe>,
    /// The files actually read, in order.
    pub files: Vec<PathBuf>,
    pub warnings: Vec<ProbeWarning>,
}

/// Loads `spec` as a set from probes.yaml or, failing that, as a JSON file path (relative to the
/// working directory, as in LEM).
///
/// Set files are read from `<root>/training/lem/<file>` as LEM does, or from `<root>/<file>` when
/// that does not exist, so a set can point into `assets/`. Unlike LEM, a probes.yaml that
/// exists but cannot be parsed is an error unless `spec` is an existing file.
pub fn load_probes(root: &Path, spec: &str) -> Result<ProbeSet, ProbeError> {
    let probes_yaml = probes_yaml_path(root);
    if spec.trim().is_empty() {
        return Err(ProbeError::NoSpec { probes_yaml });
    }
    let spec_is_file = Path::new(spec).is_file();
    match load_probes_config(root) {
        Ok(loaded) => {
            let mut warnings: Vec<ProbeWarning> = loaded.warnings.into_iter().map(ProbeWarning::Config).collect();
            if let Some(set) = loaded.config.sets.get(spec) {
                let mut files = Vec::with_capacity(set.files.len());
                for file in &set.files {
                    files.push(set_file(root, spec, file)?);
                }
                let mut out = load_files(spec, set.phase, files)?;
                warnings.append(&mut out.warnings);
                out.warnings = warnings;
                return Ok(out);
            }
            if spec_is_file {
                let mut out = load_files(spec, None, vec![PathBuf::from(spec)])?;
                warnings.append(&mut out.warnings);
                out.warnings = warnings;
                return Ok(out);
            }
            Err(ProbeError::NotFound {
                spec: spec.to_owned(),
                probes_yaml,
                available: Some(loaded.config.sets.keys().cloned().collect()),
            })
        }
        Err(ConfigError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            if spec_is_file {
                return load_files(spec, None, vec![PathBuf::from(spec)]);
            }
            Err(ProbeError::NotFound { spec: spec.to_owned(), probes_yaml, available: None })
        }
        Err(err) => {
            if !spec_is_file {
                return Err(ProbeError::ProbesYaml { spec: spec.to_owned(), source: err });
            }
            let w = ProbeWarning::ProbesYamlIgnored { error: err.to_string() };
            tracing::warn!("{w}");
            let mut out = load_files(spec, None, vec![PathBuf::from(spec)])?;
            out.warnings.insert(0, w);
            Ok(out)
        }
    }
}

fn set_file(root: &Path, set: &str, file: &str) -> Result<PathBuf, ProbeError> {
    let tried = vec![root.join("training").join("lem").join(file), root.join(file)];
    tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| ProbeError::SetFileMissing {
        set: set.to_owned(),
        file: file.to_owned(),
        tried,
    })
}

fn load_files(name: &str, phase: Option<i64>, files: Vec<PathBuf>) -> Result<ProbeSet, ProbeError> {
    let mut probes = Vec::new();
    let mut warnings = Vec::new();
    let mut seen: HashMap<String, ProbeLocation> = HashMap::new();
    for file in &files {
        for (index, probe) in read_probe_file(file)?.into_iter().enumerate() {
            let here = ProbeLocation { file: file.clone(), index };
            if let Some(first) = seen.get(&probe.id) {
                let w = ProbeWarning::DuplicateId { id: probe.id.clone(), first: first.clone(), second: here };
                tracing::warn!("{w}");
                warnings.push(w);
            } else {
                seen.insert(probe.id.clone(), here);
            }
            probes.push(probe);
        }
    }
    tracing::info!("loaded {} probes", probes.len());
    Ok(ProbeSet { name: name.to_owned(), phase, probes, files, warnings })
}

/// Reads one JSON array of probes, collecting every invalid element before failing.
pub fn read_probe_file(path: &Path) -> Result<Vec<Probe>, ProbeError> {
    let bytes = fs::read(path).map_err(|source| ProbeError::Read { path: path.to_owned(), source })?;
    let elements: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| ProbeError::Syntax {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let source = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();

    let mut probes = Vec::with_capacity(elements.len());
    let mut problems = Vec::new();
    for (index, element) in elements.iter().enumerate() {
        match parse_probe(element, &source) {
            Ok(p) => probes.push(p),
            Err((id, kinds)) => {
                problems.extend(kinds.into_iter().map(|kind| ProbeProblem { index, id: id.clone(), kind }))
            }
        }
    }
    if problems.is_empty() { Ok(probes) } else { Err(ProbeError::Invalid { path: path.to_owned(), problems }) }
}

type Problems = (Option<String>, Vec<ProblemKind>);

fn parse_probe(element: &Value, source: &str) -> Result<Probe, Problems> {
    let Value::Object(obj) = element else {
        return Err((None, vec![ProblemKind::NotAnObject { found: kind_of(element) }]));
    };
    let mut kinds = Vec::new();
    let mut string_field = |field: &'static str| match go_field(obj, field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            kinds.push(ProblemKind::WrongType { field, found: kind_of(other) });
            None
        }
    };
    let id = string_field("id");
    let domain = string_field("domain");
    let prompt = string_field("prompt");
    let id_ok = id.as_deref().is_some_and(|s| !s.trim().is_empty());
    // A wrong-typed field is already reported; don't also call it missing.
    if !id_ok && go_field(obj, "id").is_none_or(|v| v.is_null() || v.is_string()) {
        kinds.push(ProblemKind::MissingId);
    }
    let prompt_ok = prompt.as_deref().is_some_and(|s| !s.trim().is_empty());
    if !prompt_ok && go_field(obj, "prompt").is_none_or(|v| v.is_null() || v.is_string()) {
        kinds.push(ProblemKind::EmptyPrompt);
    }
    if !kinds.is_empty() {
        return Err((id.filter(|s| !s.trim().is_empty()), kinds));
    }
    Ok(Probe { id: id.unwrap_or_default(), domain, prompt: prompt.unwrap_or_default(), source: source.to_owned() })
}

/// Go's encoding/json matches object keys to fields case-insensitively, preferring an exact
/// match; a probe file written as `"Prompt"` loads in LEM, so it must load here too.
fn go_field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// How a JSON value's type reads in an error message ("a number", "an object").
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
