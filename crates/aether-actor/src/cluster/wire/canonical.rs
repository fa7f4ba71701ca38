//! Requests and replies in the exact form nodes write them — keys in the documented order, no
//! whitespace, ids without escapes — read by slicing instead of by serde. On the path of every
//! cross-node call, serde's generic struct and enum machinery cost more instructions than the
//! rest of the envelope. Anything else (another client's whitespace or key order, an escaped
//! id, an invalid request) is not recognised here and is left to serde, which then gives the
//! same result or the typed error; the property tests below hold the two readers to that.

use aether_core::ActorId;

use super::Operation;
use super::typed::RequestText;
use crate::CommandId;

/// The request if it is in the form [`encode_request`](super::typed::encode_request)
/// writes, else `None`. Its body is the text between `"body":` and the closing brace, **not
/// checked to be JSON**: whoever reads it into a type checks it (serde's readers accept only
/// one complete JSON value), and a body that does not read sends the request to the full
/// reader for its own error (a body that is not one JSON value is never a valid request).
pub(super) fn request(bytes: &[u8]) -> Option<RequestText<'_>> {
    // Byte by byte: `str`'s searches set up more than these few bytes need.
    let rest = bytes.strip_prefix(br#"{"op":""#)?;
    let (op, rest) = [
        (Operation::Query, &br#"query","actorId":""#[..]),
        (Operation::Ask, br#"ask","actorId":""#),
        (Operation::Tell, br#"tell","actorId":""#),
        (Operation::Remind, br#"remind","actorId":""#),
    ]
    .into_iter()
    .find_map(|(op, prefix)| Some((op, rest.strip_prefix(prefix)?)))?;
    let (actor_id, rest) = unescaped(rest)?;
    let (command_id, rest) = match rest.strip_prefix(br#","commandId":""#) {
        Some(rest) => {
            let (id, rest) = unescaped(rest)?;
            (Some(id), rest)
        }
        None => (None, rest),
    };
    let body = json_trimmed(rest.strip_prefix(br#","body":"#)?.strip_suffix(b"}")?);
    if body.is_empty() {
        return None;
    }
    let command_id = match (op, command_id) {
        (Operation::Query | Operation::Remind, None) => None,
        (Operation::Ask | Operation::Tell, Some(id)) => Some(CommandId::new(id).ok()?),
        // The full reader says what is wrong.
        _ => return None,
    };
    Some(RequestText {
        op,
        actor_id: ActorId::new(actor_id).ok()?,
        command_id,
        body: std::str::from_utf8(body).ok()?,
    })
}

/// `bytes` without JSON's whitespace around them, as serde's reader gives a value (not
/// `trim_ascii`: a form feed is not JSON whitespace).
fn json_trimmed(bytes: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = bytes.iter().position(|b| !space(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// A JSON string's contents and what follows its closing quote, if it has no escape.
fn unescaped(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = bytes.iter().position(|&b| b == b'"' || b == b'\\')?;
    if bytes[end] != b'"' {
        return None;
    }
    Some((std::str::from_utf8(&bytes[..end]).ok()?, &bytes[end + 1..]))
}

/// The JSON value `v` of a reply `{"ok":v}`, if the reply has that form (else the full reader
/// decides what it is).
pub(super) fn ok_reply(bytes: &[u8]) -> Option<&[u8]> {
    bytes.strip_prefix(br#"{"ok":"#)?.strip_suffix(b"}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::super::typed::{ReplyIn, decode_request, encode_request};
    use super::*;

    fn operation() -> impl Strategy<Value = Operation> {
        prop_oneof![
            Just(Operation::Ask),
            Just(Operation::Tell),
            Just(Operation::Query),
            Just(Operation::Remind),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Fractions that print and read back exactly (serde_json's default float
            // parsing is not round-trip exact, which is not what this tests).
            (-4000i32..4000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Ids with the characters that need escaping in JSON, and valid and invalid ones.
    fn id() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z0-9.-]{1,12}", r#"[a-z"\\\\/. é\u{1}*>]{0,8}"#,]
    }

    /// What the fast reader found, comparable with the full reader's.
    fn parts(r: &RequestText<'_>) -> (Operation, String, Option<String>, Value) {
        (
            r.op,
            r.actor_id.as_str().to_owned(),
            r.command_id.as_ref().map(|c| c.as_str().to_owned()),
            serde_json::from_str(r.body).expect("a checked body"),
        )
    }

    /// The contract: where the fast reader reads a request whose body is one JSON value, the
    /// full reader reads the same request; where its body is not, the full reader refuses it.
    fn agrees(bytes: &[u8]) -> Result<(), TestCaseError> {
        let Some(fast) = request(bytes) else {
            return Ok(());
        };
        let full = decode_request(bytes);
        if serde_json::from_str::<serde::de::IgnoredAny>(fast.body).is_ok() {
            let full = full.map_err(|e| TestCaseError::fail(format!("full reader: {e}")))?;
            prop_assert_eq!(fast.body, full.body, "the same text, so the same size");
            prop_assert_eq!(parts(&fast), parts(&full));
        } else {
            prop_assert!(full.is_err(), "{}", String::from_utf8_lossy(bytes));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn requests_as_nodes_write_them_read_as_serde_reads_them(
            op in operation(),
            actor_id in id(),
            command_id in id(),
            body in json(),
        ) {
            let (Ok(actor_id), Ok(command_id)) = (ActorId::new(&actor_id), CommandId::new(&command_id)) else {
                return Ok(());
            };
            let command_id = matches!(op, Operation::Ask | Operation::Tell).then_some(command_id);
            let bytes = encode_request(op, &actor_id, command_id.as_ref(), &body).unwrap();
            // Written part by part, byte for byte what serde writes for the documented struct.
            let documented = super::super::Request {
                op,
                actor_id: actor_id.clone(),
                command_id: command_id.clone(),
                body,
            };
            prop_assert_eq!(&bytes, &documented.encode());
            let full = decode_request(&bytes).unwrap();
            let escaped = |id: &str| serde_json::to_string(id).unwrap().contains('\\');
            match request(&bytes) {
                Some(fast) => prop_assert_eq!(parts(&fast), parts(&full)),
                // Only an escaped id leaves the fast reader.
                None => prop_assert!(
                    escaped(actor_id.as_str()) || command_id.is_some_and(|c| escaped(c.as_str()))
                ),
            }
            agrees(&bytes)?;
        }

        #[test]
        fn changed_requests_are_read_alike_or_left_to_serde(
            op in operation(),
            actor_id in "[a-z0-9-]{1,8}",
            body in json(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
        ) {
            let actor_id = ActorId::new(actor_id).unwrap();
            let command_id = CommandId::new("c-1").unwrap();
            let command_id = matches!(op, Operation::Ask | Operation::Tell).then_some(&command_id);
            let mut bytes = encode_request(op, &actor_id, command_id, &body).unwrap();
            // Replace, insert or remove bytes, with a bias to JSON's own.
            for (at, byte, kind) in edits {
                let byte = b"{}[]\",:\\ 1n\t\x0c"[usize::from(byte) % 13];
                let at = at.index(bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => { bytes.remove(at); }
                    _ => bytes.push(byte),
                }
            }
            agrees(&bytes)?;
        }

        #[test]
        fn ok_replies_read_as_serde_reads_them(body in json(), tail in prop::collection::vec(any::<u8>(), 0..3)) {
            let mut bytes = br#"{"ok":"#.to_vec();
            bytes.extend(serde_json::to_vec(&body).unwrap());
            bytes.push(b'}');
            let inner = ok_reply(&bytes).expect("an ok reply");
            prop_assert_eq!(serde_json::from_slice::<Value>(inner).unwrap(), body);
            // With something after it, whatever it reads as, serde reads alike.
            bytes.extend(tail);
            let full = ReplyIn::<Value, Value>::decode(&bytes);
            if let Some(inner) = ok_reply(&bytes) && let Ok(value) = serde_json::from_slice::<Value>(inner) {
                prop_assert!(matches!(full, Ok(ReplyIn::Ok(v)) if v == value));
            }
        }
    }

    #[test]
    fn other_forms_are_left_to_serde() {
        for json in [
            r#"{ "op":"query","actorId":"a","body":null}"#,
            r#"{"actorId":"a","op":"query","body":null}"#,
            r#"{"op":"query","actorId":"a\u002d1","body":null}"#,
            r#"{"op":"query","actorId":"a","commandId":"c","body":null}"#,
            r#"{"op":"ask","actorId":"a","body":null}"#,
            r#"{"op":"query","actorId":"a b","body":null}"#,
            r#"{"op":"query","actorId":"a","body":}"#,
            r#"{"op":"delete","actorId":"a","body":null}"#,
            r#"{"op":"query","actorId":"a","body":null"#,
        ] {
            assert!(request(json.as_bytes()).is_none(), "{json}");
        }
        let fast = request(br#"{"op":"ask","actorId":"a","commandId":"c","body":{"x":1}}"#)
            .expect("canonical");
        assert_eq!((fast.op, fast.body), (Operation::Ask, r#"{"x":1}"#));
        // The body without JSON's whitespace around it, as serde gives it; a form feed is
        // not JSON whitespace (the body then does not read, and serde refuses the request).
        let spaced = request(b"{\"op\":\"query\",\"actorId\":\"a\",\"body\": \t\nnull\r }")
            .expect("canonical");
        assert_eq!(spaced.body, "null");
        let fed =
            request(b"{\"op\":\"query\",\"actorId\":\"a\",\"body\":\x0cnull}").expect("canonical");
        assert_eq!(fed.body, "\x0cnull");
        assert!(decode_request(b"{\"op\":\"query\",\"actorId\":\"a\",\"body\":\x0cnull}").is_err());
        assert_eq!(ok_reply(br#"{"ok":3}"#), Some(&b"3"[..]));
        assert_eq!(ok_reply(br#"{"rejected":3}"#), None);
    }
}
