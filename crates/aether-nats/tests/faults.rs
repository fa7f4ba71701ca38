//! Fault tests against real `nats-server` processes: one store object writes events
//! sequentially (round-robin over a few actors, each event retried with the same id until it
//! returns `Ok`) while the test SIGKILLs a server under it.
//!
//! - Single server: killed mid-writes twice (down ~1 s, then ~5 s; the writer's store has 2 s
//!   request and retry timeouts, so errors reach the caller, which saves the same event
//!   again), restarted each time on the same port and store directory; the same store object
//!   resumes writing.
//! - 3-node cluster, R3 stream: the stream leader is killed mid-writes, twice (the first victim
//!   is started again and must rejoin before the second kill); writes must resume within a
//!   bounded time after each kill (the measured gap is printed).
//!
//! Afterwards, read back through a fresh connection: every acknowledged event is stored exactly
//! once, nothing else is stored, versions are strictly increasing (exactly `1..=n` per actor),
//! no retry of an event ever got a `VersionConflict`, and `Duplicate` only ever answered an
//! event whose earlier save call had failed. Measured figures (time to resume, errors during
//! the outage, acknowledged events) are printed with `--nocapture`.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aether_core::{ActorId, ErrorKind, Event, EventStore, Namespace, SaveOutcome};
use aether_nats::{JetStreamConfig, JetStreamEventStore};
use aether_testkit::nats_server::{NatsCluster, NatsServer, Node};
use tokio::time::Instant;

#[path = "support/read_back.rs"]
mod read_back;
use read_back::read_all;

/// Actors the writer cycles through.
const ACTORS: usize = 3;
/// Acknowledged events to wait for before a fault, and after recovery.
const WRITES_PER_PHASE: usize = 40;
/// How long waiting for a phase's writes may take before the test fails.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// The bound for writes to resume after the cluster's stream leader is killed (measured
/// failover is ~7 s; this is generous for a slow shared machine).
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

/// Short timeouts for the writing store, so that an outage surfaces as errors the caller
/// retries (the store's own retries would otherwise absorb most of it).
fn writer_config(replicas: usize) -> JetStreamConfig {
    JetStreamConfig {
        replicas,
        request_timeout: Duration::from_secs(2),
        retry_timeout: Duration::from_secs(2),
        ..JetStreamConfig::default()
    }
}

fn default_config(replicas: usize) -> JetStreamConfig {
    JetStreamConfig {
        replicas,
        ..JetStreamConfig::default()
    }
}

async fn open(url: &str, namespace: &Namespace, config: JetStreamConfig) -> JetStreamEventStore {
    JetStreamEventStore::connect_with(url, namespace.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"))
}

fn fresh_namespace(prefix: &str) -> Namespace {
    Namespace::new(format!("{prefix}-{}", uuid::Uuid::now_v7().simple())).expect("namespace")
}

/// One acknowledged event.
#[derive(Debug, Clone)]
struct Acked {
    actor: usize,
    version: u64,
    id: String,
    outcome: SaveOutcome,
    /// When the first save of this event started.
    started: Instant,
    /// When the save returned `Ok`.
    at: Instant,
    /// Errors returned for this event before the `Ok`.
    errors: usize,
}

/// What the writer did.
#[derive(Debug, Default)]
struct WriteLog {
    acked: Vec<Acked>,
    /// Every error a save returned (all of kind Infrastructure, else `fatal` is set).
    errors: Vec<(Instant, String)>,
    /// An error that must never happen (a conflict on a retry), which stopped the writer.
    fatal: Option<String>,
    /// An event still unsettled when the writer was told to stop (only on a failing run).
    unsettled: Option<(usize, u64, String)>,
}

/// A background task saving events one after another on one store object.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<WriteLog>,
}

impl Writer {
    fn spawn(store: JetStreamEventStore, actors: Vec<ActorId>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(write_loop(store, actors, stop.clone(), acked.clone()));
        Self { stop, acked, task }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until `count` events are acknowledged, or fails after [`PHASE_TIMEOUT`].
    async fn wait_for(&self, count: usize, what: &str) {
        let deadline = Instant::now() + PHASE_TIMEOUT;
        while self.acked() < count {
            assert!(
                !self.task.is_finished(),
                "{what}: the writer stopped early (at {} acknowledged events)",
                self.acked()
            );
            assert!(
                Instant::now() < deadline,
                "{what}: only {} of {count} events acknowledged after {PHASE_TIMEOUT:?}",
                self.acked()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> WriteLog {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("writer did not stop within 60 s")
            .expect("writer task panicked")
    }
}

async fn write_loop(
    store: JetStreamEventStore,
    actors: Vec<ActorId>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> WriteLog {
    let mut log = WriteLog::default();
    let mut next_version = vec![1_u64; actors.len()];
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let actor = i % actors.len();
        let event = Event::new(actors[actor].clone(), "Written", next_version[actor]);
        let started = Instant::now();
        let mut errors = 0;
        let outcome = loop {
            match store.save_event(event.clone()).await {
                Ok(outcome) => break outcome,
                Err(e) if e.kind() == ErrorKind::Infrastructure => {
                    errors += 1;
                    log.errors.push((Instant::now(), e.to_string()));
                    if stop.load(Ordering::SeqCst) {
                        log.unsettled = Some((actor, event.version, event.id.to_string()));
                        return log;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    log.fatal = Some(format!(
                        "save of {} v{} (id {}) after {errors} infrastructure errors: {e}",
                        event.actor_id, event.version, event.id
                    ));
                    return log;
                }
            }
        };
        log.acked.push(Acked {
            actor,
            version: event.version,
            id: event.id.to_string(),
            outcome,
            started,
            at: Instant::now(),
            errors,
        });
        next_version[actor] += 1;
        acked.fetch_add(1, Ordering::SeqCst);
    }
    log
}

/// How the writes went around one fault at `killed_at`.
#[derive(Debug)]
struct Outage {
    /// From the kill to the first acknowledgement of an event whose save started after it.
    resumed_after: Duration,
    /// From the node being ready again (if it was restarted) to that acknowledgement.
    resumed_after_ready: Option<Duration>,
    /// Errors returned to the caller between the kill and that acknowledgement.
    errors: usize,
    /// Events whose save straddled the kill.
    in_flight: usize,
}

fn outage(log: &WriteLog, killed_at: Instant, ready_at: Option<Instant>) -> Outage {
    let resumed = log
        .acked
        .iter()
        .find(|a| a.started >= killed_at)
        .expect("an event saved entirely after the kill");
    Outage {
        resumed_after: resumed.at - killed_at,
        resumed_after_ready: ready_at.map(|r| resumed.at.saturating_duration_since(r)),
        errors: log
            .errors
            .iter()
            .filter(|(at, _)| *at >= killed_at && *at <= resumed.at)
            .count(),
        in_flight: log
            .acked
            .iter()
            .filter(|a| a.started < killed_at && a.at > killed_at)
            .count(),
    }
}

/// Reads every actor back through a fresh connection and checks the log against it.
async fn verify(
    url: &str,
    namespace: &Namespace,
    replicas: usize,
    actors: &[ActorId],
    log: &WriteLog,
) {
    if let Some(fatal) = &log.fatal {
        panic!("the writer hit an error that must not happen: {fatal}");
    }
    assert!(
        log.unsettled.is_none(),
        "the writer was stopped with an unsettled event: {:?}",
        log.unsettled
    );
    let store = open(url, namespace, default_config(replicas)).await;
    for (index, actor) in actors.iter().enumerate() {
        let stored = read_all(&store, actor).await;
        let versions: Vec<u64> = stored.iter().map(|e| e.version).collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{actor}: stored versions not strictly increasing: {versions:?}"
        );
        let acked: Vec<&Acked> = log.acked.iter().filter(|a| a.actor == index).collect();
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        for event in &stored {
            *by_id.entry(event.id.as_str()).or_default() += 1;
        }
        for a in &acked {
            // Within one call a landed retry is `Saved`; `Duplicate` means an earlier call
            // (one that returned an error) stored it.
            assert!(
                a.outcome != SaveOutcome::Duplicate || a.errors > 0,
                "{actor}: v{} (id {}) was new, yet its first save call returned Duplicate",
                a.version,
                a.id
            );
            assert_eq!(
                by_id.get(a.id.as_str()).copied().unwrap_or(0),
                1,
                "{actor}: acknowledged event v{} (id {}, {:?} after {} errors) must be stored \
                 exactly once; stored versions: {versions:?}",
                a.version,
                a.id,
                a.outcome,
                a.errors
            );
        }
        assert_eq!(
            stored.len(),
            acked.len(),
            "{actor}: stored events that were never acknowledged; stored versions {versions:?}"
        );
        assert_eq!(
            versions,
            (1..=acked.len() as u64).collect::<Vec<_>>(),
            "{actor}: one writer, each version retried until acknowledged: versions 1..=n"
        );
        for (event, a) in stored.iter().zip(&acked) {
            assert_eq!(
                (event.version, event.id.as_str()),
                (a.version, a.id.as_str())
            );
        }
    }
}

fn summary(log: &WriteLog) -> String {
    let duplicates = log
        .acked
        .iter()
        .filter(|a| a.outcome == SaveOutcome::Duplicate)
        .count();
    let retried = log.acked.iter().filter(|a| a.errors > 0).count();
    format!(
        "{} events acknowledged ({duplicates} as Duplicate, {retried} after errors), {} errors in total",
        log.acked.len(),
        log.errors.len()
    )
}

fn actors() -> Vec<ActorId> {
    (0..ACTORS)
        .map(|i| ActorId::new(format!("account-{i}")).expect("actor id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_survive_sigkill_and_restart_of_a_single_server() {
    let mut server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let namespace = fresh_namespace("faults-single");
    let actors = actors();
    // The stream is created with default (generous) timeouts; the writer uses short ones.
    drop(open(&url, &namespace, default_config(1)).await);
    let store = open(&url, &namespace, writer_config(1)).await;
    let writer = Writer::spawn(store, actors.clone());

    // A short outage, then one well beyond the writer's timeouts and the client's reconnect
    // backoff.
    let mut faults = Vec::new();
    for (cycle, down) in [(1, Duration::from_secs(1)), (2, Duration::from_secs(5))] {
        writer
            .wait_for(
                writer.acked() + WRITES_PER_PHASE,
                &format!("before kill {cycle}"),
            )
            .await;
        let acked_before = writer.acked();
        tokio::task::block_in_place(|| server.kill());
        let killed_at = Instant::now();
        tokio::time::sleep(down).await;
        tokio::task::block_in_place(|| server.restart())
            .unwrap_or_else(|e| panic!("restart after kill {cycle}: {e}"));
        let ready_at = Instant::now();
        writer
            .wait_for(
                writer.acked() + WRITES_PER_PHASE,
                &format!("after restart {cycle}"),
            )
            .await;
        faults.push((cycle, acked_before, killed_at, ready_at));
    }
    let log = writer.finish().await;

    for (cycle, acked_before, killed_at, ready_at) in faults {
        let o = outage(&log, killed_at, Some(ready_at));
        eprintln!(
            "single server, kill {cycle} after {acked_before} acknowledged events: down \
             {:.2?}, writes resumed {:.2?} after the kill ({:.2?} after the restarted server \
             was ready), {} errors returned during the outage, {} save(s) straddling the kill",
            ready_at - killed_at,
            o.resumed_after,
            o.resumed_after_ready.unwrap_or_default(),
            o.errors,
            o.in_flight
        );
    }
    eprintln!("single server: {}", summary(&log));
    verify(&url, &namespace, 1, &actors, &log).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_resume_after_the_r3_stream_leader_is_killed() {
    let mut cluster = NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.urls().join(",");
    let namespace = fresh_namespace("faults-cluster");
    let actors = actors();
    let bootstrap = open(&url, &namespace, default_config(3)).await;
    let store = open(&url, &namespace, writer_config(3)).await;
    let writer = Writer::spawn(store, actors.clone());

    // Twice: kill the current stream leader, wait for writes to resume, bring it back (it must
    // catch up and rejoin; the second kill then needs it for a quorum).
    let mut faults = Vec::new();
    for cycle in 1..=2 {
        writer
            .wait_for(
                writer.acked() + WRITES_PER_PHASE,
                &format!("before kill {cycle}"),
            )
            .await;
        let leader = stream_leader(&bootstrap).await;
        let acked_before = writer.acked();
        let node = node_named(&mut cluster, &leader);
        tokio::task::block_in_place(|| node.kill());
        let killed_at = Instant::now();
        writer
            .wait_for(
                acked_before + WRITES_PER_PHASE,
                &format!("after kill {cycle} of the stream leader {leader}"),
            )
            .await;
        let new_leader = stream_leader(&bootstrap).await;
        let node = node_named(&mut cluster, &leader);
        tokio::task::block_in_place(|| {
            node.start()?;
            node.wait_ready(Duration::from_secs(30))
        })
        .unwrap_or_else(|e| panic!("restart {leader}: {e}"));
        let ready_at = Instant::now();
        writer
            .wait_for(
                writer.acked() + WRITES_PER_PHASE,
                &format!("after {leader} rejoined"),
            )
            .await;
        faults.push((cycle, leader, new_leader, acked_before, killed_at, ready_at));
    }
    let log = writer.finish().await;

    let mut gaps = Vec::new();
    for (cycle, leader, new_leader, acked_before, killed_at, ready_at) in faults {
        let o = outage(&log, killed_at, None);
        eprintln!(
            "R3 cluster, kill {cycle}: stream leader {leader} killed after {acked_before} \
             acknowledged events; new leader {new_leader}; writes resumed {:.2?} after the kill, \
             {} errors returned during the outage, {} save(s) straddling the kill; {leader} \
             ready again {:.2?} after the kill",
            o.resumed_after,
            o.errors,
            o.in_flight,
            ready_at - killed_at
        );
        assert_ne!(
            new_leader, leader,
            "kill {cycle}: a new stream leader should have been elected"
        );
        gaps.push((cycle, o.resumed_after));
    }
    eprintln!("R3 cluster: {}", summary(&log));
    for (cycle, gap) in gaps {
        assert!(
            gap < FAILOVER_BOUND,
            "kill {cycle}: writes resumed {gap:.2?} after the stream leader was killed (bound \
             {FAILOVER_BOUND:?})"
        );
    }
    verify(&url, &namespace, 3, &actors, &log).await;
    drop(cluster);
}

fn node_named<'a>(cluster: &'a mut NatsCluster, name: &str) -> &'a mut Node {
    cluster
        .nodes()
        .iter_mut()
        .find(|n| n.name() == name)
        .unwrap_or_else(|| panic!("no node named {name}"))
}

/// The server name of the stream's Raft leader (waits for one to be elected).
async fn stream_leader(store: &JetStreamEventStore) -> String {
    let js = async_nats::jetstream::new(store.client().clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = match js.get_stream(store.stream_name()).await {
            Ok(mut stream) => stream
                .info()
                .await
                .ok()
                .and_then(|i| i.cluster.clone())
                .and_then(|c| c.leader),
            Err(_) => None,
        };
        if let Some(leader) = leader {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "no leader for stream {} within 30 s",
            store.stream_name()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
