//! How a caller waits for an actor's answer: [`reply_by`], and the [`YieldHint`] that tells it
//! whether yielding once before arming a timer pays.
//!
//! An idle actor's answer to a message that needs no I/O (a query of an active actor, a
//! command on the in-memory store) is usually ready by the caller's next turn: the send woke
//! the actor's task, which runs next on this worker. So the caller yields once and takes a
//! ready answer without arming a timer; registering and clearing one in tokio's timer wheel
//! cost about a third of a local query (see BENCHMARKS.md, `local_ask`). An answer that needs
//! the store's I/O (a command on JetStream) is never ready then, and the yield is a wasted
//! turn of the scheduler per message: the hint learns that from the answers themselves and
//! skips it, trying it again now and then.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};

/// After an answer that was not ready after the yield, how many messages skip the yield
/// before one tries it again.
const SKIP_AFTER_MISS: u32 = 64;

/// Whether yielding before waiting pays for one kind of message (commands, queries) of one
/// runtime: 0 while it does; otherwise the number of messages left that skip it.
///
/// Updated with plain loads and stores (no read-modify-write): concurrent callers may lose a
/// count, which only moves the next try a little.
#[derive(Debug, Default)]
pub(crate) struct YieldHint(AtomicU32);

impl YieldHint {
    /// Whether the next wait should yield first.
    pub(crate) fn should_yield(&self) -> bool {
        match self.0.load(Ordering::Relaxed) {
            0 => true,
            left => {
                self.0.store(left - 1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Takes note of whether the answer was ready after a yield.
    pub(crate) fn record(&self, ready: bool) {
        if !ready {
            self.0.store(SKIP_AFTER_MISS, Ordering::Relaxed);
        }
    }
}

/// Why no answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoAnswer {
    /// The deadline passed first.
    TimedOut,
    /// The actor dropped the message unanswered (it stopped).
    Dropped,
}

/// Waits for an answer until `deadline`: after one yield if `hint` says it pays (then without a
/// timer if the answer is ready), else with a timer at once.
pub(crate) async fn reply_by<T>(
    mut rx: oneshot::Receiver<T>,
    deadline: Instant,
    hint: &YieldHint,
) -> Result<T, NoAnswer> {
    if hint.should_yield() {
        tokio::task::yield_now().await;
        match rx.try_recv() {
            Ok(answer) => {
                hint.record(true);
                return Ok(answer);
            }
            // The receiver is spent: polling it again would panic.
            Err(oneshot::error::TryRecvError::Closed) => return Err(NoAnswer::Dropped),
            Err(oneshot::error::TryRecvError::Empty) => hint.record(false),
        }
    }
    match timeout_at(deadline, rx).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(NoAnswer::Dropped),
        Err(_) => Err(NoAnswer::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_skips_the_yield_for_a_while_then_tries_it_again() {
        let hint = YieldHint::default();
        assert!(hint.should_yield(), "yielding is tried first");
        hint.record(true);
        assert!(hint.should_yield(), "a ready answer keeps it");
        hint.record(false);
        let skipped = (0..SKIP_AFTER_MISS)
            .filter(|_| !hint.should_yield())
            .count();
        assert_eq!(skipped, SKIP_AFTER_MISS as usize);
        assert!(hint.should_yield(), "tried again after the skips");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_that_needs_io_teaches_the_hint_to_skip_the_yield() {
        let hint = YieldHint::default();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        // Answered by a task that waits first (as a store's I/O would): not ready after one
        // yield.
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let _ = tx.send(7);
        });
        assert_eq!(reply_by(rx, deadline, &hint).await, Ok(7));
        assert!(!hint.should_yield(), "the next waits skip the yield");
        // Answered at once (the actor runs on the caller's next turn): ready after the yield.
        let hint = YieldHint::default();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(8);
        });
        assert_eq!(reply_by(rx, deadline, &hint).await, Ok(8));
        assert!(hint.should_yield());
        // A message dropped unanswered is an error at once (not a panic of a spent
        // receiver, not a wait for the deadline), and teaches nothing.
        let (tx, rx) = oneshot::channel::<u8>();
        drop(tx);
        assert_eq!(reply_by(rx, deadline, &hint).await, Err(NoAnswer::Dropped));
        assert!(hint.should_yield());
        // Dropped while the caller waits with its timer.
        let hint = YieldHint::default();
        hint.record(false);
        let (tx, rx) = oneshot::channel::<u8>();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            drop(tx);
        });
        assert_eq!(reply_by(rx, deadline, &hint).await, Err(NoAnswer::Dropped));
        // Nothing comes: the deadline.
        let (_tx, rx) = oneshot::channel::<u8>();
        let soon = Instant::now() + std::time::Duration::from_millis(5);
        assert_eq!(reply_by(rx, soon, &hint).await, Err(NoAnswer::TimedOut));
    }
}
