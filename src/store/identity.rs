//! Which model produced a run: path, size and sha256 of the weights. Hashing a 16 GB file takes
//! minutes, so digests are cached in the store by (path, size, mtime).

use std::path::Path;
use std::time::UNIX_EPOCH;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ModelIdentity {
    pub name: String,
    /// The weights file, or the model's address for backends without a local file.
    pub path: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub backend: String,
}

/// Identifies the model at `path`; a path that is not a local file (an HTTP model name) is
/// recorded as given, without size or digest.
pub fn model_identity(store: &Store, name: &str, backend: &str, path: &str) -> Result<ModelIdentity, StoreError> {
    model_identity_with_progress(store, name, backend, path, &mut |_, _| {})
}

/// [`model_identity`], calling `progress(bytes hashed, size)` while a digest not in the cache
/// is computed.
pub fn model_identity_with_progress(
    store: &Store,
    name: &str,
    backend: &str,
    path: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ModelIdentity, StoreError> {
    let mut id = ModelIdentity {
        name: name.to_owned(),
        path: path.to_owned(),
        backend: backend.to_owned(),
        ..Default::default()
    };
    let file = Path::new(path);
    let Ok(meta) = std::fs::metadata(file) else { return Ok(id) };
    if !meta.is_file() {
        return Ok(id);
    }
    let canonical = super::canonical(file).to_string_lossy().into_owned();
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let size = i64::try_from(meta.len()).unwrap_or(i64::MAX);
    let sql = store.sql();
    let cached: Option<String> = store
        .conn
        .query_row(
            "SELECT sha256 FROM model_files WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3",
            params![canonical, size, mtime_ns],
            |r| r.get(0),
        )
        .optional()
        .map_err(&sql)?;
    let sha = match cached {
        Some(s) => s,
        None => {
            let s = crate::models::sha256_file_with_progress(file, progress)
                .map_err(|e| StoreError::Other(e.to_string()))?;
            store
                .conn
                .execute(
                    "INSERT OR REPLACE INTO model_files (path, size, mtime_ns, sha256) VALUES (?1, ?2, ?3, ?4)",
                    params![canonical, size, mtime_ns, s],
                )
                .map_err(&sql)?;
            s
        }
    };
    id.path = canonical;
    id.size = Some(meta.len());
    id.sha256 = Some(sha);
    Ok(id)
}
