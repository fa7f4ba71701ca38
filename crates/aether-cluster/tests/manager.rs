//! [`ClusterManager`] against a real `nats-server`: several managers in one process, each on its
//! own connection, with test timings (heartbeat 500 ms, member TTL 2 s, lease TTL 3 s,
//! stabilisation 500 ms, 100 shards). What must hold, and why:
//!
//! - **start**: three managers elect exactly one leader within 5 s, and all converge on the
//!   same map, balanced 33/33/34 — the basic promise of the cluster layer;
//! - **graceful leave**: a follower that shuts down loses exactly its shards (nobody else's
//!   move) and the others agree on the new map — sticky placement, no rebalance storm;
//! - **leader crash**: a leader aborted without releasing is replaced within lease TTL + 1 s of
//!   its last renewal with a higher epoch, and its shards are then reassigned; all maps agree;
//! - **join**: a fourth node gets at most ⌈S/(n+1)⌉ + 1 % of S moves in total, and with a small
//!   `max_moves_per_step` they are spread over several map versions, none over the limit —
//!   throttled rebalancing;
//! - **absurd timings** (any duration near `Duration::MAX`): every entry point answers
//!   `InvalidConfig` naming the setting, never panics, and writes nothing.
//!
//! Measured times are printed with `--nocapture`. Needs `nats-server` ≥ 2.12; fails (never
//! skips) with the install command when it is missing.

#[path = "support/common.rs"]
mod common;

use aether_cluster::{Epoch, MapVersion};
use std::collections::BTreeMap;
use std::time::Duration;

use aether_cluster::kv::ClusterStore;
use aether_cluster::lease::LeaderElector;
use aether_cluster::membership::Membership;
use aether_cluster::{ClusterConfig, ClusterError, ClusterManager, TopologyEvent};
use aether_core::{NodeId, ShardCount, ShardMap};
use common::{base_config, connect, node, start_server, within};
use tokio::time::{Instant, sleep};

const SHARDS: u32 = 100;
const LEASE_TTL: Duration = Duration::from_secs(3);

/// A cluster name no other test uses.
fn cluster_name() -> String {
    common::cluster_name("mgr")
}

fn config(cluster: &str, id: &str) -> ClusterConfig {
    let mut config = base_config(cluster, id, LEASE_TTL, Duration::from_secs(1));
    config.heartbeat = Duration::from_millis(500);
    config.member_ttl = Duration::from_secs(2);
    config.probe_timeout = Duration::from_millis(500);
    config.stabilization_delay = Duration::from_millis(500);
    config.move_interval = Duration::from_millis(200);
    config.shard_count = ShardCount::new(SHARDS).unwrap_or_else(|e| panic!("{e}"));
    config
}

async fn start(url: &str, config: ClusterConfig) -> ClusterManager {
    let client = connect(url).await;
    let id = config.node_id.clone();
    // Boxed: the start future is large, and nesting it by value in the timeout helpers
    // overflows a test thread's stack in debug builds.
    let starting = Box::pin(ClusterManager::start(client, config));
    within(&format!("starting manager {id}"), starting).await
}

async fn start_all(url: &str, cluster: &str, ids: &[&str]) -> Vec<ClusterManager> {
    let mut managers = Vec::new();
    for id in ids {
        managers.push(start(url, config(cluster, id)).await);
    }
    managers
}

fn counts(map: &ShardMap) -> BTreeMap<String, u32> {
    map.nodes().map(|(n, c)| (n.to_string(), c)).collect()
}

/// The agreed leader, epoch and map if every manager sees the same leader (exactly one of them
/// leading), the same map version, a complete map over exactly `nodes` nodes, balanced within
/// one shard, and `nodes` members.
fn converged(
    managers: &[&ClusterManager],
    nodes: usize,
) -> Option<(NodeId, Epoch, ShardMap, MapVersion)> {
    let first = managers.first()?;
    let leader = first.leader()?;
    let epoch = first.epoch();
    let stored = first.shard_map()?;
    if managers.iter().filter(|m| m.is_leader()).count() != 1 {
        return None;
    }
    for m in managers {
        let map = m.shard_map()?;
        if m.leader().as_ref() != Some(&leader)
            || m.epoch() != epoch
            || map.version != stored.version
            || map.map != stored.map
            || m.members().len() != nodes
        {
            return None;
        }
    }
    let counts: Vec<u32> = stored.map.nodes().map(|(_, c)| c).collect();
    let (min, max) = (counts.iter().min()?, counts.iter().max()?);
    (stored.map.is_complete() && counts.len() == nodes && max - min <= 1)
        .then(|| (leader, epoch, stored.map.clone(), stored.version))
}

async fn wait_converged(
    managers: &[&ClusterManager],
    nodes: usize,
    limit: Duration,
    what: &str,
) -> (NodeId, Epoch, ShardMap, MapVersion) {
    let started = Instant::now();
    loop {
        if let Some(agreed) = converged(managers, nodes) {
            return agreed;
        }
        if started.elapsed() > limit {
            let views: Vec<String> = managers
                .iter()
                .map(|m| {
                    format!(
                        "{}: leader {:?}@{} leads={} members={} map={:?}",
                        m.node_id(),
                        m.leader(),
                        m.epoch(),
                        m.is_leader(),
                        m.members().len(),
                        m.shard_map().map(|s| (s.version, s.epoch, counts(&s.map)))
                    )
                })
                .collect();
            panic!(
                "{what}: not converged after {limit:?}:\n{}",
                views.join("\n")
            );
        }
        sleep(Duration::from_millis(10)).await;
    }
}

/// Managers n1, n2 and n3 of `cluster`, once they have converged, and what they agreed on.
async fn three_converged(
    url: &str,
    cluster: &str,
) -> (Vec<ClusterManager>, (NodeId, Epoch, ShardMap, MapVersion)) {
    let managers = start_all(url, cluster, &["n1", "n2", "n3"]).await;
    let refs: Vec<&ClusterManager> = managers.iter().collect();
    let agreed = wait_converged(&refs, 3, Duration::from_secs(10), "three managers").await;
    (managers, agreed)
}

async fn shutdown_all(managers: Vec<ClusterManager>) {
    for m in managers {
        let id = m.node_id().clone();
        within(&format!("shutting down {id}"), m.shutdown()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_elect_one_leader_and_share_a_balanced_map() {
    let server = start_server();
    let cluster = cluster_name();
    let started = Instant::now();
    let managers = start_all(&server.url(), &cluster, &["n1", "n2", "n3"]).await;
    let mut events = managers[0].subscribe();
    let refs: Vec<&ClusterManager> = managers.iter().collect();
    let leader_at = loop {
        if refs.iter().filter(|m| m.is_leader()).count() == 1
            && refs.iter().all(|m| m.leader().is_some())
        {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no leader within 5 s"
        );
        sleep(Duration::from_millis(5)).await;
    };
    let (leader, epoch, map, version) =
        wait_converged(&refs, 3, Duration::from_secs(10), "three managers").await;
    let converged_at = started.elapsed();
    println!("time to first leader: {leader_at:?}; to an agreed 3-node map: {converged_at:?}");
    let mut sorted: Vec<u32> = counts(&map).into_values().collect();
    sorted.sort_unstable();
    assert_eq!(sorted, [33, 33, 34]);
    assert!(epoch > Epoch::default());
    assert!(managers.iter().any(|m| m.node_id() == &leader));

    // Every node answers placement questions the same way.
    for i in 0..50 {
        let actor =
            aether_core::ActorId::new(format!("actor-{i}")).unwrap_or_else(|e| panic!("{e}"));
        let owner = managers[0].owner_of(&actor);
        assert!(owner.is_some());
        assert!(managers.iter().all(|m| m.owner_of(&actor) == owner));
    }

    // The map is stable: no further versions while membership does not change.
    sleep(Duration::from_secs(2)).await;
    assert!(
        managers
            .iter()
            .all(|m| m.shard_map().is_some_and(|s| s.version == version))
    );
    // The events a subscriber saw are typed; at least the last map version was announced
    // unless it was adopted before subscribing.
    let mut saw_map = managers[0].shard_map().is_some();
    while let Ok(event) = events.try_recv() {
        if let TopologyEvent::ShardsMoved { version: v, .. } = event {
            assert!(v <= version);
            saw_map = true;
        }
    }
    assert!(saw_map);
    shutdown_all(managers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_of_a_follower_moves_only_its_shards() {
    let server = start_server();
    let cluster = cluster_name();
    let (mut managers, (leader, _, before, _)) = three_converged(&server.url(), &cluster).await;
    let follower = managers
        .iter()
        .position(|m| m.node_id() != &leader)
        .unwrap_or_else(|| unreachable!());
    let mut events = managers[(follower + 1) % 3].subscribe();
    let leaving = managers.remove(follower);
    let leaving_id = leaving.node_id().clone();
    let left_at = Instant::now();
    within("shutdown", leaving.shutdown()).await;
    let refs: Vec<&ClusterManager> = managers.iter().collect();
    let (_, _, after, _) =
        wait_converged(&refs, 2, Duration::from_secs(5), "after a graceful leave").await;
    println!(
        "graceful leave → shards reassigned and agreed in {:?}",
        left_at.elapsed()
    );
    assert_eq!(after.count_of(&leaving_id), 0);
    let moves = aether_core::shard_moves(&before, &after);
    assert_eq!(moves.len() as u32, before.count_of(&leaving_id));
    assert!(moves.iter().all(|m| m.from.as_ref() == Some(&leaving_id)));
    let mut saw_left = false;
    while let Ok(event) = events.try_recv() {
        saw_left |= event == TopologyEvent::NodeLeft(leaving_id.clone());
    }
    assert!(saw_left, "no NodeLeft({leaving_id}) event");
    shutdown_all(managers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_leader_is_replaced_and_its_shards_reassigned() {
    let server = start_server();
    let cluster = cluster_name();
    let (mut managers, (leader, epoch, _, version)) =
        three_converged(&server.url(), &cluster).await;
    let index = managers
        .iter()
        .position(|m| m.node_id() == &leader)
        .unwrap_or_else(|| unreachable!());
    let crashed = managers.remove(index);
    let renewed = crashed
        .lease_renewed_at()
        .unwrap_or_else(|| panic!("the leader never renewed"));
    let aborted_at = Instant::now();
    crashed.abort().await;

    // A new leader, agreed by both survivors.
    let (new_leader, new_epoch) = loop {
        let leaders: Vec<_> = managers.iter().map(|m| m.leader()).collect();
        if managers.iter().filter(|m| m.is_leader()).count() == 1
            && leaders.iter().all(|l| l.is_some() && l == &leaders[0])
            && leaders[0].as_ref() != Some(&leader)
        {
            break (
                leaders[0].clone().unwrap_or_else(|| unreachable!()),
                managers[0].epoch(),
            );
        }
        assert!(
            renewed.elapsed() < LEASE_TTL + Duration::from_secs(1),
            "no new leader within lease TTL + 1 s of the last renewal"
        );
        sleep(Duration::from_millis(5)).await;
    };
    println!(
        "failover: new leader {new_leader} {:?} after the last renewal ({:?} after the abort)",
        renewed.elapsed(),
        aborted_at.elapsed()
    );
    assert!(new_epoch > epoch);

    let refs: Vec<&ClusterManager> = managers.iter().collect();
    let (_, _, after, after_version) = wait_converged(
        &refs,
        2,
        Duration::from_secs(10),
        "after the leader's crash",
    )
    .await;
    println!(
        "leader crash → its shards reassigned and agreed in {:?}",
        aborted_at.elapsed()
    );
    assert_eq!(after.count_of(&leader), 0);
    assert!(after_version > version);
    shutdown_all(managers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_gets_its_share_in_throttled_steps() {
    const MAX_MOVES: usize = 5;
    let server = start_server();
    let cluster = cluster_name();
    let mut managers = Vec::new();
    for id in ["n1", "n2", "n3"] {
        let mut config = config(&cluster, id);
        config.max_moves_per_step = MAX_MOVES;
        managers.push(start(&server.url(), config).await);
    }
    let refs: Vec<&ClusterManager> = managers.iter().collect();
    let (_, _, before, version) =
        wait_converged(&refs, 3, Duration::from_secs(15), "three managers").await;
    // Let any throttled start-up steps finish (three nodes joined one after the other).
    sleep(Duration::from_secs(1)).await;
    let before_version = managers[0].shard_map().map_or(version, |s| s.version);
    let before = managers[0].shard_map().map_or(before, |s| s.map.clone());

    let mut config = config(&cluster, "n4");
    config.max_moves_per_step = MAX_MOVES;
    let joined_at = Instant::now();
    managers.push(start(&server.url(), config).await);
    let refs: Vec<&ClusterManager> = managers.iter().collect();
    let (_, _, after, after_version) =
        wait_converged(&refs, 4, Duration::from_secs(15), "after a fourth node").await;
    println!(
        "join → balanced 4-node map in {:?} over {} versions",
        joined_at.elapsed(),
        after_version.get() - before_version.get()
    );
    let total = aether_core::shard_moves(&before, &after);
    let bound = SHARDS.div_ceil(4) + SHARDS / 100;
    assert!(
        total.len() as u32 <= bound,
        "{} moves, bound {bound}",
        total.len()
    );
    assert!(total.iter().all(|m| m.to.as_ref() == Some(&node("n4"))));

    let history = within("reading the history", managers[0].map_store().history()).await;
    let steps: Vec<_> = history
        .iter()
        .filter(|c| c.version > before_version && c.version <= after_version)
        .collect();
    assert_eq!(
        steps.len() as u64,
        after_version.get() - before_version.get()
    );
    assert!(
        steps.len() >= total.len().div_ceil(MAX_MOVES),
        "{} versions for {} moves",
        steps.len(),
        total.len()
    );
    assert!(steps.iter().all(|c| c.moved.len() <= MAX_MOVES));
    let versions: Vec<u64> = history.iter().map(|c| c.version.get()).collect();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "{versions:?}"
    );
    shutdown_all(managers).await;
}

/// Every timing of [`ClusterConfig`], and how to set it.
type SetTiming = fn(&mut ClusterConfig, Duration);
const TIMINGS: [(&str, SetTiming); 9] = [
    ("heartbeat", |c, d| c.heartbeat = d),
    ("member_ttl", |c, d| c.member_ttl = d),
    ("probe_timeout", |c, d| c.probe_timeout = d),
    ("lease_ttl", |c, d| c.lease_ttl = d),
    ("lease_margin", |c, d| c.lease_margin = d),
    ("stabilization_delay", |c, d| c.stabilization_delay = d),
    ("move_interval", |c, d| c.move_interval = d),
    ("request_timeout", |c, d| c.request_timeout = d),
    ("ready_timeout", |c, d| c.ready_timeout = d),
];

fn assert_invalid<T: std::fmt::Debug>(what: &str, name: &str, result: Result<T, ClusterError>) {
    match result {
        Err(ClusterError::InvalidConfig(message)) => {
            assert!(message.starts_with(name), "{what}, {name}: {message}");
        }
        other => panic!("{what}, {name} = Duration::MAX: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_near_the_maximum_are_config_errors_at_every_entry_point() {
    let server = start_server();
    let url = server.url();
    let good_cluster = cluster_name();
    let store = within(
        "opening the store",
        ClusterStore::open(connect(&url).await, &config(&good_cluster, "ok")),
    )
    .await;
    for (name, set) in TIMINGS {
        let cluster = cluster_name();
        let mut bad = config(&cluster, "n1");
        set(&mut bad, Duration::MAX);
        let started = Box::pin(ClusterManager::start(connect(&url).await, bad.clone()));
        assert_invalid("ClusterManager::start", name, within_err(started).await);
        let opened = ClusterStore::open(connect(&url).await, &bad);
        assert_invalid("ClusterStore::open", name, within_err(opened).await);
        // Nothing was created for the refused cluster.
        let js = async_nats::jetstream::new(connect(&url).await);
        let members = within_err(js.get_stream(format!("KV_{cluster}-members"))).await;
        assert!(members.is_err(), "{name}: the members bucket was created");

        let mut bad = config(&good_cluster, "n1");
        set(&mut bad, Duration::MAX);
        assert_invalid(
            "Membership::start",
            name,
            within_err(Membership::start(&store, &bad)).await,
        );
        assert_invalid(
            "LeaderElector::start",
            name,
            LeaderElector::start(store.clone(), &bad),
        );
    }
}

/// `future`'s result, whatever it is, or a panic if it takes longer than one network step.
async fn within_err<T>(future: impl std::future::Future<Output = T>) -> T {
    common::in_time("a refused start", future).await
}
