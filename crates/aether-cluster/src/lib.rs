//! # Aether cluster coordination
//!
//! Nodes that share a NATS (JetStream) deployment agree on who is in the cluster, who leads it,
//! and which node owns which shard — without split brain, rebalance storms or reassignments
//! caused by NATS's own outages. Decisions in `docs/adr/0006-cluster-coordination.md`.
//!
//! | module | what it holds |
//! |---|---|
//! | `config` | [`ClusterConfig`] and its defaults (heartbeat 3 s, member TTL 6 s, lease TTL 10 s) |
//! | `error` | [`ClusterError`] |
//! | `kv` | the buckets and stream the cluster keeps in JetStream, and TTL/CAS helpers |
//! | `membership` | member announcements (TTL keys), the watched member set, failure detection |
//! | `lease` | the leader lease: acquire, renew by CAS with a fresh TTL, release; epochs |
//! | `manager` | [`ClusterManager`]: a node's membership, election, shard map and rebalancer |
//! | `shard_map_store` | the versioned shard map in KV (CAS, epoch-fenced) and its history stream |
//!
//! Placement itself (actor → shard → node) is the pure function in `aether_core`
//! ([`aether_core::assign_shards`]).

mod config;
mod error;
pub mod kv;
pub mod lease;
pub mod manager;
pub mod membership;
pub mod shard_map_store;
mod task;

pub use config::{ClusterConfig, MAX_DURATION, NodeMetadata};
pub use error::ClusterError;
pub use manager::{ClusterManager, TopologyEvent};
