//! Connecting the JetStream event store: an unreachable server and a malformed URL are typed
//! errors that name the URL (and come within the connect timeout), and a connected store
//! survives a server crash and restart with its events intact, including a save issued while
//! the server is down. A duration setting near `Duration::MAX` is
//! [`StoreError::InvalidConfig`] naming it, never a panic, and creates nothing.
//!
//! The reconnect test needs `nats-server` ≥ 2.12; it fails (never skips) with the install
//! command when it is missing.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use aether_core::{ActorId, Event, EventStore, Namespace, SaveOutcome, StoreError, Version};
use aether_nats::{JetStreamConfig, JetStreamEventStore};
use aether_testkit::nats_server::NatsServer;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn config() -> JetStreamConfig {
    JetStreamConfig {
        connect_timeout: CONNECT_TIMEOUT,
        ..JetStreamConfig::default()
    }
}

fn namespace() -> Namespace {
    Namespace::new(format!("connection-{}", uuid::Uuid::now_v7().simple())).expect("namespace")
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}

/// Connects with [`config`] and returns the error, or panics if connecting succeeded.
async fn connect_err(url: &str) -> (StoreError, Duration) {
    let started = Instant::now();
    let outcome = JetStreamEventStore::connect_with(url, namespace(), config()).await;
    let elapsed = started.elapsed();
    match outcome {
        Ok(store) => panic!("connecting to {url:?} succeeded: {store:?}"),
        Err(e) => (e, elapsed),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_naming_the_url_within_the_timeout() {
    let url = format!("nats://127.0.0.1:{}", closed_port());
    let (err, elapsed) = connect_err(&url).await;
    match &err {
        StoreError::Unavailable { message, .. } => {
            assert!(
                message.contains(&url),
                "the message must name {url}: {message}"
            );
        }
        other => panic!("expected Unavailable for {url}, got {other:?}"),
    }
    assert!(err.to_string().contains(&url), "{err}");
    // The connect timeout bounds the wait (plus slack for a loaded machine).
    assert!(
        elapsed <= CONNECT_TIMEOUT + Duration::from_secs(3),
        "took {elapsed:?} with a connect timeout of {CONNECT_TIMEOUT:?}"
    );

    // Several servers, none listening: the same, naming the whole list.
    let many = format!(
        "nats://127.0.0.1:{},nats://127.0.0.1:{}",
        closed_port(),
        closed_port()
    );
    let (err, elapsed) = connect_err(&many).await;
    assert!(
        matches!(&err, StoreError::Unavailable { message, .. } if message.contains(&many)),
        "{err:?}"
    );
    assert!(
        elapsed <= CONNECT_TIMEOUT * 2 + Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_malformed_url_is_a_typed_error_naming_it() {
    for url in [
        "nats://127.0.0.1:notaport",
        "nats://127.0.0.1:99999",
        "nats://[::1",
        "nats://host name:4222",
        "http://127.0.0.1:4222",
        // One bad entry spoils a list; the message names the whole list.
        "nats://127.0.0.1:1,nats://127.0.0.1:notaport",
    ] {
        let (err, elapsed) = connect_err(url).await;
        match &err {
            StoreError::Unavailable { message, .. } => {
                assert!(message.contains(url), "{url:?}: {message}");
                assert!(
                    message.contains("not a valid NATS URL"),
                    "{url:?}: {message}"
                );
            }
            other => panic!("{url:?}: expected Unavailable, got {other:?}"),
        }
        // Refused before any connection attempt.
        assert!(elapsed < CONNECT_TIMEOUT, "{url:?} took {elapsed:?}");
    }
    // An empty URL has nothing to name, but is still a typed error, and a quick one.
    for url in ["", "  "] {
        let (err, elapsed) = connect_err(url).await;
        assert!(
            matches!(err, StoreError::Unavailable { .. }),
            "{url:?}: {err:?}"
        );
        assert!(
            elapsed <= CONNECT_TIMEOUT + Duration::from_secs(3),
            "{url:?} took {elapsed:?}"
        );
    }
}

fn event(actor: &ActorId, version: Version) -> Event {
    Event::new(actor.clone(), "Ticked", version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_keeps_working_after_the_server_restarts() {
    let mut server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let store = JetStreamEventStore::connect_with(&url, namespace(), config())
        .await
        .unwrap_or_else(|e| panic!("open store at {url}: {e}"));
    let actor = ActorId::new("clock.1").unwrap();
    let before: Vec<Event> = (1..=5).map(|v| event(&actor, v)).collect();
    for e in &before[..3] {
        store.save_event(e.clone()).await.unwrap();
    }
    store.save_events(before[3..].to_vec()).await.unwrap();

    // SIGKILL, then start again on the same port and store directory.
    tokio::task::block_in_place(|| server.restart()).unwrap_or_else(|e| panic!("{e}"));

    // The client reconnects on its own: retry one save until it lands.
    let next = event(&actor, 6);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = Vec::new();
    loop {
        match store.save_event(next.clone()).await {
            // Duplicate: an earlier attempt landed although its reply was lost.
            Ok(outcome) => {
                assert!(
                    matches!(outcome, SaveOutcome::Saved | SaveOutcome::Duplicate),
                    "{outcome:?}"
                );
                break;
            }
            Err(e @ StoreError::Unavailable { .. }) if Instant::now() < deadline => {
                failures.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("save after restart: {e}; earlier failures: {failures:#?}"),
        }
    }

    // A save issued while the server is down waits for it (within the store's retry timeout)
    // and lands once it is back, exactly once.
    server.kill();
    let during = event(&actor, 7);
    let pending = tokio::spawn({
        let (store, during) = (store.clone(), during.clone());
        async move { store.save_event(during).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| server.restart()).unwrap_or_else(|e| panic!("{e}"));
    let outcome = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .expect("the save issued during the outage never returned")
        .expect("save task");
    match outcome {
        Ok(outcome) => assert_eq!(outcome, SaveOutcome::Saved),
        Err(e) => panic!("save issued during the outage: {e}"),
    }

    let stored = store.events(&actor, 0).await.unwrap();
    let mut expected = before;
    expected.extend([next, during]);
    assert_eq!(
        stored, expected,
        "events lost, changed or doubled across the restarts"
    );
    assert_eq!(store.latest_version(&actor).await.unwrap(), 7);

    // A new handle sees the same history.
    let again = store
        .for_namespace(store.namespace().clone())
        .await
        .unwrap();
    assert_eq!(again.events(&actor, 0).await.unwrap(), expected);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_near_the_maximum_are_config_errors() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    type Set = fn(&mut JetStreamConfig, Duration);
    let fields: [(&str, Set); 3] = [
        ("duplicate_window", |c, d| c.duplicate_window = d),
        ("request_timeout", |c, d| c.request_timeout = d),
        ("connect_timeout", |c, d| c.connect_timeout = d),
    ];
    let client = async_nats::connect(url.as_str())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (name, set) in fields {
        for value in [Duration::MAX, Duration::MAX - Duration::from_nanos(1)] {
            let mut config = JetStreamConfig::default();
            set(&mut config, value);
            let namespace = namespace();
            let (url, task_client, ns) = (url.clone(), client.clone(), namespace.clone());
            // In a task, so a panic is reported as one, with the setting that caused it.
            let joined = tokio::spawn(async move {
                let by_url = tokio::time::timeout(
                    Duration::from_secs(10),
                    JetStreamEventStore::connect_with(&url, ns.clone(), config.clone()),
                )
                .await
                .unwrap_or_else(|_| panic!("connect_with timed out"))
                .map(drop);
                let by_client = tokio::time::timeout(
                    Duration::from_secs(10),
                    JetStreamEventStore::with_client(task_client, ns, config),
                )
                .await
                .unwrap_or_else(|_| panic!("with_client timed out"))
                .map(drop);
                (by_url, by_client)
            })
            .await;
            let (by_url, by_client) =
                joined.unwrap_or_else(|e| panic!("{name} = {value:?} panicked: {e:?}"));
            for (entry, result) in [("connect_with", by_url), ("with_client", by_client)] {
                match result {
                    Err(StoreError::InvalidConfig(message)) => {
                        assert!(message.starts_with(name), "{entry}, {name}: {message}");
                    }
                    other => panic!("{entry}, {name} = {value:?}: {other:?}"),
                }
            }
            let js = async_nats::jetstream::new(client.clone());
            let stream = aether_nats::naming::stream_name(&namespace);
            assert!(
                js.get_stream(&stream).await.is_err(),
                "{name}: stream {stream} was created"
            );
        }
    }
}
