//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Operate an Aether deployment: its namespaces, events and actors, live bus events, the
/// cluster, and benchmarks of your own NATS servers.
#[derive(Debug, Parser)]
#[command(name = "aether", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Where to connect.
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Print JSON: one document, or one JSON object per line for streaming commands.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How to reach Aether's data: NATS or an embedded data directory.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// NATS server URL(s), comma-separated; default: $AETHER_NATS (credentials in the URL
    /// are never printed).
    #[arg(long, global = true, value_name = "URL", conflicts_with = "data")]
    pub(crate) nats: Option<String>,
    /// An embedded data directory (read-only; works while the application runs); wins over
    /// $AETHER_NATS.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
    /// NATS credentials file (JWT and NKey seed).
    #[arg(long, global = true, env = "AETHER_NATS_CREDS", value_name = "FILE")]
    pub(crate) creds: Option<PathBuf>,
    /// NATS user name (with --password).
    #[arg(long, global = true, env = "AETHER_NATS_USER", value_name = "USER")]
    pub(crate) user: Option<String>,
    /// NATS password; prefer the environment variable to the flag (flags show in `ps`).
    #[arg(
        long,
        global = true,
        env = "AETHER_NATS_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub(crate) password: Option<String>,
    /// NATS token; prefer the environment variable to the flag.
    #[arg(
        long,
        global = true,
        env = "AETHER_NATS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,
    /// CA certificate (PEM) to verify the NATS servers' TLS certificates; requires TLS.
    #[arg(long, global = true, env = "AETHER_NATS_TLS_CA", value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Inbox prefix of the connection: replies come below it, so the server's permissions
    /// must let this user subscribe to it. The default is the `cli` role's (docs/permissions.md);
    /// a tenant's user needs its own (`_INBOX_t.<namespace>`).
    #[arg(
        long,
        global = true,
        env = "AETHER_NATS_INBOX_PREFIX",
        default_value = aether_nats::permissions::CLI_INBOX_PREFIX,
        value_name = "PREFIX"
    )]
    pub(crate) inbox_prefix: String,
    /// How long to wait for NATS to answer, in milliseconds.
    #[arg(long, global = true, default_value_t = 5000, value_name = "MS")]
    pub(crate) timeout_ms: u64,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Events, actors and bytes per namespace.
    Namespaces,
    /// An actor's events, in version order.
    Events {
        /// The namespace.
        namespace: String,
        /// The actor id.
        actor: String,
        /// First version to show.
        #[arg(long, default_value_t = 1, value_name = "VERSION")]
        from: u64,
        /// Keep printing new events as they are stored (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
        /// How often --follow looks for new events, in milliseconds.
        #[arg(long, default_value_t = 500, value_name = "MS")]
        poll_ms: u64,
    },
    /// An actor's latest version, snapshot and last event; on a cluster its shard and owner.
    Actor {
        /// The namespace.
        namespace: String,
        /// The actor id.
        actor: String,
        /// The cluster's name (for the shard and owner).
        #[arg(long, default_value = "aether", value_name = "NAME")]
        cluster: String,
    },
    /// Live events on the bus, for namespaces matching a NATS-style pattern (`*`, `>`).
    Tail {
        /// The namespace pattern, e.g. `prod.*` or `>`.
        pattern: String,
        /// Only events of this type (repeatable).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// Only actors whose id matches this pattern.
        #[arg(long, value_name = "PATTERN")]
        actor: Option<String>,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// The cluster: members, leader, shard map and its history.
    Cluster {
        /// The cluster's name.
        #[arg(long, global = true, default_value = "aether", value_name = "NAME")]
        cluster: String,
        /// What to show.
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Benchmarks against your NATS, with same-run ratios to raw NATS doing the same work.
    ///
    /// Creates (and afterwards deletes) its own streams and writes events: run it with a
    /// node's credentials (the `node` role of docs/permissions.md); the read-only `cli` role
    /// is refused at its first stream creation.
    Bench {
        /// Operations per side and round.
        #[arg(long, global = true, default_value_t = 5000, value_name = "N")]
        count: u64,
        /// Operations in flight at once (actors, tasks).
        #[arg(long, global = true, default_value_t = 50, value_name = "N")]
        concurrency: u64,
        /// Rounds; each runs both sides once, alternating which goes first.
        #[arg(long, global = true, default_value_t = 3, value_name = "N")]
        rounds: u64,
        /// `bench bus`: how long to wait for the next delivery before counting the rest as
        /// lost, in milliseconds.
        #[arg(long, global = true, default_value_t = 2000, value_name = "MS")]
        patience_ms: u64,
        /// No progress bars.
        #[arg(long, global = true)]
        quiet: bool,
        /// What to measure.
        #[command(subcommand)]
        what: BenchCommand,
    },
}

/// `aether cluster …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Members and their state, leader, epoch, map version, shards per node, last moves.
    Status,
    /// Topology changes as they happen (Ctrl-C stops).
    Watch {
        /// Stop after this many changes.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// The shard map's history, one record per version.
    History,
}

/// `aether bench …`.
#[derive(Debug, Clone, Copy, Subcommand)]
pub(crate) enum BenchCommand {
    /// Event store appends (server-checked versions) against raw JetStream publishes.
    Store,
    /// Event bus publish → remote delivery against raw core NATS publish/subscribe.
    Bus,
    /// Actors handling commands (one event each) against raw store appends of the same events.
    Actors,
}
