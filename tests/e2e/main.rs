//! End-to-end scenarios across crates, one module per area.

mod cli;
mod server;
