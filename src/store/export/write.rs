//! Writing an export: the optional seeded train/valid split, then each file through a temporary
//! file and a rename, the manifest last, so a reader never sees half an export.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::super::StoreError;
use super::super::rows::sha256_hex;
use super::{FileEntry, Manifest, Request};

/// SplitMix64: tiny, seedable, and the same on every platform, so a seed names one split.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Which records go to `valid`: `round(n × fraction)` of them, at least one and never all
/// when there are two or more, chosen by a seeded shuffle. Order within each part is kept.
pub(super) fn valid_set(n: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let mut is_valid = vec![false; n];
    if n < 2 || fraction <= 0.0 {
        return is_valid;
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let k = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix(seed);
    for i in (1..n).rev() {
        #[allow(clippy::cast_possible_truncation)]
        let j = (rng.next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    for &i in &order[..k] {
        is_valid[i] = true;
    }
    is_valid
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// Replaces `path` with `bytes` atomically (temp file in the same directory, fsync, rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "export".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    // The rename itself must survive a crash too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn entry(path: PathBuf, lines: &[&String]) -> (FileEntry, String) {
    let body: String = lines.iter().map(|s| s.as_str()).collect();
    (FileEntry { sha256: sha256_hex(body.as_bytes()), records: lines.len(), path }, body)
}

pub(super) fn write_all(req: &Request, lines: &[String], manifest: &mut Manifest) -> Result<(), StoreError> {
    let mut files = Vec::new();
    let manifest_path = match req.split {
        Some(split) => {
            fs::create_dir_all(&req.out).map_err(|source| StoreError::CreateDir { path: req.out.clone(), source })?;
            let valid = valid_set(lines.len(), split.valid, split.seed);
            let (v, t): (Vec<_>, Vec<_>) = lines.iter().zip(&valid).partition(|(_, v)| **v);
            let train: Vec<&String> = t.into_iter().map(|(l, _)| l).collect();
            let valid: Vec<&String> = v.into_iter().map(|(l, _)| l).collect();
            manifest.counts.train = train.len();
            manifest.counts.valid = valid.len();
            files.push(entry(req.out.join("train.jsonl"), &train));
            files.push(entry(req.out.join("valid.jsonl"), &valid));
            req.out.join("manifest.json")
        }
        None => {
            if let Some(dir) = req.out.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
            }
            let all: Vec<&String> = lines.iter().collect();
            manifest.counts.train = all.len();
            files.push(entry(req.out.clone(), &all));
            let mut m = req.out.as_os_str().to_owned();
            m.push(".manifest.json");
            PathBuf::from(m)
        }
    };
    for (file, body) in &files {
        write_atomic(&file.path, body.as_bytes())?;
    }
    manifest.files = files.into_iter().map(|(f, _)| f).collect();
    manifest.manifest_path.clone_from(&manifest_path);
    let mut text = serde_json::to_string_pretty(manifest).map_err(|e| StoreError::Other(e.to_string()))?;
    text.push('\n');
    write_atomic(&manifest_path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_and_never_empty() {
        let a = valid_set(10, 0.2, 7);
        assert_eq!(a.iter().filter(|v| **v).count(), 2);
        assert_eq!(a, valid_set(10, 0.2, 7), "same seed, same split");
        assert_ne!(a, valid_set(10, 0.2, 8), "another seed, another split");
        assert_eq!(valid_set(3, 0.01, 1).iter().filter(|v| **v).count(), 1, "at least one");
        assert_eq!(valid_set(3, 0.99, 1).iter().filter(|v| **v).count(), 2, "never all");
        assert!(valid_set(1, 0.5, 1).iter().all(|v| !v));
    }

    #[test]
    fn atomic_write_replaces_whole_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.jsonl");
        write_atomic(&p, b"one\n").expect("write");
        write_atomic(&p, b"two\n").expect("rewrite");
        assert_eq!(fs::read_to_string(&p).expect("read"), "two\n");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1, "no temp files left");
    }
}
