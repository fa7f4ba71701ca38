//! Shared by the fault and race tests: reading an actor's history back after an outage.

use std::time::{Duration, Instant};

use aether_core::{ActorId, ErrorKind, Event, EventStore};
use aether_nats::JetStreamEventStore;

/// The actor's whole history, retrying infrastructure errors for up to 30 s; panics if any
/// stored record is not a valid event.
pub(crate) async fn read_all(store: &JetStreamEventStore, actor: &ActorId) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.events_with_errors(actor, 0).await {
            Ok(replay) => {
                assert!(
                    replay.errors.is_empty(),
                    "undecodable records: {:?}",
                    replay.errors
                );
                return replay.events;
            }
            Err(e) if e.kind() == ErrorKind::Infrastructure && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("read back {actor}: {e}"),
        }
    }
}
