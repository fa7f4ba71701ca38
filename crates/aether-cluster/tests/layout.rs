//! Opening the cluster's buckets against what NATS already holds. What must hold, and why:
//!
//! - **settings that differ are named**: a node whose replicas, member TTL or lease TTL differ
//!   from the existing buckets' refuses to start with [`ClusterError::SettingsMismatch`],
//!   naming each setting with both values, and changes nothing in NATS;
//! - **a bucket made by something else is refused**: a coordination bucket created without
//!   Aether's layout (e.g. a plain KV bucket, without atomic batches) is a mismatch too;
//! - **the older layout is refused**: a cluster whose state is in the old separate lease and
//!   shard-map buckets and history stream fails with [`ClusterError::OldLayout`] naming them
//!   (this build neither reads nor fences them);
//! - **a replicated bucket is waited for up to `ready_timeout`**: when a bucket's stream has no
//!   leader (just created, or its replicas lost their quorum), opening waits for one for
//!   `ready_timeout`, not only one `request_timeout`, and succeeds once it has one.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

#[path = "support/common.rs"]
mod common;

use std::time::Duration;

use aether_cluster::kv::{ClusterStore, SettingMismatch};
use aether_cluster::{ClusterConfig, ClusterError};
use aether_testkit::nats_server::{NatsCluster, READY_TIMEOUT};
use async_nats::jetstream::{self, kv, stream};
use common::{STEP, base_config, connect, in_time, start_server, within};
use futures::StreamExt;
use tokio::time::{Instant, sleep, timeout};

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

/// The server names of stream `name`'s replicas, its leader first, as the server at `url` sees them
/// (`None` for the leader while it has none).
async fn stream_peers(url: &str, name: &str) -> (Option<String>, Vec<String>) {
    let mut js = jetstream::new(connect(url).await);
    js.set_timeout(Duration::from_secs(1));
    let mut stream = within("get stream", js.get_stream(name)).await;
    let info = within("stream info", stream.info()).await;
    let cluster = info
        .cluster
        .clone()
        .unwrap_or_else(|| panic!("stream {name} has no cluster info"));
    let replicas = cluster.replicas.iter().map(|r| r.name.clone()).collect();
    (cluster.leader, replicas)
}

/// Polls `what` every 100 ms until it is true, for at most `bound`.
async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    bound: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + bound;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        sleep(Duration::from_millis(100)).await;
    }
}

/// A replicated bucket whose stream has no leader when a node opens it: the open waits for a
/// leader up to `ready_timeout` (here 60 s), far longer than one `request_timeout` (1 s).
///
/// Five servers, so that the meta group (all five) keeps its quorum, and answers the open's
/// requests, while two of the three servers holding the members bucket's R3 stream are
/// stopped: that stream then has no leader, deterministically, until they return. The test
/// sees the open poll the stream for its leader (its `STREAM.INFO` requests), lets three
/// request timeouts pass, and only then restarts the two servers: an open that waited only one
/// request timeout has failed by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_waits_up_to_ready_timeout_for_a_leaderless_replicated_bucket() {
    let mut nats = NatsCluster::start(5).unwrap_or_else(|e| panic!("{e}"));
    let urls = nats.urls();
    let names: Vec<String> = nats.nodes().iter().map(|n| n.name().to_owned()).collect();
    let cluster = common::cluster_name("ready");
    let mut config = config(&cluster);
    config.replicas = 3;
    config.request_timeout = Duration::from_secs(1);
    // The stopped servers may take the harness's READY_TIMEOUT to be back, and their stream
    // then elects a leader within seconds.
    config.ready_timeout = 2 * READY_TIMEOUT;
    let first = ClusterStore::open(connect(&urls[0]).await, &config);
    timeout(config.ready_timeout + STEP, first)
        .await
        .unwrap_or_else(|_| panic!("creating the buckets timed out"))
        .unwrap_or_else(|e| panic!("creating the buckets: {e}"));

    let members = format!("KV_{cluster}-members");
    let (leader, replicas) = stream_peers(&urls[0], &members).await;
    let leader = leader.unwrap_or_else(|| panic!("{members} has no leader after open"));
    assert_eq!(replicas.len(), 2, "{members} is not R3: {replicas:?}");
    let index = |name: &str| {
        names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} is not a server of the cluster"))
    };
    let stopped = [index(&leader), index(&replicas[1])];
    let survivor = index(&replicas[0]);
    for &i in &stopped {
        nats.nodes()[i].stop();
    }
    println!(
        "stopped {} and {}; {} keeps the only running replica of {members}",
        names[stopped[0]], names[stopped[1]], names[survivor]
    );
    let url = urls[survivor].clone();
    // Until the survivor has noticed that its stream lost its leader, it may report the old one,
    // and the open would not wait at all.
    wait_until("the survivor sees no leader", READY_TIMEOUT, || async {
        let mut js = jetstream::new(connect(&url).await);
        js.set_timeout(Duration::from_secs(1));
        let Ok(mut stream) = js.get_stream(&members).await else {
            return false;
        };
        stream
            .info()
            .await
            .is_ok_and(|i| i.cluster.as_ref().is_some_and(|c| c.leader.is_none()))
    })
    .await;
    // The three remaining servers have a meta leader (which answers account info).
    wait_until("a meta leader", READY_TIMEOUT, || async {
        let mut js = jetstream::new(connect(&url).await);
        js.set_timeout(Duration::from_secs(1));
        js.query_account().await.is_ok()
    })
    .await;

    let watcher = connect(&url).await;
    let mut polls = within(
        "subscribe to the stream info requests",
        watcher.subscribe(format!("$JS.API.STREAM.INFO.{members}")),
    )
    .await;
    within("flush", watcher.flush()).await;
    let started = Instant::now();
    let opening = tokio::spawn({
        let (client, config) = (connect(&url).await, config.clone());
        async move { ClusterStore::open(client, &config).await }
    });
    in_time("the open's first poll for a leader", polls.next())
        .await
        .unwrap_or_else(|| panic!("the subscription ended"));
    let waiting_since = Instant::now();
    sleep(3 * config.request_timeout).await;
    assert!(
        !opening.is_finished(),
        "the open ended within {:?} of its first poll for a leader, with the stream's servers \
         still stopped and far less than ready_timeout ({:?}) spent: {:?}",
        waiting_since.elapsed(),
        config.ready_timeout,
        opening.await
    );
    for &i in &stopped {
        nats.nodes()[i].start().unwrap_or_else(|e| panic!("{e}"));
    }
    let opened = timeout(config.ready_timeout + STEP, opening)
        .await
        .unwrap_or_else(|_| panic!("the open did not end within ready_timeout"))
        .unwrap_or_else(|e| panic!("the open task: {e}"));
    let store = opened.unwrap_or_else(|e| panic!("the open failed: {e}"));
    println!(
        "opened {} {:?} after the open began, {:?} after it began waiting for a leader",
        store.members_bucket(),
        started.elapsed(),
        waiting_since.elapsed()
    );
}
