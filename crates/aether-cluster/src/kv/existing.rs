//! Reading a cluster's buckets without being a node: [`ClusterStore::open_existing`] and
//! [`ClusterStore::members`], for tools such as the `aether` CLI. Nothing is created or
//! checked against a node's settings, so a reader needs no configuration but the cluster's
//! name, and a typo in that name creates no empty cluster.

use std::time::Duration;

use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind, kv};
use futures::TryStreamExt;

use super::ClusterStore;
use crate::ClusterError;
use crate::membership::MemberInfo;

impl ClusterStore {
    /// Opens the buckets of the existing cluster `cluster_name` for reading: unlike
    /// [`open`](Self::open), creates nothing and compares no settings.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use aether_cluster::kv::ClusterStore;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
    /// let store = ClusterStore::open_existing(client, "aether", Duration::from_secs(5)).await?;
    /// for member in store.members().await? {
    ///     println!("{} at {}", member.id, member.metadata.address);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotFound`] if a bucket of the cluster does not exist;
    /// [`ClusterError::Unavailable`] if NATS does not answer within `request_timeout`;
    /// [`ClusterError::Backend`] if JetStream refuses (no JetStream, no permission).
    pub async fn open_existing(
        client: async_nats::Client,
        cluster_name: &str,
        request_timeout: Duration,
    ) -> Result<Self, ClusterError> {
        let mut js = jetstream::new(client);
        js.set_timeout(request_timeout);
        let members_bucket = format!("{cluster_name}-members");
        let coord_bucket = format!("{cluster_name}-coord");
        let members = existing_bucket(&js, cluster_name, &members_bucket).await?;
        let coord = existing_bucket(&js, cluster_name, &coord_bucket).await?;
        Ok(Self {
            js,
            members,
            coord,
            members_bucket,
            coord_bucket,
        })
    }

    /// The members whose keys are live now, by node id: what every node's membership reads,
    /// without the failure detection on top (a node whose key just expired is gone here
    /// before the others have probed it).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Unavailable`] if NATS does not answer; [`ClusterError::Backend`] if it
    /// refuses or a member's value is not a [`MemberInfo`].
    pub async fn members(&self) -> Result<Vec<MemberInfo>, ClusterError> {
        let keys: Vec<String> = self
            .members
            .keys()
            .await
            .map_err(|e| unavailable("listing the members", e))?
            .try_collect()
            .await
            .map_err(|e| unavailable("listing the members", e))?;
        let mut members = Vec::with_capacity(keys.len());
        for key in keys {
            let entry = self
                .members
                .entry(&key)
                .await
                .map_err(|e| unavailable("reading a member", e))?;
            // Expired between listing and reading: gone.
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                continue;
            };
            let info: MemberInfo =
                serde_json::from_slice(&entry.value).map_err(|e| ClusterError::Backend {
                    message: format!("the member key {key:?} does not hold a member"),
                    source: Some(Box::new(e)),
                })?;
            members.push(info);
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(members)
    }
}

async fn existing_bucket(
    js: &jetstream::Context,
    cluster: &str,
    bucket: &str,
) -> Result<kv::Store, ClusterError> {
    match js.get_stream(format!("KV_{bucket}")).await {
        Ok(_) => {}
        Err(e) => {
            return Err(match e.kind() {
                GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    ClusterError::NotFound {
                        cluster: cluster.to_owned(),
                        bucket: bucket.to_owned(),
                    }
                }
                GetStreamErrorKind::JetStream(_) | GetStreamErrorKind::InvalidStreamName => {
                    ClusterError::Backend {
                        message: format!("cannot open bucket {bucket}"),
                        source: Some(Box::new(e)),
                    }
                }
                _ => unavailable(&format!("opening bucket {bucket}"), e),
            });
        }
    }
    js.get_key_value(bucket)
        .await
        .map_err(|e| ClusterError::Backend {
            message: format!("cannot open bucket {bucket}"),
            source: Some(Box::new(e)),
        })
}

fn unavailable(what: &str, source: impl std::error::Error + Send + Sync + 'static) -> ClusterError {
    ClusterError::Unavailable {
        message: format!("no answer {what}"),
        source: Some(Box::new(source)),
    }
}
