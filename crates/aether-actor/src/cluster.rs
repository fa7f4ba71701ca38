//! Actors across a cluster (feature `cluster`, ADR 0009): which node serves which shard, and
//! how a shard moves between nodes with never two nodes serving it at once.
//!
//! - [`ownership`]: the handoff protocol as pure state machines — the leader's placements
//!   (who owns a shard, whether it is still moving from an earlier owner) and each node's
//!   side (adopt placements, drain, serve, answer or redirect requests).
//! - [`ClusterActors`]: the actors of one type on one node — `ask`, `tell`, `query` for any
//!   actor id, routed to the node that serves it; hosting the shards this node serves.
//! - [`OwnedStore`]: the store as a node's actors see it — writes stamped with the node's
//!   ownership epoch, activations that fence the actor.
//! - [`demo`]: the actor type the node binary `aether-actor-node` hosts.
//! - [`wire`]: the request and reply format between nodes (NATS request/reply, JSON), so
//!   that any NATS client can call an actor.

pub mod demo;
pub mod node;
pub mod owned_store;
pub mod ownership;
pub mod wire;

pub use node::{ClusterActor, ClusterActors, ClusterStats, RoutingConfig, StartError};
pub use owned_store::{OwnedStore, ShardEpochs, WRITER_KEY};

pub use ownership::{Action, Decision, Incarnate, Ownership, Placement, ShardSlot, ShardState};
