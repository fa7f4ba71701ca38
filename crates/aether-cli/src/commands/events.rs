//! `aether events NS ACTOR [--from V] [--follow]`: an actor's events, as a table or JSON lines.

use std::time::Duration;

use aether_core::{ActorId, Event, EventStore, Namespace, ReplayResult, Version};
use aether_nats::{JetStreamConfig, JetStreamEventStore, OpenExistingError};

use crate::connect::Source;
use crate::error::CliError;
use crate::output;

/// Reads one actor's events from wherever they are.
pub(crate) enum Reader<'a> {
    /// The namespace's store on NATS.
    Nats(JetStreamEventStore),
    /// The data directory.
    Data(&'a aether_sqlite::SqliteInspector),
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Nats(_) => "Reader::Nats",
            Self::Data(_) => "Reader::Data",
        })
    }
}

impl<'a> Reader<'a> {
    /// A reader of `namespace` in `source`; an error listing the namespaces that exist if it
    /// does not. On NATS the namespace is looked up, never created: the CLI only reads
    /// ([`JetStreamEventStore::open_existing`]).
    pub(crate) async fn open(source: &'a Source, namespace: &Namespace) -> Result<Self, CliError> {
        let nats = match source {
            Source::Data(data) => {
                super::existing(source, namespace).await?;
                return Ok(Self::Data(&data.inspector));
            }
            Source::Nats(nats) => nats,
        };
        let config = JetStreamConfig {
            request_timeout: nats.timeout,
            retry_timeout: nats.timeout,
            ..JetStreamConfig::default()
        };
        match JetStreamEventStore::open_existing(nats.client.clone(), namespace.clone(), config)
            .await
        {
            Ok(store) => Ok(Self::Nats(store)),
            // The same message as on a data directory: the namespaces that do exist.
            Err(OpenExistingError::NoNamespace { .. }) => {
                super::existing(source, namespace).await?;
                Err(CliError::Nats {
                    url: nats.url.clone(),
                    message: format!(
                        "namespace {namespace} was created while looking it up: run the \
                         command again"
                    ),
                })
            }
            Err(other) => Err(other.into()),
        }
    }

    /// `actor`'s events from `from` on, with the records that do not decode.
    pub(crate) async fn events(
        &self,
        namespace: &Namespace,
        actor: &ActorId,
        from: Version,
    ) -> Result<ReplayResult, CliError> {
        Ok(match self {
            Self::Nats(store) => store.events_with_errors(actor, from).await?,
            Self::Data(inspector) => inspector.events(namespace, actor, from)?,
        })
    }
}

/// Runs the command.
pub(crate) async fn run(
    source: &Source,
    json: bool,
    namespace: &str,
    actor: &str,
    from: Version,
    follow: Option<Duration>,
) -> Result<(), CliError> {
    let namespace = super::namespace(namespace)?;
    let actor = super::actor_id(actor)?;
    let reader = Reader::open(source, &namespace).await?;
    let mut next = from.max(1);
    let first = reader.events(&namespace, &actor, next).await?;
    if !json {
        output::line(header())?;
    }
    // Positions of undecodable records already warned about: a follow re-reads them.
    let mut warned = std::collections::HashSet::new();
    next = print(&first, json, next, &mut warned)?;
    if first.events.is_empty() && follow.is_none() && !json {
        eprintln!("actor {actor} has no events from version {from} on in namespace {namespace}");
    }
    let Some(every) = follow else {
        return Ok(());
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let more = reader.events(&namespace, &actor, next).await?;
        next = print(&more, json, next, &mut warned)?;
    }
}

/// The column headings of the text output.
fn header() -> String {
    format!("{:>7}  {:<24}  {:<20}  DATA", "VERSION", "TIME", "TYPE")
}

/// Prints `batch` (a warning on stderr for each record that does not decode, once); returns
/// the version to read from next.
fn print(
    batch: &ReplayResult,
    json: bool,
    mut next: Version,
    warned: &mut std::collections::HashSet<u64>,
) -> Result<Version, CliError> {
    for error in batch.errors.iter().filter(|e| warned.insert(e.position)) {
        eprintln!(
            "warning: the record at position {} does not decode as an event: {}",
            error.position, error.error
        );
    }
    for event in &batch.events {
        if json {
            output::json_line(event)?;
        } else {
            output::line(row(event))?;
        }
        next = next.max(event.version.saturating_add(1));
    }
    Ok(next)
}

fn row(event: &Event) -> String {
    format!(
        "{:>7}  {:<24}  {:<20}  {}",
        event.version,
        output::time(&event.timestamp),
        event.event_type,
        output::short_json(&event.data, 80)
    )
}
