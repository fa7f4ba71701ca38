//! The map write as one ADR-50 atomic batch (`notes/nats-jetstream.md` §5–6; async-nats 0.51
//! has no batch publisher, so it is hand-rolled): the history record (staged, a core publish)
//! carrying the lease check, then the map (the commit, a JetStream publish) carrying the map's
//! CAS. The server stores both or neither.

use aether_core::BackendError;
use async_nats::HeaderMap;
use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL, NATS_BATCH_ID, NATS_BATCH_SEQUENCE,
    NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
};
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use bytes::Bytes;

use crate::kv::{ClusterStore, error_code, is_conflict};
use crate::{ClusterError, Revision};

/// Points the expected-last-subject-sequence check at another subject (server 2.11+; async-nats
/// 0.51 has no constant for it).
const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";

/// JetStream error codes a batch may meet (`server/errors.json`).
mod code {
    /// The expected-per-subject check is temporarily unavailable (503).
    pub(super) const EXPECTED_CHECK_UNAVAILABLE: u64 = 10163;
    /// A staged message was lost: nothing stored.
    pub(super) const BATCH_INCOMPLETE: u64 = 10176;
    /// Too many batches in flight on the stream (429).
    pub(super) const BATCH_TOO_MANY_INFLIGHT: u64 = 10210;
    /// The stream does not allow atomic batches.
    pub(super) const BATCH_DISABLED: u64 = 10174;
}

/// One map write: what to send and what the server must find.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) history_subject: String,
    pub(super) history: Bytes,
    pub(super) map_subject: String,
    pub(super) map: Bytes,
    /// The map key's last revision the new version was computed from (0: no map yet).
    pub(super) expected_revision: Revision,
    pub(super) lease_subject: String,
    /// The lease key's last revision: a write of the writer's own lease.
    pub(super) lease_revision: Revision,
}

/// Why a batch was not stored.
#[derive(Debug)]
pub(super) enum Sent {
    /// An expected-sequence check failed (10071, or 10164 on a clustered stream): the map's or
    /// the lease's; nothing was stored.
    Refused(PublishError),
    /// The server could not take it just now; nothing was stored: send it again.
    Busy(PublishError),
    /// Anything else (after a timeout the batch may have been stored).
    Failed(ClusterError),
}

impl Batch {
    /// Sends the batch; the map's new revision if the server stored it.
    pub(super) async fn send(&self, store: &ClusterStore) -> Result<Revision, Sent> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut history = HeaderMap::new();
        history.insert(NATS_BATCH_ID, id.as_str());
        history.insert(NATS_BATCH_SEQUENCE, "1");
        history.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            self.lease_revision.to_string(),
        );
        history.insert(
            EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
            self.lease_subject.as_str(),
        );
        store
            .js
            .client()
            .publish_with_headers(self.history_subject.clone(), history, self.history.clone())
            .await
            .map_err(|e| Sent::Failed(unavailable(e)))?;

        let mut map = HeaderMap::new();
        map.insert(NATS_BATCH_ID, id.as_str());
        map.insert(NATS_BATCH_SEQUENCE, "2");
        map.insert(NATS_BATCH_COMMIT, NATS_BATCH_COMMIT_FINAL);
        map.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            self.expected_revision.to_string(),
        );
        let ack = store
            .js
            .publish_with_headers(self.map_subject.clone(), map, self.map.clone())
            .await
            .map_err(|e| Sent::Failed(unavailable(e)))?
            .await;
        // The commit's sequence is the batch's last message: the map.
        ack.map(|ack| Revision::new(ack.sequence)).map_err(classify)
    }
}

fn classify(error: PublishError) -> Sent {
    if is_conflict(&error) {
        return Sent::Refused(error);
    }
    match error.kind() {
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            return Sent::Failed(unavailable(error));
        }
        // "No responders": a clustered stream without a leader just now.
        PublishErrorKind::StreamNotFound => return Sent::Busy(error),
        _ => {}
    }
    match error_code(&error) {
        Some(
            code::EXPECTED_CHECK_UNAVAILABLE
            | code::BATCH_INCOMPLETE
            | code::BATCH_TOO_MANY_INFLIGHT,
        ) => Sent::Busy(error),
        Some(code::BATCH_DISABLED) => Sent::Failed(ClusterError::backend(
            "cannot write the shard map: the coordination stream does not allow atomic \
             batches (nats-server >= 2.12 and allow_atomic are needed)",
            error,
        )),
        _ => Sent::Failed(ClusterError::backend("cannot write the shard map", error)),
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> ClusterError {
    ClusterError::Unavailable {
        message: "no answer writing the shard map".to_owned(),
        source: Some(Box::new(error)),
    }
}
