//! [`GapCounter`]: how a receiver counts the live events it lost. Each bus numbers its events
//! per namespace (`Aether-Seq`); a jump in a sender's numbers for a namespace is the exact
//! count of events lost in between, whatever the cause (slow consumer, reconnect, restart).
//!
//! The numbers and origin ids come from message headers, which anyone allowed to publish on an
//! event subject can forge. Forged headers may skew the count of the sender they imitate, but
//! they cannot break the counter itself:
//!
//! - **No absurd jumps.** A jump of more than [`MAX_GAP`] numbers is not a loss that happened
//!   (no subscription loses four billion events of one sender between two it received): it
//!   counts nothing and is ignored, so the sender's count stays where it was and later genuine
//!   numbers are still counted. A gap is therefore at most `MAX_GAP`, and the `lost` counter it
//!   feeds saturates rather than wrapping.
//! - **Bounded memory.** At most [`MAX_PAIRS`] (sender, namespace) pairs are remembered,
//!   however many origin ids or namespaces arrive.
//! - **Constant work per message.** One or two hash lookups; forgetting old pairs costs, spread
//!   over the insertions that filled the table, one entry per insertion — never a scan per
//!   message, however many random origin ids arrive.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use foldhash::fast::RandomState;

/// Largest jump in a sender's numbers that is counted as lost events (2³²). Larger jumps are
/// forged or corrupted numbers and are ignored.
pub(crate) const MAX_GAP: u64 = 1 << 32;

/// (sender, namespace) pairs remembered in one generation of the table; two generations at
/// most, so [`MAX_PAIRS`] in all.
const GENERATION: usize = 16_384;

/// Most (sender, namespace) pairs one reader remembers. Every bus instance is a new sender (its
/// origin id is new at each start), so without a bound a long-lived reader would remember every
/// publisher that ever restarted, and a forger every origin id it made up.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const MAX_PAIRS: usize = 2 * GENERATION;

/// The last sequence number seen per (sender, namespace), in two generations: new pairs go into
/// the current one; when it is full it becomes the previous one and the previous one is
/// forgotten. A pair found in the previous generation moves back into the current one, so a
/// pair heard from since the last `generation` new pairs arrived is always remembered; a
/// forgotten one that speaks again starts a new count (losses in between go uncounted).
/// Looked up by `(&str, &str)` without building a key, so a lookup allocates nothing.
pub(crate) struct GapCounter {
    current: HashMap<Pair, u64, RandomState>,
    previous: HashMap<Pair, u64, RandomState>,
    generation: usize,
    /// Table entries touched (looked up, moved or forgotten), for complexity tests.
    #[cfg(test)]
    work: u64,
}

impl Default for GapCounter {
    fn default() -> Self {
        Self::with_generation(GENERATION)
    }
}

impl GapCounter {
    pub(crate) fn with_generation(generation: usize) -> Self {
        Self {
            current: HashMap::default(),
            previous: HashMap::default(),
            generation: generation.max(1),
            #[cfg(test)]
            work: 0,
        }
    }

    /// Records `sequence` from `origin` in `namespace`; returns how many events were skipped
    /// (at most [`MAX_GAP`]). The first event seen from a sender in a namespace starts its
    /// count (events before our subscription existed were not ours to receive); a repeated or
    /// older number (not expected from one connection) counts nothing; a jump of more than
    /// `MAX_GAP` counts nothing and is ignored.
    pub(crate) fn observe(&mut self, origin: &str, namespace: &str, sequence: u64) -> u64 {
        let key: &dyn Key = &(origin, namespace);
        self.touch(1);
        if let Some(last) = self.current.get_mut(key) {
            return advance(last, sequence);
        }
        self.touch(1);
        if let Some((pair, mut last)) = self.previous.remove_entry(key) {
            let skipped = advance(&mut last, sequence);
            self.insert(pair, last);
            return skipped;
        }
        // A first sighting starts the count, whatever the number.
        let pair = Pair {
            origin: origin.into(),
            namespace: namespace.into(),
        };
        self.insert(pair, sequence);
        0
    }

    fn insert(&mut self, pair: Pair, last: u64) {
        if self.current.len() >= self.generation {
            let full = std::mem::take(&mut self.current);
            self.touch(self.previous.len() as u64);
            self.previous = full;
        }
        self.current.insert(pair, last);
    }

    #[cfg(test)]
    fn touch(&mut self, entries: u64) {
        self.work += entries;
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn touch(&mut self, _entries: u64) {}

    #[cfg(test)]
    fn pairs(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// A stored (sender, namespace) key.
#[derive(PartialEq, Eq, Hash)]
struct Pair {
    origin: Box<str>,
    namespace: Box<str>,
}

/// What a [`Pair`] and a borrowed `(&str, &str)` have in common, so that the table can be
/// searched with the borrowed form. Hashes and compares exactly as `Pair`'s derived impls do
/// (field by field; a `str` hash ends with a terminator, so ("a b", "c") and ("a", "b c")
/// differ).
trait Key {
    fn origin(&self) -> &str;
    fn namespace(&self) -> &str;
}

impl Key for Pair {
    fn origin(&self) -> &str {
        &self.origin
    }
    fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl Key for (&str, &str) {
    fn origin(&self) -> &str {
        self.0
    }
    fn namespace(&self) -> &str {
        self.1
    }
}

impl<'a> Borrow<dyn Key + 'a> for Pair {
    fn borrow(&self) -> &(dyn Key + 'a) {
        self
    }
}

impl Hash for dyn Key + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `Pair`'s derived `Hash`: `Box<str>` hashes as its `str`.
        self.origin().hash(state);
        self.namespace().hash(state);
    }
}

impl PartialEq for dyn Key + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.origin() == other.origin() && self.namespace() == other.namespace()
    }
}

impl Eq for dyn Key + '_ {}

/// Moves a sender's count to `sequence`; returns the events skipped.
fn advance(last: &mut u64, sequence: u64) -> u64 {
    if sequence <= *last {
        return 0; // a repeat or an old number: not a loss
    }
    let skipped = sequence - *last - 1;
    if skipped > MAX_GAP {
        return 0; // forged or corrupted: ignored, the count stays where it was
    }
    *last = sequence;
    skipped
}

#[cfg(test)]
mod tests {
    use super::{GapCounter, MAX_GAP, MAX_PAIRS};

    #[test]
    fn gaps_are_counted_per_sender_and_namespace() {
        let mut gaps = GapCounter::default();
        assert_eq!(
            gaps.observe("a", "ns", 5),
            0,
            "first sight starts the count"
        );
        assert_eq!(gaps.observe("a", "ns", 6), 0);
        assert_eq!(gaps.observe("a", "ns", 9), 2);
        assert_eq!(gaps.observe("a", "other", 1), 0);
        assert_eq!(gaps.observe("b", "ns", 1), 0);
        assert_eq!(gaps.observe("a", "ns", 9), 0, "a repeat is not a loss");
        assert_eq!(gaps.observe("a", "ns", 7), 0, "nor is an old number");
        assert_eq!(gaps.observe("a", "ns", 10), 0);
    }

    #[test]
    fn keys_do_not_mix_senders_and_namespaces() {
        // Origins are arbitrary header text: no split of "a.bc" may alias another.
        let mut gaps = GapCounter::default();
        gaps.observe("a.b", "c", 1);
        for (origin, namespace) in [("a", "b.c"), ("ab", "c"), ("a.bc", "x")] {
            assert_eq!(
                gaps.observe(origin, namespace, 5),
                0,
                "({origin}, {namespace}) starts its own count"
            );
        }
        assert_eq!(gaps.observe("a.b", "c", 3), 1);
        assert_eq!(gaps.observe("a", "b.c", 6), 0);
        assert_eq!(gaps.observe("ab", "c", 7), 1);
    }

    #[test]
    fn a_forged_number_near_the_top_neither_counts_nor_wraps() {
        let mut gaps = GapCounter::default();
        gaps.observe("a", "ns", 1);
        let mut lost = 0u64;
        for forged in [u64::MAX, u64::MAX - 1, 1 << 63, 2 + MAX_GAP + 1] {
            let skipped = gaps.observe("a", "ns", forged);
            assert_eq!(skipped, 0, "a jump to {forged} is no loss");
            lost = lost.checked_add(skipped).expect("lost never wraps");
        }
        assert_eq!(
            gaps.observe("a", "ns", 3),
            1,
            "the sender's count stayed where it was: its next genuine gap still counts"
        );
        assert_eq!(
            gaps.observe("a", "ns", 4 + MAX_GAP),
            MAX_GAP,
            "the largest counted gap"
        );
        // A forged first sighting starts the count and nothing more.
        assert_eq!(gaps.observe("b", "ns", u64::MAX), 0);
        assert_eq!(gaps.observe("b", "ns", u64::MAX), 0);
    }

    #[test]
    fn the_table_is_bounded_in_senders_and_namespaces() {
        let mut gaps = GapCounter::default();
        for i in 0..(3 * MAX_PAIRS as u64) {
            // One forger, ever new namespaces; then ever new origins in one namespace.
            gaps.observe("forger", &format!("ns-{i}"), 1);
            gaps.observe(&format!("origin-{i}"), "ns", 1);
            assert!(gaps.pairs() <= MAX_PAIRS, "{} pairs", gaps.pairs());
        }
    }

    #[test]
    fn a_sender_heard_recently_is_remembered_and_a_silent_one_forgotten() {
        let mut gaps = GapCounter::with_generation(2);
        gaps.observe("a", "ns", 1);
        gaps.observe("b", "ns", 1);
        gaps.observe("c", "ns", 1); // a and b move to the previous generation
        assert_eq!(gaps.observe("a", "ns", 3), 1, "a is still remembered");
        gaps.observe("d", "ns", 1); // current was {c, a}: b is forgotten
        assert_eq!(
            gaps.observe("b", "ns", 5),
            0,
            "b was forgotten: its next event starts a new count"
        );
        assert_eq!(gaps.observe("b", "ns", 7), 1);
        assert!(gaps.pairs() <= 4);
    }

    #[test]
    fn many_restarted_publishers_keep_the_table_bounded() {
        let mut gaps = GapCounter::with_generation(32);
        for restart in 0..1000 {
            gaps.observe(&format!("origin-{restart}"), "ns", 1);
            gaps.observe("steady", "ns", restart + 1);
        }
        assert!(gaps.pairs() <= 64);
        assert_eq!(
            gaps.observe("steady", "ns", 1002),
            1,
            "a sender heard all along is never forgotten"
        );
    }

    #[test]
    fn random_origins_cost_constant_work_per_message() {
        // Every message from a new origin, with the table full: the work per message must not
        // grow with the table. Counted in entries touched, not in time.
        let mut small = GapCounter::with_generation(64);
        let mut large = GapCounter::default();
        let messages = 4 * MAX_PAIRS as u64;
        for gaps in [&mut small, &mut large] {
            for i in 0..messages {
                gaps.observe(&format!("random-{i}"), "ns", 1);
            }
        }
        for (gaps, what) in [(&small, "64 per generation"), (&large, "default")] {
            let per_message = gaps.work as f64 / messages as f64;
            assert!(
                per_message <= 3.0,
                "{what}: {per_message:.1} entries touched per message"
            );
        }
    }
}
