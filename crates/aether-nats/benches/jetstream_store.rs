//! Benchmarks of [`JetStreamEventStore`] against raw `async-nats` doing the same JetStream work,
//! measured in the same run on the same `nats-server` (started by the test harness).
//!
//! Every benchmark runs ours and the baseline (and a few diagnostic variants) once per round,
//! over several rounds, rotating which goes first (the machine is shared and noisy). It reports
//! the median over rounds of each variant, and as the ratio the median over rounds of
//! `baseline time ÷ our time` within a round (above 1: ours is faster). Next to each time it
//! prints the client process's CPU per operation (all threads, from
//! `/proc/self/task/*/schedstat`; the server is another process).
//!
//! 1. `save_event` of one actor, sequentially, against raw publishes carrying
//!    `Nats-Expected-Last-Subject-Sequence` (the previous ack's sequence) and `Nats-Msg-Id`,
//!    each ack awaited;
//! 2. saves over many actors at once (one task per actor, sequential saves within an actor, one
//!    store handle) against raw pipelined expected-sequence publishes, one in flight per actor;
//! 3. `latest_version` of existing actors against raw Direct Get `last_by_subj`;
//! 4. `events(actor, 0)` of a small and a large actor in a stream that also holds a million
//!    events of other actors, against a raw ordered consumer on the actor's subject;
//! 5. `load` (snapshot + tail) against a full replay and against raw KV get + ordered
//!    consumer; and the latency of a reported version conflict against a raw rejected publish;
//! 6. (`durable`) benchmarks 1–2 again on a second server started with `sync_interval: always`
//!    (the server fsyncs each write before acknowledging it), ours and raw.
//!
//! Baselines use their own connection, on the store's stream with subjects of their own
//! (benchmarks 1–2) or on the same subjects (read benchmarks 3–5). A last, untimed step
//! (`trace`) counts the JetStream requests of each store operation from a connection
//! subscribed to `$JS.API.>` and the stream's subjects.
//!
//! Sizes: full by default (`cargo bench`); `AETHER_BENCH_QUICK=1` for a run under a minute;
//! without `--bench` (`cargo test --benches`) a tiny smoke run. Each size can be overridden by an
//! environment variable (`AETHER_BENCH_SEQ`, `_ACTORS`, `_EVENTS_PER_ACTOR`, `_LATEST`, `_FILL`,
//! `_OTHER_ACTORS`, `_BIG`, `_SMALL`, `_SNAP`, `_TAIL`, `_CONFLICTS`, `_ROUNDS`). Arguments that
//! do not start with `-` select benchmarks by name (`seq`, `concurrent`, `latest`, `replay`,
//! `snapshot`, `conflict`, `trace`, `durable`).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use aether_core::{
    ActorId, ActorSnapshot, Event, EventStore, Namespace, SnapshotStore, StoreError, Version,
};
use aether_nats::naming::{
    actor_subject, snapshot_bucket, snapshot_key, stream_name, stream_subjects,
};
use aether_nats::{JetStreamEventStore, TYPE_HEADER, VERSION_HEADER};
use aether_testkit::nats_server::{NatsServer, ServerOptions};
use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, stream::Stream};
use futures::stream::{FuturesUnordered, StreamExt};

#[path = "support/measure.rs"]
mod measure;
use measure::{
    BenchResult, Meter, Report, Sample, Series, bench_event, env_or, fmt_rate, fmt_secs,
    fmt_throughput, percentile, rounds,
};

/// Raw publishes kept in flight while filling the replay stream.
const FILL_WINDOW: usize = 2048;
/// Events of the actor whose stale saves are timed, spread over the replay stream.
const SPREAD: u64 = 5;

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sizes {
    mode: &'static str,
    rounds: usize,
    seq_events: u64,
    actors: usize,
    events_per_actor: u64,
    latest_calls: usize,
    fill_others: usize,
    other_actors: usize,
    big: u64,
    small: u64,
    snap: u64,
    tail: u64,
    conflicts: usize,
}

impl Sizes {
    fn from_env(bench_mode: bool) -> Self {
        let quick = measure::quick();
        let base = if !bench_mode {
            Self {
                mode: "smoke",
                rounds: 1,
                seq_events: 20,
                actors: 10,
                events_per_actor: 3,
                latest_calls: 20,
                fill_others: 2_000,
                other_actors: 10,
                big: 300,
                small: 30,
                snap: 300,
                tail: 10,
                conflicts: 5,
            }
        } else if quick {
            Self {
                mode: "quick",
                rounds: 3,
                seq_events: 300,
                actors: 200,
                events_per_actor: 10,
                latest_calls: 1_000,
                fill_others: 50_000,
                other_actors: 100,
                big: 10_000,
                small: 1_000,
                snap: 2_000,
                tail: 100,
                conflicts: 100,
            }
        } else {
            Self {
                mode: "full",
                rounds: 7,
                seq_events: 2_000,
                actors: 1_000,
                events_per_actor: 20,
                latest_calls: 5_000,
                fill_others: 1_000_000,
                other_actors: 1_000,
                big: 100_000,
                small: 1_000,
                snap: 10_000,
                tail: 100,
                conflicts: 300,
            }
        };
        Self {
            mode: base.mode,
            rounds: env_or("AETHER_BENCH_ROUNDS", base.rounds).max(1),
            seq_events: env_or("AETHER_BENCH_SEQ", base.seq_events).max(1),
            actors: env_or("AETHER_BENCH_ACTORS", base.actors).max(1),
            events_per_actor: env_or("AETHER_BENCH_EVENTS_PER_ACTOR", base.events_per_actor).max(1),
            latest_calls: env_or("AETHER_BENCH_LATEST", base.latest_calls).max(1),
            fill_others: env_or("AETHER_BENCH_FILL", base.fill_others),
            other_actors: env_or("AETHER_BENCH_OTHER_ACTORS", base.other_actors).max(1),
            big: env_or("AETHER_BENCH_BIG", base.big).max(1),
            small: env_or("AETHER_BENCH_SMALL", base.small).max(1),
            snap: env_or("AETHER_BENCH_SNAP", base.snap).max(2),
            tail: env_or("AETHER_BENCH_TAIL", base.tail).max(1),
            conflicts: env_or("AETHER_BENCH_CONFLICTS", base.conflicts).max(1),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events and raw publishing
// ---------------------------------------------------------------------------------------------

fn actor(name: impl Into<String>) -> ActorId {
    ActorId::new(name.into()).expect("benchmark actor ids are valid")
}

/// The headers the store writes, with the expected sequence if given.
fn raw_headers(event: &Event, expected: Option<u64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, event.id.as_str());
    headers.insert(VERSION_HEADER, event.version.to_string());
    headers.insert(TYPE_HEADER, event.event_type.as_str());
    if let Some(expected) = expected {
        headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expected.to_string());
    }
    headers
}

/// Sends `event` as the store would encode it; the ack is left to the caller.
async fn raw_send(
    js: &jetstream::Context,
    subject: &str,
    event: &Event,
    expected: Option<u64>,
) -> Result<PublishAckFuture, PublishError> {
    let payload = serde_json::to_vec(event).expect("events encode");
    js.publish_with_headers(
        subject.to_owned(),
        raw_headers(event, expected),
        payload.into(),
    )
    .await
}

async fn tagged(index: usize, ack: PublishAckFuture) -> (usize, Result<PublishAck, PublishError>) {
    (index, ack.await)
}

impl Series {
    /// The wall time of each round.
    fn list_times(&self) -> String {
        self.0
            .iter()
            .map(|s| fmt_secs(s.wall))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmarks
// ---------------------------------------------------------------------------------------------

/// Everything the benchmarks share.
struct Bench {
    sizes: Sizes,
    url: String,
    /// The store under test, on namespace `bench` (benchmarks 1–3).
    store: JetStreamEventStore,
    /// The baseline's own connection and JetStream context.
    raw_client: async_nats::Client,
    raw_js: jetstream::Context,
    ns: Namespace,
    report: Report,
    /// Actors with `events_per_actor` events each, written by benchmark 2.
    existing_actors: Vec<ActorId>,
    /// Appended to the names of benchmarks 1–2: which server settings they ran on.
    durability: &'static str,
}

/// The replay stream and what the fill put in it.
struct Filled {
    store: JetStreamEventStore,
    ns: Namespace,
    stream: Stream,
    big: ActorId,
    small: ActorId,
    snap: ActorId,
    spread: ActorId,
    /// Stream sequence of the last event of each named actor.
    last_seq: BTreeMap<ActorId, u64>,
    /// Stream sequences of the snapshot actor's events, by version - 1.
    snap_seqs: Vec<u64>,
    total: u64,
}

impl Bench {
    /// Benchmark 1: sequential saves of one actor.
    async fn sequential(&mut self) -> BenchResult<()> {
        let n = self.sizes.seq_events;
        println!(
            "\n[1] sequential save_event{}, one actor, {n} events per round",
            self.durability
        );
        // Warm-up, not timed.
        self.seq_ours("warm", 50).await?;
        self.seq_raw("warm", 50).await?;
        let this = &*self;
        let series = rounds(
            this.sizes.rounds,
            2,
            |_| true,
            async |variant, round| {
                let tag = round.to_string();
                match variant {
                    0 => this.seq_ours(&tag, n).await,
                    _ => this.seq_raw(&tag, n).await,
                }
            },
        )
        .await?;
        let (ours, raw) = (&series[0], &series[1]);
        let ops = n as f64;
        println!("  ours: {}", ours.list_rates(ops, "ev"));
        println!("  raw:  {}", raw.list_rates(ops, "ev"));
        self.report.row(
            format!("1. sequential save_event{}, 1 actor × {n}", self.durability),
            fmt_throughput(ours, ops, "ev"),
            fmt_throughput(raw, ops, "ev"),
            ours.paired(raw),
            Some(0.9),
        );
        Ok(())
    }

    async fn seq_ours(&self, tag: &str, n: u64) -> BenchResult<Sample> {
        let actor = actor(format!("ours-seq-{tag}"));
        let events: Vec<Event> = (1..=n).map(|v| bench_event(&actor, v)).collect();
        let meter = Meter::start();
        for event in events {
            let outcome = self.store.save_event(event).await?;
            assert!(!outcome.is_duplicate());
        }
        Ok(meter.stop())
    }

    async fn seq_raw(&self, tag: &str, n: u64) -> BenchResult<Sample> {
        let actor = actor(format!("raw-seq-{tag}"));
        let events: Vec<Event> = (1..=n).map(|v| bench_event(&actor, v)).collect();
        let meter = Meter::start();
        let subject = actor_subject(&self.ns, &actor);
        let mut expected = 0;
        for event in &events {
            let ack = raw_send(&self.raw_js, &subject, event, Some(expected))
                .await?
                .await?;
            assert!(!ack.duplicate);
            expected = ack.sequence;
        }
        Ok(meter.stop())
    }

    /// Benchmark 2: many actors at once.
    async fn concurrent(&mut self) -> BenchResult<()> {
        let (a, k) = (self.sizes.actors, self.sizes.events_per_actor);
        let ops = a as f64 * k as f64;
        println!(
            "\n[2] concurrent saves{}: {a} actors × {k} events per round",
            self.durability
        );
        // New actors go through a handle of their own, so that they never push the actors of
        // the "heads cached" variant out of `self.store`'s head cache.
        let fresh = self.store.for_namespace(self.ns.clone()).await?;
        // Warm-up, not timed: also the actors of the "heads cached" variant.
        self.concurrent_ours(&self.store, "warm", 0).await?;
        self.concurrent_raw_pipelined("warm").await?;
        let this = &*self;
        let fresh = &fresh;
        let series = rounds(
            this.sizes.rounds,
            4,
            |_| true,
            async |variant, round| {
                let tag = round.to_string();
                match variant {
                    0 => this.concurrent_ours(fresh, &tag, 0).await,
                    1 => {
                        this.concurrent_ours(&this.store, "warm", round as u64 + 1)
                            .await
                    }
                    2 => this.concurrent_raw_pipelined(&tag).await,
                    _ => this.concurrent_raw_tasks(&tag).await,
                }
            },
        )
        .await?;
        let (ours, warm, raw, raw_tasks) = (&series[0], &series[1], &series[2], &series[3]);
        println!("  ours (new actors):    {}", ours.list_rates(ops, "ev"));
        println!("  ours (heads cached):  {}", warm.list_rates(ops, "ev"));
        println!("  raw pipelined:        {}", raw.list_rates(ops, "ev"));
        println!(
            "  raw, task per actor:  {}",
            raw_tasks.list_rates(ops, "ev")
        );
        self.report.row(
            format!(
                "2. concurrent saves{}, {a} new actors × {k}, one task per actor",
                self.durability
            ),
            fmt_throughput(ours, ops, "ev"),
            format!("{} (pipelined)", fmt_throughput(raw, ops, "ev")),
            ours.paired(raw),
            Some(0.8),
        );
        self.report.row(
            format!(
                "2'. the same{} on {a} actors whose heads the handle has cached",
                self.durability
            ),
            fmt_throughput(warm, ops, "ev"),
            format!("{} (pipelined)", fmt_throughput(raw, ops, "ev")),
            warm.paired(raw),
            Some(0.8),
        );
        self.report.note(format!(
            "concurrent saves: a raw baseline with one task per actor (as ours) does {} ({:.2}× \
             the pipelined baseline)",
            fmt_throughput(raw_tasks, ops, "ev"),
            raw_tasks.paired(raw)
        ));
        self.existing_actors = (0..a).map(|i| actor(format!("ours-par0-{i}"))).collect();
        Ok(())
    }

    /// Events `after + 1 ..= after + k` (k = events per actor) of each actor `{prefix}{tag}-i`.
    fn actor_batches(&self, prefix: &str, tag: &str, after: u64) -> Vec<Vec<Event>> {
        let k = self.sizes.events_per_actor;
        (0..self.sizes.actors)
            .map(|i| {
                let actor = actor(format!("{prefix}{tag}-{i}"));
                (after + 1..=after + k)
                    .map(|v| bench_event(&actor, v))
                    .collect()
            })
            .collect()
    }

    /// One task per actor, all on `store`; `pass` > 0 appends after `pass` earlier
    /// runs over the same actors.
    async fn concurrent_ours(
        &self,
        store: &JetStreamEventStore,
        tag: &str,
        pass: u64,
    ) -> BenchResult<Sample> {
        let after = pass * self.sizes.events_per_actor;
        let batches = self.actor_batches("ours-par", tag, after);
        let meter = Meter::start();
        let mut tasks = tokio::task::JoinSet::new();
        for events in batches {
            let store = store.clone();
            tasks.spawn(async move {
                for event in events {
                    store.save_event(event).await?;
                }
                Ok::<_, StoreError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(meter.stop())
    }

    /// One driver keeping one publish in flight per actor.
    async fn concurrent_raw_pipelined(&self, tag: &str) -> BenchResult<Sample> {
        let batches = self.actor_batches("raw-par", tag, 0);
        let k = self.sizes.events_per_actor as usize;
        let meter = Meter::start();
        let subjects: Vec<String> = batches
            .iter()
            .map(|events| actor_subject(&self.ns, &events[0].actor_id))
            .collect();
        let mut next = vec![0usize; batches.len()];
        let mut in_flight = FuturesUnordered::new();
        for (i, events) in batches.iter().enumerate() {
            let ack = raw_send(&self.raw_js, &subjects[i], &events[0], Some(0)).await?;
            in_flight.push(tagged(i, ack));
        }
        while let Some((i, ack)) = in_flight.next().await {
            let seq = ack?.sequence;
            next[i] += 1;
            if next[i] < k {
                let ack =
                    raw_send(&self.raw_js, &subjects[i], &batches[i][next[i]], Some(seq)).await?;
                in_flight.push(tagged(i, ack));
            }
        }
        Ok(meter.stop())
    }

    /// One task per actor, as ours, each publishing and awaiting its acks in turn.
    async fn concurrent_raw_tasks(&self, tag: &str) -> BenchResult<Sample> {
        let batches = self.actor_batches("raw-task", tag, 0);
        let meter = Meter::start();
        let mut tasks = tokio::task::JoinSet::new();
        for events in batches {
            let js = self.raw_js.clone();
            let subject = actor_subject(&self.ns, &events[0].actor_id);
            tasks.spawn(async move {
                let mut expected = 0;
                for event in &events {
                    expected = raw_send(&js, &subject, event, Some(expected))
                        .await?
                        .await?
                        .sequence;
                }
                Ok::<_, PublishError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(meter.stop())
    }

    /// Benchmark 3: `latest_version` against Direct Get.
    async fn latest(&mut self) -> BenchResult<()> {
        let k = self.sizes.events_per_actor;
        if self.existing_actors.is_empty() {
            // Benchmark 2 did not run: write the actors it would have left.
            for events in self.actor_batches("ours-par", "0", 0) {
                self.store.save_events(events).await?;
            }
            self.existing_actors = (0..self.sizes.actors)
                .map(|i| actor(format!("ours-par0-{i}")))
                .collect();
        }
        let calls = self.sizes.latest_calls;
        let stream = self.raw_js.get_stream(stream_name(&self.ns)).await?;
        println!(
            "\n[3] latest_version: {calls} sequential calls over {} actors with {k} events",
            self.existing_actors.len(),
        );
        // Diagnostic: the same raw Direct Get on the store's own connection, to tell the
        // store's code from the connection it happens to use.
        let same_connection = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .build(self.store.client().clone())
            .get_stream(stream_name(&self.ns))
            .await?;
        let this = &*self;
        let streams = [&stream, &same_connection];
        let series = rounds(
            this.sizes.rounds,
            3,
            |_| true,
            async |variant, _| {
                let meter = Meter::start();
                for i in 0..calls {
                    let actor = &this.existing_actors[i % this.existing_actors.len()];
                    let version = if variant == 0 {
                        this.store.latest_version(actor).await?
                    } else {
                        let message = streams[variant - 1]
                            .direct_get_last_for_subject(actor_subject(&this.ns, actor))
                            .await?;
                        header_version(&message.headers).ok_or("no version header")?
                    };
                    assert_eq!(version, k);
                }
                Ok(meter.stop())
            },
        )
        .await?;
        let (ours, raw, raw_same) = (&series[0], &series[1], &series[2]);
        let ops = calls as f64;
        println!("  ours: {}", ours.list_rates(ops, "calls"));
        println!("  raw:  {}", raw.list_rates(ops, "calls"));
        println!(
            "  raw on the store's connection: {}",
            raw_same.list_rates(ops, "calls")
        );
        self.report.row(
            format!("3. latest_version × {calls}, sequential"),
            fmt_throughput(ours, ops, "calls"),
            format!("{} (Direct Get)", fmt_throughput(raw, ops, "calls")),
            ours.paired(raw),
            Some(0.9),
        );
        self.report.note(format!(
            "latest_version: the raw Direct Get sent on the store's own connection does {}; \
             ours ÷ that = {:.2}×",
            fmt_throughput(raw_same, ops, "calls"),
            ours.paired(raw_same)
        ));
        Ok(())
    }

    /// Opens namespace `replay` and fills its stream with raw pipelined publishes: the other
    /// actors' events and the named actors' events, shuffled together.
    async fn fill(&mut self) -> BenchResult<Filled> {
        let ns = Namespace::new("replay")?;
        let store = self.store.for_namespace(ns.clone()).await?;
        let stream = self.raw_js.get_stream(stream_name(&ns)).await?;
        let s = &self.sizes;
        let (big, small, snap, spread) = (
            actor("replay-big"),
            actor("replay-small"),
            actor("replay-snap"),
            actor("conflict-spread"),
        );
        // Kinds: 0 other, 1 big, 2 small, 3 snap, 4 spread.
        let mut kinds: Vec<u8> = vec![0; s.fill_others];
        for (kind, count) in [(1u8, s.big), (2, s.small), (3, s.snap), (4, SPREAD)] {
            kinds.extend(std::iter::repeat_n(kind, count as usize));
        }
        shuffle(&mut kinds, 0x5eed_1234_abcd_ef01);
        let named = [big.clone(), small.clone(), snap.clone(), spread.clone()];
        let named_subjects: Vec<String> = named.iter().map(|a| actor_subject(&ns, a)).collect();
        let others: Vec<(ActorId, String)> = (0..s.other_actors)
            .map(|i| {
                let a = actor(format!("other-{i}"));
                let subject = actor_subject(&ns, &a);
                (a, subject)
            })
            .collect();
        let mut versions = [0u64; 5];
        let mut other_count = 0usize;
        let mut last_seq = BTreeMap::new();
        let mut snap_seqs = Vec::with_capacity(s.snap as usize);
        let mut window: VecDeque<(u8, PublishAckFuture)> = VecDeque::with_capacity(FILL_WINDOW);
        let mut spread_seq = 0;
        let total = kinds.len() as u64;
        println!(
            "\n[fill] {total} events into stream {} ({} others over {} actors, big {}, small {}, snap {})",
            stream_name(&ns),
            s.fill_others,
            s.other_actors,
            s.big,
            s.small,
            s.snap
        );
        let start = Instant::now();
        let mut settle = |kind: u8, ack: PublishAck| {
            if kind > 0 {
                last_seq.insert(named[usize::from(kind) - 1].clone(), ack.sequence);
                if kind == 3 {
                    snap_seqs.push(ack.sequence);
                }
            }
        };
        for &kind in &kinds {
            let (actor_id, subject, version) = if kind == 0 {
                let (a, subject) = &others[other_count % others.len()];
                let version = (other_count / others.len()) as u64 + 1;
                other_count += 1;
                (a, subject, version)
            } else {
                let k = usize::from(kind);
                versions[k] += 1;
                (&named[k - 1], &named_subjects[k - 1], versions[k])
            };
            let event = bench_event(actor_id, version);
            if kind == 4 {
                // The conflict actor's records are written as the store writes them: each with
                // the expected sequence of the one before (which names its predecessor).
                while let Some((kind, ack)) = window.pop_front() {
                    settle(kind, ack.await?);
                }
                let ack = raw_send(&self.raw_js, subject, &event, Some(spread_seq))
                    .await?
                    .await?;
                spread_seq = ack.sequence;
                settle(kind, ack);
                continue;
            }
            let ack = raw_send(&self.raw_js, subject, &event, None).await?;
            window.push_back((kind, ack));
            if window.len() >= FILL_WINDOW {
                let (kind, ack) = window.pop_front().expect("full window");
                settle(kind, ack.await?);
            }
        }
        while let Some((kind, ack)) = window.pop_front() {
            settle(kind, ack.await?);
        }
        let secs = start.elapsed().as_secs_f64();
        let mut handle = stream.clone();
        let info = handle.info().await?;
        println!(
            "  filled in {} ({}); stream holds {} messages, {:.0} MiB",
            fmt_secs(secs),
            fmt_rate(total as f64 / secs, "msgs"),
            info.state.messages,
            info.state.bytes as f64 / (1024.0 * 1024.0)
        );
        let total = info.state.messages;
        Ok(Filled {
            store,
            ns,
            stream,
            big,
            small,
            snap,
            spread,
            last_seq,
            snap_seqs,
            total,
        })
    }

    /// Benchmark 4: replay of one actor among many.
    async fn replay(&mut self, filled: &Filled) -> BenchResult<()> {
        for (actor_id, expected) in [
            (&filled.small, self.sizes.small),
            (&filled.big, self.sizes.big),
        ] {
            let subject = actor_subject(&filled.ns, actor_id);
            let last = filled.last_seq[actor_id];
            println!(
                "\n[4] replay of {expected} events of {actor_id} in a stream of {} messages",
                filled.total
            );
            // Warm-up, not timed: the first read of a sparse subject loads the stream's
            // blocks from disk.
            filled.store.events(actor_id, 0).await?;
            raw_replay(&filled.stream, &subject, 1, last, false).await?;
            let series = rounds(
                self.sizes.rounds,
                3,
                |_| true,
                async |variant, _| {
                    let meter = Meter::start();
                    let (count, events) = match variant {
                        0 => {
                            let events = filled.store.events(actor_id, 0).await?;
                            (events.len(), events)
                        }
                        1 => raw_replay(&filled.stream, &subject, 1, last, false).await?,
                        _ => raw_replay(&filled.stream, &subject, 1, last, true).await?,
                    };
                    // Stopped before the events are dropped: that is the caller's business.
                    let sample = meter.stop();
                    assert_eq!(count as u64, expected, "replayed every event");
                    assert!(events.windows(2).all(|w| w[0].version < w[1].version));
                    drop(events);
                    Ok(sample)
                },
            )
            .await?;
            let (ours, raw, raw_decode) = (&series[0], &series[1], &series[2]);
            println!("  ours:       {}", ours.list_times());
            println!("  raw:        {}", raw.list_times());
            println!("  raw+decode: {}", raw_decode.list_times());
            let ops = expected as f64;
            let show = |s: &Series| {
                format!(
                    "{} ({}, CPU {}/ev)",
                    fmt_secs(s.wall()),
                    fmt_rate(s.rate(ops), "ev"),
                    fmt_secs(s.cpu() / ops)
                )
            };
            self.report.row(
                format!(
                    "4. replay events(actor, 0): {expected} events among {}",
                    filled.total
                ),
                show(ours),
                format!("{} (ordered consumer)", show(raw)),
                ours.paired(raw),
                Some(0.8),
            );
            self.report.row(
                format!("4'. the same vs a raw consumer that also decodes and collects the Events ({expected})"),
                show(ours),
                format!("{} (ordered consumer + serde_json into a Vec)", show(raw_decode)),
                ours.paired(raw_decode),
                None,
            );
        }
        Ok(())
    }

    /// Benchmark 5a: loading an actor from its snapshot.
    async fn snapshot(&mut self, filled: &Filled) -> BenchResult<()> {
        let (n, tail) = (self.sizes.snap, self.sizes.tail.min(self.sizes.snap - 1));
        let at = n - tail;
        let snap = &filled.snap;
        filled
            .store
            .save_snapshot(ActorSnapshot::new(
                snap.clone(),
                at,
                serde_json::json!({"balance": 123_456, "owner": "replay-snap", "open": true}),
            ))
            .await?;
        let subject = actor_subject(&filled.ns, snap);
        let first = filled.snap_seqs[(at - 1) as usize] + 1;
        let last = filled.last_seq[snap];
        let kv = self
            .raw_js
            .get_key_value(snapshot_bucket(&filled.ns))
            .await?;
        println!(
            "\n[5a] load of {snap} ({n} events, snapshot at {at}, tail {tail}) vs full replay"
        );
        let (kv, subject) = (&kv, &subject);
        filled.store.load(snap).await?; // warm-up, not timed
        let series = rounds(
            self.sizes.rounds,
            3,
            |_| true,
            async |variant, _| {
                let meter = Meter::start();
                match variant {
                    0 => {
                        let loaded = filled.store.load(snap).await?;
                        let sample = meter.stop();
                        assert_eq!(loaded.snapshot.map(|s| s.version), Some(at));
                        assert_eq!(loaded.events.len() as u64, tail);
                        Ok(sample)
                    }
                    1 => {
                        let events = filled.store.events(snap, 0).await?;
                        let sample = meter.stop();
                        assert_eq!(events.len() as u64, n);
                        Ok(sample)
                    }
                    _ => {
                        let bytes = kv.get(snapshot_key(snap)).await?.ok_or("no snapshot")?;
                        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
                        std::hint::black_box(&value);
                        let (count, events) =
                            raw_replay(&filled.stream, subject, first, last, true).await?;
                        let sample = meter.stop();
                        assert_eq!(count as u64, tail);
                        drop(events);
                        Ok(sample)
                    }
                }
            },
        )
        .await?;
        let (ours, full, raw) = (&series[0], &series[1], &series[2]);
        println!("  load:        {}", ours.list_times());
        println!("  full replay: {}", full.list_times());
        println!("  raw:         {}", raw.list_times());
        self.report.row(
            format!("5a. load: snapshot + {tail}-event tail of {n} events"),
            fmt_secs(ours.wall()),
            format!(
                "{} (raw KV get + ordered consumer from the snapshot's sequence, decoding)",
                fmt_secs(raw.wall())
            ),
            ours.paired(raw),
            None,
        );
        self.report.row(
            format!("5a'. load vs our own full replay of {n} events"),
            fmt_secs(ours.wall()),
            format!("{} (ours: events(actor, 0))", fmt_secs(full.wall())),
            ours.paired(full),
            None,
        );
        Ok(())
    }

    /// Benchmark 5b: how long a version conflict takes to be reported.
    async fn conflicts(&mut self, filled: &Filled) -> BenchResult<()> {
        let samples = self.sizes.conflicts;
        let store = &filled.store;
        let spread = &filled.spread;
        let spread_subject = actor_subject(&filled.ns, spread);
        let spread_head = store.latest_version(spread).await?;
        let stale_seq = first_seq(&filled.stream, &spread_subject).await?;
        // The lost-race actor: written by this handle (its head is cached), then by another
        // writer before each timed save.
        let race = actor("conflict-race");
        let race_subject = actor_subject(&filled.ns, &race);
        for v in 1..=3 {
            store.save_event(bench_event(&race, v)).await?;
        }
        let mut race_version = 3;
        let mut race_seq = filled
            .stream
            .direct_get_last_for_subject(race_subject.clone())
            .await?
            .sequence;
        println!(
            "\n[5b] conflict latency, {samples} samples each; {spread} has {spread_head} events \
             spread over the stream of {} messages",
            filled.total
        );
        let (mut equal, mut below, mut lost, mut raw) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let expect_conflict = |result: Result<_, StoreError>, current: Version| match result {
            Err(StoreError::VersionConflict {
                current_version, ..
            }) if current_version == current => Ok(()),
            other => Err(format!("expected a conflict at {current}, got {other:?}")),
        };
        for i in 0..samples {
            for ours_turn in [i % 2 == 0, i % 2 == 1] {
                if ours_turn {
                    // (a) version = the current version.
                    let event = bench_event(spread, spread_head);
                    let start = Instant::now();
                    let result = store.save_event(event).await;
                    equal.push(start.elapsed().as_secs_f64());
                    expect_conflict(result, spread_head)?;
                    // (b) a version below the current one.
                    let event = bench_event(spread, spread_head - 3);
                    let start = Instant::now();
                    let result = store.save_event(event).await;
                    below.push(start.elapsed().as_secs_f64());
                    expect_conflict(result, spread_head)?;
                    // (c) a lost race: another writer got there first.
                    race_version += 1;
                    let rival = bench_event(&race, race_version);
                    race_seq = raw_send(&self.raw_js, &race_subject, &rival, Some(race_seq))
                        .await?
                        .await?
                        .sequence;
                    let event = bench_event(&race, race_version);
                    let start = Instant::now();
                    let result = store.save_event(event).await;
                    lost.push(start.elapsed().as_secs_f64());
                    expect_conflict(result, race_version)?;
                } else {
                    let event = bench_event(spread, spread_head + 1);
                    let start = Instant::now();
                    let result = raw_send(&self.raw_js, &spread_subject, &event, Some(stale_seq))
                        .await?
                        .await;
                    raw.push(start.elapsed().as_secs_f64());
                    match result {
                        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
                        other => return Err(format!("expected 10071, got {other:?}").into()),
                    }
                }
            }
        }
        let p = |v: &[f64]| {
            format!(
                "p50 {} / p99 {}",
                fmt_secs(percentile(v, 50.0)),
                fmt_secs(percentile(v, 99.0))
            )
        };
        let raw_p50 = percentile(&raw, 50.0);
        for (label, values) in [
            ("version = current", &equal),
            ("version < current", &below),
            ("lost race, stale cached head", &lost),
        ] {
            self.report.row(
                format!("5b. conflict reported ({samples} samples): {label}"),
                p(values),
                format!("{} (publish rejected, 10071)", p(&raw)),
                raw_p50 / percentile(values, 50.0),
                None,
            );
        }
        Ok(())
    }

    /// Counts the requests each store operation sends, by watching `$JS.API.>` and the
    /// stream's subjects from a spy connection.
    async fn trace(&mut self, filled: &Filled) -> BenchResult<()> {
        println!("\n[trace] JetStream requests per store operation (untimed)");
        let mut spy = Spy::new(&self.url, &filled.ns).await?;
        let store = &filled.store;
        let ns = &filled.ns;
        let fresh = actor("trace-fresh");
        let spread = &filled.spread;
        let head = store.latest_version(spread).await?;
        let mut ops: Vec<(String, BTreeMap<String, usize>)> = Vec::new();
        ops.push((
            "save_event, new actor (head not cached)".into(),
            spy.count(store.save_event(bench_event(&fresh, 1))).await,
        ));
        ops.push((
            "save_event, next version (head cached)".into(),
            spy.count(store.save_event(bench_event(&fresh, 2))).await,
        ));
        ops.push((
            "latest_version".into(),
            spy.count(store.latest_version(&fresh)).await,
        ));
        ops.push((
            "events(actor, 0) of 2 events".into(),
            spy.count(store.events(&fresh, 0)).await,
        ));
        ops.push((
            format!("load of {} (snapshot + tail)", filled.snap),
            spy.count(store.load(&filled.snap)).await,
        ));
        ops.push((
            "conflict: version = current".into(),
            spy.count(store.save_event(bench_event(spread, head))).await,
        ));
        ops.push((
            "conflict: version < current".into(),
            spy.count(store.save_event(bench_event(spread, head - 3)))
                .await,
        ));
        // Another writer appends version 3 behind the handle's back.
        let subject = actor_subject(ns, &fresh);
        let seq = filled
            .stream
            .direct_get_last_for_subject(subject.clone())
            .await?
            .sequence;
        raw_send(&self.raw_js, &subject, &bench_event(&fresh, 3), Some(seq))
            .await?
            .await?;
        ops.push((
            "conflict: lost race (stale cached head)".into(),
            spy.count(store.save_event(bench_event(&fresh, 3))).await,
        ));
        for (op, counts) in ops {
            let total: usize = counts.values().sum();
            let detail = counts
                .iter()
                .map(|(k, v)| format!("{v}× {k}"))
                .collect::<Vec<_>>()
                .join(", ");
            self.report
                .note(format!("requests — {op}: {total} ({detail})"));
        }
        Ok(())
    }
}

/// Replays `subject` from `first` to `last` (inclusive) through a raw ordered consumer; with
/// `decode`, also decodes each payload into an [`Event`] and collects them, as a replay that
/// returns events must. Returns how many messages it read, and the events.
async fn raw_replay(
    stream: &Stream,
    subject: &str,
    first: u64,
    last: u64,
    decode: bool,
) -> BenchResult<(usize, Vec<Event>)> {
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            deliver_policy: if first <= 1 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: first,
                }
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let (mut count, mut events) = (0, Vec::new());
    while let Some(message) = messages.next().await {
        let message = message?;
        let seq = message.info()?.stream_sequence;
        if decode {
            events.push(serde_json::from_slice::<Event>(&message.payload)?);
        }
        count += 1;
        if seq >= last {
            break;
        }
    }
    Ok((count, events))
}

/// The stream sequence of the first message on `subject`.
async fn first_seq(stream: &Stream, subject: &str) -> BenchResult<u64> {
    Ok(stream
        .direct_get_next_for_subject(subject.to_owned(), Some(1))
        .await?
        .sequence)
}

fn header_version(headers: &HeaderMap) -> Option<Version> {
    headers.get(VERSION_HEADER)?.as_str().parse().ok()
}

/// A connection watching `$JS.API.>` and a namespace's stream subjects: counts the JetStream
/// API requests and stream publishes of an operation, by kind.
struct Spy {
    api: async_nats::Subscriber,
    publishes: async_nats::Subscriber,
}

impl Spy {
    async fn new(url: &str, ns: &Namespace) -> BenchResult<Self> {
        let client = async_nats::connect(url).await?;
        let api = client.subscribe("$JS.API.>").await?;
        let publishes = client.subscribe(stream_subjects(ns)).await?;
        client.flush().await?;
        Ok(Self { api, publishes })
    }

    /// Everything seen until nothing arrived for a while.
    async fn drain(&mut self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        let quiet = Duration::from_millis(200);
        loop {
            tokio::select! {
                Some(message) = self.api.next() => {
                    *counts.entry(api_kind(&message.subject)).or_insert(0) += 1;
                }
                Some(_) = self.publishes.next() => {
                    *counts.entry("publish".to_owned()).or_insert(0) += 1;
                }
                () = tokio::time::sleep(quiet) => return counts,
            }
        }
    }

    async fn count<F: Future>(&mut self, op: F) -> BTreeMap<String, usize> {
        self.drain().await;
        op.await;
        self.drain().await
    }
}

/// `$JS.API.DIRECT.GET.KV_x.…` → `DIRECT.GET (KV)`, `$JS.API.STREAM.MSG.GET.s` →
/// `STREAM.MSG.GET`, …: the API verb, with `(KV)` for requests to a KV bucket's stream.
fn api_kind(subject: &str) -> String {
    let rest = subject.strip_prefix("$JS.API.").unwrap_or(subject);
    let mut verb = Vec::new();
    let mut kv = false;
    for token in rest.split('.') {
        if token.starts_with("KV_") {
            kv = true;
            break;
        }
        if token.starts_with("aether-") || token.chars().any(|c| c.is_ascii_lowercase()) {
            break;
        }
        verb.push(token);
    }
    format!("{}{}", verb.join("."), if kv { " (KV)" } else { "" })
}

/// Fisher–Yates with xorshift64: deterministic, no extra dependency.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

async fn run(url: String, sizes: Sizes, filters: Vec<String>) -> BenchResult<()> {
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let ns = Namespace::new("bench")?;
    let store = JetStreamEventStore::connect(&url, ns.clone()).await?;
    let raw_client = async_nats::connect(&url).await?;
    let raw_js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(raw_client.clone());
    let info = store.client().server_info();
    measure::print_heading(
        &info,
        &format!(", JetStream on {url}"),
        (sizes.mode, sizes.rounds),
        "",
        &sizes,
    )?;
    let mut bench = Bench {
        sizes,
        url,
        store,
        raw_client,
        raw_js,
        ns,
        report: Report::default(),
        existing_actors: Vec::new(),
        durability: "",
    };
    if wanted("seq") {
        bench.sequential().await?;
    }
    if wanted("concurrent") {
        bench.concurrent().await?;
    }
    if wanted("latest") {
        bench.latest().await?;
    }
    if ["replay", "snapshot", "conflict", "trace"]
        .iter()
        .any(|n| wanted(n))
    {
        let filled = bench.fill().await?;
        if wanted("replay") {
            bench.replay(&filled).await?;
        }
        if wanted("snapshot") || wanted("trace") {
            bench.snapshot(&filled).await?;
        }
        if wanted("conflict") {
            bench.conflicts(&filled).await?;
        }
        if wanted("trace") {
            bench.trace(&filled).await?;
        }
    }
    if wanted("durable") {
        bench.report = durable(bench.sizes.clone(), std::mem::take(&mut bench.report)).await?;
    }
    bench.raw_client.flush().await?;
    bench
        .report
        .print(&info.version, bench.sizes.mode, bench.sizes.rounds);
    Ok(())
}

/// Benchmarks 1–2 again, ours and raw, on a second server started with
/// `sync_interval: always` (every acknowledged write is on disk): what durability on a single
/// R1 server costs, next to the default server's figures of the same run.
async fn durable(sizes: Sizes, report: Report) -> BenchResult<Report> {
    let server = NatsServer::start_with(&ServerOptions::new().sync_always())?;
    let url = server.url();
    let ns = Namespace::new("bench")?;
    let store = JetStreamEventStore::connect(&url, ns.clone()).await?;
    let raw_client = async_nats::connect(&url).await?;
    let raw_js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(raw_client.clone());
    let mut bench = Bench {
        sizes,
        url,
        store,
        raw_client,
        raw_js,
        ns,
        report,
        existing_actors: Vec::new(),
        durability: " [sync_interval: always]",
    };
    bench.sequential().await?;
    bench.concurrent().await?;
    bench.raw_client.flush().await?;
    drop(server);
    Ok(bench.report)
}

fn main() -> BenchResult<()> {
    measure::main(Sizes::from_env, run)
}
