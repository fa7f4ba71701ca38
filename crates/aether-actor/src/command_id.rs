//! [`CommandId`]: the identity of one command across the caller's retries.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The identity of a command, kept across the caller's retries so that the actor applies the
/// command at most once (see [`Actors::ask_with`](crate::Actors::ask_with)).
///
/// Rules, checked once at construction: 1 to [`CommandId::MAX_LEN`] bytes of printable
/// characters without whitespace. The id is written on every event the command produces
/// (`Event::command_id`), and the events' ids derive from it (`<command id>.<index>`).
///
/// An id names one command to one actor, like an idempotency key: sending another command
/// with an id the actor already applied answers the first command's outcome; using one id
/// for commands to two actors can make the second write fail with a store error
/// (`EventIdReused`: the in-memory store always, JetStream within its duplicate window, sees
/// its event ids as taken). Generated ids never collide.
///
/// # Examples
///
/// ```
/// use aether_actor::CommandId;
///
/// let given = CommandId::new("transfer-2026-0042")?;
/// assert_eq!(given.as_str(), "transfer-2026-0042");
/// assert!(CommandId::new("has space").is_err());
///
/// // Generated ids are UUIDv7: unique and time-ordered.
/// let a = CommandId::generate();
/// let b = CommandId::generate();
/// assert_ne!(a, b);
/// # Ok::<(), aether_actor::InvalidCommandId>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommandId(Arc<str>);

/// A string that is not a valid [`CommandId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid command id {id:?}: {reason}")]
pub struct InvalidCommandId {
    /// The refused id (cut to its first 64 characters).
    pub id: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

impl CommandId {
    /// Longest command id in bytes. Event ids are derived as `<command id>.<index>`, and must
    /// stay within `EventId::MAX_LEN` (255).
    pub const MAX_LEN: usize = 200;

    /// Validates `id` and wraps it.
    ///
    /// # Errors
    ///
    /// [`InvalidCommandId`] if `id` is empty, longer than [`MAX_LEN`](Self::MAX_LEN) bytes, or
    /// contains whitespace or control characters.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidCommandId> {
        let id = id.as_ref();
        let fail = |reason| {
            Err(InvalidCommandId {
                id: id.chars().take(64).collect(),
                reason,
            })
        };
        if id.is_empty() {
            return fail("empty");
        }
        if id.len() > Self::MAX_LEN {
            return fail("longer than 200 bytes");
        }
        if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return fail("contains whitespace or control characters");
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

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of a command caused by this one: `<this id>.<part>`, or, when that is longer than
    /// [`MAX_LEN`](Self::MAX_LEN), `h-` and a 128-bit FNV-1a hash of it in hex. Deterministic
    /// (the same on every node and every release), so that a command caused by a retried or
    /// re-run command has the same id as the first time, and is applied at most once.
    ///
    /// The runtime derives the ids of a decision's effects this way (`<id>.e<index>`, the
    /// follow-up of an ask `<id>.e<index>.r`, a timer's command `<id>.t<index>`).
    ///
    /// # Examples
    ///
    /// ```
    /// use aether_actor::CommandId;
    ///
    /// let id = CommandId::new("transfer-7")?;
    /// assert_eq!(id.derived("e0").as_str(), "transfer-7.e0");
    /// let long = CommandId::new("x".repeat(CommandId::MAX_LEN))?;
    /// assert_eq!(long.derived("e0"), long.derived("e0"));
    /// assert_ne!(long.derived("e0"), long.derived("e1"));
    /// assert!(long.derived("e0").as_str().starts_with("h-"));
    /// # Ok::<(), aether_actor::InvalidCommandId>(())
    /// ```
    pub fn derived(&self, part: &str) -> Self {
        let joined = format!("{}.{part}", self.0);
        let clean = !part.is_empty() && !part.chars().any(|c| c.is_whitespace() || c.is_control());
        if clean && joined.len() <= Self::MAX_LEN {
            return Self(Arc::from(joined));
        }
        Self(Arc::from(format!(
            "h-{:032x}",
            fnv1a_128(joined.as_bytes())
        )))
    }
}

/// 128-bit FNV-1a: stable across releases and platforms (unlike the standard library's
/// hashers), which a derived id must be.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |hash, b| {
        (hash ^ u128::from(*b)).wrapping_mul(PRIME)
    })
}

impl Default for CommandId {
    /// Same as [`CommandId::generate`].
    fn default() -> Self {
        Self::generate()
    }
}

impl fmt::Debug for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandId({:?})", &*self.0)
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CommandId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CommandId {
    type Error = InvalidCommandId;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<&str> for CommandId {
    type Error = InvalidCommandId;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<CommandId> for String {
    fn from(id: CommandId) -> Self {
        id.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        for ok in ["a", "cmd-1", "ünï", &"x".repeat(200)] {
            assert!(CommandId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "a b", "tab\t", "nl\n", &"x".repeat(201)] {
            assert!(CommandId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_validates() {
        let id: CommandId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(id.as_str(), "abc");
        assert!(serde_json::from_str::<CommandId>("\"a b\"").is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"abc\"");
    }

    #[test]
    fn derived_ids_are_valid_stable_and_distinct() {
        let id = CommandId::new("c").unwrap();
        assert_eq!(id.derived("e1").as_str(), "c.e1");
        let long = CommandId::new("y".repeat(CommandId::MAX_LEN)).unwrap();
        let a = long.derived("e1");
        assert!(CommandId::new(a.as_str()).is_ok());
        assert_eq!(a.as_str().len(), 34);
        assert_ne!(a, long.derived("e2"));
        // Pinned: a derived id must never change between releases.
        assert_eq!(
            CommandId::new("z").unwrap().derived("bad part").as_str(),
            format!("h-{:032x}", fnv1a_128(b"z.bad part"))
        );
        assert_eq!(fnv1a_128(b""), 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964);
    }

    #[test]
    fn generated_ids_are_valid_and_ordered() {
        let a = CommandId::generate();
        let b = CommandId::generate();
        assert!(CommandId::new(a.as_str()).is_ok());
        assert!(a < b);
    }
}
