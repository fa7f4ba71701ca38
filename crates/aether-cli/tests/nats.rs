//! The `aether` binary against a real nats-server (the testkit harness): the `--json` shapes of
//! every command, errors a person can act on (an unreachable server named without its
//! credentials, an unknown namespace or cluster), live bus events with patterns and filters,
//! the cluster's status, history and topology changes, and the benchmarks.

#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/run.rs"]
mod run;

use std::time::Duration;

use aether_core::{ActorId, Event, Namespace, ShardCount, shard_for};
use aether_nats::NatsEventBus;
use run::{aether, json_of};

/// How long a streaming command may take to print what it was sent: generous, the machine is
/// shared; a correct run prints within milliseconds.
const PATIENCE: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn namespaces_events_and_actor_as_json() {
    let server = nats::server();
    let url = server.url();
    runtime().block_on(nats::write_fixture(&url));

    let out = aether(&["--nats", &url, "--json", "namespaces"]);
    assert!(out.ok(), "{out}");
    let doc = json_of(&out.stdout);
    let rows = doc["namespaces"].as_array().unwrap();
    let summary: Vec<(&str, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["events"].as_u64().unwrap(),
                r["actors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [("bank", 4, 2), ("shop", 1, 1)]);
    assert!(rows[0]["bytes"].as_u64().unwrap() > 0);

    let out = aether(&["--nats", &url, "--json", "events", "bank", "acct-1"]);
    assert!(out.ok(), "{out}");
    let events: Vec<Event> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<Event> = fixture::events()
        .into_iter()
        .filter(|(ns, e)| ns.as_str() == "bank" && e.actor_id.as_str() == "acct-1")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(events, expected);

    let out = aether(&["--nats", &url, "--json", "actor", "bank", "acct-1"]);
    assert!(out.ok(), "{out}");
    let doc = json_of(&out.stdout);
    assert_eq!(doc["version"], 3);
    assert_eq!(doc["snapshot_version"], 2);
    assert_eq!(
        doc["snapshot_bytes"].as_u64(),
        Some(fixture::snapshot().encoded_len() as u64)
    );
    assert_eq!(doc["last_event_time"], "2026-01-05T09:33:00.000Z");
    assert!(doc["cluster"].is_null(), "no cluster on this server: {doc}");

    // Unknown namespace: the existing ones are listed, and nothing is created.
    let out = aether(&["--nats", &url, "events", "banc", "acct-1"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("existing namespaces: bank, shop"),
        "{out}"
    );
    let out = aether(&["--nats", &url, "--json", "namespaces"]);
    assert_eq!(
        json_of(&out.stdout)["namespaces"].as_array().unwrap().len(),
        2
    );
}

/// `events --follow` on NATS prints what is stored, then each new event as it is saved; a
/// stream that only shares the event streams' name prefix is not a namespace.
#[test]
fn events_follow_prints_new_events_and_foreign_streams_are_not_namespaces() {
    let server = nats::server();
    let url = server.url();
    let runtime = runtime();
    runtime.block_on(nats::write_fixture(&url));
    runtime.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        async_nats::jetstream::new(client)
            .create_stream(async_nats::jetstream::stream::Config {
                name: "aether-ev-lookalike".to_owned(),
                subjects: vec!["lookalike.>".to_owned()],
                ..Default::default()
            })
            .await
            .unwrap();
    });
    let out = aether(&["--nats", &url, "--json", "namespaces"]);
    let names: Vec<String> = json_of(&out.stdout)["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["bank", "shop"], "{out}");

    let mut follow = run::spawn(&[
        "--nats",
        &url,
        "--json",
        "events",
        "shop",
        "order-7",
        "--follow",
        "--poll-ms",
        "50",
    ]);
    let first = follow.next_line(PATIENCE).expect("the stored event");
    assert_eq!(json_of(&first)["eventType"], "Placed");
    runtime.block_on(async {
        let shop = aether_nats::JetStreamEventStore::connect(&url, Namespace::new("shop").unwrap())
            .await
            .unwrap();
        aether_core::EventStore::save_event(
            &shop,
            Event::new(ActorId::new("order-7").unwrap(), "Shipped", 2),
        )
        .await
        .unwrap();
    });
    let second = follow.next_line(PATIENCE).expect("the new event");
    let doc = json_of(&second);
    assert_eq!(
        (doc["version"].as_u64(), doc["eventType"].as_str()),
        (Some(2), Some("Shipped"))
    );
    follow.stop();
}

#[test]
fn an_unreachable_server_is_named_without_its_credentials() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://alice:pw-s3cret@127.0.0.1:{port}");
    for args in [
        vec!["namespaces"],
        vec!["cluster", "status"],
        vec!["tail", ">"],
    ] {
        let mut all = vec!["--nats", url.as_str(), "--timeout-ms", "2000"];
        all.extend(args);
        let out = aether(&all);
        assert_eq!(out.code, Some(1), "{out}");
        assert!(
            out.stderr
                .contains(&format!("cannot reach NATS at nats://***@127.0.0.1:{port}")),
            "{out}"
        );
        assert!(out.stderr.contains("Is nats-server running"), "{out}");
        assert!(
            !out.stderr.contains("s3cret") && !out.stdout.contains("s3cret"),
            "{out}"
        );
    }
    // The same through the environment, with a token.
    let out = run::aether_with_env(
        &["namespaces", "--timeout-ms", "2000"],
        &[
            ("AETHER_NATS", &format!("nats://127.0.0.1:{port}")),
            ("AETHER_NATS_TOKEN", "tok-s3cret"),
        ],
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(!out.stderr.contains("s3cret"), "{out}");
}

/// A server that requires a user and password: the CLI authenticates with the environment
/// variables, the flags or the URL, and a wrong password is a clear error without it.
#[test]
fn credentials_from_env_flags_or_url_authenticate_and_are_never_printed() {
    const SECRET: &str = "pw-s3cret-42";
    let server = aether_testkit::nats_server::NatsServer::start_with(
        &aether_testkit::nats_server::ServerOptions::new().extra_config(format!(
            "authorization {{ user: alice, password: {SECRET} }}"
        )),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let port = url.rsplit(':').next().unwrap().to_owned();

    let out = run::aether_with_env(
        &["--json", "namespaces"],
        &[
            ("AETHER_NATS", url.as_str()),
            ("AETHER_NATS_USER", "alice"),
            ("AETHER_NATS_PASSWORD", SECRET),
        ],
    );
    assert!(out.ok(), "{out}");
    assert_eq!(json_of(&out.stdout)["namespaces"], serde_json::json!([]));

    let out = aether(&[
        "--nats",
        &url,
        "--user",
        "alice",
        "--password",
        SECRET,
        "namespaces",
    ]);
    assert!(out.ok(), "{out}");

    let in_url = format!("nats://alice:{SECRET}@127.0.0.1:{port}");
    let out = aether(&["--nats", &in_url, "namespaces"]);
    assert!(out.ok(), "{out}");

    let wrong = format!("nats://alice:wrong-{SECRET}@127.0.0.1:{port}");
    let out = aether(&["--nats", &wrong, "--timeout-ms", "3000", "namespaces"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains(&format!("nats://***@127.0.0.1:{port}")),
        "{out}"
    );
    assert!(out.stderr.to_lowercase().contains("authoriz"), "{out}");
    assert!(!out.stderr.contains(SECRET), "{out}");

    let out = run::aether_with_env(
        &["--nats", &url, "namespaces"],
        &[("AETHER_NATS_USER", "alice")],
    );
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("--user and --password go together"),
        "{out}"
    );
}

#[test]
fn unusable_connection_files_are_named() {
    let out = aether(&[
        "--nats",
        "nats://127.0.0.1:1",
        "--tls-ca",
        "/nonexistent/ca.pem",
        "namespaces",
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .contains("--tls-ca /nonexistent/ca.pem: no such file"),
        "{out}"
    );
    let out = aether(&[
        "--nats",
        "nats://127.0.0.1:1",
        "--creds",
        "/nonexistent/app.creds",
        "namespaces",
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .contains("cannot use the credentials file /nonexistent/app.creds"),
        "{out}"
    );
}

#[test]
fn tail_prints_matching_live_events_as_json_lines() {
    let server = nats::server();
    let url = server.url();
    let runtime = runtime();
    let mut tail = run::spawn(&[
        "--nats",
        &url,
        "--json",
        "tail",
        "prod.*",
        "--type",
        "Deposited",
        "--actor",
        "acct.*",
        "--count",
        "2",
    ]);
    let ready = tail
        .next_error_line(PATIENCE)
        .expect("tail says it listens");
    assert!(ready.contains("listening"), "{ready}");
    let bus = runtime.block_on(NatsEventBus::connect(&url)).unwrap();
    let ns = |n: &str| Namespace::new(n).unwrap();
    let event = |actor: &str, kind: &str, v: u64| Event::new(ActorId::new(actor).unwrap(), kind, v);
    runtime.block_on(async {
        // None of these match: another namespace, another type, another actor.
        bus.publish(&ns("dev"), event("acct.1", "Deposited", 1))
            .await;
        bus.publish(&ns("prod.eu"), event("acct.1", "Opened", 1))
            .await;
        bus.publish(&ns("prod.eu"), event("order.1", "Deposited", 1))
            .await;
        bus.publish(&ns("prod.eu.x"), event("acct.1", "Deposited", 1))
            .await;
        // These do.
        bus.publish(&ns("prod.eu"), event("acct.1", "Deposited", 2))
            .await;
        bus.publish(&ns("prod.us"), event("acct.2", "Deposited", 7))
            .await;
        bus.flush().await.unwrap();
    });
    let mut seen = Vec::new();
    for _ in 0..2 {
        let line = tail.next_line(PATIENCE).expect("a matching event");
        let doc = json_of(&line);
        seen.push((
            doc["namespace"].as_str().unwrap().to_owned(),
            doc["event"]["actorId"].as_str().unwrap().to_owned(),
            doc["event"]["version"].as_u64().unwrap(),
        ));
    }
    assert_eq!(
        seen,
        [
            ("prod.eu".to_owned(), "acct.1".to_owned(), 2),
            ("prod.us".to_owned(), "acct.2".to_owned(), 7)
        ]
    );
    assert_eq!(tail.wait(), Some(0), "--count 2 ends the command");
}

/// Bad input is refused with the typed validation message before anything is connected: the
/// server here does not exist, and the error is about the input, not the server.
#[test]
fn invalid_input_is_refused_before_connecting() {
    for (args, says) in [
        (vec!["tail", "prod.>.x"], "invalid pattern \"prod.>.x\""),
        (
            vec!["tail", ">", "--actor", "a..b"],
            "invalid pattern \"a..b\"",
        ),
        (
            vec!["events", "bad ns", "a"],
            "invalid namespace \"bad ns\"",
        ),
        (vec!["actor", "bank", "a b"], "invalid actor id \"a b\""),
    ] {
        let mut all = vec!["--nats", "nats://127.0.0.1:1"];
        all.extend(args);
        let out = aether(&all);
        assert_eq!(out.code, Some(1), "{out}");
        assert!(out.stderr.contains(says), "{out}");
        assert!(!out.stderr.contains("cannot reach"), "{out}");
    }
}

#[test]
fn cluster_status_history_watch_and_actor_placement() {
    let server = nats::server();
    let url = server.url();
    let runtime = runtime();
    let cluster = "cli-test";

    let out = aether(&["--nats", &url, "cluster", "--cluster", cluster, "status"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("no cluster named \"cli-test\""),
        "{out}"
    );

    runtime.block_on(nats::write_fixture(&url));
    let first = runtime.block_on(nats::start_node(&url, cluster, "node-1"));
    runtime.block_on(nats::until("node-1 owns every shard", || {
        first.shard_map().is_some_and(|m| m.map.is_complete())
    }));

    let out = aether(&[
        "--nats",
        &url,
        "--json",
        "cluster",
        "--cluster",
        cluster,
        "status",
    ]);
    assert!(out.ok(), "{out}");
    let doc = json_of(&out.stdout);
    assert_eq!(doc["cluster"], cluster);
    assert_eq!(doc["leader"], "node-1");
    assert_eq!(doc["epoch"].as_u64(), Some(first.epoch().get()));
    assert_eq!(doc["shard_count"], nats::SHARDS);
    assert_eq!(doc["unassigned_shards"], 0);
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{doc}");
    assert_eq!(nodes[0]["id"], "node-1");
    assert_eq!(nodes[0]["state"], "alive");
    assert_eq!(nodes[0]["shards"], nats::SHARDS);
    assert_eq!(nodes[0]["leader"], true);
    assert_eq!(nodes[0]["address"], "10.0.0.6:7000");
    let map_version = doc["map_version"].as_u64().unwrap();
    assert!(map_version >= 1);
    let moves = doc["last_moves"].as_array().unwrap();
    assert_eq!(
        moves[0]["version"].as_u64(),
        Some(map_version),
        "newest first"
    );

    let out = aether(&[
        "--nats",
        &url,
        "--json",
        "cluster",
        "--cluster",
        cluster,
        "history",
    ]);
    assert!(out.ok(), "{out}");
    let doc = json_of(&out.stdout);
    let history = doc["history"].as_array().unwrap();
    assert_eq!(history[0]["version"], 1);
    assert_eq!(
        history.last().unwrap()["version"].as_u64(),
        Some(map_version)
    );
    let moved: usize = history
        .iter()
        .map(|h| h["moved"].as_array().unwrap().len())
        .sum();
    assert!(
        moved >= nats::SHARDS as usize,
        "every shard got an owner: {doc}"
    );

    let out = aether(&[
        "--nats",
        &url,
        "--json",
        "actor",
        "bank",
        "acct-1",
        "--cluster",
        cluster,
    ]);
    assert!(out.ok(), "{out}");
    let doc = json_of(&out.stdout);
    let shard = shard_for(
        &ActorId::new("acct-1").unwrap(),
        ShardCount::new(nats::SHARDS).unwrap(),
    );
    assert_eq!(
        doc["cluster"]["shard"].as_u64(),
        Some(u64::from(shard.get()))
    );
    assert_eq!(doc["cluster"]["owner"], "node-1");
    assert_eq!(doc["cluster"]["name"], cluster);

    // Watch: a second node joins and takes half the shards.
    let mut watch = run::spawn(&[
        "--nats",
        &url,
        "--json",
        "cluster",
        "--cluster",
        cluster,
        "watch",
    ]);
    let ready = watch
        .next_error_line(PATIENCE)
        .expect("watch says it watches");
    assert!(ready.contains("watching cluster cli-test"), "{ready}");
    let second = runtime.block_on(nats::start_node(&url, cluster, "node-2"));
    let mut joined = false;
    let mut moved_to_second = false;
    while !(joined && moved_to_second) {
        let line = watch.next_line(PATIENCE).expect("a topology change");
        let doc = json_of(&line);
        match doc["kind"].as_str() {
            Some("node_joined") => {
                assert_eq!(doc["node"], "node-2", "{doc}");
                assert!(doc["incarnation"].as_u64().is_some(), "{doc}");
                joined = true;
            }
            Some("shards_moved") => {
                assert!(joined, "the join comes before the move: {doc}");
                assert!(doc["moved"].as_u64().unwrap() > 0, "{doc}");
                assert!(doc["version"].as_u64().unwrap() > map_version, "{doc}");
                moved_to_second = true;
            }
            other => panic!("unexpected change {other:?}: {doc}"),
        }
    }
    watch.stop();
    runtime.block_on(async {
        second.shutdown().await.unwrap();
        first.shutdown().await.unwrap();
    });
}

#[test]
fn bench_commands_report_both_sides_and_clean_up() {
    let server = nats::server();
    let url = server.url();
    for bench in ["store", "bus", "actors"] {
        let out = aether(&[
            "--nats",
            &url,
            "--json",
            "bench",
            bench,
            "--count",
            "40",
            "--concurrency",
            "4",
            "--rounds",
            "3",
            // The bus side waits this long for each next delivery: a bound far above what
            // loopback takes, so a loss counted below is a loss, not a slow machine.
            "--patience-ms",
            "60000",
        ]);
        assert!(out.ok(), "{out}");
        let doc = json_of(&out.stdout);
        assert_eq!(doc["bench"], bench);
        assert_eq!(
            (doc["concurrency"].as_u64(), doc["rounds"].as_u64()),
            (Some(4), Some(3))
        );
        for side in ["ours", "raw"] {
            assert_eq!(doc[side]["operations"], 3 * 40, "{doc}");
            assert!(doc[side]["ops_per_sec"].as_f64().unwrap() > 0.0, "{doc}");
        }
        if bench == "bus" {
            // Loopback, 40 events: nothing may be lost on either side.
            assert_eq!(
                (doc["ours"]["lost"].as_u64(), doc["raw"]["lost"].as_u64()),
                (Some(0), Some(0)),
                "{doc}"
            );
        }
        // The ratio is the median of the rounds' ratios.
        let mut rounds: Vec<f64> = doc["round_ratios"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_f64().unwrap())
            .collect();
        assert_eq!(rounds.len(), 3, "{doc}");
        assert!(rounds.iter().all(|r| *r > 0.0), "{doc}");
        rounds.sort_by(f64::total_cmp);
        assert_eq!(doc["ratio"].as_f64(), Some(rounds[1]), "{doc}");
    }
    let out = aether(&["--nats", &url, "--json", "namespaces"]);
    assert_eq!(
        json_of(&out.stdout)["namespaces"],
        serde_json::json!([]),
        "{out}"
    );
    let names = runtime().block_on(async {
        use futures::TryStreamExt;
        let client = async_nats::connect(&url).await.unwrap();
        async_nats::jetstream::new(client)
            .stream_names()
            .try_collect::<Vec<String>>()
            .await
            .unwrap()
    });
    assert!(
        names.iter().all(|n| !n.contains("bench")),
        "left behind: {names:?}"
    );
}
