//! # Aether cluster coordination
//!
//! Nodes that share a NATS (JetStream) deployment agree on who is in the cluster, who leads it,
//! and which node owns which shard — without split brain, rebalance storms or reassignments
//! caused by NATS's own outages. Decisions in `docs/adr/0006-cluster-coordination.md` and
//! `docs/adr/0007-server-checked-map-fence.md`.
//!
//! | module | what it holds |
//! |---|---|
//! | `config` | [`ClusterConfig`] and its defaults (heartbeat 3 s, member TTL 6 s, lease TTL 10 s) |
//! | `error` | [`ClusterError`] |
//! | `revision` | [`Revision`], [`Epoch`], [`MapVersion`]: the numbers coordination runs on |
//! | `kv` | the buckets the cluster keeps in JetStream (created, or checked against this node's settings), and TTL/CAS helpers |
//! | `membership` | member announcements (TTL keys), the watched member set, failure detection |
//! | `lease` | the leader lease: acquire, renew by CAS with a fresh TTL, release; epochs |
//! | `manager` | [`ClusterManager`]: a node's membership, election, shard map and rebalancer |
//! | `shard_map_store` | the versioned shard map and its history in KV, written as one atomic batch the server fences by the lease |
//! | `node_cli` | what the node binaries share: their command line, starting with retries, JSON-lines output |
//! | `release` | how the leader asks a node which shards it still holds before it settles a move |
//! | `placement` | [`placement::Placement`]: owners with incarnations and moving shards, for actors' handoff (ADR 0009) |
//!
//! Placement itself (actor → shard → node) is the pure function in `aether_core`
//! ([`aether_core::assign_shards`]).

mod config;
mod error;
pub mod kv;
pub mod lease;
pub mod manager;
pub mod membership;
pub mod metrics;
pub mod node_cli;
pub mod placement;
pub mod release;
mod revision;
pub mod shard_map_store;
mod task;

pub use config::{ClusterConfig, MAX_DURATION, NodeMetadata};
pub use error::ClusterError;
pub use manager::{ClusterManager, TopologyEvent};
pub use revision::{Epoch, MapVersion, Revision};
