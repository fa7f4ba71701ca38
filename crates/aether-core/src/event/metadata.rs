//! Standard metadata keys and their helpers on [`Event`].

use std::collections::BTreeMap;

use super::Event;

/// The standard metadata keys. Use the helpers on [`Event`] and [`EventBuilder`](super::EventBuilder)
/// rather than the raw keys where you can.
pub mod keys {
    /// Groups every event of one business transaction or request.
    pub const CORRELATION_ID: &str = "correlationId";
    /// The id of the event (or command) that directly caused this one.
    pub const CAUSATION_ID: &str = "causationId";
    /// The user on whose behalf the event was produced.
    pub const USER_ID: &str = "userId";
    /// Distributed-tracing trace id.
    pub const TRACE_ID: &str = "traceId";
    /// Distributed-tracing span id.
    pub const SPAN_ID: &str = "spanId";
}

/// Copies `cause`'s metadata into `metadata`, then records `cause.id` as the causation id. The
/// correlation id is inherited, or started from `cause.id` when the cause had none, so that every
/// event of a chain shares one correlation id.
pub(super) fn inherit(metadata: &mut BTreeMap<String, String>, cause: &Event) {
    metadata.extend(cause.metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
    metadata.insert(keys::CAUSATION_ID.to_owned(), cause.id.to_string());
    metadata
        .entry(keys::CORRELATION_ID.to_owned())
        .or_insert_with(|| cause.id.to_string());
}

macro_rules! metadata_accessors {
    ($($get:ident, $set:ident, $key:ident, $what:literal;)*) => {
        impl Event {
            $(
                #[doc = concat!("The ", $what, " (metadata key [`", stringify!($key), "`](keys::", stringify!($key), ")), if set.")]
                pub fn $get(&self) -> Option<&str> {
                    self.metadata.get(keys::$key).map(String::as_str)
                }

                #[doc = concat!("Sets the ", $what, " (metadata key [`", stringify!($key), "`](keys::", stringify!($key), ")).")]
                pub fn $set(&mut self, value: impl Into<String>) {
                    self.metadata.insert(keys::$key.to_owned(), value.into());
                }
            )*
        }
    };
}

metadata_accessors! {
    correlation_id, set_correlation_id, CORRELATION_ID, "correlation id";
    causation_id, set_causation_id, CAUSATION_ID, "causation id";
    user_id, set_user_id, USER_ID, "user id";
    trace_id, set_trace_id, TRACE_ID, "trace id";
    span_id, set_span_id, SPAN_ID, "span id";
}

impl Event {
    /// Copies all metadata from `cause` (overwriting keys both have) and records `cause` as the
    /// causation. The correlation id is inherited from `cause`, or set to `cause.id` when `cause`
    /// has none, so that a whole chain of events shares one correlation id.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_core::{ActorId, Event};
    /// let mut placed = Event::new(ActorId::new("order-1")?, "OrderPlaced", 1);
    /// placed.set_correlation_id("checkout-77");
    /// placed.set_user_id("ada");
    ///
    /// let mut reserved = Event::new(ActorId::new("stock-9")?, "StockReserved", 4);
    /// reserved.copy_metadata_from(&placed);
    /// assert_eq!(reserved.correlation_id(), Some("checkout-77"));
    /// assert_eq!(reserved.user_id(), Some("ada"));
    /// assert_eq!(reserved.causation_id(), Some(placed.id.as_str()));
    /// # Ok::<(), aether_core::InvalidName>(())
    /// ```
    pub fn copy_metadata_from(&mut self, cause: &Self) {
        inherit(&mut self.metadata, cause);
    }
}

#[cfg(test)]
mod tests {
    use super::keys;
    use crate::{ActorId, Event};

    fn event(v: u64) -> Event {
        Event::new(ActorId::new("a").unwrap(), "T", v)
    }

    #[test]
    fn each_helper_uses_its_own_key() {
        let mut e = event(1);
        e.set_correlation_id("c");
        e.set_causation_id("k");
        e.set_user_id("u");
        e.set_trace_id("t");
        e.set_span_id("s");
        assert_eq!(
            (
                e.correlation_id(),
                e.causation_id(),
                e.user_id(),
                e.trace_id(),
                e.span_id()
            ),
            (Some("c"), Some("k"), Some("u"), Some("t"), Some("s"))
        );
        assert_eq!(e.metadata[keys::TRACE_ID], "t");
        assert_eq!(e.metadata.len(), 5);
    }

    #[test]
    fn copy_starts_a_correlation_at_the_root_cause() {
        let root = event(1);
        let mut child = event(2);
        child.copy_metadata_from(&root);
        assert_eq!(child.correlation_id(), Some(root.id.as_str()));
        assert_eq!(child.causation_id(), Some(root.id.as_str()));

        let mut grandchild = event(3);
        grandchild.copy_metadata_from(&child);
        assert_eq!(grandchild.correlation_id(), Some(root.id.as_str()));
        assert_eq!(grandchild.causation_id(), Some(child.id.as_str()));
    }

    #[test]
    fn copy_overwrites_but_keeps_unrelated_keys() {
        let mut cause = event(1);
        cause.metadata.insert("tenant".into(), "acme".into());
        cause.set_user_id("ada");
        let mut e = event(2);
        e.set_user_id("bob");
        e.metadata.insert("mine".into(), "x".into());
        e.copy_metadata_from(&cause);
        assert_eq!(e.user_id(), Some("ada"));
        assert_eq!(e.metadata["tenant"], "acme");
        assert_eq!(e.metadata["mine"], "x");
    }
}
