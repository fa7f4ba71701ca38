//! Reading a cluster without being a node ([`ClusterStore::open_existing`],
//! [`ClusterStore::members`]), as the `aether` CLI does:
//!
//! - a cluster that does not exist is [`ClusterError::NotFound`] naming the missing bucket, and
//!   nothing is created;
//! - an existing cluster opens whatever its settings (no comparison with a node's
//!   configuration), and its live members are listed with what they announce.

#[path = "support/common.rs"]
mod common;

use std::time::Duration;

use aether_cluster::kv::ClusterStore;
use aether_cluster::{ClusterError, ClusterManager};
use common::{base_config, cluster_name, connect, node, start_server};
use futures::TryStreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_cluster_is_not_found_and_not_created() {
    let server = start_server();
    let client = connect(&server.url()).await;
    let err = ClusterStore::open_existing(client.clone(), "ghost", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::NotFound { cluster, bucket } if cluster == "ghost" && bucket == "ghost-members"),
        "{err}"
    );
    assert!(
        err.to_string().contains("no cluster named \"ghost\""),
        "{err}"
    );
    let streams: Vec<String> = async_nats::jetstream::new(client)
        .stream_names()
        .try_collect()
        .await
        .unwrap();
    assert!(streams.is_empty(), "nothing created: {streams:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_cluster_lists_its_live_members() {
    let server = start_server();
    let url = server.url();
    let cluster = cluster_name("reader");
    let mut config = base_config(
        &cluster,
        "node-a",
        Duration::from_secs(10),
        Duration::from_secs(5),
    );
    assert_eq!(config.node_id, node("node-a"));
    // Settings a reader does not know: it must not compare them.
    config.member_ttl = Duration::from_secs(7);
    config.heartbeat = Duration::from_millis(500);
    config.metadata.address = "10.1.2.3:9000".to_owned();
    let node = ClusterManager::start(connect(&url).await, config)
        .await
        .unwrap();

    let reader = ClusterStore::open_existing(connect(&url).await, &cluster, Duration::from_secs(5))
        .await
        .expect("the existing cluster opens");
    assert_eq!(
        (reader.members_bucket(), reader.coord_bucket()),
        (
            format!("{cluster}-members").as_str(),
            format!("{cluster}-coord").as_str()
        )
    );
    let members = reader.members().await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].id.as_str(), "node-a");
    assert_eq!(members[0].metadata.address, "10.1.2.3:9000");
    assert_eq!(members[0].incarnation, node.incarnation());

    node.shutdown().await.unwrap();
    // A node that left gracefully deleted its key.
    assert!(reader.members().await.unwrap().is_empty());
}
