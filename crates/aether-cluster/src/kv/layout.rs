//! Creating the cluster's buckets, or checking that the existing ones were created with this
//! node's settings; and refusing the older layout.
//!
//! The settings a bucket was created with are its stream's configuration plus Aether's own
//! keys in the stream metadata (`aether.layout`, `aether.member_ttl`, `aether.lease_ttl`):
//! the per-key TTLs are sent with each write, so only the metadata remembers them.

use aether_core::BackendError;
use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode, kv};

use crate::{ClusterConfig, ClusterError};

/// The layout of the cluster's streams this build writes; recorded as `aether.layout`.
const LAYOUT: &str = "2";

/// One setting of a bucket that differs between this node and NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettingMismatch {
    /// The setting (e.g. `replicas`, `lease_ttl`).
    pub setting: String,
    /// Its value in this node's configuration.
    pub this_node: String,
    /// Its value in the bucket as NATS holds it (`none` if absent).
    pub in_nats: String,
}

impl std::fmt::Display for SettingMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} on this node, {} in NATS",
            self.setting, self.this_node, self.in_nats
        )
    }
}

/// What a bucket must look like.
#[derive(Debug)]
pub(super) struct BucketSpec {
    pub(super) bucket: String,
    replicas: usize,
    marker_ttl: Duration,
    atomic: bool,
    metadata: Vec<(&'static str, String)>,
}

/// The members bucket and the coordination bucket of `config`'s cluster.
pub(super) fn specs(config: &ClusterConfig) -> (BucketSpec, BucketSpec) {
    let name = &config.cluster_name;
    // Markers must outlive the slowest watcher's reconnect; the TTL is a fine bound.
    let marker_ttl = config
        .member_ttl
        .max(config.lease_ttl)
        .max(Duration::from_secs(1));
    let replicas = config.replicas.max(1);
    let members = BucketSpec {
        bucket: format!("{name}-members"),
        replicas,
        marker_ttl,
        atomic: false,
        metadata: vec![
            ("aether.layout", LAYOUT.to_owned()),
            ("aether.member_ttl", format!("{:?}", config.member_ttl)),
        ],
    };
    let coord = BucketSpec {
        bucket: format!("{name}-coord"),
        replicas,
        marker_ttl,
        atomic: true,
        metadata: vec![
            ("aether.layout", LAYOUT.to_owned()),
            ("aether.lease_ttl", format!("{:?}", config.lease_ttl)),
        ],
    };
    (members, coord)
}

/// The stream of a KV bucket with per-key TTLs and markers (as async-nats's
/// `create_key_value` would make it), history 1, atomic batches if `spec.atomic`.
fn stream_config(spec: &BucketSpec) -> stream::Config {
    stream::Config {
        name: format!("KV_{}", spec.bucket),
        subjects: vec![format!("$KV.{}.>", spec.bucket)],
        max_messages_per_subject: 1,
        storage: StorageType::File,
        num_replicas: spec.replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        allow_message_ttl: true,
        subject_delete_marker_ttl: Some(spec.marker_ttl),
        allow_atomic_publish: spec.atomic,
        metadata: spec
            .metadata
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect(),
        ..Default::default()
    }
}

/// Opens the bucket of `spec`: creates it, which JetStream answers with success when it
/// exists with the same configuration; if the creation fails and the bucket exists, names the
/// differences.
///
/// Creating first (rather than reading first) needs only the meta leader, which answers even
/// while a freshly created replicated stream has no leader of its own yet.
///
/// A replicated stream answers writes only once its replicas have elected a leader, a moment
/// after its creation: this waits for one, up to `ready_within`.
pub(super) async fn open_bucket(
    js: &jetstream::Context,
    spec: &BucketSpec,
    ready_within: Duration,
) -> Result<kv::Store, ClusterError> {
    let wanted = stream_config(spec);
    let stream = match js.create_stream(wanted.clone()).await {
        Ok(stream) => stream,
        Err(error) => {
            let exists = matches!(
                error.kind(),
                CreateStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NAME_EXIST
            );
            // The server may refuse our settings before it looks at the existing stream (e.g.
            // replicas above the cluster size): compare with the existing one either way.
            if error.kind() != CreateStreamErrorKind::TimedOut
                && let Ok(Some(found)) = existing(js, &wanted.name).await
            {
                check(spec, &wanted, &found)?;
            }
            return Err(match error.kind() {
                CreateStreamErrorKind::TimedOut => ClusterError::Unavailable {
                    message: format!("no answer creating bucket {}", spec.bucket),
                    source: Some(Box::new(error)),
                },
                _ if exists => ClusterError::backend(
                    format!(
                        "bucket {} exists with another configuration than this node's",
                        spec.bucket
                    ),
                    error,
                ),
                _ => ClusterError::backend(
                    format!(
                        "cannot create bucket {} (per-key TTLs need nats-server 2.11, \
                         atomic batches 2.12)",
                        spec.bucket
                    ),
                    error,
                ),
            });
        }
    };
    let stream = with_leader(stream, spec, ready_within).await?;
    // What `Context::get_key_value` builds, without asking the stream for its info again.
    Ok(kv::Store {
        name: spec.bucket.clone(),
        stream_name: wanted.name.clone(),
        prefix: format!("$KV.{}.", spec.bucket),
        put_prefix: None,
        use_jetstream_prefix: false,
        stream,
    })
}

/// `stream` once it has a leader (at once for one replica), re-asking every 50 ms.
async fn with_leader(
    mut stream: stream::Stream,
    spec: &BucketSpec,
    within: Duration,
) -> Result<stream::Stream, ClusterError> {
    let has_leader =
        |info: &stream::Info| info.cluster.as_ref().is_some_and(|c| c.leader.is_some());
    if spec.replicas <= 1 || has_leader(stream.cached_info()) {
        return Ok(stream);
    }
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match stream.info().await {
            Ok(info) if has_leader(info) => return Ok(stream),
            Ok(_) => None,
            Err(error) => Some(error),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(ClusterError::Unavailable {
                message: format!(
                    "bucket {} has no stream leader {within:?} after it was opened",
                    spec.bucket
                ),
                source: last.map(|e| Box::new(e) as aether_core::BoxError),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The configuration of stream `name`, or `None` if it does not exist.
async fn existing(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Config>, ClusterError> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream.cached_info().config.clone())),
        Err(error) => match error.kind() {
            GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            GetStreamErrorKind::Request => Err(ClusterError::Unavailable {
                message: format!("no answer reading stream {name}"),
                source: Some(Box::new(error)),
            }),
            _ => Err(ClusterError::backend(
                format!("cannot read stream {name}"),
                error,
            )),
        },
    }
}

/// `Ok` if `found` has every setting of `wanted` that matters, else every difference.
fn check(
    spec: &BucketSpec,
    wanted: &stream::Config,
    found: &stream::Config,
) -> Result<(), ClusterError> {
    let differences = differences(spec, wanted, found);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(ClusterError::SettingsMismatch {
            bucket: spec.bucket.clone(),
            differences,
        })
    }
}

fn differences(
    spec: &BucketSpec,
    wanted: &stream::Config,
    found: &stream::Config,
) -> Vec<SettingMismatch> {
    let mut out = Vec::new();
    let mut differ = |setting: &str, this_node: String, in_nats: String| {
        if this_node != in_nats {
            out.push(SettingMismatch {
                setting: setting.to_owned(),
                this_node,
                in_nats,
            });
        }
    };
    let metadata = |config: &stream::Config, key: &str| {
        config
            .metadata
            .get(key)
            .cloned()
            .unwrap_or_else(|| "none".to_owned())
    };
    // The layout first: with another layout the other settings mean little.
    differ(
        "aether.layout",
        LAYOUT.to_owned(),
        metadata(found, "aether.layout"),
    );
    differ(
        "replicas",
        wanted.num_replicas.to_string(),
        found.num_replicas.to_string(),
    );
    for (key, value) in &spec.metadata {
        if *key != "aether.layout" {
            let setting = key.trim_start_matches("aether.");
            differ(setting, value.clone(), metadata(found, key));
        }
    }
    differ(
        "marker TTL (the larger of member_ttl and lease_ttl)",
        format!("{:?}", wanted.subject_delete_marker_ttl),
        format!("{:?}", found.subject_delete_marker_ttl),
    );
    differ(
        "subjects",
        format!("{:?}", wanted.subjects),
        format!("{:?}", found.subjects),
    );
    differ(
        "history per key",
        wanted.max_messages_per_subject.to_string(),
        found.max_messages_per_subject.to_string(),
    );
    differ(
        "per-key TTLs allowed",
        wanted.allow_message_ttl.to_string(),
        found.allow_message_ttl.to_string(),
    );
    differ(
        "atomic batches allowed",
        wanted.allow_atomic_publish.to_string(),
        found.allow_atomic_publish.to_string(),
    );
    differ(
        "storage",
        format!("{:?}", wanted.storage),
        format!("{:?}", found.storage),
    );
    out
}

/// Refuses to go on if NATS holds `cluster`'s state in the older layout (separate lease and
/// shard-map buckets and a history stream), which this build neither reads nor fences.
pub(super) async fn refuse_old_layout(
    js: &jetstream::Context,
    cluster: &str,
) -> Result<(), ClusterError> {
    let mut found = Vec::new();
    for name in [
        format!("KV_{cluster}-leader"),
        format!("KV_{cluster}-shardmap"),
        format!("{cluster}-shardmap-history"),
    ] {
        if existing(js, &name).await?.is_some() {
            found.push(name);
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(ClusterError::OldLayout {
            cluster: cluster.to_owned(),
            streams: found,
        })
    }
}

/// The Aether metadata keys of a stream configuration, for tests.
#[cfg(test)]
pub(super) fn aether_metadata(
    config: &stream::Config,
) -> std::collections::HashMap<String, String> {
    config
        .metadata
        .iter()
        .filter(|(key, _)| key.starts_with("aether."))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aether_core::NodeId;

    use super::{aether_metadata, differences, specs, stream_config};
    use crate::ClusterConfig;

    fn config(replicas: usize, lease_ttl: Duration) -> ClusterConfig {
        let mut config = ClusterConfig::new(NodeId::new("n1").unwrap_or_else(|e| panic!("{e}")));
        config.replicas = replicas;
        config.lease_ttl = lease_ttl;
        config
    }

    #[test]
    fn the_same_settings_differ_in_nothing() {
        let (members, coord) = specs(&config(3, Duration::from_secs(10)));
        for spec in [members, coord] {
            let wanted = stream_config(&spec);
            assert_eq!(differences(&spec, &wanted, &wanted), []);
            assert_eq!(aether_metadata(&wanted).len(), 2);
        }
    }

    #[test]
    fn replicas_and_ttls_that_differ_are_named_with_both_values() {
        let (_, ours) = specs(&config(1, Duration::from_secs(3)));
        let (_, theirs) = specs(&config(3, Duration::from_secs(12)));
        let found = stream_config(&theirs);
        let named: Vec<String> = differences(&ours, &stream_config(&ours), &found)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            named,
            [
                "replicas: 1 on this node, 3 in NATS",
                "lease_ttl: 3s on this node, 12s in NATS",
                "marker TTL (the larger of member_ttl and lease_ttl): Some(6s) on this node, \
                 Some(12s) in NATS",
            ]
        );
    }

    #[test]
    fn a_bucket_without_aether_metadata_is_another_layout() {
        let (members, _) = specs(&config(1, Duration::from_secs(10)));
        let wanted = stream_config(&members);
        let mut found = wanted.clone();
        found.metadata.clear();
        let named: Vec<String> = differences(&members, &wanted, &found)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            named,
            [
                "aether.layout: 2 on this node, none in NATS",
                "member_ttl: 6s on this node, none in NATS",
            ]
        );
    }
}
