//! The `aether` binary under the permissions layout of `docs/permissions.md`, on a real
//! nats-server configured with `docs/nats-permissions.conf` verbatim (the testkit harness):
//!
//! - as the `cli` user, every read command works on data a `node` wrote — `namespaces`,
//!   `events`, `actor`, `cluster status|history|watch`, `tail` — and the server's streams, their
//!   message counts and its buckets are the same afterwards: the CLI created and wrote nothing;
//! - as `tenant-a`, another tenant's namespace is refused at once, naming the subject, exit 1,
//!   no secret printed; its own namespace reads with its own inbox prefix;
//! - `aether bench` as `cli` is refused at its first stream creation, naming the permission
//!   and the role it needs;
//! - a namespace whose snapshot bucket is missing is an error, never a bucket created by a
//!   read command (regression: `events` used to open namespaces with `with_client`, which
//!   creates what is missing).
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/run.rs"]
mod run;

use std::time::Duration;

use aether_cluster::ClusterManager;
use aether_core::{ActorId, ActorSnapshot, Event, EventStore, Namespace, SnapshotStore};
use aether_nats::{JetStreamConfig, JetStreamEventStore, NatsBusConfig, NatsEventBus};
use aether_testkit::nats_server::{NatsServer, ServerOptions};
use async_nats::ConnectOptions;
use futures::TryStreamExt;
use run::{Output, aether, aether_with_env, json_of};

/// The example configuration, used as it is.
const CONF: &str = include_str!("../../../docs/nats-permissions.conf");
/// How long a streaming command may take to print what it was sent: generous, the machine is
/// shared; a correct run prints within milliseconds.
const PATIENCE: Duration = Duration::from_secs(60);
/// The CLI's request timeout in these tests, far above how long a refusal takes: an error
/// that names the refused subject came from the server's permission notice, not a timeout.
const SLOW_MS: &str = "30000";
/// The cluster the node runs (the default name, as the `actor` command assumes).
const CLUSTER: &str = "aether";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn server() -> NatsServer {
    NatsServer::start_with(&ServerOptions::new().extra_config(CONF))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

fn actor(id: &str) -> ActorId {
    ActorId::new(id).unwrap()
}

/// The node's connection options (the configuration's placeholder password).
fn node() -> ConnectOptions {
    ConnectOptions::with_user_and_password("node".to_owned(), "node-secret".to_owned())
}

/// `aether --nats URL --user USER --password USER-secret --timeout-ms SLOW args…`.
fn aether_as(url: &str, user: &str, args: &[&str]) -> Output {
    let password = format!("{user}-secret");
    let mut all = vec![
        "--nats",
        url,
        "--user",
        user,
        "--password",
        &password,
        "--timeout-ms",
        SLOW_MS,
    ];
    all.extend_from_slice(args);
    aether(&all)
}

#[track_caller]
fn assert_no_secret(out: &Output) {
    assert!(
        !out.stdout.contains("secret") && !out.stderr.contains("secret"),
        "a password was printed: {out}"
    );
}

/// What the node writes: tenant-a's acct-1 (two events, a snapshot at 1), tenant-b's acct-9.
async fn write_data(url: &str) {
    let config = JetStreamConfig::default();
    let a = JetStreamEventStore::connect_with_options(url, node(), ns("tenant-a"), config)
        .await
        .expect("the node opens tenant-a");
    let b = a
        .for_namespace(ns("tenant-b"))
        .await
        .expect("the node opens tenant-b");
    for v in 1..=2 {
        a.save_event(Event::new(actor("acct-1"), "Deposited", v))
            .await
            .expect("save");
    }
    a.save_snapshot(ActorSnapshot::new(
        actor("acct-1"),
        1,
        serde_json::json!({"balance": 1}),
    ))
    .await
    .expect("snapshot");
    b.save_event(Event::new(actor("acct-9"), "Opened", 1))
        .await
        .expect("save");
}

/// Starts cluster node `n1` with the node's credentials; returns once it owns every shard.
async fn start_cluster(url: &str) -> ClusterManager {
    let client = node().connect(url).await.expect("the node connects");
    let manager = ClusterManager::start(client, nats::node_config(CLUSTER, "n1"))
        .await
        .expect("the cluster node starts");
    nats::until("n1 owns every shard", || {
        manager.shard_map().is_some_and(|m| m.map.is_complete())
    })
    .await;
    manager
}

/// The server's JetStream state as the node sees it: every stream by name (buckets are the
/// `KV_` streams) with its message count and last sequence — except the cluster's two
/// buckets, whose counts the live node changes with every heartbeat (their names are kept;
/// the `cli` user may not publish to `$KV.>` at all, and a refused publish fails the command).
async fn state(url: &str) -> Vec<(String, Option<(u64, u64)>)> {
    let client = node().connect(url).await.expect("the node connects");
    let live = [
        format!("KV_{CLUSTER}-members"),
        format!("KV_{CLUSTER}-coord"),
    ];
    let mut all: Vec<_> = async_nats::jetstream::new(client)
        .streams()
        .map_ok(|info| {
            let counts = (!live.contains(&info.config.name))
                .then_some((info.state.messages, info.state.last_sequence));
            (info.config.name, counts)
        })
        .try_collect()
        .await
        .expect("the node lists the streams");
    all.sort();
    all
}

#[test]
fn the_cli_user_reads_everything_a_node_wrote_and_changes_nothing() {
    let server = server();
    let url = server.url();
    let runtime = runtime();
    runtime.block_on(write_data(&url));
    let cluster = runtime.block_on(start_cluster(&url));
    let bus = runtime
        .block_on(NatsEventBus::connect_with_options(
            &url,
            node(),
            NatsBusConfig::default(),
        ))
        .expect("the node's bus connects");
    let before = runtime.block_on(state(&url));
    for bucket in [
        "KV_aether-snap-tenant-a",
        "KV_aether-members",
        "KV_aether-coord",
    ] {
        assert!(
            before.iter().any(|(name, _)| name == bucket),
            "{bucket} in {before:?}"
        );
    }

    // Credentials from the environment.
    let out = aether_with_env(
        &["--nats", &url, "--json", "namespaces"],
        &[
            ("AETHER_NATS_USER", "cli"),
            ("AETHER_NATS_PASSWORD", "cli-secret"),
        ],
    );
    assert!(out.ok(), "{out}");
    assert_no_secret(&out);
    let rows: Vec<(String, u64, u64)> = json_of(&out.stdout)["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["events"].as_u64().unwrap(),
                r["actors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [("tenant-a".to_owned(), 2, 1), ("tenant-b".to_owned(), 1, 1)]
    );

    // Credentials from flags, on every other command.
    let out = aether_as(&url, "cli", &["--json", "events", "tenant-a", "acct-1"]);
    assert!(out.ok(), "{out}");
    let versions: Vec<u64> = out
        .stdout
        .lines()
        .map(|l| json_of(l)["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2], "{out}");

    let out = aether_as(&url, "cli", &["--json", "actor", "tenant-a", "acct-1"]);
    assert!(out.ok(), "{out}");
    let doc = json_of(&out.stdout);
    assert_eq!(doc["version"], 2, "{doc}");
    assert_eq!(doc["snapshot_version"], 1, "{doc}");
    assert_eq!(doc["cluster"]["owner"], "n1", "{doc}");

    let out = aether_as(&url, "cli", &["--json", "cluster", "status"]);
    assert!(out.ok(), "{out}");
    let doc = json_of(&out.stdout);
    assert_eq!(doc["leader"], "n1", "{doc}");
    assert_eq!(doc["nodes"][0]["id"], "n1", "{doc}");
    assert_eq!(doc["unassigned_shards"], 0, "{doc}");

    let out = aether_as(&url, "cli", &["--json", "cluster", "history"]);
    assert!(out.ok(), "{out}");
    let doc = json_of(&out.stdout);
    assert_eq!(doc["history"][0]["version"], 1, "{doc}");

    let mut watch = run::spawn(&[
        "--nats",
        &url,
        "--user",
        "cli",
        "--password",
        "cli-secret",
        "--json",
        "cluster",
        "watch",
    ]);
    let ready = watch
        .next_error_line(PATIENCE)
        .expect("watch says it watches");
    assert!(ready.contains("watching cluster aether"), "{ready}");
    let second = runtime.block_on(async {
        let client = node().connect(&url).await.expect("the node connects");
        ClusterManager::start(client, nats::node_config(CLUSTER, "n2"))
            .await
            .expect("the second node starts")
    });
    loop {
        let line = watch.next_line(PATIENCE).expect("a topology change");
        let doc = json_of(&line);
        if doc["kind"] == "node_joined" {
            assert_eq!(doc["node"], "n2", "{doc}");
            break;
        }
    }
    watch.stop();
    runtime.block_on(second.shutdown()).expect("shutdown");

    let mut tail = run::spawn_with_env(
        &[
            "--nats",
            &url,
            "--json",
            "tail",
            ">",
            "--count",
            "1",
            "--timeout-ms",
            SLOW_MS,
        ],
        &[
            ("AETHER_NATS_USER", "cli"),
            ("AETHER_NATS_PASSWORD", "cli-secret"),
        ],
    );
    let ready = tail
        .next_error_line(PATIENCE)
        .expect("tail says it listens");
    assert!(ready.contains("listening"), "{ready}");
    runtime.block_on(async {
        bus.publish(&ns("tenant-b"), Event::new(actor("acct-9"), "Closed", 2))
            .await;
        bus.flush().await.expect("the node's publish is allowed");
    });
    let line = tail.next_line(PATIENCE).expect("the node's event");
    let doc = json_of(&line);
    assert_eq!(doc["namespace"], "tenant-b", "{doc}");
    assert_eq!(doc["event"]["actorId"], "acct-9", "{doc}");
    assert_eq!(tail.wait(), Some(0), "--count 1 ends the command");

    let after = runtime.block_on(state(&url));
    assert_eq!(after, before, "the CLI created or wrote something");
    runtime.block_on(cluster.shutdown()).expect("shutdown");
}

#[test]
fn a_tenant_is_refused_another_tenants_namespace_at_once_by_subject() {
    let server = server();
    let url = server.url();
    let runtime = runtime();
    runtime.block_on(write_data(&url));

    // With its own inbox prefix, a tenant reads its own namespace.
    let own = ["--inbox-prefix", "_INBOX_t.tenant-a"];
    let out = aether_as(
        &url,
        "tenant-a",
        &[&own[..], &["--json", "events", "tenant-a", "acct-1"]].concat(),
    );
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout.lines().count(), 2, "{out}");

    let out = aether_as(
        &url,
        "tenant-a",
        &[&own[..], &["events", "tenant-b", "acct-9"]].concat(),
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("permission denied")
            && out
                .stderr
                .contains(r#"publish to "$JS.API.STREAM.INFO.aether-ev-tenant-b""#),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    assert_no_secret(&out);

    // Without it, replies would come where the tenant may not subscribe: said so, by subject.
    let out = aether_as(&url, "tenant-a", &["events", "tenant-a", "acct-1"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("permission denied")
            && out.stderr.contains(r#"subscribe to "_INBOX_cli."#)
            && out.stderr.contains("--inbox-prefix"),
        "{out}"
    );
    assert_no_secret(&out);
}

#[test]
fn bench_as_the_cli_user_names_the_permission_and_the_role_it_needs() {
    let server = server();
    let url = server.url();
    let runtime = runtime();
    runtime.block_on(write_data(&url));
    let before = runtime.block_on(state(&url));
    let out = aether_as(
        &url,
        "cli",
        &[
            "bench", "store", "--count", "10", "--rounds", "1", "--quiet",
        ],
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("permission denied")
            && out
                .stderr
                .contains(r#"publish to "$JS.API.STREAM.CREATE.aether-ev-aether-bench-"#)
            && out.stderr.contains("node"),
        "{out}"
    );
    assert_no_secret(&out);
    assert_eq!(
        runtime.block_on(state(&url)),
        before,
        "bench created something"
    );
}

/// Regression: `events` and `actor` opened the namespace with `with_client`, which creates a
/// missing snapshot bucket — a write from a read command (and, as `cli`, a refused one).
#[test]
fn a_missing_snapshot_bucket_is_an_error_not_created_by_a_read() {
    let server = server();
    let url = server.url();
    let runtime = runtime();
    runtime.block_on(write_data(&url));
    runtime.block_on(async {
        let client = node().connect(&url).await.expect("the node connects");
        async_nats::jetstream::new(client)
            .delete_key_value("aether-snap-tenant-a")
            .await
            .expect("the node deletes tenant-a's snapshot bucket");
    });
    let before = runtime.block_on(state(&url));
    assert!(
        !before
            .iter()
            .any(|(name, _)| name == "KV_aether-snap-tenant-a"),
        "{before:?}"
    );
    // As the node, which may create it; and as `cli`, which may not.
    for user in ["node", "cli"] {
        for command in ["events", "actor"] {
            let out = aether_as(&url, user, &[command, "tenant-a", "acct-1"]);
            assert_eq!(
                runtime.block_on(state(&url)),
                before,
                "`aether {command}` as {user} created something: {out}"
            );
            assert_eq!(out.code, Some(1), "{out}");
            assert!(
                out.stderr
                    .contains("has no snapshot bucket aether-snap-tenant-a"),
                "{out}"
            );
            assert_no_secret(&out);
        }
    }
    // The node's credentials work for the read commands with the CLI's inbox prefix.
    let out = aether_as(&url, "node", &["namespaces"]);
    assert!(out.ok() && out.stdout.contains("tenant-a"), "{out}");
}

/// `aether bench` with a node's credentials, as its help says: every benchmark runs (its raw
/// baselines included, on subjects the `node` role may use) and deletes what it created.
#[test]
fn bench_runs_with_the_node_role_and_leaves_nothing_behind() {
    let server = server();
    let url = server.url();
    let runtime = runtime();
    runtime.block_on(write_data(&url));
    let before = runtime.block_on(state(&url));
    for what in ["store", "bus", "actors"] {
        let out = aether_as(
            &url,
            "node",
            &[
                "--json",
                "bench",
                what,
                "--count",
                "20",
                "--concurrency",
                "2",
                "--rounds",
                "1",
                "--quiet",
            ],
        );
        assert!(out.ok(), "bench {what}: {out}");
        let doc = json_of(&out.stdout);
        assert_eq!(doc["bench"], what, "{doc}");
        if what == "bus" {
            assert_eq!(doc["raw"]["lost"], 0, "{doc}");
            assert_eq!(doc["ours"]["lost"], 0, "{doc}");
        }
        assert_no_secret(&out);
        assert_eq!(
            runtime.block_on(state(&url)),
            before,
            "bench {what} left something behind"
        );
    }
}
