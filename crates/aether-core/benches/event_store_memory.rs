//! Heap bytes per stored event: [`InMemoryEventStore`] and the baseline
//! [`MutexHashMapStore`] against the events themselves in a plain `Vec<Event>`.
//!
//! A counting global allocator reports the live heap bytes each holds after 1_000_000 small
//! events over 10_000 actors (100 each) were saved. The actor ids are created beforehand and
//! shared by all three, so they are not counted. The allocator's own per-block overhead is not
//! counted either: these are requested bytes.
//!
//! Run: `cargo bench -p aether-core --bench event_store_memory`. Without `--bench` among its
//! arguments (as under `cargo test --benches`) it runs a quick smoke test on 10_000 events.

use aether_core::{ActorId, Event, EventStore, InMemoryEventStore, SaveOutcome, Version};
use aether_testkit::alloc::CountingAlloc;
use aether_testkit::baseline::MutexHashMapStore;
use aether_testkit::fixtures::{actors, small_event};
use futures::FutureExt;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const ACTORS: usize = 10_000;
const MIB: f64 = 1024.0 * 1024.0;

/// What one store holds after the fill.
struct Measure {
    name: &'static str,
    live: usize,
}

/// Live heap bytes added by `fill` (its result is kept alive while measuring).
fn measure<T>(name: &'static str, fill: impl FnOnce() -> T) -> Measure {
    let before = ALLOC.live_bytes();
    let filled = fill();
    let measure = Measure {
        name,
        live: ALLOC.live_bytes() - before,
    };
    drop(filled);
    measure
}

/// Calls `save` with version 1 of every actor, then version 2, … up to `versions`, building each
/// event just before saving it (so at most one event is outside the store at any time).
fn fill(all_actors: &[ActorId], versions: Version, mut save: impl FnMut(Event)) {
    for version in 1..=versions {
        for actor_id in all_actors {
            save(small_event(actor_id, version));
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench` (and possibly a filter, ignored); `cargo test --benches`
    // does not: then only check that everything runs.
    let full = std::env::args().any(|arg| arg == "--bench");
    let versions: Version = if full { 100 } else { 1 };
    let all_actors = actors("account", ACTORS);
    let events = ACTORS * versions as usize;

    let raw = measure("Vec<Event> (the events alone)", || {
        let mut raw = Vec::with_capacity(events);
        fill(&all_actors, versions, |event| raw.push(event));
        raw
    });
    let ours = measure("InMemoryEventStore", || {
        let store = InMemoryEventStore::new();
        fill(&all_actors, versions, |event| {
            let outcome = store
                .save_event(event)
                .now_or_never()
                .expect("always ready");
            assert!(matches!(outcome, Ok(SaveOutcome::Saved)), "{outcome:?}");
        });
        store
    });
    let baseline = measure("MutexHashMapStore (baseline)", || {
        let store = MutexHashMapStore::new();
        fill(&all_actors, versions, |event| {
            store.save_event(event).expect("versions increase")
        });
        store
    });

    if !full {
        println!("event_store_memory: smoke test on {events} events passed (run with --bench)");
        return;
    }
    println!(
        "Live heap after saving {events} small events over {ACTORS} actors \
         (size_of::<Event>() = {} bytes)\n",
        size_of::<Event>()
    );
    println!(
        "{:<30} {:>10} {:>12} {:>15} {:>7}",
        "store", "total MiB", "bytes/event", "overhead/event", "vs raw"
    );
    for m in [&raw, &ours, &baseline] {
        println!(
            "{:<30} {:>10.1} {:>12.1} {:>15.1} {:>6.2}x",
            m.name,
            m.live as f64 / MIB,
            m.live as f64 / events as f64,
            (m.live as f64 - raw.live as f64) / events as f64,
            m.live as f64 / raw.live as f64
        );
    }
}
