//! An actor's mailbox: a bounded FIFO for many senders and one receiver.
//!
//! A `Mutex<VecDeque>` with two `Notify`s rather than `tokio::sync::mpsc`: an idle actor's
//! mailbox then costs about 150 bytes and no buffer at all while empty (tokio's bounded
//! channel allocates a cache-padded channel and a first block of 32 slots per actor, some
//! 800 bytes), at the price of a short uncontended lock per message.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

struct Queue<M> {
    state: Mutex<State<M>>,
    capacity: usize,
    /// Wakes the receiver when a message arrives or the queue closes.
    readable: Notify,
    /// Wakes a waiting sender when a message leaves or the queue closes.
    writable: Notify,
}

struct State<M> {
    items: VecDeque<M>,
    closed: bool,
    stop_requested: bool,
}

impl<M> Queue<M> {
    fn lock(&self) -> MutexGuard<'_, State<M>> {
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
pub(crate) struct Sender<M>(Arc<Queue<M>>);

impl<M> Clone for Sender<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// The receiving side (the actor's task).
pub(crate) struct Receiver<M>(Arc<Queue<M>>);

/// A mailbox of `capacity` (at least 1).
pub(crate) fn channel<M>(capacity: usize) -> (Sender<M>, Receiver<M>) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
            stop_requested: false,
        }),
        capacity: capacity.max(1),
        readable: Notify::new(),
        writable: Notify::new(),
    });
    (Sender(queue.clone()), Receiver(queue))
}

impl<M> Sender<M> {
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
}

impl<M> Receiver<M> {
    /// The next message in order, or a stop request (first); `None` once the queue is closed
    /// and empty. Cancel-safe: a message is taken only in the poll that returns it.
    pub(crate) async fn recv(&mut self) -> Option<Next<M>> {
        let queue = &self.0;
        loop {
            let notified = queue.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = queue.lock();
                if std::mem::take(&mut state.stop_requested) {
                    return Some(Next::Stop);
                }
                if let Some(message) = state.items.pop_front() {
                    drop(state);
                    queue.writable.notify_one();
                    return Some(Next::Message(message));
                }
                if state.closed {
                    return None;
                }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn fifo_bounded_and_closable() {
        let (tx, mut rx) = channel(2);
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
        let (tx, mut rx) = channel(1);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_lose_nothing_and_keep_each_senders_order() {
        let (tx, mut rx) = channel(3);
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
