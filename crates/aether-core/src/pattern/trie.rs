//! [`SubjectTrie`]: routes a subject to the values registered under matching patterns, in the
//! spirit of nats-server's sublist.
//!
//! ```text
//! root ─ "prod" ─ "tenant-a" ─ [exact subscribers of prod.tenant-a]
//!      │        └ * ─ [subscribers of prod.*]
//!      │        └ > ─ [subscribers of prod.>]
//!      └ > ─ [subscribers of >]
//! ```
//!
//! Matching walks one path per subject token (plus the `*` branches), so its cost grows with the
//! number of tokens and of matching patterns, not with the number of registered patterns.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::{Pattern, PatternToken};

/// Values registered under [`Pattern`]s, found by subject.
///
/// Each value is registered with a caller-chosen `u64` key, unique per trie, used to remove it.
///
/// # Examples
///
/// ```
/// use aether_core::{Pattern, SubjectTrie};
///
/// let mut trie = SubjectTrie::new();
/// trie.insert(&Pattern::new("prod.*")?, 1, "tenant auditor");
/// trie.insert(&Pattern::new("prod.tenant-a")?, 2, "tenant-a app");
/// trie.insert(&Pattern::new(">")?, 3, "logger");
///
/// let mut hits = Vec::new();
/// trie.for_each_match("prod.tenant-a", |key, _| hits.push(key));
/// hits.sort();
/// assert_eq!(hits, [1, 2, 3]);
///
/// assert_eq!(trie.remove(&Pattern::new(">")?, 3), Some("logger"));
/// assert_eq!(trie.len(), 2);
/// # Ok::<(), aether_core::InvalidName>(())
/// ```
#[derive(Debug)]
pub struct SubjectTrie<V> {
    root: Node<V>,
    len: usize,
}

#[derive(Debug)]
struct Node<V> {
    literals: HashMap<Box<str>, Self, RandomState>,
    any: Option<Box<Self>>,
    /// Values of patterns ending in `>` at this node.
    rest: Vec<(u64, V)>,
    /// Values of patterns ending exactly at this node.
    here: Vec<(u64, V)>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            literals: HashMap::default(),
            any: None,
            rest: Vec::new(),
            here: Vec::new(),
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.literals.is_empty()
            && self.any.is_none()
            && self.rest.is_empty()
            && self.here.is_empty()
    }
}

impl<V> Default for SubjectTrie<V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V> SubjectTrie<V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of registered values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Registers `value` under `pattern` with `key`.
    pub fn insert(&mut self, pattern: &Pattern, key: u64, value: V) {
        let mut node = &mut self.root;
        for token in pattern.tokens() {
            node = match token {
                PatternToken::Literal(l) => node.literals.entry(l.clone()).or_default(),
                PatternToken::Any => node.any.get_or_insert_with(Box::default),
                PatternToken::Rest => {
                    node.rest.push((key, value));
                    self.len += 1;
                    return;
                }
            };
        }
        node.here.push((key, value));
        self.len += 1;
    }

    /// Removes the value registered under `pattern` with `key`, pruning emptied branches.
    pub fn remove(&mut self, pattern: &Pattern, key: u64) -> Option<V> {
        let removed = remove_from(&mut self.root, pattern.tokens(), key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f(key, value)` for every value whose pattern matches `subject`, each once. A
    /// subject with an empty token matches nothing, as in [`Pattern::matches`].
    pub fn for_each_match(&self, subject: &str, mut f: impl FnMut(u64, &V)) {
        if super::has_empty_token(subject) {
            return;
        }
        visit(&self.root, subject.split('.'), &mut f);
    }
}

fn visit<'s, V>(
    node: &Node<V>,
    mut tokens: std::str::Split<'s, char>,
    f: &mut impl FnMut(u64, &V),
) {
    let Some(token) = tokens.next() else {
        node.here.iter().for_each(|(k, v)| f(*k, v));
        return;
    };
    node.rest.iter().for_each(|(k, v)| f(*k, v));
    if let Some(any) = &node.any {
        visit(any, tokens.clone(), f);
    }
    if let Some(child) = node.literals.get(token) {
        visit(child, tokens, f);
    }
}

fn remove_from<V>(node: &mut Node<V>, tokens: &[PatternToken], key: u64) -> Option<V> {
    let take = |list: &mut Vec<(u64, V)>| {
        let at = list.iter().position(|(k, _)| *k == key)?;
        Some(list.swap_remove(at).1)
    };
    let Some((token, rest)) = tokens.split_first() else {
        return take(&mut node.here);
    };
    match token {
        PatternToken::Rest => take(&mut node.rest),
        PatternToken::Any => {
            let child = node.any.as_mut()?;
            let removed = remove_from(child, rest, key);
            if child.is_empty() {
                node.any = None;
            }
            removed
        }
        PatternToken::Literal(l) => {
            let child = node.literals.get_mut(l)?;
            let removed = remove_from(child, rest, key);
            if child.is_empty() {
                node.literals.remove(l);
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn matches(trie: &SubjectTrie<()>, subject: &str) -> Vec<u64> {
        let mut keys = Vec::new();
        trie.for_each_match(subject, |k, _| keys.push(k));
        keys.sort_unstable();
        keys
    }

    #[test]
    fn removing_everything_leaves_an_empty_root() {
        let mut trie = SubjectTrie::new();
        let patterns = ["a.b", "a.*", "a.>", ">", "*.b.c", "a.b.c"];
        for (k, p) in patterns.iter().enumerate() {
            trie.insert(&Pattern::new(p).unwrap(), k as u64, ());
        }
        assert_eq!(matches(&trie, "a.b"), [0, 1, 2, 3]);
        for (k, p) in patterns.iter().enumerate() {
            assert_eq!(trie.remove(&Pattern::new(p).unwrap(), k as u64), Some(()));
        }
        assert!(trie.is_empty());
        assert!(trie.root.is_empty(), "all branches pruned");
        assert_eq!(trie.remove(&Pattern::new("a.b").unwrap(), 0), None);
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("c".to_owned())
        ]
    }

    fn subject() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..5).prop_map(|t| t.join("."))
    }

    fn pattern() -> impl Strategy<Value = Pattern> {
        (
            prop::collection::vec(prop_oneof![3 => token(), 1 => Just("*".to_owned())], 0..4),
            any::<bool>(),
        )
            .prop_filter_map("non-empty", |(mut tokens, rest)| {
                if rest {
                    tokens.push(">".into());
                }
                Pattern::new(tokens.join(".")).ok()
            })
    }

    #[derive(Debug, Clone)]
    enum Step {
        Subscribe(Pattern),
        Unsubscribe(usize),
    }

    proptest! {
        /// The trie returns exactly what a linear scan with `Pattern::matches` returns, through
        /// any sequence of subscribes and unsubscribes.
        #[test]
        fn trie_equals_linear_scan(
            steps in prop::collection::vec(prop_oneof![
                3 => pattern().prop_map(Step::Subscribe),
                1 => any::<usize>().prop_map(Step::Unsubscribe),
            ], 1..40),
            subjects in prop::collection::vec(subject(), 1..20),
        ) {
            let mut trie = SubjectTrie::new();
            let mut live: Vec<(u64, Pattern)> = Vec::new();
            for (key, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Subscribe(p) => {
                        trie.insert(&p, key as u64, ());
                        live.push((key as u64, p));
                    }
                    Step::Unsubscribe(i) if !live.is_empty() => {
                        let (k, p) = live.swap_remove(i % live.len());
                        prop_assert_eq!(trie.remove(&p, k), Some(()));
                    }
                    Step::Unsubscribe(_) => {}
                }
                prop_assert_eq!(trie.len(), live.len());
                for s in &subjects {
                    let mut expected: Vec<u64> =
                        live.iter().filter(|(_, p)| p.matches(s)).map(|(k, _)| *k).collect();
                    expected.sort_unstable();
                    prop_assert_eq!(matches(&trie, s), expected, "subject {}", s);
                }
            }
        }
    }
}
