//! Logs go to a file (never to the screen while the TUI is up); warnings also reach stderr in
//! the line-oriented commands through their own printing, not through tracing.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// The default log file: `$XDG_STATE_HOME/lem-tui/lem-tui.log` (or the platform's equivalent).
pub fn default_log_path() -> PathBuf {
    directories::ProjectDirs::from("", "", "lem-tui")
        .map_or_else(|| PathBuf::from("."), |d| d.state_dir().unwrap_or(d.data_local_dir()).to_owned())
        .join("lem-tui.log")
}

/// Installs the global subscriber; `RUST_LOG` filters (default `info`). Returns the path used,
/// or `None` when the file could not be opened (logging is then off rather than on screen).
pub fn init(path: Option<&Path>) -> Option<PathBuf> {
    let path = path.map_or_else(default_log_path, Path::to_owned);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = OpenOptions::new().create(true).append(true).open(&path).ok()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(Mutex::new(file)).with_ansi(false).try_init().ok()?;
    Some(path)
}
