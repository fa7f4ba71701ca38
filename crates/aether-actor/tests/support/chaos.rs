//! The chaos test's run: NATS (one server, or three in a cluster with R3 streams), node
//! processes hosting the demo accounts, clients sending commands and queries through a client
//! node of weight 0, a nemesis that kills, pauses, restarts and adds nodes and restarts a NATS
//! server, then the history checker.

#[path = "chaos/checker.rs"]
mod checker;
#[path = "chaos/load.rs"]
mod load;
#[path = "chaos/nodes.rs"]
mod nodes;
#[path = "chaos/probe.rs"]
mod probe;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aether_actor::cluster::demo::Account;
use aether_actor::cluster::{ClusterActors, RoutingConfig};
use aether_actor::{Actor, ActorConfig};
use aether_cluster::{ClusterConfig, ClusterManager};
use aether_core::{Namespace, NodeId, ShardCount};
use aether_nats::{JetStreamConfig, JetStreamEventStore};
use aether_testkit::nats_server::{NatsCluster, NatsServer, ServerOptions};
use tokio::time::Instant;

use checker::Verdict;
use load::History;
use nodes::{NodeProcess, NodeSetup};

/// Which NATS the run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nats {
    /// One server (fsync on every write, so that its restart loses nothing acknowledged).
    Single,
    /// Three servers, R3 streams.
    Cluster,
}

/// How long and how hard a run goes.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) nats: Nats,
    /// How long the load runs; the nemesis repeats its round of faults while it does.
    pub(crate) duration: Duration,
    pub(crate) actors: usize,
    pub(crate) clients: usize,
    pub(crate) member_ttl: Duration,
}

/// What a run found.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) verdict: Verdict,
    pub(crate) moved: u64,
    pub(crate) retries: u64,
    pub(crate) fenced: u64,
    pub(crate) faults: Vec<String>,
    /// When the load started.
    pub(crate) started: Instant,
    /// Queries sent to a paused node for the actors it served, answered when it woke (and
    /// checked like the others) or refused.
    pub(crate) probes_answered: u64,
    pub(crate) probes_refused: u64,
}

impl Report {
    pub(crate) fn print(&self) {
        let v = &self.verdict;
        println!(
            "chaos: commands {}, acked {}, unknown (timed out or failed after retries) {}, \
             commands retried by clients {}, queries {}; events {}, fences {}; moved answers {}, \
             router retries {}, fenced writes {}; longest stall {:.2?}",
            v.commands,
            v.acked,
            v.unknown,
            v.retried_commands,
            v.queries,
            v.events,
            v.fences,
            self.moved,
            self.retries,
            self.fenced,
            v.longest_stall
        );
        println!(
            "chaos: queries to a paused node for its actors, sent with its old placement \
             version and read when it woke: {} refused (moved or unavailable), {} answered \
             (checked); counts of SIGKILLed nodes are lost",
            self.probes_refused, self.probes_answered
        );
        println!(
            "chaos: faults (time since the load started): {}",
            self.faults.join("; ")
        );
        let stalls: Vec<String> = v
            .stalls
            .iter()
            .map(|(sent, d)| {
                format!(
                    "{d:.2?} from {:.1?}",
                    sent.saturating_duration_since(self.started)
                )
            })
            .collect();
        println!("chaos: longest stalls: {}", stalls.join(", "));
        for violation in v.violations.iter().take(20) {
            println!("VIOLATION: {violation}");
        }
    }
}

/// The NATS servers of a run.
enum Servers {
    Single(NatsServer),
    Cluster(NatsCluster),
}

impl Servers {
    fn start(nats: Nats) -> Self {
        match nats {
            Nats::Single => Self::Single(
                NatsServer::start_with(&ServerOptions::new().sync_always())
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            Nats::Cluster => Self::Cluster(NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"))),
        }
    }

    fn urls(&self) -> String {
        match self {
            Self::Single(server) => server.url(),
            Self::Cluster(cluster) => cluster.urls().join(","),
        }
    }

    fn replicas(&self) -> usize {
        match self {
            Self::Single(_) => 1,
            Self::Cluster(_) => 3,
        }
    }

    /// Kills a server (the `round`-th of a cluster) and starts it again.
    fn restart(&mut self, round: usize) -> String {
        match self {
            Self::Single(server) => {
                server
                    .restart()
                    .unwrap_or_else(|e| panic!("restart nats-server: {e}"));
                "nats-server killed and restarted".to_owned()
            }
            Self::Cluster(cluster) => {
                let nodes = cluster.nodes();
                let i = round % nodes.len();
                let node = &mut nodes[i];
                node.kill();
                node.start()
                    .unwrap_or_else(|e| panic!("restart nats server {i}: {e}"));
                node.wait_ready(Duration::from_secs(30))
                    .unwrap_or_else(|e| panic!("nats server {i} ready: {e}"));
                format!("nats server {i} killed and restarted")
            }
        }
    }
}

/// The client node: a cluster member of weight 0 (it owns no shards) hosting no actors.
async fn client_node(setup: &NodeSetup, namespace: &Namespace) -> (ClusterManager, load::Client) {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(setup.nats.split(',').collect::<Vec<_>>())
        .await
        .expect("client connects");
    let mut config = ClusterConfig::new(NodeId::new("client").unwrap());
    config.cluster_name = setup.cluster.clone();
    config.metadata.weight = 0;
    config.shard_count = ShardCount::new(setup.shards).unwrap();
    config.replicas = setup.replicas;
    let ttl = setup.member_ttl;
    config.member_ttl = ttl;
    config.heartbeat = ttl / 6;
    config.probe_timeout = ttl / 6;
    config.lease_ttl = ttl * 2;
    config.lease_margin = ttl / 5;
    config.stabilization_delay = ttl / 3;
    config.move_interval = Duration::from_millis(100);
    config.request_timeout = ttl;
    let manager = Box::pin(ClusterManager::start(client.clone(), config))
        .await
        .expect("client manager");
    let store = JetStreamEventStore::with_client(
        client.clone(),
        namespace.clone(),
        JetStreamConfig {
            replicas: setup.replicas,
            ..JetStreamConfig::default()
        },
    )
    .await
    .expect("client store");
    let host = ClusterActors::join(
        &manager,
        client,
        namespace.clone(),
        Account,
        store,
        ActorConfig::default(),
        RoutingConfig::default(),
    )
    .await
    .expect("client host");
    (manager, host)
}

fn stat(line: &serde_json::Value, key: &str) -> u64 {
    line.get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// Runs `plan` and returns what the checker found.
pub(crate) async fn run(plan: Plan) -> Report {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut servers = Servers::start(plan.nats);
    let namespace = Namespace::new(format!("chaos-{millis}")).unwrap();
    let setup = NodeSetup {
        nats: servers.urls(),
        cluster: format!("chaos-{millis}"),
        namespace: namespace.as_str().to_owned(),
        shards: 32,
        replicas: servers.replicas(),
        member_ttl: plan.member_ttl,
    };
    let patience = Duration::from_secs(60);
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(NodeProcess::start(&setup, id, patience).await);
    }
    let (manager, client) = client_node(&setup, &namespace).await;
    // Every shard served before the load starts.
    let placements = manager.watch_placement();
    tokio::time::timeout(patience, async {
        loop {
            {
                let p = placements.borrow();
                if p.version.get() > 0
                    && !p.is_moving()
                    && p.shards.iter().all(|s| s.owner.is_some())
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the nodes share the shards");

    let seed = u64::try_from(millis).unwrap_or(1);
    println!("chaos: {plan:?}, seed {seed}");
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = plan.member_ttl * 12;
    let clients: Vec<_> = (0..plan.clients)
        .map(|number| {
            tokio::spawn(load::client(
                client.clone(),
                number,
                seed,
                plan.actors,
                deadline,
                3,
                stop.clone(),
            ))
        })
        .collect();

    // The nemesis: rounds of faults until the duration is over.
    let ttl = plan.member_ttl;
    let started = Instant::now();
    let mut faults = Vec::new();
    let mut next_id = 4;
    let mut round = 0;
    let mut finals = Vec::new();
    let probe_client = async_nats::connect(setup.nats.split(',').next().unwrap())
        .await
        .expect("probe client connects");
    let mut probes = History::default();
    let mut probes_refused = 0u64;
    while started.elapsed() < plan.duration {
        tokio::time::sleep(ttl * 2).await;
        // A node crashes, and comes back as a new process.
        let victim = nodes.remove(round % nodes.len());
        let id = victim.id.clone();
        victim.kill().await;
        faults.push(format!("{:.1?} {id} SIGKILLed", started.elapsed()));
        tokio::time::sleep(ttl).await;
        nodes.push(NodeProcess::start(&setup, &id, patience).await);
        tokio::time::sleep(ttl * 2).await;
        // A node is paused past its TTL (a zombie when it wakes), then resumed. Queries for
        // the actors it served, carrying the placement version from before the pause, wait
        // for it in its socket: the first thing it does on waking is to answer them (or
        // refuse them). Their answers are checked like every other query.
        let zombie = &nodes[round % nodes.len()];
        let paused_at = started.elapsed();
        let before = manager.watch_placement().borrow().clone();
        let served: Vec<usize> = (0..plan.actors)
            .filter(|&a| {
                client
                    .shard_of(&load::actor_id(a))
                    .ok()
                    .is_some_and(|shard| {
                        before
                            .slot(shard)
                            .and_then(|s| s.owner.as_ref())
                            .is_some_and(|o| o.node.as_str() == zombie.id)
                    })
            })
            .take(8)
            .collect();
        zombie.pause();
        tokio::time::sleep(ttl * 3).await;
        let probing: Vec<_> = served
            .iter()
            .map(|&actor| {
                tokio::spawn(probe::stale_query(
                    probe_client.clone(),
                    namespace.clone(),
                    zombie.id.clone(),
                    before.version.get(),
                    actor,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        zombie.resume();
        for task in probing {
            match task.await.expect("a probe task") {
                Some(record) => probes.queries.push(record),
                None => probes_refused += 1,
            }
        }
        faults.push(format!(
            "{paused_at:.1?} {} SIGSTOPped for {:?}",
            zombie.id,
            ttl * 3
        ));
        tokio::time::sleep(ttl * 2).await;
        // A NATS server restarts.
        let at = started.elapsed();
        faults.push(format!("{at:.1?} {}", servers.restart(round)));
        tokio::time::sleep(ttl * 2).await;
        // A node joins, another leaves gracefully.
        let id = format!("n{next_id}");
        next_id += 1;
        nodes.push(NodeProcess::start(&setup, &id, patience).await);
        faults.push(format!("{:.1?} {id} added", started.elapsed()));
        tokio::time::sleep(ttl * 2).await;
        let leaving = nodes.remove(0);
        faults.push(format!("{:.1?} {} left", started.elapsed(), leaving.id));
        finals.push(leaving.stop(patience).await);
        round += 1;
    }
    tokio::time::sleep(ttl * 2).await;
    stop.store(true, Ordering::Relaxed);
    let mut histories: Vec<History> = Vec::new();
    for task in clients {
        histories.push(task.await.expect("a client task"));
    }
    let probes_answered = probes.queries.len() as u64;
    histories.push(probes);
    let client_stats = client.stats();
    for node in nodes {
        finals.push(node.stop(patience).await);
    }
    let records = checker::read_all(
        &async_nats::connect(setup.nats.split(',').next().unwrap())
            .await
            .expect("checker connects"),
        &namespace,
    )
    .await;
    client.shutdown().await;
    let _ = manager.shutdown().await;
    let verdict = checker::check(&records, &histories, |actor| {
        format!("{}.{}", Account::ACTOR_TYPE, load::actor_id(actor))
    });
    Report {
        verdict,
        moved: finals.iter().map(|l| stat(l, "moved")).sum(),
        retries: client_stats.retries + finals.iter().map(|l| stat(l, "retries")).sum::<u64>(),
        fenced: client_stats.fenced + finals.iter().map(|l| stat(l, "fenced")).sum::<u64>(),
        faults,
        started,
        probes_answered,
        probes_refused,
    }
}
