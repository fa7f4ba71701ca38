//! A diagnostic, not a benchmark with a target: the cost of an `ask` on 1 000 busy actors of
//! the in-memory store while idle actors pile up, 1 000 more each round (each had 20 commands,
//! so each keeps a command index of 20 entries). `PASSIVATE=1` passivates each round's new
//! actors after it, for comparison.
//!
//! It is what showed that glibc's `malloc`, not the runtime, makes commands slower as actors
//! accumulate (BENCHMARKS.md, session 12). Compare allocators without rebuilding:
//!
//! ```text
//! cargo build --release -p aether-actor --example idle_actors_probe
//! ./target/release/examples/idle_actors_probe
//! LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ./target/release/examples/idle_actors_probe
//! ```
use std::time::Instant;

use aether_actor::{ActorConfig, Actors};
use aether_core::{ActorId, InMemoryEventStore, Namespace};

#[path = "../benches/support/ledger.rs"]
mod ledger;

use ledger::{Deposit, Ledger};

/// One round: `k` asks to each of `n` actors `<prefix>-<i>`, one task per actor; returns µs per ask.
async fn round(actors: &Actors<Ledger, InMemoryEventStore>, prefix: &str, n: usize, k: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let actors = actors.clone();
        let id = ActorId::new(format!("{prefix}-{i}")).unwrap();
        tasks.spawn(async move {
            for v in 0..k {
                actors.ask(&id, Deposit::numbered(v)).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / (n as f64 * k as f64)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let passivate = std::env::var_os("PASSIVATE").is_some();
    let actors = Actors::new(
        Namespace::new("bench").unwrap(),
        Ledger,
        InMemoryEventStore::new(),
        ActorConfig::default(),
    )
    .unwrap();
    let busy = Actors::new(
        Namespace::new("bench2").unwrap(),
        Ledger,
        InMemoryEventStore::new(),
        ActorConfig::default(),
    )
    .unwrap();
    for r in 0..16 {
        let t_new = round(&actors, &format!("new{r}"), 1000, 20).await;
        if passivate {
            for i in 0..1000 {
                actors
                    .passivate(&ActorId::new(format!("new{r}-{i}")).unwrap())
                    .await;
            }
        }
        let t_busy = round(&busy, "busy", 1000, 20).await;
        println!(
            "round {r:2}: idle actors {:6}  new {t_new:5.2} µs/ask  busy {t_busy:5.2} µs/ask",
            if passivate { 0 } else { (r + 1) * 1000 }
        );
    }
}
