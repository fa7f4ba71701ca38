//! Actors across a cluster (feature `cluster`, ADR 0009): which node serves which shard, and
//! how a shard moves between nodes with never two nodes serving it at once.
//!
//! - [`ownership`]: the handoff protocol as pure state machines — the leader's placements
//!   (who owns a shard, whether it is still moving from an earlier owner) and each node's
//!   side (adopt placements, drain, serve, answer or redirect requests).
//! - [`wire`]: the request and reply format between nodes (NATS request/reply, JSON), so
//!   that any NATS client can call an actor.

pub mod ownership;
pub mod wire;

pub use ownership::{Action, Decision, Incarnate, Ownership, Placement, ShardSlot, ShardState};
