//! The SQLite store's own promises beyond the conformance suite: namespaces kept apart in one
//! directory, everything kept across a reopen, concurrent saves sharing commits while each is
//! checked on its own, and a database file that reads as the documented plain SQL.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Once;

use aether_core::{
    ActorId, ActorSnapshot, Event, EventFeed, EventId, EventStore, FeedPosition, FencedEventStore,
    Namespace, OwnerEpoch, SaveOutcome, SnapshotStore, StoreError,
};
use aether_sqlite::{SqliteConfig, SqliteDatabase};

fn fresh_dir() -> PathBuf {
    static CLEAN: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-store");
    CLEAN.call_once(|| {
        let _ = std::fs::remove_dir_all(&root);
    });
    root.join(uuid::Uuid::now_v7().simple().to_string())
}

fn id(s: &str) -> ActorId {
    ActorId::new(s).unwrap()
}

fn ns(s: &str) -> Namespace {
    Namespace::new(s).unwrap()
}

fn event(actor: &ActorId, version: u64, event_id: &str) -> Event {
    Event::builder(actor.clone(), "Deposited")
        .id(EventId::new(event_id).unwrap())
        .version(version)
        .build()
}

fn all() -> NonZeroUsize {
    NonZeroUsize::new(10_000).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_in_one_directory_are_kept_apart() {
    let db = SqliteDatabase::open(fresh_dir(), SqliteConfig::default()).unwrap();
    let (eu, us) = (
        db.store(ns("bank.eu")).unwrap(),
        db.store(ns("bank-eu")).unwrap(),
    );
    let acct = id("acct-1");
    // The same actor id and the same event id in both: two different events.
    assert_eq!(
        eu.save_event(event(&acct, 1, "e-1")).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(
        us.save_event(event(&acct, 1, "e-1")).await.unwrap(),
        SaveOutcome::Saved
    );
    eu.save_event(event(&acct, 2, "e-2")).await.unwrap();
    assert_eq!(eu.latest_version(&acct).await.unwrap(), 2);
    assert_eq!(us.latest_version(&acct).await.unwrap(), 1);
    eu.save_snapshot(ActorSnapshot::new(acct.clone(), 2, serde_json::json!(2)))
        .await
        .unwrap();
    assert!(us.latest_snapshot(&acct).await.unwrap().is_none());
    // A fence in one namespace leaves the other's writers alone.
    eu.fence(&acct, OwnerEpoch::new(5)).await.unwrap();
    assert!(matches!(
        eu.save_event(event(&acct, 3, "e-3")).await,
        Err(StoreError::Fenced { .. })
    ));
    us.save_event(event(&acct, 2, "e-2")).await.unwrap();
    // Each feed holds its own namespace's events only.
    let eu_feed = eu.read_feed(FeedPosition::START, all()).await.unwrap();
    let us_feed = us.read_feed(FeedPosition::START, all()).await.unwrap();
    assert_eq!(eu_feed.events.len(), 2);
    assert_eq!(us_feed.events.len(), 2);
    let eu_ids: Vec<_> = eu
        .events(&acct, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        eu_ids,
        [EventId::new("e-1").unwrap(), EventId::new("e-2").unwrap()]
    );
    assert_eq!(db.namespaces().unwrap(), ["bank-eu", "bank.eu"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_is_kept_across_a_reopen() {
    let dir = fresh_dir();
    let acct = id("acct-1");
    let (before, feed_before) = {
        let store =
            aether_sqlite::SqliteEventStore::open(&dir, ns("bank"), SqliteConfig::default())
                .unwrap();
        store
            .save_events(vec![event(&acct, 1, "e-1"), event(&acct, 2, "e-2")])
            .await
            .unwrap();
        store
            .save_snapshot(ActorSnapshot::new(
                acct.clone(),
                2,
                serde_json::json!({"n": 2}),
            ))
            .await
            .unwrap();
        store.fence(&acct, OwnerEpoch::new(3)).await.unwrap();
        let feed = store.read_feed(FeedPosition::START, all()).await.unwrap();
        (store.events(&acct, 0).await.unwrap(), feed)
    };
    // Dropped: the directory is closed and its lock released.
    let store =
        aether_sqlite::SqliteEventStore::open(&dir, ns("bank"), SqliteConfig::default()).unwrap();
    assert_eq!(store.events(&acct, 0).await.unwrap(), before);
    let snapshot = store.latest_snapshot(&acct).await.unwrap().unwrap();
    assert_eq!(
        (snapshot.version, snapshot.state),
        (2, serde_json::json!({"n": 2}))
    );
    assert_eq!(store.latest_epoch(&acct).await.unwrap(), OwnerEpoch::new(3));
    let feed = store.read_feed(FeedPosition::START, all()).await.unwrap();
    assert_eq!(feed.events, feed_before.events);
    // Writing goes on from there: the fence still holds, the feed keeps growing.
    assert!(matches!(
        store.save_event(event(&acct, 3, "e-3")).await,
        Err(StoreError::Fenced { .. })
    ));
    store
        .save_events_as(vec![event(&acct, 3, "e-3")], OwnerEpoch::new(3))
        .await
        .unwrap();
    let next = store.read_feed(feed.next, all()).await.unwrap();
    assert_eq!(next.events.len(), 1);
    assert!(next.events[0].position > feed.next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_share_commits_and_each_is_checked_alone() {
    let db = SqliteDatabase::open(fresh_dir(), SqliteConfig::default()).unwrap();
    let store = db.store(ns("bank")).unwrap();
    let taken = id("taken");
    store.save_event(event(&taken, 1, "taken-1")).await.unwrap();
    let before = db.stats();
    // 150 new actors (saved), 25 stale writes to `taken` (conflicts) and 25 new events that
    // reuse `taken`'s event id (refused), all at once.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        let taken = taken.clone();
        tasks.spawn(async move {
            let result = match i % 8 {
                0 => {
                    store
                        .save_event(event(&taken, 1, &format!("stale-{i}")))
                        .await
                }
                1 => {
                    let actor = id(&format!("reuser-{i}"));
                    store
                        .save_events(vec![
                            event(&actor, 1, &format!("r-{i}")),
                            event(&actor, 2, "taken-1"),
                        ])
                        .await
                }
                _ => {
                    let actor = id(&format!("new-{i}"));
                    store
                        .save_events(vec![
                            event(&actor, 1, &format!("n-{i}.1")),
                            event(&actor, 2, &format!("n-{i}.2")),
                        ])
                        .await
                }
            };
            (i, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.unwrap();
        match i % 8 {
            0 => assert!(
                matches!(
                    result,
                    Err(StoreError::VersionConflict {
                        current_version: 1,
                        ..
                    })
                ),
                "{i}: {result:?}"
            ),
            1 => {
                assert!(
                    matches!(result, Err(StoreError::EventIdReused { .. })),
                    "{i}: {result:?}"
                );
                // All or nothing: the batch's first event is not stored either.
                let actor = id(&format!("reuser-{i}"));
                assert_eq!(store.latest_version(&actor).await.unwrap(), 0, "{i}");
            }
            _ => {
                assert_eq!(result.unwrap(), SaveOutcome::Saved, "{i}");
                let actor = id(&format!("new-{i}"));
                assert_eq!(store.events(&actor, 0).await.unwrap().len(), 2, "{i}");
            }
        }
    }
    assert_eq!(store.events(&taken, 0).await.unwrap().len(), 1);
    let after = db.stats();
    let (writes, commits) = (after.writes - before.writes, after.commits - before.commits);
    assert_eq!(writes, 200);
    assert!(
        commits < writes,
        "{commits} commits for {writes} concurrent writes: no group commit"
    );
    println!("200 concurrent writes in {commits} commits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_above_what_the_store_keeps_is_refused_and_nothing_is_written() {
    let db = SqliteDatabase::open(fresh_dir(), SqliteConfig::default()).unwrap();
    let store = db.store(ns("bank")).unwrap();
    let acct = id("acct-1");
    let huge = u64::try_from(i64::MAX).unwrap() + 1;
    let error = store
        .save_events(vec![event(&acct, 1, "e-1"), event(&acct, huge, "e-2")])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("above the largest"), "{error}");
    assert_eq!(store.latest_version(&acct).await.unwrap(), 0);
    assert!(store.events(&acct, 0).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_reads_as_the_documented_plain_sql() {
    let db = SqliteDatabase::open(fresh_dir(), SqliteConfig::default()).unwrap();
    let store = db.store(ns("bank")).unwrap();
    let acct = id("acct-1");
    store.save_event(event(&acct, 1, "e-1")).await.unwrap();
    store.save_event(event(&acct, 2, "e-2")).await.unwrap();
    // Another connection, as the sqlite3 tool opens it, while the store is open.
    let conn = rusqlite::Connection::open_with_flags(
        db.file(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows: Vec<(u64, String)> = conn
        .prepare(
            "SELECT r.version, r.body FROM records r JOIN actors a ON a.id = r.actor \
             JOIN namespaces n ON n.id = a.namespace \
             WHERE n.name = 'bank' AND a.actor_id = 'acct-1' ORDER BY r.position",
        )
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    let stored: Event = serde_json::from_str(&rows[1].1).unwrap();
    assert_eq!((rows[1].0, stored.id.as_str()), (2, "e-2"));
    let head: (u64, u64) = conn
        .query_row(
            "SELECT version, epoch FROM actors WHERE actor_id = 'acct-1'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(head, (2, 0));
}

/// With groups of one write, a burst of concurrent saves makes a leader commit more groups
/// than it leads (8) for others: blocking threads lead on, and every save is answered and
/// stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_burst_is_led_to_the_end() {
    let config = SqliteConfig {
        max_group: 1,
        ..SqliteConfig::default()
    };
    let db = SqliteDatabase::open(fresh_dir(), config).unwrap();
    let store = db.store(ns("bank")).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let store = store.clone();
        tasks.spawn(async move {
            let actor = id(&format!("burst-{i}"));
            store.save_event(event(&actor, 1, &format!("b-{i}"))).await
        });
    }
    let answered = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let mut answered = 0;
        while let Some(joined) = tasks.join_next().await {
            assert_eq!(joined.unwrap().unwrap(), SaveOutcome::Saved);
            answered += 1;
        }
        answered
    })
    .await
    .expect("every save is answered: no write is left in the queue without a leader");
    assert_eq!(answered, 100);
    let feed = store.read_feed(FeedPosition::START, all()).await.unwrap();
    assert_eq!(feed.events.len(), 100);
    assert_eq!(db.stats().commits, 100, "groups of one");
}
