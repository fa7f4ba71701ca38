//! The index of an actor's recent commands (command id → stored outcome), rebuilt from the
//! events' `command_id` on replay and kept in snapshots; and the snapshot body.

use std::collections::{BTreeMap, HashMap, VecDeque};

use foldhash::fast::RandomState;

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
///
/// In a snapshot it is written compactly, as an array `[id, version, events, reply]`: the
/// command wrote the `events` versions ending at `version` (none: 0), and `reply` is the
/// reply's JSON text (as stored in the last event's metadata), or `null`. Snapshots written
/// before this form hold objects (`{"id", "written": {"first", "last"}, "version",
/// "reply": <JSON value>}`), which still decode.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Applied {
    pub(crate) id: CommandId,
    pub(crate) written: Option<VersionRange>,
    pub(crate) version: Version,
    /// The reply as JSON text: kept as stored, decoded only to answer a duplicate.
    pub(crate) reply: Option<Box<str>>,
}

/// The object form of [`Applied`] in snapshots written before the compact form.
#[derive(Serialize, Deserialize)]
struct AppliedObject {
    id: CommandId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written: Option<VersionRange>,
    version: Version,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply: Option<Value>,
}

impl Applied {
    /// How many versions the command wrote, when they end at `version` (what the runtime
    /// records); `None` for any other shape, which is written in the object form.
    fn compact_count(&self) -> Option<u64> {
        match self.written {
            None => Some(0),
            Some(range) if range.last == self.version && !range.is_empty() => Some(range.len()),
            Some(_) => None,
        }
    }
}

impl Serialize for Applied {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        use serde::ser::{Error as _, SerializeTuple as _};
        let Some(count) = self.compact_count() else {
            let reply = match self.reply.as_deref() {
                Some(text) => Some(serde_json::from_str(text).map_err(Se::Error::custom)?),
                None => None,
            };
            return AppliedObject {
                id: self.id.clone(),
                written: self.written,
                version: self.version,
                reply,
            }
            .serialize(serializer);
        };
        let mut tuple = serializer.serialize_tuple(4)?;
        tuple.serialize_element(self.id.as_str())?;
        tuple.serialize_element(&self.version)?;
        tuple.serialize_element(&count)?;
        tuple.serialize_element(&self.reply)?;
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Applied {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AppliedVisitor)
    }
}

struct AppliedVisitor;

impl<'de> serde::de::Visitor<'de> for AppliedVisitor {
    type Value = Applied;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a command outcome: [id, version, events, reply] or an object")
    }

    fn visit_seq<Acc: serde::de::SeqAccess<'de>>(
        self,
        mut seq: Acc,
    ) -> Result<Applied, Acc::Error> {
        use serde::de::Error as _;
        let missing = |i| Acc::Error::invalid_length(i, &self);
        let id: CommandId = seq.next_element()?.ok_or_else(|| missing(0))?;
        let version: Version = seq.next_element()?.ok_or_else(|| missing(1))?;
        let count: u64 = seq.next_element()?.ok_or_else(|| missing(2))?;
        let reply: Option<String> = seq.next_element()?.ok_or_else(|| missing(3))?;
        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(Acc::Error::invalid_length(5, &self));
        }
        let written = match count {
            0 => None,
            n if n <= version => Some(VersionRange {
                first: version - n + 1,
                last: version,
            }),
            n => {
                return Err(Acc::Error::custom(format_args!(
                    "{n} events cannot end at version {version}"
                )));
            }
        };
        Ok(Applied {
            id,
            written,
            version,
            reply: reply.map(String::into_boxed_str),
        })
    }

    fn visit_map<Acc: serde::de::MapAccess<'de>>(self, map: Acc) -> Result<Applied, Acc::Error> {
        let object = AppliedObject::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Applied {
            id: object.id,
            written: object.written,
            version: object.version,
            reply: object.reply.map(|v| v.to_string().into_boxed_str()),
        })
    }
}

/// How many commands the index first makes room for (the most a map of 8 slots holds).
const FIRST_CAPACITY: usize = 7;

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
    /// foldhash, not SipHash: ids come from callers, but the map holds at most `horizon`
    /// entries, so even a crafted set of colliding ids costs one actor a bounded scan.
    entries: HashMap<CommandId, Applied, RandomState>,
}

impl CommandIndex {
    pub(crate) fn new(horizon: usize) -> Self {
        Self {
            horizon,
            inner: None,
        }
    }

    /// The index of a snapshot's commands (oldest first): the last `horizon` of them, in
    /// maps sized once.
    pub(crate) fn from_snapshot(horizon: usize, commands: Vec<Applied>) -> Self {
        let mut index = Self::new(horizon);
        if commands.is_empty() {
            return index;
        }
        let skip = commands.len().saturating_sub(horizon);
        let capacity = commands.len() - skip;
        index.inner = Some(Box::new(Entries {
            order: VecDeque::with_capacity(capacity),
            entries: HashMap::with_capacity_and_hasher(capacity, RandomState::default()),
        }));
        for applied in commands.into_iter().skip(skip) {
            index.insert(applied);
        }
        index
    }

    pub(crate) fn get(&self, id: &CommandId) -> Option<&Applied> {
        self.inner.as_ref()?.entries.get(id)
    }

    pub(crate) fn insert(&mut self, applied: Applied) {
        let horizon = self.horizon;
        // Sized for a few commands at once: an actor that gets one usually gets more, and
        // each growth of a small map is an allocation and a rehash on the command path.
        let inner = self.inner.get_or_insert_with(|| {
            let capacity = horizon.min(FIRST_CAPACITY);
            Box::new(Entries {
                order: VecDeque::with_capacity(capacity),
                entries: HashMap::with_capacity_and_hasher(capacity, RandomState::default()),
            })
        });
        let id = applied.id.clone();
        if inner.entries.insert(id.clone(), applied).is_some() {
            inner.order.retain(|old| old != &id);
        }
        inner.order.push_back(id);
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
        let reply = event.metadata.get(REPLY_KEY).map(|r| Box::from(r.as_str()));
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
        assert_eq!(c1.reply.as_deref(), Some("7"));
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

    #[test]
    fn outcomes_round_trip_in_the_compact_form_and_bad_ones_are_refused() {
        let applied = Applied {
            id: CommandId::new("c1").unwrap(),
            written: Some(VersionRange { first: 3, last: 5 }),
            version: 5,
            reply: Some("{\"a\":1}".into()),
        };
        let value = serde_json::to_value(&applied).unwrap();
        assert_eq!(value, serde_json::json!(["c1", 5, 3, "{\"a\":1}"]));
        assert_eq!(serde_json::from_value::<Applied>(value).unwrap(), applied);
        let none = serde_json::json!(["c2", 4, 0, null]);
        let decoded: Applied = serde_json::from_value(none).unwrap();
        assert_eq!(
            (decoded.written, decoded.version, decoded.reply),
            (None, 4, None)
        );
        for bad in [
            serde_json::json!(["c3", 1, 2, null]),
            serde_json::json!(["c3", 1, 1]),
            serde_json::json!(["c3", 1, 1, null, 5]),
            serde_json::json!(["", 1, 1, null]),
        ] {
            assert!(
                serde_json::from_value::<Applied>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
