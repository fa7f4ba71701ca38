//! `aether bench store|bus|actors`: what Aether costs on your NATS, measured in the same run
//! as raw NATS (or the raw store) doing the same work, so the ratio says what the library
//! adds, not how fast the server is. A smaller, user-facing version of the benchmarks in
//! `crates/aether-nats/benches` and `crates/aether-actor/benches/jetstream_actors.rs`:
//!
//! | bench | ours | the same-run baseline |
//! |---|---|---|
//! | `store` | `JetStreamEventStore::save_event`, one task per actor | raw JetStream publishes of the same JSON with `Nats-Expected-Last-Subject-Sequence`, one task per subject |
//! | `bus` | `NatsEventBus::publish` → a subscriber on another bus | raw core-NATS publish → subscriber of the same bytes |
//! | `actors` | actors handling commands that persist one event each | `save_event` of the same events from as many tasks |
//!
//! A run has `--rounds` rounds (default 3); each runs both sides once, alternating which goes
//! first, on fresh actors and subjects. The ratio is the median of the rounds' ratios
//! (`raw time ÷ our time` for the same work: above 1, ours is faster), as in the repository's
//! benchmarks. Each run creates its own namespace and streams (`aether-bench-…`) and deletes
//! them after; the raw baselines publish below `aether.bench.`. So it needs the `node` role
//! of `docs/permissions.md`: [`ROLE`] says so when the server refuses a subject.

use std::time::{Duration, Instant};

use aether_actor::{Actor, ActorConfig, Actors, Decision};
use aether_core::{ActorId, Event, EventStore, Namespace, SubscribeOptions};
use aether_nats::{JetStreamConfig, JetStreamEventStore, NatsBusConfig, NatsEventBus, naming};
use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::args::BenchCommand;
use crate::connect::Nats;
use crate::error::CliError;
use crate::output;

/// What a refusal says: which role the command needs.
pub(crate) const ROLE: &str = "`aether bench` creates streams and writes events: run it with a \
     node's credentials (the `node` role of docs/permissions.md), not as `cli`";

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    /// Operations per side and round (rounded up to a multiple of `concurrency`).
    pub(crate) count: u64,
    /// Tasks (actors, subjects, publishers) at once.
    pub(crate) concurrency: u64,
    /// Rounds.
    pub(crate) rounds: u64,
    /// How long the bus benchmark waits for the next delivery before counting the rest as
    /// lost.
    pub(crate) patience: Duration,
    /// No progress bars.
    pub(crate) quiet: bool,
}

impl Sizes {
    /// Operations per task.
    fn per_task(self) -> u64 {
        self.count.div_ceil(self.concurrency)
    }

    /// Operations per side and round.
    fn total(self) -> u64 {
        self.per_task() * self.concurrency
    }
}

/// One side's measurement over all rounds.
#[derive(Debug, Serialize)]
struct Side {
    what: &'static str,
    operations: u64,
    seconds: f64,
    ops_per_sec: f64,
    /// Events not delivered (bus only).
    #[serde(skip_serializing_if = "Option::is_none")]
    lost: Option<u64>,
}

/// One side of one round.
#[derive(Debug, Clone, Copy)]
struct Measure {
    elapsed: Duration,
    lost: Option<u64>,
}

fn side(what: &'static str, operations: u64, measures: &[Measure]) -> Side {
    let seconds = measures
        .iter()
        .map(|m| m.elapsed.as_secs_f64())
        .sum::<f64>()
        .max(1e-9);
    let lost = measures
        .iter()
        .map(|m| m.lost)
        .try_fold(0, |sum, lost| lost.map(|l| sum + l));
    Side {
        what,
        operations,
        seconds,
        ops_per_sec: operations as f64 / seconds,
        lost,
    }
}

/// What the command prints.
#[derive(Debug, Serialize)]
struct Report {
    bench: &'static str,
    server: String,
    concurrency: u64,
    rounds: u64,
    ours: Side,
    raw: Side,
    /// Per round, `raw time ÷ our time` for the same work.
    round_ratios: Vec<f64>,
    /// The median of `round_ratios`: above 1, ours is faster.
    ratio: f64,
}

/// What a run works on.
struct Bench<'a> {
    nats: &'a Nats,
    what: BenchCommand,
    namespace: Namespace,
    raw_stream: String,
    /// Where the raw baselines publish: below `aether.bench.`, which the `node` role this
    /// command needs may use (docs/permissions.md).
    raw_subject: String,
    sizes: Sizes,
    store: Option<JetStreamEventStore>,
    ledgers: Option<Actors<Ledger, JetStreamEventStore>>,
}

/// Runs `aether bench <what>`.
pub(crate) async fn run(
    nats: &Nats,
    json: bool,
    what: BenchCommand,
    sizes: Sizes,
) -> Result<(), CliError> {
    let count = sizes.count.max(1);
    let sizes = Sizes {
        count,
        concurrency: sizes.concurrency.clamp(1, count),
        rounds: sizes.rounds.max(1),
        patience: sizes.patience,
        quiet: sizes.quiet || json,
    };
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let mut bench = Bench {
        nats,
        what,
        namespace: super::namespace(&format!("aether-bench-{suffix}"))?,
        raw_stream: format!("aether-bench-raw-{suffix}"),
        raw_subject: format!("aether.bench.{suffix}"),
        sizes,
        store: None,
        ledgers: None,
    };
    // A refused subject ends the measuring at once, and what was created is still deleted.
    let result = nats.guard(ROLE, bench.measure()).await;
    if let Some(ledgers) = bench.ledgers.take() {
        ledgers.shutdown().await;
    }
    clean_up(nats, &bench.namespace, &bench.raw_stream).await;
    let (ours, raw) = result?;
    let mut round_ratios: Vec<f64> = ours
        .iter()
        .zip(&raw)
        .map(|(o, r)| r.elapsed.as_secs_f64() / o.elapsed.as_secs_f64().max(1e-9))
        .collect();
    let ratio = median(&mut round_ratios.clone());
    let operations = sizes.total() * sizes.rounds;
    let (bench_name, ours_what, raw_what) = match what {
        BenchCommand::Store => (
            "store",
            "JetStreamEventStore::save_event",
            "raw JetStream publish + expected sequence",
        ),
        BenchCommand::Bus => (
            "bus",
            "NatsEventBus::publish -> subscriber",
            "raw core NATS publish -> subscriber",
        ),
        BenchCommand::Actors => (
            "actors",
            "actors: ask -> one event stored",
            "JetStreamEventStore::save_event",
        ),
    };
    round_ratios.shrink_to_fit();
    let report = Report {
        bench: bench_name,
        server: nats.url.clone(),
        concurrency: sizes.concurrency,
        rounds: sizes.rounds,
        ours: side(ours_what, operations, &ours),
        raw: side(raw_what, operations, &raw),
        round_ratios,
        ratio,
    };
    if json {
        return output::json(&report);
    }
    print(&report)
}

fn print(report: &Report) -> Result<(), CliError> {
    let row = |s: &Side| {
        vec![
            s.what.to_owned(),
            s.operations.to_string(),
            format!("{:.3}", s.seconds),
            format!("{:.0}", s.ops_per_sec),
            s.lost.map(|l| format!("{l} lost")).unwrap_or_default(),
        ]
    };
    output::line(format!(
        "bench {} on {} ({} at once, {} rounds)",
        report.bench, report.server, report.concurrency, report.rounds
    ))?;
    output::line(output::table(
        &["SIDE", "OPS", "SECONDS", "OPS/S", "NOTE"],
        &["OPS", "SECONDS", "OPS/S"],
        vec![row(&report.ours), row(&report.raw)],
    ))?;
    output::line(format!(
        "ratio ours/raw: {:.2}x (median of the rounds; above 1: Aether is faster)",
        report.ratio
    ))
}

/// The median of `values` (not empty).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

impl Bench<'_> {
    /// Every round, both sides; the measures per side, in round order.
    async fn measure(&mut self) -> Result<(Vec<Measure>, Vec<Measure>), CliError> {
        self.prepare().await?;
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        let rounds = self.sizes.rounds;
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for is_ours in order {
                let label = format!(
                    "{} {}/{rounds}",
                    if is_ours { "ours" } else { "raw" },
                    round + 1
                );
                let bar = progress(self.sizes.total(), &label, self.sizes.quiet);
                let measure = self.side(is_ours, round, &bar).await?;
                bar.finish();
                if is_ours {
                    ours.push(measure);
                } else {
                    raw.push(measure);
                }
            }
        }
        Ok((ours, raw))
    }

    /// Creates what every round uses: the store, the baseline stream, the actors.
    async fn prepare(&mut self) -> Result<(), CliError> {
        let nats = self.nats;
        if matches!(self.what, BenchCommand::Store | BenchCommand::Actors) {
            self.store = Some(
                JetStreamEventStore::with_client(
                    nats.client.clone(),
                    self.namespace.clone(),
                    JetStreamConfig::default(),
                )
                .await?,
            );
        }
        if matches!(self.what, BenchCommand::Store) {
            nats.jetstream()
                .create_stream(async_nats::jetstream::stream::Config {
                    name: self.raw_stream.clone(),
                    subjects: vec![format!("{}.store.*", self.raw_subject)],
                    allow_direct: true,
                    ..Default::default()
                })
                .await
                .map_err(|e| nats.error("cannot create the baseline stream", e))?;
        }
        if let (BenchCommand::Actors, Some(store)) = (self.what, &self.store) {
            self.ledgers = Some(
                Actors::new(
                    self.namespace.clone(),
                    Ledger,
                    store.clone(),
                    ActorConfig::default(),
                )
                .map_err(|e| CliError::Bench(e.to_string()))?,
            );
        }
        Ok(())
    }

    async fn side(&self, ours: bool, round: u64, bar: &ProgressBar) -> Result<Measure, CliError> {
        let done = |elapsed| Measure {
            elapsed,
            lost: None,
        };
        match (self.what, ours) {
            (BenchCommand::Store, false) => self.store_raw(round, bar).await.map(done),
            (BenchCommand::Store, true) => self
                .save_events(&format!("r{round}-a"), bar)
                .await
                .map(done),
            (BenchCommand::Bus, false) => self.bus_raw(round, bar).await,
            (BenchCommand::Bus, true) => self.bus_ours(bar).await,
            (BenchCommand::Actors, false) => self
                .save_events(&format!("ledger.raw-r{round}-"), bar)
                .await
                .map(done),
            (BenchCommand::Actors, true) => self.actors_ours(round, bar).await.map(done),
        }
    }

    /// Raw JetStream publishes with the store's headers, one subject per task.
    async fn store_raw(&self, round: u64, bar: &ProgressBar) -> Result<Duration, CliError> {
        let js = self.nats.jetstream();
        let per_task = self.sizes.per_task();
        let raw_subject = &self.raw_subject;
        timed(self.sizes.concurrency, |task| {
            let (js, bar) = (js.clone(), bar.clone());
            let subject = format!("{raw_subject}.store.r{round}-a{task}");
            async move {
                let id = actor(format!("r{round}-a{task}"))?;
                let mut last = 0;
                for version in 1..=per_task {
                    let event = event(&id, version)?;
                    let mut headers = HeaderMap::new();
                    headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, last.to_string());
                    headers.insert(NATS_MESSAGE_ID, event.id.as_str());
                    headers.insert(aether_nats::VERSION_HEADER, version.to_string());
                    headers.insert(aether_nats::TYPE_HEADER, event.event_type.as_str());
                    let payload = serde_json::to_vec(&event).map_err(std::io::Error::other)?;
                    let ack = js
                        .publish_with_headers(subject.clone(), headers, payload.into())
                        .await
                        .map_err(|e| CliError::Bench(format!("raw publish: {e}")))?
                        .await
                        .map_err(|e| CliError::Bench(format!("raw publish: {e}")))?;
                    last = ack.sequence;
                    bar.inc(1);
                }
                Ok(())
            }
        })
        .await
    }

    /// `save_event` of fresh actors `<prefix><task>`, one task per actor.
    async fn save_events(&self, prefix: &str, bar: &ProgressBar) -> Result<Duration, CliError> {
        let store = self
            .store
            .clone()
            .ok_or_else(|| CliError::Bench("the store is not open".to_owned()))?;
        let per_task = self.sizes.per_task();
        timed(self.sizes.concurrency, |task| {
            let (store, bar) = (store.clone(), bar.clone());
            let id = actor(format!("{prefix}{task}"));
            async move {
                let id = id?;
                for version in 1..=per_task {
                    store.save_event(event(&id, version)?).await?;
                    bar.inc(1);
                }
                Ok(())
            }
        })
        .await
    }

    /// Commands to fresh actors, one task per actor.
    async fn actors_ours(&self, round: u64, bar: &ProgressBar) -> Result<Duration, CliError> {
        let ledgers = self
            .ledgers
            .clone()
            .ok_or_else(|| CliError::Bench("the actors are not started".to_owned()))?;
        let per_task = self.sizes.per_task();
        timed(self.sizes.concurrency, |task| {
            let (ledgers, bar) = (ledgers.clone(), bar.clone());
            let id = actor(format!("r{round}-{task}"));
            async move {
                let id = id?;
                for n in 1..=per_task {
                    ledgers
                        .ask(&id, Deposit::numbered(n))
                        .await
                        .map_err(|e| CliError::Bench(format!("ask: {e:?}")))?;
                    bar.inc(1);
                }
                Ok(())
            }
        })
        .await
    }

    /// The same bytes as an event over core NATS, to a subscriber on the same connection.
    async fn bus_raw(&self, round: u64, bar: &ProgressBar) -> Result<Measure, CliError> {
        let nats = self.nats;
        let sample = serde_json::to_vec(&event(&actor("a0".to_owned())?, 1)?)
            .map_err(std::io::Error::other)?;
        let subject = format!("{}.bus.r{round}", self.raw_subject);
        let mut subscriber = nats
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| nats.error("cannot subscribe", e))?;
        nats.client
            .flush()
            .await
            .map_err(|e| nats.error("cannot flush", e))?;
        let per_task = self.sizes.per_task();
        let delivered = receive(
            self.sizes.total(),
            self.sizes.patience,
            bar,
            &mut subscriber,
        );
        let sent = timed(self.sizes.concurrency, |_| {
            let (client, subject, payload) = (nats.client.clone(), subject.clone(), sample.clone());
            async move {
                for _ in 0..per_task {
                    client
                        .publish(subject.clone(), payload.clone().into())
                        .await
                        .map_err(|e| CliError::Bench(format!("raw publish: {e}")))?;
                }
                Ok(())
            }
        });
        let (delivered, sent) = tokio::join!(delivered, sent);
        sent?;
        Ok(delivered)
    }

    /// `NatsEventBus::publish` on one bus, received by a subscriber of another (its own
    /// origin, so the events count as remote), on the same connection.
    async fn bus_ours(&self, bar: &ProgressBar) -> Result<Measure, CliError> {
        let client = self.nats.client.clone();
        let publisher = NatsEventBus::with_client(client.clone(), NatsBusConfig::default())?;
        let receiver = NatsEventBus::with_client(client, NatsBusConfig::default())?;
        // A queue as deep as the raw subscriber's buffer, so both measure delivery, not
        // a drop policy.
        let capacity = usize::try_from(self.sizes.total())
            .unwrap_or(usize::MAX)
            .max(1);
        let mut subscription = receiver
            .subscribe_with(
                &self.namespace,
                SubscribeOptions::new().queue_capacity(capacity),
            )
            .with_namespaces();
        receiver.flush().await?;
        let per_task = self.sizes.per_task();
        let delivered = receive(
            self.sizes.total(),
            self.sizes.patience,
            bar,
            &mut subscription,
        );
        let namespace = &self.namespace;
        let sent = timed(self.sizes.concurrency, |task| {
            let (bus, namespace) = (publisher.clone(), namespace.clone());
            async move {
                let id = actor(format!("a{task}"))?;
                for version in 1..=per_task {
                    bus.publish(&namespace, event(&id, version)?).await;
                }
                Ok(())
            }
        });
        let (delivered, sent) = tokio::join!(delivered, sent);
        sent?;
        Ok(delivered)
    }
}

/// Waits for `total` items of `deliveries`, counting on `bar`; the time from now until the
/// last one, and how many never came (none for `patience`, or the stream ended).
async fn receive<S: futures::Stream + Unpin>(
    total: u64,
    patience: Duration,
    bar: &ProgressBar,
    deliveries: &mut S,
) -> Measure {
    let started = Instant::now();
    let mut received = 0;
    let mut last = started;
    while received < total {
        match tokio::time::timeout(patience, deliveries.next()).await {
            Ok(Some(_)) => {
                received += 1;
                last = Instant::now();
                bar.inc(1);
            }
            _ => break,
        }
    }
    Measure {
        elapsed: last - started,
        lost: Some(total - received),
    }
}

/// Deletes what a run created; a failure here leaves streams named `aether-bench-…` behind,
/// which is said on stderr. Streams that do not exist (a run refused before creating them)
/// are not asked to be deleted.
async fn clean_up(nats: &Nats, namespace: &Namespace, raw_stream: &str) {
    let js = nats.jetstream();
    for stream in [
        naming::stream_name(namespace),
        format!("KV_{}", naming::snapshot_bucket(namespace)),
        raw_stream.to_owned(),
    ] {
        if js.get_stream(&stream).await.is_err() {
            continue;
        }
        if let Err(e) = js.delete_stream(&stream).await {
            let missing = matches!(e.kind(), async_nats::jetstream::context::DeleteStreamErrorKind::JetStream(ref j) if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND);
            if !missing {
                eprintln!("warning: could not delete the benchmark stream {stream}: {e}");
            }
        }
    }
}

fn progress(len: u64, label: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>6} [{bar:32}] {pos}/{len} {per_sec:>12} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// The data of every benchmark event: a deposit, as in the repository's benchmarks.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposit {
    amount: u64,
    currency: String,
    reference: String,
}

impl Deposit {
    fn numbered(n: u64) -> Self {
        Self {
            amount: n * 7 % 1000,
            currency: "EUR".to_owned(),
            reference: format!("invoice-{n:08}"),
        }
    }
}

fn event(actor: &ActorId, version: u64) -> Result<Event, CliError> {
    Event::builder(actor.clone(), "Deposited")
        .version(version)
        .data(&Deposit::numbered(version))
        .map(aether_core::EventBuilder::build)
        .map_err(|e| CliError::Bench(e.to_string()))
}

fn actor(name: String) -> Result<ActorId, CliError> {
    super::actor_id(&name)
}

/// Runs `per_task` for tasks `0..concurrency` at once; the time until all are done.
async fn timed<F, Fut>(concurrency: u64, per_task: F) -> Result<Duration, CliError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<(), CliError>> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..concurrency {
        tasks.spawn(per_task(task));
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| CliError::Bench(format!("a task failed: {e}")))??;
    }
    Ok(started.elapsed())
}

/// The benchmark's actor: a ledger whose every command persists one deposit.
#[derive(Debug)]
struct Ledger;

#[derive(Debug, Serialize, Deserialize)]
enum Booked {
    Deposited(Deposit),
}

impl Actor for Ledger {
    const ACTOR_TYPE: &'static str = "ledger";
    type State = u64;
    type Command = Deposit;
    type Event = Booked;
    type Reply = u64;
    type Rejection = ();
    type Query = ();
    type QueryReply = u64;

    fn decide(&self, count: &u64, deposit: Deposit) -> Result<Decision<Self>, ()> {
        Ok(Decision::new(vec![Booked::Deposited(deposit)], count + 1))
    }

    fn apply(&self, count: &mut u64, _: &Booked) {
        *count += 1;
    }

    fn query(&self, count: &u64, (): ()) -> u64 {
        *count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [0.5]), 0.5);
    }

    #[test]
    fn sizes_round_up_to_whole_tasks() {
        let sizes = Sizes {
            count: 10,
            concurrency: 4,
            rounds: 1,
            patience: Duration::from_secs(1),
            quiet: true,
        };
        assert_eq!((sizes.per_task(), sizes.total()), (3, 12));
    }

    #[test]
    fn lost_sums_over_rounds_and_is_absent_when_not_counted() {
        let counted = [
            Measure {
                elapsed: Duration::from_secs(1),
                lost: Some(2),
            },
            Measure {
                elapsed: Duration::from_secs(1),
                lost: Some(3),
            },
        ];
        let side = side("x", 10, &counted);
        assert_eq!((side.lost, side.ops_per_sec), (Some(5), 5.0));
        let uncounted = [Measure {
            elapsed: Duration::from_secs(2),
            lost: None,
        }];
        assert_eq!(super::side("y", 4, &uncounted).lost, None);
    }
}
