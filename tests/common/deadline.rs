//! Overall deadlines for tests that start servers or child processes: a hang fails the suite
//! within minutes, with the children's logs, instead of eating CI's time.
//!
//! - [`deadline`] arms a watchdog for the calling test. If the test is still running when it
//!   expires, the watchdog prints the tail of every registered child's log, kills those
//!   children, and exits the test binary with status 101 (a failed test's status).
//! - [`watch`] registers a child (its pid or a command that stops it, and its log) for the
//!   watchdog; the registration ends when the returned guard is dropped.
//! - [`OutputWithin::output_within`] is `Command::output` with a deadline of its own: the child
//!   is killed when it runs past it and the test fails with everything it printed.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

struct Watched {
    id: u64,
    label: String,
    /// argv of the command that stops it (`kill -9 PID`, `tmux -L S kill-server`).
    stop: Vec<String>,
    log: Option<PathBuf>,
}

static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A child the watchdog knows about until this is dropped.
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        WATCHED.lock().unwrap_or_else(PoisonError::into_inner).retain(|w| w.id != self.0);
    }
}

/// Registers a process: on expiry its log is printed and `stop` is run.
pub fn watch(label: impl Into<String>, stop: Vec<String>, log: Option<PathBuf>) -> Registration {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    WATCHED.lock().unwrap_or_else(PoisonError::into_inner).push(Watched { id, label: label.into(), stop, log });
    Registration(id)
}

/// Registers a child by pid (killed with SIGKILL on expiry).
pub fn watch_child(label: impl Into<String>, child: &Child, log: Option<PathBuf>) -> Registration {
    watch(label, vec!["kill".into(), "-9".into(), child.id().to_string()], log)
}

/// The watchdog of one test; disarmed when dropped (the test ended, passed or panicked).
pub struct Deadline {
    done: Arc<(Mutex<bool>, Condvar)>,
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let (lock, cv) = &*self.done;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
    }
}

/// Arms a watchdog for the calling test (named after its thread, which libtest names after the
/// test). Pick a limit several times the test's usual time on a loaded 2-core machine.
pub fn deadline(limit: Duration) -> Deadline {
    let name = std::thread::current().name().unwrap_or("a test").to_owned();
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let flag = Arc::clone(&done);
    std::thread::spawn(move || {
        let (lock, cv) = &*flag;
        let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = cv.wait_timeout_while(guard, limit, |done| !*done).unwrap_or_else(PoisonError::into_inner);
        if *guard {
            return;
        }
        expire(&name, limit);
    });
    Deadline { done }
}

fn expire(name: &str, limit: Duration) -> ! {
    eprintln!("\n*** {name}: still running after {limit:?}: a hang. Its children, and the end of their logs:");
    let watched = std::mem::take(&mut *WATCHED.lock().unwrap_or_else(PoisonError::into_inner));
    for w in &watched {
        eprintln!("--- {} ---", w.label);
        if let Some(log) = &w.log {
            eprintln!(
                "{}",
                tail(&std::fs::read_to_string(log).unwrap_or_else(|e| format!("({}: {e})", log.display())))
            );
        }
        if let Some((prog, args)) = w.stop.split_first() {
            let _ = Command::new(prog).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
    eprintln!("*** {name}: failed by its deadline; exiting the test binary");
    std::process::exit(101)
}

fn tail(text: &str) -> &str {
    const KEEP: usize = 8 * 1024;
    if text.len() <= KEEP {
        return text;
    }
    let mut start = text.len() - KEEP;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

pub trait OutputWithin {
    /// Runs the command to its end like `output()` (stdin closed, stdout and stderr captured),
    /// killing it and failing the test if it is still running after `limit`.
    fn output_within(&mut self, limit: Duration) -> Output;
}

impl OutputWithin for Command {
    fn output_within(&mut self, limit: Duration) -> Output {
        let what = format!("{self:?}");
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        let _watched = watch_child(what.clone(), &child, None);
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                v
            })
        };
        let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
        let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting for the child") {
                break Some(s);
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = out.join().expect("stdout reader");
        let stderr = err.join().expect("stderr reader");
        let Some(status) = status else {
            panic!(
                "{what} did not finish within {limit:?} and was killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        };
        Output { status, stdout, stderr }
    }
}
