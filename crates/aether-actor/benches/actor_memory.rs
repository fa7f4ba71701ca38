//! Memory of idle actors, as live heap bytes with a counting allocator (not RSS; the
//! allocator's own per-block overhead is not counted): what one idle active actor with a
//! zero-sized state costs, and whether passivating 100 000 of them gives the memory back.
//!
//! The measurement is the one the memory test asserts on (`tests/support/idle.rs`), here on
//! more actors and reported; next to it, what an idle kameo actor with a zero-sized state
//! costs (spawned with kameo's default bounded mailbox, not registered) — for scale, not a
//! target.
//!
//! Run: `cargo bench -p aether-actor --bench actor_memory`. Without `--bench` (as under
//! `cargo test --benches`) a smoke run on 1 000 actors. `AETHER_BENCH_ACTORS` overrides the
//! number of actors.

#[allow(dead_code)]
#[path = "../tests/support/idle.rs"]
mod idle;
#[allow(dead_code)]
#[path = "support/report.rs"]
mod report;

use aether_testkit::alloc::CountingAlloc;
use kameo::actor::ActorRef;
use report::Report;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

struct KIdle;

impl kameo::Actor for KIdle {
    type Args = Self;
    type Error = kameo::error::Infallible;

    async fn on_start(args: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(args)
    }
}

/// Live bytes before and after spawning `actors` idle kameo actors, and after stopping them.
async fn kameo_idle(actors: usize) -> (usize, usize, usize) {
    // Warm up the runtime's and kameo's lazily allocated parts.
    let mut refs: Vec<_> = (0..100)
        .map(|_| <KIdle as kameo::actor::Spawn>::spawn(KIdle))
        .collect();
    stop(&mut refs).await;
    refs.reserve(actors);
    let start = ALLOC.live_bytes();
    for _ in 0..actors {
        refs.push(<KIdle as kameo::actor::Spawn>::spawn(KIdle));
    }
    // Let every actor's task start and reach its idle wait.
    for actor_ref in &refs {
        actor_ref.wait_for_startup().await;
    }
    let active = ALLOC.live_bytes();
    stop(&mut refs).await;
    (start, active, ALLOC.live_bytes())
}

/// Stops every actor of `refs`, waits for them to end and drops the handles (keeping the
/// vector's capacity).
async fn stop(refs: &mut Vec<ActorRef<KIdle>>) {
    for actor_ref in refs.iter() {
        let _ = actor_ref.stop_gracefully().await;
    }
    for actor_ref in refs.iter() {
        actor_ref.wait_for_shutdown().await;
    }
    refs.clear();
    // Let the stopped actors' tasks run to their end and be freed.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let actors = std::env::var("AETHER_BENCH_ACTORS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(if full { 100_000 } else { 1_000 });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "idle actors, zero-sized state, {actors} actors, live heap bytes (counting allocator)"
    );
    let memory = runtime.block_on(idle::measure(&ALLOC, actors));
    let per_actor = memory.per_actor();
    let (k_start, k_active, k_end) = runtime.block_on(kameo_idle(actors));
    let k_per_actor = (k_active - k_start) / actors;
    println!(
        "ours:  start {} B, {actors} active {} B, all passivated {} B",
        memory.start, memory.active, memory.end
    );
    println!("kameo: start {k_start} B, {actors} spawned {k_active} B, all stopped {k_end} B");
    let mut report = Report::default();
    report.absolute(
        format!("1. live bytes per idle active actor (zero-sized state), {actors} actors"),
        format!("{per_actor} B"),
        format!("{k_per_actor} B (kameo actor, spawned)"),
        "≤ 1024 B",
        per_actor <= 1024,
    );
    let grown = memory.end as f64 / memory.start as f64 - 1.0;
    report.absolute(
        format!("2. live bytes after {actors} actors activated then passivated"),
        format!(
            "{} B → {} B ({:+.2} %, {:+} B)",
            memory.start,
            memory.end,
            grown * 100.0,
            memory.end as i64 - memory.start as i64
        ),
        format!(
            "{k_start} B → {k_end} B ({:+} B, kameo actors spawned then stopped)",
            k_end as i64 - k_start as i64
        ),
        "within 10 %",
        memory.end <= memory.start + memory.start / 10,
    );
    report.note(format!(
        "the starting live bytes include the {actors} actor ids the measurement holds and the \
         runtime after a warm-up of 100 actors; {:+} B is what the activations left behind",
        memory.end as i64 - memory.start as i64
    ));
    report.print(
        &format!("Results (actor memory, {actors} actors, live heap bytes)"),
        "kameo 0.22 (for scale)",
    );
}
