//! [`ClusterError`]: what can go wrong coordinating the cluster.

use aether_core::BoxError;

use crate::kv::SettingMismatch;
use crate::{Epoch, Revision};

/// An error of the cluster layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// NATS could not be reached or did not answer in time.
    #[error("NATS is unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// A configuration value that cannot work (named, with the reason); nothing was started.
    #[error("invalid cluster configuration: {0}")]
    InvalidConfig(String),
    /// A compare-and-swap lost: someone else wrote first (another leader, a newer map).
    #[error("{what}: someone else wrote first (expected revision {expected})")]
    Conflict {
        /// What was being written.
        what: String,
        /// The revision the write was based on.
        expected: Revision,
    },
    /// This node does not (or no longer) hold the leader lease.
    #[error("not the leader (lease lost or never held)")]
    NotLeader,
    /// The NATS server refused a write fenced by a lease that no longer holds: since the writer
    /// last checked its lease locally, the lease key was taken by another node, released or
    /// expired. Nothing was written.
    #[error(
        "the server refused a write under lease epoch {epoch} (lease revision {lease_revision}): \
         the lease has moved on"
    )]
    Fenced {
        /// The epoch of the writer's lease.
        epoch: Epoch,
        /// The lease revision the write required to still be the lease key's last.
        lease_revision: Revision,
    },
    /// A bucket of the cluster exists in NATS with other settings than this node's
    /// configuration (replicas, member or lease TTL, layout); each difference is named. Start
    /// the node with the cluster's settings, or recreate the buckets with every node stopped.
    #[error(
        "bucket {bucket} exists with other settings than this node's: {}",
        list(differences)
    )]
    SettingsMismatch {
        /// The bucket.
        bucket: String,
        /// Every setting that differs.
        differences: Vec<SettingMismatch>,
    },
    /// NATS holds this cluster's state in the layout of an older Aether (separate lease and
    /// shard-map buckets and a history stream), which this build neither reads nor fences.
    #[error(
        "NATS holds cluster {cluster}'s state in an older layout (streams {}); stop every node \
         of the cluster and delete these streams (the next leader writes a new shard map), see \
         docs/adr/0007-server-checked-map-fence.md",
        streams.join(", ")
    )]
    OldLayout {
        /// The cluster name.
        cluster: String,
        /// The old layout's streams found.
        streams: Vec<String>,
    },
    /// No cluster of this name exists on this NATS (one of its buckets is missing): a
    /// tool that only reads ([`ClusterStore::open_existing`](crate::kv::ClusterStore::open_existing))
    /// creates nothing.
    #[error(
        "no cluster named {cluster:?} on this NATS (bucket {bucket} does not exist): check the \
         cluster name, or start a node of the cluster first"
    )]
    NotFound {
        /// The cluster name.
        cluster: String,
        /// The bucket that is missing.
        bucket: String,
    },
    /// A background task of this node (named) panicked: a bug. Reported by
    /// [`ClusterManager::shutdown`](crate::ClusterManager::shutdown) and
    /// [`Membership::leave`](crate::membership::Membership::leave), which still stop
    /// everything else and still leave and release the lease.
    #[error("the {task} task panicked: {message}")]
    TaskPanicked {
        /// Which task.
        task: String,
        /// The panic's message.
        message: String,
    },
    /// JetStream refused or failed a request.
    #[error("JetStream: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl aether_core::BackendError for ClusterError {
    fn from_backend(message: String, source: BoxError) -> Self {
        Self::Backend {
            message,
            source: Some(source),
        }
    }
}

fn list(differences: &[SettingMismatch]) -> String {
    differences
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
