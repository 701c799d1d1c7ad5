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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_non_utf8_argument_is_a_clear_one_line_error() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let argv = [
            OsString::from("fieldsync"),
            OsString::from("search"),
            OsString::from_vec(vec![0xe5, 0x8d, 0xff]),
        ];
        let err = args::Cli::try_parse_from(argv).map(|_| ()).err();
        let msg = err.as_ref().map(usage_error).unwrap_or_default();
        assert!(msg.contains("not valid UTF-8"), "{msg}");
        assert_eq!(msg.lines().count(), 1);
    }

    #[test]
    fn clap_errors_are_shortened_to_one_line() {
        let err = args::Cli::try_parse_from(["fieldsync", "stage", "move"]).err();
        let msg = err.as_ref().map(usage_error).unwrap_or_default();
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(msg.contains("required"), "{msg}");
    }
}
