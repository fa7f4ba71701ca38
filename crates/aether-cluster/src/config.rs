//! [`ClusterConfig`]: how a node takes part in the cluster, with the original's defaults.

use std::time::Duration;

use aether_core::{NodeId, ShardCount};
use serde::{Deserialize, Serialize};

/// What a node announces about itself to the other members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeMetadata {
    /// Where other nodes (or clients) reach it; free-form (e.g. `10.0.0.5:7000`).
    pub address: String,
    /// Its share of shards relative to other members (0: none, e.g. while draining). Default 1.
    pub weight: u32,
    /// The application version it runs.
    pub app_version: String,
}

impl Default for NodeMetadata {
    fn default() -> Self {
        Self {
            address: String::new(),
            weight: 1,
            app_version: String::new(),
        }
    }
}

/// A node's cluster settings. Every timing is configurable; the defaults are the original
/// design's (heartbeat 3 s, lease TTL 10 s).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aether_cluster::ClusterConfig;
/// use aether_core::NodeId;
///
/// let mut config = ClusterConfig::new(NodeId::new("node-1")?);
/// config.heartbeat = Duration::from_millis(500);
/// config.member_ttl = Duration::from_secs(2);
/// config.lease_ttl = Duration::from_secs(3);
/// # Ok::<(), aether_core::InvalidName>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// This node's id, unique in the cluster.
    pub node_id: NodeId,
    /// What this node announces.
    pub metadata: NodeMetadata,
    /// How often a node renews its member key. Default 3 s.
    pub heartbeat: Duration,
    /// TTL of a member key: a node not heard from for this long is suspected (and failed only
    /// if a direct probe fails too). Default 6 s, two heartbeats: with the probe and the
    /// stabilisation delay a crashed node's shards move within ≈ 8 s (SPEC: ~2 × heartbeat +
    /// grace).
    pub member_ttl: Duration,
    /// How long a suspected member has to answer a direct probe. Default 1 s.
    pub probe_timeout: Duration,
    /// TTL of the leader lease. Default 10 s (renewed every third of it).
    pub lease_ttl: Duration,
    /// Safety margin subtracted from the lease deadline on the leader's own clock. Default
    /// 500 ms.
    pub lease_margin: Duration,
    /// Quiet time after a membership change before the leader rebalances. Default 1 s.
    pub stabilization_delay: Duration,
    /// Moves between live nodes per rebalancing step. Default 256.
    pub max_moves_per_step: usize,
    /// Time between rebalancing steps. Default 1 s.
    pub move_interval: Duration,
    /// Number of shards. Default 1024.
    pub shard_count: ShardCount,
    /// Replicas of the cluster's buckets and stream. Default 1.
    pub replicas: usize,
    /// Prefix of the cluster's bucket and stream names, so several clusters can share a NATS
    /// deployment. Default `aether`.
    pub cluster_name: String,
    /// Longest wait for a JetStream reply. Default 5 s.
    pub request_timeout: Duration,
}

impl ClusterConfig {
    /// The defaults, for `node_id`.
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            metadata: NodeMetadata::default(),
            heartbeat: Duration::from_secs(3),
            member_ttl: Duration::from_secs(6),
            probe_timeout: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(10),
            lease_margin: Duration::from_millis(500),
            stabilization_delay: Duration::from_secs(1),
            max_moves_per_step: 256,
            move_interval: Duration::from_secs(1),
            shard_count: ShardCount::default(),
            replicas: 1,
            cluster_name: "aether".to_owned(),
            request_timeout: Duration::from_secs(5),
        }
    }
}
