//! What a graceful shutdown reports: a panicked task, and a lease it could not release.
//! Against a real `nats-server` (private fields are needed to plant the failures).

use std::sync::Arc;
use std::time::Duration;

use aether_core::NodeId;
use aether_testkit::nats_server::NatsServer;
use tokio::time::{Instant, sleep, timeout};

use super::ClusterManager;
use crate::kv::ClusterStore;
use crate::lease::LeaderLease;
use crate::{ClusterConfig, ClusterError};

/// Longest wait for one network step.
const STEP: Duration = Duration::from_secs(10);

fn config(cluster: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(NodeId::new("solo").unwrap_or_else(|e| panic!("{e}")));
    config.cluster_name = cluster.to_owned();
    config.heartbeat = Duration::from_millis(500);
    config.member_ttl = Duration::from_secs(2);
    config.lease_ttl = Duration::from_secs(3);
    config.request_timeout = Duration::from_secs(2);
    config
}

/// A one-node cluster whose node leads.
async fn leading(server: &NatsServer, config: &ClusterConfig) -> ClusterManager {
    let client = timeout(STEP, async_nats::connect(server.url()))
        .await
        .unwrap_or_else(|_| panic!("connect timed out"))
        .unwrap_or_else(|e| panic!("{e}"));
    let manager = timeout(STEP, ClusterManager::start(client, config.clone()))
        .await
        .unwrap_or_else(|_| panic!("start timed out"))
        .unwrap_or_else(|e| panic!("{e}"));
    // Nobody else holds the lease: acquired at once, within one network step.
    let started = Instant::now();
    while !manager.is_leader() {
        assert!(started.elapsed() < STEP, "no lease within {STEP:?}");
        sleep(Duration::from_millis(10)).await;
    }
    manager
}

async fn store(server: &NatsServer, config: &ClusterConfig) -> ClusterStore {
    let client = timeout(STEP, async_nats::connect(server.url()))
        .await
        .unwrap_or_else(|_| panic!("connect timed out"))
        .unwrap_or_else(|e| panic!("{e}"));
    timeout(STEP, ClusterStore::open(client, config))
        .await
        .unwrap_or_else(|_| panic!("open timed out"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn cluster_name() -> String {
    format!("mgr-unit-{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_a_panicked_task_and_still_leaves_and_releases() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let config = config(&cluster_name());
    let mut manager = leading(&server, &config).await;
    manager
        .tasks
        .push(("planted", tokio::spawn(async { panic!("planted bug") })));
    let result = timeout(STEP, manager.shutdown())
        .await
        .unwrap_or_else(|_| panic!("shutdown timed out"));
    match result {
        Err(ClusterError::TaskPanicked { task, message }) => {
            assert_eq!(
                (task.as_str(), message.as_str()),
                ("planted", "planted bug")
            );
        }
        other => panic!("shutdown hid the panic: {other:?}"),
    }
    // Leaving and releasing happened all the same.
    let store = store(&server, &config).await;
    let lease = LeaderLease::new(store.clone(), &config).unwrap_or_else(|e| panic!("{e}"));
    let holder = timeout(STEP, lease.current())
        .await
        .unwrap_or_else(|_| panic!("reading the lease timed out"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(holder, None, "the lease was not released");
    let member = timeout(STEP, store.members.get("solo"))
        .await
        .unwrap_or_else(|_| panic!("reading the member key timed out"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(member, None, "the member key was not deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_so_when_it_cannot_release_the_lease() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let config = config(&cluster_name());
    let manager = leading(&server, &config).await;
    let shared = manager
        .elector
        .as_ref()
        .map(Arc::clone)
        .unwrap_or_else(|| panic!("no elector"));
    let result = timeout(STEP, manager.shutdown())
        .await
        .unwrap_or_else(|_| panic!("shutdown timed out"));
    match result {
        Err(ClusterError::Backend { message, .. }) => {
            assert!(message.contains("lease was not released"), "{message}");
        }
        other => panic!("shutdown skipped the release silently: {other:?}"),
    }
    drop(shared);
}
