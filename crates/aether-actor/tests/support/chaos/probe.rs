//! Queries sent straight to one node's subject in the wire format, with a placement version
//! of the sender's choosing: how the chaos test asks a paused node, as a client whose
//! placement is as old as the node's, whether it answers from stale state when it wakes.

use std::time::Duration;

use aether_actor::cluster::wire::{self, Reply};
use aether_core::{Namespace, NodeId};
use tokio::time::Instant;

use super::load::{QueryRecord, actor_id};

/// Asks `node` for `actor`'s balance with placement version `version`; the answer as a query
/// record, or `None` if the node refused (moved, unavailable) or did not answer in time.
pub(crate) async fn stale_query(
    client: async_nats::Client,
    namespace: Namespace,
    node: String,
    version: u64,
    actor: usize,
) -> Option<QueryRecord> {
    let subject = wire::request_subject(&namespace, "account", &NodeId::new(node).ok()?);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(wire::MAP_VERSION_HEADER, version.to_string().as_str());
    let body = format!(
        r#"{{"op":"query","actorId":"{}","body":"Balance"}}"#,
        actor_id(actor)
    );
    let sent = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request_with_headers(subject, headers, body.into()),
    )
    .await
    .ok()?
    .ok()?;
    match Reply::decode(&reply.payload).ok()? {
        Reply::Ok(balance) => Some(QueryRecord {
            actor,
            sent,
            version: balance.get("version")?.as_u64()?,
        }),
        _ => None,
    }
}
