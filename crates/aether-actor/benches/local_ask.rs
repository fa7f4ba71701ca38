//! Local `ask` of a query (no persistence), the actor addressed by id on both sides: our
//! [`Actors::query`] against kameo's `ask`, measured in the same run.
//!
//! Both sides address the actor by its id on every call: ours by [`ActorId`] through the
//! runtime's registry (the actor is active: activated before timing), kameo by name through its
//! own local registry, `ActorRef::lookup(name)` (a global `Mutex<HashMap>`; without kameo's
//! `remote` feature it is local and synchronous), then `ask` on the handle it returns — not a
//! handle resolved once beforehand. Both actors hold a `u64` and answer `state + query`.
//! kameo is built without its default features (`tracing`, `macros`), its leanest form;
//! ours has its per-command `tracing` span (no subscriber installed) and metrics (no recorder).
//!
//! 1. round trip: one caller, sequential calls, each to the next of the actors in turn;
//! 2. throughput: many concurrent callers (tasks) over many actors.
//! 3. and 3'. the same with our `ask` of a command that decides no event (nothing is
//!    stored): it goes through the actor's mailbox and task, as kameo's `ask` does, while a
//!    query of an idle actor reads the state it lends (ADR 0008) on the caller's task. No
//!    target; it keeps the comparison of message passing in view. Ours makes a command id
//!    (a UUIDv7) per call, kameo nothing.
//!
//! Each round runs ours and kameo back to back, alternating which goes first; the figures are
//! medians over rounds and the ratio the median of each round's `kameo time ÷ our time` (above
//! 1: ours is faster). Sizes: full by default (`cargo bench`); `AETHER_BENCH_QUICK=1` for a
//! quick run; without `--bench` (`cargo test --benches`) a tiny smoke run. Overrides:
//! `AETHER_BENCH_ACTORS`, `_SEQ` (calls per round), `_ASKERS`, `_CALLS` (per asker),
//! `_ROUNDS`.
//!
//! Run: `cargo bench -p aether-actor --bench local_ask`.

use std::sync::Arc;
use std::time::Instant;

use aether_actor::{Actor, ActorConfig, Actors, Decision};
use aether_core::{ActorId, InMemoryEventStore, Namespace};
use kameo::actor::ActorRef;
use serde::{Deserialize, Serialize};

#[allow(dead_code)]
#[path = "../../aether-nats/benches/support/measure.rs"]
mod measure;
#[allow(dead_code)]
#[path = "support/report.rs"]
mod report;

use measure::{BenchResult, Meter, Sample, env_or, fmt_throughput, rounds};
use report::Report;

#[derive(Debug, Clone)]
struct Sizes {
    mode: &'static str,
    rounds: usize,
    actors: usize,
    seq: usize,
    askers: usize,
    calls: usize,
}

impl Sizes {
    fn from_env(bench_mode: bool) -> Self {
        let base = if !bench_mode {
            Self {
                mode: "smoke",
                rounds: 1,
                actors: 10,
                seq: 100,
                askers: 4,
                calls: 50,
            }
        } else if measure::quick() {
            Self {
                mode: "quick",
                rounds: 5,
                actors: 1_000,
                seq: 5_000,
                askers: 64,
                calls: 500,
            }
        } else {
            Self {
                mode: "full",
                rounds: 7,
                actors: 1_000,
                seq: 20_000,
                askers: 64,
                calls: 2_000,
            }
        };
        Self {
            mode: base.mode,
            rounds: env_or("AETHER_BENCH_ROUNDS", base.rounds).max(1),
            actors: env_or("AETHER_BENCH_ACTORS", base.actors).max(1),
            seq: env_or("AETHER_BENCH_SEQ", base.seq).max(1),
            askers: env_or("AETHER_BENCH_ASKERS", base.askers).max(1),
            calls: env_or("AETHER_BENCH_CALLS", base.calls).max(1),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The same actor on both sides: a u64, answering `state + query`.
// ---------------------------------------------------------------------------------------------

struct Echo;

#[derive(Debug, Serialize, Deserialize)]
enum Never {}

impl Actor for Echo {
    const ACTOR_TYPE: &'static str = "echo";
    type State = u64;
    type Command = u64;
    type Event = Never;
    type Reply = u64;
    type Rejection = ();
    type Query = u64;
    type QueryReply = u64;

    fn decide(&self, state: &u64, command: u64) -> Result<Decision<Self>, ()> {
        Ok(Decision::reply(state + command))
    }

    fn apply(&self, _: &mut u64, event: &Never) {
        match *event {}
    }

    fn query(&self, state: &u64, query: u64) -> u64 {
        state + query
    }
}

struct KEcho {
    state: u64,
}

impl kameo::Actor for KEcho {
    type Args = Self;
    type Error = kameo::error::Infallible;

    async fn on_start(args: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(args)
    }
}

#[derive(Debug)]
struct Get(u64);

impl kameo::message::Message<Get> for KEcho {
    type Reply = u64;

    async fn handle(&mut self, Get(query): Get, _: &mut kameo::message::Context<Self, u64>) -> u64 {
        self.state + query
    }
}

// ---------------------------------------------------------------------------------------------
// Calls by id
// ---------------------------------------------------------------------------------------------

/// Both systems, `actors` actors each, all active.
struct Systems {
    ours: Actors<Echo, InMemoryEventStore>,
    ids: Vec<ActorId>,
    /// kameo registry names, `echo-{i}`.
    names: Vec<String>,
    refs: Vec<ActorRef<KEcho>>,
}

impl Systems {
    async fn start(actors: usize) -> BenchResult<Self> {
        let config = ActorConfig {
            idle_timeout: None,
            ..ActorConfig::default()
        };
        let ours = Actors::new(
            Namespace::new("bench")?,
            Echo,
            InMemoryEventStore::new(),
            config,
        )?;
        let ids: Vec<ActorId> = (0..actors)
            .map(|i| ActorId::new(format!("echo-{i}")))
            .collect::<Result<_, _>>()?;
        let names: Vec<String> = (0..actors).map(|i| format!("echo-{i}")).collect();
        let mut refs = Vec::with_capacity(actors);
        for (id, name) in ids.iter().zip(&names) {
            // Activates ours (an empty history: state 0).
            assert_eq!(ours.query(id, 1).await?, 1);
            let actor_ref = <KEcho as kameo::actor::Spawn>::spawn(KEcho { state: 0 });
            actor_ref.register(name.clone())?;
            refs.push(actor_ref);
        }
        Ok(Self {
            ours,
            ids,
            names,
            refs,
        })
    }

    async fn ours(&self, i: usize, query: u64) -> BenchResult<u64> {
        Ok(self.ours.query(&self.ids[i], query).await?)
    }

    async fn kameo(&self, i: usize, query: u64) -> BenchResult<u64> {
        let actor_ref = ActorRef::<KEcho>::lookup(self.names[i].as_str())?
            .ok_or("kameo actor not registered")?;
        actor_ref
            .ask(Get(query))
            .await
            .map_err(|e| format!("kameo ask: {e:?}").into())
    }

    /// Ours through the mailbox: an `ask` of a command that decides no event.
    async fn ours_ask(&self, i: usize, command: u64) -> BenchResult<u64> {
        Ok(self.ours.ask(&self.ids[i], command).await?.reply)
    }

    async fn call(&self, side: Side, i: usize, query: u64) -> BenchResult<u64> {
        match side {
            Side::Kameo => self.kameo(i, query).await,
            Side::Query => self.ours(i, query).await,
            Side::Ask => self.ours_ask(i, query).await,
        }
    }

    async fn stop(self) {
        self.ours.shutdown().await;
        for actor_ref in self.refs {
            let _ = actor_ref.stop_gracefully().await;
            actor_ref.wait_for_shutdown().await;
        }
    }
}

/// Who answers a call: kameo's `ask`, or ours by `query` or by `ask` of a command.
#[derive(Debug, Clone, Copy)]
enum Side {
    Kameo,
    Query,
    Ask,
}

/// `n` sequential calls, call `c` to actor `c % actors`.
async fn sequential(systems: &Systems, side: Side, n: usize) -> BenchResult<Sample> {
    let actors = systems.ids.len();
    let meter = Meter::start();
    for c in 0..n {
        let reply = systems.call(side, c % actors, c as u64).await?;
        assert_eq!(reply, c as u64);
    }
    Ok(meter.stop())
}

/// `askers` tasks making `calls` sequential calls each; asker `t`'s call `c` goes to actor
/// `(t * 7919 + c) % actors`, so the askers spread over every actor.
async fn concurrent(
    systems: &Arc<Systems>,
    side: Side,
    askers: usize,
    calls: usize,
) -> BenchResult<Sample> {
    let actors = systems.ids.len();
    let meter = Meter::start();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..askers {
        let systems = Arc::clone(systems);
        tasks.spawn(async move {
            for c in 0..calls {
                let reply = systems
                    .call(side, (t * 7919 + c) % actors, c as u64)
                    .await?;
                assert_eq!(reply, c as u64);
            }
            Ok::<_, measure::BoxError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(meter.stop())
}

async fn run(sizes: Sizes, filters: Vec<String>) -> BenchResult<()> {
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    println!(
        "aether-actor Actors::query vs kameo {} ask (registry lookup by name each call); {} mode; \
         {} rounds; {} cores",
        KAMEO_VERSION,
        sizes.mode,
        sizes.rounds,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("sizes: {sizes:?}");
    let systems = Arc::new(Systems::start(sizes.actors).await?);
    let mut report = Report::default();
    for (number, ours_side, how, target) in [
        ("1", Side::Query, "query", Some(0.9)),
        (
            "3",
            Side::Ask,
            "ask of a command, through the mailbox",
            None,
        ),
    ] {
        let versus = |variant: usize| if variant == 1 { Side::Kameo } else { ours_side };
        if wanted("seq") {
            let n = sizes.seq;
            println!(
                "\n[{number}] round trip, ours by {how}: {n} sequential calls over {} actors",
                sizes.actors
            );
            // Warm-up, not timed.
            sequential(&systems, ours_side, n.min(1_000)).await?;
            sequential(&systems, Side::Kameo, n.min(1_000)).await?;
            let series = rounds(
                sizes.rounds,
                2,
                |_| true,
                async |variant, _| sequential(&systems, versus(variant), n).await,
            )
            .await?;
            let (ours, kameo) = (&series[0], &series[1]);
            let ops = n as f64;
            println!("  ours:  {}", ours.list_rates(ops, "calls"));
            println!("  kameo: {}", kameo.list_rates(ops, "calls"));
            report.ratio(
                format!(
                    "{number}. round trip ({how}), sequential, {n} calls over {} actors",
                    sizes.actors
                ),
                fmt_throughput(ours, ops, "calls"),
                fmt_throughput(kameo, ops, "calls"),
                ours.paired(kameo),
                target,
            );
        }
        if wanted("concurrent") {
            let (askers, calls) = (sizes.askers, sizes.calls);
            let number = if number == "1" { "2" } else { "3'" };
            println!(
                "\n[{number}] throughput, ours by {how}: {askers} concurrent askers × {calls} calls \
                 over {} actors",
                sizes.actors
            );
            concurrent(&systems, ours_side, askers, calls.min(100)).await?;
            concurrent(&systems, Side::Kameo, askers, calls.min(100)).await?;
            let series = rounds(
                sizes.rounds,
                2,
                |_| true,
                async |variant, _| concurrent(&systems, versus(variant), askers, calls).await,
            )
            .await?;
            let (ours, kameo) = (&series[0], &series[1]);
            let ops = (askers * calls) as f64;
            println!("  ours:  {}", ours.list_rates(ops, "calls"));
            println!("  kameo: {}", kameo.list_rates(ops, "calls"));
            report.ratio(
                format!(
                    "{number}. throughput ({how}), {askers} concurrent askers × {calls} calls \
                     over {} actors",
                    sizes.actors
                ),
                fmt_throughput(ours, ops, "calls"),
                fmt_throughput(kameo, ops, "calls"),
                ours.paired(kameo),
                target,
            );
        }
    }
    let systems = Arc::into_inner(systems).ok_or("systems still shared")?;
    systems.stop().await;
    report.print(
        &format!(
            "Results (local ask, {} mode, medians of {} alternating rounds; ratio = kameo time ÷ \
             our time, > 1: ours faster)",
            sizes.mode, sizes.rounds
        ),
        &format!("kameo {KAMEO_VERSION} (lookup + ask)"),
    );
    Ok(())
}

/// The kameo version this benchmark is built against (see the workspace `Cargo.toml`).
const KAMEO_VERSION: &str = "0.22";

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    let sizes = Sizes::from_env(bench_mode);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let result = runtime.block_on(run(sizes, filters));
    drop(runtime);
    println!(
        "\ntotal time {}",
        measure::fmt_secs(started.elapsed().as_secs_f64())
    );
    result
}
