//! Idle actors with a zero-sized state ([`Idle`]) and the measurement of what they cost in live
//! heap bytes ([`measure`]), shared by the memory test (`tests/memory.rs`, which asserts the
//! targets) and the memory benchmark (`benches/actor_memory.rs`, which reports the figures).

use aether_actor::{Actor, ActorConfig, Actors, Decision};
use aether_core::{ActorId, InMemoryEventStore, Namespace};
use aether_testkit::alloc::CountingAlloc;
use serde::{Deserialize, Serialize};

/// An actor with a zero-sized state, no events and nothing to say.
pub(crate) struct Idle;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Never {}

impl Actor for Idle {
    const ACTOR_TYPE: &'static str = "idle";
    type State = ();
    type Command = ();
    type Event = Never;
    type Reply = ();
    type Rejection = ();
    type Query = ();
    type QueryReply = ();

    fn decide(&self, (): &(), (): ()) -> Result<Decision<Self>, ()> {
        Ok(Decision::reply(()))
    }

    fn apply(&self, (): &mut (), event: &Never) {
        match *event {}
    }

    fn query(&self, (): &(), (): ()) {}
}

/// Live heap bytes around activating `actors` idle actors and passivating them all.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleMemory {
    pub(crate) actors: usize,
    /// Before the activations (after a warm-up; the ids are already allocated).
    pub(crate) start: usize,
    /// With every actor active and idle.
    pub(crate) active: usize,
    /// After every actor was passivated.
    pub(crate) end: usize,
}

impl IdleMemory {
    /// What one idle active actor costs, on average.
    pub(crate) fn per_actor(&self) -> usize {
        (self.active - self.start) / self.actors
    }
}

/// Activates `actors` idle actors (by a query each) on a fresh runtime of the in-memory store,
/// then passivates them all, reading `alloc`'s live bytes before, in between and after. Run it
/// with nothing else allocating meanwhile (one test per binary, a current-thread runtime).
///
/// # Panics
///
/// If an actor does not answer or the runtime's counts are not as expected.
pub(crate) async fn measure(alloc: &CountingAlloc, actors: usize) -> IdleMemory {
    let default = ActorConfig::default();
    let config = ActorConfig {
        max_active: actors.max(default.max_active),
        ..default
    };
    let runtime = Actors::new(
        Namespace::new("memory").unwrap(),
        Idle,
        InMemoryEventStore::new(),
        config,
    )
    .unwrap();
    let ids: Vec<ActorId> = (0..actors.max(100))
        .map(|i| ActorId::new(format!("a{i}")).unwrap())
        .collect();
    // Warm up whatever is allocated once (lazy statics, the timer wheel, the store's maps).
    for id in &ids[..100] {
        runtime.query(id, ()).await.unwrap();
    }
    for id in &ids[..100] {
        assert!(runtime.passivate(id).await);
    }
    let ids = &ids[..actors];
    let start = alloc.live_bytes();
    for id in ids {
        runtime.query(id, ()).await.unwrap();
    }
    let active = alloc.live_bytes();
    assert_eq!(runtime.stats().active, actors as u64);
    for id in ids {
        assert!(runtime.passivate(id).await);
    }
    let end = alloc.live_bytes();
    assert_eq!(runtime.stats().active, 0);
    runtime.shutdown().await;
    IdleMemory {
        actors,
        start,
        active,
        end,
    }
}
