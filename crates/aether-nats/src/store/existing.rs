//! Opening a namespace that exists, for readers: [`JetStreamEventStore::open_existing`] looks
//! its stream and snapshot bucket up and creates nothing, so a read-only tool (the `aether`
//! CLI, an auditor) never writes, and a typo in a namespace creates no empty one.

use aether_core::{Namespace, StoreError};
use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind, kv, stream};

use super::connect::{Parts, check_server_version, check_stream, retry_until, with_url};
use super::{JetStreamConfig, JetStreamEventStore};
use crate::naming::{snapshot_bucket, stream_name, stream_subjects};
use crate::permissions::violations::Violations;

/// Why [`JetStreamEventStore::open_existing`] could not open a namespace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenExistingError {
    /// The namespace's event stream does not exist: nobody created the namespace (a node
    /// creates it when it first opens it). Nothing was created.
    #[error(
        "namespace {namespace} does not exist on NATS at {url}: there is no stream {stream} \
         (a node creates a namespace when it first opens it)"
    )]
    NoNamespace {
        /// The namespace asked for.
        namespace: Namespace,
        /// The event stream that is missing.
        stream: String,
        /// The server, without credentials.
        url: String,
    },
    /// The namespace's event stream exists but its snapshot bucket does not (deleted, or a
    /// node stopped between creating the two). Nothing was created; a node re-creates the
    /// bucket when it opens the namespace.
    #[error(
        "namespace {namespace} on NATS at {url} has no snapshot bucket {bucket} (its events \
         are in stream {stream}); a node re-creates the bucket when it opens the namespace"
    )]
    NoSnapshotBucket {
        /// The namespace asked for.
        namespace: Namespace,
        /// The event stream, which exists.
        stream: String,
        /// The snapshot bucket that is missing.
        bucket: String,
        /// The server, without credentials.
        url: String,
    },
    /// Anything else: the server did not answer, refused, is too old, or the stream has
    /// settings the store cannot work with.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl JetStreamEventStore {
    /// Opens `namespace` on `client` for reading, if it exists: looks up its event stream and
    /// snapshot bucket and checks the stream's settings, **creating nothing** — unlike
    /// [`with_client`](Self::with_client), which creates what is missing. For read-only
    /// tools and users (the `aether` CLI, the `cli` and `audit` roles of
    /// `docs/permissions.md`, which may not create streams). The handle can read events,
    /// snapshots and the feed; whether it may write is the server's permissions' business.
    ///
    /// Only `request_timeout` and `retry_timeout` of `config` matter here (a server that does
    /// not answer is asked again until `retry_timeout`); `config.replicas` is not used, since
    /// nothing is created.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use aether_core::{ActorId, EventStore, Namespace};
    /// use aether_nats::{JetStreamConfig, JetStreamEventStore, OpenExistingError};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
    /// let namespace = Namespace::new("prod")?;
    /// match JetStreamEventStore::open_existing(client, namespace, JetStreamConfig::default()).await {
    ///     Ok(store) => println!("{:?}", store.events(&ActorId::new("acct-1")?, 1).await?),
    ///     Err(OpenExistingError::NoNamespace { .. }) => println!("no such namespace"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// - [`OpenExistingError::NoNamespace`] if the namespace's event stream does not exist,
    ///   [`OpenExistingError::NoSnapshotBucket`] if its snapshot bucket does not (nothing is
    ///   created in either case);
    /// - [`OpenExistingError::Store`] with [`StoreError::InvalidConfig`] for a `config`
    ///   [`JetStreamConfig::validate`] refuses, [`StoreError::Unavailable`] if the server does
    ///   not answer within `retry_timeout` (a request the server refuses for lack of
    ///   permission ends this way too: the refusal goes to the connection's event callback),
    ///   [`StoreError::Backend`] for a server older than 2.12, without JetStream, or a stream
    ///   with settings the store cannot work with.
    pub async fn open_existing(
        client: async_nats::Client,
        namespace: Namespace,
        config: JetStreamConfig,
    ) -> Result<Self, OpenExistingError> {
        config.validate()?;
        let info = client.server_info();
        let url = format!("{}:{}", info.host, info.port);
        check_server_version(&url, &info.version)?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let deadline = super::append::deadline_after(config.retry_timeout);
        let name = stream_name(&namespace);
        let Some(stream) = retry_until(deadline, || look_up(&js, &name))
            .await
            .map_err(|e| with_url(e, &url))?
        else {
            return Err(OpenExistingError::NoNamespace {
                namespace,
                stream: name,
                url,
            });
        };
        let found = stream.cached_info().config.clone();
        check_stream(&name, &found, &[stream_subjects(&namespace)], &config)
            .map_err(|e| with_url(e, &url))?;
        let bucket = snapshot_bucket(&namespace);
        let bucket_stream = format!("KV_{bucket}");
        if retry_until(deadline, || look_up(&js, &bucket_stream))
            .await
            .map_err(|e| with_url(e, &url))?
            .is_none()
        {
            return Err(OpenExistingError::NoSnapshotBucket {
                namespace,
                stream: name,
                bucket,
                url,
            });
        }
        let snapshots = retry_until(deadline, || open_bucket(&js, &bucket))
            .await
            .map_err(|e| with_url(e, &url))?;
        Ok(Self::assemble(Parts {
            client,
            js,
            stream,
            snapshots,
            namespace,
            config,
            url,
            violations: Violations::default(),
        }))
    }
}

/// The stream `name`, or `None` if the server says it does not exist.
async fn look_up(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Stream>, StoreError> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            GetStreamErrorKind::JetStream(_)
            | GetStreamErrorKind::InvalidStreamName
            | GetStreamErrorKind::EmptyName => Err(StoreError::Backend {
                message: format!("look up stream {name}: {e}"),
                source: Some(Box::new(e)),
            }),
            _ => Err(StoreError::Unavailable {
                message: format!("look up stream {name}: {e}"),
                source: Some(Box::new(e)),
            }),
        },
    }
}

async fn open_bucket(js: &jetstream::Context, bucket: &str) -> Result<kv::Store, StoreError> {
    js.get_key_value(bucket)
        .await
        .map_err(|e| StoreError::Unavailable {
            message: format!("open snapshot bucket {bucket}: {e}"),
            source: Some(Box::new(e)),
        })
}
