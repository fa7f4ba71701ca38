//! Snapshots in the namespace's KV bucket: one key per actor, holding the snapshot and the
//! stream sequence it covers, written by compare-and-swap so an older snapshot never replaces a
//! newer one, whatever the interleaving of writers.

use aether_core::{
    ActorId, ActorSnapshot, BackendError, InvalidSnapshot, SnapshotOutcome, StoreError,
};
use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Inner;
use super::failure::unavailable;
use crate::naming::snapshot_key;

/// The value stored under an actor's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredSnapshot {
    pub snapshot: ActorSnapshot,
    /// Stream sequence of the last event the snapshot covers: replay resumes after it.
    pub stream_sequence: u64,
}

impl Inner {
    pub(crate) async fn save_snapshot(
        &self,
        snapshot: ActorSnapshot,
    ) -> Result<SnapshotOutcome, StoreError> {
        self.limits.check_snapshot(&snapshot)?;
        let actor_id = snapshot.actor_id.clone();
        let subject = self.subject(&actor_id);
        let head = self.head(&actor_id, &subject).await?;
        if snapshot.version > head.version {
            return Err(InvalidSnapshot::AheadOfEvents {
                actor_id,
                version: snapshot.version,
                latest: head.version,
            }
            .into());
        }
        let covered = self
            .floor_record(&actor_id, &subject, &head, snapshot.version)
            .await?
            .map_or(0, |r| r.seq);
        let version = snapshot.version;
        let value = serde_json::to_vec(&StoredSnapshot {
            snapshot,
            stream_sequence: covered,
        })
        .map_err(|e| StoreError::backend("encode a snapshot", e))?;
        let key = snapshot_key(&actor_id);
        let what = || format!("save the snapshot of {actor_id}");
        let deadline = super::append::deadline_after(self.config.retry_timeout);
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            if attempt > 1 {
                // Another writer won the compare-and-swap (or a replica answered with a stale
                // revision): back off a little, within the retry budget.
                if tokio::time::Instant::now() >= deadline {
                    return Err(StoreError::Unavailable {
                        message: format!(
                            "NATS at {}: {}: the compare-and-swap kept failing",
                            self.url,
                            what()
                        ),
                        source: None,
                    });
                }
                let pause = Duration::from_millis(u64::from(attempt.min(20)) * 5);
                tokio::time::sleep(pause).await;
            }
            let entry = self
                .snapshots
                .entry(key.as_str())
                .await
                .map_err(|e| unavailable(&self.url, &what(), e))?;
            match entry.filter(|e| e.operation == Operation::Put) {
                Some(entry) => {
                    if let Ok(stored) = serde_json::from_slice::<StoredSnapshot>(&entry.value)
                        && stored.snapshot.version > version
                    {
                        return Ok(SnapshotOutcome::KeptNewer {
                            stored_version: stored.snapshot.version,
                        });
                    }
                    match self
                        .snapshots
                        .update(key.as_str(), value.clone().into(), entry.revision)
                        .await
                    {
                        Ok(_) => return Ok(SnapshotOutcome::Saved),
                        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                        Err(e) => return Err(unavailable(&self.url, &what(), e)),
                    }
                }
                None => match self
                    .snapshots
                    .create(key.as_str(), value.clone().into())
                    .await
                {
                    Ok(_) => return Ok(SnapshotOutcome::Saved),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(unavailable(&self.url, &what(), e)),
                },
            }
        }
    }

    pub(crate) async fn stored_snapshot(
        &self,
        actor_id: &ActorId,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        let entry = self
            .snapshots
            .get(snapshot_key(actor_id))
            .await
            .map_err(|e| unavailable(&self.url, &format!("read the snapshot of {actor_id}"), e))?;
        let Some(bytes) = entry else { return Ok(None) };
        let stored: StoredSnapshot = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::backend(format!("decode the snapshot of {actor_id}"), e))?;
        if &stored.snapshot.actor_id != actor_id {
            return Err(StoreError::Backend {
                message: format!(
                    "the snapshot stored for {actor_id} belongs to {}",
                    stored.snapshot.actor_id
                ),
                source: None,
            });
        }
        Ok(Some(stored))
    }
}
