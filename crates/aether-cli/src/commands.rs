//! The commands, one module each, and what they share: reading names and namespaces.

pub(crate) mod actor;
pub(crate) mod bench;
pub(crate) mod cluster;
pub(crate) mod events;
pub(crate) mod namespaces;
pub(crate) mod tail;

use aether_core::{ActorId, Namespace};

use crate::connect::Source;
use crate::error::CliError;

/// `raw` as a namespace, or the typed validation message.
pub(crate) fn namespace(raw: &str) -> Result<Namespace, CliError> {
    Ok(Namespace::new(raw)?)
}

/// `raw` as an actor id, or the typed validation message.
pub(crate) fn actor_id(raw: &str) -> Result<ActorId, CliError> {
    Ok(ActorId::new(raw)?)
}

/// `namespace` if it exists in `source`; otherwise an error listing the ones that do.
pub(crate) async fn existing(source: &Source, namespace: &Namespace) -> Result<(), CliError> {
    let stats = namespaces::list(source).await?;
    if stats.iter().any(|s| s.name == namespace.as_str()) {
        return Ok(());
    }
    let place = match source {
        Source::Nats(nats) => format!("on NATS at {}", nats.url),
        Source::Data(data) => format!("in {}", data.dir.display()),
    };
    Err(CliError::UnknownNamespace {
        namespace: namespace.to_string(),
        place,
        existing: stats.into_iter().map(|s| s.name).collect(),
    })
}
