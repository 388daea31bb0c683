//! What the `lem-tui review` terminal tests share: lesson lines, starting the binary in tmux on
//! a folder, exporting, and the check that `datasets` / TRL load an SFT and a DPO export.

use std::path::Path;
use std::process::Command;

use lem_tui::config::sandwich;
use lem_tui::lesson::{TrainingExample, training_line};

use super::tmux::{Tmux, quote};

/// The system kernel LEM's lesson lines carry (sandwich format).
pub const KERNEL: &str = "You are guided by the axioms.";

/// Prompts and answers the review tests share: two answers of different quality to one prompt
/// (and an operator's correction of the better one), and a second prompt.
pub const P0: &str = "Why should keys be rotated?";
pub const A0: &str = "Rotating keys limits what a stolen key can open, because each key protects only a short \
window of traffic; old keys are retired and their secrets stop mattering.";
pub const A0_WEAK: &str = "Keys are keys.";
pub const A0_EDIT: &str = "Rotating keys limits what a stolen key can open, because each key protects only a short \
window of traffic; retired keys are destroyed, so their secrets stop mattering.";
pub const P1: &str = "Explain a mesh network.";
pub const A1: &str = "Every device relays messages for its neighbours, so the network routes around gaps.";

/// A lesson line in LEM's sandwich format (the prompt between the kernel and nothing).
pub const P2: &str = "What is forgiveness?";
pub const A2: &str = "Letting go of a debt.";
pub const P3: &str = "Name a colour.";
pub const A3: &str = "Blue, mostly.";

/// The seven-line lesson file the curation flows start from, written to `dir/lesson.jsonl`:
/// two answers to P0, one to P1, a duplicate of line 1 (line 4), a malformed line (5), and one
/// answer each to P2 and P3.
pub fn seven_line_lesson(dir: &Path) {
    let mut text = String::new();
    text.push_str(&sandwich_line(P0, A0)); // 1
    text.push_str(&sandwich_line(P0, A0_WEAK)); // 2
    text.push_str(&sandwich_line(P1, A1)); // 3
    text.push_str(&sandwich_line(P0, A0)); // 4: duplicate of 1
    text.push_str("{\"messages\": [\n"); // 5: malformed
    text.push_str(&sandwich_line(P2, A2)); // 6
    text.push_str(&sandwich_line(P3, A3)); // 7
    std::fs::write(dir.join("lesson.jsonl"), text).expect("write data");
}

pub fn sandwich_line(p: &str, a: &str) -> String {
    training_line(&TrainingExample::user_assistant(sandwich(Some(KERNEL), None, p), a))
}

/// A plain lesson line: the prompt as the user turn.
pub fn plain_line(p: &str, a: &str) -> String {
    training_line(&TrainingExample::user_assistant(p, a))
}

/// Every line of a JSONL file, parsed.
pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("export file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// `lem-tui export FORMAT --store STORE --out OUT`, which must succeed.
pub fn export(store: &Path, format: &str, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .args(["export", format, "--store"])
        .arg(store)
        .arg("--out")
        .arg(out)
        .output()
        .expect("export runs");
    assert!(o.status.success(), "export {format}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Starts `lem-tui review lesson.jsonl --store STORE` in folder `d` in a 120×32 tmux session
/// named after `name`, with its own config folder and log, and `EDITOR` when given. When the
/// program ends the pane prints `LEMTUI-EXIT=<code>` and stays, for the test to read.
pub fn start(name: &str, d: &Path, store: &Path, editor: Option<&Path>) -> Tmux {
    let config = d.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    let editor = editor.map(|e| format!(" EDITOR='sh {}'", e.display())).unwrap_or_default();
    let script = d.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "cd {root}\nexport LEM_TUI_CONFIG_DIR={config} LEM_TUI_LOG={log} TERM=xterm-256color{editor}\n\
             {bin} review lesson.jsonl --store {store}\necho LEMTUI-EXIT=$?\nsleep 120\n",
            root = quote(d),
            config = quote(&config),
            log = quote(&d.join("lem-tui.log")),
            bin = quote(Path::new(env!("CARGO_BIN_EXE_lem-tui"))),
            store = quote(store),
        ),
    )
    .expect("script");
    let tmux = Tmux { socket: format!("lem-tui-{name}-{}", std::process::id()) };
    let arg = format!("sh {}", quote(&script));
    let out = tmux.cmd(&["new-session", "-d", "-s", "lem", "-x", "120", "-y", "32", &arg]);
    assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
    tmux
}

/// Loads the SFT export with `datasets` and the DPO export with TRL's DPO columns; `sft_cols`
/// and `dpo_cols` are the columns each must have, `sft_rows` / `dpo_rows` how many rows.
pub fn check_consumers(sft: &Path, dpo: &Path, sft_cols: &[&str], sft_rows: usize, dpo_cols: &[&str], dpo_rows: usize) {
    let check = r#"
import json, sys
from datasets import load_dataset
from trl.data_utils import is_conversational, maybe_extract_prompt
sft_cols, sft_rows, dpo_cols, dpo_rows = json.loads(sys.argv[3])
sft = load_dataset("json", data_files=sys.argv[1], split="train")
assert sft.column_names == sft_cols and len(sft) == sft_rows, sft
dpo = load_dataset("json", data_files=sys.argv[2], split="train")
assert dpo.column_names == dpo_cols and len(dpo) == dpo_rows, dpo
for row in dpo:
    assert not is_conversational(row) and maybe_extract_prompt(row)["prompt"] == row["prompt"]
print("consumers ok")
"#;
    let spec = serde_json::json!([sft_cols, sft_rows, dpo_cols, dpo_rows]).to_string();
    let o = Command::new("python3").args(["-c", check]).arg(sft).arg(dpo).arg(spec).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("consumers ok"), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
}
