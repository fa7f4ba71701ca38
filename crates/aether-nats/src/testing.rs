//! The conformance hooks for [`JetStreamEventStore`], so `aether-core`'s store suite runs
//! against JetStream unchanged (feature `testing`).

use aether_core::testing::conformance::{ConformanceTarget, FenceTarget};
use aether_core::{ActorId, Event, EventLimits, EventStore, StoreError};

use crate::JetStreamEventStore;

impl ConformanceTarget for JetStreamEventStore {
    fn limits(&self) -> EventLimits {
        Self::limits(self)
    }

    /// Like the in-memory store: bytes that decode as an event of this actor go through the
    /// normal save path; anything else is published raw, as a foreign client would.
    async fn write_raw_record(&self, actor_id: &ActorId, raw: Vec<u8>) -> Result<(), StoreError> {
        if let Ok(event) = serde_json::from_slice::<Event>(&raw)
            && &event.actor_id == actor_id
        {
            return self.save_event(event).await.map(drop);
        }
        self.publish_raw(actor_id, raw).await
    }
}

impl FenceTarget for JetStreamEventStore {
    /// A new handle on the same namespace and connection, with its own head cache.
    async fn another_handle(&self) -> Self {
        self.for_namespace(self.namespace().clone())
            .await
            .unwrap_or_else(|e| panic!("open a second handle on {}: {e}", self.namespace()))
    }
}
