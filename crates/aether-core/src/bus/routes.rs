//! [`Routes`]: which subscribers a namespace reaches. Exact subscriptions are found with one
//! hash lookup of the whole namespace; only wildcard patterns go through the [`SubjectTrie`],
//! which is skipped entirely while there are none.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use super::subscription::Subscriber;
use crate::{Pattern, SubjectTrie};

#[derive(Default)]
pub(super) struct Routes {
    exact: HashMap<Box<str>, Vec<Arc<Subscriber>>, RandomState>,
    wildcard: SubjectTrie<Arc<Subscriber>>,
}

impl Routes {
    pub(super) fn insert(&mut self, pattern: &Pattern, key: u64, subscriber: Arc<Subscriber>) {
        if pattern.is_wildcard() {
            self.wildcard.insert(pattern, key, subscriber);
        } else {
            self.exact
                .entry(pattern.as_str().into())
                .or_default()
                .push(subscriber);
        }
    }

    pub(super) fn remove(&mut self, pattern: &Pattern, key: u64) {
        if pattern.is_wildcard() {
            self.wildcard.remove(pattern, key);
            return;
        }
        if let Some(subscribers) = self.exact.get_mut(pattern.as_str()) {
            subscribers.retain(|s| s.key != key);
            if subscribers.is_empty() {
                self.exact.remove(pattern.as_str());
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.exact.values().map(Vec::len).sum::<usize>() + self.wildcard.len()
    }

    /// Calls `f` for every subscriber whose pattern matches `namespace`, each once.
    pub(super) fn for_each_match(&self, namespace: &str, mut f: impl FnMut(&Arc<Subscriber>)) {
        if let Some(subscribers) = self.exact.get(namespace) {
            subscribers.iter().for_each(&mut f);
        }
        if !self.wildcard.is_empty() {
            self.wildcard.for_each_match(namespace, |_, s| f(s));
        }
    }
}
