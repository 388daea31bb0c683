//! A scriptable, fault-injecting OpenAI-style HTTP server on 127.0.0.1, for the failure cases a
//! real server will not produce on demand. It never stands in for the real server in the
//! happy-path tests. It runs on its own thread and runtime, so a test may block (start-up's
//! discovery does) without stalling it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the server does with one chat request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 and these SSE blocks, `gap` apart, then `data: [DONE]` if `done`, then close.
    Sse {
        blocks: Vec<String>,
        done: bool,
        gap: Duration,
    },
    Status {
        code: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Read the request, then say nothing until the server is dropped.
    Hang,
}

/// A request as the server saw it: its number (0-based, chat requests only), body and time.
#[derive(Clone, Debug)]
pub struct Seen {
    pub number: usize,
    pub body: Value,
    pub at: Instant,
    /// The `Authorization` header, if any.
    pub auth: Option<String>,
}

type Script = dyn Fn(usize, &Value) -> Reply + Send + Sync;

pub struct Mock {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    kill: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mock {
    pub fn start(script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kill = CancellationToken::new();
        let script: Arc<Script> = Arc::new(script);
        let (seen2, kill2) = (Arc::clone(&seen), kill.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                let count = Arc::new(AtomicUsize::new(0));
                loop {
                    tokio::select! {
                        () = kill2.cancelled() => break,
                        conn = listener.accept() => {
                            let Ok((sock, _)) = conn else { continue };
                            let (script, seen, count, kill) =
                                (Arc::clone(&script), Arc::clone(&seen2), Arc::clone(&count), kill2.clone());
                            tokio::spawn(async move {
                                tokio::select! {
                                    () = kill.cancelled() => {}
                                    () = serve(sock, script, seen, count) => {}
                                }
                            });
                        }
                    }
                }
                // Give handlers a moment to observe the kill and drop their sockets.
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        });
        Self { port, seen, kill, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Closes every connection mid-whatever and stops listening (connections are then refused).
    pub fn kill(&mut self) {
        self.kill.cancel();
        if let Some(t) = self.thread.take() {
            t.join().expect("mock thread");
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn serve(mut sock: TcpStream, script: Arc<Script>, seen: Arc<Mutex<Vec<Seen>>>, count: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
        }
    }
    let first = head.lines().next().unwrap_or_default().to_owned();
    if first.starts_with("GET") && first.contains("/models") {
        let body = json!({"object": "list", "data": [{"id": "mock-model", "object": "model"}]}).to_string();
        let _ = write_response(&mut sock, 200, &[], &body).await;
        return;
    }
    let body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    let number = count.fetch_add(1, Ordering::SeqCst);
    let auth = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("authorization").then(|| v.trim().to_owned())
    });
    seen.lock().expect("lock").push(Seen { number, body: body.clone(), at: Instant::now(), auth });
    match script(number, &body) {
        Reply::Status { code, headers, body } => {
            let _ = write_response(&mut sock, code, &headers, &body).await;
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
        }
        Reply::Sse { blocks, done, gap } => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for b in blocks {
                if sock.write_all(b.as_bytes()).await.is_err() {
                    return;
                }
                let _ = sock.flush().await;
                tokio::time::sleep(gap).await;
            }
            if done {
                let _ = sock.write_all(b"data: [DONE]\n\n").await;
            }
            let _ = sock.shutdown().await;
        }
    }
}

async fn write_response(
    sock: &mut TcpStream,
    code: u16,
    headers: &[(String, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}

/// `data:` block with one content delta for choice `index`.
pub fn token(index: u32, text: &str) -> String {
    let v = json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": index, "delta": {"content": text}, "finish_reason": null}]});
    format!("data: {v}\n\n")
}

/// `data:` block that ends choice `index`.
pub fn finish(index: u32, reason: &str) -> String {
    let v = json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": index, "delta": {}, "finish_reason": reason}]});
    format!("data: {v}\n\n")
}

/// A well-formed answer for every choice the request asked for (`n`, default 1).
pub fn answer(body: &Value, words: &[&str]) -> Reply {
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1) as u32;
    let mut blocks = Vec::new();
    for w in words {
        for i in 0..n {
            blocks.push(token(i, &format!("{w}{i} ")));
        }
    }
    for i in 0..n {
        blocks.push(finish(i, "stop"));
    }
    Reply::Sse { blocks, done: true, gap: Duration::from_millis(5) }
}
