//! The wire format of actor requests between nodes (ADR 0009, "Routing"): plain NATS
//! request/reply with a JSON body and two headers, so that `nats req` or a client in another
//! language can call an actor.
//!
//! **Subject**: `aether.actor.<namespace>.<actor type>.<node>`, each part one token encoded
//! injectively (`a-z`, `0-9` and `-` kept, every other byte as `_xx`; see
//! [`aether_nats::naming::encode_token`]). Each node subscribes to its own subject per
//! namespace and actor type; a sender addresses the node that owns the actor's shard in its
//! placement.
//!
//! **Request body** (JSON, camelCase):
//!
//! ```json
//! {"op": "ask", "actorId": "acct-42", "commandId": "transfer-7", "body": {"Deposit": {"cents": 5}}}
//! ```
//!
//! Any JSON with these keys is read. Nodes write exactly this form — keys in this order,
//! no whitespace — and read it fastest; a client in another language gains by doing the same
//! but need not.
//!
//! A command's `body` is refused (error kind `invalid`) if it is longer than the serving
//! node's [`ActorConfig::max_command_bytes`](crate::ActorConfig::max_command_bytes), counted
//! as received, without the whitespace around it.
//!
//! `op` is `ask`, `tell`, `query` or `remind`; `commandId` is required for `ask` and `tell`
//! (kept across retries: it is what makes a retry apply at most once) and absent for `query`
//! and `remind`; `body` is the command or query as the actor type's serde form, or for
//! `remind` the name of a reminder that came due on the sending node (which no longer serves
//! the actor): the owner wakes the actor, which fires the reminder if its own persisted table
//! still holds it due (once: the firing's command id is derived from the actor, the name and
//! the due time). The answer to `remind` is `{"ok": null}`.
//!
//! **Headers**: `Aether-Map-Version` (the sender's placement version, a decimal number;
//! required), `Aether-Deadline-Ms` (milliseconds the sender still waits, optional) and, on an
//! `ask` made by an actor's effect, `Aether-Call-Chain`: the actors waiting for it, outermost
//! first, as a JSON array of `"<namespace>/<actor type>.<actor id>"` (at most
//! [`MAX_CALL_CHAIN`]). An ask to an actor in its own chain would wait for itself: it is
//! answered with the error kind `reentrant` and nothing is done. `traceparent` (optional,
//! [W3C trace context](https://www.w3.org/TR/trace-context/),
//! `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`): the calling span; the serving
//! node's `aether.actor.request` span continues that trace with it as parent, and the events
//! the command stores carry the trace id in their `traceId` metadata. A missing or invalid
//! value starts a new trace if the serving node records the span (a subscriber wants it),
//! and none otherwise. A caller with no context of its own sends one only when its
//! `aether.actor.call` span is recorded.
//!
//! **Reply body**: exactly one of
//!
//! ```json
//! {"ok": <the reply, or the outcome of an ask>}
//! {"rejected": <the actor's rejection>}
//! {"moved": {"mapVersion": 7}}
//! {"error": {"kind": "timeout", "message": "…"}}
//! ```
//!
//! `moved`: the node does not serve the actor's shard (or is handing it off); refresh the
//! placement to at least `mapVersion` and send again, with the same command id. `error`
//! kinds: see [`ErrorKind`].
//!
//! For example, with the `nats` CLI (namespace `bank`, actor type `account`, node `n1`):
//!
//! ```text
//! nats req aether.actor.bank.account.n1 \
//!   '{"op":"query","actorId":"acct-42","body":null}' -H 'Aether-Map-Version: 7'
//! ```

mod canonical;
pub(crate) mod typed;

use aether_cluster::MapVersion;
use aether_core::{ActorId, Namespace, NodeId};
use aether_nats::naming::encode_token;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CommandId;

/// First token of every actor request subject.
pub const SUBJECT_PREFIX: &str = "aether.actor";
/// Header: the sender's placement version.
pub const MAP_VERSION_HEADER: &str = "Aether-Map-Version";
/// Header: milliseconds the sender still waits for the answer.
pub const DEADLINE_HEADER: &str = "Aether-Deadline-Ms";
/// Header: the W3C trace context of the calling span (`00-<trace id>-<span id>-<flags>`;
/// see [`aether_core::TraceContext`]). Optional; a bad value is ignored (as if missing).
pub const TRACEPARENT_HEADER: &str = aether_core::TraceContext::HEADER;
/// Header: the actors waiting in a chain of asks made by effects (a JSON array of strings).
pub const CALL_CHAIN_HEADER: &str = "Aether-Call-Chain";

/// The headers' names as async-nats keys, built once: looking a header up by a `&str`
/// validates and copies the name on every call.
pub(crate) mod names {
    use async_nats::header::HeaderName;

    pub(crate) const MAP_VERSION: HeaderName = HeaderName::from_static(super::MAP_VERSION_HEADER);
    pub(crate) const DEADLINE: HeaderName = HeaderName::from_static(super::DEADLINE_HEADER);
    pub(crate) const CALL_CHAIN: HeaderName = HeaderName::from_static(super::CALL_CHAIN_HEADER);
    pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static(super::TRACEPARENT_HEADER);
}
/// Most actors an `Aether-Call-Chain` may name.
pub const MAX_CALL_CHAIN: usize = 64;
/// Largest request body a node decodes.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The subject of the actors of type `actor_type` in `namespace` on `node`.
///
/// # Examples
///
/// ```
/// use aether_actor::cluster::wire::request_subject;
/// use aether_core::{Namespace, NodeId};
///
/// let subject = request_subject(&Namespace::new("bank")?, "account", &NodeId::new("n1")?);
/// assert_eq!(subject, "aether.actor.bank.account.n1");
/// // Dots and wildcards never leave their token.
/// let odd = request_subject(&Namespace::new("a.b")?, "x*", &NodeId::new("n1")?);
/// assert_eq!(odd, "aether.actor.a_2eb.x_2a.n1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn request_subject(namespace: &Namespace, actor_type: &str, node: &NodeId) -> String {
    format!(
        "{}{}",
        request_subject_prefix(namespace, actor_type),
        encode_token(node.as_str())
    )
}

/// [`request_subject`] less the node: `aether.actor.<namespace>.<actor type>.`.
pub(crate) fn request_subject_prefix(namespace: &Namespace, actor_type: &str) -> String {
    format!(
        "{SUBJECT_PREFIX}.{}.{}.",
        encode_token(namespace.as_str()),
        encode_token(actor_type),
    )
}

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    /// A command; the answer is its outcome.
    Ask,
    /// A command; the answer says only that it was taken.
    Tell,
    /// A read-only query.
    Query,
    /// A reminder of the actor came due on the sending node: wake the actor.
    Remind,
}

impl Operation {
    /// The operation as written in a request (`ask`, `tell`, `query`, `remind`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ask => "ask",
            Self::Tell => "tell",
            Self::Query => "query",
            Self::Remind => "remind",
        }
    }
}

/// The JSON body of a request, as sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct RawRequest {
    op: Operation,
    actor_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_id: Option<String>,
    body: Value,
}

/// A decoded, checked request: the actor and command ids are valid, a command carries an id
/// and a query none.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// What it asks.
    pub op: Operation,
    /// The actor.
    pub actor_id: ActorId,
    /// The command's id (`ask`, `tell`); `None` for a query or a reminder.
    pub command_id: Option<CommandId>,
    /// The command or query, as the actor type's serde form.
    pub body: Value,
}

/// A request that cannot be served as sent. Nothing was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body is larger than [`MAX_REQUEST_BYTES`].
    #[error("request body of {size} bytes is larger than the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is not a request's JSON.
    #[error("request body is not a request: {reason}")]
    Malformed {
        /// What serde said.
        reason: String,
    },
    /// The actor id is not valid.
    #[error("invalid actor id: {reason}")]
    InvalidActorId {
        /// Why.
        reason: String,
    },
    /// The command id is not valid, or missing on a command, or present on a query.
    #[error("invalid command id: {reason}")]
    InvalidCommandId {
        /// Why.
        reason: String,
    },
    /// A header is missing or not a number.
    #[error("header {header}: {reason}")]
    BadHeader {
        /// The header.
        header: &'static str,
        /// Why.
        reason: String,
    },
}

impl Request {
    /// A request's JSON body.
    ///
    /// # Examples
    ///
    /// ```
    /// use aether_actor::CommandId;
    /// use aether_actor::cluster::wire::{Operation, Request};
    /// use aether_core::ActorId;
    ///
    /// let request = Request {
    ///     op: Operation::Ask,
    ///     actor_id: ActorId::new("acct-42")?,
    ///     command_id: Some(CommandId::new("transfer-7")?),
    ///     body: serde_json::json!({"Deposit": {"cents": 5}}),
    /// };
    /// let bytes = request.encode();
    /// assert_eq!(Request::decode(&bytes)?, request);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let raw = RawRequest {
            op: self.op,
            actor_id: self.actor_id.as_str().to_owned(),
            command_id: self.command_id.as_ref().map(|c| c.as_str().to_owned()),
            body: self.body.clone(),
        };
        // A struct of strings and a JSON value always serializes.
        serde_json::to_vec(&raw).unwrap_or_default()
    }

    /// Decodes and checks a request's JSON body.
    ///
    /// # Errors
    ///
    /// [`WireError`] for a body that is too large or not a request, an invalid actor id, a
    /// command without a valid command id, or a query with one.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        typed::decode_request(bytes)?.into_request()
    }
}

/// The call chain of a request made by an actor's effect, from its headers (empty without
/// the header).
///
/// # Errors
///
/// [`WireError::BadHeader`] if [`CALL_CHAIN_HEADER`] is not a JSON array of at most
/// [`MAX_CALL_CHAIN`] strings.
///
/// # Examples
///
/// ```
/// use aether_actor::cluster::wire::{CALL_CHAIN_HEADER, call_chain};
///
/// let mut headers = async_nats::HeaderMap::new();
/// assert!(call_chain(Some(&headers))?.is_empty());
/// headers.insert(CALL_CHAIN_HEADER, r#"["bank/account.a"]"#);
/// assert_eq!(call_chain(Some(&headers))?, ["bank/account.a"]);
/// headers.insert(CALL_CHAIN_HEADER, "bank/account.a");
/// assert!(call_chain(Some(&headers)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn call_chain(headers: Option<&async_nats::HeaderMap>) -> Result<Vec<String>, WireError> {
    parse_call_chain(
        headers
            .and_then(|h| h.get(names::CALL_CHAIN))
            .map(|v| v.as_str()),
    )
}

/// [`call_chain`] from the header's value.
pub(crate) fn parse_call_chain(value: Option<&str>) -> Result<Vec<String>, WireError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let chain: Vec<String> = serde_json::from_str(value).map_err(|_| WireError::BadHeader {
        header: CALL_CHAIN_HEADER,
        reason: "not a JSON array of strings".to_owned(),
    })?;
    if chain.len() > MAX_CALL_CHAIN {
        return Err(WireError::BadHeader {
            header: CALL_CHAIN_HEADER,
            reason: format!(
                "{} actors, more than the limit of {MAX_CALL_CHAIN}",
                chain.len()
            ),
        });
    }
    Ok(chain)
}

/// The sender's placement version, from the request's headers.
///
/// # Errors
///
/// [`WireError::BadHeader`] if [`MAP_VERSION_HEADER`] is missing or not a number.
pub fn map_version(headers: Option<&async_nats::HeaderMap>) -> Result<MapVersion, WireError> {
    parse_map_version(
        headers
            .and_then(|h| h.get(names::MAP_VERSION))
            .map(|v| v.as_str()),
    )
}

/// [`map_version`] from the header's value.
pub(crate) fn parse_map_version(value: Option<&str>) -> Result<MapVersion, WireError> {
    let bad = |reason: &str| WireError::BadHeader {
        header: MAP_VERSION_HEADER,
        reason: reason.to_owned(),
    };
    value
        .ok_or_else(|| bad("missing"))?
        .parse::<u64>()
        .map(MapVersion::new)
        .map_err(|_| bad("not a decimal number"))
}

/// The values of Aether's request headers, found in one pass over a request's headers: each
/// lookup by name hashes the name, and four lookups cost more than one pass over the few
/// headers a request has. The first value of each, as `HeaderMap::get` gives.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RequestHeaders<'a> {
    pub(crate) map_version: Option<&'a str>,
    pub(crate) deadline: Option<&'a str>,
    pub(crate) call_chain: Option<&'a str>,
    pub(crate) traceparent: Option<&'a str>,
}

impl<'a> RequestHeaders<'a> {
    pub(crate) fn read(headers: Option<&'a async_nats::HeaderMap>) -> Self {
        let mut found = Self::default();
        for (name, values) in headers.into_iter().flat_map(async_nats::HeaderMap::iter) {
            let name: &str = name.as_ref();
            let slot = match name {
                MAP_VERSION_HEADER => &mut found.map_version,
                DEADLINE_HEADER => &mut found.deadline,
                CALL_CHAIN_HEADER => &mut found.call_chain,
                TRACEPARENT_HEADER => &mut found.traceparent,
                _ => continue,
            };
            *slot = values.first().map(async_nats::HeaderValue::as_str);
        }
        found
    }
}

/// Why a request failed, in a reply's `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request was not valid (see the message); nothing was done. Do not retry as is.
    Invalid,
    /// The actor's mailbox was full; nothing was delivered. Retry later.
    Overloaded,
    /// No answer within the deadline; the outcome is unknown. Retry with the same command id.
    Timeout,
    /// Another writer got there first; nothing was written. Retry (the actor reloads).
    Conflict,
    /// The node cannot serve now (its membership is not current, it is shutting down); retry
    /// after refreshing the placement.
    Unavailable,
    /// Anything else (an activation, store or codec failure; see the message).
    Internal,
    /// The actor is waiting in the request's call chain (`Aether-Call-Chain`) and would wait
    /// for itself; nothing was done.
    Reentrant,
}

/// A reply's JSON body: exactly one of its variants.
///
/// # Examples
///
/// ```
/// use aether_actor::cluster::wire::Reply;
/// use aether_cluster::MapVersion;
///
/// let moved = Reply::Moved { map_version: MapVersion::new(7) };
/// assert_eq!(String::from_utf8(moved.encode())?, r#"{"moved":{"mapVersion":7}}"#);
/// assert_eq!(Reply::decode(br#"{"ok":3}"#)?, Reply::Ok(serde_json::json!(3)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Reply {
    /// The answer: the query's reply, or the command's outcome.
    Ok(Value),
    /// The actor rejected the command; nothing was written.
    Rejected(Value),
    /// Not served by this node: refresh the placement to at least `map_version`.
    #[serde(rename_all = "camelCase")]
    Moved {
        /// The node's placement version.
        map_version: MapVersion,
    },
    /// The request failed.
    Error {
        /// Why, for the sender to act on.
        kind: ErrorKind,
        /// What happened, for a person.
        message: String,
    },
}

impl Reply {
    /// The reply's JSON body.
    pub fn encode(&self) -> Vec<u8> {
        // Plain data: always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a reply's JSON body.
    ///
    /// # Errors
    ///
    /// [`WireError::Malformed`] if it is not exactly one of the reply's forms.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed {
            reason: e.to_string(),
        })
    }
}

impl ErrorKind {
    /// Its name on the wire (`invalid`, `overloaded`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::Reentrant => "reentrant",
        }
    }
}

/// The `ok` of an `ask`: the command's [`Outcome`](crate::Outcome) (camelCase), with the
/// actor's reply in `reply`.
///
/// ```json
/// {"commandId": "transfer-7", "written": {"first": 4, "last": 4}, "version": 4, "reply": 95, "duplicate": false}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AskOk<R> {
    /// The command id.
    pub command_id: String,
    /// The versions written (`null`: none).
    pub written: Option<crate::VersionRange>,
    /// The actor's version after the command.
    pub version: aether_core::Version,
    /// The actor's reply.
    pub reply: R,
    /// True if the command had been applied before and this is its stored outcome.
    pub duplicate: bool,
}

impl<R> From<crate::Outcome<R>> for AskOk<R> {
    fn from(outcome: crate::Outcome<R>) -> Self {
        Self {
            command_id: outcome.command_id.as_str().to_owned(),
            written: outcome.written,
            version: outcome.version,
            reply: outcome.reply,
            duplicate: outcome.duplicate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_over_the_headers_finds_what_lookups_by_name_find() {
        let mut headers = async_nats::HeaderMap::new();
        let found = RequestHeaders::read(Some(&headers));
        assert_eq!(
            (found.map_version, found.deadline, found.call_chain),
            (None, None, None)
        );
        assert!(RequestHeaders::read(None).traceparent.is_none());
        headers.insert(MAP_VERSION_HEADER, "7");
        headers.append(MAP_VERSION_HEADER, "8");
        headers.insert(DEADLINE_HEADER, "250");
        headers.insert(CALL_CHAIN_HEADER, r#"["bank/account.a"]"#);
        headers.insert(TRACEPARENT_HEADER, "00-x");
        headers.insert("Other", "1");
        headers.insert("aether-map-version", "9");
        let found = RequestHeaders::read(Some(&headers));
        let get = |name: &str| headers.get(name).map(|v| v.as_str());
        assert_eq!(found.map_version, get(MAP_VERSION_HEADER));
        assert_eq!(
            found.map_version,
            Some("7"),
            "the first value, the name as written"
        );
        assert_eq!(found.deadline, get(DEADLINE_HEADER));
        assert_eq!(found.call_chain, get(CALL_CHAIN_HEADER));
        assert_eq!(found.traceparent, get(TRACEPARENT_HEADER));
        assert_eq!(
            parse_map_version(found.map_version).unwrap(),
            map_version(Some(&headers)).unwrap()
        );
        assert_eq!(
            parse_call_chain(found.call_chain).unwrap(),
            call_chain(Some(&headers)).unwrap()
        );
    }

    fn decode(json: &str) -> Result<Request, WireError> {
        Request::decode(json.as_bytes())
    }

    #[test]
    fn requests_round_trip_and_queries_carry_no_command_id() {
        let query = decode(r#"{"op":"query","actorId":"acct-1","body":null}"#).expect("query");
        assert_eq!(query.op, Operation::Query);
        assert_eq!(query.command_id, None);
        assert_eq!(Request::decode(&query.encode()), Ok(query));
        let tell = decode(r#"{"op":"tell","actorId":"a","commandId":"c-1","body":{"x":1}}"#)
            .expect("tell");
        assert_eq!(tell.command_id.as_ref().map(CommandId::as_str), Some("c-1"));
    }

    #[test]
    fn bad_requests_get_typed_errors() {
        let cases = [
            ("not json", "Malformed"),
            (r#"{"op":"delete","actorId":"a"}"#, "Malformed"),
            (r#"{"op":"query","actorId":"a","extra":1}"#, "Malformed"),
            (r#"{"op":"query"}"#, "Malformed"),
            (r#"{"op":"query","actorId":""}"#, "InvalidActorId"),
            (r#"{"op":"query","actorId":"a b"}"#, "InvalidActorId"),
            (r#"{"op":"ask","actorId":"a"}"#, "InvalidCommandId"),
            (
                r#"{"op":"ask","actorId":"a","commandId":"has space"}"#,
                "InvalidCommandId",
            ),
            (
                r#"{"op":"query","actorId":"a","commandId":"c"}"#,
                "InvalidCommandId",
            ),
        ];
        for (json, kind) in cases {
            let error = decode(json).expect_err(json);
            assert!(format!("{error:?}").starts_with(kind), "{json}: {error:?}");
        }
        let huge = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(matches!(
            Request::decode(&huge),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_map_version_header_is_required_and_numeric() {
        let mut headers = async_nats::HeaderMap::new();
        assert!(map_version(None).is_err());
        assert!(map_version(Some(&headers)).is_err());
        headers.insert(MAP_VERSION_HEADER, "seven");
        assert!(map_version(Some(&headers)).is_err());
        headers.insert(MAP_VERSION_HEADER, "7");
        assert_eq!(map_version(Some(&headers)), Ok(MapVersion::new(7)));
    }

    #[test]
    fn replies_have_exactly_one_form() {
        for reply in [
            Reply::Ok(serde_json::json!({"balance": 5})),
            Reply::Rejected(serde_json::json!("insufficient funds")),
            Reply::Moved {
                map_version: MapVersion::new(3),
            },
            Reply::Error {
                kind: ErrorKind::Timeout,
                message: "no answer in 5s".to_owned(),
            },
        ] {
            assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
        }
        assert!(Reply::decode(br#"{"ok":1,"moved":{"mapVersion":2}}"#).is_err());
        assert!(Reply::decode(br#"{"error":{"kind":"nope","message":""}}"#).is_err());
    }

    #[test]
    fn subjects_are_injective_per_token() {
        let ns = |s| Namespace::new(s).expect("namespace");
        let node = NodeId::new("n1").expect("node");
        // Without escaping, these pairs would collide or spill into other tokens.
        assert_ne!(
            request_subject(&ns("a.b"), "c", &node),
            request_subject(&ns("a"), "b.c", &node)
        );
        assert_ne!(
            request_subject(&ns("a_2eb"), "c", &node),
            request_subject(&ns("a.b"), "c", &node)
        );
        assert_eq!(
            request_subject(&ns("a.b"), "c", &node).split('.').count(),
            5
        );
    }
}
