//! Typed events ⇄ stored events: [`RawEvent`] (an event type and a JSON object), the default
//! serde mapping ([`encode_tagged`], [`decode_tagged`]) and [`CodecError`].
//!
//! An actor's `Event` type is usually an enum. The default mapping uses serde's externally
//! tagged form: the variant name becomes `Event::event_type` and the variant's fields become
//! `Event::data`:
//!
//! | Rust | `event_type` | `data` |
//! |---|---|---|
//! | `Deposited { amount: 5 }` | `"Deposited"` | `{"amount": 5}` |
//! | `Closed` (unit variant) | `"Closed"` | `{}` |
//! | `Renamed(Name { to: "x" })` (newtype around a struct) | `"Renamed"` | `{"to": "x"}` |
//!
//! Variants whose payload is not a JSON object (`Deposited(u64)`, tuples) are refused with
//! [`CodecError::NotAnObject`]: give them named fields.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// An event as stored, before it is read into the actor's typed event: its type and its data.
///
/// Schema evolution works on this form: [`Actor::upcast`](crate::Actor::upcast) turns old
/// event types into new ones before they are decoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawEvent {
    /// The event type (`Event::event_type`).
    pub event_type: String,
    /// The event's fields (`Event::data`).
    pub data: Map<String, Value>,
}

impl RawEvent {
    /// A raw event of `event_type` with `data`.
    ///
    /// ```
    /// use aether_actor::RawEvent;
    /// let raw = RawEvent::new("Deposited", serde_json::json!({ "amount": 5 }).as_object().unwrap().clone());
    /// assert_eq!(raw.event_type, "Deposited");
    /// ```
    pub fn new(event_type: impl Into<String>, data: Map<String, Value>) -> Self {
        Self {
            event_type: event_type.into(),
            data,
        }
    }
}

/// Why a typed event could not be written as a stored event, or read back from one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The event did not serialize to a variant with named fields (see the module docs).
    #[error(
        "event does not map to an event type and a JSON object ({found}); use an enum whose \
         variants are unit variants or have named fields"
    )]
    NotAnObject {
        /// What it serialized to instead.
        found: String,
    },
    /// Serializing the event failed.
    #[error("event could not be serialized: {0}")]
    Serialize(String),
    /// The stored event does not decode as this actor's event type.
    #[error("stored event of type {event_type:?} does not decode: {reason}")]
    Decode {
        /// The stored event type.
        event_type: String,
        /// What serde said.
        reason: String,
    },
    /// The upcast hook refused the stored event.
    #[error("stored event of type {event_type:?} cannot be upcast: {reason}")]
    Upcast {
        /// The stored event type.
        event_type: String,
        /// Why.
        reason: String,
    },
}

/// Writes `event` as a [`RawEvent`] with serde's externally tagged enum form (the default of
/// [`Actor::encode_event`](crate::Actor::encode_event)).
///
/// # Errors
///
/// [`CodecError::NotAnObject`] if the event is not a unit variant or a variant with named
/// fields; [`CodecError::Serialize`] if serde fails.
///
/// # Examples
///
/// ```
/// use aether_actor::codec::encode_tagged;
///
/// #[derive(serde::Serialize)]
/// enum Account { Deposited { amount: u64 }, Closed }
///
/// let raw = encode_tagged(&Account::Deposited { amount: 5 })?;
/// assert_eq!(raw.event_type, "Deposited");
/// assert_eq!(raw.data["amount"], 5);
/// assert!(encode_tagged(&Account::Closed)?.data.is_empty());
/// # Ok::<(), aether_actor::CodecError>(())
/// ```
pub fn encode_tagged<E: Serialize>(event: &E) -> Result<RawEvent, CodecError> {
    let value = serde_json::to_value(event).map_err(|e| CodecError::Serialize(e.to_string()))?;
    match value {
        Value::String(event_type) => Ok(RawEvent::new(event_type, Map::new())),
        Value::Object(outer) if outer.len() == 1 => match outer.into_iter().next() {
            Some((event_type, Value::Object(data))) => Ok(RawEvent::new(event_type, data)),
            Some((event_type, other)) => Err(CodecError::NotAnObject {
                found: format!("variant {event_type} holds {}", kind(&other)),
            }),
            None => Err(CodecError::NotAnObject {
                found: "an empty object".to_owned(),
            }),
        },
        other => Err(CodecError::NotAnObject {
            found: kind(&other).to_owned(),
        }),
    }
}

/// Reads a [`RawEvent`] back with serde's externally tagged enum form (the default of
/// [`Actor::decode_event`](crate::Actor::decode_event)): a unit variant from an empty object,
/// otherwise the variant named by the event type with the data as its fields.
///
/// # Errors
///
/// [`CodecError::Decode`] if the event type names no variant or the fields do not fit.
///
/// # Examples
///
/// ```
/// use aether_actor::{RawEvent, codec::decode_tagged};
///
/// #[derive(Debug, PartialEq, serde::Deserialize)]
/// enum Account { Deposited { amount: u64 }, Closed }
///
/// let data = serde_json::json!({ "amount": 5 }).as_object().unwrap().clone();
/// let event: Account = decode_tagged(RawEvent::new("Deposited", data))?;
/// assert_eq!(event, Account::Deposited { amount: 5 });
/// let closed: Account = decode_tagged(RawEvent::new("Closed", Default::default()))?;
/// assert_eq!(closed, Account::Closed);
/// # Ok::<(), aether_actor::CodecError>(())
/// ```
pub fn decode_tagged<E: DeserializeOwned>(raw: RawEvent) -> Result<E, CodecError> {
    let RawEvent { event_type, data } = raw;
    if data.is_empty()
        && let Ok(event) = serde_json::from_value(Value::String(event_type.clone()))
    {
        return Ok(event);
    }
    let mut outer = Map::with_capacity(1);
    outer.insert(event_type.clone(), Value::Object(data));
    serde_json::from_value(Value::Object(outer)).map_err(|e| CodecError::Decode {
        event_type,
        reason: e.to_string(),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Name {
        to: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Ev {
        Opened,
        Empty {},
        Deposited { amount: u64 },
        Renamed(Name),
        Bare(u64),
    }

    #[test]
    fn round_trips_every_supported_shape() {
        for event in [
            Ev::Opened,
            Ev::Empty {},
            Ev::Deposited { amount: 7 },
            Ev::Renamed(Name { to: "x".into() }),
        ] {
            let raw = encode_tagged(&event).unwrap();
            assert_eq!(decode_tagged::<Ev>(raw).unwrap(), event);
        }
    }

    #[test]
    fn refuses_non_object_payloads_and_unknown_types() {
        assert!(matches!(
            encode_tagged(&Ev::Bare(1)),
            Err(CodecError::NotAnObject { .. })
        ));
        assert!(matches!(
            encode_tagged(&5u32),
            Err(CodecError::NotAnObject { .. })
        ));
        let err = decode_tagged::<Ev>(RawEvent::new("Nope", Map::new())).unwrap_err();
        assert!(matches!(err, CodecError::Decode { ref event_type, .. } if event_type == "Nope"));
        let mut data = Map::new();
        data.insert("amount".into(), Value::String("x".into()));
        assert!(decode_tagged::<Ev>(RawEvent::new("Deposited", data)).is_err());
    }
}
