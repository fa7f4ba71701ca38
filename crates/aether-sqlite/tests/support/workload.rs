//! The fault tests' workload: deterministic events (so a checker can tell exactly what each
//! stored event must be), a writer that acknowledges each save on a line of its own, and the
//! check of a reopened store against the acknowledgements.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::num::NonZeroUsize;

use aether_core::{
    ActorId, Event, EventFeed, EventId, EventStore, FeedPosition, SaveOutcome, Version,
};
use aether_sqlite::SqliteEventStore;

/// Actors written concurrently (their saves share commits).
pub(crate) const ACTORS: usize = 4;

/// A small xorshift generator: no dependency, seeded by the caller.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A seed that differs between runs and processes.
    pub(crate) fn seed() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(crate) fn actor(index: usize) -> ActorId {
    ActorId::new(format!("acct-{index}")).expect("valid actor id")
}

fn event_id(actor: usize, version: Version) -> EventId {
    EventId::new(format!("a{actor}-v{version}")).expect("valid event id")
}

/// The padding of event `version` of `actor`: mixed sizes, from none to several pages
/// (overflow pages), with content that depends on the event.
fn pad(actor: usize, version: Version) -> String {
    let h = (actor as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version.wrapping_mul(31);
    let len = [0, 40, 700, 5_000, 20_000][(h % 5) as usize];
    let c = char::from(b'a' + (h % 26) as u8);
    std::iter::repeat_n(c, len).collect()
}

/// Event `version` of `actor`, in the batch of versions `first..=last`: everything the
/// checker compares is a function of these.
pub(crate) fn event(actor_index: usize, version: Version, first: Version, last: Version) -> Event {
    let mut data = serde_json::Map::new();
    data.insert("first".into(), first.into());
    data.insert("last".into(), last.into());
    data.insert("pad".into(), pad(actor_index, version).into());
    Event::builder(actor(actor_index), "Written")
        .id(event_id(actor_index, version))
        .version(version)
        .data_object(data)
        .build()
}

/// The batch of `len` events of `actor` after version `current`.
pub(crate) fn batch(actor: usize, current: Version, len: u64) -> Vec<Event> {
    let (first, last) = (current + 1, current + len);
    (first..=last)
        .map(|v| event(actor, v, first, last))
        .collect()
}

/// A batch length: mostly short, sometimes single, sometimes long.
pub(crate) fn batch_len(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0..=2 => 1,
        3..=8 => 2 + rng.below(5),
        _ => 10 + rng.below(15),
    }
}

/// One acknowledged save, as written on the child's stdout: `ack <actor> <first> <last>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ack {
    pub(crate) actor: usize,
    pub(crate) first: Version,
    pub(crate) last: Version,
}

impl Ack {
    pub(crate) fn line(&self) -> String {
        format!("ack {} {} {}", self.actor, self.first, self.last)
    }

    pub(crate) fn parse(line: &str) -> Option<Self> {
        let mut words = line.strip_prefix("ack ")?.split(' ');
        let ack = Self {
            actor: words.next()?.parse().ok()?,
            first: words.next()?.parse().ok()?,
            last: words.next()?.parse().ok()?,
        };
        words.next().is_none().then_some(ack)
    }
}

/// Writes `actor`'s batches forever (one save at a time, continuing from the stored head),
/// passing each acknowledgement to `acknowledge` before the next save starts.
pub(crate) async fn write_forever(
    store: SqliteEventStore,
    actor_index: usize,
    seed: u64,
    mut acknowledge: impl FnMut(Ack),
) {
    let mut rng = Rng::new(seed);
    let id = actor(actor_index);
    let mut current = store.latest_version(&id).await.expect("read the head");
    loop {
        let len = batch_len(&mut rng);
        let events = batch(actor_index, current, len);
        let outcome = if len == 1 {
            store
                .save_event(events.into_iter().next().expect("one event"))
                .await
        } else {
            store.save_events(events).await
        };
        match outcome {
            Ok(SaveOutcome::Saved) => {}
            other => panic!("save of {id} after {current} answered {other:?}"),
        }
        acknowledge(Ack {
            actor: actor_index,
            first: current + 1,
            last: current + len,
        });
        current += len;
    }
}

/// Writes `ack` on stdout, flushed: one line.
pub(crate) fn print_ack(ack: Ack) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", ack.line()).expect("write the ack");
    out.flush().expect("flush the ack");
}

/// What the acknowledgements say must be stored: per actor, the acknowledged batches.
#[derive(Debug, Default, Clone)]
pub(crate) struct Acked {
    pub(crate) batches: BTreeMap<usize, Vec<(Version, Version)>>,
    pub(crate) count: usize,
}

impl Acked {
    pub(crate) fn add(&mut self, ack: Ack) {
        self.batches
            .entry(ack.actor)
            .or_default()
            .push((ack.first, ack.last));
        self.count += 1;
    }

    /// The highest acknowledged version of `actor`.
    pub(crate) fn head(&self, actor: usize) -> Version {
        self.batches
            .get(&actor)
            .and_then(|b| b.iter().map(|(_, last)| *last).max())
            .unwrap_or(0)
    }
}

/// Checks a reopened store against the acknowledgements: for every actor, its events are
/// versions `1..=n` with no gap, each exactly the event written at that version; they tile
/// into whole batches (the last batch stored is complete: no batch is partly stored); every
/// acknowledged batch is one of them at the versions acknowledged; and the feed holds every
/// event exactly once. Returns the number of events checked.
pub(crate) async fn check(store: &SqliteEventStore, acked: &Acked) -> usize {
    let checked = check_stored(store, acked).await;
    assert!(
        checked.missing.is_empty(),
        "acknowledged batches not stored: {:?}",
        checked.missing
    );
    checked.events
}

/// What [`check_stored`] found.
pub(crate) struct Checked {
    /// Events checked.
    pub(crate) events: usize,
    /// The acknowledged batches not stored: actor, first and last version.
    pub(crate) missing: Vec<(ActorId, Version, Version)>,
}

/// As [`check`], but counting the acknowledged batches that are not stored instead of
/// failing on them; everything else is checked as there.
pub(crate) async fn check_stored(store: &SqliteEventStore, acked: &Acked) -> Checked {
    let mut total = 0;
    let mut missing = Vec::new();
    for index in 0..ACTORS {
        let id = actor(index);
        let replay = store
            .events_with_errors(&id, 1)
            .await
            .expect("replay after reopen");
        assert!(
            replay.errors.is_empty(),
            "{id}: records that are not events: {:?}",
            replay.errors
        );
        let events = replay.events;
        let n = events.len() as Version;
        for (i, stored) in events.iter().enumerate() {
            assert_eq!(
                stored.version,
                i as Version + 1,
                "{id}: versions not contiguous"
            );
        }
        assert_eq!(
            store.latest_version(&id).await.expect("head"),
            n,
            "{id}: head"
        );
        // Walk the batches: each starts where the previous ended and is whole.
        let mut stored_batches = HashSet::new();
        let mut v = 1;
        while v <= n {
            let data = &events[(v - 1) as usize].data;
            let first = data["first"].as_u64().expect("first");
            let last = data["last"].as_u64().expect("last");
            assert_eq!(first, v, "{id}: version {v} is not the start of its batch");
            assert!(
                last <= n,
                "{id}: batch {first}..={last} partly stored (versions up to {n})"
            );
            for version in first..=last {
                let expected = event(index, version, first, last);
                let got = &events[(version - 1) as usize];
                assert_eq!(got.id, expected.id, "{id} v{version}: id");
                assert_eq!(got.data, expected.data, "{id} v{version}: data");
            }
            stored_batches.insert((first, last));
            v = last + 1;
        }
        for batch in acked.batches.get(&index).into_iter().flatten() {
            if !stored_batches.contains(batch) {
                missing.push((id.clone(), batch.0, batch.1));
                if batch.1 <= n {
                    // Stored, but not as the batch acknowledged: never acceptable.
                    panic!("{id}: acknowledged batch {batch:?} is not stored as one batch");
                }
            }
        }
        total += events.len();
    }
    // The feed: every event once, nothing else.
    let mut seen = HashSet::new();
    let mut after = FeedPosition::START;
    loop {
        let page = store
            .read_feed(after, NonZeroUsize::new(500).expect("non-zero"))
            .await
            .expect("read the feed");
        assert!(page.errors.is_empty(), "feed errors: {:?}", page.errors);
        if page.is_empty() {
            break;
        }
        for fed in &page.events {
            assert!(
                seen.insert(fed.event.id.clone()),
                "{} twice in the feed",
                fed.event.id
            );
        }
        after = page.next;
    }
    assert_eq!(
        seen.len(),
        total,
        "the feed holds {} events, the actors {total}",
        seen.len()
    );
    Checked {
        events: total,
        missing,
    }
}
