//! Which failed JetStream writes are lost compare-and-swaps. A single server reports a wrong
//! expected sequence as error 10071 (`PublishErrorKind::WrongLastSequence`); a clustered
//! stream also reports 10164 when another expected-sequence write to the subject is in flight,
//! and async-nats files that one under `PublishErrorKind::Other` (`notes/nats-jetstream.md`
//! §1). Both are conflicts.

use std::error::Error as _;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::kv::{UpdateError, UpdateErrorKind};

/// "wrong last sequence: N" (the subject's last sequence is N).
const WRONG_LAST_SEQUENCE: u64 = 10071;
/// "wrong last sequence", from a clustered stream (a concurrent expected-sequence write).
const WRONG_LAST_SEQUENCE_CLUSTERED: u64 = 10164;

/// The JetStream API error code behind a publish error, if the server sent one.
pub(crate) fn error_code(error: &PublishError) -> Option<u64> {
    let js = error
        .source()?
        .downcast_ref::<async_nats::jetstream::Error>()?;
    Some(js.error_code().0)
}

/// Whether a publish failed its expected-sequence check (10071 or 10164).
pub(crate) fn is_conflict(error: &PublishError) -> bool {
    error.kind() == PublishErrorKind::WrongLastSequence
        || matches!(
            error_code(error),
            Some(WRONG_LAST_SEQUENCE | WRONG_LAST_SEQUENCE_CLUSTERED)
        )
}

/// Whether a KV update or delete failed its expected-revision check (10071 or 10164).
pub(crate) fn is_update_conflict(error: &UpdateError) -> bool {
    error.kind() == UpdateErrorKind::WrongLastRevision
        || error
            .source()
            .and_then(|source| source.downcast_ref::<PublishError>())
            .is_some_and(is_conflict)
}
