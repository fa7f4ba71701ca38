//! The versioned shard map in KV, fenced by the leader's epoch, and its history stream.
//!
//! The map lives under [`MAP_KEY`] as a [`StoredShardMap`] (JSON). Every write is a
//! compare-and-swap on the key's last revision, made only by a holder of a valid
//! [`LeaseFence`] whose epoch is not lower than the stored map's, so two would-be leaders can
//! never fork it: the second CAS fails, and a deposed leader is refused by its own deadline and
//! by the epoch check. Versions go up by exactly one per write.
//!
//! After each write, a [`MapChange`] (version, epoch, leader, reason, moved shards) is appended
//! to the history stream with `Nats-Expected-Last-Subject-Sequence` = the previous record's
//! sequence, so the history is one linear chain too.
//!
//! # When a history append fails
//!
//! The map write has already happened (and cannot be undone), so [`ShardMapStore::write`]
//! still succeeds, reports the failure in [`MapWritten::history_error`] and logs it. The gap is
//! then exactly one record: the next write first **repairs** it, before its own CAS, and
//! refuses to write if the repair fails. The missing record is rebuilt exactly: its version,
//! epoch, leader and reason are in the stored map, and its moves are the difference between the
//! stored map and the previous map, which is the replay of every earlier record's moves (the
//! chain is complete up to there). [`ShardMapStore::repair_history`] does the same on demand;
//! anyone may call it, since the record is derived from what is already stored. A history that
//! lacks more than its last record (only possible if the stream was changed outside Aether) is
//! reported as [`ClusterError::Backend`] and blocks writes.

mod watch;

use std::time::Duration;

use aether_core::{NodeId, PlacementError, ShardCount, ShardMap, ShardMove, shard_moves};
use async_nats::HeaderMap;
use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::kv::{ClusterStore, MAP_KEY};
use crate::lease::LeaseFence;
use crate::{ClusterConfig, ClusterError};

pub use watch::ShardMapWatch;

/// The shard map as stored in KV: the map plus its version and the leader (and epoch) that
/// wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredShardMap {
    /// 1 for the first map, then +1 per write.
    pub version: u64,
    /// The epoch of the lease under which it was written.
    pub epoch: u64,
    /// The node that wrote it.
    pub leader: NodeId,
    /// Why it was written (free text from the leader, e.g. `node n3 failed`).
    pub reason: String,
    /// The map itself.
    pub map: ShardMap,
}

/// One record of the history stream: what a map version changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MapChange {
    /// The version written.
    pub version: u64,
    /// The epoch it was written under.
    pub epoch: u64,
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
    pub revision: u64,
    /// Why its history record could not be appended, if it could not. The map write stands;
    /// the next write (or [`ShardMapStore::repair_history`]) appends the missing record.
    pub history_error: Option<ClusterError>,
}

/// Reads, writes (fenced) and watches the cluster's shard map, and reads its history.
#[derive(Debug, Clone)]
pub struct ShardMapStore {
    store: ClusterStore,
    shard_count: ShardCount,
    timeout: Duration,
}

impl ShardMapStore {
    /// The shard map of `store`'s cluster, for `config.shard_count` shards.
    pub fn new(store: ClusterStore, config: &ClusterConfig) -> Self {
        Self {
            store,
            shard_count: config.shard_count,
            timeout: config.request_timeout,
        }
    }

    /// The stored map and its revision; `None` if no map was ever written.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if NATS does not answer; [`ClusterError::Backend`] if it
    /// refuses, the value is not a valid map, or the key was deleted outside Aether.
    pub async fn load(&self) -> Result<Option<(StoredShardMap, u64)>, ClusterError> {
        let entry = self
            .store
            .shard_map
            .entry(MAP_KEY)
            .await
            .map_err(|e| match e.kind() {
                kv::EntryErrorKind::TimedOut => unavailable("reading the shard map", e),
                _ => ClusterError::backend("cannot read the shard map", e),
            })?;
        match entry {
            None => Ok(None),
            Some(entry) => decode_entry(&entry).map(|stored| Some((stored, entry.revision))),
        }
    }

    /// Writes `next` as the next version, if `lease` may act and nobody wrote since
    /// `expected_revision` (the revision from [`load`](Self::load), or 0 when there is no map
    /// yet). Then appends the change to the history (repairing a missing previous record
    /// first, see the module docs).
    ///
    /// # Errors
    ///
    /// Nothing is written on any error:
    /// - [`ClusterError::NotLeader`] if the lease is not valid by its own deadline (checked
    ///   before reading and again just before the CAS), or its epoch is lower than the stored
    ///   map's (a newer leader has written);
    /// - [`ClusterError::Conflict`] if the map's revision is not `expected_revision` (read
    ///   first, or the CAS lost the race);
    /// - [`ClusterError::InvalidConfig`] if `next` has another shard count than this store's
    ///   configuration or the stored map (a cluster's shard count is fixed);
    /// - [`ClusterError::Unavailable`] / [`ClusterError::Backend`] if NATS does not answer or
    ///   refuses, or the history's missing record cannot be repaired.
    pub async fn write(
        &self,
        lease: &impl AsRef<LeaseFence>,
        next: ShardMap,
        reason: &str,
        expected_revision: u64,
    ) -> Result<MapWritten, ClusterError> {
        let fence = lease.as_ref();
        fence.check()?;
        check_shard_count(self.shard_count, next.shard_count())?;
        let current = self.load().await?;
        let current_revision = current.as_ref().map_or(0, |(_, revision)| *revision);
        if current_revision != expected_revision {
            return Err(map_conflict(expected_revision));
        }
        let previous = current.map(|(stored, _)| stored);
        if let Some(previous) = &previous {
            if previous.epoch > fence.epoch() {
                tracing::warn!(
                    stored = previous.epoch,
                    ours = fence.epoch(),
                    "shard map: refusing to write under an older epoch"
                );
                return Err(ClusterError::NotLeader);
            }
            check_shard_count(previous.map.shard_count(), next.shard_count())?;
        }
        let history_seq = self
            .ensure_history(previous.as_ref(), expected_revision)
            .await?;

        let stored = StoredShardMap {
            version: previous.as_ref().map_or(0, |p| p.version) + 1,
            epoch: fence.epoch(),
            leader: fence.node().clone(),
            reason: reason.to_owned(),
            map: next,
        };
        let moved = match &previous {
            Some(previous) => shard_moves(&previous.map, &stored.map),
            None => shard_moves(&ShardMap::unassigned(self.shard_count), &stored.map),
        };
        let value = serde_json::to_vec(&stored)
            .map_err(|e| ClusterError::backend("cannot encode the shard map", e))?;
        fence.check()?;
        let revision = self
            .store
            .shard_map
            .update(MAP_KEY, value.into(), expected_revision)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => map_conflict(expected_revision),
                kv::UpdateErrorKind::TimedOut => unavailable("writing the shard map", e),
                _ => ClusterError::backend("cannot write the shard map", e),
            })?;
        metrics::counter!("aether_cluster_shard_map_writes_total").increment(1);
        tracing::info!(
            version = stored.version,
            epoch = stored.epoch,
            moved = moved.len(),
            reason,
            "shard map written"
        );

        let change = MapChange::of(&stored, moved);
        let history_error = match self.append(&change, history_seq).await {
            Ok(_) => None,
            Err(error) => match self.last_history().await {
                // Someone (a repair) appended exactly this record meanwhile.
                Ok(Some((last, _))) if last.version >= stored.version => None,
                _ => {
                    metrics::counter!("aether_cluster_shard_map_history_failures_total")
                        .increment(1);
                    tracing::warn!(
                        %error,
                        version = stored.version,
                        "shard map: history append failed; the next write repairs it"
                    );
                    Some(error)
                }
            },
        };
        Ok(MapWritten {
            stored,
            revision,
            history_error,
        })
    }

    /// Appends the history record of the stored map if it is missing (its append failed).
    /// `Ok(true)` if a record was appended, `Ok(false)` if the history was complete.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] / [`ClusterError::Backend`] if NATS does not answer or
    /// refuses, or the history lacks more than the last record.
    pub async fn repair_history(&self) -> Result<bool, ClusterError> {
        let current = self.load().await?;
        let revision = current.as_ref().map_or(0, |(_, revision)| *revision);
        let current = current.map(|(stored, _)| stored);
        let before = self.last_history().await?.map_or(0, |(_, seq)| seq);
        let after = self.ensure_history(current.as_ref(), revision).await?;
        Ok(after != before)
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
            .history
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.store.history_subject.clone(),
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
            .shard_map
            .watch_with_history(MAP_KEY)
            .await
            .map_err(|e| ClusterError::backend("cannot watch the shard map", e))?;
        Ok(ShardMapWatch::new(inner))
    }

    /// Makes sure the history ends with the record of `current` (read at `revision`),
    /// appending it if it is the only one missing; returns the sequence of the history's last
    /// message (0 if empty). A history already past `current` means the map was written after
    /// it was read: [`ClusterError::Conflict`].
    async fn ensure_history(
        &self,
        current: Option<&StoredShardMap>,
        revision: u64,
    ) -> Result<u64, ClusterError> {
        let stored_version = current.map_or(0, |stored| stored.version);
        for _ in 0..3 {
            let last = self.last_history().await?;
            let (last_version, last_seq) = last
                .as_ref()
                .map_or((0, 0), |(change, seq)| (change.version, *seq));
            if last_version == stored_version {
                return Ok(last_seq);
            }
            if last_version > stored_version {
                return Err(map_conflict(revision));
            }
            let Some(current) = current.filter(|_| last_version + 1 == stored_version) else {
                return Err(ClusterError::Backend {
                    message: format!(
                        "the shard-map history ends at version {last_version} but the stored map \
                         is version {stored_version}; only a missing last record can be \
                         repaired (was the history stream changed outside Aether?)"
                    ),
                    source: None,
                });
            };
            let previous = self.replay(current.map.shard_count()).await?;
            let change = MapChange::of(current, shard_moves(&previous, &current.map));
            match self.append(&change, last_seq).await {
                Ok(seq) => {
                    metrics::counter!("aether_cluster_shard_map_history_repairs_total")
                        .increment(1);
                    tracing::warn!(
                        version = change.version,
                        "shard map: appended the missing history record"
                    );
                    return Ok(seq);
                }
                // Someone else appended meanwhile: look again.
                Err(ClusterError::Conflict { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Err(map_conflict(revision))
    }

    /// The map after every recorded change, from an empty map.
    async fn replay(&self, shards: ShardCount) -> Result<ShardMap, ClusterError> {
        let mut map = ShardMap::unassigned(shards);
        for (i, change) in self.history().await?.iter().enumerate() {
            if change.version != i as u64 + 1 {
                return Err(ClusterError::Backend {
                    message: format!(
                        "the shard-map history is not a chain: record {} has version {}",
                        i + 1,
                        change.version
                    ),
                    source: None,
                });
            }
            map = map.apply_moves(&change.moved).map_err(|e| {
                ClusterError::backend(
                    format!(
                        "cannot replay the shard-map history at version {}",
                        change.version
                    ),
                    e,
                )
            })?;
        }
        Ok(map)
    }

    /// The history's last record and its stream sequence.
    async fn last_history(&self) -> Result<Option<(MapChange, u64)>, ClusterError> {
        match self
            .store
            .history
            .get_last_raw_message_by_subject(&self.store.history_subject)
            .await
        {
            Ok(message) => Ok(Some((decode_change(&message.payload)?, message.sequence))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(ClusterError::backend(
                "cannot read the shard-map history",
                e,
            )),
        }
    }

    /// Appends `change` if the history's last message is still `expected_seq`.
    async fn append(&self, change: &MapChange, expected_seq: u64) -> Result<u64, ClusterError> {
        let payload = serde_json::to_vec(change)
            .map_err(|e| ClusterError::backend("cannot encode a shard-map history record", e))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected_seq.to_string(),
        );
        let ack = self
            .store
            .js
            .publish_with_headers(
                self.store.history_subject.clone(),
                headers,
                Bytes::from(payload),
            )
            .await
            .map_err(|e| unavailable("appending to the shard-map history", e))?
            .await;
        match ack {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(ClusterError::Conflict {
                    what: "shard-map history".to_owned(),
                    expected: expected_seq,
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
                ) =>
            {
                Err(unavailable("appending to the shard-map history", e))
            }
            Err(e) => Err(ClusterError::backend(
                "cannot append to the shard-map history",
                e,
            )),
        }
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

fn map_conflict(expected: u64) -> ClusterError {
    ClusterError::Conflict {
        what: "shard map".to_owned(),
        expected,
    }
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
