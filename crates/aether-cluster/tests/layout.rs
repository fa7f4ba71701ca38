//! Opening the cluster's buckets against what NATS already holds. What must hold, and why:
//!
//! - **settings that differ are named**: a node whose replicas, member TTL or lease TTL differ
//!   from the existing buckets' refuses to start with [`ClusterError::SettingsMismatch`],
//!   naming each setting with both values, and changes nothing in NATS;
//! - **a bucket made by something else is refused**: a coordination bucket created without
//!   Aether's layout (e.g. a plain KV bucket, without atomic batches) is a mismatch too;
//! - **the older layout is refused**: a cluster whose state is in the old separate lease and
//!   shard-map buckets and history stream fails with [`ClusterError::OldLayout`] naming them
//!   (this build neither reads nor fences them).
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

#[path = "support/common.rs"]
mod common;

use std::time::Duration;

use aether_cluster::kv::{ClusterStore, SettingMismatch};
use aether_cluster::{ClusterConfig, ClusterError};
use async_nats::jetstream::{self, kv, stream};
use common::{base_config, connect, in_time, start_server, within};

fn config(cluster: &str) -> ClusterConfig {
    base_config(
        cluster,
        "n1",
        Duration::from_secs(10),
        Duration::from_secs(2),
    )
}

async fn open(url: &str, config: &ClusterConfig) -> Result<ClusterStore, ClusterError> {
    let client = connect(url).await;
    in_time("open", ClusterStore::open(client, config)).await
}

/// The differences of a refused open, as `setting: ours / theirs`.
fn mismatches(result: Result<ClusterStore, ClusterError>, bucket: &str) -> Vec<String> {
    match result {
        Err(ClusterError::SettingsMismatch {
            bucket: named,
            differences,
        }) => {
            assert_eq!(named, bucket);
            differences
                .iter()
                .map(
                    |SettingMismatch {
                         setting,
                         this_node,
                         in_nats,
                         ..
                     }| { format!("{setting}: {this_node} / {in_nats}") },
                )
                .collect()
        }
        other => panic!("expected SettingsMismatch on {bucket}, got {other:?}"),
    }
}

async fn stream_config(url: &str, name: &str) -> stream::Config {
    let js = jetstream::new(connect(url).await);
    let mut stream = within("get stream", js.get_stream(name)).await;
    within("stream info", stream.info()).await.config.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_replicas_or_ttls_differ_is_refused_naming_each_difference() {
    let server = start_server();
    let cluster = common::cluster_name("layout");
    // The marker TTL is the larger of the two TTLs: 12 s here.
    let mut first = config(&cluster);
    first.member_ttl = Duration::from_secs(12);
    open(&server.url(), &first)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let coord = format!("{cluster}-coord");
    let members = format!("{cluster}-members");
    let before = stream_config(&server.url(), &format!("KV_{coord}")).await;

    // The same settings open again.
    open(&server.url(), &first)
        .await
        .unwrap_or_else(|e| panic!("the same settings: {e}"));

    let mut replicas = first.clone();
    replicas.replicas = 3;
    assert_eq!(
        mismatches(open(&server.url(), &replicas).await, &members),
        ["replicas: 3 / 1"]
    );

    let mut member_ttl = first.clone();
    member_ttl.member_ttl = Duration::from_secs(4);
    assert_eq!(
        mismatches(open(&server.url(), &member_ttl).await, &members),
        [
            "member_ttl: 4s / 12s",
            "marker TTL (the larger of member_ttl and lease_ttl): Some(10s) / Some(12s)"
        ]
    );

    let mut lease_ttl = first.clone();
    lease_ttl.lease_ttl = Duration::from_secs(15);
    assert_eq!(
        mismatches(open(&server.url(), &lease_ttl).await, &members),
        ["marker TTL (the larger of member_ttl and lease_ttl): Some(15s) / Some(12s)"]
    );
    let mut lease_ttl = first.clone();
    lease_ttl.lease_ttl = Duration::from_secs(3);
    assert_eq!(
        mismatches(open(&server.url(), &lease_ttl).await, &coord),
        ["lease_ttl: 3s / 10s"]
    );
    let message = open(&server.url(), &lease_ttl)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("lease_ttl: 3s on this node, 10s in NATS"),
        "{message}"
    );

    let after = stream_config(&server.url(), &format!("KV_{coord}")).await;
    assert_eq!(after, before, "a refused node changed the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordination_bucket_not_made_by_aether_is_refused() {
    let server = start_server();
    let cluster = common::cluster_name("layout");
    let js = jetstream::new(connect(&server.url()).await);
    within(
        "create a plain bucket",
        js.create_key_value(kv::Config {
            bucket: format!("{cluster}-coord"),
            limit_markers: Some(Duration::from_secs(10)),
            ..Default::default()
        }),
    )
    .await;
    let result = open(&server.url(), &config(&cluster)).await;
    assert_eq!(
        mismatches(result, &format!("{cluster}-coord")),
        [
            "aether.layout: 2 / none",
            "lease_ttl: 10s / none",
            "atomic batches allowed: true / false",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_layout_is_refused_naming_its_streams() {
    let server = start_server();
    let cluster = common::cluster_name("layout");
    let js = jetstream::new(connect(&server.url()).await);
    // What the previous layout created next to the members bucket.
    for bucket in [format!("{cluster}-leader"), format!("{cluster}-shardmap")] {
        within(
            "create an old bucket",
            js.create_key_value(kv::Config {
                bucket,
                ..Default::default()
            }),
        )
        .await;
    }
    let result = open(&server.url(), &config(&cluster)).await;
    match result {
        Err(ClusterError::OldLayout {
            cluster: named,
            streams,
        }) => {
            assert_eq!(named, cluster);
            assert_eq!(
                streams,
                [
                    format!("KV_{cluster}-leader"),
                    format!("KV_{cluster}-shardmap")
                ]
            );
        }
        other => panic!("expected OldLayout, got {other:?}"),
    }
    let coord = js.get_stream(format!("KV_{cluster}-coord")).await;
    assert!(coord.is_err(), "the refused node created the new layout");
}
