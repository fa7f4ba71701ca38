//! How Aether names things in JetStream, injectively.
//!
//! | Aether | JetStream |
//! |---|---|
//! | namespace `ns` | stream `aether-ev-<enc(ns)>` with subjects `ae.<enc(ns)>.*` |
//! | actor `a` of `ns` | subject `ae.<enc(ns)>.<enc(a)>` |
//! | snapshots of `ns` | KV bucket `aether-snap-<enc(ns)>`, key `<enc(a)>` |
//!
//! `enc` keeps `a-z`, `0-9` and `-`, and writes every other byte as `_` plus two lowercase hex
//! digits (`.` → `_2e`, `_` → `_5f`, `A` → `_41`). So:
//!
//! - the mapping is **injective** (and reversible with [`decode_token`]): two namespaces never
//!   share a stream, two actors never share a subject — `a.b`, `a_b`, `a-b` and `A.b` all differ;
//! - an encoded token contains no `.`, `*`, `>` or whitespace: an actor id can never act as a
//!   wildcard or reach into another actor's subject;
//! - it is lowercase, so stream directories cannot collide on case-insensitive filesystems.
//!
//! ```
//! use aether_core::{ActorId, Namespace};
//! use aether_nats::naming;
//!
//! let ns = Namespace::new("prod.tenant-a")?;
//! assert_eq!(naming::stream_name(&ns), "aether-ev-prod_2etenant-a");
//! let actor = ActorId::new("Order.42")?;
//! assert_eq!(naming::actor_subject(&ns, &actor), "ae.prod_2etenant-a._4frder_2e42");
//! assert_eq!(naming::decode_token("_4frder_2e42")?, "Order.42");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use aether_core::{ActorId, Namespace};

/// Prefix of every event stream's name.
pub const STREAM_PREFIX: &str = "aether-ev-";
/// First token of every event subject.
pub const SUBJECT_PREFIX: &str = "ae";
/// Prefix of every snapshot bucket's name.
pub const SNAPSHOT_BUCKET_PREFIX: &str = "aether-snap-";

/// Encodes `raw` as one token: `a-z`, `0-9` and `-` kept, every other byte as `_xx`.
pub fn encode_token(raw: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(raw.len());
    for &b in raw.as_bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => out.push(char::from(b)),
            _ => {
                out.push('_');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out
}

/// A token that [`encode_token`] cannot have produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{token:?} is not an encoded token: {reason}")]
pub struct DecodeError {
    /// The token.
    pub token: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Reverses [`encode_token`].
///
/// # Errors
///
/// [`DecodeError`] for characters outside the encoded alphabet, a truncated or non-canonical
/// (uppercase, or escaping a kept character) escape, or bytes that are not UTF-8.
pub fn decode_token(token: &str) -> Result<String, DecodeError> {
    let fail = |reason| DecodeError {
        token: token.to_owned(),
        reason,
    };
    let mut bytes = Vec::with_capacity(token.len());
    let mut input = token.bytes();
    while let Some(b) = input.next() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => bytes.push(b),
            b'_' => {
                let hex = |d: Option<u8>| match d {
                    Some(d @ b'0'..=b'9') => Some(d - b'0'),
                    Some(d @ b'a'..=b'f') => Some(d - b'a' + 10),
                    _ => None,
                };
                let (Some(hi), Some(lo)) = (hex(input.next()), hex(input.next())) else {
                    return Err(fail("'_' must be followed by two lowercase hex digits"));
                };
                let byte = hi << 4 | lo;
                if matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'-') {
                    return Err(fail("escapes a character that is never escaped"));
                }
                bytes.push(byte);
            }
            _ => return Err(fail("contains a character outside a-z, 0-9, '-' and '_'")),
        }
    }
    String::from_utf8(bytes).map_err(|_| fail("does not decode to UTF-8"))
}

/// The JetStream stream holding `namespace`'s events.
pub fn stream_name(namespace: &Namespace) -> String {
    format!("{STREAM_PREFIX}{}", encode_token(namespace.as_str()))
}

/// The subject filter of `namespace`'s stream: every actor of the namespace.
pub fn stream_subjects(namespace: &Namespace) -> String {
    format!("{SUBJECT_PREFIX}.{}.*", encode_token(namespace.as_str()))
}

/// The subject holding `actor_id`'s events in `namespace`.
pub fn actor_subject(namespace: &Namespace, actor_id: &ActorId) -> String {
    format!(
        "{SUBJECT_PREFIX}.{}.{}",
        encode_token(namespace.as_str()),
        encode_token(actor_id.as_str())
    )
}

/// The actor whose subject `subject` is, if it is an actor subject of `namespace`.
///
/// The inverse of [`actor_subject`]: `None` for subjects of other namespaces, malformed tokens
/// and tokens that do not decode to a valid [`ActorId`].
pub fn actor_of_subject(namespace: &Namespace, subject: &str) -> Option<ActorId> {
    let rest = subject.strip_prefix(SUBJECT_PREFIX)?.strip_prefix('.')?;
    let (ns_token, actor_token) = rest.split_once('.')?;
    if ns_token != encode_token(namespace.as_str()) {
        return None;
    }
    ActorId::new(decode_token(actor_token).ok()?).ok()
}

/// The KV bucket holding `namespace`'s snapshots.
pub fn snapshot_bucket(namespace: &Namespace) -> String {
    format!(
        "{SNAPSHOT_BUCKET_PREFIX}{}",
        encode_token(namespace.as_str())
    )
}

/// The KV key of `actor_id`'s snapshot.
pub fn snapshot_key(actor_id: &ActorId) -> String {
    encode_token(actor_id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_of_subject_inverts_actor_subject() {
        let ns = Namespace::new("prod.tenant-a").unwrap();
        for id in ["a", "a.b", "A_b-c", "ü", "x*y", "_41"] {
            let actor = ActorId::new(id).unwrap();
            assert_eq!(
                actor_of_subject(&ns, &actor_subject(&ns, &actor)),
                Some(actor)
            );
        }
        let other = Namespace::new("prod").unwrap();
        let actor = ActorId::new("a").unwrap();
        assert_eq!(actor_of_subject(&other, &actor_subject(&ns, &actor)), None);
        assert_eq!(actor_of_subject(&ns, "ae.x"), None);
        assert_eq!(actor_of_subject(&ns, "zz.prod_2etenant-a.a"), None);
    }

    #[test]
    fn examples_from_the_notes() {
        assert_eq!(encode_token("prod.tenant-a"), "prod_2etenant-a");
        assert_eq!(encode_token("prod_2etenant-a"), "prod_5f2etenant-a");
        assert_eq!(encode_token("Prod"), "_50rod");
        assert_eq!(encode_token("ü"), "_c3_bc");
    }

    #[test]
    fn longest_namespace_fits_a_stream_name() {
        let ns = Namespace::new("_".repeat(Namespace::MAX_LEN)).unwrap();
        assert!(stream_name(&ns).len() <= 255, "{}", stream_name(&ns).len());
    }

    #[test]
    fn decode_rejects_what_encode_never_writes() {
        for bad in ["A", "a.b", "a*", "_4", "_4G", "_4F", "_61", "_ff", "a b"] {
            assert!(decode_token(bad).is_err(), "{bad:?}");
        }
    }
}
