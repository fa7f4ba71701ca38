//! What the node binaries (`aether-cluster-node`, and `aether-actor-node` in `aether-actor`)
//! share: their command line for a cluster node, starting a [`ClusterManager`] with retries,
//! and their JSON-lines output.
//!
//! ```text
//! --nats <url[,url…]> --id <node id> [--cluster <name>] [--shards N] [--weight W]
//!     [--heartbeat-ms MS] [--member-ttl-ms MS] [--probe-timeout-ms MS] [--lease-ttl-ms MS]
//!     [--lease-margin-ms MS] [--stabilization-ms MS] [--max-moves N] [--move-interval-ms MS]
//!     [--request-timeout-ms MS] [--replicas N] [--start-timeout-ms MS]
//! ```
//!
//! With several NATS URLs a node connects to the first that answers, in the order given (and
//! reconnects to the others in that order), so tests know which server each node uses.
//!
//! Starting is retried: NATS may not answer yet, and creating a cluster's replicated buckets
//! can take longer than one request timeout on a busy JetStream cluster. Every failed attempt
//! is reported on stderr with its causes; the node retries after 250 ms, doubling the pause up
//! to 2 s, until `--start-timeout-ms` (default 60 s) has passed. An invalid configuration
//! (including a node id a live node already uses) fails at once.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use aether_core::{NodeId, ShardCount, redact_url_credentials};

use crate::{ClusterConfig, ClusterError, ClusterManager};

/// The options every node binary takes (see the [module docs](self)).
pub const NODE_USAGE: &str = "--nats <url[,url...]> --id <node id> [--cluster NAME] \
[--shards N] [--weight W] [--heartbeat-ms MS] [--member-ttl-ms MS] [--probe-timeout-ms MS] \
[--lease-ttl-ms MS] [--lease-margin-ms MS] [--stabilization-ms MS] [--max-moves N] \
[--move-interval-ms MS] [--request-timeout-ms MS] [--replicas N] [--start-timeout-ms MS]";

/// Pause after the first failed start attempt; doubled after each further one.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest pause between two start attempts.
const MAX_RETRY: Duration = Duration::from_secs(2);
/// How long starting is retried by default.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A node's command line, parsed.
#[derive(Debug, Clone)]
pub struct NodeArgs {
    /// The NATS URLs, in the order to try them.
    pub nats: Vec<String>,
    /// The node's cluster settings.
    pub config: ClusterConfig,
    /// How long starting is retried.
    pub start_timeout: Duration,
    /// Options the binary takes besides the common ones (`--name value`, without the `--`),
    /// for the binary to read (and to refuse the ones it does not know).
    pub extra: BTreeMap<String, String>,
}

impl NodeArgs {
    /// Parses `args` (without the program name). `usage` is the binary's whole usage line,
    /// printed with every error.
    ///
    /// # Errors
    ///
    /// A message for a person (with `usage`) for `--help`, a missing `--nats` or `--id`, a
    /// flag without a value, or a value that is not valid.
    pub fn parse(args: impl Iterator<Item = String>, usage: &str) -> Result<Self, String> {
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                return Err(usage.to_owned());
            }
            let Some(name) = flag.strip_prefix("--") else {
                return Err(format!("unexpected argument {flag:?}\n{usage}"));
            };
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (
                    name.to_owned(),
                    args.next()
                        .ok_or_else(|| format!("--{name} needs a value\n{usage}"))?,
                ),
            };
            values.insert(name, value);
        }
        let nats = values
            .remove("nats")
            .ok_or_else(|| format!("--nats is required\n{usage}"))?;
        let id = values
            .remove("id")
            .ok_or_else(|| format!("--id is required\n{usage}"))?;
        let id = NodeId::new(id).map_err(|e| format!("--id: {e}"))?;
        let mut config = ClusterConfig::new(id);
        let mut start_timeout = DEFAULT_START_TIMEOUT;
        let mut extra = BTreeMap::new();
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
                    let count = u32::try_from(number(&value, &name)?)
                        .map_err(|e| format!("--shards: {e}"))?;
                    config.shard_count =
                        ShardCount::new(count).map_err(|e| format!("--shards: {e}"))?;
                }
                "weight" => {
                    config.metadata.weight = u32::try_from(number(&value, &name)?)
                        .map_err(|e| format!("--weight: {e}"))?;
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
                _ => {
                    extra.insert(name, value);
                }
            }
        }
        Ok(Self {
            nats: nats.split(',').map(str::to_owned).collect(),
            config,
            start_timeout,
            extra,
        })
    }

    /// Refuses any option left in [`extra`](Self::extra).
    ///
    /// # Errors
    ///
    /// A message naming the first unknown option, with `usage`.
    pub fn no_extra(&self, usage: &str) -> Result<(), String> {
        match self.extra.keys().next() {
            Some(name) => Err(format!("unknown option --{name}\n{usage}")),
            None => Ok(()),
        }
    }

    /// Connects to the NATS URLs: the first that answers, in order, retried until one does,
    /// reconnecting forever.
    ///
    /// # Errors
    ///
    /// A message naming the URLs (without credentials).
    pub async fn connect(&self) -> Result<async_nats::Client, String> {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .retain_servers_order()
            .connect(self.nats.clone())
            .await
            .map_err(|e| {
                format!(
                    "cannot connect to {}: {e}",
                    redact_url_credentials(&self.nats.join(","))
                )
            })
    }
}

/// Starts the manager, retrying every failure but an invalid configuration until `patience`
/// has passed; each failed attempt is reported on stderr.
///
/// # Errors
///
/// The last error, with its causes, once starting is given up.
pub async fn start_retrying(
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
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Why a node binary stops with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// A bad command line (exit code 2).
    Usage(String),
    /// Anything else (exit code 1).
    Failed(String),
}

impl From<String> for Exit {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

/// A node binary's `main`: parses the command line (`usage` printed with errors), runs `run`
/// on a tokio runtime (`workers` worker threads, or the current thread for `None`), prints
/// any error to stderr, and returns the exit code: 2 for a bad command line, 1 for anything
/// else.
pub fn main<F, Fut>(usage: &str, workers: Option<usize>, run: F) -> ExitCode
where
    F: FnOnce(NodeArgs) -> Fut,
    Fut: Future<Output = Result<(), Exit>>,
{
    let args = match NodeArgs::parse(std::env::args().skip(1), usage) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut builder = match workers {
        Some(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
        None => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit::Usage(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
        Err(Exit::Failed(message)) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `line` to stdout and flushes it (the binaries' output is read line by line).
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<NodeArgs, String> {
        NodeArgs::parse(args.iter().map(|a| (*a).to_owned()), "usage")
    }

    #[test]
    fn the_common_options_set_the_config_and_the_others_are_left_to_the_binary() {
        let args = parse(&[
            "--nats=nats://a:1,nats://b:2",
            "--id",
            "n1",
            "--shards",
            "64",
            "--weight",
            "0",
            "--member-ttl-ms",
            "1500",
            "--namespace",
            "bank",
        ])
        .unwrap();
        assert_eq!(args.nats, ["nats://a:1", "nats://b:2"]);
        assert_eq!(args.config.node_id.as_str(), "n1");
        assert_eq!(args.config.shard_count.get(), 64);
        assert_eq!(args.config.metadata.weight, 0);
        assert_eq!(args.config.member_ttl, Duration::from_millis(1500));
        assert_eq!(
            args.extra.get("namespace").map(String::as_str),
            Some("bank")
        );
        assert!(args.no_extra("usage").unwrap_err().contains("--namespace"));
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_usage() {
        for bad in [
            &["--id", "n1"][..],
            &["--nats", "nats://a:1"],
            &["--nats", "nats://a:1", "--id", "bad id"],
            &["--nats", "nats://a:1", "--id", "n1", "--shards", "zero"],
            &["--nats", "nats://a:1", "--id", "n1", "--shards"],
            &["stray"],
            &["--help"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
