//! [`Namespace`]: the validated name of an isolated domain (tenant, bounded context, environment).

use std::sync::Arc;

use super::{InvalidName, NameKind, check_tokens, name_type_impls};

/// A logical boundary between tenants, domains or environments, such as `prod.tenant-a`.
///
/// Rules, checked once at construction:
/// - one or more `.`-separated tokens, none empty;
/// - tokens use only `A-Z a-z 0-9 _ -` (so every token is a safe NATS subject token and no token
///   can be a wildcard);
/// - at most [`Namespace::MAX_LEN`] bytes.
///
/// # Examples
///
/// ```
/// use aether_core::Namespace;
///
/// // Valid:
/// for ns in ["orders", "prod.tenant-a", "Staging_2.eu-west-1"] {
///     assert!(Namespace::new(ns).is_ok(), "{ns}");
/// }
/// // Invalid:
/// for ns in ["", "prod.", ".prod", "prod..a", "prod.*", "prod.>", "a b", "tenant/a", "ü"] {
///     assert!(Namespace::new(ns).is_err(), "{ns}");
/// }
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(Arc<str>);

impl Namespace {
    /// Longest namespace in bytes. A namespace becomes a JetStream stream name, which may be at
    /// most 255 bytes after escaping (up to 3 bytes per byte) and a short prefix.
    pub const MAX_LEN: usize = 80;

    /// Validates `name` and wraps it.
    ///
    /// # Errors
    ///
    /// [`InvalidName`] naming the rule that `name` breaks (see the type docs).
    pub fn new(name: impl AsRef<str>) -> Result<Self, InvalidName> {
        let name = name.as_ref();
        check_tokens(
            NameKind::Namespace,
            name,
            Self::MAX_LEN,
            |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
            "letters, digits, '_' and '-', in '.'-separated tokens",
        )?;
        Ok(Self(Arc::from(name)))
    }

    /// The `.`-separated tokens of the namespace.
    ///
    /// ```
    /// # use aether_core::Namespace;
    /// let ns = Namespace::new("prod.tenant-a")?;
    /// assert_eq!(ns.tokens().collect::<Vec<_>>(), ["prod", "tenant-a"]);
    /// # Ok::<(), aether_core::InvalidName>(())
    /// ```
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

name_type_impls!(Namespace);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NameRule;

    fn rule(ns: &str) -> NameRule {
        Namespace::new(ns).unwrap_err().rule().clone()
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        assert_eq!(rule(""), NameRule::Empty);
        assert_eq!(rule("a..b"), NameRule::EmptyToken { index: 1 });
        assert!(matches!(
            rule("a.*"),
            NameRule::ForbiddenChar {
                ch: '*',
                index: 2,
                ..
            }
        ));
        assert!(matches!(
            rule("a.>"),
            NameRule::ForbiddenChar { ch: '>', .. }
        ));
        assert!(matches!(
            rule("a b"),
            NameRule::ForbiddenChar { ch: ' ', .. }
        ));
        assert!(matches!(rule("é"), NameRule::ForbiddenChar { ch: 'é', .. }));
        assert!(matches!(
            rule("a/b"),
            NameRule::ForbiddenChar { ch: '/', .. }
        ));
        let long = "a".repeat(Namespace::MAX_LEN + 1);
        assert_eq!(rule(&long), NameRule::TooLong { len: 81, max: 80 });
    }

    #[test]
    fn error_message_names_kind_and_rule() {
        let err = Namespace::new("prod.*").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid namespace \"prod.*\": character '*' at byte 5 is not allowed \
             (letters, digits, '_' and '-', in '.'-separated tokens)"
        );
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<Namespace>("\"prod.a\"").is_ok());
        assert!(serde_json::from_str::<Namespace>("\"prod a\"").is_err());
    }
}
