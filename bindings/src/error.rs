//! The one error type apps see, converted from the core's detailed `Error` in one place
//! ([`From<fieldsync_core::Error>`]). The core has a variant per failure; an app needs to
//! know only what to do next: fix a field, fill in fields, ask someone with more rights,
//! look at a possible duplicate, or report a broken store or network.

use fieldsync_core::Error as CoreError;

use crate::records::DuplicateMatch;

/// What went wrong in a FieldSync call. Kotlin sees `ApiException` subclasses, Swift an
/// `ApiError` enum, Python `ApiError.*` exceptions. Branch on the variant; the `reason`
/// texts are written for people and can be shown as they are.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ApiError {
    /// An argument is missing or malformed, or names something that does not exist (an
    /// unknown client, user, stage or quote, a bundle of another team). Point the user at
    /// `field` and show `reason`.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The argument or profile field at fault, e.g. `name`, `grade`, `stage`,
        /// `client`, `bundle`.
        field: String,
        /// What is wrong with it, in words.
        reason: String,
    },
    /// The lead-quality gate refused to move a client out of the lead stage: fill in the
    /// missing fields (profile field keys) with `editClient`, then move again.
    #[error("lead-quality gate: missing required fields: {}", .missing_fields.join(", "))]
    GateRefused {
        /// The profile fields that must be filled in first, e.g. `company_size`.
        missing_fields: Vec<String>,
    },
    /// The acting user may not do this (their role, a client of another rep, or they have
    /// left the team), or the sync server refused this device's token (unknown, revoked,
    /// or its user departed: HTTP 401/403). Not retryable by this user.
    #[error("not permitted: {reason}")]
    NotPermitted {
        /// Why, in words.
        reason: String,
    },
    /// The new client looks like an existing customer (same phone, email or company).
    /// Show `matches`; to create it anyway, repeat with `allowDuplicate = true`.
    #[error("possible duplicate of {}", .matches.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", "))]
    Duplicate {
        /// The existing clients that look like the same customer.
        matches: Vec<DuplicateMatch>,
    },
    /// The replica file is missing, corrupt, locked or from a newer FieldSync, or a
    /// document could not be read. Not fixable by the user: report it.
    #[error("storage: {reason}")]
    Storage {
        /// What failed.
        reason: String,
    },
    /// The sync server could not be reached, timed out, answered with a server error, or
    /// could not complete a sync round (`joinServer`, `sync`). Retry later: changes made on
    /// this device stay in the outbox until a sync delivers them.
    #[error("network: {reason}")]
    Network {
        /// What failed.
        reason: String,
    },
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let invalid = |field: &str, e: &CoreError| ApiError::InvalidInput {
            field: field.to_string(),
            reason: e.to_string(),
        };
        match e {
            CoreError::InvalidInput { field, reason } => ApiError::InvalidInput { field, reason },
            CoreError::GateRefused { missing } => ApiError::GateRefused {
                missing_fields: missing,
            },
            CoreError::UnknownStage(_) => invalid("stage", &e),
            CoreError::ExceptionNeedsReason { .. } => invalid("reason", &e),
            CoreError::LossReasonRequired { .. } => invalid("loss_reason", &e),
            CoreError::UnknownClient(_) => invalid("client", &e),
            CoreError::UnknownUser(_) => invalid("user", &e),
            CoreError::UnknownQuote(_) => invalid("quote", &e),
            CoreError::BadBundle(_) => invalid("bundle", &e),
            CoreError::Duplicate { matches } => ApiError::Duplicate {
                matches: matches.into_iter().map(Into::into).collect(),
            },
            CoreError::NotPermitted(reason) => ApiError::NotPermitted { reason },
            CoreError::Departed(_) => ApiError::NotPermitted {
                reason: e.to_string(),
            },
            CoreError::Network(reason) => ApiError::Network { reason },
            // A sync round the server could not complete: retrying resends whole documents.
            CoreError::Incomplete(_) => ApiError::Network {
                reason: e.to_string(),
            },
            CoreError::Storage(_) | CoreError::CorruptDocument { .. } => ApiError::Storage {
                reason: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_refusal_keeps_the_missing_fields() {
        let e: ApiError = CoreError::GateRefused {
            missing: vec!["company_size".into(), "budget_range".into()],
        }
        .into();
        assert!(matches!(
            e,
            ApiError::GateRefused { ref missing_fields } if missing_fields == &["company_size", "budget_range"]
        ));
    }

    #[test]
    fn the_servers_refusals_and_network_failures_keep_their_kind() {
        let refused: ApiError = CoreError::NotPermitted("server: unknown token".into()).into();
        assert!(
            matches!(refused, ApiError::NotPermitted { ref reason } if reason.contains("unknown token"))
        );
        let down: ApiError = CoreError::Network("connection refused".into()).into();
        assert!(matches!(down, ApiError::Network { .. }));
        let redo: ApiError = CoreError::Incomplete("missing changes".into()).into();
        assert!(
            matches!(redo, ApiError::Network { ref reason } if reason.contains("missing changes"))
        );
    }

    #[test]
    fn an_unknown_stage_is_invalid_input_naming_the_stage() {
        let e: ApiError = CoreError::UnknownStage("nowhere".into()).into();
        assert!(matches!(e, ApiError::InvalidInput { ref field, .. } if field == "stage"));
        assert!(e.to_string().contains("nowhere"));
    }
}
