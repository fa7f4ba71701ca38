//! `docs/metrics.md` against the code, both ways (feature `cluster`, a real `nats-server`): a
//! workload on every store (in-memory, SQLite, JetStream), the local and the NATS bus (live and
//! durable) and a two-node cluster with actors records metrics through a recorder that also
//! keeps what `describe_all` describes. Every name recorded is in the table with its type and
//! labels; every name in the table is described with its unit, and recorded unless it only
//! counts a rare event (listed below); nothing is described that the table lacks. Fails
//! (never skips) when `nats-server` is missing.

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_actor::ActorConfig;
use aether_actor::cluster::{ClusterActors, RoutingConfig};
use aether_cluster::{ClusterConfig, ClusterManager};
use aether_core::{
    ActorId, ActorSnapshot, Event, EventBus, EventFeed, FeedPosition, FencedEventStore,
    InMemoryEventStore, Namespace, NodeId, OwnerEpoch, ShardCount, SnapshotStore,
};
use aether_nats::{DurableOptions, JetStreamEventStore, NatsEventBus};
use aether_testkit::nats_server::NatsServer;
use bank::{Bank, Command};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebuggingRecorder, Snapshotter};

/// Names of the table that count events a healthy short run does not have: described and
/// documented, not necessarily recorded.
const RARE: &[&str] = &[
    "aether_cluster_lease_lost_total",
    "aether_cluster_shard_map_fenced_total",
    "aether_cluster_rebalance_conflicts_total",
    "aether_cluster_handoffs_settled_total",
    "aether_cluster_membership_events_total",
];

/// Patience for the cluster to place every shard (a property of the cluster's timings, with
/// room for a slow machine).
const PATIENCE: Duration = Duration::from_secs(60);

/// What was described: name → (type, unit).
type Described = Arc<Mutex<BTreeMap<String, (&'static str, Option<Unit>)>>>;

/// A `DebuggingRecorder` that also keeps what is described.
struct Recording {
    inner: DebuggingRecorder,
    described: Described,
}

impl Recording {
    fn describe(&self, kind: &'static str, key: &KeyName, unit: Option<Unit>) {
        self.described
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned(), (kind, unit));
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe("counter", &key, unit);
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe("gauge", &key, unit);
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe("histogram", &key, unit);
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.inner.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.inner.register_histogram(key, metadata)
    }
}

/// One row of the table.
#[derive(Debug)]
struct Row {
    kind: String,
    unit: String,
    labels: BTreeSet<String>,
}

fn table() -> BTreeMap<String, Row> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `aether_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let labels = match cells[4] {
            "—" => BTreeSet::new(),
            labels => labels.split(',').map(|l| l.trim().to_owned()).collect(),
        };
        let row = Row {
            kind: cells[2].to_owned(),
            unit: cells[3].to_owned(),
            labels,
        };
        assert!(
            rows.insert(name.clone(), row).is_none(),
            "{name} listed twice"
        );
    }
    assert!(
        rows.len() > 50,
        "the table was not read: {} rows",
        rows.len()
    );
    rows
}

fn kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    }
}

async fn exercise_store<S>(store: &S, actor: &str)
where
    S: SnapshotStore + FencedEventStore + EventFeed,
{
    let id = ActorId::new(actor).unwrap();
    store
        .save_event(Event::new(id.clone(), "Opened", 1))
        .await
        .unwrap();
    let second = Event::new(id.clone(), "Deposited", 2);
    store.save_events(vec![second.clone()]).await.unwrap();
    assert!(store.save_event(second).await.unwrap().is_duplicate());
    assert!(
        store
            .save_event(Event::new(id.clone(), "Late", 1))
            .await
            .is_err()
    );
    assert!(store.save_events(Vec::new()).await.is_err());
    store.events_with_errors(&id, 0).await.unwrap();
    store
        .save_snapshot(ActorSnapshot::new(
            id.clone(),
            2,
            serde_json::json!({"n": 2}),
        ))
        .await
        .unwrap();
    store.load(&id).await.unwrap();
    store
        .read_feed(FeedPosition::START, NonZeroUsize::new(10).unwrap())
        .await
        .unwrap();
    store.fence(&id, OwnerEpoch::new(5)).await.unwrap();
    let refused = store
        .save_events_as(vec![Event::new(id, "Stale", 3)], OwnerEpoch::new(1))
        .await;
    assert!(refused.is_err_and(|e| e.is_fenced()));
}

async fn wait_placed(managers: &[&ClusterManager]) {
    let started = Instant::now();
    loop {
        let placed = managers.iter().all(|m| {
            let placement = m.watch_placement().borrow().clone();
            placement
                .shards
                .iter()
                .all(|s| s.owner.is_some() && s.moving_from.is_none())
                && placement.shards.iter().any(|s| {
                    s.owner
                        .as_ref()
                        .is_some_and(|o| &o.node != managers[0].node_id())
                })
        });
        if placed {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the cluster did not place every shard on both nodes within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `future`, or a panic naming `what` if it takes longer than [`PATIENCE`].
async fn step<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}"))
}

async fn workload(server: &NatsServer) {
    // Stores.
    exercise_store(&InMemoryEventStore::new(), "mem-1").await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = aether_sqlite::SqliteEventStore::open(
        dir.path(),
        Namespace::new("docs").unwrap(),
        Default::default(),
    )
    .unwrap();
    exercise_store(&sqlite, "sql-1").await;
    let url = server.url();
    let js = JetStreamEventStore::connect(&url, Namespace::new("docs").unwrap())
        .await
        .unwrap();
    exercise_store(&js, "js-1").await;

    // The local bus.
    let ns = Namespace::new("docs").unwrap();
    let local = EventBus::new();
    let mut sub = local.subscribe(&ns);
    local
        .publish(&ns, Event::new(ActorId::new("a").unwrap(), "T", 1))
        .await;
    sub.recv().await.unwrap();

    // The NATS bus, live and durable.
    let a = NatsEventBus::connect(&url).await.unwrap();
    let b = NatsEventBus::connect(&url).await.unwrap();
    let mut live = b.subscribe(&ns);
    b.flush().await.unwrap();
    a.publish(&ns, Event::new(ActorId::new("a").unwrap(), "T", 1))
        .await;
    step("a live event", live.recv()).await.unwrap();
    // Created first: a new durable subscription starts with the events published after it.
    let mut durable = b
        .subscribe_durable("docs", &ns, DurableOptions::new())
        .await
        .unwrap();
    a.publish_durable(&ns, Event::new(ActorId::new("a").unwrap(), "T", 2))
        .await
        .unwrap();
    step("a durable event", durable.recv())
        .await
        .unwrap()
        .unwrap();
    durable.ack().await.unwrap();

    // A two-node cluster with actors; calls from both nodes, some of them remote.
    let cluster_name = format!("docs-{}", uuid::Uuid::now_v7().simple());
    let mut hosts = Vec::new();
    let mut managers = Vec::new();
    for id in ["n1", "n2"] {
        let client = async_nats::connect(&url).await.unwrap();
        let mut config = ClusterConfig::new(NodeId::new(id).unwrap());
        config.cluster_name = cluster_name.clone();
        config.shard_count = ShardCount::new(4).unwrap();
        config.stabilization_delay = Duration::from_millis(100);
        config.move_interval = Duration::from_millis(50);
        config.max_moves_per_step = 4;
        let manager = ClusterManager::start(client.clone(), config).await.unwrap();
        let store =
            JetStreamEventStore::with_client(client.clone(), ns.clone(), Default::default())
                .await
                .unwrap();
        let host = ClusterActors::join(
            &manager,
            client,
            ns.clone(),
            Bank,
            store,
            ActorConfig::default(),
            RoutingConfig::default(),
        )
        .await
        .unwrap();
        managers.push(manager);
        hosts.push(host);
    }
    wait_placed(&managers.iter().collect::<Vec<_>>()).await;
    for i in 0..8 {
        let id = ActorId::new(format!("acct-{i}")).unwrap();
        for host in &hosts {
            step("an ask", host.ask(&id, Command::Deposit { cents: 1 }))
                .await
                .unwrap();
            step("a query", host.query(&id, bank::Query::Balance))
                .await
                .unwrap();
        }
    }
    for host in &hosts {
        host.shutdown().await;
    }
    for manager in managers {
        let _ = manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_table_matches_what_the_code_records_and_describes() {
    let inner = DebuggingRecorder::new();
    let snapshotter: Snapshotter = inner.snapshotter();
    let described = Described::default();
    metrics::set_global_recorder(Recording {
        inner,
        described: described.clone(),
    })
    .expect("the only recorder");
    aether_actor::metrics::describe_all();

    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    workload(&server).await;

    let table = table();
    let mut recorded: BTreeMap<String, (&'static str, BTreeSet<String>)> = BTreeMap::new();
    for (key, _, _, _) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let name = key.name().to_owned();
        if !name.starts_with("aether_") {
            continue;
        }
        let labels: BTreeSet<String> = key.labels().map(|l| l.key().to_owned()).collect();
        recorded.insert(name, (kind_name(kind), labels));
    }
    // Everything recorded is documented, with its type and labels.
    for (name, (kind, labels)) in &recorded {
        let row = table
            .get(name)
            .unwrap_or_else(|| panic!("{name} is recorded but not in docs/metrics.md"));
        assert_eq!(&row.kind, kind, "type of {name}");
        assert_eq!(&row.labels, labels, "labels of {name}");
    }
    // Everything documented is recorded by the workload, but for the rare events.
    let missing: Vec<&String> = table
        .keys()
        .filter(|n| !recorded.contains_key(*n) && !RARE.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but never recorded: {missing:?}"
    );
    // Described exactly as documented.
    let described = described.lock().unwrap();
    for (name, row) in &table {
        let (kind, unit) = described
            .get(name)
            .unwrap_or_else(|| panic!("{name} is documented but not described"));
        assert_eq!(&row.kind, kind, "described type of {name}");
        assert_eq!(
            Some(row.unit.as_str()),
            unit.map(|u| u.as_str()),
            "unit of {name}"
        );
    }
    let undocumented: Vec<&String> = described
        .keys()
        .filter(|n| !table.contains_key(*n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "described but not documented: {undocumented:?}"
    );
}
