//! Setup shared by the integration tests that run against a real `nats-server`: starting the
//! server, naming nodes and clusters, the common part of the test configuration, connecting,
//! and bounding every network step by [`STEP`].
//!
//! Each test file is its own crate and includes this file with
//! `#[path = "support/common.rs"] mod common;`, so everything here is used by every includer.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use aether_cluster::ClusterConfig;
use aether_core::NodeId;
use aether_testkit::nats_server::NatsServer;
use tokio::time::timeout;

/// Longest wait for one network step.
pub(crate) const STEP: Duration = Duration::from_secs(10);

/// Starts a `nats-server`; fails (never skips) with the install command when it is missing.
pub(crate) fn start_server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn node(id: &str) -> NodeId {
    NodeId::new(id).unwrap_or_else(|e| panic!("{e}"))
}

/// A cluster name no other test uses, starting with `prefix`.
pub(crate) fn cluster_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// Node `id` of `cluster` with the given lease TTL and request timeout, and a 500 ms lease
/// margin; each test file sets the rest of its timings on top.
pub(crate) fn base_config(
    cluster: &str,
    id: &str,
    lease_ttl: Duration,
    request_timeout: Duration,
) -> ClusterConfig {
    let mut config = ClusterConfig::new(node(id));
    config.lease_ttl = lease_ttl;
    config.lease_margin = Duration::from_millis(500);
    config.request_timeout = request_timeout;
    config.cluster_name = cluster.to_owned();
    config
}

/// `future`'s output, or a panic naming `what` if it takes longer than [`STEP`].
pub(crate) async fn in_time<T>(what: &str, future: impl Future<Output = T>) -> T {
    timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
}

/// Like [`in_time`], and the result must be `Ok`.
pub(crate) async fn within<T, E: Display>(
    what: &str,
    future: impl Future<Output = Result<T, E>>,
) -> T {
    in_time(what, future)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

pub(crate) async fn connect(url: &str) -> async_nats::Client {
    within(&format!("connect to {url}"), async_nats::connect(url)).await
}
