//! Publication: the live bus gets an actor's events only after the store accepted them, once
//! each and in order per actor in the normal case; a crash between storing and publishing loses
//! the publication but no event — a reader of the store's feed resumes from its checkpoint and
//! gets them all, nothing skipped, nothing older replayed.

#[allow(dead_code)]
#[path = "support/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "support/crash.rs"]
mod crash;
#[allow(dead_code)]
#[path = "support/gated.rs"]
mod gated;

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use aether_actor::{ActorConfig, ActorError, Actors, AskError};
use aether_core::{
    ActorId, Event, EventBus, EventFeed, EventStore, FeedPosition, InMemoryEventStore, Namespace,
    Overflow, StoreError, SubscribeOptions, Subscription,
};

use bank::{Bank, Command};
use crash::{DiesAfterStoring, FeedReader};
use gated::GatedStore;

fn ns() -> Namespace {
    Namespace::new("bank").unwrap()
}

fn id(name: &str) -> ActorId {
    ActorId::new(name).unwrap()
}

fn stream(name: &str) -> ActorId {
    ActorId::new(format!("account.{name}")).unwrap()
}

fn drain(subscription: &mut Subscription) -> Vec<Event> {
    std::iter::from_fn(|| subscription.try_recv())
        .map(|e| (*e).clone())
        .collect()
}

fn page(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

/// While the store holds the append, the subscriber has nothing; once it accepts, the
/// subscriber has the stored event, as stored, before the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_only_after_the_store_accepted() {
    let store = GatedStore::closed();
    let bus = EventBus::new();
    let mut subscriber = bus.subscribe(&ns());
    let actors = Actors::with_bus(ns(), Bank, store.clone(), bus, ActorConfig::default()).unwrap();
    let alice = id("alice");
    let asking = {
        let actors = actors.clone();
        let alice = alice.clone();
        tokio::spawn(async move { actors.ask(&alice, Command::Deposit { cents: 10 }).await })
    };
    store.until_waiting(1).await;
    assert_eq!(
        subscriber.queued(),
        0,
        "nothing is published while the store holds the append"
    );
    assert!(
        store
            .inner
            .events(&stream("alice"), 0)
            .await
            .unwrap()
            .is_empty()
    );

    store.open();
    let outcome = asking.await.unwrap().unwrap();
    assert_eq!(outcome.version, 1);
    let stored = store.inner.events(&stream("alice"), 0).await.unwrap();
    assert_eq!(
        drain(&mut subscriber),
        stored,
        "published as stored, before the reply"
    );
    let split = actors
        .ask(&alice, Command::Split { cents: 9, parts: 3 })
        .await
        .unwrap();
    assert_eq!(split.version, 4);
    let stored = store.inner.events(&stream("alice"), 2).await.unwrap();
    assert_eq!(drain(&mut subscriber), stored, "a batch, in version order");
    let stats = actors.stats();
    assert_eq!((stats.published, stats.publish_failures), (4, 0));
    actors.shutdown().await;
}

/// Refused appends (a rejection, invalid events, a conflict) publish nothing, and neither does
/// an append whose outcome the runtime does not know (stored, but the ack was lost): the live
/// path never guesses. The store's feed has that event: it is the durable path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_published_unless_known_stored() {
    let store = GatedStore::losing_next_ack();
    let bus = EventBus::new();
    let mut subscriber = bus.subscribe(&ns());
    let actors = Actors::with_bus(ns(), Bank, store.clone(), bus, ActorConfig::default()).unwrap();
    let alice = id("alice");

    let lost = actors.ask(&alice, Command::Deposit { cents: 10 }).await;
    assert!(
        matches!(lost, Err(AskError::Failed(ActorError::Store { .. }))),
        "{lost:?}"
    );
    assert_eq!(
        store.inner.events(&stream("alice"), 0).await.unwrap().len(),
        1,
        "stored, though the runtime was told otherwise"
    );
    assert_eq!(
        subscriber.queued(),
        0,
        "an unknown outcome is not published"
    );
    let feed = store
        .inner
        .read_feed(FeedPosition::START, page(10))
        .await
        .unwrap();
    assert_eq!(feed.events.len(), 1, "the feed has it");

    let rejected = actors.ask(&alice, Command::Withdraw { cents: 1_000 }).await;
    assert!(
        matches!(rejected, Err(AskError::Rejected(_))),
        "{rejected:?}"
    );
    let too_big = actors.ask(&alice, Command::Big { bytes: 2 << 20 }).await;
    assert!(
        matches!(
            too_big,
            Err(AskError::Failed(ActorError::InvalidEvents { .. }))
        ),
        "{too_big:?}"
    );
    // Another writer gets version 2 first: the actor's append conflicts.
    store
        .inner
        .save_event(
            Event::builder(stream("alice"), "Deposited")
                .version(2)
                .data(&serde_json::json!({ "cents": 1 }))
                .unwrap()
                .build(),
        )
        .await
        .unwrap();
    let conflict = actors.ask(&alice, Command::Deposit { cents: 1 }).await;
    assert!(
        matches!(conflict, Err(AskError::Failed(ActorError::Conflict { .. }))),
        "{conflict:?}"
    );
    assert_eq!(subscriber.queued(), 0, "nothing refused is published");

    let accepted = actors
        .ask(&alice, Command::Deposit { cents: 5 })
        .await
        .unwrap();
    assert_eq!(accepted.version, 3);
    let published = drain(&mut subscriber);
    assert_eq!(
        published,
        store.inner.events(&stream("alice"), 3).await.unwrap(),
        "only the accepted append"
    );
    assert_eq!(actors.stats().published, 1);
    actors.shutdown().await;
}

/// A slow bus never fails a command: a full subscriber queue drops (counted in
/// `publish_drops`), a blocking subscriber holds the actor at most `publish_timeout` (the rest
/// counted in `publish_failures`), and every command succeeds and is stored.
#[tokio::test(start_paused = true)]
async fn slow_subscribers_are_counted_and_never_fail_the_command() {
    let store = InMemoryEventStore::new();
    let bus = EventBus::new();
    let one = || SubscribeOptions::new().queue_capacity(1);
    let mut dropping = bus.subscribe_with(&ns(), one());
    let config = ActorConfig {
        publish_timeout: Duration::from_millis(100),
        ..ActorConfig::default()
    };
    let actors = Actors::with_bus(ns(), Bank, store.clone(), bus.clone(), config).unwrap();
    let alice = id("alice");
    let deposit = || Command::Deposit { cents: 1 };
    actors.ask(&alice, deposit()).await.unwrap();
    actors.ask(&alice, deposit()).await.unwrap(); // `dropping` is full: dropped
    let stats = actors.stats();
    assert_eq!(
        (stats.published, stats.publish_drops, stats.publish_failures),
        (2, 1, 0)
    );

    let hour = Duration::from_secs(3600);
    let mut blocking = bus.subscribe_with(&ns(), one().overflow(Overflow::Block { timeout: hour }));
    actors.ask(&alice, deposit()).await.unwrap(); // dropped by one, queued by the other
    let started = tokio::time::Instant::now();
    let fourth = actors.ask(&alice, deposit()).await.unwrap(); // `blocking` is full: waits
    assert!(
        started.elapsed() < hour,
        "the actor waited {:?}: bounded by publish_timeout, not by the subscriber",
        started.elapsed()
    );
    assert_eq!(fourth.version, 4, "the command succeeded");
    let stats = actors.stats();
    assert_eq!(
        (stats.published, stats.publish_drops, stats.publish_failures),
        (3, 2, 1)
    );
    assert_eq!(store.events(&stream("alice"), 0).await.unwrap().len(), 4);
    assert_eq!(drain(&mut dropping).len(), 1);
    let queued = drain(&mut blocking);
    assert_eq!(queued.iter().map(|e| e.version).collect::<Vec<_>>(), [3]);
    actors.shutdown().await;
}

/// Many actors, commands in parallel (single events and batches): the subscriber gets every
/// stored event exactly once, each actor's in version order, equal to the stored histories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stored_event_published_once_in_order_per_actor() {
    const ACCOUNTS: usize = 8;
    const COMMANDS: u64 = 20;
    let store = InMemoryEventStore::new();
    let bus = EventBus::new();
    let mut subscriber = bus.subscribe_with(&ns(), SubscribeOptions::new().queue_capacity(10_000));
    let actors = Actors::with_bus(ns(), Bank, store.clone(), bus, ActorConfig::default()).unwrap();
    let mut tasks = Vec::new();
    for a in 0..ACCOUNTS {
        let actors = actors.clone();
        tasks.push(tokio::spawn(async move {
            let who = id(&format!("acct-{a}"));
            for c in 0..COMMANDS {
                let command = if c % 4 == 0 {
                    Command::Split { cents: 6, parts: 2 }
                } else {
                    Command::Deposit { cents: c }
                };
                actors.ask(&who, command).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    actors.shutdown().await;
    let mut by_actor: BTreeMap<ActorId, Vec<Event>> = BTreeMap::new();
    for event in drain(&mut subscriber) {
        by_actor
            .entry(event.actor_id.clone())
            .or_default()
            .push(event);
    }
    assert_eq!(by_actor.len(), ACCOUNTS);
    let mut total = 0;
    for (actor, published) in by_actor {
        let stored = store.events(&actor, 0).await.unwrap();
        assert_eq!(
            published, stored,
            "{actor}: each stored event once, in order"
        );
        total += stored.len() as u64;
    }
    let stats = actors.stats();
    assert_eq!(
        (stats.published, stats.publish_failures, stats.publish_drops),
        (total, 0, 0)
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The process dies right after an append was stored and before its events were published:
/// the live subscriber never gets them, the feed reader resumes from its last checkpoint and
/// gets exactly the events stored since — the unpublished ones included, nothing before the
/// checkpoint again, nothing skipped — and a restarted runtime goes on from the stored state.
#[test]
fn a_crash_between_storing_and_publishing_loses_no_event_for_feed_readers() {
    let memory = InMemoryEventStore::new();
    let bus = EventBus::new();
    let mut live = bus.subscribe(&ns());
    let mut reader = FeedReader::new();
    let (alice, bob) = (id("alice"), id("bob"));

    // The first process: some commands, published and read from the feed; then it dies.
    let first = runtime();
    first.block_on(async {
        let store = DiesAfterStoring::new(memory.clone());
        let actors = Actors::with_bus(
            ns(),
            Bank,
            store.clone(),
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
        let before = reader.catch_up(&memory).await;
        assert_eq!(before.len(), 6);
        assert_eq!(drain(&mut live), before, "the live path had them too");
        reader.processed.extend(before);

        // A command whose events are stored, then the process dies before publishing them.
        store.arm();
        let stuck = {
            let actors = actors.clone();
            let alice = alice.clone();
            tokio::spawn(async move {
                actors
                    .ask(&alice, Command::Split { cents: 6, parts: 3 })
                    .await
            })
        };
        store.stored.notified().await;
        assert!(!stuck.is_finished());
        // Also stored since the checkpoint, and published: bob's next command.
        actors
            .ask(&bob, Command::Deposit { cents: 1 })
            .await
            .unwrap();
    });
    drop(first); // the crash: every task of the process is gone
    assert_eq!(
        memory.events(&stream("alice"), 0).now_or_never_ok().len(),
        6,
        "alice's last decision was stored (3 events)"
    );
    let published: Vec<Event> = drain(&mut live);
    assert_eq!(
        published,
        memory.events(&stream("bob"), 4).now_or_never_ok(),
        "alice's last events were never published; bob's were"
    );

    // The restarted reader resumes from its checkpoint: exactly what was stored since.
    let second = runtime();
    second.block_on(async {
        let since = reader.catch_up(&memory).await;
        let mut expected = memory.events(&stream("alice"), 4).await.unwrap();
        expected.extend(memory.events(&stream("bob"), 4).await.unwrap());
        let mut got = since.clone();
        got.sort_by(|a, b| (&a.actor_id, a.version).cmp(&(&b.actor_id, b.version)));
        assert_eq!(
            got, expected,
            "every event since the checkpoint, the unpublished ones too"
        );
        assert_eq!(
            since
                .iter()
                .filter(|e| e.actor_id == stream("alice"))
                .map(|e| e.version)
                .collect::<Vec<_>>(),
            [4, 5, 6],
            "in version order"
        );
        reader.processed.extend(since);

        // The restarted runtime goes on from what was stored.
        let actors = Actors::with_bus(
            ns(),
            Bank,
            memory.clone(),
            bus.clone(),
            ActorConfig::default(),
        )
        .unwrap();
        let next = actors
            .ask(&alice, Command::Deposit { cents: 1 })
            .await
            .unwrap();
        assert_eq!(next.version, 7);
        let newer = reader.catch_up(&memory).await;
        assert_eq!(newer, memory.events(&stream("alice"), 7).await.unwrap());
        reader.processed.extend(newer);
        actors.shutdown().await;

        // Everything stored was processed exactly once by the checkpointed reader.
        for who in ["alice", "bob"] {
            let mine: Vec<Event> = reader
                .processed
                .iter()
                .filter(|e| e.actor_id == stream(who))
                .cloned()
                .collect();
            assert_eq!(mine, memory.events(&stream(who), 0).await.unwrap(), "{who}");
        }
    });
}

/// The in-memory store answers at once.
trait NowOrNever<T> {
    fn now_or_never_ok(self) -> T;
}

impl<T, F: Future<Output = Result<T, StoreError>>> NowOrNever<T> for F {
    fn now_or_never_ok(self) -> T {
        futures::FutureExt::now_or_never(Box::pin(self))
            .expect("the in-memory store is always ready")
            .expect("no error")
    }
}
