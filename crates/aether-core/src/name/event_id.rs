//! [`EventId`]: the unique id of an event, which is also its deduplication key.

use std::sync::Arc;

use super::{InvalidName, NameKind, NameRule, is_printable_non_space, name_type_impls};

/// The unique id of an [`Event`](crate::Event), used as its deduplication key.
///
/// [`EventId::generate`] (and every event built without an explicit id) produces a UUIDv7: unique
/// and ordered by creation time. Callers may supply their own ids instead, for example derived
/// from a command id so that a retried command cannot store its events twice.
///
/// Rules for supplied ids, checked once at construction: not empty, at most
/// [`EventId::MAX_LEN`] bytes, printable characters without whitespace (ids travel in NATS
/// headers).
///
/// # Examples
///
/// ```
/// use aether_core::EventId;
///
/// let generated = EventId::generate();
/// assert_eq!(generated.as_str().len(), 36);
///
/// assert!(EventId::new("cmd-17/event-1").is_ok());
/// assert!(EventId::new("").is_err());
/// assert!(EventId::new("two words").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Arc<str>);

impl EventId {
    /// Longest event id in bytes.
    pub const MAX_LEN: usize = 255;

    /// Validates `id` and wraps it.
    ///
    /// # Errors
    ///
    /// [`InvalidName`] when `id` is empty, too long, or contains whitespace or control characters.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidName> {
        let id = id.as_ref();
        let fail = |rule| Err(InvalidName::new(NameKind::EventId, id, rule));
        if id.is_empty() {
            return fail(NameRule::Empty);
        }
        if id.len() > Self::MAX_LEN {
            return fail(NameRule::TooLong {
                len: id.len(),
                max: Self::MAX_LEN,
            });
        }
        // Generated ids are ASCII: one vectorisable pass settles them.
        if !id.bytes().all(|b| b.is_ascii_graphic())
            && let Some((index, ch)) = id.char_indices().find(|&(_, c)| !is_printable_non_space(c))
        {
            let allowed = "printable characters without whitespace";
            return fail(NameRule::ForbiddenChar { ch, index, allowed });
        }
        Ok(Self(Arc::from(id)))
    }

    /// A new unique, time-ordered id (UUIDv7, hyphenated lowercase).
    pub fn generate() -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        Self(Arc::from(
            &*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf),
        ))
    }
}

impl Default for EventId {
    /// Same as [`EventId::generate`].
    fn default() -> Self {
        Self::generate()
    }
}

name_type_impls!(EventId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_time_ordered() {
        let ids: Vec<EventId> = (0..1000).map(|_| EventId::generate()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "UUIDv7 ids sort by creation"
        );
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(EventId::new("").unwrap_err().rule(), &NameRule::Empty);
        assert!(matches!(
            EventId::new("a\r\nb").unwrap_err().rule(),
            NameRule::ForbiddenChar {
                ch: '\r',
                index: 1,
                ..
            }
        ));
        assert!(matches!(
            EventId::new("x".repeat(256)).unwrap_err().rule(),
            NameRule::TooLong { .. }
        ));
        assert!(
            EventId::new("a..b.*").is_ok(),
            "ids have no token structure"
        );
    }
}
