//! How an event travels on the bus: subject `aether.events.<namespace>` (live) or
//! `aether.durable.<namespace>` (stored in the bus stream, which republishes each stored event on
//! the live subject), the event's JSON as payload, and headers naming the bus instance that sent it (`Aether-Origin`) and its place in
//! that sender's sequence for the namespace (`Aether-Seq`), from which receivers count losses, and,
//! for an event that carries a trace context, its W3C `traceparent`.

use aether_core::{Event, EventId, Namespace, Pattern, TraceContext};
use async_nats::{HeaderMap, HeaderName, HeaderValue, Subject};
use bytes::Bytes;

use super::BusError;

/// First tokens of every live subject; the namespace's tokens follow.
pub const SUBJECT_PREFIX: &str = "aether.events";
/// First tokens of every durable subject (captured by the bus stream); the namespace's tokens
/// follow.
pub const DURABLE_SUBJECT_PREFIX: &str = "aether.durable";
/// Header naming the bus instance that published the event.
pub const ORIGIN_HEADER: &str = "Aether-Origin";
/// Header with the event's number in its sender's sequence for its namespace (1, 2, …).
pub const SEQUENCE_HEADER: &str = "Aether-Seq";
/// Header with the W3C trace context of the event (`00-<trace id>-<span id>-<flags>`): the
/// `traceId` and `spanId` of its metadata, present when the event carries both (see
/// [`aether_core::TraceContext`]).
pub const TRACEPARENT_HEADER: &str = aether_core::TraceContext::HEADER;
// Built once: converting a `&str` name validates and allocates on every lookup.
const ORIGIN: HeaderName = HeaderName::from_static(ORIGIN_HEADER);
const SEQUENCE: HeaderName = HeaderName::from_static(SEQUENCE_HEADER);
const TRACEPARENT: HeaderName = HeaderName::from_static(TRACEPARENT_HEADER);

/// Initial buffer for an encoded event.
const ENCODE_CAPACITY: usize = 512;

/// The live subject of `namespace`.
pub(crate) fn subject(namespace: &Namespace) -> Subject {
    Subject::from(format!("{SUBJECT_PREFIX}.{namespace}"))
}

/// The durable subject of `namespace`.
pub(crate) fn durable_subject(namespace: &Namespace) -> Subject {
    Subject::from(format!("{DURABLE_SUBJECT_PREFIX}.{namespace}"))
}

/// The live subject filter of `pattern` (namespace wildcards are NATS wildcards).
pub(crate) fn subject_filter(pattern: &Pattern) -> String {
    format!("{SUBJECT_PREFIX}.{pattern}")
}

/// The durable subject filter of `pattern`.
pub(crate) fn durable_filter(pattern: &Pattern) -> String {
    format!("{DURABLE_SUBJECT_PREFIX}.{pattern}")
}

/// The namespace a live subject belongs to; `None` for anything that is not one.
pub(crate) fn namespace_of(subject: &str) -> Option<Namespace> {
    namespace_after(SUBJECT_PREFIX, subject)
}

/// The namespace a durable subject belongs to; `None` for anything that is not one.
pub(crate) fn durable_namespace_of(subject: &str) -> Option<Namespace> {
    namespace_after(DURABLE_SUBJECT_PREFIX, subject)
}

fn namespace_after(prefix: &str, subject: &str) -> Option<Namespace> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    Namespace::new(rest).ok()
}

/// The `Nats-Msg-Id` of `event_id` published durably in `namespace`: `<namespace>:<event id>`.
/// The bus stream deduplicates on it, so scoping it by namespace keeps one tenant's event ids
/// from suppressing another's. Injective, since a namespace has no `:` (the first `:` ends it);
/// at most `Namespace::MAX_LEN + 1 + EventId::MAX_LEN` (336) bytes, well within what a header
/// value may hold.
pub(crate) fn durable_message_id(namespace: &Namespace, event_id: &EventId) -> String {
    let mut id = String::with_capacity(namespace.as_str().len() + 1 + event_id.as_str().len());
    id.push_str(namespace.as_str());
    id.push(':');
    id.push_str(event_id.as_str());
    id
}

pub(crate) fn encode(event: &Event) -> Result<Bytes, BusError> {
    // Room for a typical event at once: `to_vec` starts at 128 bytes and grows by copying.
    let mut buffer = Vec::with_capacity(ENCODE_CAPACITY);
    serde_json::to_writer(&mut buffer, event)
        .map(|()| Bytes::from(buffer))
        .map_err(|source| BusError::Encode {
            event_id: event.id.to_string(),
            source,
        })
}

pub(crate) fn decode(payload: &[u8]) -> Option<Event> {
    Event::from_json(payload).ok()
}

/// Headers of a live message.
pub(crate) fn live_headers(
    origin: &HeaderValue,
    sequence: u64,
    trace: Option<&HeaderValue>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ORIGIN, origin.clone());
    headers.insert(SEQUENCE, sequence.to_string());
    if let Some(trace) = trace {
        headers.insert(TRACEPARENT, trace.clone());
    }
    headers
}

/// Stamps the publisher's current trace context into an event that carries none, so that
/// its subscribers (here and on other nodes) continue the publisher's trace; then the
/// event's `traceparent`, if it carries a context.
pub(crate) fn trace(event: &mut Event) -> Option<HeaderValue> {
    if event.trace_id().is_none()
        && let Some(current) = TraceContext::current()
    {
        current.stamp(event);
    }
    TraceContext::from_event(event).map(|t| HeaderValue::from(t.to_string()))
}

/// The trace context a received message's `traceparent` names, if valid.
pub(crate) fn received_trace(headers: Option<&HeaderMap>) -> Option<TraceContext> {
    headers?.get(TRACEPARENT)?.as_str().parse().ok()
}

/// What a received message's headers say about where it came from.
pub(crate) struct Provenance<'a> {
    pub(crate) origin: Option<&'a str>,
    pub(crate) sequence: Option<u64>,
}

pub(crate) fn provenance(headers: Option<&HeaderMap>) -> Provenance<'_> {
    let get = |name| headers.and_then(|h| h.get(name)).map(HeaderValue::as_str);
    Provenance {
        origin: get(ORIGIN),
        sequence: get(SEQUENCE).and_then(|s| s.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_to_namespaces() {
        let ns = Namespace::new("prod.tenant-a").unwrap();
        assert_eq!(subject(&ns).as_str(), "aether.events.prod.tenant-a");
        assert_eq!(namespace_of("aether.events.prod.tenant-a"), Some(ns));
        assert_eq!(namespace_of("aether.events"), None);
        assert_eq!(namespace_of("aether.eventsx.a"), None);
        assert_eq!(namespace_of("ae.a.b"), None);
        let pattern = Pattern::new("prod.*").unwrap();
        assert_eq!(subject_filter(&pattern), "aether.events.prod.*");
        assert_eq!(durable_filter(&pattern), "aether.durable.prod.*");
        let ns = Namespace::new("a.b").unwrap();
        assert_eq!(durable_subject(&ns).as_str(), "aether.durable.a.b");
        assert_eq!(durable_namespace_of("aether.durable.a.b"), Some(ns));
        assert_eq!(durable_namespace_of("aether.events.a.b"), None);
        assert_eq!(namespace_of("aether.durable.a.b"), None);
    }

    #[test]
    fn durable_message_ids_are_scoped_by_namespace_and_injective() {
        let id = |ns: &str, event: &str| {
            durable_message_id(&Namespace::new(ns).unwrap(), &EventId::new(event).unwrap())
        };
        assert_eq!(id("prod.a", "e-1"), "prod.a:e-1");
        assert_ne!(id("a", "e-1"), id("b", "e-1"));
        // Event ids may hold ':' and '.', namespaces neither ':' nor anything after the first.
        assert_ne!(id("a", "b:c"), id("a.b", "c"));
        let longest = id(
            &"n".repeat(Namespace::MAX_LEN),
            &"e".repeat(EventId::MAX_LEN),
        );
        assert_eq!(longest.len(), Namespace::MAX_LEN + 1 + EventId::MAX_LEN);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode(b"not json").is_none());
        assert!(decode(b"{}").is_none());
    }
}
