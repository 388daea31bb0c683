//! One process per lesson file. The lock is an OS file lock (`flock`), so it dies with its
//! process however that ends, SIGKILL included, and never needs cleaning up.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;
use super::rows::sha256_hex;

/// Held for as long as a run works on a session; dropping it releases the lock.
#[derive(Debug)]
pub struct SessionLock {
    _file: File,
    path: PathBuf,
}

impl SessionLock {
    /// Locks `output` (canonical) for this process. The lock file lives beside the store, in
    /// `<store>.locks/`, so the training directory stays clean.
    pub fn acquire(store: &Path, output: &Path) -> Result<Self, StoreError> {
        let mut dir = store.as_os_str().to_owned();
        dir.push(".locks");
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir { path: dir.clone(), source })?;
        let path = dir.join(format!("{}.lock", &sha256_hex(output.to_string_lossy().as_bytes())[..16]));
        let io = |source| StoreError::Io { path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        // A lock this very process released a moment ago can still be held for a few
        // milliseconds by a child being spawned on another thread: between fork and exec the
        // child shares our open file descriptions. Only then is it worth waiting briefly.
        let mut waited = std::time::Duration::ZERO;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.seek(SeekFrom::Start(0));
                    let _ = file.read_to_string(&mut holder);
                    let pid = holder.lines().next().filter(|s| !s.is_empty()).unwrap_or("unknown").to_owned();
                    let ours = pid == std::process::id().to_string();
                    if ours && waited < std::time::Duration::from_secs(2) {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        waited += std::time::Duration::from_millis(20);
                        continue;
                    }
                    return Err(StoreError::Locked { output: output.to_owned(), lock: path, pid });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        // The holder's pid and output, for the message a second process prints.
        let note = format!("{}\n{}\n", std::process::id(), output.display());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .map_err(io)?;
        Ok(Self { _file: file, path })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}
