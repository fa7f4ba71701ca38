//! `aether-actor-node`: one cluster node as a process, hosting actors of the demo type
//! [`Account`] on JetStream — for the chaos test, the cluster example and trying actors
//! across nodes by hand.
//!
//! ```text
//! aether-actor-node --nats <url[,url…]> --id <node id> [--namespace NS] [--cluster <name>] …
//! ```
//!
//! Besides `--namespace` (default `demo`: where the accounts' events are stored) and
//! `--metrics-addr HOST:PORT` (serve the node's metrics at `http://HOST:PORT/metrics` in
//! Prometheus's format; needs the feature `prometheus`; port 0 picks a free one, named in the
//! ready line as `metrics_addr`), the options
//! are those of every node binary (cluster timings, shard count, weight; see
//! `aether_cluster::node_cli`). A node with `--weight 0` owns no shards: a client that routes.
//!
//! Any NATS client can call its actors (see `aether_actor::cluster::wire` and
//! `aether_actor::cluster::demo`):
//!
//! ```text
//! nats req aether.actor.demo.account.n1 '{"op":"query","actorId":"acct-1","body":"Balance"}' \
//!     -H 'Aether-Map-Version: 0'
//! ```
//!
//! (any node answers `moved` for an actor it does not serve, with its map version; send it
//! again to the owner.) It prints JSON lines to stdout: once started
//! `{"node":"n1","ready":true,"incarnation":…}`, then whenever its placement changes
//! `{"node":"n1","map_version":7,"serving":12,"leader":"n2"}`; on SIGTERM or SIGINT it hands
//! its shards off, leaves the cluster and prints
//! `{"node":"n1","stopped":true,"ok":true,"moved":…,"retries":…,"fenced":…}`. Errors go to
//! stderr; the exit code is 2 for bad arguments, 1 for anything else.

use std::process::ExitCode;

use aether_actor::ActorConfig;
use aether_actor::cluster::demo::Account;
use aether_actor::cluster::{ClusterActors, RoutingConfig};
use aether_cluster::node_cli::{self, Exit, NODE_USAGE, NodeArgs, emit, start_retrying};
use aether_core::Namespace;
use aether_nats::{JetStreamConfig, JetStreamEventStore};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

fn usage() -> String {
    format!("usage: aether-actor-node {NODE_USAGE} [--namespace NS] [--metrics-addr HOST:PORT]")
}

async fn run(mut args: NodeArgs) -> Result<(), Exit> {
    let usage = usage();
    let namespace = args
        .extra
        .remove("namespace")
        .unwrap_or_else(|| "demo".to_owned());
    let metrics_addr = args.extra.remove("metrics-addr");
    args.no_extra(&usage).map_err(Exit::Usage)?;
    let namespace =
        Namespace::new(namespace).map_err(|e| Exit::Usage(format!("--namespace: {e}\n{usage}")))?;
    let node = args.config.node_id.clone();
    // Before anything registers its metrics: handles taken earlier would not be exported.
    let metrics = serve_metrics(metrics_addr.as_deref(), &usage).await?;
    let client = args.connect().await?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let replicas = args.config.replicas;
    let manager = start_retrying(client.clone(), args.config, args.start_timeout).await?;
    let store_config = JetStreamConfig {
        replicas,
        ..JetStreamConfig::default()
    };
    let store = JetStreamEventStore::with_client(client.clone(), namespace.clone(), store_config)
        .await
        .map_err(|e| format!("node {node}: cannot open the store: {e}"))?;
    let host = ClusterActors::join(
        &manager,
        client,
        namespace,
        Account,
        store,
        ActorConfig::default(),
        RoutingConfig::default(),
    )
    .await
    .map_err(|e| format!("node {node}: cannot host actors: {e}"))?;
    emit(
        &json!({
            "node": node.as_str(),
            "ready": true,
            "incarnation": manager.incarnation(),
            "metrics_addr": metrics.as_ref().map(|m| m.to_string()),
        })
        .to_string(),
    );
    let mut placements = manager.watch_placement();
    let mut last = String::new();
    loop {
        let line = {
            let placement = placements.borrow_and_update();
            let me = manager.node_id();
            let serving = placement
                .shards
                .iter()
                .filter(|s| {
                    s.moving_from.is_none() && s.owner.as_ref().is_some_and(|o| &o.node == me)
                })
                .count();
            json!({
                "node": node.as_str(),
                "map_version": placement.version,
                "serving": serving,
                "leader": manager.leader().map(|l| l.to_string()),
            })
            .to_string()
        };
        if line != last {
            emit(&line);
            last = line;
        }
        tokio::select! {
            changed = placements.changed() => {
                if changed.is_err() {
                    return Err(Exit::Failed(format!("node {node}: the placement stopped")));
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    // Hand every shard off before the membership leaves: nothing is served here once the
    // leader gives the shards to others.
    host.shutdown().await;
    let stats = host.stats();
    let result = manager.shutdown().await;
    emit(
        &json!({
            "node": node.as_str(),
            "stopped": true,
            "ok": result.is_ok(),
            "moved": stats.moved,
            "retries": stats.retries,
            "fenced": stats.fenced,
        })
        .to_string(),
    );
    result.map_err(|e| Exit::Failed(format!("node {node}: graceful shutdown incomplete: {e}")))
}

/// Starts the `/metrics` endpoint if `--metrics-addr` asks for one; the address it listens on.
#[cfg(feature = "prometheus")]
async fn serve_metrics(
    addr: Option<&str>,
    usage: &str,
) -> Result<Option<std::net::SocketAddr>, Exit> {
    use aether_actor::prometheus::{MetricsConfig, serve_metrics};
    let Some(addr) = addr else { return Ok(None) };
    let addr = addr.parse().map_err(|e| {
        Exit::Usage(format!(
            "--metrics-addr {addr}: not HOST:PORT ({e})\n{usage}"
        ))
    })?;
    let server = serve_metrics(&MetricsConfig::at(addr))
        .await
        .map_err(|e| Exit::Failed(e.to_string()))?
        .ok_or_else(|| Exit::Failed("metrics endpoint not started".to_owned()))?;
    let local = server.local_addr();
    // Served for as long as the process lives.
    std::mem::forget(server);
    Ok(Some(local))
}

#[cfg(not(feature = "prometheus"))]
async fn serve_metrics(
    addr: Option<&str>,
    usage: &str,
) -> Result<Option<std::net::SocketAddr>, Exit> {
    match addr {
        None => Ok(None),
        Some(_) => Err(Exit::Usage(format!(
            "--metrics-addr: this binary was built without the feature `prometheus` \
             (cargo build -p aether-actor --features cluster,prometheus)\n{usage}"
        ))),
    }
}

fn main() -> ExitCode {
    node_cli::main(&usage(), Some(2), run)
}
