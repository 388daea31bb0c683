//! A real OpenAI-compatible server for the tests: llama-cpp-python's `llama_cpp.server` on
//! 127.0.0.1, serving a fetched GGUF, started on a free port and killed when dropped.
//!
//! `--interrupt_requests False`: by default that server ends the stream in progress (with
//! `[DONE]` and no `finish_reason`) whenever another request arrives, which a pool with more
//! than one request per endpoint would trip over constantly.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LlamaServer {
    pub port: u16,
    child: Child,
    pub log: PathBuf,
    /// The test's watchdog (tests/common/deadline.rs) kills it and prints its log on a hang.
    _watched: crate::common::deadline::Registration,
    _dir: tempfile::TempDir,
}

fn python() -> String {
    std::env::var("LEM_TUI_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Fails (never skips) when the server package is missing: scripts/test installs it.
pub fn require_server_package() {
    let ok = Command::new(python())
        .args(["-c", "import llama_cpp.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "llama-cpp-python's server is not installed for {}: run python3 -m pip install 'llama-cpp-python[server]' \
         (scripts/test does)",
        python()
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// True once `GET /v1/models` answers 200.
fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    s.read(&mut head).is_ok_and(|k| head[..k].starts_with(b"HTTP/1.1 200"))
}

impl LlamaServer {
    /// Starts a server and waits until it answers; retries on another port if the chosen one
    /// was taken in between.
    pub fn start(model: &Path, threads: u32) -> Self {
        Self::start_with(model, threads, false)
    }

    /// `interrupt`: keep the server's default of ending a stream when another request arrives.
    pub fn start_with(model: &Path, threads: u32, interrupt: bool) -> Self {
        Self::start_on(model, threads, interrupt, None)
    }

    /// A server on `port` (one that died there, started again), or on a free port.
    pub fn start_on(model: &Path, threads: u32, interrupt: bool, fixed: Option<u16>) -> Self {
        require_server_package();
        for _ in 0..5 {
            let port = fixed.unwrap_or_else(free_port);
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("server.log");
            let out = std::fs::File::create(&log).expect("log file");
            let err = out.try_clone().expect("log file");
            let child = Command::new(python())
                .args(["-m", "llama_cpp.server", "--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--model")
                .arg(model)
                .args(["--chat_format", "chatml", "--n_ctx", "2048", "--n_threads", &threads.to_string()])
                .args([
                    "--n_threads_batch",
                    &threads.to_string(),
                    "--interrupt_requests",
                    if interrupt { "True" } else { "False" },
                    "--verbose",
                    "False",
                ])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("python3 runs");
            let watched =
                crate::common::watch_child(format!("llama_cpp.server on port {port}"), &child, Some(log.clone()));
            let mut server = Self { port, child, log: log.clone(), _watched: watched, _dir: dir };
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                // Uvicorn binds after the model loads; until its banner shows, an answer on
                // this port could come from someone else's server.
                if server.log_text().contains("Uvicorn running on") && ready(port) {
                    return server;
                }
                if let Ok(Some(status)) = server.child.try_wait() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let taken = text.contains("address already in use") || text.contains("Errno 98");
                    assert!(!taken || fixed.is_none(), "port {port} is taken:\n{text}");
                    if taken {
                        break;
                    }
                    panic!("llama_cpp.server exited ({status}) before answering:\n{text}");
                }
                assert!(
                    Instant::now() < deadline,
                    "llama_cpp.server did not answer within 120 s:\n{}",
                    server.log_text()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        panic!("no free port for llama_cpp.server after 5 tries");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the server dies mid-whatever, as a crashed or preempted one does.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.kill();
    }
}
