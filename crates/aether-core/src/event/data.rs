//! Typed payload helpers: turn domain structs into an event's JSON object and back.

use serde::{Serialize, de::DeserializeOwned};

use super::Event;

/// Why a payload could not be converted to or from an event's `data`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The value serialized to JSON that is not an object; event data must be an object.
    #[error("event data must be a JSON object, but the value serialized to {found}")]
    NotAnObject {
        /// The kind of JSON value found: `"a number"`, `"an array"`, …
        found: &'static str,
    },
    /// Serialization or deserialization failed.
    #[error("event data does not match the requested type: {0}")]
    Json(#[from] serde_json::Error),
}

pub(super) fn to_object<T: Serialize + ?Sized>(
    value: &T,
) -> Result<serde_json::Map<String, serde_json::Value>, DataError> {
    use serde_json::Value;
    match serde_json::to_value(value)? {
        Value::Object(map) => Ok(map),
        other => Err(DataError::NotAnObject {
            found: match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => unreachable!("handled above"),
            },
        }),
    }
}

impl Event {
    /// Replaces the payload with `data`, which must serialize to a JSON object.
    ///
    /// # Errors
    ///
    /// [`DataError`] if `data` fails to serialize or is not a JSON object.
    ///
    /// # Examples
    ///
    /// ```
    /// # use aether_core::{ActorId, Event};
    /// #[derive(serde::Serialize)]
    /// struct Opened { owner: String }
    ///
    /// let event = Event::new(ActorId::new("account-1")?, "Opened", 1)
    ///     .with_data(&Opened { owner: "ada".into() })?;
    /// assert_eq!(event.data["owner"], "ada");
    ///
    /// // Not an object:
    /// assert!(Event::new(ActorId::new("account-1")?, "Opened", 1).with_data(&42).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_data<T: Serialize + ?Sized>(mut self, data: &T) -> Result<Self, DataError> {
        self.data = to_object(data)?;
        Ok(self)
    }

    /// Decodes the payload into `T`, without copying it.
    ///
    /// # Errors
    ///
    /// [`DataError::Json`] if the payload does not match `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, DataError> {
        Ok(T::deserialize(&self.data)?)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::{ActorId, DataError, Event};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Moved {
        from: String,
        to: String,
        meters: u32,
    }

    fn event() -> Event {
        Event::new(ActorId::new("robot-1").unwrap(), "Moved", 1)
    }

    #[test]
    fn round_trips_a_struct() {
        let moved = Moved {
            from: "a".into(),
            to: "b".into(),
            meters: 3,
        };
        let e = event().with_data(&moved).unwrap();
        assert_eq!(e.data_as::<Moved>().unwrap(), moved);
    }

    #[test]
    fn rejects_non_objects_with_what_was_found() {
        let err = event().with_data(&vec![1, 2]).unwrap_err();
        assert!(
            matches!(err, DataError::NotAnObject { found: "an array" }),
            "{err}"
        );
        assert!(matches!(
            event().with_data(&()),
            Err(DataError::NotAnObject { found: "null" })
        ));
    }

    #[test]
    fn data_as_reports_mismatch() {
        let e = event()
            .with_data(&serde_json::json!({ "from": "a" }))
            .unwrap();
        let err = e.data_as::<Moved>().unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }
}
