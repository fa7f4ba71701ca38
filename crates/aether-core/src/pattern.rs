//! [`Pattern`]: NATS-style subject patterns over `.`-separated tokens, and the [`SubjectTrie`]
//! that routes subjects to the patterns that match them.
//!
//! One pattern type serves namespace patterns (`prod.*`), actor patterns (`order.>`) and the
//! bus's routing alike, so every part of Aether agrees on what a pattern matches:
//!
//! - a literal token matches itself;
//! - `*` matches exactly one token;
//! - `>` matches one or more tokens, and may only be the last token.

mod trie;

use std::fmt;
use std::sync::Arc;

use crate::{InvalidName, NameKind, NameRule, Namespace};

pub use trie::SubjectTrie;

/// A validated subject pattern with NATS semantics.
///
/// # Examples
///
/// ```
/// use aether_core::Pattern;
///
/// let tenants = Pattern::new("prod.*")?;
/// assert!(tenants.matches("prod.tenant-a"));
/// assert!(!tenants.matches("prod"));
/// assert!(!tenants.matches("prod.tenant-a.eu"));
///
/// let everything_in_prod = Pattern::new("prod.>")?;
/// assert!(everything_in_prod.matches("prod.tenant-a.eu"));
/// assert!(!everything_in_prod.matches("prod"), "`>` needs at least one token");
///
/// assert!(Pattern::new("prod.>.eu").is_err(), "`>` must be last");
/// assert!(Pattern::new("prod..a").is_err(), "no empty tokens");
/// # Ok::<(), aether_core::InvalidName>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    raw: Arc<str>,
    tokens: Arc<[PatternToken]>,
}

/// One token of a [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PatternToken {
    /// Matches exactly this token.
    Literal(Box<str>),
    /// `*`: matches any single token.
    Any,
    /// `>`: matches one or more trailing tokens.
    Rest,
}

impl Pattern {
    /// Longest pattern in bytes (room for an actor id's 255 bytes and a few wildcards).
    pub const MAX_LEN: usize = 512;

    /// Parses and validates a pattern.
    ///
    /// # Errors
    ///
    /// [`InvalidName`] (kind [`NameKind::Pattern`]) for an empty pattern, an empty token,
    /// whitespace or control characters, a `>` that is not last, or more than
    /// [`Pattern::MAX_LEN`] bytes.
    pub fn new(pattern: impl AsRef<str>) -> Result<Self, InvalidName> {
        let raw = pattern.as_ref();
        let fail = |rule| Err(InvalidName::new(NameKind::Pattern, raw, rule));
        if raw.is_empty() {
            return fail(NameRule::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return fail(NameRule::TooLong {
                len: raw.len(),
                max: Self::MAX_LEN,
            });
        }
        if let Some((index, ch)) = raw
            .char_indices()
            .find(|&(_, c)| c.is_control() || c.is_whitespace())
        {
            let allowed = "printable characters without whitespace";
            return fail(NameRule::ForbiddenChar { ch, index, allowed });
        }
        let count = raw.split('.').count();
        let mut tokens = Vec::with_capacity(count);
        for (index, token) in raw.split('.').enumerate() {
            tokens.push(match token {
                "" => return fail(NameRule::EmptyToken { index }),
                "*" => PatternToken::Any,
                ">" if index + 1 == count => PatternToken::Rest,
                ">" => return fail(NameRule::FullWildcardNotLast { index }),
                literal => PatternToken::Literal(literal.into()),
            });
        }
        Ok(Self {
            raw: Arc::from(raw),
            tokens: tokens.into(),
        })
    }

    /// The pattern that matches exactly `namespace` and nothing else.
    pub fn exact(namespace: &Namespace) -> Self {
        Self {
            raw: Arc::from(namespace.as_str()),
            tokens: namespace
                .tokens()
                .map(|t| PatternToken::Literal(t.into()))
                .collect(),
        }
    }

    /// True if the pattern contains `*` or `>`, i.e. can match more than one subject.
    pub fn is_wildcard(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| !matches!(t, PatternToken::Literal(_)))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The pattern's tokens.
    pub fn tokens(&self) -> &[PatternToken] {
        &self.tokens
    }

    /// True if `subject` (a `.`-separated name such as a namespace or an actor id) matches.
    /// A subject with an empty token (`""`, `"a."`, `"a..b"`) matches nothing, as in NATS.
    pub fn matches(&self, subject: &str) -> bool {
        if has_empty_token(subject) {
            return false;
        }
        let mut subject = subject.split('.');
        for token in self.tokens.iter() {
            match (token, subject.next()) {
                (PatternToken::Rest, Some(_)) => return true,
                (PatternToken::Any, Some(_)) => {}
                (PatternToken::Literal(l), Some(s)) if **l == *s => {}
                _ => return false,
            }
        }
        subject.next().is_none()
    }
}

/// True if `subject` has an empty `.`-separated token; one scan, no splitting.
fn has_empty_token(subject: &str) -> bool {
    subject.is_empty()
        || subject.starts_with('.')
        || subject.ends_with('.')
        || subject.contains("..")
}

impl From<&Namespace> for Pattern {
    fn from(namespace: &Namespace) -> Self {
        Self::exact(namespace)
    }
}

impl std::str::FromStr for Pattern {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, InvalidName> {
        Self::new(s)
    }
}

impl TryFrom<&str> for Pattern {
    type Error = InvalidName;
    fn try_from(s: &str) -> Result<Self, InvalidName> {
        Self::new(s)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, subject: &str) -> bool {
        Pattern::new(pattern).unwrap().matches(subject)
    }

    #[test]
    fn nats_semantics() {
        assert!(m("a", "a"));
        assert!(!m("a", "a.b"));
        assert!(!m("a.b", "a"));
        assert!(m("*", "a"));
        assert!(!m("*", "a.b"));
        assert!(m("a.*", "a.b"));
        assert!(!m("a.*", "a"));
        assert!(m("*.b", "a.b"));
        assert!(m(">", "a"));
        assert!(m(">", "a.b.c"));
        assert!(m("a.>", "a.b"));
        assert!(m("a.>", "a.b.c"));
        assert!(!m("a.>", "a"));
        assert!(m("*.*.>", "a.b.c"));
        assert!(!m("*.*.>", "a.b"));
        assert!(m("a*", "a*"), "`*` inside a token is a literal");
        for (pattern, subject) in [
            ("*", ""),
            (">", ""),
            ("a.*", "a."),
            ("a.>", "a.."),
            (">", "a..b"),
        ] {
            assert!(!m(pattern, subject), "{pattern} must not match {subject:?}");
        }
        assert!(!m("a*", "ab"));
    }

    #[test]
    fn rejects_bad_patterns_with_reasons() {
        let rule = |p: &str| Pattern::new(p).unwrap_err().rule().clone();
        assert_eq!(rule(""), NameRule::Empty);
        assert_eq!(rule("a..b"), NameRule::EmptyToken { index: 1 });
        assert_eq!(rule(".a"), NameRule::EmptyToken { index: 0 });
        assert_eq!(rule("a."), NameRule::EmptyToken { index: 1 });
        assert_eq!(rule("a.>.b"), NameRule::FullWildcardNotLast { index: 1 });
        assert_eq!(rule(">.>"), NameRule::FullWildcardNotLast { index: 0 });
        assert!(matches!(
            rule("a b"),
            NameRule::ForbiddenChar { ch: ' ', .. }
        ));
        assert!(matches!(rule(&"a".repeat(513)), NameRule::TooLong { .. }));
        let err = Pattern::new("a.>.b").unwrap_err();
        assert_eq!(err.kind(), NameKind::Pattern);
        assert_eq!(
            err.to_string(),
            "invalid pattern \"a.>.b\": token 1 is '>', which may only be the last token"
        );
    }

    #[test]
    fn wildcard_detection_and_exact_patterns() {
        assert!(!Pattern::new("a.b").unwrap().is_wildcard());
        assert!(Pattern::new("a.*").unwrap().is_wildcard());
        assert!(Pattern::new(">").unwrap().is_wildcard());
        let ns = Namespace::new("prod.tenant-a").unwrap();
        let exact = Pattern::exact(&ns);
        assert!(!exact.is_wildcard());
        assert!(exact.matches("prod.tenant-a"));
        assert!(!exact.matches("prod.tenant-b"));
        assert_eq!(exact, Pattern::new("prod.tenant-a").unwrap());
    }
}
