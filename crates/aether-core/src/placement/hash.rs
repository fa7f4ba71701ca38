//! The stable hashes of placement: `actor → shard` ([`shard_for`]) and the rendezvous score
//! of a `(node, shard)` pair.
//!
//! Both are pinned by test vectors: changing either would move actors between nodes across a
//! rolling upgrade, so they must never change silently.

use crate::{ActorId, NodeId};

use super::{ShardCount, ShardId};

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime (2^40 + 2^8 + 0xb3).
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// The odd constant ⌊2^64 / φ⌋ that spreads shard indices before the rendezvous mix.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The shard that `actor` belongs to, out of `shards`.
///
/// The algorithm is fixed and platform-independent (no `usize`, no endianness, no per-process
/// seed), so every node, architecture and version computes the same shard:
///
/// 1. `h` = 64-bit **FNV-1a** of the id's UTF-8 bytes: start from `0xcbf29ce484222325`; for each
///    byte `b`, `h = (h ^ b) * 0x100000001b3` (wrapping);
/// 2. `h` = murmur3's **fmix64** finaliser of `h`: `h ^= h >> 33; h *= 0xff51afd7ed558ccd;
///    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33` (wrapping multiplications);
/// 3. shard = `(h as u128 * shards as u128) >> 64`: **multiply-shift** reduction (Lemire), which
///    maps the 64-bit hash onto `0..shards` with no modulo bias worth speaking of and no division.
///
/// Step 2 matters: FNV-1a alone leaves the high bits, which step 3 reads, poorly mixed for short
/// ids that differ only in their last byte.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, ShardCount, shard_for};
///
/// let shards = ShardCount::DEFAULT;
/// let shard = shard_for(&ActorId::new("account-42")?, shards);
/// assert!(shards.contains(shard));
/// // Pinned: the same on every platform and every version of Aether.
/// assert_eq!(shard.get(), 128);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn shard_for(actor: &ActorId, shards: ShardCount) -> ShardId {
    reduce(key_hash(actor.as_str().as_bytes()), shards)
}

/// The shard of the stream `<prefix>.<actor>` (an actor type's stream, say), out of
/// `shards`: what [`shard_for`] gives for that id, without building it (FNV-1a reads bytes one
/// at a time, so the prefix, the `.` and the id hash as the whole id would).
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, ShardCount, shard_for, shard_for_prefixed};
///
/// let shards = ShardCount::DEFAULT;
/// let id = ActorId::new("42")?;
/// assert_eq!(
///     shard_for_prefixed("account", &id, shards),
///     shard_for(&ActorId::new("account.42")?, shards),
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn shard_for_prefixed(prefix: &str, actor: &ActorId, shards: ShardCount) -> ShardId {
    let h = fnv1a64_from(fnv1a64(prefix.as_bytes()), b".");
    reduce(fmix64(fnv1a64_from(h, actor.as_str().as_bytes())), shards)
}

/// FNV-1a then fmix64 of `bytes`: steps 1 and 2 of [`shard_for`].
pub(crate) fn key_hash(bytes: &[u8]) -> u64 {
    fmix64(fnv1a64(bytes))
}

/// The rendezvous key of a node: [`key_hash`] of its id's bytes. Computed once per node and
/// placement run, then combined with each shard by [`rendezvous_score`].
pub(crate) fn node_key(node: &NodeId) -> u64 {
    key_hash(node.as_str().as_bytes())
}

/// How much `node` (given by its [`node_key`]) wants `shard`:
/// `fmix64(node_key ^ ((shard + 1) * 0x9e3779b97f4a7c15))`, wrapping.
///
/// fmix64 is a bijection, so for one shard two nodes with different keys never tie; ties can
/// only come from two node ids whose 64-bit keys collide, and the placement breaks those by
/// node id.
pub(crate) fn rendezvous_score(node_key: u64, shard: ShardId) -> u64 {
    fmix64(node_key ^ (u64::from(shard.get()) + 1).wrapping_mul(GOLDEN_GAMMA))
}

/// Step 3 of [`shard_for`]: multiply-shift reduction of a 64-bit hash onto `0..shards`.
fn reduce(hash: u64, shards: ShardCount) -> ShardId {
    let shard = (u128::from(hash) * u128::from(shards.get())) >> 64;
    // Below `shards.get()`, a `u32`, by construction.
    ShardId::new(shard as u32)
}

/// 64-bit FNV-1a.
fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_from(FNV_OFFSET_BASIS, bytes)
}

/// 64-bit FNV-1a of `bytes`, continuing from the state `h` (of the bytes before them).
fn fnv1a64_from(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// murmur3's 64-bit finaliser: a bijection that makes every output bit depend on every input bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fmix64_matches_the_reference_vectors() {
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
    }

    #[test]
    fn rendezvous_score_is_pinned() {
        let key = node_key(&NodeId::new("node-1").unwrap());
        assert_eq!(key, 0x91dd_3f4c_04e1_eb05);
        assert_eq!(
            rendezvous_score(key, ShardId::new(0)),
            0x8bed_35d5_6cd7_7a61
        );
        assert_eq!(
            rendezvous_score(key, ShardId::new(1023)),
            0x3511_629c_93fe_c3c6
        );
    }

    #[test]
    fn reduce_covers_the_range() {
        let s = ShardCount::new(100).unwrap();
        assert_eq!(reduce(0, s).get(), 0);
        assert_eq!(reduce(u64::MAX, s).get(), 99);
        assert_eq!(reduce(1 << 63, s).get(), 50);
    }

    proptest::proptest! {
        /// The prefixed form is the whole id's shard: a different answer would route an
        /// actor's calls to a node that does not serve it.
        #[test]
        fn the_prefixed_shard_is_the_whole_ids_shard(
            prefix in "[a-z0-9_-]{1,12}",
            id in "[a-zA-Z0-9@ü_-]{1,20}(\\.[a-z0-9]{1,5}){0,2}",
            shards in 1u32..5000,
        ) {
            let shards = ShardCount::new(shards).unwrap();
            let actor = ActorId::new(&id).unwrap();
            let whole = ActorId::new(format!("{prefix}.{id}")).unwrap();
            proptest::prop_assert_eq!(
                shard_for_prefixed(&prefix, &actor, shards),
                shard_for(&whole, shards)
            );
        }
    }
}
