//! FieldSync mobile SDK: the uniffi layer that Android (Kotlin), iOS (Swift) and Python
//! call. It holds no domain logic: [`Replica`] wraps `fieldsync_core::Replica` and each
//! method delegates to one core method.
//!
//! - [`replica`]: the `Replica` object (open, create or join a replica file, join a sync
//!   server; clients, notes, stages, approvals, handovers, conflicts, board, report,
//!   search, bundles, sync).
//! - [`records`]: the plain data that crosses the boundary, converted from core types.
//! - [`error`]: `ApiError`, the few failures app code acts on, converted from the core's
//!   `Error` in one place.
//! - [`listener`]: `ClientChangeListener`, implemented by the app to hear which clients
//!   changed.
//!
//! Blocking calls run on the caller's thread; `sync`, `syncWith` and the `…Async` methods
//! run on tokio's blocking pool and surface as Kotlin `suspend` and Swift `async`
//! functions (the network I/O is the core's blocking HTTP transport, feature `http`). Generation and
//! tests: `scripts/bindings.sh`; integration guide: `docs/mobile.md`.

pub mod error;
pub mod listener;
pub mod records;
pub mod replica;

pub use error::ApiError;
pub use listener::ClientChangeListener;
pub use replica::Replica;

uniffi::setup_scaffolding!();
