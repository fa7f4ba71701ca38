//! Actors hosted by real cluster nodes (feature `cluster`): each node a `ClusterManager`
//! (membership, leader election, the rebalancer writing placements) and a `ClusterActors`
//! joined to it, on one real `nats-server`. Under a steady stream of commands, shards move to
//! a node that joins and away from a node that leaves, with every command acknowledged once
//! and every actor's state intact. Needs `nats-server` >= 2.12; fails (never skips) with the
//! install command when it is missing.

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aether_actor::cluster::{ClusterActors, RoutingConfig};
use aether_actor::{ActorConfig, AskOptions, CommandId};
use aether_cluster::{ClusterConfig, ClusterManager};
use aether_core::{ActorId, EventStore, Namespace, NodeId, ShardCount};
use aether_nats::JetStreamEventStore;
use aether_testkit::nats_server::NatsServer;
use bank::{Answer, Bank, Command, Query};
use serde::{Deserialize, Serialize};

const SHARDS: u32 = 16;
/// Longest wait for the cluster to reach a state.
const SETTLE: Duration = Duration::from_secs(20);

type Host = ClusterActors<Bank, JetStreamEventStore>;

struct Node {
    manager: ClusterManager,
    host: Host,
}

fn config(cluster: &str, id: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(NodeId::new(id).unwrap());
    config.cluster_name = cluster.to_owned();
    config.heartbeat = Duration::from_millis(250);
    config.member_ttl = Duration::from_secs(1);
    config.probe_timeout = Duration::from_millis(250);
    config.lease_ttl = Duration::from_secs(2);
    config.lease_margin = Duration::from_millis(300);
    config.request_timeout = Duration::from_secs(1);
    config.stabilization_delay = Duration::from_millis(300);
    config.move_interval = Duration::from_millis(100);
    config.shard_count = ShardCount::new(SHARDS).unwrap();
    config
}

async fn start_node(server: &NatsServer, cluster: &str, namespace: &Namespace, id: &str) -> Node {
    start_node_with(server, config(cluster, id), namespace).await
}

async fn start_node_with(
    server: &NatsServer,
    config: ClusterConfig,
    namespace: &Namespace,
) -> Node {
    let id = config.node_id.clone();
    let client = async_nats::connect(server.url()).await.expect("connect");
    let manager = Box::pin(ClusterManager::start(client.clone(), config))
        .await
        .unwrap_or_else(|e| panic!("manager {id}: {e}"));
    let store = JetStreamEventStore::connect(&server.url(), namespace.clone())
        .await
        .expect("store");
    let host = ClusterActors::join(
        &manager,
        client,
        namespace.clone(),
        Bank,
        store,
        ActorConfig::default(),
        RoutingConfig::default(),
    )
    .await
    .expect("host joins");
    Node { manager, host }
}

/// Waits until every shard is owned by one of `nodes`, each of them owning some, under a
/// settled placement that all of them have adopted; returns how many shards each owns.
async fn settled(nodes: &[&Node]) -> BTreeMap<String, usize> {
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
            {
                let mut counts = BTreeMap::new();
                for slot in &first.shards {
                    let owner = slot.owner.as_ref().map(|o| o.node.to_string());
                    *counts.entry(owner.unwrap_or_default()).or_insert(0) += 1;
                }
                let ours: Vec<String> = nodes
                    .iter()
                    .map(|n| n.manager.node_id().to_string())
                    .collect();
                if counts.len() == nodes.len() && ours.iter().all(|id| counts.contains_key(id)) {
                    return counts;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SETTLE, wait)
        .await
        .expect("the cluster settles")
}

fn actor(i: usize) -> ActorId {
    ActorId::new(format!("acct-{i}")).unwrap()
}

/// Sends deposits of 1 to `actors` round after round through `via`, until `stop`; returns
/// how many each got acknowledged. Every command must succeed.
fn steady_load(
    via: Host,
    actors: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut acked = vec![0u64; actors];
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for (i, count) in acked.iter_mut().enumerate() {
                let id = actor(i);
                // Fixed command ids: a retry inside the router keeps them; the outcome says
                // whether it was a duplicate.
                let options = AskOptions {
                    timeout: Duration::from_secs(15),
                    ..AskOptions::default()
                }
                .command_id(CommandId::new(format!("load-{i}-{round}")).unwrap());
                let outcome = via
                    .ask_with(&id, Command::Deposit { cents: 1 }, options)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}, {id}: {e}"));
                assert!(!outcome.duplicate, "{id} round {round}");
                *count += 1;
            }
            round += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked
    })
}

async fn balance(host: &Host, id: &ActorId) -> u64 {
    match host.query(id, Query::Balance).await.expect("query") {
        Answer::Balance(b) => b,
        other => panic!("not a balance: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_move_to_a_joining_node_and_off_a_leaving_one_with_no_command_lost() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let cluster = format!("actors-{}", uuid::Uuid::now_v7().simple());
    let namespace = Namespace::new(format!("nodes-{}", uuid::Uuid::now_v7().simple())).unwrap();
    let n1 = start_node(&server, &cluster, &namespace, "n1").await;
    let n2 = start_node(&server, &cluster, &namespace, "n2").await;
    let before = settled(&[&n1, &n2]).await;
    assert_eq!(before.values().sum::<usize>(), SHARDS as usize);
    assert_eq!(before.len(), 2, "{before:?}");

    const ACTORS: usize = 24;
    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(n1.host.clone(), ACTORS, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A third node joins: shards move to it, each after its earlier owner released it.
    let n3 = start_node(&server, &cluster, &namespace, "n3").await;
    let with_three = settled(&[&n1, &n2, &n3]).await;
    assert_eq!(with_three.len(), 3, "{with_three:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // n2 leaves gracefully: its actors stop first, then its membership.
    n2.host.shutdown().await;
    n2.manager.shutdown().await.expect("n2 leaves");
    let after = settled(&[&n1, &n3]).await;
    assert_eq!(after.len(), 2, "{after:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    let acked = load.await.expect("load");
    let (s1, s2, s3) = (n1.host.stats(), n2.host.stats(), n3.host.stats());
    println!(
        "acked {}; n1 {s1:?}, n2 {s2:?}, n3 {s3:?}",
        acked.iter().sum::<u64>()
    );
    // Planned moves never need the fence: every earlier owner released before the new one
    // served.
    assert_eq!((s1.fenced, s2.fenced, s3.fenced), (0, 0, 0));
    let store = JetStreamEventStore::connect(&server.url(), namespace.clone())
        .await
        .expect("store");
    for (i, &count) in acked.iter().enumerate() {
        let id = actor(i);
        assert!(count > 0);
        // Every acknowledged command applied exactly once.
        assert_eq!(balance(&n3.host, &id).await, count, "{id}");
        let stream = n1.host.local().stream_id(&id).unwrap();
        assert_eq!(store.latest_version(&stream).await.unwrap(), count, "{id}");
    }
    for node in [n1, n3] {
        node.host.shutdown().await;
        node.manager.shutdown().await.expect("leave");
    }
}

/// An actor whose commands take a while (to keep a request in flight during a handoff).
struct Slow;

#[derive(Debug, Serialize, Deserialize)]
enum Slept {
    Slept { ms: u64 },
}

impl aether_actor::Actor for Slow {
    const ACTOR_TYPE: &'static str = "slow";
    type State = u64;
    type Command = u64;
    type Event = Slept;
    type Reply = u64;
    type Rejection = String;
    type Query = ();
    type QueryReply = u64;

    fn decide(&self, _: &u64, ms: u64) -> Result<aether_actor::Decision<Self>, String> {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(aether_actor::Decision::new(vec![Slept::Slept { ms }], ms))
    }

    fn apply(&self, total: &mut u64, Slept::Slept { ms }: &Slept) {
        *total += ms;
    }

    fn query(&self, total: &u64, (): ()) -> u64 {
        *total
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_ends_though_the_membership_is_still_current() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let cluster = format!("leave-{}", uuid::Uuid::now_v7().simple());
    let client = async_nats::connect(server.url()).await.expect("connect");
    let manager = Box::pin(ClusterManager::start(
        client.clone(),
        config(&cluster, "n1"),
    ))
    .await
    .expect("manager");
    let host = ClusterActors::join(
        &manager,
        client,
        Namespace::new("slow").unwrap(),
        Slow,
        aether_core::InMemoryEventStore::new(),
        ActorConfig::default(),
        RoutingConfig::default(),
    )
    .await
    .expect("host");
    let id = ActorId::new("s-1").unwrap();
    tokio::time::timeout(SETTLE, async {
        while host.ask(&id, 1).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the node serves its shards");
    // A command in flight keeps the shard draining for longer than the host's membership
    // check period: the check, finding the membership current, must not serve again.
    let slow = tokio::spawn({
        let host = host.clone();
        let id = id.clone();
        async move { host.ask(&id, 600).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(10), host.shutdown())
        .await
        .expect("the shutdown hands every shard off and ends");
    let slow = slow.await.expect("the slow command's task");
    assert_eq!(slow.expect("the command in flight finished").reply, 600);
    manager.shutdown().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_three_nodes_under_steady_load_fails_no_command() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let cluster = format!("rolling-{}", uuid::Uuid::now_v7().simple());
    let namespace = Namespace::new(format!("rolling-{}", uuid::Uuid::now_v7().simple())).unwrap();
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(start_node(&server, &cluster, &namespace, id).await);
    }
    // The client: a member of weight 0, owning nothing, through which the load goes.
    let client = {
        let mut config = config(&cluster, "client");
        config.metadata.weight = 0;
        start_node_with(&server, config, &namespace).await
    };
    settled(&nodes.iter().collect::<Vec<_>>()).await;

    const ACTORS: usize = 24;
    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(client.host.clone(), ACTORS, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..3 {
        // Each node in turn: hands its shards off and leaves, then starts again.
        let node = nodes.remove(0);
        let id = node.manager.node_id().to_string();
        node.host.shutdown().await;
        node.manager.shutdown().await.expect("leaves");
        let others: Vec<&Node> = nodes.iter().collect();
        settled(&others).await;
        nodes.push(start_node(&server, &cluster, &namespace, &id).await);
        settled(&nodes.iter().collect::<Vec<_>>()).await;
        println!("round {round}: {id} restarted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    // Every command of the load was acknowledged (the load panics on any failure).
    let acked = load.await.expect("no command failed");
    let stats: Vec<_> = nodes.iter().map(|n| n.host.stats()).collect();
    println!(
        "acked {}; nodes {stats:?}; client {:?}",
        acked.iter().sum::<u64>(),
        client.host.stats()
    );
    for (i, &count) in acked.iter().enumerate() {
        let id = actor(i);
        assert_eq!(balance(&client.host, &id).await, count, "{id}");
    }
    for node in nodes.into_iter().chain([client]) {
        node.host.shutdown().await;
        node.manager.shutdown().await.expect("leave");
    }
}
