//! The `/metrics` endpoint of a node (features `cluster` and `prometheus`, a real
//! `nats-server`): `aether-actor-node --metrics-addr 127.0.0.1:0` serves on a free loopback
//! port named in its ready line; after asks sent to it over NATS, a plain HTTP GET returns the
//! documented metrics in Prometheus's text format with values that match the work done. Fails
//! (never skips) when `nats-server` is missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use aether_testkit::nats_server::NatsServer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// Patience for the node's lines (start, placement): a property of its timings, with room for
/// a slow machine.
const PATIENCE: Duration = Duration::from_secs(60);
const ASKS: u64 = 5;

async fn next_line(
    lines: &mut mpsc::UnboundedReceiver<Value>,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let wait = async {
        while let Some(line) = lines.recv().await {
            if ok(&line) {
                return line;
            }
        }
        panic!("the node ended before {what}");
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {PATIENCE:?}"))
}

/// `GET /metrics` over a plain socket; the body.
fn scrape(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The value of the sample `name{labels}` whose labels include every one of `with`.
fn sample(body: &str, name: &str, with: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let metric = series.split('{').next().unwrap_or_default();
            metric == name && with.iter().all(|w| series.contains(w))
        })
        .map(|(_, value)| {
            value
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {value}: {e}"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_its_metrics_to_prometheus() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let namespace = format!("scrape-{}", uuid::Uuid::now_v7().simple());
    let mut child = Command::new(env!("CARGO_BIN_EXE_aether-actor-node"))
        .args([
            "--nats",
            &server.url(),
            "--id",
            "n1",
            "--namespace",
            &namespace,
        ])
        .args([
            "--cluster",
            &namespace,
            "--shards",
            "4",
            "--stabilization-ms",
            "100",
        ])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the node");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, mut lines) = mpsc::unbounded_channel();
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
    let ready = next_line(&mut lines, "the ready line", |l| l["ready"] == true).await;
    let addr = ready["metrics_addr"]
        .as_str()
        .expect("metrics_addr in the ready line")
        .to_owned();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let placed = next_line(&mut lines, "every shard served", |l| l["serving"] == 4).await;
    let map_version = placed["map_version"].as_u64().expect("map_version");

    // Work, sent as any NATS client would.
    let client = async_nats::connect(server.url()).await.unwrap();
    let subject = format!("aether.actor.{namespace}.account.n1");
    for i in 0..ASKS {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Aether-Map-Version", map_version.to_string());
        let body = json!({
            "op": "ask",
            "actorId": format!("acct-{i}"),
            "commandId": format!("deposit-{i}"),
            "body": {"Deposit": {"amount": 5}},
        });
        let reply = client
            .request_with_headers(subject.clone(), headers, body.to_string().into())
            .await
            .expect("a reply");
        let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert!(reply.get("ok").is_some(), "ask {i}: {reply}");
    }

    let (status, body) = scrape(&addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let ns = format!("namespace=\"{namespace}\"");
    let account = "actor_type=\"account\"";
    let jetstream = "store=\"jetstream\"";
    let value = |name: &str, with: &[&str]| {
        sample(&body, name, with).unwrap_or_else(|| panic!("no {name} {with:?} in:\n{body}"))
    };
    assert_eq!(
        value("aether_actor_commands_total", &[&ns, account]),
        ASKS as f64
    );
    assert_eq!(
        value("aether_actor_requests_served_total", &[&ns, account]),
        ASKS as f64
    );
    assert_eq!(
        value("aether_actor_activations_total", &[&ns, account]),
        ASKS as f64
    );
    assert_eq!(
        value("aether_store_events_saved_total", &[&ns, jetstream]),
        ASKS as f64
    );
    // Histograms: a count per save, and seconds that are neither negative nor absurd.
    assert_eq!(
        value("aether_store_save_seconds_count", &[&ns, jetstream]),
        ASKS as f64
    );
    let seconds = value("aether_store_save_seconds_sum", &[&ns, jetstream]);
    assert!(
        seconds > 0.0 && seconds < PATIENCE.as_secs_f64(),
        "{seconds}"
    );
    assert_eq!(
        value("aether_actor_command_seconds_count", &[&ns, account]),
        ASKS as f64
    );
    assert!(value("aether_cluster_lease_acquired_total", &[]) >= 1.0);
    assert_eq!(value("aether_cluster_members", &[]), 1.0);
    // Described: help and type lines.
    assert!(
        body.contains("# TYPE aether_actor_commands_total counter"),
        "{body}"
    );
    assert!(
        body.contains("# HELP aether_actor_commands_total"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE aether_store_save_seconds histogram"),
        "{body}"
    );

    let (status, _) = scrape(&addr, "/elsewhere");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    let pid = child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    next_line(&mut lines, "the stopped line", |l| l["stopped"] == true).await;
}
