//! Serving the metrics of a node at `/metrics` in Prometheus's text format (feature
//! `prometheus`): [`MetricsConfig`] (off by default) and [`serve_metrics`].
//!
//! The exporter is `metrics-exporter-prometheus` installed as the global `metrics` recorder;
//! the HTTP side is a minimal HTTP/1.1 responder on a tokio listener (one request per
//! connection), enough for a Prometheus scraper, `curl` or a load balancer's health check.
//! Install it **before** opening stores, buses and actor runtimes: they register their
//! metrics when they are created.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where a node serves its metrics. `Default`: nowhere (off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// The address of the `/metrics` endpoint (`None`: metrics are not served). Port 0 picks
    /// a free port ([`MetricsServer::local_addr`] tells which).
    pub addr: Option<SocketAddr>,
}

impl MetricsConfig {
    /// Metrics served at `addr`.
    pub fn at(addr: SocketAddr) -> Self {
        Self { addr: Some(addr) }
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Another `metrics` recorder is installed in this process already.
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
    /// The address could not be bound.
    #[error("cannot listen for /metrics on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A running `/metrics` endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    handle: PrometheusHandle,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The current metrics in Prometheus's text format (what `/metrics` answers).
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Buckets for the `_seconds` histograms: 100 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the Prometheus recorder as the process's `metrics` recorder, describes every
/// Aether metric ([`describe_all`](crate::metrics::describe_all)) and serves them at
/// `http://<addr>/metrics`, if `config` names an address (`Ok(None)` otherwise). Call it from
/// within a tokio runtime.
///
/// # Errors
///
/// [`MetricsError::Recorder`] if a recorder is installed already; [`MetricsError::Bind`] if
/// the address cannot be bound.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), aether_actor::prometheus::MetricsError> {
/// use aether_actor::prometheus::{MetricsConfig, serve_metrics};
///
/// let server = serve_metrics(&MetricsConfig::at("127.0.0.1:9464".parse().unwrap())).await?;
/// // ... open stores and actors, then keep `server` alive.
/// # drop(server);
/// # Ok(())
/// # }
/// ```
pub async fn serve_metrics(config: &MetricsConfig) -> Result<Option<MetricsServer>, MetricsError> {
    let Some(addr) = config.addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
        .map_err(|e| MetricsError::Recorder(e.to_string()))?
        .install_recorder()
        .map_err(|e| MetricsError::Recorder(e.to_string()))?;
    crate::metrics::describe_all();
    let task = tokio::spawn(accept(listener, handle.clone()));
    Ok(Some(MetricsServer {
        local_addr,
        handle,
        task,
    }))
}

async fn accept(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(respond(stream, handle.clone()));
            }
            Err(error) => {
                tracing::debug!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Most bytes of a request read (its head; a scraper sends a few hundred).
const MAX_REQUEST: usize = 8 * 1024;

async fn respond(mut stream: TcpStream, handle: PrometheusHandle) {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // Read up to the end of the head; a client that sends nothing is dropped after a while.
    let head = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            request.extend_from_slice(&buf[..n]);
            if request.windows(4).any(|w| w == b"\r\n\r\n") || request.len() > MAX_REQUEST {
                return Some(());
            }
        }
    })
    .await;
    if !matches!(head, Ok(Some(()))) {
        return;
    }
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next(), parts.next());
    let (status, content_type, body) = match (method, path) {
        (Some("GET"), Some("/metrics")) => {
            handle.run_upkeep();
            ("200 OK", "text/plain; version=0.0.4", handle.render())
        }
        (Some("GET"), _) => (
            "404 Not Found",
            "text/plain",
            "not found: metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
