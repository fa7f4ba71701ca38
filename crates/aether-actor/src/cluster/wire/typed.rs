//! The same requests and replies as [`Request`] and [`Reply`](super::Reply), written from and
//! read into the actor's own types without an intermediate JSON value: what nodes send each
//! other. The JSON is byte for byte the documented one (tests below).

use std::borrow::Cow;

use aether_cluster::MapVersion;
use aether_core::ActorId;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{ErrorKind, MAX_REQUEST_BYTES, Operation, Request, WireError, canonical};
use crate::CommandId;

/// A request's JSON body, written from borrowed parts.
///
/// # Errors
///
/// What serde says if `body` does not serialize.
pub(crate) fn encode_request<B: Serialize>(
    op: Operation,
    actor_id: &ActorId,
    command_id: Option<&CommandId>,
    body: &B,
) -> Result<Vec<u8>, serde_json::Error> {
    encode_request_with(op, actor_id, command_id, |out| {
        serde_json::to_writer(out, body)
    })
}

/// [`encode_request`] with the body written by `write_body` (which may check it as it goes).
///
/// # Errors
///
/// What `write_body` returns.
pub(crate) fn encode_request_with<E>(
    op: Operation,
    actor_id: &ActorId,
    command_id: Option<&CommandId>,
    write_body: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    // Written part by part (the keys need no escaping): byte for byte what serde writes for
    // the documented struct, for less than its generic struct machinery costs.
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(br#"{"op":""#);
    out.extend_from_slice(op.as_str().as_bytes());
    out.extend_from_slice(br#"","actorId":"#);
    write_str(&mut out, actor_id.as_str());
    if let Some(command_id) = command_id {
        out.extend_from_slice(br#","commandId":"#);
        write_str(&mut out, command_id.as_str());
    }
    out.extend_from_slice(br#","body":"#);
    write_body(&mut out)?;
    out.push(b'}');
    Ok(out)
}

/// `s` as a JSON string.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // A string always serializes, and a `Vec` never fails a write.
    let _ = serde_json::to_writer(out, s);
}

/// A checked request whose body is still JSON text, to be read into the actor's own type.
#[derive(Debug)]
pub(crate) struct RequestText<'a> {
    pub(crate) op: Operation,
    pub(crate) actor_id: ActorId,
    pub(crate) command_id: Option<CommandId>,
    /// The body's JSON text (`null` when absent).
    pub(crate) body: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct In<'a> {
    op: Operation,
    #[serde(borrow)]
    actor_id: Cow<'a, str>,
    #[serde(default, borrow)]
    command_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    body: Option<&'a RawValue>,
}

/// [`decode_request`], faster for a request in the form nodes write (see [`canonical`]): then
/// its body is **not yet checked to be JSON**. Whoever reads the body into a type checks it
/// that way; if it does not read, [`decode_request`] says whether the request itself is
/// invalid.
///
/// # Errors
///
/// As [`Request::decode`].
pub(crate) fn read_request(bytes: &[u8]) -> Result<RequestText<'_>, WireError> {
    if bytes.len() <= MAX_REQUEST_BYTES
        && let Some(request) = canonical::request(bytes)
    {
        return Ok(request);
    }
    decode_request(bytes)
}

/// Decodes and checks a request (the rules of [`Request::decode`]), leaving its body as text.
///
/// # Errors
///
/// As [`Request::decode`].
pub(crate) fn decode_request(bytes: &[u8]) -> Result<RequestText<'_>, WireError> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit: MAX_REQUEST_BYTES,
        });
    }
    let raw: In<'_> = serde_json::from_slice(bytes).map_err(|e| WireError::Malformed {
        reason: e.to_string(),
    })?;
    let actor_id = ActorId::new(raw.actor_id.as_ref()).map_err(|e| WireError::InvalidActorId {
        reason: e.to_string(),
    })?;
    let command_id = match (raw.op, raw.command_id) {
        (Operation::Query | Operation::Remind, None) => None,
        (Operation::Query | Operation::Remind, Some(_)) => {
            return Err(WireError::InvalidCommandId {
                reason: "a query or a reminder carries no command id".to_owned(),
            });
        }
        (Operation::Ask | Operation::Tell, None) => {
            return Err(WireError::InvalidCommandId {
                reason: "a command needs one (keep it across retries)".to_owned(),
            });
        }
        (Operation::Ask | Operation::Tell, Some(id)) => Some(CommandId::new(id.as_ref()).map_err(
            |e| WireError::InvalidCommandId {
                reason: e.to_string(),
            },
        )?),
    };
    Ok(RequestText {
        op: raw.op,
        actor_id,
        command_id,
        body: raw.body.map_or("null", RawValue::get),
    })
}

impl RequestText<'_> {
    /// The request with its body read as a JSON value.
    pub(crate) fn into_request(self) -> Result<Request, WireError> {
        let body = serde_json::from_str(self.body).map_err(|e| WireError::Malformed {
            reason: e.to_string(),
        })?;
        Ok(Request {
            op: self.op,
            actor_id: self.actor_id,
            command_id: self.command_id,
            body,
        })
    }
}

/// The replies a node writes from the actor's own values.
pub(crate) enum ReplyOut<'a, T, R> {
    Ok(&'a T),
    Rejected(&'a R),
}

impl<T: Serialize, R: Serialize> ReplyOut<'_, T, R> {
    /// The reply's JSON body.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        // As serde writes the enum, without its variant machinery.
        let mut out = Vec::with_capacity(64);
        match self {
            Self::Ok(value) => {
                out.extend_from_slice(br#"{"ok":"#);
                serde_json::to_writer(&mut out, value)?;
            }
            Self::Rejected(value) => {
                out.extend_from_slice(br#"{"rejected":"#);
                serde_json::to_writer(&mut out, value)?;
            }
        }
        out.push(b'}');
        Ok(out)
    }
}

/// A reply read into the actor's own types.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) enum ReplyIn<T, R> {
    Ok(T),
    Rejected(R),
    #[serde(rename_all = "camelCase")]
    Moved {
        map_version: MapVersion,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

impl<T: serde::de::DeserializeOwned, R: serde::de::DeserializeOwned> ReplyIn<T, R> {
    /// Decodes a reply.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        // Most replies are `{"ok":…}` as nodes write them: read the value alone (see
        // [`canonical`]); whatever else it is, serde decides.
        if let Some(value) = canonical::ok_reply(bytes)
            && let Ok(value) = serde_json::from_slice(value)
        {
            return Ok(Self::Ok(value));
        }
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Reply;
    use super::*;

    #[test]
    fn typed_requests_are_the_documented_json() {
        let actor = ActorId::new("acct-1").unwrap();
        let command = CommandId::new("c-1").unwrap();
        let body = json!({"Deposit": {"cents": 5}});
        let typed = encode_request(Operation::Ask, &actor, Some(&command), &body).unwrap();
        let documented = Request {
            op: Operation::Ask,
            actor_id: actor.clone(),
            command_id: Some(command),
            body,
        };
        assert_eq!(typed, documented.encode());
        let text = decode_request(&typed).unwrap();
        assert_eq!(text.body, r#"{"Deposit":{"cents":5}}"#);
        assert_eq!(text.into_request().unwrap(), documented);
        let query = encode_request(Operation::Query, &actor, None, &"Balance").unwrap();
        assert_eq!(
            query,
            br#"{"op":"query","actorId":"acct-1","body":"Balance"}"#
        );
        // No body: null.
        let bare = decode_request(br#"{"op":"query","actorId":"a"}"#).unwrap();
        assert_eq!(bare.body, "null");
        // Escaped ids are read too.
        let escaped = decode_request(br#"{"op":"query","actorId":"a\u002d1"}"#).unwrap();
        assert_eq!(escaped.actor_id.as_str(), "a-1");
    }

    #[test]
    fn typed_replies_are_the_documented_json() {
        let ok = ReplyOut::<_, ()>::Ok(&json!({"balance": 5}))
            .encode()
            .unwrap();
        assert_eq!(ok, Reply::Ok(json!({"balance": 5})).encode());
        let rejected = ReplyOut::<(), _>::Rejected(&"no").encode().unwrap();
        assert_eq!(rejected, Reply::Rejected(json!("no")).encode());
        let moved = Reply::Moved {
            map_version: MapVersion::new(7),
        }
        .encode();
        assert!(matches!(
            ReplyIn::<u64, String>::decode(&moved).unwrap(),
            ReplyIn::Moved { map_version } if map_version == MapVersion::new(7)
        ));
        assert!(matches!(
            ReplyIn::<u64, String>::decode(br#"{"ok":3}"#).unwrap(),
            ReplyIn::Ok(3)
        ));
        assert!(ReplyIn::<u64, String>::decode(br#"{"ok":"three"}"#).is_err());
    }
}
