//! [`TraceContext`]: the W3C trace context (`traceparent`) that links the spans of one request
//! across nodes, without an OpenTelemetry SDK.
//!
//! Aether carries the context in the `traceparent` header of its NATS messages (bus events,
//! actor requests) and in the `traceId` / `spanId` metadata of the events a command stores. The
//! current context is explicit: a caller runs its work in [`TraceContext::scope`], and Aether's
//! own spans (`aether.actor.call`, `aether.actor.request`, `aether.actor.command`,
//! `aether.bus.receive`) record `trace_id`, `span_id` and `parent_span_id` fields.
//!
//! ## With OpenTelemetry
//!
//! A service that exports spans with `tracing-opentelemetry` connects the two in its own code:
//! read the OpenTelemetry span context of the current span (`trace_id`, `span_id`, sampled
//! flag) into a [`TraceContext`] with [`TraceContext::new`], and run the call in
//! [`TraceContext::scope`]; on the serving side, a layer can use the `trace_id` and
//! `parent_span_id` fields of `aether.actor.request` to set the remote parent.

mod scope;

use std::fmt;
use std::str::FromStr;

pub use scope::Scoped;

/// A W3C trace context: a trace id, the id of the span that is the parent of the next hop, and
/// the trace flags (bit 0: sampled).
///
/// Formats as and parses from a `traceparent` header value,
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` (version 00; see
/// <https://www.w3.org/TR/trace-context/>).
///
/// # Examples
///
/// ```
/// use aether_core::TraceContext;
///
/// let parent: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
/// let child = parent.child();
/// assert_eq!(child.trace_id(), parent.trace_id());
/// assert_ne!(child.span_id(), parent.span_id());
/// assert_eq!(child.to_string().len(), 55);
/// # Ok::<(), aether_core::TraceParentError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Not `version-traceid-spanid-flags` with 2, 32, 16 and 2 characters.
    #[error(
        "traceparent: expected 00-<32 hex>-<16 hex>-<2 hex> (55 characters), got {len} characters"
    )]
    Shape {
        /// Length of the value.
        len: usize,
    },
    /// A field holds something other than lowercase hex digits.
    #[error("traceparent: the {field} is not lowercase hex")]
    NotHex {
        /// Which field.
        field: &'static str,
    },
    /// Version `ff`, or a version other than `00` (only `00` is understood).
    #[error("traceparent: version {version:02x} is not supported (only 00)")]
    Version {
        /// The version.
        version: u8,
    },
    /// An all-zero trace or parent id, which the specification declares invalid.
    #[error("traceparent: the {field} is all zeros")]
    Zero {
        /// Which field.
        field: &'static str,
    },
}

/// The sampled bit of the trace flags.
const SAMPLED: u8 = 0x01;
/// Length of a version-00 `traceparent`.
const LEN: usize = 55;

impl TraceContext {
    /// The header that carries a context on NATS messages.
    pub const HEADER: &'static str = "traceparent";

    /// A context from its parts.
    ///
    /// # Errors
    ///
    /// [`TraceParentError::Zero`] for an all-zero trace or span id.
    pub fn new(trace_id: u128, span_id: u64, flags: u8) -> Result<Self, TraceParentError> {
        if trace_id == 0 {
            return Err(TraceParentError::Zero { field: "trace id" });
        }
        if span_id == 0 {
            return Err(TraceParentError::Zero { field: "parent id" });
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new trace: random trace and span ids, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: random_u128(),
            span_id: random_u64(),
            flags: SAMPLED,
        }
    }

    /// The context of a child span: the same trace and flags, a new random span id.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            span_id: random_u64(),
            ..*self
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The span id (the parent id of the next hop).
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the sampled flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The trace id as 32 lowercase hex digits (the `traceId` metadata of events).
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id as 16 lowercase hex digits (the `spanId` metadata of events).
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The context recorded in an event's `traceId` and `spanId` metadata, if both are there
    /// and valid (flags: sampled).
    pub fn from_event(event: &crate::Event) -> Option<Self> {
        let trace_id = parse_hex(event.trace_id()?, 32, "trace id").ok()?;
        let span_id = parse_hex(event.span_id()?, 16, "parent id").ok()?;
        Self::new(trace_id, u64::try_from(span_id).ok()?, SAMPLED).ok()
    }

    /// Records this context in `event`'s `traceId` and `spanId` metadata.
    pub fn stamp(&self, event: &mut crate::Event) {
        event.set_trace_id(self.trace_id_hex());
        event.set_span_id(self.span_id_hex());
    }
}

fn parse_hex(s: &str, len: usize, field: &'static str) -> Result<u128, TraceParentError> {
    // `from_str_radix` also takes `+` and uppercase; the specification allows neither.
    if s.len() != len || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(TraceParentError::NotHex { field });
    }
    u128::from_str_radix(s, 16).map_err(|_| TraceParentError::NotHex { field })
}

impl FromStr for TraceContext {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = TraceParentError::Shape { len: s.len() };
        let mut parts = s.split('-');
        let (Some(version), Some(trace), Some(span), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(shape);
        };
        if s.len() != LEN || version.len() != 2 || flags.len() != 2 {
            return Err(shape);
        }
        let version = parse_hex(version, 2, "version")? as u8;
        if version != 0 {
            return Err(TraceParentError::Version { version });
        }
        let trace_id = parse_hex(trace, 32, "trace id")?;
        let span_id = parse_hex(span, 16, "parent id")? as u64;
        let flags = parse_hex(flags, 2, "flags")? as u8;
        Self::new(trace_id, span_id, flags)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({self})")
    }
}

fn random_u128() -> u128 {
    loop {
        let id = uuid::Uuid::new_v4().as_u128();
        if id != 0 {
            return id;
        }
    }
}

fn random_u64() -> u64 {
    loop {
        // The low 64 bits of a v4 UUID are random but for two variant bits: mix in the high half.
        let id = uuid::Uuid::new_v4().as_u128();
        let span = (id as u64) ^ ((id >> 64) as u64);
        if span != 0 {
            return span;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_example_of_the_specification() {
        let ctx: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap();
        assert_eq!(ctx.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(ctx.span_id(), 0x00f067aa0ba902b7);
        assert!(ctx.is_sampled());
    }

    #[test]
    fn refuses_bad_values_with_a_typed_error() {
        let bad = [
            ("", TraceParentError::Shape { len: 0 }),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                TraceParentError::Shape { len: 52 },
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                TraceParentError::NotHex { field: "trace id" },
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                TraceParentError::Zero { field: "trace id" },
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                TraceParentError::Zero { field: "parent id" },
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Version { version: 0xff },
            ),
            (
                "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::NotHex { field: "trace id" },
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
                TraceParentError::NotHex { field: "trace id" },
            ),
            (
                "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
                TraceParentError::Shape { len: 55 },
            ),
        ];
        for (input, expected) in bad {
            assert_eq!(input.parse::<TraceContext>(), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn children_keep_the_trace_and_get_a_new_span() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        assert_ne!(TraceContext::new_root().trace_id(), root.trace_id());
    }

    #[test]
    fn events_carry_the_context_in_their_metadata() {
        let ctx = TraceContext::new_root();
        let mut event = crate::Event::new(crate::ActorId::new("a").unwrap(), "T", 1);
        assert_eq!(TraceContext::from_event(&event), None);
        ctx.stamp(&mut event);
        assert_eq!(event.trace_id(), Some(ctx.trace_id_hex().as_str()));
        assert_eq!(TraceContext::from_event(&event), Some(ctx));
        event.set_span_id("nope");
        assert_eq!(TraceContext::from_event(&event), None);
    }

    proptest! {
        #[test]
        fn format_and_parse_round_trip(trace in 1u128.., span in 1u64.., flags: u8) {
            let ctx = TraceContext::new(trace, span, flags).unwrap();
            let text = ctx.to_string();
            prop_assert_eq!(text.len(), LEN);
            prop_assert_eq!(text.parse::<TraceContext>(), Ok(ctx));
        }

        #[test]
        fn any_input_parses_or_errs_without_panicking(s in "\\PC{0,80}") {
            let _ = s.parse::<TraceContext>();
        }

        #[test]
        fn near_misses_are_refused(trace in 1u128.., span in 1u64.., at in 0usize..LEN, c in "[g-zA-Z_+ ]") {
            let text = TraceContext::new(trace, span, 1).unwrap().to_string();
            let mut bytes = text.into_bytes();
            bytes[at] = c.as_bytes()[0];
            let broken = String::from_utf8(bytes).unwrap();
            prop_assert!(broken.parse::<TraceContext>().is_err());
        }
    }
}
