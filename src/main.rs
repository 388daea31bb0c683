//! lem-tui's entry point: parse flags, set up logging, run, map errors to an exit code.

use std::process::ExitCode;

use clap::Parser;
use lem_tui::cli::{Cli, Command};

fn main() -> ExitCode {
    #[cfg(mlx)]
    lem_tui::backend::mlx::process_env::set_process_env();
    let cli = Cli::parse_from(lem_tui::cli::normalise_go_flags(std::env::args()));
    let _log = lem_tui::logging::init(cli.log_file.as_deref());
    let result = match cli.command {
        Some(Command::Distill(args)) => lem_tui::commands::distill(&args),
        None => lem_tui::commands::distill(&cli.distill),
        Some(Command::Score(args)) => lem_tui::commands::score(&args),
        Some(Command::Models(args)) => lem_tui::commands::models(&args),
        Some(Command::Export(args)) => lem_tui::commands::export(&args),
        Some(Command::Review(args)) => lem_tui::commands::review(&args),
        Some(Command::Bench(args)) => lem_tui::commands::bench(&args),
        Some(Command::Init(args)) => lem_tui::commands::init(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let text = lem_tui::commands::error_chain(&e);
            tracing::error!("{text}");
            eprintln!("error: {text}");
            lem_tui::commands::exit_code(&e)
        }
    }
}
