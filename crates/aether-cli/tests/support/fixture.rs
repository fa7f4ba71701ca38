//! The example data the CLI tests (and the README's examples) read: two namespaces, three
//! actors, five events and a snapshot, with fixed ids and times so outputs are stable.

#![allow(dead_code)] // each test file uses part of it

use aether_core::{ActorId, ActorSnapshot, Event, EventId, Namespace, SnapshotStore};
use chrono::{DateTime, TimeZone, Utc};

/// When the first event happened; each further event one minute later.
pub(crate) fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 30, 0)
        .single()
        .expect("a valid time")
}

/// `(namespace, event)` in the order they are written.
pub(crate) fn events() -> Vec<(Namespace, Event)> {
    let rows: [(&str, &str, &str, u64, serde_json::Value); 5] = [
        (
            "bank",
            "acct-1",
            "Opened",
            1,
            serde_json::json!({"owner": "alice"}),
        ),
        (
            "bank",
            "acct-1",
            "Deposited",
            2,
            serde_json::json!({"amount": 100}),
        ),
        (
            "bank",
            "acct-2",
            "Opened",
            1,
            serde_json::json!({"owner": "bob"}),
        ),
        (
            "bank",
            "acct-1",
            "Withdrew",
            3,
            serde_json::json!({"amount": 30}),
        ),
        (
            "shop",
            "order-7",
            "Placed",
            1,
            serde_json::json!({"items": 2}),
        ),
    ];
    rows.into_iter()
        .enumerate()
        .map(|(i, (ns, actor, kind, version, data))| {
            let serde_json::Value::Object(data) = data else {
                unreachable!("the fixture's data are objects")
            };
            let mut event = Event::builder(ActorId::new(actor).expect("valid"), kind)
                .version(version)
                .id(EventId::new(format!("0194-fixture-{i}")).expect("valid"))
                .data_object(data)
                .build();
            event.timestamp = start() + chrono::Duration::minutes(i as i64);
            (Namespace::new(ns).expect("valid"), event)
        })
        .collect()
}

/// The snapshot of bank/acct-1 at version 2.
pub(crate) fn snapshot() -> ActorSnapshot {
    ActorSnapshot::new(
        ActorId::new("acct-1").expect("valid"),
        2,
        serde_json::json!({"balance": 100}),
    )
}

/// Writes the fixture through `store_of(namespace)`.
pub(crate) async fn write<S, F>(store_of: F)
where
    S: SnapshotStore,
    F: Fn(&Namespace) -> S,
{
    for (namespace, event) in events() {
        store_of(&namespace)
            .save_event(event)
            .await
            .expect("the fixture saves");
    }
    store_of(&Namespace::new("bank").expect("valid"))
        .save_snapshot(snapshot())
        .await
        .expect("the fixture's snapshot saves");
}

/// Writes the fixture into the data directory `dir`, and closes it.
pub(crate) async fn write_data_dir(dir: &std::path::Path) {
    let database = aether_sqlite::SqliteDatabase::open(dir, aether_sqlite::SqliteConfig::default())
        .expect("the data directory opens");
    write(|ns| database.store(ns.clone()).expect("the store opens")).await;
}
