//! A hint of each actor's head, kept by a store handle after its own writes and reads, so that
//! a writer's next append costs one round trip instead of two; and, next to it, the actor's
//! most recent records as a chain of facts, so that a conflict below the head is settled
//! without searching the stream.
//!
//! The head is only a hint: the server's expected-sequence check decides every append, and a
//! stale entry costs one rejected publish and a fresh read. Nothing that is reported to a
//! caller (a current version, `latest_version`) is taken from it. The chain is different: it
//! holds records that are stored and never change (the stream denies deletes and purges), each
//! the immediate predecessor on the subject of the next, so it is an exact index of the
//! stream sequences it spans, used only once a fresh head read confirmed its last record.
//!
//! At capacity the least recently used actors are evicted, a sixteenth of the capacity at a
//! time (never everything at once, and never one used more recently than one that is kept).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use aether_core::{ActorId, OwnerEpoch, Version};

use super::codec::{Mark, RecordHeader};
use super::read::Head;

/// How many of an actor's latest records the chain keeps.
pub(crate) const CHAIN_LEN: usize = 16;

/// At capacity, this fraction of the entries (the least recently used, at least one) goes at
/// once, so that the scan that finds them is paid once per `capacity / EVICT_DIVISOR` new
/// actors, not on every one.
const EVICT_DIVISOR: usize = 16;

#[derive(Debug)]
pub(crate) struct HeadCache {
    inner: Mutex<Lru>,
    capacity: usize,
}

/// Entries stamped with their last use. Every save takes this lock twice, so a use only
/// restamps its entry (no second index to keep in order, no allocation); eviction finds the
/// oldest stamps when it is needed.
#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<ActorId, Entry>,
    tick: u64,
}

#[derive(Debug)]
struct Entry {
    /// The head's stream sequence, version and epoch; its record, if a valid event, is the
    /// chain's last (a fence record never goes on the chain: under a fence, the chain ends at
    /// the event the fence was written on).
    seq: u64,
    version: Version,
    epoch: OwnerEpoch,
    /// Consecutive records of the actor's subject, oldest first: each one's predecessor on the
    /// subject is the one before it. May be empty.
    chain: VecDeque<Link>,
    used: u64,
}

/// A record on an actor's chain, kept without heap data (48 bytes, its id as a digest): a save
/// adds one and drops the oldest without allocating, and the many chains of a large cache stay
/// small.
#[derive(Debug, Clone, Copy)]
struct Link {
    seq: u64,
    version: Version,
    prev: Option<u64>,
    id_digest: Option<u64>,
}

impl Link {
    /// `None` for a record that is not a valid Aether record (it never goes on a chain).
    fn of(record: &RecordHeader) -> Option<Self> {
        Some(Self {
            seq: record.seq,
            version: record.version?,
            prev: record.prev,
            id_digest: record.digest(),
        })
    }

    fn record(self) -> RecordHeader {
        RecordHeader {
            seq: self.seq,
            version: Some(self.version),
            id: None,
            id_digest: self.id_digest,
            prev: self.prev,
            // Chains serve floor lookups, which do not look at epochs.
            mark: Mark::Event {
                epoch: OwnerEpoch::UNOWNED,
            },
        }
    }
}

impl Lru {
    fn touch(&mut self, actor_id: &ActorId) -> Option<&mut Entry> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(actor_id)?;
        entry.used = tick;
        Some(entry)
    }

    /// Removes the `count` least recently used entries (stamps are unique).
    fn evict_oldest(&mut self, count: usize) {
        let mut stamps: Vec<u64> = self.entries.values().map(|e| e.used).collect();
        if stamps.is_empty() || count == 0 {
            return;
        }
        let nth = count.min(stamps.len()) - 1;
        let cutoff = *stamps.select_nth_unstable(nth).1;
        self.entries.retain(|_, e| e.used > cutoff);
    }

    fn insert(&mut self, actor_id: &ActorId, head: &Head, capacity: usize) -> &mut Entry {
        let (seq, version, epoch) = (head.seq, head.version, head.epoch);
        if self.touch(actor_id).is_none() {
            if self.entries.len() >= capacity {
                let excess = self.entries.len() + 1 - capacity;
                self.evict_oldest(excess.max(capacity / EVICT_DIVISOR).max(1));
            }
            self.entries.insert(
                actor_id.clone(),
                Entry {
                    seq,
                    version,
                    epoch,
                    chain: VecDeque::new(),
                    used: self.tick,
                },
            );
        }
        let entry = self.entries.get_mut(actor_id).expect("just inserted");
        (entry.seq, entry.version, entry.epoch) = (seq, version, epoch);
        entry
    }
}

impl HeadCache {
    /// A cache of at most `capacity` actors (0: no caching).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Lru::default()),
            capacity,
        }
    }

    /// The actor's head hint: its stream sequence, version and epoch, without the record (only
    /// a head read from the server carries one; a hint is never used to settle anything).
    /// Takes no allocation, as it is on every cached save's path.
    ///
    /// The epoch of a hint is never above the real head's: epochs never decrease along a
    /// subject, and a hint is a head that was.
    pub(crate) fn get(&self, actor_id: &ActorId) -> Option<Head> {
        self.lock().touch(actor_id).map(|e| Head {
            seq: e.seq,
            version: e.version,
            epoch: e.epoch,
            record: None,
        })
    }

    /// Records `head` as the actor's head hint, and its record (if valid) on the chain: appended
    /// if it follows the chain's last record, else the chain restarts at it.
    pub(crate) fn put(&self, actor_id: &ActorId, head: Head) {
        if self.capacity == 0 {
            return;
        }
        let mut lru = self.lock();
        let entry = lru.insert(actor_id, &head, self.capacity);
        if let Some(link) = head.record.as_ref().and_then(Link::of) {
            extend(&mut entry.chain, link);
        }
    }

    /// The actor's known chain if it ends at stream sequence `head_seq` (a head just read from
    /// the server); empty otherwise. Its records carry id digests, not ids.
    pub(crate) fn chain(&self, actor_id: &ActorId, head_seq: u64) -> Vec<RecordHeader> {
        let mut lru = self.lock();
        match lru.touch(actor_id) {
            Some(entry) if entry.chain.back().is_some_and(|r| r.seq == head_seq) => {
                entry.chain.iter().map(|link| link.record()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Replaces the actor's chain with `chain` (found by walking back from its head), if the
    /// actor is still cached and its chain still ends where `chain` does.
    pub(crate) fn set_chain(&self, actor_id: &ActorId, chain: &[RecordHeader]) {
        let Some(last) = chain.last() else { return };
        let mut lru = self.lock();
        if let Some(entry) = lru.touch(actor_id)
            && entry.chain.back().is_none_or(|r| r.seq == last.seq)
        {
            // The longest run of valid records that ends at the head (walks add only valid
            // ones, so in practice all of them).
            let links: Vec<Link> = chain.iter().rev().map_while(Link::of).collect();
            entry.chain = links.into_iter().take(CHAIN_LEN).rev().collect();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Appends `record` to `chain` if it is the next record on the subject; otherwise (another
/// writer came between, or the link is unknown) the chain restarts at `record`.
fn extend(chain: &mut VecDeque<Link>, record: Link) {
    match chain.back() {
        Some(last) if last.seq == record.seq => return,
        Some(last) if record.prev == Some(last.seq) => {}
        _ => chain.clear(),
    }
    // Room is made before the push, so the chain never outgrows CHAIN_LEN records.
    if chain.len() == CHAIN_LEN {
        chain.pop_front();
    }
    chain.push_back(record);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::IdMatch;

    fn record(seq: u64, prev: Option<u64>) -> RecordHeader {
        RecordHeader {
            seq,
            version: Some(seq),
            id: Some(format!("e{seq}")),
            id_digest: None,
            prev,
            mark: Mark::Event {
                epoch: OwnerEpoch::UNOWNED,
            },
        }
    }

    fn head(seq: u64) -> Head {
        Head {
            seq,
            version: seq,
            epoch: OwnerEpoch::UNOWNED,
            record: None,
        }
    }

    fn actor(name: &str) -> ActorId {
        ActorId::new(name).unwrap()
    }

    #[test]
    fn bounded_and_disableable() {
        let cache = HeadCache::new(2);
        let (a, b, c) = (actor("a"), actor("b"), actor("c"));
        cache.put(&a, head(1));
        cache.put(&b, head(2));
        cache.put(&b, head(3));
        assert_eq!(cache.get(&b), Some(head(3)));
        cache.put(&c, head(4));
        assert_eq!(cache.get(&a), None);
        assert_eq!(cache.get(&c), Some(head(4)));
        assert!(cache.lock().entries.len() <= 2);

        let off = HeadCache::new(0);
        off.put(&a, head(1));
        assert_eq!(off.get(&a), None);
    }

    /// At capacity only the least recently used actor goes: a hot actor used just before a new
    /// one arrives keeps its entry (clearing everything would drop it).
    #[test]
    fn evicts_the_least_recently_used_actor_only() {
        let cache = HeadCache::new(3);
        let (a, b, c, d, e) = (actor("a"), actor("b"), actor("c"), actor("d"), actor("e"));
        cache.put(&a, head(1));
        cache.put(&b, head(2));
        cache.put(&c, head(3));
        assert_eq!(cache.get(&a), Some(head(1))); // a is now the most recently used
        cache.put(&d, head(4)); // evicts b
        assert_eq!(
            cache.get(&a),
            Some(head(1)),
            "a was used recently and must stay"
        );
        assert_eq!(cache.get(&b), None, "b was the least recently used");
        assert_eq!(cache.get(&c), Some(head(3)));
        assert_eq!(cache.get(&d), Some(head(4)));
        cache.put(&e, head(5)); // evicts a (c, d were read after it)
        assert_eq!(cache.get(&a), None);
        assert_eq!(cache.get(&c), Some(head(3)));
        assert_eq!(cache.get(&e), Some(head(5)));
        assert_eq!(cache.lock().entries.len(), 3);
    }

    /// A large cache evicts a sixteenth of its entries at once, always the least recently
    /// used: every actor used after them stays.
    #[test]
    fn a_large_cache_evicts_the_oldest_sixteenth() {
        let cache = HeadCache::new(64);
        let actors: Vec<ActorId> = (0..64).map(|i| actor(&format!("a{i}"))).collect();
        for (i, a) in actors.iter().enumerate() {
            cache.put(a, head(i as u64 + 1));
        }
        // Use the first eight again: the oldest are now a8..a11.
        for a in &actors[..8] {
            assert!(cache.get(a).is_some());
        }
        cache.put(&actor("new"), head(100));
        let lru = cache.lock();
        assert_eq!(lru.entries.len(), 64 - 4 + 1);
        for (i, a) in actors.iter().enumerate() {
            let evicted = (8..12).contains(&i);
            assert_eq!(!lru.entries.contains_key(a), evicted, "a{i}");
        }
    }

    #[test]
    fn the_chain_grows_only_through_links_and_is_bounded() {
        let cache = HeadCache::new(4);
        let a = actor("a");
        let with = |r: RecordHeader| Head {
            seq: r.seq,
            version: r.seq,
            epoch: OwnerEpoch::UNOWNED,
            record: Some(r),
        };
        cache.put(&a, with(record(3, Some(0))));
        cache.put(&a, with(record(7, Some(3))));
        assert_eq!(
            cache.chain(&a, 7).iter().map(|r| r.seq).collect::<Vec<_>>(),
            [3, 7]
        );
        assert!(
            cache.chain(&a, 9).is_empty(),
            "a chain not ending at the head is unknown"
        );
        // Another writer came between: the chain restarts.
        cache.put(&a, with(record(12, Some(10))));
        assert_eq!(
            cache
                .chain(&a, 12)
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>(),
            [12]
        );
        let mut prev = 12;
        for seq in 13..13 + CHAIN_LEN as u64 {
            cache.put(&a, with(record(seq, Some(prev))));
            prev = seq;
        }
        let chain = cache.chain(&a, prev);
        assert_eq!(chain.len(), CHAIN_LEN);
        assert_eq!(chain.last().map(|r| r.seq), Some(prev));
        // Kept without text: the ids come back as digests that still tell ids apart.
        let last = chain.last().expect("a chain");
        assert_eq!(last.id, None);
        assert_eq!(last.id_match(&format!("e{prev}")), IdMatch::Unsure);
        assert_eq!(last.id_match("another"), IdMatch::Different);
        assert!(std::mem::size_of::<Link>() <= 48);
    }

    /// A fence at the head: the hint carries its epoch, and the chain still ends at the event
    /// under it (the fence is no link of it).
    #[test]
    fn a_fence_head_keeps_its_epoch_and_leaves_the_chain_at_the_event_below() {
        let cache = HeadCache::new(4);
        let a = actor("a");
        let event = record(3, Some(0));
        cache.put(
            &a,
            Head {
                seq: 3,
                version: 3,
                epoch: OwnerEpoch::new(1),
                record: Some(event),
            },
        );
        let fence = RecordHeader {
            seq: 5,
            version: None,
            id: Some("Aether fence x".to_owned()),
            id_digest: None,
            prev: Some(3),
            mark: Mark::Fence {
                epoch: OwnerEpoch::new(2),
                version: 3,
            },
        };
        cache.put(
            &a,
            Head {
                seq: 5,
                version: 3,
                epoch: OwnerEpoch::new(2),
                record: Some(fence),
            },
        );
        let hint = cache.get(&a).expect("a hint");
        assert_eq!(
            (hint.seq, hint.version, hint.epoch),
            (5, 3, OwnerEpoch::new(2))
        );
        assert_eq!(
            cache.chain(&a, 3).iter().map(|r| r.seq).collect::<Vec<_>>(),
            [3]
        );
        assert!(cache.chain(&a, 5).is_empty());
    }
}
