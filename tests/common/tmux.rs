//! A tmux server of the test's own (`-L socket`) running the real binary: `send-keys` types,
//! `capture-pane` reads the screen. Every tmux command has a deadline, and the server is killed
//! when the harness is dropped.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::OutputWithin;

pub struct Tmux {
    pub socket: String,
}

impl Tmux {
    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output_within(Duration::from_secs(120))
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "lem"]).stdout).into_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = self.cmd(&["send-keys", "-t", "lem", k]);
            assert!(out.status.success(), "send-keys {k}: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    pub fn alternate_screen(&self) -> bool {
        let out = self.cmd(&["display-message", "-p", "-t", "lem", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// Polls the screen until `pred` holds; fails with the last screen after `secs`.
    pub fn wait(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(Instant::now() < until, "timed out waiting for {what}; the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// `p` quoted for `sh`.
pub fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}
