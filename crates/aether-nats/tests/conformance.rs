//! `aether-core`'s store conformance suite, unchanged, against JetStream: every property as its
//! own test on its own single server, and the whole suite on a 3-node cluster with R3 streams;
//! the same for the feed and fence properties.
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use aether_core::Namespace;
use aether_core::testing::conformance;
use aether_nats::{JetStreamConfig, JetStreamEventStore};
use aether_testkit::nats_server::{NatsCluster, NatsServer};

/// A store on a namespace no other test uses.
async fn fresh_store(url: &str, config: JetStreamConfig) -> JetStreamEventStore {
    let namespace = Namespace::new(format!("conformance-{}", uuid::Uuid::now_v7().simple()))
        .expect("namespace");
    JetStreamEventStore::connect_with(url, namespace, config)
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"))
}

macro_rules! single_server_tests {
    (; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
                let url = server.url();
                conformance::run_one(stringify!($name), || {
                    fresh_store(&url, JetStreamConfig::default())
                })
                .await;
                drop(server);
            }
        )*
    };
}

macro_rules! single_server_feed_tests {
    (; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
                let url = server.url();
                conformance::run_one_feed(stringify!($name), || {
                    fresh_store(&url, JetStreamConfig::default())
                })
                .await;
                drop(server);
            }
        )*
    };
}

macro_rules! single_server_fence_tests {
    (; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
                let url = server.url();
                conformance::run_one_fenced(stringify!($name), || {
                    fresh_store(&url, JetStreamConfig::default())
                })
                .await;
                drop(server);
            }
        )*
    };
}

// One test per property, from the suite's own list.
aether_core::__conformance_properties!(single_server_tests {});
// The feed properties (the JetStream store implements `EventFeed`).
aether_core::__feed_conformance_properties!(single_server_feed_tests {});
// The fence properties (the JetStream store implements `FencedEventStore`).
aether_core::__fence_conformance_properties!(single_server_fence_tests {});

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_suite_on_a_three_node_cluster_with_r3_streams() {
    let cluster = NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.urls().join(",");
    let config = JetStreamConfig {
        replicas: 3,
        ..JetStreamConfig::default()
    };
    conformance::run_all(|| fresh_store(&url, config.clone())).await;
    conformance::run_all_feed(|| fresh_store(&url, config.clone())).await;
    conformance::run_all_fenced(|| fresh_store(&url, config.clone())).await;
    drop(cluster);
}
