//! [`Node`]: one `nats-server` process with its own ports, config, store and log.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{HarnessError, ServerBinary, ServerOptions};

/// Cluster membership of a node: its route port and its peers' route ports.
#[derive(Debug, Clone)]
pub(super) struct ClusterSettings {
    pub(super) port: u16,
    pub(super) routes: Vec<u16>,
}

/// One `nats-server` process. Stopped, and its directory removed, on drop.
#[derive(Debug)]
pub struct Node {
    name: String,
    binary: ServerBinary,
    client_port: u16,
    monitor_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A port the OS considers free right now on 127.0.0.1, never one this process handed out
/// before: a port is only bound when its server starts, so until then the OS may offer it
/// again, and a cluster's second server would then fail to bind its first server's port.
pub(super) fn free_port() -> Result<u16, HarnessError> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    // Tried this often, the OS's ephemeral range (tens of thousands of ports) cannot be
    // exhausted by one test process.
    for _ in 0..64 {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
        let port = listener
            .local_addr()
            .map_err(io("reading a free port"))?
            .port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port)
        {
            return Ok(port);
        }
    }
    Err(HarnessError::Io {
        context: "finding a port not handed out before".to_owned(),
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    })
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> HarnessError + '_ {
    move |source| HarnessError::Io {
        context: context.to_owned(),
        source,
    }
}

impl Node {
    pub(super) fn new(
        binary: ServerBinary,
        name: &str,
        cluster: Option<ClusterSettings>,
        options: &ServerOptions,
    ) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .map_err(io("creating the node's directory"))?;
        let (client_port, monitor_port) = (free_port()?, free_port()?);
        let store = dir.path().join("store");
        let sync = if options.sync_always {
            "  sync_interval: always\n"
        } else {
            ""
        };
        let mut config = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{client_port}\nhttp: 127.0.0.1:{monitor_port}\n\
             jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 256MB\n  max_file_store: 4GB\n{sync}}}\n"
        );
        config.push_str(&options.extra_config);
        config.push('\n');
        if let Some(cluster) = cluster {
            let routes: Vec<String> = cluster
                .routes
                .iter()
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            config.push_str(&format!(
                "cluster {{\n  name: aether-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                cluster.port,
                routes.join(", ")
            ));
        }
        fs::write(dir.path().join("server.conf"), config).map_err(io("writing the config"))?;
        Ok(Self {
            name: name.to_owned(),
            binary,
            client_port,
            monitor_port,
            dir,
            child: None,
        })
    }

    /// The node's name (`server_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// The monitoring URL, `http://127.0.0.1:<port>` (`/varz`, `/jsz`, `/healthz`).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The store directory (kept across restarts).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the process (if not running) with the same config, port and store as before.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if the process cannot be spawned.
    pub fn start(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Ok(());
        }
        let child = Command::new(&self.binary.path)
            .arg("-c")
            .arg(self.dir.path().join("server.conf"))
            .arg("-l")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("spawning nats-server"))?;
        self.child = Some(child);
        Ok(())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until the node answers `/healthz` with 200: client port open and, in a cluster,
    /// JetStream in contact with an elected meta leader.
    ///
    /// # Errors
    ///
    /// [`HarnessError::NotReady`] with the end of the log if it is not ready within `timeout`
    /// or the process exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < timeout {
            if !self.is_running() {
                last = "the process exited".into();
                break;
            }
            match self.health() {
                Ok(()) => return Ok(()),
                Err(detail) => last = detail,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(HarnessError::NotReady {
            name: self.name.clone(),
            waited: started.elapsed(),
            detail: last,
            log_tail: self.log_tail(20),
        })
    }

    /// One `GET /healthz` on the monitoring port.
    fn health(&self) -> Result<(), String> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.monitor_port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| e.to_string())?;
        let status = response.lines().next().unwrap_or_default();
        if status.contains(" 200 ") {
            Ok(())
        } else {
            Err(response.lines().last().unwrap_or(status).to_owned())
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (a graceful shutdown: a leader steps down first), waiting up to 10 s before
    /// falling back to SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let terminated = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while terminated && Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::free_port;
    use std::collections::BTreeSet;

    /// A cluster takes three ports per server before any is bound; the OS offers a released
    /// port again soon (dozens of repeats in 1 000 binds on Linux), so the harness must not.
    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let mut seen = BTreeSet::new();
        for _ in 0..1000 {
            let port = free_port().unwrap_or_else(|e| panic!("{e}"));
            assert!(seen.insert(port), "port {port} handed out twice");
        }
    }
}
