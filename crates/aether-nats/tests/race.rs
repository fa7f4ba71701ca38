//! Multi-process race on one actor: 4 OS processes (this test binary re-executed, each with its
//! own connection and store handle) × 200 rounds. Each round every process reads
//! `latest_version`, waits at a barrier (NATS core subjects, coordinated by the parent), then
//! writes `latest + 1` with a fresh event id, so all four race for the same version.
//!
//! Checked against a real `nats-server` (single server with an R1 stream, and a 3-node cluster
//! with an R3 stream): exactly one winner per round; every process read the previous round's
//! winner; stored versions strictly increasing (exactly `1..=rounds`); every event that got
//! `Ok` is stored exactly once; nothing stored that got a `VersionConflict`, and every
//! conflict names a current version at or above the attempted one.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use aether_core::{ActorId, ErrorKind, Event, EventStore, Namespace, SaveOutcome, StoreError};
use aether_nats::{JetStreamConfig, JetStreamEventStore};
use aether_testkit::nats_server::{NatsCluster, NatsServer};
use futures::StreamExt;
use tokio::io::AsyncReadExt;

#[path = "support/read_back.rs"]
mod read_back;
use read_back::read_all;

/// Processes racing.
const WRITERS: u32 = 4;
/// Rounds per race.
const ROUNDS: u32 = 200;
/// The entry point a child process runs (see [`race_child_process_entry_point`]).
const CHILD_TEST: &str = "race_child_process_entry_point";
/// Prefix of the result lines a child prints on stdout.
const RESULT_PREFIX: &str = "RACE-RESULT ";

/// Environment variables carrying a child's parameters. Absent: not a child.
mod env {
    pub(crate) const URL: &str = "AETHER_RACE_CHILD_URL";
    pub(crate) const NAMESPACE: &str = "AETHER_RACE_CHILD_NAMESPACE";
    pub(crate) const ACTOR: &str = "AETHER_RACE_CHILD_ACTOR";
    pub(crate) const WRITER: &str = "AETHER_RACE_CHILD_WRITER";
    pub(crate) const ROUNDS: &str = "AETHER_RACE_CHILD_ROUNDS";
    pub(crate) const REPLICAS: &str = "AETHER_RACE_CHILD_REPLICAS";
    pub(crate) const BARRIER: &str = "AETHER_RACE_CHILD_BARRIER";
}

/// A child gives up if the race has not finished by then.
const CHILD_DEADLINE: Duration = Duration::from_secs(180);
/// The parent gives up if no child reports ready for this long.
const BARRIER_STALL: Duration = Duration::from_secs(60);
/// A child re-announces itself if no go comes within this (a lost core message).
const READY_RESEND: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_race_for_every_version_on_one_server() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    race(&server.url(), 1).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_race_for_every_version_on_a_three_node_cluster_with_r3() {
    let cluster = NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    race(&cluster.urls().join(","), 3).await;
    drop(cluster);
}

/// Not a test of its own: the body of a racing child process, run when the parent re-executes
/// this binary with the `AETHER_RACE_CHILD_*` variables set. In a normal run they are absent
/// and it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_child_process_entry_point() {
    let Some(params) = ChildParams::from_env() else {
        return;
    };
    run_child(params).await;
}

// ---------------------------------------------------------------------------------------------
// Parent

/// One child's report for one round.
#[derive(Debug, Clone)]
struct RoundResult {
    writer: u32,
    round: u32,
    /// `latest_version` read before the barrier (after the previous round's save returned).
    read: u64,
    /// The version written (`read + 1`).
    version: u64,
    outcome: Outcome,
    id: String,
    /// For a conflict: the current version the error named.
    current: u64,
    /// Infrastructure errors retried before the outcome.
    retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Saved,
    Duplicate,
    Conflict,
}

impl RoundResult {
    fn to_line(&self) -> String {
        let outcome = match self.outcome {
            Outcome::Saved => "saved",
            Outcome::Duplicate => "duplicate",
            Outcome::Conflict => "conflict",
        };
        format!(
            "{RESULT_PREFIX}{} {} {} {} {outcome} {} {} {}",
            self.writer, self.round, self.read, self.version, self.id, self.current, self.retries
        )
    }

    /// Parses a result line; libtest may print its own text before it on the same line.
    fn parse(line: &str) -> Option<Self> {
        let (_, rest) = line.split_once(RESULT_PREFIX)?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let [writer, round, read, version, outcome, id, current, retries] = f[..] else {
            return None;
        };
        Some(Self {
            writer: writer.parse().ok()?,
            round: round.parse().ok()?,
            read: read.parse().ok()?,
            version: version.parse().ok()?,
            outcome: match outcome {
                "saved" => Outcome::Saved,
                "duplicate" => Outcome::Duplicate,
                "conflict" => Outcome::Conflict,
                _ => return None,
            },
            id: id.to_owned(),
            current: current.parse().ok()?,
            retries: retries.parse().ok()?,
        })
    }

    /// The write was acknowledged (a duplicate counts only after an uncertain earlier try).
    fn won(&self) -> bool {
        matches!(self.outcome, Outcome::Saved | Outcome::Duplicate)
    }
}

/// A running child process and the readers draining its pipes.
struct Child {
    writer: u32,
    process: tokio::process::Child,
    stdout: tokio::task::JoinHandle<String>,
    stderr: tokio::task::JoinHandle<String>,
}

fn drain(
    pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf).await;
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn spawn_child(
    url: &str,
    namespace: &Namespace,
    actor: &ActorId,
    writer: u32,
    replicas: usize,
    barrier: &str,
) -> Child {
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut process = tokio::process::Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(env::URL, url)
        .env(env::NAMESPACE, namespace.as_str())
        .env(env::ACTOR, actor.as_str())
        .env(env::WRITER, writer.to_string())
        .env(env::ROUNDS, ROUNDS.to_string())
        .env(env::REPLICAS, replicas.to_string())
        .env(env::BARRIER, barrier)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn a racing child process");
    Child {
        writer,
        stdout: drain(process.stdout.take()),
        stderr: drain(process.stderr.take()),
        process,
    }
}

/// Kills every child and returns the end of their stderr, for a failure message.
async fn kill_all(children: Vec<Child>) -> String {
    let mut report = String::new();
    for mut child in children {
        let _ = child.process.start_kill();
        let _ = child.process.wait().await;
        let stderr = child.stderr.await.unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        report.push_str(&format!(
            "\n--- writer {} stderr (tail) ---\n",
            child.writer
        ));
        for line in tail.into_iter().rev() {
            report.push_str(line);
            report.push('\n');
        }
    }
    report
}

async fn race(url: &str, replicas: usize) {
    let started = Instant::now();
    let token = uuid::Uuid::now_v7().simple().to_string();
    let namespace = Namespace::new(format!("race-{token}")).expect("namespace");
    let actor = ActorId::new("contested").expect("actor id");
    let config = JetStreamConfig {
        replicas,
        ..JetStreamConfig::default()
    };
    // Opening the store first creates the stream, so the children only open it.
    let store = JetStreamEventStore::connect_with(url, namespace.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"));
    let client = store.client().clone();
    let barrier = format!("aether-race.{token}");
    let mut ready = client
        .subscribe(format!("{barrier}.ready"))
        .await
        .expect("subscribe to the barrier");
    client.flush().await.expect("flush");

    let mut children: Vec<Child> = (0..WRITERS)
        .map(|w| spawn_child(url, &namespace, &actor, w, replicas, &barrier))
        .collect();

    // The barrier: release round r once every writer announced it is ready for r.
    let mut waiting: BTreeMap<u32, HashSet<u32>> = BTreeMap::new();
    let mut released = 0;
    while released < ROUNDS {
        let message = match tokio::time::timeout(BARRIER_STALL, ready.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => panic!("barrier subscription closed at round {released}"),
            Err(_) => {
                let missing: Vec<u32> = (0..WRITERS)
                    .filter(|w| !waiting.get(&released).is_some_and(|s| s.contains(w)))
                    .collect();
                let report = kill_all(children).await;
                panic!(
                    "barrier stalled {BARRIER_STALL:?} at round {released}: writers {missing:?} \
                     never reported ready{report}"
                );
            }
        };
        let text = String::from_utf8_lossy(&message.payload).into_owned();
        let (round, writer) = text
            .split_once(' ')
            .and_then(|(r, w)| Some((r.parse::<u32>().ok()?, w.parse::<u32>().ok()?)))
            .unwrap_or_else(|| panic!("bad barrier message {text:?}"));
        if round < released {
            // That writer missed the go: say it again.
            client
                .publish(format!("{barrier}.go"), round.to_string().into())
                .await
                .expect("publish go");
            continue;
        }
        let set = waiting.entry(round).or_default();
        set.insert(writer);
        if round == released && set.len() == WRITERS as usize {
            client
                .publish(format!("{barrier}.go"), round.to_string().into())
                .await
                .expect("publish go");
            waiting.remove(&round);
            released += 1;
        }
    }
    let raced = started.elapsed();

    // Collect every child's output.
    let mut results: Vec<RoundResult> = Vec::new();
    let mut failures = String::new();
    for child in &mut children {
        match tokio::time::timeout(Duration::from_secs(60), child.process.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(status) => {
                failures.push_str(&format!("writer {} exited with {status:?}\n", child.writer))
            }
            Err(_) => failures.push_str(&format!(
                "writer {} did not exit within 60 s\n",
                child.writer
            )),
        }
    }
    if !failures.is_empty() {
        let report = kill_all(children).await;
        panic!("racing children failed:\n{failures}{report}");
    }
    for child in children {
        let stdout = child.stdout.await.expect("stdout reader");
        let mine: Vec<RoundResult> = stdout.lines().filter_map(RoundResult::parse).collect();
        assert_eq!(
            mine.len(),
            ROUNDS as usize,
            "writer {} reported {} results, not {ROUNDS} (did the child test run?)\nstdout:\n{stdout}",
            child.writer,
            mine.len()
        );
        assert!(mine.iter().all(|r| r.writer == child.writer));
        results.extend(mine);
    }

    check(&store, &actor, &results).await;
    let wins_per_writer: BTreeMap<u32, usize> =
        results
            .iter()
            .filter(|r| r.won())
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r.writer).or_default() += 1;
                m
            });
    let conflicts = results
        .iter()
        .filter(|r| r.outcome == Outcome::Conflict)
        .count();
    let retries: u32 = results.iter().map(|r| r.retries).sum();
    eprintln!(
        "race (R{replicas}): {WRITERS} processes x {ROUNDS} rounds in {raced:.2?} ({:.1} ms/round): \
         {} winners, {conflicts} conflicts, {retries} infrastructure retries, wins per writer \
         {wins_per_writer:?}; total {:.2?}",
        raced.as_secs_f64() * 1000.0 / f64::from(ROUNDS),
        results.iter().filter(|r| r.won()).count(),
        started.elapsed()
    );
}

/// The invariants, from the children's reports and the stored history.
async fn check(store: &JetStreamEventStore, actor: &ActorId, results: &[RoundResult]) {
    let mut by_round: BTreeMap<u32, Vec<&RoundResult>> = BTreeMap::new();
    for r in results {
        by_round.entry(r.round).or_default().push(r);
    }
    assert_eq!(by_round.len(), ROUNDS as usize, "rounds reported");
    for (round, rs) in &by_round {
        assert_eq!(rs.len(), WRITERS as usize, "round {round}: {rs:#?}");
        let winners: Vec<_> = rs.iter().filter(|r| r.won()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner expected: {rs:#?}"
        );
        for r in rs {
            assert_eq!(
                r.read,
                u64::from(*round),
                "round {round}: writer {} read latest_version {} after its previous save returned, \
                 but {round} events were acknowledged by then: {rs:#?}",
                r.writer,
                r.read
            );
            assert_eq!(r.version, r.read + 1);
            match r.outcome {
                Outcome::Conflict => assert!(
                    r.current >= r.version,
                    "round {round}: a conflict must name a current version >= the attempted one: {r:?}"
                ),
                Outcome::Duplicate => assert!(
                    r.retries > 0,
                    "round {round}: a fresh event reported Duplicate without an earlier try: {r:?}"
                ),
                Outcome::Saved => {}
            }
        }
    }

    let acked: HashMap<&str, &RoundResult> = results
        .iter()
        .filter(|r| r.won())
        .map(|r| (r.id.as_str(), r))
        .collect();
    let conflicted: HashSet<&str> = results
        .iter()
        .filter(|r| r.outcome == Outcome::Conflict)
        .map(|r| r.id.as_str())
        .collect();
    let stored = read_all(store, actor).await;
    let versions: Vec<u64> = stored.iter().map(|e| e.version).collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "stored versions not strictly increasing: {versions:?}"
    );
    assert_eq!(
        versions,
        (1..=u64::from(ROUNDS)).collect::<Vec<_>>(),
        "stored versions should be exactly 1..={ROUNDS}"
    );
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for event in &stored {
        *seen.entry(event.id.as_str()).or_default() += 1;
        assert!(
            !conflicted.contains(event.id.as_str()),
            "event {} (v{}) is stored but its writer got a VersionConflict",
            event.id,
            event.version
        );
        let winner = acked.get(event.id.as_str()).unwrap_or_else(|| {
            panic!(
                "event {} (v{}) is stored but nobody got Ok for it",
                event.id, event.version
            )
        });
        assert_eq!(
            winner.version, event.version,
            "stored version of {}",
            event.id
        );
    }
    for id in acked.keys() {
        assert_eq!(
            seen.get(id).copied().unwrap_or(0),
            1,
            "acknowledged event {id} stored exactly once"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Child

struct ChildParams {
    url: String,
    namespace: Namespace,
    actor: ActorId,
    writer: u32,
    rounds: u32,
    replicas: usize,
    barrier: String,
}

impl ChildParams {
    fn from_env() -> Option<Self> {
        let url = std::env::var(env::URL).ok()?;
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
        Some(Self {
            url,
            namespace: Namespace::new(var(env::NAMESPACE)).expect("namespace"),
            actor: ActorId::new(var(env::ACTOR)).expect("actor id"),
            writer: var(env::WRITER).parse().expect("writer index"),
            rounds: var(env::ROUNDS).parse().expect("rounds"),
            replicas: var(env::REPLICAS).parse().expect("replicas"),
            barrier: var(env::BARRIER),
        })
    }
}

async fn run_child(p: ChildParams) {
    let deadline = Instant::now() + CHILD_DEADLINE;
    let config = JetStreamConfig {
        replicas: p.replicas,
        ..JetStreamConfig::default()
    };
    let store = JetStreamEventStore::connect_with(&p.url, p.namespace.clone(), config)
        .await
        .unwrap_or_else(|e| panic!("writer {}: open store at {}: {e}", p.writer, p.url));
    let client = store.client().clone();
    let mut go = client
        .subscribe(format!("{}.go", p.barrier))
        .await
        .expect("subscribe to go");
    // The subscription is registered before any ready announcement is sent.
    client.flush().await.expect("flush");

    for round in 0..p.rounds {
        // Read before the barrier: every round-(r-1) save has returned by now (the winner's
        // landed), and nobody writes again before the go, so all four read the same head and
        // then race for the same version. Reading after the go would let a fast process write
        // before a slow one reads, and the slow one would win the next version unopposed.
        let mut retries = 0;
        let read = loop {
            match store.latest_version(&p.actor).await {
                Ok(v) => break v,
                Err(e) => {
                    retries += 1;
                    infrastructure_retry(&p, round, &e, retries).await;
                }
            }
        };
        // Barrier: announce, wait for the parent's go for this round (re-announce if it is lost).
        'barrier: loop {
            assert!(
                Instant::now() < deadline,
                "writer {}: race not over after {CHILD_DEADLINE:?}",
                p.writer
            );
            client
                .publish(
                    format!("{}.ready", p.barrier),
                    format!("{round} {}", p.writer).into(),
                )
                .await
                .expect("publish ready");
            client.flush().await.expect("flush");
            let resend_at = tokio::time::Instant::now() + READY_RESEND;
            while let Ok(next) = tokio::time::timeout_at(resend_at, go.next()).await {
                let message = next.expect("go subscription closed");
                if message.payload.as_ref() == round.to_string().as_bytes() {
                    break 'barrier;
                }
            }
        }

        let event = Event::new(p.actor.clone(), "Raced", read + 1);
        let (outcome, current) = loop {
            match store.save_event(event.clone()).await {
                Ok(SaveOutcome::Duplicate) => break (Outcome::Duplicate, 0),
                Ok(_) => break (Outcome::Saved, 0),
                Err(StoreError::VersionConflict {
                    current_version, ..
                }) => break (Outcome::Conflict, current_version),
                // Retrying the same event settles an unknown outcome.
                Err(e) => {
                    retries += 1;
                    infrastructure_retry(&p, round, &e, retries).await;
                }
            }
        };
        let result = RoundResult {
            writer: p.writer,
            round,
            read,
            version: event.version,
            outcome,
            id: event.id.to_string(),
            current,
            retries,
        };
        println!("{}", result.to_line());
    }
}

/// Logs an infrastructure error and waits before the retry; anything else fails the child.
async fn infrastructure_retry(p: &ChildParams, round: u32, error: &StoreError, retries: u32) {
    assert_eq!(
        error.kind(),
        ErrorKind::Infrastructure,
        "writer {} round {round}: unexpected error: {error}",
        p.writer
    );
    assert!(
        retries <= 20,
        "writer {} round {round}: giving up after {retries} errors: {error}",
        p.writer
    );
    eprintln!("writer {} round {round}: retrying after: {error}", p.writer);
    tokio::time::sleep(Duration::from_millis(200)).await;
}
