//! Actors across nodes (feature `cluster`, issue 16) against raw NATS request/reply, measured
//! in the same run on the same `nats-server` (started by the test harness). Two node hosts
//! ([`ClusterActors`], each on a connection of its own) live in this process; every actor's
//! shard is owned by node `b` and every call is sent from node `a`, so every call crosses the
//! network. Placements are driven by hand (this process is the leader), as in
//! `tests/cluster_routing.rs`, except in benchmark 4, which runs real cluster managers.
//!
//! 1. **Cross-node query** (nothing persisted): latency (sequential calls, p50/p99) and
//!    throughput (many concurrent callers) of [`ClusterActors::query`] against a raw
//!    async-nats `request` carrying the same request body and headers to a responder on
//!    another connection that answers at once with the same reply bytes (an echo: no decoding).
//! 2. **Cross-node command persisting one event** on JetStream: [`ClusterActors::ask`] against
//!    a raw `request` (the same body and headers) to a responder that decodes the envelope,
//!    saves an equivalent event with [`JetStreamEventStore::save_event`] (a task per request)
//!    and answers with a reply of the same size. Throughput with one task per actor (actors
//!    active, heads cached: the steady state) and latency of sequential commands.
//! 3. **Stall during a planned move**: under steady load from node `a` (one task per actor,
//!    a command, then a short pause), every shard moves from `b` to `a`: the placement moving
//!    them, then — polling every 5 ms until `b` has released every shard — the placement that
//!    settles them. The latency of every command first sent between the start of the move and
//!    `window` after it (1 s), p50/p99, next to the latency of the commands sent and answered
//!    in the `window` before the move (steady cross-node load, the baseline). A fresh pair of
//!    nodes per round. The actors take no snapshots (the default configuration), unless
//!    `AETHER_BENCH_SNAPSHOT_EVERY` gives an interval in events.
//! 4. **Unavailability after a crash** with the default cluster timings (`ClusterConfig::new`):
//!    three real `ClusterManager`s with hosts joined; one that is not the leader is aborted
//!    (host and manager, as a crash); the time from the abort to the first answer of an
//!    actor that node owned, queried from another node (a new query every 50 ms, each in a
//!    task of its own), against the failure-detection bound (member TTL + probe timeout +
//!    stabilisation delay; the victim is not the leader, so no lease TTL) + 1 s. It also says
//!    whether the query sent right after the abort was still waiting then. About 10 s per
//!    round (plus the cluster's start): 3 rounds in full mode, 1 in quick, skipped in smoke
//!    mode.
//! 5. **R3**: benchmarks 1 and 2 again on a 3-server JetStream cluster with R3 streams
//!    (without a target); full and quick modes only. The caller side (node `a`, the
//!    baseline's requester) connects to the first server, the owner side (node `b`, the
//!    baseline's responder and raw store) to the second: every request crosses a route, ours
//!    and the baseline's alike.
//!
//! Every round runs ours and the baseline back to back, rotating which goes first; figures
//! are medians over rounds (percentiles are over every call of every round), and a ratio is
//! the median of each round's `baseline time ÷ our time` (above 1: ours is faster). Client
//! CPU is that of the whole process (both nodes, the responders and the callers).
//!
//! Sizes: full by default (`cargo bench`); `AETHER_BENCH_QUICK=1` for a quick run; without
//! `--bench` (`cargo test --benches`) a tiny smoke run (benchmarks 4 and 5 skipped).
//! Overrides: `AETHER_BENCH_ROUNDS`, `_LATENCY_CALLS`, `_CALLERS`, `_CALLS_PER_CALLER`,
//! `_ACTORS`, `_COMMANDS_PER_ACTOR`, `_STALL_ACTORS`, `_SNAPSHOT_EVERY`, `_CRASH_ROUNDS`. Arguments that do not
//! start with `-` select benchmarks by name (`query`, `command`, `move`, `crash`, `r3`). To
//! profile one side alone, `AETHER_BENCH_ONLY=ours` or `=raw` (then the ratios are not numbers).
//!
//! Run: `NATS_SERVER_BIN=… cargo bench -p aether-actor --features cluster --bench cluster_actors`.
//!
//! Allocator: jemalloc for both sides, as a service should run Aether; `RUSTFLAGS='--cfg
//! aether_system_alloc'` builds it on the system allocator (see `support/allocator.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_actor::cluster::wire::{self, AskOk, Operation, Reply, Request};
use aether_actor::cluster::{ClusterActors, Incarnate, Placement, RoutingConfig};
use aether_actor::{ActorConfig, AskOptions, CommandId, SnapshotPolicy};
use aether_cluster::{ClusterConfig, ClusterManager};
use aether_core::{
    ActorId, Event, EventId, EventStore, Namespace, NodeId, ShardCount, ShardId, Version,
};
use aether_nats::{JetStreamConfig, JetStreamEventStore};
use aether_testkit::nats_server::NatsCluster;
use futures::StreamExt;
use tokio::sync::watch;

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
use measure::{BenchResult, Meter, env_or, fmt_secs, fmt_throughput, percentile, rounds, runs};
use report::Report;

#[derive(Debug, Clone)]
struct Sizes {
    mode: &'static str,
    rounds: usize,
    /// Sequential calls per round and variant (latency).
    latency_calls: usize,
    /// Concurrent callers of the query throughput benchmark, and the calls of each.
    callers: usize,
    calls_per_caller: usize,
    /// Actors (one task each) of the command throughput benchmark, and the commands of each.
    actors: usize,
    commands_per_actor: u64,
    /// Actors under steady load during a move, the pause after each command, the window.
    stall_actors: usize,
    stall_pause: Duration,
    stall_window: Duration,
    /// The moving actors' snapshot policy, every this many events (`None`: the default
    /// configuration, no snapshots).
    snapshot_every: Option<u64>,
    /// Rounds of benchmark 4 (0: skipped).
    crash_rounds: usize,
    /// Whether benchmark 5 (R3) runs.
    r3: bool,
}

impl Sizes {
    fn from_env(bench_mode: bool) -> Self {
        let base = if !bench_mode {
            Self {
                mode: "smoke",
                rounds: 1,
                latency_calls: 20,
                callers: 4,
                calls_per_caller: 5,
                actors: 4,
                commands_per_actor: 2,
                stall_actors: 4,
                stall_pause: Duration::from_millis(10),
                stall_window: Duration::from_millis(300),
                snapshot_every: None,
                crash_rounds: 0,
                r3: false,
            }
        } else if measure::quick() {
            Self {
                mode: "quick",
                rounds: 3,
                latency_calls: 500,
                callers: 64,
                calls_per_caller: 50,
                actors: 200,
                commands_per_actor: 5,
                stall_actors: 50,
                stall_pause: Duration::from_millis(10),
                stall_window: Duration::from_secs(1),
                snapshot_every: None,
                crash_rounds: 1,
                r3: true,
            }
        } else {
            Self {
                mode: "full",
                rounds: 7,
                latency_calls: 2_000,
                callers: 64,
                calls_per_caller: 500,
                actors: 500,
                commands_per_actor: 10,
                stall_actors: 100,
                stall_pause: Duration::from_millis(10),
                stall_window: Duration::from_secs(1),
                snapshot_every: None,
                crash_rounds: 3,
                r3: true,
            }
        };
        Self {
            rounds: env_or("AETHER_BENCH_ROUNDS", base.rounds).max(1),
            latency_calls: env_or("AETHER_BENCH_LATENCY_CALLS", base.latency_calls).max(1),
            callers: env_or("AETHER_BENCH_CALLERS", base.callers).max(1),
            calls_per_caller: env_or("AETHER_BENCH_CALLS_PER_CALLER", base.calls_per_caller).max(1),
            actors: env_or("AETHER_BENCH_ACTORS", base.actors).max(1),
            commands_per_actor: env_or("AETHER_BENCH_COMMANDS_PER_ACTOR", base.commands_per_actor)
                .max(1),
            stall_actors: env_or("AETHER_BENCH_STALL_ACTORS", base.stall_actors).max(1),
            crash_rounds: env_or("AETHER_BENCH_CRASH_ROUNDS", base.crash_rounds),
            snapshot_every: std::env::var("AETHER_BENCH_SNAPSHOT_EVERY")
                .ok()
                .and_then(|v| v.parse().ok()),
            ..base
        }
    }
}

// The actor: `support/ledger.rs` (the `jetstream_actors` one).

type Host = ClusterActors<Ledger, JetStreamEventStore>;

fn actor(name: impl Into<String>) -> ActorId {
    ActorId::new(name.into()).expect("benchmark actor ids are valid")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// The event our actor stores for `Deposit::numbered(version)` as its command's only event
/// (as in `jetstream_actors`): the same type, data, stream id form, command id, event id
/// derived from it and reply in the metadata. Ours also carries its owner epoch (a header).
fn raw_event(stream: &ActorId, version: Version, command_id: &str) -> Event {
    let data = match serde_json::to_value(Deposit::numbered(version)) {
        Ok(serde_json::Value::Object(data)) => data,
        other => unreachable!("a struct encodes as an object: {other:?}"),
    };
    let id = EventId::new(format!("{command_id}.0")).expect("a command id makes an event id");
    Event::builder(stream.clone(), "Deposited")
        .id(id)
        .version(version)
        .command_id(command_id)
        .data_object(data)
        .metadata("aetherReply", version.to_string())
        .build()
}

/// A connection to `url` (several servers: comma-separated, tried in this order).
async fn connect(url: &str) -> BenchResult<async_nats::Client> {
    let servers = url
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<async_nats::ServerAddr>, _>>()?;
    Ok(async_nats::ConnectOptions::new()
        .retain_servers_order()
        .connect(servers)
        .await?)
}

/// A store on its own connection to `url` (servers tried in this order).
async fn store(
    url: &str,
    namespace: &Namespace,
    config: &JetStreamConfig,
) -> BenchResult<JetStreamEventStore> {
    Ok(JetStreamEventStore::connect_with_options(
        url,
        async_nats::ConnectOptions::new().retain_servers_order(),
        namespace.clone(),
        config.clone(),
    )
    .await?)
}

/// Where the two sides connect: the caller (node `a`, the baseline's requester) and the owner
/// (node `b`, the baseline's responder). On one server the same; on a cluster, different
/// servers (the same for ours and the baseline), so that every call crosses a route.
#[derive(Debug, Clone)]
struct Servers {
    caller: String,
    owner: String,
}

impl Servers {
    fn one(url: &str) -> Self {
        Self {
            caller: url.to_owned(),
            owner: url.to_owned(),
        }
    }

    /// The caller on the first server, the owner on the second (each failing over to the
    /// others).
    fn cluster(urls: &[String]) -> Self {
        let mut turned = urls.to_vec();
        turned.rotate_left(1);
        Self {
            caller: urls.join(","),
            owner: turned.join(","),
        }
    }
}

/// The headers a node sends with a request (its placement version, the deadline in ms).
fn request_headers(version: u64, deadline: Duration) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(wire::MAP_VERSION_HEADER, version.to_string().as_str());
    headers.insert(
        wire::DEADLINE_HEADER,
        deadline.as_millis().to_string().as_str(),
    );
    headers
}

// ---------------------------------------------------------------------------------------------
// Two nodes with hand-driven placements
// ---------------------------------------------------------------------------------------------

const SHARDS: u32 = 16;

fn never_gone(_: &Incarnate) -> bool {
    false
}

/// Nodes `a` (the caller) and `b` (the owner of every shard at first) on a fresh namespace.
struct Pair {
    servers: Servers,
    namespace: Namespace,
    placements: watch::Sender<Placement>,
    a_id: Incarnate,
    b_id: Incarnate,
    a: Host,
    b: Host,
}

impl Pair {
    /// `snapshots`: the actors' snapshot policy (`None`: the default configuration's).
    async fn start(
        servers: &Servers,
        config: &JetStreamConfig,
        snapshots: Option<SnapshotPolicy>,
    ) -> BenchResult<Self> {
        let namespace = Namespace::new(unique("cluster-bench"))?;
        let shards = ShardCount::new(SHARDS)?;
        let (placements, _) = watch::channel(Placement::empty(shards));
        let incarnate = |name: &str| -> BenchResult<Incarnate> {
            Ok(Incarnate {
                node: NodeId::new(name)?,
                incarnation: 1,
            })
        };
        let (a_id, b_id) = (incarnate("a")?, incarnate("b")?);
        let mut hosts = Vec::new();
        for (me, url) in [(&a_id, &servers.caller), (&b_id, &servers.owner)] {
            let store = store(url, &namespace, config).await?;
            let client = store.client().clone();
            let defaults = ActorConfig::default();
            let actor_config = ActorConfig {
                idle_timeout: None,
                snapshots: snapshots.unwrap_or(defaults.snapshots),
                ..defaults
            };
            hosts.push(
                ClusterActors::start(
                    client,
                    me.clone(),
                    namespace.clone(),
                    Ledger,
                    store,
                    shards,
                    actor_config,
                    placements.subscribe(),
                    RoutingConfig::default(),
                )
                .await?,
            );
        }
        let (b, a) = (hosts.pop().ok_or("b")?, hosts.pop().ok_or("a")?);
        let pair = Self {
            servers: servers.clone(),
            namespace,
            placements,
            a_id,
            b_id,
            a,
            b,
        };
        let b_id = pair.b_id.clone();
        let placed = pair.place_all(&b_id);
        pair.adopted(&placed).await?;
        Ok(pair)
    }

    /// Publishes the placement giving every shard to `owner` (moves written as moving).
    fn place_all(&self, owner: &Incarnate) -> Placement {
        let owners = vec![Some(owner.clone()); SHARDS as usize];
        let next = self.placements.borrow().next(&owners, never_gone);
        self.placements.send_replace(next.clone());
        next
    }

    /// Waits until both nodes adopted `placement`.
    async fn adopted(&self, placement: &Placement) -> BenchResult<()> {
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.a.map_version() < placement.version
                || self.b.map_version() < placement.version
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .map_err(|_| "the nodes did not adopt the placement")?;
        Ok(())
    }

    /// Moves every shard from `b` to `a`: the moving placement, then (polling every 5 ms until
    /// `b` released every shard) the settled one. Returns when it was settled.
    async fn move_all_to_a(&self) -> BenchResult<Instant> {
        let a_id = self.a_id.clone();
        let moving = self.place_all(&a_id);
        let released = |s: ShardId| self.b.has_released(s, moving.version);
        tokio::time::timeout(Duration::from_secs(30), async {
            while !(0..SHARDS).all(|s| released(ShardId::new(s))) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .map_err(|_| "b did not release its shards within 30 s")?;
        let settled = moving
            .settle(|who, s| who == &self.b_id && released(s), never_gone)
            .ok_or("nothing to settle")?;
        self.placements.send_replace(settled);
        Ok(Instant::now())
    }

    async fn shutdown(self) {
        self.a.shutdown().await;
        self.b.shutdown().await;
    }
}

/// Sequential calls: each call's latency in seconds.
async fn sequential<F>(calls: usize, mut call: F) -> BenchResult<Vec<f64>>
where
    F: AsyncFnMut(usize) -> BenchResult<()>,
{
    let mut latencies = Vec::with_capacity(calls);
    for i in 0..calls {
        let sent = Instant::now();
        call(i).await?;
        latencies.push(sent.elapsed().as_secs_f64());
    }
    Ok(latencies)
}

fn fmt_latency(latencies: &[f64]) -> String {
    format!(
        "p50 {}, p99 {}",
        fmt_secs(percentile(latencies, 50.0)),
        fmt_secs(percentile(latencies, 99.0))
    )
}

/// The calls of each variant over all rounds (for percentiles), shared by the round closure.
type Pooled = Mutex<[Vec<f64>; 2]>;

fn pooled() -> Pooled {
    Mutex::new([Vec::new(), Vec::new()])
}

fn take(pooled: Pooled) -> [Vec<f64>; 2] {
    pooled
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Benchmark 1: cross-node query against raw request/reply
// ---------------------------------------------------------------------------------------------

/// A responder on a connection of its own answering every request at once with `reply`.
async fn echo_responder(url: &str, reply: bytes::Bytes) -> BenchResult<(String, Responder)> {
    let client = connect(url).await?;
    let subject = unique("bench.echo");
    let mut subscription = client.subscribe(subject.clone()).await?;
    client.flush().await?;
    let task = tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            if let Some(to) = message.reply
                && client.publish(to, reply.clone()).await.is_err()
            {
                return;
            }
        }
    });
    Ok((subject, Responder(task)))
}

/// A responder task, stopped when dropped.
struct Responder(tokio::task::JoinHandle<()>);

impl Drop for Responder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn query_bench(
    sizes: &Sizes,
    report: &mut Report,
    servers: &Servers,
    config: &JetStreamConfig,
    label: &str,
    target: bool,
) -> BenchResult<()> {
    let (calls, callers, per) = (sizes.latency_calls, sizes.callers, sizes.calls_per_caller);
    println!(
        "\n[{label}1] cross-node query: {calls} sequential calls; {callers} callers × {per} calls"
    );
    let pair = Pair::start(servers, config, None).await?;
    // One actor per caller, each with one event, active on b.
    let ids: Vec<ActorId> = (0..callers).map(|i| actor(format!("q-{i}"))).collect();
    for id in &ids {
        pair.a.ask(id, Deposit::numbered(1)).await?;
    }
    let state = pair.a.query(&ids[0], ()).await?;
    // The same bytes as ours on the wire: our request body and headers, our reply body.
    let body: bytes::Bytes = Request {
        op: Operation::Query,
        actor_id: ids[0].clone(),
        command_id: None,
        body: serde_json::Value::Null,
    }
    .encode()
    .into();
    let reply: bytes::Bytes = Reply::Ok(serde_json::to_value(&state)?).encode().into();
    println!(
        "  request {} bytes of JSON + headers, reply {} bytes",
        body.len(),
        reply.len()
    );
    let (subject, _responder) = echo_responder(&servers.owner, reply).await?;
    let requester = connect(&servers.caller).await?;
    let headers = request_headers(pair.a.map_version().get(), Duration::from_secs(30));
    let raw_call = async |requester: &async_nats::Client| -> BenchResult<()> {
        let answer = requester
            .request_with_headers(subject.clone(), headers.clone(), body.clone())
            .await?;
        assert!(!answer.payload.is_empty());
        Ok(())
    };
    // Warm-up, not timed.
    for id in &ids {
        pair.a.query(id, ()).await?;
        raw_call(&requester).await?;
    }

    // Latency: sequential calls.
    let lat = pooled();
    let series = rounds(sizes.rounds, 2, runs, async |variant, _| {
        let meter = Meter::start();
        let latencies = if variant == 0 {
            sequential(calls, async |i| {
                let totals = pair.a.query(&ids[i % ids.len()], ()).await?;
                assert_eq!(totals, state);
                Ok(())
            })
            .await?
        } else {
            sequential(calls, async |_| raw_call(&requester).await).await?
        };
        let sample = meter.stop();
        lat.lock().expect("not poisoned")[variant].extend(latencies);
        Ok(sample)
    })
    .await?;
    let [ours, raw] = take(lat);
    let ops = calls as f64;
    let each = |s: &measure::Series| {
        format!(
            "{} mean (CPU {})",
            fmt_secs(s.wall() / ops),
            fmt_secs(s.cpu() / ops)
        )
    };
    let p99 = percentile(&ours, 99.0);
    let name = format!("{label}1. cross-node query, latency ({calls} sequential calls a round)");
    let (ours_text, raw_text) = (
        format!("{}; {}", fmt_latency(&ours), each(&series[0])),
        format!(
            "{}; {} (raw request/reply, echo)",
            fmt_latency(&raw),
            each(&series[1])
        ),
    );
    if target {
        report.compared(
            name,
            ours_text,
            raw_text,
            series[0].paired(&series[1]),
            "p99 < 2 ms",
            p99 < 2e-3,
        );
    } else {
        report.ratio(
            name,
            ours_text,
            raw_text,
            series[0].paired(&series[1]),
            None,
        );
    }

    // Throughput: concurrent callers, each on its own actor.
    let series = rounds(sizes.rounds, 2, runs, async |variant, _| {
        let meter = Meter::start();
        let mut tasks = tokio::task::JoinSet::new();
        for id in &ids {
            let (node, id, requester) = (pair.a.clone(), id.clone(), requester.clone());
            let (subject, headers, body) = (subject.clone(), headers.clone(), body.clone());
            tasks.spawn(async move {
                for _ in 0..per {
                    if variant == 0 {
                        node.query(&id, ()).await?;
                    } else {
                        requester
                            .request_with_headers(subject.clone(), headers.clone(), body.clone())
                            .await?;
                    }
                }
                Ok::<_, measure::BoxError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(meter.stop())
    })
    .await?;
    let ops = (callers * per) as f64;
    report.ratio(
        format!("{label}1'. cross-node query, throughput ({callers} concurrent callers)"),
        fmt_throughput(&series[0], ops, "queries"),
        format!(
            "{} (raw request/reply, echo)",
            fmt_throughput(&series[1], ops, "requests")
        ),
        series[0].paired(&series[1]),
        target.then_some(0.8),
    );
    pair.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Benchmark 2: cross-node command persisting one event against request/reply + save_event
// ---------------------------------------------------------------------------------------------

/// A responder on the raw store's connection: per request (in a task of its own), decodes the
/// envelope, saves the actor's next event with `save_event` and answers `reply`.
async fn saving_responder(
    store: JetStreamEventStore,
    reply: bytes::Bytes,
) -> BenchResult<(String, Responder)> {
    let client = store.client().clone();
    let subject = unique("bench.save");
    let mut subscription = client.subscribe(subject.clone()).await?;
    client.flush().await?;
    let versions: Arc<Mutex<HashMap<ActorId, u64>>> = Arc::default();
    let task = tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            let (store, client, reply, versions) = (
                store.clone(),
                client.clone(),
                reply.clone(),
                versions.clone(),
            );
            tokio::spawn(async move {
                let Some(to) = message.reply else { return };
                let request = Request::decode(&message.payload).expect("our own request");
                let command_id = request.command_id.expect("a command id");
                let stream = actor(format!("ledger.{}", request.actor_id));
                let version = {
                    let mut versions = versions.lock().expect("not poisoned");
                    let v = versions.entry(stream.clone()).or_insert(0);
                    *v += 1;
                    *v
                };
                let saved = store
                    .save_event(raw_event(&stream, version, command_id.as_str()))
                    .await
                    .expect("the raw save succeeds");
                assert!(!saved.is_duplicate());
                let _ = client.publish(to, reply).await;
            });
        }
    });
    Ok((subject, Responder(task)))
}

async fn command_bench(
    sizes: &Sizes,
    report: &mut Report,
    servers: &Servers,
    config: &JetStreamConfig,
    label: &str,
    target: bool,
) -> BenchResult<()> {
    let (calls, a, k) = (
        sizes.latency_calls.div_ceil(4),
        sizes.actors,
        sizes.commands_per_actor,
    );
    println!(
        "\n[{label}2] cross-node command persisting one event: {calls} sequential commands; \
         {a} actors × {k} commands, one task per actor"
    );
    let pair = Pair::start(servers, config, None).await?;
    let raw_store = store(&servers.owner, &pair.namespace, config).await?;
    // Our reply to a command (the size the baseline answers).
    let probe = actor("probe");
    let outcome = pair.a.ask(&probe, Deposit::numbered(1)).await?;
    let reply: bytes::Bytes = Reply::Ok(serde_json::to_value(AskOk::from(outcome))?)
        .encode()
        .into();
    let (subject, _responder) = saving_responder(raw_store.clone(), reply).await?;
    let stored = raw_store
        .events(&pair.a.local().stream_id(&probe)?, 0)
        .await?;
    println!(
        "  stored event: ours {} bytes of JSON (plus its owner epoch header), baseline {} bytes",
        serde_json::to_vec(&stored[0])?.len(),
        serde_json::to_vec(&raw_event(
            &actor("ledger.probe"),
            1,
            CommandId::generate().as_str()
        ))?
        .len()
    );
    let requester = connect(&pair.servers.caller).await?;
    let headers = request_headers(pair.a.map_version().get(), Duration::from_secs(30));
    let raw_ask = async |requester: &async_nats::Client, id: &ActorId, v: u64| -> BenchResult<()> {
        let body = Request {
            op: Operation::Ask,
            actor_id: id.clone(),
            command_id: Some(CommandId::generate()),
            body: serde_json::to_value(Deposit::numbered(v))?,
        }
        .encode();
        requester
            .request_with_headers(subject.clone(), headers.clone(), body.into())
            .await?;
        Ok(())
    };
    let ours_ask = async |node: &Host, id: &ActorId, v: u64| -> BenchResult<()> {
        let outcome = node.ask(id, Deposit::numbered(v)).await?;
        assert_eq!(outcome.reply, v);
        Ok(())
    };
    let ours_ids: Vec<ActorId> = (0..a).map(|i| actor(format!("ours-{i}"))).collect();
    let raw_ids: Vec<ActorId> = (0..a).map(|i| actor(format!("raw-{i}"))).collect();
    // Warm-up, not timed: activates our actors on b, caches the baseline's heads.
    for (ours, raw) in ours_ids.iter().zip(&raw_ids) {
        ours_ask(&pair.a, ours, 1).await?;
        raw_ask(&requester, raw, 1).await?;
    }

    // Latency: sequential commands to one actor each side.
    let lat = pooled();
    let next = Mutex::new([1u64, 1u64]);
    let series = rounds(sizes.rounds, 2, runs, async |variant, _| {
        let start = next.lock().expect("not poisoned")[variant];
        let meter = Meter::start();
        let latencies = if variant == 0 {
            sequential(calls, async |i| {
                ours_ask(&pair.a, &ours_ids[0], start + 1 + i as u64).await
            })
            .await?
        } else {
            sequential(calls, async |i| {
                raw_ask(&requester, &raw_ids[0], start + 1 + i as u64).await
            })
            .await?
        };
        let sample = meter.stop();
        next.lock().expect("not poisoned")[variant] += calls as u64;
        lat.lock().expect("not poisoned")[variant].extend(latencies);
        Ok(sample)
    })
    .await?;
    let [ours, raw] = take(lat);
    report.ratio(
        format!("{label}2. cross-node command (1 event), latency ({calls} sequential a round)"),
        fmt_latency(&ours),
        format!("{} (request/reply + save_event)", fmt_latency(&raw)),
        series[0].paired(&series[1]),
        None,
    );

    // Throughput: one task per actor, `k` commands each; every actor past its first event.
    let first = Arc::new(Mutex::new(HashMap::<ActorId, u64>::new()));
    {
        let [ours_next, raw_next] = *next.lock().expect("not poisoned");
        let mut first = first.lock().expect("not poisoned");
        for (ours, raw) in ours_ids.iter().zip(&raw_ids) {
            first.insert(ours.clone(), 1);
            first.insert(raw.clone(), 1);
        }
        first.insert(ours_ids[0].clone(), ours_next);
        first.insert(raw_ids[0].clone(), raw_next);
    }
    let series = rounds(sizes.rounds, 2, runs, async |variant, _| {
        let ids = if variant == 0 { &ours_ids } else { &raw_ids };
        let meter = Meter::start();
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids {
            let from = first.lock().expect("not poisoned")[id];
            let (node, id, requester) = (pair.a.clone(), id.clone(), requester.clone());
            let (subject, headers) = (subject.clone(), headers.clone());
            tasks.spawn(async move {
                for v in from + 1..=from + k {
                    if variant == 0 {
                        let outcome = node.ask(&id, Deposit::numbered(v)).await?;
                        assert_eq!(outcome.reply, v);
                    } else {
                        let body = Request {
                            op: Operation::Ask,
                            actor_id: id.clone(),
                            command_id: Some(CommandId::generate()),
                            body: serde_json::to_value(Deposit::numbered(v))?,
                        }
                        .encode();
                        requester
                            .request_with_headers(subject.clone(), headers.clone(), body.into())
                            .await?;
                    }
                }
                Ok::<_, measure::BoxError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let sample = meter.stop();
        let mut first = first.lock().expect("not poisoned");
        for id in ids {
            *first.get_mut(id).expect("every actor") += k;
        }
        Ok(sample)
    })
    .await?;
    let ops = a as f64 * k as f64;
    report.ratio(
        format!("{label}2'. cross-node command (1 event), throughput ({a} actors × {k}, active)"),
        fmt_throughput(&series[0], ops, "cmd"),
        format!(
            "{} (request/reply + save_event)",
            fmt_throughput(&series[1], ops, "cmd")
        ),
        series[0].paired(&series[1]),
        target.then_some(0.8),
    );
    pair.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Benchmark 3: the stall during a planned move
// ---------------------------------------------------------------------------------------------

/// One round's figures.
struct MoveRound {
    /// Latencies of the commands first sent in the window after the move started.
    during: Vec<f64>,
    /// Latencies of the commands sent in the window before it and answered before it.
    before: Vec<f64>,
    /// Per actor, the latency of its first command sent after the move started (the one that
    /// activates it on `a`, unless it was sent before the settle and waited).
    first_after: Vec<f64>,
    /// Events per actor when the move started (what an activation on `a` replays: the
    /// default configuration takes no snapshots).
    events_at_move: f64,
    /// From the start of the move to the placement that settles it.
    settle: f64,
    moved: u64,
    retries: u64,
    fenced: u64,
}

async fn move_round(sizes: &Sizes, url: &str) -> BenchResult<MoveRound> {
    let snapshots = sizes.snapshot_every.map(SnapshotPolicy::EveryEvents);
    let pair = Pair::start(&Servers::one(url), &JetStreamConfig::default(), snapshots).await?;
    let ids: Vec<ActorId> = (0..sizes.stall_actors)
        .map(|i| actor(format!("m-{i}")))
        .collect();
    for id in &ids {
        pair.a.ask(id, Deposit::numbered(1)).await?;
    }
    let window = sizes.stall_window;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let (node, id, stop, pause) = (pair.a.clone(), id.clone(), stop.clone(), sizes.stall_pause);
        load.spawn(async move {
            let mut sent = Vec::new();
            let mut v = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                v += 1;
                let options = AskOptions {
                    timeout: Duration::from_secs(30),
                    ..AskOptions::default()
                }
                .command_id(CommandId::new(format!("m-{i}-{v}"))?);
                let at = Instant::now();
                let outcome = node.ask_with(&id, Deposit::numbered(v), options).await?;
                if outcome.reply != v || outcome.duplicate {
                    return Err(format!("{id}: {outcome:?}, expected version {v}").into());
                }
                sent.push((at, at.elapsed().as_secs_f64()));
                tokio::time::sleep(pause).await;
            }
            Ok::<_, measure::BoxError>((id, v, sent))
        });
    }
    // A first window to reach a steady state, then the window before the move.
    tokio::time::sleep(window / 2 + window).await;
    let start = Instant::now();
    let settled = pair.move_all_to_a().await?;
    tokio::time::sleep_until((start + window).into()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut round = MoveRound {
        during: Vec::new(),
        before: Vec::new(),
        first_after: Vec::new(),
        events_at_move: 0.0,
        settle: settled.duration_since(start).as_secs_f64(),
        moved: 0,
        retries: 0,
        fenced: 0,
    };
    let mut last = BTreeMap::new();
    while let Some(done) = load.join_next().await {
        let (id, v, sent) = done??;
        last.insert(id, v);
        // The warm-up command, then those sent before the move.
        round.events_at_move += 1.0 + sent.iter().filter(|(at, _)| *at < start).count() as f64;
        if let Some((_, latency)) = sent.iter().find(|(at, _)| *at >= start) {
            round.first_after.push(*latency);
        }
        for (at, latency) in sent {
            if at >= start && at < start + window {
                round.during.push(latency);
            } else if at + window >= start && at + Duration::from_secs_f64(latency) < start {
                round.before.push(latency);
            }
        }
    }
    round.events_at_move /= last.len().max(1) as f64;
    // No command lost or applied twice: every actor's count is its last version.
    for (id, v) in &last {
        let totals = pair.b.query(id, ()).await?;
        if totals.count != *v {
            return Err(format!("{id}: {} events, {v} commands acknowledged", totals.count).into());
        }
    }
    let (a, b) = (pair.a.stats(), pair.b.stats());
    (round.moved, round.retries, round.fenced) = (
        a.moved + b.moved,
        a.retries + b.retries,
        a.fenced + b.fenced,
    );
    pair.shutdown().await;
    Ok(round)
}

async fn move_bench(sizes: &Sizes, report: &mut Report, url: &str) -> BenchResult<()> {
    let window = sizes.stall_window;
    println!(
        "\n[3] stall during a planned move of every shard (b → a) under steady load from a: \
         {} actors, a command then {} pause each; window {}",
        sizes.stall_actors,
        fmt_secs(sizes.stall_pause.as_secs_f64()),
        fmt_secs(window.as_secs_f64())
    );
    let (mut during, mut before, mut settle) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..sizes.rounds {
        let round = move_round(sizes, url).await?;
        println!(
            "  round {r}: during {} ({} commands, max {}; each actor's first: p50 {}, max {}, \
             {:.0} events an actor at the move); before {} ({} commands); settled after {}; \
             moved {}, retries {}, fenced {}",
            fmt_latency(&round.during),
            round.during.len(),
            fmt_secs(percentile(&round.during, 100.0)),
            fmt_secs(percentile(&round.first_after, 50.0)),
            fmt_secs(percentile(&round.first_after, 100.0)),
            round.events_at_move,
            fmt_latency(&round.before),
            round.before.len(),
            fmt_secs(round.settle),
            round.moved,
            round.retries,
            round.fenced
        );
        during.extend(round.during);
        before.extend(round.before);
        settle.push(round.settle);
    }
    let p99 = percentile(&during, 99.0);
    report.compared(
        format!(
            "3. planned move of every shard under load: commands first sent within {} of its \
             start ({} in all)",
            fmt_secs(window.as_secs_f64()),
            during.len()
        ),
        format!(
            "{} (max {}; settled after {})",
            fmt_latency(&during),
            fmt_secs(percentile(&during, 100.0)),
            fmt_secs(measure::median(&settle))
        ),
        format!(
            "{} (sent and answered in the {} before the move, cross-node)",
            fmt_latency(&before),
            fmt_secs(window.as_secs_f64())
        ),
        percentile(&before, 99.0) / p99,
        "p99 < 100 ms",
        p99 < 0.1,
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Benchmark 4: unavailability of a crashed node's actors, default timings
// ---------------------------------------------------------------------------------------------

struct ClusterNode {
    manager: ClusterManager,
    host: Host,
}

async fn cluster_node(
    url: &str,
    cluster: &str,
    namespace: &Namespace,
    id: &str,
) -> BenchResult<ClusterNode> {
    let client = connect(url).await?;
    let mut config = ClusterConfig::new(NodeId::new(id)?);
    config.cluster_name = cluster.to_owned();
    let manager = Box::pin(ClusterManager::start(client.clone(), config)).await?;
    let store = JetStreamEventStore::connect(url, namespace.clone()).await?;
    let host = ClusterActors::join(
        &manager,
        client,
        namespace.clone(),
        Ledger,
        store,
        ActorConfig::default(),
        RoutingConfig::default(),
    )
    .await?;
    Ok(ClusterNode { manager, host })
}

/// Waits until every shard is owned by one of `nodes`, each owning some, under a settled
/// placement all of them adopted; returns it.
async fn settled(nodes: &[ClusterNode]) -> BenchResult<Placement> {
    let wait = async {
        loop {
            let placements: Vec<_> = nodes
                .iter()
                .map(|n| n.manager.shard_map().map(|m| m.placement()))
                .collect();
            if let Some(Some(first)) = placements.first()
                && placements.iter().all(|p| p.as_ref() == Some(first))
                && !first.is_moving()
                && first.shards.iter().all(|s| s.owner.is_some())
                && nodes.iter().all(|n| n.host.map_version() >= first.version)
                && nodes.iter().all(|n| {
                    first
                        .shards
                        .iter()
                        .any(|s| s.owner.as_ref().map(|o| &o.node) == Some(n.manager.node_id()))
                })
            {
                return first.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    Ok(tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .map_err(|_| "the cluster did not settle within 120 s")?)
}

/// One round: seconds from the abort to the first answer.
async fn crash_round(url: &str) -> BenchResult<CrashRound> {
    let cluster = unique("crash");
    let namespace = Namespace::new(unique("crash"))?;
    // Started together, so that the first placement already spreads the shards.
    let (n1, n2, n3) = tokio::join!(
        cluster_node(url, &cluster, &namespace, "n1"),
        cluster_node(url, &cluster, &namespace, "n2"),
        cluster_node(url, &cluster, &namespace, "n3"),
    );
    let mut nodes = vec![n1?, n2?, n3?];
    let placement = settled(&nodes).await?;
    let victim = nodes
        .iter()
        .position(|n| !n.manager.is_leader())
        .ok_or("no node is a follower")?;
    let victim_node = nodes[victim].manager.node_id().clone();
    let caller = nodes
        .iter()
        .position(|n| n.manager.node_id() != &victim_node);
    let caller = caller.ok_or("no other node")?;
    // An actor of the victim's, with one event.
    let id = (0..)
        .map(|i| actor(format!("c-{i}")))
        .find(|id| {
            nodes[caller].host.shard_of(id).is_ok_and(|shard| {
                placement
                    .slot(shard)
                    .and_then(|s| s.owner.as_ref())
                    .is_some_and(|o| o.node == victim_node)
            })
        })
        .ok_or("no actor on the victim")?;
    nodes[caller].host.ask(&id, Deposit::numbered(1)).await?;
    let victim_index = victim;
    let victim = nodes.remove(victim);
    let caller = &nodes[if caller > victim_index {
        caller - 1
    } else {
        caller
    }];
    assert_ne!(caller.manager.node_id(), &victim_node);

    let crashed = Instant::now();
    victim.host.abort().await;
    victim.manager.abort().await;
    // A new query every `PROBE_EVERY`, each in a task of its own (a query sent to the crashed
    // node may wait for its own deadline), until one is answered.
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let mut probes = tokio::task::JoinSet::new();
    let mut first_probe = None;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let answered_at = loop {
        tokio::select! {
            _ = tick.tick() => {
                if crashed.elapsed() > Duration::from_secs(120) {
                    return Err("no answer 120 s after the crash".into());
                }
                let (host, id, answers) = (caller.host.clone(), id.clone(), answers.clone());
                let probe = probes.spawn(async move {
                    let result = host.query(&id, ()).await;
                    let _ = answers.send(result.map(|totals| (totals, crashed.elapsed())));
                });
                first_probe.get_or_insert(probe);
            }
            Some(result) = answered.recv() => {
                if let Ok((totals, at)) = result {
                    assert_eq!(totals.count, 1, "the state survives the crash");
                    break at;
                }
            }
        }
    };
    // Whether the query sent first (right after the abort) was answered by then.
    let first_pending = first_probe.is_some_and(|probe| !probe.is_finished());
    probes.abort_all();
    for node in nodes {
        node.host.shutdown().await;
        node.manager.shutdown().await?;
    }
    Ok(CrashRound {
        answered: answered_at.as_secs_f64(),
        first_pending,
    })
}

/// How often a new query is sent after a crash.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// One crash round.
struct CrashRound {
    /// Seconds from the abort to the first answer.
    answered: f64,
    /// Whether the query sent right after the abort was still waiting then.
    first_pending: bool,
}

async fn crash_bench(sizes: &Sizes, report: &mut Report, url: &str) -> BenchResult<()> {
    let defaults = ClusterConfig::new(NodeId::new("defaults")?);
    let detection = defaults.member_ttl + defaults.probe_timeout + defaults.stabilization_delay;
    let bound = detection + Duration::from_secs(1);
    println!(
        "\n[4] unavailability of a crashed (non-leader) node's actors, default timings: \
         member TTL {} + probe timeout {} + stabilisation delay {} = {}; bound {} ({} rounds)",
        fmt_secs(defaults.member_ttl.as_secs_f64()),
        fmt_secs(defaults.probe_timeout.as_secs_f64()),
        fmt_secs(defaults.stabilization_delay.as_secs_f64()),
        fmt_secs(detection.as_secs_f64()),
        fmt_secs(bound.as_secs_f64()),
        sizes.crash_rounds
    );
    if sizes.crash_rounds == 0 {
        report.note(format!(
            "4. crash unavailability skipped in {} mode (about 10 s a round)",
            sizes.mode
        ));
        return Ok(());
    }
    let (mut times, mut stuck) = (Vec::new(), 0);
    for r in 0..sizes.crash_rounds {
        let round = crash_round(url).await?;
        println!(
            "  round {r}: first answer {} after the abort; the query sent first {}",
            fmt_secs(round.answered),
            if round.first_pending {
                "was still waiting (a request lost to the crashed node waits for its deadline)"
            } else {
                "was answered by then"
            }
        );
        times.push(round.answered);
        if round.first_pending {
            stuck += 1;
        }
    }
    let worst = percentile(&times, 100.0);
    report.compared(
        format!(
            "4. crashed node's actor answers again (default timings, {} rounds)",
            times.len()
        ),
        format!(
            "median {}, max {}",
            fmt_secs(measure::median(&times)),
            fmt_secs(worst)
        ),
        format!(
            "bound {} (member TTL + probe timeout + stabilisation + 1 s)",
            fmt_secs(bound.as_secs_f64())
        ),
        bound.as_secs_f64() / worst,
        &format!("≤ {}", fmt_secs(bound.as_secs_f64())),
        worst <= bound.as_secs_f64(),
    );
    if stuck > 0 {
        report.note(format!(
            "4. in {stuck} of {} rounds the query sent right after the abort was still \
             waiting when the actor answered again: it reached the crashed node before its \
             subscription was gone and waits for its own deadline (30 s for a query)",
            times.len()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

async fn run(url: String, sizes: Sizes, filters: Vec<String>) -> BenchResult<()> {
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let info = connect(&url).await?.server_info();
    measure::print_heading(
        &info,
        &format!(", one server on {url}; two node hosts in this process"),
        (sizes.mode, sizes.rounds),
        "",
        &sizes,
    )?;
    let mut report = Report::default();
    let r1 = JetStreamConfig::default();
    if wanted("query") {
        query_bench(&sizes, &mut report, &Servers::one(&url), &r1, "", true).await?;
    }
    if wanted("command") {
        command_bench(&sizes, &mut report, &Servers::one(&url), &r1, "", true).await?;
    }
    if wanted("move") {
        move_bench(&sizes, &mut report, &url).await?;
    }
    if wanted("crash") {
        crash_bench(&sizes, &mut report, &url).await?;
    }
    if wanted("r3") {
        if sizes.r3 {
            println!("\n[5] R3: a 3-server JetStream cluster, R3 streams (no target)");
            let cluster = NatsCluster::start(3)?;
            let servers = Servers::cluster(&cluster.urls());
            println!(
                "  the caller side (node a, the requester) on {}, the owner side (node b, the \
                 responder, the raw store) on {}",
                servers.caller, servers.owner
            );
            let r3 = JetStreamConfig {
                replicas: 3,
                ..JetStreamConfig::default()
            };
            query_bench(&sizes, &mut report, &servers, &r3, "R3 ", false).await?;
            command_bench(&sizes, &mut report, &servers, &r3, "R3 ", false).await?;
            drop(cluster);
        } else {
            report.note(format!("5. R3 figures skipped in {} mode", sizes.mode));
        }
    }
    report.print(
        &format!(
            "Results (aether-actor across nodes, nats-server {}, {}, {} mode, medians of {} \
             alternating rounds; ratio = baseline time ÷ our time, > 1: ours faster)",
            info.version,
            allocator::name(),
            sizes.mode,
            sizes.rounds
        ),
        "baseline",
    );
    Ok(())
}

fn main() -> BenchResult<()> {
    measure::main(Sizes::from_env, run)
}
