//! Helpers shared by the integration tests: the real test models and a scratch project root.
#![allow(dead_code)]

pub mod ask;
pub mod deadline;
pub mod log;
pub mod review;
pub mod screen;
pub mod tmux;

#[allow(unused_imports)] // each test crate uses its own part
pub use deadline::{OutputWithin, deadline, watch, watch_child};

use std::path::{Path, PathBuf};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The fetched GGUF of a shipped model config. Fails (never skips) when it is missing: the
/// test scripts fetch the models first.
pub fn model_path(spec: &str) -> PathBuf {
    let (model, _) = lem_tui::config::load_model(Path::new(ROOT), spec).expect("model config loads");
    let fetch = model.fetch.expect("shipped model configs have a fetch section");
    assert!(
        lem_tui::models::is_ready(&fetch),
        "test model {spec} is not fetched: run `cargo run --release -- models fetch` (scripts/test does)"
    );
    lem_tui::models::target_path(&fetch)
}

/// A project root with the shipped .core/ai configs and the given probes file.
pub fn scratch_root(probes_json: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let ai = dir.path().join(".core/ai");
    copy_dir(&Path::new(ROOT).join(".core/ai"), &ai);
    std::fs::write(dir.path().join("probes.json"), probes_json).expect("write probes");
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
