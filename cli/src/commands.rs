//! Runs parsed commands against a replica: the context (replica path, clock, output
//! mode), the CLI's error type, and the dispatch to one module per area.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fieldsync_core::{Clock, ManualClock, Replica, SystemClock};
use serde::Serialize;

use crate::args::{Cli, Command};

pub mod clients;
pub mod sync;
pub mod team;
pub mod views;

/// A refusal, shown as one line `fieldsync: <message>` with a non-zero exit code.
#[derive(Debug)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the source said.
        let one_line: Vec<&str> = self
            .0
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        f.write_str(&one_line.join(" "))
    }
}

impl From<fieldsync_core::Error> for Failure {
    fn from(e: fieldsync_core::Error) -> Self {
        use fieldsync_core::Error as E;
        match e {
            E::Duplicate { matches } => Failure(format!(
                "possible duplicate of {}; create it anyway with --allow-duplicate",
                matches
                    .iter()
                    .map(|m| format!(
                        "{} ({}, same {})",
                        m.name,
                        crate::output::short(&m.client_id),
                        m.matched_on
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            other => Failure(other.to_string()),
        }
    }
}

/// Result of a command.
pub type Result<T = ()> = std::result::Result<T, Failure>;

/// Shorthand for a refusal.
pub fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(Failure(msg.into()))
}

/// Reads a file, naming it on failure.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())))
}

/// Writes a file, naming it on failure.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result {
    std::fs::write(path, bytes)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

/// Reads the clock: `FIELDSYNC_NOW` (integer milliseconds since the epoch) fixes it.
pub fn clock_from_env() -> Result<Arc<dyn Clock>> {
    match std::env::var_os("FIELDSYNC_NOW") {
        None => Ok(Arc::new(SystemClock)),
        Some(raw) => {
            let parsed = raw.to_str().and_then(|s| s.trim().parse::<i64>().ok());
            match parsed {
                Some(ms) if ms >= 0 => Ok(Arc::new(ManualClock::new(ms))),
                _ => fail(format!(
                    "FIELDSYNC_NOW must be integer milliseconds since the Unix epoch, not {raw:?}"
                )),
            }
        }
    }
}

/// What every command gets: where the replica is, the clock, and the output mode.
pub struct Ctx {
    /// The replica file.
    pub db: PathBuf,
    /// JSON output.
    pub json: bool,
    /// The clock replicas are opened with.
    pub clock: Arc<dyn Clock>,
}

impl Ctx {
    /// Opens the replica.
    pub fn open(&self) -> Result<Replica> {
        Ok(Replica::open(&self.db, self.clock.clone())?)
    }

    /// Prints a value as JSON.
    pub fn print_json<T: Serialize>(&self, value: &T) -> Result {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Failure(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        Ok(())
    }

    /// Prints JSON in `--json` mode, else the human text.
    pub fn print<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) -> Result {
        if self.json {
            self.print_json(value)
        } else {
            print!("{}", human());
            Ok(())
        }
    }
}

/// Runs one command.
pub fn run(cli: Cli) -> Result {
    let ctx = Ctx {
        db: cli.db,
        json: cli.json,
        clock: clock_from_env()?,
    };
    match cli.command {
        Command::Init(args) => team::init(&ctx, args),
        Command::Whoami => team::whoami(&ctx),
        Command::User(cmd) => team::user(&ctx, cmd),
        Command::Device(cmd) => team::device(&ctx, cmd),
        Command::Client(cmd) => clients::client(&ctx, cmd),
        Command::Search { query } => clients::search(&ctx, &query),
        Command::Note(cmd) => clients::note(&ctx, cmd),
        Command::Stage(cmd) => clients::stage(&ctx, cmd),
        Command::Approval(cmd) => clients::approval(&ctx, cmd),
        Command::Task(cmd) => clients::task(&ctx, cmd),
        Command::Handover(args) => clients::handover(&ctx, args),
        Command::Conflicts => views::conflicts(&ctx),
        Command::Duplicates => views::duplicates(&ctx),
        Command::Board => views::board(&ctx),
        Command::Report => views::report(&ctx),
        Command::Overdue => views::overdue(&ctx),
        Command::Heads { out } => sync::heads(&ctx, &out),
        Command::Export { out, have } => sync::export(&ctx, &out, have.as_deref()),
        Command::Import { file } => sync::import(&ctx, &file),
        Command::Join { server, token } => sync::join(&ctx, &server, &token),
        Command::Sync {
            watch,
            max_syncs,
            wait_seconds,
        } => sync::sync(&ctx, watch, max_syncs, wait_seconds),
        Command::Demo { dir } => crate::demo::run(&ctx, dir),
    }
}
