//! Bad input to the NATS event bus, against a real `nats-server` where one is needed:
//!
//! - a malformed URL, a closed port and a port that accepts TCP but never speaks NATS each give
//!   [`BusError::Unavailable`] naming the URL, within `connect_timeout` (a bus that hangs on a
//!   bad address, or an error that does not say which address, is an outage that is hard to
//!   diagnose);
//! - every kind of invalid durable name is refused with [`BusError::InvalidDurableName`] on every
//!   entry point, and nothing is created on the server (neither the bus stream nor a consumer);
//! - reusing a durable name for another pattern gives [`BusError::DurableNameTaken`] and leaves
//!   the existing subscription as it was (same filter, still receiving);
//! - deleting an unknown durable name is `Ok(false)`, not an error;
//! - a duration setting near `Duration::MAX` is [`BusError::InvalidConfig`] naming it, never a
//!   panic, and nothing is connected or created.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use std::time::{Duration, Instant};

use aether_core::{ActorId, Event, Namespace, Pattern};
use aether_nats::{BusError, DurableOptions, NatsBusConfig, NatsEventBus};
use aether_testkit::nats_server::NatsServer;
use async_nats::jetstream;
use futures::TryStreamExt;

const STREAM: &str = "aether-bus";

fn start_server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("{e}"))
}

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap_or_else(|e| panic!("{e}"))
}

async fn connect(url: &str) -> NatsEventBus {
    tokio::time::timeout(Duration::from_secs(10), NatsEventBus::connect(url))
        .await
        .unwrap_or_else(|_| panic!("connect to {url} timed out"))
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Connects with `connect_timeout` and returns the error and how long it took.
async fn connect_fails(url: &str, connect_timeout: Duration) -> (BusError, Duration) {
    let mut config = NatsBusConfig::default();
    config.connect_timeout = connect_timeout;
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        connect_timeout + Duration::from_secs(10),
        NatsEventBus::connect_with(url, config),
    )
    .await
    .unwrap_or_else(|_| panic!("connect to {url:?} hung well past its connect_timeout"));
    match outcome {
        Ok(bus) => panic!("connect to {url:?} succeeded: {bus:?}"),
        Err(error) => (error, started.elapsed()),
    }
}

fn assert_unavailable_naming(error: &BusError, url: &str) {
    match error {
        BusError::Unavailable { url: named, .. } => assert_eq!(named, url),
        other => panic!("{url:?}: expected Unavailable, got {other:?}"),
    }
    let shown = error.to_string();
    assert!(
        shown.contains(url),
        "the message should name {url:?}: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_urls_are_unavailable_naming_the_url_at_once() {
    for url in [
        "",
        " ",
        "nats://127.0.0.1:4222,",
        ",nats://127.0.0.1:4222",
        "http://127.0.0.1:4222",
        "nats://127.0.0.1:notaport",
        "nats://127.0.0.1:99999",
        "nats://not a host:4222",
        "nats://[::1:4222",
    ] {
        let (error, took) = connect_fails(url, Duration::from_secs(5)).await;
        assert_unavailable_naming(&error, url);
        assert!(
            took < Duration::from_secs(1),
            "{url:?}: a malformed URL needs no network wait, took {took:?}"
        );
        assert!(
            std::error::Error::source(&error).is_some(),
            "{url:?}: the parse error should be kept as the source"
        );
    }
}

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable_within_the_connect_timeout() {
    let url = format!("nats://127.0.0.1:{}", closed_port());
    let timeout = Duration::from_millis(800);
    let (error, took) = connect_fails(&url, timeout).await;
    assert_unavailable_naming(&error, &url);
    assert!(
        took < timeout + Duration::from_millis(500),
        "refused connection took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_unavailable_within_the_connect_timeout() {
    // Accepts TCP connections (the kernel does, through the backlog) but never sends INFO.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "nats://127.0.0.1:{}",
        silent.local_addr().expect("addr").port()
    );
    let timeout = Duration::from_millis(600);
    let (error, took) = connect_fails(&url, timeout).await;
    assert_unavailable_naming(&error, &url);
    assert!(
        took >= timeout,
        "gave up before the handshake timeout: {took:?}"
    );
    assert!(
        took < timeout + Duration::from_millis(500),
        "a silent server must not hold the caller past connect_timeout ({timeout:?}): took {took:?}"
    );
    drop(silent);
}

/// `connect_timeout` is documented as the longest wait for the first connection, and
/// `connect_with` as failing when "no server answers within `config.connect_timeout`": a list of
/// silent servers must not multiply the wait by its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_silent_servers_are_unavailable_within_one_connect_timeout() {
    let silent: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let url = silent
        .iter()
        .map(|l| format!("nats://127.0.0.1:{}", l.local_addr().expect("addr").port()))
        .collect::<Vec<_>>()
        .join(",");
    let timeout = Duration::from_millis(500);
    let (error, took) = connect_fails(&url, timeout).await;
    assert_unavailable_naming(&error, &url);
    assert!(
        took < timeout + Duration::from_millis(400),
        "three silent servers held the caller {took:?}, past connect_timeout ({timeout:?})"
    );
    drop(silent);
}

/// Consumers on the bus stream, or `None` if the stream does not exist.
async fn consumers(js: &jetstream::Context) -> Option<Vec<String>> {
    let stream = match js.get_stream(STREAM).await {
        Ok(stream) => stream,
        Err(error) => {
            let shown = error.to_string();
            assert!(
                shown.contains("not found"),
                "unexpected error reading the stream: {shown}"
            );
            return None;
        }
    };
    let mut names: Vec<String> = stream
        .consumer_names()
        .try_collect()
        .await
        .expect("consumer names");
    names.sort();
    Some(names)
}

const BAD_NAMES: [&str; 10] = [
    "",
    "a.b",
    "x*",
    "x>",
    "*",
    ">",
    "with space",
    " lead",
    "ümlaut",
    "tab\t",
];

fn too_long() -> String {
    "n".repeat(65)
}

/// Every entry point that takes a durable name refuses `name`, saying so.
async fn every_entry_point_refuses(bus: &NatsEventBus, name: &str) {
    let orders = ns("bad.orders");
    let tenant = bus.namespace(orders.clone());
    let check = |what: &str, result: Result<(), BusError>| match result {
        Err(BusError::InvalidDurableName {
            name: given,
            reason,
        }) => {
            assert_eq!(given, name, "{what}");
            assert!(!reason.is_empty(), "{what}: a reason");
        }
        other => panic!("{what} with {name:?}: expected InvalidDurableName, got {other:?}"),
    };
    let options = DurableOptions::new;
    check(
        "subscribe_durable",
        bus.subscribe_durable(name, &orders, options())
            .await
            .map(drop),
    );
    check(
        "subscribe_durable_across_namespaces",
        bus.subscribe_durable_across_namespaces(name, &Pattern::new("bad.>").unwrap(), options())
            .await
            .map(drop),
    );
    check(
        "tenant subscribe_durable",
        tenant.subscribe_durable(name, options()).await.map(drop),
    );
    check("delete_durable", bus.delete_durable(name).await.map(drop));
    check(
        "tenant delete_durable",
        tenant.delete_durable(name).await.map(drop),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_durable_names_are_refused_and_create_nothing() {
    let server = start_server();
    let bus = connect(&server.url()).await;
    let raw = async_nats::connect(server.url())
        .await
        .expect("raw connect");
    let js = jetstream::new(raw);

    // Before the bus stream exists: refusing a name must not create it.
    for name in BAD_NAMES.iter().copied().chain([too_long().as_str()]) {
        every_entry_point_refuses(&bus, name).await;
    }
    assert_eq!(
        consumers(&js).await,
        None,
        "a refused name created the bus stream"
    );

    // With the stream and one subscription in place: still nothing new.
    let good = bus
        .subscribe_durable("good_name-1", &ns("bad.orders"), DurableOptions::new())
        .await
        .expect("a valid name");
    let longest = "n".repeat(64);
    let _longest = bus
        .subscribe_durable(&longest, &ns("bad.orders"), DurableOptions::new())
        .await
        .expect("64 characters is allowed");
    let before = consumers(&js).await.expect("stream exists now");
    assert_eq!(
        before,
        vec!["g-good_name-1".to_owned(), format!("g-{longest}")]
    );
    for name in BAD_NAMES.iter().copied().chain([too_long().as_str()]) {
        every_entry_point_refuses(&bus, name).await;
    }
    assert_eq!(consumers(&js).await.expect("stream"), before);
    drop(good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_name_is_refused_and_the_existing_subscription_is_unchanged() {
    let server = start_server();
    let bus = connect(&server.url()).await;
    let raw = async_nats::connect(server.url())
        .await
        .expect("raw connect");
    let js = jetstream::new(raw);
    let orders = ns("taken.orders");
    let users = ns("taken.users");

    let mut projector = bus
        .subscribe_durable("projector", &orders, DurableOptions::new())
        .await
        .expect("create");
    let stream = js.get_stream(STREAM).await.expect("bus stream");
    let before = stream
        .consumer_info("g-projector")
        .await
        .expect("consumer info")
        .config
        .clone();
    assert_eq!(before.filter_subject, "aether.durable.taken.orders");

    let taken = |result: Result<(), BusError>, requested: &str| match result {
        Err(BusError::DurableNameTaken {
            name,
            existing,
            requested: asked,
        }) => {
            assert_eq!(name, "projector");
            assert_eq!(existing, "aether.durable.taken.orders");
            assert_eq!(asked, requested);
        }
        other => panic!("expected DurableNameTaken for {requested}, got {other:?}"),
    };
    taken(
        bus.subscribe_durable("projector", &users, DurableOptions::new())
            .await
            .map(drop),
        "aether.durable.taken.users",
    );
    taken(
        bus.subscribe_durable_across_namespaces(
            "projector",
            &Pattern::new("taken.*").unwrap(),
            DurableOptions::new(),
        )
        .await
        .map(drop),
        "aether.durable.taken.*",
    );
    // The tenant handle's `projector` is another subscription: not taken.
    let tenant_projector = bus
        .namespace(users.clone())
        .subscribe_durable("projector", DurableOptions::new())
        .await
        .expect("tenant-scoped names do not collide with bus names");

    let after = stream
        .consumer_info("g-projector")
        .await
        .expect("consumer info")
        .config
        .clone();
    assert_eq!(after, before, "the refused calls changed the consumer");

    // And it still works: an event of its namespace arrives, one of the other does not.
    let actor = ActorId::new("order-1").unwrap();
    bus.publish_durable(&users, Event::new(actor.clone(), "Ignored", 1))
        .await
        .expect("store");
    let wanted = Event::new(actor, "Placed", 1);
    bus.publish_durable(&orders, wanted.clone())
        .await
        .expect("store");
    let got = tokio::time::timeout(Duration::from_secs(5), projector.recv())
        .await
        .expect("the existing durable subscription should still receive")
        .expect("recv")
        .expect("not deleted");
    assert_eq!(got.id, wanted.id);
    projector.ack().await.expect("ack");
    drop(tenant_projector);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_unknown_durable_name_is_ok_false() {
    let server = start_server();
    let bus = connect(&server.url()).await;
    let tenant = bus.namespace(ns("del.orders"));
    assert!(!bus.delete_durable("never-made").await.expect("delete"));
    assert!(!tenant.delete_durable("never-made").await.expect("delete"));

    // The same calls on names that exist say true, once.
    drop(
        bus.subscribe_durable("made", &ns("del.orders"), DurableOptions::new())
            .await
            .expect("create"),
    );
    drop(
        tenant
            .subscribe_durable("made", DurableOptions::new())
            .await
            .expect("create"),
    );
    assert!(tenant.delete_durable("made").await.expect("delete"));
    assert!(!tenant.delete_durable("made").await.expect("delete again"));
    assert!(
        bus.delete_durable("made").await.expect("delete"),
        "deleting the tenant's `made` must not have deleted the bus's"
    );
    assert!(!bus.delete_durable("made").await.expect("delete again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_near_the_maximum_are_config_errors() {
    let server = start_server();
    let url = server.url();
    type Set = fn(&mut NatsBusConfig, Duration);
    let fields: [(&str, Set); 5] = [
        ("connect_timeout", |c, d| c.connect_timeout = d),
        ("durable.max_age", |c, d| c.durable.max_age = d),
        ("durable.duplicate_window", |c, d| {
            c.durable.duplicate_window = d
        }),
        ("durable.ack_wait", |c, d| c.durable.ack_wait = d),
        ("durable.request_timeout", |c, d| {
            c.durable.request_timeout = d
        }),
    ];
    for (name, set) in fields {
        for value in [Duration::MAX, Duration::MAX - Duration::from_nanos(1)] {
            let mut config = NatsBusConfig::default();
            set(&mut config, value);
            let url = url.clone();
            // In a task, so a panic is reported as one, with the setting that caused it.
            let joined = tokio::spawn(async move {
                let bus = tokio::time::timeout(
                    Duration::from_secs(10),
                    NatsEventBus::connect_with(&url, config),
                )
                .await
                .unwrap_or_else(|_| panic!("connecting timed out"));
                match bus {
                    Ok(bus) => {
                        // Where the durable settings are used: the bus stream's creation.
                        let outcome = bus
                            .publish_durable(
                                &ns("limits"),
                                Event::new(
                                    ActorId::new("a").unwrap_or_else(|e| panic!("{e}")),
                                    "T",
                                    1,
                                ),
                            )
                            .await;
                        Err(format!("connected; a durable publish gave {outcome:?}"))
                    }
                    Err(error) => Ok(error),
                }
            })
            .await;
            match joined {
                Ok(Ok(BusError::InvalidConfig(message))) => {
                    assert!(message.starts_with(name), "{name}: {message}");
                }
                other => panic!("{name} = {value:?}: {other:?}"),
            }
        }
    }
    // Nothing was created on the server.
    let js = jetstream::new(
        async_nats::connect(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(
        js.get_stream(STREAM).await.is_err(),
        "the bus stream was created"
    );
}
