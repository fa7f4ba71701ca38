//! The server-side fence, with a seam no integration test can reach: a leader stalled after its
//! local lease check (as by SIGSTOP, a slow request or a publish buffered across a reconnect)
//! until another node holds the lease must have its map write refused by the NATS server, and
//! no watcher may ever see that write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aether_core::{Member, NodeId, ShardCount, ShardMap, assign_shards};
use aether_testkit::nats_server::NatsServer;
use futures::StreamExt;
use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, sleep, timeout};

use super::{ShardMapStore, StoredShardMap};
use crate::kv::ClusterStore;
use crate::lease::{LeaderLease, Lease};
use crate::{ClusterConfig, ClusterError, Revision};

/// What [`ShardMapStore::write`] awaits just before sending the map.
#[derive(Clone)]
pub(super) struct Hook(Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>);

impl Hook {
    pub(super) async fn run(&self) {
        (self.0)().await;
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// Longest wait for one network step.
const STEP: Duration = Duration::from_secs(10);
/// The stalled leader's lease TTL: short, so the test waits for one expiry.
const LEASE_TTL: Duration = Duration::from_secs(3);

fn node(id: &str) -> NodeId {
    NodeId::new(id).unwrap_or_else(|e| panic!("{e}"))
}

fn config(cluster: &str, id: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(node(id));
    config.cluster_name = cluster.to_owned();
    config.lease_ttl = LEASE_TTL;
    config.lease_margin = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(2);
    config.shard_count = ShardCount::new(16).unwrap_or_else(|e| panic!("{e}"));
    config
}

fn map_of(previous: Option<&ShardMap>, members: &[&str]) -> ShardMap {
    let members: Vec<Member> = members.iter().map(|id| Member::new(node(id))).collect();
    let shards = ShardCount::new(16).unwrap_or_else(|e| panic!("{e}"));
    assign_shards(previous, &members, shards).unwrap_or_else(|e| panic!("{e}"))
}

async fn open(url: &str, config: &ClusterConfig) -> ClusterStore {
    let client = timeout(STEP, async_nats::connect(url))
        .await
        .unwrap_or_else(|_| panic!("connect timed out"))
        .unwrap_or_else(|e| panic!("connect: {e}"));
    timeout(STEP, ClusterStore::open(client, config))
        .await
        .unwrap_or_else(|_| panic!("open timed out"))
        .unwrap_or_else(|e| panic!("open: {e}"))
}

async fn acquire(lease: &LeaderLease) -> Option<Lease> {
    timeout(STEP, lease.try_acquire())
        .await
        .unwrap_or_else(|_| panic!("acquire timed out"))
        .unwrap_or_else(|e| panic!("acquire: {e}"))
}

/// A hook that reports it was reached, then waits until released.
fn stall() -> (Hook, oneshot::Receiver<()>, Arc<Notify>) {
    let (reached_tx, reached) = oneshot::channel();
    let reached_tx = Arc::new(std::sync::Mutex::new(Some(reached_tx)));
    let release = Arc::new(Notify::new());
    let hook_release = Arc::clone(&release);
    let hook = Hook(Arc::new(move || {
        let reached_tx = Arc::clone(&reached_tx);
        let release = Arc::clone(&hook_release);
        Box::pin(async move {
            let sender = reached_tx
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(sender) = sender {
                let _ = sender.send(());
                release.notified().await;
            }
        }) as Pin<Box<dyn Future<Output = ()> + Send>>
    }));
    (hook, reached, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stalled_after_its_local_check_is_refused_by_the_server_and_never_adopted() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let cluster = format!("fence-{}", uuid::Uuid::now_v7().simple());
    let (config_a, config_b) = (config(&cluster, "a"), config(&cluster, "b"));
    let store_a = open(&server.url(), &config_a).await;
    let store_b = open(&server.url(), &config_b).await;
    let mut maps_a = ShardMapStore::new(store_a.clone(), &config_a);
    let maps_b = ShardMapStore::new(store_b.clone(), &config_b);
    let watcher = ShardMapStore::new(open(&server.url(), &config_b).await, &config_b);
    let mut watching = timeout(STEP, watcher.watch())
        .await
        .unwrap_or_else(|_| panic!("watch timed out"))
        .unwrap_or_else(|e| panic!("watch: {e}"));

    // a leads and writes v1; its lease is never renewed from here on.
    let lease_a = acquire(&LeaderLease::new(store_a, &config_a).unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap_or_else(|| panic!("a could not take a free lease"));
    let v1 = timeout(
        STEP,
        maps_a.write(&lease_a, map_of(None, &["a"]), "v1", Revision::default()),
    )
    .await
    .unwrap_or_else(|_| panic!("write v1 timed out"))
    .unwrap_or_else(|e| panic!("write v1: {e}"));

    // a's next write passes its local checks, then stalls.
    let (hook, reached, release) = stall();
    maps_a.before_send = Some(hook);
    let stale_map = map_of(Some(&v1.stored.map), &["a", "x"]);
    let stale = tokio::spawn({
        let fence = lease_a.fence();
        let revision = v1.revision;
        async move { maps_a.write(&fence, stale_map, "stale", revision).await }
    });
    timeout(STEP, reached)
        .await
        .unwrap_or_else(|_| panic!("a never reached the send"))
        .unwrap_or_else(|e| panic!("{e}"));

    // Meanwhile a's lease expires on the server and b takes it: the server's TTL ends
    // LEASE_TTL after a's acquisition, so b must hold it within LEASE_TTL + STEP.
    let leases_b = LeaderLease::new(store_b, &config_b).unwrap_or_else(|e| panic!("{e}"));
    let give_up = Instant::now() + LEASE_TTL + STEP;
    let lease_b = loop {
        if let Some(lease) = acquire(&leases_b).await {
            break lease;
        }
        assert!(
            Instant::now() < give_up,
            "b never acquired the expired lease"
        );
        sleep(Duration::from_millis(100)).await;
    };
    assert!(lease_b.epoch() > lease_a.epoch());

    // a resumes: its write must be refused by the server, as fenced.
    release.notify_one();
    let outcome = timeout(STEP, stale)
        .await
        .unwrap_or_else(|_| panic!("the stalled write never finished"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(
            outcome,
            Err(ClusterError::Fenced { epoch, .. }) if epoch == lease_a.epoch()
        ),
        "the stale leader's write was not refused by the server: {outcome:?}"
    );
    let (stored, revision) = timeout(STEP, maps_b.load())
        .await
        .unwrap_or_else(|_| panic!("load timed out"))
        .unwrap_or_else(|e| panic!("load: {e}"))
        .unwrap_or_else(|| panic!("no map stored"));
    assert_eq!((&stored, revision), (&v1.stored, v1.revision));

    // b writes v2 on v1; the watcher sees v1, then b's v2 — never a's stale map.
    let v2 = timeout(
        STEP,
        maps_b.write(
            &lease_b,
            map_of(Some(&v1.stored.map), &["b"]),
            "v2",
            v1.revision,
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("write v2 timed out"))
    .unwrap_or_else(|e| panic!("write v2: {e}"));
    let mut seen: Vec<StoredShardMap> = Vec::new();
    while seen.last() != Some(&v2.stored) {
        let (map, _) = timeout(STEP, watching.next())
            .await
            .unwrap_or_else(|_| panic!("the watcher stalled after {seen:?}"))
            .unwrap_or_else(|| panic!("the watch ended"))
            .unwrap_or_else(|e| panic!("watch: {e}"));
        seen.push(map);
    }
    assert_eq!(seen, [v1.stored.clone(), v2.stored.clone()]);
    let history = timeout(STEP, maps_b.history())
        .await
        .unwrap_or_else(|_| panic!("history timed out"))
        .unwrap_or_else(|e| panic!("history: {e}"));
    let reasons: Vec<&str> = history.iter().map(|c| c.reason.as_str()).collect();
    assert_eq!(reasons, ["v1", "v2"]);
    drop(lease_a);
}

#[test]
fn a_map_with_moving_shards_decodes_as_written() {
    use crate::placement::{Incarnate, Placement};
    let n = |id: &str, incarnation| Incarnate {
        node: node(id),
        incarnation,
    };
    let map = map_of(None, &["a"]);
    let count = map.shard_count().get() as usize;
    let first = Placement::empty(map.shard_count()).next(&vec![Some(n("a", 1)); count], |_| false);
    let mut next = vec![Some(n("a", 1)); count];
    next[0] = Some(n("b", 7));
    next[2] = Some(n("b", 7));
    next[3] = None;
    let moved = first.next(&next, |_| false);
    let mut owners = map.clone();
    for (shard, slot) in moved.shards.iter().enumerate() {
        let owner = slot.owner.as_ref().map(|o| o.node.clone());
        let current = map.owner(aether_core::ShardId::new(shard as u32)).cloned();
        if owner != current {
            owners = owners
                .apply_moves(&[aether_core::ShardMove {
                    shard: aether_core::ShardId::new(shard as u32),
                    from: current,
                    to: owner,
                }])
                .unwrap();
        }
    }
    let stored = StoredShardMap {
        version: moved.version,
        epoch: crate::Epoch::new(1),
        leader: node("a"),
        reason: "test".to_owned(),
        map: owners,
        handoff: moved.handoff(),
    };
    assert_eq!(stored.handoff.moving.len(), 3, "{:?}", stored.handoff);
    let json = serde_json::to_vec(&stored).unwrap();
    let decoded: StoredShardMap = serde_json::from_slice(&json).unwrap();
    assert_eq!(decoded, stored);
    assert_eq!(decoded.placement(), moved);
    // A map written before handoff existed decodes with an empty one.
    let mut old: serde_json::Value = serde_json::from_slice(&json).unwrap();
    old.as_object_mut().unwrap().remove("handoff");
    let decoded: StoredShardMap = serde_json::from_value(old).unwrap();
    assert!(decoded.handoff.is_empty());
}
