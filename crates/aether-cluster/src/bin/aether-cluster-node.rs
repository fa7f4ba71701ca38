//! `aether-cluster-node`: one cluster node as a process, for tests, benchmarks and trying the
//! cluster layer by hand.
//!
//! ```text
//! aether-cluster-node --nats <url[,url…]> --id <node id> [--cluster <name>] [--shards N] …
//! ```
//!
//! The options (cluster timings, weight, …), how it connects and how it retries starting are
//! those of every node binary: see `aether_cluster::node_cli`.
//!
//! It prints one JSON line to stdout whenever its view changes:
//!
//! ```json
//! {"node":"n1","leader":"n2","epoch":7,"leads":false,"map_version":3,"map_epoch":7,
//!  "counts":{"n1":33,"n2":34,"n3":33},"members":["n1","n2","n3"]}
//! ```
//!
//! and, on SIGTERM or SIGINT, leaves the cluster gracefully (member key deleted, lease released)
//! and prints `{"node":"n1","stopped":true,"ok":true}` before exiting. Errors go to stderr;
//! the exit code is 2 for bad arguments, 1 for anything else.

use std::collections::BTreeMap;
use std::process::ExitCode;

use aether_cluster::ClusterManager;
use aether_cluster::node_cli::{self, Exit, NODE_USAGE, NodeArgs, emit, start_retrying};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

/// The node's view as one JSON line.
fn state_line(manager: &ClusterManager) -> String {
    let map = manager.shard_map();
    let counts: BTreeMap<String, u32> = map
        .as_ref()
        .map(|s| s.map.nodes().map(|(n, c)| (n.to_string(), c)).collect())
        .unwrap_or_default();
    let members: Vec<String> = manager.members().iter().map(|m| m.id.to_string()).collect();
    json!({
        "node": manager.node_id().as_str(),
        "leader": manager.leader().map(|l| l.to_string()),
        "epoch": manager.epoch(),
        "leads": manager.is_leader(),
        "map_version": map.as_ref().map(|s| s.version),
        "map_epoch": map.as_ref().map(|s| s.epoch),
        "counts": counts,
        "members": members,
    })
    .to_string()
}

async fn run(args: NodeArgs) -> Result<(), String> {
    let node = args.config.node_id.clone();
    let client = args.connect().await?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let manager = start_retrying(client, args.config, args.start_timeout).await?;
    let mut leader = manager.watch_leader();
    let mut map = manager.watch_shard_map();
    let Some(mut members) = manager.watch_members() else {
        return Err("membership is not running".to_owned());
    };
    let mut last = String::new();
    loop {
        let line = state_line(&manager);
        if line != last {
            emit(&line);
            last = line;
        }
        let closed = tokio::select! {
            changed = leader.changed() => changed.is_err(),
            changed = map.changed() => changed.is_err(),
            changed = members.changed() => changed.is_err(),
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        if closed {
            return Err(format!("node {node}: a cluster task stopped unexpectedly"));
        }
    }
    let result = manager.shutdown().await;
    emit(
        &json!({
            "node": node.as_str(),
            "stopped": true,
            "ok": result.is_ok(),
        })
        .to_string(),
    );
    result.map_err(|e| format!("node {node}: graceful shutdown incomplete: {e}"))
}

fn main() -> ExitCode {
    let usage = format!("usage: aether-cluster-node {NODE_USAGE}");
    let refuse_extra = usage.clone();
    node_cli::main(&usage, None, |args| async move {
        args.no_extra(&refuse_extra).map_err(Exit::Usage)?;
        run(args).await.map_err(Exit::Failed)
    })
}
