//! [`EventFeed`]: every stored event of a store handle's namespace, in the order the store
//! stored them, read from a caller-kept checkpoint ([`FeedPosition`]) — the durable path by
//! which subscribers that need every event get them, whatever happened to a live publish.

use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;

use super::{EventStore, ReplayError, StoreError};
use crate::Event;

/// A place in a store's feed: the position of one stored record, or [`START`](Self::START)
/// (before the first). A checkpoint is a position whose records, and everything before them,
/// the reader has processed.
///
/// Positions are the store's own order of records: the JetStream stream sequence, the in-memory
/// store's append counter (from 1). They grow with every record stored and are never reused,
/// so a position stays valid for the store it came from (across handles and restarts for a
/// durable store); it means nothing to another store.
///
/// # Examples
///
/// ```
/// use aether_core::FeedPosition;
///
/// let checkpoint = FeedPosition::new(41);
/// assert_eq!(checkpoint.get(), 41);
/// assert!(FeedPosition::START < checkpoint);
/// assert_eq!(FeedPosition::default(), FeedPosition::START);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FeedPosition(u64);

impl FeedPosition {
    /// Before the first record: reading after it reads the whole feed.
    pub const START: Self = Self(0);

    /// The position `raw` (as returned by [`get`](Self::get), e.g. from a stored checkpoint).
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The position as a number, to store as a checkpoint.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FeedPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored event and its position in the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// Where the event sits in the feed.
    pub position: FeedPosition,
    /// The event exactly as stored.
    pub event: Event,
}

/// One read of a feed: the records after the position asked for, in feed order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedPage {
    /// The stored events, positions strictly increasing.
    pub events: Vec<FeedEvent>,
    /// Records that are not events (a foreign client's writes), with their feed position in
    /// [`ReplayError::position`]: reported, never skipped silently.
    pub errors: Vec<ReplayError>,
    /// The position after this page: the last record it holds (events and errors alike), or
    /// the position read after if it is empty. Read the next page after it; store it as the
    /// checkpoint once the page is processed.
    ///
    /// Records that are not part of the feed (the fence records of a
    /// [`FencedEventStore`](crate::FencedEventStore)) are skipped: they take no room in a
    /// page, and `next` may move past them, also on a page without records.
    pub next: FeedPosition,
}

impl FeedPage {
    /// True if the page holds no record: the reader is at the end of the feed for now.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.errors.is_empty()
    }
}

/// Every stored event of the store handle's namespace (the JetStream store: the namespace's
/// stream; the in-memory store: all of its events), in the order it stored them, read from a
/// checkpoint.
///
/// This is what a subscriber that must see **every** event uses (projections, outboxes,
/// integrations): the live bus is at most once (a crash between storing and publishing loses
/// the publication, never the event), the feed is **at least once**:
///
/// - a page holds only stored events (an append the store refused or has not finished is never
///   in it), each at its position, positions strictly increasing;
/// - reading after position `p` returns the records after `p` and nothing before: no event
///   stored before a read that returned a position above it is missed later (the order is the
///   store's commit order, not a clock);
/// - one actor's events come in version order, and the events of an atomic batch are
///   contiguous;
/// - the feed is the same for every reader and every call: reading again after a checkpoint
///   returns the same records again (that is the "at least once": after a crash, what was
///   processed but not yet checkpointed comes again; make processing idempotent, e.g. by
///   event id, or checkpoint with the effect in one transaction).
///
/// The checkpoint is the caller's: keep [`FeedPage::next`] wherever the processing's results
/// go (a database row, a KV key, a file) after processing the page, and read after it on
/// restart. The feed does not wait for new events: an empty page means "nothing yet", poll
/// again later (or on a live bus event as a hint).
///
/// # Examples
///
/// ```
/// use std::num::NonZeroUsize;
/// use aether_core::{ActorId, Event, EventFeed, EventStore, FeedPosition, InMemoryEventStore};
///
/// # futures::executor::block_on(async {
/// let store = InMemoryEventStore::new();
/// let a = ActorId::new("a")?;
/// let b = ActorId::new("b")?;
/// store.save_event(Event::new(a.clone(), "Opened", 1)).await?;
/// store.save_event(Event::new(b.clone(), "Opened", 1)).await?;
/// store.save_event(Event::new(a.clone(), "Closed", 2)).await?;
///
/// // A subscriber processes pages of two, checkpointing after each.
/// let two = NonZeroUsize::new(2).unwrap();
/// let mut checkpoint = FeedPosition::START;
/// let mut seen = Vec::new();
/// loop {
///     let page = store.read_feed(checkpoint, two).await?;
///     if page.is_empty() {
///         break;
///     }
///     seen.extend(page.events.iter().map(|e| (e.event.actor_id.to_string(), e.event.version)));
///     checkpoint = page.next; // store it durably here
/// }
/// assert_eq!(seen, [("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]);
///
/// // After a restart, reading after the checkpoint returns only what came since.
/// store.save_event(Event::new(b.clone(), "Closed", 2)).await?;
/// let page = store.read_feed(checkpoint, two).await?;
/// assert_eq!(page.events.len(), 1);
/// assert_eq!(page.events[0].event.actor_id, b);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub trait EventFeed: EventStore {
    /// Up to `max` records stored after `after`, in feed order: the events, and apart the
    /// records that are not events.
    ///
    /// # Errors
    ///
    /// Infrastructure errors only; a page is never cut short silently (a shorter page than
    /// `max` means the feed ended there when it was read).
    fn read_feed(
        &self,
        after: FeedPosition,
        max: NonZeroUsize,
    ) -> impl Future<Output = Result<FeedPage, StoreError>> + Send;
}

impl<S: EventFeed + ?Sized> EventFeed for std::sync::Arc<S> {
    fn read_feed(
        &self,
        after: FeedPosition,
        max: NonZeroUsize,
    ) -> impl Future<Output = Result<FeedPage, StoreError>> + Send {
        (**self).read_feed(after, max)
    }
}
