//! [`BusError`]: what can go wrong connecting the bus and using its durable mode. Live
//! publishing never fails: losses on the network path are counted in the metrics instead.

use aether_core::BoxError;

/// An error of the NATS event bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// NATS could not be reached (or the URL is malformed), or did not answer in time.
    #[error("NATS at {url} is unavailable: {message}")]
    Unavailable {
        /// The server URL (or the connected server's address).
        url: String,
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// A bus setting that cannot work (named, with the reason); nothing was connected.
    #[error("invalid bus configuration: {0}")]
    InvalidConfig(String),
    /// A durable subscription name that cannot be used; nothing was created.
    #[error("invalid durable subscription name {name:?}: {reason}")]
    InvalidDurableName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The durable name is already used by a subscription to a different pattern; nothing was
    /// changed. Delete it first ([`NatsEventBus::delete_durable`](super::NatsEventBus::delete_durable))
    /// or pick another name.
    #[error("durable subscription {name:?} exists for {existing:?}, not {requested:?}")]
    DurableNameTaken {
        /// The name given.
        name: String,
        /// The NATS subject the existing subscription filters on.
        existing: String,
        /// The NATS subject this call asked for.
        requested: String,
    },
    /// An event could not be encoded; nothing was published.
    #[error("could not encode event {event_id}: {source}")]
    Encode {
        /// The event's id.
        event_id: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The server refused this connection's user a subject the bus needs (NATS permissions):
    /// nothing was published or opened, and retrying fails the same way. Grant the permission
    /// (see `docs/permissions.md`), or use the tenant handle of a namespace the user may use.
    #[error(
        "permission denied: the server does not let this user {action} {subject:?} \
         (see docs/permissions.md)"
    )]
    PermissionDenied {
        /// What was refused: `publish to` or `subscribe to`.
        action: String,
        /// The subject refused.
        subject: String,
    },
    /// JetStream refused or failed a request (stream or consumer settings, publish, ack).
    #[error("JetStream: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl aether_core::BackendError for BusError {
    fn from_backend(message: String, source: BoxError) -> Self {
        Self::Backend {
            message,
            source: Some(source),
        }
    }
}

impl From<crate::permissions::violations::Violation> for BusError {
    fn from(v: crate::permissions::violations::Violation) -> Self {
        Self::PermissionDenied {
            action: v.action.to_owned(),
            subject: v.subject,
        }
    }
}
