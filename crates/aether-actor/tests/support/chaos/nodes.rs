//! Node processes of the chaos test: `aether-actor-node` started, killed (SIGKILL), paused
//! (SIGSTOP) and resumed (SIGCONT), stopped gracefully (SIGTERM), with their JSON-lines
//! output read as it comes.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// What every node of a run is started with.
#[derive(Debug, Clone)]
pub(crate) struct NodeSetup {
    /// NATS URLs, comma-separated.
    pub(crate) nats: String,
    pub(crate) cluster: String,
    pub(crate) namespace: String,
    pub(crate) shards: u32,
    pub(crate) replicas: usize,
    pub(crate) member_ttl: Duration,
}

impl NodeSetup {
    fn args(&self, id: &str) -> Vec<String> {
        let ms = |d: Duration| d.as_millis().to_string();
        let ttl = self.member_ttl;
        [
            ("nats", self.nats.clone()),
            ("id", id.to_owned()),
            ("cluster", self.cluster.clone()),
            ("namespace", self.namespace.clone()),
            ("shards", self.shards.to_string()),
            ("replicas", self.replicas.to_string()),
            ("heartbeat-ms", ms(ttl / 6)),
            ("member-ttl-ms", ms(ttl)),
            ("probe-timeout-ms", ms(ttl / 6)),
            ("lease-ttl-ms", ms(ttl * 2)),
            ("lease-margin-ms", ms(ttl / 5)),
            ("stabilization-ms", ms(ttl / 3)),
            ("move-interval-ms", "100".to_owned()),
            ("request-timeout-ms", ms(ttl)),
        ]
        .into_iter()
        .flat_map(|(name, value)| [format!("--{name}"), value])
        .collect()
    }
}

/// One node process.
pub(crate) struct NodeProcess {
    pub(crate) id: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Its final line (`"stopped": true`), once seen.
    pub(crate) last: Option<Value>,
}

impl NodeProcess {
    /// Starts node `id` and waits (up to `patience`) until it reports ready.
    pub(crate) async fn start(setup: &NodeSetup, id: &str, patience: Duration) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aether-actor-node"))
            .args(setup.args(id))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start node {id}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && tx.send(value).is_err()
                {
                    return;
                }
            }
        });
        let mut node = Self {
            id: id.to_owned(),
            child,
            lines,
            last: None,
        };
        node.wait_for("ready", patience).await;
        node
    }

    /// Waits for a line with `key` true; panics after `patience`.
    async fn wait_for(&mut self, key: &str, patience: Duration) -> Value {
        let id = self.id.clone();
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                if line.get(key).and_then(Value::as_bool) == Some(true) {
                    return line;
                }
            }
            panic!("node {id} ended before reporting {key}");
        };
        tokio::time::timeout(patience, wait)
            .await
            .unwrap_or_else(|_| panic!("node {id} did not report {key} within {patience:?}"))
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("a running node has a pid")
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("kill -{signal} {}: {e}", self.id));
        assert!(status.success(), "kill -{signal} node {}", self.id);
    }

    /// SIGKILL: no handoff, no leave.
    pub(crate) async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }

    /// SIGSTOP.
    pub(crate) fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT.
    pub(crate) fn resume(&self) {
        self.signal("CONT");
    }

    /// SIGTERM, then waits (up to `patience`) for its final line: shards handed off, left.
    pub(crate) async fn stop(mut self, patience: Duration) -> Value {
        self.signal("TERM");
        let last = self.wait_for("stopped", patience).await;
        let _ = tokio::time::timeout(patience, self.child.wait()).await;
        self.last = Some(last.clone());
        last
    }
}
