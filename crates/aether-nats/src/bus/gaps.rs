//! [`GapCounter`]: how a receiver counts the live events it lost. Each bus numbers its events
//! per namespace (`Aether-Seq`); a jump in a sender's numbers for a namespace is the exact
//! count of events lost in between, whatever the cause (slow consumer, reconnect, restart).

use std::collections::HashMap;

use foldhash::fast::RandomState;

/// Senders one reader remembers at most. Every bus instance is a new sender (its origin id is
/// new at each start), so without a bound a long-lived reader would remember every publisher
/// that ever restarted.
pub(crate) const MAX_SENDERS: usize = 4096;

/// The last sequence number seen per (sender, namespace), for at most a fixed number of
/// senders: when a new one arrives with the table full, the sender heard from least recently
/// is forgotten (if it speaks again, its next event starts a new count, so losses in between
/// go uncounted). Looked up for every received event, hence a fast hash (the keys come from
/// the network, but the table is bounded).
pub(crate) struct GapCounter {
    senders: HashMap<Box<str>, Sender, RandomState>,
    max_senders: usize,
    /// Counts observations, to tell which sender was heard from least recently.
    clock: u64,
}

struct Sender {
    heard: u64,
    last: HashMap<Box<str>, u64, RandomState>,
}

impl Default for GapCounter {
    fn default() -> Self {
        Self::with_max_senders(MAX_SENDERS)
    }
}

impl GapCounter {
    pub(crate) fn with_max_senders(max_senders: usize) -> Self {
        Self {
            senders: HashMap::default(),
            max_senders: max_senders.max(1),
            clock: 0,
        }
    }

    /// Records `sequence` from `origin` in `namespace`; returns how many events were skipped.
    /// The first event seen from a sender starts its count (events before our subscription
    /// existed were not ours to receive); a repeated or older number (not expected from one
    /// connection) counts nothing.
    pub(crate) fn observe(&mut self, origin: &str, namespace: &str, sequence: u64) -> u64 {
        self.clock += 1;
        let sender = match self.senders.get_mut(origin) {
            Some(sender) => sender,
            None => {
                if self.senders.len() >= self.max_senders {
                    self.forget_least_recent();
                }
                self.senders.entry(origin.into()).or_insert(Sender {
                    heard: 0,
                    last: HashMap::default(),
                })
            }
        };
        sender.heard = self.clock;
        match sender.last.get_mut(namespace) {
            Some(last) => {
                let skipped = sequence.saturating_sub(*last).saturating_sub(1);
                *last = (*last).max(sequence);
                skipped
            }
            None => {
                sender.last.insert(namespace.into(), sequence);
                0
            }
        }
    }

    /// A scan, but only when a new sender finds the table full.
    fn forget_least_recent(&mut self) {
        let oldest = self
            .senders
            .iter()
            .min_by_key(|(_, sender)| sender.heard)
            .map(|(origin, _)| origin.clone());
        if let Some(origin) = oldest {
            self.senders.remove(&origin);
        }
    }

    #[cfg(test)]
    fn senders(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::GapCounter;

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
    fn the_sender_heard_from_least_recently_is_forgotten_when_the_table_is_full() {
        let mut gaps = GapCounter::with_max_senders(2);
        gaps.observe("a", "ns", 1);
        gaps.observe("b", "ns", 1);
        gaps.observe("a", "ns", 2); // a is now more recent than b
        assert_eq!(gaps.observe("c", "ns", 1), 0);
        assert_eq!(gaps.senders(), 2, "bounded");
        assert_eq!(
            gaps.observe("a", "ns", 4),
            1,
            "a was kept: its gap still counts"
        );
        assert_eq!(
            gaps.observe("b", "ns", 5),
            0,
            "b was forgotten: its next event starts a new count"
        );
        assert_eq!(gaps.senders(), 2);
        // c was least recent when b came back.
        assert_eq!(gaps.observe("c", "ns", 9), 0);
        assert_eq!(gaps.observe("b", "ns", 7), 1);
    }

    #[test]
    fn many_restarted_publishers_keep_the_table_bounded() {
        let mut gaps = GapCounter::with_max_senders(64);
        for restart in 0..1000 {
            gaps.observe(&format!("origin-{restart}"), "ns", 1);
            gaps.observe("steady", "ns", restart + 1);
        }
        assert_eq!(gaps.senders(), 64);
        assert_eq!(
            gaps.observe("steady", "ns", 1002),
            1,
            "a sender heard all along is never forgotten"
        );
    }
}
