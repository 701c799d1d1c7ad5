//! `fieldsync`: a FieldSync device replica on disk. This file only parses the command line
//! and dispatches; see `commands` for what each command does and `docs/cli.md` for usage.

mod args;
mod commands;
mod demo;
mod output;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

/// The one-line message of a command-line error (clap's own are several lines).
fn usage_error(e: &clap::Error) -> String {
    if e.kind() == ErrorKind::InvalidUtf8 {
        return "an argument is not valid UTF-8: text arguments must be UTF-8 (file paths may be any bytes)".into();
    }
    let text = e.to_string();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    format!("{first} (see `fieldsync --help`)")
}

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
                return ExitCode::from(2);
            }
            _ => {
                eprintln!("fieldsync: {}", usage_error(&e));
                return ExitCode::from(2);
            }
        },
    };
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fieldsync: {e}");
            ExitCode::FAILURE
        }
    }
}
