//! Benchmarks of [`NatsEventBus`] against raw `async-nats` doing the same NATS work, measured in
//! the same run on the same `nats-server` (started by the test harness). Two buses on two
//! connections act as two nodes, A and B; the baselines use two raw connections of their own.
//!
//! Every benchmark runs ours and the baseline (and a few diagnostic variants) once per round,
//! over several rounds, rotating which goes first (the machine is shared and noisy). It reports
//! the median over rounds of each variant, and as the ratio the median over rounds of
//! `baseline time ÷ our time` within a round (above 1: ours is faster). Next to each figure it
//! prints the client process's CPU per event (all threads — both nodes live in this process —
//! from `/proc/self/task/*/schedstat`; the server is another process).
//!
//! 1. `latency`: cross-node latency, one event at a time: `publish` on A, received by a
//!    subscription on B (one clock: same process), against raw client A publishing the same
//!    JSON with the same headers on a subject of the same kind and a raw subscriber on client B
//!    (diagnostic: raw + `serde_json` decode of the [`Event`]). p50, p99, p99.9 and max.
//! 2. `live`: throughput of `N` events published by A as fast as possible (`publish().await` in
//!    a loop; `try_publish` as a variant) until B's subscription has all of them (a queue of `N`,
//!    so nothing can overflow it), against raw client A publishing the same payloads with the
//!    same headers and a raw subscriber on B counting them (diagnostic: also decoding). Rates
//!    are of events *received*; order is checked, losses counted by the receiver and compared
//!    with the bus's own counters. Diagnostic variants mix one side of ours with one raw side
//!    (ours → raw subscriber; raw publisher → ours), and emulate the bus's receiving shape
//!    without its bookkeeping (a raw reader task handing messages through a channel to a
//!    receiver that decodes them), to tell which side
//!    and which step costs what.
//! 3. `durable`: a bus stream holding `N` events (raw pipelined JetStream publishes in the bus
//!    stream's format: same durable subject `aether.durable.<namespace>`, payload and headers as
//!    `publish_durable`), consumed by a new
//!    [`DurableSubscription`](aether_nats::DurableSubscription) (`DurableStart::Retained`,
//!    `recv` acknowledging the previous event) against a raw durable pull consumer (same filter,
//!    `AckPolicy::Explicit`, same `max_ack_pending` and `ack_wait`, `messages()`, one `ack` per
//!    message; diagnostic: also decoding).
//! 4. `publish`: `publish_durable` throughput, sequential and from many tasks, against raw
//!    JetStream publishes with the same headers, each awaiting its ack.
//!
//! Sizes: full by default (`cargo bench`); `AETHER_BENCH_QUICK=1` for a run under a minute;
//! without `--bench` (`cargo test --benches`) a tiny smoke run. Each size can be overridden by an
//! environment variable (`AETHER_BENCH_LATENCY` samples per round, `_LIVE`, `_DURABLE`
//! events, `_PUBLISH_SEQ`, `_PUBLISH_TASKS`, `_PUBLISH_PER_TASK`, `_ROUNDS`);
//! `AETHER_BENCH_VARIANTS=0,5` runs only those variants of each benchmark (to profile one side
//! alone; ratios against a variant that did not run print as NaN).
//! Arguments that do not start with `-` select benchmarks by name (`latency`, `live`, `durable`,
//! `publish`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use aether_core::{ActorId, Event, Namespace, Overflow, SubscribeOptions, Version};
use aether_nats::wire::{DURABLE_SUBJECT_PREFIX, ORIGIN_HEADER, SEQUENCE_HEADER, SUBJECT_PREFIX};
use aether_nats::{DurableConfig, DurableOptions, DurableStart, NatsBusMetrics, NatsEventBus};
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, stream::Stream};
use async_nats::{HeaderMap, Subject};
use futures::StreamExt;

#[path = "support/measure.rs"]
mod measure;
use measure::{
    BenchResult, BoxError, Meter, Report, Sample, Series, bench_event, env_or, fmt_rate, fmt_secs,
    fmt_throughput, median, percentile, rounds,
};

/// Raw publishes kept in flight while filling the bus stream.
const FILL_WINDOW: usize = 2048;
/// Longest wait for the next event before a run gives up (and reports what is missing).
const IDLE_LIMIT: Duration = Duration::from_secs(5);
/// How long a throughput run waits, once everything is published, for one more event.
const QUIET: Duration = Duration::from_secs(1);
/// The cross-node latency target (p99, loopback).
const LATENCY_P99_TARGET: f64 = 5e-3;
/// The origin header the raw publishers send: as long as a bus's (a UUID in hex).
const RAW_ORIGIN: &str = "0000000000007000800000000000beef";

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sizes {
    mode: &'static str,
    rounds: usize,
    latency: usize,
    live: u64,
    durable: u64,
    publish_seq: u64,
    publish_tasks: usize,
    publish_per_task: u64,
    /// Only these variants (by number, 0 = ours) run: for profiling one side alone.
    only: Option<Vec<usize>>,
}

impl Sizes {
    fn from_env(bench_mode: bool) -> Self {
        let quick = measure::quick();
        let base = if !bench_mode {
            Self {
                mode: "smoke",
                rounds: 1,
                latency: 30,
                live: 500,
                durable: 300,
                publish_seq: 10,
                publish_tasks: 4,
                publish_per_task: 5,
                only: None,
            }
        } else if quick {
            Self {
                mode: "quick",
                rounds: 3,
                latency: 500,
                live: 20_000,
                durable: 10_000,
                publish_seq: 300,
                publish_tasks: 64,
                publish_per_task: 20,
                only: None,
            }
        } else {
            Self {
                mode: "full",
                rounds: 5,
                latency: 2_000,
                live: 200_000,
                durable: 100_000,
                publish_seq: 2_000,
                publish_tasks: 64,
                publish_per_task: 200,
                only: None,
            }
        };
        Self {
            mode: base.mode,
            rounds: env_or("AETHER_BENCH_ROUNDS", base.rounds).max(1),
            latency: env_or("AETHER_BENCH_LATENCY", base.latency).max(1),
            live: env_or("AETHER_BENCH_LIVE", base.live).max(1),
            durable: env_or("AETHER_BENCH_DURABLE", base.durable).max(1),
            publish_seq: env_or("AETHER_BENCH_PUBLISH_SEQ", base.publish_seq).max(1),
            publish_tasks: env_or("AETHER_BENCH_PUBLISH_TASKS", base.publish_tasks).max(1),
            publish_per_task: env_or("AETHER_BENCH_PUBLISH_PER_TASK", base.publish_per_task).max(1),
            only: std::env::var("AETHER_BENCH_VARIANTS").ok().map(|list| {
                list.split(',')
                    .filter_map(|v| v.trim().parse().ok())
                    .collect()
            }),
        }
    }

    /// Whether `variant` runs (all do unless `AETHER_BENCH_VARIANTS` says otherwise).
    fn runs(&self, variant: usize) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.contains(&variant))
    }

    /// The variants among `0..count` that run.
    fn variants(&self, count: usize) -> Vec<usize> {
        (0..count).filter(|v| self.runs(*v)).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Events and raw messages
// ---------------------------------------------------------------------------------------------

/// Versions `1..=n` of one actor.
fn bench_events(actor_name: &str, n: u64) -> BenchResult<Vec<Event>> {
    let actor = ActorId::new(actor_name)?;
    Ok((1..=n).map(|v| bench_event(&actor, v)).collect())
}

/// The live subject of `namespace` (as `wire::subject`).
fn bus_subject(namespace: &str) -> Subject {
    Subject::from(format!("{SUBJECT_PREFIX}.{namespace}"))
}

/// The durable subject of `namespace`, captured by the bus stream (as `wire::durable_subject`).
fn durable_subject(namespace: &str) -> Subject {
    Subject::from(format!("{DURABLE_SUBJECT_PREFIX}.{namespace}"))
}

/// The headers of a live bus message (as `wire::live_headers`).
fn raw_live_headers(sequence: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ORIGIN_HEADER, RAW_ORIGIN);
    headers.insert(SEQUENCE_HEADER, sequence.to_string());
    headers
}

/// The headers `publish_durable` stores an event with: the message id is
/// `<namespace>:<event id>`, the namespace being what follows the durable subject's prefix.
fn raw_durable_headers(subject: &Subject, event: &Event) -> HeaderMap {
    let namespace = subject
        .as_str()
        .strip_prefix(DURABLE_SUBJECT_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert(ORIGIN_HEADER, RAW_ORIGIN);
    headers.insert(
        NATS_MESSAGE_ID,
        format!("{namespace}:{}", event.id).as_str(),
    );
    headers
}

/// Sends `event` to the bus stream in `publish_durable`'s format; the ack is left to the
/// caller.
async fn raw_send_durable(
    js: &jetstream::Context,
    subject: &Subject,
    event: &Event,
) -> BenchResult<PublishAckFuture> {
    let payload = serde_json::to_vec(event)?;
    Ok(js
        .publish_with_headers(
            subject.clone(),
            raw_durable_headers(subject, event),
            payload.into(),
        )
        .await?)
}

/// What one throughput run delivered, and (for ours) what the buses counted meanwhile.
#[derive(Debug, Clone, Default)]
struct Delivered {
    /// Events the receiver got.
    received: u64,
    /// Events it should have got (fewer than sent when `try_publish` dropped some).
    expected: u64,
    /// Versions skipped between two received events (where the receiver decodes).
    gaps: u64,
    /// Versions before the first received event (lost before anything arrived).
    leading: u64,
    /// Counter changes on A and B during the run.
    counters: Counters,
    /// Slow-consumer notices on the raw receiving connection during the run (raw only).
    raw_slow_consumer: u64,
}

/// The changes of the counters a throughput run reports.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    sent: u64,
    send_dropped: u64,
    send_failed: u64,
    received: u64,
    lost: u64,
    dropped: u64,
    slow_consumer: u64,
}

impl Counters {
    fn between(
        a0: &NatsBusMetrics,
        a1: &NatsBusMetrics,
        b0: &NatsBusMetrics,
        b1: &NatsBusMetrics,
    ) -> Self {
        Self {
            sent: a1.sent - a0.sent,
            send_dropped: a1.send_dropped - a0.send_dropped,
            send_failed: a1.send_failed - a0.send_failed,
            received: b1.received - b0.received,
            lost: b1.lost - b0.lost,
            dropped: b1.dropped - b0.dropped,
            slow_consumer: b1.slow_consumer - b0.slow_consumer,
        }
    }

    fn add(&mut self, other: &Self) {
        self.sent += other.sent;
        self.send_dropped += other.send_dropped;
        self.send_failed += other.send_failed;
        self.received += other.received;
        self.lost += other.lost;
        self.dropped += other.dropped;
        self.slow_consumer += other.slow_consumer;
    }
}

/// Sums the runs of one variant: "received/expected", and the counters.
fn summarize(runs: &[Delivered]) -> (u64, u64, Counters, u64, (u64, u64)) {
    let mut total = Counters::default();
    let (mut received, mut expected, mut raw_slow, mut gaps, mut leading) = (0, 0, 0, 0, 0);
    for run in runs {
        received += run.received;
        gaps += run.gaps;
        leading += run.leading;
        expected += run.expected;
        raw_slow += run.raw_slow_consumer;
        total.add(&run.counters);
    }
    (received, expected, total, raw_slow, (gaps, leading))
}

/// Who sends in a live throughput variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    /// Node A's `publish().await`.
    Publish,
    /// Node A's `try_publish`.
    TryPublish,
    /// Raw client A: the same payload, subject and headers.
    Raw,
}

/// Who receives in a live throughput variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rx {
    /// A subscription on node B.
    Bus,
    /// A raw subscriber on client B, counting.
    Raw,
    /// A raw subscriber on client B, decoding each payload into an [`Event`].
    RawDecode,
    /// A raw subscriber on client B read by a task of its own that hands each message over
    /// through a channel, where the receiver decodes it: the bus's shape without its
    /// bookkeeping.
    RawHop,
}

/// The live throughput variants: ours, the baseline, then diagnostics (a variant mixing one
/// side of ours with one raw side tells which side costs what).
const LIVE: [(Tx, Rx, &str); 7] = [
    (Tx::Publish, Rx::Bus, "ours publish → ours"),
    (Tx::Raw, Rx::Raw, "raw → raw"),
    (Tx::Raw, Rx::RawDecode, "raw → raw+decode"),
    (Tx::TryPublish, Rx::Bus, "ours try_publish → ours"),
    (Tx::Publish, Rx::Raw, "ours publish → raw"),
    (Tx::Raw, Rx::Bus, "raw → ours"),
    (Tx::Raw, Rx::RawHop, "raw → reader task → channel → decode"),
];

/// The version of the event in `payload`, decoded as the bus decodes it. An undecodable
/// payload would be a bug of the benchmark: version 0, which the order check reports.
fn decoded_version(payload: &[u8]) -> Version {
    serde_json::from_slice::<Event>(payload).map_or(0, |e| e.version)
}

/// The receiving end of a live throughput run.
enum Receiver {
    Bus(aether_core::Subscription),
    /// With `true`, each payload is decoded.
    Raw(async_nats::Subscriber, bool),
    /// The channel from a reader task (aborted when this is dropped).
    Hop(
        tokio::sync::mpsc::Receiver<async_nats::Message>,
        tokio::task::AbortHandle,
    ),
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Self::Hop(_, reader) = self {
            reader.abort();
        }
    }
}

impl Receiver {
    /// The next event: `Some(Some(version))` where the version is known (decoded),
    /// `Some(None)` where it is not, `None` when the subscription ended.
    async fn next(&mut self) -> Option<Option<Version>> {
        match self {
            Self::Bus(sub) => sub.recv().await.map(|event| Some(event.version)),
            Self::Raw(sub, decode) => {
                let message = sub.next().await?;
                if *decode {
                    Some(Some(decoded_version(&message.payload)))
                } else {
                    Some(None)
                }
            }
            Self::Hop(messages, _) => {
                let message = messages.recv().await?;
                Some(Some(decoded_version(&message.payload)))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmarks
// ---------------------------------------------------------------------------------------------

/// Everything the benchmarks share.
struct Bench {
    sizes: Sizes,
    /// Node A (publishes) and node B (subscribes), each on its own connection.
    node_a: NatsEventBus,
    node_b: NatsEventBus,
    /// The baseline's two connections, and B's slow-consumer notices.
    raw_a: async_nats::Client,
    raw_b: async_nats::Client,
    raw_b_slow: Arc<AtomicU64>,
    /// JetStream contexts on the raw connections (same timeout as the bus's).
    raw_js_a: jetstream::Context,
    raw_js_b: jetstream::Context,
    durable: DurableConfig,
    report: Report,
}

impl Bench {
    /// Benchmark 1: cross-node latency, one event at a time.
    async fn latency(&mut self) -> BenchResult<()> {
        let n = self.sizes.latency;
        println!("\n[1] cross-node latency: {n} events one at a time per round and variant");
        let ns = Namespace::new("bench.latency")?;
        let raw_subject = bus_subject("bench.latency-raw");
        let mut ours_sub = self.node_b.subscribe(&ns);
        self.node_b.flush().await?;
        let mut raw_sub = self.raw_b.subscribe(raw_subject.clone()).await?;
        self.raw_b.flush().await?;
        // Warm-up, not timed.
        let this = &*self;
        let mut seq = 0u64;
        let mut latencies: Vec<Vec<Vec<f64>>> = vec![Vec::new(); 3];
        let mut run = async |variant: usize, warm: bool| -> BenchResult<Sample> {
            let count = if warm { 200.min(n as u64) } else { n as u64 };
            let events = bench_events("latency", count)?;
            let mut samples = Vec::with_capacity(events.len());
            let meter = Meter::start();
            for event in events {
                let version = event.version;
                let start = Instant::now();
                let got = match variant {
                    0 => {
                        this.node_a.publish(&ns, event).await;
                        let got = tokio::time::timeout(IDLE_LIMIT, ours_sub.recv())
                            .await
                            .map_err(|_| "ours: an event did not arrive within 5 s")?
                            .ok_or("ours: the subscription ended")?;
                        samples.push(start.elapsed().as_secs_f64());
                        got.version
                    }
                    _ => {
                        seq += 1;
                        let payload = serde_json::to_vec(&event)?;
                        this.raw_a
                            .publish_with_headers(
                                raw_subject.clone(),
                                raw_live_headers(seq),
                                payload.into(),
                            )
                            .await?;
                        let message = tokio::time::timeout(IDLE_LIMIT, raw_sub.next())
                            .await
                            .map_err(|_| "raw: a message did not arrive within 5 s")?
                            .ok_or("raw: the subscription ended")?;
                        if variant == 2 {
                            let decoded: Event = serde_json::from_slice(&message.payload)?;
                            samples.push(start.elapsed().as_secs_f64());
                            decoded.version
                        } else {
                            samples.push(start.elapsed().as_secs_f64());
                            version
                        }
                    }
                };
                if got != version {
                    return Err(format!("expected version {version}, got {got}").into());
                }
            }
            let sample = meter.stop();
            if !warm {
                latencies[variant].push(samples);
            }
            Ok(sample)
        };
        for variant in self.sizes.variants(3) {
            run(variant, true).await?;
        }
        let series = rounds(
            this.sizes.rounds,
            3,
            |v| this.sizes.runs(v),
            async |variant, _| run(variant, false).await,
        )
        .await?;
        let pooled: Vec<Vec<f64>> = latencies.iter().map(|r| r.concat()).collect();
        let per_round_p = |variant: usize, p: f64| -> Vec<f64> {
            latencies[variant]
                .iter()
                .map(|r| percentile(r, p))
                .collect()
        };
        // Paired per round: baseline percentile ÷ ours.
        let paired = |base: usize, p: f64| -> f64 {
            let ours = per_round_p(0, p);
            let raw = per_round_p(base, p);
            median(
                &ours
                    .iter()
                    .zip(&raw)
                    .map(|(o, r)| r / o)
                    .collect::<Vec<_>>(),
            )
        };
        let show = |variant: usize| {
            let v = &pooled[variant];
            format!(
                "p50 {} / p99 {} / p99.9 {} / max {} (CPU {}/ev)",
                fmt_secs(percentile(v, 50.0)),
                fmt_secs(percentile(v, 99.0)),
                fmt_secs(percentile(v, 99.9)),
                fmt_secs(percentile(v, 100.0)),
                fmt_secs(series[variant].cpu() / n as f64),
            )
        };
        for (variant, label) in [(0, "ours"), (1, "raw"), (2, "raw+decode")] {
            println!(
                "  {label:<11} p50 per round: {}",
                per_round_p(variant, 50.0)
                    .iter()
                    .map(|s| fmt_secs(*s))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let ours_p99 = percentile(&pooled[0], 99.0);
        let total = pooled[0].len();
        let (ours_text, raw_text, decode_text) = (show(0), show(1), show(2));
        let (p50_ratio, p99_ratio) = (paired(1, 50.0), paired(1, 99.0));
        let (decode_p50, decode_p99) = (paired(2, 50.0), paired(2, 99.0));
        self.report.push(
            format!(
                "1. cross-node latency, publish on A → recv on B ({total} events, ratio of p50)"
            ),
            ours_text.clone(),
            raw_text,
            p50_ratio,
            Some((
                format!("p99 < {}", fmt_secs(LATENCY_P99_TARGET)),
                ours_p99 < LATENCY_P99_TARGET,
            )),
        );
        self.report.push(
            "1'. the same vs a raw subscriber that also decodes the Event (ratio of p50)".into(),
            ours_text,
            format!("{decode_text} (raw + serde_json)"),
            decode_p50,
            None,
        );
        self.report.note(format!(
            "latency: paired ratio of p99 {p99_ratio:.2}× against raw, {decode_p99:.2}× against \
             raw + decode"
        ));
        Ok(())
    }

    /// Benchmark 2: live throughput from A to B.
    async fn live(&mut self) -> BenchResult<()> {
        let n = self.sizes.live;
        println!("\n[2] live throughput: {n} events from A to B per round and variant");
        self.throughput("live", n, LIVE.len(), "2").await
    }

    /// Runs the first `variants` of [`LIVE`] (ours, the baseline, then the diagnostics).
    async fn throughput(
        &mut self,
        tag: &str,
        n: u64,
        variants: usize,
        number: &str,
    ) -> BenchResult<()> {
        // Warm-up, not timed.
        for variant in self.sizes.variants(variants) {
            self.live_run(&format!("{tag}-warm"), variant, n.min(5_000))
                .await?;
        }
        let this = &*self;
        let mut runs: Vec<Vec<Delivered>> = vec![Vec::new(); variants];
        let series = rounds(
            this.sizes.rounds,
            variants,
            |v| this.sizes.runs(v),
            async |variant, round| {
                let (sample, delivered) =
                    this.live_run(&format!("{tag}-{round}"), variant, n).await?;
                runs[variant].push(delivered);
                Ok(sample)
            },
        )
        .await?;
        // Rates of events *received* (fewer than `n` where some were dropped or lost): each
        // run's times are scaled to what `n` events would have taken at its pace.
        let series: Vec<Series> = series
            .into_iter()
            .zip(&runs)
            .map(|(series, runs)| {
                Series(
                    series
                        .0
                        .iter()
                        .zip(runs)
                        .map(|(sample, run)| {
                            let scale = n as f64 / run.received.max(1) as f64;
                            Sample {
                                wall: sample.wall * scale,
                                cpu: sample.cpu * scale,
                            }
                        })
                        .collect(),
                )
            })
            .collect();
        let ops = n as f64;
        for (variant, (_, _, label)) in LIVE.iter().enumerate().take(variants) {
            println!("  {label:<24} {}", series[variant].list_rates(ops, "ev"));
        }
        let (ours, raw) = (&series[0], &series[1]);
        self.report.row(
            format!("{number}. live throughput A → B, publish().await × {n} (events received/s)"),
            fmt_throughput(ours, ops, "ev"),
            fmt_throughput(raw, ops, "ev"),
            ours.paired(raw),
            Some(0.8),
        );
        if variants > 2 {
            let decode = &series[2];
            self.report.row(
                format!("{number}'. the same vs a raw subscriber that also decodes ({n})"),
                fmt_throughput(ours, ops, "ev"),
                format!("{} (raw + serde_json)", fmt_throughput(decode, ops, "ev")),
                ours.paired(decode),
                None,
            );
        }
        if variants > 3 {
            let try_series = &series[3];
            self.report.row(
                format!("{number}''. live throughput, try_publish × {n}"),
                fmt_throughput(try_series, ops, "ev"),
                fmt_throughput(raw, ops, "ev"),
                try_series.paired(raw),
                None,
            );
        }
        if variants > 5 {
            let (send, recv, decode) = (&series[4], &series[5], &series[2]);
            self.report.row(
                format!(
                    "{number}d. sending side only: ours publish on A → raw subscriber on B ({n})"
                ),
                fmt_throughput(send, ops, "ev"),
                format!("{} (raw → raw)", fmt_throughput(raw, ops, "ev")),
                send.paired(raw),
                None,
            );
            self.report.row(
                format!(
                    "{number}e. receiving side only: raw publisher on A → ours subscription on B ({n})"
                ),
                fmt_throughput(recv, ops, "ev"),
                format!("{} (raw → raw + decode)", fmt_throughput(decode, ops, "ev")),
                recv.paired(decode),
                None,
            );
        }
        if variants > 6 {
            let (recv, hop) = (&series[5], &series[6]);
            self.report.row(
                format!(
                    "{number}f. receiving side: ours vs a raw reader task → channel → decoding receiver \
                     (the bus's shape without its bookkeeping) ({n})"
                ),
                fmt_throughput(recv, ops, "ev"),
                format!(
                    "{} (raw → reader task → channel → decode)",
                    fmt_throughput(hop, ops, "ev")
                ),
                recv.paired(hop),
                None,
            );
        }
        for (variant, &(tx, rx, label)) in LIVE.iter().enumerate().take(variants) {
            if runs[variant].is_empty() {
                continue;
            }
            let (received, expected, c, raw_slow, (gaps, leading)) = summarize(&runs[variant]);
            let sent = n * runs[variant].len() as u64;
            let mut text = format!(
                "{tag} {label}: {sent} published, {expected} to receive, {received} received"
            );
            if rx != Rx::Raw {
                text += &format!(
                    " ({gaps} skipped between received events, {leading} before the first)"
                );
            }
            if tx != Tx::Raw {
                text += &format!(
                    "; A: sent {}, send_dropped {}, send_failed {}",
                    c.sent, c.send_dropped, c.send_failed
                );
            }
            if rx == Rx::Bus {
                text += &format!(
                    "; B: received {}, lost {}, dropped {}, slow_consumer {}",
                    c.received, c.lost, c.dropped, c.slow_consumer
                );
            } else {
                text += &format!("; raw B slow-consumer notices {raw_slow}");
            }
            self.report.note(text);
        }
        Ok(())
    }

    /// One throughput run of [`LIVE`]`[variant]` on namespace `bench.<tag>-<variant>` (or its
    /// subject). Timed from the first publish to the arrival of the last event.
    async fn live_run(
        &self,
        tag: &str,
        variant: usize,
        n: u64,
    ) -> BenchResult<(Sample, Delivered)> {
        let (tx, rx, _) = LIVE[variant];
        let name = format!("bench.{tag}-{variant}");
        let ns = Namespace::new(name.as_str())?;
        let subject = bus_subject(&name);
        let events = bench_events("live", n)?;
        let mut receiver = match rx {
            Rx::Bus => {
                // A queue for every event: nothing can overflow it.
                let sub = self.node_b.subscribe_with(
                    &ns,
                    SubscribeOptions::new()
                        .queue_capacity(n as usize)
                        .overflow(Overflow::Block {
                            timeout: IDLE_LIMIT,
                        }),
                );
                self.node_b.flush().await?;
                Receiver::Bus(sub)
            }
            Rx::Raw | Rx::RawDecode => {
                let sub = self.raw_b.subscribe(subject.clone()).await?;
                self.raw_b.flush().await?;
                Receiver::Raw(sub, rx == Rx::RawDecode)
            }
            Rx::RawHop => {
                let mut sub = self.raw_b.subscribe(subject.clone()).await?;
                self.raw_b.flush().await?;
                let (sender, events) = tokio::sync::mpsc::channel(n as usize);
                let reader = tokio::spawn(async move {
                    while let Some(message) = sub.next().await {
                        if sender.send(message).await.is_err() {
                            break;
                        }
                    }
                });
                Receiver::Hop(events, reader.abort_handle())
            }
        };
        let (a0, b0) = (self.node_a.metrics(), self.node_b.metrics());
        let slow0 = self.raw_b_slow.load(Relaxed);
        let expected = Arc::new(AtomicU64::new(n));
        let meter = Meter::start();
        let start = Instant::now();
        let publisher = {
            let (bus, client, expected) =
                (self.node_a.clone(), self.raw_a.clone(), expected.clone());
            tokio::spawn(async move {
                match tx {
                    Tx::Publish => {
                        for event in events {
                            bus.publish(&ns, event).await;
                        }
                    }
                    Tx::TryPublish => {
                        let dropped0 = bus.metrics().send_dropped;
                        for event in events {
                            bus.try_publish(&ns, event);
                        }
                        let dropped = bus.metrics().send_dropped - dropped0;
                        expected.store(n - dropped, Relaxed);
                    }
                    Tx::Raw => {
                        for (seq, event) in (1..).zip(events) {
                            let payload = serde_json::to_vec(&event)?;
                            client
                                .publish_with_headers(
                                    subject.clone(),
                                    raw_live_headers(seq),
                                    payload.into(),
                                )
                                .await?;
                        }
                    }
                }
                Ok::<_, BoxError>(())
            })
        };
        let mut received = 0u64;
        let mut last = start;
        let (mut previous, mut gaps, mut leading) = (0, 0, 0);
        loop {
            if received >= expected.load(Relaxed) {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(100), receiver.next()).await {
                Ok(Some(version)) => {
                    last = Instant::now();
                    received += 1;
                    if let Some(version) = version {
                        // In order, no duplicates; a gap is a loss (counted, and compared with
                        // the bus's own count in the report).
                        if version <= previous {
                            return Err(format!("version {version} after {previous}").into());
                        }
                        if previous == 0 {
                            leading += version - 1;
                        } else {
                            gaps += version - previous - 1;
                        }
                        previous = version;
                    }
                }
                Ok(None) => return Err("the subscription ended".into()),
                Err(_) if publisher.is_finished() => {
                    let lost = if rx == Rx::Bus {
                        self.node_b.metrics().lost - b0.lost
                    } else {
                        0
                    };
                    if received + lost >= expected.load(Relaxed) || last.elapsed() > QUIET {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        let sample = meter.stop_at(last);
        publisher.await??;
        self.node_a.flush().await?;
        if let Receiver::Raw(sub, _) = &mut receiver {
            sub.unsubscribe().await?;
        }
        let counters = Counters::between(&a0, &self.node_a.metrics(), &b0, &self.node_b.metrics());
        Ok((
            sample,
            Delivered {
                received,
                expected: expected.load(Relaxed),
                gaps,
                leading,
                counters,
                raw_slow_consumer: self.raw_b_slow.load(Relaxed) - slow0,
            },
        ))
    }

    /// Creates the bus stream the bus's way (its first durable publish) and returns it, seen
    /// from the raw B connection.
    async fn ensure_bus_stream(&self) -> BenchResult<Stream> {
        let ns = Namespace::new("bench.warm")?;
        self.node_a
            .publish_durable(&ns, bench_event(&ActorId::new("warm")?, 1))
            .await?;
        Ok(self.raw_js_b.get_stream(&self.durable.stream_name).await?)
    }

    /// Benchmark 3: draining a backlog of the bus stream.
    async fn durable(&mut self) -> BenchResult<()> {
        let n = self.sizes.durable;
        let stream = self.ensure_bus_stream().await?;
        let ns = Namespace::new("bench.durable")?;
        let subject = durable_subject(ns.as_str());
        // Fill, in the bus stream's format.
        let events = bench_events("durable", n)?;
        println!("\n[3] durable: filling the bus stream with {n} events of {ns}");
        let start = Instant::now();
        let mut window = std::collections::VecDeque::with_capacity(FILL_WINDOW);
        for event in &events {
            window.push_back(raw_send_durable(&self.raw_js_a, &subject, event).await?);
            if window.len() >= FILL_WINDOW {
                window.pop_front().expect("full window").await?;
            }
        }
        while let Some(ack) = window.pop_front() {
            ack.await?;
        }
        drop(events);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "  filled in {} ({})",
            fmt_secs(secs),
            fmt_rate(n as f64 / secs, "msgs")
        );
        println!("[3] durable drain: {n} events per round and variant, from a new consumer");
        // Warm-up, not timed: a first read of the whole backlog.
        for variant in self.sizes.variants(3) {
            self.durable_run(&stream, &ns, "warm", variant, n).await?;
        }
        let this = &*self;
        let series = rounds(
            this.sizes.rounds,
            3,
            |v| this.sizes.runs(v),
            async |variant, round| {
                this.durable_run(&stream, &ns, &round.to_string(), variant, n)
                    .await
            },
        )
        .await?;
        let ops = n as f64;
        let (ours, raw, decode) = (&series[0], &series[1], &series[2]);
        println!("  ours:       {}", ours.list_rates(ops, "ev"));
        println!("  raw:        {}", raw.list_rates(ops, "ev"));
        println!("  raw+decode: {}", decode.list_rates(ops, "ev"));
        self.report.row(
            format!("3. durable drain of {n} stored events, DurableSubscription::recv"),
            fmt_throughput(ours, ops, "ev"),
            format!(
                "{} (durable pull consumer, ack each)",
                fmt_throughput(raw, ops, "ev")
            ),
            ours.paired(raw),
            Some(0.8),
        );
        self.report.row(
            format!("3'. the same vs a raw consumer that also decodes ({n})"),
            fmt_throughput(ours, ops, "ev"),
            format!("{} (+ serde_json)", fmt_throughput(decode, ops, "ev")),
            ours.paired(decode),
            None,
        );
        Ok(())
    }

    /// One drain of the `n` events of `ns` by a new consumer: 0 ours, 1 raw, 2 raw + decode.
    /// The consumer's creation is timed (one request for raw; for ours get, create, and two
    /// consumer-info requests: its filter check and the rewind check).
    async fn durable_run(
        &self,
        stream: &Stream,
        ns: &Namespace,
        tag: &str,
        variant: usize,
        n: u64,
    ) -> BenchResult<Sample> {
        let name = format!("bench-{tag}-{variant}");
        let timeout = |what: &'static str| move |_| format!("{what}: no event within 5 s");
        if variant == 0 {
            let meter = Meter::start();
            let mut sub = self
                .node_b
                .subscribe_durable(
                    &name,
                    ns,
                    DurableOptions::new().start(DurableStart::Retained),
                )
                .await?;
            for version in 1..=n {
                let event = tokio::time::timeout(IDLE_LIMIT, sub.recv())
                    .await
                    .map_err(timeout("ours"))??
                    .ok_or("ours: the durable subscription was deleted")?;
                if event.version != version {
                    return Err(format!("ours: version {} for {version}", event.version).into());
                }
            }
            let sample = meter.stop();
            sub.ack().await?;
            let metrics = sub.metrics();
            if metrics.received != n || metrics.redelivered != 0 || metrics.acknowledged != n {
                return Err(format!("ours: unexpected durable metrics {metrics:?}").into());
            }
            sub.close().await?;
            self.node_b.delete_durable(&name).await?;
            Ok(sample)
        } else {
            let meter = Meter::start();
            let consumer = stream
                .create_consumer(pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: durable_subject(ns.as_str()).to_string(),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: self.durable.ack_wait,
                    max_ack_pending: i64::try_from(self.durable.max_ack_pending)?,
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            for version in 1..=n {
                let message = tokio::time::timeout(IDLE_LIMIT, messages.next())
                    .await
                    .map_err(timeout("raw"))?
                    .ok_or("raw: the consumer ended")??;
                if variant == 2 {
                    let event: Event = serde_json::from_slice(&message.payload)?;
                    if event.version != version {
                        return Err(format!("raw: version {} for {version}", event.version).into());
                    }
                }
                message.ack().await?;
            }
            let sample = meter.stop();
            drop(messages);
            stream.delete_consumer(&name).await?;
            Ok(sample)
        }
    }

    /// Benchmark 4: `publish_durable` throughput, sequential and from many tasks.
    async fn publish(&mut self) -> BenchResult<()> {
        self.ensure_bus_stream().await?;
        let (seq, tasks, per_task) = (
            self.sizes.publish_seq,
            self.sizes.publish_tasks,
            self.sizes.publish_per_task,
        );
        println!(
            "\n[4] publish_durable: {seq} sequential, and {tasks} tasks × {per_task}, per round \
             and variant"
        );
        // Warm-up, not timed.
        for variant in self.sizes.variants(2) {
            self.publish_run("warm", variant, 1, seq.min(50)).await?;
        }
        let this = &*self;
        let series_seq = rounds(
            this.sizes.rounds,
            2,
            |v| this.sizes.runs(v),
            async |variant, round| {
                this.publish_run(&format!("seq-{round}"), variant, 1, seq)
                    .await
            },
        )
        .await?;
        let series_par = rounds(
            this.sizes.rounds,
            2,
            |v| this.sizes.runs(v),
            async |variant, round| {
                this.publish_run(&format!("par-{round}"), variant, tasks, per_task)
                    .await
            },
        )
        .await?;
        for (label, series, ops) in [
            ("sequential", &series_seq, seq as f64),
            ("concurrent", &series_par, (tasks as u64 * per_task) as f64),
        ] {
            println!("  {label} ours: {}", series[0].list_rates(ops, "ev"));
            println!("  {label} raw:  {}", series[1].list_rates(ops, "ev"));
        }
        let ops = seq as f64;
        self.report.row(
            format!("4. publish_durable × {seq}, sequential"),
            fmt_throughput(&series_seq[0], ops, "ev"),
            format!(
                "{} (JetStream publish, ack awaited)",
                fmt_throughput(&series_seq[1], ops, "ev")
            ),
            series_seq[0].paired(&series_seq[1]),
            None,
        );
        let ops = (tasks as u64 * per_task) as f64;
        self.report.row(
            format!("4'. publish_durable, {tasks} tasks × {per_task}"),
            fmt_throughput(&series_par[0], ops, "ev"),
            format!(
                "{} (the same per task)",
                fmt_throughput(&series_par[1], ops, "ev")
            ),
            series_par[0].paired(&series_par[1]),
            None,
        );
        Ok(())
    }

    /// `tasks` tasks each publishing `per_task` events durably and awaiting each ack: 0 ours
    /// (`publish_durable`), 1 raw (JetStream publish with the same subject, payload and
    /// headers).
    async fn publish_run(
        &self,
        tag: &str,
        variant: usize,
        tasks: usize,
        per_task: u64,
    ) -> BenchResult<Sample> {
        let batches = (0..tasks)
            .map(|t| bench_events(&format!("pub-{t}"), per_task))
            .collect::<BenchResult<Vec<_>>>()?;
        let ns = Namespace::new(format!("bench.pub-{tag}-{variant}"))?;
        let subject = durable_subject(ns.as_str());
        let meter = Meter::start();
        let mut set = tokio::task::JoinSet::new();
        for events in batches {
            let (bus, js, ns, subject) = (
                self.node_a.clone(),
                self.raw_js_a.clone(),
                ns.clone(),
                subject.clone(),
            );
            set.spawn(async move {
                for event in events {
                    if variant == 0 {
                        bus.publish_durable(&ns, event).await?;
                    } else {
                        let ack = raw_send_durable(&js, &subject, &event).await?.await?;
                        if ack.duplicate {
                            return Err("raw: a duplicate".into());
                        }
                    }
                }
                Ok::<_, BoxError>(())
            });
        }
        while let Some(done) = set.join_next().await {
            done??;
        }
        Ok(meter.stop())
    }
}

async fn run(url: String, sizes: Sizes, filters: Vec<String>) -> BenchResult<()> {
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let mut config = aether_nats::NatsBusConfig::default();
    config.connect_timeout = Duration::from_secs(10);
    let durable = config.durable.clone();
    let node_a = NatsEventBus::connect_with(&url, config.clone()).await?;
    let node_b = NatsEventBus::connect_with(&url, config.clone()).await?;
    let raw_a = async_nats::ConnectOptions::new()
        .subscription_capacity(config.subscription_capacity)
        .connect(url.as_str())
        .await?;
    let raw_b_slow = Arc::new(AtomicU64::new(0));
    let slow = raw_b_slow.clone();
    let raw_b = async_nats::ConnectOptions::new()
        .subscription_capacity(config.subscription_capacity)
        .event_callback(move |event| {
            let slow = slow.clone();
            async move {
                if matches!(event, async_nats::Event::SlowConsumer(_)) {
                    slow.fetch_add(1, Relaxed);
                }
            }
        })
        .connect(url.as_str())
        .await?;
    let js = |client: &async_nats::Client| {
        jetstream::ContextBuilder::new()
            .timeout(durable.request_timeout)
            .build(client.clone())
    };
    let (raw_js_a, raw_js_b) = (js(&raw_a), js(&raw_b));
    let info = raw_a.server_info();
    measure::print_heading(
        &info,
        &format!(" on {url}"),
        (sizes.mode, sizes.rounds),
        &format!("; live headers: {ORIGIN_HEADER} + {SEQUENCE_HEADER}"),
        &sizes,
    )?;
    let mut bench = Bench {
        sizes,
        node_a,
        node_b,
        raw_a,
        raw_b,
        raw_b_slow,
        raw_js_a,
        raw_js_b,
        durable,
        report: Report::default(),
    };
    if wanted("latency") {
        bench.latency().await?;
    }
    if wanted("live") {
        bench.live().await?;
    }
    if wanted("durable") {
        bench.durable().await?;
    }
    if wanted("publish") {
        bench.publish().await?;
    }
    bench
        .report
        .print(&info.version, bench.sizes.mode, bench.sizes.rounds);
    Ok(())
}

fn main() -> BenchResult<()> {
    measure::main(Sizes::from_env, run)
}
