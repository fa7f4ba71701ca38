//! Throughput of [`InMemoryEventStore`] against the baseline
//! [`MutexHashMapStore`] (one global `Mutex<HashMap<ActorId, Vec<Event>>>`), side by side in each
//! criterion group. See BENCHMARKS.md for what each group measures and the targets.
//!
//! Events are built outside the timed region (`iter_custom`), and stores filled by a benchmark
//! are dropped outside it, so the figures are the stores' own work. The in-memory store is driven
//! through the async [`EventStore`] trait; its futures never wait, so each is polled exactly once
//! with `now_or_never`.
//!
//! Run: `cargo bench -p aether-core --bench event_store`

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use aether_core::{
    ActorId, ActorSnapshot, Event, EventStore, InMemoryEventStore, SaveOutcome, SnapshotStore,
    Version,
};
use aether_testkit::baseline::{MutexContractStore, MutexHashMapStore};
use aether_testkit::fixtures::{actors, history, interleaved, small_event};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main,
};
use futures::FutureExt;

const OURS: &str = "InMemoryEventStore";
const BASELINE: &str = "MutexHashMapStore";
const SAME_WORK: &str = "MutexContractStore";

/// Saves per iteration of `save_sequential_one_actor`.
const SEQUENTIAL_SAVES: usize = 10_000;
/// Actors of `save_2_threads_10k_actors`, split evenly between the threads.
const PARALLEL_ACTORS: usize = 10_000;
/// Versions saved per actor in `save_2_threads_10k_actors` (so 100_000 saves per iteration).
const PARALLEL_VERSIONS: Version = 10;
/// Length of the replayed history.
const REPLAY_EVENTS: usize = 10_000;
/// Version of the snapshot in `replay_with_snapshot`.
const SNAPSHOT_VERSION: Version = 9_900;

/// Polls a future of the in-memory store once: they never wait, so it is always ready.
fn ready<F: Future>(future: F) -> F::Output {
    future
        .now_or_never()
        .expect("in-memory store futures are always ready")
}

fn save_ours(store: &InMemoryEventStore, event: Event) {
    let outcome = ready(store.save_event(event));
    assert!(matches!(outcome, Ok(SaveOutcome::Saved)), "{outcome:?}");
}

fn save_baseline(store: &MutexHashMapStore, event: Event) {
    store.save_event(event).expect("fixture versions increase");
}

fn save_same_work(store: &MutexContractStore, event: Event) {
    assert_eq!(store.save_event(event), Ok(true));
}

/// Runs `run` on a fresh input from `setup`, `iters` times, and returns the time spent in `run`
/// only: neither `setup` nor dropping what `run` returns is timed.
fn timed<I, O>(iters: u64, mut setup: impl FnMut() -> I, mut run: impl FnMut(I) -> O) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = setup();
        let start = Instant::now();
        let output = black_box(run(black_box(input)));
        total += start.elapsed();
        drop(output);
    }
    total
}

fn group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

/// a. Versions 1..=10_000 of one actor, into a fresh store each iteration.
fn save_sequential_one_actor(c: &mut Criterion) {
    let actor_id = ActorId::new("account-1").expect("valid id");
    let mut group = group(c, "save_sequential_one_actor");
    // Iterations of milliseconds, the first ones (on fresh memory) slower: flat sampling keeps
    // 20 samples within the measurement time.
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(SEQUENTIAL_SAVES as u64));

    group.bench_function(OURS, |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || {
                    (
                        InMemoryEventStore::new(),
                        history(&actor_id, SEQUENTIAL_SAVES),
                    )
                },
                |(store, events)| {
                    for event in events {
                        save_ours(&store, event);
                    }
                    store
                },
            )
        });
    });
    group.bench_function(BASELINE, |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || {
                    (
                        MutexHashMapStore::new(),
                        history(&actor_id, SEQUENTIAL_SAVES),
                    )
                },
                |(store, events)| {
                    for event in events {
                        save_baseline(&store, event);
                    }
                    store
                },
            )
        });
    });
    group.bench_function(SAME_WORK, |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || {
                    (
                        MutexContractStore::new(),
                        history(&actor_id, SEQUENTIAL_SAVES),
                    )
                },
                |(store, events)| {
                    for event in events {
                        save_same_work(&store, event);
                    }
                    store
                },
            )
        });
    });
    group.finish();
}

/// The events of `save_2_threads_10k_actors` for `threads` threads: thread `t` owns the `t`-th
/// slice of the actors and saves version 1 of each of them, then version 2, and so on.
fn per_thread_events(all_actors: &[ActorId], threads: usize) -> Vec<Vec<Event>> {
    all_actors
        .chunks(all_actors.len() / threads)
        .map(|mine| interleaved(mine, PARALLEL_VERSIONS))
        .collect()
}

/// Wall time for `threads` scoped threads to save their own events into `store` (thread start
/// and join included: a few tens of µs against tens of ms of saves).
fn save_in_threads<S: Sync>(
    store: &S,
    per_thread: Vec<Vec<Event>>,
    save: fn(&S, Event),
) -> Duration {
    let start = Instant::now();
    thread::scope(|scope| {
        for events in per_thread {
            scope.spawn(move || {
                for event in events {
                    save(store, event);
                }
            });
        }
    });
    start.elapsed()
}

/// b. 100_000 saves spread over 10_000 actors by 1 or 2 threads; with 2, each thread has its own
/// half of the actors, so the threads never touch the same actor.
fn save_2_threads_10k_actors(c: &mut Criterion) {
    let all_actors = actors("account", PARALLEL_ACTORS);
    let mut group = group(c, "save_2_threads_10k_actors");
    // An iteration takes 25-250 ms (the first ones, on fresh memory, are the slowest): the same
    // number of iterations per sample, and time enough for 20 samples of the slowest.
    group
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(6));
    group.throughput(Throughput::Elements(
        PARALLEL_ACTORS as u64 * PARALLEL_VERSIONS,
    ));

    for threads in [1, 2] {
        let label = if threads == 1 {
            "1_thread"
        } else {
            "2_threads"
        };
        group.bench_function(BenchmarkId::new(OURS, label), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let store = InMemoryEventStore::new();
                    let events = per_thread_events(&all_actors, threads);
                    total += save_in_threads(&store, events, save_ours);
                }
                total
            });
        });
        group.bench_function(BenchmarkId::new(BASELINE, label), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let store = MutexHashMapStore::new();
                    let events = per_thread_events(&all_actors, threads);
                    total += save_in_threads(&store, events, save_baseline);
                }
                total
            });
        });
        group.bench_function(BenchmarkId::new(SAME_WORK, label), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let store = MutexContractStore::new();
                    let events = per_thread_events(&all_actors, threads);
                    total += save_in_threads(&store, events, save_same_work);
                }
                total
            });
        });
    }
    group.finish();
}

/// c. Reading back (cloning) the 10_000 events of one actor.
fn replay_10k_events(c: &mut Criterion) {
    let actor_id = ActorId::new("account-1").expect("valid id");
    let ours = InMemoryEventStore::new();
    let baseline = MutexHashMapStore::new();
    for event in history(&actor_id, REPLAY_EVENTS) {
        save_baseline(&baseline, event.clone());
        save_ours(&ours, event);
    }
    assert_eq!(
        ready(ours.events(&actor_id, 0)).expect("replay").len(),
        REPLAY_EVENTS
    );
    assert_eq!(baseline.events(&actor_id, 0).len(), REPLAY_EVENTS);

    let mut group = group(c, "replay_10k_events");
    group.throughput(Throughput::Elements(REPLAY_EVENTS as u64));
    group.bench_function(OURS, |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || (),
                |()| ready(ours.events(&actor_id, 0)).expect("replay"),
            )
        });
    });
    group.bench_function(BASELINE, |b| {
        b.iter_custom(|iters| timed(iters, || (), |()| baseline.events(&actor_id, 0)));
    });
    group.finish();
}

/// d. `latest_version` of an actor with 1_000 events, among 10_000 actors (the others have one
/// event each).
fn latest_version(c: &mut Criterion) {
    let all_actors = actors("account", 10_000);
    let hot = all_actors[0].clone();
    let ours = InMemoryEventStore::new();
    let baseline = MutexHashMapStore::new();
    let events = history(&hot, 1_000).into_iter().chain(
        all_actors[1..]
            .iter()
            .map(|actor_id| small_event(actor_id, 1)),
    );
    for event in events {
        save_baseline(&baseline, event.clone());
        save_ours(&ours, event);
    }
    assert_eq!(ready(ours.latest_version(&hot)).expect("latest"), 1_000);
    assert_eq!(baseline.latest_version(&hot), 1_000);

    let mut group = group(c, "latest_version");
    group.throughput(Throughput::Elements(1));
    group.bench_function(OURS, |b| {
        b.iter(|| ready(ours.latest_version(black_box(&hot))).expect("latest"));
    });
    group.bench_function(BASELINE, |b| {
        b.iter(|| baseline.latest_version(black_box(&hot)))
    });
    group.finish();
}

/// e. Loading an actor with 10_000 events: full replay, or the snapshot at version 9_900 plus the
/// 100 events after it. Both strategies on the in-memory store; no baseline.
fn replay_with_snapshot(c: &mut Criterion) {
    let actor_id = ActorId::new("account-1").expect("valid id");
    let store = InMemoryEventStore::new();
    for event in history(&actor_id, REPLAY_EVENTS) {
        save_ours(&store, event);
    }
    let state = serde_json::json!({ "balance": 49_005_000, "deposits": SNAPSHOT_VERSION });
    let snapshot = ActorSnapshot::new(actor_id.clone(), SNAPSHOT_VERSION, state);
    ready(store.save_snapshot(snapshot)).expect("snapshot within the stored events");

    let load_with_snapshot = || {
        let snapshot = ready(store.latest_snapshot(&actor_id))
            .expect("load")
            .expect("saved");
        let tail = ready(store.events(&actor_id, snapshot.version + 1)).expect("replay");
        (snapshot, tail)
    };
    assert_eq!(
        load_with_snapshot().1.len(),
        REPLAY_EVENTS - SNAPSHOT_VERSION as usize
    );

    let mut group = group(c, "replay_with_snapshot");
    // One element = one actor loaded (10_000 events of history either way).
    group.throughput(Throughput::Elements(1));
    group.bench_function("full_replay", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                || (),
                |()| ready(store.events(&actor_id, 0)).expect("replay"),
            )
        });
    });
    group.bench_function("snapshot_plus_tail", |b| {
        b.iter_custom(|iters| timed(iters, || (), |()| load_with_snapshot()));
    });
    group.finish();
}

criterion_group!(
    benches,
    save_sequential_one_actor,
    save_2_threads_10k_actors,
    replay_10k_events,
    latest_version,
    replay_with_snapshot
);
criterion_main!(benches);
