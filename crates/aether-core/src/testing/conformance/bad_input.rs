//! Bad input: every rule has a typed error, and nothing is written.

use serde_json::json;

use super::ConformanceTarget;
use super::support::{actor, assert_history, event, save_versions};
use crate::{
    ActorId, ActorSnapshot, Event, EventId, InvalidEvent, InvalidSnapshot, NameRule, StoreError,
};

/// Recognises the reason a case expects.
type ExpectedReason = fn(&InvalidEvent) -> bool;

#[track_caller]
fn expect_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) -> InvalidEvent {
    match result {
        Err(StoreError::InvalidEvent(reason)) => reason,
        other => panic!("{what}: expected StoreError::InvalidEvent, got {other:?}"),
    }
}

/// Empty, over-long, or whitespace/control-containing event types are rejected.
pub async fn rejects_bad_event_types<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    let cases: [(String, ExpectedReason); 4] = [
        (String::new(), |r| *r == InvalidEvent::EmptyEventType),
        ("Two Words".into(), |r| {
            matches!(r, InvalidEvent::EventTypeForbiddenChar { ch: ' ', .. })
        }),
        ("Line\nBreak".into(), |r| {
            matches!(r, InvalidEvent::EventTypeForbiddenChar { ch: '\n', .. })
        }),
        ("T".repeat(256), |r| {
            matches!(r, InvalidEvent::EventTypeTooLong { len: 256, max: 255 })
        }),
    ];
    for (event_type, expected) in cases {
        let e = Event {
            event_type: event_type.clone(),
            ..event(&a, 1)
        };
        let reason = expect_invalid(store.save_event(e).await, &format!("type {event_type:?}"));
        assert!(
            expected(&reason),
            "type {event_type:?}: unexpected reason {reason:?}"
        );
    }
    assert_history(&store, &a, &[]).await;
}

/// Version 0 means "no events yet" and is rejected.
pub async fn rejects_version_zero<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    let reason = expect_invalid(store.save_event(event(&a, 0)).await, "version 0");
    assert_eq!(reason, InvalidEvent::ZeroVersion);
    assert_history(&store, &a, &[]).await;
}

/// An event encoding to exactly the limit is accepted; one byte more is rejected with the
/// exact size and the limit.
pub async fn rejects_events_above_the_size_limit<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    let limit = store.limits().max_event_bytes;
    let sized = |version: u64, bytes: usize| {
        let frame = event(&a, version)
            .with_data(&json!({ "blob": "" }))
            .expect("object");
        let pad = bytes
            .checked_sub(frame.encoded_len())
            .expect("limit above an empty event");
        frame
            .with_data(&json!({ "blob": "x".repeat(pad) }))
            .expect("object")
    };
    let too_big = sized(1, limit + 1);
    assert_eq!(too_big.encoded_len(), limit + 1);
    let reason = expect_invalid(store.save_event(too_big).await, "oversized event");
    assert_eq!(
        reason,
        InvalidEvent::TooLarge {
            size: limit + 1,
            limit
        }
    );
    assert_history(&store, &a, &[]).await;

    let at_limit = sized(1, limit);
    assert_eq!(at_limit.encoded_len(), limit);
    store
        .save_event(at_limit.clone())
        .await
        .expect("an event of exactly the limit is accepted");
    assert_history(&store, &a, &[at_limit]).await;
}

/// Empty, too long, mixed-actor, non-increasing, repeated-id and partly invalid batches are
/// rejected whole.
pub async fn rejects_bad_batches<S: ConformanceTarget>(store: S) {
    let a = actor("cart-1");
    let b = actor("cart-2");
    let stored = save_versions(&store, &a, &[1]).await;
    let max = store.limits().max_batch_len;
    let mut repeated_id = vec![event(&a, 2), event(&a, 3)];
    repeated_id[1].id = repeated_id[0].id.clone();
    let cases: Vec<(&str, Vec<Event>, ExpectedReason)> = vec![
        ("empty", vec![], |r| *r == InvalidEvent::EmptyBatch),
        (
            "too long",
            (2..max as u64 + 3).map(|v| event(&a, v)).collect(),
            |r| matches!(r, InvalidEvent::BatchTooLong { .. }),
        ),
        ("mixed actors", vec![event(&a, 2), event(&b, 3)], |r| {
            matches!(r, InvalidEvent::MixedActors { index: 1, .. })
        }),
        ("decreasing", vec![event(&a, 3), event(&a, 2)], |r| {
            matches!(
                r,
                InvalidEvent::NonIncreasingVersions {
                    index: 1,
                    version: 2,
                    previous: 3
                }
            )
        }),
        ("repeated version", vec![event(&a, 2), event(&a, 2)], |r| {
            matches!(r, InvalidEvent::NonIncreasingVersions { .. })
        }),
        ("repeated id", repeated_id, |r| {
            matches!(
                r,
                InvalidEvent::DuplicateIdInBatch {
                    first: 0,
                    second: 1,
                    ..
                }
            )
        }),
        (
            "invalid member",
            vec![
                event(&a, 2),
                Event {
                    event_type: String::new(),
                    ..event(&a, 3)
                },
            ],
            |r| matches!(r, InvalidEvent::InBatch { index: 1, reason } if **reason == InvalidEvent::EmptyEventType),
        ),
    ];
    for (what, batch, expected) in cases {
        let reason = expect_invalid(store.save_events(batch).await, what);
        assert!(expected(&reason), "{what}: unexpected reason {reason:?}");
    }
    assert_history(&store, &a, &stored).await;
    assert_history(&store, &b, &[]).await;
}

/// Snapshots at version 0 or above the size limit are rejected; nothing is stored.
pub async fn rejects_bad_snapshots<S: ConformanceTarget>(store: S) {
    let a = actor("account-1");
    save_versions(&store, &a, &[1]).await;
    let zero = ActorSnapshot::new(a.clone(), 0, json!({}));
    assert!(
        matches!(
            store.save_snapshot(zero).await,
            Err(StoreError::InvalidSnapshot(InvalidSnapshot::ZeroVersion))
        ),
        "version 0 snapshot must be rejected"
    );
    let limit = store.limits().max_snapshot_bytes;
    let huge = ActorSnapshot::new(a.clone(), 1, json!({ "blob": "x".repeat(limit) }));
    assert!(
        matches!(
            store.save_snapshot(huge).await,
            Err(StoreError::InvalidSnapshot(InvalidSnapshot::TooLarge { limit: l, .. })) if l == limit
        ),
        "oversized snapshot must be rejected"
    );
    assert_eq!(store.latest_snapshot(&a).await.expect("latest"), None);
}

/// Empty ids, empty actor ids and invalid actor ids cannot reach a store: `EventId` and
/// `ActorId` reject them at construction and when decoding JSON. (Records with such ids written
/// by foreign clients are covered by `events_with_errors_reports_undecodable_records`.)
pub async fn ids_and_actor_ids_are_valid_by_construction<S: ConformanceTarget>(store: S) {
    assert_eq!(
        EventId::new("").map_err(|e| e.rule().clone()),
        Err(NameRule::Empty)
    );
    for bad in ["", "a b", "x.*", "x.>", "..", "a\u{0}b"] {
        assert!(
            ActorId::new(bad).is_err(),
            "actor id {bad:?} must be rejected"
        );
    }
    let json = |id: &str, actor: &str| {
        format!(
            r#"{{"id":"{id}","eventType":"T","actorId":"{actor}","version":1,"data":{{}},"timestamp":"2026-01-01T00:00:00Z"}}"#
        )
    };
    assert!(
        serde_json::from_str::<Event>(&json("e-1", "a")).is_ok(),
        "control case decodes"
    );
    for (id, actor_id) in [("", "a"), ("e-1", ""), ("e-1", "x.*"), ("e 1", "a")] {
        assert!(
            serde_json::from_str::<Event>(&json(id, actor_id)).is_err(),
            "event with id {id:?} and actor {actor_id:?} must not decode"
        );
    }
    // And the store is untouched.
    assert_eq!(store.latest_version(&actor("a")).await.expect("latest"), 0);
}
