//! How many bytes an event takes encoded as JSON, exactly or as a cheap upper bound.
//!
//! Stores enforce a size limit on every save. Serializing each event just to measure it would
//! dominate the in-memory store's hot path, so validation goes in three steps, each only when the
//! previous one could not rule the event in: a loose bound from string *lengths* (every byte
//! assumed to need a 6-byte escape; no string is read), a tight bound (escapes counted
//! exactly), and finally the exact size.

use serde_json::Value;

use super::Event;

/// Exact length of `serde_json::to_vec(event)`.
pub(super) fn exact(event: &Event) -> usize {
    let mut counter = ByteCounter(0);
    // Writing to a counter cannot fail, and an Event always serializes (string keys only).
    serde_json::to_writer(&mut counter, event).expect("an Event always serializes to JSON");
    counter.0
}

/// An upper bound of [`exact`] that reads no string, only lengths.
pub(super) fn loose_bound(event: &Event) -> usize {
    bound(event, |s| 2 + 6 * s.len())
}

/// An upper bound of [`exact`], within a few dozen bytes for typical events.
pub(super) fn tight_bound(event: &Event) -> usize {
    bound(event, string_len)
}

/// An upper bound of [`exact`], given an upper bound (or the exact length) of string literals.
fn bound(event: &Event, string_len: impl Fn(&str) -> usize + Copy) -> usize {
    // Field names, braces, quotes, commas: a fixed frame that never exceeds this.
    const FRAME: usize = 96;
    // "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" plus quotes, with room for a 5+ digit year.
    const TIMESTAMP: usize = 48;
    const VERSION: usize = 20;
    let metadata: usize = event
        .metadata
        .iter()
        .map(|(k, v)| string_len(k) + string_len(v) + 2)
        .sum::<usize>()
        + 2;
    FRAME
        + TIMESTAMP
        + VERSION
        + string_len(event.id.as_str())
        + string_len(&event.event_type)
        + string_len(event.actor_id.as_str())
        + object_len(&event.data, string_len)
        + metadata
        + event.command_id.as_deref().map_or(0, string_len)
}

fn object_len(
    map: &serde_json::Map<String, Value>,
    string_len: impl Fn(&str) -> usize + Copy,
) -> usize {
    2 + map
        .iter()
        .map(|(k, v)| string_len(k) + value_len(v, string_len) + 2)
        .sum::<usize>()
}

fn value_len(value: &Value, string_len: impl Fn(&str) -> usize + Copy) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        // i64/u64 need at most 20 characters; f64 in ryu's shortest form at most 24.
        Value::Number(_) => 24,
        Value::String(s) => string_len(s),
        Value::Array(items) => {
            2 + items
                .iter()
                .map(|v| value_len(v, string_len) + 1)
                .sum::<usize>()
        }
        Value::Object(map) => object_len(map, string_len),
    }
}

/// Exact length of a JSON string literal as serde_json writes it.
fn string_len(s: &str) -> usize {
    let escapes: usize = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0x00..=0x1f => 5,
            _ => 0,
        })
        .sum();
    2 + s.len() + escapes
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::{ActorId, Event};

    fn event_with(data: Value) -> Event {
        let mut e = Event::new(ActorId::new("a.b").unwrap(), "T", u64::MAX)
            .with_data(&data)
            .unwrap();
        e.set_correlation_id("c\"x\n");
        e.command_id = Some("cmd\u{1}".into());
        e
    }

    #[test]
    fn exact_matches_serialization() {
        let e = event_with(
            json!({ "s": "quote\" nl\n ctl\u{2} é", "n": -1.5e300, "a": [1, null, true] }),
        );
        assert_eq!(exact(&e), serde_json::to_vec(&e).unwrap().len());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn upper_bound_never_underestimates(
            data in prop::collection::btree_map(any::<String>(), json_value(), 0..6),
            meta in prop::collection::btree_map(any::<String>(), any::<String>(), 0..4),
        ) {
            let mut e = event_with(Value::Object(data.into_iter().collect()));
            e.metadata.extend(meta);
            let exact = exact(&e);
            let tight = tight_bound(&e);
            let loose = loose_bound(&e);
            prop_assert!(tight >= exact, "tight bound {tight} < exact {exact}");
            prop_assert!(loose >= tight, "loose bound {loose} < tight {tight}");
        }
    }
}
