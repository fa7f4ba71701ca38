//! [`SqliteInspector`]: a read-only view of a data directory, from outside the process that
//! holds it.
//!
//! - it reads while the directory is open and locked by a [`SqliteDatabase`], and sees saves
//!   committed after it was opened;
//! - per-namespace counts: events (records that are not events count as bytes only), actors
//!   with events, bytes;
//! - an actor's summary: version, snapshot, the last event;
//! - a missing directory or database is [`OpenError::Missing`], and nothing is created; a file
//!   that is not a database is [`OpenError::Corrupt`].

use aether_core::{ActorId, ActorSnapshot, Event, EventStore, Namespace, SnapshotStore};
use aether_sqlite::{DATABASE_FILE, OpenError, SqliteConfig, SqliteDatabase, SqliteInspector};

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

fn actor(id: &str) -> ActorId {
    ActorId::new(id).unwrap()
}

#[tokio::test]
async fn reads_a_directory_the_application_holds_and_sees_later_saves() {
    let dir = tempfile::tempdir().unwrap();
    let database = SqliteDatabase::open(dir.path(), SqliteConfig::default()).unwrap();
    let bank = database.store(ns("bank")).unwrap();
    let shop = database.store(ns("shop")).unwrap();
    bank.save_event(Event::new(actor("a"), "Opened", 1))
        .await
        .unwrap();
    bank.save_event(Event::new(actor("a"), "Deposited", 2))
        .await
        .unwrap();
    bank.save_event(Event::new(actor("b"), "Opened", 1))
        .await
        .unwrap();
    bank.write_raw_record(&actor("c"), b"not an event".to_vec())
        .await
        .unwrap();
    bank.save_snapshot(ActorSnapshot::new(
        actor("a"),
        1,
        serde_json::json!({"n": 1}),
    ))
    .await
    .unwrap();
    let _ = shop;

    let inspector = SqliteInspector::open(dir.path()).expect("opens while the directory is held");
    let stats = inspector.namespaces().unwrap();
    let counts: Vec<(&str, u64, u64)> = stats
        .iter()
        .map(|s| (s.name.as_str(), s.events, s.actors))
        .collect();
    assert_eq!(counts, [("bank", 3, 2), ("shop", 0, 0)]);
    let event_bytes: u64 = [
        inspector
            .events(&ns("bank"), &actor("a"), 1)
            .unwrap()
            .events,
        inspector
            .events(&ns("bank"), &actor("b"), 1)
            .unwrap()
            .events,
    ]
    .iter()
    .flatten()
    .map(|e| serde_json::to_vec(e).unwrap().len() as u64)
    .sum();
    assert_eq!(stats[0].bytes, event_bytes + b"not an event".len() as u64);

    let summary = inspector.actor(&ns("bank"), &actor("a")).unwrap().unwrap();
    assert_eq!(summary.version, 2);
    assert_eq!(summary.snapshot.as_ref().map(|s| s.version), Some(1));
    assert_eq!(
        summary.last_event.as_ref().map(|e| e.event_type.as_str()),
        Some("Deposited")
    );
    assert!(
        inspector
            .actor(&ns("bank"), &actor("nobody"))
            .unwrap()
            .is_none()
    );
    assert!(
        inspector
            .actor(&ns("nowhere"), &actor("a"))
            .unwrap()
            .is_none()
    );
    let undecodable = inspector.events(&ns("bank"), &actor("c"), 1).unwrap();
    assert_eq!((undecodable.events.len(), undecodable.errors.len()), (0, 1));

    // A save after the inspector opened is seen by its next read.
    bank.save_event(Event::new(actor("a"), "Withdrew", 3))
        .await
        .unwrap();
    let events = inspector
        .events(&ns("bank"), &actor("a"), 3)
        .unwrap()
        .events;
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), [3]);
}

#[test]
fn a_missing_directory_or_database_is_named_and_nothing_is_created() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("absent");
    let err = SqliteInspector::open(&missing).unwrap_err();
    assert!(
        matches!(err, OpenError::Missing { ref path } if *path == missing),
        "{err}"
    );
    assert!(
        err.to_string().contains("no Aether data directory"),
        "{err}"
    );
    assert!(!missing.exists());

    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        SqliteInspector::open(&empty),
        Err(OpenError::Missing { .. })
    ));
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing created"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DATABASE_FILE), b"hello, not sqlite at all").unwrap();
    assert!(matches!(
        SqliteInspector::open(dir.path()),
        Err(OpenError::Corrupt { .. })
    ));
}
