//! [`EventBuilder`]: assembles an [`Event`] field by field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{DataError, Event, Version, data, metadata::keys};
use crate::{ActorId, EventId};

/// Builds an [`Event`]; created by [`Event::builder`].
///
/// # Examples
///
/// ```
/// use aether_core::{ActorId, Event, EventId};
///
/// let cause = Event::new(ActorId::new("order-1")?, "OrderPlaced", 1);
/// let event = Event::builder(ActorId::new("invoice-9")?, "InvoiceRaised")
///     .id(EventId::new("order-1/invoice")?)
///     .version(1)
///     .caused_by(&cause)
///     .command_id("raise-invoice-17")
///     .build();
/// assert_eq!(event.causation_id(), Some(cause.id.as_str()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "an EventBuilder does nothing until .build() is called"]
pub struct EventBuilder {
    id: Option<EventId>,
    event_type: String,
    actor_id: ActorId,
    version: Version,
    data: serde_json::Map<String, serde_json::Value>,
    metadata: BTreeMap<String, String>,
    timestamp: Option<DateTime<Utc>>,
    command_id: Option<String>,
}

impl EventBuilder {
    pub(super) fn new(actor_id: ActorId, event_type: String) -> Self {
        Self {
            id: None,
            event_type,
            actor_id,
            version: 0,
            data: serde_json::Map::new(),
            metadata: BTreeMap::new(),
            timestamp: None,
            command_id: None,
        }
    }

    /// Uses `id` instead of a generated UUIDv7 (e.g. one derived from a command id, so that a
    /// retried command is recognised as a duplicate).
    pub fn id(mut self, id: EventId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the version (must be greater than the actor's current version when saved).
    pub fn version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// Sets the payload from any value that serializes to a JSON object.
    ///
    /// # Errors
    ///
    /// [`DataError`] if `data` fails to serialize or is not a JSON object (a number, a list…).
    pub fn data<T: Serialize + ?Sized>(mut self, data: &T) -> Result<Self, DataError> {
        self.data = data::to_object(data)?;
        Ok(self)
    }

    /// Sets the payload from a JSON object you already have.
    pub fn data_object(mut self, data: serde_json::Map<String, serde_json::Value>) -> Self {
        self.data = data;
        self
    }

    /// Adds one metadata entry (replacing an earlier value for the same key).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the [correlation id](keys::CORRELATION_ID).
    pub fn correlation_id(self, id: impl Into<String>) -> Self {
        self.metadata(keys::CORRELATION_ID, id)
    }

    /// Sets the [causation id](keys::CAUSATION_ID).
    pub fn causation_id(self, id: impl Into<String>) -> Self {
        self.metadata(keys::CAUSATION_ID, id)
    }

    /// Sets the [user id](keys::USER_ID).
    pub fn user_id(self, id: impl Into<String>) -> Self {
        self.metadata(keys::USER_ID, id)
    }

    /// Sets the [trace id](keys::TRACE_ID).
    pub fn trace_id(self, id: impl Into<String>) -> Self {
        self.metadata(keys::TRACE_ID, id)
    }

    /// Sets the [span id](keys::SPAN_ID).
    pub fn span_id(self, id: impl Into<String>) -> Self {
        self.metadata(keys::SPAN_ID, id)
    }

    /// Copies all metadata of `cause` and records it as the cause; see
    /// [`Event::copy_metadata_from`].
    pub fn caused_by(mut self, cause: &Event) -> Self {
        super::metadata::inherit(&mut self.metadata, cause);
        self
    }

    /// Records the command that produced the event.
    pub fn command_id(mut self, id: impl Into<String>) -> Self {
        self.command_id = Some(id.into());
        self
    }

    /// Sets the creation time instead of "now".
    pub fn timestamp(mut self, at: DateTime<Utc>) -> Self {
        self.timestamp = Some(at);
        self
    }

    /// Finishes the event, generating the id and timestamp if they were not set.
    pub fn build(self) -> Event {
        Event {
            id: self.id.unwrap_or_else(EventId::generate),
            event_type: self.event_type,
            actor_id: self.actor_id,
            version: self.version,
            data: self.data,
            metadata: self.metadata,
            timestamp: self.timestamp.unwrap_or_else(Utc::now),
            command_id: self.command_id,
        }
    }
}
