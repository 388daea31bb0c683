//! Named points where a test can freeze the process to kill it at an exact moment (between a
//! commit and a write, in the middle of a line). Off unless `LEM_TUI_FAILPOINT` is set to
//! `name` or `name@n` (the n-th time the point is reached, 1-based). At the point the process
//! prints `failpoint <name> reached` on stderr and sleeps until it is killed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    name: String,
    nth: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("LEM_TUI_FAILPOINT").ok()?;
            let (name, nth) = match spec.split_once('@') {
                Some((n, k)) => (n.to_owned(), k.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed { name, nth, seen: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Counts a pass through `name`; true when this pass is the one to stop at. Callers that need
/// to set up the moment first (write half a line) check this, then call [`pause`].
pub fn triggers(name: &str) -> bool {
    match armed() {
        Some(a) if a.name == name => a.seen.fetch_add(1, Ordering::SeqCst) + 1 == a.nth,
        _ => false,
    }
}

/// Announces the point and never returns.
pub fn pause(name: &str) -> ! {
    eprintln!("failpoint {name} reached");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Stops here if the armed point is `name` and this is its n-th pass.
pub fn hit(name: &str) {
    if triggers(name) {
        pause(name);
    }
}
