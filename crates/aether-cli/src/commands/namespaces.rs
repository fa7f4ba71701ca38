//! `aether namespaces`: events, actors and bytes per namespace.

use aether_nats::naming;
use futures::TryStreamExt;
use serde::Serialize;

use crate::connect::{Nats, Source};
use crate::error::CliError;
use crate::output;

/// One namespace's counts.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NamespaceRow {
    /// The namespace.
    pub(crate) name: String,
    /// Stored events (on NATS: the stream's messages, fence records included).
    pub(crate) events: u64,
    /// Actors with events.
    pub(crate) actors: u64,
    /// Bytes stored.
    pub(crate) bytes: u64,
}

/// The namespaces of `source`, by name.
pub(crate) async fn list(source: &Source) -> Result<Vec<NamespaceRow>, CliError> {
    let mut rows = match source {
        Source::Data(data) => data
            .inspector
            .namespaces()?
            .into_iter()
            .map(|s| NamespaceRow {
                name: s.name,
                events: s.events,
                actors: s.actors,
                bytes: s.bytes,
            })
            .collect(),
        Source::Nats(nats) => on_nats(nats).await?,
    };
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

/// The event streams on NATS (`aether-ev-*`), decoded back to namespaces.
async fn on_nats(nats: &Nats) -> Result<Vec<NamespaceRow>, CliError> {
    let js = nats.jetstream();
    let infos: Vec<_> = js
        .streams()
        .try_collect()
        .await
        .map_err(|e| nats.error("cannot list the streams", e))?;
    Ok(infos
        .into_iter()
        .filter_map(|info| {
            let token = info.config.name.strip_prefix(naming::STREAM_PREFIX)?;
            let name = naming::decode_token(token).ok()?;
            // Only the event store's streams: another stream that happens to share the prefix
            // does not hold the namespace's actor subjects.
            let namespace = aether_core::Namespace::new(&name).ok()?;
            if info.config.subjects != [naming::stream_subjects(&namespace)] {
                return None;
            }
            Some(NamespaceRow {
                name,
                events: info.state.messages,
                actors: info.state.subjects_count,
                bytes: info.state.bytes,
            })
        })
        .collect())
}

/// Runs the command.
pub(crate) async fn run(source: &Source, json: bool) -> Result<(), CliError> {
    let rows = list(source).await?;
    if json {
        return output::json(&serde_json::json!({ "namespaces": rows }));
    }
    if rows.is_empty() {
        return output::line("no namespaces yet");
    }
    let table = output::table(
        &["NAMESPACE", "EVENTS", "ACTORS", "BYTES"],
        &["EVENTS", "ACTORS", "BYTES"],
        rows.into_iter()
            .map(|r| {
                vec![
                    r.name,
                    r.events.to_string(),
                    r.actors.to_string(),
                    r.bytes.to_string(),
                ]
            })
            .collect(),
    );
    output::line(table)
}
