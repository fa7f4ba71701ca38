//! [`Routes`]: which subscribers a namespace reaches. Exact subscriptions are found with one
//! hash lookup of the whole namespace; only wildcard patterns go through the [`SubjectTrie`],
//! which is skipped entirely while there are none. Routes also count subscribers per pattern,
//! so the bus can tell an [`InterestListener`](super::InterestListener) when a pattern gains its
//! first subscriber or loses its last.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use super::subscription::Subscriber;
use crate::{Pattern, SubjectTrie};

#[derive(Default)]
pub(super) struct Routes {
    exact: HashMap<Box<str>, Vec<Arc<Subscriber>>, RandomState>,
    wildcard: SubjectTrie<Arc<Subscriber>>,
    /// Subscribers per wildcard pattern (exact patterns are counted by `exact` itself).
    wildcard_counts: HashMap<Box<str>, usize, RandomState>,
}

impl Routes {
    /// Adds a subscriber; true if it is the first one of its pattern.
    pub(super) fn insert(
        &mut self,
        pattern: &Pattern,
        key: u64,
        subscriber: Arc<Subscriber>,
    ) -> bool {
        if pattern.is_wildcard() {
            self.wildcard.insert(pattern, key, subscriber);
            let count = self
                .wildcard_counts
                .entry(pattern.as_str().into())
                .or_default();
            *count += 1;
            *count == 1
        } else {
            let subscribers = self.exact.entry(pattern.as_str().into()).or_default();
            subscribers.push(subscriber);
            subscribers.len() == 1
        }
    }

    /// Removes a subscriber; true if it was the last one of its pattern.
    pub(super) fn remove(&mut self, pattern: &Pattern, key: u64) -> bool {
        if pattern.is_wildcard() {
            if self.wildcard.remove(pattern, key).is_none() {
                return false;
            }
            let Some(count) = self.wildcard_counts.get_mut(pattern.as_str()) else {
                return false;
            };
            *count -= 1;
            if *count == 0 {
                self.wildcard_counts.remove(pattern.as_str());
                return true;
            }
            return false;
        }
        let Some(subscribers) = self.exact.get_mut(pattern.as_str()) else {
            return false;
        };
        let before = subscribers.len();
        subscribers.retain(|s| s.key != key);
        if subscribers.is_empty() {
            self.exact.remove(pattern.as_str());
            return before > 0;
        }
        false
    }

    pub(super) fn len(&self) -> usize {
        self.exact.values().map(Vec::len).sum::<usize>() + self.wildcard.len()
    }

    /// Calls `f` for every subscriber whose pattern matches `namespace`, each once; with
    /// `only`, just the subscribers of that one pattern.
    pub(super) fn for_each_match(
        &self,
        namespace: &str,
        only: Option<&Pattern>,
        mut f: impl FnMut(&Arc<Subscriber>),
    ) {
        let (exact, wildcard) = match only {
            None => (true, true),
            Some(pattern) if pattern.is_wildcard() => (false, true),
            Some(pattern) => (pattern.as_str() == namespace, false),
        };
        if exact && let Some(subscribers) = self.exact.get(namespace) {
            subscribers.iter().for_each(&mut f);
        }
        if wildcard && !self.wildcard.is_empty() {
            self.wildcard.for_each_match(namespace, |_, s| {
                if only.is_none_or(|pattern| s.pattern == *pattern) {
                    f(s);
                }
            });
        }
    }
}
