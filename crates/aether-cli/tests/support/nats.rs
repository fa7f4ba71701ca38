//! A nats-server for the CLI tests (the testkit harness: free loopback port, own store
//! directory) with the example data written through the JetStream store, and cluster nodes.

#![allow(dead_code)] // each test file uses part of it

use std::time::Duration;

use aether_cluster::{ClusterConfig, ClusterManager};
use aether_core::{NodeId, ShardCount};
use aether_nats::JetStreamEventStore;
use aether_testkit::nats_server::NatsServer;

/// Shards of the test clusters: small, so tables and moves stay short.
pub(crate) const SHARDS: u32 = 8;

/// A running server; fails (never skips) with the install command when nats-server is missing.
pub(crate) fn server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

/// Writes the example data (see `fixture.rs`) into `url`'s JetStream.
pub(crate) async fn write_fixture(url: &str) {
    let bank = JetStreamEventStore::connect(url, aether_core::Namespace::new("bank").unwrap())
        .await
        .expect("the store connects");
    let shop = bank
        .for_namespace(aether_core::Namespace::new("shop").unwrap())
        .await
        .expect("the second namespace opens");
    super::fixture::write(|ns| match ns.as_str() {
        "bank" => bank.clone(),
        _ => shop.clone(),
    })
    .await;
}

/// A cluster node's settings: quick heartbeats and moves, [`SHARDS`] shards.
pub(crate) fn node_config(cluster: &str, id: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(NodeId::new(id).unwrap());
    config.cluster_name = cluster.to_owned();
    config.heartbeat = Duration::from_millis(250);
    config.member_ttl = Duration::from_secs(1);
    config.probe_timeout = Duration::from_millis(250);
    config.lease_ttl = Duration::from_secs(3);
    config.stabilization_delay = Duration::from_millis(300);
    config.move_interval = Duration::from_millis(100);
    config.shard_count = ShardCount::new(SHARDS).unwrap();
    config.metadata.address = format!("10.0.0.{}:7000", id.len());
    config.metadata.app_version = "1.0.0".to_owned();
    config
}

/// Starts node `id` of `cluster` on `url`.
pub(crate) async fn start_node(url: &str, cluster: &str, id: &str) -> ClusterManager {
    let client = async_nats::connect(url).await.expect("the node connects");
    ClusterManager::start(client, node_config(cluster, id))
        .await
        .expect("the node starts")
}

/// Waits (up to a minute: the machine is shared and slow) until `done` holds.
pub(crate) async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
