//! [`ClusterError`]: what can go wrong coordinating the cluster.

use aether_core::BoxError;

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
        expected: u64,
    },
    /// This node does not (or no longer) hold the leader lease.
    #[error("not the leader (lease lost or never held)")]
    NotLeader,
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

impl ClusterError {
    pub(crate) fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}
