//! [`ActorId`]: the validated identity of an actor and of its event stream.

use std::sync::Arc;

use super::{InvalidName, NameKind, check_tokens, is_printable_non_space, name_type_impls};

/// The identity of an actor; each actor has exactly one event stream.
///
/// Rules, checked once at construction:
/// - printable UTF-8: no whitespace, no control characters;
/// - at most [`ActorId::MAX_LEN`] bytes;
/// - `.` separates tokens (so actor patterns such as `order.*` can select actors): no empty token,
///   hence no leading, trailing or doubled `.`;
/// - no token that is exactly `*` or `>` (those are pattern wildcards); `a*b` is fine.
///
/// Cloning is cheap (a reference count), so ids can be passed around freely.
///
/// # Examples
///
/// ```
/// use aether_core::ActorId;
///
/// // Valid:
/// for id in ["account-42", "order.2024.17", "user@example.com", "ünïcödé", "a*b"] {
///     assert!(ActorId::new(id).is_ok(), "{id}");
/// }
/// // Invalid:
/// for id in ["", "a b", "tab\there", ".x", "x.", "a..b", "orders.*", "orders.>"] {
///     assert!(ActorId::new(id).is_err(), "{id}");
/// }
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId(Arc<str>);

impl ActorId {
    /// Longest actor id in bytes. Chosen so that an escaped id (up to 3 bytes per byte) still fits
    /// comfortably in a NATS subject.
    pub const MAX_LEN: usize = 255;

    /// Validates `id` and wraps it.
    ///
    /// # Errors
    ///
    /// [`InvalidName`] naming the rule that `id` breaks (see the type docs).
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidName> {
        let id = id.as_ref();
        check_tokens(
            NameKind::ActorId,
            id,
            Self::MAX_LEN,
            is_printable_non_space,
            "printable characters without whitespace",
        )?;
        Ok(Self(Arc::from(id)))
    }

    /// The `.`-separated tokens of the id.
    ///
    /// ```
    /// # use aether_core::ActorId;
    /// let id = ActorId::new("order.2024.17")?;
    /// assert_eq!(id.tokens().collect::<Vec<_>>(), ["order", "2024", "17"]);
    /// # Ok::<(), aether_core::InvalidName>(())
    /// ```
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

name_type_impls!(ActorId);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NameRule;

    fn rule(id: &str) -> NameRule {
        ActorId::new(id).unwrap_err().rule().clone()
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        assert_eq!(rule(""), NameRule::Empty);
        assert_eq!(rule("a..b"), NameRule::EmptyToken { index: 1 });
        assert_eq!(rule(".a"), NameRule::EmptyToken { index: 0 });
        assert_eq!(rule("a."), NameRule::EmptyToken { index: 1 });
        assert!(matches!(
            rule("a b"),
            NameRule::ForbiddenChar {
                ch: ' ',
                index: 1,
                ..
            }
        ));
        assert!(matches!(
            rule("a\nb"),
            NameRule::ForbiddenChar { ch: '\n', .. }
        ));
        assert!(matches!(rule("a\u{7f}"), NameRule::ForbiddenChar { .. }));
        assert!(
            matches!(rule("a\u{a0}b"), NameRule::ForbiddenChar { .. }),
            "no-break space"
        );
        assert_eq!(
            rule("x.*"),
            NameRule::WildcardToken {
                index: 1,
                token: "*".into()
            }
        );
        assert_eq!(
            rule(">"),
            NameRule::WildcardToken {
                index: 0,
                token: ">".into()
            }
        );
        let long = "a".repeat(ActorId::MAX_LEN + 1);
        assert_eq!(rule(&long), NameRule::TooLong { len: 256, max: 255 });
    }

    #[test]
    fn accepts_the_longest_id() {
        assert!(ActorId::new("a".repeat(ActorId::MAX_LEN)).is_ok());
    }

    #[test]
    fn long_rejected_names_are_shortened_in_the_error() {
        let err = ActorId::new("a ".repeat(10_000)).unwrap_err();
        assert!(err.name().len() < 120, "{}", err.name().len());
        assert!(err.to_string().len() < 250);
    }

    #[test]
    fn serde_validates_and_round_trips() {
        let id: ActorId = serde_json::from_str("\"order.1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"order.1\"");
        let err = serde_json::from_str::<ActorId>("\"order.*\"").unwrap_err();
        assert!(err.to_string().contains("wildcard"), "{err}");
    }

    #[test]
    fn compares_with_str() {
        let id = ActorId::new("a.b").unwrap();
        assert_eq!(id, "a.b");
        assert_eq!(id.to_string(), "a.b");
        assert_eq!(format!("{id:?}"), "ActorId(\"a.b\")");
    }
}
