//! A hint of each actor's head, kept by a store handle after its own writes and reads, so that
//! a writer's next append costs one round trip instead of two.
//!
//! Only a hint: the server's expected-sequence check decides every append, and a stale entry
//! costs one rejected publish and a fresh read. Nothing that is reported to a caller (a current
//! version, `latest_version`) is taken from here.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use aether_core::ActorId;

use super::read::Head;

#[derive(Debug)]
pub(crate) struct HeadCache {
    heads: Mutex<HashMap<ActorId, Head>>,
    capacity: usize,
}

impl HeadCache {
    /// A cache of at most `capacity` actors (0: no caching).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            heads: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn get(&self, actor_id: &ActorId) -> Option<Head> {
        self.lock().get(actor_id).cloned()
    }

    pub(crate) fn put(&self, actor_id: &ActorId, head: Head) {
        if self.capacity == 0 {
            return;
        }
        let mut heads = self.lock();
        if heads.len() >= self.capacity && !heads.contains_key(actor_id) {
            // Dropping everything is crude but O(1) amortised, and a miss only costs a read.
            heads.clear();
        }
        heads.insert(actor_id.clone(), head);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ActorId, Head>> {
        self.heads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> Head {
        Head {
            seq,
            version: seq,
            record: None,
        }
    }

    #[test]
    fn bounded_and_disableable() {
        let cache = HeadCache::new(2);
        let (a, b, c) = (
            ActorId::new("a").unwrap(),
            ActorId::new("b").unwrap(),
            ActorId::new("c").unwrap(),
        );
        cache.put(&a, head(1));
        cache.put(&b, head(2));
        cache.put(&b, head(3));
        assert_eq!(cache.get(&b), Some(head(3)));
        cache.put(&c, head(4));
        assert_eq!(cache.get(&a), None);
        assert_eq!(cache.get(&c), Some(head(4)));
        assert!(cache.lock().len() <= 2);

        let off = HeadCache::new(0);
        off.put(&a, head(1));
        assert_eq!(off.get(&a), None);
    }
}
