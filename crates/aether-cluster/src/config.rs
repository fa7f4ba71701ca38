//! [`ClusterConfig`]: how a node takes part in the cluster, with the original's defaults.

use std::time::Duration;

use aether_core::{NodeId, ShardCount};
use serde::{Deserialize, Serialize};

use crate::ClusterError;

/// Longest duration any [`ClusterConfig`] timing accepts: a day is longer than any useful
/// heartbeat, TTL or timeout, and short enough that no deadline or period computed from it
/// (`now + ttl`, `heartbeat * 2`, …) can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

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
    /// Longest wait, when a node opens the cluster's replicated buckets, for their streams to
    /// have a leader. A stream just created on a 3-server cluster elects one by Raft (the
    /// server's election timeouts run to several seconds, longer on a loaded machine), and
    /// writes before that find no stream. Default 30 s; unused with one replica.
    pub ready_timeout: Duration,
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
            ready_timeout: Duration::from_secs(30),
        }
    }

    /// Checks what can be checked without NATS: every timing at most [`MAX_DURATION`], the
    /// heartbeat, probe timeout and request timeout above zero, the lease TTL at least 1 ms,
    /// `max_moves_per_step` at least 1, and what membership needs (see
    /// [`Membership::start`](crate::membership::Membership::start)). The lease margin is
    /// checked by [`LeaderLease::new`](crate::lease::LeaderLease::new).
    /// [`ClusterManager::start`](crate::ClusterManager::start) calls it before anything else.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] naming the first setting that cannot work.
    pub fn validate(&self) -> Result<(), ClusterError> {
        self.validate_timings()?;
        if self.max_moves_per_step == 0 {
            return Err(ClusterError::InvalidConfig(
                "max_moves_per_step must be at least 1, or a new node never gets shards".to_owned(),
            ));
        }
        crate::membership::validate_config(self)
    }

    /// The timing bounds of [`validate`](Self::validate) alone: what every entry point that
    /// computes deadlines or periods from this config checks first, so none can panic.
    pub(crate) fn validate_timings(&self) -> Result<(), ClusterError> {
        let timings = [
            ("heartbeat", self.heartbeat),
            ("member_ttl", self.member_ttl),
            ("probe_timeout", self.probe_timeout),
            ("lease_ttl", self.lease_ttl),
            ("lease_margin", self.lease_margin),
            ("stabilization_delay", self.stabilization_delay),
            ("move_interval", self.move_interval),
            ("request_timeout", self.request_timeout),
            ("ready_timeout", self.ready_timeout),
        ];
        for (name, value) in timings {
            if value > MAX_DURATION {
                return Err(ClusterError::InvalidConfig(format!(
                    "{name} ({value:?}) is longer than the longest accepted duration \
                     ({MAX_DURATION:?})"
                )));
            }
        }
        for (name, value) in [
            ("heartbeat", self.heartbeat),
            ("probe_timeout", self.probe_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(ClusterError::InvalidConfig(format!(
                    "{name} must be longer than zero"
                )));
            }
        }
        if self.lease_ttl < Duration::from_millis(1) {
            return Err(ClusterError::InvalidConfig(format!(
                "lease_ttl ({:?}) must be at least 1ms (it is renewed every third of it)",
                self.lease_ttl
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Change = fn(&mut ClusterConfig, Duration);

    /// Every timing, and how to set it.
    const TIMINGS: [(&str, Change); 9] = [
        ("heartbeat", |c, d| c.heartbeat = d),
        ("member_ttl", |c, d| c.member_ttl = d),
        ("probe_timeout", |c, d| c.probe_timeout = d),
        ("lease_ttl", |c, d| c.lease_ttl = d),
        ("lease_margin", |c, d| c.lease_margin = d),
        ("stabilization_delay", |c, d| c.stabilization_delay = d),
        ("move_interval", |c, d| c.move_interval = d),
        ("request_timeout", |c, d| c.request_timeout = d),
        ("ready_timeout", |c, d| c.ready_timeout = d),
    ];

    fn config() -> ClusterConfig {
        ClusterConfig::new(NodeId::new("n1").unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(config().validate().is_ok());
    }

    #[test]
    fn durations_past_a_day_are_named_errors() {
        let just_over = MAX_DURATION + Duration::from_nanos(1);
        for (name, set) in TIMINGS {
            for value in [
                Duration::MAX,
                Duration::MAX - Duration::from_nanos(1),
                just_over,
            ] {
                let mut bad = config();
                set(&mut bad, value);
                match bad.validate() {
                    Err(ClusterError::InvalidConfig(message)) => {
                        assert!(message.starts_with(name), "{name}: {message}");
                    }
                    other => panic!("{name} = {value:?}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn zero_periods_and_timeouts_are_named_errors() {
        for name in ["heartbeat", "probe_timeout", "request_timeout", "lease_ttl"] {
            let mut bad = config();
            let (_, set) = TIMINGS
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{name}"));
            set(&mut bad, Duration::ZERO);
            match bad.validate() {
                Err(ClusterError::InvalidConfig(message)) => {
                    assert!(message.starts_with(name), "{name}: {message}");
                }
                other => panic!("{name} = 0: {other:?}"),
            }
        }
        let mut bad = config();
        bad.max_moves_per_step = 0;
        assert!(matches!(
            bad.validate(),
            Err(ClusterError::InvalidConfig(_))
        ));
    }
}
