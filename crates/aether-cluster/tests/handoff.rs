//! The leader's side of actors' handoff (ADR 0009) on a real `nats-server`: moves are written
//! as moving from the earlier owner, and settled only once that node released the shards —
//! asked through its registered shard holders — or is gone. Needs `nats-server` >= 2.12;
//! fails (never skips) with the install command when it is missing.

#[path = "support/common.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_cluster::release::{Holdings, ShardHolder};
use aether_cluster::{ClusterConfig, ClusterManager, MapVersion};
use aether_core::ShardCount;
use common::{base_config, connect, start_server, within};
use tokio::time::{Instant, sleep};

const SHARDS: u32 = 8;

fn config(cluster: &str, id: &str) -> ClusterConfig {
    let mut config = base_config(cluster, id, Duration::from_secs(3), Duration::from_secs(1));
    config.heartbeat = Duration::from_millis(250);
    config.member_ttl = Duration::from_secs(1);
    config.probe_timeout = Duration::from_millis(250);
    config.stabilization_delay = Duration::from_millis(300);
    config.move_interval = Duration::from_millis(100);
    config.shard_count = ShardCount::new(SHARDS).unwrap();
    config
}

async fn start(url: &str, config: ClusterConfig) -> ClusterManager {
    let client = connect(url).await;
    within(
        "starting a manager",
        Box::pin(ClusterManager::start(client, config)),
    )
    .await
}

/// A holder that holds every shard its node owned until told to let go.
struct Stubborn {
    manager_shards: Mutex<BTreeSet<u32>>,
    adopted: Mutex<MapVersion>,
}

impl ShardHolder for Stubborn {
    fn holdings(&self) -> Holdings {
        Holdings {
            adopted: *self.adopted.lock().unwrap(),
            held: self.manager_shards.lock().unwrap().clone(),
        }
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: not within 20 s"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_settles_only_once_the_earlier_owner_released_the_shard() {
    let server = start_server();
    let cluster = common::cluster_name("handoff");
    let n1 = start(&server.url(), config(&cluster, "n1")).await;
    until("n1 owns every shard", || {
        n1.shard_map()
            .is_some_and(|m| m.map.count_of(n1.node_id()) == SHARDS)
    })
    .await;
    // n1's actor host holds every shard, and has adopted the current placement.
    let holder = Arc::new(Stubborn {
        manager_shards: Mutex::new((0..SHARDS).collect()),
        adopted: Mutex::new(MapVersion::new(u64::MAX)),
    });
    let as_holder: Arc<dyn ShardHolder> = holder.clone();
    n1.register_holder(Arc::downgrade(&as_holder));

    let n2 = start(&server.url(), config(&cluster, "n2")).await;
    until("shards move to n2, moving from n1", || {
        n1.shard_map().is_some_and(|m| {
            let p = m.placement();
            p.shards.iter().any(|s| {
                s.owner.as_ref().is_some_and(|o| o.node == *n2.node_id())
                    && s.moving_from
                        .as_ref()
                        .is_some_and(|f| f.node == *n1.node_id())
            })
        })
    })
    .await;
    // While n1 holds them, nothing settles: no shard is n2's without moving.
    sleep(Duration::from_secs(1)).await;
    let placement = n1.watch_placement().borrow().clone();
    let moving: Vec<u32> = placement
        .shards
        .iter()
        .enumerate()
        .filter(|(_, s)| s.moving_from.is_some())
        .map(|(i, _)| i as u32)
        .collect();
    assert!(!moving.is_empty());
    for slot in &placement.shards {
        if slot.owner.as_ref().is_some_and(|o| o.node == *n2.node_id()) {
            assert!(
                slot.moving_from.is_some(),
                "settled while n1 held it: {placement:?}"
            );
        }
    }
    // n1 releases them: the leader settles.
    holder
        .manager_shards
        .lock()
        .unwrap()
        .retain(|s| !moving.contains(s));
    until("the moves settle", || {
        n2.shard_map().is_some_and(|m| {
            let p = m.placement();
            !p.is_moving()
                && p.shards
                    .iter()
                    .any(|s| s.owner.as_ref().is_some_and(|o| o.node == *n2.node_id()))
        })
    })
    .await;
    drop(as_holder);
    n2.shutdown().await.unwrap();
    n1.shutdown().await.unwrap();
}
