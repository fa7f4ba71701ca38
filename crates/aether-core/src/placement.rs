//! Shard placement: which node owns which actor. Pure functions, no I/O.
//!
//! ```text
//! ActorId ──shard_for──► ShardId ──ShardMap::owner──► NodeId
//!            (stable hash)           (computed by assign_shards from the previous map
//!                                     and the live members; published by the leader)
//! ```
//!
//! - [`shard_for`]: FNV-1a + fmix64 + multiply-shift, pinned by test vectors (`hash`);
//! - [`assign_shards`]: sticky, bounded-load rendezvous assignment (`assign`): perfectly
//!   balanced by weight, and moving the fewest shards any balanced map could;
//! - [`ShardMap`] (`map`), [`shard_moves`] / [`ShardMove`] (`moves`), [`Member`] (`member`),
//!   [`ShardId`] / [`ShardCount`] (`shard`), [`PlacementError`] (`error`).

mod assign;
mod error;
mod hash;
mod map;
mod member;
mod moves;
mod shard;

pub use assign::assign_shards;
pub use error::PlacementError;
pub use hash::{shard_for, shard_for_prefixed};
pub use map::ShardMap;
pub use member::Member;
pub use moves::{ShardMove, shard_moves};
pub use shard::{ShardCount, ShardId};
