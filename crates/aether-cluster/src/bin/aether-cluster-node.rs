//! `aether-cluster-node`: one cluster node as a process, for tests, benchmarks and trying the
//! cluster layer by hand.
//!
//! ```text
//! aether-cluster-node --nats <url[,url…]> --id <node id> [--cluster <name>] [--shards N]
//!     [--heartbeat-ms MS] [--member-ttl-ms MS] [--probe-timeout-ms MS] [--lease-ttl-ms MS]
//!     [--lease-margin-ms MS] [--stabilization-ms MS] [--max-moves N] [--move-interval-ms MS]
//!     [--request-timeout-ms MS] [--replicas N] [--start-timeout-ms MS]
//! ```
//!
//! With several NATS URLs it connects to the first that answers, in the order given (and
//! reconnects to the others in that order), so tests know which server each node uses.
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
//!
//! Starting is retried: NATS may not answer yet, and creating a cluster's replicated buckets
//! can take longer than one request timeout on a busy JetStream cluster (the request times out
//! while the stream is still being created). Every failed attempt is reported on stderr with
//! its causes; the node retries after 250 ms, doubling the pause up to 2 s, until
//! `--start-timeout-ms` (default 60 s) has passed, then exits with the last error. An invalid configuration (including a node id a live node already uses)
//! exits at once.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use aether_cluster::{ClusterConfig, ClusterError, ClusterManager};
use aether_core::{NodeId, ShardCount, redact_url_credentials};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: aether-cluster-node --nats <url[,url...]> --id <node id> \
[--cluster NAME] [--shards N] [--heartbeat-ms MS] [--member-ttl-ms MS] [--probe-timeout-ms MS] \
[--lease-ttl-ms MS] [--lease-margin-ms MS] [--stabilization-ms MS] [--max-moves N] \
[--move-interval-ms MS] [--request-timeout-ms MS] [--replicas N] [--start-timeout-ms MS]";

/// Pause after the first failed start attempt; doubled after each further one.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest pause between two start attempts.
const MAX_RETRY: Duration = Duration::from_secs(2);
/// How long starting is retried by default.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    nats: Vec<String>,
    config: ClusterConfig,
    start_timeout: Duration,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let Some(name) = flag.strip_prefix("--") else {
            return Err(format!("unexpected argument {flag:?}\n{USAGE}"));
        };
        let (name, value) = match name.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (
                name.to_owned(),
                args.next()
                    .ok_or_else(|| format!("--{name} needs a value\n{USAGE}"))?,
            ),
        };
        values.insert(name, value);
    }
    let nats = values
        .remove("nats")
        .ok_or_else(|| format!("--nats is required\n{USAGE}"))?;
    let id = values
        .remove("id")
        .ok_or_else(|| format!("--id is required\n{USAGE}"))?;
    let id = NodeId::new(id).map_err(|e| format!("--id: {e}"))?;
    let mut config = ClusterConfig::new(id);
    let mut start_timeout = DEFAULT_START_TIMEOUT;
    let number = |value: &str, name: &str| -> Result<u64, String> {
        value
            .parse::<u64>()
            .map_err(|e| format!("--{name} {value:?}: {e}"))
    };
    for (name, value) in values {
        let ms = || number(&value, &name).map(Duration::from_millis);
        match name.as_str() {
            "cluster" => config.cluster_name = value.clone(),
            "shards" => {
                let count =
                    u32::try_from(number(&value, &name)?).map_err(|e| format!("--shards: {e}"))?;
                config.shard_count =
                    ShardCount::new(count).map_err(|e| format!("--shards: {e}"))?;
            }
            "heartbeat-ms" => config.heartbeat = ms()?,
            "member-ttl-ms" => config.member_ttl = ms()?,
            "probe-timeout-ms" => config.probe_timeout = ms()?,
            "lease-ttl-ms" => config.lease_ttl = ms()?,
            "lease-margin-ms" => config.lease_margin = ms()?,
            "stabilization-ms" => config.stabilization_delay = ms()?,
            "max-moves" => {
                config.max_moves_per_step = usize::try_from(number(&value, &name)?)
                    .map_err(|e| format!("--max-moves: {e}"))?;
            }
            "move-interval-ms" => config.move_interval = ms()?,
            "request-timeout-ms" => config.request_timeout = ms()?,
            "start-timeout-ms" => start_timeout = ms()?,
            "replicas" => {
                config.replicas = usize::try_from(number(&value, &name)?)
                    .map_err(|e| format!("--replicas: {e}"))?;
            }
            other => return Err(format!("unknown option --{other}\n{USAGE}")),
        }
    }
    Ok(Args {
        nats: nats.split(',').map(str::to_owned).collect(),
        config,
        start_timeout,
    })
}

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

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn run(args: Args) -> Result<(), String> {
    let node = args.config.node_id.clone();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .retain_servers_order()
        .connect(args.nats.clone())
        .await
        .map_err(|e| {
            format!(
                "cannot connect to {}: {e}",
                redact_url_credentials(&args.nats.join(","))
            )
        })?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let manager = start(client, args.config, args.start_timeout).await?;
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

/// Starts the manager, retrying every failure but an invalid configuration until
/// `patience` has passed; each failed attempt is reported on stderr.
async fn start(
    client: async_nats::Client,
    config: ClusterConfig,
    patience: Duration,
) -> Result<ClusterManager, String> {
    let node = config.node_id.clone();
    let deadline = tokio::time::Instant::now().checked_add(patience);
    let mut pause = FIRST_RETRY;
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let error = match ClusterManager::start(client.clone(), config.clone()).await {
            Ok(manager) => {
                if attempt > 1 {
                    eprintln!("node {node}: started at attempt {attempt}");
                }
                return Ok(manager);
            }
            Err(error) => error,
        };
        let fatal = matches!(error, ClusterError::InvalidConfig(_));
        let now = tokio::time::Instant::now();
        if fatal || deadline.is_some_and(|deadline| now + pause >= deadline) {
            return Err(format!(
                "cannot start node {node} (attempt {attempt}, giving up): {}",
                chain(&error)
            ));
        }
        eprintln!(
            "node {node}: start attempt {attempt} failed, retrying in {pause:?}: {}",
            chain(&error)
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY);
    }
}

/// `error` and its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
