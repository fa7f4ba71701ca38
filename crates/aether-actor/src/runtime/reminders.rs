//! The runtime's reminder scheduler: which actors have reminders, due when — kept after they
//! passivate, so that one task per runtime can wake (activate) an actor whose reminder is due.
//!
//! An actor registers its whole reminder table when it activates and whenever the table
//! changes; the scheduler takes due entries out and delivers them as
//! `Envelope::Reminder`, after which the actor registers what it still has.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use aether_core::ActorId;
use tokio::sync::Notify;

/// An actor's reminders: name → due time in Unix milliseconds.
pub(crate) type Table = BTreeMap<String, u64>;

#[derive(Default)]
struct Due {
    queue: BTreeSet<(u64, ActorId, String)>,
    by_actor: HashMap<ActorId, Table>,
}

#[derive(Default)]
pub(crate) struct Reminders {
    due: Mutex<Due>,
    /// Wakes the scheduler when an earlier reminder is registered.
    pub(crate) changed: Notify,
}

/// Unix time in milliseconds (reminders are persisted, so their due times are wall-clock).
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Reminders {
    fn lock(&self) -> MutexGuard<'_, Due> {
        self.due.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces what the scheduler knows of `id`'s reminders by `table`. Returns true if it
    /// holds any reminder at all (so the scheduler task must run).
    pub(crate) fn register(&self, id: &ActorId, table: &Table) -> bool {
        let mut due = self.lock();
        let Due { queue, by_actor } = &mut *due;
        if let Some(old) = by_actor.remove(id) {
            for (name, at) in old {
                queue.remove(&(at, id.clone(), name));
            }
        }
        let earliest_before = queue.first().map(|(at, _, _)| *at);
        if !table.is_empty() {
            for (name, at) in table {
                queue.insert((*at, id.clone(), name.clone()));
            }
            by_actor.insert(id.clone(), table.clone());
        }
        let earliest_now = queue.first().map(|(at, _, _)| *at);
        let any = !queue.is_empty();
        drop(due);
        if earliest_now.is_some() && earliest_now != earliest_before {
            self.changed.notify_one();
        }
        any
    }

    /// Takes out the reminders due at `now`; returns them and the next due time.
    pub(crate) fn take_due(&self, now: u64) -> (Vec<(ActorId, String, u64)>, Option<u64>) {
        let mut due = self.lock();
        let Due { queue, by_actor } = &mut *due;
        let mut taken = Vec::new();
        while let Some((at, _, _)) = queue.first()
            && *at <= now
        {
            let Some((at, id, name)) = queue.pop_first() else {
                break;
            };
            if let Some(table) = by_actor.get_mut(&id) {
                table.remove(&name);
                if table.is_empty() {
                    by_actor.remove(&id);
                }
            }
            taken.push((id, name, at));
        }
        (taken, queue.first().map(|(at, _, _)| *at))
    }

    /// Puts back a reminder that could not be delivered, due again at `at`.
    pub(crate) fn retry(&self, id: ActorId, name: String, at: u64) {
        let mut due = self.lock();
        due.by_actor
            .entry(id.clone())
            .or_default()
            .insert(name.clone(), at);
        due.queue.insert((at, id, name));
        drop(due);
        self.changed.notify_one();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ActorId {
        ActorId::new(s).unwrap()
    }

    #[test]
    fn register_replaces_and_take_due_takes_in_order() {
        let reminders = Reminders::default();
        let table: Table = [("a".to_owned(), 30), ("b".to_owned(), 10)].into();
        assert!(reminders.register(&id("x"), &table));
        let other: Table = [("a".to_owned(), 20)].into();
        reminders.register(&id("y"), &other);
        assert_eq!(reminders.len(), 3);
        let (taken, next) = reminders.take_due(20);
        assert_eq!(
            taken,
            [(id("x"), "b".to_owned(), 10), (id("y"), "a".to_owned(), 20)]
        );
        assert_eq!(next, Some(30));
        // x re-registers a smaller table: its old entries go.
        assert!(!reminders.register(&id("x"), &Table::new()));
        assert_eq!(reminders.take_due(u64::MAX), (vec![], None));
        reminders.retry(id("z"), "c".into(), 5);
        assert_eq!(reminders.take_due(5).0, [(id("z"), "c".to_owned(), 5)]);
    }
}
