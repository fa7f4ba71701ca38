//! [`NodeId`]: the validated identity of a cluster node.

use std::sync::Arc;

use super::{InvalidName, NameKind, NameRule, name_type_impls};

/// The identity of a cluster node: the owner named in a [`ShardMap`](crate::ShardMap), the key of
/// its membership record, a token of the subjects addressed to it.
///
/// Rules, checked once at construction:
/// - 1 to [`NodeId::MAX_LEN`] bytes;
/// - only ASCII letters, digits, `_` and `-`.
///
/// So a node id is always a single safe NATS subject token (no `.`, no wildcard, no whitespace)
/// and a valid KV key, with no escaping.
///
/// Cloning is cheap (a reference count).
///
/// # Examples
///
/// ```
/// use aether_core::NodeId;
///
/// // Valid:
/// for id in ["node-1", "eu_west_1-a", "N0", "a"] {
///     assert!(NodeId::new(id).is_ok(), "{id}");
/// }
/// // Invalid:
/// for id in ["", "node.1", "node 1", "node*", ">", "nœud", "a/b"] {
///     assert!(NodeId::new(id).is_err(), "{id}");
/// }
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Longest node id in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates `id` and wraps it.
    ///
    /// # Errors
    ///
    /// [`InvalidName`] (kind [`NameKind::NodeId`]) when `id` is empty, longer than
    /// [`NodeId::MAX_LEN`] bytes, or contains a character other than ASCII letters, digits, `_`
    /// and `-`.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidName> {
        let id = id.as_ref();
        let fail = |rule| Err(InvalidName::new(NameKind::NodeId, id, rule));
        if id.is_empty() {
            return fail(NameRule::Empty);
        }
        if id.len() > Self::MAX_LEN {
            return fail(NameRule::TooLong {
                len: id.len(),
                max: Self::MAX_LEN,
            });
        }
        if let Some((index, ch)) = id
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        {
            let allowed = "ASCII letters, digits, '_' and '-'";
            return fail(NameRule::ForbiddenChar { ch, index, allowed });
        }
        Ok(Self(Arc::from(id)))
    }
}

name_type_impls!(NodeId);

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str) -> NameRule {
        NodeId::new(id).unwrap_err().rule().clone()
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        assert_eq!(rule(""), NameRule::Empty);
        assert!(matches!(
            rule("a.b"),
            NameRule::ForbiddenChar {
                ch: '.',
                index: 1,
                ..
            }
        ));
        for bad in ["*", ">", " ", "\t", "é", "/", "\u{0}"] {
            assert!(
                matches!(rule(bad), NameRule::ForbiddenChar { .. }),
                "{bad:?}"
            );
        }
        let long = "a".repeat(NodeId::MAX_LEN + 1);
        assert_eq!(rule(&long), NameRule::TooLong { len: 65, max: 64 });
        assert!(NodeId::new("a".repeat(NodeId::MAX_LEN)).is_ok());
    }

    #[test]
    fn error_names_the_kind() {
        let err = NodeId::new("node.1").unwrap_err();
        assert_eq!(err.kind(), NameKind::NodeId);
        assert_eq!(
            err.to_string(),
            "invalid node id \"node.1\": character '.' at byte 4 is not allowed \
             (ASCII letters, digits, '_' and '-')"
        );
    }

    #[test]
    fn serde_validates_and_round_trips() {
        let id: NodeId = serde_json::from_str("\"node-1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"node-1\"");
        assert!(serde_json::from_str::<NodeId>("\"node.1\"").is_err());
        assert_eq!(format!("{id:?}"), "NodeId(\"node-1\")");
    }
}
