//! Validated names: [`ActorId`], [`Namespace`], [`EventId`] and [`NodeId`].
//!
//! A name is checked once, when it is constructed (or deserialized); afterwards the type itself is
//! the proof that it is valid, so stores, buses and the cluster never re-check it. Every rule that
//! fails is reported as an [`InvalidName`] that says which name, which rule and where.

mod actor_id;
mod error;
mod event_id;
mod namespace;
mod node_id;

pub use actor_id::ActorId;
pub use error::{InvalidName, NameKind, NameRule};
pub use event_id::EventId;
pub use namespace::Namespace;
pub use node_id::NodeId;

/// Checks the rules shared by all token-structured names (`.`-separated, non-empty tokens).
///
/// `char_ok` decides which characters a token may contain; `allowed` describes them for the
/// error message.
fn check_tokens(
    kind: NameKind,
    name: &str,
    max_len: usize,
    char_ok: impl Fn(char) -> bool,
    allowed: &'static str,
) -> Result<(), InvalidName> {
    let fail = |reason| Err(InvalidName::new(kind, name, reason));
    if name.is_empty() {
        return fail(NameRule::Empty);
    }
    if name.len() > max_len {
        return fail(NameRule::TooLong {
            len: name.len(),
            max: max_len,
        });
    }
    // The ASCII prefix byte by byte, the rest by chars: names are mostly ASCII, and are
    // checked on every decode.
    let ascii = name
        .bytes()
        .position(|b| !b.is_ascii())
        .unwrap_or(name.len());
    let forbidden = name.as_bytes()[..ascii]
        .iter()
        .position(|&b| b != b'.' && !char_ok(char::from(b)))
        .map(|index| (index, char::from(name.as_bytes()[index])))
        .or_else(|| {
            name[ascii..]
                .char_indices()
                .find(|&(_, c)| c != '.' && !char_ok(c))
                .map(|(index, c)| (ascii + index, c))
        });
    if let Some((index, ch)) = forbidden {
        return fail(NameRule::ForbiddenChar { ch, index, allowed });
    }
    for (index, token) in name.as_bytes().split(|&b| b == b'.').enumerate() {
        if token.is_empty() {
            return fail(NameRule::EmptyToken { index });
        }
        if let [wildcard @ (b'*' | b'>')] = token {
            return fail(NameRule::WildcardToken {
                index,
                token: char::from(*wildcard).to_string(),
            });
        }
    }
    Ok(())
}

/// True for characters that are printable and not whitespace: what ids may contain.
fn is_printable_non_space(c: char) -> bool {
    // The ASCII answer without Unicode tables: ids are mostly ASCII and checked on every decode.
    if c.is_ascii() {
        return c.is_ascii_graphic();
    }
    !c.is_control() && !c.is_whitespace()
}

/// Implements the string-like traits every name newtype shares.
macro_rules! name_type_impls {
    ($ty:ident) => {
        impl $ty {
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), &*self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $ty {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, InvalidName> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = InvalidName;
            fn try_from(s: &str) -> Result<Self, InvalidName> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = InvalidName;
            fn try_from(s: String) -> Result<Self, InvalidName> {
                Self::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(name: $ty) -> String {
                name.0.to_string()
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::new(&*raw).map_err(serde::de::Error::custom)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}
use name_type_impls;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The character and token rules as first written, one char at a time: what the
    /// byte-wise check must agree with (for names neither empty nor too long).
    fn check_tokens_by_chars(name: &str) -> Result<(), InvalidName> {
        let fail = |reason| Err(InvalidName::new(NameKind::ActorId, name, reason));
        if let Some((index, ch)) = name
            .char_indices()
            .find(|&(_, c)| c != '.' && !is_printable_non_space(c))
        {
            return fail(NameRule::ForbiddenChar {
                ch,
                index,
                allowed: "x",
            });
        }
        for (index, token) in name.split('.').enumerate() {
            if token.is_empty() {
                return fail(NameRule::EmptyToken { index });
            }
            if token == "*" || token == ">" {
                return fail(NameRule::WildcardToken {
                    index,
                    token: token.to_owned(),
                });
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn the_byte_wise_check_agrees_with_the_char_wise_rules(
            name in r"[a-z.*> \t\u{1}é\u{a0}\u{2028}ü-]{1,10}",
        ) {
            let fast = check_tokens(NameKind::ActorId, &name, 64, is_printable_non_space, "x");
            prop_assert_eq!(
                fast.map_err(|e| e.rule().clone()),
                check_tokens_by_chars(&name).map_err(|e| e.rule().clone())
            );
        }
    }

    #[test]
    fn the_ascii_shortcut_agrees_with_the_unicode_rule_for_every_char() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(
                is_printable_non_space(c),
                !c.is_control() && !c.is_whitespace(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn event_ids_with_non_ascii_characters_take_the_slow_path_correctly() {
        assert!(EventId::new("ordre-é-1").is_ok());
        let error = EventId::new("é\u{2003}x").unwrap_err();
        assert_eq!(
            error.rule(),
            &NameRule::ForbiddenChar {
                ch: '\u{2003}',
                index: 2,
                allowed: "printable characters without whitespace"
            }
        );
        assert!(EventId::new("a\u{7f}").is_err());
    }
}
