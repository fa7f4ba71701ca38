//! Differential test of subject-pattern semantics: `aether_core::Pattern::matches` (and the
//! `SubjectTrie` built on the same patterns) against a real `nats-server`, on well over 10 000
//! seeded random (pattern, subject) pairs. Every pattern is a real subscription and every subject
//! a real publish; a pair "matches" on the server when the subject's message reaches the pattern's
//! subscription. The two sides must agree on every pair. Patterns that put `>` before the last
//! token are rejected by `Pattern::new`, and must be rejected by the server too (`-ERR 'Invalid
//! Subject'`). Needs `nats-server`; fails (never skips) with the install command when it is
//! missing.
//!
//! Batches of a dozen patterns × a dozen subjects, each batch drawn from two literals and a narrow
//! range of lengths so that matches are common (the test asserts both outcomes are well
//! represented). Delivery is known to be complete without sleeping: NATS keeps the order of one
//! connection's operations, so a sentinel published after a batch's subjects (from the same
//! publishing connection) reaches the subscribing connection after every message of the batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use aether_core::{Pattern, SubjectTrie};
use aether_testkit::nats_server::NatsServer;
use async_nats::{Client, ConnectOptions, Event, Subscriber};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;

/// Fixed seed: every run tests the same pairs, so a failure reproduces.
const SEED: u64 = 0x5eed_ae7e_0005_0004;
/// Batches stop once this many distinct pairs have been checked; at most `MAX_BATCHES`.
const TARGET_PAIRS: usize = 12_000;
const MAX_BATCHES: usize = 200;
const PATTERNS_PER_BATCH: usize = 12;
const SUBJECTS_PER_BATCH: usize = 12;
/// Distinct (pattern, subject) pairs that must have been checked against the server.
const MIN_PAIRS: usize = 10_000;
/// Patterns with a `>` before the last token, each checked to be rejected by both sides.
const MISPLACED_WILDCARD_PATTERNS: usize = 30;
/// Each class (match, non-match) must be at least this share of the pairs, in percent.
const MIN_CLASS_PERCENT: f64 = 20.0;
/// Each kind of pattern (literal, with `*`, with `>`) must be checked on at least this many
/// matching and this many non-matching pairs (a literal pattern matches one subject at most).
const MIN_PER_KIND: usize = 50;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Literal tokens. `a*` and `>b` carry wildcard characters inside a longer token, which both
/// nats-server and `Pattern` treat as plain literals; `A` checks case sensitivity.
const LITERALS: &[&str] = &["a", "b", "c", "ab", "A", "x-1", "a*", ">b"];

/// Subject of the sentinels; no generated subject starts with it. Sentinels carry an empty
/// payload, so the wildcard subscriptions that also receive them ignore them.
const SYNC_PREFIX: &str = "_sync";

/// xorshift64*: tiny, deterministic, good enough to pick tokens.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// What one batch draws from: a few of the [`LITERALS`] and a narrow range of lengths, so that
/// its patterns and subjects overlap often enough for matches to be as common as non-matches.
struct Theme {
    literals: Vec<&'static str>,
    /// Token counts are mostly `min_len`, else `min_len + 1` (plus what a `>` stands for in
    /// subjects).
    min_len: usize,
}

impl Theme {
    fn new(rng: &mut Rng, batch: usize) -> Self {
        // Batches rotate through all the literals; each adds one random other.
        let mut literals = vec![LITERALS[batch % LITERALS.len()]];
        while literals.len() < 2 {
            let literal = LITERALS[rng.below(LITERALS.len())];
            if !literals.contains(&literal) {
                literals.push(literal);
            }
        }
        Self {
            literals,
            min_len: 1 + rng.below(4),
        }
    }

    /// The first literal more often than the other, for more coincidences.
    fn literal(&self, rng: &mut Rng) -> &'static str {
        self.literals[usize::from(!rng.chance(70))]
    }

    fn len(&self, rng: &mut Rng) -> usize {
        self.min_len + usize::from(rng.chance(20))
    }

    /// A valid pattern: literals, `*`s, and sometimes a final `>`.
    fn pattern(&self, rng: &mut Rng) -> String {
        let len = self.len(rng);
        (0..len)
            .map(|i| {
                if i + 1 == len && rng.chance(30) {
                    ">"
                } else if rng.chance(50) {
                    "*"
                } else {
                    self.literal(rng)
                }
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// A literal subject: mostly an instance of one of `patterns`, otherwise drawn freely.
    fn subject(&self, rng: &mut Rng, patterns: &[String]) -> String {
        let mut tokens = Vec::new();
        if rng.chance(80) {
            for token in patterns[rng.below(patterns.len())].split('.') {
                match token {
                    "*" => tokens.push(self.literal(rng)),
                    ">" => (0..1 + rng.below(2)).for_each(|_| tokens.push(self.literal(rng))),
                    literal => tokens.push(literal),
                }
            }
        } else {
            (0..self.len(rng)).for_each(|_| tokens.push(self.literal(rng)));
        }
        tokens.join(".")
    }
}

/// A pattern of 2 to 5 tokens with a `>` somewhere before the last token.
fn misplaced_wildcard_pattern(rng: &mut Rng) -> String {
    let len = 2 + rng.below(4);
    let misplaced = rng.below(len - 1);
    (0..len)
        .map(|i| match i {
            _ if i == misplaced => ">",
            _ if rng.chance(20) => ">",
            _ if rng.chance(30) => "*",
            _ => LITERALS[rng.below(LITERALS.len())],
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Up to `count` distinct values from `generate` (fewer if it repeats itself too much: a batch
/// of one-token patterns over two literals has only a handful).
fn distinct(count: usize, mut generate: impl FnMut() -> String) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count * 100 {
        if out.len() == count {
            break;
        }
        let value = generate();
        if seen.insert(value.clone()) {
            out.push(value);
        }
    }
    out
}

/// A connection whose server errors (`-ERR`) arrive on the returned channel.
async fn connect(url: &str) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = ConnectOptions::new()
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(error) = event {
                    let _ = tx.send(error.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    (client, rx)
}

/// Publishes sentinel `n` from `publisher` and waits for it on `sync` (a subscription to
/// `_sync.>`). When it arrives, the server has processed everything `publisher` sent before it,
/// and `sync`'s connection has received (and queued to its subscriptions) every message the
/// server routed to it from `publisher` before the sentinel.
async fn barrier(publisher: &Client, sync: &mut Subscriber, n: u64) {
    let subject = format!("{SYNC_PREFIX}.{n}");
    publisher
        .publish(subject.clone(), "".into())
        .await
        .expect("publish sentinel");
    publisher.flush().await.expect("flush sentinel");
    loop {
        let msg = tokio::time::timeout(TIMEOUT, sync.next())
            .await
            .unwrap_or_else(|_| panic!("sentinel {subject} did not arrive within {TIMEOUT:?}"))
            .expect("sync subscription closed");
        if msg.subject.as_str() == subject {
            return;
        }
    }
}

/// What a pattern is built from, to check that each kind is tested on both outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// Literal tokens only.
    Literal,
    /// At least one `*`, no `>`.
    AnyToken,
    /// A final `>`.
    Rest,
}

impl Kind {
    fn of(pattern: &str) -> Self {
        if pattern.ends_with(".>") || pattern == ">" {
            Self::Rest
        } else if pattern.split('.').any(|t| t == "*") {
            Self::AnyToken
        } else {
            Self::Literal
        }
    }
}

/// Subscribes `patterns` on `subscriber`, publishes `subjects` from `publisher`, and returns
/// `delivered[p][s]`: whether the server delivered subject `s` to pattern `p`'s subscription.
async fn server_matches(
    subscriber: &Client,
    publisher: &Client,
    sync: &mut Subscriber,
    sentinel: &mut u64,
    batch: usize,
    patterns: &[String],
    subjects: &[String],
) -> Vec<Vec<bool>> {
    let mut subscriptions = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        subscriptions.push(
            subscriber
                .subscribe(pattern.clone())
                .await
                .unwrap_or_else(|e| panic!("subscribe {pattern:?}: {e}")),
        );
    }
    // The subscriptions are in place once the subscriber's own sentinel comes back.
    *sentinel += 1;
    barrier(subscriber, sync, *sentinel).await;

    for (index, subject) in subjects.iter().enumerate() {
        publisher
            .publish(subject.clone(), format!("{batch}:{index}").into())
            .await
            .unwrap_or_else(|e| panic!("publish {subject:?}: {e}"));
    }
    // Every message of the batch is queued on its subscription once this sentinel is back.
    *sentinel += 1;
    barrier(publisher, sync, *sentinel).await;

    let mut delivered = vec![vec![false; subjects.len()]; patterns.len()];
    for (p, subscription) in subscriptions.iter_mut().enumerate() {
        // `unconstrained`: tokio's cooperative budget would otherwise make a poll return
        // `Pending` after ~128 messages in one go, although more are queued.
        while let Some(Some(msg)) = tokio::task::unconstrained(subscription.next()).now_or_never() {
            let payload = std::str::from_utf8(&msg.payload).expect("utf-8 payload");
            if payload.is_empty() {
                continue; // a sentinel, which this wildcard pattern also matches
            }
            let (msg_batch, index) = payload.split_once(':').expect("batch:index payload");
            assert_eq!(
                msg_batch,
                batch.to_string(),
                "message from an earlier batch"
            );
            let s: usize = index.parse().expect("subject index");
            assert_eq!(
                msg.subject.as_str(),
                subjects[s],
                "subject of message {payload}"
            );
            assert!(
                !delivered[p][s],
                "{:?} delivered twice to {:?}",
                subjects[s], patterns[p]
            );
            delivered[p][s] = true;
        }
    }
    delivered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_matching_agrees_with_nats_server() {
    let started = Instant::now();
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let (subscriber, mut subscriber_errors) = connect(&url).await;
    let (publisher, mut publisher_errors) = connect(&url).await;
    let mut sync = subscriber
        .subscribe(format!("{SYNC_PREFIX}.>"))
        .await
        .expect("subscribe to sentinels");
    let mut rng = Rng(SEED);
    let mut sentinel = 0;
    // Every distinct (pattern, subject) pair checked, with the server's verdict.
    let mut pairs: HashMap<(String, String), bool> = HashMap::new();
    let mut mismatches = Vec::new();

    let mut batches = 0;
    while pairs.len() < TARGET_PAIRS && batches < MAX_BATCHES {
        let batch = batches;
        batches += 1;
        let theme = Theme::new(&mut rng, batch);
        let patterns = distinct(PATTERNS_PER_BATCH, || theme.pattern(&mut rng));
        let subjects = distinct(SUBJECTS_PER_BATCH, || theme.subject(&mut rng, &patterns));
        let parsed: Vec<Pattern> = patterns
            .iter()
            .map(|p| Pattern::new(p).unwrap_or_else(|e| panic!("generated {p:?}: {e}")))
            .collect();
        let mut trie = SubjectTrie::new();
        for (key, pattern) in parsed.iter().enumerate() {
            trie.insert(pattern, key as u64, ());
        }

        let delivered = server_matches(
            &subscriber,
            &publisher,
            &mut sync,
            &mut sentinel,
            batch,
            &patterns,
            &subjects,
        )
        .await;

        for (s, subject) in subjects.iter().enumerate() {
            let mut in_trie = vec![false; patterns.len()];
            trie.for_each_match(subject, |key, ()| in_trie[key as usize] = true);
            for (p, pattern) in patterns.iter().enumerate() {
                let server = delivered[p][s];
                let ours = parsed[p].matches(subject);
                let before = pairs.insert((pattern.clone(), subject.clone()), server);
                if server != ours || server != in_trie[p] || before.is_some_and(|b| b != server) {
                    mismatches.push(format!(
                        "pattern {pattern:?}, subject {subject:?}: nats-server delivered={server} \
                         (earlier batch: {before:?}), Pattern::matches={ours}, \
                         SubjectTrie={} [batch {batch}]",
                        in_trie[p]
                    ));
                }
            }
        }
    }

    assert!(
        mismatches.is_empty(),
        "{} of {} pairs disagree with nats-server:\n{}",
        mismatches.len(),
        pairs.len(),
        mismatches.join("\n")
    );
    let errors: Vec<String> = std::iter::from_fn(|| subscriber_errors.try_recv().ok())
        .chain(std::iter::from_fn(|| publisher_errors.try_recv().ok()))
        .collect();
    assert!(errors.is_empty(), "server errors: {errors:?}");

    // Patterns with `>` before the last token: `Pattern::new` rejects them, and so does the
    // server (async-nats passes them on: their dot structure is fine). One at a time, so each
    // `-ERR` belongs to the pattern just sent.
    let (rejecting, mut rejections) = connect(&url).await;
    let invalid = distinct(MISPLACED_WILDCARD_PATTERNS, || {
        misplaced_wildcard_pattern(&mut rng)
    });
    assert_eq!(invalid.len(), MISPLACED_WILDCARD_PATTERNS);
    let mut rejected_subscriptions = Vec::new();
    for pattern in &invalid {
        assert!(
            Pattern::new(pattern).is_err(),
            "Pattern::new accepts {pattern:?}, which has `>` before its last token"
        );
        rejected_subscriptions.push(
            rejecting
                .subscribe(pattern.clone())
                .await
                .unwrap_or_else(|e| panic!("async-nats refused {pattern:?} locally: {e}")),
        );
        rejecting.flush().await.expect("flush");
        let error = tokio::time::timeout(TIMEOUT, rejections.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("nats-server did not reject {pattern:?}, which Pattern::new rejects")
            })
            .expect("error channel closed");
        assert!(
            error.to_lowercase().contains("invalid subject"),
            "subscribing {pattern:?}: unexpected server error {error:?}"
        );
    }
    drop(rejected_subscriptions);

    // [non-matches, matches] per kind of pattern, over the distinct pairs.
    let mut by_kind: BTreeMap<Kind, [usize; 2]> = BTreeMap::new();
    for ((pattern, _), server) in &pairs {
        by_kind.entry(Kind::of(pattern)).or_default()[usize::from(*server)] += 1;
    }
    let matches = pairs.values().filter(|m| **m).count();
    let non_matches = pairs.len() - matches;
    let percent = |n: usize| 100.0 * n as f64 / pairs.len() as f64;
    println!(
        "{} distinct pairs in {batches} batches: {matches} match ({:.1}%), {non_matches} do not \
         ({:.1}%); [non-matches, matches] by pattern kind: {by_kind:?}; {} misplaced-`>` \
         patterns rejected by both; {:?}",
        pairs.len(),
        percent(matches),
        percent(non_matches),
        invalid.len(),
        started.elapsed(),
    );
    assert!(
        pairs.len() >= MIN_PAIRS,
        "only {} distinct pairs",
        pairs.len()
    );
    assert!(
        percent(matches) >= MIN_CLASS_PERCENT && percent(non_matches) >= MIN_CLASS_PERCENT,
        "unbalanced pairs: {matches} match, {non_matches} do not"
    );
    for kind in [Kind::Literal, Kind::AnyToken, Kind::Rest] {
        let [non_matches, matches] = by_kind.get(&kind).copied().unwrap_or_default();
        assert!(
            non_matches >= MIN_PER_KIND && matches >= MIN_PER_KIND,
            "{kind:?} patterns: {matches} matching pairs, {non_matches} non-matching"
        );
    }
    drop(server);
}
