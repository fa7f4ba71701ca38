//! [`CliError`]: what went wrong, said so that a person can act on it. Every message that
//! names a NATS server names it without credentials.

use std::path::PathBuf;

/// An error of the `aether` command; printed on stderr, exit code 1 (2 for bad usage).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Neither `--nats` nor `--data` was given.
    #[error(
        "say where Aether's data is: --nats <URL> (a NATS server, e.g. nats://127.0.0.1:4222) \
         or --data <DIR> (an embedded data directory); AETHER_NATS sets the URL too"
    )]
    NoConnection,
    /// No NATS server answered.
    #[error(
        "cannot reach NATS at {url}: {reason}. Is nats-server running and listening there? \
         Check the host and port, TLS (--tls-ca) and credentials (--creds, --user/--password, \
         --token)"
    )]
    Unreachable {
        /// The URL, without credentials.
        url: String,
        /// What failed (no credentials in it).
        reason: String,
    },
    /// A connection option could not be used.
    #[error("{0}")]
    Options(String),
    /// The namespace does not exist.
    #[error(
        "namespace {namespace:?} does not exist {place}; existing namespaces: {}",
        list(existing)
    )]
    UnknownNamespace {
        /// The namespace asked for.
        namespace: String,
        /// Where it was looked for.
        place: String,
        /// The namespaces that exist.
        existing: Vec<String>,
    },
    /// The server refused this user a subject the command needs (NATS permissions).
    #[error("permission denied: NATS at {url} does not let this user {action} {subject:?}; {hint}")]
    PermissionDenied {
        /// The URL, without credentials.
        url: String,
        /// `publish to` or `subscribe to`.
        action: &'static str,
        /// The subject refused.
        subject: String,
        /// Which role the command needs.
        hint: &'static str,
    },
    /// A command needs NATS but got a data directory.
    #[error("`aether {command}` needs NATS (--nats <URL>): {why}")]
    NeedsNats {
        /// The command.
        command: &'static str,
        /// Why.
        why: &'static str,
    },
    /// A namespace, actor id or pattern that is not valid: the typed validation message,
    /// which names the kind, the value and the rule it broke.
    #[error("{0}")]
    Invalid(#[from] aether_core::InvalidName),
    /// The data directory cannot be read.
    #[error("{0}")]
    Data(#[from] aether_sqlite::OpenError),
    /// The data directory exists but is not one.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A namespace on NATS could not be opened for reading (it is incomplete, or the
    /// server refused).
    #[error("{0}")]
    OpenNamespace(#[from] aether_nats::OpenExistingError),
    /// A store operation failed.
    #[error("{0}")]
    Store(#[from] aether_core::StoreError),
    /// A cluster read failed.
    #[error("{0}")]
    Cluster(#[from] aether_cluster::ClusterError),
    /// The event bus failed.
    #[error("{0}")]
    Bus(#[from] aether_nats::BusError),
    /// Anything else NATS said.
    #[error("NATS at {url}: {message}")]
    Nats {
        /// The URL, without credentials.
        url: String,
        /// What failed.
        message: String,
    },
    /// A benchmark failed.
    #[error("benchmark: {0}")]
    Bench(String),
    /// Writing the output failed (a closed pipe ends quietly).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}
