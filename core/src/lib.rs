//! FieldSync core: the domain of an offline-first sales CRM on automerge documents.
//!
//! - [`team`] and [`client`]: the documents (one team document, one document per client).
//! - [`fold`]: the deterministic derivation of current stage and owner from event lists.
//! - [`store`]: the SQLite replica file: documents, outbox and read model.
//! - [`replica`]: the entry point apps and the CLI use, enforcing the pipeline rules.
//! - [`report`]: board, flow-health report and overdue list, from the read model.
//! - [`bundle`]: offline exchange of changes as files.
//!
//! The core has no async runtime and does no I/O besides its SQLite file.

pub mod bundle;
pub mod client;
pub mod clock;
pub mod duplicate;
pub mod error;
pub mod fold;
pub mod ids;
pub mod pipeline;
#[cfg(feature = "http")]
pub mod remote;
pub mod replica;
pub mod report;
pub mod store;
pub mod sync;
pub mod team;
pub mod wire;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use ids::{ClientId, DeviceId, TeamId, UserId};
pub use replica::{MoveOptions, NewClient, Replica};
