//! An actor's mailbox: a bounded FIFO for many senders and one receiver, which may lend the
//! queue a value (the actor's state) while it waits for a message, for senders to read.
//!
//! A `Mutex<VecDeque>` with two `Notify`s rather than `tokio::sync::mpsc`: an idle actor's
//! mailbox then costs about 150 bytes and no buffer at all while empty (tokio's bounded
//! channel allocates a cache-padded channel and a first block of 32 slots per actor, some
//! 800 bytes), at the price of a short uncontended lock per message.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

struct Queue<M, L> {
    state: Mutex<State<M, L>>,
    capacity: usize,
    /// Wakes the receiver when a message arrives or the queue closes.
    readable: Notify,
    /// Wakes a waiting sender when a message leaves or the queue closes.
    writable: Notify,
}

struct State<M, L> {
    items: VecDeque<M>,
    closed: bool,
    stop_requested: bool,
    /// What the receiver lent while it waits (see [`Receiver::recv_lending`]).
    lent: Option<L>,
}

impl<M, L> Queue<M, L> {
    fn lock(&self) -> MutexGuard<'_, State<M, L>> {
        // Nothing panics while holding the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a message was not queued; the message comes back.
pub(crate) enum TrySendError<M> {
    /// The queue holds `capacity` messages.
    Full(M),
    /// The receiver closed the queue.
    Closed(M),
}

/// What the receiver gets next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<M> {
    /// A message, in arrival order.
    Message(M),
    /// Someone asked the actor to stop (passivate); messages may still be queued.
    Stop,
}

/// The sending side (cloned freely).
pub(crate) struct Sender<M, L = ()>(Arc<Queue<M, L>>);

impl<M, L> Clone for Sender<M, L> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// The receiving side (the actor's task).
pub(crate) struct Receiver<M, L = ()>(Arc<Queue<M, L>>);

/// A mailbox of `capacity` (at least 1).
pub(crate) fn channel<M, L>(capacity: usize) -> (Sender<M, L>, Receiver<M, L>) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
            stop_requested: false,
            lent: None,
        }),
        capacity: capacity.max(1),
        readable: Notify::new(),
        writable: Notify::new(),
    });
    (Sender(queue.clone()), Receiver(queue))
}

impl<M, L> Sender<M, L> {
    /// Queues `message` if there is room and the queue is open.
    pub(crate) fn try_send(&self, message: M) -> Result<(), TrySendError<M>> {
        let queue = &self.0;
        {
            let mut state = queue.lock();
            if state.closed {
                return Err(TrySendError::Closed(message));
            }
            if state.items.len() >= queue.capacity {
                return Err(TrySendError::Full(message));
            }
            state.items.push_back(message);
        }
        queue.readable.notify_one();
        Ok(())
    }

    /// Queues `message`, waiting for room; gives it back if the queue is (or gets) closed.
    /// Cancel-safe in the sense that a cancelled call has queued nothing.
    pub(crate) async fn send_wait(&self, mut message: M) -> Result<(), M> {
        loop {
            let notified = self.0.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_send(message) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(back),
                Err(TrySendError::Full(back)) => message = back,
            }
            notified.await;
        }
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().items.len()
    }

    /// Asks the receiver to stop: its next `recv` answers [`Next::Stop`] (once).
    pub(crate) fn request_stop(&self) {
        self.0.lock().stop_requested = true;
        self.0.readable.notify_one();
    }

    /// Runs `read` on what the receiver lent, if it waits for a message with nothing queued
    /// (and no stop asked, the queue open): then `read` sees what the receiver would see
    /// handling a message sent now, and it cannot take a message or its value back meanwhile
    /// (`read` runs under the queue's lock, so it must be short). `None` otherwise.
    pub(crate) fn read_lent<T>(&self, read: impl FnOnce(&L) -> T) -> Option<T> {
        let state = self.0.lock();
        if !state.items.is_empty() || state.closed || state.stop_requested {
            return None;
        }
        state.lent.as_ref().map(read)
    }
}

impl<M, L: Default> Receiver<M, L> {
    /// The next message in order, or a stop request (first); `None` once the queue is closed
    /// and empty. Cancel-safe: a message is taken only in the poll that returns it.
    pub(crate) async fn recv(&mut self) -> Option<Next<M>> {
        self.next(None).await
    }

    /// [`recv`](Self::recv), lending `home`'s value to the queue while it waits for a message
    /// (for [`Sender::read_lent`]); the value is back in `home` when this returns (or is
    /// dropped). Whoever takes a message takes the value back under the same lock, so no
    /// reader sees it once a message is being handled.
    pub(crate) async fn recv_lending(&mut self, home: &mut L) -> Option<Next<M>> {
        self.next(Some(home)).await
    }

    async fn next(&mut self, home: Option<&mut L>) -> Option<Next<M>> {
        let queue = &self.0;
        let mut lending = Lending {
            queue,
            home,
            lent: false,
        };
        loop {
            let notified = queue.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = queue.lock();
                if std::mem::take(&mut state.stop_requested) {
                    lending.take_back(&mut state);
                    return Some(Next::Stop);
                }
                if let Some(message) = state.items.pop_front() {
                    lending.take_back(&mut state);
                    drop(state);
                    queue.writable.notify_one();
                    return Some(Next::Message(message));
                }
                if state.closed {
                    lending.take_back(&mut state);
                    return None;
                }
                lending.lend(&mut state);
            }
            notified.await;
        }
    }

    /// Refuses further messages; those already queued can still be received.
    pub(crate) fn close(&mut self) {
        self.0.lock().closed = true;
        self.0.writable.notify_waiters();
        self.0.readable.notify_one();
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().items.len()
    }
}

/// A receiver's value while the queue may hold it: given back when the wait ends, or when
/// the wait is dropped.
struct Lending<'a, M, L: Default> {
    queue: &'a Queue<M, L>,
    home: Option<&'a mut L>,
    lent: bool,
}

impl<M, L: Default> Lending<'_, M, L> {
    fn lend(&mut self, state: &mut State<M, L>) {
        if let Some(home) = self.home.as_deref_mut()
            && !self.lent
        {
            state.lent = Some(std::mem::take(home));
            self.lent = true;
        }
    }

    fn take_back(&mut self, state: &mut State<M, L>) {
        if self.lent {
            self.lent = false;
            if let (Some(home), Some(value)) = (self.home.as_deref_mut(), state.lent.take()) {
                *home = value;
            }
        }
    }
}

impl<M, L: Default> Drop for Lending<'_, M, L> {
    fn drop(&mut self) {
        if self.lent {
            let queue = self.queue;
            self.take_back(&mut queue.lock());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn fifo_bounded_and_closable() {
        let (tx, mut rx) = channel::<_, ()>(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!((tx.len(), rx.len()), (2, 2));
        assert_eq!(rx.recv().await, Some(Next::Message(1)));
        assert!(tx.try_send(3).is_ok());
        tx.request_stop();
        assert_eq!(rx.recv().await, Some(Next::Stop));
        rx.close();
        assert!(matches!(tx.try_send(4), Err(TrySendError::Closed(4))));
        assert_eq!(rx.recv().await, Some(Next::Message(2)));
        assert_eq!(rx.recv().await, Some(Next::Message(3)));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_room_or_its_message_back_on_close() {
        let (tx, mut rx) = channel::<_, ()>(1);
        tx.try_send(1).ok();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send_wait(2).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(rx.recv().await, Some(Next::Message(1)));
        assert!(waiting.await.unwrap().is_ok());
        assert_eq!(rx.recv().await, Some(Next::Message(2)));

        tx.try_send(3).ok();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send_wait(4).await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        rx.close();
        assert_eq!(waiting.await.unwrap(), Err(4));
        assert_eq!(rx.recv().await, Some(Next::Message(3)));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiting_receiver_lends_its_value_until_a_message_is_queued() {
        let (tx, mut rx) = channel::<u32, String>(4);
        let mut home = "state 1".to_owned();
        // Nothing lent before the receiver waits.
        assert_eq!(tx.read_lent(String::clone), None);
        {
            let waiting = rx.recv_lending(&mut home);
            tokio::pin!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            assert_eq!(tx.read_lent(String::clone).as_deref(), Some("state 1"));
            // A message queued: from now on it comes first, even before the receiver wakes.
            tx.try_send(7).ok().unwrap();
            assert_eq!(tx.read_lent(String::clone), None);
            assert_eq!(waiting.await, Some(Next::Message(7)));
        }
        assert_eq!(home, "state 1", "back home with the message");
        assert_eq!(
            tx.read_lent(String::clone),
            None,
            "nothing lent while handling"
        );
        // A wait that is dropped gives the value back too.
        {
            let waiting = rx.recv_lending(&mut home);
            tokio::pin!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            assert!(tx.read_lent(String::clone).is_some());
        }
        assert_eq!(home, "state 1");
        assert_eq!(tx.read_lent(String::clone), None);
        // Not read once a stop is asked or the queue is closed.
        {
            let waiting = rx.recv_lending(&mut home);
            tokio::pin!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            tx.request_stop();
            assert_eq!(tx.read_lent(String::clone), None);
            assert_eq!(waiting.await, Some(Next::Stop));
        }
        assert_eq!(home, "state 1");
        rx.close();
        assert_eq!(rx.recv_lending(&mut home).await, None);
        assert_eq!(home, "state 1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_lose_nothing_and_keep_each_senders_order() {
        let (tx, mut rx) = channel::<_, ()>(3);
        let senders: Vec<_> = (0..4u64)
            .map(|s| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..500u64 {
                        tx.send_wait((s, i)).await.ok().unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0u64; 4];
        for _ in 0..2000 {
            let Some(Next::Message((s, i))) = rx.recv().await else {
                panic!("a message")
            };
            assert_eq!(next[s as usize], i);
            next[s as usize] += 1;
        }
        for sender in senders {
            sender.await.unwrap();
        }
        assert_eq!(rx.len(), 0);
    }
}
