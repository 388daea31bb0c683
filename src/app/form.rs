//! The limits form: memory and cache limits (GB, 0 = none), runs and temperature for the next
//! candidates. Fields are text while typed and validated on submit, each error shown by its
//! field.

use crate::backend::Limits;
use crate::backend::memory::GIB;
use crate::distill::{MAX_RUNS, Settings};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub label: &'static str,
    pub hint: &'static str,
    pub value: String,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsForm {
    pub fields: [Field; 4],
    pub focus: usize,
}

pub const MEMORY: usize = 0;
pub const CACHE: usize = 1;
pub const RUNS: usize = 2;
pub const TEMPERATURE: usize = 3;

/// What a valid form asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Values {
    pub limits: Limits,
    pub runs: u32,
    pub temperature: f32,
}

/// Bytes as the form shows them: GB with up to two decimals, trailing zeros dropped.
pub fn gb(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let v = bytes as f64 / GIB as f64;
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn parse_gb(s: &str) -> Result<u64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{}` is not a number of GB", s.trim()))?;
    if !(0.0..=4096.0).contains(&v) {
        return Err(format!("{v} GB is out of range (0-4096; 0 = no limit)"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    Ok((v * GIB as f64).round() as u64)
}

impl LimitsForm {
    pub fn new(s: &Settings) -> Self {
        let f = |label, hint, value: String| Field { label, hint, value, error: None };
        Self {
            fields: [
                f("memory limit", "GB, 0 = none", gb(s.limits.memory_bytes)),
                f("cache limit", "GB, 0 = none (MLX)", gb(s.limits.cache_bytes)),
                f("runs", "1-64, next probes", s.runs.to_string()),
                f("temperature", "0-5, next candidates", format!("{}", s.temperature)),
            ],
            focus: 0,
        }
    }

    pub fn type_char(&mut self, c: char) {
        let f = &mut self.fields[self.focus];
        if f.value.len() < 16 && (c.is_ascii_digit() || c == '.') {
            f.value.push(c);
            f.error = None;
        }
    }

    pub fn backspace(&mut self) {
        let f = &mut self.fields[self.focus];
        f.value.pop();
        f.error = None;
    }

    pub fn next(&mut self) {
        self.focus = (self.focus + 1) % self.fields.len();
    }

    pub fn prev(&mut self) {
        self.focus = (self.focus + self.fields.len() - 1) % self.fields.len();
    }

    /// Checks every field; on error, marks the fields and focuses the first bad one.
    pub fn validate(&mut self) -> Option<Values> {
        let memory = parse_gb(&self.fields[MEMORY].value);
        let cache = parse_gb(&self.fields[CACHE].value);
        let runs =
            self.fields[RUNS].value.trim().parse::<u32>().ok().filter(|r| (1..=MAX_RUNS).contains(r)).ok_or_else(
                || format!("runs must be a whole number 1-{MAX_RUNS}, not `{}`", self.fields[RUNS].value.trim()),
            );
        let temperature = self.fields[TEMPERATURE]
            .value
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|t| (0.0..=5.0).contains(t))
            .ok_or_else(|| format!("temperature must be 0-5, not `{}`", self.fields[TEMPERATURE].value.trim()));
        let errors = [memory.as_ref().err(), cache.as_ref().err(), runs.as_ref().err(), temperature.as_ref().err()];
        for (f, e) in self.fields.iter_mut().zip(errors) {
            f.error = e.cloned();
        }
        if let Some(first) = self.fields.iter().position(|f| f.error.is_some()) {
            self.focus = first;
            return None;
        }
        Some(Values {
            limits: Limits { memory_bytes: memory.ok()?, cache_bytes: cache.ok()? },
            runs: runs.ok()?,
            temperature: temperature.ok()?,
        })
    }
}
