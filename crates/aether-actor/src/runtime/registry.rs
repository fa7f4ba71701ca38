//! The registry of active actors: one slot per actor id, created under one lock so that
//! concurrent first messages activate an actor exactly once, and removed only by the actor's
//! own task, so that a new activation never overlaps the previous one.
//!
//! A slot is *open* (it has a mailbox sender) or *stopping* (its task closed the mailbox and
//! is draining it). Senders that meet a stopping slot, or a mailbox closed under them, wait
//! for the old task to end and try again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aether_core::ActorId;
use foldhash::fast::RandomState;
use tokio::sync::Notify;

use super::queue::{self, Receiver, Sender};

/// Shared between a slot and its actor task.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// Registry clock tick of the last message routed to the actor (for LRU).
    pub(crate) last_used: AtomicU64,
    /// Messages the actor has handled (stored by the actor after each one): the idle sweep
    /// compares it between sweeps, so no clock is read per message.
    pub(crate) activity: AtomicU64,
    /// The sweeper's own: `activity` at its last sweep, and how many sweeps in a row found it
    /// unchanged.
    seen_activity: AtomicU64,
    quiet_sweeps: AtomicU32,
    /// Already chosen for passivation by the active limit.
    pub(crate) evicting: AtomicBool,
    /// Save a snapshot when stopping, whatever the snapshot policy (a handoff: the next
    /// activation, on another node, then replays only what follows it).
    pub(crate) snapshot_on_stop: AtomicBool,
    /// The actor's task has ended and its slot is gone.
    done: AtomicBool,
    /// Wakes those waiting for `done`.
    finished: Notify,
}

impl Control {
    /// Waits until the actor's task has ended.
    pub(crate) async fn stopped(&self) {
        loop {
            let notified = self.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Called once, when the actor's task ends (after its slot is removed).
    pub(crate) fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.finished.notify_waiters();
    }
}

struct Slot<M, L> {
    generation: u64,
    tx: Option<Sender<M, L>>,
    control: Arc<Control>,
}

struct Slots<M, L> {
    /// foldhash with a random seed, as aether-core's own maps of actor ids.
    map: HashMap<ActorId, Slot<M, L>, RandomState>,
    next_generation: u64,
    /// Open slots not already asked to passivate by the active limit (what the limit counts).
    open: usize,
    closed: bool,
}

/// Where a message for an actor goes.
pub(crate) enum Route<M, L> {
    /// The actor's mailbox.
    Open(Sender<M, L>),
    /// The actor is stopping: wait until it has stopped, then route again.
    Stopping(Arc<Control>),
    /// A new slot was created: the caller must start its task with this, then send.
    Created(Sender<M, L>, NewActor<M, L>),
    /// The registry is shut down.
    Closed,
}

/// What a new actor task needs.
pub(crate) struct NewActor<M, L> {
    pub(crate) generation: u64,
    pub(crate) rx: Receiver<M, L>,
    pub(crate) control: Arc<Control>,
}

pub(crate) struct Registry<M, L> {
    slots: Mutex<Slots<M, L>>,
    clock: AtomicU64,
}

impl<M, L> Registry<M, L> {
    pub(crate) fn new() -> Self {
        Self {
            slots: Mutex::new(Slots {
                map: HashMap::default(),
                next_generation: 1,
                open: 0,
                closed: false,
            }),
            clock: AtomicU64::new(0),
        }
    }

    /// One idle sweep: asks every open actor that handled no message during the last
    /// `quiet_needed` sweep periods (its activity count unchanged across `quiet_needed + 1`
    /// sweeps) to passivate.
    pub(crate) fn sweep_idle(&self, quiet_needed: u32) {
        let slots = self.lock();
        for slot in slots.map.values() {
            let Some(tx) = &slot.tx else { continue };
            let control = &slot.control;
            let activity = control.activity.load(Ordering::Relaxed);
            if control.seen_activity.swap(activity, Ordering::Relaxed) != activity {
                control.quiet_sweeps.store(0, Ordering::Relaxed);
                continue;
            }
            let quiet = control
                .quiet_sweeps
                .load(Ordering::Relaxed)
                .saturating_add(1);
            control.quiet_sweeps.store(quiet, Ordering::Relaxed);
            if quiet >= quiet_needed {
                tx.request_stop();
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<M, L>> {
        // Nothing panics while holding the lock; a poisoned lock still holds consistent data.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds or creates the slot of `id`. Creating one beyond `max_active` open slots asks the
    /// least recently used open actors to passivate: the oldest sixteenth of the limit at once
    /// (at least one), so that the scan this takes is paid once per `max_active / 16`
    /// activations, not at every one.
    pub(crate) fn route(&self, id: &ActorId, capacity: usize, max_active: usize) -> Route<M, L> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut slots = self.lock();
        if slots.closed {
            return Route::Closed;
        }
        if let Some(slot) = slots.map.get(id) {
            // Only the LRU tick here: the actor stamps its activity after each message (a
            // clock read per message is the actor's, not every sender's under this lock).
            slot.control.last_used.store(tick, Ordering::Relaxed);
            return match &slot.tx {
                Some(tx) => Route::Open(tx.clone()),
                None => Route::Stopping(slot.control.clone()),
            };
        }
        if slots.open >= max_active {
            let evicted = evict_lru(&slots, max_active);
            slots.open -= evicted;
        }
        let (tx, rx) = queue::channel(capacity);
        let control = Arc::new(Control::default());
        control.last_used.store(tick, Ordering::Relaxed);
        // Not a count the actor can have: its first sweep sees a change, not a quiet period.
        control.seen_activity.store(u64::MAX, Ordering::Relaxed);
        let generation = slots.next_generation;
        slots.next_generation += 1;
        slots.open += 1;
        slots.map.insert(
            id.clone(),
            Slot {
                generation,
                tx: Some(tx.clone()),
                control: control.clone(),
            },
        );
        Route::Created(
            tx,
            NewActor {
                generation,
                rx,
                control,
            },
        )
    }

    /// The mailbox and control of `id` if it is active and open (stamped as used, as by
    /// [`route`](Self::route)); `None` if it is not active, stopping, or the registry is shut.
    pub(crate) fn open(&self, id: &ActorId) -> Option<(Sender<M, L>, Arc<Control>)> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let slots = self.lock();
        if slots.closed {
            return None;
        }
        let slot = slots.map.get(id)?;
        let tx = slot.tx.clone()?;
        slot.control.last_used.store(tick, Ordering::Relaxed);
        Some((tx, slot.control.clone()))
    }

    /// Called by the actor task: no new messages reach this generation of the actor; the
    /// mailbox is closed (messages already in it are still received).
    pub(crate) fn begin_stop(&self, id: &ActorId, generation: u64, rx: &mut Receiver<M, L>)
    where
        L: Default,
    {
        let mut slots = self.lock();
        let mut counted = false;
        if let Some(slot) = slots.map.get_mut(id)
            && slot.generation == generation
            && slot.tx.take().is_some()
        {
            counted = !slot.control.evicting.load(Ordering::Relaxed);
        }
        if counted {
            slots.open -= 1;
        }
        rx.close();
    }

    /// Called when the actor task ends: removes its slot (if still its own).
    pub(crate) fn remove(&self, id: &ActorId, generation: u64) {
        let mut slots = self.lock();
        if let Some(slot) = slots.map.get(id)
            && slot.generation == generation
        {
            if slot.tx.is_some() && !slot.control.evicting.load(Ordering::Relaxed) {
                slots.open -= 1;
            }
            slots.map.remove(id);
            // Give memory back after a wave of passivations (a map never shrinks by itself);
            // halving only below a quarter keeps this amortized O(1).
            let (len, capacity) = (slots.map.len(), slots.map.capacity());
            if capacity > 64 && len < capacity / 4 {
                slots.map.shrink_to(len * 2);
            }
        }
    }

    /// Refuses new slots, asks every actor to passivate, and returns what to wait for.
    pub(crate) fn close(&self) -> Vec<Arc<Control>> {
        let mut slots = self.lock();
        slots.closed = true;
        slots
            .map
            .values()
            .map(|slot| {
                if let Some(tx) = &slot.tx {
                    tx.request_stop();
                }
                slot.control.clone()
            })
            .collect()
    }

    /// Puts `message` into the mailbox of this very activation (`generation`) of `id`, if it is
    /// still open and has room; never activates an actor (timers use this: they die with their
    /// activation). Gives the message back otherwise.
    pub(crate) fn send_to(&self, id: &ActorId, generation: u64, message: M) -> Result<(), M> {
        let slots = self.lock();
        match slots.map.get(id) {
            Some(Slot {
                generation: g,
                tx: Some(tx),
                ..
            }) if *g == generation => tx.try_send(message).map_err(|e| match e {
                queue::TrySendError::Full(m) | queue::TrySendError::Closed(m) => m,
            }),
            _ => Err(message),
        }
    }

    /// Messages waiting in `id`'s mailbox, if it is active and open.
    pub(crate) fn mailbox_depth(&self, id: &ActorId) -> Option<usize> {
        let slots = self.lock();
        let tx = slots.map.get(id)?.tx.as_ref()?;
        Some(tx.len())
    }

    /// Asks every active actor whose id matches `which` to passivate (saving a snapshot as it
    /// stops if `snapshot`); returns their controls (to wait until they stopped).
    pub(crate) fn passivate_where(
        &self,
        which: impl Fn(&ActorId) -> bool,
        snapshot: bool,
    ) -> Vec<Arc<Control>> {
        let slots = self.lock();
        slots
            .map
            .iter()
            .filter(|(id, _)| which(id))
            .map(|(_, slot)| {
                if let Some(tx) = &slot.tx {
                    if snapshot {
                        slot.control.snapshot_on_stop.store(true, Ordering::Relaxed);
                    }
                    tx.request_stop();
                }
                slot.control.clone()
            })
            .collect()
    }

    /// Asks `id` to passivate if it is active; returns whether it was.
    pub(crate) fn passivate(&self, id: &ActorId) -> Option<Arc<Control>> {
        let slots = self.lock();
        slots.map.get(id).map(|slot| {
            if let Some(tx) = &slot.tx {
                tx.request_stop();
            }
            slot.control.clone()
        })
    }
}

/// Asks the least recently used open actors (a sixteenth of `max_active`, at least one) to
/// passivate; returns how many, which no longer count against the limit.
fn evict_lru<M, L>(slots: &Slots<M, L>, max_active: usize) -> usize {
    let batch = (max_active / 16).max(1);
    let mut candidates: Vec<(u64, &Slot<M, L>)> = slots
        .map
        .values()
        .filter(|s| s.tx.is_some() && !s.control.evicting.load(Ordering::Relaxed))
        .map(|s| (s.control.last_used.load(Ordering::Relaxed), s))
        .collect();
    if candidates.len() > batch {
        candidates.select_nth_unstable_by_key(batch - 1, |(used, _)| *used);
        candidates.truncate(batch);
    }
    for (_, slot) in &candidates {
        if let Some(tx) = &slot.tx {
            slot.control.evicting.store(true, Ordering::Relaxed);
            tx.request_stop();
        }
    }
    candidates.len()
}
