//! The versioned shard map in KV, fenced by the leader's lease on the NATS server, and its
//! history.
//!
//! The map lives under [`MAP_KEY`] of the coordination bucket as a [`StoredShardMap`] (JSON),
//! next to the lease; version `v`'s [`MapChange`] (version, epoch, leader, reason, moved
//! shards) lives under `history.<v>`. A write is **one atomic batch** of two messages (ADR
//! 0007): the history record, which requires the lease key's last revision to be the writer's
//! own (`Nats-Expected-Last-Subject-Sequence` + `…-Subject` on the lease key), then the map,
//! which requires the map key's last revision to be the one the new version was computed from.
//! The server stores both or neither, so
//!
//! - a writer whose lease was taken, released or expired since it last checked it locally (a
//!   leader stalled by SIGSTOP, a slow request or a publish buffered across a reconnect) is
//!   refused by the server ([`ClusterError::Fenced`]) and nobody ever sees its map;
//! - two writers never fork the map (the second CAS fails) and versions go up by exactly one;
//! - the history has exactly one record per version, with nothing to repair.
//!
//! The writer also checks locally, before reading and before each send: its lease must be
//! valid by its own deadline and its epoch not lower than the stored map's. When the holder's
//! own renewal moved the lease between its local check and the server's (the lease key's last
//! revision is a renewal of the same lease), the write is retried on that revision, at most
//! [`WRITE_ATTEMPTS`] times.

mod batch;
#[cfg(test)]
mod tests;
mod watch;

use aether_core::BackendError;
use std::time::Duration;

use aether_core::{NodeId, PlacementError, ShardCount, ShardMap, ShardMove, shard_moves};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::kv;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::kv::{ClusterStore, LEASE_KEY, MAP_KEY};
use crate::lease::{LeaseFence, LeaseHolder};
use crate::placement::{Handoff, Placement};
use crate::{ClusterConfig, ClusterError, Epoch, MapVersion, Revision};

use batch::{Batch, Sent};

pub use watch::ShardMapWatch;

/// How often [`ShardMapStore::write`] sends its batch when the server refuses it for a reason
/// that does not settle the outcome: the holder's own renewal moved the lease, another write
/// to the map or the lease was still in flight (10164 on a clustered stream), or the server
/// was briefly unable to check. Between attempts it pauses 10, 20, 40, … ms.
pub const WRITE_ATTEMPTS: u32 = 5;

/// The shard map as stored in KV: the map plus its version and the leader (and epoch) that
/// wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredShardMap {
    /// 1 for the first map, then +1 per write.
    pub version: MapVersion,
    /// The epoch of the lease under which it was written.
    pub epoch: Epoch,
    /// The node that wrote it.
    pub leader: NodeId,
    /// Why it was written (free text from the leader, e.g. `node n3 failed`).
    pub reason: String,
    /// The map itself.
    pub map: ShardMap,
    /// Owners' incarnations and moving shards, for actors' handoff (ADR 0009). A field of
    /// its own, not flattened: serde reads a flattened map's number keys (`moving`) as
    /// strings, and the map would not decode.
    #[serde(default, skip_serializing_if = "Handoff::is_empty")]
    pub handoff: Handoff,
}

impl StoredShardMap {
    /// The placement this map describes (owners with incarnations, moving shards).
    pub fn placement(&self) -> Placement {
        Placement::of(self.version, &self.map, &self.handoff)
    }
}

/// One history record (key `history.<version>`): what a map version changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MapChange {
    /// The version written.
    pub version: MapVersion,
    /// The epoch it was written under.
    pub epoch: Epoch,
    /// The node that wrote it.
    pub leader: NodeId,
    /// Why.
    pub reason: String,
    /// The shards whose owner changed from the previous version (for version 1: from no
    /// owner).
    pub moved: Vec<ShardMove>,
}

impl MapChange {
    fn of(stored: &StoredShardMap, moved: Vec<ShardMove>) -> Self {
        Self {
            version: stored.version,
            epoch: stored.epoch,
            leader: stored.leader.clone(),
            reason: stored.reason.clone(),
            moved,
        }
    }
}

/// The outcome of a successful [`ShardMapStore::write`].
#[derive(Debug)]
#[non_exhaustive]
pub struct MapWritten {
    /// The map as stored.
    pub stored: StoredShardMap,
    /// Its KV revision: the `expected_revision` of the next write.
    pub revision: Revision,
}

/// Reads, writes (fenced) and watches the cluster's shard map, and reads its history.
#[derive(Debug, Clone)]
pub struct ShardMapStore {
    store: ClusterStore,
    shard_count: ShardCount,
    timeout: Duration,
    /// Test seam: awaited after the last local fence check, just before the map is sent.
    #[cfg(test)]
    before_send: Option<tests::Hook>,
}

impl ShardMapStore {
    /// The shard map of `store`'s cluster, for `config.shard_count` shards.
    pub fn new(store: ClusterStore, config: &ClusterConfig) -> Self {
        Self {
            store,
            shard_count: config.shard_count,
            timeout: config.request_timeout,
            #[cfg(test)]
            before_send: None,
        }
    }

    /// The cluster's shard count.
    pub fn shard_count(&self) -> ShardCount {
        self.shard_count
    }

    /// The stored map and its revision; `None` if no map was ever written.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if NATS does not answer; [`ClusterError::Backend`] if it
    /// refuses, the value is not a valid map, or the key was deleted outside Aether.
    pub async fn load(&self) -> Result<Option<(StoredShardMap, Revision)>, ClusterError> {
        let entry = self
            .store
            .coord
            .entry(MAP_KEY)
            .await
            .map_err(|e| match e.kind() {
                kv::EntryErrorKind::TimedOut => unavailable("reading the shard map", e),
                _ => ClusterError::backend("cannot read the shard map", e),
            })?;
        match entry {
            None => Ok(None),
            Some(entry) => {
                decode_entry(&entry).map(|stored| Some((stored, Revision::new(entry.revision))))
            }
        }
    }

    /// Writes `next` as the next version, with its history record, if `lease` still holds and
    /// nobody wrote since `expected_revision` (the revision from [`load`](Self::load), or 0
    /// when there is no map yet). See the module docs for the checks the server makes.
    ///
    /// # Errors
    ///
    /// Nothing is written on any error:
    /// - [`ClusterError::NotLeader`] if the lease is not valid by its own deadline (checked
    ///   before reading and again before each send), or its epoch is lower than the stored
    ///   map's (a newer leader has written);
    /// - [`ClusterError::Fenced`] if the server refused the write because the lease key no
    ///   longer holds this lease (taken, released or expired since the local check);
    /// - [`ClusterError::Conflict`] if the map's revision is not `expected_revision` (read
    ///   first, or the server's CAS lost the race);
    /// - [`ClusterError::InvalidConfig`] if `next` has another shard count than this store's
    ///   configuration or the stored map (a cluster's shard count is fixed);
    /// - [`ClusterError::Unavailable`] / [`ClusterError::Backend`] if NATS does not answer or
    ///   refuses. After [`ClusterError::Unavailable`] the write may have landed: read again.
    pub async fn write(
        &self,
        lease: &impl AsRef<LeaseFence>,
        next: ShardMap,
        reason: &str,
        expected_revision: Revision,
    ) -> Result<MapWritten, ClusterError> {
        self.write_placement(lease, next, Handoff::default(), reason, expected_revision)
            .await
    }

    /// [`write`](Self::write) with what actors' handoff needs besides the owners: their
    /// incarnations and the shards still moving (ADR 0009). What the rebalancer writes.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    #[tracing::instrument(
        level = "debug",
        name = "aether.cluster.shard_map.write",
        skip_all,
        fields(reason, epoch = %lease.as_ref().epoch(), node = %lease.as_ref().node())
    )]
    pub async fn write_placement(
        &self,
        lease: &impl AsRef<LeaseFence>,
        next: ShardMap,
        handoff: Handoff,
        reason: &str,
        expected_revision: Revision,
    ) -> Result<MapWritten, ClusterError> {
        let fence = lease.as_ref();
        fence.check()?;
        check_shard_count(self.shard_count, next.shard_count())?;
        let current = self.load().await?;
        let current_revision = current
            .as_ref()
            .map_or(Revision::default(), |(_, revision)| *revision);
        if current_revision != expected_revision {
            return Err(map_conflict(expected_revision));
        }
        let previous = current.map(|(stored, _)| stored);
        if let Some(previous) = &previous {
            if previous.epoch > fence.epoch() {
                tracing::warn!(
                    stored = %previous.epoch,
                    ours = %fence.epoch(),
                    "shard map: refusing to write under an older epoch"
                );
                return Err(ClusterError::NotLeader);
            }
            check_shard_count(previous.map.shard_count(), next.shard_count())?;
        }
        let stored = StoredShardMap {
            version: previous
                .as_ref()
                .map_or(MapVersion::default(), |p| p.version)
                .next(),
            epoch: fence.epoch(),
            leader: fence.node().clone(),
            reason: reason.to_owned(),
            map: next,
            handoff,
        };
        let moved = match &previous {
            Some(previous) => shard_moves(&previous.map, &stored.map),
            None => shard_moves(&ShardMap::unassigned(self.shard_count), &stored.map),
        };
        let change = MapChange::of(&stored, moved);
        let mut batch = Batch {
            history_subject: self.store.history_subject(stored.version),
            history: encode(&change, "a shard-map history record")?,
            map_subject: self.store.coord_subject(MAP_KEY),
            map: encode(&stored, "the shard map")?,
            expected_revision,
            lease_subject: self.store.coord_subject(LEASE_KEY),
            lease_revision: fence.revision(),
        };
        let mut last_error = None;
        for attempt in 0..WRITE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(10 << (attempt - 1))).await;
            }
            fence.check()?;
            #[cfg(test)]
            if let Some(hook) = &self.before_send {
                hook.run().await;
            }
            match batch.send(&self.store).await {
                Ok(revision) => {
                    metrics::counter!("aether_cluster_shard_map_writes_total").increment(1);
                    metrics::counter!("aether_cluster_shard_moves_total")
                        .increment(change.moved.len() as u64);
                    metrics::gauge!("aether_cluster_shard_map_version")
                        .set(stored.version.get() as f64);
                    tracing::info!(
                        version = %stored.version,
                        epoch = %stored.epoch,
                        moved = change.moved.len(),
                        reason,
                        "shard map written"
                    );
                    return Ok(MapWritten { stored, revision });
                }
                Err(Sent::Refused(error)) => {
                    self.settle_refusal(fence, &mut batch).await?;
                    last_error = Some(error);
                }
                Err(Sent::Busy(error)) => last_error = Some(error),
                Err(Sent::Failed(error)) => return Err(error),
            }
        }
        Err(ClusterError::Unavailable {
            message: format!(
                "the shard-map write was refused {WRITE_ATTEMPTS} times without a settled \
                 outcome (lease renewals or a busy server)"
            ),
            source: last_error.map(|e| Box::new(e) as aether_core::BoxError),
        })
    }

    /// After the server refused a batch for one of its expected-sequence checks: which one,
    /// from the stream leader's view (not a replica's, which may lag). The map's:
    /// [`ClusterError::Conflict`]. The lease's, because another node holds the lease or nobody
    /// does: [`ClusterError::Fenced`]. Otherwise (this holder's own renewal moved the lease, or
    /// a write still in flight made a clustered stream refuse): `Ok`, with the batch set to the
    /// lease's current revision for the next try.
    async fn settle_refusal(
        &self,
        fence: &LeaseFence,
        batch: &mut Batch,
    ) -> Result<(), ClusterError> {
        let map = self.last_message(&batch.map_subject).await?;
        if Revision::new(map.map_or(0, |m| m.sequence)) != batch.expected_revision {
            return Err(map_conflict(batch.expected_revision));
        }
        let lease = self.last_message(&batch.lease_subject).await?;
        let holder = match &lease {
            Some(message) => LeaseHolder::from_message(message)?,
            None => None,
        };
        match holder {
            Some(holder) if holder.node == *fence.node() && holder.epoch == fence.epoch() => {
                batch.lease_revision = holder.revision.max(fence.revision());
                tracing::debug!(
                    epoch = %fence.epoch(),
                    lease_revision = %batch.lease_revision,
                    "shard map: the write was refused under this node's own lease; again"
                );
                Ok(())
            }
            holder => {
                metrics::counter!("aether_cluster_shard_map_fenced_total").increment(1);
                tracing::warn!(
                    epoch = %fence.epoch(),
                    lease_revision = %batch.lease_revision,
                    holder = ?holder.map(|h| (h.node, h.epoch)),
                    "shard map: the server refused the write; the lease has moved on"
                );
                Err(ClusterError::Fenced {
                    epoch: fence.epoch(),
                    lease_revision: batch.lease_revision,
                })
            }
        }
    }

    /// The stored map, read from the coordination stream's leader: a KV read may be answered
    /// by a replica that lags (direct get), and a node that was paused must not serve from a
    /// placement older than the newest (ADR 0009). `None` if no map was ever written.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub async fn load_latest(&self) -> Result<Option<StoredShardMap>, ClusterError> {
        let subject = self.store.coord_subject(MAP_KEY);
        let Some(message) = self.last_message(&subject).await? else {
            return Ok(None);
        };
        let operation = message
            .headers
            .get("KV-Operation")
            .map(|v| v.as_str().to_owned());
        if operation.is_some_and(|op| op != "PUT") {
            return Err(ClusterError::Backend {
                message: format!(
                    "the shard map was deleted outside Aether (sequence {})",
                    message.sequence
                ),
                source: None,
            });
        }
        serde_json::from_slice(&message.payload)
            .map(Some)
            .map_err(|e| {
                ClusterError::backend(
                    format!(
                        "the shard map at sequence {} is not valid",
                        message.sequence
                    ),
                    e,
                )
            })
    }

    /// The last message on `subject` of the coordination stream, read from its leader.
    async fn last_message(&self, subject: &str) -> Result<Option<StreamMessage>, ClusterError> {
        match self
            .store
            .coord
            .stream
            .get_last_raw_message_by_subject(subject)
            .await
        {
            Ok(message) => Ok(Some(message)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) if e.kind() == LastRawMessageErrorKind::Other => {
                Err(unavailable(&format!("reading {subject}"), e))
            }
            Err(e) => Err(ClusterError::backend(format!("cannot read {subject}"), e)),
        }
    }

    /// Every history record, in order.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if NATS does not answer in time; [`ClusterError::Backend`]
    /// if it refuses or a record is not valid.
    pub async fn history(&self) -> Result<Vec<MapChange>, ClusterError> {
        let consumer = self
            .store
            .coord
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.store.history_filter(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::backend("cannot read the shard-map history", e))?;
        let mut remaining = consumer.cached_info().num_pending;
        let mut records = Vec::with_capacity(usize::try_from(remaining).unwrap_or(0));
        if remaining == 0 {
            return Ok(records);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| ClusterError::backend("cannot read the shard-map history", e))?;
        while remaining > 0 {
            let message = match tokio::time::timeout(self.timeout, messages.next()).await {
                Err(elapsed) => return Err(unavailable("reading the shard-map history", elapsed)),
                Ok(None) => {
                    return Err(ClusterError::Backend {
                        message: "the shard-map history ended early".to_owned(),
                        source: None,
                    });
                }
                Ok(Some(Err(e))) => {
                    return Err(ClusterError::backend(
                        "cannot read the shard-map history",
                        e,
                    ));
                }
                Ok(Some(Ok(message))) => message,
            };
            remaining = message
                .info()
                .map_err(|e| ClusterError::Backend {
                    message: "a shard-map history message has no metadata".to_owned(),
                    source: Some(e),
                })?
                .pending;
            records.push(decode_change(&message.payload)?);
        }
        Ok(records)
    }

    /// Watches the map: the stored map first (if any), then every new version. See
    /// [`ShardMapWatch`] for what it skips.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Backend`] if the watch cannot be created.
    pub async fn watch(&self) -> Result<ShardMapWatch, ClusterError> {
        let inner = self
            .store
            .coord
            .watch_with_history(MAP_KEY)
            .await
            .map_err(|e| ClusterError::backend("cannot watch the shard map", e))?;
        Ok(ShardMapWatch::new(inner))
    }
}

fn check_shard_count(expected: ShardCount, requested: ShardCount) -> Result<(), ClusterError> {
    if expected == requested {
        Ok(())
    } else {
        Err(ClusterError::InvalidConfig(
            PlacementError::ShardCountMismatch {
                previous: expected,
                requested,
            }
            .to_string(),
        ))
    }
}

fn map_conflict(expected: Revision) -> ClusterError {
    ClusterError::Conflict {
        what: "shard map".to_owned(),
        expected,
    }
}

fn encode(value: &impl Serialize, what: &str) -> Result<Bytes, ClusterError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ClusterError::backend(format!("cannot encode {what}"), e))
}

fn unavailable(what: &str, source: impl std::error::Error + Send + Sync + 'static) -> ClusterError {
    ClusterError::Unavailable {
        message: format!("no answer {what}"),
        source: Some(Box::new(source)),
    }
}

/// The stored map of a KV entry.
fn decode_entry(entry: &kv::Entry) -> Result<StoredShardMap, ClusterError> {
    if entry.operation != kv::Operation::Put {
        return Err(ClusterError::Backend {
            message: format!(
                "the shard map was deleted outside Aether (revision {})",
                entry.revision
            ),
            source: None,
        });
    }
    serde_json::from_slice(&entry.value).map_err(|e| {
        ClusterError::backend(
            format!("the shard map at revision {} is not valid", entry.revision),
            e,
        )
    })
}

fn decode_change(payload: &[u8]) -> Result<MapChange, ClusterError> {
    serde_json::from_slice(payload)
        .map_err(|e| ClusterError::backend("a shard-map history record is not valid", e))
}
