//! Publication on NATS: actors on the JetStream store publishing on the NATS bus, a subscriber
//! on another connection (another node), and a process that dies between storing and
//! publishing. The live subscriber never gets the events the dead process did not publish; a
//! feed reader resumes from its checkpoint on a new connection and gets exactly the events
//! stored since. Needs `nats-server` >= 2.12 (fails, never skips, when it is missing).

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/crash.rs"]
mod crash;

use std::sync::Arc;
use std::time::Duration;

use aether_actor::{ActorConfig, Actors};
use aether_core::{ActorId, Event, EventStore, Namespace, Subscription};
use aether_nats::{JetStreamEventStore, NatsEventBus};
use aether_testkit::nats_server::NatsServer;

use bank::{Bank, Command};
use crash::{DiesAfterStoring, FeedReader};

/// Only a backstop against a hang (a missing event fails the assertion that follows).
const BACKSTOP: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn stream(name: &str) -> ActorId {
    ActorId::new(format!("account.{name}")).unwrap()
}

async fn next(subscription: &mut Subscription) -> Arc<Event> {
    tokio::time::timeout(BACKSTOP, subscription.recv())
        .await
        .expect("an event within the backstop")
        .expect("subscription open")
}

async fn connect(url: &str, ns: &Namespace) -> (JetStreamEventStore, NatsEventBus) {
    let store = JetStreamEventStore::connect(url, ns.clone()).await.unwrap();
    let bus = NatsEventBus::connect(url).await.unwrap();
    bus.flush().await.unwrap();
    (store, bus)
}

#[test]
fn a_process_dying_between_storing_and_publishing_loses_no_event_for_feed_readers() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let ns = Namespace::new(format!("pub-{}", uuid::Uuid::now_v7().simple())).unwrap();
    let (alice, bob) = (ActorId::new("alice").unwrap(), ActorId::new("bob").unwrap());

    // Another node, alive throughout: a live subscriber.
    let watcher = runtime();
    let (_watcher_bus, mut live) = watcher.block_on(async {
        let bus = NatsEventBus::connect(&url).await.unwrap();
        let subscription = bus.subscribe(&ns);
        bus.flush().await.unwrap();
        (bus, subscription)
    });
    let mut reader = FeedReader::new();

    // The first process: commands published and read from the feed; then one command is
    // stored, the process dies before publishing it.
    let first = runtime();
    first.block_on(async {
        let (store, bus) = connect(&url, &ns).await;
        let dying = DiesAfterStoring::new(store.clone());
        let actors = Actors::with_bus(
            ns.clone(),
            Bank,
            dying.clone(),
            bus.clone(),
            ActorConfig::default(),
        )
        .unwrap();
        for who in [&alice, &bob] {
            actors
                .ask(who, Command::Deposit { cents: 10 })
                .await
                .unwrap();
            actors
                .ask(who, Command::Split { cents: 4, parts: 2 })
                .await
                .unwrap();
        }
        let before = reader.catch_up(&store).await;
        assert_eq!(before.len(), 6);
        reader.processed.extend(before);

        dying.arm();
        let stuck = {
            let actors = actors.clone();
            let alice = alice.clone();
            tokio::spawn(async move {
                actors
                    .ask(&alice, Command::Split { cents: 6, parts: 3 })
                    .await
            })
        };
        dying.stored.notified().await;
        assert!(!stuck.is_finished());
        actors
            .ask(&bob, Command::Deposit { cents: 1 })
            .await
            .unwrap();
        // What was published has left the process (the live path promises no more than that).
        bus.flush().await.unwrap();
    });
    drop(first); // the crash

    // The live subscriber got what was published, in order per actor, and then bob's last
    // event: alice's last three were never published (they would have come before it).
    watcher.block_on(async {
        let mut got = Vec::new();
        for _ in 0..7 {
            got.push((*next(&mut live).await).clone());
        }
        let of = |who: &str| -> Vec<u64> {
            got.iter()
                .filter(|e| e.actor_id == stream(who))
                .map(|e| e.version)
                .collect()
        };
        assert_eq!(
            of("alice"),
            [1, 2, 3],
            "alice's unpublished 4..=6 never arrive"
        );
        assert_eq!(of("bob"), [1, 2, 3, 4]);
        assert_eq!(
            got.last().map(|e| (e.actor_id.clone(), e.version)),
            Some((stream("bob"), 4))
        );
        assert!(live.try_recv().is_none());
    });

    // The second process: the reader resumes from its checkpoint on a new connection and gets
    // exactly what was stored since; the runtime goes on from the stored state.
    let second = runtime();
    second.block_on(async {
        let (store, bus) = connect(&url, &ns).await;
        let since = reader.catch_up(&store).await;
        let mut expected = store.events(&stream("alice"), 4).await.unwrap();
        assert_eq!(expected.len(), 3, "alice's last decision was stored");
        expected.extend(store.events(&stream("bob"), 4).await.unwrap());
        assert_eq!(
            since, expected,
            "every event since the checkpoint, in commit order"
        );
        reader.processed.extend(since);

        let actors =
            Actors::with_bus(ns.clone(), Bank, store.clone(), bus, ActorConfig::default()).unwrap();
        let next_outcome = actors
            .ask(&alice, Command::Deposit { cents: 1 })
            .await
            .unwrap();
        assert_eq!(next_outcome.version, 7);
        let newer = reader.catch_up(&store).await;
        assert_eq!(newer, store.events(&stream("alice"), 7).await.unwrap());
        reader.processed.extend(newer);
        actors.shutdown().await;
        for who in ["alice", "bob"] {
            let mine: Vec<Event> = reader
                .processed
                .iter()
                .filter(|e| e.actor_id == stream(who))
                .cloned()
                .collect();
            assert_eq!(
                mine,
                store.events(&stream(who), 0).await.unwrap(),
                "{who}: once each"
            );
        }
    });
    watcher.block_on(async {
        let event = next(&mut live).await;
        assert_eq!(
            (event.actor_id.clone(), event.version),
            (stream("alice"), 7)
        );
    });
    drop(server);
}
