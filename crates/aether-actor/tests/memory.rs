//! Memory of idle actors, measured as live heap bytes with a counting allocator (not RSS):
//! what one idle active actor with a zero-sized state costs, and that passivating them gives
//! the memory back. One test in this binary, so nothing else allocates meanwhile. The
//! measurement is shared with the memory benchmark (`support/idle.rs`).

#[path = "support/idle.rs"]
mod idle;

use aether_testkit::alloc::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

const ACTORS: usize = 20_000;

#[test]
fn idle_actors_cost_little_and_passivation_gives_the_memory_back() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let memory = runtime.block_on(idle::measure(&ALLOC, ACTORS));
    let per_actor = memory.per_actor();
    println!("live bytes per idle active actor (zero-sized state): {per_actor}");
    println!(
        "live bytes: start {}, {ACTORS} active {}, all passivated {}",
        memory.start, memory.active, memory.end
    );
    // The target (issue 15, benchmarks): at most 1 KiB.
    assert!(per_actor <= 1024, "{per_actor} bytes per idle actor");
    // Everything an activation allocated is freed by its passivation (the registry's map
    // shrinks when it empties).
    assert!(
        memory.end <= memory.start + memory.start / 10,
        "after passivating every actor, live bytes are {}, started at {}",
        memory.end,
        memory.start
    );
}
