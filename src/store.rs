//! The session store: every run, probe, candidate and decision of a workspace in one SQLite file,
//! so nothing accepted is lost, a run resumes where it stopped, and decisions become data.
//!
//! - One database per workspace (project root) in the XDG data dir, or `--store` /
//!   `LEM_TUI_STORE`. WAL mode with full sync: a row the engine was told is committed survives
//!   a kill or a power cut. The schema is versioned in code ([`schema`]); a database written by
//!   a newer lem-tui, or one that is not lem-tui's, is refused with a way out.
//! - A *session* is one `distill` command line (root, model, probe set, output). Each process
//!   that works on it is a *run* with its own config snapshot and model identity. `--fresh`
//!   starts a new session with the same key.
//! - Rows are never updated or deleted: decisions are append-only (an undo is a new row) and
//!   `lesson_writes` records which decisions reached the lesson file, and where.
//! - [`Opened::begin`] turns the stored state into the engine's resume plan and reconciles the
//!   lesson file with it; [`SessionJournal`] is the engine's write-through [`Journal`].
//! - Scores name their scorer ([`scores`]): append-only rows of (scorer, version), so a future
//!   scorer adds rows. Ingested datasets (`crate::dataset`) are sessions like any other.
//! - [`export`] turns decisions into training files (lesson, SFT, DPO, KTO) with a manifest.
//!
//! [`Journal`]: crate::distill::Journal

pub mod export;
mod identity;
mod journal;
mod lessonfile;
mod lock;
mod reconcile;
mod resume;
mod rows;
mod schema;
pub mod scores;
mod tags;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use identity::{ModelIdentity, model_identity, model_identity_with_progress};
pub use journal::SessionJournal;
pub use lessonfile::LessonIndex;
pub use lock::SessionLock;
pub use resume::{ResumeReport, SessionSpec};
pub use schema::SCHEMA_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "session store {} is not a lem-tui database or is damaged ({reason}).\n  \
         Move it aside (`mv {0} {0}.bad`) to start a new one, or use another with --store PATH \
         (or LEM_TUI_STORE); --no-store runs without one",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "session store {} was written by a newer lem-tui (schema version {found}; this build \
         knows up to {known}).\n  Upgrade lem-tui, or use another store with --store PATH \
         (or LEM_TUI_STORE); --no-store runs without one",
        path.display()
    )]
    Newer { path: PathBuf, found: i64, known: i64 },
    #[error(
        "session already open: another lem-tui (pid {pid}) is working on {} (lock {}).\n  \
         Wait for it to finish or stop it; two processes must not append to one lesson file",
        output.display(),
        lock.display()
    )]
    Locked { output: PathBuf, lock: PathBuf, pid: String },
    #[error("cannot create the session store directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("session store {}: {source}", path.display())]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// An open database. One connection, owned by whoever holds the store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if missing) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        }
        let conn = Connection::open(path).map_err(|e| classify(path, e))?;
        let store = Self { conn, path: path.to_owned() };
        store.configure()?;
        schema::migrate(&store.conn, path)?;
        Ok(store)
    }

    /// Opens an existing database (exports): never creates one, but brings an older schema up to
    /// date like [`Store::open`].
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Other(format!(
                "no session store at {} (a distill run creates it; --store / LEM_TUI_STORE name another)",
                path.display()
            )));
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
        let store = Self { conn, path: path.to_owned() };
        store.configure()?;
        schema::migrate(&store.conn, path)?;
        Ok(store)
    }

    fn configure(&self) -> Result<(), StoreError> {
        // WAL lets exports read while a run writes; FULL sync makes each commit durable, which
        // is what "a decision is committed before its line is written" relies on.
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .and_then(|()| self.conn.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| self.conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| self.conn.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|e| classify(&self.path, e))
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw connection, for read-only queries in tests and tools.
    #[must_use]
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql { path: self.path.clone(), source }
    }
}

/// Maps SQLite's "this is not a database" family to [`StoreError::Corrupt`].
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match e.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => StoreError::Corrupt { path: path.to_owned(), reason: e.to_string() },
        _ => StoreError::Sql { path: path.to_owned(), source: e },
    }
}

/// The workspace's store: `flag` (from `--store` / `LEM_TUI_STORE`), else
/// `$XDG_DATA_HOME/lem-tui/stores/<root name>-<hash of the root>.sqlite3`.
#[must_use]
pub fn store_path(root: &Path, flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag.filter(|p| !p.as_os_str().is_empty()) {
        return p.to_owned();
    }
    let root = canonical(root);
    let name: String = root
        .file_name()
        .map(|n| n.to_string_lossy().chars().map(|c| if c.is_alphanumeric() { c } else { '_' }).collect())
        .filter(|n: &String| !n.is_empty())
        .unwrap_or_else(|| "root".into());
    let hash = &rows::sha256_hex(root.to_string_lossy().as_bytes())[..12];
    directories::ProjectDirs::from("", "", "lem-tui")
        .map_or_else(|| PathBuf::from(".lem-tui"), |d| d.data_dir().to_owned())
        .join("stores")
        .join(format!("{name}-{hash}.sqlite3"))
}

/// An absolute, symlink-free form of `p` where it exists; otherwise its existing parent's
/// canonical form joined with the rest, so a lesson file that does not exist yet keys the same
/// session as the one that will.
#[must_use]
pub fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => canonical(dir).join(name),
        _ => abs,
    }
}

/// A store opened and locked for one session, before the model is known: opening this early
/// refuses a damaged store or a second process before any model is loaded.
pub struct Opened {
    pub store: Store,
    pub lock: SessionLock,
}

impl Opened {
    /// Opens the store at `path` and takes the lock for `output`.
    pub fn open(path: &Path, output: &Path) -> Result<Self, StoreError> {
        let store = Store::open(path)?;
        let lock = SessionLock::acquire(path, &canonical(output))?;
        Ok(Self { store, lock })
    }
}
