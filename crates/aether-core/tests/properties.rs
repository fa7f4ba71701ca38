//! Property tests of the in-memory store.
//!
//! - `matches_the_model`: random sequences of saves, batches, re-saves and reads give exactly
//!   the outcome a simple reference model predicts.
//! - `concurrent_interleavings_keep_the_invariants`: random saves from several threads at once;
//!   afterwards every actor's stored versions strictly increase, `latest_version` is the maximum,
//!   `events(from)` is exactly the filtered history, every acknowledged event is stored exactly
//!   once and nothing that was refused is stored.

use std::collections::{BTreeMap, HashMap, HashSet};

use aether_core::{
    ActorId, Event, EventId, EventStore, InMemoryEventStore, SaveOutcome, StoreError, Version,
};
use futures::FutureExt;
use proptest::prelude::*;

const ACTORS: usize = 3;

fn actor(i: usize) -> ActorId {
    ActorId::new(format!("actor-{i}")).unwrap()
}

/// The in-memory store's futures never wait; run them to completion in place.
fn now<T>(f: impl std::future::Future<Output = T>) -> T {
    f.now_or_never()
        .expect("in-memory store futures are always ready")
}

/// How an operation picks its version relative to the actor's current one.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Next,
    Gap(u64),
    Same,
    Older(u64),
    Zero,
}

impl Pick {
    fn version(self, current: Version) -> Version {
        match self {
            Self::Next => current + 1,
            Self::Gap(k) => current + 1 + k,
            Self::Same => current,
            Self::Older(k) => current.saturating_sub(k),
            Self::Zero => 0,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Save {
        actor: usize,
        pick: Pick,
    },
    Batch {
        actor: usize,
        pick: Pick,
        gaps: Vec<u64>,
    },
    /// Re-save the n-th event any earlier op attempted (same id), unchanged.
    Resave {
        nth: usize,
    },
    /// Save a new event at `pick` that reuses the id of the n-th attempted event.
    ReuseId {
        nth: usize,
        actor: usize,
        pick: Pick,
    },
    Read {
        actor: usize,
        from: u64,
    },
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => Just(Pick::Next),
        2 => (0u64..4).prop_map(Pick::Gap),
        2 => Just(Pick::Same),
        1 => (1u64..4).prop_map(Pick::Older),
        1 => Just(Pick::Zero),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..ACTORS, pick()).prop_map(|(actor, pick)| Op::Save { actor, pick }),
        2 => (0..ACTORS, pick(), prop::collection::vec(0u64..3, 0..4))
            .prop_map(|(actor, pick, gaps)| Op::Batch { actor, pick, gaps }),
        1 => any::<usize>().prop_map(|nth| Op::Resave { nth }),
        1 => (any::<usize>(), 0..ACTORS, pick()).prop_map(|(nth, actor, pick)| Op::ReuseId { nth, actor, pick }),
        2 => (0..ACTORS, 0u64..12).prop_map(|(actor, from)| Op::Read { actor, from }),
    ]
}

/// What an operation did, in terms the model can predict.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Saved,
    Duplicate,
    Conflict { current: Version },
    IdReused,
    Invalid,
    Read(Vec<Version>),
}

fn outcome(result: Result<SaveOutcome, StoreError>) -> Outcome {
    match result {
        Ok(SaveOutcome::Saved) => Outcome::Saved,
        Ok(SaveOutcome::Duplicate) => Outcome::Duplicate,
        Ok(other) => panic!("unknown outcome {other:?}"),
        Err(StoreError::VersionConflict {
            current_version, ..
        }) => Outcome::Conflict {
            current: current_version,
        },
        Err(StoreError::EventIdReused { .. }) => Outcome::IdReused,
        Err(StoreError::InvalidEvent(_)) => Outcome::Invalid,
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// The reference model: per-actor histories and the id index, in the plainest possible form.
#[derive(Default)]
struct Model {
    histories: BTreeMap<ActorId, Vec<Event>>,
    ids: HashMap<EventId, (ActorId, Version)>,
}

impl Model {
    fn current(&self, a: &ActorId) -> Version {
        self.histories
            .get(a)
            .and_then(|h| h.last())
            .map_or(0, |e| e.version)
    }

    fn save(&mut self, batch: Vec<Event>) -> Outcome {
        let unique_ids: HashSet<_> = batch.iter().map(|e| &e.id).collect();
        let increasing = batch.windows(2).all(|w| w[0].version < w[1].version);
        if batch.iter().any(|e| e.version == 0) || !increasing || unique_ids.len() != batch.len() {
            return Outcome::Invalid;
        }
        let a = batch[0].actor_id.clone();
        let current = self.current(&a);
        let slot = |e: &Event| {
            self.ids
                .get(&e.id)
                .map(|s| *s == (e.actor_id.clone(), e.version))
        };
        if batch[0].version <= current {
            if batch.iter().all(|e| slot(e) == Some(true)) {
                return Outcome::Duplicate;
            }
            if batch.iter().any(|e| slot(e) == Some(false)) {
                return Outcome::IdReused;
            }
            return Outcome::Conflict { current };
        }
        if batch.iter().any(|e| slot(e).is_some()) {
            return Outcome::IdReused;
        }
        for e in &batch {
            self.ids.insert(e.id.clone(), (a.clone(), e.version));
        }
        self.histories.entry(a).or_default().extend(batch);
        Outcome::Saved
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let store = InMemoryEventStore::new();
        let mut model = Model::default();
        let mut attempted: Vec<Event> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let (expected, got) = match op {
                Op::Save { actor: n, pick } => {
                    let a = actor(*n);
                    let e = Event::new(a.clone(), "T", pick.version(model.current(&a)));
                    attempted.push(e.clone());
                    (model.save(vec![e.clone()]), outcome(now(store.save_event(e))))
                }
                Op::Batch { actor: n, pick, gaps } => {
                    let a = actor(*n);
                    let mut v = pick.version(model.current(&a));
                    let mut batch = vec![Event::new(a.clone(), "T", v)];
                    for gap in gaps {
                        v += 1 + gap;
                        batch.push(Event::new(a.clone(), "T", v));
                    }
                    attempted.extend(batch.iter().cloned());
                    (model.save(batch.clone()), outcome(now(store.save_events(batch))))
                }
                Op::Resave { nth } if !attempted.is_empty() => {
                    let e = attempted[nth % attempted.len()].clone();
                    (model.save(vec![e.clone()]), outcome(now(store.save_event(e))))
                }
                Op::ReuseId { nth, actor: n, pick } if !attempted.is_empty() => {
                    let a = actor(*n);
                    let mut e = Event::new(a.clone(), "T", pick.version(model.current(&a)));
                    e.id = attempted[nth % attempted.len()].id.clone();
                    (model.save(vec![e.clone()]), outcome(now(store.save_event(e))))
                }
                Op::Read { actor: n, from } => {
                    let a = actor(*n);
                    let expected = model.histories.get(&a).map_or(vec![], |h| {
                        h.iter().filter(|e| e.version >= *from).map(|e| e.version).collect()
                    });
                    let got = now(store.events(&a, *from)).unwrap().iter().map(|e| e.version).collect();
                    (Outcome::Read(expected), Outcome::Read(got))
                }
                Op::Resave { .. } | Op::ReuseId { .. } => continue,
            };
            prop_assert_eq!(&got, &expected, "op {} {:?}", i, op);
        }
        for n in 0..ACTORS {
            let a = actor(n);
            let history = model.histories.get(&a).cloned().unwrap_or_default();
            prop_assert_eq!(now(store.events(&a, 0)).unwrap(), history);
            prop_assert_eq!(now(store.latest_version(&a)).unwrap(), model.current(&a));
        }
    }

    #[test]
    fn concurrent_interleavings_keep_the_invariants(
        threads in prop::collection::vec(prop::collection::vec((0..ACTORS, pick()), 1..40), 2..5),
        froms in prop::collection::vec(0u64..200, 4),
    ) {
        let store = InMemoryEventStore::new();
        // Each thread reads the current version and writes relative to it, as real writers do;
        // the interleaving decides who wins.
        let results: Vec<Vec<(Event, Result<SaveOutcome, StoreError>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = threads
                .iter()
                .map(|ops| {
                    let store = store.clone();
                    s.spawn(move || {
                        ops.iter()
                            .map(|&(n, pick)| {
                                let a = actor(n);
                                let current = now(store.latest_version(&a)).unwrap();
                                let e = Event::new(a, "T", pick.version(current));
                                let result = now(store.save_event(e.clone()));
                                (e, result)
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });

        let mut acknowledged: HashMap<EventId, Event> = HashMap::new();
        let mut refused: HashSet<EventId> = HashSet::new();
        for (e, result) in results.into_iter().flatten() {
            match result {
                Ok(SaveOutcome::Saved) => { acknowledged.insert(e.id.clone(), e); }
                Err(StoreError::VersionConflict { current_version, attempted_version, .. }) => {
                    prop_assert!(current_version >= attempted_version, "conflict below current");
                    refused.insert(e.id.clone());
                }
                Err(StoreError::InvalidEvent(_)) => { prop_assert_eq!(e.version, 0); refused.insert(e.id.clone()); }
                other => prop_assert!(false, "unexpected outcome {:?}", other),
            }
        }
        let mut stored_total = 0;
        for n in 0..ACTORS {
            let a = actor(n);
            let history = now(store.events(&a, 0)).unwrap();
            stored_total += history.len();
            prop_assert!(history.windows(2).all(|w| w[0].version < w[1].version), "versions strictly increase");
            prop_assert_eq!(now(store.latest_version(&a)).unwrap(), history.last().map_or(0, |e| e.version));
            for e in &history {
                prop_assert_eq!(acknowledged.get(&e.id), Some(e), "stored event was acknowledged");
                prop_assert!(!refused.contains(&e.id), "refused event stored");
            }
            for &from in &froms {
                let expected: Vec<Event> = history.iter().filter(|e| e.version >= from).cloned().collect();
                prop_assert_eq!(now(store.events(&a, from)).unwrap(), expected);
            }
        }
        prop_assert_eq!(stored_total, acknowledged.len(), "every acknowledged event stored exactly once");
    }
}
