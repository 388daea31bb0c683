//! From flags to a running workbench, at the edge: the checks that must fail before the model
//! loads (not a terminal, a bad theme or keymap), and the summary printed once the terminal
//! is back.

use std::io::IsTerminal;

use anyhow::bail;

use super::{Keymap, Options};
use crate::cli::{CurationArg, DistillArgs};
use crate::distill::{CurationMode, Summary};
use crate::theme::{self, Theme};

impl From<CurationArg> for CurationMode {
    fn from(m: CurationArg) -> Self {
        match m {
            CurationArg::Auto => CurationMode::Auto,
            CurationArg::Review => CurationMode::Review,
        }
    }
}

/// `--mode`, defaulting to review in the workbench and auto headless (where nobody could review).
pub fn curation_mode(args: &DistillArgs) -> anyhow::Result<CurationMode> {
    match (args.headless, args.mode.map(CurationMode::from)) {
        (true, Some(CurationMode::Review)) => {
            bail!("--mode review needs an operator: run without --headless to open the workbench")
        }
        (true, _) => Ok(CurationMode::Auto),
        (false, m) => Ok(m.unwrap_or(CurationMode::Review)),
    }
}

/// `theme:` in `<config dir>/tui.yaml`, used when `--theme` is absent.
fn configured_theme(dir: Option<&std::path::Path>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Tui {
        theme: Option<String>,
    }
    let path = dir?.join("tui.yaml");
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_yaml::from_str::<Tui>(&text) {
        Ok(t) => t.theme,
        Err(e) => {
            tracing::warn!("{}: {e}; using the default theme", path.display());
            None
        }
    }
}

/// Everything the workbench needs besides the run itself. Fails on a bad theme or keymap, and
/// when stdout is not a terminal (rather than drawing escape codes into a file or a pipe).
pub fn options(args: &DistillArgs, notes: &[String]) -> anyhow::Result<Options> {
    options_with(args.theme.clone(), curation_mode(args)?, notes)
}

/// [`options`] from the theme flag and curation mode alone (`lem-tui review`).
pub fn options_with(theme_flag: Option<String>, mode: CurationMode, notes: &[String]) -> anyhow::Result<Options> {
    let dir = theme::config_dir();
    let name = theme_flag.or_else(|| configured_theme(dir.as_deref()));
    let mut theme = Theme::resolve(name.as_deref(), dir.as_deref())?;
    if theme::no_color_requested() {
        theme = theme.without_colour();
    }
    let keymap = Keymap::load(dir.as_deref())?;
    if !std::io::stdout().is_terminal() {
        bail!(
            "stdout is not a terminal, so the workbench cannot be drawn; \
             use `lem-tui distill --headless` for LEM's progress lines"
        );
    }
    Ok(Options { theme, keymap, mode, notes: notes.to_vec() })
}

/// What is left on the terminal after the workbench closes.
pub fn print_summary(s: Option<&Summary>, output: &std::path::Path) {
    let Some(s) = s else {
        eprintln!("workbench closed; output: {}", output.display());
        return;
    };
    eprintln!(
        "{}/{} probes decided · kept {} · skipped {} · {} generations, {} tokens",
        s.probes_done, s.probes, s.kept, s.skipped, s.generations, s.generated_tokens
    );
    if s.decode_time.as_secs_f64() > 0.0 {
        #[allow(clippy::cast_precision_loss)]
        let rate = s.generated_tokens as f64 / s.decode_time.as_secs_f64();
        eprintln!("decode: {rate:.0} tok/s per candidate");
    }
    if let Some(why) = &s.stopped_early {
        eprintln!("stopped: {why} (undecided probes resume next time)");
    }
    eprintln!("output: {}", output.display());
}
