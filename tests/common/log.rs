//! The engine's log lines, captured: its worker thread logs through the global subscriber, which
//! a test binary installs once (the first call), at INFO.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// The engine's log lines (its worker thread logs through the global subscriber).
pub fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `key=value` field of a log line (values quoted when they are strings).
pub fn field(line: &str, key: &str) -> String {
    let at = line.find(&format!(" {key}=")).map(|i| i + key.len() + 2).unwrap_or(line.len());
    let rest = &line[at..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next().unwrap_or_default().to_owned()
    } else {
        rest.split(' ').next().unwrap_or_default().to_owned()
    }
}

/// The `batched generation` lines logged so far with `sampler=NAME`.
pub fn generation_lines(sampler: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&log().lock().expect("log").clone()).into_owned();
    text.lines()
        .filter(|l| l.contains("batched generation") && l.contains(&format!("sampler=\"{sampler}\"")))
        .map(str::to_owned)
        .collect()
}
