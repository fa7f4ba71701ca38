//! The index of an actor's recent commands (command id → stored outcome), rebuilt from the
//! events' `command_id` on replay and kept in snapshots; and the snapshot body.

use std::collections::{BTreeMap, HashMap, VecDeque};

use aether_core::{Event, Version};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{CommandId, VersionRange};

/// Metadata key of the reply, on the last event of a command.
pub(crate) const REPLY_KEY: &str = "aetherReply";

/// Metadata key of the reminder changes of a command, on its last event.
pub(crate) const REMINDERS_KEY: &str = "aetherReminders";

/// The reminders a command removed, then set (name → due, Unix milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ReminderChanges {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) unset: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) set: BTreeMap<String, u64>,
}

impl ReminderChanges {
    pub(crate) fn is_empty(&self) -> bool {
        self.unset.is_empty() && self.set.is_empty()
    }

    /// Applies the changes to a reminder table: removals first, then settings.
    pub(crate) fn apply_to(&self, table: &mut BTreeMap<String, u64>) {
        for name in &self.unset {
            table.remove(name);
        }
        for (name, due) in &self.set {
            table.insert(name.clone(), *due);
        }
    }

    /// The changes recorded on a replayed event, if any. A value that does not decode is
    /// ignored (the record was written by this runtime; nothing else writes the key).
    pub(crate) fn of(event: &Event) -> Option<Self> {
        serde_json::from_str(event.metadata.get(REMINDERS_KEY)?).ok()
    }
}

/// The stored outcome of one applied command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Applied {
    pub(crate) id: CommandId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) written: Option<VersionRange>,
    pub(crate) version: Version,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reply: Option<Value>,
}

/// The most recent `horizon` commands of one actor, oldest first. Allocated at the first
/// command: an actor that was only queried costs a pointer.
#[derive(Debug, Default)]
pub(crate) struct CommandIndex {
    horizon: usize,
    inner: Option<Box<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    order: VecDeque<CommandId>,
    entries: HashMap<CommandId, Applied>,
}

impl CommandIndex {
    pub(crate) fn new(horizon: usize) -> Self {
        Self {
            horizon,
            inner: None,
        }
    }

    pub(crate) fn get(&self, id: &CommandId) -> Option<&Applied> {
        self.inner.as_ref()?.entries.get(id)
    }

    pub(crate) fn insert(&mut self, applied: Applied) {
        let horizon = self.horizon;
        let inner = self.inner.get_or_insert_with(Box::default);
        if inner.entries.contains_key(&applied.id) {
            inner.order.retain(|id| id != &applied.id);
        }
        inner.order.push_back(applied.id.clone());
        inner.entries.insert(applied.id.clone(), applied);
        while inner.order.len() > horizon {
            if let Some(old) = inner.order.pop_front() {
                inner.entries.remove(&old);
            }
        }
    }

    /// Takes note of one replayed event: consecutive events with the same command id are one
    /// command (a decision is one atomic append); the reply sits on the last one.
    pub(crate) fn observe(&mut self, event: &Event) {
        let Some(id) = event
            .command_id
            .as_deref()
            .and_then(|c| CommandId::new(c).ok())
        else {
            return;
        };
        let reply = event
            .metadata
            .get(REPLY_KEY)
            .and_then(|r| serde_json::from_str(r).ok());
        if let Some(inner) = self.inner.as_mut()
            && inner.order.back() == Some(&id)
            && let Some(entry) = inner.entries.get_mut(&id)
            && let Some(written) = entry.written.as_mut()
        {
            written.last = event.version;
            entry.version = event.version;
            if reply.is_some() {
                entry.reply = reply;
            }
            return;
        }
        self.insert(Applied {
            id,
            written: Some(VersionRange {
                first: event.version,
                last: event.version,
            }),
            version: event.version,
            reply,
        });
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Applied> {
        self.inner
            .iter()
            .flat_map(|inner| inner.order.iter().filter_map(|id| inner.entries.get(id)))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |inner| inner.order.len())
    }
}

/// What an actor's snapshot holds: its state and its recent commands.
#[derive(Debug, Serialize)]
pub(crate) struct SnapshotBodyRef<'a, S> {
    pub(crate) state: &'a S,
    pub(crate) commands: Vec<&'a Applied>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reminders: Option<&'a BTreeMap<String, u64>>,
}

/// The decoded form of [`SnapshotBodyRef`].
#[derive(Debug, Deserialize)]
pub(crate) struct SnapshotBody<S> {
    pub(crate) state: S,
    #[serde(default)]
    pub(crate) commands: Vec<Applied>,
    #[serde(default)]
    pub(crate) reminders: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use aether_core::ActorId;

    use super::*;

    fn event(version: Version, command: Option<&str>, reply: Option<&str>) -> Event {
        let mut builder = Event::builder(ActorId::new("a").unwrap(), "T").version(version);
        if let Some(c) = command {
            builder = builder.command_id(c);
        }
        if let Some(r) = reply {
            builder = builder.metadata(REPLY_KEY, r);
        }
        builder.build()
    }

    #[test]
    fn replay_groups_consecutive_events_of_one_command() {
        let mut index = CommandIndex::new(10);
        index.observe(&event(1, Some("c1"), None));
        index.observe(&event(2, Some("c1"), Some("7")));
        index.observe(&event(3, None, None));
        index.observe(&event(4, Some("c2"), Some("\"x\"")));
        let c1 = index.get(&CommandId::new("c1").unwrap()).unwrap();
        assert_eq!(c1.written, Some(VersionRange { first: 1, last: 2 }));
        assert_eq!(c1.reply, Some(serde_json::json!(7)));
        let c2 = index.get(&CommandId::new("c2").unwrap()).unwrap();
        assert_eq!(c2.written, Some(VersionRange { first: 4, last: 4 }));
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn keeps_only_the_horizon() {
        let mut index = CommandIndex::new(3);
        for v in 1..=5 {
            index.observe(&event(v, Some(&format!("c{v}")), Some("null")));
        }
        assert_eq!(index.len(), 3);
        assert!(index.get(&CommandId::new("c2").unwrap()).is_none());
        assert!(index.get(&CommandId::new("c3").unwrap()).is_some());
        let ids: Vec<_> = index.entries().map(|a| a.id.to_string()).collect();
        assert_eq!(ids, ["c3", "c4", "c5"]);
    }
}
