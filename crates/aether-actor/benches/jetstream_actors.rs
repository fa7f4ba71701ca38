//! Actors on JetStream against the raw store doing the same writes and reads, measured in the
//! same run on the same `nats-server` (started by the test harness):
//!
//! 1. 1 000 actors handling commands that persist one event each (one task per actor asking its
//!    actor in turn) against [`JetStreamEventStore::save_event`] of the same events from 1 000
//!    concurrent tasks (the `jetstream_store` benchmark's case 2) — on new actors (ours
//!    activates each, an empty load, before its first command; they are passivated after the
//!    round, untimed) and on actors already active (ours) whose heads the store has cached
//!    (the baseline);
//! 2. activation of an actor with a snapshot and a 100-event tail (passivated, then queried: the
//!    query's round trip includes the activation) against [`SnapshotStore::load`] of the same
//!    actor alone; with the default command horizon (1 024: the snapshot holds the ids and
//!    outcomes of the last 1 000 commands) and, as a diagnostic, with a horizon of 10.
//!
//! Every round runs each variant once, rotating which goes first; figures are medians over
//! rounds and a ratio is the median of each round's `baseline time ÷ our time` (above 1: ours
//! is faster). The timing support (rounds, medians, client CPU per operation from
//! `/proc/self/task/*/schedstat`, the benchmark event's data) is `aether-nats`' bench support.
//!
//! Sizes: full by default (`cargo bench`); `AETHER_BENCH_QUICK=1` for a quick run; without
//! `--bench` (`cargo test --benches`) a tiny smoke run. Overrides: `AETHER_BENCH_ACTORS`,
//! `_EVENTS_PER_ACTOR`, `_SNAP` (events covered by the snapshot), `_TAIL`, `_ACTIVATIONS` (per
//! round), `_HORIZON` (the actors' command horizon, default 1024: the snapshot keeps that
//! many recent command ids), `_ROUNDS`. Arguments that do not start with `-` select benchmarks by name
//! (`concurrent`, `activation`). To profile one side alone, `AETHER_BENCH_ONLY=ours` or `=raw`
//! (then the ratios are not numbers).
//!
//! Run: `NATS_SERVER_BIN=… cargo bench -p aether-actor --bench jetstream_actors`.
//!
//! Allocator: jemalloc for both sides, as a service should run Aether; `RUSTFLAGS='--cfg
//! aether_system_alloc'` builds it on the system allocator (see `support/allocator.rs`).

use aether_actor::{ActorConfig, Actors, CommandId, SnapshotPolicy};
use aether_core::{
    ActorId, Event, EventId, EventStore, Namespace, SnapshotStore, StoreError, Version,
};
use aether_nats::JetStreamEventStore;

#[path = "support/allocator.rs"]
mod allocator;
#[path = "support/ledger.rs"]
mod ledger;
#[allow(dead_code)]
#[path = "../../aether-nats/benches/support/measure.rs"]
mod measure;
#[allow(dead_code)]
#[path = "support/report.rs"]
mod report;

use ledger::{Deposit, Ledger};
use measure::{BenchResult, Meter, Sample, env_or, fmt_secs, fmt_throughput, rounds, runs};
use report::Report;

#[derive(Debug, Clone)]
struct Sizes {
    mode: &'static str,
    rounds: usize,
    actors: usize,
    events_per_actor: u64,
    snap: u64,
    tail: u64,
    activations: usize,
    /// The actors' command horizon (how many recent command ids a snapshot keeps).
    horizon: usize,
}

impl Sizes {
    fn from_env(bench_mode: bool) -> Self {
        let base = if !bench_mode {
            Self {
                mode: "smoke",
                rounds: 1,
                actors: 10,
                events_per_actor: 3,
                snap: 20,
                tail: 10,
                activations: 2,
                horizon: 1024,
            }
        } else if measure::quick() {
            Self {
                mode: "quick",
                rounds: 5,
                actors: 1_000,
                events_per_actor: 5,
                snap: 1_000,
                tail: 100,
                activations: 10,
                horizon: 1024,
            }
        } else {
            Self {
                mode: "full",
                rounds: 7,
                actors: 1_000,
                events_per_actor: 20,
                snap: 1_000,
                tail: 100,
                activations: 30,
                horizon: 1024,
            }
        };
        Self {
            mode: base.mode,
            rounds: env_or("AETHER_BENCH_ROUNDS", base.rounds).max(1),
            actors: env_or("AETHER_BENCH_ACTORS", base.actors).max(1),
            events_per_actor: env_or("AETHER_BENCH_EVENTS_PER_ACTOR", base.events_per_actor).max(1),
            snap: env_or("AETHER_BENCH_SNAP", base.snap).max(1),
            tail: env_or("AETHER_BENCH_TAIL", base.tail),
            activations: env_or("AETHER_BENCH_ACTIVATIONS", base.activations).max(1),
            horizon: env_or("AETHER_BENCH_HORIZON", base.horizon).max(1),
        }
    }
}

// The actor: `support/ledger.rs`.

fn actor(name: impl Into<String>) -> ActorId {
    ActorId::new(name.into()).expect("benchmark actor ids are valid")
}

/// The event our actor stores for `Deposit::numbered(version)` as its command's only event, as
/// the raw baseline saves it: the same type, data, stream id form (`ledger.<id>`), command id,
/// event id derived from it (`<command id>.0`) and reply in the metadata (`aetherReply`, the
/// runtime's key for it; the reply is the version).
fn raw_event(stream: &ActorId, version: Version) -> Event {
    let data = match serde_json::to_value(Deposit::numbered(version)) {
        Ok(serde_json::Value::Object(data)) => data,
        other => unreachable!("a struct encodes as an object: {other:?}"),
    };
    let command_id = CommandId::generate();
    let id = EventId::new(format!("{command_id}.0")).expect("a command id makes an event id");
    Event::builder(stream.clone(), "Deposited")
        .id(id)
        .version(version)
        .command_id(command_id.as_str())
        .data_object(data)
        .metadata("aetherReply", version.to_string())
        .build()
}

// ---------------------------------------------------------------------------------------------
// The benchmarks
// ---------------------------------------------------------------------------------------------

/// Every variant of benchmark 1 has a connection and a store handle (so a head cache) of its
/// own, all on namespace `bench`: new actors never push the warm ones out of a cache.
struct Bench {
    sizes: Sizes,
    /// Ours on new actors.
    actors_new: Actors<Ledger, JetStreamEventStore>,
    /// Ours on actors kept active.
    actors_active: Actors<Ledger, JetStreamEventStore>,
    /// The baseline on new actors.
    raw_new: JetStreamEventStore,
    /// The baseline on actors whose heads it has cached.
    raw_cached: JetStreamEventStore,
    report: Report,
}

impl Bench {
    /// Benchmark 1: `actors` actors × `events_per_actor` commands, one event each.
    async fn concurrent(&mut self) -> BenchResult<()> {
        let (a, k) = (self.sizes.actors, self.sizes.events_per_actor);
        let ops = a as f64 * k as f64;
        println!("\n[1] {a} actors × {k} commands of one event each, one task per actor");
        // The stored events of both sides are the same size (their ids and timestamps differ).
        let probe = actor("probe");
        self.actors_new.ask(&probe, Deposit::numbered(1)).await?;
        let stored = self
            .actors_new
            .store()
            .events(&self.actors_new.stream_id(&probe)?, 0)
            .await?;
        let ours_len = serde_json::to_vec(&stored[0])?.len();
        let raw_len = serde_json::to_vec(&raw_event(&actor("ledger.probe"), 1))?.len();
        println!("  stored event: ours {ours_len} bytes of JSON, baseline {raw_len} bytes");
        if ours_len != raw_len {
            return Err(
                format!("the baseline's events ({raw_len} B) are not ours ({ours_len} B)").into(),
            );
        }
        // Warm-up, not timed: also activates the actors of the "active" variant and writes
        // the first pass of the baseline's cached actors.
        self.ours(&self.actors_active, "active", 0).await?;
        self.raw(&self.raw_cached, "cached", 0).await?;
        let this = &*self;
        let series = rounds(this.sizes.rounds, 4, runs, async |variant, round| {
            let pass = round as u64 + 1;
            let tag = format!("new{round}");
            match variant {
                0 => this.ours(&this.actors_new, &tag, 0).await,
                1 => this.raw(&this.raw_new, &tag, 0).await,
                2 => this.ours(&this.actors_active, "active", pass).await,
                _ => this.raw(&this.raw_cached, "cached", pass).await,
            }
        })
        .await?;
        let (new, raw_new, active, raw_cached) = (&series[0], &series[1], &series[2], &series[3]);
        println!("  ours, new actors:       {}", new.list_rates(ops, "ev"));
        println!(
            "  raw, new actors:        {}",
            raw_new.list_rates(ops, "ev")
        );
        println!("  ours, active actors:    {}", active.list_rates(ops, "ev"));
        println!(
            "  raw, heads cached:      {}",
            raw_cached.list_rates(ops, "ev")
        );
        self.report.ratio(
            format!("1. {a} new actors × {k} commands (1 event each), activation included"),
            fmt_throughput(new, ops, "ev"),
            format!(
                "{} (save_event, {a} tasks, new actors)",
                fmt_throughput(raw_new, ops, "ev")
            ),
            new.paired(raw_new),
            Some(0.8),
        );
        self.report.ratio(
            format!("1'. the same on {a} active actors"),
            fmt_throughput(active, ops, "ev"),
            format!(
                "{} (save_event, {a} tasks, heads cached)",
                fmt_throughput(raw_cached, ops, "ev")
            ),
            active.paired(raw_cached),
            Some(0.8),
        );
        Ok(())
    }

    /// One task per actor `ours-{tag}-{i}`, asking it `events_per_actor` deposits in turn;
    /// `pass` > 0 continues after `pass` earlier passes over the same actors.
    async fn ours(
        &self,
        actors: &Actors<Ledger, JetStreamEventStore>,
        tag: &str,
        pass: u64,
    ) -> BenchResult<Sample> {
        let k = self.sizes.events_per_actor;
        let ids: Vec<ActorId> = (0..self.sizes.actors)
            .map(|i| actor(format!("ours-{tag}-{i}")))
            .collect();
        let meter = Meter::start();
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids {
            let actors = actors.clone();
            tasks.spawn(async move {
                for v in pass * k + 1..=(pass + 1) * k {
                    let outcome = actors.ask(&id, Deposit::numbered(v)).await?;
                    assert_eq!(outcome.reply, v);
                }
                Ok::<_, measure::BoxError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let sample = meter.stop();
        // Not timed: the new actors of a round are passivated after it, so that every round
        // runs with the same number of active actors (else round k runs next to k × 1 000
        // idle ones, and the rounds a median is taken over are not alike; how a runtime
        // holding many idle actors fares is a question of its own, see BENCHMARKS.md).
        if pass == 0 && tag != "active" {
            for i in 0..self.sizes.actors {
                actors.passivate(&actor(format!("ours-{tag}-{i}"))).await;
            }
        }
        Ok(sample)
    }

    /// One task per actor `ledger.raw-{tag}-{i}`, saving the same events with `save_event`.
    async fn raw(&self, store: &JetStreamEventStore, tag: &str, pass: u64) -> BenchResult<Sample> {
        let k = self.sizes.events_per_actor;
        let batches: Vec<Vec<Event>> = (0..self.sizes.actors)
            .map(|i| {
                let stream = actor(format!("ledger.raw-{tag}-{i}"));
                (pass * k + 1..=(pass + 1) * k)
                    .map(|v| raw_event(&stream, v))
                    .collect()
            })
            .collect();
        let meter = Meter::start();
        let mut tasks = tokio::task::JoinSet::new();
        for events in batches {
            let store = store.clone();
            tasks.spawn(async move {
                for event in events {
                    assert!(!store.save_event(event).await?.is_duplicate());
                }
                Ok::<_, StoreError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(meter.stop())
    }

    /// Benchmark 2: activation from a snapshot and a tail against `load` alone, with the
    /// configured command horizon and, as a diagnostic, with a horizon of `SMALL_HORIZON`
    /// (the snapshot then keeps few command ids).
    async fn activation(&mut self, url: &str) -> BenchResult<()> {
        let (snap, tail, n) = (self.sizes.snap, self.sizes.tail, self.sizes.activations);
        println!(
            "\n[2] activation (runs first): snapshot after {snap} events + {tail}-event tail, {n} activations \
             per round"
        );
        let full = Snapshotted::prepare(url, "activation", &self.sizes, self.sizes.horizon).await?;
        let small =
            Snapshotted::prepare(url, "activation-small", &self.sizes, SMALL_HORIZON).await?;
        let cases = [&full, &small];
        let series = rounds(self.sizes.rounds, 4, runs, async |variant, _| {
            let case = cases[variant / 2];
            let mut total = Sample {
                wall: 0.0,
                cpu: 0.0,
            };
            for _ in 0..n {
                let sample = if variant.is_multiple_of(2) {
                    case.activate().await?
                } else {
                    case.load().await?
                };
                total.wall += sample.wall;
                total.cpu += sample.cpu;
            }
            Ok(total)
        })
        .await?;
        let ops = n as f64;
        let each = |series: &measure::Series| {
            format!(
                "{} each (CPU {})",
                fmt_secs(series.wall() / ops),
                fmt_secs(series.cpu() / ops)
            )
        };
        for (i, (case, label)) in [(&full, "2"), (&small, "2'")].into_iter().enumerate() {
            let (ours, load) = (&series[2 * i], &series[2 * i + 1]);
            println!(
                "  horizon {}: ours: {}",
                case.horizon,
                ours.list_rates(ops, "activations")
            );
            println!(
                "  horizon {}: load: {}",
                case.horizon,
                load.list_rates(ops, "loads")
            );
            self.report.ratio(
                format!(
                    "{label}. activation, command horizon {}: snapshot ({} B of state and \
                     command index) + {tail}-event tail, then a query",
                    case.horizon, case.snapshot_bytes
                ),
                each(ours),
                format!("{} (SnapshotStore::load alone)", each(load)),
                ours.paired(load),
                // At most 1.1× the time of `load`.
                Some(0.91),
            );
            self.report.note(format!(
                "activation, command horizon {}: ours takes {:.2}× the time of load (target: \
                 at most 1.1×)",
                case.horizon,
                1.0 / ours.paired(load)
            ));
        }
        full.actors.shutdown().await;
        small.actors.shutdown().await;
        Ok(())
    }
}

/// The command horizon of benchmark 2's diagnostic case.
const SMALL_HORIZON: usize = 10;

/// An actor with a snapshot after `snap` events and `tail` events after it, passivated.
struct Snapshotted {
    actors: Actors<Ledger, JetStreamEventStore>,
    id: ActorId,
    stream: ActorId,
    horizon: usize,
    /// Size of the snapshot's state (the actor's state and its recent command ids), as JSON.
    snapshot_bytes: usize,
    /// Events in all (what the query answers).
    count: u64,
    tail: u64,
}

impl Snapshotted {
    /// A runtime of its own on namespace `namespace` (its own connection), snapshotting
    /// every `snap` events, remembering `horizon` commands; its actor written and passivated.
    async fn prepare(
        url: &str,
        namespace: &str,
        sizes: &Sizes,
        horizon: usize,
    ) -> BenchResult<Self> {
        let (snap, tail) = (sizes.snap, sizes.tail);
        let store = JetStreamEventStore::connect(url, Namespace::new(namespace)?).await?;
        let config = ActorConfig {
            snapshots: SnapshotPolicy::EveryEvents(snap),
            command_horizon: horizon,
            ..ActorConfig::default()
        };
        let actors = Actors::new(store.namespace().clone(), Ledger, store, config)?;
        let id = actor("snapshotted");
        let stream = actors.stream_id(&id)?;
        for v in 1..=snap + tail {
            actors.ask(&id, Deposit::numbered(v)).await?;
        }
        // Passivating lets it save the snapshot the last command may have started.
        actors.passivate(&id).await;
        let loaded = actors.store().load(&stream).await?;
        let snapshot = loaded.snapshot.as_ref().ok_or("no snapshot was saved")?;
        if (snapshot.version, loaded.events.len() as u64) != (snap, tail) {
            return Err(format!(
                "expected a snapshot at {snap} and {tail} events after it, got {} and {}",
                snapshot.version,
                loaded.events.len()
            )
            .into());
        }
        let snapshot_bytes = serde_json::to_vec(&snapshot.state)?.len();
        Ok(Self {
            actors,
            id,
            stream,
            horizon,
            snapshot_bytes,
            count: snap + tail,
            tail,
        })
    }

    /// Passivates the actor (untimed), then times a query, which activates it.
    async fn activate(&self) -> BenchResult<Sample> {
        self.actors.passivate(&self.id).await;
        let meter = Meter::start();
        let reply = self.actors.query(&self.id, ()).await?;
        let sample = meter.stop();
        assert_eq!(reply.count, self.count);
        Ok(sample)
    }

    /// Times the store's `load` of the actor.
    async fn load(&self) -> BenchResult<Sample> {
        let meter = Meter::start();
        let loaded = self.actors.store().load(&self.stream).await?;
        let sample = meter.stop();
        assert_eq!(loaded.events.len() as u64, self.tail);
        Ok(sample)
    }
}

async fn run(url: String, sizes: Sizes, filters: Vec<String>) -> BenchResult<()> {
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let ns = Namespace::new("bench")?;
    let connect = async || JetStreamEventStore::connect(&url, ns.clone()).await;
    let (ours_new, ours_active) = (connect().await?, connect().await?);
    let (raw_new, raw_cached) = (connect().await?, connect().await?);
    let info = raw_new.client().server_info();
    measure::print_heading(
        &info,
        &format!(", JetStream on {url}"),
        (sizes.mode, sizes.rounds),
        "",
        &sizes,
    )?;
    let config = ActorConfig {
        idle_timeout: None,
        ..ActorConfig::default()
    };
    let mut bench = Bench {
        sizes: sizes.clone(),
        actors_new: Actors::new(ns.clone(), Ledger, ours_new, config.clone())?,
        actors_active: Actors::new(ns.clone(), Ledger, ours_active, config)?,
        raw_new,
        raw_cached,
        report: Report::default(),
    };
    // Activation first: after benchmark 1 (tens of thousands of allocations from many
    // threads), glibc's allocator makes every large allocation consolidate its fast bins, and
    // both activation and `load` take about twice as long (see BENCHMARKS.md).
    if wanted("activation") {
        bench.activation(&url).await?;
    }
    if wanted("concurrent") {
        bench.concurrent().await?;
    }
    bench.actors_new.shutdown().await;
    bench.actors_active.shutdown().await;
    bench.report.print(
        &format!(
            "Results (aether-actor on JetStream, nats-server {}, {}, {} mode, medians of {} \
             alternating rounds; ratio = baseline time ÷ our time, > 1: ours faster)",
            info.version,
            allocator::name(),
            sizes.mode,
            sizes.rounds
        ),
        "raw store baseline",
    );
    Ok(())
}

fn main() -> BenchResult<()> {
    measure::main(Sizes::from_env, run)
}
