//! The default configuration (`.core/ai/`) and the demo probes (`assets/probes/`), built into
//! the binary, so lem-tui works from any folder.
//!
//! [`locate`] finds the project: the folder given as `--root` (default: the current one) or its
//! nearest parent holding `.core/ai/`. Where there is none, the built-in files are used: they
//! are written once to a folder of the XDG cache named after their hash (so a new version never
//! reads an old copy) and read from there like any project's. [`init`] writes them into a
//! folder for editing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Every built-in file, by its path in a project.
pub const FILES: &[(&str, &str)] = &[
    (".core/ai/ai.yaml", include_str!("../../.core/ai/ai.yaml")),
    (".core/ai/probes.yaml", include_str!("../../.core/ai/probes.yaml")),
    (".core/ai/models/gemma3/270m.yaml", include_str!("../../.core/ai/models/gemma3/270m.yaml")),
    (".core/ai/models/smollm2/135m.yaml", include_str!("../../.core/ai/models/smollm2/135m.yaml")),
    ("assets/probes/README.md", include_str!("../../assets/probes/README.md")),
    ("assets/probes/P01-P20.json", include_str!("../../assets/probes/P01-P20.json")),
    ("assets/probes/P21-P40.json", include_str!("../../assets/probes/P21-P40.json")),
    ("assets/probes/P41-P60.json", include_str!("../../assets/probes/P41-P60.json")),
    ("assets/probes/P61-P80.json", include_str!("../../assets/probes/P61-P80.json")),
    ("assets/probes/P81-P100.json", include_str!("../../assets/probes/P81-P100.json")),
];

#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("cannot write the built-in configuration to {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },
    #[error(
        "every built-in file already exists in {}; nothing was written (edit them there, or init another folder)",
        dir.display()
    )]
    Exists { dir: PathBuf },
}

/// Where a command's configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The folder whose `.core/ai/` is read (the built-in copy's folder when `builtin`).
    pub root: PathBuf,
    /// The project the run belongs to: `root`, or the folder searched when `builtin` (it keys
    /// the session store).
    pub project: PathBuf,
    /// The folders searched for `.core/ai/`, nearest first (reported when none had one).
    pub searched: Vec<PathBuf>,
    pub builtin: bool,
}

impl Located {
    /// What to tell the operator when the built-in files are in use.
    pub fn note(&self) -> Option<String> {
        self.builtin.then(|| {
            format!(
                "no .core/ai/ in {} or its parents: using lem-tui's built-in configuration and demo probes \
                 (`lem-tui init` writes them out for editing)",
                self.searched.first().map_or_else(|| ".".to_owned(), |p| p.display().to_string())
            )
        })
    }
}

/// The project for `root` (LEM's `--root`, default `.`): `root` itself if it holds `.core/ai/`,
/// else its nearest parent that does, else the built-in files.
pub fn locate(root: &Path) -> Result<Located, BuiltinError> {
    if super::ai_dir(root).is_dir() {
        return Ok(Located { root: root.to_owned(), project: root.to_owned(), searched: vec![], builtin: false });
    }
    let abs = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
    let searched: Vec<PathBuf> = abs.ancestors().map(Path::to_path_buf).collect();
    if let Some(found) = searched.iter().find(|d| super::ai_dir(d).is_dir()) {
        return Ok(Located { root: found.clone(), project: found.clone(), searched, builtin: false });
    }
    Ok(Located { root: materialise()?, project: root.to_owned(), searched, builtin: true })
}

/// The hash of every built-in path and its contents.
fn digest() -> String {
    let mut h = Sha256::new();
    for (path, text) in FILES {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn cache_root() -> PathBuf {
    directories::ProjectDirs::from("", "", "lem-tui")
        .map_or_else(|| std::env::temp_dir().join("lem-tui"), |d| d.cache_dir().to_owned())
}

/// The built-in files as a project folder in the cache, written on first use. Written to a
/// folder of its own first and renamed into place, so a reader never sees half of it.
fn materialise() -> Result<PathBuf, BuiltinError> {
    let dir = cache_root().join(format!("builtin-{}", digest()));
    if dir.is_dir() {
        return Ok(dir);
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".builtin-{}-{}", digest(), std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    write_missing(&tmp)?;
    match fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another process put it there first: theirs is the same.
        Err(_) if dir.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(error) => Err(BuiltinError::Write { path: dir, error }),
    }
}

/// Writes the built-in files under `dir`, except those already there; returns the ones written.
fn write_missing(dir: &Path) -> Result<Vec<PathBuf>, BuiltinError> {
    let mut written = Vec::new();
    for (rel, text) in FILES {
        let path = dir.join(rel);
        if path.exists() {
            continue;
        }
        let write = |p: &Path| -> io::Result<()> {
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(p, text)
        };
        write(&path).map_err(|error| BuiltinError::Write { path: path.clone(), error })?;
        written.push(path);
    }
    Ok(written)
}

/// `lem-tui init DIR`: writes the built-in files into `dir` for editing. A file already there
/// is kept as it is (an edited config is never overwritten); none missing is an error.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>, BuiltinError> {
    let written = write_missing(dir)?;
    if written.is_empty() {
        return Err(BuiltinError::Exists { dir: dir.to_owned() });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the repository's .core/ai/ and assets/probes/ is built in, unchanged.
    #[test]
    fn the_built_in_files_are_the_repository_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk = Vec::new();
        let mut stack = vec![root.join(".core/ai"), root.join("assets/probes")];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read_dir").flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
                    on_disk.push(rel);
                }
            }
        }
        on_disk.sort();
        let mut built: Vec<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        built.sort();
        assert_eq!(built, on_disk, "FILES must list every default file");
        for (rel, text) in FILES {
            assert_eq!(fs::read_to_string(root.join(rel)).expect("read"), *text, "{rel}");
        }
    }

    #[test]
    fn init_writes_what_is_missing_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = init(dir.path()).expect("init");
        assert_eq!(written.len(), FILES.len());
        let loc = locate(dir.path()).expect("locate");
        assert!(!loc.builtin && loc.root == dir.path(), "{loc:?}");
        let sub = dir.path().join("a/b");
        fs::create_dir_all(&sub).expect("mkdir");
        let loc = locate(&sub).expect("locate");
        assert!(!loc.builtin && loc.root == dir.path(), "a parent's .core/ai/ is the project's: {loc:?}");
        let err = init(dir.path()).expect_err("second init").to_string();
        assert!(err.contains("nothing was written"), "{err}");
        let ai = dir.path().join(".core/ai/ai.yaml");
        fs::write(&ai, "edited").expect("edit");
        fs::remove_file(dir.path().join(".core/ai/probes.yaml")).expect("rm");
        assert_eq!(init(dir.path()).expect("adds the missing file"), [dir.path().join(".core/ai/probes.yaml")]);
        assert_eq!(fs::read_to_string(&ai).expect("read"), "edited", "kept as edited");
    }
}
