//! [`EventLimits`]: the input rules every store enforces before writing anything.

use std::collections::HashMap;

use super::{InvalidEvent, InvalidSnapshot};
use crate::{ActorSnapshot, Event};

/// Input limits of a store, with the checks that apply them.
///
/// The checks are public so that every store implementation rejects exactly the same input.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventLimits, InvalidEvent};
///
/// let limits = EventLimits { max_event_bytes: 512, ..EventLimits::default() };
/// let big = Event::new(ActorId::new("a")?, "Big", 1)
///     .with_data(&serde_json::json!({ "blob": "x".repeat(1000) }))?;
/// assert!(matches!(limits.check_event(&big), Err(InvalidEvent::TooLarge { limit: 512, .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Largest event accepted, measured as its JSON encoding ([`Event::encoded_len`]).
    /// Default 1 MiB, NATS's default maximum message size.
    pub max_event_bytes: usize,
    /// Most events accepted in one atomic batch. Default 1000, JetStream's atomic batch limit.
    pub max_batch_len: usize,
    /// Largest snapshot accepted, measured as its JSON encoding. Default 1 MiB.
    pub max_snapshot_bytes: usize,
}

/// Longest event type in bytes.
pub(crate) const MAX_EVENT_TYPE_LEN: usize = 255;

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_event_bytes: 1 << 20,
            max_batch_len: 1000,
            max_snapshot_bytes: 1 << 20,
        }
    }
}

impl EventLimits {
    /// Checks one event: a non-empty printable type without whitespace of at most 255 bytes,
    /// version ≥ 1, and an encoded size within [`max_event_bytes`](Self::max_event_bytes).
    /// (Ids and actor ids are valid by construction.)
    ///
    /// # Errors
    ///
    /// The first rule the event breaks.
    pub fn check_event(&self, event: &Event) -> Result<(), InvalidEvent> {
        check_event_type(&event.event_type)?;
        if event.version == 0 {
            return Err(InvalidEvent::ZeroVersion);
        }
        if let Some(size) = event.encoded_len_above(self.max_event_bytes) {
            return Err(InvalidEvent::TooLarge {
                size,
                limit: self.max_event_bytes,
            });
        }
        Ok(())
    }

    /// Checks a batch: not empty, at most [`max_batch_len`](Self::max_batch_len) events, each
    /// valid, one actor, strictly increasing versions, no id twice.
    ///
    /// # Errors
    ///
    /// The first rule the batch breaks.
    pub fn check_batch(&self, events: &[Event]) -> Result<(), InvalidEvent> {
        let Some(first) = events.first() else {
            return Err(InvalidEvent::EmptyBatch);
        };
        if events.len() > self.max_batch_len {
            return Err(InvalidEvent::BatchTooLong {
                len: events.len(),
                max: self.max_batch_len,
            });
        }
        for (index, event) in events.iter().enumerate() {
            self.check_event(event)
                .map_err(|reason| InvalidEvent::InBatch {
                    index,
                    reason: Box::new(reason),
                })?;
            if event.actor_id != first.actor_id {
                return Err(InvalidEvent::MixedActors {
                    index,
                    expected: first.actor_id.clone(),
                    found: event.actor_id.clone(),
                });
            }
        }
        for (index, pair) in events.windows(2).enumerate() {
            if pair[1].version <= pair[0].version {
                return Err(InvalidEvent::NonIncreasingVersions {
                    index: index + 1,
                    version: pair[1].version,
                    previous: pair[0].version,
                });
            }
        }
        let mut seen = HashMap::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            if let Some(first) = seen.insert(&event.id, index) {
                return Err(InvalidEvent::DuplicateIdInBatch {
                    id: event.id.clone(),
                    first,
                    second: index,
                });
            }
        }
        Ok(())
    }

    /// Checks a snapshot: version ≥ 1 and an encoded size within
    /// [`max_snapshot_bytes`](Self::max_snapshot_bytes). Whether the version is covered by
    /// stored events is the store's check.
    ///
    /// # Errors
    ///
    /// The first rule the snapshot breaks.
    pub fn check_snapshot(&self, snapshot: &ActorSnapshot) -> Result<(), InvalidSnapshot> {
        if snapshot.version == 0 {
            return Err(InvalidSnapshot::ZeroVersion);
        }
        let size = snapshot.encoded_len();
        if size > self.max_snapshot_bytes {
            return Err(InvalidSnapshot::TooLarge {
                size,
                limit: self.max_snapshot_bytes,
            });
        }
        Ok(())
    }
}

fn check_event_type(event_type: &str) -> Result<(), InvalidEvent> {
    if event_type.is_empty() {
        return Err(InvalidEvent::EmptyEventType);
    }
    if event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err(InvalidEvent::EventTypeTooLong {
            len: event_type.len(),
            max: MAX_EVENT_TYPE_LEN,
        });
    }
    if let Some((index, ch)) = event_type
        .char_indices()
        .find(|&(_, c)| c.is_control() || c.is_whitespace())
    {
        return Err(InvalidEvent::EventTypeForbiddenChar {
            event_type: event_type.to_owned(),
            ch,
            index,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActorId;

    fn event(actor: &str, version: u64) -> Event {
        Event::new(ActorId::new(actor).unwrap(), "T", version)
    }

    #[test]
    fn event_type_rules() {
        let limits = EventLimits::default();
        let mut e = event("a", 1);
        e.event_type = String::new();
        assert_eq!(limits.check_event(&e), Err(InvalidEvent::EmptyEventType));
        e.event_type = "has space".into();
        assert!(matches!(
            limits.check_event(&e),
            Err(InvalidEvent::EventTypeForbiddenChar {
                ch: ' ',
                index: 3,
                ..
            })
        ));
        e.event_type = "x".repeat(256);
        assert!(matches!(
            limits.check_event(&e),
            Err(InvalidEvent::EventTypeTooLong { .. })
        ));
        e.event_type = "order.placed/v2".into();
        assert_eq!(limits.check_event(&e), Ok(()));
    }

    #[test]
    fn size_limit_is_exact_at_the_boundary() {
        let e = event("a", 1);
        let size = e.encoded_len();
        let at = EventLimits {
            max_event_bytes: size,
            ..Default::default()
        };
        assert_eq!(at.check_event(&e), Ok(()));
        let below = EventLimits {
            max_event_bytes: size - 1,
            ..Default::default()
        };
        assert_eq!(
            below.check_event(&e),
            Err(InvalidEvent::TooLarge {
                size,
                limit: size - 1
            })
        );
    }

    #[test]
    fn batch_rules_report_the_offending_index() {
        let limits = EventLimits {
            max_batch_len: 3,
            ..Default::default()
        };
        assert_eq!(limits.check_batch(&[]), Err(InvalidEvent::EmptyBatch));
        let four: Vec<_> = (1..=4).map(|v| event("a", v)).collect();
        assert_eq!(
            limits.check_batch(&four),
            Err(InvalidEvent::BatchTooLong { len: 4, max: 3 })
        );
        let mixed = [event("a", 1), event("b", 2)];
        assert!(matches!(
            limits.check_batch(&mixed),
            Err(InvalidEvent::MixedActors { index: 1, .. })
        ));
        let flat = [event("a", 2), event("a", 2)];
        assert_eq!(
            limits.check_batch(&flat),
            Err(InvalidEvent::NonIncreasingVersions {
                index: 1,
                version: 2,
                previous: 2
            })
        );
        let zero = [event("a", 0), event("a", 1)];
        assert_eq!(
            limits.check_batch(&zero),
            Err(InvalidEvent::InBatch {
                index: 0,
                reason: Box::new(InvalidEvent::ZeroVersion)
            })
        );
        let mut twice = [event("a", 1), event("a", 2)];
        twice[1].id = twice[0].id.clone();
        assert!(matches!(
            limits.check_batch(&twice),
            Err(InvalidEvent::DuplicateIdInBatch {
                first: 0,
                second: 1,
                ..
            })
        ));
    }
}
