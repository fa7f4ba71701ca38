//! What the cluster keeps in JetStream, and the KV operations async-nats 0.51 lacks.
//!
//! | name | kind | holds |
//! |---|---|---|
//! | `<cluster>-members` | KV, per-key TTL, `limit_markers` | one key per live node |
//! | `<cluster>-coord` | KV, per-key TTL, `limit_markers`, atomic batches | the lease (key `leader`), the shard map (key `map`) and its history (one key `history.<version>` per version) |
//!
//! The lease, the map and the history share one stream so that a map write can be fenced by
//! the server: the map and its history record are one atomic batch (ADR-50) whose history
//! message requires the lease key's last revision to be the writer's
//! (`Nats-Expected-Last-Subject-Sequence-Subject`, ADR 0007).
//!
//! Both buckets are created by the first node; every later node checks that they were created
//! with its own settings (replicas, TTLs, layout) and refuses to start otherwise, naming the
//! difference ([`ClusterError::SettingsMismatch`]). A NATS account that still holds the
//! streams of the older layout (separate `-leader` and `-shardmap` buckets and a
//! `-shardmap-history` stream) is refused with [`ClusterError::OldLayout`].
//!
//! A TTL renewal must be a compare-and-swap with a fresh TTL; 0.51 has `create_with_ttl` but
//! no `update_with_ttl`, so [`ClusterStore::put_with_ttl`] publishes to the key's subject with
//! `Nats-Expected-Last-Subject-Sequence` and `Nats-TTL` itself (`notes/nats-jetstream.md` §6).
//! TTLs are whole seconds on the wire (rounded up; at least 1 s).

mod existing;
mod failure;
mod layout;

use aether_core::BackendError;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_TTL};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use crate::{ClusterConfig, ClusterError, MapVersion, Revision};

pub(crate) use failure::{error_code, is_conflict, is_update_conflict};
pub use layout::SettingMismatch;

/// Key of the leader lease in the coordination bucket.
pub const LEASE_KEY: &str = "leader";
/// Key of the shard map in the coordination bucket.
pub const MAP_KEY: &str = "map";
/// Prefix of the history keys in the coordination bucket: `history.<version>`.
pub const HISTORY_KEY_PREFIX: &str = "history";

/// One of the cluster's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bucket {
    /// `<cluster>-members`: one key per live node.
    Members,
    /// `<cluster>-coord`: the lease, the shard map and its history.
    Coord,
}

/// What a compare-and-swap write ([`ClusterStore::put_with_ttl`]) expects to find under its
/// key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing at all: the key's subject has never been written (nor purged to a marker).
    Nothing,
    /// The key's last message (a value, or a delete or purge marker) has this revision.
    Revision(Revision),
    /// No check: the write replaces whatever is there.
    Anything,
}

impl Expect {
    /// The `Nats-Expected-Last-Subject-Sequence` value, if any (0 for [`Expect::Nothing`]).
    fn header(self) -> Option<u64> {
        match self {
            Self::Nothing => Some(0),
            Self::Revision(revision) => Some(revision.get()),
            Self::Anything => None,
        }
    }
}

/// Handles on the cluster's buckets. The async-nats handles stay inside the crate; tests and
/// tools reach the buckets by name ([`members_bucket`](Self::members_bucket),
/// [`coord_bucket`](Self::coord_bucket)) on their own connection.
#[derive(Clone)]
pub struct ClusterStore {
    /// The JetStream context (request timeout from the config).
    pub(crate) js: jetstream::Context,
    /// Member keys.
    pub(crate) members: kv::Store,
    /// The lease, the shard map and the map's history, in one stream.
    pub(crate) coord: kv::Store,
    members_bucket: String,
    coord_bucket: String,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("members", &self.members_bucket)
            .field("coord", &self.coord_bucket)
            .finish_non_exhaustive()
    }
}

impl ClusterStore {
    /// Opens the cluster's buckets, creating them if needed.
    ///
    /// # Errors
    ///
    /// - [`ClusterError::InvalidConfig`] for a timing over [`MAX_DURATION`](crate::MAX_DURATION)
    ///   (see [`ClusterConfig::validate`]);
    /// - [`ClusterError::OldLayout`] if NATS holds this cluster's state in the older layout;
    /// - [`ClusterError::SettingsMismatch`] if a bucket exists with other settings than
    ///   `config`'s (replicas, member or lease TTL, layout), naming each difference;
    /// - [`ClusterError::Unavailable`] if NATS does not answer, or a replicated bucket has no
    ///   stream leader within `config.ready_timeout`; [`ClusterError::Backend`] if
    ///   JetStream refuses (no JetStream, a server older than 2.12 without atomic batches).
    pub async fn open(
        client: async_nats::Client,
        config: &ClusterConfig,
    ) -> Result<Self, ClusterError> {
        config.validate_timings()?;
        let mut js = jetstream::new(client);
        js.set_timeout(config.request_timeout);
        layout::refuse_old_layout(&js, &config.cluster_name).await?;
        let (members_spec, coord_spec) = layout::specs(config);
        let ready = config.ready_timeout.max(config.request_timeout);
        let members = layout::open_bucket(&js, &members_spec, ready).await?;
        let coord = layout::open_bucket(&js, &coord_spec, ready).await?;
        Ok(Self {
            js,
            members,
            coord,
            members_bucket: members_spec.bucket,
            coord_bucket: coord_spec.bucket,
        })
    }

    /// Name of the members bucket.
    pub fn members_bucket(&self) -> &str {
        &self.members_bucket
    }

    /// Name of the coordination bucket (lease, map, history).
    pub fn coord_bucket(&self) -> &str {
        &self.coord_bucket
    }

    /// The name of `bucket`.
    pub fn bucket(&self, bucket: Bucket) -> &str {
        match bucket {
            Bucket::Members => &self.members_bucket,
            Bucket::Coord => &self.coord_bucket,
        }
    }

    /// Writes `value` under `key` of `bucket` with a fresh `ttl`, as a compare-and-swap on
    /// `expect`; returns the new revision. How the lease and the member keys are written
    /// (async-nats 0.51 has no `update_with_ttl`).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Conflict`] if the key does not hold what `expect` says (JetStream
    /// error 10071, or 10164 from a clustered stream); [`ClusterError::Unavailable`] on
    /// timeouts and connection loss; [`ClusterError::Backend`] otherwise.
    pub async fn put_with_ttl(
        &self,
        bucket: Bucket,
        key: &str,
        value: Bytes,
        expect: Expect,
        ttl: Duration,
    ) -> Result<Revision, ClusterError> {
        put_with_ttl(&self.js, self.bucket(bucket), key, value, expect, ttl).await
    }

    /// The subject of `key` in the coordination bucket.
    pub fn coord_subject(&self, key: &str) -> String {
        format!("$KV.{}.{key}", self.coord_bucket)
    }

    /// The subject of version `version`'s history record.
    pub fn history_subject(&self, version: MapVersion) -> String {
        self.coord_subject(&format!("{HISTORY_KEY_PREFIX}.{version}"))
    }

    /// The subject filter matching every history record.
    pub fn history_filter(&self) -> String {
        self.coord_subject(&format!("{HISTORY_KEY_PREFIX}.>"))
    }
}

/// TTL in whole seconds, rounded up, at least 1.
pub fn ttl_seconds(ttl: Duration) -> u64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    secs.max(1)
}

/// [`ClusterStore::put_with_ttl`] on a bucket named `bucket`.
pub(crate) async fn put_with_ttl(
    js: &jetstream::Context,
    bucket: &str,
    key: &str,
    value: Bytes,
    expect: Expect,
    ttl: Duration,
) -> Result<Revision, ClusterError> {
    let mut headers = HeaderMap::new();
    let expected = expect.header();
    if let Some(expected) = expected {
        headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expected.to_string());
    }
    headers.insert(NATS_MESSAGE_TTL, ttl_seconds(ttl).to_string());
    let what = || format!("{bucket}/{key}");
    let ack = js
        .publish_with_headers(format!("$KV.{bucket}.{key}"), headers, value)
        .await
        .map_err(|e| ClusterError::Unavailable {
            message: format!("cannot write {}", what()),
            source: Some(Box::new(e)),
        })?
        .await;
    match ack {
        Ok(ack) => Ok(Revision::new(ack.sequence)),
        Err(e) if is_conflict(&e) => Err(ClusterError::Conflict {
            what: what(),
            expected: Revision::new(expected.unwrap_or(0)),
        }),
        Err(e)
            if matches!(
                e.kind(),
                PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
            ) =>
        {
            Err(ClusterError::Unavailable {
                message: format!("no answer writing {}", what()),
                source: Some(Box::new(e)),
            })
        }
        // 503 "no responders": no server serves the bucket's stream right now — a replicated
        // stream that is electing a leader, or one this server has not learnt of yet.
        Err(e) if e.kind() == PublishErrorKind::StreamNotFound => Err(ClusterError::Unavailable {
            message: format!("no stream answers for {} (yet)", what()),
            source: Some(Box::new(e)),
        }),
        Err(e) => Err(ClusterError::backend(format!("cannot write {}", what()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::ttl_seconds;
    use std::time::Duration;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(3)), 3);
        assert_eq!(ttl_seconds(Duration::from_millis(3001)), 4);
    }
}
