//! What the cluster keeps in JetStream, and the two KV operations async-nats 0.51 lacks.
//!
//! | name | kind | holds |
//! |---|---|---|
//! | `<cluster>-members` | KV, per-key TTL, `limit_markers` | one key per live node |
//! | `<cluster>-leader` | KV, per-key TTL, `limit_markers` | the lease, key `leader` |
//! | `<cluster>-shardmap` | KV, history 1 | the shard map, key `map` |
//! | `<cluster>-shardmap-history` | stream, subject `<cluster>.shardmap.history` | one message per map version |
//!
//! A TTL renewal must be a compare-and-swap with a fresh TTL; 0.51 has `create_with_ttl` but
//! no `update_with_ttl`, so [`put_with_ttl`] publishes to the key's subject with
//! `Nats-Expected-Last-Subject-Sequence` and `Nats-TTL` itself (`notes/nats-jetstream.md` §6).
//! TTLs are whole seconds on the wire (rounded up; at least 1 s).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_TTL};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;

use crate::{ClusterConfig, ClusterError};

/// Key of the leader lease in the leader bucket.
pub const LEASE_KEY: &str = "leader";
/// Key of the shard map in the shard-map bucket.
pub const MAP_KEY: &str = "map";

/// Handles on the cluster's buckets and history stream.
#[derive(Clone)]
pub struct ClusterStore {
    /// The JetStream context (request timeout from the config).
    pub js: jetstream::Context,
    /// Member keys.
    pub members: kv::Store,
    /// The leader lease.
    pub leader: kv::Store,
    /// The shard map.
    pub shard_map: kv::Store,
    /// The shard map's history.
    pub history: stream::Stream,
    /// Subject of the history stream.
    pub history_subject: String,
    members_bucket: String,
    leader_bucket: String,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("members", &self.members_bucket)
            .field("leader", &self.leader_bucket)
            .field("history_subject", &self.history_subject)
            .finish_non_exhaustive()
    }
}

impl ClusterStore {
    /// Opens the cluster's buckets and stream, creating them if needed.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] for a timing over [`MAX_DURATION`](crate::MAX_DURATION)
    /// (see [`ClusterConfig::validate`]); [`ClusterError::Backend`] if JetStream refuses (no
    /// JetStream, a server older than 2.11 without limit markers, conflicting existing
    /// streams).
    pub async fn open(
        client: async_nats::Client,
        config: &ClusterConfig,
    ) -> Result<Self, ClusterError> {
        config.validate_timings()?;
        let mut js = jetstream::new(client);
        js.set_timeout(config.request_timeout);
        let name = &config.cluster_name;
        let members_bucket = format!("{name}-members");
        let leader_bucket = format!("{name}-leader");
        // Markers must outlive the slowest watcher's reconnect; the TTL is a fine bound.
        let marker_ttl = config
            .member_ttl
            .max(config.lease_ttl)
            .max(Duration::from_secs(1));
        let members = ttl_bucket(&js, &members_bucket, config.replicas, marker_ttl).await?;
        let leader = ttl_bucket(&js, &leader_bucket, config.replicas, marker_ttl).await?;
        let shard_map = js
            .create_key_value(kv::Config {
                bucket: format!("{name}-shardmap"),
                history: 1,
                num_replicas: config.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::backend("cannot open the shard-map bucket", e))?;
        let history_subject = format!("{name}.shardmap.history");
        let history = js
            .get_or_create_stream(stream::Config {
                name: format!("{name}-shardmap-history"),
                subjects: vec![history_subject.clone()],
                num_replicas: config.replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::backend("cannot open the shard-map history stream", e))?;
        Ok(Self {
            js,
            members,
            leader,
            shard_map,
            history,
            history_subject,
            members_bucket,
            leader_bucket,
        })
    }

    /// Name of the members bucket.
    pub fn members_bucket(&self) -> &str {
        &self.members_bucket
    }

    /// Name of the leader bucket.
    pub fn leader_bucket(&self) -> &str {
        &self.leader_bucket
    }
}

async fn ttl_bucket(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
    marker_ttl: Duration,
) -> Result<kv::Store, ClusterError> {
    js.create_key_value(kv::Config {
        bucket: bucket.to_owned(),
        history: 1,
        num_replicas: replicas,
        limit_markers: Some(marker_ttl),
        ..Default::default()
    })
    .await
    .map_err(|e| ClusterError::backend(format!("cannot open bucket {bucket}"), e))
}

/// TTL in whole seconds, rounded up, at least 1.
pub fn ttl_seconds(ttl: Duration) -> u64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    secs.max(1)
}

/// Writes `value` under `key` of `bucket` with a fresh `ttl`, as a compare-and-swap on
/// `expected` (the key's last revision; 0 = the key must not exist, `None` = no check).
/// Returns the new revision.
///
/// # Errors
///
/// [`ClusterError::Conflict`] if the key's revision is not `expected`;
/// [`ClusterError::Unavailable`] on timeouts and connection loss; [`ClusterError::Backend`]
/// otherwise.
pub async fn put_with_ttl(
    js: &jetstream::Context,
    bucket: &str,
    key: &str,
    value: Bytes,
    expected: Option<u64>,
    ttl: Duration,
) -> Result<u64, ClusterError> {
    let mut headers = HeaderMap::new();
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
        Ok(ack) => Ok(ack.sequence),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(ClusterError::Conflict {
            what: what(),
            expected: expected.unwrap_or(0),
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
