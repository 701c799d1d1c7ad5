//! `fieldsync demo`.
use std::path::PathBuf;

use crate::commands::{Ctx, Result};

/// Runs the demo.
pub fn run(_ctx: &Ctx, _dir: Option<PathBuf>) -> Result {
    Ok(())
}
