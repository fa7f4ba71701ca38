//! The error every name constructor returns.

use std::fmt;

/// Which kind of name failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameKind {
    /// An [`ActorId`](crate::ActorId).
    ActorId,
    /// A [`Namespace`](crate::Namespace).
    Namespace,
    /// An [`EventId`](crate::EventId).
    EventId,
    /// A [`NodeId`](crate::NodeId).
    NodeId,
    /// A subject [`Pattern`](crate::Pattern).
    Pattern,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ActorId => "actor id",
            Self::Namespace => "namespace",
            Self::EventId => "event id",
            Self::NodeId => "node id",
            Self::Pattern => "pattern",
        })
    }
}

/// The rule a name broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameRule {
    /// The name is the empty string.
    #[error("it must not be empty")]
    Empty,
    /// The name is longer than the limit, in bytes of UTF-8.
    #[error("it is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// Length of the rejected name in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A `.`-separated token is empty (leading, trailing or doubled `.`).
    #[error("token {index} is empty (no leading, trailing or doubled '.')")]
    EmptyToken {
        /// Zero-based index of the empty token.
        index: usize,
    },
    /// A character outside the allowed set.
    #[error("character {ch:?} at byte {index} is not allowed ({allowed})")]
    ForbiddenChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the name.
        index: usize,
        /// A description of the allowed characters.
        allowed: &'static str,
    },
    /// In a pattern, `>` is not the last token (it matches everything after it).
    #[error("token {index} is '>', which may only be the last token")]
    FullWildcardNotLast {
        /// Zero-based index of the misplaced `>`.
        index: usize,
    },
    /// A token is exactly `*` or `>`, which NATS would read as a wildcard.
    #[error("token {index} is the wildcard {token:?}; wildcards belong in patterns, not in names")]
    WildcardToken {
        /// Zero-based index of the token.
        index: usize,
        /// The token (`*` or `>`).
        token: String,
    },
}

/// A name that failed validation: which kind of name, the name itself, and the rule it broke.
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, NameRule};
///
/// let err = ActorId::new("orders..42").unwrap_err();
/// assert_eq!(err.rule(), &NameRule::EmptyToken { index: 1 });
/// assert_eq!(
///     err.to_string(),
///     "invalid actor id \"orders..42\": token 1 is empty (no leading, trailing or doubled '.')"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {name:?}: {rule}")]
pub struct InvalidName {
    kind: NameKind,
    name: String,
    rule: NameRule,
}

/// Longest prefix of a rejected name kept in the error, so a hostile 1 MiB name does not end up
/// in every log line.
const MAX_ECHOED_BYTES: usize = 96;

impl InvalidName {
    pub(crate) fn new(kind: NameKind, name: &str, rule: NameRule) -> Self {
        let name = if name.len() > MAX_ECHOED_BYTES {
            let mut end = MAX_ECHOED_BYTES;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &name[..end])
        } else {
            name.to_owned()
        };
        Self { kind, name, rule }
    }

    /// Which kind of name was rejected.
    pub fn kind(&self) -> NameKind {
        self.kind
    }

    /// The rejected name (shortened with `…` when very long).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule the name broke.
    pub fn rule(&self) -> &NameRule {
        &self.rule
    }
}
