//! What a failed JetStream call means for the store: a lost race, a duplicate, something to
//! retry, or a real error. JetStream reports lost races as error 10071 on a single server and
//! 10164 in clusters (where async-nats files it under `Other`), so the codes are matched here.

use std::error::Error as _;

use aether_core::StoreError;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};

/// JetStream error codes the store acts on (`server/errors.json`).
mod code {
    pub(super) const WRONG_LAST_SEQUENCE: u64 = 10071;
    pub(super) const WRONG_LAST_SEQUENCE_CLUSTERED: u64 = 10164;
    pub(super) const EXPECTED_CHECK_UNAVAILABLE: u64 = 10163;
    pub(super) const BATCH_INCOMPLETE: u64 = 10176;
    pub(super) const BATCH_DUPLICATE_MESSAGE_ID: u64 = 10201;
    pub(super) const BATCH_TOO_MANY_INFLIGHT: u64 = 10210;
    pub(super) const BATCH_DISABLED: u64 = 10174;
    pub(super) const DUPLICATE_ID_IN_PROCESS: u64 = 10158;
}

/// The meaning of a failed publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishFailure {
    /// The expected-sequence check failed: someone else wrote first (or our earlier attempt did).
    Conflict,
    /// An atomic batch carried an event id that is already stored (10201).
    DuplicateIdInBatch,
    /// The outcome is unknown (no ack came back): check the slot, then retry.
    Uncertain,
    /// The server refused for now and stored nothing (no leader yet, a copy of this id still
    /// in process, too many batches in flight): wait, then retry.
    Busy,
    /// Anything else: report it.
    Fatal,
}

/// The JetStream API error code behind a publish error, if the server sent one.
pub(crate) fn error_code(error: &PublishError) -> Option<u64> {
    let js = error
        .source()?
        .downcast_ref::<async_nats::jetstream::Error>()?;
    Some(js.error_code().0)
}

pub(crate) fn classify(error: &PublishError) -> PublishFailure {
    match error.kind() {
        PublishErrorKind::WrongLastSequence => return PublishFailure::Conflict,
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            return PublishFailure::Uncertain;
        }
        // StreamNotFound is also "no responders": a clustered stream without a leader just now.
        PublishErrorKind::StreamNotFound | PublishErrorKind::MaxAckPending => {
            return PublishFailure::Busy;
        }
        _ => {}
    }
    match error_code(error) {
        Some(code::WRONG_LAST_SEQUENCE | code::WRONG_LAST_SEQUENCE_CLUSTERED) => {
            PublishFailure::Conflict
        }
        Some(code::BATCH_DUPLICATE_MESSAGE_ID) => PublishFailure::DuplicateIdInBatch,
        // No JetStream answer at all (e.g. an ack that did not parse): the write may have landed.
        None if error.kind() == PublishErrorKind::Other => PublishFailure::Uncertain,
        Some(
            code::EXPECTED_CHECK_UNAVAILABLE
            | code::BATCH_INCOMPLETE
            | code::BATCH_TOO_MANY_INFLIGHT
            | code::DUPLICATE_ID_IN_PROCESS,
        ) => PublishFailure::Busy,
        _ => PublishFailure::Fatal,
    }
}

/// A publish error the store does not handle, as a [`StoreError`] that says where it happened.
pub(crate) fn publish_error(stream: &str, subject: &str, error: PublishError) -> StoreError {
    let hint = match error_code(&error) {
        Some(code::BATCH_DISABLED) => {
            " (the stream does not allow atomic batches: set allow_atomic_publish, server ≥ 2.12)"
        }
        _ => "",
    };
    StoreError::Backend {
        message: format!("publish to {subject} on stream {stream} failed: {error}{hint}"),
        source: Some(Box::new(error)),
    }
}

/// The server could not be reached or did not answer in time.
pub(crate) fn unavailable(
    url: &str,
    what: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Unavailable {
        message: format!("NATS at {url}: {what}: {error}"),
        source: Some(Box::new(error)),
    }
}

/// A subject the server refused this connection's user.
pub(crate) fn permission_denied(
    violation: crate::permissions::violations::Violation,
) -> StoreError {
    StoreError::PermissionDenied {
        action: violation.action.to_owned(),
        subject: violation.subject,
    }
}
