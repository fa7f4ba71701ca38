//! The feed ([`EventFeed`]): every stored event of the store's namespace in commit order, read
//! after a checkpoint — at least once, in order per actor, never an event the store refused.
//! For stores that implement [`EventFeed`]; run with [`run_all_feed`](super::run_all_feed) or
//! [`feed_conformance_tests!`](crate::feed_conformance_tests).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use super::ConformanceTarget;
use super::support::{actor, event, save_versions};
use crate::{ActorId, Event, EventFeed, FeedEvent, FeedPage, FeedPosition, StoreError, Version};

fn page_size(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("a page size above zero")
}

/// Reads the feed after `after` in pages of `page` records until an empty page, checking each
/// page's shape; returns everything read and the final checkpoint.
async fn read_to_end<S: EventFeed>(store: &S, after: FeedPosition, page: usize) -> FeedPage {
    let mut all = FeedPage {
        next: after,
        ..FeedPage::default()
    };
    loop {
        let got = store
            .read_feed(all.next, page_size(page))
            .await
            .unwrap_or_else(|e| panic!("read_feed after {}: {e}", all.next));
        assert!(
            got.events.len() + got.errors.len() <= page,
            "a page holds at most `max` records: {} > {page}",
            got.events.len() + got.errors.len()
        );
        if got.is_empty() {
            assert_eq!(
                got.next, all.next,
                "an empty page leaves the checkpoint where it was"
            );
            return all;
        }
        let last = got
            .events
            .iter()
            .map(|e| e.position.get())
            .chain(got.errors.iter().map(|e| e.position))
            .max()
            .expect("not empty");
        assert_eq!(got.next.get(), last, "next is the page's last record");
        assert!(
            got.events
                .iter()
                .map(|e| e.position.get())
                .chain(got.errors.iter().map(|e| e.position))
                .all(|p| p > all.next.get()),
            "a page holds only records after the position asked for"
        );
        all.events.extend(got.events);
        all.errors.extend(got.errors);
        all.next = got.next;
    }
}

fn events_of(page: &FeedPage) -> Vec<Event> {
    page.events.iter().map(|e| e.event.clone()).collect()
}

#[track_caller]
fn assert_strictly_increasing(events: &[FeedEvent]) {
    assert!(
        events.windows(2).all(|w| w[0].position < w[1].position),
        "positions must strictly increase: {:?}",
        events.iter().map(|e| e.position.get()).collect::<Vec<_>>()
    );
}

/// The feed holds exactly the stored events, in the order they were stored (batches
/// contiguous), as stored; refused writes (conflicts, bad input, reused ids) and duplicates add
/// nothing. An empty feed reads as an empty page at the start.
pub async fn feed_holds_every_stored_event_in_commit_order<S: ConformanceTarget + EventFeed>(
    store: S,
) {
    let empty = store
        .read_feed(FeedPosition::START, page_size(10))
        .await
        .expect("read_feed");
    assert!(empty.is_empty(), "a new store's feed is empty: {empty:?}");
    assert_eq!(empty.next, FeedPosition::START);

    let a = actor("account-1");
    let b = actor("account-2");
    let c = actor("account-3");
    let mut stored = save_versions(&store, &a, &[1]).await;
    stored.extend(save_versions(&store, &b, &[1]).await);
    let batch = vec![event(&a, 2), event(&a, 3), event(&a, 5)];
    store.save_events(batch.clone()).await.expect("batch");
    stored.extend(batch);
    stored.extend(save_versions(&store, &c, &[1]).await);
    let b2 = event(&b, 2);
    store.save_event(b2.clone()).await.expect("save");
    stored.push(b2.clone());
    // Refused and duplicate writes.
    assert!(matches!(
        store.save_event(event(&a, 4)).await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert!(
        store.save_event(event(&c, 0)).await.is_err(),
        "version 0 is refused"
    );
    assert!(
        store
            .save_event(b2.clone())
            .await
            .expect("resave")
            .is_duplicate(),
        "a resave is a duplicate"
    );
    let mut reused = event(&c, 2);
    reused.id = b2.id.clone();
    assert!(matches!(
        store.save_event(reused).await,
        Err(StoreError::EventIdReused { .. })
    ));

    let all = read_to_end(&store, FeedPosition::START, 100).await;
    assert!(all.errors.is_empty(), "{:?}", all.errors);
    assert_strictly_increasing(&all.events);
    assert_eq!(
        events_of(&all),
        stored,
        "the feed is every stored event, as stored, in the order stored"
    );
    let batch_positions: Vec<u64> = all.events[2..5].iter().map(|e| e.position.get()).collect();
    assert_eq!(
        batch_positions[2] - batch_positions[0],
        2,
        "a batch's events are contiguous in the feed: {batch_positions:?}"
    );
}

/// Reading after a checkpoint returns exactly the records after it — nothing before it again,
/// nothing skipped — whatever the page size; events stored later come after the last
/// checkpoint; reading past the end is an empty page.
pub async fn feed_resumes_after_a_checkpoint<S: ConformanceTarget + EventFeed>(store: S) {
    let actors = [actor("order-1"), actor("order-2"), actor("order-3")];
    for version in 1..=4 {
        for (i, a) in actors.iter().enumerate() {
            if version <= 2 + i as Version {
                save_versions(&store, a, &[version]).await;
            }
        }
    }
    let all = read_to_end(&store, FeedPosition::START, 1000).await;
    assert_eq!(all.events.len(), 2 + 3 + 4);
    for page in [1, 2, 3, 1000] {
        assert_eq!(
            read_to_end(&store, FeedPosition::START, page).await.events,
            all.events,
            "pages of {page} read the same feed"
        );
    }
    for k in 0..all.events.len() {
        let checkpoint = all.events[k].position;
        let rest = read_to_end(&store, checkpoint, 2).await;
        assert_eq!(
            rest.events,
            all.events[k + 1..],
            "after the checkpoint at the {k}th event: exactly the events after it"
        );
    }
    let end = all.next;
    let past = store
        .read_feed(FeedPosition::new(end.get() + 1000), page_size(5))
        .await
        .expect("read_feed");
    assert!(
        past.is_empty() && past.next.get() == end.get() + 1000,
        "{past:?}"
    );

    let later = save_versions(&store, &actors[0], &[5, 6]).await;
    let since = read_to_end(&store, end, 1).await;
    assert_eq!(
        events_of(&since),
        later,
        "only what was stored since the checkpoint"
    );
    assert!(since.events[0].position > end);
}

/// A record that is not an event (a foreign client's write) is reported at its position among
/// the events, never skipped silently, and a checkpoint moves past it.
pub async fn feed_reports_undecodable_records<S: ConformanceTarget + EventFeed>(store: S) {
    let a = actor("ledger-1");
    let b = actor("ledger-2");
    let garbage = b"\x00not an event".to_vec();
    let first = save_versions(&store, &a, &[1]).await;
    store
        .write_raw_record(&a, garbage.clone())
        .await
        .expect("raw write");
    let second = save_versions(&store, &b, &[1]).await;

    let all = read_to_end(&store, FeedPosition::START, 10).await;
    assert_eq!(events_of(&all), [first, second].concat());
    assert_eq!(all.errors.len(), 1, "the foreign record is reported");
    let hole = &all.errors[0];
    assert_eq!(hole.raw, garbage);
    assert!(!hole.error.is_empty(), "the error says why");
    assert!(
        all.events[0].position.get() < hole.position
            && hole.position < all.events[1].position.get(),
        "reported at its place in the feed"
    );
    let one = store
        .read_feed(all.events[0].position, page_size(1))
        .await
        .expect("read_feed");
    assert!(one.events.is_empty() && one.errors.len() == 1, "{one:?}");
    assert_eq!(
        one.next.get(),
        hole.position,
        "the checkpoint moves past the hole"
    );
}

/// Writers on several actors (single saves and batches) race a reader that tails the feed in
/// small pages, checkpointing after each: the reader gets every stored event exactly once, each
/// actor's in version order — an event is never given a position the reader has already
/// passed.
pub async fn feed_under_concurrent_writers_misses_nothing<S: ConformanceTarget + EventFeed>(
    store: S,
) {
    const WRITERS: usize = 4;
    const ROUNDS: Version = 15;
    let store = std::sync::Arc::new(store);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let a = actor(&format!("racer-{w}"));
            let mut version = 0;
            for round in 0..ROUNDS {
                if round % 3 == 0 {
                    let batch = vec![event(&a, version + 1), event(&a, version + 2)];
                    store.save_events(batch).await.expect("batch");
                    version += 2;
                } else {
                    version += 1;
                    store.save_event(event(&a, version)).await.expect("save");
                }
            }
        }));
    }
    let mut seen: Vec<FeedEvent> = Vec::new();
    let mut checkpoint = FeedPosition::START;
    let mut done = false;
    loop {
        let page = store
            .read_feed(checkpoint, page_size(7))
            .await
            .expect("read_feed");
        assert!(page.errors.is_empty(), "{:?}", page.errors);
        if page.is_empty() {
            if done {
                break;
            }
            done = writers.iter().all(tokio::task::JoinHandle::is_finished);
            tokio::task::yield_now().await;
            continue;
        }
        checkpoint = page.next;
        seen.extend(page.events);
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    // Whatever the reader's last empty read raced with, one more read after its checkpoint
    // finds nothing: the writers were done before it.
    assert!(
        store
            .read_feed(checkpoint, page_size(100))
            .await
            .expect("read_feed")
            .is_empty(),
        "nothing left after the final checkpoint"
    );
    assert_strictly_increasing(&seen);
    let mut by_actor: BTreeMap<ActorId, Vec<Event>> = BTreeMap::new();
    for e in seen {
        by_actor
            .entry(e.event.actor_id.clone())
            .or_default()
            .push(e.event);
    }
    assert_eq!(by_actor.len(), WRITERS);
    for (a, events) in by_actor {
        let history = store.events(&a, 0).await.expect("events");
        assert_eq!(
            events, history,
            "the reader got {a}'s whole history, once, in version order"
        );
    }
}
