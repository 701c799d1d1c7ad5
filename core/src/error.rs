//! The core's error type: one variant per failure a caller can act on.

use crate::ids::{ClientId, UserId};

/// Everything that can go wrong in the core. Messages are lowercase and name the
/// offending input so that a CLI or an app can show them as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required field or argument was missing or malformed.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field or argument at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The lead-quality gate refused to let a client leave the lead stage.
    #[error("lead-quality gate: missing required fields: {}", .missing.join(", "))]
    GateRefused {
        /// The profile fields that must be filled in first.
        missing: Vec<String>,
    },
    /// The stage name is not part of the team's pipeline.
    #[error("unknown stage {0:?}")]
    UnknownStage(String),
    /// The move is along no edge of the pipeline and was made without a reason.
    #[error("move from {from:?} to {to:?} is not an edge of the pipeline: it needs --skip with a reason")]
    ExceptionNeedsReason {
        /// Current stage.
        from: String,
        /// Requested stage.
        to: String,
    },
    /// Moving to a lost stage needs a loss reason from the configured list.
    #[error("a loss reason is required to move to {stage:?}; configured reasons: {}", .allowed.join(", "))]
    LossReasonRequired {
        /// The lost stage.
        stage: String,
        /// The configured loss reasons.
        allowed: Vec<String>,
    },
    /// A client with the same phone, email or company already exists.
    #[error("possible duplicate of {}; it can still be created deliberately as a duplicate", .matches.iter().map(|m| format!("{} ({}, same {})", m.name, m.client_id, m.matched_on)).collect::<Vec<_>>().join("; "))]
    Duplicate {
        /// The existing clients that look like the same customer.
        matches: Vec<crate::duplicate::DuplicateMatch>,
    },
    /// No client with this id is stored in the replica.
    #[error("unknown client {0}")]
    UnknownClient(ClientId),
    /// No team member with this id or name.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// The acting user's role does not allow the operation.
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// A quote or approval reference that does not exist.
    #[error("unknown quote {0}")]
    UnknownQuote(String),
    /// The replica file is missing, corrupt, or from a newer FieldSync.
    #[error("replica storage: {0}")]
    Storage(String),
    /// A bundle file could not be read.
    #[error("bad bundle: {0}")]
    BadBundle(String),
    /// A document's bytes could not be loaded or do not follow the schema.
    #[error("corrupt document {doc}: {reason}")]
    CorruptDocument {
        /// Document id.
        doc: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The sync server could not be reached or answered with an error.
    #[error("network: {0}")]
    Network(String),
    /// The sync server could not complete uploaded changes from what it has (see
    /// docs/protocol.md): the device resends whole documents.
    #[error("incomplete upload: {0}")]
    Incomplete(String),
    /// The user is no longer in the team.
    #[error("user {0} has departed")]
    Departed(UserId),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
