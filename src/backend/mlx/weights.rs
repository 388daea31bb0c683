//! A checkpoint's tensors by name, as `mlx_lm` saves them (`*.safetensors` in one folder).

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::Array;
use mlx_rs::error::Exception;

/// Why a checkpoint's weights do not fit its config.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{file}: {reason}")]
    Read { file: String, reason: String },
    #[error("no *.safetensors files in {0}")]
    NoFiles(String),
    #[error("tensor `{0}` is missing")]
    Missing(String),
    #[error("{0}")]
    Mlx(#[from] Exception),
}

/// All tensors of a checkpoint by name.
pub struct Weights(HashMap<String, Array>);

impl Weights {
    pub fn load(dir: &Path, prefix: &str) -> Result<Self, WeightError> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| WeightError::Read { file: dir.display().to_string(), reason: e.to_string() })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(WeightError::NoFiles(dir.display().to_string()));
        }
        let mut all = HashMap::new();
        for f in files {
            let map = Array::load_safetensors(&f)
                .map_err(|e| WeightError::Read { file: f.display().to_string(), reason: e.to_string() })?;
            for (name, a) in map {
                // Multimodal checkpoints: keep the language model, drop the vision tower.
                match name.strip_prefix(prefix) {
                    Some(rest) if !prefix.is_empty() => {
                        all.insert(rest.to_owned(), a);
                    }
                    _ if prefix.is_empty() => {
                        all.insert(name, a);
                    }
                    _ => {}
                }
            }
        }
        Ok(Self(all))
    }

    pub fn take(&mut self, name: &str) -> Result<Array, WeightError> {
        self.0.remove(name).ok_or_else(|| WeightError::Missing(name.to_owned()))
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}
