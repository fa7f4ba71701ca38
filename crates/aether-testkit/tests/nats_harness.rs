//! The nats-server harness itself: isolation, readiness, faults and restarts. These tests need
//! `nats-server` >= 2.12 and fail (never skip) with the install command when it is missing.

use std::net::TcpStream;
use std::time::Duration;

use std::io::{Read, Write};

use aether_testkit::nats_server::{
    MIN_VERSION, NatsCluster, NatsServer, ServerOptions, server_binary,
};

fn reachable(url: &str) -> bool {
    let addr = url.trim_start_matches("nats://");
    TcpStream::connect_timeout(
        &addr.parse().expect("socket address"),
        Duration::from_millis(500),
    )
    .is_ok()
}

#[test]
fn finds_a_supported_server() {
    let binary = server_binary().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        (binary.version.0, binary.version.1) >= MIN_VERSION,
        "{binary:?}"
    );
}

#[test]
fn single_server_kill_and_restart_on_the_same_port_and_store() {
    let mut server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    assert!(reachable(&url));
    let store = server.node().store_dir();
    assert!(
        store.exists(),
        "JetStream created its store in the node's own directory"
    );

    server.kill();
    assert!(!reachable(&url), "killed server still accepts connections");
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.url(), url, "restart keeps the port");
    assert_eq!(server.node().store_dir(), store, "restart keeps the store");
    assert!(reachable(&url));

    server.stop();
    assert!(!reachable(&url), "stopped server still accepts connections");
}

#[test]
fn parallel_servers_do_not_collide() {
    let servers: Vec<NatsServer> = (0..3)
        .map(|_| NatsServer::start().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let mut urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 3);
}

#[test]
fn cluster_elects_a_meta_leader_and_survives_a_member_restart() {
    let mut cluster = NatsCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    assert!(cluster.urls().iter().all(|u| reachable(u)));
    let pid = {
        let node = &mut cluster.nodes()[0];
        let pid = node.pid();
        node.kill();
        pid
    };
    // The other two keep (or re-elect) a meta leader.
    for node in &mut cluster.nodes()[1..] {
        node.wait_ready(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let node = &mut cluster.nodes()[0];
    node.start().unwrap_or_else(|e| panic!("{e}"));
    node.wait_ready(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(node.pid(), pid, "a new process");
}

/// `GET <path>` on a node's monitoring port, the body as text.
fn monitor_get(monitor_url: &str, path: &str) -> String {
    let addr = monitor_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("monitor port");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

#[test]
fn servers_can_fsync_every_write() {
    let jetstream_config = |server: &mut NatsServer| {
        let varz = monitor_get(&server.node().monitor_url(), "/varz");
        let body = varz.split("\r\n\r\n").nth(1).expect("a body").to_owned();
        let varz: serde_json::Value = serde_json::from_str(&body).expect("json");
        varz["jetstream"]["config"].clone()
    };
    let mut synced = NatsServer::start_with(&ServerOptions::new().sync_always())
        .unwrap_or_else(|e| panic!("{e}"));
    let config = jetstream_config(&mut synced);
    assert_eq!(config["sync_always"], true, "{config}");
    let mut default = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let config = jetstream_config(&mut default);
    assert_ne!(config["sync_always"], true, "{config}");
}
